import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IpamError } from '../errors.ts';
import { API_VERSION, resolveKind } from './kinds.ts';
import { objectErrors, validateObject } from './validate.ts';
import { parseManifests } from './manifests.ts';

const pool = (spec: Record<string, unknown>, name = 'p') => ({
  apiVersion: API_VERSION,
  kind: 'IPPool',
  metadata: { name },
  spec,
});

describe('validate: IPPool', () => {
  const bad: { name: string; obj: unknown; field: string; says: RegExp }[] = [
    { name: 'missing subnet', obj: pool({}), field: 'spec.subnet', says: /required/ },
    {
      name: 'octal-looking address',
      obj: pool({ subnet: '10.0.0.0/8', ips: ['010.0.0.1'] }),
      field: 'spec.ips[0]',
      says: /010\.0\.0\.1/,
    },
    {
      name: 'address outside the subnet',
      obj: pool({ subnet: '10.6.0.0/16', ips: ['10.7.0.1'] }),
      field: 'spec.ips[0]',
      says: /outside the subnet/,
    },
    {
      name: 'reversed range',
      obj: pool({ subnet: '10.6.0.0/16', ips: ['10.6.0.9-10.6.0.1'] }),
      field: 'spec.ips[0]',
      says: /10\.6\.0\.9/,
    },
    {
      name: 'mixed family',
      obj: pool({ subnet: '10.6.0.0/16', ips: ['fd00::1'] }),
      field: 'spec.ips[0]',
      says: /IPv6 but the subnet is IPv4/,
    },
    {
      name: 'host bits in subnet',
      obj: pool({ subnet: '10.6.1.0/16' }),
      field: 'spec.subnet',
      says: /10\.6\.0\.0\/16/,
    },
    {
      name: 'gateway off the subnet',
      obj: pool({ subnet: '10.6.0.0/16', gateway: '10.9.0.1' }),
      field: 'spec.gateway',
      says: /not inside subnet/,
    },
    {
      name: 'vlan out of range',
      obj: pool({ subnet: '10.6.0.0/16', vlan: 4095 }),
      field: 'spec.vlan',
      says: /4094/,
    },
    {
      name: 'unknown field',
      obj: pool({ subnet: '10.6.0.0/16', ipz: [] }),
      field: 'spec.ipz',
      says: /unknown field/,
    },
    {
      name: 'bad name',
      obj: pool({ subnet: '10.6.0.0/16' }, 'Bad_Name'),
      field: 'metadata.name',
      says: /DNS-1123/,
    },
    {
      name: 'route family mismatch',
      obj: pool({ subnet: '10.6.0.0/16', routes: [{ dst: '10.7.0.0/16', gw: 'fd00::1' }] }),
      field: 'spec.routes[0].gw',
      says: /IPv6/,
    },
    {
      name: 'excludeIPs garbage',
      obj: pool({ subnet: '10.6.0.0/16', excludeIPs: ['ten'] }),
      field: 'spec.excludeIPs[0]',
      says: /ten/,
    },
    {
      name: 'wrong apiVersion',
      obj: { ...pool({ subnet: '10.6.0.0/16' }), apiVersion: 'v1' },
      field: 'apiVersion',
      says: /ipkeeper\.io\/v1alpha1/,
    },
  ];
  for (const c of bad) {
    it(`rejects ${c.name}, naming ${c.field}`, () => {
      const errs = objectErrors(c.obj);
      const hit = errs.find((e) => e.field === c.field);
      assert.ok(hit, `no error for ${c.field}: ${JSON.stringify(errs)}`);
      assert.match(hit.message, c.says);
      assert.throws(
        () => validateObject(c.obj),
        (e: unknown) => e instanceof IpamError && e.code === 'INVALID_OBJECT',
      );
    });
  }

  it('accepts the seed pools, IPv6 and routes', () => {
    for (const o of [
      pool({ subnet: '10.6.0.0/16', ips: ['10.6.168.131-10.6.168.133'] }),
      pool({ subnet: 'fd00:6::/64', ips: ['fd00:6::10-fd00:6::20'], gateway: 'fd00:6::1' }),
      pool({
        subnet: '10.6.0.0/16',
        gateway: '10.6.0.1',
        routes: [{ dst: '10.7.0.0/16' }],
        vlan: 0,
        default: true,
      }),
    ]) {
      assert.deepEqual(objectErrors(o), []);
    }
  });

  it('never throws anything but IpamError on arbitrary input', () => {
    fc.assert(
      fc.property(fc.anything(), fc.anything(), (spec, meta) => {
        const o = { apiVersion: API_VERSION, kind: 'IPPool', metadata: meta, spec };
        try {
          validateObject(o);
        } catch (e) {
          assert.ok(e instanceof IpamError, String(e));
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('convert: Spiderpool manifests from seed 000', () => {
  const seed = `
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderReservedIP
metadata:
  name: test-reservedip
spec:
  ips:
  - 10.6.168.131-10.6.168.132
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata:
  name: test-ippool
spec:
  subnet: 10.6.0.0/16
  ips:
  - 10.6.168.131-10.6.168.133
`;
  it('converts SpiderReservedIP and SpiderIPPool to valid objects of ours', () => {
    const out = parseManifests(seed);
    assert.equal(out.length, 2);
    assert.deepEqual(
      out.map((c) => [c.object.kind, c.object.metadata.name]),
      [
        ['ReservedIP', 'test-reservedip'],
        ['IPPool', 'test-ippool'],
      ],
    );
    for (const c of out) {
      assert.equal(c.object.apiVersion, API_VERSION);
      assert.match(c.from ?? '', /spiderpool\.spidernet\.io/);
      validateObject(c.object);
    }
    assert.deepEqual(out[1]?.object.spec, { subnet: '10.6.0.0/16', ips: ['10.6.168.131-10.6.168.133'] });
  });

  it('refuses an unknown field and an unknown kind, naming them', () => {
    assert.throws(
      () =>
        parseManifests(
          'apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: a}\nspec: {subnet: 10.0.0.0/8, frobnicate: 1}',
        ),
      /spec\.frobnicate/,
    );
    assert.throws(
      () => parseManifests('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}'),
      /ConfigMap.*accepted/,
    );
    assert.throws(
      () => parseManifests('a: [1, 2'),
      (e: unknown) => e instanceof IpamError && e.code === 'INVALID_OBJECT',
    );
  });

  it('flattens Lists and skips empty documents', () => {
    const out = parseManifests(
      `---\n---\n{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"${API_VERSION}","kind":"ReservedIP","metadata":{"name":"r"},"spec":{"ips":["10.0.0.1"]}}]}`,
    );
    assert.equal(out.length, 1);
  });
});

describe('kinds: names a user may type', () => {
  for (const [word, kind] of [
    ['ippool', 'IPPool'],
    ['ippools', 'IPPool'],
    ['IPPool', 'IPPool'],
    ['ipp', 'IPPool'],
    ['reservedip', 'ReservedIP'],
    ['sr', 'ReservedIP'],
    ['ipclaims', 'IPClaim'],
  ] as const) {
    it(`${word} -> ${kind}`, () => assert.equal(resolveKind(word)?.kind, kind));
  }
  it('unknown -> undefined', () => assert.equal(resolveKind('pods'), undefined));
});
