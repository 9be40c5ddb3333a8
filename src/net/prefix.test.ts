import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NetError, formatValue, maxValue, parseAddr } from './addr.ts';
import {
  formatPrefix,
  parsePrefix,
  prefixContains,
  prefixCovers,
  prefixFirst,
  prefixLast,
  prefixOf,
  prefixOverlaps,
  prefixSize,
  tryParsePrefix,
} from './prefix.ts';

test('parsePrefix: boundaries', () => {
  const cases: { input: string; first: string; last: string; size: bigint }[] = [
    { input: '0.0.0.0/0', first: '0.0.0.0', last: '255.255.255.255', size: 1n << 32n },
    { input: '10.0.0.0/8', first: '10.0.0.0', last: '10.255.255.255', size: 1n << 24n },
    { input: '10.6.0.0/16', first: '10.6.0.0', last: '10.6.255.255', size: 65536n },
    { input: '10.6.168.128/28', first: '10.6.168.128', last: '10.6.168.143', size: 16n },
    { input: '10.0.0.254/31', first: '10.0.0.254', last: '10.0.0.255', size: 2n },
    { input: '10.0.0.255/32', first: '10.0.0.255', last: '10.0.0.255', size: 1n },
    { input: '255.255.255.255/32', first: '255.255.255.255', last: '255.255.255.255', size: 1n },
    { input: '::/0', first: '::', last: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', size: 1n << 128n },
    { input: 'fd00::/64', first: 'fd00::', last: 'fd00::ffff:ffff:ffff:ffff', size: 1n << 64n },
    { input: 'fd00::/127', first: 'fd00::', last: 'fd00::1', size: 2n },
    { input: 'fd00::5/128', first: 'fd00::5', last: 'fd00::5', size: 1n },
    {
      input: 'FD00:0::/16',
      first: 'fd00::',
      last: 'fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      size: 1n << 112n,
    },
  ];
  for (const c of cases) {
    const p = parsePrefix(c.input);
    assert.equal(formatValue(p.family, prefixFirst(p)), c.first, c.input);
    assert.equal(formatValue(p.family, prefixLast(p)), c.last, c.input);
    assert.equal(prefixSize(p), c.size, c.input);
    assert.equal(prefixLast(p) - prefixFirst(p) + 1n, prefixSize(p), c.input);
    assert.deepEqual(parsePrefix(formatPrefix(p)), p, c.input);
  }
  assert.equal(formatPrefix(parsePrefix('FD00:0::/16')), 'fd00::/16');
});

test('parsePrefix: errors name the value and the fix', () => {
  const cases: { input: string; message: RegExp }[] = [
    { input: '10.6.1.0/16', message: /10\.6\.1\.0\/16 has host bits set; did you mean 10\.6\.0\.0\/16\?/ },
    { input: '10.0.0.1/31', message: /did you mean 10\.0\.0\.0\/31\?/ },
    { input: 'fd00::1/64', message: /did you mean fd00::\/64\?/ },
    { input: '10.0.0.0/33', message: /prefix length 33 is out of range \(IPv4: 0\.\.32\)/ },
    { input: 'fd00::/129', message: /prefix length 129 is out of range \(IPv6: 0\.\.128\)/ },
    { input: '10.0.0.0/-1', message: /not a number/ },
    { input: '10.0.0.0/08', message: /leading zeros/ },
    { input: '10.0.0.0/', message: /not a number/ },
    { input: '10.0.0.0/ 8', message: /not a number/ },
    { input: '10.0.0.0', message: /missing the prefix length \(write e\.g\. 10\.0\.0\.0\/24\)/ },
    { input: 'fd00::', message: /missing the prefix length \(write e\.g\. fd00::\/64\)/ },
    { input: '010.0.0.0/8', message: /"010\.0\.0\.0\/8".*leading zeros.*write 10\.0\.0\.0/ },
    { input: '10.0.0.0/8/8', message: /not a number/ },
  ];
  for (const c of cases) {
    assert.throws(
      () => parsePrefix(c.input),
      (e: unknown) => e instanceof NetError && c.message.test(e.message),
      c.input,
    );
    assert.equal(tryParsePrefix(c.input), undefined, c.input);
  }
});

test('prefixContains / prefixOverlaps / prefixCovers', () => {
  const p16 = parsePrefix('10.6.0.0/16');
  assert.equal(prefixContains(p16, parseAddr('10.6.0.0')), true);
  assert.equal(prefixContains(p16, parseAddr('10.6.255.255')), true);
  assert.equal(prefixContains(p16, parseAddr('10.7.0.0')), false);
  assert.equal(prefixContains(p16, parseAddr('10.5.255.255')), false);
  assert.equal(prefixContains(p16, parseAddr('::ffff:10.6.0.1')), false, 'other family');
  assert.equal(prefixContains(parsePrefix('0.0.0.0/0'), parseAddr('255.255.255.255')), true);
  assert.equal(prefixContains(parsePrefix('::/0'), parseAddr('10.0.0.1')), false);

  const cases: { a: string; b: string; overlaps: boolean; covers: boolean }[] = [
    { a: '10.6.0.0/16', b: '10.6.168.0/24', overlaps: true, covers: true },
    { a: '10.6.168.0/24', b: '10.6.0.0/16', overlaps: true, covers: false },
    { a: '10.6.0.0/16', b: '10.7.0.0/16', overlaps: false, covers: false },
    { a: '10.0.0.0/31', b: '10.0.0.2/31', overlaps: false, covers: false },
    { a: '10.0.0.0/32', b: '10.0.0.0/32', overlaps: true, covers: true },
    { a: '0.0.0.0/0', b: '255.255.255.255/32', overlaps: true, covers: true },
    { a: 'fd00::/64', b: 'fd00:0:0:1::/64', overlaps: false, covers: false },
    { a: 'fd00::/127', b: 'fd00::1/128', overlaps: true, covers: true },
    { a: '::/0', b: '0.0.0.0/0', overlaps: false, covers: false },
  ];
  for (const c of cases) {
    const a = parsePrefix(c.a);
    const b = parsePrefix(c.b);
    assert.equal(prefixOverlaps(a, b), c.overlaps, `${c.a} overlaps ${c.b}`);
    assert.equal(prefixOverlaps(b, a), c.overlaps, `${c.b} overlaps ${c.a}`);
    assert.equal(prefixCovers(a, b), c.covers, `${c.a} covers ${c.b}`);
  }
});

test('prefixOf clears host bits', () => {
  assert.equal(formatPrefix(prefixOf(parseAddr('10.6.1.7'), 16)), '10.6.0.0/16');
  assert.equal(formatPrefix(prefixOf(parseAddr('10.6.1.7'), 32)), '10.6.1.7/32');
  assert.equal(formatPrefix(prefixOf(parseAddr('fd00::1:2'), 0)), '::/0');
  assert.throws(() => prefixOf(parseAddr('10.6.1.7'), 33), /prefix length 33/);
});

const anyPrefixOf = (family: 4 | 6) =>
  fc
    .tuple(fc.bigInt(0n, maxValue(family)), fc.integer({ min: 0, max: family === 4 ? 32 : 128 }))
    .map(([v, bits]) => prefixOf({ family, value: v }, bits));

test('round trip and containment agree with first/last', () => {
  fc.assert(
    fc.property(fc.oneof(anyPrefixOf(4), anyPrefixOf(6)), fc.bigInt(0n, (1n << 128n) - 1n), (p, raw) => {
      assert.deepEqual(parsePrefix(formatPrefix(p)), p);
      const value = raw & maxValue(p.family);
      const inside = value >= prefixFirst(p) && value <= prefixLast(p);
      assert.equal(prefixContains(p, { family: p.family, value }), inside);
    }),
    { numRuns: 1000 },
  );
});

test('prefixOverlaps agrees with interval overlap', () => {
  fc.assert(
    fc.property(anyPrefixOf(4), anyPrefixOf(4), (a, b) => {
      const naive = prefixFirst(a) <= prefixLast(b) && prefixFirst(b) <= prefixLast(a);
      assert.equal(prefixOverlaps(a, b), naive);
    }),
    { numRuns: 1000 },
  );
});
