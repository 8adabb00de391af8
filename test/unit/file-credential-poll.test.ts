import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { FileCredential } from '../../src/sidecar/credentials/static-sources.js';
import type { CredentialEvent } from '../../src/sidecar/credentials/types.js';

/**
 * The stat poll of a `{ file }` credential (20 ms here): it re-reads only when the file's
 * stat changes — a missing file and a file refused for its content are not re-read (and
 * re-reported) at every tick — except a file that could not be read at all, which is tried
 * again at every tick. When the directory cannot be watched the poll alone sees the file
 * appear.
 */
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});
const clock: Clock = { monotonicMs: () => 5_000, wallMs: () => 1_700_000_000_000 };
const POLL = 20;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const failures = (events: CredentialEvent[]) => events.filter((e) => e.kind === 'refresh_failed').length;

describe('FileCredential stat poll', () => {
  it('with an unwatchable (missing) directory, reports the missing file once and picks it up when it appears', async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-poll-'));
    const sub = join(dir, 'secret');
    const events: CredentialEvent[] = [];
    const cred = new FileCredential(join(sub, 'token'), POLL, clock, (e) => events.push(e));
    await cred.start();
    await wait(10 * POLL);
    expect(failures(events)).toBe(1);
    expect(cred.current()).toBeUndefined();
    mkdirSync(sub);
    writeFileSync(join(sub, 'token'), 'sk-polled\n');
    // Up to 2 s for a loaded machine; a few ticks normally.
    for (let i = 0; i < 100 && !cred.current(); i++) await wait(POLL);
    expect(cred.current()?.value).toBe('sk-polled');
    expect(events.at(-1)).toEqual({ kind: 'acquired', fingerprint: fingerprint('sk-polled') });
    await cred.close();
  });

  it('does not re-read an unchanged file refused for its content', async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-poll-'));
    const path = join(dir, 'token');
    writeFileSync(path, '\n');
    const events: CredentialEvent[] = [];
    const cred = new FileCredential(path, POLL, clock, (e) => events.push(e));
    await cred.start();
    await wait(10 * POLL);
    expect(failures(events)).toBe(1);
    await cred.close();
  });

  it('tries a path that could not be read (a directory: EISDIR) again at every tick', async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-poll-'));
    const path = join(dir, 'token');
    mkdirSync(path);
    const events: CredentialEvent[] = [];
    const cred = new FileCredential(path, POLL, clock, (e) => events.push(e));
    await cred.start();
    await wait(10 * POLL);
    expect(failures(events)).toBeGreaterThanOrEqual(3);
    await cred.close();
  });
});
