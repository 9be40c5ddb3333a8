/**
 * The whole test suite: `npm test`. Installs missing system packages, type-checks, lints, then runs
 * every `*.test.ts` under src/, test/ and bench/ with node's test runner. Fails when any test fails,
 * when the run counts zero tests, or when the type check, lint or formatting check (prettier) fails.
 * Pass file paths to run only those.
 *
 * Env: IPKEEPER_TEST_KUBECONFIG=path runs the Kubernetes-mode tests against that cluster instead of
 * the locally built kube-apiserver.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, mkdtempSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { ensurePackages, isRoot } from './lib/system.ts';

const root = new URL('..', import.meta.url).pathname;

function findTests(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (name === 'node_modules' || name.startsWith('.')) continue;
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function run(cmd: string, args: string[]): number {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
  return r.status ?? 1;
}

const started = Date.now();
const only = process.argv.slice(2);
if (isRoot()) ensurePackages();
else console.error('[test] not root: network-namespace tests will be reported as skipped');

if (only.length === 0) {
  console.error('[test] tsc --noEmit');
  if (run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit']) !== 0)
    process.exit(1);
  console.error('[test] eslint');
  if (run(process.execPath, [join(root, 'node_modules/eslint/bin/eslint.js'), '.']) !== 0) process.exit(1);
  console.error('[test] prettier --check');
  if (
    run(process.execPath, [
      join(root, 'node_modules/prettier/bin/prettier.cjs'),
      '--check',
      '--log-level=warn',
      '.',
    ]) !== 0
  ) {
    console.error('[test] formatting differs: run `npx prettier --write .`');
    process.exit(1);
  }
}

const files = only.length > 0 ? only : ['src', 'test', 'bench'].flatMap((dir) => findTests(join(root, dir)));
if (files.length === 0) {
  console.error('[test] no test files found');
  process.exit(1);
}
const tapDir = mkdtempSync(join(tmpdir(), 'ipkeeper-test-'));
const tap = join(tapDir, 'results.tap');
const concurrency = process.env.IPKEEPER_TEST_CONCURRENCY ?? '2';
const code = run(process.execPath, [
  '--test',
  `--test-concurrency=${concurrency}`,
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  '--test-reporter=tap',
  `--test-reporter-destination=${tap}`,
  ...files,
]);
const summary = readFileSync(tap, 'utf8');
const count = (k: string): number => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(summary)?.[1] ?? 0);
const tests = count('tests');
const pass = count('pass');
// A test cancelled (its suite's timeout ran out, or the file ended with it still running) failed.
const fail = count('fail') + count('cancelled');
const skipped = count('skipped') + count('todo');
const secs = Math.round((Date.now() - started) / 1000);
console.log(`\n[test] ${files.length} files, ${tests} tests in ${secs}s`);
console.log(`${pass} passed, ${fail} failed, ${skipped} skipped`);
if (tests === 0) {
  console.error('[test] the run counted zero tests: failing');
  process.exit(1);
}
process.exit(code !== 0 || fail > 0 ? 1 : 0);
