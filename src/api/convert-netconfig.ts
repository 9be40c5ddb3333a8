/**
 * @module api/convert-netconfig
 * Spiderpool's `SpiderMultusConfig` (spiderpool.spidernet.io/v2beta1) converted to our
 * `NetworkConfig`, so seed 000's manifest applies verbatim:
 *
 * | SpiderMultusConfig                             | NetworkConfig                  |
 * |------------------------------------------------|--------------------------------|
 * | spec.cniType macvlan / ipvlan / sriov          | spec.type                      |
 * | spec.<type>.master: [ens192] (one interface)   | spec.master: ens192            |
 * | spec.<type>.vlanID                             | spec.vlan                      |
 * | spec.<type>.ippools {ipv4, ipv6}               | spec.ippools                   |
 * | spec.sriov.resourceName                        | spec.resourceName              |
 * | spec.enableCoordinator                         | spec.enableCoordinator (no effect) |
 * | annotation multus.spidernet.io/cr-name         | metadata.name (the NAD's name) |
 * | annotation multus.spidernet.io/cni-version     | spec.cniVersion                |
 *
 * What ipkeeper does not do is refused with the field named, never dropped: several masters (a
 * bond Spiderpool creates), `ovs` and `custom` types, `disableIPAM`, `coordinator` settings, SR-IOV
 * rate limits and RDMA.
 */
import { IpamError } from '../errors.ts';
import { API_VERSION, type AnyObject } from './kinds.ts';

type Json = Record<string, unknown>;

export const CR_NAME_ANNOTATION = 'multus.spidernet.io/cr-name';
export const CNI_VERSION_ANNOTATION = 'multus.spidernet.io/cni-version';
const CNI_VERSIONS = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const CONVERTED_TYPES = ['macvlan', 'ipvlan', 'sriov'] as const;

function isObj(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Converts a SpiderMultusConfig document.
 * @throws IpamError INVALID_OBJECT naming the field that has no ipkeeper equivalent.
 */
export function convertSpiderMultusConfig(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m0 = isObj(o.metadata) ? o.metadata : {};
  const name = String(m0.name ?? '?');
  const refuse = (field: string, why: string): IpamError =>
    new IpamError('INVALID_OBJECT', `SpiderMultusConfig "${name}": ${field} ${why}`, { field });

  const known = ['cniType', 'macvlan', 'ipvlan', 'sriov', 'enableCoordinator', 'disableIPAM'];
  for (const k of Object.keys(spec)) {
    if (!known.includes(k)) {
      throw refuse(
        `spec.${k}`,
        `is not supported by ipkeeper's converter; remove it or write an ${API_VERSION} NetworkConfig`,
      );
    }
  }
  const type = spec.cniType;
  if (typeof type !== 'string' || !(CONVERTED_TYPES as readonly string[]).includes(type)) {
    throw refuse(
      'spec.cniType',
      `${JSON.stringify(type)} is not converted; ipkeeper generates ${CONVERTED_TYPES.join(', ')} (and bridge) networks — keep your own NetworkAttachmentDefinition for others`,
    );
  }
  if (spec.disableIPAM === true) {
    throw refuse(
      'spec.disableIPAM',
      'is true, but a NetworkConfig always uses ipkeeper as its IPAM; remove it, or keep your own NetworkAttachmentDefinition',
    );
  }
  for (const other of CONVERTED_TYPES) {
    if (other !== type && spec[other] !== undefined) {
      throw refuse(`spec.${other}`, `is set but spec.cniType is "${type}"; remove spec.${other}`);
    }
  }
  const sub = isObj(spec[type]) ? spec[type] : {};
  const subKnown = type === 'sriov' ? ['resourceName', 'vlanID', 'ippools'] : ['master', 'vlanID', 'ippools'];
  for (const k of Object.keys(sub)) {
    if (!subKnown.includes(k)) {
      throw refuse(
        `spec.${type}.${k}`,
        `is not supported by ipkeeper's converter; remove it or write an ${API_VERSION} NetworkConfig`,
      );
    }
  }

  const out: Json = { type };
  if (type === 'sriov') {
    if (sub.resourceName !== undefined) out.resourceName = sub.resourceName;
  } else if (sub.master !== undefined) {
    const masters = Array.isArray(sub.master) ? sub.master : [sub.master];
    if (masters.length !== 1) {
      throw refuse(
        `spec.${type}.master`,
        `lists ${masters.length} interfaces; Spiderpool bonds several masters, ipkeeper does not: create the bond on the nodes and name it as the one master`,
      );
    }
    out.master = masters[0];
  }
  if (sub.vlanID !== undefined) out.vlan = sub.vlanID;
  if (sub.ippools !== undefined) out.ippools = sub.ippools;
  if (spec.enableCoordinator !== undefined) out.enableCoordinator = spec.enableCoordinator;

  const metadata: Json = {};
  for (const k of ['name', 'namespace', 'labels']) if (m0[k] !== undefined) metadata[k] = m0[k];
  const annotations: Record<string, unknown> = isObj(m0.annotations) ? { ...m0.annotations } : {};
  const crName = annotations[CR_NAME_ANNOTATION];
  if (crName !== undefined) {
    metadata.name = crName;
    delete annotations[CR_NAME_ANNOTATION];
  }
  const cniVersion = annotations[CNI_VERSION_ANNOTATION];
  if (cniVersion !== undefined) {
    if (typeof cniVersion !== 'string' || !CNI_VERSIONS.includes(cniVersion)) {
      throw refuse(
        `metadata.annotations["${CNI_VERSION_ANNOTATION}"]`,
        `${JSON.stringify(cniVersion)} is not a CNI version ipkeeper speaks; use one of ${CNI_VERSIONS.join(', ')}`,
      );
    }
    out.cniVersion = cniVersion;
    delete annotations[CNI_VERSION_ANNOTATION];
  }
  if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
  return {
    apiVersion: API_VERSION,
    kind: 'NetworkConfig',
    metadata: metadata as AnyObject['metadata'],
    spec: out,
  };
}
