/**
 * @module store/list-items
 * Reads a Kubernetes list answer (`{"apiVersion":..,"items":[{..},{..}],"kind":..,"metadata":{..}}`)
 * as it streams in, handing over each item's JSON text as soon as its last byte arrives, so a list
 * of 100k objects (~97 MB from the API server's watch cache, which does not page) is never held as
 * one string or one parsed tree. What is not an item (the list's own fields) is kept and returned by
 * `end`, as the list with `"items":[]`.
 *
 * It tracks only string boundaries (with escapes) and nesting depth: the items array is the array
 * that opens at depth 1 (a list object has no other), an item is a value at depth 2 inside it. It
 * checks nothing else; every item and the rest are JSON.parse'd by the caller, which reports what
 * is not JSON.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
/** What may stand between items: ',' and JSON white space. */
const SEPARATOR = new Set([0x2c, 0x20, 0x0a, 0x0d, 0x09]);

function notAnObject(after: number): Error {
  return new Error(`the list answer's item ${after + 1} is not an object`);
}

export class ListItems {
  #depth = 0;
  #inString = false;
  #escape = false;
  #inItems = false;
  /** Pieces of the item being read (it may span chunks); undefined between items. */
  #item: Buffer[] | undefined;
  /** Pieces of everything that is not an item. */
  readonly #rest: Buffer[] = [];
  #items = 0;

  /** Items handed over so far. */
  get count(): number {
    return this.#items;
  }

  /**
   * Reads one chunk; calls `onItem` with the text of every item that ends in it.
   * @throws Error when an item is not an object or an array (a list's items are objects); what
   *   `onItem` throws.
   */
  push(chunk: Buffer, onItem: (text: string) => void): void {
    let restFrom = this.#inItems ? -1 : 0;
    let itemFrom = this.#item !== undefined ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (b === BACKSLASH) this.#escape = true;
        else if (b === QUOTE) this.#inString = false;
        continue;
      }
      if (b === QUOTE) {
        if (this.#inItems && this.#depth === 2) throw notAnObject(this.#items);
        this.#inString = true;
      } else if (b === OPEN_OBJ || b === OPEN_ARR) {
        if (this.#inItems && this.#depth === 2) {
          this.#item = [];
          itemFrom = i;
        }
        this.#depth++;
        if (this.#depth === 2 && b === OPEN_ARR && !this.#inItems) {
          // The items array (a list's only array at the top): the rest keeps its '['.
          this.#rest.push(chunk.subarray(restFrom, i + 1));
          restFrom = -1;
          this.#inItems = true;
        }
      } else if (b === CLOSE_OBJ || b === CLOSE_ARR) {
        this.#depth--;
        if (this.#inItems && this.#depth === 1) {
          // The items array closes: its ']' and what follows are the rest's.
          this.#inItems = false;
          restFrom = i;
        } else if (this.#inItems && this.#depth === 2) {
          itemFrom = this.#endItem(chunk, itemFrom, i + 1, onItem);
        }
      } else if (this.#inItems && this.#depth === 2 && !SEPARATOR.has(b)) {
        throw notAnObject(this.#items);
      }
    }
    if (itemFrom >= 0) this.#item!.push(chunk.subarray(itemFrom));
    if (restFrom >= 0) this.#rest.push(chunk.subarray(restFrom));
  }

  /**
   * After the last chunk: the list without its items (`"items":[]`), as text.
   * @throws Error when the answer ended inside a string, an item or the items array.
   */
  end(): string {
    if (this.#inString || this.#item !== undefined || this.#inItems || this.#depth !== 0) {
      throw new Error(`the list answer ended early (after ${this.#items} items)`);
    }
    return Buffer.concat(this.#rest).toString('utf8');
  }

  #endItem(chunk: Buffer, from: number, to: number, onItem: (text: string) => void): number {
    const pieces = this.#item!;
    this.#item = undefined;
    this.#items++;
    if (pieces.length === 0) onItem(chunk.toString('utf8', from, to));
    else {
      pieces.push(chunk.subarray(from, to));
      onItem(Buffer.concat(pieces).toString('utf8'));
    }
    return -1;
  }
}

const MANAGED = '"managedFields":[';
const METADATA = '"metadata":{';

/**
 * An object's JSON text without its `metadata.managedFields` (the API server's record of who set
 * which field, ~40% of an IPClaim's text, which the store drops after parsing anyway): cut out of
 * the text before JSON.parse, which then parses and collects that much less. The text itself when
 * it has none, or when it is not laid out as the API server writes objects (`metadata` before
 * `spec`, both at the top) — then nothing is cut, and the caller parses it whole as before.
 *
 * Only the first `"managedFields":[` after the first `"metadata":{` and before any `"spec":` is
 * taken: such a sequence cannot be inside a string (its quotes would be escaped), and the API
 * server writes an object's keys in order (apiVersion, kind, metadata, spec; in metadata,
 * annotations, …, labels, managedFields, name), so it is the key of metadata itself. Its array is
 * matched bracket by bracket, strings and escapes respected.
 */
export function withoutManagedFields(text: string): string {
  const at = text.indexOf(MANAGED);
  if (at < 0) return text;
  const meta = text.indexOf(METADATA);
  if (meta < 0 || meta > at) return text;
  const spec = text.indexOf('"spec":');
  if (spec >= 0 && spec < at) return text;
  let depth = 1;
  let i = at + MANAGED.length;
  for (; i < text.length && depth > 0; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === BACKSLASH) i++;
        else if (d === QUOTE) break;
      }
    } else if (c === OPEN_OBJ || c === OPEN_ARR) depth++;
    else if (c === CLOSE_OBJ || c === CLOSE_ARR) depth--;
  }
  if (depth !== 0) return text;
  // i is just past the array's `]`: take one comma with the key, before it or after it.
  if (text.charCodeAt(at - 1) === 0x2c) return text.slice(0, at - 1) + text.slice(i);
  if (text.charCodeAt(i) === 0x2c) return text.slice(0, at) + text.slice(i + 1);
  return text.slice(0, at) + text.slice(i);
}
