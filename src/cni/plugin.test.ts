import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from './plugin.ts';
import type { PluginIo } from './plugin.ts';
import type { CallOptions } from './client.ts';
import type { CniRequest, IpamResult } from './protocol.ts';
import { IpamError } from '../errors.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  calls: { path: string; body: CniRequest; opts: CallOptions }[];
}

const NET = {
  cniVersion: '1.1.0',
  name: 'macvlan-net',
  ipam: { type: 'ipkeeper', socket: '/run/t/agent.sock' },
};
const ENV = {
  CNI_CONTAINERID: 'c0ffee',
  CNI_IFNAME: 'net1',
  CNI_NETNS: '/var/run/netns/pod',
  CNI_PATH: '/opt/cni/bin',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u-1',
};
const RESULT: IpamResult = {
  ips: [{ address: '10.6.168.133/16', gateway: '10.6.0.1', pool: 'v4' }],
  routes: [],
};

/** Runs the plugin in-process; `answer` plays the agent call (a function, not a server). */
async function run(
  env: Record<string, string | undefined>,
  stdin: string | Error,
  answer: (path: string) => unknown = () => ({}),
): Promise<Run> {
  const r: Run = { code: -1, stdout: '', stderr: '', calls: [] };
  const io: PluginIo = {
    env,
    readStdin: () => (stdin instanceof Error ? Promise.reject(stdin) : Promise.resolve(stdin)),
    writeStdout: (t) => (r.stdout += t),
    writeStderr: (t) => (r.stderr += t),
    post: async (path, body, opts) => {
      r.calls.push({ path, body: body as CniRequest, opts });
      const a = answer(path);
      if (a instanceof Error) throw a;
      return a;
    },
    now: () => 1000,
  };
  r.code = await runPlugin(io);
  return r;
}

function cniError(r: Run): { cniVersion: string; code: number; msg: string; details: string } {
  assert.equal(r.code, 1);
  assert.equal(r.stdout.split('\n').filter(Boolean).length, 1, 'one JSON line on stdout');
  return JSON.parse(r.stdout) as { cniVersion: string; code: number; msg: string; details: string };
}

