/**
 * @module deploy/render
 * Renders the Helm chart in deploy/helm/ipkeeper without Helm: a renderer for exactly the small subset
 * of Helm's template language the chart uses (documented in deploy/helm/ipkeeper/README.md), so the
 * plain manifests (deploy/manifests/) and the tests come from the very templates `helm install` reads.
 *
 * The subset, and what real Helm (Go text/template + sprig) does with it:
 *
 *   {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}
 *   {{ .Chart.Name }}  {{ .Chart.Version }}  {{ .Chart.AppVersion }}     print a value
 *   {{ X | quote }}                  a double-quoted string (Go's %q; JSON's escapes for printable ASCII)
 *   {{ toYaml X | nindent N }}       X as block YAML, keys sorted, then "\n" + every line indented N
 *   {{ default "v" X }}              X unless it is empty (missing, "", 0, false, [] or {}), else "v"
 *   {{ if X }} ... {{ else }} ... {{ end }}       X empty is false, as above; ifs nest
 *   {{ if not X }}                   true when X is empty
 *   {{- ... -}}                      trim the whitespace (newlines too) before / after the action
 *   {{/* comment *\/}}               nothing
 *
 * Anything else (`include`, `range`, `with`, variables, parentheses, `else if`, other functions) throws a
 * `TemplateError` naming the file, the line and the expression. Where Helm prints something a user
 * rarely means, this renderer refuses rather than imitates: printing a missing value (Helm prints ""),
 * a map or a list (Go prints `map[...]`), or a number Go would print in exponent form (1e+06).
 *
 * `toYaml` writes the same data as Helm's (keys sorted, no trailing newline); only the quoting style of
 * a string may differ (`'true'` here, `"true"` in Go's yaml), which no YAML reader can tell apart.
 *
 * Pure: strings and values in, strings and objects out. Reading the chart from disk is deploy/chart.ts.
 */
import { parseAllDocuments, stringify } from 'yaml';

/** What `.Release` and `.Chart` hold, and the merged values. */
export interface RenderContext {
  Values: Record<string, unknown>;
  Release: { Name: string; Namespace: string };
  Chart: { Name: string; Version: string; AppVersion: string };
}

/** A template that uses something outside the subset, or a value it cannot print. */
export class TemplateError extends Error {
  readonly file: string;
  readonly line: number;
  readonly expression: string;
  constructor(file: string, line: number, expression: string, why: string) {
    super(
      `${file}:${line}: {{ ${expression} }} ${why} (the chart's templates use only the subset in deploy/helm/ipkeeper/README.md)`,
    );
    this.name = 'TemplateError';
    this.file = file;
    this.line = line;
    this.expression = expression;
  }
}

// ---- lexing: text and actions --------------------------------------------------------------------

interface Action {
  /** The expression between the delimiters, trim markers and surrounding spaces removed. */
  expr: string;
  line: number;
  comment: boolean;
}
type Piece = { text: string } | { action: Action };

/** Go's trim markers are a dash with ASCII white space on its inner side. */
const SPACE = /[ \t\r\n]/;

function lex(file: string, src: string): Piece[] {
  const pieces: Piece[] = [];
  let pos = 0;
  let line = 1;
  let trimNext = false;
  for (;;) {
    const open = src.indexOf('{{', pos);
    let text = src.slice(pos, open < 0 ? src.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    if (open < 0) {
      pieces.push({ text });
      return pieces;
    }
    const actionLine = line + countLines(src, pos, open);
    let start = open + 2;
    if (src[start] === '-' && SPACE.test(src[start + 1] ?? '')) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 2;
    }
    pieces.push({ text });
    const close = findClose(file, src, start, actionLine);
    let end = close;
    trimNext = false;
    if (src[close - 1] === '-' && SPACE.test(src[close - 2] ?? '')) {
      trimNext = true;
      end = close - 2;
    }
    const raw = src.slice(start, end).trim();
    // As in Go: a comment opens right after `{{` or `{{- ` and closes right before `}}` or ` -}}`.
    const comment = src.startsWith('/*', start);
    if (comment && !src.slice(start, end).endsWith('*/')) {
      throw new TemplateError(
        file,
        actionLine,
        raw,
        'is a comment that does not end with */ right before }}',
      );
    }
    pieces.push({ action: { expr: raw, line: actionLine, comment } });
    line = actionLine + countLines(src, open, close + 2);
    pos = close + 2;
  }
}

