/**
 * @module deploy/rbac
 * The chart's RBAC, as data: what the controller and the agent may do, and the template
 * deploy/helm/ipkeeper/templates/rbac.yaml written from it (by scripts/gen-deploy.ts, through
 * `node scripts/gen-docs.ts`). The ipkeeper.io rules follow the CRDs, so a new kind gets its rules
 * when the generated files are regenerated; everything else is listed here by hand, one reason each.
 *
 * Least privilege: no `*`, no secrets, no writes outside what each part is known to write. The test
 * test/deploy/manifests.test.ts asserts the exact rule lists, so any widening fails it.
 */
import { allCrds } from '../api/crd.ts';

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** What the rules are made from: each CRD's plural and whether it has the status subresource. */
export interface CrdFacts {
  plural: string;
  status: boolean;
}

export const GROUP = 'ipkeeper.io';
const READ = ['get', 'list', 'watch'];
const WRITE = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];

/**
 * What the agent writes: the claim of every address it hands out or releases, the pod's Endpoint, and
 * its node lease (a KeyValue, `nodeleases/<node>`). Pools and reservations are the operator's
 * (`kubectl apply`, checked by the webhook); the agent only reads them. The Kubernetes store writes
 * with POST, PUT and DELETE (never PATCH).
 */
export const AGENT_WRITES = ['endpoints', 'ipclaims', 'keyvalues'];

/**
 * Status the agent writes: its node's NodePool `status.used` (which address it gave to whom). The
 * Kubernetes store writes a status as a PUT of the object and then of `/status` (store/kubernetes.ts),
 * so the agent needs `update` on both; it never creates or deletes one (the operator does).
 */
export const AGENT_STATUS_WRITES = ['nodepools'];

/** The name of the ValidatingWebhookConfiguration the chart ships and the controller patches. */
export const WEBHOOK_CONFIG = 'ipkeeper';

export function crdFacts(): CrdFacts[] {
  return allCrds()
    .map((c) => {
      const crd = c as {
        spec: { names: { plural: string }; versions: { subresources?: { status?: unknown } }[] };
      };
      return {
        plural: crd.spec.names.plural,
        status: crd.spec.versions.some((v) => v.subresources?.status !== undefined),
      };
    })
    .sort((a, b) => a.plural.localeCompare(b.plural));
}

/**
 * The workloads behind pods: owner chains up to the top controller, which fixed IPs, application
 * pools and retention key on. Read only; KubeVirt's are absent without KubeVirt.
 */
function workloadRules(verbs: string[]): PolicyRule[] {
  return [
    { apiGroups: ['apps'], resources: ['daemonsets', 'deployments', 'replicasets', 'statefulsets'], verbs },
    { apiGroups: ['batch'], resources: ['cronjobs', 'jobs'], verbs },
    { apiGroups: ['kubevirt.io'], resources: ['virtualmachineinstances', 'virtualmachines'], verbs },
  ];
}
/** The controller's: its workload cache lists and watches them (src/cluster/workloads.ts). */
export const WORKLOAD_RULES: PolicyRule[] = workloadRules(READ);
/**
 * The agent's: it GETs the owners of its own node's pods one by one (src/cluster/owners.ts) and
 * never lists or watches workloads — 5,000 agents watching every ReplicaSet would load the API server.
 */
export const AGENT_WORKLOAD_RULES: PolicyRule[] = workloadRules(['get']);

/**
 * The controller's cluster-wide rules in both store modes (its Lease rule is `controllerLeaseRule`,
 * in its namespace): what it reads and writes outside our kinds.
 */
export function controllerCommonRules(): PolicyRule[] {
  return [
    // Pool choice, fixed IPs and leak GC follow pods, their namespaces and nodes...
    { apiGroups: [''], resources: ['namespaces', 'nodes', 'pods'], verbs: READ },
    // ...and the workloads that own pods: application pools follow their replicas.
    ...WORKLOAD_RULES,
    // Events for the operator (core/v1 Events, each one created once).
    { apiGroups: [''], resources: ['events'], verbs: ['create'] },
    // NetworkConfig generates Multus NetworkAttachmentDefinitions.
    {
      apiGroups: ['k8s.cni.cncf.io'],
      resources: ['network-attachment-definitions'],
      verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
    },
  ];
}

/**
 * The controller's rules when our kinds are kept in the API server (the Kubernetes store, the
 * default); with `store.etcd.url` they live in etcd and the chart leaves these out.
 */
export function controllerStoreRules(crds: CrdFacts[] = crdFacts()): PolicyRule[] {
  const plurals = crds.map((c) => c.plural);
  return [
    { apiGroups: [GROUP], resources: plurals, verbs: WRITE },
    {
      apiGroups: [GROUP],
      resources: crds.filter((c) => c.status).map((c) => `${c.plural}/status`),
      verbs: ['get', 'update', 'patch'],
    },
    // Finalizers keep an object until the controller has released what it holds.
    { apiGroups: [GROUP], resources: plurals.map((p) => `${p}/finalizers`), verbs: ['update'] },
    // Its CA into the caBundle of this one webhook configuration (src/controller/webhook-config.ts:
    // GET, then PUT). Not `create`: the chart ships the configuration, and create cannot be narrowed
    // to one name. (The webhook checks our kinds as they reach the API server: none in etcd mode.)
    {
      apiGroups: ['admissionregistration.k8s.io'],
      resources: ['validatingwebhookconfigurations'],
      resourceNames: [WEBHOOK_CONFIG],
      verbs: ['get', 'update'],
    },
  ];
}

