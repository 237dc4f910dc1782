// The mm image of one process: VMAs from /proc/PID/maps + smaps VmFlags, classified with the
// status bits CRIU gives them, the mm boundaries from /proc/PID/stat, auxv and the exe file.
// Values only the task itself knows (brk, dumpable, THP) come in from the injected-syscall part.
import { readlinkSync, statSync } from 'node:fs';
import { native } from '../actors/native.js';
import { CrrError } from '../errors.js';
import { parseMaps, parseSmaps, parseAuxv, readProc, readProcBytes, readProcLink, type MapsLine, type ProcStat } from './proc.js';
import { regFileEntry } from './regfile.js';
import { DELETED, ghostRefusal } from './ghost-files.js';
import { isMemfdLink, memfdMappingId } from './fd-memfd.js';
import { AIO_RING_PATH } from './aio.js';
import type { DumpIds, Entry } from './ids.js';

export const VMA = {
  REGULAR: 1 << 0,
  STACK: 1 << 1,
  VSYSCALL: 1 << 2,
  VDSO: 1 << 3,
  HEAP: 1 << 5,
  FILE_PRIVATE: 1 << 6,
  FILE_SHARED: 1 << 7,
  ANON_SHARED: 1 << 8,
  ANON_PRIVATE: 1 << 9,
  SYSVIPC: 1 << 10,
  VVAR: 1 << 12,
  AIORING: 1 << 13,
  MEMFD: 1 << 14,
  GUARD: 1 << 16,
} as const;

const MAP_SHARED = 0x1;
const MAP_PRIVATE = 0x2;
const MAP_ANONYMOUS = 0x20;
const MAP_GROWSDOWN = 0x100;
const MAP_LOCKED = 0x2000;
const O_RDWR = 2;

/** smaps VmFlags mnemonics -> the madvise() advice they record (madv is a bitmask of 1 << advice). */
const MADVISE_OF_VMFLAG: Record<string, number> = {
  sr: 2, // MADV_SEQUENTIAL
  rr: 1, // MADV_RANDOM
  dc: 10, // MADV_DONTFORK
  mg: 12, // MADV_MERGEABLE
  hg: 14, // MADV_HUGEPAGE
  nh: 15, // MADV_NOHUGEPAGE
  dd: 16, // MADV_DONTDUMP
  wf: 18, // MADV_WIPEONFORK
};

/** A VMA as dumped, plus what the page dumper needs to know about it. */
export interface DumpVma {
  entry: Entry;
  start: bigint;
  end: bigint;
  status: number;
  flags: number;
  path: string;
  /** The maps line's offset (for shared anonymous memory: where in the object the VMA starts). */
  offset: bigint;
  /** False when smaps shows no page resident or swapped: the page scan skips it (a 1 TiB reservation has no pages to read). */
  touched?: boolean;
}

/**
 * `vmas` without [start, end), the dumper's scratch area in the task. The kernel merges a new
 * anonymous mapping with a neighbour alike, so the scratch area can be part of a larger VMA (a
 * JVM's code heap is rwx anonymous memory too): that VMA is cut, its other part kept. Dropping
 * the VMA that started at the scratch area lost the JVM's interpreter code, and the restored JVM
 * crashed jumping into it.
 */
export function withoutRange(vmas: readonly DumpVma[], start: bigint, end: bigint): DumpVma[] {
  const out: DumpVma[] = [];
  for (const v of vmas) {
    if (v.end <= start || v.start >= end) {
      out.push(v);
      continue;
    }
    if (v.start < start) out.push(cut(v, v.start, start));
    if (v.end > end) out.push(cut(v, end, v.end));
  }
  return out;
}

/** The part [start, end) of `v`; the file offset moves with a file-backed or shared VMA's start. */
function cut(v: DumpVma, start: bigint, end: bigint): DumpVma {
  const delta = start - v.start;
  const pgoff = BigInt((v.entry['pgoff'] as bigint | number | undefined) ?? 0);
  const entry = { ...v.entry, start, end, ...(pgoff !== 0n ? { pgoff: pgoff + delta } : {}) };
  return { ...v, entry, start, end, offset: v.offset + delta };
}

/** Unsupported memory (deleted or memfd files, SysV shm, ...): names pid, range and kind. */
export class UnsupportedVmaError extends CrrError {
  constructor(readonly pid: number, readonly line: MapsLine, readonly what: string) {
    super(`pid ${pid}: mapping ${line.start.toString(16)}-${line.end.toString(16)} ${line.path || '(anonymous)'}: ${what} is not supported by crr dump`, 1);
  }
}

function hex(n: bigint): string {
  return n.toString(16);
}

