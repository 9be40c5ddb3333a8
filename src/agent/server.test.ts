import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../store/memory.ts';
import { IpamError } from '../errors.ts';
import { call } from '../cli/client.ts';
import type { CniRequest, IpamResult } from '../cni/protocol.ts';
import { startAgent, type Agent } from './server.ts';
import { socketGet } from '../../test/lib/socket-get.ts';
import { assertMetricsDocumented } from '../../test/lib/metrics-doc.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipk-agent-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));

function cni(over: Partial<CniRequest> = {}): CniRequest {
  return {
    command: 'ADD',
    containerId: 'c1',
    ifName: 'eth0',
    network: 'net',
    cniVersion: '1.1.0',
    args: { K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p1', K8S_POD_UID: 'u1' },
    ipam: { type: 'ipkeeper', pools: { ipv4: ['p'] } },
    ...over,
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof IpamError, String(e));
    return e.code;
  }
}

describe('agent over its unix socket', () => {
  let agent: Agent;
  const socket = join(dir, 'run', 'sub', 'agent.sock');
  before(async () => {
    agent = await startAgent({
      store: new MemoryStore(),
      socket,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      maxInFlight: 4,
    });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: 'ipkeeper.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: 'p' },
          spec: { subnet: '10.0.0.0/29' },
        },
      ],
    });
  });
  after(() => agent.close());

  it('makes the socket root-only and its directory private', () => {
    assert.equal(statSync(socket).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'run', 'sub')).mode & 0o777, 0o700);
  });

  it('serves ADD, CHECK, DEL and STATUS as the plugin sends them', async () => {
    const r = await call<IpamResult>(socket, 'POST', '/v1/cni/add', cni());
    assert.equal(r.ips[0]?.address, '10.0.0.1/29');
    assert.equal(await code(call(socket, 'POST', '/v1/cni/check', cni({ command: 'CHECK' }))), 'ok');
    assert.equal(await code(call(socket, 'POST', '/v1/cni/status', cni({ command: 'STATUS' }))), 'ok');
    assert.equal(await code(call(socket, 'POST', '/v1/cni/del', cni({ command: 'DEL' }))), 'ok');
    assert.equal(await code(call(socket, 'POST', '/v1/cni/check', cni({ command: 'CHECK' }))), 'NOT_FOUND');
  });

  it('answers STATUS with NOT_READY when the pools are full', async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `full-${i}`);
    for (const id of ids) await call(socket, 'POST', '/v1/cni/add', cni({ containerId: id }));
    assert.equal(await code(call(socket, 'POST', '/v1/cni/status', cni({ command: 'STATUS' }))), 'NOT_READY');
    for (const id of ids) await call(socket, 'POST', '/v1/cni/del', cni({ command: 'DEL', containerId: id }));
  });

  it('rejects requests without identity, with the field named', async () => {
    const e = await call(socket, 'POST', '/v1/cni/add', cni({ containerId: '' })).catch((x: unknown) => x);
    assert.ok(e instanceof IpamError);
    assert.equal(e.code, 'INVALID_ENV');
    assert.match(e.message, /CNI_CONTAINERID/);
    assert.equal(
      await code(call(socket, 'POST', '/v1/cni/add', { ...cni(), network: undefined })),
      'INVALID_CONFIG',
    );
  });

  it('answers a body its JSON parser refuses with INVALID_OBJECT / INVALID_CONFIG naming the fix, and changes nothing', async () => {
    const post = (path: string, body: string) =>
      new Promise<{ status: number; json: { code?: string; message?: string } }>((resolve, reject) => {
        const req = request(
          {
            socketPath: socket,
            method: 'POST',
            path,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            let b = '';
            res.on('data', (d: Buffer) => (b += d.toString()));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, json: JSON.parse(b) as { code?: string } }),
            );
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const pools = (await agent.store.list('ippools/')).length;
    const claims = (await agent.store.list('ipclaims/')).length;
    // A key that would set the prototype (found by the fuzz test), and JSON that is not JSON.
    const poisoned =
      '{"objects":[{"apiVersion":"ipkeeper.io/v1alpha1","kind":"IPPool","metadata":{"name":"p"},"spec":{"subnet":"10.9.0.0/24","__proto__":{"x":1}}}]}';
    for (const [path, body, code] of [
      ['/v1/apply', poisoned, 'INVALID_OBJECT'],
      ['/v1/apply', '{"objects": [', 'INVALID_OBJECT'],
      ['/v1/cni/add', '{"command": "ADD",', 'INVALID_CONFIG'],
    ] as const) {
      const r = await post(path, body);
      assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status} ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, code);
      assert.match(
        r.json.message ?? '',
        /request body is not JSON the agent accepts .*send plain JSON objects/,
      );
    }
    assert.equal((await agent.store.list('ippools/')).length, pools);
    assert.equal((await agent.store.list('ipclaims/')).length, claims);
  });

  it('refuses a body over 1 MiB without touching the store', async () => {
    const before = (await agent.store.list('ipclaims/')).length;
    const status = await new Promise<number>((resolve, reject) => {
      const big = Buffer.alloc(2 << 20, 'a');
      const req = request(
        {
          socketPath: socket,
          method: 'POST',
          path: '/v1/cni/add',
          headers: { 'content-type': 'application/json', 'content-length': big.length },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(big);
    });
    assert.equal(status, 413);
    assert.equal((await agent.store.list('ipclaims/')).length, before);
  });

  it('serves metrics in Prometheus text with pool figures', async () => {
    const { status, text } = await socketGet(socket, '/metrics');
    assert.equal(status, 200);
    assert.match(text, /ipkeeper_pool_addresses\{pool="p",state="total"\} 6/);
    assert.ok(assertMetricsDocumented(text).includes('ipkeeper_reclaimed_total'));
    assert.match(text, /ipkeeper_cni_requests_total\{command="ADD",result="ok"\} \d+/);
    for (const name of [
      'ipkeeper_claim_races_lost_total',
      'ipkeeper_store_errors_total',
      'ipkeeper_gc_released_total',
      'ipkeeper_store_uncertain_writes_total',
    ]) {
      assert.match(text, new RegExp(`^${name} \\d+$`, 'm'), name);
    }
  });

  it('refuses to start on a socket another agent serves, or on a file that is not a socket', async () => {
    await assert.rejects(
      startAgent({ store: new MemoryStore(), socket, node: 'n1', logLevel: 'silent', defaultMetrics: false }),
      /another agent already listens/,
    );
    const stale = join(dir, 'stale.sock');
    writeFileSync(stale, '');
    await assert.rejects(
      startAgent({
        store: new MemoryStore(),
        socket: stale,
        node: 'n1',
        logLevel: 'silent',
        defaultMetrics: false,
      }),
      /is not a socket/,
    );
  });

  it('answers BUSY (CNI 11) past its in-flight limit and serves again afterwards', async () => {
    // A real memory store whose creates wait at a gate, so requests pile up in the agent.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const inner = new MemoryStore();
    const slow = Object.assign(Object.create(inner) as MemoryStore, {
      create: async (k: string, v: unknown) => {
        if (k.startsWith('ipclaims/')) await gate;
        return inner.create(k, v);
      },
    });
    const sock = join(dir, 'busy.sock');
    await inner.create('ippools/p', {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'p' },
      spec: { subnet: '10.0.0.0/24' },
    });
    const a = await startAgent({
      store: slow,
      socket: sock,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      maxInFlight: 2,
    });
    try {
      const first = [1, 2].map((i) => code(call(sock, 'POST', '/v1/cni/add', cni({ containerId: `b${i}` }))));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(await code(call(sock, 'POST', '/v1/cni/add', cni({ containerId: 'b3' }))), 'BUSY');
      open();
      assert.deepEqual(await Promise.all(first), ['ok', 'ok']);
      assert.equal(await code(call(sock, 'POST', '/v1/cni/add', cni({ containerId: 'b3' }))), 'ok');
    } finally {
      open();
      await a.close();
    }
  });

  it('answers BUSY past its request rate and nothing changes for the refused requests', async () => {
    const sock = join(dir, 'rate.sock');
    const store = new MemoryStore();
    await store.create('ippools/p', {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'p' },
      spec: { subnet: '10.0.0.0/24' },
    });
    const a = await startAgent({
      store,
      socket: sock,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      maxRate: 5,
    });
    try {
      const codes = [];
      for (let i = 0; i < 12; i++)
        codes.push(await code(call(sock, 'POST', '/v1/cni/add', cni({ containerId: `r${i}` }))));
      const ok = codes.filter((c) => c === 'ok').length;
      assert.ok(codes.includes('BUSY'), codes.join(','));
      assert.ok(ok >= 5, codes.join(','));
      assert.equal((await store.list('ipclaims/')).length, ok);
    } finally {
      await a.close();
    }
  });

  it('rejects a node name that could not be a store key', async () => {
    await assert.rejects(
      startAgent({
        store: new MemoryStore(),
        socket: join(dir, 'x.sock'),
        node: '../evil',
        logLevel: 'silent',
        defaultMetrics: false,
      }),
      /--node "\.\.\/evil" must be a DNS label/,
    );
  });
});
