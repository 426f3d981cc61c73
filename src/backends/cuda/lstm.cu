// The fused pointwise pass of one LSTM step (LstmArgs, backend.h; lstm.cpp runs the layer):
// from the step's gate pre-activations (the recurrent GEMM's output, x_t w_ih^T already added
// through its residual epilogue) it adds the biases, applies sigmoid / tanh, updates the
// float32 cell state and writes h_t (y[t]), and at the last step h_n and c_n, in one launch.
//
// One thread per (row, hidden unit) element, grid-strided with 64-bit indices, so any B * H
// fits the grid (x only, at most sm_count * 8 blocks). The bias pointers are optional: their
// loads sit behind a test of the pointer (half_io.cuh's ld.global.nc 16-bit loads are volatile,
// so they are never hoisted above it). sigmoid uses __expf (a few ulp; the result is rounded to
// float32 or narrower anyway), tanh the accurate tanhf.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backends/cuda/check.h"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

using i64 = long long;

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + __expf(-x)); }

template <class T>
__global__ void __launch_bounds__(256)
    lstm_cell_kernel(const T* __restrict__ gates, const T* __restrict__ b_ih,
                     const T* __restrict__ b_hh, const T* __restrict__ c_init,
                     float* __restrict__ c, T* __restrict__ h_out, T* __restrict__ h_last,
                     T* __restrict__ c_last, i64 rows, i64 hidden) {
  const i64 n = rows * hidden;
  const i64 stride = static_cast<i64>(gridDim.x) * blockDim.x;
  for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const i64 b = i / hidden;
    const i64 j = i - b * hidden;
    const T* g = gates + b * 4 * hidden;
    float gi = load_f(g + j);
    float gf = load_f(g + hidden + j);
    float gg = load_f(g + 2 * hidden + j);
    float go = load_f(g + 3 * hidden + j);
    if (b_ih) {
      gi += load_f(b_ih + j);
      gf += load_f(b_ih + hidden + j);
      gg += load_f(b_ih + 2 * hidden + j);
      go += load_f(b_ih + 3 * hidden + j);
    }
    if (b_hh) {
      gi += load_f(b_hh + j);
      gf += load_f(b_hh + hidden + j);
      gg += load_f(b_hh + 2 * hidden + j);
      go += load_f(b_hh + 3 * hidden + j);
    }
    const float cp = c_init ? load_f(c_init + i) : c[i];
    const float cn = sigmoid_f(gf) * cp + sigmoid_f(gi) * tanhf(gg);
    c[i] = cn;
    const T h = from_f<T>(sigmoid_f(go) * tanhf(cn));
    h_out[i] = h;
    if (h_last) h_last[i] = h;
    if (c_last) c_last[i] = from_f<T>(cn);
  }
}

template <class T>
void launch_typed(const LstmCellArgs& a, int sm_count, cudaStream_t s) {
  const i64 n = a.rows * a.hidden;
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const i64 want = (n + kThreads - 1) / kThreads;
  const i64 cap = std::max<i64>(1, static_cast<i64>(sm_count) * 8);
  const unsigned blocks = static_cast<unsigned>(std::min(want, cap));
  launch(lstm_cell_kernel<T>, dim3(blocks), dim3(kThreads), 0, s, "lstm_cell",
         static_cast<const T*>(a.gates), static_cast<const T*>(a.b_ih),
         static_cast<const T*>(a.b_hh), static_cast<const T*>(a.c_init), a.c,
         static_cast<T*>(a.h_out), static_cast<T*>(a.h_last), static_cast<T*>(a.c_last),
         static_cast<i64>(a.rows), static_cast<i64>(a.hidden));
}

}  // namespace

void launch_lstm_cell(const LstmCellArgs& a, int sm_count, cudaStream_t s) {
  switch (a.dtype) {
    case DType::f32: return launch_typed<float>(a, sm_count, s);
    case DType::f16: return launch_typed<__half>(a, sm_count, s);
    case DType::bf16: return launch_typed<__nv_bfloat16>(a, sm_count, s);
    default:
      throw_value("lstm", std::string("the CUDA LSTM cell takes float32, float16 or "
                                      "bfloat16, got ") + to_string(a.dtype));
  }
}

}  // namespace lc::cuda
