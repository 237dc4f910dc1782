// fd-level calls of the addon: socketpairs for helper channels, pidfds (open, getfd, signal) and
// fd passing with SCM_RIGHTS. Every function is synchronous, one syscall-level job, keeps no
// state (safe from worker threads) and throws a JS Error carrying code, errno and syscall; but
// readAhead, which runs on a libuv worker so the disk reads ahead while the caller goes on; and
// ioctlBuffer, the struct-argument ioctls (terminals, network devices).
#include <napi.h>

#include "throw-errno.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

// The largest fd batch one sendFds/recvFds moves: SCM_RIGHTS itself is capped at 253 per message.
constexpr int kMaxFdsPerMessage = 253;

Napi::Value ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool IntArg(const Napi::CallbackInfo& info, size_t index, const char* name, int* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowType(info.Env(), std::string("argument ") + name + " must be a number");
    return false;
  }
  *out = info[index].As<Napi::Number>().Int32Value();
  return true;
}

// socketpair(type, cloexec = true) -> [fd, fd]; AF_UNIX only.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "type must be a string");
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  int type;
  if (kind == "seqpacket") type = SOCK_SEQPACKET;
  else if (kind == "stream") type = SOCK_STREAM;
  else if (kind == "dgram") type = SOCK_DGRAM;
  else return ThrowType(env, "type must be 'seqpacket', 'stream' or 'dgram'");
  bool cloexec = info.Length() < 2 || info[1].ToBoolean().Value();
  int fds[2];
  if (socketpair(AF_UNIX, type | (cloexec ? SOCK_CLOEXEC : 0), 0, fds) < 0)
    return ThrowErrno(env, "socketpair", errno);
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fds[0]));
  pair.Set(1u, Napi::Number::New(env, fds[1]));
  return pair;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!IntArg(info, 0, "fd", &fd)) return info.Env().Undefined();
  if (close(fd) < 0) return ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

// pidfdOpen(pid) -> pidfd (O_CLOEXEC is implied by the kernel).
Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int pid;
  if (!IntArg(info, 0, "pid", &pid)) return info.Env().Undefined();
  long fd = syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return ThrowErrno(info.Env(), "pidfd_open", errno);
  return Napi::Number::New(info.Env(), fd);
}

// pidfdGetfd(pidfd, targetFd) -> a copy of the target's fd in this process (close-on-exec).
Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  int pidfd, target;
  if (!IntArg(info, 0, "pidfd", &pidfd) || !IntArg(info, 1, "targetFd", &target))
    return info.Env().Undefined();
  long fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);
  if (fd < 0) return ThrowErrno(info.Env(), "pidfd_getfd", errno);
  return Napi::Number::New(info.Env(), fd);
}

// The head of the kernel's struct pidfd_info (Linux 6.13+, PIDFD_INFO_SIZE_VER0 = 64 bytes).
struct PidfdInfo {
  uint64_t mask, cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exitCode;
};
constexpr uint64_t kPidfdInfoPid = 1;
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfo);

// pidfdPid(pidfd) -> the process's PID in this process's PID namespace (ioctl PIDFD_GET_INFO),
// what /proc/self/fdinfo/<pidfd> says as "Pid:" without opening and parsing it. ENOTTY on a
// kernel before 6.13 (the caller reads fdinfo then); ESRCH once the process is gone.
Napi::Value PidfdPid(const Napi::CallbackInfo& info) {
  int pidfd;
  if (!IntArg(info, 0, "pidfd", &pidfd)) return info.Env().Undefined();
  PidfdInfo got = {};
  got.mask = kPidfdInfoPid;
  if (ioctl(pidfd, kPidfdGetInfo, &got) < 0) return ThrowErrno(info.Env(), "ioctl(PIDFD_GET_INFO)", errno);
  return Napi::Number::New(info.Env(), got.pid);
}

Napi::Value PidfdSendSignal(const Napi::CallbackInfo& info) {
  int pidfd, sig;
  if (!IntArg(info, 0, "pidfd", &pidfd) || !IntArg(info, 1, "sig", &sig))
    return info.Env().Undefined();
  if (syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) < 0)
    return ThrowErrno(info.Env(), "pidfd_send_signal", errno);
  return info.Env().Undefined();
}

