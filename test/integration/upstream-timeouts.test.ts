import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { expectLeashError, rawRequest } from '../helpers/proxy-util.js';

/**
 * A route's upstream timeouts (src/sidecar/proxy/timeouts.ts), as an agent sees them:
 * `connect` bounds a connection the upstream never completes, `idle` bounds silence on
 * an open one — and only silence: a slow stream that keeps sending is never cut.
 */
const SECRET = 'sk-timeouts-0123456789abcdef0123';
const inject = { header: 'authorization', format: 'Bearer {{credential}}' };
const allow = ['GET /**'];

/**
 * A port whose connections never complete: a process listens with a backlog of one and
 * then never runs its event loop again (nothing is accepted), and the queue is filled, so
 * the kernel drops every further SYN and a connect stays in progress.
 */
async function unansweredPort(): Promise<{ port: number; child: ChildProcess; fillers: Socket[] }> {
  const child = spawn(process.execPath, [
    '-e',
    `const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{process.stdout.write(String(s.address().port)+'\\n',()=>Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,60000))})`,
  ]);
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const fillers: Socket[] = [];
  for (let i = 0; i < 4; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => undefined));
  await new Promise((r) => setTimeout(r, 200));
  return { port, child, fillers };
}

describe('upstream timeouts', () => {
  let unanswered: Awaited<ReturnType<typeof unansweredPort>>;
  let trickle: Upstream;
  let leash: RunningSidecar;

  beforeAll(async () => {
    unanswered = await unansweredPort();
    // Sends an event every 100 ms for `n` events, then falls silent without ending.
    trickle = await startUpstream((req, res) => {
      const n = Number(new URL(req.url!, 'http://x').searchParams.get('n'));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let sent = 0;
      const t = setInterval(() => {
        if (sent++ < n) res.write(`data: ${sent}\n\n`);
        else clearInterval(t);
      }, 100);
      res.on('close', () => clearInterval(t));
    });
    leash = await startSidecar(
      {
        routes: {
          blackhole: { upstream: `http://127.0.0.1:${unanswered.port}`, credential: { env: 'KEY' }, inject, allow, timeouts: { connect: '300ms', idle: '30s' } },
          trickle: { upstream: trickle.url, credential: { env: 'KEY' }, inject, allow, timeouts: { connect: '2s', idle: '400ms' } },
        },
      },
      { env: { KEY: SECRET } },
    );
  });

  afterAll(async () => {
    await leash?.stop();
    await trickle?.close();
    for (const s of unanswered?.fillers ?? []) s.destroy();
    unanswered?.child.kill('SIGKILL');
  });

  it('a connection the upstream never completes is given up after timeouts.connect: 504', async () => {
    const t0 = performance.now();
    const r = await rawRequest(`${leash.url}/blackhole/v1/x`, { timeoutMs: 5_000 });
    const took = performance.now() - t0;
    expectLeashError(r, 'leash_upstream_timeout', 504, 'blackhole');
    // 300 ms, at most a quarter late (the sweeper's period), plus scheduling slack.
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1_500);
  });

  it('a stream that keeps sending outlives the idle timeout; once silent it is cut after it', async () => {
    // 10 events over ~1 s (2.5× the 400 ms idle timeout), then silence.
    const t0 = performance.now();
    const r = await rawRequest(`${leash.url}/trickle/sse?n=10`, { timeoutMs: 5_000 }).catch((err: Error) => err);
    const took = performance.now() - t0;
    // The answer had started: the only honest signal is a cut connection, after every event.
    expect(r).toBeInstanceOf(Error);
    expect(took).toBeGreaterThan(1_000 + 390);
    expect(took).toBeLessThan(3_000);
  });
});
