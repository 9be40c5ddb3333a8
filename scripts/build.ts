/**
 * @module scripts/build
 * `npm run build`: the CNI plugin, in two self-contained forms, and the agent's bundle.
 *
 *   dist/ipkeeper-cni        the native forwarder (native/ipkeeper-cni.c, `cc -O2 -static`): what
 *                            `ipkeeper install-cni` installs. It starts in ~1 ms and hands the CNI
 *                            call to the agent's /v1/cni/exec, which runs the TypeScript plugin code.
 *   dist/agent/ipkeeper.mjs  the CLI and daemons bundled into one file (`buildAgent`): an agent
 *                            starts several times faster than from the TypeScript sources.
 *   dist/ipkeeper-cni-node   the same plugin as a Node single executable application (below): the
 *                            plugin code run in its own process, for nodes whose agent predates
 *                            /v1/cni/exec, and the reference the forwarder is tested against.
 *
 * Why both (measured, docs/BENCHMARKS.md): a Node 24 process costs ~100 ms of CPU before it runs a
 * line of ours, 4-5x Go's host-local; no bundle, code cache or snapshot changes that, so the
 * executable the runtime starts for every pod is C, and the logic stays in TypeScript in the agent.
 *
 * Real nodes have no Node.js, so the plugin's Node form is a Node single executable application
 * (SEA): a copy of this Node 24 binary with the bundled plugin injected as a resource.
 *
 *   src/cni/main.ts --esbuild--> dist/ipkeeper-cni.cjs        (one minified CommonJS file: a Node 24
 *                                                               SEA's main script must be CommonJS)
 *   sea-config.json --node --experimental-sea-config--> blob
 *   copy of process.execPath --strip--> --postject NODE_SEA_BLOB--> dist/ipkeeper-cni-node
 *
 * Node 24.11 has no `--build-sea` (that came later), so the blob is injected with `postject`, which must
 * be installed (`npm install --save-dev postject@1.0.0-alpha.6`). `strip` (binutils) is used when present: it
 * drops ~18 MB of debug info, which makes the file smaller and measured no slower to start.
 *
 * Variants, for measuring: `plain` (the default: fastest to start, see the CNI notes in the report),
 * `code-cache` (`useCodeCache`: V8 code cache in the blob) and `snapshot` (`useSnapshot`: a startup
 * snapshot whose deserialize-main runs the plugin).
 *
 * Every output is written under a temporary name in dist/ and renamed into place, so two builds running
 * at once (two test files) each leave a whole file, never a torn one.
 *
 *   node scripts/build.ts [--variant=plain|code-cache|snapshot] [--no-strip] [--if-stale] [--out=PATH]
 *   (with --out, only the Node executable is built, at PATH)
 */

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { protoJson, type ProtobufParser } from '../src/store/etcd-services.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DIST = join(ROOT, 'dist');
/** The Node single executable. */
export const CNI_EXECUTABLE = join(DIST, 'ipkeeper-cni-node');
/** The native forwarder, the installed plugin. */
export const NATIVE_EXECUTABLE = join(DIST, 'ipkeeper-cni');
const NATIVE_SRC = join(ROOT, 'native/ipkeeper-cni.c');
export const CNI_BUNDLE = join(DIST, 'ipkeeper-cni.cjs');
const CNI_SRC = join(ROOT, 'src/cni');
/** The fuse Node's SEA support looks for; postject flips it when it injects the blob. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const POSTJECT_FIX = 'install it: npm install --save-dev postject@1.0.0-alpha.6';

export type SeaVariant = 'plain' | 'code-cache' | 'snapshot';

export interface BuildOptions {
  variant?: SeaVariant;
  /** Strip debug info from the copied Node binary when `strip` is installed (default true). */
  strip?: boolean;
  /** Where to put the executable (default dist/ipkeeper-cni-node). */
  out?: string;
  /** Skip the build when `out` is newer than every source file of the plugin. */
  ifStale?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

