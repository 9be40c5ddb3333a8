/**
 * @module store/memory
 * `MemoryStore`: the in-process `Store` for tests and `memory:` URLs. Nothing survives the process.
 *
 * Every operation runs to completion synchronously inside the call (JavaScript is single-threaded,
 * so create-if-absent and the version checks are atomic), and the result is handed back as a
 * promise, like every other backend. Versions come from one revision counter that only grows, so a
 * key that is deleted and created again never gets an old version back (DESIGN invariant 3).
 *
 * Values are stored as their JSON text (`codec.ts`, which writes a claim as its spec): what a caller
 * reads back is a fresh copy holding exactly what JSON carries, the same as with the durable
 * backends, and mutating it cannot change the store.
 */
import { StoreError, validateKeys, validateKey } from './store.ts';
import { decodeValue, encodeValue, lazyPut } from './codec.ts';
import { SlotMap } from './slot-map.ts';
import type {
  CasResult,
  CreateManyResult,
  CreateResult,
  DeleteManyResult,
  Store,
  Version,
  Versioned,
  WatchEvent,
  Watcher,
} from './store.ts';

interface Entry {
  json: string;
  revision: number;
}

interface Listener {
  prefix: string;
  onEvent: (ev: WatchEvent<unknown>) => void;
  closed: boolean;
}

/**
 * The in-memory store. Every method rejects with a StoreError (not retryable) for an invalid key, a
 * value JSON cannot carry, or a call after `close()`.
 */
export class MemoryStore implements Store {
  readonly backend = 'memory';
  /**
   * By key. A SlotMap, not a Map: the claim of an address in a small pool is deleted and created
   * again over and over beside every other key held, which a Map answers in time growing with the
   * keys held (see `slot-map.ts`).
   */
  private readonly entries = new SlotMap<Entry>();
  private readonly listeners = new Set<Listener>();
  /**
   * Counters live in one object, never as plain fields, so a wrapper made with
   * `Object.create(store)` (tests that slow one method down) shares them instead of shadowing them
   * with its own copy on the first `++`.
   */
  private readonly state = { revision: 0, closed: false };

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    this.check(key);
    return this.read<T>(key);
  }

  /** Scans every key: fine for tests and small embedded use, O(n log n) per call. */
  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    this.check();
    const keys = [...this.entries.keys()].filter((k) => k.startsWith(prefix)).sort();
    return keys.map((k) => this.read<T>(k)!);
  }

  async create<T>(key: string, value: T): Promise<CreateResult<T>> {
    this.check(key);
    const json = encodeValue(key, value);
    const existing = this.read<T>(key);
    if (existing) return { created: false, existing };
    return { created: true, version: this.write(key, json) };
  }

  /**
   * Made of `create` calls started in one synchronous turn: a MemoryStore's create checks and writes
   * before it returns, so nothing can come between them (all or none, like the durable backends'
   * transactions), and entries get increasing versions in order. Going through `create` keeps a
   * test's wrapper that overrides it (to delay or fail writes) in the path; for such a wrapper,
   * creates that land after others are undone.
   */
  async createMany(entries: { key: string; value: unknown }[]): Promise<CreateManyResult> {
    this.check();
    validateKeys(entries, 'createMany');
    const existing = entries.flatMap((e) => this.read(e.key) ?? []);
    if (existing.length > 0) return { created: false, existing };
    const settled = await Promise.allSettled(entries.map((e) => this.create(e.key, e.value)));
    const made = settled.flatMap((r, i) =>
      r.status === 'fulfilled' && r.value.created ? [{ key: entries[i]!.key, version: r.value.version }] : [],
    );
    if (made.length === entries.length) return { created: true, versions: made.map((m) => m.version) };
    for (const m of made) await this.delete(m.key, m.version);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return {
      created: false,
      existing: settled.flatMap((r) =>
        r.status === 'fulfilled' && !r.value.created ? [r.value.existing] : [],
      ),
    };
  }

  async update<T>(key: string, value: T, version: Version): Promise<CasResult<T>> {
    this.check(key);
    const json = encodeValue(key, value);
    const e = this.entries.get(key);
    if (!e || String(e.revision) !== version) return { ok: false, current: this.read<T>(key) };
    return { ok: true, version: this.write(key, json) };
  }

  async delete(key: string, version: Version): Promise<CasResult> {
    this.check(key);
    const e = this.entries.get(key);
    if (!e || String(e.revision) !== version) return { ok: false, current: this.read(key) };
    this.entries.delete(key);
    const v = String(++this.state.revision);
    this.emit(key, v);
    return { ok: true, version: v };
  }

  /** Checked and done in one synchronous turn, like `delete`: nothing can come between. */
  async deleteMany(entries: { key: string; version: Version }[]): Promise<DeleteManyResult> {
    this.check();
    validateKeys(entries, 'deleteMany');
    for (const e of entries) {
      const held = this.entries.get(e.key);
      if (!held || String(held.revision) !== e.version) return { ok: false };
    }
    return {
      ok: true,
      versions: entries.map((e) => {
        this.entries.delete(e.key);
        const v = String(++this.state.revision);
        this.emit(e.key, v);
        return v;
      }),
    };
  }

  watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, _onReset?: () => void): Watcher {
    this.check();
    // A memory watcher never falls behind, so onReset is never called.
    const l: Listener = { prefix, onEvent: onEvent as (ev: WatchEvent<unknown>) => void, closed: false };
    this.listeners.add(l);
    return {
      close: () => {
        l.closed = true;
        this.listeners.delete(l);
      },
    };
  }

  async close(): Promise<void> {
    this.state.closed = true;
    for (const l of this.listeners) l.closed = true;
    this.listeners.clear();
  }

  /** Number of keys held: for tests and status lines. */
  get size(): number {
    return this.entries.size;
  }

  private check(key?: string): void {
    if (this.state.closed) throw new StoreError('memory store is closed', { retryable: false });
    if (key !== undefined) validateKey(key);
  }

  private read<T>(key: string): Versioned<T> | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    return { key, value: decodeValue(key, e.json) as T, version: String(e.revision) };
  }

  private write(key: string, json: string): Version {
    const revision = ++this.state.revision;
    this.entries.set(key, { json, revision });
    const version = String(revision);
    this.emit(key, version, json);
    return version;
  }

  /**
   * Delivers an event (a put when `json` is given, else a delete) to the matching listeners on a
   * microtask, so a listener that writes to the store is never re-entered from inside the write that
   * triggered it. Microtasks run in order, so listeners see commit order.
   */
  private emit(key: string, version: Version, json?: string): void {
    let ev: WatchEvent<unknown> | undefined;
    for (const l of this.listeners) {
      if (!key.startsWith(l.prefix)) continue;
      // One event object per write, shared by its listeners, its value parsed on first read: a
      // listener that drops the event by version (its own write coming back) never pays the parse.
      ev ??= json === undefined ? { type: 'delete', key, version } : lazyPut(key, json, version);
      const e = ev;
      queueMicrotask(() => {
        if (l.closed) return;
        l.onEvent(e);
      });
    }
  }
}
