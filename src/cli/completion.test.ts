import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { buildCli } from './main.ts';
import { completionScript } from './completion.ts';

it('the bash completion lists every command, and the kinds after get', () => {
  const program = buildCli();
  const script = completionScript(program, 'bash');
  for (const c of program.commands) assert.ok(script.includes(c.name()), c.name());
  assert.match(script, /get\|delete\|describe\)/);
  assert.match(script, /ippool ippools/);
  // bash accepts it and completes `ipkeeper ge` to `get`.
  const r = spawnSync(
    'bash',
    ['-c', `${script}\nCOMP_WORDS=(ipkeeper ge); COMP_CWORD=1; _ipkeeper; echo "\${COMPREPLY[@]}"`],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'get');
  const k = spawnSync(
    'bash',
    ['-c', `${script}\nCOMP_WORDS=(ipkeeper get reser); COMP_CWORD=2; _ipkeeper; echo "\${COMPREPLY[@]}"`],
    { encoding: 'utf8' },
  );
  assert.equal(k.stdout.trim(), 'reservedip reservedips');
});

it('refuses a shell it cannot serve, naming it', () => {
  assert.throws(() => completionScript(buildCli(), 'fish'), /"fish" is not available; use bash or zsh/);
});
