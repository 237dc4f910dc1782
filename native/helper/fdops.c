/* fd ops of the helper. A task's fds must land at exact numbers, so every op that makes fds can
 * take target numbers; the helper's own channel is moved out of the way when a target hits it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helper.h"

bool claim_fd(int target, int highest_target, failure *f) {
  if (target < 0) return bad_arg(f, "fd must not be negative");
  if (target != helper.channel_fd) return true;
  int base = highest_target >= HELPER_CHANNEL_FD_BASE ? highest_target + 1 : HELPER_CHANNEL_FD_BASE;
  int moved = fcntl(helper.channel_fd, F_DUPFD_CLOEXEC, base);
  if (moved < 0) return fail(f, errno, "fcntl");
  close(helper.channel_fd);
  helper.channel_fd = moved;
  return true;
}

/* Moves fds[i] to targets[i] (targets < 0: leave it where it is). First every new fd that sits
 * on another one's target is parked above all targets, so no move overwrites a sibling. */
bool place_fds(int *fds, const int64_t *targets, int n, bool cloexec, failure *f) {
  int64_t highest = 0;
  for (int i = 0; i < n; i++) {
    if (targets[i] >= INT_MAX) return bad_arg(f, "fd out of range");
    if (targets[i] > highest) highest = targets[i];
  }
  for (int i = 0; i < n; i++)
    if (targets[i] >= 0 && !claim_fd((int)targets[i], (int)highest, f)) return false;
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < n; j++) {
      if (j == i || fds[i] != targets[j]) continue;
      int parked = fcntl(fds[i], F_DUPFD_CLOEXEC, (int)highest + 1);
      if (parked < 0) return fail(f, errno, "fcntl");
      close(fds[i]);
      fds[i] = parked;
      break;
    }
  }
  for (int i = 0; i < n; i++) {
    if (targets[i] < 0 || fds[i] == targets[i]) continue;
    if (dup3(fds[i], (int)targets[i], cloexec ? O_CLOEXEC : 0) < 0) return fail(f, errno, "dup3");
    close(fds[i]);
    fds[i] = (int)targets[i];
  }
  return true;
}

static void close_all(const int *fds, int n) {
  for (int i = 0; i < n; i++) close(fds[i]);
}

/* open {path, flags, mode = 0, fd?} -> fd */
bool op_open(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  char path[PATH_MAX];
  int flags, mode;
  int64_t target;
  if (!arg_str(req, "path", path, sizeof path, f) || !arg_int(req, "flags", false, 0, &flags, f) ||
      !arg_int(req, "mode", false, 0, &mode, f) || !arg_i64(req, "fd", false, -1, &target, f))
    return false;
  if (target >= INT_MAX) return bad_arg(f, "fd out of range");
  if (target >= 0 && !claim_fd((int)target, (int)target, f)) return false;
  int fd = open(path, flags, mode);
  if (fd < 0) return fail(f, errno, "open");
  if (!place_fds(&fd, &target, 1, flags & O_CLOEXEC, f)) {
    close(fd);
    return false;
  }
  msgpack_pack_int(pk, fd);
  return true;
}

/* dup2 {oldfd, newfd, flags = 0} -> newfd (dup3 when flags is O_CLOEXEC) */
bool op_dup2(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int oldfd, newfd, flags;
  if (!arg_int(req, "oldfd", true, 0, &oldfd, f) || !arg_int(req, "newfd", true, 0, &newfd, f) ||
      !arg_int(req, "flags", false, 0, &flags, f))
    return false;
  if (!claim_fd(newfd, newfd, f)) return false;
  int got = oldfd == newfd && flags == 0 ? dup2(oldfd, newfd) : dup3(oldfd, newfd, flags);
  if (got < 0) return fail(f, errno, flags ? "dup3" : "dup2");
  msgpack_pack_int(pk, got);
  return true;
}

bool op_close(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd;
  if (!arg_int(req, "fd", true, 0, &fd, f)) return false;
  if (fd == helper.channel_fd) return fail(f, EPERM, "close");
  if (close(fd) < 0) return fail(f, errno, "close");
  msgpack_pack_int(pk, 0);
  return true;
}

