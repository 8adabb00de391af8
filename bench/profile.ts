import { readFileSync } from 'node:fs';

/** Self-time summary of a V8 .cpuprofile (from `node --cpu-prof`). */
interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  busyMs: number;
  top: { name: string; where: string; selfMs: number; pct: number }[];
  byArea: { area: string; selfMs: number; pct: number }[];
}

function where(url: string, line: number): string {
  if (!url) return '';
  const short = url
    .replace(/^file:\/\//, '')
    .replace(/^.*\/node_modules\//, '')
    .replace(/^.*\/dist\//, 'dist/');
  return `${short}:${line + 1}`;
}

/** Which layer a frame belongs to: leash, a dependency, Node internals, or V8/GC. */
function area(f: CallFrame): string {
  const u = f.url;
  if (f.functionName === '(garbage collector)') return 'GC';
  if (f.functionName === '(idle)') return 'idle';
  if (f.functionName === '(program)') return 'V8/native (program)';
  if (u.includes('/node_modules/')) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
    return `dep: ${m?.[1] ?? '?'}`;
  }
  if (u.includes('/dist/src/')) return 'leash (dist/src)';
  if (u.startsWith('node:')) {
    const mod = u.slice(5).replace(/^internal\//, '').split('/')[0]!.replace(/\.js$/, '');
    if (/^(_http|http|net|stream|streams|timers|tcp|url)/.test(mod)) return `node: ${mod.replace(/_.*$/, '')}`;
    return `node: other (${mod})`;
  }
  if (!u) return 'native builtins';
  return 'other';
}

export function summarise(path: string, topN = 20): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  // timeDeltas[i] is the gap before sample i; attribute it to that sample's node.
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, { name: string; where: string; us: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === '(idle)') idle += us;
    const key = `${f.functionName}|${f.url}|${f.lineNumber}`;
    const e = fn.get(key) ?? { name: f.functionName || '(anonymous)', where: where(f.url, f.lineNumber), us: 0 };
    e.us += us;
    fn.set(key, e);
    const a = area(f);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number) => (100 * us) / busy;
  const top = [...fn.values()]
    .filter((e) => e.name !== '(idle)')
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, pct: pct(e.us) }));
  const byArea = [...areas.entries()]
    .filter(([a]) => a !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .map(([a, us]) => ({ area: a, selfMs: us / 1000, pct: pct(us) }));
  return { totalMs: total / 1000, busyMs: busy / 1000, top, byArea };
}
