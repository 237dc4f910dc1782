// The JavaScript surface of the tracer: argument checking and conversion for every call.
// ptrace calls become operations posted to this environment's tracer thread (promises);
// process_vm_readv/writev run synchronously on the calling thread (they need no attachment).
// The typed view of this surface is src/actors/tracer-binding.ts.
#include <elf.h>
#include <errno.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "tracer.h"

namespace crr {
namespace {

// user_regs_struct as CRIU's user_x86_regs_entry names its fields, in struct order.
const char* const kRegNames[] = {"r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9",
                                 "r8", "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs",
                                 "flags", "sp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"};
constexpr size_t kRegCount = sizeof(kRegNames) / sizeof(kRegNames[0]);
static_assert(kRegCount * 8 == sizeof(user_regs_struct), "register table matches the struct");
using RegEdits = std::vector<std::pair<size_t, uint64_t>>;


// Arguments are checked before anything is posted; a bad argument is a TypeError thrown
// synchronously. NAPI_DISABLE_CPP_EXCEPTIONS leaves C++ exceptions to us: this one only unwinds
// to guard().
struct ArgError {};

Tracer* tracerOf(const Napi::CallbackInfo& info) { return static_cast<Tracer*>(info.Data()); }

[[noreturn]] void throwType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  throw ArgError{};
}

uint64_t toU64(Napi::Env env, Napi::Value v, const char* what) {
  bool lossless = true;
  if (v.IsBigInt()) {
    int64_t s = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (lossless) return (uint64_t)s;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (v.IsNumber()) return (uint64_t)v.As<Napi::Number>().Int64Value();
  Napi::TypeError::New(env, std::string(what) + " must be a bigint or a number").ThrowAsJavaScriptException();
  throw ArgError{};
}

int toInt(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsNumber()) {
    Napi::TypeError::New(env, std::string(what) + " must be a number").ThrowAsJavaScriptException();
    throw ArgError{};
  }
  return v.As<Napi::Number>().Int32Value();
}

Napi::Object toObject(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsObject()) {
    Napi::TypeError::New(env, std::string(what) + " must be an object").ThrowAsJavaScriptException();
    throw ArgError{};
  }
  return v.As<Napi::Object>();
}

bool optBool(Napi::Object o, const char* key, bool dflt) {
  Napi::Value v = o.Get(key);
  return v.IsUndefined() ? dflt : v.ToBoolean().Value();
}

// Options object at position i, or an empty one.
Napi::Object options(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return Napi::Object::New(info.Env());
  return toObject(info.Env(), info[i], "options");
}

void setTimeout(Op* op, Napi::Value v) {
  if (!v.IsNumber()) return;
  op->hasDeadline = true;
  op->deadline = Clock::now() + std::chrono::microseconds((int64_t)(v.As<Napi::Number>().DoubleValue() * 1000));
}

RegEdits regEdits(Napi::Env env, Napi::Object regs) {
  RegEdits edits;
  for (size_t i = 0; i < kRegCount; i++) {
    Napi::Value v = regs.Get(kRegNames[i]);
    if (!v.IsUndefined()) edits.emplace_back(i, toU64(env, v, kRegNames[i]));
  }
  return edits;
}

Op::Step applyRegs(Op& self, int pid, const RegEdits& edits) {
  if (edits.empty()) return Op::Done;
  user_regs_struct regs;
  if (edits.size() < kRegCount && ptrace(PTRACE_GETREGS, pid, 0, &regs) == -1)
    return self.reject(errnoFailure(errno, "ptrace(PTRACE_GETREGS)", pid));
  uint64_t* slots = reinterpret_cast<uint64_t*>(&regs);
  for (auto& [i, value] : edits) slots[i] = value;
  if (ptrace(PTRACE_SETREGS, pid, 0, &regs) == -1)
    return self.reject(errnoFailure(errno, "ptrace(PTRACE_SETREGS)", pid));
  return Op::Done;
}

