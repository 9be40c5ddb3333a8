/**
 * The controller's `--listen` server against a real API server: the live pool map page (the agent's
 * page, src/agent/ui/, drawn from the controller's claims/pools cache), the GC and app-pool
 * counters on /metrics after a GC release, and `--no-webhook` (no webhook served, and not one
 * request about its configuration — the controller talks through a recording proxy).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { runController, type Controller } from '../../src/controller/main.ts';
import { GcReconciler } from '../../src/controller/gc.ts';
import { VipReconciler } from '../../src/controller/vip.ts';
import { AppPoolReconciler } from '../../src/controller/app-pools.ts';
import { openKubernetesStore } from '../../src/store/kubernetes.ts';
import type { Store } from '../../src/store/store.ts';
import { API_VERSION, type IPClaim, type IPPool } from '../../src/api/kinds.ts';
import { addrKey, parseAddr } from '../../src/net/addr.ts';
import type { PoolMapPage } from '../../src/agent/ui/map.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, until } from './crds.ts';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy.ts';

const RUN = randomBytes(3).toString('hex');
const NS = `ipk-page-${RUN}`;
const NETWORK = `ipk-page-${RUN}`;
const POOL = `page-pool-${RUN}`;
const CHROMIUM = '/usr/bin/chromium';

function get(url: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      })
      .on('error', reject);
  });
}

/** Opens the SSE stream and resolves with the event names seen once `until` is true of them. */
function sse(url: string): { events: string[]; close(): void; opened: Promise<void> } {
  const events: string[] = [];
  let req: http.ClientRequest;
  const opened = new Promise<void>((resolve, reject) => {
    req = http.get(url, (res) => {
      res.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/^event: (\w+)$/gm)) events.push(m[1]!);
        resolve();
      });
    });
    req.on('error', reject);
  });
  return { events, opened, close: () => req.destroy() };
}

