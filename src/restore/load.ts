// The load step: open and validate the checkpoint, then decode every task's images (core per
// thread, mm, ids, fs, fdinfo, pagemap checked against pages-N.img) into plain TaskImageSets and
// the TaskPlans the planner orders. Bad input is an ImageError naming file and offset, before
// anything is touched (but for the thread cores of a task with many threads: they are read
// and decoded while the restore goes on, and a bad one fails the threads stage, which waits for
// them). Large trees can decode in a piscina pool (load-worker.ts).
import { openCheckpoint, readPagemap, type Checkpoint, type Entry, type FdinfoEntry, type PstreeTask } from '../images/index.js';
import { StageError } from '../errors.js';
import type { TaskPlan } from '../resources/types.js';
import type { SharedFdTable, TaskImageSet } from './context.js';
import { withFdsInFlight } from './in-flight.js';

export interface Loaded {
  readonly checkpoint: Checkpoint;
  readonly tasks: TaskPlan[];
  readonly images: Map<number, TaskImageSet>;
}

/**
 * From this many threads on, a task's other thread cores are read and decoded after the load
 * step, in slices between other work (see decodeLater): a restore does not need them before its
 * threads stage, and until then the main thread mostly waits on the tracer (fork, barrier,
 * mapping the address space). 10,000 thread cores are 0.5-1 s of decoding.
 */
export const DEFER_THREAD_CORES_FROM = 64;
/** Cores decoded per slice: a few ms, so the work in between is never held up long. */
const CORES_PER_SLICE = 128;
/** Core files per read on a libuv worker (a multiple of CORES_PER_SLICE). */
const READ_CHUNK = 1024;
/** A thread core is ~1.2 KiB; a larger one is read by checkpoint.core() instead. */
const MAX_CORE_BYTES = 64 * 1024;

/** Where each file of a readSmallFiles answer starts in its data. */
function withOffsets(read: { data: Buffer; sizes: Buffer }): { data: Buffer; sizes: Buffer; offsets: number[] } {
  const offsets: number[] = [];
  for (let i = 0, at = 0; i * 4 < read.sizes.length; i++) {
    offsets.push(at);
    at += Math.max(0, read.sizes.readInt32LE(i * 4));
  }
  return { ...read, offsets };
}

/** Where a task's deferred decoding is: `slice` settles as each slice is done (or fails). */
interface DeferredCores {
  readonly all: Promise<void>;
  slice: Promise<void>;
  settle?: (error?: unknown) => void;
  finished: boolean;
  error?: unknown;
}

const coresPending = new WeakMap<ReadonlyMap<number, unknown>, DeferredCores>();

function nextSlice(state: DeferredCores): void {
  state.slice = new Promise<void>((resolve, reject) => {
    state.settle = (error) => (error === undefined ? resolve() : reject(error));
  });
  state.slice.catch(() => {}); // a failure reaches whoever waits, never as an unhandled rejection
}

/**
 * Resolves once every thread core of the task is in `images.cores` (at once when none was
 * deferred); rejects with the ImageError of a core that failed to decode. Every user of another
 * thread's core runs in or after the threads stage, which waits for this (or threadCoreDecoded).
 */
export function threadCoresReady(images: Pick<TaskImageSet, 'cores'>): Promise<void> {
  return coresPending.get(images.cores)?.all ?? Promise.resolve();
}

/**
 * undefined when thread `tid`'s core is in `images.cores` already (or is not to come); otherwise
 * a promise of it, so the threads stage can start on the first threads while later ones decode.
 */
export function threadCoreDecoded(images: Pick<TaskImageSet, 'cores'>, tid: number): Promise<void> | undefined {
  const state = coresPending.get(images.cores);
  if (!state || images.cores.has(tid)) return undefined;
  return (async () => {
    while (!images.cores.has(tid) && !state.finished) await state.slice;
    if (state.error !== undefined) throw state.error;
  })();
}

/**
 * Decodes `tids`' cores into `cores` a slice at a time, letting other work run in between. The
 * files are read on a libuv worker, READ_CHUNK at a time and one chunk ahead: their
 * open/read/close were ~120 ms of the main thread per 10,000 cores. One chunk in flight, not
 * all: the libuv pool's 4 threads serve the rest of the restore too (all at once held up the
 * plan step by 30-50 ms).
 */
async function decodeLater(checkpoint: Checkpoint, tids: readonly number[], cores: Map<number, Entry>, state: DeferredCores): Promise<void> {
  const { native } = await import('../actors/native.js'); // not at the top: the pool's workers import this file too
  const readChunk = (from: number) => {
    if (from >= tids.length) return undefined;
    const read = native.readSmallFiles(tids.slice(from, from + READ_CHUNK).map((tid) => checkpoint.corePath(tid)), MAX_CORE_BYTES);
    read.catch(() => {}); // awaited in turn below
    return read;
  };
  let ahead = readChunk(0);
  try {
    let read: { data: Buffer; sizes: Buffer; offsets: number[] } | undefined;
    for (let i = 0; i < tids.length; i += CORES_PER_SLICE) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const end = Math.min(i + CORES_PER_SLICE, tids.length);
      for (let k = i; k < end; k++) {
        if (k % READ_CHUNK === 0) {
          read = withOffsets(await ahead!);
          ahead = readChunk(k + READ_CHUNK);
        }
        const size = read!.sizes.readInt32LE((k % READ_CHUNK) * 4);
        const at = read!.offsets[k % READ_CHUNK]!;
        // A file the worker could not read whole is read again here, which words its error.
        cores.set(tids[k]!, size < 0 ? checkpoint.core(tids[k]!) : checkpoint.coreFrom(tids[k]!, read!.data.subarray(at, at + size)));
      }
      const settle = state.settle!;
      if (end === tids.length) state.finished = true;
      else nextSlice(state);
      settle();
    }
  } catch (err) {
    state.error = err;
    state.finished = true;
    state.settle!(err);
    throw err;
  }
}

