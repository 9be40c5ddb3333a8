/**
 * @module bench/burst
 * A burst of pod starts: 1000 pods, each asking for an IPv4 and an IPv6 address (dual stack), spread
 * over 10 agent processes (simulated nodes, 100 pods each) sharing one store; the figure is the time
 * from the first ADD until every pod holds both addresses.
 *
 * Stores: a 3-member etcd cluster, one sqlite file shared by the 10 agents, and Kubernetes mode (the
 * store the chart deploys: IPClaim objects in the real kube-apiserver v1.20.2 of the Kubernetes-mode
 * tests, test/kube/cluster.ts). Anchor: the same 2000 claim writes issued straight to the store by 10
 * writers at once (etcd: 10 etcd3 clients running the store's create transaction; sqlite: 10
 * processes creating through `SqliteStore`; kubernetes: 10 `KubernetesStore`s creating IPClaims) —
 * what the store alone needs for the burst's writes.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Etcd3 } from 'etcd3';
import { call } from '../src/cli/client.ts';
import type { CniRequest, IpamResult } from '../src/cni/protocol.ts';
import type { PoolUsage } from '../src/ipam/engine.ts';
import { startEtcdCluster, type EtcdCluster } from '../test/etcd/cluster.ts';
import { kubeRequest, startTestCluster, type TestCluster } from '../test/kube/cluster.ts';
import { installCrds } from '../test/kube/crds.ts';
import { openStore } from '../src/store/open.ts';
import type { Store } from '../src/store/store.ts';
import { claimObject, poolObject } from './fixtures.ts';
import {
  NODE,
  ROOT,
  agentMetrics,
  cleanEnv,
  compared,
  cpuOf,
  median,
  nowMs,
  p99,
  sleep,
  startAgent,
  tempDir,
  type AgentProc,
  type Row,
  type SectionOptions,
} from './lib.ts';

const PODS = 1000;
const AGENTS = 10;
const GOAL_S = 5;

interface BurstRound {
  seconds: number;
  /** Kubernetes mode: the API server's requests during the burst, by `VERB resource[/sub] code`. */
  requests?: Map<string, number>;
  /** The agents' store watches opened again during the burst (their metrics), by reason. */
  watchRestarts?: { closed: number; broken: number };
  /** CPU ms used during the burst by the agents and by the store's processes (etcd members). */
  cpu?: { agents: number; store: number };
  podMs: number[];
  retries: number;
  firstError?: string;
}

async function waitPools(agents: AgentProc[], names: string[]): Promise<void> {
  const deadline = nowMs() + 60_000;
  for (const a of agents) {
    for (;;) {
      const usage = await call<PoolUsage[]>(a.socket, 'GET', '/v1/usage');
      if (names.every((n) => usage.some((u) => u.name === n))) break;
      if (nowMs() > deadline) throw new Error(`agent ${a.socket} never saw pools ${names.join(', ')}`);
      await sleep(20);
    }
  }
}

/** Fires every pod's ADD at once; a failed ADD is sent again (as the runtime would) until it succeeds. */
async function burst(
  agents: AgentProc[],
  round: number,
  v4: string,
  v6: string,
  uidOf: (pod: number) => string = (p) => `uid-${round}-${p}`,
): Promise<BurstRound> {
  let retries = 0;
  let firstError: string | undefined;
  const podMs: number[] = [];
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: PODS }, async (_, p) => {
      const req: CniRequest = {
        command: 'ADD',
        containerId: `burst-${round}-${p}`,
        ifName: 'eth0',
        network: 'burst',
        cniVersion: '1.1.0',
        args: {
          K8S_POD_NAMESPACE: 'burst',
          K8S_POD_NAME: `pod-${round}-${p}`,
          K8S_POD_UID: uidOf(p),
        },
        ipam: { type: 'ipkeeper', pools: { ipv4: [v4], ipv6: [v6] } },
      };
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await call<IpamResult>(agents[p % AGENTS]!.socket, 'POST', '/v1/cni/add', req);
          const fams = r.ips.map((i) => (i.address.includes(':') ? 6 : 4)).sort();
          if (fams.join() !== '4,6')
            throw new Error(`pod ${p} got ${r.ips.map((i) => i.address).join(', ')}`);
          podMs.push(nowMs() - t0);
          return;
        } catch (e) {
          retries++;
          firstError ??= e instanceof Error ? e.message : String(e);
          if (attempt > 50) throw e;
          await sleep(20);
        }
      }
    }),
  );
  return { seconds: (nowMs() - t0) / 1000, podMs, retries, ...(firstError ? { firstError } : {}) };
}

