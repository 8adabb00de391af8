import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adminAddress, formatSeconds, formatStatus } from '../../src/bin/status.js';
import { auditPath, MAX_AUDIT_PATH } from '../../src/sidecar/proxy/audit-path.js';

describe('leash status: where the admin listener is', () => {
  const file = (text: string) => {
    const p = join(mkdtempSync(join(tmpdir(), 'leash-status-')), 'c.yaml');
    writeFileSync(p, text);
    return p;
  };
  it('--admin, else --config, else LEASH_ADMIN, else 127.0.0.1:9090; wildcards reached on loopback', () => {
    expect(adminAddress({}, {})).toMatchObject({ host: '127.0.0.1', port: 9090 });
    expect(adminAddress({}, { LEASH_ADMIN: '127.0.0.1:19090' })).toMatchObject({ port: 19090 });
    expect(adminAddress({ admin: 'localhost:1' }, { LEASH_ADMIN: '127.0.0.1:19090' })).toMatchObject({ host: 'localhost', port: 1 });
    expect(adminAddress({ admin: 'http://127.0.0.1:7/' }, {})).toMatchObject({ host: '127.0.0.1', port: 7 });
    expect(adminAddress({ config: file('admin: 0.0.0.0:9191\nroutes: {}\n') }, { LEASH_ADMIN: '127.0.0.1:19090' })).toMatchObject({ host: '127.0.0.1', port: 9191 });
    // A dev config: its sidecar's admin, ${LEASH_ADMIN:-…} expanded.
    const dev = file('authority: {}\nsidecar:\n  admin: "${LEASH_ADMIN:-127.0.0.1:9292}"\n');
    expect(adminAddress({ config: dev }, {})).toMatchObject({ port: 9292 });
    expect(adminAddress({ config: dev }, { LEASH_ADMIN: '[::]:9393' })).toMatchObject({ host: '::1', port: 9393, text: '[::1]:9393' });
    // A config without admin: the sidecar's default.
    expect(adminAddress({ config: file('routes: {}\n') }, { LEASH_ADMIN: '127.0.0.1:19090' })).toMatchObject({ port: 9090 });
    expect(() => adminAddress({ admin: '127.0.0.1:0' }, {})).toThrow(/--admin: must be "host:port"/);
    expect(() => adminAddress({}, { LEASH_ADMIN: 'x' })).toThrow(/^LEASH_ADMIN: must be "host:port"/);
  });
});

describe('leash status: the table', () => {
  it('one row per route, times humanised, missing values as -, control characters neutralised', () => {
    const text = formatStatus({
      instance: { id: 'agent-0', identity: null },
      shuttingDown: true,
      routes: {
        openai: { upstream: 'https://api.openai.com', credential: 'env:OPENAI_API_KEY', lease: null, fingerprint: 'sha256:0123456789ab', ageSeconds: 3725, ttlRemainingSeconds: null, available: true },
        'bad\u001b[2J': { upstream: 'http://127.0.0.1:1', credential: 'lease:x', lease: null, fingerprint: null, ageSeconds: null, ttlRemainingSeconds: null, available: false, extra: 1 },
      },
    });
    const lines = text.split('\n');
    expect(lines[0]).toBe('instance agent-0   identity (none: static credentials)   SHUTTING DOWN');
    expect(lines[1]).toMatch(/^ROUTE\s+AVAILABLE\s+CREDENTIAL/);
    expect(lines[2]).toMatch(/^openai\s+yes\s+env:OPENAI_API_KEY\s+-\s+sha256:0123456789ab\s+1h02m\s+-\s+https:\/\/api\.openai\.com$/);
    expect(lines[3]).toMatch(/^bad\?\[2J\s+no\s+lease:x\s+-\s+-\s+-\s+-\s+http:\/\/127\.0\.0\.1:1$/);
    expect(text).not.toContain('\u001b');
    expect(formatStatus({ instance: { id: 'a', identity: 'spiffe://x/y' }, routes: {} })).toBe('instance a   identity spiffe://x/y\n(no routes)');
    // A revocation channel that is down is on the first line; one that is up, or none, is not.
    expect(formatStatus({ instance: { id: 'a', identity: 'spiffe://x/y' }, revocations: { channel: 'down', downSeconds: 75 }, routes: {} })).toBe(
      'instance a   identity spiffe://x/y   REVOCATIONS DOWN 1m15s\n(no routes)',
    );
    expect(formatStatus({ instance: { id: 'a', identity: null }, revocations: { channel: 'up', downSeconds: null }, routes: {} }).split('\n')[0]).toBe(
      'instance a   identity (none: static credentials)',
    );
    expect([formatSeconds(0), formatSeconds(59.6), formatSeconds(61), formatSeconds(7200), formatSeconds(null)]).toEqual(['0s', '1m00s', '1m01s', '2h00m', '-']);
  });
});

describe('request.denied path (no route resolved)', () => {
  it('the path only, printable, bounded; nothing for a target that is not origin-form', () => {
    expect(auditPath('/opneai/v1/chat?key=sk-secret#x')).toBe('/opneai/v1/chat');
    expect(auditPath('/a\\b/\u00e9/\u2603')).toBe('/a%5Cb/%E9/%E2%98%83');
    expect(auditPath('http://user:pass@evil/x')).toBeUndefined();
    expect(auditPath('*')).toBeUndefined();
    expect(auditPath(undefined)).toBeUndefined();
    const long = auditPath(`/${'a'.repeat(1000)}`)!;
    expect(long.length).toBe(MAX_AUDIT_PATH + 1);
    expect(long.endsWith('…')).toBe(true);
    // A percent-encoded byte is never split by the bound.
    expect(auditPath(`/${'a'.repeat(MAX_AUDIT_PATH - 2)}\u00e9`)).toBe(`/${'a'.repeat(MAX_AUDIT_PATH - 2)}…`);
  });
});
