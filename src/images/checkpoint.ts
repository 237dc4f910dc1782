// A checkpoint directory as a whole: which images it holds, its inventory and task tree, typed
// accessors for each task's images, and the cross-reference checks (every task has its core, mm,
// ids and pagemap; each fd number once, pointing at a file that exists) that make the rest of
// crr able to trust what it reads. Images are read on first use and kept.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ImageError } from '../errors.js';
import { imageKindForFile, type Entry, type ImageKind } from './schema.js';
import { onlyEntryOf, readImage, readOnlyEntry, type ImageFile } from './reader.js';

/** A file name in the checkpoint directory itself: no separator, not '.' or '..'. */
const PLAIN_NAME = /^(?!\.\.?$)[^/]+$/;

/** One task of pstree.img. PIDs are as seen in the dumped tree's own PID namespace. */
export interface PstreeTask {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
}

/** ids-PID.img: the object ids a task may share with others. */
export interface TaskIds {
  vm_id: number;
  files_id: number;
  fs_id: number;
  sighand_id: number;
  [ns: string]: number | undefined;
}

/** One fd of fdinfo-N.img. `type` is the fd type number (REG 1, PIPE 2, ...). */
export interface FdinfoEntry {
  id: number;
  fd: number;
  type: number;
  flags: number;
  [more: string]: unknown;
}

export interface FsEntry {
  cwd_id: number;
  root_id: number;
  umask: number;
}

/** task_state of a zombie in the task core (TASK_DEAD); zombies have no mm, ids or memory. */
const TASK_DEAD = 2;
/** task_state of a task a stop signal had stopped. */
const TASK_STOPPED = 3;
const SIGSTOP = 19;
/** SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU. */
const STOP_SIGNALS = [19, 20, 21, 22];

/** Reads a field that must be a number (uint32/int32, or a 64-bit value that fits). */
export function num(entry: Entry, field: string, file: string): number {
  const v = entry[field];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(v);
  }
  throw new ImageError(file, 0, `a numeric field '${field}'`, v === undefined ? 'missing' : `found ${String(v)}`);
}

/** Enum fields may come as numbers or as names; names are looked up in `byName`. */
function enumNumber(value: unknown, byName: Record<string, number>): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value in byName) return byName[value]!;
  return -1;
}

export class Checkpoint {
  readonly dir: string;
  /** Every file in the directory with its image kind (files crr does not know are left out). */
  readonly imageFiles: ReadonlyMap<string, ImageKind>;
  /** Files in the directory that are not CRIU images crr knows. */
  readonly unknownFiles: readonly string[];
  private readonly cache = new Map<string, ImageFile>();
  /** Thread cores by tid, kept without their files (see decodeOnlyEntry). */
  private readonly coreCache = new Map<number, Entry>();
  private tasksCache: PstreeTask[] | undefined;
  /** The tasks by PID: load asks for each task by PID, and a search of the list per task was quadratic. */
  private tasksByPid: Map<number, PstreeTask> | undefined;
  private filesCache: Map<number, Entry> | undefined;
  /** ids and fdinfo decoded once: validation, the load and the fd-table check each ask per task. */
  private readonly idsCache = new Map<number, TaskIds>();
  private readonly fdinfoCache = new Map<number, readonly FdinfoEntry[]>();

  constructor(dir: string) {
    this.dir = dir;
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (err) {
      throw new ImageError(dir, 0, 'a readable checkpoint directory', (err as NodeJS.ErrnoException).code);
    }
    const files = new Map<string, ImageKind>();
    const unknown: string[] = [];
    for (const name of names) {
      const kind = imageKindForFile(name);
      if (kind) files.set(name, kind);
      else unknown.push(name);
    }
    this.imageFiles = files;
    this.unknownFiles = unknown;
  }

  /** join(dir, name); a plain file name (every image's) by entryPath, without path.join's normalizing. */
  path(name: string): string {
    return PLAIN_NAME.test(name) ? this.entryPath(name) : join(this.dir, name);
  }

