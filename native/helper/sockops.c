/* Socket ops of the helper, for restoring sockets in the task that owns them: make a socket at an
 * exact fd, name it, connect it, listen, put queued data back, set options, shut it down. A unix
 * address travels as the raw sun_path bytes (`addr`: an abstract name starts with a NUL byte),
 * any other as a whole sockaddr (`sockaddr`: sockaddr_in, sockaddr_in6). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helper.h"

#include <linux/filter.h>

/* Fills `sa` from the request's `sockaddr` bytes, or from its `addr` as a sockaddr_un; *len is
 * the exact address length to pass on. */
static bool socket_addr(const msgpack_object *req, struct sockaddr_storage *sa, socklen_t *len,
                        failure *f) {
  const char *data;
  size_t n;
  memset(sa, 0, sizeof *sa);
  if (arg(req, "sockaddr")) {
    if (!arg_bin(req, "sockaddr", &data, &n, f)) return false;
    if (n < sizeof(sa_family_t) || n > sizeof *sa) return bad_arg(f, "sockaddr length");
    memcpy(sa, data, n);
    *len = (socklen_t)n;
    return true;
  }
  struct sockaddr_un *un = (struct sockaddr_un *)sa;
  if (!arg_bin(req, "addr", &data, &n, f)) return false;
  if (n == 0 || n > sizeof un->sun_path) return bad_arg(f, "addr length");
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, data, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  return true;
}

/* socket {domain = AF_UNIX, type, protocol = 0, fd?} -> fd (type may carry SOCK_CLOEXEC/NONBLOCK) */
bool op_socket(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int domain, type, protocol, fd;
  int64_t target;
  if (!arg_int(req, "domain", false, AF_UNIX, &domain, f) ||
      !arg_int(req, "type", true, 0, &type, f) ||
      !arg_int(req, "protocol", false, 0, &protocol, f) ||
      !arg_i64(req, "fd", false, -1, &target, f))
    return false;
  fd = socket(domain, type, protocol);
  if (fd < 0) return fail(f, errno, "socket");
  if (!place_fds(&fd, &target, 1, type & SOCK_CLOEXEC, f)) {
    close(fd);
    return false;
  }
  msgpack_pack_int(pk, fd);
  return true;
}

/* bind {fd, addr | sockaddr} -> 0 */
bool op_bind(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd;
  struct sockaddr_storage sa;
  socklen_t len;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !socket_addr(req, &sa, &len, f)) return false;
  if (bind(fd, (struct sockaddr *)&sa, len) < 0) return fail(f, errno, "bind");
  msgpack_pack_int(pk, 0);
  return true;
}

/* connect {fd, addr | sockaddr, in_progress?} -> 0, or 1 when a non-blocking connect is under
 * way (EINPROGRESS, an error unless `in_progress` says it is expected) */
bool op_connect(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, in_progress;
  struct sockaddr_storage sa;
  socklen_t len;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !socket_addr(req, &sa, &len, f) ||
      !arg_int(req, "in_progress", false, 0, &in_progress, f))
    return false;
  if (connect(fd, (struct sockaddr *)&sa, len) < 0) {
    if (errno != EINPROGRESS || !in_progress) return fail(f, errno, "connect");
    msgpack_pack_int(pk, 1);
    return true;
  }
  msgpack_pack_int(pk, 0);
  return true;
}

/* listen {fd, backlog} -> 0 */
bool op_listen(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, backlog;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_int(req, "backlog", true, 0, &backlog, f))
    return false;
  if (listen(fd, backlog) < 0) return fail(f, errno, "listen");
  msgpack_pack_int(pk, 0);
  return true;
}

/* send {fd, data, addr? | sockaddr?, fds?, creds?} -> bytes sent. One packet for dgram/seqpacket; a
 * stream sends it all (a short send is retried until the bytes are in, or fails). `fds` (up to 253,
 * fds of this task) go with the first bytes as SCM_RIGHTS: a message with fds in flight. `creds`
 * [pid, uid, gid] go with them as SCM_CREDENTIALS (the sender a receiver with SO_PASSCRED sees;
 * another pid, uid or gid than this task's needs privilege; pid 0: this task's). */
