// Inet sockets, TCP and UDP over IPv4 and IPv6: each comes back as the same socket at its fds,
// with its SOL_SOCKET options (SO_REUSEPORT among them), TCP keepalive timing, IPV6_V6ONLY,
// IP_FREEBIND and IP_PKTINFO, bound to its address and port, a TCP listener listening with its
// backlog, a connected UDP socket connected to its peer, and O_NONBLOCK. The first holder (tree
// order) makes it with helper ops at its first fd; other holders take a pidfd_getfd copy
// (restoreAnonFds). An established or half-closed TCP connection is rebuilt in repair mode from
// its tcp-stream image: sequence numbers, options, windows and both queues, then its FINs
// (repairOffOps); one still connecting sends its SYN again. Datagrams queued in a
// UDP socket (sk-queues.img, with their senders) are sent to it again through a raw socket,
// each from its own sender's address and port (raw-packets.ts). Restored into crr's own
// network namespace (or the tree's, loopback only): the addresses must be free there.
import type { Entry } from '../images/index.js';
import { AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, sockaddrOf, socketText, TCP_CLOSE, TCP_CONNECTION_STATES, TCP_ESTABLISHED, TCP_FIN_RECEIVED, TCP_FIN_SENT, TCP_LISTEN, TCP_SYN_SENT } from '../images/inet-address.js';
import { HelperBatchError } from '../actors/helper-errors.js';
import { NativeError } from '../errors.js';
import { perKey } from '../memo.js';
import { helperOf, type RestoreCtx, type RestoreSession } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType, spareFds } from './shared-fds.js';
import { optionOps, type Op } from './socket-options.js';
import { destinationFor, endpointOf, rawSockaddr, tcpPacket, TCP_FLAGS, udpPacket, type Endpoint } from './raw-packets.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_INETSK = 4;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const SOL_IP = 0;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IP_TOS = 1;
const IP_PKTINFO = 8;
const IP_FREEBIND = 15;
const TCP_NODELAY = 1;
const TCP_MAXSEG = 2;
const MAX_USER_MSS = 32767;
const TCP_CORK = 3;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_REPAIR = 19;
const TCP_REPAIR_QUEUE = 20;
const TCP_QUEUE_SEQ = 21;
const TCP_REPAIR_OPTIONS = 22;
const TCP_TIMESTAMP = 24;
const TCP_REPAIR_WINDOW = 29;
const SHUT_WR = 1;
const TCP_RECV_QUEUE = 1;
const TCP_SEND_QUEUE = 2;
const TCPI_OPT = { TIMESTAMPS: 1, SACK: 2, WSCALE: 4 } as const;
const TCPOPT = { MSS: 2, WINDOW: 3, SACK_PERM: 4, TIMESTAMP: 8 } as const;
const SOCK_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;

/** Why this image's socket cannot be restored, or undefined. */
export function unsupportedInetImage(isk: Entry): string | undefined {
  const family = Number(isk['family']);
  const proto = Number(isk['proto']);
  const state = Number(isk['state']);
  if (family !== AF_INET && family !== AF_INET6) return `address family ${family}`;
  if (proto === IPPROTO_TCP) return state === TCP_LISTEN || state === TCP_CLOSE || TCP_CONNECTION_STATES.has(state) ? undefined : `a TCP socket in state ${state} (only listening, closed, connecting, established and half-closed ones are restored)`;
  if (proto === IPPROTO_UDP) return state === TCP_CLOSE || state === TCP_ESTABLISHED ? undefined : `a UDP socket in state ${state}`;
  return `protocol ${proto}`;
}

/** A tcp-stream image's entry and its payload: the receive queue's bytes, then the send queue's. */
export interface TcpStream {
  entry: Entry;
  payload: Uint8Array;
}

