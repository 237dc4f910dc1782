// Placeholder: fd-level calls are written in native/addon/fds.cc (issue 3).
#include <napi.h>
void InitFds(Napi::Env env, Napi::Object exports) {}
