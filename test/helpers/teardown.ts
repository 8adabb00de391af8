import { afterEach } from 'vitest';

/**
 * What a test starts, stopped after each test, the last started first: `stopAfterEach()`
 * in a file's top level, then `const a = started(await startAuthority(…), (x) => x.stop())`.
 * A failing stop does not keep the others from running (the first error is rethrown).
 */
export function stopAfterEach(): <T>(part: T, stop: (part: T) => unknown) => T {
  const stops: Array<() => unknown> = [];
  afterEach(async () => {
    let first: unknown;
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  });
  return (part, stop) => {
    stops.push(() => stop(part));
    return part;
  };
}
