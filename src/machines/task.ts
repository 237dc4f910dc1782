// The task machine: one actor per restored task, whose state *is* the stage it has reached
// (idle -> forked -> namespaces -> sharedFds -> taskState -> parked -> memory -> threads ->
// finished -> resumed; any error -> failed). It enters a stage only when its parent (the restore
// machine) sends `advance` for exactly that stage, runs the stage's resources through the
// `runStage` actor (provided by src/machines/run.ts) and reports `task.done` or `task.failed`.
import { assign, fromPromise, sendParent, setup, type ActorRefFrom } from 'xstate';
import type { StageError } from '../errors.js';
import { STAGES, type Stage, type TaskPlan } from '../resources/types.js';
import type { RestorePlan } from '../plan/plan.js';
import { asStageError } from './errors.js';
import { STAGE_DOCS, TASK_STATE_DOCS, TASK_STATE_OF, describeDoc } from './stages.js';

export interface TaskMachineInput {
  readonly task: TaskPlan;
  readonly plan: RestorePlan;
}

export interface TaskMachineContext extends TaskMachineInput {
  error?: StageError;
}

/** What runStage gets and returns: start/end on the restore's clock. */
export interface StageRunInput extends TaskMachineInput {
  readonly stage: Stage;
}
export interface StageRun {
  readonly stage: Stage;
  readonly start: number;
  readonly end: number;
}

/** Restore machine -> task: enter this stage (it must be the task's next one). */
export type TaskCommand = { type: 'advance'; stage: Stage };
/** Task -> restore machine. */
export type TaskReport =
  | { type: 'task.done'; pid: number; stage: Stage; start: number; end: number }
  | { type: 'task.failed'; pid: number; error: StageError };

const notProvided = fromPromise<StageRun, StageRunInput>(async ({ input }) => {
  throw new Error(`runStage is not provided (task ${input.task.pid}, stage ${input.stage})`);
});

const taskSetup = setup({
  types: {} as { context: TaskMachineContext; input: TaskMachineInput; events: TaskCommand },
  actors: { runStage: notProvided },
  guards: {
    isStage: ({ event }, params: { stage: Stage }) => event.stage === params.stage,
  },
  actions: {
    reportDone: sendParent(({ context }, params: { run: StageRun }) => ({
      type: 'task.done',
      pid: context.task.pid,
      stage: params.run.stage,
      start: params.run.start,
      end: params.run.end,
    })),
    recordError: assign({
      error: ({ context }, params: { stage: Stage; error: unknown }) =>
        asStageError(params.error, { stage: params.stage, pid: context.task.pid }),
    }),
    outOfOrder: assign({
      error: ({ context, event }, params: { expected: Stage }) =>
        asStageError(new Error(`told to enter stage ${event.stage}, but its next stage is ${params.expected}`), {
          stage: event.stage,
          pid: context.task.pid,
        }),
    }),
    reportFailed: sendParent(({ context }) => ({ type: 'task.failed', pid: context.task.pid, error: context.error! })),
  },
});

/** `advance` into `stage`, or fail loudly when the restore machine asks for another one. */
function advanceTo(stage: Stage) {
  return {
    advance: [
      { guard: { type: 'isStage' as const, params: { stage } }, target: `#task.${TASK_STATE_OF[stage]}` },
      { target: '#task.failed', actions: { type: 'outOfOrder' as const, params: { expected: stage } } },
    ],
  };
}

/** The state of one stage: run its resources, then wait (ready) for the next `advance`. */
function stageState(stage: Stage, next: Stage | undefined) {
  return {
    description: describeDoc(STAGE_DOCS[stage]),
    initial: 'running' as const,
    states: {
      running: {
        invoke: {
          src: 'runStage' as const,
          input: ({ context }: { context: TaskMachineContext }) => ({ task: context.task, plan: context.plan, stage }),
          onDone: {
            target: next ? 'ready' : 'detached',
            actions: { type: 'reportDone' as const, params: ({ event }: { event: { output: StageRun } }) => ({ run: event.output }) },
          },
          onError: {
            target: '#task.failed',
            actions: { type: 'recordError' as const, params: ({ event }: { event: { error: unknown } }) => ({ stage, error: event.error }) },
          },
        },
      },
      ...(next ? { ready: { on: advanceTo(next) } } : { detached: { type: 'final' as const } }),
    },
  };
}

const stageStates = Object.fromEntries(STAGES.map((stage, i) => [TASK_STATE_OF[stage], stageState(stage, STAGES[i + 1])]));

export const taskMachine = taskSetup.createMachine({
  id: 'task',
  context: ({ input }) => ({ ...input }),
  initial: 'idle',
  states: {
    idle: { description: describeDoc(TASK_STATE_DOCS.idle!), on: advanceTo('fork') },
    ...stageStates,
    failed: { description: describeDoc(TASK_STATE_DOCS.failed!), type: 'final', entry: 'reportFailed' },
  },
});

export type TaskActorRef = ActorRefFrom<typeof taskMachine>;