/**
 * The kube-apiserver's request counters (`apiserver_request_total` on /metrics), summed by
 * `VERB resource[/subresource] code` — what a burst asks of the control plane, per kind of request.
 */
async function apiRequests(kube: TestCluster): Promise<Map<string, number>> {
  const r = await kubeRequest(kube, 'GET', '/metrics');
  if (r.status !== 200) throw new Error(`GET /metrics: HTTP ${r.status}`);
  const out = new Map<string, number>();
  for (const line of String(r.body).split('\n')) {
    // The values of these labels never hold a quote.
    const label = (name: string): string => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    if (!line.startsWith('apiserver_request_total{')) continue;
    const resource = label('resource');
    if (!resource) continue; // /readyz, /metrics and other non-resource paths
    const sub = label('subresource');
    const key = `${label('verb')} ${resource}${sub ? `/${sub}` : ''} ${label('code')}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** Requests per pod, averaged over the bursts, as "n VERB resource code" (largest first; < 0.005 left out). */
function requestsText(perBurst: Map<string, number>[], pods: number): string {
  const sum = new Map<string, number>();
  for (const m of perBurst) for (const [k, n] of m) sum.set(k, (sum.get(k) ?? 0) + n);
  return [...sum]
    .map(([k, n]) => [k, n / perBurst.length / pods] as const)
    .filter(([, n]) => n >= 0.005)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${n.toFixed(2)} ${k}`)
    .join(', ');
}

/** `reason` -> the agents' `ipkeeper_store_watch_restarts_total`, summed; undefined for a store without it. */
async function watchRestarts(agents: AgentProc[]): Promise<{ closed: number; broken: number } | undefined> {
  const all = await Promise.all(agents.map((a) => agentMetrics(a.socket)));
  const sum = (reason: string): number | undefined => {
    const series = `ipkeeper_store_watch_restarts_total{reason="${reason}"}`;
    return all.every((m) => m.has(series)) ? all.reduce((n, m) => n + m.get(series)!, 0) : undefined;
  };
  const closed = sum('closed');
  const broken = sum('broken');
  return closed === undefined || broken === undefined ? undefined : { closed, broken };
}

/** `after - before`: the counters that grew, by how much. */
function diff(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, n] of after) if (n > (before.get(k) ?? 0)) out.set(k, n - (before.get(k) ?? 0));
  return out;
}

/** etcd anchor: 2000 create transactions from 10 clients, all in flight at once. */
async function etcdAnchor(clients: Etcd3[], prefix: string, round: number): Promise<number> {
  const value = Buffer.from(
    JSON.stringify(
      claimObject({ pool: 'a', family: 4, value: 0x0a000001n, tag: 'a', node: 'n', cniNetwork: 'a' }).claim,
    ),
  );
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: 2 * PODS }, async (_, i) => {
      const key = Buffer.from(`${prefix}/anchor-${round}/${i}`);
      const res = await clients[i % clients.length]!.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value } }],
        failure: [{ request_range: { key } }],
      });
      if (!res.succeeded) throw new Error(`anchor key ${key.toString()} existed`);
    }),
  );
  return (nowMs() - t0) / 1000;
}

/**
 * Kubernetes anchor: 2000 IPClaim creates from 10 `KubernetesStore`s (each its own keep-alive
 * connections to the API server), all in flight at once.
 */
async function storeAnchor(stores: Store[], round: number): Promise<number> {
  const t0 = nowMs();
  await Promise.all(
    Array.from({ length: 2 * PODS }, async (_, i) => {
      const c = claimObject({
        pool: 'anchor',
        family: 4,
        value: 0x0b000000n + BigInt(round * 2 * PODS + i),
        tag: `anchor-${round}-${i}`,
        node: 'anchor',
        cniNetwork: 'anchor',
      });
      const r = await stores[i % stores.length]!.create(c.key, c.claim);
      if (!r.created) throw new Error(`anchor key ${c.key} existed`);
    }),
  );
  return (nowMs() - t0) / 1000;
}

/**
 * Kubernetes mode: the round's 1000 Pod objects, each bound to the node of the agent its ADD goes
 * to, created before the burst as the scheduler and kubelet would have them; returns their uids.
 * Waits a second after the last so the agents' pod informers hold them (an ADD for a pod the
 * informer has not delivered yet GETs it, which is the slower path).
 */
