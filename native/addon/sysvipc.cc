// SysV IPC objects of another task's IPC namespace, read for a dump and made again for a
// restore, by a thread inside that namespace (in-namespace.h): message queues with their
// messages, semaphore sets with their values, shared memory segments with their bytes.
//   sysvIpcRead(nsPath) -> { shm, msg, sem }: every object, by the *_STAT_ANY walk (Linux 4.17+);
//     messages copied with MSG_COPY (they stay queued), segments attached read-only and copied.
//   sysvIpcCreate(nsPath, { shm, msg, sem }): each object made with its id (the namespace's
//     *_next_id sysctl set first, and the id checked), filled, then given its owner and mode.
//   sysvShmRemove(nsPath, ids): segments marked removed again once their tasks attached them.
// An object is { key, id, mode, uid, gid, cuid, cgid } plus: shm { size, data: Buffer };
// msg { qbytes, messages: [{ mtype: bigint, data: Buffer }] }; sem { values: number[] }.
#include <napi.h>

#include "in-namespace.h"
#include "throw-errno.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Desc {
  int32_t key = 0;
  int id = 0;
  uint32_t mode = 0, uid = 0, gid = 0, cuid = 0, cgid = 0;
};

struct Message {
  uint64_t mtype = 0;
  std::vector<uint8_t> data;
};

struct Objects {
  struct Shm {
    Desc desc;
    std::vector<uint8_t> data;
  };
  struct Msg {
    Desc desc;
    uint64_t qbytes = 0;
    std::vector<Message> messages;
  };
  struct Sem {
    Desc desc;
    std::vector<uint16_t> values;
  };
  std::vector<Shm> shm;
  std::vector<Msg> msg;
  std::vector<Sem> sem;
};

union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
  struct seminfo* info;
};

Desc DescOf(const struct ipc_perm& perm, int id) {
  Desc d;
  d.key = perm.__key;
  d.id = id;
  d.mode = perm.mode;
  d.uid = perm.uid;
  d.gid = perm.gid;
  d.cuid = perm.cuid;
  d.cgid = perm.cgid;
  return d;
}

std::string Named(const char* kind, int id) { return std::string("SysV ") + kind + " " + std::to_string(id); }

bool ReadShm(Objects& out, NsFailure& failure) {
  struct shminfo info;
  int maxIndex = shmctl(0, IPC_INFO, reinterpret_cast<struct shmid_ds*>(&info));
  if (maxIndex < 0) {
    failure = {"shmctl", errno, "IPC_INFO"};
    return false;
  }
  for (int index = 0; index <= maxIndex; index++) {
    struct shmid_ds ds;
    int id = shmctl(index, SHM_STAT_ANY, &ds);
    if (id < 0) continue;  // an unused slot
    Objects::Shm shm{DescOf(ds.shm_perm, id), std::vector<uint8_t>(ds.shm_segsz)};
    void* at = shmat(id, nullptr, SHM_RDONLY);
    if (at == reinterpret_cast<void*>(-1)) {
      failure = {"shmat", errno, Named("shm", id)};
      return false;
    }
    memcpy(shm.data.data(), at, ds.shm_segsz);
    shmdt(at);
    out.shm.push_back(std::move(shm));
  }
  return true;
}

bool ReadMsg(Objects& out, NsFailure& failure) {
  struct msginfo info;
  int maxIndex = msgctl(0, IPC_INFO, reinterpret_cast<struct msqid_ds*>(&info));
  if (maxIndex < 0) {
    failure = {"msgctl", errno, "IPC_INFO"};
    return false;
  }
  std::vector<uint8_t> buf(sizeof(long) + static_cast<size_t>(info.msgmax));
  for (int index = 0; index <= maxIndex; index++) {
    struct msqid_ds ds;
    int id = msgctl(index, MSG_STAT_ANY, &ds);
    if (id < 0) continue;
    Objects::Msg msg{DescOf(ds.msg_perm, id), ds.msg_qbytes, {}};
    for (msgqnum_t n = 0; n < ds.msg_qnum; n++) {
      ssize_t got = msgrcv(id, buf.data(), buf.size() - sizeof(long), static_cast<long>(n), IPC_NOWAIT | MSG_COPY);
      if (got < 0) {
        failure = {"msgrcv", errno, Named("msg queue", id) + " message " + std::to_string(n)};
        return false;
      }
      long mtype;
      memcpy(&mtype, buf.data(), sizeof(long));
      msg.messages.push_back({static_cast<uint64_t>(mtype), std::vector<uint8_t>(buf.begin() + sizeof(long), buf.begin() + sizeof(long) + got)});
    }
    out.msg.push_back(std::move(msg));
  }
  return true;
}

