import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import { IpamError } from '../errors.ts';
import { API_VERSION, type NodePool } from '../api/kinds.ts';
import { validateObject } from '../api/validate.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import {
  NodePoolStore,
  StatusThrottle,
  nodePoolPools,
  nodePoolReadiness,
  nodePoolUsed,
} from './node-pool.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function nodePool(name: string, spec: NodePool['spec']): NodePool {
  return { apiVersion: API_VERSION, kind: 'NodePool', metadata: { name }, spec };
}
const seed = (ips: string[]) => nodePool('k8s1', { pool: Object.fromEntries(ips.map((ip) => [ip, {}])) });

let seq = 0;
function req(over: Partial<AllocateRequest> = {}): AllocateRequest {
  seq++;
  return {
    cniNetwork: 'net1',
    containerId: `c${seq}`,
    ifName: 'eth0',
    owner: { kind: 'Pod', namespace: 'default', name: `pod-${seq}` },
    ...over,
  };
}

async function engineOn(np: NodePool | undefined) {
  const store = new MemoryStore();
  if (np) await store.create(`nodepools/${np.metadata.name}`, np);
  const view = new NodePoolStore(store, 'k8s1');
  const ipam = new Ipam({ store: view, node: 'k8s1', clock: { now: () => T0 } });
  await ipam.start();
  return { store, view, ipam };
}

