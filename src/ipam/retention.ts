/**
 * @module ipam/retention
 * How long a fixed IP outlives its pod (seed 003), as pure functions: `parseRetention` reads the
 * `ipkeeper.io/ip-retention` annotation or an IPPool's `spec.ipRetention`, and `reclaimDecision`
 * says whether an Endpoint's addresses may be reclaimed now — the one rule the controller's GC and
 * anything else that frees retained addresses follow:
 *
 *   a live pod's addresses are never reclaimed;
 *   a fixed endpoint's addresses are held while the owner wants them (StatefulSet exists with the
 *   same uid and the pod's ordinal < replicas; VirtualMachine exists with the same uid);
 *   once the pod is gone (`releasedAt`) AND the owner no longer wants them, they are held for
 *   `retention` more (`0`: reclaimed at once; `forever`: only by hand, `ipkeeper reclaim`);
 *   a non-fixed endpoint whose pod is gone is reclaimed at once.
 *
 * The clock runs from `releasedAt` (the CNI DEL of the pod's last sandbox). The owner's change
 * (scale-down, deletion) is what deletes the pod, so the two moments coincide in practice; when the
 * pod disappeared without a DEL (node lost, force deletion) the decision asks the caller to stamp
 * `releasedAt` now (`markReleased`), so the retention is counted from when it was noticed — never
 * shorter than promised.
 *
 * Errors: IpamError INVALID_OBJECT from `parseRetention`, naming where the value came from.
 */
import { IpamError } from '../errors.ts';
import { RETENTION_PATTERN, type Endpoint } from '../api/kinds.ts';

export const RETENTION_ANNOTATION = 'ipkeeper.io/ip-retention' as const;
/** KCE's marker of a fixed-IP pod (seed 003); a StatefulSet pod is fixed without it. */
export const KCE_FIXED_ANNOTATION = 'k8s.ksyun.com/pod-ip-fixed';
/** Without an annotation or pool default: held while the owner wants it, released when it stops. */
export const DEFAULT_RETENTION = '0';
/**
 * A pod fixed only by the KCE annotation has no owner to want its addresses; KCE documents that an
 * unset retention means "never reclaimed" (reclaim by hand), so that is its default.
 */
export const DEFAULT_POD_FIXED_RETENTION = 'forever';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const RETENTION_RE = new RegExp(RETENTION_PATTERN);
export const RETENTION_FORMS = '0, a duration such as 90s, 30m, 24h, 1h30m or 7d, or forever';

/**
 * Reads a retention: `0`, `forever`, or a sum of `<number><unit>` with units ms, s, m, h, d.
 * @param source where the text came from, for the message (`annotation ipkeeper.io/ip-retention`).
 * @returns milliseconds; `Infinity` for `forever`.
 * @throws IpamError INVALID_OBJECT naming the source, the value and the accepted forms.
 */
