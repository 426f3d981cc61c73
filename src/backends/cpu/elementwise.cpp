// Elementwise ops on the CPU. out may alias a or b (every loop reads index i before writing
// index i and never looks at another index), so no __restrict here: g++ versions the loops
// with a run-time overlap check and still vectorises the common non-aliased case.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"
#include "lightning_core/errors.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

// Below ~256K elements a worker wake-up costs more than the loop saves (add of 256K floats
// is ~3 MB of traffic, ~50-100 us on one core). gelu is ~10x more compute per element, so it
// goes parallel earlier.
constexpr i64 kParallelElems = i64{1} << 18;
constexpr i64 kParallelElemsGelu = i64{1} << 15;
constexpr i64 kGrain = i64{1} << 15;

#define LC_ISA_KERNEL "backends/cpu/elementwise_loops.inc"
#include "backends/cpu/isa_variants.inc"

using RangeFn = void (*)(const ElementwiseArgs&, i64, i64);

RangeFn range_kernel() {
  return LC_ISA_PICK(simd_level(), run_range);
}

}  // namespace

namespace {

// ---- any dtype, any operand strides (ElementwiseArgs ndim > 0, or a 16-bit / float64 dtype) ----
// The output range [lo, hi) is walked in row pieces of at most kChunk elements: each piece's
// operands are converted into float (double for float64) buffers, computed by the float32 SIMD
// loops above (or a double loop), and stored back converted. Reads of a piece happen before
// its writes, so an out that is exactly a or b (ndim == 0) is fine. float32 pieces use unit-stride
// operands and out in place (only ndim > 0 reaches here with float32: out overlaps no operand).
constexpr i64 kChunk = 512;

template <class T>
inline auto to_c_any(T v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return v;
  else if constexpr (std::is_same_v<T, float16>) return half_to_float(v.bits);
  else return to_float(v);
}
template <class T>
inline T from_c(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, float16>) return float16{float_to_half(v)};
  else return to_bf16(v);
}

