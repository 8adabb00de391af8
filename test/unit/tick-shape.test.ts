import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The compiled module, in a child node with V8's natives syntax and gc() (not available in vitest's workers).
const MODULE = fileURLToPath(new URL('../../dist/src/core/tick-shape.js', import.meta.url));

/**
 * In a fresh node: optionally holdTickObjectShape(), run nextTick a few hundred times, one
 * full collection, then capture a new queue entry with an async hook and report whether it
 * has the same hidden class (map) as the entry `hold` returned, and whether any hook
 * was left enabled by the hold (a hook installed after it sees nothing of its own).
 */
function run(hold: boolean): { held: boolean; sameMap: boolean; type: string } {
  const src = `
    import { createHook } from 'node:async_hooks';
    const { holdTickObjectShape } = await import(${JSON.stringify(MODULE)});
    const held = ${hold ? 'holdTickObjectShape()' : 'undefined'};
    for (let i = 0; i < 300; i++) await new Promise((r) => process.nextTick(r));
    globalThis.gc();
    let fresh, type = '';
    const hook = createHook({ init(_id, t, _tr, resource) { if (fresh === undefined) { fresh = resource; type = t; } } });
    hook.enable(); process.nextTick(() => {}); hook.disable();
    console.log(JSON.stringify({ held: held !== undefined, sameMap: held !== undefined && %HaveSameMap(held, fresh), type }));
  `;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', '--input-type=module', '-e', src], { encoding: 'utf8', timeout: 20_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { held: boolean; sameMap: boolean; type: string };
}

describe('holdTickObjectShape', () => {
  it("holds a nextTick queue entry whose hidden class new entries still share after a full collection", () => {
    expect(run(true)).toEqual({ held: true, sameMap: true, type: 'TickObject' });
  });

  it('holds nothing unless called (the control: the child reports no held entry)', () => {
    expect(run(false)).toEqual({ held: false, sameMap: false, type: 'TickObject' });
  });

  it('is idempotent and leaves no async hook enabled', async () => {
    const { holdTickObjectShape } = await import('../../src/core/tick-shape.js');
    const a = holdTickObjectShape();
    expect(a).toBeTypeOf('object');
    expect(holdTickObjectShape()).toBe(a);
    // With no init hook left, creating async resources does not reach any hook: nextTick still runs normally.
    await new Promise<void>((resolve) => process.nextTick(resolve));
  });
});
