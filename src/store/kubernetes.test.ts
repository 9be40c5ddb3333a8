/**
 * The Kubernetes store against a real kube-apiserver v1.20.2 (test/kube/cluster.ts): the contract
 * suite with every key a KeyValue object (`native: false`), the native mapping of our kinds onto
 * their CRs (objects written by kubectl-like clients appear in list and watch, the status
 * subresource, what the server refuses), the engine allocating and releasing through it, and the
 * parts that need no server (URL, KeyValue names).
 *
 * One control plane for the file. Isolation: before each test that needs an empty store, every
 * object of our resources is deleted (DELETE of the collection). Run against an external cluster
 * (IPKEEPER_TEST_KUBECONFIG) only when it is a throwaway one: these tests install ipkeeper's CRDs
 * and delete every ipkeeper object in it.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import Type from 'typebox';
import { parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import { IpamError } from '../errors.ts';
import { API_VERSION, KINDS, NAME_PATTERN, type KindInfo } from '../api/kinds.ts';
import { crdFor } from '../api/crd.ts';
import { Ipam } from '../ipam/engine.ts';
import { ObjectService } from '../ipam/objects.ts';
import { kubeRequest, startTestCluster, type TestCluster } from '../../test/kube/cluster.ts';
import { startRecordingProxy } from '../../test/kube/recording-proxy.ts';
import { storeContract } from './contract.ts';
import { openStore } from './open.ts';
import type { KubernetesStore } from './kubernetes.ts';
import {
  KEY_KIND_LABEL,
  SHARD_LABEL,
  SHARDS,
  keyKindLabel,
  keyValueCrd,
  keyValueName,
  openKubernetesStore,
  parseKubernetesUrl,
  shardOf,
  shardSelectors,
  type KubernetesStoreOptions,
} from './kubernetes.ts';
import { StoreError, validateKey } from './store.ts';
import type { WatchEvent } from './store.ts';
import { DEADLINE_MS, installCrd, until } from '../../test/kube/crds.ts';

const CRDS_FILE = new URL('../../deploy/crds/ipkeeper.io.yaml', import.meta.url);
const BASE = '/apis/ipkeeper.io/v1alpha1';
/** Hang guard for waiting on watch events and CRDs; nothing asserts how fast anything is. */

/** A namespaced kind of our group, only for these tests: KINDS has none yet. */
const TEST_THING: KindInfo = {
  kind: 'TestThing',
  plural: 'testthings',
  singular: 'testthing',
  shortNames: [],
  namespaced: true,
  hasStatus: false,
  userApplied: false,
};
const TEST_THING_SCHEMA = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('TestThing'),
  metadata: Type.Object({ name: Type.String() }),
  spec: Type.Object({ n: Type.Integer() }),
});

let cluster: TestCluster | undefined;
const clusterOf = (): TestCluster => {
  assert.ok(cluster, 'cluster not started');
  return cluster;
};
const url = (): string => `kubernetes:${clusterOf().kubeconfigPath}`;

/** Deletes every object of our resources: the next test starts from an empty store. */
async function wipe(): Promise<void> {
  const c = clusterOf();
  for (const plural of ['keyvalues', 'ippools', 'reservedips', 'ipclaims']) {
    const r = await kubeRequest(c, 'DELETE', `${BASE}/${plural}`);
    assert.equal(r.status, 200, `wipe ${plural}: ${JSON.stringify(r.body)}`);
  }
  // A namespaced resource has no cluster-wide delete-collection.
  for (const o of (await kubeRequest(c, 'GET', `${BASE}/testthings`)).body.items ?? []) {
    await kubeRequest(
      c,
      'DELETE',
      `${BASE}/namespaces/${o.metadata.namespace}/testthings/${o.metadata.name}`,
    );
  }
}

before(async () => {
  cluster = await startTestCluster();
  const docs = parseAllDocuments(readFileSync(CRDS_FILE, 'utf8')).map(
    (d) => d.toJSON() as Record<string, any>,
  );
  assert.ok(docs.length >= 3, 'deploy/crds has the CRDs of our kinds');
  for (const crd of [...docs, keyValueCrd(), crdFor(TEST_THING, TEST_THING_SCHEMA)])
    await installCrd(cluster, crd);
});

after(async () => {
  await cluster?.stop();
});

/** Collects watch events; `until` waits for a condition over them. */
class Events {
  readonly events: WatchEvent[] = [];
  resets = 0;
  readonly onEvent = (e: WatchEvent): void => {
    this.events.push(e);
  };
  readonly onReset = (): void => {
    this.resets++;
  };
  has(type: 'put' | 'delete', key: string, version?: string): boolean {
    return this.events.some(
      (e) => e.type === type && e.key === key && (version === undefined || e.version === version),
    );
  }
  wait(type: 'put' | 'delete', key: string, version?: string): Promise<true> {
    return until(`${type} ${key}${version ? ` @${version}` : ''} in ${JSON.stringify(this.events)}`, () =>
      this.has(type, key, version) ? true : undefined,
    );
  }
}

async function rejectsWith(p: Promise<unknown>, retryable: boolean, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof StoreError, `expected StoreError, got ${String(e)}`);
    assert.equal(e.retryable, retryable, e.message);
    assert.match(e.message, re);
    return true;
  });
}

// ---- the contract, every key a KeyValue -------------------------------------------------------

storeContract(
  'kubernetes (KeyValue) contract',
  async () => {
    await wipe();
    return openKubernetesStore(url(), { native: false, listPageSize: 64 });
  },
  {
    // The data lives in the API server; a reopen is a new client that must see the same entries
    // and versions.
    reopen: async (s) => {
      await s.close();
      return openKubernetesStore(url(), { native: false, listPageSize: 64 });
    },
    watchDeadlineMs: DEADLINE_MS,
    // The API server has no multi-object write.
    manyKeys: false,
  },
);

// ---- native mapping ----------------------------------------------------------------------------

function pool(name: string, spec: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec, ...extra };
}

/** What the server adds to an object we wrote, which the store keeps. */
function serverFields(v: any): { uid: string; creationTimestamp: string; generation: number } {
  return {
    uid: v.metadata.uid,
    creationTimestamp: v.metadata.creationTimestamp,
    generation: v.metadata.generation,
  };
}

