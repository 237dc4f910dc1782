// The restore machine's schedule book (src/machines/schedule.ts) on its own: parents fork before
// children, the busy limit holds, a task keeps its slot through a phase of several stages (it
// goes from stage to stage by itself), a phase is complete only when every task finished its
// last stage, and the cost per task stays flat as the tree grows.
import t from 'tap';
import { Schedule } from '../src/machines/schedule.js';
import type { TaskPlan } from '../src/resources/types.js';

const task = (pid: number, ppid: number): TaskPlan => ({ pid, ppid, pgid: 1, sid: 1, threads: [pid] });
// 1 -> 2 -> 3, 1 -> 4; children listed before their parents on purpose.
const TREE = [task(3, 2), task(4, 1), task(2, 1), task(1, 0)];

t.test('fork: only roots first, each child once its parent has forked', async (t) => {
  const s = new Schedule(TREE);
  t.same(s.take('fork', 16), [{ pid: 1, stage: 'fork' }]);
  t.same(s.take('fork', 16), [], 'nothing else may fork yet');
  s.finish(1, 'fork');
  t.same(s.take('fork', 16).map((x) => x.pid).sort(), [2, 4], 'the root children, in list order');
  t.notOk(s.complete('fork'));
  s.finish(4, 'fork');
  s.finish(2, 'fork');
  t.same(s.take('fork', 16), [{ pid: 3, stage: 'fork' }]);
  s.finish(3, 'fork');
  t.ok(s.complete('fork'));
});

t.test('the busy limit holds and a task keeps its slot through a phase of several stages', async (t) => {
  const s = new Schedule(TREE);
  for (const stage of ['fork', 'namespaces', 'shared-fds', 'task-state', 'barrier'] as const) {
    const phase = ({ fork: 'fork', namespaces: 'namespaces', 'shared-fds': 'sharedFds', 'task-state': 'taskState', barrier: 'barrier' } as const)[stage];
    while (!s.complete(phase)) for (const { pid } of s.take(phase, 16)) s.finish(pid, stage);
  }
  const first = s.take('memory', 2);
  t.same(first.map((x) => x.stage), ['memory', 'memory']);
  t.same(s.take('memory', 2), [], 'limit 2: nothing more while two are busy');
  const pid = first[0]!.pid;
  s.finish(pid, 'memory');
  t.same(s.take('memory', 2), [], 'a task half way through the phase keeps its slot (it goes on by itself)');
  t.equal(s.stagesDone(pid), 6);
  s.finish(pid, 'threads');
  t.same(s.take('memory', 2), [], 'still its slot after threads');
  s.finish(pid, 'finish');
  const next = s.take('memory', 2);
  t.equal(next.length, 1, 'the phase finished: its slot goes to a fresh task');
  t.equal(next[0]!.stage, 'memory', 'which enters the phase at its first stage');
  t.notOk(s.complete('memory'));
});

t.test('cost per task does not grow with the tree', async (t) => {
  // CPU time of this process, not wall time: a busy machine preempts the test, which wall time
  // would count as the schedule's cost. The best of several runs drops GC pauses.
  const cpuMsFor = (n: number) => {
    const tasks = Array.from({ length: n }, (_, i) => task(i + 1, i === 0 ? 0 : 1));
    const started = process.cpuUsage();
    const s = new Schedule(tasks);
    while (!s.complete('fork')) for (const { pid } of s.take('fork', 16)) s.finish(pid, 'fork');
    while (!s.complete('namespaces')) for (const { pid } of s.take('namespaces', 16)) s.finish(pid, 'namespaces');
    const used = process.cpuUsage(started);
    return (used.user + used.system) / 1000;
  };
  const best = (n: number) => Math.min(...Array.from({ length: 5 }, () => cpuMsFor(n)));
  best(2000); // warm up the JIT
  const small = best(2000);
  const large = best(16000);
  // Linear is 8x; the old quadratic book was about 64x.
  t.ok(large < small * 24, `16,000 tasks took ${large.toFixed(1)} ms of CPU, 2,000 took ${small.toFixed(1)} ms`);
});
