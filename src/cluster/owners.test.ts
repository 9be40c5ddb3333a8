import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OwnerResolver, type GetWorkload } from './owners.ts';
import { workloadResource, type RawWorkload } from './workloads.ts';

/** A fake API server: objects by `group/version/plural/ns/name`, every GET recorded. */
function server(objs: Record<string, RawWorkload>) {
  const gets: string[] = [];
  let fail: Error | undefined;
  const get: GetWorkload = async (r) => {
    const path = `${r.group}/${r.version}/${r.plural}/${r.namespace}/${r.name}`;
    gets.push(path);
    if (fail) throw fail;
    return objs[path];
  };
  return { get, gets, failWith: (e: Error | undefined) => (fail = e) };
}
const ctl = (apiVersion: string, kind: string, name: string, uid: string) => ({
  apiVersion,
  kind,
  name,
  uid,
  controller: true,
});
const obj = (uid: string, owner?: ReturnType<typeof ctl>): RawWorkload => ({
  metadata: { uid, ...(owner ? { ownerReferences: [owner] } : {}) },
});
const names = (c: { kind: string; name: string }[]) => c.map((o) => `${o.kind}/${o.name}`);

const API = {
  'apps/v1/replicasets/ns/web-1': obj('rs-uid', ctl('apps/v1', 'Deployment', 'web', 'dep-uid')),
  'apps/v1/deployments/ns/web': obj('dep-uid'),
  'batch/v1/jobs/ns/probe-1': obj('job-uid', ctl('batch/v1beta1', 'CronJob', 'probe', 'cj-uid')),
  'batch/v1beta1/cronjobs/ns/probe': obj('cj-uid'),
  'kubevirt.io/v1/virtualmachineinstances/ns/vm1': obj(
    'vmi-uid',
    ctl('kubevirt.io/v1', 'VirtualMachine', 'vm1', 'vm-uid'),
  ),
  'kubevirt.io/v1/virtualmachines/ns/vm1': obj('vm-uid'),
  'apps/v1/statefulsets/ns/db': obj('sts-uid'),
};

