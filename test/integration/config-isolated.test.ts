import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { fromPlain, toPlain } from '../../src/config/plain.js';
import { CLI, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

/**
 * `leash sidecar` validates its config in a short-lived child process (config/isolated.ts) so
 * that yaml, zod and the schemas are never loaded into the serving process (issue 11, idle
 * RSS). These tests use the compiled modules (dist/): the child runs dist/src/config/validate-child.js.
 */
const DIST = join(import.meta.dirname, '..', '..', 'dist', 'src');
const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(DIST, path)).href)) as T;
const { parseSidecarConfigIsolated } = await load<typeof import('../../src/config/isolated.js')>('config/isolated.js');
const { parseConfig } = await load<typeof import('../../src/config/load.js')>('config/load.js');
const { sidecarSchema } = await load<typeof import('../../src/config/sidecar.js')>('config/sidecar.js');
const { ConfigError } = await load<typeof import('../../src/core/errors.js')>('core/errors.js');

/** What parseConfig does with the text: the value or the error, as comparable data. */
async function outcome(run: () => unknown): Promise<{ value?: unknown; error?: { name: string; message: string; code?: string; issues?: unknown; context?: unknown; configError: boolean } }> {
  try {
    return { value: comparable(await run()) };
  } catch (e) {
    const err = e as InstanceType<typeof ConfigError>;
    return { error: { name: err.name, message: err.message, code: err.code, issues: err.issues, context: err.context, configError: err instanceof ConfigError } };
  }
}

/** URLs as `URL(href)` (toEqual would not look inside them), and whether each object is frozen. */
function comparable(v: unknown): unknown {
  if (v instanceof URL) return `URL(${v.href})`;
  if (Array.isArray(v)) return { frozen: Object.isFrozen(v), items: v.map(comparable) };
  if (v && typeof v === 'object') return { frozen: Object.isFrozen(v), entries: Object.entries(v).map(([k, x]) => [k, comparable(x)]) };
  return v;
}

const route = (over: Record<string, unknown> = {}) => ({
  upstream: 'https://api.example.com/base/',
  credential: { env: 'API_KEY' },
  inject: { header: 'authorization', format: 'Bearer {{credential}}' },
  allow: ['GET /v1/models'],
  ...over,
});
const doc = (over: Record<string, unknown> = {}, routeOver: Record<string, unknown> = {}) => JSON.stringify({ routes: { api: route(routeOver) }, ...over });
const ENV = { API_KEY: 'fake-key-for-tests', LEASH_JOIN_TOKEN: 'fake-join-token' };

/** The bundle the CLI runs (dist/leash/) and, from its manifest.json, the modules of each chunk file. */
const BUNDLE_URL = pathToFileURL(dirname(CLI)).href + '/';
const CHUNK_MODULES = new Map(
  (JSON.parse(readFileSync(join(dirname(CLI), 'manifest.json'), 'utf8')) as { chunks: Array<{ file: string; modules: string[] }> }).chunks.map((c) => [c.file, c.modules]),
);

const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples');
const cases: Array<[string, string, Record<string, string | undefined>]> = [
  ...readdirSync(EXAMPLES)
    .filter((f) => /^sidecar.*\.yaml$/.test(f))
    .map((f): [string, string, Record<string, string | undefined>] => [`examples/${f}`, readFileSync(join(EXAMPLES, f), 'utf8'), ENV]),
  ['authority url, every section', doc({ authority: { url: 'https://authority.example:8443/', caFile: '/ca.pem', bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } } }, revocations: { redis: 'redis://r:6379' } }, { credential: 'api-lease' }), ENV],
  ['bad upstream', doc({}, { upstream: 'api.example.com' }), ENV],
  ['user:password upstream', doc({}, { upstream: 'https://svc:hunter2-secret@x.example' }), ENV],
  ['unknown keys and a typo at the root', JSON.stringify({ routes: { api: { ...route(), alow: [] } }, lissen: 'x' }), ENV],
  ['every problem at once', doc({ listen: 'nope', shutdown: { grace: 'soon' } }, { allow: ['GET x', 'FETCH /'], inject: { header: 'host' } }), ENV],
  ['lease name without an authority', doc({}, { credential: 'api-lease' }), ENV],
  ['secret-shaped credential name', doc({}, { credential: 'sk-proj-abcdefghijklmnopqrstuvwxyz0123456789' }), ENV],
  ['unset variables', doc({ listen: '${LISTEN}' }, { upstream: '${UPSTREAM_URL}' }), ENV],
  ['YAML syntax error', 'routes: [unclosed\n  foo: : bar', ENV],
  ['duplicate keys', 'listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\nroutes: {}\n', ENV],
  ['not a mapping', '- a\n- b', ENV],
  ['empty document', '', ENV],
];

