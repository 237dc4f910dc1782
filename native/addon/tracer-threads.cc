// Tracer operations on many threads of a task at once, so that a process with 10,000 threads
// costs a few promises, not tens of thousands: run each thread's own stub list (all threads at
// once, each from its own list in the scratch area), set registers + xstate + blocked mask of N
// stopped threads, detach N threads. Arguments arrive packed in Buffers (reading thousands of
// objects through N-API costs more than the ptrace calls themselves).
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "stub.h"
#include "tracer.h"

namespace crr {
namespace {

// One stopped thread running its own command list (header at `header`) through the stub's
// batch entry.
class ThreadListOp : public Op {
 public:
  ThreadListOp(int tid, uint64_t scratch, uint64_t header) : Op(tid), scratch_(scratch), header_(header) {}

  Step start(Tracer&) override {
    user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_GETREGS)", pid));
    regs.rip = scratch_ + CRR_STUB_ENTRY_BATCH;
    regs.r12 = header_;
    regs.orig_rax = (uint64_t)-1;  // trap 1: a stop inside a syscall must not restart it
    if (ptrace(PTRACE_SETREGS, pid, 0, &regs) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_SETREGS)", pid));
    if (ptrace(PTRACE_CONT, pid, 0, 0) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_CONT)", pid));
    return Wait;
  }

  Step onStop(Tracer&, const Stop& stop) override {
    if (stop.terminal()) return reject(unexpected(stop));
    user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_GETREGS)", pid));
    if (stop.kind != Stop::Signal || stop.signal != SIGTRAP || regs.rip != scratch_ + CRR_STUB_BATCH_TRAP_END)
      return reject(unexpected(stop));
    return resolve(nullptr);
  }

 private:
  Failure unexpected(const Stop& stop) {
    Failure f;
    f.code = "UNEXPECTED_STOP";
    f.syscall = "runThreadLists";
    f.pid = pid;
    f.detail = "stopped by " + stop.describe();
    f.hasStop = true;
    f.stop = stop;
    return f;
  }

  uint64_t scratch_, header_;
};

// Parent of many ThreadListOps: resolves when all are done, or rejects with the first failure.
class GroupOp : public Op {
 public:
  GroupOp(int pid, std::vector<Op*> children) : Op(pid), children_(std::move(children)) {}
  ~GroupOp() override {
    for (Op* op : children_) delete op;  // only those never started
  }

  Step start(Tracer& t) override {
    std::vector<Op*> children = std::move(children_);
    children_.clear();
    t.startChildren(this, std::move(children));
    return Children;
  }

  void childDone(Tracer&, Op& child) override {
    if (!child.ok && ok) reject(child.failure);
  }

 private:
  std::vector<Op*> children_;
};

// One thread that runs untraced (made by a CRR_STUB_CLONE_CHILD_LIST clone3): seized and
// interrupted; its first stop gives rdi, which names it (its list ends in pause(dumped tid)).
class SeizeThreadOp : public Op {
 public:
  SeizeThreadOp(int tid, long options, uint64_t* rdi) : Op(tid), options_(options), rdi_(rdi) {}

  Step start(Tracer& t) override {
    if (ptrace(PTRACE_SEIZE, pid, 0, options_) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_SEIZE)", pid));
    Tracee* old = t.find(pid);
    if (old && old->exited) t.forget(pid);  // a previous task with this pid
    t.track(pid);
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_INTERRUPT)", pid));
    return Wait;
  }

  Step onStop(Tracer&, const Stop& stop) override {
    if (stop.terminal()) return reject(errnoFailure(ESRCH, "ptrace(PTRACE_INTERRUPT)", pid, "thread ended: " + stop.describe()));
    user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, pid, 0, &regs) == -1) return reject(errnoFailure(errno, "ptrace(PTRACE_GETREGS)", pid));
    *rdi_ = regs.rdi;
    return resolve(nullptr);
  }

 private:
  long options_;
  uint64_t* rdi_;
};

struct ArgError {};

[[noreturn]] void throwType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  throw ArgError{};
}

uint64_t toU64(Napi::Env env, Napi::Value v, const char* what) {
  bool lossless = true;
  if (v.IsBigInt()) return v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (v.IsNumber()) return (uint64_t)v.As<Napi::Number>().Int64Value();
  throwType(env, std::string(what) + " must be a bigint or a number");
}

Napi::Buffer<uint8_t> toBuffer(Napi::Env env, Napi::Value v, const char* what, size_t unit) {
  if (!v.IsBuffer()) throwType(env, std::string(what) + " must be a Buffer");
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (unit && b.Length() % unit) throwType(env, std::string(what) + " is not a whole number of records");
  return b;
}

