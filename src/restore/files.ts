// The files a checkpoint refers to, checked against this machine before anything is touched:
// every regular file or device that a task has open, maps, runs (exe), or uses as cwd/root
// must exist with the recorded type and mode, regular files with the recorded size and GNU
// build-id. A mismatch is a clear error unless the user passed --allow-file-mismatch.
import { statSync, type Stats } from 'node:fs';
import { readBuildId } from '../images/build-id.js';
import { StageError } from '../errors.js';
import { isWithin } from '../mountinfo.js';
import type { Checkpoint, Entry } from '../images/index.js';
import type { TaskImageSet } from './context.js';
import { crrPathOf, type TreeMounts } from './mounts.js';

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
/** VMA status bits (CRIU's VMA_FILE_PRIVATE / VMA_FILE_SHARED): the VMA maps files.img entry `shmid`. */
export const VMA_FILE_PRIVATE = 1 << 6;
export const VMA_FILE_SHARED = 1 << 7;

/** A files.img regular-file entry as the restore uses it. */
export interface RegFile {
  readonly id: number;
  readonly name: string;
  readonly flags: number;
  readonly pos: bigint;
  readonly mode?: number;
  readonly size?: bigint;
  readonly buildId?: readonly number[];
  /** A deleted file the restore makes from ghost-file-ID.img (this id), at `name`, and unlinks again. */
  readonly ghost?: number;
}

const REMAP_GHOST = 1;
const ghostTables = new WeakMap<Checkpoint, Map<number, number>>();

/**
 * Each files.img id whose file was deleted at dump (remap-fpath.img, remap type GHOST), with its
 * ghost's id. Other remap types (a file renamed or linked elsewhere) are refused.
 */
export function ghostsOf(checkpoint: Checkpoint): Map<number, number> {
  let table = ghostTables.get(checkpoint);
  if (table) return table;
  table = new Map();
  if (checkpoint.has('remap-fpath.img')) {
    for (const lazy of checkpoint.image('remap-fpath.img').entries()) {
      const e = lazy.decode();
      const type = Number(e['remap_type'] ?? 0);
      if (type !== REMAP_GHOST) throw new StageError({ stage: 'plan', resource: 'regfile', message: `file id ${Number(e['orig_id'])} is remapped by type ${type}; crr restores deleted files (ghosts) only` });
      table.set(Number(e['orig_id']), Number(e['remap_id']));
    }
  }
  ghostTables.set(checkpoint, table);
  return table;
}

/** Where the restore makes ghost `ghost` of the deleted file once at `original`: beside it, hidden. */
export function ghostPath(original: string, ghost: number): string {
  const slash = original.lastIndexOf('/');
  return `${original.slice(0, slash + 1)}.crr-ghost-${process.pid}-${ghost.toString(16)}-${original.slice(slash + 1)}`;
}

export function regFile(checkpoint: Checkpoint, id: number, from: string): RegFile {
  const entry = checkpoint.file(id, from);
  const reg = entry['reg'] as Entry | undefined;
  if (!reg) throw new StageError({ stage: 'plan', resource: 'regfile', message: `file id ${id} (${from}) is not a regular file or device` });
  const big = (v: unknown) => (typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(v) : undefined);
  const ghost = ghostsOf(checkpoint).get(id);
  return {
    id,
    name: ghost !== undefined ? ghostPath(String(reg['name']), ghost) : String(reg['name']),
    ...(ghost !== undefined ? { ghost } : {}),
    flags: Number(reg['flags'] ?? 0),
    pos: big(reg['pos']) ?? 0n,
    mode: typeof reg['mode'] === 'number' ? reg['mode'] : undefined,
    size: big(reg['size']),
    buildId: Array.isArray(reg['build_id']) && reg['build_id'].length ? (reg['build_id'] as number[]) : undefined,
  };
}

/** Why a task needs a file: the messages say which task and how. */
export interface FileUse {
  readonly pid: number;
  readonly how: string;
}

/** Every files.img id a non-zombie task uses as a path (fd of type REG, mapping, exe, cwd, root). */
export function filesInUse(images: Iterable<TaskImageSet>): Map<number, FileUse[]> {
  const uses = new Map<number, FileUse[]>();
  // Appended in place: every task of a big tree maps the same libraries (copying was O(n^2)).
  const add = (id: number, use: FileUse) => {
    const list = uses.get(id);
    if (list) list.push(use);
    else uses.set(id, [use]);
  };
  for (const set of images) {
    for (const fd of set.fds) if (fd.type === 1) add(fd.id, { pid: set.pid, how: `fd ${fd.fd}` });
    if (set.mm) {
      const exe = set.mm['exe_file_id'];
      if (exe !== undefined) add(Number(exe), { pid: set.pid, how: 'exe' });
      for (const vma of (set.mm['vmas'] as Entry[] | undefined) ?? []) {
        const status = Number(vma['status'] ?? 0);
        // memfd mappings (VMA_AREA_MEMFD) are memfd objects, not paths (src/resources/memfd.ts)
        if (status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) && !(status & (1 << 14))) {
          add(Number(vma['shmid']), { pid: set.pid, how: `mapping at 0x${BigInt(vma['start'] as bigint).toString(16)}` });
        }
      }
    }
    if (set.fs) {
      add(set.fs.cwd_id, { pid: set.pid, how: 'cwd' });
      add(set.fs.root_id, { pid: set.pid, how: 'root' });
    }
  }
  return uses;
}



