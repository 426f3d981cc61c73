// One LSTM layer on the CPU (LstmArgs, backend.h), as ONE pool job for the whole sequence.
//
// The weights are repacked once per call into per-unit-block panels: block b holds hidden units
// [8b, 8b + 8) and its panel is [I + H + 1][32] floats: for every k the 32 columns i, f, g, o of
// those 8 units (w_ih's rows over k < I, then w_hh's over the next H), then the summed bias.
// A work chunk is (unit block, block of rows); per step it computes its gate pre-activations
//   gates[r, 32] = bias + x_t[r, :] . panel[0:I] + h_{t-1}[r, :] . panel[I:I+H]
// in registers (a rows x 32 micro-kernel, the input projection fused in: no [T*B, 4H] buffer
// goes through memory), then the pointwise part for its units (sigmoid / tanh, the float32
// cell state, h_t) straight from the tile. One chunk owns all four gates of its units, so no
// other thread needs its gates.
//
// The time loop runs inside one parallel_for: every participant walks the steps, claims chunks
// of the current step (its own range first, so a thread keeps the same panels in its L2 from
// step to step, then any left over) and waits for the step's last chunk before the next step
// (h_{t-1} must be complete). A participant only waits after every chunk of the step is claimed
// by a running thread, so the job finishes with any number of workers (one included: the
// caller does everything when the pool is busy or nested). Step 0 of the schedule packs the
// panels and loads the cell state (in parallel, by the chunks' owners).
//
// Before (2026-12-01, 16-core GPU host, seq 128, batch 32, 512/512): one pooled GEMM per step
// (h w_hh^T, W re-packed by BLAS per call) + one pooled pointwise pass: two pool wake-ups and
// ~350 us a step, 45.3 ms against torch CPU 17.3 ms. docs/lstm.md has the numbers after.
//
// Everything between the storage and the result is float32: 16-bit x, weights, biases and h0 /
// c0 are widened once per call, the pre-activations, the cell state and the hidden state fed
// back into the recurrent product stay float32 (only y, h_n and c_n are rounded to the storage
// dtype). Three builds of the chunk function (baseline, AVX2 + FMA, AVX-512F), picked from
// CPUID once.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_convert.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace lc::cpu {

