// Encoder-shaped multi-head attention on the CPU (cpu_ops.h attention_mha_encoder): float32,
// short key rows (BERT / MiniLM / ViT: seq 16-512, head dim 32-128), any q / k / v / out / mask
// strides, GQA, causal and both mask kinds, exactly MhaArgs' semantics.
//
// Why: the tiled path (attention_mha.cpp) is built for long sequences: per (batch, head, 64 or
// 128 query rows) it copies and scales Q, calls sgemm for Q K^T and for P V (OpenBLAS packs
// both operands each time) and runs an online softmax over 256-key tiles. At seq 16-128 and
// head dim 32 each product is only 8K-512K multiply-adds, so the packing, the two calls and
// the rescaling bookkeeping cost more than the arithmetic (2-core VM, 1 thread: 1x128x12 heads
// ~2 ms of CPU time, ~12 GFLOP/s). Here one pool task takes one (batch, head) pair (or a block
// of its query rows when there are fewer pairs than threads), packs K^T once and keeps whole
// score rows in L1 (attention_enc.inc).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

// One (batch, head) pair's pointers.
struct EncPair {
  i64 b = 0, h = 0;
  const float* q = nullptr;  // row 0 of the pair's queries
  const float* v = nullptr;  // row 0 of its values
  float* out = nullptr;      // row 0 of its output rows
  i64 os2 = 0;               // out's row stride
  const char* mask = nullptr;  // the pair's mask rows (bytes), or null
  i64 ms2 = 0, ms3 = 0;        // mask row / key strides in bytes
  const float* mask_row = nullptr;  // ms2 == 0 (one mask row for every query): it as floats
  bool v_nonfinite = false;    // some value row holds inf / NaN
};

#define LC_ISA_KERNEL "backends/cpu/attention_enc.inc"
#include "backends/cpu/isa_variants.inc"

using RowsFn = void (*)(const MhaArgs&, const EncPair&, i64, i64, const float*, i64, float*,
                        float*, float*);
using MaskRowFn = void (*)(const MhaArgs&, const char*, i64, i64, float*);

MaskRowFn mask_row_fn(int isa) {
  return LC_ISA_PICK(isa, mask_row_floats);
}

RowsFn rows_fn(int isa) {
  return LC_ISA_PICK(isa, enc_rows);
}

constexpr i64 kLanesMax = 16;
constexpr int kRowBlock = 8;  // the largest of attention_enc.inc's RB

