// `crr check` (src/cli/commands/check.ts): as root on this machine every check passes, the round
// trip included, and no process is left behind; a bad option is a usage error.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/crr.js', import.meta.url));

function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

t.test('crr check --json: every check passes here, and the round trip leaves nothing running', async (t) => {
  const r = spawnSync(process.execPath, [bin, 'check', '--json'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; ok: boolean; detail: string }> };
  t.equal(out.ok, true);
  t.same(out.checks.filter((c) => !c.ok), [], 'no check failed');
  t.match(out.checks.find((c) => c.name === 'lazy pages')?.detail, /for restore --lazy-pages: userfaultfd with the fork, remap, remove and unmap events/, 'lazy pages: asked of crr-lazy-pages --check');
  const detail = out.checks.find((c) => c.name === 'dump and restore')?.detail ?? '';
  t.match(detail, /sleep \(pid \d+\) dumped and restored in a fresh PID namespace/);
  const pid = Number(/pid (\d+)/.exec(detail)?.[1]);
  t.notOk(alive(pid), `the dumped sleep (pid ${pid}) is gone`);
});

t.test('crr check: one line per check and a verdict; a bad option exits 2', async (t) => {
  const r = spawnSync(process.execPath, [bin, 'check'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^ok {4}CAP_SYS_PTRACE: /m);
  t.match(r.stdout, /crr can dump and restore here\n$/);
  const bad = spawnSync(process.execPath, [bin, 'check', '--bogus'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /crr check: unsupported option '--bogus'/);
});
