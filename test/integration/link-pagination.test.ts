import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Pagination by `Link` header (RFC 8288), as GitHub, GitLab, Shopify, Okta and Sentry page
 * their lists: the answer names the next page by the upstream's own URL. Clients follow it
 * as given — Octokit's paginate takes `rel="next"` as is when it starts with `http` (and
 * prepends its base URL otherwise), PyGithub refuses a next URL on another host than its
 * base URL's — so through leash page 2 went straight to the upstream, without the
 * credential (GitHub: `401 Bad credentials` for the agent's dummy token; PyGithub: an
 * AssertionError). Like a redirect's `Location`, a `Link` target on the upstream inside
 * the route's base path now names the agent's own URL for it (absolute, on the `Host` the
 * agent used), so the next page comes back through leash, its allow rules and its
 * credential; any other target is left as it was.
 */
// Made up, shaped like a GitHub token: no real key.
const SECRET = 'ghp_Lk7mQ2vN9xR4tY8wZ1bC5dF3hJ6pS0aE2gUi';

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;

const PAGES = 3;

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    const u = new URL(req.url!, 'http://x');
    const origin = `http://127.0.0.1:${up.port}`;
    const page = Number(u.searchParams.get('page') ?? 1);
    const links: string[] = [];
    if (u.pathname.endsWith('/issues')) {
      const base = u.pathname.startsWith('/api/v3') ? '/api/v3' : '';
      const at = (p: number) => `${origin}${base}/repos/o/r/issues?per_page=1&page=${p}`;
      if (page < PAGES) links.push(`<${at(page + 1)}>; rel="next"`, `<${at(PAGES)}>; rel="last"`);
      if (page > 1) links.push(`<${at(1)}>; rel="first"`, `<${at(page - 1)}>; rel="prev"`);
    } else if (u.pathname === '/v1/mixed') {
      links.push(
        `</v1/mixed?page=2>; rel="next"`,
        `<https://docs.example.com/rest>; rel="help"`,
        `<page3>; rel="last"`,
        `<${origin}/v1/mixed?page=4>;rel=prev;title="a, b"`,
      );
      res.setHeader('link', [links.join(', '), `<${origin}/v1/other>; rel="alternate"`]);
      res.setHeader('content-type', 'application/json');
      return void res.end('[]');
    } else if (u.pathname.startsWith('/v1/split/')) {
      // The secret echoed with a tab every `n` characters: a header value may hold tabs, and
      // the URL parser the rewrite goes through drops them, joining the value up again.
      const n = Number(u.pathname.slice('/v1/split/'.length));
      const split = SECRET.match(new RegExp(`.{1,${n}}`, 'g'))!.join('\t');
      res.setHeader('link', `<${origin}/v1/next?key=${split}>; rel="next"`);
      res.setHeader('location', `${origin}/v1/moved?key=${split}`);
      res.statusCode = 302;
      return void res.end();
    } else if (u.pathname === '/api/v3/outside') {
      links.push(`<${origin}/elsewhere/x>; rel="next"`);
    }
    res.setHeader('content-type', 'application/json');
    if (links.length) res.setHeader('link', links.join(', '));
    res.end(JSON.stringify([{ page }]));
  });
  leash = await startSidecar(
    {
      routes: {
        github: bearerRoute(up.url, ['GET /repos/**', 'GET /v1/**']),
        ghe: bearerRoute(`${up.url}/api/v3`, ['GET /repos/**', 'GET /outside']),
      },
    },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});
beforeEach(() => {
  up.seen.length = 0;
});

/** Octokit's paginate: the `rel="next"` URL, used as is if absolute, else appended to the base URL. */
async function octokitPages(baseUrl: string, first: string): Promise<unknown[]> {
  const pages: unknown[] = [];
  let url: string | undefined = first;
  for (let i = 0; url && i < 10; i++) {
    const r: Response = await fetch(/^http/.test(url) ? url : baseUrl + url, { headers: { authorization: 'token agent-dummy' } });
    expect(r.status, url).toBe(200);
    pages.push(...((await r.json()) as unknown[]));
    url = ((r.headers.get('link') ?? '').match(/<([^<>]+)>;\s*rel="next"/) ?? [])[1];
  }
  return pages;
}

