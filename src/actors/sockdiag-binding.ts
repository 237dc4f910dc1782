// The typed surface of native/addon/sockdiag.cc: what the dumper asks about sockets. Synchronous;
// failures throw an Error with `code`, `errno` and `syscall` (see fds-binding.ts).

export interface PeekedQueue {
  /** The receive queue, one Buffer per packet (a stream's whole queue may come in several). */
  packets: Buffer[];
  /** Each packet's source address (a sockaddr; empty where the protocol gives none). */
  senders: Buffer[];
  /**
   * Each packet's fds in flight (SCM_RIGHTS not yet received): copies installed in this process
   * by the peek, close-on-exec, which the caller must close.
   */
  passed: number[][];
  /** Some fds in flight did not fit the peek's control buffer (more than 253 in one packet). */
  truncated: boolean;
  /** Each packet's sender credentials (SCM_CREDENTIALS, on a socket with SO_PASSCRED; pid as crr's PID namespace sees it), null where none came. */
  creds: Array<{ pid: number; uid: number; gid: number } | null>;
}

export interface SockDiagBinding {
  // Each dump answers for the network namespace of `diagSocket` (a NETLINK_SOCK_DIAG socket made
  // in another one with socketInNamespace), or for crr's own without it.
  /** One NETLINK_SOCK_DIAG dump of every AF_UNIX socket with `show` (UDIAG_SHOW_* bits): raw nlmsgs. */
  unixDiag(show: number, diagSocket?: number): Buffer;
  /** One NETLINK_SOCK_DIAG dump of every socket of `family` (AF_INET/AF_INET6) and `protocol` (TCP/UDP), every state: raw nlmsgs. */
  inetDiag(family: number, protocol: number, diagSocket?: number): Buffer;
  /** One NETLINK_SOCK_DIAG dump of every netlink socket, with groups and memory: raw nlmsgs. */
  netlinkDiag(diagSocket?: number): Buffer;
  /** Every packet socket of the network namespace: packet_diag_msg + attributes (info, memberships, rings, fanout, memory). */
  packetDiag(diagSocket?: number): Buffer;
  /** MSG_PEEK the receive queue of a socket (an fd of this process) without consuming it; `udp`: empty datagrams do not end it. */
  peekQueue(fd: number, maxPacket: number, udp?: boolean): PeekedQueue;
  /** getsockopt into a buffer of `size` bytes; returns what the kernel filled. */
  getsockoptBytes(fd: number, level: number, name: number, size: number): Buffer;
  /** The classic BPF program attached to the socket (SO_GET_FILTER), 8 bytes an instruction; empty when none. */
  socketFilter(fd: number): Buffer;
  /** The socket's own address: sockaddr bytes as long as the kernel gave. */
  getsockname(fd: number): Buffer;
  setsockoptInt(fd: number, level: number, name: number, value: number): void;
  /** An ioctl answering one int: SIOCINQ, SIOCOUTQ, SIOCOUTQNSD. */
  ioctlInt(fd: number, request: number): number;
  /** The inode of the network namespace a socket (an fd of this process) belongs to (SIOCGSKNS). */
  socketNetnsInode(fd: number): number;
  /** One recv(MSG_PEEK | MSG_DONTWAIT) of up to `length` bytes. */
  peekBytes(fd: number, length: number): Buffer;
}
