// Records one restore (or dump) as Chrome Trace Event JSON that Perfetto and chrome://tracing
// open. State spans come from XState's inspection API (every actor's transitions), never from
// logging calls in the machines; resource and native-batch spans come from runRestore's onSpan.
// The hooks only append small records to arrays: the trace is built once, in toChromeTrace(),
// so recording stays cheap while the restore runs (docs/TRACING.md has the measured overhead).
import { writeFileSync } from 'node:fs';
import type { InspectionEvent } from 'xstate';
import type { Span } from '../resources/types.js';
import { TASK_STATE_OF, taskStatePart } from '../machines/stages.js';
import { ORCHESTRATOR_PID, type ChromeTrace, type TraceEvent, type TraceMeta } from './format.js';

/** A span may name the thread it ran on (threads stage); it lands on that thread's sub-track. */
export type TraceSpan = Span & { readonly tid?: number };

/** The subset of runRestore's options the recorder fills in. */
export interface TraceHooks {
  readonly now: () => number;
  readonly inspect: (event: InspectionEvent) => void;
  readonly onSpan: (span: TraceSpan) => void;
  readonly onEvent: (event: { type: string; [key: string]: unknown }) => void;
}

export interface TraceRecorder extends TraceHooks {
  /** Time a worker thread spent on one job (image decoding), on the worker's own track. */
  markWorker(name: string, start: number, end: number, detail?: string): void;
  /** The command name of a task ("task 42 (nginx)"); restore knows it from core images. */
  nameTask(pid: number, comm: string): void;
  /** Extra facts for the trace's otherData (command, images dir, measured total). */
  setMeta(meta: Partial<TraceMeta>): void;
  /** Chain these hooks before whatever the caller already passes (both run). */
  attach<O extends object>(options: O & HookOptions): Omit<O, keyof TraceHooks> & TraceHooks;
  toChromeTrace(): ChromeTrace;
  write(path: string): void;
}

interface OpenState {
  key: string;
  top: string;
  start: number;
  /** The part of the stage it is in (running, ready, detached) and the machine's own state name. */
  sub?: { key: string; start: number; state: string };
}

interface ActorTrack {
  readonly pid: number;
  readonly tid: number;
  readonly machine: string;
  readonly isTask: boolean;
  open?: OpenState;
  /** Reached a final state or stopped: later snapshots (stop notifications) add nothing. */
  finished?: boolean;
}

const STAGE_OF_TASK_STATE = new Map(Object.entries(TASK_STATE_OF).map(([stage, state]) => [state, stage]));

/**
 * ['forked', 'running'] for the task state `forked`, ['forked', 'ready'] for `forkedReady`: one
 * stage span covers a stage's running and its wait. Other states (and the restore machine's) as is.
 */
function topAndSub(value: unknown): [string, string | undefined] {
  const state = String(value); // both machines are flat
  const part = taskStatePart(state);
  return part ? [TASK_STATE_OF[part.stage], part.part] : [state, undefined];
}

type Inspect = ((event: InspectionEvent) => void) | { next?: (event: InspectionEvent) => void };
/** Hooks a caller may already pass to runRestore; attach() runs the recorder's first, then theirs. */
interface HookOptions {
  now?: () => number;
  inspect?: Inspect;
  onSpan?: (span: Span) => void;
  onEvent?: (event: never) => void;
}
const asFunction = (inspect: Inspect | undefined) => (typeof inspect === 'function' ? inspect : inspect?.next?.bind(inspect));

