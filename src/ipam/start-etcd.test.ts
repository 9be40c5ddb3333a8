/**
 * An engine's start on the etcd store (real etcd, one member) reads the claims as their stored text
 * (`Store.scanText`): a claim in the codec's compact form is indexed from its digest and parsed
 * later (`LazyClaim`); any other text is parsed at once, as before. Whatever form a claim is stored
 * in, the cache ends up holding what etcd holds, allocates around it, releases it, and writes it to
 * a claims cache the next start reads.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import { parseAddr } from '../net/addr.ts';
import { openEtcdStore } from '../store/etcd.ts';
import { StoreError, type Store } from '../store/store.ts';
import { startEtcdCluster, type EtcdCluster } from '../../test/etcd/cluster.ts';
import { until } from '../../test/lib/until.ts';
import { readClaimsCache } from './claims-cache.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { CLAIM_PREFIX, LazyClaim } from './state.ts';

const req = (c: string): AllocateRequest => ({
  cniNetwork: 'net1',
  containerId: c,
  ifName: 'eth0',
  owner: { kind: 'Pod', namespace: 'default', name: `pod-${c}`, uid: `uid-${c}` },
  configPools: { ipv4: ['p'] },
});
const ipOf = (r: { ips: { address: string }[] }): string => r.ips[0]!.address.split('/')[0]!;

/** `store`, recording which method read the claims' prefix. */
function recordingClaimReads(store: Store): { store: Store; reads: string[] } {
  const reads: string[] = [];
  const recording = new Proxy(store, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r) as unknown;
      if ((k === 'scanText' || k === 'scan' || k === 'list') && typeof v === 'function') {
        return (prefix: string, ...rest: unknown[]) => {
          if (prefix === CLAIM_PREFIX) reads.push(k);
          return (v as (...x: unknown[]) => unknown).call(t, prefix, ...rest);
        };
      }
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  }) as Store;
  return { store: recording, reads };
}

describe('engine start on etcd: claims read as stored text', () => {
  let cluster: EtcdCluster;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-start-etcd-'));
  before(async () => {
    cluster = await startEtcdCluster(1);
  });
  after(async () => {
    await cluster?.stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('indexes compact, whole and hand-written claims alike; allocates around them, releases them and caches them', async () => {
    const prefix = `/start-${process.pid}/`;
    const store = await openEtcdStore(`${cluster.url}${prefix}`);
    const raw = new Etcd3({ hosts: cluster.endpoints });
    const file = join(dir, 'claims.json');
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
