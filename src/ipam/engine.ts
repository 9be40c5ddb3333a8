/**
 * @module ipam/engine
 * Allocation and release. The engine proposes addresses from its cache (`IpamState`) and makes each
 * one real with a single create-if-absent of the address's claim in the store: exactly one owner
 * wins an address, whatever the cache believed (DESIGN invariant 1). No allocation rewrites a pool
 * or any shared object (invariant 2); release deletes a claim only at the version it read
 * (invariant 3); ADD is idempotent per network + container id + interface, DEL always succeeds on
 * what is not there, and a multi-address ADD that fails half-way deletes what it made (invariant 4);
 * reserved addresses are subtracted before any proposal (invariant 5).
 *
 * Errors: `IpamError` with POOL_EXHAUSTED, NO_POOL, POOL_NOT_FOUND, ADDRESS_RESERVED, ADDRESS_IN_USE,
 * ADDRESS_NOT_IN_POOL, INVALID_CONFIG, NOT_FOUND, NOT_READY, STORE_UNAVAILABLE.
 */
import { IpamError } from '../errors.ts';
import {
  StoreError,
  versionNewer,
  type Store,
  type StoredText,
  type Versioned,
  type WatchEvent,
  type Watcher,
} from '../store/store.ts';
import { readClaimsCache, writeClaimsCache, type CacheRead } from './claims-cache.ts';
import { decodeValue } from '../store/codec.ts';
import { addrKey, formatValue, parseAddr, type Family } from '../net/addr.ts';
import { nextFree } from '../net/used-set.ts';
import type { IntervalSet } from '../net/interval-set.ts';
import {
  API_VERSION,
  type ClaimOwner,
  type Endpoint,
  type IPClaim,
  type Route,
  type Subnet,
} from '../api/kinds.ts';
import type { IpamResult, ResultIp } from '../cni/protocol.ts';
import { choosePools, excludedBecause, type FilterContext, type PoolChoice } from './choose.ts';
import { EMPTY_VIEW, type ClusterView } from './cluster-view.ts';
import { ENDPOINT_MEMORY, Endpoints, type EndpointPlan } from './endpoint.ts';
import {
  bindVip,
  claimSubnet,
  compileSubnet,
  gcVipBindings,
  SUBNET_KEY_PREFIX,
  unbindVip,
  vipBound,
  vipRequested,
  type VipDeps,
} from './vip.ts';
import { mergeRequested, requestedByAnnotation } from './requested.ts';
import { defaultRouteNic, endpointRouting, interfaceRouting, type InterfaceRouting } from './routing.ts';
import {
  CLAIM_PREFIX,
  IpamState,
  LazyClaim,
  POOL_PREFIX,
  RESERVED_PREFIX,
  attachmentKey,
  type HeldClaim,
} from './state.ts';
import type { CompiledPool } from './pools.ts';

export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
const silent: Logger = { info() {}, warn() {}, error() {} };

/** How many times `addNew` proposes before it leaves a busy pool to the ordinary path. */
const FAST_PATH_ATTEMPTS = 4;
/** How long one step of parsing the claims cache's claims may hold the event loop. */
const PARSE_SLICE_MS = 5;
/** How many lost create races one family of one ADD tolerates before it gives up (busy store). */
export const MAX_RACES_PER_FAMILY = 64;
/** CNI GC leaves claims younger than this alone: their ADD may still be in flight. */
export const GC_MIN_AGE_MS = 60_000;
export const DEFAULT_ROUTE_NIC = 'eth0';

export interface AllocateRequest {
  /** The CNI network configuration's name. */
  cniNetwork: string;
  containerId: string;
  ifName: string;
  owner: ClaimOwner;
  /** Pools from the CNI config. */
  configPools?: { ipv4?: string[]; ipv6?: string[] };
  /** Exact addresses asked for (CNI `ips` capability, `IP=` arg). */
  requestedIps?: string[];
  /** Routes from the CNI config, added to every result. */
  extraRoutes?: Route[];
  /** The interface that gets the default route (`eth0` unless told). */
  defaultRouteNic?: string;
  /** Set by the engine from the pod's Endpoint (`endpoint.ts`): copied onto every claim it makes. */
  claimMarks?: { endpoint: string; fixed?: true };
  /** The VIP whose address the pod uses (embedded mode's stand-in for `ipkeeper.io/vip`; vip.ts). */
  vip?: string;
}

export interface ReleaseRequest {
  cniNetwork: string;
  containerId: string;
  ifName: string;
}

export interface EngineOptions {
  store: Store;
  node: string;
  clock?: Clock;
  random?: () => number;
  log?: Logger;
  gcMinAgeMs?: number;
  /** Pods, namespaces and nodes (Kubernetes mode); embedded mode knows none. */
  view?: ClusterView;
  /**
   * The claims cache file (src/ipam/claims-cache.ts): read at `start`, written at `stop` and, while
   * running, every `claimsCacheIntervalMs` when the claims changed. Used only with a store that
   * has `watchFrom` and `identity` (kubernetes, etcd).
   */
  claimsCache?: string;
  /**
   * How often a running engine rewrites its claims cache when the claims changed (a checkpoint,
   * what a restart after a crash reads); 0: only at `stop`. Default `CLAIMS_CACHE_INTERVAL_MS`.
   */
  claimsCacheIntervalMs?: number;
  /**
   * How many endpoints the engine keeps the version of, having created them with their claims, so
   * the DEL that empties one writes without reading it first (`Endpoints.remember`); 0: none, every
   * such DEL reads. Default `ENDPOINT_MEMORY`.
   */
  endpointMemory?: number;
}

/**
 * Default checkpoint interval of the claims cache: well inside the history a watch can resume from.
 * The Kubernetes API server's watch cache (v1.20) keeps ~75 s of events under steady churn:
 * measured on the test API server at 20 IPClaim events/s, a watch from a revision 71 s old resumed
 * and one 81 s old got 410 (then the agent lists everything, as without a file). A file at most
 * 30 s old, plus the restart's delay, stays inside it; etcd keeps history until its compaction. A
 * checkpoint of 100k claims costs ~0.2–0.3 s of CPU in 5 ms slices (docs/BENCHMARKS.md, restart),
 * so under churn at that scale ~1% of a CPU; none while nothing changes.
 */
export const CLAIMS_CACHE_INTERVAL_MS = 30_000;

export interface PoolUsage {
  name: string;
  family: Family;
  network: string;
  subnet: string;
  total: number;
  used: number;
  reserved: number;
  free: number;
  claims: number;
  default: boolean;
  disabled: boolean;
}

const NS = (f: Family): string => (f === 4 ? 'IPv4' : 'IPv6');

/** Counters the agent exports as metrics; they only ever grow. */
export interface EngineStats {
  /** Creates that lost to another owner of the same address (the cache was behind). */
  racesLost: number;
  /** Store calls that failed (the request was answered "try again"). */
  storeErrors: number;
  /** Store calls whose outcome was unknown (remembered and read back on the next request). */
  uncertainWrites: number;
  /** Claims released by CNI GC. */
  gcReleased: number;
}