void run(const MhaArgs& a, int isa) {
  isa = std::clamp(isa, 0, simd_level());
  const RowsFn fn = rows_fn(isa);
  const MaskRowFn mask_row = mask_row_fn(isa);
  const i64 bh = a.batch * a.heads;
  const i64 group = a.heads / a.kv_heads;
  const i64 skp = (a.sk + kLanesMax - 1) / kLanesMax * kLanesMax;
  i64 os[3];
  mha_out_strides(a, os);
  // Fewer pairs than threads (batch 1): split each pair's rows into blocks of >= 16 rows.
  const i64 threads = num_threads();
  i64 blocks = 1;
  if (bh < threads) blocks = std::min((threads + bh - 1) / bh, (a.sq + 15) / 16);
  blocks = std::max<i64>(blocks, 1);
  const i64 rows_per = (a.sq + blocks - 1) / blocks;
  const bool check_v = a.causal || a.mask_kind != MaskKind::none;
  const i64 melem = a.mask_kind != MaskKind::none ? static_cast<i64>(dtype_size(a.mask_dtype)) : 0;
  auto task = [&](i64 lo, i64 hi) {
    thread_local std::vector<float> store;
    const std::size_t need = static_cast<std::size_t>(a.d * skp + kRowBlock * skp +
                                                      kRowBlock * a.dv + 2 * skp + 16);
    if (store.size() < need) store.resize(need);
    auto addr = reinterpret_cast<std::uintptr_t>(store.data());
    float* kt = store.data() + ((64 - addr % 64) % 64) / sizeof(float);
    float* s = kt + a.d * skp;
    float* o = s + kRowBlock * skp;
    float* mrow_pair = o + kRowBlock * a.dv;  // the pair's mask row (ms2 == 0)
    float* mrow_buf = mrow_pair + skp;        // one query row's mask row
    for (i64 t = lo; t < hi; ++t) {
      const i64 pair = t / blocks, blk = t - pair * blocks;
      const i64 r0 = blk * rows_per, r1 = std::min(a.sq, r0 + rows_per);
      if (r0 >= r1) continue;
      EncPair e;
      e.b = pair / a.heads;
      e.h = pair - e.b * a.heads;
      const i64 g = e.h / group;
      e.q = static_cast<const float*>(a.q) + e.b * a.q_strides[0] + e.h * a.q_strides[1];
      const float* kb = static_cast<const float*>(a.k) + e.b * a.k_strides[0] + g * a.k_strides[1];
      e.v = static_cast<const float*>(a.v) + e.b * a.v_strides[0] + g * a.v_strides[1];
      e.out = static_cast<float*>(a.out) + e.b * os[0] + e.h * os[1];
      e.os2 = os[2];
      if (melem) {
        e.mask = static_cast<const char*>(a.mask) +
                 (e.b * a.mask_strides[0] + e.h * a.mask_strides[1]) * melem;
        e.ms2 = a.mask_strides[2] * melem;
        e.ms3 = a.mask_strides[3] * melem;
        if (e.ms2 == 0) {  // a key-padding mask: converted once per pair, not per query row
          mask_row(a, e.mask, e.ms3, a.sk, mrow_pair);
          e.mask_row = mrow_pair;
        }
      }
      // keys this block may see (causal: up to its last row's limit)
      const i64 nk = a.causal ? std::clamp<i64>(r1 - 1 + a.sk - a.sq + 1, 0, a.sk) : a.sk;
      // K^T of those keys, zero padded to skp columns
      for (i64 j = 0; j < nk; ++j) {
        const float* kr = kb + j * a.k_strides[2];
        for (i64 c = 0; c < a.d; ++c) kt[c * skp + j] = kr[c];
      }
      for (i64 c = 0; c < a.d; ++c)
        for (i64 j = nk; j < skp; ++j) kt[c * skp + j] = 0.0f;
      if (check_v) {
        float acc = 0.0f;
        for (i64 j = 0; j < nk; ++j) {
          const float* vr = e.v + j * a.v_strides[2];
          for (i64 c = 0; c < a.dv; ++c) acc += vr[c] - vr[c];  // NaN unless all finite
        }
        e.v_nonfinite = acc != 0.0f;
      }
      fn(a, e, r0, r1, kt, skp, s, o, mrow_buf);
    }
  };
  const i64 tasks = bh * blocks;
  const double work = static_cast<double>(bh) * a.sq * a.sk * (a.d + a.dv);
  // below ~2^17 multiply-adds a wake-up costs more than it saves
  parallel_for(0, tasks, work >= double(i64{1} << 17) ? 1 : tasks, task);
}

}  // namespace

bool attention_mha_encoder_fits(const MhaArgs& a) {
  return a.dtype == DType::f32 && a.sk >= 1 && a.sk <= kEncMaxKeys && a.d >= 1 &&
         a.d <= kEncMaxHeadDim && a.dv >= 1 && a.dv <= kEncMaxHeadDim && a.batch >= 1 &&
         a.heads >= 1 && a.kv_heads >= 1 && a.heads % a.kv_heads == 0 && a.sq >= 1 &&
         (a.mask_kind != MaskKind::additive || a.mask_dtype == DType::f32);
}

void attention_mha_encoder(const MhaArgs& a, int isa) {
  if (a.batch <= 0 || a.heads <= 0 || a.sq <= 0) return;
  if (!attention_mha_encoder_fits(a)) return attention_mha_tiled(a);
  run(a, isa < 0 ? simd_level() : isa);
}

}  // namespace lc::cpu
