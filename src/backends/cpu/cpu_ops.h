// The CPU kernels behind CpuBackend, callable directly (tests and benchmarks use them without
// going through the backend object). All pointers are host memory, contiguous, row-major;
// shapes were validated by the core. Every kernel fully writes its output (it never reads
// `out` before writing it, unless out aliases an input as ElementwiseArgs allows).
#pragma once

#include <cstdint>

#include "backends/backend.h"

namespace lc::cpu {

void matmul(const MatmulArgs& a);
void attention(const AttentionArgs& a);
// attention_mha.cpp: batched multi-head / grouped-query attention (MhaArgs). Decode shapes (a few
// query rows, many keys: attention_mha_decode_applies) take attention_decode.cpp's flash
// decoding, float32 calls with short key rows (attention_mha_encoder_fits, sk <= kEncAutoKeys)
// attention_enc.cpp's encoder kernel, the rest the tiled path (attention_mha_tiled).
void attention_mha(const MhaArgs& a);
void attention_mha_tiled(const MhaArgs& a);
// attention_enc.cpp: one pool task per (batch, head) pair (or a block of >= 16 of its query
// rows when pairs < threads), K^T packed once per task, whole score rows in L1, vectorised
// QK^T / softmax / PV for the instruction set `isa` (0 SSE2, 1 AVX2+FMA, 2 AVX-512F; clamped to
// this CPU; -1 the best), q / k / v read in place through their strides. Calls that do not fit
// run attention_mha_tiled.
constexpr std::int64_t kEncMaxKeys = 512;     // the most keys the encoder kernel takes
constexpr std::int64_t kEncAutoKeys = 256;    // attention_mha uses it up to this many keys
constexpr std::int64_t kEncMaxHeadDim = 256;  // d and dv
bool attention_mha_encoder_fits(const MhaArgs& a);
void attention_mha_encoder(const MhaArgs& a, int isa = -1);
// attention_decode.cpp: flash decoding for a few query rows against many keys (float32 / 16-bit;
// sq <= kDecodeMaxRows, sk > kEncAutoKeys, heads / kv_heads * sq <= kDecodeMaxGroupRows): tasks
// of (batch, kv head, chunk of keys) read each chunk once for all the query rows of that kv
// head, then a combine pass per row. Calls that do not fit run attention_mha_tiled.
constexpr std::int64_t kDecodeMaxRows = 16;
constexpr std::int64_t kDecodeMaxGroupRows = 256;
bool attention_mha_decode_applies(const MhaArgs& a);
void attention_mha_decode(const MhaArgs& a, int isa = -1);
// attention_mha_bwd.cpp: its backward (MhaBackwardArgs).
void attention_mha_backward(const MhaBackwardArgs& a);
void conv2d(const Conv2dArgs& a);
void layernorm(const LayerNormArgs& a);
void softmax(const SoftmaxArgs& a);
void elementwise(const ElementwiseArgs& a);
// ew_program.cpp: Backend::elementwise_program (EwProgramArgs).
void elementwise_program(const EwProgramArgs& a);
void copy_strided(const StridedCopyArgs& a);
void embedding(const EmbeddingArgs& a);
// lstm.cpp: one LSTM layer (LstmArgs): input GEMM, then per step a GEMM + fused pointwise pass.
void lstm(const LstmArgs& a);
std::int64_t first_bad_index(const void* ids, DType ids_dtype, std::int64_t n, std::int64_t vocab);
// reduce.cpp: Backend::sum_squares (float64, deterministic).
double sum_squares(const void* x, DType t, std::int64_t n);

// Which GEMM matmul() uses for non-tiny shapes: "OpenBLAS" or "built-in".
// The CPU's auto-tune fingerprint (fingerprint.cpp; Backend::fingerprint).
std::string fingerprint();
const char* gemm_engine();

// ---- pieces shared between the kernels (and forced paths for tests/benchmarks) ------------

// C[m,n] = A[m,k] @ B (B [k,n], or [n,k] when trans_b), with explicit leading dimensions,
// no epilogue, C overwritten (never read). Picks tiny / BLAS / pooled BLAS / built-in by size
// (gemm_default_path; never consults the auto-tune cache).
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
          const float* b, std::int64_t ldb, bool trans_b, float* c, std::int64_t ldc);

