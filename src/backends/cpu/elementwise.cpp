// Elementwise ops on the CPU. out may alias a or b (every loop reads index i before writing
// index i and never looks at another index), so no __restrict here: g++ versions the loops
// with a run-time overlap check and still vectorises the common non-aliased case.
#include <algorithm>
#include <cstdint>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

// Below ~256K elements a worker wake-up costs more than the loop saves (add of 256K floats
// is ~3 MB of traffic, ~50-100 us on one core). gelu is ~10x more compute per element, so it
// goes parallel earlier.
constexpr i64 kParallelElems = i64{1} << 18;
constexpr i64 kParallelElemsGelu = i64{1} << 15;
constexpr i64 kGrain = i64{1} << 15;

namespace isa_sse {
#include "backends/cpu/elementwise_loops.inc"
}  // namespace isa_sse
#if defined(LC_CPU_MULTI_ISA)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
#include "backends/cpu/elementwise_loops.inc"
}  // namespace isa_avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace isa_avx512 {
#include "backends/cpu/elementwise_loops.inc"
}  // namespace isa_avx512
#pragma GCC pop_options
#endif

using RangeFn = void (*)(const ElementwiseArgs&, i64, i64);

RangeFn range_kernel() {
#if defined(LC_CPU_MULTI_ISA)
  const int isa = simd_level();
  if (isa >= 2) return isa_avx512::run_range;
  if (isa == 1) return isa_avx2::run_range;
#endif
  return isa_sse::run_range;
}

}  // namespace

void elementwise(const ElementwiseArgs& p) {
  if (p.n <= 0) return;
  const i64 threshold = p.kind == EwKind::gelu ? kParallelElemsGelu : kParallelElems;
  const RangeFn run_range = range_kernel();
  if (p.n < threshold) {
    run_range(p, 0, p.n);
    return;
  }
  parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { run_range(p, lo, hi); });
}

}  // namespace lc::cpu
