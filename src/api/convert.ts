/**
 * @module api/convert
 * Reads manifests: multi-document YAML or JSON, `List` objects, and other projects' kinds converted
 * to ours so a migrating team can apply the YAML it already has verbatim:
 *
 * | theirs                                                   | ours         |
 * |----------------------------------------------------------|--------------|
 * | spiderpool.spidernet.io/v2beta1 SpiderIPPool             | IPPool       |
 * | spiderpool.spidernet.io/v2beta1 SpiderReservedIP         | ReservedIP   |
 *
 * Conversion keeps every field we understand and refuses a field we do not (naming it), so nothing
 * a user wrote is silently dropped.
 */
import { parseAllDocuments } from 'yaml';
import { IpamError } from '../errors.ts';
import { API_VERSION, type AnyObject } from './kinds.ts';

export const SPIDERPOOL_API = 'spiderpool.spidernet.io/v2beta1';

/** What a converter produced, with the original's identity for messages. */
export interface Converted {
  object: AnyObject;
  /** e.g. `SpiderIPPool test-ippool (spiderpool.spidernet.io/v2beta1)` when converted. */
  from?: string;
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function refuseUnknown(kind: string, spec: Json, known: string[], name: string): void {
  for (const k of Object.keys(spec)) {
    if (!known.includes(k)) {
      throw new IpamError(
        'INVALID_OBJECT',
        `${kind} "${name}": spec.${k} is not supported by ipkeeper's converter; remove it or write an ${API_VERSION} object`,
        { field: `spec.${k}` },
      );
    }
  }
}

function meta(m: unknown): Json {
  // Keep identity and labels; drop server-set fields of the other project's object.
  if (!isObj(m)) return {};
  const out: Json = {};
  for (const k of ['name', 'namespace', 'labels', 'annotations']) if (m[k] !== undefined) out[k] = m[k];
  return out;
}

function convertSpiderIPPool(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  refuseUnknown(
    'SpiderIPPool',
    spec,
    [
      'ipVersion',
      'subnet',
      'ips',
      'excludeIPs',
      'gateway',
      'vlan',
      'routes',
      'default',
      'disable',
      'nodeName',
      'namespaceName',
      'multusName',
      'nodeAffinity',
      'namespaceAffinity',
      'podAffinity',
    ],
    String(m.name),
  );
  const { ipVersion: _v, ...rest } = spec;
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: m as AnyObject['metadata'], spec: rest };
}

function convertSpiderReservedIP(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  refuseUnknown('SpiderReservedIP', spec, ['ipVersion', 'ips'], String(m.name));
  return {
    apiVersion: API_VERSION,
    kind: 'ReservedIP',
    metadata: m as AnyObject['metadata'],
    spec: { ips: spec.ips },
  };
}

const CONVERTERS: Record<string, (o: Json) => AnyObject> = {
  [`${SPIDERPOOL_API}/SpiderIPPool`]: convertSpiderIPPool,
  [`${SPIDERPOOL_API}/SpiderReservedIP`]: convertSpiderReservedIP,
};

/**
 * Converts one parsed document to our kinds (ours pass through unchanged).
 * @throws IpamError INVALID_OBJECT for an unknown apiVersion/kind or an unsupported field.
 */
export function convertObject(doc: unknown): Converted {
  if (!isObj(doc)) {
    throw new IpamError('INVALID_OBJECT', `a manifest document must be a mapping, got ${JSON.stringify(doc)}`);
  }
  const apiVersion = String(doc.apiVersion ?? '');
  const kind = String(doc.kind ?? '');
  if (apiVersion === API_VERSION) return { object: doc as unknown as AnyObject };
  const conv = CONVERTERS[`${apiVersion}/${kind}`];
  if (!conv) {
    const accepted = [API_VERSION, ...Object.keys(CONVERTERS)].join(', ');
    throw new IpamError(
      'INVALID_OBJECT',
      `apiVersion "${apiVersion}" kind "${kind}" is not something ipkeeper reads; accepted: ${accepted}`,
      { field: 'apiVersion', apiVersion, kind },
    );
  }
  const name = isObj(doc.metadata) ? String(doc.metadata.name) : '?';
  return { object: conv(doc), from: `${kind} ${name} (${apiVersion})` };
}

/**
 * Parses YAML (one or many documents, `---` separated) or JSON text into converted objects. `List`
 * kinds are flattened. Empty documents are skipped.
 * @throws IpamError INVALID_OBJECT on a YAML syntax error (with line and column) or a bad document.
 */
export function parseManifests(text: string, source = 'input'): Converted[] {
  const docs = parseAllDocuments(text, { prettyErrors: true });
  const out: Converted[] = [];
  const push = (v: unknown): void => {
    if (v === null || v === undefined) return;
    if (isObj(v) && v.kind === 'List' && Array.isArray(v.items)) {
      v.items.forEach(push);
      return;
    }
    out.push(convertObject(v));
  };
  for (const d of Array.isArray(docs) ? docs : [docs]) {
    if (d.errors.length > 0) {
      throw new IpamError('INVALID_OBJECT', `${source}: ${d.errors[0]?.message ?? 'invalid YAML'}`, {
        source,
      });
    }
    push(d.toJS());
  }
  return out;
}
