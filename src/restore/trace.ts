// A minimal Chrome Trace Event file of one restore (`--trace FILE`): one process track per task
// with a span per resource per stage, and the orchestrator's steps on track 0. The richer
// recorder of issue 7 (src/trace/) can replace this; the file format stays the same.
import { writeFileSync } from 'node:fs';
import type { Timings } from '../machines/restore.js';
import type { Span } from '../resources/types.js';

interface TraceEvent {
  name: string;
  cat: string;
  ph: 'X' | 'M';
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  args?: Record<string, unknown>;
}

export function traceEvents(spans: readonly Span[], timings: Timings | undefined): TraceEvent[] {
  const events: TraceEvent[] = [{ name: 'process_name', cat: '__metadata', ph: 'M', pid: 0, tid: 0, args: { name: 'crr restore' } }];
  for (const step of timings?.steps ?? []) {
    if (step.end === undefined) continue;
    events.push({ name: step.step, cat: 'step', ph: 'X', pid: 0, tid: 0, ts: step.start * 1000, dur: (step.end - step.start) * 1000 });
  }
  const named = new Set<number>();
  for (const span of spans) {
    if (!named.has(span.pid)) {
      named.add(span.pid);
      events.push({ name: 'process_name', cat: '__metadata', ph: 'M', pid: span.pid, tid: span.pid, args: { name: `task ${span.pid}` } });
    }
    events.push({
      name: span.name ?? span.resource,
      cat: span.stage,
      ph: 'X',
      pid: span.pid,
      tid: span.pid,
      ts: span.start * 1000,
      dur: (span.end - span.start) * 1000,
      args: { stage: span.stage, resource: span.resource, ...(span.syscalls !== undefined ? { syscalls: span.syscalls } : {}), ...(span.bytes !== undefined ? { bytes: span.bytes } : {}) },
    });
  }
  return events;
}

export function writeTrace(file: string, spans: readonly Span[], timings: Timings | undefined): void {
  writeFileSync(file, JSON.stringify({ traceEvents: traceEvents(spans, timings), displayTimeUnit: 'ms' }));
}
