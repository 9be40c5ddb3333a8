/**
 * @module controller/vip
 * The VIP reconciler (Kubernetes mode, seed 002): VIP objects created with kubectl or the API get
 * their addresses and status. One pass over every VIP, coalesced (`PassLoop`) from VIP events, claim
 * events (the shared engine cache) and pod events (an informer over all namespaces):
 *
 * - allocate: `allocateVip` (src/ipam/vip.ts) — dynamic or static, from a pool or a Subnet,
 *   idempotent; a refusal (address taken, outside the pool, no such pool or Subnet) goes into
 *   status.message with ready: false, and a Warning event;
 * - allowed address pairs: status.pods = the pods of spec.namespace matching the selector that list
 *   the VIP in `ipkeeper.io/aaps` (or `ovn.kubernetes.io/aaps`) — `aapPods`; a pod of another
 *   namespace listing it is ignored;
 * - status.pod: the pod using the VIP as its address (the claim's boundTo, written by the agent); a
 *   binding whose pod is gone (its DEL never came) is cleared, except a StatefulSet/VM pod's, kept
 *   for its successor;
 * - orphans: claims of a VIP that no longer exists (or of an earlier VIP of the same name, by uid)
 *   are released — not while a pod uses one, and not before ORPHAN_GRACE_MS, since an agent's
 *   `ipkeeper apply` claims a VIP's address just before it writes the VIP.
 *
 * Errors: a pass that fails (store unreachable) is retried by the PassLoop with backoff.
 */
import { IpamError } from '../errors.ts';
import { mutate } from '../store/retry.ts';
import { API_VERSION, type Subnet, type VIP, type VIPStatus } from '../api/kinds.ts';
import {
  VIP_ANNOTATIONS,
  VIP_PREFIX,
  AAPS_ANNOTATIONS,
  aapPods,
  allocateVip,
  claimsOfVip,
  clearBinding,
  dropClaims,
  vipClaimIndex,
  vipStatus,
  type VipDeps,
} from '../ipam/vip.ts';
import type { HeldClaim } from '../ipam/state.ts';
import { acquireCache, type SharedCache } from './cache.ts';
import { acquirePods } from './shared.ts';
import type { ControllerContext, Reconciler } from './context.ts';
import { PassLoop } from './pass-loop.ts';
import { SUBNET_PREFIX } from './app-pools.ts';

/** Orphan claims younger than this are left alone: their VIP may be being written right now. */
export const ORPHAN_GRACE_MS = 60_000;
/** Coalescing delay of a pass after a change. */
export const VIP_PASS_DELAY_MS = 500;

interface PodFacts {
  namespace: string;
  name: string;
  uid?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

interface PodMeta {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
}

function sameStatus(a: VIPStatus | undefined, b: VIPStatus): boolean {
  return JSON.stringify(a ?? {}) === JSON.stringify(b);
}

export class VipReconciler implements Reconciler {
  readonly name = 'vip';
  private readonly orphanGraceMs: number;
  private readonly delayMs: number;
  private cache: SharedCache | undefined;
  private loop: PassLoop | undefined;
  private unsubscribe: (() => void) | undefined;
  private vipWatch: { close(): void } | undefined;
  /** A VIP waiting for its Subnet (or whose Subnet changed) is retried when Subnets change. */
  private subnetWatch: { close(): void } | undefined;
  private informer: { stop(): Promise<void> | void } | undefined;
  /** Pods that name a VIP (vip or aaps annotation): the only ones this reconciler needs. */
  private readonly pods = new Map<string, PodFacts>();
  /** Whether the pod informer has listed: before that, a missing pod proves nothing. */
  private podsSynced = false;

  constructor(opts: { orphanGraceMs?: number; delayMs?: number } = {}) {
    this.orphanGraceMs = opts.orphanGraceMs ?? ORPHAN_GRACE_MS;
    this.delayMs = opts.delayMs ?? VIP_PASS_DELAY_MS;
  }

  /** @throws StoreError when the store cannot be listed; Error when pods cannot be listed. */
  async start(ctx: ControllerContext): Promise<void> {
    this.cache = await acquireCache(ctx);
    const cache = this.cache;
    this.loop = new PassLoop({
      name: this.name,
      delayMs: this.delayMs,
      log: ctx.log,
      run: () => this.reconcile(ctx, cache),
    });
    this.unsubscribe = cache.onChange(() => this.loop?.kick());
    this.vipWatch = ctx.store.watch(
      VIP_PREFIX,
      () => this.loop?.kick(),
      () => this.loop?.kick(),
    );
    this.subnetWatch = ctx.store.watch(
      SUBNET_PREFIX,
      () => this.loop?.kick(),
      () => this.loop?.kick(),
    );
    await this.startPods(ctx);
    await this.loop.pass();
  }

  private async startPods(ctx: ControllerContext): Promise<void> {
    // The pod informer is shared with GC (src/controller/shared.ts); listed when this resolves.
    const pods = await acquirePods(ctx);
    this.informer = { stop: () => pods.release() };
    const put = (p: PodMeta): void => {
      const m = p.metadata;
      if (!m?.name || !m.namespace) return;
      const key = `${m.namespace}/${m.name}`;
      const ann = m.annotations ?? {};
      if (![...VIP_ANNOTATIONS, ...AAPS_ANNOTATIONS].some((a) => ann[a] !== undefined)) {
        if (this.pods.delete(key)) this.loop?.kick();
        return;
      }
      this.pods.set(key, {
        namespace: m.namespace,
        name: m.name,
        ...(m.uid ? { uid: m.uid } : {}),
        labels: m.labels ?? {},
        annotations: ann,
      });
      this.loop?.kick();
    };
    pods.on((type, p) => {
      if (type !== 'delete') return put(p);
      if (
        p.metadata?.namespace &&
        p.metadata.name &&
        this.pods.delete(`${p.metadata.namespace}/${p.metadata.name}`)
      ) {
        this.loop?.kick();
      }
    });
    this.podsSynced = true;
  }

