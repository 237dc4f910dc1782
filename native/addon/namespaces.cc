// Files read or written from inside another task's namespace: /proc/sys/kernel/hostname shows
// the UTS namespace of the reader, /proc/sys/kernel/msgmax and /proc/sysvipc/* its IPC
// namespace. Each call runs on a thread of its own that setns()es and ends with the call:
// setns changes only the calling thread's namespaces, and a libuv worker or Node's main thread
// must never be left inside another namespace.
#include <napi.h>

#include "in-namespace.h"
#include "throw-errno.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <utility>
#include <vector>

bool EnterNamespace(const std::string& nsPath, int nstype, NsFailure& failure) {
  int fd = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    failure = {"open", errno, nsPath};
    return false;
  }
  int rc = setns(fd, nstype);
  int err = errno;
  close(fd);
  if (rc < 0) failure = {"setns", err, nsPath};
  return rc == 0;
}

Napi::Value ThrowNsFailure(Napi::Env env, const NsFailure& failure) {
  Napi::Error error = ErrnoError(env, failure.syscall, failure.err);
  error.Set("path", Napi::String::New(env, failure.what));
  error.Set("message", Napi::String::New(env, error.Message() + " (" + failure.what + ")"));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

namespace {

bool ReadWhole(const std::string& path, std::string& out, NsFailure& failure) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    failure = {"open", errno, path};
    return false;
  }
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failure = {"read", errno, path};
      close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  close(fd);
  return true;
}

bool WriteWhole(const std::string& path, const std::string& data, NsFailure& failure) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    failure = {"open", errno, path};
    return false;
  }
  // A sysctl takes its value in one write.
  ssize_t n = write(fd, data.data(), data.size());
  int err = errno;
  close(fd);
  if (n < 0) failure = {"write", err, path};
  else if ((size_t)n != data.size()) failure = {"write", EIO, path};
  return failure.syscall == nullptr;
}

bool NamespaceArgs(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsArray()) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// readInNamespace(nsPath, nstype, paths) -> string[]: each file read whole by a thread that
// entered the namespace at nsPath (/proc/PID/ns/KIND) first. Throws the errno Error of the first
// failure, with `path`.
Napi::Value ReadInNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!NamespaceArgs(info, "readInNamespace(nsPath: string, nstype: number, paths: string[])")) return env.Undefined();
  std::string nsPath = info[0].As<Napi::String>();
  int nstype = info[1].As<Napi::Number>().Int32Value();
  Napi::Array list = info[2].As<Napi::Array>();
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < list.Length(); i++) paths.push_back(list.Get(i).As<Napi::String>());
  std::vector<std::string> contents(paths.size());
  NsFailure failure;
  std::thread([&] {
    if (!EnterNamespace(nsPath, nstype, failure)) return;
    for (size_t i = 0; i < paths.size(); i++)
      if (!ReadWhole(paths[i], contents[i], failure)) return;
  }).join();
  if (failure.syscall) return ThrowNsFailure(env, failure);
  Napi::Array out = Napi::Array::New(env, contents.size());
  for (size_t i = 0; i < contents.size(); i++) out.Set(i, Napi::String::New(env, contents[i]));
  return out;
}

// writeInNamespace(nsPath, nstype, [[path, text], ...], euid?): each text written in one write by
// a thread inside the namespace, in order; with `euid`, the thread takes that effective uid
// first (its own only: the raw syscall, not glibc's, which would change every thread). An IPC
// namespace of another user namespace lets only that namespace's root write its limits.
// Throws the errno Error of the first failure, with `path`.
Napi::Value WriteInNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!NamespaceArgs(info, "writeInNamespace(nsPath: string, nstype: number, writes: [string, string][], euid?: number)")) return env.Undefined();
  int euid = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
  std::string nsPath = info[0].As<Napi::String>();
  int nstype = info[1].As<Napi::Number>().Int32Value();
  Napi::Array list = info[2].As<Napi::Array>();
  std::vector<std::pair<std::string, std::string>> writes;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Array pair = list.Get(i).As<Napi::Array>();
    writes.emplace_back(pair.Get(0u).As<Napi::String>(), pair.Get(1u).As<Napi::String>());
  }
  NsFailure failure;
  std::thread([&] {
    if (!EnterNamespace(nsPath, nstype, failure)) return;
    if (euid >= 0 && syscall(SYS_setresuid, -1, euid, -1) < 0) {
      failure = {"setresuid", errno, "euid " + std::to_string(euid)};
      return;
    }
    for (const auto& [path, text] : writes)
      if (!WriteWhole(path, text, failure)) return;
  }).join();
  if (failure.syscall) return ThrowNsFailure(env, failure);
  return env.Undefined();
}

// socketInNamespace(nsPath, family, type, protocol) -> fd: a close-on-exec socket made by a
// thread inside the network namespace at nsPath; it stays of that namespace (sock_diag answers
// for it, SIOCSIFFLAGS acts on its devices) whichever thread uses it.
Napi::Value SocketInNamespace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "socketInNamespace(nsPath: string, family: number, type: number, protocol: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string nsPath = info[0].As<Napi::String>();
  int family = info[1].As<Napi::Number>().Int32Value();
  int type = info[2].As<Napi::Number>().Int32Value();
  int protocol = info[3].As<Napi::Number>().Int32Value();
  int fd = -1;
  NsFailure failure;
  std::thread([&] {
    if (!EnterNamespace(nsPath, CLONE_NEWNET, failure)) return;
    fd = socket(family, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) failure = {"socket", errno, nsPath};
  }).join();
  if (failure.syscall) return ThrowNsFailure(env, failure);
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitNamespaces(Napi::Env env, Napi::Object exports) {
  exports.Set("socketInNamespace", Napi::Function::New(env, SocketInNamespace));
  exports.Set("readInNamespace", Napi::Function::New(env, ReadInNamespace));
  exports.Set("writeInNamespace", Napi::Function::New(env, WriteInNamespace));
}
