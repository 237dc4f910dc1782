// The trace recorder on a real run of the restore machine with fake resources (3 tasks, one with
// two threads): valid Chrome trace events, one process track per task named after it, stages in
// the machine's order without overlaps, resource and native spans nested in their stage, the
// orchestrator's steps tiling the measured total, and the recording hooks chained, not replacing.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runRestore } from '../src/machines/run.js';
import { STAGES } from '../src/resources/types.js';
import { ORCHESTRATOR_PID, validateChromeTrace, type TraceEvent } from '../src/trace/format.js';
import { createTraceRecorder } from '../src/trace/recorder.js';
import { buildModel, criticalPath } from '../src/trace/analyze.js';
import { syntheticEnvironment, syntheticTree } from '../src/trace/synthetic.js';

const EPS_US = 1; // timestamps are µs floats on one clock; allow rounding only

async function recordThreeTasks() {
  const recorder = createTraceRecorder();
  recorder.nameTask(1, 'init');
  let theirSpans = 0;
  let theirEvents = 0;
  const t0 = recorder.now();
  const result = await runRestore(
    syntheticEnvironment(syntheticTree(3, 2), { workUs: (pid) => 200 * pid }),
    recorder.attach({ onSpan: () => void theirSpans++, onEvent: () => void theirEvents++, concurrency: 2 }),
  );
  const measured = recorder.now() - t0;
  return { recorder, result, measured, theirSpans, theirEvents, trace: recorder.toChromeTrace() };
}

t.test('a 3-task restore becomes a valid Chrome trace with one track per task', async (t) => {
  const { trace, result, theirSpans, theirEvents, recorder } = await recordThreeTasks();
  t.same(validateChromeTrace(trace), [], 'every event has name, ph, ts, pid, tid (and dur for X)');
  t.same(validateChromeTrace({ traceEvents: [{ name: 'x', ph: 'X', ts: 1, pid: 1 }] }).length > 0, true, 'the checker rejects a bad event');
  const events = trace.traceEvents;
  const processNames = new Map(events.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => [e.pid, e.args!.name]));
  t.same([...processNames.keys()].sort(), [ORCHESTRATOR_PID, 1, 2, 3], 'orchestrator plus one process track per task');
  t.equal(processNames.get(1), 'task 1 (init)', 'a task named with its comm');
  t.equal(processNames.get(2), 'task 2');
  // syntheticTree gives every 5th task a second thread: tree of 3 has none, so check the main thread names.
  for (const pid of [1, 2, 3]) {
    t.ok(events.some((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === pid && e.tid === pid), `task ${pid} has its main thread sub-track`);
  }
  t.equal(result.plan.tasks.length, 3);
  t.ok(theirSpans >= 27 && theirEvents > 0, 'the caller\'s own hooks still ran');
  const file = join(mkdtempSync(join(tmpdir(), 'crr-trace-')), 'trace.json');
  t.teardown(() => rmSync(join(file, '..'), { recursive: true, force: true }));
  recorder.write(file);
  t.same(JSON.parse(readFileSync(file, 'utf8')).traceEvents.length, events.length, 'write() writes the same trace');
});

