// The operations of the tracer thread that wait for stops: waiting for a stop, kill and reap,
// a batch through the stub, one syscall through the stub's bare entry (optionally left at its
// syscall-exit stop), and one syscall injected at rip into a task that has no stub yet.
// None saves registers for the caller except injectSyscall, which must put back what it broke.
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include "stub.h"
#include "tracer.h"

namespace crr {

namespace {

Failure unexpected(const char* what, int pid, const Stop& stop) {
  Failure f;
  f.err = 0;
  f.code = "UNEXPECTED_STOP";
  f.syscall = what;
  f.pid = pid;
  f.detail = "stopped by " + stop.describe();
  f.hasStop = true;
  f.stop = stop;
  return f;
}

bool getRegs(int pid, user_regs_struct* regs, Failure* f) {
  if (ptrace(PTRACE_GETREGS, pid, 0, regs) == 0) return true;
  *f = errnoFailure(errno, "ptrace(PTRACE_GETREGS)", pid);
  return false;
}

bool setRegs(int pid, const user_regs_struct* regs, Failure* f) {
  if (ptrace(PTRACE_SETREGS, pid, 0, regs) == 0) return true;
  *f = errnoFailure(errno, "ptrace(PTRACE_SETREGS)", pid);
  return false;
}

bool resume(int request, const char* name, int pid, Failure* f) {
  if (ptrace((__ptrace_request)request, pid, 0, 0) == 0) return true;
  *f = errnoFailure(errno, name, pid);
  return false;
}

void loadArgs(user_regs_struct* r, uint64_t nr, const uint64_t a[6]) {
  r->rax = nr;
  r->rdi = a[0];
  r->rsi = a[1];
  r->rdx = a[2];
  r->r10 = a[3];
  r->r8 = a[4];
  r->r9 = a[5];
  r->orig_rax = (uint64_t)-1;  // trap 1: no syscall-restart on the redirected registers
}

// The int3 at the end of a stub entry: SIGTRAP delivered with rip just past the int3.
bool isTrapAt(int pid, const Stop& stop, uint64_t ripAfter, Failure* f, bool* matched) {
  *matched = false;
  if (stop.kind != Stop::Signal || stop.signal != SIGTRAP) return true;
  user_regs_struct regs;
  if (!getRegs(pid, &regs, f)) return false;
  *matched = regs.rip == ripAfter;
  return true;
}

bool writeRemote(int pid, uint64_t addr, const void* buf, size_t len, Failure* f) {
  struct iovec local = {const_cast<void*>(buf), len};
  struct iovec remote = {(void*)addr, len};
  ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == (ssize_t)len) return true;
  // Fall back to POKEDATA (it writes through page protections); len is a multiple of 8 here.
  const uint64_t* words = (const uint64_t*)buf;
  for (size_t i = 0; i < len / 8; i++) {
    if (ptrace(PTRACE_POKEDATA, pid, addr + i * 8, words[i]) == -1) {
      *f = errnoFailure(errno, "ptrace(PTRACE_POKEDATA)", pid, "writing the stub command list");
      return false;
    }
  }
  return true;
}

class WaitStopOp : public Op {
 public:
  using Op::Op;
  Step start(Tracer&) override { return Wait; }
};

class KillOp : public Op {
 public:
  using Op::Op;
  Step start(Tracer& t) override {
    if (!t.find(pid)) return reject(errnoFailure(ESRCH, "kill", pid, "not a tracee of this tracer"));
    if (kill(pid, SIGKILL) == -1 && errno != ESRCH) return reject(errnoFailure(errno, "kill", pid));
    // Stops reaped before the kill are stale now; the exit is the only news left.
    Tracee* tracee = t.find(pid);
    std::deque<Stop> keep;
    for (const Stop& s : tracee->pending)
      if (s.terminal()) keep.push_back(s);
    tracee->pending.swap(keep);
    return Wait;
  }
  bool wantsStop(const Stop& stop) const override { return stop.terminal(); }
};

class RunBatchOp : public Op {
 public:
  // list: crr_stub_cmd structs back to back, packed by the caller (src/actors/stub.ts); data:
  // the commands' data area, written at dataAddr first (here, not by the main thread)
  RunBatchOp(int pid, uint64_t scratch, std::vector<uint8_t> list, std::vector<uint8_t> data, uint64_t dataAddr)
      : Op(pid), scratch_(scratch), count_(list.size() / CRR_STUB_CMD_SIZE), list_(std::move(list)),
        data_(std::move(data)), dataAddr_(dataAddr) {}

