import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { findProblems, type CheckInput, type ProblemKind } from './check.ts';
import type { IPClaim } from '../../api/kinds.ts';
import { claimName } from '../../ipam/engine.ts';
import { parseAddr } from '../../net/addr.ts';

const V = 'ipkeeper.io/v1alpha1';

function pool(name: string, spec: Record<string, unknown>) {
  return {
    key: `ippools/${name}`,
    version: '1',
    value: { apiVersion: V, kind: 'IPPool', metadata: { name }, spec },
  };
}
function reservation(name: string, ips: string[]) {
  return {
    key: `reservedips/${name}`,
    version: '1',
    value: { apiVersion: V, kind: 'ReservedIP', metadata: { name }, spec: { ips } },
  };
}
function claim(ip: string, over: Partial<IPClaim['spec']> = {}, key?: string, version = '10') {
  const network = over.network ?? 'default';
  const a = parseAddr(ip);
  const name = claimName(network, a.family, a.value);
  const value: IPClaim = {
    apiVersion: V,
    kind: 'IPClaim',
    metadata: { name },
    spec: {
      network,
      ip,
      family: ip.includes(':') ? 6 : 4,
      pool: 'p',
      owner: { kind: 'Pod', namespace: 'ns', name: `pod-${ip}` },
      cniNetwork: 'net',
      containerId: `c-${ip}`,
      ifName: 'eth0',
      node: 'n1',
      createdAt: '2026-01-01T00:00:00.000Z',
      ...over,
    },
  };
  return { key: key ?? `ipclaims/${name}`, version, value };
}

const basePools = [
  pool('p', { subnet: '10.0.0.0/24', gateway: '10.0.0.1', excludeIPs: ['10.0.0.200-10.0.0.210'] }),
  pool('q', { subnet: '10.1.0.0/24', ips: ['10.1.0.10-10.1.0.20'], network: 'other' }),
  pool('v6', { subnet: 'fd00::/120' }),
];

function kindsOf(input: Partial<CheckInput>): Map<string, ProblemKind[]> {
  const r = findProblems(
    { claims: [], pools: basePools, reservations: [reservation('r', ['10.0.0.50', 'fd00::50'])], ...input },
    { agent: 'n1', store: 'memory', now: 0 },
  );
  return new Map(r.problems.map((p) => [p.key, p.problems.map((x) => x.kind)]));
}

describe('check: each problem, at its boundary', () => {
  const cases: { name: string; claim: ReturnType<typeof claim>; want: ProblemKind[] }[] = [
    { name: 'first usable address after the gateway is fine', claim: claim('10.0.0.2'), want: [] },
    { name: 'last usable address is fine', claim: claim('10.0.0.254'), want: [] },
    { name: 'IPv6 in an IPv6 pool is fine', claim: claim('fd00::5', { pool: 'v6' }), want: [] },
    { name: 'pool that does not exist', claim: claim('10.9.0.5', { pool: 'gone' }), want: ['pool-missing'] },
    { name: 'the gateway', claim: claim('10.0.0.1'), want: ['outside-pool'] },
    { name: 'first excluded address', claim: claim('10.0.0.200'), want: ['outside-pool'] },
    { name: 'last excluded address', claim: claim('10.0.0.210'), want: ['outside-pool'] },
    { name: 'just after the exclusion is fine', claim: claim('10.0.0.211'), want: [] },
    { name: 'the broadcast address', claim: claim('10.0.0.255'), want: ['outside-pool'] },
    { name: 'outside the subnet', claim: claim('10.0.1.1'), want: ['outside-pool'] },
    {
      name: 'just outside spec.ips',
      claim: claim('10.1.0.21', { pool: 'q', network: 'other' }),
      want: ['outside-pool'],
    },
    {
      name: 'first address of spec.ips is fine',
      claim: claim('10.1.0.10', { pool: 'q', network: 'other' }),
      want: [],
    },
    {
      name: 'another network than its pool',
      claim: claim('10.1.0.10', { pool: 'q' }),
      want: ['outside-pool'],
    },
    {
      name: 'IPv4 claim naming an IPv6 pool',
      claim: claim('10.0.0.7', { pool: 'v6' }),
      want: ['outside-pool'],
    },
    { name: 'reserved IPv4', claim: claim('10.0.0.50'), want: ['reserved'] },
    { name: 'reserved IPv6', claim: claim('fd00::50', { pool: 'v6' }), want: ['reserved'] },
    {
      name: 'stored under another address key',
      claim: claim('10.0.0.98', {}, 'ipclaims/default.10.0.0.99'),
      want: ['invalid'],
    },
    {
      name: 'family field contradicts the address',
      claim: claim('10.0.0.8', { family: 6 }),
      want: ['invalid'],
    },
    {
      name: 'does not parse',
      claim: {
        key: 'ipclaims/default.10.0.0.9',
        version: '3',
        value: { kind: 'IPClaim', spec: { ip: 'nope' } } as unknown as IPClaim,
      },
      want: ['invalid'],
    },
    {
      name: 'reserved and in a missing pool: both',
      claim: claim('10.0.0.50', { pool: 'gone' }),
      want: ['pool-missing', 'reserved'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(kindsOf({ claims: [c.claim] }).get(c.claim.key) ?? [], c.want);
    });
  }
});

