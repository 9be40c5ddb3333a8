/**
 * @module controller/app-pools
 * Application pools that follow replicas (seed 001): for every Deployment, ReplicaSet, StatefulSet,
 * DaemonSet, Job and CronJob whose pod template (or the workload itself) carries
 * `ipkeeper.io/subnet(s)`, one IPPool per interface and IP family, carved from the named `Subnet`,
 * bound to the application (podAffinity = its selector; the pool-choice rule finds it by name),
 * holding `N` or `replicas + N` addresses:
 *
 *   scale 2 → 3 with "+1":  pool 3 → 4 addresses (the lowest free addresses of the subnet)
 *   scale 3 → 1 with "+1":  pool 4 → 2, but only by addresses no claim holds; the rest go as the
 *                           old pods release theirs (every claim change triggers a pass)
 *   delete the application: the pool is deleted (ownerReference + Kubernetes' GC, and this loop);
 *                           the pool finalizer keeps it until its last claim is released
 *   ippool-reclaim "false": no ownerReference, never deleted here; a re-created application of the
 *                           same kind, namespace and name gets the same pool name and adopts it
 *
 * A grow never takes an address some claim holds (a VIP from the Subnet holds one outside every pool,
 * src/ipam/vip.ts), and a Subnet's `free` does not count such addresses.
 *
 * Only top-level workloads get pools (a Deployment's ReplicaSets and a CronJob's Jobs inherit the
 * annotation but are not applications of their own). Passes are coalesced (`PassLoop`): workload,
 * Subnet, pool and claim changes each kick one; a pass reconciles every application from the caches
 * and writes a pool only when it changes, through `mutate`. Each `Subnet`'s status lists which pools
 * hold which of its addresses.
 *
 * Bad annotations and missing subnets are Warning events on the workload (once per distinct
 * problem), naming the annotation, its value and the fix.
 */
import { IpamError } from '../errors.ts';
import { mutate } from '../store/retry.ts';
import { tryParseAddr, type Family } from '../net/addr.ts';
import { IntervalSet } from '../net/interval-set.ts';
import type { IPClaim, IPPool, Subnet } from '../api/kinds.ts';
import { CLAIM_PREFIX, POOL_PREFIX, type IpamState } from '../ipam/state.ts';
import { VIP_PREFIX } from '../ipam/vip.ts';
import { compilePool, DEFAULT_NETWORK } from '../ipam/pools.ts';
import {
  APP_KINDS,
  APP_LABEL,
  APP_POOL_ANNOTATION,
  appPoolName,
  buildAppPool,
  desiredSize,
  formatSize,
  parseAppPoolAnnotations,
  replicasOf,
  resize,
  selectorOf,
  subnetAddresses,
  type AppRef,
  type WorkloadObject,
} from '../ipam/app-pool.ts';
import { type WorkloadCache, type WorkloadInfo, type WorkloadKind } from '../cluster/workloads.ts';
import type { ControllerContext, EventTarget, Reconciler } from './context.ts';
import { acquireWorkloads } from './shared.ts';
import { acquireCache, type SharedCache } from './cache.ts';
import { kubeJson } from './kube.ts';
import { countAppPoolResize, countReconcile } from './metrics.ts';
import { PassLoop } from './pass-loop.ts';

export const SUBNET_PREFIX = 'subnets/';
/** Passes follow changes quickly: a pod of a scaled application is waiting for its address. */
export const APP_POOL_DELAY_MS = 100;
/** A full pass also runs this often, whatever happened (a missed event costs at most this). */
export const APP_POOL_RESYNC_MS = 60_000;

const PLURAL: Record<string, string> = {
  Deployment: 'deployments',
  ReplicaSet: 'replicasets',
  StatefulSet: 'statefulsets',
  DaemonSet: 'daemonsets',
  Job: 'jobs',
  CronJob: 'cronjobs',
};

interface App {
  w: WorkloadInfo;
  ref: AppRef;
  target: EventTarget;
}

