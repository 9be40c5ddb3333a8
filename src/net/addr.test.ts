import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Addr, Family } from './addr.ts';
import {
  NetError,
  addrKey,
  formatAddr,
  formatValue,
  maxValue,
  parseAddr,
  parseAddrKey,
  tryParseAddr,
} from './addr.ts';

const MAX6 = (1n << 128n) - 1n;

test('parseAddr: boundaries and forms', () => {
  const cases: { name: string; input: string; family: Family; value: bigint }[] = [
    { name: 'IPv4 zero', input: '0.0.0.0', family: 4, value: 0n },
    { name: 'IPv4 last', input: '255.255.255.255', family: 4, value: 0xffffffffn },
    { name: 'IPv4 byte carry, before', input: '10.0.0.255', family: 4, value: 0x0a0000ffn },
    { name: 'IPv4 byte carry, after', input: '10.0.1.0', family: 4, value: 0x0a000100n },
    { name: 'IPv4 seed address', input: '10.6.168.133', family: 4, value: 0x0a06a885n },
    { name: 'IPv6 unspecified', input: '::', family: 6, value: 0n },
    { name: 'IPv6 loopback', input: '::1', family: 6, value: 1n },
    { name: 'IPv6 last', input: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 6, value: MAX6 },
    { name: 'IPv6 upper case', input: 'FD00::A', family: 6, value: (0xfd00n << 112n) | 0xan },
    {
      name: 'IPv6 leading zeros in groups',
      input: 'fd00:0000::000a',
      family: 6,
      value: (0xfd00n << 112n) | 0xan,
    },
    {
      name: 'IPv6 trailing ::',
      input: '1:2:3:4:5:6:7::',
      family: 6,
      value: 0x0001000200030004000500060007_0000n,
    },
    {
      name: 'IPv6 :: for one group',
      input: '1::3:4:5:6:7:8',
      family: 6,
      value: 0x0001_0000_0003_0004_0005_0006_0007_0008n,
    },
    { name: 'IPv4-mapped stays IPv6', input: '::ffff:1.2.3.4', family: 6, value: 0xffff_0102_0304n },
    { name: 'IPv4 tail, full form', input: '0:0:0:0:0:ffff:10.0.0.1', family: 6, value: 0xffff_0a00_0001n },
  ];
  for (const c of cases) {
    const a = parseAddr(c.input);
    assert.deepEqual({ family: a.family, value: a.value }, { family: c.family, value: c.value }, c.name);
    assert.deepEqual(tryParseAddr(c.input), a, c.name);
  }
});

test('parseAddr: rejects with a message naming the value and the fix', () => {
  const cases: { name: string; input: string; message: RegExp }[] = [
    {
      name: 'octal-looking',
      input: '010.0.0.1',
      message: /"010\.0\.0\.1".*leading zeros.*write 10\.0\.0\.1/,
    },
    { name: 'leading zero last octet', input: '1.2.3.04', message: /leading zeros.*write 1\.2\.3\.4/ },
    { name: 'leading zero in IPv4 tail', input: '::ffff:010.0.0.1', message: /write ::ffff:10\.0\.0\.1/ },
    { name: 'three parts', input: '1.2.3', message: /"1\.2\.3".*four/ },
    { name: 'octet too big', input: '256.0.0.1', message: /octet 256 is above 255/ },
    { name: 'leading space', input: ' 1.2.3.4', message: /whitespace.*write 1\.2\.3\.4/ },
    { name: 'trailing newline', input: '1.2.3.4\n', message: /whitespace/ },
    { name: 'zone id', input: 'fe80::1%eth0', message: /zone ids.*write fe80::1/ },
    { name: 'prefix', input: '10.0.0.0/24', message: /not a prefix/ },
    { name: 'brackets', input: '[fd00::1]', message: /brackets.*write fd00::1/ },
    { name: 'empty', input: '', message: /empty/ },
    { name: 'nonsense', input: 'pod-a', message: /"pod-a": not an IPv4 or IPv6 address/ },
    { name: 'too many groups', input: '1:2:3:4:5:6:7:8:9', message: /not an IPv4 or IPv6/ },
    { name: 'two ::', input: '1::2::3', message: /not an IPv4 or IPv6/ },
    { name: 'five hex digits', input: '00001::', message: /not an IPv4 or IPv6/ },
  ];
  for (const c of cases) {
    assert.throws(
      () => parseAddr(c.input),
      (e: unknown) => e instanceof NetError && c.message.test(e.message),
      c.name,
    );
    assert.equal(tryParseAddr(c.input), undefined, c.name);
  }
  assert.throws(() => parseAddr(42 as unknown as string), NetError);
});

