/**
 * @module test/chaos/runner
 * The chaos run: requesters doing CNI ADD/DEL through several agent processes that share a real
 * 3-member etcd cluster, while agents are killed with SIGKILL, the etcd leader is killed, and two of
 * three members go down and come back. Then GC, and an independent scan of etcd (raw client, not
 * our store code) proves three things:
 *
 *   duplicates  no address was ever held by two pods at once (checked on every acknowledged ADD,
 *               and again in the final scan)
 *   lost        every acknowledged ADD whose pod was not deleted still holds its address
 *   leaked      after GC converges, no claim without a live owner
 *
 * Requests go to the agents' unix sockets as the plugin sends them (same JSON), so 100k operations
 * do not pay a process start each. A request whose outcome is unknown is retried as a runtime
 * would: the same ADD (idempotent by container id + interface) or the same DEL, until it succeeds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { call } from '../../src/cli/client.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import type { IPClaim } from '../../src/api/kinds.ts';
import { decodeValue } from '../../src/store/codec.ts';
import { startEtcdCluster, type EtcdCluster } from '../etcd/cluster.ts';
import { cli, startAgent, writeTemp, type AgentProcess } from '../e2e/harness.ts';

export interface ChaosOptions {
  operations: number;
  requesters: number;
  agents: number;
  seed: number;
  /** Pods per requester (each pod is one sandbox at a time). */
  podsPerRequester: number;
  /** Inject faults (default true). */
  faults: boolean;
  /** Milliseconds between faults. */
  faultEveryMs: number;
  /**
   * Agents keep a claims cache and checkpoint it this often (ms), so a killed agent restarts from
   * its last checkpoint (src/ipam/claims-cache.ts); 0: no claims cache (every start lists).
   */
  checkpointMs: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  operations: number;
  adds: number;
  dels: number;
  retries: number;
  seconds: number;
  agentKills: number;
  /** Agents restarted after a kill that took their claims from their claims cache. */
  restartsFromCache: number;
  leaderKills: number;
  quorumLosses: number;
  duplicates: number;
  lost: number;
  leakedBeforeGc: number;
  gcReleased: number;
  leakedAfterGc: number;
  claims: number;
  held: number;
}

export const DEFAULTS: ChaosOptions = {
  operations: 2000,
  requesters: 32,
  agents: 4,
  seed: 1,
  podsPerRequester: 4,
  faults: true,
  faultEveryMs: 1500,
  checkpointMs: 500,
};

/** A small deterministic PRNG (mulberry32) so a seed replays the same choices. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NETWORK = 'chaos-net';

interface Pod {
  id: number;
  agent: number;
  gen: number;
  held: string | undefined;
  /** A DEL is in flight: its address may already be someone else's. */
  releasing: boolean;
}

