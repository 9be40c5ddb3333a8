/**
 * @module test/kube/recording-proxy
 * A plain-HTTP proxy in front of a test cluster's API server that records every request (method
 * and path with query), so a test can prove what a component asks of the API server — e.g. that
 * the agent only GETs workloads and never lists or watches them — whatever the cluster's
 * authorizer (the test cluster runs AlwaysAllow). Upstream it authenticates as the kubeconfig's
 * user; listens on 127.0.0.1 only.
 */
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import { stringify as stringifyYaml } from 'yaml';
import type { TestCluster } from './cluster.ts';

export interface RecordingProxy {
  /** A kubeconfig pointing at the proxy (no credentials: the proxy adds them). */
  kubeconfigPath: string;
  /** `GET /apis/apps/v1/namespaces/x/replicasets/y`, in arrival order. */
  requests: string[];
  /**
   * When set, a request it returns a status for is answered with that status and an empty JSON
   * body instead of being passed on (to show how a client copes with a failing request).
   */
  fail: ((request: string) => number | undefined) | undefined;
  /**
   * When set, the answer to a request it returns a promise for is held until that settles (to
   * let something happen between the server's answer and the client's reading of it).
   */
  hold: ((request: string) => Promise<unknown> | undefined) | undefined;
  stop(): Promise<void>;
}

export async function startRecordingProxy(cluster: TestCluster): Promise<RecordingProxy> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  const upstream = new URL(kc.getCurrentCluster()!.server);
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const request = `${req.method} ${req.url}`;
    requests.push(request);
    const status = proxy.fail?.(request);
    if (status !== undefined) {
      req.resume();
      res.writeHead(status, { 'Content-Type': 'application/json' }).end('{}');
      return;
    }
    const opts: https.RequestOptions = {
      hostname: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: upstream.host },
    };
    kc.applyToHTTPSOptions(opts)
      .then(() => {
        const up = https.request(opts, (ur) => {
          const forward = (): void => {
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            // A watch answers headers, then nothing until an event: send the headers now.
            res.flushHeaders();
            ur.pipe(res);
          };
          const held = proxy.hold?.(request);
          if (held) void held.finally(forward);
          else forward();
        });
        up.on('error', () => res.destroy());
        res.on('close', () => up.destroy());
        req.pipe(up);
      })
      .catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-proxy-'));
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfigPath,
    stringifyYaml({
      apiVersion: 'v1',
      kind: 'Config',
      // client-node refuses plain http unless told to skip TLS checks: there is no TLS to check here.
      clusters: [
        { name: 'proxy', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } },
      ],
      users: [{ name: 'proxy', user: {} }],
      contexts: [{ name: 'proxy', context: { cluster: 'proxy', user: 'proxy' } }],
      'current-context': 'proxy',
    }),
  );
  const proxy: RecordingProxy = {
    kubeconfigPath,
    requests,
    fail: undefined,
    hold: undefined,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return proxy;
}
