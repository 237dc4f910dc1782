// Reads a crr Chrome trace back into a model (orchestrator steps, each task's stages, resources,
// native batches, workers) and derives what a person asks first: where the time went per stage,
// which tasks and resources were slowest, and the critical path. Times are milliseconds from the
// trace's first event. Traces from the older minimal writer (resource spans only) still load:
// stages are then inferred from each task's resource spans.
import { STAGES } from '../resources/types.js';
import { ORCHESTRATOR_PID, type ChromeTrace, type TraceEvent } from './format.js';

export interface StageSpan {
  readonly stage: string;
  /** The task machine's state for it ('forked'), for the machine diagram. */
  readonly state: string;
  readonly start: number;
  /** When the task's own work ended; the rest (to `end`) it waited for the tree. */
  readonly busyEnd: number;
  readonly end: number;
}

export interface TaskTrack {
  readonly pid: number;
  readonly name: string;
  readonly threads: number;
  readonly stages: StageSpan[];
  busy: number;
}

export interface WorkSpan {
  readonly pid: number;
  readonly tid: number;
  readonly stage: string;
  readonly resource: string;
  readonly name: string;
  readonly start: number;
  readonly end: number;
  readonly syscalls?: number;
  readonly bytes?: number;
}

export interface StepSpan {
  readonly step: string;
  readonly start: number;
  readonly end: number;
}

export interface TraceModel {
  readonly command: string;
  /** Absolute start (ms on the recording clock). */
  readonly origin: number;
  readonly total: number;
  readonly steps: StepSpan[];
  readonly tasks: TaskTrack[];
  readonly resources: WorkSpan[];
  readonly natives: WorkSpan[];
  readonly workers: Array<{ readonly name: string; readonly start: number; readonly end: number }>;
  /** Task machine states that are not stages (idle), for the machine diagram. */
  readonly otherTaskStates: Array<{ readonly state: string; readonly start: number; readonly end: number }>;
}

const ms = (us: number) => us / 1000;