/**
 * The helper ops that make the socket of `isk` at `fd`, in order; an established TCP connection
 * needs its `stream`, unless `closed` (criu's --tcp-close): then it is a socket never bound or
 * connected, which a program polling it sees hang up (EPOLLHUP) and reading it gets ENOTCONN.
 */
export function inetOps(isk: Entry, fd: number, cloexec: boolean, stream?: TcpStream, closed = false): Op[] {
  const family = Number(isk['family']);
  const state = Number(isk['state']);
  const src = (isk['src_addr'] as number[] | undefined) ?? [];
  const dst = (isk['dst_addr'] as number[] | undefined) ?? [];
  const srcPort = Number(isk['src_port'] ?? 0);
  const ops: Op[] = [{ op: 'socket', domain: family, type: Number(isk['type']) | (cloexec ? SOCK_CLOEXEC : 0), protocol: Number(isk['proto']), fd }];
  const connection = Number(isk['proto']) === IPPROTO_TCP && TCP_CONNECTION_STATES.has(state);
  const repair = connection && !closed;
  if (repair && !stream) throw new Error(`fd ${fd}: the TCP connection has no tcp-stream image`);
  // Before bind: they change what bind accepts (IPV6_V6ONLY leaves the IPv4 port free; SO_REUSEADDR,
  // SO_REUSEPORT, IP_FREEBIND).
  if (family === AF_INET6 && isk['v6only'] !== undefined) ops.push(setOpt(fd, IPPROTO_IPV6, IPV6_V6ONLY, isk['v6only'] ? 1 : 0));
  const opts = (isk['opts'] as Entry | undefined) ?? {};
  ops.push(...optionOps(fd, opts));
  for (const [field, name] of [['tcp_keepidle', TCP_KEEPIDLE], ['tcp_keepintvl', TCP_KEEPINTVL], ['tcp_keepcnt', TCP_KEEPCNT]] as const) {
    if (opts[field] !== undefined) ops.push(tcpOpt(fd, name, Number(opts[field])));
  }
  const ip = (isk['ip_opts'] as Entry | undefined) ?? {};
  if (ip['freebind']) ops.push(setOpt(fd, SOL_IP, IP_FREEBIND, 1));
  if (ip['pktinfo']) ops.push(setOpt(fd, SOL_IP, IP_PKTINFO, 1));
  if (Number(ip['tos'] ?? 0)) ops.push(setOpt(fd, SOL_IP, IP_TOS, Number(ip['tos'])));
  // An accepted connection shares its listener's port, and may be made first (in repair mode the
  // kernel lets it bind): a listener without SO_REUSEADDR borrows it for its bind.
  const bound = !(connection && closed) && (srcPort !== 0 || src.some((w) => w !== 0));
  const borrowReuse = bound && state === TCP_LISTEN && !opts['reuseaddr'];
  if (borrowReuse) ops.push(setOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1));
  // In repair mode the bind may share the port with its listener and anything else (the kernel
  // forces the reuse) and the connect makes the connection established without a packet. After
  // the options: SO_REUSEADDR would turn the forced reuse back into plain reuse, and the bind of
  // an accepted connection would fail while its listener (or a TIME_WAIT) holds the port.
  if (repair) ops.push(tcpOpt(fd, TCP_REPAIR, 1));
  if (bound) ops.push({ op: 'bind', fd, sockaddr: sockaddrOf(family, srcPort, src) });
  if (state === TCP_LISTEN) ops.push({ op: 'listen', fd, backlog: Number(isk['backlog'] ?? 0) });
  if (borrowReuse) ops.push(setOpt(fd, SOL_SOCKET, SO_REUSEADDR, 0));
  if (repair) ops.push(...queueSeqOps(fd, stream!.entry, state));
  // A connection still connecting sends its SYN again once every socket exists (repairOffOps).
  const connected = repair && state !== TCP_SYN_SENT;
  // The kernel sizes segments at the connect, from a clamp TCP_REPAIR_OPTIONS can set only after
  // it: TCP_MAXSEG (at most 32767) stands in for the dumped one, or segments would be 524 bytes.
  if (connected && Number(stream!.entry['mss_clamp'] ?? 0) > 0) ops.push(tcpOpt(fd, TCP_MAXSEG, Math.min(MAX_USER_MSS, Number(stream!.entry['mss_clamp']))));
  if ((state === TCP_ESTABLISHED && !(connection && closed)) || connected) ops.push({ op: 'connect', fd, sockaddr: sockaddrOf(family, Number(isk['dst_port'] ?? 0), dst) });
  if (connected) ops.push(...repairedConnectionOps(fd, stream!, state));
  ops.push({ op: 'fcntl', fd, cmd: F_SETFL, arg: Number(isk['flags'] ?? 0) & O_NONBLOCK });
  return ops;
}