// kcmp(list) -> Int32Array: list holds [pid1, pid2, type, idx1, idx2] per comparison, PIDs as
// crr sees them; each result is kcmp's 0/1/2/3, or -errno for a comparison that failed. crr
// asks itself (it may ptrace both) instead of running kcmp inside a task, where each batch cost
// a tracer round trip.
Napi::Value Kcmp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    return ThrowType(env, "kcmp(list): an Int32Array of [pid1, pid2, type, idx1, idx2] quintuples");
  Napi::Int32Array list = info[0].As<Napi::Int32Array>();
  size_t count = list.ElementLength() / 5;
  Napi::Int32Array out = Napi::Int32Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    const int32_t* q = list.Data() + i * 5;
    long r = syscall(SYS_kcmp, q[0], q[1], q[2], (unsigned long)(uint32_t)q[3], (unsigned long)(uint32_t)q[4]);
    out[i] = r < 0 ? -errno : (int32_t)r;
  }
  return out;
}

// kcmpEpollTarget(pid, epfd, tfd, fd) -> kcmp(pid, pid, KCMP_EPOLL_TFD, fd, {epfd, tfd, 0}): 0 when
// pid's fd is the file its epoll at epfd watches under fd number tfd, 1 or 2 when it is another
// file, -errno when it cannot say (EBADF: no fd there; ENOENT: no such target).
Napi::Value KcmpEpollTarget(const Napi::CallbackInfo& info) {
  int pid, epfd, tfd, fd;
  if (!IntArg(info, 0, "pid", &pid) || !IntArg(info, 1, "epfd", &epfd) || !IntArg(info, 2, "tfd", &tfd) || !IntArg(info, 3, "fd", &fd))
    return info.Env().Undefined();
  struct {
    uint32_t efd, tfd, toff;
  } slot = {(uint32_t)epfd, (uint32_t)tfd, 0};
  const int kKcmpEpollTfd = 7;
  long r = syscall(SYS_kcmp, pid, pid, kKcmpEpollTfd, (unsigned long)fd, (unsigned long)&slot);
  return Napi::Number::New(info.Env(), r < 0 ? -errno : r);
}

// sendFds(sock, fds, data?) -> bytes sent. One message; a byte of payload is always sent because
// a stream socket drops ancillary data that rides on an empty message.
Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock;
  if (!IntArg(info, 0, "sock", &sock)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArray()) return ThrowType(env, "fds must be an array");
  Napi::Array list = info[1].As<Napi::Array>();
  if (list.Length() > kMaxFdsPerMessage) return ThrowType(env, "too many fds for one message");
  std::vector<int> fds(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber()) return ThrowType(env, "fds must hold numbers");
    fds[i] = v.As<Napi::Number>().Int32Value();
  }
  char fallback = 0;
  struct iovec iov = {&fallback, 1};
  if (info.Length() > 2 && info[2].IsBuffer()) {
    Napi::Buffer<char> data = info[2].As<Napi::Buffer<char>>();
    if (data.Length() > 0) iov = {data.Data(), data.Length()};
  }
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t sent;
  do sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) return ThrowErrno(env, "sendmsg", errno);
  return Napi::Number::New(env, static_cast<double>(sent));
}

// recvFds(sock, maxFds, maxBytes = 4096, dontWait = false) -> {fds, data}. Received fds are
// close-on-exec. Blocks unless dontWait (then EAGAIN when nothing is queued).
Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock, maxFds, maxBytes = 4096;
  if (!IntArg(info, 0, "sock", &sock) || !IntArg(info, 1, "maxFds", &maxFds)) return env.Undefined();
  if (info.Length() > 2 && !info[2].IsUndefined() && !IntArg(info, 2, "maxBytes", &maxBytes))
    return env.Undefined();
  bool dontWait = info.Length() > 3 && info[3].ToBoolean().Value();
  if (maxFds < 0 || maxFds > kMaxFdsPerMessage) return ThrowType(env, "maxFds out of range");
  if (maxBytes < 1) return ThrowType(env, "maxBytes must be at least 1");
  std::vector<char> data(maxBytes);
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (maxFds > 0 ? maxFds : 1)));
  struct iovec iov = {data.data(), data.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t got;
  do got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (dontWait ? MSG_DONTWAIT : 0));
  while (got < 0 && errno == EINTR);
  if (got < 0) return ThrowErrno(env, "recvmsg", errno);
  Napi::Array fds = Napi::Array::New(env);
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.Set(fds.Length(), Napi::Number::New(env, fd));
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    // The kernel already installed the fds that fitted: close them so nothing leaks.
    for (uint32_t i = 0; i < fds.Length(); i++) close(fds.Get(i).As<Napi::Number>().Int32Value());
    return ThrowErrno(env, "recvmsg", EMSGSIZE);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("fds", fds);
  result.Set("data", Napi::Buffer<char>::Copy(env, data.data(), static_cast<size_t>(got)));
  return result;
}

