// Elementwise programs on CUDA (Backend::elementwise_program, EwProgramArgs): one kernel that
// interprets the program held in its own parameters (no runtime compilation), with the
// interpreter's register file in real registers.
//
// Host side: the program is register-allocated once per launch (plan_ew_slots, ew_program.h).
// Every value (an input, an instruction's result) lives in one of S "slots"; input k starts in
// slot k, and an instruction's result takes the lowest slot free after its operands' last
// reads, so a chain needs only (inputs + live temporaries) slots, not the 30 fixed registers of
// EwProgram. An operand is a slot (< 32) or a constant (32 + c, read from the float constants
// in the parameters). S is rounded up to a compiled bucket (4, 8, 16, 24).
//
// Device side (ew_kernel<S, V, kGeneral>): each thread evaluates groups of V consecutive
// elements. The slots are `float s[S][V]`, only ever indexed with compile-time constants: an
// operand is fetched and a result stored through a `switch` on the slot number (every case a
// fixed register), the op dispatched by a `switch` on the opcode. All three switch values are
// warp-uniform (they come from the constant bank: the whole KArgs is the kernel's one
// __grid_constant__ parameter, so a CUDA graph capture bakes the program in), so no branch
// diverges, and one dispatch serves V elements. ptxas reports 0 bytes of stack for every
// instantiation (the previous interpreter indexed a per-thread register array dynamically and
// kept it in local memory: 120-224 bytes of stack per thread).
//
//   V = 16 bytes / the widest element: float32 4 (one float4 per input), 16-bit-only programs
//       8 (one 16-byte load); the larger slot buckets halve V to stay within registers
//       (S 16: V 4, S 24: V 2).
//   contiguous (ndim == 0, kGeneral false): input k of a full group is one vector load when
//       its pointer is aligned to the vector (checked per input: one misaligned view does not
//       slow the others down), else V scalar loads; the last group (n % V) loads and stores
//       element by element.
//   general (ndim > 0, kGeneral true): inputs that are contiguous with the output's shape (a
//       same-shape operand next to a broadcast one) still take the vector path; the others are
//       gathered through their strides: the group's first element is decomposed over the
//       (merged) shape once (32-bit magic-number division when n < 2^31, 64-bit otherwise),
//       each next element steps the innermost index and re-decomposes only when it wraps.
// All index math is int64 where it can exceed 2^31; the grid is capped and loops grid-stride.
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