export function createTraceRecorder(options: { now?: () => number } = {}): TraceRecorder {
  const now = options.now ?? (() => performance.now());
  const events: TraceEvent[] = [];
  const actors = new Map<string, ActorTrack>();
  const taskThreads = new Map<number, readonly number[]>();
  const taskNames = new Map<number, string>();
  const workerTids = new Map<string, number>();
  const orchestratorThreads = new Map<number, string>([[0, 'restore machine']]);
  const meta: TraceMeta = { tool: 'crr', command: 'restore' };
  let nextOrchestratorTid = 1;

  const span = (pid: number, tid: number, name: string, cat: string, start: number, end: number, args?: Record<string, unknown>) => {
    events.push({ name, cat, ph: 'X', pid, tid, ts: start * 1000, dur: Math.max(0, end - start) * 1000, ...(args ? { args } : {}) });
  };

  const closeSub = (track: ActorTrack, open: OpenState, time: number) => {
    if (!open.sub) return;
    // Only the wait between stages is drawn: the running part is what the resource spans fill.
    if (open.sub.key === 'ready') span(track.pid, track.tid, 'waiting for tree', 'wait', open.sub.start, time, { state: open.sub.state });
    open.sub = undefined;
  };
  const closeTop = (track: ActorTrack, time: number) => {
    const open = track.open;
    if (!open) return;
    closeSub(track, open, time);
    const stage = track.isTask ? STAGE_OF_TASK_STATE.get(open.top) : undefined;
    const cat = track.isTask ? (stage ? 'stage' : 'task-state') : track.machine === 'restore' ? 'step' : 'state';
    span(track.pid, track.tid, stage ?? open.top, cat, open.start, time, { state: open.top, machine: track.machine });
    track.open = undefined;
  };

  const trackFor = (event: InspectionEvent, snapshot: { machine?: { id?: string }; context?: unknown }): ActorTrack | undefined => {
    const sessionId = event.actorRef.sessionId;
    let track = actors.get(sessionId);
    if (track) return track;
    const machine = snapshot.machine?.id;
    if (!machine) return undefined; // promise actors: their work is already in the resource spans
    const task = machine === 'task' ? (snapshot.context as { task?: { pid: number; threads: readonly number[] } }).task : undefined;
    if (task) {
      taskThreads.set(task.pid, task.threads);
      track = { pid: task.pid, tid: task.pid, machine, isTask: true };
    } else if (machine === 'restore') {
      track = { pid: ORCHESTRATOR_PID, tid: 0, machine, isTask: false };
    } else {
      const tid = nextOrchestratorTid++;
      orchestratorThreads.set(tid, `${machine} (${(event.actorRef as { id?: string }).id ?? sessionId})`);
      track = { pid: ORCHESTRATOR_PID, tid, machine, isTask: false };
    }
    actors.set(sessionId, track);
    return track;
  };

  // A transition happens when its event arrives; the snapshot is reported only after the actors it
  // starts ran their synchronous part (a plan, a file read), so the arrival time is the truth.
  const arrivedAt = new Map<string, number>();
  const timeOf = (sessionId: string) => arrivedAt.get(sessionId) ?? now();

  // The restore machine's steps are drawn from its own step events, so the trace and the run's
  // timings are the same figures; inspection only adds the final state it ends in.
  let openStep: { step: string; start: number } | undefined;
  let lastStepEnd: number | undefined;
  const finishRestoreTrack = (track: ActorTrack, finalState: string, time: number) => {
    const start = lastStepEnd ?? time;
    const end = Math.max(start, time);
    span(track.pid, track.tid, finalState, 'step', start, end, { state: finalState, machine: track.machine });
    track.finished = true;
    // The restore machine ending stops its task actors: their open states end with it.
    for (const other of actors.values()) {
      closeTop(other, end);
      other.finished = true;
    }
  };

  const inspect = (event: InspectionEvent) => {
    if (event.type === '@xstate.event') {
      const sessionId = event.actorRef.sessionId;
      if (event.event.type === 'xstate.init' || actors.has(sessionId)) arrivedAt.set(sessionId, now());
      return;
    }
    if (event.type !== '@xstate.snapshot' && event.type !== '@xstate.microstep') return;
    const snapshot = event.snapshot as { value?: unknown; status?: string; machine?: { id?: string }; context?: unknown };
    if (snapshot.value === undefined) return;
    const track = trackFor(event, snapshot);
    if (!track || track.finished) return;
    const [top, sub] = topAndSub(snapshot.value);
    const sessionId = event.actorRef.sessionId;
    if (track.machine === 'restore') {
      // Its final snapshot comes after the last step's end event; a microstep comes before it.
      if (event.type === '@xstate.snapshot' && snapshot.status !== 'active') finishRestoreTrack(track, top, now());
      return;
    }
    const open = track.open;
    if (!open || open.top !== top) {
      const time = timeOf(sessionId);
      closeTop(track, time);
      track.open = { key: top, top, start: time, ...(sub ? { sub: { key: sub, start: time, state: String(snapshot.value) } } : {}) };
      // A last stage with nothing to do for this task is entered straight into its final state.
      if (sub === 'detached') {
        closeTop(track, time);
        track.finished = true;
      }
    } else if (open.sub?.key !== sub) {
      const time = timeOf(sessionId);
      closeSub(track, open, time);
      if (sub) open.sub = { key: sub, start: time, state: String(snapshot.value) };
      // The last stage ends in its final state: the task has nothing left to do.
      if (sub === 'detached') {
        closeTop(track, time);
        track.finished = true;
      }
    }
    if (snapshot.status !== undefined && snapshot.status !== 'active') {
      closeTop(track, timeOf(sessionId));
      track.finished = true;
    }
  };

  const onSpan = (s: TraceSpan) => {
    const native = s.name !== undefined;
    const args: Record<string, unknown> = { stage: s.stage, resource: s.resource };
    if (s.syscalls !== undefined) args.syscalls = s.syscalls;
    if (s.bytes !== undefined) args.bytes = s.bytes;
    span(s.pid, s.tid ?? s.pid, s.name ?? s.resource, native ? 'native' : 'resource', s.start, s.end, args);
  };

  let tasksDone = 0;
  const onEvent = (e: { type: string; [key: string]: unknown }) => {
    if (e.type === 'step.start') {
      tasksDone = 0;
      openStep = { step: String(e.step), start: Number(e.time) };
    } else if (e.type === 'step.end' && openStep) {
      lastStepEnd = Number(e.time);
      span(ORCHESTRATOR_PID, 0, openStep.step, 'step', openStep.start, lastStepEnd, { state: openStep.step, machine: 'restore' });
      openStep = undefined;
    } else if (e.type === 'task.stage') {
      tasksDone += 1;
      events.push({ name: 'tasks finished this step', cat: 'progress', ph: 'C', pid: ORCHESTRATOR_PID, tid: 0, ts: Number(e.end) * 1000, args: { tasks: tasksDone } });
    }
  };

  const markWorker = (name: string, start: number, end: number, detail?: string) => {
    let tid = workerTids.get(name);
    if (tid === undefined) {
      tid = nextOrchestratorTid++;
      workerTids.set(name, tid);
      orchestratorThreads.set(tid, name);
    }
    span(ORCHESTRATOR_PID, tid, detail ?? 'job', 'worker', start, end, detail ? { detail } : undefined);
  };

  const metadata = (): TraceEvent[] => {
    const out: TraceEvent[] = [];
    const m = (name: string, pid: number, tid: number, args: Record<string, unknown>) => out.push({ name, cat: '__metadata', ph: 'M', pid, tid, ts: 0, args });
    m('process_name', ORCHESTRATOR_PID, 0, { name: `crr ${meta.command} (orchestrator)` });
    m('process_sort_index', ORCHESTRATOR_PID, 0, { sort_index: -1 });
    for (const [tid, name] of orchestratorThreads) m('thread_name', ORCHESTRATOR_PID, tid, { name });
    const pids = new Set<number>([...taskThreads.keys()]);
    for (const e of events) if (e.pid !== ORCHESTRATOR_PID) pids.add(e.pid);
    for (const pid of [...pids].sort((a, b) => a - b)) {
      const comm = taskNames.get(pid);
      m('process_name', pid, pid, { name: comm ? `task ${pid} (${comm})` : `task ${pid}` });
      m('process_sort_index', pid, pid, { sort_index: pid });
      const threads = taskThreads.get(pid) ?? [pid];
      threads.forEach((tid, i) => {
        m('thread_name', pid, tid, { name: i === 0 ? `${pid} main` : `thread ${tid}` });
        m('thread_sort_index', pid, tid, { sort_index: i });
      });
    }
    return out;
  };

  const toChromeTrace = (): ChromeTrace => {
    // Enclosing spans first when they start together, so viewers nest them rather than stack.
    const sorted = events.slice().sort((a, b) => a.pid - b.pid || a.tid - b.tid || a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
    return { traceEvents: [...metadata(), ...sorted], displayTimeUnit: 'ms', otherData: { ...meta } };
  };

  const chain = <A>(mine: (a: A) => void, theirs?: (a: A) => void) => (theirs ? (a: A) => (mine(a), theirs(a)) : mine);

  return {
    now,
    inspect,
    onSpan,
    onEvent,
    markWorker,
    nameTask: (pid, comm) => void taskNames.set(pid, comm),
    setMeta: (extra) => void Object.assign(meta, extra),
    attach: (opts) => ({
      ...opts,
      now: opts.now ?? now,
      inspect: chain(inspect, asFunction(opts.inspect)),
      onSpan: chain(onSpan, opts.onSpan as ((s: TraceSpan) => void) | undefined),
      onEvent: chain(onEvent, opts.onEvent as ((e: { type: string; [key: string]: unknown }) => void) | undefined),
    }),
    toChromeTrace,
    write: (path) => writeFileSync(path, JSON.stringify(toChromeTrace())),
  };
}
