// GEMM for the CPU backend: C = A @ B (+bias)(+act).
//
// Four engines (thresholds measured on x86-64 with AVX-512, see docs/cpu_backend.md):
//   blas    OpenBLAS cblas_sgemm when compiled with LC_HAVE_BLAS: one call, OpenBLAS's own
//           threading. Its small-matrix kernels beat both built-in paths from 2x2x2 up (e.g.
//           16^3: ~0.1 us vs ~0.7 us blocked / ~0.9-1.2 us tiny).
//   pooled  (LC_HAVE_BLAS only) C cut into a 2D grid of at most num_threads() tiles, each tile
//           one single-threaded cblas_sgemm inside our thread pool (BlasOneThread). At mid
//           sizes OpenBLAS's own threading synchronises its threads on one shared packed B;
//           independent tiles need no synchronisation at all (each packs its own A rows and B
//           columns, which at these sizes is a few % of the multiply-adds). Chosen per shape
//           by the auto-tune cache (tune.cpp, "cpu_gemm") or by gemm_default_path().
//   tiny    without BLAS, m*n*k <= kTinyWork: plain loops, no packing, one thread; it only
//           beats the blocked kernel below ~6^3, where packing and call overhead dominate.
//   blocked the built-in Goto-style kernel: B packed in KC x NC blocks into NR-wide panels,
//           A packed per task in MC x KC blocks into MR-tall panels, an MR x NR register tile
//           in GCC vector extensions. The tile routine is compiled three times (baseline SSE2,
//           AVX2+FMA, AVX-512) and chosen once at run time from CPUID, because the library is
//           built without -march flags and a baseline-only kernel would leave 2-4x on the table.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/cpu/blas_threads.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

#if defined(LC_HAVE_BLAS)
#include "backends/cpu/blas.h"
#endif

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

// Below this many multiply-adds the naive loops beat the packed kernel (measured: 4^3 tiny
// 82 ns vs blocked 121 ns; 8^3 tiny 287 ns vs blocked 204 ns).
constexpr i64 kTinyWork = 6 * 6 * 6;
// Below this the blocked kernel runs on one thread: waking workers costs ~10-20 us.
constexpr i64 kParallelWork = 96 * 96 * 96;

