// One LSTM layer on the CPU (LstmArgs, backend.h): one GEMM x w_ih^T for all T steps, then per
// step one GEMM h_{t-1} w_hh^T and one fused pointwise pass (gates, sigmoid / tanh, c, h),
// vectorised (cell_body) and split over rows and blocks of hidden units.
//
// Everything between the storage and the result is float32: 16-bit x, weights, biases and h0 /
// c0 are widened once per call, the gate pre-activations, the cell state and the hidden state
// fed back into the recurrent GEMM stay float32 (only y, h_n and c_n are rounded to the storage
// dtype). The GEMMs are cpu::gemm_with(pooled) (below: tiles of single-threaded BLAS on our
// pool; the built-in blocked GEMM without BLAS); the
// pointwise pass runs eight units at a time in vector lanes (vec_math.h's exp), split over
// (row, unit block) pool tasks when a step is large enough to pay for the pool.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_convert.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {

namespace {

inline float sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// tanh through e^{-2|x|} (no overflow; |error| a few float32 ulps of 1).
inline float tanh_fast(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float e = fast_exp(-2.0f * ax);
  const float t = (1.0f - e) / (1.0f + e);
  return x < 0.0f ? -t : t;
}

[[gnu::always_inline]] inline v8f v8_sigmoid(const v8f& x) {
  return (v8f{} + 1.0f) / ((v8f{} + 1.0f) + v8_exp(-x));
}
[[gnu::always_inline]] inline v8f v8_tanh(const v8f& x) {
  const v8f ax = x < 0.0f ? -x : x;
  const v8f e = v8_exp(-2.0f * ax);
  const v8f t = ((v8f{} + 1.0f) - e) / ((v8f{} + 1.0f) + e);
  return x < 0.0f ? -t : t;
}

// One step's pointwise part for hidden units [j0, j1) of one batch row: the four gates
// (torch's i, f, g, o order) from the input and recurrent projections plus the summed bias,
// the new cell state c (in place) and h. Eight units at a time in GCC vector lanes (the same
// formulas as the scalar tail, so every unit gets the same arithmetic), compiled for the
// baseline and for AVX2 + FMA and picked once from CPUID: the scalar loop did not vectorise and
// took ~60 ns a unit on the 16-core GPU host (237 us a step at batch 32, hidden 512, more than
// the step's GEMM).
[[gnu::always_inline]] inline void cell_body(const float* gx, const float* gh, const float* bs,
                                             float* cb, float* hb, std::int64_t H,
                                             std::int64_t j0, std::int64_t j1) {
  std::int64_t j = j0;
  for (; j + 8 <= j1; j += 8) {
    const v8f gi = v8_load(gx + j) + v8_load(gh + j) + v8_load(bs + j);
    const v8f gf = v8_load(gx + H + j) + v8_load(gh + H + j) + v8_load(bs + H + j);
    const v8f gg = v8_load(gx + 2 * H + j) + v8_load(gh + 2 * H + j) + v8_load(bs + 2 * H + j);
    const v8f go = v8_load(gx + 3 * H + j) + v8_load(gh + 3 * H + j) + v8_load(bs + 3 * H + j);
    const v8f cn = v8_sigmoid(gf) * v8_load(cb + j) + v8_sigmoid(gi) * v8_tanh(gg);
    v8_store(cb + j, cn);
    v8_store(hb + j, v8_sigmoid(go) * v8_tanh(cn));
  }
  for (; j < j1; ++j) {
    const float gi = gx[j] + gh[j] + bs[j];
    const float gf = gx[H + j] + gh[H + j] + bs[H + j];
    const float gg = gx[2 * H + j] + gh[2 * H + j] + bs[2 * H + j];
    const float go = gx[3 * H + j] + gh[3 * H + j] + bs[3 * H + j];
    const float cn = sigmoid(gf) * cb[j] + sigmoid(gi) * tanh_fast(gg);
    cb[j] = cn;
    hb[j] = sigmoid(go) * tanh_fast(cn);
  }
}

using CellFn = void (*)(const float*, const float*, const float*, float*, float*, std::int64_t,
                        std::int64_t, std::int64_t);
void cell_generic(const float* gx, const float* gh, const float* bs, float* cb, float* hb,
                  std::int64_t H, std::int64_t j0, std::int64_t j1) {
  cell_body(gx, gh, bs, cb, hb, H, j0, j1);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void cell_avx2(const float* gx, const float* gh,
                                                    const float* bs, float* cb, float* hb,
                                                    std::int64_t H, std::int64_t j0,
                                                    std::int64_t j1) {
  cell_body(gx, gh, bs, cb, hb, H, j0, j1);
}
#endif
CellFn pick_cell() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return cell_avx2;
#endif
  return cell_generic;
}

// A float32 view of `n` elements at `p` of `dtype`: the pointer itself for float32, else a
// widened copy held in `hold`.
const float* as_f32(const void* p, DType dtype, std::int64_t n, std::vector<float>& hold) {
  if (!p) return nullptr;
  if (dtype == DType::f32) return static_cast<const float*>(p);
  hold.resize(static_cast<std::size_t>(n));
  widen_to_f32(dtype, p, hold.data(), n);
  return hold.data();
}

}  // namespace

