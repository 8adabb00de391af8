import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { runLeash } from '../helpers/spawn.js';
import { makeCa } from '../helpers/proxy-tls.js';

/**
 * A file's contents where its path belongs. Containers are often handed a key as the
 * variable's value, and `ca.keyFile: ${CA_KEY}` is then the CA's private key as a path:
 * `leash check` called the file valid, and `leash authority` stopped with
 * `ca.keyFile: cannot read -----BEGIN PRIVATE KEY----- MIG… (ENOENT)`, the whole key in
 * its log. Secret *sources* were refused so; no other path key was. Every path key of
 * every kind of file, with a private key, a certificate, a service-account JWT or a
 * vendor key in it: refused by check and at start, the key path named, the contents
 * nowhere in the output.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-path-contents-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o600);
  return p;
};

const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const rsaKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs1' }).toString();
// The keys are generated per run (ecKey, rsaKey); the JWT and the vendor key are made up,
// vendor-shaped, never real.
const CONTENTS: Record<string, string> = {
  'EC private key': ecKey,
  'RSA private key': rsaKey,
  'private key body': ecKey.split('\n').slice(1, -2).join('\n'),
  'service-account JWT':
    'eyJhbGciOiJSUzI1NiIsImtpZCI6IjNmYzEifQ.eyJhdWQiOlsibGVhc2giXSwiZXhwIjoxNzk5OTk5OTk5LCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YWdlbnRzOmJvdCJ9.c2lnbmF0dXJlLWJ5dGVzLWZvci10ZXN0aW5nLW9ubHk',
  'vendor key': 'sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u',
};
/** Every 8-character piece of each line of the contents (a line is what an echo would cut). */
const pieces = (secret: string) =>
  secret
    .split('\n')
    .filter((l) => !l.startsWith('-----'))
    .flatMap((l) => Array.from({ length: Math.max(0, l.length - 7) }, (_, i) => l.slice(i, i + 8)));
const expectNone = (secret: string, text: string, what: string) => {
  for (const p of pieces(secret)) expect(text.includes(p), `${what}: contains "${p}"`).toBe(false);
};

const ca = file('ca.pem', makeCa().certPem);
const authority = (at: string) => `listen: 127.0.0.1:0
trustDomain: leash.local
${at === 'ca.certFile' ? `ca: { certFile: "\${V}", keyFile: ${ca} }` : at === 'ca.keyFile' ? `ca: { certFile: ${ca}, keyFile: "\${V}" }` : ''}
${at === 'tls.certFile' ? `tls: { certFile: "\${V}", keyFile: ${ca} }` : at === 'tls.keyFile' ? `tls: { certFile: ${ca}, keyFile: "\${V}" }` : ''}
${at === 'signing.keysDir' ? 'signing: { keysDir: "${V}" }' : ''}
${at.startsWith('kubernetes.') ? `kubernetes: { ${at.slice(11)}: "\${V}" }` : ''}
credentials:
  gh:
    kind: oauth2
    tokenUrl: https://idp.example/token
    clientId: leash
    clientSecret: { env: CS }
${at === 'credentials.gh.caFile' ? '    caFile: "${V}"' : ''}
policies:
  - { identities: ["join:dev-*"], credentials: [gh], maxTtl: 1h }
`;
const sidecar = (at: string) => `listen: 127.0.0.1:0
admin: 127.0.0.1:0
authority:
  url: https://authority.example:8443
  caFile: ${at === 'authority.caFile' ? '"${V}"' : ca}
  bootstrap: ${at === 'authority.bootstrap.kubernetes.tokenFile' ? '{ kubernetes: { tokenFile: "${V}" } }' : '{ joinToken: { env: JT } }'}
routes:
  r:
    upstream: https://api.example.com
    credential: { env: RK }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
${at === 'routes.r.caFile' ? '    caFile: "${V}"' : ''}
`;
const injector = (at: string) => `listen: 127.0.0.1:0
tls: { certFile: ${at === 'tls.certFile' ? '"${V}"' : ca}, keyFile: ${at === 'tls.keyFile' ? '"${V}"' : ca} }
image: ghcr.io/example/leash:0.9.0
authority:
  url: https://authority.example:8443
  caConfigMap: { name: leash-authority-ca, key: ca.crt }
routes:
  r:
    upstream: https://api.example.com
    credential: r
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
    ${at === 'routes.r.caFile' ? 'caFile: "${V}"' : ''}
`;

const CASES: Array<[kind: string, at: string, text: (at: string) => string]> = [
  ...['ca.certFile', 'ca.keyFile', 'tls.certFile', 'tls.keyFile', 'signing.keysDir', 'kubernetes.caFile', 'kubernetes.tokenFile', 'credentials.gh.caFile'].map((at) => ['authority', at, authority] as [string, string, (at: string) => string]),
  ...['authority.caFile', 'authority.bootstrap.kubernetes.tokenFile', 'routes.r.caFile'].map((at) => ['sidecar', at, sidecar] as [string, string, (at: string) => string]),
  ...['tls.certFile', 'tls.keyFile', 'routes.r.caFile'].map((at) => ['injector', at, injector] as [string, string, (at: string) => string]),
];

function check(path: string, env: Record<string, string>) {
  let out = '';
  const status = runCheck(path, env, (l) => void (out += `${l}\n`), (l) => void (out += `${l}\n`));
  return { status, out };
}

describe('a file path that is a file\'s contents', () => {
  it('leash check: refused at its key path, never shown', () => {
    for (const [kind, at, text] of CASES) {
      for (const [what, value] of Object.entries(CONTENTS)) {
        const r = check(file(`${kind}.yaml`, text(at)), { V: value, CS: 'x', RK: 'x', JT: 'x' });
        const label = `${kind} ${at} ← ${what}`;
        expect(r.status, `${label}\n${r.out}`).toBe(1);
        expect(r.out, label).toContain(`${at}: must be the path of a file, not its contents`);
        expectNone(value, r.out, label);
      }
    }
  });

  it('leash authority and leash sidecar at start: the same, nothing served', () => {
    const starts: Array<[string, string, string]> = [
      ['authority', 'ca.keyFile', authority('ca.keyFile')],
      ['authority', 'tls.keyFile', authority('tls.keyFile')],
      ['sidecar', 'routes.r.caFile', sidecar('routes.r.caFile')],
      ['sidecar', 'authority.caFile', sidecar('authority.caFile')],
    ];
    for (const [command, at, text] of starts) {
      const r = runLeash([command, '--config', file(`${command}-start.yaml`, text)], { V: ecKey, CS: 'x', RK: 'x', JT: 'x' });
      expect(r.status, `${command} ${at}\n${r.stderr}`).toBe(1);
      expect(r.stderr).toContain(`${at}: must be the path of a file, not its contents`);
      expectNone(ecKey, r.stdout + r.stderr, `${command} ${at}`);
    }
  }, 60_000);

  it('paths that are paths still pass', () => {
    const r = check(file('ok.yaml', sidecar('routes.r.caFile')), { V: ca, RK: 'x', JT: 'x' });
    expect(r.status, r.out).toBe(0);
  });
});
