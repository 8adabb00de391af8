import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock } from '../../core/clock.js';
import { CredentialSourceError } from '../../core/errors.js';
import { isHeaderSafe } from '../../core/protocol.js';
import { fingerprint } from '../../core/fingerprint.js';
import type { CredentialEvent, CredentialProvider, HeldCredential } from './types.js';
import { FILE_VALUES_KEPT, ValueHistory } from './value-history.js';


/** Keep the previous value for scrubbing so a late echo of it is still caught. */
function held(value: string, clock: Clock): HeldCredential {
  return { value, fingerprint: fingerprint(value), acquiredAtMs: clock.monotonicMs(), expiresAtMs: undefined, lease: undefined };
}

/** A secret from an environment variable: read once at start, never changes. */
export class EnvCredential implements CredentialProvider {
  readonly description: string;
  private cred: HeldCredential | undefined;
  /** The same array every time (the route's scrubber cache compares by identity first). */
  private values: readonly string[] = Object.freeze([]);
  constructor(
    private readonly name: string,
    private readonly env: Readonly<Record<string, string | undefined>>,
    private readonly clock: Clock,
    private readonly onEvent: (e: CredentialEvent) => void,
  ) {
    this.description = `env:${name}`;
  }
  async start(): Promise<void> {
    const value = this.env[this.name]?.trim();
    if (!value || !isHeaderSafe(value)) {
      const why = value ? 'holds control or non-ASCII characters' : 'is not set or empty';
      const error = new CredentialSourceError(`environment variable ${this.name} ${why}`, { source: this.description });
      this.onEvent({ kind: 'refresh_failed', error });
      return;
    }
    this.cred = held(value, this.clock);
    this.values = Object.freeze([value]);
    this.onEvent({ kind: 'acquired', fingerprint: this.cred.fingerprint });
  }
  current(): HeldCredential | undefined {
    return this.cred;
  }
  recentValues(): readonly string[] {
    return this.values;
  }
  async refresh(): Promise<void> {}
  async close(): Promise<void> {}
}

/**
 * A secret in a file, re-read when it changes. Kubernetes updates a Secret volume by
 * swapping a `..data` symlink in the directory, so the directory is watched (fs.watch on
 * the file itself would follow the old inode), with a stat poll as the fallback for
 * filesystems without inotify. A missing or empty file makes the route unavailable:
 * removing a secret stops its use (fail closed).
 */
/** At most one re-read a second asked for by requests that found no credential. */
export const REREAD_ON_REQUEST_MS = 1_000;

export class FileCredential implements CredentialProvider {
  readonly description: string;
  private cred: HeldCredential | undefined;
  /** The last few values read, for scrubbing: files have no expiry (value-history.ts). */
  private readonly history = new ValueHistory(FILE_VALUES_KEPT);
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private lastStat = '';
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** Monotonic ms of the last re-read a request asked for (onUnavailable). */
  private lastRequestedReadMs = -Infinity;

  constructor(
    private readonly path: string,
    private readonly pollIntervalMs: number,
    private readonly clock: Clock,
    private readonly onEvent: (e: CredentialEvent) => void,
  ) {
    this.description = `file:${path}`;
  }

  async start(): Promise<void> {
    await this.refresh();
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, () => this.scheduleReload());
      this.watcher.on('error', () => undefined); // the poll below still covers changes
    } catch {
      // no inotify for this path; polling alone
    }
    this.poll = setInterval(() => void this.checkStat(), this.pollIntervalMs);
    this.poll.unref();
  }

  current(): HeldCredential | undefined {
    return this.cred;
  }

  recentValues(): readonly string[] {
    return this.history.values(this.clock.monotonicMs());
  }

  /**
   * A request found no credential: re-read now, at most once per REREAD_ON_REQUEST_MS.
   * Agents retry a 503 in tight loops, and each failed read is a `credential.refresh_failed`
   * audit event and a counted failure: one per request flooded the audit trail. A restored
   * file is still seen at once by the directory watch (and the stat poll).
   */
  onUnavailable(): void {
    const now = this.clock.monotonicMs();
    if (now - this.lastRequestedReadMs < REREAD_ON_REQUEST_MS) return;
    this.lastRequestedReadMs = now;
    void this.refresh();
  }

  /** Re-read the file now; concurrent callers share one read. */
  refresh(): Promise<void> {
    this.inFlight ??= this.reload().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    await this.inFlight;
  }

  private scheduleReload(): void {
    if (this.closed) return;
    // Writers that truncate then write produce several events; read once they settle.
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.refresh(), 25);
    this.debounce.unref();
  }

  private async checkStat(): Promise<void> {
    const key = await stat(this.path).then(
      (s) => `${s.ino}:${s.size}:${s.mtimeMs}`,
      () => 'missing',
    );
    if (key !== this.lastStat) await this.refresh();
  }

  private async reload(): Promise<void> {
    if (this.closed) return;
    let value: string;
    try {
      const s = await stat(this.path);
      this.lastStat = `${s.ino}:${s.size}:${s.mtimeMs}`;
      value = (await readFile(this.path, 'utf8')).trim();
      if (!value) throw new CredentialSourceError(`credential file ${this.path} is empty`, { source: this.description });
      if (!isHeaderSafe(value)) {
        throw new CredentialSourceError(`credential file ${this.path} holds control or non-ASCII characters`, { source: this.description });
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.lastStat = 'missing';
      // A file that could not be read (EMFILE, ENFILE, EACCES, EIO) is read again at the next
      // poll: its stat does not change when descriptors free up or a mode is put back, and
      // nothing else would read it until a request found the route unavailable. (A file read
      // but refused for its content waits for the file to change.)
      else if (!(err instanceof CredentialSourceError)) this.lastStat = '';
      const error =
        err instanceof CredentialSourceError
          ? err
          : new CredentialSourceError(`cannot read credential file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
              source: this.description,
            });
      this.cred = undefined;
      this.onEvent({ kind: 'refresh_failed', error });
      return;
    }
    if (value === this.cred?.value) return;
    const before = this.cred;
    this.cred = held(value, this.clock);
    this.history.add(value, undefined);
    this.onEvent(
      before
        ? { kind: 'rotated', fingerprint: this.cred.fingerprint, previousFingerprint: before.fingerprint }
        : { kind: 'acquired', fingerprint: this.cred.fingerprint },
    );
  }
}