// Both GEMMs run on our pool (tiles of single-threaded BLAS), never on OpenBLAS's own threads:
// those spin for ~0.1 s after a threaded call, and the automatic choice gave the big input
// projection to them (m*n*k > 2^31) right before 128 pooled step GEMMs and pointwise passes that
// then competed with the spinning workers. Measured on a 2-core machine (2026-12-01, seq 128,
// batch 32, 512/512, 4 alternating runs): 306-383 ms against 328-412 ms before, numpy loop
// 276-296 ms; on the 16-core GPU host 114 -> 76 ms, then 45 ms with the vectorised pointwise
// pass (torch CPU 17-18 ms; docs/lstm.md).
constexpr GemmPath kLstmGemm = GemmPath::pooled;

void lstm(const LstmArgs& a) {
  const std::int64_t T = a.steps, B = a.batch, I = a.input, H = a.hidden, G = 4 * H;
  if (B <= 0 || H <= 0) return;  // y, h_n, c_n are empty
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t state_bytes = static_cast<std::size_t>(B * H) * es;
  if (T <= 0) {  // no step: the final state is the initial one
    std::memcpy(a.h_n, a.h0, state_bytes);
    std::memcpy(a.c_n, a.c0, state_bytes);
    return;
  }
  const bool f32 = a.dtype == DType::f32;
  std::vector<float> hx, hwi, hwh, hbi, hbh;
  const float* x = as_f32(a.x, a.dtype, T * B * I, hx);
  const float* w_ih = as_f32(a.w_ih, a.dtype, G * I, hwi);
  const float* w_hh = as_f32(a.w_hh, a.dtype, G * H, hwh);
  const float* b_ih = as_f32(a.b_ih, a.dtype, G, hbi);
  const float* b_hh = as_f32(a.b_hh, a.dtype, G, hbh);
  std::vector<float> bias(static_cast<std::size_t>(G), 0.0f);
  for (std::int64_t j = 0; j < G; ++j)
    bias[static_cast<std::size_t>(j)] = (b_ih ? b_ih[j] : 0.0f) + (b_hh ? b_hh[j] : 0.0f);

  // The input projection of every step at once: xg[T*B, 4H] = x[T*B, I] w_ih^T.
  std::vector<float> xg(static_cast<std::size_t>(T * B * G));
  if (I > 0)
    gemm_with(kLstmGemm, T * B, G, I, x, I, w_ih, I, /*trans_b=*/true, xg.data(), G);
  else
    std::fill(xg.begin(), xg.end(), 0.0f);

  std::vector<float> hg(static_cast<std::size_t>(B * G));
  std::vector<float> c(static_cast<std::size_t>(B * H));
  if (f32)
    std::memcpy(c.data(), a.c0, state_bytes);
  else
    widen_to_f32(a.dtype, a.c0, c.data(), B * H);
  // The hidden state the recurrent GEMM reads: float32 y[t-1] itself for float32 storage, a
  // float32 buffer (never rounded) for 16-bit storage.
  std::vector<float> h16;
  const float* h_prev;
  if (f32) {
    h_prev = static_cast<const float*>(a.h0);
  } else {
    h16.resize(static_cast<std::size_t>(B * H));
    widen_to_f32(a.dtype, a.h0, h16.data(), B * H);
    h_prev = h16.data();
  }
  std::vector<float> hrow;  // 16-bit storage: one step's h in float32 before narrowing
  if (!f32) hrow.resize(static_cast<std::size_t>(B * H));
  char* y = static_cast<char*>(a.y);
  const float* bs = bias.data();
  // Pool work items: (batch row, block of <= 256 hidden units), about 2K units per task (a few
  // us of vector work), so a small step stays on the calling thread while batch 32 x hidden
  // 512 (64 items) gets 8 tasks; before, tasks were whole rows at 16K gates each (4 tasks).
  static const CellFn cell = pick_cell();
  const std::int64_t jblk = std::min<std::int64_t>(H, 256);
  const std::int64_t nblk = (H + jblk - 1) / jblk;
  const std::int64_t grain = std::max<std::int64_t>(1, 2048 / jblk);
  for (std::int64_t t = 0; t < T; ++t) {
    gemm_with(kLstmGemm, B, G, H, h_prev, H, w_hh, H, /*trans_b=*/true, hg.data(), G);
    const float* xt = xg.data() + t * B * G;
    float* h_out = f32 ? reinterpret_cast<float*>(y) + t * B * H : hrow.data();
    float* cs = c.data();
    const float* hgp = hg.data();
    parallel_for(0, B * nblk, grain, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t w = lo; w < hi; ++w) {
        const std::int64_t b = w / nblk, j0 = (w % nblk) * jblk;
        cell(xt + b * G, hgp + b * G, bs, cs + b * H, h_out + b * H, H, j0,
             std::min(H, j0 + jblk));
      }
    });
    if (f32) {
      h_prev = h_out;
    } else {
      narrow_from_f32(a.dtype, hrow.data(), y + static_cast<std::size_t>(t * B * H) * es, B * H);
      std::swap(h16, hrow);  // this step's float32 h feeds the next GEMM
      h_prev = h16.data();
    }
  }
  std::memcpy(a.h_n, y + static_cast<std::size_t>((T - 1) * B * H) * es, state_bytes);
  if (f32)
    std::memcpy(a.c_n, c.data(), state_bytes);
  else
    narrow_from_f32(a.dtype, c.data(), a.c_n, B * H);
}

}  // namespace lc::cpu
