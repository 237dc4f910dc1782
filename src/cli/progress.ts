// Live progress for long work (`crr restore`, `crr dump`): one stderr line, rewritten in place,
// with what a person waiting wants to know (step, tasks done, pages moved, MB/s). It draws only
// on a terminal and never with --json, so logs and pipes stay clean; redraws are throttled so a
// restore of thousands of tasks does not spend its time writing to the terminal.
//
// How the commands use it (see docs/TRACING.md):
//   const progress = createProgress({ stream: process.stderr, enabled: !args.json, label: 'restore' });
//   const hooks = restoreProgress(progress);          // { onEvent, onSpan } for restore()
//   try { await restore({ ..., onEvent: hooks.onEvent, onSpan: hooks.onSpan }) } finally { progress.done() }
// dump calls progress.update({ step, tasksDone, pages, bytes }) from its own DumpEvents.
import { PHASES, lastStageOf, type Phase } from '../machines/stages.js';

export interface ProgressFields {
  /** What is running now ('fork', 'memory', 'pages'). */
  step?: string;
  tasksDone?: number;
  tasksTotal?: number;
  pages?: number;
  /** Bytes moved so far; MB/s is derived from how fast this grows. */
  bytes?: number;
}

export interface Progress {
  update(fields: ProgressFields): void;
  /** Erase the line (the command prints its own final line). */
  done(): void;
  readonly enabled: boolean;
}

export interface ProgressOptions {
  readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** False with --json; on top of that, nothing is drawn unless the stream is a terminal. */
  readonly enabled?: boolean;
  readonly label?: string;
  readonly intervalMs?: number;
  readonly now?: () => number;
}

export function formatProgress(label: string, fields: ProgressFields, mbPerSecond: number | undefined): string {
  const parts = [label];
  if (fields.step) parts.push(fields.step);
  if (fields.tasksDone !== undefined) parts.push(`tasks ${fields.tasksDone}${fields.tasksTotal ? `/${fields.tasksTotal}` : ''}`);
  if (fields.pages !== undefined) parts.push(`pages ${fields.pages}`);
  if (fields.bytes !== undefined) parts.push(`${(fields.bytes / 1048576).toFixed(1)} MiB`);
  if (mbPerSecond !== undefined) parts.push(`${mbPerSecond.toFixed(1)} MB/s`);
  return parts.join(' · ');
}

export function createProgress(options: ProgressOptions): Progress {
  const enabled = (options.enabled ?? true) && options.stream.isTTY === true;
  const now = options.now ?? (() => performance.now());
  const interval = options.intervalMs ?? 100;
  const label = options.label ?? 'crr';
  const fields: ProgressFields = {};
  let lastDraw = -Infinity;
  let drawn = false;
  let rateFrom: { time: number; bytes: number } | undefined;
  let rate: number | undefined;

  const draw = (force: boolean) => {
    const time = now();
    if (!force && time - lastDraw < interval) return;
    if (fields.bytes !== undefined) {
      if (!rateFrom) rateFrom = { time, bytes: fields.bytes };
      else if (time > rateFrom.time) rate = (fields.bytes - rateFrom.bytes) / 1e6 / ((time - rateFrom.time) / 1000);
    }
    lastDraw = time;
    // A terminal without a size (a pty nobody sized) reports 0 columns: treat it as unknown.
    const width = (options.stream.columns || 100) - 1;
    options.stream.write(`\r\x1b[K${formatProgress(label, fields, rate).slice(0, width)}`);
    drawn = true;
  };

  return {
    enabled,
    update(next) {
      if (!enabled) return;
      const stepChanged = next.step !== undefined && next.step !== fields.step;
      Object.assign(fields, next);
      draw(stepChanged);
    },
    done() {
      if (enabled && drawn) options.stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}

/** The restore's onEvent/onSpan hooks that feed a progress line: steps, tasks per step, bytes. */
export function restoreProgress(progress: Progress, taskCount?: number) {
  let tasksDone = 0;
  let bytes = 0;
  let pages = 0;
  let lastStage: string | undefined;
  return {
    onEvent(e: { type: string; step?: string; stage?: string }) {
      if (e.type === 'step.start') {
        tasksDone = 0;
        // A task has finished a step once it finished the step's last stage (memory ends with finish).
        lastStage = e.step && Object.hasOwn(PHASES, e.step) ? lastStageOf(e.step as Phase) : undefined;
        progress.update({ step: e.step, tasksDone: 0, tasksTotal: taskCount });
      } else if (e.type === 'task.stage' && e.stage === lastStage) progress.update({ tasksDone: ++tasksDone });
    },
    onSpan(span: { bytes?: number }) {
      if (!span.bytes) return;
      bytes += span.bytes;
      pages += Math.ceil(span.bytes / 4096);
      progress.update({ bytes, pages });
    },
  };
}
