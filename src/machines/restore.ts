// The restore machine, the orchestrator: load -> plan -> fork -> namespaces -> sharedFds ->
// taskState -> barrier -> memory (+threads, finish) -> resume -> done; any failure or abort ->
// rollback -> failed. It spawns one task actor per task and moves each into its next stage only
// when the whole tree has finished the phase before (see schedule.ts for the rules). Loading,
// planning, rollback and each stage's work come from the `services` in its input (built per
// restore by src/machines/run.ts): the machines themselves are built once per process.
import { assign, createActor, enqueueActions, fromPromise, setup, type AnyActorRef } from 'xstate';
import type { StageError } from '../errors.js';
import type { Stage, TaskPlan } from '../resources/types.js';
import type { RestorePlan } from '../plan/plan.js';
import { asStageError, cancelledError } from './errors.js';
import { Schedule } from './schedule.js';
import { PHASE_ORDER, RESTORE_STATE_DOCS, STAGE_DOCS, PHASES, UNLIMITED_PHASES, describeDoc, type Phase } from './stages.js';
import { taskMachine, type StageRunner, type TaskActorRef, type TaskDone, type TaskDoneSink, type TaskReport } from './task.js';

export interface RestoreMachineInput {
  /** Most tasks running one stage at once (fork, namespaces, task-state, barrier, memory). */
  readonly concurrency?: number;
  /** Stop after planning (crr restore --dry-run). */
  readonly dryRun?: boolean;
  readonly services: RestoreServices;
}

/** What only the caller can do, per restore; the task actors get the StageRunner part. */
export interface RestoreServices extends StageRunner {
  loadTasks(): Promise<readonly TaskPlan[]>;
  makePlan(tasks: readonly TaskPlan[]): Promise<RestorePlan>;
  rollback(started: readonly number[]): Promise<void>;
}

export type Step = Phase | 'load' | 'plan' | 'rollback';
export interface StepTiming { readonly step: Step; readonly start: number; end?: number }
export interface TaskStageTiming { readonly pid: number; readonly stage: Stage; readonly start: number; readonly end: number }
export interface Timings { readonly steps: StepTiming[]; readonly tasks: TaskStageTiming[] }

export interface RestoreContext {
  readonly concurrency: number;
  readonly dryRun: boolean;
  readonly services: RestoreServices;
  tasks: readonly TaskPlan[];
  plan?: RestorePlan;
  /**
   * Who may go next. Mutable, like `started` and `timings.tasks`: they change once per task per
   * stage, and copying them per event made the machine quadratic in the tree's size.
   */
  schedule: Schedule;
  refs: Record<number, TaskActorRef>;
  /** PIDs told to fork: rollback kills and reaps these (whether or not the fork finished). */
  readonly started: number[];
  readonly timings: Timings;
  error?: StageError;
  rollbackError?: StageError;
}

export type RestoreEvent = TaskReport | { type: 'abort' };
/** What the machine emits for live progress and the library's onEvent. */
export type RestoreEmitted =
  | { type: 'step.start'; step: Step; time: number }
  | { type: 'step.end'; step: Step; time: number }
  | { type: 'task.stage'; pid: number; stage: Stage; start: number; end: number };

export interface RestoreOutput {
  readonly ok: boolean;
  readonly plan?: RestorePlan;
  readonly tasks: readonly TaskPlan[];
  readonly timings: Timings;
  readonly error?: StageError;
  readonly rollbackError?: StageError;
}