export class Ipam {
  readonly state = new IpamState();
  readonly node: string;
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly gcMinAgeMs: number;
  readonly view: ClusterView;
  /** The pods' Endpoint records: fixed IPs handed back, retention, manual reclaim. */
  readonly endpoints: Endpoints;
  readonly stats: EngineStats = { racesLost: 0, storeErrors: 0, uncertainWrites: 0, gcReleased: 0 };
  private readonly watchers: Watcher[] = [];
  private readonly cursors = new Map<string, bigint>();
  /** Claim creates of this agent in flight, per pool (see `startOf`). */
  private readonly inflight = new Map<string, number>();
  /** Claim keys whose create had an unknown outcome, per attachment: checked on the next ADD/DEL. */
  private readonly uncertain = new Map<string, Set<string>>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private started = false;
  private resyncing: Promise<void> | undefined;
  private readonly claimsCache: string | undefined;
  /** The store's identity, once read (the claims cache is used only with one). */
  private storeIdentity: string | undefined;
  /**
   * The newest revision among the claims the load read and the claim events the watch delivered:
   * the cache holds every change up to it (the engine's own writes, put as answered, can be newer).
   * Kept only with a claims cache.
   */
  private claimsRevision: string | undefined;
  /** The claims cache's revision when the claims came from it, until a resync lists them all. */
  private fileRevision: string | undefined;
  /** Goes up at every resync: a background parse of the claims an earlier load read stops there. */
  private loads = 0;
  /** Claims from the file that an ADD has read back from the store (see `heldBy`). */
  private readonly verified = new Set<string>();
  private readonly claimsCacheIntervalMs: number;
  private checkpointTimer: NodeJS.Timeout | undefined;
  /** The claims cache write in progress (a checkpoint), if any. */
  private writing: Promise<void> | undefined;
  /** The watch of the claims (its `caughtUp` moves the claims' revision while the claims are quiet). */
  private claimsWatcher: Watcher | undefined;
  /** What the claims cache holds: the claims as of this count of changes, at this revision. */
  private cacheHolds: { changes: number; revision: string } | undefined;

  constructor(opts: EngineOptions) {
    this.store = opts.store;
    this.node = opts.node;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? silent;
    this.gcMinAgeMs = opts.gcMinAgeMs ?? GC_MIN_AGE_MS;
    this.view = opts.view ?? EMPTY_VIEW;
    this.claimsCache = opts.claimsCache;
    this.claimsCacheIntervalMs = opts.claimsCacheIntervalMs ?? CLAIMS_CACHE_INTERVAL_MS;
    this.endpoints = new Endpoints({
      store: this.store,
      state: this.state,
      view: this.view,
      now: () => this.clock.now(),
      node: this.node,
      log: this.log,
      memory: opts.endpointMemory ?? ENDPOINT_MEMORY,
    });
  }

  /** What the view knows of the request's pod, namespace and this node. */
  private context(req: { cniNetwork: string; owner?: ClaimOwner }): FilterContext {
    const ns = req.owner?.namespace;
    const pod = ns && req.owner?.kind === 'Pod' ? this.view.pod(ns, req.owner.name) : undefined;
    const namespace = ns ? this.view.namespace(ns) : undefined;
    const node = this.view.node(this.node);
    return {
      cniNetwork: req.cniNetwork,
      nodeName: this.node,
      ...(ns ? { podNamespace: ns } : {}),
      ...(pod ? { pod } : {}),
      ...(namespace ? { namespace } : {}),
      ...(node ? { node } : {}),
      live: this.view.live,
    };
  }

  get ready(): boolean {
    return this.started && this.resyncing === undefined;
  }

  /**
   * Where the claims held came from: `claims cache` while they are the file's and the changes since
   * (a start from the claims cache), `store` after a start or a resync that listed them all.
   */
  get claimsSource(): 'claims cache' | 'store' {
    return this.fileRevision !== undefined ? 'claims cache' : 'store';
  }

  /**
   * Loads pools, reservations and claims and keeps them current. Watches start before the list so
   * no change between the two is lost; the cache orders both by version.
   * @throws StoreError when the store cannot be read.
   */
  async start(): Promise<void> {
    const cached = await this.readClaimsCache();
    if (cached) {
      // Into the cache before any event: a watch that resets at once (a revision the server does
      // not have) then lists everything over them.
      for (const c of cached.claims) this.state.putLazy(c);
      this.fileRevision = this.claimsRevision = cached.revision;
      this.cacheHolds = { changes: this.state.claims.changes, revision: cached.revision };
    }
    const track = this.tracksRevision;
    for (const prefix of [POOL_PREFIX, RESERVED_PREFIX, CLAIM_PREFIX]) {
      const onEvent = (ev: WatchEvent<unknown>): void => {
        if (track && prefix === CLAIM_PREFIX) this.sawClaims(ev.version);
        // Our own writes come back as events the cache already holds: dropped by version before
        // their value is touched (a backend may parse it lazily).
        if (ev.type === 'put') {
          if (this.state.holds(ev.key, ev.version)) return;
          this.state.put(ev.key, ev.value, ev.version);
        } else this.state.remove(ev.key, ev.version);
      };
      const onReset = (): void => void this.resync();
      const w =
        cached && prefix === CLAIM_PREFIX && this.store.watchFrom
          ? this.store.watchFrom(prefix, cached.revision, onEvent, onReset)
          : this.store.watch(prefix, onEvent, onReset);
      if (prefix === CLAIM_PREFIX) this.claimsWatcher = w;
      this.watchers.push(w);
    }
    await this.load(cached ? [POOL_PREFIX, RESERVED_PREFIX] : [POOL_PREFIX, RESERVED_PREFIX, CLAIM_PREFIX]);
    this.started = true;
    this.parseLazy(cached ? 'claims cache' : 'store');
    if (this.tracksRevision && this.claimsCacheIntervalMs > 0) {
      this.checkpointTimer = setInterval(() => this.checkpoint(), this.claimsCacheIntervalMs);
      this.checkpointTimer.unref();
    }
  }

  /**
   * Rewrites the claims cache while serving, in 5 ms slices, when the claims or their revision
   * moved since it was written: the file a restart after a crash (no clean stop) reads. Skipped
   * while loading or resyncing, and while the last write is still going.
   */
  private checkpoint(): void {
    if (this.writing || !this.ready) return;
    const w = this.writeClaimsCache(PARSE_SLICE_MS).finally(() => {
      if (this.writing === w) this.writing = undefined;
    });
    this.writing = w;
  }