// A one-step ptrace call whose only result is success.
Op* simple(int pid, const char* name, std::function<long()> call) {
  return new FnOp(pid, [name, call](Op& self, Tracer&) {
    if (call() == -1) return self.reject(errnoFailure(errno, name, self.pid));
    return self.resolve(nullptr);
  });
}

template <typename F>
Napi::Value guard(const Napi::CallbackInfo& info, F body) {
  try {
    return body(info.Env());
  } catch (const ArgError&) {
    return info.Env().Undefined();
  }
}

#define TRACER_FN(name) Napi::Value name(const Napi::CallbackInfo& info)

TRACER_FN(Seize) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    Napi::Object o = options(info, 1);
    long opts = 0;
    if (optBool(o, "exitKill", true)) opts |= PTRACE_O_EXITKILL;
    if (optBool(o, "traceClone", false)) opts |= PTRACE_O_TRACECLONE;
    if (optBool(o, "traceSysgood", true)) opts |= PTRACE_O_TRACESYSGOOD;
    if (optBool(o, "traceExit", false)) opts |= PTRACE_O_TRACEEXIT;
    // Injected syscalls then bypass the task's seccomp filter or strict mode until detach.
    if (optBool(o, "suspendSeccomp", false)) opts |= 0x200000 /* PTRACE_O_SUSPEND_SECCOMP */;
    return tracerOf(info)->post(env, new FnOp(pid, [opts](Op& self, Tracer& t) {
      if (ptrace(PTRACE_SEIZE, self.pid, 0, opts) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_SEIZE)", self.pid));
      Tracee* old = t.find(self.pid);
      if (old && old->exited) t.forget(self.pid);  // a previous task with this pid
      t.track(self.pid);
      return self.resolve(nullptr);
    }));
  });
}

TRACER_FN(Interrupt) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    return tracerOf(info)->post(env, simple(pid, "ptrace(PTRACE_INTERRUPT)",
                                            [pid] { return ptrace(PTRACE_INTERRUPT, pid, 0, 0); }));
  });
}

TRACER_FN(Cont) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    long sig = info.Length() > 1 && info[1].IsNumber() ? toInt(env, info[1], "sig") : 0;
    return tracerOf(info)->post(env, simple(pid, "ptrace(PTRACE_CONT)",
                                            [pid, sig] { return ptrace(PTRACE_CONT, pid, 0, sig); }));
  });
}

TRACER_FN(WaitStop) {
  return guard(info, [&](Napi::Env env) {
    Op* op = makeWaitStop(toInt(env, info[0], "pid"));
    if (info.Length() > 1) setTimeout(op, info[1]);
    return tracerOf(info)->post(env, op);
  });
}

TRACER_FN(Kill) {
  return guard(info, [&](Napi::Env env) {
    Op* op = makeKill(toInt(env, info[0], "pid"));
    if (info.Length() > 1) setTimeout(op, info[1]);
    return tracerOf(info)->post(env, op);
  });
}

TRACER_FN(GetRegs) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    return tracerOf(info)->post(env, new FnOp(pid, [](Op& self, Tracer&) {
      user_regs_struct regs;
      if (ptrace(PTRACE_GETREGS, self.pid, 0, &regs) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_GETREGS)", self.pid));
      return self.resolve([regs](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        const uint64_t* slots = reinterpret_cast<const uint64_t*>(&regs);
        for (size_t i = 0; i < kRegCount; i++) o.Set(kRegNames[i], Napi::BigInt::New(env, slots[i]));
        return o;
      });
    }));
  });
}

TRACER_FN(SetRegs) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    RegEdits edits = regEdits(env, toObject(env, info[1], "regs"));
    return tracerOf(info)->post(env, new FnOp(pid, [edits](Op& self, Tracer&) {
      applyRegs(self, self.pid, edits);
      return self.ok ? self.resolve(nullptr) : Op::Done;
    }));
  });
}

