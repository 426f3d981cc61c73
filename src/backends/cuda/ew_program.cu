// Elementwise programs on CUDA (Backend::elementwise_program, EwProgramArgs): one kernel that
// interprets the program held in its own parameters (no runtime compilation).
//
// The whole EwProgramArgs (~650 bytes: program, pointers, dtypes, shape, strides) is the
// kernel's one __grid_constant__ parameter, so the instructions are read from the constant
// bank (warp-uniform: every thread runs the same instruction, the switch never diverges) and
// the struct is never copied per thread. Each thread keeps the register file
// (kEwProgMaxRegs floats) in local memory (dynamically indexed; it stays in L1); the constants
// are written into it once per thread, the inputs per element.
//
// Three shapes of work, all grid-stride with int64 indices, the grid sized to fill the GPU
// (8 blocks of 256 threads per SM) and looping over any n:
//   vec4     every input and out contiguous with the result's shape, and every pointer aligned
//            to 4 elements: 4 elements per step (one 16-byte load per float32 input, 8 bytes per
//            16-bit one), a scalar tail of n % 4;
//   flat     contiguous but unaligned: one element per step;
//   strided  ndim > 0 (broadcast / strided inputs): each element decomposes its index over the
//            (merged) shape once and every input's offset follows from its strides.
// Computed in float32 whatever the storage (float32 / float16 / bfloat16 per input); out is
// rounded once. float64 never reaches here (the registry keeps it on the CPU).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backends/cuda/device_math.cuh"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage types");
static_assert(sizeof(EwProgramArgs) <= 4000, "EwProgramArgs must fit in a kernel's parameters");

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load_in(const void* p, DType t, std::int64_t i) {
  if (t == DType::f16) return load_f(static_cast<const __half*>(p) + i);
  if (t == DType::bf16) return load_f(static_cast<const __nv_bfloat16*>(p) + i);
  return __ldg(static_cast<const float*>(p) + i);
}

