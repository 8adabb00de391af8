import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { runLeash } from '../helpers/spawn.js';

/**
 * An exec credential's command gets no variables but PATH and LEASH_*, so the key it
 * mints with is tempting to pass as an argument (`["mint", "--key", "${GH_APP_KEY}"]`).
 * Arguments are readable by every local user (`ps`, /proc/<pid>/cmdline) while the
 * command runs, once per lease; `leash check` called such a file valid and the authority
 * ran it. An argument that is, or has a word that is, a vendor key, a JWT, PEM or
 * `Bearer …` is now refused like an inline secret, without echo.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-exec-argv-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o600);
  return p;
};

// Made up for this test, vendor-shaped: never real keys (the JWT's signature is the text
// "signature-bytes-for-testing-only").
const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJnaXRodWItYXBwIiwiaWF0IjoxNzk5OTk5OTk5fQ.c2lnbmF0dXJlLWJ5dGVzLWZvci10ZXN0aW5nLW9ubHk';
const KEYS = ['ghp_R8sT2vX5bN9mQ1wE4yU7iO0pA3sD6fG9hJ2k', 'sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u', 'AKIAQ2WERT5YUIOP7ASD', JWT];
const SECRET_ARGS = [
  ...KEYS,
  ...KEYS.map((k) => `--token=${k}`),
  ...KEYS.map((k) => `Authorization: Bearer ${k}`),
  'Bearer 4f9d2c7e81b36a05d9e4c1f7a2b8e6d3',
  '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----',
];
const PLAIN_ARGS = ['/usr/local/bin/mint', '--key-file', '/etc/gh/app.pem', '--ttl=3600', 'https://api.github.com/app/installations/42/access_tokens', '7f6c1e2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b', '--profile=prod'];

const authority = (args: string[]) => `listen: 127.0.0.1:0
trustDomain: leash.local
credentials:
  gh: { kind: exec, command: ${JSON.stringify(['/usr/local/bin/mint', ...args])} }
policies:
  - { identities: ["join:dev-*"], credentials: [gh], maxTtl: 1h }
`;
const pieces = (secret: string) =>
  secret
    .split(/[\s=]+/)
    .filter((w) => w.length >= 8 && !w.startsWith('-----') && w !== 'Authorization:')
    .flatMap((w) => Array.from({ length: w.length - 7 }, (_, i) => w.slice(i, i + 8)));

function check(text: string) {
  let out = '';
  const status = runCheck(file('a.yaml', text), {}, (l) => void (out += `${l}\n`), (l) => void (out += `${l}\n`));
  return { status, out };
}

describe('exec command arguments', () => {
  it('a secret among them: refused at its index, never shown', () => {
    for (const arg of SECRET_ARGS) {
      const r = check(authority(['--key', arg]));
      expect(r.status, `${JSON.stringify(arg)}\n${r.out}`).toBe(1);
      expect(r.out).toContain("credentials.gh.command[2]: looks like a secret written inline: a command's arguments are visible to every local user");
      for (const p of pieces(arg)) expect(r.out.includes(p), `${JSON.stringify(arg)}: contains "${p}"`).toBe(false);
    }
  });

  it('ordinary arguments pass', () => {
    const r = check(authority(PLAIN_ARGS));
    expect(r.status, r.out).toBe(0);
  });

  it('leash authority refuses it at start', () => {
    const r = runLeash(['authority', '--config', file('start.yaml', authority(['--key', '${GH_KEY}']))], { GH_KEY: KEYS[0]! });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain('credentials.gh.command[2]: looks like a secret written inline');
    for (const p of pieces(KEYS[0]!)) expect(r.stdout + r.stderr).not.toContain(p);
  });
});
