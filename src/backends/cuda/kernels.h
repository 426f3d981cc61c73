// Host-side launchers of the backend's own kernels (defined in the .cu files). Each queues its
// work on the given stream and checks the launch; none synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

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
bool attention_decode_supported(const MhaArgs& a);
bool attention_decode_applies(const MhaArgs& a);
bool launch_attention_decode(const MhaArgs& a, cudaStream_t s);
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