TRACER_FN(Detach) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    Napi::Object o = options(info, 1);
    RegEdits edits;
    if (o.Get("regs").IsObject()) edits = regEdits(env, o.Get("regs").As<Napi::Object>());
    long sig = o.Get("sig").IsNumber() ? toInt(env, o.Get("sig"), "sig") : 0;
    return tracerOf(info)->post(env, new FnOp(pid, [edits, sig](Op& self, Tracer& t) {
      applyRegs(self, self.pid, edits);
      if (!self.ok) return Op::Done;
      if (ptrace(PTRACE_DETACH, self.pid, 0, sig) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_DETACH)", self.pid));
      t.forget(self.pid);
      return self.resolve(nullptr);
    }));
  });
}

// release(pid): the tracee is detached at its next stop, by the tracer thread (see Tracer::release).
TRACER_FN(Release) {
  return guard(info, [&](Napi::Env env) {
    return tracerOf(info)->post(env, new FnOp(toInt(env, info[0], "pid"), [](Op& self, Tracer& t) {
      t.release(self.pid);
      return self.resolve(nullptr);
    }));
  });
}

TRACER_FN(GetRegset) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    int nt = toInt(env, info[1], "nt");
    return tracerOf(info)->post(env, new FnOp(pid, [nt](Op& self, Tracer&) {
      auto buf = std::make_shared<std::vector<uint8_t>>(16384);  // room for AMX-sized xstate
      struct iovec iov = {buf->data(), buf->size()};
      if (ptrace(PTRACE_GETREGSET, self.pid, nt, &iov) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_GETREGSET)", self.pid));
      buf->resize(iov.iov_len);
      return self.resolve([buf](Napi::Env env) -> Napi::Value {
        return Napi::Buffer<uint8_t>::Copy(env, buf->data(), buf->size());
      });
    }));
  });
}

TRACER_FN(SetRegset) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    int nt = toInt(env, info[1], "nt");
    if (!info[2].IsBuffer()) throwType(env, "buf must be a Buffer");
    auto b = info[2].As<Napi::Buffer<uint8_t>>();
    std::vector<uint8_t> data(b.Data(), b.Data() + b.Length());
    return tracerOf(info)->post(env, new FnOp(pid, [nt, data](Op& self, Tracer&) {
      struct iovec iov = {const_cast<uint8_t*>(data.data()), data.size()};
      if (ptrace(PTRACE_SETREGSET, self.pid, nt, &iov) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_SETREGSET)", self.pid));
      return self.resolve(nullptr);
    }));
  });
}

TRACER_FN(GetSigmask) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    return tracerOf(info)->post(env, new FnOp(pid, [](Op& self, Tracer&) {
      uint64_t mask = 0;
      if (ptrace(PTRACE_GETSIGMASK, self.pid, sizeof mask, &mask) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_GETSIGMASK)", self.pid));
      return self.resolve([mask](Napi::Env env) -> Napi::Value { return Napi::BigInt::New(env, mask); });
    }));
  });
}

TRACER_FN(SetSigmask) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    uint64_t mask = toU64(env, info[1], "mask");
    return tracerOf(info)->post(env, simple(pid, "ptrace(PTRACE_SETSIGMASK)", [pid, mask] {
      uint64_t m = mask;
      return ptrace(PTRACE_SETSIGMASK, pid, sizeof m, &m);
    }));
  });
}

TRACER_FN(PeekSiginfo) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    Napi::Object o = options(info, 1);
    __ptrace_peeksiginfo_args args = {};
    args.off = o.Get("offset").IsUndefined() ? 0 : toU64(env, o.Get("offset"), "offset");
    args.flags = optBool(o, "shared", false) ? PTRACE_PEEKSIGINFO_SHARED : 0;
    args.nr = o.Get("count").IsUndefined() ? 64 : toInt(env, o.Get("count"), "count");
    return tracerOf(info)->post(env, new FnOp(pid, [args](Op& self, Tracer&) {
      auto buf = std::make_shared<std::vector<uint8_t>>((size_t)std::max(args.nr, 0) * 128);
      long n = ptrace((__ptrace_request)PTRACE_PEEKSIGINFO, self.pid, &args, buf->data());
      if (n == -1) return self.reject(errnoFailure(errno, "ptrace(PTRACE_PEEKSIGINFO)", self.pid));
      return self.resolve([buf, n](Napi::Env env) -> Napi::Value {
        Napi::Array arr = Napi::Array::New(env, n);
        for (long i = 0; i < n; i++) arr.Set(i, Napi::Buffer<uint8_t>::Copy(env, buf->data() + i * 128, 128));
        return arr;
      });
    }));
  });
}

