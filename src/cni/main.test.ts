/**
 * The plugin as a process: environment and stdin in, stdout JSON and exit code out. Runs against the
 * source (`node src/cni/main.ts`) and against the single executable `dist/ipkeeper-cni`, which the
 * `before` step builds (or finds up to date) with scripts/build.ts, so the shipped form is what is
 * tested. No agent runs here: the agent paths are tested end to end elsewhere; here the socket is
 * missing or dead, which is exactly what these cases are about.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildCni } from '../../scripts/build.ts';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runProcess(argv: string[], env: Record<string, string>, stdin: string): Promise<Out> {
  return new Promise((resolve, reject) => {
    // A clean environment: nothing from the test runner (NODE_OPTIONS, NODE_TEST_CONTEXT) leaks in.
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

/** Building needs postject (a devDependency); anything else going wrong is a failure, not a skip. */
async function buildSea(): Promise<{ exe?: string; skip?: string }> {
  try {
    return { exe: await buildCni({ ifStale: true, log: () => {} }) };
  } catch (e) {
    const msg = (e as Error).message;
    if (msg.includes('postject is not installed')) return { skip: msg };
    throw e;
  }
}

const sea = await buildSea();

const forms: { name: string; argv: () => string[]; executable: boolean; skip?: string }[] = [
  { name: 'node src/cni/main.ts', argv: () => [process.execPath, MAIN], executable: false },
  {
    name: 'dist/ipkeeper-cni (single executable)',
    argv: () => [sea.exe as string],
    executable: true,
    ...(sea.skip === undefined ? {} : { skip: sea.skip }),
  },
];

