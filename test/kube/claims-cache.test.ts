/**
 * The agent's claims cache (`--claims-cache`, src/ipam/claims-cache.ts) against a real
 * kube-apiserver: a clean stop writes the claims and their revision; the next start reads them and
 * only watches what changed since — no LIST of the claims (a recording proxy shows every request) —
 * and catches up with what happened while it was down; a file it must not trust (another cluster,
 * a revision the server does not have, a damaged file) is dropped for a full LIST.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { call } from '../../src/cli/client.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import { CLAIMS_CACHE_FORMAT, readClaimsCache, writeClaimsCache } from '../../src/ipam/claims-cache.ts';
import { LazyClaim, type HeldClaim } from '../../src/ipam/state.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, until } from './crds.ts';
import { SCAN_SHARDS, shardSelectors } from '../../src/store/kubernetes.ts';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy.ts';

const NODE = 'ipk-cache-node';
const NS = 'ipk-cache';
const API = '/apis/ipkeeper.io/v1alpha1';
const NETWORK = 'macvlan-cache';

describe('claims cache: an agent restarts from its file and the changes since', () => {
  let cluster: TestCluster;
  let proxy: RecordingProxy;
  let agent: Agent | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-claims-cache-'));
  const socket = join(dir, 'agent.sock');
  const file = join(dir, 'claims.json');

  const create = async (path: string, body: unknown): Promise<void> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.ok([201, 409].includes(r.status), `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  };
  const pod = (name: string) =>
    create(`/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: NS,
        annotations: { 'ipam.spidernet.io/ippool': '{"ipv4":["cache-pool"]}' },
      },
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
      network: NETWORK,
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: name, K8S_POD_UID: `uid-${name}` },
      ipam: { type: 'ipkeeper' },
    } satisfies CniRequest);
  const start = async (): Promise<Agent> =>
    (agent = await startAgent({
      store: `kubernetes:${proxy.kubeconfigPath}`,
      socket,
      node: NODE,
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
      claimsCache: file,
    }));
  const stop = async (): Promise<void> => {
    await agent?.close();
    agent = undefined;
  };
  /** Every IPClaim in the API server: name → ip. */
  const apiClaims = async (): Promise<Map<string, string>> => {
    const r = await kubeRequest(cluster, 'GET', `${API}/ipclaims`);
    assert.equal(r.status, 200);
    return new Map((r.body.items as any[]).map((o) => [o.metadata.name as string, o.spec.ip as string]));
  };
  /** The agent's cache: claim name → ip. */
  const agentClaims = (a: Agent): Map<string, string> =>
    new Map([...a.ipam.state.claims.values()].map((h) => [h.key.split('/')[1]!, h.claim.spec.ip]));
  /** Waits until the agent's cache holds exactly the API server's claims. */
  const caughtUp = async (a: Agent): Promise<void> => {
    await until('the agent to hold the API server claims', async () => {
      if (!a.ipam.ready) return undefined;
      const want = await apiClaims();
      const got = agentClaims(a);
      return want.size === got.size && [...want].every(([k, v]) => got.get(k) === v) ? true : undefined;
    });
  };
  /** Full LISTs of the claims the proxy passed on (not watches, probes or one-object reads). */
  const claimLists = (): string[] =>
    proxy.requests.filter(
      (r) =>
        /^GET \/apis\/ipkeeper\.io\/v1alpha1\/ipclaims(\?|$)/.test(r) &&
        !/[?&](watch=|fieldSelector=|limit=1(&|$))/.test(r),
    );
  const header = (): Record<string, any> => JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!);
  /** Rewrites the file with the module's writer: `edit` may change the header and the claims. */
  const rewrite = async (
    edit: (h: { store: string; revision: string }, claims: HeldClaim[]) => void,
  ): Promise<void> => {
    const h = header();
    const read = readClaimsCache(file, h.store);
    assert.ok(read.ok, !read.ok ? read.reason : '');
    const claims: HeldClaim[] = read.claims.map((e) => ({
      key: e.key,
      version: e.version,
      claim: structuredClone(e.claim),
      value: 0n,
    }));
    const head = { store: h.store as string, revision: h.revision as string };
    edit(head, claims);
    await writeClaimsCache(file, head.store, head.revision, claims);
  };
  /** An IPClaim object for `ip` of another node (as another agent would have made it). */
  const foreignClaim = async (ip: string): Promise<string> => {
    const r = await kubeRequest(cluster, 'GET', `${API}/ipclaims`);
    const model = structuredClone((r.body.items as any[])[0]);
    // Claims are named <network>.<address> (one per address: the store decides who holds it).
    const name = `${model.spec.network}.${ip}`;
    assert.notEqual(name, model.metadata.name);
    const spec = { ...model.spec, ip, node: 'ipk-other-node', containerId: `other-${ip}` };
    spec.owner = { ...spec.owner, name: `other-${ip}`, uid: `uid-other-${ip}` };
    await create(`${API}/ipclaims`, {
      apiVersion: model.apiVersion,
      kind: 'IPClaim',
      metadata: { name, labels: model.metadata.labels },
      spec,
    });
    return name;
  };
  let uid = '';
  const byIp = new Map<string, string>(); // container → ip

  before(async () => {
    cluster = await startTestCluster();
    proxy = await startRecordingProxy(cluster);
    await installCrds(cluster);
    await create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await create(`/api/v1/namespaces/${NS}/serviceaccounts`, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'default', namespace: NS },
    });
    await create(`${API}/ippools`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'cache-pool' },
      spec: { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.40'] },
    });
    for (const p of ['p1', 'p2', 'p3', 'p4']) await pod(p);
    const ks = await kubeRequest(cluster, 'GET', '/api/v1/namespaces/kube-system');
    assert.equal(ks.status, 200, 'the API server makes kube-system itself');
    uid = ks.body.metadata.uid;
  });

  after(async () => {
    await stop();
    await proxy?.stop();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a clean stop writes every claim, the revision and the cluster it came from', async () => {
    await start();
    for (const [p, c] of [
      ['p1', 'c1'],
      ['p2', 'c2'],
      ['p3', 'c3'],
    ] as const) {
      byIp.set(c, (await add(p, c)).ips[0]!.address.split('/')[0]!);
    }
    await stop();
    const h = header();
    assert.equal(h.format, CLAIMS_CACHE_FORMAT);
    assert.equal(h.store, `kubernetes:${uid}`);
    assert.match(h.revision, /^[1-9]\d*$/);
    const read = readClaimsCache(file, h.store);
    assert.ok(read.ok);
    assert.equal(read.revision, h.revision);
    assert.equal(h.count, 3);
    const api = await apiClaims();
    assert.deepEqual(new Map(read.claims.map((e) => [e.key.split('/')[1], e.ip])), api);
    assert.deepEqual(new Map(read.claims.map((e) => [e.claim.metadata.name, e.claim.spec.ip])), api);
    for (const e of read.claims)
      assert.ok(BigInt(e.version) > 0n && BigInt(e.version) <= BigInt(h.revision) + 10n);
  });

  it('the next start lists no claims: it reads the file and watches what changed while it was down', async () => {
    // While the agent is down: p2's claim is released by hand, another node takes 10.9.0.30.
    const api = await apiClaims();
    const p2 = [...api].find(([, ip]) => ip === byIp.get('c2'))![0];
    const d = await kubeRequest(cluster, 'DELETE', `${API}/ipclaims/${p2}`);
    assert.equal(d.status, 200);
    const other = await foreignClaim('10.9.0.30');
    // The watch's answer is held until the repeated ADD below is answered: the agent cannot have
    // learnt of the delete from it, so only reading the claim back keeps it from handing out an
    // address p2 no longer holds.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    proxy.hold = (r) => (r.includes('/ipclaims?') && r.includes('watch=') ? held : undefined);
    proxy.requests.length = 0;
    try {
      const a = await start();
      assert.equal(a.ipam.ready, true);
      assert.ok(agentClaims(a).has(p2), 'the released claim is in the file: the test shows the read-back');
      const again = await add('p2', 'c2');
      const ip = again.ips[0]!.address.split('/')[0]!;
      const owner = await until('the claim of the repeated ADD', async () => {
        const r = await kubeRequest(cluster, 'GET', `${API}/ipclaims`);
        return (r.body.items as any[]).find((o) => o.spec.ip === ip);
      });
      assert.equal(owner.spec.containerId, 'c2', `${ip} is held by ${JSON.stringify(owner.spec)}`);
      byIp.set('c2', ip);
    } finally {
      release();
      proxy.hold = undefined;
    }
    const a = agent!;
    await caughtUp(a);
    assert.equal(agentClaims(a).get(other), '10.9.0.30');
    assert.deepEqual(claimLists(), [], 'no LIST of the claims');
    assert.ok(
      proxy.requests.some(
        (r) => r.includes('/ipclaims?') && r.includes('watch=') && r.includes(`resourceVersion=`),
      ),
    );
    // Allocation goes on from there: a new pod gets an address nobody holds.
    const p4 = (await add('p4', 'c4')).ips[0]!.address.split('/')[0]!;
    assert.ok(![...api.values(), '10.9.0.30', byIp.get('c2')].includes(p4), p4);
    await caughtUp(a);
  });

  it('a repeated ADD of a claim the file holds and the store confirms gets the same address', async () => {
    await stop();
    proxy.requests.length = 0;
    const a = await start();
    const r = await add('p1', 'c1');
    assert.equal(r.ips[0]!.address.split('/')[0], byIp.get('c1'));
    // One GET of that claim, then no more for it.
    const gets = () =>
      proxy.requests.filter((q) => /^GET \/apis\/ipkeeper\.io\/v1alpha1\/ipclaims\/[^?]+$/.test(q));
    assert.equal(gets().length, 1, proxy.requests.join('\n'));
    await add('p1', 'c1');
    assert.equal(gets().length, 1);
    await caughtUp(a);
    assert.deepEqual(claimLists(), []);
    // The claims came as JSON text; once ready, the agent parses them all a slice at a time.
    await until('every claim from the file parsed', async () =>
      [...a.ipam.state.claims.values()].every((h) => !(h instanceof LazyClaim) || h.text === undefined)
        ? true
        : undefined,
    );
  });

  for (const [what, edit] of [
    [
      "another cluster's file",
      (h: Record<string, any>) => {
        h.store = 'kubernetes:00000000-0000-0000-0000-000000000000';
      },
    ],
    [
      'a revision past the server’s (a restored backup)',
      (h: Record<string, any>) => {
        h.revision = '999999999999';
      },
    ],
    [
      'a revision the server no longer has (410 Gone)',
      (h: Record<string, any>) => {
        h.revision = '2';
      },
    ],
  ] as const) {
    it(`${what}: every claim is listed, and the file's are not kept`, async () => {
      await stop();
      // A claim only the file has: gone once the agent has listed.
      await rewrite((h, claims) => {
        edit(h);
        const c = structuredClone(claims[0]!);
        c.key = `ipclaims/${c.claim.spec.network}.10.9.0.39`;
        c.version = '2';
        c.claim.spec.ip = '10.9.0.39';
        c.claim.metadata.name = c.key.split('/')[1]!;
        claims.push(c);
      });
      proxy.requests.length = 0;
      const a = await start();
      await caughtUp(a);
      assert.equal([...agentClaims(a).values()].includes('10.9.0.39'), false);
      assert.ok(claimLists().length >= 1, proxy.requests.join('\n'));
    });
  }

  it('a damaged file is not used: every claim is listed', async () => {
    await stop();
    writeFileSync(file, readFileSync(file, 'utf8').slice(0, 200));
    proxy.requests.length = 0;
    const a = await start();
    assert.equal(a.ipam.ready, true);
    assert.equal(agentClaims(a).size, (await apiClaims()).size);
    // Listed once: one LIST per group of shards (src/store/kubernetes.ts, `scan`), each different.
    const lists = claimLists();
    assert.equal(lists.length, shardSelectors(SCAN_SHARDS).length, proxy.requests.join('\n'));
    assert.equal(new Set(lists).size, lists.length, lists.join('\n'));
    // And its clean stop writes a sound one again.
    await stop();
    assert.equal(header().count, (await apiClaims()).size);
  });
});