bool ReadSem(Objects& out, NsFailure& failure) {
  struct seminfo info;
  semun arg;
  arg.info = &info;
  int maxIndex = semctl(0, 0, IPC_INFO, arg);
  if (maxIndex < 0) {
    failure = {"semctl", errno, "IPC_INFO"};
    return false;
  }
  for (int index = 0; index <= maxIndex; index++) {
    struct semid_ds ds;
    arg.buf = &ds;
    int id = semctl(index, 0, SEM_STAT_ANY, arg);
    if (id < 0) continue;
    Objects::Sem sem{DescOf(ds.sem_perm, id), std::vector<uint16_t>(ds.sem_nsems)};
    arg.array = sem.values.data();
    if (semctl(id, 0, GETALL, arg) < 0) {
      failure = {"semctl", errno, Named("semaphore set", id) + " GETALL"};
      return false;
    }
    out.sem.push_back(std::move(sem));
  }
  return true;
}

Napi::Object DescToJs(Napi::Env env, const Desc& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("key", d.key);
  o.Set("id", d.id);
  o.Set("mode", d.mode);
  o.Set("uid", d.uid);
  o.Set("gid", d.gid);
  o.Set("cuid", d.cuid);
  o.Set("cgid", d.cgid);
  return o;
}

Napi::Value SysvIpcRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "sysvIpcRead(nsPath: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string nsPath = info[0].As<Napi::String>();
  Objects objects;
  NsFailure failure;
  std::thread([&] {
    if (EnterNamespace(nsPath, CLONE_NEWIPC, failure)) ReadShm(objects, failure) && ReadMsg(objects, failure) && ReadSem(objects, failure);
  }).join();
  if (failure.syscall) return ThrowNsFailure(env, failure);
  Napi::Object out = Napi::Object::New(env);
  Napi::Array shm = Napi::Array::New(env, objects.shm.size());
  for (size_t i = 0; i < objects.shm.size(); i++) {
    Napi::Object o = DescToJs(env, objects.shm[i].desc);
    o.Set("size", static_cast<double>(objects.shm[i].data.size()));
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, objects.shm[i].data.data(), objects.shm[i].data.size()));
    shm.Set(i, o);
  }
  Napi::Array msg = Napi::Array::New(env, objects.msg.size());
  for (size_t i = 0; i < objects.msg.size(); i++) {
    Napi::Object o = DescToJs(env, objects.msg[i].desc);
    o.Set("qbytes", static_cast<double>(objects.msg[i].qbytes));
    Napi::Array messages = Napi::Array::New(env, objects.msg[i].messages.size());
    for (size_t m = 0; m < objects.msg[i].messages.size(); m++) {
      const Message& message = objects.msg[i].messages[m];
      Napi::Object mo = Napi::Object::New(env);
      mo.Set("mtype", Napi::BigInt::New(env, message.mtype));
      mo.Set("data", Napi::Buffer<uint8_t>::Copy(env, message.data.data(), message.data.size()));
      messages.Set(m, mo);
    }
    o.Set("messages", messages);
    msg.Set(i, o);
  }
  Napi::Array sem = Napi::Array::New(env, objects.sem.size());
  for (size_t i = 0; i < objects.sem.size(); i++) {
    Napi::Object o = DescToJs(env, objects.sem[i].desc);
    Napi::Array values = Napi::Array::New(env, objects.sem[i].values.size());
    for (size_t v = 0; v < objects.sem[i].values.size(); v++) values.Set(v, objects.sem[i].values[v]);
    o.Set("values", values);
    sem.Set(i, o);
  }
  out.Set("shm", shm);
  out.Set("msg", msg);
  out.Set("sem", sem);
  return out;
}

// --- creating them again ---

uint32_t U32(const Napi::Object& o, const char* name) { return o.Get(name).As<Napi::Number>().Uint32Value(); }

Desc DescFromJs(const Napi::Object& o) {
  Desc d;
  d.key = o.Get("key").As<Napi::Number>().Int32Value();
  d.id = o.Get("id").As<Napi::Number>().Int32Value();
  d.mode = U32(o, "mode");
  d.uid = U32(o, "uid");
  d.gid = U32(o, "gid");
  return d;
}

