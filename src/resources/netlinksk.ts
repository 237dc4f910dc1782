// Netlink sockets: each comes back at its fds with its protocol, its port id (bound to it again),
// its multicast groups (the first 32 in the bind, the others by NETLINK_ADD_MEMBERSHIP), the peer
// it was connected to, SOL_SOCKET options and O_NONBLOCK. The first holder (tree order) makes it
// with helper ops at its first fd; other holders take a pidfd_getfd copy (restoreAnonFds). Made as
// SOCK_RAW, as CRIU does (its image keeps no type; netlink treats SOCK_DGRAM alike).
import type { Entry } from '../images/index.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType } from './shared-fds.js';
import { optionOps, type Op } from './socket-options.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_NETLINKSK = 13;
const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;

/** struct sockaddr_nl: family, pad, port id, group bitmap. */
export function sockaddrNl(portid: number, groups: number): Buffer {
  const sa = Buffer.alloc(12);
  sa.writeUInt16LE(AF_NETLINK, 0);
  sa.writeUInt32LE(portid >>> 0, 4);
  sa.writeUInt32LE(groups >>> 0, 8);
  return sa;
}

/** The helper ops that make the socket of `nlsk` at `fd`, in order. */
export function netlinkOps(nlsk: Entry, fd: number, cloexec: boolean): Op[] {
  const groups = ((nlsk['groups'] as number[] | undefined) ?? []).map((g) => g >>> 0);
  const portid = Number(nlsk['portid'] ?? 0);
  const ops: Op[] = [{ op: 'socket', domain: AF_NETLINK, type: SOCK_RAW | (cloexec ? SOCK_CLOEXEC : 0), protocol: Number(nlsk['protocol'] ?? 0), fd }];
  ops.push(...optionOps(fd, (nlsk['opts'] as Entry | undefined) ?? {}));
  // Never bound (port id 0): it binds itself at its first send, as it would have.
  if (portid !== 0 || groups[0]) ops.push({ op: 'bind', fd, sockaddr: sockaddrNl(portid, groups[0] ?? 0) });
  groups.forEach((word, w) => {
    if (w === 0) return;
    for (let bit = 0; bit < 32; bit++) {
      if ((word >>> bit) & 1) ops.push({ op: 'setsockopt', fd, level: SOL_NETLINK, name: NETLINK_ADD_MEMBERSHIP, value: 32 * w + bit + 1 });
    }
  });
  const dstPortid = Number(nlsk['dst_portid'] ?? 0);
  const dstGroup = Number(nlsk['dst_group'] ?? 0);
  // connect's group is a bitmap; the image keeps the group's number.
  if (dstPortid || dstGroup) ops.push({ op: 'connect', fd, sockaddr: sockaddrNl(dstPortid, dstGroup ? 2 ** (dstGroup - 1) : 0) });
  ops.push({ op: 'fcntl', fd, cmd: F_SETFL, arg: Number(nlsk['flags'] ?? 0) & O_NONBLOCK });
  return ops;
}

export const netlinksk: ResourceKind<RestoreCtx> = {
  name: 'netlinksk',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_NETLINKSK),
  describe: () => ['netlink sockets: made by their first holder, bound to their port id and groups'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_NETLINKSK, async (first) => {
      await helperOf(ctx).batch(netlinkOps((first.file['nlsk'] as Entry | undefined) ?? {}, first.fd, first.cloexec));
    });
  },
};
