// Orders resource kinds: stages run in their fixed order, and within a stage a kind runs after
// every kind it names in `after`. A topological sort replaces CRIU's hand-ordered arrays; every
// way the declarations can contradict each other is a PlanError naming the kinds involved.
import { CrrError } from '../errors.js';
import { STAGES, isStage, stageIndex, type Stage } from '../resources/types.js';

export type PlanErrorReason = 'duplicate' | 'unknown-stage' | 'missing' | 'later-stage' | 'cycle' | 'task-tree';

/** The resource declarations contradict each other (`kinds` are the kinds involved), or the task list is not a tree. */
export class PlanError extends CrrError {
  readonly reason: PlanErrorReason;
  readonly kinds: readonly string[];
  constructor(reason: PlanErrorReason, kinds: readonly string[], message: string) {
    super(`plan: ${message}`, 1);
    this.reason = reason;
    this.kinds = kinds;
  }
}

/** What ordering needs of a kind (a ResourceKind has all of it). */
export interface Orderable {
  readonly name: string;
  readonly stage: Stage;
  readonly after?: readonly string[];
}

export interface StageOrder {
  readonly stage: Stage;
  readonly resources: readonly string[];
}

/** A prerequisite edge: `from` must act before `to`. */
export interface OrderEdge {
  readonly from: string;
  readonly to: string;
}

/** Every stage (empty ones included, so renderings show the whole flow) with its kinds in order. */
export function orderKinds(kinds: readonly Orderable[]): { stages: StageOrder[]; edges: OrderEdge[] } {
  const byName = new Map<string, Orderable>();
  for (const kind of kinds) {
    if (byName.has(kind.name)) throw new PlanError('duplicate', [kind.name], `resource kind '${kind.name}' is registered twice`);
    if (!isStage(kind.stage)) {
      throw new PlanError('unknown-stage', [kind.name], `resource kind '${kind.name}' names unknown stage '${String(kind.stage)}'`);
    }
    byName.set(kind.name, kind);
  }
  const edges: OrderEdge[] = [];
  for (const kind of kinds) {
    for (const before of kind.after ?? []) {
      const prerequisite = byName.get(before);
      if (!prerequisite) {
        throw new PlanError('missing', [kind.name, before], `resource kind '${kind.name}' needs '${before}', which is not registered`);
      }
      if (stageIndex(prerequisite.stage) > stageIndex(kind.stage)) {
        throw new PlanError(
          'later-stage',
          [kind.name, before],
          `resource kind '${kind.name}' (stage ${kind.stage}) needs '${before}', which acts in the later stage ${prerequisite.stage}`,
        );
      }
      edges.push({ from: before, to: kind.name });
    }
  }
  const stages = STAGES.map((stage) => ({
    stage,
    resources: sortStage(kinds.filter((kind) => kind.stage === stage)),
  }));
  return { stages, edges };
}

/** Kahn's algorithm; ties keep registry order so a plan is the same on every run. */
function sortStage(kinds: readonly Orderable[]): string[] {
  const names = new Set(kinds.map((kind) => kind.name));
  const waitingOn = new Map<string, Set<string>>();
  for (const kind of kinds) {
    waitingOn.set(kind.name, new Set((kind.after ?? []).filter((name) => names.has(name))));
  }
  const order: string[] = [];
  while (order.length < kinds.length) {
    const next = kinds.find((kind) => !order.includes(kind.name) && waitingOn.get(kind.name)!.size === 0);
    if (!next) {
      const cycle = findCycle(kinds.filter((kind) => !order.includes(kind.name)), waitingOn);
      throw new PlanError('cycle', cycle, `resource kinds depend on each other in a cycle: ${[...cycle, cycle[0]].join(' -> ')}`);
    }
    order.push(next.name);
    for (const waits of waitingOn.values()) waits.delete(next.name);
  }
  return order;
}

/** Walks prerequisites from any unsorted kind until a name repeats: that loop is the cycle. */
function findCycle(unsorted: readonly Orderable[], waitingOn: Map<string, Set<string>>): string[] {
  const path: string[] = [];
  let current = unsorted[0]!.name;
  while (!path.includes(current)) {
    path.push(current);
    current = [...waitingOn.get(current)!][0]!;
  }
  // The path reads "needs"; report it in run order (prerequisite first).
  return path.slice(path.indexOf(current)).reverse();
}
