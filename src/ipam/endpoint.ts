/**
 * @module ipam/endpoint
 * The Endpoint record of a pod or VM (`endpoints/<namespace>/<name>`): its addresses per interface,
 * owner workload, node, container and retention. The engine calls this module at three points:
 *
 *   before an ADD allocates (`beforeAdd`): for a fixed pod (its top owner is a StatefulSet or a
 *     KubeVirt VM; or a bare pod marked `k8s.ksyun.com/pod-ip-fixed`) the endpoint left by its
 *     previous sandbox is read and each kept claim of the interface is re-attached to the new
 *     container (an update at the claim's version: container, owner uid, node) — unless the owner
 *     was recreated (new uid: every kept address is released), the address is now reserved
 *     (DESIGN invariant 5: released, never handed back), or its pool is no longer chosen for the
 *     pod (released; the pod moves to the new pools);
 *   after an ADD succeeded (`record`): one write of the endpoint, merged per interface;
 *   on DEL (`released`): a fixed endpoint keeps its claims and gets `releasedAt`; any other loses
 *     the interface, and is deleted with its last one.
 *
 * Every claim of a pod names its endpoint (`spec.endpoint`); a claim kept past DEL is marked
 * `spec.fixed`. A claim is only ever re-attached or released when it still names this endpoint and
 * is still marked — an address that moved on to another owner is never touched.
 *
 * Manual reclaim (`reclaimEndpoint`, `reclaimIp`: `ipkeeper reclaim`) deletes claims at the version
 * it read and refuses while a live pod uses them unless forced.
 *
 * Errors: IpamError INVALID_OBJECT (a bad `ipkeeper.io/ip-retention` annotation or reclaim argument),
 * NOT_READY (ADD: the pod of a fixed endpoint is not in the cluster view yet; retried), NOT_FOUND, ADDRESS_IN_USE_BY_LIVE_POD, ADDRESS_IN_USE, STORE_UNAVAILABLE (from reclaim; the ADD/DEL
 * paths leave StoreError to the engine).
 */
import { IpamError } from '../errors.ts';
import { StoreError, versionNewer, type Store, type Version, type Versioned } from '../store/store.ts';
import { mutate } from '../store/retry.ts';
import { NetError, parseAddr, type Family } from '../net/addr.ts';
import {
  API_VERSION,
  LABEL_PATTERN,
  NAME_PATTERN,
  type ClaimOwner,
  type Endpoint,
  type EndpointInterface,
  type IPClaim,
  type Route,
} from '../api/kinds.ts';
import { annotationValue } from '../api/annotations.ts';
import { excludedBecause, type FilterContext, type PoolChoice } from './choose.ts';
import type { ClusterView, OwnerRef, PodInfo } from './cluster-view.ts';
import { CLAIM_PREFIX, type HeldClaim, type IpamState } from './state.ts';
import {
  DEFAULT_POD_FIXED_RETENTION,
  DEFAULT_RETENTION,
  KCE_FIXED_ANNOTATION,
  RETENTION_ANNOTATION,
  parseRetention,
} from './retention.ts';

export const ENDPOINT_PREFIX = 'endpoints/';

type FixedKind = 'StatefulSet' | 'VirtualMachine' | 'Pod';

/** Who a pod is, for its endpoint. */
export interface EndpointIdentity {
  /** `endpoints/<namespace>/<name>` */
  key: string;
  /** `<namespace>/<name>`, as claims name it. */
  ref: string;
  namespace: string;
  /** The pod name, or the VM name for a virt-launcher pod. */
  name: string;
  podName: string;
  podUid?: string;
  /** The top controller. */
  owner?: OwnerRef;
  fixed?: FixedKind;
  /** The pod's `ipkeeper.io/ip-retention`, checked. */
  retention?: string;
}

/** What `beforeAdd` found, for `record`. */
export interface EndpointPlan {
  identity?: EndpointIdentity;
  /** Kept claims now attached to this ADD's container. */
  reattached: HeldClaim[];
  /** Kept claims released instead, and why (logged). */
  released: { ip: string; reason: string }[];
  /** Fields every claim this ADD makes carries. */
  marks?: { endpoint: string; fixed?: true };
  /** The owner changed: the endpoint's other interfaces belong to the old owner and are dropped. */
  replaceAll?: boolean;
  /** The endpoint as read (null: absent), so `record` can write once at its version. */
  read?: Versioned<Endpoint> | null;
  /** A pod that is not fixed, whose endpoint was not read yet: the engine goes on with `readPlain`. */
  plain?: boolean;
  /**
   * The endpoint read of `readPlain`, still in flight (it fills `read`, `released` and `replaceAll`).
   * `record` awaits it; an engine that fails before `record` awaits it too.
   */
  pending?: Promise<void>;
  /**
   * `record` creates the endpoint as new and reads it only when that finds one (`readPlain`, on a
   * store that cannot write the claims and the endpoint as one).
   */
  createFirst?: boolean;
}

export interface ReclaimedAddress {
  ip: string;
  network: string;
  claim: string;
}

/** `ipkeeper describe endpoint`: the record and the state of each listed claim. */
export interface EndpointDescription {
  endpoint: Endpoint;
  version: string;
  claims: {
    ip: string;
    claim: string;
    state: string;
    version?: string;
    containerId?: string;
    node?: string;
  }[];
}

/** The answer of a manual reclaim. */
export interface ReclaimReport {
  /** `<namespace>/<name>` of the endpoint involved, if any. */
  endpoint?: string;
  released: ReclaimedAddress[];
  /** Listed addresses left alone: already gone, or changed since they were read. */
  skipped: { ip: string; claim: string; reason: string }[];
  endpointDeleted: boolean;
  /** Set when --force overrode a live pod; says which. */
  forcedOver?: string;
}

interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface EndpointDeps {
  store: Store;
  state: IpamState;
  view: ClusterView;
  now: () => number;
  node: string;
  log: Logger;
  /** How many endpoints `remember` keeps; 0: none. */
  memory: number;
}

const VM_KINDS = new Set(['VirtualMachine', 'VirtualMachineInstance']);
/**
 * How many endpoints `Endpoints.remember` keeps by default (~100 bytes each): far more pods than a
 * node runs, so the cap only bounds what pods whose DEL went elsewhere leave behind.
 */
export const ENDPOINT_MEMORY = 10_000;
const LABEL_RE = new RegExp(LABEL_PATTERN);
const NAME_RE = new RegExp(NAME_PATTERN);

/**
 * Who the pod of a CNI request is. The view's owner chain may be the direct controller only or the
 * whole chain up to the top: the last element is the top controller either way; a virt-launcher
 * pod's VM is found by kind (VirtualMachine if known, else its VirtualMachineInstance, which KubeVirt
 * names after the VM), and so is a StatefulSet (also one an operator owns).
 * @returns undefined when the request is not for a pod, or names one Kubernetes could not have
 *   (no endpoint is kept).
 * @throws IpamError INVALID_OBJECT when the pod's retention annotation is malformed.
 */
export function identify(owner: ClaimOwner, pod: PodInfo | undefined): EndpointIdentity | undefined {
  if (owner.kind !== 'Pod' || !owner.namespace) return undefined;
  const owners = pod?.owners ?? [];
  const top = owners.at(-1);
  const vm =
    owners.find((o) => o.kind === 'VirtualMachine') ??
    owners.find((o) => o.kind === 'VirtualMachineInstance');
  let name = owner.name;
  if (vm) name = vm.name;
  // CNI args are free text in embedded mode: a name Kubernetes would refuse gets no record.
  if (!LABEL_RE.test(owner.namespace) || !NAME_RE.test(name) || name.length > 253) return undefined;
  let fixed: FixedKind | undefined;
  let ownerRef: OwnerRef | undefined = top;
  if (vm) {
    fixed = 'VirtualMachine';
    ownerRef = vm;
  } else if (owners.some((o) => o.kind === 'StatefulSet')) {
    // Also under an operator that owns the StatefulSet: the set names the pod and wants its ordinal.
    fixed = 'StatefulSet';
    ownerRef = owners.find((o) => o.kind === 'StatefulSet');
  } else if (pod?.annotations[KCE_FIXED_ANNOTATION] === 'true' && (!top || top.kind === 'Node')) {
    // KCE fixes StatefulSet pods (fixed anyway) and static pods (owned by their Node) by this mark.
    fixed = 'Pod';
  }
  // ipkeeper.io/ip-retention, else KCE's pod-ip-fixed ("true": forever, "false": 0), per the catalogue.
  const found = annotationValue(pod?.annotations, RETENTION_ANNOTATION);
  let retention: string | undefined;
  if (found) {
    parseRetention(found.value, `pod ${owner.namespace}/${owner.name} annotation ${found.name}`);
    retention = found.value.trim();
  }
  return {
    key: `${ENDPOINT_PREFIX}${owner.namespace}/${name}`,
    ref: `${owner.namespace}/${name}`,
    namespace: owner.namespace,
    name,
    podName: owner.name,
    ...(owner.uid ? { podUid: owner.uid } : {}),
    ...(ownerRef ? { owner: ownerRef } : {}),
    ...(fixed ? { fixed } : {}),
    ...(retention !== undefined ? { retention } : {}),
  };
}

/** Whether the endpoint was written for the same owner (not a recreated one) and the same kind. */
function sameOwner(ep: Endpoint, id: EndpointIdentity): boolean {
  if (ep.spec.fixed !== id.fixed) return false;
  const a = ep.spec.owner;
  const b = id.owner;
  if (!a || !b) return !a && !b;
  if (VM_KINDS.has(a.kind) && VM_KINDS.has(b.kind)) {
    // A VMI is recreated on every VM restart: only two VirtualMachine uids can tell a new VM.
    return (
      a.name === b.name &&
      !(a.kind === 'VirtualMachine' && b.kind === 'VirtualMachine' && a.uid && b.uid && a.uid !== b.uid)
    );
  }
  return a.kind === b.kind && a.name === b.name && !(a.uid && b.uid && a.uid !== b.uid);
}

function storeFailure(e: unknown): never {
  if (e instanceof StoreError) {
    throw new IpamError(e.retryable ? 'STORE_UNAVAILABLE' : 'INTERNAL', `store failed: ${e.message}`, {}, e);
  }
  throw e;
}

/** Longest first: `forever` beats any duration. */
function longest(a: string | undefined, b: string): string {
  if (a === undefined) return b;
  try {
    return parseRetention(b, 'pool') > parseRetention(a, 'pool') ? b : a;
  } catch {
    return a;
  }
}

export class Endpoints {
  private readonly d: EndpointDeps;
  /**
   * Endpoints this engine created together with their claims (`remember`), at the version written:
   * the DEL that empties one deletes it at that version without reading it first. The delete
   * checks the version, so an endpoint changed since (another interface, another writer) fails it
   * and the DEL goes the ordinary way, which reads.
   */
  private readonly written = new Map<string, { version: Version; containerId: string; ifName: string }>();
  constructor(deps: EndpointDeps) {
    this.d = deps;
  }

