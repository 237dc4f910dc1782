// The CLI front door: usage, unknown commands, exit codes.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const crr = fileURLToPath(new URL('../bin/crr.js', import.meta.url));

t.test('no command prints usage and exits 2', async (t) => {
  const r = spawnSync(process.execPath, [crr], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stdout, /usage: crr <command>/);
});

t.test('unknown command is a one-line error with exit 2', async (t) => {
  const r = spawnSync(process.execPath, [crr, 'frobnicate'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.equal(r.stderr.trim().split('\n').length, 1);
  t.match(r.stderr, /unknown command 'frobnicate'/);
});
