/* crr-helper: the per-task helper process. It reads msgpack requests from its channel (a
 * SOCK_SEQPACKET socket, fd 3 at spawn), runs each as real syscalls in its own context and
 * answers {id, ok, value} or {id, ok: false, errno, code, syscall}. Forked children run the same
 * loop on their own channel. Protocol: docs/ARCHITECTURE.md ("The per-task helper and its channel"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helper.h"

struct helper_state helper = {.channel_fd = -1, .after = AFTER_NOTHING, .rseq = "off"};

static const struct {
  const char *name;
  op_fn fn;
} op_table[] = {
    {"getpid", op_getpid},       {"fork", op_fork},
    {"setsid", op_setsid},       {"setpgid", op_setpgid},
    {"set_ctty", op_set_ctty},   {"set_fg_pgrp", op_set_fg_pgrp},
    {"exit", op_exit},           {"waitpid", op_waitpid},
    {"kill", op_kill},           {"park", op_park},
    {"open", op_open},           {"dup2", op_dup2},
    {"close", op_close},         {"lseek", op_lseek},
    {"write_file", op_write_file},
    {"fcntl", op_fcntl},         {"set_owner", op_set_owner},         {"pipe", op_pipe},
    {"socketpair", op_socketpair}, {"chdir", op_chdir},
    {"fchdir", op_fchdir},       {"chroot", op_chroot},
    {"setns", op_setns},
    {"umask", op_umask},         {"setrlimit", op_setrlimit},
    {"prlimit", op_prlimit},     {"prctl", op_prctl},
    {"rt_sigaction", op_rt_sigaction}, {"sigprocmask", op_sigprocmask},
    {"map_scratch", op_map_scratch},
    {"socket", op_socket},       {"bind", op_bind},
    {"connect", op_connect},     {"listen", op_listen},
    {"send", op_send},           {"setsockopt", op_setsockopt},
    {"shutdown", op_shutdown},
    /* eventops.c */
    {"eventfd", op_eventfd},     {"signalfd", op_signalfd},
    {"timerfd", op_timerfd},     {"epoll_create", op_epoll_create},
    {"epoll_ctl", op_epoll_ctl}, {"inotify_init", op_inotify_init},
    {"inotify_add_watch", op_inotify_add_watch}, {"memfd_create", op_memfd_create},
    {"getfd", op_getfd},
    {"recv_fds", op_recv_fds},
};

static op_fn find_op(const msgpack_object *name) {
  for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
    if (str_is(name, op_table[i].name)) return op_table[i].fn;
  return NULL;
}

/* Runs one op, its value packed into `out` (a fresh buffer per op, so a failed op leaves
 * nothing half-packed). */
static bool run_one(const msgpack_object *req, msgpack_sbuffer *out, failure *f) {
  const msgpack_object *name = arg(req, "op");
  op_fn fn = name ? find_op(name) : NULL;
  if (!fn) return bad_arg(f, "unknown op");
  if (helper.after != AFTER_NOTHING) return bad_arg(f, "park and exit must come last");
  msgpack_packer pk;
  msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
  return fn(req, &pk, f);
}

/* batch {ops: [...]}: in order, stopping at the first failure. The value is the array of
 * results; on failure `index` names the failed op and `results` holds those before it. */
static bool run_batch(const msgpack_object *req, msgpack_sbuffer *values, uint32_t *done,
                      failure *f) {
  const msgpack_object *ops = arg(req, "ops");
  *done = 0;
  if (!ops || ops->type != MSGPACK_OBJECT_ARRAY) return bad_arg(f, "ops");
  for (uint32_t i = 0; i < ops->via.array.size; i++) {
    const msgpack_object *one = &ops->via.array.ptr[i];
    if (str_is(arg(one, "op"), "batch")) return bad_arg(f, "batches do not nest");
    msgpack_sbuffer value;
    msgpack_sbuffer_init(&value);
    bool ok = run_one(one, &value, f);
    if (ok) msgpack_sbuffer_write(values, value.data, value.size);
    msgpack_sbuffer_destroy(&value);
    if (!ok) return false;
    (*done)++;
  }
  return true;
}

static void send_packet(const char *data, size_t len) {
  ssize_t n;
  do n = send(helper.channel_fd, data, len, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) _exit(3); /* the orchestrator is gone: nothing left to serve */
}

static void pack_failure(msgpack_packer *pk, const failure *f) {
  const char *code = strerrorname_np(f->err);
  pack_key(pk, "ok");
  msgpack_pack_false(pk);
  pack_key(pk, "errno");
  msgpack_pack_int(pk, f->err);
  pack_key(pk, "code");
  pack_str(pk, code ? code : "EUNKNOWN");
  pack_key(pk, "syscall");
  pack_str(pk, f->syscall ? f->syscall : "unknown");
  if (f->detail) {
    pack_key(pk, "detail");
    pack_str(pk, f->detail);
  }
}

