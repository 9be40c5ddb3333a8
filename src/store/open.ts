/**
 * @module store/open
 * Turns a store URL (`--store`, the agent config) into a `Store`.
 *
 *   memory:                               in-process, nothing survives (tests, demos)
 *   sqlite:PATH                           the embedded durable store; PATH absolute or relative to the cwd
 *   etcd://host:port[,host:port...][/prefix]   a real etcd v3 cluster (see etcd.ts)
 *   kubernetes: | k8s:                    the CRDs, through the API server (see kubernetes.ts)
 *
 * Backends are imported on demand, so `memory:` does not load node:sqlite and nothing loads the etcd
 * or Kubernetes clients unless asked for.
 */
import { IpamError } from '../errors.ts';
import type { Store } from './store.ts';
import type { SqliteStoreOptions } from './sqlite.ts';
import type { CredentialsEvent, EtcdStoreOptions } from './etcd.ts';

export const DEFAULT_STORE_URL = 'sqlite:/var/lib/ipkeeper/ipkeeper.db';

export const STORE_URL_FORMS = [
  'memory:',
  'sqlite:/absolute/path.db',
  'sqlite:relative/path.db',
  'etcd://host:port[,host:port...][/prefix]',
  'kubernetes:',
] as const;

export interface OpenStoreOptions {
  sqlite?: SqliteStoreOptions;
  /**
   * TLS and authentication for an etcd:// store (`etcdConnection` reads the agent's flags into it);
   * `credentials` reads them again, for a store that picks up renewed files (`EtcdStoreOptions`).
   */
  etcd?: Pick<EtcdStoreOptions, 'tls' | 'auth' | 'credentials' | 'credentialsCheckMs' | 'onCredentials'>;
}

/**
 * `opts` with an etcd store's credential checks logged to `log` (what changed, or why the files on
 * disk cannot be used yet); `opts` itself when nothing re-reads credentials.
 */
export function withCredentialsLog(
  opts: OpenStoreOptions | undefined,
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void },
): OpenStoreOptions | undefined {
  const etcd = opts?.etcd;
  if (!etcd?.credentials) return opts;
  const onCredentials = (e: CredentialsEvent): void =>
    e.kind === 'reloaded'
      ? log.info({ changed: e.changed }, 'etcd credentials changed on disk; connecting with the new ones')
      : log.warn(
          { err: e.message },
          'etcd credentials on disk cannot be used: kept the ones in use; they are read again at the next check',
        );
  return { ...opts, etcd: { ...etcd, onCredentials } };
}

function invalid(url: string, why: string): IpamError {
  return new IpamError(
    'INVALID_CONFIG',
    `store URL "${url}" ${why}; use one of: ${STORE_URL_FORMS.join(', ')}`,
    { field: 'store', value: url, accepted: [...STORE_URL_FORMS] },
  );
}

/**
 * Loads an optional backend module (a literal `import()`, so a bundler keeps it, evaluated only
 * when used) and its opener.
 * @throws IpamError INVALID_CONFIG when this build has no such module (e.g. a trimmed bundle),
 *   INTERNAL when it lacks the opener; a failure inside the module's own imports propagates.
 */
async function loadBackend(
  url: string,
  name: string,
  load: () => Promise<Record<string, unknown>>,
  fn: string,
): Promise<(url: string) => Promise<Store>> {
  let m: Record<string, unknown>;
  try {
    m = await load();
  } catch (e) {
    const code = (e as { code?: string }).code;
    const missing = (e as { url?: string; message?: string }).message ?? '';
    if (code === 'ERR_MODULE_NOT_FOUND' && missing.includes(`${name}.ts`)) {
      throw new IpamError('INVALID_CONFIG', `store URL "${url}": this build has no ${name} backend`, {
        field: 'store',
        value: url,
      });
    }
    throw e;
  }
  const open = m[fn];
  if (typeof open !== 'function') {
    throw new IpamError('INTERNAL', `store backend ${name}.ts does not export ${fn}()`, {
      file: `${name}.ts`,
      fn,
    });
  }
  return open as (url: string) => Promise<Store>;
}

/**
 * Opens the store a URL names.
 * @throws IpamError INVALID_CONFIG for a URL of no accepted form (the message lists them) or a
 *   backend this build lacks; StoreError when the backend cannot open (e.g. the sqlite file cannot
 *   be created); whatever the etcd/kubernetes openers throw.
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const colon = url.indexOf(':');
  const scheme = colon < 0 ? '' : url.slice(0, colon).toLowerCase();
  const rest = colon < 0 ? '' : url.slice(colon + 1);
  if (scheme !== 'etcd' && opts.etcd && (opts.etcd.tls || opts.etcd.auth)) {
    throw new IpamError(
      'INVALID_CONFIG',
      `the --etcd-* TLS and user flags apply to an etcd:// store, not to "${url}"; drop them or use --store etcd://host:port`,
      { field: 'store', value: url },
    );
  }
  switch (scheme) {
    case 'memory': {
      if (rest !== '' && rest !== '//') throw invalid(url, 'takes nothing after "memory:"');
      const { MemoryStore } = await import('./memory.ts');
      return new MemoryStore();
    }
    case 'sqlite': {
      // `sqlite:///abs` is accepted as a courtesy for URL-minded users; `sqlite://host/...` is not.
      let path = rest;
      if (path.startsWith('//')) {
        if (!path.startsWith('///')) throw invalid(url, 'names a host; a sqlite path has none');
        path = path.slice(2);
      }
      if (path === '') throw invalid(url, 'has no file path');
      if (path.includes('\0')) throw invalid(url, 'has a NUL byte in its path');
      const { SqliteStore } = await import('./sqlite.ts');
      return new SqliteStore(path, opts.sqlite);
    }
    case 'etcd': {
      if (!rest.startsWith('//') || rest.length <= 2) throw invalid(url, 'names no etcd endpoint');
      const open = (await loadBackend(url, 'etcd', () => import('./etcd.ts'), 'openEtcdStore')) as (
        url: string,
        opts: NonNullable<OpenStoreOptions['etcd']>,
      ) => Promise<Store>;
      return open(url, opts.etcd ?? {});
    }
    case 'kubernetes':
    case 'k8s': {
      const open = await loadBackend(
        url,
        'kubernetes',
        () => import('./kubernetes.ts'),
        'openKubernetesStore',
      );
      return open(url);
    }
    default:
      throw invalid(url, scheme === '' ? 'has no scheme' : `has an unknown scheme "${scheme}:"`);
  }
}
