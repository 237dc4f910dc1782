// Renders a bench result file (`npm run bench -- --json FILE`) as the Markdown tables of
// docs/PERFORMANCE.md: figures beside floors and ratios, targets, and per-step medians.
// Usage: node bench/report-md.js FILE
import { readFileSync } from 'node:fs';
import { cliNotes, mainCpuNote, warmupNote } from './lib/report.js';
import { ms } from './lib/stats.js';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = [];
out.push(`Run of ${report.date}, kernel ${report.kernel}, ${report.quick ? 'quick' : 'full'} mode, ${report.runs} restores per figure.`, '');
out.push('| workload | crr restore median (min..max) | dump | floor (native, same run) | ratio | note |', '|---|---|---|---|---|---|');
for (const r of report.rows) {
  const restore = r.error ? `not measured: ${r.error}` : `${ms(r.restore.median)} (${ms(r.restore.min)}..${ms(r.restore.max)})`;
  const floor = r.floor ? (r.floor.mbps !== undefined ? `${r.floor.label}: ${r.floor.mbps.toFixed(0)} MB/s` : `${r.floor.label}: ${ms(r.floor.ms)}`) : (r.floorError ?? '-');
  const ratio = r.ratio === undefined || r.error ? '-' : r.kind === 'memory' ? `${(r.ratio * 100).toFixed(0)}% of floor MB/s` : `${r.ratio.toFixed(1)}x`;
  const notes = [r.incomplete && `INCOMPLETE: ${r.incomplete}`, r.memoryMbps !== undefined && `${r.memoryMbps.toFixed(0)} MB/s`, r.mainCpu && mainCpuNote(r), r.warmupMs !== undefined && warmupNote(r), r.note].filter(Boolean).join('; ');
  out.push(`| ${r.name} | ${restore} | ${r.dump ? ms(r.dump.ms) : '-'} | ${floor} | ${ratio} | ${notes} |`);
}
for (const r of report.rows.filter((r) => r.cli)) {
  out.push('', `${r.name}:`, '', ...cliNotes(r).map((line) => `- ${line}`));
}
out.push('', '| target | verdict | value |', '|---|---|---|');
for (const t of report.targets) out.push(`| ${t.label} | ${t.verdict} | ${t.value ?? ''} |`);
out.push('', 'Median time per restore step (ms):', '');
const steps = [...new Set(report.rows.flatMap((r) => (r.steps ?? []).map(([s]) => s)))];
out.push(`| workload | ${steps.join(' | ')} |`, `|---|${steps.map(() => '---|').join('')}`);
for (const r of report.rows.filter((r) => r.steps?.length)) {
  const by = new Map(r.steps);
  out.push(`| ${r.name} | ${steps.map((s) => (by.has(s) ? by.get(s).toFixed(1) : '-')).join(' | ')} |`);
}
console.log(out.join('\n'));