/** Bytes in each queue of the payload, and how many at the send queue's end were never sent. */
function queueLengths(e: Entry): { inq: number; outq: number; unsent: number } {
  const outq = Number(e['outq_len'] ?? 0);
  return { inq: Number(e['inq_len'] ?? 0), outq, unsent: Math.min(Number(e['unsq_len'] ?? 0), outq) };
}

/** A setsockopt op; u32 values go as bytes (the helper's `value` is a signed int). */
function setOpt(fd: number, level: number, name: number, value: number | Buffer): Op {
  if (typeof value !== 'number' || value > 0x7fffffff) {
    const bytes = typeof value === 'number' ? u32s([value]) : value;
    return { op: 'setsockopt', fd, level, name, bytes };
  }
  return { op: 'setsockopt', fd, level, name, value };
}

const tcpOpt = (fd: number, name: number, value: number | Buffer): Op => setOpt(fd, IPPROTO_TCP, name, value);

function u32s(values: readonly number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32LE(v >>> 0, 4 * i));
  return b;
}

/**
 * The sequence numbers right after the last byte of data each way: the image's inq_seq and
 * outq_seq less a FIN they count (it is made again: the peer's by a segment from it, ours by a
 * shutdown), as CRIU restores them.
 */
function dataEnds(e: Entry, state: number): { rcvNxt: number; writeSeq: number } {
  return {
    rcvNxt: (Number(e['inq_seq']) - (TCP_FIN_RECEIVED.has(state) ? 1 : 0)) >>> 0,
    writeSeq: (Number(e['outq_seq']) - (TCP_FIN_SENT.has(state) ? 1 : 0)) >>> 0,
  };
}

/**
 * Before the connect: where each queue's sequence numbers start (the first queued byte's; for a
 * connection still connecting, its SYN's: the connect sends it with that initial number).
 */
function queueSeqOps(fd: number, e: Entry, state: number): Op[] {
  const { rcvNxt, writeSeq } = dataEnds(e, state);
  const syn = state === TCP_SYN_SENT ? 1 : 0;
  return [
    tcpOpt(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE),
    tcpOpt(fd, TCP_QUEUE_SEQ, (rcvNxt - Number(e['inq_len'] ?? 0)) >>> 0),
    tcpOpt(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE),
    tcpOpt(fd, TCP_QUEUE_SEQ, (writeSeq - Number(e['outq_len'] ?? 0) - syn) >>> 0),
  ];
}

/**
 * After the connect, still in repair mode: the options negotiated at the handshake, the timestamp
 * clock, the queued bytes (received ones into the receive queue, sent but unacknowledged ones
 * into the send queue), the windows.
 */