  /** join(dir, name) for a plain file name of the directory: the prefix join gives, made once (path.join per thread core was ~20 ms per 10,000). */
  private entryPath(name: string): string {
    this.entryPrefix ??= join(this.dir, 'x').slice(0, -1);
    return this.entryPrefix + name;
  }

  private entryPrefix: string | undefined;

  has(name: string): boolean {
    return this.imageFiles.has(name);
  }

  /** An image of this checkpoint by file name ('core-17288.img'); a missing one is an ImageError. */
  image(name: string): ImageFile {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const image = this.readUncached(name);
    this.cache.set(name, image);
    return image;
  }

  private readUncached(name: string): ImageFile {
    const kind = this.imageFiles.get(name);
    if (!kind) {
      const why = imageKindForFile(name) ? 'no such image in the checkpoint' : `unknown image '${name}'`;
      throw new ImageError(this.path(name), 0, 'an image file', why);
    }
    return readImage(this.entryPath(name), kind);
  }

  get inventory(): Entry {
    return this.image('inventory.img').only();
  }

  /** pstree.img as typed tasks, root first. */
  get tasks(): PstreeTask[] {
    if (this.tasksCache) return this.tasksCache;
    const image = this.image('pstree.img');
    const tasks: PstreeTask[] = [];
    const byPid = new Map<number, PstreeTask>();
    for (const lazy of image.entries()) {
      const e = lazy.decode();
      const threads = Array.isArray(e['threads']) ? (e['threads'] as unknown[]).map(Number) : [];
      const task = {
        pid: num(e, 'pid', image.path),
        ppid: num(e, 'ppid', image.path),
        pgid: num(e, 'pgid', image.path),
        sid: num(e, 'sid', image.path),
        threads: threads.length ? threads : [num(e, 'pid', image.path)],
      };
      if (byPid.has(task.pid)) {
        throw new ImageError(image.path, lazy.offset, 'unique pids', `pid ${task.pid} appears twice`);
      }
      byPid.set(task.pid, task);
      tasks.push(task);
    }
    if (!tasks.length) throw new ImageError(image.path, image.entriesOffset, 'at least one task', 'pstree is empty');
    this.tasksByPid = byPid;
    this.tasksCache = tasks;
    return tasks;
  }

  /** The root task (ppid 0; the checkpoint's validation allows exactly one). */
  get root(): PstreeTask {
    const root = this.tasks.find((t) => t.ppid === 0);
    if (!root) throw new ImageError(this.path('pstree.img'), 0, 'a root task (ppid 0)', 'none');
    return root;
  }

  task(pid: number): PstreeTask {
    if (!this.tasksByPid) void this.tasks; // reading pstree builds the index
    const task = this.tasksByPid!.get(pid);
    if (!task) throw new ImageError(this.path('pstree.img'), 0, `a task with pid ${pid}`, 'not in the tree');
    return task;
  }

  /** core-TID.img's entry: the task core for a main thread, the thread's own state for others. */
  core(tid: number): Entry {
    return this.coreCache.get(tid) ?? this.decodeCore(tid);
  }

  /** Where core(tid) reads from, for a caller that reads many cores its own way (see coreFrom). */
  corePath(tid: number): string {
    return this.entryPath(`core-${tid}.img`);
  }

  /** core(tid) from the file's bytes, read by the caller from corePath(tid). */
  coreFrom(tid: number, bytes: Buffer): Entry {
    return this.decodeCore(tid, bytes);
  }

  private decodeCore(tid: number, bytes?: Buffer): Entry {
    const entry = this.decodeOnlyEntry(`core-${tid}.img`, bytes);
    this.coreCache.set(tid, entry);
    return entry;
  }

  /**
   * The entry of an image that holds exactly one, decoded without keeping the image file: 10,000
   * thread cores' buffers, framing and closures kept alive were most of the load's
   * garbage-collection work. `bytes`: the file, when the caller read it already.
   */
  private decodeOnlyEntry(name: string, bytes?: Buffer): Entry {
    const kind = this.imageFiles.get(name);
    const image = this.cache.get(name);
    if (image || !kind) return (image ?? this.readUncached(name)).only(); // readUncached words a missing one
    return bytes ? onlyEntryOf(this.entryPath(name), kind, bytes) : readOnlyEntry(this.entryPath(name), kind);
  }

