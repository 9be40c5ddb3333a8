/**
 * The carving rules of src/controller/app-pools.ts that a VIP from a Subnet depends on (issue #6):
 * a pool being grown never takes an address a claim holds, and a Subnet's `free` does not count it.
 * Real parts throughout: the engine's cache on a memory store, fed by `ipkeeper apply` (ObjectService)
 * and the VIP allocation; `resize` is the carving the reconciler runs.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { WorkloadCache } from '../cluster/workloads.ts';
import { storeContext } from '../../test/lib/controller-context.ts';
import { until } from '../../test/lib/until.ts';
import { API_VERSION, type Subnet } from '../api/kinds.ts';
import { IntervalSet } from '../net/interval-set.ts';
import { Ipam } from '../ipam/engine.ts';
import { ObjectService } from '../ipam/objects.ts';
import { APP_LABEL, resize, subnetAddresses } from '../ipam/app-pool.ts';
import { AppPoolReconciler, carveTaken, subnetStatus } from './app-pools.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function obj(kind: string, name: string, spec: Record<string, unknown>, labels?: Record<string, string>) {
  return { apiVersion: API_VERSION, kind, metadata: { name, ...(labels ? { labels } : {}) }, spec };
}

const subnet = obj('Subnet', 'lb-net', { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.20'] }) as Subnet;
/** An application pool of the Subnet: 10.7.0.10-10.7.0.11. */
const appPool = obj(
  'IPPool',
  'auto4-web-eth0-abcde',
  { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.11'] },
  { [APP_LABEL.subnet]: 'lb-net' },
);

async function setup(objects: unknown[]) {
  const store = new MemoryStore();
  const ipam = new Ipam({ store, node: 'node1', clock: { now: () => T0 } });
  await ipam.start();
  const objs = new ObjectService(store, ipam, () => T0);
  await objs.apply(objects);
  return { ipam, objs };
}

/** What the reconciler's grow of a pool currently holding `current` to `want` addresses takes. */
function grow(state: Ipam['state'], current: IntervalSet, want: number): IntervalSet {
  const offered = subnetAddresses(subnet).difference(state.reserved(4));
  let all = IntervalSet.empty(4);
  for (const e of state.pools.values()) all = all.union(e.compiled.allocatable);
  const held = state.usedSet('default', 4).toIntervalSet();
  return resize({
    offered,
    current,
    taken: carveTaken(all, current, held),
    claimed: held.intersect(current),
    want,
  }).ips;
}

describe('application pools and VIPs from the Subnet', () => {
  it("a pool carved afterwards skips the VIP's address", async () => {
    const { ipam } = await setup([subnet, appPool, obj('VIP', 'lb', { subnet: 'lb-net' })]);
    assert.equal([...ipam.state.claims.values()][0]?.claim.spec.ip, '10.7.0.12');
    // A new pool of 3: not .10-.11 (the other pool), not .12 (the VIP's).
    assert.deepEqual(grow(ipam.state, IntervalSet.empty(4), 3).toStrings(), ['10.7.0.13-10.7.0.15']);
    // The existing pool grown by 2 keeps its own and steps over the VIP's address.
    const mine = IntervalSet.parse(4, ['10.7.0.10-10.7.0.11']);
    assert.deepEqual(grow(ipam.state, mine, 4).toStrings(), ['10.7.0.10-10.7.0.11', '10.7.0.13-10.7.0.14']);
  });

  it('once the VIP is deleted its address may be carved again', async () => {
    const { ipam, objs } = await setup([subnet, appPool, obj('VIP', 'lb', { subnet: 'lb-net' })]);
    await objs.delete('VIP', 'lb');
    assert.deepEqual(grow(ipam.state, IntervalSet.empty(4), 1).toStrings(), ['10.7.0.12']);
  });

  it('carveTaken: claimed addresses inside the pool stay its own, outside it are taken', () => {
    const all = IntervalSet.parse(4, ['10.0.0.1-10.0.0.4']);
    const mine = IntervalSet.parse(4, ['10.0.0.3-10.0.0.4']);
    const held = IntervalSet.parse(4, ['10.0.0.4', '10.0.0.9']);
    assert.deepEqual(carveTaken(all, mine, held).toStrings(), ['10.0.0.1-10.0.0.2', '10.0.0.9']);
  });

  it("the reconciler updates a Subnet's free when a ReservedIP comes or goes, not only at its resync", async () => {
    const store = new MemoryStore();
    await store.create('subnets/lb-net', subnet);
    const { ctx } = storeContext(store);
    // No workloads (no API server here): the Subnet's status is what this is about.
    const noWorkloads: WorkloadCache = {
      get: () => undefined,
      list: () => [],
      ownerChain: () => [],
      has: () => false,
      on: () => () => {},
      async stop() {},
    };
    // resyncMs 0: no periodic pass, so only a kick can bring the change.
    const rec = new AppPoolReconciler({ workloads: noWorkloads, delayMs: 10, resyncMs: 0 });
    await rec.start(ctx);
    try {
      const free = async (): Promise<number | undefined> =>
        (await store.get<Subnet>('subnets/lb-net'))?.value.status?.free;
      const is = (n: number) => async () => ((await free()) === n ? true : undefined);
      await until('free 11', is(11), 5_000, 10);
      // Let the pass its own status write kicks (through the Subnet watch) come and go first.
      await new Promise((r) => setTimeout(r, 300));
      const r = await store.create('reservedips/r', obj('ReservedIP', 'r', { ips: ['10.7.0.20'] }));
      await until('free 10 after the reservation', is(10), 5_000, 10);
      assert.ok(r.created && (await store.delete('reservedips/r', r.version)).ok);
      await until('free 11 after it went', is(11), 5_000, 10);
    } finally {
      await rec.stop();
    }
  });

  it("the Subnet's free counts neither pool addresses, reserved ones nor the VIP's", async () => {
    const { ipam } = await setup([
      subnet,
      appPool,
      obj('ReservedIP', 'r', { ips: ['10.7.0.20'] }),
      obj('VIP', 'lb', { subnet: 'lb-net' }),
    ]);
    const s = subnetStatus(ipam.state, subnet);
    // 11 offered: 2 in the application pool, 1 reserved, 1 the VIP's.
    assert.deepEqual(s, {
      total: 11,
      allocated: 2,
      free: 7,
      pools: { 'auto4-web-eth0-abcde': ['10.7.0.10-10.7.0.11'] },
    });
  });
});
