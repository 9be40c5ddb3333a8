/**
 * @module bench/etcd
 * Allocations per second through the etcd store, against etcd's own ceiling on the same cluster:
 *
 *   agents   32 concurrent requesters spread over 4 `ipkeeper agent --store etcd://...` processes,
 *            each sending CNI ADDs over the agent's unix socket as the plugin sends them; every ADD
 *            is one new pod, so every allocation is one create-if-absent transaction in etcd
 *   raw      32 concurrent etcd3 clients, each running the same transaction the store's `create`
 *            runs (compare create_revision = 0, put a claim-sized value, else get) on keys of its own
 *
 * on one 3-member etcd cluster on loopback (test/etcd/cluster.ts). Rounds alternate raw / agents;
 * each rate is the median of its rounds, each latency over every request of every round.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { call } from '../src/cli/client.ts';
import type { CniRequest } from '../src/cni/protocol.ts';
import type { PoolUsage } from '../src/ipam/engine.ts';
import { startEtcdCluster, type EtcdCluster } from '../test/etcd/cluster.ts';
import { claimObject, poolObject } from './fixtures.ts';
import {
  compared,
  cpuMs,
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

const REQUESTERS = 32;
const AGENTS = 4;
const GOAL = 0.8;
const POOL = 'bench-etcd';
const SUBNET = '10.96.0.0/12';

interface Round {
  ops: number;
  seconds: number;
  latMs: number[];
  errors: number;
  /** CPU ms used during the round by the etcd members, the agents, and this process. */
  cpu: { etcd: number; agents: number; bench: number };
  /** etcd transactions committed during the round (its revision moved by one per write). */
  transactions?: number;
}

/** The cluster's current revision. */
async function revision(client: Etcd3): Promise<bigint> {
  const res = await client.kv.range({ key: Buffer.from('\0'), count_only: true });
  return BigInt(res.header.revision);
}

