/**
 * @module ipam/requested
 * Exact addresses a pod asks for, read from its annotations, and merged with the CNI-standard
 * requests (`runtimeConfig.ips` with the `ips` capability, `args.cni.ips`, `CNI_ARGS` `IP=`). Pure:
 * the engine hands in the pod's annotations, name and owners; what comes back is a claim request
 * like any other (the engine still checks pool, reservation and holder).
 *
 * Annotations (first found wins, in this order):
 *
 *   ipkeeper.io/ip-address         "10.0.0.5" | "fd00::5" | "10.0.0.5,fd00::5"           -> eth0
 *                                  {"eth0": "10.0.0.5", "net1": "10.1.0.5,fd01::5"}       per interface
 *                                  ({"net1": ["10.1.0.5", "fd01::5"]} is the same)
 *   ovn.kubernetes.io/ip_address   Kube-OVN alias, same forms
 *   cni.projectcalico.org/ipAddrs  Calico alias: ["192.168.0.1"] or ["10.0.0.5", "fd00::5"] -> eth0
 *
 *   ipkeeper.io/ip-list            StatefulSet pods: ordinal i (pod name `<sts>-<i>`) takes entry i
 *   ovn.kubernetes.io/ip_pool      Kube-OVN alias, same forms
 *      "10.0.0.10,10.0.0.11"                       single stack
 *      "10.0.0.10,10.0.0.11,fd00::10,fd00::11"     dual stack: the i-th IPv4 pairs with the i-th IPv6
 *      "10.0.0.10,fd00::10;10.0.0.11,fd00::11"     dual stack, one entry per `;`
 *      {"eth0": "10.0.0.10,10.0.0.11", "net1": ["10.1.0.10", "10.1.0.11"]}   per interface
 *
 * A plain (non-JSON) value applies to `eth0` only, so a multi-NIC pod never asks for one address on
 * two interfaces; other interfaces use the JSON form. Setting both an address annotation and a list
 * annotation for one interface is refused (which one did the user mean?).
 *
 * Precedence: the pod annotation and the runtime's request are merged per family; when both name an
 * address of the same family they must agree, else the ADD is refused naming both (a pod spec and
 * its runtime disagreeing is a bug to surface, not to resolve silently).
 *
 * Errors: IpamError INVALID_OBJECT (CNI code 106) naming the annotation, its value and the expected
 * form; for a StatefulSet ordinal beyond the list, naming the ordinal and the list length.
 */
import { IpamError } from '../errors.ts';
import { formatValue, tryParseAddr, type Family } from '../net/addr.ts';
import type { OwnerRef } from './cluster-view.ts';

export const REQUEST_ANNOTATION = {
  address: ['ipkeeper.io/ip-address', 'ovn.kubernetes.io/ip_address', 'cni.projectcalico.org/ipAddrs'],
  list: ['ipkeeper.io/ip-list', 'ovn.kubernetes.io/ip_pool'],
} as const;

/** The interface a plain (non-JSON) annotation value applies to. */
export const PLAIN_FORM_INTERFACE = 'eth0';

export interface RequestInput {
  annotations: Record<string, string>;
  ifName: string;
  podName: string;
  /** Owner chain, controller first, top owner last (`PodInfo.owners`). */
  owners?: readonly OwnerRef[];
}

/** What a pod's annotations ask for on one interface. */
export interface AnnotationRequest {
  /** At most one per family, IPv4 first, canonical text. */
  ips: string[];
  /** For messages: `pod annotation ipkeeper.io/ip-list (StatefulSet ordinal 2)`. */
  source: string;
}

const ADDRESS_FORM =
  '"10.0.0.5", "fd00::5", "10.0.0.5,fd00::5", or per interface {"eth0": "10.0.0.5", "net1": "10.1.0.5,fd01::5"}';
const CALICO_FORM = 'a JSON list such as ["192.168.0.1"] or ["10.0.0.5", "fd00::5"]';
const LIST_FORM =
  '"10.0.0.10,10.0.0.11", "10.0.0.10,10.0.0.11,fd00::10,fd00::11", "10.0.0.10,fd00::10;10.0.0.11,fd00::11", or per interface {"eth0": "10.0.0.10,10.0.0.11", "net1": [...]}';

function bad(annotation: string, value: string, why: string, expected: string): IpamError {
  const shown = value.length > 160 ? `${value.slice(0, 157)}...` : value;
  return new IpamError(
    'INVALID_OBJECT',
    `pod annotation ${annotation}: ${JSON.stringify(shown)} ${why}; expected ${expected}`,
    { annotation, value },
  );
}

function pick(ann: Record<string, string>, names: readonly string[]): [string, string] | undefined {
  for (const n of names) if (ann[n] !== undefined) return [n, ann[n] as string];
  return undefined;
}

