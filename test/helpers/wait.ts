/**
 * The one sleep and the one poll loop of the test suite. Prefer awaiting an event (a log
 * line, a 'close', a promise the code under test resolves); poll only what has no event,
 * and always with a deadline, so a test that waits for something that never comes fails
 * with what it waited for instead of hanging until vitest's timeout.
 */

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface WaitOptions {
  /** Give up after this long (monotonic clock). Default 5 s. */
  timeoutMs?: number;
  /** Pause between two checks. Default 20 ms. */
  intervalMs?: number;
  /** What is awaited, for the timeout error; a function is read only when it fails (e.g. to show the last value seen). */
  message?: string | (() => string);
}

/**
 * Check `predicate` until it returns a truthy value and return that value. It is checked
 * first, then every `intervalMs`; once `timeoutMs` has passed and it is still falsy, the
 * promise rejects with "timed out after N ms waiting for <message>". A predicate that
 * throws rejects at once (wrap it to retry on errors).
 */
export async function waitFor<T>(predicate: () => T | Promise<T>, options: WaitOptions = {}): Promise<NonNullable<T>> {
  const { timeoutMs = 5_000, intervalMs = 20, message = 'condition' } = options;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value as NonNullable<T>;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof message === 'function' ? message() : message}`);
    }
    await sleep(intervalMs);
  }
}
