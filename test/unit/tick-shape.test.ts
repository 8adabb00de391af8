import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The compiled module, in a child node with V8's natives syntax and gc() (not available in vitest's workers).
const MODULE = fileURLToPath(new URL('../../dist/src/core/tick-shape.js', import.meta.url));

interface Outcome {
  /** The witness entry is still alive after the full collection (only a WeakRef to it is kept here). */
  alive: boolean;
  /** An entry made after the collection has the witness's hidden class (map). */
  sameMap: boolean;
  type: string;
}

/**
 * In a fresh node: a witness nextTick queue entry, from holdTickObjectShape() (`hold`) or
 * captured with an async hook and not kept (the control); the child keeps only a WeakRef to
 * it. Then a few hundred nextTicks (each an event-loop turn, so the WeakRef no longer pins
 * it), one full collection, and a fresh entry compared with the witness, if it survived.
 */
function run(hold: boolean): Outcome {
  const src = `
    import { createHook } from 'node:async_hooks';
    const { holdTickObjectShape } = await import(${JSON.stringify(MODULE)});
    const capture = () => {
      let entry, type = '';
      const hook = createHook({ init(_id, t, _tr, resource) { if (entry === undefined) { entry = resource; type = t; } } });
      hook.enable(); process.nextTick(() => {}); hook.disable();
      return { entry, type };
    };
    const witness = new WeakRef(${hold ? 'holdTickObjectShape()' : 'capture().entry'});
    for (let i = 0; i < 300; i++) await new Promise((r) => process.nextTick(r));
    globalThis.gc();
    const fresh = capture();
    const w = witness.deref();
    console.log(JSON.stringify({ alive: w !== undefined, sameMap: w !== undefined && %HaveSameMap(w, fresh.entry), type: fresh.type }));
  `;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', src], { encoding: 'utf8', timeout: 20_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Outcome;
}

describe('holdTickObjectShape', () => {
  it('keeps its queue entry alive through a full collection, and new entries keep its hidden class', () => {
    expect(run(true)).toEqual({ alive: true, sameMap: true, type: 'TickObject' });
  });

  it('control: an entry nobody holds does not survive the collection (what the hold prevents)', () => {
    expect(run(false)).toEqual({ alive: false, sameMap: false, type: 'TickObject' });
  });

  it('is idempotent: the same entry on every call', async () => {
    const { holdTickObjectShape } = await import('../../src/core/tick-shape.js');
    const a = holdTickObjectShape();
    expect(a).toBeTypeOf('object');
    expect(holdTickObjectShape()).toBe(a);
  });
});
