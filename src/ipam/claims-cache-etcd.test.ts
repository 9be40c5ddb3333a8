/**
 * An engine's start on the etcd store (real etcd, one member).
 *
 * From the claims cache: an engine restarted with its file reads no claims from etcd, and catches
 * up with what changed while it was down; a repeated ADD of a claim released meanwhile is not
 * answered from the file.
 *
 * Without one, it reads the claims as their stored text (`Store.scanText`): a claim in the codec's
 * compact form is indexed from its digest and parsed later (`LazyClaim`); any other text is parsed
 * at once, as before. Whatever form a claim is stored in, the cache ends up holding what etcd
 * holds, allocates around it, releases it, and writes it to a claims cache the next start reads.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import { Etcd3 } from 'etcd3';
import { openEtcdStore } from '../store/etcd.ts';
import { StoreError, type Store } from '../store/store.ts';
import { startEtcdCluster, type EtcdCluster } from '../../test/etcd/cluster.ts';
import { until } from '../../test/lib/until.ts';
import { recordingClaimReads } from '../../test/lib/claim-reads.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { CLAIM_PREFIX, LazyClaim } from './state.ts';
import { parseAddr } from '../net/addr.ts';
import { readClaimsCache } from './claims-cache.ts';

const req = (c: string): AllocateRequest => ({
  cniNetwork: 'net1',
  containerId: c,
  ifName: 'eth0',
  owner: { kind: 'Pod', namespace: 'default', name: `pod-${c}`, uid: `uid-${c}` },
  configPools: { ipv4: ['p'] },
});
const ipOf = (r: { ips: { address: string }[] }): string => r.ips[0]!.address.split('/')[0]!;

/** Applies pool `p` (10.9.0.10-10.9.0.40) through `ipam`'s store and waits until `ipam` holds it. */
async function applyPool(store: Store, ipam: Ipam): Promise<void> {
  await new ObjectService(store, ipam).apply([
    {
      apiVersion: API_VERSION,
      kind: 'IPPool',
      metadata: { name: 'p' },
      spec: { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.40'] },
    },
  ]);
  await until('the pool in the cache', async () => (ipam.state.pools.has('p') ? true : undefined));
}

/** The claims cache file's header. */
function header(path: string): { store: string; revision: string; written: string } {
  return JSON.parse(readFileSync(path, 'utf8').split('\n')[0]!);
}

let cluster: EtcdCluster;
const dir = mkdtempSync(join(tmpdir(), 'ipk-cc-etcd-'));
before(async () => {
  cluster = await startEtcdCluster(1);
});
after(async () => {
  await cluster?.stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('claims cache on etcd', () => {
  const file = join(dir, 'claims.json');

  it('a restart reads the claims from the file, watches the changes since, and reads back a repeated ADD', async () => {
    const url = `${cluster.url}/cc-${process.pid}/`;
    const store = await openEtcdStore(url);
    const other = await openEtcdStore(url);
    try {
      const first = new Ipam({ store, node: 'n1', claimsCache: file, random: () => 0.5 });
      await first.start();
      await applyPool(store, first);
      const a = ipOf(await first.add(req('a')));
      const b = ipOf(await first.add(req('b')));
      await first.stop();

      // While it is down: b's claim is released by someone else; another node takes 10.9.0.30.
      const claims = await other.list<IPClaim>(CLAIM_PREFIX);
      const bClaim = claims.find((c) => c.value.spec.ip === b)!;
      assert.ok((await other.delete(bClaim.key, bClaim.version)).ok);
      const model = claims.find((c) => c.value.spec.ip === a)!.value;
      const foreign = structuredClone(model);
      foreign.metadata.name = `${model.spec.network}.10.9.0.30`;
      foreign.spec = { ...foreign.spec, ip: '10.9.0.30', containerId: 'x', node: 'n2' };
      assert.ok((await other.create(`${CLAIM_PREFIX}${foreign.metadata.name}`, foreign)).created);

      // The restarted engine: a store that counts reads of the claims.
      const { store: counting, reads } = recordingClaimReads(store);
      const logged: string[] = [];
      const log = { info: (_o: object, m?: string) => logged.push(m ?? ''), warn() {}, error() {} };
      const second = new Ipam({ store: counting, node: 'n1', claimsCache: file, random: () => 0.5, log });
      await second.start();
      try {
        assert.ok(
          logged.some((m) => m.startsWith('claims read from the claims cache')),
          logged.join('\n'),
        );
        // b again: its claim is gone, so it is not the file's answer; whatever it gets is held.
        const again = ipOf(await second.add(req('b')));
        const held = (await other.list<IPClaim>(CLAIM_PREFIX)).find((c) => c.value.spec.ip === again);
        assert.equal(held?.value.spec.containerId, 'b');
        await until('the cache to hold the store claims', async () => {
          const want = (await other.list<IPClaim>(CLAIM_PREFIX)).map((c) => `${c.key}@${c.version}`).sort();
          const got = [...second.state.claims.values()].map((h) => `${h.key}@${h.version}`).sort();
          return JSON.stringify(want) === JSON.stringify(got) ? true : undefined;
        });
        assert.deepEqual(reads, [], 'no claims read from etcd at the start');
      } finally {
        await second.stop();
      }
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('a running engine checkpoints its claims when they change, and only then', async () => {
    const url = `${cluster.url}/cc-checkpoint-${process.pid}/`;
    const store = await openEtcdStore(url);
    const path = join(dir, 'checkpoint.json');
    const logged: string[] = [];
    const log = { info: (_o: object, m?: string) => logged.push(m ?? ''), warn() {}, error() {} };
    const ipam = new Ipam({ store, node: 'n1', claimsCache: path, claimsCacheIntervalMs: 40, log });
    const written = (): string | undefined => (existsSync(path) ? header(path).written : undefined);
    const fileIps = (): string[] => {
      const r = readClaimsCache(path, header(path).store);
      assert.ok(r.ok, !r.ok ? r.reason : '');
      return r.claims.map((c) => c.ip).sort();
    };
    try {
      await ipam.start();
      await applyPool(store, ipam);
      const a = ipOf(await ipam.add(req('a')));
      await until('a checkpoint with a', async () =>
        written() && fileIps().join() === a ? true : undefined,
      );
      // Nothing changes: the checkpoints that follow write nothing. Its own write's event may come
      // after the checkpoint, moving the claims' revision once: wait for that one.
      await new Promise((r) => setTimeout(r, 200));
      const quiet = written();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(written(), quiet, 'no rewrite without a change');
      const b = ipOf(await ipam.add(req('b')));
      await until('a checkpoint with a and b', async () =>
        fileIps().join() === [a, b].sort().join() ? true : undefined,
      );
      await ipam.release({ cniNetwork: 'net1', containerId: 'a', ifName: 'eth0' });
      await until('a checkpoint without a', async () => (fileIps().join() === b ? true : undefined));
      assert.ok(logged.filter((m) => m === 'claims cache checkpoint written').length >= 3, logged.join('\n'));
    } finally {
      await new Promise((r) => setTimeout(r, 200));
      const before = written();
      await ipam.stop();
      // The file already held every claim at their revision: the stop did not write it again.
      assert.equal(written(), before);
      await store.close();
    }
  });

  it("a quiet claims prefix's file keeps up with etcd's revision, so a compaction does not void it", async () => {
    // etcd's periodic progress notifications (every 200 ms here, 10 min by default) move the
    // watch of a prefix that sees no change; the file written at the stop carries that revision.
    const quick = await startEtcdCluster(1, {
      args: ['--experimental-watch-progress-notify-interval=200ms'],
    });
    const url = `${quick.url}/cc-quiet-${process.pid}/`;
    const store = await openEtcdStore(url);
    const raw = new Etcd3({ hosts: quick.endpoints });
    const path = join(dir, 'quiet.json');
    try {
      const first = new Ipam({ store, node: 'n1', claimsCache: path, claimsCacheIntervalMs: 0 });
      await first.start();
      await applyPool(store, first);
      const a = ipOf(await first.add(req('a')));
      // Other keys move etcd's revision; the claims see nothing. Then etcd compacts up to it.
      for (let i = 0; i < 20; i++) await raw.put(`/unrelated-${process.pid}/k${i}`).value(String(i));
      const now = (await raw.get(`/unrelated-${process.pid}/k0`).exec()).header.revision;
      await new Promise((r) => setTimeout(r, 800)); // a few progress notifications
      await raw.kv.compact({ revision: now, physical: true });
      await first.stop();
      const head = header(path);
      assert.ok(BigInt(head.revision) >= BigInt(now), `file revision ${head.revision}, compacted at ${now}`);

      // The restarted agent's own store, as a new process opens it.
      const again = await openEtcdStore(url);
      const { store: counting, reads } = recordingClaimReads(again);
      const second = new Ipam({ store: counting, node: 'n1', claimsCache: path, claimsCacheIntervalMs: 0 });
      await second.start();
      try {
        assert.equal(second.claimsSource, 'claims cache');
        // A compacted revision would have reset the watch: the engine would list the claims.
        await new Promise((r) => setTimeout(r, 500));
        assert.deepEqual(reads, [], 'no claims read from etcd');
        assert.equal(second.claimsSource, 'claims cache');
        assert.deepEqual(
          [...second.state.claims.values()].map((h) => h.claim.spec.ip),
          [a],
        );
      } finally {
        await second.stop();
        await again.close();
      }
    } finally {
      raw.close();
      await store.close();
      await quick.stopAll();
    }
  });
});

describe('engine start on etcd: claims read as stored text', () => {
  it('indexes compact, whole and hand-written claims alike; allocates around them, releases them and caches them', async () => {
    const prefix = `/start-${process.pid}/`;
    const store = await openEtcdStore(`${cluster.url}${prefix}`);
    const raw = new Etcd3({ hosts: cluster.endpoints });
    const file = join(dir, 'text-claims.json');
    try {
      const first = new Ipam({ store, node: 'n1' });
      await first.start();
      await new ObjectService(store, first).apply([
        {
          apiVersion: API_VERSION,
          kind: 'IPPool',
          metadata: { name: 'p' },
          spec: { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.25'] },
        },
      ]);
      await until('the pool in the cache', async () => (first.state.pools.has('p') ? true : undefined));
      for (const c of ['a', 'b', 'c', 'd', 'e']) await first.add(req(c));
      await first.stop();

      // Three more claims in other forms: stored whole (it has a label), written by hand with
      // whitespace, and compact with escapes and unicode where the digest does not read.
      const model = (await store.list<IPClaim>(CLAIM_PREFIX))[0]!.value;
      const other = (ip: string, containerId: string): IPClaim => ({
        ...structuredClone(model),
        metadata: { name: `${model.spec.network}.${ip}` },
        spec: { ...structuredClone(model.spec), ip, containerId },
      });
      const whole = other('10.9.0.22', 'w');
      whole.metadata.labels = { team: 'a' };
      assert.ok((await store.create(`${CLAIM_PREFIX}${whole.metadata.name}`, whole)).created);
      const spaced = other('10.9.0.23', 's');
      await raw
        .put(`${prefix}${CLAIM_PREFIX}${spaced.metadata.name}`)
        .value(JSON.stringify(spaced.spec, null, 2));
      const escaped = other('10.9.0.24', 'q');
      escaped.spec.owner = { ...escaped.spec.owner!, name: 'q "1" \\ é 😀' };
      assert.ok((await store.create(`${CLAIM_PREFIX}${escaped.metadata.name}`, escaped)).created);
      const stored = await store.list<IPClaim>(CLAIM_PREFIX);
      assert.equal(stored.length, 8);

      const { store: recording, reads } = recordingClaimReads(store);
      const second = new Ipam({ store: recording, node: 'n1', claimsCache: file });
      await second.start();
      try {
        assert.deepEqual(reads, ['scanText'], 'the claims read once, as text');
        // Right after the start, before the background parse: the compact claims are still text.
        const lazy = stored.filter((e) => {
          const h = second.state.claims.get(e.key);
          return h instanceof LazyClaim && h.unparsed;
        });
        assert.deepEqual(
          lazy.map((e) => e.value.spec.containerId).sort(),
          ['a', 'b', 'c', 'd', 'e', 'q'],
          'the compact claims kept as text; the whole and the hand-written one parsed',
        );
        // Indexed by address and by attachment, with the store's versions and values.
        const used = second.state.usedSet('default', 4);
        for (const e of stored) {
          assert.ok(used.has(parseAddr(e.value.spec.ip).value), `${e.value.spec.ip} is used`);
          const held = second.state.claimsOf('net1', e.value.spec.containerId!, 'eth0');
          assert.deepEqual(
            held.map((h) => h.key),
            [e.key],
          );
          assert.equal(held[0]!.version, e.version);
          assert.deepEqual(held[0]!.claim, e.value);
        }
        await until('the background parse', async () =>
          [...second.state.claims.values()].every((h) => !(h instanceof LazyClaim) || !h.unparsed)
            ? true
            : undefined,
        );

        // Releases: a compact one and the hand-written one.
        assert.equal(await second.release({ cniNetwork: 'net1', containerId: 'b', ifName: 'eth0' }), 1);
        assert.equal(await second.release({ cniNetwork: 'net1', containerId: 's', ifName: 'eth0' }), 1);
        const left = await store.list<IPClaim>(CLAIM_PREFIX);
        assert.deepEqual(left.map((e) => e.value.spec.containerId).sort(), ['a', 'c', 'd', 'e', 'q', 'w']);
        // The pool's 16 addresses less the 6 held: 10 more ADDs fit, each on a free address, and
        // the next finds the pool full without trying the held ones.
        const got: string[] = [];
        for (let i = 0; i < 10; i++) got.push(ipOf(await second.add(req(`n${i}`))));
        const all = [...left.map((e) => e.value.spec.ip), ...got];
        assert.equal(new Set(all).size, 16, `every address once: ${all.join(' ')}`);
        await assert.rejects(second.add(req('full')), /exhausted|no free|full/i);
      } finally {
        await second.stop();
      }

      // The claims cache its stop wrote holds what etcd holds.
      const header = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!) as { store: string };
      const cached = readClaimsCache(file, header.store);
      assert.ok(cached.ok, cached.ok ? '' : cached.reason);
      const now = await store.list<IPClaim>(CLAIM_PREFIX);
      assert.deepEqual(
        cached.claims.map((c) => [c.key, c.version, c.claim]).sort(),
        now.map((e) => [e.key, e.version, e.value]).sort(),
      );
    } finally {
      raw.close();
      await store.close();
    }
  });

  it('refuses to start on a claim whose text is not JSON, naming its key', async () => {
    const prefix = `/start-bad-${process.pid}/`;
    const store = await openEtcdStore(`${cluster.url}${prefix}`);
    const raw = new Etcd3({ hosts: cluster.endpoints });
    try {
      await raw.put(`${prefix}${CLAIM_PREFIX}default.10.9.0.9`).value('{"ip":"10.9.0.9","network":"default"');
      const ipam = new Ipam({ store, node: 'n1' });
      await assert.rejects(
        ipam.start(),
        (e: unknown) =>
          e instanceof StoreError &&
          /key "ipclaims\/default\.10\.9\.0\.9" holds a value that is not JSON/.test(e.message),
      );
      await ipam.stop();
    } finally {
      raw.close();
      await store.close();
    }
  });
});
