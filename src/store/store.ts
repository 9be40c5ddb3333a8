/**
 * @module store
 * The one seam between ipkeeper's logic and durable state.
 *
 * Every backend (memory, sqlite, etcd, kubernetes) implements `Store` and passes the same contract
 * suite (`contract.ts`). Uniqueness of an address is enforced here, not in memory: the engine writes
 * one claim per address with `create`, which succeeds for exactly one caller (DESIGN invariant 1).
 * Release and GC delete with the version they read as a precondition (invariant 3).
 *
 * Keys are `<kind-plural>/<name>` for cluster-scoped objects and `<kind-plural>/<namespace>/<name>`
 * for namespaced ones (e.g. `ippools/test-ippool`, `claims/default.10.6.168.133`). Every segment is
 * validated by `validateKey` so no name can escape its kind (no `..`, no `/` inside a name).
 */

/**
 * A version: the store-wide revision at which a key was last written, as a decimal string. Every
 * backend's revisions increase across the whole store (sqlite's counter, etcd's mod_revision,
 * Kubernetes' resourceVersion in practice), so caches can drop an event older than what they hold
 * with `versionNewer`. A delete (and its watch event) carries the revision of the deletion.
 */
export type Version = string;

/**
 * Whether `a` is a later revision than `b`. Versions that are not decimal (a backend that keeps
 * them opaque) compare as "newer" whenever they differ, which degrades to last-event-wins.
 */
export function versionNewer(a: Version, b: Version): boolean {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    return a.length !== b.length ? a.length > b.length : a > b;
  }
  return a !== b;
}

/** A stored value with the version it was read at. */
export interface Versioned<T = unknown> {
  key: string;
  value: T;
  version: Version;
}

/** Outcome of `create`: the caller won (`created`) or someone else holds the key. */
export type CreateResult<T = unknown> =
  { created: true; version: Version } | { created: false; existing: Versioned<T> };

/**
 * Outcome of `createMany`: every key was created (`versions[i]` is entry i's version), or none was
 * and `existing` holds the entries that were already there (at least one).
 */
export type CreateManyResult =
  { created: true; versions: Version[] } | { created: false; existing: Versioned[] };

/**
 * Outcome of `deleteMany`: every key was deleted at its version (`versions[i]` is the revision of
 * entry i's delete), or none was (a key was missing or held another version).
 */
export type DeleteManyResult = { ok: true; versions: Version[] } | { ok: false };

/** Outcome of `update`/`delete` with a version precondition. */
export type CasResult<T = unknown> =
  | { ok: true; version: Version }
  /** `current` is what is stored now, or undefined when the key is gone. */
  | { ok: false; current: Versioned<T> | undefined };

/** One entry as its stored text: UTF-8 bytes `start`..`end` of `bytes` (see `Store.scanText`). */
export interface StoredText {
  key: string;
  version: Version;
  bytes: Buffer;
  start: number;
  end: number;
}

export type WatchEvent<T = unknown> =
  | { type: 'put'; key: string; value: T; version: Version }
  | { type: 'delete'; key: string; version: Version };

export interface Watcher {
  close(): void;
  /**
   * A version up to which this watch has delivered every event, or learnt there was none (etcd's
   * periodic progress notifications, ordered with the events); undefined until it knows. So a
   * quiet prefix still tells how far the store has moved. Optional: the etcd backend has it.
   */
  readonly caughtUp?: Version | undefined;
}

/**
 * The store. All methods reject only on real failures (unreachable backend, corruption) with a
 * `StoreError`; an expected outcome (key taken, version moved on) is a return value.
 */
