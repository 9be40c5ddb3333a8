import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SAMPLE_CLAIM_KEY, sampleClaim } from '../../test/lib/sample-claim.ts';
import { readClaimDigest, type StoredClaimDigest } from './claim-digest.ts';
import { encodeValue } from './codec.ts';

const KEY = SAMPLE_CLAIM_KEY;
const claim = sampleClaim;

/** The digest of `text` read from the middle of a buffer that holds other bytes around it. */
function digestOf(text: string | Buffer, before = '{"x":"', after = '"}'): StoredClaimDigest | undefined {
  const body = typeof text === 'string' ? Buffer.from(text) : text;
  const buf = Buffer.concat([Buffer.from(before), body, Buffer.from(after)]);
  return readClaimDigest(buf, Buffer.byteLength(before), Buffer.byteLength(before) + body.length);
}

/** What JSON.parse gives for the digest's fields, when they have the digest's types; else undefined. */
function parsedDigest(text: string): StoredClaimDigest | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if ('apiVersion' in o || 'spec' in o) return undefined;
  const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
  if (str(o.ip) === undefined || str(o.network) === undefined || str(o.pool) === undefined) return undefined;
  if (o.family !== 4 && o.family !== 6) return undefined;
  return {
    ip: o.ip as string,
    network: o.network as string,
    family: o.family,
    pool: o.pool as string,
    cniNetwork: str(o.cniNetwork),
    containerId: str(o.containerId),
    ifName: str(o.ifName),
  };
}

