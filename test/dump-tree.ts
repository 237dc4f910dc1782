// Dumps the `tree` program (20 processes, 3 sessions, several groups, a zombie, a grandchild
// chain) with --leave-running: pstree must agree with /proc for every task, the zombie must be
// a DEAD core with its wait status and nothing else, and the program must still pass after.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killTree, startProgram, requestCheck } from './lib/programs.js';
import { startDetached } from './lib/detached.js';
import { dump } from '../src/dump/index.js';
import { readImage } from '../src/images/reader.js';
import { tracerControl } from '../src/dump/tracer-control.js';
import type { TaskControl } from '../src/dump/control.js';

const img = (dir: string, name: string) => readImage(join(dir, name)).all() as any[];

function statOf(pid: number) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0]!, ppid: Number(f[1]), pgid: Number(f[2]), sid: Number(f[3]), exitCode: Number(f[49]) };
}

t.test('tree: pstree matches /proc, the zombie is a DEAD core, the program passes afterwards', async (t) => {
  const prog = await startProgram(t, 'tree');
  const pids = prog.tree();
  t.ok(pids.length >= 20, `20 or more processes (${pids.length})`);
  const before = new Map(pids.map((p) => [p, statOf(p)]));
  const zombies = pids.filter((p) => before.get(p)!.state === 'Z');
  t.equal(zombies.length, 1, 'one zombie in the tree');
  t.equal(new Set(pids.map((p) => before.get(p)!.sid)).size, 3, 'three sessions');

  const out = mkdtempSync(join(tmpdir(), 'crr-dump-tree-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const res = await dump({ pid: prog.pid, imagesDir: out, leaveRunning: true });
  t.same(res.pids.slice().sort(), pids.slice().sort(), 'every process dumped, the zombie included');

  const pstree = img(out, 'pstree.img');
  t.equal(pstree[0].pid, prog.pid, 'the root first');
  t.equal(pstree[0].ppid, 0, 'the root has no parent in the image');
  for (const e of pstree) {
    const b = before.get(e.pid)!;
    if (e.pid !== prog.pid) t.equal(e.ppid, b.ppid, `${e.pid}: ppid`);
    t.equal(e.pgid, b.pgid, `${e.pid}: pgid`);
    t.equal(e.sid, b.sid, `${e.pid}: sid`);
    // Pre-order: a parent comes before its children.
    if (e.ppid) t.ok(pstree.findIndex((p) => p.pid === e.ppid) < pstree.indexOf(e), `${e.pid}: after its parent`);
  }

  const z = zombies[0]!;
  const zcore = img(out, `core-${z}.img`)[0];
  t.equal(zcore.tc.task_state, 2, 'zombie core: task_state DEAD');
  t.equal(zcore.tc.exit_code, before.get(z)!.exitCode, 'zombie core: wait status from /proc');
  t.equal(zcore.tc.exit_code, 7 << 8, 'zombie exited with 7');
  t.notOk(zcore.thread_info, 'zombie core: no registers');
  t.same(pstree.find((e) => e.pid === z).threads, [z], 'zombie pstree entry: itself as its thread');
  for (const kind of ['mm', 'ids', 'fs', 'pagemap']) t.notOk(existsSync(join(out, `${kind}-${z}.img`)), `no ${kind} image for the zombie`);
  for (const p of pids.filter((p) => p !== z)) t.equal(img(out, `core-${p}.img`)[0].tc.task_state, 1, `${p}: alive`);

  // fd tables are not shared in this program: every task has its own files id and fdinfo.
  const filesIds = pids.filter((p) => p !== z).map((p) => img(out, `ids-${p}.img`)[0].files_id);
  t.equal(new Set(filesIds).size, filesIds.length, 'distinct files ids');
  // stdio is inherited from the root by every member: one files.img entry each, one id everywhere.
  const files = img(out, 'files.img');
  t.equal(new Set(files.map((f) => f.id)).size, files.length, 'files.img ids are unique');
  const rootFds = img(out, `fdinfo-${img(out, `ids-${prog.pid}.img`)[0].files_id}.img`);
  for (const p of pids.filter((p) => p !== z && p !== prog.pid)) {
    const fds = img(out, `fdinfo-${img(out, `ids-${p}.img`)[0].files_id}.img`);
    for (const fd of [0, 1, 2]) {
      t.equal(fds.find((f) => f.fd === fd)?.id, rootFds.find((f) => f.fd === fd)?.id, `${p}: fd ${fd} is the root's open file`);
    }
  }

  for (const p of pids) t.equal(statOf(p).state === 't', false, `${p}: not left stopped`);
  const check = await requestCheck(prog.pid, prog.resultFile);
  t.ok(check.pass, `tree still passes its own checks: ${check.text}`);
});

t.test("a dump that kills its tree returns once the tree's PIDs are free, so a restore can follow at once", async (t) => {
  // A program whose parent is init: on this machine kind init reaps about once a second.
  const pid = await startDetached(['/usr/bin/python3', '-c', 'import time\ntime.sleep(1000)']);
  t.teardown(() => killTree([pid]).catch(() => undefined));
  t.equal(Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]), 1, "its parent is init, not this test's process");
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-reap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await dump({ pid, imagesDir: join(dir, 'images') });
  t.notOk(existsSync(`/proc/${pid}`), 'its PID is free when dump() resolves');
});

t.test('a child that ends while the tree is being frozen is dumped as the zombie it became', async (t) => {
  const pid = await startDetached(['/usr/bin/python3', '-c', 'import os, time\nif os.fork() == 0:\n    time.sleep(1000)\ntime.sleep(1000)']);
  t.teardown(() => killTree([pid]).catch(() => undefined));
  const children = () => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  let child = 0;
  for (let i = 0; i < 200 && !child; i++) {
    child = children()[0] ?? 0;
    if (!child) await new Promise((r) => setTimeout(r, 10));
  }
  t.ok(child > 0, 'the child is there');
  // The child ends just as the dump seizes it (its parent, seized first, cannot reap it): the
  // kernel refuses to trace an exiting task (EPERM).
  const real = await tracerControl();
  const ctl = Object.create(real) as TaskControl;
  ctl.seize = async (tid) => {
    if (tid === child) {
      process.kill(child, 'SIGKILL');
      for (let i = 0; i < 200 && statOf(child).state !== 'Z'; i++) await new Promise((r) => setTimeout(r, 5));
    }
    return real.seize(tid);
  };
  const dir = mkdtempSync(join(tmpdir(), 'crr-dump-ending-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await dump({ pid, imagesDir: dir, leaveRunning: true, control: ctl });
  const core = img(dir, `core-${child}.img`)[0];
  t.equal(core.tc.task_state, 2, 'its core says DEAD');
  t.equal(core.tc.exit_code, 9, 'with the signal that ended it');
});
