// NCHW conv2d + bias + relu/gelu.
//
// Small problems (<= kDirectMacs multiply-adds, e.g. 1x3x16x16 -> 16 ch, k=3) run a direct
// kernel: one thread per output element, weights through the read-only cache, bias and the
// activation fused; it needs no workspace and no library set-up. Larger ones go to cuDNN
// (cudnnConvolutionForward with CUDNN_FMA_MATH: exact fp32, never TF32) followed by one fused
// bias+activation pass; the algorithm is chosen once per shape by cudnnFindConvolutionForward-
// AlgorithmEx on the real buffers and cached; a repeated call replays a captured graph of the
// cuDNN call (launch.h run_captured). cuDNN is loaded on the first convolution that
// needs it (vendor_libs.h). Without cuDNN in the build, or if libcudnn cannot be loaded or
// cudnnCreate fails at run time, everything takes the direct kernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/device_math.cuh"
#include "backends/cuda/kernels.h"
#include "lightning_core/errors.h"

#ifdef LC_HAVE_CUDNN
#include "backends/cuda/vendor_libs.h"
// Every cudnn* call goes through the lazily loaded table `api` (a vendor::CudnnApi&) in scope.
#define LC_CUDNN_CHECK(expr)                                                                      \
  do {                                                                                            \
    const cudnnStatus_t lc_st_ = (expr);                                                          \
    if (lc_st_ != CUDNN_STATUS_SUCCESS)                                                           \
      ::lc::cuda::detail::throw_lib(                                                              \
          "cuDNN",                                                                                \
          lc_st_ == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ||                       \
              lc_st_ == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED,                       \
          static_cast<int>(lc_st_), api.cudnnGetErrorString(lc_st_), #expr, __FILE__,             \
          __LINE__);                                                                              \
  } while (0)
#endif

namespace lc::cuda {

namespace {

constexpr std::int64_t kDirectMacs = std::int64_t{1} << 24;  // 16.8 M multiply-adds

std::int64_t macs_of(const Conv2dArgs& a) { return a.n * a.oc * a.oh * a.ow * a.c * a.kh * a.kw; }

template <Activation A>
__global__ void __launch_bounds__(256) conv_direct_kernel(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ out, int n, int c, int h, int wi, int oc, int kh, int kw, int sh, int sw,
    int ph, int pw, int oh, int ow) {
  const std::int64_t total = static_cast<std::int64_t>(n) * oc * oh * ow;
  for (std::int64_t idx = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const int ox = static_cast<int>(idx % ow);
    std::int64_t t = idx / ow;
    const int oy = static_cast<int>(t % oh);
    t /= oh;
    const int o = static_cast<int>(t % oc);
    const int b = static_cast<int>(t / oc);
    const int iy0 = oy * sh - ph, ix0 = ox * sw - pw;
    float acc = bias ? __ldg(bias + o) : 0.0f;
    const float* wo = w + static_cast<std::int64_t>(o) * c * kh * kw;
    const float* xb = x + static_cast<std::int64_t>(b) * c * h * wi;
    for (int ci = 0; ci < c; ++ci) {
      const float* xc = xb + static_cast<std::int64_t>(ci) * h * wi;
      const float* wc = wo + ci * kh * kw;
      for (int ky = 0; ky < kh; ++ky) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < kw; ++kx) {
          const int ix = ix0 + kx;
          if (ix < 0 || ix >= wi) continue;
          acc = fmaf(__ldg(xc + iy * wi + ix), __ldg(wc + ky * kw + kx), acc);
        }
      }
    }
    out[idx] = activate<A>(acc);
  }
}

template <Activation A>
__global__ void bias_act_kernel(float* __restrict__ y, const float* __restrict__ bias,
                                std::int64_t total, int hw, int oc) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float v = y[i];
    if (bias) v += __ldg(bias + (i / hw) % oc);
    y[i] = activate<A>(v);
  }
}

void launch_direct(const Conv2dArgs& a, cudaStream_t s) {
  const std::int64_t total = a.n * a.oc * a.oh * a.ow;
  const int blocks = static_cast<int>(std::min<std::int64_t>((total + 255) / 256, 65535));
  const auto I = [](std::int64_t v) { return static_cast<int>(v); };
#define LC_CONV_DIRECT(ACT)                                                                      \
  launch(conv_direct_kernel<ACT>, blocks, 256, 0, s, "conv_direct_kernel", a.x, a.w, a.bias, a.out, I(a.n), I(a.c), I(a.h), \
                                                 I(a.w_in), I(a.oc), I(a.kh), I(a.kw),             \
                                                 I(a.stride_h), I(a.stride_w), I(a.pad_h),         \
                                                 I(a.pad_w), I(a.oh), I(a.ow))
  switch (a.act) {
    case Activation::none: LC_CONV_DIRECT(Activation::none); break;
    case Activation::relu: LC_CONV_DIRECT(Activation::relu); break;
    case Activation::gelu: LC_CONV_DIRECT(Activation::gelu); break;
    case Activation::gelu_erf:  // the op layer refuses it for conv2d (linear only)
      throw_value("conv2d_nchw", "activation 'gelu_erf' is not supported; use 'gelu'");
  }
#undef LC_CONV_DIRECT
}