double op_f64(EwKind k, double x, double y, double alpha) {
  switch (k) {
    case EwKind::add: return x + y;
    case EwKind::sub: return x - y;
    case EwKind::mul: return x * y;
    case EwKind::div: return x / y;
    case EwKind::scale: return x * alpha;
    case EwKind::relu: return x < 0.0 ? 0.0 : x;
    case EwKind::gelu:
      return 0.5 * x * (1.0 + std::tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
    case EwKind::gelu_erf: return 0.5 * x * (1.0 + std::erf(x * 0.70710678118654752));
  }
  return x;
}

bool is_binary(EwKind k) {
  return k == EwKind::add || k == EwKind::sub || k == EwKind::mul || k == EwKind::div;
}

template <class T>
void generic_range(const ElementwiseArgs& p, i64 lo, i64 hi, RangeFn f32_loop) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const bool binary = is_binary(p.kind);
  // ndim == 0: one contiguous dimension of n elements.
  const int nd = p.ndim > 0 ? p.ndim : 1;
  const i64 one_shape[1] = {p.n}, one_stride[1] = {1};
  const i64* shape = p.ndim > 0 ? p.shape : one_shape;
  const i64* as = p.ndim > 0 ? p.a_strides : one_stride;
  const i64* bs = p.ndim > 0 ? p.b_strides : one_stride;
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* out = static_cast<T*>(p.out);
  i64 idx[kEwMaxDims] = {};
  i64 ao = 0, bo = 0;
  {
    i64 rem = lo;
    for (int k = nd - 1; k >= 0; --k) {
      idx[k] = rem % shape[k];
      rem /= shape[k];
      ao += idx[k] * as[k];
      bo += idx[k] * bs[k];
    }
  }
  C abuf[kChunk], bbuf[kChunk], obuf[kChunk];
  const i64 inner = shape[nd - 1], ias = as[nd - 1], ibs = bs[nd - 1];
  i64 i = lo;
  while (i < hi) {
    const i64 cnt = std::min<i64>({hi - i, inner - idx[nd - 1], kChunk});
    if constexpr (std::is_same_v<T, float>) {
      // float32: unit-stride operands and out are used in place, only the others buffered.
      const float* ap = a + ao;
      const float* bp = binary ? b + bo : nullptr;
      if (ias != 1) {
        for (i64 j = 0; j < cnt; ++j) abuf[j] = a[ao + j * ias];
        ap = abuf;
      }
      if (binary && ibs != 1) {
        for (i64 j = 0; j < cnt; ++j) bbuf[j] = b[bo + j * ibs];
        bp = bbuf;
      }
      ElementwiseArgs q;
      q.kind = p.kind;
      q.a = ap;
      q.b = bp;
      q.out = out + i;
      q.n = cnt;
      q.alpha = p.alpha;
      f32_loop(q, 0, cnt);
    } else {
      // Unit strides get their own loops (vectorised conversions).
      if (ias == 1) {
        const T* ap = a + ao;
        for (i64 j = 0; j < cnt; ++j) abuf[j] = static_cast<C>(to_c_any(ap[j]));
      } else {
        for (i64 j = 0; j < cnt; ++j) abuf[j] = static_cast<C>(to_c_any(a[ao + j * ias]));
      }
      if (binary && ibs == 1) {
        const T* bp = b + bo;
        for (i64 j = 0; j < cnt; ++j) bbuf[j] = static_cast<C>(to_c_any(bp[j]));
      } else if (binary) {
        for (i64 j = 0; j < cnt; ++j) bbuf[j] = static_cast<C>(to_c_any(b[bo + j * ibs]));
      }
      if constexpr (std::is_same_v<C, double>) {
        for (i64 j = 0; j < cnt; ++j) obuf[j] = op_f64(p.kind, abuf[j], binary ? bbuf[j] : 0.0, p.alpha);
        for (i64 j = 0; j < cnt; ++j) out[i + j] = obuf[j];
      } else {
        ElementwiseArgs q;
        q.kind = p.kind;
        q.a = abuf;
        q.b = binary ? bbuf : nullptr;
        q.out = obuf;
        q.n = cnt;
        q.alpha = p.alpha;
        f32_loop(q, 0, cnt);
        for (i64 j = 0; j < cnt; ++j) out[i + j] = from_c<T>(obuf[j]);
      }
    }
    i += cnt;
    idx[nd - 1] += cnt;
    ao += cnt * ias;
    bo += cnt * ibs;
    // Carry into the outer dimensions.
    for (int k = nd - 1; k > 0 && idx[k] == shape[k]; --k) {
      ao -= shape[k] * as[k];
      bo -= shape[k] * bs[k];
      idx[k] = 0;
      ++idx[k - 1];
      ao += as[k - 1];
      bo += bs[k - 1];
    }
  }
}

}  // namespace

void elementwise(const ElementwiseArgs& p) {
  if (p.n <= 0) return;
  const bool heavy = p.kind == EwKind::gelu || p.kind == EwKind::gelu_erf;
  const i64 threshold = heavy ? kParallelElemsGelu : kParallelElems;
  const RangeFn run_range = range_kernel();
  if (p.ndim == 0 && p.dtype == DType::f32) {
    // The float32 contiguous hot path: the SIMD loops directly.
    if (p.n < threshold) {
      run_range(p, 0, p.n);
      return;
    }
    parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { run_range(p, lo, hi); });
    return;
  }
  auto run = [&](auto tag) {
    using T = decltype(tag);
    if (p.n < threshold) {
      generic_range<T>(p, 0, p.n, run_range);
      return;
    }
    parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { generic_range<T>(p, lo, hi, run_range); });
  };
  switch (p.dtype) {
    case DType::f32: return run(float{});
    case DType::f64: return run(double{});
    case DType::f16: return run(float16{});
    case DType::bf16: return run(bfloat16{});
    default:
      throw BackendError("[elementwise] the CPU kernels take float32, float16, bfloat16 or "
                         "float64, got " + std::string(dtype_info(p.dtype).name));
  }
}

}  // namespace lc::cpu
