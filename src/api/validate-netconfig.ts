/**
 * @module api/validate-netconfig
 * The semantic rules of `NetworkConfig` that its schema cannot express: which fields each type
 * takes (macvlan/ipvlan need `master`, sriov `resourceName`, bridge `bridge`), which modes each type
 * knows (and that sriov sets no MTU), that `<master>.<vlan>` still fits a Linux interface name, that a pool is listed once per
 * family, and that routes parse. Called by `validate.ts` after the schema check; each problem names
 * the field, the value and the fix.
 */
import { NetError, parseAddr } from '../net/addr.ts';
import { parsePrefix } from '../net/prefix.ts';
import type { NetworkConfig } from './kinds.ts';

export interface FieldProblem {
  field: string;
  value?: unknown;
  message: string;
}

/** Linux IFNAMSIZ is 16 bytes with the NUL. */
const MAX_IFNAME = 15;

/** The fields each type takes besides the common ones, and its modes (first = default). */
export const NETWORK_TYPES = {
  macvlan: { needs: 'master', modes: ['bridge', 'private', 'vepa', 'passthru'] },
  ipvlan: { needs: 'master', modes: ['l2', 'l3', 'l3s'] },
  sriov: { needs: 'resourceName', modes: [] },
  bridge: { needs: 'bridge', modes: [] },
} as const satisfies Record<NetworkConfig['spec']['type'], { needs: string; modes: readonly string[] }>;

const EXAMPLE: Record<string, string> = {
  master: 'master: ens192',
  resourceName: 'resourceName: intel.com/sriov_netdevice',
  bridge: 'bridge: br0',
};

export function networkConfigSemantics(nc: NetworkConfig): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const spec = nc.spec;
  const t = NETWORK_TYPES[spec.type];
  const needs = t.needs;
  for (const f of ['master', 'resourceName', 'bridge'] as const) {
    const v = spec[f];
    if (f === needs && v === undefined) {
      problems.push({
        field: `spec.${f}`,
        message: `type ${spec.type} needs spec.${f}, e.g. "${EXAMPLE[f]}"`,
      });
    } else if (f !== needs && v !== undefined) {
      problems.push({
        field: `spec.${f}`,
        value: v,
        message: `${JSON.stringify(v)}: type ${spec.type} does not take spec.${f} (it takes spec.${needs}); remove it`,
      });
    }
  }
  if (spec.mode !== undefined && !(t.modes as readonly string[]).includes(spec.mode)) {
    problems.push({
      field: 'spec.mode',
      value: spec.mode,
      message:
        t.modes.length === 0
          ? `${JSON.stringify(spec.mode)}: type ${spec.type} has no mode; remove it`
          : `${JSON.stringify(spec.mode)} is not a mode of ${spec.type}; use one of ${t.modes.join(', ')} (default ${t.modes[0]})`,
    });
  }
  if (spec.type === 'sriov' && spec.mtu !== undefined) {
    problems.push({
      field: 'spec.mtu',
      value: spec.mtu,
      message: `${spec.mtu}: the SR-IOV CNI plugin does not set an MTU (a VF follows its PF); set it on the PF (SR-IOV network operator policy) and remove spec.mtu`,
    });
  }
  if (spec.master !== undefined && spec.vlan !== undefined && spec.vlan > 0) {
    const sub = `${spec.master}.${spec.vlan}`;
    if (sub.length > MAX_IFNAME) {
      problems.push({
        field: 'spec.vlan',
        value: spec.vlan,
        message: `the VLAN sub-interface "${sub}" is longer than ${MAX_IFNAME} characters, which Linux refuses; use a shorter master name`,
      });
    }
  }
  for (const fam of ['ipv4', 'ipv6'] as const) {
    const list = spec.ippools?.[fam] ?? [];
    list.forEach((name, i) => {
      const first = list.indexOf(name);
      if (first !== i) {
        problems.push({
          field: `spec.ippools.${fam}[${i}]`,
          value: name,
          message: `"${name}" repeats spec.ippools.${fam}[${first}]; list each pool once`,
        });
      }
    });
  }
  spec.routes?.forEach((r, i) => {
    let dstFamily: number | undefined;
    try {
      dstFamily = parsePrefix(r.dst).family;
    } catch (e) {
      if (!(e instanceof NetError)) throw e;
      problems.push({
        field: `spec.routes[${i}].dst`,
        value: r.dst,
        message: `${JSON.stringify(r.dst)}: ${e.message}; write a CIDR, e.g. 10.0.0.0/8`,
      });
    }
    if (r.gw === undefined) return;
    try {
      const gw = parseAddr(r.gw);
      if (dstFamily !== undefined && gw.family !== dstFamily) {
        problems.push({
          field: `spec.routes[${i}].gw`,
          value: r.gw,
          message: `"${r.gw}" is IPv${gw.family} but dst ${r.dst} is IPv${dstFamily}; use a gateway of the same family`,
        });
      }
    } catch (e) {
      if (!(e instanceof NetError)) throw e;
      problems.push({
        field: `spec.routes[${i}].gw`,
        value: r.gw,
        message: `${JSON.stringify(r.gw)}: ${e.message}`,
      });
    }
  });
  return problems;
}
