import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { recorder, type Recorder } from '../helpers/bus-harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The subscriber's heartbeat after this process was itself stopped or starved (SIGSTOP, a
 * frozen cgroup, a long synchronous stretch). Timers run before the poll that reads the
 * sockets: a PING deadline (and ioredis' command timeout) that expired while the process
 * was away fired before the answer — already in the socket — was read, and the heartbeat
 * dropped a healthy connection with whatever was unread in it: a revocation on the
 * pub/sub channel among them (then only the catch-up, after a reconnect, brought it back;
 * meanwhile the channel was down).
 */
let redis: TestRedis | undefined;
let client: Redis | undefined;
let rec: Recorder | undefined;
let redisPid = 0;

afterEach(async () => {
  if (redisPid) process.kill(redisPid, 'SIGCONT');
  await rec?.sub.close();
  client?.disconnect();
  await redis?.stop();
  redis = client = rec = undefined;
  redisPid = 0;
});

/** Blocks this thread (the whole event loop) for `ms`, without spinning. */
const block = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

describe('heartbeat after a stall of this process', () => {
  it('a PING whose answer is unread when its deadline passes is not a dead connection: no drop, the revocation read with it is applied', async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    redisPid = Number(/process_id:(\d+)/.exec(await client.info('server'))![1]);
    rec = recorder(redis.url, { heartbeatMs: 200, heartbeatDeadlineMs: 800 });
    await rec.sub.start();
    await waitFor(() => rec!.up, { message: 'channel up' });
    const channelBefore = rec.channel.length;

    // Redis freezes: the next PINGs stay unanswered …
    process.kill(redisPid, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 300));
    // … then, while this process is blocked, Redis resumes, answers them, and a revocation
    // is published: all of it waits in the subscriber's socket, past every deadline.
    const id = `${Date.now()}-0`;
    const message = JSON.stringify({ id, scope: 'lease', target: 'lease-stalled', reason: 'r', at: new Date().toISOString(), by: 'test' });
    const helper = spawn('sh', ['-c', `sleep 0.4; kill -CONT ${redisPid}; redis-cli -p ${redis.port} PUBLISH leash:revocations '${message}' >/dev/null`], { stdio: 'ignore' });
    // Stopped in the check phase (a setImmediate): on resuming, the next loop turn runs its
    // due timers first, then polls the sockets.
    await new Promise<void>((resolve) => setImmediate(() => {
      block(3_000);
      resolve();
    }));
    redisPid = 0;
    await new Promise((r) => helper.once('exit', r));

    await waitFor(() => rec!.ids.has(id), { timeoutMs: 3_000, message: 'the revocation' });
    // The connection was never given up: no channel change at all.
    expect(rec.channel.slice(channelBefore)).toEqual([]);
  });
});
