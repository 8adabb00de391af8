import { createHash } from 'node:crypto';

/**
 * A lease answer as the authority sends it, for the tests of the sidecar's lease-answer gate.
 * Every value here is a made-up test fixture (`sk-live-0123…` is not a real key).
 */
export const NOW = Date.parse('2026-01-01T00:00:00.000Z');
export const fp = (v: string) => `sha256:${createHash('sha256').update(v).digest('hex').slice(0, 12)}`;
export const b64 = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');

/** A valid answer for `value`, issued at NOW for 300 s, with `over` replacing fields. */
export function validLeaseAnswer(value = 'sk-live-0123456789abcdef', over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    lease: 'Lx2u_kd7Q-9aZ',
    credential: 'openai',
    value,
    fingerprint: fp(value),
    version: 'v1',
    issuedAt: new Date(NOW).toISOString(),
    expiresAt: new Date(NOW + 300_000).toISOString(),
    ttlSeconds: 300,
    ...over,
  };
}
