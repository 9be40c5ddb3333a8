/**
 * @module api/reference-doc
 * Renders `docs/REFERENCE.md` from the code, so the reference cannot drift from it: the kinds and
 * their fields walked from the TypeBox schemas in `kinds.ts` (with an example per user-applied kind,
 * kept below and validated by `reference-doc.test.ts`), the other projects' kinds `convert.ts`
 * reads, the annotation catalogue (`annotations.ts`), every CLI command and option from the
 * commander program (passed in, so `api` does not import `cli`), and a link to `docs/ERRORS.md`.
 * The test regenerates it and compares; regenerate with `node scripts/gen-docs.ts`.
 */
import type { EventEmitter } from 'node:events';
import type { Command, Option } from 'commander';
import { API_VERSION, KINDS, LABEL_PATTERN, NAME_PATTERN, type KindInfo } from './kinds.ts';
import { LabelSelector, schemaOf } from './schemas.ts';
import { ANNOTATIONS, OBJECT_KEYS, type AnnotationInfo } from './annotations.ts';
import { CONVERTERS } from './convert.ts';
import { parseManifests } from './manifests.ts';

/** One example manifest per user-applied kind; each must pass `validateObject` (tested). */
export const KIND_EXAMPLES: Record<string, string> = {
  IPPool: `apiVersion: ${API_VERSION}
kind: IPPool
metadata:
  name: test-ippool
spec:
  subnet: 10.6.0.0/16
  ips:
    - 10.6.168.131-10.6.168.133
  gateway: 10.6.0.1
  vlan: 6
  routes:
    - dst: 10.7.0.0/16
      gw: 10.6.0.254
`,
  ReservedIP: `apiVersion: ${API_VERSION}
kind: ReservedIP
metadata:
  name: test-reservedip
spec:
  ips:
    - 10.6.168.131-10.6.168.132
`,
  Subnet: `apiVersion: ${API_VERSION}
kind: Subnet
metadata:
  name: subnet-10-6
spec:
  subnet: 10.6.0.0/16
  ips:
    - 10.6.168.100-10.6.168.199
  gateway: 10.6.0.1
`,
  VIP: `apiVersion: ${API_VERSION}
kind: VIP
metadata:
  name: vip-aap
spec:
  pool: test-ippool
  namespace: default
  selector:
    - "app: aap1"
`,
  NodePool: `apiVersion: ${API_VERSION}
kind: NodePool
metadata:
  name: node-1
spec:
  pool:
    10.6.168.10: { resource: eni-1 }
    10.6.168.11: { resource: eni-1 }
  subnets:
    - 10.6.0.0/16
  gateways:
    - 10.6.0.1
`,
  NetworkConfig: `apiVersion: ${API_VERSION}
kind: NetworkConfig
metadata:
  name: macvlan-ens192
  namespace: kube-system
spec:
  type: macvlan
  master: ens192
  vlan: 6
  ippools:
    ipv4:
      - test-ippool
`,
};

/** Examples of other projects' manifests, keyed `apiVersion/kind` as in `CONVERTERS` (tested). */
export const FOREIGN_EXAMPLES: Record<string, string> = {
  'spiderpool.spidernet.io/v2beta1/SpiderIPPool': `apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata:
  name: test-ippool
spec:
  subnet: 10.6.0.0/16
  ips:
    - 10.6.168.131-10.6.168.133
`,
  'spiderpool.spidernet.io/v2beta1/SpiderReservedIP': `apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderReservedIP
metadata:
  name: test-reservedip
spec:
  ips:
    - 10.6.168.131-10.6.168.132
`,
  'kubeovn.io/v1/Vip': `apiVersion: kubeovn.io/v1
kind: Vip
metadata:
  name: static-vip01
spec:
  subnet: ovn-default
  v4ip: "10.16.0.121"
`,
  'cilium.io/v2/CiliumNode': `apiVersion: cilium.io/v2
kind: CiliumNode
metadata:
  name: node-1
spec:
  ipam:
    pool:
      10.6.168.10: { resource: eni-1 }
      10.6.168.11: {}
`,
  'spiderpool.spidernet.io/v2beta1/SpiderMultusConfig': `apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata:
  name: macvlan-ens192
  namespace: kube-system
spec:
  cniType: macvlan
  macvlan:
    master:
      - ens192
    vlanID: 6
    ippools:
      ipv4:
        - test-ippool
`,
  'spiderpool.spidernet.io/v2beta1/SpiderSubnet': `apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata:
  name: subnet-10-6
spec:
  subnet: 10.6.0.0/16
  ips:
    - 10.6.168.100-10.6.168.199
`,
};

