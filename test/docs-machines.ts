// docs/MACHINES.md shows the machines as `crr machines --format mermaid` draws them from their
// definitions: this fails when a machine changes and the doc was not regenerated.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { restoreMachine } from '../src/machines/restore.js';
import { taskMachine } from '../src/machines/task.js';
import { renderMachines } from '../src/trace/diagram.js';

t.test('docs/MACHINES.md holds the current mermaid diagrams', async (t) => {
  const doc = readFileSync(new URL('../docs/MACHINES.md', import.meta.url), 'utf8');
  const drawn = renderMachines([restoreMachine, taskMachine], 'mermaid').trim();
  t.ok(drawn.includes('stateDiagram'), 'the renderer draws a state diagram');
  t.ok(doc.includes(drawn), 'MACHINES.md has the diagram exactly as crr machines --format mermaid prints it');
});
