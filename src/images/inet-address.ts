// Inet socket addresses as CRIU's images keep them (inet_sk_entry's src_addr / dst_addr: the
// kernel's network-order address bytes read as little-endian 32-bit words, 1 for IPv4, 4 for
// IPv6), turned into a sockaddr for bind and connect, and into words a user knows; and the values
// its family, proto and state fields take, and which TCP states hold a FIN either way.
import type { Entry } from './codec.js';

/** inet_sk_entry's family, proto and state values (the kernel's numbers, kept as they are). */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const TCP_ESTABLISHED = 1;
export const TCP_CLOSE = 7;
export const TCP_LISTEN = 10;
export const TCP_SYN_SENT = 2;
const TCP_FIN_WAIT1 = 4;
const TCP_FIN_WAIT2 = 5;
const TCP_CLOSE_WAIT = 8;
const TCP_LAST_ACK = 9;
const TCP_CLOSING = 11;

/**
 * The states of a connection a tcp-stream image restores, as CRIU restores them: established,
 * half-closed (our FIN sent, the peer's received, or both), and connecting (SYN_SENT: its SYN is
 * sent again with the same initial sequence number).
 */
export const TCP_CONNECTION_STATES: ReadonlySet<number> = new Set([TCP_SYN_SENT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING]);
/** Connection states with our FIN queued: write_seq (the image's outq_seq) counts it, and SIOCOUTQ while it is unacknowledged. */
export const TCP_FIN_SENT: ReadonlySet<number> = new Set([TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_CLOSING]);
/** Connection states with the peer's FIN received: rcv_nxt (the image's inq_seq) counts it. */
export const TCP_FIN_RECEIVED: ReadonlySet<number> = new Set([TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING]);

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