/**
 * The StatefulSet ordinal of a pod: the `-<n>` suffix of its name, when its top owner is a
 * StatefulSet. `undefined` for any other pod.
 */
export function statefulSetOrdinal(
  podName: string,
  owners: readonly OwnerRef[] | undefined,
): number | undefined {
  const top = owners && owners.length > 0 ? owners[owners.length - 1] : undefined;
  if (top?.kind !== 'StatefulSet') return undefined;
  const m = /-(0|[1-9]\d{0,8})$/.exec(podName);
  return m ? Number(m[1]) : undefined;
}

type Parsed = { family: Family; value: bigint };

/** Splits `a,b` (commas and/or whitespace) into addresses; refuses anything that is not one. */
function addresses(annotation: string, raw: string, text: string, expected: string): Parsed[] {
  const parts = text.split(/[\s,]+/).filter((p) => p !== '');
  if (parts.length === 0) throw bad(annotation, raw, 'names no address', expected);
  return parts.map((p) => {
    const a = tryParseAddr(p);
    if (!a) {
      const hint = p.includes('/') ? ' (write the address without a prefix length)' : '';
      throw bad(annotation, raw, `has ${JSON.stringify(p)}, which is not an IP address${hint}`, expected);
    }
    return { family: a.family, value: a.value };
  });
}

/** One address per family, IPv4 first. */
function oneEntry(annotation: string, raw: string, list: Parsed[], expected: string): string[] {
  const out: string[] = [];
  for (const f of [4, 6] as Family[]) {
    const of = list.filter((a) => a.family === f);
    if (of.length > 1) {
      throw bad(
        annotation,
        raw,
        `names ${of.length} IPv${f} addresses (${of.map((a) => formatValue(f, a.value)).join(', ')}) for one interface; give one per family`,
        expected,
      );
    }
    if (of[0]) out.push(formatValue(f, of[0].value));
  }
  return out;
}

/** The text for `ifName` from a per-interface JSON object, or from a plain value (eth0 only). */
function forInterface(
  annotation: string,
  raw: string,
  ifName: string,
  expected: string,
): { text: string; list?: string[] } | undefined {
  const trimmed = raw.trim();
  if (!trimmed.startsWith('{')) return ifName === PLAIN_FORM_INTERFACE ? { text: trimmed } : undefined;
  let obj: unknown;
  try {
    obj = JSON.parse(trimmed);
  } catch {
    throw bad(annotation, raw, 'is not valid JSON', expected);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
    throw bad(annotation, raw, 'is not a JSON object', expected);
  const v = (obj as Record<string, unknown>)[ifName];
  if (v === undefined) return undefined;
  if (typeof v === 'string') return { text: v };
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string'))
    return { text: v.join(','), list: v as string[] };
  throw bad(
    annotation,
    raw,
    `has ${JSON.stringify(ifName)}: ${JSON.stringify(v)}, which is neither a string nor a list of strings`,
    expected,
  );
}

function fromAddress(annotation: string, raw: string, ifName: string): string[] | undefined {
  if (annotation === 'cni.projectcalico.org/ipAddrs') {
    if (ifName !== PLAIN_FORM_INTERFACE) return undefined;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      throw bad(annotation, raw, 'is not valid JSON', CALICO_FORM);
    }
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'string')) {
      throw bad(annotation, raw, 'is not a non-empty JSON list of strings', CALICO_FORM);
    }
    return oneEntry(annotation, raw, addresses(annotation, raw, v.join(','), CALICO_FORM), CALICO_FORM);
  }
  const mine = forInterface(annotation, raw, ifName, ADDRESS_FORM);
  if (!mine) return undefined;
  return oneEntry(annotation, raw, addresses(annotation, raw, mine.text, ADDRESS_FORM), ADDRESS_FORM);
}

/**
 * The entries of an ip-list: with `;`, one entry per `;`; else the i-th address of each family
 * together (so Kube-OVN's comma lists of both families pair up by position).
 */
function listEntries(annotation: string, raw: string, text: string, list: string[] | undefined): string[][] {
  const groups = list ?? (text.includes(';') ? text.split(';') : undefined);
  if (groups) {
    return groups.map((g) => oneEntry(annotation, raw, addresses(annotation, raw, g, LIST_FORM), LIST_FORM));
  }
  const all = addresses(annotation, raw, text, LIST_FORM);
  const v4 = all.filter((a) => a.family === 4);
  const v6 = all.filter((a) => a.family === 6);
  if (v4.length > 0 && v6.length > 0 && v4.length !== v6.length) {
    throw bad(
      annotation,
      raw,
      `has ${v4.length} IPv4 and ${v6.length} IPv6 addresses, which do not pair up by position`,
      `as many of each, or entries separated by ";" (${LIST_FORM})`,
    );
  }
  const n = Math.max(v4.length, v6.length);
  const out: string[][] = [];
  for (let i = 0; i < n; i++) {
    const e: string[] = [];
    const a4 = v4[i];
    const a6 = v6[i];
    if (a4) e.push(formatValue(4, a4.value));
    if (a6) e.push(formatValue(6, a6.value));
    out.push(e);
  }
  return out;
}

