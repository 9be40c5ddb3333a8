/**
 * @module controller/netconfig
 * `NetworkConfig` → Multus `NetworkAttachmentDefinition` (k8s.cni.cncf.io/v1): the pure generation
 * (`renderNad`, also behind `ipkeeper netconfig render`) and the reconciler that keeps one NAD per
 * NetworkConfig, of the same namespace and name, in the API server.
 *
 * The generated `spec.config` is a CNI conflist with one plugin — macvlan, ipvlan, sriov or bridge —
 * whose IPAM is ipkeeper (`ipam.pools`, `ipam.routes`: the keys src/cni/config.ts accepts):
 *
 *   {"cniVersion": "1.0.0", "name": "macvlan-ens192",
 *    "plugins": [{"type": "macvlan", "master": "ens192", "mode": "bridge",
 *                 "ipam": {"type": "ipkeeper", "pools": {"ipv4": ["test-ippool"]}}}]}
 *
 * The NAD carries a controller ownerReference to its NetworkConfig, so the garbage collector removes
 * it with the NetworkConfig; the reconciler deletes it too (a cluster without a garbage collector,
 * or a NetworkConfig deleted while no controller ran).
 *
 * The reconciler works in passes over everything (a `PassLoop`): list the NetworkConfigs from the
 * store and our NADs (label `app.kubernetes.io/managed-by=ipkeeper`) from the API server; create the
 * missing, update the changed (PUT at the read resourceVersion), delete those whose NetworkConfig is
 * gone. A pass runs on every NetworkConfig change and every `resyncMs`, which also puts back a NAD
 * somebody deleted or edited by hand. It never takes over a NAD it did not make (no ownerReference to
 * the NetworkConfig): that is a Warning event, since overwriting someone's network is worse than
 * not creating one. Failures are Warning events on the NetworkConfig, once per distinct message.
 *
 * No client-node at import time: the CLI's `netconfig render` loads this module.
 */
import { API_VERSION, type NetworkConfig } from '../api/kinds.ts';
import { validateObject } from '../api/validate.ts';
import { isIpamError } from '../errors.ts';
import type { WatchEvent, Watcher } from '../store/store.ts';
import type { ControllerContext, Reconciler } from './context.ts';
import { kubeJson, replyMessage } from './kube.ts';
import { countReconcile } from './metrics.ts';
import { PassLoop } from './pass-loop.ts';

export const NAD_GROUP = 'k8s.cni.cncf.io';
export const NAD_API_VERSION = `${NAD_GROUP}/v1`;
export const NAD_PLURAL = 'network-attachment-definitions';
export const NAD_CRD = `${NAD_PLURAL}.${NAD_GROUP}`;
/** Multus reads the SR-IOV device plugin resource from this NAD annotation. */
export const SRIOV_RESOURCE_ANNOTATION = 'k8s.v1.cni.cncf.io/resourceName';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'ipkeeper';
export const DEFAULT_CNI_VERSION = '1.0.0';
/** kubectl's copy of the applied manifest: about the NetworkConfig, not the NAD. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
export const NETCONFIG_PREFIX = 'networkconfigs/';
/** NetworkConfig changes are rare and a user is waiting for the NAD: follow them quickly. */
export const NETCONFIG_DELAY_MS = 100;
/** A pass over everything this often puts back NADs deleted or edited by hand. */
export const NETCONFIG_RESYNC_MS = 60_000;

export interface NetworkAttachmentDefinition {
  apiVersion: typeof NAD_API_VERSION;
  kind: 'NetworkAttachmentDefinition';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: {
      apiVersion: string;
      kind: string;
      name: string;
      uid: string;
      controller: boolean;
      blockOwnerDeletion: boolean;
    }[];
    uid?: string;
    resourceVersion?: string;
  };
  spec: { config: string };
}

/** The main plugin's modes, first = what the plugin does when none is given. */
const DEFAULT_MODE: Partial<Record<NetworkConfig['spec']['type'], string>> = {
  macvlan: 'bridge',
  ipvlan: 'l2',
};

/**
 * The CNI conflist of a NetworkConfig (an object; `renderNad` serialises it). Pure; expects a
 * validated NetworkConfig.
 */
