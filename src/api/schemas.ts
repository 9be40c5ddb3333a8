/**
 * @module api/schemas
 * The TypeBox schemas of the kinds of `ipkeeper.io/v1alpha1` (`kinds.ts` names the kinds): each
 * gives the TypeScript type (`Static`, re-exported by `kinds.ts`), the structural validation with
 * field paths (`validate.ts`), and the CRD OpenAPI v3 schema (`crd.ts`). Only what validates or
 * describes objects loads this module (and TypeBox's few hundred files); the agent's start does not.
 */
import Type from 'typebox';
import type { Static, TSchema } from 'typebox';
import {
  API_VERSION,
  IFNAME_PATTERN,
  LABEL_PATTERN,
  NAME_PATTERN,
  RETENTION_PATTERN,
  type KindInfo,
} from './kinds.ts';

const StringMap = Type.Record(Type.String(), Type.String());

export const ObjectMeta = Type.Object({
  name: Type.String({
    pattern: NAME_PATTERN,
    maxLength: 253,
    description: 'object name (DNS-1123 subdomain)',
  }),
  namespace: Type.Optional(Type.String({ pattern: LABEL_PATTERN, maxLength: 63 })),
  labels: Type.Optional(StringMap),
  annotations: Type.Optional(StringMap),
  uid: Type.Optional(Type.String()),
  resourceVersion: Type.Optional(Type.String()),
  generation: Type.Optional(Type.Integer()),
  creationTimestamp: Type.Optional(Type.String()),
  deletionTimestamp: Type.Optional(Type.String()),
  finalizers: Type.Optional(Type.Array(Type.String())),
});
export type ObjectMeta = Static<typeof ObjectMeta>;

const Route = Type.Object(
  {
    dst: Type.String({ description: 'destination CIDR, e.g. 0.0.0.0/0 or 10.7.0.0/16' }),
    gw: Type.Optional(Type.String({ description: 'next hop; defaults to the pool gateway' })),
  },
  { additionalProperties: false },
);
export type Route = Static<typeof Route>;

export const LabelSelector = Type.Object(
  {
    matchLabels: Type.Optional(StringMap),
    matchExpressions: Type.Optional(
      Type.Array(
        Type.Object({
          key: Type.String(),
          operator: Type.Union([
            Type.Literal('In'),
            Type.Literal('NotIn'),
            Type.Literal('Exists'),
            Type.Literal('DoesNotExist'),
          ]),
          values: Type.Optional(Type.Array(Type.String())),
        }),
      ),
    ),
  },
  { description: 'a Kubernetes label selector' },
);
export type LabelSelector = Static<typeof LabelSelector>;

const AddressList = (description: string) =>
  Type.Array(Type.String({ minLength: 1 }), {
    description: `${description}; each item a single address, a range "a-b" or a CIDR`,
  });

export const IPPoolSpec = Type.Object(
  {
    subnet: Type.String({ description: 'the subnet the pool lives in, e.g. 10.6.0.0/16 or fd00:6::/64' }),
    ips: Type.Optional(
      AddressList('addresses the pool may hand out (default: every usable address of the subnet)'),
    ),
    excludeIPs: Type.Optional(AddressList('addresses inside ips that are never handed out')),
    gateway: Type.Optional(Type.String({ description: 'gateway address, never handed out' })),
    routes: Type.Optional(Type.Array(Route)),
    vlan: Type.Optional(Type.Integer({ minimum: 0, maximum: 4094 })),
    network: Type.Optional(
      Type.String({
        pattern: LABEL_PATTERN,
        maxLength: 63,
        description:
          'uniqueness domain: an address is held at most once per network (default "default"); pools of separate L2 domains that reuse address space use separate networks',
      }),
    ),
    default: Type.Optional(Type.Boolean({ description: 'used when nothing else chooses a pool' })),
    nodeName: Type.Optional(Type.Array(Type.String(), { description: 'only pods on these nodes' })),
    namespaceName: Type.Optional(Type.Array(Type.String(), { description: 'only pods in these namespaces' })),
    multusName: Type.Optional(
      Type.Array(Type.String(), {
        description: 'only attachments of these networks (CNI config name or Multus namespace/name)',
      }),
    ),
    nodeAffinity: Type.Optional(LabelSelector),
    namespaceAffinity: Type.Optional(LabelSelector),
    podAffinity: Type.Optional(LabelSelector),
    disable: Type.Optional(Type.Boolean({ description: 'hand out no new addresses from this pool' })),
    ipRetention: Type.Optional(
      Type.String({
        pattern: RETENTION_PATTERN,
        description:
          'how long a fixed IP (StatefulSet or VM pod) of this pool stays held after its owner stops wanting it: 0, a duration such as 90s, 30m, 24h, 7d, or forever; the pod annotation ipkeeper.io/ip-retention overrides it (default 0)',
      }),
    ),
  },
  { additionalProperties: false },
);

