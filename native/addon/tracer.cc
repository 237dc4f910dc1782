// Placeholder: the tracer thread is written in native/addon/tracer.cc (issue 3).
#include <napi.h>
void InitTracer(Napi::Env env, Napi::Object exports) {}
