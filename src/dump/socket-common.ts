// What the socket dumpers share: a copy of a task's socket in crr (pidfd_getfd), which the kernel
// answers getsockopt on as it would the task, the SOL_SOCKET options of sk_opts_entry, and the
// walk through a sock_diag answer (netlink messages, each with its attributes).
import { statSync } from 'node:fs';
import { native } from '../actors/native.js';
import { CrrError } from '../errors.js';
import type { DumpIds, Entry } from './ids.js';
import type { FileOrder, OpenFiles } from './files.js';

const SOL_SOCKET = 1;
const SO = { REUSEADDR: 2, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, NO_CHECK: 11, PRIORITY: 12, LINGER: 13, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO_OLD: 20, SNDTIMEO_OLD: 21, PASSSEC: 34, MARK: 36, BINDTODEVICE: 25, BUF_LOCK: 72 } as const;

/** A socket the dump cannot describe, or whose state a restore could not bring back (`family`: inet, unix, netlink, packet). */
export class SocketRefusedError extends CrrError {
  constructor(readonly family: string, readonly pid: number, readonly fd: number, readonly ino: number, detail: string) {
    super(`pid ${pid}: fd ${fd} is ${family} socket ${ino}: not supported: ${detail}`, 1);
  }
}

/** A socket fd being dumped: its task, number, inode and flags. */
export interface SocketFd {
  pid: number;
  fd: number;
  ino: number;
  fileFlags: number;
  fdFlags: number;
}

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const NETLINK_SOCK_DIAG = 4;

/** The kernel's view of one socket family, asked once per dump (`make`) and kept by inode. */
export function perDump<T>(cache: WeakMap<OpenFiles, Map<number, T>>, open: OpenFiles, make: (diagSocket: number | undefined) => Map<number, T>): Map<number, T> {
  let byIno = cache.get(open);
  if (!byIno) cache.set(open, (byIno = inEveryNetNamespace(open, make)));
  return byIno;
}

/**
 * `make`'s sock_diag answer in the tree's network namespace, then in each nested in it, as one
 * map: inodes are the kernel's, unique across namespaces.
 */
export function inEveryNetNamespace<T>(open: OpenFiles, make: (diagSocket: number | undefined) => Map<number, T>): Map<number, T> {
  const byIno = make(open.diagSocket);
  for (const socket of open.nestedNet.diagSockets.values()) for (const [ino, d] of make(socket)) byIno.set(ino, d);
  return byIno;
}

/**
 * With network namespaces nested in the tree, a socket must be of its holder's: crr makes a
 * socket in the namespace of the task that makes it. Refused otherwise (an abstract unix name
 * too; other unix sockets work from any namespace).
 */
export function checkSocketNamespace(family: string, pid: number, fd: number, ino: number, open: OpenFiles): void {
  if (!open.nestedNet.diagSockets.size || pid === process.pid) return;
  const copy = copyOfTaskFd(pid, fd);
  let ns: number;
  try {
    ns = native.socketNetnsInode(copy);
  } finally {
    native.close(copy);
  }
  const own = statSync(`/proc/${pid}/ns/net`).ino;
  if (ns !== own) throw new SocketRefusedError(family, pid, fd, ino, `it is of network namespace net:[${ns}], its holder in net:[${own}] (one nested in the tree, or the tree's): crr makes a socket in the namespace of the task that makes it`);
}

/** A copy of the task's fd in this process (pidfd_getfd): the caller closes it. */
export function copyOfTaskFd(pid: number, fd: number): number {
  const pidfd = native.pidfdOpen(pid);
  try {
    return native.pidfdGetfd(pidfd, fd);
  } finally {
    native.close(pidfd);
  }
}

/**
 * The files.img id of a socket fd's description (`kind`: its key's prefix, packetsk, netlinksk):
 * the first fd of it adds `fileEntry`, built from the SOL_SOCKET options of a copy of the socket.
 */
export function socketDescriptionId(kind: string, at: SocketFd, ids: DumpIds, open: OpenFiles, order: FileOrder | undefined, fileEntry: (id: number, opts: Entry) => Entry): Promise<number> {
  return open.idFor(`${kind}:${at.ino}:${at.fileFlags}`, at.pid, at.fd, order, (id) => {
    const copy = copyOfTaskFd(at.pid, at.fd);
    try {
      ids.addFile(fileEntry(id, socketOptions(copy)));
    } finally {
      native.close(copy);
    }
  }, ids);
}

/** An int getsockopt of a socket (a copy in this process, see copyOfTaskFd). */
export function intOpt(fd: number, level: number, name: number): number {
  return native.getsockoptBytes(fd, level, name, 4).readInt32LE(0);
}

