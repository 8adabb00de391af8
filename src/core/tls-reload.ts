import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';

/**
 * A TLS listener's certificate, reloaded when its files change (cert-manager rotates them in
 * place): the injector's webhook and the authority's API (`tls.certFile`). The entry points
 * read the files (TlsSource); this decides whether a new pair is taken.
 */
export interface TlsPair {
  certPem: string;
  keyPem: string;
}

/** How the server sees its TLS files: a cheap identity of their current versions, and their contents (the entry point reads files). */
export interface TlsSource {
  /** Changes whenever either file changes (e.g. inode, size, mtime of both, symlinks followed). */
  stamp(): string;
  read(): TlsPair;
}

/** notAfter of a PEM certificate in ms, or undefined when it cannot be read. */
export function certificateNotAfterMs(certPem: string): number | undefined {
  try {
    return new Date(new X509Certificate(certPem).validTo).getTime();
  } catch {
    return undefined;
  }
}

/**
 * The current secure context, rebuilt when the source's stamp changes. A new pair that
 * does not load (a key not matching the cert, a half-written file) or has expired is not
 * taken: the previous one keeps serving and the next look tries again (not remembered as
 * seen: cert-manager writes the two files one after the other). `label` names the listener
 * in the log lines (`injector TLS certificate reloaded`).
 */
export class TlsReloader {
  private stamp: string;
  private context: SecureContext;
  private pair: TlsPair;
  private notAfter: number | undefined;

  constructor(
    private readonly source: TlsSource,
    private readonly logger: Logger,
    private readonly onChange: (pair: TlsPair) => void = () => undefined,
    private readonly label = 'injector',
    private readonly now: () => number = Date.now,
  ) {
    this.stamp = source.stamp();
    this.pair = source.read();
    this.context = createSecureContext({ cert: this.pair.certPem, key: this.pair.keyPem });
    this.notAfter = certificateNotAfterMs(this.pair.certPem);
  }

  get current(): SecureContext {
    return this.context;
  }

  get currentPair(): TlsPair {
    return this.pair;
  }

  /** notAfter (ms) of the certificate served now. */
  get notAfterMs(): number | undefined {
    return this.notAfter;
  }

  /** Looks at the files; true when a new certificate was taken. */
  check(): boolean {
    let stamp: string;
    try {
      stamp = this.source.stamp();
    } catch (err) {
      this.logger.warn({ err: errCode(err) }, `${this.label} TLS files unreadable; keeping the current certificate`);
      return false;
    }
    if (stamp === this.stamp) return false;
    let notAfter: number | undefined;
    try {
      const pair = this.source.read();
      notAfter = certificateNotAfterMs(pair.certPem);
      if (notAfter !== undefined && notAfter <= this.now()) throw Object.assign(new Error('expired'), { code: 'CERT_HAS_EXPIRED' });
      const context = createSecureContext({ cert: pair.certPem, key: pair.keyPem });
      // The listener takes it first (inside the try: a throw here must not escape a timer).
      this.onChange(pair);
      this.context = context;
      this.pair = pair;
    } catch (err) {
      this.logger.warn({ err: errCode(err) }, `${this.label} TLS files changed but do not load; keeping the current certificate`);
      return false;
    }
    this.stamp = stamp;
    this.notAfter = notAfter;
    this.logger.info({ notAfter: notAfter === undefined ? undefined : new Date(notAfter).toISOString() }, `${this.label} TLS certificate reloaded`);
    return true;
  }
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? (err instanceof Error ? err.name : 'error');
}