describe('OwnerResolver', () => {
  const cases: { name: string; ref: ReturnType<typeof ctl>; want: string[]; gets: number }[] = [
    {
      name: 'Pod → ReplicaSet → Deployment',
      ref: ctl('apps/v1', 'ReplicaSet', 'web-1', 'rs-uid'),
      want: ['ReplicaSet/web-1', 'Deployment/web'],
      gets: 2,
    },
    {
      name: 'Pod → Job → CronJob (at the version the reference names)',
      ref: ctl('batch/v1', 'Job', 'probe-1', 'job-uid'),
      want: ['Job/probe-1', 'CronJob/probe'],
      gets: 2,
    },
    {
      name: 'virt-launcher → VMI → VM',
      ref: ctl('kubevirt.io/v1', 'VirtualMachineInstance', 'vm1', 'vmi-uid'),
      want: ['VirtualMachineInstance/vm1', 'VirtualMachine/vm1'],
      gets: 2,
    },
    {
      name: 'Pod → StatefulSet',
      ref: ctl('apps/v1', 'StatefulSet', 'db', 'sts-uid'),
      want: ['StatefulSet/db'],
      gets: 1,
    },
    {
      name: 'an owner that is gone ends the chain, still listed',
      ref: ctl('apps/v1', 'ReplicaSet', 'gone', 'x'),
      want: ['ReplicaSet/gone'],
      gets: 1,
    },
    {
      name: 'another uid (recreated) ends the chain',
      ref: ctl('apps/v1', 'ReplicaSet', 'web-1', 'old-uid'),
      want: ['ReplicaSet/web-1'],
      gets: 1,
    },
    {
      name: 'not a workload kind: listed, never read',
      ref: ctl('example.com/v1', 'Widget', 'w', 'u'),
      want: ['Widget/w'],
      gets: 0,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const s = server(API);
      const r = new OwnerResolver({ get: s.get });
      const got = await r.chain('ns', [c.ref]);
      assert.deepEqual(names(got.chain), c.want);
      assert.equal(got.partial, false);
      assert.equal(s.gets.length, c.gets, s.gets.join(', '));
    });
  }

  it('a bare pod has no chain and costs nothing', async () => {
    const s = server(API);
    assert.deepEqual((await new OwnerResolver({ get: s.get }).chain('ns', [])).chain, []);
    assert.equal(s.gets.length, 0);
  });

  it('caches for the TTL, then reads again', async () => {
    let t = 0;
    const s = server(API);
    const r = new OwnerResolver({ get: s.get, ttlMs: 1000, now: () => t });
    const ref = ctl('apps/v1', 'ReplicaSet', 'web-1', 'rs-uid');
    await r.chain('ns', [ref]);
    await r.chain('ns', [ref]);
    assert.equal(s.gets.length, 2, 'the second pod of the ReplicaSet costs nothing');
    t = 1000;
    await r.chain('ns', [ref]);
    assert.equal(s.gets.length, 4);
  });

  it('concurrent reads of one owner share one GET', async () => {
    const s = server(API);
    const r = new OwnerResolver({ get: s.get });
    const ref = ctl('apps/v1', 'StatefulSet', 'db', 'sts-uid');
    await Promise.all([r.chain('ns', [ref]), r.chain('ns', [ref]), r.chain('ns', [ref])]);
    assert.equal(s.gets.length, 1);
  });

  it('the cache is bounded: the least recently used entry goes first', async () => {
    const s = server(API);
    const r = new OwnerResolver({ get: s.get, maxEntries: 2 });
    const sts = ctl('apps/v1', 'StatefulSet', 'db', 'sts-uid');
    await r.chain('ns', [ctl('apps/v1', 'ReplicaSet', 'web-1', 'rs-uid')]); // RS, Deployment
    await r.chain('ns', [ctl('apps/v1', 'ReplicaSet', 'web-1', 'rs-uid')]); // hits RS, then Deployment
    await r.chain('ns', [sts]); // evicts the RS, the least recently used
    assert.equal(r.size, 2);
    s.gets.length = 0;
    await r.chain('ns', [sts]);
    await r.chain('ns', [ctl('apps/v1', 'Deployment', 'web', 'dep-uid')]);
    assert.deepEqual(s.gets, [], 'the two most recent are still cached');
    await r.chain('ns', [ctl('apps/v1', 'ReplicaSet', 'web-1', 'rs-uid')]);
    assert.equal(s.gets[0], 'apps/v1/replicasets/ns/web-1', 'the eldest was dropped');
  });

  it('a failed GET ends the chain, is not cached, and is asked again next time', async () => {
    const s = server(API);
    const r = new OwnerResolver({ get: s.get });
    const ref = ctl('apps/v1', 'ReplicaSet', 'web-1', 'rs-uid');
    s.failWith(new Error('forbidden'));
    const got = await r.chain('ns', [ref]);
    assert.deepEqual(names(got.chain), ['ReplicaSet/web-1']);
    assert.equal(got.partial, true);
    s.failWith(undefined);
    assert.deepEqual(names((await r.chain('ns', [ref])).chain), ['ReplicaSet/web-1', 'Deployment/web']);
  });

  it('a cycle stops at the first repeat', async () => {
    const s = server({
      'apps/v1/replicasets/ns/a': obj('a', ctl('apps/v1', 'ReplicaSet', 'b', 'b')),
      'apps/v1/replicasets/ns/b': obj('b', ctl('apps/v1', 'ReplicaSet', 'a', 'a')),
    });
    const got = await new OwnerResolver({ get: s.get }).chain('ns', [ctl('apps/v1', 'ReplicaSet', 'a', 'a')]);
    assert.deepEqual(names(got.chain), ['ReplicaSet/a', 'ReplicaSet/b']);
  });
});

describe('workloadResource', () => {
  it('reads at the version the reference names, else the preferred one', () => {
    assert.deepEqual(workloadResource('CronJob', 'batch/v1beta1'), {
      group: 'batch',
      version: 'v1beta1',
      plural: 'cronjobs',
    });
    assert.deepEqual(workloadResource('CronJob'), { group: 'batch', version: 'v1', plural: 'cronjobs' });
    assert.deepEqual(workloadResource('Deployment', 'extensions/v1beta1'), {
      group: 'apps',
      version: 'v1',
      plural: 'deployments',
    });
  });
});
