/* Shared declarations of the per-task helper (crr-helper): the op contract, request-argument
 * readers, and the little process state the helper keeps (its channel fd, what to do after the
 * answer is sent). The protocol itself is described in docs/ARCHITECTURE.md ("The per-task helper and its channel"). */
#ifndef CRR_HELPER_H
#define CRR_HELPER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The helper's own channel lives at or above this fd so a task's fds can take low numbers. */
#define HELPER_CHANNEL_FD_BASE 1000
/* libuv reads a packet into a 64 KiB buffer: larger answers would be cut, so they are refused. */
#define HELPER_MAX_ANSWER 65000
#define HELPER_MAX_REQUEST (256 * 1024)

/* Why an op failed: errno plus the syscall (or "request" for a malformed request). */
typedef struct failure {
  int err;
  const char *syscall;
  const char *detail; /* static text or NULL */
} failure;

/* An op reads its arguments from the request map and, on success, packs exactly one value. */
typedef bool (*op_fn)(const msgpack_object *req, msgpack_packer *value, failure *f);

/* What the main loop does once the answer is on its way. */
enum after_answer { AFTER_NOTHING, AFTER_PARK, AFTER_EXIT };

struct helper_state {
  int channel_fd;
  enum after_answer after;
  int exit_status;
  const char *rseq; /* "off" (glibc never registered it) or "unregistered" */
};
extern struct helper_state helper;

/* Sets f and returns false: lets an op end with `return fail(f, errno, "open")`. */
bool fail(failure *f, int err, const char *syscall);
bool bad_arg(failure *f, const char *detail);

/* Argument readers: a missing or nil key yields `fallback` when `required` is false. Integers
 * may arrive as msgpack ints or as integral floats (msgpackr packs numbers above 2^32 as
 * float64); negative values read as u64 give their two's complement (-1 = all ones). */
const msgpack_object *arg(const msgpack_object *req, const char *key);
bool arg_i64(const msgpack_object *req, const char *key, bool required, int64_t fallback,
             int64_t *out, failure *f);
bool arg_u64(const msgpack_object *req, const char *key, bool required, uint64_t fallback,
             uint64_t *out, failure *f);
bool arg_int(const msgpack_object *req, const char *key, bool required, int fallback, int *out,
             failure *f);
/* Copies a string into buf (NUL-terminated); the path limit is PATH_MAX. */
bool arg_str(const msgpack_object *req, const char *key, char *buf, size_t cap, failure *f);
bool arg_bin(const msgpack_object *req, const char *key, const char **data, size_t *len,
             failure *f);
/* Reads an optional array of ints; *count is 0 when the key is absent. */
bool arg_int_array(const msgpack_object *req, const char *key, int64_t *out, size_t cap,
                   size_t *count, failure *f);
bool str_is(const msgpack_object *o, const char *s);
void pack_str(msgpack_packer *pk, const char *s);
void pack_key(msgpack_packer *pk, const char *s);

/* fd placement (fdops.c): makes sure `target` can be taken by a task fd (moves the channel away
 * if it sits there, above every target of the same op), and moves freshly made fds onto their target numbers. */
bool claim_fd(int target, int highest_target, failure *f);
bool place_fds(int *fds, const int64_t *targets, int n, bool cloexec, failure *f);

/* fds that came with the request packet being served (SCM_RIGHTS on the channel, scmops.c):
 * recv_fds without `sock` takes them; the loop closes what is left after the packet. */
#define HELPER_MAX_INBOX_FDS 253
struct msghdr;
void inbox_fill(struct msghdr *msg);
void inbox_drop(void);

/* Starts the loop in a freshly forked child (taskops.c -> main.c); never returns. */
void serve_forever(void) __attribute__((noreturn));
/* The helper's start-up steps shared by the first helper and every forked child. */
void drop_fds_except_channel(void);
int move_channel_high(int fd);

/* Ops, by file. */
bool op_getpid(const msgpack_object *, msgpack_packer *, failure *);
bool op_fork(const msgpack_object *, msgpack_packer *, failure *);
bool op_setsid(const msgpack_object *, msgpack_packer *, failure *);
bool op_setpgid(const msgpack_object *, msgpack_packer *, failure *);
bool op_set_ctty(const msgpack_object *, msgpack_packer *, failure *);
bool op_set_fg_pgrp(const msgpack_object *, msgpack_packer *, failure *);
bool op_exit(const msgpack_object *, msgpack_packer *, failure *);
bool op_waitpid(const msgpack_object *, msgpack_packer *, failure *);
bool op_kill(const msgpack_object *, msgpack_packer *, failure *);
bool op_park(const msgpack_object *, msgpack_packer *, failure *);

bool op_open(const msgpack_object *, msgpack_packer *, failure *);
bool op_dup2(const msgpack_object *, msgpack_packer *, failure *);
bool op_close(const msgpack_object *, msgpack_packer *, failure *);
bool op_write_file(const msgpack_object *, msgpack_packer *, failure *);
bool op_lseek(const msgpack_object *, msgpack_packer *, failure *);
bool op_fcntl(const msgpack_object *, msgpack_packer *, failure *);
bool op_set_owner(const msgpack_object *, msgpack_packer *, failure *);
bool op_pipe(const msgpack_object *, msgpack_packer *, failure *);
bool op_socketpair(const msgpack_object *, msgpack_packer *, failure *);

/* sockops.c */
bool op_socket(const msgpack_object *, msgpack_packer *, failure *);
bool op_bind(const msgpack_object *, msgpack_packer *, failure *);
bool op_connect(const msgpack_object *, msgpack_packer *, failure *);
bool op_listen(const msgpack_object *, msgpack_packer *, failure *);
bool op_send(const msgpack_object *, msgpack_packer *, failure *);
bool op_setsockopt(const msgpack_object *, msgpack_packer *, failure *);
bool op_shutdown(const msgpack_object *, msgpack_packer *, failure *);
bool op_recv_fds(const msgpack_object *, msgpack_packer *, failure *);

bool op_chdir(const msgpack_object *, msgpack_packer *, failure *);
bool op_fchdir(const msgpack_object *, msgpack_packer *, failure *);
bool op_chroot(const msgpack_object *, msgpack_packer *, failure *);
bool op_setns(const msgpack_object *, msgpack_packer *, failure *);
bool op_umask(const msgpack_object *, msgpack_packer *, failure *);
bool op_setrlimit(const msgpack_object *, msgpack_packer *, failure *);
bool op_prlimit(const msgpack_object *, msgpack_packer *, failure *);
bool op_prctl(const msgpack_object *, msgpack_packer *, failure *);
bool op_rt_sigaction(const msgpack_object *, msgpack_packer *, failure *);
bool op_sigprocmask(const msgpack_object *, msgpack_packer *, failure *);
bool op_map_scratch(const msgpack_object *, msgpack_packer *, failure *);

bool op_eventfd(const msgpack_object *, msgpack_packer *, failure *);
bool op_signalfd(const msgpack_object *, msgpack_packer *, failure *);
bool op_timerfd(const msgpack_object *, msgpack_packer *, failure *);
bool op_epoll_create(const msgpack_object *, msgpack_packer *, failure *);
bool op_epoll_ctl(const msgpack_object *, msgpack_packer *, failure *);
bool op_inotify_init(const msgpack_object *, msgpack_packer *, failure *);
bool op_inotify_add_watch(const msgpack_object *, msgpack_packer *, failure *);
bool op_memfd_create(const msgpack_object *, msgpack_packer *, failure *);
bool op_getfd(const msgpack_object *, msgpack_packer *, failure *);

#endif
