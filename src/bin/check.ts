import { existsSync } from 'node:fs';
import { formatDuration } from '../core/duration.js';
import { loadSidecarConfig, readCaFiles } from './load.js';

/** `leash check --config FILE`: validate and print what the sidecar would do. Never prints a secret. */
export function runCheck(configPath: string, env: NodeJS.ProcessEnv, out: (line: string) => void): number {
  const config = loadSidecarConfig(configPath, env);
  readCaFiles(config);
  const warnings: string[] = [];
  out(`config ${configPath}: valid`);
  out(`listen ${config.listen.host}:${config.listen.port}   admin ${config.admin.host}:${config.admin.port}   shutdown grace ${formatDuration(config.shutdown.grace)}`);
  if (!['127.0.0.1', '::1', 'localhost'].includes(config.listen.host)) {
    warnings.push(`listen ${config.listen.host}: the agent-facing port is reachable beyond this host; anyone who reaches it uses the credentials`);
  }
  for (const [name, r] of Object.entries(config.routes)) {
    const inject = r.inject;
    const how = 'header' in inject ? `header ${inject.header}: ${inject.format}` : 'query' in inject ? `query parameter ${inject.query}` : `basic auth as ${inject.basic.username}`;
    const cred = r.credential;
    const source = typeof cred === 'string' ? `lease "${cred}" from ${config.authority!.url.href}` : 'file' in cred ? `file ${cred.file}` : `env ${cred.env}`;
    out(`route /${name}/ → ${r.upstream.href}`);
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
  if (config.authority) {
    const jt = config.authority.bootstrap.joinToken;
    out(`authority ${config.authority.url.href} (CA ${config.authority.caFile}); join token from ${'file' in jt ? `file ${jt.file}` : `env ${jt.env}`}`);
    out(`rotation at ${config.rotation.at} of the TTL ± ${config.rotation.jitter}`);
  }
  for (const w of warnings) out(`warning: ${w}`);
  return 0;
}