void launch_bias_act(const Conv2dArgs& a, cudaStream_t s) {
  if (!a.bias && a.act == Activation::none) return;
  const std::int64_t total = a.n * a.oc * a.oh * a.ow;
  const int hw = static_cast<int>(a.oh * a.ow), oc = static_cast<int>(a.oc);
  const int blocks = static_cast<int>(std::min<std::int64_t>((total + 255) / 256, 8192));
  switch (a.act) {
    case Activation::none: launch(bias_act_kernel<Activation::none>, blocks, 256, 0, s, "bias_act_kernel", a.out, a.bias, total, hw, oc); break;
    case Activation::relu: launch(bias_act_kernel<Activation::relu>, blocks, 256, 0, s, "bias_act_kernel", a.out, a.bias, total, hw, oc); break;
    case Activation::gelu: launch(bias_act_kernel<Activation::gelu>, blocks, 256, 0, s, "bias_act_kernel", a.out, a.bias, total, hw, oc); break;
    case Activation::gelu_erf:  // the op layer refuses it for conv2d (linear only)
      throw_value("conv2d_nchw", "activation 'gelu_erf' is not supported; use 'gelu'");
  }
}

#ifdef LC_HAVE_CUDNN

using ConvKey = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                           std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                           std::int64_t>;

struct ConvPlan {
  cudnnTensorDescriptor_t xd = nullptr, yd = nullptr;
  cudnnFilterDescriptor_t wd = nullptr;
  cudnnConvolutionDescriptor_t cd = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  std::size_t ws_bytes = 0;
};

struct Cudnn {
  std::mutex mu;
  bool tried = false;
  const vendor::CudnnApi* api = nullptr;  // set together with h
  cudnnHandle_t h = nullptr;
  std::map<ConvKey, ConvPlan> plans;
};
// One per device: a cuDNN handle belongs to the device current when it was created.
Cudnn& cudnn() {
  static Cudnn* c = new Cudnn[kMaxDevices];  // leaked: never destroyed after the driver unloads
  return c[current_device()];
}

// Caller holds cudnn().mu. The first call loads libcudnn and creates the handle; false (then and
// on every later call) when either fails: the direct kernel runs.
bool cudnn_handle(Cudnn& c) {
  if (!c.tried) {
    c.tried = true;
    const vendor::CudnnApi* api = vendor::try_cudnn();
    cudnnHandle_t h = nullptr;
    if (api && api->cudnnCreate(&h) == CUDNN_STATUS_SUCCESS) {
      c.api = api;
      c.h = h;
    } else {
      (void)cudaGetLastError();
    }
  }
  return c.h != nullptr;
}

// Caller holds cudnn().mu. Returns false when cuDNN cannot be used (the direct kernel runs).
bool cudnn_ready(cudaStream_t s) {
  Cudnn& c = cudnn();
  if (!cudnn_handle(c)) return false;
  const vendor::CudnnApi& api = *c.api;
  LC_CUDNN_CHECK(api.cudnnSetStream(c.h, s));
  return true;
}