describe('kubernetes store: our kinds are their CRs', () => {
  let store: KubernetesStore;
  const open = async (opts: KubernetesStoreOptions = {}): Promise<KubernetesStore> =>
    (await openKubernetesStore(url(), opts)) as KubernetesStore;

  beforeEach(async () => {
    await wipe();
    store = await open();
  });

  // node:test runs afterEach-like cleanup through the test's own finally; keep it explicit.
  const t = (name: string, fn: () => Promise<void>): void => {
    it(name, async () => {
      try {
        await fn();
      } finally {
        await store.close();
      }
    });
  };

  t('an IPPool written through the store is the object the API server holds, and reads back', async () => {
    const written = pool(
      'p1',
      { subnet: '10.6.0.0/16', ips: ['10.6.168.131-10.6.168.133'] },
      {
        metadata: { name: 'p1', labels: { team: 'a' }, resourceVersion: '1', uid: 'made-up', generation: 9 },
      },
    );
    const r = await store.create('ippools/p1', written);
    assert.ok(r.created);
    const api = await kubeRequest(clusterOf(), 'GET', `${BASE}/ippools/p1`);
    assert.equal(api.status, 200);
    assert.equal(api.body.metadata.resourceVersion, r.version);
    assert.deepEqual(api.body.spec, written.spec);
    assert.deepEqual(api.body.metadata.labels, { team: 'a' });
    assert.notEqual(api.body.metadata.uid, 'made-up', 'the server owns uid');
    const got = await store.get<any>('ippools/p1');
    assert.ok(got);
    assert.equal(got.version, r.version);
    assert.deepEqual(got.value, {
      apiVersion: API_VERSION,
      kind: 'IPPool',
      metadata: { name: 'p1', labels: { team: 'a' }, ...serverFields(api.body) },
      spec: written.spec,
    });
    assert.equal(got.value.metadata.generation, 1);
  });

  t(
    'update: at the current version it writes, at a stale one it reports the current, a missing key fails',
    async () => {
      const c = await store.create('ippools/p1', pool('p1', { subnet: '10.6.0.0/16' }));
      assert.ok(c.created);
      const cur = await store.get<any>('ippools/p1');
      const next = { ...cur!.value, spec: { subnet: '10.6.0.0/16', gateway: '10.6.0.1' } };
      const u = await store.update('ippools/p1', next, c.version);
      assert.ok(u.ok);
      assert.notEqual(u.version, c.version);
      const stale = await store.update('ippools/p1', { ...next, spec: { subnet: '10.7.0.0/16' } }, c.version);
      assert.equal(stale.ok, false);
      assert.ok(!stale.ok && stale.current);
      assert.equal(stale.current.version, u.version);
      assert.deepEqual((stale.current.value as any).spec, { subnet: '10.6.0.0/16', gateway: '10.6.0.1' });
      assert.equal((stale.current.value as any).metadata.generation, 2, 'the spec change bumped generation');
      assert.deepEqual(
        await store.update('ippools/nope', pool('nope', { subnet: '10.8.0.0/16' }), u.version),
        {
          ok: false,
          current: undefined,
        },
      );
      assert.equal((await kubeRequest(clusterOf(), 'GET', `${BASE}/ippools/nope`)).status, 404);
    },
  );

  t(
    'delete: a stale version fails; the current one deletes, at the revision its DELETED event carries',
    async () => {
      const log = new Events();
      const w = store.watch('ipclaims/', log.onEvent, log.onReset);
      try {
        const claim = {
          apiVersion: API_VERSION,
          kind: 'IPClaim',
          metadata: { name: 'default.10.0.0.1' },
          spec: {
            network: 'default',
            ip: '10.0.0.1',
            family: 4,
            pool: 'p1',
            owner: { kind: 'Pod', namespace: 'default', name: 'a', uid: 'u1' },
            createdAt: '2026-01-01T00:00:00Z',
          },
        };
        const c = await store.create('ipclaims/default.10.0.0.1', claim);
        assert.ok(c.created);
        const u = await store.update(
          'ipclaims/default.10.0.0.1',
          { ...claim, spec: { ...claim.spec, node: 'n1' } },
          c.version,
        );
        assert.ok(u.ok);
        const stale = await store.delete('ipclaims/default.10.0.0.1', c.version);
        assert.equal(stale.ok, false);
        assert.equal(!stale.ok && stale.current?.version, u.version);
        for (const bogus of ['', '0', '-1', 'abc']) {
          assert.equal(
            (await store.delete('ipclaims/default.10.0.0.1', bogus)).ok,
            false,
            `version "${bogus}"`,
          );
        }
        const d = await store.delete('ipclaims/default.10.0.0.1', u.version);
        assert.ok(d.ok);
        assert.ok(
          BigInt(d.version) > BigInt(u.version),
          `deletion ${d.version} after the last write ${u.version}`,
        );
        await log.wait('delete', 'ipclaims/default.10.0.0.1', d.version);
        assert.equal(
          (await kubeRequest(clusterOf(), 'GET', `${BASE}/ipclaims/default.10.0.0.1`)).status,
          404,
        );
        assert.deepEqual(await store.delete('ipclaims/default.10.0.0.1', u.version), {
          ok: false,
          current: undefined,
        });
        assert.deepEqual(
          log.events.map((e) => [e.type, e.version]),
          [
            ['put', c.version],
            ['put', u.version],
            ['delete', d.version],
          ],
        );
        assert.equal(log.resets, 0);
      } finally {
        w.close();
      }
    },
  );

  t('objects written straight through the API (kubectl) appear in list and watch', async () => {
    const pools = new Events();
    const reserved = new Events();
    const ws = [store.watch('ippools/', pools.onEvent), store.watch('reservedips/', reserved.onEvent)];
    try {
      const p = await kubeRequest(
        clusterOf(),
        'POST',
        `${BASE}/ippools`,
        pool('by-kubectl', { subnet: '10.9.0.0/24' }),
      );
      assert.equal(p.status, 201);
      const rv = p.body.metadata.resourceVersion as string;
      const r = await kubeRequest(clusterOf(), 'POST', `${BASE}/reservedips`, {
        apiVersion: API_VERSION,
        kind: 'ReservedIP',
        metadata: { name: 'gw' },
        spec: { ips: ['10.9.0.1'] },
      });
      assert.equal(r.status, 201);
      await pools.wait('put', 'ippools/by-kubectl', rv);
      await reserved.wait('put', 'reservedips/gw', r.body.metadata.resourceVersion);
      const put = pools.events[0] as any;
      assert.deepEqual(put.value.spec, { subnet: '10.9.0.0/24' });
      assert.equal(
        put.value.metadata.resourceVersion,
        undefined,
        "the version is the entry's, not the value's",
      );
      assert.equal(put.value.metadata.managedFields, undefined);
      assert.deepEqual(
        (await store.list('ippools/')).map((e) => [e.key, e.version]),
        [['ippools/by-kubectl', rv]],
      );
      assert.deepEqual(
        (await store.list('')).map((e) => e.key),
        ['ippools/by-kubectl', 'reservedips/gw'],
      );
      const patched = await kubeRequest(clusterOf(), 'PATCH', `${BASE}/ippools/by-kubectl`, {
        spec: { vlan: 7 },
      });
      assert.equal(patched.status, 200);
      await pools.wait('put', 'ippools/by-kubectl', patched.body.metadata.resourceVersion);
      const del = await kubeRequest(clusterOf(), 'DELETE', `${BASE}/ippools/by-kubectl`);
      assert.equal(del.status, 200);
      assert.equal(del.body.kind, 'Status', 'v1.20 answers a CR delete with a Status...');
      assert.equal(del.body.metadata.resourceVersion, undefined, '...that carries no resourceVersion');
      await pools.wait('delete', 'ippools/by-kubectl');
      const last = pools.events.at(-1)!;
      assert.ok(
        BigInt(last.version) > BigInt(patched.body.metadata.resourceVersion),
        'the DELETED event carries the revision of the deletion, after the last write',
      );
      assert.deepEqual(
        pools.events.map((e) => e.type),
        ['put', 'put', 'delete'],
      );
      assert.deepEqual(
        reserved.events.map((e) => e.key),
        ['reservedips/gw'],
      );
    } finally {
      for (const w of ws) w.close();
    }
  });

  t('status goes through the status subresource: written when given, kept when not', async () => {
    const c = await store.create(
      'ippools/s1',
      pool('s1', { subnet: '10.6.0.0/24' }, { status: { used: 3, total: 254 } }),
    );
    assert.ok(c.created);
    let api = await kubeRequest(clusterOf(), 'GET', `${BASE}/ippools/s1`);
    assert.deepEqual(api.body.status, { used: 3, total: 254 });
    assert.equal(api.body.metadata.resourceVersion, c.version, 'the version is that of the status write');
    const u = await store.update(
      'ippools/s1',
      pool('s1', { subnet: '10.6.0.0/24', gateway: '10.6.0.1' }, { status: { used: 4, total: 254 } }),
      c.version,
    );
    assert.ok(u.ok);
    api = await kubeRequest(clusterOf(), 'GET', `${BASE}/ippools/s1`);
    assert.deepEqual([api.body.spec.gateway, api.body.status.used], ['10.6.0.1', 4]);
    assert.equal(api.body.metadata.resourceVersion, u.version);
    const u2 = await store.update('ippools/s1', pool('s1', { subnet: '10.6.0.0/24' }), u.version);
    assert.ok(u2.ok);
    const got = await store.get<any>('ippools/s1');
    assert.equal(got?.version, u2.version);
    assert.deepEqual(
      [got?.value.spec, got?.value.status],
      [{ subnet: '10.6.0.0/24' }, { used: 4, total: 254 }],
    );
  });

  t("refuses values that are not objects of the key's kind, and keys of the wrong shape", async () => {
    const cases: { name: string; key: string; value: unknown; re: RegExp }[] = [
      { name: 'not an object', key: 'ippools/x', value: [1], re: /must be a IPPool object/ },
      {
        name: 'another kind',
        key: 'ippools/x',
        value: { kind: 'ReservedIP', spec: {} },
        re: /is a ReservedIP/,
      },
      {
        name: 'another apiVersion',
        key: 'ippools/x',
        value: { apiVersion: 'v1', spec: {} },
        re: /apiVersion "v1"/,
      },
      {
        name: 'another name',
        key: 'ippools/x',
        value: pool('y', { subnet: '10.0.0.0/8' }),
        re: /metadata.name "y"/,
      },
      {
        name: 'a namespace on a cluster-scoped kind',
        key: 'ippools/x',
        value: { metadata: { name: 'x', namespace: 'n' } },
        re: /cluster-scoped/,
      },
      {
        name: 'three segments for a cluster-scoped kind',
        key: 'ippools/a/b',
        value: {},
        re: /ippools\/<name>/,
      },
      {
        name: 'a lone surrogate',
        key: 'nodeleases/n1',
        value: { s: 'a\ud800b' },
        re: /lone UTF-16 surrogate/,
      },
    ];
    for (const c of cases) {
      await rejectsWith(store.create(c.key, c.value), false, c.re);
    }
    assert.deepEqual((await kubeRequest(clusterOf(), 'GET', `${BASE}/ippools`)).body.items, []);
  });

  t('what the API server rejects fails with its message, not retryable', async () => {
    await rejectsWith(
      store.create('ippools/bad', pool('bad', { subnet: '10.0.0.0/8', vlan: 5000 })),
      false,
      /HTTP 422.*spec\.vlan/,
    );
    await rejectsWith(
      store.create('ippools/a.-b', pool('a.-b', { subnet: '10.0.0.0/8' })),
      false,
      /RFC 1123/,
    );
    const c = await store.create('ippools/ok', pool('ok', { subnet: '10.0.0.0/8' }));
    assert.ok(c.created);
    await rejectsWith(
      store.update('ippools/ok', pool('ok', { subnet: '10.0.0.0/8', vlan: -1 }), c.version),
      false,
      /spec\.vlan/,
    );
    assert.equal((await store.get('ippools/ok'))?.version, c.version);
  });

  t(
    'other keys are KeyValue objects beside the CRs, and a list of everything merges them in key order',
    async () => {
      const lease = await store.create('nodeleases/node-1', { renewedAt: 5 });
      assert.ok(lease.created);
      assert.ok((await store.create('ippools/p', pool('p', { subnet: '10.0.0.0/8' }))).created);
      const kv = await kubeRequest(
        clusterOf(),
        'GET',
        `${BASE}/keyvalues/${keyValueName('nodeleases/node-1')}`,
      );
      assert.equal(kv.status, 200);
      assert.deepEqual(kv.body.spec, { key: 'nodeleases/node-1', value: { renewedAt: 5 } });
      assert.equal(kv.body.metadata.labels[KEY_KIND_LABEL], 'nodeleases');
      assert.deepEqual(
        (await store.list('')).map((e) => e.key),
        ['ippools/p', 'nodeleases/node-1'],
      );
      assert.deepEqual(
        (await store.list('n')).map((e) => e.key),
        ['nodeleases/node-1'],
      );
      assert.deepEqual(await store.list('ippools/q'), []);
    },
  );

  t('an object with finalizers is only marked by delete, and goes when they are removed', async () => {
    const held = pool(
      'held',
      { subnet: '10.0.0.0/8' },
      { metadata: { name: 'held', finalizers: ['ipkeeper.io/test'] } },
    );
    const c = await store.create('ippools/held', held);
    assert.ok(c.created);
    const log = new Events();
    const w = store.watch('ippools/', log.onEvent);
    try {
      const d = await store.delete('ippools/held', c.version);
      assert.ok(d.ok);
      const marked = await store.get<any>('ippools/held');
      assert.equal(marked?.version, d.version);
      assert.ok(marked?.value.metadata.deletionTimestamp, 'marked for deletion');
      const meta = { ...marked!.value.metadata, finalizers: [] };
      assert.ok((await store.update('ippools/held', { ...marked!.value, metadata: meta }, d.version)).ok);
      await log.wait('delete', 'ippools/held');
      assert.equal(await store.get('ippools/held'), undefined);
    } finally {
      w.close();
    }
  });

  t('watchFrom a version the server no longer has calls onReset, then carries on', async () => {
    const before = store.watchStats!().resync;
    const log = new Events();
    const w = store.watchFrom('ippools/', '1', log.onEvent, log.onReset);
    try {
      await until('a reset', () => (log.resets > 0 ? true : undefined));
      const c = await store.create('ippools/after-reset', pool('after-reset', { subnet: '10.0.0.0/8' }));
      assert.ok(c.created);
      await log.wait('put', 'ippools/after-reset', c.version);
      assert.equal(log.resets, 1);
      // The 410 is counted for the agent's metrics (ipkeeper_store_watch_resyncs_total).
      assert.equal(store.watchStats!().resync - before, 1);
    } finally {
      w.close();
    }
  });

  t("namespaced kinds map to objects in the key's namespace", async () => {
    await store.close();
    store = await open({ kinds: [...Object.values(KINDS), TEST_THING] });
    const ns = `kv-test-${process.pid}`;
    const n = await kubeRequest(clusterOf(), 'POST', '/api/v1/namespaces', { metadata: { name: ns } });
    assert.ok([201, 409].includes(n.status));
    const log = new Events();
    const w = store.watch(`testthings/${ns}/`, log.onEvent);
    try {
      const thing = (name: string, k: number) => ({
        apiVersion: API_VERSION,
        kind: 'TestThing',
        metadata: { name },
        spec: { n: k },
      });
      const a = await store.create(`testthings/${ns}/a`, thing('a', 1));
      assert.ok(a.created);
      assert.ok((await store.create('testthings/default/a', thing('a', 2))).created);
      const api = await kubeRequest(clusterOf(), 'GET', `${BASE}/namespaces/${ns}/testthings/a`);
      assert.deepEqual([api.body.metadata.namespace, api.body.spec.n], [ns, 1]);
      assert.deepEqual(
        (await store.list(`testthings/${ns}/`)).map((e) => [e.key, (e.value as any).metadata.namespace]),
        [[`testthings/${ns}/a`, ns]],
      );
      assert.deepEqual(
        (await store.list('testthings/')).map((e) => e.key),
        ['testthings/default/a', `testthings/${ns}/a`],
      );
      await log.wait('put', `testthings/${ns}/a`, a.version);
      const d = await store.delete(`testthings/${ns}/a`, a.version);
      assert.ok(d.ok);
      await log.wait('delete', `testthings/${ns}/a`, d.version);
      assert.deepEqual(
        log.events.map((e) => e.key),
        [`testthings/${ns}/a`, `testthings/${ns}/a`],
        'the other namespace is not watched',
      );
      await rejectsWith(store.get('testthings/a'), false, /namespaced/);
      await rejectsWith(
        store.create(`testthings/${ns}/b`, { metadata: { namespace: 'other' } }),
        false,
        /namespace "other"/,
      );
    } finally {
      w.close();
    }
  });
});