function fromList(
  annotation: string,
  raw: string,
  ifName: string,
  podName: string,
  ordinal: number | undefined,
): AnnotationRequest | undefined {
  const mine = forInterface(annotation, raw, ifName, LIST_FORM);
  if (!mine) return undefined;
  // Parse before the ordinal check, so a broken list is reported as such for every pod.
  const entries = listEntries(annotation, raw, mine.text, mine.list);
  if (ordinal === undefined) {
    throw new IpamError(
      'INVALID_OBJECT',
      `pod annotation ${annotation} gives a list of addresses by StatefulSet ordinal, but pod ${podName} is not a StatefulSet pod (its top owner is no StatefulSet, or its name has no -<ordinal> suffix); for other workloads put the addresses in an IPPool and name it with ipkeeper.io/ippool, or ask for one address with ipkeeper.io/ip-address`,
      { annotation, value: raw, pod: podName },
    );
  }
  const entry = entries[ordinal];
  if (!entry) {
    throw new IpamError(
      'INVALID_OBJECT',
      `pod annotation ${annotation} lists ${entries.length} address entr${entries.length === 1 ? 'y' : 'ies'} for interface ${ifName}, but pod ${podName} has StatefulSet ordinal ${ordinal} (entries are numbered from 0); add an entry for every replica, or scale the StatefulSet to at most ${entries.length} replicas`,
      { annotation, value: raw, ordinal, entries: entries.length, ifName },
    );
  }
  return { ips: entry, source: `pod annotation ${annotation} (StatefulSet ordinal ${ordinal})` };
}

/**
 * What the pod's annotations ask for on `ifName`, or `undefined` when they ask for nothing there.
 * @throws IpamError INVALID_OBJECT for a malformed annotation, both an address and a list annotation
 *   for one interface, a list on a pod that is no StatefulSet pod, or an ordinal beyond the list.
 */
export function requestedByAnnotation(input: RequestInput): AnnotationRequest | undefined {
  const ann = input.annotations;
  const addr = pick(ann, REQUEST_ANNOTATION.address);
  const list = pick(ann, REQUEST_ANNOTATION.list);
  const fromA = addr ? fromAddress(addr[0], addr[1], input.ifName) : undefined;
  const ordinal = statefulSetOrdinal(input.podName, input.owners);
  const fromL = list ? fromList(list[0], list[1], input.ifName, input.podName, ordinal) : undefined;
  if (fromA && fromL && addr && list) {
    throw new IpamError(
      'INVALID_OBJECT',
      `pod ${input.podName} asks for exact addresses on interface ${input.ifName} twice: annotation ${addr[0]} (${fromA.join(', ')}) and annotation ${list[0]} (${fromL.ips.join(', ')}); keep one of the two`,
      { annotations: [addr[0], list[0]], ifName: input.ifName },
    );
  }
  if (fromA && addr) return { ips: fromA, source: `pod annotation ${addr[0]}` };
  return fromL;
}

/**
 * Merges the annotation's request with the runtime's (`runtimeConfig.ips`, `args.cni.ips`, `IP=`),
 * per family. Runtime values may carry a prefix length (`10.1.0.5/24`); they are kept as given, for
 * the engine to parse and, when malformed, to refuse with its own message.
 * @throws IpamError INVALID_OBJECT when both name a different address of the same family.
 */
export function mergeRequested(
  annotation: AnnotationRequest | undefined,
  runtime: readonly string[],
): string[] {
  if (!annotation) return [...runtime];
  const out = [...annotation.ips];
  for (const r of runtime) {
    const a = tryParseAddr(r.split('/')[0] ?? r);
    if (!a) {
      out.push(r);
      continue;
    }
    const same = annotation.ips.find((ip) => tryParseAddr(ip)?.family === a.family);
    if (same === undefined) {
      out.push(r);
    } else if (tryParseAddr(same)?.value !== a.value) {
      throw new IpamError(
        'INVALID_OBJECT',
        `the runtime asks for ${r} (CNI runtimeConfig.ips, args.cni.ips or CNI_ARGS IP=) but ${annotation.source} asks for ${same}; make them agree or drop one`,
        { runtime: r, annotation: same, source: annotation.source },
      );
    }
  }
  return out;
}