  Step start(Tracer&) override {
    if (count_ > CRR_STUB_MAX_COMMANDS)
      return reject(errnoFailure(EINVAL, "runBatch", pid, "more than CRR_STUB_MAX_COMMANDS commands"));
    if (list_.size() % CRR_STUB_CMD_SIZE)
      return reject(errnoFailure(EINVAL, "runBatch", pid, "list is not a whole number of commands"));
    Failure f;
    if (!data_.empty() && !writeRemote(pid, dataAddr_, data_.data(), data_.size(), &f)) return reject(f);
    std::vector<uint8_t>().swap(data_);
    // Header and list go in one write: they are contiguous in the scratch area.
    crr_stub_header hdr = {};
    hdr.count = count_;
    list_.insert(list_.begin(), (uint8_t*)&hdr, (uint8_t*)&hdr + sizeof hdr);
    auto* cmds = (crr_stub_cmd*)(list_.data() + CRR_STUB_HEADER_SIZE);
    for (size_t i = 0; i < count_; i++) cmds[i].result = -ENOSYS;  // "did not run"
    if (!writeRemote(pid, scratch_ + CRR_STUB_HEADER_OFFSET, list_.data(), list_.size(), &f)) return reject(f);
    user_regs_struct regs;
    if (!getRegs(pid, &regs, &f)) return reject(f);
    regs.rip = scratch_ + CRR_STUB_ENTRY_BATCH;
    regs.r12 = scratch_ + CRR_STUB_HEADER_OFFSET;
    regs.orig_rax = (uint64_t)-1;
    if (!setRegs(pid, &regs, &f)) return reject(f);
    if (!resume(PTRACE_CONT, "ptrace(PTRACE_CONT)", pid, &f)) return reject(f);
    return Wait;
  }

  Step onStop(Tracer&, const Stop& stop) override {
    Failure f;
    bool atTrap = false;
    if (!isTrapAt(pid, stop, scratch_ + CRR_STUB_BATCH_TRAP_END, &f, &atTrap)) return reject(f);
    if (!atTrap) return reject(unexpected("runBatch", pid, stop));
    // The header and every result come back in one read, and go to JS as one Buffer of i64.
    std::vector<uint8_t>& buf = list_;
    struct iovec local = {buf.data(), buf.size()};
    struct iovec remote = {(void*)(scratch_ + CRR_STUB_HEADER_OFFSET), buf.size()};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n != (ssize_t)buf.size())
      return reject(errnoFailure(n < 0 ? errno : EFAULT, "process_vm_readv", pid, "reading batch results"));
    uint64_t executed = ((crr_stub_header*)buf.data())->executed;
    if (executed > count_)
      return reject(errnoFailure(EPROTO, "runBatch", pid, "stub reports more commands than it was given"));
    auto results = std::make_shared<std::vector<int64_t>>(executed);
    auto* cmds = (crr_stub_cmd*)(buf.data() + CRR_STUB_HEADER_SIZE);
    for (uint64_t i = 0; i < executed; i++) (*results)[i] = cmds[i].result;
    return resolve([results](Napi::Env env) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("results", Napi::Buffer<uint8_t>::Copy(env, (uint8_t*)results->data(), results->size() * 8));
      o.Set("executed", (double)results->size());
      return o;
    });
  }

 private:
  uint64_t scratch_;
  size_t count_;
  std::vector<uint8_t> list_;
  std::vector<uint8_t> data_;
  uint64_t dataAddr_;
};

Builder resultBuilder(int64_t result) {
  return [result](Napi::Env env) -> Napi::Value { return Napi::BigInt::New(env, result); };
}

class RunSyscallOp : public Op {
 public:
  RunSyscallOp(int pid, uint64_t scratch, uint64_t nr, const uint64_t args[6], bool stopAtExit)
      : Op(pid), scratch_(scratch), nr_(nr), stopAtExit_(stopAtExit) {
    memcpy(args_, args, sizeof args_);
  }

  Step start(Tracer&) override {
    Failure f;
    user_regs_struct regs;
    if (!getRegs(pid, &regs, &f)) return reject(f);
    loadArgs(&regs, nr_, args_);
    regs.rip = scratch_ + CRR_STUB_ENTRY_SYSCALL;
    if (!setRegs(pid, &regs, &f)) return reject(f);
    if (!resume(PTRACE_SYSCALL, "ptrace(PTRACE_SYSCALL)", pid, &f)) return reject(f);
    phase_ = Entry;
    return Wait;
  }

