import { Agent, request, STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { buildCorpus, type Case } from '../helpers/response-corpus.js';

/**
 * The corpus of hostile upstream answers (test/helpers/response-corpus.ts) against a sidecar
 * in this process. test/security/response-fuzz.test.ts runs the same corpus against the
 * built CLI as its own process (a crash ends it visibly), which only tests the last build
 * and which mutation testing cannot see; here the source itself answers every case, and an
 * exception leash fails to catch fails the run. Same judgement: a well-formed answer of the
 * expected kind, leash still serving, the secret nowhere the agent or the log could show it.
 * (Every secret in this file is a fake test value.)
 */
const SECRET = 'sk-live-CORPUS0123456789abcdefXYZ';
const FORMS = [SECRET, Buffer.from(`user:${SECRET}`).toString('base64')];
const ROUTES = ['h', 'b', 'q'] as const;

let raw: { server: Server; port: number };
let good: Upstream;
let leash: RunningSidecar;
let port: number;
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
/** Every byte the agent received, on every connection. */
const received: Buffer[] = [];
const tapped = new WeakSet<Socket>();
let cases: Case[];

/** The raw upstream: reads each request head, answers the case its path names, then closes. */
function rawUpstream(corpus: Case[]): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const m = /^[A-Z]+ \/case\/(\d+)/.exec(head);
      head = '';
      const c = m ? corpus[Number(m[1])] : undefined;
      if (!c) return void socket.destroy();
      socket.write(c.bytes, () => (c.close === 'reset' ? socket.resetAndDestroy() : socket.end()));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

type Outcome =
  | { kind: 'response'; status: number; reason: string; headers: IncomingHttpHeaders; body: string; complete: boolean }
  | { kind: 'closed'; code: string }
  | { kind: 'hang' };

/** One request as an agent makes it, through Node's strict client parser. */
function agentRequest(path: string, method = 'GET'): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(o);
    };
    const req = request({ host: '127.0.0.1', port, path, method, agent }, (res) => {
      const chunks: Buffer[] = [];
      const result = (complete: boolean): Outcome => ({
        kind: 'response',
        status: res.statusCode ?? 0,
        reason: res.statusMessage ?? '',
        headers: res.headers,
        body: Buffer.concat(chunks).toString('latin1'),
        complete,
      });
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => finish(result(res.complete)));
      res.on('aborted', () => finish(result(false)));
      res.on('error', () => finish(result(false)));
    });
    req.on('socket', (s: Socket) => {
      if (tapped.has(s)) return;
      tapped.add(s);
      s.on('data', (d: Buffer) => received.push(d));
    });
    req.on('error', (err: NodeJS.ErrnoException) => finish({ kind: 'closed', code: err.code ?? String(err) }));
    const timer = setTimeout(() => {
      finish({ kind: 'hang' });
      req.destroy();
    }, 4_000);
    req.end();
  });
}

/** What is wrong with the agent's answer to one case (empty: nothing). */
function judge(c: Case, o: Outcome): string[] {
  if (o.kind === 'hang') return ['the agent got no answer within 4 s'];
  if (o.kind === 'closed') {
    if (o.code.startsWith('HPE_')) return [`the agent's parser refused leash's answer (${o.code})`];
    return c.mayCut ? [] : [`the connection was closed without an answer (${o.code})`];
  }
  const problems: string[] = [];
  if (!Number.isInteger(o.status) || o.status < 200 || o.status > 599) problems.push(`status ${o.status}`);
  if (o.reason !== (STATUS_CODES[o.status] ?? 'Unknown')) problems.push(`reason phrase ${JSON.stringify(o.reason)} is not the standard one`);
  if (!o.complete && !c.mayCut) problems.push('the answer was cut');
  const leashError = o.headers['x-leash-error'];
  if (leashError !== undefined && o.status !== 502) problems.push(`leash error ${String(leashError)} with status ${o.status}`);
  switch (c.expect) {
    case 'relay':
      if (leashError !== undefined || o.status !== c.status) problems.push(`expected the upstream's ${c.status}, got ${o.status} ${String(leashError ?? '')}`);
      break;
    case 'refuse':
      if (o.status !== 502 || leashError !== 'leash_upstream_bad_response') problems.push(`expected 502 leash_upstream_bad_response, got ${o.status} ${String(leashError ?? '')}`);
      break;
    case 'leash502':
      if (o.status !== 502 || leashError === undefined) problems.push(`expected a leash 502, got ${o.status}`);
      break;
    case 'any':
      break;
  }
  if (leashError !== undefined && o.complete) {
    let type: unknown;
    try {
      type = (JSON.parse(o.body) as { error: { type: unknown } }).error.type;
    } catch {
      type = undefined;
    }
    if (type !== leashError) problems.push('an x-leash-error header without a leash error body');
  }
  const extra = c.check?.({ headers: o.headers, body: o.body });
  if (extra) problems.push(extra);
  return problems;
}

beforeAll(async () => {
  cases = buildCorpus(SECRET);
  raw = await rawUpstream(cases);
  good = await startUpstream((_req, res) => res.end('ok'));
  const upstream = `http://127.0.0.1:${raw.port}`;
  const common = { credential: { env: 'KEY' }, allow: ['GET /**', 'HEAD /**'], timeouts: { idle: '3s' } };
  leash = await startSidecar(
    {
      routes: {
        h: { ...common, upstream, inject: { header: 'authorization', format: 'Bearer {{credential}}' } },
        b: { ...common, upstream, inject: { basic: { username: 'user' } } },
        q: { ...common, upstream, inject: { query: 'key' } },
        ok: { ...common, upstream: good.url, inject: { header: 'x-api-key' } },
      },
    },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
}, 20_000);

afterAll(async () => {
  agent.destroy();
  await leash?.stop();
  await new Promise((r) => raw?.server.close(r));
  await good?.close();
});

describe('response corpus: hostile upstream answers, sidecar in this process', () => {
  it('the corpus is large enough', () => {
    expect(cases.length).toBeGreaterThanOrEqual(200);
  });

  it('every case: a well-formed answer, leash still serving, the secret nowhere', async () => {
    const failures: string[] = [];
    const started = performance.now();
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i]!;
      const route = ROUTES[i % ROUTES.length]!;
      const outcome = await agentRequest(`/${route}/case/${i}`, c.method);
      for (const p of judge(c, outcome)) failures.push(`#${i} ${c.name} [${route}]: ${p}`);
      const health = await agentRequest('/ok/health');
      if (health.kind !== 'response' || health.status !== 200 || health.body !== 'ok') {
        failures.push(`#${i} ${c.name} [${route}]: the next normal request failed (${JSON.stringify(health).slice(0, 200)})`);
        break;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const output = leash.logs.lines.join('\n');
    const agentSaw = Buffer.concat(received).toString('latin1');
    for (const form of FORMS) {
      if (agentSaw.includes(form)) failures.push(`the agent received the secret (${form === SECRET ? 'raw' : 'base64'} form)`);
      if (output.includes(form)) failures.push(`the process output holds the secret (${form === SECRET ? 'raw' : 'base64'} form)`);
    }
    expect(failures, `${failures.length} failures in ${cases.length} cases (${seconds.toFixed(1)} s)`).toEqual([]);
    expect(agentSaw).toContain('[REDACTED]');
    expect(seconds).toBeLessThan(20);
  }, 60_000);
});
