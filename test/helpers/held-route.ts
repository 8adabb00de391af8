import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { bearerRoute, startSidecar, type RunningSidecar } from './harness.js';
import { startRecordingUpstream, type RecordingUpstream } from './security-net.js';

/**
 * A sidecar with one route `r` (any method under /v1, `maxSockets: 2`) in front of a
 * recording upstream whose `/v1/hold` answers start and then wait until released (`holds`):
 * two of them keep the route's sockets busy, so further requests queue in its pool.
 * `open` gives a raw agent connection.
 */
export interface HeldRoute {
  up: RecordingUpstream;
  leash: RunningSidecar;
  port: number;
  /** One release per /v1/hold answer under way. */
  holds: Array<() => void>;
  open(): Promise<Socket>;
  /** Two raw connections, each sending `GET /r/v1/hold`: both of the route's sockets busy once their answers start (see `holds`). */
  holdSockets(): Promise<Socket[]>;
  /** Requests waiting in the route's pool for a socket (Node's `agent.requests`). */
  waiting(): number;
  stop(): Promise<void>;
}

export async function startHeldRoute(secret: string, answerDelayMs: (url: string) => number = () => 0): Promise<HeldRoute> {
  const holds: Array<() => void> = [];
  const up = await startRecordingUpstream((req, res) => {
    if (req.url === '/v1/hold') {
      res.writeHead(200);
      res.write('x');
      holds.push(() => res.end());
      return;
    }
    setTimeout(() => res.end('ok'), answerDelayMs(req.url ?? ''));
  });
  const leash = await startSidecar({ routes: { r: bearerRoute(up.url, ['* /v1/**'], { maxSockets: 2 }) } }, { env: { KEY: secret } });
  const port = Number(new URL(leash.url).port);
  const open = (): Promise<Socket> =>
    new Promise((resolve) => {
      const s: Socket = connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', () => undefined);
      s.on('data', () => undefined);
    });
  return {
    up,
    leash,
    port,
    holds,
    open,
    holdSockets: async () => {
      const hold: Socket[] = [];
      for (let i = 0; i < 2; i++) {
        const s = await open();
        s.write('GET /r/v1/hold HTTP/1.1\r\nhost: leash\r\n\r\n');
        hold.push(s);
      }
      return hold;
    },
    waiting: () => Object.values(leash.sidecar.routes.get('r')!.agent.requests).reduce((n, q) => n + (q?.length ?? 0), 0),
    stop: async () => {
      for (const h of holds) h();
      await leash.stop();
      await up.close();
    },
  };
}

/** startHeldRoute as a test file's set-up, registered as hooks: started before its tests, stopped after; the object is filled in by the beforeAll. */
export function heldRoute(secret: string, answerDelayMs?: (url: string) => number): HeldRoute {
  const held = {} as HeldRoute;
  beforeAll(async () => {
    Object.assign(held, await startHeldRoute(secret, answerDelayMs));
  });
  afterAll(() => held.stop?.());
  return held;
}
