import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  isEmpty,
  mergeValues,
  renderChart,
  renderTemplate,
  TemplateError,
  toYaml,
  type ChartSource,
  type RenderContext,
} from './render.ts';

const ctx = (values: Record<string, unknown> = {}): RenderContext => ({
  Values: values,
  Release: { Name: 'rel', Namespace: 'ns1' },
  Chart: { Name: 'ipkeeper', Version: '1.2.3', AppVersion: '0.1.0' },
});
const render = (src: string, values: Record<string, unknown> = {}): string =>
  renderTemplate('t.yaml', src, ctx(values));

/** Asserts a TemplateError naming the file, the line and (a part of) the expression. */
function refuses(
  src: string,
  values: Record<string, unknown>,
  line: number,
  expr: string,
  why: RegExp,
): void {
  assert.throws(
    () => render(src, values),
    (e: unknown) => {
      assert.ok(e instanceof TemplateError, `not a TemplateError: ${String(e)}`);
      assert.equal(e.file, 't.yaml');
      assert.equal(e.line, line);
      assert.ok(e.expression.includes(expr), `expression ${e.expression} lacks ${expr}`);
      assert.match(e.message, new RegExp(`^t\\.yaml:${line}: `));
      assert.match(e.message, why);
      return true;
    },
  );
}