describe('sidecar config validated in a child process', () => {
  it.each(cases)('%s: the same value, or the same error, as parseConfig in this thread', async (_name, text, env) => {
    const inThread = await outcome(() => parseConfig(sidecarSchema, text, env, '/etc/leash/sidecar.yaml'));
    const isolated = await outcome(() => parseSidecarConfigIsolated(text, env, '/etc/leash/sidecar.yaml'));
    expect(isolated).toEqual(inThread);
  });

  it('the cases cover valid configs with URLs and ConfigErrors of every kind', async () => {
    const results = await Promise.all(cases.map(([, text, env]) => outcome(() => parseConfig(sidecarSchema, text, env, 'x'))));
    expect(results.filter((r) => r.value !== undefined).length).toBeGreaterThanOrEqual(4);
    expect(results.filter((r) => r.error?.configError).length).toBeGreaterThanOrEqual(10);
    expect(JSON.stringify(results)).toContain('URL(https://authority.example:8443/)');
  });

  it('an alias bomb is a config error in the child as in the thread, with the same problem line', async () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`);
    const inThread = await outcome(() => parseConfig(sidecarSchema, bomb.join('\n'), {}, 'x'));
    const isolated = await outcome(() => parseSidecarConfigIsolated(bomb.join('\n'), {}, 'x'));
    expect(inThread.error?.configError).toBe(true);
    expect(inThread.error?.issues).toEqual(['x: its aliases expand too far (more than 100)']);
    expect(isolated.error).toEqual(inThread.error);
  });

  it('the env given is the one expanded (not the process environment)', async () => {
    const c = await parseSidecarConfigIsolated(doc({ listen: '${ONLY_HERE}' }), { ONLY_HERE: '127.0.0.1:4321' }, 'x');
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 4321 });
  });
});

describe('config/plain.ts: what crosses from the validating process', () => {
  it('URLs are sent as href and come back as URLs, everything frozen', () => {
    const plain = toPlain({ a: [{ u: new URL('https://x.example/p') }], b: 1 });
    expect(plain.urls).toEqual([['a', 0, 'u']]);
    const back = fromPlain<{ a: Array<{ u: URL }> }>(structuredClone(plain));
    expect(back.a[0]!.u).toBeInstanceOf(URL);
    expect(back.a[0]!.u.href).toBe('https://x.example/p');
    expect(Object.isFrozen(back.a[0])).toBe(true);
  });

  it.each([
    ['a Map', { routes: { x: new Map() } }, /routes\.x is a Map/],
    ['a function', { f: () => 1 }, /at f is a function/],
    ['a class instance', { when: new Date(0) }, /at when is a Date/],
  ])('%s is refused where it is found', (_name, value, message) => {
    expect(() => toPlain(value)).toThrow(message);
  });
});

describe('leash sidecar: the serving thread', () => {
  let proc: Spawned | undefined;
  afterEach(async () => {
    if (proc && proc.child.exitCode === null) {
      proc.child.kill('SIGKILL');
      await proc.exit;
    }
    proc = undefined;
  });

  it('never loads zod or yaml (modules recorded by a load hook in that thread)', async () => {
    // A module.register() hook sees every module the main thread loads (ESM, and the entry
    // of each CommonJS package); the validating child process runs without the process's --import.
    const record = writeTemp('loaded.txt', '');
    const hooks = writeTemp(
      'hooks.mjs',
      `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(record)}, url + '\\n');\n  return next(url, context);\n}\n`,
    );
    const register = writeTemp('register.mjs', `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
    const config = writeTemp('sidecar.yaml', ['listen: 127.0.0.1:0', 'admin: 127.0.0.1:0', 'routes:', '  api:', ...Object.entries(route()).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`)].join('\n'));
    proc = spawnLeash(['sidecar', '--config', config], { ...ENV, NODE_OPTIONS: `--import ${pathToFileURL(register).href}` });
    await proc.waitFor((l) => l.msg === 'leash sidecar started', 15_000);
    // The CLI is the bundle (test/helpers/spawn.ts): the hook sees its chunk files, and the
    // bundle's manifest.json says which modules each chunk holds.
    const loaded = readFileSync(record, 'utf8').split('\n').filter(Boolean);
    const modules = loaded.flatMap((u) => (u.startsWith(BUNDLE_URL) ? (CHUNK_MODULES.get(u.slice(BUNDLE_URL.length)) ?? [`unknown chunk ${u}`]) : [u]));
    expect(modules.filter((m) => m.startsWith('unknown chunk'))).toEqual([]);
    // A few files, not one per shared module set (24 with rolldown's default split): each
    // import costs the module resolver work, and enough of it gets V8 to optimise the resolver
    // at start-up, which pages in ~3 MB of the optimising compiler (rolldown.config.mjs).
    expect(loaded.filter((u) => u.startsWith(BUNDLE_URL)).length).toBeLessThanOrEqual(8);
    const packages = new Set(modules.map((m) => /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(m)?.[1]).filter(Boolean));
    // The hook saw the serving code (so an absence below means something)...
    expect(packages).toContain('pino');
    expect(packages).toContain('prom-client');
    expect(modules).toContain('dist/src/sidecar/sidecar.js');
    // ...and neither yaml nor zod, nor the schemas.
    expect(packages).not.toContain('zod');
    expect(packages).not.toContain('yaml');
    expect(modules.filter((m) => /dist\/src\/config\/(load|sidecar|common|worker)\.js$/.test(m))).toEqual([]);
  });

  it('a bad config: exit 1 and the same one line per problem as before, nothing served', async () => {
    const bad = writeTemp('bad.yaml', doc({ listen: 'nope' }, { upstream: 'api.example.com' }));
    proc = spawnLeash(['sidecar', '--config', bad], ENV);
    expect(await proc.exit).toBe(1);
    expect(proc.stderr.join('')).toBe(
      'leash: invalid configuration:\n  listen: must be "host:port", e.g. "127.0.0.1:8080" (got "nope")\n  routes.api.upstream: must be an http(s) URL (got "api.example.com")\n',
    );
    expect(proc.lines).toEqual([]);
  });
});
