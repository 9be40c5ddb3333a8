/**
 * `kill -9` of the agent during 200 concurrent ADDs through the real plugin executable, then a
 * restart on the same embedded store and a re-run of every ADD: no address is held twice, every
 * acknowledged address is still held by its container, and nothing leaked.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { installCni } from '../../src/cni/install.ts';
import { openStore } from '../../src/store/open.ts';
import type { IPClaim } from '../../src/api/kinds.ts';
import {
  cli,
  runPluginAsync,
  startAgent,
  tempDir,
  writeTemp,
  type AgentProcess,
  type CniOutcome,
} from './harness.ts';

const PODS = 200;
const PARALLEL = 40;

describe('e2e: agent killed with SIGKILL during 200 concurrent ADDs', () => {
  let dir: string;
  let plugin: string;
  let socket: string;
  let dbUrl: string;
  const agents: AgentProcess[] = [];

  before(async () => {
    dir = tempDir('crash');
    plugin = await installCni(join(dir, 'bin'));
    socket = join(dir, 'agent.sock');
    dbUrl = `sqlite:${join(dir, 'ipkeeper.db')}`;
  });
  after(async () => {
    for (const a of agents) await a.kill('SIGKILL');
  });

  const conf = () => ({
    cniVersion: '1.1.0',
    name: 'crash-net',
    type: 'ipkeeper',
    ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['crash-pool'] } },
  });
  const addPod = (i: number): Promise<CniOutcome> =>
    runPluginAsync(plugin, {
      command: 'ADD',
      containerId: `crash-${i}`,
      netns: '/var/run/netns/none',
      ifName: 'eth0',
      args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-${i};K8S_POD_UID=uid-${i}`,
      config: conf(),
    });

  async function runAll(onResult: (i: number, r: CniOutcome) => void): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        while (next < PODS) {
          const i = next++;
          onResult(i, await addPod(i));
        }
      }),
    );
  }

  it('keeps every acknowledged address and never gives one twice', async () => {
    const first = await startAgent({ store: dbUrl, socket });
    agents.push(first);
    const r = cli([
      'apply',
      '-f',
      writeTemp(
        dir,
        'pool.yaml',
        `apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: crash-pool}
spec: {subnet: 10.77.0.0/23}
`,
      ),
      '--socket',
      socket,
    ]);
    assert.equal(r.code, 0, r.stderr);

    const acked = new Map<number, string>();
    const failures: CniOutcome[] = [];
    let killed = false;
    await runAll((i, out) => {
      if (out.code === 0) acked.set(i, out.json.ips[0].address);
      else failures.push(out);
      if (!killed && acked.size >= 60) {
        killed = true;
        first.child.kill('SIGKILL');
      }
    });
    assert.ok(killed, 'the agent was killed mid-run');
    assert.ok(acked.size >= 60 && acked.size < PODS, `acknowledged ${acked.size}`);
    for (const f of failures) {
      // While the agent is down the runtime is told to retry (CNI 11), never given a bad result.
      assert.equal(f.json?.code, 11, f.stdout + f.stderr);
    }
    await first.kill('SIGKILL');

    const second = await startAgent({ store: dbUrl, socket });
    agents.push(second);
    const final = new Map<number, string>();
    await runAll((i, out) => {
      assert.equal(out.code, 0, out.stdout + out.stderr);
      final.set(i, out.json.ips[0].address);
    });
    for (const [i, ip] of acked) assert.equal(final.get(i), ip, `pod ${i} lost its acknowledged address`);
    assert.equal(new Set(final.values()).size, PODS, 'an address was given twice');
    await second.kill();

    // An independent scan of the store: one claim per pod, each naming its own container.
    const store = await openStore(dbUrl);
    const claims = await store.list<IPClaim>('ipclaims/');
    await store.close();
    assert.equal(claims.length, PODS, 'claims leaked or lost');
    for (const c of claims) {
      const i = Number(c.value.spec.containerId?.replace('crash-', ''));
      assert.equal(`${c.value.spec.ip}/23`, final.get(i));
    }
  });
});
