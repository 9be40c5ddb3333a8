/**
 * The agent's etcd TLS and user flags: what they read, and a clear error — naming the flag, the
 * value and the fix — for every wrong setting, before any connection is tried. (The connections
 * themselves, against a real etcd with TLS and authentication: test/etcd/secure.test.ts.)
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedTls } from '../controller/certs.ts';
import { isIpamError } from '../errors.ts';
import { ETCD_PASSWORD_ENV, etcdConnection, type EtcdFlags } from './etcd-options.ts';
import { openStore } from './open.ts';
import { createServer, type Socket } from 'node:net';
import { openEtcdStore, openHint } from './etcd.ts';

let dir: string;
const files: Record<string, string> = {};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ipk-etcd-options-'));
  const a = selfSignedTls(['127.0.0.1'], Date.now(), { caName: 'a-ca', clientAuth: true });
  const b = selfSignedTls(['127.0.0.1'], Date.now(), { caName: 'b-ca', clientAuth: true });
  const write = (name: string, text: string): void => {
    files[name] = join(dir, name);
    writeFileSync(files[name], text);
  };
  write('ca.crt', a.ca);
  write('a.crt', a.cert);
  write('a.key', a.key);
  write('b.key', b.key);
  write('not-pem.txt', 'hello\n');
  write('password', 's3cret\n');
  write('empty-password', '\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs etcdConnection and returns its INVALID_CONFIG error (failing the test when there is none). */
function refused(flags: EtcdFlags, env: NodeJS.ProcessEnv = {}): { message: string; field: unknown } {
  try {
    etcdConnection(flags, env);
  } catch (e) {
    assert.ok(isIpamError(e), `not an IpamError: ${String(e)}`);
    assert.equal(e.code, 'INVALID_CONFIG');
    return { message: e.message, field: (e.details as { field?: unknown }).field };
  }
  assert.fail(`accepted ${JSON.stringify(flags)}`);
}

describe('etcdConnection (the agent’s --etcd-* flags)', () => {
  it('gives nothing without flags: a plain etcd:// connection', () => {
    assert.deepEqual(etcdConnection({}, {}), {});
  });

  it('reads the CA, the client certificate and its key as PEM bytes', () => {
    const c = etcdConnection({ cacert: files['ca.crt'], cert: files['a.crt'], key: files['a.key'] }, {});
    assert.match(c.tls!.ca!.toString(), /^-----BEGIN CERTIFICATE-----/);
    assert.match(c.tls!.cert!.toString(), /^-----BEGIN CERTIFICATE-----/);
    assert.match(c.tls!.key!.toString(), /PRIVATE KEY-----/);
    assert.equal(c.auth, undefined);
  });

  it('takes a CA alone (members verified, no client certificate)', () => {
    const c = etcdConnection({ cacert: files['ca.crt'] }, {});
    assert.ok(c.tls?.ca);
    assert.equal(c.tls.cert, undefined);
    assert.equal(c.tls.key, undefined);
  });

  it('refuses a certificate without its key, and a key without its certificate', () => {
    const a = refused({ cert: files['a.crt'] });
    assert.equal(a.field, '--etcd-cert');
    assert.match(
      a.message,
      /--etcd-cert .*a\.crt: a client certificate needs its private key; add --etcd-key FILE/,
    );
    const b = refused({ key: files['a.key'] });
    assert.equal(b.field, '--etcd-key');
    assert.match(b.message, /add --etcd-cert FILE/);
  });

  it('names the flag and the path of a file it cannot read', () => {
    const r = refused({ cacert: join(dir, 'missing.crt') });
    assert.equal(r.field, '--etcd-cacert');
    assert.match(
      r.message,
      /--etcd-cacert .*missing\.crt: cannot read it \(ENOENT\); give the path of a PEM certificate file/,
    );
  });

  it('refuses a file that is not a PEM certificate or key', () => {
    assert.match(
      refused({ cacert: files['not-pem.txt'] }).message,
      /--etcd-cacert .*not-pem\.txt: is not a PEM certificate .*-----BEGIN CERTIFICATE-----/,
    );
    assert.match(
      refused({ cert: files['a.crt'], key: files['not-pem.txt'] }).message,
      /--etcd-key .*not-pem\.txt: is not a PEM private key/,
    );
    // A private key where the certificate goes.
    assert.match(
      refused({ cert: files['a.key'], key: files['a.key'] }).message,
      /--etcd-cert .*a\.key: is not a PEM certificate/,
    );
  });

  it('refuses a key that is not the certificate’s', () => {
    const r = refused({ cert: files['a.crt'], key: files['b.key'] });
    assert.equal(r.field, '--etcd-key');
    assert.match(r.message, /b\.key: is not the private key of the certificate in .*a\.crt/);
  });

  it('reads the password of --etcd-user from IPKEEPER_ETCD_PASSWORD or a file (without its newline)', () => {
    assert.deepEqual(etcdConnection({ user: 'ipk' }, { [ETCD_PASSWORD_ENV]: 'pw from env' }).auth, {
      username: 'ipk',
      password: 'pw from env',
    });
    assert.deepEqual(etcdConnection({ user: 'ipk', passwordFile: files['password'] }, {}).auth, {
      username: 'ipk',
      password: 's3cret',
    });
  });

  it('refuses a user without a password, a password without a user, a password given twice or empty', () => {
    assert.match(
      refused({ user: 'ipk' }).message,
      /--etcd-user ipk: needs a password: set IPKEEPER_ETCD_PASSWORD or give --etcd-password-file FILE/,
    );
    assert.match(
      refused({ passwordFile: files['password'] }).message,
      /--etcd-password-file .*: a password needs a user; add --etcd-user NAME/,
    );
    assert.match(
      refused({ user: 'ipk', passwordFile: files['password'] }, { [ETCD_PASSWORD_ENV]: 'x' }).message,
      /the password is given twice \(also in IPKEEPER_ETCD_PASSWORD\); keep one/,
    );
    assert.match(
      refused({ user: 'ipk', passwordFile: files['empty-password'] }).message,
      /--etcd-password-file .*empty-password: the password is empty/,
    );
    assert.match(
      refused({ user: 'ipk' }, { [ETCD_PASSWORD_ENV]: '' }).message,
      /IPKEEPER_ETCD_PASSWORD "": the password is empty/,
    );
    assert.match(
      refused({ user: 'a b' }, { [ETCD_PASSWORD_ENV]: 'x' }).message,
      /--etcd-user "a b": must be an etcd user name/,
    );
  });
});

