import { describe, expect, it } from 'vitest';
import { AnomalyDetector, isLoopback, type AnomalyPolicy, type ObservedRequest } from '../../src/sidecar/anomalies.js';

class FakeClock {
  t = 1_000;
  monotonicMs = () => this.t;
  wallMs = () => this.t;
}

const policy: AnomalyPolicy = {
  learningWindowMs: 10_000,
  clientWindowMs: 60_000,
  authFailureBurst: { count: 3, windowMs: 5_000 },
  maxOperations: 4,
  maxClients: 2,
};

const req = (over: Partial<ObservedRequest> = {}): ObservedRequest => ({
  route: 'openai',
  credential: 'openai-key',
  method: 'GET',
  rule: 'GET /v1/models/*',
  remote: '127.0.0.1',
  ...over,
});

describe('anomaly detector: new operations', () => {
  it('learns silently during the window, then reports each new (credential, method, rule) once', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    expect(d.request(req())).toBeUndefined();
    clock.t += 9_999;
    expect(d.request(req({ method: 'POST', rule: 'POST /v1/chat/completions' }))).toBeUndefined();
    clock.t += 1;
    // Known operations stay quiet after the window.
    expect(d.request(req())).toBeUndefined();
    expect(d.request(req({ method: 'POST', rule: 'POST /v1/chat/completions' }))).toBeUndefined();
    expect(d.request(req({ method: 'DELETE', rule: '* /v1/files/*' }))).toEqual([
      { kind: 'new_operation', route: 'openai', credential: 'openai-key', method: 'DELETE', rule: '* /v1/files/*' },
    ]);
    expect(d.request(req({ method: 'DELETE', rule: '* /v1/files/*' }))).toBeUndefined();
    // Same rule and method under another credential is another operation.
    expect(d.request(req({ credential: 'other' }))?.map((a) => a.kind)).toEqual(['new_operation']);
  });

  it('ignores refused requests (no rule) and is bounded: past maxOperations nothing more is remembered or reported', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    clock.t += 20_000;
    expect(d.request(req({ rule: undefined }))).toBeUndefined();
    for (let i = 0; i < 4; i++) expect(d.request(req({ rule: `GET /r${i}` }))).toHaveLength(1);
    expect(d.request(req({ rule: 'GET /r4' }))).toBeUndefined();
    expect(d.request(req({ rule: 'GET /r5' }))).toBeUndefined();
    expect(d.untracked).toBe(2);
  });
});

describe('anomaly detector: non-loopback clients', () => {
  it('knows loopback addresses', () => {
    for (const a of ['127.0.0.1', '127.0.0.2', '127.255.0.9', '::1', '::ffff:127.0.0.1', undefined]) expect(isLoopback(a)).toBe(true);
    for (const a of ['10.0.0.5', '192.168.1.2', '::ffff:10.0.0.5', 'fe80::1', '2001:db8::1', '128.0.0.1']) expect(isLoopback(a)).toBe(false);
  });

  it('reports a client once per window, whatever the route, and again after the window', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    expect(d.request(req({ remote: '127.0.0.2' }))).toBeUndefined();
    expect(d.request(req({ remote: '10.0.0.5' }))).toEqual([{ kind: 'non_loopback_client', route: 'openai', client: '10.0.0.5' }]);
    expect(d.request(req({ remote: '10.0.0.5', route: undefined }))).toBeUndefined();
    clock.t += 59_999;
    expect(d.request(req({ remote: '10.0.0.5' }))).toBeUndefined();
    clock.t += 1;
    expect(d.request(req({ remote: '10.0.0.5', route: undefined }))).toEqual([{ kind: 'non_loopback_client', route: undefined, client: '10.0.0.5' }]);
  });

  it('remembers at most maxClients addresses (the oldest reported is forgotten first)', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    expect(d.request(req({ remote: '10.0.0.1' }))).toHaveLength(1);
    expect(d.request(req({ remote: '10.0.0.2' }))).toHaveLength(1);
    expect(d.request(req({ remote: '10.0.0.3' }))).toHaveLength(1); // evicts .1
    expect(d.request(req({ remote: '10.0.0.3' }))).toBeUndefined();
    expect(d.request(req({ remote: '10.0.0.2' }))).toBeUndefined();
    expect(d.request(req({ remote: '10.0.0.1' }))).toHaveLength(1); // forgotten, so reported again
  });

  it('reports both a new operation and a new client from one request', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    clock.t += 10_000;
    expect(d.request(req({ remote: '10.1.1.1' }))?.map((a) => a.kind)).toEqual(['non_loopback_client', 'new_operation']);
  });
});

describe('anomaly detector: 401/403 bursts', () => {
  it('reports count failures within the window once, for as long as they keep coming', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    expect(d.authFailure('openai')).toBeUndefined();
    clock.t += 1_000;
    expect(d.authFailure('openai')).toBeUndefined();
    expect(d.authFailure('other')).toBeUndefined(); // per route
    clock.t += 1_000;
    expect(d.authFailure('openai')).toEqual({ kind: 'auth_failure_burst', route: 'openai', count: 3, windowMs: 5_000 });
    // The same burst goes on: each failure within a window of the last extends it, silently.
    for (let i = 0; i < 10; i++) {
      clock.t += 4_000;
      expect(d.authFailure('openai')).toBeUndefined();
    }
    // A quiet window ends it; the next burst is reported again.
    clock.t += 5_000;
    expect(d.authFailure('openai')).toBeUndefined();
    expect(d.authFailure('openai')).toBeUndefined();
    expect(d.authFailure('openai')?.kind).toBe('auth_failure_burst');
  });

  it('failures spread wider than the window are no burst', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, policy);
    for (let i = 0; i < 20; i++) {
      expect(d.authFailure('openai')).toBeUndefined();
      clock.t += 2_500;
    }
  });
});

describe('anomaly detector: hot path', () => {
  // Its cost per request is measured by the proxy's benches (bench/), not timed here: a timed
  // assertion fails on a loaded machine and proves nothing on a quiet one.
  it('a known operation from a loopback client stays quiet however often it comes', () => {
    const clock = new FakeClock();
    const d = new AnomalyDetector(clock, { ...policy, maxOperations: 10_000 });
    const r = req();
    d.request(r);
    clock.t += 20_000; // past the learning window
    let reported = 0;
    for (let i = 0; i < 200_000; i++) if (d.request(r) !== undefined) reported++;
    expect(reported).toBe(0);
    expect(d.request(req({ method: 'DELETE', rule: '* /v1/files/*' }))?.map((a) => a.kind)).toEqual(['new_operation']);
  });
});
