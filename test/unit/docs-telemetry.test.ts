import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { NO_ROUTE, SidecarMetrics } from '../../src/telemetry/metrics.js';
import { AnomalyMetrics } from '../../src/telemetry/anomaly-metrics.js';
import { AuthorityMetrics } from '../../src/telemetry/authority-metrics.js';
import { AUDIT_EVENTS } from '../../src/telemetry/audit.js';
import { httpStatusOf, VERIFY_ERROR_CODES } from '../../src/verify/errors.js';
import { auditKey, epochKeyOf, revocationsKey, storeKeys } from '../../src/core/protocol.js';

/**
 * The telemetry reference must not drift from the code:
 *
 * - every `leash_*` metric a sidecar or authority registers has a row in the tables of
 *   docs/observability.md ("Sidecar metrics", "Authority metrics") with its type and
 *   exactly its labels, and every row names a metric that is registered;
 * - every metric of DESIGN §8 (docs/DESIGN.md, the contract) is registered with the
 *   labels §8 gives it;
 * - every audit event leash emits has a row in docs/audit.md or docs/anomalies.md, every
 *   event row names one leash emits, and every audit field (AuditFields) is described.
 */
const ROOT = process.cwd();
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

interface Metric {
  name: string;
  type: string;
  labels: string[];
}

async function registered(): Promise<{ sidecar: Metric[]; authority: Metric[] }> {
  const routes = ['a'];
  const sidecar = new SidecarMetrics(
    () => [{ route: 'a', available: true, ageSeconds: 1, ttlRemainingSeconds: 2, refreshOverdue: false } as never],
    () => 60,
    { routes, version: 't' },
  );
  new AnomalyMetrics(sidecar.registry, routes, NO_ROUTE);
  const authority = new AuthorityMetrics(async () => [{ credential: 'c', ageSeconds: 5 }], { credentials: ['c'], version: 't' });
  const describe = async (r: Registry): Promise<Metric[]> => {
    const text = await r.metrics();
    const out = new Map<string, Metric>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, { name: m[1]!, type: m[2]!, labels: [] });
    for (const m of text.matchAll(/^([a-z_:][a-z0-9_:]*)(?:\{([^}]*)\})? /gm)) {
      const base = [...out.keys()].find((n) => m[1] === n || (out.get(n)!.type === 'histogram' && /^_(bucket|sum|count)$/.test(m[1]!.slice(n.length)) && m[1]!.startsWith(n)));
      if (!base) continue;
      const metric = out.get(base)!;
      for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) {
        if (metric.type === 'histogram' && l[1] === 'le') continue;
        if (!metric.labels.includes(l[1]!)) metric.labels.push(l[1]!);
      }
    }
    // A labelled metric without a sample yet (a histogram before its first observation) has its label names still.
    for (const metric of r.getMetricsAsArray() as unknown as Array<{ name: string; labelNames?: string[] }>) {
      for (const l of metric.labelNames ?? []) if (out.has(metric.name) && !out.get(metric.name)!.labels.includes(l)) out.get(metric.name)!.labels.push(l);
    }
    return [...out.values()].filter((m) => m.name.startsWith('leash_'));
  };
  return { sidecar: await describe(sidecar.registry), authority: await describe(authority.registry) };
}