/* write_file {path, data} -> bytes written: one write to a file the helper opens for it and closes
 * (a /proc/self file only the task itself may write, such as loginuid). */
bool op_write_file(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  char path[PATH_MAX];
  const char *data;
  size_t len;
  if (!arg_str(req, "path", path, sizeof path, f) || !arg_bin(req, "data", &data, &len, f)) return false;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(f, errno, "open");
  ssize_t n = write(fd, data, len);
  int err = errno;
  close(fd);
  if (n < 0) return fail(f, err, "write");
  msgpack_pack_int64(pk, n);
  return true;
}

/* lseek {fd, offset, whence = SEEK_SET} -> offset */
bool op_lseek(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, whence;
  int64_t offset;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_i64(req, "offset", true, 0, &offset, f) ||
      !arg_int(req, "whence", false, SEEK_SET, &whence, f))
    return false;
  off_t got = lseek(fd, offset, whence);
  if (got < 0) return fail(f, errno, "lseek");
  msgpack_pack_int64(pk, got);
  return true;
}

/* fcntl {fd, cmd, arg = 0} -> result; only commands with an integer argument. */
bool op_fcntl(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, cmd;
  int64_t value;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_int(req, "cmd", true, 0, &cmd, f) ||
      !arg_i64(req, "arg", false, 0, &value, f))
    return false;
  int got = fcntl(fd, cmd, (long)value);
  if (got < 0) return fail(f, errno, "fcntl");
  msgpack_pack_int(pk, got);
  return true;
}

/* set_owner {fd, type, pid} -> 0: F_SETOWN_EX, the process, thread (F_OWNER_TID 0, F_OWNER_PID 1)
 * or process group (F_OWNER_PGRP 2) that SIGIO and SIGURG of the file go to. */
bool op_set_owner(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, type, pid;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_int(req, "type", true, 0, &type, f) ||
      !arg_int(req, "pid", true, 0, &pid, f))
    return false;
  struct f_owner_ex owner = {.type = type, .pid = pid};
  if (fcntl(fd, F_SETOWN_EX, &owner) < 0) return fail(f, errno, "fcntl(F_SETOWN_EX)");
  msgpack_pack_int(pk, 0);
  return true;
}

static bool pack_pair(msgpack_packer *pk, const int *fds) {
  msgpack_pack_array(pk, 2);
  msgpack_pack_int(pk, fds[0]);
  msgpack_pack_int(pk, fds[1]);
  return true;
}

/* pipe {fds?: [r, w], flags = 0} -> [r, w] */
bool op_pipe(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int flags, fds[2];
  int64_t targets[2] = {-1, -1};
  size_t count;
  if (!arg_int(req, "flags", false, 0, &flags, f) ||
      !arg_int_array(req, "fds", targets, 2, &count, f))
    return false;
  if (count == 1) return bad_arg(f, "fds needs two numbers");
  if (pipe2(fds, flags) < 0) return fail(f, errno, "pipe2");
  if (!place_fds(fds, targets, 2, flags & O_CLOEXEC, f)) {
    close_all(fds, 2);
    return false;
  }
  return pack_pair(pk, fds);
}

/* socketpair {domain = AF_UNIX, type, protocol = 0, fds?: [a, b]} -> [a, b] */
bool op_socketpair(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int domain, type, protocol, fds[2];
  int64_t targets[2] = {-1, -1};
  size_t count;
  if (!arg_int(req, "domain", false, AF_UNIX, &domain, f) ||
      !arg_int(req, "type", true, 0, &type, f) ||
      !arg_int(req, "protocol", false, 0, &protocol, f) ||
      !arg_int_array(req, "fds", targets, 2, &count, f))
    return false;
  if (count == 1) return bad_arg(f, "fds needs two numbers");
  if (socketpair(domain, type, protocol, fds) < 0) return fail(f, errno, "socketpair");
  if (!place_fds(fds, targets, 2, type & SOCK_CLOEXEC, f)) {
    close_all(fds, 2);
    return false;
  }
  return pack_pair(pk, fds);
}
