// Fused flash-style attention, exact fp32 (FFMA), causal or not, head dims up to 512.
//
// One 256-thread block owns BQ query rows and walks key tiles of BK rows: K and V tiles are
// streamed through shared memory, S = Q K^T for the tile lives in registers (each thread a
// TM x TN micro-tile), the online softmax (running max m, running sum l, exp2 domain with the
// scale folded into Q) rescales the O accumulators (TM x DVMAX/16 per thread) in registers, and
// P goes through shared memory once for the P V product. No sq x sk matrix ever reaches device
// memory. All shared-memory reads of the two inner loops are 16-byte (LDS.128) and either
// broadcast (Q, P: one address per 16 lanes) or conflict-free (K, V rows: stride = 4 mod 32).
//
// Parallelism: with few query tiles (one head, long sequences) each query tile's key range is
// cut into chunks of at most `chunk` key tiles, one block per chunk (flash-decoding): a block
// whose tile has several chunks writes an unnormalised partial O plus (m, l) per row, and a
// combine kernel merges them. The chunk length minimises waves x chunk for the measured
// occupancy, so one head fills all SMs. Causal tiles have different key ranges (query tile i
// sees i+1 key tiles), so they get different chunk counts: the grid is balanced by work, not by
// query tiles, and the longest tiles are scheduled first.
//
// Masking: keys >= sk and, when causal, keys j > query i (top-left aligned) get -inf. Rows whose
// visible keys all fall outside a split produce m = -inf, l = 0 and are weighted 0 when combined.
//
// Storage dtypes: the kernels are templated on the element type T of q, k, v and out (float,
// __half, __nv_bfloat16). 16-bit tiles are widened to float32 on their way into shared memory
// (8-byte loads of 4 elements), so everything after the loads -- shared-memory layout, FFMA
// products, online softmax, split partials -- is the float32 kernel unchanged; the result is
// rounded once when stored. T = float compiles to exactly the float32 kernel of before.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>

#include <type_traits>

#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/launch.h"
#include "backends/cuda/kernels.h"

namespace lc::cuda {

namespace {

constexpr int kThreads = 256;  // 16 x 16 threads: tx = column group, ty = row group
constexpr float kLog2e = 1.4426950408889634f;

// Key tiles query tile qt must visit (>= 1 since sk >= 1).
__host__ __device__ __forceinline__ int key_tiles(int qt, int BQ, int BK, int sk, bool causal) {
  const int kv_end = causal ? min(sk, qt * BQ + BQ) : sk;
  return (kv_end + BK - 1) / BK;
}

template <int BQ, int BK, int DMAX, int DVMAX>
struct AttnCfg {
  static constexpr int TM = BQ / 16;      // query rows per thread
  static constexpr int TN = BK / 16;      // keys per thread in S
  static constexpr int TNV = DVMAX / 16;  // output columns per thread
  static constexpr int DS = DMAX + 4;     // Q/K row stride (floats): 4 mod 32 -> conflict-free
  static constexpr int PS = BK + 4;       // P row stride
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + BQ * DS;
  static constexpr int kV = kK + BK * DS;
  static constexpr int kP = kV + BK * DVMAX;
  static constexpr int kFloats = kP + BQ * PS;
  static constexpr std::size_t kSmemBytes = sizeof(float) * kFloats;
  // Blocks per SM that shared memory allows (227 KB); the register budget follows from it.
  static constexpr int kMinBlocks = kSmemBytes <= 75 * 1024 ? 3 : kSmemBytes <= 113 * 1024 ? 2 : 1;
  static_assert(TNV % 4 == 0 && TM % 4 == 0 && BK % 16 == 0, "tile shape");
};

// Four consecutive elements of T widened to float4; p aligned to 4 elements (16 bytes for
// float, 8 bytes for the 16-bit types).
template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return __ldg(reinterpret_cast<const float4*>(p));
  } else {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    float4 f;
    unpack2<T>(u.x, f.x, f.y);
    unpack2<T>(u.y, f.z, f.w);
    return f;
  }
}

