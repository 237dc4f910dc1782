// Draws state machines from their own definitions: walks `machine.root` (state nodes, initial
// states, transitions, invoked actors, eventless guards) into a small graph, then renders it as
// mermaid, Graphviz dot or JSON. Nothing here is hand-drawn, so docs cannot drift from the code.
import type { AnyStateMachine, AnyStateNode } from 'xstate';

export interface DiagramState {
  readonly id: string;
  readonly key: string;
  readonly type: AnyStateNode['type'];
  readonly description?: string;
  /** Id of the child entered first (compound states). */
  readonly initial?: string;
  readonly invokes: readonly string[];
  readonly children: readonly DiagramState[];
}

export interface DiagramTransition {
  readonly source: string;
  /** Undefined for a transition that only runs actions (it stays in `source`). */
  readonly target?: string;
  readonly event: string;
  readonly guard?: string;
}

export interface MachineDiagram {
  readonly id: string;
  readonly root: DiagramState;
  readonly transitions: readonly DiagramTransition[];
}

export type DiagramFormat = 'mermaid' | 'dot' | 'json';
export const DIAGRAM_FORMATS: readonly DiagramFormat[] = ['mermaid', 'dot', 'json'];

export function describeMachine(machine: AnyStateMachine): MachineDiagram {
  const transitions: DiagramTransition[] = [];
  const walk = (node: AnyStateNode): DiagramState => {
    const invokeSrc = new Map(node.invoke.map((inv) => [String(inv.id), typeof inv.src === 'string' ? inv.src : 'actor']));
    const eventLabel = (type: string) => {
      const actor = /^xstate\.(done|error)\.actor\.(.*)$/.exec(type);
      return actor ? `${actor[1]}: ${invokeSrc.get(actor[2]!) ?? actor[2]}` : type;
    };
    const add = (event: string, definitions: readonly { target?: readonly AnyStateNode[]; guard?: unknown }[]) => {
      definitions.forEach((definition, index) => {
        // An unguarded fallback after guarded candidates is what runs when no guard holds.
        const guard = guardLabel(definition.guard) ?? (index > 0 ? 'else' : undefined);
        const targets = definition.target?.length ? definition.target : [undefined];
        for (const target of targets) transitions.push({ source: node.id, target: target?.id, event, ...(guard ? { guard } : {}) });
      });
    };
    for (const [type, definitions] of node.transitions) add(eventLabel(type), definitions);
    if (node.always) add('always', node.always);
    const children = Object.values(node.states).map(walk);
    const initial = node.type === 'compound' ? node.initial.target[0]?.id : undefined;
    return {
      id: node.id,
      key: node.key,
      type: node.type,
      ...(node.description ? { description: node.description } : {}),
      ...(initial ? { initial } : {}),
      invokes: [...invokeSrc.values()],
      children,
    };
  };
  const root = walk(machine.root);
  return { id: machine.id, root, transitions };
}

function guardLabel(guard: unknown): string | undefined {
  if (guard === undefined) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return guard.name || 'guard';
  const { type, params } = guard as { type?: string; params?: unknown };
  const values = params && typeof params === 'object' ? Object.values(params).map(String) : [];
  return [type ?? 'guard', ...values].join(' ');
}

/** Every state of a diagram, depth first, root included. */
export function allStates(diagram: MachineDiagram): DiagramState[] {
  const out: DiagramState[] = [];
  const visit = (state: DiagramState) => {
    out.push(state);
    state.children.forEach(visit);
  };
  visit(diagram.root);
  return out;
}

export function renderMachines(machines: readonly AnyStateMachine[], format: DiagramFormat): string {
  const diagrams = machines.map(describeMachine);
  if (format === 'json') return `${JSON.stringify(diagrams, null, 2)}\n`;
  return format === 'mermaid' ? mermaid(diagrams) : dot(diagrams);
}

const safeId = (id: string) => id.replace(/[^A-Za-z0-9_]/g, '_');
const edgeLabel = (t: DiagramTransition) => (t.guard ? `${t.event} [${t.guard}]` : t.event);

/**
 * Mermaid cannot draw an edge between states nested in different composites, so an edge is
 * lifted to the children of the deepest state that contains both ends (a failure inside
 * forked.running is drawn from forked): same meaning, since leaving a child leaves its parent.
 */
function lift(t: DiagramTransition): { at: string; source: string; target: string } {
  const target = t.target ?? t.source;
  const from = t.source.split('.');
  const to = target.split('.');
  let common = 0;
  while (common < from.length - 1 && common < to.length - 1 && from[common] === to[common]) common++;
  return {
    at: from.slice(0, common).join('.'),
    source: from.slice(0, common + 1).join('.'),
    target: to.slice(0, common + 1).join('.'),
  };
}

function mermaid(diagrams: readonly MachineDiagram[]): string {
  const out = ['stateDiagram-v2'];
  for (const diagram of diagrams) {
    const edgesAt = new Map<string, Set<string>>();
    for (const t of diagram.transitions) {
      const { at, source, target } = lift(t);
      const line = `${safeId(source)} --> ${safeId(target)} : ${edgeLabel(t)}`;
      edgesAt.set(at, (edgesAt.get(at) ?? new Set()).add(line));
    }
    // Composites are named by id alone: mermaid mis-draws `state "label" as id {` (mermaid-js/mermaid#1493, #3858).
    const block = (state: DiagramState, indent: string) => {
      out.push(`${indent}state ${safeId(state.id)} {`);
      const inner = `${indent}  `;
      if (state.initial) out.push(`${inner}[*] --> ${safeId(state.initial)}`);
      for (const child of state.children) {
        if (child.children.length) block(child, inner);
        else out.push(`${inner}state "${child.key}" as ${safeId(child.id)}`);
        if (child.type === 'final') out.push(`${inner}${safeId(child.id)} --> [*]`);
      }
      for (const line of edgesAt.get(state.id) ?? []) out.push(`${inner}${line}`);
      out.push(`${indent}}`);
    };
    block(diagram.root, '  ');
  }
  return `${out.join('\n')}\n`;
}

function dot(diagrams: readonly MachineDiagram[]): string {
  const out = ['digraph machines {', '  compound=true;', '  node [shape=box, style=rounded];'];
  const quote = (s: string) => `"${s.replace(/"/g, '\\"')}"`;
  for (const diagram of diagrams) {
    const cluster = (state: DiagramState, indent: string, label: string) => {
      out.push(`${indent}subgraph cluster_${safeId(state.id)} {`, `${indent}  label=${quote(label)};`);
      const inner = `${indent}  `;
      if (state.initial) {
        out.push(`${inner}${safeId(state.id)}__initial [shape=point, label=""];`);
        out.push(`${inner}${safeId(state.id)}__initial -> ${quote(state.initial)};`);
      }
      for (const child of state.children) {
        if (child.children.length) cluster(child, inner, child.key);
        // A compound state is also a node, so edges into it (entering it) have somewhere to land.
        const shape = child.type === 'final' ? ', peripheries=2' : child.children.length ? ', style=dashed' : '';
        out.push(`${inner}${quote(child.id)} [label=${quote(child.key)}${shape}];`);
      }
      out.push(`${indent}}`);
    };
    cluster(diagram.root, '  ', `${diagram.id} machine`);
    for (const t of diagram.transitions) out.push(`  ${quote(t.source)} -> ${quote(t.target ?? t.source)} [label=${quote(edgeLabel(t))}];`);
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}
