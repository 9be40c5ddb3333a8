import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { toCniResult } from './result.ts';
import { SUPPORTED_VERSIONS } from './config.ts';
import type { IpamResult } from './protocol.ts';
import { IpamError } from '../errors.ts';

const dual: IpamResult = {
  ips: [
    { address: '10.6.168.133/16', gateway: '10.6.0.1', pool: 'v4-pool' },
    { address: 'fd00:6::133/64', gateway: 'fd00:6::1', pool: 'v6-pool' },
  ],
  routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }],
};

describe('toCniResult', () => {
  const cases: { version: (typeof SUPPORTED_VERSIONS)[number]; want: unknown }[] = [
    ...(['0.3.0', '0.3.1', '0.4.0'] as const).map((version) => ({
      version,
      want: {
        cniVersion: version,
        ips: [
          { version: '4', address: '10.6.168.133/16', gateway: '10.6.0.1' },
          { version: '6', address: 'fd00:6::133/64', gateway: 'fd00:6::1' },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }],
      },
    })),
    ...(['1.0.0', '1.1.0'] as const).map((version) => ({
      version,
      want: {
        cniVersion: version,
        ips: [
          { address: '10.6.168.133/16', gateway: '10.6.0.1' },
          { address: 'fd00:6::133/64', gateway: 'fd00:6::1' },
        ],
        routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }],
      },
    })),
  ];
  for (const c of cases) {
    it(`converts a dual-stack result to ${c.version}`, () => {
      const got = toCniResult(dual, c.version);
      assert.deepEqual(got, c.want);
      // Key order matters to nobody but people reading logs; cniVersion first.
      assert.equal(Object.keys(got)[0], 'cniVersion');
    });
  }

  it('covers every supported version', () => {
    assert.deepEqual(
      cases.map((c) => c.version),
      [...SUPPORTED_VERSIONS],
    );
  });

  it('never returns interfaces or an interface index (an IPAM plugin has none)', () => {
    for (const v of SUPPORTED_VERSIONS) {
      const got = toCniResult(dual, v) as unknown as Record<string, unknown> & {
        ips: Record<string, unknown>[];
      };
      assert.equal('interfaces' in got, false, v);
      for (const ip of got.ips) {
        assert.equal('interface' in ip, false, v);
        assert.equal('pool' in ip, false, v);
      }
    }
  });

  it('leaves out a gateway the agent did not give', () => {
    const got = toCniResult({ ips: [{ address: '192.168.0.5/24', pool: 'p' }], routes: [] }, '0.3.1');
    assert.deepEqual(got.ips, [{ version: '4', address: '192.168.0.5/24' }]);
  });

  it('appends the config routes, without repeating the ones the agent returned', () => {
    const got = toCniResult(dual, '1.1.0', [
      { dst: '0.0.0.0/0', gw: '10.6.0.1' },
      { dst: '172.16.0.0/12', gw: '10.6.0.254' },
      { dst: 'fd00::/8' },
    ]);
    assert.deepEqual(got.routes, [
      { dst: '0.0.0.0/0', gw: '10.6.0.1' },
      { dst: '172.16.0.0/12', gw: '10.6.0.254' },
      { dst: 'fd00::/8' },
    ]);
  });

  it('copies dns when it has something, and leaves it out when empty', () => {
    const withDns = toCniResult(
      { ...dual, dns: { nameservers: ['10.6.0.53'], search: ['svc.cluster.local'] } },
      '1.0.0',
    );
    assert.deepEqual(withDns.dns, { nameservers: ['10.6.0.53'], search: ['svc.cluster.local'] });
    assert.equal('dns' in toCniResult({ ...dual, dns: {} }, '1.0.0'), false);
    assert.equal('dns' in toCniResult(dual, '1.0.0'), false);
  });

  const bad: { name: string; result: unknown }[] = [
    { name: 'no ips', result: { ips: [], routes: [] } },
    { name: 'ips not a list', result: { ips: {}, routes: [] } },
    { name: 'address without prefix', result: { ips: [{ address: '10.0.0.1', pool: 'p' }], routes: [] } },
    { name: 'address not an address', result: { ips: [{ address: 'ten/8', pool: 'p' }], routes: [] } },
    {
      name: 'gateway not an address',
      result: { ips: [{ address: '10.0.0.1/8', gateway: 'x', pool: 'p' }], routes: [] },
    },
    { name: 'null', result: null },
  ];
  for (const c of bad) {
    it(`refuses a malformed agent result as INTERNAL: ${c.name}`, () => {
      assert.throws(
        () => toCniResult(c.result as IpamResult, '1.1.0'),
        (e: unknown) =>
          e instanceof IpamError &&
          e.code === 'INTERNAL' &&
          e.cniCode === 110 &&
          /agent's result/.test(e.message),
      );
    });
  }

  it('marks every address with its family before 1.0.0 and never after', () => {
    const v4 = fc.ipV4().map((a) => `${a}/24`);
    const v6 = fc.ipV6().map((a) => `${a}/64`);
    fc.assert(
      fc.property(
        fc.array(fc.oneof(v4, v6), { minLength: 1, maxLength: 4 }),
        fc.constantFrom(...SUPPORTED_VERSIONS),
        (addrs, version) => {
          const got = toCniResult(
            { ips: addrs.map((address) => ({ address, pool: 'p' })), routes: [] },
            version,
          );
          assert.deepEqual(
            got.ips.map((ip) => ip.address),
            addrs,
          );
          for (const ip of got.ips) {
            if (version.startsWith('1.')) assert.equal(ip.version, undefined);
            else assert.equal(ip.version, ip.address.includes(':') ? '6' : '4');
          }
        },
      ),
    );
  });
});