// Loads rows [r0, r0+R) x cols [0, d) of a row-major [nrows, d] matrix into smem with row
// stride `stride`, zero-filling rows >= nrows and cols in [d, d4). Optionally multiplies by mul.
template <int R, class T>
__device__ __forceinline__ void load_tile(float* __restrict__ dst, int stride,
                                          const T* __restrict__ src, std::int64_t r0,
                                          std::int64_t nrows, int d, int d4, bool vec, float mul) {
  if (vec) {  // d % 4 == 0 and src aligned to 4 elements
    const int c4n = d4 >> 2;
    for (int idx = threadIdx.x; idx < R * c4n; idx += kThreads) {
      const int r = idx / c4n, c4 = idx - r * c4n;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r0 + r < nrows) {
        v = load4(src + (r0 + r) * d + c4 * 4);
        v.x *= mul; v.y *= mul; v.z *= mul; v.w *= mul;
      }
      *reinterpret_cast<float4*>(dst + r * stride + c4 * 4) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < R * d4; idx += kThreads) {
      const int r = idx / d4, c = idx - r * d4;
      float v = 0.0f;
      if (r0 + r < nrows && c < d) v = load_f(src + (r0 + r) * d + c) * mul;
      dst[r * stride + c] = v;
    }
  }
}

template <class T, int BQ, int BK, int DMAX, int DVMAX>
__global__ void __launch_bounds__(kThreads, AttnCfg<BQ, BK, DMAX, DVMAX>::kMinBlocks)
    attn_fwd_kernel(const T* __restrict__ q, const T* __restrict__ k,
                    const T* __restrict__ v, T* __restrict__ out,
                    float* __restrict__ opart, float2* __restrict__ ml, int sq, int sk, int d,
                    int dv, float scale_log2, bool causal, int chunk, bool vec_qk, bool vec_v) {
  using C = AttnCfg<BQ, BK, DMAX, DVMAX>;
  constexpr int TM = C::TM, TN = C::TN, TNV = C::TNV, DS = C::DS, PS = C::PS;
  extern __shared__ __align__(16) float smem[];
  float* Qs = smem + C::kQ;
  float* Ks = smem + C::kK;
  float* Vs = smem + C::kV;
  float* Ps = smem + C::kP;

  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  // Block -> (query tile, chunk), heaviest query tiles first (identical order on the host).
  const int nqt = (sq + BQ - 1) / BQ;
  int qt = 0, split = 0, nchunks = 1, ntiles = 1;
  {
    int acc = 0;
    const int b = static_cast<int>(blockIdx.x);
    for (int it = 0; it < nqt; ++it) {
      const int cand = causal ? nqt - 1 - it : it;
      const int nt = key_tiles(cand, BQ, BK, sk, causal);
      const int nc = (nt + chunk - 1) / chunk;
      if (b < acc + nc) {
        qt = cand;
        split = b - acc;
        nchunks = nc;
        ntiles = nt;
        break;
      }
      acc += nc;
    }
  }
  const int q0 = qt * BQ;
  const int d4 = (d + 3) & ~3;
  const int dv4 = (dv + 3) & ~3;
  const int t_begin = split * chunk;
  const int t_end = min(ntiles, t_begin + chunk);

  load_tile<BQ>(Qs, DS, q, q0, sq, d, d4, vec_qk, scale_log2);

  float o[TM][TNV];
  float m[TM], l[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < TNV; ++c) o[i][c] = 0.0f;
  }

  for (int t = t_begin; t < t_end; ++t) {
    const int k0 = t * BK;
    __syncthreads();  // previous tile's readers of Ks / Vs / Ps are done
    load_tile<BK>(Ks, DS, k, k0, sk, d, d4, vec_qk, 1.0f);
    load_tile<BK>(Vs, DVMAX, v, k0, sk, dv, dv4, vec_v, 1.0f);
    __syncthreads();

    // S = (Q * scale * log2e) K^T for this thread's TM rows x TN keys (keys tx + 16 j)
    float s[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) s[i][j] = 0.0f;
    for (int kk = 0; kk < d4; kk += 4) {
      float4 qf[TM], kf[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i)
        qf[i] = *reinterpret_cast<const float4*>(Qs + (ty * TM + i) * DS + kk);
#pragma unroll
      for (int j = 0; j < TN; ++j)
        kf[j] = *reinterpret_cast<const float4*>(Ks + (tx + 16 * j) * DS + kk);
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          s[i][j] = fmaf(qf[i].x, kf[j].x, s[i][j]);
          s[i][j] = fmaf(qf[i].y, kf[j].y, s[i][j]);
          s[i][j] = fmaf(qf[i].z, kf[j].z, s[i][j]);
          s[i][j] = fmaf(qf[i].w, kf[j].w, s[i][j]);
        }
    }

    // mask, online softmax, P -> shared memory
    const bool need_mask = (k0 + BK > sk) || (causal && k0 + BK - 1 > q0);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int qi = q0 + ty * TM + i;
      if (need_mask) {
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const int kj = k0 + tx + 16 * j;
          if (kj >= sk || (causal && kj > qi)) s[i][j] = -INFINITY;
        }
      }
      float tmax = s[i][0];