/** Runs `workers` loops of `op` for `seconds`; counts completed ops and their latencies. */
async function timed(
  workers: number,
  seconds: number,
  op: (w: number, n: number) => Promise<void>,
  pids: { etcd: () => (number | undefined)[]; agents: () => (number | undefined)[] },
): Promise<Round> {
  const c0 = { etcd: cpuOf(pids.etcd()), agents: cpuOf(pids.agents()), bench: cpuMs() };
  const lat: number[] = [];
  let ops = 0;
  let errors = 0;
  const t0 = nowMs();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let n = 0; nowMs() < end; n++) {
        const s = nowMs();
        try {
          await op(w, n);
          lat.push(nowMs() - s);
          ops++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const cpu = {
    etcd: cpuOf(pids.etcd()) - c0.etcd,
    agents: cpuOf(pids.agents()) - c0.agents,
    bench: cpuMs() - c0.bench,
  };
  return { ops, seconds: (nowMs() - t0) / 1000, latMs: lat, errors, cpu };
}

/** Polls until every agent's cache lists the pool (the apply went to agent 0; watches carry it). */
async function waitPool(agents: AgentProc[]): Promise<void> {
  const deadline = nowMs() + 30_000;
  for (const a of agents) {
    for (;;) {
      const usage = await call<PoolUsage[]>(a.socket, 'GET', '/v1/usage');
      if (usage.some((u) => u.name === POOL)) break;
      if (nowMs() > deadline) throw new Error(`agent ${a.socket} never saw pool ${POOL}`);
      await sleep(20);
    }
  }
}

export async function run(opts: SectionOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const seconds = opts.quick ? 3 : 8;
  const pairs = opts.quick ? 1 : 3;
  const tmp = tempDir('etcd');
  let cluster: EtcdCluster | undefined;
  const agents: AgentProc[] = [];
  const clients: Etcd3[] = [];
  const raw: Round[] = [];
  const viaAgents: Round[] = [];
  /** Claims in the one pool after the last round. */
  let poolHeld: number | undefined;
  try {
    opts.log('starting a 3-member etcd cluster');
    cluster = await startEtcdCluster(3);
    const prefix = `/bench-${process.pid}`;
    const storeUrl = `${cluster.url}${prefix}`;
    opts.log(`starting ${AGENTS} agents on ${storeUrl}`);
    for (let i = 0; i < AGENTS; i++) {
      agents.push(
        await startAgent({ store: storeUrl, socket: join(tmp.path, `agent${i}.sock`), node: `node${i}` }),
      );
    }
    await call(agents[0]!.socket, 'POST', '/v1/apply', { objects: [poolObject(POOL, SUBNET)] });
    await waitPool(agents);

    for (let i = 0; i < REQUESTERS; i++) clients.push(new Etcd3({ hosts: cluster.endpoints }));
    // A claim-sized value, so both sides move the same bytes.
    const value = Buffer.from(
      JSON.stringify(
        claimObject({
          pool: POOL,
          family: 4,
          value: 0x0a600001n,
          tag: 'raw',
          node: 'node0',
          cniNetwork: 'bench',
        }).claim,
      ),
    );
    const rawOp =
      (round: number) =>
      async (w: number, n: number): Promise<void> => {
        const key = Buffer.from(`/bench-raw-${process.pid}/r${round}/c${w}/${n}`);
        const res = await clients[w]!.kv.txn({
          compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key, value } }],
          failure: [{ request_range: { key } }],
        });
        if (!res.succeeded) throw new Error(`raw key ${key.toString()} existed`);
      };
    const agentOp =
      (round: number) =>
      async (w: number, n: number): Promise<void> => {
        const req: CniRequest = {
          command: 'ADD',
          containerId: `r${round}-w${w}-n${n}`,
          ifName: 'eth0',
          network: 'bench',
          cniVersion: '1.1.0',
          args: {
            K8S_POD_NAMESPACE: 'bench',
            K8S_POD_NAME: `pod-${round}-${w}-${n}`,
            K8S_POD_UID: `uid-${round}-${w}-${n}`,
          },
          ipam: { type: 'ipkeeper', pools: { ipv4: [POOL] } },
        };
        const res = await call<{ ips: unknown[] }>(agents[w % AGENTS]!.socket, 'POST', '/v1/cni/add', req);
        if (res.ips.length !== 1) throw new Error(`ADD gave ${res.ips.length} addresses`);
      };

    const c = cluster;
    const pids = { etcd: () => c.members.map((m) => m.pid), agents: () => agents.map((a) => a.pid) };
    // Warm-up: connections, JIT, etcd's first compactions of nothing.
    opts.log('warm-up');
    await timed(REQUESTERS, 1, rawOp(-1), pids);
    await timed(REQUESTERS, 1, agentOp(-1), pids);
    for (let r = 0; r < pairs; r++) {
      opts.log(`round ${r + 1}/${pairs}: raw CAS ${seconds} s, then agents ${seconds} s`);
      const order = r % 2 === 0 ? ['raw', 'agents'] : ['agents', 'raw'];
      for (const which of order) {
        if (which === 'raw') raw.push(await timed(REQUESTERS, seconds, rawOp(r), pids));
        else {
          const rev0 = await revision(clients[0]!);
          const round = await timed(REQUESTERS, seconds, agentOp(r), pids);
          round.transactions = Number((await revision(clients[0]!)) - rev0);
          viaAgents.push(round);
        }
      }
    }
    const usage = await call<PoolUsage[]>(agents[0]!.socket, 'GET', '/v1/usage');
    poolHeld = usage.find((u) => u.name === POOL)?.used;
  } finally {
    for (const c of clients) c.close();
    for (const a of agents) await a.stop();
    await cluster?.stopAll();
    tmp.cleanup();
  }

  const rate = (rs: Round[]): number[] => rs.map((r) => r.ops / r.seconds);
  const lat = (rs: Round[]): number[] => rs.flatMap((r) => r.latMs);
  const errs = (rs: Round[]): number => rs.reduce((a, r) => a + r.errors, 0);
  /** CPU ms per operation, and CPU-seconds per wall second (out of the machine's CPUs). */
  const cpuText = (rs: Round[]): string => {
    const ops = rs.reduce((a, r) => a + r.ops, 0);
    const secs = rs.reduce((a, r) => a + r.seconds, 0);
    const sum = (k: 'etcd' | 'agents' | 'bench'): number => rs.reduce((a, r) => a + r.cpu[k], 0);
    const total = sum('etcd') + sum('agents') + sum('bench');
    const per = (k: 'etcd' | 'agents' | 'bench'): string => (sum(k) / ops).toFixed(2);
    return `CPU per op: etcd ${per('etcd')} ms, agents ${per('agents')} ms, bench ${per('bench')} ms; busy ${(total / 1000 / secs).toFixed(2)} of ${availableParallelism()} CPUs`;
  };
  /** How many allocations one etcd transaction carried (group commit; each ADD also writes its Endpoint). */
  const perTxn = (rs: Round[]): string => {
    const ops = rs.reduce((a, r) => a + r.ops, 0);
    const txns = rs.reduce((a, r) => a + (r.transactions ?? 0), 0);
    return `${(ops / txns).toFixed(1)} allocations per etcd transaction`;
  };
  const rawRate = median(rate(raw));
  const agentRate = median(rate(viaAgents));
  const rows: Row[] = [
    {
      figure: `raw etcd CAS txns, ${REQUESTERS} concurrent clients`,
      unit: 'txn/s',
      better: 'higher',
      median: rawRate,
      samples: raw.length,
      goal: '—',
      detail: `latency p50 ${median(lat(raw)).toFixed(1)} ms, p99 ${p99(lat(raw)).toFixed(1)} ms; rounds ${rate(
        raw,
      )
        .map((x) => x.toFixed(0))
        .join(', ')}/s; errors ${errs(raw)}; ${cpuText(raw)}`,
    },
    {
      ...compared(
        {
          figure: `allocations via ${AGENTS} agents, ${REQUESTERS} concurrent requesters`,
          unit: 'alloc/s',
          better: 'higher',
          median: agentRate,
          samples: viaAgents.length,
          anchor: 'raw etcd CAS txns',
          goal: `≥ ${GOAL * 100}% of raw CAS`,
          detail: `latency p50 ${median(lat(viaAgents)).toFixed(1)} ms, p99 ${p99(lat(viaAgents)).toFixed(1)} ms; rounds ${rate(
            viaAgents,
          )
            .map((x) => x.toFixed(0))
            .join(
              ', ',
            )}/s; errors ${errs(viaAgents)}; ${cpuText(viaAgents)}; ${perTxn(viaAgents)}; the one pool held ${poolHeld?.toLocaleString('en-US') ?? '?'} claims after the last round (claims are objects of their own: the pool object is never rewritten, where Spiderpool caps a pool at 5,000)`,
        },
        rawRate,
      ),
      met: agentRate / rawRate >= GOAL,
    },
    {
      figure: 'raw etcd CAS txn latency',
      unit: 'ms',
      better: 'lower',
      median: median(lat(raw)),
      p99: p99(lat(raw)),
      samples: lat(raw).length,
    },
    compared(
      {
        figure: 'ADD latency via agents (etcd)',
        unit: 'ms',
        better: 'lower',
        median: median(lat(viaAgents)),
        p99: p99(lat(viaAgents)),
        samples: lat(viaAgents).length,
        anchor: 'raw etcd CAS txn latency',
      },
      median(lat(raw)),
    ),
  ];
  const notes = [
    `Each rate is completed operations per wall second over ${seconds} s rounds (${pairs} per side, alternating, after a 1 s warm-up of each); latencies are per request over every round. Everything (3 etcd members, ${AGENTS} agents, the requesters and the raw clients) shares this machine's CPUs.`,
    `Agents: ${REQUESTERS} requesters, requester i sending to agent i mod ${AGENTS}, each ADD a new pod in pool ${POOL} (${SUBNET}), over the agents' unix sockets with the same JSON the plugin sends (no plugin process). Every ADD is one etcd create transaction; every agent also receives every claim through its watch.`,
    `Raw: ${REQUESTERS} etcd3 clients (one per requester) in the bench process, each running the store's create transaction (compare create_revision = 0, put a ${'claim'}-sized value, else range) on a key of its own.`,
  ];
  return { rows, notes };
}