export const PoolStatus = Type.Object({
  total: Type.Optional(Type.Integer()),
  used: Type.Optional(Type.Integer()),
  reserved: Type.Optional(Type.Integer()),
  free: Type.Optional(Type.Integer()),
});

export const IPPool = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('IPPool'),
  metadata: ObjectMeta,
  spec: IPPoolSpec,
  status: Type.Optional(PoolStatus),
});
export type IPPool = Static<typeof IPPool>;

/**
 * A range that application pools are carved from (seed 001's SpiderSubnet): a workload annotated
 * `ipkeeper.io/subnet(s)` gets an IPPool of its own, holding addresses of this subnet that no other
 * pool of it holds. The fields mean what they mean on an IPPool, and are copied onto the pools.
 */
export const SubnetSpec = Type.Object(
  {
    subnet: IPPoolSpec.properties.subnet,
    ips: Type.Optional(
      AddressList('addresses application pools may be given (default: every usable address of the subnet)'),
    ),
    excludeIPs: IPPoolSpec.properties.excludeIPs,
    gateway: IPPoolSpec.properties.gateway,
    routes: IPPoolSpec.properties.routes,
    vlan: IPPoolSpec.properties.vlan,
    network: IPPoolSpec.properties.network,
  },
  { additionalProperties: false },
);

export const SubnetStatus = Type.Object({
  total: Type.Optional(Type.Integer({ description: 'addresses the subnet can give to pools' })),
  allocated: Type.Optional(Type.Integer({ description: 'addresses held by its application pools' })),
  free: Type.Optional(Type.Integer()),
  pools: Type.Optional(
    Type.Record(Type.String(), Type.Array(Type.String()), {
      description: 'application pool name -> the addresses (ranges) it holds',
    }),
  ),
});

export const Subnet = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('Subnet'),
  metadata: ObjectMeta,
  spec: SubnetSpec,
  status: Type.Optional(SubnetStatus),
});
export type Subnet = Static<typeof Subnet>;

export const ReservedIP = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('ReservedIP'),
  metadata: ObjectMeta,
  spec: Type.Object(
    { ips: AddressList('addresses no pool ever hands out, present or future') },
    { additionalProperties: false },
  ),
});
export type ReservedIP = Static<typeof ReservedIP>;

export const ClaimOwner = Type.Object({
  kind: Type.String({ description: 'Pod, VIP, Node, ...' }),
  namespace: Type.Optional(Type.String()),
  name: Type.String(),
  uid: Type.Optional(Type.String()),
});
export type ClaimOwner = Static<typeof ClaimOwner>;

/** One held address: the uniqueness record. Named `<network>.<address key>`. */
export const IPClaim = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('IPClaim'),
  metadata: ObjectMeta,
  spec: Type.Object({
    network: Type.String(),
    ip: Type.String(),
    family: Type.Union([Type.Literal(4), Type.Literal(6)]),
    pool: Type.String(),
    owner: ClaimOwner,
    /** The CNI attachment holding it: network config name, container id, interface. */
    cniNetwork: Type.Optional(Type.String()),
    containerId: Type.Optional(Type.String()),
    ifName: Type.Optional(Type.String()),
    node: Type.Optional(Type.String()),
    /**
     * A VIP's claim only: the pod using the VIP as its address (annotation `ipkeeper.io/vip`). The
     * claim stays the VIP's; this field is written with the claim's version as precondition, so two
     * pods can never both take it (src/ipam/vip.ts).
     */
    boundTo: Type.Optional(
      Type.Object({
        pod: ClaimOwner,
        cniNetwork: Type.String(),
        containerId: Type.String(),
        ifName: Type.String(),
        node: Type.Optional(Type.String()),
        /** Kept after the pod's DEL for a pod of this workload kind: the same pod name gets it back. */
        fixed: Type.Optional(Type.Union([Type.Literal('StatefulSet'), Type.Literal('VirtualMachine')])),
        /** When the pod took it (CNI GC leaves younger bindings alone: their ADD may be in flight). */
        boundAt: Type.Optional(Type.String()),
        releasedAt: Type.Optional(Type.String()),
      }),
    ),
    createdAt: Type.String({ description: 'RFC 3339 time the claim was made' }),
    /** `<namespace>/<name>` of the Endpoint that lists this address (pod claims). */
    endpoint: Type.Optional(
      Type.String({ description: 'the Endpoint listing this address, <namespace>/<name>' }),
    ),
    /**
     * Kept past CNI DEL by its fixed Endpoint (StatefulSet/VM pod): CNI DEL, CNI GC and leak reclaim
     * leave it alone; the retention GC or `ipkeeper reclaim` releases it.
     */
    fixed: Type.Optional(Type.Boolean({ description: 'kept past CNI DEL for the next pod of its Endpoint' })),
  }),
});
export type IPClaim = Static<typeof IPClaim>;

