/**
 * @module store/etcd-options
 * How the agent reaches a secured etcd: its flags (`--etcd-cacert`, `--etcd-cert`, `--etcd-key`,
 * `--etcd-user`, `--etcd-password-file`, or the password in IPKEEPER_ETCD_PASSWORD) read into the
 * store's `tls` and `auth` options. Every file is read and checked at the start, so a wrong path, a
 * file that is not PEM, or a key that does not belong to its certificate stops the agent with an
 * error naming the flag, the value and the fix, before any connection is tried; the agent then
 * reads them again, through the same checks, every `--etcd-credentials-check` (the store's
 * `credentials` option), to pick up renewed certificates and a changed password.
 *
 * The names follow etcdctl's (`--cacert`, `--cert`, `--key`, `--user`). The password is never a
 * flag: a command line is visible to every process on the node.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { IpamError } from '../errors.ts';

/** The environment variable that may carry the password of `--etcd-user`. */
export const ETCD_PASSWORD_ENV = 'IPKEEPER_ETCD_PASSWORD';

/** The flags as given (paths and the user name); all optional. */
export interface EtcdFlags {
  cacert?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
}

/** TLS material for the etcd client, as PEM bytes. */
export interface EtcdTls {
  /** CA certificate(s) the members' certificates must chain to; absent: the system's roots. */
  ca?: Buffer;
  /** The client certificate (and chain) and its private key: both or neither. */
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdAuth {
  username: string;
  password: string;
}

/** What `etcdConnection` returns: the store options to pass on (none when no flag was given). */
export interface EtcdConnection {
  tls?: EtcdTls;
  auth?: EtcdAuth;
}

function invalid(flag: string, value: string, why: string): IpamError {
  return new IpamError('INVALID_CONFIG', `${flag} ${value}: ${why}`, { field: flag, value });
}

function read(flag: string, path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw invalid(flag, path, `cannot read it (${err.code ?? err.message}); give the path of ${what}`);
  }
}

function certificate(flag: string, path: string): Buffer {
  const pem = read(flag, path, 'a PEM certificate file');
  try {
    // Checks the first certificate of the file (a chain or CA bundle may hold more).
    new X509Certificate(pem);
  } catch (e) {
    throw invalid(
      flag,
      path,
      `is not a PEM certificate (${(e as Error).message}); give a file that starts with -----BEGIN CERTIFICATE-----`,
    );
  }
  return pem;
}

function privateKey(flag: string, path: string): { pem: Buffer; key: KeyObject } {
  const pem = read(flag, path, 'a PEM private key file');
  try {
    return { pem, key: createPrivateKey(pem) };
  } catch (e) {
    throw invalid(
      flag,
      path,
      `is not a PEM private key (${(e as Error).message}); give an unencrypted key file (-----BEGIN PRIVATE KEY----- or -----BEGIN EC/RSA PRIVATE KEY-----)`,
    );
  }
}

/**
 * Reads and checks the flags.
 * @param env where IPKEEPER_ETCD_PASSWORD is read (the process environment by default).
 * @throws IpamError INVALID_CONFIG naming the flag and the value: a file that cannot be read or is
 *   not PEM, `--etcd-cert` without `--etcd-key` (or the reverse) or a key that is not the
 *   certificate's, a user without a password (or the reverse), a password given both ways.
 */
export function etcdConnection(flags: EtcdFlags, env: NodeJS.ProcessEnv = process.env): EtcdConnection {
  const out: EtcdConnection = {};
  if (flags.cert !== undefined && flags.key === undefined) {
    throw invalid(
      '--etcd-cert',
      flags.cert,
      'a client certificate needs its private key; add --etcd-key FILE',
    );
  }
  if (flags.key !== undefined && flags.cert === undefined) {
    throw invalid(
      '--etcd-key',
      flags.key,
      'a private key needs its client certificate; add --etcd-cert FILE',
    );
  }
  if (flags.cacert !== undefined || flags.cert !== undefined) {
    const tls: EtcdTls = {};
    if (flags.cacert !== undefined) tls.ca = certificate('--etcd-cacert', flags.cacert);
    if (flags.cert !== undefined && flags.key !== undefined) {
      tls.cert = certificate('--etcd-cert', flags.cert);
      const { pem, key } = privateKey('--etcd-key', flags.key);
      if (!new X509Certificate(tls.cert).checkPrivateKey(key)) {
        throw invalid(
          '--etcd-key',
          flags.key,
          `is not the private key of the certificate in ${flags.cert}; give the key the certificate was issued for`,
        );
      }
      tls.key = pem;
    }
    out.tls = tls;
  }
  const fromEnv = env[ETCD_PASSWORD_ENV];
  if (flags.user === undefined) {
    if (flags.passwordFile !== undefined) {
      throw invalid(
        '--etcd-password-file',
        flags.passwordFile,
        'a password needs a user; add --etcd-user NAME',
      );
    }
    return out;
  }
  if (flags.user === '' || /\s/.test(flags.user)) {
    throw invalid(
      '--etcd-user',
      JSON.stringify(flags.user),
      'must be an etcd user name (not empty, no spaces)',
    );
  }
  if (flags.passwordFile !== undefined && fromEnv !== undefined) {
    throw invalid(
      '--etcd-password-file',
      flags.passwordFile,
      `the password is given twice (also in ${ETCD_PASSWORD_ENV}); keep one`,
    );
  }
  let password: string;
  if (flags.passwordFile !== undefined) {
    // A file written by `echo` ends in a newline that is not part of the password.
    password = read('--etcd-password-file', flags.passwordFile, 'a file holding the password')
      .toString('utf8')
      .replace(/\r?\n$/, '');
  } else if (fromEnv !== undefined) {
    password = fromEnv;
  } else {
    throw invalid(
      '--etcd-user',
      flags.user,
      `needs a password: set ${ETCD_PASSWORD_ENV} or give --etcd-password-file FILE`,
    );
  }
  if (password === '') {
    throw invalid(
      flags.passwordFile !== undefined ? '--etcd-password-file' : ETCD_PASSWORD_ENV,
      flags.passwordFile ?? '""',
      "the password is empty; give the user's password",
    );
  }
  out.auth = { username: flags.user, password };
  return out;
}