type Json = Record<string, unknown>;

/** A Markdown table cell: one line, `|` escaped. */
function cell(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

function code(s: string): string {
  return s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``;
}

function table(head: string[], rows: string[][]): string[] {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ];
}

export interface FieldRow {
  path: string;
  type: string;
  required: boolean;
  description: string;
  constraints: string;
}

const SAME_AS: [string, string][] = [[JSON.stringify(LabelSelector), 'LabelSelector']];

function literal(v: unknown): string {
  return JSON.stringify(v);
}

function typeOf(s: Json): string {
  if (s.const !== undefined) return literal(s.const);
  const alts = s.anyOf as Json[] | undefined;
  if (alts) {
    return alts.every((a) => a.const !== undefined)
      ? String(alts[0]?.type ?? 'string')
      : alts.map(typeOf).join(' | ');
  }
  if (s.type === 'array') return `${typeOf((s.items ?? {}) as Json)}[]`;
  if (s.type === 'object' && s.patternProperties) {
    return `map[string]${typeOf(Object.values(s.patternProperties as Json)[0] as Json)}`;
  }
  return typeof s.type === 'string' ? s.type : 'any';
}

function constraints(s: Json): string {
  const out: string[] = [];
  const alts = s.anyOf as Json[] | undefined;
  if (alts && alts.every((a) => a.const !== undefined))
    out.push(`one of ${alts.map((a) => code(literal(a.const))).join(', ')}`);
  if (Array.isArray(s.enum)) out.push(`one of ${s.enum.map((v) => code(literal(v))).join(', ')}`);
  if (s.pattern === NAME_PATTERN) out.push('a DNS-1123 name (lower-case letters, digits, `-`, `.`)');
  else if (s.pattern === LABEL_PATTERN) out.push('a DNS-1123 label (lower-case letters, digits, `-`)');
  else if (typeof s.pattern === 'string') out.push(`pattern ${code(s.pattern)}`);
  for (const [k, word] of [
    ['minimum', 'min'],
    ['maximum', 'max'],
    ['minLength', 'min length'],
    ['maxLength', 'max length'],
    ['minItems', 'min items'],
    ['maxItems', 'max items'],
  ] as const) {
    if (s[k] !== undefined) out.push(`${word} ${String(s[k])}`);
  }
  if (s.default !== undefined) out.push(`default ${code(literal(s.default))}`);
  const items = s.items as Json | undefined;
  if (items && typeOf(items) === 'string') {
    const inner = constraints(items);
    if (inner) out.push(`each: ${inner}`);
  }
  return out.join('; ');
}

/** The metadata fields a user writes; the rest are set by the store or the API server. */
const USER_META = ['name', 'namespace', 'labels', 'annotations'];

/**
 * Every field of a schema, depth first: `spec.routes[].dst`, `spec.pool.*.resource`. A label
 * selector is named, not expanded; `apiVersion` and `kind` are left to the kind's header.
 */
