/**
 * The controller against a real kube-apiserver: two replicas elect a leader with a Lease, the leader
 * keeps pool status counts and holds deleted pools while claims name them, and the API server itself
 * calls the admission webhook over TLS (the caBundle is the one the controller made and patched in).
 * The API server authorizes by RBAC and the controllers run as the chart's service account with the
 * chart's roles (test/kube/identities.ts): what they do here, those roles allow.
 *
 * Safe on a shared cluster (IPKEEPER_TEST_KUBECONFIG): every name carries a random run id, the pools
 * live in a network of their own, the webhook configuration only matches objects labelled with the
 * run id (objectSelector), and everything is removed at the end (the webhook configuration first, so
 * a dead webhook with failurePolicy Fail never blocks anyone).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { runController, type Controller } from '../../src/controller/main.ts';
import { assertMetricsDocumented } from '../lib/metrics-doc.ts';
import { POOL_FINALIZER, PoolFinalizerReconciler } from '../../src/controller/finalizer.ts';
import { PoolStatusReconciler } from '../../src/controller/pool-status.ts';
import { pemBlocks, webhookConfigObject } from '../../src/controller/webhook-config.ts';
import { claimName } from '../../src/ipam/engine.ts';
import { parseAddr } from '../../src/net/addr.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { chartIdentities, type Identities } from './identities.ts';
import { tempDir } from '../e2e/harness.ts';
import { installCrds, until } from './crds.ts';
import { freePorts } from '../lib/ports.ts';

const RUN = randomBytes(4).toString('hex');
const NS = `ipk-ctl-${RUN}`;
const NET = `ctl-${RUN}`;
const LEASE = `ipkeeper-controller-${RUN}`;
const VWC = `ipkeeper-test-${RUN}`;
const LABEL = 'ipkeeper.io/webhook-test';
const API = '/apis/ipkeeper.io/v1alpha1';
const VWC_PATH = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations';

const pool = (name: string, spec: Record<string, unknown>, labels: Record<string, string> = {}) => ({
  apiVersion: 'ipkeeper.io/v1alpha1',
  kind: 'IPPool',
  metadata: { name: `${name}-${RUN}`, labels },
  spec: { network: NET, ...spec },
});

const claim = (poolName: string, ip: string, owner: string) => {
  const a = parseAddr(ip);
  return {
    apiVersion: 'ipkeeper.io/v1alpha1',
    kind: 'IPClaim',
    metadata: { name: claimName(NET, a.family, a.value) },
    spec: {
      network: NET,
      ip,
      family: a.family,
      pool: `${poolName}-${RUN}`,
      owner: { kind: 'Pod', namespace: NS, name: owner },
      createdAt: new Date().toISOString(),
    },
  };
};

function get(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      })
      .on('error', reject);
  });
}

describe('controller against a real API server: leader election, pool status, finalizers, admission webhook', () => {
  let cluster: TestCluster;
  const controllers: Controller[] = [];
  const made: string[] = [];
  let webhookPorts: number[] = [];
  let ids: Identities;

  const post = async (path: string, body: any) => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    if (r.status === 201) made.push(`${path}/${body.metadata.name}`);
    return r;
  };
  const mustPost = async (path: string, body: any) => {
    const r = await post(path, body);
    assert.equal(
      r.status,
      201,
      `${path} ${body.metadata.name}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`,
    );
    return r.body;
  };
  const lease = async () =>
    (await kubeRequest(cluster, 'GET', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${LEASE}`)).body;
  const leaders = () => controllers.filter((c) => c.isLeader());

  before(async () => {
    cluster = await startTestCluster({ rbac: true });
    await installCrds(cluster);
    const ns = await kubeRequest(cluster, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
    assert.equal(ns.status, 201, JSON.stringify(ns.body));
    // The controllers run as the chart's service account, with its roles (the API server authorizes
    // by RBAC): the webhook configuration they patch is this test's.
    ids = await chartIdentities(cluster, {
      values: {},
      namespace: NS,
      suffix: `-${RUN}`,
      dir: tempDir('ctl-ids'),
      webhookConfig: VWC,
    });
    webhookPorts = await freePorts(2);
    // The configuration exists before the controllers start (as a Helm chart would install it), with
    // no caBundle: the API server cannot call the webhook until a controller patches its CA in.
    const vwc = await kubeRequest(cluster, 'POST', VWC_PATH, {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: VWC },
      webhooks: [
        {
          name: 'validate.ipkeeper.io',
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          failurePolicy: 'Fail',
          timeoutSeconds: 10,
          clientConfig: { url: `https://127.0.0.1:${webhookPorts[0]}/validate` },
          objectSelector: { matchLabels: { [LABEL]: RUN } },
          rules: [
            {
              apiGroups: ['ipkeeper.io'],
              apiVersions: ['*'],
              operations: ['CREATE', 'UPDATE'],
              resources: ['ippools', 'reservedips'],
              scope: '*',
            },
          ],
        },
      ],
    });
    assert.equal(vwc.status, 201, JSON.stringify(vwc.body));
    for (const [i, id] of ['ctl-a', 'ctl-b'].entries()) {
      controllers.push(
        await runController({
          kubeconfig: ids.controller.kubeconfig,
          namespace: NS,
          id: `${id}-${RUN}`,
          leaseName: LEASE,
          leaseDurationS: 15,
          retryPeriodMs: 200,
          listen: '127.0.0.1:0',
          webhookListen: `127.0.0.1:${webhookPorts[i]}`,
          webhookUrl: `https://127.0.0.1:${webhookPorts[i]}/validate`,
          webhookConfig: VWC,
          // Only the loops under test: others' reconcilers may need CRDs this cluster lacks.
          reconcilers: [() => new PoolFinalizerReconciler(), () => new PoolStatusReconciler()],
          logLevel: 'silent',
          defaultMetrics: false,
        }),
      );
    }
  });

  after(async () => {
    // Webhook configuration first: nothing may be left that refuses other tests' writes.
    if (cluster) await kubeRequest(cluster, 'DELETE', `${VWC_PATH}/${VWC}`);
    // Delete what we made while a leader still runs (it releases the finalizers), then stop.
    for (const path of made.reverse()) await kubeRequest(cluster, 'DELETE', path);
    for (const c of controllers) await c.close();
    // Anything still held (a failed test) loses its finalizers so it can go.
    for (const path of made) {
      const r = await kubeRequest(cluster, 'GET', path);
      if (r.status === 200 && r.body.metadata?.finalizers?.length) {
        await kubeRequest(cluster, 'PATCH', path, { metadata: { finalizers: null } });
      }
    }
    await ids?.remove();
    if (cluster) await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
    await cluster?.stop();
  });

  it('two controllers on one Lease: exactly one leads, and the Lease names it', async () => {
    const leader = await until('a leader', () => (leaders().length > 0 ? leaders()[0] : undefined));
    const l = await until('the lease to name the leader', async () => {
      const x = await lease();
      return x?.spec?.holderIdentity === leader.identity ? x : undefined;
    });
    assert.equal(l.spec.leaseDurationSeconds, 15);
    assert.match(l.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    // Across several renewals, never two leaders.
    const renewTime = l.spec.renewTime;
    await until('a renewal', async () => ((await lease()).spec.renewTime !== renewTime ? true : undefined));
    assert.equal(leaders().length, 1);
    assert.equal((await lease()).spec.holderIdentity, leader.identity);
    // Both replicas are ready (a standby serves admission); only the leader says it leads.
    for (const c of controllers) {
      const r = await until('/readyz 200', async () => {
        const x = await get(`http://${c.httpAddress}/readyz`);
        return x.status === 200 ? x : undefined;
      });
      assert.equal(JSON.parse(r.text).leader, c === leader);
      const m = await get(`http://${c.httpAddress}/metrics`);
      assert.match(m.text, new RegExp(`^ipkeeper_controller_leader ${c === leader ? 1 : 0}$`, 'm'));
      // Its store's watches, as the agent's: served from the start, none re-listed here.
      assert.match(m.text, /^ipkeeper_store_watch_restarts_total\{reason="broken"\} \d+$/m);
      assert.match(m.text, /^ipkeeper_store_watch_resyncs_total 0$/m);
      assert.ok(assertMetricsDocumented(m.text).includes('ipkeeper_controller_leader'));
    }
  });

  it('pool status counts appear on the IPPool after claims are created', async () => {
    await mustPost(
      `${API}/ippools`,
      pool('status', { subnet: '10.201.0.0/24', ips: ['10.201.0.10-10.201.0.19'] }),
    );
    for (const [i, ip] of ['10.201.0.10', '10.201.0.11', '10.201.0.12'].entries()) {
      await mustPost(`${API}/ipclaims`, claim('status', ip, `pod-${i}`));
    }
    const p = await until('status used=3', async () => {
      const r = await kubeRequest(cluster, 'GET', `${API}/ippools/status-${RUN}`);
      return r.body.status?.used === 3 ? r.body : undefined;
    });
    assert.deepEqual(p.status, { total: 10, used: 3, reserved: 0, free: 7 });
    assert.deepEqual(p.metadata.finalizers, [POOL_FINALIZER]);
    await kubeRequest(
      cluster,
      'DELETE',
      `${API}/ipclaims/${claim('status', '10.201.0.12', '').metadata.name}`,
    );
    const q = await until('status used=2', async () => {
      const r = await kubeRequest(cluster, 'GET', `${API}/ippools/status-${RUN}`);
      return r.body.status?.used === 2 ? r.body : undefined;
    });
    assert.deepEqual(q.status, { total: 10, used: 2, reserved: 0, free: 8 });
  });

  it('a pool deleted while claims name it stays (deletionTimestamp, finalizer) until they are gone', async () => {
    const path = `${API}/ippools/held-${RUN}`;
    await mustPost(`${API}/ippools`, pool('held', { subnet: '10.202.0.0/24' }));
    const claims = [claim('held', '10.202.0.5', 'web-0'), claim('held', '10.202.0.6', 'web-1')];
    for (const c of claims) await mustPost(`${API}/ipclaims`, c);
    await until('the finalizer', async () => {
      const r = await kubeRequest(cluster, 'GET', path);
      return r.body.metadata?.finalizers?.includes(POOL_FINALIZER) ? true : undefined;
    });
    const d = await kubeRequest(cluster, 'DELETE', path);
    assert.equal(d.status, 200, JSON.stringify(d.body));
    const marked = await kubeRequest(cluster, 'GET', path);
    assert.equal(marked.status, 200, 'the pool is still there');
    assert.ok(marked.body.metadata.deletionTimestamp, 'marked for deletion');
    assert.deepEqual(marked.body.metadata.finalizers, [POOL_FINALIZER]);
    const ev = await until('the PoolInUse event', async () => {
      const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/default/events`);
      return r.body.items?.find(
        (e: any) => e.reason === 'PoolInUse' && e.involvedObject.name === `held-${RUN}`,
      );
    });
    assert.equal(ev.type, 'Warning');
    assert.match(
      ev.message,
      /is being deleted but is held by 2 claims: 10\.202\.0\.5 \(Pod .*\/web-0\), 10\.202\.0\.6 \(Pod .*\/web-1\)/,
    );
    await kubeRequest(cluster, 'DELETE', `${API}/ipclaims/${claims[0]!.metadata.name}`);
    // One claim left: still held.
    await until('the second PoolInUse event', async () => {
      const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/default/events`);
      return r.body.items?.find((e: any) => e.reason === 'PoolInUse' && /held by 1 claim:/.test(e.message));
    });
    assert.equal((await kubeRequest(cluster, 'GET', path)).status, 200);
    await kubeRequest(cluster, 'DELETE', `${API}/ipclaims/${claims[1]!.metadata.name}`);
    await until('the pool to go', async () =>
      (await kubeRequest(cluster, 'GET', path)).status === 404 ? true : undefined,
    );
  });

  describe('admission webhook, called by the API server over TLS', () => {
    const labels = () => ({ [LABEL]: RUN });
    const base = () =>
      pool('hook-a', { subnet: '10.203.0.0/24', ips: ['10.203.0.10-10.203.0.20'] }, labels());

    before(async () => {
      // Both replicas' CAs end up in the bundle (each adds its own).
      await until('both CAs in the caBundle', async () => {
        const r = await kubeRequest(cluster, 'GET', `${VWC_PATH}/${VWC}`);
        const bundle = Buffer.from(r.body.webhooks?.[0]?.clientConfig?.caBundle ?? '', 'base64').toString();
        const blocks = pemBlocks(bundle);
        return controllers.every((c) => blocks.includes(pemBlocks(c.tls.ca)[0]!)) ? true : undefined;
      });
      await mustPost(`${API}/ippools`, base());
      // The API server picks up configuration changes asynchronously: wait (with dry runs, which
      // change nothing) until it calls the webhook.
      await until('the API server to call the webhook', async () => {
        const r = await kubeRequest(
          cluster,
          'POST',
          `${API}/ippools?dryRun=All`,
          pool('probe', { subnet: '10.203.0.0/24', ips: ['10.203.0.15'] }, labels()),
        );
        return r.status === 403 ? true : undefined;
      });
    });

    it('an overlapping IPPool in the same network is refused with our message', async () => {
      const r = await post(
        `${API}/ippools`,
        pool('hook-b', { subnet: '10.203.0.0/24', ips: ['10.203.0.18-10.203.0.30'] }, labels()),
      );
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.match(
        r.body.message,
        new RegExp(
          `admission webhook "validate\\.ipkeeper\\.io" denied the request: IPPool "hook-b-${RUN}": spec\\.ips overlaps IPPool "hook-a-${RUN}" in network "${NET}" at 10\\.203\\.0\\.18-10\\.203\\.0\\.20`,
        ),
      );
    });

    it('an IP outside the subnet is refused, naming the field', async () => {
      const r = await post(
        `${API}/ippools`,
        pool('hook-c', { subnet: '10.204.0.0/24', ips: ['10.204.0.10', '10.205.0.1'] }, labels()),
      );
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.match(
        r.body.message,
        /spec\.ips\[1\]: "10\.205\.0\.1" is outside the subnet; use addresses inside spec\.subnet or widen it/,
      );
    });

    it('a subnet change is refused', async () => {
      const r = await kubeRequest(cluster, 'PATCH', `${API}/ippools/hook-a-${RUN}`, {
        spec: { subnet: '10.203.0.0/16' },
      });
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.match(
        r.body.message,
        /spec\.subnet is immutable: "10\.203\.0\.0\/24" cannot become "10\.203\.0\.0\/16"/,
      );
    });

    it('removing an IP in use is refused, naming its holder', async () => {
      await mustPost(`${API}/ipclaims`, claim('hook-a', '10.203.0.20', 'db-0'));
      const r = await kubeRequest(cluster, 'PATCH', `${API}/ippools/hook-a-${RUN}`, {
        spec: { ips: ['10.203.0.10-10.203.0.19'] },
      });
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.match(
        r.body.message,
        new RegExp(`spec\\.ips removes 10\\.203\\.0\\.20, held by Pod ${NS}/db-0`),
      );
      // Removing free addresses is fine.
      const ok = await kubeRequest(cluster, 'PATCH', `${API}/ippools/hook-a-${RUN}`, {
        spec: { ips: ['10.203.0.12-10.203.0.20'] },
      });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
    });

    it('a good pool is accepted, and the webhook counted what it answered', async () => {
      await mustPost(
        `${API}/ippools`,
        pool('hook-d', { subnet: '10.206.0.0/24', gateway: '10.206.0.1' }, labels()),
      );
      const served = controllers.find((c) => c.webhook?.port === webhookPorts[0])!;
      const text = await served.metrics.registry.metrics();
      assert.match(
        text,
        /ipkeeper_webhook_admissions_total\{kind="IPPool",operation="CREATE",result="denied"\} [1-9]/,
      );
      assert.match(
        text,
        /ipkeeper_webhook_admissions_total\{kind="IPPool",operation="CREATE",result="allowed"\} [1-9]/,
      );
    });
  });

  it('stopping the leader hands the Lease to the other replica at once', async () => {
    const leader = leaders()[0]!;
    const standby = controllers.find((c) => c !== leader)!;
    const before = await lease();
    assert.equal(before.spec.holderIdentity, leader.identity);
    await leader.close();
    const after = await until('the standby to lead', async () => {
      const x = await lease();
      return x.spec.holderIdentity === standby.identity && standby.isLeader() ? x : undefined;
    });
    assert.equal(after.spec.leaseTransitions, (before.spec.leaseTransitions ?? 0) + 1);
    assert.notEqual(after.spec.acquireTime, before.spec.acquireTime);
    assert.equal(leader.isLeader(), false);
    // The new leader runs the reconcilers: a new pool gets its finalizer and status.
    await mustPost(`${API}/ippools`, pool('after', { subnet: '10.207.0.0/29' }));
    const p = await until('status on a pool made after the takeover', async () => {
      const r = await kubeRequest(cluster, 'GET', `${API}/ippools/after-${RUN}`);
      return r.body.status?.total === 6 && r.body.metadata.finalizers?.includes(POOL_FINALIZER)
        ? r.body
        : undefined;
    });
    assert.equal(p.status.free, 6);
  });

  it('the configuration the controller would create is one the API server accepts (dry run)', async () => {
    const o = webhookConfigObject(
      `${VWC}-dry`,
      { service: { namespace: NS, name: 'ipkeeper-webhook', port: 443 } },
      controllers[0]!.tls.ca,
    );
    const r = await kubeRequest(cluster, 'POST', `${VWC_PATH}?dryRun=All`, o);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(
      (await kubeRequest(cluster, 'GET', `${VWC_PATH}/${VWC}-dry`)).status,
      404,
      'a dry run creates nothing',
    );
  });

  it('`ipkeeper controller` runs as a process: leads, answers /readyz, and hands the Lease back on SIGTERM', async () => {
    const leaseName = `${LEASE}-cli`;
    const [port] = await freePorts(1);
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(new URL('../../bin/ipkeeper.ts', import.meta.url)),
        'controller',
        '--kubeconfig',
        ids.controller.kubeconfig,
        '--namespace',
        NS,
        '--id',
        `cli-${RUN}`,
        '--lease-name',
        leaseName,
        '--lease-duration',
        '15',
        '--listen',
        `127.0.0.1:${port}`,
        '--webhook-listen',
        '127.0.0.1:0',
        '--webhook-config',
        `${VWC}-absent`,
        '--log-level',
        'info',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName}`;
      await until('the process to lead', async () => {
        const r = await kubeRequest(cluster, 'GET', leasePath);
        return r.body?.spec?.holderIdentity === `cli-${RUN}` ? true : undefined;
      });
      // /readyz also waits for every reconciler of RECONCILERS (other loops, other CRDs): here only
      // that it answers and says who leads; the in-process replicas above check readiness itself.
      const ready = await until('/readyz', async () => {
        const x = await get(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return x && JSON.parse(x.text).leader === true ? x : undefined;
      });
      assert.ok([200, 503].includes(ready.status));
      assert.equal((await get(`http://127.0.0.1:${port}/healthz`)).status, 200);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
      const after = await kubeRequest(cluster, 'GET', leasePath);
      assert.equal(after.body.spec.holderIdentity, '', 'released on SIGTERM');
      // Logs are pino JSON lines on stderr.
      const lines = stderr
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { msg: string; component: string });
      assert.ok(
        lines.some((l) => l.msg === 'became leader' && l.component === 'controller'),
        stderr,
      );
      assert.ok(
        lines.some((l) => l.msg === 'released the lease'),
        stderr,
      );
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await kubeRequest(
        cluster,
        'DELETE',
        `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${leaseName}`,
      );
    }
  });
});