  /**
   * Parses the claims the cache holds as JSON text (`LazyClaim`: read from the claims cache, or by
   * the store's `scanText`), a slice at a time between other work, so that the first pass over
   * every claim (a DEL's VIP bindings, the reclaimer, the pool page) does not parse them all at
   * once. Stops at a resync (a new load, parsed by a pass of its own).
   */
  private parseLazy(from: 'claims cache' | 'store'): void {
    const loads = this.loads;
    const t0 = performance.now();
    const it = this.state.claims.values();
    let n = 0;
    const step = (): void => {
      if (this.loads !== loads) return;
      const until = performance.now() + PARSE_SLICE_MS;
      for (;;) {
        const r = it.next();
        if (r.done) {
          if (n > 0) {
            this.log.info(
              { claims: n, ms: Math.round(performance.now() - t0) },
              `claims from the ${from} parsed`,
            );
          }
          return;
        }
        if (r.value instanceof LazyClaim && r.value.unparsed) {
          void r.value.claim;
          n++;
        }
        if ((n & 63) === 0 && performance.now() >= until) break;
      }
      setImmediate(step);
    };
    setImmediate(step);
  }

  /** Whether the claims' revision is kept (for a claims cache this store can resume from). */
  private get tracksRevision(): boolean {
    return this.claimsCache !== undefined && this.storeIdentity !== undefined;
  }

  private sawClaims(version: string): void {
    if (this.claimsRevision === undefined || versionNewer(version, this.claimsRevision)) {
      this.claimsRevision = version;
    }
  }

  /**
   * The claims cache, when this engine has one, its store can resume a watch, and the file is
   * this store's and sound; otherwise undefined, with the reason logged.
   */
  private async readClaimsCache(): Promise<Extract<CacheRead, { ok: true }> | undefined> {
    const path = this.claimsCache;
    if (path === undefined) return undefined;
    if (!this.store.watchFrom || !this.store.identity) {
      this.log.info(
        { claimsCache: path, store: this.store.backend },
        'claims cache not used: this store cannot resume a watch from a revision (sqlite and memory read their claims quickly)',
      );
      return undefined;
    }
    try {
      this.storeIdentity = await this.store.identity();
    } catch (e) {
      this.log.warn(
        { claimsCache: path, err: String(e) },
        'claims cache not used: the store cannot name its cluster',
      );
      return undefined;
    }
    const t0 = performance.now();
    const read = readClaimsCache(path, this.storeIdentity);
    if (!read.ok) {
      this.log.info({ claimsCache: path, reason: read.reason }, 'claims cache not used; listing every claim');
      return undefined;
    }
    this.log.info(
      {
        claimsCache: path,
        claims: read.claims.length,
        revision: read.revision,
        ms: Math.round(performance.now() - t0),
      },
      'claims read from the claims cache; watching the changes since its revision',
    );
    return read;
  }

  /**
   * Writes the claims cache from a snapshot of the claims and their revision (at `stop`, after the
   * agent has stopped taking requests, and at checkpoints). Not while loading or resyncing: the
   * cache is then not whole; not when the file already holds these claims at this revision.
   */
  private async writeClaimsCache(sliceMs?: number): Promise<void> {
    const path = this.claimsCache;
    const identity = this.storeIdentity;
    // A quiet prefix's watch still moves on (etcd's progress notifications): a file whose revision
    // is recent stays one the store can resume from after a compaction.
    const caughtUp = this.claimsWatcher?.caughtUp;
    if (caughtUp !== undefined && this.ready && this.tracksRevision) this.sawClaims(caughtUp);
    const revision = this.claimsRevision;
    if (path === undefined || identity === undefined || revision === undefined) return;
    if (!this.ready) {
      this.log.info({ claimsCache: path }, 'claims cache not written: the claims were still loading');
      return;
    }
    const changes = this.state.claims.changes;
    if (this.cacheHolds?.changes === changes && this.cacheHolds.revision === revision) return;
    const claims = Array.from(this.state.claims.values());
    const t0 = performance.now();
    try {
      const w = await writeClaimsCache(path, identity, revision, claims, {
        ...(sliceMs !== undefined ? { sliceMs } : {}),
      });
      this.cacheHolds = { changes, revision };
      this.log.info(
        {
          claimsCache: path,
          claims: w.count,
          bytes: w.bytes,
          revision,
          ms: Math.round(performance.now() - t0),
        },
        sliceMs === undefined ? 'claims cache written' : 'claims cache checkpoint written',
      );
    } catch (e) {
      this.log.warn(
        { claimsCache: path, err: String(e) },
        'claims cache not written; the next start lists every claim',
      );
    }
  }

  /**
   * Reads pools, reservations and claims at once, each into the cache as it arrives (page by page
   * where the store can `scan`: an agent's start then parses one page while etcd serves the next).
   * The order does not matter: the cache orders by version, and the watches started first. Every
   * read settles before a failure is reported, so none of a failed load lands after a resync's
   * `clear`.
   */
  private async load(prefixes = [POOL_PREFIX, RESERVED_PREFIX, CLAIM_PREFIX]): Promise<void> {
    const track = this.tracksRevision;
    const put = (entries: Versioned[]): void => {
      for (const e of entries) {
        if (track && e.key.startsWith(CLAIM_PREFIX)) this.sawClaims(e.version);
        this.state.put(e.key, e.value, e.version);
      }
    };
    // Claims as stored text where the store hands it over: each indexed from its digest and kept
    // as text (`LazyClaim`), parsed after the start (`parseLazy`); a text the digest reader does
    // not take is parsed here, as `scan` would have.
    const putText = (entries: StoredText[]): void => {
      for (const e of entries) {
        if (track) this.sawClaims(e.version);
        this.state.putStored(e, this.decodeText);
      }
    };
    const reads = await Promise.allSettled(
      prefixes.map(async (prefix) => {
        if (prefix === CLAIM_PREFIX && this.store.scanText) await this.store.scanText(prefix, putText);
        else if (this.store.scan) await this.store.scan(prefix, put);
        else put(await this.store.list(prefix));
      }),
    );
    for (const r of reads) if (r.status === 'rejected') throw r.reason;
  }

  /** A stored text's value, as the store's `scan` would have decoded it. */
  private readonly decodeText = (e: StoredText): unknown => {
    try {
      return decodeValue(e.key, e.bytes.toString('utf8', e.start, e.end));
    } catch (cause) {
      throw new StoreError(
        `${this.store.backend} key "${e.key}" holds a value that is not JSON (${e.end - e.start} bytes)`,
        { retryable: false, cause },
      );
    }
  };

