/**
 * @module cni/config
 * Parses and validates the network configuration the runtime writes to the plugin's stdin.
 *
 * Every error names the field path, the bad value and the fix, e.g.
 * `ipam.pools.ipv4[1]: 42 is not a pool name; write the name of an IPPool as a string`, and carries the
 * CNI code the spec gives it: 6 for text that is not JSON, 1 for a version we do not speak (or one
 * too old for the command), 7 for everything else. Unknown fields are ignored, as CNI asks, except
 * inside `ipam.pools`, where a misspelt family would otherwise silently fall back to other pools.
 */

import { IpamError } from '../errors.ts';
import type { CniCommand, IpamConfig } from './protocol.ts';
import { checkCidr, checkIp, checkIpOrCidr } from './ip.ts';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/** The first version that has each command; older configs must not be sent it. */
const COMMAND_SINCE: Record<CniCommand, CniVersion> = {
  ADD: '0.3.0',
  DEL: '0.3.0',
  CHECK: '0.4.0',
  GC: '1.1.0',
  STATUS: '1.1.0',
};

/** A unix socket path longer than this does not fit `sockaddr_un.sun_path` (108 bytes with the NUL). */
const MAX_SOCKET_PATH_BYTES = 107;
const MAX_TIMEOUT_MS = 600_000;
/**
 * Below this an ADD could give up while the agent still completes it (a claim the runtime must then
 * DEL): never what a configuration means. Measured agent round trips are ~2 ms; 100 leaves room.
 */
export const MIN_TIMEOUT_MS = 100;

/** CNI spec: a network name starts with a letter or digit, then letters, digits, `_`, `.`, `-`. */
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MAX_NETWORK_NAME = 253;
/** A Kubernetes object name (DNS-1123 subdomain): what an IPPool can be called. */
const POOL_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MAX_POOL_NAME = 253;

export interface Attachment {
  containerID: string;
  ifname: string;
}

/** The validated configuration: what the plugin sends the agent, in the protocol's terms. */
export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  ipam: IpamConfig;
  /** `runtimeConfig.ips` then `args.cni.ips`, in order; empty when neither is given. */
  requestedIps: string[];
  /** GC only: `cni.dev/valid-attachments` (or the draft's `cni.dev/attachments`). */
  validAttachments?: Attachment[];
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Compares two `x.y.z` versions: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The `cniVersion` to echo in an error: the config's own when we speak it, else the latest. Never
 * throws, so it can be used while reporting any other failure.
 */
export function replyVersion(text: string | undefined): CniVersion {
  if (text === undefined) return LATEST_VERSION;
  try {
    const v: unknown = (JSON.parse(text) as { cniVersion?: unknown } | null)?.cniVersion;
    return isSupportedVersion(v) ? v : LATEST_VERSION;
  } catch {
    // Not JSON: the decode error itself is reported elsewhere; here only the version matters.
    return LATEST_VERSION;
  }
}

/**
 * Parses the network configuration for `command`.
 *
 * @throws IpamError DECODE_FAILED (6) when the text is not JSON; INCOMPATIBLE_CNI_VERSION (1) when
 *   `cniVersion` is missing, unsupported, or older than the command; INVALID_CONFIG (7) for any other
 *   bad field, with `details.field` the field path.
 */
export function parseNetConf(text: string, command: CniCommand): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const what = text.trim() === '' ? 'stdin is empty' : (e as Error).message;
    throw new IpamError(
      'DECODE_FAILED',
      `the network configuration on stdin is not JSON (${what}); the runtime must write the network's JSON configuration to the plugin's stdin`,
      {},
      e,
    );
  }
  if (!isObject(raw)) {
    throw invalid(
      '(top level)',
      raw,
      'is not an object',
      'the network configuration is a JSON object with cniVersion, name and ipam',
    );
  }

  const cniVersion = parseVersion(raw.cniVersion, command);
  const name = parseName(raw.name);
  const ipam = parseIpam(raw.ipam);
  const requestedIps = [...parseIpList('runtimeConfig', 'ips', raw.runtimeConfig), ...parseArgsIps(raw.args)];
  const conf: NetConf = { cniVersion, name, ipam, requestedIps };
  if (command === 'GC') conf.validAttachments = parseAttachments(raw);
  // `prevResult` (DEL, CHECK, and chained ADD) is accepted and not read: an IPAM plugin's truth about
  // what it handed out is the agent's claims, not what an earlier plugin passed along.
  return conf;
}

