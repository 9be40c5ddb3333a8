/**
 * @module controller/cache
 * One engine cache (`Ipam`: pools, reservations, claims, fed by the store's list + watch) shared by
 * the reconcilers of one `ControllerContext`, with change notifications. Pool status and the pool
 * finalizer both need every claim; with 50,000 claims two copies and two sets of watches would be
 * waste, so they share one, counted by reference: the first `acquireCache` starts it, the last
 * `release` stops it (a new leader term starts a fresh one).
 *
 * Notifications carry no payload: a listener marks itself dirty and reconciles from the cache, so
 * a burst of claim events becomes one pass (counts are derived and may lag — DESIGN invariant 2).
 *
 * The cache also writes the controller's recent events for the pool map page (the agent's
 * `EventRing`, one per context: `controllerEvents`). The controller makes no CNI calls, so what
 * the agent learns from its CNI routes the controller reads off the claims watch, once the cache
 * has loaded (the initial list is history, not news):
 *
 *   put of a new claim key                    allocate  (ip, pool, owner, node, network)
 *   put that changes the owner (kind/ns/name/uid)
 *                                             allocate  (a fixed claim re-attached to a new pod)
 *   put that changes anything else            nothing   (status, version bumps)
 *   delete of a held claim                    release   (named from the value held before)
 *   delete the controller made itself         nothing   (the GC reports its own: `ownDelete`)
 *
 * Its GC writes `gc` events (src/controller/gc.ts), and failed reconcile passes become `error`
 * events through the logger (`recordReconcileErrors`, wired in src/controller/main.ts).
 */
import { Ipam } from '../ipam/engine.ts';
import { CLAIM_PREFIX, type IpamState } from '../ipam/state.ts';
import type { ClaimOwner, IPClaim } from '../api/kinds.ts';
import type { Store, WatchEvent } from '../store/store.ts';
import { EventRing, type NewEvent } from '../agent/ui/events.ts';
import type { ControllerContext, ControllerLogger } from './context.ts';

/**
 * How long a delete announced with `ownDelete` waits for its watch event. The watch delivers in well
 * under this; the bound only keeps a key whose event was lost (a watch reset) from being held.
 */
export const OWN_DELETE_WINDOW_MS = 60_000;

export interface SharedCache {
  ipam: Ipam;
  /** Calls `fn` after every change the cache applied (and after a watch reset). Returns an unsubscribe. */
  onChange(fn: () => void): () => void;
  /**
   * The caller is about to delete claim `key` and reports it itself (the GC's `gc` event): the
   * watch's delete of it then makes no `release` event. Call the returned function once the delete
   * is done, with whether it happened (a failed delete makes the key count again at once).
   */
  ownDelete(key: string): (deleted: boolean) => void;
  /** Drops this reference; the last one stops the watches. */
  release(): Promise<void>;
}

interface Entry {
  ipam: Ipam;
  listeners: Set<() => void>;
  refs: number;
  started: Promise<void>;
  /** Claim keys being deleted by this controller, and until when to expect their watch event. */
  own: Map<string, number>;
}

const caches = new WeakMap<ControllerContext, Entry>();
const rings = new WeakMap<ControllerContext, EventRing>();

/**
 * The context's recent events (made on first use), shown by the controller's pool map page. Kept
 * beside the context, as the metrics are (src/controller/metrics.ts), so the `ControllerContext`
 * seam needs no field for it.
 */
export function controllerEvents(ctx: ControllerContext): EventRing {
  let ring = rings.get(ctx);
  if (!ring) {
    ring = new EventRing(undefined, () => ctx.now());
    rings.set(ctx, ring);
  }
  return ring;
}

/** Makes `ring` the context's events ring (the controller builds it before its context's logger). */
export function attachEvents(ctx: ControllerContext, ring: EventRing): void {
  rings.set(ctx, ring);
}

/**
 * A logger that writes to `log` and records every warning or error that names a `reconciler` (a
 * failed pass, src/controller/pass-loop.ts; a reconciler that failed to start or stop) as an
 * `error` event. The retry delay is left out of the message, so a pass failing again and again is
 * one event counting up its repeats.
 */
export function recordReconcileErrors(log: ControllerLogger, ring: EventRing): ControllerLogger {
  const record = (obj: object, msg?: string): void => {
    const o = obj as Record<string, unknown>;
    if (typeof o.reconciler !== 'string') return;
    ring.push({
      kind: 'error',
      command: o.reconciler,
      message: `reconciler ${o.reconciler}: ${msg ?? 'failed'}${typeof o.err === 'string' ? `: ${o.err}` : ''}`,
    });
  };
  return {
    debug: (obj, msg) => log.debug(obj, msg),
    info: (obj, msg) => log.info(obj, msg),
    warn: (obj, msg) => {
      log.warn(obj, msg);
      record(obj, msg);
    },
    error: (obj, msg) => {
      log.error(obj, msg);
      record(obj, msg);
    },
  };
}

function sameOwner(a: ClaimOwner, b: ClaimOwner): boolean {
  return a.kind === b.kind && a.namespace === b.namespace && a.name === b.name && a.uid === b.uid;
}

