// UFFDIO_COPY from crr's own process into a restored task's memory. A userfaultfd acts on the mm
// it was created for, whoever holds it (crr takes the task's with pidfd_getfd), and a copy's
// source is an address in the caller's memory: so crr maps pages-N.img here and copies with
// several threads of its own, on other cores than the task's one stub thread could use
// (docs/PERFORMANCE.md, memory). One job: uffdCopy, on a libuv worker plus extra std::threads
// that take chunks from one shared counter, so a busy core does not hold back the whole copy.
#include <napi.h>

#include "throw-errno.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace {

// A copy that met a changing address space (EAGAIN) is retried from where it stopped; this many
// times in a row without progress is a failure, not a wait.
constexpr int kMaxStalls = 1000;
constexpr unsigned kMaxThreads = 16;

struct Piece {
  uint64_t dst, fileOffset, len;
};

class UffdCopyWorker : public PromiseWorker {
 public:
  UffdCopyWorker(Napi::Env env, int uffd, int srcFd, uint64_t srcLength, std::vector<Piece> pieces,
                 unsigned threads)
      : PromiseWorker(env), uffd_(uffd), srcFd_(srcFd), srcLength_(srcLength),
        pieces_(std::move(pieces)), threads_(threads) {}

  void Execute() override {
    void* src = mmap(nullptr, srcLength_, PROT_READ, MAP_PRIVATE, srcFd_, 0);
    if (src == MAP_FAILED) {
      Fail("mmap", errno);
      return;
    }
    source_ = static_cast<const char*>(src);
    std::vector<std::thread> extra;
    for (unsigned i = 1; i < threads_; i++) extra.emplace_back([this] { CopyPieces(); });
    CopyPieces();
    for (auto& t : extra) t.join();
    munmap(src, srcLength_);
  }

 private:
  Napi::Value Resolved() override { return Napi::Number::New(Env(), static_cast<double>(bytes_)); }
  void AddDetails(Napi::Error& error) override { error.Set("address", Napi::BigInt::New(Env(), failedAt_)); }

  void CopyPieces() {
    for (size_t i = next_++; i < pieces_.size() && !failed_; i = next_++) {
      if (!CopyOne(pieces_[i])) return;
    }
  }

  bool CopyOne(const Piece& p) {
    uint64_t done = 0;
    int stalls = 0;
    while (done < p.len) {
      struct uffdio_copy copy = {};
      copy.dst = p.dst + done;
      copy.src = reinterpret_cast<uint64_t>(source_ + p.fileOffset + done);
      copy.len = p.len - done;
      copy.mode = UFFDIO_COPY_MODE_DONTWAKE;
      int rc = ioctl(uffd_, UFFDIO_COPY, &copy);
      if (copy.copy > 0) {
        done += copy.copy;
        bytes_ += copy.copy;
        stalls = 0;
      }
      if (rc == 0) continue;
      if (errno != EAGAIN || ++stalls > kMaxStalls) return FailAt("UFFDIO_COPY", errno, p.dst + done);
      sched_yield();
    }
    return true;
  }

  // Several copy threads may fail at once: the first failure is the one reported.
  bool FailAt(const char* syscall, int err, uint64_t at) {
    bool first = false;
    if (failed_.compare_exchange_strong(first, true)) {
      Fail(syscall, err);
      failedAt_ = at;
    }
    return false;
  }

  int uffd_, srcFd_;
  uint64_t srcLength_;
  std::vector<Piece> pieces_;
  unsigned threads_;
  const char* source_ = nullptr;
  std::atomic<size_t> next_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<bool> failed_{false};
  uint64_t failedAt_ = 0;
};

Napi::Value ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

// uffdCopy(uffd, srcFd, srcLength, pieces, threads) -> Promise<bytes copied>. `pieces` is a
// BigUint64Array of (dst, fileOffset, len) triples, each copied by one UFFDIO_COPY (retried on
// EAGAIN); the source is srcFd mapped read-only here for the call. Rejects with the errno Error
// of the first failure (code, errno, syscall, address = the dst it failed at).
Napi::Value UffdCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsTypedArray() || !info[4].IsNumber())
    return ThrowType(env, "uffdCopy(uffd, srcFd, srcLength, pieces: BigUint64Array, threads)");
  Napi::TypedArray array = info[3].As<Napi::TypedArray>();
  if (array.TypedArrayType() != napi_biguint64_array || array.ElementLength() % 3 != 0)
    return ThrowType(env, "pieces must be a BigUint64Array of (dst, fileOffset, len) triples");
  const uint64_t* words = info[3].As<Napi::BigUint64Array>().Data();
  std::vector<Piece> pieces(array.ElementLength() / 3);
  for (size_t i = 0; i < pieces.size(); i++) pieces[i] = {words[3 * i], words[3 * i + 1], words[3 * i + 2]};
  double srcLength = info[2].As<Napi::Number>().DoubleValue();
  uint32_t threads = info[4].As<Napi::Number>().Uint32Value();
  if (srcLength <= 0 || threads < 1 || threads > kMaxThreads)
    return ThrowType(env, "srcLength must be positive and threads 1..16");
  for (const Piece& p : pieces)
    if (p.fileOffset + p.len > static_cast<uint64_t>(srcLength))
      return ThrowType(env, "a piece reaches past srcLength");
  auto* worker = new UffdCopyWorker(env, info[0].As<Napi::Number>().Int32Value(),
                                    info[1].As<Napi::Number>().Int32Value(),
                                    static_cast<uint64_t>(srcLength), std::move(pieces), threads);
  return worker->Start();
}

}  // namespace

void InitUffd(Napi::Env env, Napi::Object exports) {
  exports.Set("uffdCopy", Napi::Function::New(env, UffdCopy, "uffdCopy"));
}
