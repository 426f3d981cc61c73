// Host-side launchers of the backend's own kernels (defined in the .cu files). Each queues its
// work on the given stream and checks the launch; none synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "backends/backend.h"

namespace lc::cuda {

// elementwise.cu
void launch_elementwise(const ElementwiseArgs& a, int sm_count, cudaStream_t s);
// dst[i] = src[i % have] for i < need, one launch (Backend::tile_cyclic).
void launch_tile_cyclic(float* dst, const float* src, std::int64_t have, std::int64_t need,
                        int sm_count, cudaStream_t s);

// ew_program.cu
// Backend::elementwise_program: one interpreting kernel (float32 / float16 / bfloat16 storage).
void launch_elementwise_program(const EwProgramArgs& a, int sm_count, cudaStream_t s);

// copy.cu
// Backend::copy_strided (any dtype pair; a contiguous same-dtype copy is a cudaMemcpyAsync).
void launch_copy_strided(const StridedCopyArgs& a, int sm_count, cudaStream_t s);
// Backend::embedding (ids outside [0, vocab) write zero rows, never read out of bounds).
void launch_embedding(const EmbeddingArgs& a, int sm_count, cudaStream_t s);
// *first = min(*first, position) over ids outside [0, vocab); the caller initialises *first
// (device memory) to ~0ull and reads it back.
void launch_bad_id_check(const void* ids, DType ids_dtype, std::int64_t n, std::int64_t vocab,
                         unsigned long long* first, int sm_count, cudaStream_t s);

// reduce.cu
// Backend::sum_squares: scratch holds kSumSquaresMaxBlocks + 1 doubles (device memory); the
// float64 result lands in scratch[kSumSquaresMaxBlocks]. t is f32 / f64 / f16 / bf16.
inline constexpr int kSumSquaresMaxBlocks = 1024;
void launch_sum_squares(const void* x, DType t, std::int64_t n, double* scratch, int sm_count,
                        cudaStream_t s);

// norm.cu
void launch_layernorm(const LayerNormArgs& a, cudaStream_t s);
void launch_softmax(const SoftmaxArgs& a, cudaStream_t s);

// Vector-load preconditions the kernels' launchers check: a 16-byte aligned pointer, and
// (batch, head, row) strides in whole vectors of `vec` elements, where a stride of a length-1
// dimension (n[i] == 1) addresses nothing and may be anything.
inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }
inline bool strides_in_vectors(const std::int64_t st[3], const std::int64_t n[3], int vec) {
  for (int i = 0; i < 3; ++i)
    if (n[i] > 1 && st[i] % vec != 0) return false;
  return true;
}

// The kernel-parameter fields every batched attention kernel (attention_mha.cu,
// attention_mha_tc.cu, attention_decode.cu) reads, filled from MhaArgs in one place: pointers,
// (batch, head, row) strides, mask strides and kind (0 none, 1 additive in the storage dtype,
// 2 keep int32, 3 keep int64), sizes (off = sk - sq: causal query i sees keys j <= i + off),
// heads, the GQA group, d, scale * log2(e) (the kernels' exp2 domain) and causal. Fields a
// kernel's struct has beyond those (out, lse, resolved out strides, dv) are filled when present;
// the rest (tiling, grids, vector flags) stay the caller's.
template <class P>
void fill_mha_params(const MhaArgs& a, P& p) {
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.mask = a.mask;
  for (int i = 0; i < 3; ++i) {
    p.qs[i] = a.q_strides[i];
    p.ks[i] = a.k_strides[i];
    p.vs[i] = a.v_strides[i];
  }
  for (int i = 0; i < 4; ++i) p.ms[i] = a.mask_strides[i];
  if constexpr (requires { p.out; }) p.out = a.out;
  if constexpr (requires { p.lse; }) p.lse = a.lse;
  if constexpr (requires { p.os; }) mha_out_strides(a, p.os);
  if constexpr (requires { p.dv; }) p.dv = static_cast<int>(a.dv);
  p.sq = a.sq;
  p.sk = a.sk;
  p.off = a.sk - a.sq;
  p.heads = static_cast<int>(a.heads);
  p.group = static_cast<int>(a.heads / a.kv_heads);
  p.d = static_cast<int>(a.d);
  p.scale_log2 = static_cast<float>(a.scale) * 1.4426950408889634f;
  p.mask_kind = a.mask_kind == MaskKind::none       ? 0
                : a.mask_kind == MaskKind::additive ? 1
                : a.mask_dtype == DType::i32        ? 2
                                                    : 3;
  p.causal = a.causal;
}

