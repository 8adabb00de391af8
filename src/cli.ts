#!/usr/bin/env node
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LeashError, UsageError } from './core/errors.js';
import { argsErrorMessage, joinDashValues } from './bin/args.js';
import { holdTickObjectShape } from './core/tick-shape.js';

// Each command loads only its own code: the sidecar's resident memory should not carry
// the authority, its CA and issuers, or the admin client (bench/RESULTS.md, idle RSS).
const admin = () => import('./bin/admin.js');

/** Parses argv and dispatches; the only place that calls process.exit. */
const HELP = `leash — a credential-rotation sidecar for AI agent fleets

Usage:
  leash dev [--config FILE] [--redis URL]   authority + sidecar in one process (built-in example without --config)
  leash sidecar --config FILE               run the sidecar (agent-facing proxy + admin listener)
  leash authority --config FILE             run the authority (identities, policy, leases)
  leash injector --config FILE              run the Kubernetes admission webhook that injects sidecars
  leash check --config FILE                 validate a sidecar, authority, dev or injector config; exit 0/1
  leash token create --identity NAME [--ttl 10m]      one-time join token (admin)
  leash leases [--instance ID] [--credential NAME] [--json]   active leases (admin)
  leash trace SECRET_OR_FINGERPRINT [--json]            who held a value and what it did (admin)
  leash revoke --lease ID | --instance ID | --credential NAME | --all [--reason TEXT]   revoke (admin)
  leash status [--admin ADDR] [--config FILE] [--json]   the sidecar's /status as a table
  leash scopes [--since 7d] [--config FILE] [--redis URL] [--json]   used vs allowed, per route (audit stream)
  leash --help | --version

Admin commands reach the authority at --authority URL / LEASH_AUTHORITY_URL, trust its CA
from --ca FILE / LEASH_CA_FILE, and authenticate with LEASH_ADMIN_TOKEN.
Every command takes --help. Docs: README.md and docs/.`;

const ADMIN_OPTIONS = { authority: { type: 'string' }, ca: { type: 'string' } } as const;

interface Command {
  help: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Takes positional arguments (only `trace`). */
  positionals?: boolean;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> | number;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);
const need = (v: string | boolean | undefined, what: string, command: string): string => {
  if (typeof v !== 'string' || !v) throw new UsageError(`leash ${command} needs ${what}`);
  return v;
};