namespace {

using i64 = std::int64_t;

constexpr i64 kUnits = 8;              // hidden units per block
constexpr i64 kCols = 4 * kUnits;      // a panel row: i, f, g, o of the block's 8 units
constexpr i64 kRowBlock = 96;          // rows per chunk (batch 32: one row block)
// Fewer participants for small steps: about this many flops per thread per step (a few us),
// so a step's barrier (~1 us) does not dominate.
constexpr double kFlopsPerThread = 262144.0;

typedef float v16f __attribute__((vector_size(64)));

template <class V>
[[gnu::always_inline]] inline V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class V>
[[gnu::always_inline]] inline void vstore(float* p, const V& v) {
  std::memcpy(p, &v, sizeof(v));
}

[[gnu::always_inline]] inline v8f v8_sigmoid(const v8f& x) {
  return (v8f{} + 1.0f) / ((v8f{} + 1.0f) + v8_exp(-x));
}
// tanh through e^{-2|x|} (no overflow; |error| a few float32 ulps of 1).
[[gnu::always_inline]] inline v8f v8_tanh(const v8f& x) {
  const v8f ax = x < 0.0f ? -x : x;
  const v8f e = v8_exp(-2.0f * ax);
  const v8f t = ((v8f{} + 1.0f) - e) / ((v8f{} + 1.0f) + e);
  return x < 0.0f ? -t : t;
}

// Everything one call's chunks read and write (float32 views; y / h_n / c_n in the storage
// dtype).
struct Job {
  i64 T, B, I, H, nblk, nrb, nchunks;
  DType dtype;
  std::size_t es;
  const float *x, *w_ih, *w_hh, *b_ih, *b_hh;  // x [T*B, I]; biases may be null
  const float* h0;                             // [B, H] float32
  const void* c0;                              // [B, H] storage dtype
  float* panels;                               // [nblk][I + H + 1][32]
  i64 panel_stride;
  float* c;                                    // [B, H] float32 cell state
  float* hbuf[2];                              // 16-bit storage: float32 h_t, alternating
  char* y;                                     // [T, B, H] storage dtype
  void* h_n;
  void* c_n;
};

// Step 0 of the schedule: block `blk`'s panel (the row-block-0 chunk packs it) and the chunk's
// part of the cell state.
void pack_chunk(const Job& j, i64 blk, i64 rb) {
  const i64 j0 = blk * kUnits, n = std::min(kUnits, j.H - j0);
  const i64 r0 = rb * kRowBlock, r1 = std::min(j.B, r0 + kRowBlock);
  for (i64 r = r0; r < r1; ++r) {
    float* cr = j.c + r * j.H + j0;
    if (j.dtype == DType::f32)
      std::memcpy(cr, static_cast<const float*>(j.c0) + r * j.H + j0,
                  static_cast<std::size_t>(n) * sizeof(float));
    else
      widen_to_f32(j.dtype, static_cast<const char*>(j.c0) + (r * j.H + j0) * j.es, cr, n);
  }
  if (rb != 0) return;
  float* p = j.panels + blk * j.panel_stride;
  const i64 K = j.I + j.H;
  for (i64 g = 0; g < 4; ++g) {
    for (i64 u = 0; u < kUnits; ++u) {
      const i64 col = g * kUnits + u;
      if (u >= n) {
        for (i64 k = 0; k <= K; ++k) p[k * kCols + col] = 0.0f;  // padding units: zero gates
        continue;
      }
      const i64 row = g * j.H + j0 + u;  // torch's gate-major row of w_ih / w_hh / biases
      const float* wi = j.w_ih + row * j.I;
      for (i64 k = 0; k < j.I; ++k) p[k * kCols + col] = wi[k];
      const float* wh = j.w_hh + row * j.H;
      for (i64 k = 0; k < j.H; ++k) p[(j.I + k) * kCols + col] = wh[k];
      p[K * kCols + col] = (j.b_ih ? j.b_ih[row] : 0.0f) + (j.b_hh ? j.b_hh[row] : 0.0f);
    }
  }
}

// MR rows x (2 vectors) of gate pre-activations at panel column c0: bias + xa . panel[0:kx] +
// ha . panel[kx:kx+kh], into out[r * 32 + c0 ...]. 2*MR accumulators stay in registers.
template <class V, int MR>
[[gnu::always_inline]] inline void gate_tile(const float* xa, i64 ldx, i64 kx, const float* ha,
                                             i64 ldh, i64 kh, const float* panel, int c0,
                                             float* out) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(float));
  V acc0[MR], acc1[MR];
  const V b0 = vload<V>(panel + (kx + kh) * kCols + c0);
  const V b1 = vload<V>(panel + (kx + kh) * kCols + c0 + L);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    acc0[r] = b0;
    acc1[r] = b1;
  }
  const float* w = panel + c0;
  for (i64 k = 0; k < kx; ++k, w += kCols) {
    const V w0 = vload<V>(w), w1 = vload<V>(w + L);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V a = xa[r * ldx + k] - V{};  // a broadcast (x - 0 folds; 0 + x would not: -0)
      acc0[r] += a * w0;
      acc1[r] += a * w1;
    }
  }
  for (i64 k = 0; k < kh; ++k, w += kCols) {
    const V w0 = vload<V>(w), w1 = vload<V>(w + L);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V a = ha[r * ldh + k] - V{};
      acc0[r] += a * w0;
      acc1[r] += a * w1;
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    vstore(out + r * kCols + c0, acc0[r]);
    vstore(out + r * kCols + c0 + L, acc1[r]);
  }
}

