/* Receiving fds from the orchestrator (SCM_RIGHTS). The orchestrator can take any task's fd with
 * pidfd_getfd but cannot put one into a task: a receiver's helper reads them from a socket the
 * orchestrator holds the other end of, and lands each at its exact number with its own
 * close-on-exec flag. This is how a file description created once is shared by every task. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helper.h"

/* SCM_RIGHTS carries at most 253 fds per message (SCM_MAX_FD). */
#define MAX_RECV_FDS 253

static int inbox[HELPER_MAX_INBOX_FDS];
static size_t inbox_count;

/* Collects the fds a channel packet carried (a truncated set is kept as is: recv_fds then sees
 * a count that differs from its targets and fails with EPROTO). */
void inbox_fill(struct msghdr *msg) {
  inbox_count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && inbox_count < HELPER_MAX_INBOX_FDS; i++)
      memcpy(&inbox[inbox_count++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
}

void inbox_drop(void) {
  for (size_t i = 0; i < inbox_count; i++) close(inbox[i]);
  inbox_count = 0;
}

/* Takes the packet's fds for recv_fds without `sock`: the orchestrator sent them on the channel
 * with the request itself, so no socketpair and no second round trip are needed. */
static size_t take_inbox(int *fds) {
  size_t got = inbox_count;
  memcpy(fds, inbox, got * sizeof(int));
  inbox_count = 0;
  return got;
}

/* Lands received fds at their targets, each with its own close-on-exec flag. */
static bool place_received(int *fds, const int64_t *targets, const int64_t *cloexec, size_t count,
                           size_t flags_count, msgpack_packer *pk, failure *f) {
  if (!place_fds(fds, targets, (int)count, false, f)) {
    for (size_t i = 0; i < count; i++) close(fds[i]);
    return false;
  }
  for (size_t i = 0; i < count; i++) {
    bool on = flags_count ? cloexec[i] != 0 : false;
    if (fcntl(fds[i], F_SETFD, on ? FD_CLOEXEC : 0) < 0) return fail(f, errno, "fcntl");
  }
  msgpack_pack_int(pk, (int)count);
  return true;
}

/* recv_fds {sock?, fds: [targets], cloexec?: [0|1 per fd]} -> number of fds placed. From `sock`:
 * one recvmsg that never blocks (EAGAIN when nothing is queued); without `sock`: the fds that
 * came with this request on the channel. Fewer or more fds than targets: EPROTO. */
bool op_recv_fds(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int sock;
  int64_t targets[MAX_RECV_FDS], cloexec[MAX_RECV_FDS];
  size_t count, flags_count;
  if (!arg_int(req, "sock", false, -1, &sock, f) ||
      !arg_int_array(req, "fds", targets, MAX_RECV_FDS, &count, f) ||
      !arg_int_array(req, "cloexec", cloexec, MAX_RECV_FDS, &flags_count, f))
    return false;
  if (count == 0) return bad_arg(f, "fds needs at least one number");
  if (flags_count != 0 && flags_count != count) return bad_arg(f, "cloexec needs one flag per fd");
  for (size_t i = 0; i < count; i++)
    if (targets[i] == sock) return bad_arg(f, "a target is the receiving socket");

  int fds[MAX_RECV_FDS];
  size_t got = 0;
  if (sock < 0) {
    got = take_inbox(fds);
    if (got != count) {
      for (size_t i = 0; i < got; i++) close(fds[i]);
      f->detail = "fd count differs from the targets";
      return fail(f, EPROTO, "recvmsg");
    }
    return place_received(fds, targets, cloexec, count, flags_count, pk, f);
  }

  char data[16];
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) return fail(f, errno, "recvmsg");

  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && got < MAX_RECV_FDS; i++) memcpy(&fds[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (got != count || (msg.msg_flags & MSG_CTRUNC)) {
    for (size_t i = 0; i < got; i++) close(fds[i]);
    f->detail = "fd count differs from the targets";
    return fail(f, EPROTO, "recvmsg");
  }
  return place_received(fds, targets, cloexec, count, flags_count, pk, f);
}
