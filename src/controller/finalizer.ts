/**
 * @module controller/finalizer
 * Holds a pool while addresses of it are held. Every IPPool gets the finalizer
 * `ipkeeper.io/pool-in-use`; a pool being deleted (`metadata.deletionTimestamp` set) keeps it while
 * any IPClaim names the pool (`spec.pool`), and loses it when the last such claim is gone — then
 * the API server removes the pool. Without this a `kubectl delete ippool` would orphan claims whose
 * routes, gateway and VLAN nobody can look up any more.
 *
 * While a pool waits, a Warning event `PoolInUse` on the pool says by what ("held by 3 claims:
 * 10.6.0.5 (Pod ns/web-0), ..."), once per change of that number. The decision to let go is made on a
 * fresh list of the claims, not on the cache alone: a claim created a moment ago must not lose its
 * pool because a watch event is late.
 */
import { mutate } from '../store/retry.ts';
import { API_VERSION, type IPClaim, type IPPool } from '../api/kinds.ts';
import { CLAIM_PREFIX, POOL_PREFIX } from '../ipam/state.ts';
import type { ControllerContext, Reconciler } from './context.ts';
import { acquireCache, type SharedCache } from './cache.ts';
import { countReconcile } from './metrics.ts';
import { PassLoop } from './pass-loop.ts';

export const POOL_FINALIZER = 'ipkeeper.io/pool-in-use';
/** Finalizer passes follow changes quickly: deletes are rare and an operator is waiting. */
export const FINALIZER_DELAY_MS = 100;
/** Claims named in a PoolInUse event. */
const HOLDERS_SHOWN = 5;

function describeClaim(c: IPClaim): string {
  const o = c.spec.owner;
  return `${c.spec.ip} (${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name})`;
}

/** `held by 3 claims: 10.6.0.5 (Pod ns/web-0), ...` */
export function heldByMessage(claims: IPClaim[]): string {
  const shown = claims.slice(0, HOLDERS_SHOWN).map(describeClaim).join(', ');
  const more = claims.length > HOLDERS_SHOWN ? `, and ${claims.length - HOLDERS_SHOWN} more` : '';
  return `held by ${claims.length} claim${claims.length === 1 ? '' : 's'}: ${shown}${more}`;
}

export class PoolFinalizerReconciler implements Reconciler {
  readonly name = 'pool-finalizer';
  private readonly delayMs: number;
  private cache: SharedCache | undefined;
  private loop: PassLoop | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Pool name → claim count last reported in an event, so an event is sent per change, not per pass. */
  private readonly reported = new Map<string, number>();

  constructor(opts: { delayMs?: number } = {}) {
    this.delayMs = opts.delayMs ?? FINALIZER_DELAY_MS;
  }

  /** @throws StoreError when the store cannot be listed. */
  async start(ctx: ControllerContext): Promise<void> {
    this.cache = await acquireCache(ctx);
    const cache = this.cache;
    this.loop = new PassLoop({
      name: this.name,
      delayMs: this.delayMs,
      log: ctx.log,
      run: () => this.reconcile(ctx, cache),
      onResult: (r) => countReconcile(ctx, this.name, r),
    });
    this.unsubscribe = cache.onChange(() => this.loop?.kick());
    await this.loop.pass();
  }

  private async reconcile(ctx: ControllerContext, cache: SharedCache): Promise<void> {
    const { ipam } = cache;
    if (!ipam.ready) throw new Error('the cache is re-listing after a watch reset');
    let failed: unknown;
    const pools = [...ipam.state.pools.values()].map((e) => e.obj);
    for (const pool of pools) {
      try {
        if (pool.metadata.deletionTimestamp === undefined) await this.ensureFinalizer(ctx, pool);
        else if ((pool.metadata.finalizers ?? []).includes(POOL_FINALIZER))
          await this.deleting(ctx, cache, pool);
      } catch (e) {
        failed ??= e;
      }
    }
    for (const name of this.reported.keys()) if (!ipam.state.pools.has(name)) this.reported.delete(name);
    if (failed !== undefined) throw failed;
  }

  private async ensureFinalizer(ctx: ControllerContext, pool: IPPool): Promise<void> {
    if ((pool.metadata.finalizers ?? []).includes(POOL_FINALIZER)) return;
    await mutate<IPPool>(ctx.store, `${POOL_PREFIX}${pool.metadata.name}`, (cur) => {
      if (!cur || cur.metadata.deletionTimestamp !== undefined) return cur;
      const f = cur.metadata.finalizers ?? [];
      if (f.includes(POOL_FINALIZER)) return cur;
      return { ...cur, metadata: { ...cur.metadata, finalizers: [...f, POOL_FINALIZER] } };
    });
  }

  private async deleting(ctx: ControllerContext, cache: SharedCache, pool: IPPool): Promise<void> {
    const name = pool.metadata.name;
    // The cache says whether to look; the store says whether to let go.
    let holders: IPClaim[] = [];
    if (cache.ipam.state.claimCountOf(name) > 0) {
      for (const h of cache.ipam.state.claims.values()) if (h.claim.spec.pool === name) holders.push(h.claim);
    } else {
      holders = (await ctx.store.list<IPClaim>(CLAIM_PREFIX))
        .map((e) => e.value)
        .filter((c) => c.spec?.pool === name);
    }
    const regarding = {
      apiVersion: API_VERSION,
      kind: 'IPPool',
      name,
      ...(pool.metadata.uid ? { uid: pool.metadata.uid } : {}),
    };
    if (holders.length > 0) {
      if (this.reported.get(name) !== holders.length) {
        this.reported.set(name, holders.length);
        holders.sort((a, b) => a.spec.ip.localeCompare(b.spec.ip, 'en', { numeric: true }));
        await ctx.event({
          regarding,
          type: 'Warning',
          reason: 'PoolInUse',
          message: `IPPool "${name}" is being deleted but is ${heldByMessage(holders)}; it goes when they are released (delete their pods)`,
        });
        ctx.log.info({ pool: name, claims: holders.length }, 'pool deletion waits for its claims');
      }
      return;
    }
    const r = await mutate<IPPool>(ctx.store, `${POOL_PREFIX}${name}`, (cur) => {
      const f = cur?.metadata.finalizers ?? [];
      if (!cur || !f.includes(POOL_FINALIZER)) return cur;
      return { ...cur, metadata: { ...cur.metadata, finalizers: f.filter((x) => x !== POOL_FINALIZER) } };
    });
    if (r.action === 'updated') {
      this.reported.delete(name);
      ctx.log.info({ pool: name }, 'pool holds no claims any more; released its finalizer');
      await ctx.event({
        regarding,
        type: 'Normal',
        reason: 'PoolReleased',
        message: `IPPool "${name}" holds no claims any more; the finalizer ${POOL_FINALIZER} is removed and the pool is deleted`,
      });
    }
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.loop?.stop();
    await this.cache?.release();
    this.cache = undefined;
  }
}
