import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  chooseResources,
  controllerRefs,
  DISCOVERY_GROUP_VERSIONS,
  MemoryWorkloadCache,
  resolveOwnerChain,
  toWorkload,
  topOwner,
  type WorkloadInfo,
  type WorkloadKind,
} from './workloads.ts';

const served = (entries: Record<string, string[]>): Map<string, Set<string>> =>
  new Map(Object.entries(entries).map(([gv, names]) => [gv, new Set(names)]));

const APPS = ['deployments', 'replicasets', 'statefulsets', 'daemonsets', 'controllerrevisions'];

describe('chooseResources', () => {
  it('v1.20: CronJob comes from batch/v1beta1, no KubeVirt', () => {
    const r = chooseResources(
      served({ 'apps/v1': APPS, 'batch/v1': ['jobs'], 'batch/v1beta1': ['cronjobs'] }),
    );
    assert.equal(r.get('CronJob')?.version, 'v1beta1');
    assert.equal(r.get('Job')?.version, 'v1');
    assert.equal(r.get('Deployment')?.group, 'apps');
    assert.equal(r.has('VirtualMachine'), false);
    assert.equal(r.has('VirtualMachineInstance'), false);
  });

  it('batch/v1 CronJob is preferred when the server has both', () => {
    const r = chooseResources(
      served({ 'apps/v1': APPS, 'batch/v1': ['jobs', 'cronjobs'], 'batch/v1beta1': ['cronjobs'] }),
    );
    assert.equal(r.get('CronJob')?.version, 'v1');
  });

  it('KubeVirt kinds appear only with the resources kubevirt.io/v1 serves', () => {
    const r = chooseResources(served({ 'kubevirt.io/v1': ['virtualmachines'] }));
    assert.deepEqual([...r.keys()], ['VirtualMachine']);
    assert.equal(r.get('VirtualMachine')?.plural, 'virtualmachines');
  });

  it('a group/version listed without the resource does not count', () => {
    assert.equal(chooseResources(served({ 'batch/v1': ['jobs'] })).has('CronJob'), false);
  });

  it('honours the kinds asked for', () => {
    const r = chooseResources(served({ 'apps/v1': APPS }), ['StatefulSet']);
    assert.deepEqual([...r.keys()], ['StatefulSet']);
  });

  it('discovery asks about every candidate group/version once', () => {
    assert.deepEqual([...DISCOVERY_GROUP_VERSIONS].sort(), [
      'apps/v1',
      'batch/v1',
      'batch/v1beta1',
      'kubevirt.io/v1',
    ]);
  });
});

