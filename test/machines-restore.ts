// The restore machine with fake resources (no native code): stages in order, a stage starts only
// after every task finished the one before, fork respects parent-before-child, the concurrency
// limit holds, any failure or abort -> rollback -> failed with the error naming task, resource
// and stage, and timings are recorded.
import t from 'tap';
import { NativeError, StageError } from '../src/errors.js';
import { STAGES, stageIndex, type BaseTaskContext, type ResourceKind, type Stage, type TaskPlan } from '../src/resources/types.js';
import { runRestore, type RestoreEnvironment } from '../src/machines/run.js';
import { PHASES, PHASE_ORDER } from '../src/machines/stages.js';

// Fake resource kinds: each records when it starts and ends for which task and sleeps a little
// (varied, so tasks interleave); a hook may fail it.

export interface Mark {
  seq: number;
  pid: number;
  stage: Stage;
  resource: string;
  what: 'start' | 'end';
}

/** root 1 -> 2, 3; 2 -> 4, 5; 3 -> 6. Children listed before parents on purpose (fork must still respect the tree). */
export const TREE: TaskPlan[] = [
  { pid: 4, ppid: 2, pgid: 1, sid: 1, threads: [4] },
  { pid: 6, ppid: 3, pgid: 3, sid: 1, threads: [6, 7] },
  { pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1] },
  { pid: 2, ppid: 1, pgid: 1, sid: 1, threads: [2] },
  { pid: 5, ppid: 2, pgid: 1, sid: 1, threads: [5] },
  { pid: 3, ppid: 1, pgid: 3, sid: 1, threads: [3] },
];

