// readSmallFiles: many small files (a core image per thread) read whole on a libuv worker, so
// their open/read/close syscalls (~12 us a file here) run beside the main thread, not on it.
// writeSmallFiles: the same for a dump's image files, created and written in one worker job (a
// promise write per file cost the main thread ~0.2 ms in its three libuv round trips).
// renameNoReplace: rename(2) that fails with EEXIST rather than replace what is at the target.
// mknod: a device node (Node has no mknod), for the device files of a container's tmpfs /dev.
#include <napi.h>

#include "throw-errno.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

class ReadSmallFilesWorker : public PromiseWorker {
 public:
  ReadSmallFilesWorker(Napi::Env env, std::vector<std::string> paths, size_t maxBytes)
      : PromiseWorker(env), paths_(std::move(paths)), maxBytes_(maxBytes) {}

  void Execute() override {
    sizes_.reserve(paths_.size());
    std::vector<uint8_t> chunk(maxBytes_);
    for (const std::string& path : paths_) sizes_.push_back(readOne(path, chunk));
  }

 private:
  // The file's length, its bytes appended to data_; or -errno (-EFBIG: maxBytes or more).
  // O_NONBLOCK: a FIFO in place of an image must not hold the worker; the caller's own read of
  // a failed file says what is wrong with it.
  int32_t readOne(const std::string& path, std::vector<uint8_t>& chunk) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    size_t got = 0;
    int32_t result = 0;
    for (;;) {
      ssize_t n = read(fd, chunk.data() + got, chunk.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        result = -errno;
        break;
      }
      if (n == 0) break;
      got += n;
      if (got == chunk.size()) {
        result = -EFBIG;
        break;
      }
    }
    close(fd);
    if (result < 0) return result;
    data_.insert(data_.end(), chunk.begin(), chunk.begin() + got);
    return (int32_t)got;
  }

  Napi::Value Resolved() override {
    Napi::Object result = Napi::Object::New(Env());
    result.Set("data", Napi::Buffer<uint8_t>::Copy(Env(), data_.data(), data_.size()));
    result.Set("sizes", Napi::Buffer<uint8_t>::Copy(Env(), (const uint8_t*)sizes_.data(), sizes_.size() * sizeof(int32_t)));
    return result;
  }

  std::vector<std::string> paths_;
  size_t maxBytes_;
  std::vector<uint8_t> data_;
  std::vector<int32_t> sizes_;
};

class WriteSmallFilesWorker : public PromiseWorker {
 public:
  WriteSmallFilesWorker(Napi::Env env, std::vector<std::string> paths, std::vector<Napi::ObjectReference> keep,
                        std::vector<std::pair<const uint8_t*, size_t>> bytes, int mode)
      : PromiseWorker(env), paths_(std::move(paths)), keep_(std::move(keep)), bytes_(std::move(bytes)), mode_(mode) {}

  void Execute() override {
    for (size_t i = 0; i < paths_.size() && failedAt_ < 0; i++) {
      if (!writeOne(paths_[i], bytes_[i].first, bytes_[i].second)) failedAt_ = (int64_t)i;
    }
  }

 private:
  bool writeOne(const std::string& path, const uint8_t* data, size_t len) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_);
    if (fd < 0) return Fail("open", errno), false;
    size_t done = 0;
    while (done < len) {
      ssize_t n = write(fd, data + done, len - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Fail("write", errno);
        close(fd);
        return false;
      }
      done += n;
    }
    if (close(fd) < 0) return Fail("close", errno), false;
    return true;
  }

  void AddDetails(Napi::Error& error) override {
    if (failedAt_ >= 0) error.Set("path", Napi::String::New(Env(), paths_[failedAt_]));
  }

  std::vector<std::string> paths_;
  std::vector<Napi::ObjectReference> keep_;  // the Buffers stay alive (and unmoved) until settled
  std::vector<std::pair<const uint8_t*, size_t>> bytes_;
  int mode_;
  int64_t failedAt_ = -1;
};

