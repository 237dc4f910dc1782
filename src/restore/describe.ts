// Readable per-task details for `crr restore --dry-run` and `crr plan`: what each task gets
// (fds with their files and flags, cwd, root, umask, exe), read from the images alone.
import type { Entry } from '../images/index.js';
import { FD_TYPES } from '../images/index.js';
import { loadCheckpoint } from './load.js';

const FD_TYPE_NAMES = Object.fromEntries(Object.entries(FD_TYPES).map(([name, n]) => [n, name]));

export async function describeTasks(imagesDir: string): Promise<string> {
  const { checkpoint, tasks, images } = await loadCheckpoint(imagesDir, { workersFrom: 0 });
  const name = (id: number) => String(((checkpoint.files().get(id)?.['reg'] as Entry | undefined)?.['name']) ?? `file ${id}`);
  const lines = ['', 'tasks:'];
  for (const task of tasks) {
    const set = images.get(task.pid)!;
    lines.push(`  ${task.pid} (parent ${task.ppid || 'crr'}, session ${task.sid}, group ${task.pgid})${task.zombie ? ' zombie' : ''}`);
    if (!set.mm) continue;
    const exe = set.mm['exe_file_id'];
    if (exe !== undefined) lines.push(`    exe ${name(Number(exe))}`);
    if (set.fs) lines.push(`    cwd ${name(set.fs.cwd_id)}, root ${name(set.fs.root_id)}, umask 0${set.fs.umask.toString(8)}`);
    lines.push(`    ${task.threads.length} thread(s), ${((set.mm['vmas'] as unknown[]) ?? []).length} VMAs`);
    for (const fd of set.fds) {
      const kind = FD_TYPE_NAMES[fd.type] ?? String(fd.type);
      lines.push(`    fd ${fd.fd}: ${kind} ${fd.type === 1 ? name(fd.id) : `id ${fd.id}`}${fd.flags & 1 ? ' (cloexec)' : ''}`);
    }
  }
  return lines.join('\n') + '\n';
}
