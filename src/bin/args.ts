import type { ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs refuses `--lease -xPs…` ("argument is ambiguous"): a value that starts
 * with '-' could be a forgotten value followed by another option. Ids an operator pastes
 * can start with '-' (base64url lease ids did, about 1 in 64), so for an option that takes
 * a value, the next argument is its value unless it is one of this command's own options
 * (`--lease --reason x` stays an error: the value was forgotten). Such a value is passed on
 * joined (`--lease=-xPs…`), the form parseArgs always accepts. Nothing after `--` changes.
 */
export function joinDashValues(args: readonly string[], options: Options): string[] {
  const byShort = new Map(Object.entries(options).flatMap(([name, o]) => (o.short ? [[o.short, name] as const] : [])));
  const optionNamed = (arg: string): string | undefined => {
    if (arg.startsWith('--')) {
      const name = arg.slice(2);
      return name in options ? name : undefined;
    }
    return arg.length === 2 && arg[0] === '-' ? byShort.get(arg[1]!) : undefined;
  };
  const isOwnOption = (arg: string): boolean => arg === '--' || optionNamed(arg.split('=')[0]!) !== undefined;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = optionNamed(arg);
    const next = args[i + 1];
    if (name !== undefined && options[name]!.type === 'string' && next !== undefined && next.startsWith('-') && next !== '-' && !isOwnOption(next)) {
      out.push(`--${name}=${next}`);
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

/** A parseArgs error as one line, with the way out when a value was taken for an option. */
export function argsErrorMessage(err: Error): string {
  const first = err.message.split('\n')[0]!;
  const long = /--[\w-]+/.exec(first)?.[0];
  if (/ambiguous/.test(first) && long) return `${first} (to give a value that starts with '-', write ${long}=VALUE)`;
  return first;
}
