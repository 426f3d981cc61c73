// cuda_micro: quick CUDA-event timings of the CUDA backend's ops (median of >= 50 runs after a
// warm-up), on random data. Usage: cuda_micro [output.txt]. Prints a table and writes the same
// lines to the file. torch comparisons live in the Python benchmark suite.
#include <cuda_runtime_api.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/staging.h"

namespace {

lc::Backend& gpu() { return lc::get_backend(lc::DeviceKind::cuda); }

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

float* dev_random(std::size_t n, std::mt19937& g) {
  std::vector<float> h(n);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  for (auto& v : h) v = d(g);
  auto* p = static_cast<float*>(gpu().alloc(n * sizeof(float)));
  gpu().copy_from_host(p, h.data(), n * sizeof(float));
  return p;
}

// Median device time (ms) of fn over `reps` runs, each bracketed by its own events.
double median_ms(const std::function<void()>& fn, int reps = 50, int warmup = 5) {
  cudaStream_t s = lc::cuda::stream();
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<cudaEvent_t> ev(2 * static_cast<std::size_t>(reps));
  for (auto& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(ev[2 * i], s), "record");
    fn();
    check(cudaEventRecord(ev[2 * i + 1], s), "record");
  }
  check(cudaStreamSynchronize(s), "sync");
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]), "elapsed");
    t.push_back(ms);
  }
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::vector<std::string> lines;
void report(const std::string& name, double value, const char* unit, const std::string& extra = "") {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-34s %10.4f %-7s %s", name.c_str(), value, unit, extra.c_str());
  lines.emplace_back(buf);
  std::printf("%s\n", buf);
  std::fflush(stdout);
}

