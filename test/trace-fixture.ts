// `restore({ trace })` on upstream CRIU fixtures (inside a fresh PID namespace): the trace file
// has one process track per task named after its comm, each task's stages in the machine's
// order without overlaps, and orchestrator steps that add up to the restore's measured total.
// Every restored task is killed and reaped by PID (result.kill) on teardown.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { restore } from '../src/restore/index.js';
import { STAGES } from '../src/resources/types.js';
import { ORCHESTRATOR_PID, validateChromeTrace, type ChromeTrace, type TraceEvent } from '../src/trace/format.js';
import { copyFixture } from './lib/restore-images.js';

async function tracedRestore(t: Test, name: string) {
  const dir = copyFixture(t, name);
  const file = join(dir, 'trace.json');
  const started = performance.now();
  const result = await restore({ imagesDir: dir, pidNamespace: true, trace: file });
  const measured = performance.now() - started;
  t.teardown(() => result.kill());
  return { result, measured, trace: JSON.parse(readFileSync(file, 'utf8')) as ChromeTrace };
}

for (const fixture of ['sleep', 'pipe']) {
  t.test(fixture, async (t) => {
    const { result, measured, trace } = await tracedRestore(t, fixture);
    t.same(validateChromeTrace(trace), [], 'valid Chrome trace');
    const names = new Map(trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => [e.pid, String(e.args!.name)]));
    t.same([...names.keys()].filter((pid) => pid !== ORCHESTRATOR_PID).sort(), result.plan.tasks.map((task) => task.pid).sort(), 'one track per task');
    for (const task of result.plan.tasks) {
      t.match(names.get(task.pid), new RegExp(`^task ${task.pid} \\(.+\\)$`), `task ${task.pid} named with its comm`);
      const stages = trace.traceEvents
        .filter((e): e is TraceEvent & { dur: number } => e.pid === task.pid && e.cat === 'stage')
        .sort((a, b) => a.ts - b.ts || a.dur - b.dur); // a stage passed by takes no time: it ends where the next starts
      const seen = stages.map((e) => e.name);
      t.same(seen, STAGES.slice(0, seen.length), `task ${task.pid}: stages in the machine's order (${seen.length})`);
      t.ok(seen.length >= 5, 'at least up to the barrier');
      for (let i = 1; i < stages.length; i++) t.ok(stages[i]!.ts >= stages[i - 1]!.ts + stages[i - 1]!.dur - 1, `task ${task.pid}: ${seen[i]} after ${seen[i - 1]}`);
    }
    const steps = trace.traceEvents.filter((e): e is TraceEvent & { dur: number } => e.pid === ORCHESTRATOR_PID && e.cat === 'step');
    const sum = steps.reduce((total, s) => total + s.dur, 0) / 1000;
    // The restore's own total, from its first step to its last; the wall time around restore() also
    // holds module loading on a first call, so the steps must fit inside it but need not fill it.
    const machineTotal = Math.max(...result.timings.steps.map((s) => s.end ?? s.start)) - Math.min(...result.timings.steps.map((s) => s.start));
    t.ok(sum <= measured, `steps (${sum.toFixed(1)} ms) fit in the wall time of restore() (${measured.toFixed(1)} ms)`);
    t.ok(Math.abs(sum - machineTotal) <= Math.max(2, machineTotal * 0.1), `steps add up to ${sum.toFixed(1)} of the restore's measured ${machineTotal.toFixed(1)} ms`);
    // The trace draws the steps from the machine's own step events: the same figures.
    for (const timing of result.timings.steps) {
      const span = steps.find((s) => s.name === timing.step);
      const machineMs = timing.end! - timing.start;
      const traceMs = (span?.dur ?? NaN) / 1000;
      t.ok(Math.abs(traceMs - machineMs) < 0.001, `${timing.step}: trace ${traceMs.toFixed(3)} ms, machine ${machineMs.toFixed(3)} ms`);
    }
    const ordered = steps.sort((a, b) => a.ts - b.ts);
    for (let i = 1; i < ordered.length; i++) t.ok(Math.abs(ordered[i]!.ts - ordered[i - 1]!.ts - ordered[i - 1]!.dur) < 1, `${ordered[i]!.name} starts where ${ordered[i - 1]!.name} ends`);
    await result.kill();
  });
}