// ---- the engine on this backend -----------------------------------------------------------------

/** An IPClaim of network default for `${net}.${n}`, with these labels if any. */
const ipClaim = (net: string, n: number, labels?: Record<string, string>): Record<string, unknown> => ({
  apiVersion: API_VERSION,
  kind: 'IPClaim',
  metadata: { name: `default.${net}.${n}`, ...(labels ? { labels } : {}) },
  spec: {
    network: 'default',
    ip: `${net}.${n}`,
    family: 4,
    pool: 'p1',
    owner: { kind: 'Pod', namespace: 'default', name: `p${n}`, uid: `u${n}` },
    createdAt: '2026-01-01T00:00:00Z',
  },
});

/**
 * Waits until a scan sees `n` claims: it reads the API server's watch cache, which can lag a
 * write by a moment (the engine's watch covers that gap; a test reading right after its writes
 * has to wait).
 */
const inCache = (store: KubernetesStore, n: number): Promise<true> =>
  until(`${n} claims in the watch cache`, async () => {
    let seen = 0;
    await store.scan('ipclaims/', (p) => (seen += p.length));
    return seen >= n ? true : undefined;
  });

describe("kubernetes store: scan, an agent's start, reads the watch cache", () => {
  beforeEach(wipe);

  const claim = (n: number): Record<string, unknown> => ipClaim('10.0.0', n);

  it('hands over what list reads, in pages of listPageSize', async () => {
    const store = (await openKubernetesStore(url(), { listPageSize: 3 })) as KubernetesStore;
    try {
      for (let n = 1; n <= 8; n++)
        assert.ok((await store.create(`ipclaims/default.10.0.0.${n}`, claim(n))).created);
      await inCache(store, 8);
      const pages: { key: string; version: string }[][] = [];
      await store.scan('ipclaims/', (p) => pages.push(p.map((e) => ({ key: e.key, version: e.version }))));
      assert.ok(pages.length >= 3 && pages.every((p) => p.length <= 3), JSON.stringify(pages));
      const listed = (await store.list('ipclaims/')).map((e) => ({ key: e.key, version: e.version }));
      assert.equal(listed.length, 8);
      assert.deepEqual(
        pages.flat().sort((a, b) => (a.key < b.key ? -1 : 1)),
        listed,
      );
      // Nothing under another prefix.
      const none: unknown[] = [];
      await store.scan('ippools/', (p) => none.push(...p));
      assert.deepEqual(none, []);
    } finally {
      await store.close();
    }
  });

  it('reads from the watch cache, and falls back to the paged LIST when that read fails', async () => {
    const proxy = await startRecordingProxy(clusterOf());
    // One LIST (the sharded read has its own test below), so the requests are easy to name.
    const store = (await openKubernetesStore(`kubernetes:${proxy.kubeconfigPath}`, {
      listPageSize: 2,
      scanShards: 1,
    })) as KubernetesStore;
    try {
      for (let n = 1; n <= 5; n++)
        assert.ok((await store.create(`ipclaims/default.10.0.0.${n}`, claim(n))).created);
      await inCache(store, 5);
      const keys = async (): Promise<string[]> => {
        const got: string[] = [];
        await store.scan('ipclaims/', (p) => got.push(...p.map((e) => e.key)));
        return got.sort();
      };
      const want = Array.from({ length: 5 }, (_, i) => `ipclaims/default.10.0.0.${i + 1}`);
      proxy.requests.length = 0;
      assert.deepEqual(await keys(), want);
      const probe = `GET ${BASE}/ipclaims?resourceVersion=0&fieldSelector=metadata.name%3Dipkeeper-open-probe`;
      assert.deepEqual(
        proxy.requests.filter((r) => r.startsWith(`GET ${BASE}/ipclaims?`)),
        [probe, `GET ${BASE}/ipclaims?resourceVersion=0`],
      );
      proxy.requests.length = 0;
      proxy.fail = (r) => (r.includes('resourceVersion=0') && !r.includes('fieldSelector') ? 500 : undefined);
      assert.deepEqual(await keys(), want);
      const lists = proxy.requests.filter((r) => r.startsWith(`GET ${BASE}/ipclaims?`));
      assert.deepEqual(lists.slice(0, 2), [probe, `GET ${BASE}/ipclaims?resourceVersion=0`]);
      assert.ok(
        lists.length === 5 && lists.slice(2).every((r) => r.includes('limit=2')),
        `the cache's revision, one failed cached read, then 3 pages: ${JSON.stringify(lists)}`,
      );
    } finally {
      await store.close();
      await proxy.stop();
    }
  });

  it('a watch running through a scan is not sent back over what it delivered meanwhile', async () => {
    const proxy = await startRecordingProxy(clusterOf());
    const store = (await openKubernetesStore(`kubernetes:${proxy.kubeconfigPath}`, {
      scanShards: 1,
    })) as KubernetesStore;
    const log = new Events();
    const w = store.watch('ipclaims/', log.onEvent, log.onReset);
    try {
      const a = await store.create('ipclaims/default.10.0.0.1', claim(1));
      assert.ok(a.created);
      await log.wait('put', 'ipclaims/default.10.0.0.1', a.version);
      // The server answers the read at its revision; B is written and watched before the store
      // reads that answer, as happens during any read of 100k objects.
      let b: { created: boolean; version?: string } | undefined;
      proxy.hold = (r) =>
        r === `GET ${BASE}/ipclaims?resourceVersion=0`
          ? (async () => {
              b = await store.create('ipclaims/default.10.0.0.2', claim(2));
              await log.wait('put', 'ipclaims/default.10.0.0.2');
            })()
          : undefined;
      const got: string[] = [];
      await store.scan('ipclaims/', (p) => got.push(...p.map((e) => e.key)));
      proxy.hold = undefined;
      assert.deepEqual(got, ['ipclaims/default.10.0.0.1']);
      assert.ok(b?.created);
      // A write after the scan comes through once; nothing before it came twice.
      const c = await store.create('ipclaims/default.10.0.0.3', claim(3));
      assert.ok(c.created);
      await log.wait('put', 'ipclaims/default.10.0.0.3', c.version);
      assert.deepEqual(
        log.events.map((e) => e.key.slice('ipclaims/default.'.length)),
        ['10.0.0.1', '10.0.0.2', '10.0.0.3'],
      );
      assert.equal(log.resets, 0);
    } finally {
      w.close();
      await store.close();
      await proxy.stop();
    }
  });

  it('an exception from onPage ends the scan and comes out as it is', async () => {
    const store = (await openKubernetesStore(url())) as KubernetesStore;
    try {
      assert.ok((await store.create('ipclaims/default.10.0.0.1', claim(1))).created);
      // Without it in the cache, the scan would have no page to hand over, and nothing would throw.
      await inCache(store, 1);
      const mine = new Error('stop here');
      await assert.rejects(
        store.scan('ipclaims/', () => {
          throw mine;
        }),
        (e) => e === mine,
      );
    } finally {
      await store.close();
    }
  });

  it('a watch moved back to an older revision delivers the events since again, and loses none after', async () => {
    const store = (await openKubernetesStore(url())) as KubernetesStore;
    const log = new Events();
    const w = store.watch('ipclaims/', log.onEvent, log.onReset);
    try {
      const a = await store.create('ipclaims/default.10.0.0.1', claim(1));
      const b = await store.create('ipclaims/default.10.0.0.2', claim(2));
      assert.ok(a.created && b.created);
      await log.wait('put', 'ipclaims/default.10.0.0.2', b.version);
      assert.equal(store.rewindWatches('ipclaims', BigInt(a.version) - 1n), 1);
      // Moving forward, or to where it is, is not a move.
      assert.equal(store.rewindWatches('ipclaims', BigInt(b.version) + 1000n), 0);
      const count = (key: string, version: string): number =>
        log.events.filter((e) => e.type === 'put' && e.key === key && e.version === version).length;
      await until('A and B delivered twice', () =>
        count('ipclaims/default.10.0.0.1', a.version) === 2 &&
        count('ipclaims/default.10.0.0.2', b.version) === 2
          ? true
          : undefined,
      );
      const c = await store.create('ipclaims/default.10.0.0.3', claim(3));
      assert.ok(c.created);
      await log.wait('put', 'ipclaims/default.10.0.0.3', c.version);
      assert.deepEqual(
        log.events.map((e) => [e.key.slice('ipclaims/default.'.length), e.version]),
        [
          ['10.0.0.1', a.version],
          ['10.0.0.2', b.version],
          ['10.0.0.1', a.version],
          ['10.0.0.2', b.version],
          ['10.0.0.3', c.version],
        ],
      );
      assert.equal(log.resets, 0);
    } finally {
      w.close();
      await store.close();
    }
  });
});

