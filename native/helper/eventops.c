/* Ops of the helper that make the kernel's event objects a task keeps in fds: eventfd,
 * signalfd, timerfd, epoll, inotify and memfd. Each creates one object (or changes one) and
 * lands it at the task's exact fd number; the TypeScript kinds in src/resources/ decide what to
 * create from the images. Protocol: docs/ARCHITECTURE.md ("The per-task helper and its channel"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

/* Moves a fresh fd to `target` (when >= 0) and packs the final number. */
static bool land(int fd, int64_t target, bool cloexec, msgpack_packer *pk, failure *f) {
  if (target >= 0 && !place_fds(&fd, &target, 1, cloexec, f)) {
    close(fd);
    return false;
  }
  msgpack_pack_int(pk, fd);
  return true;
}

/* Claims the target number before the object is made, so the kernel never hands it out. */
static bool read_target(const msgpack_object *req, int64_t *target, failure *f) {
  if (!arg_i64(req, "fd", false, -1, target, f)) return false;
  if (*target >= INT_MAX) return bad_arg(f, "fd out of range");
  return *target < 0 || claim_fd((int)*target, (int)*target, f);
}

/* eventfd {count = 0, flags = 0, fd?} -> fd (flags: EFD_SEMAPHORE|EFD_NONBLOCK|EFD_CLOEXEC) */
bool op_eventfd(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  uint64_t count;
  int flags;
  int64_t target;
  if (!arg_u64(req, "count", false, 0, &count, f) || !arg_int(req, "flags", false, 0, &flags, f) ||
      !read_target(req, &target, f))
    return false;
  /* eventfd(2) takes an unsigned int: a larger counter is added with a write. */
  int fd = eventfd(0, flags);
  if (fd < 0) return fail(f, errno, "eventfd");
  if (count && write(fd, &count, sizeof count) != sizeof count) {
    int err = errno;
    close(fd);
    return fail(f, err, "write");
  }
  return land(fd, target, flags & EFD_CLOEXEC, pk, f);
}

/* signalfd {mask (u64, bit n-1 = signal n), flags = 0, fd?} -> fd */
bool op_signalfd(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  uint64_t mask;
  int flags;
  int64_t target;
  if (!arg_u64(req, "mask", true, 0, &mask, f) || !arg_int(req, "flags", false, 0, &flags, f) ||
      !read_target(req, &target, f))
    return false;
  /* The raw syscall takes the kernel's 8-byte sigset, exactly what the image holds. */
  int fd = (int)syscall(SYS_signalfd4, -1, &mask, sizeof mask, flags);
  if (fd < 0) return fail(f, errno, "signalfd4");
  return land(fd, target, flags & SFD_CLOEXEC, pk, f);
}

/* timerfd {clockid, flags = 0, settimeFlags = 0, value: [s, ns], interval: [s, ns], ticks = 0,
 * fd?} -> fd. `value` is the time left; with TFD_TIMER_ABSTIME it is made absolute again
 * against the clock now (the deadline moves by the time the task spent dumped). */
bool op_timerfd(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int clockid, flags, settime_flags;
  int64_t value[2] = {0, 0}, interval[2] = {0, 0}, target;
  uint64_t ticks;
  size_t n;
  if (!arg_int(req, "clockid", true, 0, &clockid, f) || !arg_int(req, "flags", false, 0, &flags, f) ||
      !arg_int(req, "settimeFlags", false, 0, &settime_flags, f) ||
      !arg_int_array(req, "value", value, 2, &n, f) ||
      !arg_int_array(req, "interval", interval, 2, &n, f) ||
      !arg_u64(req, "ticks", false, 0, &ticks, f) || !read_target(req, &target, f))
    return false;
  int fd = timerfd_create(clockid, flags);
  if (fd < 0) return fail(f, errno, "timerfd_create");
  struct itimerspec its = {.it_value = {value[0], value[1]}, .it_interval = {interval[0], interval[1]}};
  const char *failed = NULL;
  if ((settime_flags & TFD_TIMER_ABSTIME) && (its.it_value.tv_sec || its.it_value.tv_nsec)) {
    struct timespec now;
    if (clock_gettime(clockid, &now) < 0) failed = "clock_gettime";
    its.it_value.tv_sec += now.tv_sec;
    its.it_value.tv_nsec += now.tv_nsec;
    if (its.it_value.tv_nsec >= 1000000000L) {
      its.it_value.tv_sec++;
      its.it_value.tv_nsec -= 1000000000L;
    }
  }
  if (!failed && timerfd_settime(fd, settime_flags, &its, NULL) < 0) failed = "timerfd_settime";
  if (!failed && ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks) < 0) failed = "ioctl(TFD_IOC_SET_TICKS)";
  if (failed) {
    int err = errno;
    close(fd);
    return fail(f, err, failed);
  }
  return land(fd, target, flags & TFD_CLOEXEC, pk, f);
}