/**
 * One pod (or VM) and the addresses it holds, per interface: written by the agent on ADD, read back
 * on the next ADD of the same pod name (fixed IPs) and by the controller's GC (retention). Everything
 * is in `spec` on purpose: one writer, one atomic write (a status subresource would need two).
 * Key: `endpoints/<namespace>/<pod name>`.
 */
export const EndpointIp = Type.Object({
  ip: Type.String(),
  family: Type.Union([Type.Literal(4), Type.Literal(6)]),
  pool: Type.String(),
  network: Type.String({ description: 'uniqueness domain of the claim (IPPool spec.network)' }),
  /** Store key of the IPClaim, `ipclaims/<network>.<address key>`. */
  claim: Type.String(),
  gateway: Type.Optional(Type.String()),
});
export type EndpointIp = Static<typeof EndpointIp>;

export const EndpointInterface = Type.Object({
  ifName: Type.String(),
  cniNetwork: Type.String({ description: 'the attachment network (CNI config name)' }),
  ips: Type.Array(EndpointIp),
  routes: Type.Optional(Type.Array(Route)),
  /** Policy routing table of this interface (multi-NIC), when it is not the default-route NIC. */
  table: Type.Optional(Type.Integer()),
});
export type EndpointInterface = Static<typeof EndpointInterface>;

export const OwnerReference = Type.Object({
  apiVersion: Type.Optional(Type.String()),
  kind: Type.String(),
  name: Type.String(),
  uid: Type.Optional(Type.String()),
});

export const Endpoint = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('Endpoint'),
  metadata: ObjectMeta,
  spec: Type.Object({
    podUid: Type.Optional(Type.String()),
    node: Type.Optional(Type.String()),
    containerId: Type.Optional(Type.String()),
    /**
     * The controller that decides: a fixed pod's StatefulSet or VirtualMachine (its
     * VirtualMachineInstance when the VM is not known), else the top controller (Deployment, ...);
     * absent for a bare pod.
     */
    owner: Type.Optional(OwnerReference),
    /**
     * Why the addresses outlive the pod: absent = released with the pod. `Pod`: a pod without a
     * controller marked `k8s.ksyun.com/pod-ip-fixed: "true"` (KCE), whose name is the identity.
     */
    fixed: Type.Optional(
      Type.Union([
        Type.Literal('StatefulSet'),
        Type.Literal('VirtualMachine'),
        Type.Literal('VIP'),
        Type.Literal('Pod'),
      ]),
    ),
    /**
     * `0`, a duration (`90s`, `24h`, `7d`) or `forever` (RETENTION_PATTERN; `src/ipam/retention.ts`):
     * counted from `releasedAt` once the owner no longer wants the addresses.
     */
    retention: Type.Optional(Type.String()),
    interfaces: Type.Array(EndpointInterface),
    /** Set when the pod's last attachment was deleted (CNI DEL) while its addresses were kept. */
    releasedAt: Type.Optional(Type.String()),
    updatedAt: Type.Optional(Type.String()),
  }),
});
export type Endpoint = Static<typeof Endpoint>;

/**
 * A reserved address (Kube-OVN's `Vip`): one address per family taken from a pool (or from a Subnet,
 * outside every pool of it), dynamically or
 * at `v4ip`/`v6ip`, held by a claim owned by the VIP (never given to a pod by allocation) and released
 * when the VIP is deleted. It can be bound to pods of `namespace` by allowed address pairs (pods that
 * match the selector and list it in `ipkeeper.io/aaps`), or be one pod's address (`ipkeeper.io/vip`).
 */