// Pooled path (see gemm_pooled_grid): a tile below this many multiply-adds is not worth a
// task (per sgemm call ~1 us of OpenBLAS setup + packing), so small GEMMs get fewer tiles
// than threads. Columns of a tile are a multiple of kPooledColQuantum floats (one 64-byte
// cache line, the AVX-512 width: neighbouring tiles never share a line of B or C when the
// leading dimensions are multiples of 16), rows a multiple of kPooledRowQuantum (OpenBLAS's
// sgemm kernels work on 4/8/16-wide panels), except where the whole dimension is smaller.
constexpr i64 kPooledMinTileWork = i64{1} << 17;
// Small GEMMs (threads * 2^18 < m*n*k <= 4 * threads * 2^18, i.e. up to ~256^3 on 16 threads)
// get more tiles than threads, each <= 2^18 multiply-adds, in up to kPooledMaxWaves waves: a
// single-threaded OpenBLAS sgemm runs such tiles far faster per flop than larger ones. Measured
// on the 16-thread GPU host (gemm_paths --tile, 2026-11-22): 256^3 in 64 tiles of 32x32 42 us
// vs 16 tiles of 64x64 68 us (numpy 63 us, torch CPU 44 us); 192^3 a tie (21.5 vs 21.8 us);
// from 384^3 on, bigger tiles win (512^3: 32x32 tiles 378 us vs 128x128 312-335 us).
constexpr i64 kPooledSmallTileWork = i64{1} << 18;
constexpr i64 kPooledMaxWaves = 4;
constexpr i64 kPooledColQuantum = 16;
constexpr i64 kPooledRowQuantum = 8;
// Cost of packing one element of a tile's A rows / B columns, in multiply-adds (a packed
// element is a load + store, a multiply-add 1/32 of a cycle at AVX-512 FMA throughput);
// only steers the grid's aspect ratio towards square tiles.
constexpr i64 kPooledPackCost = 8;
// Where pooled competes with OpenBLAS's own threading, so the auto-tuner (tune.cpp)
// measures both: kFewThreadsPooledMaxWork < m*n*k <= kTuneMaxWork with 2 or 3 threads (the
// window was [2^19, 2^31] until 2026-12-01; below 2^29 pooled is now the rule, see below).
// Above 2^31 (~1290^3; ~20 ms a call on the 2-core VM) OpenBLAS's threading amortises its
// synchronisation, and measuring both gets expensive.
constexpr i64 kTuneMaxWork = i64{1} << 31;
// Default rule: with >= kPooledMinThreads threads every GEMM above OpenBLAS's SMP threshold
// (kBlasSmpWork) runs pooled, at any size, and there is nothing to tune: our pool owns the
// cores. OpenBLAS's own threads, once woken, busy-wait ~0.1 s after every call, and the ops
// around a GEMM (layernorm, GELU, attention, the next pooled GEMM) then share the cores with
// them. Measured on the 16-core GPU host (2026-12-01, MiniLM encoder 32x128 on the CPU, where
// the 4096-row GEMMs were above 2^31 and took the blas path): layernorm 0.78 ms a call against
// 0.09 ms with OpenBLAS's spinning cut short (OPENBLAS_THREAD_TIMEOUT=4), GELU 3.0 vs 1.4 ms.
// In isolation pooled was already as fast or faster from 96^3 up on that host (1024^3 a tie,
// docs/cpu_backend.md). With 2-3 threads (the pool spins there too since 2026-12-01): pooled up
// to kFewThreadsPooledMaxWork, the tuner deciding in (2^29, 2^31], blas above. Alone, OpenBLAS's
// threading wins the big GEMMs on the 2-vCPU VM by a few % (1024^3 6.53 vs 6.97 ms pooled), and
// next to a model's other ops it no longer fights the pool for the two cores because
// lightning_core loads its OpenBLAS with OPENBLAS_THREAD_TIMEOUT=4 (its workers sleep right
// after a call instead of busy-waiting ~0.1 s): MiniLM 32x128 on the CPU 513 ms with the
// default timeout, 383 ms with 4; 1x16 took 10.2 ms with blas for its GEMMs and the spin on,
// 3.0 with every GEMM pooled or skinny (docs/cpu_backend.md, "Two-core defaults").
constexpr i64 kBlasSmpWork = i64{1} << 18;
constexpr int kPooledMinThreads = 4;
constexpr i64 kFewThreadsPooledMaxWork = i64{1} << 29;

constexpr i64 KC = 256;   // depth of one packed block: A panel + B panel stay in L1/L2
constexpr i64 MC = 96;    // rows of A per task (multiple of every MR below)
constexpr i64 NC = 2048;  // columns of B packed at once (multiple of every NR below)
constexpr i64 NG = 256;   // columns per task inside an NC block (multiple of every NR)

typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

// MR x (W*NV) register tile over kc packed steps. ap: [kc][MR], bp: [kc][NR], both zero padded,
// so the loop has no edge cases; only the store clips to mr x nr. With accumulate=false C is
// written without being read (the caller may hand in NaN-poisoned or uninitialised memory).
template <class V, int MR, int NV>
[[gnu::always_inline]] inline void micro_tile(i64 kc, const float* __restrict ap,
                                              const float* __restrict bp, float* c, i64 ldc,
                                              int mr, int nr, bool accumulate) {
  constexpr int W = static_cast<int>(sizeof(V) / sizeof(float));
  constexpr int NR = W * NV;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  for (i64 p = 0; p < kc; ++p) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], bp + p * NR + v * W, sizeof(V));
    for (int r = 0; r < MR; ++r) {
      const V av = V{} + ap[p * MR + r];
      for (int v = 0; v < NV; ++v) acc[r][v] += av * bv[v];
    }
  }
  if (mr == MR && nr == NR) {
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) {
        float* cp = c + r * ldc + v * W;
        V cv = acc[r][v];
        if (accumulate) {
          V old;
          std::memcpy(&old, cp, sizeof(V));
          cv += old;
        }
        std::memcpy(cp, &cv, sizeof(V));
      }
    return;
  }
  alignas(64) float tile[MR * NR];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) std::memcpy(tile + r * NR + v * W, &acc[r][v], sizeof(V));
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j)
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + tile[r * NR + j] : tile[r * NR + j];
}

