// The persistent LSTM step kernel (lstm.cpp runs the layer): ONE cooperative launch runs all
// T steps of the recurrence after the input projection xg = x w_ih^T (a cuBLASLt GEMM).
//
// Block b owns hidden units [b*U, b*U + U) with all four of their gates: its slice of w_hh
// (4U rows of H, widened to float32) is loaded into shared memory once and stays there for the
// whole sequence, as does the float32 cell state of its units (B x U). Per step a block
//   1. waits until every block has written h_{t-1} (a grid-wide counter in global memory:
//      each block adds 1 after its step, a step starts when the counter reaches t * blocks),
//   2. stages h_{t-1} (all B rows, K-chunks of KC columns; read with ld.global.cg from L2, since
//      other SMs wrote it during this kernel) into shared memory as [B][KP] float32 with an odd
//      row pitch KP (coalesced global reads, conflict-free stores, and the 8 row tiles a warp
//      reads at one k fall in 8 different banks),
//   3. computes its [B, 4U] gate pre-activations: thread (ks, item) with item = (unit u, tile of
//      4 rows) keeps a 4 x 4 (rows x gates) float32 accumulator over its share 1/KS of k, four
//      h values and one float4 of w per k (16 FMAs), the KS partial sums are added through
//      shared memory,
//   4. adds x_t w_ih^T (prefetched before the wait) and the biases, applies sigmoid / tanh,
//      updates the cell state and writes h_t into y[t] (and h_n / c_n at the last step).
// All blocks must be resident at once (the counter wait would otherwise never end): the launch
// is cooperative (cudaLaunchCooperativeKernel refuses a grid that cannot be co-resident) and
// plan_lstm_persistent() checks occupancy first. Shapes that do not fit (the w_hh slice, the
// staged h and the partial sums over the opt-in shared memory per block, more than 256 (unit,
// row-tile) items) are refused by the plan and run on the per-step path (lstm.cpp).
//
// Numerics: products and sums in float32 (also for 16-bit storage; a 16-bit value times a
// 16-bit value is exact in float32), the cell state float32, h_t stored in the storage dtype and
// read back from y[t] as the next step's input (as the per-step path and cuDNN do). float32
// storage is exact float32 whatever the TF32 policy (no tensor cores here).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>

#include "backends/cuda/check.h"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/kernels.h"
#include "backends/cuda/lstm_persistent.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

using i64 = long long;
constexpr int kThreads = 256;
constexpr int kRows = 4;  // rows per thread tile (one float4 of staged h)

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage types");

template <class T>
struct PersistentParams {
  const T* xg;    // [T, B, 4H]
  const T* w_hh;  // [4H, H]
  const T* b_ih;  // [4H] or null
  const T* b_hh;  // [4H] or null
  const T* h0;    // [B, H]
  const T* c0;    // [B, H]
  T* y;           // [T, B, H]
  T* h_n;         // [B, H]
  T* c_n;         // [B, H]
  unsigned long long* counter;  // zero at launch
  i64 steps, rows, hidden;
  int units, blocks, row_tiles, items, ksplit, kchunk, kpitch, rows_padded;
};

// A float from memory other blocks of this kernel write (h_{t-1}): L2 only, never the
// non-coherent or L1 path.
template <class T>
__device__ __forceinline__ float ldcg_f(const T* p) {
  if constexpr (std::is_same_v<T, float>) return __ldcg(p);
  else if constexpr (std::is_same_v<T, __half>) return __half2float(__ldcg(p));
  else return __bfloat162float(__ldcg(p));
}

__device__ __forceinline__ unsigned long long ld_acquire(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Block-wide: wait until `counter` >= target (thread 0 spins; the fence + barrier publish what
// the other blocks wrote before their arrive to every thread of this block).
__device__ __forceinline__ void grid_wait(const unsigned long long* counter,
                                          unsigned long long target) {
  if (threadIdx.x == 0) {
    while (ld_acquire(counter) < target) {
    }
    __threadfence();
  }
  __syncthreads();
}

// Block-wide: this block's writes of the step are done; count it.
__device__ __forceinline__ void grid_arrive(unsigned long long* counter) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1ull);
  }
}

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + __expf(-x)); }