export function parseRetention(text: string, source = `annotation ${RETENTION_ANNOTATION}`): number {
  const t = text.trim();
  if (!RETENTION_RE.test(t)) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${source}: ${JSON.stringify(text)} is not a retention; use ${RETENTION_FORMS}`,
      { source, value: text },
    );
  }
  if (t === 'forever') return Infinity;
  let ms = 0;
  for (const m of t.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/g)) {
    ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return Math.round(ms);
}

/** The ordinal of a StatefulSet pod `<set>-<n>`, or undefined when the name is not of that set. */
export function statefulSetOrdinal(podName: string, setName: string): number | undefined {
  if (!podName.startsWith(`${setName}-`)) return undefined;
  const rest = podName.slice(setName.length + 1);
  return /^(0|[1-9][0-9]*)$/.test(rest) ? Number(rest) : undefined;
}

export interface ReclaimFacts {
  /** A pod of the endpoint's name exists (for a VM endpoint: a virt-launcher pod of the VM). */
  podExists: boolean;
  podUid?: string;
  /** The endpoint's owner as it is now; undefined when it was not looked up (unknown). */
  owner?: { exists: boolean; uid?: string; replicas?: number };
  now: number;
}

export type ReclaimDecision =
  | {
      reclaim: false;
      reason: string;
      /** When to ask again: the retention ends then (absent: wait for a change, or forever). */
      until?: number;
      /** The pod is gone without a CNI DEL: stamp `spec.releasedAt` now, so the clock runs. */
      markReleased?: boolean;
    }
  | { reclaim: true; reason: string };

/**
 * Whether the owner still wants a fixed endpoint's addresses, and why. An owner that was not looked
 * up counts as wanting them: not knowing is no reason to free an address.
 */
function ownerLetGo(ep: Endpoint, facts: ReclaimFacts): { wants: boolean; why: string } {
  const spec = ep.spec;
  const o = spec.owner;
  const name = ep.metadata.name;
  if (spec.fixed === 'Pod' || !o) return { wants: false, why: `no controller owns ${name}` };
  const ref = `${o.kind} ${o.name}`;
  if (!facts.owner) return { wants: true, why: `${ref} was not looked up` };
  if (!facts.owner.exists) return { wants: false, why: `${ref} is gone` };
  // A VirtualMachineInstance is recreated on every VM restart by design: only a VM's uid (or a
  // StatefulSet's) says the owner itself was recreated.
  if (o.kind !== 'VirtualMachineInstance' && o.uid && facts.owner.uid && o.uid !== facts.owner.uid) {
    return { wants: false, why: `${ref} was recreated (uid ${o.uid} is now ${facts.owner.uid})` };
  }
  if (o.kind === 'StatefulSet' && facts.owner.replicas !== undefined) {
    const ord = statefulSetOrdinal(name, o.name);
    if (ord !== undefined && ord >= facts.owner.replicas) {
      return {
        wants: false,
        why: `${ref} was scaled to ${facts.owner.replicas} replicas, below ordinal ${ord}`,
      };
    }
  }
  return { wants: true, why: `${ref} still wants it` };
}

/**
 * Decides whether an Endpoint's addresses may be reclaimed now (see the module comment).
 * A retention that does not parse (a hand edit) holds the addresses: reclaim them by hand.
 */
export function reclaimDecision(ep: Endpoint, facts: ReclaimFacts): ReclaimDecision {
  const spec = ep.spec;
  const who = `${ep.metadata.namespace ?? 'default'}/${ep.metadata.name}`;
  if (facts.podExists) {
    if (!spec.fixed && spec.podUid && facts.podUid && spec.podUid !== facts.podUid) {
      // A new pod took the name before its ADD rewrote the endpoint: the old addresses are leaked.
      return {
        reclaim: true,
        reason: `pod ${who} was recreated (uid ${spec.podUid} is now ${facts.podUid}); its old addresses are not fixed`,
      };
    }
    return {
      reclaim: false,
      reason: `pod ${who} exists${spec.fixed && spec.releasedAt ? ' (it gets these addresses back on its next start)' : ''}`,
    };
  }
  if (!spec.fixed) return { reclaim: true, reason: `pod ${who} is gone and its addresses are not fixed` };
  const owner = ownerLetGo(ep, facts);
  if (owner.wants) return { reclaim: false, reason: `${owner.why}: pod ${who} is held for its next start` };
  let ms: number;
  const text = spec.retention ?? DEFAULT_RETENTION;
  try {
    ms = parseRetention(text, `Endpoint ${who} spec.retention`);
  } catch (e) {
    return {
      reclaim: false,
      reason: `${(e as Error).message}; reclaim it by hand (ipkeeper reclaim endpoint ${who})`,
    };
  }
  if (ms === Infinity) {
    return {
      reclaim: false,
      reason: `${owner.why}, but retention is forever: reclaim it by hand (ipkeeper reclaim endpoint ${who})`,
    };
  }
  const released = spec.releasedAt === undefined ? NaN : Date.parse(spec.releasedAt);
  if (Number.isNaN(released)) {
    if (ms === 0) return { reclaim: true, reason: `${owner.why} and pod ${who} is gone (retention 0)` };
    return {
      reclaim: false,
      reason: `pod ${who} is gone without a CNI DEL; its retention of ${text} starts now`,
      markReleased: true,
    };
  }
  const until = released + ms;
  if (facts.now >= until) {
    return {
      reclaim: true,
      reason: `${owner.why} and pod ${who} was released at ${spec.releasedAt}, retention ${text} is over`,
    };
  }
  return {
    reclaim: false,
    reason: `${owner.why}; retention ${text} since ${spec.releasedAt} lasts until ${new Date(until).toISOString()}`,
    until,
  };
}