export function buildModel(trace: ChromeTrace): TraceModel {
  const spans = trace.traceEvents.filter((e): e is TraceEvent & { dur: number } => e.ph === 'X' && typeof e.dur === 'number');
  let origin = spans.length ? Infinity : 0;
  let end = -Infinity;
  for (const e of spans) {
    origin = Math.min(origin, ms(e.ts));
    end = Math.max(end, ms(e.ts + e.dur));
  }
  if (!spans.length) end = origin;
  const rel = (e: TraceEvent & { dur: number }) => ({ start: ms(e.ts) - origin, end: ms(e.ts + e.dur) - origin });

  const names = new Map<number, string>();
  const threads = new Map<number, Set<number>>();
  const workerNames = new Map<number, string>();
  for (const e of trace.traceEvents) {
    if (e.ph !== 'M') continue;
    if (e.name === 'process_name' && e.pid !== ORCHESTRATOR_PID) names.set(e.pid, String(e.args?.name));
    if (e.name === 'thread_name' && e.pid !== ORCHESTRATOR_PID) threads.set(e.pid, (threads.get(e.pid) ?? new Set()).add(e.tid));
    if (e.name === 'thread_name' && e.pid === ORCHESTRATOR_PID) workerNames.set(e.tid, String(e.args?.name));
  }

  const tasks = new Map<number, TaskTrack>();
  const taskOf = (pid: number) => {
    let task = tasks.get(pid);
    if (!task) {
      task = { pid, name: names.get(pid) ?? `task ${pid}`, threads: threads.get(pid)?.size ?? 1, stages: [], busy: 0 };
      tasks.set(pid, task);
    }
    return task;
  };
  const steps: StepSpan[] = [];
  const resources: WorkSpan[] = [];
  const natives: WorkSpan[] = [];
  const workers: TraceModel['workers'] = [];
  const otherTaskStates: TraceModel['otherTaskStates'] = [];
  const waits = new Map<number, Array<{ start: number; end: number }>>();
  const stageEvents: Array<[number, StageSpan]> = [];
  for (const e of spans) {
    const { start, end: stop } = rel(e);
    if (e.pid === ORCHESTRATOR_PID) {
      if (e.cat === 'step') steps.push({ step: e.name, start, end: stop });
      else if (e.cat === 'worker') workers.push({ name: workerNames.get(e.tid) ?? `worker ${e.tid}`, start, end: stop });
      continue;
    }
    if (e.cat === 'stage') stageEvents.push([e.pid, { stage: e.name, state: String(e.args?.state ?? e.name), start, busyEnd: stop, end: stop }]);
    else if (e.cat === 'wait') {
      const list = waits.get(e.pid) ?? [];
      if (list.length === 0) waits.set(e.pid, list);
      list.push({ start, end: stop });
    }
    else if (e.cat === 'task-state') otherTaskStates.push({ state: String(e.args?.state ?? e.name), start, end: stop });
    else {
      const work: WorkSpan = {
        pid: e.pid,
        tid: e.tid,
        stage: String(e.args?.stage ?? e.cat),
        resource: String(e.args?.resource ?? e.name),
        name: e.name,
        start,
        end: stop,
        ...(typeof e.args?.syscalls === 'number' ? { syscalls: e.args.syscalls } : {}),
        ...(typeof e.args?.bytes === 'number' ? { bytes: e.args.bytes } : {}),
      };
      (e.cat === 'native' ? natives : resources).push(work);
    }
  }
  for (const [pid, stage] of stageEvents) {
    const wait = waits.get(pid)?.find((w) => w.start >= stage.start - 1e-6 && w.end <= stage.end + 1e-6);
    taskOf(pid).stages.push(wait ? { ...stage, busyEnd: wait.start } : stage);
  }
  if (stageEvents.length === 0) inferStages(resources, taskOf);
  for (const task of tasks.values()) {
    task.stages.sort((a, b) => a.start - b.start);
    task.busy = task.stages.reduce((sum, s) => sum + (s.busyEnd - s.start), 0);
  }
  steps.sort((a, b) => a.start - b.start);
  return {
    command: String(trace.otherData?.command ?? 'restore'),
    origin,
    total: end - origin,
    steps,
    tasks: [...tasks.values()].sort((a, b) => a.pid - b.pid),
    resources,
    natives,
    workers,
    otherTaskStates,
  };
}

function inferStages(resources: readonly WorkSpan[], taskOf: (pid: number) => TaskTrack): void {
  const byKey = new Map<string, { pid: number; stage: string; start: number; end: number }>();
  for (const r of resources) {
    const key = `${r.pid}/${r.stage}`;
    const seen = byKey.get(key);
    byKey.set(key, seen ? { ...seen, start: Math.min(seen.start, r.start), end: Math.max(seen.end, r.end) } : { pid: r.pid, stage: r.stage, start: r.start, end: r.end });
  }
  for (const s of byKey.values()) taskOf(s.pid).stages.push({ stage: s.stage, state: s.stage, start: s.start, busyEnd: s.end, end: s.end });
}

export interface StageSummary {
  readonly stage: string;
  readonly tasks: number;
  /** Sum of every task's own work in the stage (waiting excluded). */
  readonly busy: number;
  readonly mean: number;
  readonly p95: number;
  readonly max: number;
  readonly slowestPid: number;
  /** From the first task entering the stage to the last one finishing its work. */
  readonly wall: number;
}

const stageRank = (stage: string) => {
  const i = (STAGES as readonly string[]).indexOf(stage);
  return i < 0 ? STAGES.length : i;
};

