import { readFileSync } from 'node:fs';
import { tunnelSegment } from '../config/rules.js';
import type { AuthorityConfig } from '../config/authority.js';
import { checkDocument } from '../config/check-report.js';
import { caBundleProblem } from '../core/ca-bundle.js';
import type { ConfigKind } from '../config/kind.js';
import { filePath, type RedisTargetConfig } from '../config/common.js';
import { formatPath, redactUrl } from '../config/issues.js';
import { readDocumentCollecting } from '../config/load.js';
import { mergeProblems } from '../config/semantic.js';
import type { SidecarConfig } from '../config/sidecar.js';
import { formatDuration } from '../core/duration.js';
import { revocationsKey } from '../core/protocol.js';
import { ConfigError } from '../core/errors.js';
import { absentSecretWarnings, fileModeWarnings, isLoopback, secretSourceWarnings, sidecarHygieneWarnings } from './hygiene.js';
import { readText } from './load.js';
import { printable } from './terminal.js';

/**
 * `leash check --config FILE`: validate a sidecar, authority or `leash dev` config and
 * print what it would do. Never prints a secret.
 *
 * Every problem is reported in one run (config/check-report.ts): schema problems with key
 * paths, checks across keys, unset `${VAR}`s and unreadable CA files; then exit 1 with
 * nothing said to be valid. Only a file without problems gets `config FILE: valid (KIND)`,
 * its plan and its warnings (exit 0: a warning never fails the check). The kind is told by
 * scoring the top-level keys against each kind's (config/kind.ts), and a report says which
 * kind it assumed and why. `opts` (for the CLI's `--strict` and `--kind`): warnings that
 * fail the check, and a kind given rather than guessed.
 */
export interface CheckOptions {
  /** Warnings fail the check too (exit 1, nothing called valid). */
  strict?: boolean;
  /** The kind, as told by the user rather than guessed from the keys. */
  kind?: ConfigKind;
}

export function runCheck(
  configPath: string,
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
  err: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  opts: CheckOptions = {},
): number {
  // Every line quotes the file's keys, values and paths, and the file may be anyone's (a
  // pull request under review): an escape sequence in one could conceal or erase the lines
  // after it, warnings included. Shown as printable() does for what comes from elsewhere.
  const [rawOut, rawErr] = [out, err];
  out = (line) => rawOut(printable(line));
  err = (line) => rawErr(printable(line));
  const text = readText(configPath, '--config');
  let read: { doc: Record<string, unknown>; problems: string[] };
  try {
    read = readDocumentCollecting(text, env, configPath);
  } catch (e) {
    // YAML syntax: nothing further can be checked.
    if (!(e instanceof ConfigError)) throw e;
    // Not YAML, or YAML that is no mapping (a list, a scalar, nothing): nothing further to check.
    err(`leash: ${configPath}: ${count(e.issues.length)}, not readable as a config:`);
    for (const line of e.issues) err(`  ${line}`);
    return 1;
  }
  const report = checkDocument(read.doc, read.problems, opts.kind);
  const dev = report.kind === 'dev';
  // An injector's catalog caFiles are paths inside the injected sidecar, not on this machine.
  const caFiles = report.kind === 'injector' ? [] : caFileProblems(dev ? read.doc[report.written.sidecar] : read.doc, dev ? `${report.written.sidecar}.` : '');
  const problems = mergeProblems(report.problems, caFiles);
  if (problems.length > 0) {
    err(`leash: ${configPath}: ${count(problems.length)}, ${report.reason}:`);
    for (const line of problems) err(`  ${line}`);
    return 1;
  }
  const plan: string[] = [];
  const say = (line: string) => void plan.push(line);
  const warnings = [...report.notes];
  if (report.authority) {
    printAuthority(report.authority, env, say, dev);
    warnings.push(...authorityWarnings(report.authority, env).map((w) => (dev ? `${report.written.authority}.${w}` : w)));
  }
  if (report.sidecar) {
    printSidecar(report.sidecar, say, dev);
    warnings.push(...sidecarWarnings(report.sidecar, env, dev).map((w) => (dev ? `${report.written.sidecar}.${w}` : w)));
  }
  if (opts.strict && warnings.length > 0) {
    err(`leash: ${configPath}: ${warnings.length} warning${warnings.length === 1 ? '' : 's'}, which fail the check under --strict (${report.reason}):`);
    for (const w of warnings) err(`  warning: ${w}`);
    return 1;
  }
  out(`config ${configPath}: valid (${report.kind})`);
  for (const line of plan) out(line);
  for (const w of warnings) out(`warning: ${w}`);
  return 0;
}

