// Runs the restore machine against an environment: the registry of resource kinds and the few
// things only the real restore can do (load the checkpoint, build each resource's context, kill
// and reap what was started). Tests pass fakes; src/restore/ passes the real ones. Resolves with
// the plan, tasks and timings; rejects with the StageError after rollback has finished.
// The machines are never re-provided here (that rebuilt both, ~3 ms per restore): the per-run
// part goes in as the machine's `services` input.
import { createActor, type InspectionEvent, type Observer } from 'xstate';
import { StageError } from '../errors.js';
import { buildPlan, type RestorePlan } from '../plan/plan.js';
import type { BaseTaskContext, PlanSource, ResourceKind, Span, TaskPlan } from '../resources/types.js';
import { asStageError, cancelledError } from './errors.js';
import { restoreMachine, type RestoreEmitted, type RestoreOutput, type RestoreServices } from './restore.js';
import { SharedObjects } from './shared.js';
import type { StageRun, StageRunInput } from './task.js';

export interface RestoreEnvironment<Ctx extends BaseTaskContext = BaseTaskContext> {
  readonly registry: readonly ResourceKind<Ctx>[];
  /** Read and decode the checkpoint; the task list in pstree order. */
  loadTasks(signal: AbortSignal): Promise<readonly TaskPlan[]>;
  /** The decoded checkpoint, for kinds whose shared objects depend on it (after loadTasks). */
  planSource?(): PlanSource | undefined;
  /** Machine checks after planning (PIDs free, files match, kernel features); throw to refuse. */
  checkPlan?(plan: RestorePlan, signal: AbortSignal): Promise<void>;
  /** Add the restore's own parts (images, helper, tracer) to what the framework gives a resource. */
  contextFor(base: BaseTaskContext): Ctx | Promise<Ctx>;
  /** Kill and reap every task in `started` and anything they forked. Runs after in-flight work settled. */
  rollback(started: readonly number[]): Promise<void>;
}

export interface RunOptions {
  readonly signal?: AbortSignal;
  readonly concurrency?: number;
  readonly dryRun?: boolean;
  readonly now?: () => number;
  /** Stage starts and ends, per task and per step, as they happen. */
  readonly onEvent?: (event: RestoreEmitted) => void;
  /** One span per resource per task, plus whatever resources record themselves. */
  readonly onSpan?: (span: Span) => void;
  /** How long rollback waits for running stages to stop before killing anyway (default 5000 ms). */
  readonly settleTimeoutMs?: number;
  /** XState's inspection API: every actor's transitions, for traces. */
  readonly inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
}

/** A resource's own spans when nobody listens: one shared function, not a closure per resource per task. */
const recordNothing: BaseTaskContext['record'] = () => undefined;

export type RestoreResult = Required<Pick<RestoreOutput, 'plan' | 'tasks' | 'timings'>> & { readonly rootPid: number };

export async function runRestore<Ctx extends BaseTaskContext>(env: RestoreEnvironment<Ctx>, options: RunOptions = {}): Promise<RestoreResult> {
  const now = options.now ?? (() => performance.now());
  const onSpan = options.onSpan;
  const internal = new AbortController();
  const inflight = new Set<Promise<unknown>>();
  const shared = new SharedObjects(internal.signal);
  const byName = new Map(env.registry.map((kind) => [kind.name, kind]));
  const track = <T>(work: Promise<T>): Promise<T> => {
    inflight.add(work);
    const settled = () => inflight.delete(work); // one derived promise per stage, not two
    void work.then(settled, settled);
    return work;
  };

  // A stage's work ends with the restore's own signal: a task actor is only stopped mid-stage by
  // rollback, which aborts that signal too. (AbortSignal.any per task per stage cost about 1 s
  // of CPU per 1,000 tasks in allocation and weak references.)
  const runStage = (input: StageRunInput): Promise<StageRun> =>
    track(
      (async () => {
        const { task, plan, stage } = input;
        const stageSignal = internal.signal;
        const start = now();
        for (const name of plan.perTask.get(task.pid)?.get(stage) ?? []) {
          if (stageSignal.aborted) throw cancelledError(stage);
          const kind = byName.get(name)!;
          const record: BaseTaskContext['record'] = onSpan ? (span) => onSpan({ pid: task.pid, stage, resource: name, ...span }) : recordNothing;
          const base: BaseTaskContext = { pid: task.pid, task, stage, resource: name, plan, shared, signal: stageSignal, record, now };
          const begun = onSpan ? now() : 0;
          try {
            // A context built synchronously is used as is: awaiting it anyway cost a promise and a
            // microtask turn per resource per task (about 30,000 in a 1,000-task tree).
            const made = env.contextFor(base);
            await kind.restore(made instanceof Promise ? await made : made);
          } catch (err) {
            throw asStageError(err, { pid: task.pid, stage, resource: name });
          }
          onSpan?.({ pid: task.pid, stage, resource: name, start: begun, end: now() });
        }
        return { stage, start, end: now() };
      })(),
    );

  const services: RestoreServices = {
    now,
    runStage,
    loadTasks: () => env.loadTasks(internal.signal),
    makePlan: async (tasks: readonly TaskPlan[]) => {
      const plan = buildPlan(env.registry, tasks, env.planSource?.());
      await env.checkPlan?.(plan, internal.signal);
      return plan;
    },
    rollback: async (started: readonly number[]) => {
      internal.abort();
      // Kill only once in-flight work settled (a fork still running would escape the kill). A
      // resource stuck in a blocking call may need the kill to return, so after the bound
      // kill anyway, then kill again once it settles.
      const settled = Promise.allSettled([...inflight]).then(() => true);
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<false>((resolve) => (timer = setTimeout(resolve, options.settleTimeoutMs ?? 5000, false)));
      const settledInTime = await Promise.race([settled, bound]);
      clearTimeout(timer);
      await env.rollback(started);
      if (!settledInTime) {
        await settled;
        await env.rollback(started);
      }
    },
  };

  const actor = createActor(restoreMachine, {
    input: { concurrency: options.concurrency, dryRun: options.dryRun, services },
    inspect: options.inspect,
  });
  if (options.onEvent) actor.on('*', options.onEvent);
  const abort = () => actor.send({ type: 'abort' });
  const output = new Promise<RestoreOutput>((resolve, reject) => {
    actor.subscribe({
      complete: () => resolve(actor.getSnapshot().output!),
      error: (err) => reject(asStageError(err, { stage: 'restore' })),
    });
  });
  actor.start();
  if (options.signal?.aborted) abort();
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    const result = await output;
    if (!result.ok) throw result.error ?? new StageError({ stage: 'restore', message: 'restore failed' });
    const plan = result.plan!;
    const pids = new Set(plan.tasks.map((task) => task.pid));
    const root = plan.tasks.find((task) => !pids.has(task.ppid))!;
    return { plan, tasks: result.tasks, timings: result.timings, rootPid: root.pid };
  } finally {
    options.signal?.removeEventListener('abort', abort);
    internal.abort();
  }
}