TRACER_FN(GetRseqConfig) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    return tracerOf(info)->post(env, new FnOp(pid, [](Op& self, Tracer&) {
      __ptrace_rseq_configuration c = {};
      if (ptrace((__ptrace_request)PTRACE_GET_RSEQ_CONFIGURATION, self.pid, sizeof c, &c) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", self.pid));
      return self.resolve([c](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("rseqAbiPointer", Napi::BigInt::New(env, c.rseq_abi_pointer));
        o.Set("rseqAbiSize", c.rseq_abi_size);
        o.Set("signature", c.signature);
        o.Set("flags", c.flags);
        return o;
      });
    }));
  });
}

// The classic-BPF program of one of the task's seccomp filters (0 = the newest) and its flags
// (SECCOMP_FILTER_FLAG_*, from PTRACE_SECCOMP_GET_METADATA); ENOENT past the oldest.
TRACER_FN(SeccompGetFilter) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    long index = toInt(env, info[1], "index");
    return tracerOf(info)->post(env, new FnOp(pid, [index](Op& self, Tracer&) {
      const int GET_FILTER = 0x420c, GET_METADATA = 0x420d;
      long n = ptrace((__ptrace_request)GET_FILTER, self.pid, index, nullptr);
      if (n == -1) return self.reject(errnoFailure(errno, "ptrace(PTRACE_SECCOMP_GET_FILTER)", self.pid));
      auto prog = std::make_shared<std::vector<uint8_t>>((size_t)n * 8);
      if (ptrace((__ptrace_request)GET_FILTER, self.pid, index, prog->data()) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_SECCOMP_GET_FILTER)", self.pid));
      struct { uint64_t filter_off, flags; } meta = {(uint64_t)index, 0};
      if (ptrace((__ptrace_request)GET_METADATA, self.pid, sizeof meta, &meta) == -1)
        return self.reject(errnoFailure(errno, "ptrace(PTRACE_SECCOMP_GET_METADATA)", self.pid));
      uint64_t flags = meta.flags;
      return self.resolve([prog, flags](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("filter", Napi::Buffer<uint8_t>::Copy(env, prog->data(), prog->size()));
        o.Set("flags", Napi::Number::New(env, (double)flags));
        return o;
      });
    }));
  });
}

void readArgs(Napi::Env env, Napi::Value v, uint64_t out[6]) {
  for (int i = 0; i < 6; i++) out[i] = 0;
  if (v.IsUndefined()) return;
  if (!v.IsArray()) throwType(env, "args must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 6) throwType(env, "at most 6 syscall arguments");
  for (uint32_t i = 0; i < a.Length(); i++) out[i] = toU64(env, a.Get(i), "argument");
}

// batch: {scratch, list: Buffer of packed crr_stub_cmd, timeoutMs?}. Packing is JS's job
// (src/actors/stub.ts): reading thousands of command objects through N-API costs ~0.7 us each.
TRACER_FN(RunBatch) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    Napi::Object o = toObject(env, info[1], "batch");
    uint64_t scratch = toU64(env, o.Get("scratch"), "scratch");
    Napi::Value listValue = o.Get("list");
    if (!listValue.IsBuffer()) throwType(env, "list must be a Buffer of packed commands");
    auto list = listValue.As<Napi::Buffer<uint8_t>>();
    std::vector<uint8_t> bytes(list.Data(), list.Data() + list.Length());
    std::vector<uint8_t> data;
    uint64_t dataAddr = 0;
    Napi::Value dataValue = o.Get("data");
    if (!dataValue.IsUndefined()) {
      if (!dataValue.IsBuffer()) throwType(env, "data must be a Buffer");
      auto buf = dataValue.As<Napi::Buffer<uint8_t>>();
      data.assign(buf.Data(), buf.Data() + buf.Length());
      dataAddr = toU64(env, o.Get("dataAddr"), "dataAddr");
    }
    Op* op = makeRunBatch(pid, scratch, std::move(bytes), std::move(data), dataAddr);
    setTimeout(op, o.Get("timeoutMs"));
    return tracerOf(info)->post(env, op);
  });
}