export const VIPSpec = Type.Object(
  {
    pool: Type.Optional(
      Type.String({
        pattern: NAME_PATTERN,
        description:
          'the IPPool the address comes from (Kube-OVN: spec.subnet); its family decides the address family. Give exactly one of pool and subnet',
      }),
    ),
    ipv6Pool: Type.Optional(
      Type.String({
        pattern: NAME_PATTERN,
        description: 'a second, IPv6 pool for a dual-stack VIP (pool is then IPv4)',
      }),
    ),
    subnet: Type.Optional(
      Type.String({
        pattern: NAME_PATTERN,
        description:
          'instead of pool: the Subnet the address comes from, one that no IPPool of its network holds (application pools never take it); its family decides the address family',
      }),
    ),
    ipv6Subnet: Type.Optional(
      Type.String({
        pattern: NAME_PATTERN,
        description: 'a second, IPv6 Subnet for a dual-stack VIP from subnets (subnet is then IPv4)',
      }),
    ),
    // A pattern, not an enum: kube-apiserver v1.20 refuses "" as a member of a CRD enum.
    type: Type.Optional(
      Type.String({
        pattern: '^(switch_lb_vip)?$',
        description:
          '"" (an IPAM placeholder) or switch_lb_vip (the front end of a load balancer inside the subnet)',
      }),
    ),
    v4ip: Type.Optional(
      Type.String({ description: 'a fixed IPv4 address inside the pool or subnet (default: any free one)' }),
    ),
    v6ip: Type.Optional(
      Type.String({ description: 'a fixed IPv6 address inside the pool or subnet (default: any free one)' }),
    ),
    mac: Type.Optional(
      Type.String({
        pattern: '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$',
        description: 'the MAC to report (default: derived from the address, locally administered)',
      }),
    ),
    namespace: Type.Optional(
      Type.String({
        pattern: LABEL_PATTERN,
        maxLength: 63,
        description: 'allowed address pairs: only pods of this namespace bind',
      }),
    ),
    selector: Type.Optional(
      Type.Array(Type.String(), {
        description: 'allowed address pairs: "key: value" labels the pods must all carry (Kube-OVN form)',
      }),
    ),
    podSelector: Type.Optional(LabelSelector),
  },
  { additionalProperties: false },
);

export const VIPStatus = Type.Object({
  ready: Type.Optional(Type.Boolean()),
  v4ip: Type.Optional(Type.String()),
  v6ip: Type.Optional(Type.String()),
  mac: Type.Optional(Type.String()),
  /** The pod using the VIP as its address, `namespace/name`. */
  pod: Type.Optional(Type.String()),
  /** Pods of spec.namespace bound by allowed address pairs (names, sorted). */
  pods: Type.Optional(Type.Array(Type.String())),
  /** Why the VIP is not ready. */
  message: Type.Optional(Type.String()),
});
export type VIPStatus = Static<typeof VIPStatus>;

export const VIP = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('VIP'),
  metadata: ObjectMeta,
  spec: VIPSpec,
  status: Type.Optional(VIPStatus),
});
export type VIP = Static<typeof VIP>;

/** One address of a node pool (Cilium's AllocationIP). */
export const AllocationIP = Type.Object(
  {
    owner: Type.Optional(
      Type.String({ description: 'who uses it (status.used only; ignored in spec.pool)' }),
    ),
    resource: Type.Optional(Type.String({ description: 'what the address belongs to, e.g. an ENI id' })),
  },
  { additionalProperties: false },
);

/**
 * The exact addresses one node may use (Cilium's CRD-backed IPAM): named after the node; the agent
 * of that node, in node-pool mode, allocates only from `spec.pool` and reports `status.used`.
 */
export const NodePool = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('NodePool'),
  metadata: ObjectMeta,
  spec: Type.Object(
    {
      pool: Type.Optional(
        Type.Record(Type.String(), AllocationIP, {
          description: 'single addresses (no CIDRs) -> {resource}',
        }),
      ),
      subnets: Type.Optional(
        Type.Array(Type.String(), {
          description:
            'at most one subnet per family that the addresses lie in: pods get its prefix length (default: /32 or /128, as Cilium)',
        }),
      ),
      gateways: Type.Optional(
        Type.Array(Type.String(), { description: 'at most one gateway per family, inside its subnet' }),
      ),
      routes: Type.Optional(Type.Array(Route)),
      network: Type.Optional(IPPoolSpec.properties.network),
    },
    { additionalProperties: false },
  ),
  status: Type.Optional(
    Type.Object({
      used: Type.Optional(
        Type.Record(Type.String(), AllocationIP, { description: 'address -> {owner, resource}' }),
      ),
      updatedAt: Type.Optional(Type.String()),
    }),
  ),
});
export type NodePool = Static<typeof NodePool>;