export class AppPoolReconciler implements Reconciler {
  readonly name = 'app-pools';
  private readonly delayMs: number;
  private readonly resyncMs: number;
  private readonly given: WorkloadCache | undefined;
  private workloads: WorkloadCache | undefined;
  private cache: SharedCache | undefined;
  private loop: PassLoop | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private resync: NodeJS.Timeout | undefined;
  private subnetWatch: { close(): void } | undefined;
  /** VIP changes (a VIP from a Subnet holds an address of it): the Subnet's `free` follows them. */
  private vipWatch: { close(): void } | undefined;
  /** Workload id → last problem reported, so a Warning is sent once per distinct problem. */
  private readonly problems = new Map<string, string>();
  /** Workload uid → the parts of its object the cache does not keep (see `rawOf`). */
  private readonly raw = new Map<string, WorkloadObject>();

  /** Per pass: `<network>/<family>` → every pool's addresses (see `ensurePool`). */
  private readonly taken = new Map<string, IntervalSet>();
  /** Per pass: every claim, read from the store once when a pool is made, grown or shrunk. */
  private claimList: IPClaim[] | undefined;
  /** Per pass: `<network>/<family>` → the addresses claims hold (see `claimedIn`). */
  private readonly claimedMemo = new Map<string, IntervalSet>();
  /** Pools whose shrink waits for claims to go, as of the last pass. */
  private waiting = 0;
  /** Pools in the cache after the last pass. */
  private poolCount = -1;
  /** `reservationsGeneration` the last pass started from. */
  private reservationsSeen = -1;
  /** Subnets the applications named (for a scoped reconciler's status writes). */
  private readonly named = new Set<string>();
  /** Only workloads (and their pools) in these namespaces; undefined = all. */
  private readonly namespaces: ReadonlySet<string> | undefined;

  constructor(
    opts: { workloads?: WorkloadCache; delayMs?: number; resyncMs?: number; namespaces?: string[] } = {},
  ) {
    this.given = opts.workloads;
    this.namespaces = opts.namespaces ? new Set(opts.namespaces) : undefined;
    this.delayMs = opts.delayMs ?? APP_POOL_DELAY_MS;
    this.resyncMs = opts.resyncMs ?? APP_POOL_RESYNC_MS;
  }

  /** @throws StoreError when the store cannot be listed; Error when the workload informers cannot start. */
  async start(ctx: ControllerContext): Promise<void> {
    this.cache = await acquireCache(ctx);
    // Shared with the other reconcilers of this term (src/controller/shared.ts).
    this.workloads = this.given ?? (await acquireWorkloads(ctx));
    const cache = this.cache;
    this.loop = new PassLoop({
      name: this.name,
      delayMs: this.delayMs,
      log: ctx.log,
      run: () => this.reconcile(ctx, cache),
      onResult: (r) => countReconcile(ctx, this.name, r),
    });
    const kick = (): void => this.loop?.kick();
    // Claim events are many and rarely matter here: only to a shrink waiting for addresses to be
    // released, or when a pool appeared or went (ours deleted by hand: made again). A change to the
    // reservations changes what a Subnet has free, and what a pool may grow into.
    this.unsubscribe.push(
      cache.onChange(() => {
        const state = cache.ipam.state;
        if (
          this.waiting > 0 ||
          state.pools.size !== this.poolCount ||
          state.reservationsGeneration !== this.reservationsSeen
        )
          kick();
      }),
    );
    this.unsubscribe.push(this.workloads.on(kick));
    this.subnetWatch = ctx.store.watch(SUBNET_PREFIX, kick, kick);
    this.vipWatch = ctx.store.watch(VIP_PREFIX, kick, kick);
    if (this.resyncMs > 0) {
      this.resync = setInterval(kick, this.resyncMs);
      this.resync.unref();
    }
    await this.loop.pass();
  }