/** Turns maps lines into VMA entries; registers mapped files in `ids`. */
export function collectVmas(pid: number, ids: DumpIds, mapsText?: string, smapsText?: string): DumpVma[] {
  const lines = parseMaps(mapsText ?? readProc(pid, 'maps'));
  const smaps = parseSmaps(smapsText ?? readProc(pid, 'smaps'));
  const out: DumpVma[] = [];
  let segments: Map<number, bigint> | undefined;
  for (const line of lines) {
    const vf = smaps.get(line.start)?.flags ?? [];
    // The kernel shows the vdso's data pages as [vvar] then [vvar_vclock]: CRIU keeps them as one VVAR VMA.
    const prev = out[out.length - 1];
    if (line.path === '[vvar_vclock]' && prev && prev.path === '[vvar]' && prev.end === line.start) {
      prev.end = line.end;
      prev.entry.end = line.end;
      continue;
    }
    const prot = (line.read ? 1 : 0) | (line.write ? 2 : 0) | (line.exec ? 4 : 0);
    let flags = line.shared ? MAP_SHARED : MAP_PRIVATE;
    let status = VMA.REGULAR;
    let shmid = 0n;
    let fdflags: number | undefined;
    if (vf.includes('gd')) flags |= MAP_GROWSDOWN;
    // mlock()ed; locked on fault (mlock2 MLOCK_ONFAULT, "lf") has no place in the image: left unlocked.
    if (vf.includes('lo') && !vf.includes('lf')) flags |= MAP_LOCKED;
    if (line.path === '[vsyscall]') {
      status = VMA.VSYSCALL | VMA.ANON_PRIVATE;
      flags = MAP_PRIVATE | MAP_ANONYMOUS;
    } else if (line.path === '[vvar]') {
      status |= VMA.ANON_PRIVATE | VMA.VVAR;
      flags |= MAP_ANONYMOUS;
    } else if (line.path === '[vdso]') {
      status |= VMA.ANON_PRIVATE | VMA.VDSO;
      flags |= MAP_ANONYMOUS;
    } else if (line.inode === 0 && !line.path.startsWith('/SYSV')) {
      // (A SysV segment's inode is its id, and the first segment of an IPC namespace is id 0.)
      // Anonymous: heap, stack, plain anonymous memory (named anon VMAs "[anon:...]" too).
      if (line.shared) throw new UnsupportedVmaError(pid, line, 'shared anonymous memory');
      flags |= MAP_ANONYMOUS;
      status |= VMA.ANON_PRIVATE;
      if (line.path === '[heap]') status |= VMA.HEAP;
    } else {
      // SysV shm and shared anonymous memory ("/dev/zero (deleted)") are shmem inodes too: first.
      if (line.path === AIO_RING_PATH) {
        // CRIU's status for it is AIORING alone: the restore makes the ring anew (src/resources/aio.ts).
        status = VMA.AIORING;
      } else if (line.path.startsWith('/SYSV')) {
        // The inode is the segment's id; its bytes go into ipcns-shm with the tree's IPC namespace.
        const why = sysvMappingRefusal(pid, line, (segments ??= sysvSegmentSizes(pid)));
        if (why) throw new UnsupportedVmaError(pid, line, why);
        status |= VMA.SYSVIPC;
        flags = MAP_SHARED;
        shmid = BigInt(line.inode);
      } else if (isMemfdLink(line.path)) {
        // A memfd mapping names the files.img entry of its inode (src/dump/fd-memfd.ts).
        status |= VMA.MEMFD | (line.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE);
        shmid = BigInt(memfdMappingId(pid, ids, `/proc/${pid}/map_files/${hex(line.start)}-${hex(line.end)}`, line.path, line.shared, line.write));
        fdflags = line.shared && line.write ? O_RDWR : 0;
      } else if (line.path === '/dev/zero' || line.path.startsWith('/dev/zero ')) {
        flags |= MAP_ANONYMOUS;
        if (line.shared) {
          // MAP_SHARED|MAP_ANONYMOUS: a shmem object named by its inode; its pages are dumped
          // once for the whole tree into pagemap-shmem-<shmid>.img (see shmem.ts).
          status |= VMA.ANON_SHARED;
          shmid = BigInt(line.inode);
        } else {
          status |= VMA.ANON_PRIVATE;
        }
      } else if (!line.path.startsWith('/')) {
        // anon_inode:[io_uring], anon_inode:[perf_event], anon_inode:dmabuf, ...: a kernel
        // object's memory, which no path opens again (the fd itself, if still held, is refused too).
        throw new UnsupportedVmaError(pid, line, "memory of a kernel object (not a file: nothing can open and map it again)");
      } else {
        status |= line.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE;
        shmid = BigInt(mappedFileId(pid, ids, line));
        fdflags = line.shared && line.write ? O_RDWR : 0;
      }
    }
    let madv = 0n;
    for (const f of vf) if (MADVISE_OF_VMFLAG[f] !== undefined) madv |= 1n << BigInt(MADVISE_OF_VMFLAG[f]!);
    const entry: Entry = {
      start: line.start,
      end: line.end,
      pgoff: status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED | VMA.ANON_SHARED) ? line.offset : 0n,
      shmid,
      prot,
      flags,
      status,
      fd: -1n,
    };
    if (madv) entry.madv = madv;
    if (fdflags !== undefined) entry.fdflags = fdflags;
    out.push({ entry, start: line.start, end: line.end, status, flags, path: line.path, offset: line.offset, touched: smaps.get(line.start)?.touched ?? true });
  }
  return out;
}

