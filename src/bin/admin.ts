import { parseDuration } from '../core/duration.js';
import { UsageError, LeashError } from '../core/errors.js';
import { fingerprint } from '../core/fingerprint.js';
import { HttpJsonError, httpJson, type HttpJsonResponse } from '../core/http-json.js';
import { ALL_TARGET, API, AUDIT_VERSION, isReadableAuditVersion, parseRevocation, type LeaseRecord, type RevokeRequest, type RevokeResponse, type TraceResponse } from '../core/protocol.js';
import { caBundleProblem } from '../core/ca-bundle.js';
import { readText } from './load.js';
import { hideUserinfo, redactUrl } from '../config/issues.js';
import { isoOf, jsonText, printable } from './terminal.js';

/**
 * Admin commands (DESIGN §3): they reach the authority at --authority / LEASH_AUTHORITY_URL,
 * trust its CA from --ca / LEASH_CA_FILE and authenticate with LEASH_ADMIN_TOKEN.
 */
export interface AdminTarget {
  url: URL;
  caPem: string;
  token: string;
}

export function adminTarget(opts: { authority?: string; ca?: string }, env: NodeJS.ProcessEnv): AdminTarget {
  const url = opts.authority ?? env.LEASH_AUTHORITY_URL;
  const ca = opts.ca ?? env.LEASH_CA_FILE;
  const token = env.LEASH_ADMIN_TOKEN;
  if (!url) throw new UsageError('the authority URL is needed: --authority URL or LEASH_AUTHORITY_URL');
  if (!ca) throw new UsageError("the authority's CA is needed: --ca FILE or LEASH_CA_FILE");
  if (!token) throw new UsageError('LEASH_ADMIN_TOKEN must be set');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Redacted: what was typed may carry a key in a query or user:password part.
    throw new UsageError(`--authority: not a URL (got "${redactUrl(url)}")`);
  }
  // A password holding `#`, `?` or `/` moves the split (`https://a:123#pw@h` is host a, port 123, and would be printed so).
  if (!parsed.username && !parsed.password && hideUserinfo(url) !== url) throw new UsageError(`--authority: not a URL (got "${redactUrl(url)}")`);
  if (parsed.protocol !== 'https:') throw new UsageError('--authority: must be an https URL');
  const caPem = readText(ca, '--ca');
  // An empty CA file would send the admin token to anyone with a public certificate for the host.
  const problem = caBundleProblem(caPem, `--ca: ${ca}`);
  if (problem) throw new UsageError(problem);
  return { url: parsed, caPem, token };
}

export class AdminError extends LeashError {
  constructor(message: string) {
    super('LEASH_ERR_ADMIN', message);
  }
}

/** Largest admin answer read (a lease list or a trace); the authority's own answers are far smaller. */
const MAX_ANSWER = 32 * 1024 * 1024;

