import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compareVersions, parseNetConf, replyVersion, SUPPORTED_VERSIONS } from './config.ts';
import type { NetConf } from './config.ts';
import type { CniCommand } from './protocol.ts';
import { IpamError } from '../errors.ts';

const base = { cniVersion: '1.1.0', name: 'macvlan-net', ipam: { type: 'ipkeeper' } };
const conf = (over: Record<string, unknown>): string => JSON.stringify({ ...base, ...over });
const ipam = (over: Record<string, unknown>): string => conf({ ipam: { type: 'ipkeeper', ...over } });

describe('parseNetConf accepts', () => {
  const cases: { name: string; text: string; command?: CniCommand; want: Partial<NetConf> }[] = [
    {
      name: 'the minimum',
      text: conf({}),
      want: { cniVersion: '1.1.0', name: 'macvlan-net', ipam: { type: 'ipkeeper' }, requestedIps: [] },
    },
    ...SUPPORTED_VERSIONS.map((v) => ({
      name: `cniVersion ${v} for ADD`,
      text: conf({ cniVersion: v }),
      want: { cniVersion: v },
    })),
    {
      name: 'CHECK at 0.4.0',
      text: conf({ cniVersion: '0.4.0' }),
      command: 'CHECK',
      want: { cniVersion: '0.4.0' },
    },
    { name: 'name with _ and .', text: conf({ name: 'Net_1.a-b' }), want: { name: 'Net_1.a-b' } },
    {
      name: 'every ipam field',
      text: ipam({
        socket: '/run/ipkeeper/ipkeeper.sock',
        pools: { ipv4: ['v4-a', 'v4-b'], ipv6: ['v6.a'] },
        routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }, { dst: 'fd00::/8' }],
        logFile: '/var/log/ipkeeper-cni.log',
        timeoutMs: 5000,
        unknownField: 'ignored',
      }),
      want: {
        ipam: {
          type: 'ipkeeper',
          socket: '/run/ipkeeper/ipkeeper.sock',
          pools: { ipv4: ['v4-a', 'v4-b'], ipv6: ['v6.a'] },
          routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }, { dst: 'fd00::/8' }],
          logFile: '/var/log/ipkeeper-cni.log',
          timeoutMs: 5000,
        },
      },
    },
    {
      name: 'ipam.timeoutMs at its minimum, 100',
      text: ipam({ timeoutMs: 100 }),
      want: { ipam: { type: 'ipkeeper', timeoutMs: 100 } },
    },
    {
      name: 'empty pool lists',
      text: ipam({ pools: { ipv4: [] } }),
      want: { ipam: { type: 'ipkeeper', pools: { ipv4: [] } } },
    },
    {
      name: 'runtimeConfig.ips then args.cni.ips, in order',
      text: conf({
        runtimeConfig: { ips: ['10.6.168.133/16'] },
        args: { cni: { ips: ['fd00::133', '10.6.168.134'] } },
      }),
      want: { requestedIps: ['10.6.168.133/16', 'fd00::133', '10.6.168.134'] },
    },
    {
      name: 'runtimeConfig without ips',
      text: conf({ runtimeConfig: { portMappings: [] } }),
      want: { requestedIps: [] },
    },
    { name: 'args without cni', text: conf({ args: { other: 1 } }), want: { requestedIps: [] } },
    {
      name: 'prevResult on DEL',
      text: conf({ prevResult: { ips: [{ address: '10.0.0.2/24' }] } }),
      command: 'DEL',
      want: { name: 'macvlan-net' },
    },
    {
      name: 'prevResult on CHECK',
      text: conf({ prevResult: 'anything' }),
      command: 'CHECK',
      want: { name: 'macvlan-net' },
    },
    {
      name: 'GC with cni.dev/valid-attachments',
      text: conf({ 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] }),
      command: 'GC',
      want: { validAttachments: [{ containerID: 'c1', ifname: 'eth0' }] },
    },
    {
      name: 'GC with the draft cni.dev/attachments',
      text: conf({ 'cni.dev/attachments': [{ containerID: 'c2', ifname: 'net1' }] }),
      command: 'GC',
      want: { validAttachments: [{ containerID: 'c2', ifname: 'net1' }] },
    },
    {
      name: 'GC with an empty list',
      text: conf({ 'cni.dev/valid-attachments': [] }),
      command: 'GC',
      want: { validAttachments: [] },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = parseNetConf(c.text, c.command ?? 'ADD');
      for (const [k, v] of Object.entries(c.want)) assert.deepEqual(got[k as keyof NetConf], v, k);
    });
  }
  it('leaves validAttachments out for commands other than GC', () => {
    assert.equal(parseNetConf(conf({ 'cni.dev/valid-attachments': [] }), 'DEL').validAttachments, undefined);
  });
});