// One task: an mc x nc block of C from packed A (mc rows) and packed B (nc columns).
template <class V, int MR, int NV>
[[gnu::always_inline]] inline void macro_tile(i64 mc, i64 nc, i64 kc, const float* ap,
                                              const float* bp, float* c, i64 ldc,
                                              bool accumulate) {
  constexpr i64 NR = static_cast<i64>(sizeof(V) / sizeof(float)) * NV;
  for (i64 j = 0; j < nc; j += NR) {
    const int nr = static_cast<int>(std::min(NR, nc - j));
    for (i64 i = 0; i < mc; i += MR) {
      const int mr = static_cast<int>(std::min<i64>(MR, mc - i));
      micro_tile<V, MR, NV>(kc, ap + i * kc, bp + j * kc, c + i * ldc + j, ldc, mr, nr,
                            accumulate);
    }
  }
}

using MacroFn = void (*)(i64, i64, i64, const float*, const float*, float*, i64, bool);

void macro_generic(i64 mc, i64 nc, i64 kc, const float* ap, const float* bp, float* c, i64 ldc,
                   bool acc) {
  macro_tile<v4f, 6, 2>(mc, nc, kc, ap, bp, c, ldc, acc);  // 12 xmm accumulators of 16
}

#if defined(__x86_64__) && defined(__GNUC__)
#define LC_GEMM_MULTI_ISA 1
__attribute__((target("avx2,fma"))) void macro_avx2(i64 mc, i64 nc, i64 kc, const float* ap,
                                                    const float* bp, float* c, i64 ldc,
                                                    bool acc) {
  macro_tile<v8f, 6, 2>(mc, nc, kc, ap, bp, c, ldc, acc);  // 12 ymm accumulators of 16
}
__attribute__((target("avx512f"))) void macro_avx512(i64 mc, i64 nc, i64 kc, const float* ap,
                                                     const float* bp, float* c, i64 ldc,
                                                     bool acc) {
  macro_tile<v16f, 12, 2>(mc, nc, kc, ap, bp, c, ldc, acc);  // 24 zmm accumulators of 32
}
#endif

struct Isa {
  int mr, nr;
  MacroFn macro;
};
constexpr Isa kIsas[] = {
    {6, 8, macro_generic},
#if defined(LC_GEMM_MULTI_ISA)
    {6, 16, macro_avx2},
    {12, 32, macro_avx512},
#endif
};