/** Leader election: one Lease in the release namespace (create cannot be narrowed by name). */
export function controllerLeaseRule(): PolicyRule {
  return { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] };
}

/** The agent's rules in both store modes: the pods of its node and their owners. */
export function agentCommonRules(): PolicyRule[] {
  return [
    // Pool choice on this node: the pod's labels and annotations, its namespace's, the node's labels...
    { apiGroups: [''], resources: ['namespaces', 'nodes', 'pods'], verbs: READ },
    // ...and its owners up to the top controller (a StatefulSet's pod keeps its address), by GET.
    ...AGENT_WORKLOAD_RULES,
  ];
}

/** The agent's rules on our kinds, with the Kubernetes store only (in etcd mode it reads none). */
export function agentStoreRules(crds: CrdFacts[] = crdFacts()): PolicyRule[] {
  const plurals = crds.map((c) => c.plural);
  return [
    // The store opens (lists and watches) every kind; it writes only these.
    { apiGroups: [GROUP], resources: plurals.filter((p) => !AGENT_WRITES.includes(p)), verbs: READ },
    {
      apiGroups: [GROUP],
      resources: plurals.filter((p) => AGENT_WRITES.includes(p)),
      verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'],
    },
  ];
}

/** Only in node-pool mode (`agent.nodePool.enabled`): the status writes of `AGENT_STATUS_WRITES`. */
export function agentNodePoolRules(crds: CrdFacts[] = crdFacts()): PolicyRule[] {
  const status = crds.filter((c) => c.status && AGENT_STATUS_WRITES.includes(c.plural));
  if (status.length === 0) return [];
  return [
    {
      apiGroups: [GROUP],
      resources: status.flatMap((c) => [c.plural, `${c.plural}/status`]),
      verbs: ['update'],
    },
  ];
}

function ruleYaml(r: PolicyRule, indent: string): string {
  const list = (xs: string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
  return [
    `${indent}- apiGroups: ${list(r.apiGroups)}`,
    `${indent}  resources: ${list(r.resources)}`,
    ...(r.resourceNames ? [`${indent}  resourceNames: ${list(r.resourceNames)}`] : []),
    `${indent}  verbs: ${list(r.verbs)}`,
  ].join('\n');
}

const labels = (component: string): string =>
  [
    '  labels:',
    '    app.kubernetes.io/name: ipkeeper',
    '    app.kubernetes.io/instance: {{ .Release.Name }}',
    '    app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}',
    `    app.kubernetes.io/component: ${component}`,
  ].join('\n');

function binding(kind: 'ClusterRoleBinding' | 'RoleBinding', name: string, component: string): string {
  const roleKind = kind === 'ClusterRoleBinding' ? 'ClusterRole' : 'Role';
  return [
    'apiVersion: rbac.authorization.k8s.io/v1',
    `kind: ${kind}`,
    'metadata:',
    `  name: ${name}`,
    ...(kind === 'RoleBinding' ? ['  namespace: {{ .Release.Namespace }}'] : []),
    labels(component),
    'roleRef:',
    '  apiGroup: rbac.authorization.k8s.io',
    `  kind: ${roleKind}`,
    `  name: ${name}`,
    'subjects:',
    '  - kind: ServiceAccount',
    `    name: ${name}`,
    '    namespace: {{ .Release.Namespace }}',
  ].join('\n');
}

/** The text of templates/rbac.yaml (a Helm template in the subset deploy/render.ts renders). */
export function rbacTemplate(crds: CrdFacts[] = crdFacts()): string {
  const rules = (rs: PolicyRule[]): string => rs.map((r) => ruleYaml(r, '  ')).join('\n');
  return [
    '{{- /* Generated by scripts/gen-deploy.ts from src/deploy/rbac.ts; do not edit (node scripts/gen-docs.ts). */ -}}',
    'apiVersion: rbac.authorization.k8s.io/v1',
    'kind: ClusterRole',
    'metadata:',
    '  name: ipkeeper-controller',
    labels('controller'),
    'rules:',
    rules(controllerCommonRules()),
    // etcd mode (`store.etcd.url`): our kinds are in etcd, not in the API server.
    '  {{- if not .Values.store.etcd.url }}',
    rules(controllerStoreRules(crds)),
    '  {{- end }}',
    '---',
    binding('ClusterRoleBinding', 'ipkeeper-controller', 'controller'),
    '---',
    'apiVersion: rbac.authorization.k8s.io/v1',
    'kind: Role',
    'metadata:',
    '  name: ipkeeper-controller',
    '  namespace: {{ .Release.Namespace }}',
    labels('controller'),
    'rules:',
    rules([controllerLeaseRule()]),
    '---',
    binding('RoleBinding', 'ipkeeper-controller', 'controller'),
    '---',
    'apiVersion: rbac.authorization.k8s.io/v1',
    'kind: ClusterRole',
    'metadata:',
    '  name: ipkeeper-agent',
    labels('agent'),
    'rules:',
    rules(agentCommonRules()),
    '  {{- if not .Values.store.etcd.url }}',
    rules(agentStoreRules(crds)),
    ...(agentNodePoolRules(crds).length === 0
      ? []
      : ['  {{- if .Values.agent.nodePool.enabled }}', rules(agentNodePoolRules(crds)), '  {{- end }}']),
    '  {{- end }}',
    '---',
    binding('ClusterRoleBinding', 'ipkeeper-agent', 'agent'),
    '',
  ].join('\n');
}
