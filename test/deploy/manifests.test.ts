/**
 * The chart's objects against the Kubernetes schemas and a real kube-apiserver v1.20.2, and the
 * properties an operator relies on: least-privilege RBAC (the exact rules, so a widening fails here),
 * resource requests and health probes on every container, the agent installing the plugin into the
 * host's CNI bin dir and serving the socket the plugin dials by default, and the commands and flags
 * the pods run existing in the CLI.
 *
 * Three value sets: the defaults (= deploy/manifests/ipkeeper.yaml), every toggle flipped, and the
 * webhook off. Each object is validated with `kubernetes-models` (JSON schemas of the Kubernetes
 * API) and POSTed with ?dryRun=All into a fresh namespace; the server's answer must keep every field
 * we sent (v1.20 silently drops unknown fields, so a misspelt field shows up as one missing there).
 * Each workload's pod template is also dry-run as a Pod, so pod-level admission sees it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { allCrds } from '../../src/api/crd.ts';
import { DEFAULT_SOCKET } from '../../src/cni/protocol.ts';
import { buildCli } from '../../src/cli/main.ts';
import { MANIFESTS_FILE, loadChart, renderDefault } from '../../src/deploy/chart.ts';
import type { Manifest } from '../../src/deploy/render.ts';
import { kubeRequest, startTestCluster, type TestCluster } from '../kube/cluster.ts';
import { installCrds } from '../kube/crds.ts';

type Obj = Record<string, any>;

/** Every toggle away from its default (webhook on, so its own toggles count). */
const FLIPPED = {
  image: { repository: 'registry.example.com/ipk', tag: 'v9.9.9', pullPolicy: 'Always' },
  imagePullSecrets: [{ name: 'regcred' }],
  controller: {
    replicas: 3,
    logLevel: 'debug',
    metricsPort: 19710,
    resources: { requests: { cpu: '100m', memory: '200Mi' } },
    nodeSelector: { 'node-role.kubernetes.io/control-plane': '' },
    tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }],
  },
  agent: {
    logLevel: 'warn',
    metricsPort: 19711,
    cniBinDir: '/usr/libexec/cni',
    socketDir: '/var/run/ipk',
    nodePool: { enabled: true, healthCheck: true },
    kubeScanShards: 8,
    priorityClassName: '',
    resources: { requests: { cpu: '10m', memory: '64Mi' } },
    nodeSelector: {},
    tolerations: [],
  },
  webhook: {
    enabled: true,
    failurePolicy: 'Ignore',
    timeoutSeconds: 5,
    certSecret: 'ipkeeper-webhook-cert',
    annotations: { 'cert-manager.io/inject-ca-from': 'ipkeeper-system/ipkeeper-webhook' },
  },
  metrics: { prometheusAnnotations: false },
};
const WEBHOOK_OFF = { webhook: { enabled: false } };
/** etcd mode, with TLS and a user: the controller on the etcd store, no webhook. */
const ETCD = {
  store: {
    etcd: {
      url: 'etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/ipkeeper',
      tlsSecret: 'etcd-client',
      clientCertificate: true,
      user: 'ipkeeper',
      passwordSecret: 'etcd-password',
    },
  },
};

const VALUE_SETS: [string, Obj][] = [
  ['default values', {}],
  ['every toggle flipped', FLIPPED],
  ['webhook off', WEBHOOK_OFF],
  ['etcd store', ETCD],
];

const render = (values: Obj, namespace = 'ipkeeper-system'): Manifest[] =>
  renderDefault({ values, namespace });
const find = (ms: Manifest[], kind: string, name: string): Obj => {
  const m = ms.find((x) => x.object.kind === kind && x.object.metadata.name === name);
  assert.ok(
    m,
    `no ${kind} ${name} in ${ms.map((x) => `${x.object.kind}/${x.object.metadata.name}`).join(', ')}`,
  );
  return m.object;
};
const podSpecs = (ms: Manifest[]): [string, Obj][] =>
  ms
    .filter((m) => ['Deployment', 'DaemonSet'].includes(m.object.kind))
    .map((m) => [m.object.metadata.name, (m.object as Obj).spec.template.spec]);

// ---- schemas ------------------------------------------------------------------------------------------