const COMMANDS: Record<string, Command> = {
  sidecar: {
    help: `Usage: leash sidecar --config FILE | --config-env NAME

Runs the sidecar: the agent calls http://<listen>/<route>/... and leash forwards to the
route's upstream with the credential injected. SIGTERM drains in-flight requests for up
to shutdown.grace, releases leases, then exits 0. --config-env NAME reads the config's
YAML from that environment variable instead of a file (how leash injector hands a pod
its config). See docs/configuration.md.`,
    options: { config: { type: 'string', short: 'c' }, 'config-env': { type: 'string' } },
    run: async (v) => {
      if (v.config !== undefined && v['config-env'] !== undefined) throw new UsageError('leash sidecar takes --config FILE or --config-env NAME, not both');
      const source = v['config-env'] !== undefined ? { env: need(v['config-env'], '--config-env NAME', 'sidecar') } : need(v.config, '--config FILE', 'sidecar');
      return (await import('./bin/sidecar.js')).runSidecar(source, process.env);
    },
  },
  injector: {
    help: `Usage: leash injector --config FILE

Runs the Kubernetes mutating admission webhook: HTTPS POST /mutate (AdmissionReview v1),
/healthz, /readyz. A pod annotated leash.dev/inject: "true" and leash.dev/routes: "a,b"
gets a leash native sidecar configured with those routes from the injector's catalog.
Its TLS files are reloaded when they change. See docs/configuration.md and docs/kubernetes.md.`,
    options: { config: { type: 'string', short: 'c' } },
    run: async (v) => (await import('./bin/injector.js')).runInjector(need(v.config, '--config FILE', 'injector'), process.env),
  },
  authority: {
    help: `Usage: leash authority --config FILE

Runs the authority: bootstraps sidecar identities (join token + CSR → X.509 with a SPIFFE
URI SAN), decides by policy which identity may lease which credential, issues leases, and
publishes the JWKS at /.well-known/jwks.json. See docs/authority.md.`,
    options: { config: { type: 'string', short: 'c' } },
    run: async (v) => (await import('./bin/authority.js')).runAuthority(need(v.config, '--config FILE', 'authority'), process.env),
  },
  dev: {
    help: `Usage: leash dev [--config FILE] [--redis URL]

Authority and sidecar in one process, over the same HTTPS/mTLS code paths as production,
with an in-memory store and a generated CA. Without --config: a built-in example whose
demo upstream accepts only leash JWTs (LEASH_LISTEN, LEASH_ADMIN and LEASH_DEMO_TTL
override its addresses and token TTL). With --config: { authority: …, sidecar: … }.`,
    options: { config: { type: 'string', short: 'c' }, redis: { type: 'string' } },
    run: async (v) => (await import('./bin/dev.js')).runDev({ config: v.config as string | undefined, redis: v.redis as string | undefined }, process.env, err),
  },
  check: {
    help: `Usage: leash check --config FILE [--kind sidecar|authority|dev|injector] [--strict]

Validates a sidecar, authority, dev or injector config (every problem, each with its key path) and
prints what it would do (never a secret). Exit 0 if valid, 1 if not. The kind is read from
the file's top-level keys unless --kind names it; --strict makes warnings fail too.`,
    options: { config: { type: 'string', short: 'c' }, kind: { type: 'string' }, strict: { type: 'boolean' } },
    run: async (v) => {
      const kind = v.kind as string | undefined;
      if (kind !== undefined && !['sidecar', 'authority', 'dev', 'injector'].includes(kind)) throw new UsageError(`--kind must be sidecar, authority or dev, or injector (got "${kind}")`);
      const { runCheck } = await import('./bin/check.js');
      return runCheck(need(v.config, '--config FILE', 'check'), process.env, out, undefined, {
        strict: v.strict === true,
        kind: kind as 'sidecar' | 'authority' | 'dev' | 'injector' | undefined,
      });
    },
  },
  token: {
    help: `Usage: leash token create --identity NAME [--ttl 10m] [--authority URL] [--ca FILE]

Creates a one-time join token for identity NAME (spiffe://<trustDomain>/join/NAME) and
prints it alone on stdout, so TOKEN=$(leash token create --identity x) works.`,
    options: { identity: { type: 'string' }, ttl: { type: 'string' }, ...ADMIN_OPTIONS },
    run: async (v) => {
      const { adminTarget, tokenCreate } = await admin();
      out(await tokenCreate(adminTarget(v as { authority?: string; ca?: string }, process.env), need(v.identity, '--identity NAME', 'token create'), (v.ttl as string) ?? '10m'));
      return 0;
    },
  },
  trace: {
    help: `Usage: leash trace SECRET_OR_FINGERPRINT [--json] [--authority URL] [--ca FILE]

Which lease and instance held a credential value, and what it did: who held it and when
(issued, rotated, released, revoked), the operations done with it (route, method, path,
status class, count, first, last) and the audit events naming it, from the authority's
Redis stream (docs/audit.md). A table by default, --json for the authority's answer. A value is fingerprinted locally and only sha256:<12 hex> is
sent; pass "-" to read the value from stdin instead of the command line. Exit 0 when an
active lease holds it or an audit event names it, 1 when nothing does.`,
    options: { json: { type: 'boolean' }, ...ADMIN_OPTIONS },
    positionals: true,
    run: async (v, positionals) => {
      const { adminTarget, trace } = await admin();
      if (positionals.length !== 1) throw new UsageError('usage: leash trace SECRET_OR_FINGERPRINT (or "-" to read it from stdin)');
      const arg = positionals[0] === '-' ? await readStdin() : positionals[0]!;
      // `trace - <<< "$KEY"` in a shell where KEY is unset: say that, not "needs a secret".
      if (positionals[0] === '-' && !arg.trim()) throw new UsageError('leash trace -: stdin was empty: nothing to trace (is the variable you piped in set in this shell?)');
      const traced = await trace(adminTarget(v as { authority?: string; ca?: string }, process.env), arg, v.json === true);
      out(traced.output);
      // Like grep: 1 when nothing (no active lease, no audit event) knows the value.
      return traced.found ? 0 : 1;
    },
  },
  leases: {
    help: `Usage: leash leases [--instance ID] [--credential NAME] [--json] [--authority URL] [--ca FILE]

Lists active leases (id, credential, fingerprint, expiry, instance) — never a value.`,
    options: { instance: { type: 'string' }, credential: { type: 'string' }, json: { type: 'boolean' }, ...ADMIN_OPTIONS },
    run: async (v) => {
      const { adminTarget, listLeases } = await admin();
      const target = adminTarget(v as { authority?: string; ca?: string }, process.env);
      out(await listLeases(target, { instance: v.instance as string | undefined, credential: v.credential as string | undefined }, v.json === true));
      return 0;
    },
  },
  revoke: {
    help: `Usage: leash revoke (--lease ID | --instance ID | --credential NAME | --all) [--reason TEXT]
                    [--actor NAME] [--authority URL] [--ca FILE]

Revokes, with exactly one scope, and prints "revoked <scope> <target> (<id>)":
  --lease ID          that lease (ids from leash leases); its sidecar drops it and leases anew.
                      An id starting with '-' is taken as is (--lease=ID works too)
  --instance ID       an instance: its SPIFFE ID, or join:NAME for spiffe://<trustDomain>/join/NAME.
                      It is cut off (identity and every lease) and cannot renew, lease or
                      bootstrap again under that name until its longest certificate would have expired
  --credential NAME   every lease of that credential; sidecars lease it again from the current source
  --all               every lease of every credential
The revocation is published on the revocation stream and channel (seconds to reach every
sidecar) and audited with --reason and --actor (default "admin", header x-leash-actor).`,
    options: {
      lease: { type: 'string' },
      instance: { type: 'string' },
      credential: { type: 'string' },
      all: { type: 'boolean' },
      reason: { type: 'string' },
      actor: { type: 'string' },
      ...ADMIN_OPTIONS,
    },
    run: async (v) => {
      const { adminTarget, revoke, revokeRequest } = await admin();
      const opts = v as { lease?: string; instance?: string; credential?: string; all?: boolean; reason?: string; actor?: string };
      revokeRequest(opts); // usage errors before looking for the authority
      out(await revoke(adminTarget(v as { authority?: string; ca?: string }, process.env), opts));
      return 0;
    },
  },
  status: {
    help: `Usage: leash status [--admin ADDR] [--config FILE] [--json]

The sidecar's admin /status as a table: per route whether it is available, the credential
source, lease id, fingerprint, age, time left and upstream (never a value). Asks
http://ADDR/status, where ADDR is --admin, else the admin address of --config FILE (a
sidecar or dev config), else LEASH_ADMIN, else 127.0.0.1:9090. --json prints /status as is.
Needs no token: the admin listener serves no secrets.`,
    options: { admin: { type: 'string' }, config: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
    run: async (v) =>
      (await import('./bin/status.js')).runStatus({ admin: v.admin as string | undefined, config: v.config as string | undefined, json: v.json === true }, process.env, out),
  },
  scopes: {
    help: `Usage: leash scopes [--since 7d] [--config FILE] [--redis URL] [--prefix leash:] [--json]

What each route's credential was used for, from the sidecars' usage summaries in the audit
stream <prefix>audit (read directly from Redis, read-only): operations with counts and
status classes, allow rules never matched, the narrowest allow list covering the use,
credentials never used, and leases in use on two instances (anomaly.cloned_credential).
--config FILE (a sidecar config) gives the allow lists, and the Redis and prefix of its
audit section, else of its revocations section; else --redis URL or LEASH_REDIS_URL
(--redis and --prefix override the config's). Exit 1 when a lease is in use on more than
one instance, else 0. See docs/operations.md.`,
    options: { since: { type: 'string' }, config: { type: 'string', short: 'c' }, redis: { type: 'string' }, prefix: { type: 'string' }, json: { type: 'boolean' } },
    run: async (v) =>
      (await import('./bin/scopes.js')).runScopes(
        { since: v.since as string | undefined, config: v.config as string | undefined, redis: v.redis as string | undefined, prefix: v.prefix as string | undefined, json: v.json === true },
        process.env,
        out,
      ),
  },
};

/** Each command's long options, as `--name` (for test/unit/docs-cli.test.ts, which checks the help and the docs name them). */
export function commandOptions(): Record<string, string[]> {
  return Object.fromEntries(Object.entries(COMMANDS).map(([name, c]) => [name === 'token' ? 'token create' : name, Object.keys(c.options).map((o) => `--${o}`)]));
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** What a command line asks for, parsed and checked, nothing run. */
export type ParsedCommandLine =
  | { kind: 'help'; code: number }
  | { kind: 'version' }
  | { kind: 'command-help'; name: string; help: string }
  | { kind: 'run'; name: string; values: Record<string, string | boolean | undefined>; positionals: string[]; run: Command['run'] };

/**
 * Parses argv as `leash` does, without running anything: a UsageError for an unknown
 * command, option or stray argument. Exported for test/unit/docs-drift.test.ts, which
 * checks every `leash …` line in the docs against it.
 */
export function parseCommandLine(argv: string[]): ParsedCommandLine {
  let [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') return { kind: 'help', code: name === undefined ? 1 : 0 };
  if (name === '--version' || name === '-v') return { kind: 'version' };
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command "${name}" (see leash --help)`);
  if (name === 'token') {
    if (rest[0] === '--help' || rest[0] === '-h') return { kind: 'command-help', name, help: command.help };
    if (rest[0] !== 'create') throw new UsageError('usage: leash token create --identity NAME [--ttl 10m]');
    rest = rest.slice(1);
    name = 'token create';
  }
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const options = { ...command.options, help: { type: 'boolean', short: 'h' } } satisfies ParseArgsConfig['options'];
    ({ values, positionals } = parseArgs({ args: joinDashValues(rest, options), options, strict: true, allowPositionals: command.positionals === true }));
  } catch (e) {
    throw new UsageError(`${argsErrorMessage(e as Error)} (see leash ${name} --help)`);
  }
  if (values.help) return { kind: 'command-help', name, help: command.help };
  return { kind: 'run', name, values, positionals, run: command.run };
}

const FINGERPRINT_ARG = /^\s*sha256:[0-9a-f]{12}\s*$/;
/** A URL with a user:password@ part (`--redis redis://:pw@host`), however the password is written. */
const URL_WITH_PASSWORD = /^[a-z][a-z0-9+.-]*:\/*[^/?#]*:[^]*@/i;

/**
 * Does a parsed command line carry a secret: `leash trace`'s value (not a fingerprint,
 * not "-" for stdin), or a URL with a password in any option (`--redis`)?
 */
export function argvHoldsSecret(parsed: { name: string; values: Record<string, string | boolean | undefined>; positionals: string[] }): boolean {
  if (parsed.name === 'trace' && parsed.positionals.some((p) => p !== '-' && !FINGERPRINT_ARG.test(p))) return true;
  return Object.values(parsed.values).some((v) => typeof v === 'string' && URL_WITH_PASSWORD.test(v));
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  switch (parsed.kind) {
    case 'help':
      out(HELP);
      return parsed.code;
    case 'version':
      out(version());
      return 0;
    case 'command-help':
      out(parsed.help);
      return 0;
    case 'run':
      // Before anything runs: a full collection must never find nextTick's entry shapes unheld (core/tick-shape.ts).
      holdTickObjectShape();
      // /proc/<pid>/cmdline is readable by every local user (`ps aux`) for as long as the
      // command runs: a secret on the command line is overwritten by the title (Node
      // rewrites argv's memory in place) before anything is awaited.
      if (argvHoldsSecret(parsed)) process.title = `leash ${parsed.name}`;
      return parsed.run(parsed.values, parsed.positionals);
  }
}

/**
 * Run unless imported: argv[1] naming another existing file means this module was
 * imported (by a test); anything else — this file, a bin symlink to it, a path Node
 * resolved differently — runs, so the CLI never silently does nothing.
 */
function importedByAnotherProgram(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) !== realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (!importedByAnotherProgram()) {
  // SIGUSR1 makes Node open its inspector on 127.0.0.1:9229, unauthenticated: anything on
  // loopback (the agent, which shares it) could then run code in leash and read every
  // credential it holds. Whoever may signal leash (same uid, or CAP_KILL in a shared PID
  // namespace) is not trusted that far. A listener of our own keeps Node from starting it
  // (Node 20 has no --disable-sigusr1).
  process.on('SIGUSR1', () => process.stderr.write('leash: SIGUSR1 ignored (the inspector is never opened on a signal)\n'));
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    async (e: unknown) => {
      const message = e instanceof LeashError ? e.message : `unexpected error: ${(e as Error)?.message ?? String(e)}`;
      // Config errors quote keys, values and paths from the file: no escape sequence reaches
      // the terminal (line by line). Loaded here only: the serving path never imports it.
      const { printable } = await import('./bin/terminal.js');
      process.stderr.write(`leash: ${message.split('\n').map(printable).join('\n')}\n`);
      process.exit(1);
    },
  );
}
