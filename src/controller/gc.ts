/**
 * @module controller/gc
 * The cluster's leak GC: releases the addresses (IPClaims owned by a Pod) of pods that no longer
 * need them, when the CNI DEL that should have released them never came (node lost, kubelet
 * crashed, pod force-deleted, runtime bug):
 *
 *   pod gone                          (or recreated under the same name with another uid)
 *   pod finished                      phase Succeeded or Failed
 *   pod terminating past its grace    now > deletionTimestamp + deletionGracePeriodSeconds, as
 *                                     Spiderpool counts it (the API server already put the grace
 *                                     into deletionTimestamp, so this waits the grace twice: a
 *                                     kubelet that is merely slow still runs its DEL first);
 *                                     switchable for pods on Ready and on NotReady nodes
 *
 * An address that belongs to a fixed Endpoint (StatefulSet / VM / KCE-fixed pod, `spec.fixed`) is
 * released only when `reclaimDecision` (src/ipam/retention.ts) says so — never that of a valid
 * StatefulSet/VM pod, never within its retention. When the decision says the pod vanished without a
 * DEL, the endpoint is stamped `releasedAt` so its retention starts counting.
 *
 * The safe reclaim rules (src/ipam/reclaim.ts, DESIGN invariant 3): a claim first becomes a
 * *candidate* at the version it was judged; only after `graceMs` at that same version is it re-read
 * from the store and its pod re-read from the API server (not the informer), and only if both
 * still say "leaked" is it deleted — with the version read as the precondition, so an address that
 * was meanwhile released and given to another pod is never freed. Claims not owned by a Pod (VIP,
 * Node) are not this loop's.
 *
 * Passes: a full scan every `scanIntervalMs`, plus event-driven ones — a pod deleted, finished or
 * starting to terminate kicks a pass now and another when its grace (and the candidate grace) has
 * run out. Every release is a Kubernetes event `IPReclaimed` on the pod, or on the pool when the pod
 * is gone, a log line, and a `gc` event on the controller's pool map page (src/controller/cache.ts).
 */
import type { Endpoint, IPClaim, IPPool } from '../api/kinds.ts';
import { API_VERSION } from '../api/kinds.ts';
import { mutate } from '../store/retry.ts';
import { ENDPOINT_PREFIX } from '../ipam/endpoint.ts';
import { reclaimDecision, type ReclaimFacts } from '../ipam/retention.ts';
import type { WorkloadCache, WorkloadKind } from '../cluster/workloads.ts';
import type { ControllerContext, Reconciler } from './context.ts';
import { acquireCache, controllerEvents, type SharedCache } from './cache.ts';
import { acquirePods, acquireWorkloads, type RawPod, type SharedPods } from './shared.ts';
import { kubeJson } from './kube.ts';
import { countGcRelease, countReconcile, type GcReleaseReason } from './metrics.ts';
import { PassLoop } from './pass-loop.ts';

/** A full scan this often, whatever the events said. */
export const GC_SCAN_INTERVAL_MS = 60_000;
/** A candidate must stay one, at the same version, this long before it is released. */
export const GC_GRACE_MS = 30_000;
const RESTART_FIRST_MS = 500;
const RESTART_CAP_MS = 30_000;

export interface GcOptions {
  scanIntervalMs?: number;
  graceMs?: number;
  /** Release the addresses of pods terminating past their grace on Ready nodes (default true). */
  terminatingOnReadyNode?: boolean;
  /** ... and on NotReady (or unknown) nodes, whose kubelet cannot run the DEL (default true). */
  terminatingOnNotReadyNode?: boolean;
  /** React to pod events (default true); false leaves only the periodic scan (and `scan()`). */
  events?: boolean;
  /** Only claims of these networks (uniqueness domains); undefined = all. */
  networks?: string[];
  workloads?: WorkloadCache;
}

/** What the GC knows of a pod. */
export interface PodFacts {
  uid?: string;
  phase?: string;
  nodeName?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
}

/**
 * Why a pod's (non-fixed) claim is leaked, or undefined when the pod still needs it. Pure.
 * `nodeReady` is undefined when the node is unknown (counted as NotReady).
 */