describe('controller --listen: the pool map page, GC metrics, --no-webhook', () => {
  let cluster: TestCluster;
  let proxy: RecordingProxy;
  let store: Store;
  let ctl: Controller;
  let base: string;
  let nextIp = 10;

  const claim = async (pod: string, uid = `uid-${pod}`): Promise<string> => {
    const ip = `10.77.0.${nextIp++}`;
    const key = `ipclaims/${NETWORK}.${addrKey(parseAddr(ip))}`;
    const c: IPClaim = {
      apiVersion: API_VERSION,
      kind: 'IPClaim',
      metadata: { name: key.slice('ipclaims/'.length) },
      spec: {
        network: NETWORK,
        ip,
        family: 4,
        pool: POOL,
        owner: { kind: 'Pod', namespace: NS, name: pod, uid },
        cniNetwork: 'macvlan-ens192',
        containerId: `c-${pod}`,
        ifName: 'eth0',
        node: 'nowhere',
        createdAt: new Date().toISOString(),
      },
    };
    assert.ok((await store.create(key, c)).created, key);
    return key;
  };
  const poolOnMap = async (): Promise<PoolMapPage['pools'][number] | undefined> => {
    const r = await get(`${base}/v1/map`);
    assert.equal(r.status, 200, r.text);
    return (JSON.parse(r.text) as PoolMapPage).pools.find((p) => p.name === POOL);
  };

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    await kubeRequest(cluster, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
    // No controller-manager: the namespace's default service account is ours to make.
    await kubeRequest(cluster, 'POST', `/api/v1/namespaces/${NS}/serviceaccounts`, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'default' },
    });
    store = await openKubernetesStore(`kubernetes:${cluster.kubeconfigPath}`);
    const pool: IPPool = {
      apiVersion: API_VERSION,
      kind: 'IPPool',
      metadata: { name: POOL },
      spec: { subnet: '10.77.0.0/24', ips: ['10.77.0.10-10.77.0.19'], network: NETWORK },
    };
    assert.ok((await store.create(`ippools/${POOL}`, pool)).created);
    proxy = await startRecordingProxy(cluster);
    ctl = await runController({
      kubeconfig: proxy.kubeconfigPath,
      namespace: NS,
      id: `page-${RUN}`,
      leaseName: `ipk-page-${RUN}`,
      retryPeriodMs: 200,
      listen: '127.0.0.1:0',
      noWebhook: true,
      // GC scoped to this run's network, no grace (a leaked claim goes on the next scans); VIPs and
      // application pools (scoped to this run's namespace) to show the informers are shared.
      reconcilers: [
        () => new GcReconciler({ networks: [NETWORK], graceMs: 0, scanIntervalMs: 200 }),
        () => new VipReconciler(),
        () => new AppPoolReconciler({ namespaces: [NS] }),
      ],
      logLevel: 'silent',
      defaultMetrics: false,
    });
    base = `http://${ctl.httpAddress}`;
  });

  after(async () => {
    await ctl?.close();
    await proxy?.stop();
    if (store) {
      for (const e of await store.list<IPClaim>(`ipclaims/${NETWORK}.`)) await store.delete(e.key, e.version);
      const p = await store.get(`ippools/${POOL}`);
      if (p) await store.delete(`ippools/${POOL}`, p.version);
      await store.close();
    }
    if (cluster) await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
    await cluster?.stop();
  });

  it('--no-webhook: nothing serves admission, and the webhook configuration is never asked for', async () => {
    assert.equal(ctl.webhook, undefined);
    await until('the controller to lead', () => (ctl.isLeader() ? true : undefined));
    const asked = proxy.requests.filter((r) => r.includes('admissionregistration'));
    assert.deepEqual(asked, []);
    assert.ok(proxy.requests.length > 0, 'the proxy saw the controller at all');
    assert.equal((await get(`${base}/healthz`)).status, 200);
  });

  it('one pod informer and one workload cache for all the reconcilers of the term', async () => {
    await until('the reconcilers to sync', () => (ctl.isReady() && ctl.isLeader() ? true : undefined));
    const watches = (path: string) =>
      proxy.requests.filter((r) => r.startsWith(`GET ${path}?`) && r.includes('watch=true'));
    // GC and VIPs both follow every pod; app pools and GC both read workloads.
    assert.equal(watches('/api/v1/pods').length, 1, proxy.requests.join('\n'));
    for (const res of [
      '/apis/apps/v1/replicasets',
      '/apis/apps/v1/statefulsets',
      '/apis/apps/v1/deployments',
    ]) {
      assert.equal(watches(res).length, 1, `${res}: ${watches(res).join(', ')}`);
    }
  });

  it('--no-webhook with a webhook flag is refused, naming both', async () => {
    await assert.rejects(
      runController({
        noWebhook: true,
        webhookUrl: 'https://127.0.0.1:1/validate',
        kubeconfig: proxy.kubeconfigPath,
      }),
      /--no-webhook and --webhook-url contradict each other/,
    );
  });

  it('serves the pool map page and its data from the claims cache, with the right counts', async () => {
    const page = await get(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.ok(page.headers['content-security-policy'], 'the agent page CSP');
    assert.match(page.text, /<!doctype html>/i);

    // Two live pods (the GC leaves their claims alone) hold two of the pool's ten addresses.
    for (const name of ['web-0', 'web-1']) {
      const r = await kubeRequest(cluster, 'POST', `/api/v1/namespaces/${NS}/pods`, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name },
        spec: {
          automountServiceAccountToken: false,
          containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
        },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      await claim(name, r.body.metadata.uid);
    }
    const stream = sse(`${base}/v1/events`);
    try {
      await stream.opened;
      assert.deepEqual(stream.events.slice(0, 1), ['hello']);
      const p0 = await until('both claims on the map', async () => {
        const p = await poolOnMap();
        return p?.counts.used === '2' ? p : undefined;
      });
      assert.equal(p0.counts.total, '10');
      assert.equal(p0.counts.free, '8');
      assert.equal(p0.counts.claims, 2);
      assert.equal(p0.cells.filter((c) => c.state === 'used').length, 2);
      const map = JSON.parse((await get(`${base}/v1/map`)).text) as PoolMapPage;
      assert.match(map.node, /^controller page-/);
      assert.equal(map.store, 'kubernetes');
    } finally {
      stream.close();
    }
    // By address only, as on the agent (DNS rebinding).
    const byName = await new Promise<number>((resolve, reject) => {
      http
        .get(`${base}/v1/map`, { headers: { host: 'evil.example:80' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
    assert.equal(byName, 403);
  });

  it(
    'the page in Chromium shows the same counts (the test/ui/pool-map.test.ts harness)',
    {
      skip: existsSync(CHROMIUM)
        ? false
        : `${CHROMIUM} is not installed (test/ui/pool-map.test.ts installs it)`,
    },
    async () => {
      const profile = mkdtempSync(join(tmpdir(), 'ipk-ctl-ui-'));
      const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
        ],
      });
      try {
        const page = context.pages()[0] ?? (await context.newPage());
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        await page.goto(`${base}/`);
        await page.locator('#live.on').waitFor();
        const row = `#pools-body tr[data-pool="${POOL}"]`;
        await page.locator(row).waitFor();
        const count = (k: string) => page.locator(`${row} td[data-count="${k}"]`).textContent();
        assert.equal(await count('used'), '2');
        assert.equal(await count('free'), '8');
        assert.equal(await count('total'), '10');
        assert.equal(await page.locator(`[data-grid="${POOL}"] .c[data-state="used"]`).count(), 2);
        // The controller makes no CNI calls: its event list comes from the claims watch. A claim
        // made (for a live pod, so the GC leaves it) and deleted shows as allocate, then release.
        const r = await kubeRequest(cluster, 'POST', `/api/v1/namespaces/${NS}/pods`, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'web-2' },
          spec: {
            automountServiceAccountToken: false,
            containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
          },
        });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        const key = await claim('web-2', r.body.metadata.uid);
        const ip = (await store.get<IPClaim>(key))!.value.spec.ip;
        const allocated = page.locator('#events li[data-kind="allocate"]', { hasText: ip });
        await allocated.waitFor();
        assert.match(
          (await allocated.textContent()) ?? '',
          new RegExp(`to pod ${NS}/web-2 eth0 on node nowhere`),
        );
        const cur = (await store.get<IPClaim>(key))!;
        assert.ok((await store.delete(key, cur.version)).ok);
        await page.locator('#events li[data-kind="release"]', { hasText: ip }).waitFor();
        assert.deepEqual(errors, [], 'no script or CSP errors');
      } finally {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      }
    },
  );

  it('a leaked claim: the page is told, the GC releases it, and /metrics counts the release', async () => {
    const before = await get(`${base}/metrics`);
    assert.match(before.text, /^ipkeeper_app_pool_resizes_total 0$/m, 'registered, nothing resized');
    const stream = sse(`${base}/v1/events`);
    try {
      await stream.opened;
      const key = await claim('gone-0');
      // The GC may win the race with the map: either way the page was told of the change.
      await until('a change pushed to the page', () => (stream.events.includes('change') ? true : undefined));
      await until('the GC to release it', async () =>
        (await store.get(key)) === undefined ? true : undefined,
      );
      await until('the map to show it free again', async () =>
        (await poolOnMap())?.counts.used === '2' ? true : undefined,
      );
      const m = await until('the counter', async () => {
        const t = (await get(`${base}/metrics`)).text;
        return /^ipkeeper_gc_released_total\{reason="pod_gone"\} 1$/m.test(t) ? t : undefined;
      });
      assert.match(m, /^# HELP ipkeeper_gc_released_total /m);
      // The page's list: the claim's allocate, then the GC's release, not also a watch `release`.
      const ip = `10.77.0.${nextIp - 1}`;
      const mine = await until('the gc event on the page', async () => {
        const es = (JSON.parse((await get(`${base}/v1/map`)).text) as PoolMapPage).events.filter((e) =>
          e.ips?.includes(ip),
        );
        return es.some((e) => e.kind === 'gc') ? es : undefined;
      });
      assert.deepEqual(
        mine.map((e) => e.kind),
        ['gc', 'allocate'],
        JSON.stringify(mine),
      );
      assert.equal(mine[0]!.pod, `${NS}/gone-0`);
      assert.match(mine[0]!.message, new RegExp(`^GC released ${ip.replaceAll('.', '\\.')} \\(pool ${POOL}`));
    } finally {
      stream.close();
    }
  });
});
