// The op registry: one definition (OpDef) per op, holding every fact about the op that is not
// its kernel: its name and placement/cost family, its inputs, outputs and attributes (with
// defaults), shape and dtype inference from argument shapes, the work estimate (flops and
// bytes) that placement, calibration and the benchmarks use, and which backend supports which
// storage dtypes and sizes (ggml's supports_op).
//
// Who reads it:
//   - the op front-ends (src/ops/*.cpp) ask `opdefs::X.supports(DeviceKind::cuda, args)` before
//     placing; the OpDef is a global resolved at link time, so the per-call path has no lookup
//     by name;
//   - estimate_work(op name, shapes) (explain_placement, lc.placement, the pipelines' chain
//     decision) finds the OpDef by name (find_op) and calls its `work`;
//   - the Python bindings list the registry as lc.ops() / lc.op_info(name) (the Graph IR's op
//     list).
//
// Adding an op: its name in LC_REGISTERED_OPS below and its OpDef, its front-end in src/ops/,
// one kernel file per backend, its test cases (docs/architecture.md, "Adding an op").
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/placement.h"
#include "lightning_core/dtype.h"
#include "lightning_core/tensor.h"
#include "lightning_core/types.h"

namespace lc {

// A set of storage dtypes (one bit per DType).
struct DTypeSet {
  std::uint32_t bits = 0;
  constexpr bool has(DType d) const { return (bits >> static_cast<unsigned>(d)) & 1u; }
  constexpr DTypeSet operator|(DTypeSet o) const { return {bits | o.bits}; }
};
constexpr DTypeSet dtype_set(std::initializer_list<DType> ds) {
  DTypeSet s;
  for (DType d : ds) s.bits |= 1u << static_cast<unsigned>(d);
  return s;
}
// float32, float16, bfloat16: what every backend computes (in float32).
inline constexpr DTypeSet kFloat16x = dtype_set({DType::f32, DType::f16, DType::bf16});
// ... plus float64 (the CPU computes it in float64).
inline constexpr DTypeSet kFloatAll = kFloat16x | dtype_set({DType::f64});
inline constexpr DTypeSet kF32Only = dtype_set({DType::f32});
inline constexpr DTypeSet kIndexDTypes = dtype_set({DType::i32, DType::i64});

// A borrowed shape (no allocation): a tensor's dims or a std::vector's. Trivial (no member
// initialisers): OpArgs leaves the entries past n unset, which keeps building one a few stores.
struct ShapeRef {
  const std::int64_t* dims;
  int ndim;
  std::int64_t operator[](int i) const { return dims[i]; }
  std::int64_t back() const { return dims[ndim - 1]; }
  double numel() const {
    double n = 1;
    for (int i = 0; i < ndim; ++i) n *= static_cast<double>(dims[i]);
    return n;
  }
};

// What an op's facts are computed from: the shapes of its tensor inputs in OpDef::inputs order
// (an absent optional input has ndim -1), the storage dtype of its float inputs, and the
// attributes that change sizes. Built from tensors on the hot path without allocating.
struct OpArgs {
  static constexpr int kMaxInputs = 8;
  std::array<ShapeRef, kMaxInputs> shapes;  // [0, n) are set
  int n = 0;
  DType dtype = DType::f32;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;  // conv ops
  std::int64_t seq_len = 0, head_dim = 0;  // conv_attention_nchw (0: not given)
  bool batch_first = false;                // lstm: x is [B, T, I] and y [B, T, H]

