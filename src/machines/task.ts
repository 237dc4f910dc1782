// The task machine: one actor per restored task, whose state *is* the stage it has reached
// (idle -> forked -> forkedReady -> namespaces -> ... -> finishedReady -> resumed -> detached;
// any error -> failed). It enters a phase's first stage only when its parent (the restore
// machine) sends `advance` for exactly that stage, and the phase's other stages (memory ->
// threads -> finish) by itself. It runs each stage's resources through the runner it was given
// (src/machines/run.ts builds it per restore) and reports the finished stage (the restore
// machine gets them batched, as `tasks.done`) or `task.failed`. The machine is built once per
// process: everything per-restore arrives in input.
import { assign, sendParent, setup, type ActorRefFrom } from 'xstate';
import type { StageError } from '../errors.js';
import { STAGES, type Stage, type TaskPlan } from '../resources/types.js';
import type { RestorePlan } from '../plan/plan.js';
import { asStageError } from './errors.js';
import { READY_STATE_OF, STAGE_DOCS, TASK_STATE_DOCS, TASK_STATE_OF, describeDoc, nextStageInPhase, readyDoc } from './stages.js';

/** What the runner gets and returns: start/end on the restore's clock. */
export interface StageRunInput {
  readonly task: TaskPlan;
  readonly plan: RestorePlan;
  readonly stage: Stage;
}
export interface StageRun {
  readonly stage: Stage;
  readonly start: number;
  readonly end: number;
}

/** The per-restore part of a task actor: runs a stage's resources, and the restore's clock. */
export interface StageRunner {
  runStage(input: StageRunInput): Promise<StageRun>;
  now(): number;
}

export interface TaskMachineInput {
  readonly task: TaskPlan;
  readonly plan: RestorePlan;
  readonly runner: StageRunner;
  /** Where the task's finished stages go (the restore machine gets them in batches). */
  readonly reports: TaskDoneSink;
}

export interface TaskDone {
  readonly pid: number;
  readonly stage: Stage;
  readonly start: number;
  readonly end: number;
}
export interface TaskDoneSink {
  done(report: TaskDone): void;
}

export interface TaskMachineContext extends TaskMachineInput {
  error?: StageError;
}

/** Restore machine -> task: enter this stage (it must be the task's next one). */
export type TaskCommand = { type: 'advance'; stage: Stage };
/** The task's own stage work -> the task (sent by the promise the stage's entry started). */
export type StageOutcome = { type: 'stage.done'; run: StageRun } | { type: 'stage.failed'; stage: Stage; error: unknown };
/** Task -> restore machine: finished stages come through the TaskDoneSink, a failure at once. */
export type TaskReport = { type: 'tasks.done'; done: readonly TaskDone[] } | { type: 'task.failed'; pid: number; error: StageError };

/** The plan's resources for this task in this stage: none means the stage is done on entry. */
const hasWork = (context: TaskMachineContext, stage: Stage) => (context.plan.perTask.get(context.task.pid)?.get(stage)?.length ?? 0) > 0;
const isAdvance = (event: TaskCommand | StageOutcome, stage: Stage) => event.type === 'advance' && event.stage === stage;

const taskSetup = setup({
  types: {} as { context: TaskMachineContext; input: TaskMachineInput; events: TaskCommand | StageOutcome },
  guards: {
    /** `advance` into this stage, which the plan gives this task resources in. */
    withWork: ({ context, event }, params: { stage: Stage }) => isAdvance(event, params.stage) && hasWork(context, params.stage),
    /** `advance` into this stage, with no resource of this task in it. */
    nothingToDo: ({ context, event }, params: { stage: Stage }) => isAdvance(event, params.stage) && !hasWork(context, params.stage),
    /** The plan gives this task resources in this stage (whatever the event). */
    stageHasWork: ({ context }, params: { stage: Stage }) => hasWork(context, params.stage),
  },
  actions: {
    /**
     * Start the stage's resources from the entry action rather than an invoked promise actor: a
     * child actor per task per stage (its snapshot, abort controller, start and stop) was most of
     * the machines' CPU per task. A task actor stopped by rollback ignores the late outcome; the
     * runner's own bookkeeping lets rollback wait for the work itself.
     */
    startStage: ({ context, self }, params: { stage: Stage }) => {
      context.runner.runStage({ task: context.task, plan: context.plan, stage: params.stage }).then(
        (run) => self.send({ type: 'stage.done', run }),
        (error: unknown) => self.send({ type: 'stage.failed', stage: params.stage, error }),
      );
    },
    reportDone: ({ context }, params: { run: StageRun }) =>
      context.reports.done({ pid: context.task.pid, stage: params.run.stage, start: params.run.start, end: params.run.end }),
    recordError: assign({
      error: ({ context }, params: { stage: Stage; error: unknown }) =>
        asStageError(params.error, { stage: params.stage, pid: context.task.pid }),
    }),
    outOfOrder: assign({
      error: ({ context, event }, params: { expected: Stage }) =>
        asStageError(new Error(`told to enter stage ${(event as TaskCommand).stage}, but its next stage is ${params.expected}`), {
          stage: (event as TaskCommand).stage,
          pid: context.task.pid,
        }),
    }),
    reportFailed: sendParent(({ context }) => ({ type: 'task.failed', pid: context.task.pid, error: context.error! })),
  },
});

