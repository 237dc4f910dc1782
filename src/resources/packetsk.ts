// Packet sockets (AF_PACKET): each comes back at its fds with its type and protocol, bound to its
// interface (by index: the tree's network namespace must have it, as lo; a checkpoint's own
// devices other than lo are refused at plan time anyway), SOL_SOCKET options, the SOL_PACKET ones
// and its fanout group (joined after the bind, as the kernel wants), O_NONBLOCK. The first holder
// (tree order) makes it with helper ops at its first fd; other holders take a pidfd_getfd copy.
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType } from './shared-fds.js';
import { optionOps, type Op } from './socket-options.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_PACKETSK = 10;
const AF_PACKET = 17;
const SOCK_CLOEXEC = 0o2000000;
const SOL_PACKET = 263;
const PACKET = { COPY_THRESH: 7, AUXDATA: 8, ORIGDEV: 9, VERSION: 10, RESERVE: 12, LOSS: 14, VNET_HDR: 15, TIMESTAMP: 17, FANOUT: 18 } as const;
const NO_FANOUT = 0xffffffff;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;

const htons = (v: number) => ((v & 0xff) << 8) | ((v >> 8) & 0xff);

/** struct sockaddr_ll for a bind: family, protocol (network order), interface index. */
export function sockaddrLl(protocol: number, ifindex: number): Buffer {
  const sa = Buffer.alloc(20);
  sa.writeUInt16LE(AF_PACKET, 0);
  sa.writeUInt16BE(protocol & 0xffff, 2);
  sa.writeInt32LE(ifindex, 4);
  return sa;
}

/** The helper ops that make the socket of `psk` at `fd`, in order. */
export function packetOps(psk: Entry, fd: number, cloexec: boolean): Op[] {
  const protocol = Number(psk['protocol'] ?? 0);
  const ops: Op[] = [{ op: 'socket', domain: AF_PACKET, type: Number(psk['type'] ?? 0) | (cloexec ? SOCK_CLOEXEC : 0), protocol: htons(protocol), fd }];
  ops.push(...optionOps(fd, (psk['opts'] as Entry | undefined) ?? {}));
  const set = (name: number, value: number) => ops.push({ op: 'setsockopt', fd, level: SOL_PACKET, name, value });
  if (Number(psk['version'] ?? 0)) set(PACKET.VERSION, Number(psk['version']));
  if (Number(psk['reserve'] ?? 0)) set(PACKET.RESERVE, Number(psk['reserve']));
  if (psk['aux_data']) set(PACKET.AUXDATA, 1);
  if (psk['orig_dev']) set(PACKET.ORIGDEV, 1);
  if (psk['vnet_hdr']) set(PACKET.VNET_HDR, 1);
  if (psk['loss']) set(PACKET.LOSS, 1);
  if (Number(psk['timestamp'] ?? 0)) set(PACKET.TIMESTAMP, Number(psk['timestamp']));
  if (Number(psk['copy_thresh'] ?? 0)) set(PACKET.COPY_THRESH, Number(psk['copy_thresh']));
  const ifindex = Number(psk['ifindex'] ?? 0);
  if (ifindex) ops.push({ op: 'bind', fd, sockaddr: sockaddrLl(protocol, ifindex) });
  const fanout = Number(psk['fanout'] ?? NO_FANOUT);
  if (fanout !== NO_FANOUT) set(PACKET.FANOUT, fanout);
  ops.push({ op: 'fcntl', fd, cmd: F_SETFL, arg: Number(psk['flags'] ?? 0) & O_NONBLOCK });
  return ops;
}

export const packetsk: ResourceKind<RestoreCtx> = {
  name: 'packetsk',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_PACKETSK),
  describe: () => ['packet sockets: made by their first holder, with their options, bound to their interface'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_PACKETSK, async (first) => {
      await helperOf(ctx).batch(packetOps((first.file['psk'] as Entry | undefined) ?? {}, first.fd, first.cloexec));
    });
  },
};
