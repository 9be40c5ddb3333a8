import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { IpamError } from '../errors.ts';
import {
  ANNOTATION_PREFIXES,
  ANNOTATIONS,
  OBJECT_KEYS,
  annotationNames,
  annotationValue,
  canonicalAnnotation,
  type AnnotationInfo,
} from './annotations.ts';

const SRC = new URL('..', import.meta.url).pathname;
const SELF = 'api/annotations.ts';
/** Generated documents built from the catalogue itself: what they quote proves nothing. */
const GENERATORS = new Set([SELF, 'api/reference-doc.ts']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** The text of every string and template literal of a file (comments are not literals). */
function literals(path: string, text = readFileSync(path, 'utf8')): string[] {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, false);
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isStringLiteralLike(n) || ts.isTemplateLiteralToken(n) || ts.isTemplateHead(n)) out.push(n.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const KEY_RE = new RegExp(
  `(?<![\\w./-])(?:${ANNOTATION_PREFIXES.map((p) => p.replace(/[./]/g, '\\$&')).join('|')})[A-Za-z0-9_.-]*[A-Za-z0-9_]`,
  'g',
);
/** `ipkeeper.io/v1alpha1`: an API version, not a key. */
const API_VERSION_RE = /\/v\d+((alpha|beta)\d+)?$/;

/** The annotation-like keys in the literals of one file's text. */
function keysIn(path: string, text?: string): string[] {
  return literals(path, text).flatMap((l) =>
    [...l.matchAll(KEY_RE)].map((m) => m[0]).filter((k) => !API_VERSION_RE.test(k)),
  );
}

/** Every annotation-like key the source reads, with the files that name it. */
function keysInSource(): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const f of sourceFiles(SRC)) {
    const rel = relative(SRC, f);
    if (GENERATORS.has(rel)) continue;
    for (const k of keysIn(f)) {
      let files = out.get(k);
      if (!files) out.set(k, (files = new Set()));
      files.add(rel);
    }
  }
  return out;
}

const entries = Object.values(ANNOTATIONS) as AnnotationInfo[];

describe('the annotation catalogue', () => {
  const found = keysInSource();
  const objectKeys = new Set(OBJECT_KEYS.map((k) => k.name));

  it('the scan finds keys in strings and templates, not in comments, API versions, CRD names or URLs', () => {
    const text = [
      '// ipkeeper.io/in-comment',
      '/** ovn.kubernetes.io/in-doc */',
      "const a = 'ipkeeper.io/new-thing';",
      'const b = `pod annotation ${a} ipam.spidernet.io/zzz: bad`;',
      'const c = "cni.projectcalico.org/ipAddrs";',
      "const d = ['ipkeeper.io/v1alpha1', 'keyvalues.ipkeeper.io', 'https://ipkeeper.io/docs', 'ipkeeper.io/'];",
    ].join('\n');
    assert.deepEqual(keysIn('x.ts', text), [
      'ipkeeper.io/new-thing',
      'ipam.spidernet.io/zzz',
      'cni.projectcalico.org/ipAddrs',
    ]);
    assert.equal(
      canonicalAnnotation('ipkeeper.io/new-thing'),
      undefined,
      'so such a key would fail the next test',
    );
  });

  it('holds every annotation the source names (add an entry to src/api/annotations.ts)', () => {
    assert.ok(found.size > 0, 'the scan found no keys at all: the scan is broken');
    const missing = [...found]
      .filter(([k]) => canonicalAnnotation(k) === undefined && !objectKeys.has(k))
      .map(([k, files]) => `${k} (in ${[...files].join(', ')})`);
    assert.deepEqual(
      missing,
      [],
      `not in ANNOTATIONS (as a name or alias) nor OBJECT_KEYS: ${missing.join('; ')}`,
    );
  });

  it("says which annotations are read: status 'implemented' exactly when the source names it", () => {
    const wrong = entries
      .filter((e) => {
        const read = [e.name, ...e.aliases.map((a) => a.name)].some((n) => found.has(n));
        return read !== (e.status === 'implemented');
      })
      .map(
        (e) =>
          `${e.name} is '${e.status}' but the source ${e.status === 'implemented' ? 'never names it' : 'reads it'}`,
      );
    assert.deepEqual(wrong, []);
  });

  it('has no name twice, every name under ipkeeper.io/, every alias under an accepted prefix', () => {
    const seen = new Set<string>();
    for (const e of entries) {
      assert.ok(e.name.startsWith('ipkeeper.io/'), e.name);
      assert.equal(ANNOTATIONS[e.name as keyof typeof ANNOTATIONS], e, `${e.name}: key and name differ`);
      for (const n of [e.name, ...e.aliases.map((a) => a.name)]) {
        assert.ok(!seen.has(n), `${n} appears twice`);
        seen.add(n);
        assert.ok(
          ANNOTATION_PREFIXES.some((p) => n.startsWith(p)),
          n,
        );
      }
      assert.ok(e.on.length > 0 && e.format && e.example && e.meaning && e.default && e.feature, e.name);
    }
  });

  it('covers the list in docs/DESIGN.md', () => {
    for (const short of [
      'ippool',
      'ippools',
      'subnet',
      'subnets',
      'ippool-ip-number',
      'ippool-reclaim',
      'ip-retention',
      'ip-address',
      'ip-list',
      'vip',
      'aaps',
      'default-route-nic',
      'default-ipv4-ippool',
      'default-ipv6-ippool',
    ]) {
      assert.ok(`ipkeeper.io/${short}` in ANNOTATIONS, short);
    }
    for (const alias of [
      'ovn.kubernetes.io/ip_address',
      'ovn.kubernetes.io/ip_pool',
      'ovn.kubernetes.io/vip',
      'ovn.kubernetes.io/aaps',
      'cni.projectcalico.org/ipAddrs',
    ]) {
      assert.ok(canonicalAnnotation(alias), alias);
    }
  });
});