/**
 * Builds the plugin bundle and the single executable; returns the executable's path.
 *
 * @throws Error when not run on Node >= 24, when esbuild, `node --experimental-sea-config` or postject
 *   fail (with their output), or when the built executable does not answer VERSION.
 */
export async function buildCni(opts: BuildOptions = {}): Promise<string> {
  const variant = opts.variant ?? 'plain';
  const out = opts.out ?? CNI_EXECUTABLE;
  const log = opts.log ?? ((line: string) => process.stderr.write(`[build] ${line}\n`));
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) {
    throw new Error(
      `node ${process.versions.node} cannot build the plugin: the executable is a copy of the running Node binary, which must be Node 24 (run \`npm run build\`, which uses node_modules/.bin/node)`,
    );
  }
  if (opts.ifStale === true && !isStale(out)) {
    log(`${out} is up to date`);
    return out;
  }
  mkdirSync(dirname(out), { recursive: true });
  mkdirSync(DIST, { recursive: true });
  const work = mkdtempSync(join(dirname(out), '.build-'));
  try {
    const started = Date.now();
    const bundle = join(work, 'ipkeeper-cni.cjs');
    await build({
      ...(variant === 'snapshot'
        ? {
            stdin: {
              contents:
                "import { startupSnapshot } from 'node:v8';\nimport { main } from './process.ts';\nstartupSnapshot.setDeserializeMainFunction(main);\n",
              resolveDir: CNI_SRC,
              loader: 'ts',
              sourcefile: 'snapshot-main.ts',
            },
          }
        : { entryPoints: [join(CNI_SRC, 'main.ts')] }),
      bundle: true,
      platform: 'node',
      target: 'node24',
      format: 'cjs',
      minify: true,
      legalComments: 'none',
      outfile: bundle,
      logLevel: 'warning',
    });
    if (variant !== 'snapshot') {
      // Beside its final name, so the rename stays on one filesystem whatever `out` is.
      const tmp = `${CNI_BUNDLE}.${process.pid}.tmp`;
      copyFileSync(bundle, tmp);
      renameSync(tmp, CNI_BUNDLE);
    }

    const blob = join(work, 'ipkeeper-cni.blob');
    const seaConfig = join(work, 'sea-config.json');
    writeFileSync(
      seaConfig,
      JSON.stringify({
        main: bundle,
        output: blob,
        disableExperimentalSEAWarning: true,
        // The runtime hands the plugin its own environment: a NODE_OPTIONS meant for some other
        // program on the host must not change (or break) the plugin.
        execArgvExtension: 'none',
        useCodeCache: variant === 'code-cache',
        useSnapshot: variant === 'snapshot',
      }),
    );
    run(process.execPath, ['--experimental-sea-config', seaConfig], work, 'node --experimental-sea-config');

    const exe = join(work, basename(out));
    copyFileSync(process.execPath, exe);
    chmodSync(exe, 0o755);
    if (opts.strip !== false) {
      const r = spawnSync('strip', [exe], { encoding: 'utf8' });
      if (r.error !== undefined)
        log('strip not found (binutils): keeping debug info, the executable is ~18 MB larger');
      else if (r.status !== 0) throw new Error(`strip ${exe} failed: ${r.stderr}`);
    }
    run(
      process.execPath,
      [postjectCli(), exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE],
      work,
      'postject',
    );
    smokeTest(exe);
    renameSync(exe, out);
    log(`${out} (${variant}, ${Math.round(statSync(out).size / 1e6)} MB) in ${Date.now() - started} ms`);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The CLI and daemons (`bin/ipkeeper.ts`) for the container image: a launcher that turns on Node's
 * compile cache, then loads `AGENT_BUNDLE_CODE`, the one ES module with everything in it.
 */
export const AGENT_BUNDLE = join(DIST, 'agent', 'ipkeeper.mjs');
export const AGENT_BUNDLE_CODE = join(DIST, 'agent', 'ipkeeper-bundle.mjs');

/**
 * Node flags the image runs the bundle with (deploy/Containerfile's ENTRYPOINT; the bench's
 * bundle rows use them too). `--max-semi-space-size=4` (MB): V8's young generation otherwise grows
 * to 64 MB under the start's and a checkpoint's garbage and stays there; an agent started on 100k
 * IPClaims in Kubernetes mode peaked at 303–330 MB of RSS instead of 402–438 MB (512 MiB is the
 * chart's limit), ready as fast (6.4–6.8 s against 6.7–7.6 s) with the same CPU; the etcd
 * allocation bench moved within its noise. V8 reads it only at start: `v8.setFlagsFromString` in
 * the launcher does nothing.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/**
 * The launcher. V8 compiling the 5 MB bundle was the largest part of an empty agent's start (~70
 * of ~400 ms CPU, npm run bench restart); with the compile cache on, a restarted agent loads the
 * code V8 compiled the first time. The cache lives in `IPKEEPER_COMPILE_CACHE` (the chart points it
 * at the node's /run/ipkeeper, which outlives the container) or else Node's default under the
 * temp directory; it is keyed by the file's content and Node's version, so a new image never runs
 * stale code, and when it cannot be written Node starts without it (`NODE_DISABLE_COMPILE_CACHE=1`
 * turns it off).
 */
function launcher(code: string): string {
  return [
    '#!/usr/bin/env node',
    '// Written by scripts/build.ts (buildAgent): turns on the compile cache, then loads the bundle.',
    "import { enableCompileCache } from 'node:module';",
    'enableCompileCache(process.env.IPKEEPER_COMPILE_CACHE || undefined);',
    `await import(${JSON.stringify(`./${basename(code)}`)});`,
    '',
  ].join('\n');
}

/**
 * Bundles `bin/ipkeeper.ts` and everything it imports (fastify, pino, etcd3, ...) into
 * dist/agent/ipkeeper-bundle.mjs, started by the launcher dist/agent/ipkeeper.mjs. Measured (docs/BENCHMARKS.md, restart): Node resolving, reading and
 * type-stripping a few hundred files is most of an agent's start; one file removes that. The
 * Kubernetes client is bundled apart, into dist/agent/ipkeeper-kube.mjs (`kubeClientFile`): it is
 * imported lazily (`await import`), only in Kubernetes mode. The file sits two directories
 * below the root so that code locating the root from `import.meta.url` ('../..', e.g. install-cni
 * finding dist/ipkeeper-cni) finds the same root as from src/<dir>/.
 * @throws Error when esbuild fails or the bundle does not start (`--help`).
 */
export async function buildAgent(opts: { out?: string; log?: (line: string) => void } = {}): Promise<string> {
  const out = opts.out ?? AGENT_BUNDLE;
  const code = join(dirname(out), `${basename(out, '.mjs')}-bundle.mjs`);
  const log = opts.log ?? ((line: string) => process.stderr.write(`[build] ${line}\n`));
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp.mjs`;
  const started = Date.now();
  const kube = join(dirname(out), KUBE_BUNDLE);
  const common = {
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    // CommonJS dependencies bundled into an ES module call require() for Node's built-ins, and some
    // read files of their package at run time (etcd3 its rpc.proto, via __dirname): see `packageDirs`.
    banner: {
      js: [
        "import { createRequire as __ipkCreateRequire } from 'node:module';",
        "import { dirname as __ipkDirname, join as __ipkJoin } from 'node:path';",
        "import { fileURLToPath as __ipkFileURLToPath } from 'node:url';",
        'const require = __ipkCreateRequire(import.meta.url);',
        'const __ipkBundleDir = __ipkDirname(__ipkFileURLToPath(import.meta.url));',
      ].join('\n'),
    },
    legalComments: 'none',
    logLevel: 'warning',
  } as const;
  // The Kubernetes client in a file of its own, imported only in Kubernetes mode.
  await build({
    ...common,
    stdin: { contents: "export * from '@kubernetes/client-node';", resolveDir: ROOT, loader: 'js' },
    // A dependency asks for `punycode`: the package, not Node's deprecated built-in of that name.
    alias: { punycode: 'punycode/punycode.js' },
    // node-fetch 2 calls url.parse(); Node warns of that (DEP0169) only outside node_modules, so
    // it stays there (one small file).
    plugins: [fromNodeModules('node-fetch', dirname(out)), builtinsByRequire(), packageDirs(dirname(out))],
    outfile: `${kube}.${process.pid}.tmp.mjs`,
  });
  renameSync(`${kube}.${process.pid}.tmp.mjs`, kube);
  await build({
    ...common,
    entryPoints: [join(ROOT, 'bin/ipkeeper.ts')],
    plugins: [kubeClientFile(), builtinsByRequire(), etcdProtoPrebuilt(), packageDirs(dirname(out))],
    outfile: tmp,
  });
  renameSync(tmp, code);
  writeFileSync(tmp, launcher(code), { mode: 0o755 });
  const r = spawnSync(process.execPath, [tmp, '--help'], {
    encoding: 'utf8',
    env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '1' },
  });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`the agent bundle ${out} does not start (exit ${r.status}): ${r.stdout}${r.stderr}`);
  }
  renameSync(tmp, out);
  log(
    `${out}, ${basename(code)} (${Math.round(statSync(code).size / 1e3)} kB) and ${KUBE_BUNDLE} (${Math.round(statSync(kube).size / 1e3)} kB) in ${Date.now() - started} ms`,
  );
  return out;
}

/**
 * Imports of package `name` (a plain name, no regex characters) stay imports of its file in
 * node_modules, by the path from `outDir` to where it resolves now (the image lays node_modules out
 * as the build stage does).
 */
function fromNodeModules(name: string, outDir: string): Plugin {
  return {
    name: 'from-node-modules',
    setup(b) {
      b.onResolve({ filter: new RegExp(`^${name}$`) }, (args) => {
        const rel = relative(outDir, createRequire(join(args.resolveDir, 'x.js')).resolve(args.path));
        return { path: rel.startsWith('.') ? rel : `./${rel}`, external: true };
      });
    },
  };
}

/** The Kubernetes client's bundle, beside the agent's. */
export const KUBE_BUNDLE = 'ipkeeper-kube.mjs';

/**
 * `import('@kubernetes/client-node')` in the agent's bundle loads `./ipkeeper-kube.mjs`, the
 * client bundled alone: from node_modules it took 258–294 ms to load with the compile cache (a few
 * hundred files resolved and read), bundled 117–120 ms — every Kubernetes-mode start pays it.
 */
function kubeClientFile(): Plugin {
  return {
    name: 'kube-client-file',
    setup(b) {
      b.onResolve({ filter: /^@kubernetes\/client-node$/ }, () => ({
        path: `./${KUBE_BUNDLE}`,
        external: true,
      }));
    },
  };
}

/**
 * etcd3 builds its gRPC clients from its rpc.proto when its module loads: proto-loader reads and
 * parses the .proto text, then makes a definition of every message with its reflection
 * descriptors, which a client never uses — 45–55 ms of an etcd agent's ~300 ms start (--cpu-prof:
 * `loadSync` 32 ms, `createPackageDefinition` 17 ms). In the bundle the .proto files are parsed
 * here, at build time, into protobufjs JSON, and the module builds only the service definitions
 * from it (src/store/etcd-services.ts, the same methods and codecs as proto-loader's; its test
 * compares them): 8–12 ms instead of 34–41 ms in a scratch measurement (`loadSync` against
 * `Root.fromJSON` + `resolveAll`). A new etcd3 whose module no longer matches fails the build here.
 */
const ETCD_SERVICES = join(ROOT, 'src/store/etcd-services.ts');

function etcdProtoPrebuilt(): Plugin {
  const CALL =
    /const packageDefinition = \(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, (\{[^}]*\})\);/;
  return {
    name: 'etcd-proto-prebuilt',
    setup(b) {
      b.onLoad({ filter: /[\\/]node_modules[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
        const text = readFileSync(args.path, 'utf8');
        const m = CALL.exec(text);
        if (!m) {
          throw new Error(
            `${args.path} no longer loads its rpc.proto as scripts/build.ts (etcdProtoPrebuilt) expects; update the plugin for this etcd3 version`,
          );
        }
        const options = m[1] as string;
        if (!/keepCase: true/.test(options))
          throw new Error(`${args.path}: rpc.proto options changed: ${options}`);
        // Parsed with etcd3's own protobufjs, as proto-loader does.
        const json = protoJson(
          createRequire(args.path)('protobufjs') as ProtobufParser,
          join(dirname(args.path), '../proto/rpc.proto'),
        );
        // etcd3's own protobufjs (from its directory), our definitions (src/store/etcd-services.ts).
        const lean =
          `const packageDefinition = require(${JSON.stringify(ETCD_SERVICES)}).etcdServiceDefinitions(` +
          `require('protobufjs'), ${JSON.stringify(json)}, ${options});`;
        // proto-loader is then unused here (its module alone took ~13 ms to load: protobufjs's
        // descriptor extension); grpc-js loads it only for channelz and ORCA, which etcd3 does not use.
        const LOADER = 'const proto_loader_1 = require("@grpc/proto-loader");\n';
        const out = text.replace(CALL, () => lean).replace(LOADER, '');
        if (out.includes('proto_loader_1')) {
          throw new Error(
            `${args.path} uses @grpc/proto-loader beyond loading rpc.proto; update etcdProtoPrebuilt`,
          );
        }
        return { contents: out, loader: 'js' };
      });
    },
  };
}

/**
 * Node's built-in modules, where an `import` statement names them, are taken with `require` (the
 * banner's) instead. Node builds an ES module facade for a built-in by reading every export, and
 * some exports are getters that load more: `node:http`'s load undici, 19–34 ms of an agent's start
 * (measured with --cpu-prof: `import 'node:http'` 38–49 ms, `require('node:http')` 7–10 ms).
 * `require` hands over the module object; esbuild's interop reads a property only when it is used.
 */
function builtinsByRequire(): Plugin {
  return {
    name: 'builtins-by-require',
    setup(b) {
      b.onResolve({ filter: /^[a-z][a-z0-9_:/]*$/ }, (args) => {
        // The shim's own `require` is a 'require-call': left to esbuild, which keeps it external.
        if (args.kind !== 'import-statement' || !isBuiltin(args.path)) return undefined;
        return { path: args.path, namespace: 'ipk-builtin' };
      });
      b.onLoad({ filter: /.*/, namespace: 'ipk-builtin' }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.path)});`,
        loader: 'js',
      }));
    },
  };
}

