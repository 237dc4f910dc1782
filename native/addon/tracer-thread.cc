// The tracer thread: owns every ptrace call of one Node environment, reaps the stops of all its
// tracees with one waitpid(-1, __WALL | __WNOTHREAD) and hands each stop to the operation
// waiting for it. __WNOTHREAD keeps it away from children Node's own threads spawned (libuv
// reaps those by pid). While some operation waits for a stop it polls with an adaptive
// backoff (a condvar sleep, so a posted request wakes it at once: no lost wakeups); with
// nobody waiting it sleeps on the condvar and leaves stops queued in the kernel.
#include "tracer.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <algorithm>

namespace crr {

namespace {
// Between polls, sleep a quarter of the time since the last resume or stop, within these bounds
// (long batches: a few polls). No busy spin first: with many tasks in flight there is nearly
// always a recent stop, and spinning (sched_yield) took the core the tasks and the main thread
// needed (tree-1000 restores 10-25% slower on 2 cores; a 1-task restore no faster).
constexpr auto kMinSleep = std::chrono::microseconds(5);
constexpr auto kMaxSleep = std::chrono::microseconds(500);
// With many tracees the tracer polls only the waited-on ones, and sweeps all after this long quiet
// (per 256 tracees: see reapAll).
constexpr auto kSweepEvery = std::chrono::milliseconds(2);
constexpr auto kReleasePoll = std::chrono::milliseconds(10);

Stop decode(int pid, int status) {
  Stop s;
  s.pid = pid;
  s.waitStatus = status;
  if (WIFEXITED(status)) {
    s.kind = Stop::Exited;
    s.exitCode = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.kind = Stop::Killed;
    s.signal = WTERMSIG(status);
  } else {
    int sig = WSTOPSIG(status);
    int event = (status >> 16) & 0xff;
    s.signal = sig;
    if (event == PTRACE_EVENT_STOP &&
        (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)) {
      s.kind = Stop::GroupStop;
    } else if (event != 0) {
      s.kind = Stop::Event;
      s.event = event;
      unsigned long msg = 0;
      if (ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) == 0) {
        s.eventMsg = msg;
        s.hasEventMsg = true;
      }
    } else if (sig == (SIGTRAP | 0x80)) {
      s.kind = Stop::Syscall;
      s.signal = SIGTRAP;
    } else {
      s.kind = Stop::Signal;
    }
  }
  return s;
}

const char* eventName(int event) {
  switch (event) {
    case PTRACE_EVENT_FORK: return "fork";
    case PTRACE_EVENT_VFORK: return "vfork";
    case PTRACE_EVENT_CLONE: return "clone";
    case PTRACE_EVENT_EXEC: return "exec";
    case PTRACE_EVENT_VFORK_DONE: return "vfork-done";
    case PTRACE_EVENT_EXIT: return "exit";
    case PTRACE_EVENT_SECCOMP: return "seccomp";
    case PTRACE_EVENT_STOP: return "stop";
    default: return "unknown";
  }
}

const char* kindName(Stop::Kind k) {
  switch (k) {
    case Stop::Signal: return "signal";
    case Stop::GroupStop: return "group-stop";
    case Stop::Event: return "event";
    case Stop::Syscall: return "syscall";
    case Stop::Exited: return "exited";
    case Stop::Killed: return "killed";
  }
  return "unknown";
}
}  // namespace

std::string Stop::describe() const {
  std::string d = std::string(kindName(kind));
  if (kind == Exited) return d + " with status " + std::to_string(exitCode);
  if (kind == Event) return d + " " + eventName(event);
  if (kind == Syscall) return d;
  const char* name = sigabbrev_np(signal);
  return d + " SIG" + (name ? name : std::to_string(signal));
}

Failure errnoFailure(int err, const char* syscall, int pid, std::string detail) {
  Failure f;
  f.err = err;
  const char* name = strerrorname_np(err);
  f.code = name ? name : "E" + std::to_string(err);
  f.syscall = syscall;
  f.pid = pid;
  f.detail = std::move(detail);
  return f;
}