template <class T>
__global__ void __launch_bounds__(kThreads, 1) lstm_persistent_kernel(PersistentParams<T> p) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const i64 B = p.rows, H = p.hidden, G = 4 * H;
  const int U = p.units, nrt = p.row_tiles, items = p.items, KS = p.ksplit, KC = p.kchunk,
            KP = p.kpitch, BP = p.rows_padded;
  float* ws = smem;                                     // [H][U][4] (k, unit, gate)
  float* hs = ws + H * U * 4;                           // [BP][KP] (KP odd, >= KC)
  // [KS][items][kRows][4], float4-aligned after hs
  float* part = hs + ((static_cast<i64>(BP) * KP + 3) / 4) * 4;
  float* cs = part + static_cast<i64>(KS) * items * kRows * 4;  // [B][U]
  float* bs = cs + B * U;                               // [U][4]
  const i64 j0 = static_cast<i64>(blockIdx.x) * U;
  const int tid = threadIdx.x;

  // The block's w_hh slice, biases and initial cell state (k fastest: coalesced reads).
  for (i64 idx = tid; idx < static_cast<i64>(U) * 4 * H; idx += blockDim.x) {
    const i64 k = idx % H, rest = idx / H;
    const int g = static_cast<int>(rest % 4), u = static_cast<int>(rest / 4);
    const i64 j = j0 + u;
    ws[(k * U + u) * 4 + g] = j < H ? load_f(p.w_hh + (g * H + j) * H + k) : 0.0f;
  }
  for (int idx = tid; idx < 4 * U; idx += blockDim.x) {
    const int u = idx / 4, g = idx % 4;
    const i64 j = j0 + u;
    float b = 0.0f;
    if (j < H) {
      if (p.b_ih) b += load_f(p.b_ih + g * H + j);
      if (p.b_hh) b += load_f(p.b_hh + g * H + j);
    }
    bs[idx] = b;
  }
  for (i64 idx = tid; idx < B * U; idx += blockDim.x) {
    const i64 b = idx / U, j = j0 + idx % U;
    cs[idx] = j < H ? load_f(p.c0 + b * H + j) : 0.0f;
  }
  __syncthreads();

  // This thread's part of the gate product: k share `ks` of item (unit u, row tile rt).
  const bool active = tid < items * KS;
  const int ks = tid / items, item = tid % items;
  const int u = item / nrt, rt = item % nrt;
  const bool pre_ok = tid < B * U && j0 + tid % U < H;

  for (i64 t = 0; t < p.steps; ++t) {
    // x_t w_ih^T + biases of this thread's first pointwise element, before the wait.
    float pre[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (pre_ok) {
      const i64 b = tid / U;
      const int uu = tid % U;
      const T* xr = p.xg + (t * B + b) * G + j0 + uu;
#pragma unroll
      for (int g = 0; g < 4; ++g) pre[g] = load_f(xr + g * H) + bs[uu * 4 + g];
    }
    if (t > 0) grid_wait(p.counter, static_cast<unsigned long long>(t) * p.blocks);
    const T* hprev = t == 0 ? p.h0 : p.y + (t - 1) * B * H;

    float acc[kRows][4];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int g = 0; g < 4; ++g) acc[r][g] = 0.0f;
    for (i64 k0 = 0; k0 < H; k0 += KC) {
      const int kc = static_cast<int>(H - k0 < KC ? H - k0 : KC);
      for (int idx = tid; idx < kc * BP; idx += blockDim.x) {
        const int kk = idx % kc, b = idx / kc;
        hs[b * KP + kk] = b < B ? ldcg_f(hprev + b * H + k0 + kk) : 0.0f;
      }
      __syncthreads();
      if (active) {
        const int ka = ks * kc / KS, kb = (ks + 1) * kc / KS;
        const float* hp = hs + rt * kRows * KP;
        const float4* wp = reinterpret_cast<const float4*>(ws) + (k0 * U + u);
        for (int kk = ka; kk < kb; ++kk) {
          const float4 wv = wp[kk * U];
          float h4[kRows];
#pragma unroll
          for (int r = 0; r < kRows; ++r) h4[r] = hp[r * KP + kk];
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            acc[r][0] = fmaf(h4[r], wv.x, acc[r][0]);
            acc[r][1] = fmaf(h4[r], wv.y, acc[r][1]);
            acc[r][2] = fmaf(h4[r], wv.z, acc[r][2]);
            acc[r][3] = fmaf(h4[r], wv.w, acc[r][3]);
          }
        }
      }
      __syncthreads();
    }
    if (active) {
      float4* pp = reinterpret_cast<float4*>(part) + (static_cast<i64>(ks) * items + item) * kRows;
#pragma unroll
      for (int r = 0; r < kRows; ++r) pp[r] = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    }
    __syncthreads();

    const bool last = t == p.steps - 1;
    for (i64 e = tid; e < B * U; e += blockDim.x) {
      const i64 b = e / U;
      const int uu = static_cast<int>(e % U);
      const i64 j = j0 + uu;
      if (j >= H) continue;
      float g4[4];
      if (e == tid) {
#pragma unroll
        for (int g = 0; g < 4; ++g) g4[g] = pre[g];
      } else {
        const T* xr = p.xg + (t * B + b) * G + j;
#pragma unroll
        for (int g = 0; g < 4; ++g) g4[g] = load_f(xr + g * H) + bs[uu * 4 + g];
      }
      const int it = uu * nrt + static_cast<int>(b / kRows), r = static_cast<int>(b % kRows);
      const float4* ps = reinterpret_cast<const float4*>(part) + static_cast<i64>(it) * kRows + r;
      for (int s = 0; s < KS; ++s) {
        const float4 v = ps[static_cast<i64>(s) * items * kRows];
        g4[0] += v.x;
        g4[1] += v.y;
        g4[2] += v.z;
        g4[3] += v.w;
      }
      const float cn = sigmoid_f(g4[1]) * cs[e] + sigmoid_f(g4[0]) * tanhf(g4[2]);
      cs[e] = cn;
      const T h = from_f<T>(sigmoid_f(g4[3]) * tanhf(cn));
      p.y[(t * B + b) * H + j] = h;
      if (last) {
        p.h_n[b * H + j] = h;
        p.c_n[b * H + j] = from_f<T>(cn);
      }
    }
    grid_arrive(p.counter);
  }
}

