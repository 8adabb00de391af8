import { spawn } from 'node:child_process';
import { fingerprint } from '../../core/fingerprint.js';
import { looksLikeSecret } from '../../config/secret-shape.js';
import { isUsableLeaseValue, MAX_LEASE_VALUE } from '../../core/protocol.js';
import { IssuerError, issuerLabel } from './errors.js';
import type { IssueRequest, Issued, Issuer } from './types.js';

export interface ExecIssuerOptions {
  /** argv; run without a shell. argv[0] is a path or a name looked up in PATH. */
  command: readonly string[];
  /** The injected environment: PATH (and any `passEnv` names) are taken from it, nothing else. */
  env?: Readonly<Record<string, string | undefined>>;
  /** More variable names to pass through from `env` (e.g. AWS_PROFILE). */
  passEnv?: readonly string[];
  /** Cap on the lease lifetime, and the lifetime when the command gives neither ttlSeconds nor expiresAt. */
  ttlMs?: number;
  /** Default 10 s; on expiry the whole process group gets SIGKILL. */
  timeoutMs?: number;
  /**
   * Commands of this issuer running at once; more leases wait for a free slot (their
   * wait counts against timeoutMs). Default 16: a fleet starting together, or many
   * identities each within their rate limit, cannot fork without bound on the authority.
   */
  maxConcurrent?: number;
  /** stdout beyond this fails the call (and kills the command). Default 64 KiB. */
  maxOutputBytes?: number;
  cwd?: string;
  /** Credential name, for error messages. */
  credential?: string;
}

const STDERR_SHOWN = 200;

/**
 * stderr is the command's free text: `curl -v`, `set -x` and SDK errors print the token or
 * the key they sent there. Every word that looks like a secret (a vendor key, a JWT, PEM,
 * random-looking base64/hex…, config/secret-shape.ts) is replaced before anything is shown.
 */