export function schemaFields(schema: unknown, info?: KindInfo): FieldRow[] {
  const rows: FieldRow[] = [];
  const walk = (s: Json, path: string, required: boolean, row = true): void => {
    const same = SAME_AS.find(
      ([j]) => j === JSON.stringify({ ...s, description: (LabelSelector as unknown as Json).description }),
    )?.[1];
    if (path !== '' && row) {
      rows.push({
        path,
        type: same ?? typeOf(s),
        required,
        description: String(s.description ?? ''),
        constraints: same ? '`matchLabels`, `matchExpressions`, as in Kubernetes' : constraints(s),
      });
    }
    if (same) return;
    if (s.properties) {
      const req = new Set((s.required as string[] | undefined) ?? []);
      for (const [k, v] of Object.entries(s.properties as Record<string, Json>)) {
        if (path === '' && (k === 'apiVersion' || k === 'kind')) continue;
        if (
          path === 'metadata' &&
          (!USER_META.includes(k) || (k === 'namespace' && info && !info.namespaced))
        )
          continue;
        walk(v, path === '' ? k : `${path}.${k}`, req.has(k));
      }
    }
    if (s.patternProperties) {
      walk(Object.values(s.patternProperties as Json)[0] as Json, `${path}.*`, false);
    }
    // The list's own row says `object[]`; its items' fields follow as `path[].field`.
    if (s.items && (s.items as Json).type === 'object') walk(s.items as Json, `${path}[]`, false, false);
  };
  walk(schema as Json, '', true);
  // A map of strings or an array of scalars adds a row with nothing to say: keep the parent only.
  return rows.filter(
    (r) =>
      !(
        r.path.endsWith('.*') &&
        /^(string|integer|number|boolean)(\[\])?$/.test(r.type) &&
        r.description === ''
      ),
  );
}

function kindSection(info: KindInfo): string[] {
  const ex = KIND_EXAMPLES[info.kind];
  return [
    `### ${info.kind}`,
    '',
    `\`apiVersion: ${API_VERSION}\`, \`kind: ${info.kind}\` — ${info.namespaced ? 'namespaced' : 'cluster-scoped'}; ` +
      `names: \`${info.plural}\`, \`${info.singular}\`${info.shortNames.map((n) => `, \`${n}\``).join('')}; ` +
      (info.userApplied
        ? 'applied by users (`ipkeeper apply -f`, `kubectl apply -f`).'
        : 'written by ipkeeper only (read it with `ipkeeper get`).'),
    '',
    ...table(
      ['field', 'type', 'required', 'description', 'constraints'],
      schemaFields(schemaOf(info), info).map((r) => [
        code(r.path),
        r.type,
        r.required ? 'yes' : '',
        r.description,
        r.constraints,
      ]),
    ),
    '',
    ...(info.userApplied
      ? ex
        ? ['Example:', '', '```yaml', ex.trimEnd(), '```', '']
        : ['No example yet.', '']
      : []),
  ];
}

/** `[apiVersion, kind, becomes]` of each foreign kind `convert.ts` reads. */
export function foreignKinds(): [string, string, string][] {
  return Object.entries(CONVERTERS).map(([key, conv]) => {
    const slash = key.lastIndexOf('/');
    const apiVersion = key.slice(0, slash);
    const kind = key.slice(slash + 1);
    // The converter tells what it makes: given the example (tested to convert), else an empty spec;
    // one that refuses both shows "—" rather than guessing.
    const ex = FOREIGN_EXAMPLES[key];
    let becomes = '—';
    try {
      becomes = (ex ? parseManifests(ex, key)[0]?.object.kind : undefined) ?? '—';
    } catch {
      // Tried below; the example test reports a broken example.
    }
    if (becomes === '—') {
      try {
        becomes = conv({ apiVersion, kind, metadata: { name: 'x' }, spec: {} }).kind;
      } catch {
        // Left as "—": the table still lists the kind as accepted.
      }
    }
    return [apiVersion, kind, becomes];
  });
}

function foreignSection(): string[] {
  const out = [
    "## Other projects' kinds",
    '',
    '`ipkeeper apply -f` reads these manifests verbatim and converts them; a field the converter does not',
    'understand is refused, naming it, so nothing is dropped silently.',
    '',
    ...table(
      ['apiVersion', 'kind', 'becomes'],
      foreignKinds().map(([a, k, b]) => [code(a), code(k), b === '—' ? b : `[${b}](#${b.toLowerCase()})`]),
    ),
    '',
  ];
  for (const key of Object.keys(CONVERTERS)) {
    const ex = FOREIGN_EXAMPLES[key];
    if (!ex) continue;
    out.push(`Example (${key.slice(key.lastIndexOf('/') + 1)}):`, '', '```yaml', ex.trimEnd(), '```', '');
  }
  return out;
}

