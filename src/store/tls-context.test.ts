import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { TlsContexts, sameOptions } from './tls-context.ts';

const [CA1, CA2] = tls.rootCertificates as [string, string];

test('TlsContexts: one context while the material is the same, a new one when it changes', () => {
  const contexts = new TlsContexts();
  const a = contexts.for({ ca: Buffer.from(CA1), rejectUnauthorized: true });
  // Read again from the file for the next request: another Buffer, the same bytes.
  assert.equal(
    contexts.for({ ca: Buffer.from(CA1), rejectUnauthorized: false }),
    a,
    'same material, same context',
  );
  const b = contexts.for({ ca: Buffer.from(CA2) });
  assert.notEqual(b, a, 'a rotated CA gets a new context');
  assert.equal(contexts.for({ ca: Buffer.from(CA2) }), b);
  assert.notEqual(
    contexts.for({ ca: Buffer.from(CA2), cert: undefined, ciphers: 'HIGH' }),
    b,
    'cipher list is material',
  );
});

test('TlsContexts: material Node cannot read fails as createSecureContext does, and is not kept', () => {
  const contexts = new TlsContexts();
  const good = contexts.for({ ca: CA1 });
  assert.throws(() => contexts.for({ ca: CA1, key: 'not a key' }), /DECODER|key/i);
  assert.equal(contexts.for({ ca: CA1 }), good, 'the failed material replaced nothing');
});

test('sameOptions: every key of either side, Buffers by content', () => {
  assert.ok(sameOptions({ ca: Buffer.from('x'), n: 1 }, { n: 1, ca: Buffer.from('x') }));
  assert.ok(!sameOptions({ ca: Buffer.from('x') }, { ca: Buffer.from('y') }));
  assert.ok(!sameOptions({ ca: 'x' }, { ca: 'x', servername: 'api' }), 'a key on one side only');
  assert.ok(sameOptions({ ca: [Buffer.from('a'), 'b'] }, { ca: [Buffer.from('a'), 'b'] }));
  assert.ok(!sameOptions({ ca: [Buffer.from('a')] }, { ca: [Buffer.from('a'), 'b'] }));
  assert.ok(sameOptions({ ca: undefined }, {}), 'an undefined value is the same as none');
});