/** The kubernetes-models class of an object: `apps/v1` Deployment -> kubernetes-models/apps/v1/Deployment. */
async function validateSchema(o: Obj): Promise<void> {
  const mod = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<
    string,
    new (d: Obj) => { validate(): void }
  >;
  const Model = mod[o.kind];
  assert.ok(Model, `kubernetes-models has no ${o.apiVersion} ${o.kind}`);
  try {
    new Model(o).validate();
  } catch (e) {
    assert.fail(
      `${o.kind} ${o.metadata.name} does not validate against the ${o.apiVersion} schema: ${(e as Error).message}`,
    );
  }
}

describe('every rendered object validates against the Kubernetes schemas (kubernetes-models)', () => {
  for (const [name, values] of VALUE_SETS) {
    it(name, async () => {
      const ms = render(values);
      assert.ok(ms.length >= 12, `only ${ms.length} objects`);
      for (const m of ms) await validateSchema(m.object);
    });
  }

  it('deploy/manifests/ipkeeper.yaml: the namespace, every CRD and the chart, each valid', async () => {
    const docs = parseAllDocuments(readFileSync(MANIFESTS_FILE, 'utf8')).map((d) => {
      assert.deepEqual('errors' in d ? d.errors : [], []);
      return d.toJS() as Obj;
    });
    for (const o of docs) await validateSchema(o);
    const kinds = docs.map((o) => o.kind);
    assert.equal(kinds[0], 'Namespace');
    assert.equal(docs[0]?.metadata.name, 'ipkeeper-system');
    assert.deepEqual(
      docs.filter((o) => o.kind === 'CustomResourceDefinition').map((o) => o.metadata.name),
      allCrds().map((c) => (c.metadata as Obj).name),
    );
    // Everything namespaced goes to ipkeeper-system.
    for (const o of docs)
      if (o.metadata.namespace !== undefined)
        assert.equal(o.metadata.namespace, 'ipkeeper-system', `${o.kind} ${o.metadata.name}`);
    // CRDs before the objects, as Helm installs crds/ first.
    assert.ok(kinds.lastIndexOf('CustomResourceDefinition') < kinds.indexOf('ServiceAccount'));
  });
});

// ---- RBAC ----------------------------------------------------------------------------------------------

const READ = ['get', 'list', 'watch'];
const crdFacts = allCrds().map((c) => {
  const crd = c as Obj;
  return {
    plural: crd.spec.names.plural as string,
    status: crd.spec.versions.some((v: Obj) => v.subresources?.status !== undefined),
  };
});
const plurals = crdFacts.map((c) => c.plural).sort();

const WORKLOADS: Obj[] = [
  {
    apiGroups: ['apps'],
    resources: ['daemonsets', 'deployments', 'replicasets', 'statefulsets'],
    verbs: READ,
  },
  { apiGroups: ['batch'], resources: ['cronjobs', 'jobs'], verbs: READ },
  { apiGroups: ['kubevirt.io'], resources: ['virtualmachineinstances', 'virtualmachines'], verbs: READ },
];