namespace {

using i64 = std::int64_t;
// 128 threads: with ~64-150 registers a thread, finer blocks fill an SM's register file better.
constexpr int kThreads = 128;
constexpr int kMaxSlots = kEwMaxSlots;   // >= kEwProgMaxInputs + kEwProgMaxInstrs (every value live)
constexpr int kConstBase = kEwSlotConst;  // operand >= kConstBase: constant (operand - kConstBase)
static_assert(kEwProgMaxConsts == 8, "fetch() masks the constant index with 7");

struct KInstr {
  std::uint8_t op, a, b, dst;  // a, b: slot or kConstBase + constant; b == a for unary ops
};

// n < 2^31: q = n / d as (umulhi(n, m) + n) >> shift (d >= 1; m, shift from the host).
struct FastDiv {
  std::uint32_t m = 1, shift = 0;
};

struct KArgs {
  KInstr code[kEwProgMaxInstrs];
  float consts[kEwProgMaxConsts];
  int n_instrs = 0;
  int result = 0;               // slot of the result
  unsigned load_mask = 0;       // input k is read by the program (loaded into slot k)
  unsigned vec_mask = 0;        // input k: contiguous with the output and vector-aligned
  unsigned flat_mask = 0;       // input k: contiguous with the output (same index as out)
  int out_vec = 0;              // out is vector-aligned
  int idx64 = 0;                // general path: n >= 2^31, 64-bit division
  int ndim = 0;
  i64 n = 0;
  const void* in[kEwProgMaxInputs] = {};
  DType in_dtype[kEwProgMaxInputs] = {};
  void* out = nullptr;
  DType out_dtype = DType::f32;
  i64 shape[kEwMaxDims] = {};
  FastDiv div[kEwMaxDims] = {};
  i64 strides[kEwProgMaxInputs][kEwMaxDims] = {};
};
static_assert(sizeof(KArgs) <= 4000, "KArgs must fit in a kernel's parameters");

// ---- loads and stores --------------------------------------------------------------------------

__device__ __forceinline__ float u16_to_f(unsigned u, DType t) {
  const unsigned short h = static_cast<unsigned short>(u & 0xffffu);
  return t == DType::f16 ? __half2float(__ushort_as_half(h)) : __bfloat162float(__ushort_as_bfloat16(h));
}
__device__ __forceinline__ unsigned f_to_u16(float v, DType t) {
  return t == DType::f16 ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

__device__ __forceinline__ float load1(const void* p, DType t, i64 i) {
  if (t == DType::f32) return __ldg(static_cast<const float*>(p) + i);
  return u16_to_f(ldg_u16(static_cast<const unsigned short*>(p) + i), t);
}
__device__ __forceinline__ void store1(void* p, DType t, i64 i, float v) {
  if (t == DType::f32) static_cast<float*>(p)[i] = v;
  else static_cast<unsigned short*>(p)[i] = static_cast<unsigned short>(f_to_u16(v, t));
}

// Elements [e0, e0 + V) of p as vector loads (p + e0 aligned to min(16, V * element size) bytes).
template <int V>
__device__ __forceinline__ void load_vec(const void* p, DType t, i64 e0, float (&o)[V]) {
  if (t == DType::f32) {
    const float* q = static_cast<const float*>(p) + e0;
    if constexpr (V >= 4) {
#pragma unroll
      for (int w = 0; w < V / 4; ++w) {
        const float4 x = __ldg(reinterpret_cast<const float4*>(q) + w);
        o[4 * w] = x.x, o[4 * w + 1] = x.y, o[4 * w + 2] = x.z, o[4 * w + 3] = x.w;
      }
    } else {
      const float2 x = __ldg(reinterpret_cast<const float2*>(q));
      o[0] = x.x, o[1] = x.y;
    }
  } else {
    const unsigned short* q = static_cast<const unsigned short*>(p) + e0;
    if constexpr (V == 8) {
      const uint4 x = __ldg(reinterpret_cast<const uint4*>(q));
      const unsigned w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) o[2 * j] = u16_to_f(w[j], t), o[2 * j + 1] = u16_to_f(w[j] >> 16, t);
    } else if constexpr (V == 4) {
      const uint2 x = __ldg(reinterpret_cast<const uint2*>(q));
      o[0] = u16_to_f(x.x, t), o[1] = u16_to_f(x.x >> 16, t);
      o[2] = u16_to_f(x.y, t), o[3] = u16_to_f(x.y >> 16, t);
    } else {
      const unsigned x = __ldg(reinterpret_cast<const unsigned*>(q));
      o[0] = u16_to_f(x, t), o[1] = u16_to_f(x >> 16, t);
    }
  }
}

template <int V>
__device__ __forceinline__ void store_vec(void* p, DType t, i64 e0, const float (&v)[V]) {
  if (t == DType::f32) {
    float* q = static_cast<float*>(p) + e0;
    if constexpr (V >= 4) {
#pragma unroll
      for (int w = 0; w < V / 4; ++w)
        reinterpret_cast<float4*>(q)[w] = make_float4(v[4 * w], v[4 * w + 1], v[4 * w + 2], v[4 * w + 3]);
    } else {
      *reinterpret_cast<float2*>(q) = make_float2(v[0], v[1]);
    }
  } else {
    unsigned short* q = static_cast<unsigned short*>(p) + e0;
    unsigned w[V / 2];
#pragma unroll
    for (int j = 0; j < V / 2; ++j) w[j] = f_to_u16(v[2 * j], t) | (f_to_u16(v[2 * j + 1], t) << 16);
    if constexpr (V == 8) *reinterpret_cast<uint4*>(q) = make_uint4(w[0], w[1], w[2], w[3]);
    else if constexpr (V == 4) *reinterpret_cast<uint2*>(q) = make_uint2(w[0], w[1]);
    else *reinterpret_cast<unsigned*>(q) = w[0];
  }
}

// ---- the interpreter ---------------------------------------------------------------------------

// NaN-propagating max / min (numpy's maximum / minimum; fmaxf would drop the NaN).
__device__ __forceinline__ float max_nan(float a, float b) { return (a != a || a > b) ? a : b; }
__device__ __forceinline__ float min_nan(float a, float b) { return (a != a || a < b) ? a : b; }

// One case per slot: a switch on a warp-uniform value whose every case names a fixed register.
#define LC_EW_SLOTS(X)                                                                              \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)      \
  X(17) X(18) X(19) X(20) X(21) X(22) X(23)
static_assert(kMaxSlots == 24, "LC_EW_SLOTS lists kMaxSlots cases");

// o = the operand `r` (a slot, or kConstBase + c for constant c) for all V lanes.
template <int S, int V>
__device__ __forceinline__ void fetch(const float (&s)[S][V], const KArgs& p, int r, float (&o)[V]) {
  switch (r) {
#define LC_EW_FETCH(j)                                      \
  case j:                                                   \
    if constexpr (j < S) {                                  \
      _Pragma("unroll") for (int v = 0; v < V; ++v) o[v] = s[j][v]; \
    }                                                       \
    break;
    LC_EW_SLOTS(LC_EW_FETCH)
#undef LC_EW_FETCH
    default: {
      const float c = p.consts[(r - kConstBase) & 7];
#pragma unroll
      for (int v = 0; v < V; ++v) o[v] = c;
    }
  }
}

template <int S, int V>
__device__ __forceinline__ void put(float (&s)[S][V], int r, const float (&y)[V]) {
  switch (r) {
#define LC_EW_PUT(j)                                        \
  case j:                                                   \
    if constexpr (j < S) {                                  \
      _Pragma("unroll") for (int v = 0; v < V; ++v) s[j][v] = y[v]; \
    }                                                       \
    break;
    LC_EW_SLOTS(LC_EW_PUT)
#undef LC_EW_PUT
    default: break;
  }
}

#define LC_EW_LANES(expr)                        \
  _Pragma("unroll") for (int v = 0; v < V; ++v) { \
    const float x = a[v];                        \
    const float w = b[v];                        \
    (void)w;                                     \
    y[v] = (expr);                               \
  }                                              \
  break;

template <int V>
__device__ __forceinline__ void compute(EwOp op, const float (&a)[V], const float (&b)[V], float (&y)[V]) {
  switch (op) {
    case EwOp::add: LC_EW_LANES(x + w)
    case EwOp::sub: LC_EW_LANES(x - w)
    case EwOp::mul: LC_EW_LANES(x * w)
    case EwOp::div: LC_EW_LANES(x / w)
    case EwOp::max: LC_EW_LANES(max_nan(x, w))
    case EwOp::min: LC_EW_LANES(min_nan(x, w))
    case EwOp::neg: LC_EW_LANES(-x)
    case EwOp::abs: LC_EW_LANES(fabsf(x))
    case EwOp::exp: LC_EW_LANES(expf(x))
    case EwOp::log: LC_EW_LANES(logf(x))
    case EwOp::sqrt: LC_EW_LANES(sqrtf(x))
    case EwOp::rsqrt: LC_EW_LANES(rsqrtf(x))
    case EwOp::tanh: LC_EW_LANES(tanhf(x))
    case EwOp::sigmoid: LC_EW_LANES(1.0f / (1.0f + expf(-x)))
    case EwOp::relu: LC_EW_LANES(relu_f(x))
    case EwOp::gelu: LC_EW_LANES(gelu_tanh(x))
    case EwOp::gelu_erf: LC_EW_LANES(gelu_erf(x))
    case EwOp::silu: LC_EW_LANES(x / (1.0f + expf(-x)))
    default: LC_EW_LANES(x)
  }
}
#undef LC_EW_LANES

// Offsets of the gathered inputs (not in flat_mask) for output element e; `inner` = e's index
// in the innermost dimension.
__device__ __forceinline__ void decompose(const KArgs& p, i64 e, i64 (&off)[kEwProgMaxInputs], i64& inner) {
#pragma unroll
  for (int k = 0; k < kEwProgMaxInputs; ++k) off[k] = 0;
  const int nd = p.ndim;
  i64 rem = e;
#pragma unroll
  for (int d = kEwMaxDims - 1; d >= 0; --d) {
    if (d < nd) {
      i64 q;
      if (p.idx64) {
        q = rem / p.shape[d];
      } else {
        const std::uint32_t r32 = static_cast<std::uint32_t>(rem);
        q = static_cast<i64>((__umulhi(r32, p.div[d].m) + r32) >> p.div[d].shift);
      }
      const i64 c = rem - q * p.shape[d];
      rem = q;
      if (d == nd - 1) inner = c;
#pragma unroll
      for (int k = 0; k < kEwProgMaxInputs; ++k)
        if (((p.load_mask & ~p.flat_mask) >> k) & 1u) off[k] += c * p.strides[k][d];
    }
  }
}

template <int S, int V, bool kGeneral>
__global__ void __launch_bounds__(kThreads, 1) ew_kernel(const __grid_constant__ KArgs p) {
  constexpr int kIn = S < kEwProgMaxInputs ? S : kEwProgMaxInputs;
  const i64 groups = (p.n + V - 1) / V;
  const i64 step = static_cast<i64>(gridDim.x) * blockDim.x;
  // Defined once (a slot is always written before the program reads it; zeroing it once keeps
  // the compiler from seeing an undefined read, at no per-group cost).
  float s[S][V];
#pragma unroll
  for (int j = 0; j < S; ++j)
#pragma unroll
    for (int v = 0; v < V; ++v) s[j][v] = 0.0f;
  for (i64 g = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += step) {
    const i64 e0 = g * V;
    const int cnt = static_cast<int>(p.n - e0 < V ? p.n - e0 : V);  // 1..V
    // Inputs at the output's index: a vector load, or V (cnt) scalar loads.
#pragma unroll
    for (int k = 0; k < kIn; ++k) {
      if (!((p.load_mask >> k) & 1u)) continue;
      if (kGeneral && !((p.flat_mask >> k) & 1u)) continue;
      if (cnt == V && ((p.vec_mask >> k) & 1u)) {
        load_vec<V>(p.in[k], p.in_dtype[k], e0, s[k]);
      } else {
#pragma unroll
        for (int v = 0; v < V; ++v)
          if (v < cnt) s[k][v] = load1(p.in[k], p.in_dtype[k], e0 + v);
      }
    }
    if constexpr (kGeneral) {
      // Gathered inputs through their strides.
      if (p.load_mask & ~p.flat_mask) {
        i64 off[kEwProgMaxInputs];
        i64 inner = 0;
        decompose(p, e0, off, inner);
        const int last = p.ndim - 1;
#pragma unroll
        for (int v = 0; v < V; ++v) {
          if (v < cnt) {
#pragma unroll
            for (int k = 0; k < kIn; ++k)
              if (((p.load_mask & ~p.flat_mask) >> k) & 1u) s[k][v] = load1(p.in[k], p.in_dtype[k], off[k]);
            if (v + 1 < cnt) {
              if (++inner < p.shape[last]) {
#pragma unroll
                for (int k = 0; k < kEwProgMaxInputs; ++k) off[k] += p.strides[k][last];
              } else {
                decompose(p, e0 + v + 1, off, inner);
              }
            }
          }
        }
      }
    }
    // The program: one dispatch per instruction for V elements.
#pragma unroll 1
    for (int i = 0; i < p.n_instrs; ++i) {
      const KInstr in = p.code[i];
      const EwOp op = static_cast<EwOp>(in.op);
      float a[V], b[V], y[V];
      fetch<S, V>(s, p, in.a, a);
      if (ew_op_binary(op)) fetch<S, V>(s, p, in.b, b);
      else {
#pragma unroll
        for (int v = 0; v < V; ++v) b[v] = a[v];
      }
      compute<V>(op, a, b, y);
      put<S, V>(s, in.dst, y);
    }
    float r[V];
    fetch<S, V>(s, p, p.result, r);
    if (cnt == V && p.out_vec) {
      store_vec<V>(p.out, p.out_dtype, e0, r);
    } else {
#pragma unroll
      for (int v = 0; v < V; ++v)
        if (v < cnt) store1(p.out, p.out_dtype, e0 + v, r[v]);
    }
  }
}

// ---- host side ---------------------------------------------------------------------------------

bool is_cuda_dtype(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

FastDiv make_div(i64 d) {
  FastDiv f;
  std::uint32_t shift = 0;
  while ((i64{1} << shift) < d) ++shift;
  f.shift = shift;
  f.m = static_cast<std::uint32_t>(((std::uint64_t{1} << 32) * ((std::uint64_t{1} << shift) - static_cast<std::uint64_t>(d))) /
                                       static_cast<std::uint64_t>(d) + 1);
  return f;
}

// The register allocation (plan_ew_slots, ew_program.h) into the kernel's parameters; returns
// the slots needed.
int allocate(const EwProgramArgs& a, KArgs& k) {
  const EwSlotPlan plan = plan_ew_slots(a.prog, a.n_inputs);
  for (int i = 0; i < a.prog.n_instrs; ++i)
    k.code[i] = {static_cast<std::uint8_t>(a.prog.code[i].op), plan.a[i], plan.b[i], plan.dst[i]};
  k.n_instrs = a.prog.n_instrs;
  k.result = plan.result;
  k.load_mask = plan.load_mask;
  for (int c = 0; c < kEwProgMaxConsts; ++c) k.consts[c] = static_cast<float>(a.prog.consts[c]);
  return plan.slots;
}

using Kernel = void (*)(KArgs);

template <bool G>
Kernel pick(int slots, int wide) {
  (void)wide;
  if (slots <= 4) return ew_kernel<4, 4, G>;
  if (slots <= 8) return ew_kernel<8, 4, G>;
  if (slots <= 16) return ew_kernel<16, 4, G>;
  return ew_kernel<24, 2, G>;
}

int vec_width(int slots, int wide) {
  (void)wide;
  return slots <= 16 ? 4 : 2;
}

}  // namespace

void launch_elementwise_program(const EwProgramArgs& p, int sm_count, cudaStream_t s) {
  if (p.n <= 0) return;
  bool ok = is_cuda_dtype(p.out_dtype);
  for (int k = 0; k < p.n_inputs; ++k) ok = ok && is_cuda_dtype(p.in_dtype[k]);
  if (!ok)
    throw BackendError("[elementwise_program] the CUDA kernel takes float32, float16 or bfloat16 "
                       "storage (float64 runs on the CPU)");
  KArgs k;
  const int slots = allocate(p, k);
  // Vector width: 16 bytes of the widest element the kernel touches.
  bool all16 = p.out_dtype != DType::f32;
  for (int x = 0; x < kEwProgMaxInputs; ++x)
    if ((k.load_mask >> x) & 1u) all16 = all16 && p.in_dtype[x] != DType::f32;
  const int V = vec_width(slots, all16 ? 8 : 4);
  const bool general = p.ndim > 0;
  k.ndim = p.ndim;
  k.n = p.n;
  k.out = p.out;
  k.out_dtype = p.out_dtype;
  for (int x = 0; x < p.n_inputs && x < kEwProgMaxInputs; ++x) {
    k.in[x] = p.in[x];
    k.in_dtype[x] = p.in_dtype[x];
  }
  auto aligned = [&](const void* q, DType t) {
    const std::size_t bytes = std::min<std::size_t>(16, static_cast<std::size_t>(V) * dtype_size(t));
    return reinterpret_cast<std::uintptr_t>(q) % bytes == 0;
  };
  k.out_vec = aligned(p.out, p.out_dtype) ? 1 : 0;
  if (general) {
    k.idx64 = p.n > 0x7fffffffLL ? 1 : 0;
    for (int d = 0; d < p.ndim; ++d) {
      k.shape[d] = p.shape[d];
      k.div[d] = make_div(std::max<i64>(1, std::min<i64>(p.shape[d], 0x7fffffffLL)));
    }
  }
  for (int x = 0; x < kEwProgMaxInputs; ++x) {
    if (!((k.load_mask >> x) & 1u)) continue;
    bool flat = true;
    if (general) {
      // Contiguous with the output's shape: element strides equal the output's row-major ones.
      i64 want = 1;
      for (int d = p.ndim - 1; d >= 0; --d) {
        flat = flat && (p.shape[d] == 1 || p.strides[x][d] == want);
        want *= p.shape[d];
        k.strides[x][d] = p.strides[x][d];
      }
    }
    if (flat) {
      k.flat_mask |= 1u << x;
      if (aligned(p.in[x], p.in_dtype[x])) k.vec_mask |= 1u << x;
    }
  }
  const i64 groups = (p.n + V - 1) / V;
  const i64 want = (groups + kThreads - 1) / kThreads;
  const int grid = static_cast<int>(
      std::max<i64>(1, std::min<i64>(want, static_cast<i64>(std::max(sm_count, 1)) * 32)));
  const Kernel kern = general ? pick<true>(slots, all16 ? 8 : 4) : pick<false>(slots, all16 ? 8 : 4);
  launch(kern, grid, kThreads, 0, s, "elementwise_program kernel", k);
}

}  // namespace lc::cuda
