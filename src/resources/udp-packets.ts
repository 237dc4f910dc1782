// The raw packets that queue a dumped UDP datagram in its socket again: an IP header (IPv4, or
// IPv6 for a sender with an IPv6 address) and a UDP header naming the datagram's sender as its
// source, sent through an IPPROTO_RAW socket (which takes the packet's own header) to the
// restored socket's address. The receiver's recvfrom then reports the dumped sender.
import { AF_INET, AF_INET6, IPPROTO_UDP } from '../images/inet-address.js';

/** An address of either family, its bytes in network order, and a port. */
export interface Endpoint {
  family: number;
  addr: Buffer;
  port: number;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
const IPV4_LOOPBACK = Buffer.from([127, 0, 0, 1]);
const IPV6_LOOPBACK = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const UDP_HEADER = 8;

/**
 * The endpoint of a sockaddr_in or sockaddr_in6; an IPv4-mapped IPv6 address (a dual-stack
 * socket's IPv4 peer) as the IPv4 address it maps, which is what travels on the wire.
 */
export function endpointOf(sockaddr: Buffer): Endpoint {
  const family = sockaddr.readUInt16LE(0);
  const port = sockaddr.readUInt16BE(2);
  if (family === AF_INET) return { family, addr: sockaddr.subarray(4, 8), port };
  if (family !== AF_INET6) throw new Error(`a queued datagram's sender of address family ${family}`);
  const addr = sockaddr.subarray(8, 24);
  return addr.subarray(0, 12).equals(V4_MAPPED_PREFIX) ? { family: AF_INET, addr: addr.subarray(12), port } : { family, addr, port };
}

/**
 * Where to send a datagram for the socket bound at `bound`: its own address, or loopback of the
 * datagram's family for a wildcard (or IPv4-mapped wildcard) one.
 */
export function destinationFor(bound: Endpoint, family: number): Endpoint {
  if (bound.family === family && bound.addr.some((b) => b !== 0)) return bound;
  return { family, addr: family === AF_INET ? IPV4_LOOPBACK : IPV6_LOOPBACK, port: bound.port };
}

/** The sockaddr a raw socket sends to `to` with: port 0, as a raw socket's must be (or its protocol's). */
export function rawSockaddr(to: Endpoint): Buffer {
  const v6 = to.family === AF_INET6;
  const sa = Buffer.alloc(v6 ? 28 : 16);
  sa.writeUInt16LE(to.family, 0);
  to.addr.copy(sa, v6 ? 8 : 4);
  return sa;
}

/** The IP packet, header included, that carries `data` from `from` to `to` as one UDP datagram. */
export function udpPacket(from: Endpoint, to: Endpoint, data: Uint8Array): Buffer {
  const v6 = from.family === AF_INET6;
  const ipHeader = v6 ? IPV6_HEADER : IPV4_HEADER;
  const udpLength = UDP_HEADER + data.length;
  const packet = Buffer.alloc(ipHeader + udpLength);
  if (v6) {
    packet.writeUInt32BE(0x60000000, 0); // version 6, no traffic class or flow label
    packet.writeUInt16BE(udpLength, 4);
    packet.writeUInt8(IPPROTO_UDP, 6);
    packet.writeUInt8(64, 7); // hop limit
    from.addr.copy(packet, 8);
    to.addr.copy(packet, 24);
  } else {
    packet.writeUInt8(0x45, 0); // version 4, 5 words of header
    packet.writeUInt16BE(packet.length, 2);
    packet.writeUInt16BE(0x4000, 6); // don't fragment
    packet.writeUInt8(64, 8); // ttl
    packet.writeUInt8(IPPROTO_UDP, 9);
    from.addr.copy(packet, 12);
    to.addr.copy(packet, 16);
  }
  packet.writeUInt16BE(from.port, ipHeader);
  packet.writeUInt16BE(to.port, ipHeader + 2);
  packet.writeUInt16BE(udpLength, ipHeader + 4);
  packet.set(data, ipHeader + UDP_HEADER);
  // IPv4 UDP may go without a checksum (0); IPv6 UDP may not: the receiver drops it.
  if (v6) packet.writeUInt16BE(udp6Checksum(from.addr, to.addr, packet.subarray(ipHeader)), ipHeader + 6);
  return packet;
}

/** RFC 8200's checksum over the pseudo-header (addresses, length, next header) and the datagram. */
function udp6Checksum(src: Buffer, dst: Buffer, datagram: Buffer): number {
  const pseudo = Buffer.alloc(40);
  src.copy(pseudo, 0);
  dst.copy(pseudo, 16);
  pseudo.writeUInt32BE(datagram.length, 32);
  pseudo.writeUInt8(IPPROTO_UDP, 39);
  let sum = 0;
  for (const part of [pseudo, datagram]) {
    for (let i = 0; i < part.length; i += 2) sum += (part[i]! << 8) | (part[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const folded = ~sum & 0xffff;
  return folded === 0 ? 0xffff : folded;
}
