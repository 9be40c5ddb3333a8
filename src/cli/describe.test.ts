/**
 * `ipkeeper describe` as a user runs it: the CLI as a process against a real agent (in this
 * process, memory store).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../store/memory.ts';
import { startAgent, type Agent } from '../agent/server.ts';
import type { IPClaim } from '../api/kinds.ts';
import type { PoolDescription } from '../agent/ui/inspect.ts';
import { call } from './client.ts';
import { formatPool } from './describe.ts';
import { cliAsync as cli } from '../../test/e2e/harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipk-describe-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const V = 'ipkeeper.io/v1alpha1';

describe('ipkeeper describe', () => {
  let agent: Agent;
  const store = new MemoryStore();
  const socket = join(dir, 'agent.sock');
  const s = ['--socket', socket];

  before(async () => {
    agent = await startAgent({
      store,
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
          metadata: { name: 'test-ippool' },
          spec: {
            subnet: '10.6.0.0/16',
            ips: ['10.6.168.131-10.6.168.140'],
            excludeIPs: ['10.6.168.139'],
            gateway: '10.6.0.1',
            vlan: 168,
            routes: [{ dst: '10.7.0.0/16' }],
          },
        },
        {
          apiVersion: V,
          kind: 'ReservedIP',
          metadata: { name: 'test-reservedip' },
          spec: { ips: ['10.6.168.133', '10.9.9.9'] },
        },
      ],
    });
    for (const [id, pod] of [
      ['c1', 'web-0'],
      ['c2', 'web-1'],
    ]) {
      await call(socket, 'POST', '/v1/cni/add', {
        command: 'ADD',
        containerId: `${id}-0123456789abcdef`,
        ifName: 'net1',
        network: 'macvlan-ens192',
        cniVersion: '1.1.0',
        args: { K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: pod!, K8S_POD_UID: `uid-${pod}` },
        ipam: { type: 'ipkeeper', pools: { ipv4: ['test-ippool'] } },
      });
    }
    // A claim on the reserved address, as a hand edit would leave it.
    const bad: IPClaim = {
      apiVersion: V,
      kind: 'IPClaim',
      metadata: { name: 'default.10.6.168.133' },
      spec: {
        network: 'default',
        ip: '10.6.168.133',
        family: 4,
        pool: 'test-ippool',
        owner: { kind: 'Pod', namespace: 'shop', name: 'old' },
        node: 'n1',
        createdAt: '2026-01-01T00:00:00.000Z',
      },
    };
    assert.ok((await store.create('ipclaims/default.10.6.168.133', bad)).created);
  });
  after(() => agent.close());

  it('describes a pool: addresses, exclusions, reservations, gateway, routes, counts and holders', async () => {
    const [text, json] = await Promise.all([
      cli(['describe', 'ippool', 'test-ippool', ...s]),
      cli(['describe', 'pool', 'test-ippool', '-o', 'json', ...s]),
    ]);
    assert.equal(text.code, 0, text.stderr);
    const out = text.stdout;
    assert.match(out, /^Name:\s+test-ippool$/m);
    assert.match(out, /^Gateway:\s+10\.6\.0\.1$/m);
    assert.match(out, /^VLAN:\s+168$/m);
    assert.match(out, /^Ranges:\s+10\.6\.168\.131-10\.6\.168\.140$/m);
    assert.match(out, /^Excluded:\s+10\.6\.168\.139, 10\.6\.0\.1 \(gateway\)$/m);
    assert.match(out, /^Allocatable:\s+10\.6\.168\.131-10\.6\.168\.138, 10\.6\.168\.140$/m);
    assert.match(out, /^Routes:\s+10\.7\.0\.0\/16 via 10\.6\.0\.1$/m);
    // 9 allocatable; 133 reserved; 131, 132 allocated and 133 planted: all three held.
    assert.match(out, /^Addresses:\s+3 used, 1 reserved, 6 free of 9 \(1 excluded, not counted\)$/m);
    assert.match(
      out,
      /^\s+test-reservedip\s+1\s+10\.6\.168\.133$/m,
      'only the reserved addresses inside the pool',
    );
    assert.match(out, /^Holders \(3\):$/m);
    assert.match(out, /^\s+10\.6\.168\.131\s+Pod shop\/web-0\s+net1\s+c1-012345678\s+n1\s+macvlan-ens192\s/m);
    assert.match(out, /^\s+10\.6\.168\.132\s+Pod shop\/web-1\s+net1/m);

    const d = JSON.parse(json.stdout) as PoolDescription;
    assert.deepEqual(
      d.holders.map((h) => h.ip),
      ['10.6.168.131', '10.6.168.132', '10.6.168.133'],
    );
    assert.equal(d.counts.free, '6');
  });

  it('describes the claim of an address, with its owner and its problems', async () => {
    const [good, bad, free, byName] = await Promise.all([
      cli(['describe', 'ipclaim', '10.6.168.131', ...s]),
      cli(['describe', 'ipclaim', '10.6.168.133', ...s]),
      cli(['describe', 'ipclaim', '10.6.168.134', ...s]),
      cli(['describe', 'claim', 'default.10.6.168.132', '-o', 'yaml', ...s]),
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /^Owner:\s+Pod shop\/web-0$/m);
    assert.match(good.stdout, /^Owner UID:\s+uid-web-0$/m);
    assert.match(good.stdout, /^Interface:\s+net1$/m);
    assert.match(good.stdout, /^Container:\s+c1-0123456789abcdef$/m);
    assert.match(good.stdout, /^Gateway:\s+10\.6\.0\.1$/m);
    assert.match(good.stdout, /^Problems:\s+<none>$/m);

    assert.equal(bad.code, 0, bad.stderr);
    assert.match(bad.stdout, /^\s+reserved: 10\.6\.168\.133 is reserved by ReservedIP "test-reservedip"$/m);

    assert.equal(free.code, 1);
    assert.match(free.stderr, /^error: no claim holds 10\.6\.168\.134/m);

    assert.equal(byName.code, 0, byName.stderr);
    assert.match(byName.stdout, /name: web-1/);
  });

  it('says what to use for other kinds, and names a missing pool', async () => {
    const [kind, missing, junk] = await Promise.all([
      cli(['describe', 'reservedip', 'test-reservedip', ...s]),
      cli(['describe', 'ippool', 'nope', ...s]),
      cli(['describe', 'ipclaim', '10.6.168', ...s]),
    ]);
    assert.equal(kind.code, 1);
    assert.match(kind.stderr, /ipkeeper get reservedip test-reservedip -o yaml/);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /IPPool "nope" not found/);
    assert.equal(junk.code, 1);
    assert.match(junk.stderr, /neither an IP address .* nor a claim name/);
  });

  it('prints an empty pool without a holders table', () => {
    const d: PoolDescription = {
      pool: { apiVersion: V, kind: 'IPPool', metadata: { name: 'e' }, spec: { subnet: 'fd00::/126' } },
      version: '1',
      family: 6,
      network: 'default',
      subnet: 'fd00::/126',
      routes: [],
      default: false,
      disabled: false,
      ranges: ['fd00::1-fd00::3'],
      allocatable: ['fd00::1-fd00::3'],
      excludeIPs: [],
      reservations: [],
      counts: { total: '3', used: '0', reserved: '0', free: '3', excluded: '0', claims: 0 },
      holders: [],
    };
    const out = formatPool(d);
    assert.match(out, /^Family:\s+IPv6$/m);
    assert.match(out, /^Gateway:\s+<none>$/m);
    assert.match(out, /^Holders:\s+<none>$/m);
    assert.match(out, /^Reservations:\s+<none>$/m);
  });

  it('shows examples in --help', async () => {
    const r = await cli(['describe', '--help']);
    assert.match(r.stdout, /ipkeeper describe ipclaim 10\.6\.168\.133/);
  });
});
