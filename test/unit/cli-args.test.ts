import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { newLeaseId } from '../../src/authority/leases/lease-id.js';
import { argsErrorMessage, joinDashValues } from '../../src/bin/args.js';

/** Ids that start with '-' are usable on the command line, and none is generated any more. */
const REVOKE = {
  lease: { type: 'string' },
  reason: { type: 'string' },
  all: { type: 'boolean' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const;
const parse = (args: string[]) => parseArgs({ args: joinDashValues(args, REVOKE), options: REVOKE, strict: true, allowPositionals: false }).values;

describe('joinDashValues: a value that starts with "-" after an option that takes one', () => {
  it('--lease -xPs… is the lease id (parseArgs alone refuses it as ambiguous)', () => {
    expect(() => parseArgs({ args: ['--lease', '-xPsQ2'], options: REVOKE, strict: true })).toThrow(/ambiguous/);
    expect(parse(['--lease', '-xPsQ2', '--reason', 'leaked'])).toEqual({ lease: '-xPsQ2', reason: 'leaked' });
    expect(parse(['--lease', '--xPsQ2'])).toEqual({ lease: '--xPsQ2' });
    expect(parse(['-c', '-odd.yaml'])).toEqual({ config: '-odd.yaml' });
  });
  it('--lease=ID works, with or without a leading dash', () => {
    expect(parse(['--lease=-xPsQ2'])).toEqual({ lease: '-xPsQ2' });
    expect(parse(['--lease=abc'])).toEqual({ lease: 'abc' });
  });
  it('a forgotten value followed by one of the command’s options is still refused, with the way out', () => {
    for (const next of ['--reason', '--reason=x', '--all', '-h', '--help', '-c']) {
      let err: Error | undefined;
      try {
        parse(['--lease', next, 'x']);
      } catch (e) {
        err = e as Error;
      }
      expect(err, next).toBeDefined();
      if (/ambiguous/.test(err!.message)) expect(argsErrorMessage(err!)).toContain('--lease=VALUE');
    }
  });
  it('boolean options and arguments after -- are left alone', () => {
    expect(joinDashValues(['--all', '-x'], REVOKE)).toEqual(['--all', '-x']);
    expect(joinDashValues(['--', '--lease', '-x'], REVOKE)).toEqual(['--', '--lease', '-x']);
  });
});

describe('newLeaseId', () => {
  it('never starts with "-": a draw that would is drawn again', () => {
    const draws = [Buffer.from([0xf8, ...Array(15).fill(1)]), Buffer.from([0x10, ...Array(15).fill(2)])];
    expect(draws[0]!.toString('base64url').startsWith('-')).toBe(true);
    let n = 0;
    const id = newLeaseId(() => draws[n++]!);
    expect(n).toBe(2);
    expect(id).toBe(draws[1]!.toString('base64url'));
  });
  it('keeps the format: 22 base64url characters, never a leading dash (5000 draws)', () => {
    const bad = Array.from({ length: 5000 }, () => newLeaseId()).filter((id) => !/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/.test(id));
    expect(bad).toEqual([]);
  });
});