  /** True when the task was a zombie at dump time: it has only a core image. */
  isZombie(pid: number): boolean {
    const tc = this.core(pid)['tc'] as Entry | undefined;
    return enumNumber(tc?.['task_state'], { Dead: TASK_DEAD, TASK_DEAD }) === TASK_DEAD;
  }

  /**
   * The stop signal of a task stopped by one at dump time (CRIU's TASK_STOPPED): its stop_signo
   * when that is a stop signal, else SIGSTOP (images older than stop_signo); undefined otherwise.
   */
  stopSignal(pid: number): number | undefined {
    const tc = this.core(pid)['tc'] as Entry | undefined;
    if (enumNumber(tc?.['task_state'], { Stopped: TASK_STOPPED, TASK_STOPPED }) !== TASK_STOPPED) return undefined;
    const signo = Number(tc?.['stop_signo'] ?? 0);
    return STOP_SIGNALS.includes(signo) ? signo : SIGSTOP;
  }

  mm(pid: number): Entry {
    return this.decodeOnlyEntry(`mm-${pid}.img`);
  }

  ids(pid: number): TaskIds {
    return this.idsCache.get(pid) ?? this.decodeIds(pid);
  }

  private decodeIds(pid: number): TaskIds {
    const name = `ids-${pid}.img`;
    const e = this.decodeOnlyEntry(name);
    const file = this.path(name);
    const ids: Record<string, number> = {};
    for (const [key, value] of Object.entries(e)) {
      if (typeof value === 'number' || typeof value === 'bigint') ids[key] = num(e, key, file);
    }
    for (const key of ['vm_id', 'files_id', 'fs_id', 'sighand_id']) num(e, key, file);
    this.idsCache.set(pid, ids as TaskIds);
    return ids as TaskIds;
  }

  fs(pid: number): FsEntry {
    const name = `fs-${pid}.img`;
    const e = this.decodeOnlyEntry(name);
    const file = this.path(name);
    return { cwd_id: num(e, 'cwd_id', file), root_id: num(e, 'root_id', file), umask: num(e, 'umask', file) };
  }

  /** files.img by file id: every open file description of the tree. */
  files(): Map<number, Entry> {
    if (this.filesCache) return this.filesCache;
    const image = this.image('files.img');
    const byId = new Map<number, Entry>();
    for (const lazy of image.entries()) {
      const e = lazy.decode();
      const id = num(e, 'id', image.path);
      if (byId.has(id)) throw new ImageError(image.path, lazy.offset, 'unique file ids', `id ${id} appears twice`);
      byId.set(id, e);
    }
    this.filesCache = byId;
    return byId;
  }

  /** One file of files.img; a missing id is an ImageError naming who asked (`from`). */
  file(id: number, from = 'files.img'): Entry {
    const entry = this.files().get(id);
    if (!entry) throw new ImageError(this.path('files.img'), 0, `a file with id ${id}`, `referenced from ${from}`);
    return entry;
  }

  /** fdinfo-N.img (N = files_id from ids), each fd number once, each pointing at an existing file. */
  fdinfo(filesId: number): readonly FdinfoEntry[] {
    return this.fdinfoCache.get(filesId) ?? this.decodeFdinfo(filesId);
  }