// All 32 columns of `mr` (1..MRMAX) rows: one pass of 2 vectors of V per row (AVX-512: 32
// columns) or two (8-lane vectors: columns 0-15, then 16-31).
template <class V, int MRMAX>
[[gnu::always_inline]] inline void gate_rows(int mr, const float* xa, i64 ldx, i64 kx,
                                             const float* ha, i64 ldh, i64 kh,
                                             const float* panel, float* out) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(float));
  for (int c0 = 0; c0 < kCols; c0 += 2 * L) {
    switch (mr) {
#define LC_LSTM_TILE(M)                                                  \
  case M:                                                                \
    if constexpr (M <= MRMAX) gate_tile<V, M>(xa, ldx, kx, ha, ldh, kh, panel, c0, out); \
    break;
      LC_LSTM_TILE(1) LC_LSTM_TILE(2) LC_LSTM_TILE(3) LC_LSTM_TILE(4) LC_LSTM_TILE(5)
      LC_LSTM_TILE(6) LC_LSTM_TILE(7) LC_LSTM_TILE(8) LC_LSTM_TILE(9) LC_LSTM_TILE(10)
      LC_LSTM_TILE(11) LC_LSTM_TILE(12)
#undef LC_LSTM_TILE
      default: break;
    }
  }
}

// One chunk of step t: gates of rows [r0, r1) x units [j0, j0 + n), then the pointwise part.
template <class V, int MRMAX>
[[gnu::always_inline]] inline void step_chunk(const Job& j, i64 t, i64 blk, i64 rb) {
  const i64 j0 = blk * kUnits, n = std::min(kUnits, j.H - j0);
  const i64 r0 = rb * kRowBlock, r1 = std::min(j.B, r0 + kRowBlock);
  const bool f32 = j.dtype == DType::f32;
  const float* hprev = t == 0 ? j.h0
                       : f32  ? reinterpret_cast<const float*>(j.y) + (t - 1) * j.B * j.H
                              : j.hbuf[(t - 1) & 1];
  const float* panel = j.panels + blk * j.panel_stride;
  const bool last = t == j.T - 1;
  alignas(64) float tile[MRMAX * kCols];
  // Row tiles as even as possible (batch 32 with MRMAX 6: 6, 6, 5, 5, 5, 5), never a thin one.
  const i64 rows = r1 - r0, ntile = (rows + MRMAX - 1) / MRMAX;
  i64 r = r0;
  for (i64 q = 0; q < ntile; ++q) {
    const int mr = static_cast<int>(rows / ntile + (q < rows % ntile ? 1 : 0));
    const float* xa = j.I > 0 ? j.x + (t * j.B + r) * j.I : nullptr;
    gate_rows<V, MRMAX>(mr, xa, j.I, j.I, hprev + r * j.H, j.H, j.H, panel, tile);
    for (int i = 0; i < mr; ++i, ++r) {
      const float* g = tile + i * kCols;
      float* cr = j.c + r * j.H + j0;
      alignas(32) float cbuf[kUnits] = {};
      if (n == kUnits)
        std::memcpy(cbuf, cr, sizeof(cbuf));
      else
        std::memcpy(cbuf, cr, static_cast<std::size_t>(n) * sizeof(float));
      const v8f cn = v8_sigmoid(v8_load(g + kUnits)) * v8_load(cbuf) +
                     v8_sigmoid(v8_load(g)) * v8_tanh(v8_load(g + 2 * kUnits));
      const v8f hn = v8_sigmoid(v8_load(g + 3 * kUnits)) * v8_tanh(cn);
      alignas(32) float cout[kUnits], hout[kUnits];
      v8_store(cout, cn);
      v8_store(hout, hn);
      const std::size_t nb = static_cast<std::size_t>(n) * sizeof(float);
      std::memcpy(cr, cout, nb);
      const i64 off = r * j.H + j0;  // (row, unit) in a [B, H] state
      if (f32) {
        std::memcpy(reinterpret_cast<float*>(j.y) + t * j.B * j.H + off, hout, nb);
        if (last) {
          std::memcpy(static_cast<float*>(j.h_n) + off, hout, nb);
          std::memcpy(static_cast<float*>(j.c_n) + off, cout, nb);
        }
      } else {
        std::memcpy(j.hbuf[t & 1] + off, hout, nb);
        narrow_from_f32(j.dtype, hout, j.y + static_cast<std::size_t>(t * j.B * j.H + off) * j.es,
                        n);
        if (last) {
          narrow_from_f32(j.dtype, hout, static_cast<char*>(j.h_n) + off * j.es, n);
          narrow_from_f32(j.dtype, cout, static_cast<char*>(j.c_n) + off * j.es, n);
        }
      }
    }
  }
}