describe('Link header pagination comes back through leash', () => {
  for (const route of ['github', 'ghe (upstream with a base path)']) {
    it(`Octokit-style paginate over every page, each through leash with the credential: ${route}`, async () => {
      const pages = await octokitPages(`${leash.url}/${route.split(' ')[0]}`, '/repos/o/r/issues?per_page=1');
      expect(pages).toEqual([{ page: 1 }, { page: 2 }, { page: 3 }]);
      expect(up.seen).toHaveLength(PAGES);
      for (const s of up.seen) expect(s.headers.authorization).toBe(`Bearer ${SECRET}`);
    });
  }

  it('every same-origin target names the agent\'s URL for it; the Host the agent used is kept', async () => {
    const r = await fetch(`http://localhost:${port}/ghe/repos/o/r/issues?per_page=1&page=2`);
    const link = r.headers.get('link');
    const at = (p: number) => `http://localhost:${port}/ghe/repos/o/r/issues?per_page=1&page=${p}`;
    expect(link).toBe(`<${at(3)}>; rel="next", <${at(3)}>; rel="last", <${at(1)}>; rel="first", <${at(1)}>; rel="prev"`);
  });

  it('PyGithub-style: the next URL is on the base URL\'s host and port, under its path', async () => {
    const r = await fetch(`${leash.url}/ghe/repos/o/r/issues?per_page=1`);
    const next = new URL(/<([^<>]+)>;\s*rel="next"/.exec(r.headers.get('link')!)![1]!);
    expect([next.hostname, next.port]).toEqual(['127.0.0.1', String(port)]);
    expect(next.pathname.startsWith('/ghe/')).toBe(true);
  });

  it('other targets are left as they are: another origin, a relative reference, outside the base path (made absolute)', async () => {
    const r = await fetch(`${leash.url}/github/v1/mixed`);
    const origin = `http://127.0.0.1:${up.port}`;
    expect(r.headers.get('link')).toBe(
      `<${leash.url}/github/v1/mixed?page=2>; rel="next", <https://docs.example.com/rest>; rel="help", <page3>; rel="last", <${leash.url}/github/v1/mixed?page=4>;rel=prev;title="a, b", <${leash.url}/github/v1/other>; rel="alternate"`,
    );
    expect(r.headers.get('link')).not.toContain(origin);
    const out = await fetch(`${leash.url}/ghe/outside`);
    expect(out.headers.get('link')).toBe(`<${origin}/elsewhere/x>; rel="next"`);
  });

  for (const n of [1, 4, 7, 20]) {
    it(`a secret split by tabs (every ${n} characters) is not joined up again by the rewrite of Link and Location`, async () => {
      const ex = await rawRequest(port, `GET /github/v1/split/${n} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
      expect(ex.responses[0]?.status).toBe(302);
      const link = ex.responses[0]!.header('link')!;
      const location = ex.responses[0]!.header('location')!;
      expect(link).toMatch(/^<http:\/\/127\.0\.0\.1:\d+\/github\/v1\/next\?key=/);
      expect(location).toMatch(/^\/github\/v1\/moved\?key=/);
      for (const v of [link, location, ex.raw]) expect(v.replace(/[\t ]/g, '')).not.toContain(SECRET);
    });
  }

  it('a request without Host (HTTP/1.0) gets the agent path', async () => {
    const ex = await rawRequest(port, 'GET /github/repos/o/r/issues?per_page=1 HTTP/1.0\r\n\r\n');
    expect(ex.responses[0]?.status).toBe(200);
    expect(ex.responses[0]!.header('link')).toMatch(/^<\/github\/repos\/o\/r\/issues\?per_page=1&page=2>; rel="next"/);
  });
});