  private decodeFdinfo(filesId: number): readonly FdinfoEntry[] {
    const name = `fdinfo-${filesId}.img`;
    const image = this.image(name);
    const fds: FdinfoEntry[] = [];
    const numbers = new Set<number>();
    for (const lazy of image.entries()) {
      const e = lazy.decode();
      const fd: FdinfoEntry = {
        ...e,
        id: num(e, 'id', image.path),
        fd: num(e, 'fd', image.path),
        type: enumNumber(e['type'], FD_TYPES),
        flags: num(e, 'flags', image.path),
      };
      if (!this.files().has(fd.id)) {
        throw new ImageError(image.path, lazy.offset, `fd ${fd.fd}'s file id ${fd.id} in files.img`, 'no such file');
      }
      if (numbers.has(fd.fd)) throw new ImageError(image.path, lazy.offset, 'unique fd numbers', `fd ${fd.fd} appears twice`);
      numbers.add(fd.fd);
      fds.push(fd);
    }
    this.fdinfoCache.set(filesId, fds);
    return fds;
  }

  /** The fds of a task (through its files_id). */
  fds(pid: number): readonly FdinfoEntry[] {
    return this.fdinfo(this.ids(pid).files_id);
  }

  /** pagemap-PID.img's entries (head first); see pagemap.ts for the checked runs. */
  pagemapImage(pid: number): ImageFile {
    return this.image(`pagemap-${pid}.img`);
  }

  /** Checks that every image a task needs is present and every fd points at a file. */
  validate(): void {
    const tasks = this.tasks;
    void this.inventory; // reading it checks img_version
    const pstree = this.path('pstree.img');
    for (const task of tasks) {
      if (task.ppid !== 0 && !this.tasksByPid!.has(task.ppid)) {
        throw new ImageError(pstree, 0, `the parent ${task.ppid} of task ${task.pid} in the tree`, 'no such task');
      }
      for (const tid of task.threads) this.require(`core-${tid}.img`, task.pid);
      if (this.isZombie(task.pid)) continue;
      for (const prefix of ['mm', 'ids', 'pagemap', 'fs']) this.require(`${prefix}-${task.pid}.img`, task.pid);
      const files = this.ids(task.pid).files_id;
      if (this.has(`fdinfo-${files}.img`)) this.fdinfo(files);
    }
    if (tasks.filter((t) => t.ppid === 0).length !== 1) {
      throw new ImageError(pstree, 0, 'exactly one root task (ppid 0)', `found ${tasks.filter((t) => t.ppid === 0).length}`);
    }
  }

  private require(name: string, pid: number): void {
    if (!this.has(name)) throw new ImageError(this.path(name), 0, `the image of task ${pid}`, 'missing from the checkpoint');
  }
}

/** fd types by name, for enum values that arrive as names. */
export const FD_TYPES: Record<string, number> = {
  UND: 0, REG: 1, PIPE: 2, FIFO: 3, INETSK: 4, UNIXSK: 5, EVENTFD: 6, EVENTPOLL: 7, INOTIFY: 8, SIGNALFD: 9,
  PACKETSK: 10, TTY: 11, FANOTIFY: 12, NETLINKSK: 13, NS: 14, TUNF: 15, EXT: 16, TIMERFD: 17, MEMFD: 18,
  BPFMAP: 19, PIDFD: 20,
};

/** The per-type sub-message of a files.img entry (reg, pipe, usk, ...): its only object field. */
export function fileSubMessage(file: Entry): Entry {
  for (const [key, value] of Object.entries(file)) {
    if (key !== 'type' && value && typeof value === 'object' && !(value instanceof Uint8Array) && !Array.isArray(value)) return value as Entry;
  }
  return {};
}

/** tty_info_entry types crr writes and reads (TtyType). */
export const TTY_TYPE = { PTY: 1, CTTY: 4 } as const;
/** CRIU's tty-info id of /dev/tty: its CTTY_INDEX, 1006, numbered as a slave end (index * 2). */
export const CTTY_INFO_ID = 2012;
/** A unix_sk_entry's uflags bit: a socket outside the tree, known by its name only (CRIU's USK_EXTERN, --ext-unix-sk). */
export const USK_EXTERN = 1;

/** Opens a checkpoint directory and checks its cross-references. */
export function openCheckpoint(dir: string, options: { validate?: boolean } = {}): Checkpoint {
  const checkpoint = new Checkpoint(dir);
  if (options.validate !== false) checkpoint.validate();
  return checkpoint;
}
