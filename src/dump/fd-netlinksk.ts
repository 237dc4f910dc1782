// Netlink sockets at dump time: one files.img entry (type NETLINKSK, `nlsk`) per socket as CRIU
// writes it: protocol, port id, multicast groups, the peer it is connected to, SOL_SOCKET options.
// The kernel's view comes from sock_diag (native netlinkDiag, in the tree's network namespace).
// A socket with messages waiting to be read is refused: they are not saved.
import { native } from '../actors/native.js';
import { diagAttributes, diagMessages, perDump, socketDescriptionId, type SocketFd, SocketRefusedError } from './socket-common.js';
import { zeroFown } from './regfile.js';
import type { DumpIds, Entry } from './ids.js';
import type { FileOrder, OpenFiles } from './files.js';

export const FD_TYPE_NETLINKSK = 13;
const NETLINK_DIAG_MSG_LEN = 28;
const ATTR = { MEMINFO: 0, GROUPS: 1 } as const;

export interface NetlinkDiag {
  ino: number;
  protocol: number;
  state: number;
  portid: number;
  dstPortid: number;
  dstGroup: number;
  /** Multicast group bitmap, 32 groups a word. */
  groups: number[];
  /** Bytes of messages waiting in the receive queue (SK_MEMINFO_RMEM_ALLOC). */
  rmem: number;
}


/** Parses concatenated netlink messages of netlink_diag_msg + attributes (linux/netlink_diag.h). */
export function parseNetlinkDiag(buf: Buffer): NetlinkDiag[] {
  const out: NetlinkDiag[] = [];
  for (const { at: m, end } of diagMessages(buf)) {
    const d: NetlinkDiag = {
      protocol: buf.readUInt8(m + 2),
      state: buf.readUInt8(m + 3),
      portid: buf.readUInt32LE(m + 4),
      dstPortid: buf.readUInt32LE(m + 8),
      dstGroup: buf.readUInt32LE(m + 12),
      ino: buf.readUInt32LE(m + 16),
      groups: [],
      rmem: 0,
    };
    for (const { type, data } of diagAttributes(buf, m + NETLINK_DIAG_MSG_LEN, end)) {
      if (type === ATTR.GROUPS) for (let i = 0; i + 4 <= data.length; i += 4) d.groups.push(data.readUInt32LE(i));
      else if (type === ATTR.MEMINFO && data.length >= 4) d.rmem = data.readUInt32LE(0);
    }
    // The kernel sends the whole bitmap; trailing empty words say nothing.
    while (d.groups.length && d.groups[d.groups.length - 1] === 0) d.groups.pop();
    out.push(d);
  }
  return out;
}

const snapshots = new WeakMap<OpenFiles, Map<number, NetlinkDiag>>();

/**
 * Adds the files.img entry of a netlink socket fd; returns the fdinfo entry, or undefined when
 * `ino` is not a netlink socket of this network namespace.
 */
export async function dumpNetlinkFd(
  at: SocketFd,
  ids: DumpIds,
  open: OpenFiles,
  order: FileOrder | undefined,
): Promise<Entry | undefined> {
  const { pid, fd, ino } = at;
  const d = perDump(snapshots, open, (diag) => new Map(parseNetlinkDiag(native.netlinkDiag(diag)).map((n) => [n.ino, n]))).get(ino);
  if (!d) return undefined;
  if (d.rmem > 0) throw new SocketRefusedError('netlink', pid, fd, ino, `${d.rmem} bytes of messages not yet read`);
  const id = await socketDescriptionId('netlinksk', at, ids, open, order, (id, opts) => ({ type: FD_TYPE_NETLINKSK, id, nlsk: netlinkEntry(id, d, at.fileFlags, opts) }));
  return { id, flags: at.fdFlags, type: FD_TYPE_NETLINKSK, fd };
}

function netlinkEntry(id: number, d: NetlinkDiag, flags: number, opts: Entry): Entry {
  return {
    id,
    ino: d.ino,
    protocol: d.protocol,
    state: d.state,
    flags,
    portid: d.portid,
    groups: d.groups,
    dst_portid: d.dstPortid,
    dst_group: d.dstGroup,
    fown: zeroFown(),
    opts,
  };
}
