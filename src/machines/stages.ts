// The stages of a restore as the machines see them: which task state each stage puts a task in,
// how the restore machine groups stages into its own states, and the CR_STATE_*-style reason for
// each (why it exists, what holds before and after). The machines take their `description`s from
// here, so `crr machines --format json` and docs/MACHINES.md say the same thing as the code.
import { STAGES, type Stage } from '../resources/types.js';

/** The task machine's state for each stage: the state *is* the stage a task has reached. */
export const TASK_STATE_OF: Readonly<Record<Stage, string>> = {
  fork: 'forked',
  namespaces: 'namespaces',
  'shared-fds': 'sharedFds',
  'task-state': 'taskState',
  barrier: 'parked',
  memory: 'memory',
  threads: 'threads',
  finish: 'finished',
  resume: 'resumed',
};

/**
 * The task machine's state after each stage: waiting for the restore machine's next `advance`;
 * after the last stage, `detached` (final). Flat states, not `running`/`ready` children of the
 * stage's state: XState's cost per transition grows with the depth of the active states, and a
 * 1,000-task tree makes ~17,000 of them.
 */
export const READY_STATE_OF: Readonly<Record<Stage, string>> = Object.fromEntries(
  STAGES.map((stage, i) => [stage, i === STAGES.length - 1 ? 'detached' : `${TASK_STATE_OF[stage]}Ready`]),
) as Record<Stage, string>;

/** What a task machine state is: a stage running, the wait after it (or its final `detached`), or neither. */
export function taskStatePart(state: string): { readonly stage: Stage; readonly part: 'running' | 'ready' | 'detached' } | undefined {
  return TASK_STATE_PARTS.get(state);
}
const TASK_STATE_PARTS = new Map<string, { stage: Stage; part: 'running' | 'ready' | 'detached' }>(
  STAGES.flatMap((stage) => [
    [TASK_STATE_OF[stage], { stage, part: 'running' as const }],
    [READY_STATE_OF[stage], { stage, part: READY_STATE_OF[stage] === 'detached' ? ('detached' as const) : ('ready' as const) }],
  ]),
);

/** The restore machine's stage states and the task stages each one runs. */
export const PHASES = {
  fork: ['fork'],
  namespaces: ['namespaces'],
  sharedFds: ['shared-fds'],
  taskState: ['task-state'],
  barrier: ['barrier'],
  memory: ['memory', 'threads', 'finish'],
  resume: ['resume'],
} as const satisfies Record<string, readonly Stage[]>;

export type Phase = keyof typeof PHASES;
export const PHASE_ORDER = Object.keys(PHASES) as Phase[];

/**
 * Phases where every task runs at once, whatever the concurrency limit: in shared-fds a receiver
 * waits for its creator (a receiver holding a slot could starve the creator), and resume detaches
 * the whole tree together so no restored task runs long before the others.
 */
export const UNLIMITED_PHASES: ReadonlySet<Phase> = new Set<Phase>(['sharedFds', 'resume']);

export interface StateDoc {
  readonly why: string;
  readonly before: string;
  readonly after: string;
}

export const STAGE_DOCS: Readonly<Record<Stage, StateDoc>> = {
  fork: {
    why: 'Every task must exist with its exact PID before anything can be put into it; a parent forks its children (clone3 with set_tid), so parents go first.',
    before: 'The plan is checked; the task\'s PID is free; its parent (if any) has finished fork.',
    after: 'The task\'s helper runs as that PID, in its session and process group, talking to its actor over its channel.',
  },
  namespaces: {
    why: 'Files, mounts and sockets are looked up inside namespaces, so the task joins or creates them before it opens anything.',
    before: 'Every task is forked.',
    after: 'The task is in its uts, ipc, net, mnt, pid, user and time namespaces, as far as they are supported.',
  },
  'shared-fds': {
    why: 'Files, pipes and sockets shared between tasks must be created once by their owner and received by the others before per-task state uses fd numbers.',
    before: 'Every task is forked and in its namespaces.',
    after: 'Every fd of the task is at its exact number with its flags and offset; queued pipe and socket data is back.',
  },
  'task-state': {
    why: 'State the helper can set with plain syscalls in its own context (cwd, root, umask, rlimits, sigactions, personality) is cheapest before the tracer takes over.',
    before: 'The task\'s fds are in place.',
    after: 'Everything a helper can set natively is set; the helper still runs its own code.',
  },
  barrier: {
    why: 'All or nothing: no task may run restored code while another could still fail, so every helper parks (blocked in a syscall) and the tracer seizes it with PTRACE_O_EXITKILL.',
    before: 'The task has finished task-state.',
    after: 'The task is parked and seized; killing the orchestrator kills it.',
  },
  memory: {
    why: 'Swapping the address space needs a seized task and the stub: remote syscall batches unmap the helper, map every VMA and fill the pages.',
    before: 'Every task of the restore is parked and seized at the barrier.',
    after: 'The task\'s address space is the dumped one (VMAs, pages, mm fields, vdso).',
  },
  threads: {
    why: 'Threads share the address space, so they are created (clone3 with exact TIDs) only once memory is back.',
    before: 'The task\'s memory is restored.',
    after: 'Every thread exists with its TID, stopped before running any code.',
  },
  finish: {
    why: 'Some state must come last because it restricts what the restorer may still do: creds, rseq, robust lists, timers, pending signals, and seccomp last of all.',
    before: 'The task\'s memory and threads are restored.',
    after: 'The task is complete except for registers; it still runs nothing restored.',
  },
  resume: {
    why: 'Registers and FPU state go in last, then every thread of every task is detached together.',
    before: 'Every task has finished finish.',
    after: 'The task runs its restored code.',
  },
};

