/**
 * `ipkeeper check` and `ipkeeper release --from-report` as a user runs them: the CLI as a process
 * against a real agent (in this process, memory store) whose store has problems planted in it by
 * writing claims straight through the store, as a hand edit or a bug would.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../store/memory.ts';
import { startAgent, type Agent } from '../agent/server.ts';
import { claimName } from '../ipam/engine.ts';
import { parseAddr } from '../net/addr.ts';
import type { IPClaim } from '../api/kinds.ts';
import type { CheckReport } from '../agent/ui/check.ts';
import { call } from './client.ts';
import { cliAsync as cli } from '../../test/e2e/harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipk-check-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const V = 'ipkeeper.io/v1alpha1';

/** Runs the CLI; never rejects (the exit code is part of the answer). */
function keyOf(ip: string, network = 'default'): string {
  const a = parseAddr(ip);
  return `ipclaims/${claimName(network, a.family, a.value)}`;
}

function plant(
  ip: string,
  over: Partial<IPClaim['spec']> = {},
  key = keyOf(ip),
): { key: string; value: IPClaim } {
  const a = parseAddr(ip);
  return {
    key,
    value: {
      apiVersion: V,
      kind: 'IPClaim',
      metadata: { name: key.slice('ipclaims/'.length) },
      spec: {
        network: 'default',
        ip,
        family: a.family,
        pool: 'p',
        owner: { kind: 'Pod', namespace: 'ns', name: `planted-${ip}` },
        cniNetwork: 'net',
        containerId: `planted-${ip}`,
        ifName: 'eth0',
        node: 'n1',
        createdAt: new Date().toISOString(),
        ...over,
      },
    },
  };
}