  OpArgs() = default;
  // From tensors (nullptr: an absent optional input); dtype = the first tensor's, or `dtype`
  // (embedding: the weight's, not the ids').
  OpArgs(std::initializer_list<const Tensor*> ts) {
    bool first = true;
    for (const Tensor* t : ts) {
      if (n == kMaxInputs) break;
      ShapeRef& s = shapes[static_cast<std::size_t>(n++)];
      if (!t) {
        s = {nullptr, -1};
        continue;
      }
      s = {t->shape_data(), t->ndim()};
      if (first) dtype = t->dtype();
      first = false;
    }
  }
  OpArgs(std::initializer_list<const Tensor*> ts, DType dtype) : OpArgs(ts) { this->dtype = dtype; }
  // From shape vectors (the by-name queries); they must outlive the OpArgs.
  static OpArgs of_shapes(const std::vector<std::vector<std::int64_t>>& shapes,
                          DType dtype = DType::f32);
  bool has(int i) const { return i < n && shapes[static_cast<std::size_t>(i)].ndim >= 0; }
  const ShapeRef& operator[](int i) const { return shapes[static_cast<std::size_t>(i)]; }
};

// An input or output of an op.
struct OpInput {
  const char* name = nullptr;
  bool optional = false;
  bool index = false;       // integer ids (int32 / int64), not the op's float storage dtype
  std::int8_t rank = -1;    // exact rank, or -1: any rank >= min_rank
  std::int8_t min_rank = 0;
};
// Constructors for the OpDef tables: a required input of a given rank (-1: any, at least
// min_rank), an optional one, integer ids.
constexpr OpInput in(const char* name, int rank = -1, int min_rank = 0) {
  return {name, false, false, static_cast<std::int8_t>(rank), static_cast<std::int8_t>(min_rank)};
}
constexpr OpInput opt(const char* name, int rank = -1) {
  return {name, true, false, static_cast<std::int8_t>(rank), 0};
}
constexpr OpInput ids(const char* name) { return {name, false, true, -1, 0}; }

enum class AttrType : std::uint8_t { boolean, integer, real, string, ints };  // ints: a tuple of int
const char* to_string(AttrType t);

// An attribute: a non-tensor argument. `default_value` is its Python literal ("False", "1",
// "1e-05", "'tanh'", "None"); nullptr when it has none.
struct OpAttr {
  const char* name = nullptr;
  AttrType type = AttrType::integer;
  const char* default_value = nullptr;
  const char* doc = nullptr;
};

// The inferred result: shape and storage dtype.
struct OpResult {
  std::vector<std::int64_t> shape;
  DType dtype = DType::f32;
};

struct OpDef {
  static constexpr int kMaxIo = 8;
  static constexpr int kMaxAttrs = 10;
  const char* name = nullptr;
  OpFamily family = OpFamily::elementwise;  // placement / cost-model family
  const char* summary = nullptr;  // the Python function's docstring
  std::array<OpInput, kMaxIo> inputs{};     // in call order; unused entries have name nullptr
  std::array<const char*, 3> outputs{};  // attention_backward has three
  std::array<OpAttr, kMaxAttrs> attrs{};
  // Storage dtypes of the op's float inputs per backend (index inputs: kIndexDTypes).
  DTypeSet cpu_dtypes;
  DTypeSet cuda_dtypes;
  // Result shape and dtype from the argument shapes (ValueError naming the op for shapes the
  // op rejects). The front-ends check tensors themselves, with messages about the tensors.
  OpResult (*infer)(const OpDef& d, const OpArgs& a) = nullptr;
  // flops and bytes (host_bytes_out; host_bytes_in is left to the caller: OpRunner::place
  // measures it from the real inputs).
  WorkEstimate (*work)(const OpArgs& a) = nullptr;
  // Size limits of a backend beyond the dtype sets (nullptr: none), e.g. the CUDA attention
  // head dimension, the CUDA conv's 32-bit indexing.
  bool (*size_limits)(DeviceKind be, const OpArgs& a) = nullptr;

