/**
 * @module bench/kube
 * Agent restart in Kubernetes mode, the store the chart deploys (`--store kubernetes:`): claims are
 * IPClaim objects in a real kube-apiserver v1.20.2 (test/kube/cluster.ts: one etcd member, the API
 * server, the CRDs installed), so the agent's start reads every claim through the API server.
 *
 *   agent ready      `ipkeeper agent --store kubernetes:KUBECONFIG` (the bundle) from start until
 *                    `/readyz` answers, with only the pool, then with N claims
 *   LIST, cached     the anchor: the API server answering one LIST of the N IPClaims from its watch
 *                    cache (resourceVersion=0, one answer), as the agent's start read them before it
 *                    read them in shards (`KubernetesStore.scan`: 4 LISTs by label selector at
 *                    once, and one for claims without the label), timed here with a keep-alive
 *                    HTTPS client that only parses it
 *   LIST, paged      the same LIST as consistent reads from etcd (`limit` 500 and `continue`, as the
 *                    store's `list` reads and the agent's start read before), for reference
 *   LIST, metadata   the cached LIST asking for metadata only (`PartialObjectMetadataList`): the
 *                    least the API server can send per claim (no spec, which the agent needs), to
 *                    tell how much of the LIST's time a lighter answer would save
 *   creates          writing the N claims: `KubernetesStore.create` from 32 concurrent callers
 *
 * The control plane (etcd and the API server) shares the machine's CPUs with the agent; its CPU
 * during each figure is in the detail.
 */
import https from 'node:https';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startTestCluster, type TestCluster } from '../test/kube/cluster.ts';
import { installCrds } from '../test/kube/crds.ts';
import { GROUP, VERSION } from '../src/api/kinds.ts';
import { openKubernetesStore, LIST_PAGE_SIZE, SCAN_SHARDS, SHARD_LABEL } from '../src/store/kubernetes.ts';
import type { Store } from '../src/store/store.ts';
import { AGENT_BUNDLE, buildAgent } from '../scripts/build.ts';
import { poolKey, poolObject, writeClaims } from './fixtures.ts';
import {
  compared,
  cpuOf,
  median,
  nowMs,
  p99,
  startAgent,
  tempDir,
  type Row,
  type SectionOptions,
} from './lib.ts';
import { GOAL_MS, NODE_NAME, POOL, SUBNET, claims as restartClaims } from './restart.ts';

const WRITERS = 32;

interface Timed {
  ms: number[];
  /** CPU ms of etcd and the API server during each sample. */
  planeCpu: number[];
  /** CPU ms of the agent until ready (agent samples only). */
  agentCpu: number[];
  /** The agent's peak RSS at ready, MB. */
  peakRss: number[];
}

const timed = (): Timed => ({ ms: [], planeCpu: [], agentCpu: [], peakRss: [] });

type ListMode = 'paged' | 'cached' | 'metadata';

/** The Accept header of a metadata-only answer (what client-go's metadata informers ask for). */
const METADATA_ONLY = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

/**
 * LISTs every IPClaim: paged as the store pages (`limit`), or from the watch cache
 * (resourceVersion=0, no limit), whole or as metadata only. Returns how many objects came back.
 */
async function rawList(c: TestCluster, agent: https.Agent, mode: ListMode): Promise<number> {
  const base = `/apis/${GROUP}/${VERSION}/ipclaims`;
  let count = 0;
  let cont: string | undefined;
  do {
    const q =
      mode !== 'paged'
        ? '?resourceVersion=0'
        : `?limit=${LIST_PAGE_SIZE}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`;
    const body = await get(c, agent, base + q, mode === 'metadata' ? METADATA_ONLY : 'application/json');
    const list = JSON.parse(body) as { items?: unknown[]; metadata?: { continue?: string } };
    count += list.items?.length ?? 0;
    cont = mode === 'paged' ? list.metadata?.continue || undefined : undefined;
  } while (cont !== undefined);
  return count;
}

