// The planner: stages in their fixed order, `after` edges within a stage, and a PlanError naming
// the kinds for a cycle, a missing prerequisite, a later-stage prerequisite or a duplicate name;
// task-tree checks; the renderings carry every kind and shared object.
import t from 'tap';
import { PlanError, orderKinds, type Orderable } from '../src/plan/order.js';
import { buildPlan } from '../src/plan/plan.js';
import { renderPlan, planJson } from '../src/plan/render.js';
import { STAGES, type ResourceKind, type TaskPlan } from '../src/resources/types.js';

const kind = (name: string, stage: Orderable['stage'], after?: string[]): Orderable => ({ name, stage, after });
const resources = (order: ReturnType<typeof orderKinds>, stage: string) => order.stages.find((s) => s.stage === stage)!.resources;

t.test('stages come out in the fixed order, every stage listed', async (t) => {
  const order = orderKinds([kind('regs', 'resume'), kind('tree', 'fork'), kind('vma', 'memory')]);
  t.same(order.stages.map((s) => s.stage), [...STAGES]);
  t.same(resources(order, 'fork'), ['tree']);
  t.same(resources(order, 'memory'), ['vma']);
  t.same(resources(order, 'resume'), ['regs']);
  t.same(resources(order, 'barrier'), []);
});

t.test('after edges order kinds within a stage; ties keep registry order', async (t) => {
  const order = orderKinds([
    kind('seccomp', 'finish', ['creds', 'rseq']),
    kind('creds', 'finish'),
    kind('timers', 'finish'),
    kind('rseq', 'finish', ['timers']),
    kind('pages', 'memory', ['vmas']),
    kind('vmas', 'memory'),
  ]);
  t.same(resources(order, 'finish'), ['creds', 'timers', 'rseq', 'seccomp']);
  t.same(resources(order, 'memory'), ['vmas', 'pages']);
  t.same(order.edges, [
    { from: 'creds', to: 'seccomp' },
    { from: 'rseq', to: 'seccomp' },
    { from: 'timers', to: 'rseq' },
    { from: 'vmas', to: 'pages' },
  ]);
});

t.test('an after pointing to an earlier stage is satisfied by stage order', async (t) => {
  const order = orderKinds([kind('sigact', 'task-state', ['tree']), kind('tree', 'fork')]);
  t.same(resources(order, 'task-state'), ['sigact']);
  t.same(order.edges, [{ from: 'tree', to: 'sigact' }]);
});

function planError(fn: () => unknown): PlanError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PlanError) return err;
    throw err;
  }
  throw new Error('expected a PlanError');
}

t.test('a cycle is an error naming every kind in it, in run order', async (t) => {
  const err = planError(() =>
    orderKinds([kind('ok', 'memory'), kind('a', 'memory', ['c']), kind('b', 'memory', ['a']), kind('c', 'memory', ['b', 'ok'])]),
  );
  t.equal(err.reason, 'cycle');
  t.same([...err.kinds].sort(), ['a', 'b', 'c']);
  t.match(err.message, /cycle/);
  for (const name of ['a', 'b', 'c']) t.match(err.message, new RegExp(`\\b${name}\\b`));
  t.notMatch(err.message, /\bok\b/, 'kinds outside the cycle are not blamed');
  t.equal(err.exitCode, 1);
});

t.test('a self-dependency is a cycle of one', async (t) => {
  const err = planError(() => orderKinds([kind('loop', 'fork', ['loop'])]));
  t.equal(err.reason, 'cycle');
  t.same(err.kinds, ['loop']);
});

t.test('a missing prerequisite names both kinds', async (t) => {
  const err = planError(() => orderKinds([kind('pipe', 'shared-fds', ['fdtable'])]));
  t.equal(err.reason, 'missing');
  t.same(err.kinds, ['pipe', 'fdtable']);
  t.match(err.message, /'pipe' needs 'fdtable', which is not registered/);
});

t.test('a prerequisite in a later stage is an error naming both kinds and stages', async (t) => {
  const err = planError(() => orderKinds([kind('sigact', 'task-state', ['vmas']), kind('vmas', 'memory')]));
  t.equal(err.reason, 'later-stage');
  t.same(err.kinds, ['sigact', 'vmas']);
  t.match(err.message, /task-state/);
  t.match(err.message, /later stage memory/);
});

t.test('duplicate names and unknown stages are errors', async (t) => {
  t.equal(planError(() => orderKinds([kind('x', 'fork'), kind('x', 'memory')])).reason, 'duplicate');
  const bad = { name: 'y', stage: 'teleport' } as unknown as Orderable;
  const err = planError(() => orderKinds([bad]));
  t.equal(err.reason, 'unknown-stage');
  t.same(err.kinds, ['y']);
});

const task = (pid: number, ppid: number, extra: Partial<TaskPlan> = {}): TaskPlan => ({ pid, ppid, pgid: 1, sid: 1, threads: [pid], ...extra });