template <typename T>
std::vector<T> copyOut(Napi::Buffer<uint8_t> b) {
  std::vector<T> out(b.Length() / sizeof(T));
  memcpy(out.data(), b.Data(), out.size() * sizeof(T));
  return out;
}

template <typename F>
Napi::Value guard(const Napi::CallbackInfo& info, F body) {
  try {
    return body(info.Env());
  } catch (const ArgError&) {
    return info.Env().Undefined();
  }
}

Tracer* tracerOf(const Napi::CallbackInfo& info) { return static_cast<Tracer*>(info.Data()); }

// runThreadLists(pid, {scratch, items}): items = records {i32 tid, u32 unused, u64 header}.
// Every thread runs its list at once; the results stay in the task's memory for the caller.
Napi::Value RunThreadLists(const Napi::CallbackInfo& info) {
  return guard(info, [&](Napi::Env env) {
    int pid = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    if (!info[1].IsObject()) throwType(env, "lists must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    uint64_t scratch = toU64(env, o.Get("scratch"), "scratch");
    auto items = toBuffer(env, o.Get("items"), "items", 16);
    std::vector<Op*> children;
    for (size_t i = 0; i < items.Length() / 16; i++) {
      int32_t tid;
      uint64_t header;
      memcpy(&tid, items.Data() + i * 16, 4);
      memcpy(&header, items.Data() + i * 16 + 8, 8);
      Op* child = new ThreadListOp(tid, scratch, header);
      if (o.Get("timeoutMs").IsNumber()) {
        child->hasDeadline = true;
        child->deadline = Clock::now() + std::chrono::microseconds((int64_t)(o.Get("timeoutMs").As<Napi::Number>().DoubleValue() * 1000));
      }
      children.push_back(child);
    }
    return tracerOf(info)->post(env, new GroupOp(pid, std::move(children)));
  });
}

// seizeThreads(pid, {tids: i32[], options: ptrace options, timeoutMs?}): resolves with each
// thread's rdi (u64[], in order) at its interrupt stop.
Napi::Value SeizeThreads(const Napi::CallbackInfo& info) {
  return guard(info, [&](Napi::Env env) {
    int pid = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    if (!info[1].IsObject()) throwType(env, "threads must be an object");
    Napi::Object o = info[1].As<Napi::Object>();
    auto tids = copyOut<int32_t>(toBuffer(env, o.Get("tids"), "tids", 4));
    long options = (long)toU64(env, o.Get("options"), "options");
    auto rdis = std::make_shared<std::vector<uint64_t>>(tids.size());
    bool timed = o.Get("timeoutMs").IsNumber();
    auto deadline = timed ? Clock::now() + std::chrono::microseconds((int64_t)(o.Get("timeoutMs").As<Napi::Number>().DoubleValue() * 1000))
                          : Clock::time_point::max();
    std::vector<Op*> children;
    for (size_t i = 0; i < tids.size(); i++) {
      Op* child = new SeizeThreadOp(tids[i], options, &(*rdis)[i]);
      child->hasDeadline = timed;
      child->deadline = deadline;
      children.push_back(child);
    }
    auto* group = new GroupOp(pid, std::move(children));
    group->result = [rdis](Napi::Env env) -> Napi::Value {
      return Napi::Buffer<uint8_t>::Copy(env, (uint8_t*)rdis->data(), rdis->size() * 8);
    };
    return tracerOf(info)->post(env, group);
  });
}

// setOptions(pid, options): PTRACE_SETOPTIONS (a task's clone3s go untraced once TRACECLONE is off).
Napi::Value SetOptions(const Napi::CallbackInfo& info) {
  return guard(info, [&](Napi::Env env) {
    int pid = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    long options = (long)toU64(env, info[1], "options");
    return tracerOf(info)->post(env, new FnOp(pid, [options](Op& self, Tracer&) {
      if (ptrace(PTRACE_SETOPTIONS, self.pid, 0, options) == -1) return self.reject(errnoFailure(errno, "ptrace(PTRACE_SETOPTIONS)", self.pid));
      return self.resolve(nullptr);
    }));
  });
}

// An xstateOf entry for a thread that has its xstate already (inherited from its creator).
constexpr uint32_t kKeepXstate = 0xffffffff;

// setThreadsCpu({tids: i32[], regs: user_regs_struct[], masks: u64[], xstate?: bytes[n * xstateSize]})
// or, with xstateOf: u32[] (thread i's buffer is xstate's buffer number xstateOf[i], or
// kKeepXstate: none is set), xstate holds only the distinct buffers (idle threads share one:
// 10,000 copies of it were 27 MB).
Napi::Value SetThreadsCpu(const Napi::CallbackInfo& info) {
  return guard(info, [&](Napi::Env env) {
    if (!info[0].IsObject()) throwType(env, "cpu must be an object");
    Napi::Object o = info[0].As<Napi::Object>();
    auto tids = copyOut<int32_t>(toBuffer(env, o.Get("tids"), "tids", 4));
    auto regs = copyOut<user_regs_struct>(toBuffer(env, o.Get("regs"), "regs", sizeof(user_regs_struct)));
    auto masks = copyOut<uint64_t>(toBuffer(env, o.Get("masks"), "masks", 8));
    std::vector<uint8_t> xstate;
    std::vector<uint32_t> xstateOf;
    size_t xsize = 0;
    if (!o.Get("xstate").IsUndefined()) {
      auto x = toBuffer(env, o.Get("xstate"), "xstate", 0);
      xstate.assign(x.Data(), x.Data() + x.Length());
      if (o.Get("xstateOf").IsUndefined()) {
        for (size_t i = 0; i < tids.size(); i++) xstateOf.push_back((uint32_t)i);
      } else {
        xstateOf = copyOut<uint32_t>(toBuffer(env, o.Get("xstateOf"), "xstateOf", 4));
        if (xstateOf.size() != tids.size()) throwType(env, "xstateOf is not one index per thread");
      }
      size_t count = 0;
      for (uint32_t k : xstateOf)
        if (k != kKeepXstate) count = std::max(count, (size_t)k + 1);
      xsize = count ? xstate.size() / count : 0;
      if (xsize * count != xstate.size()) throwType(env, "xstate is not a whole number of buffers");
    }
    if (regs.size() != tids.size() || masks.size() != tids.size()) throwType(env, "tids, regs and masks differ in length");
    int first = tids.empty() ? 0 : tids[0];
    auto state = std::make_shared<std::tuple<std::vector<int32_t>, std::vector<user_regs_struct>, std::vector<uint64_t>, std::vector<uint8_t>, std::vector<uint32_t>>>(
        std::move(tids), std::move(regs), std::move(masks), std::move(xstate), std::move(xstateOf));
    return tracerOf(info)->post(env, new FnOp(first, [state, xsize](Op& self, Tracer&) {
      auto& [tids, regs, masks, xstate, xstateOf] = *state;
      for (size_t i = 0; i < tids.size(); i++) {
        int tid = tids[i];
        if (ptrace(PTRACE_SETREGS, tid, 0, &regs[i]) == -1) return self.reject(errnoFailure(errno, "ptrace(PTRACE_SETREGS)", tid));
        if (xsize && xstateOf[i] != kKeepXstate) {
          struct iovec iov = {xstate.data() + xstateOf[i] * xsize, xsize};
          if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) == -1)
            return self.reject(errnoFailure(errno, "ptrace(PTRACE_SETREGSET)", tid, "NT_X86_XSTATE"));
        }
        if (ptrace(PTRACE_SETSIGMASK, tid, sizeof masks[i], &masks[i]) == -1)
          return self.reject(errnoFailure(errno, "ptrace(PTRACE_SETSIGMASK)", tid));
      }
      return self.resolve(nullptr);
    }));
  });
}

