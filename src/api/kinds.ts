/**
 * @module api/kinds
 * The kinds of `ipkeeper.io/v1alpha1`, from one schema source: each TypeBox schema below gives the
 * TypeScript type (`Static`), the structural validation with field paths (`validate.ts`), and the
 * CRD OpenAPI v3 schema (`crd.ts`). Semantic checks that a schema cannot express (an address inside
 * its subnet) live in `validate.ts`.
 */
import Type from 'typebox';
import type { Static, TSchema } from 'typebox';

export const GROUP = 'ipkeeper.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** DNS-1123 subdomain: what Kubernetes accepts as an object name. */
export const NAME_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** DNS-1123 label: namespaces and network names. */
export const LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';

const StringMap = Type.Record(Type.String(), Type.String());

export const ObjectMeta = Type.Object({
  name: Type.String({ pattern: NAME_PATTERN, maxLength: 253, description: 'object name (DNS-1123 subdomain)' }),
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
    namespaceName: Type.Optional(
      Type.Array(Type.String(), { description: 'only pods in these namespaces' }),
    ),
    multusName: Type.Optional(
      Type.Array(Type.String(), {
        description: 'only attachments of these networks (CNI config name or Multus namespace/name)',
      }),
    ),
    nodeAffinity: Type.Optional(LabelSelector),
    namespaceAffinity: Type.Optional(LabelSelector),
    podAffinity: Type.Optional(LabelSelector),
    disable: Type.Optional(Type.Boolean({ description: 'hand out no new addresses from this pool' })),
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
    createdAt: Type.String({ description: 'RFC 3339 time the claim was made' }),
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
    /** The top controller (StatefulSet, Deployment, VirtualMachine, ...), absent for a bare pod. */
    owner: Type.Optional(OwnerReference),
    /** Why the addresses outlive the pod: absent = released with the pod. */
    fixed: Type.Optional(
      Type.Union([Type.Literal('StatefulSet'), Type.Literal('VirtualMachine'), Type.Literal('VIP')]),
    ),
    /** `0`, a Go-style duration (`90s`, `24h`) or `forever`; counted from `releasedAt`. */
    retention: Type.Optional(Type.String()),
    interfaces: Type.Array(EndpointInterface),
    /** Set when the pod's last attachment was deleted (CNI DEL) while its addresses were kept. */
    releasedAt: Type.Optional(Type.String()),
    updatedAt: Type.Optional(Type.String()),
  }),
});
export type Endpoint = Static<typeof Endpoint>;

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  schema: TSchema;
  /** Whether `ipkeeper apply` accepts it (claims are written by the engine only). */
  userApplied: boolean;
}

export const KINDS: Record<string, KindInfo> = {
  IPPool: {
    kind: 'IPPool',
    plural: 'ippools',
    singular: 'ippool',
    shortNames: ['ipp', 'pool', 'pools'],
    namespaced: false,
    schema: IPPool,
    userApplied: true,
  },
  ReservedIP: {
    kind: 'ReservedIP',
    plural: 'reservedips',
    singular: 'reservedip',
    shortNames: ['rip', 'sr'],
    namespaced: false,
    schema: ReservedIP,
    userApplied: true,
  },
  IPClaim: {
    kind: 'IPClaim',
    plural: 'ipclaims',
    singular: 'ipclaim',
    shortNames: ['claim', 'claims'],
    namespaced: false,
    schema: IPClaim,
    userApplied: false,
  },
  Endpoint: {
    kind: 'Endpoint',
    plural: 'endpoints',
    singular: 'endpoint',
    shortNames: ['ipe', 'ipendpoint'],
    namespaced: true,
    schema: Endpoint,
    userApplied: false,
  },
};

/** Any object of ours, before its kind is known. */
export interface AnyObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
}

/**
 * Resolves what a user typed (`ippool`, `IPPools`, `ipp`, `reservedip`, `sr`) to a kind.
 * @returns undefined when nothing matches.
 */
export function resolveKind(word: string): KindInfo | undefined {
  const w = word.toLowerCase();
  for (const info of Object.values(KINDS)) {
    if (
      info.kind.toLowerCase() === w ||
      info.plural === w ||
      info.singular === w ||
      info.shortNames.includes(w) ||
      `${info.plural}.${GROUP}` === w
    ) {
      return info;
    }
  }
  return undefined;
}

/** The store key of an object: `<plural>/<name>` or `<plural>/<namespace>/<name>`. */
export function storeKey(info: KindInfo, name: string, namespace?: string): string {
  return info.namespaced ? `${info.plural}/${namespace ?? 'default'}/${name}` : `${info.plural}/${name}`;
}
