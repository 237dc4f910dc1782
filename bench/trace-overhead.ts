// Benchmark (not a test): what recording a trace costs a restore. 1,000 synthetic tasks go through
// the real restore machine (src/trace/synthetic.ts: fake resources, one per stage, plus a native
// batch span in memory), alternately with and without the trace recorder attached; medians of
// ROUNDS runs each. WORK_US is the busy time each fake resource spends per task, standing in for
// native work (0 = the machines' own cost only, the worst case for relative overhead).
// Wall time on a shared machine is noisy, so it also reports CPU time (user+system) per run and
// the time spent inside the recorder's own hooks (what recording adds besides XState's inspection).
// Run: node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/trace-overhead.ts [TASKS] [ROUNDS] [WORK_US...]
import { runRestore } from '../src/machines/run.js';
import { createTraceRecorder } from '../src/trace/recorder.js';
import { syntheticEnvironment, syntheticTree } from '../src/trace/synthetic.js';

const tasks = Number(process.argv[2] ?? 1000);
const rounds = Number(process.argv[3] ?? 5);
const works = process.argv.length > 4 ? process.argv.slice(4).map(Number) : [0, 100];
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

for (const workUs of works) {
  const env = syntheticEnvironment(syntheticTree(tasks), { workUs: () => workUs });
  const plain: number[] = [];
  const traced: number[] = [];
  const build: number[] = [];
  const plainCpu: number[] = [];
  const tracedCpu: number[] = [];
  const inHooks: number[] = [];
  const noopCpu: number[] = [];
  let events = 0;
  await runRestore(env); // warm-up (JIT, module loading)
  for (let round = 0; round < rounds; round++) {
    let cpu = process.cpuUsage();
    let t0 = performance.now();
    await runRestore(env);
    plain.push(performance.now() - t0);
    plainCpu.push(cpuMs(process.cpuUsage(cpu)));
    const recorder = createTraceRecorder();
    let hookMs = 0;
    const timed = <A>(fn: (a: A) => void) => (a: A) => {
      const start = performance.now();
      fn(a);
      hookMs += performance.now() - start;
    };
    const hooks = recorder.attach({});
    cpu = process.cpuUsage();
    t0 = performance.now();
    await runRestore(env, { ...hooks, inspect: timed(hooks.inspect), onSpan: timed(hooks.onSpan), onEvent: timed(hooks.onEvent) });
    traced.push(performance.now() - t0);
    tracedCpu.push(cpuMs(process.cpuUsage(cpu)));
    inHooks.push(hookMs);
    // XState's own inspection machinery with a hook that does nothing: the floor any recorder pays.
    cpu = process.cpuUsage();
    await runRestore(env, { inspect: () => undefined });
    noopCpu.push(cpuMs(process.cpuUsage(cpu)));
    t0 = performance.now();
    events = JSON.stringify(recorder.toChromeTrace()).length;
    build.push(performance.now() - t0);
  }
  const p = median(plain);
  const r = median(traced);
  console.log(
    `${tasks} tasks, ${workUs} µs work per resource: restore ${p.toFixed(1)} ms, traced ${r.toFixed(1)} ms, ` +
      `overhead ${(r - p).toFixed(1)} ms (${(((r - p) / p) * 100).toFixed(1)}%, ${(((r - p) / tasks) * 1000).toFixed(1)} µs/task); ` +
      `CPU ${median(plainCpu).toFixed(1)} ms plain, ${median(noopCpu).toFixed(1)} ms with a no-op inspect, ${median(tracedCpu).toFixed(1)} ms traced; inside the recorder's hooks ${median(inHooks).toFixed(1)} ms ` +
      `(${((median(inHooks) / p) * 100).toFixed(2)}%); building the JSON afterwards ${median(build).toFixed(1)} ms (${(events / 1048576).toFixed(1)} MiB)`,
  );
}