// Median host wall time (us) of fn over `reps` runs after `warmup` runs.
double median_host_us(const std::function<void()>& fn, int reps, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::string size_name(std::size_t b) {
  return b >= (1u << 20) ? std::to_string(b >> 20) + "MB" : std::to_string(b >> 10) + "KB";
}

// Host<->device transfers through the backend's copy_from_host / copy_to_host (pageable host
// buffers, synchronize included), GB/s = 1e9 bytes/s, median host time. Also: the same with one
// copy thread (the pre-pool behaviour), a D2H into fresh (never touched) pages as a one-shot
// numpy result is, the pinned DMA ceiling, and cudaHostRegister of the caller's buffer counted
// with its registration cost.
void transfer_benchmarks() {
  auto& b = gpu();
  const std::size_t max_bytes = 256u << 20;
  std::vector<char> host(max_bytes, 1);
  for (std::size_t i = 0; i < max_bytes; i += 4096) host[i] = static_cast<char>(i >> 12);
  char* dev = static_cast<char*>(b.alloc(max_bytes));
  b.copy_from_host(dev, host.data(), max_bytes);
  b.synchronize();
  auto reps_for = [](std::size_t n) { return n <= (1u << 20) ? 200 : n <= (16u << 20) ? 30 : 7; };
  auto gbps = [](std::size_t n, double us) { return static_cast<double>(n) / (us * 1e-6) / 1e9; };
  auto line = [&](const std::string& name, std::size_t n, double us, const std::string& note) {
    report(name, gbps(n, us), "GB/s", std::to_string(us) + " us" + note);
  };
  const int dflt = lc::cuda::copy_threads();
  const std::string thr = ", copy threads " + std::to_string(dflt);
  for (std::size_t n : {64u << 10, 1u << 20, 16u << 20, 256u << 20}) {
    const double us = median_host_us([&] { b.copy_from_host(dev, host.data(), n); b.synchronize(); }, reps_for(n));
    line("h2d " + size_name(n) + " pageable", n, us, thr);
  }
  for (std::size_t n : {64u << 10, 1u << 20, 16u << 20, 256u << 20}) {
    const double us = median_host_us([&] { b.copy_to_host(host.data(), dev, n); b.synchronize(); }, reps_for(n));
    line("d2h " + size_name(n) + " pageable", n, us, thr);
  }
  // One-shot D2H destination: fresh anonymous pages, faulted in by the copy itself.
  auto fresh_d2h = [&](std::size_t n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { std::perror("mmap"); std::exit(1); }
    b.copy_to_host(p, dev, n);
    b.synchronize();
    munmap(p, n);
  };
  for (std::size_t n : {16u << 20, 256u << 20}) {
    const double us = median_host_us([&] { fresh_d2h(n); }, reps_for(n));
    line("d2h " + size_name(n) + " fresh pages", n, us, thr + ", incl. mmap/munmap");
  }
  // The same with one copy thread (memcpy on the caller only).
  lc::cuda::set_copy_threads(1);
  for (std::size_t n : {1u << 20, 16u << 20, 256u << 20}) {
    const double us = median_host_us([&] { b.copy_from_host(dev, host.data(), n); b.synchronize(); }, reps_for(n));
    line("h2d " + size_name(n) + " pageable 1 thread", n, us, "");
  }
  for (std::size_t n : {1u << 20, 16u << 20, 256u << 20}) {
    const double us = median_host_us([&] { b.copy_to_host(host.data(), dev, n); b.synchronize(); }, reps_for(n));
    line("d2h " + size_name(n) + " pageable 1 thread", n, us, "");
  }
  {
    const std::size_t n = 16u << 20;
    const double us = median_host_us([&] { fresh_d2h(n); }, reps_for(n));
    line("d2h 16MB fresh pages 1 thread", n, us, ", incl. mmap/munmap");
  }
  lc::cuda::set_copy_threads(0);
  // Plain host memcpy (one thread), and the DMA ceiling from pinned memory.
  {
    const std::size_t n = 256u << 20;
    std::vector<char> dst(n, 2);
    const double us = median_host_us([&] { std::memcpy(dst.data(), host.data(), n); }, 5);
    line("host memcpy 256MB 1 thread", n, us, "");
    void* pinned = nullptr;
    check(cudaMallocHost(&pinned, n), "cudaMallocHost");
    std::memset(pinned, 3, n);
    cudaStream_t s = lc::cuda::stream();
    double t = median_host_us([&] {
      check(cudaMemcpyAsync(dev, pinned, n, cudaMemcpyHostToDevice, s), "h2d");
      check(cudaStreamSynchronize(s), "sync");
    }, 5);
    line("h2d 256MB pinned (DMA ceiling)", n, t, "");
    t = median_host_us([&] {
      check(cudaMemcpyAsync(pinned, dev, n, cudaMemcpyDeviceToHost, s), "d2h");
      check(cudaStreamSynchronize(s), "sync");
    }, 5);
    line("d2h 256MB pinned (DMA ceiling)", n, t, "");
    check(cudaFreeHost(pinned), "cudaFreeHost");
    // cudaHostRegister of a caller's (page-aligned, already touched) buffer, counted per call.
    // A failure is reported, not fatal: the table must still be written.
    void* reg = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reg != MAP_FAILED) {
      std::memset(reg, 4, n);
      for (std::size_t m : {16u << 20, 256u << 20}) {
        bool ok = true;
        t = median_host_us([&] {
          if (!ok) return;
          ok = cudaHostRegister(reg, m, cudaHostRegisterDefault) == cudaSuccess &&
               cudaMemcpyAsync(dev, reg, m, cudaMemcpyHostToDevice, s) == cudaSuccess &&
               cudaStreamSynchronize(s) == cudaSuccess && cudaHostUnregister(reg) == cudaSuccess;
        }, 5, 1);
        if (ok) {
          line("h2d " + size_name(m) + " hostRegister+copy", m, t, ", register+unregister counted");
        } else {
          report("h2d " + size_name(m) + " hostRegister+copy", 0.0, "GB/s",
                 std::string("failed: ") + cudaGetErrorString(cudaGetLastError()));
          (void)cudaHostUnregister(reg);
          (void)cudaGetLastError();
        }
      }
      munmap(reg, n);
    }
  }
  b.free(dev);
}

}  // namespace

