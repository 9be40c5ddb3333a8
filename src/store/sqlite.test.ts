/**
 * The sqlite store: the contract suite (with reopen), then what only this backend promises — file
 * modes, several instances and processes on one file, watching another process's writes, the
 * trimmed change log, error mapping — and `openStore` URL parsing. kill -9 durability is in
 * sqlite-crash.test.ts.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import fc from 'fast-check';
import { SqliteStore } from './sqlite.ts';
import { storeContract } from './contract.ts';
import { openStore, DEFAULT_STORE_URL } from './open.ts';
import { StoreError } from './store.ts';
import type { Store, WatchEvent } from './store.ts';
import { IpamError } from '../errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipkeeper-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(dir, `t${n++}.db`);
const WRITER = new URL('./crash-writer.ts', import.meta.url).pathname;

storeContract('SqliteStore contract', async () => new SqliteStore(freshPath(), { pollIntervalMs: 20 }), {
  reopen: async (s: Store) => {
    const path = (s as SqliteStore).path;
    await s.close();
    return new SqliteStore(path, { pollIntervalMs: 20 });
  },
});

/** Resolves with the events seen once `done(events)` holds (the watcher polls every 20 ms). */
function collect(
  s: SqliteStore,
  prefix: string,
  done: (evs: WatchEvent[]) => boolean,
): { events: WatchEvent[]; resets: number; finished: Promise<void>; close(): void } {
  const events: WatchEvent[] = [];
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const out = {
    events,
    resets: 0,
    finished,
    close: () => w.close(),
  };
  const w = s.watch(
    prefix,
    (ev) => {
      events.push(ev);
      if (done(events)) finish();
    },
    () => out.resets++,
  );
  return out;
}

