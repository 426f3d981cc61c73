// embedding(ids, weight): out[..., :] = weight[ids[...], :], a row gather.
//
// ids: int32 or int64, any shape; weight [V, D] float32 / float16 / bfloat16; the result is
// ids.shape + [D] in weight's dtype. An id outside [0, V) is a ValueError naming the op, the id,
// its position and V, raised before anything is written. The check runs where the ids live:
// ids in host memory are scanned on the host (before any upload; ~n ns); ids already in device
// memory are checked by the device: one small kernel that atomicMin's the first bad position
// into an 8-byte flag, its download and a stream synchronisation per call (~10 us of latency on
// a GPU op). The gather kernels never read out of bounds whatever the ids: a bad id gets a zero
// row, which the check keeps callers from ever seeing.
#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/registry.h"

namespace lc {

namespace {

constexpr const char* kOp = "embedding";

void check_embedding(const Tensor& ids, const Tensor& weight) {
  if (ids.dtype() != DType::i32 && ids.dtype() != DType::i64)
    throw_type(kOp, std::string("'ids' must be int32 or int64, got ") + to_string(ids.dtype()) +
                        " with shape " + ids.shape_str() + "; convert it with .astype(np.int64)");
  check_float(kOp, "weight", weight);
  check_ndim(kOp, "weight", weight, 2);
  if (ids.ndim() + 1 > kMaxDims)
    throw_value(kOp, "'ids' has " + std::to_string(ids.ndim()) + " dimensions; at most " +
                         std::to_string(kMaxDims - 1) + " are supported (the result adds one)");
}

std::vector<std::int64_t> out_shape(const Tensor& ids, const Tensor& weight) {
  std::vector<std::int64_t> s = ids.shape();
  s.push_back(weight.size(1));
  return s;
}

// The op's facts come from its OpDef (registry.h); the storage dtype is the weight's.
void place(OpRunner& r, const Tensor& ids, const Tensor& weight) {
  const OpDef& def = opdefs::embedding;
  const OpArgs args({&ids, &weight}, weight.dtype());
  r.place(def.work(args), {&weight, &ids}, def.supports(DeviceKind::cuda, args));
}

// Raises the op's ValueError for the first id of `ids` (contiguous at `p` in be's memory) that
// is outside [0, vocab).
void check_ids(Backend& be, const Tensor& ids, const void* p, std::int64_t vocab) {
  const std::int64_t n = ids.numel();
  if (n == 0) return;
  const std::int64_t pos = be.first_bad_index(p, ids.dtype(), n, vocab);
  if (pos < 0) return;
  const std::size_t isz = dtype_size(ids.dtype());
  std::int64_t id = 0;
  if (ids.dtype() == DType::i32) {
    std::int32_t v = 0;
    be.copy_to_host(&v, static_cast<const char*>(p) + pos * static_cast<std::int64_t>(isz), isz);
    be.synchronize();
    id = v;
  } else {
    be.copy_to_host(&id, static_cast<const char*>(p) + pos * static_cast<std::int64_t>(isz), isz);
    be.synchronize();
  }
  throw_value(kOp, "id " + std::to_string(id) + " (flat position " + std::to_string(pos) +
                       " of ids with shape " + ids.shape_str() +
                       ") is out of range for a weight with V = " + std::to_string(vocab) +
                       " rows; every id must be in [0, " + std::to_string(vocab) + ")");
}

void run(OpRunner& r, const Tensor& ids, const Tensor& weight, Tensor& out) {
  EmbeddingArgs e;
  e.n = ids.numel();
  e.vocab = weight.size(0);
  e.dim = weight.size(1);
  e.dtype = weight.dtype();
  e.ids_dtype = ids.dtype();
  // Every id is checked before anything is written (no partial write into `out`): host ids by
  // a scan on the host (before any upload), ids in device memory by the device (one small
  // kernel and a synchronisation).
  const bool host_ids = ids.device() == DeviceKind::cpu && ids.is_contiguous();
  if (host_ids) check_ids(get_backend(DeviceKind::cpu), ids, ids.data(), e.vocab);
  e.ids = r.in_raw(ids);
  if (!host_ids) check_ids(r.backend(), ids, e.ids, e.vocab);
  e.weight = r.in_raw(weight);
  e.out = r.out_raw(out);
  if (e.n > 0 && e.dim > 0) r.launch([&](Backend& b) { b.embedding(e); });
  r.finish();
}

}  // namespace

std::vector<std::int64_t> embedding_out_shape(const Tensor& ids, const Tensor& weight) {
  check_embedding(ids, weight);
  return out_shape(ids, weight);
}

Tensor embedding(const Tensor& ids, const Tensor& weight, const ExecutionPolicy& p) {
  check_embedding(ids, weight);
  OpRunner r(kOp, p);
  place(r, ids, weight);
  Tensor out = r.result(out_shape(ids, weight), weight.dtype());
  run(r, ids, weight, out);
  return out;
}

void embedding_into(const Tensor& ids, const Tensor& weight, Tensor& out, const ExecutionPolicy& p) {
  check_embedding(ids, weight);
  check_out(kOp, out, out_shape(ids, weight), weight.dtype());
  OpRunner r(kOp, p);
  place(r, ids, weight);
  run(r, ids, weight, out);
}

}  // namespace lc