for (const form of forms) {
  describe(`the plugin process: ${form.name}`, { skip: form.skip ?? false, concurrency: 4 }, () => {
    let dir: string;
    let missing: string;
    let dead: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'ipkeeper-cni-main-'));
      missing = join(dir, 'missing.sock');
      // A plain file: connect() is refused, as on a socket whose agent died.
      dead = join(dir, 'dead.sock');
      writeFileSync(dead, '');
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    const ENV = {
      CNI_CONTAINERID: 'c0ffee',
      CNI_IFNAME: 'eth0',
      CNI_NETNS: '/var/run/netns/x',
      CNI_PATH: '/opt/cni/bin',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
    };
    const net = (over: Record<string, unknown> = {}, socket = missing): string =>
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'macvlan-net',
        ipam: { type: 'ipkeeper', socket },
        ...over,
      });
    const exec = (env: Record<string, string>, stdin: string): Promise<Out> =>
      runProcess(form.argv(), env, stdin);

    /** Exit 1 and exactly one JSON line on stdout, the CNI error. */
    function cniError(out: Out): { cniVersion: string; code: number; msg: string; details: string } {
      assert.equal(out.code, 1, `exit code; stdout=${out.stdout} stderr=${out.stderr}`);
      assert.equal(
        out.stdout.endsWith('\n') && out.stdout.indexOf('\n') === out.stdout.length - 1,
        true,
        `one line: ${out.stdout}`,
      );
      const e = JSON.parse(out.stdout) as { cniVersion: string; code: number; msg: string; details: string };
      assert.deepEqual(Object.keys(e), ['cniVersion', 'code', 'msg', 'details']);
      assert.doesNotMatch(out.stdout, /\bat .*:\d+:\d+/, 'no stack trace on stdout');
      // Whatever went to stderr is the log: JSON lines only.
      for (const line of out.stderr.split('\n').filter(Boolean)) JSON.parse(line);
      return e;
    }

    it('VERSION prints the supported versions and exits 0', async () => {
      const out = await exec({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}');
      assert.equal(out.code, 0);
      assert.deepEqual(JSON.parse(out.stdout), {
        cniVersion: '0.4.0',
        supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
      });
      assert.equal(out.stderr, '');
    });

    it('VERSION with an empty stdin answers with the latest version', async () => {
      const out = await exec({ CNI_COMMAND: 'VERSION' }, '');
      assert.equal(out.code, 0);
      assert.equal((JSON.parse(out.stdout) as { cniVersion: string }).cniVersion, '1.1.0');
    });

    // Only the executable can: node itself reads NODE_OPTIONS.
    if (form.executable)
      it('ignores a NODE_OPTIONS meant for another program', async () => {
        const out = await exec(
          { CNI_COMMAND: 'VERSION', NODE_OPTIONS: '--require /nonexistent/preload.js' },
          '{"cniVersion":"1.1.0"}',
        );
        assert.equal(out.code, 0, out.stderr);
        assert.equal((JSON.parse(out.stdout) as { cniVersion: string }).cniVersion, '1.1.0');
      });

    const cases: {
      name: string;
      env: Record<string, string>;
      stdin: () => string;
      cni: number;
      says: () => RegExp | string;
      version?: string;
    }[] = [
      {
        name: 'malformed JSON',
        env: { ...ENV, CNI_COMMAND: 'ADD' },
        stdin: () => '{"cniVersion": "1.0.0",',
        cni: 6,
        says: () => /not JSON/,
      },
      {
        name: 'unsupported cniVersion',
        env: { ...ENV, CNI_COMMAND: 'ADD' },
        stdin: () => net({ cniVersion: '2.0.0' }),
        cni: 1,
        says: () => /^cniVersion: "2\.0\.0" is not supported/,
        version: '1.1.0',
      },
      {
        name: 'missing name',
        env: { ...ENV, CNI_COMMAND: 'ADD' },
        stdin: () => JSON.stringify({ cniVersion: '0.3.1', ipam: { type: 'ipkeeper' } }),
        cni: 7,
        says: () => /^name: missing/,
        version: '0.3.1',
      },
      {
        name: 'bad pools type',
        env: { ...ENV, CNI_COMMAND: 'ADD' },
        stdin: () => net({ ipam: { type: 'ipkeeper', pools: { ipv4: 'pool-a' } } }),
        cni: 7,
        says: () => /^ipam\.pools\.ipv4: "pool-a" is not a list/,
      },
      {
        name: 'missing CNI_COMMAND',
        env: { ...ENV },
        stdin: () => net(),
        cni: 4,
        says: () => /^CNI_COMMAND: missing/,
      },
      {
        name: 'unknown CNI_COMMAND',
        env: { ...ENV, CNI_COMMAND: 'UPDATE' },
        stdin: () => net(),
        cni: 4,
        says: () => /^CNI_COMMAND: "UPDATE" is not a CNI command/,
      },
      {
        name: 'bad CNI_ARGS',
        env: { ...ENV, CNI_COMMAND: 'ADD', CNI_ARGS: 'K8S_POD_NAME' },
        stdin: () => net(),
        cni: 4,
        says: () => /^CNI_ARGS: the pair "K8S_POD_NAME" has no `=`/,
      },
      {
        name: 'missing CNI_IFNAME',
        env: { ...ENV, CNI_COMMAND: 'ADD', CNI_IFNAME: '' },
        stdin: () => net(),
        cni: 4,
        says: () => /^CNI_IFNAME: missing/,
      },
      {
        name: 'CHECK on a 0.3.1 config',
        env: { ...ENV, CNI_COMMAND: 'CHECK' },
        stdin: () => net({ cniVersion: '0.3.1' }),
        cni: 1,
        says: () => /does not allow CHECK/,
      },
      {
        name: 'ADD, no socket',
        env: { ...ENV, CNI_COMMAND: 'ADD' },
        stdin: () => net(),
        cni: 11,
        says: () =>
          `cannot reach the ipkeeper agent: socket ${missing} does not exist; is the ipkeeper agent running? start it with \`ipkeeper agent\``,
      },
      {
        name: 'ADD, dead socket',
        env: { ...ENV, CNI_COMMAND: 'ADD' },
        stdin: () => net({}, dead),
        cni: 11,
        says: () => `nothing listens on socket ${dead}`,
      },
      {
        name: 'DEL, no socket',
        env: { ...ENV, CNI_COMMAND: 'DEL' },
        stdin: () => net(),
        cni: 11,
        says: () => `socket ${missing} does not exist`,
      },
      {
        name: 'DEL, dead socket',
        env: { ...ENV, CNI_COMMAND: 'DEL' },
        stdin: () => net({}, dead),
        cni: 11,
        says: () => `socket ${dead}`,
      },
      {
        name: 'CHECK, no socket',
        env: { ...ENV, CNI_COMMAND: 'CHECK' },
        stdin: () => net(),
        cni: 11,
        says: () => `socket ${missing}`,
      },
      {
        name: 'GC, no socket',
        env: { CNI_COMMAND: 'GC' },
        stdin: () => net({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }),
        cni: 11,
        says: () => `socket ${missing}`,
      },
      {
        name: 'STATUS, no socket',
        env: { CNI_COMMAND: 'STATUS' },
        stdin: () => net({ cniVersion: '1.1.0' }),
        cni: 50,
        says: () => `socket ${missing} does not exist`,
      },
      {
        name: 'STATUS, dead socket',
        env: { CNI_COMMAND: 'STATUS' },
        stdin: () => net({ cniVersion: '1.1.0' }, dead),
        cni: 50,
        says: () => `nothing listens on socket ${dead}`,
      },
    ];
    for (const c of cases) {
      it(`${c.name}: code ${c.cni}`, async () => {
        const stdin = c.stdin();
        const e = cniError(await exec(c.env, stdin));
        assert.equal(e.code, c.cni, e.msg);
        const says = c.says();
        if (typeof says === 'string') assert.ok(e.msg.includes(says), e.msg);
        else assert.match(e.msg, says);
        assert.equal(
          e.cniVersion,
          c.version ?? (c.cni === 6 ? '1.1.0' : (JSON.parse(stdin) as { cniVersion: string }).cniVersion),
        );
      });
    }

    it('logs one JSON line per failed command to stderr, naming pod, container, interface and code', async () => {
      const out = await exec({ ...ENV, CNI_COMMAND: 'ADD' }, net());
      const lines = out.stderr.trim().split('\n');
      assert.equal(lines.length, 1, out.stderr);
      const line = JSON.parse(lines[0] as string) as Record<string, unknown>;
      assert.equal(line.event, 'ADD');
      assert.equal(line.pod, 'default/web-0');
      assert.equal(line.containerId, 'c0ffee');
      assert.equal(line.ifName, 'eth0');
      assert.equal(line.network, 'macvlan-net');
      assert.equal(line.code, 'AGENT_UNAVAILABLE');
      assert.equal(line.cniCode, 11);
    });
  });
}
