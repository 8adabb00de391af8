#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runCheck } from './bin/check.js';
import { runSidecar } from './bin/sidecar.js';
import { LeashError, UsageError } from './core/errors.js';

/** Parses argv and dispatches; the only place that calls process.exit. */
const HELP = `leash — a credential-rotation sidecar for AI agent fleets

Usage:
  leash sidecar --config FILE   run the sidecar (agent-facing proxy + admin listener)
  leash check --config FILE     validate a config, print what it would do, exit 0/1
  leash --help | --version

Every command takes --help. Docs: README.md and docs/.`;

const COMMAND_HELP: Record<string, string> = {
  sidecar: `Usage: leash sidecar --config FILE

Runs the sidecar: the agent calls http://<listen>/<route>/... and leash forwards to the
route's upstream with the credential injected. SIGTERM drains in-flight requests for up
to shutdown.grace, then exits 0. See docs/configuration.md.`,
  check: `Usage: leash check --config FILE

Validates the config (every problem, each with its key path) and prints the routes,
credential sources (never values), injection and allow rules. Exit 0 if valid, 1 if not.`,
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return command === undefined ? 1 : 0;
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (!(command in COMMAND_HELP)) throw new UsageError(`unknown command "${command}" (see leash --help)`);
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (see leash ${command} --help)`);
  }
  if (values.help) {
    process.stdout.write(`${COMMAND_HELP[command]}\n`);
    return 0;
  }
  if (!values.config) throw new UsageError(`leash ${command} needs --config FILE`);
  if (command === 'check') return runCheck(values.config, process.env, (line) => process.stdout.write(`${line}\n`));
  return runSidecar(values.config, process.env);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof LeashError ? err.message : `unexpected error: ${(err as Error)?.message ?? String(err)}`;
    process.stderr.write(`leash: ${message}\n`);
    process.exit(1);
  },
);
