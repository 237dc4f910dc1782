// Socket inspection for the dumper: the sock_diag netlink dumps of unix sockets (name, vfs inode,
// peer, pending connections, queue lengths, memory and shutdown state), of TCP and UDP sockets
// (addresses, state, queues, a listener's backlog) and of netlink sockets (port ids, groups,
// memory), all of the dumper's network namespace; MSG_PEEK of a socket's receive queue packet by
// packet (SO_PEEK_OFF so nothing is consumed); getsockopt, getsockname, and what reading a TCP
// connection in repair mode needs (an int setsockopt, queue-length ioctls, a plain peek). Netlink
// answers go back raw: TS parses them (src/dump/fd-unixsk-diag.ts, fd-inetsk.ts,
// fd-netlinksk.ts). Synchronous, stateless, errors carry code/errno/syscall.
#include <napi.h>

#include "throw-errno.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <linux/netlink_diag.h>
#include <linux/packet_diag.h>
#include <linux/unix_diag.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

bool IntArg(const Napi::CallbackInfo& info, size_t index, int* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(index) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[index].As<Napi::Number>().Int32Value();
  return true;
}

// Sends one NLM_F_DUMP request of SOCK_DIAG_BY_FAMILY (`req`: the family's request struct) and
// returns every netlink message of the answer, concatenated. The answer is of the network
// namespace of the NETLINK_SOCK_DIAG socket: a copy of `given` (one made in another namespace,
// see socketInNamespace), or a new one of this process's when `given` is -1.
Napi::Value SockDiagDump(Napi::Env env, const void* req, size_t reqLen, int given) {
  int nl = given >= 0 ? dup(given) : socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return ThrowErrno(env, given >= 0 ? "dup" : "socket", errno);
  std::vector<char> msg(NLMSG_HDRLEN + reqLen);
  auto* hdr = reinterpret_cast<nlmsghdr*>(msg.data());
  hdr->nlmsg_len = msg.size();
  hdr->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  hdr->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  hdr->nlmsg_seq = 1;
  memcpy(msg.data() + NLMSG_HDRLEN, req, reqLen);
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  if (sendto(nl, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    int err = errno;
    close(nl);
    return ThrowErrno(env, "sendto", err);
  }
  std::vector<char> all;
  std::vector<char> buf(1 << 16);
  for (bool done = false; !done;) {
    ssize_t got = recv(nl, buf.data(), buf.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(nl);
      return ThrowErrno(env, "recv", err);
    }
    // NLMSG_NEXT counts `left` down to 0: `got` must stay what recv returned (0 only at the end).
    ssize_t left = got;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) done = true;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        close(nl);
        return ThrowErrno(env, "sock_diag", -e->error);
      }
      if (done) break;
      const char* start = reinterpret_cast<const char*>(h);
      all.insert(all.end(), start, start + NLMSG_ALIGN(h->nlmsg_len));
    }
    if (got == 0) done = true;
  }
  close(nl);
  return Napi::Buffer<char>::Copy(env, all.data(), all.size());
}

// The optional diag socket argument at `index` (-1 when absent: a socket of crr's namespace).
bool DiagSocketArg(const Napi::CallbackInfo& info, size_t index, int* out) {
  *out = -1;
  return info.Length() <= index || info[index].IsUndefined() || IntArg(info, index, out);
}

// unixDiag(show, diagSocket?) -> Buffer: every unix socket of the network namespace (unix_diag_msg + attributes).
Napi::Value UnixDiag(const Napi::CallbackInfo& info) {
  int show, given;
  if (!IntArg(info, 0, &show) || !DiagSocketArg(info, 1, &given)) return info.Env().Undefined();
  struct unix_diag_req req = {};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;
  req.udiag_show = static_cast<unsigned>(show);
  return SockDiagDump(info.Env(), &req, sizeof req, given);
}

// inetDiag(family, protocol, diagSocket?) -> Buffer: every socket of that family and protocol
// (AF_INET or AF_INET6; IPPROTO_TCP or IPPROTO_UDP) of the network namespace, in every state.
Napi::Value InetDiag(const Napi::CallbackInfo& info) {
  int family, protocol, given;
  if (!IntArg(info, 0, &family) || !IntArg(info, 1, &protocol) || !DiagSocketArg(info, 2, &given)) return info.Env().Undefined();
  struct inet_diag_req_v2 req = {};
  req.sdiag_family = static_cast<__u8>(family);
  req.sdiag_protocol = static_cast<__u8>(protocol);
  req.idiag_states = ~0u;
  return SockDiagDump(info.Env(), &req, sizeof req, given);
}

