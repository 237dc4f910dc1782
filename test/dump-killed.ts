// A frozen task killed from outside the dump (what a stale-PID SIGKILL by another program does
// to a long tree dump): the dump fails naming that task and what happened to it, rather than
// with the /proc read or remote call that failed because of it, and leaves the rest of the tree
// running untraced with no checkpoint behind.
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump } from '../src/dump/index.js';
import { safe, startDetached } from './lib/detached.js';
import { CrrError } from '../src/errors.js';

t.test('a child killed while frozen: the error names it; the others are let go untouched', async (t) => {
  const root = await startDetached(['sh', '-c', '/usr/bin/sleep 1000 & /usr/bin/sleep 1000 & exec /usr/bin/sleep 1001']);
  await sleep(100);
  const kids = safe(`/proc/${root}/task/${root}/children`).trim().split(/\s+/).filter(Boolean).map(Number);
  t.teardown(async () => {
    for (const p of [root, ...kids]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await sleep(50);
  });
  t.equal(kids.length, 2, 'two children');
  const [first, child] = kids as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-killed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await dump({
    pid: root,
    imagesDir: dir,
    leaveRunning: true,
    // Pre-order: root, first, child. The child is frozen by then and killed when the first child
    // is done (not while a task is in a remote call: its parent's SIGCHLD would stop that call).
    onEvent: (e) => {
      if (e.type === 'task' && e.pid === first) process.kill(child, 'SIGKILL');
    },
  }).catch((e) => e);
  t.type(err, CrrError);
  t.match(err.message, new RegExp(`^pid ${child}: is (a zombie|gone): it was killed while frozen for the dump`), err.message);
  for (const pid of [root, first]) {
    const stat = safe(`/proc/${pid}/stat`).replace(/^.*\) /, '').split(' ')[0];
    t.not(stat, 't', `${pid} not left in tracing stop`);
    t.match(safe(`/proc/${pid}/status`), /TracerPid:\s+0\n/, `${pid} not left traced`);
  }
  t.notOk(existsSync(join(dir, 'inventory.img')), 'no inventory.img');
  t.same(readdirSync(dir), [], 'no partial images left');
});
