// Elementwise ops on the CPU. out may alias a or b (every loop reads index i before writing
// index i and never looks at another index), so no __restrict here: g++ versions the loops
// with a run-time overlap check and still vectorises the common non-aliased case.
#include <algorithm>
#include <cstdint>

#include "backends/cpu/cpu_ops.h"
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

void run_range(const ElementwiseArgs& p, i64 lo, i64 hi) {
  const float* a = p.a + lo;
  const float* b = p.b ? p.b + lo : nullptr;
  float* o = p.out + lo;
  const i64 n = hi - lo;
  switch (p.kind) {
    case EwKind::add:
      for (i64 i = 0; i < n; ++i) o[i] = a[i] + b[i];
      break;
    case EwKind::sub:
      for (i64 i = 0; i < n; ++i) o[i] = a[i] - b[i];
      break;
    case EwKind::mul:
      for (i64 i = 0; i < n; ++i) o[i] = a[i] * b[i];
      break;
    case EwKind::scale: {
      const float s = p.alpha;
      for (i64 i = 0; i < n; ++i) o[i] = a[i] * s;
      break;
    }
    case EwKind::relu:
      for (i64 i = 0; i < n; ++i) o[i] = relu(a[i]);
      break;
    case EwKind::gelu:
      for (i64 i = 0; i < n; ++i) o[i] = gelu(a[i]);
      break;
  }
}

}  // namespace

void elementwise(const ElementwiseArgs& p) {
  if (p.n <= 0) return;
  const i64 threshold = p.kind == EwKind::gelu ? kParallelElemsGelu : kParallelElems;
  if (p.n < threshold) {
    run_range(p, 0, p.n);
    return;
  }
  parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { run_range(p, lo, hi); });
}

}  // namespace lc::cpu