  /** Keeps the version of an endpoint just created with one interface (see `written`). */
  remember(key: string, endpoint: Endpoint, version: Version): void {
    const ifaces = endpoint.spec.interfaces ?? [];
    const only = ifaces[0];
    if (endpoint.spec.fixed || ifaces.length !== 1 || !only || this.d.memory <= 0) return;
    // Full (pods whose DEL went elsewhere): start again. Dropping the oldest one at a time costs a
    // walk over the holes deletes leave at the front of a Map, measured at ~5 µs per ADD when full.
    if (this.written.size >= this.d.memory) this.written.clear();
    this.written.set(key, { version, containerId: endpoint.spec.containerId ?? '', ifName: only.ifName });
  }

  // ---- ADD -------------------------------------------------------------------------------------

  /**
   * Identifies the pod and, for a fixed pod, hands its kept addresses on this interface back to the
   * new container (or releases the ones it may not have back). Families `held` already covers (an
   * ADD retried for the same container) are left as they are.
   * @throws IpamError INVALID_OBJECT (retention annotation), NOT_READY (a fixed endpoint's pod is not
   *   in the live view); StoreError.
   */
  async beforeAdd(
    req: {
      cniNetwork: string;
      containerId: string;
      ifName: string;
      owner: ClaimOwner;
      requestedIps?: string[];
    },
    ctx: FilterContext,
    choice: PoolChoice,
    held: HeldClaim[],
  ): Promise<EndpointPlan> {
    // The view's pod must be this one: a predecessor of the same name carries the old owners.
    const pod =
      ctx.pod && (!ctx.pod.uid || !req.owner.uid || ctx.pod.uid === req.owner.uid) ? ctx.pod : undefined;
    const id = identify(req.owner, pod);
    const plan: EndpointPlan = { reattached: [], released: [] };
    if (!id) return plan;
    plan.identity = id;
    plan.marks = { endpoint: id.ref, ...(id.fixed ? { fixed: true as const } : {}) };
    if (!id.fixed && (pod || !this.d.view.live)) {
      // Not fixed, and we know who the pod is: nothing of its endpoint comes back to it, so the
      // engine need not read it before allocating. It either creates the claims and the endpoint in
      // one `createMany` (a new pod: no endpoint yet), or calls `readPlain`, whose read runs while it
      // allocates. (An unknown pod may be a fixed pod we cannot recognise yet: that case reads
      // first, below, and may refuse with NOT_READY before allocating.)
      plan.plain = true;
      return plan;
    }
    const cur = await this.d.store.get<Endpoint>(id.key);
    plan.read = cur ?? null;
    const ep = cur?.value;
    // A VIP's addresses are bound by vip.ts, not handed back here.
    if (!ep?.spec?.fixed || ep.spec.fixed === 'VIP' || !Array.isArray(ep.spec.interfaces)) return plan;
    if (!pod && this.d.view.live) {
      // Without the pod's owners we cannot tell its StatefulSet (or VM) from a recreated one:
      // releasing on a guess would lose the fixed addresses for good. The runtime retries ADD.
      throw new IpamError(
        'NOT_READY',
        `pod ${req.owner.namespace}/${req.owner.name}${req.owner.uid ? ` (uid ${req.owner.uid})` : ''} is not known to this agent yet (neither its informer nor a direct read found it), and Endpoint ${id.ref} keeps fixed addresses that only its owner may have back; retry`,
        { endpoint: id.ref },
      );
    }
    const heldKeys = new Set(held.map((h) => h.key));
    if (!sameOwner(ep, id)) {
      // A recreated owner (or a pod that is no longer fixed the same way) starts afresh.
      await this.startAfresh(ep, id, req, held, plan);
      return plan;
    }
    const families = new Set<Family>(held.map((h) => h.claim.spec.family));
    const iface = ep.spec.interfaces.find((i) => i.ifName === req.ifName);
    for (const ip of iface?.ips ?? []) {
      if (families.has(ip.family) || heldKeys.has(ip.claim)) continue;
      const why = this.unusable(ip, req.requestedIps, ctx, choice);
      if (why) {
        if (await this.releaseKept(ip.claim, id.ref)) plan.released.push({ ip: ip.ip, reason: why });
        continue;
      }
      const h = await this.reattach(ip.claim, id.ref, req);
      if (h) {
        plan.reattached.push(h);
        families.add(h.claim.spec.family);
      }
    }
    this.logReleased(id, req, plan);
    if (plan.reattached.length > 0) {
      this.d.log.info(
        {
          event: 'reattach',
          endpoint: id.ref,
          fixed: id.fixed,
          containerId: req.containerId,
          ifName: req.ifName,
          ips: plan.reattached.map((h) => h.claim.spec.ip),
        },
        'fixed addresses handed back',
      );
    }
    return plan;
  }

  /**
   * The rest of `beforeAdd` for a `plain` plan, started while the engine allocates (`plan.pending`,
   * awaited by `record`): reads the endpoint into `plan.read` unless it is there already (from a
   * failed `createMany`). A fixed endpoint there belongs to a previous owner (sameOwner cannot hold
   * for a pod that is not fixed), so its kept addresses are released and the endpoint is rewritten
   * whole, as `beforeAdd` does for any pod.
   */
  readPlain(plan: EndpointPlan, req: { containerId: string; ifName: string }, held: HeldClaim[]): void {
    const id = plan.identity;
    if (!plan.plain || !id) return;
    if (plan.read === undefined && !this.d.store.createMany) {
      // Kubernetes: a new pod's ADD (most of them) has no endpoint yet, so `record` creates it
      // and reads only when one is there: one request instead of a read and a create. What the
      // read would settle (a previous owner's kept addresses) is settled then, as here.
      plan.createFirst = true;
      return;
    }
    const pending = this.settlePlain(id, req, held, plan);
    // Observed by `record` or the engine's error path; never an unhandled rejection meanwhile.
    pending.catch(() => undefined);
    plan.pending = pending;
  }