/** The metric rows of the table after `heading`: name, type, labels. */
function metricRows(heading: string): Metric[] {
  const lines = read('docs/observability.md').split('\n');
  let i = lines.indexOf(heading);
  expect(i, `docs/observability.md has no "${heading}"`).toBeGreaterThanOrEqual(0);
  while (!lines[i]!.startsWith('| metric |')) i++;
  const rows: Metric[] = [];
  for (i += 2; lines[i]?.startsWith('|'); i++) {
    const [name, type, labels] = lines[i]!.split('|').slice(1, 4).map((c) => c.trim());
    rows.push({
      name: name!.replace(/`/g, ''),
      // `untyped (a gauge)`: the declared type first.
      type: type!.split(/\s/)[0]!,
      labels: [...labels!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!),
    });
  }
  return rows;
}

describe('docs drift: metrics', () => {
  it('every leash_ metric registered is in docs/observability.md with its type and labels, and every row is registered', async () => {
    const { sidecar, authority } = await registered();
    expect(sidecar.length).toBeGreaterThan(10);
    expect(authority.length).toBeGreaterThan(5);
    for (const [heading, metrics] of [
      ['### Sidecar metrics', sidecar],
      ['### Authority metrics', authority],
    ] as const) {
      const rows = metricRows(heading);
      const clean = (ms: readonly Metric[]) => ms.map((m) => ({ ...m, labels: [...m.labels].sort() })).sort((a, b) => a.name.localeCompare(b.name));
      expect(clean(rows), heading).toEqual(clean(metrics));
    }
  });

  it('every metric of DESIGN §8 is registered, with the labels §8 gives it', async () => {
    const { sidecar, authority } = await registered();
    const all = new Map([...sidecar, ...authority].map((m) => [m.name, m]));
    const section = /## 8\. Contract: observability([\s\S]*?)\n## 9\./.exec(read('docs/DESIGN.md'))![1]!;
    const design = [...section.matchAll(/`([a-z_]+)(?:\{([a-z_,]+)\})?`/g)]
      .filter((m) => /_(total|seconds|available|up|overdue|active|info|truncated)$/.test(m[1]!))
      .map((m) => ({ name: `leash_${m[1]}`, labels: (m[2] ?? '').split(',').filter(Boolean) }));
    expect(design.length).toBeGreaterThan(20);
    const wrong = design.flatMap((d) => {
      const m = all.get(d.name);
      if (!m) return [`${d.name}: not registered`];
      // §8 writes le on the lease-age snapshot (an untyped metric: le is a real label there).
      return [...m.labels].sort().join() === [...d.labels].sort().join() ? [] : [`${d.name}: labels ${m.labels.join()} (DESIGN: ${d.labels.join()})`];
    });
    expect(wrong, wrong.join('\n')).toEqual([]);
  });
});

describe('docs drift: audit events', () => {
  /** Event names leash writes besides AUDIT_EVENTS: the stream's budget entry. */
  const EXTRA = ['audit.suppressed'];
  const docs = ['docs/audit.md', 'docs/anomalies.md'].map(read).join('\n');
  // Table rows (`| \`event\` |`, `| \`a\` / \`b\` |`) and headings naming one (`## … \`anomaly.cloned_credential\``).
  const eventRows = [
    ...[...docs.matchAll(/^\| `([a-z_]+(?:\.[a-z_]+)?)`(?: \/ `([a-z_.]+)`)? \|/gm)].flatMap((m) => [m[1]!, m[2]].filter((e): e is string => !!e)),
    ...[...docs.matchAll(/^#+ .*`([a-z_]+\.[a-z_]+)`\s*$/gm)].map((m) => m[1]!),
  ];

  it('every event leash emits has a row in docs/audit.md or docs/anomalies.md', () => {
    const missing = [...AUDIT_EVENTS, ...EXTRA].filter((e) => !eventRows.includes(e));
    expect(missing).toEqual([]);
  });

  it('every event row names an event leash emits', () => {
    const events = new Set<string>([...AUDIT_EVENTS, ...EXTRA]);
    // Rows of the audit.md and anomalies.md tables that are fields, not events.
    const rows = eventRows.filter((e) => e.includes('.') || ['request', 'usage'].includes(e));
    expect(rows.filter((e) => !events.has(e))).toEqual([]);
    expect(rows.length).toBeGreaterThan(15);
  });

  it('DESIGN §8 names only events leash emits', () => {
    const section = /## 8\. Contract: observability([\s\S]*?)\n## 9\./.exec(read('docs/DESIGN.md'))![1]!;
    const named = [...section.matchAll(/`((?:instance|lease|policy|credential|request)(?:\.[a-z_]+)?)`/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((e) => !(AUDIT_EVENTS as readonly string[]).includes(e))).toEqual([]);
  });

  it('every audit field is described', () => {
    const source = read('src/telemetry/audit.ts');
    const body = /export interface AuditFields \{([\s\S]*?)\n\}/.exec(source)![1]!;
    const fields = [...body.matchAll(/^\s+([a-zA-Z]+)\?:/gm)].map((m) => m[1]!);
    expect(fields.length).toBeGreaterThan(10);
    expect(fields.filter((f) => !docs.includes(`\`${f}\``))).toEqual([]);
  });
});

describe('docs drift: leash/verify options', () => {
  it('every VerifierOptions key has a row in docs/verify.md, and every row is an option', () => {
    const source = read('src/verify/verifier.ts');
    const body = /export interface VerifierOptions \{([\s\S]*?)\n\}/.exec(source)![1]!;
    const options = [...body.matchAll(/^ {2}([a-zA-Z]+)\??:/gm)].map((m) => m[1]!).sort();
    expect(options.length).toBeGreaterThan(10);
    const doc = read('docs/verify.md');
    const table = doc.slice(doc.indexOf('## Options'), doc.indexOf('\n## ', doc.indexOf('## Options') + 1));
    const rows = [...table.matchAll(/^\| ((?:`[a-zA-Z]+`(?:, )?)+) \|/gm)].flatMap((m) => [...m[1]!.matchAll(/`([a-zA-Z]+)`/g)].map((k) => k[1]!)).sort();
    expect(rows).toEqual(options);
  });
});

describe('docs drift: leash/verify error codes', () => {
  it('every code has a row in docs/verify.md with httpStatusOf’s status, and every row is a code', () => {
    const rows = [...read('docs/verify.md').matchAll(/^\| `(LEASH_VERIFY_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(VERIFY_ERROR_CODES.map((c) => [c, httpStatusOf(c)])));
  });
});

describe('docs drift: the Redis key layout of docs/authority.md', () => {
  it('names exactly the keys leash writes', () => {
    const k = storeKeys();
    const keys = [k.lease('<>'), k.byInstance('<>'), k.byCredential('<>'), k.all, k.joinToken('<>'), k.identity('<>'), k.revokedInstance('<>'), revocationsKey(), auditKey(), epochKeyOf(revocationsKey())];
    const doc = read('docs/authority.md');
    const table = doc.slice(doc.indexOf('## Redis key layout'), doc.indexOf('\n## ', doc.indexOf('## Redis key layout') + 1));
    const rows = [...table.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!.replace(/<[^>]+>/g, '<>'));
    expect(rows.sort()).toEqual(keys.sort());
  });
});
