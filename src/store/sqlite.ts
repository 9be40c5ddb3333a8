/**
 * @module store/sqlite
 * `SqliteStore`: the embedded, durable default store (`sqlite:/var/lib/ipkeeper/ipkeeper.db`), on
 * Node's built-in `node:sqlite`. One file on one machine; several processes (agents, the CLI) may
 * share it.
 *
 * Durability: WAL journal with `synchronous=FULL`, so a write is fsynced to the WAL before its
 * promise resolves — an acknowledged write survives `kill -9` (that alone needs no fsync: the OS
 * still holds the pages) and a power cut, as far as the disk honours fsync.
 *
 * Schema (user_version 1):
 *
 *   kv      (key TEXT PK, value TEXT  -- JSON (codec.ts), version INTEGER -- revision of the write that made it)
 *   meta    ('revision' -> the last revision handed out; only grows)
 *   changes (revision INTEGER PK, key, type 'put'|'delete')  -- the last `changeLogSize` writes
 *
 * Every write takes the next revision, changes `kv` and appends to `changes` atomically, so revisions
 * are unique across the whole file, a recreated key gets a new version (DESIGN invariant 3), and the
 * change log has no holes except at its trimmed start.
 *
 * Group commit: an fsync costs milliseconds, so the writes that arrive in one turn of the event loop
 * share one transaction and one fsync:
 *
 *   create(a) ─┐ BEGIN IMMEDIATE, SAVEPOINT, insert a, RELEASE
 *   create(b) ─┤ SAVEPOINT, insert b, RELEASE            (same turn: joins the open transaction)
 *   update(c) ─┘ SAVEPOINT, update c, RELEASE
 *   setImmediate → COMMIT (one fsync) → all three promises resolve; or all reject if COMMIT fails
 *
 * Each write's statements run synchronously inside its call (`DatabaseSync` is synchronous, so no
 * other JavaScript interleaves), in a savepoint so a failing write undoes only itself. Its outcome —
 * won or lost, ok or conflict — is only reported after COMMIT, because it may rest on another write of
 * the same batch. Reads (get, list, watch polling) use a second connection, which sees committed data
 * only. Between processes the SQLite write lock serializes batches (`busy_timeout`).
 *
 * Watch: every event — from this instance or from another process — is read from the `changes` log in
 * revision order. A commit by this instance schedules a read at once (and keeps the values, so the
 * events carry exactly what was written); a timer polls every `pollIntervalMs` to see other
 * processes' writes. For those, the value is read from `kv`: a put already overwritten by a newer
 * write is skipped (the newer one follows in the log), so a watcher may miss intermediate values of a
 * key written elsewhere, never the latest, and per-key order holds. A watcher that falls behind the
 * trimmed start of the log gets `onReset` and must re-list.
 *
 * Cost: a `busy_timeout` wait blocks the event loop (the API is synchronous under the hood); a batch
 * holds the write lock for one event-loop turn plus one fsync.
 */
import { DatabaseSync } from 'node:sqlite';
import type { StatementSync } from 'node:sqlite';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { StoreError, validateKeys, validateKey } from './store.ts';
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
import { decodeValue, encodeValue, lazyPut } from './codec.ts';

export interface SqliteStoreOptions {
  /** `FULL` (default) fsyncs every commit; `NORMAL` only at checkpoints (a power cut may lose the last writes). */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a write waits for another process's lock before failing with a retryable StoreError. */
  busyTimeoutMs?: number;
  /** How often watchers look for writes made by other processes. */
  pollIntervalMs?: number;
  /** How many of the latest writes the `changes` log keeps for watchers that poll. */
  changeLogSize?: number;
}