describe('openStore with etcd connection options', () => {
  it('refuses them for a store that is not etcd://, naming the URL, and opens nothing', async () => {
    const etcd = etcdConnection({ cacert: files['ca.crt'] }, {});
    for (const url of ['memory:', `sqlite:${join(dir, 'never.db')}`]) {
      await assert.rejects(openStore(url, { etcd }), (e: unknown) => {
        assert.ok(isIpamError(e));
        assert.equal(e.code, 'INVALID_CONFIG');
        assert.match(
          e.message,
          /the --etcd-\* TLS and user flags apply to an etcd:\/\/ store, not to "(memory:|sqlite:.*never\.db)"/,
        );
        return true;
      });
    }
    assert.throws(
      () => etcdConnection({ cacert: join(dir, 'never.db') }, {}),
      /cannot read it/,
      'no database file was made',
    );
  });
});

describe('openHint (what an etcd store that cannot open says to change)', () => {
  const pem = Buffer.from('x');
  const tls = { tls: { ca: pem, cert: pem, key: pem } };
  it('reads TLS and authentication failures from etcd’s and gRPC’s words', () => {
    const cases: [string, Parameters<typeof openHint>[1], RegExp][] = [
      ['SSL alert number 42 ... ssl/tls alert bad certificate', tls, /refused this client's certificate/],
      [
        'ssl/tls alert bad certificate',
        { tls: { ca: pem } },
        /asks its clients for a certificate .* give --etcd-cert and --etcd-key/,
      ],
      ['Error: unable to verify the first certificate', tls, /not one --etcd-cacert vouches for/],
      [
        'Error: self-signed certificate in certificate chain',
        {},
        /give the CA that signed it with --etcd-cacert/,
      ],
      [
        'Client network socket disconnected before secure TLS connection was established',
        tls,
        /do not answer TLS on that port/,
      ],
      [
        '14 UNAVAILABLE: No connection established. Last error: Failed to connect',
        {},
        /if the members serve TLS/,
      ],
      [
        'etcdserver: authentication failed, invalid user ID or password',
        { auth: { username: 'ipk', password: 'x' } },
        /did not accept user "ipk"/,
      ],
      ['etcdserver: user name is empty', {}, /authentication is enabled on this etcd: give --etcd-user/],
      [
        '7 PERMISSION_DENIED: etcdserver: permission denied',
        { auth: { username: 'ipk', password: 'x' } },
        /user "ipk" .* readwrite on the prefix \/p\//,
      ],
    ];
    for (const [message, opts, hint] of cases)
      assert.match(openHint(message, opts, '/p/') ?? '(none)', hint, message);
  });

  it('adds nothing to other failures', () => {
    assert.equal(openHint('etcdserver: request is too large', tls, '/p/'), undefined);
    assert.equal(openHint('14 UNAVAILABLE: No connection established', tls, '/p/'), undefined);
  });
});

describe('openEtcdStore, when its last attempt only ran out of time', () => {
  it('still says what the attempts before it met, and what to change', async () => {
    // A peer on 127.0.0.1 that drops the first connection (a TLS client sees its handshake cut)
    // and then accepts connections without ever answering (calls wait until the deadline).
    const held: Socket[] = [];
    let n = 0;
    const server = createServer((sock) => {
      if (n++ === 0) sock.destroy();
      else held.push(sock);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const ca = Buffer.from(selfSignedTls(['127.0.0.1'], Date.now(), { caName: 'x-ca' }).ca);
    try {
      const err = await openEtcdStore(`etcd://127.0.0.1:${port}`, { timeoutMs: 3000, tls: { ca } }).then(
        async (s) => {
          await s.close();
          return undefined;
        },
        (e: unknown) => e as Error,
      );
      assert.ok(err, 'opened a store on a peer that never answers');
      assert.match(err.message, /Deadline exceeded/i, 'the last attempt ran out of time');
      assert.match(err.message, /before it: .*disconnected before secure TLS connection was established/);
      assert.match(err.message, /: the members do not answer TLS on that port/);
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
