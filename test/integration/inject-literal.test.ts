import { afterEach, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/**
 * A credential is injected byte for byte whatever it contains: String.replace treats
 * `$&`, `$'`, `` $` `` and `$$` in a replacement string as patterns, so a value with them
 * would reach the upstream mangled (and the agent's request would fail for no visible reason).
 */
const VALUES = ["sk-$&-literal-0123456789", "sk-$'-after-0123456789", 'sk-$`-before-0123456789', 'sk-$$-dollar-0123456789', 'sk-$1-group-0123456789'];

let upstream: Upstream | undefined;
let leash: RunningSidecar | undefined;
afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  leash = upstream = undefined;
});

describe('credential injection is literal', () => {
  for (const value of VALUES) {
    it(`sends ${JSON.stringify(value)} exactly`, async () => {
      const seen: (string | undefined)[] = [];
      upstream = await startUpstream((req, res) => {
        seen.push(req.headers.authorization);
        res.end('ok');
      });
      leash = await startSidecar(
        { routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } } },
        { env: { KEY: value } },
      );
      const res = await fetch(`${leash.url}/api/v1/x`);
      expect(res.status).toBe(200);
      expect(seen).toEqual([`Bearer ${value}`]);
    });
  }
});