describe('check: duplicates and dead nodes', () => {
  it('lists every extra address of one family of one attachment, keeping the oldest without problems', () => {
    const a = claim('10.0.0.2', { containerId: 'c1', createdAt: '2026-01-01T00:00:02.000Z' });
    const b = claim('10.0.0.3', { containerId: 'c1', createdAt: '2026-01-01T00:00:01.000Z' });
    const c = claim('10.0.0.50', { containerId: 'c1', createdAt: '2026-01-01T00:00:00.000Z' }); // oldest, but reserved
    const k = kindsOf({ claims: [a, b, c] });
    assert.equal(k.get(b.key), undefined, 'the oldest claim without other problems is kept');
    assert.deepEqual(k.get(a.key), ['duplicate']);
    assert.deepEqual(k.get(c.key), ['reserved', 'duplicate']);
  });

  it('does not call one address per family a duplicate (dual stack), nor two interfaces', () => {
    const v4 = claim('10.0.0.2', { containerId: 'c1' });
    const v6 = claim('fd00::2', { containerId: 'c1', pool: 'v6' });
    const net1 = claim('10.0.0.3', { containerId: 'c1', ifName: 'net1' });
    assert.equal(kindsOf({ claims: [v4, v6, net1] }).size, 0);
  });

  it('reports claims of a node the lease source calls dead, and only those', () => {
    const dead = claim('10.0.0.2', { node: 'gone-node' });
    const live = claim('10.0.0.3', { node: 'n1' });
    const k = kindsOf({
      claims: [dead, live],
      deadNode: (c) => (c.spec.node === 'gone-node' ? 'node "gone-node" has no lease' : undefined),
    });
    assert.deepEqual(k.get(dead.key), ['dead-node']);
    assert.equal(k.get(live.key), undefined);
  });
});

describe('check: the report', () => {
  it('counts claims per kind, carries each version, and lists invalid objects', () => {
    const r = findProblems(
      {
        claims: [claim('10.9.0.5', { pool: 'gone' }, undefined, '41'), claim('10.0.0.50'), claim('10.0.0.2')],
        pools: [
          ...basePools,
          { key: 'ippools/broken', version: '2', value: { kind: 'IPPool', metadata: { name: 'broken' } } },
        ],
        reservations: [reservation('r', ['10.0.0.50'])],
      },
      { agent: 'n1', store: 'memory', now: Date.parse('2026-02-03T04:05:06Z') },
    );
    assert.equal(r.kind, 'CheckReport');
    assert.equal(r.generatedAt, '2026-02-03T04:05:06.000Z');
    assert.equal(r.summary.claims, 3);
    assert.equal(r.summary.problemClaims, 2);
    assert.equal(r.summary.byKind['pool-missing'], 1);
    assert.equal(r.summary.byKind.reserved, 1);
    assert.equal(r.summary.byKind.duplicate, 0);
    assert.equal(r.problems.find((p) => p.ip === '10.9.0.5')?.version, '41');
    assert.deepEqual(
      r.invalidObjects.map((o) => o.key),
      ['ippools/broken'],
    );
  });

  it('says a claim naming an invalid pool names the pool as invalid, not missing', () => {
    const r = findProblems(
      {
        claims: [claim('10.0.0.2', { pool: 'broken' })],
        pools: [
          {
            key: 'ippools/broken',
            version: '2',
            value: {
              apiVersion: V,
              kind: 'IPPool',
              metadata: { name: 'broken' },
              spec: { subnet: 'nonsense' },
            },
          },
        ],
        reservations: [],
      },
      { agent: 'n1', store: 'memory', now: 0 },
    );
    assert.match(r.problems[0]?.problems[0]?.detail ?? '', /"broken" is in the store but invalid/);
  });
});

describe('check: a VIP taken from a Subnet (spec.pool "subnet/<name>")', () => {
  const lb = {
    key: 'subnets/lb-net',
    version: '1',
    value: {
      apiVersion: V,
      kind: 'Subnet',
      metadata: { name: 'lb-net' },
      spec: { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.20'] },
    },
  };
  const vipClaim = (ip: string) =>
    claim(ip, {
      pool: 'subnet/lb-net',
      owner: { kind: 'VIP', name: 'lb' },
      cniNetwork: undefined,
      containerId: undefined,
      ifName: undefined,
    });

  it('is checked against its Subnet: inside is fine, outside is reported', () => {
    const k = kindsOf({ subnets: [lb], claims: [vipClaim('10.7.0.15'), vipClaim('10.7.0.30')] });
    assert.deepEqual(k.get(vipClaim('10.7.0.15').key) ?? [], []);
    assert.deepEqual(k.get(vipClaim('10.7.0.30').key), ['outside-pool']);
  });

  it('a Subnet that is gone is named as such', () => {
    const r = findProblems(
      { claims: [vipClaim('10.7.0.15')], pools: basePools, reservations: [], subnets: [] },
      { agent: 'n1', store: 'memory', now: 0 },
    );
    assert.equal(r.problems[0]?.problems[0]?.kind, 'pool-missing');
    assert.match(
      r.problems[0]?.problems[0]?.detail ?? '',
      /Subnet "lb-net" \(the source of this VIP's address\) does not exist/,
    );
  });

  it('without Subnets to look at (the agent cache), its source is not judged', () => {
    const k = kindsOf({ claims: [vipClaim('10.7.0.15')] });
    assert.deepEqual(k.get(vipClaim('10.7.0.15').key) ?? [], []);
  });
});
