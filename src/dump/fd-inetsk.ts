// Inet sockets at dump time: TCP and UDP over IPv4 and IPv6, one files.img entry (type INETSK,
// `isk`) per socket as CRIU writes it. The kernel's view (state, addresses, queues, a listener's
// backlog) comes from sock_diag (native inetDiag, in the tree's network namespace); options from a
// pidfd_getfd copy of the task's fd. A connecting, established or half-closed TCP connection is
// read in repair mode (TCP_REPAIR, when the dump is asked to: criu's --tcp-established) into
// tcp-stream-<ino>.img: sequence numbers, both queues, options and windows; the socket stays in
// repair mode until the dump ends, so the task's death closes it without a FIN or RST
// (finishTcpRepair). Datagrams queued in a UDP socket go into sk-queues.img with their senders.
// What a restore could not bring back is refused: a TCP connection without the option, or
// half-accepted (SYN_RECV), a listener holding connections not yet accepted (unless
// --skip-in-flight leaves them out, as criu's does).
import { native } from '../actors/native.js';
import { AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, TCP_CLOSE, TCP_CONNECTION_STATES, TCP_ESTABLISHED, TCP_FIN_SENT, TCP_LISTEN } from '../images/inet-address.js';
import { copyOfTaskFd, diagMessages, intOpt, perDump, socketOptions, type SocketFd, SocketRefusedError } from './socket-common.js';
import { FD_TYPE, zeroFown } from './regfile.js';
import type { DumpIds, Entry } from './ids.js';
import type { FileOrder, OpenFiles } from './files.js';

const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const SOL_SOCKET = 1;
const SO_DOMAIN = 39;
const SO_PROTOCOL = 38;
const SO_REUSEPORT = 15;
const TCP = { NODELAY: 1, MAXSEG: 2, CORK: 3, KEEPIDLE: 4, KEEPINTVL: 5, KEEPCNT: 6, INFO: 11, REPAIR: 19, REPAIR_QUEUE: 20, QUEUE_SEQ: 21, TIMESTAMP: 24, REPAIR_WINDOW: 29 } as const;
const TCP_RECV_QUEUE = 1;
const TCP_SEND_QUEUE = 2;
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;
const SOL_IP = 0;
const IP_TOS = 1;
const IP_PKTINFO = 8;
const IP_FREEBIND = 15;
const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];


export interface InetDiag {
  family: number;
  protocol: number;
  state: number;
  srcPort: number;
  dstPort: number;
  /** Address words as the kernel keeps them (network byte order read little-endian), CRIU's layout: 1 for IPv4, 4 for IPv6. */
  src: number[];
  dst: number[];
  /** A listener's pending connections; otherwise bytes in the receive queue. */
  rqueue: number;
  /** A listener's backlog; otherwise bytes in the send queue. */
  wqueue: number;
  ino: number;
}

/** Parses concatenated netlink messages of inet_diag_msg (linux/inet_diag.h). */
export function parseInetDiag(buf: Buffer, protocol: number): InetDiag[] {
  const out: InetDiag[] = [];
  for (const { at: m } of diagMessages(buf)) {
    const family = buf.readUInt8(m);
    const words = family === AF_INET6 ? 4 : 1;
    const addr = (at: number) => Array.from({ length: words }, (_, i) => buf.readUInt32LE(at + 4 * i));
    out.push({
      family,
      protocol,
      state: buf.readUInt8(m + 1),
      srcPort: buf.readUInt16BE(m + 4),
      dstPort: buf.readUInt16BE(m + 6),
      src: addr(m + 8),
      dst: addr(m + 24),
      rqueue: buf.readUInt32LE(m + 56),
      wqueue: buf.readUInt32LE(m + 60),
      ino: buf.readUInt32LE(m + 68),
    });
  }
  return out;
}