function get(c: TestCluster, agent: https.Agent, path: string, accept: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, c.server),
      {
        agent,
        headers: { Accept: accept, Authorization: `Bearer ${c.token}` },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200)
            reject(new Error(`GET ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(text);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export async function run(opts: SectionOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const n = opts.quick ? 10_000 : 100_000;
  const runs = opts.quick ? 2 : 3;
  const tmp = tempDir('kube');
  let cluster: TestCluster | undefined;
  let store: Store | undefined;
  let agentHttps: https.Agent | undefined;
  const empty = timed();
  const full = timed();
  /** The agent's start reading the claims in one LIST, as before the shards (`scanShards` 1). */
  const single = timed();
  const paged = timed();
  const cached = timed();
  const metadata = timed();
  const fromCache = timed();
  const cacheWriteMs: number[] = [];
  const cacheReadMs: number[] = [];
  /** From ready until the claims' JSON is parsed (in slices, between requests). */
  const cacheParseMs: number[] = [];
  let cacheBytes = 0;
  let createRate: number | undefined;
  let createPlaneCpu: number | undefined;
  try {
    opts.log(`building the agent bundle ${AGENT_BUNDLE}`);
    await buildAgent({ log: opts.log });
    opts.log('starting etcd and kube-apiserver (built once by scripts/kube/build.sh)');
    cluster = await startTestCluster();
    const c = cluster;
    const client = new https.Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(c.caFile) });
    agentHttps = client;
    await installCrds(c);
    const planeCpu = (): number => cpuOf([...c.pids]);
    const url = `kubernetes:${c.kubeconfigPath}`;
    store = await openKubernetesStore(url);
    await store.create(poolKey(POOL), poolObject(POOL, SUBNET));

    const agentStart = async (
      into: Timed,
      record: boolean,
      extra: string[] = [],
      lingerMs = 0,
      env: NodeJS.ProcessEnv = {},
    ): Promise<string> => {
      const p0 = planeCpu();
      const a = await startAgent({
        store: url,
        cli: AGENT_BUNDLE,
        socket: join(tmp.path, 'agent.sock'),
        node: NODE_NAME,
        pollMs: 5,
        timeoutMs: 600_000,
        extra,
        env,
      });
      const p = planeCpu() - p0;
      if (lingerMs > 0) await new Promise((r) => setTimeout(r, lingerMs));
      await a.stop();
      if (record) {
        into.ms.push(a.readyMs);
        into.agentCpu.push(a.readyCpuMs);
        into.peakRss.push(a.readyPeakRssMb);
        into.planeCpu.push(p);
      }
      return a.log();
    };
    // With its claims cache (the chart's --claims-cache): info logs say whether the file was read
    // and how long the stop took to write it.
    const cacheFile = join(tmp.path, 'claims-cache.json');
    const cacheStart = async (record: boolean): Promise<void> => {
      // Running 2 s before its stop: the claims' JSON is parsed after ready (logged).
      const log = await agentStart(
        fromCache,
        record,
        ['--claims-cache', cacheFile, '--log-level', 'info'],
        2000,
      );
      const lines = log.split('\n').filter((l) => l.includes('claims cache') || l.includes('claims read'));
      const msOf = (line: string): number => Number(/"ms":(\d+)/.exec(line)?.[1]);
      const read = lines.find((l) => l.includes('claims read from the claims cache'));
      const wrote = lines.find((l) => l.includes('claims cache written'));
      // The first stop (after a start that listed) writes the file; later ones find it current
      // (nothing changed while they ran) and write nothing.
      if (wrote) cacheWriteMs.push(msOf(wrote));
      if (!record) {
        if (!wrote?.includes(`"claims":${n},`)) {
          throw new Error(
            `the agent did not write its ${n} claims to its claims cache:\n${lines.join('\n')}`,
          );
        }
        return;
      }
      if (!read || !read.includes(`"claims":${n},`)) {
        throw new Error(`the agent did not start from its claims cache:\n${lines.join('\n')}`);
      }
      cacheReadMs.push(msOf(read));
      const parsed = lines.find((l) => l.includes('claims from the claims cache parsed'));
      if (parsed) cacheParseMs.push(msOf(parsed));
      cacheBytes = statSync(cacheFile).size;
    };
    const listOnce = async (mode: ListMode, into: Timed): Promise<void> => {
      const p0 = planeCpu();
      const t0 = nowMs();
      const got = await rawList(c, client, mode);
      into.ms.push(nowMs() - t0);
      into.planeCpu.push(planeCpu() - p0);
      if (got !== n) throw new Error(`LIST (${mode}) returned ${got} IPClaims, expected ${n}`);
    };

    // Empty first (one warm-up start: the compile cache, the API server's caches), then the claims.
    for (let i = -1; i < runs; i++) {
      await agentStart(empty, i >= 0);
      if (i >= 0) opts.log(`empty: run ${i + 1}/${runs}: ${empty.ms.at(-1)!.toFixed(0)} ms`);
    }

    opts.log(`writing ${n.toLocaleString('en-US')} IPClaims through the API server (${WRITERS} writers)`);
    const claims = restartClaims(n);
    const p0 = planeCpu();
    const t0 = nowMs();
    await writeClaims(store, claims, WRITERS, (done) =>
      opts.log(`  ${done.toLocaleString('en-US')} written`),
    );
    createRate = n / ((nowMs() - t0) / 1000);
    createPlaneCpu = (planeCpu() - p0) / n;

    // Alternating: the agent's start, its start from its claims cache, the paged LIST, the cached
    // LIST (one warm-up round first: its start from the cache lists, having no file yet).
    for (let i = -1; i < runs; i++) {
      await agentStart(full, i >= 0);
      await agentStart(single, i >= 0, [], 0, { IPKEEPER_KUBE_SCAN_SHARDS: '1' });
      await cacheStart(i >= 0);
      if (i >= 0) {
        await listOnce('paged', paged);
        await listOnce('cached', cached);
        await listOnce('metadata', metadata);
      } else {
        await rawList(c, client, 'paged');
        await rawList(c, client, 'cached');
        await rawList(c, client, 'metadata');
      }
      if (i >= 0)
        opts.log(
          `${n} claims: run ${i + 1}/${runs}: agent ${full.ms.at(-1)!.toFixed(0)} ms (in one LIST ${single.ms.at(-1)!.toFixed(0)} ms), from its claims cache ${fromCache.ms.at(-1)!.toFixed(0)} ms, LIST paged ${paged.ms.at(-1)!.toFixed(0)} ms, cached ${cached.ms.at(-1)!.toFixed(0)} ms, metadata only ${metadata.ms.at(-1)!.toFixed(0)} ms`,
        );
    }
  } finally {
    agentHttps?.destroy();
    await store?.close();
    await cluster?.stop();
    tmp.cleanup();
  }

  const count = n.toLocaleString('en-US');
  const runsText = (t: Timed): string => `runs ${t.ms.map((x) => x.toFixed(0)).join(', ')} ms`;
  const plane = (t: Timed): string => `etcd + API server CPU meanwhile ${median(t.planeCpu).toFixed(0)} ms`;
  const cachedM = median(cached.ms);
  const rows: Row[] = [
    {
      figure: `API server: LIST of ${count} IPClaims from its watch cache (resourceVersion=0, in one answer)`,
      unit: 'ms',
      better: 'lower',
      median: cachedM,
      p99: p99(cached.ms),
      samples: cached.ms.length,
      detail: `${runsText(cached)}; ${plane(cached)}; ${((cachedM * 1000) / n).toFixed(0)} µs per object`,
    },
    compared(
      {
        figure: `API server: LIST of ${count} IPClaims, ${LIST_PAGE_SIZE} per page (consistent reads from etcd)`,
        unit: 'ms',
        better: 'lower',
        median: median(paged.ms),
        p99: p99(paged.ms),
        samples: paged.ms.length,
        anchor: 'API server: LIST from the watch cache',
        detail: `${runsText(paged)}; ${plane(paged)}; ${((median(paged.ms) * 1000) / n).toFixed(0)} µs per object; what the agent's start read before the watch cache (and what the store's \`list\` reads)`,
      },
      cachedM,
    ),
    compared(
      {
        figure: `API server: LIST of ${count} IPClaims from its watch cache, metadata only (PartialObjectMetadataList)`,
        unit: 'ms',
        better: 'lower',
        median: median(metadata.ms),
        p99: p99(metadata.ms),
        samples: metadata.ms.length,
        anchor: 'API server: LIST from the watch cache',
        detail: `${runsText(metadata)}; ${plane(metadata)}; ${((median(metadata.ms) * 1000) / n).toFixed(0)} µs per object; each claim without its spec (which the agent needs: the address's owner and attachment), so the least any LIST of the claims costs`,
      },
      cachedM,
    ),
    {
      figure: 'agent start to ready, empty store (kubernetes, bundle)',
      unit: 'ms',
      better: 'lower',
      median: median(empty.ms),
      p99: p99(empty.ms),
      samples: empty.ms.length,
      detail: `${runsText(empty)}; agent CPU to ready ${median(empty.agentCpu).toFixed(0)} ms, peak RSS ${median(empty.peakRss).toFixed(0)} MB; ${plane(empty)}`,
    },
    {
      ...compared(
        {
          figure: `agent start to ready, ${count} claims (kubernetes, bundle)`,
          unit: 'ms',
          better: 'lower',
          median: median(full.ms),
          p99: p99(full.ms),
          samples: full.ms.length,
          anchor: 'API server: LIST from the watch cache',
          goal: `< ${GOAL_MS} ms`,
          detail: `${runsText(full)}; the claims add ${(median(full.ms) - median(empty.ms)).toFixed(0)} ms to the empty start; agent CPU to ready ${median(full.agentCpu).toFixed(0)} ms, peak RSS ${median(full.peakRss).toFixed(0)} MB; ${plane(full)}; ${(median(full.ms) / median(single.ms)).toFixed(2)}× the same start reading them in one LIST (the row below)`,
        },
        cachedM,
      ),
      met: median(full.ms) < GOAL_MS,
    },
    compared(
      {
        figure: `agent start to ready, ${count} claims, in one LIST (kubernetes, bundle, IPKEEPER_KUBE_SCAN_SHARDS=1)`,
        unit: 'ms',
        better: 'lower',
        median: median(single.ms),
        p99: p99(single.ms),
        samples: single.ms.length,
        anchor: 'API server: LIST from the watch cache',
        detail: `${runsText(single)}; agent CPU to ready ${median(single.agentCpu).toFixed(0)} ms, peak RSS ${median(single.peakRss).toFixed(0)} MB; ${plane(single)}; for comparison: how the agent's start read the claims before they were read in shards`,
      },
      cachedM,
    ),
    {
      ...compared(
        {
          figure: `agent restart to ready, ${count} claims, from its claims cache (kubernetes, bundle, --claims-cache)`,
          unit: 'ms',
          better: 'lower',
          median: median(fromCache.ms),
          p99: p99(fromCache.ms),
          samples: fromCache.ms.length,
          anchor: 'API server: LIST from the watch cache',
          goal: `< ${GOAL_MS} ms`,
          detail: `${runsText(fromCache)}; reading the file (${(cacheBytes / 1e6).toFixed(1)} MB) ${median(cacheReadMs).toFixed(0)} ms; the claims add ${(median(fromCache.ms) - median(empty.ms)).toFixed(0)} ms to the empty start; agent CPU to ready ${median(fromCache.agentCpu).toFixed(0)} ms, peak RSS ${median(fromCache.peakRss).toFixed(0)} MB; ${plane(fromCache)}; after ready, their JSON parsed in ${median(cacheParseMs).toFixed(0)} ms (5 ms slices); the first stop wrote it in ${median(cacheWriteMs).toFixed(0)} ms (later stops found it current and wrote nothing)`,
        },
        cachedM,
      ),
      met: median(fromCache.ms) < GOAL_MS,
    },
    {
      figure: `API server: IPClaim creates, ${WRITERS} concurrent callers (writing the ${count})`,
      unit: 'creates/s',
      better: 'higher',
      median: createRate,
      samples: 1,
      detail: `KubernetesStore.create (POST); etcd + API server CPU ${createPlaneCpu?.toFixed(2)} ms per create`,
    },
  ];
  const notes = [
    `One control plane on this machine: etcd (one member, data on tmpfs) and kube-apiserver v1.20.2 built from Debian's source package (scripts/kube/build.sh), as the Kubernetes-mode tests run it; the CRDs of deploy/crds installed. ${count} IPClaims are written once, shaped as the engine writes them, all on the agent's node, scattered over ${SUBNET}.`,
    `The agent is the image's bundle, with its Node flags (\`AGENT_NODE_FLAGS\`), and \`--store kubernetes:KUBECONFIG\`, as the chart runs it (there it reads the in-cluster configuration); ready is \`/readyz\` answering. It starts its watches, reads pools, reservations and claims from the API server's watch cache (\`KubernetesStore.scan\`, moving a watch back when the cache's revision is older; the claims as ${SCAN_SHARDS} LISTs at once by their \`${SHARD_LABEL}\` label, plus one for claims without it, so the API server encodes them on more than one core), and starts its pod, namespace and node informers. ${runs} runs of each after one warm-up start; the agent's starts and the paged, cached and metadata-only LISTs alternate.`,
    `From its claims cache: the same agent with \`--claims-cache FILE\` (as the chart runs it), the file written by its previous clean stop (SIGTERM); it reads the claims from the file (indexing them from its digest line, each claim's JSON parsed after ready in 5 ms slices), lists only pools and reservations, and watches claims from the file's revision (src/ipam/claims-cache.ts). Ready does not wait for that watch's first events: a stale file cannot give an address twice (the claim's create decides; a repeated ADD reads its claims back), and a revision the API server no longer has resets to the full LIST. A node's first start, a crash (no clean stop since the file) or a file older than the API server's watch history starts as the row above.`,
    'The LIST rows are the API server alone: a keep-alive HTTPS client in the bench process that parses each page and nothing else. The metadata-only LIST asks for `PartialObjectMetadataList` (the API server drops every spec and status before encoding; the managedFields stay, v1.20 records them on every create).',
  ];
  return { rows, notes };
}
