// `crr plan -D DIR [--format text|json|mermaid|dot]`: the restore plan of a checkpoint (stage
// order of resource kinds, who creates and who receives each shared object), without restoring
// and without the machine checks a restore makes (the checkpoint may come from another machine).
import { summariseCheckpoint } from './show.js';
import { UsageError } from '../../errors.js';
import { options } from '../args.js';
import { buildPlan } from '../../plan/plan.js';
import { PLAN_FORMATS, renderPlan, type PlanFormat } from '../../plan/render.js';
import { registry } from '../../resources/registry.js';
import { describeTasks } from '../../restore/describe.js';
import { loadCheckpoint } from '../../restore/load.js';

export function parsePlanArgs(argv: string[]): { imagesDir: string; format: PlanFormat } {
  let imagesDir: string | undefined;
  let format: PlanFormat = 'text';
  for (const { arg, value } of options(argv)) {
    if (arg === '-D' || arg === '--images-dir') imagesDir = value();
    else if (arg === '--format') {
      const v = value();
      if (!(PLAN_FORMATS as readonly string[]).includes(v)) throw new UsageError(`--format must be one of ${PLAN_FORMATS.join(', ')}`);
      format = v as PlanFormat;
    } else if (arg === '-h' || arg === '--help') throw new UsageError('usage: crr plan -D DIR [--format text|json|mermaid|dot]');
    else throw new UsageError(`unsupported option '${arg}'`);
  }
  if (!imagesDir) throw new UsageError('-D/--images-dir DIR is required');
  return { imagesDir, format };
}

export async function run(argv: string[]): Promise<number> {
  const { imagesDir, format } = parsePlanArgs(argv);
  const { tasks, checkpoint, images } = await loadCheckpoint(imagesDir);
  const plan = buildPlan(registry, tasks, { checkpoint, images });
  process.stdout.write(renderPlan(plan, format));
  if (format === 'text') {
    const namespaces = summariseCheckpoint(imagesDir).namespaces;
    if (namespaces.length) process.stdout.write(`\nnamespaces the root's parent makes before the fork: ${namespaces.join('; ')}\n`);
    process.stdout.write(await describeTasks(imagesDir));
  }
  return 0;
}
