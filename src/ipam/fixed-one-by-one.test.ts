/**
 * The fixed-IP tests of fixed.test.ts again, on a store that writes keys one by one (no
 * `createMany`), as the Kubernetes backend: there a plain pod's ADD creates its Endpoint first and
 * reads it only when one exists (`EndpointPlan.createFirst`). Plus that path's request count.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/store.ts';
import { API_VERSION } from '../api/kinds.ts';
import { Ipam } from './engine.ts';
import { ObjectService } from './objects.ts';
import { MemoryClusterView } from './cluster-view.ts';
import { ENDPOINT_PREFIX } from './endpoint.ts';
import { fixture } from './fixed.test.ts';

/** `inner` without `createMany`; `calls` counts each method called, by method and key kind. */
function oneByOne(inner: Store, calls?: Map<string, number>): Store {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'createMany') return undefined;
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const key = typeof args[0] === 'string' ? args[0].split('/')[0] : '';
        const k = `${String(prop)} ${key}`;
        calls?.set(k, (calls.get(k) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

fixture.store = () => oneByOne(new MemoryStore());

it('one by one: a new pod writes its Endpoint with one create, reading nothing; a second interface reads it', async () => {
  const calls = new Map<string, number>();
  const store = oneByOne(new MemoryStore(), calls);
  const view = new MemoryClusterView(true);
  view.setPod({ namespace: 'default', name: 'web-1', owners: [] });
  const ipam = new Ipam({ store, node: 'n1', view, random: () => 0.5 });
  await ipam.start();
  await new ObjectService(store, ipam).apply([
    { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name: 'p' }, spec: { subnet: '10.9.0.0/24' } },
  ]);
  calls.clear();
  const base = {
    cniNetwork: 'net1',
    containerId: 'c1',
    owner: { kind: 'Pod', namespace: 'default', name: 'web-1', uid: 'u1' },
    configPools: { ipv4: ['p'] },
  };
  await ipam.add({ ...base, ifName: 'eth0' });
  assert.equal(calls.get('get endpoints'), undefined, 'no read of the endpoint');
  assert.equal(calls.get('create endpoints'), 1);
  await ipam.add({ ...base, ifName: 'net1' });
  assert.equal(calls.get('create endpoints'), 2, 'tried as new, found');
  const ep = await store.get<{ spec: { interfaces: { ifName: string }[] } }>(
    `${ENDPOINT_PREFIX}default/web-1`,
  );
  assert.deepEqual(
    ep?.value.spec.interfaces.map((i) => i.ifName).sort(),
    ['eth0', 'net1'],
    'both interfaces',
  );
});