  private async settlePlain(
    id: EndpointIdentity,
    req: { containerId: string; ifName: string },
    held: HeldClaim[],
    plan: EndpointPlan,
  ): Promise<void> {
    const cur = plan.read !== undefined ? plan.read : await this.d.store.get<Endpoint>(id.key);
    plan.read = cur ?? null;
    const ep = cur?.value;
    if (!ep?.spec?.fixed || ep.spec.fixed === 'VIP' || !Array.isArray(ep.spec.interfaces)) return;
    await this.startAfresh(ep, id, req, held, plan);
  }

  /**
   * The endpoint belongs to a previous owner: releases the addresses kept for it (all but `held`)
   * and has the endpoint rewritten whole.
   */
  private async startAfresh(
    ep: Endpoint,
    id: EndpointIdentity,
    req: { containerId: string; ifName: string },
    held: HeldClaim[],
    plan: EndpointPlan,
  ): Promise<void> {
    const heldKeys = new Set(held.map((h) => h.key));
    const why = `the owner changed (${ownerText(ep.spec.owner)} -> ${ownerText(id.owner)})`;
    for (const i of ep.spec.interfaces) {
      for (const ip of i.ips ?? []) {
        if (heldKeys.has(ip.claim)) continue;
        if (await this.releaseKept(ip.claim, id.ref)) plan.released.push({ ip: ip.ip, reason: why });
      }
    }
    plan.replaceAll = true;
    this.logReleased(id, req, plan);
  }

  private logReleased(
    id: EndpointIdentity,
    req: { containerId: string; ifName: string },
    plan: EndpointPlan,
  ): void {
    if (plan.released.length === 0) return;
    this.d.log.info(
      {
        event: 'release-fixed',
        endpoint: id.ref,
        containerId: req.containerId,
        ifName: req.ifName,
        released: plan.released,
      },
      'kept addresses released instead of handed back',
    );
  }

  /** Why a kept address may not be handed back, or undefined when it may. */
  private unusable(
    ip: Endpoint['spec']['interfaces'][number]['ips'][number],
    requestedIps: string[] | undefined,
    ctx: FilterContext,
    choice: PoolChoice,
  ): string | undefined {
    let value: bigint;
    try {
      value = parseAddr(ip.ip).value;
    } catch {
      return `"${ip.ip}" is not an address`;
    }
    let requested = false;
    for (const r of requestedIps ?? []) {
      try {
        const a = parseAddr(r.split('/')[0] ?? r);
        if (a.family !== ip.family) continue;
        if (a.value !== value) return `the pod now asks for ${r}`;
        requested = true;
      } catch {
        // The engine refuses a malformed requested address with a message of its own.
      }
    }
    if (this.d.state.reserved(ip.family).contains(value)) {
      const by = [...this.d.state.reservations.entries()]
        .filter(([, e]) => e.sets[ip.family].contains(value))
        .map(([n]) => `"${n}"`);
      return `${ip.ip} is now reserved by ReservedIP ${by.join(', ')}`;
    }
    const pe = this.d.state.pools.get(ip.pool);
    if (!pe) return `pool "${ip.pool}" no longer exists`;
    const chosen = choice.families[ip.family] ?? [];
    // An address the pod asks for by name may come from any pool that admits the pod.
    if (!chosen.includes(ip.pool) && !requested) {
      return `pool "${ip.pool}" is no longer chosen for the pod (${choice.rule}: ${chosen.map((n) => `"${n}"`).join(', ') || 'none'})`;
    }
    if (!this.d.state.allowed(pe.compiled).contains(value))
      return `${ip.ip} is no longer in pool "${ip.pool}"`;
    // A disabled pool gives no *new* addresses; a kept one is not new.
    const why = excludedBecause({ ...pe.compiled, disabled: false }, ctx);
    if (why) return why;
    return undefined;
  }

  /** Attaches a kept claim to this request's container, at the claim's version. */
  private async reattach(
    key: string,
    ref: string,
    req: { cniNetwork: string; containerId: string; ifName: string; owner: ClaimOwner },
  ): Promise<HeldClaim | undefined> {
    if (!key.startsWith(CLAIM_PREFIX)) return undefined;
    const ours = (c: IPClaim): boolean =>
      c.spec.cniNetwork === req.cniNetwork &&
      c.spec.containerId === req.containerId &&
      c.spec.ifName === req.ifName;
    const r = await mutate<IPClaim>(this.d.store, key, (cur) => {
      if (!cur || cur.spec.endpoint !== ref || cur.spec.fixed !== true || ours(cur)) return cur;
      return {
        ...cur,
        spec: {
          ...cur.spec,
          owner: req.owner,
          cniNetwork: req.cniNetwork,
          containerId: req.containerId,
          ifName: req.ifName,
          node: this.d.node,
        },
      };
    });
    if (r.action === 'absent' || r.action === 'deleted') return undefined;
    this.d.state.put(key, r.value, r.version);
    return ours(r.value) ? this.d.state.claims.get(key) : undefined;
  }

  /** Deletes a kept claim that still belongs to `ref`; true when it did. */
  private async releaseKept(key: string, ref: string): Promise<boolean> {
    if (!key.startsWith(CLAIM_PREFIX)) return false;
    const r = await mutate<IPClaim>(this.d.store, key, (cur) =>
      cur && cur.spec.endpoint === ref && cur.spec.fixed === true ? undefined : cur,
    );
    if (r.action === 'deleted') this.d.state.remove(key, r.version);
    else if (r.action === 'unchanged') this.d.state.put(key, r.value, r.version);
    return r.action === 'deleted';
  }

