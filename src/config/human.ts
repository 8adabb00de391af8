import type { z } from 'zod';

/**
 * zod's own wording ("Invalid input: expected number, received string") is written for
 * programmers; a config message says what the key must be. This is the per-parse error
 * map given to every safeParse of a config (load.ts): it words each zod issue code for
 * issues whose schema did not already say what it wants (a schema-level message wins,
 * zod's precedence). The "(got …)" and "is required" parts are added by issues.ts.
 */
export function humanIssue(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined ? REQUIRED : (TYPE[issue.expected] ?? 'has the wrong type');
    case 'too_small':
      return sizeMessage(issue.origin, 'at least', issue.inclusive !== false, Number(issue.minimum));
    case 'too_big':
      return sizeMessage(issue.origin, 'at most', issue.inclusive !== false, Number(issue.maximum));
    case 'invalid_format':
      return issue.format === 'regex' ? `does not have the allowed form (${String(issue.pattern ?? 'a pattern')})` : `must be ${FORMAT[issue.format] ?? `in the ${issue.format} format`}`;
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    case 'unrecognized_keys':
      return 'has keys that are not known here';
    case 'invalid_union':
      return 'does not match any of the accepted forms';
    case 'invalid_key':
      return 'has a key that is not allowed';
    case 'invalid_element':
      return 'has an entry that is not allowed';
    case 'invalid_value':
      return issue.values.length === 1 ? `must be ${show(issue.values[0])}` : `must be one of ${issue.values.map(show).join(', ')}`;
    case 'custom':
      return 'is not allowed here';
    default:
      return 'is not allowed here';
  }
}

/** The message for a key that is absent; issues.ts prints it without "(missing)". */
export const REQUIRED = 'is required';

/** zod's raw phrases: none of them may reach a user (test/unit/check-report.test.ts). */
export const RAW_VALIDATOR_WORDING = /\bexpected\b|\breceived\b|Invalid input|Invalid option|Invalid string|Too small|Too big|Unrecognized key/i;

const TYPE: Record<string, string> = {
  string: 'must be text',
  number: 'must be a number',
  int: 'must be a whole number',
  bigint: 'must be a whole number',
  boolean: 'must be true or false',
  array: 'must be a list',
  tuple: 'must be a list',
  object: 'must be a mapping of keys to values',
  record: 'must be a mapping of keys to values',
  map: 'must be a mapping of keys to values',
  null: 'must be null',
  date: 'must be a date',
  literal: 'has the wrong value',
  enum: 'has the wrong value',
};

const FORMAT: Record<string, string> = { url: 'a URL', email: 'an e-mail address', uuid: 'a UUID', ipv4: 'an IPv4 address', ipv6: 'an IPv6 address', datetime: 'a date and time' };

function sizeMessage(origin: string, bound: 'at least' | 'at most', inclusive: boolean, n: number): string {
  const strict = bound === 'at least' ? 'more than' : 'less than';
  if (origin === 'string') {
    if (bound === 'at least' && n === 1) return 'must not be empty';
    return `must be ${inclusive ? bound : strict} ${n} character${n === 1 ? '' : 's'} long`;
  }
  if (origin === 'array' || origin === 'set') {
    if (bound === 'at least' && n === 1) return 'must list at least one entry';
    return `must list ${inclusive ? bound : strict} ${n} entr${n === 1 ? 'y' : 'ies'}`;
  }
  return `must be ${inclusive ? bound : bound === 'at least' ? 'greater than' : 'less than'} ${n}`;
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
