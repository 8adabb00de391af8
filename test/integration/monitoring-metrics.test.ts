import { get } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { dashboardExprs, exposedLabels, exposedNames, labelNames, loadRuleGroups, metricNames, SYNTHETIC, TARGET_LABELS } from '../helpers/monitoring.js';

/**
 * Every metric an alert rule or a dashboard panel reads must exist on a running sidecar's
 * or authority's /metrics: a renamed metric otherwise turns an alert silently into one
 * that can never fire. The names are parsed out of the PromQL; the pages are scraped from
 * a real authority (HTTPS, its CA) and a real sidecar leasing from it.
 */

let authority: TestAuthority;
let upstream: Upstream;
let sidecar: RunningSidecar;
let exposed: Set<string>;
let labelsOf: Map<string, Set<string>>;

function httpsText(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode}`))));
    }).on('error', reject);
  });
}

beforeAll(async () => {
  authority = await startAuthority({
    trustDomain: 'leash.local',
    credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
    policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
  });
  upstream = await startUpstream((_req, res) => res.end('ok'));
  const token = await authority.token('agent-metrics');
  sidecar = await startSidecar(
    {
      authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
      routes: { svc: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    },
    { authorityCa: authority.caPem, joinToken: () => token },
  );
  expect((await fetch(`${sidecar.url}/svc/x`)).status).toBe(200);
  const sidecarPage = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const authorityPage = await httpsText(`${authority.url}/metrics`, authority.caPem);
  exposed = new Set([...exposedNames(sidecarPage), ...exposedNames(authorityPage)]);
  labelsOf = exposedLabels(`${sidecarPage}\n${authorityPage}`);
});

afterAll(async () => {
  await sidecar?.stop();
  await upstream?.close();
  await authority?.stop();
});

function missing(exprs: Array<{ where: string; expr: string }>): string[] {
  const out: string[] = [];
  for (const { where, expr } of exprs)
    for (const name of metricNames(expr)) if (!exposed.has(name) && !SYNTHETIC.has(name)) out.push(`${where}: ${name}`);
  return out;
}

describe('metrics named by deploy/monitoring exist on running processes', () => {
  it('the scrape saw both processes', () => {
    expect(exposed.has('leash_requests_total')).toBe(true);
    expect(exposed.has('leash_authority_leases_issued_total')).toBe(true);
    // The check itself: a name that is on neither page is reported.
    expect(missing([{ where: 'probe', expr: 'rate(leash_no_such_metric_total[5m]) > 0' }])).toEqual(['probe: leash_no_such_metric_total']);
  });

  // Every rule, alerting and recording, of every group.
  const rules = () => loadRuleGroups().flatMap((g) => g.rules.map((r) => ({ where: r.alert ?? r.record!, expr: r.expr })));

  it('every metric a rule reads', () => {
    expect(rules().length).toBeGreaterThanOrEqual(6);
    expect(missing(rules())).toEqual([]);
  });

  it('every metric a dashboard panel reads', () => {
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(0);
    expect(missing(exprs.map((e) => ({ where: e.panel, expr: e.expr })))).toEqual([]);
  });

  it('every label a rule or a panel selects, groups or matches by is one its metrics carry', () => {
    // A renamed label (the request counter's `status` became `code`) leaves the metric but
    // turns `sum by (route, status)` into one series and `{status="503"}` into none.
    const wrongLabels = (exprs: Array<{ where: string; expr: string }>): string[] =>
      exprs.flatMap(({ where, expr }) => {
        const carried = new Set<string>(TARGET_LABELS);
        for (const name of metricNames(expr)) for (const l of labelsOf.get(name) ?? []) carried.add(l);
        return labelNames(expr)
          .filter((l) => !carried.has(l))
          .map((l) => `${where}: ${l}`);
      });
    expect(wrongLabels([{ where: 'probe', expr: 'sum by (route, status) (rate(leash_requests_total{code="503"}[5m]))' }])).toEqual(['probe: status']);
    expect(wrongLabels(rules())).toEqual([]);
    expect(wrongLabels(dashboardExprs().map((e) => ({ where: e.panel, expr: e.expr })))).toEqual([]);
  });
});