  /**
   * Writes the endpoint after a successful ADD: this interface's addresses replace its entry; the
   * other interfaces stay when they are of the same sandbox or kept for a fixed pod.
   * @throws StoreError; IpamError CONFLICT when the endpoint kept changing.
   */
  async record(
    plan: EndpointPlan,
    req: { cniNetwork: string; containerId: string; ifName: string },
    held: HeldClaim[],
    /** From `endpointRouting` (routing.ts): off the default-route NIC, its table and that table's routes. */
    routing: { routes: Route[]; table?: number },
  ): Promise<void> {
    const id = plan.identity;
    if (!id) return;
    // About to be rewritten: a version kept for it would only fail the DEL's one write.
    this.written.delete(id.key);
    if (plan.pending) await plan.pending;
    const next = (cur: Endpoint | undefined): Endpoint => this.build(plan, req, held, routing, cur);
    if (plan.createFirst) {
      plan.createFirst = false;
      const c = await this.d.store.create(id.key, next(undefined));
      if (c.created) return;
      // There is one: settle it as `readPlain` would have, then rewrite it at the version found.
      plan.read = c.existing as Versioned<Endpoint>;
      await this.settlePlain(id, req, held, plan);
    }
    // One write at the version beforeAdd read (the common case); a conflict falls back to the loop.
    if (plan.read !== undefined) {
      const r = plan.read
        ? await this.d.store.update(id.key, next(plan.read.value), plan.read.version)
        : await this.d.store.create(id.key, next(undefined));
      if ('ok' in r ? r.ok : r.created) return;
    }
    await mutate<Endpoint>(this.d.store, id.key, next);
  }

  /**
   * The endpoint after this ADD, given what is stored (`cur`): this interface's addresses replace its
   * entry; the other interfaces stay when they are of the same sandbox or kept for a fixed pod.
   * Requires `plan.identity`.
   */
  build(
    plan: EndpointPlan,
    req: { cniNetwork: string; containerId: string; ifName: string },
    held: HeldClaim[],
    routing: { routes: Route[]; table?: number },
    cur: Endpoint | undefined,
  ): Endpoint {
    const id = plan.identity as EndpointIdentity;
    const { routes, table } = routing;
    const iface: EndpointInterface = {
      ifName: req.ifName,
      cniNetwork: req.cniNetwork,
      ips: held.map((h) => {
        const gw = this.d.state.pools.get(h.claim.spec.pool)?.compiled.gateway;
        return {
          ip: h.claim.spec.ip,
          family: h.claim.spec.family,
          pool: h.claim.spec.pool,
          network: h.claim.spec.network,
          claim: h.key,
          ...(gw ? { gateway: gw } : {}),
        };
      }),
      ...(routes.length > 0 ? { routes } : {}),
      ...(table !== undefined ? { table } : {}),
    };
    /** The pod's annotation, else the longest default of the pools of all its interfaces. */
    const retentionOf = (interfaces: EndpointInterface[]): string | undefined => {
      if (!id.fixed) return undefined;
      if (id.retention !== undefined) return id.retention;
      let r: string | undefined;
      for (const i of interfaces) {
        for (const ip of i.ips ?? []) {
          const d = this.d.state.pools.get(ip.pool)?.obj.spec.ipRetention;
          if (d !== undefined) r = longest(r, d);
        }
      }
      return r ?? (id.fixed === 'Pod' ? DEFAULT_POD_FIXED_RETENTION : DEFAULT_RETENTION);
    };
    const now = new Date(this.d.now()).toISOString();
    let others: EndpointInterface[] = [];
    if (cur && !plan.replaceAll && Array.isArray(cur.spec?.interfaces)) {
      const sameSandbox = cur.spec.containerId === req.containerId;
      // A fixed pod's other interfaces are still to be handed back by their own ADDs.
      if (sameSandbox || (cur.spec.fixed && id.fixed)) {
        others = cur.spec.interfaces.filter((i) => i.ifName !== req.ifName);
      }
    }
    const interfaces = [...others, iface].sort((a, b) => a.ifName.localeCompare(b.ifName));
    const retention = retentionOf(interfaces);
    return {
      apiVersion: API_VERSION,
      kind: 'Endpoint',
      metadata: {
        ...(cur?.metadata ?? {}),
        name: id.name,
        namespace: id.namespace,
        creationTimestamp: cur?.metadata.creationTimestamp ?? now,
      },
      spec: {
        ...(id.podUid ? { podUid: id.podUid } : {}),
        node: this.d.node,
        containerId: req.containerId,
        ...(id.owner ? { owner: id.owner } : {}),
        ...(id.fixed ? { fixed: id.fixed } : {}),
        ...(retention !== undefined ? { retention } : {}),
        interfaces,
        updatedAt: now,
      },
    };
  }

  // ---- DEL -------------------------------------------------------------------------------------

  /**
   * After DEL released (or, for kept claims, did not release) `held`: a fixed endpoint of this
   * container gets `releasedAt`; any other loses this interface, and goes with its last one. An
   * endpoint already rewritten by a newer container is left alone.
   * @throws StoreError; IpamError CONFLICT.
   */
  async released(req: { containerId: string; ifName: string }, held: HeldClaim[]): Promise<void> {
    const refs = endpointRefs(held);
    const kept = held.some((h) => h.claim.spec.fixed === true);
    const now = new Date(this.d.now()).toISOString();
    for (const ref of refs) {
      await mutate<Endpoint>(this.d.store, ENDPOINT_PREFIX + ref, (cur) => {
        if (!cur || cur.spec.containerId !== req.containerId) return cur;
        if (cur.spec.fixed && kept) {
          if (cur.spec.releasedAt) return cur;
          return { ...cur, spec: { ...cur.spec, releasedAt: now, updatedAt: now } };
        }
        const interfaces = (cur.spec.interfaces ?? []).filter((i) => i.ifName !== req.ifName);
        if (interfaces.length === 0) return undefined;
        return { ...cur, spec: { ...cur.spec, interfaces, updatedAt: now } };
      });
    }
  }