int detect_isa() {
#if defined(LC_GEMM_MULTI_ISA)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

int best_isa() {
  static const int isa = detect_isa();
  return isa;
}

// B(p, j) for p in [p0, p0+kc), j in [j0, j0+nc) into NR-wide panels [kc][NR], zero padded.
void pack_b(const float* b, i64 ldb, bool trans_b, i64 p0, i64 kc, i64 j0, i64 nc, int nr,
            float* dst) {
  for (i64 jp = 0; jp < nc; jp += nr) {
    const i64 w = std::min<i64>(nr, nc - jp);
    float* d = dst + jp * kc;
    if (!trans_b) {
      for (i64 p = 0; p < kc; ++p) {
        const float* src = b + (p0 + p) * ldb + j0 + jp;
        for (i64 j = 0; j < w; ++j) d[p * nr + j] = src[j];
        for (i64 j = w; j < nr; ++j) d[p * nr + j] = 0.0f;
      }
    } else {
      // Rows of a transposed B are contiguous along p: read them sequentially.
      for (i64 j = 0; j < nr; ++j) {
        if (j < w) {
          const float* src = b + (j0 + jp + j) * ldb + p0;
          for (i64 p = 0; p < kc; ++p) d[p * nr + j] = src[p];
        } else {
          for (i64 p = 0; p < kc; ++p) d[p * nr + j] = 0.0f;
        }
      }
    }
  }
}

// A(i, p) for i in [i0, i0+mc), p in [p0, p0+kc) into MR-tall panels [kc][MR], zero padded.
void pack_a(const float* a, i64 lda, i64 i0, i64 mc, i64 p0, i64 kc, int mr, float* dst) {
  for (i64 ip = 0; ip < mc; ip += mr) {
    const i64 h = std::min<i64>(mr, mc - ip);
    float* d = dst + ip * kc;
    for (i64 r = 0; r < mr; ++r) {
      if (r < h) {
        const float* src = a + (i0 + ip + r) * lda + p0;
        for (i64 p = 0; p < kc; ++p) d[p * mr + r] = src[p];
      } else {
        for (i64 p = 0; p < kc; ++p) d[p * mr + r] = 0.0f;
      }
    }
  }
}

// ---- the fused epilogue (GemmEpilogue), per instruction set ------------------------------
#define LC_ISA_KERNEL "backends/cpu/epilogue_rows.inc"
#include "backends/cpu/isa_variants.inc"

using EpilogueFn = void (*)(float*, i64, i64, i64, const float*, const float*, i64, Activation);
EpilogueFn pick_epilogue() {
  return LC_ISA_PICK(simd_level(), epilogue_range);
}

// The epilogue over rows [r0, r1) x columns [c0, c1) of C, on this thread.
inline void epilogue_block(float* c, i64 ldc, i64 r0, i64 r1, i64 c0, i64 c1,
                           const GemmEpilogue& ep) {
  static const EpilogueFn fn = pick_epilogue();
  fn(c + r0 * ldc + c0, r1 - r0, c1 - c0, ldc, ep.bias ? ep.bias + c0 : nullptr,
     ep.residual ? ep.residual + r0 * ep.ldr + c0 : nullptr, ep.ldr, ep.act);
}

// Grow-only per-thread scratch: after warm-up, a GEMM allocates nothing.
float* scratch(std::vector<float>& v, i64 n) {
  if (static_cast<i64>(v.size()) < n + 16) v.resize(static_cast<std::size_t>(n + 16));
  auto addr = reinterpret_cast<std::uintptr_t>(v.data());
  return v.data() + ((64 - addr % 64) % 64) / sizeof(float);  // 64-byte aligned start
}

void gemm_blocked_isa(int isa, i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b,
                      i64 ldb, bool trans_b, float* c, i64 ldc) {
  const Isa& cfg = kIsas[isa];
  thread_local std::vector<float> b_store;
  const bool parallel = m * n * k >= kParallelWork;
  for (i64 jc = 0; jc < n; jc += NC) {
    const i64 nc = std::min(NC, n - jc);
    const i64 nc_pad = (nc + cfg.nr - 1) / cfg.nr * cfg.nr;
    for (i64 pc = 0; pc < k; pc += KC) {
      const i64 kc = std::min(KC, k - pc);
      float* bp = scratch(b_store, nc_pad * kc);
      pack_b(b, ldb, trans_b, pc, kc, jc, nc, cfg.nr, bp);
      const i64 mblocks = (m + MC - 1) / MC;
      const i64 nblocks = (nc + NG - 1) / NG;
      const bool accumulate = pc > 0;
      auto task = [&](i64 lo, i64 hi) {
        thread_local std::vector<float> a_store;
        float* ap = scratch(a_store, MC * kc);
        i64 packed_block = -1;
        for (i64 t = lo; t < hi; ++t) {
          const i64 ib = t / nblocks, jb = t % nblocks;
          const i64 i0 = ib * MC, mc = std::min(MC, m - i0);
          const i64 j0 = jb * NG, ng = std::min(NG, nc - j0);
          if (ib != packed_block) {  // consecutive tasks of one row block share packed A
            pack_a(a, lda, i0, mc, pc, kc, cfg.mr, ap);
            packed_block = ib;
          }
          cfg.macro(mc, ng, kc, ap, bp + j0 * kc, c + i0 * ldc + jc + j0, ldc, accumulate);
        }
      };
      const i64 tasks = mblocks * nblocks;
      parallel_for(0, tasks, parallel ? 1 : tasks, task);
    }
  }
  if (k == 0) {
    for (i64 i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  }
}

[[gnu::always_inline]] inline void gemm_tiny_body(i64 m, i64 n, i64 k, const float* a,
                                                  i64 lda, const float* b, i64 ldb,
                                                  bool trans_b, float* c, i64 ldc) {
  if (!trans_b) {
    // Row of C as a sum of scaled rows of B: the inner loop is a contiguous axpy.
    for (i64 i = 0; i < m; ++i) {
      float* ci = c + i * ldc;
      for (i64 j = 0; j < n; ++j) ci[j] = 0.0f;
      for (i64 p = 0; p < k; ++p) {
        const float av = a[i * lda + p];
        const float* bp = b + p * ldb;
        for (i64 j = 0; j < n; ++j) ci[j] += av * bp[j];
      }
    }
    return;
  }
  // Dot products; 8 independent partial sums let the SLP vectoriser use one vector register
  // (a plain float reduction is not vectorised without -ffast-math).
  for (i64 i = 0; i < m; ++i) {
    const float* ai = a + i * lda;
    for (i64 j = 0; j < n; ++j) {
      const float* bj = b + j * ldb;
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      i64 p = 0;
      for (; p + 8 <= k; p += 8)
        for (int u = 0; u < 8; ++u) s[u] += ai[p + u] * bj[p + u];
      float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
      for (; p < k; ++p) t += ai[p] * bj[p];
      c[i * ldc + j] = t;
    }
  }
}

void gemm_tiny_generic(i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b, i64 ldb,
                       bool trans_b, float* c, i64 ldc) {
  gemm_tiny_body(m, n, k, a, lda, b, ldb, trans_b, c, ldc);
}
#if defined(LC_GEMM_MULTI_ISA)
__attribute__((target("avx2,fma"))) void gemm_tiny_avx2(i64 m, i64 n, i64 k, const float* a,
                                                        i64 lda, const float* b, i64 ldb,
                                                        bool trans_b, float* c, i64 ldc) {
  gemm_tiny_body(m, n, k, a, lda, b, ldb, trans_b, c, ldc);
}
#endif

void gemm_tiny(i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b, i64 ldb,
               bool trans_b, float* c, i64 ldc) {
#if defined(LC_GEMM_MULTI_ISA)
  if (best_isa() >= 1) return gemm_tiny_avx2(m, n, k, a, lda, b, ldb, trans_b, c, ldc);
#endif
  gemm_tiny_generic(m, n, k, a, lda, b, ldb, trans_b, c, ldc);
}

#if defined(LC_HAVE_BLAS)
void gemm_blas(i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b, i64 ldb,
               bool trans_b, float* c, i64 ldc) {
  // Match OpenBLAS's own thread count to ours, once, so LC_NUM_THREADS governs both.
  blas_configure_once();
  if (k == 0) {  // BLAS with k=0 is allowed but some builds scale C by beta and read it
    for (i64 i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  // The CBLAS interface takes int sizes: larger ones run the built-in kernel (an OpenBLAS given
  // a wrapped size prints "illegal value" and computes nothing).
  if (!blas_fits_int(m, n, k, lda, ldb, ldc))
    return gemm_blocked_isa(best_isa(), m, n, k, a, lda, b, ldb, trans_b, c, ldc);
  // OpenBLAS threads calls above its SMP threshold (65536 * GEMM_MULTITHREAD_THRESHOLD 4).
  if (m * n * k > (i64{1} << 18) && num_threads() > 1) note_threaded_blas_call();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), 0.0f, c, static_cast<int>(ldc));
}

// One single-threaded sgemm per tile of C, tiles spread over our pool; with an epilogue (ep
// non-null and not empty) each task applies it to its tile right after the tile's sgemm.
void gemm_pooled(i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b, i64 ldb,
                 bool trans_b, float* c, i64 ldc, i64 tile_m, i64 tile_n,
                 const GemmEpilogue* ep = nullptr) {
  if (ep && ep->empty()) ep = nullptr;
  // The fallbacks below run the whole GEMM, then the epilogue as one pass.
  auto whole = [&] {
    gemm_blas(m, n, k, a, lda, b, ldb, trans_b, c, ldc);
    if (ep) gemm_epilogue(c, m, n, ldc, *ep, true);
  };
  if (k == 0 || !blas_fits_int(m, n, k, lda, ldb, ldc)) return whole();
  GemmGrid g;
  if (tile_m > 0 && tile_n > 0) {
    g.tile_m = std::min(tile_m, m);
    g.tile_n = std::min(tile_n, n);
    g.grid_m = (m + g.tile_m - 1) / g.tile_m;
    g.grid_n = (n + g.tile_n - 1) / g.tile_n;
  } else {
    g = gemm_pooled_grid(m, n, k, num_threads());
  }
  const i64 tiles = g.grid_m * g.grid_n;
  // One tile, or already inside a pool task (a nested parallel_for would run the tiles one
  // after another on this thread): one plain call does the same work with less overhead.
  if (tiles <= 1 || detail::in_parallel_region()) return whole();
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  auto task = [&](i64 lo, i64 hi) {
    for (i64 t = lo; t < hi; ++t) {
      const i64 i0 = (t / g.grid_n) * g.tile_m, j0 = (t % g.grid_n) * g.tile_n;
      const i64 mt = std::min(g.tile_m, m - i0), nt = std::min(g.tile_n, n - j0);
      // B's columns j0.. are columns of [k, n] B, or rows of [n, k] B when transposed.
      const float* bt = trans_b ? b + j0 * ldb : b + j0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, static_cast<int>(mt), static_cast<int>(nt),
                  static_cast<int>(k), 1.0f, a + i0 * lda, static_cast<int>(lda), bt,
                  static_cast<int>(ldb), 0.0f, c + i0 * ldc + j0, static_cast<int>(ldc));
      if (ep) epilogue_block(c, ldc, i0, i0 + mt, j0, j0 + nt, *ep);  // the tile is hot
    }
  };
  BlasOneThread one;
  parallel_for(0, tiles, 1, task);
}
#endif

// Tile extent for `parts` pieces of `len`, rounded up to the quantum (whole len if smaller).
i64 tile_extent(i64 len, i64 parts, i64 quantum) {
  const i64 e = (len + parts - 1) / parts;
  const i64 r = (e + quantum - 1) / quantum * quantum;
  return r >= len ? len : (r <= 0 ? 1 : r);
}

// Tiles of <= kPooledSmallTileWork multiply-adds, at most kPooledMaxWaves per thread: the grid
// with the least time per thread, waves x (tile multiply-adds + packing of its rows and
// columns) per k, as in gemm_pooled_grid; ties go to fewer tiles. For each tile height the
// widest tile within the cap is tried. {m, n, 1, 1} when no grid qualifies (a thin C).
GemmGrid small_tile_grid(i64 m, i64 n, i64 k, int threads) {
  GemmGrid best{m, n, 1, 1};
  const i64 max_tiles = kPooledMaxWaves * threads;
  i64 best_cost = -1, best_tiles = 0;
  // Tile heights from splitting m into 1..max_tiles parts: at most max_tiles candidates, so a
  // thin C (m in the millions, n = 1) costs no more to plan than a square one.
  for (i64 parts = 1; parts <= std::min(max_tiles, m); ++parts) {
    const i64 em = tile_extent(m, parts, kPooledRowQuantum), gm = (m + em - 1) / em;
    const i64 cap = kPooledSmallTileWork / std::max<i64>(k, 1) / em;  // widest tile, columns
    const i64 tn = cap >= n ? n : cap / kPooledColQuantum * kPooledColQuantum;
    if (tn <= 0) continue;
    const i64 gn = (n + tn - 1) / tn;
    const i64 tiles = gm * gn;
    const i64 waves = (tiles + threads - 1) / threads;
    const i64 cost = waves * (em * tn + kPooledPackCost * (em + tn));
    if (tiles <= max_tiles &&
        (best_cost < 0 || cost < best_cost || (cost == best_cost && tiles < best_tiles))) {
      best_cost = cost;
      best_tiles = tiles;
      best = GemmGrid{em, tn, gm, gn};
    }
  }
  return best;
}

}  // namespace

