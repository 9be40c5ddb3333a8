/**
 * @module test/lib/until
 * Waiting in tests for something that happens asynchronously (a watch, a reconciler, a process).
 */

/**
 * Polls `check` every `pollMs` until it returns something other than undefined, and returns that.
 * @throws Error naming `what` when `deadlineMs` passes first.
 */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  deadlineMs = 30_000,
  pollMs = 50,
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() - started > deadlineMs)
      throw new Error(`still waiting for ${what} after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