describe('kubernetes store: IPClaims in shards, read by several LISTs at once', () => {
  beforeEach(wipe);

  const claim = (n: number, labels?: Record<string, string>): Record<string, unknown> =>
    ipClaim('10.0.1', n, labels);

  it('a claim is written with its shard label and read back as it was written', async () => {
    const store = (await openKubernetesStore(url())) as KubernetesStore;
    try {
      const plain = claim(1);
      const labelled = claim(2, { team: 'blue' });
      assert.ok((await store.create('ipclaims/default.10.0.1.1', plain)).created);
      assert.ok((await store.create('ipclaims/default.10.0.1.2', labelled)).created);
      for (const [name, labels] of [
        ['default.10.0.1.1', {}],
        ['default.10.0.1.2', { team: 'blue' }],
      ] as const) {
        const raw = await kubeRequest(clusterOf(), 'GET', `${BASE}/ipclaims/${name}`);
        assert.deepEqual(raw.body.metadata.labels, { ...labels, [SHARD_LABEL]: String(shardOf(name)) });
      }
      // Read back without it (the server adds uid and such to the metadata, as for any object).
      type Read = { metadata: { labels?: Record<string, string> }; spec: unknown };
      const a = await store.get<Read>('ipclaims/default.10.0.1.1');
      const b = await store.get<Read>('ipclaims/default.10.0.1.2');
      assert.ok(a && !('labels' in a.value.metadata), JSON.stringify(a?.value.metadata));
      assert.deepEqual(b?.value.metadata.labels, { team: 'blue' });
      assert.deepEqual([a.value.spec, b.value.spec], [plain.spec, labelled.spec]);
      // An update keeps it; a value someone else put there is theirs, and reads back as it is.
      assert.ok((await store.update('ipclaims/default.10.0.1.1', a!.value, a!.version)).ok);
      const raw = await kubeRequest(clusterOf(), 'GET', `${BASE}/ipclaims/default.10.0.1.1`);
      assert.equal(raw.body.metadata.labels[SHARD_LABEL], String(shardOf('default.10.0.1.1')));
      const patched = await kubeRequest(clusterOf(), 'PATCH', `${BASE}/ipclaims/default.10.0.1.2`, {
        metadata: { labels: { [SHARD_LABEL]: 'x' } },
      });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const c = await store.get<Read>('ipclaims/default.10.0.1.2');
      assert.deepEqual(c?.value.metadata.labels, { team: 'blue', [SHARD_LABEL]: 'x' });
      // Labels that are no object are the API server's to refuse, with its message, not ours to drop.
      const broken = { ...claim(3), metadata: { name: 'default.10.0.1.3', labels: 'team=blue' } };
      await assert.rejects(store.create('ipclaims/default.10.0.1.3', broken), (e) => {
        assert.ok(e instanceof StoreError && !e.retryable, String(e));
        assert.match(e.message, /labels/);
        return true;
      });
    } finally {
      await store.close();
    }
  });

  it('a scan reads every claim once, with or without a label of ours, in one LIST per group of shards and one for the rest', async () => {
    const proxy = await startRecordingProxy(clusterOf());
    const store = (await openKubernetesStore(`kubernetes:${proxy.kubeconfigPath}`, {
      scanShards: 3,
      listPageSize: 4,
    })) as KubernetesStore;
    try {
      for (let n = 1; n <= 20; n++)
        assert.ok((await store.create(`ipclaims/default.10.0.1.${n}`, claim(n))).created);
      // Written by another client: no label, and a value that is none of ours.
      const bare = claim(21);
      const foreign = claim(22, { [SHARD_LABEL]: 'x' });
      for (const o of [bare, foreign]) {
        const r = await kubeRequest(clusterOf(), 'POST', `${BASE}/ipclaims`, o);
        assert.equal(r.status, 201, JSON.stringify(r.body));
      }
      const want = (await store.list('ipclaims/')).map((e) => e.key);
      assert.equal(want.length, 22);
      // The 20 claims of ours fall into more than one shard (else this would test one LIST).
      assert.ok(new Set(Array.from({ length: 20 }, (_, i) => shardOf(`default.10.0.1.${i + 1}`))).size > 3);
      await inCache(store, 22);
      proxy.requests.length = 0;
      const got: string[] = [];
      await store.scan('ipclaims/', (p) => {
        assert.ok(p.length <= 4, `a page of ${p.length}`);
        got.push(...p.map((e) => e.key));
      });
      assert.deepEqual(got.sort(), want);
      const lists = proxy.requests
        .filter((r) => r.startsWith(`GET ${BASE}/ipclaims?resourceVersion=0&labelSelector=`))
        .map((r) =>
          decodeURIComponent(r.slice(r.indexOf('labelSelector=') + 'labelSelector='.length)).replace(
            /\+/g,
            ' ',
          ),
        )
        .sort();
      assert.deepEqual(lists, [...shardSelectors(3)].sort());
      // One of them failing: the paged, consistent LIST reads them all instead.
      proxy.fail = (r) => (r.includes('resourceVersion=0') && r.includes('notin') ? 500 : undefined);
      const again: string[] = [];
      await store.scan('ipclaims/', (p) => again.push(...p.map((e) => e.key)));
      assert.deepEqual([...new Set(again)].sort(), want);
    } finally {
      await store.close();
      await proxy.stop();
    }
  });

  it('an exception from onPage in one of the LISTs ends the scan and comes out as it is', async () => {
    const store = (await openKubernetesStore(url(), { scanShards: 4 })) as KubernetesStore;
    try {
      for (let n = 1; n <= 8; n++)
        assert.ok((await store.create(`ipclaims/default.10.0.1.${n}`, claim(n))).created);
      await inCache(store, 8);
      const mine = new Error('stop here');
      await assert.rejects(
        store.scan('ipclaims/', () => {
          throw mine;
        }),
        (e) => e === mine,
      );
      // The store still works after it.
      assert.equal((await store.list('ipclaims/')).length, 8);
    } finally {
      await store.close();
    }
  });

  it('scanShards and IPKEEPER_KUBE_SCAN_SHARDS outside 1..16 are INVALID_CONFIG naming the field and the value', async () => {
    for (const bad of [0, 17, 2.5, Number.NaN]) {
      await assert.rejects(openKubernetesStore(url(), { scanShards: bad }), (e) => {
        assert.ok(e instanceof IpamError && e.code === 'INVALID_CONFIG', String(e));
        assert.equal(e.details.field, 'scanShards');
        assert.match(e.message, /whole number from 1 to 16/);
        return true;
      });
    }
    const saved = process.env.IPKEEPER_KUBE_SCAN_SHARDS;
    process.env.IPKEEPER_KUBE_SCAN_SHARDS = 'four';
    try {
      await assert.rejects(openKubernetesStore(url()), (e) => {
        assert.ok(e instanceof IpamError && e.code === 'INVALID_CONFIG', String(e));
        assert.equal(e.details.field, 'IPKEEPER_KUBE_SCAN_SHARDS');
        assert.match(e.message, /"four"/);
        return true;
      });
    } finally {
      if (saved === undefined) delete process.env.IPKEEPER_KUBE_SCAN_SHARDS;
      else process.env.IPKEEPER_KUBE_SCAN_SHARDS = saved;
    }
  });
});