t.test('stages run in the machine order, never overlap, and contain their resources', async (t) => {
  const { trace } = await recordThreeTasks();
  for (const pid of [1, 2, 3]) {
    const mine = trace.traceEvents.filter((e): e is TraceEvent & { dur: number } => e.pid === pid && e.ph === 'X');
    const stages = mine.filter((e) => e.cat === 'stage').sort((a, b) => a.ts - b.ts);
    t.same(stages.map((e) => e.name), [...STAGES], `task ${pid}: one span per stage, in order`);
    for (let i = 1; i < stages.length; i++) {
      t.ok(stages[i]!.ts >= stages[i - 1]!.ts + stages[i - 1]!.dur - EPS_US, `task ${pid}: ${stages[i]!.name} starts after ${stages[i - 1]!.name} ends`);
    }
    for (const inner of mine.filter((e) => e.cat === 'resource' || e.cat === 'native' || e.cat === 'wait')) {
      const stage = stages.find((s) => inner.ts >= s.ts - EPS_US && inner.ts + inner.dur <= s.ts + s.dur + EPS_US);
      t.ok(stage, `task ${pid}: ${inner.cat} ${inner.name} lies inside a stage span`);
      if (inner.cat !== 'wait') t.equal(stage?.name, inner.args!.stage, `task ${pid}: ${inner.name} inside its own stage`);
    }
    const resources = mine.filter((e) => e.cat === 'resource').sort((a, b) => a.ts - b.ts);
    for (let i = 1; i < resources.length; i++) t.ok(resources[i]!.ts >= resources[i - 1]!.ts + resources[i - 1]!.dur - EPS_US, `task ${pid}: resources do not overlap`);
    t.equal(mine.filter((e) => e.cat === 'native').length, 1, `task ${pid}: the memory batch is recorded`);
  }
});

t.test('the orchestrator steps tile the restore and add up to the measured total', async (t) => {
  const { trace, result, measured } = await recordThreeTasks();
  const steps = trace.traceEvents.filter((e): e is TraceEvent & { dur: number } => e.pid === ORCHESTRATOR_PID && e.cat === 'step').sort((a, b) => a.ts - b.ts);
  t.same(
    steps.map((s) => s.name),
    ['load', 'plan', 'fork', 'namespaces', 'sharedFds', 'taskState', 'barrier', 'memory', 'resume', 'done'],
    'restore machine states in order',
  );
  for (let i = 1; i < steps.length; i++) t.ok(Math.abs(steps[i]!.ts - (steps[i - 1]!.ts + steps[i - 1]!.dur)) <= EPS_US, `${steps[i]!.name} starts where ${steps[i - 1]!.name} ends`);
  const sum = steps.reduce((total, s) => total + s.dur, 0) / 1000;
  t.ok(sum <= measured + 0.001 && sum >= measured * 0.8, `steps sum ${sum.toFixed(2)} ms of the measured ${measured.toFixed(2)} ms`);
  // The trace draws the steps from the machine's own step events: the same figures as the run's timings.
  for (const timing of result.timings.steps) {
    const span = steps.find((s) => s.name === timing.step)!;
    t.ok(Math.abs(span.ts - timing.start * 1000) <= EPS_US && Math.abs(span.ts + span.dur - timing.end! * 1000) <= EPS_US, `${timing.step}: trace and machine agree`);
  }
  const model = buildModel(trace);
  for (const task of model.tasks) t.ok(task.busy <= model.total + 1e-6, `task ${task.pid}: its work fits in the total`);
  const path = criticalPath(model);
  t.equal(path[path.length - 1]!.stage, 'resume', 'the critical path ends in resume');
  t.equal(path[0]!.stage, 'fork', 'and starts with a fork');
  t.equal(path[0]!.pid, 1, 'of the root');
});

t.test('a failed restore still closes every open span', async (t) => {
  const recorder = createTraceRecorder();
  const env = syntheticEnvironment(syntheticTree(3, 2));
  const failing = env.registry.map((kind) =>
    kind.stage === 'barrier' ? { ...kind, restore: async () => Promise.reject(new Error('fake barrier failure')) } : kind,
  );
  await t.rejects(runRestore({ ...env, registry: failing }, recorder.attach({})), /fake barrier failure/);
  const trace = recorder.toChromeTrace();
  t.same(validateChromeTrace(trace), []);
  const steps = trace.traceEvents.filter((e) => e.cat === 'step').map((e) => e.name);
  t.ok(steps.includes('rollback') && steps.includes('failed'), 'rollback and failed are on the orchestrator track');
  t.notOk(steps.includes('resume'), 'no step after the failure');
});
