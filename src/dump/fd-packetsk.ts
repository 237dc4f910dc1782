// Packet sockets (AF_PACKET) at dump time: one files.img entry (type PACKETSK, `psk`) per socket
// as CRIU writes it: type, protocol, the interface it is bound to, SOL_SOCKET options and the
// SOL_PACKET ones (version, reserve, auxdata, origdev, vnet header, loss, timestamping, copy
// threshold) and its fanout group. The kernel's view comes from sock_diag (native packetDiag, in
// the tree's network namespace). Packets queued in it are not saved, as CRIU does not: a packet
// socket may lose packets. Memberships (PACKET_ADD_MEMBERSHIP: multicast, promiscuous) and
// mapped rings are refused.
import { native } from '../actors/native.js';
import { diagAttributes, diagMessages, perDump, socketDescriptionId, type SocketFd, SocketRefusedError } from './socket-common.js';
import { zeroFown } from './regfile.js';
import type { DumpIds, Entry } from './ids.js';
import type { FileOrder, OpenFiles } from './files.js';

export const FD_TYPE_PACKETSK = 10;
const PACKET_DIAG_MSG_LEN = 16;
const ATTR = { INFO: 0, MCLIST: 1, RX_RING: 2, TX_RING: 3, FANOUT: 4 } as const;
const PDI = { AUXDATA: 0x2, ORIGDEV: 0x4, VNETHDR: 0x8, LOSS: 0x10 } as const;

export interface PacketDiag {
  ino: number;
  type: number;
  /** The protocol it receives, host order (ETH_P_ALL 3, ETH_P_IP 0x800...). */
  protocol: number;
  ifindex: number;
  version: number;
  reserve: number;
  copyThresh: number;
  timestamp: number;
  flags: number;
  memberships: number;
  rings: string[];
  fanout?: number;
}


/** Parses concatenated netlink messages of packet_diag_msg + attributes (linux/packet_diag.h). */
export function parsePacketDiag(buf: Buffer): PacketDiag[] {
  const out: PacketDiag[] = [];
  for (const { at: m, end } of diagMessages(buf)) {
    const d: PacketDiag = { type: buf.readUInt8(m + 1), protocol: buf.readUInt16LE(m + 2), ino: buf.readUInt32LE(m + 4), ifindex: 0, version: 0, reserve: 0, copyThresh: 0, timestamp: 0, flags: 0, memberships: 0, rings: [] };
    for (const { type, data } of diagAttributes(buf, m + PACKET_DIAG_MSG_LEN, end)) {
      if (type === ATTR.INFO && data.length >= 24) {
        d.ifindex = data.readUInt32LE(0);
        d.version = data.readUInt32LE(4);
        d.reserve = data.readUInt32LE(8);
        d.copyThresh = data.readUInt32LE(12);
        d.timestamp = data.readUInt32LE(16);
        d.flags = data.readUInt32LE(20);
      } else if (type === ATTR.MCLIST) d.memberships = Math.floor(data.length / 44);
      else if (type === ATTR.RX_RING) d.rings.push('PACKET_RX_RING');
      else if (type === ATTR.TX_RING) d.rings.push('PACKET_TX_RING');
      else if (type === ATTR.FANOUT && data.length >= 4) d.fanout = data.readUInt32LE(0);
    }
    out.push(d);
  }
  return out;
}

const snapshots = new WeakMap<OpenFiles, Map<number, PacketDiag>>();

/**
 * Adds the files.img entry of a packet socket fd; returns the fdinfo entry, or undefined when
 * `ino` is not a packet socket of this network namespace.
 */
export async function dumpPacketFd(at: SocketFd, ids: DumpIds, open: OpenFiles, order: FileOrder | undefined): Promise<Entry | undefined> {
  const { pid, fd, ino } = at;
  const d = perDump(snapshots, open, (diag) => new Map(parsePacketDiag(native.packetDiag(diag)).map((p) => [p.ino, p]))).get(ino);
  if (!d) return undefined;
  if (d.rings.length) throw new SocketRefusedError('packet', pid, fd, ino, `a mapped ring (${d.rings.join(', ')})`);
  if (d.memberships) throw new SocketRefusedError('packet', pid, fd, ino, `${d.memberships} membership(s) added with PACKET_ADD_MEMBERSHIP (multicast or promiscuous mode)`);
  const id = await socketDescriptionId('packetsk', at, ids, open, order, (id, opts) => ({ type: FD_TYPE_PACKETSK, id, psk: packetEntry(id, d, at.fileFlags, opts) }));
  return { id, flags: at.fdFlags, type: FD_TYPE_PACKETSK, fd };
}

function packetEntry(id: number, d: PacketDiag, flags: number, opts: Entry): Entry {
  return {
    id,
    type: d.type,
    protocol: d.protocol,
    flags,
    ifindex: d.ifindex,
    fown: zeroFown(),
    opts,
    version: d.version,
    reserve: d.reserve,
    aux_data: Boolean(d.flags & PDI.AUXDATA),
    orig_dev: Boolean(d.flags & PDI.ORIGDEV),
    vnet_hdr: Boolean(d.flags & PDI.VNETHDR),
    loss: Boolean(d.flags & PDI.LOSS),
    timestamp: d.timestamp,
    copy_thresh: d.copyThresh,
    ...(d.fanout !== undefined ? { fanout: d.fanout } : {}),
  };
}