/** Every TCP and UDP socket over IPv4 and IPv6 of the network namespace of `diagSocket` (crr's without it), by inode. */
function inetSockets(diagSocket?: number): Map<number, InetDiag> {
  const out = new Map<number, InetDiag>();
  for (const family of [AF_INET, AF_INET6]) {
    for (const protocol of [IPPROTO_TCP, IPPROTO_UDP]) {
      for (const d of parseInetDiag(native.inetDiag(family, protocol, diagSocket), protocol)) out.set(d.ino, d);
    }
  }
  return out;
}

const snapshots = new WeakMap<OpenFiles, Map<number, InetDiag>>();

/** Why a restore could not bring this socket back, or undefined. */
export function unsupportedInet(d: InetDiag, options: { tcpEstablished?: boolean; tcpClose?: boolean; skipInFlight?: boolean } = {}): string | undefined {
  const { tcpEstablished = false, tcpClose = false, skipInFlight = false } = options;
  const state = TCP_STATES[d.state] ?? String(d.state);
  // fe80::/10 (the first two bytes, read little-endian in the first word): an address that needs
  // its interface's scope id, which crr does not record.
  const linkLocal = (words: readonly number[]) => d.family === AF_INET6 && ((words[0] ?? 0) & 0xc0ff) === 0x80fe;
  if (linkLocal(d.src) || linkLocal(d.dst)) return 'bound or connected to a link-local IPv6 address (its scope id is not saved)';
  if (d.protocol === IPPROTO_TCP) {
    // Connections in the accept queue cannot be put back into one (criu: --skip-in-flight).
    if (d.state === TCP_LISTEN) return d.rqueue > 0 && !skipInFlight ? `a TCP listener with ${d.rqueue} connection(s) not yet accepted (dump with --skip-in-flight to leave them out: their clients are reset)` : undefined;
    if (TCP_CONNECTION_STATES.has(d.state)) {
      return tcpEstablished || tcpClose ? undefined : `a TCP connection in state ${state} (dump with --tcp-established to save it in repair mode, or --tcp-close to have it come back closed)`;
    }
    if (d.state !== TCP_CLOSE) return `a TCP connection in state ${state} (only connecting, established and half-closed connections can be saved)`;
    return undefined;
  }
  if (d.state !== TCP_CLOSE && d.state !== TCP_ESTABLISHED) return `a UDP socket in state ${state}`;
  return undefined;
}

/**
 * Adds the files.img entry of an inet socket fd; returns the fdinfo entry, or undefined when the
 * fd is not a TCP or UDP socket.
 */
export async function dumpInetFd(
  at: SocketFd,
  ids: DumpIds,
  open: OpenFiles,
  order: FileOrder | undefined,
): Promise<Entry | undefined> {
  const { pid, fd, ino } = at;
  const d = perDump(snapshots, open, inetSockets).get(ino) ?? unlisted(pid, fd, ino);
  if (!d) return undefined;
  const why = unsupportedInet(d, open);
  if (why) throw new SocketRefusedError('inet', pid, fd, ino, why);
  // Options come from a copy of the socket, taken once per socket (a description several fds
  // share is made once).
  const id = await open.idFor(`inetsk:${ino}:${at.fileFlags}`, pid, fd, order, (id) => {
    const copy = copyOfTaskFd(pid, fd);
    try {
      const entry = inetEntry(id, d, at.fileFlags, inetOptions(copy, d));
      if (d.family === AF_INET6) entry['v6only'] = intOpt(copy, IPPROTO_IPV6, IPV6_V6ONLY) !== 0;
      const ip = ipOptions(copy, d);
      if (Object.keys(ip).length) entry['ip_opts'] = ip;
      ids.addFile({ type: FD_TYPE.INETSK, id, isk: entry });
      if (d.protocol === IPPROTO_TCP && TCP_CONNECTION_STATES.has(d.state) && !open.tcpClose) {
        open.tcpStreams.push({ name: `tcp-stream-${ino.toString(16)}.img`, ...readInRepair(copy, open, at, d.state) });
      }
      if (d.protocol === IPPROTO_UDP && d.rqueue > 0) open.inetQueues.push(...queuedDatagrams(copy, id));
    } finally {
      // A connection switched to repair mode keeps its copy until the dump ends (finishTcpRepair).
      if (!open.tcpRepair.includes(copy)) native.close(copy);
    }
  }, ids);
  return { id, flags: at.fdFlags, type: FD_TYPE.INETSK, fd };
}

