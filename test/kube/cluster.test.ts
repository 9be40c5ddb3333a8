/**
 * The test control plane itself: a real apiserver behind it (CRDs with a status subresource, 409 on
 * a stale resourceVersion), a controller-manager that turns a Deployment into pods, a scheduler
 * that binds them to a Node the test creates, and a stop() that leaves no process behind.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { readyNode } from './crds.ts';

/** Bound on waiting for controllers; they act in ~1 s here. */
const WAIT_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 200;

/** Polls until `check` returns a value other than undefined. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const started = Date.now();
  while (Date.now() - started < WAIT_TIMEOUT_MS) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  throw new Error(`timed out after ${WAIT_TIMEOUT_MS} ms waiting for ${what}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

const suffix = randomBytes(4).toString('hex');
const ns = `ipkeeper-cluster-test-${suffix}`;
const nodeName = `ipkeeper-test-node-${suffix}`;
const group = 'test.ipkeeper.io';
const crdName = `widgets.${group}`;

describe('test cluster', () => {
  let c: TestCluster;

  before(async () => {
    c = await startTestCluster({ controllerManager: true, scheduler: true });
  });

  after(async () => {
    if (!c) return;
    if (c.external) {
      // Someone else's cluster: take back what we made. Failures here would hide the real result.
      await kubeRequest(c, 'DELETE', `/api/v1/namespaces/${ns}`).catch(() => undefined);
      await kubeRequest(c, 'DELETE', `/api/v1/nodes/${nodeName}`).catch(() => undefined);
      await kubeRequest(
        c,
        'DELETE',
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crdName}`,
      ).catch(() => undefined);
    }
    await c.stop();
  });

  test('serves v1.20.2 and answers /readyz', async (t) => {
    const ready = await kubeRequest(c, 'GET', '/readyz');
    assert.equal(ready.status, 200);
    const v = await kubeRequest(c, 'GET', '/version');
    assert.equal(v.status, 200);
    if (c.external) {
      t.skip('external cluster: any version');
      return;
    }
    assert.equal(v.body.gitVersion, 'v1.20.2');
    assert.equal(c.pids.length, 4, 'etcd, apiserver, controller-manager, scheduler');
  });

  test('rejects a request without the token', async () => {
    const anon = await kubeRequest({ ...c, token: '' }, 'GET', '/api/v1/namespaces');
    // Ours runs with --anonymous-auth=false; an external one may let anonymous in and then forbid.
    assert.ok(c.external ? [401, 403].includes(anon.status) : anon.status === 401, `status ${anon.status}`);
  });

  test('creates a namespace', async () => {
    const r = await kubeRequest(c, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const again = await kubeRequest(c, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns },
    });
    assert.equal(again.status, 409);
  });

  test('serves a CRD with a status subresource and refuses a stale resourceVersion', async () => {
    const crd = await kubeRequest(c, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: crdName },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            subresources: { status: {} },
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: {
                  spec: { type: 'object', properties: { size: { type: 'integer' } } },
                  status: { type: 'object', properties: { ready: { type: 'boolean' } } },
                },
              },
            },
          },
        ],
      },
    });
    assert.equal(crd.status, 201, JSON.stringify(crd.body));
    await eventually('CRD Established', async () => {
      const r = await kubeRequest(
        c,
        'GET',
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crdName}`,
      );
      const established = (r.body?.status?.conditions ?? []).some(
        (x: { type: string; status: string }) => x.type === 'Established' && x.status === 'True',
      );
      return established ? true : undefined;
    });

    const base = `/apis/${group}/v1/namespaces/${ns}/widgets`;
    // Established can precede the discovery of the new group by a moment: retry a 404.
    const created = await eventually('widget created', async () => {
      const r = await kubeRequest(c, 'POST', base, {
        apiVersion: `${group}/v1`,
        kind: 'Widget',
        metadata: { name: 'w1' },
        spec: { size: 1 },
      });
      return r.status === 404 ? undefined : r;
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const rv1: string = created.body.metadata.resourceVersion;

    const updated = await kubeRequest(c, 'PUT', `${base}/w1`, { ...created.body, spec: { size: 2 } });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.notEqual(updated.body.metadata.resourceVersion, rv1);

    const stale = await kubeRequest(c, 'PUT', `${base}/w1`, {
      ...created.body,
      metadata: { ...created.body.metadata, resourceVersion: rv1 },
      spec: { size: 3 },
    });
    assert.equal(stale.status, 409, JSON.stringify(stale.body));
    assert.equal(stale.body.reason, 'Conflict');

    // With the status subresource, the main resource ignores status and /status ignores spec.
    const viaMain = await kubeRequest(c, 'PUT', `${base}/w1`, { ...updated.body, status: { ready: true } });
    assert.equal(viaMain.status, 200);
    assert.equal(viaMain.body.status, undefined);
    const viaStatus = await kubeRequest(c, 'PUT', `${base}/w1/status`, {
      ...viaMain.body,
      spec: { size: 99 },
      status: { ready: true },
    });
    assert.equal(viaStatus.status, 200, JSON.stringify(viaStatus.body));
    assert.deepEqual(viaStatus.body.status, { ready: true });
    assert.deepEqual(viaStatus.body.spec, { size: 2 });
  });

  test('a Deployment gets its pods created and bound to a Node', async () => {
    const node = await kubeRequest(c, 'POST', '/api/v1/nodes', readyNode(nodeName));
    assert.equal(node.status, 201, JSON.stringify(node.body));
    assert.equal(node.body.status.allocatable.pods, '110', 'Node status is accepted on create');

    const labels = { app: `web-${suffix}` };
    const dep = await kubeRequest(c, 'POST', `/apis/apps/v1/namespaces/${ns}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            // Only onto our Node, should the cluster be a real one with real nodes.
            nodeSelector: { 'kubernetes.io/hostname': nodeName },
            containers: [{ name: 'web', image: 'registry.invalid/web:1' }],
          },
        },
      },
    });
    assert.equal(dep.status, 201, JSON.stringify(dep.body));

    const pods = await eventually('2 pods bound to the test Node', async () => {
      const r = await kubeRequest(
        c,
        'GET',
        `/api/v1/namespaces/${ns}/pods?labelSelector=app%3Dweb-${suffix}`,
      );
      const bound = (r.body?.items ?? []).filter(
        (p: { spec: { nodeName?: string } }) => p.spec.nodeName === nodeName,
      );
      return bound.length === 2 ? bound : undefined;
    });
    for (const p of pods) {
      assert.equal(p.metadata.ownerReferences?.[0]?.kind, 'ReplicaSet');
    }
  });

  test('stop() ends every process and removes the temp dir', async (t) => {
    if (c.external) {
      t.skip('external cluster: nothing of ours runs');
      return;
    }
    assert.ok(c.pids.length > 0);
    assert.ok(c.pids.every(isAlive), 'all running before stop');
    assert.ok(existsSync(c.kubeconfigPath));
    await c.stop();
    assert.deepEqual(c.pids.filter(isAlive), [], 'no process left after stop');
    assert.equal(existsSync(c.kubeconfigPath), false);
    await c.stop(); // idempotent
  });
});