const restoreSetup = setup({
  types: {} as { context: RestoreContext; input: RestoreMachineInput; events: RestoreEvent; emitted: RestoreEmitted; output: RestoreOutput },
  actors: {
    loadTasks: fromPromise<readonly TaskPlan[], RestoreServices>(({ input }) => input.loadTasks()),
    makePlan: fromPromise<RestorePlan, { services: RestoreServices; tasks: readonly TaskPlan[] }>(({ input }) => input.services.makePlan(input.tasks)),
    rollback: fromPromise<void, { services: RestoreServices; started: readonly number[] }>(({ input }) => input.services.rollback(input.started)),
  },
  guards: {
    dryRun: ({ context }) => context.dryRun,
    phaseComplete: ({ context }, params: { phase: Phase }) => context.schedule.complete(params.phase),
  },
  actions: {
    beginStep: enqueueActions(({ context, enqueue }, params: { step: Step }) => {
      // Steps tile the run: a step starts where the one before it ended, so the transition's own
      // actions (spawning the task actors) count in the step they lead into.
      const time = context.timings.steps.at(-1)?.end ?? context.services.now();
      context.timings.steps.push({ step: params.step, start: time });
      enqueue.emit({ type: 'step.start', step: params.step, time });
    }),
    endStep: enqueueActions(({ context, enqueue }, params: { step: Step }) => {
      const time = context.services.now();
      for (const s of context.timings.steps) if (s.step === params.step && s.end === undefined) s.end = time;
      enqueue.emit({ type: 'step.end', step: params.step, time });
    }),
    storeTasks: assign({ tasks: (_, params: { tasks: readonly TaskPlan[] }) => params.tasks }),
    storePlan: assign({ plan: (_, params: { plan: RestorePlan }) => params.plan }),
    /**
     * One task actor per task, with this machine as its parent (sendParent, inspection and errors
     * work as for spawned children) but not held in the snapshot's `children`: XState copies that
     * object on every spawn and every stop, which made 1,000 tasks cost seconds of CPU (O(n^2)).
     */
    spawnTasks: assign({
      schedule: ({ context }) => new Schedule(context.tasks),
      refs: ({ context, self }) => {
        const reports = new TaskDoneBatch(self);
        return Object.fromEntries(
          context.tasks.map((task) => {
            const input = { task, plan: context.plan!, runner: context.services, reports };
            const ref = createActor(taskMachine, { id: `task-${task.pid}`, parent: self as AnyActorRef, input });
            return [task.pid, ref.start()];
          }),
        );
      },
    }),
    /** Move every task that may go now into its next stage of this phase. */
    dispatch: enqueueActions(({ context, enqueue }, params: { phase: Phase }) => dispatchInto(context, enqueue, params.phase)),
    /**
     * Tasks finished stages: book them, then dispatch whoever may go now. One action, not two:
     * each enqueueActions resolution allocates its own builder.
     */
    tasksDone: enqueueActions(({ context, event, enqueue }, params: { phase: Phase }) => {
      if (event.type !== 'tasks.done') return;
      for (const timing of event.done) {
        context.schedule.finish(timing.pid, timing.stage);
        context.timings.tasks.push(timing);
        enqueue.emit({ type: 'task.stage', ...timing });
      }
      dispatchInto(context, enqueue, params.phase);
    }),
    taskFailed: assign({ error: ({ event }) => (event.type === 'task.failed' ? event.error : undefined) }),
    fail: assign({ error: (_, params: { step: Step; error: unknown }) => asStageError(params.error, { stage: params.step }) }),
    cancel: assign({ error: ({ context }) => cancelledError(currentStep(context)) }),
    stopTasks: enqueueActions(({ context, enqueue }) => {
      for (const ref of Object.values(context.refs)) enqueue.stopChild(ref);
    }),
    noteRollbackError: assign({
      rollbackError: (_, params: { error: unknown }) => asStageError(params.error, { stage: 'rollback' }),
    }),
  },
});

/**
 * The task actors' finished stages, sent to the restore machine as one `tasks.done` per turn of the
 * event loop (setImmediate: after every completion that arrived in the same poll) rather than one
 * event per task per stage: each event is a macrostep of the restore machine, and a 1,000-task
 * tree sent 9,000 of them. A failure is not batched (task.failed goes at once).
 */
class TaskDoneBatch implements TaskDoneSink {
  private pending: TaskDone[] = [];
  constructor(private readonly restore: { send(event: RestoreEvent): void }) {}
  done(report: TaskDone): void {
    if (this.pending.length === 0) setImmediate(this.flush);
    this.pending.push(report);
  }
  private readonly flush = (): void => {
    const done = this.pending;
    this.pending = [];
    this.restore.send({ type: 'tasks.done', done });
  };
}

type Enqueue = { sendTo(ref: TaskActorRef, event: { type: 'advance'; stage: Stage }): void };

function dispatchInto(context: RestoreContext, enqueue: Enqueue, phase: Phase): void {
  const limit = UNLIMITED_PHASES.has(phase) ? Infinity : context.concurrency;
  for (const { pid, stage } of context.schedule.take(phase, limit)) {
    if (stage === 'fork') context.started.push(pid);
    enqueue.sendTo(context.refs[pid]!, { type: 'advance', stage });
  }
}

