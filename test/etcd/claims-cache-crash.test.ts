/**
 * The claims cache's checkpoints (real etcd, real agent processes): an agent killed with SIGKILL —
 * no clean stop, so no final write — restarts from the last checkpoint it wrote while serving and
 * catches up with what changed while it was down (a release and a new claim by another agent).
 * Without the checkpoint it would find no file and list every claim again.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { call } from '../../src/cli/client.ts';
import type { CniRequest } from '../../src/cni/protocol.ts';
import type { PoolUsage } from '../../src/ipam/engine.ts';
import { readClaimsCache } from '../../src/ipam/claims-cache.ts';
import { openEtcdStore } from '../../src/store/etcd.ts';
import type { Store } from '../../src/store/store.ts';
import { startAgent, tempDir, type AgentProcess } from '../e2e/harness.ts';
import { until } from '../lib/until.ts';
import { startEtcdCluster, type EtcdCluster } from './cluster.ts';

const POOL = 'crash-pool';

describe('claims cache checkpoints: a restart after SIGKILL', () => {
  let cluster: EtcdCluster;
  let dir: string;
  let url: string;
  let store: Store;
  const agents: AgentProcess[] = [];

  before(async () => {
    cluster = await startEtcdCluster(1);
    dir = tempDir('cc-crash');
    url = `${cluster.url}/cc-crash-${process.pid}/`;
    store = await openEtcdStore(url);
  });
  after(async () => {
    for (const a of agents) await a.kill('SIGKILL');
    await store?.close();
    await cluster?.stopAll();
  });

  const cni = (socket: string, command: 'ADD' | 'DEL', pod: string) =>
    call<{ ips?: { address: string }[] }>(socket, 'POST', `/v1/cni/${command.toLowerCase()}`, {
      command,
      containerId: `c-${pod}`,
      ifName: 'eth0',
      network: 'crash-net',
      cniVersion: '1.1.0',
      args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: pod, K8S_POD_UID: `uid-${pod}` },
      ipam: { type: 'ipkeeper', pools: { ipv4: [POOL] } },
    } satisfies CniRequest);
  const ipOf = (r: { ips?: { address: string }[] }): string => r.ips![0]!.address.split('/')[0]!;
  /** The claims in etcd: ip → containerId. */
  const stored = async (): Promise<Map<string, string>> =>
    new Map(
      (await store.list<{ spec: { ip: string; containerId: string } }>('ipclaims/')).map((e) => [
        e.value.spec.ip,
        e.value.spec.containerId,
      ]),
    );
  const used = async (socket: string): Promise<number | undefined> =>
    (await call<PoolUsage[]>(socket, 'GET', '/v1/usage')).find((u) => u.name === POOL)?.used;

  it('reads the last checkpoint and catches up', async () => {
    const file = join(dir, 'claims.json');
    const socket = join(dir, 'a.sock');
    const start = (): Promise<AgentProcess> =>
      startAgent({
        store: url,
        socket,
        node: 'n1',
        extra: ['--claims-cache', file, '--claims-cache-interval', '300ms', '--log-level', 'info'],
      });
    const first = await start();
    agents.push(first);
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: 'ipkeeper.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: POOL },
          spec: { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.60'] },
        },
      ],
    });
    await until('the pool in the agent', async () => ((await used(socket)) === 0 ? true : undefined));
    const ip: Record<string, string> = {};
    for (const p of ['a', 'b', 'c']) ip[p] = ipOf(await cni(socket, 'ADD', p));

    // A checkpoint holding all three, written while the agent serves.
    await until('a checkpoint with a, b and c', async () => {
      if (!existsSync(file)) return undefined;
      const r = readClaimsCache(file, JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!).store);
      return r.ok && r.claims.length === 3 ? true : undefined;
    });
    // The agent logs the checkpoint after the file is in place, and its log comes through a pipe:
    // the line may trail the file by a moment.
    await until('the checkpoint in the log', async () =>
      /claims cache checkpoint written/.test(first.log()) ? true : undefined,
    );
    await first.kill('SIGKILL');

    // While it is down, another agent releases a and takes d.
    const otherSocket = join(dir, 'b.sock');
    const other = await startAgent({ store: url, socket: otherSocket, node: 'n2' });
    agents.push(other);
    // No file for it: it lists, and says so.
    assert.equal((await call<{ claims: string }>(otherSocket, 'GET', '/readyz')).claims, 'store');
    await until('the claims in the other agent', async () =>
      (await used(otherSocket)) === 3 ? true : undefined,
    );
    await cni(otherSocket, 'DEL', 'a');
    ip.d = ipOf(await cni(otherSocket, 'ADD', 'd'));
    await other.kill('SIGTERM');

    const second = await start();
    agents.push(second);
    assert.match(second.log(), /claims read from the claims cache/);
    assert.equal((await call<{ claims: string }>(socket, 'GET', '/readyz')).claims, 'claims cache');
    assert.doesNotMatch(second.log(), /claims cache not used/);
    await until('the agent caught up (a gone, d there)', async () =>
      (await used(socket)) === 3 ? true : undefined,
    );
    // The read-back: a repeated ADD of b keeps its address; a repeated ADD of a is a new claim
    // (a was released while the agent was down), never an address another container holds.
    assert.equal(ipOf(await cni(socket, 'ADD', 'b')), ip.b);
    const a2 = ipOf(await cni(socket, 'ADD', 'a'));
    const now = await stored();
    assert.equal(now.get(a2), 'c-a');
    assert.equal(now.get(ip.b!), 'c-b');
    assert.equal(now.get(ip.c!), 'c-c');
    assert.equal(now.get(ip.d!), 'c-d');
    assert.equal(now.size, 4);
    await second.kill('SIGTERM');
    // Its clean stop wrote the four.
    const r = readClaimsCache(file, JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!).store);
    assert.ok(r.ok);
    assert.deepEqual(new Set(r.claims.map((c) => c.ip)), new Set(now.keys()));
  });
});