  /**
   * The endpoint this DEL takes away whole, as stored now: the one endpoint `held` names, not
   * fixed, of this container, with no interface left once this one goes — what `released` would
   * delete. Undefined in every other case (and for a fixed claim among `held`): `released` then
   * does what it must. The engine deletes it with the claims in one write (`Store.deleteMany`).
   * @throws StoreError
   */
  async emptiedBy(
    req: { containerId: string; ifName: string },
    held: HeldClaim[],
  ): Promise<{ key: string; version: Version } | undefined> {
    if (held.some((h) => h.claim.spec.fixed === true)) return undefined;
    const refs = endpointRefs(held);
    if (refs.size !== 1) return undefined;
    const key = ENDPOINT_PREFIX + [...refs][0];
    const known = this.written.get(key);
    if (known) {
      this.written.delete(key);
      if (known.containerId === req.containerId && known.ifName === req.ifName) {
        return { key, version: known.version };
      }
    }
    const cur = await this.d.store.get<Endpoint>(key);
    if (!cur || cur.value.spec.containerId !== req.containerId || cur.value.spec.fixed) return undefined;
    if ((cur.value.spec.interfaces ?? []).some((i) => i.ifName !== req.ifName)) return undefined;
    return { key, version: cur.version };
  }

  // ---- manual reclaim ------------------------------------------------------------------------

  /**
   * The agent's `POST /v1/reclaim` body: `{"endpoint": "NS/NAME"}` or `{"ip": "ADDRESS", "network"?}`,
   * with `"force": true` to override a live pod.
   * @throws IpamError INVALID_OBJECT for a malformed body (nothing is released), and what
   *   `reclaimEndpoint` / `reclaimIp` throw.
   */
  reclaim(body: unknown): Promise<ReclaimReport> {
    const b = (body ?? {}) as { endpoint?: unknown; ip?: unknown; network?: unknown; force?: unknown };
    const form =
      'body must be {"endpoint": "NAMESPACE/NAME"} or {"ip": "ADDRESS", "network": "NAME"}, with an optional "force": true';
    if (body === null || typeof body !== 'object' || (b.endpoint === undefined) === (b.ip === undefined)) {
      throw new IpamError('INVALID_OBJECT', form);
    }
    if (b.force !== undefined && typeof b.force !== 'boolean')
      throw new IpamError('INVALID_OBJECT', `force must be true or false; ${form}`);
    if (b.network !== undefined && typeof b.network !== 'string')
      throw new IpamError('INVALID_OBJECT', `network must be a string; ${form}`);
    const force = b.force === true;
    if (typeof b.endpoint === 'string') return this.reclaimEndpoint(b.endpoint, { force });
    if (typeof b.ip === 'string')
      return this.reclaimIp(b.ip, {
        force,
        ...(typeof b.network === 'string' ? { network: b.network } : {}),
      });
    throw new IpamError('INVALID_OBJECT', form);
  }

  /**
   * One endpoint with its claims as stored now, for `ipkeeper describe endpoint NS/NAME`.
   * @throws IpamError NOT_FOUND, STORE_UNAVAILABLE.
   */
  async describe(ref: string): Promise<EndpointDescription> {
    try {
      const e = await this.d.store.get<Endpoint>(ENDPOINT_PREFIX + ref);
      if (!e)
        throw new IpamError('NOT_FOUND', `Endpoint ${ref} not found; list them with ipkeeper get endpoints`, {
          endpoint: ref,
        });
      const ips = (e.value.spec.interfaces ?? []).flatMap((i) => i.ips ?? []);
      const claims = await Promise.all(ips.map((ip) => this.d.store.get<IPClaim>(ip.claim)));
      return {
        endpoint: e.value,
        version: e.version,
        claims: ips.map((ip, i) => {
          const c = claims[i];
          const state = !c
            ? 'released'
            : c.value.spec.endpoint === ref
              ? 'held'
              : `held by ${ownerOf(c.value)}`;
          return {
            ip: ip.ip,
            claim: ip.claim,
            state,
            ...(c
              ? { version: c.version, containerId: c.value.spec.containerId, node: c.value.spec.node }
              : {}),
          };
        }),
      };
    } catch (err) {
      return storeFailure(err);
    }
  }

  /** Why the endpoint's pod counts as live (no CNI DEL yet; in Kubernetes mode, the pod exists), or undefined. */
  private async liveness(ep: Endpoint, podName: string): Promise<string | undefined> {
    const s = ep.spec;
    const ns = ep.metadata.namespace ?? 'default';
    if (s.releasedAt) return undefined;
    const where = `container ${(s.containerId ?? '?').slice(0, 12)} on node ${s.node ?? '?'}`;
    if (!this.d.view.live) return `pod ${ns}/${podName} has had no CNI DEL since its ADD (${where})`;
    if (!this.d.view.pod(ns, podName)) await this.d.view.refreshPod?.(ns, podName);
    const p = this.d.view.pod(ns, podName);
    if (!p) return undefined;
    return `pod ${ns}/${podName} exists and uses it (${where})`;
  }