describe('renderTemplate: what the subset prints, as Helm does', () => {
  const cases: [string, string, Record<string, unknown>, string][] = [
    ['a values path', 'x: {{ .Values.a.b }}', { a: { b: 'y' } }, 'x: y'],
    [
      'release and chart',
      '{{ .Release.Name }}/{{ .Release.Namespace }} {{ .Chart.Name }}-{{ .Chart.Version }} {{ .Chart.AppVersion }}',
      {},
      'rel/ns1 ipkeeper-1.2.3 0.1.0',
    ],
    ['an integer', 'replicas: {{ .Values.n }}', { n: 2 }, 'replicas: 2'],
    ['a boolean', '{{ .Values.b }}', { b: false }, 'false'],
    ['a decimal', '{{ .Values.f }}', { f: 0.5 }, '0.5'],
    ['the largest integer Go prints plainly', '{{ .Values.n }}', { n: 999999 }, '999999'],
    ['quote a string', 'v: {{ .Values.s | quote }}', { s: 'a "b" \\c' }, 'v: "a \\"b\\" \\\\c"'],
    ['quote a number', '{{ .Values.n | quote }}', { n: 9710 }, '"9710"'],
    ['quote as a function', '{{ quote .Values.s }}', { s: 'x' }, '"x"'],
    ['quote a literal', '{{ "a" | quote }}', {}, '"a"'],
    ['default when missing', '{{ default "d" .Values.t }}', {}, 'd'],
    ['default when empty string', '{{ default "d" .Values.t }}', { t: '' }, 'd'],
    ['default when zero', '{{ default "d" .Values.t }}', { t: 0 }, 'd'],
    ['default when false', '{{ default "d" .Values.t }}', { t: false }, 'd'],
    ['default when set', '{{ default "d" .Values.t }}', { t: 'v1' }, 'v1'],
    ['default from a field', '{{ default .Chart.AppVersion .Values.t }}', { t: '' }, '0.1.0'],
    ['default piped', '{{ .Values.t | default "d" | quote }}', {}, '"d"'],
    ['a string literal with braces', '{{ "}}" }}', {}, '}}'],
    ['a string literal with escapes', '{{ "a\\tb" | quote }}', {}, '"a\\tb"'],
    ['text without actions', 'a: b\n', {}, 'a: b\n'],
  ];
  for (const [name, src, values, want] of cases) it(name, () => assert.equal(render(src, values), want));

  it('toYaml | nindent: keys sorted, lists not indented under their key, no trailing newline', () => {
    const src =
      'metadata:\n  labels:\n    {{- toYaml .Values.labels | nindent 4 }}\nspec:\n  tolerations:\n    {{- toYaml .Values.t | nindent 4 }}\n';
    assert.equal(
      render(src, {
        labels: { b: '2', a: 'x' },
        t: [{ operator: 'Exists' }, { key: 'k', effect: 'NoSchedule' }],
      }),
      'metadata:\n  labels:\n    a: x\n    b: "2"\nspec:\n  tolerations:\n    - operator: Exists\n    - effect: NoSchedule\n      key: k\n',
    );
  });

  it('toYaml of empty collections and nesting', () => {
    assert.equal(toYaml({}), '{}');
    assert.equal(toYaml([]), '[]');
    assert.equal(toYaml({ z: { y: [1, 'a'], x: {} } }), 'z:\n  x: {}\n  y:\n  - 1\n  - a');
    // No folding of long strings.
    const long = 'x'.repeat(200);
    assert.equal(toYaml({ a: long }), `a: ${long}`);
  });

  it('nindent pads every line, empty ones too (as sprig does)', () => {
    assert.equal(render('{{ "a\\n\\nb" | nindent 2 }}'), '\n  a\n  \n  b');
  });

  it('if / else / end, nested, with not', () => {
    const src = '{{ if .Values.a }}A{{ if not .Values.b }}!b{{ else }}b{{ end }}{{ else }}no a{{ end }}';
    assert.equal(render(src, { a: true }), 'A!b');
    assert.equal(render(src, { a: 1, b: 'x' }), 'Ab');
    assert.equal(render(src, { a: false }), 'no a');
  });

  it('if: empty strings, zero, empty lists and maps, and missing keys are false', () => {
    for (const v of ['', 0, false, [], {}, null])
      assert.equal(render('{{ if .Values.v }}y{{ else }}n{{ end }}', { v }), 'n', JSON.stringify(v));
    assert.equal(render('{{ if .Values.v }}y{{ else }}n{{ end }}', {}), 'n');
    for (const v of ['x', 1, true, [0], { a: 1 }])
      assert.equal(render('{{ if .Values.v }}y{{ else }}n{{ end }}', { v }), 'y', JSON.stringify(v));
  });

  it('trim markers eat spaces and newlines on their side only', () => {
    const src = 'a:\n  {{- if .Values.on }}\n  b: 1\n  {{- end }}\nc: 2\n';
    assert.equal(render(src, { on: true }), 'a:\n  b: 1\nc: 2\n');
    assert.equal(render(src, { on: false }), 'a:\nc: 2\n');
    assert.equal(render('x  \n  {{- "y" -}}  \n  z'), 'xyz');
    // `{{-3}}` is the number -3, not a trim marker (Go's rule: the dash needs a space after it).
    assert.equal(render('a {{-3}}'), 'a -3');
  });

  it('comments render nothing, with or without trim markers, and may span lines', () => {
    assert.equal(render('a{{/* x }} */}}b'), 'ab');
    assert.equal(render('a\n{{- /* one\ntwo */ -}}\nb'), 'ab');
  });

  it('counts lines across multi-line comments and actions', () => {
    refuses('{{/*\n\n*/}}\n{{ .Values.x }}', {}, 4, '.Values.x', /not set/);
  });
});

