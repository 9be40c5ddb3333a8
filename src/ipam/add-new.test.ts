/**
 * The one-write ADD of a new pod that is not fixed (engine.ts `addNew`, issue #7): its claims and its
 * Endpoint are created together by `Store.createMany`, without reading the endpoint first; and the
 * cases that leave it for the ordinary path (endpoint already there, address asked for, a lost race,
 * a store wrapper without createMany). Embedded mode: pods are named by their CNI args.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/store.ts';
import { API_VERSION, type Endpoint, type IPClaim } from '../api/kinds.ts';
import { Ipam, claimName, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { CLAIM_PREFIX } from './state.ts';
import { ENDPOINT_PREFIX } from './endpoint.ts';
import { parseAddr } from '../net/addr.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const POOLS = [
  {
    apiVersion: API_VERSION,
    kind: 'IPPool',
    metadata: { name: 'v4' },
    spec: { subnet: '10.6.0.0/24', ips: ['10.6.0.10-10.6.0.40'] },
  },
  {
    apiVersion: API_VERSION,
    kind: 'IPPool',
    metadata: { name: 'v6' },
    spec: { subnet: 'fd00:6::/64', ips: ['fd00:6::10-fd00:6::40'] },
  },
];

/** Counts the store calls the engine makes, by method and key kind. */
function counted(inner: MemoryStore, opts: { withoutCreateMany?: boolean } = {}) {
  const calls: string[] = [];
  const kind = (k: string): string => k.split('/')[0] ?? k;
  const s: Store = {
    backend: 'memory',
    get: (k) => (calls.push(`get ${kind(k)}`), inner.get(k)),
    list: (p) => inner.list(p),
    create: (k, v) => (calls.push(`create ${kind(k)}`), inner.create(k, v)),
    update: (k, v, ver) => (calls.push(`update ${kind(k)}`), inner.update(k, v, ver)),
    delete: (k, ver) => (calls.push(`delete ${kind(k)}`), inner.delete(k, ver)),
    watch: (p, on, reset) => inner.watch(p, on, reset),
    close: () => inner.close(),
    ...(opts.withoutCreateMany
      ? {}
      : {
          createMany: (es: { key: string; value: unknown }[]) => (
            calls.push(`createMany ${es.map((e) => kind(e.key)).join('+')}`),
            inner.createMany(es)
          ),
        }),
  };
  return { store: s, calls };
}

async function engine(store: Store, inner: MemoryStore) {
  const ipam = new Ipam({ store, node: 'n1', clock: { now: () => T0 }, random: () => 0.5 });
  await ipam.start();
  await new ObjectService(inner, ipam, () => T0).apply(POOLS);
  await new Promise((r) => setImmediate(r));
  return ipam;
}

const req = (pod: string, containerId: string, extra: Partial<AllocateRequest> = {}): AllocateRequest => ({
  cniNetwork: 'macvlan',
  containerId,
  ifName: 'eth0',
  owner: { kind: 'Pod', namespace: 'web', name: pod, uid: `uid-${pod}` },
  configPools: { ipv4: ['v4'], ipv6: ['v6'] },
  ...extra,
});

