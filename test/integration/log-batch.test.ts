import { spawn } from 'node:child_process';
import { request as httpRequest, Agent } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAudit, requestLineBody, type AuditFields } from '../../src/telemetry/audit.js';
import { BatchedFdDestination } from '../../src/telemetry/log-batch.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

const DIST = join(import.meta.dirname, '..', '..', 'dist', 'src');

/** A write(2) stand-in recording what reached the fd; `fail` makes the next calls throw. */
function fakeFd() {
  const out: Buffer[] = [];
  let fail: string | undefined;
  let partial = 0;
  return {
    text: () => Buffer.concat(out).toString('utf8'),
    calls: () => out.length,
    failWith: (code: string | undefined) => (fail = code),
    partialOnce: (n: number) => (partial = n),
    /** write(2) as BatchedFdDestination calls it: a string (encoded as UTF-8, as Node does) or bytes. */
    write: (_fd: number, data: string | Buffer) => {
      if (fail) throw Object.assign(new Error(fail), { code: fail });
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      const n = partial > 0 ? Math.min(partial, bytes.length) : bytes.length;
      partial = 0;
      out.push(Buffer.from(bytes.subarray(0, n)));
      return n;
    },
  };
}

async function until(pred: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('BatchedFdDestination', () => {
  it('holds lines until ~minBytes, then writes them in one call, in order', () => {
    const fd = fakeFd();
    const d = new BatchedFdDestination(99, { minBytes: 100, maxDelayMs: 60_000 }, fd.write);
    for (let i = 0; i < 9; i++) d.write(`line ${i} ..\n`); // 9 × 11 chars < 100
    expect(fd.calls()).toBe(0);
    d.write('line 9 ..\n');
    expect(fd.calls()).toBe(1);
    expect(fd.text()).toBe(Array.from({ length: 10 }, (_, i) => `line ${i} ..\n`).join(''));
  });

  it('writes a small batch once maxDelayMs has passed', async () => {
    const fd = fakeFd();
    const d = new BatchedFdDestination(99, { minBytes: 4096, maxDelayMs: 20 }, fd.write);
    d.write('a\n');
    d.write('b\n');
    expect(fd.calls()).toBe(0);
    await until(() => fd.calls() > 0);
    expect(fd.text()).toBe('a\nb\n');
    expect(fd.calls()).toBe(1);
  });

  it('a partial write keeps its rest first; EAGAIN keeps everything for later; EPIPE stops quietly', async () => {
    const fd = fakeFd();
    const d = new BatchedFdDestination(99, { minBytes: 1, maxDelayMs: 60_000 }, fd.write);
    // 2 bytes: the write stops inside `é` (2 bytes in UTF-8); the rest starts with its second byte.
    fd.partialOnce(2);
    d.write('héllo\n');
    expect(fd.calls()).toBe(2);
    expect(fd.text()).toBe('héllo\n');
    fd.failWith('EAGAIN');
    d.write('one\n');
    d.write('two\n');
    expect(d.pending()).toBeGreaterThan(0);
    fd.failWith(undefined);
    await until(() => d.pending() === 0);
    expect(fd.text()).toBe('héllo\none\ntwo\n');
    fd.failWith('EPIPE');
    let flushed = false;
    expect(() => d.write('lost\n')).not.toThrow();
    d.flush(() => (flushed = true));
    expect(flushed).toBe(true);
    expect(() => d.write('after\n')).not.toThrow();
    expect(d.pending()).toBe(0);
  });

  it('while stdout is stalled the buffer stays bounded; the dropped lines are counted and reported once it drains', async () => {
    const fd = fakeFd();
    const d = new BatchedFdDestination(99, { minBytes: 1, maxDelayMs: 60_000, maxBuffered: 1_000 }, fd.write);
    fd.failWith('EAGAIN');
    const line = `${'x'.repeat(98)}\n`; // 99 characters
    for (let i = 0; i < 10_000; i++) d.write(line);
    expect(d.pending()).toBeLessThanOrEqual(1_000);
    expect(fd.calls()).toBe(0);
    fd.failWith(undefined);
    await until(() => d.pending() === 0);
    const lines = fd.text().trimEnd().split('\n');
    const kept = lines.filter((l) => l === line.trimEnd()).length;
    expect(kept).toBe(10);
    const notice = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    expect(notice).toMatchObject({ level: 'warn', msg: 'log lines dropped: stdout was not being read', dropped: 10_000 - kept });
    // Writing resumes normally, one line at a time again.
    d.write('after\n');
    expect(fd.text().endsWith('after\n')).toBe(true);
  });

  it('flush(cb) writes what is buffered and then calls back', () => {
    const fd = fakeFd();
    const d = new BatchedFdDestination(99, { minBytes: 4096, maxDelayMs: 60_000 }, fd.write);
    d.write('x\n');
    let done = false;
    d.flush(() => (done = true));
    expect(done).toBe(true);
    expect(fd.text()).toBe('x\n');
  });
});

describe('the fixed-schema request line', () => {
  const fields = (path: string): AuditFields => ({
    instance: 'sidecar-a1',
    route: 'vendor',
    method: 'GET',
    path,
    status: 200,
    durationMs: 1.234,
    fingerprint: 'sha256:abcd',
  });

  it('is the same bytes as the pino line it replaces (time aside), for hostile strings too', () => {
    const sink = new LogSink();
    const logger = createLogger({ level: 'info', destination: sink }).child({ component: 'sidecar' });
    const audit = createAudit(logger);
    const generic = logger.child({ audit: true });
    const paths = ['/v1/ok', '/a"b\\c', '/tab\tnl\ncr\r\u0000\u001f', '/ünïcödé/€/😀', '/\u2028\u2029', '/%22%5C', '</script>'];
    for (const p of paths) {
      audit.emit('request', fields(p));
      generic.info({ v: 1, event: 'request', ...fields(p) });
      audit.emit('request.denied', { ...fields(p), fingerprint: undefined, route: undefined, reason: 'policy' });
      generic.info({ v: 1, event: 'request.denied', ...fields(p), fingerprint: undefined, route: undefined, reason: 'policy' });
    }
    audit.emit('request', { ...fields('/'), durationMs: Number.NaN });
    generic.info({ v: 1, event: 'request', ...fields('/'), durationMs: Number.NaN });
    const noTime = (l: string) => l.replace(/"time":"[^"]*"/, '"time":"T"');
    expect(sink.lines).toHaveLength(2 * (2 * paths.length + 1));
    for (let i = 0; i < sink.lines.length; i += 2) {
      expect(noTime(sink.lines[i]!)).toBe(noTime(sink.lines[i + 1]!));
      const parsed = JSON.parse(sink.lines[i]!) as Record<string, unknown>;
      expect(Object.keys(parsed).slice(0, 7)).toEqual(['level', 'time', 'pid', 'name', 'component', 'audit', 'v']);
    }
    expect((JSON.parse(sink.lines[4]!) as { path: string }).path).toBe('/a"b\\c');
  });

  it('serializes lone surrogates as valid JSON escapes (pino would write them raw)', () => {
    for (const s of ['\ud800', 'x\udfffy', '\\\ud83d']) {
      const body = requestLineBody('request', { path: s, route: s });
      const parsed = JSON.parse(`{"x":0${body}}`) as Record<string, unknown>;
      expect(parsed.path).toBe(s);
      expect(body).not.toMatch(/[\ud800-\udfff]/);
    }
  });

  it('writes only the per-request fields: nothing else a caller passes reaches the line', () => {
    const sink = new LogSink();
    const audit = createAudit(createLogger({ level: 'info', destination: sink }));
    const hostile = { ...fields('/x'), secret: 'sk-live-SECRET', headers: { authorization: 'Bearer sk-live-SECRET' }, token: 'sk-live-SECRET', error: 'sk-live-SECRET' };
    audit.emit('request', hostile as AuditFields);
    expect(sink.lines).toHaveLength(1);
    expect(sink.lines[0]).not.toContain('sk-live-SECRET');
    expect(JSON.parse(sink.lines[0]!)).toMatchObject({ event: 'request', audit: true, v: 1, path: '/x', status: 200 });
  });

  it('respects the level: nothing at warn', () => {
    const sink = new LogSink();
    createAudit(createLogger({ level: 'warn', destination: sink })).emit('request', fields('/x'));
    expect(sink.lines).toHaveLength(0);
  });
});

/** Runs `code` (ESM, importing the built logger) in a child with stdout a pipe; returns its stdout lines and exit code. */
function runChild(code: string): Promise<{ lines: string[]; code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
  return new Promise((resolve) => child.on('close', (c) => resolve({ lines: out.split('\n').filter(Boolean), code: c, stderr: err })));
}

const EMIT_5000 = `
import { createLogger } from ${JSON.stringify(join(DIST, 'telemetry', 'logger.js'))};
import { createAudit } from ${JSON.stringify(join(DIST, 'telemetry', 'audit.js'))};
const audit = createAudit(createLogger({ level: 'info' }));
const emit = (i) => audit.emit('request', { instance: 'i', route: 'r', method: 'GET', path: '/p/' + i, status: 200, durationMs: 1 });
for (let i = 0; i < 5000; i++) emit(i);
`;

function expectAllInOrder(lines: string[], n: number): void {
  expect(lines).toHaveLength(n);
  lines.forEach((l, i) => expect((JSON.parse(l) as { path: string }).path).toBe(`/p/${i}`));
}

describe('nothing is lost at exit (stdout a pipe)', () => {
  it('an uncaught exception: every line written before it is on stdout, whole and in order', async () => {
    const r = await runChild(`${EMIT_5000}
setTimeout(() => { for (let i = 5000; i < 5010; i++) emit(i); throw new Error('injected crash'); }, 5);`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('injected crash');
    expectAllInOrder(r.lines, 5010);
  });

  it('process.exit from a signal handler', async () => {
    const r = await runChild(`${EMIT_5000}
process.on('SIGUSR2', () => { emit(5000); process.exit(3); });
setTimeout(() => process.kill(process.pid, 'SIGUSR2'), 5);
setTimeout(() => {}, 10_000);`);
    expect(r.code).toBe(3);
    expectAllInOrder(r.lines, 5001);
  });
});

describe('leash sidecar: SIGTERM under load', () => {
  let proc: Spawned | undefined;
  let upstream: Upstream | undefined;
  afterEach(async () => {
    proc?.child.kill('SIGKILL');
    await upstream?.close();
  });

  it('one request line per request answered, all written by exit', async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const config = writeTemp(
      'sidecar.yaml',
      `listen: 127.0.0.1:0
admin: 127.0.0.1:0
shutdown: { grace: 2s }
log: { level: info }
routes:
  up:
    upstream: ${upstream.url}
    credential: { env: UP_KEY }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
`,
    );
    proc = spawnLeash(['sidecar', '--config', config], { UP_KEY: 'sk-never-logged-1111' });
    const started = await proc.waitFor((l) => l.msg === 'leash sidecar started', 15_000);
    const port = Number(String(started.listen).split(':').pop());
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    let answered = 0;
    let stopping = false;
    const one = (i: number) =>
      new Promise<boolean>((resolve) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: `/up/item/${i}`, agent }, (res) => {
          res.resume();
          res.on('end', () => {
            answered++;
            resolve(true);
          });
        });
        req.on('error', () => resolve(false));
        req.end();
      });
    let next = 0;
    const worker = async () => {
      // Keep sending until the sidecar stops answering (a refused connection after SIGTERM).
      while (await one(next++)) if (stopping && next > 100_000) break;
    };
    const workers = Array.from({ length: 8 }, worker);
    await until(() => answered >= 300, 20_000);
    stopping = true;
    proc.child.kill('SIGTERM');
    await Promise.all(workers);
    agent.destroy();
    expect(await proc.exit).toBe(0);
    const requestLines = proc.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'request');
    expect(answered).toBeGreaterThanOrEqual(300);
    expect(requestLines).toHaveLength(answered);
    expect(proc.lines.join('\n')).not.toContain('sk-never-logged-1111');
  }, 40_000);
});