std::vector<uint8_t> BytesOf(const Napi::Value& v) {
  Napi::Buffer<uint8_t> b = v.As<Napi::Buffer<uint8_t>>();
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

Objects ObjectsFromJs(const Napi::Object& in) {
  Objects out;
  Napi::Array shm = in.Get("shm").As<Napi::Array>();
  for (uint32_t i = 0; i < shm.Length(); i++) {
    Napi::Object o = shm.Get(i).As<Napi::Object>();
    out.shm.push_back({DescFromJs(o), BytesOf(o.Get("data"))});
  }
  Napi::Array msg = in.Get("msg").As<Napi::Array>();
  for (uint32_t i = 0; i < msg.Length(); i++) {
    Napi::Object o = msg.Get(i).As<Napi::Object>();
    Objects::Msg m{DescFromJs(o), static_cast<uint64_t>(o.Get("qbytes").As<Napi::Number>().Int64Value()), {}};
    Napi::Array messages = o.Get("messages").As<Napi::Array>();
    for (uint32_t k = 0; k < messages.Length(); k++) {
      Napi::Object mo = messages.Get(k).As<Napi::Object>();
      bool lossless;
      m.messages.push_back({mo.Get("mtype").As<Napi::BigInt>().Uint64Value(&lossless), BytesOf(mo.Get("data"))});
    }
    out.msg.push_back(std::move(m));
  }
  Napi::Array sem = in.Get("sem").As<Napi::Array>();
  for (uint32_t i = 0; i < sem.Length(); i++) {
    Napi::Object o = sem.Get(i).As<Napi::Object>();
    Objects::Sem s{DescFromJs(o), {}};
    Napi::Array values = o.Get("values").As<Napi::Array>();
    for (uint32_t v = 0; v < values.Length(); v++) s.values.push_back(static_cast<uint16_t>(values.Get(v).As<Napi::Number>().Uint32Value()));
    out.sem.push_back(std::move(s));
  }
  return out;
}

// The next object of this kind gets `id` (the kernel takes the sysctl once, then resets it).
bool SetNextId(const char* kind, int id, NsFailure& failure) {
  std::string path = std::string("/proc/sys/kernel/") + kind + "_next_id";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    failure = {"open", errno, path};
    return false;
  }
  std::string text = std::to_string(id);
  ssize_t n = write(fd, text.data(), text.size());
  int err = errno;
  close(fd);
  if (n < 0) failure = {"write", err, path};
  return n >= 0;
}

// The id the kernel gave must be the dumped one: another object may hold it.
bool CheckId(int got, const Desc& d, const char* syscall, const char* kind, NsFailure& failure) {
  if (got < 0) {
    failure = {syscall, errno, Named(kind, d.id)};
    return false;
  }
  if (got != d.id) {
    failure = {syscall, EEXIST, Named(kind, d.id) + " came back as " + std::to_string(got)};
    return false;
  }
  return true;
}

template <typename Ds>
void SetOwner(Ds& ds, const Desc& d) {
  ds.uid = d.uid;
  ds.gid = d.gid;
  ds.mode = d.mode & 0777;
}

bool CreateShm(const Objects::Shm& shm, NsFailure& failure) {
  const Desc& d = shm.desc;
  if (!SetNextId("shm", d.id, failure)) return false;
  int id = shmget(d.key, shm.data.size(), (d.mode & 0777) | IPC_CREAT | IPC_EXCL);
  if (!CheckId(id, d, "shmget", "shm", failure)) return false;
  void* at = shmat(id, nullptr, 0);
  if (at == reinterpret_cast<void*>(-1)) {
    failure = {"shmat", errno, Named("shm", id)};
    return false;
  }
  memcpy(at, shm.data.data(), shm.data.size());
  shmdt(at);
  struct shmid_ds ds;
  if (shmctl(id, IPC_STAT, &ds) < 0 || (SetOwner(ds.shm_perm, d), shmctl(id, IPC_SET, &ds) < 0)) {
    failure = {"shmctl", errno, Named("shm", id) + " IPC_SET"};
    return false;
  }
  return true;
}

