/**
 * The etcd store against real etcd: the contract suite on a 1-member and a 3-member cluster, plus
 * what only this backend promises (URL parsing, the key layout, versions that are etcd revisions,
 * watches that resume after their stream breaks).
 *
 * Each `open()` gets a fresh key prefix, so tests sharing a cluster never see each other's keys.
 * `reopen` kills every member with SIGKILL and starts them again before opening the same prefix:
 * an acknowledged write must have been on disk (the members run with fsync).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Etcd3 } from 'etcd3';
import { IpamError } from '../errors.ts';
import { selfSignedTls } from '../controller/certs.ts';
import { storeContract } from './contract.ts';
import { DEFAULT_PREFIX, openEtcdStore, parseEtcdUrl } from './etcd.ts';
import type { EtcdStore } from './etcd.ts';
import { StoreError } from './store.ts';
import type { Store, WatchEvent } from './store.ts';
import { startEtcdCluster } from '../../test/etcd/cluster.ts';
import type { EtcdCluster } from '../../test/etcd/cluster.ts';

/** Hang guard: a watch event that never comes fails the test instead of hanging the file. */
async function guard<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting for ${what} after 20 s`)), 20_000);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

let prefixes = 0;
function freshPrefix(): string {
  return `/ipkeeper-test/${process.pid}-${++prefixes}/`;
}

// The two clusters are independent: their suites run side by side (each suite's own tests in order).
describe('etcd contract', { concurrency: 2 }, () => {
  for (const size of [1, 3] as const) {
    let cluster: EtcdCluster | undefined;
    const prefixOf = new WeakMap<Store, string>();
    const clusterOf = (): EtcdCluster => {
      assert.ok(cluster, 'etcd cluster not started');
      return cluster;
    };

    describe(`etcd (${size} member${size === 1 ? '' : 's'})`, { concurrency: 1 }, () => {
      before(async () => {
        cluster = await startEtcdCluster(size);
      });
      after(async () => {
        await cluster?.stopAll();
      });

      const open = async (): Promise<Store> => {
        const prefix = freshPrefix();
        const s = await openEtcdStore(clusterOf().url, { prefix });
        prefixOf.set(s, prefix);
        return s;
      };

      storeContract(`etcd (${size} member${size === 1 ? '' : 's'}) contract`, open, {
        reopen: async (s) => {
          const prefix = prefixOf.get(s);
          assert.ok(prefix);
          await s.close();
          const c = clusterOf();
          await Promise.all(c.members.map((_, i) => c.stop(i, 'SIGKILL')));
          await Promise.all(c.members.map((_, i) => c.start(i)));
          await c.waitHealthy();
          const again = await openEtcdStore(c.url, { prefix });
          prefixOf.set(again, prefix);
          return again;
        },
      });
    });
  }
});

describe('parseEtcdUrl', () => {
  const GOOD: { name: string; url: string; hosts: string[]; prefix: string | undefined }[] = [
    { name: 'one host', url: 'etcd://127.0.0.1:2379', hosts: ['127.0.0.1:2379'], prefix: undefined },
    {
      name: 'three hosts and a prefix',
      url: 'etcd://10.0.0.1:2379,10.0.0.2:22379,etcd-3.example.com:2379/ipkeeper/prod',
      hosts: ['10.0.0.1:2379', '10.0.0.2:22379', 'etcd-3.example.com:2379'],
      prefix: '/ipkeeper/prod/',
    },
    { name: 'default port', url: 'etcd://etcd', hosts: ['etcd:2379'], prefix: undefined },
    { name: 'IPv6 in brackets', url: 'etcd://[fd00::1]:2379/x/', hosts: ['[fd00::1]:2379'], prefix: '/x/' },
    { name: 'bare slash is no prefix', url: 'etcd://h:1/', hosts: ['h:1'], prefix: undefined },
    { name: 'highest port', url: 'etcd://h:65535', hosts: ['h:65535'], prefix: undefined },
    { name: 'an upper-case scheme', url: 'ETCD://h:1', hosts: ['h:1'], prefix: undefined },
  ];
  for (const c of GOOD) {
    it(`accepts ${c.name}`, () => {
      assert.deepEqual(parseEtcdUrl(c.url), { hosts: c.hosts, prefix: c.prefix });
    });
  }

  const BAD: { name: string; url: string; why: RegExp }[] = [
    { name: 'http scheme', url: 'http://127.0.0.1:2379', why: /must start with etcd:\/\// },
    { name: 'no host', url: 'etcd:///ipkeeper', why: /names no host/ },
    { name: 'empty host in a list', url: 'etcd://a:1,,b:2', why: /host "" is not host:port/ },
    { name: 'port 0', url: 'etcd://h:0', why: /port 0/ },
    { name: 'port 65536', url: 'etcd://h:65536', why: /port 65536/ },
    { name: 'port not a number', url: 'etcd://h:abc', why: /not host:port/ },
    { name: 'octal-looking IPv4', url: 'etcd://010.0.0.1:2379', why: /not an IPv4 address/ },
    { name: 'IPv6 without brackets', url: 'etcd://fd00::1:2379', why: /not host:port/ },
    { name: 'bad IPv6', url: 'etcd://[fd00::g]:2379', why: /not an IPv6 address/ },
    { name: 'query string', url: 'etcd://h:1?timeout=1', why: /query strings/ },
    { name: 'dot-dot in prefix', url: 'etcd://h:1/a/../b', why: /prefix "\/a\/..\/b"/ },
    { name: 'empty segment in prefix', url: 'etcd://h:1/a//b', why: /prefix/ },
  ];
  for (const c of BAD) {
    it(`rejects ${c.name} with INVALID_CONFIG naming the value and the form`, () => {
      assert.throws(
        () => parseEtcdUrl(c.url),
        (e: unknown) => {
          assert.ok(e instanceof IpamError);
          assert.equal(e.code, 'INVALID_CONFIG');
          assert.match(e.message, c.why);
          assert.ok(e.message.includes(`"${c.url}"`), e.message);
          assert.ok(e.message.includes('etcd://host:port[,host:port...][/prefix]'), e.message);
          return true;
        },
      );
    });
  }

  it('openEtcdStore rejects a bad URL before connecting', async () => {
    await assert.rejects(openEtcdStore('etcd://'), (e: unknown) => e instanceof IpamError);
  });
});

describe('EtcdStore on one member', () => {
  let cluster: EtcdCluster;
  let raw: Etcd3;
  before(async () => {
    cluster = await startEtcdCluster(1);
    raw = new Etcd3({ hosts: cluster.endpoints });
  });
  after(async () => {
    raw.close();
    await cluster.stopAll();
  });

  it('keeps store key k at etcd key prefix + k, as JSON, with version = mod_revision', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(`${cluster.url}${prefix.slice(0, -1)}`);
    try {
      const r = await s.create('claims/default.10.0.0.1', { owner: 'pod-a' });
      assert.ok(r.created);
      const kv = (await raw.get(`${prefix}claims/default.10.0.0.1`).exec()).kvs[0];
      assert.ok(kv);
      assert.equal(kv.value.toString(), '{"owner":"pod-a"}');
      assert.equal(kv.mod_revision, r.version);
      assert.equal(kv.create_revision, r.version);
    } finally {
      await s.close();
    }
  });

  it('uses /ipkeeper/ when neither the URL nor the options name a prefix', async () => {
    const s = await openEtcdStore(cluster.url);
    try {
      assert.equal((s as EtcdStore).prefix, DEFAULT_PREFIX);
      const r = await s.create(`tests/default-prefix-${process.pid}`, 1);
      assert.ok(r.created);
      assert.equal(await raw.get(`/ipkeeper/tests/default-prefix-${process.pid}`).string(), '1');
      assert.ok((await s.delete(`tests/default-prefix-${process.pid}`, r.version)).ok);
    } finally {
      await s.close();
    }
  });

  it('writes nothing to any key but the one written (no shared counter)', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    try {
      const c = await s.create('claims/a', { n: 1 });
      assert.ok(c.created);
      const u = await s.update('claims/a', { n: 2 }, c.version);
      assert.ok(u.ok);
      await s.create('claims/b', { n: 1 });
      const keys = await raw.getAll().prefix(prefix).keys();
      assert.deepEqual(keys.sort(), [`${prefix}claims/a`, `${prefix}claims/b`]);
      const a = (await raw.get(`${prefix}claims/a`).exec()).kvs[0];
      assert.equal(a?.version, '2', 'the key was written exactly twice');
    } finally {
      await s.close();
    }
  });

  it('lists across pages: every key once, in order', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix, listPageKeys: 7 });
    try {
      const want: string[] = [];
      for (let i = 0; i < 50; i++) want.push(`claims/k${String(i).padStart(2, '0')}`);
      await Promise.all(want.map((k, i) => s.create(k, i)));
      const got = await s.list<number>('claims/');
      assert.deepEqual(
        got.map((e) => [e.key, e.value]),
        want.map((k, i) => [k, i]),
      );
    } finally {
      await s.close();
    }
  });

  it('asks for fewer keys while a page is larger than the client accepts', async () => {
    const prefix = freshPrefix();
    // 12 values of ~100 kB: a page of all of them is ~1.2 MB, over the 400 kB this client takes.
    const s = (await openEtcdStore(cluster.url, { prefix, maxReceiveBytes: 400_000 })) as EtcdStore;
    try {
      const big = 'x'.repeat(100_000);
      await Promise.all(
        Array.from({ length: 12 }, (_, i) => s.create(`claims/k${String(i).padStart(2, '0')}`, { big, i })),
      );
      const got = await s.list<{ i: number }>('claims/');
      assert.deepEqual(
        got.map((e) => e.value.i),
        Array.from({ length: 12 }, (_, i) => i),
      );
    } finally {
      await s.close();
    }
  });

  it('scan hands over the same entries as list, page by page, in key order', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix, listPageKeys: 4 });
    try {
      await Promise.all(Array.from({ length: 10 }, (_, i) => s.create(`claims/k${i}`, i)));
      const pages: string[][] = [];
      await s.scan!<number>('claims/', (page) => pages.push(page.map((e) => e.key)));
      assert.deepEqual(
        pages.map((p) => p.length),
        [4, 4, 2],
      );
      assert.deepEqual(
        pages.flat(),
        (await s.list('claims/')).map((e) => e.key),
      );
    } finally {
      await s.close();
    }
  });

  it('scan hands a page over in slices, in key order, and stops when the store closes between them', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix, listPageKeys: 4, scanSliceKeys: 3 });
    try {
      await Promise.all(Array.from({ length: 10 }, (_, i) => s.create(`claims/k${i}`, i)));
      const slices: string[][] = [];
      await s.scan!<number>('claims/', (slice) => slices.push(slice.map((e) => e.key)));
      assert.deepEqual(
        slices.map((p) => p.length),
        [3, 1, 3, 1, 2],
      );
      assert.deepEqual(
        slices.flat(),
        (await s.list('claims/')).map((e) => e.key),
      );
      // Closed after the first slice: the scan fails as closed instead of handing over the rest.
      let after = 0;
      await assert.rejects(
        s.scan!('claims/', () => {
          after++;
          if (after === 1) void s.close();
        }),
        /etcd store is closed/,
      );
      assert.equal(after, 1);
    } finally {
      await s.close();
    }
  });

  it('scan starts over at a newer revision when etcd compacts its snapshot away in the middle', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix, listPageKeys: 2 });
    try {
      await Promise.all(Array.from({ length: 8 }, (_, i) => s.create(`claims/k${i}`, i)));
      const seen: string[] = [];
      let compacted = false;
      await s.scan!<number>('claims/', (page) => {
        seen.push(...page.map((e) => e.key));
        if (compacted) return;
        compacted = true;
        // After the first page (the second is already asked for, the third is not): a delete, then
        // a compaction of every revision before it, done to the end before the scan goes on (a
        // child process, since this callback is synchronous), so the third page's read at the
        // snapshot's revision fails.
        const r = spawnSync(
          process.execPath,
          [
            '--input-type=module',
            '-e',
            `import { Etcd3 } from 'etcd3';
             const c = new Etcd3({ hosts: ${JSON.stringify(cluster.endpoints)} });
             await c.delete().key(${JSON.stringify(`${prefix}claims/k7`)});
             const head = (await c.get('x').exec()).header.revision;
             await c.kv.compact({ revision: head, physical: true });
             c.close();`,
          ],
          { encoding: 'utf8', cwd: process.cwd() },
        );
        assert.equal(r.status, 0, r.stderr);
      });
      // Whatever page the restart came at, the last pass is the snapshot after the delete.
      const last = seen.lastIndexOf('claims/k0');
      assert.ok(last > 0, `the scan did not start over: ${seen.join(' ')}`);
      assert.deepEqual(seen.slice(last), [
        'claims/k0',
        'claims/k1',
        'claims/k2',
        'claims/k3',
        'claims/k4',
        'claims/k5',
        'claims/k6',
      ]);
    } finally {
      await s.close();
    }
  });

  it("scan passes the caller's exception through as it is, without retrying", async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix, listPageKeys: 2 });
    try {
      await Promise.all(Array.from({ length: 4 }, (_, i) => s.create(`claims/k${i}`, i)));
      let calls = 0;
      const boom = new TypeError('boom');
      await assert.rejects(
        s.scan!('claims/', () => {
          calls++;
          throw boom;
        }),
        (e) => e === boom,
      );
      assert.equal(calls, 1);
    } finally {
      await s.close();
    }
  });

  it('lists across pages as one snapshot while writers add keys at both ends', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix, listPageKeys: 5 });
    try {
      await Promise.all(
        Array.from({ length: 60 }, (_, i) => s.create(`claims/m${String(i).padStart(2, '0')}`, i)),
      );
      // The writer creates a-<i> (sorts first) and then z-<i> (sorts last). In one snapshot, z-<i>
      // present means a-<i> present; a list that read its later pages at a newer revision could
      // hold z-<i> without a-<i>.
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop; i++) {
          await s.create(`claims/a-${i}`, i);
          await s.create(`claims/z-${i}`, i);
        }
      })();
      try {
        for (let round = 0; round < 5; round++) {
          const keys = new Set((await s.list('claims/')).map((e) => e.key));
          for (const k of keys) {
            if (k.startsWith('claims/z-')) assert.ok(keys.has(`claims/a-${k.slice(9)}`), `${k} without a-`);
          }
        }
      } finally {
        stop = true;
        await writer;
      }
    } finally {
      await s.close();
    }
  });

  it('reports a stored value that is not JSON as a StoreError that is not retryable', async () => {
    const prefix = freshPrefix();
    await raw.put(`${prefix}claims/bad`).value('{not json');
    const s = await openEtcdStore(cluster.url, { prefix });
    try {
      const notJson = (e: unknown): boolean =>
        e instanceof StoreError && !e.retryable && /claims\/bad.*not JSON/.test(e.message);
      await assert.rejects(s.get('claims/bad'), notJson);
      await assert.rejects(s.list('claims/'), notJson);
      await assert.rejects(s.create('claims/bad', {}), notJson);
    } finally {
      await s.close();
    }
  });

  it('refuses a value etcd cannot hold (over its 1.5 MiB request limit), not retryable', async () => {
    const s = await openEtcdStore(cluster.url, { prefix: freshPrefix() });
    try {
      await assert.rejects(
        s.create('claims/huge', 'x'.repeat(1600 * 1024)),
        (e: unknown) => e instanceof StoreError && !e.retryable && e.cause !== undefined,
      );
      assert.equal(await s.get('claims/huge'), undefined);
    } finally {
      await s.close();
    }
  });

  it('group commit: concurrent createMany calls share transactions, each answered as if alone', async () => {
    const s = (await openEtcdStore(cluster.url, { prefix: freshPrefix() })) as EtcdStore;
    try {
      const calls = Array.from({ length: 24 }, (_, i) => [
        { key: `claims/a${i}`, value: { i } },
        { key: `endpoints/ns/p${i}`, value: { i } },
      ]);
      const before = { ...s.groupStats };
      const rs = await Promise.all(calls.map((c) => s.createMany!(c)));
      const sent = s.groupStats.transactions - before.transactions;
      assert.ok(sent < calls.length, `${calls.length} calls went in ${sent} transactions: none shared`);
      for (const [i, r] of rs.entries()) {
        assert.ok(r.created, `call ${i}`);
        for (const [j, e] of (calls[i] ?? []).entries()) {
          const got = await s.get(e.key);
          assert.deepEqual(got?.value, e.value);
          assert.equal(got?.version, r.versions[j], `${e.key}: the version createMany reported`);
        }
      }

      // A group with a key that exists: the call holding it is refused with exactly what exists;
      // the others are created; the refused call wrote nothing.
      await s.create('claims/taken', { by: 'someone' });
      const mixed = Array.from({ length: 12 }, (_, i) => [
        { key: `claims/b${i}`, value: { i } },
        { key: `endpoints/ns/q${i}`, value: { i } },
      ]);
      mixed[5] = [
        { key: 'claims/b5', value: { i: 5 } },
        { key: 'claims/taken', value: { i: 5 } },
      ];
      const out = await Promise.all(mixed.map((c) => s.createMany!(c)));
      for (const [i, r] of out.entries()) {
        if (i === 5) {
          assert.equal(r.created, false);
          assert.deepEqual(!r.created && r.existing.map((e) => [e.key, e.value]), [
            ['claims/taken', { by: 'someone' }],
          ]);
          assert.equal(await s.get('claims/b5'), undefined, 'the refused call wrote nothing');
        } else assert.ok(r.created, `call ${i}`);
      }

      // Two calls for one key at once: never in one group; exactly one wins.
      const race = await Promise.all(
        [1, 2, 3].map((n) => s.createMany!([{ key: 'claims/race', value: { n } }])),
      );
      assert.equal(race.filter((r) => r.created).length, 1);
    } finally {
      await s.close();
    }
  });

  // A linger of 20 s where a test must not wait for it: with the timeout, a call held by
  // mistake fails the test instead of hanging the run.
  describe('group commit linger', { timeout: 10_000 }, () => {
    const LONG_LINGER = 20_000;
    const lingering = async (): Promise<EtcdStore> =>
      (await openEtcdStore(cluster.url, { prefix: freshPrefix(), groupLingerMs: LONG_LINGER })) as EtcdStore;
    /** Three calls at once: the first goes alone, the other two share the second transaction. */
    const twoShared = async (s: EtcdStore, tag: string): Promise<void> => {
      const rs = await Promise.all(
        [0, 1, 2].map((i) => s.createMany!([{ key: `claims/${tag}${i}`, value: { i } }])),
      );
      assert.ok(rs.every((r) => r.created));
      const v = rs.map((r) => (r.created ? r.versions[0] : undefined));
      assert.equal(v[1], v[2], 'the second and third call shared a transaction');
    };

    it('after a shared transaction, calls arriving within the linger go in one transaction', async () => {
      // A long linger, so the test does not depend on how fast this machine is.
      const s = (await openEtcdStore(cluster.url, {
        prefix: freshPrefix(),
        groupLingerMs: 300,
      })) as EtcdStore;
      try {
        await twoShared(s, 'warm');
        const before = s.groupStats.transactions;
        const first = s.createMany!([{ key: 'claims/late1', value: 1 }]);
        await new Promise((r) => setTimeout(r, 20));
        const second = s.createMany!([{ key: 'claims/late2', value: 2 }]);
        const [a, b] = await Promise.all([first, second]);
        assert.ok(a.created && b.created);
        assert.equal(a.versions[0], b.versions[0], 'one transaction: one revision');
        assert.equal(s.groupStats.transactions - before, 1);
      } finally {
        await s.close();
      }
    });

    it('a full group does not wait out the linger', async () => {
      const s = await lingering();
      try {
        await twoShared(s, 'warm');
        // 96 calls of 2 keys: the 32nd fills a group while the linger holds; 64 then queue behind
        // it, a full group already waiting when each transaction settles.
        const calls = Array.from({ length: 96 }, (_, i) => [
          { key: `claims/f${i}`, value: { i } },
          { key: `endpoints/ns/f${i}`, value: { i } },
        ]);
        const before = s.groupStats.transactions;
        const rs = await Promise.all(calls.map((c) => s.createMany!(c)));
        assert.ok(rs.every((r) => r.created));
        assert.equal(s.groupStats.transactions - before, 3, 'three full groups');
      } finally {
        await s.close();
      }
    });

    it('a call after a transaction of one call, or on an idle store, is sent at once', async () => {
      const s = await lingering();
      try {
        for (let i = 0; i < 3; i++) {
          const r = await s.createMany!([{ key: `claims/alone${i}`, value: { i } }]);
          assert.ok(r.created);
        }
      } finally {
        await s.close();
      }
    });

    it('close() refuses the calls the linger holds instead of leaving them waiting', async () => {
      const s = await lingering();
      await twoShared(s, 'warm');
      const held = s.createMany!([{ key: 'claims/held', value: 1 }]);
      await s.close();
      await assert.rejects(held, (e: unknown) => e instanceof StoreError && !e.retryable);
    });
  });

  it('rejects every call after close() with a StoreError that is not retryable', async () => {
    const s = await openEtcdStore(cluster.url, { prefix: freshPrefix() });
    await s.close();
    const closed = (e: unknown): boolean => e instanceof StoreError && !e.retryable;
    await assert.rejects(s.get('claims/a'), closed);
    await assert.rejects(s.list('claims/'), closed);
    await assert.rejects(s.create('claims/a', {}), closed);
    await assert.rejects(s.update('claims/a', {}, '1'), closed);
    await assert.rejects(s.delete('claims/a', '1'), closed);
    assert.throws(() => s.watch('claims/', () => {}), closed);
  });

  it('list then watch has no gap, even when other calls moved the store on in between', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    try {
      await s.list('claims/');
      // Written by someone else after our list, before our watch: the watch must still see it,
      // although this store's own later write has seen a newer revision than the put.
      await raw.put(`${prefix}claims/between`).value('1');
      assert.ok((await s.create('ippools/p', {})).created);
      const seen: WatchEvent[] = [];
      const got = new Promise<void>((resolve) => {
        const w = s.watch('claims/', (ev) => {
          seen.push(ev);
          w.close();
          resolve();
        });
      });
      await guard('the put of claims/between', got);
      assert.equal(seen[0]?.key, 'claims/between');
    } finally {
      await s.close();
    }
  });

  it('calls onReset when etcd compacted the history a watch needs, then keeps delivering', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    try {
      // The store's newest known revision is from open(); writes by others move etcd past it, and a
      // compaction then removes the history the watch would start from.
      for (let i = 0; i < 3; i++) await raw.put(`${prefix}other/${i}`).value('1');
      const head = (await raw.get(`${prefix}other/2`).exec()).header.revision;
      await raw.kv.compact({ revision: head, physical: true });
      let resets = 0;
      const events: WatchEvent[] = [];
      let wake: () => void = () => {};
      const w = s.watch(
        'claims/',
        (ev) => {
          events.push(ev);
          wake();
        },
        () => resets++,
      );
      try {
        const c = await s.create('claims/after-compaction', { n: 1 });
        assert.ok(c.created);
        await guard(
          'the put of claims/after-compaction',
          new Promise<void>((resolve) => {
            wake = () => {
              if (events.some((e) => e.key === 'claims/after-compaction')) resolve();
            };
            wake();
          }),
        );
        assert.equal(resets, 1);
        assert.equal(s.watchStats!().resync, 1, 'counted for the metrics');
        assert.deepEqual(events, [
          { type: 'put', key: 'claims/after-compaction', value: { n: 1 }, version: c.version },
        ]);
      } finally {
        w.close();
      }
    } finally {
      await s.close();
    }
  });

  /** Events into a list, and a wait for one with a key. */
  const recorder = () => {
    const events: WatchEvent[] = [];
    let wake: () => void = () => {};
    return {
      events,
      onEvent: (ev: WatchEvent) => {
        events.push(ev);
        wake();
      },
      until: (key: string) =>
        guard(
          `an event of ${key}`,
          new Promise<void>((resolve) => {
            wake = () => {
              if (events.some((e) => e.key === key)) resolve();
            };
            wake();
          }),
        ),
    };
  };

  it('watchFrom delivers every event after a revision, written by another store meanwhile', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    const other = await openEtcdStore(cluster.url, { prefix });
    try {
      const a = await other.create('claims/a', { n: 1 });
      assert.ok(a.created);
      const b = await other.create('claims/b', { n: 2 });
      assert.ok(b.created);
      const ua = await other.update('claims/a', { n: 3 }, a.version);
      assert.ok(ua.ok);
      const db = await other.delete('claims/b', b.version);
      assert.ok(db.ok);
      await s.get('claims/a'); // this store has now seen the newest revision
      const r = recorder();
      let resets = 0;
      const w = (s as EtcdStore).watchFrom('claims/', a.version, r.onEvent, () => resets++);
      try {
        const c = await other.create('claims/c', { n: 4 });
        assert.ok(c.created);
        await r.until('claims/c');
        assert.deepEqual(
          r.events.map((e) => [e.type, e.key, e.version]),
          [
            ['put', 'claims/b', b.version],
            ['put', 'claims/a', ua.ok ? ua.version : ''],
            ['delete', 'claims/b', db.ok ? db.version : ''],
            ['put', 'claims/c', c.created ? c.version : ''],
          ],
        );
        assert.equal(resets, 0);
      } finally {
        w.close();
      }
    } finally {
      await s.close();
      await other.close();
    }
  });

  it('watchFrom a revision past any etcd has shown calls onReset at once, then carries on from now', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    try {
      const r = recorder();
      let resets = 0;
      const w = (s as EtcdStore).watchFrom('claims/', '999999999', r.onEvent, () => resets++);
      try {
        const c = await s.create('claims/now', { n: 1 });
        assert.ok(c.created);
        await r.until('claims/now');
        assert.equal(resets, 1);
        assert.deepEqual(
          r.events.map((e) => e.key),
          ['claims/now'],
        );
      } finally {
        w.close();
      }
      assert.throws(() => (s as EtcdStore).watchFrom('claims/', 'v7', () => {}), /"v7" is not a revision/);
    } finally {
      await s.close();
    }
  });

  it('watchFrom a compacted revision calls onReset', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    try {
      const a = await s.create('claims/old', { n: 1 });
      assert.ok(a.created);
      for (let i = 0; i < 3; i++) await raw.put(`${prefix}other/${i}`).value('1');
      const head = (await raw.get(`${prefix}other/2`).exec()).header.revision;
      await raw.kv.compact({ revision: head, physical: true });
      const r = recorder();
      let resets = 0;
      const w = (s as EtcdStore).watchFrom('claims/', a.version, r.onEvent, () => resets++);
      try {
        const c = await s.create('claims/new', { n: 1 });
        assert.ok(c.created);
        await r.until('claims/new');
        assert.equal(resets, 1);
        assert.deepEqual(s.watchStats!(), { closed: 0, broken: 0, resync: 1 });
      } finally {
        w.close();
      }
    } finally {
      await s.close();
    }
  });

  it('identity names the cluster and the prefix, the same from every store of them', async () => {
    const prefix = freshPrefix();
    const s = await openEtcdStore(cluster.url, { prefix });
    const t = await openEtcdStore(cluster.url, { prefix });
    const u = await openEtcdStore(cluster.url, { prefix: freshPrefix() });
    try {
      const id = await (s as EtcdStore).identity();
      assert.match(id, new RegExp(`^etcd:\\d+/${prefix.replaceAll('/', '\\/')}$`));
      assert.equal(await (t as EtcdStore).identity(), id);
      assert.notEqual(await (u as EtcdStore).identity(), id);
    } finally {
      await s.close();
      await t.close();
      await u.close();
    }
  });
});

describe('EtcdStore without a cluster', () => {
  it('openEtcdStore fails with a retryable StoreError within the deadline when nothing listens', async () => {
    // Port 1 on loopback: nothing listens there, connections are refused at once.
    await assert.rejects(openEtcdStore('etcd://127.0.0.1:1', { timeoutMs: 300 }), (e: unknown) => {
      assert.ok(e instanceof StoreError, String(e));
      assert.equal(e.retryable, true);
      assert.match(e.message, /127\.0\.0\.1:1/);
      assert.ok(e.cause instanceof Error);
      return true;
    });
  });
});

describe('EtcdStore.reloadCredentials (no cluster: what counts as a change)', () => {
  const one = selfSignedTls(['127.0.0.1'], Date.now(), { caName: 'ca-one', clientAuth: true });
  const two = selfSignedTls(['127.0.0.1'], Date.now(), { caName: 'ca-two', clientAuth: true });
  const b = (s: string) => Buffer.from(s);
  it('names what changed, and nothing when the files are the same bytes', async () => {
    const { EtcdStore } = await import('./etcd.ts');
    const store = new EtcdStore(['127.0.0.1:1'], {
      tls: { ca: b(one.ca), cert: b(one.cert), key: b(one.key) },
      auth: { username: 'u', password: 'p' },
    });
    try {
      const user = { username: 'u', password: 'p' };
      assert.deepEqual(
        store.reloadCredentials({ ca: b(one.ca), cert: b(one.cert), key: b(one.key) }, user),
        [],
      );
      assert.deepEqual(store.reloadCredentials({ ca: b(two.ca), cert: b(one.cert), key: b(one.key) }, user), [
        'ca',
      ]);
      // Compared with what it now uses, not with what it started with.
      const now = { ca: b(two.ca), cert: b(two.cert), key: b(two.key) };
      assert.deepEqual(store.reloadCredentials(now, { ...user, password: 'q' }), ['cert', 'key', 'password']);
      assert.deepEqual(store.reloadCredentials(now, undefined), ['user', 'password']);
      // TLS cannot be turned off (or on) under a running store: the hosts' scheme is fixed.
      assert.deepEqual(store.reloadCredentials(undefined, undefined), []);
      // Material the client cannot use (a key that is not the certificate's) throws, and the store
      // keeps what it had.
      assert.throws(
        () => store.reloadCredentials({ ca: b(two.ca), cert: b(one.cert), key: b(two.key) }, undefined),
        /key values mismatch/,
      );
      assert.deepEqual(store.reloadCredentials(now, undefined), []);
    } finally {
      await store.close();
    }
  });
  it('does nothing once the store is closed', async () => {
    const { EtcdStore } = await import('./etcd.ts');
    const store = new EtcdStore(['127.0.0.1:1'], { auth: { username: 'u', password: 'p' } });
    await store.close();
    assert.deepEqual(store.reloadCredentials(undefined, { username: 'u', password: 'q' }), []);
  });
});