__device__ __forceinline__ void store_out(void* p, DType t, std::int64_t i, float v) {
  if (t == DType::f16) static_cast<__half*>(p)[i] = __float2half_rn(v);
  else if (t == DType::bf16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  else static_cast<float*>(p)[i] = v;
}

__device__ __forceinline__ float u16_to_f(unsigned short u, DType t) {
  return t == DType::f16 ? __half2float(__ushort_as_half(u)) : __bfloat162float(__ushort_as_bfloat16(u));
}
__device__ __forceinline__ unsigned short f_to_u16(float v, DType t) {
  return t == DType::f16 ? __half_as_ushort(__float2half_rn(v))
                         : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

// Elements [4g, 4g + 4) of input p (aligned to 4 elements: checked by the launcher).
__device__ __forceinline__ void load4(const void* p, DType t, std::int64_t g, float* v) {
  if (t == DType::f32) {
    const float4 q = __ldg(static_cast<const float4*>(p) + g);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    const uint2 q = __ldg(static_cast<const uint2*>(p) + g);
    v[0] = u16_to_f(static_cast<unsigned short>(q.x & 0xffffu), t);
    v[1] = u16_to_f(static_cast<unsigned short>(q.x >> 16), t);
    v[2] = u16_to_f(static_cast<unsigned short>(q.y & 0xffffu), t);
    v[3] = u16_to_f(static_cast<unsigned short>(q.y >> 16), t);
  }
}
__device__ __forceinline__ void store4(void* p, DType t, std::int64_t g, const float* v) {
  if (t == DType::f32) {
    static_cast<float4*>(p)[g] = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    uint2 q;
    q.x = static_cast<unsigned>(f_to_u16(v[0], t)) | (static_cast<unsigned>(f_to_u16(v[1], t)) << 16);
    q.y = static_cast<unsigned>(f_to_u16(v[2], t)) | (static_cast<unsigned>(f_to_u16(v[3], t)) << 16);
    static_cast<uint2*>(p)[g] = q;
  }
}

// NaN-propagating max / min (numpy's maximum / minimum; fmaxf would drop the NaN).
__device__ __forceinline__ float max_nan(float a, float b) { return (a != a || a > b) ? a : b; }
__device__ __forceinline__ float min_nan(float a, float b) { return (a != a || a < b) ? a : b; }

// Runs the program over registers r (inputs and constants already in place); returns the result.
__device__ __forceinline__ float eval(const EwProgram& prog, float* r) {
  const int n = prog.n_instrs;
#pragma unroll 1
  for (int i = 0; i < n; ++i) {
    const EwInstr in = prog.code[i];
    const float a = r[in.a];
    const float b = r[in.b];
    float y;
    switch (in.op) {
      case EwOp::add: y = a + b; break;
      case EwOp::sub: y = a - b; break;
      case EwOp::mul: y = a * b; break;
      case EwOp::div: y = a / b; break;
      case EwOp::max: y = max_nan(a, b); break;
      case EwOp::min: y = min_nan(a, b); break;
      case EwOp::neg: y = -a; break;
      case EwOp::abs: y = fabsf(a); break;
      case EwOp::exp: y = expf(a); break;
      case EwOp::log: y = logf(a); break;
      case EwOp::sqrt: y = sqrtf(a); break;
      case EwOp::rsqrt: y = rsqrtf(a); break;
      case EwOp::tanh: y = tanhf(a); break;
      case EwOp::sigmoid: y = 1.0f / (1.0f + expf(-a)); break;
      case EwOp::relu: y = relu_f(a); break;
      case EwOp::gelu: y = gelu_tanh(a); break;
      case EwOp::gelu_erf: y = gelu_erf(a); break;
      case EwOp::silu: y = a / (1.0f + expf(-a)); break;
      default: y = a; break;
    }
    r[kEwRegTemp + i] = y;
  }
  return r[kEwRegTemp + n - 1];
}

__device__ __forceinline__ void load_consts(const EwProgram& prog, float* r) {
  for (int c = 0; c < prog.n_consts; ++c) r[kEwRegConst + c] = static_cast<float>(prog.consts[c]);
}

__device__ __forceinline__ int used_inputs(const EwProgramArgs& p) {
  return p.prog.n_inputs < p.n_inputs ? p.prog.n_inputs : p.n_inputs;
}

// vec4: groups of 4 elements [0, n / 4), then the scalar tail [4 * (n / 4), n).
__global__ void __launch_bounds__(kThreads) ew_program_vec4_kernel(const __grid_constant__ EwProgramArgs p) {
  float r[kEwProgMaxRegs];
  float v[kEwProgMaxInputs][4];
  load_consts(p.prog, r);
  const int ni = used_inputs(p);
  const std::int64_t gid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t groups = p.n / 4;
  for (std::int64_t g = gid; g < groups; g += stride) {
    for (int k = 0; k < ni; ++k) load4(p.in[k], p.in_dtype[k], g, v[k]);
    float o[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      for (int k = 0; k < ni; ++k) r[k] = v[k][j];
      o[j] = eval(p.prog, r);
    }
    store4(p.out, p.out_dtype, g, o);
  }
  for (std::int64_t i = groups * 4 + gid; i < p.n; i += stride) {
    for (int k = 0; k < ni; ++k) r[k] = load_in(p.in[k], p.in_dtype[k], i);
    store_out(p.out, p.out_dtype, i, eval(p.prog, r));
  }
}

__global__ void __launch_bounds__(kThreads) ew_program_flat_kernel(const __grid_constant__ EwProgramArgs p) {
  float r[kEwProgMaxRegs];
  load_consts(p.prog, r);
  const int ni = used_inputs(p);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n;
       i += stride) {
    for (int k = 0; k < ni; ++k) r[k] = load_in(p.in[k], p.in_dtype[k], i);
    store_out(p.out, p.out_dtype, i, eval(p.prog, r));
  }
}

__global__ void __launch_bounds__(kThreads) ew_program_strided_kernel(const __grid_constant__ EwProgramArgs p) {
  float r[kEwProgMaxRegs];
  load_consts(p.prog, r);
  const int ni = used_inputs(p);
  const int nd = p.ndim;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n;
       i += stride) {
    std::int64_t off[kEwProgMaxInputs] = {0, 0, 0, 0, 0, 0};
    std::int64_t rem = i;
    for (int d = nd - 1; d >= 0; --d) {
      const std::int64_t size = p.shape[d];
      const std::int64_t q = rem / size;
      const std::int64_t c = rem - q * size;
      rem = q;
      for (int k = 0; k < ni; ++k) off[k] += c * p.strides[k][d];
    }
    for (int k = 0; k < ni; ++k) r[k] = load_in(p.in[k], p.in_dtype[k], off[k]);
    store_out(p.out, p.out_dtype, i, eval(p.prog, r));
  }
}

int grid_for(std::int64_t work, int sm_count) {
  const std::int64_t want = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>(want, static_cast<std::int64_t>(std::max(sm_count, 1)) * 8)));
}

bool is_cuda_dtype(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

}  // namespace

void launch_elementwise_program(const EwProgramArgs& p, int sm_count, cudaStream_t s) {
  if (p.n <= 0) return;
  bool ok = is_cuda_dtype(p.out_dtype);
  for (int k = 0; k < p.n_inputs; ++k) ok = ok && is_cuda_dtype(p.in_dtype[k]);
  if (!ok)
    throw BackendError("[elementwise_program] the CUDA kernel takes float32, float16 or bfloat16 "
                       "storage (float64 runs on the CPU)");
  if (p.ndim > 0) {
    launch(ew_program_strided_kernel, grid_for(p.n, sm_count), kThreads, 0, s,
           "elementwise_program strided kernel", p);
    return;
  }
  // Every pointer aligned to 4 of its elements: the 16-byte / 8-byte vector path.
  auto aligned = [](const void* q, DType t) {
    return reinterpret_cast<std::uintptr_t>(q) % (4 * dtype_size(t)) == 0;
  };
  bool vec = aligned(p.out, p.out_dtype);
  for (int k = 0; k < p.n_inputs; ++k) vec = vec && aligned(p.in[k], p.in_dtype[k]);
  if (vec) {
    const std::int64_t work = std::max<std::int64_t>(p.n / 4, p.n % 4);
    launch(ew_program_vec4_kernel, grid_for(work, sm_count), kThreads, 0, s,
           "elementwise_program kernel (vector loads)", p);
  } else {
    launch(ew_program_flat_kernel, grid_for(p.n, sm_count), kThreads, 0, s,
           "elementwise_program kernel", p);
  }
}

}  // namespace lc::cuda
