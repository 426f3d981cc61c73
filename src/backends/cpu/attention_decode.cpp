// Flash decoding on the CPU (cpu_ops.h attention_mha_decode): a few query rows (a decode step's
// new tokens) against a long K/V cache, MhaArgs' semantics exactly (GQA / MQA, causal bottom-
// right, both mask kinds, lse, strided q / k / v / out, float32 / float16 / bfloat16).
//
// Why: the tiled path (attention_mha.cpp) runs one task per (batch, query head) and sgemm on a
// 1-row Q tile. With grouped-query attention every query head re-reads its kv head's keys and
// values (4x the traffic at 32 : 8 heads), and with fewer (batch, head) pairs than threads the
// other threads idle (2-vCPU VM, B1 H32 Hk8 Sq1 Sk4096 D128 float32: 5.8 ms, 5.7 GB/s of K/V).
// Here a task is (batch, kv head, chunk of keys): it reads its chunk of K and V once for all the
// query rows that share the kv head (group heads x sq rows) and leaves each row's chunk max,
// sum and unnormalised output in scratch; a second pass over the rows combines the chunks
// (rescaled by exp(m_chunk - m_row)) and writes out and lse. The chunks are sized so that there
// are about four tasks per thread. 16-bit K / V chunks are widened once per task; q rows are
// widened and scaled once per task.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/attention_mha_util.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;
using mha::narrow;
using mha::Scratch;
using mha::widen;

#define LC_ISA_KERNEL "backends/cpu/attention_decode.inc"
#include "backends/cpu/isa_variants.inc"

using BlockFn = void (*)(int, const float*, i64, const float*, i64, const float*, i64, i64,
                         const i64*, const float* const*, bool, bool, float*, i64, float*, float*,
                         float*);
constexpr int kMaxBlockRows = 8;  // the largest DRB
constexpr i64 kChunkKeys = 256;   // 256 keys x 128 floats x 4 bytes: a 128 KB value chunk
constexpr double kMaxPartialBytes = 64.0 * (1 << 20);
constexpr i64 kMaxChunkKeys = 8192;  // longer chunks (huge batch x cache): the tiled path
constexpr i64 kLanesMax = 16;

// A mask element as an additive float: keep masks give 0 (attend) or -inf (hide).
template <class T>
float mask_value(const MhaArgs& a, const char* p) {
  const float ninf = -std::numeric_limits<float>::infinity();
  if (a.mask_kind == MaskKind::additive) return widen(*reinterpret_cast<const T*>(p));
  if (a.mask_dtype == DType::i32) return *reinterpret_cast<const std::int32_t*>(p) != 0 ? 0.0f : ninf;
  return *reinterpret_cast<const std::int64_t*>(p) != 0 ? 0.0f : ninf;
}