function countLines(src: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) if (src.charCodeAt(i) === 10) n++;
  return n;
}

/** The index of the `}}` that closes the action starting at `from` (skipping string literals and comments). */
function findClose(file: string, src: string, from: number, line: number): number {
  if (src.startsWith('/*', from)) {
    const endComment = src.indexOf('*/', from);
    const close = endComment < 0 ? -1 : src.indexOf('}}', endComment);
    if (close < 0)
      throw new TemplateError(file, line, src.slice(from, from + 40), 'is a comment that never ends');
    return close;
  }
  let inString = false;
  for (let i = from; i < src.length; i++) {
    const c = src[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      else if (c === '\n') break;
    } else if (c === '"') inString = true;
    else if (c === '}' && src[i + 1] === '}') return i;
  }
  throw new TemplateError(file, line, src.slice(from, from + 40).split('\n')[0] ?? '', 'has no closing }}');
}

// ---- parsing: a tree of text, prints and ifs ----------------------------------------------------

type Token =
  | { t: 'field'; path: string[] }
  | { t: 'string'; value: string }
  | { t: 'number'; value: number }
  | { t: 'ident'; name: string }
  | { t: 'pipe' };

type Node =
  | { n: 'text'; text: string }
  | { n: 'print'; action: Action; pipeline: Token[][] }
  | { n: 'if'; action: Action; pipeline: Token[][]; then: Node[]; else: Node[] };

const TOKEN =
  /\s*(?:(?<str>"(?:[^"\\\n]|\\.)*")|(?<num>-?\d+)(?![\w.])|(?<field>(?:\.[A-Za-z_]\w*)+)|(?<ident>[A-Za-z_]\w*)|(?<pipe>\|))/y;

const FUNCTIONS: Record<string, number> = { quote: 1, toYaml: 1, nindent: 2, default: 2, not: 1 };
const OUTSIDE =
  'is outside the subset: use only .Values/.Release/.Chart fields, string and integer literals, quote, toYaml, nindent, default, not, if/else/end';

function tokenize(file: string, a: Action): Token[][] {
  const cmds: Token[][] = [[]];
  let i = 0;
  while (i < a.expr.length) {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(a.expr);
    if (!m || m.index !== i) {
      if (a.expr.slice(i).trim() === '') break;
      throw new TemplateError(file, a.line, a.expr, `${OUTSIDE} (at "${a.expr.slice(i).trim()}")`);
    }
    i = TOKEN.lastIndex;
    const g = m.groups ?? {};
    const cur = cmds[cmds.length - 1] as Token[];
    if (g.str !== undefined) cur.push({ t: 'string', value: unquoteGo(file, a, g.str) });
    else if (g.num !== undefined) cur.push({ t: 'number', value: Number(g.num) });
    else if (g.field !== undefined) cur.push({ t: 'field', path: g.field.slice(1).split('.') });
    else if (g.ident !== undefined) cur.push({ t: 'ident', name: g.ident });
    else cmds.push([]);
  }
  if (cmds.some((c) => c.length === 0)) throw new TemplateError(file, a.line, a.expr, 'has an empty command');
  return cmds;
}

function unquoteGo(file: string, a: Action, lit: string): string {
  try {
    // Go's interpreted string literals and JSON agree on \" \\ \n \t \r and \uXXXX.
    return JSON.parse(lit) as string;
  } catch {
    throw new TemplateError(
      file,
      a.line,
      a.expr,
      `has the string ${lit}, whose escapes are outside the subset`,
    );
  }
}