bool op_send(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd;
  const char *data;
  size_t len, done = 0, nfds;
  struct sockaddr_storage sa;
  socklen_t salen = 0;
  int64_t passed[253], cred[3];
  size_t ncred;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_bin(req, "data", &data, &len, f) ||
      !arg_int_array(req, "fds", passed, 253, &nfds, f) || !arg_int_array(req, "creds", cred, 3, &ncred, f))
    return false;
  if (ncred != 0 && ncred != 3) return bad_arg(f, "creds needs pid, uid and gid");
  if ((arg(req, "addr") || arg(req, "sockaddr")) && !socket_addr(req, &sa, &salen, f)) return false;
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(struct ucred))];
  } control;
  do {
    struct iovec iov = {(char *)data + done, len - done};
    struct msghdr m = {.msg_name = salen ? &sa : NULL, .msg_namelen = salen, .msg_iov = &iov, .msg_iovlen = 1};
    if ((nfds || ncred) && done == 0) {
      memset(&control, 0, sizeof control);  // CMSG_NXTHDR reads the next header's length
      m.msg_control = control.bytes;
      m.msg_controllen = (nfds ? CMSG_SPACE(sizeof(int) * nfds) : 0) + (ncred ? CMSG_SPACE(sizeof(struct ucred)) : 0);
      struct cmsghdr *c = CMSG_FIRSTHDR(&m);
      if (nfds) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        for (size_t i = 0; i < nfds; i++) {
          int one = (int)passed[i];
          memcpy(CMSG_DATA(c) + i * sizeof(int), &one, sizeof one);
        }
        c = CMSG_NXTHDR(&m, c);
      }
      if (ncred) {
        struct ucred u = {.pid = cred[0] ? (pid_t)cred[0] : getpid(), .uid = (uid_t)cred[1], .gid = (gid_t)cred[2]};
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof u);
        memcpy(CMSG_DATA(c), &u, sizeof u);
      }
    }
    ssize_t n = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(f, errno, "sendmsg");
    }
    done += (size_t)n;
  } while (done < len);
  msgpack_pack_uint64(pk, done);
  return true;
}

/* setsockopt {fd, level, name, value | bytes | filter} -> 0 (`value` is an int option; `filter`
 * the instructions of a classic BPF program, attached through the struct sock_fprog that points at them) */
bool op_setsockopt(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, level, name, value;
  const char *bytes;
  size_t len;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_int(req, "level", true, 0, &level, f) ||
      !arg_int(req, "name", true, 0, &name, f))
    return false;
  int rc;
  if (arg(req, "filter")) {
    if (!arg_bin(req, "filter", &bytes, &len, f)) return false;
    struct sock_fprog prog = {.len = (unsigned short)(len / sizeof(struct sock_filter)), .filter = (struct sock_filter *)bytes};
    rc = setsockopt(fd, level, name, &prog, sizeof prog);
  } else if (arg(req, "bytes")) {
    if (!arg_bin(req, "bytes", &bytes, &len, f)) return false;
    rc = setsockopt(fd, level, name, bytes, (socklen_t)len);
  } else {
    if (!arg_int(req, "value", true, 0, &value, f)) return false;
    rc = setsockopt(fd, level, name, &value, sizeof value);
  }
  if (rc < 0) return fail(f, errno, "setsockopt");
  msgpack_pack_int(pk, 0);
  return true;
}

/* shutdown {fd, how} -> 0 */
bool op_shutdown(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, how;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_int(req, "how", true, 0, &how, f)) return false;
  if (shutdown(fd, how) < 0) return fail(f, errno, "shutdown");
  msgpack_pack_int(pk, 0);
  return true;
}
