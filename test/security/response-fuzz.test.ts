import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusBed, runCorpus, secretLeaks } from '../helpers/response-corpus.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

/**
 * Nothing an upstream sends may crash leash or leak through its response path. A raw `net`
 * upstream writes each corpus case verbatim; the sidecar runs as its own process (a crash
 * ends it, visibly); after every case the agent's answer must be well-formed (it is read
 * by Node's strict parser), the process alive and still serving a normal request, and the
 * secret must appear nowhere the agent or the process's output could show it.
 * (Every secret in this file is a fake test value.)
 */
const SECRET = 'sk-live-FUZZ0123456789abcdefXYZ';

const bed = corpusBed(SECRET);
let leash: Spawned;

beforeAll(async () => {
  const config = {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    log: { level: 'debug' },
    routes: bed.routes,
  };
  leash = spawnLeash(['sidecar', '--config', writeTemp('sidecar.json', JSON.stringify(config))], { KEY: SECRET });
  bed.agent.port = Number(String((await leash.waitFor((l) => l.msg === 'leash sidecar started')).listen).split(':').pop());
}, 20_000);

afterAll(() => {
  leash?.child.kill('SIGKILL');
});

describe('response fuzz: hostile upstream answers, sidecar as a process', () => {
  it('the corpus is large enough', () => {
    expect(bed.cases.length).toBeGreaterThanOrEqual(200);
  });

  it('every case: a well-formed answer, the process alive and serving, the secret nowhere', async () => {
    const { failures, seconds } = await runCorpus(bed.agent, bed.cases, () =>
      leash.child.exitCode !== null || leash.child.signalCode !== null ? `the sidecar process died (exit ${leash.child.exitCode})` : undefined,
    );
    const output = [...leash.lines, ...leash.stderr].join('\n');
    const agentSaw = Buffer.concat(bed.agent.received).toString('latin1');
    failures.push(...secretLeaks(SECRET, agentSaw, output));
    expect(failures, `${failures.length} failures in ${bed.cases.length} cases (${seconds.toFixed(1)} s); stderr: ${leash.stderr.join('').slice(-2000)}`).toEqual([]);
    expect(agentSaw).toContain('[REDACTED]');
    expect(seconds).toBeLessThan(20);
  }, 60_000);
});
