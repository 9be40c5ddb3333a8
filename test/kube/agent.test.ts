/**
 * The agent in Kubernetes mode against a real kube-apiserver: state in the CRDs, pods read through
 * informers, and the CNI path driven as a kubelet would (pods created through the API and bound to
 * a node, then ADD/DEL with their K8S_POD_* args). Seed 000's objects and annotations, applied as
 * CRs the way `kubectl apply` would.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { call } from '../../src/cli/client.ts';
import { IpamError } from '../../src/errors.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { chartIdentities, statusAs, type Identities } from './identities.ts';
import { installCrds, until } from './crds.ts';
import { socketGet } from '../lib/socket-get.ts';
import { assertMetricsDocumented } from '../lib/metrics-doc.ts';

const NODE = 'ipk-node-a';
const NS = 'ipk-seed';
const API = '/apis/ipkeeper.io/v1alpha1';

describe('agent in Kubernetes mode: CRDs, informers, CNI as a kubelet drives it', () => {
  let cluster: TestCluster;
  let agent: Agent;
  let ids: Identities;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-kagent-'));
  const socket = join(dir, 'agent.sock');

  const create = async (path: string, body: unknown): Promise<void> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.ok([201, 409].includes(r.status), `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  };
  const pod = (name: string, annotations: Record<string, string>, labels: Record<string, string> = {}) =>
    create(`/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS, annotations, labels },
      spec: {
        nodeName: NODE,
        automountServiceAccountToken: false,
        containers: [{ name: 'c', image: 'nginx' }],
      },
    });
  const add = (name: string, containerId: string): Promise<IpamResult> =>
    call<IpamResult>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId,
      ifName: 'eth0',
      network: 'macvlan-ens192',
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: name, K8S_POD_UID: `uid-${name}` },
      ipam: { type: 'ipkeeper' },
    } satisfies CniRequest);

  before(async () => {
    cluster = await startTestCluster({ rbac: true });
    await installCrds(cluster);
    // The agent runs as the chart's service account with the chart's roles; the API server
    // authorizes by RBAC.
    ids = await chartIdentities(cluster, {
      values: {},
      namespace: 'ipk-seed-system',
      suffix: `-${process.pid}`,
      dir,
    });
    await create('/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: NODE, labels: { zone: 'a' } },
    });
    await create('/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS, annotations: { 'ipkeeper.io/default-ipv4-ippool': '["ns-default"]' } },
    });
    // No controller-manager here: make the namespace's default service account ourselves.
    await create(`/api/v1/namespaces/${NS}/serviceaccounts`, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'default', namespace: NS },
    });
    // The seed's objects as CRs, the way kubectl apply would create them.
    await create(`${API}/reservedips`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'ReservedIP',
      metadata: { name: 'test-reservedip' },
      spec: { ips: ['10.6.168.131-10.6.168.132'] },
    });
    for (const [name, spec] of [
      ['test-ippool', { subnet: '10.6.0.0/16', ips: ['10.6.168.131-10.6.168.133'] }],
      ['ns-default', { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.20'] }],
      [
        'web-only',
        { subnet: '10.8.0.0/24', ips: ['10.8.0.10'], podAffinity: { matchLabels: { app: 'web' } } },
      ],
    ] as const) {
      await create(`${API}/ippools`, {
        apiVersion: 'ipkeeper.io/v1alpha1',
        kind: 'IPPool',
        metadata: { name },
        spec,
      });
    }
    agent = await startAgent({
      store: `kubernetes:${ids.agent.kubeconfig}`,
      socket,
      node: NODE,
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
  });

  after(async () => {
    await agent?.close();
    await ids?.remove();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("seed 000: the pod's ipam.spidernet.io/ippool annotation picks the pool; the reservation holds", async () => {
    const annotations = { 'ipam.spidernet.io/ippool': '{\n  "ipv4": ["test-ippool"]\n}' };
    await pod('test-app-1', annotations);
    await pod('test-app-2', annotations);
    const a = await add('test-app-1', 'k-c1');
    assert.deepEqual(
      a.ips.map((i) => i.address),
      ['10.6.168.133/16'],
    );
    const e = await add('test-app-2', 'k-c2').catch((x: unknown) => x);
    assert.ok(e instanceof IpamError, String(e));
    assert.equal(e.code, 'POOL_EXHAUSTED');
    assert.match(e.message, /chosen by pod annotation ipam\.spidernet\.io\/ippool/);
    assert.match(e.message, /2 reserved by "test-reservedip"/);
    // The claim is an IPClaim object in the API server, naming its pod and node.
    const claims = await until('the IPClaim', async () => {
      const r = await kubeRequest(cluster, 'GET', `${API}/ipclaims`);
      return r.body.items?.length > 0 ? r.body.items : undefined;
    });
    assert.equal(claims[0].spec.ip, '10.6.168.133');
    assert.equal(claims[0].spec.owner.name, 'test-app-1');
    assert.equal(claims[0].spec.node, NODE);
    // Deleting the reservation through the API lets the second pod start.
    const d = await kubeRequest(cluster, 'DELETE', `${API}/reservedips/test-reservedip`);
    assert.equal(d.status, 200);
    const b = await until('the reservation to go', async () => {
      try {
        return await add('test-app-2', 'k-c2');
      } catch {
        return undefined;
      }
    });
    assert.match(b.ips[0]?.address ?? '', /^10\.6\.168\.13[12]\/16$/);
  });

  it("a pod without annotations gets its namespace's default pool", async () => {
    await pod('plain', {});
    const r = await add('plain', 'k-plain');
    assert.match(r.ips[0]?.address ?? '', /^10\.7\.0\.(1\d|20)\/24$/);
    assert.equal(r.ips[0]?.pool, 'ns-default');
  });

  it('podAffinity admits only pods with matching labels, and the refusal says why', async () => {
    const ann = { 'ipkeeper.io/ippool': '{"ipv4": ["web-only"]}' };
    await pod('db-0', ann, { app: 'db' });
    await pod('web-0', ann, { app: 'web' });
    const e = await add('db-0', 'k-db').catch((x: unknown) => x);
    assert.ok(e instanceof IpamError);
    assert.match(e.message, /pool "web-only" spec\.podAffinity does not match the pod's labels/);
    const w = await add('web-0', 'k-web');
    assert.equal(w.ips[0]?.address, '10.8.0.10/24');
  });

  it("serves the store's watch restarts and resyncs in its metrics", async () => {
    const { status, text } = await socketGet(socket, '/metrics');
    assert.equal(status, 200);
    // The store's own counters, as they stand (a watch may have started over); no re-list here.
    const s = agent.store.watchStats!();
    assert.match(
      text,
      new RegExp(`^ipkeeper_store_watch_restarts_total\\{reason="closed"\\} ${s.closed}$`, 'm'),
    );
    assert.match(
      text,
      new RegExp(`^ipkeeper_store_watch_restarts_total\\{reason="broken"\\} ${s.broken}$`, 'm'),
    );
    assert.match(text, /^ipkeeper_store_watch_resyncs_total 0$/m);
    assert.ok(assertMetricsDocumented(text).includes('ipkeeper_store_watch_restarts_total'));
  });

  it('DEL deletes the IPClaim object', async () => {
    const before = await kubeRequest(cluster, 'GET', `${API}/ipclaims`);
    assert.ok(
      before.body.items.some((c: any) => c.spec.containerId === 'k-plain'),
      'the claim exists before DEL',
    );
    await call(socket, 'POST', '/v1/cni/del', {
      command: 'DEL',
      containerId: 'k-plain',
      ifName: 'eth0',
      network: 'macvlan-ens192',
      cniVersion: '1.0.0',
      args: {},
      ipam: { type: 'ipkeeper' },
    } satisfies CniRequest);
    const left = await kubeRequest(cluster, 'GET', `${API}/ipclaims`);
    assert.ok(!left.body.items.some((c: any) => c.spec.containerId === 'k-plain'));
  });

  it("the chart's agent role holds nothing more: pools, reservations and secrets are refused", async () => {
    const asAgent = { ...cluster, token: ids.agent.token };
    assert.equal(await statusAs(cluster, ids.agent.token, `${API}/ippools`), 200, 'it reads pools');
    const pool = {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'agent-made' },
      spec: { subnet: '10.9.0.0/24', ips: ['10.9.0.10'] },
    };
    assert.equal((await kubeRequest(asAgent, 'POST', `${API}/ippools`, pool)).status, 403, 'create a pool');
    assert.equal(
      (await kubeRequest(asAgent, 'DELETE', `${API}/reservedips/test-reservedip`)).status,
      403,
      'delete a reservation',
    );
    assert.equal(
      await statusAs(cluster, ids.agent.token, `/api/v1/namespaces/${NS}/secrets`),
      403,
      'secrets',
    );
    assert.equal(
      await statusAs(cluster, ids.agent.token, `/apis/apps/v1/namespaces/${NS}/replicasets`),
      403,
      'list workloads (it GETs owners one by one)',
    );
  });
});
