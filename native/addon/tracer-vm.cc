// process_vm_readv/writev for JavaScript: synchronous, callable from any thread (they need no
// ptrace attachment, only PTRACE_MODE_ATTACH rights). A short transfer is an error (EFAULT with
// the byte count), so a caller never works on half a buffer by accident.
#include <errno.h>
#include <limits.h>
#include <sys/uio.h>

#include <vector>

#include "tracer.h"

namespace crr {
namespace {

bool throwFailure(Napi::Env env, const Failure& f) {
  toJsError(env, f).ThrowAsJavaScriptException();
  return false;
}

bool checkArgs(const Napi::CallbackInfo& info, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (info[i].IsUndefined()) {
      Napi::TypeError::New(info.Env(), "missing argument").ThrowAsJavaScriptException();
      return false;
    }
  return true;
}

uint64_t u64(Napi::Value v) {
  bool lossless;
  if (v.IsBigInt()) return v.As<Napi::BigInt>().Uint64Value(&lossless);
  return (uint64_t)v.As<Napi::Number>().Int64Value();
}

// Moves `len` bytes between local and remote iovecs, IOV_MAX remote pieces per call, resuming
// after partial transfers.
bool transfer(Napi::Env env, int pid, bool write, uint8_t* local, std::vector<struct iovec> remote) {
  const char* name = write ? "process_vm_writev" : "process_vm_readv";
  size_t done = 0, first = 0;
  while (first < remote.size()) {
    size_t count = std::min<size_t>(remote.size() - first, IOV_MAX);
    size_t want = 0;
    for (size_t i = first; i < first + count; i++) want += remote[i].iov_len;
    struct iovec l = {local + done, want};
    ssize_t n = write ? process_vm_writev(pid, &l, 1, &remote[first], count, 0)
                      : process_vm_readv(pid, &l, 1, &remote[first], count, 0);
    if (n < 0) return throwFailure(env, errnoFailure(errno, name, pid));
    if (n == 0 && want > 0)
      return throwFailure(env, errnoFailure(EFAULT, name, pid, "short transfer after " + std::to_string(done) + " bytes"));
    done += n;
    size_t left = n;  // skip the fully moved pieces, trim a partly moved one
    while (first < remote.size() && left >= remote[first].iov_len) left -= remote[first++].iov_len;
    if (left) {
      remote[first].iov_base = (uint8_t*)remote[first].iov_base + left;
      remote[first].iov_len -= left;
    }
  }
  return true;
}

Napi::Value ProcessVmRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!checkArgs(info, 3)) return env.Undefined();
  int pid = info[0].As<Napi::Number>().Int32Value();
  size_t len = (size_t)info[2].As<Napi::Number>().Int64Value();
  auto buf = Napi::Buffer<uint8_t>::New(env, len);
  if (!transfer(env, pid, false, buf.Data(), {{(void*)u64(info[1]), len}})) return env.Undefined();
  return buf;
}

Napi::Value ProcessVmWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!checkArgs(info, 3) || !info[2].IsBuffer()) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, "buf must be a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pid = info[0].As<Napi::Number>().Int32Value();
  auto buf = info[2].As<Napi::Buffer<uint8_t>>();
  if (!transfer(env, pid, true, buf.Data(), {{(void*)u64(info[1]), buf.Length()}})) return env.Undefined();
  return Napi::Number::New(env, (double)buf.Length());
}

// [{addr, len}] from JS as the remote iovecs of one transfer; `total` gets the sum of the lengths.
std::vector<struct iovec> remoteRanges(Napi::Array ranges, size_t* total) {
  std::vector<struct iovec> remote(ranges.Length());
  for (uint32_t i = 0; i < ranges.Length(); i++) {
    Napi::Object r = ranges.Get(i).As<Napi::Object>();
    remote[i].iov_base = (void*)u64(r.Get("addr"));
    remote[i].iov_len = (size_t)r.Get("len").As<Napi::Number>().Int64Value();
    *total += remote[i].iov_len;
  }
  return remote;
}

// ranges: Array<{addr, len}>; the bytes land back to back in one Buffer.
Napi::Value ProcessVmReadv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!checkArgs(info, 2) || !info[1].IsArray()) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, "ranges must be an array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pid = info[0].As<Napi::Number>().Int32Value();
  Napi::Array ranges = info[1].As<Napi::Array>();
  size_t total = 0;
  std::vector<struct iovec> remote = remoteRanges(ranges, &total);
  auto buf = Napi::Buffer<uint8_t>::New(env, total);
  if (!transfer(env, pid, false, buf.Data(), std::move(remote))) return env.Undefined();
  return buf;
}

// (pid, ranges, buf, offset = 0): like ProcessVmReadv, but the bytes land in the caller's Buffer
// at `offset`, so a reader that reuses its buffers allocates nothing per chunk. Returns the count.
Napi::Value ProcessVmReadvInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!checkArgs(info, 3) || !info[1].IsArray() || !info[2].IsBuffer()) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, "want (pid, ranges array, Buffer[, offset])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int pid = info[0].As<Napi::Number>().Int32Value();
  Napi::Array ranges = info[1].As<Napi::Array>();
  auto buf = info[2].As<Napi::Buffer<uint8_t>>();
  size_t offset = info[3].IsUndefined() ? 0 : (size_t)info[3].As<Napi::Number>().Int64Value();
  size_t total = 0;
  std::vector<struct iovec> remote = remoteRanges(ranges, &total);
  if (offset > buf.Length() || total > buf.Length() - offset) {
    Napi::RangeError::New(env, "ranges do not fit in the buffer at offset").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!transfer(env, pid, false, buf.Data() + offset, std::move(remote))) return env.Undefined();
  return Napi::Number::New(env, (double)total);
}

}  // namespace

void InitProcessVm(Napi::Env env, Napi::Object exports) {
  exports.Set("processVmRead", Napi::Function::New(env, ProcessVmRead, "processVmRead"));
  exports.Set("processVmWrite", Napi::Function::New(env, ProcessVmWrite, "processVmWrite"));
  exports.Set("processVmReadv", Napi::Function::New(env, ProcessVmReadv, "processVmReadv"));
  exports.Set("processVmReadvInto", Napi::Function::New(env, ProcessVmReadvInto, "processVmReadvInto"));
}

}  // namespace crr