template <class T>
const void* kernel_of() {
  return reinterpret_cast<const void*>(&lstm_persistent_kernel<T>);
}

const void* kernel_for(DType d) {
  switch (d) {
    case DType::f32: return kernel_of<float>();
    case DType::f16: return kernel_of<__half>();
    case DType::bf16: return kernel_of<__nv_bfloat16>();
    default: return nullptr;
  }
}

// cudaDevAttrCooperativeLaunch of device `dev` (0 when the query fails), read once per device.
bool cooperative_supported(int dev) {
  constexpr int kMaxDevices = 64;
  static int cached[kMaxDevices];  // 0 unknown, 1 yes, 2 no
  static std::mutex mu;
  if (dev < 0 || dev >= kMaxDevices) return false;
  std::lock_guard<std::mutex> g(mu);
  if (cached[dev] == 0) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrCooperativeLaunch, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      v = 0;
    }
    cached[dev] = v ? 1 : 2;
  }
  return cached[dev] == 1;
}

template <class T>
cudaError_t launch_typed(const LstmPersistentArgs& a, const LstmPersistentPlan& pl,
                         cudaStream_t s) {
  PersistentParams<T> p;
  p.xg = static_cast<const T*>(a.xg);
  p.w_hh = static_cast<const T*>(a.w_hh);
  p.b_ih = static_cast<const T*>(a.b_ih);
  p.b_hh = static_cast<const T*>(a.b_hh);
  p.h0 = static_cast<const T*>(a.h0);
  p.c0 = static_cast<const T*>(a.c0);
  p.y = static_cast<T*>(a.y);
  p.h_n = static_cast<T*>(a.h_n);
  p.c_n = static_cast<T*>(a.c_n);
  p.counter = a.counter;
  p.steps = a.steps;
  p.rows = a.rows;
  p.hidden = a.hidden;
  p.units = pl.units;
  p.blocks = pl.blocks;
  p.row_tiles = pl.row_tiles;
  p.items = pl.items;
  p.ksplit = pl.ksplit;
  p.kchunk = pl.kchunk;
  p.kpitch = pl.kpitch;
  p.rows_padded = pl.rows_padded;
  void* args[] = {&p};
  return cudaLaunchCooperativeKernel(kernel_of<T>(), dim3(static_cast<unsigned>(pl.blocks)),
                                     dim3(kThreads), args, pl.smem_bytes, s);
}

}  // namespace

