/**
 * `reuseConnections` (src/cluster/connections.ts) against a real API server: client-node alone
 * opens a connection for every request; through the wrapper, requests share keep-alive
 * connections, a watch runs on the same agent, and rotated TLS material gets a new agent while the
 * old one lets its idle connections go. Connections are counted where Node's HTTPS agents open them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import tls from 'node:tls';
import type http from 'node:http';
import type * as K8s from '@kubernetes/client-node';
import { reuseConnections } from '../../src/cluster/connections.ts';
import { startTestCluster, type TestCluster } from './cluster.ts';

let connects = 0;
const open = https.Agent.prototype.createConnection;
https.Agent.prototype.createConnection = function (this: https.Agent, ...args: unknown[]) {
  connects++;
  return (open as (...a: unknown[]) => unknown).apply(this, args);
} as typeof open;

/** New connections opened while `f` runs. */
async function counted(f: () => Promise<unknown>): Promise<number> {
  const before = connects;
  await f();
  return connects - before;
}

describe('client-node connections to the API server', () => {
  let cluster: TestCluster;
  let k8s: typeof K8s;

  before(async () => {
    cluster = await startTestCluster();
    k8s = await import('@kubernetes/client-node');
  });
  after(async () => {
    await cluster?.stop();
  });

  const config = (): InstanceType<typeof k8s.KubeConfig> => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.kubeconfigPath);
    return kc;
  };
  const agentOf = async (kc: InstanceType<typeof k8s.KubeConfig>): Promise<http.Agent> => {
    const o: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(o);
    return o.agent as http.Agent;
  };
  const idle = (a: http.Agent): number =>
    Object.values(a.freeSockets).reduce((n, s) => n + (s?.length ?? 0), 0);

  it('client-node alone opens a new connection for every request (why the wrapper exists)', async () => {
    const core = config().makeApiClient(k8s.CoreV1Api);
    const n = await counted(async () => {
      for (let i = 0; i < 5; i++) await core.readNamespace({ name: 'default' });
    });
    assert.equal(
      n,
      5,
      'if this fails, client-node reuses connections now: check whether the wrapper is still needed',
    );
  });

  it('through reuseConnections, sequential requests share one keep-alive connection', async () => {
    const kc = reuseConnections(config());
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const n = await counted(async () => {
      for (let i = 0; i < 10; i++) await core.readNamespace({ name: 'default' });
    });
    assert.equal(n, 1);
    const agent = await agentOf(kc);
    assert.equal(agent, await agentOf(kc), 'one agent for every request');
    assert.equal(idle(agent), 1, 'the connection is kept for the next request');
  });

  it('concurrent requests open connections once; the next burst reuses them', async () => {
    const core = reuseConnections(config()).makeApiClient(k8s.CoreV1Api);
    const burst = () => Promise.all(Array.from({ length: 8 }, () => core.readNamespace({ name: 'default' })));
    const first = await counted(burst);
    assert.ok(first >= 1 && first <= 8, `first burst opened ${first}`);
    assert.equal(await counted(burst), 0);
  });

  it('a watch runs on the same agent, and requests go on after it ends', async () => {
    const kc = reuseConnections(config());
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.readNamespace({ name: 'default' });
    const seen = await new Promise<string>((resolve, reject) => {
      let req: AbortController | undefined;
      new k8s.Watch(kc)
        .watch(
          '/api/v1/namespaces',
          { fieldSelector: 'metadata.name=default' },
          (type, obj: { metadata?: { name?: string } }) => {
            req?.abort();
            resolve(`${type} ${obj.metadata?.name}`);
          },
          (err) => (err && !/abort/i.test(String(err)) ? reject(err) : undefined),
        )
        .then((c) => (req = c), reject);
    });
    assert.equal(seen, 'ADDED default');
    const n = await counted(() => core.readNamespace({ name: 'default' }));
    assert.ok(n <= 1, `${n} connections after the watch`);
  });

  it('rotated TLS material gets a new agent; the old one keeps no idle connection', async () => {
    const kc = reuseConnections(config());
    const core = kc.makeApiClient(k8s.CoreV1Api);
    await core.readNamespace({ name: 'default' });
    const old = await agentOf(kc);
    assert.equal(idle(old), 1);
    // The same trust, other bytes: the CA written twice (or, without a CA, the system roots).
    const o: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(o);
    const ca = o.ca ? `${String(o.ca)}\n${String(o.ca)}` : tls.rootCertificates.join('\n');
    const c = kc.getCurrentCluster() as { caData?: string; caFile?: string };
    c.caData = Buffer.from(ca).toString('base64');
    delete c.caFile;
    const n = await counted(() => core.readNamespace({ name: 'default' }));
    assert.equal(n, 1, 'a new connection with the new material');
    const fresh = await agentOf(kc);
    assert.notEqual(fresh, old);
    assert.equal(idle(old), 0, "the old agent's idle connection is closed");
    assert.equal((old as http.Agent & { keepAlive: boolean }).keepAlive, false);
    assert.equal(await counted(() => core.readNamespace({ name: 'default' })), 0);
  });
});
