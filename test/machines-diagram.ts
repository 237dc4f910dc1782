// `crr machines` draws both machines from their definitions: every state of the restore and task
// machines (found here by walking machine.root independently of the renderer) appears in the
// mermaid, dot and JSON output, through the renderer and through the CLI.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { restoreMachine } from '../src/machines/restore.js';
import { taskMachine } from '../src/machines/task.js';
import { STAGES } from '../src/resources/types.js';
import { READY_STATE_OF, TASK_STATE_OF } from '../src/machines/stages.js';
import { describeMachine, renderMachines, type MachineDiagram } from '../src/trace/diagram.js';
import { main } from '../src/cli/main.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Every state node id of a machine, straight from its definition. */
function stateIds(machine: AnyStateMachine): string[] {
  const ids: string[] = [];
  const visit = (node: AnyStateNode) => {
    ids.push(node.id);
    Object.values(node.states).forEach(visit);
  };
  visit(machine.root);
  return ids;
}

const machines = [restoreMachine, taskMachine];
const mermaidId = (id: string) => id.replace(/[^A-Za-z0-9_]/g, '_');

function checkMermaid(t: Tap.Test, text: string) {
  t.match(text, /^stateDiagram-v2\n/);
  const declared = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^\s*state (?:"[^"]*" as )?(\w+)/.exec(line);
    if (m) declared.add(m[1]!);
  }
  for (const machine of machines) {
    for (const id of stateIds(machine)) t.ok(declared.has(mermaidId(id)), `mermaid declares ${id}`);
  }
  t.equal(declared.size, machines.flatMap(stateIds).length, 'and nothing else');
}

// tap's own Test type, without importing its internals.
declare namespace Tap {
  type Test = Parameters<Parameters<typeof t.test>[1]>[0];
}

t.test('the machines have the states the design names', async (t) => {
  const restoreStates = Object.keys(restoreMachine.root.states);
  t.same(restoreStates, ['load', 'plan', 'fork', 'namespaces', 'sharedFds', 'taskState', 'barrier', 'memory', 'resume', 'planned', 'done', 'rollback', 'failed']);
  const taskStates = Object.keys(taskMachine.root.states);
  t.same(taskStates, ['idle', ...STAGES.flatMap((stage) => [TASK_STATE_OF[stage], READY_STATE_OF[stage]]), 'failed']);
  t.equal(READY_STATE_OF.resume, 'detached', 'the last stage ends in detached');
  for (const state of [...restoreStates.map((s) => restoreMachine.root.states[s]!), ...taskStates.map((s) => taskMachine.root.states[s]!)]) {
    t.ok(state.description && /Before: .* After: /s.test(state.description), `${state.id} documents why, before and after`);
  }
});

t.test('describeMachine finds every state and the transitions of the definition', async (t) => {
  for (const machine of machines) {
    const diagram: MachineDiagram = describeMachine(machine);
    const found: string[] = [];
    const visit = (s: MachineDiagram['root']) => {
      found.push(s.id);
      s.children.forEach(visit);
    };
    visit(diagram.root);
    t.same(found, stateIds(machine), `${machine.id}: every state`);
  }
  const restore = describeMachine(restoreMachine);
  t.ok(restore.transitions.some((x) => x.source === 'restore.barrier' && x.target === 'restore.memory' && x.guard === 'phaseComplete barrier'));
  t.ok(restore.transitions.some((x) => x.source === 'restore.rollback' && x.target === 'restore.failed' && x.event === 'done: rollback'));
  const task = describeMachine(taskMachine);
  t.ok(task.transitions.some((x) => x.source === 'task.parkedReady' && x.target === 'task.memory' && x.event === 'advance'));
  t.ok(task.transitions.some((x) => x.source === 'task.memory' && x.target === 'task.failed' && x.event === 'stage.failed'));
});

t.test('renderer: mermaid lists every state of both machines', async (t) => {
  checkMermaid(t, renderMachines(machines, 'mermaid'));
});

t.test('renderer: dot and json carry every state', async (t) => {
  const dot = renderMachines(machines, 'dot');
  t.match(dot, /^digraph machines \{/);
  for (const id of machines.flatMap(stateIds)) t.ok(dot.includes(`"${id}"`) || dot.includes(`cluster_${mermaidId(id)}`), `dot has ${id}`);
  const json = JSON.stringify(JSON.parse(renderMachines(machines, 'json')));
  for (const id of machines.flatMap(stateIds)) t.ok(json.includes(`"id":"${id}"`), `json has ${id}`);
});

t.test('crr machines through the dispatcher (from src)', async (t) => {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main(['machines', '--format', 'mermaid']);
  } finally {
    process.stdout.write = write;
  }
  t.equal(code, 0);
  checkMermaid(t, out);
});

t.test('bin/crr.js machines (built)', async (t) => {
  const built = `${root}dist/cli/commands/machines.js`;
  const source = `${root}src/cli/commands/machines.ts`;
  if (!existsSync(built) || statSync(built).mtimeMs < statSync(source).mtimeMs) {
    // Others' work in progress may have type errors; tsc still emits, which is all this needs.
    spawnSync('npx', ['tsc', '-p', '.'], { cwd: root, encoding: 'utf8' });
  }
  const crr = (...args: string[]) => spawnSync(process.execPath, [`${root}bin/crr.js`, 'machines', ...args], { encoding: 'utf8' });
  const mermaid = crr('--format', 'mermaid');
  t.equal(mermaid.status, 0, mermaid.stderr);
  checkMermaid(t, mermaid.stdout);
  t.equal(crr().stdout, mermaid.stdout, 'mermaid is the default');
  const json = crr('--format=json');
  t.equal(json.status, 0);
  t.same((JSON.parse(json.stdout) as Array<{ id: string }>).map((m) => m.id), ['restore', 'task']);
  const bad = crr('--format', 'svg');
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--format must be one of mermaid, dot, json/);
  t.equal(bad.stderr.trim().split('\n').length, 1);
});
