/**
 * @module cni/protocol
 * The wire contract between the CNI plugin (`ipkeeper` in the CNI bin dir) and the node agent:
 * JSON over HTTP/1.1 on the agent's unix socket. Types only, so the plugin bundles nothing else.
 *
 *   POST /v1/cni/add     CniRequest -> 200 IpamResult          | 4xx/5xx ErrorBody
 *   POST /v1/cni/del     CniRequest -> 200 {}                   (release; always 200 unless the store is down)
 *   POST /v1/cni/check   CniRequest -> 200 {}                   | ErrorBody (addresses not held)
 *   POST /v1/cni/gc      CniRequest -> 200 { released: number } (keep only validAttachments)
 *   POST /v1/cni/status  CniRequest -> 200 {}                   | ErrorBody code NOT_READY
 *   GET  /healthz, /readyz
 *
 * The agent answers errors with `ErrorBody`; the plugin maps `code` to the CNI code through
 * `src/errors.ts`.
 */

import type { ErrorCode } from '../errors.ts';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';

/** The `ipam` section of a network configuration, as the plugin validated it. */
export interface IpamConfig {
  type: string;
  /** Agent socket; default `/run/ipkeeper/ipkeeper.sock`. */
  socket?: string;
  /** Pools to use when no annotation chooses; each list is an ordered set of backups. */
  pools?: { ipv4?: string[]; ipv6?: string[] };
  /** Extra routes added to every result (CNI `routes` format). */
  routes?: { dst: string; gw?: string }[];
  /** Plugin log file; the plugin never logs to stdout. */
  logFile?: string;
  /** Agent request timeout in ms (default 30000). */
  timeoutMs?: number;
}

export interface CniRequest {
  command: CniCommand;
  /** CNI_CONTAINERID (absent for GC and STATUS). */
  containerId?: string;
  /** CNI_IFNAME (absent for GC and STATUS). */
  ifName?: string;
  netns?: string;
  /** The network configuration's `name`: the network the claims live in. */
  network: string;
  cniVersion: string;
  /** CNI_ARGS as key/value pairs (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`, `IP`, ...). */
  args: Record<string, string>;
  ipam: IpamConfig;
  /** `runtimeConfig.ips` (capability `ips`) and `args.cni.ips`, merged, in order. */
  requestedIps?: string[];
  /** GC only: attachments that must be kept; every other claim of this network on this node may go. */
  validAttachments?: { containerID: string; ifname: string }[];
}

/** One address in an ADD result, in CNI 1.x terms (the plugin converts for 0.3.x/0.4.0). */
export interface ResultIp {
  /** CIDR notation: address plus the pool's prefix length, e.g. `10.6.168.133/16`. */
  address: string;
  gateway?: string;
  /** The pool the address came from (not part of CNI's result; kept for logs). */
  pool: string;
}

export interface IpamResult {
  ips: ResultIp[];
  /**
   * `table`: a policy-routing table (multi-NIC, `src/ipam/routing.ts`); the plugin passes such routes
   * on only for cniVersion 1.1.0 and later, where CNI routes have a `table` field.
   */
  routes: { dst: string; gw?: string; table?: number }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export const DEFAULT_SOCKET = '/run/ipkeeper/ipkeeper.sock';