Napi::Object stopToJs(Napi::Env env, const Stop& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", kindName(s.kind));
  o.Set("pid", s.pid);
  o.Set("waitStatus", s.waitStatus);
  if (s.kind == Stop::Exited) o.Set("status", s.exitCode);
  if (s.kind != Stop::Exited) o.Set("signal", s.signal);
  if (s.kind == Stop::Event) o.Set("event", eventName(s.event));
  if (s.hasEventMsg) o.Set("eventMsg", Napi::BigInt::New(env, s.eventMsg));
  return o;
}

Napi::Error toJsError(Napi::Env env, const Failure& f) {
  std::string msg = f.syscall + " in pid " + std::to_string(f.pid) + " failed: " + f.code;
  if (!f.detail.empty()) msg += " (" + f.detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, f.code));
  e.Set("errno", Napi::Number::New(env, f.err));
  e.Set("syscall", Napi::String::New(env, f.syscall));
  e.Set("pid", Napi::Number::New(env, f.pid));
  if (!f.detail.empty()) e.Set("detail", Napi::String::New(env, f.detail));
  if (f.hasStop) e.Set("stop", stopToJs(env, f.stop));
  return e;
}

Tracer::Tracer(Napi::Env env) {
  Napi::Function noop = Napi::Function::New(env, [](const Napi::CallbackInfo&) {});
  tsfn_ = Napi::ThreadSafeFunction::New(env, noop, "crr-tracer", 0, 1);
  tsfn_.Unref(env);  // referenced only while operations are outstanding
  thread_ = std::thread([this] { loop(); });
}

Tracer::~Tracer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  cv_.notify_one();
  // The thread's exit ends every ptrace attachment; EXITKILL tracees die with it.
  if (thread_.joinable()) thread_.join();
  for (Op* op : incoming_) delete op;
  tsfn_.Release();
}

Napi::Value Tracer::post(Napi::Env env, Op* op) {
  napi_value promise;
  napi_create_promise(env, &op->deferred, &promise);
  if (outstanding_++ == 0) tsfn_.Ref(env);
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming_.push_back(op);
  }
  cv_.notify_one();
  return Napi::Value(env, promise);
}

void Tracer::settle(Napi::Env env, Op* op) {
  std::unique_ptr<Op> owned(op);
  if (env == nullptr) return;  // environment shutting down
  Napi::HandleScope scope(env);
  if (op->ok) {
    Napi::Value v = op->result ? op->result(env) : env.Undefined();
    napi_resolve_deferred(env, op->deferred, v);
  } else {
    napi_reject_deferred(env, op->deferred, toJsError(env, op->failure).Value());
  }
  if (--outstanding_ == 0) tsfn_.Unref(env);
}

void Tracer::complete(Op* op) {
  if (Op* parent = op->parent) {
    parent->childDone(*this, *op);
    delete op;
    if (--parent->childrenLeft == 0 && !parent->launching) complete(parent);
    return;
  }
  auto status = tsfn_.NonBlockingCall(op, [this](Napi::Env env, Napi::Function, Op* o) { settle(env, o); });
  if (status != napi_ok) delete op;  // closing: nobody is left to tell
}

Tracee* Tracer::find(int pid) {
  auto it = tracees_.find(pid);
  return it == tracees_.end() ? nullptr : &it->second;
}

Tracee& Tracer::track(int pid) { return tracees_[pid]; }

void Tracer::forget(int pid) {
  auto it = tracees_.find(pid);
  if (it == tracees_.end()) return;
  std::vector<Op*> waiters = std::move(it->second.waiters);
  tracees_.erase(it);
  for (Op* op : waiters) {
    waiting_--;
    op->reject(errnoFailure(ECANCELED, "waitpid", pid, "the tracee was detached or forgotten"));
    complete(op);
  }
}

void Tracer::release(int pid) {
  releasing_.insert(pid);
  Tracee* t = find(pid);
  if (t && !t->pending.empty()) letGo(t->pending.front());  // a stop reaped already, nobody took it
}

// A signal the tracee was about to take is passed on with the detach; a group stop stays a
// stop (PTRACE_DETACH from it leaves the task stopped, as the stop signal wanted).
void Tracer::letGo(const Stop& stop) {
  if (!stop.terminal()) ptrace(PTRACE_DETACH, stop.pid, 0, stop.kind == Stop::Signal ? stop.signal : 0);
  releasing_.erase(stop.pid);
  forget(stop.pid);
}