/** The task machine's state after `stage`: waiting for the tree, passing on within a phase, or (after the last) detached. */
export function readyDoc(stage: Stage): StateDoc {
  if (READY_STATE_OF[stage] === 'detached') {
    return { why: 'The last stage is done: the actor has nothing left to do.', before: `The task finished ${stage}.`, after: 'The task runs its restored code, untraced.' };
  }
  const next = nextStageInPhase(stage);
  if (next) {
    return {
      why: `Inside a phase of several stages the task goes on by itself, keeping its slot: no round trip through the restore machine between ${stage} and ${next}.`,
      before: `The task finished ${stage}.`,
      after: `The task entered ${next} (or passed it straight by, with no resource of its own there).`,
    };
  }
  return {
    why: 'A phase ends for one task before it ends for the tree: the task waits here until the restore machine moves it on.',
    before: `The task finished ${stage}.`,
    after: 'Every task finished the phase, and the restore machine told this one to enter its next stage.',
  };
}

/** The stage after `stage` when both belong to one phase (the task then goes on by itself). */
export function nextStageInPhase(stage: Stage): Stage | undefined {
  const stages: readonly Stage[] = Object.values(PHASES).find((list: readonly Stage[]) => list.includes(stage))!;
  return stages[stages.indexOf(stage) + 1];
}

/** The restore machine's own states that are not stages. */
export const RESTORE_STATE_DOCS: Readonly<Record<string, StateDoc>> = {
  load: {
    why: 'Read inventory and pstree and decode each task\'s images; bad input must fail before anything is touched.',
    before: 'Nothing is touched.',
    after: 'The task list is known and every image decoded and cross-checked.',
  },
  plan: {
    why: 'Order the resource kinds (topological sort) and check the machine (PIDs free, files match, kernel features).',
    before: 'The task list is known.',
    after: 'A RestorePlan exists; one task actor per task is spawned (unless this is a dry run).',
  },
  planned: {
    why: 'A dry run (crr restore --dry-run, crr plan) stops after planning.',
    before: 'The plan is built and checked.',
    after: 'Nothing was touched.',
  },
  done: {
    why: 'The restore succeeded.',
    before: 'Every task has resumed.',
    after: 'The tree runs; the result carries the root PID, the tasks and the timings.',
  },
  rollback: {
    why: 'All or nothing: a failure or an abort anywhere kills and reaps every task this restore started.',
    before: 'A task failed, a stage could not start, or the restore was aborted.',
    after: 'No process of this restore exists.',
  },
  failed: {
    why: 'The restore failed or was cancelled; the error names task, resource, stage, syscall and errno.',
    before: 'Rollback finished.',
    after: 'Nothing of this restore remains.',
  },
};

export function describeDoc(doc: StateDoc): string {
  return `${doc.why} Before: ${doc.before} After: ${doc.after}`;
}

/** The last stage of a phase: a task has finished the phase once it finished this stage. */
export function lastStageOf(phase: Phase): Stage {
  const stages = PHASES[phase];
  return stages[stages.length - 1]!;
}

export { STAGES };

/** The task machine's own states that are not stages. */
export const TASK_STATE_DOCS: Readonly<Record<string, StateDoc>> = {
  idle: {
    why: 'A task actor exists from planning on, before its process does.',
    before: 'The plan lists the task.',
    after: 'The restore machine told it to fork.',
  },
  failed: {
    why: 'A resource failed for this task; the actor reports a StageError (pid, resource, stage, syscall, errno) to the restore machine, which rolls back.',
    before: 'A stage of this task threw, or the task was told to enter a stage out of order.',
    after: 'The error is with the restore machine.',
  },
};
