/**
 * @module test/docs/guide
 * Reads docs/GUIDE.md into runnable steps, and compares what a command printed with what the guide
 * says it prints. Pure functions; test/docs/guide.test.ts runs the steps.
 *
 * A runnable block is a ```sh fence right after a `<!-- guide-test: ENV [daemons] -->` comment (ENV is
 * `embedded` or `kube`). Inside a block, a *step* is a run of command lines; the `# ` lines right
 * after it are its expected output (`#` alone is an empty line); a blank line ends a step. Comment
 * lines that do not follow a command (after a blank line, or at the top) are prose for the reader.
 * An expected output whose last line is `# (exit status N)` expects that status; otherwise 0.
 * In a `daemons` block every command line is a long-running process (agent, controller).
 */

export interface Step {
  /** 1-based line of the step's first command line in the guide. */
  line: number;
  command: string;
  /** Expected output lines (without the `# `), undefined when the guide shows none. */
  expected?: { line: number; text: string }[];
  exitStatus: number;
}

export interface Block {
  env: string;
  daemons: boolean;
  line: number;
  steps: Step[];
}

const MARKER = /^<!--\s*guide-test:\s*(\S+)(\s+daemons)?\s*-->\s*$/;
const EXIT = /^\(exit status (\d+)\)$/;

/** Every runnable block of the guide, in order. */
export function parseGuide(text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = MARKER.exec(lines[i]!);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j]!.trim() === '') j++;
    if (lines[j]?.trim() !== '```sh')
      throw new Error(`GUIDE.md:${i + 1}: a guide-test marker must be followed by a \`\`\`sh block`);
    const start = j + 1;
    let end = start;
    while (end < lines.length && lines[end]!.trim() !== '```') end++;
    blocks.push({
      env: m[1]!,
      daemons: !!m[2],
      line: start,
      steps: parseSteps(lines.slice(start, end), start + 1),
    });
    i = end;
  }
  return blocks;
}

function parseSteps(lines: string[], firstLine: number): Step[] {
  const steps: Step[] = [];
  let cur: Step | undefined;
  let inHeredoc: string | undefined;
  for (const [k, raw] of lines.entries()) {
    const lineNo = firstLine + k;
    if (inHeredoc !== undefined) {
      cur!.command += `\n${raw}`;
      if (raw.trim() === inHeredoc) inHeredoc = undefined;
      continue;
    }
    if (raw.trim() === '') {
      cur = undefined;
      continue;
    }
    if (raw.startsWith('#')) {
      if (!cur) continue; // prose
      const text = raw === '#' ? '' : raw.startsWith('# ') ? raw.slice(2) : raw.slice(1);
      const x = EXIT.exec(text.trim());
      if (x) cur.exitStatus = Number(x[1]);
      else (cur.expected ??= []).push({ line: lineNo, text });
      continue;
    }
    if (cur && cur.expected === undefined && cur.exitStatus === 0) {
      cur.command += `\n${raw}`;
    } else {
      cur = { line: lineNo, command: raw, exitStatus: 0 };
      steps.push(cur);
    }
    const h = /<<-?\s*'?"?(\w+)'?"?/.exec(raw);
    if (h) inHeredoc = h[1];
  }
  return steps;
}

/**
 * What may legitimately differ between the guide and a run, replaced by a placeholder: ages,
 * timestamps, uids, container ids, the random suffixes of Deployment and ReplicaSet pod names, and
 * column widths (runs of spaces).
 */
export function normalize(line: string): string {
  return line
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uid>')
    .replace(/\b[0-9a-f]{64}\b/g, '<container>')
    .replace(
      /\b([a-z0-9-]+)-[bcdfghjklmnpqrstvwxz2-9]{8,10}-[bcdfghjklmnpqrstvwxz2-9]{5}\b/g,
      '$1-<hash>-<id>',
    )
    .replace(/(?<=\s|^)(\d+d)?(\d+h)?(\d+m)?(\d+s)?(?=\s|$)/g, (m) => (m === '' ? m : '<age>'))
    .replace(/<invalid>/g, '<age>')
    .replace(/\b\d+\.\d+m?s\b/g, '<duration>')
    .replace(/\s+/g, ' ')
    .trim();
}

/** True when a line names a pod with a random suffix (its place in a sorted list varies). */
const randomName = (line: string): boolean => line.includes('-<hash>-<id>');

/**
 * Compares the expected lines with the output. Lines naming random pod names are compared as a set
 * (their sort order follows the random suffix). Returns undefined when they match, else a message
 * naming the first guide line that differs.
 */
export function compareOutput(
  expected: { line: number; text: string }[],
  output: string,
): string | undefined {
  const actual = output.replace(/\n$/, '').split('\n').map(normalize);
  const want = expected.map((e) => ({ line: e.line, text: normalize(e.text) }));
  if (actual.length === 1 && actual[0] === '' && want.length === 0) return undefined;
  const rest = (xs: string[]) => xs.filter(randomName).sort();
  const sameSet = JSON.stringify(rest(actual)) === JSON.stringify(rest(want.map((w) => w.text)));
  let a = 0;
  for (const w of want) {
    if (sameSet && randomName(w.text)) {
      a++;
      continue;
    }
    while (a < actual.length && sameSet && randomName(actual[a]!)) a++;
    if (actual[a] !== w.text) {
      return `GUIDE.md:${w.line} expects\n    ${w.text}\n  but the command printed\n    ${actual[a] ?? '(nothing more)'}\n  full output:\n${output.replace(/^/gm, '    | ')}`;
    }
    a++;
  }
  while (a < actual.length && sameSet && randomName(actual[a]!)) a++;
  if (a < actual.length) {
    return `GUIDE.md:${want.at(-1)?.line ?? '?'}: the command printed more than the guide shows:\n    ${actual.slice(a).join('\n    ')}\n  full output:\n${output.replace(/^/gm, '    | ')}`;
  }
  if (!sameSet) {
    const got = new Set(actual.filter(randomName));
    const first =
      want.find((w) => randomName(w.text) && !got.has(w.text)) ?? want.find((w) => randomName(w.text));
    return `GUIDE.md:${first?.line ?? '?'} expects\n    ${first?.text}\n  but no such line was printed (pod names compared without their random suffix):\n    ${rest(actual).join('\n    ')}\n  full output:\n${output.replace(/^/gm, '    | ')}`;
  }
  return undefined;
}