  DTypeSet dtypes(DeviceKind be) const {
    return be == DeviceKind::cpu ? cpu_dtypes : be == DeviceKind::cuda ? cuda_dtypes : DTypeSet{};
  }
  // Can backend `be` run this op on these arguments (dtype and sizes)?
  bool supports(DeviceKind be, const OpArgs& a) const {
    return dtypes(be).has(a.dtype) && (!size_limits || size_limits(be, a));
  }
  int num_inputs() const;
  int num_attrs() const;
  // Checks that every required input's shape is given and every given shape has its input's
  // rank (ValueError naming the op, the input and `who`'s context).
  void check_ranks(const OpArgs& a) const;
  // check_ranks without throwing (inline: the bindings ask it per call, for flops_hint).
  bool ranks_ok(const OpArgs& a) const noexcept {
    for (int i = 0; i < kMaxIo && inputs[static_cast<std::size_t>(i)].name; ++i) {
      const OpInput& in = inputs[static_cast<std::size_t>(i)];
      if (!a.has(i)) {
        if (in.optional) continue;
        return false;
      }
      const int nd = a[i].ndim;
      if ((in.rank >= 0 && nd != in.rank) || nd < in.min_rank) return false;
    }
    return true;
  }
  // flops (+ a second stage's) when the shapes have the op's ranks, else 0: the bindings' GIL
  // decision, taken before the op validates its arguments.
  double flops_hint(const OpArgs& a) const noexcept {
    if (!ranks_ok(a)) return 0;
    const WorkEstimate w = work(a);
    return w.flops + w.flops2;
  }
  // check_ranks, then `infer`.
  OpResult infer_result(const OpArgs& a) const;
  // The by-shape estimate (estimate_work): check_ranks, then `work`, with host_bytes_in the
  // bytes of every given input in a.dtype.
  WorkEstimate estimate(const OpArgs& a) const;
};

// The registered ops, in registration order: X(name) per op. Registering an op is its name
// here plus its definition `const OpDef opdefs::name{...}`, either in registry.cpp or in the
// op's own front-end file (src/ops/<op>.cpp, beside its infer/work functions); registry.cpp's
// table references every entry, so the linker keeps each definition's object file.
#define LC_REGISTERED_OPS(X)                                                                   \
  X(matmul2d) X(matmul) X(linear) X(attention2d) X(conv2d_nchw) X(conv_attention_nchw)          \
  X(layernorm) X(softmax) X(vector_add) X(vector_sub) X(vector_mul) X(matrix_sub)               \
  X(vector_scale) X(relu) X(gelu) X(add) X(sub) X(mul) X(div) X(embedding) X(attention)         \
  X(attention_backward) X(lstm) X(elementwise_program)

// Every op's definition. The front-ends use these directly (resolved at link time).
namespace opdefs {
#define LC_DECLARE_OPDEF(NAME) extern const OpDef NAME;
LC_REGISTERED_OPS(LC_DECLARE_OPDEF)
#undef LC_DECLARE_OPDEF
}  // namespace opdefs

// Every registered op, in registration order.
std::span<const OpDef* const> all_ops();
// nullptr when no op has this name.
const OpDef* find_op(std::string_view name);
// find_op, or a ValueError (naming `who`) that lists the registered names.
const OpDef& get_op(std::string_view name, const char* who = "op_info");

// ---- softmax's mask ---------------------------------------------------------------------------
// How softmax reads an additive mask of shape m for x: the mask's last dimension is x's, and its
// others broadcast against x's leading ones (numpy: each is x's size or 1, missing ones count as
// 1) in at most two groups of x's sizes: [.., 1s, outer group, 1s, inner group]. Row r of x then
// reads mask row ((r / (repeat * rows)) % outer) * rows + r % rows (SoftmaxArgs' mask_rows,
// mask_repeat, mask_outer): rows = the inner group's size, repeat = the 1s between the groups,
// outer = the outer group's. For scores [B, H, S, S]: [S, S] and [H, S, S] (trailing: outer 1),
// [B, 1, 1, S] (outer B, repeat H * S, rows 1), [B, 1, S, S], [1, H, 1, S]. ok = false: m does
// not broadcast to x, or only in a pattern of more groups (such as [B, 1, S, 1, S]).
struct SoftmaxMaskLayout {
  bool ok = false;
  std::int64_t rows = 1, repeat = 1, outer = 1;
};
SoftmaxMaskLayout softmax_mask_layout(const ShapeRef& x, const ShapeRef& m);
// The ValueError text for a mask softmax_mask_layout refuses.
std::string softmax_mask_error(const std::vector<std::int64_t>& x,
                               const std::vector<std::int64_t>& m);

// ---- size limits shared by OpDefs and the backends ------------------------------------------
// The CUDA attention kernels' head-dimension limits (d and dv); larger heads run on the CPU.
// The forward kernels have a 512-wide tile config (attention.cu, attention_mha.cu); the backward
// kernels (attention_mha_bwd.cu) stop at 256.
constexpr std::int64_t kCudaMaxHeadDim = 512;
constexpr std::int64_t kCudaMaxHeadDimBackward = 256;

}  // namespace lc
