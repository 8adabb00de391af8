import { spawnSync } from 'node:child_process';

/** `promtool check metrics` on a /metrics text (Debian's prometheus package; .ci/run installs it). */
export const HAVE_PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
if (!HAVE_PROMTOOL) console.warn('promtool not found (apt-get install prometheus): the `promtool check metrics` assertions are skipped');

/** promtool's complaints (empty when the text passes its lint). */
export function promtoolCheckMetrics(text: string): string {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
  if (r.error) throw r.error;
  return r.status === 0 ? '' : `${r.stdout}${r.stderr}`.trim() || `promtool exited ${r.status}`;
}

/** The value of one series (`name{labels}` exactly as exposed) in Prometheus text, or undefined when absent. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
