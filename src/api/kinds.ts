/**
 * @module api/kinds
 * The kinds of `ipkeeper.io/v1alpha1`: their names, the patterns their fields follow, and their
 * types. The types come from one schema source, the TypeBox schemas in `schemas.ts`, which also
 * give the structural validation with field paths (`validate.ts`) and the CRD OpenAPI v3 schema
 * (`crd.ts`); this module re-exports the types only, so what needs a kind's name or type does not
 * load TypeBox. Semantic checks that a schema cannot express (an address inside its subnet) live in
 * `validate.ts`.
 */
import type { ObjectMeta } from './schemas.ts';

export const GROUP = 'ipkeeper.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** DNS-1123 subdomain: what Kubernetes accepts as an object name. */
export const NAME_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** DNS-1123 label: namespaces and network names. */
export const LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';

/**
 * An IP retention (`ipkeeper.io/ip-retention`, IPPool `spec.ipRetention`): `0`, `forever`, or a
 * duration of whole or decimal numbers with units ms, s, m, h, d (`90s`, `1h30m`, `7d`).
 */
export const RETENTION_PATTERN = '^(0|forever|([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))+)$';

/** A Linux interface name: at most 15 bytes (IFNAMSIZ - 1), no "/", ":" or blanks. */
export const IFNAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]*$';

export type {
  ObjectMeta,
  Route,
  LabelSelector,
  IPPool,
  Subnet,
  ReservedIP,
  ClaimOwner,
  IPClaim,
  EndpointIp,
  EndpointInterface,
  Endpoint,
  VIPStatus,
  VIP,
  NodePool,
  NetworkConfig,
} from './schemas.ts';

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  /** Whether it has a `status` (a subresource in its CRD); `schemas.ts`'s test checks it against the schema. */
  hasStatus: boolean;
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
    hasStatus: true,
    userApplied: true,
  },
  ReservedIP: {
    kind: 'ReservedIP',
    plural: 'reservedips',
    singular: 'reservedip',
    shortNames: ['rip', 'sr'],
    namespaced: false,
    hasStatus: false,
    userApplied: true,
  },
  IPClaim: {
    kind: 'IPClaim',
    plural: 'ipclaims',
    singular: 'ipclaim',
    shortNames: ['claim', 'claims'],
    namespaced: false,
    hasStatus: false,
    userApplied: false,
  },
  Endpoint: {
    kind: 'Endpoint',
    plural: 'endpoints',
    singular: 'endpoint',
    shortNames: ['ipe', 'ipendpoint'],
    namespaced: true,
    hasStatus: false,
    userApplied: false,
  },
  VIP: {
    kind: 'VIP',
    plural: 'vips',
    singular: 'vip',
    shortNames: ['ipvip'],
    namespaced: false,
    hasStatus: true,
    userApplied: true,
  },
  NodePool: {
    kind: 'NodePool',
    plural: 'nodepools',
    singular: 'nodepool',
    shortNames: ['np', 'ipnp'],
    namespaced: false,
    hasStatus: true,
    userApplied: true,
  },
  Subnet: {
    kind: 'Subnet',
    plural: 'subnets',
    singular: 'subnet',
    shortNames: ['ipsubnet', 'ss'],
    namespaced: false,
    hasStatus: true,
    userApplied: true,
  },
  NetworkConfig: {
    kind: 'NetworkConfig',
    plural: 'networkconfigs',
    singular: 'networkconfig',
    shortNames: ['netconf', 'nc'],
    namespaced: true,
    hasStatus: false,
    userApplied: true,
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
