import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

/**
 * What the monitoring tests share: the rule files and dashboard of deploy/monitoring, the
 * metric names their PromQL reads, the names a /metrics page defines, and where Debian's
 * prometheus/promtool binaries are (undefined when not installed).
 */
export const ROOT = join(import.meta.dirname, '..', '..');
export const MONITORING = join(ROOT, 'deploy', 'monitoring');
export const RULES_FILE = join(MONITORING, 'leash-rules.yml');
export const PROMETHEUS_RULE_FILE = join(MONITORING, 'prometheusrule.yaml');
export const DASHBOARD_FILE = join(MONITORING, 'grafana-leash.json');

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface RuleGroup {
  name: string;
  interval?: string;
  rules: Rule[];
}

export function loadRuleGroups(file = RULES_FILE): RuleGroup[] {
  return (parse(readFileSync(file, 'utf8')) as { groups: RuleGroup[] }).groups;
}

export function alerts(groups: RuleGroup[] = loadRuleGroups()): Rule[] {
  return groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
}

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}
export interface Dashboard {
  title: string;
  uid: string;
  panels: Panel[];
  templating?: { list: Array<{ name: string; query?: unknown; definition?: string }> };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
}

/** Every PromQL expression of the dashboard (panel targets, rows included, and query variables). */
export function dashboardExprs(d: Dashboard = loadDashboard()): Array<{ panel: string; expr: string }> {
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '?', expr: t.expr });
      if (p.panels) walk(p.panels);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : ((v.query as { query?: string } | undefined)?.query ?? v.definition);
    // label_values(metric, label) names a metric too.
    const lv = q?.match(/^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/);
    if (lv) out.push({ panel: `variable ${v.name}`, expr: lv[1]! });
  }
  return out;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan']);
/** Names Prometheus makes up itself, never on a target's page. */
export const SYNTHETIC = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'scrape_series_added', 'ALERTS', 'ALERTS_FOR_STATE']);

/**
 * The metric names a PromQL expression selects. Not a full parser, but enough for what
 * a rule file holds: string literals, label matchers `{…}`, ranges `[…]`, grouping lists
 * (`by (…)`, `on (…)`, …) and function names (an identifier followed by `(`) are taken
 * out; what is left that looks like an identifier and is not a keyword is a metric name.
 */
export function metricNames(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?/g, ' ');
  s = s.replace(/\b[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(/g, '(');
  const names = new Set<string>();
  for (const m of s.matchAll(/(?<![0-9.a-zA-Z_:])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const id = m[0];
    if (KEYWORDS.has(id.toLowerCase())) continue;
    // Durations (5m, 1h) and numbers (1e3) start with a digit and never match; `e` alone may.
    names.add(id);
  }
  return [...names].sort();
}

/** Labels Prometheus attaches to every scraped series itself (target labels), and `le` of histogram buckets. */
export const TARGET_LABELS = new Set(['job', 'instance', 'pod', 'namespace', 'container', 'service', 'endpoint', 'le']);

/**
 * The label names a PromQL expression uses: in selectors (`name{label="…"}`) and in grouping
 * and matching lists (`by (…)`, `without (…)`, `on (…)`, `ignoring (…)`, `group_left (…)`,
 * `group_right (…)`). Strings are taken out first, so a value never reads as a label.
 */
export function labelNames(expr: string): string[] {
  const s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  const names = new Set<string>();
  for (const m of s.matchAll(/\{([^}]*)\}/g)) for (const l of m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) names.add(l[1]!);
  for (const m of s.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g))
    for (const l of m[1]!.split(',').map((x) => x.trim())) if (l) names.add(l);
  return [...names].sort();
}

/** Each series name of a Prometheus text page with the label names its samples carry. */
export function exposedLabels(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? /);
    if (!m) continue;
    const set = out.get(m[1]!) ?? new Set<string>();
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) set.add(l[1]!);
    out.set(m[1]!, set);
  }
  return out;
}

/**
 * The series names a Prometheus text page defines: every sample's name, and for each
 * `# TYPE` line its name (a counter or histogram declared but not yet counted still
 * exists) with the suffixes its type implies.
 */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const t = line.match(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/);
    if (t) {
      const [, name, type] = t;
      names.add(name!);
      if (type === 'histogram') for (const suf of ['_bucket', '_sum', '_count']) names.add(name! + suf);
      if (type === 'summary') for (const suf of ['_sum', '_count']) names.add(name! + suf);
      continue;
    }
    if (line.startsWith('#') || !line.trim()) continue;
    const s = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)/);
    if (s) names.add(s[1]!);
  }
  return names;
}

function which(bin: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}
export const PROMTOOL = which('promtool');
export const PROMETHEUS = which('prometheus');

/** `5m` → 300 000; the Prometheus duration syntax (ms, s, m, h, d, w, y), units combined. */
export function durationMs(d: string): number {
  const units: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3, y: 365 * 86400e3 };
  let total = 0;
  const re = /(\d+)(ms|s|m|h|d|w|y)/g;
  let rest = d;
  for (const m of d.matchAll(re)) {
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.replace(m[0], '');
  }
  if (rest !== '' || total === 0) throw new Error(`not a duration: ${d}`);
  return total;
}

/**
 * The rule groups with time compressed: every `for:` and every range `[…]` divided by
 * `factor` (never below `minMs`), so an end-to-end test can watch an alert go pending,
 * firing and resolved in seconds while evaluating the same expressions as production.
 */
export function compressRules(groups: RuleGroup[], factor: number, minMs = 1_000): RuleGroup[] {
  const scale = (d: string) => `${Math.max(minMs, Math.round(durationMs(d) / factor))}ms`;
  return groups.map((g) => ({
    ...g,
    ...(g.interval ? { interval: scale(g.interval) } : {}),
    rules: g.rules.map((r) => ({
      ...r,
      expr: r.expr.replace(/\[([0-9a-z]+)(:[0-9a-z]*)?\]/g, (_m, range: string, step?: string) => `[${scale(range)}${step ?? ''}]`),
      ...(r.for ? { for: scale(r.for) } : {}),
    })),
  }));
}
