import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { runLeash } from '../helpers/spawn.js';
import { makeCa } from '../helpers/proxy-tls.js';

const CA_PEM = makeCa().certPem;


/**
 * `leash check` is how a config is reviewed, and the config may be anyone's (a pull
 * request). Its keys, values and paths are printed in the plan, the warnings and the
 * problems, and every command prints a config error the same way: an escape sequence
 * there (`\e[8m` conceals every line after it, `\e[1A\e[2K` erases the one before, a C1
 * CSI, a bidi override, a CR) could hide the warning about a group-readable key file or
 * an admin listener off loopback, or forge a line. Nothing but printable text and the
 * line breaks leash writes itself may reach the terminal.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-check-terminal-'));
const file = (name: string, text: string, mode = 0o600) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};

const CONTROLS = ['\x1b[8m', '\x1b]0;pwned\x07', '\x1b[1A\x1b[2K', '\x9b2J', '\r', '\u202e', '\u200b'];
/** Anything a terminal would act on or hide, except the newline. */
const UNSAFE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/;
const q = (s: string) => JSON.stringify(s); // a JSON string is a YAML double-quoted scalar
/** `c` where a line break is refused (a format, an allow rule, a username, a CA or key path): nothing for CR. */
const inLine = (c: string) => (/[\r\n]/.test(c) ? '' : c);

/** In process: the matrix is large (the CLI itself is run below). */
function check(path: string, env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const status = runCheck(path, env, (l) => void (stdout += `${l}\n`), (l) => void (stderr += `${l}\n`));
  return { status, all: stdout + stderr };
}

/** A sidecar file with `c` in every printed value that takes it. */
const sidecar = (c: string, ca: string, r = inLine(c)) => `listen: 127.0.0.1:0
admin: 127.0.0.1:0
routes:
  r:
    upstream: https://api.example.com
    credential: { file: ${q(join(dir, `cred${c}`))} }
    inject: { header: authorization, format: ${q(`Bearer${r} {{credential}}`)} }
    allow: [${q(`GET /v1/x${r}/**`)}]
    caFile: ${q(ca)}
  s:
    upstream: https://api.example.com
    credential: { env: RK }
    inject: { basic: { username: ${q(`u${r}ser`)} } }
    allow: ["GET /**"]
`;

const authority = (c: string) => `listen: 127.0.0.1:0
trustDomain: leash.local
ca: { certFile: ${q(file(`cert${c.length}.pem`, 'x'))}, keyFile: ${q(file(`key${inLine(c)}.pem`, 'x', 0o644))} }
signing: { keysDir: ${q(join(dir, `keys${inLine(c)}`))} }
admin: { token: { file: ${q(join(dir, `token${c}`))} } }
credentials:
  openai: { kind: static, source: { file: ${q(join(dir, `openai${c}`))} } }
policies:
  - { identities: ["join:dev-*"], credentials: [openai], maxTtl: 1h }
`;

describe('leash check prints no terminal control from the file', () => {
  it('a valid sidecar file: plan and warnings', () => {
    for (const c of CONTROLS) {
      const r = check(file('s.yaml', sidecar(c, file(`ca${inLine(c)}.pem`, CA_PEM))), { RK: 'x' });
      expect(r.status, JSON.stringify(c) + r.all).toBe(0);
      expect(r.all).toContain('warning: ');
      expect(r.all, JSON.stringify(c)).not.toMatch(UNSAFE);
    }
  });

  it('a valid authority file: plan and warnings', () => {
    for (const c of CONTROLS) {
      const r = check(file('a.yaml', authority(c)));
      expect(r.status, JSON.stringify(c) + r.all).toBe(0);
      expect(r.all).toContain('is readable or writable by group/others');
      expect(r.all, JSON.stringify(c)).not.toMatch(UNSAFE);
    }
  });

  it('problems: an unknown key, an unreadable caFile', () => {
    for (const c of CONTROLS) {
      const r = check(file('p.yaml', `${q(`x${c}`)}: 1\n${sidecar(c, join(dir, `missing${inLine(c)}`))}`), { RK: 'x' });
      expect(r.status, JSON.stringify(c)).toBe(1);
      expect(r.all).toContain('unknown key');
      expect(r.all).toContain('caFile: cannot read');
      expect(r.all, JSON.stringify(c)).not.toMatch(UNSAFE);
    }
  });

  it('a config error from any command, and check itself, as processes', () => {
    const bad = file('bad.yaml', `${q('x\x1b[2J\x1b]0;pwned\x07')}: 1\n${sidecar('\x1b[8m', join(dir, 'missing'))}`);
    const cases: Array<[string[], RegExp]> = [
      [['sidecar', '--config', bad], /unknown key/],
      [['authority', '--config', bad], /unknown key/],
      [['dev', '--config', bad], /leash dev takes/],
      [['check', '--config', bad], /unknown key/],
    ];
    for (const [args, said] of cases) {
      const r = runLeash(args, { RK: 'x' });
      expect(r.status, args[0]).toBe(1);
      expect(r.stderr, args[0]).toMatch(said);
      expect(r.stdout + r.stderr, args[0]).not.toMatch(UNSAFE);
    }
  });
});
