import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { corpusBed, runCorpus, secretLeaks } from '../helpers/response-corpus.js';

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

const bed = corpusBed(SECRET);
let leash: RunningSidecar;

beforeAll(async () => {
  leash = await startSidecar({ routes: bed.routes }, { env: { KEY: SECRET } });
  bed.agent.port = Number(new URL(leash.url).port);
}, 20_000);

afterAll(async () => {
  await leash?.stop();
});

describe('response corpus: hostile upstream answers, sidecar in this process', () => {
  it('the corpus is large enough', () => {
    expect(bed.cases.length).toBeGreaterThanOrEqual(200);
  });

  it('every case: a well-formed answer, leash still serving, the secret nowhere', async () => {
    const { failures, seconds } = await runCorpus(bed.agent, bed.cases);
    const output = leash.logs.lines.join('\n');
    const agentSaw = Buffer.concat(bed.agent.received).toString('latin1');
    failures.push(...secretLeaks(SECRET, agentSaw, output));
    expect(failures, `${failures.length} failures in ${bed.cases.length} cases (${seconds.toFixed(1)} s)`).toEqual([]);
    expect(agentSaw).toContain('[REDACTED]');
    expect(seconds).toBeLessThan(20);
  }, 60_000);
});
