// Builds a RestorePlan from the registry and the task list: the stage order of resource kinds,
// the prerequisite edges, which kinds act for which task, and the shared objects with their creator
// and receivers. This is what `crr plan` and `crr restore --dry-run` print and what the restore
// machine runs; nothing here touches the system.
import { PlanError, orderKinds, type OrderEdge, type StageOrder } from './order.js';
import type { PlanSource, ResourceKind, SharedObject, Stage, TaskPlan } from '../resources/types.js';

export interface RestorePlan {
  readonly tasks: readonly TaskPlan[];
  /** Every stage in run order with the kinds acting in it, in order. */
  readonly stages: readonly StageOrder[];
  /** `after` declarations as edges (prerequisite -> dependant), for renderings. */
  readonly edges: readonly OrderEdge[];
  readonly sharedObjects: readonly SharedObject[];
  /** The kinds that act for each task, per stage (kinds whose appliesTo says no are left out). */
  readonly perTask: ReadonlyMap<number, ReadonlyMap<Stage, readonly string[]>>;
  /** describe() lines per task, by kind, for text output. */
  readonly descriptions: ReadonlyMap<number, ReadonlyArray<{ resource: string; lines: readonly string[] }>>;
}

// Kinds are stored with whatever context type they were written for; planning never calls restore().
type AnyKind = ResourceKind<any>;

/** What a kinds list always plans to (its stage order and lookups), computed once per list. */
interface KindsOrder {
  readonly stages: readonly StageOrder[];
  readonly edges: readonly OrderEdge[];
  /** Per stage, the kinds acting in it, in order. */
  readonly kindsByStage: ReadonlyArray<{ readonly stage: Stage; readonly kinds: readonly AnyKind[] }>;
}

// Keyed by the kinds array: the registry is one frozen list, so every restore after the first
// skips the topological sort (a list that fails to order is not cached and fails every time).
const ordered = new WeakMap<readonly AnyKind[], KindsOrder>();

function kindsOrder(kinds: readonly AnyKind[]): KindsOrder {
  let order = ordered.get(kinds);
  if (order) return order;
  const { stages, edges } = orderKinds(kinds);
  const byName = new Map(kinds.map((kind) => [kind.name, kind]));
  const kindsByStage = stages.map(({ stage, resources }) => ({ stage, kinds: resources.map((name) => byName.get(name)!) }));
  order = { stages, edges, kindsByStage };
  ordered.set(kinds, order);
  return order;
}

export function buildPlan(kinds: readonly AnyKind[], tasks: readonly TaskPlan[], source?: PlanSource): RestorePlan {
  checkTree(tasks);
  const { stages, edges, kindsByStage } = kindsOrder(kinds);
  const perTask = new Map<number, Map<Stage, string[]>>();
  for (const task of tasks) {
    const stagesOfTask = new Map<Stage, string[]>();
    for (const { stage, kinds: acting } of kindsByStage) {
      const names: string[] = [];
      for (const kind of acting) if (kind.appliesTo?.(task, source) ?? true) names.push(kind.name);
      stagesOfTask.set(stage, names);
    }
    perTask.set(task.pid, stagesOfTask);
  }
  const sharedObjects = kinds.flatMap((kind) => kind.sharedObjects?.(tasks, source) ?? []);
  let descriptions: RestorePlan['descriptions'] | undefined;
  return {
    tasks,
    stages,
    edges,
    sharedObjects,
    perTask,
    // Only renderings read these (crr plan, --dry-run): a restore never builds them.
    get descriptions() {
      return (descriptions ??= describeTasks(kindsByStage, tasks, perTask));
    },
  };
}

function describeTasks(
  kindsByStage: KindsOrder['kindsByStage'],
  tasks: readonly TaskPlan[],
  perTask: ReadonlyMap<number, ReadonlyMap<Stage, readonly string[]>>,
): RestorePlan['descriptions'] {
  const descriptions = new Map<number, Array<{ resource: string; lines: readonly string[] }>>();
  for (const task of tasks) {
    const described: Array<{ resource: string; lines: readonly string[] }> = [];
    const stagesOfTask = perTask.get(task.pid)!;
    for (const { stage, kinds } of kindsByStage) {
      const acting = stagesOfTask.get(stage)!;
      for (const kind of kinds) {
        if (!acting.includes(kind.name)) continue;
        const lines = kind.describe?.(task);
        if (lines?.length) described.push({ resource: kind.name, lines });
      }
    }
    descriptions.set(task.pid, described);
  }
  return descriptions;
}

/** Fork order needs a tree: unique PIDs, every parent present, exactly one root (ppid 0 or outside). */
export function checkTree(tasks: readonly TaskPlan[]): void {
  const pids = new Set<number>();
  for (const task of tasks) {
    if (pids.has(task.pid)) throw new PlanError('task-tree', [], `task ${task.pid} appears twice in the task list`);
    pids.add(task.pid);
  }
  const roots = tasks.filter((task) => !pids.has(task.ppid));
  if (tasks.length === 0) throw new PlanError('task-tree', [], 'the checkpoint has no tasks');
  if (roots.length !== 1) {
    throw new PlanError('task-tree', [], `the task list has ${roots.length} roots (${roots.map((r) => r.pid).join(', ')}); expected one`);
  }
  const parentOf = new Map(tasks.map((task) => [task.pid, task.ppid]));
  for (const task of tasks) {
    const seen = new Set<number>();
    for (let pid = task.pid; pids.has(pid); pid = parentOf.get(pid)!) {
      if (seen.has(pid)) throw new PlanError('task-tree', [], `task ${task.pid} is its own ancestor`);
      seen.add(pid);
    }
  }
}

/** The parent task of `task` within the plan, or undefined for the root. */
export function parentInPlan(plan: Pick<RestorePlan, 'tasks'>, task: TaskPlan): TaskPlan | undefined {
  return plan.tasks.find((other) => other.pid === task.ppid);
}
