// The SOL_SOCKET options of a socket's sk_opts_entry as helper setsockopt ops, shared by the
// socket kinds (unixsk, inetsk, netlinksk).
import type { Entry } from '../images/index.js';

export type Op = { op: string } & Record<string, unknown>;

const SOL_SOCKET = 1;
const SO = { REUSEADDR: 2, REUSEPORT: 15, DONTROUTE: 5, BROADCAST: 6, KEEPALIVE: 9, OOBINLINE: 10, NO_CHECK: 11, PRIORITY: 12, LINGER: 13, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO_OLD: 20, SNDTIMEO_OLD: 21, SNDBUFFORCE: 32, RCVBUFFORCE: 33, PASSSEC: 34, MARK: 36, BINDTODEVICE: 25, ATTACH_FILTER: 26, BUF_LOCK: 72 } as const;

export function optionOps(fd: number, opts: Entry): Op[] {
  const ops: Op[] = [];
  const set = (name: number, value: number) => ops.push({ op: 'setsockopt', fd, level: SOL_SOCKET, name, value });
  // getsockopt reported the doubled size the kernel keeps; setting doubles again.
  if (opts['so_sndbuf']) set(SO.SNDBUFFORCE, Math.floor(Number(opts['so_sndbuf']) / 2));
  if (opts['so_rcvbuf']) set(SO.RCVBUFFORCE, Math.floor(Number(opts['so_rcvbuf']) / 2));
  // Setting a size fixes it (the kernel's tuning off): back to the sizes the program fixed, if
  // the image says (an image without it keeps both fixed, as before).
  if (opts['so_buf_lock'] !== undefined) set(SO.BUF_LOCK, Number(opts['so_buf_lock']));
  const flags: Array<[string, number]> = [['reuseaddr', SO.REUSEADDR], ['so_passcred', SO.PASSCRED], ['so_passsec', SO.PASSSEC], ['so_dontroute', SO.DONTROUTE], ['so_no_check', SO.NO_CHECK], ['so_broadcast', SO.BROADCAST], ['so_keepalive', SO.KEEPALIVE], ['so_reuseport', SO.REUSEPORT]];
  for (const [field, name] of flags) if (opts[field]) set(name, 1);
  if (Number(opts['so_priority'] ?? 0)) set(SO.PRIORITY, Number(opts['so_priority']));
  if (Number(opts['so_rcvlowat'] ?? 1) > 1) set(SO.RCVLOWAT, Number(opts['so_rcvlowat']));
  if (Number(opts['so_mark'] ?? 0)) set(SO.MARK, Number(opts['so_mark']));
  if (Number(opts['so_oobinline'] ?? 0)) set(SO.OOBINLINE, 1);
  // Before the bind, which then looks for the address on that interface only.
  const filter = (opts['so_filter'] as Array<bigint | number> | undefined) ?? [];
  if (filter.length) {
    const insns = Buffer.alloc(filter.length * 8);
    filter.forEach((word, i) => insns.writeBigUInt64LE(BigInt(word), i * 8));
    ops.push({ op: 'setsockopt', fd, level: SOL_SOCKET, name: SO.ATTACH_FILTER, filter: insns });
  }
  if (opts['so_bound_dev']) ops.push({ op: 'setsockopt', fd, level: SOL_SOCKET, name: SO.BINDTODEVICE, bytes: Buffer.from(String(opts['so_bound_dev']), 'latin1') });
  if (opts['so_linger'] !== undefined) {
    const linger = Buffer.alloc(8);
    linger.writeInt32LE(1, 0);
    linger.writeInt32LE(Number(opts['so_linger']), 4);
    ops.push({ op: 'setsockopt', fd, level: SOL_SOCKET, name: SO.LINGER, bytes: linger });
  }
  for (const [dir, name] of [['snd', SO.SNDTIMEO_OLD], ['rcv', SO.RCVTIMEO_OLD]] as const) {
    const sec = BigInt((opts[`so_${dir}_tmo_sec`] as bigint | number | undefined) ?? 0);
    const usec = BigInt((opts[`so_${dir}_tmo_usec`] as bigint | number | undefined) ?? 0);
    if (!sec && !usec) continue;
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(sec, 0);
    tv.writeBigInt64LE(usec, 8);
    ops.push({ op: 'setsockopt', fd, level: SOL_SOCKET, name, bytes: tv });
  }
  return ops;
}