describe('ipkeeper check and release --from-report', () => {
  let agent: Agent;
  const store = new MemoryStore();
  const socket = join(dir, 'agent.sock');
  const s = ['--socket', socket];
  let healthy = '';
  // What is planted, and what check must call it.
  const planted = {
    poolMissing: plant('10.9.0.5', { pool: 'gone' }),
    excluded: plant('10.0.0.205'),
    gateway: plant('10.0.0.1'),
    reserved: plant('10.0.0.50'),
    duplicate: plant('10.0.0.77', {
      containerId: 'c-ok',
      owner: { kind: 'Pod', namespace: 'ns', name: 'ok' },
    }),
    deadNode: plant('10.0.0.88', { node: 'n-dead' }),
    wrongKey: plant('10.0.0.98', {}, keyOf('10.0.0.99')),
  };
  const want: Record<keyof typeof planted, string> = {
    poolMissing: 'pool-missing',
    excluded: 'outside-pool',
    gateway: 'outside-pool',
    reserved: 'reserved',
    duplicate: 'duplicate',
    deadNode: 'dead-node',
    wrongKey: 'invalid',
  };

  before(async () => {
    agent = await startAgent({
      store,
      socket,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: V,
          kind: 'IPPool',
          metadata: { name: 'p' },
          spec: { subnet: '10.0.0.0/24', gateway: '10.0.0.1', excludeIPs: ['10.0.0.200-10.0.0.210'] },
        },
        { apiVersion: V, kind: 'ReservedIP', metadata: { name: 'r' }, spec: { ips: ['10.0.0.50'] } },
      ],
    });
    const r = await call<{ ips: { address: string }[] }>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId: 'c-ok',
      ifName: 'eth0',
      network: 'net',
      cniVersion: '1.1.0',
      args: { K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'ok' },
      ipam: { type: 'ipkeeper', pools: { ipv4: ['p'] } },
    });
    healthy = keyOf(r.ips[0]!.address.split('/')[0]!);
    // Stamped after the real claim, so the real one is the older of the duplicate pair and is kept.
    planted.duplicate.value.spec.createdAt = new Date().toISOString();
    for (const p of Object.values(planted)) {
      const c = await store.create(p.key, p.value);
      assert.ok(c.created, p.key);
    }
  });
  after(() => agent.close());

  it('finds each planted problem, and not the healthy claim; prints them as a table', async () => {
    const [r, t] = await Promise.all([cli(['check', '-o', 'json', ...s]), cli(['check', ...s])]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    const byKey = new Map(report.problems.map((p) => [p.key, p.problems.map((x) => x.kind)]));
    for (const [name, p] of Object.entries(planted)) {
      assert.ok(
        byKey.get(p.key)?.includes(want[name as keyof typeof planted] as never),
        `${name}: ${p.key} -> ${byKey.get(p.key)}`,
      );
    }
    assert.equal(byKey.has(healthy), false, 'the healthy claim is not a problem');
    assert.equal(report.summary.problemClaims, Object.keys(planted).length);
    assert.equal(report.summary.byKind['outside-pool'], 2);
    assert.equal(report.summary.claims, Object.keys(planted).length + 1);

    // The table: one row per problem, and the summary.
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^IP\s+POOL\s+PROBLEM\s+OWNER\s+NODE\s+DETAIL/m);
    assert.match(
      t.stdout,
      /10\.0\.0\.50\s+p\s+reserved\s+Pod ns\/planted-10\.0\.0\.50\s+n1\s+10\.0\.0\.50 is reserved by ReservedIP "r"/,
    );
    assert.match(t.stdout, /10\.0\.0\.1\s+p\s+outside-pool.*gateway/);
    assert.match(t.stdout, /10\.0\.0\.88\s+p\s+dead-node.*"n-dead" has no lease/);
    assert.match(
      t.stdout,
      /7 problem claim\(s\) \(invalid 1, pool-missing 1, outside-pool 2, reserved 1, duplicate 1, dead-node 1\)/,
    );
  });

  it('releases exactly the reported claims, skipping one that changed and one already gone', async () => {
    const saved = await cli(['check', '-o', 'json', ...s]);
    const file = join(dir, 'report.json');
    writeFileSync(file, saved.stdout);

    // After the report: the dead node's claim is rewritten (a new version), the gateway claim is
    // released by someone else, and a new problem appears that the report does not list.
    const cur = await store.get<IPClaim>(planted.deadNode.key);
    assert.ok(cur);
    const up = await store.update(
      planted.deadNode.key,
      { ...cur.value, spec: { ...cur.value.spec, node: 'n1' } },
      cur.version,
    );
    assert.ok(up.ok);
    const gw = await store.get(planted.gateway.key);
    assert.ok((await store.delete(planted.gateway.key, gw!.version)).ok);
    const late = plant('10.0.0.206');
    assert.ok((await store.create(late.key, late.value)).created);

    const dry = await cli(['release', '--from-report', file, '--dry-run', ...s]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /7 claim\(s\) would be released/);
    assert.ok(await store.get(planted.reserved.key), 'a dry run changes nothing');

    const r = await cli(['release', '--from-report', file, ...s]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /10\.0\.0\.88: skipped, changed since the report/);
    assert.match(r.stdout, /10\.0\.0\.1: already released/);
    assert.match(r.stdout, /released 5, skipped 1 \(changed since the report\), 1 already released/);

    for (const name of ['poolMissing', 'excluded', 'reserved', 'duplicate', 'wrongKey'] as const) {
      assert.equal(await store.get(planted[name].key), undefined, `${name} released`);
    }
    assert.ok(await store.get(planted.deadNode.key), 'the changed claim is kept');
    assert.ok(await store.get(late.key), 'a claim not in the report is kept');
    assert.ok(await store.get(healthy), 'the healthy claim is kept');
    assert.equal(
      agent.ipam.state.claims.has(planted.reserved.key),
      false,
      'the agent cache forgets released claims',
    );

    const again = await cli(['check', '-o', 'json', ...s]);
    const left = (JSON.parse(again.stdout) as CheckReport).problems.map((p) => p.key).sort();
    assert.deepEqual(left, [late.key].sort());
  });

  it('refuses a file that is not a report, and changes nothing', async () => {
    const file = join(dir, 'not-a-report.json');
    writeFileSync(file, JSON.stringify({ kind: 'List', items: [] }));
    const before = (await store.list('ipclaims/')).length;
    const [r, missing] = await Promise.all([
      cli(['release', '--from-report', file, ...s]),
      cli(['release', '--from-report', join(dir, 'nope.json'), ...s]),
    ]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is not a check report.*ipkeeper check -o json/);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no such file/);
    assert.equal((await store.list('ipclaims/')).length, before);
  });

  it('refuses a release body that names anything but a claim', async () => {
    const e = await call(socket, 'POST', '/v1/release', {
      items: [{ key: 'ippools/p', version: '1' }],
    }).catch((x: unknown) => x);
    assert.equal((e as { code?: string }).code, 'INVALID_OBJECT');
    assert.ok(await store.get('ippools/p'));
  });

  it('shows examples in --help', async () => {
    const [c, r] = await Promise.all([cli(['check', '--help']), cli(['release', '--help'])]);
    assert.match(c.stdout, /ipkeeper check -o json > report\.json/);
    assert.match(r.stdout, /ipkeeper release --from-report report\.json/);
  });
});
