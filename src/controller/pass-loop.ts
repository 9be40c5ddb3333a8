/**
 * @module controller/pass-loop
 * A coalescing work loop for reconcilers that reconcile "everything from the cache": `kick()` marks
 * the world dirty, and one pass runs `delayMs` later however many kicks came in between (a burst of
 * 1,000 claim events is one pass, never 1,000 writes). Passes never overlap; a kick during a pass
 * schedules one more. A failed pass is retried with doubling backoff (capped), so an API server
 * outage is not hammered.
 */
import type { ControllerLogger } from './context.ts';

export interface PassLoopOptions {
  name: string;
  /** One pass over the cache. Throwing schedules a retry. */
  run: () => Promise<void>;
  delayMs: number;
  /** First retry delay after a failure; doubles up to `maxErrorDelayMs`. */
  errorDelayMs?: number;
  maxErrorDelayMs?: number;
  log: ControllerLogger;
  onResult?: (result: 'ok' | 'error') => void;
}

export class PassLoop {
  private readonly o: PassLoopOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private failures = 0;

  constructor(opts: PassLoopOptions) {
    this.o = opts;
  }

  /** Something changed: make sure a pass runs soon. */
  kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (!this.timer && !this.running) this.schedule(this.o.delayMs);
  }

  private schedule(ms: number): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pass();
    }, ms);
  }

  /** Runs a pass now (after the current one, if any). Resolves when it is done; never rejects. */
  async pass(): Promise<void> {
    if (this.running) {
      this.dirty = true;
      await this.running;
      return;
    }
    if (this.stopped) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.dirty = false;
    this.running = (async () => {
      let retryIn: number | undefined;
      try {
        await this.o.run();
        this.failures = 0;
        this.o.onResult?.('ok');
      } catch (e) {
        this.failures++;
        this.dirty = true;
        const first = this.o.errorDelayMs ?? 500;
        retryIn = Math.min(first * 2 ** (this.failures - 1), this.o.maxErrorDelayMs ?? 30_000);
        this.o.log.warn(
          { err: String(e), reconciler: this.o.name, retryInMs: retryIn },
          'reconcile pass failed',
        );
        this.o.onResult?.('error');
      }
      this.running = undefined;
      if (this.dirty) this.schedule(retryIn ?? this.o.delayMs);
    })();
    await this.running;
  }

  /** No more passes; waits for the current one. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