describe('RBAC is least privilege: the exact rules', () => {
  const ms = render({});

  it('the agent reads pods, namespaces, nodes, workloads and our kinds, and writes only claims, endpoints, node leases and NodePool status', () => {
    const writes = ['endpoints', 'ipclaims', 'keyvalues'];
    assert.ok(
      writes.every((p) => plurals.includes(p)),
      `our CRDs lack one of ${writes}`,
    );
    const expected: Obj[] = [
      { apiGroups: [''], resources: ['namespaces', 'nodes', 'pods'], verbs: READ },
      // Owners by GET only (src/cluster/owners.ts): no agent lists or watches workloads.
      ...WORKLOADS.map((r) => ({ ...r, verbs: ['get'] })),
      { apiGroups: ['ipkeeper.io'], resources: plurals.filter((p) => !writes.includes(p)), verbs: READ },
      {
        apiGroups: ['ipkeeper.io'],
        resources: writes,
        verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
      },
    ];
    assert.deepEqual(find(ms, 'ClusterRole', 'ipkeeper-agent').rules, expected);
    // In etcd mode the agent reads pods, namespaces, nodes and owners only: our kinds are in etcd,
    // node-pool mode or not.
    for (const values of [ETCD, { ...ETCD, agent: { nodePool: { enabled: true } } }]) {
      assert.deepEqual(find(render(values), 'ClusterRole', 'ipkeeper-agent').rules, expected.slice(0, 4));
    }
    // Node-pool mode adds NodePool status.used: the store PUTs the object, then its /status.
    const nodePool = crdFacts.some((c) => c.plural === 'nodepools' && c.status)
      ? [{ apiGroups: ['ipkeeper.io'], resources: ['nodepools', 'nodepools/status'], verbs: ['update'] }]
      : [];
    assert.deepEqual(find(render(FLIPPED), 'ClusterRole', 'ipkeeper-agent').rules, [
      ...expected,
      ...nodePool,
    ]);
    // Pools, reservations, subnets and VIPs are the operator's (and the controller's): the agent never
    // writes them, and never creates or deletes a NodePool.
    const rules = find(ms, 'ClusterRole', 'ipkeeper-agent').rules as Obj[];
    for (const p of ['ippools', 'reservedips', 'subnets', 'vips', 'networkconfigs']) {
      const writable = rules.some(
        (r) => r.resources.includes(p) && r.verbs.some((v: string) => !READ.includes(v)),
      );
      assert.equal(writable, false, `the agent may write ${p}`);
    }
    const nodePoolVerbs = (find(render(FLIPPED), 'ClusterRole', 'ipkeeper-agent').rules as Obj[])
      .filter((r) => r.resources.includes('nodepools'))
      .flatMap((r) => r.verbs);
    assert.ok(!nodePoolVerbs.includes('create') && !nodePoolVerbs.includes('delete'));
  });

  it('the controller: reads pods and workloads, writes our kinds, NADs, events, its Lease and the one webhook configuration', () => {
    const common: Obj[] = [
      { apiGroups: [''], resources: ['namespaces', 'nodes', 'pods'], verbs: READ },
      ...WORKLOADS,
      { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      {
        apiGroups: ['k8s.cni.cncf.io'],
        resources: ['network-attachment-definitions'],
        verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
      },
    ];
    const expected: Obj[] = [
      ...common,
      {
        apiGroups: ['ipkeeper.io'],
        resources: plurals,
        verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
      },
      {
        apiGroups: ['ipkeeper.io'],
        resources: crdFacts
          .filter((c) => c.status)
          .map((c) => `${c.plural}/status`)
          .sort(),
        verbs: ['get', 'update', 'patch'],
      },
      { apiGroups: ['ipkeeper.io'], resources: plurals.map((p) => `${p}/finalizers`), verbs: ['update'] },
      // Its CA into this one configuration's caBundle (GET, then PUT); never create, never another.
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['validatingwebhookconfigurations'],
        resourceNames: ['ipkeeper'],
        verbs: ['get', 'update'],
      },
    ];
    for (const [name, values] of VALUE_SETS) {
      // In etcd mode our kinds are in etcd (and there is no webhook): nothing of ipkeeper.io, no
      // webhook configuration.
      const want = values === ETCD ? common : expected;
      assert.deepEqual(find(render(values), 'ClusterRole', 'ipkeeper-controller').rules, want, name);
    }
    const role = find(ms, 'Role', 'ipkeeper-controller');
    assert.equal(role.metadata.namespace, 'ipkeeper-system');
    assert.deepEqual(role.rules, [
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
    ]);
  });

  for (const [name, values] of VALUE_SETS) {
    it(`${name}: no wildcard, no secrets, and each role is bound to its own service account only`, () => {
      const rs = render(values, 'ns-x');
      const roles = rs.filter((m) => m.object.kind === 'ClusterRole' || m.object.kind === 'Role');
      assert.deepEqual(roles.map((m) => `${m.object.kind}/${m.object.metadata.name}`).sort(), [
        'ClusterRole/ipkeeper-agent',
        'ClusterRole/ipkeeper-controller',
        'Role/ipkeeper-controller',
      ]);
      for (const m of roles) {
        for (const r of (m.object as Obj).rules as Obj[]) {
          for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames']) {
            for (const x of r[field] ?? [])
              assert.ok(!String(x).includes('*'), `${m.object.metadata.name} ${field} has ${x}`);
          }
          assert.ok(!r.resources.includes('secrets'), `${m.object.metadata.name} reaches secrets`);
          assert.equal(r.nonResourceURLs, undefined);
        }
      }
      const bindings = rs.filter((m) => m.object.kind.endsWith('Binding'));
      assert.equal(bindings.length, 3);
      for (const m of bindings) {
        const b = m.object as Obj;
        assert.deepEqual(b.roleRef, {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: b.kind === 'RoleBinding' ? 'Role' : 'ClusterRole',
          name: b.metadata.name,
        });
        assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: b.metadata.name, namespace: 'ns-x' }]);
      }
      for (const [pod, spec] of podSpecs(rs))
        assert.equal(spec.serviceAccountName, pod, `${pod} runs as another account`);
    });
  }
});