function parseVersion(v: unknown, command: CniCommand): CniVersion {
  const list = SUPPORTED_VERSIONS.join(', ');
  if (v === undefined) {
    // libcni reads a missing cniVersion as 0.1.0, which we do not speak: the same code, a clearer message.
    throw new IpamError(
      'INCOMPATIBLE_CNI_VERSION',
      `cniVersion: missing; set it to one of the versions ipkeeper speaks: ${list}`,
      { field: 'cniVersion', supportedVersions: SUPPORTED_VERSIONS },
    );
  }
  if (typeof v !== 'string') {
    throw invalid('cniVersion', v, 'is not a string', `write the version as a string, one of ${list}`);
  }
  if (!isSupportedVersion(v)) {
    throw new IpamError(
      'INCOMPATIBLE_CNI_VERSION',
      `cniVersion: ${JSON.stringify(v)} is not supported; ipkeeper speaks ${list}: set cniVersion to one of them`,
      { field: 'cniVersion', value: v, supportedVersions: SUPPORTED_VERSIONS },
    );
  }
  const since = COMMAND_SINCE[command];
  if (compareVersions(v, since) < 0) {
    throw new IpamError(
      'INCOMPATIBLE_CNI_VERSION',
      `cniVersion: ${JSON.stringify(v)} does not allow ${command}, which CNI added in ${since}; raise cniVersion to ${since} or later, or do not send ${command}`,
      { field: 'cniVersion', value: v, command },
    );
  }
  return v;
}

function parseName(v: unknown): string {
  const fix =
    'give the network a name of letters, digits, _ . - starting with a letter or digit, e.g. "macvlan-net"';
  if (v === undefined) throw invalid('name', v, '', fix);
  if (typeof v !== 'string') throw invalid('name', v, 'is not a string', fix);
  if (v.length > MAX_NETWORK_NAME)
    throw invalid('name', v, `is longer than ${MAX_NETWORK_NAME} characters`, fix);
  if (!NETWORK_NAME.test(v)) throw invalid('name', v, 'is not a valid network name', fix);
  return v;
}

function parseIpam(v: unknown): IpamConfig {
  if (!isObject(v)) {
    throw invalid(
      'ipam',
      v,
      v === undefined ? '' : 'is not an object',
      'an IPAM plugin needs an "ipam" object, e.g. {"type": "ipkeeper"}',
    );
  }
  const typeFix = 'name the IPAM plugin, e.g. "type": "ipkeeper"';
  if (v.type === undefined) throw invalid('ipam.type', v.type, '', typeFix);
  if (typeof v.type !== 'string' || v.type === '')
    throw invalid('ipam.type', v.type, 'is not a plugin name', typeFix);
  const ipam: IpamConfig = { type: v.type };

  if (v.socket !== undefined) ipam.socket = parseSocket(v.socket);
  if (v.pools !== undefined) ipam.pools = parsePools(v.pools);
  if (v.routes !== undefined) ipam.routes = parseRoutes(v.routes);
  if (v.logFile !== undefined) {
    if (typeof v.logFile !== 'string' || !v.logFile.startsWith('/')) {
      throw invalid(
        'ipam.logFile',
        v.logFile,
        'is not an absolute path',
        'write the log file as an absolute path, e.g. "/var/log/ipkeeper-cni.log", or leave it out to log to stderr',
      );
    }
    ipam.logFile = v.logFile;
  }
  if (v.timeoutMs !== undefined) {
    const t = v.timeoutMs;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < MIN_TIMEOUT_MS || t > MAX_TIMEOUT_MS) {
      throw invalid(
        'ipam.timeoutMs',
        t,
        `is not a whole number of milliseconds from ${MIN_TIMEOUT_MS} to ${MAX_TIMEOUT_MS}`,
        'write e.g. 30000, or leave it out for the default',
      );
    }
    ipam.timeoutMs = t;
  }
  return ipam;
}

function parseSocket(v: unknown): string {
  const fix =
    'write the agent\'s unix socket as an absolute path, e.g. "/run/ipkeeper/ipkeeper.sock", or leave it out for that default';
  if (typeof v !== 'string') throw invalid('ipam.socket', v, 'is not a path', fix);
  if (!v.startsWith('/')) throw invalid('ipam.socket', v, 'is not an absolute path', fix);
  const bytes = Buffer.byteLength(v);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw invalid(
      'ipam.socket',
      v,
      `is ${bytes} bytes long`,
      `a unix socket path is at most ${MAX_SOCKET_PATH_BYTES} bytes; move the socket to a shorter path`,
    );
  }
  return v;
}

function parsePools(v: unknown): { ipv4?: string[]; ipv6?: string[] } {
  const fix = 'write {"ipv4": ["pool-a"], "ipv6": ["pool-b"]}';
  if (!isObject(v)) throw invalid('ipam.pools', v, 'is not an object', fix);
  const pools: { ipv4?: string[]; ipv6?: string[] } = {};
  for (const key of Object.keys(v)) {
    if (key !== 'ipv4' && key !== 'ipv6') {
      throw invalid(
        `ipam.pools.${key}`,
        v[key],
        'is under an unknown key',
        `pools are listed per family: ${fix}`,
      );
    }
    const path = `ipam.pools.${key}`;
    const list = v[key];
    if (!Array.isArray(list))
      throw invalid(
        path,
        list,
        'is not a list',
        `write a list of IPPool names, e.g. ["pool-a"]; the first that has room is used`,
      );
    const names: string[] = [];
    list.forEach((name: unknown, i) => {
      const at = `${path}[${i}]`;
      if (typeof name !== 'string')
        throw invalid(at, name, 'is not a pool name', 'write the name of an IPPool as a string');
      if (name.length > MAX_POOL_NAME || !POOL_NAME.test(name)) {
        throw invalid(
          at,
          name,
          'is not a valid pool name',
          'an IPPool name is lowercase letters, digits, - and ., starting and ending with a letter or digit',
        );
      }
      const first = names.indexOf(name);
      if (first >= 0) throw invalid(at, name, `repeats ${path}[${first}]`, 'list each pool once');
      names.push(name);
    });
    pools[key] = names;
  }
  return pools;
}