// Schedule step s of chunk c: s == 0 packs, s >= 1 runs time step s - 1.
using ChunkFn = void (*)(const Job&, i64 s, i64 c);

void chunk_generic(const Job& j, i64 s, i64 c) {
  if (s == 0) return pack_chunk(j, c / j.nrb, c % j.nrb);
  step_chunk<v8f, 6>(j, s - 1, c / j.nrb, c % j.nrb);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void chunk_avx2(const Job& j, i64 s, i64 c) {
  if (s == 0) return pack_chunk(j, c / j.nrb, c % j.nrb);
  step_chunk<v8f, 6>(j, s - 1, c / j.nrb, c % j.nrb);
}
__attribute__((target("avx512f,avx2,fma"))) void chunk_avx512(const Job& j, i64 s, i64 c) {
  if (s == 0) return pack_chunk(j, c / j.nrb, c % j.nrb);
  step_chunk<v16f, 12>(j, s - 1, c / j.nrb, c % j.nrb);
}
#endif
ChunkFn pick_chunk() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return chunk_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return chunk_avx2;
#endif
  return chunk_generic;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// The step schedule shared by the participants.
struct Schedule {
  explicit Schedule(i64 n) : claim(new std::atomic<i64>[static_cast<std::size_t>(n)]) {
    for (i64 c = 0; c < n; ++c) claim[c].store(-1, std::memory_order_relaxed);
  }
  alignas(64) std::atomic<i64> done{0};          // chunks finished, all steps together
  std::unique_ptr<std::atomic<i64>[]> claim;     // per chunk: the last step it was claimed for
};

// Waits until `done` reaches `need`: spins a while (4000 pauses, ~0.03-0.2 ms; a step is tens
// of us on the 16-core host), then yields (a participant descheduled on a busy machine must not
// be starved by the spinners).
i64 wait_for(const std::atomic<i64>& done, i64 need) {
  i64 d = done.load(std::memory_order_acquire);
  for (int spin = 0; d < need; ++spin) {
    if (spin < 4000)
      cpu_relax();
    else
      std::this_thread::yield();
    d = done.load(std::memory_order_acquire);
  }
  return d;
}

// One participant: every step, claim and run chunks (own range [slot*n/P, (slot+1)*n/P) first,
// then the others), then move on once the step's chunks are all done. Returns after the last
// step's chunks are all claimed (parallel_for waits for the claimers to finish them).
void participate(const Job& j, ChunkFn fn, Schedule& s, i64 slot, i64 parts) {
  const i64 n = j.nchunks, steps = j.T + 1;
  const i64 own = slot * n / parts;
  for (i64 st = 0; st < steps; ++st) {
    const i64 d = wait_for(s.done, st * n);  // step st - 1 complete
    if (d >= (st + 1) * n) {                 // this step is done already: catch up
      st = d / n - 1;
      continue;
    }
    for (i64 q = 0; q < n; ++q) {
      const i64 c = (own + q) % n;
      i64 expect = st - 1;
      if (s.claim[c].load(std::memory_order_relaxed) != expect) continue;
      if (!s.claim[c].compare_exchange_strong(expect, st, std::memory_order_acq_rel)) continue;
      fn(j, st, c);
      s.done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
}

// A float32 view of `n` elements at `p` of `dtype`: the pointer itself for float32, else a
// widened copy held in `hold`.
const float* as_f32(const void* p, DType dtype, i64 n, std::vector<float>& hold) {
  if (!p) return nullptr;
  if (dtype == DType::f32) return static_cast<const float*>(p);
  hold.resize(static_cast<std::size_t>(n));
  widen_to_f32(dtype, p, hold.data(), n);
  return hold.data();
}

}  // namespace

void lstm(const LstmArgs& a) {
  const i64 T = a.steps, B = a.batch, I = a.input, H = a.hidden;
  if (B <= 0 || H <= 0) return;  // y, h_n, c_n are empty
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t state_bytes = static_cast<std::size_t>(B * H) * es;
  if (T <= 0) {  // no step: the final state is the initial one
    std::memcpy(a.h_n, a.h0, state_bytes);
    std::memcpy(a.c_n, a.c0, state_bytes);
    return;
  }
  const bool f32 = a.dtype == DType::f32;
  std::vector<float> hx, hwi, hwh, hbi, hbh, hh0;
  Job j{};
  j.T = T;
  j.B = B;
  j.I = I;
  j.H = H;
  j.nblk = (H + kUnits - 1) / kUnits;
  j.nrb = (B + kRowBlock - 1) / kRowBlock;
  j.nchunks = j.nblk * j.nrb;
  j.dtype = a.dtype;
  j.es = es;
  j.x = I > 0 ? as_f32(a.x, a.dtype, T * B * I, hx) : nullptr;
  j.w_ih = I > 0 ? as_f32(a.w_ih, a.dtype, 4 * H * I, hwi) : nullptr;
  j.w_hh = as_f32(a.w_hh, a.dtype, 4 * H * H, hwh);
  j.b_ih = as_f32(a.b_ih, a.dtype, 4 * H, hbi);
  j.b_hh = as_f32(a.b_hh, a.dtype, 4 * H, hbh);
  j.h0 = as_f32(a.h0, a.dtype, B * H, hh0);
  j.c0 = a.c0;
  // The panels stay allocated per thread between calls (a same-shaped call reuses them without
  // page faults; 8 MB at input = hidden = 512). Every element is written by the packing step.
  thread_local std::vector<float> panels;
  j.panel_stride = (I + H + 1) * kCols;
  const std::size_t panel_floats = static_cast<std::size_t>(j.nblk * j.panel_stride);
  if (panels.size() < panel_floats) panels.resize(panel_floats);
  j.panels = panels.data();
  std::vector<float> c(static_cast<std::size_t>(B * H));
  j.c = c.data();
  std::vector<float> hb;
  if (!f32) {
    hb.resize(static_cast<std::size_t>(2 * B * H));
    j.hbuf[0] = hb.data();
    j.hbuf[1] = hb.data() + B * H;
  }
  j.y = static_cast<char*>(a.y);
  j.h_n = a.h_n;
  j.c_n = a.c_n;

  static const ChunkFn fn = pick_chunk();
  Schedule sched(j.nchunks);
  const double step_flops = 2.0 * static_cast<double>(B) * 4.0 * static_cast<double>(H) *
                            static_cast<double>(I + H);
  const i64 parts = std::max<i64>(
      1, std::min<i64>({static_cast<i64>(num_threads()), j.nchunks,
                        static_cast<i64>(step_flops / kFlopsPerThread)}));
  if (parts == 1) {
    participate(j, fn, sched, 0, 1);
    return;
  }
  // One task per participant; run inline (all slots by this thread, in turn) when the pool is
  // busy or this is a nested call: the first slot then does every chunk.
  parallel_for(0, parts, 1, [&](i64 lo, i64 hi) {
    for (i64 p = lo; p < hi; ++p) participate(j, fn, sched, p, parts);
  });
}

}  // namespace lc::cpu