// ---- pods ------------------------------------------------------------------------------------------------

/** The value after `flag` in an argument list. */
const arg = (args: string[], flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i < 0 ? undefined : args[i + 1];
};

describe('pods: requests, probes on the health ports, the plugin install, the CLI they run', () => {
  for (const [name, values] of VALUE_SETS) {
    it(`${name}: every container has requests, and each long-running one probes /healthz and /readyz on its --listen port`, () => {
      for (const [pod, spec] of podSpecs(render(values))) {
        for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Obj[]) {
          assert.ok(
            c.resources?.requests?.cpu && c.resources?.requests?.memory,
            `${pod}/${c.name} has no cpu and memory requests`,
          );
          assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${pod}/${c.name}`);
          assert.deepEqual(
            c.securityContext?.capabilities,
            { drop: ['ALL'] },
            `${pod}/${c.name} keeps capabilities`,
          );
          assert.equal(c.securityContext?.privileged, undefined, `${pod}/${c.name}`);
        }
        for (const c of spec.containers as Obj[]) {
          const listen = arg(c.args, '--listen');
          assert.ok(listen, `${pod}/${c.name} has no --listen`);
          const port = (c.ports as Obj[]).find((p) => p.name === 'metrics');
          assert.equal(
            `0.0.0.0:${port?.containerPort}`,
            listen,
            `${pod}/${c.name}: the metrics port is not the --listen port`,
          );
          assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'metrics' });
          assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'metrics' });
        }
      }
    });
  }

  it('the agent: host network, installs the plugin into the host CNI bin dir first, serves the socket the plugin dials', () => {
    for (const [values, binDir, sockDir] of [
      [{}, '/opt/cni/bin', '/run/ipkeeper'],
      [FLIPPED, '/usr/libexec/cni', '/var/run/ipk'],
    ] as const) {
      const ds = find(render(values), 'DaemonSet', 'ipkeeper-agent');
      const spec = ds.spec.template.spec;
      assert.equal(spec.hostNetwork, true);
      assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
      const hostPath = (path: string): string => {
        const v = (spec.volumes as Obj[]).find((x) => x.hostPath?.path === path);
        assert.ok(v, `no hostPath volume for ${path}`);
        return v.name;
      };
      const [init] = spec.initContainers as Obj[];
      assert.equal(spec.initContainers.length, 1);
      assert.equal(init?.args[0], 'install-cni');
      const installDir = arg(init?.args, '--dir');
      assert.deepEqual(init?.volumeMounts, [{ name: hostPath(binDir), mountPath: installDir }]);
      const [agent] = spec.containers as Obj[];
      assert.equal(agent?.args[0], 'agent');
      assert.equal(arg(agent?.args, '--store'), 'kubernetes:');
      assert.equal(agent?.args.includes('--node-pool'), values === FLIPPED);
      assert.equal(agent?.args.includes('--node-pool-health-check'), values === FLIPPED);
      assert.equal(arg(agent?.args, '--node'), '$(NODE_NAME)');
      assert.deepEqual(agent?.env.find((e: Obj) => e.name === 'NODE_NAME').valueFrom, {
        fieldRef: { fieldPath: 'spec.nodeName' },
      });
      // A first start's IPClaims in this many LISTs (the store reads the variable; a string, as env wants).
      assert.deepEqual(
        agent?.env.find((e: Obj) => e.name === 'IPKEEPER_KUBE_SCAN_SHARDS'),
        { name: 'IPKEEPER_KUBE_SCAN_SHARDS', value: values === FLIPPED ? '8' : '4' },
      );
      // The plugin's default socket, inside the host directory the plugin on the host sees.
      assert.equal(arg(agent?.args, '--socket'), DEFAULT_SOCKET);
      assert.deepEqual(agent?.volumeMounts, [
        { name: hostPath(sockDir), mountPath: dirname(DEFAULT_SOCKET) },
      ]);
      // Nothing else of the host is mounted.
      assert.equal((spec.volumes as Obj[]).length, 2);
    }
  });

  it('etcd mode: agents --store URL --in-cluster and the controller --store URL --no-webhook, the Secrets mounted read-only; no webhook', () => {
    const ms = render(ETCD);
    const spec = find(ms, 'DaemonSet', 'ipkeeper-agent').spec.template.spec;
    const [agent] = spec.containers as Obj[];
    assert.equal(arg(agent?.args, '--store'), ETCD.store.etcd.url);
    assert.ok(agent?.args.includes('--in-cluster'));
    assert.equal(arg(agent?.args, '--etcd-cacert'), '/etc/ipkeeper/etcd-tls/ca.crt');
    assert.equal(arg(agent?.args, '--etcd-cert'), '/etc/ipkeeper/etcd-tls/tls.crt');
    assert.equal(arg(agent?.args, '--etcd-key'), '/etc/ipkeeper/etcd-tls/tls.key');
    assert.equal(arg(agent?.args, '--etcd-user'), 'ipkeeper');
    assert.equal(arg(agent?.args, '--etcd-password-file'), '/etc/ipkeeper/etcd-password/password');
    assert.deepEqual((agent?.volumeMounts as Obj[]).slice(1), [
      { name: 'etcd-tls', mountPath: '/etc/ipkeeper/etcd-tls', readOnly: true },
      { name: 'etcd-password', mountPath: '/etc/ipkeeper/etcd-password', readOnly: true },
    ]);
    assert.deepEqual((spec.volumes as Obj[]).slice(2), [
      { name: 'etcd-tls', secret: { secretName: 'etcd-client', defaultMode: 0o400 } },
      {
        name: 'etcd-password',
        secret: {
          secretName: 'etcd-password',
          defaultMode: 0o400,
          items: [{ key: 'password', path: 'password' }],
        },
      },
    ]);
    // The controller: the same store and flags; a non-root user reads the files through fsGroup.
    const cspec = find(ms, 'Deployment', 'ipkeeper-controller').spec.template.spec;
    const [controller] = cspec.containers as Obj[];
    assert.equal(arg(controller?.args, '--store'), ETCD.store.etcd.url);
    assert.ok(controller?.args.includes('--no-webhook'));
    assert.ok(!controller?.args.some((a: string) => a.startsWith('--webhook-')));
    for (const flag of ['--etcd-cacert', '--etcd-cert', '--etcd-key', '--etcd-user', '--etcd-password-file'])
      assert.equal(arg(controller?.args, flag), arg(agent?.args, flag), flag);
    assert.equal(cspec.securityContext.fsGroup, 1000);
    assert.deepEqual(
      (cspec.volumes as Obj[]).map((v) => [v.name, v.secret?.defaultMode]),
      [
        ['tmp', undefined],
        ['etcd-tls', 0o440],
        ['etcd-password', 0o440],
      ],
    );
    assert.deepEqual(
      (controller?.ports as Obj[]).map((p) => p.name),
      ['metrics'],
    );
    const names = ms.map((m) => `${m.object.kind}/${m.object.metadata.name}`);
    for (const gone of ['ValidatingWebhookConfiguration/ipkeeper', 'Service/ipkeeper-webhook'])
      assert.ok(!names.includes(gone), `${gone} in etcd mode`);
    for (const kept of ['Service/ipkeeper-agent-metrics', 'Service/ipkeeper-controller-metrics'])
      assert.ok(names.includes(kept), kept);
    // A CA only (no client certificate), and no user: only --etcd-cacert, one Secret.
    const caOnly = find(
      render({
        store: { etcd: { url: ETCD.store.etcd.url, tlsSecret: 'etcd-ca', clientCertificate: false } },
      }),
      'DaemonSet',
      'ipkeeper-agent',
    ).spec.template.spec;
    const args = caOnly.containers[0].args as string[];
    assert.deepEqual(
      args.filter((a) => a.startsWith('--etcd-') || a === '--in-cluster'),
      ['--in-cluster', '--etcd-cacert'],
    );
    assert.deepEqual(
      (caOnly.volumes as Obj[]).map((v) => v.name),
      ['cni-bin', 'socket-dir', 'etcd-tls'],
    );
    // Plain etcd: the URL and --in-cluster, nothing mounted beyond the default.
    const plain = find(
      render({ store: { etcd: { url: 'etcd://10.0.0.1:2379' } } }),
      'DaemonSet',
      'ipkeeper-agent',
    ).spec.template.spec;
    assert.deepEqual((plain.containers[0].args as string[]).slice(0, 4), [
      'agent',
      '--store',
      'etcd://10.0.0.1:2379',
      '--in-cluster',
    ]);
    assert.equal((plain.volumes as Obj[]).length, 2);
  });

  it('the controller: non-root, leader election namespace from the downward API, webhook flags follow the values', () => {
    const check = (values: Obj, namespace: string, webhook: 'self-signed' | 'secret' | 'off'): void => {
      const d = find(render(values, namespace), 'Deployment', 'ipkeeper-controller');
      const spec = d.spec.template.spec;
      assert.equal(spec.securityContext.runAsNonRoot, true);
      const [c] = spec.containers as Obj[];
      assert.equal(c?.args[0], 'controller');
      assert.equal(arg(c?.args, '--namespace'), '$(POD_NAMESPACE)');
      assert.deepEqual(c?.env.find((e: Obj) => e.name === 'POD_NAMESPACE').valueFrom, {
        fieldRef: { fieldPath: 'metadata.namespace' },
      });
      assert.equal(c?.securityContext.readOnlyRootFilesystem, true);
      const has = (flag: string) => c?.args.includes(flag);
      assert.equal(has('--webhook-listen'), webhook !== 'off');
      // Without the webhook the controller neither serves one nor looks for its configuration.
      assert.equal(has('--no-webhook'), webhook === 'off');
      assert.equal(has('--webhook-cert-dir'), webhook === 'secret');
      if (webhook !== 'off') {
        assert.equal(
          arg(c?.args, '--webhook-listen'),
          `0.0.0.0:${(c?.ports as Obj[]).find((p) => p.name === 'webhook')?.containerPort}`,
        );
        assert.equal(arg(c?.args, '--webhook-config'), 'ipkeeper');
        assert.equal(arg(c?.args, '--webhook-service'), `${namespace}/ipkeeper-webhook`);
      }
      if (webhook === 'secret') {
        const vol = (spec.volumes as Obj[]).find((v) => v.secret?.secretName === 'ipkeeper-webhook-cert');
        assert.ok(vol);
        assert.deepEqual(
          c?.volumeMounts.find((m: Obj) => m.name === vol.name),
          { name: vol.name, mountPath: arg(c?.args, '--webhook-cert-dir'), readOnly: true },
        );
      }
    };
    check({}, 'ns-a', 'self-signed');
    check(FLIPPED, 'ns-b', 'secret');
    check(WEBHOOK_OFF, 'ns-c', 'off');
    assert.equal(find(render({}), 'Deployment', 'ipkeeper-controller').spec.replicas, 2);
  });

  it('the webhook: what users write, to the controller through the ipkeeper-webhook Service, as the controller would make it', async () => {
    const { WEBHOOK_PATH } = await import('../../src/controller/webhook.ts');
    const { webhookConfigObject } = await import('../../src/controller/webhook-config.ts');
    const ms = render({}, 'ns-w');
    const vwc = find(ms, 'ValidatingWebhookConfiguration', 'ipkeeper');
    assert.equal(vwc.webhooks.length, 1);
    const w = vwc.webhooks[0];
    assert.equal(w.failurePolicy, 'Fail');
    // The controller's own configuration (made when none exists) and the chart's agree on what is
    // validated: IPPool and ReservedIP, never the claims the agents write on the allocation path.
    const own = (
      webhookConfigObject(
        'ipkeeper',
        { service: { namespace: 'ns-w', name: 'ipkeeper-webhook', port: 443 } },
        'CA',
      ) as Obj
    ).webhooks[0];
    assert.deepEqual(w.rules, own.rules);
    assert.deepEqual(w.rules, [
      {
        apiGroups: ['ipkeeper.io'],
        apiVersions: ['*'],
        operations: ['CREATE', 'UPDATE'],
        resources: ['ippools', 'reservedips', 'subnets', 'vips', 'networkconfigs'],
        scope: '*',
      },
    ]);
    for (const k of ['name', 'admissionReviewVersions', 'sideEffects', 'timeoutSeconds', 'failurePolicy']) {
      assert.deepEqual(w[k], own[k], k);
    }
    assert.deepEqual(w.clientConfig.service, { ...own.clientConfig.service });
    assert.deepEqual(w.clientConfig.service, {
      name: 'ipkeeper-webhook',
      namespace: 'ns-w',
      path: WEBHOOK_PATH,
      port: 443,
    });
    const svc = find(ms, 'Service', 'ipkeeper-webhook');
    assert.deepEqual(svc.spec.ports, [{ name: 'https', port: 443, targetPort: 'webhook', protocol: 'TCP' }]);
    assert.equal(svc.spec.selector['app.kubernetes.io/component'], 'controller');
    assert.equal(
      find(render(FLIPPED), 'ValidatingWebhookConfiguration', 'ipkeeper').webhooks[0].failurePolicy,
      'Ignore',
    );
    assert.equal(
      find(render(FLIPPED), 'ValidatingWebhookConfiguration', 'ipkeeper').metadata.annotations[
        'cert-manager.io/inject-ca-from'
      ],
      'ipkeeper-system/ipkeeper-webhook',
    );
    const off = render(WEBHOOK_OFF);
    assert.equal(
      off.some(
        (m) =>
          m.object.kind === 'ValidatingWebhookConfiguration' || m.object.metadata.name === 'ipkeeper-webhook',
      ),
      false,
    );
  });

  it('metrics Services select the pods and point Prometheus at their metrics port', () => {
    for (const [values, ports, annotated] of [
      [{}, [9710, 9711], true],
      [FLIPPED, [19710, 19711], false],
    ] as const) {
      const ms = render(values);
      for (const [part, port] of [
        ['controller', ports[0]],
        ['agent', ports[1]],
      ] as const) {
        const svc = find(ms, 'Service', `ipkeeper-${part}-metrics`);
        assert.deepEqual(svc.spec.ports, [{ name: 'metrics', port, targetPort: 'metrics', protocol: 'TCP' }]);
        const workload = find(ms, part === 'agent' ? 'DaemonSet' : 'Deployment', `ipkeeper-${part}`);
        for (const [k, v] of Object.entries(svc.spec.selector))
          assert.equal(workload.spec.template.metadata.labels[k], v);
        assert.deepEqual(
          svc.metadata.annotations,
          annotated
            ? {
                'prometheus.io/scrape': 'true',
                'prometheus.io/port': String(port),
                'prometheus.io/path': '/metrics',
              }
            : undefined,
        );
      }
    }
  });

  it('the commands and flags the pods run are ipkeeper CLI commands and options', () => {
    const cli = buildCli();
    for (const [name, values] of VALUE_SETS) {
      for (const [pod, spec] of podSpecs(render(values))) {
        for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Obj[]) {
          const [command, ...rest] = c.args as string[];
          const cmd = cli.commands.find((x) => x.name() === command);
          assert.ok(
            cmd,
            `${name}: ${pod}/${c.name} runs \`ipkeeper ${command}\`, which the CLI does not have`,
          );
          const known = new Set(cmd.options.map((o) => o.long));
          for (const a of rest.filter((x) => x.startsWith('--'))) {
            assert.ok(known.has(a), `${name}: ${pod}/${c.name}: \`ipkeeper ${command}\` has no option ${a}`);
          }
        }
      }
    }
  });
});