/* epoll_create {flags = 0, fd?} -> fd */
bool op_epoll_create(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int flags;
  int64_t target;
  if (!arg_int(req, "flags", false, 0, &flags, f) || !read_target(req, &target, f)) return false;
  int fd = epoll_create1(flags);
  if (fd < 0) return fail(f, errno, "epoll_create1");
  return land(fd, target, flags & EPOLL_CLOEXEC, pk, f);
}

/* epoll_ctl {epfd, ctl = EPOLL_CTL_ADD, fd, events, data (u64)} -> 0 ("op" names the helper op) */
bool op_epoll_ctl(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int epfd, op, fd;
  uint64_t events, data;
  if (!arg_int(req, "epfd", true, 0, &epfd, f) || !arg_int(req, "ctl", false, EPOLL_CTL_ADD, &op, f) ||
      !arg_int(req, "fd", true, 0, &fd, f) || !arg_u64(req, "events", true, 0, &events, f) ||
      !arg_u64(req, "data", false, 0, &data, f))
    return false;
  struct epoll_event ev = {.events = (uint32_t)events, .data.u64 = data};
  if (epoll_ctl(epfd, op, fd, &ev) < 0) return fail(f, errno, "epoll_ctl");
  msgpack_pack_int(pk, 0);
  return true;
}

/* inotify_init {flags = 0, fd?} -> fd */
bool op_inotify_init(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int flags;
  int64_t target;
  if (!arg_int(req, "flags", false, 0, &flags, f) || !read_target(req, &target, f)) return false;
  int fd = inotify_init1(flags);
  if (fd < 0) return fail(f, errno, "inotify_init1");
  return land(fd, target, flags & IN_CLOEXEC, pk, f);
}

/* inotify_add_watch {fd, path, mask, wd} -> wd. Watch descriptors are handed out one after the
 * other and never reused at once, so a watch is added and removed again until the kernel gives
 * the number the task had (the same dance CRIU does). */
bool op_inotify_add_watch(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  char path[PATH_MAX];
  int fd, wd_wanted;
  uint64_t mask;
  if (!arg_int(req, "fd", true, 0, &fd, f) || !arg_str(req, "path", path, sizeof path, f) ||
      !arg_u64(req, "mask", true, 0, &mask, f) || !arg_int(req, "wd", true, 0, &wd_wanted, f))
    return false;
  for (;;) {
    int wd = inotify_add_watch(fd, path, (uint32_t)mask);
    if (wd < 0) return fail(f, errno, "inotify_add_watch");
    if (wd == wd_wanted) break;
    if (wd > wd_wanted) {
      f->detail = "the kernel gave a higher watch descriptor than the image's";
      return fail(f, EEXIST, "inotify_add_watch");
    }
    if (inotify_rm_watch(fd, wd) < 0) return fail(f, errno, "inotify_rm_watch");
  }
  msgpack_pack_int(pk, wd_wanted);
  return true;
}

/* memfd_create {name, flags = 0, fd?} -> fd (MFD_ALLOW_SEALING is the caller's to pass) */
bool op_memfd_create(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  char name[256];
  int flags;
  int64_t target;
  if (!arg_str(req, "name", name, sizeof name, f) || !arg_int(req, "flags", false, 0, &flags, f) ||
      !read_target(req, &target, f))
    return false;
  int fd = memfd_create(name, (unsigned)flags);
  if (fd < 0) return fail(f, errno, "memfd_create");
  return land(fd, target, flags & MFD_CLOEXEC, pk, f);
}

/* getfd {pid, targetFd, fd?, flags = 0} -> fd: a copy of another task's fd (pidfd_getfd), for
 * objects one task created and others share; flags O_CLOEXEC or 0 (pidfd_getfd always sets it). */
bool op_getfd(const msgpack_object *req, msgpack_packer *pk, failure *f) {
  int pid, target_fd, flags;
  int64_t target;
  if (!arg_int(req, "pid", true, 0, &pid, f) || !arg_int(req, "targetFd", true, 0, &target_fd, f) ||
      !arg_int(req, "flags", false, 0, &flags, f) || !read_target(req, &target, f))
    return false;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return fail(f, errno, "pidfd_open");
  int fd = (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0);
  int err = errno;
  close(pidfd);
  if (fd < 0) return fail(f, err, "pidfd_getfd");
  if (target < 0 && !(flags & O_CLOEXEC)) fcntl(fd, F_SETFD, 0);
  return land(fd, target, flags & O_CLOEXEC, pk, f);
}
