import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  alerts,
  compressRules,
  dashboardExprs,
  loadDashboard,
  loadRuleGroups,
  metricNames,
  MONITORING,
  PROMETHEUS_RULE_FILE,
  PROMTOOL,
  ROOT,
  RULES_FILE,
  type RuleGroup,
} from '../helpers/monitoring.js';

/**
 * deploy/monitoring: the two forms of the rules say the same thing, every alert has a
 * runbook that exists and a promtool unit test, and promtool accepts the rules and passes
 * their tests (deploy/monitoring/tests/*.yml). Which metrics they read is checked
 * against live processes in test/integration/monitoring-metrics.test.ts.
 */
const run = promisify(execFile);
const RUNBOOKS = join(ROOT, 'docs', 'runbooks.md');
const TESTS_DIR = join(MONITORING, 'tests');
const testFiles = readdirSync(TESTS_DIR)
  .filter((f) => f.endsWith('.yml'))
  .map((f) => join(TESTS_DIR, f));

/** GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6}\s+(.+)$/gm)) {
    out.add(
      m[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return out;
}

describe('deploy/monitoring rules', () => {
  const groups = loadRuleGroups();
  const all = alerts(groups);

  it('the PrometheusRule carries exactly the groups of leash-rules.yml', () => {
    const pr = parse(readFileSync(PROMETHEUS_RULE_FILE, 'utf8')) as { apiVersion: string; kind: string; metadata: { name: string }; spec: { groups: RuleGroup[] } };
    expect(pr.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(pr.kind).toBe('PrometheusRule');
    expect(pr.metadata.name).toBe('leash');
    expect(pr.spec.groups).toEqual(groups);
  });

  it('covers the credential-health failure modes, each with severity, summary and a runbook that exists', () => {
    const names = all.map((a) => a.alert!);
    expect(new Set(names).size).toBe(names.length);
    expect(names.length).toBeGreaterThanOrEqual(6);
    // One alert per failure mode the issue names.
    for (const required of [
      'LeashCredentialRotationFailing',
      'LeashCredentialRefreshOverdue',
      'LeashCredentialOlderThanPolicy',
      'LeashRevocationChannelDown',
      'LeashRevocationLagHigh',
      'LeashUpstreamAuthFailures',
      'LeashSidecarNotReady',
      'LeashAuthorityIssuanceErrors',
      'LeashIdentityNearExpiry',
      'LeashCredentialCloned',
    ])
      expect(names).toContain(required);
    const runbookAnchors = anchors(readFileSync(RUNBOOKS, 'utf8'));
    for (const a of all) {
      expect(['warning', 'critical'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      const url = a.annotations?.runbook_url ?? '';
      expect(url, a.alert).toMatch(/\/docs\/runbooks\.md#[a-z0-9-]+$/);
      const anchor = url.split('#')[1]!;
      expect(anchor).toBe(a.alert!.toLowerCase());
      expect(runbookAnchors.has(anchor), `docs/runbooks.md has no section "${a.alert}"`).toBe(true);
    }
  });

  it('docs/observability.md links the runbooks and deploy/README.md points at deploy/monitoring', () => {
    expect(readFileSync(join(ROOT, 'docs', 'observability.md'), 'utf8')).toContain('(runbooks.md)');
    expect(readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8')).toContain('(monitoring/');
  });

  it('every alert is exercised by a promtool unit test', () => {
    const tested = new Set<string>();
    for (const f of testFiles) {
      const t = parse(readFileSync(f, 'utf8')) as { rule_files: string[]; tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
      expect(t.rule_files.map((r) => join(TESTS_DIR, r))).toContain(RULES_FILE);
      for (const test of t.tests) for (const a of test.alert_rule_test ?? []) if (a.exp_alerts.length > 0) tested.add(a.alertname);
    }
    expect(all.map((a) => a.alert).filter((n) => !tested.has(n!))).toEqual([]);
  });

  it.skipIf(!PROMTOOL)('promtool check rules accepts both files, and promtool test rules passes', { timeout: 30_000 }, async () => {
    const checked = await run(PROMTOOL!, ['check', 'rules', RULES_FILE]);
    expect(checked.stdout).toContain(`SUCCESS: ${groups.flatMap((g) => g.rules).length} rules found`);
    const tested = await run(PROMTOOL!, ['test', 'rules', ...testFiles], { cwd: MONITORING });
    expect(tested.stdout.match(/SUCCESS/g)?.length).toBe(testFiles.length);
  });
  if (!PROMTOOL) it.skip('promtool is not installed: apt-get install prometheus (Debian) to run the rule unit tests', () => {});

  it('the compressed rules the end-to-end test uses keep the expressions and scale only time', () => {
    const fast = compressRules(groups, 60);
    const rot = fast.flatMap((g) => g.rules).find((r) => r.alert === 'LeashCredentialRotationFailing')!;
    expect(rot.for).toBe('5000ms');
    expect(rot.expr).toBe('sum without (result) (rate(leash_credential_rotations_total{result=~"failure|rejected"}[5000ms])) > 0');
    expect(fast.flatMap((g) => g.rules).map((r) => metricNames(r.expr))).toEqual(groups.flatMap((g) => g.rules).map((r) => metricNames(r.expr)));
  });
});

describe('metric names out of PromQL', () => {
  it('takes selectors, not functions, labels, strings, ranges or grouping lists', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le, route) (rate(leash_request_duration_seconds_bucket{route!~"x_y"}[$__rate_interval])))')).toEqual([
      'leash_request_duration_seconds_bucket',
    ]);
    expect(metricNames('count(leash_credential_available == 0) or vector(0)')).toEqual(['leash_credential_available']);
    expect(metricNames('a_total / on (instance) group_left (version) leash_build_info > 1e3 unless b offset 5m')).toEqual(['a_total', 'b', 'leash_build_info']);
    expect(metricNames('max without (instance, pod) (x) > 30 * 86400')).toEqual(['x']);
  });
});

describe('deploy/monitoring/grafana-leash.json', () => {
  const d = loadDashboard();
  const exprs = dashboardExprs(d);
  it('has the panels SREs asked for, each with a query', () => {
    expect(d.uid).toBe('leash-credential-health');
    const titles = JSON.stringify(d.panels.map((p) => p.title));
    for (const t of ['Active lease age', 'Rotations by route and result', 'Revocations published and applied', 'Revocation lag', 'Requests by route and code', 'Request latency by route'])
      expect(titles).toContain(t);
    expect(exprs.length).toBeGreaterThanOrEqual(15);
    for (const { panel, expr } of exprs) expect(metricNames(expr).length, `${panel}: ${expr}`).toBeGreaterThan(0);
  });
  it('reads the lease-age gauges as a snapshot (no rate over them) and requests by code', () => {
    const heat = exprs.find((e) => e.expr.includes('leash_authority_active_lease_age_seconds'))!;
    expect(heat.expr).not.toMatch(/rate|increase/);
    expect(exprs.some((e) => /sum by \(route, code\) \(rate\(leash_requests_total/.test(e.expr))).toBe(true);
  });
});
