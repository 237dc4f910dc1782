// memfd files, as CRIU 4.x writes them: one memfd_inode_entry per memfd inode in memfd.img
// (name without "memfd:", uid, gid, size, mode, seals, shmid = the inode number, inode_id
// numbered from 1), its contents once in pagemap-shmem-<shmid>.img + pages-N.img (the shmem
// dumper reads them, src/dump/shmem.ts), and a files.img entry of type MEMFD per open file
// description (memfd_file_entry: flags, pos, inode_id). A memfd mapping (VMA_AREA_MEMFD with
// VMA_FILE_SHARED/PRIVATE) names one such files.img entry in its shmid, one per inode.
// The table hangs off the dump's DumpIds, so mm.ts and files.ts reach it without new plumbing.
import { constants as C, statSync, type Stats } from 'node:fs';
import { perKey } from '../memo.js';
import { zeroFown } from './regfile.js';
import type { DumpIds, Entry } from './ids.js';
import type { OpenFiles, FileOrder } from './files.js';

export const FD_TYPE_MEMFD = 18;
const F_GET_SEALS = 1034;
/** What F_GET_SEALS says of a memfd made without MFD_ALLOW_SEALING. */
export const F_SEAL_SEAL = 1;

interface MemfdInode {
  inodeId: number;
  shmid: bigint;
  /** Where the dumper can read the contents while the task is frozen. */
  pid: number;
  path: string;
  size: bigint;
  entry: Entry;
  /** files.img id for this inode's mappings (made on first use). */
  mapFileId?: number;
}

/** Dump-wide memfd inodes, by dev:ino. */
export class MemfdInodes {
  private inodes = new Map<string, MemfdInode>();

  /** The inode behind `path` (a /proc/PID/fd or map_files link), noted on first sight. */
  note(pid: number, path: string, link: string, st: Stats, seals: number): MemfdInode {
    const key = `${st.dev}:${st.ino}`;
    const known = this.inodes.get(key);
    if (known) return known;
    const inodeId = this.inodes.size + 1;
    const shmid = BigInt(st.ino);
    const entry: Entry = { name: memfdName(link), uid: st.uid, gid: st.gid, size: BigInt(st.size), shmid: Number(shmid), seals, inode_id: BigInt(inodeId), mode: st.mode };
    const inode: MemfdInode = { inodeId, shmid, pid, path, size: BigInt(st.size), entry };
    this.inodes.set(key, inode);
    return inode;
  }

  /** memfd.img entries, in inode_id order. */
  entries(): Entry[] {
    return [...this.inodes.values()].map((i) => i.entry);
  }

  /** Objects whose contents the shmem dumper writes: shmid, where to read, size. */
  objects(): Array<{ shmid: bigint; pid: number; path: string; size: bigint }> {
    return [...this.inodes.values()].map((i) => ({ shmid: i.shmid, pid: i.pid, path: i.path, size: i.size }));
  }
}

/** The memfd table of one dump. */
export const memfdsOf = perKey((_: DumpIds) => new MemfdInodes());

/** "/memfd:name (deleted)" -> "name" (what memfd_create is given back at restore). */
export function memfdName(link: string): string {
  const bare = link.endsWith(' (deleted)') ? link.slice(0, -' (deleted)'.length) : link;
  return bare.startsWith('/memfd:') ? bare.slice('/memfd:'.length) : bare;
}

export function isMemfdLink(link: string): boolean {
  return link.startsWith('/memfd:');
}

/** files.img entry of one memfd description. */
export function memfdFileEntry(id: number, flags: number, pos: bigint, inodeId: number): Entry {
  return { type: FD_TYPE_MEMFD, id, memfd: { id, flags, pos, fown: zeroFown(), inode_id: inodeId } };
}

/** fcntl command the dumper injects into the frozen task to read a memfd fd's seals. */
export const GET_SEALS = F_GET_SEALS;

/**
 * files.img id of a memfd mapping (one per inode, like CRIU's special ids for mapped memfds).
 * A mapping alone cannot be asked for seals: 0 until an fd of the same inode says otherwise.
 */
export function memfdMappingId(pid: number, ids: DumpIds, mapFilesPath: string, link: string, shared: boolean, writable: boolean): number {
  const st = statSync(mapFilesPath);
  const inode = memfdsOf(ids).note(pid, mapFilesPath, link, st, 0);
  if (inode.mapFileId === undefined) {
    const id = ids.newFileId();
    inode.mapFileId = id;
    ids.addFile(memfdFileEntry(id, shared && writable ? C.O_RDWR : C.O_RDONLY, 0n, inode.inodeId));
  }
  return inode.mapFileId;
}

/** One memfd fd of a task: its files.img description (shared ones found with `order`) and fdinfo entry. */
export async function dumpMemfdFd(
  f: { pid: number; fd: number; link: string; fileFlags: number; fdflags: number; pos: bigint },
  ids: DumpIds,
  open: OpenFiles,
  probe: { order?: FileOrder; seals?: (fd: number) => Promise<number> },
): Promise<Entry> {
  const path = `/proc/${f.pid}/fd/${f.fd}`;
  const st = statSync(path);
  const seals = probe.seals ? await probe.seals(f.fd) : 0;
  const inode = memfdsOf(ids).note(f.pid, path, f.link, st, seals);
  inode.entry.seals = seals; // a mapping seen first could not ask for them
  const key = `memfd:${st.dev}:${st.ino}:${f.fileFlags}:${f.pos}`;
  const id = await open.idFor(key, f.pid, f.fd, probe.order, (id) => ids.addFile(memfdFileEntry(id, f.fileFlags, f.pos, inode.inodeId)), ids);
  return { id, flags: f.fdflags, type: FD_TYPE_MEMFD, fd: f.fd };
}