describe('controllerRefs', () => {
  it('keeps controller: true only (Kubernetes GetControllerOf)', () => {
    assert.deepEqual(
      controllerRefs([
        { apiVersion: 'v1', kind: 'ConfigMap', name: 'gc-only', uid: 'u0' },
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-1', uid: 'u1', controller: true },
        { apiVersion: 'apps/v1', kind: 'Other', name: 'x', controller: false },
      ]),
      [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-1', uid: 'u1' }],
    );
    assert.deepEqual(controllerRefs(undefined), []);
  });
});

describe('toWorkload', () => {
  const meta = { name: 'w', namespace: 'ns', uid: 'u', labels: { a: '1' }, annotations: { b: '2' } };
  const tmpl = { metadata: { labels: { app: 'w' }, annotations: { 'ipkeeper.io/ippool': 'p' } } };

  const cases: {
    name: string;
    kind: WorkloadKind;
    obj: object;
    replicas: number | undefined;
    template: boolean;
  }[] = [
    {
      name: 'Deployment default replicas 1',
      kind: 'Deployment',
      obj: { metadata: meta, spec: { template: tmpl } },
      replicas: 1,
      template: true,
    },
    {
      name: 'Deployment replicas 0 stays 0',
      kind: 'Deployment',
      obj: { metadata: meta, spec: { replicas: 0, template: tmpl } },
      replicas: 0,
      template: true,
    },
    {
      name: 'ReplicaSet',
      kind: 'ReplicaSet',
      obj: { metadata: meta, spec: { replicas: 3, template: tmpl } },
      replicas: 3,
      template: true,
    },
    {
      name: 'StatefulSet',
      kind: 'StatefulSet',
      obj: { metadata: meta, spec: { replicas: 2, template: tmpl } },
      replicas: 2,
      template: true,
    },
    {
      name: 'DaemonSet has no replicas',
      kind: 'DaemonSet',
      obj: { metadata: meta, spec: { template: tmpl } },
      replicas: undefined,
      template: true,
    },
    {
      name: 'Job parallelism',
      kind: 'Job',
      obj: { metadata: meta, spec: { parallelism: 4, template: tmpl } },
      replicas: 4,
      template: true,
    },
    {
      name: 'Job default parallelism 1',
      kind: 'Job',
      obj: { metadata: meta, spec: { template: tmpl } },
      replicas: 1,
      template: true,
    },
    {
      name: 'CronJob reads the jobTemplate pod template',
      kind: 'CronJob',
      obj: { metadata: meta, spec: { jobTemplate: { spec: { template: tmpl } } } },
      replicas: undefined,
      template: true,
    },
    {
      name: 'VirtualMachine reads spec.template',
      kind: 'VirtualMachine',
      obj: { metadata: meta, spec: { template: tmpl } },
      replicas: undefined,
      template: true,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const w = toWorkload(c.kind, 'x/v1', c.obj);
      assert.ok(w);
      assert.equal(w.replicas, c.replicas);
      assert.equal('replicas' in w, c.replicas !== undefined);
      assert.deepEqual(w.labels, { a: '1' });
      assert.deepEqual(w.templateLabels, c.template ? { app: 'w' } : {});
      assert.deepEqual(w.templateAnnotations, c.template ? { 'ipkeeper.io/ippool': 'p' } : {});
      assert.equal(w.deleting, false);
    });
  }

  it('a VirtualMachineInstance has no template: its own labels are what the pod gets', () => {
    const w = toWorkload('VirtualMachineInstance', 'kubevirt.io/v1', { metadata: meta });
    assert.deepEqual(w?.templateLabels, { a: '1' });
    assert.deepEqual(w?.templateAnnotations, { b: '2' });
  });

  it('deletionTimestamp marks it deleting; missing name or namespace gives undefined', () => {
    assert.equal(
      toWorkload('Job', 'batch/v1', { metadata: { ...meta, deletionTimestamp: '2026-01-01T00:00:00Z' } })
        ?.deleting,
      true,
    );
    assert.equal(toWorkload('Job', 'batch/v1', { metadata: { name: 'x' } }), undefined);
    assert.equal(toWorkload('Job', 'batch/v1', {}), undefined);
  });
});

function w(
  kind: WorkloadKind,
  name: string,
  uid: string,
  owner?: { kind: string; name: string; uid?: string },
): WorkloadInfo {
  return {
    kind,
    apiVersion: 'x/v1',
    namespace: 'ns',
    name,
    uid,
    labels: {},
    annotations: {},
    templateLabels: {},
    templateAnnotations: {},
    ownerReferences: owner ? [owner] : [],
    deleting: false,
  };
}

