/**
 * The agent as the chart runs it with `store.etcd.url` set: claims and pools in an etcd cluster of
 * the operator's own, pods, namespaces and nodes read from the Kubernetes cluster the agent runs in
 * (`--in-cluster`). Real etcd and a real kube-apiserver v1.20.2 authorizing by RBAC; the agent and
 * the controller are the CLI's processes, each as its own service account with the roles the chart
 * renders for etcd mode (test/kube/identities.ts), through $KUBECONFIG / --kubeconfig (the agent's
 * loading order puts $KUBECONFIG first, as in a pod). What the Kubernetes side adds is checked by a
 * pod whose annotation picks another pool than the network configuration's; that the roles hold
 * nothing more, by requests they are refused.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { call } from '../../src/cli/client.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import type { IPClaim, VIP } from '../../src/api/kinds.ts';
import { makeContext } from '../../src/controller/context.ts';
import { GcReconciler } from '../../src/controller/gc.ts';
import { VipReconciler } from '../../src/controller/vip.ts';
import { appPoolName } from '../../src/ipam/app-pool.ts';
import { openEtcdStore } from '../../src/store/etcd.ts';
import { startAgent, tempDir, type AgentProcess } from '../e2e/harness.ts';
import { freePorts } from '../lib/ports.ts';
import { startEtcdCluster, type EtcdCluster } from '../etcd/cluster.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { chartIdentities, statusAs, type Identities } from './identities.ts';
import { installCrd, until } from './crds.ts';
import { loadFixture } from './fixtures/fixtures.ts';

const NODE = 'ipk-etcd-node';
const NS = 'ipk-etcd-mode';

/** A pod of NS bound to NODE (no kubelet runs it), with these labels and annotations. */
const podOnNode = (
  name: string,
  meta: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS, ...meta },
  spec: { nodeName: NODE, automountServiceAccountToken: false, containers: [{ name: 'c', image: 'nginx' }] },
});

