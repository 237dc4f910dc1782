// The load step: open and validate the checkpoint, then decode every task's images (core per
// thread, mm, ids, fs, fdinfo, pagemap checked against pages-N.img) into plain TaskImageSets and
// the TaskPlans the planner orders. Bad input is an ImageError naming file and offset, before
// anything is touched. Large trees can decode in a piscina pool (load-worker.ts).
import { openCheckpoint, readPagemap, type Checkpoint } from '../images/index.js';
import type { TaskPlan } from '../resources/types.js';
import type { TaskImageSet } from './context.js';

export interface Loaded {
  readonly checkpoint: Checkpoint;
  readonly tasks: TaskPlan[];
  readonly images: Map<number, TaskImageSet>;
}

/** Decodes one task's images from an open checkpoint. */
export function decodeTask(checkpoint: Checkpoint, pid: number): TaskImageSet {
  const task = checkpoint.task(pid);
  const cores = new Map(task.threads.map((tid) => [tid, checkpoint.core(tid)]));
  const core = cores.get(pid) ?? checkpoint.core(pid);
  if (checkpoint.isZombie(pid)) return { pid, cores, core, fds: [] };
  const ids = checkpoint.ids(pid);
  const fds = checkpoint.has(`fdinfo-${ids.files_id}.img`) ? checkpoint.fdinfo(ids.files_id) : [];
  readPagemap(checkpoint, pid); // runs fit in pages-N.img, or an ImageError now
  return { pid, cores, core, mm: checkpoint.mm(pid), ids, fs: checkpoint.fs(pid), fds };
}

export function taskPlans(checkpoint: Checkpoint): TaskPlan[] {
  return checkpoint.tasks.map((t) => ({
    pid: t.pid,
    ppid: t.ppid,
    pgid: t.pgid,
    sid: t.sid,
    threads: t.threads,
    ...(checkpoint.isZombie(t.pid) ? { zombie: true } : {}),
  }));
}

export interface LoadOptions {
  /** Decode in worker threads when the tree has at least this many tasks (0: never). */
  readonly workersFrom?: number;
  readonly signal?: AbortSignal;
}

export async function loadCheckpoint(imagesDir: string, options: LoadOptions = {}): Promise<Loaded> {
  const checkpoint = openCheckpoint(imagesDir);
  const tasks = taskPlans(checkpoint);
  const workersFrom = options.workersFrom ?? 0;
  let images: Map<number, TaskImageSet>;
  if (workersFrom > 0 && tasks.length >= workersFrom) {
    const { decodeInWorkers } = await import('./load-pool.js');
    images = await decodeInWorkers(imagesDir, tasks.map((t) => t.pid), options.signal);
  } else {
    images = new Map(tasks.map((t) => [t.pid, decodeTask(checkpoint, t.pid)]));
  }
  return { checkpoint, tasks, images };
}
