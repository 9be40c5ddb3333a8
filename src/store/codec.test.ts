import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { API_VERSION } from '../api/kinds.ts';
import { SAMPLE_CLAIM_KEY, sampleClaim } from '../../test/lib/sample-claim.ts';
import { decodeValue, encodeValue } from './codec.ts';
import { StoreError } from './store.ts';

const KEY = SAMPLE_CLAIM_KEY;
const claim = sampleClaim;

describe('store codec', () => {
  it('stores a claim as the engine writes it as its spec alone, and reads the whole claim back', () => {
    const c = claim();
    const text = encodeValue(KEY, c);
    assert.deepEqual(JSON.parse(text), c.spec);
    assert.ok(text.length < JSON.stringify(c).length - 80);
    assert.deepEqual(decodeValue(KEY, text), c);
  });

  it('stores whole a claim whose envelope says more than its key: labels, another name, extra fields', () => {
    const labelled = { ...claim(), metadata: { name: 'default.10.6.0.7', labels: { a: 'b' } } };
    const renamed = { ...claim(), metadata: { name: 'other' } };
    const extra = { ...claim(), status: { x: 1 } };
    const otherKind = { ...claim(), kind: 'Other' };
    const otherVersion = { ...claim(), apiVersion: 'ipkeeper.io/v2' };
    const oddSpec = { ...claim(), spec: { ...claim().spec, spec: 1 } };
    for (const v of [labelled, renamed, extra, otherKind, otherVersion, oddSpec]) {
      const text = encodeValue(KEY, v);
      assert.equal(text, JSON.stringify(v));
      assert.deepEqual(decodeValue(KEY, text), v);
    }
  });

  it('reads a claim stored whole (as before this codec) as it is', () => {
    const c = claim();
    assert.deepEqual(decodeValue(KEY, JSON.stringify(c)), c);
  });

  it('leaves every other key alone, objects shaped like a spec included', () => {
    const spec = claim().spec;
    assert.equal(encodeValue('ippools/p', spec), JSON.stringify(spec));
    assert.deepEqual(decodeValue('endpoints/ns/web-0', JSON.stringify(spec)), spec);
  });

  it('refuses an object under ipclaims/ that would read back as a claim, naming the key', () => {
    assert.throws(
      () => encodeValue(KEY, { ip: '10.6.0.7' }),
      (e: unknown) =>
        e instanceof StoreError && !e.retryable && e.message.includes(KEY) && /IPClaim/.test(e.message),
    );
  });

  it('refuses what JSON cannot carry, naming the key', () => {
    assert.throws(() => encodeValue('ippools/p', undefined), /"ippools\/p" is undefined/);
    assert.throws(() => encodeValue('ippools/p', { n: 1n }), /cannot be written as JSON/);
  });

  it('property: whatever it accepts under any key, it reads back equal', () => {
    const keys = fc.constantFrom(KEY, 'ipclaims/n.10.0.0.1', 'ippools/p', 'endpoints/ns/a');
    const values = fc.oneof(
      fc.jsonValue(),
      fc.constant(claim()),
      fc.record({
        apiVersion: fc.constant(API_VERSION),
        kind: fc.constant('IPClaim'),
        metadata: fc.jsonValue(),
        spec: fc.jsonValue(),
      }),
    );
    fc.assert(
      fc.property(keys, values, (key, value) => {
        let text: string;
        try {
          text = encodeValue(key, value);
        } catch (e) {
          assert.ok(e instanceof StoreError, String(e));
          return;
        }
        // JSON normalizes -0 to 0; compare with what JSON itself gives back.
        assert.deepEqual(decodeValue(key, text), JSON.parse(JSON.stringify(value)));
      }),
    );
  });
});