describe('one-write ADD of a new plain pod', () => {
  it('creates both claims and the Endpoint in one createMany, with no read, and DEL removes all three', async () => {
    const inner = new MemoryStore();
    const { store, calls } = counted(inner);
    const ipam = await engine(store, inner);
    calls.length = 0;
    const r = await ipam.add(req('api-1', 'c1'));
    assert.deepEqual(calls, ['createMany ipclaims+ipclaims+endpoints']);
    assert.equal(r.ips.length, 2);
    const ep = (await inner.get<Endpoint>(`${ENDPOINT_PREFIX}web/api-1`))?.value;
    assert.equal(ep?.spec.containerId, 'c1');
    assert.deepEqual(
      ep?.spec.interfaces[0]?.ips.map((i) => i.ip),
      r.ips.map((i) => i.address.split('/')[0]),
    );
    const claims = await inner.list<IPClaim>(CLAIM_PREFIX);
    assert.deepEqual(
      claims.map((c) => c.value.spec.endpoint),
      ['web/api-1', 'web/api-1'],
    );
    // Idempotent: the same container again gets the same addresses and writes nothing new.
    const again = await ipam.add(req('api-1', 'c1'));
    assert.deepEqual(again.ips, r.ips);
    assert.equal((await inner.list(CLAIM_PREFIX)).length, 2);
    assert.equal(await ipam.release(req('api-1', 'c1')), 2);
    assert.deepEqual(await inner.list(CLAIM_PREFIX), []);
    assert.equal(await inner.get(`${ENDPOINT_PREFIX}web/api-1`), undefined);
  });

  it('a new container of a pod whose Endpoint exists takes the ordinary path and rewrites the Endpoint', async () => {
    const inner = new MemoryStore();
    const { store, calls } = counted(inner);
    const ipam = await engine(store, inner);
    await ipam.add(req('api-2', 'old'));
    calls.length = 0;
    const r = await ipam.add(req('api-2', 'new'));
    assert.equal(calls[0], 'createMany ipclaims+ipclaims+endpoints', 'tried first');
    assert.ok(calls.includes('update endpoints'), calls.join(', '));
    const ep = (await inner.get<Endpoint>(`${ENDPOINT_PREFIX}web/api-2`))?.value;
    assert.equal(ep?.spec.containerId, 'new');
    assert.deepEqual(
      ep?.spec.interfaces.flatMap((i) => i.ips.map((x) => x.ip)),
      r.ips.map((i) => i.address.split('/')[0]),
    );
    // The failed createMany wrote nothing: the old container's two claims and the new one's two.
    assert.equal((await inner.list(CLAIM_PREFIX)).length, 4);
  });

  it('a proposed address taken behind the cache is re-proposed; nothing of the lost write remains', async () => {
    const inner = new MemoryStore();
    const { store } = counted(inner);
    const ipam = await engine(store, inner);
    // Another agent holds the first free IPv4 address; this engine does not know yet.
    const first = parseAddr('10.6.0.10').value;
    const key = CLAIM_PREFIX + claimName('default', 4, first);
    const cache = ipam.state; // must not see it: written while the engine's watch is closed
    await ipam.stop();
    await inner.create(key, {
      apiVersion: API_VERSION,
      kind: 'IPClaim',
      metadata: { name: claimName('default', 4, first) },
      spec: {
        network: 'default',
        ip: '10.6.0.10',
        family: 4,
        pool: 'v4',
        owner: { kind: 'Container', name: 'x' },
        createdAt: new Date(T0).toISOString(),
      },
    });
    assert.equal(cache.claims.has(key), false);
    const r = await ipam.add(req('api-3', 'c3'));
    const v4 = r.ips.find((i) => !i.address.includes(':'))!.address;
    assert.notEqual(v4, '10.6.0.10/24');
    assert.equal(ipam.stats.racesLost, 1);
    assert.equal(cache.claims.get(key)?.claim.spec.owner.name, 'x', 'the cache learned the holder');
    const mine = (await inner.list<IPClaim>(CLAIM_PREFIX)).filter((c) => c.value.spec.containerId === 'c3');
    assert.equal(mine.length, 2);
  });

  it('an address asked for by name, and a store without createMany, still give the claims and the Endpoint', async () => {
    const inner = new MemoryStore();
    const { store, calls } = counted(inner, { withoutCreateMany: true });
    const ipam = await engine(store, inner);
    calls.length = 0;
    await ipam.add(req('api-4', 'c4'));
    assert.deepEqual(
      [...calls].sort(),
      ['create endpoints', 'create ipclaims', 'create ipclaims'],
      'the ordinary path: the claims, then the endpoint created as new, nothing read (createFirst)',
    );
    const named = await ipam.add(req('api-5', 'c5', { requestedIps: ['10.6.0.33'] }));
    assert.ok(named.ips.some((i) => i.address === '10.6.0.33/24'));
    assert.equal((await inner.get<Endpoint>(`${ENDPOINT_PREFIX}web/api-5`))?.value.spec.containerId, 'c5');
  });

  it('without createMany, a second interface of a pod makes no claim it must take back', async () => {
    const inner = new MemoryStore();
    const { store, calls } = counted(inner, { withoutCreateMany: true });
    const ipam = await engine(store, inner);
    const seen: string[] = [];
    const w = inner.watch(
      CLAIM_PREFIX,
      (ev) => seen.push(`${ev.type} ${ev.key}`),
      () => undefined,
    );
    await ipam.add(req('api-6', 'c6'));
    calls.length = 0;
    seen.length = 0;
    const net1 = await ipam.add(req('api-6', 'c6', { ifName: 'net1' }));
    await new Promise((r) => setImmediate(r));
    w.close();
    assert.ok(!calls.includes('delete ipclaims'), `a claim was made and taken back: ${calls.join(', ')}`);
    assert.deepEqual(
      calls.filter((c) => c.endsWith(' endpoints')),
      ['create endpoints', 'update endpoints'],
      'the endpoint tried as new (createFirst), found, and rewritten at the version found',
    );
    const ep = await inner.get<Endpoint>(`${ENDPOINT_PREFIX}web/api-6`);
    assert.deepEqual(ep?.value.spec.interfaces.map((i) => i.ifName).sort(), ['eth0', 'net1']);
    assert.deepEqual(
      seen.filter((e) => e.startsWith('delete')),
      [],
      'no claim appeared and vanished',
    );
    // The lowest free addresses after eth0's: nothing was pushed off an address.
    assert.deepEqual(
      net1.ips.map((i) => i.address),
      ['10.6.0.11/24', 'fd00:6::11/64'],
    );
  });
});
