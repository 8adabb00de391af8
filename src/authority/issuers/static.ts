import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fingerprint } from '../../core/fingerprint.js';
import { isHeaderSafe } from '../../core/protocol.js';
import { IssuerError, issuerLabel } from './errors.js';
import type { IssueRequest, Issued, Issuer } from './types.js';

export type StaticSource = { file: string } | { env: string };

export interface StaticIssuerOptions {
  source: StaticSource;
  /** Lease lifetime; the lease lives min(ttlMs, request maxTtlMs). The value itself does not expire. */
  ttlMs: number;
  /** The injected environment, for `{ env }` sources. */
  env?: Readonly<Record<string, string | undefined>>;
  /** File sources: stat poll interval, the fallback when fs.watch misses a change. Default 2 s. */
  pollIntervalMs?: number;
  /** Credential name, for error messages. */
  credential?: string;
  /**
   * File sources: called when the value changes (new fingerprint) or disappears (undefined),
   * so the authority can re-lease (DESIGN §7 `credential` scope). Never given the value.
   */
  onChange?: (version: string | undefined) => void;
}


interface Current {
  value: string;
  version: string;
}

/**
 * A shared secret from a file or the environment (the "centralize" step of the migration
 * path: one place holds it, sidecars lease it). version = fingerprint(value), so a lease
 * records which version it carried and a change of the file is a new version.
 *
 * File sources are re-read on change, as the sidecar's FileCredential: the directory is
 * watched (Kubernetes swaps a `..data` symlink, so a watch on the file would follow the
 * old inode), with a stat poll as the fallback; each issue() also stats the file, so a
 * lease never carries a value the file no longer holds. Missing or empty → fail closed.
 */
export class StaticIssuer implements Issuer {
  readonly kind = 'static' as const;
  private current: Current | undefined;
  private lastError: IssuerError | undefined;
  private lastStat: string | undefined;
  private inFlight: Promise<void> | undefined;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: StaticIssuerOptions) {
    if (!(options.ttlMs >= 1000)) {
      throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `${this.label()}: ttl must be at least 1s (got ${options.ttlMs}ms)`, this.ctx());
    }
    const source = options.source;
    if ('file' in source) {
      try {
        this.watcher = watch(dirname(source.file), { persistent: false }, () => this.scheduleCheck());
        this.watcher.on('error', () => undefined); // the poll still covers changes
      } catch {
        // no such directory yet, or no inotify: the poll alone
      }
      this.poll = setInterval(() => void this.check().catch(() => undefined), options.pollIntervalMs ?? 2000);
      this.poll.unref();
    }
  }

  /** Read the source now; throws the source error. `leash check` and start-up may call it. */
  async load(): Promise<{ version: string }> {
    const cur = await this.read();
    return { version: cur.version };
  }

  async issue(req: IssueRequest): Promise<Issued> {
    if (this.closed) throw new IssuerError('LEASH_ERR_ISSUER_CLOSED', `${this.label(req)} is closed`, this.ctx(req));
    const { value, version } = await this.read(req);
    const ttlMs = Math.min(this.options.ttlMs, req.maxTtlMs);
    return { value, version, issuedAtMs: req.nowMs, expiresAtMs: req.nowMs + ttlMs };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    await this.inFlight?.catch(() => undefined);
  }

  private async read(req?: IssueRequest): Promise<Current> {
    const source = this.options.source;
    if ('env' in source) return this.fromEnv(source.env, req);
    await this.check();
    if (this.current) return this.current;
    throw this.lastError ?? this.sourceError(`credential file ${source.file} is unreadable`, req);
  }

  private fromEnv(name: string, req?: IssueRequest): Current {
    const value = this.options.env?.[name]?.trim();
    if (!value) throw this.sourceError(`environment variable ${name} is not set or empty`, req);
    if (!isHeaderSafe(value)) throw this.sourceError(`environment variable ${name} holds control or non-ASCII characters`, req);
    return { value, version: fingerprint(value) };
  }

  private scheduleCheck(): void {
    if (this.closed) return;
    // Writers that truncate then write produce several events: read once they settle.
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.check().catch(() => undefined), 25);
    this.debounce.unref();
  }

  /** Re-read when the file's identity (inode, size, mtime) changed; concurrent callers share one read. */
  private async check(): Promise<void> {
    const file = (this.options.source as { file: string }).file;
    const key = await stat(file).then(
      (s) => `${s.ino}:${s.size}:${s.mtimeMs}`,
      () => 'missing',
    );
    if (key === this.lastStat && this.inFlight === undefined) return;
    this.inFlight ??= this.reload(file).finally(() => {
      this.inFlight = undefined;
    });
    await this.inFlight;
  }

  private async reload(file: string): Promise<void> {
    const before = this.current?.version;
    try {
      const s = await stat(file);
      this.lastStat = `${s.ino}:${s.size}:${s.mtimeMs}`;
      const value = (await readFile(file, 'utf8')).trim();
      if (!value) throw this.sourceError(`credential file ${file} is empty`);
      if (!isHeaderSafe(value)) throw this.sourceError(`credential file ${file} holds control or non-ASCII characters`);
      this.current = { value, version: fingerprint(value) };
      this.lastError = undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') this.lastStat = 'missing';
      this.current = undefined;
      this.lastError =
        err instanceof IssuerError
          ? err
          : this.sourceError(code === 'ENOENT' ? `credential file ${file} does not exist` : `cannot read credential file ${file}: ${code ?? 'error'}`, undefined, err);
    }
    if (this.current?.version !== before && !this.closed) this.options.onChange?.(this.current?.version);
  }

  private sourceError(message: string, req?: IssueRequest, cause?: unknown): IssuerError {
    return new IssuerError('LEASH_ERR_ISSUER_SOURCE', `${this.label(req)}: ${message}`, this.ctx(req), { cause });
  }

  private ctx(req?: IssueRequest): { issuer: string; credential: string | undefined } {
    return { issuer: 'static', credential: req?.credential ?? this.options.credential };
  }

  private label(req?: IssueRequest): string {
    return issuerLabel('static', req?.credential ?? this.options.credential);
  }
}