#pragma unroll
      for (int j = 1; j < TN; ++j) tmax = fmaxf(tmax, s[i][j]);
#pragma unroll
      for (int off = 8; off > 0; off >>= 1)
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
      const float mnew = fmaxf(m[i], tmax);
      const float mref = mnew == -INFINITY ? 0.0f : mnew;  // all masked so far: keep 0s
      const float alpha = exp2f(m[i] - mref);
      m[i] = mnew;
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const float p = exp2f(s[i][j] - mref);
        rs += p;
        Ps[(ty * TM + i) * PS + tx + 16 * j] = p;
      }
      l[i] = l[i] * alpha + rs;  // per-thread partial row sum, reduced at the end
#pragma unroll
      for (int c = 0; c < TNV; ++c) o[i][c] *= alpha;
    }
    __syncthreads();

    // O += P V: rows ty*TM+i, columns tx*4 + 64*qq + e. In a masked tile a masked key's weight
    // is exactly 0 and its value is skipped, not multiplied (0 * inf would leak NaN into rows
    // that cannot see that key); unmasked tiles keep the plain FMA chain.
    auto pv_pass = [&](auto masked) {
#pragma unroll 2
    for (int j = 0; j < BK; j += 4) {
      float4 pf[TM];
#pragma unroll
      for (int i = 0; i < TM; ++i)
        pf[i] = *reinterpret_cast<const float4*>(Ps + (ty * TM + i) * PS + j);
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        float4 vf[TNV / 4];
#pragma unroll
        for (int qq = 0; qq < TNV / 4; ++qq)
          vf[qq] = *reinterpret_cast<const float4*>(Vs + (j + jj) * DVMAX + tx * 4 + 64 * qq);
#pragma unroll
        for (int i = 0; i < TM; ++i) {
          const float pv = jj == 0 ? pf[i].x : jj == 1 ? pf[i].y : jj == 2 ? pf[i].z : pf[i].w;
          if constexpr (decltype(masked)::value) {
            if (pv == 0.0f) continue;
          }
#pragma unroll
          for (int qq = 0; qq < TNV / 4; ++qq) {
            o[i][qq * 4 + 0] = fmaf(pv, vf[qq].x, o[i][qq * 4 + 0]);
            o[i][qq * 4 + 1] = fmaf(pv, vf[qq].y, o[i][qq * 4 + 1]);
            o[i][qq * 4 + 2] = fmaf(pv, vf[qq].z, o[i][qq * 4 + 2]);
            o[i][qq * 4 + 3] = fmaf(pv, vf[qq].w, o[i][qq * 4 + 3]);
          }
        }
      }
    }
    };
    if (need_mask) pv_pass(std::true_type{});
    else pv_pass(std::false_type{});
  }

  // finish: reduce l over the 16 threads of each row group
