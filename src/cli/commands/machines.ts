// `crr machines [--format mermaid|dot|json]`: draws the restore and task machines from their own
// definitions (src/trace/diagram.ts), for docs/MACHINES.md and for anyone reading a trace.
import { UsageError } from '../../errors.js';
import { restoreMachine } from '../../machines/restore.js';
import { taskMachine } from '../../machines/task.js';
import { DIAGRAM_FORMATS, renderMachines, type DiagramFormat } from '../../trace/diagram.js';

export const MACHINES = [restoreMachine, taskMachine] as const;

export async function run(argv: string[]): Promise<number> {
  let format: DiagramFormat = 'mermaid';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = arg.startsWith('--format=') ? arg.slice('--format='.length) : arg === '--format' ? argv[++i] : undefined;
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(`usage: crr machines [--format ${DIAGRAM_FORMATS.join('|')}]\n`);
      return 0;
    }
    if (value === undefined) throw new UsageError(`unknown option '${arg}'`);
    if (!(DIAGRAM_FORMATS as readonly string[]).includes(value)) {
      throw new UsageError(`--format must be one of ${DIAGRAM_FORMATS.join(', ')} (got '${value}')`);
    }
    format = value as DiagramFormat;
  }
  process.stdout.write(renderMachines(MACHINES, format));
  return 0;
}
