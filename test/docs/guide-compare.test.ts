/**
 * @module test/docs/guide-compare.test
 * The guide reader (test/docs/guide.ts): which lines are steps and which are expected output, and
 * that the comparison forgives only what varies from run to run (ages, timestamps, pod name suffixes,
 * column widths) — a changed address, count or message is a failure naming the guide line.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compareOutput, normalize, parseGuide } from './guide.ts';

const GUIDE = [
  '# Title',
  '',
  '<!-- guide-test: kube -->',
  '',
  '```sh',
  '# prose before a command is not output',
  'kubectl get pods -o wide',
  '# NAME                       READY   STATUS    RESTARTS   AGE   IP             NODE',
  '# test-app-8dbc96d74-x5ncx   1/1     Running   0          2s    10.6.168.131   worker-1',
  '# test-app-8dbc96d74-x7lcf   1/1     Running   0          2s    10.6.168.133   worker-1',
  '',
  'cat <<EOF | kubectl create -f -',
  '# not output: inside a heredoc',
  'EOF',
  '# pod/x created',
  '',
  'kubectl delete pod nope',
  '# Error from server (NotFound): pods "nope" not found',
  '# (exit status 1)',
  '```',
  '',
  '```sh',
  'not-marked',
  '```',
  '',
  '<!-- guide-test: kube daemons -->',
  '```sh',
  'ipkeeper agent --node a',
  'ipkeeper agent --node b',
  '```',
].join('\n');

const expected = (...lines: string[]) => lines.map((text, i) => ({ line: 100 + i, text }));

describe('parseGuide', () => {
  const blocks = parseGuide(GUIDE);

  it('finds only marked blocks, with their environment', () => {
    assert.deepEqual(
      blocks.map((b) => [b.env, b.daemons, b.steps.length]),
      [
        ['kube', false, 3],
        ['kube', true, 1],
      ],
    );
  });

  it('splits steps at blank lines; # lines after a command are its output, prose before it is not', () => {
    const [get, create, del] = blocks[0]!.steps;
    assert.equal(get!.command, 'kubectl get pods -o wide');
    assert.equal(get!.line, 7);
    assert.equal(get!.expected?.length, 3);
    assert.equal(get!.expected?.[0]?.line, 8);
    assert.equal(create!.command, 'cat <<EOF | kubectl create -f -\n# not output: inside a heredoc\nEOF');
    assert.deepEqual(
      create!.expected?.map((e) => e.text),
      ['pod/x created'],
    );
    assert.equal(del!.exitStatus, 1);
    assert.deepEqual(
      del!.expected?.map((e) => e.text),
      ['Error from server (NotFound): pods "nope" not found'],
    );
  });

  it('keeps the lines of a daemons block together', () => {
    assert.equal(blocks[1]!.steps[0]!.command, 'ipkeeper agent --node a\nipkeeper agent --node b');
  });

  it('refuses a marker without a sh block after it', () => {
    assert.throws(() => parseGuide('<!-- guide-test: kube -->\ntext\n'), /GUIDE\.md:1: a guide-test marker/);
  });
});

describe('compareOutput', () => {
  const want = expected(
    'NAME                       READY   STATUS    RESTARTS   AGE   IP             NODE',
    'test-app-8dbc96d74-x5ncx   1/1     Running   0          2s    10.6.168.131   worker-1',
    'test-app-8dbc96d74-x7lcf   1/1     Running   0          2s    10.6.168.133   worker-1',
  );

  it('forgives ages, pod name suffixes, their order and column widths', () => {
    const out = [
      'NAME                        READY   STATUS    RESTARTS   AGE     IP             NODE',
      'test-app-6f4594ff67-qrf8v   1/1     Running   0          3m10s   10.6.168.133   worker-1',
      'test-app-6f4594ff67-mzrxr   1/1     Running   0          41s     10.6.168.131   worker-1',
      '',
    ].join('\n');
    assert.equal(compareOutput(want, out), undefined);
  });

  it('fails on a different address, naming the guide line', () => {
    const out = [
      'NAME                       READY   STATUS    RESTARTS   AGE   IP             NODE',
      'test-app-8dbc96d74-x5ncx   1/1     Running   0          2s    10.6.168.132   worker-1',
      'test-app-8dbc96d74-x7lcf   1/1     Running   0          2s    10.6.168.133   worker-1',
    ].join('\n');
    assert.match(
      compareOutput(want, out) ?? '',
      /^GUIDE\.md:101 expects\n\s+test-app-<hash>-<id> 1\/1 Running 0 <age> 10\.6\.168\.131 worker-1\n/,
    );
  });

  it('fails on a missing or an extra line', () => {
    assert.match(
      compareOutput(expected('a', 'b'), 'a\n') ?? '',
      /GUIDE\.md:101 expects\n\s+b\n.*\n\s+\(nothing more\)/,
    );
    assert.match(
      compareOutput(expected('a'), 'a\nb\n') ?? '',
      /GUIDE\.md:100: the command printed more than the guide shows:\n\s+b/,
    );
  });

  it('fails on a changed message or count', () => {
    const msg =
      'pool "test-ippool" has no free address (3 addresses, 2 reserved by "test-reservedip", 1 in use)';
    assert.equal(compareOutput(expected(msg), `${msg}\n`), undefined);
    assert.match(
      compareOutput(expected(msg), `${msg.replace('2 reserved', '1 reserved')}\n`) ?? '',
      /GUIDE\.md:100 expects/,
    );
  });

  it('forgives timestamps, uids and durations, and nothing else on the line', () => {
    assert.equal(
      normalize('Created:     2026-11-23T19:20:31.564Z  uid 0b5f1c1e-9a6e-4c7e-8a53-2f3b9d1f0a11 in 0.1s'),
      'Created: <time> uid <uid> in <duration>',
    );
    assert.equal(normalize('RESTARTS 0 and 10.0.0.236'), 'RESTARTS 0 and 10.0.0.236');
    assert.equal(normalize('sts-0   1/1   Running   0   41s'), 'sts-0 1/1 Running 0 <age>');
  });
});