const TARGET_TEXT: Record<string, string> = {
  pod: 'pod',
  workload: 'workload template',
  namespace: 'namespace',
};

function annotationSection(): string[] {
  const entries = Object.values(ANNOTATIONS) as AnnotationInfo[];
  const aliasText = (e: AnnotationInfo): string =>
    e.aliases.length === 0 ? '—' : e.aliases.map((a) => `${code(a.name)} (${a.project})`).join(', ');
  const out = [
    '## Annotations',
    '',
    "*pod*: on the pod, usually through its workload's pod template (`spec.template.metadata.annotations`);",
    '*workload template*: on a Deployment, StatefulSet, ... pod template, read for the whole workload;',
    '*namespace*: on the namespace, for all its pods.',
    '',
    "Each annotation also accepts the other projects' names listed, so their manifests work unchanged.",
    "ipkeeper's own name is looked at first, then the aliases in the order listed; the first present",
    'wins (in code: `annotationValue()` in `src/api/annotations.ts`).',
    '',
    ...table(
      ['annotation', 'on', 'capability', 'aliases'],
      entries.map((e) => [
        `[${code(e.name)}](#${e.name.replace(/[^a-z0-9-]/g, '')})`,
        e.on.map((t) => TARGET_TEXT[t] ?? t).join(', '),
        e.feature + (e.status === 'planned' ? ' (planned)' : ''),
        aliasText(e),
      ]),
    ),
    '',
  ];
  for (const e of entries) {
    out.push(
      `### ${e.name}`,
      '',
      `${e.meaning[0]?.toUpperCase()}${e.meaning.slice(1)}.`,
      '',
      `- On: ${e.on.map((t) => TARGET_TEXT[t] ?? t).join(', ')}`,
      `- Value: ${e.format}`,
      `- Example: ${code(`${e.name}: '${e.example}'`)}`,
      `- Default: ${e.default}`,
      `- Aliases: ${
        e.aliases.length === 0
          ? 'none'
          : e.aliases.map((a) => `${code(a.name)} (${a.project}${a.note ? `: ${a.note}` : ''})`).join(', ')
      }`,
      `- Capability: ${e.feature}${e.status === 'planned' ? ' — planned, not read yet' : ''}`,
      '',
    );
  }
  out.push(
    '## Labels, annotations and finalizers ipkeeper writes',
    '',
    ...table(
      ['key', 'what', 'on', 'meaning'],
      OBJECT_KEYS.map((k) => [code(k.name), k.what, k.on, k.meaning]),
    ),
    '',
  );
  return out;
}

/** The text a command prints after its help (`.addHelpText('after', ...)`): its examples. */
export function helpAfter(cmd: Command): string {
  let out = '';
  // commander keeps help texts as 'afterHelp' listeners (Command is an EventEmitter at run time).
  for (const l of (cmd as unknown as EventEmitter).listeners('afterHelp')) {
    (l as (ctx: { error: boolean; command: Command; write: (s: string) => void }) => void)({
      error: false,
      command: cmd,
      write: (s) => {
        out += s;
      },
    });
  }
  return out.replace(/^\n+/, '').trimEnd();
}

function optionRow(o: Option): string[] {
  const d: unknown = o.defaultValue;
  const def =
    o.defaultValueDescription ??
    (d === undefined || d === false ? '' : typeof d === 'string' ? d : JSON.stringify(d));
  const notes = [
    o.mandatory ? 'required' : '',
    o.argChoices ? `one of ${o.argChoices.map((c) => code(c)).join(', ')}` : '',
    def ? `default ${code(def)}` : '',
    o.envVar ? `env ${code(o.envVar)}` : '',
  ].filter(Boolean);
  return [code(o.flags), o.description, notes.join('; ')];
}