  private refuse(what: string, live: string, ips: string[]): IpamError {
    return new IpamError(
      'ADDRESS_IN_USE_BY_LIVE_POD',
      `not reclaiming ${what} (${ips.join(', ') || 'no addresses'}): ${live}. Delete the pod first, or pass --force to release the addresses anyway (the pod keeps using them until it restarts, and another pod may get them meanwhile)`,
      { live, ips },
    );
  }

  /**
   * `ipkeeper reclaim endpoint NS/NAME`: deletes each listed claim at the version read (a claim
   * that changed meanwhile is skipped, never freed), then the endpoint.
   * @throws IpamError INVALID_OBJECT (bad NS/NAME), NOT_FOUND, ADDRESS_IN_USE_BY_LIVE_POD (unless
   *   `force`), STORE_UNAVAILABLE.
   */
  async reclaimEndpoint(ref: string, opts: { force?: boolean } = {}): Promise<ReclaimReport> {
    const m = /^([^/]+)\/([^/]+)$/.exec(ref);
    if (!m || !LABEL_RE.test(m[1] as string) || !NAME_RE.test(m[2] as string)) {
      throw new IpamError(
        'INVALID_OBJECT',
        `endpoint "${ref}" must be NAMESPACE/NAME (the pod's, or the VM's), e.g. default/web-0; list them with ipkeeper get endpoints`,
        { endpoint: ref },
      );
    }
    try {
      const key = ENDPOINT_PREFIX + ref;
      const e = await this.d.store.get<Endpoint>(key);
      if (!e) {
        throw new IpamError('NOT_FOUND', `Endpoint ${ref} not found; list them with ipkeeper get endpoints`, {
          endpoint: ref,
        });
      }
      const listed = (e.value.spec.interfaces ?? []).flatMap((i) => i.ips ?? []);
      const claims = await Promise.all(listed.map((ip) => this.d.store.get<IPClaim>(ip.claim)));
      const podName =
        claims.find((c) => c?.value.spec.endpoint === ref)?.value.spec.owner.name ?? (m[2] as string);
      const live = await this.liveness(e.value, podName);
      if (live && !opts.force)
        throw this.refuse(
          `Endpoint ${ref}`,
          live,
          listed.map((i) => i.ip),
        );
      const report = await releaseEndpoint(this.d.store, e, {
        claims,
        podName,
        onDeleted: (k, v) => this.d.state.remove(k, v),
      });
      if (live) report.forcedOver = live;
      this.d.log.info(
        {
          event: 'reclaim',
          endpoint: ref,
          released: report.released.map((r) => r.ip),
          forced: live !== undefined,
        },
        'reclaimed by hand',
      );
      return report;
    } catch (err) {
      return storeFailure(err);
    }
  }

  /**
   * `ipkeeper reclaim ip ADDRESS [--network N]`: deletes the claim of one address at the version read
   * and drops the address from its endpoint.
   * @throws IpamError INVALID_OBJECT (bad address; held in several networks and none named),
   *   NOT_FOUND, ADDRESS_IN_USE_BY_LIVE_POD / ADDRESS_IN_USE (unless `force`), STORE_UNAVAILABLE.
   */
  async reclaimIp(ip: string, opts: { network?: string; force?: boolean } = {}): Promise<ReclaimReport> {
    let addr;
    try {
      addr = parseAddr(ip);
    } catch (e) {
      if (!(e instanceof NetError)) throw e;
      throw new IpamError('INVALID_OBJECT', `reclaim ip: ${e.message}`, { ip }, e);
    }
    const hits = [...this.d.state.claims.values()].filter(
      (h) =>
        h.claim.spec.family === addr.family &&
        h.value === addr.value &&
        (!opts.network || h.claim.spec.network === opts.network),
    );
    const inNet = opts.network ? ` in network "${opts.network}"` : '';
    if (hits.length === 0)
      throw new IpamError(
        'NOT_FOUND',
        `no claim holds ${ip}${inNet}; nothing to reclaim (ipkeeper get ipclaims)`,
        { ip },
      );
    if (hits.length > 1) {
      throw new IpamError(
        'INVALID_OBJECT',
        `${ip} is held in networks ${hits.map((h) => `"${h.claim.spec.network}"`).join(', ')}; pass --network to say which`,
        { ip },
      );
    }
    const key = (hits[0] as HeldClaim).key;
    try {
      const c = await this.d.store.get<IPClaim>(key);
      if (!c)
        throw new IpamError('NOT_FOUND', `no claim holds ${ip}${inNet} (it was released meanwhile)`, { ip });
      const s = c.value.spec;
      const ref =
        s.endpoint ??
        (s.owner.kind === 'Pod' && s.owner.namespace ? `${s.owner.namespace}/${s.owner.name}` : undefined);
      const ep = ref ? await this.d.store.get<Endpoint>(ENDPOINT_PREFIX + ref) : undefined;
      let live: string | undefined;
      if (s.owner.kind !== 'Pod') {
        if (!opts.force) {
          throw new IpamError(
            'ADDRESS_IN_USE',
            `not reclaiming ${ip}: it is held by ${s.owner.kind} ${s.owner.namespace ? `${s.owner.namespace}/` : ''}${s.owner.name}, not a pod; delete that object instead, or pass --force`,
            { ip, owner: s.owner },
          );
        }
        live = `held by ${s.owner.kind} ${s.owner.name}`;
      } else if (ep) {
        live = await this.liveness(ep.value, s.owner.name);
      } else if (s.fixed !== true) {
        // A pod claim without its endpoint: only the cluster can say whether the pod is there.
        live = await this.liveness(
          {
            apiVersion: API_VERSION,
            kind: 'Endpoint',
            metadata: { name: s.owner.name, namespace: s.owner.namespace ?? 'default' },
            spec: {
              interfaces: [],
              ...(s.containerId ? { containerId: s.containerId } : {}),
              ...(s.node ? { node: s.node } : {}),
            },
          },
          s.owner.name,
        );
      }
      if (live && !opts.force && s.owner.kind === 'Pod') throw this.refuse(ip, live, [ip]);
      const report: ReclaimReport = {
        ...(ref ? { endpoint: ref } : {}),
        released: [],
        skipped: [],
        endpointDeleted: false,
      };
      if (live) report.forcedOver = live;
      const r = await this.d.store.delete(key, c.version);
      if (!r.ok) {
        report.skipped.push({ ip, claim: key, reason: 'changed since it was read; run the reclaim again' });
        return report;
      }
      this.d.state.remove(key, r.version);
      report.released.push({ ip: s.ip, network: s.network, claim: key });
      if (ep && ref) {
        const out = await mutate<Endpoint>(this.d.store, ENDPOINT_PREFIX + ref, (cur) => {
          if (!cur) return cur;
          const interfaces = (cur.spec.interfaces ?? [])
            .map((i) => ({ ...i, ips: (i.ips ?? []).filter((x) => x.claim !== key) }))
            .filter((i) => i.ips.length > 0);
          if (interfaces.length === 0) return undefined;
          return {
            ...cur,
            spec: { ...cur.spec, interfaces, updatedAt: new Date(this.d.now()).toISOString() },
          };
        });
        report.endpointDeleted = out.action === 'deleted';
      }
      this.d.log.info(
        { event: 'reclaim', ip, endpoint: ref, forced: live !== undefined },
        'reclaimed by hand',
      );
      return report;
    } catch (err) {
      return storeFailure(err);
    }
  }
}