// writeSmallFiles(paths, buffers, mode) -> Promise<void>: each buffer written to its path
// (created or truncated with `mode`) in order on a libuv worker; the first failure rejects with
// its errno, syscall and `path`, and the files after it are not written.
Napi::Value WriteSmallFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsNumber() ||
      info[0].As<Napi::Array>().Length() != info[1].As<Napi::Array>().Length()) {
    Napi::TypeError::New(env, "writeSmallFiles(paths: string[], buffers: Uint8Array[] (one per path), mode: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array paths = info[0].As<Napi::Array>();
  Napi::Array buffers = info[1].As<Napi::Array>();
  std::vector<std::string> names;
  std::vector<Napi::ObjectReference> keep;
  std::vector<std::pair<const uint8_t*, size_t>> bytes;
  for (uint32_t i = 0; i < paths.Length(); i++) {
    Napi::Value path = paths.Get(i);
    Napi::Value buffer = buffers.Get(i);
    if (!path.IsString() || !buffer.IsTypedArray() || buffer.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      Napi::TypeError::New(env, "writeSmallFiles: a string path and a Uint8Array for each file").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array array = buffer.As<Napi::Uint8Array>();
    names.push_back(path.As<Napi::String>().Utf8Value());
    bytes.emplace_back(array.Data(), array.ByteLength());
    keep.push_back(Napi::Persistent(buffer.As<Napi::Object>()));
  }
  return (new WriteSmallFilesWorker(env, std::move(names), std::move(keep), std::move(bytes), info[2].As<Napi::Number>().Int32Value()))->Start();
}

// readSmallFiles(paths, maxBytes) -> Promise<{ data: Buffer, sizes: Buffer }>: the files' bytes
// back to back in `data`; `sizes` holds an int32 per file: its length, or -errno when it could not
// be read whole (-EFBIG when it holds maxBytes or more).
Napi::Value ReadSmallFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "readSmallFiles(paths: string[], maxBytes: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[0].As<Napi::Array>();
  int64_t maxBytes = info[1].As<Napi::Number>().Int64Value();
  if (maxBytes < 1 || maxBytes > (1 << 30)) {
    Napi::RangeError::New(env, "readSmallFiles: maxBytes must be 1..2^30").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<std::string> paths;
  paths.reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value path = list.Get(i);
    if (!path.IsString()) {
      Napi::TypeError::New(env, "readSmallFiles: every path must be a string").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    paths.push_back(path.As<Napi::String>().Utf8Value());
  }
  return (new ReadSmallFilesWorker(env, std::move(paths), (size_t)maxBytes))->Start();
}

}  // namespace

// renameNoReplace(from, to): renameat2 with RENAME_NOREPLACE.
Napi::Value RenameNoReplace(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "renameNoReplace(from, to): two paths").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string from = info[0].As<Napi::String>();
  std::string to = info[1].As<Napi::String>();
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) < 0) return ThrowErrno(env, "renameat2", errno);
  return env.Undefined();
}

// mknod(path, mode, major, minor): mode holds the file type (S_IFCHR or S_IFBLK) and permissions.
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "mknod(path, mode, major, minor)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  mode_t mode = info[1].As<Napi::Number>().Uint32Value();
  dev_t dev = makedev(info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Uint32Value());
  if (mknod(path.c_str(), mode, dev) < 0) return ThrowErrno(env, "mknod", errno);
  return env.Undefined();
}

// fcntlInt(fd, cmd) -> the int fcntl returns for a query without argument (F_GETPIPE_SZ, F_GET_SEALS).
Napi::Value FcntlInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "fcntlInt(fd, cmd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int got = fcntl(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  if (got < 0) return ThrowErrno(env, "fcntl", errno);
  return Napi::Number::New(env, got);
}

// fileOwner(fd) -> {type, pid, signum, uid, euid}: whom the file's SIGIO/SIGURG go to
// (F_GETOWN_EX: F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2; pid in this process's PID
// namespace, 0 for none), the signal (F_GETSIG, 0 for SIGIO) and the owner's uid and euid
// (F_GETOWNER_UIDS, 17: a kernel with checkpoint/restore; both 0 without it).
Napi::Value FileOwner(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "fileOwner(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct f_owner_ex owner = {};
  if (fcntl(fd, F_GETOWN_EX, &owner) < 0) return ThrowErrno(env, "fcntl(F_GETOWN_EX)", errno);
  int signum = fcntl(fd, F_GETSIG);
  if (signum < 0) return ThrowErrno(env, "fcntl(F_GETSIG)", errno);
  uint32_t uids[2] = {0, 0};
  if (fcntl(fd, 17 /* F_GETOWNER_UIDS */, uids) < 0 && errno != EINVAL) return ThrowErrno(env, "fcntl(F_GETOWNER_UIDS)", errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("type", Napi::Number::New(env, owner.type));
  out.Set("pid", Napi::Number::New(env, owner.pid));
  out.Set("signum", Napi::Number::New(env, signum));
  out.Set("uid", Napi::Number::New(env, uids[0]));
  out.Set("euid", Napi::Number::New(env, uids[1]));
  return out;
}

void InitFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("fileOwner", Napi::Function::New(env, FileOwner, "fileOwner"));
  exports.Set("fcntlInt", Napi::Function::New(env, FcntlInt, "fcntlInt"));
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("renameNoReplace", Napi::Function::New(env, RenameNoReplace, "renameNoReplace"));
  exports.Set("readSmallFiles", Napi::Function::New(env, ReadSmallFiles, "readSmallFiles"));
  exports.Set("writeSmallFiles", Napi::Function::New(env, WriteSmallFiles, "writeSmallFiles"));
}
