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
 */
import { Ipam } from '../ipam/engine.ts';
import type { Store, WatchEvent } from '../store/store.ts';
import type { ControllerContext } from './context.ts';

export interface SharedCache {
  ipam: Ipam;
  /** Calls `fn` after every change the cache applied (and after a watch reset). Returns an unsubscribe. */
  onChange(fn: () => void): () => void;
  /** Drops this reference; the last one stops the watches. */
  release(): Promise<void>;
}

interface Entry {
  ipam: Ipam;
  listeners: Set<() => void>;
  refs: number;
  started: Promise<void>;
}

const caches = new WeakMap<ControllerContext, Entry>();

/** A store whose watch callbacks also notify the listeners, after the engine applied the event. */
function notifying(store: Store, notify: () => void): Store {
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
          onEvent(ev);
          notify();
        },
        () => {
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
    const ipam = new Ipam({
      store: notifying(ctx.store, () => {
        for (const fn of listeners) fn();
      }),
      node: 'ipkeeper-controller',
      log: ctx.log,
      clock: { now: ctx.now },
    });
    const entry: Entry = { ipam, listeners, refs: 0, started: ipam.start() };
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
