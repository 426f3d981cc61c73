// GEMM for a few rows against a weight matrix stored [n, k] (linear's weight: C = A @ B^T,
// trans_b), with no packing at all (cpu_ops.h gemm_skinny).
//
// Why: a linear layer on a handful of tokens (a MiniLM query of 16 tokens: 16 x 384 against
// 384 x 1152, 384 x 1536, ...) is a GEMM whose A is tiny and whose B is the whole weight.
// OpenBLAS packs B on every call, which is a full extra read and write of the weights: on the
// 2-core VM (2026-12-01) a MiniLM 1x16 forward spent 32% of its time in sgemm_incopy, 23% in
// the multiply kernel and 28% in OpenBLAS's thread hand-offs. Here every output element is a
// dot product of an A row and a B row, both contiguous in k: a register tile of RM A rows x RN
// B rows keeps RM * RN vector accumulators, the B rows are read once from memory (and reused
// from L1 across the row blocks), A (m x k floats, <= 48 KB at m = 32, k = 384) stays in
// L1/L2. Columns are split over the pool; each task applies the fused epilogue (bias,
// residual, activation) to its columns while they are in cache.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"  // simd_ops.inc's vexp

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

#define LC_ISA_KERNEL "backends/cpu/gemm_skinny.inc"
#include "backends/cpu/isa_variants.inc"

using ColsFn = void (*)(i64, i64, i64, i64, const float*, i64, const float*, i64, float*, i64);

ColsFn cols_fn(int isa) {
  return LC_ISA_PICK(isa, cols);
}

// A task gets at least this many multiply-adds (waking a worker costs ~10-50 us).
constexpr i64 kTaskWork = i64{1} << 18;

}  // namespace

bool gemm_skinny_fits(i64 m, i64 n, i64 k, bool trans_b) {
  return trans_b && m >= 1 && m <= kSkinnyMaxRows && k >= kSkinnyMinDepth && n >= 1;
}

void gemm_skinny(i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b, i64 ldb,
                 float* c, i64 ldc, const GemmEpilogue* ep, int isa) {
  if (m <= 0 || n <= 0) return;
  static const ColsFn best = cols_fn(simd_level());
  const ColsFn fn = isa < 0 ? best : cols_fn(std::min(isa, simd_level()));
  auto run = [&](i64 j0, i64 j1) {
    fn(m, k, j0, j1, a, lda, b, ldb, c, ldc);
    if (ep && !ep->empty()) {
      GemmEpilogue part = *ep;
      if (part.bias) part.bias += j0;
      if (part.residual) part.residual += j0;
      gemm_epilogue(c + j0, m, j1 - j0, ldc, part, false);
    }
  };
  // Column chunks of 16 (whole register tiles; a 64-byte line of C per row), each task at
  // least kTaskWork multiply-adds.
  constexpr i64 kQuantum = 16;
  const i64 per_col = std::max<i64>(1, m * k);
  const i64 chunks = (n + kQuantum - 1) / kQuantum;
  const i64 grain = std::max<i64>(1, kTaskWork / (per_col * kQuantum));
  if (chunks <= grain || num_threads() <= 1) return run(0, n);
  parallel_for(0, chunks, grain, [&](i64 lo, i64 hi) {
    run(lo * kQuantum, std::min(n, hi * kQuantum));
  });
}

}  // namespace lc::cpu
