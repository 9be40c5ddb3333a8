import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/store.ts';
import { API_VERSION, type NodePool } from '../api/kinds.ts';
import { Ipam } from '../ipam/engine.ts';
import { NodePoolAgent, parseStatusInterval } from './node-pool.ts';

const seed = (ips: string[]): NodePool => ({
  apiVersion: API_VERSION,
  kind: 'NodePool',
  metadata: { name: 'k8s1' },
  spec: { pool: Object.fromEntries(ips.map((ip) => [ip, {}])) },
});

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** A store that counts NodePool writes. */
function counting(inner: Store): Store & { writes: number } {
  const s = Object.create(inner) as Store & { writes: number };
  s.writes = 0;
  s.update = (key, value, version) => {
    if (key.startsWith('nodepools/')) s.writes++;
    return inner.update(key, value, version);
  };
  return s;
}

async function setup(np: NodePool | undefined, healthCheck = false) {
  const mem = new MemoryStore();
  if (np) await mem.create('nodepools/k8s1', np);
  const store = counting(mem);
  let now = Date.parse('2026-01-01T00:00:00Z');
  const timers: { at: number; fn: () => void; dead: boolean }[] = [];
  const logs: string[] = [];
  const agent = new NodePoolAgent({
    store,
    node: 'k8s1',
    statusIntervalMs: 15_000,
    healthCheck,
    clock: { now: () => now },
    log: { info: (_o, m) => logs.push(String(m)), warn: (_o, m) => logs.push(String(m)) },
    schedule: (fn, ms) => {
      const t = { at: now + ms, fn, dead: false };
      timers.push(t);
      return { cancel: () => (t.dead = true) };
    },
  });
  const ipam = new Ipam({ store: agent.store, node: 'k8s1', clock: { now: () => now } });
  await ipam.start();
  agent.start(ipam.state);
  /** Moves the clock and runs the timers that are due. */
  const advance = async (ms: number): Promise<void> => {
    now += ms;
    for (const t of timers.splice(0)) {
      if (t.dead) continue;
      if (t.at <= now) t.fn();
      else timers.push(t);
    }
    await agent.idle();
    await settle();
  };
  const status = async () => (await mem.get<NodePool>('nodepools/k8s1'))?.value.status;
  return { store, mem, agent, ipam, advance, status, logs, timers };
}

let seq = 0;
const add = (ipam: Ipam) => {
  seq++;
  return ipam.add({
    cniNetwork: 'net',
    containerId: `c${seq}`,
    ifName: 'eth0',
    owner: { kind: 'Pod', namespace: 'default', name: `p${seq}` },
  });
};

describe('NodePoolAgent: status.used, batched and throttled (seed 004)', () => {
  it('writes once at start, then batches a burst into one write after the interval', async () => {
    const t = await setup(seed(['192.168.1.1', '192.168.1.2', '192.168.1.3', '192.168.1.4']));
    await t.advance(0);
    await t.agent.idle();
    assert.equal(t.store.writes, 1, 'the first status goes out at once');
    assert.deepEqual((await t.status())?.used, {});
    const a = await add(t.ipam);
    const b = await add(t.ipam);
    await settle();
    await t.advance(1000);
    assert.deepEqual((await t.status())?.used, {}, 'not yet: within the throttle window');
    await t.advance(14_000);
    assert.equal(t.store.writes, 2, 'both ADDs in one write');
    const used = (await t.status())?.used ?? {};
    assert.deepEqual(Object.keys(used).sort(), [a, b].map((r) => r.ips[0]?.address.split('/')[0]).sort());
    assert.deepEqual(
      Object.values(used)
        .map((u) => u.owner)
        .sort(),
      [`default/p${seq - 1}`, `default/p${seq}`],
    );
  });

  it('nothing changed: no write', async () => {
    const t = await setup(seed(['192.168.1.1']));
    await t.advance(0);
    const n = t.store.writes;
    await t.advance(60_000);
    assert.equal(t.store.writes, n);
  });

  it('readiness: not ready (logged) until the pool lists an address; two with health checking', async () => {
    const t = await setup(undefined, true);
    let r = t.agent.readiness();
    assert.equal(r.ready, false);
    assert.match(r.ready ? '' : r.reason, /no NodePool named 'k8s1'/);
    assert.ok(
      t.logs.some((l) => l.startsWith("Waiting for initial IP to become available in 'k8s1' NodePool")),
    );
    await t.mem.create('nodepools/k8s1', seed(['192.168.1.1']));
    await settle();
    r = t.agent.readiness();
    assert.equal(r.ready, false);
    assert.match(r.ready ? '' : r.reason, /lists 1 address\(es\), 2 needed \(one is for health checking\)/);
    const cur = await t.mem.get<NodePool>('nodepools/k8s1');
    await t.mem.update('nodepools/k8s1', seed(['192.168.1.1', '192.168.1.2']), cur?.version as string);
    await settle();
    assert.equal(t.agent.readiness().ready, true);
    assert.ok(t.logs.some((l) => /NodePool 'k8s1' has 2 address\(es\): ready/.test(l)));
  });
});

describe('parseStatusInterval', () => {
  for (const [v, ms] of [
    ['15s', 15_000],
    ['500ms', 500],
    ['1m', 60_000],
    ['250', 250],
  ] as const) {
    it(`${v} = ${ms} ms`, () => assert.equal(parseStatusInterval(v), ms));
  }
  for (const v of ['0', '-1s', '1h', 'soon', '']) {
    it(`refuses ${JSON.stringify(v)}`, () =>
      assert.throws(() => parseStatusInterval(v), /--node-pool-status-interval/));
  }
});
