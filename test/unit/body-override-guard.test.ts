import { describe, expect, it } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import { BadRequestError } from '../../src/core/errors.js';
import { bodyOverrideError, bodyScanner, OverrideGuard, overrideInBody, type OverrideScanner } from '../../src/sidecar/proxy/body-override.js';
import { errorBody } from '../../src/sidecar/proxy/respond.js';

/**
 * The parts of body-override.ts around the scanners: the guard a streamed body passes
 * through, the whole-body check of the request-body phase, and the refusal's error body.
 */
const FORM: IncomingHttpHeaders = { 'content-type': 'application/x-www-form-urlencoded' };

describe('the guard after a refusal', () => {
  it('passes on nothing more, whatever the later reads hold, and refuses once', async () => {
    const refusals: unknown[] = [];
    const guard = new OverrideGuard(bodyScanner('POST', FORM) as OverrideScanner, (found) => refusals.push(found));
    const passed: string[] = [];
    guard.on('data', (c: Buffer) => passed.push(c.toString()));
    guard.write(Buffer.from('a=1&'));
    guard.write(Buffer.from('_method=DELETE'));
    // the rest of the body: no override in it, and it must not reach the upstream either
    guard.write(Buffer.from('&b=2&c=3'));
    guard.write(Buffer.from('&d=4'));
    await new Promise((r) => setImmediate(r));
    expect(passed).toEqual(['a=1&']);
    expect(refusals).toEqual(['_method']);
  });

  it('a body that ends in an override name (no "=") is refused at its end and not ended', async () => {
    const refusals: unknown[] = [];
    const guard = new OverrideGuard(bodyScanner('POST', FORM) as OverrideScanner, (found) => refusals.push(found));
    let ended = false;
    guard.on('data', () => undefined).on('end', () => (ended = true));
    guard.end(Buffer.from('a=1&_method'));
    await new Promise((r) => setImmediate(r));
    expect(refusals).toEqual(['_method']);
    expect(ended).toBe(false);
  });
});

describe('a whole body (the request-body phase)', () => {
  const body = Buffer.from('_method=DELETE');
  it('is not read when no override can be read from it', () => {
    expect(overrideInBody('GET', FORM, body)).toBeUndefined();
    expect(overrideInBody('POST', { 'content-type': 'text/plain' }, body)).toBeUndefined();
    expect(overrideInBody('POST', { 'content-type': 'application/octet-stream' }, body)).toBeUndefined();
  });
  it('whose Content-Type is refused gives that refusal', () => {
    expect(overrideInBody('POST', { 'content-type': 'multipart/form-data' }, body)).toBeInstanceOf(BadRequestError);
    expect(overrideInBody('POST', { 'content-type': 'application/x-www-form-urlencoded; charset=utf-16' }, body)).toBeInstanceOf(BadRequestError);
  });
  it('is read in the others', () => {
    expect(overrideInBody('POST', FORM, body)).toBe('_method');
  });
});

describe('the refusal', () => {
  it('names the route in the DESIGN §5 error body', () => {
    const err = bodyOverrideError('_method', 'api');
    expect(JSON.parse(errorBody(err))).toEqual({
      error: { type: 'leash_bad_request', message: expect.stringContaining('"_method"'), route: 'api' },
    });
  });
});
