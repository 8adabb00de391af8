import { existsSync } from 'node:fs';
import { compilePolicy } from '../authority/policy/policy.js';
import type { RedisTargetConfig } from '../config/common.js';
import { authoritySchema, type AuthorityConfig } from '../config/authority.js';
import { unknownLeaseNames } from '../config/cross-check.js';
import { redactUrl } from '../config/issues.js';
import { readDocument, validateConfig } from '../config/load.js';
import { sidecarSchema, type SidecarConfig } from '../config/sidecar.js';
import { formatDuration } from '../core/duration.js';
import { ConfigError } from '../core/errors.js';
import { sidecarHygieneWarnings } from './hygiene.js';
import { readCaFiles, readText } from './load.js';

/**
 * `leash check --config FILE`: validate a sidecar, authority or `leash dev` config and
 * print what it would do. Never prints a secret. The kind is told from the top-level keys.
 */
export function runCheck(configPath: string, env: NodeJS.ProcessEnv, out: (line: string) => void): number {
  const doc = readDocument(readText(configPath, '--config'), env, configPath);
  const keys = Object.keys(doc);
  if (keys.includes('sidecar') && keys.includes('authority') && keys.length === 2) {
    const authority = validateConfig(authoritySchema, { listen: '127.0.0.1:0', ...(doc.authority as object) }, 'authority');
    // leash dev fills the sidecar's authority section in itself.
    const placeholder = { url: 'https://in-process.invalid', caFile: '(in-process)', bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } } };
    const sidecar = validateConfig(sidecarSchema, { ...(doc.sidecar as object), authority: placeholder }, 'sidecar');
    // Both halves are here: a lease name the authority does not define is an error now,
    // not a refusal repeated (and audited) for as long as the sidecar runs.
    const unknown = unknownLeaseNames(sidecar.routes, Object.keys(authority.credentials));
    if (unknown.length) throw new ConfigError(unknown);
    out(`config ${configPath}: a leash dev config`);
    checkAuthority(authority, out);
    return checkSidecar(sidecar, configPath, env, out, true);
  }
  if (keys.includes('credentials') || keys.includes('policies') || keys.includes('trustDomain')) {
    out(`config ${configPath}: valid (authority)`);
    checkAuthority(validateConfig(authoritySchema, doc), out);
    return 0;
  }
  return checkSidecar(validateConfig(sidecarSchema, doc), configPath, env, out, false);
}

function checkAuthority(c: AuthorityConfig, out: (line: string) => void): void {
  // What `leash authority` would refuse at start is refused here too.
  compilePolicy(
    c.policies.map((p) => ({ identities: p.identities, credentials: p.credentials, maxTtlMs: p.maxTtl })),
    c.trustDomain,
  );
  out(`authority listen ${c.listen.host}:${c.listen.port}   trust domain ${c.trustDomain}   identity TTL ${formatDuration(c.identity.ttl)}`);
  out(`  CA ${c.ca ? c.ca.certFile : 'generated in memory (dev only)'}; JWT signing keys ${c.signing ? c.signing.keysDir : 'generated (dev only)'}`);
  out(`  store ${c.redis ? `Redis ${describeRedis(c.redis)}` : 'in memory (one replica only)'}; admin API ${c.admin ? 'enabled' : 'disabled (no admin.token)'}`);
  for (const [name, cred] of Object.entries(c.credentials)) out(`  credential ${name}: ${cred.kind}, TTL ${formatDuration(cred.ttl)}`);
  if (c.policies.length === 0) out('  policies: none (every lease is denied)');
  for (const p of c.policies) out(`  policy ${p.identities.join(', ')} → ${p.credentials.join(', ')} (max TTL ${formatDuration(p.maxTtl)})`);
}

function checkSidecar(config: SidecarConfig, configPath: string, env: NodeJS.ProcessEnv, out: (line: string) => void, dev: boolean): number {
  readCaFiles(config);
  const warnings: string[] = sidecarHygieneWarnings(config);
  if (!dev) out(`config ${configPath}: valid`);
  out(`listen ${config.listen.host}:${config.listen.port}   admin ${config.admin.host}:${config.admin.port}   shutdown grace ${formatDuration(config.shutdown.grace)}`);
  if (!['127.0.0.1', '::1', 'localhost'].includes(config.listen.host)) {
    warnings.push(`listen ${config.listen.host}: the agent-facing port is reachable beyond this host; anyone who reaches it uses the credentials`);
  }
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
    if (typeof cred === 'object' && 'file' in cred && !existsSync(cred.file)) warnings.push(`routes.${name}.credential: file ${cred.file} does not exist yet; the route is unavailable until it does`);
    if (typeof cred === 'object' && 'env' in cred && !env[cred.env]) warnings.push(`routes.${name}.credential: environment variable ${cred.env} is not set; the route is unavailable`);
    if (r.upstream.protocol === 'http:' && !['127.0.0.1', 'localhost', '[::1]'].includes(r.upstream.hostname)) {
      warnings.push(`routes.${name}.upstream: plain http sends the credential unencrypted`);
    }
  }
  if (dev) out('authority: the in-process one above (leash dev)');
  if (config.authority && !dev) {
    const jt = config.authority.bootstrap.joinToken;
    out(`authority ${redactUrl(config.authority.url)} (CA ${config.authority.caFile}); join token from ${'file' in jt ? `file ${jt.file}` : `env ${jt.env}`}`);
    out(`rotation at ${config.rotation.at} of the TTL ± ${config.rotation.jitter}; retries back off from ${formatDuration(config.rotation.backoff.base)} to ${formatDuration(config.rotation.backoff.cap)}`);
  }
  if (config.revocations) out(`revocations from Redis ${describeRedis(config.revocations.redis)} (stream and channel ${config.revocations.prefix}revocations)`);
  else if (config.authority && !dev) warnings.push('no revocations section: leased credentials cannot be revoked before they expire');
  for (const w of warnings) out(`warning: ${w}`);
  return 0;
}

function describeRedis(target: RedisTargetConfig): string {
  if (typeof target === 'string') return redactUrl(target);
  if ('sentinels' in target) return `Sentinel "${target.name}" via ${target.sentinels.map((n) => `${n.host}:${n.port}`).join(', ')}`;
  return `Cluster via ${target.cluster.map((n) => `${n.host}:${n.port}`).join(', ')}`;
}
