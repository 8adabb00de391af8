import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { runLeash } from '../helpers/spawn.js';
import { makeCa } from '../helpers/proxy-tls.js';

/**
 * A private key where a file path belongs, as containers are handed keys that must fit on
 * one line: base64 of the PEM file (`CA_KEY_B64`, a Secret's data as written) or the PEM
 * body joined into one line (base64 DER). Neither has a line break nor a PEM header, and
 * base64 holds `/`, which cut the value into short path segments no secret shape was found
 * in: `ca.keyFile: ${CA_KEY_B64}` was called a valid path by `leash check` and printed by
 * `leash authority` as `cannot read LS0tLS1CRUdJTi… (ENOENT)` — the key, in the log.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-path-encoded-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o600);
  return p;
};

const keys = {
  ec: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  rsa: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey,
  ed25519: generateKeyPairSync('ed25519').privateKey,
};
const CONTENTS: Record<string, string> = {};
for (const [kind, key] of Object.entries(keys)) {
  const pem = key.export({ format: 'pem', type: 'pkcs8' }).toString();
  CONTENTS[`${kind} key, base64 of the PEM file`] = Buffer.from(pem).toString('base64');
  CONTENTS[`${kind} key, PEM body on one line`] = pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  if (kind !== 'ed25519') CONTENTS[`${kind} key, base64 of a traditional PEM`] = Buffer.from(key.export({ format: 'pem', type: kind === 'ec' ? 'sec1' : 'pkcs1' }).toString()).toString('base64');
}
/** Every 8-character piece of the value (what an echo, cut or not, would show). */
const expectNone = (secret: string, text: string, what: string) => {
  for (let i = 0; i + 8 <= secret.length; i++) expect(text.includes(secret.slice(i, i + 8)), `${what}: contains "${secret.slice(i, i + 8)}"`).toBe(false);
};

const ca = file('ca.pem', makeCa().certPem);
const authority = (at: string) => `listen: 127.0.0.1:0
trustDomain: leash.local
ca: { certFile: ${ca}, keyFile: ${at === 'ca.keyFile' ? '"${V}"' : ca} }
${at === 'tls.keyFile' ? `tls: { certFile: ${ca}, keyFile: "\${V}" }` : ''}
credentials:
  gh: { kind: static, source: { env: CS } }
policies:
  - { identities: ["join:dev-*"], credentials: [gh], maxTtl: 1h }
`;

describe('a file path that is a key encoded on one line', () => {
  it('leash check: refused at its key path, never shown', () => {
    for (const at of ['ca.keyFile', 'tls.keyFile']) {
      for (const [what, value] of Object.entries(CONTENTS)) {
        let out = '';
        const status = runCheck(file('authority.yaml', authority(at)), { V: value, CS: 'x' }, (l) => void (out += `${l}\n`), (l) => void (out += `${l}\n`));
        const label = `${at} ← ${what}`;
        expect(status, `${label}\n${out}`).toBe(1);
        expect(out, label).toContain(`${at}: must be the path of a file, not its contents`);
        expectNone(value, out, label);
      }
    }
  });

  it('leash authority at start: the same, the key nowhere in its output', () => {
    const value = CONTENTS['ec key, base64 of the PEM file']!;
    const r = runLeash(['authority', '--config', file('start.yaml', authority('ca.keyFile'))], { V: value, CS: 'x' });
    expect(r.status, r.stderr).toBe(1);
    expectNone(value, r.stdout + r.stderr, 'leash authority');
  }, 60_000);

  it('paths that are paths, base64-looking names included, still pass', () => {
    for (const p of ['/var/run/secrets/kubernetes.io/serviceaccount/ca.crt', '/tmp/leash-x-c8A7k4QzR2mN5pL9wT3vY6bH1jF0dS/ca.pem', '/etc/leash/aGVsbG8gd29ybGQgdGhpcyBpcyBhIGRpcg==/key.pem']) {
      let out = '';
      runCheck(file('ok.yaml', authority('ca.keyFile')), { V: p, CS: 'x' }, (l) => void (out += `${l}\n`), (l) => void (out += `${l}\n`));
      expect(out, p).not.toContain('must be the path of a file, not its contents');
    }
  });
});
