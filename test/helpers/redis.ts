import { startBusRedis } from './bus-redis.js';

/**
 * A private redis-server per test file (never the shared one on 6379). Redis cannot
 * listen on port 0, so a free port is found by binding one with Node first; the small
 * race that leaves is covered by retrying on another port when redis-server fails to start.
 * No persistence, loopback only, its own temporary working directory.
 */
export interface TestRedis {
  url: string;
  port: number;
  /** Graceful shutdown (SIGTERM, no save); idempotent. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash; idempotent. */
  kill(): Promise<void>;
  /** Start again on the same port (empty: nothing is persisted) and wait for PING. */
  restart(): Promise<void>;
}

/** A private, non-persistent redis-server (test/helpers/bus-redis.ts has the variants). */
export function startRedis(): Promise<TestRedis> {
  return startBusRedis();
}
