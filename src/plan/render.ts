// Renderings of a RestorePlan for people and programs: text (crr plan, --dry-run), JSON (--json,
// tests), and mermaid/dot drawings of the resource graph with each shared object's creator and
// receivers.
import type { RestorePlan } from './plan.js';

export type PlanFormat = 'text' | 'json' | 'mermaid' | 'dot';
export const PLAN_FORMATS: readonly PlanFormat[] = ['text', 'json', 'mermaid', 'dot'];

export function renderPlan(plan: RestorePlan, format: PlanFormat): string {
  switch (format) {
    case 'text':
      return planText(plan);
    case 'json':
      return `${JSON.stringify(planJson(plan), null, 2)}\n`;
    case 'mermaid':
      return planMermaid(plan);
    case 'dot':
      return planDot(plan);
  }
}

/** The plan as plain data (Maps become objects keyed by pid and stage). */
export function planJson(plan: RestorePlan): object {
  return {
    tasks: plan.tasks,
    stages: plan.stages,
    edges: plan.edges,
    sharedObjects: plan.sharedObjects,
    perTask: Object.fromEntries(
      [...plan.perTask].map(([pid, stages]) => [pid, Object.fromEntries([...stages].filter(([, kinds]) => kinds.length))]),
    ),
  };
}

export function planText(plan: RestorePlan): string {
  const out: string[] = [`restore plan: ${plan.tasks.length} task(s)`, '', 'stages:'];
  for (const { stage, resources } of plan.stages) {
    out.push(`  ${stage.padEnd(11)} ${resources.length ? resources.join(', ') : '-'}`);
  }
  out.push('', 'tasks:');
  for (const task of plan.tasks) {
    const state = task.zombie ? ' zombie' : '';
    out.push(`  pid ${task.pid} ppid ${task.ppid} pgid ${task.pgid} sid ${task.sid} threads ${task.threads.length}${state}`);
    for (const { resource, lines } of plan.descriptions.get(task.pid) ?? []) {
      for (const line of lines) out.push(`    ${resource}: ${line}`);
    }
  }
  if (plan.sharedObjects.length) {
    out.push('', 'shared objects:');
    for (const object of plan.sharedObjects) {
      const receivers = object.receivers.length ? object.receivers.join(', ') : 'none';
      out.push(`  ${object.kind} ${object.id}: created by ${object.creator}, received by ${receivers}`);
    }
  }
  return `${out.join('\n')}\n`;
}

/** Node ids safe for both mermaid and dot. */
function nodeId(prefix: string, name: string): string {
  return `${prefix}_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

export function planMermaid(plan: RestorePlan): string {
  const out = ['flowchart LR'];
  let previous: string | undefined;
  for (const { stage, resources } of plan.stages) {
    const stageId = nodeId('stage', stage);
    out.push(`  subgraph ${stageId}["${stage}"]`);
    out.push(`    ${stageId}_entry(("${stage}"))`);
    for (const name of resources) out.push(`    ${nodeId('kind', name)}["${name}"]`);
    out.push('  end');
    if (previous) out.push(`  ${previous} ==> ${stageId}`);
    previous = stageId;
  }
  for (const edge of plan.edges) out.push(`  ${nodeId('kind', edge.from)} --> ${nodeId('kind', edge.to)}`);
  plan.sharedObjects.forEach((object, index) => {
    const objectId = `shared_${index}`;
    out.push(`  ${objectId}{{"${object.kind} ${object.id}"}}`);
    out.push(`  task_${object.creator}(["task ${object.creator}"]) -- creates --> ${objectId}`);
    for (const receiver of object.receivers) out.push(`  ${objectId} -- received by --> task_${receiver}(["task ${receiver}"])`);
  });
  return `${out.join('\n')}\n`;
}

export function planDot(plan: RestorePlan): string {
  const out = ['digraph plan {', '  rankdir=LR;', '  node [shape=box];'];
  let previous: string | undefined;
  for (const { stage, resources } of plan.stages) {
    const stageId = nodeId('stage', stage);
    out.push(`  subgraph cluster_${stageId} {`, `    label="${stage}";`, `    ${stageId} [label="${stage}", shape=circle];`);
    for (const name of resources) out.push(`    ${nodeId('kind', name)} [label="${name}"];`);
    out.push('  }');
    if (previous) out.push(`  ${previous} -> ${stageId} [style=bold];`);
    previous = stageId;
  }
  for (const edge of plan.edges) out.push(`  ${nodeId('kind', edge.from)} -> ${nodeId('kind', edge.to)};`);
  plan.sharedObjects.forEach((object, index) => {
    const objectId = `shared_${index}`;
    out.push(`  ${objectId} [label="${object.kind} ${object.id}", shape=hexagon];`);
    out.push(`  task_${object.creator} -> ${objectId} [label="creates"];`);
    for (const receiver of object.receivers) out.push(`  ${objectId} -> task_${receiver} [label="received by"];`);
  });
  out.push('}');
  return `${out.join('\n')}\n`;
}