describe('resolveOwnerChain / topOwner', () => {
  const cache = new MemoryWorkloadCache();
  cache.put(w('Deployment', 'web', 'd1'));
  cache.put(w('ReplicaSet', 'web-5d', 'r1', { kind: 'Deployment', name: 'web', uid: 'd1' }));
  cache.put(w('CronJob', 'nightly', 'c1'));
  cache.put(w('Job', 'nightly-1', 'j1', { kind: 'CronJob', name: 'nightly', uid: 'c1' }));
  cache.put(w('VirtualMachine', 'vm1', 'v1'));
  cache.put(w('VirtualMachineInstance', 'vm1', 'i1', { kind: 'VirtualMachine', name: 'vm1', uid: 'v1' }));
  cache.put(w('ReplicaSet', 'loop-a', 'la', { kind: 'ReplicaSet', name: 'loop-b' }));
  cache.put(w('ReplicaSet', 'loop-b', 'lb', { kind: 'ReplicaSet', name: 'loop-a' }));
  cache.put(w('ReplicaSet', 'orphan', 'o1', { kind: 'Deployment', name: 'not-cached-yet', uid: 'x' }));

  const names = (refs: { kind: string; name: string }[]): string[] => refs.map((r) => `${r.kind}/${r.name}`);

  it('Pod → ReplicaSet → Deployment', () => {
    const chain = cache.ownerChain('ns', [{ kind: 'ReplicaSet', name: 'web-5d', uid: 'r1' }]);
    assert.deepEqual(names(chain), ['ReplicaSet/web-5d', 'Deployment/web']);
    assert.deepEqual(topOwner(chain), { kind: 'Deployment', name: 'web', uid: 'd1' });
  });

  it('Pod → Job → CronJob, and virt-launcher → VMI → VM', () => {
    assert.deepEqual(names(cache.ownerChain('ns', [{ kind: 'Job', name: 'nightly-1' }])), [
      'Job/nightly-1',
      'CronJob/nightly',
    ]);
    assert.deepEqual(names(cache.ownerChain('ns', [{ kind: 'VirtualMachineInstance', name: 'vm1' }])), [
      'VirtualMachineInstance/vm1',
      'VirtualMachine/vm1',
    ]);
  });

  it('a bare pod has no chain and no top owner', () => {
    assert.deepEqual(cache.ownerChain('ns', []), []);
    assert.equal(topOwner([]), undefined);
  });

  it('stops at an owner the cache does not know, still listing it', () => {
    assert.deepEqual(names(cache.ownerChain('ns', [{ kind: 'ReplicaSet', name: 'orphan' }])), [
      'ReplicaSet/orphan',
      'Deployment/not-cached-yet',
    ]);
    // Not a workload kind at all (an operator's CR): listed, not followed.
    assert.deepEqual(names(cache.ownerChain('ns', [{ kind: 'MyOperatorThing', name: 'x' }])), [
      'MyOperatorThing/x',
    ]);
    // Another namespace's ReplicaSet of the same name is not this one.
    assert.deepEqual(names(cache.ownerChain('other', [{ kind: 'ReplicaSet', name: 'web-5d' }])), [
      'ReplicaSet/web-5d',
    ]);
  });

  it('a uid mismatch (deleted and recreated under the same name) ends the chain', () => {
    assert.deepEqual(names(cache.ownerChain('ns', [{ kind: 'ReplicaSet', name: 'web-5d', uid: 'old' }])), [
      'ReplicaSet/web-5d',
    ]);
  });

  it('a cycle ends at the first repeat', () => {
    assert.deepEqual(names(cache.ownerChain('ns', [{ kind: 'ReplicaSet', name: 'loop-a' }])), [
      'ReplicaSet/loop-a',
      'ReplicaSet/loop-b',
    ]);
  });

  it('resolveOwnerChain works on any lookup', () => {
    assert.deepEqual(
      resolveOwnerChain(() => undefined, 'ns', [{ kind: 'StatefulSet', name: 'db' }]),
      [{ kind: 'StatefulSet', name: 'db' }],
    );
  });
});

describe('MemoryWorkloadCache events', () => {
  it('tells listeners add, update, delete; unsubscribe stops them; a throwing listener hurts nobody', () => {
    const cache = new MemoryWorkloadCache();
    const seen: string[] = [];
    cache.on(() => {
      throw new Error('buggy listener');
    });
    const off = cache.on((type, x) => seen.push(`${type} ${x.kind}/${x.name}`));
    cache.put(w('StatefulSet', 'db', 's1'));
    cache.put({ ...w('StatefulSet', 'db', 's1'), replicas: 3 });
    cache.remove('StatefulSet', 'ns', 'db');
    cache.remove('StatefulSet', 'ns', 'db');
    off();
    cache.put(w('StatefulSet', 'db2', 's2'));
    assert.deepEqual(seen, ['add StatefulSet/db', 'update StatefulSet/db', 'delete StatefulSet/db']);
    assert.deepEqual(
      cache.list('StatefulSet').map((x) => x.name),
      ['db2'],
    );
    cache.clear('StatefulSet');
    assert.deepEqual(cache.list('StatefulSet'), []);
  });
});