async function createPods(kube: TestCluster, round: number): Promise<(pod: number) => string> {
  const uids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      for (let p = next++; p < PODS; p = next++) {
        const r = await kubeRequest(kube, 'POST', '/api/v1/namespaces/burst/pods', {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `pod-${round}-${p}`, namespace: 'burst' },
          spec: {
            nodeName: `node${p % AGENTS}`,
            automountServiceAccountToken: false,
            containers: [{ name: 'c', image: 'pause' }],
          },
        });
        if (r.status !== 201) {
          throw new Error(
            `creating pod-${round}-${p}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`,
          );
        }
        uids[p] = (r.body as { metadata: { uid: string } }).metadata.uid;
      }
    }),
  );
  await sleep(1000);
  return (p) => uids[p]!;
}

/** sqlite anchor: 10 processes, each creating 200 keys at once in the shared file. */
async function sqliteAnchor(db: string, round: number): Promise<number> {
  const workers = Array.from({ length: AGENTS }, (_, i) => {
    const child = spawn(
      NODE,
      [
        '--disable-warning=ExperimentalWarning',
        join(ROOT, 'bench/sqlite-writer.ts'),
        db,
        `anchor-${round}-${i}`,
        String((2 * PODS) / AGENTS),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'], env: cleanEnv() },
    );
    const lines = createInterface({ input: child.stdout! });
    const next = (): Promise<string> => new Promise((r) => lines.once('line', r));
    const ready = next();
    return { child, next, ready };
  });
  await Promise.all(workers.map((w) => w.ready));
  const t0 = nowMs();
  const done = workers.map((w) => w.next());
  for (const w of workers) w.child.stdin!.write('go\n');
  await Promise.all(done);
  const s = (nowMs() - t0) / 1000;
  await Promise.all(
    workers.map((w) => new Promise((r) => (w.child.exitCode !== null ? r(null) : w.child.once('exit', r)))),
  );
  return s;
}

async function onStore(
  label: string,
  storeUrl: string,
  dir: string,
  rounds: number,
  anchor: (round: number) => Promise<number>,
  storePids: () => (number | undefined)[],
  opts: SectionOptions,
  /** Runs before each burst, untimed; returns each pod's uid (Kubernetes mode: the pods' objects). */
  prepare?: (round: number) => Promise<(pod: number) => string>,
  /** Kubernetes mode: the API server's request counters, read before and after each burst. */
  counters?: () => Promise<Map<string, number>>,
): Promise<Row[]> {
  opts.log(`${label}: starting ${AGENTS} agents`);
  const start = (i: number): Promise<AgentProc> =>
    startAgent({
      store: storeUrl,
      socket: join(dir, `${label}-agent${i}.sock`),
      node: `node${i}`,
      pollMs: 20,
    });
  const ids = Array.from({ length: AGENTS }, (_, i) => i);
  // On sqlite the agents start one after the other: ten at once can wait past the file's busy timeout
  // on their first write (the node lease), and an agent exits when that write fails.
  const agents: AgentProc[] =
    label === 'sqlite'
      ? await ids.reduce<Promise<AgentProc[]>>(
          async (acc, i) => [...(await acc), await start(i)],
          Promise.resolve([]),
        )
      : await Promise.all(ids.map(start));
  const anchors: number[] = [];
  const bursts: BurstRound[] = [];
  try {
    for (let r = -1; r < rounds; r++) {
      // Fresh pools each round, so every round starts from the same fill.
      const v4 = `burst-${label}-r${r + 1}-v4`;
      const v6 = `burst-${label}-r${r + 1}-v6`;
      await call(agents[0]!.socket, 'POST', '/v1/apply', {
        objects: [poolObject(v4, `10.${128 + r + 1}.0.0/16`), poolObject(v6, `fd00:${128 + r + 1}::/64`)],
      });
      await waitPools(agents, [v4, v6]);
      const order = r % 2 === 0 ? ['anchor', 'burst'] : ['burst', 'anchor'];
      for (const which of order) {
        if (which === 'anchor') {
          const a = await anchor(r + 1);
          if (r >= 0) anchors.push(a);
        } else {
          opts.log(`${label}: ${r < 0 ? 'warm-up' : `round ${r + 1}/${rounds}`}: ${PODS} pods`);
          const uidOf = prepare ? await prepare(r + 1) : undefined;
          const pids = agents.map((a) => a.pid);
          const n0 = await counters?.();
          const w0 = await watchRestarts(agents);
          const c0 = { agents: cpuOf(pids), store: cpuOf(storePids()) };
          const b = await burst(agents, r + 1, v4, v6, uidOf);
          b.cpu = { agents: cpuOf(pids) - c0.agents, store: cpuOf(storePids()) - c0.store };
          if (counters && n0) b.requests = diff(await counters(), n0);
          const w1 = await watchRestarts(agents);
          if (w0 && w1) b.watchRestarts = { closed: w1.closed - w0.closed, broken: w1.broken - w0.broken };
          if (r >= 0) bursts.push(b);
        }
      }
    }
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
  }
  const anchorS = median(anchors);
  const burstS = median(bursts.map((b) => b.seconds));
  const podMs = bursts.flatMap((b) => b.podMs);
  const retries = bursts.reduce((a, b) => a + b.retries, 0);
  const firstError = bursts.find((b) => b.firstError)?.firstError;
  const cpuAgents = median(bursts.map((b) => b.cpu?.agents ?? NaN)) / 1000;
  const cpuStore = median(bursts.map((b) => b.cpu?.store ?? NaN)) / 1000;
  const storeCpu =
    label === 'etcd'
      ? `, etcd ${cpuStore.toFixed(1)} s`
      : label === 'kubernetes'
        ? `, etcd + API server ${cpuStore.toFixed(1)} s`
        : '';
  const cpuText = `CPU per burst: agents ${cpuAgents.toFixed(1)} s${storeCpu} (${availableParallelism()} CPUs)`;
  const perBurst = bursts.flatMap((b) => (b.requests ? [b.requests] : []));
  // Counted after the last pod holds its addresses, so it includes requests still in flight then.
  const requests = perBurst.length ? `; API requests per pod: ${requestsText(perBurst, PODS)}` : '';
  const restarts = bursts.flatMap((b) => (b.watchRestarts ? [b.watchRestarts] : []));
  const restartsText = restarts.length
    ? `; the agents' store watches opened again per burst (their ipkeeper_store_watch_restarts_total): ${restarts.map((w) => `${w.closed} closed + ${w.broken} broken`).join(', ')}`
    : '';
  return [
    {
      figure: `store alone: ${2 * PODS} claim creates from ${AGENTS} writers (${label})`,
      unit: 's',
      better: 'lower',
      median: anchorS,
      samples: anchors.length,
      detail: `rounds ${anchors.map((x) => x.toFixed(2)).join(', ')} s`,
    },
    {
      ...compared(
        {
          figure: `${PODS} dual-stack pods via ${AGENTS} agents (${label})`,
          unit: 's',
          better: 'lower',
          median: burstS,
          samples: bursts.length,
          anchor: `store alone (${label})`,
          goal: `≤ ${GOAL_S} s`,
          detail: `rounds ${bursts.map((b) => b.seconds.toFixed(2)).join(', ')} s; per pod p50 ${(median(podMs) / 1000).toFixed(2)} s, p99 ${(p99(podMs) / 1000).toFixed(2)} s; ${retries} ADDs retried${firstError ? ` (first: ${firstError.slice(0, 120)})` : ''}; ${cpuText}${requests}${restartsText}`,
        },
        anchorS,
      ),
      met: burstS <= GOAL_S,
    },
  ];
}

/** The burst row of a store whose round failed: shown as not measured, with why. */
function failed(label: string, e: unknown): Row {
  return {
    figure: `${PODS} dual-stack pods via ${AGENTS} agents (${label})`,
    unit: 's',
    better: 'lower',
    median: undefined,
    goal: `≤ ${GOAL_S} s`,
    skipped: `failed: ${(e instanceof Error ? e.message : String(e)).slice(0, 200)}`,
  };
}

export async function run(opts: SectionOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const rounds = opts.quick ? 1 : 3;
  // BENCH_BURST_STORES=etcd,sqlite,kubernetes: run only these stores' bursts (to look at one).
  const only = new Set((process.env.BENCH_BURST_STORES ?? 'etcd,sqlite,kubernetes').split(','));
  const tmp = tempDir('burst');
  const rows: Row[] = [];
  try {
    if (only.has('etcd')) {
      let cluster: EtcdCluster | undefined;
      const clients: Etcd3[] = [];
      try {
        opts.log('starting a 3-member etcd cluster');
        cluster = await startEtcdCluster(3);
        const c = cluster;
        const prefix = `/burst-${process.pid}`;
        for (let i = 0; i < AGENTS; i++) clients.push(new Etcd3({ hosts: cluster.endpoints }));
        rows.push(
          ...(await onStore(
            'etcd',
            `${cluster.url}${prefix}`,
            tmp.path,
            rounds,
            (r) => etcdAnchor(clients, `/raw${prefix}`, r),
            () => c.members.map((m) => m.pid),
            opts,
          )),
        );
      } finally {
        for (const c of clients) c.close();
        await cluster?.stopAll();
      }
    }
    if (only.has('sqlite')) {
      try {
        const db = join(tmp.path, 'shared.db');
        rows.push(
          ...(await onStore(
            'sqlite',
            `sqlite:${db}`,
            tmp.path,
            rounds,
            (r) => sqliteAnchor(db, r),
            () => [],
            opts,
          )),
        );
      } catch (e) {
        rows.push(failed('sqlite', e));
      }
    }
    if (only.has('kubernetes')) {
      let kube: TestCluster | undefined;
      const stores: Store[] = [];
      try {
        opts.log('starting kube-apiserver v1.20.2 (etcd and the API server, as the Kubernetes-mode tests)');
        kube = await startTestCluster();
        await installCrds(kube);
        // The pods' namespace: each pod's Endpoint is an object in it, as in a cluster.
        const ns = await kubeRequest(kube, 'POST', '/api/v1/namespaces', {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: 'burst' },
        });
        if (ns.status !== 201 && ns.status !== 409)
          throw new Error(`creating namespace burst: HTTP ${ns.status}`);
        // Its default ServiceAccount, which pods need (no controller-manager runs here to make it).
        const sa = await kubeRequest(kube, 'POST', '/api/v1/namespaces/burst/serviceaccounts', {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name: 'default', namespace: 'burst' },
        });
        if (sa.status !== 201 && sa.status !== 409)
          throw new Error(`creating serviceaccount default: HTTP ${sa.status}`);
        const url = `kubernetes:${kube.kubeconfigPath}`;
        for (let i = 0; i < AGENTS; i++) stores.push(await openStore(url));
        const plane = kube;
        rows.push(
          ...(await onStore(
            'kubernetes',
            url,
            tmp.path,
            rounds,
            (r) => storeAnchor(stores, r),
            () => [...plane.pids],
            opts,
            (r) => createPods(plane, r),
            () => apiRequests(plane),
          )),
        );
      } catch (e) {
        rows.push(failed('kubernetes', e));
      } finally {
        await Promise.allSettled(stores.map((s) => s.close()));
        await kube?.stop();
      }
    }
  } finally {
    tmp.cleanup();
  }
  const notes = [
    `${PODS} pods, pod i sending its ADD to agent i mod ${AGENTS} (${PODS / AGENTS} per agent), all at once, each asking for one IPv4 (a /16 pool) and one IPv6 (a /64 pool) address; the time runs from the first ADD until the last pod holds both. Requests go over the agents' unix sockets with the plugin's JSON — no plugin processes (their start cost is in the plugin section). A failed ADD is sent again after 20 ms and counted as retried.`,
    `Each round uses fresh pools; ${rounds} round(s) per store after a warm-up round, burst and anchor alternating. The figure is the median round.`,
    'kubernetes: the agents run `--store kubernetes:KUBECONFIG` against one kube-apiserver v1.20.2 with its own etcd member (test/kube/cluster.ts), the CRDs installed; each claim is an IPClaim object, created with the API server’s own name check as the compare-and-swap. Before each burst (untimed) the round’s 1000 Pod objects are created, bound to their agents’ nodes, so the agents’ pod informers hold them, as in a cluster where the kubelet starts a pod the scheduler bound. The control plane shares the 2 CPUs with the 10 agents. The API requests per pod are the API server’s own counters (`apiserver_request_total`) read before and after each burst: `WATCH ipclaims 0` counts agents’ IPClaim watches that ended during the burst — the v1.20 API server closes a custom resource’s watcher whose buffer of 10 events stays full (“Forcing watcher close due to unresponsiveness” in its log at --v=1), which happens to every watcher when the 2 CPUs are saturated, and the agent resumes from the last revision it saw. The agents count these themselves (`ipkeeper_store_watch_restarts_total` on their /metrics, read before and after each burst, etcd too): `closed` when the server ended a working stream, `broken` when one ended with nothing delivered or failed.',
    'sqlite: one database file shared by all 10 agents (WAL, synchronous=FULL); an agent sees the others’ claims by polling the change log (every 200 ms), so agents may propose addresses already taken and retry. The sqlite agents are started one after another: started all at once on a loaded machine, one of them waited past the busy timeout for its first write (its node lease) and exited.',
  ];
  return { rows, notes };
}