function parse(file: string, pieces: Piece[]): Node[] {
  const root: Node[] = [];
  // Each open `if`: the node, and whether its `else` was seen.
  const stack: { node: Extract<Node, { n: 'if' }>; inElse: boolean }[] = [];
  const out = (): Node[] => {
    const top = stack[stack.length - 1];
    return top === undefined ? root : top.inElse ? top.node.else : top.node.then;
  };
  for (const p of pieces) {
    if ('text' in p) {
      if (p.text !== '') out().push({ n: 'text', text: p.text });
      continue;
    }
    const a = p.action;
    if (a.comment) continue;
    const first = /^[A-Za-z_]\w*/.exec(a.expr)?.[0];
    if (first === 'if') {
      const pipeline = tokenize(file, { ...a, expr: a.expr.slice(2) });
      const node: Extract<Node, { n: 'if' }> = { n: 'if', action: a, pipeline, then: [], else: [] };
      out().push(node);
      stack.push({ node, inElse: false });
    } else if (first === 'else') {
      const top = stack[stack.length - 1];
      if (a.expr !== 'else') throw new TemplateError(file, a.line, a.expr, `${OUTSIDE} (write a nested if)`);
      if (top === undefined || top.inElse)
        throw new TemplateError(file, a.line, a.expr, 'has no if to belong to');
      top.inElse = true;
    } else if (first === 'end') {
      if (a.expr !== 'end' || stack.pop() === undefined) {
        throw new TemplateError(file, a.line, a.expr, 'has no if to end');
      }
    } else if (first !== undefined && !(first in FUNCTIONS)) {
      throw new TemplateError(file, a.line, a.expr, OUTSIDE);
    } else {
      out().push({ n: 'print', action: a, pipeline: tokenize(file, a) });
    }
  }
  const open = stack[stack.length - 1];
  if (open !== undefined)
    throw new TemplateError(file, open.node.action.line, open.node.action.expr, 'has no end');
  return root;
}

// ---- evaluation ------------------------------------------------------------------------------------

/** A value the context does not have: falsy in `if`, empty for `default`, refused when printed. */
const MISSING = Symbol('missing');
type Value = unknown;

const isMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** Sprig's `empty` and Go's template truth are the same test for the values YAML can hold. */
export function isEmpty(v: unknown): boolean {
  if (v === MISSING || v === undefined || v === null || v === false || v === 0 || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isMap(v)) return Object.keys(v).length === 0;
  return false;
}

function field(file: string, a: Action, ctx: RenderContext, path: string[]): Value {
  const [top, ...rest] = path;
  const shown = `.${path.join('.')}`;
  if (top === 'Release' || top === 'Chart') {
    const obj = ctx[top] as Record<string, unknown>;
    if (rest.length !== 1 || !((rest[0] as string) in obj)) {
      throw new TemplateError(
        file,
        a.line,
        a.expr,
        `reads ${shown}; the subset has .${top}.{${Object.keys(obj).join(',')}}`,
      );
    }
    return obj[rest[0] as string];
  }
  if (top !== 'Values') throw new TemplateError(file, a.line, a.expr, `reads ${shown}; ${OUTSIDE}`);
  let v: Value = ctx.Values;
  for (const [i, key] of rest.entries()) {
    if (!isMap(v)) {
      // Go templates fail here too ("nil pointer evaluating interface {}.key").
      const at = `.Values${rest
        .slice(0, i)
        .map((k) => `.${k}`)
        .join('')}`;
      throw new TemplateError(
        file,
        a.line,
        a.expr,
        `reads ${shown}, but ${at} is ${v === MISSING ? 'not set' : `not a map (${JSON.stringify(v)})`}`,
      );
    }
    v = key in v ? v[key] : MISSING;
  }
  return v;
}

function operand(file: string, a: Action, ctx: RenderContext, tok: Token): Value {
  switch (tok.t) {
    case 'field':
      return field(file, a, ctx, tok.path);
    case 'string':
    case 'number':
      return tok.value;
    case 'ident':
      throw new TemplateError(file, a.line, a.expr, `uses ${tok.name} as a value; ${OUTSIDE}`);
    case 'pipe':
      throw new TemplateError(file, a.line, a.expr, 'has a misplaced |');
  }
}

function evalPipeline(file: string, a: Action, ctx: RenderContext, cmds: Token[][]): Value {
  let prev: Value = MISSING;
  for (const [i, cmd] of cmds.entries()) {
    const head = cmd[0] as Token;
    if (head.t !== 'ident') {
      if (i > 0 || cmd.length !== 1)
        throw new TemplateError(file, a.line, a.expr, `${OUTSIDE} (a value where a function belongs)`);
      prev = operand(file, a, ctx, head);
      continue;
    }
    const arity = FUNCTIONS[head.name];
    if (arity === undefined) throw new TemplateError(file, a.line, a.expr, `calls ${head.name}; ${OUTSIDE}`);
    const args = cmd.slice(1).map((t) => operand(file, a, ctx, t));
    if (i > 0) args.push(prev);
    if (args.length !== arity) {
      throw new TemplateError(
        file,
        a.line,
        a.expr,
        `calls ${head.name} with ${args.length} arguments; it takes ${arity}`,
      );
    }
    prev = call(file, a, head.name, args);
  }
  return prev;
}

