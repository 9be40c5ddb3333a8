/**
 * @module test/kube/kubelet
 * A test kubelet: the CNI step of a kubelet (and Multus), for a set of Node names, against a real
 * API server. It registers the Nodes (Ready, with capacity, as a kubelet does at start), follows the
 * pods bound to them, and for a new pod runs the installed ipkeeper CNI plugin (ADD) once per
 * network attachment, then writes the pod's status (`podIP`, `podIPs`, Running, Ready) and Multus'
 * `k8s.v1.cni.cncf.io/network-status` annotation, so `kubectl get pod -o wide` shows the address. A
 * refused ADD leaves the pod in ContainerCreating with a `FailedCreatePodSandBox` Warning event and
 * is retried with a new sandbox id, as a kubelet retries. A pod being deleted gets CNI DEL, then is
 * deleted with grace 0 (the kubelet's confirmation).
 *
 * What it leaves out, on purpose: containers and network namespaces (ipkeeper is IPAM only, so the
 * plugin runs directly, as bench/plugin.ts "IPAM plugin alone" does), restarts, probes. The pods are
 * found by polling the list (every POLL_MS) rather than a watch: simpler, and the order of work does
 * not matter here.
 *
 * Attachments: eth0 comes from `v1.multus-cni.io/default-network` (a NetworkAttachmentDefinition) or
 * else the default network configuration given; net1, net2... from `k8s.v1.cni.cncf.io/networks`
 * (`name`, `ns/name`, `ns/name@if`, or Multus' JSON list). Every configuration gets `ipam.socket` set
 * to the node's agent socket, because every "node" here is one process on the same machine.
 */
import { randomBytes } from 'node:crypto';
import { runPluginAsync, type CniOutcome } from '../e2e/harness.ts';
import { kubeRequest, type TestCluster } from './cluster.ts';
import { readyNode } from './crds.ts';

const POLL_MS = 250;
/** A kubelet retries a failed sandbox with a back-off; a short constant is enough for a test. */
const RETRY_MS = 2_000;
const NAD_API = '/apis/k8s.cni.cncf.io/v1';

export interface KubeletOptions {
  cluster: TestCluster;
  /** Node names this kubelet serves. */
  nodes: string[];
  /** The installed plugin executable (installCni). */
  plugin: string;
  /** The agent socket of a node. */
  socketOf(node: string): string;
  /** The network configuration of eth0 when the pod names no default network (a CNI config object). */
  defaultNetwork: Record<string, unknown>;
}

export interface Kubelet {
  /** Registers one more Node and serves its pods from now on (a node joining the cluster). */
  addNode(name: string): Promise<void>;
  /** Every problem this kubelet met that was not a CNI refusal (for a test's failure message). */
  errors(): string[];
  stop(): Promise<void>;
}

interface Attachment {
  ifName: string;
  config: Record<string, any>;
}

interface Sandbox {
  containerId: string;
  attachments: Attachment[];
}

/**
 * Registers the nodes and starts serving their pods.
 * @throws Error when a Node cannot be created.
 */