int main(int argc, char** argv) {
  if (!gpu().available()) {
    std::printf("CUDA unavailable: %s\n", gpu().unavailable_reason().c_str());
    return 0;
  }
  std::printf("device: %s\n", gpu().device_description().c_str());
  std::mt19937 g(12345);

  // GEMM (TFLOP/s)
  for (int n : {1024, 2048, 4096, 8192}) {
    const lc::Precision prec = n == 8192 ? lc::Precision::tf32 : lc::Precision::fp32;
    const std::size_t e = static_cast<std::size_t>(n) * n;
    float *a = dev_random(e, g), *b = dev_random(e, g), *c = dev_random(e, g);
    lc::MatmulArgs m{a, b, nullptr, c, n, n, n, false, lc::Activation::none, prec};
    const double ms = median_ms([&] { gpu().matmul(m); }, n == 8192 ? 20 : 50);
    report("gemm " + std::to_string(n) + "^3 " + (n == 8192 ? "tf32" : "fp32"),
           2.0 * n * double(n) * n / (ms * 1e-3) / 1e12, "TFLOP/s", std::to_string(ms) + " ms");
    gpu().free(a); gpu().free(b); gpu().free(c);
  }
  // vector add 64M (TB/s at 12 bytes/element)
  {
    const std::int64_t n = 64ll << 20;
    float *a = dev_random(n, g), *b = dev_random(n, g), *c = dev_random(n, g);
    lc::ElementwiseArgs e{lc::EwKind::add, a, b, c, n, 1.0f};
    const double ms = median_ms([&] { gpu().elementwise(e); }, 100);
    report("vector add 64M", 12.0 * n / (ms * 1e-3) / 1e12, "TB/s", std::to_string(ms) + " ms");
    lc::ElementwiseArgs e2{lc::EwKind::add, a + 1, b + 1, c + 1, n - 1, 1.0f};
    const double ms2 = median_ms([&] { gpu().elementwise(e2); }, 100);
    report("vector add 64M (offset 1)", 12.0 * n / (ms2 * 1e-3) / 1e12, "TB/s", std::to_string(ms2) + " ms");
    lc::ElementwiseArgs e3{lc::EwKind::gelu, a, nullptr, c, n, 1.0f};
    const double ms3 = median_ms([&] { gpu().elementwise(e3); }, 100);
    report("gelu 64M", 8.0 * n / (ms3 * 1e-3) / 1e12, "TB/s", std::to_string(ms3) + " ms");
    gpu().free(a); gpu().free(b); gpu().free(c);
  }
  // attention seq 4096, d 64, one head
  {
    const std::int64_t s = 4096, d = 64;
    float *q = dev_random(s * d, g), *k = dev_random(s * d, g), *v = dev_random(s * d, g), *o = dev_random(s * d, g);
    for (bool causal : {false, true}) {
      lc::AttentionArgs at{q, k, v, o, s, s, d, d, causal, 0.125f};
      const double ms = median_ms([&] { gpu().attention(at); });
      const double flops = 4.0 * s * s * d * (causal ? 0.5 : 1.0);
      report(std::string("attention 4096 d64 ") + (causal ? "causal" : "full"), ms, "ms",
             std::to_string(flops / (ms * 1e-3) / 1e12) + " TFLOP/s");
    }
    for (std::int64_t dd : {128, 256}) {
      float *q2 = dev_random(s * dd, g), *k2 = dev_random(s * dd, g), *v2 = dev_random(s * dd, g), *o2 = dev_random(s * dd, g);
      lc::AttentionArgs at{q2, k2, v2, o2, s, s, dd, dd, false, 0.1f};
      const double ms = median_ms([&] { gpu().attention(at); }, 20);
      report("attention 4096 d" + std::to_string(dd) + " full", ms, "ms",
             std::to_string(4.0 * s * s * dd / (ms * 1e-3) / 1e12) + " TFLOP/s");
      gpu().free(q2); gpu().free(k2); gpu().free(v2); gpu().free(o2);
    }
    gpu().free(q); gpu().free(k); gpu().free(v); gpu().free(o);
  }
  // layernorm / softmax 4096 x 4096 (TB/s at 8 bytes/element)
  {
    const std::int64_t r = 4096, c = 4096;
    float *x = dev_random(r * c, g), *o = dev_random(r * c, g), *gm = dev_random(c, g), *bt = dev_random(c, g);
    lc::LayerNormArgs ln{x, gm, bt, o, r, c, 1e-5f};
    double ms = median_ms([&] { gpu().layernorm(ln); });
    report("layernorm 4096x4096", ms, "ms", std::to_string(8.0 * r * c / (ms * 1e-3) / 1e12) + " TB/s");
    lc::SoftmaxArgs sm{x, o, r, c};
    ms = median_ms([&] { gpu().softmax(sm); });
    report("softmax 4096x4096", ms, "ms", std::to_string(8.0 * r * c / (ms * 1e-3) / 1e12) + " TB/s");
    lc::LayerNormArgs ln2{x, gm, bt, o, r * 4, 1024, 1e-5f};
    ms = median_ms([&] { gpu().layernorm(ln2); });
    report("layernorm 16384x1024 (warp)", ms, "ms", std::to_string(8.0 * r * c / (ms * 1e-3) / 1e12) + " TB/s");
    gpu().free(x); gpu().free(o); gpu().free(gm); gpu().free(bt);
  }
  // layernorm / softmax 8192 x 768 in bf16, fp16 and fp32 (issue #12's target shape; TB/s at
  // 2 x the element size per element: one read, one write)
  {
    const std::int64_t r = 8192, c = 768;
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (lc::DType dt : {lc::DType::bf16, lc::DType::f16, lc::DType::f32}) {
      const std::size_t es = lc::dtype_size(dt);
      std::vector<unsigned char> h(static_cast<std::size_t>(r * c) * es);
      for (std::int64_t i = 0; i < r * c; ++i) {
        const float v = nd(g);
        if (dt == lc::DType::bf16) reinterpret_cast<lc::bfloat16*>(h.data())[i] = lc::to_bf16(v);
        else if (dt == lc::DType::f16) reinterpret_cast<lc::float16*>(h.data())[i] = lc::to_f16(v);
        else reinterpret_cast<float*>(h.data())[i] = v;
      }
      void* x = gpu().alloc(h.size());
      void* o = gpu().alloc(h.size());
      void* gb = gpu().alloc(2 * static_cast<std::size_t>(c) * es);
      gpu().copy_from_host(x, h.data(), h.size());
      gpu().copy_from_host(gb, h.data(), 2 * static_cast<std::size_t>(c) * es);
      const double gbytes = 2.0 * static_cast<double>(r * c * static_cast<std::int64_t>(es));
      lc::LayerNormArgs ln{x, gb, static_cast<char*>(gb) + c * es, o, r, c, 1e-5f, dt};
      double ms = median_ms([&] { gpu().layernorm(ln); });
      report(std::string("layernorm 8192x768 ") + lc::to_string(dt), ms, "ms",
             std::to_string(gbytes / (ms * 1e-3) / 1e12) + " TB/s");
      lc::SoftmaxArgs sm{x, o, r, c, dt};
      ms = median_ms([&] { gpu().softmax(sm); });
      report(std::string("softmax 8192x768 ") + lc::to_string(dt), ms, "ms",
             std::to_string(gbytes / (ms * 1e-3) / 1e12) + " TB/s");
      gpu().free(x); gpu().free(o); gpu().free(gb);
    }
  }
  // conv 8x64x56x56 -> 64, k3, pad 1
  {
    lc::Conv2dArgs cv;
    cv.n = 8; cv.c = 64; cv.h = 56; cv.w_in = 56; cv.oc = 64; cv.kh = 3; cv.kw = 3;
    cv.pad_h = 1; cv.pad_w = 1; cv.oh = 56; cv.ow = 56; cv.act = lc::Activation::relu;
    float *x = dev_random(8 * 64 * 56 * 56, g), *w = dev_random(64 * 64 * 9, g), *b = dev_random(64, g);
    float* o = dev_random(8 * 64 * 56 * 56, g);
    cv.x = x; cv.w = w; cv.bias = b; cv.out = o;
    const double ms = median_ms([&] { gpu().conv2d(cv); });
    const double flops = 2.0 * 8 * 64 * 56 * 56 * 64 * 9;
    report("conv 8x64x56x56->64 k3 +bias+relu", ms, "ms",
           std::to_string(flops / (ms * 1e-3) / 1e12) + " TFLOP/s via " +
               (lc::cuda::conv2d_uses_cudnn(cv) ? "cuDNN" : "direct"));
    gpu().free(x); gpu().free(w); gpu().free(b); gpu().free(o);
  }
  // launch + sync latency of a tiny op (host clock)
  {
    float *a = dev_random(1024, g), *b = dev_random(1024, g), *c = dev_random(1024, g);
    lc::ElementwiseArgs e{lc::EwKind::add, a, b, c, 1024, 1.0f};
    for (int i = 0; i < 100; ++i) { gpu().elementwise(e); gpu().synchronize(); }
    std::vector<double> t;
    for (int i = 0; i < 1000; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      gpu().elementwise(e);
      gpu().synchronize();
      t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    report("tiny add launch+sync", t[t.size() / 2], "us", "median of 1000");
    gpu().free(a); gpu().free(b); gpu().free(c);
  }
  transfer_benchmarks();
  if (argc > 1) {
    if (FILE* f = std::fopen(argv[1], "w")) {
      std::fprintf(f, "device: %s\n", gpu().device_description().c_str());
      for (const auto& l : lines) std::fprintf(f, "%s\n", l.c_str());
      std::fclose(f);
    }
  }
  return 0;
}