#pragma unroll
  for (int i = 0; i < TM; ++i) {
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], off);
  }

  const bool direct = nchunks == 1;
  // Rows of the result (direct: out, in T) or of this split's partial O (float32).
  auto store_rows = [&](auto* dst) {
    using D = std::remove_pointer_t<decltype(dst)>;
    // 4 elements at once: float4 for float32, 8 bytes for 16-bit, when dv % 4 == 0 and aligned.
    constexpr unsigned kAlign = 4 * sizeof(D) - 1;
    const bool vec_out = (dv % 4 == 0) && ((reinterpret_cast<std::uintptr_t>(dst) & kAlign) == 0);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int qi = q0 + ty * TM + i;
      if (qi >= sq) continue;
      // l == 0 only when every score of the row is -inf (the row always sees key 0, so masking
      // alone never empties it): 0 * inf = NaN, as torch's softmax gives; a NaN l stays NaN.
      const float inv = direct ? 1.0f / l[i] : 1.0f;
      D* row = dst + static_cast<std::int64_t>(qi) * dv;
#pragma unroll
      for (int qq = 0; qq < TNV / 4; ++qq) {
        const int c = tx * 4 + 64 * qq;
        if (vec_out && c + 3 < dv) {
          if constexpr (std::is_same_v<D, float>) {
            *reinterpret_cast<float4*>(row + c) =
                make_float4(o[i][qq * 4] * inv, o[i][qq * 4 + 1] * inv, o[i][qq * 4 + 2] * inv,
                            o[i][qq * 4 + 3] * inv);
          } else {
            *reinterpret_cast<uint2*>(row + c) =
                make_uint2(pack2<D>(o[i][qq * 4] * inv, o[i][qq * 4 + 1] * inv),
                           pack2<D>(o[i][qq * 4 + 2] * inv, o[i][qq * 4 + 3] * inv));
          }
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (c + e < dv) row[c + e] = from_f<D>(o[i][qq * 4 + e] * inv);
        }
      }
      if (!direct && tx == 0)
        ml[static_cast<std::int64_t>(split) * sq + qi] = make_float2(m[i], l[i]);
    }
  };
  if constexpr (std::is_same_v<T, float>) {
    store_rows(direct ? out : opart + static_cast<std::int64_t>(split) * sq * dv);
  } else if (direct) {
    store_rows(out);
  } else {
    store_rows(opart + static_cast<std::int64_t>(split) * sq * dv);
  }
}

// out[r, c] = sum_s w_s O_s[r, c] / sum_s w_s l_s,  w_s = 2^(m_s - max_s m_s)
// Rows whose query tile had a single chunk were written directly by the main kernel.
template <class T>
__global__ void attn_combine_kernel(const float* __restrict__ opart, const float2* __restrict__ ml,
                                    T* __restrict__ out, int sq, int sk, int dv, int BQ,
                                    int BK, bool causal, int chunk) {
  const std::int64_t total = static_cast<std::int64_t>(sq) * dv;
  for (std::int64_t idx = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int r = static_cast<int>(idx / dv);
    const int splits = (key_tiles(r / BQ, BQ, BK, sk, causal) + chunk - 1) / chunk;
    if (splits == 1) continue;
    float mx = -INFINITY;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ml[static_cast<std::int64_t>(s) * sq + r].x);
    float L = 0.0f, acc = 0.0f;
    if (mx != -INFINITY) {
      for (int s = 0; s < splits; ++s) {
        const float2 e = ml[static_cast<std::int64_t>(s) * sq + r];
        const float w = exp2f(e.x - mx);  // e.x == -inf -> 0
        L = fmaf(w, e.y, L);
        acc = fmaf(w, opart[static_cast<std::int64_t>(s) * total + idx], acc);
      }
    }
    // mx == -inf: every score of the row was -inf or NaN: 0 / 0 = NaN (torch gives NaN too);
    // NaN scores reach here as a NaN l of some split and propagate through acc / L.
    out[idx] = from_f<T>(acc / L);
  }
}

template <class T>
__global__ void zero_kernel(T* p, std::int64_t n) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    p[i] = from_f<T>(0.0f);
}

// p is aligned to 4 elements of T (the vector loads of load_tile).
template <class T>
bool aligned4(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & (4 * sizeof(T) - 1)) == 0;
}