export async function startKubelet(o: KubeletOptions): Promise<Kubelet> {
  const problems: string[] = [];
  const sandboxes = new Map<string, Sandbox>(); // by pod uid
  const retryAt = new Map<string, number>(); // by pod uid
  const reported = new Map<string, string>(); // pod uid -> last event message
  const busy = new Set<string>();
  let stopped = false;

  for (const node of o.nodes) await registerNode(o.cluster, node);

  const cni = (command: 'ADD' | 'DEL', pod: any, sb: Sandbox, a: Attachment): Promise<CniOutcome> =>
    runPluginAsync(o.plugin, {
      command,
      containerId: sb.containerId,
      netns: `/var/run/netns/cni-${sb.containerId.slice(0, 12)}`,
      ifName: a.ifName,
      args: [
        'IgnoreUnknown=1',
        `K8S_POD_NAMESPACE=${pod.metadata.namespace}`,
        `K8S_POD_NAME=${pod.metadata.name}`,
        `K8S_POD_INFRA_CONTAINER_ID=${sb.containerId}`,
        `K8S_POD_UID=${pod.metadata.uid}`,
      ].join(';'),
      config: a.config,
    });

  const teardown = async (pod: any, sb: Sandbox, upTo = sb.attachments.length): Promise<void> => {
    for (const a of sb.attachments.slice(0, upTo).reverse()) {
      const r = await cni('DEL', pod, sb, a);
      if (r.code !== 0) problems.push(`DEL ${podName(pod)} ${a.ifName}: ${r.stdout}${r.stderr}`);
    }
  };

  const setUp = async (pod: any): Promise<void> => {
    const uid = pod.metadata.uid as string;
    const node = pod.spec.nodeName as string;
    let attachments: Attachment[];
    try {
      attachments = await attachmentsOf(o, pod, node);
    } catch (e) {
      await refused(pod, (e as Error).message);
      return;
    }
    const sb: Sandbox = { containerId: randomBytes(32).toString('hex'), attachments };
    const status: { name: string; interface: string; ips: string[]; default?: boolean }[] = [];
    for (const [i, a] of attachments.entries()) {
      const r = await cni('ADD', pod, sb, a);
      if (r.code !== 0) {
        // A runtime tears down what it set up of a failed sandbox before trying again.
        await teardown(pod, sb, i);
        const msg = r.json?.msg
          ? `${r.json.msg}${r.json.details ? `: ${r.json.details}` : ''}`
          : r.stdout + r.stderr;
        await refused(
          pod,
          `Failed to create pod sandbox: plugin type="ipkeeper" name="${a.config.name}" failed (add) on ${a.ifName}: ${msg}`,
        );
        return;
      }
      const ips = ((r.json?.ips ?? []) as { address: string }[]).map((x) => x.address.split('/')[0]!);
      status.push({ name: a.config.name, interface: a.ifName, ips, ...(i === 0 ? { default: true } : {}) });
    }
    sandboxes.set(uid, sb);
    retryAt.delete(uid);
    const podIPs = status[0]?.ips ?? [];
    const now = new Date().toISOString();
    await kubeRequest(o.cluster, 'PATCH', podPath(pod), {
      metadata: { annotations: { 'k8s.v1.cni.cncf.io/network-status': JSON.stringify(status, null, 2) } },
    });
    const r = await kubeRequest(o.cluster, 'PATCH', `${podPath(pod)}/status`, {
      status: {
        phase: 'Running',
        startTime: pod.status?.startTime ?? now,
        podIP: podIPs[0],
        podIPs: podIPs.map((ip) => ({ ip })),
        conditions: ['Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => ({
          type,
          status: 'True',
          lastProbeTime: null,
          lastTransitionTime: now,
        })),
        containerStatuses: (pod.spec.containers ?? []).map((c: any) => ({
          name: c.name,
          image: c.image,
          imageID: '',
          containerID: `containerd://${sb.containerId}`,
          ready: true,
          started: true,
          restartCount: 0,
          state: { running: { startedAt: now } },
        })),
      },
    });
    if (r.status !== 200) problems.push(`status of ${podName(pod)}: ${r.status} ${JSON.stringify(r.body)}`);
  };

  const refused = async (pod: any, message: string): Promise<void> => {
    const uid = pod.metadata.uid as string;
    retryAt.set(uid, Date.now() + RETRY_MS);
    if (reported.get(uid) === message) return;
    reported.set(uid, message);
    const now = new Date().toISOString();
    await kubeRequest(o.cluster, 'POST', `/api/v1/namespaces/${pod.metadata.namespace}/events`, {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${pod.metadata.name}.`, namespace: pod.metadata.namespace },
      involvedObject: {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: pod.metadata.namespace,
        name: pod.metadata.name,
        uid,
      },
      reason: 'FailedCreatePodSandBox',
      message,
      type: 'Warning',
      source: { component: 'kubelet', host: pod.spec.nodeName },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
    await kubeRequest(o.cluster, 'PATCH', `${podPath(pod)}/status`, {
      status: {
        phase: 'Pending',
        containerStatuses: (pod.spec.containers ?? []).map((c: any) => ({
          name: c.name,
          image: c.image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: { waiting: { reason: 'ContainerCreating' } },
        })),
      },
    });
  };

  const tearDownAndConfirm = async (pod: any): Promise<void> => {
    const uid = pod.metadata.uid as string;
    const sb = sandboxes.get(uid);
    if (sb) await teardown(pod, sb);
    sandboxes.delete(uid);
    retryAt.delete(uid);
    reported.delete(uid);
    const r = await kubeRequest(o.cluster, 'DELETE', podPath(pod), {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      gracePeriodSeconds: 0,
      preconditions: { uid },
    });
    if (![200, 404, 409].includes(r.status)) problems.push(`delete ${podName(pod)}: ${r.status}`);
  };

  const handle = async (pod: any): Promise<void> => {
    const uid = pod.metadata.uid as string;
    if (busy.has(uid)) return;
    busy.add(uid);
    try {
      if (pod.metadata.deletionTimestamp) await tearDownAndConfirm(pod);
      else if (!sandboxes.has(uid) && Date.now() >= (retryAt.get(uid) ?? 0)) await setUp(pod);
    } catch (e) {
      problems.push(`${podName(pod)}: ${(e as Error).message}`);
    } finally {
      busy.delete(uid);
    }
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        const r = await kubeRequest(o.cluster, 'GET', '/api/v1/pods');
        const mine = ((r.body?.items ?? []) as any[]).filter(
          (p) => o.nodes.includes(p.spec?.nodeName) && !['Succeeded', 'Failed'].includes(p.status?.phase),
        );
        // Nodes work concurrently, as separate kubelets do; one node's pods one after the other (a
        // kubelet starts them in parallel), so which pod gets which address is the same every run.
        const byNode = Map.groupBy(mine, (p) => p.spec.nodeName as string);
        await Promise.all(
          [...byNode.values()].map(async (pods) => {
            for (const p of pods) await handle(p);
          }),
        );
      } catch (e) {
        problems.push(`list pods: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();

  return {
    async addNode(name: string) {
      await registerNode(o.cluster, name);
      if (!o.nodes.includes(name)) o.nodes.push(name);
    },
    errors: () => [...problems],
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

async function registerNode(c: TestCluster, name: string): Promise<void> {
  const r = await kubeRequest(c, 'POST', '/api/v1/nodes', readyNode(name));
  if (r.status !== 201 && r.status !== 409) {
    throw new Error(`registering Node ${name}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  }
}

/** The pod's network attachments, eth0 first, each with the node's socket in its IPAM section. */
async function attachmentsOf(o: KubeletOptions, pod: any, node: string): Promise<Attachment[]> {
  const ann: Record<string, string> = pod.metadata.annotations ?? {};
  const ns = pod.metadata.namespace as string;
  const out: Attachment[] = [];
  const def = ann['v1.multus-cni.io/default-network'];
  out.push({
    ifName: 'eth0',
    config: def ? await nadConfig(o.cluster, ns, def) : structuredClone(o.defaultNetwork),
  });
  const extra = parseNetworks(ann['k8s.v1.cni.cncf.io/networks'] ?? '', ns);
  for (const [i, n] of extra.entries()) {
    out.push({
      ifName: n.interface ?? `net${i + 1}`,
      config: await nadConfig(o.cluster, n.namespace, n.name),
    });
  }
  for (const a of out) {
    a.config.ipam = { ...(a.config.ipam ?? { type: 'ipkeeper' }), socket: o.socketOf(node) };
  }
  return out;
}

function parseNetworks(v: string, podNs: string): { namespace: string; name: string; interface?: string }[] {
  const t = v.trim();
  if (t === '') return [];
  if (t.startsWith('[')) {
    return (JSON.parse(t) as any[]).map((e) => ({
      namespace: e.namespace ?? podNs,
      name: e.name,
      interface: e.interface,
    }));
  }
  return t.split(',').map((s) => {
    const [ref, ifName] = s.trim().split('@') as [string, string | undefined];
    const [a, b] = ref.split('/');
    return b === undefined
      ? { namespace: podNs, name: a!, interface: ifName }
      : { namespace: a!, name: b, interface: ifName };
  });
}

/** A NetworkAttachmentDefinition's configuration as Multus hands it to the plugin that has the IPAM. */
async function nadConfig(c: TestCluster, podNs: string, ref: string): Promise<Record<string, any>> {
  const [ns, name] = ref.includes('/') ? (ref.split('/') as [string, string]) : [podNs, ref];
  const r = await kubeRequest(c, 'GET', `${NAD_API}/namespaces/${ns}/network-attachment-definitions/${name}`);
  if (r.status !== 200)
    throw new Error(`network-attachment-definition "${ns}/${name}" not found (${r.status})`);
  const conf = JSON.parse(r.body.spec.config);
  const plugin = conf.plugins ? ((conf.plugins as any[]).find((p) => p.ipam) ?? conf.plugins[0]) : conf;
  return { ...plugin, cniVersion: conf.cniVersion, name: conf.name };
}

const podPath = (pod: any): string =>
  `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`;
const podName = (pod: any): string => `${pod.metadata.namespace}/${pod.metadata.name}`;