/**
 * Build-ids read before, by path, with the stat they were read under. A file whose inode, size,
 * mtime and ctime are unchanged has the same bytes (any write moves ctime), so a restore after the
 * first reads no ELF notes of the program and libraries it maps (~30 us each, every restore).
 */
const buildIds = new Map<string, { stat: string; id: number[] | undefined }>();
const MAX_BUILD_IDS = 4096;

function buildIdOf(path: string, st: Stats): number[] | undefined {
  const stat = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  const known = buildIds.get(path);
  if (known?.stat === stat) return known.id;
  const id = readBuildId(path);
  if (buildIds.size >= MAX_BUILD_IDS) buildIds.clear();
  buildIds.set(path, { stat, id });
  return id;
}

/** What is wrong with one file on this machine, or undefined when it matches. */
export function fileMismatch(file: RegFile, path = file.name): { missing: boolean; detail: string } | undefined {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    return { missing: true, detail: `missing (${(err as NodeJS.ErrnoException).code})` };
  }
  const octal = (n: number) => `0${n.toString(8)}`;
  if (file.mode !== undefined && (st.mode & S_IFMT) !== (file.mode & S_IFMT)) {
    return { missing: true, detail: `is a different kind of file now (mode ${octal(st.mode)}, was ${octal(file.mode)})` };
  }
  if (file.mode !== undefined && st.mode !== file.mode) {
    return { missing: false, detail: `has mode ${octal(st.mode)}, was ${octal(file.mode)}` };
  }
  if ((st.mode & S_IFMT) !== S_IFREG) return undefined;
  if (file.size !== undefined && BigInt(st.size) !== file.size) {
    return { missing: false, detail: `has size ${st.size}, was ${file.size}` };
  }
  if (file.buildId) {
    const now = buildIdOf(path, st);
    if (!now || now.join() !== file.buildId.join()) return { missing: false, detail: 'has a different build-id (another build of the program)' };
  }
  return undefined;
}

function missingDirectory(path: string): { missing: boolean; detail: string } | undefined {
  const dir = path.slice(0, path.lastIndexOf('/')) || '/';
  try {
    if (statSync(dir).isDirectory()) return undefined;
  } catch {
    // reported below
  }
  return { missing: true, detail: `(a deleted file the checkpoint holds) cannot be made: its directory ${dir} is gone` };
}

/** Whether a path is in the /proc/PID directory of a task of the tree (its own /proc/self files, as the kernel names them, or a child's a supervisor watches). */
function inTaskProcDir(name: string, isTreePid: (pid: number) => boolean): boolean {
  const m = /^\/proc\/(\d+)(\/|$)/.exec(name);
  return m !== null && isTreePid(Number(m[1]));
}

/**
 * Plan-time check of every file the tree uses; the first problem is a StageError naming task and
 * use. Files below `madeUnder` (mount points of the tree's own mounts) are left to the restore;
 * under a root of the tree's own (`mnt.newRoot`) the others are looked for there.
 */
export function checkFiles(checkpoint: Checkpoint, images: Iterable<TaskImageSet>, allowMismatch: boolean, madeUnder: readonly string[] = [], mnt?: TreeMounts): void {
  const sets = [...images];
  const treePids = new Set(sets.map((set) => set.pid));
  for (const [id, uses] of filesInUse(sets)) {
    const use = uses[0]!;
    const file = regFile(checkpoint, id, `task ${use.pid} ${use.how}`);
    // Below a mount the restore makes (the tree's tmpfs, a bind mount): not there to check yet.
    if (madeUnder.some((dir) => isWithin(file.name, dir))) continue;
    // A task's /proc directory is there once the restore has made the task: at its PID, or in
    // the /proc a restore into a PID namespace of its own mounts for the tree.
    if (!mnt && inTaskProcDir(file.name, (pid) => treePids.has(pid))) continue;
    // A ghost is made by the restore: only its directory must be there.
    const path = crrPathOf(mnt, file.name);
    const wrong = file.ghost !== undefined ? missingDirectory(path) : fileMismatch(file, path);
    if (!wrong || (!wrong.missing && allowMismatch)) continue;
    const hint = wrong.missing ? '' : ' (--allow-file-mismatch accepts it)';
    throw new StageError({
      stage: 'plan',
      pid: use.pid,
      resource: 'regfile',
      code: wrong.missing ? 'ENOENT' : 'EFILEMISMATCH',
      message: `${file.name} (file id ${id}, ${use.how}${uses.length > 1 ? ` and ${uses.length - 1} more use(s)` : ''}) ${wrong.detail}${hint}`,
    });
  }
}
