// bench_api_overhead: times one op through the C++ API exactly as the Python suite times it
// through the bindings (benchmarks/python/api_overhead_bench.py runs both and reports the ratio).
// No Google Benchmark needed, so it is built whenever benchmarks are enabled.
//
//   bench_api_overhead --op attention|conv|matmul|vector_add|linear --device cpu|cuda
//                      --shape 256,64 [--warmup 20] [--iters 200] [--budget-s 2] [--min-iters 5]
//
// Method: resident tensors on --device, preallocated output, `_into` form; per timed call
// steady_clock around (op + lc::synchronize()). Prints one JSON object: median/p10/p90 ms, n.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lightning_core/ops.h"
#include "lightning_core/policy.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"

namespace {

lc::Tensor randn(const std::vector<std::int64_t>& shape, lc::DeviceKind dev, unsigned seed, float scale = 1.0f) {
  lc::Tensor host = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  for (std::int64_t i = 0; i < host.numel(); ++i) host.data_as<float>()[i] = nd(g);
  return dev == lc::DeviceKind::cpu ? host : host.to(dev);
}

std::vector<std::int64_t> parse_shape(const std::string& s) {
  std::vector<std::int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoll(item));
  return v;
}

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

int usage(const char* msg) {
  std::fprintf(stderr, "bench_api_overhead: %s\nusage: bench_api_overhead --op attention|conv|matmul|"
                       "vector_add|linear --device cpu|cuda --shape a,b,... [--warmup N] [--iters N] "
                       "[--budget-s S] [--min-iters N]\n", msg);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string op, device = "cpu", shape_s;
  int warmup = 20, iters = 200, min_iters = 5;
  double budget_s = 2.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--op") op = v;
    else if (k == "--device") device = v;
    else if (k == "--shape") shape_s = v;
    else if (k == "--warmup") warmup = std::atoi(v.c_str());
    else if (k == "--iters") iters = std::atoi(v.c_str());
    else if (k == "--min-iters") min_iters = std::atoi(v.c_str());
    else if (k == "--budget-s") budget_s = std::atof(v.c_str());
    else return usage(("unknown option " + k).c_str());
  }
  if (op.empty() || shape_s.empty()) return usage("--op and --shape are required");
  const lc::DeviceKind dev = device == "cuda" ? lc::DeviceKind::cuda : lc::DeviceKind::cpu;
  if (dev == lc::DeviceKind::cuda && !lc::cuda_available()) {
    std::printf("{\"status\": \"skipped: CUDA unavailable\"}\n");
    return 0;
  }
  const std::vector<std::int64_t> s = parse_shape(shape_s);
  lc::ExecutionPolicy p;
  p.device = dev == lc::DeviceKind::cuda ? lc::DeviceRequest::cuda : lc::DeviceRequest::cpu;
  p.download = dev == lc::DeviceKind::cpu;  // download=False is for GPU placements only

  std::vector<lc::Tensor> keep;
  std::function<void()> call;
  try {
    if (op == "attention" && s.size() == 2) {
      keep = {randn({s[0], s[1]}, dev, 1), randn({s[0], s[1]}, dev, 2), randn({s[0], s[1]}, dev, 3),
              lc::Tensor::empty({s[0], s[1]}, lc::DType::f32, dev)};
      call = [&] { lc::attention2d_into(keep[0], keep[1], keep[2], keep[3], false, p); };
    } else if (op == "conv" && s.size() == 5) {  // n,c,h,w,oc ; 3x3 stride 1 pad 1 + bias
      keep = {randn({s[0], s[1], s[2], s[3]}, dev, 1), randn({s[4], s[1], 3, 3}, dev, 2, 0.2f),
              randn({s[4]}, dev, 3), lc::Tensor::empty({s[0], s[4], s[2], s[3]}, lc::DType::f32, dev)};
      call = [&] { lc::conv2d_nchw_into(keep[0], keep[1], &keep[2], 1, 1, 1, 1, lc::Activation::none, keep[3], p); };
    } else if (op == "matmul" && s.size() == 3) {
      keep = {randn({s[0], s[1]}, dev, 1), randn({s[1], s[2]}, dev, 2),
              lc::Tensor::empty({s[0], s[2]}, lc::DType::f32, dev)};
      call = [&] { lc::matmul2d_into(keep[0], keep[1], keep[2], p); };
    } else if (op == "linear" && s.size() == 3) {  // batch,in,out
      keep = {randn({s[0], s[1]}, dev, 1), randn({s[2], s[1]}, dev, 2, 0.03f), randn({s[2]}, dev, 3),
              lc::Tensor::empty({s[0], s[2]}, lc::DType::f32, dev)};
      call = [&] { lc::linear_into(keep[0], keep[1], &keep[2], lc::Activation::none, keep[3], p); };
    } else if (op == "vector_add" && s.size() == 1) {
      keep = {randn({s[0]}, dev, 1), randn({s[0]}, dev, 2), lc::Tensor::empty({s[0]}, lc::DType::f32, dev)};
      call = [&] { lc::elementwise_into("vector_add", keep[0], &keep[1], 1.0f, keep[2], p); };
    } else {
      return usage(("unknown op or wrong shape arity for " + op).c_str());
    }
    using clk = std::chrono::steady_clock;
    const auto t_start = clk::now();
    for (int i = 0; i < std::max(warmup, 1); ++i) {
      call();
      lc::synchronize();
      if (std::chrono::duration<double>(clk::now() - t_start).count() > budget_s * 0.25) break;
    }
    std::vector<double> ms;
    const auto t_loop = clk::now();
    while (static_cast<int>(ms.size()) < iters) {
      const auto t0 = clk::now();
      call();
      lc::synchronize();
      ms.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
      if (static_cast<int>(ms.size()) >= min_iters &&
          std::chrono::duration<double>(clk::now() - t_loop).count() > budget_s)
        break;
    }
    std::printf("{\"status\": \"ok\", \"op\": \"%s\", \"device\": \"%s\", \"shape\": \"%s\", \"ms\": %.9g, "
                "\"p10_ms\": %.9g, \"p90_ms\": %.9g, \"min_ms\": %.9g, \"n\": %zu}\n",
                op.c_str(), device.c_str(), shape_s.c_str(), pct(ms, 0.5), pct(ms, 0.1), pct(ms, 0.9),
                *std::min_element(ms.begin(), ms.end()), ms.size());
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '"' || c == '\\' || c == '\n') c = ' ';
    std::printf("{\"status\": \"error: %s\"}\n", msg.c_str());
    return 1;
  }
  return 0;
}
