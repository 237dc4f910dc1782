// Unix sockets at dump time: one files.img entry (type UNIXSK, `usk`) per socket as CRIU writes it,
// and its receive queue in sk-queues.img. The kernel's view (peer, backlog, queue lengths,
// shutdown) comes from sock_diag (fd-unixsk-diag.ts); options and queued bytes come from a copy of
// the task's fd taken with pidfd_getfd and read with MSG_PEEK, so the task loses nothing.
import { readlinkSync } from 'node:fs';
import { native } from '../actors/native.js';
import { unixSockets, type UnixDiag } from './fd-unixsk-diag.js';
import { checkSocketNamespace, copyOfTaskFd, inEveryNetNamespace, socketOptions, SocketRefusedError } from './socket-common.js';
import { FD_TYPE, zeroFown } from './regfile.js';
import { USK_EXTERN } from '../images/index.js';
import type { DumpIds, Entry } from './ids.js';
import { dumpFd, type FdProbe, type OpenFiles, type FileOrder } from './files.js';
import { GET_SEALS } from './fd-memfd.js';
import type { PeekedQueue } from '../actors/sockdiag-binding.js';

const TCP_LISTEN = 10;
const SCM_RIGHTS = 1;
/** The largest packet a unix socket can hold (SO_SNDBUF is capped well below this). */
const MAX_PACKET = 8 << 20;


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
    const diag = inEveryNetNamespace(open, unixSockets);
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

const SOCK_DGRAM = 2;
/** sk_opts_entry's required fields, zero: an external socket's options are its owner's business. */
const NO_OPTIONS: Entry = { so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n };

/**
 * Every peer of a dumped socket must be dumped too (or be a listener's pending connection). A
 * peer outside the tree is refused, but with `external` (criu's --ext-unix-sk) a datagram
 * socket's named peer (a syslog socket, say) is written as an entry of its own, USK_EXTERN with
 * its name, as CRIU writes it: the restore connects to that name again. A stream connection to
 * outside cannot be made again. Run after every task, before files.img is written.
 */