function call(file: string, a: Action, fn: string, args: Value[]): Value {
  const [x, y] = args;
  switch (fn) {
    case 'quote':
      return JSON.stringify(scalarText(file, a, x));
    case 'toYaml':
      if (x === MISSING)
        throw new TemplateError(file, a.line, a.expr, 'passes a value that is not set to toYaml');
      return toYaml(x);
    case 'nindent': {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || typeof y !== 'string') {
        throw new TemplateError(
          file,
          a.line,
          a.expr,
          'calls nindent without an integer width and a string (pipe toYaml or quote into it)',
        );
      }
      // Sprig pads every line, empty ones too.
      const pad = ' '.repeat(x);
      return `\n${pad}${y.replaceAll('\n', `\n${pad}`)}`;
    }
    case 'default':
      return isEmpty(y) ? x : y;
    case 'not':
      return isEmpty(x);
  }
  throw new TemplateError(file, a.line, a.expr, `calls ${fn}; ${OUTSIDE}`);
}

/** How Go prints a scalar; refuses what it would print surprisingly. */
function scalarText(file: string, a: Action, v: Value): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') {
    // Helm's values are float64; Go prints those with %g's exponent from 1e+06 up and below 1e-04.
    const abs = Math.abs(v);
    if (Number.isFinite(v) && (abs === 0 || (abs >= 1e-4 && abs < 1e6))) return String(v);
    throw new TemplateError(
      file,
      a.line,
      a.expr,
      `prints the number ${v}, which Helm writes in exponent form; quote it in values.yaml`,
    );
  }
  if (v === MISSING)
    throw new TemplateError(
      file,
      a.line,
      a.expr,
      'prints a value that is not set; set it in values.yaml or use default',
    );
  throw new TemplateError(
    file,
    a.line,
    a.expr,
    `prints ${v === null ? 'null' : Array.isArray(v) ? 'a list' : 'a map'}; use toYaml ... | nindent N`,
  );
}

/**
 * YAML for `toYaml`: block style, keys sorted (Go's yaml sorts map keys), lists not indented under
 * their key, no line folding, no trailing newline.
 */
export function toYaml(v: unknown): string {
  const sorted = (x: unknown): unknown =>
    Array.isArray(x)
      ? x.map(sorted)
      : isMap(x)
        ? Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, sorted(x[k])]),
          )
        : x;
  return stringify(sorted(v), { indentSeq: false, lineWidth: 0 }).replace(/\n$/, '');
}

function evalNodes(file: string, nodes: Node[], ctx: RenderContext, out: string[]): void {
  for (const node of nodes) {
    if (node.n === 'text') out.push(node.text);
    else if (node.n === 'print')
      out.push(scalarText(file, node.action, evalPipeline(file, node.action, ctx, node.pipeline)));
    else {
      const cond = evalPipeline(file, node.action, ctx, node.pipeline);
      evalNodes(file, isEmpty(cond) ? node.else : node.then, ctx, out);
    }
  }
}

/**
 * Renders one template.
 * @throws TemplateError for anything outside the subset, a missing `end`, or a value that cannot be
 *   printed; the message names `file`, the line and the expression.
 */
export function renderTemplate(file: string, src: string, ctx: RenderContext): string {
  const out: string[] = [];
  evalNodes(file, parse(file, lex(file, src)), ctx, out);
  return out.join('');
}

// ---- values, whole charts ---------------------------------------------------------------------------

/**
 * Helm's coalescing of user values over the chart's: maps merge key by key, anything else replaces,
 * and a `null` removes the chart's key. Neither input is changed.
 */
export function mergeValues(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (isMap(v) && isMap(out[k])) out[k] = mergeValues(out[k] as Record<string, unknown>, v);
    else out[k] = v;
  }
  return out;
}