export function cniConfigOf(nc: NetworkConfig): Record<string, unknown> {
  const s = nc.spec;
  const ipam: Record<string, unknown> = { type: 'ipkeeper' };
  const pools: Record<string, string[]> = {};
  if (s.ippools?.ipv4?.length) pools.ipv4 = s.ippools.ipv4;
  if (s.ippools?.ipv6?.length) pools.ipv6 = s.ippools.ipv6;
  if (Object.keys(pools).length > 0) ipam.pools = pools;
  if (s.routes?.length) ipam.routes = s.routes;

  const plugin: Record<string, unknown> = { type: s.type };
  const vlan = s.vlan !== undefined && s.vlan > 0 ? s.vlan : undefined;
  switch (s.type) {
    case 'macvlan':
    case 'ipvlan':
      // macvlan/ipvlan have no VLAN of their own: they sit on the node's VLAN sub-interface.
      plugin.master = vlan !== undefined ? `${s.master}.${vlan}` : s.master;
      plugin.mode = s.mode ?? DEFAULT_MODE[s.type];
      break;
    case 'sriov':
      // The VF itself comes from the device plugin (the NAD's resourceName annotation).
      if (vlan !== undefined) plugin.vlan = vlan;
      break;
    case 'bridge':
      plugin.bridge = s.bridge;
      if (vlan !== undefined) plugin.vlan = vlan;
      break;
  }
  if (s.mtu !== undefined) plugin.mtu = s.mtu;
  plugin.ipam = ipam;
  return { cniVersion: s.cniVersion ?? DEFAULT_CNI_VERSION, name: nc.metadata.name, plugins: [plugin] };
}

/**
 * The NetworkAttachmentDefinition a NetworkConfig generates: same namespace and name, its labels
 * and annotations (plus `app.kubernetes.io/managed-by: ipkeeper`, and the SR-IOV resource for
 * sriov), a controller ownerReference when the NetworkConfig has a uid. Pure.
 */