export function stageSummary(model: TraceModel): StageSummary[] {
  const byStage = new Map<string, Array<{ pid: number; span: StageSpan }>>();
  for (const task of model.tasks) for (const span of task.stages) {
      const list = byStage.get(span.stage) ?? [];
      if (list.length === 0) byStage.set(span.stage, list);
      list.push({ pid: task.pid, span });
    }
  return [...byStage.entries()]
    .sort(([a], [b]) => stageRank(a) - stageRank(b))
    .map(([stage, list]) => {
      const durations = list.map(({ pid, span }) => ({ pid, d: span.busyEnd - span.start })).sort((a, b) => a.d - b.d);
      const busy = durations.reduce((sum, x) => sum + x.d, 0);
      const slowest = durations[durations.length - 1]!;
      return {
        stage,
        tasks: list.length,
        busy,
        mean: busy / list.length,
        p95: durations[Math.min(durations.length - 1, Math.floor(durations.length * 0.95))]!.d,
        max: slowest.d,
        slowestPid: slowest.pid,
        wall: list.reduce((m, x) => Math.max(m, x.span.busyEnd), -Infinity) - list.reduce((m, x) => Math.min(m, x.span.start), Infinity),
      };
    });
}

export function slowestTasks(model: TraceModel, limit = 10): TaskTrack[] {
  return [...model.tasks].sort((a, b) => b.busy - a.busy).slice(0, limit);
}

export interface ResourceSummary {
  readonly resource: string;
  readonly stage: string;
  readonly count: number;
  readonly total: number;
  readonly max: number;
  readonly slowestPid: number;
}

/** Per resource kind, slowest total first. */
export function resourceSummary(model: TraceModel, limit = 10): ResourceSummary[] {
  const byKind = new Map<string, ResourceSummary>();
  for (const r of model.resources) {
    const d = r.end - r.start;
    const seen = byKind.get(r.resource);
    if (!seen) byKind.set(r.resource, { resource: r.resource, stage: r.stage, count: 1, total: d, max: d, slowestPid: r.pid });
    else byKind.set(r.resource, { ...seen, count: seen.count + 1, total: seen.total + d, ...(d > seen.max ? { max: d, slowestPid: r.pid } : {}) });
  }
  return [...byKind.values()].sort((a, b) => b.total - a.total).slice(0, limit);
}

export interface PathStep {
  readonly pid: number;
  readonly stage: string;
  readonly start: number;
  readonly end: number;
}

/**
 * The chain of task work that decided the restore's length: start from the work that ended
 * last and repeatedly step to the work that ended latest before it began (what it waited for:
 * its own previous stage, its parent's fork, the phase barrier or a concurrency slot). Time on
 * the path not covered by work is orchestrator overhead.
 */
export function criticalPath(model: TraceModel): PathStep[] {
  const work: PathStep[] = [];
  for (const task of model.tasks) for (const s of task.stages) work.push({ pid: task.pid, stage: s.stage, start: s.start, end: s.busyEnd });
  work.sort((a, b) => a.end - b.end);
  const path: PathStep[] = [];
  let index = work.length - 1;
  const epsilon = 1e-6;
  while (index >= 0) {
    const current = work[index]!;
    path.push(current);
    // Last index before `index` whose work ended by the time `current` started (binary search).
    let lo = 0;
    let hi = index - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (work[mid]!.end <= current.start + epsilon) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found >= 0) {
      // Among work ending at that same moment, prefer the task's own previous stage.
      for (let i = found; i >= 0 && work[i]!.end >= work[found]!.end - epsilon; i--) {
        if (work[i]!.pid === current.pid) {
          found = i;
          break;
        }
      }
    }
    index = found;
  }
  return path.reverse();
}

export function machineStateTimes(model: TraceModel): { restore: Map<string, number>; task: Map<string, { total: number; tasks: number }> } {
  const restore = new Map<string, number>();
  for (const s of model.steps) restore.set(s.step, (restore.get(s.step) ?? 0) + (s.end - s.start));
  const task = new Map<string, { total: number; tasks: number }>();
  const add = (state: string, time: number) => {
    const seen = task.get(state) ?? { total: 0, tasks: 0 };
    task.set(state, { total: seen.total + time, tasks: seen.tasks + 1 });
  };
  for (const t of model.tasks) for (const s of t.stages) add(s.state, s.end - s.start);
  for (const s of model.otherTaskStates) add(s.state, s.end - s.start);
  return { restore, task };
}