export function checkUnixPeers(open: OpenFiles, ids: DumpIds, external: boolean): void {
  const s = states.get(open);
  if (!s) return;
  const written = new Set<number>();
  for (const [ino, at] of s.dumped) {
    const d = s.diag.get(ino)!;
    if (!d.peer || s.dumped.has(d.peer) || s.iconOf.has(d.peer) || written.has(d.peer)) continue;
    const outside = `its peer ${d.peer} is outside the dumped tree (external unix socket)`;
    if (!external) throw new SocketRefusedError('unix', at.pid, at.fd, ino, `${outside}; a datagram socket's may be dumped with --ext-unix-sk`);
    if (d.type !== SOCK_DGRAM) throw new SocketRefusedError('unix', at.pid, at.fd, ino, `${outside}: a stream connection to outside cannot be made again (--ext-unix-sk takes datagram sockets)`);
    const peer = s.diag.get(d.peer);
    if (!peer?.name.length) throw new SocketRefusedError('unix', at.pid, at.fd, ino, `${outside} and has no name to connect to again`);
    const id = ids.newFileId();
    ids.addFile({ type: FD_TYPE.UNIXSK, id, usk: { id, ino: peer.ino, type: SOCK_DGRAM, state: TCP_LISTEN, flags: 0, uflags: USK_EXTERN, backlog: 0, peer: 0, fown: zeroFown(), opts: NO_OPTIONS, name: peer.name } });
    written.add(d.peer);
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
  // An abstract name is per network namespace: the restore binds it in the namespace of the task that makes it.
  if (d.name[0] === 0) checkSocketNamespace('unix', pid, fd, ino, open);
  let peeked: PeekedQueue | undefined;
  const id = await open.idFor(`unixsk:${ino}:${fileFlags}`, pid, fd, order, (id) => {
    const copy = grab(pid, fd, ino);
    try {
      ids.addFile({ type: FD_TYPE.UNIXSK, id, usk: unixEntry(id, d, s, fileFlags, socketOptions(copy)) });
      if (d.state !== TCP_LISTEN && d.rqueue > 0) peeked = peek(pid, fd, copy, d, open);
    } finally {
      native.close(copy);
    }
    s.dumped.set(ino, { id, pid, fd });
  }, ids);
  if (peeked) await queuePackets({ pid, fd, ino, id }, peeked, s, ids, open, order);
  // Bytes a pending client sent sit in the embryo socket only accept() would give: no fd reaches them.
  if (s.iconOf.has(ino) && d.wqueue > 0) throw new SocketRefusedError('unix', pid, fd, ino, `${d.wqueue} bytes sent on a connection not yet accepted`);
  return { id, flags: fdFlags, type: FD_TYPE.UNIXSK, fd };
}

function grab(pid: number, fd: number, ino: number): number {
  try {
    return copyOfTaskFd(pid, fd);
  } catch (e) {
    throw new SocketRefusedError('unix', pid, fd, ino, `cannot take a copy of it (${(e as Error).message})`);
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

/** The socket's receive queue; fds in flight in it stay open in crr (OpenFiles.inFlight) until the dump ends. */
function peek(pid: number, fd: number, copy: number, d: UnixDiag, open: OpenFiles): PeekedQueue {
  const peeked = native.peekQueue(copy, MAX_PACKET);
  open.inFlight.push(...peeked.passed.flat());
  if (peeked.truncated) throw new SocketRefusedError('unix', pid, fd, d.ino, 'more fds in flight in one message than SCM_RIGHTS carries (253)');
  return peeked;
}

/** Kinds whose dump reads the holder's fd table or session: crr cannot dump them from a copy of its own. */
function inFlightRefusal(link: string): string | undefined {
  if (link === 'anon_inode:[eventpoll]') return 'an epoll instance (its targets are fds of the task that made it)';
  if (/^\/dev\/(pts\/|tty|ptmx|console)/.test(link)) return `a terminal (${link})`;
  return undefined;
}

const F_GETPIPE_SZ = 1032;

/**
 * sk_ucred_entry of a packet a receiver with SO_PASSCRED will see its sender's credentials with:
 * uid and gid as the tree's user namespace has them, the pid as its PID namespace numbers it; a
 * sender outside the tree (gone since, or not dumped) is recorded as pid 0, which the restore
 * sends as the task that puts the packet back.
 */
function senderCredentials(cred: { pid: number; uid: number; gid: number }, open: OpenFiles): Entry {
  const { ids, hostPids, pidOf } = open.tree;
  return {
    uid: ids ? ids.uid(cred.uid, "a queued message's sender") : cred.uid,
    gid: ids ? ids.gid(cred.gid, "a queued message's sender") : cred.gid,
    pid: hostPids.has(cred.pid) ? pidOf(cred.pid) : 0,
  };
}

/**
 * One sk-queues entry per packet, in queue order (a stream's queue can come back in several
 * pieces: one entry each keeps the bytes in order). The fds a packet carries are dumped as files
 * of crr's own copies (same descriptions) and named in its scm entry by their files.img ids.
 */
async function queuePackets(socket: { pid: number; fd: number; ino: number; id: number }, peeked: PeekedQueue, s: UnixDumpState, ids: DumpIds, open: OpenFiles, order: FileOrder | undefined): Promise<void> {
  const self = process.pid;
  const probe: FdProbe = {
    ...(order ? { order } : {}),
    pipeSize: async (fd) => native.fcntlInt(fd, F_GETPIPE_SZ),
    seals: async (fd) => native.fcntlInt(fd, GET_SEALS),
  };
  const entries: Array<{ entry: Entry; payload: Uint8Array }> = [];
  for (const [i, packet] of peeked.packets.entries()) {
    const entry: Entry = { id_for: socket.id, length: packet.length };
    const cred = peeked.creds[i];
    if (cred) entry['ucred'] = senderCredentials(cred, open);
    const passed = peeked.passed[i] ?? [];
    if (passed.length) {
      const rights: number[] = [];
      for (const fd of passed) {
        const link = readlinkSync(`/proc/self/fd/${fd}`);
        const why = inFlightRefusal(link);
        if (why) throw new SocketRefusedError('unix', socket.pid, socket.fd, socket.ino, `an fd in flight (SCM_RIGHTS not yet received) is ${why}`);
        rights.push(Number((await dumpFd(self, fd, link, ids, open, probe))['id']));
      }
      entry['scm'] = [{ type: SCM_RIGHTS, rights }];
    }
    entries.push({ entry, payload: packet });
  }
  // Pushed together: an in-flight socket's own queue, dumped above, must not land inside this one's.
  s.queues.push(...entries);
}
