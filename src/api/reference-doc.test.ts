import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import Type from 'typebox';
import type { Command } from 'commander';
import { buildCli } from '../cli/main.ts';
import { KINDS } from './kinds.ts';
import { schemaOf } from './schemas.ts';
import { ANNOTATIONS } from './annotations.ts';
import { CONVERTERS } from './convert.ts';
import { parseManifests } from './manifests.ts';
import { validateObject } from './validate.ts';
import {
  FOREIGN_EXAMPLES,
  KIND_EXAMPLES,
  helpAfter,
  renderReferenceDoc,
  schemaFields,
} from './reference-doc.ts';

it('docs/REFERENCE.md is in step with the code (regenerate: node scripts/gen-docs.ts)', () => {
  const doc = readFileSync(new URL('../../docs/REFERENCE.md', import.meta.url), 'utf8');
  assert.ok(
    doc === renderReferenceDoc(buildCli()),
    'docs/REFERENCE.md differs from what the code generates: run `node scripts/gen-docs.ts` and commit docs/REFERENCE.md',
  );
});

describe('the reference', () => {
  const doc = renderReferenceDoc(buildCli());

  it('has a section and a field table for every kind, and every field of its schema', () => {
    for (const info of Object.values(KINDS)) {
      assert.match(doc, new RegExp(`^### ${info.kind}$`, 'm'), info.kind);
      for (const f of schemaFields(schemaOf(info), info))
        assert.ok(doc.includes(`| \`${f.path}\` |`), `${info.kind} ${f.path}`);
    }
  });

  it('names every annotation and alias, every foreign kind, every command and option, and links ERRORS.md', () => {
    for (const a of Object.values(ANNOTATIONS)) {
      assert.match(doc, new RegExp(`^### ${a.name.replace(/\./g, '\\.')}$`, 'm'));
      for (const al of a.aliases) assert.ok(doc.includes(`\`${al.name}\``), al.name);
    }
    for (const key of Object.keys(CONVERTERS))
      assert.ok(doc.includes(`\`${key.slice(key.lastIndexOf('/') + 1)}\``), key);
    for (const c of buildCli().commands) {
      assert.match(doc, new RegExp(`^### ipkeeper ${c.name()}$`, 'm'));
      for (const o of c.options) assert.ok(doc.includes(`\`${o.flags}\``), `${c.name()} ${o.flags}`);
    }
    assert.match(doc, /\[ERRORS\.md\]\(ERRORS\.md\)/);
  });
});

it('every command shows examples in its --help (add .addHelpText("after", "\\nExamples:\\n  ..."))', () => {
  // A command group (`netconfig`) lists its subcommands; each subcommand shows the examples.
  const leaves = (c: Command, words: string[]): [string, Command][] =>
    c.commands.length === 0
      ? [[words.join(' '), c]]
      : c.commands.flatMap((s) => leaves(s, [...words, s.name()]));
  const without = buildCli()
    .commands.flatMap((c) => leaves(c, [c.name()]))
    .filter(([, c]) => !/^Examples?:\n {2}\S/m.test(helpAfter(c)))
    .map(([name]) => name);
  assert.deepEqual(without, []);
});

describe('the examples', () => {
  for (const [kind, text] of Object.entries(KIND_EXAMPLES)) {
    it(`${kind} is valid and of its kind`, () => {
      assert.ok(KINDS[kind]?.userApplied, `${kind} is not a user-applied kind`);
      const docs = parseManifests(text, `KIND_EXAMPLES.${kind}`);
      assert.equal(docs.length, 1);
      const o = validateObject(docs[0]?.object);
      assert.equal(o.kind, kind);
    });
  }
  for (const [key, text] of Object.entries(FOREIGN_EXAMPLES)) {
    it(`${key} converts and is valid`, () => {
      assert.ok(CONVERTERS[key], `${key} is not converted by convert.ts (remove the example)`);
      const docs = parseManifests(text, key);
      assert.equal(docs.length, 1);
      assert.ok(docs[0]?.from?.startsWith(key.slice(key.lastIndexOf('/') + 1)));
      validateObject(docs[0]?.object);
    });
  }
  it('a wrong example would fail: validation refuses a broken one', () => {
    const broken = (KIND_EXAMPLES.IPPool as string).replace('vlan: 6', 'vlan: 5000');
    assert.throws(() => validateObject(parseManifests(broken)[0]?.object), /spec\.vlan/);
  });
});

describe('schemaFields', () => {
  it('walks nested objects, lists of objects and maps, with required and constraints', () => {
    const s = Type.Object({
      spec: Type.Object({
        a: Type.Integer({ minimum: 1, maximum: 9, description: 'an a' }),
        b: Type.Optional(Type.Array(Type.Object({ c: Type.String({ pattern: '^x$' }) }))),
        m: Type.Optional(Type.Record(Type.String(), Type.Object({ r: Type.Optional(Type.String()) }))),
        e: Type.Optional(Type.Union([Type.Literal('x'), Type.Literal('y')])),
      }),
    });
    assert.deepEqual(
      schemaFields(s).map((f) => [f.path, f.type, f.required, f.description, f.constraints]),
      [
        ['spec', 'object', true, '', ''],
        ['spec.a', 'integer', true, 'an a', 'min 1; max 9'],
        ['spec.b', 'object[]', false, '', ''],
        ['spec.b[].c', 'string', true, '', 'pattern `^x$`'],
        ['spec.m', 'map[string]object', false, '', ''],
        ['spec.m.*', 'object', false, '', ''],
        ['spec.m.*.r', 'string', false, '', ''],
        ['spec.e', 'string', false, '', 'one of `"x"`, `"y"`'],
      ],
    );
  });
});
