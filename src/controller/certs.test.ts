import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { selfSignedTls, serviceNames } from './certs.ts';

describe('self-signed webhook certificates', () => {
  const sans = [...serviceNames('ipkeeper-system', 'ipkeeper-webhook'), '127.0.0.1', '::1'];
  const tls = selfSignedTls(sans, Date.UTC(2026, 10, 23));

  it('the CA signs the serving certificate, which carries every name as a SAN', () => {
    const ca = new X509Certificate(tls.ca);
    const leaf = new X509Certificate(tls.cert);
    assert.equal(ca.ca, true);
    assert.equal(leaf.ca, false);
    assert.ok(ca.verify(ca.publicKey), 'the CA is self-signed');
    assert.ok(leaf.verify(ca.publicKey), 'the leaf is signed by the CA');
    assert.ok(leaf.checkIssued(ca));
    assert.equal(
      leaf.checkHost('ipkeeper-webhook.ipkeeper-system.svc'),
      'ipkeeper-webhook.ipkeeper-system.svc',
    );
    assert.equal(leaf.checkHost('other.ipkeeper-system.svc'), undefined);
    assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(leaf.checkIP('::1'), '::1');
    assert.equal(leaf.checkIP('127.0.0.2'), undefined);
    assert.equal(leaf.validFrom, 'Nov 22 23:00:00 2026 GMT');
    assert.match(leaf.validTo, /2036 GMT$/);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(tls.key)));
    assert.equal(createPublicKey(tls.cert).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  it('openssl reads them and verifies the chain for server use', () => {
    assert.equal(
      spawnSync('openssl', ['version']).status,
      0,
      'the test needs openssl to cross-check the DER',
    );
    const d = mkdtempSync(`${tmpdir()}/ipk-cert-`);
    try {
      writeFileSync(`${d}/ca.crt`, tls.ca);
      writeFileSync(`${d}/tls.crt`, tls.cert);
      const v = spawnSync(
        'openssl',
        ['verify', '-purpose', 'sslserver', '-CAfile', `${d}/ca.crt`, `${d}/tls.crt`],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(v.status, 0, v.stdout + v.stderr);
      const text = spawnSync('openssl', ['x509', '-noout', '-text', '-in', `${d}/tls.crt`], {
        encoding: 'utf8',
      }).stdout;
      assert.match(text, /DNS:ipkeeper-webhook\.ipkeeper-system\.svc\.cluster\.local/);
      assert.match(text, /IP Address:127\.0\.0\.1/);
      assert.match(text, /TLS Web Server Authentication/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('a TLS client that trusts only the CA connects to a server using the certificate', async () => {
    const now = selfSignedTls(['127.0.0.1']);
    const server = https.createServer({ cert: now.cert, key: now.key }, (_req, res) => res.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const body = await new Promise<string>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/', ca: now.ca }, (res) => {
            let s = '';
            res.on('data', (c) => (s += c));
            res.on('end', () => resolve(s));
          })
          .on('error', reject);
      });
      assert.equal(body, 'ok');
      // A client trusting another CA is refused.
      const other = selfSignedTls(['127.0.0.1']);
      await assert.rejects(
        new Promise((resolve, reject) =>
          https.get({ host: '127.0.0.1', port, ca: other.ca }, resolve).on('error', reject),
        ),
        /certificate/,
      );
    } finally {
      server.close();
    }
  });

  it('refuses to make a certificate for no name', () => {
    assert.throws(() => selfSignedTls([]), /at least one DNS name or IP address/);
  });
});