// Forced paths, so tests can cover each regardless of the size thresholds.
// pooled: C in a 2D grid of <= num_threads() tiles, one single-threaded cblas_sgemm per tile
// inside our pool (LC_HAVE_BLAS only; without BLAS it runs `blocked`, and `blas` does too).
enum class GemmPath : std::uint8_t { automatic, tiny, blocked, blas, pooled, skinny };
void gemm_with(GemmPath path, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
               std::int64_t lda, const float* b, std::int64_t ldb, bool trans_b, float* c,
               std::int64_t ldc);
// matmul() with a forced GEMM path (the epilogue as usual): what the auto-tuner runs.
void matmul_with(GemmPath path, const MatmulArgs& a);
// matmul_with for every form other than one float32 product without a residual (matmul.cpp
// routes them here; matmul_general.cpp): float16 / bfloat16 (operands converted to float32,
// the float32 GEMM, bias + residual + activation in float32, one rounding into out), float64
// (cblas_dgemm with BLAS, else a blocked loop; float64 throughout), batches (small products
// spread over the pool, large ones one after another with a threaded GEMM each), residuals.
void matmul_general(GemmPath path, const MatmulArgs& a);
// C[m,n] = A[m,k] @ B in float64 (B [k,n], or [n,k] when trans_b), contiguous, C overwritten.
void gemm_f64(std::int64_t m, std::int64_t n, std::int64_t k, const double* a, const double* b,
              bool trans_b, double* c);
bool have_blas();
// OpenBLAS's current (process-global) thread count, 0 without BLAS. Outside any guarded call
// (blas_threads.h) it equals num_threads(); tests check it is restored.
int blas_num_threads_now();

// The path `automatic` takes without a tuned choice: tiny / blocked without BLAS; with BLAS
// pooled for every m*n*k > 2^18 when num_threads() >= 4 (our pool owns the cores: no OpenBLAS
// threads left spinning next to the ops around the GEMM, matmul.cpp); with 2-3 threads pooled
// for 2^18 < m*n*k <= 2^29, blas above; blas on one thread.
GemmPath gemm_default_path(std::int64_t m, std::int64_t n, std::int64_t k);
// True where pooled and blas are both worth measuring (BLAS present, 2 or 3 threads,
// 2^29 < m*n*k <= 2^31): the auto-tuner's window.
bool gemm_tunable(std::int64_t m, std::int64_t n, std::int64_t k);
// The pooled path's tiling of an [m, n] C for `threads` threads (tile_m x tile_n tiles,
// grid_m x grid_n of them; the last row / column of tiles may be smaller).
struct GemmGrid {
  std::int64_t tile_m, tile_n, grid_m, grid_n;
};
GemmGrid gemm_pooled_grid(std::int64_t m, std::int64_t n, std::int64_t k, int threads);
// The pooled path with a forced tile size (tests: many uneven tiles on any machine);
// tile_m or tile_n <= 0 picks the grid as usual.
void gemm_pooled_with_tiles(std::int64_t tile_m, std::int64_t tile_n, std::int64_t m,
                            std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
                            const float* b, std::int64_t ldb, bool trans_b, float* c,
                            std::int64_t ldc);
// The built-in blocked GEMM compiled for one instruction set: 0 = baseline SSE2, 1 = AVX2+FMA,
// 2 = AVX-512F. gemm_isa_count() says how many this CPU runs (levels above it are clamped).
int gemm_isa_count();
void gemm_blocked_with_isa(int isa, std::int64_t m, std::int64_t n, std::int64_t k,
                           const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                           bool trans_b, float* c, std::int64_t ldc);

// out[r, :] = act(out[r, :] + bias) over a [rows, cols] block with row stride ld; bias may be
// null (then only the activation), act may be none (then only the bias).
void bias_act_rows(float* out, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                   const float* bias, Activation act);

// The float32 GEMM's fused epilogue: C[i, j] = act(C[i, j] + bias[j] + residual[i*ldr + j]),
// bias ([n]) and residual ([m, n] with row stride ldr) optional. The residual is read after the
// GEMM has written C, so it must not overlap C (the op layer stages an aliasing `out`).
struct GemmEpilogue {
  const float* bias = nullptr;
  const float* residual = nullptr;
  std::int64_t ldr = 0;
  Activation act = Activation::none;
  bool empty() const { return !bias && !residual && act == Activation::none; }
};
// gemm_with plus the epilogue. The pooled path applies it to each tile right after that tile's
// sgemm, on the same thread, while the tile is still in L1/L2 (C is written once from memory's
// point of view); the other paths run the GEMM, then one vectorised pass over C (threaded over
// rows for large C).
void gemm_fused(GemmPath path, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                std::int64_t lda, const float* b, std::int64_t ldb, bool trans_b, float* c,
                std::int64_t ldc, const GemmEpilogue& ep);
