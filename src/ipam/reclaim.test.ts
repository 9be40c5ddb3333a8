import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import { Ipam } from './engine.ts';
import { ObjectService } from './objects.ts';
import { NodeLeaseSource, Reclaimer, renewLease, NODE_DEAD_MS, RECLAIM_GRACE_MS } from './reclaim.ts';
import { CLAIM_PREFIX } from './state.ts';

async function world() {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const clock = { now: () => now };
  const store = new MemoryStore();
  const make = async (node: string) => {
    const ipam = new Ipam({ store, node, clock });
    await ipam.start();
    return ipam;
  };
  const a = await make('node-a');
  const b = await make('node-b');
  await new ObjectService(store, a, clock.now).apply([
    { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name: 'p' }, spec: { subnet: '10.0.0.0/24' } },
  ]);
  const add = (ipam: Ipam, id: string) =>
    ipam.add({
      cniNetwork: 'n',
      containerId: id,
      ifName: 'eth0',
      owner: { kind: 'Pod', name: id },
      configPools: { ipv4: ['p'] },
    });
  const reclaimer = new Reclaimer({
    store,
    state: a.state,
    sources: [new NodeLeaseSource(store, clock)],
    clock,
  });
  return { store, clock, a, b, add, reclaimer, advance: (ms: number) => (now += ms) };
}

describe('reclaim: claims of a node whose agent is gone', () => {
  it('releases them only after the lease is dead and the grace period has passed, at the same version', async () => {
    const w = await world();
    await renewLease(w.store, 'node-a', w.clock);
    await renewLease(w.store, 'node-b', w.clock);
    await w.add(w.a, 'a1');
    await w.add(w.b, 'b1');
    await w.add(w.b, 'b2');
    assert.equal((await w.reclaimer.scan()).candidates, 0, 'live leases: nothing is a candidate');
    // node-b stops renewing; node-a keeps renewing.
    w.advance(NODE_DEAD_MS + 1000);
    await renewLease(w.store, 'node-a', w.clock);
    let r = await w.reclaimer.scan();
    assert.equal(r.candidates, 2);
    assert.equal(r.released.length, 0, 'a candidate is not released on first sight');
    w.advance(RECLAIM_GRACE_MS - 1000);
    await renewLease(w.store, 'node-a', w.clock);
    assert.equal((await w.reclaimer.scan()).released.length, 0, 'still within grace');
    w.advance(2000);
    await renewLease(w.store, 'node-a', w.clock);
    r = await w.reclaimer.scan();
    assert.deepEqual(
      r.released.map((x) => x.reason.startsWith('node-lease: node "node-b"')),
      [true, true],
    );
    const left = (await w.store.list<IPClaim>(CLAIM_PREFIX)).map((e) => e.value.spec.containerId);
    assert.deepEqual(left, ['a1']);
  });

  it('leaves fixed claims (StatefulSet/VM pods) of a dead node alone: their pod re-attaches them elsewhere', async () => {
    const w = await world();
    await renewLease(w.store, 'node-a', w.clock);
    await renewLease(w.store, 'node-b', w.clock);
    await w.add(w.b, 'b1');
    await w.add(w.b, 'b2');
    // Mark b1's claim as kept for its endpoint, as the engine does for a StatefulSet pod.
    const [e] = (await w.store.list<IPClaim>(CLAIM_PREFIX)).filter((x) => x.value.spec.containerId === 'b1');
    assert.ok(e);
    const r0 = await w.store.update(e.key, { ...e.value, spec: { ...e.value.spec, fixed: true } }, e.version);
    assert.ok(r0.ok);
    w.advance(NODE_DEAD_MS + 1000);
    await renewLease(w.store, 'node-a', w.clock);
    assert.equal((await w.reclaimer.scan()).candidates, 1, 'only the non-fixed claim is a candidate');
    w.advance(RECLAIM_GRACE_MS + 1000);
    await renewLease(w.store, 'node-a', w.clock);
    await w.reclaimer.scan();
    const left = (await w.store.list<IPClaim>(CLAIM_PREFIX)).map((x) => x.value.spec.containerId);
    assert.deepEqual(left, ['b1']);
  });

  it('drops the candidate when the node comes back during the grace period', async () => {
    const w = await world();
    await renewLease(w.store, 'node-a', w.clock);
    await renewLease(w.store, 'node-b', w.clock);
    await w.add(w.b, 'b1');
    w.advance(NODE_DEAD_MS + 1000);
    assert.equal((await w.reclaimer.scan()).candidates, 1);
    await renewLease(w.store, 'node-b', w.clock);
    w.advance(RECLAIM_GRACE_MS + 1000);
    await renewLease(w.store, 'node-b', w.clock);
    const r = await w.reclaimer.scan();
    assert.equal(r.released.length, 0);
    assert.equal(r.candidates, 0);
    assert.equal((await w.store.list(CLAIM_PREFIX)).length, 1);
  });

  it('never frees an address that was released and reused while it was a candidate', async () => {
    const w = await world();
    await w.add(w.b, 'b1'); // node-b never had a lease: a candidate at once
    assert.equal((await w.reclaimer.scan()).candidates, 1);
    // Meanwhile node-b's pod is deleted and the same address goes to node-a's new pod.
    await w.b.release({ cniNetwork: 'n', containerId: 'b1', ifName: 'eth0' });
    await renewLease(w.store, 'node-a', w.clock);
    const got = await w.a.add({
      cniNetwork: 'n',
      containerId: 'a9',
      ifName: 'eth0',
      owner: { kind: 'Pod', name: 'a9' },
      configPools: { ipv4: ['p'] },
      requestedIps: ['10.0.0.1'],
    });
    assert.equal(got.ips[0]?.address, '10.0.0.1/24');
    w.advance(RECLAIM_GRACE_MS + 1000);
    await renewLease(w.store, 'node-a', w.clock);
    const r = await w.reclaimer.scan();
    assert.equal(r.released.length, 0);
    assert.deepEqual(
      (await w.store.list<IPClaim>(CLAIM_PREFIX)).map((e) => e.value.spec.containerId),
      ['a9'],
    );
  });
});