/** Waits until the engine's cache has caught up with a store write (the memory store's watch is async). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

describe('nodePoolPools: compiling a node pool', () => {
  it('without a subnet: one host pool per address (/32), Cilium style', () => {
    const pools = nodePoolPools(seed(['192.168.1.1', '192.168.1.2']));
    assert.deepEqual(
      pools.map((p) => [p.metadata.name, p.spec.subnet, p.spec.ips, p.spec.default, p.spec.nodeName]),
      [
        ['nodepool.k8s1.192.168.1.1', '192.168.1.1/32', ['192.168.1.1'], true, ['k8s1']],
        ['nodepool.k8s1.192.168.1.2', '192.168.1.2/32', ['192.168.1.2'], true, ['k8s1']],
      ],
    );
    for (const p of pools) validateObject(p);
  });
  it('with a subnet and gateway: one pool per family', () => {
    const pools = nodePoolPools(
      nodePool('n1', {
        pool: { '10.0.0.5': {}, '10.0.0.6': { resource: 'eni-1' }, 'fd00::5': {} },
        subnets: ['10.0.0.0/24'],
        gateways: ['10.0.0.1'],
      }),
    );
    assert.deepEqual(
      pools.map((p) => [p.metadata.name, p.spec.subnet, p.spec.ips, p.spec.gateway]),
      [
        ['nodepool.n1.fd00-0000-0000-0000-0000-0000-0000-0005', 'fd00::5/128', ['fd00::5'], undefined],
        ['nodepool.n1.v4', '10.0.0.0/24', ['10.0.0.5', '10.0.0.6'], '10.0.0.1'],
      ],
    );
    for (const p of pools) validateObject(p);
  });
  it('validation refuses CIDRs, ranges, odd spellings and addresses outside the subnet, naming each', () => {
    const bad = nodePool('n1', {
      pool: { '10.0.0.0/24': {}, '10.0.0.1-10.0.0.3': {}, '010.0.0.1': {}, 'FD00::1': {}, '10.9.9.9': {} },
      subnets: ['10.0.0.0/24'],
    });
    try {
      validateObject(bad);
      assert.fail('expected INVALID_OBJECT');
    } catch (e) {
      assert.ok(e instanceof IpamError);
      assert.match(e.message, /spec\.pool\["10\.0\.0\.0\/24"\]: a node pool lists single addresses/);
      assert.match(e.message, /spec\.pool\["10\.0\.0\.1-10\.0\.0\.3"\]/);
      assert.match(e.message, /spec\.pool\["010\.0\.0\.1"\]/);
      assert.match(e.message, /spec\.pool\["FD00::1"\]: write the address as "fd00::1"/);
      assert.match(e.message, /spec\.pool\["10\.9\.9\.9"\]: 10\.9\.9\.9 is outside/);
    }
  });
});

describe('node-pool mode: the engine allocates only from the node pool (seed 004)', () => {
  it('hands out the 4 addresses and nothing else; an IPPool in the store is not seen', async () => {
    const { ipam, store } = await engineOn(
      seed(['192.168.1.1', '192.168.1.2', '192.168.1.3', '192.168.1.4']),
    );
    await store.create('ippools/other', {
      apiVersion: API_VERSION,
      kind: 'IPPool',
      metadata: { name: 'other' },
      spec: { subnet: '10.0.0.0/24', default: true },
    });
    await settle();
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push(...(await ipam.add(req())).ips.map((x) => x.address));
    assert.deepEqual(got.sort(), ['192.168.1.1/32', '192.168.1.2/32', '192.168.1.3/32', '192.168.1.4/32']);
    await assert.rejects(
      ipam.add(req()),
      (e: unknown) => e instanceof IpamError && e.code === 'POOL_EXHAUSTED',
    );
  });

  it('an address removed while in use stays with its owner, is never handed out again, and stays in status.used', async () => {
    const np = seed(['192.168.1.1', '192.168.1.2', '192.168.1.3', '192.168.1.4']);
    const { ipam, store, view } = await engineOn(np);
    const a = req();
    const r1 = await ipam.add(a);
    const held = r1.ips[0]?.address.split('/')[0] as string;
    const cur = await store.get<NodePool>('nodepools/k8s1');
    const pool = { ...np.spec.pool };
    delete pool[held];
    await store.update('nodepools/k8s1', { ...np, spec: { pool } }, cur?.version as string);
    await settle();
    assert.equal(view.nodePool()?.spec.pool?.[held], undefined);
    // Idempotent ADD still returns it (the claim is the owner's), as /32.
    assert.deepEqual(
      (await ipam.add(a)).ips.map((x) => x.address),
      [`${held}/32`],
    );
    assert.ok(Object.keys(nodePoolUsed(ipam.state, view.nodePool(), 'k8s1')).includes(held));
    // Released: it does not come back.
    await ipam.release(a);
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push((await ipam.add(req())).ips[0]?.address as string);
    assert.ok(!got.includes(`${held}/32`), `${held} handed out again: ${got.join(', ')}`);
    await assert.rejects(
      ipam.add(req()),
      (e: unknown) => e instanceof IpamError && e.code === 'POOL_EXHAUSTED',
    );
  });

  it('status.used names the owner and the resource', async () => {
    const np = nodePool('k8s1', { pool: { '192.168.1.1': { resource: 'eni-7' }, '192.168.1.2': {} } });
    const { ipam, view } = await engineOn(np);
    await ipam.add(req({ owner: { kind: 'Pod', namespace: 'web', name: 'nginx' } }));
    assert.deepEqual(nodePoolUsed(ipam.state, view.nodePool(), 'k8s1'), {
      '192.168.1.1': { owner: 'web/nginx', resource: 'eni-7' },
    });
  });

  it('a NodePool created after the agent started is picked up', async () => {
    const { ipam, store } = await engineOn(undefined);
    await assert.rejects(ipam.add(req()), (e: unknown) => e instanceof IpamError && e.code === 'NO_POOL');
    await store.create('nodepools/k8s1', seed(['192.168.1.9']));
    await store.create('nodepools/k8s10', seed(['192.168.1.10']));
    await settle();
    assert.deepEqual(
      (await ipam.add(req())).ips.map((x) => x.address),
      ['192.168.1.9/32'],
    );
  });
});

describe('nodePoolReadiness', () => {
  const cases: [string, NodePool | undefined, boolean, boolean][] = [
    ['no NodePool', undefined, false, false],
    ['empty pool', seed([]), false, false],
    ['one address', seed(['192.168.1.1']), false, true],
    ['one address, health checking', seed(['192.168.1.1']), true, false],
    ['two addresses, health checking', seed(['192.168.1.1', '192.168.1.2']), true, true],
  ];
  for (const [name, np, hc, ready] of cases) {
    it(name, () => {
      const r = nodePoolReadiness('k8s1', np, hc);
      assert.equal(r.ready, ready);
      if (!r.ready) assert.match(r.reason, /^Waiting for initial IP to become available in 'k8s1' NodePool/);
    });
  }
});

describe('StatusThrottle (injected clock)', () => {
  it('first change flushes at once; changes within the interval batch into one flush after it', () => {
    let now = 1000;
    const t = new StatusThrottle(15_000, { now: () => now });
    assert.equal(t.mark(), 0);
    assert.equal(t.mark(), undefined, 'already scheduled');
    t.flushing();
    now += 2000;
    assert.equal(t.mark(), 13_000, 'the rest of the interval');
    now += 5000;
    assert.equal(t.mark(), undefined, 'batched into the scheduled flush');
    now += 8000;
    t.flushing();
    now += 20_000;
    assert.equal(t.mark(), 0, 'a change long after the last flush goes out at once');
  });
  it('a change during a write gets a flush of its own, one interval later', () => {
    let now = 0;
    const t = new StatusThrottle(500, { now: () => now });
    t.mark();
    t.flushing();
    now += 1;
    assert.equal(t.mark(), 499);
  });
});
