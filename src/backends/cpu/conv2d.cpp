// 2-D convolution (NCHW, weights [oc, c, kh, kw]) on the CPU.
//
//   direct  for small work (< kDirectMaxMacs multiply-adds): a register-tiled micro-kernel.
//           The input is first copied into a zero-padded buffer (split into stride_w "phases",
//           so every kernel tap reads a contiguous run of columns) and the weights are packed
//           as [oc block][c][ky][kx][OCB]. A tile is OCB output channels x RY output rows x one
//           vector of output columns, kept in registers over all c*kh*kw taps: per tap, RY
//           vector loads and OCB broadcasts feed OCB*RY FMAs. Bias and activation are applied
//           in registers before the single store. Compiled for SSE2 / AVX2+FMA / AVX-512 and
//           picked at run time (simd.h). Buffers are thread-local and only grow, so a
//           repeated call allocates nothing.
//   im2col  for large work: per image, the receptive fields are unrolled into
//           col[c*kh*kw][rows*ow] (in chunks of output rows so the buffer stays <= 16 MB) and
//           out[oc][pixels] = W[oc][c*kh*kw] @ col goes through the shared GEMM (OpenBLAS or
//           the built-in kernel, both threaded). A 1x1/stride-1/no-padding conv skips im2col:
//           the input image already is that matrix.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

constexpr i64 kDirectMaxMacs = i64{1} << 20;
constexpr i64 kColMaxFloats = i64{1} << 22;  // 16 MB im2col chunk

// Output columns x in [lo, hi) whose input column x*stride - pad + k lies inside [0, w);
// 0 <= lo <= hi <= out also when the kernel is wider than the unpadded input (no column valid).
inline void valid_range(i64 k, i64 stride, i64 pad, i64 w, i64 out, i64& lo, i64& hi) {
  // x >= ceil((pad - k) / stride) and x <= floor((w - 1 + pad - k) / stride)
  const i64 num_lo = pad - k;
  lo = num_lo <= 0 ? 0 : std::min(out, (num_lo + stride - 1) / stride);
  const i64 num_hi = w - 1 + pad - k;
  hi = num_hi < 0 ? 0 : std::min(out, num_hi / stride + 1);
  if (hi < lo) hi = lo;
}

// ---- direct path -------------------------------------------------------------------------

struct DirectCtx {
  const Conv2dArgs* p;
  const float* xp;  // [n][c][hr][sw][L]: padded row r, phase f, column j = x_in[r - ph][j*sw + f - pw]
  const float* wp;  // [oc blocks][c][kh][kw][OCB], zero for channels past oc
  const i64* tap_off;  // per (c, ky, kx): offset of its first input column in one image's xp
  i64 hr, L, ob_count, ry_count;
};

using TilesFn = void (*)(const DirectCtx&, i64, i64);

#define LC_ISA_KERNEL "backends/cpu/conv2d_direct.inc"
#include "backends/cpu/isa_variants.inc"

struct DirectKernel {
  TilesFn fn;
  int lanes, ocb, ry;
};

DirectKernel direct_kernel(int isa) {
#if defined(LC_CPU_MULTI_ISA)
  isa = std::min(isa, simd_level());
  if (isa >= 2) return {isa_avx512::direct_tiles, 16, isa_avx512::OCB, isa_avx512::RY};
  if (isa == 1) return {isa_avx2::direct_tiles, 8, isa_avx2::OCB, isa_avx2::RY};
#endif
  (void)isa;
  return {isa_sse::direct_tiles, 4, isa_sse::OCB, isa_sse::RY};
}