describe('annotationValue', () => {
  const cases: {
    name: string;
    ann: Record<string, string> | undefined;
    of: keyof typeof ANNOTATIONS;
    want: { name: string; value: string; raw: string } | undefined;
  }[] = [
    { name: 'none', ann: undefined, of: 'ipkeeper.io/ippool', want: undefined },
    { name: 'absent', ann: { other: 'x' }, of: 'ipkeeper.io/ippool', want: undefined },
    {
      name: 'ours',
      ann: { 'ipkeeper.io/vip': 'v1' },
      of: 'ipkeeper.io/vip',
      want: { name: 'ipkeeper.io/vip', value: 'v1', raw: 'v1' },
    },
    {
      name: 'ours wins over an alias',
      ann: { 'ipam.spidernet.io/ippool': '{"ipv4":["s"]}', 'ipkeeper.io/ippool': '{"ipv4":["o"]}' },
      of: 'ipkeeper.io/ippool',
      want: { name: 'ipkeeper.io/ippool', value: '{"ipv4":["o"]}', raw: '{"ipv4":["o"]}' },
    },
    {
      name: 'Spiderpool alias',
      ann: { 'ipam.spidernet.io/ippool-ip-number': '+1' },
      of: 'ipkeeper.io/ippool-ip-number',
      want: { name: 'ipam.spidernet.io/ippool-ip-number', value: '+1', raw: '+1' },
    },
    {
      name: 'Kube-OVN before Calico, in catalogue order',
      ann: { 'cni.projectcalico.org/ipAddrs': '["10.0.0.2"]', 'ovn.kubernetes.io/ip_address': '10.0.0.1' },
      of: 'ipkeeper.io/ip-address',
      want: { name: 'ovn.kubernetes.io/ip_address', value: '10.0.0.1', raw: '10.0.0.1' },
    },
    {
      name: 'Calico list translated',
      ann: { 'cni.projectcalico.org/ipAddrs': '["10.0.0.5", "fd00::5"]' },
      of: 'ipkeeper.io/ip-address',
      want: {
        name: 'cni.projectcalico.org/ipAddrs',
        value: '10.0.0.5,fd00::5',
        raw: '["10.0.0.5", "fd00::5"]',
      },
    },
    {
      name: 'KCE fixed true is forever',
      ann: { 'k8s.ksyun.com/pod-ip-fixed': 'true' },
      of: 'ipkeeper.io/ip-retention',
      want: { name: 'k8s.ksyun.com/pod-ip-fixed', value: 'forever', raw: 'true' },
    },
    {
      name: 'KCE fixed false is 0',
      ann: { 'k8s.ksyun.com/pod-ip-fixed': 'false' },
      of: 'ipkeeper.io/ip-retention',
      want: { name: 'k8s.ksyun.com/pod-ip-fixed', value: '0', raw: 'false' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(annotationValue(c.ann, c.of), c.want));
  }

  it('refuses a malformed alias value, naming the alias and the form', () => {
    for (const [ann, of, re] of [
      [
        { 'cni.projectcalico.org/ipAddrs': '10.0.0.1' },
        'ipkeeper.io/ip-address',
        /cni\.projectcalico\.org\/ipAddrs: "10\.0\.0\.1" is not valid; expected a JSON list/,
      ],
      [
        { 'cni.projectcalico.org/ipAddrs': '[]' },
        'ipkeeper.io/ip-address',
        /expected a JSON list of addresses/,
      ],
      [
        { 'k8s.ksyun.com/pod-ip-fixed': 'yes' },
        'ipkeeper.io/ip-retention',
        /pod-ip-fixed: "yes" is not valid; expected "true" or "false"/,
      ],
    ] as const) {
      assert.throws(
        () => annotationValue(ann, of),
        (e: unknown) => e instanceof IpamError && e.code === 'INVALID_OBJECT' && re.test(e.message),
      );
    }
  });

  it('annotationNames lists ours first, then the aliases', () => {
    assert.deepEqual(annotationNames('ipkeeper.io/ip-address'), [
      'ipkeeper.io/ip-address',
      'ovn.kubernetes.io/ip_address',
      'cni.projectcalico.org/ipAddrs',
    ]);
    assert.equal(canonicalAnnotation('ipam.spidernet.io/subnets'), 'ipkeeper.io/subnets');
    assert.equal(canonicalAnnotation('ipkeeper.io/nope'), undefined);
  });
});