export interface ChartSource {
  /** From Chart.yaml. */
  name: string;
  version: string;
  appVersion: string;
  /** values.yaml, parsed. */
  values: Record<string, unknown>;
  /** templates/<file> -> text; files starting with `_` and non-YAML files are not rendered (as in Helm). */
  templates: Record<string, string>;
}

export interface RenderOptions {
  releaseName: string;
  namespace: string;
  /** Merged over values.yaml (`helm install -f`). */
  values?: Record<string, unknown>;
}

/** One object of the rendered chart. */
export interface Manifest {
  /** `<chart>/templates/<file>`, as `helm template` writes in its `# Source:` lines. */
  source: string;
  /** The document's text as rendered. */
  text: string;
  object: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<
    string,
    unknown
  >;
}

/** Helm 3's install order (pkg/releaseutil/kind_sorter.go `InstallOrder`). */
export const INSTALL_ORDER = [
  'PriorityClass',
  'Namespace',
  'NetworkPolicy',
  'ResourceQuota',
  'LimitRange',
  'PodSecurityPolicy',
  'PodDisruptionBudget',
  'ServiceAccount',
  'Secret',
  'SecretList',
  'ConfigMap',
  'StorageClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleList',
  'ClusterRoleBinding',
  'ClusterRoleBindingList',
  'Role',
  'RoleList',
  'RoleBinding',
  'RoleBindingList',
  'Service',
  'DaemonSet',
  'Pod',
  'ReplicationController',
  'ReplicaSet',
  'Deployment',
  'HorizontalPodAutoscaler',
  'StatefulSet',
  'Job',
  'CronJob',
  'IngressClass',
  'Ingress',
  'APIService',
];

const order = (kind: string): number => {
  const i = INSTALL_ORDER.indexOf(kind);
  return i < 0 ? INSTALL_ORDER.length : i;
};

/**
 * Renders every template of a chart, splits the output into documents, drops empty ones and sorts
 * them in Helm's install order (by kind, in template order within a kind; kinds Helm does not know
 * go last, by kind name).
 * @throws TemplateError from a template; Error naming the source when a document is not YAML or lacks
 *   apiVersion, kind or metadata.name.
 */
export function renderChart(chart: ChartSource, opts: RenderOptions): Manifest[] {
  const ctx: RenderContext = {
    Values: mergeValues(chart.values, opts.values ?? {}),
    Release: { Name: opts.releaseName, Namespace: opts.namespace },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
  };
  const out: Manifest[] = [];
  for (const file of Object.keys(chart.templates).sort()) {
    if (file.startsWith('_') || !/\.ya?ml$/.test(file)) continue;
    const source = `${chart.name}/templates/${file}`;
    const rendered = renderTemplate(source, chart.templates[file] as string, ctx);
    for (const text of rendered.split(/^---[ \t]*$/m)) {
      if (text.trim() === '') continue;
      const docs = parseAllDocuments(text);
      // Only comments: no object, as for Helm.
      if (Array.isArray(docs) && docs.length === 0) continue;
      const doc = docs[0];
      if (docs.length !== 1 || doc === undefined || !('errors' in doc) || doc.errors.length > 0) {
        const why =
          doc !== undefined && 'errors' in doc ? doc.errors.map((e) => e.message).join('; ') : 'no document';
        throw new Error(`${source} rendered a document that is not YAML: ${why}\n${text}`);
      }
      const object = doc.toJS() as Manifest['object'] | null;
      if (object === null || (object as unknown) === undefined) continue; // only comments: Helm drops it too
      if (!object.apiVersion || !object.kind || !object.metadata?.name) {
        throw new Error(`${source} rendered an object without apiVersion, kind or metadata.name:\n${text}`);
      }
      out.push({ source, text: `${text.replace(/^\n+/, '').replace(/\s+$/, '')}\n`, object });
    }
  }
  // As Helm's lessByKind: known kinds by their rank, unknown ones after them by kind name, and the
  // template order (files by name, documents as written) within a kind (Array.sort is stable).
  const unknown = INSTALL_ORDER.length;
  return out.sort((a, b) => {
    const ra = order(a.object.kind);
    const rb = order(b.object.kind);
    if (ra === unknown && rb === unknown)
      return a.object.kind < b.object.kind ? -1 : a.object.kind > b.object.kind ? 1 : 0;
    return ra - rb;
  });
}
