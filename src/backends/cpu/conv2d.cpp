// 2-D convolution (NCHW, weights [oc, c, kh, kw]) on the CPU.
//
//   direct  for small work (< kDirectMaxMacs multiply-adds): loops over (batch, out channel,
//           in channel, ky, kx) with the output row as the inner, vectorisable loop; the valid
//           x range of each kernel tap is computed up front so the inner loop has no padding
//           branches. No allocation.
//   im2col  for large work: per image, the receptive fields are unrolled into
//           col[c*kh*kw][rows*ow] (in chunks of output rows so the buffer stays <= 16 MB) and
//           out[oc][pixels] = W[oc][c*kh*kw] @ col goes through the shared GEMM (OpenBLAS or
//           the built-in kernel, both threaded). A 1x1/stride-1/no-padding conv skips im2col:
//           the input image already is that matrix.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

constexpr i64 kDirectMaxMacs = i64{1} << 20;
constexpr i64 kColMaxFloats = i64{1} << 22;  // 16 MB im2col chunk

// Output columns x whose input column x*stride - pad + k lies inside [0, w).
inline void valid_range(i64 k, i64 stride, i64 pad, i64 w, i64 out, i64& lo, i64& hi) {
  // x >= ceil((pad - k) / stride) and x <= floor((w - 1 + pad - k) / stride)
  const i64 num_lo = pad - k;
  lo = num_lo <= 0 ? 0 : (num_lo + stride - 1) / stride;
  const i64 num_hi = w - 1 + pad - k;
  hi = num_hi < 0 ? 0 : std::min(out, num_hi / stride + 1);
  if (hi < lo) hi = lo;
}

// One output plane (image b, channel o), bias and activation included.
void direct_plane(const Conv2dArgs& p, i64 b, i64 o) {
  float* out = p.out + (b * p.oc + o) * p.oh * p.ow;
  const float bias = p.bias ? p.bias[o] : 0.0f;
  for (i64 i = 0; i < p.oh * p.ow; ++i) out[i] = bias;
  for (i64 c = 0; c < p.c; ++c) {
    const float* xin = p.x + (b * p.c + c) * p.h * p.w_in;
    const float* wk = p.w + (o * p.c + c) * p.kh * p.kw;
    for (i64 ky = 0; ky < p.kh; ++ky) {
      for (i64 kx = 0; kx < p.kw; ++kx) {
        const float wv = wk[ky * p.kw + kx];
        i64 x0, x1;
        valid_range(kx, p.stride_w, p.pad_w, p.w_in, p.ow, x0, x1);
        for (i64 y = 0; y < p.oh; ++y) {
          const i64 iy = y * p.stride_h - p.pad_h + ky;
          if (iy < 0 || iy >= p.h) continue;
          // Indexing from the row start with a (possibly negative) offset, never forming a
          // pointer before the row: x*stride + off >= 0 holds for x in [x0, x1).
          const float* row = xin + iy * p.w_in;
          const i64 off = kx - p.pad_w;
          float* orow = out + y * p.ow;
          if (p.stride_w == 1) {
            for (i64 x = x0; x < x1; ++x) orow[x] += wv * row[x + off];
          } else {
            for (i64 x = x0; x < x1; ++x) orow[x] += wv * row[x * p.stride_w + off];
          }
        }
      }
    }
  }
  if (p.act == Activation::relu) {
    for (i64 i = 0; i < p.oh * p.ow; ++i) out[i] = relu(out[i]);
  } else if (p.act == Activation::gelu) {
    for (i64 i = 0; i < p.oh * p.ow; ++i) out[i] = gelu(out[i]);
  }
}

void conv_direct(const Conv2dArgs& p) {
  const i64 planes = p.n * p.oc;
  const i64 macs_per_plane = p.c * p.kh * p.kw * p.oh * p.ow;
  // Called directly by tests on big shapes too, so still thread when the work is large.
  const i64 grain = std::max<i64>(1, kDirectMaxMacs / std::max<i64>(macs_per_plane, 1));
  parallel_for(0, planes, grain, [&](i64 lo, i64 hi) {
    for (i64 t = lo; t < hi; ++t) direct_plane(p, t / p.oc, t % p.oc);
  });
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
    conv_direct(p);
  } else {
    conv_im2col(p);
  }
}

void conv2d(const Conv2dArgs& p) { conv2d_with(ConvPath::automatic, p); }

}  // namespace lc::cpu