const CLONE_NEWIPC = 0x08000000;

/** Each SysV segment's size by id, in the task's IPC namespace (/proc/sysvipc/shm as it sees it). */
function sysvSegmentSizes(pid: number): Map<number, bigint> {
  const [text] = native.readInNamespace(`/proc/${pid}/ns/ipc`, CLONE_NEWIPC, ['/proc/sysvipc/shm']);
  const sizes = new Map<number, bigint>();
  for (const line of text!.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/); // key shmid perms size ...
    if (cols.length > 3) sizes.set(Number(cols[1]), BigInt(cols[3]!));
  }
  return sizes;
}

/**
 * Why a SysV shm mapping cannot be dumped, or undefined: its segment must be dumped with the
 * tree's own IPC namespace, and the mapping must be the whole segment, as shmat makes it.
 */
function sysvMappingRefusal(pid: number, line: MapsLine, segments: Map<number, bigint>): string | undefined {
  if (readProcLink(pid, 'ns/ipc') === readlinkSync('/proc/self/ns/ipc')) return "SysV shared memory of crr's own IPC namespace (segments are dumped with an IPC namespace of the tree's own)";
  const size = segments.get(line.inode);
  if (size === undefined) return `SysV shared memory whose segment ${line.inode} is not in the task's IPC namespace`;
  const whole = (size + 4095n) & ~4095n;
  if (line.offset !== 0n || line.end - line.start !== whole) return `a part of SysV shared memory segment ${line.inode} (${size} bytes)`;
  return undefined;
}

/** The files.img id of a mapped file, one per (dev, inode) for the whole dump. */
function mappedFileId(pid: number, ids: DumpIds, line: MapsLine): number {
  const viaMapFiles = `/proc/${pid}/map_files/${hex(line.start)}-${hex(line.end)}`;
  const deleted = line.path.endsWith(DELETED);
  let st;
  try {
    st = statSync(viaMapFiles);
  } catch (err) {
    if (deleted) throw new UnsupportedVmaError(pid, line, `a mapping of a deleted file crr cannot read (${(err as Error).message})`);
    st = statSync(line.path);
  }
  const key = `${st.dev}:${st.ino}`;
  const known = ids.mappedFiles.get(key);
  if (known !== undefined) return known;
  if (deleted) {
    const why = ghostRefusal(st, ids.ghosts.limit);
    if (why) throw new UnsupportedVmaError(pid, line, why);
  }
  const id = ids.newFileId();
  ids.mappedFiles.set(key, id);
  ids.addFile(regFileEntry(id, deleted ? line.path.slice(0, -DELETED.length) : line.path, st, 0, 0n, deleted ? undefined : viaMapFiles));
  if (deleted) ids.ghosts.remap(id, st, viaMapFiles, () => ids.newFileId(), `pid ${pid} mapping ${hex(line.start)}-${hex(line.end)}`);
  return id;
}

/** The exe's file id: the same entry as its mapping when it is mapped, like CRIU. */
export function exeFileId(pid: number, ids: DumpIds): number {
  const path = readProcLink(pid, 'exe');
  const st = statSync(`/proc/${pid}/exe`);
  const key = `${st.dev}:${st.ino}`;
  const known = ids.mappedFiles.get(key);
  if (known !== undefined) return known;
  const id = ids.newFileId();
  ids.mappedFiles.set(key, id);
  ids.addFile(regFileEntry(id, path, st, 0, 0n, `/proc/${pid}/exe`));
  return id;
}

/** What only the task knows, fetched by injected syscalls. */
export interface MmFromTask {
  brk: bigint;
  dumpable: number;
  thpDisabled: boolean;
}

/**
 * The mm-PID.img entry. `exeId` must be taken after the VMAs so ids come out in CRIU's order;
 * `aios` are the AIO rings' entries (src/dump/aio.ts).
 */
export function mmEntry(pid: number, stat: ProcStat, vmas: DumpVma[], exeId: number, fromTask: MmFromTask, aios: Entry[] = []): Entry {
  return {
    mm_start_code: stat.startCode,
    mm_end_code: stat.endCode,
    mm_start_data: stat.startData,
    mm_end_data: stat.endData,
    mm_start_stack: stat.startStack,
    mm_start_brk: stat.startBrk,
    mm_brk: fromTask.brk,
    mm_arg_start: stat.argStart,
    mm_arg_end: stat.argEnd,
    mm_env_start: stat.envStart,
    mm_env_end: stat.envEnd,
    exe_file_id: exeId,
    mm_saved_auxv: parseAuxv(readProcBytes(pid, 'auxv')),
    vmas: vmas.map((v) => v.entry),
    dumpable: fromTask.dumpable,
    thp_disabled: fromTask.thpDisabled,
    ...(aios.length ? { aios } : {}),
  };
}