export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
export const DEFAULT_POLL_INTERVAL_MS = 200;
export const DEFAULT_CHANGE_LOG_SIZE = 10_000;
const SCHEMA_VERSION = 1;
/** Largest number of log rows a single poll reads before yielding. */
const POLL_BATCH = 1_000;
/** A batch this large commits without waiting for the end of the event-loop turn. */
const MAX_BATCH_WRITES = 1_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL,
  version INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY NOT NULL,
  value INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS changes (
  revision INTEGER PRIMARY KEY,
  key TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('put', 'delete'))
) STRICT;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
`;

/** SQLite primary result codes (the low byte of an extended code) that a retry may cure. */
const RETRYABLE_CODES = new Set([
  5, // SQLITE_BUSY: another process held the lock past busy_timeout
  6, // SQLITE_LOCKED
  13, // SQLITE_FULL: the disk may get space back
]);

interface Row {
  value: string;
  version: number;
}

/** A row of `list` (a statement returning arrays): key, value, version. */
type ListRow = [key: string, value: string, version: number];

function rowsAsArrays(stmt: StatementSync): StatementSync {
  stmt.setReturnArrays(true);
  return stmt;
}

interface ChangeRow {
  revision: number;
  key: string;
  type: 'put' | 'delete';
}

interface SqlWatcher {
  prefix: string;
  onEvent: (ev: WatchEvent<unknown>) => void;
  onReset: (() => void) | undefined;
  /** Revision committed when watch() returned: only later events are delivered. */
  after: number;
  closed: boolean;
}

/** A write of this instance, kept for its watchers: `json` undefined for a delete. */
interface OwnWrite {
  rev: number;
  key: string;
  json: string | undefined;
}

/** The open transaction that the writes of this event-loop turn join. */
interface Batch {
  committed: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
  writes: OwnWrite[];
  size: number;
  timer: NodeJS.Immediate;
}

/**
 * Stores of this process with an open batch. A second instance on the same file in the same process
 * (two stores in one test, the CLI inside the agent) would block in BEGIN IMMEDIATE on the first one's
 * lock with no way for the first to commit — the thread is stuck waiting — so a new batch first
 * commits everyone else's.
 */
const openBatches = new Set<SqliteStore>();

/** Versions are decimal revisions; anything else can never match a stored row. */
function parseVersion(version: Version): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(version)) return undefined;
  const n = Number(version);
  return Number.isSafeInteger(n) ? n : undefined;
}

function openConnection(path: string, busyTimeoutMs: number, synchronous: string): DatabaseSync {
  const db = new DatabaseSync(path, { timeout: busyTimeoutMs });
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous};`);
  return db;
}

/**
 * The sqlite store. Methods reject with a StoreError: retryable for a lock held past the busy
 * timeout or a full disk; not retryable for an invalid key, a value JSON cannot carry, a corrupt row,
 * any other SQLite failure, or a call after `close()`.
 */
export class SqliteStore implements Store {
  readonly backend = 'sqlite';
  /** Absolute path of the database file. */
  readonly path: string;
  /** The connection that writes; inside a batch it also sees the batch's uncommitted rows. */
  private readonly db: DatabaseSync;
  /** The connection that reads: committed data only. */
  private readonly reader: DatabaseSync;
  private readonly pollIntervalMs: number;
  private readonly changeLogSize: number;
  /** Trim the log every this many revisions rather than on every write. */
  private readonly trimEvery: number;
  private closed = false;
  private batch: Batch | undefined;
  private commits = 0;

  private readonly watchers = new Set<SqlWatcher>();
  /** The last revision whose change has been handed to watchers (meaningful while any exist). */
  private cursor = 0;
  private readonly ownWrites = new Map<number, OwnWrite>();
  private pollQueued = false;
  private timer: NodeJS.Timeout | undefined;

  private readonly w: {
    begin: StatementSync;
    commit: StatementSync;
    rollback: StatementSync;
    savepoint: StatementSync;
    release: StatementSync;
    rollbackTo: StatementSync;
    get: StatementSync;
    revision: StatementSync;
    setRevision: StatementSync;
    insert: StatementSync;
    update: StatementSync;
    delete: StatementSync;
    log: StatementSync;
    trim: StatementSync;
  };
  private readonly r: {
    get: StatementSync;
    list: StatementSync;
    revision: StatementSync;
    changesAfter: StatementSync;
  };