// ---- the real API server --------------------------------------------------------------------------------

const PLURAL: Record<string, [string, boolean]> = {
  ServiceAccount: ['serviceaccounts', true],
  Service: ['services', true],
  Role: ['roles', true],
  RoleBinding: ['rolebindings', true],
  DaemonSet: ['daemonsets', true],
  Deployment: ['deployments', true],
  Pod: ['pods', true],
  ClusterRole: ['clusterroles', false],
  ClusterRoleBinding: ['clusterrolebindings', false],
  ValidatingWebhookConfiguration: ['validatingwebhookconfigurations', false],
};

function collectionPath(o: Obj): string {
  const entry = PLURAL[o.kind];
  assert.ok(entry, `no API path known for ${o.kind}`);
  const [plural, namespaced] = entry;
  const base = o.apiVersion === 'v1' ? '/api/v1' : `/apis/${o.apiVersion}`;
  return namespaced ? `${base}/namespaces/${o.metadata.namespace}/${plural}` : `${base}/${plural}`;
}

/** Paths of what we sent that the server's answer lacks or changed: dropped (unknown) or rewritten fields. */
function lost(sent: unknown, stored: unknown, path = ''): string[] {
  if (Array.isArray(sent)) {
    // Admission may append (DefaultTolerationSeconds adds two tolerations to every pod).
    if (!Array.isArray(stored) || stored.length < sent.length)
      return [`${path} (sent ${JSON.stringify(sent)}, stored ${JSON.stringify(stored)})`];
    return sent.flatMap((x, i) => lost(x, stored[i], `${path}[${i}]`));
  }
  if (sent !== null && typeof sent === 'object') {
    if (stored === null || typeof stored !== 'object') return [`${path} (stored ${JSON.stringify(stored)})`];
    return Object.entries(sent).flatMap(([k, v]) =>
      k in stored ? lost(v, (stored as Obj)[k], `${path}.${k}`) : [`${path}.${k} (dropped)`],
    );
  }
  return sent === stored ? [] : [`${path} (sent ${JSON.stringify(sent)}, stored ${JSON.stringify(stored)})`];
}

