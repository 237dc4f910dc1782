/* Process-level ops of the helper: fork a child task with an exact PID (clone3 + set_tid), its
 * session and group, identity, waiting, signals, and the two ops that end the request loop
 * (park, exit). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helper.h"

/* Namespace flags a forked task may ask for, CLONE_FS (a task that shared its parent's
 * cwd/root/umask) and CLONE_FILES (one fd table); everything else would break the fork-like clone. */
#define FORK_ALLOWED_FLAGS                                                                   \
  (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
   CLONE_NEWNET | CLONE_NEWTIME | CLONE_FS | CLONE_FILES)
#define MAX_PID_NS_LEVEL 32

bool op_getpid(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  (void)req;
  (void)f;
  msgpack_pack_map(pk, 6);
  pack_key(pk, "channelFd");
  msgpack_pack_int(pk, helper.channel_fd);
  pack_key(pk, "pid");
  msgpack_pack_int(pk, getpid());
  pack_key(pk, "ppid");
  msgpack_pack_int(pk, getppid());
  pack_key(pk, "pgid");
  msgpack_pack_int(pk, getpgid(0));
  pack_key(pk, "sid");
  msgpack_pack_int(pk, getsid(0));
  pack_key(pk, "rseq");
  pack_str(pk, helper.rseq);
  return true;
}

/* The child side of fork: keep only its own channel, die with its parent, serve requests. */
static void become_child(int parent_end, int own_end, int parent_pidfd, bool keep_fds) {
  close(helper.channel_fd);
  close(parent_end);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* The parent helper may have died before PDEATHSIG was armed. */
  struct pollfd p = {.fd = parent_pidfd, .events = POLLIN};
  if (poll(&p, 1, 0) != 0) _exit(7);
  close(parent_pidfd);
  helper.channel_fd = move_channel_high(own_end);
  if (!keep_fds) drop_fds_except_channel();
  serve_forever();
}

/* The child side of a CLONE_FILES fork: the table is the parent's too, so it closes nothing (a
 * close would take the parent's fd, or a number the parent reuses later); its channel end was
 * already moved to its own high number by the parent. The parent-death check uses getppid
 * because no pidfd of the parent may be left in the shared table. */
static void become_sharing_child(int own_channel, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(7);
  helper.channel_fd = own_channel;
  serve_forever();
}

/* Moves an fd this helper keeps for the orchestrator above the task fd range: a task sharing its
 * fd table (CLONE_FILES) may be placing its own fds on low numbers at the same moment, and the
 * orchestrator's pidfd_getfd copy must find the object answered, not a task fd put there. */
static int keep_high(int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, HELPER_CHANNEL_FD_BASE);
  if (high < 0) return fd; /* the low number still works while nobody places fds there */
  close(fd);
  return high;
}

/* The fork answer: the child's PID, this helper's end of the child's channel, and its pidfd. */
static bool answer_fork(msgpack_packer *pk, long child, int channel_fd, int pidfd) {
  channel_fd = keep_high(channel_fd);
  pidfd = keep_high(pidfd);
  msgpack_pack_map(pk, 3);
  pack_key(pk, "pid");
  msgpack_pack_int64(pk, child);
  pack_key(pk, "channelFd");
  msgpack_pack_int(pk, channel_fd);
  pack_key(pk, "pidfd");
  msgpack_pack_int(pk, pidfd);
  return true;
}

/* fork with CLONE_FILES: the child's channel end sits at its own high fd (distinct from this
 * helper's channel) before the clone, and this side never closes it afterwards. */
static bool fork_sharing_files(struct clone_args *ca, msgpack_packer *pk, failure *f) {
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) < 0)
    return fail(f, errno, "socketpair");
  int child_end = fcntl(ends[1], F_DUPFD_CLOEXEC, HELPER_CHANNEL_FD_BASE);
  int err = errno;
  close(ends[1]);
  if (child_end < 0) {
    close(ends[0]);
    return fail(f, err, "fcntl");
  }
  pid_t parent = getpid();
  int child_pidfd = -1;
  ca->pidfd = (uint64_t)(uintptr_t)&child_pidfd;
  long child = syscall(SYS_clone3, ca, sizeof *ca);
  if (child == 0) become_sharing_child(child_end, parent);
  err = errno;
  if (child < 0) {
    close(ends[0]);
    close(child_end);
    return fail(f, err, "clone3");
  }
  return answer_fork(pk, child, ends[0], child_pidfd);
}

/* fork {pid?, flags?, setTid?, keepFds?} -> {pid, channelFd, pidfd}. `pid` is the PID wanted in
 * the innermost PID namespace of the child (set_tid = [pid]); `setTid` gives one entry per
 * level instead, innermost first. channelFd and pidfd stay open in this helper until the
 * orchestrator has taken copies (pidfd_getfd) and sent close for both. */
