// NCCL, loaded at run time, and the CUDA backend's Communicator (see nccl.h).
//
// Build-time hint (compile definition of this file only, CMakeLists.txt): LC_NCCL_HINT_DIR,
// the directory where CMake found libnccl.
#include "backends/cuda/nccl.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "backends/cuda/context.h"
#include "backends/cuda/vendor_libs.h"
#include "lightning_core/errors.h"

#if __has_include(<nccl.h>)
#include <nccl.h>
#define LC_HAVE_NCCL_H 1
#endif

#ifndef LC_NCCL_HINT_DIR
#define LC_NCCL_HINT_DIR ""
#endif

// NCCL's opaque communicator (nccl.h: typedef struct ncclComm* ncclComm_t).
struct ncclComm;

namespace lc::cuda::nccl {

namespace {

// The slice of NCCL's C ABI we call: its enums are int-sized C enums, passed as int.
using Result = int;    // ncclResult_t
using DataType = int;  // ncclDataType_t
using RedOp = int;     // ncclRedOp_t
using CommT = ncclComm*;
struct UniqueId {
  char internal[kUniqueIdBytes];
};
constexpr Result kSuccess = 0, kInProgress = 7;
constexpr DataType kInt32 = 2, kInt64 = 4, kFloat16 = 6, kFloat32 = 7, kFloat64 = 8,
                   kBfloat16 = 9;
constexpr RedOp kSum = 0, kMax = 2, kMin = 3, kAvg = 4;
// ncclAvg arrived in NCCL 2.10; older releases are refused at load.
constexpr int kMinVersion = 21000;

#ifdef LC_HAVE_NCCL_H
static_assert(sizeof(UniqueId) == sizeof(ncclUniqueId) && NCCL_UNIQUE_ID_BYTES == kUniqueIdBytes);
static_assert(sizeof(ncclResult_t) == sizeof(Result) && sizeof(ncclDataType_t) == sizeof(DataType) &&
              sizeof(ncclRedOp_t) == sizeof(RedOp));
static_assert(ncclSuccess == kSuccess && ncclInProgress == kInProgress);
static_assert(ncclInt32 == kInt32 && ncclInt64 == kInt64 && ncclFloat16 == kFloat16 &&
              ncclFloat32 == kFloat32 && ncclFloat64 == kFloat64 && ncclBfloat16 == kBfloat16);
static_assert(ncclSum == kSum && ncclMax == kMax && ncclMin == kMin && ncclAvg == kAvg);
#endif

// X(name, return type, (parameter types)): the parenthesised list is one macro argument.
#define LC_NCCL_FUNCTIONS(X)                                                                  \
  X(ncclGetVersion, Result, (int*))                                                           \
  X(ncclGetUniqueId, Result, (UniqueId*))                                                     \
  X(ncclCommInitRank, Result, (CommT*, int, UniqueId, int))                                   \
  X(ncclCommInitAll, Result, (CommT*, int, const int*))                                       \
  X(ncclCommDestroy, Result, (CommT))                                                         \
  X(ncclCommAbort, Result, (CommT))                                                           \
  X(ncclCommGetAsyncError, Result, (CommT, Result*))                                          \
  X(ncclGetErrorString, const char*, (Result))                                                \
  X(ncclGetLastError, const char*, (CommT))                                                   \
  X(ncclAllReduce, Result, (const void*, void*, size_t, DataType, RedOp, CommT, cudaStream_t)) \
  X(ncclAllGather, Result, (const void*, void*, size_t, DataType, CommT, cudaStream_t))       \
  X(ncclReduceScatter, Result,                                                                \
    (const void*, void*, size_t, DataType, RedOp, CommT, cudaStream_t))                       \
  X(ncclBroadcast, Result, (const void*, void*, size_t, DataType, int, CommT, cudaStream_t))  \
  X(ncclSend, Result, (const void*, size_t, DataType, int, CommT, cudaStream_t))              \
  X(ncclRecv, Result, (void*, size_t, DataType, int, CommT, cudaStream_t))                    \
  X(ncclGroupStart, Result, ())                                                               \
  X(ncclGroupEnd, Result, ())

#define LC_NCCL_MEMBER(fn, ret, params) ret(*fn) params = nullptr;
struct Api {
  LC_NCCL_FUNCTIONS(LC_NCCL_MEMBER)
};
#undef LC_NCCL_MEMBER

struct Library {
  std::once_flag once;
  std::atomic<bool> done{false};
  bool ok = false;
  Api api;
  std::string path, error;
  int version = 0;
};

Library& storage() {
  static auto* lib = new Library();  // leaked: used until the process ends
  return *lib;
}

Library& lib() {
  Library* l = &storage();
  std::call_once(l->once, [l] {
    const std::string soname = "libnccl.so.2";
    std::vector<std::string> names;
    const char* forced = std::getenv("LC_NCCL_LIBRARY");  // one exact file, nothing else
    if (forced && forced[0]) names.push_back(forced);
    else names = vendor::soname_candidates(soname);
    const std::string hint = LC_NCCL_HINT_DIR;
    if (!(forced && forced[0]) && !hint.empty()) {
      const std::string c = hint + "/" + soname;
      if (std::find(names.begin(), names.end(), c) == names.end()) names.push_back(c);
    }
    std::string tried;
    void* h = vendor::open_first(
        names,
        [l](void* handle) -> std::string {
          Api api;
          std::string missing;
#define LC_NCCL_RESOLVE(fn, ret, params)                                \
  api.fn = reinterpret_cast<ret(*) params>(dlsym(handle, #fn));         \
  if (!api.fn) missing += (missing.empty() ? "" : ", ") + std::string(#fn);
          LC_NCCL_FUNCTIONS(LC_NCCL_RESOLVE)
#undef LC_NCCL_RESOLVE
          if (!missing.empty()) return "lacks " + missing;
          int version = 0;
          if (api.ncclGetVersion(&version) != kSuccess || version < kMinVersion)
            return "NCCL " + std::to_string(version) + ", lc.distributed needs 2.10 or newer";
          l->api = api;
          l->version = version;
          return {};
        },
        &l->path, &tried);
    l->ok = h != nullptr;
    if (!l->ok)
      l->error = "NCCL could not be loaded (tried " + tried +
                 "). lc.distributed needs it for GPU collectives: pip install nvidia-nccl-cu13 "
                 "(found under site-packages/nvidia/nccl/lib), or put the directory holding " +
                 soname + " on LD_LIBRARY_PATH or LC_VENDOR_LIB_DIRS";
    l->done.store(true, std::memory_order_release);
  });
  return *l;
}

const Api& api(const char* op) {
  Library& l = lib();
  if (!l.ok) throw_backend(op, l.error);
  return l.api;
}

[[noreturn]] void fail(const char* op, const char* call, Result r, CommT comm) {
  const Api& a = lib().api;
  std::string msg = std::string(call) + " failed: " + a.ncclGetErrorString(r) + " (ncclResult " +
                    std::to_string(r) + ")";
  const char* last = a.ncclGetLastError ? a.ncclGetLastError(comm) : nullptr;
  if (last && last[0]) msg += ": " + std::string(last);
  throw_backend(op, msg);
}

inline void check(Result r, const char* op, const char* call, CommT comm) {
  if (r != kSuccess) fail(op, call, r, comm);
}

DataType to_nccl(DType t) {
  switch (t) {
    case DType::f32: return kFloat32;
    case DType::f64: return kFloat64;
    case DType::f16: return kFloat16;
    case DType::bf16: return kBfloat16;
    case DType::i32: return kInt32;
    case DType::i64: return kInt64;
  }
  return kFloat32;
}

RedOp to_nccl(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return kSum;
    case ReduceOp::avg: return kAvg;
    case ReduceOp::max: return kMax;
    case ReduceOp::min: return kMin;
  }
  return kSum;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(CommT comm, int rank, int size, int device)
      : comm_(comm), rank_(rank), size_(size), device_(device) {}
  ~NcclCommunicator() override {
    if (aborted_.load()) return;
    try {
      DeviceGuard g(device_);
      (void)lib().api.ncclCommDestroy(comm_);
    } catch (...) {  // a device that went away: nothing left to free
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const override { return device_; }

  void all_reduce(const void* send, void* recv, std::int64_t count, DType dtype,
                  ReduceOp op) override {
    Launch l(*this, "all_reduce");
    if (count <= 0) return;  // every rank has 0 (shapes agree): nothing to move
    op = one_rank_op(op);
    check(l.a.ncclAllReduce(send, recv, static_cast<size_t>(count), to_nccl(dtype), to_nccl(op),
                            comm_, l.stream),
          "all_reduce", "ncclAllReduce", comm_);
  }
  void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) override {
    Launch l(*this, "all_gather");
    if (count <= 0) return;  // every rank has 0 (shapes agree): nothing to move
    check(l.a.ncclAllGather(send, recv, static_cast<size_t>(count), to_nccl(dtype), comm_,
                            l.stream),
          "all_gather", "ncclAllGather", comm_);
  }
  void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                      ReduceOp op) override {
    Launch l(*this, "reduce_scatter");
    if (count <= 0) return;  // every rank has 0 (shapes agree): nothing to move
    op = one_rank_op(op);
    check(l.a.ncclReduceScatter(send, recv, static_cast<size_t>(count), to_nccl(dtype),
                                to_nccl(op), comm_, l.stream),
          "reduce_scatter", "ncclReduceScatter", comm_);
  }
  void broadcast(const void* send, void* recv, std::int64_t count, DType dtype,
                 int root) override {
    Launch l(*this, "broadcast");
    if (count <= 0) return;  // every rank has 0 (shapes agree): nothing to move
    check(l.a.ncclBroadcast(send, recv, static_cast<size_t>(count), to_nccl(dtype), root, comm_,
                            l.stream),
          "broadcast", "ncclBroadcast", comm_);
  }
  void send(const void* buf, std::int64_t count, DType dtype, int peer) override {
    Launch l(*this, "send");
    if (count <= 0) return;  // every rank has 0 (shapes agree): nothing to move
    check(l.a.ncclSend(buf, static_cast<size_t>(count), to_nccl(dtype), peer, comm_, l.stream),
          "send", "ncclSend", comm_);
  }
  void recv(void* buf, std::int64_t count, DType dtype, int peer) override {
    Launch l(*this, "recv");
    if (count <= 0) return;  // every rank has 0 (shapes agree): nothing to move
    check(l.a.ncclRecv(buf, static_cast<size_t>(count), to_nccl(dtype), peer, comm_, l.stream),
          "recv", "ncclRecv", comm_);
  }

  std::string async_error() override {
    if (aborted_.load()) return "the communicator was aborted";
    Result st = kSuccess;
    const Api& a = lib().api;
    const Result r = a.ncclCommGetAsyncError(comm_, &st);
    if (r != kSuccess) st = r;
    if (st == kSuccess || st == kInProgress) return {};
    std::string msg = std::string(a.ncclGetErrorString(st)) + " (ncclResult " + std::to_string(st) + ")";
    const char* last = a.ncclGetLastError(comm_);
    if (last && last[0]) msg += ": " + std::string(last);
    return msg;
  }
  void abort() noexcept override {
    if (aborted_.exchange(true)) return;
    try {
      DeviceGuard g(device_);
      (void)lib().api.ncclCommAbort(comm_);
    } catch (...) {
    }
  }
  bool aborted() const override { return aborted_.load(); }

 private:
  // One enqueue: the library, the communicator's device current, its current stream, and the
  // enqueue bookkeeping of context.h (note_enqueued when the scope ends).
  struct Launch {
    Launch(NcclCommunicator& c, const char* op) : a(api(op)), guard(c.device_) {
      if (c.aborted_.load())
        throw_backend(op, "the communicator of rank " + std::to_string(c.rank_) +
                              " was aborted after an earlier failure (a peer died or timed "
                              "out); call lc.distributed.destroy() and init() again");
      stream = ctx().stream;
    }
    const Api& a;
    DeviceGuard guard;
    cudaStream_t stream = nullptr;
    EnqueueScope enq;
  };

  // With one rank, avg is sum (x / 1 == x). NCCL 2.28.9 (H200, 2026-12-01) left the last
  // count % 2^22 elements of an out-of-place one-rank ncclAvg unwritten at count = 2^22 + 3
  // (sum / max / min were right), so the one-rank case never asks NCCL for ncclAvg.
  ReduceOp one_rank_op(ReduceOp op) const {
    return size_ == 1 && op == ReduceOp::avg ? ReduceOp::sum : op;
  }

  CommT comm_;
  int rank_, size_, device_;
  std::atomic<bool> aborted_{false};
};

}  // namespace

std::string unique_id() {
  const Api& a = api("distributed.init");
  UniqueId id{};
  check(a.ncclGetUniqueId(&id), "distributed.init", "ncclGetUniqueId", nullptr);
  return std::string(id.internal, kUniqueIdBytes);
}

std::unique_ptr<Communicator> init_rank(const std::string& id, int nranks, int rank, int device) {
  const Api& a = api("distributed.init");
  if (id.size() != kUniqueIdBytes)
    throw_value("distributed.init", "the NCCL unique id has " + std::to_string(id.size()) +
                                        " bytes, expected " + std::to_string(kUniqueIdBytes));
  UniqueId uid{};
  std::memcpy(uid.internal, id.data(), kUniqueIdBytes);
  DeviceGuard g(device);
  (void)ctx();  // the device's state (and its CUDA context) exists before NCCL uses it
  CommT comm = nullptr;
  check(a.ncclCommInitRank(&comm, nranks, uid, rank), "distributed.init", "ncclCommInitRank",
        nullptr);
  return std::make_unique<NcclCommunicator>(comm, rank, nranks, device);
}

std::vector<std::unique_ptr<Communicator>> init_all(const std::vector<int>& devices) {
  const Api& a = api("distributed.init_all");
  for (int d : devices) {
    DeviceGuard g(d);
    (void)ctx();
  }
  std::vector<CommT> comms(devices.size(), nullptr);
  check(a.ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data()),
        "distributed.init_all", "ncclCommInitAll", nullptr);
  std::vector<std::unique_ptr<Communicator>> out;
  out.reserve(devices.size());
  for (std::size_t i = 0; i < devices.size(); ++i)
    out.push_back(std::make_unique<NcclCommunicator>(comms[i], static_cast<int>(i),
                                                     static_cast<int>(devices.size()), devices[i]));
  return out;
}

void group_start() {
  check(api("distributed").ncclGroupStart(), "distributed", "ncclGroupStart", nullptr);
}
void group_end() {
  check(api("distributed").ncclGroupEnd(), "distributed", "ncclGroupEnd", nullptr);
}

CollectiveLibraryInfo library_info(bool load) {
  CollectiveLibraryInfo i;
  i.name = "nccl";
  if (load) (void)lib();
  const Library& l = storage();
  if (!l.done.load(std::memory_order_acquire)) return i;
  i.loaded = l.ok;
  i.path = l.path;
  i.error = l.error;
  i.version = l.version;
  return i;
}

}  // namespace lc::cuda::nccl