// attention.cu (may allocate split-K scratch through the caching allocator)
void launch_attention(const AttentionArgs& a, int sm_count, cudaStream_t s);
// attention_mha.cu: batched multi-head / grouped-query attention (MhaArgs); no scratch.
void launch_attention_mha(const MhaArgs& a, cudaStream_t s);
// attention_mha_tc.cu: the tensor-core forward for float16 / bfloat16 (d == dv, d % 8 == 0,
// d <= 128, 16-byte aligned q / k / v with strides of multiples of 8 elements, sm_80+).
// launch_attention_mha runs it for the calls it takes unless LC_ATTENTION_TC=0
// (attention_mha_tc_enabled, read once); launch_attention_mha_tc returns false, launching
// nothing, for a call it does not take.
bool attention_mha_tc_eligible(const MhaArgs& a);
bool attention_mha_tc_enabled();
bool launch_attention_mha_tc(const MhaArgs& a, cudaStream_t s);
// attention_decode.cu: flash decoding (the keys split across blocks, then a combine pass) for
// a few query rows against a long K/V; float32 partial results in caching-allocator scratch.
// Supported: float32 / float16 / bfloat16, 1 <= sq <= kDecodeMaxQueries, any sk >= 1, d and dv
// multiples of 8 in [8, 256], q/k/v 16-byte aligned with strides in 16-byte vectors.
// launch_attention_mha runs it for the supported calls with sk >= kDecodeMinKeys
// (attention_decode_applies); launch_attention_decode returns false (nothing queued) for a call
// outside the supported set.
inline constexpr std::int64_t kDecodeMaxQueries = 8;
inline constexpr std::int64_t kDecodeMinKeys = 256;
inline constexpr std::int64_t kDecodeMaxSplits = 1024;  // splits per row the combine pass holds
bool attention_decode_supported(const MhaArgs& a);
bool attention_decode_applies(const MhaArgs& a);
bool launch_attention_decode(const MhaArgs& a, cudaStream_t s);
// Flash decoding's scratch and phase 2, shared by both partial kernels: takes
// splits x rows x dv floats (o) and splits x rows float2 (m, l) from the caching allocator,
// calls partial(o, ml) to queue phase 1 into them, queues the combine kernel (out, lse) and
// hands the scratch back (stream order keeps it alive for the queued kernels).
// DecodePartial refers to the caller's callable (a lambda) for the call's duration: no copy and
// no allocation per launch, unlike std::function with a capturing lambda.
struct DecodePartial {
  template <class F>
  DecodePartial(F&& f)  // NOLINT(google-explicit-constructor): built at the call site
      : ctx(const_cast<void*>(static_cast<const void*>(&f))),
        fn([](void* c, float* opart, float2* ml) { (*static_cast<std::remove_reference_t<F>*>(c))(opart, ml); }) {}
  void operator()(float* opart, float2* ml) const { fn(ctx, opart, ml); }
  void* ctx;
  void (*fn)(void*, float*, float2*);
};
void run_decode_splits(const MhaArgs& a, std::int64_t splits, const DecodePartial& partial,
                       cudaStream_t s);
// attention_decode_tc.cu: the partial pass on tensor cores for float16 / bfloat16 (d == dv <=
// 128, d % 8 == 0, masks the same for every row of a block, causal only with sq == 1; sm_80+).
// tiling 0-3 picks the compiled tiling (launch_attention_decode maps the decode variants onto
// them); false, nothing queued, for a call it does not take.
bool attention_decode_tc_supported(const MhaArgs& a);
bool launch_attention_decode_tc(const MhaArgs& a, int tiling, cudaStream_t s);
// attention_mha_bwd.cu: its backward (MhaBackwardArgs); float32 D scratch from the caching
// allocator, handed back once the kernels are queued.
void launch_attention_mha_backward(const MhaBackwardArgs& a, cudaStream_t s);

// conv2d.cu
void launch_conv2d(const Conv2dArgs& a, cudaStream_t s);
// True when this op shape goes to cuDNN (for tests/benchmarks to report the path taken).
bool conv2d_uses_cudnn(const Conv2dArgs& a);

// lstm.cu: one LSTM step's fused pointwise pass (lstm.cpp runs the layer, Backend::lstm).
// gates [rows, 4*hidden] (storage dtype: the step's pre-activations x_t w_ih^T + h w_hh^T) plus
// b_ih / b_hh ([4*hidden], optional) -> i, f, g, o; c [rows, hidden] float32 is the cell state,
// read (unless c_init, the storage-dtype c0 of step 0, is given) and overwritten; h_out gets
// h_t; h_last / c_last (optional, the last step) get h_t and c_t in the storage dtype.
struct LstmCellArgs {
  const void* gates = nullptr;
  const void* b_ih = nullptr;
  const void* b_hh = nullptr;
  const void* c_init = nullptr;
  float* c = nullptr;
  void* h_out = nullptr;
  void* h_last = nullptr;
  void* c_last = nullptr;
  std::int64_t rows = 0, hidden = 0;
  DType dtype = DType::f32;
};
void launch_lstm_cell(const LstmCellArgs& a, int sm_count, cudaStream_t s);
// lstm.cpp: the whole layer (Backend::lstm): input GEMM, then per step a GEMM and
// launch_lstm_cell, the step loop replayed as one CUDA graph (capture.h).
void lstm(const LstmArgs& a);

// A trivial kernel used by available() to prove that this build's machine code runs here.
cudaError_t probe_kernel_image();

}  // namespace lc::cuda
