import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import { API_VERSION, type IPClaim, type IPPool } from '../api/kinds.ts';
import { admit, reviewResponse, parseListen, startWebhook, type AdmissionRequest } from './webhook.ts';
import { selfSignedTls } from './certs.ts';
import https from 'node:https';

const pool = (name: string, spec: IPPool['spec']): IPPool => ({
  apiVersion: API_VERSION,
  kind: 'IPPool',
  metadata: { name },
  spec,
});

const claim = (pool: string, ip: string, owner: string): IPClaim => ({
  apiVersion: API_VERSION,
  kind: 'IPClaim',
  metadata: { name: `default.${ip.replaceAll('.', '-')}` },
  spec: {
    network: 'default',
    ip,
    family: 4,
    pool,
    owner: { kind: 'Pod', namespace: 'ns', name: owner },
    createdAt: '2026-01-01T00:00:00Z',
  },
});

const vipObj = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'ipkeeper.io/v1alpha1',
  kind: 'VIP',
  metadata: { name },
  spec,
});

const review = (operation: string, object: unknown, oldObject?: unknown): AdmissionRequest => ({
  uid: 'u-1',
  kind: { group: 'ipkeeper.io', version: 'v1alpha1', kind: (object as { kind?: string }).kind ?? 'IPPool' },
  operation,
  name: (object as { metadata?: { name?: string } }).metadata?.name,
  object,
  ...(oldObject ? { oldObject } : {}),
});

