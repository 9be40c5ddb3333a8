/**
 * @module scripts/lib/system
 * Installs the Debian packages the tests and the demo need, when they are missing. Nothing is set
 * up by hand: a fresh machine gets them from here (as root, through apt-get).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What each package provides, checked by a file it installs. */
export const SYSTEM_PACKAGES: Record<string, string> = {
  'containernetworking-plugins': '/usr/lib/cni/bridge',
  iproute2: '/usr/sbin/ip',
  'iputils-ping': '/usr/bin/ping',
  'etcd-server': '/usr/bin/etcd',
  chromium: '/usr/bin/chromium',
};

/**
 * Debian's kubectl (package kubernetes-client), the same release as the test kube-apiserver; the
 * guide (docs/GUIDE.md) is run with it. Not installed system-wide: on these machines another
 * package (google-cloud-cli's kubectl) may own /usr/bin/kubectl, and a test run must not replace a
 * tool the machine's owner installed. So the .deb is downloaded and unpacked into a cache.
 */
export const KUBECTL_VERSION = '1.20.5+really1.20.2-1.1+deb12u1';
const KUBECTL_CACHE = `${process.env.IPKEEPER_KUBE_CACHE ?? '/var/cache/ipkeeper-kube'}/kubectl-${KUBECTL_VERSION}`;

/**
 * The path of Debian's kubectl ${KUBECTL_VERSION}, unpacked into the cache on first use.
 * @throws Error when it is not cached and we are not root, or apt-get/dpkg-deb fail.
 */
export function ensureKubectl(): string {
  const exe = join(KUBECTL_CACHE, 'usr/bin/kubectl');
  if (existsSync(exe)) return exe;
  if (!isRoot())
    throw new Error(`kubectl is not in ${KUBECTL_CACHE}: run the tests as root once to fetch it`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const work = mkdtempSync(join(tmpdir(), 'ipk-kubectl-'));
  // apt fetches as the unprivileged _apt user, which must be able to write here.
  chmodSync(work, 0o777);
  try {
    const download = (): number | null =>
      spawnSync('apt-get', ['download', '-qq', `kubernetes-client=${KUBECTL_VERSION}`], {
        cwd: work,
        stdio: ['ignore', 'ignore', 'inherit'],
        env,
      }).status;
    if (download() !== 0) {
      console.error('[setup] apt-get update (to download kubernetes-client)');
      execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
      updated = true;
      if (download() !== 0) throw new Error(`apt-get download kubernetes-client=${KUBECTL_VERSION} failed`);
    }
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error('apt-get download left no .deb');
    const tmp = `${KUBECTL_CACHE}.${process.pid}.tmp`;
    mkdirSync(tmp, { recursive: true });
    execFileSync('dpkg-deb', ['-x', join(work, deb), tmp]);
    try {
      renameSync(tmp, KUBECTL_CACHE);
    } catch (e) {
      // Another test file unpacked it at the same moment: theirs is as good as ours.
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(exe)) throw e;
    }
    return exe;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

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