void conv_direct(const Conv2dArgs& p, int isa) {
  const DirectKernel kern = direct_kernel(isa);
  const i64 sw = p.stride_w, W = kern.lanes, OCB = kern.ocb;
  const i64 nstrips = (p.ow + W - 1) / W;
  const i64 hr = (p.oh - 1) * p.stride_h + p.kh;  // padded rows any tap reads
  const i64 L = nstrips * W + (p.kw - 1) / sw;      // columns per phase row, incl. vector slack
  const i64 ob_count = (p.oc + OCB - 1) / OCB;
  const i64 taps = p.kh * p.kw;

  thread_local std::vector<float> xbuf, wbuf;
  thread_local std::vector<i64> obuf;
  if (obuf.size() < static_cast<std::size_t>(p.c * taps))
    obuf.resize(static_cast<std::size_t>(p.c * taps));
  for (i64 c = 0; c < p.c; ++c)
    for (i64 ky = 0; ky < p.kh; ++ky)
      for (i64 kx = 0; kx < p.kw; ++kx)
        obuf[static_cast<std::size_t>((c * p.kh + ky) * p.kw + kx)] =
            ((c * hr + ky) * sw + kx % sw) * L + kx / sw;
  const std::size_t xsize = static_cast<std::size_t>(p.n * p.c * hr * sw * L);
  const std::size_t wsize = static_cast<std::size_t>(ob_count * p.c * taps * OCB);
  if (xbuf.size() < xsize) xbuf.resize(xsize);
  if (wbuf.size() < wsize) wbuf.resize(wsize);
  float* xp = xbuf.data();
  float* wp = wbuf.data();

  // Padded, phase-split input. For stride 1 a row is zeros | a copy of the input row | zeros.
  for (i64 bc = 0; bc < p.n * p.c; ++bc) {
    const float* src_plane = p.x + bc * p.h * p.w_in;
    for (i64 r = 0; r < hr; ++r) {
      const i64 iy = r - p.pad_h;
      float* dst_row = xp + (bc * hr + r) * sw * L;
      if (iy < 0 || iy >= p.h) {
        std::fill(dst_row, dst_row + sw * L, 0.0f);
        continue;
      }
      const float* src = src_plane + iy * p.w_in;
      if (sw == 1) {
        // j <-> ix = j - pw: valid j in [pw, pw + w) clipped to [0, L).
        const i64 j0 = std::min<i64>(std::max<i64>(p.pad_w, 0), L);
        const i64 j1 = std::min<i64>(p.pad_w + p.w_in, L);
        std::fill(dst_row, dst_row + j0, 0.0f);
        if (j1 > j0) std::memcpy(dst_row + j0, src + (j0 - p.pad_w),
                                 static_cast<std::size_t>(j1 - j0) * sizeof(float));
        std::fill(dst_row + std::max(j0, j1), dst_row + L, 0.0f);
      } else {
        for (i64 f = 0; f < sw; ++f) {
          float* d = dst_row + f * L;
          for (i64 j = 0; j < L; ++j) {
            const i64 ix = j * sw + f - p.pad_w;
            d[j] = (ix >= 0 && ix < p.w_in) ? src[ix] : 0.0f;
          }
        }
      }
    }
  }
  // Packed weights.
  for (i64 ob = 0; ob < ob_count; ++ob)
    for (i64 c = 0; c < p.c; ++c)
      for (i64 tap = 0; tap < taps; ++tap) {
        float* d = wp + ((ob * p.c + c) * taps + tap) * OCB;
        for (i64 o = 0; o < OCB; ++o) {
          const i64 oc = ob * OCB + o;
          d[o] = oc < p.oc ? p.w[(oc * p.c + c) * taps + tap] : 0.0f;
        }
      }

  const DirectCtx ctx{&p, xp, wp, obuf.data(), hr, L, ob_count, (p.oh + kern.ry - 1) / kern.ry};
  const i64 tasks = p.n * ob_count * ctx.ry_count;
  // Called directly by tests on big shapes too, so still thread when the work is large.
  const i64 macs_per_task = OCB * kern.ry * nstrips * W * p.c * taps;
  const i64 grain = std::max<i64>(1, kDirectMaxMacs / std::max<i64>(macs_per_task, 1));
  const TilesFn fn = kern.fn;
  parallel_for(0, tasks, grain, [&](i64 lo, i64 hi) { fn(ctx, lo, hi); });
}

// col[(c*kh + ky)*kw + kx][(y - y0)*ow + x] = x_in[c][y*sh - ph + ky][x*sw - pw + kx] (0 outside).
void im2col(const Conv2dArgs& p, const float* xin, i64 y0, i64 rows, float* col) {
  const i64 kk = p.c * p.kh * p.kw;
  const i64 cols = rows * p.ow;
  auto body = [&](i64 lo, i64 hi) {
    for (i64 r = lo; r < hi; ++r) {
      const i64 c = r / (p.kh * p.kw), ky = (r / p.kw) % p.kh, kx = r % p.kw;
      const float* plane = xin + c * p.h * p.w_in;
      float* dst = col + r * cols;
      i64 x0, x1;
      valid_range(kx, p.stride_w, p.pad_w, p.w_in, p.ow, x0, x1);
      for (i64 y = 0; y < rows; ++y) {
        float* d = dst + y * p.ow;
        const i64 iy = (y0 + y) * p.stride_h - p.pad_h + ky;
        if (iy < 0 || iy >= p.h) {
          std::fill(d, d + p.ow, 0.0f);
          continue;
        }
        const float* src = plane + iy * p.w_in;
        const i64 off = kx - p.pad_w;
        std::fill(d, d + x0, 0.0f);
        for (i64 x = x0; x < x1; ++x) d[x] = src[x * p.stride_w + off];
        std::fill(d + x1, d + p.ow, 0.0f);
      }
    }
  };
  parallel_for(0, kk, std::max<i64>(1, (i64{1} << 15) / std::max<i64>(cols, 1)), body);
}

