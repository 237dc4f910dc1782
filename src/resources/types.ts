// The resource contract: the one small interface every resource kind fills (task tree, memory,
// regfile, pipe, sigact, creds, ...). A kind declares the stage it acts in, the images it reads and
// which kinds must have acted first; the planner (src/plan/) derives the order from that, and the
// task machine (src/machines/task.ts) calls `restore` once per task in that order.
// The helper channel, tracer client and decoded images are typed as parameters here so that this
// file depends on none of the modules that provide them.

/**
 * The stages of a restore, in the order they run. The restore machine (src/machines/restore.ts)
 * moves every task through them; docs/MACHINES.md says why each exists and what holds around it.
 */
export const STAGES = [
  'fork',
  'namespaces',
  'shared-fds',
  'task-state',
  'barrier',
  'memory',
  'threads',
  'finish',
  'resume',
] as const;

export type Stage = (typeof STAGES)[number];

export function stageIndex(stage: Stage): number {
  return STAGES.indexOf(stage);
}

export function isStage(value: string): value is Stage {
  return (STAGES as readonly string[]).includes(value);
}

/** One task of the tree to restore, as pstree.img describes it (PIDs in the dumped namespace). */
export interface TaskPlan {
  readonly pid: number;
  /** 0 for the root of the restored tree. */
  readonly ppid: number;
  readonly pgid: number;
  readonly sid: number;
  /** Thread ids, main thread (== pid) first. */
  readonly threads: readonly number[];
  /** A zombie is recreated and left dead; later stages skip it unless a kind says otherwise. */
  readonly zombie?: boolean;
}

/** An object several tasks share (a pipe, a socket, a file description, a shared mapping). */
export interface SharedObject {
  readonly kind: string;
  readonly id: string;
  /** The task that creates the object; every receiver gets it from this task. */
  readonly creator: number;
  readonly receivers: readonly number[];
}

/** A timed piece of work for traces: a resource acting for a task, or a native batch inside it. */
export interface Span {
  readonly pid: number;
  readonly stage: Stage;
  readonly resource: string;
  /** What the span measures when it is finer than the whole resource ("preadv batch"). */
  readonly name?: string;
  /** Milliseconds on the restore's clock (performance.now() unless the caller injects one). */
  readonly start: number;
  readonly end: number;
  readonly syscalls?: number;
  readonly bytes?: number;
}

/**
 * Objects one task creates and others receive, for the whole restore. Creators publish in their
 * stage; receivers wait for them, which is why the shared-fds stage runs every task at once
 * (a receiver holding a concurrency slot while its creator waits for one would deadlock).
 */
export interface SharedTable {
  publish(kind: string, id: string, value: unknown): void;
  receive(kind: string, id: string): Promise<unknown>;
}

/** What the framework itself gives a resource for one task in one stage. */
export interface BaseTaskContext {
  readonly pid: number;
  readonly task: TaskPlan;
  readonly stage: Stage;
  /** The resource kind now acting (spans and errors name it). */
  readonly resource: string;
  readonly plan: RestorePlanView;
  readonly shared: SharedTable;
  /** Aborted when the restore is cancelled or another task failed: stop early, leave cleanup to rollback. */
  readonly signal: AbortSignal;
  /** Add a span to the restore's trace (start/end from the same clock as `now`). */
  record(span: Omit<Span, 'pid' | 'stage' | 'resource'> & Partial<Pick<Span, 'resource'>>): void;
  now(): number;
}

/** Decoded images of one task, by image name ('core-42', 'mm-42', 'fdinfo-3', ...). */
export type TaskImages = Readonly<Record<string, unknown>>;

/**
 * What a resource gets for one task: the framework's part plus the restore's own clients.
 * Helper and Tracer stay type parameters until src/actors/helper.ts and src/actors/tracer.ts exist.
 */
export interface TaskContext<Helper = unknown, Tracer = unknown, Images = TaskImages> extends BaseTaskContext {
  readonly images: Images;
  /** This task's helper channel (commands run as real syscalls inside the task). */
  readonly helper: Helper;
  /** The tracer client (ptrace and remote syscall batches, from the one tracer thread). */
  readonly tracer: Tracer;
}

/** The one contract of a resource kind. */
export interface ResourceKind<Ctx extends BaseTaskContext = TaskContext> {
  /** 'task-tree', 'memory', 'regfile', 'pipe', 'sigact', 'creds', ... unique in the registry. */
  readonly name: string;
  /** The stage it acts in. */
  readonly stage: Stage;
  /** Image name patterns it reads ('core-*', 'mm-*', 'files', 'fdinfo-*'). */
  readonly images: readonly string[];
  /** Kinds that must have acted first: in the same stage or an earlier one, never a later one. */
  readonly after?: readonly string[];
  /**
   * Whether it acts for this task at all (default: every task). `source`, when the planner has the
   * decoded checkpoint, lets a kind leave out a task with nothing of its kind (no fd of its type):
   * a kind left out costs nothing, while one that only finds out in restore() costs a context
   * and a promise per task (8 of them per task of a plain tree, before they said no here).
   */
  appliesTo?(task: TaskPlan, source?: PlanSource): boolean;
  /** Act for one task in its stage. Throw a NativeError/StageError; the task machine adds pid, stage, resource. */
  restore(ctx: Ctx): Promise<void>;
  /** Lines for `crr plan` and `crr restore --dry-run`. */
  describe?(task: TaskPlan): string[];
  /** The objects of this kind that several tasks share, with their creator and receivers. */
  sharedObjects?(tasks: readonly TaskPlan[], source?: PlanSource): SharedObject[];
}

/**
 * The decoded checkpoint behind a plan, when the planner has it (`crr plan`, a restore): kinds whose
 * shared objects depend on fds read them here. Typed loosely so this file depends on no image module;
 * the real values are a Checkpoint and TaskImageSets (src/restore/context.ts).
 */
export interface PlanSource {
  readonly checkpoint: unknown;
  readonly images: ReadonlyMap<number, unknown>;
  /** The restore's caller has action scripts (the kinds that run them act only then). */
  readonly actionScripts?: boolean;
}

/** The parts of a plan a resource may read (the full type lives in src/plan/plan.ts). */
export interface RestorePlanView {
  readonly tasks: readonly TaskPlan[];
  readonly stages: ReadonlyArray<{ readonly stage: Stage; readonly resources: readonly string[] }>;
  readonly sharedObjects: readonly SharedObject[];
  /** The kinds acting for each task, per stage, in order (a kind may hand work to the next). */
  readonly perTask?: ReadonlyMap<number, ReadonlyMap<Stage, readonly string[]>>;
}