/** A boolean option; false where this socket's family does not have it (SO_PASSCRED and SO_PASSSEC are unix and netlink only from Linux 6.16). */
function flagOpt(fd: number, name: number): boolean {
  try {
    return intOpt(fd, SOL_SOCKET, name) !== 0;
  } catch (e) {
    if ((e as { code?: string }).code === 'EOPNOTSUPP') return false;
    throw e;
  }
}

function timeout(fd: number, name: number): { sec: bigint; usec: bigint } {
  const tv = native.getsockoptBytes(fd, SOL_SOCKET, name, 16);
  return { sec: tv.readBigInt64LE(0), usec: tv.readBigInt64LE(8) };
}

/** sk_opts_entry: the SOL_SOCKET options CRIU records (buffer sizes as getsockopt reports them). */
export function socketOptions(fd: number): Entry {
  const snd = timeout(fd, SO.SNDTIMEO_OLD);
  const rcv = timeout(fd, SO.RCVTIMEO_OLD);
  const opts: Entry = {
    so_sndbuf: intOpt(fd, SOL_SOCKET, SO.SNDBUF),
    so_rcvbuf: intOpt(fd, SOL_SOCKET, SO.RCVBUF),
    so_snd_tmo_sec: snd.sec,
    so_snd_tmo_usec: snd.usec,
    so_rcv_tmo_sec: rcv.sec,
    so_rcv_tmo_usec: rcv.usec,
    reuseaddr: intOpt(fd, SOL_SOCKET, SO.REUSEADDR) !== 0,
    so_priority: intOpt(fd, SOL_SOCKET, SO.PRIORITY),
    so_rcvlowat: intOpt(fd, SOL_SOCKET, SO.RCVLOWAT),
    so_mark: intOpt(fd, SOL_SOCKET, SO.MARK),
  };
  const flags: Array<[string, number]> = [
    ['so_passcred', SO.PASSCRED],
    ['so_passsec', SO.PASSSEC],
    ['so_dontroute', SO.DONTROUTE],
    ['so_no_check', SO.NO_CHECK],
    ['so_broadcast', SO.BROADCAST],
    ['so_keepalive', SO.KEEPALIVE],
  ];
  for (const [field, name] of flags) if (flagOpt(fd, name)) opts[field] = true;
  if (intOpt(fd, SOL_SOCKET, SO.OOBINLINE)) opts['so_oobinline'] = 1;
  // struct linger: l_onoff, then l_linger in seconds, kept only when on (as CRIU keeps it).
  const linger = native.getsockoptBytes(fd, SOL_SOCKET, SO.LINGER, 8);
  if (linger.readInt32LE(0)) opts['so_linger'] = linger.readInt32LE(4);
  // Which buffer sizes the program fixed (SO_SNDBUF, SO_RCVBUF) and which the kernel tunes: the
  // restore's setting of both sizes fixes both, and this puts the tuning back.
  opts['so_buf_lock'] = intOpt(fd, SOL_SOCKET, SO.BUF_LOCK);
  // The interface the socket is bound to (SO_BINDTODEVICE): its name, NUL-terminated, or nothing.
  const device = native.getsockoptBytes(fd, SOL_SOCKET, SO.BINDTODEVICE, 16).toString('latin1').replace(/\0.*$/s, '');
  if (device) opts['so_bound_dev'] = device;
  // A classic BPF filter (SO_ATTACH_FILTER): each struct sock_filter as one little-endian word.
  const filter = native.socketFilter(fd);
  if (filter.length) opts['so_filter'] = Array.from({ length: filter.length / 8 }, (_, i) => filter.readBigUInt64LE(i * 8));
  return opts;
}

const NLMSG_HDRLEN = 16;
const align4 = (n: number) => (n + 3) & ~3;

/** The messages of a sock_diag answer: where each one's payload starts and where it ends. */
export function* diagMessages(buf: Buffer): Generator<{ at: number; end: number }> {
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length; ) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN) return;
    yield { at: off + NLMSG_HDRLEN, end: off + len };
    off += align4(len);
  }
}

/** The attributes of a message between `from` and `end`: each one's type and data. */
export function* diagAttributes(buf: Buffer, from: number, end: number): Generator<{ type: number; data: Buffer }> {
  for (let a = from; a + 4 <= end; ) {
    const len = buf.readUInt16LE(a);
    if (len < 4) return;
    yield { type: buf.readUInt16LE(a + 2) & 0x3fff, data: buf.subarray(a + 4, a + len) };
    a += align4(len);
  }
}
