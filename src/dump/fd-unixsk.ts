// Unix sockets at dump time: one files.img entry (type UNIXSK, `usk`) per socket as CRIU writes it,
// and its receive queue in sk-queues.img. The kernel's view (peer, backlog, queue lengths,
// shutdown) comes from sock_diag (fd-unixsk-diag.ts); options and queued bytes come from a copy of
// the task's fd taken with pidfd_getfd and read with MSG_PEEK, so the task loses nothing.
import { native } from '../actors/native.js';
import { CrrError } from '../errors.js';
import { unixSockets, type UnixDiag } from './fd-unixsk-diag.js';
import { FD_TYPE, zeroFown } from './regfile.js';
import type { DumpIds, Entry } from './ids.js';
import type { OpenFiles, FileOrder } from './files.js';

const SOL_SOCKET = 1;
const SO = { REUSEADDR: 2, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, NO_CHECK: 11, PRIORITY: 12, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO_OLD: 20, SNDTIMEO_OLD: 21, PASSSEC: 34, MARK: 36 } as const;
const TCP_LISTEN = 10;
/** The largest packet a unix socket can hold (SO_SNDBUF is capped well below this). */
const MAX_PACKET = 8 << 20;

/** A unix socket the dump cannot describe (an fd in flight, an external peer, ...). */
export class UnixSocketError extends CrrError {
  constructor(readonly pid: number, readonly fd: number, readonly ino: number, detail: string) {
    super(`pid ${pid}: fd ${fd} is unix socket ${ino}: not supported: ${detail}`, 1);
  }
}

/** Dump-wide unix socket state: one diag snapshot, queued packets for sk-queues.img. */
interface UnixDumpState {
  diag: Map<number, UnixDiag>;
  /** Listener inode of every client whose connection waits in a backlog (icons list clients). */
  iconOf: Map<number, number>;
  queues: Array<{ entry: Entry; payload: Uint8Array }>;
  /** Socket inode -> files.img id, to check peers once every task is collected. */
  dumped: Map<number, { id: number; pid: number; fd: number }>;
}

const states = new WeakMap<OpenFiles, UnixDumpState>();

function stateOf(open: OpenFiles): UnixDumpState {
  let s = states.get(open);
  if (!s) {
    const diag = unixSockets();
    const iconOf = new Map<number, number>();
    for (const d of diag.values()) for (const icon of d.icons) iconOf.set(icon, d.ino);
    s = { diag, iconOf, queues: [], dumped: new Map() };
    states.set(open, s);
  }
  return s;
}

/** sk-queues.img entries (each with its payload) collected so far; empty when none. */
export function unixQueues(open: OpenFiles): Array<{ entry: Entry; payload: Uint8Array }> {
  return states.get(open)?.queues ?? [];
}

/**
 * Every peer of a dumped socket must be dumped too (or be a listener's pending connection):
 * a peer outside the tree is an external socket crr cannot recreate. Run after every task.
 */
export function checkUnixPeers(open: OpenFiles): void {
  const s = states.get(open);
  if (!s) return;
  for (const [ino, at] of s.dumped) {
    const d = s.diag.get(ino)!;
    if (!d.peer || s.dumped.has(d.peer) || s.iconOf.has(d.peer)) continue;
    throw new UnixSocketError(at.pid, at.fd, ino, `its peer ${d.peer} is outside the dumped tree (external unix socket)`);
  }
}

/**
 * Adds the files.img entry of a unix socket fd and queues its packets; returns the fdinfo entry,
 * or undefined when `ino` is not a unix socket (the caller reports other socket families).
 */
export async function dumpUnixFd(
  pid: number,
  fd: number,
  ino: number,
  fileFlags: number,
  fdFlags: number,
  ids: DumpIds,
  open: OpenFiles,
  order: FileOrder | undefined,
): Promise<Entry | undefined> {
  const s = stateOf(open);
  const d = s.diag.get(ino);
  if (!d) return undefined;
  const id = await open.idFor(`unixsk:${ino}:${fileFlags}`, pid, fd, order, (id) => {
    const copy = grab(pid, fd, ino);
    try {
      ids.addFile({ type: FD_TYPE.UNIXSK, id, usk: unixEntry(id, d, s, fileFlags, socketOptions(copy)) });
      if (d.state !== TCP_LISTEN && d.rqueue > 0) queuePackets(pid, fd, copy, id, d, s);
    } finally {
      native.close(copy);
    }
    s.dumped.set(ino, { id, pid, fd });
  }, ids);
  // Bytes a pending client sent sit in the embryo socket only accept() would give: no fd reaches them.
  if (s.iconOf.has(ino) && d.wqueue > 0) throw new UnixSocketError(pid, fd, ino, `${d.wqueue} bytes sent on a connection not yet accepted`);
  return { id, flags: fdFlags, type: FD_TYPE.UNIXSK, fd };
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

function grab(pid: number, fd: number, ino: number): number {
  try {
    return copyOfTaskFd(pid, fd);
  } catch (e) {
    throw new UnixSocketError(pid, fd, ino, `cannot take a copy of it (${(e as Error).message})`);
  }
}

function unixEntry(id: number, d: UnixDiag, s: UnixDumpState, flags: number, opts: Entry): Entry {
  // A client whose connection sits in a listener's backlog has no peer inode (the embryo socket
  // has none; the listener's icons list the clients): it names the listener as its peer, as CRIU
  // does, and restoring it means connecting to that listener again.
  const peer = d.peer || (s.iconOf.get(d.ino) ?? 0);
  const entry: Entry = {
    id,
    ino: d.ino,
    type: d.type,
    state: d.state,
    flags,
    uflags: 0,
    backlog: d.wqueue,
    peer,
    fown: zeroFown(),
    opts,
    name: d.name,
  };
  if (d.shutdown) entry['shutdown'] = d.shutdown;
  return entry;
}

function intOpt(fd: number, name: number): number {
  return native.getsockoptBytes(fd, SOL_SOCKET, name, 4).readInt32LE(0);
}

/** A boolean option; false where this socket's family does not have it (SO_PASSCRED and SO_PASSSEC are unix and netlink only from Linux 6.16). */
function flagOpt(fd: number, name: number): boolean {
  try {
    return intOpt(fd, name) !== 0;
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
    so_sndbuf: intOpt(fd, SO.SNDBUF),
    so_rcvbuf: intOpt(fd, SO.RCVBUF),
    so_snd_tmo_sec: snd.sec,
    so_snd_tmo_usec: snd.usec,
    so_rcv_tmo_sec: rcv.sec,
    so_rcv_tmo_usec: rcv.usec,
    reuseaddr: intOpt(fd, SO.REUSEADDR) !== 0,
    so_priority: intOpt(fd, SO.PRIORITY),
    so_rcvlowat: intOpt(fd, SO.RCVLOWAT),
    so_mark: intOpt(fd, SO.MARK),
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
  return opts;
}

function queuePackets(pid: number, fd: number, copy: number, id: number, d: UnixDiag, s: UnixDumpState): void {
  const peeked = native.peekQueue(copy, MAX_PACKET);
  if (peeked.rights > 0) throw new UnixSocketError(pid, fd, d.ino, `${peeked.rights} fd(s) in flight (SCM_RIGHTS not yet received)`);
  // A stream's queue can come back in several pieces: one sk-queues entry per piece keeps the bytes in order.
  for (const packet of peeked.packets) s.queues.push({ entry: { id_for: id, length: packet.length }, payload: packet });
}