export function podLeakReason(
  claim: IPClaim,
  pod: PodFacts | undefined,
  nodeReady: boolean | undefined,
  now: number,
  opts: { terminatingOnReadyNode: boolean; terminatingOnNotReadyNode: boolean },
): string | undefined {
  const o = claim.spec.owner;
  const who = `pod ${o.namespace}/${o.name}`;
  if (!pod) return `${who} is gone`;
  if (o.uid && pod.uid && o.uid !== pod.uid) return `${who} was recreated (uid ${o.uid} is now ${pod.uid})`;
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return `${who} has finished (phase ${pod.phase})`;
  if (pod.deletionTimestamp) {
    const at = Date.parse(pod.deletionTimestamp);
    const deadline = at + (pod.deletionGracePeriodSeconds ?? 0) * 1000;
    if (Number.isNaN(at) || now <= deadline) return undefined;
    const ready = nodeReady === true;
    if (ready && !opts.terminatingOnReadyNode) return undefined;
    if (!ready && !opts.terminatingOnNotReadyNode) return undefined;
    return `${who} is terminating past its grace period (deleted at ${pod.deletionTimestamp}, grace ${pod.deletionGracePeriodSeconds ?? 0} s) on ${ready ? 'Ready' : 'NotReady'} node ${pod.nodeName ?? '(none)'}`;
  }
  return undefined;
}

/**
 * The metric label of a release: the same checks as `podLeakReason`, in its order; a fixed
 * endpoint's address goes only when its retention says so. Pure.
 */
export function gcReleaseReason(claim: IPClaim, pod: PodFacts | undefined, fixed: boolean): GcReleaseReason {
  if (fixed) return 'fixed_owner_gone';
  const uid = claim.spec.owner.uid;
  if (!pod) return 'pod_gone';
  if (uid && pod.uid && uid !== pod.uid) return 'pod_recreated';
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return 'pod_finished';
  return 'pod_terminating';
}

interface Candidate {
  version: string;
  since: number;
  reason: string;
}

/** A claim whose grace is over, to be re-checked and released. */
export interface Due {
  key: string;
  version: string;
}

export interface GcReport {
  candidates: number;
  released: { ip: string; pool: string; pod: string; reason: string }[];
  /** Due claims left alone on the re-check (changed, or no longer leaked). */
  skipped: { key: string; why: string }[];
}

type RawNode = {
  metadata?: { name?: string };
  status?: { conditions?: { type?: string; status?: string }[] };
};

function podFacts(p: RawPod): PodFacts {
  const m = p.metadata ?? {};
  return {
    ...(m.uid ? { uid: m.uid } : {}),
    ...(p.status?.phase ? { phase: p.status.phase } : {}),
    ...(p.spec?.nodeName ? { nodeName: p.spec.nodeName } : {}),
    ...(m.deletionTimestamp ? { deletionTimestamp: new Date(m.deletionTimestamp).toISOString() } : {}),
    ...(m.deletionGracePeriodSeconds !== undefined
      ? { deletionGracePeriodSeconds: m.deletionGracePeriodSeconds }
      : {}),
  };
}