/**
 * An esbuild plugin: a dependency that uses `__dirname`/`__filename` (a CommonJS module reading a
 * file of its own package, e.g. etcd3's rpc.proto) gets them defined as its original location,
 * relative to the bundle's directory `outDir` — so node_modules must be where it was at build time
 * relative to the bundle (the repository, or the image's /app with its production dependencies).
 */
function packageDirs(outDir: string): Plugin {
  return {
    name: 'package-dirs',
    setup(b) {
      b.onLoad({ filter: /[\\/]node_modules[\\/].*\.c?js$/ }, (args) => {
        const text = readFileSync(args.path, 'utf8');
        if (!/\b__(dirname|filename)\b/.test(text)) return undefined;
        const dir = relative(outDir, dirname(args.path));
        return {
          contents: `var __dirname = __ipkJoin(__ipkBundleDir, ${JSON.stringify(dir)}); var __filename = __ipkJoin(__dirname, ${JSON.stringify(basename(args.path))});\n${text}`,
          loader: 'js',
        };
      });
    },
  };
}

/**
 * Builds the native forwarder with the system C compiler (`cc`; Debian's gcc) and returns its path.
 * Linked statically when libc's static archive is there (a node's libc is then irrelevant), else
 * dynamically against glibc.
 *
 * @throws Error when no C compiler is installed (the message says which package), when it fails (with
 *   its output), or when the executable does not answer VERSION.
 */
