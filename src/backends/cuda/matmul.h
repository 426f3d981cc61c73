// cuBLASLt matmul / linear for the CUDA backend, plus the hooks the auto-tuner uses.
//
// Row-major C[m,n] = A[m,k] B is computed as the column-major product C^T = B^T A^T, i.e. the
// operands are swapped (no copies). trans_b (B given as [n,k], nn.Linear's weight) becomes
// CUBLAS_OP_T on that operand. bias + relu/gelu are fused as cuBLASLt epilogues.
// Precision: fp32 -> CUBLAS_COMPUTE_32F (exact fp32, no TF32), tf32 -> COMPUTE_32F_FAST_TF32,
// bf16 -> COMPUTE_32F_FAST_16BF; those modes apply to float32 storage only. float16 / bfloat16
// storage: CUDA_R_16F / CUDA_R_16BF operands, bias and output with CUBLAS_COMPUTE_32F (tensor
// cores, float32 accumulation, float32 alpha/beta), whatever the policy's precision.
// Residual (MatmulArgs::residual): cuBLASLt's C operand with beta = 1, so D = act(A B + C + bias)
// in one call. Batches: one strided-batched call (BATCH_COUNT, STRIDED_BATCH_OFFSET per layout;
// stride 0 for a broadcast operand). Descriptors and heuristic results are cached per
// (m, k, n, trans_b, epilogue, precision, dtype, residual, batch, strides, alignment).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "backends/backend.h"

namespace lc::cuda {

// Runs with the cached choice (the tuner's remembered winner, else heuristic #0).
void matmul(const MatmulArgs& a);

struct MatmulAlgoInfo {
  int index = 0;                  // pass to matmul_with_algo / matmul_set_algo
  int algo_id = -1;               // CUBLASLT_ALGO_CONFIG_ID
  int tile = -1;                  // CUBLASLT_ALGO_CONFIG_TILE_ID
  int stages = -1;                // CUBLASLT_ALGO_CONFIG_STAGES_ID
  int splitk = -1;                // CUBLASLT_ALGO_CONFIG_SPLITK_NUM
  std::size_t workspace_bytes = 0;
  float waves = 0.0f;             // heuristic's wave count estimate
};

// Up to max_algos heuristic candidates for this shape/epilogue/precision (only sizes, flags,
// act, precision and whether bias is null are read from `a`; pointers may be null).
std::vector<MatmulAlgoInfo> matmul_list_algos(const MatmulArgs& a, int max_algos = 8);
// Runs the product with candidate `index` of matmul_list_algos(a, >index). Throws
// lc::ValueError if the index is out of range.
void matmul_with_algo(const MatmulArgs& a, int index);
// out = act(bias + residual) for k == 0 (an empty sum), any dtype and batch (matmul_fill.cu).
void launch_matmul_fill(const MatmulArgs& a, cudaStream_t s);
// Remembers candidate `index` as the one matmul() uses for this key from now on.
void matmul_set_algo(const MatmulArgs& a, int index);

}  // namespace lc::cuda
