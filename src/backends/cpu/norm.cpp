// Row-wise layernorm and softmax on the CPU.
//
// Both are two-pass per row (mean then centred variance; max then exp-sum), which is as
// stable as Welford for fp32 rows that fit in cache. The row loops (norm_rows.inc) use explicit
// vectors and are compiled for SSE2 / AVX2+FMA / AVX-512, picked at run time (simd.h): the
// plain loops this replaced stayed scalar (a float max reduction and the clamps in fast_exp
// defeat g++'s vectoriser), e.g. softmax 64x768 took ~240 us.
// Rows go to the pool only when the tensor is large (>= kParallelElems): below that a
// worker wake-up (~10-20 us) costs more than the whole op.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

constexpr i64 kParallelElems = i64{1} << 18;
constexpr i64 kTaskElems = i64{1} << 15;  // elements per task once threaded

namespace isa_sse {
using V = vf4;
#include "backends/cpu/norm_rows.inc"
}  // namespace isa_sse
#if defined(LC_CPU_MULTI_ISA)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
using V = vf8;
#include "backends/cpu/norm_rows.inc"
}  // namespace isa_avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace isa_avx512 {
using V = vf16;
#include "backends/cpu/norm_rows.inc"
}  // namespace isa_avx512
#pragma GCC pop_options
#endif

using LayerNormFn = void (*)(const LayerNormArgs&, i64, i64);
using SoftmaxFn = void (*)(const SoftmaxArgs&, i64, i64);

LayerNormFn layernorm_kernel(int isa) {
#if defined(LC_CPU_MULTI_ISA)
  isa = std::min(isa, simd_level());
  if (isa >= 2) return isa_avx512::layernorm_rows;
  if (isa == 1) return isa_avx2::layernorm_rows;
#endif
  (void)isa;
  return isa_sse::layernorm_rows;
}

SoftmaxFn softmax_kernel(int isa) {
#if defined(LC_CPU_MULTI_ISA)
  isa = std::min(isa, simd_level());
  if (isa >= 2) return isa_avx512::softmax_rows;
  if (isa == 1) return isa_avx2::softmax_rows;
#endif
  (void)isa;
  return isa_sse::softmax_rows;
}

// Rows [0, rows) through fn, threaded over rows only when the tensor is large.
template <class Args, class Fn>
void run_rows(const Args& p, Fn fn) {
  if (p.rows * p.cols < kParallelElems) {
    fn(p, 0, p.rows);
  } else {
    parallel_for(0, p.rows, std::max<i64>(1, kTaskElems / std::max<i64>(p.cols, 1)),
                 [&](i64 lo, i64 hi) { fn(p, lo, hi); });
  }
}

}  // namespace

void layernorm_with_isa(int isa, const LayerNormArgs& p) {
  if (p.rows <= 0 || p.cols <= 0) return;
  run_rows(p, layernorm_kernel(std::max(isa, 0)));
}

void softmax_with_isa(int isa, const SoftmaxArgs& p) {
  if (p.rows <= 0 || p.cols <= 0) return;
  run_rows(p, softmax_kernel(std::max(isa, 0)));
}

void layernorm(const LayerNormArgs& p) { layernorm_with_isa(simd_level(), p); }

void softmax(const SoftmaxArgs& p) { softmax_with_isa(simd_level(), p); }

}  // namespace lc::cpu