TRACER_FN(RunSyscall) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    Napi::Object o = toObject(env, info[1], "call");
    uint64_t args[6];
    readArgs(env, o.Get("args"), args);
    Op* op = makeRunSyscall(pid, toU64(env, o.Get("scratch"), "scratch"), toU64(env, o.Get("nr"), "nr"),
                            args, optBool(o, "stopAtExit", false));
    setTimeout(op, o.Get("timeoutMs"));
    return tracerOf(info)->post(env, op);
  });
}

TRACER_FN(InjectSyscall) {
  return guard(info, [&](Napi::Env env) {
    int pid = toInt(env, info[0], "pid");
    uint64_t args[6];
    readArgs(env, info[2], args);
    Op* op = makeInjectSyscall(pid, toU64(env, info[1], "nr"), args);
    if (info.Length() > 3) setTimeout(op, info[3]);
    return tracerOf(info)->post(env, op);
  });
}

TRACER_FN(ListTracees) {
  return tracerOf(info)->post(info.Env(), new FnOp(0, [](Op& self, Tracer& t) {
    struct Row { int pid; size_t pending; bool waiting, exited; };
    std::vector<Row> rows;
    for (auto& [pid, tr] : t.tracees()) rows.push_back({pid, tr->pending.size(), !tr->waiters.empty(), tr->exited});
    return self.resolve([rows](Napi::Env env) -> Napi::Value {
      Napi::Array arr = Napi::Array::New(env, rows.size());
      for (uint32_t i = 0; i < rows.size(); i++) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("pid", rows[i].pid);
        o.Set("pendingStops", (double)rows[i].pending);
        o.Set("waiting", rows[i].waiting);
        o.Set("exited", rows[i].exited);
        arr.Set(i, o);
      }
      return arr;
    });
  }));
}

}  // namespace

void InitProcessVm(Napi::Env env, Napi::Object exports);

void InitTracer(Napi::Env env, Napi::Object exports) {
  auto* tracer = new Tracer(env);
  napi_add_env_cleanup_hook(env, [](void* p) { delete static_cast<Tracer*>(p); }, tracer);
  struct Entry { const char* name; Napi::Function::Callback fn; };
  const Entry entries[] = {
      {"seize", Seize}, {"interrupt", Interrupt}, {"cont", Cont}, {"waitStop", WaitStop},
      {"kill", Kill}, {"getRegs", GetRegs}, {"setRegs", SetRegs}, {"detach", Detach}, {"release", Release},
      {"getRegset", GetRegset}, {"setRegset", SetRegset}, {"getSigmask", GetSigmask},
      {"setSigmask", SetSigmask}, {"peekSiginfo", PeekSiginfo}, {"getRseqConfig", GetRseqConfig},
      {"runBatch", RunBatch}, {"runSyscall", RunSyscall}, {"injectSyscall", InjectSyscall},
      {"listTracees", ListTracees}, {"seccompGetFilter", SeccompGetFilter},
  };
  for (const Entry& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name, tracer));
  InitProcessVm(env, exports);
  InitTracerThreads(env, exports, tracer);
}

}  // namespace crr

void InitTracer(Napi::Env env, Napi::Object exports) { crr::InitTracer(env, exports); }
