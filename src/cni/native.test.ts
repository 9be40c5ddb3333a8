/**
 * The native forwarder (native/ipkeeper-cni.c, built by scripts/build.ts) against the reference, the
 * TypeScript plugin run as its own process (`node src/cni/main.ts`): for the same environment, stdin
 * and agent, both must print the same stdout and exit with the same code — the forwarder only moves
 * the call into the agent (`/v1/cni/exec`), it must not change what the runtime sees. Then what only
 * the forwarder does: VERSION without an agent, no agent, an agent that never answers, a socket path
 * too long for a unix socket, and odd bytes in the config and the environment.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNative } from '../../scripts/build.ts';
import { MemoryStore } from '../store/memory.ts';
import { call } from '../cli/client.ts';
import { startAgent, type Agent } from '../agent/server.ts';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[], env: Record<string, string>, stdin: string): Promise<Out> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), {
      env: { PATH: '/usr/bin:/bin', ...env },
      stdio: 'pipe',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('the native forwarder', () => {
  let dir: string;
  let exe: string;
  let socket: string;
  let agent: Agent;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ipk-native-'));
    exe = buildNative({ out: join(dir, 'ipkeeper-cni'), log: () => {} });
    socket = join(dir, 'run', 'agent.sock');
    agent = await startAgent({
      store: new MemoryStore(),
      socket,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
    });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: 'ipkeeper.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: 'v4' },
          spec: { subnet: '10.9.0.0/24', gateway: '10.9.0.1' },
        },
        {
          apiVersion: 'ipkeeper.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: 'v6' },
          spec: { subnet: 'fd00:9::/120' },
        },
      ],
    });
  });
  after(async () => {
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (over: Record<string, string> = {}): Record<string, string> => ({
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: 'c0ffee',
    CNI_IFNAME: 'eth0',
    CNI_NETNS: '/var/run/netns/x',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u-1',
    ...over,
  });
  const conf = (over: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): string =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'macvlan-net',
      ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['v4'], ipv6: ['v6'] }, ...ipam },
      ...over,
    });

  /** Runs the forwarder, then the reference, with the same input; they must agree. */
  async function same(e: Record<string, string>, stdin: string): Promise<Out> {
    const native = await run([exe], e, stdin);
    const node = await run([process.execPath, MAIN], e, stdin);
    assert.equal(native.stdout, node.stdout, `stdout differs; native stderr: ${native.stderr}`);
    assert.equal(native.code, node.code, 'exit code differs');
    for (const line of native.stderr.split('\n').filter(Boolean)) JSON.parse(line);
    return native;
  }

  const cases: {
    name: string;
    env: Record<string, string>;
    stdin: () => string;
    code: number;
    cni?: number;
  }[] = [
    { name: 'ADD, dual stack, 1.0.0', env: env(), stdin: () => conf(), code: 0 },
    { name: 'ADD again: the same result (idempotent)', env: env(), stdin: () => conf(), code: 0 },
    {
      name: 'ADD, result as 0.3.1',
      env: env({ CNI_CONTAINERID: 'c2' }),
      stdin: () => conf({ cniVersion: '0.3.1' }),
      code: 0,
    },
    { name: 'CHECK of what is held', env: env({ CNI_COMMAND: 'CHECK' }), stdin: () => conf(), code: 0 },
    {
      name: 'CHECK of what is not held',
      env: env({ CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'nope' }),
      stdin: () => conf(),
      code: 1,
    },
    {
      name: 'STATUS',
      env: env({ CNI_COMMAND: 'STATUS' }),
      stdin: () => conf({ cniVersion: '1.1.0' }),
      code: 0,
    },
    { name: 'DEL', env: env({ CNI_COMMAND: 'DEL' }), stdin: () => conf(), code: 0 },
    { name: 'DEL again', env: env({ CNI_COMMAND: 'DEL' }), stdin: () => conf(), code: 0 },
    { name: 'a config without name', env: env(), stdin: () => conf({ name: undefined }), code: 1, cni: 7 },
    {
      // Broken after the ipam section: the forwarder still finds the socket, the agent says what is wrong.
      name: 'a config that is not JSON',
      env: env(),
      stdin: () => `{"cniVersion": "1.0.0", "ipam": {"socket": ${JSON.stringify(socket)}}, "name": }`,
      code: 1,
      cni: 6,
    },
    { name: 'an unknown cniVersion', env: env(), stdin: () => conf({ cniVersion: '9.9.9' }), code: 1 },
    { name: 'no CNI_CONTAINERID', env: env({ CNI_CONTAINERID: '' }), stdin: () => conf(), code: 1 },
    { name: 'an unknown CNI_COMMAND', env: env({ CNI_COMMAND: 'FROB' }), stdin: () => conf(), code: 1 },
    {
      name: 'a pool that does not exist',
      env: env({ CNI_CONTAINERID: 'c3' }),
      stdin: () => conf({}, { pools: { ipv4: ['nope'] } }),
      code: 1,
    },
    {
      name: 'quotes, backslashes, control and non-ASCII characters in config and args',
      env: env({
        CNI_CONTAINERID: 'c4',
        CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=wéb-"0"\\x',
      }),
      stdin: () => conf({ note: 'tab\there "q" \\ \u0001 ünïcødé ✓', pad: 'x'.repeat(200_000) }),
      code: 0,
    },
    {
      name: 'GC keeps the valid attachments',
      env: env({ CNI_COMMAND: 'GC' }),
      stdin: () =>
        conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'c4', ifname: 'eth0' }] }),
      code: 0,
    },
  ];
  for (const c of cases) {
    it(`answers like the TypeScript plugin: ${c.name}`, async () => {
      const out = await same(c.env, c.stdin());
      assert.equal(out.code, c.code, `exit code; stdout=${out.stdout}`);
      if (c.cni !== undefined) assert.equal((JSON.parse(out.stdout) as { code: number }).code, c.cni);
    });
  }

  it('answers VERSION itself, with no agent and any stdin', async () => {
    for (const [stdin, v] of [
      ['{"cniVersion":"0.4.0"}', '0.4.0'],
      ['{"cniVersion":"7.0.0"}', '1.1.0'],
      ['not json', '1.1.0'],
      ['', '1.1.0'],
    ] as const) {
      const out = await run([exe], { CNI_COMMAND: 'VERSION' }, stdin);
      assert.equal(out.code, 0);
      assert.deepEqual(JSON.parse(out.stdout), {
        cniVersion: v,
        supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
      });
    }
  });

  it('says the agent is unavailable (CNI 11) when nothing listens, naming the socket', async () => {
    const missing = join(dir, 'missing.sock');
    const out = await run([exe], env(), conf({ cniVersion: '0.4.0' }, { socket: missing }));
    assert.equal(out.code, 1);
    const e = JSON.parse(out.stdout) as { cniVersion: string; code: number; msg: string; details: string };
    assert.deepEqual(
      { v: e.cniVersion, code: e.code, details: e.details },
      { v: '0.4.0', code: 11, details: 'AGENT_UNAVAILABLE' },
    );
    assert.match(e.msg, new RegExp(`socket ${missing} does not exist.*ipkeeper agent`));
  });

  it('falls back to the default socket when the config is too broken to name one', async () => {
    // Documented difference: the reference would say DECODE_FAILED; the forwarder cannot read the
    // socket out of garbage, so it asks the default one, which here does not exist.
    const out = await run([exe], env(), '{"cniVersion": "0.4.0", ');
    assert.equal(out.code, 1);
    const e = JSON.parse(out.stdout) as { cniVersion: string; code: number; msg: string };
    assert.equal(e.code, 11);
    assert.equal(e.cniVersion, '0.4.0');
    assert.match(e.msg, /\/run\/ipkeeper\/ipkeeper\.sock/);
  });

  it('gives up at ipam.timeoutMs on an agent that never answers (CNI 11)', async () => {
    const hung = join(dir, 'hung.sock');
    const server: Server = createServer(() => {
      // Accepts and says nothing, like an agent stuck behind a dead store.
    });
    await new Promise<void>((r) => server.listen(hung, r));
    try {
      const out = await run([exe], env(), conf({}, { socket: hung, timeoutMs: 300 }));
      assert.equal(out.code, 1);
      const e = JSON.parse(out.stdout) as { code: number; msg: string };
      assert.equal(e.code, 11);
      assert.match(e.msg, /did not answer on socket .* within 300 ms/);
    } finally {
      server.close();
    }
  });

  it('refuses a socket path longer than a unix socket allows, naming the field (CNI 7)', async () => {
    const long = '/run/' + 'x'.repeat(150) + '.sock';
    const out = await run([exe], env(), conf({}, { socket: long }));
    assert.equal(out.code, 1);
    const e = JSON.parse(out.stdout) as { code: number; msg: string; details: string };
    assert.equal(e.code, 7);
    assert.equal(e.details, 'INVALID_CONFIG');
    assert.match(e.msg, /ipam\.socket .* at most 107/);
  });
});
