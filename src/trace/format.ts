// The Chrome Trace Event format as crr writes it (the JSON Object Format with `traceEvents`), and
// a checker for the fields Perfetto and chrome://tracing need, so a trace file that loads in
// `crr trace` is also one those viewers accept. Categories crr uses: step (restore machine
// states), stage and task-state (task machine states), wait (a task waiting for the tree),
// resource, native (batches a resource records), worker, progress (counters), __metadata.
import { readFileSync } from 'node:fs';
import { CrrError } from '../errors.js';

/** The orchestrator's process track; tasks use their own PIDs, which are never 0. */
export const ORCHESTRATOR_PID = 0;

export interface TraceEvent {
  name: string;
  cat: string;
  ph: 'X' | 'M' | 'C' | 'i' | 'B' | 'E';
  pid: number;
  tid: number;
  /** Microseconds. */
  ts: number;
  dur?: number;
  args?: Record<string, unknown>;
}

export interface TraceMeta {
  tool: string;
  command: string;
  [key: string]: unknown;
}

export interface ChromeTrace {
  traceEvents: TraceEvent[];
  displayTimeUnit?: 'ms' | 'ns';
  otherData?: TraceMeta;
}

const PHASES = new Set(['X', 'M', 'C', 'i', 'I', 'B', 'E', 'b', 'e', 'n', 's', 't', 'f']);

/** Problems that would make a viewer reject or misdraw the trace; empty when it is fine. */
export function validateChromeTrace(trace: unknown): string[] {
  const problems: string[] = [];
  const events = (trace as ChromeTrace | undefined)?.traceEvents;
  if (!Array.isArray(events)) return ['traceEvents is not an array'];
  events.forEach((e, i) => {
    const where = `event ${i} (${(e as TraceEvent)?.name})`;
    if (!e || typeof e !== 'object') return void problems.push(`${where}: not an object`);
    if (typeof e.name !== 'string') problems.push(`${where}: name is not a string`);
    if (!PHASES.has(e.ph)) problems.push(`${where}: unknown ph ${String(e.ph)}`);
    for (const field of ['ts', 'pid', 'tid'] as const) {
      if (typeof e[field] !== 'number' || !Number.isFinite(e[field])) problems.push(`${where}: ${field} is not a finite number`);
    }
    if (e.ph === 'X' && (typeof e.dur !== 'number' || !(e.dur >= 0))) problems.push(`${where}: complete event without dur >= 0`);
    if (e.ph === 'M' && typeof e.args?.name !== 'string' && typeof e.args?.sort_index !== 'number') problems.push(`${where}: metadata without args`);
  });
  return problems;
}

/** Read a trace file; a file that is not a Chrome trace is an error naming what is wrong. */
export function readTraceFile(path: string): ChromeTrace {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CrrError(`${path}: not a JSON trace file (${(err as Error).message})`, 2);
  }
  // The JSON Array Format (a bare list of events) is valid Chrome trace too.
  const trace = Array.isArray(parsed) ? { traceEvents: parsed as TraceEvent[] } : (parsed as ChromeTrace);
  const problems = validateChromeTrace(trace);
  if (problems.length) throw new CrrError(`${path}: not a Chrome trace: ${problems.slice(0, 3).join('; ')}`, 2);
  return trace;
}