/** The largest UDP datagram. */
const MAX_DATAGRAM = 65536;

/**
 * sk-queues.img entries of the datagrams queued in a UDP socket (a copy of the task's), peeked,
 * not taken, each with its sender's address in `addr` (the field CRIU reserves for it).
 */
function queuedDatagrams(copy: number, id: number): Array<{ entry: Entry; payload: Uint8Array }> {
  const { packets, senders } = native.peekQueue(copy, MAX_DATAGRAM, true);
  return packets.map((data, i) => ({ entry: { id_for: id, length: data.length, addr: new Uint8Array(senders[i] ?? []) }, payload: data }));
}

/**
 * A TCP or UDP socket sock_diag does not list (never bound, or a TCP socket bound that never
 * listened), from the socket itself: closed, at the address getsockname gives. Undefined for
 * other sockets.
 */
function unlisted(pid: number, fd: number, ino: number): InetDiag | undefined {
  const copy = copyOfTaskFd(pid, fd);
  try {
    const family = intOpt(copy, SOL_SOCKET, SO_DOMAIN);
    const protocol = intOpt(copy, SOL_SOCKET, SO_PROTOCOL);
    if ((family !== AF_INET && family !== AF_INET6) || (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP)) return undefined;
    // sockaddr_in: family, port, address; sockaddr_in6: family, port, flow info, address, scope.
    const sa = native.getsockname(copy);
    const words = (at: number, n: number) => Array.from({ length: n }, (_, i) => sa.readUInt32LE(at + 4 * i));
    const src = family === AF_INET6 ? words(8, 4) : words(4, 1);
    return { family, protocol, state: TCP_CLOSE, srcPort: sa.readUInt16BE(2), dstPort: 0, src, dst: src.map(() => 0), rqueue: 0, wqueue: 0, ino };
  } finally {
    native.close(copy);
  }
}

/**
 * Switches the connection to repair mode (kept: `fd`, a copy of the task's socket, is closed by
 * finishTcpRepair) and reads what a restore needs: each queue's sequence number and bytes, the
 * options negotiated, the windows. tcp_stream_entry, its payload the receive then the send queue.
 */
function readInRepair(fd: number, open: OpenFiles, of: SocketFd, state: number): { entry: Entry; payload: Uint8Array } {
  native.setsockoptInt(fd, IPPROTO_TCP, TCP.REPAIR, 1);
  open.tcpRepair.push(fd);
  // Our FIN, queued, is no byte of data: like CRIU, the lengths leave it out (outq_seq counts it).
  const fin = TCP_FIN_SENT.has(state) ? 1 : 0;
  const queue = (which: number, lengthIoctl: number, less = 0) => {
    native.setsockoptInt(fd, IPPROTO_TCP, TCP.REPAIR_QUEUE, which);
    const seq = intOpt(fd, IPPROTO_TCP, TCP.QUEUE_SEQ) >>> 0;
    const length = Math.max(0, native.ioctlInt(fd, lengthIoctl) - less);
    const data = length > 0 ? native.peekBytes(fd, length) : Buffer.alloc(0);
    if (data.length !== length) throw new SocketRefusedError('inet', of.pid, of.fd, of.ino, `in repair mode, ${data.length} of ${length} queued bytes could be read`);
    return { seq, data };
  };
  const inq = queue(TCP_RECV_QUEUE, SIOCINQ);
  const outq = queue(TCP_SEND_QUEUE, SIOCOUTQ, fin);
  const unsent = Math.max(0, native.ioctlInt(fd, SIOCOUTQNSD) - fin);
  native.setsockoptInt(fd, IPPROTO_TCP, TCP.REPAIR_QUEUE, 0);
  // struct tcp_info: tcpi_options at byte 5, then snd_wscale (low nibble) and rcv_wscale.
  const info = native.getsockoptBytes(fd, IPPROTO_TCP, TCP.INFO, 8);
  const window = native.getsockoptBytes(fd, IPPROTO_TCP, TCP.REPAIR_WINDOW, 20);
  const entry: Entry = {
    inq_len: inq.data.length,
    inq_seq: inq.seq,
    outq_len: outq.data.length,
    outq_seq: outq.seq,
    opt_mask: info.readUInt8(5),
    snd_wscale: info.readUInt8(6) & 0xf,
    mss_clamp: intOpt(fd, IPPROTO_TCP, TCP.MAXSEG),
    rcv_wscale: info.readUInt8(6) >> 4,
    timestamp: intOpt(fd, IPPROTO_TCP, TCP.TIMESTAMP) >>> 0,
    nodelay: intOpt(fd, IPPROTO_TCP, TCP.NODELAY) !== 0,
    cork: intOpt(fd, IPPROTO_TCP, TCP.CORK) !== 0,
    unsq_len: unsent,
    snd_wl1: window.readUInt32LE(0),
    snd_wnd: window.readUInt32LE(4),
    max_window: window.readUInt32LE(8),
    rcv_wnd: window.readUInt32LE(12),
    rcv_wup: window.readUInt32LE(16),
  };
  return { entry, payload: Buffer.concat([inq.data, outq.data]) };
}

