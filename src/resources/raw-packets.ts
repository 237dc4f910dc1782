// IP packets crr sends through an IPPROTO_RAW socket (which takes the packet's own IP header) as
// if a peer had sent them: a dumped UDP datagram queued in its socket again, from its sender's
// address and port (the receiver's recvfrom reports that sender); and the TCP segments of a
// peer that a half-closed connection's restore needs (its FIN, its ACK of ours). IPv4, or IPv6
// for IPv6 endpoints; the transport checksum over the pseudo-header either way.
import { AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP } from '../images/inet-address.js';

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
const TCP_HEADER = 20;
export const TCP_FLAGS = { FIN: 0x01, ACK: 0x10 } as const;

/**
 * The endpoint of a sockaddr_in or sockaddr_in6; an IPv4-mapped IPv6 address (a dual-stack
 * socket's IPv4 peer) as the IPv4 address it maps, which is what travels on the wire.
 */
export function endpointOf(sockaddr: Buffer): Endpoint {
  const family = sockaddr.readUInt16LE(0);
  const port = sockaddr.readUInt16BE(2);
  if (family === AF_INET) return { family, addr: sockaddr.subarray(4, 8), port };
  if (family !== AF_INET6) throw new Error(`an address of family ${family}`);
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
  const segment = Buffer.alloc(UDP_HEADER + data.length);
  segment.writeUInt16BE(from.port, 0);
  segment.writeUInt16BE(to.port, 2);
  segment.writeUInt16BE(segment.length, 4);
  segment.set(data, UDP_HEADER);
  return ipPacket(from, to, IPPROTO_UDP, segment, 6);
}

/** The IP packet of a TCP segment without options or data from `from` to `to`. */
export function tcpPacket(from: Endpoint, to: Endpoint, seg: { seq: number; ack: number; flags: number; window: number }): Buffer {
  const segment = Buffer.alloc(TCP_HEADER);
  segment.writeUInt16BE(from.port, 0);
  segment.writeUInt16BE(to.port, 2);
  segment.writeUInt32BE(seg.seq >>> 0, 4);
  segment.writeUInt32BE(seg.ack >>> 0, 8);
  segment.writeUInt8((TCP_HEADER / 4) << 4, 12);
  segment.writeUInt8(seg.flags, 13);
  segment.writeUInt16BE(Math.min(seg.window, 0xffff), 14);
  return ipPacket(from, to, IPPROTO_TCP, segment, 16);
}

/** `segment` behind an IP header, its checksum (at `checksumAt`) over the pseudo-header and itself. */
function ipPacket(from: Endpoint, to: Endpoint, protocol: number, segment: Buffer, checksumAt: number): Buffer {
  const v6 = from.family === AF_INET6;
  const header = Buffer.alloc(v6 ? IPV6_HEADER : IPV4_HEADER);
  if (v6) {
    header.writeUInt32BE(0x60000000, 0); // version 6, no traffic class or flow label
    header.writeUInt16BE(segment.length, 4);
    header.writeUInt8(protocol, 6);
    header.writeUInt8(64, 7); // hop limit
    from.addr.copy(header, 8);
    to.addr.copy(header, 24);
  } else {
    header.writeUInt8(0x45, 0); // version 4, 5 words of header
    header.writeUInt16BE(header.length + segment.length, 2);
    header.writeUInt16BE(0x4000, 6); // don't fragment
    header.writeUInt8(64, 8); // ttl
    header.writeUInt8(protocol, 9);
    from.addr.copy(header, 12);
    to.addr.copy(header, 16);
  }
  segment.writeUInt16BE(transportChecksum(from.addr, to.addr, protocol, segment), checksumAt);
  return Buffer.concat([header, segment]);
}

/** The one's-complement checksum over the pseudo-header (addresses, protocol, length) and the segment (its checksum field 0). */
function transportChecksum(src: Buffer, dst: Buffer, protocol: number, segment: Buffer): number {
  let sum = protocol + segment.length;
  for (const part of [src, dst, segment]) {
    for (let i = 0; i < part.length; i += 2) sum += (part[i]! << 8) | (part[i + 1] ?? 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const folded = ~sum & 0xffff;
  return folded === 0 ? 0xffff : folded; // 0 would mean "no checksum" to UDP
}
