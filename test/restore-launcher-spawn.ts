// The launcher started by the addon's posix_spawn (native/addon/spawn.cc), not child_process:
// it must look like a child_process child to the helper (Node's own child, nothing blocked or
// ignored: Node ignores SIGPIPE and an ignored signal survives exec) and, since libuv does not
// know it, crr itself must reap it: no zombie after discardLauncher().
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { discardLauncher, prestartLauncher } from '../src/restore/launcher.js';

function status(pid: number): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const [key, value] = line.split(':\t');
    if (key && value !== undefined) fields[key] = value.trim();
  }
  return fields;
}

/** A launcher started as restore() starts it, SIGKILLed by PID at teardown if a test left it. */
async function spawned(t: Tap.Test) {
  const early = prestartLauncher();
  const launcher = await early;
  const pid = launcher.hostPid;
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone: what the tests expect
    }
  });
  return { early, launcher, pid };
}

t.test('a spawned launcher answers, is our child with default signals, and is reaped', async (t) => {
  const { early, launcher, pid } = await spawned(t);
  const seen = status(pid);
  t.equal(Number(seen['PPid']), process.pid, 'Node is its parent');
  t.equal(seen['SigBlk'], '0000000000000000', 'no signal blocked');
  t.equal(seen['SigIgn'], '0000000000000000', 'no signal ignored (Node ignores SIGPIPE)');
  await launcher.identified;
  t.equal(launcher.pid, pid, 'its getpid answer came over the channel');
  const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  t.ok(environ.includes('GLIBC_TUNABLES=glibc.pthread.rseq=0'), 'rseq is off for it and every helper it forks');
  await discardLauncher(early);
  t.notOk(existsSync(`/proc/${pid}`), 'killed and reaped: no zombie left');
});

t.test('a launcher that exited on its own is reaped by discardLauncher', async (t) => {
  const { early, launcher, pid } = await spawned(t);
  await launcher.request('exit', { status: 0 }).catch(() => undefined);
  await launcher.exited;
  t.ok(existsSync(`/proc/${pid}`), 'exited but not reaped yet: a zombie only crr can reap');
  await discardLauncher(early);
  t.notOk(existsSync(`/proc/${pid}`), 'reaped');
});