GemmGrid gemm_pooled_grid(i64 m, i64 n, i64 k, int threads) {
  GemmGrid best{m, n, 1, 1};
  if (m <= 0 || n <= 0) return best;
  const i64 work = m * n * std::max<i64>(k, 1);
  if (threads > 1 && work > threads * kPooledSmallTileWork &&
      work <= kPooledMaxWaves * threads * kPooledSmallTileWork) {
    const GemmGrid g = small_tile_grid(m, n, k, threads);
    if (g.grid_m * g.grid_n > 1) return g;
  }
  const i64 max_tiles =
      std::min<i64>(std::max(threads, 1), std::max<i64>(1, work / kPooledMinTileWork));
  if (max_tiles <= 1) return best;
  // The tiles run concurrently (never more tiles than threads), so the time is set by the
  // largest tile: k * (tm * tn multiply-adds + packing of its tm + tn rows / columns). Ties go
  // to fewer tiles (less packing in total, fewer sgemm calls).
  i64 best_cost = -1, best_tiles = 0;
  for (i64 gm = 1; gm <= std::min(max_tiles, m); ++gm) {
    const i64 tm = tile_extent(m, gm, kPooledRowQuantum);
    const i64 real_gm = (m + tm - 1) / tm;
    for (i64 gn = 1; gn * real_gm <= max_tiles && gn <= n; ++gn) {
      const i64 tn = tile_extent(n, gn, kPooledColQuantum);
      const i64 real_gn = (n + tn - 1) / tn;
      const i64 tiles = real_gm * real_gn;
      const i64 cost = tm * tn + kPooledPackCost * (tm + tn);
      if (best_cost < 0 || cost < best_cost || (cost == best_cost && tiles < best_tiles)) {
        best_cost = cost;
        best_tiles = tiles;
        best = GemmGrid{tm, tn, real_gm, real_gn};
      }
    }
  }
  return best;
}