function commandSection(cmd: Command, parents: string[]): string[] {
  const words = [...parents, cmd.name()];
  const out = [
    `### ${words.join(' ')}`,
    '',
    `${cmd.description()}`,
    '',
    '```',
    `${words.join(' ')} ${cmd.usage()}`,
    '```',
    '',
  ];
  const args = cmd.registeredArguments;
  if (args.length > 0) {
    out.push(
      ...table(
        ['argument', 'description'],
        args.map((a) => [
          code(
            a.required
              ? `<${a.name()}${a.variadic ? '...' : ''}>`
              : `[${a.name()}${a.variadic ? '...' : ''}]`,
          ),
          a.description ?? '',
        ]),
      ),
      '',
    );
  }
  const opts = cmd.options.filter((o) => !o.hidden);
  if (opts.length > 0) out.push(...table(['option', 'description', 'notes'], opts.map(optionRow)), '');
  const after = helpAfter(cmd);
  if (after) out.push('```', after, '```', '');
  for (const sub of cmd.commands) out.push(...commandSection(sub, words));
  return out;
}

function cliSection(program: Command): string[] {
  return [
    '## CLI',
    '',
    `\`${program.name()}\` — ${program.description()}. Every command takes \`-h, --help\` (its options and`,
    'examples). Errors print `error: <message>` on stderr and exit 1; usage errors exit 2. Commands that',
    'talk to the agent take `--socket PATH` (or `IPKEEPER_SOCKET`). Progress of long operations goes to',
    'stderr (on a terminal, or with `--progress`), never to stdout, so `-o json` stays parseable.',
    '',
    ...table(
      ['command', 'what it does'],
      program.commands.map((c) => [
        `[${c.name()}](#${[program.name(), c.name()].join('-')})`,
        c.description(),
      ]),
    ),
    '',
    ...program.commands.flatMap((c) => commandSection(c, [program.name()])),
  ];
}

/**
 * The whole reference.
 * @param program the CLI (`buildCli()` from `src/cli/main.ts`).
 */
export function renderReferenceDoc(program: Command): string {
  const kinds = Object.values(KINDS);
  return [
    '# ipkeeper reference',
    '',
    '<!-- Generated from the code by `node scripts/gen-docs.ts` (src/api/reference-doc.ts); a test keeps it in step. Do not edit by hand. -->',
    '',
    'Kinds, annotations, CLI and error codes. The user guide is [GUIDE.md](GUIDE.md); the design,',
    '[DESIGN.md](DESIGN.md).',
    '',
    '- [Kinds](#kinds)',
    "- [Other projects' kinds](#other-projects-kinds)",
    '- [Annotations](#annotations)',
    '- [Labels, annotations and finalizers ipkeeper writes](#labels-annotations-and-finalizers-ipkeeper-writes)',
    '- [CLI](#cli)',
    '- [Error codes](#error-codes)',
    '',
    '## Kinds',
    '',
    `API group \`${API_VERSION}\`. Each kind's table lists its fields (\`status\` is written by ipkeeper);`,
    '`a.b[].c` is field `c` of an item of the list `a.b`, `a.*` a value of the map `a`.',
    '',
    ...table(
      ['kind', 'scope', 'names', 'applied by users'],
      kinds.map((k) => [
        `[${k.kind}](#${k.kind.toLowerCase()})`,
        k.namespaced ? 'namespaced' : 'cluster',
        [k.plural, k.singular, ...k.shortNames].map((n) => code(n)).join(', '),
        k.userApplied ? 'yes' : 'no (written by ipkeeper)',
      ]),
    ),
    '',
    ...kinds.flatMap(kindSection),
    ...foreignSection(),
    ...annotationSection(),
    ...cliSection(program),
    '## Error codes',
    '',
    'Every error carries a stable code, a CNI code and an HTTP status: see [ERRORS.md](ERRORS.md).',
    '',
  ].join('\n');
}