  async stop(): Promise<void> {
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.resync) clearInterval(this.resync);
    this.subnetWatch?.close();
    this.vipWatch?.close();
    await this.loop?.stop();
    if (!this.given) await this.workloads?.stop();
    this.workloads = undefined;
    await this.cache?.release();
    this.cache = undefined;
  }

  /** Runs one pass now (tests, and `ipkeeper controller --once` style callers). */
  async pass(): Promise<void> {
    await this.loop?.pass();
  }

  private async reconcile(ctx: ControllerContext, cache: SharedCache): Promise<void> {
    const workloads = this.workloads;
    if (!workloads) return;
    if (!cache.ipam.ready) throw new Error('the cache is re-listing after a watch reset');
    // Read before the pass: a change while it runs kicks another.
    this.reservationsSeen = cache.ipam.state.reservationsGeneration;
    const subnets = new Map(
      (await ctx.store.list<Subnet>(SUBNET_PREFIX)).map((e) => [e.value.metadata.name, e.value]),
    );
    const live = new Map<string, App>();
    let failed: unknown;
    this.taken.clear();
    this.claimList = undefined;
    this.claimedMemo.clear();
    this.waiting = 0;
    for (const kind of APP_KINDS) {
      if (!workloads.has(kind)) continue;
      for (const w of workloads.list(kind)) {
        if (this.namespaces && !this.namespaces.has(w.namespace)) continue;
        // A Deployment's ReplicaSets and a CronJob's Jobs carry the annotation too; only the top counts.
        if (w.ownerReferences.some((o) => (APP_KINDS as readonly string[]).includes(o.kind))) continue;
        const app: App = {
          w,
          ref: { kind: w.kind, namespace: w.namespace, name: w.name },
          target: {
            apiVersion: w.apiVersion,
            kind: w.kind,
            namespace: w.namespace,
            name: w.name,
            uid: w.uid,
          },
        };
        if (w.deleting) continue;
        live.set(`${w.kind}/${w.namespace}/${w.name}`, app);
        try {
          await this.reconcileApp(ctx, cache, app, subnets);
        } catch (e) {
          failed ??= e;
        }
      }
    }
    try {
      await this.reclaimPools(ctx, cache, live);
      await this.writeSubnetStatus(ctx, cache, subnets);
    } catch (e) {
      failed ??= e;
    }
    this.poolCount = cache.ipam.state.pools.size;
    for (const id of this.problems.keys()) if (!live.has(id)) this.problems.delete(id);
    const uids = new Set([...live.values()].map((a) => a.w.uid));
    for (const uid of this.raw.keys()) if (!uids.has(uid)) this.raw.delete(uid);
    if (failed !== undefined) throw failed;
  }

  private async problem(ctx: ControllerContext, app: App, reason: string, message: string): Promise<void> {
    const id = `${app.w.kind}/${app.w.namespace}/${app.w.name}`;
    if (this.problems.get(id) === message) return;
    this.problems.set(id, message);
    ctx.log.warn({ app: id, reason }, message);
    await ctx.event({ regarding: app.target, type: 'Warning', reason, message });
  }

  /**
   * What the cache does not keep: the selector (immutable in apps/v1 and batch/v1, so read once per
   * uid), a DaemonSet's `status.desiredNumberScheduled` and a CronJob's job template (read every
   * pass: they change).
   */
  private async rawOf(ctx: ControllerContext, w: WorkloadInfo): Promise<WorkloadObject | undefined> {
    const known = this.raw.get(w.uid);
    if (known && w.kind !== 'DaemonSet' && w.kind !== 'CronJob') return known;
    const r = await kubeJson(
      ctx.kc,
      'GET',
      `/apis/${w.apiVersion}/namespaces/${w.namespace}/${PLURAL[w.kind]}/${w.name}`,
    );
    // Deleted since the cache saw it: its delete event brings the next pass.
    if (r.status === 404) return undefined;
    if (r.status !== 200)
      throw new Error(
        `reading ${w.kind} ${w.namespace}/${w.name}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`,
      );
    const body = r.body as WorkloadObject;
    const kept: WorkloadObject = {
      metadata: { name: body.metadata?.name },
      spec: {
        selector: body.spec?.selector,
        jobTemplate: body.spec?.jobTemplate,
        template: { metadata: { labels: body.spec?.template?.metadata?.labels } },
      },
      status: body.status,
    };
    if (w.uid) this.raw.set(w.uid, kept);
    return kept;
  }

  private async reconcileApp(
    ctx: ControllerContext,
    cache: SharedCache,
    app: App,
    subnets: Map<string, Subnet>,
  ): Promise<void> {
    const { w } = app;
    const ann = { ...w.annotations, ...w.templateAnnotations };
    let req;
    try {
      req = parseAppPoolAnnotations(ann);
    } catch (e) {
      if (e instanceof IpamError) {
        await this.problem(
          ctx,
          app,
          'InvalidAnnotation',
          `${w.kind} ${w.namespace}/${w.name}: ${e.message}; no application pool is made until it is fixed`,
        );
        return;
      }
      throw e;
    }
    if (!req) return;
    const raw = await this.rawOf(ctx, w);
    if (!raw) return;
    const replicas =
      w.replicas !== undefined && w.kind !== 'DaemonSet' ? w.replicas : replicasOf(w.kind, raw);
    const want = desiredSize(req.size, replicas);
    const podAffinity = selectorOf(w.kind, raw);
    const missing: string[] = [];
    for (const iface of req.interfaces) {
      for (const family of [4, 6] as Family[]) {
        const subnetName = family === 4 ? iface.ipv4 : iface.ipv6;
        if (!subnetName) continue;
        const subnet = subnets.get(subnetName);
        this.named.add(subnetName);
        if (!subnet) {
          missing.push(`Subnet "${subnetName}" (interface ${iface.ifName}, IPv${family})`);
          continue;
        }
        const sf = subnetAddresses(subnet).family;
        if (sf !== family) {
          missing.push(
            `Subnet "${subnetName}" is IPv${sf} but is named for "ipv${family}" of interface ${iface.ifName}`,
          );
          continue;
        }
        await this.ensurePool(ctx, cache, app, {
          ifName: iface.ifName,
          family,
          subnet,
          want,
          size: req.size,
          reclaim: req.reclaim,
          ...(podAffinity ? { podAffinity } : {}),
          replicas,
        });
      }
    }
    if (missing.length > 0) {
      await this.problem(
        ctx,
        app,
        'SubnetNotFound',
        `${w.kind} ${w.namespace}/${w.name} (annotation ${req.source}): ${missing.join('; ')}; create the Subnet (ipkeeper apply -f) or fix the annotation`,
      );
    } else {
      this.problems.delete(`${w.kind}/${w.namespace}/${w.name}`);
    }
  }

  private async ensurePool(
    ctx: ControllerContext,
    cache: SharedCache,
    app: App,
    o: {
      ifName: string;
      family: Family;
      subnet: Subnet;
      want: number;
      size: { fixed: number } | { extra: number };
      reclaim: boolean;
      podAffinity?: { matchLabels?: Record<string, string> };
      replicas: number;
    },
  ): Promise<void> {
    const state = cache.ipam.state;
    const name = appPoolName(app.ref, o.family, o.ifName);
    const network = o.subnet.spec.network ?? DEFAULT_NETWORK;
    const offered = subnetAddresses(o.subnet).difference(state.reserved(o.family));
    // Every other pool of the same network and family keeps its addresses: pools never overlap, so
    // "all pools but this one" is the union of all (once per pass) minus this pool's addresses.
    const memoKey = `${network}/${o.family}`;
    let all = this.taken.get(memoKey);
    if (!all) {
      all = IntervalSet.empty(o.family);
      for (const e of state.pools.values()) {
        if (e.compiled.network === network && e.compiled.family === o.family)
          all = all.union(e.compiled.allocatable);
      }
      this.taken.set(memoKey, all);
    }
    const cached = state.pools.get(name);
    const currentOf = (p: IPPool | undefined): IntervalSet =>
      p?.spec.ips ? compilePool(p).allocatable : IntervalSet.empty(o.family);
    const cachedIps = currentOf(cached?.obj);
    // A shrink drops only addresses no claim holds: ask the store, not the cache, which claims exist
    // — but only when the cache says something could go. A shrink waiting for pods to release their
    // addresses (every claim event brings a pass) must not list every claim each time.
    const used = state.usedSet(network, o.family);
    const shrinking = cachedIps.size() > BigInt(o.want);
    const growing = cachedIps.size() < BigInt(o.want);
    // A grow never takes a claimed address either: a VIP from the Subnet holds one outside every
    // pool (src/ipam/vip.ts), and a pool must not list an address someone else already holds. Only a
    // pass that may change the pool looks at the claims (the cache's and the store's, so a claim
    // made a moment ago counts): a pool at its size costs nothing per claim event.
    let held = IntervalSet.empty(o.family);
    let claimsRead = false;
    if (cached === undefined || growing || (shrinking && used.countIn(cachedIps) < cachedIps.size())) {
      held = await this.claimedIn(ctx, state, network, o.family);
      claimsRead = true;
    }
    // Not read while shrinking: the cache says every address of the pool is used — all claimed, so
    // the shrink waits (rather than finding nothing to keep and asking for another pass at once).
    const claimed = claimsRead
      ? held.intersect(offered.union(cachedIps))
      : shrinking
        ? cachedIps
        : IntervalSet.empty(o.family);
    const taken = carveTaken(all, cachedIps, held);
    let recheck = false;
    let from = 0n;
    let to = 0n;
    let short = 0;
    let stuck = 0;
    let foreign: string | undefined;
    const r = await mutate<IPPool>(ctx.store, `${POOL_PREFIX}${name}`, (cur) => {
      foreign = undefined;
      // Being deleted (the old incarnation's, or by hand): let it go; the next pass makes a new one.
      if (cur?.metadata.deletionTimestamp) return cur;
      const owner = cur?.metadata.annotations?.[APP_POOL_ANNOTATION.app];
      const me = `${app.ref.kind}/${app.ref.namespace}/${app.ref.name}`;
      if (cur && owner !== me) {
        foreign = owner ?? '(no application: made by hand)';
        return cur;
      }
      const current = currentOf(cur);
      const sized = resize({ offered, current, taken, claimed: claimed.intersect(current), want: o.want });
      // The stored pool is another size than the cache thought (changed by hand, or the cache
      // lags): resize on a pass that read the claims.
      if (sized.ips.size() !== current.size() && !claimsRead) {
        recheck = true;
        return cur;
      }
      from = current.size();
      to = sized.ips.size();
      short = sized.short;
      stuck = sized.stuck;
      const built = buildAppPool({
        app: { ...app.ref, uid: app.w.uid, apiVersion: app.w.apiVersion },
        ifName: o.ifName,
        family: o.family,
        subnet: o.subnet,
        ips: sized.ips,
        size: o.size,
        reclaim: o.reclaim,
        ...(o.podAffinity ? { podAffinity: o.podAffinity } : {}),
      });
      if (!cur) return built;
      // Keep what others own on the object (finalizers, status, the server's fields, users' labels).
      const next: IPPool = {
        ...cur,
        metadata: {
          ...cur.metadata,
          labels: { ...cur.metadata.labels, ...built.metadata.labels },
          annotations: { ...cur.metadata.annotations, ...built.metadata.annotations },
        },
        spec: { ...cur.spec, ...built.spec },
      };
      const meta = next.metadata as Record<string, unknown>;
      if (built.metadata.ownerReferences) meta.ownerReferences = built.metadata.ownerReferences;
      else delete meta.ownerReferences;
      if (!o.podAffinity) delete next.spec.podAffinity;
      const same =
        JSON.stringify(next.spec) === JSON.stringify(cur.spec) &&
        JSON.stringify(next.metadata) === JSON.stringify(cur.metadata);
      return same ? cur : next;
    });
    const w = app.w;
    if (recheck) this.loop?.kick();
    if (foreign !== undefined) {
      await this.problem(
        ctx,
        app,
        'PoolNameTaken',
        `${w.kind} ${w.namespace}/${w.name}: IPPool "${name}" exists but belongs to ${foreign}; delete or rename it`,
      );
      return;
    }
    if (r.action === 'created' || r.action === 'updated') {
      // Our own acknowledged write, into the cache now (as ObjectService does): the next pool of
      // this pass must see these addresses as taken, whatever the watch's lag.
      state.put(`${POOL_PREFIX}${name}`, r.value, r.version);
      this.taken.delete(memoKey);
      const what =
        r.action === 'created'
          ? `created IPPool "${name}" with ${to} address(es) from Subnet "${o.subnet.metadata.name}"`
          : from === to
            ? `updated IPPool "${name}" (${to} address(es))`
            : `resized IPPool "${name}" from ${from} to ${to} address(es)`;
      if (r.action === 'updated' && from !== to) countAppPoolResize(ctx);
      const message = `${what} for interface ${o.ifName} (ippool-ip-number ${formatSize(o.size)}, ${o.replicas} replica(s))`;
      ctx.log.info(
        { pool: name, app: `${w.kind}/${w.namespace}/${w.name}`, from: String(from), to: String(to) },
        message,
      );
      await ctx.event({
        regarding: app.target,
        type: 'Normal',
        reason: r.action === 'created' ? 'PoolCreated' : 'PoolResized',
        message,
      });
    }
    if (short > 0) {
      await this.problem(
        ctx,
        app,
        'SubnetExhausted',
        `${w.kind} ${w.namespace}/${w.name}: Subnet "${o.subnet.metadata.name}" has no ${short} more free address(es) for IPPool "${name}" (wants ${o.want}); add addresses to the Subnet's spec.ips or free some`,
      );
    }
    if (stuck > 0) {
      this.waiting++;
      ctx.log.info({ pool: name, stuck }, 'pool shrink waits for addresses still held by claims');
    }
  }

  /**
   * The addresses claims of `network`/`family` hold: the store's, read once per pass, and the
   * cache's (a claim the cache learned after that read). Memoized per pass.
   */
  private async claimedIn(
    ctx: ControllerContext,
    state: IpamState,
    network: string,
    family: Family,
  ): Promise<IntervalSet> {
    const memoKey = `${network}/${family}`;
    const memo = this.claimedMemo.get(memoKey);
    if (memo) return memo;
    this.claimList ??= (await ctx.store.list<IPClaim>(CLAIM_PREFIX)).map((e) => e.value);
    const held: { first: bigint; last: bigint }[] = [];
    for (const c of this.claimList) {
      if (c.spec?.network !== network || c.spec.family !== family) continue;
      const v = compileAddr(c.spec.ip);
      if (v !== undefined) held.push({ first: v, last: v });
    }
    const out = IntervalSet.of(family, held).union(state.usedSet(network, family).toIntervalSet());
    this.claimedMemo.set(memoKey, out);
    return out;
  }

  /** Deletes the pools of applications that are gone, unless they asked to keep them. */
  private async reclaimPools(
    ctx: ControllerContext,
    cache: SharedCache,
    live: Map<string, App>,
  ): Promise<void> {
    const workloads = this.workloads;
    if (!workloads) return;
    for (const e of [...cache.ipam.state.pools.values()]) {
      const p = e.obj;
      const ann = p.metadata.annotations ?? {};
      const owner = ann[APP_POOL_ANNOTATION.app];
      const kind = p.metadata.labels?.[APP_LABEL.kind];
      if (!owner || !kind || p.metadata.deletionTimestamp) continue;
      const ns = p.metadata.labels?.[APP_LABEL.namespace];
      if (this.namespaces && (!ns || !this.namespaces.has(ns))) continue;
      if (ann[APP_POOL_ANNOTATION.reclaim] === 'false') continue;
      // Only when we can see that kind at all: an unserved kind is unknown, not gone.
      if (!workloads.has(kind as WorkloadKind)) continue;
      // Present (also when re-created under the same name: the pass above adopted the pool).
      if (live.has(owner)) continue;
      const name = p.metadata.name;
      const r = await mutate<IPPool>(ctx.store, `${POOL_PREFIX}${name}`, (cur) => {
        if (!cur || cur.metadata.deletionTimestamp) return cur;
        if (cur.metadata.annotations?.[APP_POOL_ANNOTATION.reclaim] === 'false') return cur;
        return undefined;
      });
      if (r.action === 'deleted') {
        // A pool with finalizers (the pool-in-use one) is only marked for deletion, at r.version:
        // removing it from the cache at that version would drop the watch's MODIFIED event for the
        // mark, and the finalizer reconciler would never see the pool to let it go.
        if ((p.metadata.finalizers ?? []).length === 0)
          cache.ipam.state.remove(`${POOL_PREFIX}${name}`, r.version);
        const [k, ns, n] = owner.split('/');
        ctx.log.info({ pool: name, app: owner }, 'deleted the pool of a deleted application');
        await ctx.event({
          regarding: {
            apiVersion: 'ipkeeper.io/v1alpha1',
            kind: 'IPPool',
            name,
            ...(p.metadata.uid ? { uid: p.metadata.uid } : {}),
          },
          type: 'Normal',
          reason: 'PoolDeleted',
          message: `${k} ${ns}/${n} is gone: deleted its application pool "${name}" (addresses still held are released with their pods first)`,
        });
      }
    }
  }

  /** Each Subnet's status: how many addresses it offers, which pools hold which of them. */
  private async writeSubnetStatus(
    ctx: ControllerContext,
    cache: SharedCache,
    subnets: Map<string, Subnet>,
  ): Promise<void> {
    const state = cache.ipam.state;
    for (const [name, subnet] of subnets) {
      // Scoped to some namespaces (tests on a shared cluster): only the Subnets they name.
      if (this.namespaces && !this.named.has(name)) continue;
      let offered: IntervalSet;
      try {
        offered = subnetAddresses(subnet);
      } catch {
        continue; // Invalid (written around validation): nothing to count.
      }
      const status = subnetStatus(state, subnet, offered);
      await mutate<Subnet>(ctx.store, `${SUBNET_PREFIX}${name}`, (cur) => {
        if (!cur) return cur;
        if (JSON.stringify(cur.status ?? {}) === JSON.stringify(status)) return cur;
        return { ...cur, status };
      });
    }
  }
}