/** The step an abort landed in: the latest one (its exit action has already closed it). */
function currentStep(context: RestoreContext): Step {
  return context.timings.steps.at(-1)?.step ?? 'load';
}

/** Shared by every state before done: a task failure or an abort goes to rollback. */
const toRollback = {
  'task.failed': { target: '#restore.rollback', actions: 'taskFailed' as const },
  abort: { target: '#restore.rollback', actions: 'cancel' as const },
};

function step(name: Step) {
  return {
    entry: { type: 'beginStep' as const, params: { step: name } },
    exit: { type: 'endStep' as const, params: { step: name } },
  };
}

/** A stage state: dispatch tasks as they become ready, leave once every task finished the phase. */
function phaseState(phase: Phase, next: string) {
  return {
    description: PHASES[phase].map((stage) => `${stage}: ${describeDoc(STAGE_DOCS[stage])}`).join('\n'),
    entry: [{ type: 'beginStep' as const, params: { step: phase } }, { type: 'dispatch' as const, params: { phase } }],
    exit: { type: 'endStep' as const, params: { step: phase } },
    on: { ...toRollback, 'tasks.done': { actions: { type: 'tasksDone' as const, params: { phase } } } },
    always: { guard: { type: 'phaseComplete' as const, params: { phase } }, target: next },
  };
}

const phaseStates = Object.fromEntries(PHASE_ORDER.map((phase, i) => [phase, phaseState(phase, PHASE_ORDER[i + 1] ?? 'done')]));

export const restoreMachine = restoreSetup.createMachine({
  id: 'restore',
  context: ({ input }) => ({
    concurrency: input.concurrency ?? 16,
    dryRun: input.dryRun ?? false,
    services: input.services,
    tasks: [],
    schedule: new Schedule([]),
    refs: {},
    started: [],
    timings: { steps: [], tasks: [] },
  }),
  initial: 'load',
  states: {
    load: {
      description: describeDoc(RESTORE_STATE_DOCS.load!),
      ...step('load'),
      on: toRollback,
      invoke: {
        src: 'loadTasks',
        input: ({ context }) => context.services,
        onDone: { target: 'plan', actions: { type: 'storeTasks', params: ({ event }) => ({ tasks: event.output }) } },
        onError: { target: 'rollback', actions: { type: 'fail', params: ({ event }) => ({ step: 'load', error: event.error }) } },
      },
    },
    plan: {
      description: describeDoc(RESTORE_STATE_DOCS.plan!),
      ...step('plan'),
      on: toRollback,
      invoke: {
        src: 'makePlan',
        input: ({ context }) => ({ services: context.services, tasks: context.tasks }),
        onDone: [
          { guard: 'dryRun', target: 'planned', actions: { type: 'storePlan', params: ({ event }) => ({ plan: event.output }) } },
          { target: 'fork', actions: [{ type: 'storePlan', params: ({ event }) => ({ plan: event.output }) }, 'spawnTasks'] },
        ],
        onError: { target: 'rollback', actions: { type: 'fail', params: ({ event }) => ({ step: 'plan', error: event.error }) } },
      },
    },
    ...phaseStates,
    planned: { description: describeDoc(RESTORE_STATE_DOCS.planned!), type: 'final' },
    done: { description: describeDoc(RESTORE_STATE_DOCS.done!), type: 'final', entry: 'stopTasks' },
    rollback: {
      description: describeDoc(RESTORE_STATE_DOCS.rollback!),
      entry: ['stopTasks', { type: 'beginStep', params: { step: 'rollback' } }],
      exit: { type: 'endStep', params: { step: 'rollback' } },
      invoke: {
        src: 'rollback',
        input: ({ context }) => ({ services: context.services, started: context.started }),
        onDone: 'failed',
        onError: { target: 'failed', actions: { type: 'noteRollbackError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    failed: { description: describeDoc(RESTORE_STATE_DOCS.failed!), type: 'final' },
  },
  output: ({ context }) => ({
    ok: context.error === undefined,
    plan: context.plan,
    tasks: context.tasks,
    timings: context.timings,
    error: context.error,
    rollbackError: context.rollbackError,
  }),
});
