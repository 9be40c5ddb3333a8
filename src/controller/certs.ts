/**
 * @module controller/certs
 * TLS material for the admission webhook: either read from a directory (`tls.crt`, `tls.key`,
 * `ca.crt` — what cert-manager and Helm's `genCA` put into a Secret), or made at start: a
 * self-signed CA and a serving certificate it signs, with the webhook Service's DNS names and
 * 127.0.0.1 as subject alternative names. The CA goes into the ValidatingWebhookConfiguration's
 * `caBundle`; it lives only as long as the process (every start makes new ones and patches them in).
 *
 * Node has key generation and signing but no X.509 builder, so this file writes the DER itself:
 * about a hundred lines of ASN.1 for a fixed certificate shape, instead of shelling out to `openssl`,
 * which slim container images (node:*-slim, distroless) do not carry. Keys are ECDSA P-256 and
 * signatures ecdsa-with-SHA256, which the API server's Go TLS stack accepts; Go ≥ 1.15 ignores the
 * common name, so the names are in subjectAltName only.
 *
 *   Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature BIT STRING }
 *   TBSCertificate ::= SEQUENCE { [0] version(v3=2), serialNumber, signature, issuer, validity,
 *                                 subject, subjectPublicKeyInfo, [3] extensions }
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { IpamError } from '../errors.ts';

export interface TlsMaterial {
  /** PEM of the serving certificate (and chain). */
  cert: string;
  /** PEM of its private key. */
  key: string;
  /** PEM of the CA that signed it: the webhook configuration's caBundle. */
  ca: string;
}

export const CERT_FILE = 'tls.crt';
export const KEY_FILE = 'tls.key';
export const CA_FILE = 'ca.crt';
/** Self-made certificates outlive any process that makes them; a restart makes new ones. */
const VALIDITY_MS = 10 * 365 * 24 * 3600 * 1000;
/** Clock skew allowance between this host and the API server. */
const BACKDATE_MS = 3600 * 1000;

// ---- DER -------------------------------------------------------------------------------------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), len(content.length), content]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = p >>> 7; v > 0; v >>>= 7) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A non-negative INTEGER from big-endian bytes (a leading 0 when the top bit is set). */
function integer(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

function bitString(bytes: Buffer, unused = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), bytes]));
}

/** A one-byte named-bit BIT STRING (keyUsage): DER drops trailing zero bits. */
function flags(byte: number): Buffer {
  let unused = 0;
  while (unused < 7 && (byte & (1 << unused)) === 0) unused++;
  return bitString(Buffer.from([byte]), unused);
}

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(ms: number): Buffer {
  const iso = new Date(ms).toISOString(); // 2026-01-02T03:04:05.678Z
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // 20260102030405Z
  const year = new Date(ms).getUTCFullYear();
  return year < 2050 ? tlv(0x17, Buffer.from(digits.slice(2))) : tlv(0x18, Buffer.from(digits));
}

function name(cn: string): Buffer {
  return seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), octets(value));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand "::" and write eight 16-bit groups.
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => Buffer.from([parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff])));
}

function subjectAltNames(names: string[]): Buffer {
  return seq(...names.map((n) => (isIP(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n, 'ascii')))));
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function keyId(pub: KeyObject): Buffer {
  return createHash('sha1')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest();
}

interface CertSpec {
  subject: string;
  issuer: string;
  publicKey: KeyObject;
  signingKey: KeyObject;
  issuerKeyId: Buffer;
  ca: boolean;
  sans: string[];
  now: number;
  /** A leaf's extended key usages: serverAuth, and clientAuth too when true. */
  clientAuth?: boolean;
}

function certificate(s: CertSpec): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const extensions: Buffer[] = [
    extension('2.5.29.19', true, s.ca ? seq(tlv(0x01, Buffer.from([0xff]))) : seq()),
    // CA: keyCertSign | cRLSign; leaf: digitalSignature (ECDHE key agreement signs with it).
    extension('2.5.29.15', true, flags(s.ca ? 0x06 : 0x80)),
    extension('2.5.29.14', false, octets(keyId(s.publicKey))),
    extension('2.5.29.35', false, seq(tlv(0x80, s.issuerKeyId))),
  ];
  if (!s.ca) {
    const usages = [oid('1.3.6.1.5.5.7.3.1'), ...(s.clientAuth ? [oid('1.3.6.1.5.5.7.3.2')] : [])];
    extensions.push(extension('2.5.29.37', false, seq(...usages)));
    extensions.push(extension('2.5.29.17', false, subjectAltNames(s.sans)));
  }
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    ECDSA_SHA256,
    name(s.issuer),
    seq(time(s.now - BACKDATE_MS), time(s.now + VALIDITY_MS)),
    name(s.subject),
    s.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, s.signingKey);
  const der = seq(tbs, ECDSA_SHA256, bitString(signature));
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trimEnd();
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/**
 * A fresh CA and a serving certificate for `sans` (DNS names and IP addresses). `caName` names the
 * CA (default ipkeeper-webhook-ca); `clientAuth` lets the certificate also authenticate a client
 * (tests: an etcd that asks its clients for a certificate).
 * @throws IpamError INVALID_CONFIG when no name is given.
 */
export function selfSignedTls(
  sans: string[],
  now: number = Date.now(),
  opts: { caName?: string; clientAuth?: boolean } = {},
): TlsMaterial {
  if (sans.length === 0)
    throw new IpamError(
      'INVALID_CONFIG',
      'the webhook certificate needs at least one DNS name or IP address',
    );
  const ca = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const leaf = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caId = keyId(ca.publicKey);
  const caName = opts.caName ?? 'ipkeeper-webhook-ca';
  const caCert = certificate({
    subject: caName,
    issuer: caName,
    publicKey: ca.publicKey,
    signingKey: ca.privateKey,
    issuerKeyId: caId,
    ca: true,
    sans: [],
    now,
  });
  const cert = certificate({
    subject: sans[0]!,
    issuer: caName,
    publicKey: leaf.publicKey,
    signingKey: ca.privateKey,
    issuerKeyId: caId,
    ca: false,
    sans,
    now,
    clientAuth: opts.clientAuth === true,
  });
  return { cert, key: leaf.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, ca: caCert };
}

/** The names a webhook Service answers to: `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`. */
export function serviceNames(namespace: string, service: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}

/**
 * Reads `tls.crt`, `tls.key` and `ca.crt` from `dir` (`ca.crt` may be absent: then the caBundle is
 * left to whoever installed the certificate, e.g. cert-manager's CA injector).
 * @throws IpamError INVALID_CONFIG naming the missing file.
 */
export function readTlsDir(dir: string): TlsMaterial {
  const read = (f: string, required: boolean): string => {
    const p = join(dir, f);
    if (!existsSync(p)) {
      if (!required) return '';
      throw new IpamError(
        'INVALID_CONFIG',
        `--webhook-cert-dir ${dir}: ${f} is missing; mount a kubernetes.io/tls Secret there (tls.crt, tls.key, ca.crt) or leave --webhook-cert-dir out for a self-signed certificate`,
        { field: 'webhook-cert-dir', value: dir },
      );
    }
    return readFileSync(p, 'utf8');
  };
  return { cert: read(CERT_FILE, true), key: read(KEY_FILE, true), ca: read(CA_FILE, false) };
}
