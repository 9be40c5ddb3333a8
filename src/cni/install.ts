/**
 * @module cni/install
 * Puts the plugin executable into a CNI bin directory (`/opt/cni/bin`), as the runtime expects to
 * find it: a file named after the `ipam.type` that network configurations use (`ipkeeper`).
 *
 * The copy is atomic — written under a temporary name in the same directory, made executable, then
 * renamed over the old one — because the runtime may start the plugin at any moment: it must see the
 * old file or the new one, never half of one. Renaming also works while the old plugin is running,
 * where writing into it would fail with ETXTBSY.
 */

import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as Build from '../../scripts/build.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** What `npm run build` (scripts/build.ts) makes: the native forwarder (native/ipkeeper-cni.c). */
export const BUILT_EXECUTABLE = join(ROOT, 'dist/ipkeeper-cni');
const BUILD_SCRIPT = join(ROOT, 'scripts/build.ts');

export interface InstallOptions {
  /** The file name in `dir` (default `ipkeeper`). */
  name?: string;
  /** The executable to install (default dist/ipkeeper-cni, built first when missing or stale). */
  source?: string;
}

/**
 * Installs the self-contained plugin executable into `dir` (created if missing) and returns its path.
 * When no `source` is given and this is a source checkout, the executable is (re)built first if it is
 * missing or older than the plugin's sources.
 *
 * @throws Error when `name` is not a plain file name, when the executable is missing and cannot be
 *   built (the build's message says why, e.g. postject not installed), or when copying fails (the
 *   temporary file is removed).
 */
export async function installCni(dir: string, opts: InstallOptions = {}): Promise<string> {
  const name = opts.name ?? 'ipkeeper';
  if (name === '' || name === '.' || name === '..' || name.includes('/')) {
    throw new Error(
      `install name ${JSON.stringify(name)} is not a file name; use the ipam.type of your network configurations, e.g. "ipkeeper"`,
    );
  }
  const source = opts.source ?? (await builtExecutable());
  if (!existsSync(source)) {
    throw new Error(`the plugin executable ${source} does not exist; build it with \`npm run build\``);
  }
  mkdirSync(dir, { recursive: true });
  const target = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    copyFileSync(source, tmp);
    chmodSync(tmp, 0o755);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`installing ${source} as ${target} failed: ${(e as Error).message}`, { cause: e });
  }
  return target;
}

/** dist/ipkeeper-cni, built or rebuilt first when this is a source checkout and it is out of date. */
async function builtExecutable(): Promise<string> {
  // An image or release without scripts/ ships the executable already built.
  if (!existsSync(BUILD_SCRIPT)) return BUILT_EXECUTABLE;
  // Imported only here: it pulls in esbuild, which nothing else on this path needs.
  const { buildNative } = (await import(pathToFileURL(BUILD_SCRIPT).href)) as typeof Build;
  return buildNative({ ifStale: true, out: BUILT_EXECUTABLE, log: () => {} });
}