const count = (n: number) => `${n} problem${n === 1 ? '' : 's'}`;

/** A route's caFile is read when the sidecar starts (bin/load.ts readCaFiles): one that cannot be read is an error now. */
function caFileProblems(sidecar: unknown, prefix: string): string[] {
  const routes = isMap(sidecar) ? sidecar.routes : undefined;
  if (!isMap(routes)) return [];
  const problems: string[] = [];
  for (const [name, route] of Object.entries(routes)) {
    const caFile = isMap(route) ? route.caFile : undefined;
    // A value refused as a path (PEM pasted in: a schema problem already) is not repeated here.
    if (typeof caFile !== 'string' || !filePath.safeParse(caFile).success) continue;
    let text: string;
    try {
      text = readFileSync(caFile, 'utf8');
    } catch (e) {
      problems.push(`${prefix}${formatPath(['routes', name, 'caFile'])}: cannot read ${caFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      continue;
    }
    const problem = caBundleProblem(text, `${prefix}${formatPath(['routes', name, 'caFile'])}: ${caFile}`);
    if (problem) problems.push(problem);
  }
  return problems;
}

const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function printAuthority(c: AuthorityConfig, env: NodeJS.ProcessEnv, out: (line: string) => void, dev: boolean): void {
  const token = c.admin?.token;
  const admin = token
    ? `enabled (token from ${'env' in token ? `env ${token.env}${env[token.env] ? '' : ', not set here'}` : `file ${token.file}`})`
    : dev
      ? 'from LEASH_ADMIN_TOKEN when set'
      : 'disabled (no admin.token)';
  out(`authority listen ${c.listen.host}:${c.listen.port}   trust domain ${c.trustDomain}   identity TTL ${formatDuration(c.identity.ttl)}`);
  const alsoTrusted = c.ca && c.ca.trustedCertFiles.length ? ` (also accepting client certificates of ${c.ca.trustedCertFiles.join(', ')})` : '';
  out(`  CA ${c.ca ? c.ca.certFile : 'generated in memory (dev only)'}${alsoTrusted}; JWT signing keys ${c.signing ? c.signing.keysDir : 'generated (dev only)'}`);
  out(`  store ${c.redis ? `Redis ${describeRedis(c.redis)}` : 'in memory (one replica only)'}; admin API ${admin}`);
  const k = c.kubernetes;
  out(
    k
      ? `  attestation: join tokens; Kubernetes TokenReview at ${k.apiServer ?? 'https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT'} for audience ${k.audience} (bound pod tokens only)`
      : '  attestation: join tokens',
  );
  const limit = (l: { perMinute: number; burst: number }, key: string) => (l.perMinute > 0 ? `${l.burst} at once, then ${l.perMinute} a minute (per replica)` : `no limit (limits.${key}.perMinute 0)`);
  out(`  lease requests per identity: ${limit(c.limits.leases, 'leases')}`);
  out(`  bootstrap requests per client address: ${limit(c.limits.bootstraps, 'bootstraps')}`);
  for (const [name, cred] of Object.entries(c.credentials)) out(`  credential ${name}: ${cred.kind}, TTL ${formatDuration(cred.ttl)}`);
  if (c.policies.length === 0) out('  policies: none (every lease is denied)');
  for (const p of c.policies) out(`  policy ${p.identities.join(', ')} → ${p.credentials.join(', ')} (max TTL ${formatDuration(p.maxTtl)})`);
}

/**
 * Warnings for an authority file (or a dev file's authority half), worded as the sidecar's:
 * a secret source that yields nothing here or a secret file open to group/others.
 */
function authorityWarnings(c: AuthorityConfig, env: NodeJS.ProcessEnv): string[] {
  const warnings: string[] = [];
  // leash authority reads the admin token once, at start, and refuses to start without it.
  if (c.admin) warnings.push(...secretSourceWarnings('admin.token', c.admin.token, env, undefined, ' (the admin API is enabled, and the authority will not start without it)'));
  for (const [name, cred] of Object.entries(c.credentials)) {
    if (cred.kind === 'static') warnings.push(...secretSourceWarnings(`credentials.${name}.source`, cred.source, env));
    if (cred.kind === 'oauth2') {
      warnings.push(...secretSourceWarnings(`credentials.${name}.clientSecret`, cred.clientSecret, env));
      const url = new URL(cred.tokenUrl);
      if (url.protocol === 'http:' && !isLoopback(url.hostname)) warnings.push(`credentials.${name}.tokenUrl: plain http sends the client secret unencrypted`);
    }
  }
  if (typeof c.redis === 'object' && c.redis.password) warnings.push(...secretSourceWarnings('redis.password', c.redis.password, env));
  if (c.ca) warnings.push(...fileModeWarnings('ca.keyFile', c.ca.keyFile));
  if (c.tls) warnings.push(...fileModeWarnings('tls.keyFile', c.tls.keyFile));
  if (c.kubernetes) warnings.push(...crossNamespaceWarnings(c.policies));
  return warnings;
}

/**
 * Patterns granting Kubernetes identities (`/ns/<namespace>/sa/<sa>/pod/<pod>`) whose
 * namespace is a glob. The namespace is the unit of trust: whoever may create a pod there
 * (and a service account of the name the pattern asks for, which namespace editors may)
 * gets the credentials. `ns/*` in a cluster with tenants hands them to every tenant.
 */
function crossNamespaceWarnings(policies: AuthorityConfig['policies']): string[] {
  const warnings: string[] = [];
  policies.forEach((p, i) =>
    p.identities.forEach((pattern, j) => {
      const path = /^spiffe:\/\/[^/]+\/(.*)$/.exec(pattern)?.[1];
      if (path === undefined) return;
      const [first = '', namespace = ''] = path.split('/');
      // `**` first spans every identity; a one-segment glob first that matches "ns" puts the namespace second.
      const spansAll = first.includes('**');
      const nsFirst = first === 'ns' || (first.includes('*') && new RegExp(`^${first.replace(/[.\-]/g, '\\$&').replace(/\*/g, '.*')}$`).test('ns'));
      if (!spansAll && !(nsFirst && namespace.includes('*'))) return;
      warnings.push(
        `policies[${i}].identities[${j}] (${pattern}): grants pods of more than one Kubernetes namespace: whoever may create a pod, and a service account, in any namespace it matches gets ${p.credentials.join(', ')}; name the namespaces`,
      );
    }),
  );
  return warnings;
}

function printSidecar(config: SidecarConfig, out: (line: string) => void, dev: boolean): void {
  out(`listen ${config.listen.host}:${config.listen.port}   admin ${config.admin.host}:${config.admin.port}   shutdown grace ${formatDuration(config.shutdown.grace)}`);
  for (const [name, r] of Object.entries(config.routes)) {
    const inject = r.inject;
    const how = 'header' in inject ? `header ${inject.header}: ${inject.format}` : 'query' in inject ? `query parameter ${inject.query}` : `basic auth as ${inject.basic.username}`;
    const cred = r.credential;
    const source = typeof cred === 'string' ? `lease "${cred}" from ${dev ? 'the in-process authority' : redactUrl(config.authority!.url)}` : 'file' in cred ? `file ${cred.file}` : `env ${cred.env}`;
    out(`route /${name}/ → ${redactUrl(r.upstream)}`);
    out(`  credential from ${source}, injected as ${how}`);
    out(`  timeouts connect ${formatDuration(r.timeouts.connect)} idle ${formatDuration(r.timeouts.idle)}; pool ${r.maxSockets}; websocket ${r.websocket ? 'on' : 'off'}${r.caFile ? `; CA ${r.caFile}` : ''}`);
    if (r.allow.length === 0) out('  allow: nothing (every request is denied)');
    for (const rule of r.allow) out(`  allow ${rule.text}`);
  }
  if (dev) out('authority: the in-process one above (leash dev)');
  if (config.authority && !dev) {
    const { joinToken: jt, kubernetes } = config.authority.bootstrap;
    const evidence = jt ? `join token from ${'file' in jt ? `file ${jt.file}` : `env ${jt.env}`}` : `Kubernetes service-account token from ${kubernetes?.tokenFile}`;
    out(`authority ${redactUrl(config.authority.url)} (CA ${config.authority.caFile}); ${evidence}`);
    out(`rotation at ${config.rotation.at} of the TTL ± ${config.rotation.jitter}; retries back off from ${formatDuration(config.rotation.backoff.base)} to ${formatDuration(config.rotation.backoff.cap)}`);
  }
  if (config.revocations) out(`revocations from Redis ${describeRedis(config.revocations.redis)} (stream and channel ${revocationsKey(config.revocations.prefix)})`);
}

/** Warnings for a sidecar file (or a dev file's sidecar half); the start-time ones come from hygiene.ts. */
function sidecarWarnings(config: SidecarConfig, env: NodeJS.ProcessEnv, dev: boolean): string[] {
  const warnings: string[] = sidecarHygieneWarnings(config);
  if (!isLoopback(config.listen.host)) {
    warnings.push(`listen ${config.listen.host}: the agent-facing port is reachable beyond this host; anyone who reaches it uses the credentials`);
  }
  for (const [name, r] of Object.entries(config.routes)) {
    // File modes are in sidecarHygieneWarnings (also logged by leash sidecar at start).
    if (typeof r.credential === 'object') warnings.push(...absentSecretWarnings(`routes.${name}.credential`, r.credential, env));
    if (r.upstream.protocol === 'http:' && !isLoopback(r.upstream.hostname)) {
      warnings.push(`routes.${name}.upstream: plain http sends the credential unencrypted`);
    }
    r.allow.forEach((rule, i) => {
      const tunnel = rule.method === 'GET' || rule.method === 'HEAD' ? undefined : rule.segments.map(tunnelSegment).find((t) => t !== undefined);
      if (tunnel) warnings.push(`routes.${name}.allow[${i}] "${rule.text}": "${tunnel}" carries requests of its own, which leash does not check: this rule allows every method and path they name`);
    });
  }
  // In a dev file the join token is leash dev's own.
  const jt = config.authority?.bootstrap.joinToken;
  if (jt && !dev) warnings.push(...absentSecretWarnings('authority.bootstrap.joinToken', jt, env));
  const redis = config.revocations?.redis;
  if (typeof redis === 'object' && redis.password) warnings.push(...secretSourceWarnings('revocations.redis.password', redis.password, env));
  const audit = config.audit.redis;
  if (typeof audit === 'object' && audit.password) warnings.push(...secretSourceWarnings('audit.redis.password', audit.password, env));
  if (!config.revocations && config.authority && !dev) warnings.push('no revocations section: leased credentials cannot be revoked before they expire');
  return warnings;
}

function describeRedis(target: RedisTargetConfig): string {
  if (typeof target === 'string') return redactUrl(target);
  if ('url' in target) return `${redactUrl(target.url)}${target.password ? ' (password from a source)' : ''}`;
  if ('sentinels' in target) return `Sentinel "${target.name}" via ${target.sentinels.map((n) => `${n.host}:${n.port}`).join(', ')}`;
  return `Cluster via ${target.cluster.map((n) => `${n.host}:${n.port}`).join(', ')}`;
}
