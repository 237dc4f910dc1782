// The way addon calls act inside another task's namespace: a std::thread of their own enters it
// (setns changes only the calling thread) and ends with the call, so no Node or libuv thread is
// ever left inside it. namespaces.cc (sysctl files) and sysvipc.cc (SysV objects) use it.
#ifndef CRR_IN_NAMESPACE_H
#define CRR_IN_NAMESPACE_H

#include <napi.h>

#include <string>

// The first failed syscall of a call: its name, errno and what it acted on (a path, an object).
struct NsFailure {
  const char* syscall = nullptr;
  int err = 0;
  std::string what;
};

// Opens nsPath (/proc/PID/ns/KIND) and setns()es the calling thread into it.
bool EnterNamespace(const std::string& nsPath, int nstype, NsFailure& failure);

// Throws the errno Error of `failure`, with `path` set to what it acted on.
Napi::Value ThrowNsFailure(Napi::Env env, const NsFailure& failure);

#endif