bool gemm_tunable(i64 m, i64 n, i64 k) {
  const i64 work = m * n * k;
  const int threads = num_threads();
  return have_blas() && work > kFewThreadsPooledMaxWork && work <= kTuneMaxWork &&
         threads >= 2 && threads < kPooledMinThreads;
}

GemmPath gemm_default_path(i64 m, i64 n, i64 k) {
  const i64 work = m * n * k;
  if (!have_blas()) return work <= kTinyWork ? GemmPath::tiny : GemmPath::blocked;
  const int threads = num_threads();
  if (threads < 2 || work <= kBlasSmpWork) return GemmPath::blas;
  if (threads >= kPooledMinThreads) return GemmPath::pooled;
  return work <= kFewThreadsPooledMaxWork ? GemmPath::pooled : GemmPath::blas;
}

bool have_blas() {
#if defined(LC_HAVE_BLAS)
  return true;
#else
  return false;
#endif
}

int blas_num_threads_now() {
#if defined(LC_HAVE_BLAS)
  blas_configure_once();
  return openblas_get_num_threads();
#else
  return 0;
#endif
}

const char* gemm_engine() { return have_blas() ? "OpenBLAS" : "built-in"; }

int gemm_isa_count() { return best_isa() + 1; }

void gemm_blocked_with_isa(int isa, i64 m, i64 n, i64 k, const float* a, i64 lda,
                           const float* b, i64 ldb, bool trans_b, float* c, i64 ldc) {
  gemm_blocked_isa(std::clamp(isa, 0, best_isa()), m, n, k, a, lda, b, ldb, trans_b, c, ldc);
}