/**
 * `advance` into `stage`, or fail loudly when the restore machine asks for another one. A stage
 * the plan gives this task no resource in is entered and finished in the same step (straight to
 * its ready state), so it costs one transition, not a round of running.
 */
function advanceTo(stage: Stage) {
  const state = TASK_STATE_OF[stage];
  const params = { stage };
  return {
    advance: [
      { guard: { type: 'withWork' as const, params }, target: `#task.${state}` },
      { guard: { type: 'nothingToDo' as const, params }, ...passBy(stage) },
      { target: '#task.failed', actions: { type: 'outOfOrder' as const, params: { expected: stage } } },
    ],
  };
}

/** The next stage of the same phase, entered at once (or passed by when it has no work). */
function passOn(stage: Stage) {
  return [{ guard: { type: 'stageHasWork' as const, params: { stage } }, target: `#task.${TASK_STATE_OF[stage]}` }, passBy(stage)];
}

/** A stage with no resource of this task: straight to its ready state, reported done in no time. */
function passBy(stage: Stage) {
  return {
    target: `#task.${READY_STATE_OF[stage]}`,
    actions: { type: 'reportDone' as const, params: ({ context }: { context: TaskMachineContext }) => ({ run: emptyRun(context, stage) }) },
  };
}

function emptyRun(context: TaskMachineContext, stage: Stage): StageRun {
  const time = context.runner.now();
  return { stage, start: time, end: time };
}

/** What a task does once `stage` is done: wait for `advance`, go on within the phase, or (after the last) nothing. */
function afterStage(stage: Stage, next: Stage | undefined) {
  if (!next) return { type: 'final' as const };
  return nextStageInPhase(stage) ? { always: passOn(next) } : { on: advanceTo(next) };
}

/** The states of one stage: running its resources, then waiting (or, after the last, detached). */
function stageStates(stage: Stage, next: Stage | undefined) {
  return {
    [TASK_STATE_OF[stage]]: {
      description: describeDoc(STAGE_DOCS[stage]),
      entry: { type: 'startStage' as const, params: { stage } },
      on: {
        'stage.done': {
          target: READY_STATE_OF[stage],
          actions: { type: 'reportDone' as const, params: ({ event }: { event: StageOutcome }) => ({ run: (event as { run: StageRun }).run }) },
        },
        'stage.failed': {
          target: 'failed',
          actions: { type: 'recordError' as const, params: ({ event }: { event: StageOutcome }) => ({ stage, error: (event as { error: unknown }).error }) },
        },
      },
    },
    [READY_STATE_OF[stage]]: { description: describeDoc(readyDoc(stage)), ...afterStage(stage, next) },
  };
}

export const taskMachine = taskSetup.createMachine({
  id: 'task',
  context: ({ input }) => ({ ...input }),
  initial: 'idle',
  states: {
    idle: { description: describeDoc(TASK_STATE_DOCS.idle!), on: advanceTo('fork') },
    ...Object.assign({}, ...STAGES.map((stage, i) => stageStates(stage, STAGES[i + 1]))),
    failed: { description: describeDoc(TASK_STATE_DOCS.failed!), type: 'final', entry: 'reportFailed' },
  },
});

export type TaskActorRef = ActorRefFrom<typeof taskMachine>;
