/**
 * @module test/kube/crds
 * Installing ipkeeper's CRDs into a test cluster, and waiting on the API server.
 */
import assert from 'node:assert/strict';
import { allCrds } from '../../src/api/crd.ts';
import { kubeRequest, type TestCluster } from './cluster.ts';
import { until as untilDone } from '../lib/until.ts';

export const DEADLINE_MS = 30_000;
export const POLL_MS = 50;

/** Polls `check` until it returns something other than undefined (every POLL_MS, DEADLINE_MS at most). */
export function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  deadlineMs = DEADLINE_MS,
): Promise<T> {
  return untilDone(what, check, deadlineMs, POLL_MS);
}

/** POSTs a CRD (an existing one is left as it is) and waits until it is Established. */
export async function installCrd(c: TestCluster, crd: Record<string, any>): Promise<void> {
  const path = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
  const r = await kubeRequest(c, 'POST', path, crd);
  assert.ok(
    [201, 409].includes(r.status),
    `CRD ${crd.metadata.name}: HTTP ${r.status} ${JSON.stringify(r.body)}`,
  );
  await until(`CRD ${crd.metadata.name} Established`, async () => {
    const g = await kubeRequest(c, 'GET', `${path}/${crd.metadata.name}`);
    const ok = (g.body?.status?.conditions ?? []).some(
      (x: any) => x.type === 'Established' && x.status === 'True',
    );
    return ok ? true : undefined;
  });
}

/** Every CRD `ipkeeper crds` prints (the same as deploy/crds/). */
export async function installCrds(c: TestCluster): Promise<void> {
  for (const crd of allCrds()) await installCrd(c, crd);
}

/**
 * A Node object that reports Ready, as a kubelet would post it: the scheduler binds pods to it.
 * Nothing runs them; tests drive the CNI step themselves (test/kube/kubelet.ts).
 */
export function readyNode(name: string, labels: Record<string, string> = {}): Record<string, unknown> {
  const resources = { cpu: '8', memory: '16Gi', pods: '110' };
  const now = new Date().toISOString();
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...labels } },
    status: {
      capacity: resources,
      allocatable: resources,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'played by the test',
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        },
      ],
    },
  };
}
