import { execFileSync } from 'node:child_process';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { spawnNode, type Proc } from './fleet-procs.js';
import { CLI, writeTemp } from './spawn.js';
import { waitFor } from './wait.js';

/**
 * Pieces for the rotate-*.test.ts files: a `leash authority` process that can be restarted
 * on the same port (a rolling update behind one Service), a `leash sidecar` process, and an
 * agent that sends a request every 50 ms and keeps every answer that is not a 200.
 */
export const ADMIN_TOKEN = 'rotate-admin-token-0123456789abcdef';

const portOf = (hostPort: unknown) => Number(String(hostPort).split(':').pop());

export class AuthorityProc {
  port = 0;
  proc: Proc | undefined;
  readonly all: Proc[] = [];

  constructor(private readonly env: Record<string, string>) {}

  /** Starts a replica with this config (listen is set to the port of the first start). */
  async start(config: Record<string, unknown>): Promise<Proc> {
    const file = writeTemp('authority.json', JSON.stringify({ ...config, listen: `127.0.0.1:${this.port}` }));
    const p = spawnNode('authority', [CLI, 'authority', '--config', file], { LEASH_ADMIN_TOKEN: ADMIN_TOKEN, ...this.env });
    this.all.push(p);
    const started = await p.waitForJson((l) => l.msg === 'leash authority started', 10_000);
    this.port = portOf(started.listen);
    this.proc = p;
    return p;
  }

  /** SIGTERM the running replica and start the next one in its place. */
  async restart(config: Record<string, unknown>): Promise<Proc> {
    this.proc!.child.kill('SIGTERM');
    await this.proc!.exit;
    return this.start(config);
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** `leash <args>` against it, as an operator runs it. */
  cli(args: string[], caFile: string, token = ADMIN_TOKEN): string {
    return execFileSync(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: this.url, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: token },
      encoding: 'utf8',
      timeout: 10_000,
    }).trim();
  }

  /** GET a path over HTTPS trusting `caPem`; the answer and the certificate the listener showed. */
  get(path: string, caPem: string): Promise<{ status: number; body: string; peerFingerprint: string }> {
    return new Promise((resolve, reject) => {
      const req = request(`${this.url}${path}`, { ca: caPem, agent: false, timeout: 5_000 }, (res) => {
        const peer = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate();
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peerFingerprint: peer?.fingerprint256 ?? '' }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  async metric(name: string, caPem: string): Promise<number> {
    const { body } = await this.get('/metrics', caPem);
    return Number(body.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ').pop() ?? NaN);
  }
}

export async function startSidecarProc(config: Record<string, unknown>, env: Record<string, string>): Promise<{ proc: Proc; url: string; adminUrl: string }> {
  const file = writeTemp('sidecar.json', JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', shutdown: { grace: '1s' }, ...config }));
  const proc = spawnNode('sidecar', [CLI, 'sidecar', '--config', file], env);
  const started = await proc.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
  return { proc, url: `http://127.0.0.1:${portOf(started.listen)}`, adminUrl: `http://127.0.0.1:${portOf(started.admin)}` };
}

/** Audit events of `event` a process logged so far. */
export const eventsIn = (p: Proc, event: string): number => p.stdout.filter((l) => l.includes(`"event":"${event}"`)).length;

/** Waits for the next `event` in p's log. */
export async function nextEvent(p: Proc, event: string, timeoutMs = 8_000): Promise<void> {
  const n = eventsIn(p, event);
  await waitFor(() => eventsIn(p, event) > n, { timeoutMs, message: () => `another ${event} from ${p.name}; its last lines:\n${[...p.stdout.slice(-8), ...p.stderr.slice(-4)].join('\n')}` });
}

/** An agent sending GET `url` every 50 ms until stopped; every answer but a 200 is kept. */
export function agentLoop(url: string): { stop(): Promise<{ sent: number; failures: string[] }> } {
  const failures: string[] = [];
  let sent = 0;
  let on = true;
  const loop = (async () => {
    while (on) {
      sent++;
      try {
        const r = await fetch(url, { signal: AbortSignal.timeout(5_000) });
        const body = await r.text();
        if (r.status !== 200) failures.push(`${r.status} ${body}`);
      } catch (err) {
        failures.push(String(err));
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return { sent, failures };
    },
  };
}

export const readPem = (file: string): string => readFileSync(file, 'utf8');

/** Kills (SIGKILL) every process still running and waits for all of them to exit: the rotate tests' afterAll. */
export async function killAll(procs: readonly Proc[]): Promise<void> {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exit));
}