export function buildNative(
  opts: { out?: string; ifStale?: boolean; log?: (line: string) => void } = {},
): string {
  const out = opts.out ?? NATIVE_EXECUTABLE;
  const log = opts.log ?? ((line: string) => process.stderr.write(`[build] ${line}\n`));
  if (opts.ifStale === true && !isStaleAgainst(out, [NATIVE_SRC, fileURLToPath(import.meta.url)])) {
    log(`${out} is up to date`);
    return out;
  }
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const flags = ['-O2', '-Wall', '-Wextra', '-Werror', '-s', '-o', tmp, NATIVE_SRC];
  let r = spawnSync('cc', ['-static', ...flags], { encoding: 'utf8' });
  if (r.error !== undefined) {
    throw new Error(
      'no C compiler (cc) to build the native plugin; install it: apt-get install gcc libc6-dev',
      {
        cause: r.error,
      },
    );
  }
  if (r.status !== 0 && /cannot find -lc|static/.test(r.stderr))
    r = spawnSync('cc', flags, { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`cc failed building ${NATIVE_SRC} (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  }
  try {
    smokeTest(tmp);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, out);
  log(`${out} (native, ${Math.round(statSync(out).size / 1e3)} kB)`);
  return out;
}

function isStaleAgainst(out: string, sources: string[]): boolean {
  if (!existsSync(out)) return true;
  const built = statSync(out).mtimeMs;
  return sources.some((f) => statSync(f).mtimeMs > built);
}

/** True when `out` is missing or older than a plugin source file (or this script). */
export function isStale(out: string): boolean {
  if (!existsSync(out)) return true;
  const built = statSync(out).mtimeMs;
  const sources = [
    ...readdirSync(CNI_SRC)
      // install.ts copies the executable; it is not part of it.
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'install.ts')
      .map((f) => join(CNI_SRC, f)),
    join(ROOT, 'src/errors.ts'),
    fileURLToPath(import.meta.url),
  ];
  return sources.some((f) => statSync(f).mtimeMs > built);
}

function postjectCli(): string {
  try {
    return createRequire(import.meta.url).resolve('postject/dist/cli.js');
  } catch (e) {
    throw new Error(
      `postject is not installed, and Node ${process.versions.node} needs it to make a single executable; ${POSTJECT_FIX}`,
      { cause: e },
    );
  }
}

/** Runs a build step quietly; its output is shown only when it fails. */
function run(cmd: string, args: string[], cwd: string, what: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(`${what} failed (exit ${r.status}): ${r.error?.message ?? ''}\n${r.stdout}\n${r.stderr}`);
  }
}

/** The executable must answer VERSION before it replaces a working one. */
function smokeTest(exe: string): void {
  const r = spawnSync(exe, [], {
    env: { CNI_COMMAND: 'VERSION' },
    input: '{"cniVersion":"1.1.0"}',
    encoding: 'utf8',
  });
  let ok = false;
  try {
    ok =
      r.status === 0 &&
      (JSON.parse(r.stdout) as { supportedVersions?: string[] }).supportedVersions?.includes('1.1.0') ===
        true;
  } catch {
    // Not JSON: reported below with what it printed.
  }
  if (!ok)
    throw new Error(`the built ${exe} does not answer VERSION (exit ${r.status}): ${r.stdout}${r.stderr}`);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      variant: { type: 'string', default: 'plain' },
      'no-strip': { type: 'boolean', default: false },
      'if-stale': { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  const variant = values.variant;
  if (variant !== 'plain' && variant !== 'code-cache' && variant !== 'snapshot') {
    console.error(`--variant=${variant}: write plain, code-cache or snapshot`);
    process.exit(2);
  }
  try {
    const opts: BuildOptions = { variant, strip: !values['no-strip'], ifStale: values['if-stale'] };
    if (values.out !== undefined) opts.out = values.out;
    else buildNative({ ifStale: values['if-stale'] });
    await buildCni(opts);
    if (values.out === undefined) await buildAgent();
  } catch (e) {
    console.error(`[build] ${(e as Error).message}`);
    process.exit(1);
  }
}
