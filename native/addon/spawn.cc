// Starting and reaping the launcher helper without child_process: Node's spawn forks the whole
// Node process (page tables of the heap included) and blocks the main thread for it, 2-3 ms per
// restore at a small heap and far more at a large one; posix_spawn (vfork-like in glibc) only
// pauses the caller until the exec. libuv neither knows nor reaps such a child (it waits for
// its own children by PID), and the tracer thread waits with __WNOTHREAD, so reaping it is the
// caller's job: reapChild, on a libuv worker so the main thread never blocks on it.
#include <napi.h>

#include "throw-errno.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace {

// The fd number the helper reads its channel from (native/helper: CRR_CHANNEL_FD).
constexpr int kChannelFd = 3;

// spawnChild(path, channelFd, env: string[]) -> pid. The child gets /dev/null on 0-2, the
// channel on fd 3, default signal dispositions and an empty signal mask (what child_process
// gives too: Node ignores SIGPIPE, and an ignored signal would survive the exec).
Napi::Value SpawnChild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsArray()) {
    Napi::TypeError::New(env, "spawnChild(path: string, channelFd: number, env: string[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  int channel = info[1].As<Napi::Number>().Int32Value();
  Napi::Array envArray = info[2].As<Napi::Array>();
  std::vector<std::string> envStrings;
  for (uint32_t i = 0; i < envArray.Length(); i++) envStrings.push_back(envArray.Get(i).As<Napi::String>());
  std::vector<char*> envp;
  for (auto& s : envStrings) envp.push_back(s.data());
  envp.push_back(nullptr);
  // dup2 onto itself would leave close-on-exec set: move a channel already on fd 3 first.
  int source = channel == kChannelFd ? fcntl(channel, F_DUPFD_CLOEXEC, 10) : channel;
  if (source < 0) return ThrowErrno(env, "fcntl", errno);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_adddup2(&actions, source, kChannelFd);
  // Every signal to SIG_DFL, glibc's internal 32 and 33 included: sigfillset leaves them out,
  // and glibc's spawn sets those two to SIG_IGN in the child (Node has handlers for them),
  // which would survive the exec and be inherited by every restored task.
  sigset_t all, none;
  memset(&all, 0xff, sizeof all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  char* argv[] = {path.data(), nullptr};
  pid_t pid = 0;
  int err = posix_spawn(&pid, path.c_str(), &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (source != channel) close(source);
  if (err != 0) return ThrowErrno(env, "posix_spawn", err);
  return Napi::Number::New(env, pid);
}

class ReapWorker : public PromiseWorker {
 public:
  ReapWorker(Napi::Env env, pid_t pid) : PromiseWorker(env), pid_(pid) {}

  void Execute() override {
    int got;
    do got = waitpid(pid_, &status_, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0) Fail("waitpid", errno);
  }

 private:
  Napi::Value Resolved() override {
    Napi::Object result = Napi::Object::New(Env());
    result.Set("exitCode", WIFEXITED(status_) ? Napi::Number::New(Env(), WEXITSTATUS(status_)) : Env().Null());
    result.Set("signal", WIFSIGNALED(status_) ? Napi::Number::New(Env(), WTERMSIG(status_)) : Env().Null());
    return result;
  }
  void AddDetails(Napi::Error& error) override { error.Set("pid", Napi::Number::New(Env(), pid_)); }

  pid_t pid_;
  int status_ = 0;
};

// reapChild(pid) -> Promise<{ exitCode, signal }>: waitpid on a libuv worker. Only for a child
// spawnChild made and that has been told to exit or killed: the worker waits until it ends.
Napi::Value ReapChild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "reapChild(pid: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return (new ReapWorker(env, info[0].As<Napi::Number>().Int32Value()))->Start();
}

}  // namespace

void InitSpawn(Napi::Env env, Napi::Object exports) {
  exports.Set("spawnChild", Napi::Function::New(env, SpawnChild, "spawnChild"));
  exports.Set("reapChild", Napi::Function::New(env, ReapChild, "reapChild"));
}
