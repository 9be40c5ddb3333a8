/**
 * @module test/kube/identities
 * The chart's service accounts and roles in a test cluster, so that a test runs the agent and the
 * controller with exactly the permissions a release gives them: the RBAC objects and service
 * accounts rendered from the chart with the values under test, renamed with a suffix (so tests, or a
 * release already installed in an external cluster, do not collide), and a kubeconfig per component
 * holding a token of its own account (TokenRequest). Meaningful on a cluster that authorizes by RBAC:
 * `startTestCluster({ rbac: true })`, or a real cluster through IPKEEPER_TEST_KUBECONFIG.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderDefault } from '../../src/deploy/chart.ts';
import { kubeRequest, kubeconfigYaml, type TestCluster } from './cluster.ts';

type Obj = Record<string, any>;

export interface Identity {
  /** The service account's name (the chart's, with the suffix). */
  account: string;
  /** A kubeconfig file authenticating as the account. */
  kubeconfig: string;
  /** Its bearer token, for direct requests. */
  token: string;
}

export interface Identities {
  agent: Identity;
  controller: Identity;
  /** Deletes the cluster-scoped objects made (the namespaced ones go with the namespace). */
  remove(): Promise<void>;
}

const RBAC = '/apis/rbac.authorization.k8s.io/v1';
const PATHS: Record<string, (ns: string) => string> = {
  ServiceAccount: (ns) => `/api/v1/namespaces/${ns}/serviceaccounts`,
  ClusterRole: () => `${RBAC}/clusterroles`,
  ClusterRoleBinding: () => `${RBAC}/clusterrolebindings`,
  Role: (ns) => `${RBAC}/namespaces/${ns}/roles`,
  RoleBinding: (ns) => `${RBAC}/namespaces/${ns}/rolebindings`,
};

/**
 * Makes the chart's identities in `namespace` (created if missing) for a release rendered with
 * `values`; kubeconfigs go to `dir`.
 */
export async function chartIdentities(
  c: TestCluster,
  opts: {
    values: Obj;
    namespace: string;
    suffix: string;
    dir: string;
    /** The name of the webhook configuration the controller may patch, in place of the chart's. */
    webhookConfig?: string;
  },
): Promise<Identities> {
  const { namespace: ns, suffix } = opts;
  const ok = (what: string, r: { status: number; body: unknown }, allowed = [200, 201]): void =>
    assert.ok(allowed.includes(r.status), `${what}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  ok(
    `namespace ${ns}`,
    await kubeRequest(c, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns },
    }),
    [201, 409],
  );
  const made: string[] = [];
  const objects = renderDefault({ values: opts.values, namespace: ns })
    .map((m) => structuredClone(m.object) as Obj)
    .filter((o) => PATHS[o.kind] !== undefined);
  for (const o of objects) {
    o.metadata.name += suffix;
    if (o.roleRef) o.roleRef.name += suffix;
    for (const s of o.subjects ?? []) s.name += suffix;
    for (const r of o.rules ?? []) {
      if (opts.webhookConfig && r.resources.includes('validatingwebhookconfigurations'))
        r.resourceNames = [opts.webhookConfig];
    }
    const path = PATHS[o.kind]!(ns);
    ok(`${o.kind} ${o.metadata.name}`, await kubeRequest(c, 'POST', path, o));
    if (o.kind.startsWith('Cluster')) made.push(`${path}/${o.metadata.name}`);
  }
  const identity = async (component: 'agent' | 'controller'): Promise<Identity> => {
    const account = `ipkeeper-${component}${suffix}`;
    assert.ok(
      objects.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === account),
      `the chart has no service account ipkeeper-${component}`,
    );
    const r = await kubeRequest(c, 'POST', `/api/v1/namespaces/${ns}/serviceaccounts/${account}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    });
    ok(`a token of ${account}`, r);
    const token = (r.body as Obj).status.token as string;
    const kubeconfig = join(opts.dir, `kubeconfig-${account}`);
    const ca = c.caFile ? readFileSync(c.caFile) : Buffer.alloc(0);
    writeFileSync(kubeconfig, kubeconfigYaml(c.server, ca, token), { mode: 0o600 });
    return { account, kubeconfig, token };
  };
  const agent = await identity('agent');
  const controller = await identity('controller');
  // The API server's authorizer learns of new bindings through its own watch: wait until both
  // accounts' (cluster-wide and namespaced) rules apply before anything runs as them.
  const leases = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/ipkeeper-rbac-probe`;
  for (const [id, path, want] of [
    [agent, '/api/v1/pods?limit=1', 200],
    [controller, '/api/v1/pods?limit=1', 200],
    [controller, leases, 404],
  ] as const) {
    let got = 0;
    for (let i = 0; i < 100 && (got = await statusAs(c, id.token, path)) !== want; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(got, want, `${id.account} GET ${path}: the chart's roles do not apply`);
  }
  return {
    agent,
    controller,
    async remove() {
      for (const path of made) await kubeRequest(c, 'DELETE', path);
    },
  };
}

/** The status of a GET of `path` as the holder of `token` (403: RBAC refused it). */
export async function statusAs(c: TestCluster, token: string, path: string): Promise<number> {
  return (await kubeRequest({ ...c, token }, 'GET', path)).status;
}
