/**
 * @module store/contract
 * The one contract every `Store` backend must pass (memory, sqlite, etcd, kubernetes).
 *
 * `storeContract(name, open)` registers a `describe(name)` block of node:test tests. Each test calls
 * `open()` for a fresh, empty store — the backend's test file is responsible for isolation (a new
 * temp file, a new key prefix) — and closes it when done. The suite checks the promises DESIGN.md's
 * invariants rest on: create-if-absent has exactly one winner (invariant 1), update/delete with a
 * version precondition can never act on a newer or recreated value (invariant 3), and writes
 * acknowledged before a restart are still there after it (when `opts.reopen` is given).
 *
 * Waiting for watch events uses a generous deadline only as a hang guard (a test that never sees its
 * event fails instead of hanging); no assertion depends on how fast anything is.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StoreError, versionNewer } from './store.ts';
import type { Store, Version, WatchEvent, Watcher } from './store.ts';

export interface StoreContractOptions {
  /**
   * Closes `store` and opens the same underlying data again (a process restart). When given, the
   * durability tests run.
   */
  reopen?: (store: Store) => Promise<Store>;
  /** Hang guard for waiting on watch events, in ms (default 10 000). */
  watchDeadlineMs?: number;
  /**
   * Whether the backend writes several keys as one (`createMany`, `deleteMany`; default true). A
   * backend that cannot is held to not offering them.
   */
  manyKeys?: boolean;
}

/** Runs `fn` with a freshly opened store and always closes it. */
async function withStore(open: () => Promise<Store>, fn: (s: Store) => Promise<void>): Promise<void> {
  const s = await open();
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** Collects watch events and lets a test wait until a condition over them holds. */
class EventLog<T = unknown> {
  readonly events: WatchEvent<T>[] = [];
  resets = 0;
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  private readonly deadlineMs: number;

  constructor(deadlineMs: number) {
    this.deadlineMs = deadlineMs;
  }

  readonly onEvent = (ev: WatchEvent<T>): void => {
    this.events.push(ev);
    this.waiters = this.waiters.filter((w) => {
      if (!w.check()) return true;
      w.resolve();
      return false;
    });
  };

  readonly onReset = (): void => {
    this.resets++;
  };

  /** Resolves once `check()` holds; rejects after the hang-guard deadline, showing what arrived. */
  until(what: string, check: () => boolean): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`watch: still waiting for ${what}; got ${JSON.stringify(this.events)}`));
      }, this.deadlineMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push({ check, resolve: done });
    });
  }

  untilKeyEvent(key: string, type: 'put' | 'delete', version?: Version): Promise<void> {
    return this.until(`${type} ${key}${version === undefined ? '' : ` @${version}`}`, () =>
      this.events.some(
        (e) => e.key === key && e.type === type && (version === undefined || e.version === version),
      ),
    );
  }
}

async function mustCreate<T>(s: Store, key: string, value: T): Promise<Version> {
  const r = await s.create(key, value);
  assert.equal(r.created, true, `create ${key} should win on an empty store`);
  return r.created ? r.version : '';
}

/** Read-modify-write of `{ n }` at `key`, retrying on a version conflict. Returns the retries it took. */
async function increment(s: Store, key: string): Promise<number> {
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const cur = await s.get<{ n: number }>(key);
    assert.ok(cur, `${key} vanished`);
    const r = await s.update(key, { n: cur.value.n + 1 }, cur.version);
    if (r.ok) return attempt;
    assert.ok(r.current, `${key} vanished during update`);
  }
  throw new Error(`increment ${key}: no success after 10000 attempts`);
}

/** Keys that `validateKey` rejects, with why; every method must refuse them with a StoreError. */
const BAD_KEYS: { name: string; key: string }[] = [
  { name: 'empty', key: '' },
  { name: 'one segment', key: 'claims' },
  { name: 'four segments', key: 'a/b/c/d' },
  { name: 'parent directory', key: '../x' },
  { name: 'dot-dot inside a name', key: 'claims/a..b' },
  { name: 'upper case', key: 'Upper/x' },
  { name: 'empty name', key: 'claims/' },
  { name: 'leading slash', key: '/claims/a' },
  { name: 'space', key: 'claims/a b' },
  { name: 'leading dash', key: 'claims/-a' },
  { name: 'trailing dot', key: 'claims/a.' },
  { name: 'unicode', key: 'claims/ä' },
  { name: 'NUL byte', key: 'claims/a\u0000b' },
  { name: 'segment of 254 characters', key: `claims/${'a'.repeat(254)}` },
];

/**
 * Registers the contract tests for one backend.
 * @param name the describe() title, e.g. `MemoryStore contract`.
 * @param open returns a fresh, empty, isolated store each call.
 */
