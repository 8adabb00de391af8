import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { packageVersion } from '../../src/bin/version.js';
import { runLeash } from '../helpers/spawn.js';

/**
 * Version skew between the injector and the sidecar image (docs/operations.md, "Upgrades"):
 * the injector writes the sidecar's config into the pod spec ($LEASH_CONFIG). A newer
 * injector's key that this sidecar does not know is refused — ignoring it could drop a
 * restriction it carries (a `deny` list, say), and the sidecar would forward what the
 * newer config forbids — and the refusal says what to do. The built CLI, as a process.
 */
const injected = (route: Record<string, unknown>) =>
  stringify({
    instance: { id: 'agent-pod-1' },
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    authority: { url: 'https://127.0.0.1:1', caFile: '/nonexistent/ca.crt', bootstrap: { kubernetes: { tokenFile: '/nonexistent/token' } } },
    routes: { api: { upstream: 'https://api.example.com', credential: 'api', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /v1/**'], ...route } },
  });

describe('a sidecar meets a config from a newer injector', () => {
  it('a key it does not know is refused at start, named, with the version and what to do', () => {
    const r = runLeash(['sidecar', '--config-env', 'LEASH_CONFIG'], { LEASH_CONFIG: injected({ deny: ['DELETE /**'] }) });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('routes.api.deny: unknown key');
    expect(r.stderr).toContain(`this sidecar is leash ${packageVersion()}`);
    expect(r.stderr).toContain('newer injector');
    expect(r.stderr).toContain('docs/operations.md, "Upgrades"');
  });

  it('a config of its own version gets past validation (and fails later, on the files it names), with no such hint', () => {
    const r = runLeash(['sidecar', '--config-env', 'LEASH_CONFIG'], { LEASH_CONFIG: injected({}) });
    expect(r.status).not.toBe(0);
    expect(r.stderr).not.toContain('unknown key');
    expect(r.stderr).not.toContain('newer injector');
  });
});
