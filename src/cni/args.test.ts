import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseCniArgs } from './args.ts';
import { IpamError } from '../errors.ts';

describe('parseCniArgs', () => {
  const good: {
    name: string;
    raw: string | undefined;
    args: Record<string, string>;
    ignoreUnknown?: boolean;
  }[] = [
    { name: 'unset', raw: undefined, args: {} },
    { name: 'empty', raw: '', args: {} },
    {
      name: 'kubelet/containerd set',
      raw: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1f2e',
      args: {
        IgnoreUnknown: '1',
        K8S_POD_NAMESPACE: 'default',
        K8S_POD_NAME: 'web-0',
        K8S_POD_INFRA_CONTAINER_ID: 'abc',
        K8S_POD_UID: '1f2e',
      },
      ignoreUnknown: true,
    },
    {
      name: 'IGNOREUNKNOWN spelt in capitals, true',
      raw: 'IGNOREUNKNOWN=true',
      args: { IGNOREUNKNOWN: 'true' },
      ignoreUnknown: true,
    },
    { name: 'IgnoreUnknown=0 is false', raw: 'IgnoreUnknown=0;X=1', args: { IgnoreUnknown: '0', X: '1' } },
    { name: 'unknown keys are kept without IgnoreUnknown', raw: 'FOO=bar', args: { FOO: 'bar' } },
    { name: 'trailing ; tolerated', raw: 'A=1;', args: { A: '1' } },
    { name: 'empty value', raw: 'A=', args: { A: '' } },
    { name: 'value with =', raw: 'A=b=c', args: { A: 'b=c' } },
    { name: 'IP kept, one address', raw: 'IP=10.6.168.133', args: { IP: '10.6.168.133' } },
    {
      name: 'IP kept, dual stack with prefixes',
      raw: 'IP=10.6.168.133/16,fd00::133/64',
      args: { IP: '10.6.168.133/16,fd00::133/64' },
    },
    {
      name: '__proto__ is an ordinary key',
      raw: '__proto__=x',
      args: JSON.parse('{"__proto__":"x"}') as Record<string, string>,
    },
  ];
  for (const c of good) {
    it(`accepts: ${c.name}`, () => {
      const r = parseCniArgs(c.raw);
      assert.deepEqual(r.args, c.args);
      assert.equal(r.ignoreUnknown, c.ignoreUnknown ?? false);
    });
  }

  const bad: { name: string; raw: string; pair: string; says: RegExp }[] = [
    { name: 'no =', raw: 'K8S_POD_NAME=a;garbage', pair: 'garbage', says: /has no `=`/ },
    { name: 'empty key', raw: '=x', pair: '=x', says: /key/ },
    { name: 'key with a space', raw: 'A B=1', pair: 'A B=1', says: /key/ },
    { name: 'repeated key', raw: 'A=1;A=2', pair: 'A=2', says: /repeats the key A/ },
    {
      name: 'IgnoreUnknown not boolean',
      raw: 'IgnoreUnknown=yes',
      pair: 'IgnoreUnknown=yes',
      says: /IgnoreUnknown=1/,
    },
    {
      name: 'IP not an address',
      raw: 'IP=10.0.0.300',
      pair: 'IP=10.0.0.300',
      says: /not an IPv4 or IPv6 address/,
    },
    {
      name: 'IP octal-looking',
      raw: 'IP=010.0.0.1',
      pair: 'IP=010.0.0.1',
      says: /not an IPv4 or IPv6 address/,
    },
    { name: 'IP prefix too long', raw: 'IP=10.0.0.1/33', pair: 'IP=10.0.0.1/33', says: /prefix is 0 to 32/ },
    { name: 'IP empty in a list', raw: 'IP=10.0.0.1,', pair: 'IP=10.0.0.1,', says: /""/ },
  ];
  for (const c of bad) {
    it(`refuses with code 4: ${c.name}`, () => {
      assert.throws(
        () => parseCniArgs(c.raw),
        (e: unknown) => {
          assert.ok(e instanceof IpamError);
          assert.equal(e.code, 'INVALID_ENV');
          assert.equal(e.cniCode, 4);
          assert.equal(e.details.pair, c.pair);
          assert.ok(e.message.startsWith('CNI_ARGS: '), e.message);
          assert.ok(e.message.includes(JSON.stringify(c.pair)), e.message);
          assert.match(e.message, c.says);
          return true;
        },
      );
    });
  }

  it('round-trips any set of well-formed pairs', () => {
    const key = fc
      .stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,12}$/)
      .filter((k) => k.toUpperCase() !== 'IGNOREUNKNOWN' && k !== 'IP');
    const value = fc.stringMatching(/^[^;]{0,12}$/);
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(key, value), { selector: ([k]) => k, maxLength: 8 }), (pairs) => {
        const raw = pairs.map(([k, v]) => `${k}=${v}`).join(';');
        assert.deepEqual(parseCniArgs(raw).args, Object.fromEntries(pairs));
      }),
    );
  });
});