export async function runChaos(partial: Partial<ChaosOptions> = {}): Promise<ChaosReport> {
  const o = { ...DEFAULTS, ...partial };
  const log = o.log ?? (() => {});
  const rand = prng(o.seed);
  const dir = mkdtempSync(join(tmpdir(), 'ipk-chaos-'));
  const prefix = `/chaos-${process.pid}-${o.seed}/`;
  let cluster: EtcdCluster | undefined;
  const agents: (AgentProcess | undefined)[] = [];
  const socketOf = (i: number) => join(dir, `agent${i}.sock`);
  const started = Date.now();
  const report: ChaosReport = {
    operations: 0,
    adds: 0,
    dels: 0,
    retries: 0,
    seconds: 0,
    agentKills: 0,
    restartsFromCache: 0,
    leaderKills: 0,
    quorumLosses: 0,
    duplicates: 0,
    lost: 0,
    leakedBeforeGc: 0,
    gcReleased: 0,
    leakedAfterGc: 0,
    claims: 0,
    held: 0,
  };
  try {
    cluster = await startEtcdCluster(3);
    const storeUrl = `${cluster.url}${prefix.replace(/\/$/, '')}`;
    const start = async (i: number) => {
      // An agent cannot become ready while etcd has no quorum: keep trying, as a supervisor would.
      for (let attempt = 1; ; attempt++) {
        try {
          agents[i] = await startAgent({
            store: storeUrl,
            socket: socketOf(i),
            node: `node${i}`,
            extra: [
              '--log-level',
              'error',
              '--gc-min-age',
              '0',
              ...(o.checkpointMs > 0
                ? [
                    '--claims-cache',
                    join(dir, `agent${i}-claims.json`),
                    '--claims-cache-interval',
                    `${o.checkpointMs}ms`,
                  ]
                : []),
            ],
          });
          return;
        } catch (e) {
          if (attempt >= 10) throw e;
          log(`agent ${i} did not start (attempt ${attempt}): ${String(e).slice(0, 200)}`);
        }
      }
    };
    for (let i = 0; i < o.agents; i++) await start(i);
    const size = o.requesters * o.podsPerRequester;
    const bits = Math.max(24 - Math.ceil(Math.log2(Math.max(size * 2, 256) / 256)), 8);
    const r = cli([
      'apply',
      '-f',
      writeTemp(
        dir,
        'pool.yaml',
        `apiVersion: ipkeeper.io/v1alpha1\nkind: IPPool\nmetadata: {name: chaos}\nspec: {subnet: 10.99.0.0/${bits}}\n`,
      ),
      '--socket',
      socketOf(0),
    ]);
    if (r.code !== 0) throw new Error(`apply failed: ${r.stderr}`);

    const pods: Pod[] = Array.from({ length: size }, (_, id) => ({
      id,
      agent: id % o.agents,
      gen: 0,
      held: undefined,
      releasing: false,
    }));
    const retryReasons = new Map<string, number>();
    const holder = new Map<string, number>();
    const request = (p: Pod, command: 'ADD' | 'DEL'): CniRequest => ({
      command,
      containerId: `chaos-${p.id}-${p.gen}`,
      ifName: 'eth0',
      network: NETWORK,
      cniVersion: '1.1.0',
      args: { K8S_POD_NAMESPACE: 'chaos', K8S_POD_NAME: `pod-${p.id}`, K8S_POD_UID: `uid-${p.id}-${p.gen}` },
      ipam: { type: 'ipkeeper', pools: { ipv4: ['chaos'] } },
    });
    /** Sends until the agent answers OK: unknown outcomes are retried with the same request. */
    const until = async <T>(p: Pod, command: 'ADD' | 'DEL'): Promise<T> => {
      for (;;) {
        try {
          return await call<T>(
            socketOf(p.agent),
            'POST',
            command === 'ADD' ? '/v1/cni/add' : '/v1/cni/del',
            request(p, command),
          );
        } catch (e) {
          report.retries++;
          const code = (e as { code?: string }).code ?? 'unknown';
          retryReasons.set(code, (retryReasons.get(code) ?? 0) + 1);
          if (retryReasons.get(code) === 1) log(`first retry for ${code}: ${(e as Error).message}`);
          await sleep(50 + rand() * 100);
        }
      }
    };

    let remaining = o.operations;
    let running = true;
    const requester = async (r: number) => {
      const mine = pods.slice(r * o.podsPerRequester, (r + 1) * o.podsPerRequester);
      while (remaining > 0) {
        remaining--;
        const p = mine[Math.floor(rand() * mine.length)] as Pod;
        if (p.held === undefined) {
          const res = await until<IpamResult>(p, 'ADD');
          const ip = res.ips[0]?.address.split('/')[0] as string;
          const other = holder.get(ip);
          if (other !== undefined && other !== p.id && !pods[other]?.releasing) {
            report.duplicates++;
            log(`DUPLICATE: ${ip} given to pod ${p.id} while pod ${other} holds it`);
          }
          holder.set(ip, p.id);
          p.held = ip;
          report.adds++;
        } else {
          p.releasing = true;
          await until(p, 'DEL');
          if (holder.get(p.held) === p.id) holder.delete(p.held);
          p.held = undefined;
          p.releasing = false;
          p.gen++;
          report.dels++;
        }
        report.operations++;
      }
    };

    const faults = async () => {
      let n = 0;
      while (running && o.faults) {
        await sleep(o.faultEveryMs);
        if (!running || !cluster) break;
        const kind = n++ % 3;
        try {
          if (kind === 0) {
            const i = Math.floor(rand() * o.agents);
            await agents[i]?.kill('SIGKILL');
            report.agentKills++;
            log(`fault: kill -9 agent ${i}`);
            await start(i);
            const ready = await call<{ claims?: string }>(socketOf(i), 'GET', '/readyz').catch(
              () => undefined,
            );
            if (ready?.claims === 'claims cache') report.restartsFromCache++;
          } else if (kind === 1) {
            const leader = await cluster.leaderIndex();
            await cluster.stop(leader, 'SIGKILL');
            report.leaderKills++;
            log(`fault: kill -9 etcd leader (member ${leader})`);
            await sleep(300);
            await cluster.start(leader);
            await cluster.waitHealthy();
          } else {
            const a = Math.floor(rand() * 3);
            const b = (a + 1) % 3;
            await cluster.stop(a, 'SIGKILL');
            await cluster.stop(b, 'SIGKILL');
            report.quorumLosses++;
            log(`fault: etcd members ${a} and ${b} down (no quorum)`);
            await sleep(1000);
            await cluster.start(a);
            await cluster.start(b);
            await cluster.waitHealthy();
          }
        } catch (e) {
          log(`fault step failed: ${String(e)}`);
        }
      }
    };

    const faulting = faults();
    let lastReport = Date.now();
    const progress = setInterval(() => {
      if (Date.now() - lastReport > 5000) {
        lastReport = Date.now();
        log(`progress: ${report.operations}/${o.operations} operations, ${report.retries} retries`);
      }
    }, 1000);
    await Promise.all(Array.from({ length: o.requesters }, (_, r) => requester(r)));
    running = false;
    clearInterval(progress);
    log(`retries by reason: ${JSON.stringify(Object.fromEntries(retryReasons))}`);
    await faulting;
    await cluster.waitHealthy();

    // Independent scan (raw etcd client): what the store holds, before GC.
    const scan = async (): Promise<Map<string, IPClaim>> => {
      const client = new Etcd3({ hosts: cluster?.endpoints ?? [] });
      try {
        const kvs = await client.getAll().prefix(`${prefix}ipclaims/`).strings();
        return new Map(
          Object.entries(kvs).map(([k, v]) => {
            // The stored text as the store's codec writes it (a claim as its spec).
            const c = decodeValue(k.slice(prefix.length), v) as IPClaim;
            return [c.spec.ip, c];
          }),
        );
      } finally {
        client.close();
      }
    };
    const check = (claims: Map<string, IPClaim>) => {
      let lost = 0;
      const live = new Set<string>();
      for (const p of pods) {
        if (p.held === undefined) continue;
        live.add(`chaos-${p.id}-${p.gen}`);
        const c = claims.get(p.held);
        if (!c || c.spec.containerId !== `chaos-${p.id}-${p.gen}`) {
          lost++;
          log(
            `LOST: pod ${p.id} was acknowledged ${p.held}, store has ${c ? c.spec.containerId : 'nothing'}`,
          );
        }
      }
      const leaked = [...claims.values()].filter((c) => !live.has(c.spec.containerId ?? '')).length;
      return { lost, leaked };
    };
    const before = check(await scan());
    report.leakedBeforeGc = before.leaked;

    // GC as the runtime would: each node keeps the attachments it knows to be live.
    for (let i = 0; i < o.agents; i++) {
      const valid = pods
        .filter((p) => p.agent === i && p.held !== undefined)
        .map((p) => ({ containerID: `chaos-${p.id}-${p.gen}`, ifname: 'eth0' }));
      for (;;) {
        try {
          const out = await call<{ released: number }>(socketOf(i), 'POST', '/v1/cni/gc', {
            command: 'GC',
            network: NETWORK,
            cniVersion: '1.1.0',
            args: {},
            ipam: { type: 'ipkeeper' },
            validAttachments: valid,
          } satisfies CniRequest);
          report.gcReleased += out.released;
          break;
        } catch {
          await sleep(200);
        }
      }
    }
    const finalClaims = await scan();
    const after = check(finalClaims);
    report.lost = after.lost;
    report.leakedAfterGc = after.leaked;
    report.claims = finalClaims.size;
    report.held = pods.filter((p) => p.held !== undefined).length;
    // Duplicates in the final state: two pods in the model on one address.
    const seen = new Map<string, number>();
    for (const p of pods) {
      if (p.held === undefined) continue;
      if (seen.has(p.held)) report.duplicates++;
      seen.set(p.held, p.id);
    }
    report.seconds = Math.round((Date.now() - started) / 100) / 10;
    return report;
  } finally {
    for (const a of agents) await a?.kill('SIGKILL');
    await cluster?.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatReport(r: ChaosReport): string {
  return [
    `operations ${r.operations} (ADD ${r.adds}, DEL ${r.dels}) in ${r.seconds}s, ${r.retries} retried requests`,
    `faults: ${r.agentKills} agent kill -9 (${r.restartsFromCache} restarted from their claims cache's last checkpoint), ${r.leaderKills} etcd leader kill -9, ${r.quorumLosses} quorum losses (2 of 3 down)`,
    `duplicates (an address with two owners): ${r.duplicates}`,
    `lost (acknowledged and not deleted, but not held): ${r.lost}`,
    `claims without a live owner: ${r.leakedBeforeGc} before GC, ${r.gcReleased} released by GC, ${r.leakedAfterGc} after`,
    `final: ${r.held} pods hold addresses, ${r.claims} claims in etcd`,
  ].join('\n');
}