bool CreateMsg(const Objects::Msg& msg, NsFailure& failure) {
  const Desc& d = msg.desc;
  if (!SetNextId("msg", d.id, failure)) return false;
  int id = msgget(d.key, (d.mode & 0777) | IPC_CREAT | IPC_EXCL);
  if (!CheckId(id, d, "msgget", "msg queue", failure)) return false;
  // Size first: the messages must fit. Above kernel.msgmnb it takes CAP_SYS_RESOURCE.
  struct msqid_ds ds;
  if (msgctl(id, IPC_STAT, &ds) < 0) {
    failure = {"msgctl", errno, Named("msg queue", id) + " IPC_STAT"};
    return false;
  }
  ds.msg_qbytes = msg.qbytes;
  if (msgctl(id, IPC_SET, &ds) < 0) {
    failure = {"msgctl", errno, Named("msg queue", id) + " IPC_SET qbytes " + std::to_string(msg.qbytes)};
    return false;
  }
  for (const Message& m : msg.messages) {
    std::vector<uint8_t> buf(sizeof(long) + m.data.size());
    long mtype = static_cast<long>(m.mtype);
    memcpy(buf.data(), &mtype, sizeof(long));
    memcpy(buf.data() + sizeof(long), m.data.data(), m.data.size());
    if (msgsnd(id, buf.data(), m.data.size(), IPC_NOWAIT) < 0) {
      failure = {"msgsnd", errno, Named("msg queue", id)};
      return false;
    }
  }
  SetOwner(ds.msg_perm, d);
  if (msgctl(id, IPC_SET, &ds) < 0) {
    failure = {"msgctl", errno, Named("msg queue", id) + " IPC_SET owner"};
    return false;
  }
  return true;
}

bool CreateSem(Objects::Sem& sem, NsFailure& failure) {
  const Desc& d = sem.desc;
  if (!SetNextId("sem", d.id, failure)) return false;
  int id = semget(d.key, static_cast<int>(sem.values.size()), (d.mode & 0777) | IPC_CREAT | IPC_EXCL);
  if (!CheckId(id, d, "semget", "semaphore set", failure)) return false;
  semun arg;
  arg.array = sem.values.data();
  if (semctl(id, 0, SETALL, arg) < 0) {
    failure = {"semctl", errno, Named("semaphore set", id) + " SETALL"};
    return false;
  }
  struct semid_ds ds;
  arg.buf = &ds;
  if (semctl(id, 0, IPC_STAT, arg) < 0 || (SetOwner(ds.sem_perm, d), semctl(id, 0, IPC_SET, arg) < 0)) {
    failure = {"semctl", errno, Named("semaphore set", id) + " IPC_SET"};
    return false;
  }
  return true;
}

Napi::Value SysvIpcCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    Napi::TypeError::New(env, "sysvIpcCreate(nsPath: string, objects: { shm, msg, sem })").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string nsPath = info[0].As<Napi::String>();
  Objects objects = ObjectsFromJs(info[1].As<Napi::Object>());
  NsFailure failure;
  std::thread([&] {
    if (!EnterNamespace(nsPath, CLONE_NEWIPC, failure)) return;
    for (const auto& shm : objects.shm)
      if (!CreateShm(shm, failure)) return;
    for (const auto& msg : objects.msg)
      if (!CreateMsg(msg, failure)) return;
    for (auto& sem : objects.sem)
      if (!CreateSem(sem, failure)) return;
  }).join();
  if (failure.syscall) return ThrowNsFailure(env, failure);
  return env.Undefined();
}

// sysvShmRemove(nsPath, ids): IPC_RMID of each segment in the IPC namespace at nsPath (it goes
// once its last attachment does: a segment removed while attached, restored).
Napi::Value SysvShmRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "sysvShmRemove(nsPath: string, ids: number[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string nsPath = info[0].As<Napi::String>();
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<int> ids;
  for (uint32_t i = 0; i < list.Length(); i++) ids.push_back(list.Get(i).As<Napi::Number>().Int32Value());
  NsFailure failure;
  std::thread([&] {
    if (!EnterNamespace(nsPath, CLONE_NEWIPC, failure)) return;
    for (int id : ids)
      if (shmctl(id, IPC_RMID, nullptr) < 0) {
        failure = {"shmctl", errno, Named("shm", id) + " IPC_RMID"};
        return;
      }
  }).join();
  if (failure.syscall) return ThrowNsFailure(env, failure);
  return env.Undefined();
}

}  // namespace

void InitSysvIpc(Napi::Env env, Napi::Object exports) {
  exports.Set("sysvShmRemove", Napi::Function::New(env, SysvShmRemove));
  exports.Set("sysvIpcRead", Napi::Function::New(env, SysvIpcRead));
  exports.Set("sysvIpcCreate", Napi::Function::New(env, SysvIpcCreate));
}
