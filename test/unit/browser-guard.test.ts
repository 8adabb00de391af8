import { describe, expect, it } from 'vitest';
import { collectConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { browserRefusal, hostAnswered, NO_CLIENT_NAMES } from '../../src/sidecar/proxy/browser-guard.js';

/** The pure rules of browser-guard.ts, edge by edge (the request-level family is test/security/browser-requests.test.ts). */
const names = { hosts: new Set(['leash.agents.svc']), origins: new Set(['https://console.example.com']) };

describe('hostAnswered', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.0.0.1:8080', true],
    ['127.0.0.10:8080', true],
    ['127.0.0.1.evil.example:8080', false],
    ['127.0.0.1evil.example', false],
    ['10.0.0.7:9090', true],
    ['[::1]:8080', true],
    ['[::1', false],
    // An IPv6 literal with a dot in it (IPv4-mapped) is still an IP literal, not a rebindable name.
    ['[::ffff:127.0.0.1]:8080', true],
    ['[::ffff:7f00:1]', true],
    // A trailing '[' makes no IPv6 literal of a dotted name.
    ['evil.example[', false],
    ['evil.example[:8080', false],
    ['localhost', true],
    ['LOCALHOST:8080', true],
    ['agent.localhost:1', true],
    ['localhost.evil.example', false],
    ['leash', true],
    ['leash:8080', true],
    ['leash.agents.svc:8080', true],
    ['LEASH.AGENTS.SVC', true],
    ['leash.agents.svc.', false],
    ['evil.example', false],
    ['evil.', false],
    ['', false],
    [':8080', false],
  ])('%j → %s', (host, ok) => {
    expect(hostAnswered(host, names)).toBe(ok);
  });

  it('an absent Host (HTTP/1.0) is not a browser', () => {
    expect(hostAnswered(undefined, NO_CLIENT_NAMES)).toBe(true);
  });
});

describe('browserRefusal', () => {
  it.each([
    [{ host: '127.0.0.1:1' }, false],
    [{ host: '127.0.0.1:1', origin: 'https://console.example.com' }, false],
    [{ host: '127.0.0.1:1', origin: 'HTTPS://CONSOLE.EXAMPLE.COM' }, false],
    [{ host: '127.0.0.1:1', origin: 'https://console.example.com.evil.example' }, true],
    [{ host: '127.0.0.1:1', origin: 'null' }, true],
    [{ host: '127.0.0.1:1', origin: '' }, true],
    [{ host: '127.0.0.1:1', 'sec-fetch-site': 'cross-site' }, true],
    [{ host: '127.0.0.1:1', 'sec-fetch-site': 'same-site' }, true],
    [{ host: '127.0.0.1:1', 'sec-fetch-site': 'same-origin' }, false],
    [{ host: '127.0.0.1:1', 'sec-fetch-site': 'none' }, false],
    [{ host: 'evil.example:1', 'sec-fetch-site': 'same-origin' }, true],
  ])('%j refused: %s', (headers, refused) => {
    expect(browserRefusal(headers, names) !== undefined).toBe(refused);
  });

  it('never quotes what the page sent', () => {
    const why = browserRefusal({ host: 'evil-marker.example', origin: 'https://origin-marker.example' }, names)!;
    expect(why).not.toMatch(/marker/);
    expect(browserRefusal({ host: '127.0.0.1', origin: 'https://origin-marker.example' }, names)).not.toMatch(/marker/);
  });
});

describe('clients config', () => {
  const base = { routes: { a: { upstream: 'https://api.example.com', credential: { env: 'K' }, inject: { header: 'x-key' }, allow: ['GET /**'] } } };
  const check = (clients: unknown) => collectConfig(sidecarSchema, { ...base, clients });
  it('takes host names and origins, normalised as browsers send them', () => {
    const { value, problems } = check({ hosts: ['Leash.Agents.SVC'], origins: ['HTTPS://Console.Example.com', 'http://localhost:3000/'] });
    expect(problems).toEqual([]);
    expect(value!.clients).toEqual({ hosts: ['leash.agents.svc'], origins: ['https://console.example.com', 'http://localhost:3000'] });
    expect(check(undefined).value!.clients).toEqual({ hosts: [], origins: [] });
  });
  it.each([
    [{ hosts: ['leash:8080'] }, /^clients\.hosts\[0\]: must be a host name without a port/],
    [{ hosts: ['http://leash'] }, /^clients\.hosts\[0\]: /],
    [{ origins: ['https://console.example.com/app'] }, /^clients\.origins\[0\]: must be a web origin/],
    [{ origins: ['console.example.com'] }, /^clients\.origins\[0\]: /],
    [{ origins: ['ftp://x.example'] }, /^clients\.origins\[0\]: /],
    [{ origins: ['null'] }, /^clients\.origins\[0\]: /],
    [{ host: [] }, /^clients\.host: unknown key/],
  ])('%j: refused by key path', (clients, expected) => {
    const { problems } = check(clients);
    expect(problems.some((p) => expected.test(p)), JSON.stringify(problems)).toBe(true);
  });
});
