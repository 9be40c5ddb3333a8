/**
 * @module scripts/lib/system
 * Installs the Debian packages the tests and the demo need, when they are missing. Nothing is set
 * up by hand: a fresh machine gets them from here (as root, through apt-get).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** What each package provides, checked by a file it installs. */
export const SYSTEM_PACKAGES: Record<string, string> = {
  'containernetworking-plugins': '/usr/lib/cni/bridge',
  iproute2: '/usr/sbin/ip',
  'iputils-ping': '/usr/bin/ping',
  'etcd-server': '/usr/bin/etcd',
  chromium: '/usr/bin/chromium',
};

export const CNI_BIN_DIR = '/usr/lib/cni';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

let updated = false;

/**
 * Installs the named packages (default: all of SYSTEM_PACKAGES) whose marker file is missing.
 * @throws Error when a package is missing and we are not root, or apt-get fails.
 */
export function ensurePackages(names: string[] = Object.keys(SYSTEM_PACKAGES)): void {
  const missing = names.filter((n) => !existsSync(SYSTEM_PACKAGES[n] ?? `/nonexistent/${n}`));
  if (missing.length === 0) return;
  if (!isRoot()) {
    throw new Error(`missing system packages ${missing.join(', ')}: run as root, or apt-get install them`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!updated) {
    console.error(`[setup] apt-get update (to install ${missing.join(', ')})`);
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    updated = true;
  }
  console.error(`[setup] apt-get install ${missing.join(' ')}`);
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
  if (r.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed (exit ${r.status})`);
  // Where systemd runs, etcd-server's package starts a system etcd on :2379; tests run their own
  // members on other ports, so that one is stopped rather than left listening.
  if (missing.includes('etcd-server')) spawnSync('sh', ['-c', 'systemctl stop etcd 2>/dev/null; true']);
}