/**
 * Decodes one task's images from an open checkpoint. `deferThreads`: a task with many threads
 * gets its other threads' cores later (threadCoresReady); the pool's workers decode everything.
 */
export function decodeTask(checkpoint: Checkpoint, pid: number, options: { deferThreads?: boolean } = {}): TaskImageSet {
  const task = checkpoint.task(pid);
  const core = checkpoint.core(pid);
  let cores: Map<number, Entry>;
  if (options.deferThreads && task.threads.length >= DEFER_THREAD_CORES_FROM && task.threads[0] === pid && !checkpoint.isZombie(pid)) {
    cores = new Map([[pid, core]]); // the others follow in thread order
    const state = { finished: false } as DeferredCores;
    nextSlice(state);
    const all = decodeLater(checkpoint, task.threads.slice(1), cores, state);
    all.catch(() => {}); // reported through threadCoresReady, not as an unhandled rejection
    coresPending.set(cores, Object.assign(state, { all }));
  } else {
    cores = new Map(task.threads.map((tid) => [tid, tid === pid ? core : checkpoint.core(tid)]));
  }
  if (checkpoint.isZombie(pid)) return { pid, cores, core, fds: [] };
  const ids = checkpoint.ids(pid);
  const all = checkpoint.has(`fdinfo-${ids.files_id}.img`) ? checkpoint.fdinfo(ids.files_id) : [];
  const fdTable = sharedFdTable(checkpoint, pid, ids.files_id, all);
  // A task sharing its table gets no fds of its own: the owner restores each once, for both.
  const fds = fdTable && fdTable.owner !== pid ? [] : all;
  readPagemap(checkpoint, pid); // runs fit in pages-N.img, or an ImageError now
  return { pid, cores, core, mm: checkpoint.mm(pid), ids, fs: checkpoint.fs(pid), fds, ...(fdTable ? { fdTable } : {}) };
}

const tablesCache = new WeakMap<Checkpoint, Map<number, PstreeTask[]>>();

/** Live tasks by files_id, in tree order (computed once per checkpoint: trees can be large). */
function holdersOfTables(checkpoint: Checkpoint): Map<number, PstreeTask[]> {
  let tables = tablesCache.get(checkpoint);
  if (tables) return tables;
  tables = new Map();
  for (const task of checkpoint.tasks) {
    if (checkpoint.isZombie(task.pid)) continue;
    const id = checkpoint.ids(task.pid).files_id;
    const list = tables.get(id);
    if (list) list.push(task);
    else tables.set(id, [task]);
  }
  tablesCache.set(checkpoint, tables);
  return tables;
}

/**
 * The table `filesId` when live tasks other than `pid` hold it too (CLONE_FILES). Only a task
 * that shares its parent's table can be made (its parent's helper forks it with CLONE_FILES):
 * any other sharing is refused here, before anything is touched.
 */
export function sharedFdTable(checkpoint: Checkpoint, pid: number, filesId: number, fds: readonly FdinfoEntry[]): SharedFdTable | undefined {
  const holders = holdersOfTables(checkpoint).get(filesId) ?? [];
  if (holders.length < 2) return undefined;
  const owner = holders[0]!;
  for (const holder of holders.slice(1)) {
    if (holders.some((other) => other.pid === holder.ppid)) continue;
    throw new StageError({
      stage: 'plan',
      pid: holder.pid,
      resource: 'task-tree',
      message: `tasks ${owner.pid} and ${holder.pid} share one fd table (CLONE_FILES) but not as parent and child: not supported`,
    });
  }
  return { owner: owner.pid, slot: holders.findIndex((t) => t.pid === pid), size: holders.length, fds };
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
  return decodeCheckpoint(imagesDir, openCheckpoint(imagesDir), options);
}

/** The decoding half of loadCheckpoint, for a caller that acts on the open checkpoint first. */
export async function decodeCheckpoint(imagesDir: string, checkpoint: Checkpoint, options: LoadOptions = {}): Promise<Loaded> {
  const tasks = taskPlans(checkpoint);
  const workersFrom = options.workersFrom ?? 0;
  let images: Map<number, TaskImageSet>;
  if (workersFrom > 0 && tasks.length >= workersFrom) {
    const { decodeInWorkers } = await import('./load-pool.js');
    images = await decodeInWorkers(imagesDir, tasks.map((t) => t.pid), options.signal);
  } else {
    images = new Map(tasks.map((t) => [t.pid, decodeTask(checkpoint, t.pid, { deferThreads: true })]));
  }
  withFdsInFlight(checkpoint, tasks, images);
  return { checkpoint, tasks, images };
}