void Tracer::pollReleasing() {
  std::vector<int> pids(releasing_.begin(), releasing_.end());
  for (int pid : pids) {
    int status = 0;
    pid_t got = waitpid(pid, &status, WNOHANG | __WALL | __WNOTHREAD);
    if (got == pid) {
      record(pid, status);
    } else if (got < 0 && errno == ECHILD) {  // no longer ours
      releasing_.erase(pid);
      forget(pid);
    }
  }
}

std::vector<std::pair<int, const Tracee*>> Tracer::tracees() const {
  std::vector<std::pair<int, const Tracee*>> out;
  for (auto& [pid, t] : tracees_) out.emplace_back(pid, &t);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first < b.first; });
  return out;
}

void Tracer::startChildren(Op* parent, std::vector<Op*> children) {
  parent->launching = true;
  parent->childrenLeft += children.size();
  for (Op* child : children) {
    child->parent = parent;
    startOp(child);
  }
  parent->launching = false;
}

// A pid the tracer has no entry for may still be its tracee: a thread auto-attached by
// PTRACE_O_TRACECLONE exists (and is ours) before its first stop is reaped. waitpid on that pid
// tells: ECHILD means not ours; otherwise it is tracked from now on, with the stop if one came.
Tracee* Tracer::adopt(int pid) {
  int status = 0;
  pid_t got = waitpid(pid, &status, WNOHANG | __WALL | __WNOTHREAD);
  if (got < 0) return nullptr;
  Tracee& t = track(pid);
  if (got > 0) {
    Stop stop = decode(pid, status);
    if (stop.terminal()) t.exited = true;
    t.pending.push_back(stop);
  }
  return &t;
}

void Tracer::startOp(Op* op) {
  lastActivity_ = Clock::now();
  Op::Step step = op->start(*this);
  if (step == Op::Children) {
    if (op->childrenLeft == 0) complete(op);  // every child finished during start()
    return;
  }
  if (step == Op::Done) {
    complete(op);
    return;
  }
  Tracee* t = find(op->pid);
  if (!t) t = adopt(op->pid);
  if (!t) {
    op->reject(errnoFailure(ESRCH, "waitpid", op->pid, "not a tracee of this tracer"));
    complete(op);
    return;
  }
  t->waiters.push_back(op);
  watched_.insert(op->pid);
  if (op->hasDeadline && op->deadline < nextDeadline_) nextDeadline_ = op->deadline;
  waiting_++;
  dispatch(op->pid);
}

// Hands queued stops of one tracee to its waiters: a terminal stop to every waiter, any other
// stop to the first waiter that wants it.
void Tracer::dispatch(int pid) {
  Tracee* t = find(pid);
  while (t && !t->pending.empty() && !t->waiters.empty()) {
    Stop stop = t->pending.front();
    std::vector<Op*> done;
    if (stop.terminal()) {
      for (Op* op : t->waiters) {
        if (op->onStop(*this, stop) != Op::Done) op->reject(errnoFailure(ESRCH, "waitpid", pid, "tracee ended"));
        done.push_back(op);
      }
      t->waiters.clear();
      t->pending.pop_front();
    } else {
      auto it = std::find_if(t->waiters.begin(), t->waiters.end(), [&](Op* op) { return op->wantsStop(stop); });
      if (it == t->waiters.end()) break;
      t->pending.pop_front();
      Op* op = *it;
      lastActivity_ = Clock::now();
      if (op->onStop(*this, stop) == Op::Done) {
        t = find(pid);  // onStop may have forgotten the tracee
        if (t) t->waiters.erase(std::find(t->waiters.begin(), t->waiters.end(), op));
        done.push_back(op);
      }
    }
    for (Op* op : done) {
      waiting_--;
      complete(op);
    }
    t = find(pid);
    if (t && t->exited && t->pending.empty()) {
      tracees_.erase(pid);  // reaped and told: nothing of it is left
      t = nullptr;
    }
  }
}

void Tracer::record(int pid, int status) {
  Stop stop = decode(pid, status);
  if (releasing_.count(pid)) {
    letGo(stop);
    return;
  }
  Tracee& t = track(pid);  // unknown pids are auto-attached clones (TRACECLONE)
  if (stop.terminal()) t.exited = true;
  t.pending.push_back(stop);
  dispatch(pid);
}

