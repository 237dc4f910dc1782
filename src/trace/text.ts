// `crr trace FILE` without --html: the same findings as the HTML page, as plain text for a
// terminal or a CI log: totals, the per-stage table, the slowest tasks and resource kinds, and
// the critical path's length.
import { buildModel, criticalPath, resourceSummary, slowestTasks, stageSummary } from './analyze.js';
import type { ChromeTrace } from './format.js';

const fmt = (msValue: number) => (msValue >= 1000 ? `${(msValue / 1000).toFixed(2)} s` : `${msValue.toFixed(msValue < 10 ? 2 : 1)} ms`);

function columns(head: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string[] {
  const all = [head, ...rows].map((r) => r.map(String));
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ').trimEnd());
}

export function renderTraceText(trace: ChromeTrace, limit = 10): string {
  const model = buildModel(trace);
  const path = criticalPath(model);
  const pathWork = path.reduce((sum, p) => sum + (p.end - p.start), 0);
  const out = [
    `crr ${model.command}: ${fmt(model.total)}, ${model.tasks.length} tasks, ${model.resources.length} resource spans, ${model.natives.length} native batches`,
    '',
    'steps:',
    ...columns(['step', 'time'], model.steps.map((s) => [s.step, fmt(s.end - s.start)])).map((l) => `  ${l}`),
    '',
    'per stage (work excludes waiting for the tree):',
    ...columns(
      ['stage', 'tasks', 'work', 'mean', 'p95', 'max', 'slowest', 'wall'],
      stageSummary(model).map((s) => [s.stage, s.tasks, fmt(s.busy), fmt(s.mean), fmt(s.p95), fmt(s.max), s.slowestPid, fmt(s.wall)]),
    ).map((l) => `  ${l}`),
    '',
    `slowest tasks:`,
    ...columns(['task', 'work'], slowestTasks(model, limit).map((t) => [t.name, fmt(t.busy)])).map((l) => `  ${l}`),
    '',
    'slowest resource kinds:',
    ...columns(
      ['resource', 'stage', 'count', 'total', 'max', 'in task'],
      resourceSummary(model, limit).map((k) => [k.resource, k.stage, k.count, fmt(k.total), fmt(k.max), k.slowestPid]),
    ).map((l) => `  ${l}`),
    '',
    `critical path: ${path.length} steps, ${fmt(pathWork)} of work in ${fmt(model.total)}` +
      (path.length ? ` (ends with task ${path[path.length - 1]!.pid} ${path[path.length - 1]!.stage})` : ''),
  ];
  return `${out.join('\n')}\n`;
}