static void answer(const msgpack_object *id, bool batch, bool ok, const msgpack_sbuffer *values,
                   uint32_t done, const failure *f) {
  msgpack_sbuffer buf;
  msgpack_packer pk;
  msgpack_sbuffer_init(&buf);
  msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
  uint32_t fields = ok ? 3 : 5 + (f->detail ? 1 : 0) + (batch ? 2 : 0);
  msgpack_pack_map(&pk, fields);
  pack_key(&pk, "id");
  msgpack_pack_object(&pk, id ? *id : (msgpack_object){.type = MSGPACK_OBJECT_NIL});
  if (ok) {
    pack_key(&pk, "ok");
    msgpack_pack_true(&pk);
    pack_key(&pk, "value");
    if (batch) msgpack_pack_array(&pk, done);
    msgpack_sbuffer_write(&buf, values->data, values->size);
  } else {
    pack_failure(&pk, f);
    if (batch) {
      pack_key(&pk, "index");
      msgpack_pack_uint32(&pk, done);
      pack_key(&pk, "results");
      msgpack_pack_array(&pk, done);
      msgpack_sbuffer_write(&buf, values->data, values->size);
    }
  }
  if (buf.size > HELPER_MAX_ANSWER) {
    failure big = {.err = E2BIG, .syscall = "answer",
                   .detail = "the ops ran but their answer is over 65000 bytes: split the batch"};
    msgpack_sbuffer_clear(&buf);
    msgpack_pack_map(&pk, 6);
    pack_key(&pk, "id");
    msgpack_pack_object(&pk, id ? *id : (msgpack_object){.type = MSGPACK_OBJECT_NIL});
    pack_failure(&pk, &big);
  }
  send_packet(buf.data, buf.size);
  msgpack_sbuffer_destroy(&buf);
}

static void handle(const msgpack_object *req) {
  const msgpack_object *id = arg(req, "id");
  failure f = {0};
  msgpack_sbuffer values;
  msgpack_sbuffer_init(&values);
  bool batch = str_is(arg(req, "op"), "batch");
  uint32_t done = 0;
  bool ok = batch ? run_batch(req, &values, &done, &f) : run_one(req, &values, &f);
  answer(id, batch, ok, &values, done, &f);
  msgpack_sbuffer_destroy(&values);
  if (helper.after == AFTER_EXIT) syscall(SYS_exit_group, helper.exit_status);
  if (helper.after == AFTER_PARK) {
    /* The restorer's stub runs in this thread next. No signal may run a handler in between (the
     * restored sigactions arrive halfway through), and SIGTRAP, the stub's int3, must stay
     * unblocked (kernel notes, trap 9). Blocked here, not by the tracer: one ptrace round trip
     * fewer per task. The raw syscall, as glibc's sigprocmask would leave its own two signals
     * (32, 33) unblocked. */
    uint64_t all_but_trap = ~(1ULL << (SIGTRAP - 1));
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all_but_trap, NULL, sizeof all_but_trap);
    /* Blocked in a syscall until the tracer seizes us; never SIGSTOP (kernel notes, trap 2). */
    for (;;) pause();
  }
}

void serve_forever(void) {
  static char packet[HELPER_MAX_REQUEST];
  static union {
    char buf[CMSG_SPACE(sizeof(int) * HELPER_MAX_INBOX_FDS)];
    struct cmsghdr align;
  } control;
  for (;;) {
    /* A request packet may carry fds (SCM_RIGHTS) for its recv_fds op: they wait in the inbox
     * (close-on-exec) and whatever no op took is closed once the packet is served. */
    struct iovec iov = {.iov_base = packet, .iov_len = sizeof packet};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(helper.channel_fd, &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(n == 0 ? 0 : 4); /* channel closed: the orchestrator let go of us */
    inbox_fill(&msg);
    if ((size_t)n > sizeof packet) {
      failure f = {.err = EMSGSIZE, .syscall = "request", .detail = "request over 256 KiB"};
      answer(NULL, false, false, NULL, 0, &f);
      inbox_drop();
      continue;
    }
    /* Usually one request per packet, but a writer may coalesce several: take them all. */
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t off = 0;
    while (msgpack_unpack_next(&unpacked, packet, (size_t)n, &off) == MSGPACK_UNPACK_SUCCESS)
      handle(&unpacked.data);
    msgpack_unpacked_destroy(&unpacked);
    inbox_drop();
  }
}

int move_channel_high(int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, HELPER_CHANNEL_FD_BASE);
  if (high < 0) _exit(5);
  close(fd);
  return high;
}

void drop_fds_except_channel(void) {
  int ch = helper.channel_fd;
  if (ch > 0) close_range(0, ch - 1, 0);
  close_range(ch + 1, ~0U, 0);
}

/* glibc registers rseq per thread; the address-space swap unmaps that area, so the helper must
 * not have it registered. GLIBC_TUNABLES=glibc.pthread.rseq=0 keeps glibc from registering it;
 * if that was not set, unregister it here (forked children inherit the unregistered state). */
static void drop_rseq(void) {
  if (__rseq_size == 0) return;
  void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
  if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0 ||
      syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0)
    helper.rseq = "unregistered";
  else
    _exit(6);
}

int main(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* The parent may have died before PDEATHSIG was set: then nobody would kill us later. */
  const char *parent = getenv("CRR_HELPER_PARENT");
  if (parent && getppid() != atoi(parent)) _exit(7);
  drop_rseq();
  helper.channel_fd = move_channel_high(3);
  drop_fds_except_channel();
  serve_forever();
}
