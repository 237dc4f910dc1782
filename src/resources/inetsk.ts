// Inet sockets, TCP and UDP over IPv4 and IPv6: each comes back as the same socket at its fds,
// with its SOL_SOCKET options (SO_REUSEPORT among them), TCP keepalive timing, IPV6_V6ONLY,
// IP_FREEBIND and IP_PKTINFO, bound to its address and port, a TCP listener listening with its
// backlog, a connected UDP socket connected to its peer, and O_NONBLOCK. The first holder (tree
// order) makes it with helper ops at its first fd; other holders take a pidfd_getfd copy
// (restoreAnonFds). A TCP connection (it would need TCP repair) is refused. Restored into crr's
// own network namespace: the addresses must be free there.
import type { Entry } from '../images/index.js';
import { HelperBatchError } from '../actors/helper-errors.js';
import { NativeError } from '../errors.js';
import { helperOf, type RestoreCtx } from '../restore/context.js';
import { restoreAnonFds } from './eventfd.js';
import { holdsFdOfType } from './shared-fds.js';
import { optionOps, type Op } from './socket-options.js';
import type { ResourceKind } from './types.js';

export const FD_TYPE_INETSK = 4;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const SOL_IP = 0;
const IP_PKTINFO = 8;
const IP_FREEBIND = 15;
const TCP_KEEPIDLE = 4;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_ESTABLISHED = 1;
const TCP_CLOSE = 7;
const TCP_LISTEN = 10;
const SOCK_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;

/**
 * sockaddr_in or sockaddr_in6 bytes for a port and CRIU's address words (the kernel's network
 * order bytes read little-endian: 1 word for IPv4, 4 for IPv6).
 */
export function sockaddrOf(family: number, port: number, words: readonly number[]): Buffer {
  const v6 = family === AF_INET6;
  const sa = Buffer.alloc(v6 ? 28 : 16);
  sa.writeUInt16LE(family, 0);
  sa.writeUInt16BE(port, 2);
  words.slice(0, v6 ? 4 : 1).forEach((w, i) => sa.writeUInt32LE(w >>> 0, (v6 ? 8 : 4) + 4 * i));
  return sa;
}

/** "TCP 127.0.0.1:8080 (LISTEN)", "UDP [::1]:53 -> [::1]:9000": the socket as a user knows it. */
export function socketText(isk: Entry): string {
  const family = Number(isk['family']);
  const state = Number(isk['state']);
  const at = (port: unknown, words: unknown) => {
    const sa = sockaddrOf(family, Number(port ?? 0), (words as number[] | undefined) ?? []);
    const host = family === AF_INET6 ? ipv6Text(sa.subarray(8, 24)) : [...sa.subarray(4, 8)].join('.');
    return `${host}:${sa.readUInt16BE(2)}`;
  };
  const proto = Number(isk['proto']) === IPPROTO_TCP ? 'TCP' : 'UDP';
  const peer = state === TCP_ESTABLISHED ? ` -> ${at(isk['dst_port'], isk['dst_addr'])}` : '';
  return `${proto} ${at(isk['src_port'], isk['src_addr'])}${peer}${state === TCP_LISTEN ? ' (LISTEN)' : ''}`;
}

/** The IPv6 address in its short form (the URL parser writes it so), in brackets. */
function ipv6Text(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname;
}

/** Why this image's socket cannot be restored, or undefined. */
export function unsupportedInetImage(isk: Entry): string | undefined {
  const family = Number(isk['family']);
  const proto = Number(isk['proto']);
  const state = Number(isk['state']);
  if (family !== AF_INET && family !== AF_INET6) return `address family ${family}`;
  if (proto === IPPROTO_TCP) return state === TCP_LISTEN || state === TCP_CLOSE ? undefined : `a TCP connection (state ${state}; restoring connections needs TCP repair)`;
  if (proto === IPPROTO_UDP) return state === TCP_CLOSE || state === TCP_ESTABLISHED ? undefined : `a UDP socket in state ${state}`;
  return `protocol ${proto}`;
}