function repairedConnectionOps(fd: number, stream: TcpStream, state: number): Op[] {
  const e = stream.entry;
  const mask = Number(e['opt_mask'] ?? 0);
  const options = [TCPOPT.MSS, Number(e['mss_clamp'] ?? 0)];
  if (mask & TCPI_OPT.WSCALE) options.push(TCPOPT.WINDOW, Number(e['snd_wscale'] ?? 0) | (Number(e['rcv_wscale'] ?? 0) << 16));
  if (mask & TCPI_OPT.SACK) options.push(TCPOPT.SACK_PERM, 0);
  if (mask & TCPI_OPT.TIMESTAMPS) options.push(TCPOPT.TIMESTAMP, 0);
  const ops: Op[] = [tcpOpt(fd, TCP_REPAIR_OPTIONS, u32s(options))];
  if (mask & TCPI_OPT.TIMESTAMPS && e['timestamp'] !== undefined) ops.push(tcpOpt(fd, TCP_TIMESTAMP, u32s([Number(e['timestamp'])])));
  const { inq, outq, unsent } = queueLengths(e);
  const data = Buffer.from(stream.payload);
  if (data.length !== inq + outq) throw new Error(`fd ${fd}: the tcp-stream image holds ${data.length} bytes, its entry says ${inq + outq}`);
  if (inq) ops.push(tcpOpt(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE), { op: 'send', fd, data: data.subarray(0, inq) });
  if (outq - unsent) ops.push(tcpOpt(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE), { op: 'send', fd, data: data.subarray(inq, inq + outq - unsent) });
  // After the queues: the kernel checks the windows against the receive sequence the queued bytes moved.
  if (e['snd_wl1'] !== undefined) {
    const [wl1, sndWnd, maxWindow, rcvWnd, rcvWup] = ['snd_wl1', 'snd_wnd', 'max_window', 'rcv_wnd', 'rcv_wup'].map((k) => Number(e[k] ?? 0)) as [number, number, number, number, number];
    // The peer's FIN is still to come: the window reaches one sequence number further back, where it goes.
    const fin = TCP_FIN_RECEIVED.has(state) ? 1 : 0;
    ops.push(tcpOpt(fd, TCP_REPAIR_WINDOW, u32s([wl1, sndWnd, maxWindow, rcvWnd + fin, rcvWup - fin])));
  }
  return ops;
}

/** A connection made in repair mode: its fd, socket image and tcp-stream image. */
export interface RepairedConnection {
  readonly fd: number;
  readonly isk: Entry;
  readonly stream: TcpStream;
}

/**
 * Repair mode off (the kernel sends a window probe to the peer, which must exist by then), the
 * bytes the task wrote that were never sent (they go out as new data), TCP_NODELAY and TCP_CORK.
 * A half-closed connection gets its FINs back, as CRIU's restore makes them: the peer's as a
 * FIN segment from the peer's address (a raw socket at `spare`), sent while repair mode is still
 * on; ours by a shutdown after the unsent bytes (the peer acknowledges it again).
 */
export function repairOffOps(c: RepairedConnection, spare: number): Op[] {
  const { fd, isk, stream } = c;
  const e = stream.entry;
  const state = Number(isk['state']);
  if (state === TCP_SYN_SENT) return synSentOps(fd, isk);
  const { inq, outq, unsent } = queueLengths(e);
  const ops: Op[] = [];
  if (TCP_FIN_RECEIVED.has(state)) ops.push(...peerFinOps(isk, e, spare));
  ops.push(tcpOpt(fd, TCP_REPAIR, 0));
  // Leaving repair mode clears the socket's reuse, SO_REUSEADDR's too: set it again.
  if ((isk['opts'] as Entry | undefined)?.['reuseaddr']) ops.push(setOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1));
  if (unsent) ops.push({ op: 'send', fd, data: Buffer.from(stream.payload).subarray(inq + outq - unsent, inq + outq) });
  if (TCP_FIN_SENT.has(state)) ops.push({ op: 'shutdown', fd, how: SHUT_WR });
  if (e['nodelay']) ops.push(tcpOpt(fd, TCP_NODELAY, 1));
  if (e['cork']) ops.push(tcpOpt(fd, TCP_CORK, 1));
  return ops;
}

/**
 * A connection still connecting: out of repair mode, connected again without blocking (its SYN
 * goes out with the dumped initial sequence number; a task blocked in connect waits on), its
 * own O_NONBLOCK back after.
 */