void gemm_with(GemmPath path, i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b,
               i64 ldb, bool trans_b, float* c, i64 ldc) {
  if (m <= 0 || n <= 0) return;
  if (path == GemmPath::automatic || path == GemmPath::skinny) {
    if (gemm_skinny_fits(m, n, k, trans_b))
      return gemm_skinny(m, n, k, a, lda, b, ldb, c, ldc, nullptr);
    path = gemm_default_path(m, n, k);
  }
  switch (path) {
    case GemmPath::tiny: gemm_tiny(m, n, k, a, lda, b, ldb, trans_b, c, ldc); return;
#if defined(LC_HAVE_BLAS)
    case GemmPath::blas: gemm_blas(m, n, k, a, lda, b, ldb, trans_b, c, ldc); return;
    case GemmPath::pooled:
      gemm_pooled(m, n, k, a, lda, b, ldb, trans_b, c, ldc, 0, 0);
      return;
#else
    case GemmPath::blas:
    case GemmPath::pooled:
#endif
    case GemmPath::blocked:
    case GemmPath::automatic:
    case GemmPath::skinny:
      gemm_blocked_isa(best_isa(), m, n, k, a, lda, b, ldb, trans_b, c, ldc);
      return;
  }
}

void gemm_pooled_with_tiles(i64 tile_m, i64 tile_n, i64 m, i64 n, i64 k, const float* a,
                            i64 lda, const float* b, i64 ldb, bool trans_b, float* c, i64 ldc) {
  if (m <= 0 || n <= 0) return;
#if defined(LC_HAVE_BLAS)
  gemm_pooled(m, n, k, a, lda, b, ldb, trans_b, c, ldc, tile_m, tile_n);
#else
  (void)tile_m;
  (void)tile_n;
  gemm_blocked_isa(best_isa(), m, n, k, a, lda, b, ldb, trans_b, c, ldc);
#endif
}

