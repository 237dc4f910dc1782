// Helper channels (SOCK_SEQPACKET) read and written here instead of through a net.Socket (which
// refuses a SEQPACKET fd unless built on an internal pipe_wrap handle): one libuv poll handle per
// channel on Node's loop, each packet read handed to JavaScript as one Buffer, each request sent
// with one send(2). Cheaper too: such a net.Socket cost about 45 us to make and destroy, and a
// 1,000-task restore makes 1,000 channels.
#include <napi.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>

#include "throw-errno.h"

namespace {

// Answers are capped below this by the helper (native/helper/main.c).
constexpr size_t kMaxPacket = 64 * 1024;

struct Channel {
  uv_poll_t poll;
  napi_env env;
  int fd;
  int events = UV_READABLE;
  bool closed = false;         // channelClose was called: no callback runs any more
  bool handleClosed = false;   // libuv let go of the poll handle (and the fd is closed)
  bool collected = false;      // JavaScript's handle to it was garbage-collected
  Napi::FunctionReference onPacket;    // (packet: Buffer)
  Napi::FunctionReference onEnd;       // () the peer closed, or the channel failed
  Napi::FunctionReference onWritable;  // () a send that found the channel full may go again
};

void Call(Channel* ch, Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args) {
  Napi::Env env(ch->env);
  Napi::HandleScope scope(env);
  // MakeCallback, not Call: promises the callback settles run their reactions on the way out.
  fn.MakeCallback(env.Global(), args);
  // A throw in the callback is Node's uncaught exception, as in a stream's 'data' listener.
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

// The peer is gone or the channel failed: no more events until JavaScript closes it.
void End(Channel* ch) {
  uv_poll_stop(&ch->poll);
  Call(ch, ch->onEnd, {});
}

void DeleteChannel(uv_handle_t* handle) { delete static_cast<Channel*>(handle->data); }

// The struct lives until both libuv and JavaScript are done with it: a call on a closed
// channel must find it (and its `closed`), not freed memory.
void OnHandleClosed(uv_handle_t* handle) {
  auto* ch = static_cast<Channel*>(handle->data);
  close(ch->fd);
  ch->handleClosed = true;
  if (ch->collected) delete ch;
}

void OnCollected(Napi::Env, Channel* ch) {
  ch->collected = true;
  if (ch->handleClosed) delete ch;
}

void OnEvent(uv_poll_t* handle, int status, int events) {
  auto* ch = static_cast<Channel*>(handle->data);
  if (status < 0) {
    End(ch);
    return;
  }
  if (events & UV_WRITABLE) {
    ch->events &= ~UV_WRITABLE;
    uv_poll_start(&ch->poll, ch->events, OnEvent);
    Call(ch, ch->onWritable, {});
    if (ch->closed) return;
  }
  if (!(events & UV_READABLE)) return;
  static char buffer[kMaxPacket];
  while (!ch->closed) {
    ssize_t n = recv(ch->fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {  // end of file, or a reset by a helper killed with requests unread
      End(ch);
      return;
    }
    Napi::Env env(ch->env);
    Napi::HandleScope scope(env);
    Call(ch, ch->onPacket, {Napi::Buffer<char>::Copy(env, buffer, n)});
  }
}

Channel* ChannelOf(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) return nullptr;
  Channel* ch = info[0].As<Napi::External<Channel>>().Data();
  return ch->closed ? nullptr : ch;
}

// channelOpen(fd, onPacket, onEnd, onWritable) -> channel
Napi::Value ChannelOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsFunction() || !info[2].IsFunction() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "channelOpen(fd, onPacket, onEnd, onWritable)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  auto* ch = new Channel();
  ch->env = env;
  ch->fd = info[0].As<Napi::Number>().Int32Value();
  int err = uv_poll_init(loop, &ch->poll, ch->fd);
  if (err != 0) {
    delete ch;
    return ThrowErrno(env, "uv_poll_init", -err);
  }
  ch->poll.data = ch;
  err = uv_poll_start(&ch->poll, ch->events, OnEvent);
  if (err != 0) {  // the fd stays the caller's
    uv_close(reinterpret_cast<uv_handle_t*>(&ch->poll), DeleteChannel);
    return ThrowErrno(env, "uv_poll_start", -err);
  }
  ch->onPacket = Napi::Persistent(info[1].As<Napi::Function>());
  ch->onEnd = Napi::Persistent(info[2].As<Napi::Function>());
  ch->onWritable = Napi::Persistent(info[3].As<Napi::Function>());
  return Napi::External<Channel>::New(env, ch, OnCollected);
}

// channelSend(channel, packet) -> true (sent) | false (the channel is full: onWritable follows)
Napi::Value ChannelSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Channel* ch = ChannelOf(info);
  if (!ch) return ThrowErrno(env, "send", EBADF);
  auto packet = info[1].As<Napi::Buffer<char>>();
  for (;;) {
    ssize_t n = send(ch->fd, packet.Data(), packet.Length(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return ThrowErrno(env, "send", errno);
    ch->events |= UV_WRITABLE;
    uv_poll_start(&ch->poll, ch->events, OnEvent);
    return Napi::Boolean::New(env, false);
  }
}

// channelClose(channel): no callback runs after it; the fd is closed once libuv let go of it.
Napi::Value ChannelClose(const Napi::CallbackInfo& info) {
  Channel* ch = ChannelOf(info);
  if (!ch) return info.Env().Undefined();
  ch->closed = true;
  ch->onPacket.Reset();
  ch->onEnd.Reset();
  ch->onWritable.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&ch->poll), OnHandleClosed);
  return info.Env().Undefined();
}

// channelRef(channel, keepsNodeRunning)
Napi::Value ChannelRef(const Napi::CallbackInfo& info) {
  Channel* ch = ChannelOf(info);
  if (!ch) return info.Env().Undefined();
  auto* handle = reinterpret_cast<uv_handle_t*>(&ch->poll);
  if (info[1].ToBoolean().Value()) uv_ref(handle);
  else uv_unref(handle);
  return info.Env().Undefined();
}

}  // namespace

void InitChannel(Napi::Env env, Napi::Object exports) {
  exports.Set("channelOpen", Napi::Function::New(env, ChannelOpen, "channelOpen"));
  exports.Set("channelSend", Napi::Function::New(env, ChannelSend, "channelSend"));
  exports.Set("channelClose", Napi::Function::New(env, ChannelClose, "channelClose"));
  exports.Set("channelRef", Napi::Function::New(env, ChannelRef, "channelRef"));
}