async function call(target: AdminTarget, method: string, path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<unknown> {
  let res: HttpJsonResponse;
  try {
    res = await httpJson({
      method,
      url: new URL(path, target.url),
      tls: { ca: target.caPem },
      timeoutMs: 10_000,
      maxBodyBytes: MAX_ANSWER,
      headers: { authorization: `Bearer ${target.token}`, ...extraHeaders },
      json: body,
    });
  } catch (err) {
    const e = err instanceof HttpJsonError ? err : undefined;
    if (e?.failure === 'too_large') throw new AdminError(`authority answered ${e.status} with more than ${MAX_ANSWER} bytes`);
    const why = e?.failure === 'timeout' ? 'timed out' : (e?.errno ?? 'error');
    throw new AdminError(`cannot reach the authority at ${target.url.origin}: ${why}`);
  }
  let parsed: unknown;
  try {
    parsed = res.json();
  } catch {
    throw new AdminError(`authority answered ${res.status} with a body that is not JSON`);
  }
  if (res.status >= 300) {
    const e = (parsed as { error?: { code?: string; message?: string } }).error;
    throw new AdminError(`authority refused (${res.status} ${e?.code ?? ''}): ${e?.message ?? 'no message'}`);
  }
  return parsed;
}

/** `leash token create --identity NAME [--ttl 10m]`: prints the token alone on stdout. */
export async function tokenCreate(target: AdminTarget, identity: string, ttl: string): Promise<string> {
  if (parseDuration(ttl) === undefined) throw new UsageError(`--ttl: must be a duration like "10m" (got "${ttl}")`);
  const answer = (await call(target, 'POST', API.adminTokens, { identity, ttl })) as { token?: unknown };
  if (typeof answer.token !== 'string') throw new AdminError('authority answer has no token');
  return answer.token;
}

/** `leash leases [--instance ID] [--credential NAME] [--json]`. */
export async function listLeases(target: AdminTarget, filter: { instance?: string; credential?: string }, json: boolean): Promise<string> {
  const q = new URLSearchParams();
  if (filter.instance) q.set('instance', filter.instance);
  if (filter.credential) q.set('credential', filter.credential);
  const answer = (await call(target, 'GET', `${API.adminLeases}${q.size ? `?${q}` : ''}`)) as { leases: LeaseRecord[] };
  if (json) return jsonText(answer.leases);
  const rows = answer.leases.map((l) => printable(`${l.id}  ${l.credential}  ${l.fingerprint}  expires ${isoOf(l.expiresAtMs)}  ${l.instance}`));
  return rows.length ? rows.join('\n') : '(no active leases)';
}

/** What `leash revoke` was asked: exactly one scope flag. */
export interface RevokeOptions {
  lease?: string;
  instance?: string;
  credential?: string;
  all?: boolean;
  reason?: string;
  actor?: string;
}

const ACTOR = /^[\w.@-]{1,64}$/;

/** The one scope and target of `leash revoke` flags; a UsageError unless exactly one scope is given. */
export function revokeRequest(o: RevokeOptions): RevokeRequest {
  const given: RevokeRequest[] = [];
  if (o.lease !== undefined) given.push({ scope: 'lease', target: o.lease });
  if (o.instance !== undefined) given.push({ scope: 'instance', target: o.instance });
  if (o.credential !== undefined) given.push({ scope: 'credential', target: o.credential });
  if (o.all) given.push({ scope: 'all', target: ALL_TARGET });
  if (given.length !== 1) throw new UsageError('leash revoke needs exactly one of --lease ID, --instance ID, --credential NAME, --all');
  const r = given[0]!;
  if (!r.target) throw new UsageError(`--${r.scope}: needs a value`);
  if (o.reason !== undefined) r.reason = o.reason;
  return r;
}

/** `leash revoke --lease ID | --instance ID | --credential NAME | --all [--reason TEXT] [--actor NAME]`: one line. */
export async function revoke(target: AdminTarget, options: RevokeOptions): Promise<string> {
  const body = revokeRequest(options);
  if (options.actor !== undefined && !ACTOR.test(options.actor)) throw new UsageError('--actor: 1-64 characters of letters, digits, _ . @ -');
  const answer = (await call(target, 'POST', API.adminRevoke, body, options.actor ? { 'x-leash-actor': options.actor } : {})) as Partial<RevokeResponse>;
  const parsed = answer.revocation && typeof answer.revocation === 'object' ? parseRevocation(answer.revocation, answer.revocation.id) : undefined;
  if (!parsed?.ok) throw new AdminError('authority answer has no revocation');
  const r = parsed.revocation;
  // An unknown target was revoked anyway (the authority may have lost its records): say so.
  const warning = typeof answer.warning === 'string' ? `; ${answer.warning.slice(0, 200)}` : '';
  // A newer authority's scope this CLI does not know: shown as written, and said so.
  if (r.notUnderstood) return printable(`revoked ${r.notUnderstood.scope} ${r.notUnderstood.target} (${r.id}; scope unknown to this leash, which is older than the authority)${warning}`);
  return printable(`revoked ${r.scope} ${r.target} (${r.id})${warning}`);
}

const FINGERPRINT = /^sha256:[0-9a-f]{12}$/;

/**
 * `leash trace SECRET_OR_FINGERPRINT`: a value is fingerprinted here and only the
 * fingerprint goes to the authority — the secret never leaves this process.
 */
export async function trace(target: AdminTarget, secretOrFingerprint: string, json: boolean): Promise<{ output: string; found: boolean }> {
  const value = secretOrFingerprint.trim();
  if (!value) throw new UsageError('leash trace needs a secret or a fingerprint (sha256:<12 hex>); "-" reads it from stdin');
  const fp = FINGERPRINT.test(value) ? value : fingerprint(value);
  const answer = (await call(target, 'GET', `${API.adminTrace}?fingerprint=${encodeURIComponent(fp)}`)) as TraceResponse;
  const operations = answer.operations ?? [];
  const found = answer.leases.length > 0 || answer.events.length > 0 || operations.length > 0;
  if (json) return { output: jsonText(answer), found };
  const lines = [`${fp}`];
  if (answer.leases.length === 0) lines.push('  no active lease holds it');
  for (const l of answer.leases) lines.push(printable(`  lease ${l.id}  ${l.credential}  held by ${l.instance}  issued ${isoOf(l.issuedAtMs)}  expires ${isoOf(l.expiresAtMs)}`));
  if (!answer.auditStream) lines.push('  (no audit stream: the authority runs without Redis; see its log for events)');
  else if (answer.events.length === 0 && operations.length === 0) lines.push('  no audit events name it');
  const holders = answer.holders ?? [];
  if (holders.length) {
    lines.push('', 'HELD BY');
    const times = ['issued', 'acquired', 'rotated', 'replaced', 'released', 'revoked', 'expired'] as const;
    for (const h of holders) {
      const when = times.filter((t) => h[t]).map((t) => `${t} ${h[t]}`);
      lines.push(printable(`  ${h.lease ?? '(no lease)'}  ${h.credential ?? '-'}  ${h.instances.join(', ') || '-'}${when.length ? `  ${when.join('  ')}` : ''}`));
    }
  }
  if (operations.length) {
    lines.push('', 'OPERATIONS');
    lines.push(...table([
      ['ROUTE', 'METHOD', 'PATH', 'STATUS', 'COUNT', 'FIRST', 'LAST', 'LEASE', 'INSTANCE'],
      // Long paths cut for the table (--json has them whole).
      ...operations.map((o) => [o.route ?? '-', o.method ?? '-', o.path.length > 80 ? `${o.path.slice(0, 79)}…` : o.path, o.denied ? `${o.status ?? '-'} (${o.denied})` : (o.status ?? '-'), String(o.count), o.first, o.last, o.lease ?? '-', o.instance ?? '-']),
    ]).map((l) => `  ${l}`));
  }
  if (answer.events.length) lines.push('', 'EVENTS');
  let newer = 0;
  for (const e of answer.events) {
    const { id: _id, event, at, v, ...rest } = e;
    const detail = Object.entries(rest)
      .filter(([k]) => k !== 'fingerprint')
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    // An event of a newer audit schema: shown as written, and marked (its fields may mean something else).
    const mark = isReadableAuditVersion(e) ? '' : `  [v${v}, newer than this leash]`;
    if (mark) newer++;
    lines.push(printable(`  ${at ?? ''}  ${event ?? ''}  ${detail}${mark}`));
  }
  if (newer) {
    lines.push(
      '',
      `  ${newer} event${newer === 1 ? ' was' : 's were'} written by a newer leash (audit schema above v${AUDIT_VERSION}): shown as written, not read into HELD BY or OPERATIONS; a leash of that version reads them (docs/audit.md)`,
    );
  }
  return { output: lines.join('\n'), found };
}

/** Columns padded to their widest cell. Cells come from the authority: made printable. */
function table(rows: string[][]): string[] {
  const clean = rows.map((r) => r.map(printable));
  const widths = clean[0]!.map((_, i) => Math.max(...clean.map((r) => r[i]!.length)));
  return clean.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}