// peekQueue(fd, maxPacket, udp?) -> {packets: Buffer[], senders: Buffer[], passed: number[][],
// creds: Array<{pid, uid, gid} | null>, truncated: boolean}: the receive queue read with MSG_PEEK from offset 0 (SO_PEEK_OFF moves past
// each packet), peek offset switched off again. A read of 0 bytes ends it, except on a UDP socket
// (`udp`), whose peek offset moves past an empty datagram to the next (measured); a unix socket's
// stays on it. Fds in flight (SCM_RIGHTS) come with their packet: peeking installs copies of them
// here (close-on-exec), in `passed`, which the caller closes; `truncated` when some did not fit.
// `creds`: each packet's sender credentials (SCM_CREDENTIALS: on a socket with SO_PASSCRED; pid
// as this process's PID namespace sees it), null where none came.
Napi::Value PeekQueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, max;
  if (!IntArg(info, 0, &fd) || !IntArg(info, 1, &max)) return env.Undefined();
  bool udp = info.Length() > 2 && info[2].ToBoolean().Value();
  int off = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0)
    return ThrowErrno(env, "setsockopt", errno);
  Napi::Array packets = Napi::Array::New(env);
  Napi::Array senders = Napi::Array::New(env);
  Napi::Array passed = Napi::Array::New(env);
  Napi::Array creds = Napi::Array::New(env);
  bool truncated = false;
  std::vector<char> data(static_cast<size_t>(max > 0 ? max : 1));
  int err = 0;
  for (;;) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(64)];
    iovec iov = {data.data(), data.size()};
    sockaddr_storage from = {};
    msghdr m = {};
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    ssize_t got = recvmsg(fd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) {
      if (errno != EAGAIN) err = errno;
      break;
    }
    Napi::Array fds = Napi::Array::New(env);
    Napi::Value cred = env.Null();
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
        ucred u;
        memcpy(&u, CMSG_DATA(c), sizeof u);
        Napi::Object o = Napi::Object::New(env);
        o.Set("pid", Napi::Number::New(env, u.pid));
        o.Set("uid", Napi::Number::New(env, u.uid));
        o.Set("gid", Napi::Number::New(env, u.gid));
        cred = o;
      }
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd_passed;
        memcpy(&fd_passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.Set(fds.Length(), Napi::Number::New(env, fd_passed));
      }
    }
    if (m.msg_flags & MSG_CTRUNC) truncated = true;
    // A stream at end of data, or an empty datagram (no way to tell apart): the peek offset
    // stays, so the walk ends here, with the fds an empty datagram carried.
    bool last = got == 0 && !udp;
    if (last && fds.Length() == 0) break;
    packets.Set(packets.Length(), Napi::Buffer<char>::Copy(env, data.data(), static_cast<size_t>(got)));
    passed.Set(passed.Length(), fds);
    creds.Set(creds.Length(), cred);
    senders.Set(senders.Length(), Napi::Buffer<char>::Copy(env, reinterpret_cast<char*>(&from), m.msg_namelen));
    if (m.msg_flags & MSG_TRUNC) {
      err = EMSGSIZE;
      break;
    }
    if (last) break;
  }
  off = -1;
  setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
  if (err) {
    for (uint32_t i = 0; i < passed.Length(); i++) {
      Napi::Array fds = passed.Get(i).As<Napi::Array>();
      for (uint32_t j = 0; j < fds.Length(); j++) close(fds.Get(j).As<Napi::Number>().Int32Value());
    }
    return ThrowErrno(env, "recvmsg", err);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("packets", packets);
  out.Set("senders", senders);
  out.Set("passed", passed);
  out.Set("creds", creds);
  out.Set("truncated", Napi::Boolean::New(env, truncated));
  return out;
}

// getsockoptBytes(fd, level, name, size) -> Buffer (as many bytes as the kernel gave).
Napi::Value GetsockoptBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, level, name, size;
  if (!IntArg(info, 0, &fd) || !IntArg(info, 1, &level) || !IntArg(info, 2, &name) ||
      !IntArg(info, 3, &size))
    return env.Undefined();
  std::vector<char> buf(static_cast<size_t>(size > 0 ? size : 4));
  socklen_t len = static_cast<socklen_t>(buf.size());
  if (getsockopt(fd, level, name, buf.data(), &len) < 0) return ThrowErrno(env, "getsockopt", errno);
  return Napi::Buffer<char>::Copy(env, buf.data(), len);
}

// socketFilter(fd) -> Buffer: the classic BPF program attached to the socket (SO_GET_FILTER, whose
// length counts instructions, not bytes: a byte-sized buffer would be overrun), empty when none.
Napi::Value SocketFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, &fd)) return env.Undefined();
  socklen_t count = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, nullptr, &count) < 0) return ThrowErrno(env, "getsockopt(SO_GET_FILTER)", errno);
  std::vector<sock_filter> prog(count);
  if (count > 0 && getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, prog.data(), &count) < 0) return ThrowErrno(env, "getsockopt(SO_GET_FILTER)", errno);
  return Napi::Buffer<char>::Copy(env, reinterpret_cast<char*>(prog.data()), static_cast<size_t>(count) * sizeof(sock_filter));
}

// getsockname(fd) -> Buffer: the socket's own address (sockaddr bytes as long as the kernel gave).
Napi::Value Getsockname(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, &fd)) return env.Undefined();
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) < 0) return ThrowErrno(env, "getsockname", errno);
  return Napi::Buffer<char>::Copy(env, reinterpret_cast<char*>(&sa), len);
}

