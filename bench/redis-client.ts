/**
 * Preloaded (`node --import`) into a leash process by `bench/proxy.ts --audit` as a control:
 * an idle ioredis client connected to LEASH_BENCH_REDIS_URL, and nothing else. A leash
 * with it carries what a leash with `audit.redis` (or `revocations.redis`) carries —
 * ioredis loaded, one connection — without writing usage summaries, so leash+audit ÷
 * leash+redis is what the summaries themselves cost (bench/RESULTS.md, sixteenth session).
 */
import { Redis } from 'ioredis';

const url = process.env.LEASH_BENCH_REDIS_URL;
if (url) {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  // Connected like the audit writer's client, and idle; it must not keep the process alive.
  client.once('ready', () => client.stream.unref());
}
