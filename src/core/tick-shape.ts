import { createHook } from 'node:async_hooks';

/**
 * Keeps one of `process.nextTick`'s queue entries alive for the life of the process, so
 * that a full garbage collection never finds none.
 *
 * Why (bench/RESULTS.md, "sixth"; Node 20, V8 11.3): `nextTick` builds each queue entry
 * with an object literal whose first keys are computed (`{ [async_id_symbol]: …,
 * [trigger_async_id_symbol]: …, callback, args }`). The hidden classes ("maps") that
 * literal moves through are held only by live entries. In a process that sits idle, no
 * entry is alive, so a full collection (V8's memory reducer runs some ~8 s into an idle
 * process) frees them, and if `nextTick` has not been optimised by then, every later call
 * builds its entry in the runtime (`DefineKeyedOwnPropertyInLiteral`, a map transition
 * search): ~210 ns instead of ~40, for the life of the process. Node's streams and http
 * call it ~35 times per proxied request; a sidecar that idled after start spent ~17 % more
 * CPU per request at saturation. With one entry held, the maps stay and the literal stays
 * on its fast path (a standalone reproduction is in the results).
 *
 * How: an async hook sees the entry as the `TickObject` resource of one `nextTick`, and is
 * disabled at once (no hook is left installed; hooks cost every async operation while
 * enabled). Idempotent; returns the held entry (for tests).
 */
let held: object | undefined;

export function holdTickObjectShape(): object | undefined {
  if (held !== undefined) return held;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && held === undefined) held = resource as object;
    },
  });
  hook.enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
  return held;
}

function noop(): void {}