// false: the call is too big for the chunked scratch (the caller runs the tiled path).
template <class T>
bool decode(const MhaArgs& a, int isa) {
  const int level = isa < 0 ? simd_level() : std::min(isa, simd_level());
  const BlockFn block = LC_ISA_PICK(level, dec_block);
  const int drb = *LC_ISA_PICK(level, DRB);  // the kernel's rows per block
  const i64 B = a.batch, H = a.heads, Hk = a.kv_heads, sq = a.sq, sk = a.sk, d = a.d, dv = a.dv;
  const i64 group = H / Hk, rows = group * sq;  // query rows per kv head
  // Chunks: at most kChunkKeys keys (P V walks the chunk's values once per pair of column
  // vectors, so they must stay in L2: with 8192-key chunks a single-row decode re-read V from
  // L3 four times and ran at 0.6x the tiled path), and about four tasks per thread while
  // chunks keep at least 64 keys.
  const i64 threads = num_threads();
  i64 chunks = std::max<i64>(1, (4 * threads + B * Hk - 1) / (B * Hk));
  chunks = std::min(chunks, std::max<i64>(1, sk / 64));
  chunks = std::max(chunks, (sk + kChunkKeys - 1) / kChunkKeys);
  // The chunks' partial results (m, l, dv floats of o per row) stay under kMaxPartialBytes:
  // a huge batch takes longer chunks instead (correct either way, only less L2-friendly).
  const double per_chunk = static_cast<double>(B) * Hk * group * sq * (2 + dv) * sizeof(float);
  chunks = std::min<i64>(chunks, std::max<i64>(1, static_cast<i64>(kMaxPartialBytes / per_chunk)));
  const i64 csize = (sk + chunks - 1) / chunks;
  if (csize > kMaxChunkKeys) return false;  // per-task scratch would grow with the whole cache
  chunks = (sk + csize - 1) / csize;
  const i64 ls = (csize + kLanesMax - 1) / kLanesMax * kLanesMax;
  const i64 off = sk - sq;  // causal, bottom-right: row i sees keys j <= i + off
  const i64 melem = a.mask_kind != MaskKind::none ? static_cast<i64>(dtype_size(a.mask_dtype)) : 0;
  const bool keep = a.mask_kind == MaskKind::keep;
  constexpr bool wide = !std::is_same_v<T, float>;

  // Each (batch, kv head, chunk, row): m, l, then dv floats of o.
  const i64 per = 2 + dv;
  thread_local Scratch<float> part_store;
  float* part = part_store.get(B * Hk * chunks * rows * per);

  auto task = [&](i64 lo, i64 hi) {
    thread_local Scratch<float> store;
    const i64 need = rows * d + (wide ? csize * (d + dv) : 0) + rows * ls + kMaxBlockRows * ls +
                     kMaxBlockRows * dv;
    float* buf = store.get(need);
    for (i64 t = lo; t < hi; ++t) {
      const i64 c = t % chunks, bg = t / chunks, b = bg / Hk, g = bg - b * Hk;
      const i64 j0 = c * csize, n = std::min(csize, sk - j0);
      float* qbuf = buf;
      float* kbuf = qbuf + rows * d;
      float* vbuf = kbuf + (wide ? csize * d : 0);
      float* mbuf = vbuf + (wide ? csize * dv : 0);  // rows x ls mask rows
      float* s = mbuf + rows * ls;
      float* obuf = s + kMaxBlockRows * ls;
      // q rows of the group's heads, widened and scaled: row r = (h - g * group) * sq + i
      const float scale = static_cast<float>(a.scale);
      for (i64 r = 0; r < rows; ++r) {
        const i64 h = g * group + r / sq, i = r % sq;
        const T* qr = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1] + i * a.q_strides[2];
        for (i64 x = 0; x < d; ++x) qbuf[r * d + x] = widen(qr[x]) * scale;
      }
      // the chunk's keys and values: in place (float32) or widened once
      const T* kb = static_cast<const T*>(a.k) + b * a.k_strides[0] + g * a.k_strides[1] + j0 * a.k_strides[2];
      const T* vb = static_cast<const T*>(a.v) + b * a.v_strides[0] + g * a.v_strides[1] + j0 * a.v_strides[2];
      const float* kf;
      const float* vf;
      i64 ks, vs;
      if constexpr (wide) {
        for (i64 j = 0; j < n; ++j) {
          for (i64 x = 0; x < d; ++x) kbuf[j * d + x] = widen(kb[j * a.k_strides[2] + x]);
          for (i64 x = 0; x < dv; ++x) vbuf[j * dv + x] = widen(vb[j * a.v_strides[2] + x]);
        }
        kf = kbuf, vf = vbuf, ks = d, vs = dv;
      } else {
        kf = kb, vf = vb, ks = a.k_strides[2], vs = a.v_strides[2];
      }
      // per row: the causal limit and the mask row (one shared row when the mask does not vary
      // with the head or the query row, as a [B, Sk] key-padding mask)
      thread_local std::vector<i64> lims;
      thread_local std::vector<const float*> mrows;
      lims.assign(static_cast<std::size_t>(rows), 0);
      mrows.assign(static_cast<std::size_t>(rows), nullptr);
      bool hidden = false;
      for (i64 r = 0; r < rows; ++r) {
        const i64 i = r % sq;
        lims[r] = a.causal ? std::clamp<i64>(i + off + 1 - j0, 0, n) : n;
        hidden = hidden || lims[r] < n;
      }
      if (melem) {
        hidden = true;
        const bool shared = a.mask_strides[1] == 0 && a.mask_strides[2] == 0;
        for (i64 r = 0; r < (shared ? 1 : rows); ++r) {
          const i64 h = g * group + r / sq, i = r % sq;
          const char* mr = static_cast<const char*>(a.mask) +
                           (b * a.mask_strides[0] + h * a.mask_strides[1] + i * a.mask_strides[2] +
                            j0 * a.mask_strides[3]) * melem;
          float* dst = mbuf + r * ls;
          for (i64 j = 0; j < n; ++j) dst[j] = mask_value<T>(a, mr + j * a.mask_strides[3] * melem);
        }
        for (i64 r = 0; r < rows; ++r) mrows[r] = mbuf + (shared ? 0 : r * ls);
      }
      // zero weights are skipped (never 0 * inf) where a hidden key's value row is not finite
      bool v_nonfinite = false;
      if (hidden) {
        float acc = 0.0f;
        for (i64 j = 0; j < n; ++j)
          for (i64 x = 0; x < dv; ++x) acc += vf[j * vs + x] - vf[j * vs + x];  // NaN unless finite
        v_nonfinite = acc != 0.0f;
      }
      float* pt = part + (bg * chunks + c) * rows * per;
      for (i64 r0 = 0; r0 < rows; r0 += drb) {
        const int nr = static_cast<int>(std::min<i64>(drb, rows - r0));
        float m[kMaxBlockRows], l[kMaxBlockRows];
        block(nr, qbuf + r0 * d, d, kf, ks, vf, vs, dv, lims.data() + r0, mrows.data() + r0, keep,
              v_nonfinite, s, ls, m, l, obuf);
        for (int r = 0; r < nr; ++r) {
          float* e = pt + (r0 + r) * per;
          e[0] = m[r];
          e[1] = l[r];
          std::copy(obuf + r * dv, obuf + (r + 1) * dv, e + 2);
        }
      }
    }
  };
  const i64 tasks = B * Hk * chunks;
  const double work = static_cast<double>(B) * H * sq * sk * (d + dv);
  parallel_for(0, tasks, work >= double(i64{1} << 17) ? 1 : tasks, task);

  // Combine the chunks of every query row and write out / lse.
  i64 os[3];
  mha_out_strides(a, os);
  auto combine = [&](i64 lo, i64 hi) {
    thread_local Scratch<float> store;
    float* acc = store.get(dv);
    for (i64 row = lo; row < hi; ++row) {  // row = (b * H + h) * sq + i
      const i64 bh = row / sq, i = row - bh * sq, b = bh / H, h = bh - b * H;
      const i64 g = h / group, r = (h - g * group) * sq + i;
      const float* base = part + ((b * Hk + g) * chunks) * rows * per + r * per;
      const i64 cstride = rows * per;
      float mx = -std::numeric_limits<float>::infinity();
      bool nan = false;
      for (i64 c = 0; c < chunks; ++c) {
        const float* e = base + c * cstride;
        nan = nan || e[1] != e[1];
        if (e[1] > 0.0f) mx = std::max(mx, e[0]);
      }
      T* dst = static_cast<T*>(a.out) + b * os[0] + h * os[1] + i * os[2];
      float* lse = a.lse ? a.lse + row : nullptr;
      if (nan) {
        for (i64 x = 0; x < dv; ++x) dst[x] = narrow<T>(std::numeric_limits<double>::quiet_NaN());
        if (lse) *lse = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      if (!(mx > -std::numeric_limits<float>::infinity())) {  // no visible key: zeros, lse -inf
        for (i64 x = 0; x < dv; ++x) dst[x] = narrow<T>(0.0);
        if (lse) *lse = -std::numeric_limits<float>::infinity();
        continue;
      }
      float sum = 0.0f;
      std::fill(acc, acc + dv, 0.0f);
      for (i64 c = 0; c < chunks; ++c) {
        const float* e = base + c * cstride;
        if (!(e[1] > 0.0f)) continue;  // nothing visible in this chunk
        const float w = std::exp(e[0] - mx);
        sum += e[1] * w;
        for (i64 x = 0; x < dv; ++x) acc[x] += e[2 + x] * w;
      }
      const float inv = 1.0f / sum;
      for (i64 x = 0; x < dv; ++x) dst[x] = narrow<T>(static_cast<double>(acc[x] * inv));
      if (lse) *lse = mx + std::log(sum);
    }
  };
  const i64 out_rows = B * H * sq;
  parallel_for(0, out_rows, out_rows * chunks * dv >= (i64{1} << 16) ? 16 : out_rows, combine);
  return true;
}

}  // namespace

bool attention_mha_decode_applies(const MhaArgs& a) {
  return (a.dtype == DType::f32 || a.dtype == DType::f16 || a.dtype == DType::bf16) &&
         a.sq >= 1 && a.sq <= kDecodeMaxRows && a.sk > kEncAutoKeys && a.d >= 1 && a.dv >= 1 &&
         a.batch >= 1 && a.heads >= 1 && a.kv_heads >= 1 && a.heads % a.kv_heads == 0 &&
         (a.heads / a.kv_heads) * a.sq <= kDecodeMaxGroupRows;
}

void attention_mha_decode(const MhaArgs& a, int isa) {
  if (a.batch <= 0 || a.heads <= 0 || a.sq <= 0) return;
  if (!attention_mha_decode_applies(a)) return attention_mha_tiled(a);
  bool done = false;
  switch (a.dtype) {
    case DType::f16: done = decode<float16>(a, isa); break;
    case DType::bf16: done = decode<bfloat16>(a, isa); break;
    default: done = decode<float>(a, isa); break;
  }
  if (!done) attention_mha_tiled(a);
}

}  // namespace lc::cpu
