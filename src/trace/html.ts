// `crr trace FILE --html OUT`: one self-contained page (inline CSS, data and script; no network)
// that shows a recorded restore: the timeline of every task's stages with the critical path
// outlined, the slowest tasks and resources, a per-stage table and the machine diagram with the
// time spent in each state. Numbers are computed here (analyze.ts); the page only draws.
import { restoreMachine } from '../machines/restore.js';
import { taskMachine } from '../machines/task.js';
import { STAGES } from '../resources/types.js';
import { buildModel, criticalPath, machineStateTimes, resourceSummary, slowestTasks, stageSummary, type TraceModel } from './analyze.js';
import { describeMachine } from './diagram.js';
import type { ChromeTrace } from './format.js';
import { CLIENT, ERROR_HOOK } from './html-client.js';
import { escapeHtml, machineSvg, type StateTime } from './html-diagram.js';

const fmt = (msValue: number) => (msValue >= 1000 ? `${(msValue / 1000).toFixed(2)} s` : `${msValue.toFixed(msValue < 10 ? 2 : 1)} ms`);
const round = (n: number) => Math.round(n * 1000) / 1000;
/** Critical-path rows listed in the page; the timeline outlines all of them. */
const PATH_ROWS = 60;

function table(head: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const cell = (v: string | number, tag: string) => `<${tag}${typeof v === 'number' ? ' class="num"' : ''}>${escapeHtml(String(v))}</${tag}>`;
  return `<table><thead><tr>${head.map((h) => cell(h, 'th')).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((v) => cell(v, 'td')).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

/** The compact data the page script draws from: [pid, label, [stageIndex, start, busyEnd, end, ...], busy]. */
function timelineData(model: TraceModel, path: ReturnType<typeof criticalPath>) {
  const stages = [...STAGES] as string[];
  for (const task of model.tasks) for (const s of task.stages) if (!stages.includes(s.stage)) stages.push(s.stage);
  const index = new Map(stages.map((s, i) => [s, i]));
  return {
    total: round(model.total),
    stages,
    steps: model.steps.map((s) => [s.step, round(s.start), round(s.end)]),
    rows: model.tasks.map((task) => [
      task.pid,
      task.name,
      task.stages.flatMap((s) => [index.get(s.stage)!, round(s.start), round(s.busyEnd), round(s.end)]),
      round(task.busy),
    ]),
    critical: path.map((p) => [p.pid, index.get(p.stage)!, round(p.start), round(p.end)]),
  };
}

function diagrams(model: TraceModel): string {
  const times = machineStateTimes(model);
  const restoreTimes = new Map<string, StateTime>([...times.restore].map(([k, total]) => [k, { total, count: 1 }]));
  const taskTimes = new Map<string, StateTime>([...times.task].map(([k, v]) => [k, { total: v.total, count: v.tasks }]));
  return (
    `<h3>restore machine (time in each state)</h3>${machineSvg(describeMachine(restoreMachine), restoreTimes, false)}` +
    `<h3>task machine (mean time per task in each state, work and wait)</h3>${machineSvg(describeMachine(taskMachine), taskTimes, true)}`
  );
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #202124; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.facts span { margin-right: 18px; } .controls button, .controls select { margin-right: 6px; }
.timeline canvas { display: block; } #rows { height: 480px; overflow-y: auto; position: relative; border: 1px solid #ddd; }
#rows-canvas { position: sticky; top: 0; left: 0; } #rows-spacer { position: absolute; top: 0; left: 0; width: 1px; }
#legend .swatch { margin-right: 12px; white-space: nowrap; } #legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
#tip { position: fixed; background: #202124; color: #fff; padding: 4px 8px; border-radius: 4px; font-size: 12px; pointer-events: none; }
table { border-collapse: collapse; margin: 6px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 32px; }
#errors { color: #b00020; background: #fde7e9; padding: 8px; }
svg.machine .edge { fill: none; stroke: #555; stroke-width: 1.2; } svg.machine .edge.failure { stroke: #d93025; opacity: 0.25; }
svg.machine rect { stroke: #1a73e8; stroke-width: 1.2; } svg.machine .final rect { stroke-width: 3; }
svg.machine text { text-anchor: middle; font: 12px sans-serif; } svg.machine .key { font-weight: 600; }
`;

export function renderTraceHtml(trace: ChromeTrace, title = 'crr trace'): string {
  const model = buildModel(trace);
  const path = criticalPath(model);
  const pathWork = path.reduce((sum, p) => sum + (p.end - p.start), 0);
  const stages = stageSummary(model);
  const slow = slowestTasks(model, 15);
  const kinds = resourceSummary(model, 15);
  const slowSpans = [...model.resources, ...model.natives].sort((a, b) => b.end - b.start - (a.end - a.start)).slice(0, 15);
  const json = JSON.stringify(timelineData(model, path)).replace(/</g, '\\u003c');
  const pathRows = path.slice(0, PATH_ROWS).map((p) => [p.pid, p.stage, round(p.start), round(p.end - p.start)]);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<script>${ERROR_HOOK}</script><style>${STYLE}</style></head>
<body>
<pre id="errors" hidden></pre>
<h1>${escapeHtml(title)}</h1>
<div class="facts"><span>crr ${escapeHtml(model.command)}</span><span><b>${fmt(model.total)}</b> total</span><span>${model.tasks.length} tasks</span>
<span>${model.resources.length} resource spans</span><span>${model.natives.length} native batches</span><span>critical path: ${path.length} steps, ${fmt(pathWork)} of work</span></div>

<h2>Timeline</h2>
<div class="controls"><button id="zoom-in">zoom in</button><button id="zoom-out">zoom out</button><button id="zoom-fit">fit</button>
<select id="sort"><option value="pid">tasks by pid</option><option value="busy">busiest tasks first</option></select>
<span id="view"></span> · ctrl+wheel zooms; bars are work, grey is waiting for the tree, outlined bars are the critical path</div>
<div id="legend"></div>
<div class="timeline"><canvas id="steps"></canvas><canvas id="occupancy"></canvas>
<div id="rows"><div id="rows-spacer"></div><canvas id="rows-canvas"></canvas></div></div>
<div id="tip" hidden></div>

<h2>Per stage</h2>
${table(
  ['stage', 'tasks', 'work (sum)', 'mean', 'p95', 'max', 'slowest task', 'wall'],
  stages.map((s) => [s.stage, s.tasks, fmt(s.busy), fmt(s.mean), fmt(s.p95), fmt(s.max), s.slowestPid, fmt(s.wall)]),
)}
<div class="grid"><div><h2>Slowest tasks</h2>
${table(['task', 'work', 'stages'], slow.map((t) => [t.name, fmt(t.busy), t.stages.length]))}</div>
<div><h2>Slowest resources (per kind)</h2>
${table(['resource', 'stage', 'count', 'total', 'max', 'in task'], kinds.map((k) => [k.resource, k.stage, k.count, fmt(k.total), fmt(k.max), k.slowestPid]))}</div>
<div><h2>Slowest single spans</h2>
${table(['span', 'task', 'stage', 'time', 'syscalls', 'bytes'], slowSpans.map((s) => [s.name, s.pid, s.stage, fmt(s.end - s.start), s.syscalls ?? '', s.bytes ?? '']))}</div></div>

<h2>Machines</h2>
${diagrams(model)}

<h2>Critical path</h2>
<p>The chain of work where each step waited for the one before (its own previous stage, its parent's fork, the
phase barrier or a free slot): ${path.length} steps, ${fmt(pathWork)} of work in ${fmt(model.total)}.${path.length > PATH_ROWS ? ` First ${PATH_ROWS} shown.` : ''}</p>
${table(['task', 'stage', 'start (ms)', 'work (ms)'], pathRows)}

<script type="application/json" id="trace-data">${json}</script>
<script>${CLIENT}</script>
</body></html>
`;
}
