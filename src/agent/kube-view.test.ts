import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OwnerChainView, CHAIN_RETRY_MS } from './kube-view.ts';
import { OwnerResolver, type GetWorkload } from '../cluster/owners.ts';

const RS = { kind: 'ReplicaSet', name: 'web-1', uid: 'rs', apiVersion: 'apps/v1' };
const API: Record<string, object> = {
  'replicasets/web-1': {
    metadata: {
      uid: 'rs',
      ownerReferences: [
        { kind: 'Deployment', name: 'web', uid: 'dep', apiVersion: 'apps/v1', controller: true },
      ],
    },
  },
  'deployments/web': { metadata: { uid: 'dep' } },
};

/** A GET that waits for `open()` (so a test sees the fetch in flight), and may fail. */
function gate() {
  let open!: () => void;
  let opened = new Promise<void>((r) => (open = r));
  let fail = false;
  const get: GetWorkload = async (r) => {
    await opened;
    if (fail) throw new Error('the API server is away');
    return API[`${r.plural}/${r.name}`];
  };
  return {
    get,
    open: () => open(),
    close: () => (opened = new Promise<void>((r) => (open = r))),
    failing: (f: boolean) => (fail = f),
  };
}
const names = (o: { kind: string; name: string }[] | undefined) =>
  (o ?? []).map((x) => `${x.kind}/${x.name}`);

describe('OwnerChainView: owners read on demand', () => {
  it('while the chain is fetched the pod reads as unseen; refreshPod-style waiting gets the whole chain', async () => {
    const g = gate();
    const view = new OwnerChainView(new OwnerResolver({ get: g.get }));
    view.setPod({ namespace: 'ns', name: 'web-1-abc', owners: [RS] });
    const pending = view.resolve(view.pods.get('ns/web-1-abc')!);
    assert.equal(view.pod('ns', 'web-1-abc'), undefined, 'half a chain is never shown');
    assert.equal(view.pending('ns', 'web-1-abc'), pending);
    g.open();
    await pending;
    assert.deepEqual(names(view.pod('ns', 'web-1-abc')?.owners), ['ReplicaSet/web-1', 'Deployment/web']);
  });

  it('a bare pod is read as it is, with nothing to fetch', () => {
    const view = new OwnerChainView(new OwnerResolver({ get: gate().get }));
    view.setPod({ namespace: 'ns', name: 'bare' });
    assert.deepEqual(view.pod('ns', 'bare')?.owners, []);
  });

  it('a failed fetch leaves the chain at the controller, and is tried again on a read after CHAIN_RETRY_MS', async () => {
    let t = 0;
    const g = gate();
    g.open();
    g.failing(true);
    const warnings: string[] = [];
    const view = new OwnerChainView(new OwnerResolver({ get: g.get }), {
      now: () => t,
      log: { warn: (_o, m) => warnings.push(String(m)) },
    });
    view.setPod({ namespace: 'ns', name: 'p', owners: [RS] });
    await view.resolve(view.pods.get('ns/p')!);
    assert.deepEqual(names(view.pod('ns', 'p')?.owners), ['ReplicaSet/web-1'], 'the pod is still seen');
    assert.equal(warnings.length, 1);
    g.failing(false);
    t = CHAIN_RETRY_MS;
    assert.equal(view.pod('ns', 'p'), undefined, 'the read starts a new fetch');
    await view.pending('ns', 'p');
    assert.deepEqual(names(view.pod('ns', 'p')?.owners), ['ReplicaSet/web-1', 'Deployment/web']);
  });

  it('a new controller (the pod re-owned, or recreated) fetches again; forget drops the pod', async () => {
    const g = gate();
    g.open();
    const view = new OwnerChainView(new OwnerResolver({ get: g.get }));
    view.setPod({ namespace: 'ns', name: 'p', owners: [{ kind: 'ReplicaSet', name: 'gone', uid: 'x' }] });
    await view.resolve(view.pods.get('ns/p')!);
    assert.deepEqual(names(view.pod('ns', 'p')?.owners), ['ReplicaSet/gone']);
    view.setPod({ namespace: 'ns', name: 'p', owners: [RS] });
    await view.resolve(view.pods.get('ns/p')!);
    assert.deepEqual(names(view.pod('ns', 'p')?.owners), ['ReplicaSet/web-1', 'Deployment/web']);
    view.forget('ns', 'p');
    assert.equal(view.pod('ns', 'p'), undefined);
  });
});