export interface Store {
  /** The backend's name, for logs and metrics: `memory`, `sqlite`, `etcd`, `kubernetes`. */
  readonly backend: string;
  get<T>(key: string): Promise<Versioned<T> | undefined>;
  /** Every entry whose key starts with `prefix` (use a trailing `/`), in key order. */
  list<T>(prefix: string): Promise<Versioned<T>[]>;
  /**
   * `list`, handed to `onPage` page by page as the backend reads them (one snapshot; in key order,
   * except on the kubernetes backend, which hands them over in the API server's order), so the
   * caller works on a page while the next is read; a backend may split a page into slices and let
   * the event loop run between them (etcd does, so the next page can come in). Optional: backends
   * that read in one step (memory, sqlite) leave it out and callers `list`. Pages may repeat when a
   * backend has to start over (etcd after a compaction, kubernetes after a failed read from the API
   * server's cache), always from the first key and at a newer snapshot.
   * An exception from `onPage` ends the scan and is passed through as it is.
   */
  scan?<T>(prefix: string, onPage: (entries: Versioned<T>[]) => void): Promise<void>;
  /**
   * `scan`, handing each entry over as its stored text (UTF-8 JSON as `codec.ts` wrote it) instead
   * of its decoded value, for a reader that decodes only what it needs: the engine's start reads a
   * claim's digest (`claim-digest.ts`) and parses the rest when something reads it. The bytes are
   * a view into the page as received (not a copy); keeping one keeps its page. Optional: the etcd
   * backend has it.
   */
  scanText?(prefix: string, onPage: (entries: StoredText[]) => void): Promise<void>;
  /** Create-if-absent. Exactly one of several concurrent callers gets `created: true`. */
  create<T>(key: string, value: T): Promise<CreateResult<T>>;
  /**
   * Create-if-absent of several distinct keys as one write: all are created or none (one ADD's
   * claims and its Endpoint). etcd does it in one transaction, sqlite in one savepoint, memory in
   * one turn. Optional: a backend that cannot write several objects at once (the kubernetes
   * backend: the API server has no multi-object write) and store wrappers (node pools) leave it
   * out, and callers take their one-key path. Where a backend numbers the keys of one write one
   * after another, later entries get higher versions.
   * @throws StoreError (not retryable) for duplicate or invalid keys.
   */
  createMany?(entries: { key: string; value: unknown }[]): Promise<CreateManyResult>;
  /** Replace the value if the stored version equals `version`. */
  update<T>(key: string, value: T, version: Version): Promise<CasResult<T>>;
  /** Delete if the stored version equals `version`. A missing key is `{ ok: false, current: undefined }`. */
  delete(key: string, version: Version): Promise<CasResult>;
  /**
   * Compare-and-delete of several distinct keys as one write: each is deleted if it holds its
   * `version`, all or none (a DEL's claims and its pod's Endpoint). etcd does it in one
   * transaction, sqlite in one savepoint, memory in one turn. Optional, as `createMany`: callers
   * without it delete key by key.
   * @throws StoreError (not retryable) for duplicate or invalid keys.
   */
  deleteMany?(entries: { key: string; version: Version }[]): Promise<DeleteManyResult>;
  /**
   * Events for keys under `prefix`, after the call returns, in commit order per key. A watcher
   * that falls behind or loses its backend calls `onReset` (if given); the caller then re-lists.
   */
  watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void): Watcher;
  /**
   * Like `watch`, but delivers every event after `version` (a revision this store handed out
   * earlier, maybe in another process). A revision the backend no longer has — or never had —
   * calls `onReset` at once. Optional: the kubernetes and etcd backends have it (an agent's start from
   * its claims cache, src/ipam/claims-cache.ts).
   */
  watchFrom?<T>(
    prefix: string,
    version: Version,
    onEvent: (ev: WatchEvent<T>) => void,
    onReset?: () => void,
  ): Watcher;
  /**
   * What names this store's data across processes and restarts (the cluster, not the connection):
   * a claims cache written for one identity is never read for another. With `watchFrom`.
   */
  identity?(): Promise<string>;
  /**
   * How often this store's watches had to start over, since it opened (the agent's metrics).
   * Optional: the kubernetes and etcd backends, whose watches are streams that can end.
   */
  watchStats?(): WatchStats;
  close(): Promise<void>;
}

/**
 * Counts of a store's watch streams starting over. `closed`: the server ended a stream that was
 * working (Kubernetes: its timeout, or a watcher it dropped as too slow under load); `broken`: a
 * stream failed or could not be opened, and is retried after a backoff; `resync`: a watch told its
 * caller to read everything again (`onReset`) — the history it needed was gone (compacted, or past
 * the API server's watch cache), or etcd cancelled it or sent a value that is not ours.
 */
export interface WatchStats {
  closed: number;
  broken: number;
  resync: number;
}

/** A fresh set of counters. */
export function newWatchStats(): WatchStats {
  return { closed: 0, broken: 0, resync: 0 };
}

/**
 * The watch a `watchFrom` of revision `from` opens, for a store whose newest revision seen is
 * `newest`: `resume()` (every event after `from`), or, for a revision past every one the store has
 * seen — another cluster's, or this one's before its data was restored from a backup, whose
 * history is unknown — `fresh()` (from now), with `onReset` called at once.
 */
export function resumeWatch(
  from: bigint,
  newest: bigint,
  resume: () => Watcher,
  fresh: () => Watcher,
  onReset: (() => void) | undefined,
): Watcher {
  if (from <= newest) return resume();
  const w = fresh();
  if (onReset) queueMicrotask(onReset);
  return w;
}

/**
 * The keys of one `createMany` or `deleteMany`: each valid (`validateKey`), none given twice.
 * @throws StoreError (not retryable) naming an invalid key, or a key given twice.
 */
export function validateKeys(entries: { key: string }[], op: 'createMany' | 'deleteMany'): void {
  for (const e of entries) validateKey(e.key);
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.key)) {
      const once = op === 'createMany' ? 'created' : 'deleted';
      throw new StoreError(`${op}: key "${e.key}" is given twice; each key may be ${once} once`, {
        retryable: false,
      });
    }
    seen.add(e.key);
  }
}

/** A real failure of the backend (not an expected outcome). `retryable` when a retry may succeed. */
export class StoreError extends Error {
  readonly retryable: boolean;
  constructor(message: string, opts: { retryable: boolean; cause?: unknown }) {
    super(message, { cause: opts.cause });
    this.name = 'StoreError';
    this.retryable = opts.retryable;
  }
}

const SEGMENT = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
/** Two or three SEGMENTs joined by `/` (without the ".." rule, checked apart). */
const KEY = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?:\/[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?){1,2}$/;

/**
 * Checks that a key is `kind/name` or `kind/namespace/name` with DNS-subdomain-like segments.
 * @throws StoreError (not retryable) naming the key and the bad segment.
 */
export function validateKey(key: string): void {
  // Every write checks its key: the common, valid case is one regular expression.
  if (KEY.test(key) && !key.includes('..')) return;
  const parts = key.split('/');
  if (parts.length < 2 || parts.length > 3) {
    throw new StoreError(`store key "${key}" must be "kind/name" or "kind/namespace/name"`, {
      retryable: false,
    });
  }
  for (const p of parts) {
    if (!SEGMENT.test(p) || p.includes('..')) {
      throw new StoreError(
        `store key "${key}": segment "${p}" must be lower-case letters, digits, "-" and "." (no "..", at most 253 characters)`,
        { retryable: false },
      );
    }
  }
}
