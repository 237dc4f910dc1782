// Module entry of the crr native addon: each part registers its own functions.
//   tracer.cc: the single tracer thread that owns every ptrace call, plus process_vm_readv/writev
//   fds.cc:    fd-level calls safe from any thread (socketpair, pidfd_*, SCM_RIGHTS passing)
//   sockdiag.cc: unix sock_diag dump, queue peeking and getsockopt for the dumper
//   uffd.cc:   UFFDIO_COPY into a restored task's memory from crr's own threads
//   spawn.cc:  the launcher helper started with posix_spawn and reaped off the main thread
//   files.cc:  many small image files read whole off the main thread
//   pagecache.cc: cachestat of a file range (is a pages file cold?)
//   channel.cc: helper channels read and written without a net.Socket
//   namespaces.cc: files read or written from inside another task's namespace
//   sysvipc.cc: SysV IPC objects of another task's IPC namespace, read and made again
#include <napi.h>

void InitTracer(Napi::Env env, Napi::Object exports);
void InitFds(Napi::Env env, Napi::Object exports);
void InitSockDiag(Napi::Env env, Napi::Object exports);
void InitUffd(Napi::Env env, Napi::Object exports);
void InitSpawn(Napi::Env env, Napi::Object exports);
void InitFiles(Napi::Env env, Napi::Object exports);
void InitPageCache(Napi::Env env, Napi::Object exports);
void InitChannel(Napi::Env env, Napi::Object exports);
void InitNamespaces(Napi::Env env, Napi::Object exports);
void InitSysvIpc(Napi::Env env, Napi::Object exports);

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitTracer(env, exports);
  InitFds(env, exports);
  InitSockDiag(env, exports);
  InitUffd(env, exports);
  InitSpawn(env, exports);
  InitFiles(env, exports);
  InitPageCache(env, exports);
  InitChannel(env, exports);
  InitNamespaces(env, exports);
  InitSysvIpc(env, exports);
  return exports;
}

NODE_API_MODULE(crr_native, Init)
