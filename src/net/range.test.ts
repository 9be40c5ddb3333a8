import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Family } from './addr.ts';
import { NetError, formatValue, maxValue } from './addr.ts';
import { formatRange, makeRange, parseRange, rangeSize } from './range.ts';

test('parseRange: the seeds syntax', () => {
  const cases: { input: string; family: Family; first: string; last: string; size: bigint; text: string }[] =
    [
      {
        input: '10.6.168.131-10.6.168.133',
        family: 4,
        first: '10.6.168.131',
        last: '10.6.168.133',
        size: 3n,
        text: '10.6.168.131-10.6.168.133',
      },
      {
        input: '10.6.168.131 - 10.6.168.133',
        family: 4,
        first: '10.6.168.131',
        last: '10.6.168.133',
        size: 3n,
        text: '10.6.168.131-10.6.168.133',
      },
      {
        input: '10.6.168.131',
        family: 4,
        first: '10.6.168.131',
        last: '10.6.168.131',
        size: 1n,
        text: '10.6.168.131',
      },
      {
        input: '10.0.0.7-10.0.0.7',
        family: 4,
        first: '10.0.0.7',
        last: '10.0.0.7',
        size: 1n,
        text: '10.0.0.7',
      },
      {
        input: '10.0.0.255-10.0.1.0',
        family: 4,
        first: '10.0.0.255',
        last: '10.0.1.0',
        size: 2n,
        text: '10.0.0.255-10.0.1.0',
      },
      {
        input: '10.6.0.0/24',
        family: 4,
        first: '10.6.0.0',
        last: '10.6.0.255',
        size: 256n,
        text: '10.6.0.0-10.6.0.255',
      },
      { input: '10.6.0.9/32', family: 4, first: '10.6.0.9', last: '10.6.0.9', size: 1n, text: '10.6.0.9' },
      {
        input: '0.0.0.0-255.255.255.255',
        family: 4,
        first: '0.0.0.0',
        last: '255.255.255.255',
        size: 1n << 32n,
        text: '0.0.0.0-255.255.255.255',
      },
      {
        input: 'fd00::10-fd00::20',
        family: 6,
        first: 'fd00::10',
        last: 'fd00::20',
        size: 17n,
        text: 'fd00::10-fd00::20',
      },
      {
        input: 'FD00::10\t-\tfd00::0020',
        family: 6,
        first: 'fd00::10',
        last: 'fd00::20',
        size: 17n,
        text: 'fd00::10-fd00::20',
      },
      { input: 'fd00::/127', family: 6, first: 'fd00::', last: 'fd00::1', size: 2n, text: 'fd00::-fd00::1' },
      {
        input: '::/0',
        family: 6,
        first: '::',
        last: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
        size: 1n << 128n,
        text: '::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      },
    ];
  for (const c of cases) {
    const r = parseRange(c.input);
    assert.equal(r.family, c.family, c.input);
    assert.equal(formatValue(r.family, r.first), c.first, c.input);
    assert.equal(formatValue(r.family, r.last), c.last, c.input);
    assert.equal(rangeSize(r), c.size, c.input);
    assert.equal(formatRange(r), c.text, c.input);
  }
});

test('parseRange: errors name the value', () => {
  const cases: { input: string; message: RegExp }[] = [
    {
      input: '10.6.168.133-10.6.168.131',
      message: /"10\.6\.168\.133-10\.6\.168\.131" is reversed \(write 10\.6\.168\.131-10\.6\.168\.133\)/,
    },
    { input: '10.0.0.2-10.0.0.1', message: /reversed \(write 10\.0\.0\.1-10\.0\.0\.2\)/ },
    { input: '10.0.1.0-10.0.0.255', message: /reversed \(write 10\.0\.0\.255-10\.0\.1\.0\)/ },
    { input: 'fd00::20-fd00::10', message: /reversed \(write fd00::10-fd00::20\)/ },
    { input: '10.0.0.1-fd00::1', message: /"10\.0\.0\.1-fd00::1": mixes IPv4 and IPv6/ },
    { input: '010.0.0.1-10.0.0.5', message: /"010\.0\.0\.1-10\.0\.0\.5".*leading zeros.*write 10\.0\.0\.1/ },
    { input: '10.0.0.1-', message: /"10\.0\.0\.1-".*empty/ },
    { input: '10.0.0.1-10.0.0.2-10.0.0.3', message: /more than one '-'/ },
    { input: '10.6.1.0/16', message: /did you mean 10\.6\.0\.0\/16/ },
    { input: '10.0.0.0/24-10.0.1.0/24', message: /not a prefix/ },
    { input: ' 10.0.0.1', message: /whitespace/ },
    { input: '', message: /empty/ },
  ];
  for (const c of cases) {
    assert.throws(
      () => parseRange(c.input),
      (e: unknown) => e instanceof NetError && c.message.test(e.message),
      c.input,
    );
  }
});

test('makeRange validates', () => {
  assert.deepEqual(makeRange(4, 1n, 2n), { family: 4, first: 1n, last: 2n });
  assert.throws(() => makeRange(4, 2n, 1n), /reversed \(write 0\.0\.0\.1-0\.0\.0\.2\)/);
  assert.throws(() => makeRange(4, 0n, maxValue(4) + 1n), /not an IPv4 address/);
});

test('round trip: parseRange(formatRange(r)) == r', () => {
  const rangeOf = (family: Family) =>
    fc.tuple(fc.bigInt(0n, maxValue(family)), fc.bigInt(0n, maxValue(family))).map(([x, y]) => ({
      family,
      first: x < y ? x : y,
      last: x < y ? y : x,
    }));
  fc.assert(
    fc.property(fc.oneof(rangeOf(4), rangeOf(6)), (r) => {
      assert.deepEqual({ ...parseRange(formatRange(r)) }, r);
    }),
    { numRuns: 1000 },
  );
});
