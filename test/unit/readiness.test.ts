import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { ConfigError } from '../../src/core/errors.js';
import { decideReadiness, type RouteState } from '../../src/sidecar/readiness.js';

/** /readyz as a pure decision (src/sidecar/readiness.ts) and the `required` key that feeds it. */
const up = (route: string, required = true): RouteState => ({ route, available: true, required });
const down = (route: string, required = true): RouteState => ({ route, available: false, required });
const running = { started: true, shuttingDown: false };

describe('decideReadiness', () => {
  it('every required route held: ready; an optional one missing is listed but not awaited', () => {
    expect(decideReadiness([up('openai'), down('anthropic', false)], running)).toEqual({
      ready: true,
      starting: false,
      shuttingDown: false,
      waitingFor: [],
      optionalUnavailable: ['anthropic'],
      unavailable: ['anthropic'],
    });
  });

  it('a required route missing: not ready, and it is what readiness waits for', () => {
    const r = decideReadiness([down('openai'), down('anthropic', false), up('search', false)], running);
    expect(r).toMatchObject({ ready: false, waitingFor: ['openai'], optionalUnavailable: ['anthropic'], unavailable: ['openai', 'anthropic'] });
  });

  it('all routes optional and none held: not ready, any one of them is awaited', () => {
    expect(decideReadiness([down('openai', false), down('anthropic', false)], running)).toMatchObject({
      ready: false,
      waitingFor: ['openai', 'anthropic'],
      optionalUnavailable: ['openai', 'anthropic'],
    });
    expect(decideReadiness([down('openai', false), up('anthropic', false)], running).ready).toBe(true);
  });

  it('never ready before the start has finished or once shutdown has begun', () => {
    expect(decideReadiness([up('a')], { started: false, shuttingDown: false })).toMatchObject({ ready: false, starting: true, waitingFor: [] });
    expect(decideReadiness([up('a')], { started: true, shuttingDown: true })).toMatchObject({ ready: false, shuttingDown: true });
  });
});

describe('routes.<name>.required', () => {
  const doc = (extra: Record<string, unknown>) =>
    JSON.stringify({ routes: { openai: { upstream: 'https://api.openai.com', credential: { env: 'OPENAI_API_KEY' }, inject: { header: 'authorization' }, allow: [], ...extra } } });

  it('defaults to true; false is kept', () => {
    expect(parseConfig(sidecarSchema, doc({}), {}).routes.openai!.required).toBe(true);
    expect(parseConfig(sidecarSchema, doc({ required: false }), {}).routes.openai!.required).toBe(false);
  });

  it('anything but a boolean is an error naming the key path', () => {
    let err: unknown;
    try {
      parseConfig(sidecarSchema, doc({ required: 'no' }), {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toEqual(['routes.openai.required: must be true or false (got "no")']);
  });
});