/**
 * Ends repair mode on every connection the dump read: `live` (the tasks run on, or the dump
 * failed) switches it off first, so the connection carries on; otherwise the tasks were killed
 * and closing the last copy, still in repair mode, ends the connection without a FIN or RST.
 */
export function finishTcpRepair(open: OpenFiles, live: boolean): void {
  for (const fd of open.tcpRepair.splice(0)) {
    try {
      if (live) native.setsockoptInt(fd, IPPROTO_TCP, TCP.REPAIR, 0);
    } finally {
      native.close(fd);
    }
  }
}

/** sk_opts_entry: the SOL_SOCKET options of every socket, SO_REUSEPORT, and TCP's keepalive timing when keepalive is on. */
function inetOptions(fd: number, d: InetDiag): Entry {
  const opts = socketOptions(fd);
  if (intOpt(fd, SOL_SOCKET, SO_REUSEPORT)) opts['so_reuseport'] = true;
  if (d.protocol === IPPROTO_TCP && opts['so_keepalive']) {
    opts['tcp_keepcnt'] = intOpt(fd, IPPROTO_TCP, TCP.KEEPCNT);
    opts['tcp_keepidle'] = intOpt(fd, IPPROTO_TCP, TCP.KEEPIDLE);
    opts['tcp_keepintvl'] = intOpt(fd, IPPROTO_TCP, TCP.KEEPINTVL);
  }
  return opts;
}

/**
 * ip_opts_entry: IP_FREEBIND (a bind to an address not yet up), and IP_PKTINFO and the type of
 * service (IP_TOS) of an IPv4 socket; only what is on.
 */
function ipOptions(fd: number, d: InetDiag): Entry {
  const ip: Entry = {};
  if (intOpt(fd, SOL_IP, IP_FREEBIND)) ip['freebind'] = true;
  if (d.family === AF_INET && intOpt(fd, SOL_IP, IP_PKTINFO)) ip['pktinfo'] = true;
  const tos = d.family === AF_INET ? intOpt(fd, SOL_IP, IP_TOS) : 0;
  if (tos) ip['tos'] = tos;
  return ip;
}

function inetEntry(id: number, d: InetDiag, flags: number, opts: Entry): Entry {
  return {
    id,
    ino: d.ino,
    family: d.family,
    type: d.protocol === IPPROTO_TCP ? 1 : 2,
    proto: d.protocol,
    state: d.state,
    src_port: d.srcPort,
    dst_port: d.dstPort,
    flags,
    backlog: d.state === TCP_LISTEN ? d.wqueue : 0,
    src_addr: d.src,
    dst_addr: d.dst,
    fown: zeroFown(),
    opts,
  };
}