function synSentOps(fd: number, isk: Entry): Op[] {
  return [
    tcpOpt(fd, TCP_REPAIR, 0),
    { op: 'fcntl', fd, cmd: F_SETFL, arg: O_NONBLOCK },
    { op: 'connect', fd, sockaddr: sockaddrOf(Number(isk['family']), Number(isk['dst_port'] ?? 0), (isk['dst_addr'] as number[] | undefined) ?? []), in_progress: 1 },
    { op: 'fcntl', fd, cmd: F_SETFL, arg: Number(isk['flags'] ?? 0) & O_NONBLOCK },
  ];
}

/** The peer's FIN, acknowledging what it had of ours, with its window: sent at the connection from the peer's address. */
function peerFinOps(isk: Entry, e: Entry, spare: number): Op[] {
  const ours = endpointOfSocket(isk, 'src');
  const peer = endpointOfSocket(isk, 'dst');
  const { rcvNxt, writeSeq } = dataEnds(e, Number(isk['state']));
  const segment = { seq: rcvNxt, ack: writeSeq - Number(e['outq_len'] ?? 0), flags: TCP_FLAGS.FIN | TCP_FLAGS.ACK, window: Number(e['snd_wnd'] ?? 0) >>> Number(e['snd_wscale'] ?? 0) };
  return [rawSocketOp(peer.family, spare), { op: 'send', fd: spare, data: tcpPacket(peer, ours, segment), sockaddr: rawSockaddr(ours) }, { op: 'close', fd: spare }];
}

/** The socket's own address and port (`src`) or its peer's (`dst`), as they travel. */
function endpointOfSocket(isk: Entry, side: 'src' | 'dst'): Endpoint {
  return endpointOf(sockaddrOf(Number(isk['family']), Number(isk[`${side}_port`] ?? 0), (isk[`${side}_addr`] as number[] | undefined) ?? []));
}

const IPPROTO_RAW = 255;
const SOCK_RAW = 3;

/** A raw socket at `fd` whose packets carry their own IP header (IPPROTO_RAW): what a peer seems to send goes out of it. */
function rawSocketOp(family: number, fd: number): Op {
  return { op: 'socket', domain: family, type: SOCK_RAW | SOCK_CLOEXEC, protocol: IPPROTO_RAW, fd };
}

/** Connections made in repair mode, by the task that made them: repair goes off in task-state. */
const inRepair = perKey((_: RestoreSession) => new Map<number, RepairedConnection[]>());

/** The tcp-stream image of a connection (connecting, established or half-closed), by its socket's inode. */
function tcpStreamOf(ctx: RestoreCtx, isk: Entry): TcpStream | undefined {
  if (Number(isk['proto']) !== IPPROTO_TCP || !TCP_CONNECTION_STATES.has(Number(isk['state']))) return undefined;
  const name = `tcp-stream-${Number(isk['ino']).toString(16)}.img`;
  if (!ctx.checkpoint.has(name)) return undefined;
  const [lazy] = ctx.checkpoint.image(name).entries();
  return lazy ? { entry: lazy.decode(), payload: lazy.payload ?? new Uint8Array() } : undefined;
}