describe('renderTemplate: anything outside the subset throws, naming file, line and expression', () => {
  const cases: [string, string, number, string, RegExp][] = [
    ['include', 'a\n{{ include "x" . }}', 2, 'include', /outside the subset/],
    ['range', '{{ range .Values.l }}{{ end }}', 1, 'range', /outside the subset/],
    ['with', '{{ with .Values.l }}{{ end }}', 1, 'with', /outside the subset/],
    ['a variable', '{{ $x := 1 }}', 1, '$x', /outside the subset/],
    ['parentheses', '{{ quote (default "a" .Values.x) }}', 1, 'quote', /outside the subset/],
    ['an unknown function', '{{ .Values.x | upper }}', 1, 'upper', /calls upper/],
    ['tpl', '{{ tpl .Values.x . }}', 1, 'tpl', /outside the subset/],
    ['else if', '{{ if .Values.a }}{{ else if .Values.b }}{{ end }}', 1, 'else if', /nested if/],
    ['a missing end', 'x\n{{ if .Values.a }}\ny', 2, 'if .Values.a', /no end/],
    ['a stray end', '{{ end }}', 1, 'end', /no if/],
    ['a stray else', '{{ else }}', 1, 'else', /no if/],
    ['a second else', '{{ if .Values.a }}{{ else }}{{ else }}{{ end }}', 1, 'else', /no if/],
    ['the root context', '{{ . }}', 1, '.', /outside the subset/],
    ['.Capabilities', '{{ .Capabilities.KubeVersion }}', 1, '.Capabilities', /outside the subset/],
    [
      'an unknown .Release field',
      '{{ .Release.Service }}',
      1,
      '.Release.Service',
      /\.Release\.\{Name,Namespace\}/,
    ],
    ['a missing value printed', 'a: 1\nb: {{ .Values.nope }}', 2, '.Values.nope', /not set/],
    ['a path through a missing map', '{{ .Values.q.b }}', 1, '.Values.q.b', /\.Values\.q is not set/],
    ['a path through a string', '{{ .Values.a.b }}', 1, '.Values.a.b', /not a map/],
    ['a map printed', '{{ .Values.m }}', 1, '.Values.m', /toYaml/],
    ['a list printed', '{{ .Values.l }}', 1, '.Values.l', /toYaml/],
    ['a number Helm prints as 1e+06', '{{ .Values.big }}', 1, '.Values.big', /exponent form/],
    ['quote of a missing value', '{{ .Values.nope | quote }}', 1, 'quote', /not set/],
    ['toYaml of a missing value', '{{ toYaml .Values.nope }}', 1, 'toYaml', /not set/],
    ['nindent of a map', '{{ .Values.m | nindent 2 }}', 1, 'nindent', /string/],
    ['nindent with no width', '{{ .Values.s | nindent }}', 1, 'nindent', /1 arguments; it takes 2/],
    ['quote with two arguments', '{{ quote "a" "b" }}', 1, 'quote', /2 arguments/],
    ['two values in one command', '{{ .Values.s .Values.s }}', 1, '.Values.s', /function belongs/],
    ['an unterminated action', 'a\nb {{ .Values.s', 2, '.Values.s', /no closing/],
    ['an unterminated comment', '{{/* x', 1, '/*', /never ends/],
    ['a comment not closed before }}', '{{/* x */ y }}', 1, '/*', /does not end with \*\//],
    ['an empty pipe stage', '{{ .Values.s | }}', 1, '|', /empty command/],
    ['single-quoted text', "{{ 'a' }}", 1, "'a'", /outside the subset/],
  ];
  const values = { a: 'str', s: 'x', m: { k: 1 }, l: [1], big: 1_000_000 };
  for (const [name, src, line, expr, why] of cases) it(name, () => refuses(src, values, line, expr, why));
});

describe('isEmpty', () => {
  it('is sprig empty for YAML values', () => {
    for (const v of [undefined, null, '', 0, false, [], {}])
      assert.equal(isEmpty(v), true, JSON.stringify(v));
    for (const v of [' ', 1, -1, true, [null], { a: undefined }, '0', 'false'])
      assert.equal(isEmpty(v), false, JSON.stringify(v));
  });
});

describe('mergeValues (helm install -f)', () => {
  it('merges maps key by key, replaces lists and scalars, deletes on null, changes neither input', () => {
    const base = { a: { b: 1, c: { d: 2, e: 3 } }, l: [1, 2], s: 'x', gone: { k: 1 } };
    const over = { a: { c: { d: 20 }, f: 4 }, l: [9], s: 'y', gone: null, n: { m: 1 } };
    const copyBase = structuredClone(base);
    const copyOver = structuredClone(over);
    assert.deepEqual(mergeValues(base, over), {
      a: { b: 1, c: { d: 20, e: 3 }, f: 4 },
      l: [9],
      s: 'y',
      n: { m: 1 },
    });
    assert.deepEqual(base, copyBase);
    assert.deepEqual(over, copyOver);
  });
  it('a scalar over a map replaces it, and a map over a scalar', () => {
    assert.deepEqual(mergeValues({ a: { b: 1 } }, { a: 'x' }), { a: 'x' });
    assert.deepEqual(mergeValues({ a: 'x' }, { a: { b: 1 } }), { a: { b: 1 } });
  });
});

describe('renderChart', () => {
  const chart = (templates: Record<string, string>, values: Record<string, unknown> = {}): ChartSource => ({
    name: 'c',
    version: '1.0.0',
    appVersion: '2.0.0',
    values,
    templates,
  });
  const obj = (kind: string, name: string) => `apiVersion: v1\nkind: ${kind}\nmetadata:\n  name: ${name}\n`;

  it('splits documents, drops empty ones and comment-only ones, and sorts in Helm install order', () => {
    const c = chart({
      'a.yaml': `${obj('Deployment', 'd')}---\n${obj('Service', 's')}---\n\n---\n# only a comment\n`,
      'b.yaml': `{{- if .Values.on }}\n${obj('ServiceAccount', 'z')}---\n${obj('ServiceAccount', 'y')}{{- end }}`,
      'c.yaml': `${obj('ValidatingWebhookConfiguration', 'v')}---\n${obj('APIService', 'api')}---\n${obj('MutatingWebhookConfiguration', 'm')}`,
      '_helpers.tpl': '{{ include "not rendered" . }}',
      'NOTES.txt': '{{ not rendered either }}',
    });
    const ms = renderChart(c, { releaseName: 'r', namespace: 'n', values: { on: true } });
    assert.deepEqual(
      ms.map((m) => `${m.object.kind}/${m.object.metadata.name} ${m.source}`),
      [
        'ServiceAccount/z c/templates/b.yaml',
        'ServiceAccount/y c/templates/b.yaml',
        'Service/s c/templates/a.yaml',
        'Deployment/d c/templates/a.yaml',
        'APIService/api c/templates/c.yaml',
        'MutatingWebhookConfiguration/m c/templates/c.yaml',
        'ValidatingWebhookConfiguration/v c/templates/c.yaml',
      ],
    );
    assert.equal(renderChart(c, { releaseName: 'r', namespace: 'n' }).length, 5);
  });

  it('user values merge over the chart values', () => {
    const c = chart(
      {
        'a.yaml':
          'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.a.name }}-{{ .Values.a.suffix }}\n',
      },
      { a: { name: 'x', suffix: 's' } },
    );
    assert.equal(
      renderChart(c, { releaseName: 'r', namespace: 'n', values: { a: { name: 'y' } } })[0]?.object.metadata
        .name,
      'y-s',
    );
  });

  it('refuses a document without kind, or one that is not YAML, naming the template', () => {
    assert.throws(
      () =>
        renderChart(chart({ 'x.yaml': 'apiVersion: v1\nmetadata:\n  name: a\n' }), {
          releaseName: 'r',
          namespace: 'n',
        }),
      /c\/templates\/x\.yaml rendered an object without apiVersion, kind or metadata\.name/,
    );
    assert.throws(
      () => renderChart(chart({ 'x.yaml': 'a: [1\n' }), { releaseName: 'r', namespace: 'n' }),
      /c\/templates\/x\.yaml rendered a document that is not YAML/,
    );
  });

  it('a template error names the chart path of the template', () => {
    assert.throws(
      () => renderChart(chart({ 'x.yaml': '\n\n{{ .Values.x }}' }), { releaseName: 'r', namespace: 'n' }),
      /^TemplateError: c\/templates\/x\.yaml:3: \{\{ \.Values\.x \}\} prints a value that is not set/,
    );
  });
});