// netlinkDiag(diagSocket?) -> Buffer: every netlink socket of the network namespace, with its
// groups and memory (netlink_diag_msg + attributes).
Napi::Value NetlinkDiag(const Napi::CallbackInfo& info) {
  int given;
  if (!DiagSocketArg(info, 0, &given)) return info.Env().Undefined();
  struct netlink_diag_req req = {};
  req.sdiag_family = AF_NETLINK;
  req.sdiag_protocol = NDIAG_PROTO_ALL;
  req.ndiag_show = NDIAG_SHOW_GROUPS | NDIAG_SHOW_MEMINFO;
  return SockDiagDump(info.Env(), &req, sizeof req, given);
}

// packetDiag(diagSocket?) -> Buffer: every packet socket of the network namespace, with its
// options, memberships, rings, fanout and memory (packet_diag_msg + attributes).
Napi::Value PacketDiag(const Napi::CallbackInfo& info) {
  int given;
  if (!DiagSocketArg(info, 0, &given)) return info.Env().Undefined();
  struct packet_diag_req req = {};
  req.sdiag_family = AF_PACKET;
  req.pdiag_show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT | PACKET_SHOW_MEMINFO;
  return SockDiagDump(info.Env(), &req, sizeof req, given);
}

// setsockoptInt(fd, level, name, value) -> undefined.
Napi::Value SetsockoptInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, level, name, value;
  if (!IntArg(info, 0, &fd) || !IntArg(info, 1, &level) || !IntArg(info, 2, &name) ||
      !IntArg(info, 3, &value))
    return env.Undefined();
  if (setsockopt(fd, level, name, &value, sizeof value) < 0) return ThrowErrno(env, "setsockopt", errno);
  return env.Undefined();
}

// ioctlInt(fd, request) -> number: an ioctl that answers one int (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD).
Napi::Value IoctlInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, request;
  if (!IntArg(info, 0, &fd) || !IntArg(info, 1, &request)) return env.Undefined();
  int value = 0;
  if (ioctl(fd, static_cast<unsigned long>(request), &value) < 0) return ThrowErrno(env, "ioctl", errno);
  return Napi::Number::New(env, value);
}

// socketNetnsInode(fd) -> the inode of the network namespace the socket was made in (SIOCGSKNS
// gives an fd of it, closed here).
Napi::Value SocketNetnsInode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, &fd)) return env.Undefined();
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns < 0) return ThrowErrno(env, "ioctl(SIOCGSKNS)", errno);
  struct stat st;
  int rc = fstat(ns, &st);
  int err = errno;
  close(ns);
  if (rc < 0) return ThrowErrno(env, "fstat", err);
  return Napi::Number::New(env, static_cast<double>(st.st_ino));
}

// peekBytes(fd, length) -> Buffer: one recv(MSG_PEEK | MSG_DONTWAIT) of up to `length` bytes (a TCP
// socket in repair mode peeks the queue TCP_REPAIR_QUEUE chose, its send queue included).
Napi::Value PeekBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd, length;
  if (!IntArg(info, 0, &fd) || !IntArg(info, 1, &length)) return env.Undefined();
  std::vector<char> buf(static_cast<size_t>(length > 0 ? length : 1));
  ssize_t got;
  do got = recv(fd, buf.data(), static_cast<size_t>(length), MSG_PEEK | MSG_DONTWAIT);
  while (got < 0 && errno == EINTR);
  if (got < 0) return ThrowErrno(env, "recv", errno);
  return Napi::Buffer<char>::Copy(env, buf.data(), static_cast<size_t>(got));
}

}  // namespace

void InitSockDiag(Napi::Env env, Napi::Object exports) {
  exports.Set("unixDiag", Napi::Function::New(env, UnixDiag, "unixDiag"));
  exports.Set("inetDiag", Napi::Function::New(env, InetDiag, "inetDiag"));
  exports.Set("netlinkDiag", Napi::Function::New(env, NetlinkDiag, "netlinkDiag"));
  exports.Set("packetDiag", Napi::Function::New(env, PacketDiag, "packetDiag"));
  exports.Set("peekQueue", Napi::Function::New(env, PeekQueue, "peekQueue"));
  exports.Set("getsockoptBytes", Napi::Function::New(env, GetsockoptBytes, "getsockoptBytes"));
  exports.Set("getsockname", Napi::Function::New(env, Getsockname, "getsockname"));
  exports.Set("socketFilter", Napi::Function::New(env, SocketFilter, "socketFilter"));
  exports.Set("setsockoptInt", Napi::Function::New(env, SetsockoptInt, "setsockoptInt"));
  exports.Set("ioctlInt", Napi::Function::New(env, IoctlInt, "ioctlInt"));
  exports.Set("peekBytes", Napi::Function::New(env, PeekBytes, "peekBytes"));
  exports.Set("socketNetnsInode", Napi::Function::New(env, SocketNetnsInode, "socketNetnsInode"));
}
