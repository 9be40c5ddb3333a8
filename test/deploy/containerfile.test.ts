/**
 * deploy/Containerfile, checked without a container engine (none runs on the test machines, so the
 * image is never built here): its stages, that every file it copies exists in the repository or is
 * made by the build stage where the CLI looks for it, that the CLI needs no dev dependency at run
 * time, and — on the runtime stage's files laid out as the image has them — that its entrypoint (the
 * bundled CLI) installs the plugin, runs an agent on sqlite and on a real etcd, and answers a CNI ADD
 * through the native forwarder.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { BUILT_EXECUTABLE } from '../../src/cni/install.ts';
import { buildCli } from '../../src/cli/main.ts';
import { ROOT } from '../../src/deploy/chart.ts';
import {
  AGENT_BUNDLE,
  AGENT_NODE_FLAGS,
  AGENT_BUNDLE_CODE,
  NATIVE_EXECUTABLE,
  buildAgent,
  buildNative,
} from '../../scripts/build.ts';
import { startAgent, runPlugin } from '../e2e/harness.ts';
import { startEtcdCluster } from '../etcd/cluster.ts';

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  workdir: string;
  steps: Instruction[];
}

/** Instructions with their continuation lines joined; comments and blank lines dropped. */
export function parseContainerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let l = lines[i] as string;
    if (/^\s*(#|$)/.test(l)) continue;
    while (l.endsWith('\\') && i + 1 < lines.length) l = `${l.slice(0, -1)} ${lines[++i]}`;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(l);
    assert.ok(m, `Containerfile line ${start} is not an instruction: ${l}`);
    const ins = { op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start };
    if (ins.op === 'FROM') {
      const [from, as, name] = ins.args.split(/\s+/);
      assert.ok(from && (as === undefined || /^as$/i.test(as)), `line ${start}: FROM ${ins.args}`);
      stages.push({ from, ...(name ? { name } : {}), workdir: '/', steps: [] });
      continue;
    }
    const stage = stages[stages.length - 1];
    assert.ok(stage, `line ${start}: ${ins.op} before FROM`);
    if (ins.op === 'WORKDIR') stage.workdir = resolve(stage.workdir, ins.args);
    stage.steps.push(ins);
  }
  return stages;
}

/** COPY's flags, sources and destination (exec form not used here). */
function copyParts(ins: Instruction): { from?: string; sources: string[]; dest: string } {
  const words = ins.args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  assert.deepEqual(
    flags.filter((f) => !f.startsWith('--from=')),
    [],
    `line ${ins.line}: unexpected COPY flags`,
  );
  assert.ok(rest.length >= 2, `line ${ins.line}: COPY needs a source and a destination`);
  return { ...(from ? { from } : {}), sources: rest.slice(0, -1), dest: rest[rest.length - 1] as string };
}

const text = readFileSync(join(ROOT, 'deploy/Containerfile'), 'utf8');
const stages = parseContainerfile(text);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const [build, runtime] = stages as [Stage, Stage];

