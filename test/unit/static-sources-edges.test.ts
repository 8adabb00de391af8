import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { CredentialSourceError } from '../../src/core/errors.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { EnvCredential, FileCredential } from '../../src/sidecar/credentials/static-sources.js';
import type { CredentialEvent } from '../../src/sidecar/credentials/types.js';
import { ValueHistory } from '../../src/sidecar/credentials/value-history.js';

/**
 * Static secret sources: what they read (trimmed, never empty, never with control
 * characters), what they report, and that a closed file source reads nothing more.
 * Real files in a temp dir; the poll interval is an hour so only explicit reads and the
 * directory watch act.
 */
let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});
const clock: Clock = { monotonicMs: () => 5_000, wallMs: () => 1_700_000_000_000 };
const HOUR = 3_600_000;
const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

function failure(events: CredentialEvent[]): CredentialSourceError {
  const e = events.find((x) => x.kind === 'refresh_failed');
  expect(e).toBeDefined();
  const err = (e as { error: unknown }).error;
  expect(err).toBeInstanceOf(CredentialSourceError);
  return err as CredentialSourceError;
}

describe('EnvCredential', () => {
  it('trims a trailing newline (as from `export X=$(cat file)`) and reports and scrubs the trimmed value', async () => {
    const events: CredentialEvent[] = [];
    const env = new EnvCredential('OPENAI_KEY', { OPENAI_KEY: '  sk-abc123\n' }, clock, (e) => events.push(e));
    expect(env.recentValues()).toEqual([]);
    await env.start();
    expect(env.current()?.value).toBe('sk-abc123');
    expect(env.recentValues()).toEqual(['sk-abc123']);
    expect(events).toEqual([{ kind: 'acquired', fingerprint: fingerprint('sk-abc123') }]);
  });
  it('refuses an unset variable, naming it and the source, and holds nothing', async () => {
    const events: CredentialEvent[] = [];
    const env = new EnvCredential('OPENAI_KEY', {}, clock, (e) => events.push(e));
    await env.start();
    expect(env.current()).toBeUndefined();
    expect(env.recentValues()).toEqual([]);
    const err = failure(events);
    expect(err.message).toBe('environment variable OPENAI_KEY is not set or empty');
    expect(err.context).toEqual({ source: 'env:OPENAI_KEY' });
  });
  it('refuses a value with control characters with its own reason', async () => {
    const events: CredentialEvent[] = [];
    const env = new EnvCredential('K', { K: 'sk-a\x01b' }, clock, (e) => events.push(e));
    await env.start();
    expect(env.current()).toBeUndefined();
    expect(failure(events).message).toBe('environment variable K holds control or non-ASCII characters');
  });
});

describe('FileCredential', () => {
  const make = (name = 'token') => {
    dir = mkdtempSync(join(tmpdir(), 'leash-static-'));
    const events: CredentialEvent[] = [];
    const path = join(dir, name);
    return { path, events, cred: new FileCredential(path, HOUR, clock, (e) => events.push(e)) };
  };

  it('refuses an empty (whitespace-only) file: nothing is injected', async () => {
    const { path, events, cred } = make();
    writeFileSync(path, '\n  \n');
    await cred.start();
    expect(cred.current()).toBeUndefined();
    const err = failure(events);
    expect(err.message).toBe(`credential file ${path} is empty`);
    expect(err.context).toEqual({ source: `file:${path}` });
    expect(cred.description).toBe(`file:${path}`);
    await cred.close();
  });

  it('refuses a file holding control characters', async () => {
    const { path, events, cred } = make();
    writeFileSync(path, 'sk-a\x00b\n');
    await cred.start();
    expect(cred.current()).toBeUndefined();
    const err = failure(events);
    expect(err.message).toBe(`credential file ${path} holds control or non-ASCII characters`);
    expect(err.context).toEqual({ source: `file:${path}` });
    await cred.close();
  });

  it('names the errno of a path that cannot be read (a directory) and the source', async () => {
    const { path, events, cred } = make();
    mkdirSync(path);
    await cred.start();
    expect(cred.current()).toBeUndefined();
    const err = failure(events);
    expect(err.message).toBe(`cannot read credential file ${path}: EISDIR`);
    expect(err.context).toEqual({ source: `file:${path}` });
    await cred.close();
  });

  it('trims the trailing newline and reports nothing when a re-read finds the same value', async () => {
    const { path, events, cred } = make();
    writeFileSync(path, 'sk-file-1\n');
    await cred.start();
    expect(cred.current()?.value).toBe('sk-file-1');
    await cred.refresh();
    await cred.refresh();
    expect(events).toEqual([{ kind: 'acquired', fingerprint: fingerprint('sk-file-1') }]);
    await cred.close();
  });

  it('after close, neither a changed file nor an explicit refresh reads anything', async () => {
    const { path, events, cred } = make();
    writeFileSync(path, 'sk-file-1');
    await cred.start();
    await cred.close();
    writeFileSync(path, 'sk-file-2');
    await settle();
    await cred.refresh();
    expect(cred.current()?.value).toBe('sk-file-1');
    expect(events).toHaveLength(1);
  });

  it('closes cleanly when the directory could not be watched (it does not exist)', async () => {
    const events: CredentialEvent[] = [];
    const cred = new FileCredential(join(tmpdir(), 'leash-no-such-dir-', String(process.pid), 'token'), HOUR, clock, (e) => events.push(e));
    await cred.start();
    expect(cred.current()).toBeUndefined();
    await expect(cred.close()).resolves.toBeUndefined();
  });
});

describe('ValueHistory', () => {
  it('holds no values before the first is added', () => {
    expect(new ValueHistory(4).values(0)).toEqual([]);
  });
});