t.test('buildPlan: per-task kinds, descriptions, shared objects, renderings', async (t) => {
  const tasks = [task(1, 0), task(2, 1), task(3, 1, { zombie: true })];
  const registry: ResourceKind[] = [
    { name: 'tree', stage: 'fork', images: ['pstree'], restore: async () => {}, describe: (x) => [`fork pid ${x.pid}`] },
    { name: 'vmas', stage: 'memory', images: ['mm-*'], appliesTo: (x) => !x.zombie, restore: async () => {} },
    {
      name: 'pipe',
      stage: 'shared-fds',
      images: ['pipes'],
      after: ['tree'],
      restore: async () => {},
      sharedObjects: () => [{ kind: 'pipe', id: 'pipe:[1234]', creator: 1, receivers: [2] }],
    },
  ];
  const plan = buildPlan(registry, tasks);
  t.same(plan.perTask.get(1)!.get('memory'), ['vmas']);
  t.same(plan.perTask.get(3)!.get('memory'), [], 'appliesTo leaves the zombie out of memory');
  t.same(plan.sharedObjects, [{ kind: 'pipe', id: 'pipe:[1234]', creator: 1, receivers: [2] }]);
  const text = renderPlan(plan, 'text');
  t.match(text, /fork\s+tree/);
  t.match(text, /tree: fork pid 2/);
  t.match(text, /pipe pipe:\[1234\]: created by 1, received by 2/);
  const json = JSON.parse(renderPlan(plan, 'json')) as ReturnType<typeof planJson> & { sharedObjects: unknown[]; perTask: Record<string, unknown> };
  t.same(json.sharedObjects, plan.sharedObjects);
  t.same(json.perTask['3'], { fork: ['tree'], 'shared-fds': ['pipe'] });
  const mermaid = renderPlan(plan, 'mermaid');
  t.match(mermaid, /^flowchart LR/);
  t.match(mermaid, /kind_tree --> kind_pipe/);
  t.match(mermaid, /task_1\(\["task 1"\]\) -- creates --> shared_0/);
  const dot = renderPlan(plan, 'dot');
  t.match(dot, /^digraph plan \{/);
  t.match(dot, /kind_tree -> kind_pipe;/);
  t.match(dot, /shared_0 -> task_2 \[label="received by"\]/);
});

t.test('buildPlan refuses a task list that is not one tree', async (t) => {
  t.throws(() => buildPlan([], []), { reason: 'task-tree', message: /no tasks/ });
  t.throws(() => buildPlan([], [task(1, 0), task(1, 0)]), { reason: 'task-tree', message: /twice/ });
  t.throws(() => buildPlan([], [task(1, 0), task(2, 0)]), { reason: 'task-tree', message: /2 roots/ });
  t.throws(() => buildPlan([], [task(1, 0), task(2, 3), task(3, 2)]), { reason: 'task-tree' });
  t.doesNotThrow(() => buildPlan([], [task(10, 1), task(11, 10)]), 'a root whose parent is outside the tree is fine');
});

t.test('buildPlan: kinds of one fd type act only for tasks holding one, when the decoded images are there', async (t) => {
  const { pipe } = await import('../src/resources/pipe.js');
  const { eventfd } = await import('../src/resources/eventfd.js');
  const { timers } = await import('../src/resources/timers.js');
  const { holdsFdOfType } = await import('../src/resources/shared-fds.js');
  const tasks = [task(1, 0), task(2, 1), task(3, 1, { zombie: true })];
  const images = new Map<number, unknown>([
    [1, { fds: [{ fd: 3, type: 2, id: 7, flags: 0 }], core: { tc: {} } }],
    [2, { fds: [{ fd: 0, type: 1, id: 8, flags: 0 }], core: { tc: { timers: { real: { isec: 0, iusec: 0, vsec: 5, vusec: 0 } } } } }],
  ]);
  const source = { checkpoint: undefined, images };
  const piped: ResourceKind = { name: 'piped', stage: 'shared-fds', images: [], appliesTo: holdsFdOfType(2), restore: async () => {} };
  const plan = buildPlan([piped], tasks, source);
  t.same([1, 2, 3].map((pid) => plan.perTask.get(pid)!.get('shared-fds')), [['piped'], [], []], 'the planner passes the images: only the holder gets it');
  t.same(buildPlan([piped], tasks).perTask.get(2)!.get('shared-fds'), ['piped'], 'without images every live task gets it');
  t.ok(pipe.appliesTo!(tasks[0]!, source), 'pipe: the task with a pipe fd');
  t.notOk(pipe.appliesTo!(tasks[1]!, source), 'pipe: not the task without one');
  t.notOk(eventfd.appliesTo!(tasks[0]!, source), 'eventfd: not a task holding only a pipe');
  t.notOk(timers.appliesTo!(tasks[0]!, source), 'timers: not a task with no armed timer');
  t.ok(timers.appliesTo!(tasks[1]!, source), 'timers: a task with an armed itimer');
  t.ok(timers.appliesTo!(tasks[1]!) && pipe.appliesTo!(tasks[1]!), 'without images: every live task');
});
