// How much of a file range sits in the page cache: cachestat(2) (Linux >= 6.5), so the restorer
// can tell a cold pages file (read it with O_DIRECT) from a warm one (copy from the cache).
#include <napi.h>

#include "throw-errno.h"

#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

// The kernel's struct cachestat_range and struct cachestat (include/uapi/linux/mman.h).
struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

// cachestat(fd, offset, length) -> { cache, dirty, writeback, evicted, recentlyEvicted } in
// pages; length 0 means to the end of the file. Throws the errno Error (ENOSYS before 6.5).
Napi::Value CachestatRangeOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (size_t i = 0; i < 3; i++) {
    if (info.Length() <= i || !info[i].IsNumber()) {
      Napi::TypeError::New(env, "fd, offset and length must be numbers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int64_t offset = info[1].As<Napi::Number>().Int64Value();
  int64_t length = info[2].As<Napi::Number>().Int64Value();
  if (offset < 0 || length < 0) {
    Napi::TypeError::New(env, "offset and length must be >= 0").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  CachestatRange range = {static_cast<uint64_t>(offset), static_cast<uint64_t>(length)};
  Cachestat stat = {};
  if (syscall(__NR_cachestat, fd, &range, &stat, 0) < 0) return ThrowErrno(env, "cachestat", errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("cache", Napi::Number::New(env, static_cast<double>(stat.nr_cache)));
  out.Set("dirty", Napi::Number::New(env, static_cast<double>(stat.nr_dirty)));
  out.Set("writeback", Napi::Number::New(env, static_cast<double>(stat.nr_writeback)));
  out.Set("evicted", Napi::Number::New(env, static_cast<double>(stat.nr_evicted)));
  out.Set("recentlyEvicted", Napi::Number::New(env, static_cast<double>(stat.nr_recently_evicted)));
  return out;
}

}  // namespace

void InitPageCache(Napi::Env env, Napi::Object exports) {
  exports.Set("cachestat", Napi::Function::New(env, CachestatRangeOf, "cachestat"));
}