/**
 * Releases an Endpoint read at `e.version`: each listed claim that still names it (or, for a claim
 * older than `spec.endpoint`, its pod) and has not changed since the endpoint was read is deleted at
 * its version, then the endpoint at `e.version`. Store versions increase across the whole store, so
 * a claim newer than the endpoint was re-attached by an ADD meanwhile (a new pod uses it): skipped,
 * as is everything that changed — never freed under a live owner (DESIGN invariant 3). For the
 * controller's retention GC and for `ipkeeper reclaim endpoint`.
 * @param opts.claims the listed claims, if already read (in `interfaces[].ips[]` order).
 * @param opts.onDeleted told of each deleted claim key and the deletion's version (cache upkeep).
 * @returns what was released and skipped; `endpointDeleted` false when it changed meanwhile.
 * @throws StoreError from the store (what was deleted before stays deleted; a retry goes on).
 */
export async function releaseEndpoint(
  store: Store,
  e: Versioned<Endpoint>,
  opts: {
    claims?: (Versioned<IPClaim> | undefined)[];
    podName?: string;
    onDeleted?: (key: string, version: Version) => void;
  } = {},
): Promise<ReclaimReport> {
  const ns = e.value.metadata.namespace ?? 'default';
  const ref = `${ns}/${e.value.metadata.name}`;
  const listed = (e.value.spec.interfaces ?? []).flatMap((i) => i.ips ?? []);
  const claims = opts.claims ?? (await Promise.all(listed.map((ip) => store.get<IPClaim>(ip.claim))));
  const podName = opts.podName ?? e.value.metadata.name;
  const report: ReclaimReport = { endpoint: ref, released: [], skipped: [], endpointDeleted: false };
  for (const [i, ip] of listed.entries()) {
    const c = claims[i];
    if (!c) {
      report.skipped.push({ ip: ip.ip, claim: ip.claim, reason: 'already released' });
      continue;
    }
    const s = c.value.spec;
    const mine =
      s.endpoint === ref ||
      (s.endpoint === undefined && s.owner.namespace === ns && s.owner.name === podName);
    if (!mine) {
      report.skipped.push({ ip: ip.ip, claim: ip.claim, reason: `held by ${ownerOf(c.value)} now` });
      continue;
    }
    if (versionNewer(c.version, e.version)) {
      report.skipped.push({
        ip: ip.ip,
        claim: ip.claim,
        reason: `handed to container ${(s.containerId ?? '?').slice(0, 12)} on node ${s.node ?? '?'} after Endpoint ${ref} was read; run the reclaim again`,
      });
      continue;
    }
    const r = await store.delete(ip.claim, c.version);
    if (r.ok) {
      opts.onDeleted?.(ip.claim, r.version);
      report.released.push({ ip: ip.ip, network: ip.network, claim: ip.claim });
    } else {
      report.skipped.push({
        ip: ip.ip,
        claim: ip.claim,
        reason: `changed since it was read (now ${r.current ? `version ${r.current.version}` : 'gone'}); run the reclaim again`,
      });
    }
  }
  const d = await store.delete(e.key, e.version);
  report.endpointDeleted = d.ok;
  return report;
}

function ownerText(o: OwnerRef | undefined): string {
  return o ? `${o.kind} ${o.name}${o.uid ? ` uid ${o.uid}` : ''}` : 'no controller';
}

function ownerOf(c: IPClaim): string {
  const o = c.spec.owner;
  return `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
}

/** The endpoints `held` names; a hand-edited claim's malformed name is left out (DEL must not fail on a key the store refuses). */
function endpointRefs(held: HeldClaim[]): Set<string> {
  const refs = new Set<string>();
  for (const h of held) {
    const ref = h.claim.spec.endpoint;
    if (ref && /^[a-z0-9][-a-z0-9]*\/[a-z0-9][-a-z0-9.]*$/.test(ref)) refs.add(ref);
  }
  return refs;
}
