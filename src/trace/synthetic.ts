// Synthetic restores for trace tests and the overhead bench: a task tree of any size and fake
// resource kinds (one per stage, plus a native-batch span in memory) that run through the real
// restore machine via runRestore, and a generator of large traces for the HTML renderer.
// Nothing here touches a process.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { RestoreEnvironment } from '../machines/run.js';
import { STAGES, type BaseTaskContext, type ResourceKind, type Stage, type TaskPlan } from '../resources/types.js';
import { TASK_STATE_OF } from '../machines/stages.js';
import { ORCHESTRATOR_PID, type ChromeTrace, type TraceEvent } from './format.js';

/** pid 1 is the root; task i's parent is task floor((i-2)/fanout)+1; every 5th task has 2 threads. */
export function syntheticTree(count: number, fanout = 8): TaskPlan[] {
  const tasks: TaskPlan[] = [];
  for (let pid = 1; pid <= count; pid++) {
    const ppid = pid === 1 ? 0 : Math.floor((pid - 2) / fanout) + 1;
    const threads = pid % 5 === 0 ? [pid, count + pid] : [pid];
    tasks.push({ pid, ppid, pgid: 1, sid: 1, threads });
  }
  return tasks;
}

/** Spin for `us` microseconds: stands in for native work that holds the JS thread. */
function spin(us: number): void {
  const until = performance.now() + us / 1000;
  while (performance.now() < until);
}

export interface SyntheticOptions {
  /** Busy microseconds per resource per task (default 0: the restore machine's own cost only). */
  readonly workUs?: (pid: number, stage: Stage) => number;
}

export function syntheticEnvironment(tasks: readonly TaskPlan[], options: SyntheticOptions = {}): RestoreEnvironment {
  const kind = (stage: Stage): ResourceKind<BaseTaskContext> => ({
    name: `fake-${stage}`,
    stage,
    images: [],
    async restore(ctx) {
      const begun = ctx.now();
      await yieldToLoop();
      spin(options.workUs?.(ctx.pid, stage) ?? 0);
      if (stage === 'memory') ctx.record({ name: 'fill pages batch', start: begun, end: ctx.now(), syscalls: 3, bytes: 4096 * ctx.pid });
    },
  });
  return {
    registry: STAGES.map(kind),
    loadTasks: async () => tasks,
    contextFor: (base) => base,
    rollback: async () => undefined,
  };
}

/**
 * A trace shaped like a recorded one, built directly (no machines): `count` tasks, each with
 * every stage, a resource span per stage and a wait at the end of each stage. For renderer
 * tests at sizes a real run would take too long to produce.
 */
export function syntheticTrace(count: number): ChromeTrace {
  const events: TraceEvent[] = [
    { name: 'process_name', cat: '__metadata', ph: 'M', pid: ORCHESTRATOR_PID, tid: 0, ts: 0, args: { name: 'crr restore (orchestrator)' } },
  ];
  const us = (ms: number) => Math.round(ms * 1000);
  let clock = 1;
  events.push({ name: 'load', cat: 'step', ph: 'X', pid: ORCHESTRATOR_PID, tid: 0, ts: 0, dur: us(1), args: { state: 'load' } });
  STAGES.forEach((stage, si) => {
    const phaseStart = clock;
    let phaseEnd = phaseStart;
    for (let pid = 1; pid <= count; pid++) {
      const start = phaseStart + ((pid * 13) % 97) / 1000;
      const work = 0.02 + ((pid * 31 + si * 7) % 53) / 500;
      phaseEnd = Math.max(phaseEnd, start + work);
      events.push({ name: `fake-${stage}`, cat: 'resource', ph: 'X', pid, tid: pid, ts: us(start), dur: us(work), args: { stage, resource: `fake-${stage}` } });
    }
    for (let pid = 1; pid <= count; pid++) {
      const start = phaseStart + ((pid * 13) % 97) / 1000;
      const work = 0.02 + ((pid * 31 + si * 7) % 53) / 500;
      events.push({ name: stage, cat: 'stage', ph: 'X', pid, tid: pid, ts: us(start), dur: us(phaseEnd - start), args: { state: TASK_STATE_OF[stage] } });
      events.push({ name: 'waiting for tree', cat: 'wait', ph: 'X', pid, tid: pid, ts: us(start + work), dur: us(phaseEnd - start - work), args: {} });
    }
    events.push({ name: stage, cat: 'step', ph: 'X', pid: ORCHESTRATOR_PID, tid: 0, ts: us(phaseStart), dur: us(phaseEnd - phaseStart), args: { state: stage } });
    clock = phaseEnd;
  });
  for (let pid = 1; pid <= count; pid++) events.push({ name: 'process_name', cat: '__metadata', ph: 'M', pid, tid: pid, ts: 0, args: { name: `task ${pid} (synthetic)` } });
  return { traceEvents: events, displayTimeUnit: 'ms', otherData: { tool: 'crr', command: 'restore' } };
}
