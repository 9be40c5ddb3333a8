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

describe('ipkeeper agent --etcd-credentials-check', () => {
  const agent = (...extra: string[]) => cli(['agent', '--socket', '/nonexistent/a.sock', ...extra]);
  it('without a credentials file to read: refused, and says what to add', () => {
    const r = agent('--store', 'memory:', '--etcd-credentials-check', '10s');
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /--etcd-credentials-check 10s applies to the files of --etcd-cacert, --etcd-cert\/--etcd-key or --etcd-password-file; add them or drop it/,
    );
  });
  for (const [v, why] of [
    ['often', /--etcd-credentials-check often must be a duration such as 15s, 500ms or 1m/],
    [
      '5ms',
      /--etcd-credentials-check 5ms is too often: give 100ms or more \(1m is plenty\), or 0 to turn it off/,
    ],
  ] as const) {
    it(`${v}: refused before anything is read or opened`, () => {
      const r = agent(
        '--store',
        'etcd://127.0.0.1:1',
        '--etcd-user',
        'u',
        '--etcd-password-file',
        '/nonexistent/password',
        '--etcd-credentials-check',
        v,
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, why);
    });
  }
});

describe('ipkeeper agent --in-cluster', () => {
  it('with --kubeconfig as well: refused, naming both', () => {
    const r = cli([
      'agent',
      '--store',
      'memory:',
      '--socket',
      '/nonexistent/a.sock',
      '--in-cluster',
      '--kubeconfig',
      '/nonexistent/kubeconfig',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /--in-cluster and --kubeconfig \/nonexistent\/kubeconfig both say where Kubernetes is; keep one/,
    );
  });
});

describe('ipkeeper controller --store', () => {
  for (const [args, why] of [
    [
      ['--store', 'memory:'],
      /--store memory:: the controller works on kubernetes: \(the default\) or the agents' etcd:\/\//,
    ],
    [
      ['--store', 'etcd://127.0.0.1:1'],
      /--store etcd:\/\/127\.0\.0\.1:1: the admission webhook checks objects written to the API server, which this store does not keep; add --no-webhook/,
    ],
    [
      ['--etcd-user', 'u', '--etcd-password-file', '/etc/hostname'],
      /the --etcd-\* TLS and user flags apply to an etcd:\/\/ store, not to "kubernetes:"/,
    ],
  ] as const) {
    it(`${args.join(' ')}: refused before anything is opened`, () => {
      const r = cli(['controller', '--kubeconfig', '/nonexistent/kubeconfig', ...args]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, why);
    });
  }
});