function parseRoutes(v: unknown): { dst: string; gw?: string }[] {
  const fix = 'write [{"dst": "10.0.0.0/8", "gw": "10.6.0.1"}]; gw is optional';
  if (!Array.isArray(v)) throw invalid('ipam.routes', v, 'is not a list', fix);
  return v.map((r: unknown, i) => {
    const at = `ipam.routes[${i}]`;
    if (!isObject(r)) throw invalid(at, r, 'is not a route object', fix);
    const dstWhy = r.dst === undefined ? '' : checkCidr(r.dst);
    if (dstWhy !== undefined)
      throw invalid(
        `${at}.dst`,
        r.dst,
        dstWhy,
        'write the destination as a CIDR, e.g. "10.0.0.0/8" or "0.0.0.0/0"',
      );
    const dst = r.dst as string;
    if (r.gw === undefined) return { dst };
    const gwWhy = checkIp(r.gw);
    if (gwWhy !== undefined)
      throw invalid(
        `${at}.gw`,
        r.gw,
        gwWhy,
        'write the gateway as an address, e.g. "10.6.0.1", or leave it out',
      );
    const gw = r.gw as string;
    if (gw.includes(':') !== dst.includes(':')) {
      throw invalid(
        `${at}.gw`,
        gw,
        `is not in the same family as dst ${dst}`,
        'use an IPv4 gateway for an IPv4 destination and an IPv6 one for IPv6',
      );
    }
    return { dst, gw };
  });
}

/** `<parentPath>.ips`, a list of addresses with optional prefix lengths. */
function parseIpList(parentPath: string, key: string, parent: unknown): string[] {
  if (parent === undefined) return [];
  if (!isObject(parent))
    throw invalid(parentPath, parent, 'is not an object', `write {"${key}": ["10.6.168.133/16"]}`);
  const list = parent[key];
  const path = `${parentPath}.${key}`;
  if (list === undefined) return [];
  const fix = 'write a list of addresses, e.g. ["10.6.168.133/16", "fd00::133/64"]';
  if (!Array.isArray(list)) throw invalid(path, list, 'is not a list', fix);
  return list.map((ip: unknown, i) => {
    const why = checkIpOrCidr(ip);
    if (why !== undefined) throw invalid(`${path}[${i}]`, ip, why, fix);
    return ip as string;
  });
}

function parseArgsIps(args: unknown): string[] {
  if (args === undefined) return [];
  if (!isObject(args))
    throw invalid('args', args, 'is not an object', 'write {"cni": {"ips": ["10.6.168.133/16"]}}');
  return parseIpList('args.cni', 'ips', args.cni);
}

function parseAttachments(raw: Record<string, unknown>): Attachment[] {
  const key =
    raw['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
  const list = raw[key];
  const fix =
    'the runtime must list the attachments to keep as [{"containerID": "...", "ifname": "eth0"}]; an empty list releases every address of this network on this node';
  // Missing is refused rather than read as "keep nothing": that reading would free every address.
  if (list === undefined) throw invalid('cni.dev/valid-attachments', list, '', fix);
  if (!Array.isArray(list)) throw invalid(key, list, 'is not a list', fix);
  return list.map((a: unknown, i) => {
    const at = `${key}[${i}]`;
    if (!isObject(a)) throw invalid(at, a, 'is not an attachment object', fix);
    if (typeof a.containerID !== 'string' || a.containerID === '')
      throw invalid(`${at}.containerID`, a.containerID, 'is not a container id', fix);
    if (typeof a.ifname !== 'string' || a.ifname === '')
      throw invalid(`${at}.ifname`, a.ifname, 'is not an interface name', fix);
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Quotes a bad value for a message, short enough to read in `kubectl describe pod`. */
export function quote(v: unknown): string {
  if (v === undefined) return 'missing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** `path: value why; fix`; a missing value reads `path: missing; fix`. */
function invalid(field: string, value: unknown, why: string, fix: string): IpamError {
  const what = value === undefined ? 'missing' : `${quote(value)} ${why}`;
  return new IpamError('INVALID_CONFIG', `${field}: ${what}; ${fix}`, { field, value });
}