describe('kube-apiserver v1.20.2 accepts every object (dryRun=All) and keeps every field', () => {
  let cluster: TestCluster;
  const ns = `ipk-deploy-${randomBytes(3).toString('hex')}`;

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    const r = await kubeRequest(cluster, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    // Pods are admitted only for service accounts that exist: these two are created for real.
    for (const m of render({}, ns).filter((x) => x.object.kind === 'ServiceAccount')) {
      const c = await kubeRequest(cluster, 'POST', collectionPath(m.object), m.object);
      assert.equal(c.status, 201, JSON.stringify(c.body));
    }
  });
  after(async () => {
    if (cluster) {
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${ns}`);
      await cluster.stop();
    }
  });

  const dryRun = async (o: Obj): Promise<void> => {
    const r = await kubeRequest(cluster, 'POST', `${collectionPath(o)}?dryRun=All`, o);
    // The service accounts exist already (created for real above): a dry run of those is a 409.
    if (o.kind === 'ServiceAccount' && r.status === 409) return;
    assert.equal(
      r.status,
      201,
      `${o.kind} ${o.metadata.name}: HTTP ${r.status} ${JSON.stringify(r.body?.message ?? r.body)}`,
    );
    assert.deepEqual(
      lost(o, r.body),
      [],
      `${o.kind} ${o.metadata.name}: the server dropped or changed fields`,
    );
  };

  for (const [name, values] of VALUE_SETS) {
    it(name, async () => {
      const ms = render(values, ns);
      for (const m of ms) await dryRun(m.object);
      // Each pod template as the Pod a controller would make of it. No kube-controller-manager runs
      // here to mint service account tokens, so these pods do not ask for one.
      for (const [pod, spec] of podSpecs(ms)) {
        const workload = ms.find(
          (m) => ['Deployment', 'DaemonSet'].includes(m.object.kind) && m.object.metadata.name === pod,
        );
        const template = (workload?.object as Obj).spec.template;
        await dryRun({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `${pod}-x`, namespace: ns, labels: template.metadata.labels },
          spec: { ...spec, automountServiceAccountToken: false },
        });
      }
    });
  }

  it('and refuses a broken one (this check can fail)', async () => {
    const d = find(render({}, ns), 'Deployment', 'ipkeeper-controller');
    const broken = structuredClone(d);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 70000;
    const r = await kubeRequest(cluster, 'POST', `${collectionPath(broken)}?dryRun=All`, broken);
    assert.equal(r.status, 422, JSON.stringify(r.body));
    const typo = structuredClone(d);
    typo.spec.template.spec.containers[0].readinesProbe =
      typo.spec.template.spec.containers[0].readinessProbe;
    const t = await kubeRequest(cluster, 'POST', `${collectionPath(typo)}?dryRun=All`, typo);
    assert.equal(t.status, 201);
    assert.deepEqual(lost(typo, t.body), ['.spec.template.spec.containers[0].readinesProbe (dropped)']);
  });

  it('nothing of the dry runs was stored', async () => {
    const r = await kubeRequest(cluster, 'GET', `/apis/apps/v1/namespaces/${ns}/deployments`);
    assert.deepEqual(r.body.items, []);
    // A cluster of our own has no webhook configuration; an external one may run ipkeeper for real.
    if (!cluster.external) {
      const w = await kubeRequest(
        cluster,
        'GET',
        '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/ipkeeper',
      );
      assert.equal(w.status, 404);
    }
  });
});

it('the chart loads (Chart.yaml, values.yaml, templates)', () => {
  const c = loadChart();
  assert.equal(c.name, 'ipkeeper');
  assert.ok(Object.keys(c.templates).length >= 6);
});
