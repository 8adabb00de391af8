import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { FileCredential, REREAD_ON_REQUEST_MS } from '../../src/sidecar/credentials/static-sources.js';
import type { CredentialEvent } from '../../src/sidecar/credentials/types.js';

/**
 * A `{ file }` credential that is missing: every request that finds no credential asks for
 * a re-read (onUnavailable), and every failed read is a `credential.refresh_failed` audit
 * event and a counted failure. Agents retry a 503 in tight loops, so re-reads asked for by
 * requests are at most one per REREAD_ON_REQUEST_MS (monotonic clock, injected here); the
 * directory watch still sees a restored file at once.
 */
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function manualClock(): Clock & { advance(ms: number): void } {
  let mono = 1_000_000;
  return { monotonicMs: () => mono, wallMs: () => 1_700_000_000_000 + mono, advance: (ms) => void (mono += ms) };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('FileCredential: re-reads asked for by requests', () => {
  it('a burst of requests on a missing file re-reads once, and once more only after the interval', async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-reread-'));
    const clock = manualClock();
    const events: CredentialEvent[] = [];
    const cred = new FileCredential(join(dir, 'token'), 3_600_000, clock, (e) => events.push(e));
    await cred.start();
    const failures = () => events.filter((e) => e.kind === 'refresh_failed').length;
    expect(failures()).toBe(1); // the read at start

    for (let i = 0; i < 50; i++) {
      cred.onUnavailable();
      await settle();
    }
    expect(failures()).toBe(2); // the first request's re-read; the other 49 within the interval

    clock.advance(REREAD_ON_REQUEST_MS - 1);
    cred.onUnavailable();
    await settle();
    expect(failures()).toBe(2);
    clock.advance(1);
    cred.onUnavailable();
    await settle();
    expect(failures()).toBe(3);
    await cred.close();
  });

  it('a file restored within the interval is picked up by the directory watch, not held back', async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-reread-'));
    const clock = manualClock();
    const events: CredentialEvent[] = [];
    const path = join(dir, 'token');
    const cred = new FileCredential(path, 3_600_000, clock, (e) => events.push(e));
    await cred.start();
    cred.onUnavailable(); // uses up the interval
    await settle();
    expect(cred.current()).toBeUndefined();
    writeFileSync(path, 'made-up-file-value-3c9e1a7b'); // made up: no real key
    const deadline = Date.now() + 3_000;
    while (!cred.current() && Date.now() < deadline) await settle();
    expect(cred.current()?.value).toBe('made-up-file-value-3c9e1a7b');
    expect(events.map((e) => e.kind)).toContain('acquired');
    await cred.close();
  });
});