/** The helper ops that make the socket of `isk` at `fd`, in order. */
export function inetOps(isk: Entry, fd: number, cloexec: boolean): Op[] {
  const family = Number(isk['family']);
  const state = Number(isk['state']);
  const src = (isk['src_addr'] as number[] | undefined) ?? [];
  const dst = (isk['dst_addr'] as number[] | undefined) ?? [];
  const srcPort = Number(isk['src_port'] ?? 0);
  const ops: Op[] = [{ op: 'socket', domain: family, type: Number(isk['type']) | (cloexec ? SOCK_CLOEXEC : 0), protocol: Number(isk['proto']), fd }];
  // Before bind: they change what bind accepts (IPV6_V6ONLY leaves the IPv4 port free; SO_REUSEADDR,
  // SO_REUSEPORT, IP_FREEBIND).
  if (family === AF_INET6 && isk['v6only'] !== undefined) ops.push({ op: 'setsockopt', fd, level: IPPROTO_IPV6, name: IPV6_V6ONLY, value: isk['v6only'] ? 1 : 0 });
  const opts = (isk['opts'] as Entry | undefined) ?? {};
  ops.push(...optionOps(fd, opts));
  for (const [field, name] of [['tcp_keepidle', TCP_KEEPIDLE], ['tcp_keepintvl', TCP_KEEPINTVL], ['tcp_keepcnt', TCP_KEEPCNT]] as const) {
    if (opts[field] !== undefined) ops.push({ op: 'setsockopt', fd, level: IPPROTO_TCP, name, value: Number(opts[field]) });
  }
  const ip = (isk['ip_opts'] as Entry | undefined) ?? {};
  if (ip['freebind']) ops.push({ op: 'setsockopt', fd, level: SOL_IP, name: IP_FREEBIND, value: 1 });
  if (ip['pktinfo']) ops.push({ op: 'setsockopt', fd, level: SOL_IP, name: IP_PKTINFO, value: 1 });
  if (srcPort !== 0 || src.some((w) => w !== 0)) ops.push({ op: 'bind', fd, sockaddr: sockaddrOf(family, srcPort, src) });
  if (state === TCP_LISTEN) ops.push({ op: 'listen', fd, backlog: Number(isk['backlog'] ?? 0) });
  if (state === TCP_ESTABLISHED) ops.push({ op: 'connect', fd, sockaddr: sockaddrOf(family, Number(isk['dst_port'] ?? 0), dst) });
  ops.push({ op: 'fcntl', fd, cmd: F_SETFL, arg: Number(isk['flags'] ?? 0) & O_NONBLOCK });
  return ops;
}

export const inetsk: ResourceKind<RestoreCtx> = {
  name: 'inetsk',
  stage: 'shared-fds',
  images: ['files', 'fdinfo-*'],
  appliesTo: holdsFdOfType(FD_TYPE_INETSK),
  describe: () => ['TCP and UDP sockets: made by their first holder, bound, listening or connected as dumped'],
  async restore(ctx) {
    await restoreAnonFds(ctx, FD_TYPE_INETSK, async (first) => {
      const isk = (first.file['isk'] as Entry | undefined) ?? {};
      const why = unsupportedInetImage(isk);
      if (why) throw new Error(`not supported: fd ${first.fd} is ${why}`);
      try {
        await helperOf(ctx).batch(inetOps(isk, first.fd, first.cloexec));
      } catch (e) {
        if (!(e instanceof HelperBatchError)) throw e;
        // "bind failed: EADDRINUSE" alone leaves the user to find which socket and address.
        throw new NativeError({ code: e.code, errno: e.errno, syscall: e.syscall, ...(e.pid !== undefined ? { pid: e.pid } : {}), detail: `fd ${first.fd}, ${socketText(isk)}` });
      }
    });
  },
};