test('formatAddr: canonical text (RFC 5952 for IPv6)', () => {
  const cases: { name: string; input: string; want: string }[] = [
    { name: 'IPv4 zero', input: '0.0.0.0', want: '0.0.0.0' },
    { name: 'IPv4 last', input: '255.255.255.255', want: '255.255.255.255' },
    { name: 'unspecified', input: '0:0:0:0:0:0:0:0', want: '::' },
    { name: 'loopback', input: '0:0:0:0:0:0:0:1', want: '::1' },
    { name: 'trailing zeros', input: 'fd00:0:0:0:0:0:0:0', want: 'fd00::' },
    { name: 'lower case', input: 'FD00::ABCD', want: 'fd00::abcd' },
    { name: 'no leading zeros in groups', input: '2001:0db8::0001', want: '2001:db8::1' },
    { name: 'single zero group not compressed', input: '2001:db8:0:1:1:1:1:1', want: '2001:db8:0:1:1:1:1:1' },
    { name: ':: for one group is expanded', input: '2001:db8::1:1:1:1:1', want: '2001:db8:0:1:1:1:1:1' },
    { name: 'longest run wins', input: '2001:0:0:1:0:0:0:1', want: '2001:0:0:1::1' },
    { name: 'first run wins a tie', input: '2001:db8:0:0:1:0:0:1', want: '2001:db8::1:0:0:1' },
    { name: 'no zeros', input: '1:2:3:4:5:6:7:8', want: '1:2:3:4:5:6:7:8' },
    {
      name: 'all ones',
      input: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      want: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
    },
    { name: 'IPv4-mapped keeps dotted tail', input: '::ffff:1.2.3.4', want: '::ffff:1.2.3.4' },
    { name: 'IPv4-mapped from hex', input: '::ffff:0a00:0001', want: '::ffff:10.0.0.1' },
    { name: 'IPv4-compatible is plain hex', input: '::1.2.3.4', want: '::102:304' },
    { name: 'ffff elsewhere is not mapped', input: '::1:ffff:1.2.3.4', want: '::1:ffff:102:304' },
  ];
  for (const c of cases) assert.equal(formatAddr(parseAddr(c.input)), c.want, c.name);
});

test('formatValue: rejects values outside the family', () => {
  assert.equal(formatValue(4, maxValue(4)), '255.255.255.255');
  assert.throws(() => formatValue(4, maxValue(4) + 1n), /not an IPv4 address/);
  assert.throws(() => formatValue(6, -1n), /not an IPv6 address/);
  assert.equal(maxValue(6), MAX6);
});

test('addrKey / parseAddrKey: table', () => {
  const cases: { input: string; key: string }[] = [
    { input: '10.6.168.133', key: '10.6.168.133' },
    { input: '0.0.0.0', key: '0.0.0.0' },
    { input: 'fd00::5', key: 'fd00-0000-0000-0000-0000-0000-0000-0005' },
    { input: '::', key: '0000-0000-0000-0000-0000-0000-0000-0000' },
    { input: '::ffff:1.2.3.4', key: '0000-0000-0000-0000-0000-ffff-0102-0304' },
  ];
  for (const c of cases) {
    const a = parseAddr(c.input);
    assert.equal(addrKey(a), c.key, c.input);
    assert.deepEqual(parseAddrKey(c.key), a, c.input);
    assert.match(c.key, /^[a-z0-9.-]+$/, 'key is safe in object names');
  }
  for (const bad of [
    'FD00-0000-0000-0000-0000-0000-0000-0005',
    'fd00::5',
    'fd00-0-0-0-0-0-0-5',
    '010.0.0.1',
    '',
  ]) {
    assert.throws(() => parseAddrKey(bad), NetError, bad);
  }
});

