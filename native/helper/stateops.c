/* Task-state ops of the helper: directories, a namespace to join, umask, rlimits, prctl, signal
 * dispositions and mask, and the scratch mapping the remote-syscall stub runs from. Values are passed through
 * as numbers: a handler address is installed as given, it is only meaningful once the task's
 * memory is back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helper.h"

/* The kernel's own struct sigaction for rt_sigaction(2) on x86-64 (not glibc's). */
struct kernel_sigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

static bool path_op(const msgpack_object *req, msgpack_packer *pk, failure *f,
                    int (*call)(const char *), const char *name) {
  char path[PATH_MAX];
  if (!arg_str(req, "path", path, sizeof path, f)) return false;
  if (call(path) < 0) return fail(f, errno, name);
  msgpack_pack_int(pk, 0);
  return true;
}

bool op_chdir(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  return path_op(req, pk, f, chdir, "chdir");
}

bool op_chroot(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  return path_op(req, pk, f, chroot, "chroot");
}

bool op_fchdir(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int fd;
  if (!arg_int(req, "fd", true, 0, &fd, f)) return false;
  if (fchdir(fd) < 0) return fail(f, errno, "fchdir");
  msgpack_pack_int(pk, 0);
  return true;
}

/* setns {path, nstype} -> 0: joins the namespace a file names (/proc/PID/ns/net, a bind
 * mount of one such as /run/netns/NAME); the helper and what it forks afterwards are in it. */
bool op_setns(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  char path[PATH_MAX];
  int nstype;
  if (!arg_str(req, "path", path, sizeof path, f) || !arg_int(req, "nstype", true, 0, &nstype, f)) return false;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(f, errno, "open");
  int rc = setns(fd, nstype);
  int err = errno;
  close(fd);
  if (rc < 0) return fail(f, err, "setns");
  msgpack_pack_int(pk, 0);
  return true;
}

/* umask {mask} -> the previous mask */
bool op_umask(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int mask;
  if (!arg_int(req, "mask", true, 0, &mask, f)) return false;
  msgpack_pack_int(pk, umask((mode_t)mask & 0777));
  return true;
}

/* RLIM_INFINITY travels as -1 both ways. */
static void pack_limit(msgpack_packer *pk, rlim_t v) {
  if (v == RLIM_INFINITY) msgpack_pack_int(pk, -1);
  else msgpack_pack_uint64(pk, v);
}

/* prlimit {pid = 0, resource, cur?, max?} -> previous {cur, max}; without cur/max it only reads.
 * Raising a hard limit needs CAP_SYS_RESOURCE, which this machine kind lacks (EPERM). */
bool op_prlimit(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int pid, resource;
  uint64_t cur, max;
  if (!arg_int(req, "pid", false, 0, &pid, f) || !arg_int(req, "resource", true, 0, &resource, f))
    return false;
  bool setting = arg(req, "cur") || arg(req, "max");
  struct rlimit old, wanted;
  if (setting) {
    if (!arg_u64(req, "cur", true, 0, &cur, f) || !arg_u64(req, "max", true, 0, &max, f))
      return false;
    wanted.rlim_cur = cur;
    wanted.rlim_max = max;
  }
  if (prlimit(pid, resource, setting ? &wanted : NULL, &old) < 0) return fail(f, errno, "prlimit64");
  msgpack_pack_map(pk, 2);
  pack_key(pk, "cur");
  pack_limit(pk, old.rlim_cur);
  pack_key(pk, "max");
  pack_limit(pk, old.rlim_max);
  return true;
}

/* setrlimit {resource, cur, max}: prlimit on the helper itself. */
bool op_setrlimit(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  if (!arg(req, "cur") || !arg(req, "max")) return bad_arg(f, "cur and max");
  if (arg(req, "pid")) return bad_arg(f, "pid: use prlimit");
  return op_prlimit(req, pk, f);
}

/* prctl {option, a2..a5 = 0} -> the call's result */
bool op_prctl(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int option;
  uint64_t a[4];
  if (!arg_int(req, "option", true, 0, &option, f) || !arg_u64(req, "a2", false, 0, &a[0], f) ||
      !arg_u64(req, "a3", false, 0, &a[1], f) || !arg_u64(req, "a4", false, 0, &a[2], f) ||
      !arg_u64(req, "a5", false, 0, &a[3], f))
    return false;
  long got = prctl(option, a[0], a[1], a[2], a[3]);
  if (got < 0) return fail(f, errno, "prctl");
  msgpack_pack_int64(pk, got);
  return true;
}

static void pack_action(msgpack_packer *pk, const struct kernel_sigaction *act) {
  msgpack_pack_map(pk, 4);
  pack_key(pk, "handler");
  msgpack_pack_uint64(pk, act->handler);
  pack_key(pk, "flags");
  msgpack_pack_uint64(pk, act->flags);
  pack_key(pk, "restorer");
  msgpack_pack_uint64(pk, act->restorer);
  pack_key(pk, "mask");
  msgpack_pack_uint64(pk, act->mask);
}

/* rt_sigaction {sig, handler?, flags = 0, restorer = 0, mask = 0} -> previous action; without
 * handler it only reads. */
bool op_rt_sigaction(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int sig;
  struct kernel_sigaction act = {0}, old = {0};
  bool setting = arg(req, "handler") != NULL;
  if (!arg_int(req, "sig", true, 0, &sig, f) ||
      !arg_u64(req, "handler", false, 0, &act.handler, f) ||
      !arg_u64(req, "flags", false, 0, &act.flags, f) ||
      !arg_u64(req, "restorer", false, 0, &act.restorer, f) ||
      !arg_u64(req, "mask", false, 0, &act.mask, f))
    return false;
  if (syscall(SYS_rt_sigaction, sig, setting ? &act : NULL, &old, sizeof act.mask) < 0)
    return fail(f, errno, "rt_sigaction");
  pack_action(pk, &old);
  return true;
}

/* sigprocmask {how = SIG_SETMASK, set?} -> previous mask (64 bits); without set it only reads. */
bool op_sigprocmask(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int how;
  uint64_t set, old = 0;
  bool setting = arg(req, "set") != NULL;
  if (!arg_int(req, "how", false, SIG_SETMASK, &how, f) || !arg_u64(req, "set", false, 0, &set, f))
    return false;
  if (syscall(SYS_rt_sigprocmask, how, setting ? &set : NULL, &old, sizeof set) < 0)
    return fail(f, errno, "rt_sigprocmask");
  msgpack_pack_uint64(pk, old);
  return true;
}

/* map_scratch {addr, size, code} -> addr. RWX so the stub's command list can live beside it;
 * MAP_FIXED_NOREPLACE so an address that is not free fails with EEXIST instead of clobbering. */
bool op_map_scratch(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  uint64_t addr, size;
  const char *code;
  size_t code_len;
  if (!arg_u64(req, "addr", true, 0, &addr, f) || !arg_u64(req, "size", true, 0, &size, f) ||
      !arg_bin(req, "code", &code, &code_len, f))
    return false;
  if (code_len > size) return bad_arg(f, "code larger than size");
  void *at = mmap((void *)(uintptr_t)addr, size, PROT_READ | PROT_WRITE | PROT_EXEC,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (at == MAP_FAILED) return fail(f, errno, "mmap");
  if ((uintptr_t)at != addr) { /* kernels before 4.17 treat the flag as a hint */
    munmap(at, size);
    return fail(f, EEXIST, "mmap");
  }
  memcpy(at, code, code_len);
  msgpack_pack_uint64(pk, addr);
  return true;
}
