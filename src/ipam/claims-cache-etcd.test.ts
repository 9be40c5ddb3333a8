/**
 * The claims cache on the etcd store (real etcd, one member): an engine restarted with its file
 * reads no claims from etcd, and catches up with what changed while it was down; a repeated ADD of
 * a claim released meanwhile is not answered from the file.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import { Etcd3 } from 'etcd3';
import { openEtcdStore } from '../store/etcd.ts';
import type { Store } from '../store/store.ts';
import { startEtcdCluster, type EtcdCluster } from '../../test/etcd/cluster.ts';
import { until } from '../../test/lib/until.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { CLAIM_PREFIX } from './state.ts';
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

/** `store`, counting its reads (scanText, scan, list) of every claim. */
function countingClaimReads(store: Store): { store: Store; reads: () => number } {
  let n = 0;
  const counting = new Proxy(store, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r) as unknown;
      if ((k === 'scanText' || k === 'scan' || k === 'list') && typeof v === 'function') {
        return (prefix: string, ...rest: unknown[]) => {
          if (prefix === CLAIM_PREFIX) n++;
          return (v as (...x: unknown[]) => unknown).call(t, prefix, ...rest);
        };
      }
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  }) as Store;
  return { store: counting, reads: () => n };
}

describe('claims cache on etcd', () => {
  let cluster: EtcdCluster;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-cc-etcd-'));
  const file = join(dir, 'claims.json');
  before(async () => {
    cluster = await startEtcdCluster(1);
  });
  after(async () => {
    await cluster?.stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

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
      const { store: counting, reads: claimReads } = countingClaimReads(store);
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
        assert.equal(claimReads(), 0, 'no claims read from etcd at the start');
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
      const { store: counting, reads: claimReads } = countingClaimReads(again);
      const second = new Ipam({ store: counting, node: 'n1', claimsCache: path, claimsCacheIntervalMs: 0 });
      await second.start();
      try {
        assert.equal(second.claimsSource, 'claims cache');
        // A compacted revision would have reset the watch: the engine would list the claims.
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(claimReads(), 0, 'no claims read from etcd');
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
