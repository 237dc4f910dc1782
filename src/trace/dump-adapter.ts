// `crr dump --trace FILE` (library option `trace` of dump()): turns the dump's own DumpEvents
// into the same Chrome trace a restore writes, so `crr trace FILE --html` and Perfetto read dumps
// too. The dump has no XState machine, so its stages (freeze, collect, write, finish) become the
// orchestrator's step spans, and each dumped task gets its own track with a `freeze` stage (the
// seizing of its threads) and a `collect` stage (its images and pages, a `pages` span inside).
// DumpEvents carry no start times: a span starts where the previous one of the same kind ended,
// which is exact because the dump does this work one task after another.
import { readFileSync, writeFileSync } from 'node:fs';
import type { DumpEvent, DumpOptions, DumpResult } from '../dump/index.js';
import { ORCHESTRATOR_PID, type ChromeTrace, type TraceEvent } from './format.js';
import { createTraceRecorder, type TraceRecorder, type TraceSpan } from './recorder.js';

export interface DumpTrace {
  readonly onEvent: (event: DumpEvent) => void;
  /** The dump failed: the open stage ends now and the trace says why. */
  failed(err: unknown): void;
  toChromeTrace(): ChromeTrace;
  write(path: string): void;
}

/** The orchestrator's sub-track for shared memory, dumped once for the whole tree. */
const SHMEM_TID = 1;

/** Thread group of a thread just seized (alive and stopped), or the tid itself if /proc says nothing. */
function threadGroupOf(tid: number): number {
  try {
    const match = /^Tgid:\s*(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, 'utf8'));
    return match ? Number(match[1]) : tid;
  } catch {
    return tid;
  }
}

/** Command name of a live task, for its track's title; undefined once it is gone. */
function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface DumpTraceOptions {
  readonly now?: () => number;
  /** Looks up a thread's process; tests with a fake tracer pass their own. */
  readonly threadGroup?: (tid: number) => number;
  readonly comm?: (pid: number) => string | undefined;
}

export function createDumpTrace(options: DumpTraceOptions = {}): DumpTrace {
  const recorder: TraceRecorder = createTraceRecorder({ now: options.now });
  const now = recorder.now;
  const threadGroup = options.threadGroup ?? threadGroupOf;
  const comm = options.comm ?? commOf;
  recorder.setMeta({ command: 'dump' });
  const steps: TraceEvent[] = [];
  const stages: TraceEvent[] = [];
  const threads = new Map<number, number[]>();
  const freezeOf = new Map<number, { start: number; end: number }>();
  let openStep: { name: string; start: number } | undefined;
  /** Where the next task's (or shared memory object's) work began. */
  let boundary = now();

  const span = (list: TraceEvent[], pid: number, tid: number, name: string, cat: string, start: number, end: number, args?: Record<string, unknown>) =>
    list.push({ name, cat, ph: 'X', pid, tid, ts: start * 1000, dur: Math.max(0, end - start) * 1000, ...(args ? { args } : {}) });

  // The recorder writes a span's stage name as given; the type only knows the restore's stages.
  const taskSpan = (s: Omit<TraceSpan, 'stage'> & { stage: 'freeze' | 'collect' }) => recorder.onSpan(s as unknown as TraceSpan);

  const closeStep = (time: number, args?: Record<string, unknown>) => {
    if (!openStep) return;
    span(steps, ORCHESTRATOR_PID, 0, openStep.name, 'step', openStep.start, time, { state: openStep.name, machine: 'dump', ...args });
    openStep = undefined;
  };

  const onEvent = (e: DumpEvent) => {
    const time = now();
    switch (e.type) {
      case 'stage':
        closeStep(time);
        openStep = { name: e.stage, start: time };
        boundary = time;
        return;
      case 'seized': {
        const pid = threadGroup(e.tid);
        const list = threads.get(pid) ?? [];
        if (!list.length) threads.set(pid, list);
        if (!list.includes(e.tid)) list.push(e.tid);
        taskSpan({ pid, tid: e.tid, stage: 'freeze', resource: 'seize', start: boundary, end: time });
        const freeze = freezeOf.get(pid);
        if (freeze) freeze.end = time;
        else freezeOf.set(pid, { start: boundary, end: time });
        boundary = time;
        return;
      }
      case 'pages':
        taskSpan({ pid: e.pid, stage: 'collect', resource: 'pages', start: time - e.ms, end: time, bytes: e.bytes });
        return;
      case 'task': {
        const name = comm(e.pid);
        if (name) recorder.nameTask(e.pid, name);
        const freeze = freezeOf.get(e.pid);
        if (freeze) span(stages, e.pid, e.pid, 'freeze', 'stage', freeze.start, freeze.end, { state: 'freeze' });
        span(stages, e.pid, e.pid, 'collect', 'stage', boundary, time, { state: 'collect', threads: e.threads, vmas: e.vmas, fds: e.fds });
        boundary = time;
        return;
      }
      case 'shmem':
        span(steps, ORCHESTRATOR_PID, SHMEM_TID, `shmem ${e.shmid}`, 'resource', boundary, time, { pages: e.pages, bytes: e.bytes });
        boundary = time;
        return;
      case 'done':
        closeStep(time);
        recorder.setMeta({ totalMs: e.ms, left: e.left, images: e.images.length });
        return;
    }
  };

  const toChromeTrace = (): ChromeTrace => {
    const base = recorder.toChromeTrace();
    const metadata = base.traceEvents.filter((e) => e.ph === 'M').map((e) =>
      // The recorder names track 0 after the restore machine; here it holds the dump's stages.
      e.pid === ORCHESTRATOR_PID && e.tid === 0 && e.name === 'thread_name' ? { ...e, args: { name: 'dump stages' } } : e,
    );
    const m = (name: string, pid: number, tid: number, args: Record<string, unknown>) => metadata.push({ name, cat: '__metadata', ph: 'M', pid, tid, ts: 0, args });
    if (steps.some((e) => e.tid === SHMEM_TID)) m('thread_name', ORCHESTRATOR_PID, SHMEM_TID, { name: 'shared memory' });
    for (const [pid, tids] of threads) {
      tids.forEach((tid, i) => {
        if (tid === pid) return; // the recorder named the main thread
        m('thread_name', pid, tid, { name: `thread ${tid}` });
        m('thread_sort_index', pid, tid, { sort_index: i + 1 });
      });
    }
    const spans = [...base.traceEvents.filter((e) => e.ph !== 'M'), ...steps, ...stages];
    spans.sort((a, b) => a.pid - b.pid || a.tid - b.tid || a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
    return { ...base, traceEvents: [...metadata, ...spans] };
  };

  return {
    onEvent,
    failed(err) {
      closeStep(now(), { failed: true });
      recorder.setMeta({ failed: err instanceof Error ? err.message : String(err) });
    },
    toChromeTrace,
    write(path) {
      writeFileSync(path, JSON.stringify(toChromeTrace()));
    },
  };
}

/** dump() with `trace`: records its events alongside the caller's and writes the file, also on failure. */
export async function tracedDump(file: string, opts: DumpOptions, run: (opts: DumpOptions) => Promise<DumpResult>): Promise<DumpResult> {
  const trace = createDumpTrace();
  try {
    return await run({ ...opts, onEvent: (e) => (trace.onEvent(e), opts.onEvent?.(e)) });
  } catch (err) {
    trace.failed(err);
    throw err;
  } finally {
    trace.write(file);
  }
}
