/**
 * @module api/manifests
 * Reads manifests: multi-document YAML or JSON text, `List` objects flattened, each document
 * converted by `convert.ts` (other projects' kinds to ours). Its own module so that the YAML parser
 * loads only where manifests are read (the CLI's `apply`, `netconfig render`), not at every start.
 */
import { parseAllDocuments } from 'yaml';
import { IpamError } from '../errors.ts';
import { convertObject, type Converted } from './convert.ts';

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
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