describe('deploy/Containerfile (structure only: no container engine here, the image is not built)', () => {
  it('two stages: a build stage on node:24-bookworm, the runtime on node:24-bookworm-slim', () => {
    assert.equal(stages.length, 2);
    assert.equal(build.from, 'node:24-bookworm');
    assert.equal(build.name, 'build');
    assert.equal(runtime.from, 'node:24-bookworm-slim');
    // The image's Node is the one the project is pinned to.
    assert.equal(pkg.devDependencies.node?.split('.')[0], '24');
  });

  it('the build stage installs everything, then runs `npm run build`', () => {
    const runs = build.steps.filter((s) => s.op === 'RUN').map((s) => s.args);
    assert.deepEqual(runs, ['npm ci', 'npm run build']);
    assert.equal(pkg.scripts.build, 'node scripts/build.ts');
  });

  it('every COPY from the context names files that exist in the repository', () => {
    const sources = stages
      .flatMap((s) => s.steps.filter((i) => i.op === 'COPY').map(copyParts))
      .filter((c) => !c.from);
    assert.ok(sources.length >= 6);
    for (const c of sources)
      for (const src of c.sources)
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: no such file in the repository`);
    // What `npm run build` needs: the C forwarder, the build script, the CLI's entry and sources.
    const buildCopies = build.steps.filter((i) => i.op === 'COPY').flatMap((i) => copyParts(i).sources);
    for (const need of ['package.json', 'package-lock.json', 'native/', 'scripts/', 'bin/', 'src/'])
      assert.ok(buildCopies.includes(need), `the build stage lacks ${need}`);
  });

  it('the runtime stage gets the native plugin and the bundled CLI from the build stage, where the CLI looks for them', () => {
    const fromBuild = runtime.steps
      .filter((i) => i.op === 'COPY')
      .map(copyParts)
      .filter((c) => c.from === 'build');
    const built = (file: string) => join(build.workdir, relative(ROOT, file));
    const inImage = (file: string) => join(runtime.workdir, relative(ROOT, file));
    assert.deepEqual(
      fromBuild.map((c) => [c.sources, resolve(runtime.workdir, c.dest)]),
      [
        [[built(NATIVE_EXECUTABLE)], inImage(BUILT_EXECUTABLE)],
        [[`${built(dirname(AGENT_BUNDLE))}/`], inImage(dirname(AGENT_BUNDLE))],
      ],
    );
    // The launcher imports the bundle beside it: both come with the directory.
    assert.equal(dirname(AGENT_BUNDLE_CODE), dirname(AGENT_BUNDLE));
    // No scripts/ in the image: install-cni would otherwise try to rebuild the plugin (needs esbuild, cc).
    const copied = runtime.steps.filter((i) => i.op === 'COPY').flatMap((i) => copyParts(i).sources);
    assert.ok(!copied.some((s) => s.startsWith('scripts')), 'the runtime stage copies scripts/');
  });

  it('the runtime installs production dependencies only and runs as a non-root user', () => {
    const runs = runtime.steps.filter((s) => s.op === 'RUN').map((s) => s.args);
    assert.deepEqual(runs, ['npm ci --omit=dev && npm cache clean --force']);
    const users = runtime.steps.filter((s) => s.op === 'USER').map((s) => s.args);
    assert.deepEqual(users, ['1000:1000']);
  });

  it('the entrypoint runs the bundled CLI, whose commands are the ones the pods call', () => {
    const entry = runtime.steps.filter((s) => s.op === 'ENTRYPOINT');
    assert.equal(entry.length, 1);
    const argv = JSON.parse((entry[0] as Instruction).args) as string[];
    assert.deepEqual(argv, [
      'node',
      ...AGENT_NODE_FLAGS,
      join(runtime.workdir, relative(ROOT, AGENT_BUNDLE)),
    ]);
    const names = buildCli().commands.map((c) => c.name());
    for (const c of ['agent', 'controller', 'install-cni'])
      assert.ok(names.includes(c), `the CLI has no \`${c}\` command`);
  });

  it('the CLI needs no dev dependency at run time (the bundle loads some from node_modules)', () => {
    // esbuild bundles the packages it can; the Kubernetes client stays outside and etcd3 reads its
    // .proto files from node_modules, which `npm ci --omit=dev` fills with production packages only.
    // So every package the CLI imports must be a production dependency.
    const seen = new Set<string>();
    const packages = new Set<string>();
    const walk = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(file, 'utf8');
      // Static imports and re-exports that are not type-only, and dynamic imports of literal paths.
      const specs = [
        ...src.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm),
        ...src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
      ].map((m) => m[1] as string);
      for (const spec of specs) {
        if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
        else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
          packages.add(
            spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string),
          );
        }
      }
    };
    walk(join(ROOT, 'bin/ipkeeper.ts'));
    assert.ok(seen.size > 10, `only ${seen.size} files reached`);
    assert.ok(packages.has('@kubernetes/client-node') && packages.has('etcd3'), [...packages].join(' '));
    const copied = runtime.steps
      .filter((i) => i.op === 'COPY' && !copyParts(i).from)
      .flatMap((i) => copyParts(i).sources);
    assert.ok(copied.includes('package.json'), 'package.json ("type": "module") is not in the image');
    const dev = [...packages].filter((p) => !(p in pkg.dependencies));
    assert.deepEqual(
      dev,
      [],
      'the CLI imports packages that are not production dependencies (npm ci --omit=dev leaves them out)',
    );
  });

  it("the runtime stage's files, laid out as the image has them: install-cni, an agent on sqlite and on etcd, a CNI ADD through the forwarder", async () => {
    // The image's /app: what the runtime stage copies from the context, and the build stage's files
    // (built here as `npm run build` does). node_modules is linked rather than `npm ci --omit=dev`-ed
    // (no registry in tests); the test above checks that the CLI needs only production dependencies.
    const app = mkdtempSync(join(tmpdir(), 'ipk-image-'));
    const stops: (() => Promise<void>)[] = [];
    try {
      buildNative({ ifStale: true, log: () => {} });
      await buildAgent({ log: () => {} });
      for (const c of runtime.steps.filter((i) => i.op === 'COPY').map(copyParts)) {
        if (c.from === 'build') {
          const src = join(ROOT, relative(build.workdir, c.sources[0] as string));
          mkdirSync(dirname(join(app, c.dest)), { recursive: true });
          cpSync(src, join(app, c.dest), { recursive: true });
        } else {
          // Docker's rules: a directory's contents go into the destination; files into a destination
          // ending in `/` keep their names.
          for (const src of c.sources) {
            const from = join(ROOT, src);
            const to =
              c.dest.endsWith('/') && !statSync(from).isDirectory() ? join(c.dest, basename(src)) : c.dest;
            cpSync(from, join(app, to), { recursive: true });
          }
        }
      }
      symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
      assert.ok(!existsSync(join(app, 'scripts')) && !existsSync(join(app, 'src')));
      const entry = JSON.parse(
        (runtime.steps.find((s) => s.op === 'ENTRYPOINT') as Instruction).args,
      ) as string[];
      const cliPath = join(app, relative(runtime.workdir, entry[entry.length - 1] as string));
      const run = (...args: string[]) =>
        spawnSync(process.execPath, [...entry.slice(1, -1), cliPath, ...args], {
          encoding: 'utf8',
          cwd: app,
        });
      const cniBin = join(app, 'host-cni-bin');
      const r = run('install-cni', '--dir', cniBin);
      assert.equal(r.status, 0, r.stderr);
      const installed = join(cniBin, 'ipkeeper');
      assert.equal(statSync(installed).mode & 0o777, 0o755);
      assert.deepEqual(readFileSync(installed), readFileSync(join(app, 'dist/ipkeeper-cni')));
      for (const cmd of ['agent', 'controller']) {
        const h = run(cmd, '--help');
        assert.equal(h.status, 0, `${cmd} --help: ${h.stderr}`);
      }

      const etcd = await startEtcdCluster(1);
      stops.push(() => etcd.stop(0));
      const pools = join(app, 'pools.yaml');
      cpSync(join(ROOT, 'examples/demo-pools.yaml'), pools);
      for (const store of [`sqlite:${join(app, 'state.db')}`, etcd.url]) {
        const socket = join(app, `agent-${randomBytes(3).toString('hex')}.sock`);
        const agent = await startAgent({ store, socket, node: 'node1', cli: cliPath, cwd: app });
        stops.push(() => agent.kill());
        const a = run('apply', '-f', pools, '--socket', socket);
        assert.equal(a.status, 0, `${store}: apply: ${a.stderr}`);
        const config = {
          cniVersion: '1.0.0',
          name: 'image-test',
          type: 'bridge',
          ipam: { type: 'ipkeeper', socket },
        };
        const add = runPlugin(installed, {
          command: 'ADD',
          containerId: `c-${randomBytes(4).toString('hex')}`,
          netns: '/var/run/netns/none',
          ifName: 'eth0',
          config,
        });
        assert.equal(
          add.code,
          0,
          `${store}: ADD through the forwarder: ${add.stdout}${add.stderr}\n${agent.log()}`,
        );
        assert.ok(add.json?.ips?.length >= 1, `${store}: no address in ${add.stdout}`);
        await agent.kill();
        stops.pop();
      }
    } finally {
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
      rmSync(app, { recursive: true, force: true });
    }
  });
});
