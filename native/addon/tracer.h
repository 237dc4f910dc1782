// Shared declarations of the tracer part of the addon: the tracer thread (tracer-thread.cc),
// the operations it runs (tracer-ops.cc) and the JavaScript surface (tracer.cc).
// Linux binds a tracee to the thread that attached it, so one native thread per Node
// environment owns every ptrace call; JS posts operations and gets promises back.
#pragma once

#include <napi.h>
#include <sys/user.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace crr {

using Clock = std::chrono::steady_clock;

// One decoded wait status of a tracee.
struct Stop {
  enum Kind { Signal, GroupStop, Event, Syscall, Exited, Killed };
  int pid = 0;
  int waitStatus = 0;
  Kind kind = Signal;
  int signal = 0;       // Signal, GroupStop, Killed; SIGTRAP for Event/Syscall
  int event = 0;        // PTRACE_EVENT_* for Event
  uint64_t eventMsg = 0;
  bool hasEventMsg = false;
  int exitCode = 0;     // Exited

  bool terminal() const { return kind == Exited || kind == Killed; }
  std::string describe() const;
};

// A failure as it crosses into JS: errno name, errno, the syscall, the pid; a stop when an
// operation was cut short by one.
struct Failure {
  int err = 0;
  std::string code;  // errno name, or ETIMEDOUT / UNEXPECTED_STOP / EINVAL for our own checks
  std::string syscall;
  int pid = 0;
  std::string detail;
  bool hasStop = false;
  Stop stop;
};

Failure errnoFailure(int err, const char* syscall, int pid, std::string detail = "");
Napi::Error toJsError(Napi::Env env, const Failure& f);
Napi::Object stopToJs(Napi::Env env, const Stop& s);

using Builder = std::function<Napi::Value(Napi::Env)>;

// An operation on one tracee, run on the tracer thread. start() either finishes it or asks to
// wait for the tracee's next stop; onStop() gets stops until it finishes.
class Op {
 public:
  // Children: the op started child ops (parent = this) and finishes when the last one does.
  enum Step { Done, Wait, Children };
  explicit Op(int pid) : pid(pid) {}
  virtual ~Op() = default;
  virtual Step start(class Tracer& t) = 0;
  virtual Step onStop(class Tracer& t, const Stop& stop) { return resolve(stopBuilder(stop)); }
  // A waiter that wants only the end of the tracee (kill) lets other stops pass by.
  virtual bool wantsStop(const Stop& stop) const { return true; }

  Step resolve(Builder value) { ok = true; result = std::move(value); return Done; }
  Step reject(Failure f) { ok = false; failure = std::move(f); return Done; }
  static Builder stopBuilder(const Stop& s) {
    return [s](Napi::Env env) -> Napi::Value { return stopToJs(env, s); };
  }

  // A child op's end goes to its parent (childDone), not to JS; see Tracer::startChild.
  virtual void childDone(class Tracer& t, Op& child) {}

  int pid;
  Op* parent = nullptr;
  size_t childrenLeft = 0;
  bool launching = false;  // children are still being started: none may finish the parent yet
  bool hasDeadline = false;
  Clock::time_point deadline;
  bool ok = true;
  Builder result;
  Failure failure;
  napi_deferred deferred = nullptr;  // touched on the JS thread only
};

// An operation that is a single synchronous step on the tracer thread.
class FnOp : public Op {
 public:
  using Fn = std::function<Step(Op& self, Tracer& t)>;
  FnOp(int pid, Fn fn) : Op(pid), fn_(std::move(fn)) {}
  Step start(Tracer& t) override { return fn_(*this, t); }

 private:
  Fn fn_;
};

struct Tracee {
  std::deque<Stop> pending;   // stops reaped but not yet handed to a waiter
  std::vector<Op*> waiters;   // in arrival order
  bool exited = false;        // a terminal stop has been reaped
};

class Tracer {
 public:
  explicit Tracer(Napi::Env env);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // JS thread: hand an operation to the tracer thread; returns its promise.
  Napi::Value post(Napi::Env env, Op* op);

  // Tracer thread only.
  // Starts child ops of `parent` (from its start(), which then returns Children): each child
  // waits and dispatches like a posted op; the parent is completed when the last one ends.
  void startChildren(Op* parent, std::vector<Op*> children);
  Tracee* find(int pid);
  Tracee& track(int pid);
  void forget(int pid);  // drops the tracee; its waiters fail with ECANCELED
  // Lets a tracee go at its next stop: one seized that did not stop (in an uninterruptible wait)
  // cannot be detached now, and would otherwise stay stopped for this tracer once it wakes.
  void release(int pid);
  std::vector<std::pair<int, const Tracee*>> tracees() const;

 private:
  void loop();
  void startOp(Op* op);
  Tracee* adopt(int pid);
  void complete(Op* op);
  int reapAll();
  void record(int pid, int status);
  void dispatch(int pid);
  void expire(Clock::time_point now, Clock::time_point* nearest);
  void settle(Napi::Env env, Op* op);
  void pollReleasing();
  void letGo(const Stop& stop);

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Op*> incoming_;
  bool quit_ = false;

  Napi::ThreadSafeFunction tsfn_;
  size_t outstanding_ = 0;  // JS thread only

  std::unordered_map<int, Tracee> tracees_;  // tracer thread only
  size_t waiting_ = 0;
  std::unordered_set<int> watched_;  // pids that had a waiter (pruned lazily)
  std::unordered_set<int> releasing_;  // tracees to detach at their next stop
  Clock::time_point nextDeadline_ = Clock::time_point::max();
  Clock::time_point lastSweep_;
  Clock::time_point lastActivity_;
};

// The operations (tracer-ops.cc).
Op* makeWaitStop(int pid);
Op* makeKill(int pid);

Op* makeRunBatch(int pid, uint64_t scratch, std::vector<uint8_t> list, std::vector<uint8_t> data = {}, uint64_t dataAddr = 0);
Op* makeRunSyscall(int pid, uint64_t scratch, uint64_t nr, const uint64_t args[6], bool stopAtExit);
Op* makeInjectSyscall(int pid, uint64_t nr, const uint64_t args[6]);

// tracer-threads.cc: operations on many threads at once.
void InitTracerThreads(Napi::Env env, Napi::Object exports, Tracer* tracer);

}  // namespace crr