/** Runs a crash-writer in race mode; resolves once it printed `ready`, with a handle to start it. */
function racer(db: string, tag: string, keys: number): Promise<{ go(): void; result: Promise<string[]> }> {
  return new Promise((resolveReady, reject) => {
    const child = spawn(process.execPath, ['--no-warnings', WRITER, 'race', db, tag, String(keys)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let ready = false;
    let finish!: (lines: string[]) => void;
    let fail!: (e: Error) => void;
    const result = new Promise<string[]>((res, rej) => {
      finish = res;
      fail = rej;
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (!ready && out.startsWith('ready\n')) {
        ready = true;
        resolveReady({ go: () => child.stdin.end('go\n'), result });
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (err += chunk));
    child.on('close', (code) => {
      const e = new Error(`racer ${tag} exited with ${code}: ${err}`);
      if (!ready) reject(e);
      else if (code !== 0) fail(e);
      else finish(out.split('\n').slice(1, -1));
    });
  });
}

describe('SqliteStore', () => {
  it('creates the parent directory 0700 and the database files 0600', async () => {
    const path = join(dir, 'modes', 'deeper', 'ipkeeper.db');
    const s = new SqliteStore(path);
    try {
      await s.create('claims/a', {});
      assert.equal(statSync(join(dir, 'modes')).mode & 0o777, 0o700);
      assert.equal(statSync(join(dir, 'modes', 'deeper')).mode & 0o777, 0o700);
      for (const f of [path, `${path}-wal`, `${path}-shm`]) {
        assert.equal(statSync(f).mode & 0o777, 0o600, f);
      }
    } finally {
      await s.close();
    }
  });

  it('runs in WAL mode with synchronous=FULL unless told otherwise', async () => {
    const full = new SqliteStore(freshPath());
    const normal = new SqliteStore(freshPath(), { synchronous: 'NORMAL' });
    try {
      assert.deepEqual(
        [full.status().journalMode, full.status().synchronous, normal.status().synchronous],
        ['wal', 'FULL', 'NORMAL'],
      );
      await full.create('claims/a', {});
      assert.deepEqual(
        { ...full.status(), path: '' },
        {
          path: '',
          revision: 1,
          keys: 1,
          commits: 1,
          journalMode: 'wal',
          synchronous: 'FULL',
        },
      );
    } finally {
      await full.close();
      await normal.close();
    }
  });

  it('commits the writes of one event-loop turn in one transaction, and reports each only after it', async () => {
    const path = freshPath();
    const s = new SqliteStore(path);
    const other = new SqliteStore(path);
    try {
      const pending = Array.from({ length: 100 }, (_, i) => s.create(`claims/k${i}`, { i }));
      // Not committed yet: another connection sees none of them.
      assert.equal(await other.get('claims/k0'), undefined);
      const results = await Promise.all(pending);
      assert.ok(results.every((r) => r.created));
      assert.equal(s.status().commits, 1);
      assert.equal((await other.list('claims/')).length, 100);
      // A write issued after the commit starts a new transaction.
      await s.create('claims/later', {});
      assert.equal(s.status().commits, 2);
    } finally {
      await s.close();
      await other.close();
    }
  });

  it('a write that fails inside a batch undoes only itself', async () => {
    const path = freshPath();
    const s = new SqliteStore(path);
    const raw = new DatabaseSync(path);
    try {
      await s.create('claims/bad', {});
      raw.exec(`UPDATE kv SET value = 'not json' WHERE key = 'claims/bad'`);
      const [a, bad, c] = await Promise.allSettled([
        s.create('claims/a', { a: 1 }),
        s.create('claims/bad', {}), // finds the corrupt row: fails
        s.create('claims/c', { c: 1 }),
      ]);
      assert.equal(a.status, 'fulfilled');
      assert.equal(c.status, 'fulfilled');
      assert.equal(bad.status, 'rejected');
      assert.ok(bad.reason instanceof StoreError && !bad.reason.retryable);
      assert.deepEqual((await s.get('claims/a'))?.value, { a: 1 });
      assert.deepEqual((await s.get('claims/c'))?.value, { c: 1 });
    } finally {
      raw.close();
      await s.close();
    }
  });

  it('close() commits the open batch first', async () => {
    const path = freshPath();
    const s = new SqliteStore(path);
    const p = s.create('claims/a', { n: 1 });
    await s.close();
    assert.ok((await p).created);
    const again = new SqliteStore(path);
    assert.deepEqual((await again.get('claims/a'))?.value, { n: 1 });
    await again.close();
  });

  it('two instances on one file: concurrent creates of the same keys have exactly one winner each', async () => {
    const path = freshPath();
    const a = new SqliteStore(path);
    const b = new SqliteStore(path);
    try {
      const keys = Array.from({ length: 40 }, (_, i) => `claims/default.10.0.0.${i}`);
      const results = await Promise.all(
        keys.flatMap((k) =>
          [a.create(k, { by: 'a' }), b.create(k, { by: 'b' })].map((p) => p.then((r) => ({ k, r }))),
        ),
      );
      for (const k of keys) {
        const mine = results.filter((x) => x.k === k);
        const winners = mine.filter((x) => x.r.created);
        assert.equal(winners.length, 1, k);
        const loser = mine.find((x) => !x.r.created)!.r;
        assert.ok(!loser.created);
        assert.equal(loser.existing.version, winners[0]!.r.created ? winners[0]!.r.version : '');
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('two processes on one file: racing creates of the same keys have exactly one winner each', async () => {
    const path = freshPath();
    const KEYS = 60;
    // Create the file first, so the racers do not also race to set it up.
    await new SqliteStore(path).close();
    const [p, q] = await Promise.all([racer(path, 'p', KEYS), racer(path, 'q', KEYS)]);
    p.go();
    q.go();
    const [pl, ql] = await Promise.all([p.result, q.result]);
    const won = (lines: string[]): Set<string> =>
      new Set(lines.filter((l) => l.startsWith('W ')).map((l) => l.slice(2)));
    const pw = won(pl);
    const qw = won(ql);
    assert.equal(pl.length, KEYS);
    assert.equal(ql.length, KEYS);
    assert.equal(pw.size + qw.size, KEYS, 'every key has a winner, and only one');
    for (const k of pw) assert.ok(!qw.has(k), `${k} won by both`);
    const s = new SqliteStore(path);
    try {
      const stored = await s.list<{ by: string }>('race/');
      assert.equal(stored.length, KEYS);
      for (const e of stored)
        assert.ok((e.value.by === 'p' ? pw : qw).has(e.key), `${e.key} stored for the loser`);
    } finally {
      await s.close();
    }
  });

  it('a watcher in one instance sees the writes of another, in revision order', async () => {
    const path = freshPath();
    const a = new SqliteStore(path);
    const b = new SqliteStore(path, { pollIntervalMs: 20 });
    try {
      const w = collect(b, 'claims/', (evs) => evs.some((e) => e.key === 'claims/x' && e.type === 'delete'));
      const v1 = await a.create('claims/x', { n: 1 });
      assert.ok(v1.created);
      const vb = await b.create('claims/y', { n: 1 }); // b's own write, between a's
      assert.ok(vb.created);
      await a.create('ippools/p', {}); // another prefix
      const u = await a.update('claims/x', { n: 2 }, v1.version);
      assert.ok(u.ok);
      const d = await a.delete('claims/x', u.version);
      assert.ok(d.ok);
      await w.finished;
      w.close();
      assert.deepEqual(w.events, [
        { type: 'put', key: 'claims/x', value: { n: 1 }, version: v1.version },
        { type: 'put', key: 'claims/y', value: { n: 1 }, version: vb.version },
        // The put of { n: 2 } may be skipped: by the time b polled, a had deleted the key again.
        ...(w.events.length === 4
          ? [{ type: 'put', key: 'claims/x', value: { n: 2 }, version: u.version }]
          : []),
        { type: 'delete', key: 'claims/x', version: d.version },
      ]);
      assert.equal(w.resets, 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a write that fails after logging part of itself hands none of it to the watchers', async () => {
    const path = freshPath();
    const s = new SqliteStore(path, { pollIntervalMs: 1_000_000 });
    // The second insert of a createMany fails (as on a full disk) after the first was logged: the
    // savepoint undoes both, and the next write takes the first one's revision.
    const stmts = (s as unknown as { w: { insert: { run(...a: unknown[]): unknown } } }).w;
    const insert = stmts.insert;
    stmts.insert = {
      run: (...a: unknown[]) => {
        if (a[0] === 'claims/b') throw new Error('database or disk is full');
        return insert.run(...a);
      },
    };
    try {
      const events: WatchEvent[] = [];
      const w = s.watch('claims/', (ev) => events.push({ ...ev }));
      const [many, c] = await Promise.allSettled([
        s.createMany([
          { key: 'claims/a', value: { a: 1 } },
          { key: 'claims/b', value: { b: 1 } },
        ]),
        s.create('claims/c', { c: 1 }),
      ]);
      assert.equal(many.status, 'rejected');
      assert.ok(c.status === 'fulfilled' && c.value.created);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(events, [{ type: 'put', key: 'claims/c', value: { c: 1 }, version: c.value.version }]);
      // Alone in its batch, the failed write leaves nothing to hand over either.
      await s
        .createMany([
          { key: 'claims/d', value: { d: 1 } },
          { key: 'claims/b', value: { b: 1 } },
        ])
        .catch(() => undefined);
      await new Promise((r) => setImmediate(r));
      s.pollNow();
      assert.equal(events.length, 1, JSON.stringify(events));
      assert.equal(await s.get('claims/d'), undefined);
      // Another instance's write takes the revision the failed one had: its own key and value.
      const other = new SqliteStore(path);
      const e = await other.create('claims/e', { e: 1 });
      await other.close();
      assert.ok(e.created);
      s.pollNow();
      assert.deepEqual(events.slice(1), [
        { type: 'put', key: 'claims/e', value: { e: 1 }, version: e.version },
      ]);
      w.close();
    } finally {
      await s.close();
    }
  });

  it('each watcher gets its own copy of this instance’s writes, in commit order', async () => {
    const s = new SqliteStore(freshPath(), { pollIntervalMs: 1_000_000 });
    try {
      const one: WatchEvent[] = [];
      const two: WatchEvent[] = [];
      const w1 = s.watch('claims/', (ev) => {
        one.push(ev);
        // A watcher that changes what it got changes nobody else's.
        if (ev.type === 'put') (ev.value as { n: number }).n = -1;
      });
      const w2 = s.watch('claims/', (ev) => two.push({ ...ev }));
      const x = await s.create('claims/x', { n: 1 });
      const y = await s.create('claims/y', { n: 2 });
      assert.ok(x.created && y.created);
      const d = await s.delete('claims/x', x.version);
      assert.ok(d.ok);
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(two, [
        { type: 'put', key: 'claims/x', value: { n: 1 }, version: x.version },
        { type: 'put', key: 'claims/y', value: { n: 2 }, version: y.version },
        { type: 'delete', key: 'claims/x', version: d.version },
      ]);
      assert.equal(one.length, 3);
      assert.deepEqual((await s.get('claims/y'))?.value, { n: 2 });
      w1.close();
      w2.close();
    } finally {
      await s.close();
    }
  });

  it('a watcher gets every change once, in revision order, with its value: its own instance’s (all of them) and another’s, batched in turns (property)', async () => {
    const op = fc.record({
      by: fc.constantFrom('a', 'b'),
      kind: fc.constantFrom('create', 'createMany', 'update', 'delete'),
      key: fc.integer({ min: 0, max: 4 }),
      other: fc.integer({ min: 0, max: 4 }),
      n: fc.integer({ min: 0, max: 1000 }),
    });
    // Each inner array is one event-loop turn: its writes are issued together, so each instance
    // commits them as one batch (and a batch of one instance commits the other's open one first).
    const turns = fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(turns, fc.boolean(), async (plan, pollBetween) => {
        const path = freshPath();
        const a = new SqliteStore(path, { pollIntervalMs: 1_000_000 });
        const b = new SqliteStore(path, { pollIntervalMs: 1_000_000 });
        const events: { type: string; key: string; version: string; value?: unknown }[] = [];
        const w = a.watch('claims/', (ev) =>
          events.push(
            ev.type === 'put'
              ? { type: 'put', key: ev.key, version: ev.version, value: ev.value }
              : { ...ev },
          ),
        );
        // What each committed revision did, from the writes' own answers.
        const history = new Map<string, { key: string; value?: unknown; by: string }>();
        const latest = new Map<string, string>();
        try {
          for (const turn of plan) {
            const writes = turn.map(async (o) => {
              const s = o.by === 'a' ? a : b;
              const key = `claims/k${o.key}`;
              const value = { n: o.n, by: o.by };
              if (o.kind === 'create') {
                const r = await s.create(key, value);
                if (r.created) history.set(r.version, { key, value, by: o.by });
              } else if (o.kind === 'createMany') {
                const keys = [...new Set([key, `claims/k${o.other}`])];
                const r = await s.createMany(keys.map((k) => ({ key: k, value })));
                if (r.created)
                  keys.forEach((k, i) => history.set(r.versions[i]!, { key: k, value, by: o.by }));
              } else if (o.kind === 'update') {
                const r = await s.update(key, value, latest.get(key) ?? '1');
                if (r.ok) history.set(r.version, { key, value, by: o.by });
              } else {
                const r = await s.delete(key, latest.get(key) ?? '1');
                if (r.ok) history.set(r.version, { key, by: o.by });
              }
            });
            await Promise.all(writes);
            for (const [v, h] of history)
              if (!latest.has(h.key) || Number(v) > Number(latest.get(h.key))) latest.set(h.key, v);
            if (pollBetween) a.pollNow();
          }
          await new Promise((r) => setImmediate(r));
          a.pollNow();
          const versions = events.map((e) => Number(e.version));
          assert.deepEqual(
            versions,
            [...versions].sort((x, y) => x - y),
            'in revision order',
          );
          assert.equal(new Set(versions).size, versions.length, 'each change once');
          for (const e of events) {
            const h = history.get(e.version);
            assert.ok(h, `event at ${e.version} matches no committed write`);
            assert.equal(e.key, h.key);
            assert.equal(e.type, h.value === undefined ? 'delete' : 'put');
            if (e.type === 'put') assert.deepEqual(e.value, h.value);
          }
          // Every write of the watcher's own instance is handed over (another's may be skipped when
          // the key changed again before the poll); replayed, the events give what the store holds.
          for (const [v, h] of history)
            if (h.by === 'a') assert.ok(versions.includes(Number(v)), `own write at ${v} missing`);
          const replay = new Map<string, unknown>();
          for (const e of events) {
            if (e.type === 'put') replay.set(e.key, e.value);
            else replay.delete(e.key);
          }
          const stored = new Map((await a.list('claims/')).map((e) => [e.key, e.value]));
          assert.deepEqual(replay, stored);
        } finally {
          w.close();
          await a.close();
          await b.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('pollNow sees another instance’s write without waiting for the timer', async () => {
    const path = freshPath();
    const a = new SqliteStore(path);
    const b = new SqliteStore(path, { pollIntervalMs: 1_000_000 });
    try {
      const events: WatchEvent[] = [];
      const w = b.watch('claims/', (ev) => events.push(ev));
      const r = await a.create('claims/x', { n: 1 });
      assert.ok(r.created);
      assert.deepEqual(events, []);
      b.pollNow();
      assert.deepEqual(events, [{ type: 'put', key: 'claims/x', value: { n: 1 }, version: r.version }]);
      w.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a watcher that falls behind the trimmed change log gets onReset, then resumes', async () => {
    const path = freshPath();
    const a = new SqliteStore(path, { changeLogSize: 10 });
    const b = new SqliteStore(path, { pollIntervalMs: 1_000_000 });
    try {
      const events: WatchEvent[] = [];
      let resets = 0;
      const w = b.watch(
        'claims/',
        (ev) => events.push(ev),
        () => resets++,
      );
      for (let i = 0; i < 30; i++) assert.ok((await a.create(`claims/k${i}`, {})).created);
      b.pollNow();
      assert.equal(resets, 1);
      assert.deepEqual(events, []);
      const r = await a.create('claims/after', {});
      assert.ok(r.created);
      b.pollNow();
      assert.equal(resets, 1);
      assert.deepEqual(events, [{ type: 'put', key: 'claims/after', value: {}, version: r.version }]);
      w.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('keeps only the last changeLogSize entries of the change log', async () => {
    const path = freshPath();
    const s = new SqliteStore(path, { changeLogSize: 20 });
    for (let i = 0; i < 100; i++) await s.create(`claims/k${i}`, {});
    await s.close();
    const raw = new DatabaseSync(path);
    try {
      const { count, lo } = raw
        .prepare('SELECT count(*) AS count, min(revision) AS lo FROM changes')
        .get() as {
        count: number;
        lo: number;
      };
      assert.ok(count >= 20 && count <= 22, `kept ${count}`);
      assert.ok(lo <= 100 - 19, `oldest kept ${lo}`);
    } finally {
      raw.close();
    }
  });

  it('a lock held past busy_timeout is a retryable StoreError, and leaves no transaction behind', async () => {
    const path = freshPath();
    const s = new SqliteStore(path, { busyTimeoutMs: 30 });
    const raw = new DatabaseSync(path);
    try {
      raw.exec('BEGIN IMMEDIATE');
      await assert.rejects(s.create('claims/a', {}), (e: unknown) => {
        assert.ok(e instanceof StoreError);
        assert.equal(e.retryable, true);
        assert.match(e.message, /claims\/a/);
        return true;
      });
      raw.exec('ROLLBACK');
      assert.ok((await s.create('claims/a', {})).created);
    } finally {
      raw.close();
      await s.close();
    }
  });

  it('a corrupt row is a StoreError that is not retryable', async () => {
    const path = freshPath();
    const s = new SqliteStore(path);
    const raw = new DatabaseSync(path);
    try {
      await s.create('claims/a', { ok: true });
      raw.exec(`UPDATE kv SET value = '{not json' WHERE key = 'claims/a'`);
      for (const p of [s.get('claims/a'), s.list('claims/')]) {
        await assert.rejects(
          p,
          (e: unknown) => e instanceof StoreError && !e.retryable && /claims\/a/.test(e.message),
        );
      }
    } finally {
      raw.close();
      await s.close();
    }
  });

  it('refuses a file with a newer schema, naming the fix', () => {
    const path = freshPath();
    const raw = new DatabaseSync(path);
    raw.exec('PRAGMA user_version = 99');
    raw.close();
    assert.throws(
      () => new SqliteStore(path),
      (e: unknown) => e instanceof StoreError && !e.retryable && /schema version 99.*upgrade/.test(e.message),
    );
  });

  it('a path that cannot be created is a StoreError naming it', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const path = join(file, 'sub', 'x.db');
    assert.throws(
      () => new SqliteStore(path),
      (e: unknown) => e instanceof StoreError && !e.retryable && e.message.includes(path),
    );
  });

  it('rejects calls after close() with a StoreError, and stops watchers', async () => {
    const s = new SqliteStore(freshPath());
    const events: WatchEvent[] = [];
    s.watch('claims/', (ev) => events.push(ev));
    await s.close();
    await assert.rejects(s.get('claims/a'), StoreError);
    await assert.rejects(s.create('claims/a', {}), StoreError);
    assert.throws(() => s.watch('claims/', () => {}), StoreError);
    s.pollNow();
    assert.deepEqual(events, []);
  });
});

describe('openStore', () => {
  it('memory: opens a MemoryStore', async () => {
    const s = await openStore('memory:');
    assert.equal(s.backend, 'memory');
    await s.close();
  });

  const sqliteCases: { name: string; url: (path: string) => string }[] = [
    { name: 'absolute path', url: (p) => `sqlite:${p}` },
    { name: 'relative path', url: (p) => `sqlite:${relative(process.cwd(), p)}` },
    { name: 'sqlite:/// form', url: (p) => `sqlite://${p}` },
    { name: 'upper-case scheme', url: (p) => `SQLITE:${p}` },
  ];
  for (const c of sqliteCases) {
    it(`sqlite: ${c.name} opens that file`, async () => {
      const path = freshPath();
      const s = await openStore(c.url(path));
      try {
        assert.equal(s.backend, 'sqlite');
        assert.equal((s as SqliteStore).path, path);
        assert.ok(existsSync(path));
      } finally {
        await s.close();
      }
    });
  }

  it('passes sqlite options through', async () => {
    const path = freshPath();
    const s = await openStore(`sqlite:${path}`, { sqlite: { changeLogSize: 5 } });
    for (let i = 0; i < 30; i++) await s.create(`claims/k${i}`, {});
    await s.close();
    const raw = new DatabaseSync(path);
    const { count } = raw.prepare('SELECT count(*) AS count FROM changes').get() as { count: number };
    raw.close();
    assert.ok(count <= 6, `kept ${count}`);
  });

  it('the default URL is the embedded store under /var/lib/ipkeeper', () => {
    assert.equal(DEFAULT_STORE_URL, 'sqlite:/var/lib/ipkeeper/ipkeeper.db');
  });

  const BAD: { name: string; url: string }[] = [
    { name: 'empty', url: '' },
    { name: 'no scheme', url: '/var/lib/ipkeeper/ipkeeper.db' },
    { name: 'unknown scheme', url: 'mysql://db:3306/ipam' },
    { name: 'sqlite without a path', url: 'sqlite:' },
    { name: 'sqlite with a host', url: 'sqlite://host/x.db' },
    { name: 'memory with a path', url: 'memory:/tmp/x' },
    { name: 'etcd without endpoints', url: 'etcd:' },
    { name: 'etcd with an empty authority', url: 'etcd://' },
  ];
  for (const c of BAD) {
    it(`rejects ${c.name} (${JSON.stringify(c.url)}) with INVALID_CONFIG naming the value and the accepted forms`, async () => {
      await assert.rejects(openStore(c.url), (e: unknown) => {
        assert.ok(e instanceof IpamError);
        assert.equal(e.code, 'INVALID_CONFIG');
        assert.ok(e.message.includes(`"${c.url}"`), e.message);
        assert.ok(e.message.includes('sqlite:/absolute/path.db') && e.message.includes('etcd://'), e.message);
        return true;
      });
    });
  }
});
