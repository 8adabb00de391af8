import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { redisTargetFrom } from '../../src/bus/target.js';
import { resolveRedisTarget } from '../../src/bin/files.js';
import { ConfigError } from '../../src/core/errors.js';

/** The config form of a Redis target → the resolved one (bus/target.ts), as the entry points read passwords (bin/files.ts). */
const sentinels = [{ host: '127.0.0.1', port: 26379 }];

describe('redisTargetFrom', () => {
  it('a URL as is; Sentinel and Cluster with the password the reader gives', () => {
    expect(redisTargetFrom('redis://127.0.0.1:6379/0', () => 'unused')).toBe('redis://127.0.0.1:6379/0');
    expect(redisTargetFrom({ sentinels, name: 'm', password: { env: 'P' } }, () => 'pw')).toEqual({ sentinels, name: 'm', password: 'pw' });
    expect(redisTargetFrom({ cluster: sentinels, password: { env: 'P' } }, () => 'pw')).toEqual({ cluster: sentinels, password: 'pw' });
    expect(redisTargetFrom({ cluster: sentinels }, () => 'never asked')).toEqual({ cluster: sentinels, password: undefined });
  });
});

describe('resolveRedisTarget (entry points)', () => {
  it('reads a password file (trimmed) and an environment variable', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'leash-redis-')), 'pw');
    writeFileSync(file, 'from-file\n');
    const fromFile = resolveRedisTarget({ sentinels, name: 'm', password: { file } }, {}, 'revocations.redis');
    expect(fromFile).toEqual({ sentinels, name: 'm', password: 'from-file', readPassword: expect.any(Function) });
    // A file is read again at each reconnection (a rotated Secret: docs/operations.md).
    writeFileSync(file, 'rotated\n');
    expect((fromFile as { readPassword: () => string }).readPassword()).toBe('rotated');
    expect(resolveRedisTarget({ cluster: sentinels, password: { env: 'RPW' } }, { RPW: 'from-env' }, 'audit.redis')).toEqual({ cluster: sentinels, password: 'from-env' });
  });

  it('an unset password variable is a ConfigError naming the key, never a connection without the password', () => {
    const t = () => resolveRedisTarget({ sentinels, name: 'm', password: { env: 'MISSING_PW' } }, {}, 'audit.redis');
    expect(t).toThrow(ConfigError);
    expect(t).toThrow(/audit\.redis\.password: environment variable MISSING_PW is not set/);
  });
});
