// The machines are built once per process and get everything per-restore as input: two restores
// running at once each use only their own environment, and a stage the plan gives a task no
// resource in is passed in one transition yet still shows as a stage (timings, task state, trace).
import t from 'tap';
import { runRestore } from '../src/machines/run.js';
import { STAGES, type Stage } from '../src/resources/types.js';
import { createTraceRecorder } from '../src/trace/recorder.js';
import { syntheticEnvironment, syntheticTree } from '../src/trace/synthetic.js';
import type { TraceEvent } from '../src/trace/format.js';

const WITH_WORK: readonly Stage[] = ['fork', 'memory'];

/** Synthetic kinds only in fork and memory; counts which stages ran a resource for which task. */
function sparseEnvironment(count: number, ran: Array<[number, Stage]>) {
  const env = syntheticEnvironment(syntheticTree(count, 2));
  const registry = env.registry
    .filter((kind) => WITH_WORK.includes(kind.stage))
    .map((kind) => ({ ...kind, restore: async (ctx: Parameters<typeof kind.restore>[0]) => (ran.push([ctx.pid, kind.stage]), kind.restore(ctx)) }));
  return { ...env, registry };
}

t.test('two restores at once each run only their own resources', async (t) => {
  const ranA: Array<[number, Stage]> = [];
  const ranB: Array<[number, Stage]> = [];
  const [a, b] = await Promise.all([runRestore(sparseEnvironment(3, ranA)), runRestore(sparseEnvironment(5, ranB))]);
  t.equal(a.tasks.length, 3);
  t.equal(b.tasks.length, 5);
  t.equal(ranA.length, 3 * WITH_WORK.length, 'restore A ran its 3 tasks x 2 stages');
  t.equal(ranB.length, 5 * WITH_WORK.length, 'restore B ran its 5 tasks x 2 stages');
  t.ok(ranA.every(([pid]) => pid <= 3), 'A never saw a task of B');
});

t.test('a stage with no resource for a task still counts as a stage, with no time spent', async (t) => {
  const ran: Array<[number, Stage]> = [];
  const recorder = createTraceRecorder();
  const result = await runRestore(sparseEnvironment(4, ran), recorder.attach({ concurrency: 2 }));
  t.same(new Set(ran.map(([, stage]) => stage)), new Set(WITH_WORK), 'resources ran only where the plan has them');
  for (const pid of [1, 2, 3, 4]) {
    const mine = result.timings.tasks.filter((timing) => timing.pid === pid);
    t.same(mine.map((timing) => timing.stage), [...STAGES], `task ${pid}: a timing for every stage, in order`);
    for (const timing of mine.filter((x) => !WITH_WORK.includes(x.stage))) t.equal(timing.end, timing.start, `task ${pid}: ${timing.stage} took no time`);
  }
  const trace = recorder.toChromeTrace();
  for (const pid of [1, 2, 3, 4]) {
    const stages = trace.traceEvents.filter((e): e is TraceEvent & { dur: number } => e.pid === pid && e.cat === 'stage').sort((x, y) => x.ts - y.ts || x.dur - y.dur); // a stage passed by takes no time: it ends where the next starts
    t.same(stages.map((e) => e.name), [...STAGES], `task ${pid}: the trace draws every stage`);
    const resume = stages.at(-1)!;
    const done = trace.traceEvents.find((e) => e.cat === 'step' && e.name === 'done')!;
    t.ok(resume.ts + resume.dur <= done.ts + 1, `task ${pid}: an empty resume ends before the restore's end, not with it`);
  }
});