// detachAll(tids: i32[]): PTRACE_DETACH each, in order, and forget them; stops at the first failure.
Napi::Value DetachAll(const Napi::CallbackInfo& info) {
  return guard(info, [&](Napi::Env env) {
    auto tids = std::make_shared<std::vector<int32_t>>(copyOut<int32_t>(toBuffer(env, info[0], "tids", 4)));
    int first = tids->empty() ? 0 : (*tids)[0];
    return tracerOf(info)->post(env, new FnOp(first, [tids](Op& self, Tracer& t) {
      for (int tid : *tids) {
        if (ptrace(PTRACE_DETACH, tid, 0, 0) == -1) return self.reject(errnoFailure(errno, "ptrace(PTRACE_DETACH)", tid));
        t.forget(tid);
      }
      return self.resolve(nullptr);
    }));
  });
}

}  // namespace

void InitTracerThreads(Napi::Env env, Napi::Object exports, Tracer* tracer) {
  exports.Set("runThreadLists", Napi::Function::New(env, RunThreadLists, "runThreadLists", tracer));
  exports.Set("setThreadsCpu", Napi::Function::New(env, SetThreadsCpu, "setThreadsCpu", tracer));
  exports.Set("seizeThreads", Napi::Function::New(env, SeizeThreads, "seizeThreads", tracer));
  exports.Set("setOptions", Napi::Function::New(env, SetOptions, "setOptions", tracer));
  exports.Set("detachAll", Napi::Function::New(env, DetachAll, "detachAll", tracer));
}

}  // namespace crr