export function storeContract(
  name: string,
  open: () => Promise<Store>,
  opts: StoreContractOptions = {},
): void {
  const deadlineMs = opts.watchDeadlineMs ?? 10_000;

  describe(name, () => {
    it('names its backend', async () => {
      await withStore(open, async (s) => {
        assert.equal(typeof s.backend, 'string');
        assert.ok(s.backend.length > 0);
      });
    });

    describe('get and create', () => {
      it('get of a missing key is undefined', async () => {
        await withStore(open, async (s) => {
          assert.equal(await s.get('claims/missing'), undefined);
        });
      });

      it('create then get returns the value and the same version', async () => {
        await withStore(open, async (s) => {
          const v = await mustCreate(s, 'ippools/test-ippool', { subnet: '10.6.0.0/16' });
          assert.equal(typeof v, 'string');
          assert.deepEqual(await s.get('ippools/test-ippool'), {
            key: 'ippools/test-ippool',
            value: { subnet: '10.6.0.0/16' },
            version: v,
          });
        });
      });

      it('a second create of the same key loses and reports the first value', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/default.10.6.168.133', { owner: 'a' });
          const r = await s.create('claims/default.10.6.168.133', { owner: 'b' });
          assert.deepEqual(r, {
            created: false,
            existing: { key: 'claims/default.10.6.168.133', value: { owner: 'a' }, version: v1 },
          });
          assert.deepEqual((await s.get('claims/default.10.6.168.133'))?.value, { owner: 'a' });
        });
      });

      it('50 concurrent creates of one key: exactly one wins, the others see its value', async () => {
        await withStore(open, async (s) => {
          const results = await Promise.all(
            Array.from({ length: 50 }, (_, i) => s.create('claims/default.10.0.0.1', { owner: `pod-${i}` })),
          );
          const winners = results.flatMap((r, i) => (r.created ? [{ i, version: r.version }] : []));
          assert.equal(winners.length, 1, `winners: ${JSON.stringify(winners)}`);
          const w = winners[0]!;
          for (const r of results) {
            if (r.created) continue;
            assert.deepEqual(r.existing.value, { owner: `pod-${w.i}` });
            assert.equal(r.existing.version, w.version);
          }
          assert.deepEqual(await s.get('claims/default.10.0.0.1'), {
            key: 'claims/default.10.0.0.1',
            value: { owner: `pod-${w.i}` },
            version: w.version,
          });
        });
      });

      it('concurrent creates of different keys all win', async () => {
        await withStore(open, async (s) => {
          const results = await Promise.all(
            Array.from({ length: 50 }, (_, i) => s.create(`claims/default.10.0.1.${i}`, { i })),
          );
          assert.ok(results.every((r) => r.created));
          assert.equal((await s.list('claims/')).length, 50);
        });
      });
    });

    if (opts.manyKeys === false) {
      it('offers no createMany and no deleteMany: it cannot write several keys as one', async () => {
        await withStore(open, async (s) => {
          assert.equal(s.createMany, undefined);
          assert.equal(s.deleteMany, undefined);
        });
      });
    } else {
      describe('createMany (all or none)', () => {
        const many = (s: Store) => {
          assert.ok(s.createMany, `${s.backend} implements createMany`);
          return s.createMany.bind(s);
        };

        it('creates every key, each readable at its version', async () => {
          await withStore(open, async (s) => {
            const r = await many(s)([
              { key: 'claims/default.10.0.2.1', value: { i: 1 } },
              { key: 'claims/default.10.0.2.2', value: { i: 2 } },
              { key: 'endpoints/ns/pod', value: { pod: true } },
            ]);
            assert.ok(r.created);
            assert.equal(r.versions.length, 3);
            assert.deepEqual(await s.get('claims/default.10.0.2.1'), {
              key: 'claims/default.10.0.2.1',
              value: { i: 1 },
              version: r.versions[0],
            });
            assert.equal((await s.get('claims/default.10.0.2.2'))?.version, r.versions[1]);
            assert.deepEqual((await s.get('endpoints/ns/pod'))?.value, { pod: true });
          });
        });

        it('creates none when one key exists, and reports that one', async () => {
          await withStore(open, async (s) => {
            const v = await mustCreate(s, 'claims/default.10.0.2.2', { owner: 'a' });
            const r = await many(s)([
              { key: 'claims/default.10.0.2.1', value: { i: 1 } },
              { key: 'claims/default.10.0.2.2', value: { i: 2 } },
              { key: 'endpoints/ns/pod', value: {} },
            ]);
            assert.deepEqual(r, {
              created: false,
              existing: [{ key: 'claims/default.10.0.2.2', value: { owner: 'a' }, version: v }],
            });
            assert.equal(await s.get('claims/default.10.0.2.1'), undefined);
            assert.equal(await s.get('endpoints/ns/pod'), undefined);
            assert.deepEqual(
              (await s.list('claims/')).map((e) => e.key),
              ['claims/default.10.0.2.2'],
            );
          });
        });

        it('20 concurrent createMany sharing one key: exactly one wins all its keys, the others none', async () => {
          await withStore(open, async (s) => {
            const results = await Promise.all(
              Array.from({ length: 20 }, (_, i) =>
                many(s)([
                  { key: `claims/default.10.0.3.${i + 1}`, value: { i } },
                  { key: 'claims/default.10.0.3.200', value: { i } },
                ]),
              ),
            );
            const winners = results.flatMap((r, i) => (r.created ? [i] : []));
            assert.equal(winners.length, 1, `winners: ${JSON.stringify(winners)}`);
            const w = winners[0]!;
            for (const r of results) {
              if (!r.created)
                assert.deepEqual(
                  r.existing.map((e) => e.value),
                  [{ i: w }],
                );
            }
            assert.deepEqual(
              (await s.list('claims/')).map((e) => e.key).sort(),
              [`claims/default.10.0.3.${w + 1}`, 'claims/default.10.0.3.200'].sort(),
            );
          });
        });

        it('rejects a key given twice, and an invalid key, with a StoreError and writes nothing', async () => {
          await withStore(open, async (s) => {
            await assert.rejects(
              many(s)([
                { key: 'claims/default.10.0.4.1', value: 1 },
                { key: 'claims/default.10.0.4.1', value: 2 },
              ]),
              (e: unknown) => e instanceof StoreError && /given twice/.test(e.message),
            );
            await assert.rejects(
              many(s)([
                { key: 'claims/default.10.0.4.2', value: 1 },
                { key: 'claims/../x', value: 2 },
              ]),
              (e: unknown) => e instanceof StoreError && !e.retryable,
            );
            assert.deepEqual(await s.list('claims/'), []);
          });
        });

        it('is seen by a watcher as ordinary puts', async () => {
          await withStore(open, async (s) => {
            const log = new EventLog(deadlineMs);
            const w = s.watch('claims/', log.onEvent);
            try {
              const r = await many(s)([
                { key: 'claims/default.10.0.5.1', value: { i: 1 } },
                { key: 'claims/default.10.0.5.2', value: { i: 2 } },
              ]);
              assert.ok(r.created);
              await log.until('2 puts', () => log.events.length >= 2);
              assert.deepEqual(
                log.events.map((e) => [e.type, e.key, e.version]).sort(),
                [
                  ['put', 'claims/default.10.0.5.1', r.versions[0]],
                  ['put', 'claims/default.10.0.5.2', r.versions[1]],
                ].sort(),
              );
            } finally {
              w.close();
            }
          });
        });
      });

      describe('deleteMany (all or none)', () => {
        const many = (s: Store) => {
          assert.ok(s.deleteMany, `${s.backend} implements deleteMany`);
          return s.deleteMany.bind(s);
        };

        it('deletes every key at its version; a key made again is newer than its delete', async () => {
          await withStore(open, async (s) => {
            const a = await mustCreate(s, 'claims/default.10.0.6.1', { i: 1 });
            const b = await mustCreate(s, 'endpoints/ns/pod', { pod: true });
            const keep = await mustCreate(s, 'claims/default.10.0.6.2', { i: 2 });
            const r = await many(s)([
              { key: 'claims/default.10.0.6.1', version: a },
              { key: 'endpoints/ns/pod', version: b },
            ]);
            assert.ok(r.ok);
            assert.equal(r.versions.length, 2);
            for (const v of r.versions) assert.ok(versionNewer(v, b), `${v} after the last create ${b}`);
            assert.equal(await s.get('claims/default.10.0.6.1'), undefined);
            assert.equal(await s.get('endpoints/ns/pod'), undefined);
            assert.equal((await s.get('claims/default.10.0.6.2'))?.version, keep);
            const again = await mustCreate(s, 'claims/default.10.0.6.1', { i: 3 });
            assert.ok(versionNewer(again, r.versions[0]!));
          });
        });

        it('deletes none when a key holds another version or is missing', async () => {
          await withStore(open, async (s) => {
            const a = await mustCreate(s, 'claims/default.10.0.7.1', { i: 1 });
            const b = await mustCreate(s, 'claims/default.10.0.7.2', { i: 2 });
            const u = await s.update('claims/default.10.0.7.2', { i: 3 }, b);
            assert.ok(u.ok);
            assert.deepEqual(
              await many(s)([
                { key: 'claims/default.10.0.7.1', version: a },
                { key: 'claims/default.10.0.7.2', version: b },
              ]),
              { ok: false },
            );
            assert.deepEqual(
              await many(s)([
                { key: 'claims/default.10.0.7.1', version: a },
                { key: 'claims/default.10.0.7.9', version: a },
              ]),
              { ok: false },
            );
            assert.deepEqual(await many(s)([{ key: 'claims/default.10.0.7.1', version: 'x' }]), {
              ok: false,
            });
            assert.equal((await s.get('claims/default.10.0.7.1'))?.version, a);
            assert.deepEqual((await s.get('claims/default.10.0.7.2'))?.value, { i: 3 });
          });
        });

        it('rejects a key given twice, and an invalid key, with a StoreError and deletes nothing', async () => {
          await withStore(open, async (s) => {
            const a = await mustCreate(s, 'claims/default.10.0.8.1', { i: 1 });
            await assert.rejects(
              many(s)([
                { key: 'claims/default.10.0.8.1', version: a },
                { key: 'claims/default.10.0.8.1', version: a },
              ]),
              (e: unknown) =>
                e instanceof StoreError && !e.retryable && /deleteMany.*given twice/.test(e.message),
            );
            await assert.rejects(
              many(s)([
                { key: 'claims/default.10.0.8.1', version: a },
                { key: 'claims/../x', version: a },
              ]),
              (e: unknown) => e instanceof StoreError && !e.retryable,
            );
            assert.equal((await s.get('claims/default.10.0.8.1'))?.version, a);
          });
        });

        it('is seen by a watcher as ordinary deletes at the versions it returned', async () => {
          await withStore(open, async (s) => {
            const a = await mustCreate(s, 'claims/default.10.0.9.1', { i: 1 });
            const b = await mustCreate(s, 'claims/default.10.0.9.2', { i: 2 });
            const log = new EventLog(deadlineMs);
            const w = s.watch('claims/', log.onEvent);
            try {
              const r = await many(s)([
                { key: 'claims/default.10.0.9.1', version: a },
                { key: 'claims/default.10.0.9.2', version: b },
              ]);
              assert.ok(r.ok);
              await log.until('2 deletes', () => log.events.length >= 2);
              assert.deepEqual(
                log.events.map((e) => [e.type, e.key, e.version]).sort(),
                [
                  ['delete', 'claims/default.10.0.9.1', r.versions[0]],
                  ['delete', 'claims/default.10.0.9.2', r.versions[1]],
                ].sort(),
              );
            } finally {
              w.close();
            }
          });
        });
      });
    }

    describe('update', () => {
      it('with the current version succeeds and changes the version', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'ippools/p', { n: 1 });
          const r = await s.update('ippools/p', { n: 2 }, v1);
          assert.equal(r.ok, true);
          assert.ok(r.ok);
          assert.notEqual(r.version, v1);
          assert.deepEqual(await s.get('ippools/p'), {
            key: 'ippools/p',
            value: { n: 2 },
            version: r.version,
          });
        });
      });

      it('with a stale version fails, reports the current value and changes nothing', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'ippools/p', { n: 1 });
          const r2 = await s.update('ippools/p', { n: 2 }, v1);
          assert.ok(r2.ok);
          const r3 = await s.update('ippools/p', { n: 3 }, v1);
          assert.deepEqual(r3, {
            ok: false,
            current: { key: 'ippools/p', value: { n: 2 }, version: r2.version },
          });
          assert.deepEqual((await s.get('ippools/p'))?.value, { n: 2 });
        });
      });

      it('with a made-up version fails', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'ippools/p', { n: 1 });
          for (const bogus of ['', 'not-a-version', '0', '-1', '999999999999', `${v1}0`]) {
            if (bogus === v1) continue;
            const r = await s.update('ippools/p', { n: 9 }, bogus);
            assert.equal(r.ok, false, `version ${JSON.stringify(bogus)} must not match`);
          }
          assert.deepEqual(await s.get('ippools/p'), { key: 'ippools/p', value: { n: 1 }, version: v1 });
        });
      });

      it('of a missing key fails with current undefined and creates nothing', async () => {
        await withStore(open, async (s) => {
          assert.deepEqual(await s.update('ippools/ghost', { n: 1 }, '1'), { ok: false, current: undefined });
          assert.equal(await s.get('ippools/ghost'), undefined);
        });
      });

      it('of a deleted key with its last version fails', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'ippools/p', { n: 1 });
          assert.ok((await s.delete('ippools/p', v1)).ok);
          assert.deepEqual(await s.update('ippools/p', { n: 2 }, v1), { ok: false, current: undefined });
          assert.equal(await s.get('ippools/p'), undefined);
        });
      });

      it('10 concurrent updates from the same version: exactly one succeeds', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'ippools/p', { by: 'none' });
          const results = await Promise.all(
            Array.from({ length: 10 }, (_, i) => s.update('ippools/p', { by: `w${i}` }, v1)),
          );
          const ok = results.flatMap((r, i) => (r.ok ? [{ i, version: r.version }] : []));
          assert.equal(ok.length, 1);
          assert.deepEqual(await s.get('ippools/p'), {
            key: 'ippools/p',
            value: { by: `w${ok[0]!.i}` },
            version: ok[0]!.version,
          });
        });
      });
    });

    describe('delete', () => {
      it('with a stale version fails and keeps the value', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/c', { owner: 'a' });
          const r2 = await s.update('claims/c', { owner: 'b' }, v1);
          assert.ok(r2.ok);
          const d = await s.delete('claims/c', v1);
          assert.deepEqual(d, {
            ok: false,
            current: { key: 'claims/c', value: { owner: 'b' }, version: r2.version },
          });
          assert.deepEqual(await s.get('claims/c'), {
            key: 'claims/c',
            value: { owner: 'b' },
            version: r2.version,
          });
        });
      });

      it('with the current version removes the key', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/c', { owner: 'a' });
          const d = await s.delete('claims/c', v1);
          assert.equal(d.ok, true);
          assert.ok(d.ok);
          assert.equal(typeof d.version, 'string');
          assert.equal(await s.get('claims/c'), undefined);
          assert.deepEqual(await s.list('claims/'), []);
        });
      });

      it('of a missing key fails with current undefined', async () => {
        await withStore(open, async (s) => {
          assert.deepEqual(await s.delete('claims/ghost', '1'), { ok: false, current: undefined });
        });
      });

      it('twice with the same version: the second fails with current undefined', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/c', { owner: 'a' });
          assert.ok((await s.delete('claims/c', v1)).ok);
          assert.deepEqual(await s.delete('claims/c', v1), { ok: false, current: undefined });
        });
      });

      it('10 concurrent deletes with the same version: exactly one succeeds', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/c', { owner: 'a' });
          const results = await Promise.all(Array.from({ length: 10 }, () => s.delete('claims/c', v1)));
          assert.equal(results.filter((r) => r.ok).length, 1);
          for (const r of results) if (!r.ok) assert.equal(r.current, undefined);
        });
      });

      it('a concurrent update and delete from the same version: exactly one succeeds', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/c', { owner: 'a' });
          const [u, d] = await Promise.all([
            s.update('claims/c', { owner: 'b' }, v1),
            s.delete('claims/c', v1),
          ]);
          assert.equal(
            Number(u.ok) + Number(d.ok),
            1,
            `update ${JSON.stringify(u)}, delete ${JSON.stringify(d)}`,
          );
          const now = await s.get('claims/c');
          if (u.ok) assert.deepEqual(now, { key: 'claims/c', value: { owner: 'b' }, version: u.version });
          else assert.equal(now, undefined);
        });
      });
    });

    describe('versions', () => {
      it('differ after every write of one key', async () => {
        await withStore(open, async (s) => {
          const seen: Version[] = [await mustCreate(s, 'ippools/p', { n: 0 })];
          for (let n = 1; n <= 5; n++) {
            const r = await s.update('ippools/p', { n }, seen.at(-1)!);
            assert.ok(r.ok);
            seen.push(r.version);
            assert.equal((await s.get('ippools/p'))?.version, r.version);
          }
          assert.equal(new Set(seen).size, seen.length, `versions ${JSON.stringify(seen)}`);
        });
      });

      it('a recreated key gets a new version, and the old version cannot delete or update it', async () => {
        await withStore(open, async (s) => {
          const v1 = await mustCreate(s, 'claims/default.10.0.0.7', { owner: 'pod-a' });
          assert.ok((await s.delete('claims/default.10.0.0.7', v1)).ok);
          const v2 = await mustCreate(s, 'claims/default.10.0.0.7', { owner: 'pod-b' });
          assert.notEqual(v2, v1);
          // A late release of pod-a's claim must not free pod-b's address (DESIGN invariant 3).
          const d = await s.delete('claims/default.10.0.0.7', v1);
          assert.equal(d.ok, false);
          const u = await s.update('claims/default.10.0.0.7', { owner: 'pod-a' }, v1);
          assert.equal(u.ok, false);
          assert.deepEqual(await s.get('claims/default.10.0.0.7'), {
            key: 'claims/default.10.0.0.7',
            value: { owner: 'pod-b' },
            version: v2,
          });
        });
      });

      it('increase across the whole store, deletes included', async () => {
        await withStore(open, async (s) => {
          const seen: Version[] = [];
          const va = await mustCreate(s, 'claims/a', {});
          seen.push(va, await mustCreate(s, 'ippools/b', {}));
          const u = await s.update('claims/a', { n: 1 }, va);
          assert.ok(u.ok);
          seen.push(u.version);
          const d = await s.delete('claims/a', u.version);
          assert.ok(d.ok);
          seen.push(d.version, await mustCreate(s, 'claims/a', {}));
          for (let i = 1; i < seen.length; i++) {
            assert.ok(versionNewer(seen[i]!, seen[i - 1]!), `versions ${JSON.stringify(seen)} must increase`);
          }
        });
      });

      it('the same write on two keys gives two versions', async () => {
        await withStore(open, async (s) => {
          const a = await mustCreate(s, 'claims/a', {});
          const b = await mustCreate(s, 'claims/b', {});
          assert.notEqual(a, b);
        });
      });
    });

    describe('list', () => {
      const KEYS = [
        'claims/b',
        'claimsx/a',
        'claims/a.1',
        'claim/a',
        'claims/a',
        'ippools/a',
        'claims/a-1',
        'ippool-x/a',
        'endpoints/ns1/pod-1',
        'endpoints/ns1/pod-0',
        'endpoints/ns10/pod-0',
        'claims/0',
      ];

      const CASES: { name: string; prefix: string; want: string[] }[] = [
        {
          name: 'claims/ excludes claimsx/ and claim/',
          prefix: 'claims/',
          want: ['claims/0', 'claims/a', 'claims/a-1', 'claims/a.1', 'claims/b'],
        },
        { name: 'ippool/ does not match ippools/ or ippool-x/', prefix: 'ippool/', want: [] },
        { name: 'ippools/', prefix: 'ippools/', want: ['ippools/a'] },
        {
          name: 'a namespace: endpoints/ns1/ excludes ns10',
          prefix: 'endpoints/ns1/',
          want: ['endpoints/ns1/pod-0', 'endpoints/ns1/pod-1'],
        },
        {
          name: 'a prefix without a trailing slash is a plain string prefix',
          prefix: 'claims',
          want: ['claims/0', 'claims/a', 'claims/a-1', 'claims/a.1', 'claims/b', 'claimsx/a'],
        },
        { name: 'an exact key as prefix', prefix: 'claims/a.1', want: ['claims/a.1'] },
        { name: 'nothing under an unknown kind', prefix: 'vips/', want: [] },
      ];

      it('returns exactly the keys under a prefix, in key order, with values and versions', async () => {
        await withStore(open, async (s) => {
          const versions = new Map<string, Version>();
          for (const k of KEYS) versions.set(k, await mustCreate(s, k, { k }));
          for (const c of CASES) {
            const got = await s.list<{ k: string }>(c.prefix);
            assert.deepEqual(
              got.map((e) => e.key),
              c.want,
              c.name,
            );
            for (const e of got) {
              assert.deepEqual(e.value, { k: e.key }, c.name);
              assert.equal(e.version, versions.get(e.key), c.name);
            }
          }
        });
      });

      it('reflects updates and deletes', async () => {
        await withStore(open, async (s) => {
          const va = await mustCreate(s, 'claims/a', { n: 1 });
          const vb = await mustCreate(s, 'claims/b', { n: 1 });
          const ua = await s.update('claims/a', { n: 2 }, va);
          assert.ok(ua.ok);
          assert.ok((await s.delete('claims/b', vb)).ok);
          assert.deepEqual(await s.list('claims/'), [
            { key: 'claims/a', value: { n: 2 }, version: ua.version },
          ]);
        });
      });

      it('of a large prefix returns every key', async () => {
        await withStore(open, async (s) => {
          const want: string[] = [];
          await Promise.all(
            Array.from({ length: 300 }, (_, i) => {
              const k = `claims/net1.10.1.${Math.floor(i / 256)}.${i % 256}`;
              want.push(k);
              return s.create(k, { i });
            }),
          );
          want.sort();
          assert.deepEqual(
            (await s.list('claims/')).map((e) => e.key),
            want,
          );
        });
      });
    });

    describe('values', () => {
      const VALUES: { name: string; value: unknown }[] = [
        {
          name: 'nested objects and arrays',
          value: { a: { b: { c: [1, 2, { d: null, e: true, f: false }] } }, g: [], h: {} },
        },
        { name: 'unicode', value: { s: 'żółć — 中文 — 🙂 — e\u0301 — \u2028 — "\\\'\n\t' } },
        { name: 'numbers', value: { int: 42, neg: -7, float: 3.25, big: 2 ** 53 - 1, tiny: 5e-324 } },
        { name: 'a large string (~100 KB)', value: { blob: 'x'.repeat(50_000) + 'ü'.repeat(25_000) } },
        { name: 'a top-level string', value: 'just a string' },
        { name: 'a top-level number', value: 0 },
        { name: 'a top-level null', value: null },
        { name: 'a top-level array', value: [1, 'two', { three: 3 }] },
        { name: 'an empty object', value: {} },
      ];

      for (const c of VALUES) {
        it(`round-trip as JSON: ${c.name}`, async () => {
          await withStore(open, async (s) => {
            const v = await mustCreate(s, 'values/v', c.value);
            assert.deepEqual(await s.get('values/v'), { key: 'values/v', value: c.value, version: v });
            assert.deepEqual(await s.list('values/'), [{ key: 'values/v', value: c.value, version: v }]);
            const u = await s.update('values/v', { wrapped: c.value }, v);
            assert.ok(u.ok);
            assert.deepEqual((await s.get('values/v'))?.value, { wrapped: c.value });
          });
        });
      }

      it('round-trip generated JSON values', async () => {
        await withStore(open, async (s) => {
          let i = 0;
          await fc.assert(
            fc.asyncProperty(fc.jsonValue(), async (value) => {
              const key = `values/g${i++}`;
              // What JSON can carry: -0 becomes 0, like on any wire.
              const want = JSON.parse(JSON.stringify(value)) as unknown;
              const v = await mustCreate(s, key, value);
              assert.deepEqual(await s.get(key), { key, value: want, version: v });
            }),
            { numRuns: 40 },
          );
        });
      });

      it('are copies: mutating a written or read object does not change the store', async () => {
        await withStore(open, async (s) => {
          const written = { owner: { pod: 'a' }, ips: ['10.0.0.1'] };
          const v = await mustCreate(s, 'claims/c', written);
          written.owner.pod = 'mutated';
          written.ips.push('10.0.0.2');
          const read = await s.get<{ owner: { pod: string }; ips: string[] }>('claims/c');
          assert.deepEqual(read?.value, { owner: { pod: 'a' }, ips: ['10.0.0.1'] });
          read!.value.owner.pod = 'mutated-too';
          assert.deepEqual(await s.get('claims/c'), {
            key: 'claims/c',
            value: { owner: { pod: 'a' }, ips: ['10.0.0.1'] },
            version: v,
          });
        });
      });
    });

    describe('keys', () => {
      for (const c of BAD_KEYS) {
        it(`rejects ${c.name} (${JSON.stringify(c.key.length > 40 ? c.key.slice(0, 40) + '…' : c.key)}) with a StoreError`, async () => {
          await withStore(open, async (s) => {
            const isBadKey = (e: unknown): boolean => {
              assert.ok(e instanceof StoreError, `expected StoreError, got ${String(e)}`);
              assert.equal(e.retryable, false);
              return true;
            };
            await assert.rejects(s.get(c.key), isBadKey, 'get');
            await assert.rejects(s.create(c.key, { x: 1 }), isBadKey, 'create');
            await assert.rejects(s.update(c.key, { x: 1 }, '1'), isBadKey, 'update');
            await assert.rejects(s.delete(c.key, '1'), isBadKey, 'delete');
          });
        });
      }

      it('accepts the key shapes ipkeeper uses', async () => {
        await withStore(open, async (s) => {
          for (const k of [
            'ippools/test-ippool',
            'claims/default.10.6.168.133',
            'claims/net1.fd00-0-0-0-0-0-0-1',
            'endpoints/kube-system/coredns-7db6d8ff4d-x2x7z',
            `claims/${'a'.repeat(253)}`,
            'a/b',
            'a/0/z',
          ]) {
            const v = await mustCreate(s, k, { k });
            assert.deepEqual(await s.get(k), { key: k, value: { k }, version: v });
          }
        });
      });
    });

    describe('watch', () => {
      it('sees put, update and delete for its prefix only, in order, with the written versions', async () => {
        await withStore(open, async (s) => {
          const log = new EventLog(deadlineMs);
          const w = s.watch('claims/', log.onEvent, log.onReset);
          try {
            const v1 = await mustCreate(s, 'claims/a', { n: 1 });
            await mustCreate(s, 'claimsx/a', { n: 1 });
            await mustCreate(s, 'claim/a', { n: 1 });
            const u = await s.update('claims/a', { n: 2 }, v1);
            assert.ok(u.ok);
            const vb = await mustCreate(s, 'claims/b', { n: 1 });
            const d = await s.delete('claims/a', u.version);
            assert.ok(d.ok);
            await log.untilKeyEvent('claims/a', 'delete');
            assert.deepEqual(log.events.slice(0, 4), [
              { type: 'put', key: 'claims/a', value: { n: 1 }, version: v1 },
              { type: 'put', key: 'claims/a', value: { n: 2 }, version: u.version },
              { type: 'put', key: 'claims/b', value: { n: 1 }, version: vb },
              { type: 'delete', key: 'claims/a', version: d.version },
            ]);
            assert.equal(log.events.length, 4, JSON.stringify(log.events));
            assert.equal(log.resets, 0);
          } finally {
            w.close();
          }
        });
      });

      it('delivers nothing after close()', async () => {
        await withStore(open, async (s) => {
          const closed = new EventLog(deadlineMs);
          const open2 = new EventLog(deadlineMs);
          const w1 = s.watch('claims/', closed.onEvent);
          const w2 = s.watch('claims/', open2.onEvent);
          try {
            await mustCreate(s, 'claims/before', {});
            await closed.untilKeyEvent('claims/before', 'put');
            w1.close();
            await mustCreate(s, 'claims/after', {});
            const vm = await mustCreate(s, 'claims/marker', {});
            // The still-open watcher has seen everything up to the marker; the closed one must not
            // have seen any of it.
            await open2.untilKeyEvent('claims/marker', 'put', vm);
            assert.deepEqual(
              closed.events.map((e) => e.key),
              ['claims/before'],
            );
            w1.close(); // closing twice is harmless
          } finally {
            w2.close();
          }
        });
      });

      it('two watchers on different prefixes each see only their own keys', async () => {
        await withStore(open, async (s) => {
          const claims = new EventLog(deadlineMs);
          const pools = new EventLog(deadlineMs);
          const watchers: Watcher[] = [
            s.watch('claims/', claims.onEvent),
            s.watch('ippools/', pools.onEvent),
          ];
          try {
            await mustCreate(s, 'ippools/p', {});
            await mustCreate(s, 'claims/c', {});
            await mustCreate(s, 'ippools/q', {});
            await claims.untilKeyEvent('claims/c', 'put');
            await pools.untilKeyEvent('ippools/q', 'put');
            assert.deepEqual(
              claims.events.map((e) => e.key),
              ['claims/c'],
            );
            assert.deepEqual(
              pools.events.map((e) => e.key),
              ['ippools/p', 'ippools/q'],
            );
          } finally {
            for (const w of watchers) w.close();
          }
        });
      });

      it('sees every write of a burst, in commit order per key', async () => {
        await withStore(open, async (s) => {
          const log = new EventLog<{ n: number }>(deadlineMs);
          const w = s.watch<{ n: number }>('counters/', log.onEvent);
          try {
            let v = await mustCreate(s, 'counters/c', { n: 0 });
            for (let n = 1; n <= 50; n++) {
              const r = await s.update('counters/c', { n }, v);
              assert.ok(r.ok);
              v = r.version;
            }
            await log.untilKeyEvent('counters/c', 'put', v);
            const ns = log.events.map((e) => (e.type === 'put' ? e.value.n : -1));
            assert.deepEqual(
              ns,
              Array.from({ length: 51 }, (_, i) => i),
            );
          } finally {
            w.close();
          }
        });
      });
    });

    describe('concurrency', () => {
      it('20 writers doing read-modify-update with retries lose no update', async () => {
        await withStore(open, async (s) => {
          await mustCreate(s, 'counters/c', { n: 0 });
          const WRITERS = 20;
          const EACH = 5;
          await Promise.all(
            Array.from({ length: WRITERS }, async () => {
              for (let k = 0; k < EACH; k++) await increment(s, 'counters/c');
            }),
          );
          assert.deepEqual((await s.get('counters/c'))?.value, { n: WRITERS * EACH });
        });
      });
    });

    it('close() twice is harmless', async () => {
      const s = await open();
      await s.close();
      await s.close();
    });

    if (opts.reopen) {
      const reopen = opts.reopen;
      describe('durability', () => {
        it('keeps every acknowledged write across a reopen, with its version', async () => {
          let s = await open();
          try {
            const want = new Map<string, { value: unknown; version: Version }>();
            for (let i = 0; i < 40; i++) {
              const key = `claims/default.10.0.0.${i}`;
              want.set(key, { value: { i }, version: await mustCreate(s, key, { i }) });
            }
            for (let i = 0; i < 10; i++) {
              const key = `claims/default.10.0.0.${i}`;
              const r = await s.update(key, { i, updated: true }, want.get(key)!.version);
              assert.ok(r.ok);
              want.set(key, { value: { i, updated: true }, version: r.version });
            }
            for (let i = 10; i < 20; i++) {
              const key = `claims/default.10.0.0.${i}`;
              assert.ok((await s.delete(key, want.get(key)!.version)).ok);
              want.delete(key);
            }
            s = await reopen(s);
            const got = await s.list('claims/');
            assert.deepEqual(
              got,
              [...want.entries()]
                .map(([key, e]) => ({ key, value: e.value, version: e.version }))
                .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
            );
          } finally {
            await s.close();
          }
        });

        it('never reuses a version after a reopen, not even that of a deleted key', async () => {
          let s = await open();
          try {
            const seen = new Set<Version>();
            const va = await mustCreate(s, 'claims/a', {});
            const vb = await mustCreate(s, 'claims/b', {});
            seen.add(va).add(vb);
            // The newest version belongs to a key that is then deleted: a backend that derives the
            // next version from what is still stored would hand it out again.
            const d = await s.delete('claims/b', vb);
            assert.ok(d.ok);
            seen.add(d.version);
            s = await reopen(s);
            const vc = await mustCreate(s, 'claims/c', {});
            const vb2 = await mustCreate(s, 'claims/b', {});
            const ua = await s.update('claims/a', { again: true }, va);
            assert.ok(ua.ok);
            for (const v of [vc, vb2, ua.version]) {
              assert.ok(!seen.has(v), `version ${v} was handed out before the reopen`);
              seen.add(v);
            }
            assert.equal((await s.delete('claims/b', vb)).ok, false);
          } finally {
            await s.close();
          }
        });
      });
    }
  });
}
