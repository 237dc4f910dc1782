// A fd table shared by several tasks (CLONE_FILES) at plan level: load.ts finds the table and
// its owner, refuses sharing that fork cannot make (siblings, not parent and child), and the
// tasks of one table pick disjoint restorer fd numbers (barrier pre-opens, spare fds) that avoid
// every fd of the table. The round trip itself is in test/shared-clone.ts.
import t from 'tap';
import type { Checkpoint, FdinfoEntry } from '../src/images/index.js';
import { StageError } from '../src/errors.js';
import { preopenNumbers } from '../src/resources/barrier.js';
import { spareFds } from '../src/resources/shared-fds.js';
import type { TaskImageSet } from '../src/restore/context.js';
import { sharedFdTable } from '../src/restore/load.js';

type Task = { pid: number; ppid: number; files: number; zombie?: boolean };

/** Just what sharedFdTable reads of a checkpoint: the tree, zombie states and files ids. */
function fakeCheckpoint(tasks: Task[]): Checkpoint {
  return {
    tasks: tasks.map((task) => ({ pid: task.pid, ppid: task.ppid, pgid: task.pid, sid: task.pid, threads: [task.pid] })),
    isZombie: (pid: number) => Boolean(tasks.find((task) => task.pid === pid)?.zombie),
    ids: (pid: number) => ({ vm_id: pid, files_id: tasks.find((task) => task.pid === pid)!.files, fs_id: pid, sighand_id: pid }),
  } as unknown as Checkpoint;
}

const fds = [0, 1, 2, 5].map((fd) => ({ fd, id: fd + 10, type: 1, flags: 0 }) as FdinfoEntry);

t.test('parent and child sharing one table: the parent owns it, slots in tree order', async (t) => {
  const cp = fakeCheckpoint([
    { pid: 10, ppid: 0, files: 1 },
    { pid: 11, ppid: 10, files: 1 },
    { pid: 12, ppid: 10, files: 2 },
  ]);
  t.same(sharedFdTable(cp, 10, 1, fds), { owner: 10, slot: 0, size: 2, fds });
  t.same(sharedFdTable(cp, 11, 1, fds), { owner: 10, slot: 1, size: 2, fds });
  t.equal(sharedFdTable(cp, 12, 2, fds), undefined, 'a table of its own is not shared');
});

t.test('a grandchild sharing through its parent is fine; a zombie holds no table', async (t) => {
  const cp = fakeCheckpoint([
    { pid: 10, ppid: 0, files: 1 },
    { pid: 11, ppid: 10, files: 1 },
    { pid: 12, ppid: 11, files: 1 },
    { pid: 13, ppid: 10, files: 3, zombie: true },
  ]);
  t.same(sharedFdTable(cp, 12, 1, fds), { owner: 10, slot: 2, size: 3, fds });
});

t.test('siblings sharing a table their parent does not hold: refused with a StageError', async (t) => {
  const cp = fakeCheckpoint([
    { pid: 10, ppid: 0, files: 1 },
    { pid: 11, ppid: 10, files: 2 },
    { pid: 12, ppid: 10, files: 2 },
  ]);
  let caught: unknown;
  try {
    sharedFdTable(cp, 11, 2, fds);
  } catch (err) {
    caught = err;
  }
  t.ok(caught instanceof StageError, 'a StageError');
  t.match((caught as Error | undefined)?.message, /tasks 11 and 12 share one fd table \(CLONE_FILES\).*not supported/);
});

t.test('pre-open numbers of two sharers are disjoint and avoid the table fds', async (t) => {
  const used = new Set([999, 997, 5]);
  const a = preopenNumbers(6, used, 1024n, { slot: 0, size: 2 });
  const b = preopenNumbers(6, used, 1024n, { slot: 1, size: 2 });
  t.same(a, [995, 993, 991, 989, 987, 985], 'slot 0: odd numbers down from 999, past 999 and 997');
  t.same(b, [998, 996, 994, 992, 990, 988], 'slot 1: even numbers down from 998');
  t.same(preopenNumbers(3, used, 1024n), [998, 996, 995], 'alone: every number');
});

t.test('spare fds of two sharers are disjoint and avoid every fd of the table', async (t) => {
  const tableFds = [...fds, { fd: 990, id: 99, type: 1, flags: 0 } as FdinfoEntry];
  const owner = { images: { fds: tableFds, fdTable: { owner: 10, slot: 0, size: 2, fds: tableFds } } as unknown as TaskImageSet };
  const sharer = { images: { fds: [], fdTable: { owner: 10, slot: 1, size: 2, fds: tableFds } } as unknown as TaskImageSet };
  const mine = spareFds(owner, 4);
  const theirs = spareFds(sharer, 4);
  t.same(mine, [988, 986, 984, 982], 'the owner skips the table fd 990');
  t.same(theirs, [989, 987, 985, 983]);
  t.notOk(mine.some((fd) => theirs.includes(fd)), 'no number picked twice');
});
