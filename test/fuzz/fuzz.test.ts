/**
 * Bad input at scale: generated CNI configurations, environments and CNI_ARGS fed to the real
 * plugin code talking to a real agent, and generated objects applied through the agent. Every case
 * must end in a CNI error JSON (or a valid result), never a crash or a stack trace, and a refused
 * request must leave the store exactly as it was.
 *
 * Runs IPKEEPER_FUZZ_RUNS cases per property (default 400; the long run uses 10000).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { MemoryStore } from '../../src/store/memory.ts';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { runPlugin } from '../../src/cni/plugin.ts';
import { call } from '../../src/cli/client.ts';
import { ERRORS, IpamError } from '../../src/errors.ts';
import { installCni } from '../../src/cni/install.ts';
import { runPluginAsync } from '../e2e/harness.ts';

const RUNS = Number(process.env.IPKEEPER_FUZZ_RUNS ?? 400);
// A failure prints its seed; IPKEEPER_FUZZ_SEED=<seed> replays that run.
if (process.env.IPKEEPER_FUZZ_SEED) fc.configureGlobal({ seed: Number(process.env.IPKEEPER_FUZZ_SEED) });
const CNI_CODES = new Set(Object.values(ERRORS).map((e) => e.cni));

describe('fuzz: bad input never crashes and changes nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipk-fuzz-'));
  const socket = join(dir, 'agent.sock');
  let agent: Agent;
  let store: MemoryStore;

  before(async () => {
    store = new MemoryStore();
    agent = await startAgent({ store, socket, node: 'n1', logLevel: 'silent', defaultMetrics: false });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: 'ipkeeper.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: 'fz' },
          spec: { subnet: '10.0.0.0/16', default: true },
        },
      ],
    });
  });
  after(async () => {
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const validConf = () => ({
    cniVersion: '1.1.0',
    name: 'fuzz-net',
    type: 'macvlan',
    ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['fz'] } },
  });
  const validEnv = (): Record<string, string | undefined> => ({
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'fuzz-container',
    CNI_NETNS: '/var/run/netns/x',
    CNI_IFNAME: 'eth0',
    CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=fz;K8S_POD_UID=u',
    CNI_PATH: '/usr/lib/cni',
  });

  const junk = fc.oneof(
    fc.string(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.oneof(fc.string(), fc.integer())),
    fc.dictionary(fc.string(), fc.string()),
    fc.constantFrom('010.0.0.1', '10.0.0.1/33', '::g', '-', '', ' eth0', '../../etc', 'a'.repeat(300)),
  );
  const paths = [
    ['cniVersion'],
    ['name'],
    ['ipam'],
    ['ipam', 'type'],
    ['ipam', 'socket'],
    ['ipam', 'pools'],
    ['ipam', 'pools', 'ipv4'],
    ['ipam', 'pools', 'ipv4', '0'],
    ['ipam', 'routes'],
    ['ipam', 'timeoutMs'],
    ['ipam', 'logFile'],
    ['runtimeConfig'],
    ['runtimeConfig', 'ips'],
    ['args'],
    ['prevResult'],
  ];
  const envKeys = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_NETNS'];

  type Case =
    | { kind: 'config'; path: string[]; value: unknown }
    | { kind: 'text'; text: string }
    | { kind: 'env'; key: string; value: string | undefined }
    | { kind: 'args'; value: string };
  const cases: fc.Arbitrary<Case> = fc.oneof(
    fc.record({ kind: fc.constant('config' as const), path: fc.constantFrom(...paths), value: junk }),
    fc.record({
      kind: fc.constant('text' as const),
      text: fc.oneof(
        fc.string(),
        fc.json().map((j) => j.slice(0, -1)),
      ),
    }),
    fc.record({
      kind: fc.constant('env' as const),
      key: fc.constantFrom(...envKeys),
      value: fc.option(fc.string(), { nil: undefined }),
    }),
    fc.record({
      kind: fc.constant('args' as const),
      value: fc
        .array(
          fc.oneof(
            fc.string(),
            fc.constantFrom('=', ';', 'K8S_POD_NAME', 'IP=010.0.0.1', 'IP=10.9.9.9', 'IgnoreUnknown=1'),
          ),
          { maxLength: 6 },
        )
        .map((a) => a.join(';')),
    }),
  );

  function apply(c: Case): { env: Record<string, string | undefined>; stdin: string } {
    const env = validEnv();
    const conf: any = validConf();
    let stdin: string;
    if (c.kind === 'config') {
      let cur = conf;
      for (const k of c.path.slice(0, -1)) {
        if (cur[k] === null || typeof cur[k] !== 'object') cur[k] = {};
        cur = cur[k];
      }
      cur[c.path[c.path.length - 1] as string] = c.value;
    }
    stdin = JSON.stringify(conf);
    if (c.kind === 'text') stdin = c.text;
    if (c.kind === 'env') env[c.key] = c.value;
    if (c.kind === 'args') env.CNI_ARGS = c.value;
    return { env, stdin };
  }

  async function runCase(c: Case): Promise<void> {
    const before = (await store.list('ipclaims/')).map((e) => `${e.key}@${e.version}`);
    const { env, stdin } = apply(c);
    let out = '';
    let code: number;
    try {
      code = await runPlugin({
        env,
        readStdin: async () => stdin,
        writeStdout: (t) => (out += t),
        writeStderr: () => {},
      });
    } catch (e) {
      assert.fail(`the plugin threw (it must never): ${String(e)} for ${JSON.stringify(c)}`);
    }
    assert.doesNotMatch(out, /\n\s+at /, 'a stack trace on stdout');
    if (code === 0) {
      // The mutation happened to be valid: then the output is a result (ADD) or empty. Undo it.
      if (out.trim() !== '') assert.ok(Array.isArray(JSON.parse(out).ips), out);
      await runPlugin({
        env: { ...env, CNI_COMMAND: 'DEL' },
        readStdin: async () => stdin,
        writeStdout: () => {},
        writeStderr: () => {},
      });
      return;
    }
    assert.equal(code, 1);
    const err = JSON.parse(out);
    assert.ok(CNI_CODES.has(err.code), `unknown CNI code ${err.code} in ${out}`);
    assert.equal(typeof err.msg, 'string');
    assert.ok(err.msg.length > 10, `an unhelpful message: ${out}`);
    assert.equal(typeof err.cniVersion, 'string');
    const afterClaims = (await store.list('ipclaims/')).map((e) => `${e.key}@${e.version}`);
    assert.deepEqual(
      afterClaims,
      before,
      `a refused request changed the store: ${JSON.stringify(c)} -> ${out}`,
    );
  }

  it(`${RUNS} generated configs, environments and CNI_ARGS through the plugin and a real agent`, async () => {
    await fc.assert(fc.asyncProperty(cases, runCase), { numRuns: RUNS });
  });

  it('the installed executable answers bad input with CNI error JSON and exit 1 (process level)', async () => {
    const plugin = await installCni(join(dir, 'bin'));
    const sample = fc.sample(cases, { numRuns: 24, seed: 7 });
    for (const c of sample) {
      const { env, stdin } = apply(c);
      const before = (await store.list('ipclaims/')).length;
      const r = await runPluginAsync(plugin, {
        command: (env.CNI_COMMAND ?? '') as 'ADD',
        ...(env.CNI_CONTAINERID !== undefined ? { containerId: env.CNI_CONTAINERID } : {}),
        ...(env.CNI_IFNAME !== undefined ? { ifName: env.CNI_IFNAME } : {}),
        ...(env.CNI_NETNS !== undefined ? { netns: env.CNI_NETNS } : {}),
        ...(env.CNI_ARGS !== undefined ? { args: env.CNI_ARGS } : {}),
        config: undefined,
        rawStdin: stdin,
      });
      assert.doesNotMatch(r.stdout, /\n\s+at /);
      if (r.code === 0) continue;
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.ok(CNI_CODES.has(r.json?.code), `${JSON.stringify(c)} -> ${r.stdout}`);
      assert.equal((await store.list('ipclaims/')).length, before);
    }
  });

  it(`${RUNS} generated objects applied through the agent: refused with the field named, store unchanged`, async () => {
    const objects = fc.record({
      apiVersion: fc.oneof(fc.constant('ipkeeper.io/v1alpha1'), fc.string()),
      kind: fc.constantFrom('IPPool', 'ReservedIP', 'IPClaim', 'Pod'),
      metadata: fc.oneof(
        fc.record({ name: fc.oneof(fc.constantFrom('a', 'UPPER', '../x', 'a/b', ''), fc.string()) }),
        junk,
      ),
      spec: fc.oneof(
        fc.record(
          {
            subnet: fc.oneof(
              fc.constantFrom('10.0.0.0/8', '10.0.0.1/8', 'fd00::/64', '010.0.0.0/8'),
              fc.string(),
            ),
            ips: fc.array(junk, { maxLength: 3 }),
            vlan: junk,
          },
          { requiredKeys: [] },
        ),
        fc.record({ ips: fc.array(junk, { maxLength: 3 }) }),
        junk,
      ),
    });
    await fc.assert(
      fc.asyncProperty(objects, async (o) => {
        const before = (await store.list('')).length === 0 ? [] : [];
        void before;
        const keys = async () =>
          [...(await store.list('ippools/')), ...(await store.list('reservedips/'))].map(
            (e) => `${e.key}@${e.version}`,
          );
        const k0 = await keys();
        try {
          await call(socket, 'POST', '/v1/apply', { objects: [o] });
        } catch (e) {
          assert.ok(e instanceof IpamError, String(e));
          assert.ok(['INVALID_OBJECT'].includes(e.code), `${e.code}: ${e.message}`);
          assert.deepEqual(await keys(), k0, 'a refused apply changed the store');
          return;
        }
        // Accepted: it must have been valid; remove it so the next case starts the same.
        const info = o.kind === 'IPPool' ? 'ippools' : 'reservedips';
        await call(
          socket,
          'DELETE',
          `/v1/objects/${info}/${encodeURIComponent((o.metadata as { name: string }).name)}?force=true`,
        );
      }),
      { numRuns: RUNS },
    );
  });
});
