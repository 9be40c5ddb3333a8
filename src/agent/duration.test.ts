import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration } from './duration.ts';
import { cli } from '../../test/e2e/harness.ts';

describe('parseDuration', () => {
  for (const [v, ms] of [
    ['0', 0],
    ['250', 250],
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    [' 2s ', 2000],
  ] as const) {
    it(`${JSON.stringify(v)} = ${ms} ms`, () => assert.equal(parseDuration('--x', v, 0), ms));
  }
  for (const v of ['', '1h', '-1s', '1.5s', 's', '5 m', '99999999999999999999']) {
    it(`refuses ${JSON.stringify(v)}, naming the flag and the value`, () =>
      assert.throws(
        () => parseDuration('--claims-cache-interval', v, 0),
        (e: Error) => e.message.startsWith(`--claims-cache-interval ${v} must be a duration such as 15s`),
      ));
  }
  it('refuses less than the minimum', () =>
    assert.throws(() => parseDuration('--y', '0', 1), /--y 0 must be a duration .*at least 1ms/));
});

describe('ipkeeper agent --claims-cache-interval', () => {
  const agent = (...extra: string[]) =>
    cli(['agent', '--store', 'memory:', '--socket', '/nonexistent/a.sock', ...extra]);
  it('without --claims-cache: refused, and says what to add', () => {
    const r = agent('--claims-cache-interval', '1m');
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /--claims-cache-interval 1m applies to the claims cache; add --claims-cache <file>/,
    );
  });
  it('a value that is not a duration: refused before the agent starts', () => {
    const r = agent('--claims-cache', '/nonexistent/c.json', '--claims-cache-interval', 'often');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--claims-cache-interval often must be a duration such as 15s, 500ms or 1m/);
  });
});