describe(
  'agent with an etcd store, reading pods from Kubernetes (--in-cluster)',
  { timeout: 180_000 },
  () => {
    let kube: TestCluster;
    let etcd: EtcdCluster;
    let url: string;
    let dir: string;
    let ids: Identities;
    const agents: AgentProcess[] = [];

    const create = async (path: string, body: unknown): Promise<void> => {
      const r = await kubeRequest(kube, 'POST', path, body);
      assert.ok(
        [201, 409].includes(r.status),
        `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`,
      );
    };
    /** The CNI ADD a kubelet would send for `pod` (its real uid, as the leak GC checks it). */
    const add = async (socket: string, pod: string): Promise<IpamResult> => {
      const p = await kubeRequest(kube, 'GET', `/api/v1/namespaces/${NS}/pods/${pod}`);
      assert.equal(p.status, 200, `pod ${pod}`);
      return call<IpamResult>(socket, 'POST', '/v1/cni/add', {
        command: 'ADD',
        containerId: `c-${pod}`,
        ifName: 'eth0',
        network: 'macvlan-etcd',
        cniVersion: '1.0.0',
        args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: pod, K8S_POD_UID: p.body.metadata.uid },
        ipam: { type: 'ipkeeper', pools: { ipv4: ['from-netconf'] } },
      } satisfies CniRequest);
    };
    const ready = async (socket: string): Promise<void> => {
      await call(socket, 'POST', '/v1/apply', {
        objects: [
          ['from-netconf', '10.30.0.0/24', '10.30.0.10-10.30.0.20'],
          ['from-annotation', '10.31.0.0/24', '10.31.0.10-10.31.0.20'],
        ].map(([name, subnet, ips]) => ({
          apiVersion: 'ipkeeper.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name },
          spec: { subnet, ips: [ips] },
        })),
      });
    };

    before(async () => {
      [kube, etcd] = await Promise.all([startTestCluster({ rbac: true }), startEtcdCluster(1)]);
      const [nadCrd] = loadFixture('nad-crd.yaml');
      if (
        (
          await kubeRequest(
            kube,
            'GET',
            `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${nadCrd!.metadata.name}`,
          )
        ).status !== 200
      )
        await installCrd(kube, nadCrd!);
      dir = tempDir('etcd-mode');
      url = `${etcd.url}/etcd-mode-${process.pid}/`;
      await create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
      ids = await chartIdentities(kube, {
        values: { store: { etcd: { url } } },
        namespace: NS,
        suffix: `-${process.pid}`,
        dir,
      });
      await create(`/api/v1/namespaces/${NS}/serviceaccounts`, {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'default', namespace: NS },
      });
      for (const name of ['annotated', 'annotated-too']) {
        await create(
          `/api/v1/namespaces/${NS}/pods`,
          podOnNode(name, { annotations: { 'ipam.spidernet.io/ippool': '{"ipv4":["from-annotation"]}' } }),
        );
      }
    });
    after(async () => {
      for (const a of agents) await a.kill('SIGTERM');
      if (kube?.external) await ids?.remove();
      await Promise.all([etcd?.stopAll(), kube?.stop()]);
    });

    it("the pod's annotation picks its pool, and the claim is in etcd, naming the pod", async () => {
      const socket = join(dir, 'a.sock');
      const agent = await startAgent({
        store: url,
        socket,
        node: NODE,
        extra: ['--in-cluster'],
        env: { KUBECONFIG: ids.agent.kubeconfig },
      });
      agents.push(agent);
      await ready(socket);
      let r: IpamResult | undefined;
      for (let i = 0; i < 100 && r === undefined; i++) {
        r = await add(socket, 'annotated').catch(() => undefined);
        if (r === undefined) await new Promise((res) => setTimeout(res, 50));
      }
      assert.match(r?.ips[0]?.address ?? '(none)', /^10\.31\.0\.(1\d|20)\/24$/, agent.log());
      const store = await openEtcdStore(url);
      try {
        const claims = await store.list<{ spec: { ip: string; owner: { name: string }; node: string } }>(
          'ipclaims/',
        );
        assert.deepEqual(
          claims.map((c) => [c.value.spec.ip, c.value.spec.owner.name, c.value.spec.node]),
          [[r!.ips[0]!.address.split('/')[0], 'annotated', NODE]],
        );
      } finally {
        await store.close();
      }
    });

    it('`ipkeeper controller --store etcd://... --no-webhook` keeps the pools in etcd: their status counts the claim', async () => {
      const [port] = await freePorts(1);
      const child = spawn(
        process.execPath,
        [
          fileURLToPath(new URL('../../bin/ipkeeper.ts', import.meta.url)),
          'controller',
          '--store',
          url,
          '--no-webhook',
          '--kubeconfig',
          ids.controller.kubeconfig,
          '--namespace',
          NS,
          '--lease-name',
          `etcd-mode-${process.pid}`,
          '--listen',
          `127.0.0.1:${port}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const store = await openEtcdStore(url);
      try {
        // The pool-status loop counts each pool's claims and writes the counts into the pools, in
        // etcd. (After the first test, which applied the pools and left a claim in from-annotation.)
        type Pool = { status?: { total: number; used: number } };
        const pools = ['from-annotation', 'from-netconf'];
        const claims = await store.list<{ spec: { pool: string } }>('ipclaims/');
        const want = pools.map((p) => ({
          total: 11,
          used: claims.filter((c) => c.value.spec.pool === p).length,
        }));
        const statuses = () =>
          Promise.all(
            pools.map(async (p) => {
              const st = (await store.get<Pool>(`ippools/${p}`))?.value.status;
              return st && { total: st.total, used: st.used };
            }),
          );
        let seen = await statuses();
        for (let i = 0; i < 300 && JSON.stringify(seen) !== JSON.stringify(want); i++) {
          await new Promise((r) => setTimeout(r, 100));
          seen = await statuses();
        }
        assert.deepEqual(seen, want, stderr);

        // A NetworkConfig in etcd → its Multus NAD in the API server. The NetworkConfig is no API
        // object (no uid to own the NAD by): the NAD names it in an annotation, so the next pass
        // updates it rather than refusing it as someone else's, and deleting it removes the NAD.
        const socket = join(dir, 'a.sock');
        const nadPath = `/apis/k8s.cni.cncf.io/v1/namespaces/${NS}/network-attachment-definitions`;
        const nad = async () => {
          const r = await kubeRequest(kube, 'GET', `${nadPath}/vlan-etcd`);
          return r.status === 200 ? r.body : undefined;
        };
        const apply = (team: string) =>
          call(socket, 'POST', '/v1/apply', {
            objects: [
              {
                apiVersion: 'ipkeeper.io/v1alpha1',
                kind: 'NetworkConfig',
                metadata: { name: 'vlan-etcd', namespace: NS, labels: { team } },
                spec: { type: 'macvlan', master: 'ens192', ippools: { ipv4: ['from-netconf'] } },
              },
            ],
          });
        await apply('a');
        const made = await until('the NAD', async () =>
          (await nad())?.metadata.labels?.team === 'a' ? nad() : undefined,
        );
        assert.equal(made.metadata.annotations?.['ipkeeper.io/network-config'], 'vlan-etcd');
        assert.equal(made.metadata.ownerReferences, undefined);
        await apply('b');
        await until('the NAD updated', async () =>
          (await nad())?.metadata.labels?.team === 'b' ? true : undefined,
        );
        const events = await kubeRequest(kube, 'GET', `/api/v1/namespaces/${NS}/events`);
        assert.deepEqual(
          (events.body.items ?? []).filter(
            (e: { reason: string }) => e.reason === 'NetworkAttachmentRefused',
          ),
          [],
        );
        await call(socket, 'DELETE', `/v1/objects/networkconfigs/${NS}/vlan-etcd`);
        await until('the NAD gone', async () => ((await nad()) === undefined ? true : undefined));

        // A Subnet in etcd and a Deployment asking it for pools (seed 001's annotations) → the
        // application's pool, carved into etcd; the Deployment deleted → the pool deleted by the
        // loop itself (Kubernetes' garbage collector cannot see an object in etcd).
        await call(socket, 'POST', '/v1/apply', {
          objects: [
            {
              apiVersion: 'ipkeeper.io/v1alpha1',
              kind: 'Subnet',
              metadata: { name: 'sub-etcd' },
              spec: { subnet: '10.40.0.0/24', ips: ['10.40.0.10-10.40.0.50'] },
            },
          ],
        });
        const deployments = `/apis/apps/v1/namespaces/${NS}/deployments`;
        const made2 = await kubeRequest(kube, 'POST', deployments, {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'web' },
          spec: {
            replicas: 2,
            selector: { matchLabels: { app: 'web' } },
            template: {
              metadata: {
                labels: { app: 'web' },
                annotations: {
                  'ipam.spidernet.io/subnet': '{"ipv4": ["sub-etcd"]}',
                  'ipam.spidernet.io/ippool-ip-number': '+1',
                },
              },
              spec: {
                automountServiceAccountToken: false,
                containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
              },
            },
          },
        });
        assert.equal(made2.status, 201, JSON.stringify(made2.body).slice(0, 300));
        const appPool = appPoolName({ kind: 'Deployment', namespace: NS, name: 'web' }, 4, 'eth0');
        const carved = await until(
          `the application pool ${appPool} in etcd`,
          async () => (await store.get<{ spec: { ips: string[] } }>(`ippools/${appPool}`))?.value,
          60_000,
        );
        assert.deepEqual(carved.spec.ips, ['10.40.0.10-10.40.0.12']);
        assert.equal((await kubeRequest(kube, 'DELETE', `${deployments}/web`)).status, 200);
        await until(
          `${appPool} deleted from etcd`,
          async () => ((await store.get(`ippools/${appPool}`)) === undefined ? true : undefined),
          60_000,
        );
      } finally {
        await store.close();
        child.kill('SIGTERM');
        assert.equal(await exited, 0, stderr);
        // Nothing it tried was refused (a refused Event or list is logged, not fatal).
        assert.doesNotMatch(stderr, /forbidden/i);
      }
    });

    it('without --in-cluster the agent knows no pods: the same ADD takes the network configuration’s pool', async () => {
      const socket = join(dir, 'b.sock');
      const agent = await startAgent({
        store: url,
        socket,
        node: NODE,
        env: { KUBECONFIG: ids.agent.kubeconfig },
      });
      agents.push(agent);
      const r = await add(socket, 'annotated-too');
      assert.match(r.ips[0]?.address ?? '(none)', /^10\.30\.0\.(1\d|20)\/24$/);
    });

    it('the leak GC on the etcd store: a pod deleted without its CNI DEL has its claim released from etcd', async () => {
      const made = await kubeRequest(kube, 'POST', `/api/v1/namespaces/${NS}/pods`, podOnNode('leaked'));
      assert.equal(made.status, 201, JSON.stringify(made.body).slice(0, 300));
      const r = await add(join(dir, 'a.sock'), 'leaked');
      const ip = r.ips[0]!.address.split('/')[0]!;
      const store = await openEtcdStore(url);
      // The controller's GC loop, in process, on the etcd store and as the controller's account.
      const ctx = await makeContext({ kubeconfig: ids.controller.kubeconfig, store, namespace: NS });
      const gc = new GcReconciler({ scanIntervalMs: 0, graceMs: 200 });
      await gc.start(ctx);
      try {
        const claims = () => store.list<IPClaim>('ipclaims/');
        const held = async () => (await claims()).find((c) => c.value.spec.ip === ip);
        assert.equal((await held())?.value.spec.owner.name, 'leaked');
        const others = (await claims()).filter((c) => c.value.spec.ip !== ip).map((c) => c.key);
        assert.ok(others.length > 0, 'the earlier tests left claims of live pods');
        await until('the pod in the GC', async () => (gc.podSeen(NS, 'leaked') ? true : undefined));
        const del = await kubeRequest(kube, 'DELETE', `/api/v1/namespaces/${NS}/pods/leaked`, {
          gracePeriodSeconds: 0,
        });
        assert.equal(del.status, 200);
        await until('the claim released from etcd', async () =>
          (await held()) === undefined ? true : undefined,
        );
        // Only that one: the claims of pods that still exist stay.
        assert.deepEqual(
          (await claims()).map((c) => c.key),
          others,
        );
        // And the operator is told, as the controller's account (which may create Events): the pod
        // is gone, so the event is about its pool (cluster-scoped: its events go to "default").
        await until('the IPReclaimed event', async () => {
          const ev = await kubeRequest(kube, 'GET', '/api/v1/namespaces/default/events');
          return (ev.body.items ?? []).find(
            (e: { reason: string; message: string; involvedObject: { name: string } }) =>
              e.reason === 'IPReclaimed' &&
              e.involvedObject.name === 'from-netconf' &&
              e.message.includes(`of pod ${NS}/leaked:`),
          );
        });
      } finally {
        await gc.stop();
        await store.close();
      }
    });

    it('the VIP loop on the etcd store: its status into etcd, its allowed-address-pair pods from the cluster, its address released with it', async () => {
      const socket = join(dir, 'a.sock');
      await call(socket, 'POST', '/v1/apply', {
        objects: [
          {
            apiVersion: 'ipkeeper.io/v1alpha1',
            kind: 'VIP',
            metadata: { name: 'vip-etcd' },
            spec: { pool: 'from-annotation', namespace: NS, selector: ['app: aap-etcd'] },
          },
        ],
      });
      const store = await openEtcdStore(url);
      // The controller's VIP loop, in process, on the etcd store and as the controller's account.
      const ctx = await makeContext({ kubeconfig: ids.controller.kubeconfig, store, namespace: NS });
      const rec = new VipReconciler({ delayMs: 20, orphanGraceMs: 0 });
      await rec.start(ctx);
      try {
        const vip = async () => (await store.get<VIP>('vips/vip-etcd'))?.value;
        const ready = await until('the VIP ready in etcd', async () => {
          const v = await vip();
          return v?.status?.ready === true ? v : undefined;
        });
        assert.match(ready.status?.v4ip ?? '', /^10\.31\.0\.(1\d|20)$/);
        const held = async () =>
          (await store.list<IPClaim>('ipclaims/')).filter(
            (c) => c.value.spec.owner.kind === 'VIP' && c.value.spec.owner.name === 'vip-etcd',
          );
        assert.deepEqual(
          (await held()).map((c) => c.value.spec.ip),
          [ready.status?.v4ip],
        );
        // A pod of the VIP's namespace, matching its selector and listing it: bound (read through
        // the controller's pod informer).
        const made = await kubeRequest(
          kube,
          'POST',
          `/api/v1/namespaces/${NS}/pods`,
          podOnNode('aap-etcd', {
            labels: { app: 'aap-etcd' },
            annotations: { 'ipkeeper.io/aaps': 'vip-etcd' },
          }),
        );
        assert.equal(made.status, 201, JSON.stringify(made.body).slice(0, 300));
        await until('the pod in status.pods', async () =>
          JSON.stringify((await vip())?.status?.pods) === '["aap-etcd"]' ? true : undefined,
        );
        await call(socket, 'DELETE', '/v1/objects/vips/vip-etcd');
        await until('the VIP and its address gone from etcd', async () =>
          (await vip()) === undefined && (await held()).length === 0 ? true : undefined,
        );
      } finally {
        await rec.stop();
        await store.close();
      }
    });

    it("the etcd-mode roles hold nothing more: our kinds, other objects' writes and the webhook configuration are refused", async () => {
      const ours = '/apis/ipkeeper.io/v1alpha1';
      const cases: [string, string, number][] = [
        // What each uses: pods (both), Deployments (the controller lists them; the agent GETs a pod's
        // owner by name and may not list them, below).
        [ids.agent.token, `/api/v1/namespaces/${NS}/pods`, 200],
        [ids.controller.token, '/api/v1/pods', 200],
        [ids.controller.token, `/apis/apps/v1/namespaces/${NS}/deployments`, 200],
        // What neither needs with the store in etcd.
        [ids.agent.token, `${ours}/ipclaims`, 403],
        [ids.agent.token, `${ours}/ippools`, 403],
        [ids.agent.token, `/apis/apps/v1/namespaces/${NS}/deployments`, 403],
        [ids.agent.token, `/api/v1/namespaces/${NS}/secrets`, 403],
        [ids.controller.token, `${ours}/ippools`, 403],
        [ids.controller.token, `${ours}/namespaces/${NS}/endpoints`, 403],
        [
          ids.controller.token,
          '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/ipkeeper',
          403,
        ],
        [ids.controller.token, `/api/v1/namespaces/${NS}/secrets`, 403],
      ];
      for (const [token, path, want] of cases) {
        const who = token === ids.agent.token ? ids.agent.account : ids.controller.account;
        assert.equal(await statusAs(kube, token, path), want, `${who} GET ${path}`);
      }
      // And the agents, which read pods, namespaces and nodes all along, were refused nothing.
      for (const a of agents) assert.doesNotMatch(a.log(), /forbidden/i);
    });
  },
);