describe('admission decisions', () => {
  const store = new MemoryStore();
  const a = pool('pool-a', { subnet: '10.6.0.0/24', ips: ['10.6.0.10-10.6.0.20'], gateway: '10.6.0.1' });
  before(async () => {
    await store.create('ippools/pool-a', a);
    await store.create('ippools/pool-v6', pool('pool-v6', { subnet: 'fd00::/64' }));
    await store.create('ippools/other-net', pool('other-net', { subnet: '10.9.0.0/24', network: 'blue' }));
    await store.create('ipclaims/default.10-6-0-12', claim('pool-a', '10.6.0.12', 'web-0'));
    await store.create('ipclaims/default.10-6-0-15', claim('pool-a', '10.6.0.15', 'web-1'));
  });

  const cases: {
    name: string;
    req: () => AdmissionRequest;
    allowed: boolean;
    code?: number;
    message?: RegExp;
  }[] = [
    {
      name: 'a good pool is admitted',
      req: () => review('CREATE', pool('pool-b', { subnet: '10.6.0.0/24', ips: ['10.6.0.30-10.6.0.40'] })),
      allowed: true,
    },
    {
      name: 'an overlapping pool in the same network is refused, naming the other pool and the addresses',
      req: () => review('CREATE', pool('pool-c', { subnet: '10.6.0.0/24', ips: ['10.6.0.18-10.6.0.25'] })),
      allowed: false,
      code: 403,
      message:
        /IPPool "pool-c": spec\.ips overlaps IPPool "pool-a" in network "default" at 10\.6\.0\.18-10\.6\.0\.20; give each pool its own addresses/,
    },
    {
      name: 'the same addresses in another network are fine',
      req: () =>
        review(
          'CREATE',
          pool('pool-d', { subnet: '10.6.0.0/24', ips: ['10.6.0.10-10.6.0.20'], network: 'red' }),
        ),
      allowed: true,
    },
    {
      name: 'overlap is checked per network: another pool in "blue" collides',
      req: () => review('CREATE', pool('pool-e', { subnet: '10.9.0.0/25', network: 'blue' })),
      allowed: false,
      code: 403,
      message: /overlaps IPPool "other-net" in network "blue"/,
    },
    {
      name: 'an address outside the subnet is refused with its field path',
      req: () => review('CREATE', pool('pool-f', { subnet: '10.7.0.0/24', ips: ['10.7.0.10', '10.8.0.1'] })),
      allowed: false,
      code: 400,
      message:
        /IPPool "pool-f" is invalid: spec\.ips\[1\]: "10\.8\.0\.1" is outside the subnet; use addresses inside spec\.subnet or widen it/,
    },
    {
      name: 'a schema error names the field',
      req: () => review('CREATE', pool('pool-g', { subnet: '10.7.0.0/24', vlan: 5000 })),
      allowed: false,
      code: 400,
      message: /spec\.vlan: 5000/,
    },
    {
      name: 'a subnet change is refused as immutable',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, subnet: '10.6.0.0/16' }), a),
      allowed: false,
      code: 403,
      message:
        /IPPool "pool-a": spec\.subnet is immutable: "10\.6\.0\.0\/24" cannot become "10\.6\.0\.0\/16"; create a new IPPool/,
    },
    {
      name: 'a network change is refused as immutable, even from the default',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, network: 'green' }), a),
      allowed: false,
      code: 403,
      message: /spec\.network is immutable: "default" cannot become "green"/,
    },
    {
      name: 'narrowing spec.ips past an address in use is refused, naming the holder',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, ips: ['10.6.0.10-10.6.0.14'] }), a),
      allowed: false,
      code: 403,
      message:
        /takes 1 address\(es\) in use out of the pool: spec\.ips removes 10\.6\.0\.15, held by Pod ns\/web-1 \(IPClaim default\.10-6-0-15\); release them first/,
    },
    {
      name: 'excluding an address in use is refused, naming spec.excludeIPs',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, excludeIPs: ['10.6.0.12'] }), a),
      allowed: false,
      code: 403,
      message: /spec\.excludeIPs removes 10\.6\.0\.12, held by Pod ns\/web-0/,
    },
    {
      name: 'making an address in use the gateway is refused, naming spec.gateway',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, gateway: '10.6.0.15' }), a),
      allowed: false,
      code: 403,
      message: /spec\.gateway removes 10\.6\.0\.15/,
    },
    {
      name: 'removing free addresses is fine',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, ips: ['10.6.0.12-10.6.0.15'] }), a),
      allowed: true,
    },
    {
      name: 'growing a pool is fine',
      req: () => review('UPDATE', pool('pool-a', { ...a.spec, ips: ['10.6.0.10-10.6.0.29'] }), a),
      allowed: true,
    },
    {
      name: 'an UPDATE that keeps the spec (labels, finalizers) is always allowed',
      req: () =>
        review(
          'UPDATE',
          {
            ...a,
            metadata: {
              ...a.metadata,
              finalizers: ['ipkeeper.io/pool-in-use'],
              deletionTimestamp: '2026-01-01T00:00:00Z',
            },
          },
          a,
        ),
      allowed: true,
    },
    {
      name: 'a ReservedIP with a bad address is refused',
      req: () =>
        review('CREATE', {
          apiVersion: API_VERSION,
          kind: 'ReservedIP',
          metadata: { name: 'r' },
          spec: { ips: ['010.0.0.1'] },
        }),
      allowed: false,
      code: 400,
      message: /ReservedIP "r" is invalid: spec\.ips\[0\]/,
    },
    {
      name: 'an IPClaim missing its owner is refused',
      req: () => {
        const c = claim('pool-a', '10.6.0.11', 'x') as unknown as { spec: Record<string, unknown> };
        delete c.spec.owner;
        return review('CREATE', c);
      },
      allowed: false,
      code: 400,
      message: /spec\.owner is required/,
    },
    {
      name: 'a VIP from a Subnet is admitted',
      req: () => review('CREATE', vipObj('lb', { subnet: 'lb-net', v4ip: '10.6.0.30' })),
      allowed: true,
    },
    {
      name: 'a VIP naming neither a pool nor a Subnet is refused naming both fields',
      req: () => review('CREATE', vipObj('lb', { type: '' })),
      allowed: false,
      code: 400,
      message: /VIP "lb" is invalid: spec\.pool: neither spec\.pool nor spec\.subnet is set/,
    },
    {
      name: 'a VIP naming both a pool and a Subnet is refused',
      req: () => review('CREATE', vipObj('lb', { pool: 'pool-a', subnet: 'lb-net' })),
      allowed: false,
      code: 400,
      message: /spec\.subnet: spec\.pool "pool-a" and spec\.subnet "lb-net" are both set/,
    },
    {
      name: 'a VIP updated from a pool to both is refused',
      req: () =>
        review(
          'UPDATE',
          vipObj('lb', { pool: 'pool-a', subnet: 'lb-net' }),
          vipObj('lb', { pool: 'pool-a' }),
        ),
      allowed: false,
      code: 400,
      message: /both set/,
    },
    {
      name: 'other groups and DELETE pass untouched',
      req: () => ({
        ...review('DELETE', a),
        kind: { group: 'ipkeeper.io', version: 'v1alpha1', kind: 'IPPool' },
      }),
      allowed: true,
    },
    {
      name: 'the status subresource is not validated',
      req: () => ({ ...review('UPDATE', { ...a, spec: { subnet: 'nonsense' } }, a), subResource: 'status' }),
      allowed: true,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const d = await admit(c.req(), store);
      assert.equal(d.allowed, c.allowed, d.message);
      if (c.code !== undefined) assert.equal(d.code, c.code);
      if (c.message) assert.match(d.message ?? '', c.message);
    });
  }

  it('a store failure denies (fails closed) with a 500 that says to retry', async () => {
    const broken = new MemoryStore();
    await broken.close();
    const d = await admit(review('CREATE', pool('pool-x', { subnet: '10.20.0.0/24' })), broken);
    assert.equal(d.allowed, false);
    assert.equal(d.code, 500);
    assert.match(d.message ?? '', /could not be checked .*; retry/);
  });

  it('the response echoes the apiVersion and uid of the request', () => {
    assert.deepEqual(reviewResponse('admission.k8s.io/v1beta1', 'abc', { allowed: true }), {
      apiVersion: 'admission.k8s.io/v1beta1',
      kind: 'AdmissionReview',
      response: { uid: 'abc', allowed: true },
    });
    const denied = reviewResponse('admission.k8s.io/v1', 'abc', {
      allowed: false,
      code: 403,
      reason: 'Forbidden',
      message: 'no',
    }) as {
      response: { status: unknown };
    };
    assert.deepEqual(denied.response.status, {
      status: 'Failure',
      code: 403,
      reason: 'Forbidden',
      message: 'no',
    });
  });

  it('--webhook-listen must be host:port', () => {
    assert.deepEqual(parseListen('--webhook-listen', '0.0.0.0:9443'), { host: '0.0.0.0', port: 9443 });
    assert.deepEqual(parseListen('--webhook-listen', '[::1]:9443'), { host: '::1', port: 9443 });
    assert.throws(() => parseListen('--webhook-listen', '9443'), /--webhook-listen "9443" must be host:port/);
    assert.throws(() => parseListen('--webhook-listen', 'h:70000'), /must be host:port/);
  });

  it('serves AdmissionReviews over TLS at POST /validate', async () => {
    const tls = selfSignedTls(['127.0.0.1']);
    const log = { debug() {}, info() {}, warn() {}, error() {} };
    const w = await startWebhook({ listen: '127.0.0.1:0', tls, store, log });
    try {
      const post = (path: string, body: unknown) =>
        new Promise<{ status: number; body: any }>((resolve, reject) => {
          const payload = JSON.stringify(body);
          const r = https.request(
            {
              host: '127.0.0.1',
              port: w.port,
              path,
              method: 'POST',
              ca: tls.ca,
              headers: { 'Content-Type': 'application/json' },
            },
            (res) => {
              let s = '';
              res.on('data', (c) => (s += c));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(s) }));
            },
          );
          r.on('error', reject);
          r.end(payload);
        });
      const bad = pool('pool-h', { subnet: '10.6.0.0/24', ips: ['10.6.0.11'] });
      const r = await post('/validate', {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: review('CREATE', bad),
      });
      assert.equal(r.status, 200);
      assert.equal(r.body.apiVersion, 'admission.k8s.io/v1');
      assert.equal(r.body.response.uid, 'u-1');
      assert.equal(r.body.response.allowed, false);
      assert.match(r.body.response.status.message, /overlaps IPPool "pool-a"/);
      const junk = await post('/validate', { hello: 1 });
      assert.equal(junk.status, 400);
      assert.match(junk.body.error, /no request\.uid/);
    } finally {
      await w.close();
    }
  });
});
