// The one list of resource kinds a restore uses. Order here means nothing: the planner derives
// the order from each kind's stage and `after`. Add a kind by importing its module and listing it.
// The framework has no kinds of its own; the restore wires real ones (task-tree, memory, ...).
import type { ResourceKind } from './types.js';

export const registry: readonly ResourceKind[] = [];

/** Look a kind up by name; the planner has already checked that names are unique. */
export function kindsByName<K extends { name: string }>(kinds: readonly K[]): Map<string, K> {
  return new Map(kinds.map((kind) => [kind.name, kind]));
}