describe('shardSelectors', () => {
  /** Whether a `key in (...)` / `key notin (...)` selector matches an object with these labels. */
  const matches = (selector: string, labels: Record<string, string>): boolean => {
    if (selector === '') return true;
    const m = /^(\S+) (in|notin) \(([^)]*)\)$/.exec(selector);
    assert.ok(m, selector);
    const has = m[1]! in labels && m[3]!.split(',').includes(labels[m[1]!]!);
    return m[2] === 'in' ? has : !has;
  };
  const cases: Record<string, string>[] = [
    {},
    { other: '1' },
    { [SHARD_LABEL]: 'x' },
    { [SHARD_LABEL]: '' },
    ...Array.from({ length: SHARDS }, (_, v) => ({ [SHARD_LABEL]: String(v) })),
  ];

  it('every object matches exactly one selector, for any number of LISTs', () => {
    for (let n = 0; n <= SHARDS + 2; n++) {
      const sels = shardSelectors(n);
      assert.equal(sels.length, n <= 1 ? 1 : Math.min(n, SHARDS) + 1);
      for (const labels of cases) {
        const hits = sels.filter((s) => matches(s, labels));
        assert.equal(hits.length, 1, `n=${n} ${JSON.stringify(labels)}: ${JSON.stringify(hits)}`);
      }
    }
  });

  it('shardOf is stable and spreads names over every shard', () => {
    assert.equal(shardOf('default.10.0.0.1'), shardOf('default.10.0.0.1'));
    const counts = new Array<number>(SHARDS).fill(0);
    for (let i = 0; i < 4096; i++) counts[shardOf(`default.10.${i >> 8}.${i & 255}.1`)]!++;
    assert.ok(
      counts.every((c) => c > 4096 / SHARDS / 2),
      JSON.stringify(counts),
    );
  });
});