describe('parseNetConf refuses', () => {
  const long = '/run/' + 'x'.repeat(103);
  const cases: {
    name: string;
    text: string;
    command?: CniCommand;
    cni: number;
    field?: string;
    says?: RegExp;
  }[] = [
    { name: 'not JSON', text: '{"cniVersion": ', cni: 6, says: /not JSON/ },
    { name: 'empty stdin', text: '', cni: 6, says: /stdin is empty/ },
    { name: 'a JSON array', text: '[]', cni: 7, field: '(top level)' },
    {
      name: 'cniVersion missing',
      text: JSON.stringify({ name: 'n', ipam: { type: 'ipkeeper' } }),
      cni: 1,
      field: 'cniVersion',
      says: /missing/,
    },
    {
      name: 'cniVersion unsupported',
      text: conf({ cniVersion: '9.9.9' }),
      cni: 1,
      field: 'cniVersion',
      says: /"9\.9\.9" is not supported.*0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/,
    },
    { name: 'cniVersion 0.2.0', text: conf({ cniVersion: '0.2.0' }), cni: 1, field: 'cniVersion' },
    { name: 'cniVersion a number', text: conf({ cniVersion: 1 }), cni: 7, field: 'cniVersion' },
    {
      name: 'CHECK at 0.3.1',
      text: conf({ cniVersion: '0.3.1' }),
      command: 'CHECK',
      cni: 1,
      field: 'cniVersion',
      says: /does not allow CHECK.*0\.4\.0/,
    },
    {
      name: 'GC at 1.0.0',
      text: conf({ cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] }),
      command: 'GC',
      cni: 1,
      field: 'cniVersion',
      says: /does not allow GC/,
    },
    {
      name: 'STATUS at 1.0.0',
      text: conf({ cniVersion: '1.0.0' }),
      command: 'STATUS',
      cni: 1,
      field: 'cniVersion',
      says: /does not allow STATUS/,
    },
    {
      name: 'name missing',
      text: JSON.stringify({ cniVersion: '1.1.0', ipam: { type: 'ipkeeper' } }),
      cni: 7,
      field: 'name',
      says: /^name: missing; give the network a name/,
    },
    {
      name: 'name a number',
      text: conf({ name: 5 }),
      cni: 7,
      field: 'name',
      says: /^name: 5 is not a string/,
    },
    {
      name: 'name with a slash',
      text: conf({ name: 'a/b' }),
      cni: 7,
      field: 'name',
      says: /"a\/b" is not a valid network name/,
    },
    { name: 'name starting with -', text: conf({ name: '-a' }), cni: 7, field: 'name' },
    {
      name: 'name too long',
      text: conf({ name: 'a'.repeat(254) }),
      cni: 7,
      field: 'name',
      says: /longer than 253/,
    },
    {
      name: 'ipam missing',
      text: JSON.stringify({ cniVersion: '1.1.0', name: 'n' }),
      cni: 7,
      field: 'ipam',
      says: /^ipam: missing/,
    },
    { name: 'ipam a string', text: conf({ ipam: 'ipkeeper' }), cni: 7, field: 'ipam' },
    { name: 'ipam.type missing', text: conf({ ipam: {} }), cni: 7, field: 'ipam.type' },
    { name: 'ipam.type empty', text: conf({ ipam: { type: '' } }), cni: 7, field: 'ipam.type' },
    {
      name: 'ipam.socket a number',
      text: ipam({ socket: 42 }),
      cni: 7,
      field: 'ipam.socket',
      says: /^ipam\.socket: 42 is not a path; .*\/run\/ipkeeper\/ipkeeper\.sock/,
    },
    {
      name: 'ipam.socket relative',
      text: ipam({ socket: 'run/x.sock' }),
      cni: 7,
      field: 'ipam.socket',
      says: /not an absolute path/,
    },
    {
      name: 'ipam.socket too long for sun_path',
      text: ipam({ socket: long }),
      cni: 7,
      field: 'ipam.socket',
      says: /108 bytes long; a unix socket path is at most 107 bytes/,
    },
    {
      name: 'ipam.pools a list',
      text: ipam({ pools: ['a'] }),
      cni: 7,
      field: 'ipam.pools',
      says: /is not an object/,
    },
    {
      name: 'ipam.pools unknown family',
      text: ipam({ pools: { v4: ['a'] } }),
      cni: 7,
      field: 'ipam.pools.v4',
      says: /unknown key/,
    },
    {
      name: 'ipam.pools.ipv4 a string',
      text: ipam({ pools: { ipv4: 'a' } }),
      cni: 7,
      field: 'ipam.pools.ipv4',
      says: /is not a list/,
    },
    {
      name: 'ipam.pools.ipv4[1] a number',
      text: ipam({ pools: { ipv4: ['a', 42] } }),
      cni: 7,
      field: 'ipam.pools.ipv4[1]',
      says: /^ipam\.pools\.ipv4\[1\]: 42 is not a pool name; write the name of an IPPool as a string$/,
    },
    {
      name: 'ipam.pools.ipv6[0] upper case',
      text: ipam({ pools: { ipv6: ['Pool'] } }),
      cni: 7,
      field: 'ipam.pools.ipv6[0]',
      says: /"Pool" is not a valid pool name/,
    },
    {
      name: 'ipam.pools.ipv4 repeats a pool',
      text: ipam({ pools: { ipv4: ['a', 'b', 'a'] } }),
      cni: 7,
      field: 'ipam.pools.ipv4[2]',
      says: /repeats ipam\.pools\.ipv4\[0\]/,
    },
    {
      name: 'ipam.routes an object',
      text: ipam({ routes: { dst: '0.0.0.0/0' } }),
      cni: 7,
      field: 'ipam.routes',
    },
    {
      name: 'ipam.routes[0] a string',
      text: ipam({ routes: ['0.0.0.0/0'] }),
      cni: 7,
      field: 'ipam.routes[0]',
    },
    {
      name: 'ipam.routes[0].dst missing',
      text: ipam({ routes: [{ gw: '10.0.0.1' }] }),
      cni: 7,
      field: 'ipam.routes[0].dst',
      says: /missing/,
    },
    {
      name: 'ipam.routes[1].dst without prefix',
      text: ipam({ routes: [{ dst: '0.0.0.0/0' }, { dst: '10.0.0.0' }] }),
      cni: 7,
      field: 'ipam.routes[1].dst',
      says: /no prefix length/,
    },
    {
      name: 'ipam.routes[0].dst prefix /129',
      text: ipam({ routes: [{ dst: 'fd00::/129' }] }),
      cni: 7,
      field: 'ipam.routes[0].dst',
      says: /0 to 128/,
    },
    {
      name: 'ipam.routes[0].gw bad',
      text: ipam({ routes: [{ dst: '0.0.0.0/0', gw: '10.0.0' }] }),
      cni: 7,
      field: 'ipam.routes[0].gw',
    },
    {
      name: 'ipam.routes[0].gw other family',
      text: ipam({ routes: [{ dst: '0.0.0.0/0', gw: 'fd00::1' }] }),
      cni: 7,
      field: 'ipam.routes[0].gw',
      says: /same family/,
    },
    { name: 'ipam.logFile relative', text: ipam({ logFile: 'cni.log' }), cni: 7, field: 'ipam.logFile' },
    { name: 'ipam.timeoutMs zero', text: ipam({ timeoutMs: 0 }), cni: 7, field: 'ipam.timeoutMs' },
    // Below 100 ms an ADD could give up while the agent completes it (found by the fuzz test: 1 ms).
    { name: 'ipam.timeoutMs 99', text: ipam({ timeoutMs: 99 }), cni: 7, field: 'ipam.timeoutMs' },
    { name: 'ipam.timeoutMs a string', text: ipam({ timeoutMs: '30s' }), cni: 7, field: 'ipam.timeoutMs' },
    { name: 'runtimeConfig a list', text: conf({ runtimeConfig: [] }), cni: 7, field: 'runtimeConfig' },
    {
      name: 'runtimeConfig.ips a string',
      text: conf({ runtimeConfig: { ips: '10.0.0.1' } }),
      cni: 7,
      field: 'runtimeConfig.ips',
    },
    {
      name: 'runtimeConfig.ips[1] bad',
      text: conf({ runtimeConfig: { ips: ['10.0.0.1/24', '10.0.0.256'] } }),
      cni: 7,
      field: 'runtimeConfig.ips[1]',
      says: /"10\.0\.0\.256" is not an IPv4 or IPv6 address/,
    },
    {
      name: 'runtimeConfig.ips[0] octal-looking',
      text: conf({ runtimeConfig: { ips: ['010.0.0.1'] } }),
      cni: 7,
      field: 'runtimeConfig.ips[0]',
    },
    { name: 'args a string', text: conf({ args: 'x' }), cni: 7, field: 'args' },
    { name: 'args.cni a list', text: conf({ args: { cni: [] } }), cni: 7, field: 'args.cni' },
    {
      name: 'args.cni.ips[0] a number',
      text: conf({ args: { cni: { ips: [1] } } }),
      cni: 7,
      field: 'args.cni.ips[0]',
      says: /1 is not a string/,
    },
    {
      name: 'GC without attachments',
      text: conf({}),
      command: 'GC',
      cni: 7,
      field: 'cni.dev/valid-attachments',
      says: /missing.*releases every address/,
    },
    {
      name: 'GC attachments an object',
      text: conf({ 'cni.dev/valid-attachments': {} }),
      command: 'GC',
      cni: 7,
      field: 'cni.dev/valid-attachments',
    },
    {
      name: 'GC attachment without ifname',
      text: conf({ 'cni.dev/valid-attachments': [{ containerID: 'c' }] }),
      command: 'GC',
      cni: 7,
      field: 'cni.dev/valid-attachments[0].ifname',
    },
    {
      name: 'GC draft attachment without containerID',
      text: conf({ 'cni.dev/attachments': [{ ifname: 'eth0' }] }),
      command: 'GC',
      cni: 7,
      field: 'cni.dev/attachments[0].containerID',
    },
  ];
  for (const c of cases) {
    it(`${c.name}: code ${c.cni}${c.field === undefined ? '' : ` at ${c.field}`}`, () => {
      assert.throws(
        () => parseNetConf(c.text, c.command ?? 'ADD'),
        (e: unknown) => {
          assert.ok(e instanceof IpamError, String(e));
          assert.equal(e.cniCode, c.cni, e.message);
          if (c.field !== undefined) {
            assert.equal(e.details.field, c.field);
            assert.ok(e.message.startsWith(`${c.field}: `), e.message);
            // Every message carries a fix after the "; ".
            assert.match(e.message, /; \S/);
          }
          if (c.says !== undefined) assert.match(e.message, c.says);
          return true;
        },
      );
    });
  }
});

describe('config helpers', () => {
  it('compareVersions orders x.y.z numerically', () => {
    assert.ok(compareVersions('0.3.1', '0.4.0') < 0);
    assert.ok(compareVersions('1.10.0', '1.9.0') > 0);
    assert.equal(compareVersions('1.1.0', '1.1.0'), 0);
  });
  it('replyVersion echoes a supported cniVersion, else the latest', () => {
    assert.equal(replyVersion('{"cniVersion":"0.3.1"}'), '0.3.1');
    assert.equal(replyVersion('{"cniVersion":"7.0.0"}'), '1.1.0');
    assert.equal(replyVersion('not json'), '1.1.0');
    assert.equal(replyVersion('null'), '1.1.0');
    assert.equal(replyVersion(undefined), '1.1.0');
  });
});