bool plan_lstm_persistent(std::int64_t rows, std::int64_t hidden, DType dtype, int device,
                          int sm_count, std::size_t smem_optin, LstmPersistentPlan& plan) {
  const void* kernel = kernel_for(dtype);
  if (!kernel || rows <= 0 || hidden <= 0 || sm_count <= 0) return false;
  if (!cooperative_supported(device)) return false;
  const i64 B = rows, H = hidden;
  // One block per SM when the units split evenly enough: U units each, all 4 gates.
  const i64 U = (H + sm_count - 1) / sm_count;
  const i64 blocks = (H + U - 1) / U;
  const i64 nrt = (B + kRows - 1) / kRows;
  const i64 items = U * nrt;
  if (items > kThreads) return false;  // every (unit, row tile) needs a thread
  const i64 ks = std::max<i64>(1, std::min<i64>(kThreads / items, H));
  const i64 bp = nrt * kRows;
  const i64 fixed_floats = H * U * 4 + ks * items * kRows * 4 + B * U + 4 * U;
  const i64 budget = static_cast<i64>(smem_optin > 0 ? smem_optin : 48 * 1024);
  const i64 left = budget / static_cast<i64>(sizeof(float)) - fixed_floats;
  if (left <= 0) return false;
  // Staged h: bp rows of pitch kp = kc rounded up to odd, the array rounded up to a float4.
  const i64 kc = std::min<i64>(H, (left - 4) / bp - 1);
  if (kc < std::min<i64>(H, 16)) return false;  // too thin a chunk of h to be worth it
  const i64 kp = kc | 1;
  const std::size_t smem =
      static_cast<std::size_t>(fixed_floats + (bp * kp + 3) / 4 * 4) * sizeof(float);
  if (smem > 48 * 1024 &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(smem)) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) !=
      cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  if (per_sm < 1 || blocks > static_cast<i64>(per_sm) * sm_count) return false;
  plan.units = static_cast<int>(U);
  plan.blocks = static_cast<int>(blocks);
  plan.row_tiles = static_cast<int>(nrt);
  plan.items = static_cast<int>(items);
  plan.ksplit = static_cast<int>(ks);
  plan.kchunk = static_cast<int>(kc);
  plan.kpitch = static_cast<int>(kp);
  plan.rows_padded = static_cast<int>(bp);
  plan.smem_bytes = smem;
  return true;
}

bool launch_lstm_persistent(const LstmPersistentArgs& a, const LstmPersistentPlan& plan,
                            cudaStream_t s) {
  cudaError_t r = cudaSuccess;
  switch (a.dtype) {
    case DType::f32: r = launch_typed<float>(a, plan, s); break;
    case DType::f16: r = launch_typed<__half>(a, plan, s); break;
    case DType::bf16: r = launch_typed<__nv_bfloat16>(a, plan, s); break;
    default:
      throw_value("lstm", std::string("the persistent CUDA LSTM takes float32, float16 or "
                                      "bfloat16, got ") + to_string(a.dtype));
  }
  if (r == cudaErrorCooperativeLaunchTooLarge) {  // not co-resident now: the caller falls back
    (void)cudaGetLastError();
    return false;
  }
  detail::check_cuda(r, "cudaLaunchCooperativeKernel(lstm_persistent)", __FILE__, __LINE__);
  return true;
}

}  // namespace lc::cuda