bool op_fork(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int64_t pid, flags, set_tid_arg[MAX_PID_NS_LEVEL];
  size_t levels;
  if (!arg_i64(req, "pid", false, 0, &pid, f) || !arg_i64(req, "flags", false, 0, &flags, f) ||
      !arg_int_array(req, "setTid", set_tid_arg, MAX_PID_NS_LEVEL, &levels, f))
    return false;
  const msgpack_object *keep = arg(req, "keepFds");
  bool keep_fds = keep && keep->type == MSGPACK_OBJECT_BOOLEAN && keep->via.boolean;
  if (flags & ~(int64_t)FORK_ALLOWED_FLAGS)
    return bad_arg(f, "flags: only CLONE_NEW*, CLONE_FS and CLONE_FILES allowed");
  pid_t set_tid[MAX_PID_NS_LEVEL];
  for (size_t i = 0; i < levels; i++) set_tid[i] = (pid_t)set_tid_arg[i];
  if (levels == 0 && pid > 0) {
    set_tid[0] = (pid_t)pid;
    levels = 1;
  }

  if (flags & CLONE_FILES) {
    struct clone_args shared = {
        .flags = (uint64_t)flags | CLONE_PIDFD,
        .exit_signal = SIGCHLD,
        .set_tid = levels ? (uint64_t)(uintptr_t)set_tid : 0,
        .set_tid_size = levels,
    };
    return fork_sharing_files(&shared, pk, f);
  }

  int ends[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) < 0)
    return fail(f, errno, "socketpair");
  int self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (self_pidfd < 0) {
    int err = errno;
    close(ends[0]);
    close(ends[1]);
    return fail(f, err, "pidfd_open");
  }
  int child_pidfd = -1;
  struct clone_args ca = {
      .flags = (uint64_t)flags | CLONE_PIDFD,
      .pidfd = (uint64_t)(uintptr_t)&child_pidfd,
      .exit_signal = SIGCHLD,
      .set_tid = levels ? (uint64_t)(uintptr_t)set_tid : 0,
      .set_tid_size = levels,
  };
  long child = syscall(SYS_clone3, &ca, sizeof ca);
  if (child == 0) become_child(ends[0], ends[1], self_pidfd, keep_fds);
  int err = errno;
  close(ends[1]);
  close(self_pidfd);
  if (child < 0) {
    close(ends[0]);
    return fail(f, err, "clone3");
  }
  return answer_fork(pk, child, ends[0], child_pidfd);
}

bool op_setsid(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  (void)req;
  pid_t sid = setsid();
  if (sid < 0) return fail(f, errno, "setsid");
  msgpack_pack_int(pk, sid);
  return true;
}

/* setpgid {pid = 0, pgid = 0} */
bool op_setpgid(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int pid, pgid;
  if (!arg_int(req, "pid", false, 0, &pid, f) || !arg_int(req, "pgid", false, 0, &pgid, f))
    return false;
  if (setpgid(pid, pgid) < 0) return fail(f, errno, "setpgid");
  msgpack_pack_int(pk, 0);
  return true;
}

/* set_ctty {fd}: the terminal at fd becomes the controlling terminal of this session leader. */
bool op_set_ctty(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd;
  if (!arg_int(req, "fd", true, 0, &fd, f)) return false;
  if (ioctl(fd, TIOCSCTTY, 0) < 0) return fail(f, errno, "ioctl TIOCSCTTY");
  msgpack_pack_int(pk, 0);
  return true;
}

/* set_fg_pgrp {fd, pgrp}: the foreground process group of this task's controlling terminal. */
bool op_set_fg_pgrp(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd, pgrp;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_int(req, "pgrp", true, 0, &pgrp, f)) return false;
  if (ioctl(fd, TIOCSPGRP, &pgrp) < 0) return fail(f, errno, "ioctl TIOCSPGRP");
  msgpack_pack_int(pk, 0);
  return true;
}

/* exit {status}: answers, then exit_group(status) (recreates zombies). */
bool op_exit(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int status;
  if (!arg_int(req, "status", false, 0, &status, f)) return false;
  helper.after = AFTER_EXIT;
  helper.exit_status = status;
  msgpack_pack_nil(pk);
  return true;
}

/* park: answers, then blocks in pause() until the tracer seizes the helper. */
bool op_park(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  (void)req;
  (void)f;
  helper.after = AFTER_PARK;
  msgpack_pack_nil(pk);
  return true;
}

/* waitpid {pid, flags = 0} -> {pid, status, exitCode, signal} (pid 0 with WNOHANG and nothing). */
bool op_waitpid(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int pid, flags, status = 0;
  if (!arg_int(req, "pid", true, 0, &pid, f) || !arg_int(req, "flags", false, 0, &flags, f))
    return false;
  pid_t got;
  do got = waitpid(pid, &status, flags);
  while (got < 0 && errno == EINTR);
  if (got < 0) return fail(f, errno, "wait4");
  msgpack_pack_map(pk, 4);
  pack_key(pk, "pid");
  msgpack_pack_int(pk, got);
  pack_key(pk, "status");
  msgpack_pack_int(pk, status);
  pack_key(pk, "exitCode");
  if (got > 0 && WIFEXITED(status)) msgpack_pack_int(pk, WEXITSTATUS(status));
  else msgpack_pack_nil(pk);
  pack_key(pk, "signal");
  if (got > 0 && WIFSIGNALED(status)) msgpack_pack_int(pk, WTERMSIG(status));
  else msgpack_pack_nil(pk);
  return true;
}

bool op_kill(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int pid, sig;
  if (!arg_int(req, "pid", true, 0, &pid, f) || !arg_int(req, "sig", true, 0, &sig, f))
    return false;
  if (kill(pid, sig) < 0) return fail(f, errno, "kill");
  msgpack_pack_int(pk, 0);
  return true;
}
