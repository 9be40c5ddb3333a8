/**
 * `ipkeeper get endpoint NS/NAME` (one namespaced object) and the VIPs an endpoint's pod is bound
 * to, in `get endpoints` and `describe endpoint`: the CLI as a process against a real agent (in
 * this process, memory store, embedded mode, the VIP asked for by the IPKEEPER_VIP CNI arg).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../store/memory.ts';
import { startAgent, type Agent } from '../agent/server.ts';
import type { CniRequest, IpamResult } from '../cni/protocol.ts';
import type { VIP } from '../api/kinds.ts';
import { call } from './client.ts';
import { vipsOfPod, withVipColumn } from './describe.ts';
import { cliAsync as cli } from '../../test/e2e/harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipk-epvip-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const V = 'ipkeeper.io/v1alpha1';

const vip = (name: string, status: VIP['status'], namespace?: string): VIP => ({
  apiVersion: V,
  kind: 'VIP',
  metadata: { name },
  spec: { pool: 'p', ...(namespace ? { namespace } : {}) },
  ...(status ? { status } : {}),
});

describe('vipsOfPod', () => {
  const vips = [
    vip('web-vip', { ready: true, v4ip: '10.0.0.5', pod: 'shop/web-0' }),
    vip('aap', { ready: true, v4ip: '10.0.0.6', pods: ['web-0', 'web-1'] }, 'shop'),
    vip('aap-other-ns', { ready: true, v4ip: '10.0.0.7', pods: ['web-0'] }, 'other'),
    vip('unbound', { ready: true, v4ip: '10.0.0.8' }),
  ];
  const cases: { name: string; ns: string; pod: string; want: string[] }[] = [
    {
      name: 'address and allowed address pair',
      ns: 'shop',
      pod: 'web-0',
      want: ['aap:allowed-address-pair', 'web-vip:address'],
    },
    { name: 'allowed address pair only', ns: 'shop', pod: 'web-1', want: ['aap:allowed-address-pair'] },
    {
      name: "same name in another namespace: only that namespace's",
      ns: 'other',
      pod: 'web-0',
      want: ['aap-other-ns:allowed-address-pair'],
    },
    { name: 'no VIP', ns: 'shop', pod: 'db-0', want: [] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(
        vipsOfPod(vips, c.ns, c.pod).map((v) => `${v.vip}:${v.binding}`),
        c.want,
      );
    });
  }

  it('withVipColumn adds a VIPS column, row by row, only when a VIP is in use', () => {
    const text = 'NAMESPACE   NAME\nshop        web-0\nshop        db-0';
    const eps = ['web-0', 'db-0'].map((name) => ({ metadata: { name, namespace: 'shop' } })) as never[];
    assert.equal(
      withVipColumn(text, eps, vips),
      'NAMESPACE   NAME    VIPS\nshop        web-0   aap,web-vip\nshop        db-0    -',
    );
    const plain = 'NAMESPACE   NAME\nshop        db-0';
    assert.equal(withVipColumn(plain, [eps[1]!], vips), plain, 'no VIP in use: no column');
  });
});

describe('ipkeeper get/describe endpoint against an agent', () => {
  let agent: Agent;
  const socket = join(dir, 'agent.sock');
  const s = ['--socket', socket];
  const add = (name: string, containerId: string, args: Record<string, string> = {}, ifName = 'eth0') =>
    call<IpamResult>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId,
      ifName,
      network: 'macvlan',
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: name, K8S_POD_UID: `uid-${name}`, ...args },
      ipam: { type: 'ipkeeper', pools: { ipv4: ['p4'] } },
    } satisfies CniRequest);

  before(async () => {
    agent = await startAgent({
      store: new MemoryStore(),
      socket,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: V,
          kind: 'IPPool',
          metadata: { name: 'p4' },
          spec: { subnet: '10.0.0.0/24', ips: ['10.0.0.10-10.0.0.20'] },
        },
        { apiVersion: V, kind: 'VIP', metadata: { name: 'front' }, spec: { pool: 'p4', v4ip: '10.0.0.15' } },
      ],
    });
    // web-0's eth0 is the VIP's address (no Endpoint for that); its net1 is allocated as usual.
    await add('web-0', 'c-web-0', { IPKEEPER_VIP: 'front' });
    await add('web-0', 'c-web-0', { IPKEEPER_VIP: 'front' }, 'net1');
    await add('db-0', 'c-db-0');
  });
  after(async () => {
    await agent?.close();
  });

  it('get endpoint NS/NAME shows that one endpoint (table and yaml)', async () => {
    const t = await cli(['get', 'endpoint', 'shop/db-0', ...s]);
    assert.equal(t.code, 0, t.stderr);
    const lines = t.stdout.trim().split('\n');
    assert.equal(lines.length, 2, t.stdout);
    assert.match(lines[1]!, /^shop\s+db-0\s/);
    const y = await cli(['get', 'endpoint', 'shop/db-0', '-o', 'json', ...s]);
    assert.equal(y.code, 0, y.stderr);
    const ep = JSON.parse(y.stdout);
    assert.equal(ep.kind, 'Endpoint');
    assert.equal(ep.metadata.namespace, 'shop');
    assert.equal(ep.metadata.name, 'db-0');
  });

  it('get endpoint of a missing one says not found; a malformed one says the form (exit 1)', async () => {
    const r = await cli(['get', 'endpoint', 'shop/nope', ...s]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not found/);
    const bad = await cli(['get', 'endpoint', 'shop/web-0/x', ...s]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /"shop\/web-0\/x" must be NAME or NAMESPACE\/NAME, e\.g\. default\/web-0/);
  });

  it('get endpoints lists the VIP the pod uses; describe endpoint names it with its address', async () => {
    const l = await cli(['get', 'endpoints', ...s]);
    assert.equal(l.code, 0, l.stderr);
    const [head, ...rows] = l.stdout.trim().split('\n');
    assert.match(head!, /\sVIPS$/);
    assert.match(
      rows.find((r) => /\sweb-0\s/.test(r))!,
      /\sfront$/,
    );
    assert.match(
      rows.find((r) => /\sdb-0\s/.test(r))!,
      /\s-$/,
    );

    const d = await cli(['describe', 'endpoint', 'shop/web-0', ...s]);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /^VIPs:\s+front \(10\.0\.0\.15\)$/m);
    const none = await cli(['describe', 'endpoint', 'shop/db-0', ...s]);
    assert.match(none.stdout, /^VIPs:\s+<none>$/m);
    const j = await cli(['describe', 'endpoint', 'shop/web-0', '-o', 'json', ...s]);
    assert.deepEqual(JSON.parse(j.stdout).vips, [{ vip: 'front', binding: 'address', ips: ['10.0.0.15'] }]);
  });
});
