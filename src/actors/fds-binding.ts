// The typed surface of native/addon/fds.cc: fd-level calls that are safe from any thread.
// Every function is synchronous but readAhead, uffdCopy (native/addon/uffd.cc) and readSmallFiles
// (native/addon/files.cc); a failure throws an Error with `code` (errno name, e.g. 'EBADF'),
// `errno` (number) and `syscall`; bad argument types throw a TypeError.

/** The error every failing fds.cc call throws. */
export interface NativeSyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export interface ReceivedFds {
  /** Fds installed in this process, close-on-exec, in the order the sender listed them. */
  fds: number[];
  /** The message payload (a stream sender's lone filler byte included). */
  data: Buffer;
}

export interface FdsBinding {
  /** AF_UNIX socketpair; close-on-exec unless `cloexec` is false. */
  socketpair(type: 'seqpacket' | 'stream' | 'dgram', cloexec?: boolean): [number, number];
  close(fd: number): void;
  /** pidfd_open(pid, 0): a close-on-exec pidfd. */
  pidfdOpen(pid: number): number;
  /** pidfd_getfd: a close-on-exec copy of `targetFd` of the process behind `pidfd`. */
  pidfdGetfd(pidfd: number, targetFd: number): number;
  /** kcmp(2) for each [pid1, pid2, type, idx1, idx2] of `list` (PIDs as crr sees them): 0-3, or -errno. */
  kcmp(list: Int32Array): Int32Array;
  /** Whether pid's `fd` is the file its epoll at `epfd` watches as fd number `tfd`: 0 yes, 1 or 2 another file, -errno (EBADF: no fd there). */
  kcmpEpollTarget(pid: number, epfd: number, tfd: number, fd: number): number;
  /** The process's PID in crr's PID namespace (ioctl PIDFD_GET_INFO; ENOTTY before Linux 6.13, ESRCH once it is gone). */
  pidfdPid(pidfd: number): number;
  pidfdSendSignal(pidfd: number, sig: number): void;
  /** One sendmsg with SCM_RIGHTS (at most 253 fds); sends one zero byte when `data` is empty. */
  sendFds(sock: number, fds: number[], data?: Buffer): number;
  /**
   * One recvmsg with MSG_CMSG_CLOEXEC. Blocks unless `dontWait` (then EAGAIN when empty).
   * Throws EMSGSIZE (after closing what arrived) when more than `maxFds` fds came.
   */
  recvFds(sock: number, maxFds: number, maxBytes?: number, dontWait?: boolean): ReceivedFds;
  /**
   * POSIX_FADV_WILLNEED over [offset, offset + length) in `step`-byte calls on a libuv worker (one of
   * the two asynchronous calls here); rejects with the same Error shape as the others.
   */
  readAhead(fd: number, offset: number, length: number, step: number): Promise<void>;
  /**
   * An ioctl whose argument points at a copy of `data` (a struct the kernel reads, fills in, or
   * both); returns the copy after the call.
   */
  ioctlBuffer(fd: number, request: number, data: Buffer): Buffer;
  /**
   * UFFDIO_COPY of each (dst, fileOffset, len) triple of `pieces` into the mm `uffd` (a task's
   * userfaultfd, taken with pidfdGetfd) was made for, from `srcFd` mapped read-only in this
   * process ([0, srcLength)), by `threads` threads (1..16) taking pieces in turn; off the main
   * thread. Resolves with the bytes copied; rejects with the errno Error of the first failure,
   * which also carries `address`, the destination it failed at.
   */
  uffdCopy(uffd: number, srcFd: number, srcLength: number, pieces: BigUint64Array, threads: number): Promise<number>;
  /**
   * Reads every file of `paths` whole on a libuv worker: their bytes back to back in `data`, and
   * in `sizes` an int32 per file, its length or -errno when it could not be read whole (-EFBIG:
   * it holds `maxBytes` or more). Never rejects for a file; the caller reads a failed one itself.
   */
  readSmallFiles(paths: readonly string[], maxBytes: number): Promise<{ data: Buffer; sizes: Buffer }>;
  /**
   * Writes each buffer to its path (created or truncated with `mode`), in order, on a libuv
   * worker; rejects with the first failure's errno Error, its `path` set.
   */
  writeSmallFiles(paths: readonly string[], buffers: readonly Uint8Array[], mode: number): Promise<void>;
  /** rename(2) that fails with EEXIST instead of replacing what is at `to` (renameat2 RENAME_NOREPLACE). */
  renameNoReplace(from: string, to: string): void;
  /** Whom an fd's SIGIO/SIGURG go to: F_GETOWN_EX (type: F_OWNER_TID 0, PID 1, PGRP 2; pid 0 for none), F_GETSIG, F_GETOWNER_UIDS. */
  fileOwner(fd: number): { type: number; pid: number; signum: number; uid: number; euid: number };
  /** fcntl(2) of an fd of this process with a query taking no argument (F_GETPIPE_SZ, F_GET_SEALS); throws with errno. */
  fcntlInt(fd: number, cmd: number): number;
  /** mknod(2) of a character or block device (`mode` with S_IFCHR or S_IFBLK); throws with errno. */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /**
   * cachestat(2) of [offset, offset + length) of `fd` (length 0: to the end), in pages
   * (native/addon/pagecache.cc); throws the errno Error (ENOSYS before Linux 6.5).
   */
  cachestat(fd: number, offset: number, length: number): PageCacheStat;
}

/** What cachestat(2) counts over a file range, in pages. */
export interface PageCacheStat {
  cache: number;
  dirty: number;
  writeback: number;
  evicted: number;
  recentlyEvicted: number;
}