void gemm(i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b, i64 ldb, bool trans_b,
          float* c, i64 ldc) {
  gemm_with(GemmPath::automatic, m, n, k, a, lda, b, ldb, trans_b, c, ldc);
}

void gemm_epilogue(float* c, i64 rows, i64 cols, i64 ldc, const GemmEpilogue& ep,
                   bool threaded) {
  if (rows <= 0 || cols <= 0 || ep.empty()) return;
  // ~64K elements per task (~16K with an activation, ~10x the arithmetic per element): below
  // that the pass is cheaper than a wake-up.
  const i64 per_task = ep.act == Activation::none ? (i64{1} << 16) : (i64{1} << 14);
  const i64 grain = std::max<i64>(1, per_task / cols);
  if (!threaded || rows <= grain) return epilogue_block(c, ldc, 0, rows, 0, cols, ep);
  parallel_for(0, rows, grain,
               [&](i64 lo, i64 hi) { epilogue_block(c, ldc, lo, hi, 0, cols, ep); });
}

void bias_act_rows(float* out, i64 rows, i64 cols, i64 ld, const float* bias, Activation act) {
  GemmEpilogue ep;
  ep.bias = bias;
  ep.act = act;
  gemm_epilogue(out, rows, cols, ld, ep, true);
}

void gemm_fused(GemmPath path, i64 m, i64 n, i64 k, const float* a, i64 lda, const float* b,
                i64 ldb, bool trans_b, float* c, i64 ldc, const GemmEpilogue& ep) {
  if (m <= 0 || n <= 0) return;
  if (path == GemmPath::automatic || path == GemmPath::skinny) {
    if (gemm_skinny_fits(m, n, k, trans_b))
      return gemm_skinny(m, n, k, a, lda, b, ldb, c, ldc, &ep);
    path = gemm_default_path(m, n, k);
  }
#if defined(LC_HAVE_BLAS)
  if (path == GemmPath::pooled)
    return gemm_pooled(m, n, k, a, lda, b, ldb, trans_b, c, ldc, 0, 0, &ep);
#endif
  gemm_with(path, m, n, k, a, lda, b, ldb, trans_b, c, ldc);
  gemm_epilogue(c, m, n, ldc, ep, true);
}

void gemm_pooled_fused_with_tiles(i64 tile_m, i64 tile_n, i64 m, i64 n, i64 k, const float* a,
                                  i64 lda, const float* b, i64 ldb, bool trans_b, float* c,
                                  i64 ldc, const GemmEpilogue& ep) {
  if (m <= 0 || n <= 0) return;
#if defined(LC_HAVE_BLAS)
  gemm_pooled(m, n, k, a, lda, b, ldb, trans_b, c, ldc, tile_m, tile_n, &ep);
#else
  (void)tile_m;
  (void)tile_n;
  gemm_blocked_isa(best_isa(), m, n, k, a, lda, b, ldb, trans_b, c, ldc);
  gemm_epilogue(c, m, n, ldc, ep, true);
#endif
}

void matmul_with(GemmPath path, const MatmulArgs& p) {
  if (p.m <= 0 || p.n <= 0) return;
  // One float32 product (with or without a residual): the GEMM with its fused epilogue (tiny
  // shapes pay one compare for the other forms). Other dtypes and batches: matmul_general.cpp.
  if (p.dtype != DType::f32 || p.batch != 1) return matmul_general(path, p);
  const i64 ldb = p.trans_b ? p.k : p.n;
  auto* out = static_cast<float*>(p.out);
  GemmEpilogue ep;
  ep.bias = static_cast<const float*>(p.bias);
  ep.residual = static_cast<const float*>(p.residual);
  ep.ldr = p.n;
  ep.act = p.act;
  gemm_fused(path, p.m, p.n, p.k, static_cast<const float*>(p.a), p.k,
             static_cast<const float*>(p.b), ldb, p.trans_b, out, p.n, ep);
}

void matmul(const MatmulArgs& p) { matmul_with(GemmPath::automatic, p); }

}  // namespace lc::cpu