/** IPv6 values with long zero runs as likely as not, so compression paths get exercised. */
const v6Value = fc
  .array(fc.oneof(fc.constant(0n), fc.constant(0xffffn), fc.bigInt(0n, 0xffffn)), {
    minLength: 8,
    maxLength: 8,
  })
  .map((gs) => gs.reduce((v, g) => (v << 16n) | g, 0n));
const anyAddr: fc.Arbitrary<Addr> = fc.oneof(
  fc.bigInt(0n, maxValue(4)).map((value) => ({ family: 4 as const, value })),
  v6Value.map((value) => ({ family: 6 as const, value })),
  fc.bigInt(0n, MAX6).map((value) => ({ family: 6 as const, value })),
);

test('round trip: parseAddr(formatAddr(a)) == a, and addrKey', () => {
  fc.assert(
    fc.property(anyAddr, (a) => {
      const s = formatAddr(a);
      assert.deepEqual({ ...parseAddr(s) }, a);
      assert.equal(formatAddr(parseAddr(s)), s, 'canonical text is a fixed point');
      assert.deepEqual({ ...parseAddrKey(addrKey(a)) }, a);
    }),
    { numRuns: 2000 },
  );
});

test('IPv6 formatting agrees with the WHATWG URL serializer (same rules as RFC 5952)', () => {
  fc.assert(
    fc.property(v6Value, (value) => {
      fc.pre(value >> 32n !== 0xffffn); // URL writes IPv4-mapped addresses in hex; we keep the dotted tail
      const s = formatValue(6, value);
      assert.equal(`[${s}]`, new URL(`http://[${s}]/`).hostname);
    }),
    { numRuns: 1000 },
  );
});

test('any valid long form parses to the same value', () => {
  fc.assert(
    fc.property(v6Value, fc.boolean(), (value, upper) => {
      const full = value.toString(16).padStart(32, '0').match(/.{4}/g)!.join(':');
      const text = upper ? full.toUpperCase() : full;
      assert.equal(parseAddr(text).value, value);
    }),
    { numRuns: 500 },
  );
});

test('every text form of an IPv6 address parses to its value', () => {
  // Any run of zero groups (even one) as '::', any case, leading zeros, the last 32 bits dotted.
  fc.assert(
    fc.property(
      v6Value,
      fc.nat(),
      fc.boolean(),
      fc.array(fc.nat(3), { minLength: 8, maxLength: 8 }),
      fc.boolean(),
      (value, pick, upper, pads, dotted) => {
        const groups = value
          .toString(16)
          .padStart(32, '0')
          .match(/.{4}/g)!
          .map((h) => parseInt(h, 16));
        const zeroRuns: [number, number][] = [];
        for (let i = 0; i < 8; i++) {
          for (let j = i; j < 8 && groups[j] === 0; j++) zeroRuns.push([i, j + 1]);
        }
        const gap = zeroRuns.length > 0 && pick % 3 !== 0 ? zeroRuns[pick % zeroRuns.length] : undefined;
        const tail = dotted && (gap === undefined || gap[1] <= 6);
        const text = (i: number): string => {
          const h = groups[i]!.toString(16);
          return (upper ? h.toUpperCase() : h).padStart(Math.min(4, h.length + pads[i]!), '0');
        };
        const part = (from: number, to: number): string[] => {
          const out: string[] = [];
          for (let i = from; i < to; i++) {
            if (tail && i === 6) {
              const v4 = (groups[6]! << 16) | groups[7]!;
              out.push(`${v4 >>> 24}.${(v4 >>> 16) & 255}.${(v4 >>> 8) & 255}.${v4 & 255}`);
              break;
            }
            out.push(text(i));
          }
          return out;
        };
        const s =
          gap === undefined
            ? part(0, 8).join(':')
            : `${part(0, gap[0]).join(':')}::${part(gap[1], 8).join(':')}`;
        assert.equal(parseAddr(s).value, value, s);
      },
    ),
    { numRuns: 3000 },
  );
});

test('keys sort like addresses within a family', () => {
  fc.assert(
    fc.property(fc.bigInt(0n, MAX6), fc.bigInt(0n, MAX6), (x, y) => {
      const kx = addrKey({ family: 6, value: x });
      const ky = addrKey({ family: 6, value: y });
      assert.equal(kx < ky, x < y);
    }),
  );
});