describe('kubernetes store: the engine allocates and releases through it', () => {
  before(wipe);

  it('20 concurrent allocations make 20 IPClaim objects; releases delete them; a second agent follows by watch', async () => {
    const a = await openKubernetesStore(url());
    const b = await openKubernetesStore(url());
    const ipamA = new Ipam({ store: a, node: 'node-a' });
    const ipamB = new Ipam({ store: b, node: 'node-b' });
    try {
      await ipamA.start();
      await ipamB.start();
      const objs = new ObjectService(a, ipamA);
      await objs.apply([
        pool('kpool', { subnet: '10.20.0.0/24', ips: ['10.20.0.10-10.20.0.40'], gateway: '10.20.0.1' }),
      ]);
      await until('agent B to see the pool', () => (ipamB.state.pools.has('kpool') ? true : undefined));
      const reqs = Array.from({ length: 20 }, (_, i) => ({
        cniNetwork: 'net1',
        containerId: `ctr-${i}`,
        ifName: 'eth0',
        owner: { kind: 'Pod', namespace: 'default', name: `pod-${i}`, uid: `uid-${i}` },
        configPools: { ipv4: ['kpool'] },
      }));
      // Half through each agent: they race for the same addresses, the API server decides.
      const results = await Promise.all(reqs.map((r, i) => (i % 2 ? ipamB : ipamA).add(r)));
      const ips = results.map((r) => r.ips[0]!.address.split('/')[0]!);
      assert.equal(new Set(ips).size, 20, `distinct addresses: ${ips.join(' ')}`);
      const claims = await kubeRequest(clusterOf(), 'GET', `${BASE}/ipclaims`);
      assert.equal(claims.status, 200);
      assert.deepEqual(claims.body.items.map((c: any) => c.spec.ip).sort(), [...ips].sort());
      for (const c of claims.body.items) {
        const i = ips.indexOf(c.spec.ip);
        assert.equal(c.spec.owner.name, `pod-${i}`, `claim ${c.metadata.name}`);
        assert.equal(c.spec.pool, 'kpool');
      }
      await until('agent B to see all 20 claims', () => (ipamB.state.claims.size === 20 ? true : undefined));
      await until('agent A to see all 20 claims', () => (ipamA.state.claims.size === 20 ? true : undefined));
      const used = (await objs.get('IPPool', 'kpool')).status as { used: number };
      assert.equal(used.used, 20);

      const released = await Promise.all(reqs.map((r, i) => (i % 2 ? ipamA : ipamB).release(r)));
      assert.deepEqual(released, Array(20).fill(1));
      assert.deepEqual((await kubeRequest(clusterOf(), 'GET', `${BASE}/ipclaims`)).body.items, []);
      await until('both agents to see the claims go', () =>
        ipamA.state.claims.size === 0 && ipamB.state.claims.size === 0 ? true : undefined,
      );
      assert.deepEqual(
        await Promise.all(reqs.map((r) => ipamA.release(r))),
        Array(20).fill(0),
        'DEL is idempotent',
      );
    } finally {
      await ipamA.stop();
      await ipamB.stop();
      await a.close();
      await b.close();
    }
  });
});

