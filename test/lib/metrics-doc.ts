/**
 * @module test/lib/metrics-doc
 * Every ipkeeper metric a process serves is in the metrics table of docs/GUIDE.md ("### Metrics").
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const GUIDE = new URL('../../docs/GUIDE.md', import.meta.url);

/**
 * Asserts that each `ipkeeper_*` metric in `text` (Prometheus text, process metrics off) has a row
 * in the guide's table; returns the names found, so a caller can check it saw the ones it expects.
 */
export function assertMetricsDocumented(text: string): string[] {
  const guide = readFileSync(GUIDE, 'utf8');
  const table = guide.slice(guide.indexOf('### Metrics'));
  const names = [...text.matchAll(/^# HELP (ipkeeper_\w+) /gm)].map((m) => m[1]!);
  assert.ok(names.length > 0, 'no ipkeeper metric in the text');
  for (const name of names) {
    assert.match(
      table,
      new RegExp(`^\\| \`${name}[\`{]`, 'm'),
      `${name} has no row in docs/GUIDE.md's metrics table`,
    );
  }
  return names;
}