// Elem: the element type of q, k, v and out.
template <class Elem, int BQ, int BK, int DMAX, int DVMAX>
void run_cfg(const AttentionArgs& a, int sm_count, cudaStream_t s) {
  using C = AttnCfg<BQ, BK, DMAX, DVMAX>;
  auto kernel = attn_fwd_kernel<Elem, BQ, BK, DMAX, DVMAX>;
  // The opt-in shared memory size is a per-device attribute of the kernel: once per device
  // (the occupancy is the same on every device of one kind; computed with the first one).
  static std::once_flag once[kMaxDevices];
  static int blocks_per_sm = 1;
  const int dev = ctx().info.device;
  std::call_once(once[dev >= 0 && dev < kMaxDevices ? dev : 0], [&] {
    LC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(C::kSmemBytes)));
    LC_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, kThreads,
                                                                C::kSmemBytes));
    blocks_per_sm = std::max(1, blocks_per_sm);
  });

  const int sq = static_cast<int>(a.sq), sk = static_cast<int>(a.sk);
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const int nqt = (sq + BQ - 1) / BQ;
  // Chunk length (in key tiles): cost = waves x chunk, plus a small charge per split for the
  // partial-result traffic and the combine pass. Longest chunk first, so ties keep fewer splits.
  const int slots = sm_count * blocks_per_sm;
  const int max_tiles = key_tiles(nqt - 1, BQ, BK, sk, a.causal);
  int chunk = max_tiles, nblocks = nqt;
  double best = 1e30;
  for (int T = max_tiles; T >= std::max(1, max_tiles / 32); --T) {
    long long blocks = 0;
    for (int qt = 0; qt < nqt; ++qt) blocks += (key_tiles(qt, BQ, BK, sk, a.causal) + T - 1) / T;
    const double waves = std::ceil(static_cast<double>(blocks) / slots);
    const int sp = (max_tiles + T - 1) / T;
    const double cost = waves * T + (sp > 1 ? 0.5 + 0.05 * sp : 0.0);
    if (cost < best - 1e-9 && blocks < (1ll << 31)) {
      best = cost;
      chunk = T;
      nblocks = static_cast<int>(blocks);
    }
  }
  const int splits = (max_tiles + chunk - 1) / chunk;  // most chunks of any query tile

  const bool vec_qk = (d % 4 == 0) && aligned4<Elem>(a.q) && aligned4<Elem>(a.k);
  const bool vec_v = (dv % 4 == 0) && aligned4<Elem>(a.v);
  float* opart = nullptr;
  float2* ml = nullptr;
  void* scratch = nullptr;
  auto& alloc = CachingAllocator::instance();
  if (splits > 1) {
    const std::size_t obytes = sizeof(float) * static_cast<std::size_t>(splits) * sq * dv;
    const std::size_t mlbytes = sizeof(float2) * static_cast<std::size_t>(splits) * sq;
    scratch = alloc.alloc(obytes + mlbytes + 16);
    opart = static_cast<float*>(scratch);
    ml = reinterpret_cast<float2*>(static_cast<char*>(scratch) + ((obytes + 15) & ~std::size_t{15}));
  }
  // Stream order makes it safe to recycle the scratch as soon as the launches are queued (later
  // users queue after us); a failing launch throws, and the scratch goes back all the same.
  struct ScratchBack {
    CachingAllocator& alloc;
    void* p;
    ~ScratchBack() { if (p) alloc.free(p); }
  } back{alloc, scratch};
  launch(kernel, nblocks, kThreads, C::kSmemBytes, s, "attention kernel",
         static_cast<const Elem*>(a.q), static_cast<const Elem*>(a.k),
         static_cast<const Elem*>(a.v), static_cast<Elem*>(a.out), opart, ml, sq, sk, d, dv, a.scale * kLog2e, a.causal, chunk,
         vec_qk, vec_v);
  if (splits > 1) {
    const std::int64_t total = static_cast<std::int64_t>(sq) * dv;
    const int blocks = static_cast<int>(std::min<std::int64_t>((total + 255) / 256, 8192));
    launch(attn_combine_kernel<Elem>, blocks, 256, 0, s, "attn_combine_kernel", opart, ml,
           static_cast<Elem*>(a.out), sq, sk, dv, BQ, BK, a.causal, chunk);
  }
}

}  // namespace

void launch_attention(const AttentionArgs& a, int sm_count, cudaStream_t s) {
  if (a.sq <= 0 || a.dv <= 0) return;
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    if (a.sk <= 0) {  // no keys: the reference defines the output as 0
      launch(zero_kernel<T>, 256, 256, 0, s, "zero_kernel", static_cast<T*>(a.out), a.sq * a.dv);
      return;
    }
    const std::int64_t dmax = std::max(a.d, a.dv);
    if (dmax <= 64) run_cfg<T, 64, 64, 64, 64>(a, sm_count, s);
    else if (dmax <= 128) run_cfg<T, 64, 32, 128, 128>(a, sm_count, s);
    else if (dmax <= 256) run_cfg<T, 64, 32, 256, 256>(a, sm_count, s);
    else run_cfg<T, 64, 16, 512, 512>(a, sm_count, s);  // 198 KB of shared memory, one block per SM
  });
}

}  // namespace lc::cuda