// ---- broken connections ---------------------------------------------------------------------------

/** A TCP proxy in front of the API server whose connections a test can break, and which can go away. */
class Proxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly target: { host: string; port: number };
  port = 0;

  constructor(target: URL) {
    this.target = { host: target.hostname, port: Number(target.port) };
  }

  async listen(): Promise<void> {
    const server = createServer((client) => {
      const up = connect(this.target);
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          up.destroy();
        });
      }
      client.pipe(up);
      up.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Connections open now stop passing bytes either way (a half-open connection); new ones work. */
  freeze(): void {
    for (const s of this.sockets) {
      s.unpipe();
      s.pause();
    }
  }

  /** Cuts every connection open now (both sides). */
  breakAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** Stops listening and cuts everything: the API server is unreachable until `listen()`. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.breakAll();
    if (server) await new Promise((r) => server.close(r));
  }
}

describe('kubernetes store: connections (HTTP/2, cut, silent, rotated)', () => {
  let proxy: Proxy;
  let dir: string;
  before(async () => {
    await wipe();
    proxy = new Proxy(new URL(clusterOf().server));
    await proxy.listen();
    dir = mkdtempSync(join(tmpdir(), 'ipkeeper-kv-proxy-'));
  });
  after(async () => {
    await proxy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A kubeconfig for the cluster at `server`, trusting the CA in `caFile`. */
  const kubeconfig = (name: string, server: string, caFile: string): string => {
    const file = join(dir, name);
    writeFileSync(
      file,
      stringifyYaml({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server, 'certificate-authority': caFile } }],
        users: [{ name: 'u', user: { token: clusterOf().token } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    return file;
  };

  it('a watch resumes after its connection breaks or the server goes away: nothing lost, nothing repeated', async (t) => {
    const c = clusterOf();
    if (c.external) {
      t.skip('external cluster: its address and credentials may not suit a plain TCP proxy');
      return;
    }
    const file = kubeconfig('kubeconfig', `https://127.0.0.1:${proxy.port}`, c.caFile);
    // The watcher goes through the proxy; the writer goes straight to the server, so its writes
    // never have an unknown outcome.
    const watcher = await openKubernetesStore(`kubernetes:${file}`, { native: false, timeoutMs: 1_000 });
    const writer = await openKubernetesStore(url(), { native: false });
    const log = new Events();
    const w = watcher.watch('counters/', log.onEvent, log.onReset);
    try {
      const created = await writer.create('counters/c', { n: 0 });
      assert.ok(created.created);
      let version = created.version;
      const write = async (n: number): Promise<void> => {
        const u = await writer.update('counters/c', { n }, version);
        assert.ok(u.ok);
        version = u.version;
      };
      for (let n = 1; n <= 30; n++) {
        if (n % 10 === 0) proxy.breakAll();
        await write(n);
      }
      await log.wait('put', 'counters/c', version);

      await proxy.stop();
      await rejectsWith(watcher.get('counters/c'), true, /ECONNREFUSED/);
      for (let n = 31; n <= 35; n++) await write(n);
      await proxy.listen();
      await log.wait('put', 'counters/c', version);
      assert.deepEqual(
        log.events.map((e) => (e.type === 'put' ? (e.value as { n: number }).n : -1)),
        Array.from({ length: 36 }, (_, i) => i),
      );
      assert.equal(log.resets, 0);
      // Every cut and the time the proxy was gone are streams started over, none a re-list.
      const stats = watcher.watchStats!();
      assert.ok(stats.broken >= 3, JSON.stringify(stats));
      assert.equal(stats.resync, 0);
      assert.deepEqual(await watcher.get('counters/c'), { key: 'counters/c', value: { n: 35 }, version });
      // One HTTP/2 connection at a time, made anew after each cut.
      assert.equal((watcher as KubernetesStore).transport.http2, true);
      assert.ok(
        (watcher as KubernetesStore).transport.connections >= 4,
        JSON.stringify((watcher as KubernetesStore).transport),
      );
    } finally {
      w.close();
      await watcher.close();
      await writer.close();
    }
  });

  it('one connection carries concurrent requests and watches; http2: false keeps HTTP/1.1', async () => {
    const store = await openKubernetesStore(url(), { native: false });
    const log = new Events();
    const w = store.watch('h2/', log.onEvent, log.onReset);
    try {
      const made = await Promise.all(Array.from({ length: 100 }, (_, i) => store.create(`h2/k${i}`, { i })));
      assert.ok(made.every((m) => m.created));
      await log.wait('put', 'h2/k99', (made[99] as { version: string }).version);
      assert.equal((await store.list('h2/')).length, 100);
      assert.deepEqual((store as KubernetesStore).transport, { http2: true, connections: 1 });
    } finally {
      w.close();
      await store.close();
    }
    const h1 = await openKubernetesStore(url(), { native: false, http2: false });
    try {
      assert.equal((await h1.list('h2/')).length, 100);
      assert.deepEqual((h1 as KubernetesStore).transport, { http2: false, connections: 0 });
    } finally {
      await h1.close();
    }
  });

  it('a connection that goes silent is dropped after an unanswered ping; the next request connects anew', async (t) => {
    const c = clusterOf();
    if (c.external) {
      t.skip('external cluster: its address and credentials may not suit a plain TCP proxy');
      return;
    }
    const file = kubeconfig('silent', `https://127.0.0.1:${proxy.port}`, c.caFile);
    const store = await openKubernetesStore(`kubernetes:${file}`, { native: false, timeoutMs: 1_000 });
    try {
      await store.create('h2/silent', { n: 1 });
      assert.equal((store as KubernetesStore).transport.connections, 1);
      proxy.freeze();
      await rejectsWith(store.get('h2/silent'), true, /no answer from .* within 1000 ms/);
      // The ping that timeout sent goes unanswered: the connection is dropped, the next one works.
      await until('a read on a new connection', async () => {
        try {
          return (await store.get('h2/silent')) ? true : undefined;
        } catch {
          return undefined;
        }
      });
      assert.equal((store as KubernetesStore).transport.connections, 2);
    } finally {
      await store.close();
    }
  });

  it('new TLS material (a rotated CA file) opens a new connection for the requests after it', async () => {
    const c = clusterOf();
    const ca = join(dir, 'ca.crt');
    writeFileSync(ca, readFileSync(c.caFile));
    const store = await openKubernetesStore(`kubernetes:${kubeconfig('rotate', c.server, ca)}`, {
      native: false,
    });
    try {
      await store.create('h2/rotate', { n: 1 });
      assert.equal((store as KubernetesStore).transport.connections, 1);
      await store.get('h2/rotate');
      assert.equal(
        (store as KubernetesStore).transport.connections,
        1,
        'the same material: the same connection',
      );
      // The same CA twice: other bytes, the same trust.
      writeFileSync(ca, Buffer.concat([readFileSync(c.caFile), readFileSync(c.caFile)]));
      await store.get('h2/rotate');
      assert.equal((store as KubernetesStore).transport.connections, 2);
      await store.get('h2/rotate');
      assert.equal((store as KubernetesStore).transport.connections, 2);
    } finally {
      await store.close();
    }
  });
});

// ---- opening --------------------------------------------------------------------------------------

describe('openKubernetesStore', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ipkeeper-kv-test-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function kubeconfig(name: string, server: string, token: string, ca?: string): string {
    const file = join(dir, name);
    writeFileSync(
      file,
      stringifyYaml({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server, ...(ca ? { 'certificate-authority': ca } : {}) } }],
        users: [{ name: 'u', user: { token } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
    return file;
  }

  it('a kubeconfig that does not exist is INVALID_CONFIG', async () => {
    await assert.rejects(openKubernetesStore(`kubernetes:${join(dir, 'nope')}`), (e: unknown) => {
      assert.ok(e instanceof IpamError);
      assert.equal(e.code, 'INVALID_CONFIG');
      assert.match(e.message, /does not exist/);
      return true;
    });
  });

  it('a server that refuses connections is a retryable StoreError after the deadline', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const file = kubeconfig('refused', `https://127.0.0.1:${port}`, 'x');
    await rejectsWith(
      openKubernetesStore(`kubernetes:${file}`, { timeoutMs: 300 }),
      true,
      /ECONNREFUSED|connect/,
    );
  });

  it('a missing CRD is a non-retryable StoreError that says how to install the CRDs', async () => {
    const missing: KindInfo = { ...TEST_THING, kind: 'Nothing', plural: 'nothings', singular: 'nothing' };
    await rejectsWith(
      openKubernetesStore(url(), { kinds: [missing] }),
      false,
      /nothings\.ipkeeper\.io.*ipkeeper crds \| kubectl apply/,
    );
  });

  it("a refused token is a non-retryable StoreError with the server's answer", async (t) => {
    const c = clusterOf();
    if (c.external) {
      t.skip('external cluster: its authentication is its own');
      return;
    }
    const file = kubeconfig('bad-token', c.server, 'not-the-token', c.caFile);
    await rejectsWith(openKubernetesStore(`kubernetes:${file}`), false, /HTTP 401/);
  });

  it('opens through openStore with k8s: and a relative kubeconfig path', async () => {
    const copy = join(dir, 'copy');
    writeFileSync(copy, readFileSync(clusterOf().kubeconfigPath));
    const s = await openStore(`k8s:${relative(process.cwd(), copy)}`);
    try {
      assert.equal(s.backend, 'kubernetes');
    } finally {
      await s.close();
    }
  });
});

// ---- no server needed -------------------------------------------------------------------------------

describe('parseKubernetesUrl', () => {
  const CASES: { url: string; want: string | undefined | Error }[] = [
    { url: 'kubernetes:', want: undefined },
    { url: 'k8s:', want: undefined },
    { url: 'KUBERNETES:', want: undefined },
    { url: 'kubernetes://', want: undefined },
    { url: 'kubernetes:/etc/kube/config', want: '/etc/kube/config' },
    { url: 'kubernetes:///etc/kube/config', want: '/etc/kube/config' },
    { url: 'k8s:conf/kubeconfig', want: join(process.cwd(), 'conf/kubeconfig') },
    { url: 'kubernetes://host/x', want: new Error('names a host') },
    { url: 'kubernetes:/x?context=a', want: new Error('query string') },
    { url: 'kubernetes:/x\0y', want: new Error('NUL') },
    { url: 'etcd://x', want: new Error('must start with kubernetes:') },
  ];
  for (const c of CASES) {
    it(`${JSON.stringify(c.url)} → ${c.want instanceof Error ? `error (${c.want.message})` : String(c.want)}`, () => {
      if (c.want instanceof Error) {
        assert.throws(
          () => parseKubernetesUrl(c.url),
          (e: unknown) =>
            e instanceof IpamError &&
            e.code === 'INVALID_CONFIG' &&
            e.message.includes(c.want instanceof Error ? c.want.message : ''),
        );
      } else {
        assert.deepEqual(parseKubernetesUrl(c.url), { kubeconfig: c.want });
      }
    });
  }
});

describe('keyValueName', () => {
  const SUBDOMAIN = new RegExp(NAME_PATTERN);
  const segment = fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?$/).filter((s) => !s.includes('..'));
  const key = fc
    .array(segment, { minLength: 2, maxLength: 3 })
    .map((segs) => segs.join('/'))
    .filter((k) => {
      try {
        validateKey(k);
        return true;
      } catch {
        return false;
      }
    });

  it('is readable and ends in 16 hex digits', () => {
    assert.match(keyValueName('claims/default.10.6.168.133'), /^claims-default-10-6-168-133-[0-9a-f]{16}$/);
    assert.match(keyValueName('nodeleases/node-1'), /^nodeleases-node-1-[0-9a-f]{16}$/);
  });

  it('tells apart keys with the same slug (claims/a.1, claims/a-1, claims/a/1)', () => {
    const names = ['claims/a.1', 'claims/a-1', 'claims/a/1', 'claimsx/a', 'claims/a'].map(keyValueName);
    assert.equal(new Set(names).size, names.length);
  });

  it('is a valid object name for the longest keys', () => {
    const longest = ['a'.repeat(253), 'b'.repeat(253), 'c'.repeat(253)].join('/');
    const n = keyValueName(longest);
    assert.ok(n.length <= 253 && SUBDOMAIN.test(n), n);
  });

  it('gives every generated key a valid, stable name; distinct keys distinct names', () => {
    fc.assert(
      fc.property(fc.uniqueArray(key, { minLength: 1, maxLength: 30 }), (keys) => {
        const names = keys.map(keyValueName);
        for (const n of names) assert.ok(n.length <= 253 && SUBDOMAIN.test(n), n);
        assert.deepEqual(keys.map(keyValueName), names);
        assert.equal(new Set(names).size, keys.length);
      }),
      { numRuns: 200 },
    );
  });

  it('labels a key kind by its first segment, hashed past 63 characters', () => {
    assert.equal(keyKindLabel('nodeleases'), 'nodeleases');
    const long = keyKindLabel('x'.repeat(64));
    assert.match(long, /^h\.[0-9a-f]{40}$/);
    assert.ok(long.length <= 63);
  });
});

describe('keyValueCrd', () => {
  it('is a cluster-scoped ipkeeper.io CRD that keeps any JSON value, null included', () => {
    const crd = keyValueCrd() as any;
    assert.equal(crd.metadata.name, 'keyvalues.ipkeeper.io');
    assert.equal(crd.spec.scope, 'Cluster');
    const value = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.value;
    assert.deepEqual(
      [value['x-kubernetes-preserve-unknown-fields'], value.nullable, value.type],
      [true, true, undefined],
    );
  });
});
