/**
 * @module controller/pool-status
 * Keeps each IPPool's `status` {total, used, reserved, free} in step with its claims and the
 * reservations, so `kubectl get ippools` shows usage. The figures come from the shared engine cache
 * (`IpamState.usage`, the same numbers `ipkeeper usage` prints); they are derived and may lag
 * (DESIGN invariant 2: no write per claim). Changes are coalesced: one pass at most every
 * `intervalMs` (default 1 s), and a pool is written only when its figures changed, through `mutate`
 * (the kubernetes store writes `/status` for IPPool).
 *
 * Counts above 2^53 − 1 (IPv6 pools wider than a /75) are written as 2^53 − 1: the status fields are
 * JSON integers, and a larger JavaScript number would not be exact (nor, past 2^63, an int64 the API
 * server accepts).
 */
import { mutate } from '../store/retry.ts';
import type { IPPool } from '../api/kinds.ts';
import { POOL_PREFIX } from '../ipam/state.ts';
import type { ControllerContext, Reconciler } from './context.ts';
import { acquireCache, type SharedCache } from './cache.ts';
import { countReconcile, metricsOf } from './metrics.ts';
import { PassLoop } from './pass-loop.ts';

export const POOL_STATUS_INTERVAL_MS = 1_000;

export interface PoolStatusCounts {
  total: number;
  used: number;
  reserved: number;
  free: number;
}

function count(n: bigint): number {
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

function sameStatus(a: IPPool['status'] | undefined, b: PoolStatusCounts): boolean {
  return !!a && a.total === b.total && a.used === b.used && a.reserved === b.reserved && a.free === b.free;
}

export class PoolStatusReconciler implements Reconciler {
  readonly name = 'pool-status';
  private readonly intervalMs: number;
  private cache: SharedCache | undefined;
  private loop: PassLoop | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(opts: { intervalMs?: number } = {}) {
    this.intervalMs = opts.intervalMs ?? POOL_STATUS_INTERVAL_MS;
  }

  /** @throws StoreError when the store cannot be listed. */
  async start(ctx: ControllerContext): Promise<void> {
    this.cache = await acquireCache(ctx);
    const cache = this.cache;
    this.loop = new PassLoop({
      name: this.name,
      delayMs: this.intervalMs,
      log: ctx.log,
      run: () => this.reconcile(ctx, cache),
      onResult: (r) => countReconcile(ctx, this.name, r),
    });
    this.unsubscribe = cache.onChange(() => this.loop?.kick());
    await this.loop.pass();
  }

  /** One pass: every pool whose figures differ from its status gets them written. */
  private async reconcile(ctx: ControllerContext, cache: SharedCache): Promise<void> {
    const { ipam } = cache;
    if (!ipam.ready) throw new Error('the cache is re-listing after a watch reset');
    let failed: unknown;
    for (const [name, entry] of ipam.state.pools) {
      const u = ipam.state.usage(entry.compiled);
      const want: PoolStatusCounts = {
        total: count(u.total),
        used: count(u.used),
        reserved: count(u.reserved),
        free: count(u.free),
      };
      if (sameStatus(entry.obj.status, want)) continue;
      try {
        const r = await mutate<IPPool>(ctx.store, `${POOL_PREFIX}${name}`, (cur) => {
          if (!cur || sameStatus(cur.status, want)) return cur;
          return { ...cur, status: { ...cur.status, ...want } };
        });
        if (r.action === 'updated') {
          metricsOf(ctx)?.statusWrites.inc();
          ctx.log.debug({ pool: name, ...want }, 'pool status written');
        }
      } catch (e) {
        // One pool's failure must not starve the others; the pass reports it at the end.
        failed ??= e;
      }
    }
    if (failed !== undefined) throw failed;
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.loop?.stop();
    await this.cache?.release();
    this.cache = undefined;
  }
}
