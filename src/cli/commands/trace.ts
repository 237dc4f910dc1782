// `crr trace FILE [--html OUT.html] [--json]`: read a trace recorded with `--trace` (Chrome
// Trace Event JSON, the file Perfetto opens) and either print a text summary or write the
// self-contained HTML report. --json prints the summary numbers for scripts.
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { UsageError } from '../../errors.js';
import { buildModel, criticalPath, resourceSummary, slowestTasks, stageSummary } from '../../trace/analyze.js';
import { readTraceFile } from '../../trace/format.js';
import { renderTraceHtml } from '../../trace/html.js';
import { renderTraceText } from '../../trace/text.js';

const USAGE = 'usage: crr trace FILE [--html OUT.html] [--json]';

export async function run(argv: string[]): Promise<number> {
  let file: string | undefined;
  let html: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--html') {
      html = argv[++i];
      if (html === undefined) throw new UsageError('--html needs a file name');
    } else if (arg.startsWith('--html=')) html = arg.slice('--html='.length);
    else if (arg === '--json') json = true;
    else if (arg === '-h' || arg === '--help') throw new UsageError(USAGE);
    else if (arg.startsWith('-')) throw new UsageError(`unsupported option '${arg}'`);
    else if (file === undefined) file = arg;
    else throw new UsageError(`one trace file at a time (${USAGE})`);
  }
  if (file === undefined) throw new UsageError(USAGE);
  const trace = readTraceFile(file);
  if (html) {
    writeFileSync(html, renderTraceHtml(trace, `crr trace: ${basename(file)}`));
    process.stderr.write(`crr trace: wrote ${html}\n`);
  }
  if (json) {
    const model = buildModel(trace);
    const summary = {
      command: model.command,
      totalMs: model.total,
      tasks: model.tasks.length,
      steps: model.steps,
      stages: stageSummary(model),
      slowestTasks: slowestTasks(model).map((t) => ({ pid: t.pid, name: t.name, busyMs: t.busy })),
      resources: resourceSummary(model),
      criticalPath: criticalPath(model),
    };
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else if (!html) process.stdout.write(renderTraceText(trace));
  return 0;
}
