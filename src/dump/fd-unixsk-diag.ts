// Parses the unix sock_diag answer (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY for AF_UNIX) into one
// record per socket: what the kernel alone knows about a unix socket (its peer, the not-yet-accepted
// connections of a listener, queue lengths, shutdown bits). The netlink call is native
// (native/addon/sockdiag.cc); the layout facts are linux/unix_diag.h's.
import { native } from '../actors/native.js';
import { diagAttributes, diagMessages } from './socket-common.js';

export const UDIAG_SHOW = { NAME: 0x1, VFS: 0x2, PEER: 0x4, ICONS: 0x8, RQLEN: 0x10, MEMINFO: 0x20 } as const;
const ATTR = { NAME: 0, VFS: 1, PEER: 2, ICONS: 3, RQLEN: 4, MEMINFO: 5, SHUTDOWN: 6 } as const;
const UNIX_DIAG_MSG_LEN = 16;

export interface UnixDiag {
  ino: number;
  /** SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  type: number;
  /** TCP_ESTABLISHED 1, TCP_CLOSE 7, TCP_LISTEN 10 (the kernel reuses TCP's numbers). */
  state: number;
  /** sun_path bytes as bound (abstract names start with a NUL); empty when unbound. */
  name: Buffer;
  /** Inode and device of a path-bound socket's file. */
  vfs?: { ino: number; dev: number };
  peer: number;
  /** Inodes of connections waiting in a listener's backlog. */
  icons: number[];
  /** Listener: pending connections and max backlog; others: bytes in the receive and send queues. */
  rqueue: number;
  wqueue: number;
  /** RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2. */
  shutdown: number;
}

/** Parses concatenated netlink messages of unix_diag_msg + attributes. */
export function parseUnixDiag(buf: Buffer): UnixDiag[] {
  const out: UnixDiag[] = [];
  for (const { at: msg, end } of diagMessages(buf)) {
    const d: UnixDiag = {
      type: buf.readUInt8(msg + 1),
      state: buf.readUInt8(msg + 2),
      ino: buf.readUInt32LE(msg + 4),
      name: Buffer.alloc(0),
      peer: 0,
      icons: [],
      rqueue: 0,
      wqueue: 0,
      shutdown: 0,
    };
    for (const { type, data } of diagAttributes(buf, msg + UNIX_DIAG_MSG_LEN, end)) {
      if (type === ATTR.NAME) d.name = Buffer.from(data);
      else if (type === ATTR.VFS) d.vfs = { ino: data.readUInt32LE(0), dev: data.readUInt32LE(4) };
      else if (type === ATTR.PEER) d.peer = data.readUInt32LE(0);
      else if (type === ATTR.ICONS) for (let i = 0; i + 4 <= data.length; i += 4) d.icons.push(data.readUInt32LE(i));
      else if (type === ATTR.RQLEN) {
        d.rqueue = data.readUInt32LE(0);
        d.wqueue = data.readUInt32LE(4);
      } else if (type === ATTR.SHUTDOWN) d.shutdown = data.readUInt8(0);
    }
    out.push(d);
  }
  return out;
}

/** Every unix socket of the network namespace of `diagSocket` (crr's without it), by inode. */
export function unixSockets(diagSocket?: number): Map<number, UnixDiag> {
  const show = UDIAG_SHOW.NAME | UDIAG_SHOW.VFS | UDIAG_SHOW.PEER | UDIAG_SHOW.ICONS | UDIAG_SHOW.RQLEN;
  const list = parseUnixDiag(native.unixDiag(show, diagSocket));
  return new Map(list.map((d) => [d.ino, d]));
}