  /**
   * Opens (creating if needed) the database at `path`: the parent directory with mode 0700, the file
   * with mode 0600.
   * @throws StoreError when the file cannot be created or opened, or holds a newer schema.
   */
  constructor(path: string, opts: SqliteStoreOptions = {}) {
    this.path = resolve(path);
    this.pollIntervalMs = opts.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.changeLogSize = Math.max(1, opts.changeLogSize ?? DEFAULT_CHANGE_LOG_SIZE);
    this.trimEvery = Math.max(1, Math.min(100, Math.floor(this.changeLogSize / 10)));
    const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    const synchronous = opts.synchronous ?? 'FULL';
    let db: DatabaseSync | undefined;
    let reader: DatabaseSync | undefined;
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      // Create the file ourselves so it gets 0600; SQLite gives its -wal and -shm files the same mode.
      closeSync(openSync(this.path, 'a', 0o600));
      db = openConnection(this.path, busyTimeoutMs, synchronous);
      db.exec('BEGIN IMMEDIATE');
      const { user_version: have } = db.prepare('PRAGMA user_version').get() as { user_version: number };
      if (have > SCHEMA_VERSION) {
        throw new StoreError(
          `sqlite store ${this.path} has schema version ${have}; this ipkeeper reads up to ${SCHEMA_VERSION} — upgrade ipkeeper`,
          { retryable: false },
        );
      }
      db.exec(SCHEMA);
      if (have < SCHEMA_VERSION) db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      db.exec('COMMIT');
      reader = openConnection(this.path, busyTimeoutMs, synchronous);
      this.db = db;
      this.reader = reader;
      this.w = {
        begin: db.prepare('BEGIN IMMEDIATE'),
        commit: db.prepare('COMMIT'),
        rollback: db.prepare('ROLLBACK'),
        savepoint: db.prepare('SAVEPOINT write'),
        release: db.prepare('RELEASE write'),
        rollbackTo: db.prepare('ROLLBACK TO write'),
        get: db.prepare('SELECT value, version FROM kv WHERE key = ?'),
        revision: db.prepare(`SELECT value FROM meta WHERE name = 'revision'`),
        setRevision: db.prepare(`UPDATE meta SET value = ? WHERE name = 'revision'`),
        insert: db.prepare(
          'INSERT INTO kv (key, value, version) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING',
        ),
        update: db.prepare('UPDATE kv SET value = ?, version = ? WHERE key = ? AND version = ?'),
        delete: db.prepare('DELETE FROM kv WHERE key = ? AND version = ?'),
        log: db.prepare('INSERT INTO changes (revision, key, type) VALUES (?, ?, ?)'),
        trim: db.prepare('DELETE FROM changes WHERE revision <= ?'),
      };
      this.r = {
        get: reader.prepare('SELECT value, version FROM kv WHERE key = ?'),
        list: rowsAsArrays(
          reader.prepare('SELECT key, value, version FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
        ),
        revision: reader.prepare(`SELECT value FROM meta WHERE name = 'revision'`),
        changesAfter: reader.prepare(
          'SELECT revision, key, type FROM changes WHERE revision > ? ORDER BY revision LIMIT ?',
        ),
      };
    } catch (e) {
      for (const c of [db, reader]) {
        if (!c?.isOpen) continue;
        if (c.isTransaction) c.exec('ROLLBACK');
        c.close();
      }
      if (e instanceof StoreError) throw e;
      throw this.storeError('open', undefined, e);
    }
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    this.check(key);
    return this.run('get', key, () => this.read<T>(this.r.get, key));
  }

  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    this.check();
    return this.run('list', prefix, () => {
      // Keys are ASCII (validateKey), so every key starting with `prefix` sorts below prefix + U+10FFFF.
      // Rows as arrays: an agent's start lists every claim, and a row object per claim costs ~25%.
      const rows = this.r.list.all(prefix, `${prefix}\u{10FFFF}`) as unknown as ListRow[];
      return rows.map((row) => this.decode<T>(row[0], { value: row[1], version: row[2] }));
    });
  }

  async create<T>(key: string, value: T): Promise<CreateResult<T>> {
    this.check(key);
    const json = encodeValue(key, value);
    return this.write('create', key, (next): CreateResult<T> => {
      const rev = next();
      if (Number(this.w.insert.run(key, json, rev).changes) === 0) {
        return { created: false, existing: this.read<T>(this.w.get, key)! };
      }
      this.logged(rev, key, json);
      return { created: true, version: String(rev) };
    });
  }

  /** All in one savepoint of the batch: the keys are checked first, under the write lock, then written. */
  async createMany(entries: { key: string; value: unknown }[]): Promise<CreateManyResult> {
    this.check();
    validateKeys(entries, 'createMany');
    const jsons = entries.map((e) => encodeValue(e.key, e.value));
    return this.write('createMany', entries[0]?.key ?? '(none)', (next): CreateManyResult => {
      const existing = entries.flatMap((e) => this.read(this.w.get, e.key) ?? []);
      if (existing.length > 0) return { created: false, existing };
      const versions: Version[] = [];
      entries.forEach((e, i) => {
        const rev = next();
        if (Number(this.w.insert.run(e.key, jsons[i] as string, rev).changes) === 0) {
          // Cannot happen: the keys were absent under this same write lock. Throwing rolls the savepoint back.
          throw new Error(`key ${e.key} appeared inside the transaction`);
        }
        this.logged(rev, e.key, jsons[i]);
        versions.push(String(rev));
      });
      return { created: true, versions };
    });
  }

  async update<T>(key: string, value: T, version: Version): Promise<CasResult<T>> {
    this.check(key);
    const json = encodeValue(key, value);
    const want = parseVersion(version);
    return this.write('update', key, (next): CasResult<T> => {
      const rev = next();
      if (want === undefined || Number(this.w.update.run(json, rev, key, want).changes) === 0) {
        return { ok: false, current: this.read<T>(this.w.get, key) };
      }
      this.logged(rev, key, json);
      return { ok: true, version: String(rev) };
    });
  }

  async delete(key: string, version: Version): Promise<CasResult> {
    this.check(key);
    const want = parseVersion(version);
    return this.write('delete', key, (next): CasResult => {
      const rev = next();
      if (want === undefined || Number(this.w.delete.run(key, want).changes) === 0) {
        return { ok: false, current: this.read(this.w.get, key) };
      }
      this.logged(rev, key, undefined);
      return { ok: true, version: String(rev) };
    });
  }

  /** In one savepoint of the batch: every key's version is checked first, under the write lock, then each is deleted. */
  async deleteMany(entries: { key: string; version: Version }[]): Promise<DeleteManyResult> {
    this.check();
    validateKeys(entries, 'deleteMany');
    const wants = entries.map((e) => parseVersion(e.version));
    return this.write('deleteMany', entries[0]?.key ?? '(none)', (next): DeleteManyResult => {
      for (const [i, e] of entries.entries()) {
        const row = this.w.get.get(e.key) as Row | undefined;
        if (row === undefined || wants[i] === undefined || row.version !== wants[i]) return { ok: false };
      }
      const versions: Version[] = [];
      for (const [i, e] of entries.entries()) {
        const rev = next();
        if (Number(this.w.delete.run(e.key, wants[i] as number).changes) === 0) {
          // Cannot happen: the versions were checked under this same write lock. Throwing rolls the savepoint back.
          throw new Error(`key ${e.key} changed inside the transaction`);
        }
        this.logged(rev, e.key, undefined);
        versions.push(String(rev));
      }
      return { ok: true, versions };
    });
  }

  watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void): Watcher {
    this.check();
    const head = this.run('watch', prefix, () => this.committedRevision());
    if (this.watchers.size === 0) {
      this.cursor = head;
      this.ownWrites.clear();
      this.timer = setInterval(() => this.poll(), this.pollIntervalMs);
      // Watching alone must not keep the process alive.
      this.timer.unref();
    }
    const w: SqlWatcher = {
      prefix,
      onEvent: onEvent as (ev: WatchEvent<unknown>) => void,
      onReset,
      after: head,
      closed: false,
    };
    this.watchers.add(w);
    return { close: () => this.unwatch(w) };
  }

  /** Commits the open batch (its writes resolve), stops the watchers and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.commitBatch();
    this.closed = true;
    for (const w of [...this.watchers]) this.unwatch(w);
    this.db.close();
    this.reader.close();
  }

  /**
   * A status read from this instance's own connections, for logs, `ipkeeper status` and tests:
   * `commits` counts the transactions this instance committed (one per batch of writes).
   * @throws StoreError as get() does.
   */
  status(): {
    path: string;
    revision: number;
    keys: number;
    commits: number;
    journalMode: string;
    synchronous: string;
  } {
    this.check();
    return this.run('status', undefined, () => {
      const { journal_mode: journalMode } = this.db.prepare('PRAGMA journal_mode').get() as {
        journal_mode: string;
      };
      const { synchronous: sync } = this.db.prepare('PRAGMA synchronous').get() as { synchronous: number };
      const { keys } = this.reader.prepare('SELECT count(*) AS keys FROM kv').get() as { keys: number };
      return {
        path: this.path,
        revision: this.committedRevision(),
        keys,
        commits: this.commits,
        journalMode,
        synchronous: ['OFF', 'NORMAL', 'FULL', 'EXTRA'][sync] ?? String(sync),
      };
    });
  }

  /**
   * Reads the change log now instead of at the next timer tick. For tests and for callers that know
   * another process just wrote.
   */
  pollNow(): void {
    this.poll();
  }

  // ---- writes ----

  /**
   * Runs one write's statements inside the open batch (opening one if needed), in a savepoint, and
   * resolves with its outcome once the batch has committed. `fn` gets `next()`, the revision this
   * write would take.
   */
  private async write<R>(op: string, key: string, fn: (next: () => number) => R): Promise<R> {
    const batch = this.run(op, key, () => this.joinBatch());
    const logged = batch.writes.length;
    let result: R;
    try {
      this.w.savepoint.run();
      result = fn(() => (this.w.revision.get() as { value: number }).value + 1);
      this.w.release.run();
    } catch (e) {
      // A failed write undoes only itself and the batch goes on — unless SQLite rolled back the whole
      // transaction (it does on some I/O, disk-full and memory errors): then the batch is lost.
      try {
        this.w.rollbackTo.run();
        this.w.release.run();
      } catch {
        // No savepoint left to roll back to: handled just below.
      }
      // What the write logged before it failed is undone with it: its revisions are taken again by
      // the next writes of the batch, which the watchers must get, not these.
      batch.writes.length = logged;
      if (!this.db.isTransaction) this.abortBatch(e);
      throw this.storeError(op, key, e);
    } finally {
      batch.size++;
      if (batch.size >= MAX_BATCH_WRITES) this.commitBatch();
    }
    try {
      await batch.committed;
    } catch (e) {
      throw this.storeError(op, key, e);
    }
    return result;
  }

  /** The open batch, or a new one: BEGIN IMMEDIATE now, COMMIT at the end of this event-loop turn. */
  private joinBatch(): Batch {
    if (this.batch) return this.batch;
    for (const other of openBatches) if (other !== this) other.commitBatch();
    this.w.begin.run();
    let resolve!: () => void;
    let reject!: (e: unknown) => void;
    const committed = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Writers that never await their result must not turn a failed commit into an unhandled rejection.
    committed.catch(() => {});
    this.batch = {
      committed,
      resolve,
      reject,
      writes: [],
      size: 0,
      timer: setImmediate(() => this.commitBatch()),
    };
    openBatches.add(this);
    return this.batch;
  }

  /** Commits the open batch, if any: its writes resolve, or all reject if COMMIT fails. */
  private commitBatch(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    openBatches.delete(this);
    clearImmediate(b.timer);
    try {
      this.w.commit.run();
    } catch (e) {
      if (this.db.isTransaction) this.w.rollback.run();
      b.reject(e);
      return;
    }
    this.commits++;
    b.resolve();
    if (this.watchers.size > 0 && b.writes.length > 0) this.handOver(b.writes);
  }

  /**
   * A committed batch's writes, to the watchers. When the batch follows the last change handed over
   * (no other process wrote in between: under BEGIN IMMEDIATE a batch's revisions follow one
   * another), they go straight from memory on a microtask, in the order a poll would give them;
   * otherwise through the change log, after the others' changes. Either way the watchers get this
   * process's writes without a read of the value.
   */
  private handOver(writes: OwnWrite[]): void {
    const first = (writes[0] as OwnWrite).rev;
    const last = (writes[writes.length - 1] as OwnWrite).rev;
    if (this.cursor === first - 1 && last - first === writes.length - 1) {
      this.cursor = last;
      queueMicrotask(() => {
        for (const ow of writes) this.handOwn(ow);
      });
      return;
    }
    for (const ow of writes) this.ownWrites.set(ow.rev, ow);
    this.queuePoll();
  }

  /** One write of this process, to each watcher of its key: a value of its own, parsed if read. */
  private handOwn(ow: OwnWrite): void {
    if (this.closed) return;
    const version = String(ow.rev);
    for (const w of this.watchers) {
      if (w.closed || ow.rev <= w.after || !ow.key.startsWith(w.prefix)) continue;
      const ev: WatchEvent<unknown> =
        ow.json === undefined ? { type: 'delete', key: ow.key, version } : lazyPut(ow.key, ow.json, version);
      this.deliver(() => {
        if (!w.closed) w.onEvent(ev);
      });
    }
  }

  /** Fails every write of the open batch with `cause` (the transaction is already gone). */
  private abortBatch(cause: unknown): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    openBatches.delete(this);
    clearImmediate(b.timer);
    b.reject(cause);
  }

  /** The bookkeeping of a successful write, inside its savepoint: revision, change log, trim. */
  private logged(rev: number, key: string, json: string | undefined): void {
    this.w.setRevision.run(rev);
    this.w.log.run(rev, key, json === undefined ? 'delete' : 'put');
    if (rev % this.trimEvery === 0) this.w.trim.run(rev - this.changeLogSize);
    this.batch?.writes.push({ rev, key, json });
  }

  // ---- reads and errors ----

  private check(key?: string): void {
    if (this.closed) throw new StoreError(`sqlite store ${this.path} is closed`, { retryable: false });
    if (key !== undefined) validateKey(key);
  }

  private committedRevision(): number {
    return (this.r.revision.get() as { value: number }).value;
  }

  private read<T>(stmt: StatementSync, key: string): Versioned<T> | undefined {
    const row = stmt.get(key) as Row | undefined;
    return row === undefined ? undefined : this.decode<T>(key, row);
  }

  private decode<T>(key: string, row: Row): Versioned<T> {
    let value: T;
    try {
      value = decodeValue(key, row.value) as T;
    } catch (cause) {
      throw new StoreError(`sqlite store ${this.path}: the value of "${key}" is not JSON (corrupt row)`, {
        retryable: false,
        cause,
      });
    }
    return { key, value, version: String(row.version) };
  }

  /** Runs a database step, turning SQLite errors into StoreErrors. */
  private run<R>(op: string, key: string | undefined, fn: () => R): R {
    try {
      return fn();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw this.storeError(op, key, e);
    }
  }

  private storeError(op: string, key: string | undefined, cause: unknown): StoreError {
    if (cause instanceof StoreError) return cause;
    const errcode = (cause as { errcode?: unknown } | null)?.errcode;
    const retryable = typeof errcode === 'number' && RETRYABLE_CODES.has(errcode & 0xff);
    const what = key === undefined ? op : `${op} "${key}"`;
    const msg = cause instanceof Error ? cause.message : String(cause);
    const hint = retryable ? ' (retry)' : '';
    return new StoreError(`sqlite store ${this.path}: ${what} failed: ${msg}${hint}`, { retryable, cause });
  }

  // ---- watch ----

  private unwatch(w: SqlWatcher): void {
    w.closed = true;
    if (!this.watchers.delete(w) || this.watchers.size > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.ownWrites.clear();
  }

  private queuePoll(): void {
    if (this.pollQueued) return;
    this.pollQueued = true;
    queueMicrotask(() => {
      this.pollQueued = false;
      this.poll();
    });
  }

  /** Hands every committed change after the cursor to the watchers, in revision order. */
  private poll(): void {
    if (this.closed || this.watchers.size === 0) return;
    let rows: ChangeRow[];
    try {
      const head = this.committedRevision();
      if (head <= this.cursor) return;
      rows = this.r.changesAfter.all(this.cursor, POLL_BATCH) as unknown as ChangeRow[];
      if (rows[0]?.revision !== this.cursor + 1) {
        // The log was trimmed past our cursor: changes were lost, watchers must re-list.
        this.cursor = head;
        this.ownWrites.clear();
        for (const w of [...this.watchers]) {
          w.after = Math.max(w.after, head);
          if (!w.closed && w.onReset) this.deliver(w.onReset);
        }
        return;
      }
    } catch {
      // A failed read (e.g. the file is briefly locked) changes nothing: the next tick tries again
      // from the same cursor, so no event is lost.
      return;
    }
    for (const row of rows) {
      this.cursor = row.revision;
      const own = this.ownWrites.get(row.revision);
      this.ownWrites.delete(row.revision);
      if (own !== undefined && own.key === row.key) {
        this.handOwn(own);
        continue;
      }
      let ev: WatchEvent<unknown> | undefined;
      try {
        ev = this.eventFor(row);
      } catch {
        // A corrupt value written by another process: skip the event rather than stall every
        // watcher; get/list report the corruption to whoever reads the key.
        continue;
      }
      if (ev === undefined) continue;
      for (const w of this.watchers) {
        if (w.closed || row.revision <= w.after || !row.key.startsWith(w.prefix)) continue;
        const event = ev;
        this.deliver(() => {
          if (!w.closed) w.onEvent(structuredClone(event));
        });
      }
    }
    for (const rev of this.ownWrites.keys()) if (rev <= this.cursor) this.ownWrites.delete(rev);
    if (rows.length === POLL_BATCH) this.queuePoll();
  }

  /** The event of another process's change, its value read now (a corrupt one is skipped by the caller). */
  private eventFor(row: ChangeRow): WatchEvent<unknown> | undefined {
    const version = String(row.revision);
    if (row.type === 'delete') return { type: 'delete', key: row.key, version };
    // Another process wrote it: the value is in kv unless a later write replaced it.
    const now = this.r.get.get(row.key) as Row | undefined;
    if (now === undefined || now.version !== row.revision) return undefined;
    return { type: 'put', key: row.key, value: decodeValue(row.key, now.value), version };
  }

  /** Calls a listener; its exception must not stop delivery to the others, so it is rethrown apart. */
  private deliver(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}

/**
 * Opens a SqliteStore.
 * @throws StoreError as the constructor does.
 */
export async function openSqliteStore(path: string, opts?: SqliteStoreOptions): Promise<SqliteStore> {
  return new SqliteStore(path, opts);
}