  /** After a watch reset: forget and re-list. Allocation waits for it. */
  resync(): Promise<void> {
    this.resyncing ??= (async () => {
      for (;;) {
        try {
          this.loads++;
          this.state.clear();
          this.claimsRevision = this.fileRevision = undefined;
          this.verified.clear();
          await this.load();
          this.parseLazy('store');
          return;
        } catch (e) {
          this.log.warn({ err: String(e) }, 'resync failed; retrying');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    })().finally(() => {
      this.resyncing = undefined;
    });
    return this.resyncing;
  }

  /**
   * Stops watching; writes the claims cache when there is one and it is behind (after a
   * checkpoint in progress). Call after the last request.
   */
  async stop(): Promise<void> {
    for (const w of this.watchers.splice(0)) w.close();
    clearInterval(this.checkpointTimer);
    await this.writing;
    await this.writeClaimsCache();
  }

  private vipDeps(): VipDeps {
    return { store: this.store, state: this.state, clock: this.clock, node: this.node };
  }

  /** Runs `fn` after every earlier call with the same key has finished. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return next;
  }

  private ensureReady(): Promise<void> | void {
    if (!this.started) throw new IpamError('NOT_READY', 'the agent is still loading its store; retry');
    return this.resyncing;
  }

  // ---- ADD -------------------------------------------------------------------------------------

  /**
   * Gives the attachment one address per chosen family (all or nothing), or returns what it holds.
   * @throws IpamError (see the module comment); StoreError failures become STORE_UNAVAILABLE.
   */
  add(req: AllocateRequest): Promise<IpamResult> {
    const ak = attachmentKey(req.cniNetwork, req.containerId, req.ifName);
    return this.serial(ak, async () => {
      await this.ensureReady();
      return this.wrapStore(() => this.addLocked(req, ak));
    });
  }

  private async wrapStore<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof StoreError) {
        this.stats.storeErrors++;
        throw new IpamError(
          e.retryable ? 'STORE_UNAVAILABLE' : 'INTERNAL',
          `store (${this.store.backend}) failed: ${e.message}`,
          {},
          e,
        );
      }
      throw e;
    }
  }

  private async addLocked(req: AllocateRequest, ak: string): Promise<IpamResult> {
    const held = await this.heldBy(req, ak, true);
    const o = req.owner;
    const seen = o.kind === 'Pod' && o.namespace ? this.view.pod(o.namespace, o.name) : undefined;
    // A pod of that name with another uid is its predecessor (a recreated StatefulSet pod): stale.
    if (
      this.view.live &&
      o.kind === 'Pod' &&
      o.namespace &&
      (!seen || (o.uid && seen.uid && seen.uid !== o.uid))
    ) {
      // The kubelet and our informer learn of a new pod at the same moment: ask for it once.
      await this.view.refreshPod?.(o.namespace, o.name);
    }
    const ctx = this.context(req);
    // A pod using a VIP (ipkeeper.io/vip) gets the VIP's address and nothing else: src/ipam/vip.ts.
    const vip = vipRequested(req, ctx.pod);
    if (vip) {
      const bound = await bindVip(this.vipDeps(), req, vip, ctx.pod);
      return this.result(bound, req, await this.subnetSources(bound)).result;
    }
    const choice = choosePools(
      {
        ...(req.configPools ? { configPools: req.configPools } : {}),
        ifName: req.ifName,
        ...(ctx.pod ? { pod: ctx.pod } : {}),
        ...(ctx.namespace ? { namespace: ctx.namespace } : {}),
      },
      this.state,
    );
    const wanted = this.wantedFamilies(req, choice);
    // The pod's Endpoint: a fixed pod's kept addresses come back here (src/ipam/endpoint.ts).
    const plan = await this.endpoints.beforeAdd(
      { ...req, requestedIps: this.requestedIps(req) },
      ctx,
      choice,
      held,
    );
    held.push(...plan.reattached);
    if (plan.marks) req = { ...req, claimMarks: plan.marks };
    if (plan.plain) {
      // A pod that is not fixed: a new one gets its claims and its endpoint in one store write.
      if (held.length === 0 && wanted.every((f) => this.requestedFor(req, f) === undefined)) {
        const done = await this.addNew(req, wanted, choice, ctx, plan);
        if (done) return done;
      }
      // Its endpoint exists (a new container of the same pod, another interface), or the one write
      // kept losing races: the endpoint is read while the claims are made one by one below.
      this.endpoints.readPlain(plan, req, held);
    }
    const made: HeldClaim[] = [];
    try {
      for (const family of wanted) {
        if (held.some((h) => h.claim.spec.family === family)) continue;
        const requested = this.requestedFor(req, family);
        const h =
          requested !== undefined
            ? await this.claimExact(req, family, requested, choice, ctx)
            : await this.claimFree(req, family, choice, ctx);
        made.push(h);
      }
    } catch (e) {
      // A plain pod's endpoint read may still be in flight (endpoint.ts): let it settle first.
      await plan.pending?.catch(() => undefined);
      await this.rollback(made);
      throw e;
    }
    const all = [...held, ...made].sort((a, b) => a.claim.spec.family - b.claim.spec.family);
    if (made.length > 0) this.logAllocated(req, made);
    const { result, routing } = this.result(all, req);
    try {
      await this.endpoints.record(plan, req, all, endpointRouting(routing));
    } catch (e) {
      // Without its Endpoint a fixed pod would not get these addresses back: fail; the runtime retries.
      await this.rollback(made);
      throw e;
    }
    return result;
  }

  /**
   * ADD of a new attachment of a pod that is not fixed, none of whose addresses is asked for by name:
   * proposes one address per family and creates the claims and the pod's endpoint together
   * (`createMany`: one etcd transaction, one sqlite savepoint). Returns undefined, having written
   * nothing, when the endpoint exists (`plan.read` then holds it), when a family has no free address
   * (the ordinary path says why), or after a few lost races; the caller goes the ordinary way.
   * @throws StoreError when the outcome is unknown (the claims are remembered as uncertain).
   */
  private async addNew(
    req: AllocateRequest,
    wanted: Family[],
    choice: PoolChoice,
    ctx: FilterContext,
    plan: EndpointPlan,
  ): Promise<IpamResult | undefined> {
    const id = plan.identity;
    // Only a store that writes several keys as one (etcd, sqlite, memory). One that would create
    // them one by one (the kubernetes backend, store wrappers) could show a claim it then takes back
    // when the endpoint exists — in every agent's cache, pushing other ADDs off that address.
    const createMany = this.store.createMany?.bind(this.store);
    if (!id || !createMany) return undefined;
    for (let attempt = 0; attempt < FAST_PATH_ATTEMPTS; attempt++) {
      const picks: { pool: CompiledPool; value: bigint; marked: boolean }[] = [];
      const unmark = (): void => {
        for (const p of picks) {
          const key = CLAIM_PREFIX + claimName(p.pool.network, p.pool.family, p.value);
          if (p.marked && !this.state.claims.has(key))
            this.state.usedSet(p.pool.network, p.pool.family).delete(p.value);
        }
      };
      for (const family of wanted) {
        const pick = this.propose(family, choice, ctx);
        if (!pick) {
          unmark();
          return undefined;
        }
        // Taken while the write is in flight, so a concurrent ADD here proposes another one.
        picks.push({ ...pick, marked: this.state.usedSet(pick.pool.network, family).add(pick.value) });
      }
      const held: HeldClaim[] = picks.map((p) => {
        const claim = this.newClaim(req, p.pool, p.value);
        return { key: CLAIM_PREFIX + claim.metadata.name, claim, version: '', value: p.value };
      });
      const { result, routing } = this.result(held, req);
      const endpoint = this.endpoints.build(plan, req, held, endpointRouting(routing), undefined);
      let res;
      try {
        // The Endpoint last: where a backend numbers the keys of one write one after another
        // (sqlite, memory), the endpoint's version is then at least its claims' — `releaseEndpoint`
        // takes a claim newer than the endpoint for one handed out after the endpoint was read.
        res = await this.creating(
          picks.map((p) => p.pool),
          () =>
            createMany([
              ...held.map((h) => ({ key: h.key, value: h.claim })),
              { key: id.key, value: endpoint },
            ]),
        );
      } catch (e) {
        const ak = attachmentKey(req.cniNetwork, req.containerId, req.ifName);
        let set = this.uncertain.get(ak);
        if (!set) this.uncertain.set(ak, (set = new Set()));
        for (const h of held) set.add(h.key);
        this.stats.uncertainWrites++;
        unmark();
        throw e;
      }
      if (res.created) {
        const versions = res.versions;
        held.forEach((h, i) => this.state.put(h.key, h.claim, versions[i] as string));
        this.endpoints.remember(id.key, endpoint, versions[held.length] as string);
        // As in claimFree: next time start after this one.
        for (const p of picks) this.cursors.set(p.pool.name, p.value + 1n);
        this.logAllocated(req, held);
        return result;
      }
      unmark();
      let endpointExists = false;
      for (const ex of res.existing) {
        if (ex.key === id.key) {
          plan.read = ex as Versioned<Endpoint>;
          endpointExists = true;
          continue;
        }
        this.state.put(ex.key, ex.value, ex.version);
        if (sameAttachment(ex.value as IPClaim, req)) return undefined;
        // Lost a race to another agent: jump somewhere else in that pool, as claimFree does.
        this.stats.racesLost++;
        const pick = picks.find(
          (p) => CLAIM_PREFIX + claimName(p.pool.network, p.pool.family, p.value) === ex.key,
        );
        if (pick) this.jump(pick.pool, pick.value);
      }
      if (endpointExists) return undefined;
    }
    return undefined;
  }

  /** The first free address from the cursor of the first candidate pool that has one. */
  private propose(
    family: Family,
    choice: PoolChoice,
    ctx: FilterContext,
  ): { pool: CompiledPool; value: bigint } | undefined {
    for (const pool of this.candidates(family, choice, [], ctx)) {
      const allowed = this.state.allowed(pool);
      const value = nextFree(
        allowed,
        this.state.usedSet(pool.network, pool.family),
        this.startOf(pool, allowed),
      );
      if (value !== undefined) return { pool, value };
    }
    return undefined;
  }

  /** After a lost race: move the pool's cursor to a random address, to stop racing the winner. */
  private jump(pool: CompiledPool, from: bigint): void {
    this.cursors.set(pool.name, this.randomIn(this.state.allowed(pool)) ?? from);
  }

  /** An address of `allowed` at random (within its first 2^52 addresses). */
  private randomIn(allowed: IntervalSet): bigint | undefined {
    const size = allowed.size();
    if (size === 0n) return undefined;
    return allowed.nth(BigInt(Math.floor(this.random() * Number(size > 1n << 52n ? 1n << 52n : size))));
  }

  /**
   * Where the search for a free address of `pool` starts. One ADD at a time gets the first free
   * address after the last one this agent handed out (as host-local does). An ADD that starts while
   * another create of this agent is in flight on the pool starts at a random address instead: in a
   * burst, every agent's in-flight ADDs would otherwise propose the same next addresses as every
   * other agent's, and all but one of each would lose the race and go again (1000 pods on 10
   * agents: ~900 lost races, each a failed create and, on Kubernetes, a read of the winner).
   */
  private startOf(pool: CompiledPool, allowed: IntervalSet): bigint {
    const cursor = this.cursors.get(pool.name) ?? allowed.nth(0n) ?? 0n;
    if ((this.inflight.get(pool.name) ?? 0) === 0) return cursor;
    return this.randomIn(allowed) ?? cursor;
  }

  /** Counts a claim create of `pools` in flight until `write` settles. */
  private async creating<T>(pools: CompiledPool[], write: () => Promise<T>): Promise<T> {
    for (const p of pools) this.inflight.set(p.name, (this.inflight.get(p.name) ?? 0) + 1);
    try {
      return await write();
    } finally {
      for (const p of pools) {
        const n = (this.inflight.get(p.name) ?? 1) - 1;
        if (n <= 0) this.inflight.delete(p.name);
        else this.inflight.set(p.name, n);
      }
    }
  }

  private logAllocated(req: AllocateRequest, made: HeldClaim[]): void {
    this.log.info(
      {
        event: 'allocate',
        network: req.cniNetwork,
        containerId: req.containerId,
        ifName: req.ifName,
        pod: podName(req.owner),
        ips: made.map((h) => h.claim.spec.ip),
        pools: made.map((h) => h.claim.spec.pool),
      },
      'allocated',
    );
  }

  private wantedFamilies(req: AllocateRequest, choice: PoolChoice): Family[] {
    const fams = new Set<Family>();
    for (const f of [4, 6] as Family[]) if (choice.families[f]) fams.add(f);
    for (const ip of this.requestedIps(req)) fams.add(parseRequested(ip).family);
    // Checked before any claim is made, so that result() cannot fail after the claims exist.
    this.defaultNic(req);
    if (fams.size === 0) {
      throw new IpamError(
        'NO_POOL',
        `no pool applies to pod ${podName(req.owner)} on network "${req.cniNetwork}": the CNI config names no ipam.pools and no pool is marked default: true; add "pools": {"ipv4": ["<pool>"]} to the ipam section or set spec.default: true on a pool`,
        { rule: choice.rule },
      );
    }
    return [...fams].sort();
  }

  /**
   * The exact addresses asked for: the pod's annotations (`src/ipam/requested.ts`) merged with the
   * runtime's `requestedIps`. Recomputed per call: it is a few string operations on a small map.
   * @throws IpamError INVALID_OBJECT for a malformed annotation or a disagreement between the two.
   */
  private requestedIps(req: AllocateRequest): string[] {
    const o = req.owner;
    const pod = o.kind === 'Pod' && o.namespace ? this.view.pod(o.namespace, o.name) : undefined;
    const fromPod = pod
      ? requestedByAnnotation({
          annotations: pod.annotations,
          ifName: req.ifName,
          podName: pod.name,
          owners: pod.owners,
        })
      : undefined;
    return mergeRequested(fromPod, req.requestedIps ?? []);
  }

  private requestedFor(req: AllocateRequest, family: Family): bigint | undefined {
    const list = this.requestedIps(req)
      .map(parseRequested)
      .filter((a) => a.family === family);
    if (list.length > 1) {
      throw new IpamError(
        'INVALID_CONFIG',
        `more than one ${NS(family)} address requested (${list.map((a) => formatValue(family, a.value)).join(', ')}); ask for one per family`,
      );
    }
    return list[0]?.value;
  }

  /** Claims this attachment holds, including any whose create had an unknown outcome. */
  private async heldBy(req: ReleaseRequest, ak: string, readBack = false): Promise<HeldClaim[]> {
    const doubtful = this.uncertain.get(ak);
    if (doubtful) {
      for (const key of doubtful) {
        const e = await this.store.get<IPClaim>(key);
        if (e) this.state.put(e.key, e.value, e.version);
      }
      this.uncertain.delete(ak);
    }
    const held = this.state.claimsOf(req.cniNetwork, req.containerId, req.ifName);
    if (!readBack || this.fileRevision === undefined) return held;
    // Claims that came from the claims cache (still the `LazyClaim` it made: an event or our own
    // write puts a new entry) get to a repeated ADD only once the store confirms them: one may
    // have been released while the agent was down, its delete still on its way in the watch. Not
    // "older than the file's revision": the file also holds our own last writes, which can be
    // newer. A release (DEL) needs no check: it deletes at the version it holds.
    let changed = false;
    for (const h of held) {
      if (!(h instanceof LazyClaim) || this.verified.has(h.key)) continue;
      const e = await this.store.get<IPClaim>(h.key);
      this.verified.add(h.key);
      if (e === undefined) this.state.forget(h.key);
      else if (e.version !== h.version) this.state.put(e.key, e.value, e.version);
      else continue;
      changed = true;
    }
    return changed ? this.state.claimsOf(req.cniNetwork, req.containerId, req.ifName) : held;
  }

  private candidates(
    family: Family,
    choice: PoolChoice,
    notes: string[],
    ctx: FilterContext,
  ): CompiledPool[] {
    const out: CompiledPool[] = [];
    for (const name of choice.families[family] ?? []) {
      const e = this.state.pools.get(name);
      if (!e) {
        notes.push(`pool "${name}" does not exist`);
        continue;
      }
      const p = e.compiled;
      if (e.obj.metadata.deletionTimestamp !== undefined) {
        // Marked for deletion, held by its finalizer until its claims are gone: give out no more.
        notes.push(`pool "${name}" is being deleted`);
        continue;
      }
      if (p.family !== family) {
        notes.push(`pool "${name}" is ${NS(p.family)}, not ${NS(family)}`);
        continue;
      }
      const why = excludedBecause(p, ctx);
      if (why) {
        notes.push(why);
        continue;
      }
      out.push(p);
    }
    return out;
  }

  private newClaim(req: AllocateRequest, pool: CompiledPool, value: bigint): IPClaim {
    const ip = formatValue(pool.family, value);
    return {
      apiVersion: API_VERSION,
      kind: 'IPClaim',
      metadata: { name: claimName(pool.network, pool.family, value) },
      spec: {
        network: pool.network,
        ip,
        family: pool.family,
        pool: pool.name,
        owner: req.owner,
        cniNetwork: req.cniNetwork,
        containerId: req.containerId,
        ifName: req.ifName,
        node: this.node,
        createdAt: new Date(this.clock.now()).toISOString(),
        ...(req.claimMarks?.endpoint ? { endpoint: req.claimMarks.endpoint } : {}),
        ...(req.claimMarks?.fixed ? { fixed: true } : {}),
      },
    };
  }

  /**
   * Tries to create the claim of `value`. Returns the held claim, `undefined` when someone else holds
   * it (the cache now knows the holder), and throws a StoreError when the outcome is unknown.
   */
  private async tryClaim(
    req: AllocateRequest,
    pool: CompiledPool,
    value: bigint,
  ): Promise<HeldClaim | undefined> {
    const claim = this.newClaim(req, pool, value);
    const key = CLAIM_PREFIX + claim.metadata.name;
    const used = this.state.usedSet(pool.network, pool.family);
    // Mark it taken while the create is in flight, so a concurrent ADD here proposes another one.
    const marked = used.add(value);
    let res;
    try {
      res = await this.creating([pool], () => this.store.create(key, claim));
    } catch (e) {
      const ak = attachmentKey(req.cniNetwork, req.containerId, req.ifName);
      let set = this.uncertain.get(ak);
      if (!set) this.uncertain.set(ak, (set = new Set()));
      set.add(key);
      this.stats.uncertainWrites++;
      if (marked && !this.state.claims.has(key)) used.delete(value);
      throw e;
    }
    if (res.created) {
      this.state.put(key, claim, res.version);
      return this.state.claims.get(key);
    }
    if (marked && !this.state.claims.has(key)) used.delete(value);
    this.state.put(key, res.existing.value, res.existing.version);
    const other = res.existing.value as IPClaim;
    if (sameAttachment(other, req)) return this.state.claims.get(key);
    return undefined;
  }

  private async claimFree(
    req: AllocateRequest,
    family: Family,
    choice: PoolChoice,
    ctx: FilterContext,
  ): Promise<HeldClaim> {
    const notes: string[] = [];
    const pools = this.candidates(family, choice, notes, ctx);
    let races = 0;
    for (const pool of pools) {
      const allowed = this.state.allowed(pool);
      const used = this.state.usedSet(pool.network, pool.family);
      for (;;) {
        const from = this.startOf(pool, allowed);
        const v = nextFree(allowed, used, from);
        if (v === undefined) break;
        const h = await this.tryClaim(req, pool, v);
        if (h) {
          // Next time start after this one, so a crash-looping pod does not get back the address
          // its previous sandbox may still be tearing down (as host-local does).
          this.cursors.set(pool.name, v + 1n);
          return h;
        }
        // Lost a race to another agent: jump somewhere else in the pool to stop racing it.
        races++;
        this.stats.racesLost++;
        if (races >= MAX_RACES_PER_FAMILY) {
          throw new IpamError(
            'STORE_UNAVAILABLE',
            `lost ${races} races for a free ${NS(family)} address in pool "${pool.name}"; the store is busy, retry`,
          );
        }
        this.jump(pool, from);
      }
      notes.push(this.describeFull(pool));
    }
    throw this.exhausted(req, family, choice, notes);
  }

  private describeFull(pool: CompiledPool): string {
    const u = this.state.usage(pool);
    const res = this.state.reservationsIn(pool);
    const resText =
      res.length === 0
        ? '0 reserved'
        : `${u.reserved} reserved by ${res.map((r) => `"${r.name}"`).join(', ')}`;
    return `pool "${pool.name}" has no free address (${u.total} addresses, ${resText}, ${u.used} in use)`;
  }

  private exhausted(req: AllocateRequest, family: Family, choice: PoolChoice, notes: string[]): IpamError {
    const names = choice.families[family] ?? [];
    return new IpamError(
      names.length > 0 && notes.every((n) => n.includes('does not exist'))
        ? 'POOL_NOT_FOUND'
        : 'POOL_EXHAUSTED',
      `no free ${NS(family)} address for pod ${podName(req.owner)} in pools ${names.map((n) => `"${n}"`).join(', ') || '(none)'} (chosen by ${choice.rule}): ${notes.join('; ')}. Fix: add addresses to a pool or a backup pool, remove a reservation, or release unused addresses (ipkeeper get ipclaims)`,
      { family, pools: names, rule: choice.rule, notes },
    );
  }

  private async claimExact(
    req: AllocateRequest,
    family: Family,
    value: bigint,
    choice: PoolChoice,
    ctx: FilterContext,
  ): Promise<HeldClaim> {
    const ip = formatValue(family, value);
    const notes: string[] = [];
    let pools = this.candidates(family, choice, notes, ctx);
    if (pools.length === 0 && !choice.families[family]) {
      // No pool chosen for this family: any pool that holds the address and admits the pod serves it.
      pools = [...this.state.pools.values()]
        .map((e) => e.compiled)
        .filter((p) => p.family === family && excludedBecause(p, ctx) === undefined);
    }
    const pool = pools.find((p) => p.allocatable.contains(value));
    if (!pool) {
      throw new IpamError(
        'ADDRESS_NOT_IN_POOL',
        `requested address ${ip} is not in any allowed pool (${pools.map((p) => `"${p.name}"`).join(', ') || 'none'}${notes.length > 0 ? `; ${notes.join('; ')}` : ''}); ask for an address inside one of them or add it to a pool`,
        { ip, notes },
      );
    }
    if (!this.state.allowed(pool).contains(value)) {
      const by = [...this.state.reservations.entries()]
        .filter(([, e]) => e.sets[family].contains(value))
        .map(([n]) => `"${n}"`);
      throw new IpamError(
        'ADDRESS_RESERVED',
        `requested address ${ip} is reserved by ReservedIP ${by.join(', ')}; ask for another address or delete the reservation`,
        { ip, reservedBy: by },
      );
    }
    const h = await this.tryClaim(req, pool, value);
    if (!h) {
      const holder = this.state.claims.get(CLAIM_PREFIX + claimName(pool.network, family, value));
      const who = holder ? ownerText(holder.claim) : 'another owner';
      throw new IpamError(
        'ADDRESS_IN_USE',
        `requested address ${ip} in pool "${pool.name}" is held by ${who}; ask for another address or release it first`,
        { ip, holder: holder?.claim.spec.owner },
      );
    }
    return h;
  }

  private async rollback(made: HeldClaim[]): Promise<void> {
    for (const h of made) {
      try {
        const r = await this.store.delete(h.key, h.version);
        if (r.ok) this.state.remove(h.key, r.version);
      } catch (e) {
        // The ADD fails anyway; a claim we could not delete stays with this attachment and is
        // released by the runtime's DEL (which follows a failed ADD) or by GC.
        this.log.warn({ key: h.key, err: String(e) }, 'rollback could not delete a claim');
      }
    }
  }

  /** The pod's default-route interface: the request's own, its annotation, else eth0. */
  private defaultNic(req: AllocateRequest): string {
    const o = req.owner;
    const pod = o.kind === 'Pod' && o.namespace ? this.view.pod(o.namespace, o.name) : undefined;
    return defaultRouteNic(pod?.annotations, req.defaultRouteNic);
  }

  /**
   * Addresses and routes of the attachment (multi-NIC aware: `src/ipam/routing.ts`). Never throws:
   * it runs after the claims are made; the default-route annotation was checked in wantedFamilies.
   */
  /**
   * The Subnets behind VIP claims taken from a Subnet (`spec.pool` is `subnet/<name>`, see vip.ts),
   * compiled as pools, so the pod using such a VIP gets the subnet's prefix, gateway and routes. The
   * agent does not cache Subnets: they are read when a pod binds such a VIP (rare).
   */
  private async subnetSources(held: HeldClaim[]): Promise<Map<string, CompiledPool>> {
    const out = new Map<string, CompiledPool>();
    for (const h of held) {
      const name = claimSubnet(h.claim);
      if (name === undefined || out.has(h.claim.spec.pool)) continue;
      const sub = await this.store.get<Subnet>(`${SUBNET_KEY_PREFIX}${name}`);
      if (!sub) continue; // Deleted since: the address alone (/32, /128), as for a pool gone.
      try {
        out.set(h.claim.spec.pool, compileSubnet(sub.value));
      } catch {
        // Invalid (written around validation): the address alone.
      }
    }
    return out;
  }

  private result(
    held: HeldClaim[],
    req: AllocateRequest,
    sources?: Map<string, CompiledPool>,
  ): { result: IpamResult; routing: InterfaceRouting } {
    const ips: ResultIp[] = [];
    let defaultNic = DEFAULT_ROUTE_NIC;
    try {
      defaultNic = this.defaultNic(req);
    } catch {
      // Unreachable after wantedFamilies checked it; eth0 is the safe answer if the pod changed since.
    }
    const addresses = held.map((h) => {
      const pool = this.state.pools.get(h.claim.spec.pool)?.compiled ?? sources?.get(h.claim.spec.pool);
      const bits = pool?.subnet.bits ?? (h.claim.spec.family === 4 ? 32 : 128);
      ips.push({
        address: `${h.claim.spec.ip}/${bits}`,
        ...(pool?.gateway ? { gateway: pool.gateway } : {}),
        pool: h.claim.spec.pool,
      });
      return {
        ip: h.claim.spec.ip,
        bits,
        ...(pool?.gateway ? { gateway: pool.gateway } : {}),
        routes: pool?.routes ?? [],
      };
    });
    const r = interfaceRouting({ ifName: req.ifName, defaultRouteNic: defaultNic, addresses });
    const routes: IpamResult['routes'] = [...r.routes];
    // Only table routes with a next hop: a main plugin fills a missing `gw` with the address's gateway,
    // which would turn the on-link subnet route into one via the gateway. The kernel's own subnet route
    // is what the `sbr` plugin or a coordinator moves into the table.
    for (const t of r.tableRoutes) if (t.gw !== undefined) routes.push(t);
    for (const x of req.extraRoutes ?? []) routes.push(x);
    return { result: { ips, routes }, routing: r };
  }

  // ---- DEL, CHECK, GC, STATUS --------------------------------------------------------------------

  /**
   * Releases what the attachment holds. Succeeds when it holds nothing. A claim that moved on to
   * another owner meanwhile is left alone.
   * @throws IpamError STORE_UNAVAILABLE when the store cannot be written (the runtime retries DEL).
   */
  release(req: ReleaseRequest): Promise<number> {
    const ak = attachmentKey(req.cniNetwork, req.containerId, req.ifName);
    return this.serial(ak, async () => {
      await this.ensureReady();
      return this.wrapStore(async () => {
        const held = await this.heldBy(req, ak);
        let n = await this.releaseTogether(req, held);
        if (n === undefined) {
          n = 0;
          // A fixed pod's claims outlive its container: its next pod gets them back (endpoint.ts).
          for (const h of held) if (h.claim.spec.fixed !== true && (await this.deleteClaim(h, req))) n++;
          await this.endpoints.released(req, held);
        }
        n += await unbindVip(this.vipDeps(), req);
        if (n > 0) {
          this.log.info(
            {
              event: 'release',
              network: req.cniNetwork,
              containerId: req.containerId,
              ifName: req.ifName,
              count: n,
            },
            'released',
          );
        }
        return n;
      });
    });
  }

  /**
   * The usual DEL — a pod that is not fixed, its last interface going — as one store write: its
   * claims at the versions the cache holds and its endpoint at the version just read, all or none
   * (`deleteMany`: one etcd transaction instead of one per key). Returns how many claims went, or
   * undefined having deleted nothing (no `deleteMany`, another case, or a version moved on): the
   * key-by-key path then runs, reading what it must.
   * @throws StoreError when the outcome is unknown (the key-by-key path on the runtime's retry finds it).
   */
  private async releaseTogether(req: ReleaseRequest, held: HeldClaim[]): Promise<number | undefined> {
    const deleteMany = this.store.deleteMany?.bind(this.store);
    if (!deleteMany || held.length === 0) return undefined;
    const endpoint = await this.endpoints.emptiedBy(req, held);
    if (!endpoint) return undefined;
    const res = await deleteMany([...held.map((h) => ({ key: h.key, version: h.version })), endpoint]);
    if (!res.ok) return undefined;
    held.forEach((h, i) => this.state.remove(h.key, res.versions[i] as string));
    return held.length;
  }

  /** Deletes a claim at its version; re-reads once if the cache was behind. */
  private async deleteClaim(h: HeldClaim, req: ReleaseRequest | undefined): Promise<boolean> {
    let version = h.version;
    for (let i = 0; i < 3; i++) {
      const r = await this.store.delete(h.key, version);
      if (r.ok) {
        this.state.remove(h.key, r.version);
        return true;
      }
      if (!r.current) {
        this.state.remove(h.key, version === h.version ? bump(version) : version);
        return false;
      }
      this.state.put(r.current.key, r.current.value, r.current.version);
      // Still ours (our own update we had not seen)? Then delete that version; else it was reused.
      if (req && !sameAttachment(r.current.value as IPClaim, req)) return false;
      if (!req) return false;
      version = r.current.version;
    }
    return false;
  }

  /**
   * CHECK: the attachment must still hold an address for each family it was given.
   * @throws IpamError NOT_FOUND naming the attachment.
   */
  async check(req: ReleaseRequest): Promise<void> {
    await this.ensureReady();
    const held = this.state.claimsOf(req.cniNetwork, req.containerId, req.ifName);
    if (held.length === 0 && !vipBound(this.state, req)) {
      throw new IpamError(
        'NOT_FOUND',
        `no address is held for container ${req.containerId} interface ${req.ifName} on network "${req.cniNetwork}"`,
        { ...req },
      );
    }
  }

  /**
   * CNI GC: releases this node's claims on `cniNetwork` whose attachment is not in `valid`, if older
   * than the minimum age (an ADD may be in flight for a younger one). Each delete carries the
   * version read, so an address reused meanwhile is never freed.
   * @returns how many claims were released.
   */
  async gc(cniNetwork: string, valid: { containerID: string; ifname: string }[]): Promise<number> {
    await this.ensureReady();
    const keep = new Set(valid.map((v) => `${v.containerID}/${v.ifname}`));
    const cutoff = this.clock.now() - this.gcMinAgeMs;
    const doomed = [...this.state.claims.values()].filter((h) => {
      const s = h.claim.spec;
      return (
        s.cniNetwork === cniNetwork &&
        s.node === this.node &&
        !keep.has(`${s.containerId}/${s.ifName}`) &&
        // Kept on purpose past its container (fixed IP); the retention GC decides when it goes.
        s.fixed !== true &&
        Date.parse(s.createdAt) <= cutoff
      );
    });
    return this.wrapStore(async () => {
      let n = 0;
      for (const h of doomed) {
        const s = h.claim.spec;
        const ak = attachmentKey(cniNetwork, s.containerId ?? '', s.ifName ?? '');
        const ok = await this.serial(ak, () => this.deleteClaim(h, undefined));
        if (ok) n++;
        if (ok) this.stats.gcReleased++;
      }
      // VIP addresses used by pods whose attachments are gone are unbound, not released (vip.ts).
      n += await gcVipBindings(this.vipDeps(), cniNetwork, keep, cutoff);
      if (n > 0) this.log.info({ event: 'gc', network: cniNetwork, count: n }, 'gc released claims');
      return n;
    });
  }

  /**
   * STATUS: ready, and at least one address can be given for every family the config asks for.
   * @throws IpamError NOT_READY saying why.
   */
  status(configPools?: { ipv4?: string[]; ipv6?: string[] }, cniNetwork = ''): void {
    if (!this.ready) throw new IpamError('NOT_READY', 'the agent is still loading its store');
    const choice = choosePools(configPools ? { configPools } : {}, this.state);
    // STATUS has no pod: only the pod-independent filters (disable, node, network) can apply.
    const ctx: FilterContext = {
      cniNetwork,
      nodeName: this.node,
      live: this.view.live,
      podIndependent: true,
    };
    for (const f of [4, 6] as Family[]) {
      if (!choice.families[f]) continue;
      const notes: string[] = [];
      const pools = this.candidates(f, choice, notes, ctx);
      if (!pools.some((p) => this.state.usage(p).free > 0n)) {
        throw new IpamError(
          'NOT_READY',
          `no ${NS(f)} address can be given: ${[...notes, ...pools.map((p) => this.describeFull(p))].join('; ') || 'no pool'}`,
        );
      }
    }
  }

  /** Usage of every pool, sorted by name (derived from the cache; may lag the store briefly). */
  usage(): PoolUsage[] {
    return [...this.state.pools.values()]
      .map(({ compiled: p }) => {
        const u = this.state.usage(p);
        return {
          name: p.name,
          family: p.family,
          network: p.network,
          subnet: `${formatValue(p.family, p.subnet.base)}/${p.subnet.bits}`,
          total: Number(u.total),
          used: Number(u.used),
          reserved: Number(u.reserved),
          free: Number(u.free),
          claims: this.state.claimCountOf(p.name),
          default: p.isDefault,
          disabled: p.disabled,
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}

function bump(v: string): string {
  return /^\d+$/.test(v) ? String(BigInt(v) + 1n) : v;
}

/** The claim's store name: `<network>.<address key>`, one per address per network. */
export function claimName(network: string, family: Family, value: bigint): string {
  return `${network}.${addrKey({ family, value })}`;
}

function parseRequested(ip: string): { family: Family; value: bigint } {
  try {
    // `runtimeConfig.ips` may carry a prefix length (`10.1.0.5/24`): the address is what counts.
    const a = parseAddr(ip.split('/')[0] ?? ip);
    return { family: a.family, value: a.value };
  } catch (e) {
    throw new IpamError('INVALID_CONFIG', `requested address "${ip}" is not an IP address`, { ip }, e);
  }
}

function sameAttachment(c: IPClaim, req: ReleaseRequest): boolean {
  return (
    c.spec.cniNetwork === req.cniNetwork &&
    c.spec.containerId === req.containerId &&
    c.spec.ifName === req.ifName
  );
}

export function podName(o: ClaimOwner): string {
  return o.namespace ? `${o.namespace}/${o.name}` : o.name;
}

function ownerText(c: IPClaim): string {
  const o = c.spec.owner;
  return `${o.kind} ${podName(o)}${c.spec.containerId ? ` (container ${c.spec.containerId.slice(0, 12)})` : ''}`;
}