  Step onStop(Tracer&, const Stop& stop) override {
    Failure f;
    if (phase_ == Entry || phase_ == Exit) {
      if (stop.kind != Stop::Syscall) return reject(unexpected("runSyscall", pid, stop));
      if (phase_ == Entry) {
        if (!resume(PTRACE_SYSCALL, "ptrace(PTRACE_SYSCALL)", pid, &f)) return reject(f);
        phase_ = Exit;
        return Wait;
      }
      user_regs_struct regs;
      if (!getRegs(pid, &regs, &f)) return reject(f);
      result_ = (int64_t)regs.rax;
      if (stopAtExit_) return resolve(resultBuilder(result_));
      if (!resume(PTRACE_CONT, "ptrace(PTRACE_CONT)", pid, &f)) return reject(f);
      phase_ = Trap;
      return Wait;
    }
    bool atTrap = false;
    if (!isTrapAt(pid, stop, scratch_ + CRR_STUB_SYSCALL_TRAP_END, &f, &atTrap)) return reject(f);
    if (!atTrap) return reject(unexpected("runSyscall", pid, stop));
    return resolve(resultBuilder(result_));
  }

 private:
  enum Phase { Entry, Exit, Trap };
  uint64_t scratch_, nr_, args_[6];
  bool stopAtExit_;
  Phase phase_ = Entry;
  int64_t result_ = 0;
};

class InjectSyscallOp : public Op {
 public:
  InjectSyscallOp(int pid, uint64_t nr, const uint64_t args[6]) : Op(pid), nr_(nr) {
    memcpy(args_, args, sizeof args_);
  }

  Step start(Tracer&) override {
    Failure f;
    if (!getRegs(pid, &saved_, &f)) return reject(f);
    errno = 0;
    long word = ptrace(PTRACE_PEEKTEXT, pid, saved_.rip, 0);
    if (errno) return reject(errnoFailure(errno, "ptrace(PTRACE_PEEKTEXT)", pid));
    savedWord_ = (uint64_t)word;
    uint64_t patched = (savedWord_ & ~0xffffffULL) | 0xcc050fULL;  // syscall; int3
    if (ptrace(PTRACE_POKETEXT, pid, saved_.rip, patched) == -1)
      return reject(errnoFailure(errno, "ptrace(PTRACE_POKETEXT)", pid));
    poked_ = true;
    user_regs_struct regs = saved_;
    loadArgs(&regs, nr_, args_);
    if (!setRegs(pid, &regs, &f) || !resume(PTRACE_CONT, "ptrace(PTRACE_CONT)", pid, &f)) {
      putBack();
      return reject(f);
    }
    return Wait;
  }

  Step onStop(Tracer&, const Stop& stop) override {
    if (stop.terminal()) return reject(unexpected("injectSyscall", pid, stop));
    Failure f;
    bool atTrap = false;
    if (!isTrapAt(pid, stop, saved_.rip + 3, &f, &atTrap)) return reject(f);
    if (!atTrap) {
      putBack();
      return reject(unexpected("injectSyscall", pid, stop));
    }
    user_regs_struct regs;
    if (!getRegs(pid, &regs, &f)) return reject(f);
    int64_t result = (int64_t)regs.rax;
    if (!putBack(&f)) return reject(f);
    return resolve(resultBuilder(result));
  }

 private:
  bool putBack(Failure* f = nullptr) {
    Failure ignored;
    Failure* out = f ? f : &ignored;
    if (poked_ && ptrace(PTRACE_POKETEXT, pid, saved_.rip, savedWord_) == -1) {
      *out = errnoFailure(errno, "ptrace(PTRACE_POKETEXT)", pid, "putting the original code back");
      return false;
    }
    poked_ = false;
    return setRegs(pid, &saved_, out);
  }

  uint64_t nr_, args_[6];
  user_regs_struct saved_{};
  uint64_t savedWord_ = 0;
  bool poked_ = false;
};

}  // namespace

Op* makeWaitStop(int pid) { return new WaitStopOp(pid); }
Op* makeKill(int pid) { return new KillOp(pid); }
Op* makeRunBatch(int pid, uint64_t scratch, std::vector<uint8_t> list, std::vector<uint8_t> data, uint64_t dataAddr) {
  return new RunBatchOp(pid, scratch, std::move(list), std::move(data), dataAddr);
}
Op* makeRunSyscall(int pid, uint64_t scratch, uint64_t nr, const uint64_t args[6], bool stopAtExit) {
  return new RunSyscallOp(pid, scratch, nr, args, stopAtExit);
}
Op* makeInjectSyscall(int pid, uint64_t nr, const uint64_t args[6]) {
  return new InjectSyscallOp(pid, nr, args);
}

}  // namespace crr