export function renderNad(nc: NetworkConfig): NetworkAttachmentDefinition {
  const m = nc.metadata;
  const annotations: Record<string, string> = { ...(m.annotations ?? {}) };
  delete annotations[LAST_APPLIED];
  if (nc.spec.type === 'sriov' && nc.spec.resourceName)
    annotations[SRIOV_RESOURCE_ANNOTATION] = nc.spec.resourceName;
  return {
    apiVersion: NAD_API_VERSION,
    kind: 'NetworkAttachmentDefinition',
    metadata: {
      name: m.name,
      namespace: m.namespace ?? 'default',
      labels: { ...(m.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY },
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      ...(m.uid
        ? {
            ownerReferences: [
              {
                apiVersion: API_VERSION,
                kind: 'NetworkConfig',
                name: m.name,
                uid: m.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          }
        : {}),
    },
    spec: { config: JSON.stringify(cniConfigOf(nc), null, 2) },
  };
}

/** Notes for a human reading the rendered NAD (the CLI prints them to stderr). */
export function renderNotes(nc: NetworkConfig): string[] {
  const notes: string[] = [];
  const name = `${nc.metadata.namespace ?? 'default'}/${nc.metadata.name}`;
  if (nc.spec.enableCoordinator) {
    notes.push(
      `${name}: spec.enableCoordinator has no effect: ipkeeper has no coordinator plugin (pool routes and ipkeeper.io/default-route-nic set the routing)`,
    );
  }
  if ((nc.spec.type === 'macvlan' || nc.spec.type === 'ipvlan') && nc.spec.vlan) {
    notes.push(
      `${name}: the VLAN sub-interface ${nc.spec.master}.${nc.spec.vlan} must exist on every node (ipkeeper does not create it)`,
    );
  }
  return notes;
}

/**
 * Names the NetworkConfig a NAD was made from when that NetworkConfig is not an API server object
 * (the controller on an etcd store): without a uid there is no ownerReference to say it.
 */
export const MADE_FROM_ANNOTATION = 'ipkeeper.io/network-config';

/** The NAD the reconciler writes: `renderNad`'s, marked with its origin when it has no owner. */
function nadOf(nc: NetworkConfig): NetworkAttachmentDefinition {
  const nad = renderNad(nc);
  if (nad.metadata.ownerReferences) return nad;
  const annotations = { ...(nad.metadata.annotations ?? {}), [MADE_FROM_ANNOTATION]: nc.metadata.name };
  return { ...nad, metadata: { ...nad.metadata, annotations } };
}

/** Whether `nad` was made from the NetworkConfig called `name` (its ownerReference, or the mark). */
function madeFrom(nad: NetworkAttachmentDefinition, name: string): boolean {
  return (
    (nad.metadata.ownerReferences ?? []).some(
      (r) => r.kind === 'NetworkConfig' && r.apiVersion.startsWith('ipkeeper.io/') && r.name === name,
    ) || nad.metadata.annotations?.[MADE_FROM_ANNOTATION] === name
  );
}

/** Whether the stored NAD already is what we would write (server-set metadata ignored). */
function sameNad(have: NetworkAttachmentDefinition, want: NetworkAttachmentDefinition): boolean {
  const norm = (refs: NetworkAttachmentDefinition['metadata']['ownerReferences']) =>
    JSON.stringify(
      (refs ?? []).map((r) => [
        r.apiVersion,
        r.kind,
        r.name,
        r.uid,
        r.controller === true,
        r.blockOwnerDeletion === true,
      ]),
    );
  const map = (x: Record<string, string> | undefined) => JSON.stringify(Object.entries(x ?? {}).sort());
  return (
    have.spec?.config === want.spec.config &&
    map(have.metadata.labels) === map(want.metadata.labels) &&
    map(have.metadata.annotations) === map(want.metadata.annotations) &&
    norm(have.metadata.ownerReferences) === norm(want.metadata.ownerReferences)
  );
}

/** A failure the next pass will not fix by itself (a NAD of someone else's, an invalid spec). */
class Refusal extends Error {}

const nadPath = (namespace?: string, name?: string): string =>
  `/apis/${NAD_API_VERSION}${namespace ? `/namespaces/${namespace}` : ''}/${NAD_PLURAL}${name ? `/${name}` : ''}`;

export class NetworkConfigReconciler implements Reconciler {
  readonly name = 'netconfig';
  private readonly delayMs: number;
  private readonly resyncMs: number;
  private loop: PassLoop | undefined;
  private watcher: Watcher | undefined;
  private resync: NodeJS.Timeout | undefined;
  /** `<namespace>/<name>` → the last Warning message sent, so each problem is one event, not one per pass. */
  private readonly reported = new Map<string, string>();

  constructor(opts: { delayMs?: number; resyncMs?: number } = {}) {
    this.delayMs = opts.delayMs ?? NETCONFIG_DELAY_MS;
    this.resyncMs = opts.resyncMs ?? NETCONFIG_RESYNC_MS;
  }

  /** Resolves after the first pass (whose failures are retried and reported, not thrown). */
  async start(ctx: ControllerContext): Promise<void> {
    const loop = new PassLoop({
      name: this.name,
      delayMs: this.delayMs,
      log: ctx.log,
      run: () => this.reconcile(ctx),
      onResult: (r) => countReconcile(ctx, this.name, r),
    });
    this.loop = loop;
    // Watch before the first pass lists, so no change falls between them.
    this.watcher = ctx.store.watch(
      NETCONFIG_PREFIX,
      (_ev: WatchEvent) => loop.kick(),
      () => loop.kick(),
    );
    if (this.resyncMs > 0) {
      this.resync = setInterval(() => loop.kick(), this.resyncMs);
      this.resync.unref();
    }
    await loop.pass();
  }

  /** Runs a pass now (after the current one) and waits for it; never rejects. For tests and operators. */
  async sync(): Promise<void> {
    await this.loop?.pass();
  }

  async stop(): Promise<void> {
    if (this.resync) clearInterval(this.resync);
    this.resync = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    await this.loop?.stop();
  }

  /** One pass. @throws Error when an API call failed in a way a retry may fix. */
  private async reconcile(ctx: ControllerContext): Promise<void> {
    const entries = await ctx.store.list<NetworkConfig>(NETCONFIG_PREFIX);
    const configs = new Map<string, NetworkConfig>();
    for (const e of entries)
      configs.set(`${e.value.metadata.namespace ?? 'default'}/${e.value.metadata.name}`, e.value);

    const listed = await kubeJson(
      ctx.kc,
      'GET',
      `${nadPath()}?labelSelector=${encodeURIComponent(`${MANAGED_BY_LABEL}=${MANAGED_BY}`)}`,
    );
    if (listed.status === 404) {
      // Multus is not installed: nothing can be written, and polling harder will not change that.
      const msg = `the NetworkAttachmentDefinition CRD (${NAD_CRD}) is not installed; install Multus, and the NAD is created at the next resync`;
      for (const nc of configs.values()) await this.warn(ctx, nc, 'NetworkAttachmentFailed', msg);
      return;
    }
    if (listed.status !== 200)
      throw new Error(`listing NetworkAttachmentDefinitions: ${replyMessage(listed)}`);
    const ours = ((listed.body as { items?: NetworkAttachmentDefinition[] }).items ?? []).filter((n) =>
      madeFrom(n, n.metadata.name),
    );

    let failed: unknown;
    for (const [id, nc] of configs) {
      try {
        if (nc.metadata.deletionTimestamp !== undefined) continue; // Going; its NAD goes with it.
        await this.ensure(ctx, nc);
        this.reported.delete(id);
      } catch (e) {
        if (e instanceof Refusal) {
          await this.warn(ctx, nc, 'NetworkAttachmentRefused', e.message);
        } else {
          await this.warn(ctx, nc, 'NetworkAttachmentFailed', String(e instanceof Error ? e.message : e));
          failed ??= e;
        }
      }
    }
    for (const nad of ours) {
      const id = `${nad.metadata.namespace}/${nad.metadata.name}`;
      if (configs.has(id)) continue;
      try {
        await this.remove(ctx, nad);
      } catch (e) {
        failed ??= e;
      }
    }
    for (const id of this.reported.keys()) if (!configs.has(id)) this.reported.delete(id);
    if (failed !== undefined) throw failed;
  }

  /** Creates or updates the NAD of one NetworkConfig. @throws Refusal, Error. */
  private async ensure(ctx: ControllerContext, raw: NetworkConfig): Promise<void> {
    let nc: NetworkConfig;
    try {
      // The CRD schema checks structure only; the type-specific rules are ours.
      nc = validateObject<NetworkConfig>(raw);
    } catch (e) {
      if (isIpamError(e))
        throw new Refusal(`${e.message}; the NetworkAttachmentDefinition is left as it was`);
      throw e;
    }
    const want = nadOf(nc);
    const { namespace, name } = want.metadata;
    const got = await kubeJson(ctx.kc, 'GET', nadPath(namespace, name));
    if (got.status === 404) {
      const r = await kubeJson(ctx.kc, 'POST', nadPath(namespace), want);
      if (r.status === 409)
        throw new Error(`NetworkAttachmentDefinition ${namespace}/${name} appeared meanwhile; retrying`);
      if (r.status !== 201)
        throw new Error(`creating NetworkAttachmentDefinition ${namespace}/${name}: ${replyMessage(r)}`);
      ctx.log.info({ namespace, name }, 'created NetworkAttachmentDefinition');
      await ctx.event({
        regarding: regardingOf(nc),
        type: 'Normal',
        reason: 'NetworkAttachmentCreated',
        message: `created NetworkAttachmentDefinition ${namespace}/${name}`,
      });
      return;
    }
    if (got.status !== 200)
      throw new Error(`reading NetworkAttachmentDefinition ${namespace}/${name}: ${replyMessage(got)}`);
    const have = got.body as NetworkAttachmentDefinition;
    if (!madeFrom(have, name)) {
      throw new Refusal(
        `NetworkAttachmentDefinition ${namespace}/${name} already exists and was not made from this NetworkConfig; ipkeeper does not overwrite it — delete it (kubectl -n ${namespace} delete net-attach-def ${name}) or rename the NetworkConfig`,
      );
    }
    if (sameNad(have, want)) return;
    const body = { ...want, metadata: { ...want.metadata, resourceVersion: have.metadata.resourceVersion } };
    const r = await kubeJson(ctx.kc, 'PUT', nadPath(namespace, name), body);
    if (r.status === 409)
      throw new Error(`NetworkAttachmentDefinition ${namespace}/${name} changed meanwhile; retrying`);
    if (r.status !== 200)
      throw new Error(`updating NetworkAttachmentDefinition ${namespace}/${name}: ${replyMessage(r)}`);
    ctx.log.info({ namespace, name }, 'updated NetworkAttachmentDefinition');
    await ctx.event({
      regarding: regardingOf(nc),
      type: 'Normal',
      reason: 'NetworkAttachmentUpdated',
      message: `updated NetworkAttachmentDefinition ${namespace}/${name}`,
    });
  }

  /** Deletes a NAD of ours whose NetworkConfig is gone, only as the object we listed (uid precondition). */
  private async remove(ctx: ControllerContext, nad: NetworkAttachmentDefinition): Promise<void> {
    const { namespace, name, uid } = nad.metadata;
    const r = await kubeJson(ctx.kc, 'DELETE', nadPath(namespace, name), {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      ...(uid ? { preconditions: { uid } } : {}),
    });
    // 404: the garbage collector was first. 409: another object of that name now: not ours to judge.
    if (r.status === 404 || r.status === 409) return;
    if (r.status !== 200 && r.status !== 202)
      throw new Error(`deleting NetworkAttachmentDefinition ${namespace}/${name}: ${replyMessage(r)}`);
    ctx.log.info({ namespace, name }, 'deleted NetworkAttachmentDefinition of a deleted NetworkConfig');
  }

  private async warn(
    ctx: ControllerContext,
    nc: NetworkConfig,
    reason: string,
    message: string,
  ): Promise<void> {
    const id = `${nc.metadata.namespace ?? 'default'}/${nc.metadata.name}`;
    if (this.reported.get(id) === message) return;
    this.reported.set(id, message);
    ctx.log.warn({ networkConfig: id, reason }, message);
    await ctx.event({ regarding: regardingOf(nc), type: 'Warning', reason, message });
  }
}

function regardingOf(nc: NetworkConfig) {
  return {
    apiVersion: API_VERSION,
    kind: 'NetworkConfig',
    namespace: nc.metadata.namespace ?? 'default',
    name: nc.metadata.name,
    ...(nc.metadata.uid ? { uid: nc.metadata.uid } : {}),
  };
}
