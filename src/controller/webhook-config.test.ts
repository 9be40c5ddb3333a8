import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { selfSignedTls } from './certs.ts';
import { MAX_BUNDLE_CAS, mergeBundle, pemBlocks, webhookConfigObject } from './webhook-config.ts';

describe('caBundle merging', () => {
  const cas = Array.from({ length: MAX_BUNDLE_CAS + 2 }, () => selfSignedTls(['127.0.0.1']).ca);

  it('adds a CA to an empty bundle', () => {
    assert.deepEqual(pemBlocks(mergeBundle('', cas[0]!)), pemBlocks(cas[0]!));
  });

  it("keeps the other replicas' CAs and puts the new one last", () => {
    const two = mergeBundle(cas[0]!, cas[1]!);
    assert.deepEqual(pemBlocks(two), [...pemBlocks(cas[0]!), ...pemBlocks(cas[1]!)]);
  });

  it('leaves a bundle that has the CA unchanged, however it is wrapped', () => {
    const bundle = cas[0]! + cas[1]!;
    assert.equal(mergeBundle(bundle, cas[0]!), bundle);
    const rewrapped = cas[1]!.replace(/\n(?!-)/g, '');
    assert.equal(mergeBundle(bundle, rewrapped), bundle);
  });

  it(`keeps at most ${MAX_BUNDLE_CAS} CAs, dropping the oldest`, () => {
    let bundle = '';
    for (const ca of cas) bundle = mergeBundle(bundle, ca);
    const blocks = pemBlocks(bundle);
    assert.equal(blocks.length, MAX_BUNDLE_CAS);
    assert.deepEqual(
      blocks,
      cas.slice(2).flatMap((c) => pemBlocks(c)),
    );
  });
});

describe('the configuration the controller creates', () => {
  it('points at the Service path /validate, fails closed, and covers the kinds users write', () => {
    const o = webhookConfigObject(
      'ipkeeper',
      { service: { namespace: 'ipkeeper-system', name: 'ipkeeper-webhook', port: 443 } },
      'CA',
    ) as {
      webhooks: {
        clientConfig: Record<string, unknown>;
        failurePolicy: string;
        sideEffects: string;
        rules: { resources: string[] }[];
      }[];
    };
    const w = o.webhooks[0]!;
    assert.deepEqual(w.clientConfig, {
      service: { namespace: 'ipkeeper-system', name: 'ipkeeper-webhook', port: 443, path: '/validate' },
      caBundle: Buffer.from('CA').toString('base64'),
    });
    assert.equal(w.failurePolicy, 'Fail');
    assert.equal(w.sideEffects, 'None');
    assert.deepEqual(w.rules[0]!.resources, ['ippools', 'reservedips', 'subnets', 'vips', 'networkconfigs']);
  });
});