export interface FakeWorld {
  marks: Mark[];
  rollbacks: Array<{ seq: number; started: number[] }>;
  env: RestoreEnvironment;
  /** Called when a resource starts; throw to fail it. */
  onStart?: (pid: number, stage: Stage, resource: string) => void;
  busyNow: number;
  maxBusy: Partial<Record<Stage, number>>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function fakeWorld(tasks: readonly TaskPlan[] = TREE): FakeWorld {
  let seq = 0;
  const world: FakeWorld = {
    marks: [],
    rollbacks: [],
    busyNow: 0,
    maxBusy: {},
    env: undefined as unknown as RestoreEnvironment,
  };
  const kind = (name: string, stage: Stage, after?: string[]): ResourceKind<BaseTaskContext> => ({
    name,
    stage,
    images: [],
    after,
    async restore(ctx) {
      world.marks.push({ seq: seq++, pid: ctx.pid, stage, resource: name, what: 'start' });
      world.busyNow += 1;
      world.maxBusy[stage] = Math.max(world.maxBusy[stage] ?? 0, world.busyNow);
      try {
        world.onStart?.(ctx.pid, stage, name);
        await sleep((ctx.pid * 7 + name.length) % 4);
      } finally {
        world.busyNow -= 1;
        world.marks.push({ seq: seq++, pid: ctx.pid, stage, resource: name, what: 'end' });
      }
    },
  });
  // Registered out of order: the planner must put creds-like 'b' after 'a' within task-state.
  const registry = [
    kind('task-state-b', 'task-state', ['task-state-a']),
    ...STAGES.map((stage) => kind(`fake-${stage}`, stage)),
    kind('task-state-a', 'task-state', ['fake-fork']),
  ];
  world.env = {
    registry,
    loadTasks: async () => tasks,
    contextFor: (base) => base,
    rollback: async (started) => {
      world.rollbacks.push({ seq: seq++, started: [...started] });
    },
  };
  return world;
}

export function nativeFailure(pid: number): NativeError {
  return new NativeError({ code: 'ESRCH', errno: 3, syscall: 'process_vm_writev', pid });
}

const phaseOf = (stage: Stage) => PHASE_ORDER.find((phase) => (PHASES[phase] as readonly Stage[]).includes(stage))!;
const ended = (world: FakeWorld) => world.marks.filter((m) => m.what === 'end');
const startedMarks = (world: FakeWorld) => world.marks.filter((m) => m.what === 'start');

t.test('a clean restore runs every stage for every task, in order', async (t) => {
  const world = fakeWorld();
  const result = await runRestore(world.env, { concurrency: 2 });
  t.equal(result.rootPid, 1);
  t.same(result.tasks.map((task) => task.pid).sort(), [1, 2, 3, 4, 5, 6]);
  t.equal(world.rollbacks.length, 0, 'no rollback');
  for (const task of TREE) {
    const own = startedMarks(world).filter((m) => m.pid === task.pid).map((m) => m.resource);
    const expected = STAGES.flatMap((stage) =>
      stage === 'task-state' ? ['fake-task-state', 'task-state-a', 'task-state-b'] : [`fake-${stage}`],
    );
    t.same(own, expected, `task ${task.pid} ran the planned kinds in stage order`);
  }
});

t.test('a phase starts only after every task finished the phase before', async (t) => {
  const world = fakeWorld();
  await runRestore(world.env, { concurrency: 3 });
  for (let i = 1; i < PHASE_ORDER.length; i++) {
    const previous = ended(world).filter((m) => phaseOf(m.stage) === PHASE_ORDER[i - 1]);
    const current = startedMarks(world).filter((m) => phaseOf(m.stage) === PHASE_ORDER[i]);
    const lastEnd = Math.max(...previous.map((m) => m.seq));
    const firstStart = Math.min(...current.map((m) => m.seq));
    t.ok(firstStart > lastEnd, `${PHASE_ORDER[i]} starts (${firstStart}) after ${PHASE_ORDER[i - 1]} ended everywhere (${lastEnd})`);
  }
});

t.test('fork respects parent-before-child even when children are listed first', async (t) => {
  const world = fakeWorld();
  await runRestore(world.env, { concurrency: 8 });
  const forkEnd = new Map(ended(world).filter((m) => m.stage === 'fork').map((m) => [m.pid, m.seq]));
  const forkStart = new Map(startedMarks(world).filter((m) => m.stage === 'fork').map((m) => [m.pid, m.seq]));
  for (const task of TREE.filter((task) => task.ppid !== 0)) {
    t.ok(forkStart.get(task.pid)! > forkEnd.get(task.ppid)!, `task ${task.pid} forks after its parent ${task.ppid}`);
  }
});

t.test('the concurrency limit holds, except in shared-fds and resume', async (t) => {
  const world = fakeWorld();
  await runRestore(world.env, { concurrency: 2 });
  for (const stage of ['namespaces', 'task-state', 'barrier', 'memory'] as const) {
    t.ok(world.maxBusy[stage]! <= 2, `${stage}: at most 2 busy (saw ${world.maxBusy[stage]})`);
  }
  t.ok(world.maxBusy.resume! > 2, `resume detaches together (saw ${world.maxBusy.resume} at once)`);
});

for (const stage of STAGES) {
  t.test(`a failure in ${stage} of one task rolls back everything and names task, resource, stage`, async (t) => {
    const world = fakeWorld();
    world.onStart = (pid, at, resource) => {
      if (pid === 5 && at === stage && resource === `fake-${stage}`) throw nativeFailure(pid);
    };
    const error = await runRestore(world.env, { concurrency: 3 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    t.ok(error instanceof StageError, 'rejects with a StageError');
    const e = error as StageError;
    t.equal(e.pid, 5);
    t.equal(e.stage, stage);
    t.equal(e.resource, `fake-${stage}`);
    t.equal(e.syscall, 'process_vm_writev');
    t.equal(e.errno, 3);
    t.equal(e.code, 'ESRCH');
    t.match(e.message, /task 5/);
    t.equal(world.rollbacks.length, 1, 'rollback ran once');
    const rollback = world.rollbacks[0]!;
    // A failure in fork can come before task 6's parent (3) has forked; 6 is then never told to.
    const toldToFork = [...new Set(startedMarks(world).filter((m) => m.stage === 'fork').map((m) => m.pid))].sort();
    t.same(rollback.started.sort(), toldToFork, 'rollback got every task told to fork');
    t.same(toldToFork.slice(0, 5), [1, 2, 3, 4, 5], stage === 'fork' ? 'tasks 1-5 were told to fork before 5 failed' : 'every task was told to fork');
    if (stage !== 'fork') t.same(toldToFork, [1, 2, 3, 4, 5, 6], 'all six');
    const after = world.marks.filter((m) => m.seq > rollback.seq);
    t.same(after, [], 'nothing ran or was still running after rollback');
    const laterPhase = startedMarks(world).filter((m) => PHASE_ORDER.indexOf(phaseOf(m.stage)) > PHASE_ORDER.indexOf(phaseOf(stage)));
    t.same(laterPhase, [], 'no later phase started');
  });
}

t.test('a failure during fork rolls back only the tasks told to fork', async (t) => {
  const world = fakeWorld();
  world.onStart = (pid, at) => {
    if (pid === 2 && at === 'fork') throw new Error('clone3: EEXIST');
  };
  await t.rejects(runRestore(world.env, { concurrency: 1 }), { stage: 'fork', pid: 2, resource: 'fake-fork' });
  const started = world.rollbacks[0]!.started;
  t.ok(started.includes(1) && started.includes(2), 'root and the failing task are rolled back');
  t.notOk(started.includes(4), 'a child of the failed task was never told to fork');
});

t.test('an abort in the middle rolls back and fails as cancelled', async (t) => {
  const world = fakeWorld();
  const controller = new AbortController();
  world.onStart = (pid, at) => {
    if (pid === 3 && at === 'memory') controller.abort();
  };
  const events: string[] = [];
  const error = (await runRestore(world.env, { signal: controller.signal, onEvent: (e) => events.push(e.type === 'task.stage' ? e.type : `${e.type}:${e.step}`) }).catch(
    (err: unknown) => err,
  )) as StageError;
  t.ok(error instanceof StageError);
  t.equal(error.code, 'ECANCELED');
  t.equal(error.stage, 'memory');
  t.equal(world.rollbacks.length, 1);
  t.same(world.rollbacks[0]!.started.sort(), [1, 2, 3, 4, 5, 6]);
  t.same(startedMarks(world).filter((m) => m.stage === 'resume'), [], 'nothing resumed');
  t.ok(events.includes('step.start:rollback') && events.includes('step.end:rollback'), 'rollback is a step of its own');
});

t.test('an abort before start cancels with nothing started', async (t) => {
  const world = fakeWorld();
  const error = (await runRestore(world.env, { signal: AbortSignal.abort() }).catch((err: unknown) => err)) as StageError;
  t.equal(error.code, 'ECANCELED');
  t.same(world.rollbacks, [{ seq: 0, started: [] }]);
  t.same(world.marks, []);
});

t.test('a load failure is reported as the load stage, after rollback', async (t) => {
  const world = fakeWorld();
  world.env = { ...world.env, loadTasks: async () => Promise.reject(new Error('pstree.img: at byte 8: expected entry')) };
  await t.rejects(runRestore(world.env), { stage: 'load', message: /pstree\.img/ });
  t.equal(world.rollbacks.length, 1);
});

t.test('a plan error (cycle) fails the plan stage', async (t) => {
  const world = fakeWorld();
  const loop = (name: string, after: string): ResourceKind<BaseTaskContext> => ({ name, stage: 'memory', images: [], after: [after], restore: async () => {} });
  world.env = { ...world.env, registry: [...world.env.registry, loop('x', 'y'), loop('y', 'x')] };
  await t.rejects(runRestore(world.env), { stage: 'plan', message: /cycle/ });
  t.same(world.marks, [], 'nothing ran');
});

t.test('timings: one per task per stage, and one per step, each start <= end', async (t) => {
  const world = fakeWorld();
  const spans: string[] = [];
  const result = await runRestore(world.env, { onSpan: (s) => spans.push(`${s.pid}:${s.resource}`) });
  t.equal(result.timings.tasks.length, TREE.length * STAGES.length);
  for (const timing of result.timings.tasks) t.ok(timing.start <= timing.end, `${timing.pid} ${timing.stage}`);
  t.same(result.timings.steps.map((s) => s.step), ['load', 'plan', ...PHASE_ORDER]);
  for (const step of result.timings.steps) t.ok(step.end !== undefined && step.start <= step.end, step.step);
  const steps = result.timings.steps;
  for (let i = 1; i < steps.length; i++) t.ok(steps[i]!.start >= steps[i - 1]!.end!, `${steps[i]!.step} after ${steps[i - 1]!.step}`);
  t.equal(spans.length, TREE.length * (STAGES.length + 2), 'one span per resource per task');
  const byTask = result.timings.tasks.filter((x) => x.pid === 4).map((x) => x.stage);
  t.same(byTask, [...STAGES], 'a task timing list follows stage order');
  t.ok(stageIndex('resume') === STAGES.length - 1);
});

t.test('dry run stops after planning and touches nothing', async (t) => {
  const world = fakeWorld();
  const result = await runRestore(world.env, { dryRun: true });
  t.equal(result.rootPid, 1);
  t.same(result.plan.stages.find((s) => s.stage === 'task-state')!.resources, ['fake-task-state', 'task-state-a', 'task-state-b']);
  t.same(world.marks, []);
});



t.test('a resource stuck until killed does not hang rollback: kill after the bound, then again once settled', async (t) => {
  const world = fakeWorld();
  let release: () => void = () => {};
  const stuck = new Promise<void>((resolve) => (release = resolve));
  const blocker: ResourceKind<BaseTaskContext> = {
    name: 'stuck-read',
    stage: 'memory',
    images: [],
    appliesTo: (task) => task.pid === 2,
    restore: () => stuck, // ignores the abort signal, like a blocking native call
  };
  const failing: ResourceKind<BaseTaskContext> = {
    name: 'bad-vma',
    stage: 'memory',
    images: [],
    appliesTo: (task) => task.pid === 6,
    restore: async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      throw new NativeError({ code: 'ENOMEM', errno: 12, syscall: 'mmap', pid: 6 });
    },
  };
  const rollback = world.env.rollback;
  world.env = {
    ...world.env,
    registry: [...world.env.registry, blocker, failing],
    rollback: async (started) => {
      await rollback(started);
      release(); // the kill unblocks the stuck call
    },
  };
  await t.rejects(runRestore(world.env, { settleTimeoutMs: 50 }), { pid: 6, resource: 'bad-vma', stage: 'memory', syscall: 'mmap', errno: 12 });
  t.equal(world.rollbacks.length, 2, 'killed after the bound, and again after the stuck call returned');
});

t.test('finished stages reach the restore machine in batches: fewer events than reports, none lost', async (t) => {
  const tasks: TaskPlan[] = Array.from({ length: 40 }, (_, i) => ({ pid: 10 + i, ppid: i === 0 ? 1 : 10, pgid: 10, sid: 10, threads: [10 + i] }));
  // Kinds that finish at once: every task of a phase finishes in the same turn of the event loop.
  const registry: ResourceKind<BaseTaskContext>[] = STAGES.map((stage) => ({ name: `now-${stage}`, stage, images: [], restore: async () => undefined }));
  const batches: number[] = [];
  const result = await runRestore(
    { registry, loadTasks: async () => tasks, contextFor: (base) => base, rollback: async () => undefined },
    {
      inspect: (event) => {
        if (event.type === '@xstate.event' && event.event.type === 'tasks.done') batches.push((event.event as { done: unknown[] }).done.length);
      },
    },
  );
  const reports = tasks.length * STAGES.length;
  t.equal(result.timings.tasks.length, reports, 'one timing per task per stage');
  t.equal(batches.reduce((a, b) => a + b, 0), reports, 'every finished stage arrived in some batch');
  t.ok(batches.length < reports / 4, `${batches.length} tasks.done events for ${reports} finished stages`);
});

t.test('a task goes through the stages of one phase by itself: one advance per phase, not per stage', async (t) => {
  const world = fakeWorld();
  const advances = new Map<number, Stage[]>();
  await runRestore(world.env, {
    concurrency: 2,
    inspect: (event) => {
      if (event.type !== '@xstate.event' || event.event.type !== 'advance') return;
      const pid = Number(String((event.actorRef as { id?: string }).id).replace('task-', ''));
      advances.set(pid, [...(advances.get(pid) ?? []), (event.event as { stage: Stage }).stage]);
    },
  });
  const firstStages = PHASE_ORDER.map((phase) => PHASES[phase][0]);
  for (const task of TREE) t.same(advances.get(task.pid), firstStages, `task ${task.pid}: told to enter each phase's first stage only`);
  for (const task of TREE) {
    const mine = ended(world).filter((m) => m.pid === task.pid && phaseOf(m.stage) === 'memory').map((m) => m.stage);
    t.same(mine, PHASES.memory, `task ${task.pid}: still ran memory, threads and finish, in order`);
  }
});