// waitpid(-1) walks the kernel's whole list of this thread's tracees for every stop it returns
// (oldest tracees last): with 10,000 threads traced that made reaping quadratic. With many
// tracees, poll just the waited-on ones (waitpid on one pid is a lookup), and sweep everything
// once things are quiet for a while, so stops and exits of tracees nobody waits on are still
// reaped (a traced thread's exit keeps its process from being reaped until its tracer collects it).
int Tracer::reapAll() {
  Clock::time_point now = Clock::now();
  // A sweep's waitpid(-1) walks every tracee, so sweeps are spaced in proportion to their number:
  // every 2 ms, 4,000 tracees' sweeps were ~20% of the tracer's time in a tree-4000 restore.
  auto every = kSweepEvery * static_cast<long>(std::max<size_t>(1, tracees_.size() / 256));
  bool quiet = now - lastActivity_ >= every && now - lastSweep_ >= every;
  if (tracees_.size() > 256 && !quiet) {
    int reaped = 0;
    std::vector<int> pids(watched_.begin(), watched_.end());
    for (int pid : pids) {
      Tracee* t = find(pid);
      if (!t || t->waiters.empty()) {
        watched_.erase(pid);
        continue;
      }
      int status = 0;
      pid_t got = 0;
      while (find(pid) && (got = waitpid(pid, &status, WNOHANG | __WALL | __WNOTHREAD)) == pid) {
        reaped++;
        record(pid, status);
      }
      if (got < 0 && errno == ECHILD) watched_.erase(pid);  // not ours (any more): stop polling it
    }
    if (reaped) lastActivity_ = Clock::now();
    return reaped;
  }
  lastSweep_ = now;
  int reaped = 0;
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG | __WALL | __WNOTHREAD);
    if (pid <= 0) break;  // 0: nothing more; -1 ECHILD: no tracees at all
    reaped++;
    record(pid, status);
  }
  if (reaped) lastActivity_ = Clock::now();
  return reaped;
}

void Tracer::expire(Clock::time_point now, Clock::time_point* nearest) {
  std::vector<Op*> expired;
  for (auto& [pid, t] : tracees_) {
    for (auto it = t.waiters.begin(); it != t.waiters.end();) {
      Op* op = *it;
      if (op->hasDeadline && op->deadline <= now) {
        op->reject(errnoFailure(ETIMEDOUT, "waitpid", pid, "no stop before the timeout"));
        expired.push_back(op);
        it = t.waiters.erase(it);
      } else {
        if (op->hasDeadline && op->deadline < *nearest) *nearest = op->deadline;
        ++it;
      }
    }
  }
  for (Op* op : expired) {
    waiting_--;
    complete(op);
  }
}

void Tracer::loop() {
  prctl(PR_SET_NAME, "crr-tracer");
  prctl(PR_SET_TIMERSLACK, 1);  // short sleeps must stay short (default slack is 50 us)
  std::vector<Op*> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (quit_) return;
      batch.swap(incoming_);
    }
    for (Op* op : batch) startOp(op);
    batch.clear();
    if (waiting_ > 0) reapAll();
    if (!releasing_.empty()) pollReleasing();

    Clock::time_point now = Clock::now();
    Clock::time_point nearest = Clock::time_point::max();
    // Scanning every waiter each round was quadratic with thousands waiting: only when one is due.
    if (waiting_ > 0 && now >= nextDeadline_) {
      nextDeadline_ = Clock::time_point::max();
      expire(now, &nearest);
      nextDeadline_ = nearest;
    }
    nearest = nextDeadline_;

    std::unique_lock<std::mutex> lock(mu_);
    if (quit_) return;
    if (!incoming_.empty()) continue;
    if (waiting_ == 0) {
      // A tracee to let go may wake at any time (its wait can last long): looked at now and then.
      if (releasing_.empty()) cv_.wait(lock, [this] { return quit_ || !incoming_.empty(); });
      else cv_.wait_for(lock, kReleasePoll, [this] { return quit_ || !incoming_.empty(); });
      continue;
    }
    auto idle = now - lastActivity_;
    auto sleep = std::clamp<Clock::duration>(idle / 4, kMinSleep, kMaxSleep);
    Clock::time_point until = std::min(now + sleep, nearest);
    cv_.wait_until(lock, until, [this] { return quit_ || !incoming_.empty(); });
  }
}

}  // namespace crr