// gemm_pooled_with_tiles plus the per-tile epilogue (tests).
void gemm_pooled_fused_with_tiles(std::int64_t tile_m, std::int64_t tile_n, std::int64_t m,
                                  std::int64_t n, std::int64_t k, const float* a,
                                  std::int64_t lda, const float* b, std::int64_t ldb,
                                  bool trans_b, float* c, std::int64_t ldc,
                                  const GemmEpilogue& ep);
// The epilogue alone over a [rows, cols] block of C (row stride ldc), vectorised for the best
// instruction set; `threaded` spreads large blocks over the pool.
void gemm_epilogue(float* c, std::int64_t rows, std::int64_t cols, std::int64_t ldc,
                   const GemmEpilogue& ep, bool threaded);

// gemm_skinny.cpp: C[m, n] = A[m, k] @ B^T for B stored [n, k] (linear's weight) and few rows
// (m <= kSkinnyMaxRows), without packing: dot products of A rows and B rows in register tiles,
// columns split over the pool, the epilogue (may be null) applied per task. gemm_with /
// gemm_fused take it automatically where gemm_skinny_fits (GemmPath::skinny forces it; a shape
// that does not fit then runs the default path). isa: the instruction set as in
// gemm_blocked_with_isa (tests), -1 the best this CPU runs.
constexpr std::int64_t kSkinnyMaxRows = 32;
constexpr std::int64_t kSkinnyMinDepth = 16;
bool gemm_skinny_fits(std::int64_t m, std::int64_t n, std::int64_t k, bool trans_b);
void gemm_skinny(std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                 std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc,
                 const GemmEpilogue* ep, int isa = -1);

// gemm: the BLAS-tiled path (only with LC_HAVE_BLAS; without BLAS it runs `blocked`).
enum class AttentionPath : std::uint8_t { automatic, small, blocked, gemm };
void attention_with(AttentionPath path, const AttentionArgs& a);
#if defined(LC_HAVE_BLAS)
// attention.cpp's online-softmax update of one score row (its gemm path, AVX2 where present):
// s[0..nv) visible scores with at least one finite, s[nv..bk) zeroed; P = exp(s - m_new)
// replaces s; l == 0 marks a row without history, else orow[0..dv) is rescaled.
void attention_online_row(float* s, std::int64_t nv, std::int64_t bk, float& m, float& l,
                          float* orow, std::int64_t dv);
#endif

enum class ConvPath : std::uint8_t { automatic, direct, im2col };
void conv2d_with(ConvPath path, const Conv2dArgs& a);

// The tuners (tune.cpp; Backend::tune_matmul / tune_conv2d). With `tune` true and LC_AUTOTUNE
// not 0, the first call of a shape times the paths on the real arguments (they write a.out;
// the caller runs the op afterwards anyway) and persists the winner; later calls read it back.
// tuned_conv_path: direct vs im2col (automatic = the size rule when tuning is off).
// tuned_gemm_path: for float32 shapes in gemm_tunable() (BLAS, 2 or 3 threads,
// 2^29 < m*n*k <= 2^31), blas (one cblas_sgemm with OpenBLAS's own threads) vs pooled
// (single-threaded sgemm tiles in our pool), persisted as op "cpu_gemm" and answered from an
// in-process memo after the first call (no string building, no file access); automatic
// (gemm_default_path) when not tuned: outside the window (tiny shapes cost one multiply and
// compare here), tuning off, or policy autotune=false.
ConvPath tuned_conv_path(const Conv2dArgs& a, bool tune);
GemmPath tuned_gemm_path(const MatmulArgs& a, bool tune);
// The direct conv micro-kernel for one instruction set (0 SSE2, 1 AVX2+FMA, 2 AVX-512F;
// clamped to what this CPU runs, like gemm_blocked_with_isa).
void conv2d_direct_with_isa(int isa, const Conv2dArgs& a);
// layernorm / softmax row kernels for one instruction set (same numbering, clamped).
void layernorm_with_isa(int isa, const LayerNormArgs& a);
void softmax_with_isa(int isa, const SoftmaxArgs& a);
// simd_level() + 1: how many instruction-set levels the non-GEMM kernels can be forced to.
int simd_isa_count();

}  // namespace lc::cpu