ConvPlan& plan_for(const Conv2dArgs& a) {
  Cudnn& c = cudnn();
  const ConvKey key{a.n, a.c, a.h, a.w_in, a.oc, a.kh, a.kw, a.stride_h, a.stride_w, a.pad_h, a.pad_w};
  auto it = c.plans.find(key);
  if (it != c.plans.end()) return it->second;
  const vendor::CudnnApi& api = *c.api;
  ConvPlan p;
  const auto I = [](std::int64_t v) { return static_cast<int>(v); };
  LC_CUDNN_CHECK(api.cudnnCreateTensorDescriptor(&p.xd));
  LC_CUDNN_CHECK(api.cudnnCreateTensorDescriptor(&p.yd));
  LC_CUDNN_CHECK(api.cudnnCreateFilterDescriptor(&p.wd));
  LC_CUDNN_CHECK(api.cudnnCreateConvolutionDescriptor(&p.cd));
  LC_CUDNN_CHECK(api.cudnnSetTensor4dDescriptor(p.xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(a.n), I(a.c), I(a.h), I(a.w_in)));
  LC_CUDNN_CHECK(api.cudnnSetFilter4dDescriptor(p.wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, I(a.oc), I(a.c), I(a.kh), I(a.kw)));
  LC_CUDNN_CHECK(api.cudnnSetConvolution2dDescriptor(p.cd, I(a.pad_h), I(a.pad_w), I(a.stride_h), I(a.stride_w), 1, 1,
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  LC_CUDNN_CHECK(api.cudnnSetConvolutionMathType(p.cd, CUDNN_FMA_MATH));  // exact fp32: no TF32
  LC_CUDNN_CHECK(api.cudnnSetTensor4dDescriptor(p.yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, I(a.n), I(a.oc), I(a.oh), I(a.ow)));

  // Time the candidates once on the real buffers (this writes a.out, which we overwrite next).
  std::size_t free_b = 0, total_b = 0;
  LC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const std::size_t ws_limit = std::min<std::size_t>(std::size_t{256} << 20, free_b / 4);
  auto& alloc = CachingAllocator::instance();
  void* ws = ws_limit ? alloc.alloc(ws_limit) : nullptr;
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int found = 0;
  const cudnnStatus_t st = api.cudnnFindConvolutionForwardAlgorithmEx(
      c.h, p.xd, a.x, p.wd, a.w, p.cd, p.yd, a.out, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, perf,
      ws, ws_limit);
  alloc.free(ws);
  LC_CUDNN_CHECK(st);
  bool ok = false;
  for (int i = 0; i < found; ++i) {  // sorted fastest first
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].mathType == CUDNN_FMA_MATH &&
        perf[i].memory <= ws_limit) {
      p.algo = perf[i].algo;
      p.ws_bytes = perf[i].memory;
      ok = true;
      break;
    }
  }
  if (!ok) {
    throw_backend("conv2d", "cuDNN offers no exact-fp32 algorithm for this shape");
  }
  return c.plans.emplace(key, p).first->second;
}

void launch_cudnn(const Conv2dArgs& a, cudaStream_t s) {
  Cudnn& c = cudnn();
  std::lock_guard<std::mutex> lock(c.mu);
  ConvPlan& p = plan_for(a);
  const vendor::CudnnApi& api = *c.api;
  auto& alloc = CachingAllocator::instance();
  void* ws = p.ws_bytes ? alloc.alloc(p.ws_bytes) : nullptr;
  struct FreeWs {  // stream-ordered reuse is safe (single stream)
    CachingAllocator& alloc;
    void* ws;
    ~FreeWs() { alloc.free(ws); }
  } free_ws{alloc, ws};
  // A repeated convolution (same plan, buffers and workspace block) replays a captured graph of
  // the cuDNN call (launch.h run_captured). The workspace pointer is part of the key, so a
  // replay only ever runs while this call holds that very block.
  const std::uintptr_t key[] = {
      reinterpret_cast<std::uintptr_t>(&p),   static_cast<std::uintptr_t>(p.algo),
      reinterpret_cast<std::uintptr_t>(a.x),  reinterpret_cast<std::uintptr_t>(a.w),
      reinterpret_cast<std::uintptr_t>(a.out), reinterpret_cast<std::uintptr_t>(ws),
      static_cast<std::uintptr_t>(p.ws_bytes)};
  static const char tag = 0;
  run_captured(&tag, key, sizeof key, s, "conv2d", [&](cudaStream_t st) {
    if (st != s) LC_CUDNN_CHECK(api.cudnnSetStream(c.h, st));  // capturing on the private stream
    const float one = 1.0f, zero = 0.0f;
    const cudnnStatus_t r = api.cudnnConvolutionForward(c.h, &one, p.xd, a.x, p.wd, a.w, p.cd,
                                                        p.algo, ws, p.ws_bytes, &zero, p.yd, a.out);
    if (st != s) (void)api.cudnnSetStream(c.h, s);
    LC_CUDNN_CHECK(r);
  });
  launch_bias_act(a, s);
}

#endif  // LC_HAVE_CUDNN

}  // namespace

bool conv2d_uses_cudnn(const Conv2dArgs& a) {
#ifdef LC_HAVE_CUDNN
  if (macs_of(a) <= kDirectMacs) return false;
  Cudnn& c = cudnn();
  std::lock_guard<std::mutex> lock(c.mu);
  return cudnn_handle(c);
#else
  (void)a;
  return false;
#endif
}

void launch_conv2d(const Conv2dArgs& a, cudaStream_t s) {
  if (a.n <= 0 || a.oc <= 0 || a.oh <= 0 || a.ow <= 0) return;
#ifdef LC_HAVE_CUDNN
  if (macs_of(a) > kDirectMacs && a.c > 0) {
    bool ready = false;
    {
      std::lock_guard<std::mutex> lock(cudnn().mu);
      ready = cudnn_ready(s);
    }
    if (ready) return launch_cudnn(a, s);
  }
#endif
  launch_direct(a, s);
}

}  // namespace lc::cuda
