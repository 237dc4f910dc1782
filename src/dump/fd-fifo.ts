// FIFOs (named pipes) at dump time, written as CRIU writes them: the path goes into a REG entry of
// files.img under an id of its own (its flags are the fd's), then a FIFO entry whose regf_id names
// that REG entry and whose pipe_id is the FIFO's inode. Queued bytes are saved once per FIFO in
// fifo-data.img (a pipe_data_entry with the buffer size, then the bytes), read and put straight
// back through /proc while the tree is frozen.
import { closeSync, openSync, readdirSync, statSync, constants as C, type Stats } from 'node:fs';
import { perKey } from '../memo.js';
import type { OpenFiles, FileOrder } from './files.js';
import { readProcLink } from './proc.js';
import { drainNonblocking, writeAll } from './queue-io.js';
import { regFileEntry } from './regfile.js';
import type { DumpIds, Entry } from './ids.js';

export const FD_TYPE_FIFO = 3;

interface FifoDumpState {
  withData: Set<number>;
  data: Array<{ entry: Entry; payload: Uint8Array }>;
}

const stateOf = perKey((_: OpenFiles): FifoDumpState => ({ withData: new Set(), data: [] }));

/** fifo-data.img entries (each with its payload) collected so far; empty when none. */
export function fifoData(open: OpenFiles): Array<{ entry: Entry; payload: Uint8Array }> {
  return stateOf(open).data;
}

/** The task's fds that are FIFOs (their buffer size is asked of the task with F_GETPIPE_SZ). */
export function fifoFds(pid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      if (!readProcLink(pid, `fd/${name}`).startsWith('/')) continue;
      if ((statSync(`/proc/${pid}/fd/${name}`).mode & C.S_IFMT) === C.S_IFIFO) out.push(Number(name));
    } catch {
      // closed while we looked: the frozen task cannot do that, a race with ourselves only
    }
  }
  return out;
}

export interface FifoFd {
  pid: number;
  fd: number;
  /** The path /proc/PID/fd/FD links to. */
  link: string;
  st: Stats;
  /** Status flags without O_CLOEXEC. */
  fileFlags: number;
  /** FD_CLOEXEC as fdinfo stores it (0 or 1). */
  fdflags: number;
  pos: bigint;
}

/** One FIFO fd: its files.img entries (once per description) and its fdinfo entry. */
export async function dumpFifoFd(f: FifoFd, ids: DumpIds, open: OpenFiles, order: FileOrder | undefined, pipeSize: number): Promise<Entry> {
  const pipeId = Number(f.st.ino);
  const key = `fifo:${f.st.dev}:${pipeId}:${f.fileFlags}`;
  const id = await open.idFor(key, f.pid, f.fd, order, (id) => {
    // CRIU generates the path's id after the FIFO's own and writes the REG entry first.
    const regfId = ids.newFileId();
    ids.addFile(regFileEntry(regfId, f.link, f.st, f.fileFlags, f.pos));
    ids.addFile({ type: FD_TYPE_FIFO, id, fifo: { id, pipe_id: pipeId, regf_id: regfId } });
  }, ids);
  const s = stateOf(open);
  if (!s.withData.has(pipeId)) {
    s.withData.add(pipeId);
    const payload = peekFifo(f.pid, f.fd);
    s.data.push({ entry: { pipe_id: pipeId, bytes: payload.length, size: pipeSize }, payload });
  }
  return { id, flags: f.fdflags, type: FD_TYPE_FIFO, fd: f.fd };
}

/**
 * A FIFO's queued bytes, put straight back. Both ends are opened (reader first, non-blocking)
 * before anything is read: if the task holds only write ends, closing our reader before writing
 * back would leave no reader and the bytes could not go back (ENXIO).
 */
export function peekFifo(pid: number, fd: number): Buffer {
  const path = `/proc/${pid}/fd/${fd}`;
  const rfd = openSync(path, C.O_RDONLY | C.O_NONBLOCK);
  try {
    const wfd = openSync(path, C.O_WRONLY | C.O_NONBLOCK);
    try {
      const data = drainNonblocking(rfd);
      writeAll(wfd, data);
      return data;
    } finally {
      closeSync(wfd);
    }
  } finally {
    closeSync(rfd);
  }
}