describe('runPlugin', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipkeeper-cni-plugin-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('VERSION echoes the asked version and never calls the agent', async () => {
    const r = await run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.3.1"}');
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout), {
      cniVersion: '0.3.1',
      supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    });
    assert.equal(r.calls.length, 0);
  });

  it('VERSION answers whatever stdin holds', async () => {
    for (const stdin of ['', 'garbage', '{"cniVersion":"0.1.0"}']) {
      const r = await run({ CNI_COMMAND: 'VERSION' }, stdin);
      assert.equal(r.code, 0);
      assert.equal((JSON.parse(r.stdout) as { cniVersion: string }).cniVersion, '1.1.0', stdin);
    }
  });

  it('ADD sends the whole request and prints the result in the config version', async () => {
    const net = {
      ...NET,
      cniVersion: '0.3.1',
      ipam: { ...NET.ipam, pools: { ipv4: ['v4'] }, routes: [{ dst: '172.16.0.0/12' }] },
      runtimeConfig: { ips: ['10.6.168.133/16'] },
    };
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, JSON.stringify(net), () => RESULT);
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(r.calls[0]?.path, '/v1/cni/add');
    assert.deepEqual(r.calls[0]?.body, {
      command: 'ADD',
      network: 'macvlan-net',
      cniVersion: '0.3.1',
      containerId: 'c0ffee',
      ifName: 'net1',
      netns: '/var/run/netns/pod',
      args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0', K8S_POD_UID: 'u-1' },
      ipam: net.ipam,
      requestedIps: ['10.6.168.133/16'],
    });
    assert.deepEqual(r.calls[0]?.opts, { socket: '/run/t/agent.sock' });
    assert.deepEqual(JSON.parse(r.stdout), {
      cniVersion: '0.3.1',
      ips: [{ version: '4', address: '10.6.168.133/16', gateway: '10.6.0.1' }],
      routes: [{ dst: '172.16.0.0/12' }],
    });
    const line = JSON.parse(r.stderr) as Record<string, unknown>;
    assert.equal(line.event, 'ADD');
    assert.equal(line.level, 'info');
    assert.equal(line.pod, 'default/web-0');
    assert.equal(line.containerId, 'c0ffee');
    assert.equal(line.ifName, 'net1');
    assert.deepEqual(line.ips, ['10.6.168.133/16']);
  });

  it('uses the default socket and the configured timeout', async () => {
    const r = await run(
      { ...ENV, CNI_COMMAND: 'DEL' },
      JSON.stringify({ ...NET, ipam: { type: 'ipkeeper', timeoutMs: 1234 } }),
    );
    assert.deepEqual(r.calls[0]?.opts, { socket: '/run/ipkeeper/ipkeeper.sock', timeoutMs: 1234 });
  });

  it('logs to ipam.logFile instead of stderr', async () => {
    const logFile = join(dir, 'cni.log');
    const net = { ...NET, ipam: { ...NET.ipam, logFile } };
    const ok = await run({ ...ENV, CNI_COMMAND: 'ADD' }, JSON.stringify(net), () => RESULT);
    const bad = await run(
      { ...ENV, CNI_COMMAND: 'ADD' },
      JSON.stringify(net),
      () => new IpamError('POOL_EXHAUSTED', 'no free address in pool `v4`'),
    );
    assert.equal(ok.stderr + bad.stderr, '');
    const lines = readFileSync(logFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => [l.level, l.event, l.code]),
      [
        ['info', 'ADD', undefined],
        ['error', 'ADD', 'POOL_EXHAUSTED'],
      ],
    );
    assert.equal(lines[1]?.cniCode, 100);
  });

  it('logs an error found before validation to the log file the config names', async () => {
    const logFile = join(dir, 'early.log');
    const r = await run(
      { ...ENV, CNI_COMMAND: 'ADD', CNI_IFNAME: undefined },
      JSON.stringify({ ...NET, name: 42, ipam: { ...NET.ipam, logFile } }),
    );
    assert.equal(cniError(r).code, 4);
    assert.equal(r.stderr, '');
    assert.equal((JSON.parse(readFileSync(logFile, 'utf8')) as { code: string }).code, 'INVALID_ENV');
  });

  it('falls back to stderr when the log file cannot be written', async () => {
    const net = { ...NET, ipam: { ...NET.ipam, logFile: join(dir, 'no/such/dir/cni.log') } };
    const r = await run({ ...ENV, CNI_COMMAND: 'DEL' }, JSON.stringify(net));
    assert.equal(r.code, 0);
    const events = r.stderr
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { event: string }).event);
    assert.deepEqual(events, ['log-file-failed', 'DEL']);
  });

  it('DEL prints nothing and exits 0', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'DEL' }, JSON.stringify(NET));
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
    assert.equal(r.calls[0]?.path, '/v1/cni/del');
  });

  it('DEL passes a garbage container id and interface to the agent rather than refusing', async () => {
    const r = await run(
      {
        ...ENV,
        CNI_COMMAND: 'DEL',
        CNI_CONTAINERID: '../../etc;$x',
        CNI_IFNAME: 'a/very/long/interface/name',
      },
      JSON.stringify(NET),
    );
    assert.equal(r.code, 0);
    assert.equal(r.calls[0]?.body.containerId, '../../etc;$x');
  });

  it('DEL with the agent unreachable is code 11, so the runtime retries', async () => {
    const r = await run(
      { ...ENV, CNI_COMMAND: 'DEL' },
      JSON.stringify(NET),
      () =>
        new IpamError(
          'AGENT_UNAVAILABLE',
          'cannot reach the ipkeeper agent: socket /run/t/agent.sock does not exist',
        ),
    );
    assert.equal(cniError(r).code, 11);
  });

  it('CHECK asks the agent and prints nothing', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'CHECK' }, JSON.stringify(NET));
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
    assert.equal(r.calls[0]?.path, '/v1/cni/check');
  });

  it('CHECK reports the agent error', async () => {
    const r = await run(
      { ...ENV, CNI_COMMAND: 'CHECK' },
      JSON.stringify(NET),
      () => new IpamError('NOT_FOUND', 'net1 of container c0ffee holds no address'),
    );
    assert.equal(cniError(r).code, 107);
  });

  it('GC sends the valid attachments and needs no container id', async () => {
    const attachments = [{ containerID: 'c1', ifname: 'eth0' }];
    const r = await run(
      { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' },
      JSON.stringify({ ...NET, 'cni.dev/valid-attachments': attachments }),
      () => ({ released: 2 }),
    );
    assert.equal(r.code, 0, r.stdout);
    assert.equal(r.stdout, '');
    assert.equal(r.calls[0]?.path, '/v1/cni/gc');
    assert.deepEqual(r.calls[0]?.body.validAttachments, attachments);
    assert.equal(r.calls[0]?.body.containerId, undefined);
    assert.equal((JSON.parse(r.stderr) as { released: number }).released, 2);
  });

  const statusCases: { name: string; answer: unknown; cni: number }[] = [
    { name: 'ready', answer: {}, cni: 0 },
    {
      name: 'agent unreachable',
      answer: new IpamError(
        'AGENT_UNAVAILABLE',
        'cannot reach the ipkeeper agent: socket /run/t/agent.sock does not exist',
      ),
      cni: 50,
    },
    { name: 'store down', answer: new IpamError('STORE_UNAVAILABLE', 'etcd did not answer'), cni: 50 },
    { name: 'agent busy', answer: new IpamError('BUSY', 'over the limit'), cni: 50 },
    {
      name: 'agent not ready',
      answer: new IpamError('NOT_READY', 'node pool has no addresses yet'),
      cni: 50,
    },
  ];
  for (const c of statusCases) {
    it(`STATUS, ${c.name}: code ${c.cni}`, async () => {
      const r = await run({ CNI_COMMAND: 'STATUS' }, JSON.stringify(NET), () => c.answer);
      assert.equal(r.calls[0]?.path, '/v1/cni/status');
      if (c.cni === 0) {
        assert.equal(r.code, 0);
        assert.equal(r.stdout, '');
        return;
      }
      const e = cniError(r);
      assert.equal(e.code, c.cni);
      assert.ok(e.msg.includes((c.answer as Error).message), e.msg);
    });
  }

  it('an agent error keeps its code and message; details is the ipkeeper code', async () => {
    const r = await run(
      { ...ENV, CNI_COMMAND: 'ADD' },
      JSON.stringify({ ...NET, cniVersion: '0.4.0' }),
      () => new IpamError('POOL_EXHAUSTED', 'no free address in pool `v4` (3 addresses, 3 in use)'),
    );
    assert.deepEqual(cniError(r), {
      cniVersion: '0.4.0',
      code: 100,
      msg: 'no free address in pool `v4` (3 addresses, 3 in use)',
      details: 'POOL_EXHAUSTED',
    });
  });

  it('an unexpected exception is code 110 with no stack on stdout, and the stack in the log', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, JSON.stringify(NET), () => new TypeError('boom'));
    const e = cniError(r);
    assert.equal(e.code, 110);
    assert.match(e.msg, /unexpected failure in the ipkeeper CNI plugin: boom; this is a bug/);
    assert.doesNotMatch(r.stdout, /\n\s+at /);
    assert.match((JSON.parse(r.stderr) as { stack: string }).stack, /TypeError: boom/);
  });

  it('a stdin read failure is code 5', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'ADD' }, new Error('EIO: i/o error, read'));
    assert.equal(cniError(r).code, 5);
  });

  const envCases: { name: string; env: Record<string, string | undefined>; says: RegExp }[] = [
    { name: 'CNI_COMMAND missing', env: { ...ENV, CNI_COMMAND: undefined }, says: /^CNI_COMMAND: missing/ },
    { name: 'CNI_COMMAND empty', env: { ...ENV, CNI_COMMAND: '' }, says: /^CNI_COMMAND: missing/ },
    {
      name: 'CNI_COMMAND unknown',
      env: { ...ENV, CNI_COMMAND: 'add' },
      says: /^CNI_COMMAND: "add" is not a CNI command; set it to one of ADD, DEL, CHECK, GC, STATUS, VERSION/,
    },
    {
      name: 'CNI_CONTAINERID missing on ADD',
      env: { ...ENV, CNI_COMMAND: 'ADD', CNI_CONTAINERID: undefined },
      says: /^CNI_CONTAINERID: missing; the runtime must set CNI_CONTAINERID for ADD/,
    },
    {
      name: 'CNI_IFNAME missing on ADD',
      env: { ...ENV, CNI_COMMAND: 'ADD', CNI_IFNAME: undefined },
      says: /^CNI_IFNAME: missing/,
    },
    {
      name: 'CNI_IFNAME missing on DEL',
      env: { ...ENV, CNI_COMMAND: 'DEL', CNI_IFNAME: '' },
      says: /^CNI_IFNAME: missing/,
    },
    {
      name: 'CNI_CONTAINERID missing on CHECK',
      env: { ...ENV, CNI_COMMAND: 'CHECK', CNI_CONTAINERID: undefined },
      says: /^CNI_CONTAINERID: missing/,
    },
    {
      name: 'CNI_IFNAME of 16 characters on ADD',
      env: { ...ENV, CNI_COMMAND: 'ADD', CNI_IFNAME: 'a'.repeat(16) },
      says: /^CNI_IFNAME: "a{16}" is longer than 15/,
    },
    {
      name: 'CNI_IFNAME with a slash on CHECK',
      env: { ...ENV, CNI_COMMAND: 'CHECK', CNI_IFNAME: 'eth/0' },
      says: /^CNI_IFNAME: .*contains \//,
    },
    {
      name: 'CNI_IFNAME ..',
      env: { ...ENV, CNI_COMMAND: 'ADD', CNI_IFNAME: '..' },
      says: /^CNI_IFNAME: "\.\." is not allowed/,
    },
    {
      name: 'CNI_CONTAINERID garbage on ADD',
      env: { ...ENV, CNI_COMMAND: 'ADD', CNI_CONTAINERID: '-x' },
      says: /^CNI_CONTAINERID: "-x" is not a container id/,
    },
    {
      name: 'CNI_ARGS malformed',
      env: { ...ENV, CNI_COMMAND: 'ADD', CNI_ARGS: 'K8S_POD_NAME=a;oops' },
      says: /^CNI_ARGS: the pair "oops" has no `=`/,
    },
  ];
  for (const c of envCases) {
    it(`${c.name}: code 4, the config's cniVersion echoed, the agent not asked`, async () => {
      const r = await run(c.env, JSON.stringify({ ...NET, cniVersion: '1.0.0' }));
      const e = cniError(r);
      assert.equal(e.code, 4);
      assert.equal(e.cniVersion, '1.0.0');
      assert.equal(e.details, 'INVALID_ENV');
      assert.match(e.msg, c.says);
      assert.equal(r.calls.length, 0);
    });
  }

  it('a CHECK ifname of exactly 15 characters is fine', async () => {
    const r = await run({ ...ENV, CNI_COMMAND: 'CHECK', CNI_IFNAME: 'a'.repeat(15) }, JSON.stringify(NET));
    assert.equal(r.code, 0, r.stdout);
  });
});