// POSIX_FADV_WILLNEED over [offset, offset + length) in `step`-byte calls, off the main thread:
// the kernel reads at most its read-ahead window per call (the rest of a larger range is
// silently skipped), and a call blocks while the device queue is full, which is this thread's
// job to wait out instead of the task that copies the pages.
class ReadAheadWorker : public PromiseWorker {
 public:
  ReadAheadWorker(Napi::Env env, int fd, int64_t offset, int64_t length, int64_t step)
      : PromiseWorker(env), fd_(fd), offset_(offset), length_(length), step_(step) {}

  void Execute() override {
    for (int64_t at = offset_, end = offset_ + length_; at < end; at += step_) {
      int err = posix_fadvise(fd_, at, end - at < step_ ? end - at : step_, POSIX_FADV_WILLNEED);
      if (err != 0) return Fail("posix_fadvise", err);
    }
  }

 private:
  int fd_;
  int64_t offset_, length_, step_;
};

// readAhead(fd, offset, length, step) -> Promise<void>, settled when every call was made.
Napi::Value ReadAhead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  for (size_t i = 1; i < 4; i++)
    if (info.Length() <= i || !info[i].IsNumber()) return ThrowType(env, "offset, length and step must be numbers");
  int64_t offset = info[1].As<Napi::Number>().Int64Value();
  int64_t length = info[2].As<Napi::Number>().Int64Value();
  int64_t step = info[3].As<Napi::Number>().Int64Value();
  if (offset < 0 || length < 0 || step <= 0) return ThrowType(env, "offset and length must be >= 0, step > 0");
  return (new ReadAheadWorker(env, fd, offset, length, step))->Start();
}

// ioctlBuffer(fd, request, data) -> Buffer: an ioctl whose argument points at a copy of `data`
// (a struct the kernel reads, fills in, or both: termios, winsize, ifreq); the copy after the call.
Napi::Value IoctlBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!IntArg(info, 0, "fd", &fd)) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsBuffer()) return ThrowType(env, "ioctlBuffer(fd, request: number, data: Buffer)");
  unsigned long request = static_cast<unsigned long>(info[1].As<Napi::Number>().Int64Value());
  Napi::Buffer<uint8_t> data = info[2].As<Napi::Buffer<uint8_t>>();
  std::vector<uint8_t> copy(data.Data(), data.Data() + data.Length());
  copy.resize(copy.size() + 64);  // slack: a short struct never lets the kernel write past it
  if (ioctl(fd, request, copy.data()) < 0) return ThrowErrno(env, "ioctl", errno);
  return Napi::Buffer<uint8_t>::Copy(env, copy.data(), data.Length());
}

}  // namespace

void InitFds(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd, "pidfdGetfd"));
  exports.Set("pidfdPid", Napi::Function::New(env, PidfdPid, "pidfdPid"));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal, "pidfdSendSignal"));
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("kcmp", Napi::Function::New(env, Kcmp, "kcmp"));
  exports.Set("kcmpEpollTarget", Napi::Function::New(env, KcmpEpollTarget, "kcmpEpollTarget"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  exports.Set("readAhead", Napi::Function::New(env, ReadAhead, "readAhead"));
  exports.Set("ioctlBuffer", Napi::Function::New(env, IoctlBuffer, "ioctlBuffer"));
}
