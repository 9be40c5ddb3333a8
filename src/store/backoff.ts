/**
 * @module store/backoff
 * Small helpers the networked backends (etcd, kubernetes) share for retrying reads and unsent writes.
 */

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Backoff before retry number `attempt` (1-based), with ±50 % jitter so retries spread out. */
export function backoff(attempt: number, firstMs: number, capMs: number): number {
  const base = Math.min(capMs, firstMs * 2 ** Math.min(attempt - 1, 16));
  return Math.round(base * (0.5 + Math.random()));
}