describe('claim digest from stored text', () => {
  it('reads the fields of a claim as the codec stores it', () => {
    const c = claim();
    assert.deepEqual(digestOf(encodeValue(KEY, c)), {
      ip: '10.6.0.7',
      network: 'default',
      family: 4,
      pool: 'p',
      cniNetwork: 'macvlan',
      containerId: 'c'.repeat(64),
      ifName: 'eth0',
    });
    // Without the attachment's fields (a VIP's or a reserved claim's), they are undefined.
    const { cniNetwork, containerId, ifName, ...rest } = c.spec;
    assert.ok(cniNetwork && containerId && ifName);
    assert.deepEqual(digestOf(JSON.stringify({ ...rest, family: 6, ip: 'fd00::7' })), {
      ip: 'fd00::7',
      network: 'default',
      family: 6,
      pool: 'p',
      cniNetwork: undefined,
      containerId: undefined,
      ifName: undefined,
    });
  });

  it('leaves to JSON.parse whatever is not a compact claim in JSON.stringify form', () => {
    const spec = claim().spec;
    const text = JSON.stringify(spec);
    const refused: [string, string][] = [
      [
        'a whole claim (stored whole: it has labels)',
        JSON.stringify({ ...claim(), metadata: { name: 'x', labels: { a: 'b' } } }),
      ],
      ['an object with a spec key', JSON.stringify({ spec })],
      ['whitespace', JSON.stringify(spec, null, 1)],
      ['a space after a colon', text.replace('"ip":', '"ip": ')],
      ['an escaped key that spells a field', text.replace('"ip":', '"\\u0069p":')],
      ['an escape in a field read', text.replace('"pool":"p"', '"pool":"p\\u0041"')],
      ['family as a string', text.replace('"family":4', '"family":"4"')],
      ['family 46', text.replace('"family":4', '"family":46')],
      ['family 4.0', text.replace('"family":4', '"family":4.0')],
      ['family 5', text.replace('"family":4', '"family":5')],
      ['ip as a number', text.replace('"ip":"10.6.0.7"', '"ip":10')],
      ['no pool', JSON.stringify({ ...spec, pool: undefined })],
      ['no network', JSON.stringify({ ...spec, network: undefined })],
      ['an array', JSON.stringify([spec])],
      ['a string', JSON.stringify('x')],
      ['an empty object', '{}'],
      ['nothing', ''],
      ['a truncated text', text.slice(0, -1)],
      ['a text cut inside a string', text.slice(0, text.indexOf('macvlan') + 3)],
      ['trailing bytes', `${text}x`],
      ['a trailing comma', `${text.slice(0, -1)},}`],
      ['a control character in a string', text.replace('web-0', 'web\n0')],
      ['a bad escape elsewhere', text.replace('web-0', 'web\\x0')],
      ['a short \\u escape elsewhere', text.replace('web-0', 'web\\u00')],
      ['a leading zero elsewhere', text.replace('"ip"', '"n":01,"ip"')],
      ['a bare minus elsewhere', text.replace('"ip"', '"n":-,"ip"')],
      ['a bad literal elsewhere', text.replace('"ip"', '"n":nul,"ip"')],
      ['an unclosed nested object', text.replace('"ip"', '"n":{"a":1,"ip"')],
      ['a mismatched bracket', text.replace('"ip"', '"n":[1},"ip"')],
      ['nesting past the limit', text.replace('"ip"', `"n":${'['.repeat(70)}${']'.repeat(70)},"ip"`)],
    ];
    for (const [what, t] of refused) assert.equal(digestOf(t), undefined, what);
  });

  it('takes escapes, unicode and any JSON in the fields it does not read', () => {
    const spec = {
      ...claim().spec,
      owner: { kind: 'Pod', namespace: 'ns', name: 'a "quoted" \\ name\u00e9\n', uid: 'ü/€/😀' },
      labels: { deep: [[[{}]], [], null, true, false, -1.5e-7, 0, 12] },
    };
    const text = JSON.stringify(spec);
    assert.match(text, /\\"quoted\\"/);
    assert.deepEqual(digestOf(text), parsedDigest(text));
    assert.notEqual(digestOf(text), undefined);
    const escaped = text.replace('"ns"', '"n\\u0073\\/\\b\\f\\n\\r\\t"');
    assert.doesNotThrow(() => JSON.parse(escaped));
    assert.deepEqual(digestOf(escaped), parsedDigest(escaped));
    assert.notEqual(digestOf(escaped), undefined);
  });

  it('does not read past the end it is given, whatever the buffer holds after it', () => {
    const text = JSON.stringify(claim().spec);
    // Cut before the closing brace, with the brace right after the end in the buffer: refused.
    assert.equal(digestOf(text.slice(0, -1), '', '}'), undefined);
    assert.equal(digestOf(text.slice(0, -2), '', '"}'), undefined);
    assert.equal(digestOf('{"family":', '', '4}'), undefined);
    assert.equal(digestOf(`${text.slice(0, -1)},"n":1`, '', '2}'), undefined);
    assert.equal(digestOf(`${text.slice(0, -1)},"n":"a\\`, '', '""}'), undefined);
  });

  it('takes the last of a repeated key, as JSON.parse does', () => {
    const text = JSON.stringify(claim().spec).replace(
      '"ip":"10.6.0.7"',
      '"ip":"10.6.0.1","ip":"10.6.0.7","family":6,"family":4',
    );
    assert.equal(JSON.parse(text).ip, '10.6.0.7');
    assert.deepEqual(digestOf(text), parsedDigest(text));
  });

  it('decodes UTF-8 in the fields it reads, and keeps fields of the same length apart', () => {
    const spec = { ...claim().spec, network: 'réseau-é', pool: 'piscine-ü' };
    assert.deepEqual(digestOf(JSON.stringify(spec)), parsedDigest(JSON.stringify(spec)));
    // The last value read per field is reused only when the bytes match it.
    for (const network of ['net-a', 'net-b', 'net-a', 'net-é', 'net-a']) {
      assert.equal(digestOf(JSON.stringify({ ...spec, network }))?.network, network);
    }
  });

  it('matches JSON.parse for any spec JSON.stringify writes (fast-check)', () => {
    const field = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme' }),
      fc.constantFrom('default', 'eth0', 'net1', '10.6.0.7', 'fd00::1'),
    );
    const spec = fc.record(
      {
        ip: fc.oneof(field, fc.integer(), fc.constant(null)),
        network: field,
        family: fc.oneof(fc.constantFrom(4, 6), fc.integer(), fc.double(), fc.constant('4')),
        pool: field,
        cniNetwork: field,
        containerId: field,
        ifName: field,
        owner: fc.jsonValue(),
        extra: fc.jsonValue(),
        spec: fc.jsonValue(),
      },
      { requiredKeys: ['ip', 'network', 'pool'] },
    );
    fc.assert(
      fc.property(spec, fc.string(), fc.string(), (s, before, after) => {
        const text = JSON.stringify(s);
        const got = digestOf(text, before, after);
        const want = parsedDigest(text);
        // Everything the digest reads matches the parse; and a claim the parse can index without
        // an escape in its fields is read, not left to the parse.
        if (got !== undefined) assert.deepEqual(got, want);
        else if (want !== undefined) {
          const plain = [
            want.ip,
            want.network,
            want.pool,
            want.cniNetwork,
            want.containerId,
            want.ifName,
          ].every((x) => x === undefined || JSON.stringify(x) === `"${x}"`);
          assert.ok(!plain, `a plain claim was left to JSON.parse: ${text}`);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('never takes a text JSON.parse refuses (fast-check: cuts and byte changes of valid texts)', () => {
    const base = fc.record({
      ip: fc.constantFrom('10.6.0.7', 'fd00::1'),
      network: fc.constantFrom('default', 'n'),
      family: fc.constantFrom(4, 6),
      pool: fc.constantFrom('p', 'pool-a'),
      owner: fc.jsonValue({ maxDepth: 3 }),
      n: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
    });
    const edit = fc.record({
      at: fc.nat(),
      byte: fc.constantFrom(
        ...'{}[]",:\\-+.0123456789eEtfnul \n\t'.split('').map((c) => c.charCodeAt(0)),
        0x80,
        0x01,
      ),
      kind: fc.constantFrom('replace', 'insert', 'delete', 'cut'),
    });
    fc.assert(
      fc.property(base, fc.array(edit, { minLength: 1, maxLength: 3 }), (s, edits) => {
        let b = Buffer.from(JSON.stringify(s));
        for (const e of edits) {
          const at = b.length === 0 ? 0 : e.at % b.length;
          if (e.kind === 'replace' && b.length > 0) b[at] = e.byte;
          else if (e.kind === 'insert')
            b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
          else if (e.kind === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
          else b = b.subarray(0, at);
        }
        const got = digestOf(b, '', '}]"');
        if (got === undefined) return;
        const text = b.toString('utf8');
        assert.doesNotThrow(() => JSON.parse(text), `taken but not JSON: ${text}`);
        assert.deepEqual(got, parsedDigest(text));
      }),
      { numRuns: 2000 },
    );
  });
});