/**
 * What a pool being grown must not take (`resize`'s `taken`): every other pool's addresses (`all`
 * minus the pool's own, `mine`) and every claimed address outside the pool — a VIP's from the
 * Subnet, or a claim left outside any pool. Claimed addresses inside the pool stay in it.
 */
export function carveTaken(all: IntervalSet, mine: IntervalSet, held: IntervalSet): IntervalSet {
  return all.union(held).difference(mine);
}

/**
 * A Subnet's status: `total` addresses it offers, `allocated` to its application pools (`pools`,
 * name → ranges), and `free` — in no pool of its network, not reserved, held by no claim (a VIP
 * from the Subnet holds its address outside every pool).
 * @throws NetError when the Subnet does not compile (written around validation).
 */
export function subnetStatus(
  state: IpamState,
  subnet: Subnet,
  offered: IntervalSet = subnetAddresses(subnet),
): NonNullable<Subnet['status']> {
  const network = subnet.spec.network ?? DEFAULT_NETWORK;
  const pools: Record<string, string[]> = {};
  let allocated = 0n;
  let taken = IntervalSet.empty(offered.family);
  for (const [pn, e] of state.pools) {
    if (e.compiled.network !== network || e.compiled.family !== offered.family) continue;
    const mine = e.compiled.allocatable.intersect(offered);
    if (mine.isEmpty()) continue;
    taken = taken.union(mine);
    if (e.obj.metadata.labels?.[APP_LABEL.subnet] !== undefined) {
      pools[pn] = mine.toStrings();
      allocated += mine.size();
    }
  }
  const total = offered.size();
  const free = offered
    .difference(taken)
    .difference(state.reserved(offered.family))
    .difference(state.usedSet(network, offered.family).toIntervalSet())
    .size();
  return { total: count(total), allocated: count(allocated), free: count(free), pools };
}

function count(n: bigint): number {
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

function compileAddr(ip: string): bigint | undefined {
  return tryParseAddr(ip)?.value;
}
