// The one way the addon reports a failed syscall to JavaScript: an Error with `code` (errno
// name), `errno` and `syscall`, so src/actors can turn it into a NativeError. Synchronous calls
// throw it (ThrowErrno); calls run on a libuv worker reject their promise with it (PromiseWorker).
#ifndef CRR_THROW_ERRNO_H
#define CRR_THROW_ERRNO_H

#include <napi.h>

#include <cstring>
#include <string>

inline Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  const char* name = strerrorname_np(err);
  std::string code = name ? name : ("E" + std::to_string(err));
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + " failed: " + code + " (" +
                                               strerror(err) + ")");
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

inline Napi::Value ThrowErrno(Napi::Env env, const char* syscall, int err) {
  ErrnoError(env, syscall, err).ThrowAsJavaScriptException();
  return env.Undefined();
}

// A call that blocks, run on a libuv worker so the main thread goes on: Execute() does the work
// and calls Fail() on an error; the promise Start() returns rejects with that errno's Error (plus
// what AddDetails puts on it) or resolves with Resolved().
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}

  // Queues the worker, which deletes itself once settled: the promise is taken before.
  Napi::Promise Start() {
    Napi::Promise promise = deferred_.Promise();
    Queue();
    return promise;
  }

 protected:
  // Worker thread; the last call wins (callers with threads of their own keep the first).
  void Fail(const char* syscall, int err) {
    syscall_ = syscall;
    err_ = err;
  }
  virtual Napi::Value Resolved() { return Env().Undefined(); }
  virtual void AddDetails(Napi::Error&) {}

 private:
  void OnOK() override {
    if (err_ == 0) return deferred_.Resolve(Resolved());
    Napi::Error error = ErrnoError(Env(), syscall_, err_);
    AddDetails(error);
    deferred_.Reject(error.Value());
  }

  Napi::Promise::Deferred deferred_;
  const char* syscall_ = "";
  int err_ = 0;
};

#endif