  private deps(ctx: ControllerContext, cache: SharedCache): VipDeps {
    return { store: ctx.store, state: cache.ipam.state, clock: { now: ctx.now } };
  }

  /** One pass over every VIP, then the orphans. */
  private async reconcile(ctx: ControllerContext, cache: SharedCache): Promise<void> {
    const { ipam } = cache;
    if (!ipam.ready) throw new Error('the cache is re-listing after a watch reset');
    const deps = this.deps(ctx, cache);
    const vips = await ctx.store.list<VIP>(VIP_PREFIX);
    // One pass over the claims for every VIP (not one per VIP).
    const index = vipClaimIndex(ipam.state);
    // One list of the Subnets for the VIPs taken from one (not a read per VIP).
    const subnets = vips.some((e) => e.value.spec.subnet !== undefined)
      ? new Map((await ctx.store.list<Subnet>(SUBNET_PREFIX)).map((e) => [e.value.metadata.name, e.value]))
      : new Map<string, Subnet>();
    let failed: unknown;
    for (const e of vips) {
      try {
        await this.reconcileOne(ctx, deps, e.value, index, subnets);
      } catch (err) {
        // One VIP's failure must not starve the others; the pass reports it at the end.
        failed ??= err;
      }
    }
    const live = new Map(vips.map((e) => [e.value.metadata.name, e.value.metadata.uid]));
    const now = ctx.now();
    for (const [name, all] of vipClaimIndex(ipam.state)) {
      const held = all.filter((h) => ipam.state.claims.get(h.key) === h);
      const uid = live.get(name);
      const orphans = held.filter(
        (h: HeldClaim) =>
          (!live.has(name) ||
            (uid !== undefined && h.claim.spec.owner.uid !== undefined && h.claim.spec.owner.uid !== uid)) &&
          now - Date.parse(h.claim.spec.createdAt) >= this.orphanGraceMs,
      );
      if (orphans.length === 0) continue;
      const n = await dropClaims(deps, orphans);
      if (n > 0) ctx.log.info({ vip: name, released: n }, 'released the addresses of a deleted VIP');
    }
    if (failed !== undefined) throw failed;
  }

  private async reconcileOne(
    ctx: ControllerContext,
    deps: VipDeps,
    vip: VIP,
    index: Map<string, HeldClaim[]>,
    subnets: ReadonlyMap<string, Subnet>,
  ): Promise<void> {
    if (vip.metadata.deletionTimestamp) return;
    const name = vip.metadata.name;
    let message: string | undefined;
    let claims: HeldClaim[];
    try {
      const a = await allocateVip(deps, vip, index, subnets);
      claims = a.claims;
      await dropClaims(deps, a.stale);
    } catch (e) {
      if (!(e instanceof IpamError)) throw e;
      message = e.message;
      claims = claimsOfVip(deps.state, name, vip.metadata.uid, index);
    }
    // A binding whose pod is gone and whose DEL never came (not a StatefulSet/VM pod's: kept for it).
    if (this.podsSynced) {
      for (const h of claims) {
        const b = h.claim.spec.boundTo;
        if (!b || b.fixed || !b.pod.namespace) continue;
        const pod = this.pods.get(`${b.pod.namespace}/${b.pod.name}`);
        if (pod && (!b.pod.uid || !pod.uid || pod.uid === b.pod.uid)) continue;
        if (await clearBinding(deps, h.key, b.pod)) {
          ctx.log.info(
            { vip: name, pod: `${b.pod.namespace}/${b.pod.name}` },
            'cleared the VIP binding of a pod that is gone',
          );
        }
      }
      // The same claims, as the cache holds them now (a binding may just have been cleared).
      claims = claims.flatMap((h) => {
        const now = deps.state.claims.get(h.key);
        return now ? [now] : [];
      });
    }
    const pods = aapPods(vip, this.pods.values());
    const status = vipStatus(vip, claims, { pods }, message);
    if (sameStatus(vip.status, status)) return;
    const r = await mutate<VIP>(ctx.store, VIP_PREFIX + name, (cur) => {
      if (
        !cur ||
        (vip.metadata.uid && cur.metadata.uid !== vip.metadata.uid) ||
        sameStatus(cur.status, status)
      )
        return cur;
      return { ...cur, status };
    });
    if (r.action !== 'updated') return;
    ctx.log.debug({ vip: name, status }, 'VIP status written');
    const target = {
      apiVersion: API_VERSION,
      kind: 'VIP',
      name,
      ...(vip.metadata.uid ? { uid: vip.metadata.uid } : {}),
    };
    if (message !== undefined && message !== vip.status?.message) {
      await ctx.event({ regarding: target, type: 'Warning', reason: 'VIPNotReady', message });
    } else if (status.ready && !vip.status?.ready) {
      const ips = [status.v4ip, status.v6ip].filter(Boolean).join(', ');
      await ctx.event({
        regarding: target,
        type: 'Normal',
        reason: 'VIPAllocated',
        message: `VIP ${name} holds ${ips} (MAC ${status.mac})`,
      });
    }
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.vipWatch?.close();
    this.subnetWatch?.close();
    await this.loop?.stop();
    await this.informer?.stop();
    await this.cache?.release();
    this.cache = undefined;
  }
}