function nodeReady(n: RawNode): boolean {
  return (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

export class GcReconciler implements Reconciler {
  readonly name = 'gc';
  private readonly o: Required<Omit<GcOptions, 'workloads' | 'networks'>>;
  private readonly networks: ReadonlySet<string> | undefined;
  private readonly given: WorkloadCache | undefined;
  private workloads: WorkloadCache | undefined;
  private ctx: ControllerContext | undefined;
  private cache: SharedCache | undefined;
  private loop: PassLoop | undefined;
  private interval: NodeJS.Timeout | undefined;
  private wake: { at: number; timer: NodeJS.Timeout } | undefined;
  private readonly stoppers: (() => Promise<void>)[] = [];
  private readonly pods = new Map<string, PodFacts>();
  private readonly nodes = new Map<string, boolean>();
  private readonly candidates = new Map<string, Candidate>();
  private stopped = false;

  constructor(opts: GcOptions = {}) {
    this.given = opts.workloads;
    this.networks = opts.networks ? new Set(opts.networks) : undefined;
    this.o = {
      scanIntervalMs: opts.scanIntervalMs ?? GC_SCAN_INTERVAL_MS,
      graceMs: opts.graceMs ?? GC_GRACE_MS,
      terminatingOnReadyNode: opts.terminatingOnReadyNode ?? true,
      terminatingOnNotReadyNode: opts.terminatingOnNotReadyNode ?? true,
      events: opts.events ?? true,
    };
  }

  /** @throws StoreError when the store cannot be listed; Error when the informers cannot start. */
  async start(ctx: ControllerContext): Promise<void> {
    this.ctx = ctx;
    this.stopped = false;
    this.cache = await acquireCache(ctx);
    // Shared with the other reconcilers of this term (src/controller/shared.ts).
    this.workloads = this.given ?? (await acquireWorkloads(ctx));
    this.loop = new PassLoop({
      name: this.name,
      delayMs: 200,
      log: ctx.log,
      run: async () => {
        await this.scan();
      },
      onResult: (r) => countReconcile(ctx, this.name, r),
    });
    await Promise.all([this.watchPods(ctx), this.watchNodes(ctx)]);
    if (this.o.scanIntervalMs > 0) {
      this.interval = setInterval(() => this.loop?.kick(), this.o.scanIntervalMs);
      this.interval.unref();
      this.loop.kick();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.interval) clearInterval(this.interval);
    if (this.wake) clearTimeout(this.wake.timer);
    this.wake = undefined;
    await this.loop?.stop();
    await Promise.all(this.stoppers.splice(0).map((s) => s()));
    if (!this.given) await this.workloads?.stop();
    this.workloads = undefined;
    await this.cache?.release();
    this.cache = undefined;
  }

  /** Wakes a pass at `at` (wall clock), keeping only the earliest pending wake. */
  private wakeAt(at: number): void {
    if (this.stopped) return;
    if (this.wake && this.wake.at <= at) return;
    if (this.wake) clearTimeout(this.wake.timer);
    const timer = setTimeout(
      () => {
        this.wake = undefined;
        this.loop?.kick();
      },
      Math.max(0, at - Date.now()),
    );
    timer.unref();
    this.wake = { at, timer };
  }

  /** After a pod event: a pass now (new candidates) and one when they are due. */
  private podChanged(p: PodFacts | undefined): void {
    if (!this.o.events || this.stopped) return;
    this.loop?.kick();
    let at = Date.now() + this.o.graceMs + 50;
    if (p?.deletionTimestamp) {
      const deadline = Date.parse(p.deletionTimestamp) + (p.deletionGracePeriodSeconds ?? 0) * 1000;
      // First when the pod's grace is over (it becomes a candidate), then the candidate's grace.
      this.wakeAt(deadline + 50);
      at = deadline + this.o.graceMs + 100;
    }
    this.wakeAt(at);
  }

  private async informer<T>(
    ctx: ControllerContext,
    path: string,
    list: () => Promise<{ items: T[] }>,
    on: (type: 'add' | 'update' | 'delete', o: T) => void,
  ): Promise<void> {
    const k8s = await import('@kubernetes/client-node');
    let own = false;
    let delay = RESTART_FIRST_MS;
    let timer: NodeJS.Timeout | undefined;
    let synced = false;
    let firstError: unknown;
    const lw = new k8s.ListWatch(path, new k8s.Watch(ctx.kc), list as never, false);
    lw.on('add', (o) => on('add', o as T));
    lw.on('update', (o) => on('update', o as T));
    lw.on('delete', (o) => on('delete', o as T));
    lw.on('error', (err?: unknown) => {
      if (own || this.stopped) return;
      if (!synced) {
        firstError = err;
        return;
      }
      // ListWatch does not restart after an error; we do, with backoff (as src/cluster/workloads.ts).
      ctx.log.warn({ err: String(err), resource: path, retryMs: delay }, 'gc informer failed; restarting');
      timer = setTimeout(() => {
        timer = undefined;
        if (own || this.stopped) return;
        lw.start().catch(() => {
          // Reported through the 'error' callback, which retries.
        });
      }, delay);
      timer.unref();
      delay = Math.min(delay * 2, RESTART_CAP_MS);
    });
    await lw.start();
    if (firstError !== undefined) {
      own = true;
      await lw.stop();
      throw new Error(`listing ${path} failed: ${String(firstError)}`, { cause: firstError });
    }
    synced = true;
    this.stoppers.push(async () => {
      own = true;
      if (timer) clearTimeout(timer);
      await lw.stop();
    });
  }

  private async watchPods(ctx: ControllerContext): Promise<void> {
    // The pod informer is shared with the VIP reconciler (src/controller/shared.ts).
    const pods: SharedPods = await acquirePods(ctx);
    this.stoppers.push(() => pods.release());
    pods.on((type, p) => {
      const m = p.metadata;
      if (!m?.namespace || !m.name) return;
      const key = `${m.namespace}/${m.name}`;
      if (type === 'delete') {
        // A delete event for an older pod of this name must not drop a newer one.
        const cur = this.pods.get(key);
        if (!cur || !m.uid || cur.uid === m.uid) this.pods.delete(key);
        this.podChanged(undefined);
        return;
      }
      const f = podFacts(p);
      const before = this.pods.get(key);
      this.pods.set(key, f);
      const interesting =
        f.phase === 'Succeeded' ||
        f.phase === 'Failed' ||
        f.deletionTimestamp !== undefined ||
        (before?.uid !== undefined && before.uid !== f.uid);
      if (
        type === 'update' &&
        interesting &&
        (before?.phase !== f.phase ||
          before?.deletionTimestamp !== f.deletionTimestamp ||
          before?.uid !== f.uid)
      ) {
        this.podChanged(f);
      }
    });
  }

  private async watchNodes(ctx: ControllerContext): Promise<void> {
    const k8s = await import('@kubernetes/client-node');
    const core = ctx.kc.makeApiClient(k8s.CoreV1Api);
    await this.informer<RawNode>(
      ctx,
      '/api/v1/nodes',
      () => core.listNode() as never,
      (type, n) => {
        const name = n.metadata?.name;
        if (!name) return;
        if (type === 'delete') this.nodes.delete(name);
        else this.nodes.set(name, nodeReady(n));
      },
    );
  }

  /** What the pod informer holds of a pod (tests, and operators' debugging), or undefined. */
  podSeen(namespace: string, name: string): PodFacts | undefined {
    return this.pods.get(`${namespace}/${name}`);
  }

  /** The facts `reclaimDecision` needs about a fixed endpoint's owner; undefined when unknown. */
  private ownerFacts(ep: Endpoint): ReclaimFacts['owner'] {
    const o = ep.spec.owner;
    const w = this.workloads;
    if (!o || !w || !w.has(o.kind as WorkloadKind)) return undefined;
    const got = w.get(o.kind as WorkloadKind, ep.metadata.namespace ?? 'default', o.name);
    if (!got) return { exists: false };
    return { exists: true, uid: got.uid, ...(got.replicas !== undefined ? { replicas: got.replicas } : {}) };
  }

  /**
   * Why the claim is leaked now, or undefined; for a fixed endpoint also whether to stamp
   * `releasedAt`. `pod` and `ep` are the facts to judge by (informer, or fresh on the re-check).
   */
  private verdict(
    claim: IPClaim,
    pod: PodFacts | undefined,
    ep: Endpoint | undefined,
    now: number,
  ): { reason?: string; markReleased?: boolean } {
    if (ep?.spec.fixed) {
      const d = reclaimDecision(ep, {
        podExists: pod !== undefined,
        ...(pod?.uid ? { podUid: pod.uid } : {}),
        ...(this.ownerFacts(ep) ? { owner: this.ownerFacts(ep) } : {}),
        now,
      });
      if (d.reclaim) return { reason: d.reason };
      return d.markReleased ? { markReleased: true } : {};
    }
    // A claim kept for a fixed endpoint that no longer exists (reclaimed by hand, meanwhile) falls
    // through to the pod rules: its pod is gone, so it is released.
    const reason = podLeakReason(
      claim,
      pod,
      pod?.nodeName ? this.nodes.get(pod.nodeName) : undefined,
      now,
      this.o,
    );
    return reason ? { reason } : {};
  }

  private endpointOf(claim: IPClaim, eps: Map<string, Endpoint>): Endpoint | undefined {
    const s = claim.spec;
    const ref = s.endpoint ?? (s.owner.namespace ? `${s.owner.namespace}/${s.owner.name}` : undefined);
    return ref ? eps.get(ref) : undefined;
  }

  /**
   * Phase 1 of a pass: judges every pod-owned claim in the cache, notes new candidates and returns
   * those whose grace is over (at the version they were judged).
   */
  async judge(): Promise<Due[]> {
    const ctx = this.ctx;
    const cache = this.cache;
    if (!ctx || !cache) return [];
    if (!cache.ipam.ready) throw new Error('the cache is re-listing after a watch reset');
    const now = ctx.now();
    // Endpoints are read only in a pass that has a claim the pod rules call leaked: most passes
    // (every pod event brings one) find none and cost no request.
    let eps: Map<string, Endpoint> | undefined;
    const endpoints = async (): Promise<Map<string, Endpoint>> =>
      (eps ??= new Map(
        (await ctx.store.list<Endpoint>(ENDPOINT_PREFIX)).map((e) => [
          `${e.value.metadata.namespace ?? 'default'}/${e.value.metadata.name}`,
          e.value,
        ]),
      ));
    const seen = new Set<string>();
    const due: Due[] = [];
    const stamp = new Set<string>();
    for (const h of [...cache.ipam.state.claims.values()]) {
      const c = h.claim;
      const o = c.spec.owner;
      if (o.kind !== 'Pod' || !o.namespace) continue;
      if (this.networks && !this.networks.has(c.spec.network)) continue;
      const pod = this.pods.get(`${o.namespace}/${o.name}`);
      const nodeUp = pod?.nodeName ? this.nodes.get(pod.nodeName) : undefined;
      // A pod the pod rules keep is kept whatever its endpoint says (a fixed endpoint keeps even
      // more); only a leaked-looking claim needs its endpoint's word.
      if (!podLeakReason(c, pod, nodeUp, now, this.o)) continue;
      const ep = this.endpointOf(c, await endpoints());
      const v = this.verdict(c, pod, ep, now);
      if (v.markReleased && ep) stamp.add(`${ep.metadata.namespace ?? 'default'}/${ep.metadata.name}`);
      if (!v.reason) continue;
      seen.add(h.key);
      const cand = this.candidates.get(h.key);
      if (!cand || cand.version !== h.version) {
        this.candidates.set(h.key, { version: h.version, since: now, reason: v.reason });
        ctx.log.debug({ claim: h.key, reason: v.reason }, 'gc candidate');
      } else if (now - cand.since >= this.o.graceMs) {
        due.push({ key: h.key, version: h.version });
      }
    }
    for (const k of this.candidates.keys()) if (!seen.has(k)) this.candidates.delete(k);
    for (const ref of stamp) await this.markReleased(ctx, ref, now);
    return due;
  }

  /** The pod vanished without a DEL: its fixed endpoint's retention starts now. */
  private async markReleased(ctx: ControllerContext, ref: string, now: number): Promise<void> {
    const at = new Date(now).toISOString();
    const r = await mutate<Endpoint>(ctx.store, ENDPOINT_PREFIX + ref, (cur) => {
      if (!cur || cur.spec.releasedAt) return cur;
      return { ...cur, spec: { ...cur.spec, releasedAt: at, updatedAt: at } };
    });
    if (r.action === 'updated')
      ctx.log.info(
        { endpoint: ref, releasedAt: at },
        'pod of a fixed endpoint is gone without a CNI DEL; its retention starts now',
      );
  }

  /** A pod as the API server has it now (not the informer), or undefined when it does not exist. */
  private async freshPod(ctx: ControllerContext, ns: string, name: string): Promise<PodFacts | undefined> {
    const r = await kubeJson(
      ctx.kc,
      'GET',
      `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`,
    );
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`reading pod ${ns}/${name}: HTTP ${r.status}`);
    return podFacts(r.body as RawPod);
  }

  /**
   * Phase 2: re-reads each due claim from the store and its pod from the API server, and deletes
   * the claim at the version it was judged — a claim that changed (released and reused, re-attached)
   * is left alone.
   */
  async releaseDue(due: Due[]): Promise<GcReport> {
    const ctx = this.ctx;
    const report: GcReport = { candidates: this.candidates.size, released: [], skipped: [] };
    if (!ctx) return report;
    for (const d of due) {
      this.candidates.delete(d.key);
      const fresh = await ctx.store.get<IPClaim>(d.key);
      if (!fresh || fresh.version !== d.version) {
        report.skipped.push({
          key: d.key,
          why: fresh ? `changed (version ${d.version} is now ${fresh.version})` : 'already released',
        });
        continue;
      }
      const c = fresh.value;
      const o = c.spec.owner;
      const pod = await this.freshPod(ctx, o.namespace ?? 'default', o.name);
      const epRef = c.spec.endpoint ?? `${o.namespace}/${o.name}`;
      const ep = (await ctx.store.get<Endpoint>(ENDPOINT_PREFIX + epRef))?.value;
      const v = this.verdict(c, pod, ep, ctx.now());
      if (!v.reason) {
        report.skipped.push({ key: d.key, why: 'no longer leaked' });
        continue;
      }
      // The page's event is the `gc` one `announce` writes, not the `release` the watch would make.
      const done = this.cache?.ownDelete(d.key);
      let r: Awaited<ReturnType<typeof ctx.store.delete>> | undefined;
      try {
        r = await ctx.store.delete(d.key, fresh.version);
      } finally {
        done?.(r?.ok === true);
      }
      if (!r.ok) {
        report.skipped.push({ key: d.key, why: 'changed between the re-check and the delete' });
        continue;
      }
      this.cache?.ipam.state.remove(d.key, r.version);
      await this.dropFromEndpoint(ctx, epRef, d.key, o.uid);
      report.released.push({
        ip: c.spec.ip,
        pool: c.spec.pool,
        pod: `${o.namespace}/${o.name}`,
        reason: v.reason,
      });
      countGcRelease(ctx, gcReleaseReason(c, pod, Boolean(ep?.spec.fixed)));
      await this.announce(ctx, c, pod, v.reason);
    }
    report.candidates = this.candidates.size;
    return report;
  }

  /** Removes a released claim from its endpoint; the endpoint goes with its last address. */
  private async dropFromEndpoint(
    ctx: ControllerContext,
    ref: string,
    claimKey: string,
    podUid: string | undefined,
  ): Promise<void> {
    await mutate<Endpoint>(ctx.store, ENDPOINT_PREFIX + ref, (cur) => {
      if (!cur) return cur;
      // An endpoint rewritten by a newer pod of the same name (another uid) is not ours to change.
      if (!cur.spec.fixed && podUid && cur.spec.podUid && cur.spec.podUid !== podUid) return cur;
      const listed = (cur.spec.interfaces ?? []).some((i) => (i.ips ?? []).some((x) => x.claim === claimKey));
      if (!listed) return cur;
      const interfaces = (cur.spec.interfaces ?? [])
        .map((i) => ({ ...i, ips: (i.ips ?? []).filter((x) => x.claim !== claimKey) }))
        .filter((i) => i.ips.length > 0);
      if (interfaces.length === 0) return undefined;
      return { ...cur, spec: { ...cur.spec, interfaces, updatedAt: new Date(ctx.now()).toISOString() } };
    });
  }

  private async announce(
    ctx: ControllerContext,
    c: IPClaim,
    pod: PodFacts | undefined,
    reason: string,
  ): Promise<void> {
    const o = c.spec.owner;
    const message = `released ${c.spec.ip} (pool ${c.spec.pool}${c.spec.ifName ? `, interface ${c.spec.ifName}` : ''}${c.spec.node ? `, node ${c.spec.node}` : ''}) of pod ${o.namespace}/${o.name}: ${reason}`;
    ctx.log.info(
      { event: 'gc', ip: c.spec.ip, pool: c.spec.pool, pod: `${o.namespace}/${o.name}`, reason },
      'reclaimed a leaked address',
    );
    controllerEvents(ctx).push({
      kind: 'gc',
      message: `GC ${message}`,
      network: c.spec.cniNetwork ?? c.spec.network,
      pod: `${o.namespace}/${o.name}`,
      ...(c.spec.ifName ? { ifName: c.spec.ifName } : {}),
      ...(c.spec.node ? { node: c.spec.node } : {}),
      ips: [c.spec.ip],
      pools: [c.spec.pool],
    });
    let regarding;
    if (pod) {
      regarding = {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: o.namespace ?? 'default',
        name: o.name,
        ...(pod.uid ? { uid: pod.uid } : {}),
      };
    } else {
      const p = this.cache?.ipam.state.pools.get(c.spec.pool)?.obj as IPPool | undefined;
      regarding = {
        apiVersion: API_VERSION,
        kind: 'IPPool',
        name: c.spec.pool,
        ...(p?.metadata.uid ? { uid: p.metadata.uid } : {}),
      };
    }
    await ctx.event({ regarding, type: 'Normal', reason: 'IPReclaimed', message });
  }

  /** One full pass: judge, then release what is due. */
  async scan(): Promise<GcReport> {
    const due = await this.judge();
    const report = await this.releaseDue(due);
    // Candidates not yet due: come back when the first of them is.
    if (this.candidates.size > 0 && this.o.events && this.ctx) {
      let first = Infinity;
      for (const c of this.candidates.values()) first = Math.min(first, c.since);
      this.wakeAt(Date.now() + Math.max(0, first + this.o.graceMs - this.ctx.now()) + 50);
    }
    return report;
  }
}
