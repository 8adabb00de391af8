import { get } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { alerts, dashboardExprs, exposedNames, loadRuleGroups, metricNames, SYNTHETIC } from '../helpers/monitoring.js';

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

  it('every metric an alert rule reads', () => {
    const rules = alerts(loadRuleGroups());
    expect(rules.length).toBeGreaterThanOrEqual(6);
    expect(missing(rules.map((r) => ({ where: r.alert!, expr: r.expr })))).toEqual([]);
  });

  it('every metric a dashboard panel reads', () => {
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(0);
    expect(missing(exprs.map((e) => ({ where: e.panel, expr: e.expr })))).toEqual([]);
  });
});
