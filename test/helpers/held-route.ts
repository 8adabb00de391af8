import { connect, type Socket } from 'node:net';
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
  return {
    up,
    leash,
    port,
    holds,
    open: () =>
      new Promise((resolve) => {
        const s: Socket = connect(port, '127.0.0.1', () => resolve(s));
        s.on('error', () => undefined);
        s.on('data', () => undefined);
      }),
    stop: async () => {
      for (const h of holds) h();
      await leash.stop();
      await up.close();
    },
  };
}
