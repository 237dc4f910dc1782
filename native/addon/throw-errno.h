// The one way the addon's synchronous calls report a failed syscall to JavaScript: an Error with
// `code` (errno name), `errno` and `syscall`, so src/actors can turn it into a NativeError.
#ifndef CRR_THROW_ERRNO_H
#define CRR_THROW_ERRNO_H

#include <napi.h>

#include <cstring>
#include <string>

inline Napi::Value ThrowErrno(Napi::Env env, const char* syscall, int err) {
  const char* name = strerrorname_np(err);
  std::string code = name ? name : ("E" + std::to_string(err));
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + " failed: " + code + " (" +
                                               strerror(err) + ")");
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

#endif
