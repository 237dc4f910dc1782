// filelocks.img: the flock, POSIX and OFD locks the dumped tasks hold, from the "lock:" lines of
// /proc/PID/fdinfo/FD. The kernel lists a lock under an fd only when the lock was taken through
// that fd's open file description and is owned by it (flock, OFD) or by the task's fd table
// (POSIX), so each line names its owner task and an fd to take it again through. Entries are
// CRIU's file_lock_entry: flag FL_POSIX 1 / FL_FLOCK 2 / FL_OFD 4, type F_RDLCK 0 / F_WRLCK 1,
// the owner pid and fd, start, and len (0 = to EOF). A lock seen through several fds of one
// description (dup, fork) is written once.
import { CrrError } from '../errors.js';
import type { Entry } from './ids.js';

export const FL_POSIX = 1;
export const FL_FLOCK = 2;
export const FL_OFD = 4;
export const F_RDLCK = 0;
export const F_WRLCK = 1;

const KINDS: Record<string, number> = { POSIX: FL_POSIX, FLOCK: FL_FLOCK, OFDLCK: FL_OFD };

export interface FdinfoLock {
  flag: number;
  type: number;
  start: bigint;
  /** 0 = to the end of the file. */
  len: bigint;
}

/** The "lock:" lines of one fdinfo file ("lock:\t1: FLOCK  ADVISORY  WRITE 812 00:2a:1234 0 EOF"). */
export function parseFdinfoLocks(text: string, where: { pid: number; fd: number }): FdinfoLock[] {
  const out: FdinfoLock[] = [];
  for (const line of text.split('\n')) {
    const m = /^lock:\s+\d+:\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, kind, mode, access, start, end] = m;
    const flag = KINDS[kind!];
    if (flag === undefined || mode !== 'ADVISORY' || (access !== 'READ' && access !== 'WRITE')) {
      throw new CrrError(`pid ${where.pid}: fd ${where.fd} holds a ${kind} ${mode} ${access} lock, which crr dump does not support`);
    }
    const first = BigInt(start!);
    out.push({ flag, type: access === 'READ' ? F_RDLCK : F_WRLCK, start: first, len: end === 'EOF' ? 0n : BigInt(end!) - first + 1n });
  }
  return out;
}

/** The dump-wide list of locks. */
export class FileLocks {
  readonly entries: Entry[] = [];
  private readonly seen = new Set<string>();

  /**
   * Adds the locks one task holds through its fds. `fds` are its fdinfo entries (fd and the
   * files.img id of the description); `read` returns /proc/PID/fdinfo/FD.
   */
  collect(pid: number, fds: ReadonlyArray<{ fd: number; id: number }>, read: (fd: number) => string): void {
    for (const { fd, id } of fds) {
      for (const lock of parseFdinfoLocks(read(fd), { pid, fd })) {
        // flock and OFD locks belong to the description (one per id); POSIX ones to the task.
        const owner = lock.flag === FL_POSIX ? `task ${pid}` : `file ${id}`;
        const key = `${owner}:${lock.flag}:${lock.type}:${lock.start}:${lock.len}`;
        if (this.seen.has(key)) continue;
        this.seen.add(key);
        this.entries.push({ flag: lock.flag, type: lock.type, pid, fd, start: lock.start, len: lock.len });
      }
    }
  }
}