// The columns [xs, xe) of output row y only: col[r][x - xs], r as above. For rows so wide that one
// row's receptive fields exceed the im2col chunk (ow * c * kh * kw > kColMaxFloats).
void im2col_span(const Conv2dArgs& p, const float* xin, i64 y, i64 xs, i64 xe, float* col) {
  const i64 kk = p.c * p.kh * p.kw, w = xe - xs;
  auto body = [&](i64 lo, i64 hi) {
    for (i64 r = lo; r < hi; ++r) {
      const i64 c = r / (p.kh * p.kw), ky = (r / p.kw) % p.kh, kx = r % p.kw;
      float* d = col + r * w;
      const i64 iy = y * p.stride_h - p.pad_h + ky;
      if (iy < 0 || iy >= p.h) {
        std::fill(d, d + w, 0.0f);
        continue;
      }
      i64 x0, x1;
      valid_range(kx, p.stride_w, p.pad_w, p.w_in, p.ow, x0, x1);
      x0 = std::clamp(x0, xs, xe);
      x1 = std::clamp(x1, x0, xe);
      const float* src = xin + c * p.h * p.w_in + iy * p.w_in;
      const i64 off = kx - p.pad_w;
      std::fill(d, d + (x0 - xs), 0.0f);
      for (i64 x = x0; x < x1; ++x) d[x - xs] = src[x * p.stride_w + off];
      std::fill(d + (x1 - xs), d + w, 0.0f);
    }
  };
  parallel_for(0, kk, std::max<i64>(1, (i64{1} << 15) / std::max<i64>(w, 1)), body);
}

void conv_im2col(const Conv2dArgs& p) {
  const i64 kk = p.c * p.kh * p.kw;
  const i64 pixels = p.oh * p.ow;
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                         p.pad_h == 0 && p.pad_w == 0;
  thread_local std::vector<float> col_store;
  const i64 rows_per_chunk =
      std::clamp<i64>(kColMaxFloats / std::max<i64>(kk * p.ow, 1), 1, p.oh);
  for (i64 b = 0; b < p.n; ++b) {
    const float* xin = p.x + b * p.c * p.h * p.w_in;
    float* out = p.out + b * p.oc * pixels;
    if (pointwise) {
      gemm(p.oc, pixels, kk, p.w, kk, xin, pixels, false, out, pixels);
    } else if (kk * p.ow > kColMaxFloats) {
      // One output row's receptive fields exceed the chunk (a very wide row, e.g. a padding near
      // 2^30): column spans of a row, so the scratch stays at kColMaxFloats whatever the width.
      const i64 span = std::max<i64>(kColMaxFloats / std::max<i64>(kk, 1), 1);
      if (static_cast<i64>(col_store.size()) < kk * span)
        col_store.resize(static_cast<std::size_t>(kk * span));
      for (i64 y = 0; y < p.oh; ++y)
        for (i64 xs = 0; xs < p.ow; xs += span) {
          const i64 xe = std::min(p.ow, xs + span);
          im2col_span(p, xin, y, xs, xe, col_store.data());
          gemm(p.oc, xe - xs, kk, p.w, kk, col_store.data(), xe - xs, false, out + y * p.ow + xs,
               pixels);
        }
    } else {
      for (i64 y0 = 0; y0 < p.oh; y0 += rows_per_chunk) {
        const i64 rows = std::min(rows_per_chunk, p.oh - y0);
        const i64 cols = rows * p.ow;
        if (static_cast<i64>(col_store.size()) < kk * cols)
          col_store.resize(static_cast<std::size_t>(kk * cols));
        im2col(p, xin, y0, rows, col_store.data());
        gemm(p.oc, cols, kk, p.w, kk, col_store.data(), cols, false, out + y0 * p.ow, pixels);
      }
    }
    // Bias is per output channel = per GEMM row, so it is a scalar per row here.
    if (p.bias || p.act != Activation::none) {
      parallel_for(0, p.oc, std::max<i64>(1, (i64{1} << 15) / std::max<i64>(pixels, 1)),
                   [&](i64 lo, i64 hi) {
                     for (i64 o = lo; o < hi; ++o) {
                       float* r = out + o * pixels;
                       const float bv = p.bias ? p.bias[o] : 0.0f;
                       if (p.act == Activation::relu) {
                         for (i64 i = 0; i < pixels; ++i) r[i] = relu(r[i] + bv);
                       } else if (p.act == Activation::gelu) {
                         for (i64 i = 0; i < pixels; ++i) r[i] = gelu(r[i] + bv);
                       } else {
                         for (i64 i = 0; i < pixels; ++i) r[i] += bv;
                       }
                     }
                   });
    }
  }
}

}  // namespace

void conv2d_with(ConvPath path, const Conv2dArgs& p) {
  if (p.n <= 0 || p.oc <= 0 || p.oh <= 0 || p.ow <= 0) return;
  if (path == ConvPath::automatic) {
    const i64 macs = p.n * p.oc * p.c * p.kh * p.kw * p.oh * p.ow;
    path = macs < kDirectMaxMacs ? ConvPath::direct : ConvPath::im2col;
  }
  if (path == ConvPath::direct) {
    conv_direct(p, simd_level());
  } else {
    conv_im2col(p);
  }
}

void conv2d(const Conv2dArgs& p) { conv2d_with(ConvPath::automatic, p); }

int simd_isa_count() { return simd_level() + 1; }

void conv2d_direct_with_isa(int isa, const Conv2dArgs& p) {
  if (p.n <= 0 || p.oc <= 0 || p.oh <= 0 || p.ow <= 0) return;
  conv_direct(p, std::max(isa, 0));
}

}  // namespace lc::cpu