const redactSecrets = (text: string): string => {
  const parts = text.split(/([\s"'`,;=:()<>[\]{}]+)/);
  // Words at even indexes; the one after an auth scheme (`Bearer x`, `token x`) is a credential whatever its shape.
  const afterScheme = (i: number): boolean => i >= 2 && /^(?:bearer|basic|token|bot)$/i.test(parts[i - 2]!) && /^\s+$/.test(parts[i - 1]!);
  return parts.map((w, i) => (i % 2 === 0 && w && (looksLikeSecret(w) || afterScheme(i)) ? '[REDACTED]' : w)).join('');
};

/**
 * Any credential a program can mint (a GitHub App installation token, a cloud STS call):
 * the command runs once per lease with LEASH_IDENTITY, LEASH_CREDENTIAL, LEASH_LEASE_ID and
 * LEASH_MAX_TTL_SECONDS in its environment and prints one JSON object on stdout:
 * `{"value": "...", "ttlSeconds": n}` or `{"value": "...", "expiresAt": "<ISO 8601>"}`.
 *
 * Errors name the command (argv[0]) and show at most the first 200 characters of stderr;
 * stdout is never repeated anywhere, since it holds the secret.
 */
export class ExecIssuer implements Issuer {
  readonly kind = 'exec' as const;
  private readonly running = new Set<number>();
  private closed = false;
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly options: ExecIssuerOptions) {
    if (options.command.length === 0 || !options.command[0]) {
      throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `${this.label()}: command is empty`, this.ctx());
    }
  }

  async issue(req: IssueRequest): Promise<Issued> {
    if (this.closed) throw new IssuerError('LEASH_ERR_ISSUER_CLOSED', `${this.label(req)} is closed`, this.ctx(req));
    const waitedMs = await this.acquire(req);
    try {
      if (this.closed) throw new IssuerError('LEASH_ERR_ISSUER_CLOSED', `${this.label(req)} is closed`, this.ctx(req));
      const stdout = await this.run(req, waitedMs);
      return this.parse(stdout, req);
    } finally {
      this.releaseSlot();
    }
  }

  /** Kills every command still running; leases waiting for a slot fail with LEASH_ERR_ISSUER_CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    for (const pid of this.running) killGroup(pid);
    for (const wake of this.waiting.splice(0)) wake();
  }

  /** A slot among maxConcurrent (resolves with the ms waited for it), or a timeout while waiting. */
  private acquire(req: IssueRequest): Promise<number> {
    if (this.active < (this.options.maxConcurrent ?? 16)) {
      this.active++;
      return Promise.resolve(0);
    }
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const since = Date.now();
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.active++;
        resolve(Date.now() - since);
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new IssuerError('LEASH_ERR_ISSUER_TIMEOUT', `${this.label(req)}: no free slot within ${timeoutMs}ms (${this.options.maxConcurrent ?? 16} commands running)`, this.ctx(req)));
      }, timeoutMs);
      this.waiting.push(wake);
    });
  }

  private releaseSlot(): void {
    this.active--;
    this.waiting.shift()?.();
  }

  private run(req: IssueRequest, waitedMs = 0): Promise<string> {
    const [file, ...args] = this.options.command as [string, ...string[]];
    const configuredMs = this.options.timeoutMs ?? 10_000;
    // The wait for a slot counts against the timeout; the message names the configured one.
    const timeoutMs = Math.max(1, configuredMs - waitedMs);
    const maxBytes = this.options.maxOutputBytes ?? 64 * 1024;
    const env: Record<string, string> = {
      LEASH_IDENTITY: req.identity,
      LEASH_CREDENTIAL: req.credential,
      LEASH_LEASE_ID: req.leaseId,
      LEASH_MAX_TTL_SECONDS: String(Math.floor(req.maxTtlMs / 1000)),
    };
    for (const name of ['PATH', ...(this.options.passEnv ?? [])]) {
      const v = this.options.env?.[name];
      if (v !== undefined && !(name in env)) env[name] = v;
    }
    const err = (code: 'LEASH_ERR_ISSUER_EXEC' | 'LEASH_ERR_ISSUER_TIMEOUT', message: string, stderr = '', cause?: unknown): IssuerError => {
      const shown = redactSecrets(stderr.trim()).slice(0, STDERR_SHOWN);
      return new IssuerError(code, `${this.label(req)}: command ${file} ${message}${shown ? `: ${shown}` : ''}`, { ...this.ctx(req), command: file }, { cause });
    };

    return new Promise((resolve, reject) => {
      // detached: the command leads its own process group, so a timeout kills whatever it forked too.
      const child = spawn(file, args, { env, cwd: this.options.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], shell: false });
      const out: Buffer[] = [];
      let outBytes = 0;
      let stderr = '';
      let settled = false;
      const finish = (e: IssuerError | undefined, value?: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (e) {
          if (child.pid !== undefined) killGroup(child.pid);
          reject(e);
        } else {
          resolve(value!);
        }
      };
      if (child.pid !== undefined) this.running.add(child.pid);
      const timer = setTimeout(() => finish(err('LEASH_ERR_ISSUER_TIMEOUT', `did not finish within ${configuredMs}ms (killed)`, stderr)), timeoutMs);
      child.stdout.on('data', (c: Buffer) => {
        outBytes += c.length;
        if (outBytes > maxBytes) {
          finish(err('LEASH_ERR_ISSUER_EXEC', `wrote more than ${maxBytes} bytes on stdout (killed)`, stderr));
          return;
        }
        out.push(c);
      });
      child.stderr.on('data', (c: Buffer) => {
        if (stderr.length < STDERR_SHOWN * 4) stderr += c.toString('utf8');
      });
      child.on('error', (e: NodeJS.ErrnoException) => finish(err('LEASH_ERR_ISSUER_EXEC', `could not start (${e.code ?? e.message})`, '', e)));
      // 'close', not 'exit': stdout is complete only once its pipe has closed.
      child.on('close', (code, signal) => {
        if (child.pid !== undefined) this.running.delete(child.pid);
        if (signal) finish(err('LEASH_ERR_ISSUER_EXEC', this.closed ? 'was killed: the issuer is closing' : `was killed by ${signal}`, stderr));
        else if (code !== 0) finish(err('LEASH_ERR_ISSUER_EXEC', `exited with status ${code}`, stderr));
        else finish(undefined, Buffer.concat(out).toString('utf8'));
      });
    });
  }

  private parse(stdout: string, req: IssueRequest): Issued {
    const file = this.options.command[0]!;
    // The message says what was wrong with the output, never what the output was.
    const bad = (why: string): IssuerError =>
      new IssuerError('LEASH_ERR_ISSUER_RESPONSE', `${this.label(req)}: command ${file} printed ${why}`, { ...this.ctx(req), command: file });
    let json: unknown;
    try {
      json = JSON.parse(stdout);
    } catch {
      throw bad('something that is not JSON (expected {"value": "...", "ttlSeconds": n})');
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad('JSON that is not an object');
    const o = json as Record<string, unknown>;
    if (typeof o.value !== 'string' || o.value.length === 0) throw bad('no "value" string');
    // A value no sidecar can inject (CR/LF, other controls, non-ASCII, > 16 KiB) is refused here,
    // before a lease is stored for it.
    if (!isUsableLeaseValue(o.value)) throw bad(`a "value" that is not printable ASCII of at most ${MAX_LEASE_VALUE} characters`);
    const limits: number[] = [req.maxTtlMs];
    if (this.options.ttlMs !== undefined) limits.push(this.options.ttlMs);
    let given = false;
    if (o.ttlSeconds !== undefined) {
      if (typeof o.ttlSeconds !== 'number' || !Number.isFinite(o.ttlSeconds)) throw bad('a "ttlSeconds" that is not a number');
      if (o.ttlSeconds <= 0) throw bad(`"ttlSeconds": ${o.ttlSeconds} (must be positive)`);
      limits.push(o.ttlSeconds * 1000);
      given = true;
    }
    if (o.expiresAt !== undefined) {
      const at = typeof o.expiresAt === 'string' ? Date.parse(o.expiresAt) : NaN;
      if (!Number.isFinite(at)) throw bad('an "expiresAt" that is not an ISO 8601 time');
      if (at <= req.nowMs) throw bad(`an "expiresAt" in the past (${new Date(at).toISOString()})`);
      limits.push(at - req.nowMs);
      given = true;
    }
    if (!given && this.options.ttlMs === undefined) throw bad('neither "ttlSeconds" nor "expiresAt", and no ttl is configured');
    const ttlMs = Math.floor(Math.min(...limits));
    if (!(ttlMs >= 1000)) throw bad(`a lifetime under one second (${ttlMs}ms)`);
    return { value: o.value, version: fingerprint(o.value), issuedAtMs: req.nowMs, expiresAtMs: req.nowMs + ttlMs };
  }

  private ctx(req?: IssueRequest): { issuer: string; credential: string | undefined } {
    return { issuer: 'exec', credential: req?.credential ?? this.options.credential };
  }

  private label(req?: IssueRequest): string {
    return issuerLabel('exec', req?.credential ?? this.options.credential);
  }
}

/** SIGKILL the process group led by `pid` (detached spawn), or the child alone if that fails. */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