/**
 * A short network spec that the controller turns into a Multus NetworkAttachmentDefinition of the
 * same namespace and name, with ipkeeper as its IPAM (`src/controller/netconfig.ts`). Which fields
 * a type takes (master for macvlan/ipvlan, resourceName for sriov, bridge for bridge) and which
 * modes it knows are checked in `validate.ts`.
 */
export const NetworkConfigSpec = Type.Object(
  {
    type: Type.Union(
      [Type.Literal('macvlan'), Type.Literal('ipvlan'), Type.Literal('sriov'), Type.Literal('bridge')],
      {
        description: 'the main CNI plugin: macvlan, ipvlan, sriov or bridge',
      },
    ),
    master: Type.Optional(
      Type.String({
        pattern: IFNAME_PATTERN,
        maxLength: 15,
        description: 'macvlan/ipvlan: the host interface the pods attach to, e.g. ens192',
      }),
    ),
    resourceName: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*$',
        description: 'sriov: the device plugin resource the VFs come from, e.g. intel.com/sriov_netdevice',
      }),
    ),
    bridge: Type.Optional(
      Type.String({
        pattern: IFNAME_PATTERN,
        maxLength: 15,
        description: 'bridge: the Linux bridge name, e.g. br0',
      }),
    ),
    vlan: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 4094,
        description:
          'VLAN id (0 = untagged); macvlan/ipvlan attach to the sub-interface <master>.<vlan>, which must exist on the node; sriov and bridge tag the port',
      }),
    ),
    mode: Type.Optional(
      Type.Union(
        [
          Type.Literal('bridge'),
          Type.Literal('private'),
          Type.Literal('vepa'),
          Type.Literal('passthru'),
          Type.Literal('l2'),
          Type.Literal('l3'),
          Type.Literal('l3s'),
        ],
        { description: 'macvlan: bridge (default), private, vepa, passthru; ipvlan: l2 (default), l3, l3s' },
      ),
    ),
    mtu: Type.Optional(
      Type.Integer({ minimum: 68, maximum: 65535, description: "interface MTU (default: the master's)" }),
    ),
    ippools: Type.Optional(
      Type.Object(
        {
          ipv4: Type.Optional(Type.Array(Type.String({ pattern: NAME_PATTERN, maxLength: 253 }))),
          ipv6: Type.Optional(Type.Array(Type.String({ pattern: NAME_PATTERN, maxLength: 253 }))),
        },
        {
          additionalProperties: false,
          description:
            'the IPPools this network takes addresses from when no pod annotation chooses (ipam.pools)',
        },
      ),
    ),
    routes: Type.Optional(Type.Array(Route, { description: 'extra routes in every result (ipam.routes)' })),
    cniVersion: Type.Optional(
      Type.Union(
        [Type.Literal('0.3.1'), Type.Literal('0.4.0'), Type.Literal('1.0.0'), Type.Literal('1.1.0')],
        {
          description:
            'cniVersion of the generated configuration (default 1.0.0; Multus before v4 wants 0.3.1 or 0.4.0)',
        },
      ),
    ),
    enableCoordinator: Type.Optional(
      Type.Boolean({
        description:
          'accepted for Spiderpool manifests and ignored: ipkeeper has no coordinator plugin; pool routes and ipkeeper.io/default-route-nic cover the routing',
      }),
    ),
  },
  { additionalProperties: false },
);

export const NetworkConfig = Type.Object({
  apiVersion: Type.Literal(API_VERSION),
  kind: Type.Literal('NetworkConfig'),
  metadata: ObjectMeta,
  spec: NetworkConfigSpec,
});
export type NetworkConfig = Static<typeof NetworkConfig>;

/** The schema of each kind, by kind. */
export const SCHEMAS: Record<string, TSchema> = {
  IPPool,
  ReservedIP,
  IPClaim,
  Endpoint,
  VIP,
  NodePool,
  Subnet,
  NetworkConfig,
};

/** The schema of a kind. */
export function schemaOf(info: KindInfo): TSchema {
  const s = SCHEMAS[info.kind];
  if (s === undefined) throw new Error(`no schema for kind ${info.kind}`);
  return s;
}