export const inetsk: ResourceKind<RestoreCtx> = {
  name: 'inetsk',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*', 'tcp-stream-*'],
  appliesTo: holdsFdOfType(FD_TYPE_INETSK),
  describe: () => ['TCP and UDP sockets: made by their first holder, bound, listening or connected as dumped'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_INETSK, async (first) => {
      const isk = (first.file['isk'] as Entry | undefined) ?? {};
      const why = unsupportedInetImage(isk);
      if (why) throw new Error(`not supported: fd ${first.fd} is ${why}`);
      const closed = ctx.session.options.tcpClose === true;
      const stream = closed ? undefined : tcpStreamOf(ctx, isk);
      const ops = inetOps(isk, first.fd, first.cloexec, stream, closed);
      try {
        await helperOf(ctx).batch(ops);
      } catch (e) {
        if (!(e instanceof HelperBatchError)) throw e;
        // "bind failed: EADDRINUSE" alone leaves the user to find which socket and address.
        const op = ops[e.index];
        const which = op?.op === 'setsockopt' ? `, option ${String(op['level'])}/${String(op['name'])}` : '';
        throw new NativeError({ code: e.code, errno: e.errno, syscall: e.syscall, ...(e.pid !== undefined ? { pid: e.pid } : {}), detail: `fd ${first.fd}, ${socketText(isk)}${which}` });
      }
      const datagrams = queuedDatagrams(ctx.session, ctx).get(first.id);
      if (datagrams?.length) await helperOf(ctx).batch(datagramOps(isk, datagrams, spareFds(ctx, 2)));
      if (stream) {
        const mine = inRepair(ctx.session);
        mine.set(ctx.pid, [...(mine.get(ctx.pid) ?? []), { fd: first.fd, isk, stream }]);
      }
    });
  },
};

/** A datagram queued in a UDP socket: its sender's sockaddr and its bytes. */
interface Datagram {
  sender: Buffer;
  data: Uint8Array;
}

/** sk-queues.img entries that carry a sender (the UDP sockets' datagrams), by receiving socket id. */
const queuedDatagrams = perKey((_: RestoreSession, ctx: RestoreCtx) => {
  const out = new Map<number, Datagram[]>();
  if (!ctx.checkpoint.has('sk-queues.img')) return out;
  for (const lazy of ctx.checkpoint.image('sk-queues.img').entries()) {
    const e = lazy.decode();
    const sender = e['addr'] as Uint8Array | undefined;
    if (!sender?.length) continue;
    const id = Number(e['id_for']);
    out.set(id, [...(out.get(id) ?? []), { sender: Buffer.from(sender), data: lazy.payload ?? new Uint8Array() }]);
  }
  return out;
});

/**
 * Ops that queue `datagrams` in the UDP socket of `isk` again: raw sockets, one per family the
 * senders use, at `spares`, send each datagram as its sender sent it to the socket's address, so
 * recvfrom reports the same sender.
 */
function datagramOps(isk: Entry, datagrams: readonly Datagram[], spares: readonly number[]): Op[] {
  const bound = endpointOfSocket(isk, 'src');
  const rawFds = new Map<number, number>();
  const ops: Op[] = [];
  for (const { sender, data } of datagrams) {
    const from = endpointOf(sender);
    const to = destinationFor(bound, from.family);
    let fd = rawFds.get(from.family);
    if (fd === undefined) {
      rawFds.set(from.family, (fd = spares[rawFds.size]!));
      ops.push(rawSocketOp(from.family, fd));
    }
    ops.push({ op: 'send', fd, data: udpPacket(from, to, data), sockaddr: rawSockaddr(to) });
  }
  for (const fd of rawFds.values()) ops.push({ op: 'close', fd });
  return ops;
}

/**
 * Established connections leave repair mode only when every socket of the tree exists (the
 * task-state phase starts after every task's shared-fds): a connection switched on before its
 * peer was made would send its window probe to no socket and be reset.
 */
export const tcpRepairOff: ResourceKind<RestoreCtx> = {
  name: 'tcp-repair-off',
  stage: 'task-state',
  images: ['files', 'fdinfo-*', 'tcp-stream-*'],
  appliesTo: holdsFdOfType(FD_TYPE_INETSK),
  describe: () => ['established TCP connections out of repair mode, their unsent bytes sent'],
  async restore(ctx) {
    const mine = inRepair(ctx.session).get(ctx.pid);
    if (!mine?.length) return;
    const [spare] = spareFds(ctx, 1);
    await helperOf(ctx).batch(mine.flatMap((c) => repairOffOps(c, spare!)));
  },
};