function ownerName(o: ClaimOwner): string {
  return `${o.kind === 'Pod' ? 'pod' : o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
}

/** The page event of a claim given (`allocate`, `was` its previous owner) or released. */
export function claimEvent(kind: 'allocate' | 'release', c: IPClaim, was?: ClaimOwner): NewEvent {
  const s = c.spec;
  const o = s.owner;
  const where = [s.ifName, s.node ? `on node ${s.node}` : undefined].filter((x) => x !== undefined).join(' ');
  const what = `${s.ip} (pool ${s.pool})`;
  const who = `${ownerName(o)}${where ? ` ${where}` : ''}`;
  return {
    kind,
    message:
      kind === 'allocate'
        ? `allocated ${what} to ${who}${was ? ` (was ${ownerName(was)})` : ''}`
        : `released ${what} of ${who}`,
    network: s.cniNetwork ?? s.network,
    ...(o.kind === 'Pod' && o.namespace ? { pod: `${o.namespace}/${o.name}` } : {}),
    ...(s.containerId ? { containerId: s.containerId } : {}),
    ...(s.ifName ? { ifName: s.ifName } : {}),
    ...(s.node ? { node: s.node } : {}),
    ips: [s.ip],
    pools: [s.pool],
  };
}

/**
 * Applies one watch event to the cache (`apply`) and says what it meant for the page: compares the
 * claim held before with the one held after, so an event the engine dropped (its own write, an
 * older version) means nothing. Before the cache is ready (initial list, re-list after a reset)
 * nothing is news.
 */
function claimChange(
  state: IpamState,
  ready: boolean,
  own: Map<string, number>,
  now: number,
  ev: WatchEvent,
  apply: () => void,
): NewEvent | undefined {
  if (!ready || !ev.key.startsWith(CLAIM_PREFIX)) {
    apply();
    return undefined;
  }
  const before = state.claims.get(ev.key);
  apply();
  const after = state.claims.get(ev.key);
  if (ev.type === 'delete') {
    const until = own.get(ev.key);
    if (until !== undefined) {
      own.delete(ev.key);
      if (until >= now) return undefined;
    }
    // Not held (never seen, or the GC dropped it already), or an older delete the cache ignored.
    if (!before || after) return undefined;
    return claimEvent('release', before.claim);
  }
  if (!after || after === before) return undefined;
  if (before && sameOwner(before.claim.spec.owner, after.claim.spec.owner)) return undefined;
  return claimEvent('allocate', after.claim, before?.claim.spec.owner);
}

/**
 * A store whose watch callbacks hand each event to `observe` (which applies it through `apply`),
 * then notify the listeners.
 */
function notifying(
  store: Store,
  notify: () => void,
  observe: (ev: WatchEvent, apply: () => void) => void,
  reset: () => void,
): Store {
  return {
    backend: store.backend,
    get: (k) => store.get(k),
    list: (p) => store.list(p),
    create: (k, v) => store.create(k, v),
    update: (k, v, ver) => store.update(k, v, ver),
    delete: (k, ver) => store.delete(k, ver),
    watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void) {
      return store.watch<T>(
        prefix,
        (ev) => {
          observe(ev, () => onEvent(ev));
          notify();
        },
        () => {
          reset();
          onReset?.();
          notify();
        },
      );
    },
    close: () => store.close(),
  };
}

/**
 * The context's shared cache, loaded (list done) when this resolves.
 * @throws StoreError when the store cannot be listed (the reference is dropped again).
 */
export async function acquireCache(ctx: ControllerContext): Promise<SharedCache> {
  let e = caches.get(ctx);
  if (!e) {
    const listeners = new Set<() => void>();
    const own = new Map<string, number>();
    const ring = controllerEvents(ctx);
    const ipam: Ipam = new Ipam({
      store: notifying(
        ctx.store,
        () => {
          for (const fn of listeners) fn();
        },
        (ev, apply) => {
          const news = claimChange(ipam.state, ipam.ready, own, ctx.now(), ev, apply);
          if (news) ring.push(news);
        },
        // The re-list after a reset brings no news; a delete we were waiting for may never come.
        () => own.clear(),
      ),
      node: 'ipkeeper-controller',
      log: ctx.log,
      clock: { now: ctx.now },
    });
    const entry: Entry = { ipam, listeners, refs: 0, started: ipam.start(), own };
    e = entry;
    caches.set(ctx, entry);
    entry.started.catch(() => {
      if (caches.get(ctx) === entry) caches.delete(ctx);
      void ipam.stop();
    });
  }
  const entry = e;
  entry.refs++;
  try {
    await entry.started;
  } catch (err) {
    entry.refs--;
    throw err;
  }
  let released = false;
  const mine = new Set<() => void>();
  return {
    ipam: entry.ipam,
    onChange(fn) {
      const wrapped = (): void => fn();
      mine.add(wrapped);
      entry.listeners.add(wrapped);
      return () => {
        mine.delete(wrapped);
        entry.listeners.delete(wrapped);
      };
    },
    ownDelete(key) {
      entry.own.set(key, ctx.now() + OWN_DELETE_WINDOW_MS);
      return (deleted) => {
        if (!deleted) entry.own.delete(key);
      };
    },
    async release() {
      if (released) return;
      released = true;
      for (const fn of mine) entry.listeners.delete(fn);
      if (--entry.refs === 0) {
        if (caches.get(ctx) === entry) caches.delete(ctx);
        await entry.ipam.stop();
      }
    },
  };
}
