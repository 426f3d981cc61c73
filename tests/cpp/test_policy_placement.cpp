// Policy validation and scoping, deterministic placement (fake cost model + injected GPU
// presence), the auto-tune cache (round trip, corruption, invalidation), sessions on the CPU and
// conv_attention_nchw. GPU parts GTEST_SKIP without a usable CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/cpu/thread_pool.h"
#include "runtime/placement.h"
#include "ops/work.h"
#include "lightning_core/autotune.h"
#include "lightning_core/errors.h"
#include "lightning_core/fused.h"
#include "lightning_core/ops.h"
#include "lightning_core/policy.h"
#include "lightning_core/runtime.h"
#include "lightning_core/session.h"

namespace {

namespace fs = std::filesystem;

lc::Tensor host(std::vector<float>& v, std::vector<std::int64_t> shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return lc::Tensor::wrap(v.data(), static_cast<int>(shape.size()), shape.data(), strides.data(),
                          lc::DType::f32, lc::DeviceKind::cpu);
}

std::vector<float> randv(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

lc::CostModel fake_model() {
  lc::CostModel m;
  for (int i = 0; i < static_cast<int>(lc::OpFamily::count); ++i) {
    m.cpu_gflops[i] = 100;
    m.gpu_gflops[i] = 10000;
  }
  m.cpu_overhead_us = 1;
  m.gpu_launch_us = 12;
  m.h2d_gbps = m.d2h_gbps = 10;
  m.h2d_latency_us = m.d2h_latency_us = 0;
  m.conv_cpu_crossover_macs = 260000;
  return m;
}

// A fitted model shaped like the H100 machine of the benchmark report (16-core Xeon host,
// pageable one-shot transfers): multi-threaded CPU GEMM ~500 GFLOP/s with a thread-pool
// intercept, a slow CPU conv at small sizes, cuBLASLt with a few µs more than a plain kernel.
lc::CostModel h100_like() {
  lc::CostModel m;
  const double cpu[] = {500, 40, 3, 10, 30};
  const double gpu[] = {30000, 8000, 10000, 800, 600};
  const double cpu_oh[] = {8, 1, 10, 2, 3};
  const double gpu_oh[] = {6, 2, 2, 0, 0};
  for (int i = 0; i < lc::CostModel::kFamilies; ++i) {
    m.cpu_gflops[i] = cpu[i];
    m.gpu_gflops[i] = gpu[i];
    m.cpu_family_overhead_us[i] = cpu_oh[i];
    m.gpu_family_overhead_us[i] = gpu_oh[i];
  }
  m.cpu_overhead_us = 0.5;
  m.gpu_launch_us = 8;
  m.h2d_gbps = m.d2h_gbps = 10;
  m.h2d_latency_us = 3;
  m.d2h_latency_us = 4;
  m.calibrated = m.gpu_calibrated = true;
  return m;
}

lc::WorkEstimate mm(std::int64_t m, std::int64_t k, std::int64_t n) {
  return lc::estimate_work("matmul2d", {{m, k}, {k, n}});
}

// ---- policy --------------------------------------------------------------------------------

TEST(Policy, ValidateRejectsContradictions) {
  lc::ExecutionPolicy p;
  EXPECT_NO_THROW(p.validate("t"));
  p.device = lc::DeviceRequest::cpu;
  p.download = false;
  EXPECT_THROW(p.validate("t"), lc::ValueError);
  p = {};
  p.sync = lc::SyncMode::none;
  EXPECT_THROW(p.validate("t"), lc::ValueError);
  p.download = false;
  EXPECT_NO_THROW(p.validate("t"));
  p = {};
  p.device = lc::DeviceRequest::cpu;
  p.upload = lc::UploadMode::never;
  EXPECT_THROW(p.validate("t"), lc::ValueError);
  EXPECT_THROW(lc::parse_sync("sometimes", "t"), lc::ValueError);
  EXPECT_EQ(lc::parse_upload("once", "t"), lc::UploadMode::once);
}

TEST(Policy, ScopesNestAndRestore) {
  const lc::ExecutionPolicy before = lc::current_policy();
  lc::ExecutionPolicy a;
  a.device = lc::DeviceRequest::cpu;
  {
    lc::PolicyScope s1(a);
    EXPECT_EQ(lc::current_policy().device, lc::DeviceRequest::cpu);
    lc::ExecutionPolicy b = a;
    b.precision = lc::Precision::tf32;
    {
      lc::PolicyScope s2(b);
      EXPECT_EQ(lc::current_policy().precision, lc::Precision::tf32);
    }
    EXPECT_EQ(lc::current_policy().precision, lc::Precision::fp32);
  }
  EXPECT_EQ(lc::current_policy(), before);
}

// ---- placement -----------------------------------------------------------------------------

class PlacementFake : public ::testing::Test {
 protected:
  void SetUp() override { lc::set_cost_model(fake_model()); }
  void TearDown() override { lc::reset_cost_model(); }
  lc::Placement decide(const lc::WorkEstimate& w, const lc::ExecutionPolicy& p, bool gpu) {
    return lc::choose_device_with("test", w, p, gpu, true, true, lc::cost_model());
  }
};

TEST_F(PlacementFake, TinyOnHostStaysOnCpuLargeGoesToGpu) {
  lc::ExecutionPolicy p;
  auto small = decide(mm(8, 8, 8), p, true);
  EXPECT_EQ(small.device, lc::DeviceKind::cpu);
  EXPECT_NE(small.reason.find("-> cpu"), std::string::npos);
  auto large = decide(mm(2048, 2048, 2048), p, true);
  EXPECT_EQ(large.device, lc::DeviceKind::cuda);
  EXPECT_NE(large.reason.find("-> cuda"), std::string::npos);
}

TEST_F(PlacementFake, ResidentDataStaysOnGpu) {
  lc::WorkEstimate w = mm(2, 2, 2);
  w.inputs_on_gpu = true;
  w.host_bytes_in = 0;
  auto pl = decide(w, lc::ExecutionPolicy{}, true);
  EXPECT_EQ(pl.device, lc::DeviceKind::cuda);
  EXPECT_NE(pl.reason.find("already live on the GPU"), std::string::npos);
}

TEST_F(PlacementFake, NoGpuMeansCpuAndExplicitCudaThrows) {
  EXPECT_EQ(decide(mm(4096, 4096, 4096), lc::ExecutionPolicy{}, false).device, lc::DeviceKind::cpu);
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  EXPECT_THROW(decide(mm(4, 4, 4), p, false), lc::Unavailable);
  EXPECT_EQ(decide(mm(4, 4, 4), p, true).device, lc::DeviceKind::cuda);
}

TEST_F(PlacementFake, UnsupportedOnGpuFallsBack) {
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  auto pl = lc::choose_device_with("t", mm(64, 64, 64), p, true, /*gpu_can_run=*/false, true,
                                   lc::cost_model());
  EXPECT_EQ(pl.device, lc::DeviceKind::cpu);
  EXPECT_TRUE(pl.fallback);
}

TEST_F(PlacementFake, ConvCrossover) {
  auto w = lc::estimate_work("conv2d_nchw", {{1, 8, 16, 16}, {8, 8, 3, 3}}, 1, 1, 1, 1);
  EXPECT_DOUBLE_EQ(w.conv_macs, 8.0 * 8 * 9 * 16 * 16);
  auto pl = decide(w, lc::ExecutionPolicy{}, true);
  EXPECT_EQ(pl.device, lc::DeviceKind::cpu);
  EXPECT_NE(pl.reason.find("CJ_CONV2D_CPU_CROSSOVER_MACS"), std::string::npos);
  lc::CostModel m = fake_model();
  m.conv_cpu_crossover_macs = 1000;
  m.gpu_launch_us = 0;
  lc::set_cost_model(m);
  EXPECT_EQ(decide(w, lc::ExecutionPolicy{}, true).device, lc::DeviceKind::cuda);
}

TEST_F(PlacementFake, UploadNeverWithHostDataStaysOnCpu) {
  lc::ExecutionPolicy p;
  p.upload = lc::UploadMode::never;
  EXPECT_EQ(decide(mm(4096, 4096, 4096), p, true).device, lc::DeviceKind::cpu);
  // Mixed: one input on the GPU, another in host memory that may not be uploaded -> the CPU.
  lc::WorkEstimate w = mm(64, 64, 64);
  w.inputs_on_gpu = true;
  EXPECT_EQ(decide(w, p, true).device, lc::DeviceKind::cpu);
  w.host_bytes_in = 0;  // everything resident: stays on the GPU
  EXPECT_EQ(decide(w, p, true).device, lc::DeviceKind::cuda);
}

TEST_F(PlacementFake, CostModelArithmetic) {
  const lc::CostModel m = fake_model();
  lc::WorkEstimate w = mm(100, 100, 100);  // 2e6 flops, 80 KB in, 40 KB out
  EXPECT_NEAR(m.cpu_us(w), 1 + 2e6 / 1e5, 1e-9);
  EXPECT_NEAR(m.gpu_us(w), 12 + 120000.0 / 1e4 + 2e6 / 1e7, 1e-9);
}

// ---- fitted models (two-point calibration) ---------------------------------------------------

TEST(Placement, FitTwoPointsRecoversALine) {
  // t = 5 us + flops / (200 GFLOP/s): 1e6 flops -> 10 us, 1e8 flops -> 505 us.
  const lc::LinearFit f = lc::fit_two_points(1e6, 10, 1e8, 505);
  EXPECT_NEAR(f.a_us, 5, 1e-9);
  EXPECT_NEAR(f.gflops, 200, 1e-9);
}

TEST(Placement, FitTwoPointsClamps) {
  // A negative intercept (the small size is relatively slow): a = 0, the rate of the big point.
  lc::LinearFit f = lc::fit_two_points(1e6, 1, 1e8, 100);
  EXPECT_EQ(f.a_us, 0);
  EXPECT_NEAR(f.gflops, 1e8 / (100 * 1e3), 1e-9);
  // Noise: the medium size measured faster than the small one. r stays finite and > 0, the
  // compute part of the medium point is at least a quarter of it.
  f = lc::fit_two_points(1e6, 50, 1e8, 40);
  EXPECT_GT(f.gflops, 0);
  EXPECT_NEAR(f.a_us + 1e8 / (f.gflops * 1e3), 40, 1e-9);
  EXPECT_NEAR(f.gflops, 1e8 / (10 * 1e3), 1e-9);
  EXPECT_GE(f.a_us, 0);
  // Degenerate sizes.
  f = lc::fit_two_points(1e6, 10, 1e6, 10);
  EXPECT_GT(f.gflops, 0);
  EXPECT_EQ(f.a_us, 0);
}

TEST(Placement, CostModelUsesFamilyOverheadsAndLatencies) {
  const lc::CostModel m = h100_like();
  lc::WorkEstimate w = mm(100, 100, 100);  // 2e6 flops, 80 KB in (2 uploads), 40 KB out
  w.host_bytes_in = 80000;
  EXPECT_NEAR(m.cpu_us(w), 0.5 + 8 + 2e6 / 5e5, 1e-9);
  const double transfers = 2 * 3 + 80000 / 1e4 + 4 + 40000 / 1e4;
  EXPECT_NEAR(m.transfer_us(w), transfers, 1e-9);
  EXPECT_NEAR(m.gpu_us(w), 8 + 6 + transfers + 2e6 / 3e7, 1e-9);
  w.host_bytes_in = w.host_bytes_out = 0;  // resident, result stays: no transfer terms at all
  EXPECT_EQ(m.transfer_us(w), 0);
}

// Small copies (<= small_copy_bytes per copy: the unstaged direct path) use their own bandwidth
// when one was measured; larger ones and models without it use the large-copy bandwidth.
TEST(Placement, SmallCopiesUseTheirOwnBandwidth) {
  lc::CostModel m = h100_like();  // h2d / d2h 10 GB/s, latencies 3 / 4 us
  lc::WorkEstimate w = mm(100, 100, 100);
  w.host_bytes_in = 80000;  // two uploads of 40 KB
  const double large_bw = 2 * 3 + 80000 / 1e4 + 4 + 40000 / 1e4;
  EXPECT_NEAR(m.transfer_us(w), large_bw, 1e-9);  // no small-copy bandwidth: unchanged
  m.h2d_small_gbps = 4.0;
  m.d2h_small_gbps = 5.0;
  EXPECT_NEAR(m.transfer_us(w), 2 * 3 + 80000 / 4e3 + 4 + 40000 / 5e3, 1e-9);
  // Per copy above the limit: the staged (large-copy) bandwidth again.
  m.small_copy_bytes = 30000;
  EXPECT_NEAR(m.transfer_us(w), large_bw, 1e-9);
  // The input total is split per upload: 2 x 40 KB with a 50 KB limit are small copies.
  m.small_copy_bytes = 50000;
  EXPECT_NEAR(m.transfer_us(w), 2 * 3 + 80000 / 4e3 + 4 + 40000 / 5e3, 1e-9);
}

class PlacementFitted : public ::testing::Test {
 protected:
  lc::Placement decide(const lc::WorkEstimate& w, const lc::CostModel& m = h100_like(),
                       lc::ExecutionPolicy p = {}) {
    return lc::choose_device_with("test", w, p, /*gpu_present=*/true, true, true, m);
  }
  // One-shot numpy call: the inputs come from host memory (estimate_work counts them all).
  static lc::WorkEstimate work(const std::string& op, std::vector<std::vector<std::int64_t>> s,
                               int pad = 0) {
    return lc::estimate_work(op, s, 1, 1, pad, pad);
  }
};

TEST_F(PlacementFitted, Gemm256StaysOnCpuWhenTheCpuIsFast) {
  const auto pl = decide(mm(256, 256, 256));
  EXPECT_EQ(pl.device, lc::DeviceKind::cpu) << pl.reason;
  EXPECT_NE(pl.reason.find("[calibrated]"), std::string::npos);
}

TEST_F(PlacementFitted, Gemm896GoesToGpu) {
  EXPECT_EQ(decide(mm(896, 896, 896)).device, lc::DeviceKind::cuda);
}

TEST_F(PlacementFitted, TinyAttentionAndVectorAddStayOnCpu) {
  EXPECT_EQ(decide(work("attention2d", {{8, 32}, {8, 32}, {8, 32}})).device, lc::DeviceKind::cpu);
  EXPECT_EQ(decide(work("attention2d", {{12, 12}, {12, 12}, {12, 12}})).device, lc::DeviceKind::cpu);
  EXPECT_EQ(decide(work("vector_add", {{1 << 16}, {1 << 16}})).device, lc::DeviceKind::cpu);
  EXPECT_EQ(decide(work("vector_add", {{1 << 20}, {1 << 20}})).device, lc::DeviceKind::cpu);
}

TEST_F(PlacementFitted, TransferBoundLinearStillGoesToGpu) {
  // 4096x1024 @ (1024x1024)^T: 8.6 GFLOP, 20 MB up, 16 MB down.
  EXPECT_EQ(decide(work("linear", {{4096, 1024}, {1024, 1024}})).device, lc::DeviceKind::cuda);
}

TEST_F(PlacementFitted, TransfersDominateOnASlowLink) {
  lc::CostModel m = h100_like();
  m.gpu_gflops[0] = 1e9;          // free GPU compute ...
  m.h2d_gbps = m.d2h_gbps = 0.5;  // ... behind a very slow link
  const auto pl = decide(mm(1024, 1024, 1024), m);
  EXPECT_EQ(pl.device, lc::DeviceKind::cpu) << pl.reason;
  // The same op with its data already on the GPU stays there.
  lc::WorkEstimate w = mm(1024, 1024, 1024);
  w.inputs_on_gpu = true;
  w.host_bytes_in = 0;
  EXPECT_EQ(decide(w, m).device, lc::DeviceKind::cuda);
}

TEST_F(PlacementFitted, ResidentDataStaysOnGpuEvenWhenTheCpuWouldWin) {
  lc::WorkEstimate w = work("attention2d", {{8, 32}, {8, 32}, {8, 32}});
  EXPECT_EQ(decide(w).device, lc::DeviceKind::cpu);
  w.inputs_on_gpu = true;
  w.host_bytes_in = 0;
  const auto pl = decide(w);
  EXPECT_EQ(pl.device, lc::DeviceKind::cuda);
  EXPECT_NE(pl.reason.find("already live on the GPU"), std::string::npos);
}

TEST_F(PlacementFitted, SmallConvUsesTheModelUnlessTheCrossoverIsExplicit) {
  // 2x3x16x16 * 16x3x3x3, pad 1: 221184 MACs, below the original's 260000 crossover; the CPU
  // conv is slow at this size, so the fitted model sends it to the GPU.
  const lc::WorkEstimate w = work("conv2d_nchw", {{2, 3, 16, 16}, {16, 3, 3, 3}}, 1);
  ASSERT_LT(w.conv_macs, 260000);
  auto pl = decide(w);
  EXPECT_EQ(pl.device, lc::DeviceKind::cuda) << pl.reason;
  EXPECT_NE(pl.reason.find("auto: estimated CPU"), std::string::npos);
  // An explicit crossover (env knob / set_cost_model) decides as in the original.
  lc::CostModel m = h100_like();
  m.conv_crossover_explicit = true;
  pl = decide(w, m);
  EXPECT_EQ(pl.device, lc::DeviceKind::cpu);
  EXPECT_NE(pl.reason.find("CJ_CONV2D_CPU_CROSSOVER_MACS"), std::string::npos);
  EXPECT_NE(pl.reason.find("set explicitly"), std::string::npos);
  // Without a fitted GPU side the crossover applies too.
  m = h100_like();
  m.gpu_calibrated = false;
  EXPECT_TRUE(m.conv_uses_crossover());
  EXPECT_EQ(decide(w, m).device, lc::DeviceKind::cpu);
  // Through the knob: CJ_CONV2D_CPU_CROSSOVER_MACS set -> explicit.
  ::setenv("CJ_CONV2D_CPU_CROSSOVER_MACS", "260000", 1);
  m = lc::apply_env_knobs(h100_like());
  ::unsetenv("CJ_CONV2D_CPU_CROSSOVER_MACS");
  EXPECT_TRUE(m.conv_crossover_explicit);
  EXPECT_EQ(decide(w, m).device, lc::DeviceKind::cpu);
  EXPECT_FALSE(lc::apply_env_knobs(h100_like()).conv_crossover_explicit);
}

TEST_F(PlacementFitted, LargeConvAboveTheCrossoverStillUsesTheModel) {
  lc::CostModel m = h100_like();
  m.conv_crossover_explicit = true;
  m.h2d_gbps = m.d2h_gbps = 0.01;  // transfers cost far more than the CPU conv
  const lc::WorkEstimate w = work("conv2d_nchw", {{1, 16, 32, 32}, {16, 16, 3, 3}}, 1);
  ASSERT_GT(w.conv_macs, 260000);
  EXPECT_EQ(decide(w, m).device, lc::DeviceKind::cpu);
}

TEST(Placement, EnvKnobsForFamilyOverheadsAndLatencies) {
  ::setenv("LC_CPU_OVERHEAD_US_MATMUL", "11", 1);
  ::setenv("LC_GPU_OVERHEAD_US_CONV2D", "7", 1);
  ::setenv("LC_H2D_LATENCY_US", "4.5", 1);
  ::setenv("LC_D2H_LATENCY_US", "6", 1);
  ::setenv("LC_CPU_GFLOPS_NORM", "17", 1);
  const lc::CostModel m = lc::apply_env_knobs(h100_like());
  for (const char* n : {"LC_CPU_OVERHEAD_US_MATMUL", "LC_GPU_OVERHEAD_US_CONV2D",
                        "LC_H2D_LATENCY_US", "LC_D2H_LATENCY_US", "LC_CPU_GFLOPS_NORM"})
    ::unsetenv(n);
  EXPECT_EQ(m.cpu_family_overhead_us[0], 11);
  EXPECT_EQ(m.gpu_family_overhead_us[2], 7);
  EXPECT_EQ(m.h2d_latency_us, 4.5);
  EXPECT_EQ(m.d2h_latency_us, 6);
  EXPECT_EQ(m.cpu_gflops[3], 17);
  EXPECT_EQ(m.cpu_gflops[0], 500);  // untouched
}

TEST(Placement, EnvKnobsApply) {
  ::setenv("CJ_CONV2D_CPU_CROSSOVER_MACS", "777", 1);
  ::setenv("LC_GPU_LAUNCH_US", "3.5", 1);
  const lc::CostModel m = lc::apply_env_knobs(lc::CostModel{});
  ::unsetenv("CJ_CONV2D_CPU_CROSSOVER_MACS");
  ::unsetenv("LC_GPU_LAUNCH_US");
  EXPECT_EQ(m.conv_cpu_crossover_macs, 777);
  EXPECT_EQ(m.gpu_launch_us, 3.5);
  EXPECT_EQ(lc::apply_env_knobs(lc::CostModel{}).conv_cpu_crossover_macs, 260000);
}

TEST(Placement, EstimateWorkRejectsBadShapes) {
  EXPECT_THROW(lc::estimate_work("matmul2d", {{4}, {4, 4}}), lc::ValueError);
  EXPECT_THROW(lc::estimate_work("nope", {{4}}), lc::ValueError);
}

// ---- auto-tune cache -----------------------------------------------------------------------

class AutotuneCache : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lc-autotune-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    ::setenv("LIGHTNING_CORE_CACHE_DIR", dir_.c_str(), 1);
    ::unsetenv("LC_AUTOTUNE");
    lc::autotune::reload();
    lc::autotune::set_warning_handler([this](const std::string& w) { warnings_.push_back(w); });
  }
  void TearDown() override {
    lc::autotune::set_warning_handler(nullptr);
    ::unsetenv("LIGHTNING_CORE_CACHE_DIR");
    lc::autotune::reload();
    fs::remove_all(dir_);
  }
  std::string slurp() {
    std::ifstream f(lc::autotune::cache_path());
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  fs::path dir_;
  std::vector<std::string> warnings_;
};

TEST_F(AutotuneCache, RoundTripThroughTheFile) {
  EXPECT_EQ(lc::autotune::cache_path(), (dir_ / "autotune.json").string());
  lc::autotune::store("opx", "[2,3]", "float32", lc::DeviceKind::cpu, {{"choice", "c1"}, {"us", "4"}});
  const std::string text = slurp();
  EXPECT_NE(text.find("\"schema_version\": 1"), std::string::npos);
  lc::autotune::reload();
  auto f = lc::autotune::lookup("opx", "[2,3]", "float32", lc::DeviceKind::cpu);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->at("choice"), "c1");
  EXPECT_EQ(f->at("device"), lc::device_fingerprint(lc::DeviceKind::cpu));
  EXPECT_EQ(f->at("library_version"), LC_VERSION);
  EXPECT_TRUE(warnings_.empty());
  std::vector<std::string> files;
  for (auto& e : fs::directory_iterator(dir_)) files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  // The temp file was renamed into place; the lock file stays (it is never removed).
  EXPECT_EQ(files, (std::vector<std::string>{"autotune.json", "autotune.json.lock"}));
}

// Several writers of one cache directory: every store re-reads the file under the lock and
// merges, so entries written by other processes (or threads) survive, and the writer's own
// entry wins for its key. Child processes are forked; they use only the cache (explicit keys,
// no fingerprint query) and leave with _exit.
std::string key_of(const std::string& op) {
  return lc::autotune::make_key(op, "s", "float32", "cpu:test");
}

void store_choice(const std::string& op, const std::string& choice) {
  lc::autotune::store(key_of(op), op, "s", "float32", "cpu:test", {{"choice", choice}});
}

std::string choice_of(const std::string& op) {
  auto f = lc::autotune::lookup(key_of(op));
  return f ? f->at("choice") : std::string("<missing>");
}

// Runs `body` in a forked child; returns its exit status (0 = fine).
template <class F>
int in_child(F&& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(0);
  }
  int status = -1;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST_F(AutotuneCache, StoreMergesEntriesOfOtherProcesses) {
  store_choice("mine", "p1");
  store_choice("stale", "old");
  // Another process, which loaded the file before this one's next store, adds and updates.
  ASSERT_EQ(in_child([] {
    store_choice("theirs", "c");
    store_choice("stale", "new");
    store_choice("mine", "child");
  }), 0);
  // This process still has its old in-memory copy; its store must not drop "theirs" nor
  // restore "stale"=old, and its own key wins.
  store_choice("mine", "p2");
  lc::autotune::reload();
  EXPECT_EQ(choice_of("mine"), "p2");
  EXPECT_EQ(choice_of("theirs"), "c");
  EXPECT_EQ(choice_of("stale"), "new");
  EXPECT_EQ(lc::autotune::entries().size(), 3u);
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(AutotuneCache, ConcurrentProcessesAndThreadsKeepEveryEntry) {
  constexpr int kProcs = 4, kThreads = 3, kEach = 15;
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      lc::autotune::reload();
      std::vector<std::thread> ts;
      for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([p, t] {
          for (int i = 0; i < kEach; ++i)
            store_choice("op" + std::to_string(p) + "_" + std::to_string(t) + "_" +
                             std::to_string(i), std::to_string(i));
        });
      for (auto& th : ts) th.join();
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = -1;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  lc::autotune::reload();
  EXPECT_EQ(lc::autotune::entries().size(), static_cast<std::size_t>(kProcs * kThreads * kEach));
  EXPECT_EQ(choice_of("op3_2_14"), "14");
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(AutotuneCache, CorruptFileWarnsAndIsRebuilt) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "autotune.json") << "{\"format\": \"lightning-core-autotune\", \"schema_";
  EXPECT_FALSE(lc::autotune::lookup("a", "b", "float32", lc::DeviceKind::cpu).has_value());
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("corrupt"), std::string::npos);
  lc::autotune::store("a", "b", "float32", lc::DeviceKind::cpu, {{"choice", "z"}});
  lc::autotune::reload();
  EXPECT_EQ(lc::autotune::lookup("a", "b", "float32", lc::DeviceKind::cpu)->at("choice"), "z");
}

TEST_F(AutotuneCache, KeyIncludesEveryField) {
  const std::string fp = lc::device_fingerprint(lc::DeviceKind::cpu);
  const std::string k = lc::autotune::make_key("op", "s", "float32", fp);
  EXPECT_NE(k, lc::autotune::make_key("op2", "s", "float32", fp));
  EXPECT_NE(k, lc::autotune::make_key("op", "s2", "float32", fp));
  EXPECT_NE(k, lc::autotune::make_key("op", "s", "float64", fp));
  EXPECT_NE(k, lc::autotune::make_key("op", "s", "float32", fp + "x"));
  EXPECT_NE(k.find(LC_VERSION), std::string::npos);
  lc::autotune::store(k, "op", "s", "float32", fp, {{"choice", "1"}});
  EXPECT_FALSE(lc::autotune::lookup(lc::autotune::make_key("op", "s", "float32", "cuda:other")).has_value());
  EXPECT_TRUE(lc::autotune::lookup(k).has_value());
}

TEST_F(AutotuneCache, DisabledByEnv) {
  ::setenv("LC_AUTOTUNE", "0", 1);
  lc::autotune::store("a", "b", "float32", lc::DeviceKind::cpu, {{"choice", "z"}});
  EXPECT_FALSE(lc::autotune::lookup("a", "b", "float32", lc::DeviceKind::cpu).has_value());
  EXPECT_FALSE(fs::exists(dir_ / "autotune.json"));
  ::unsetenv("LC_AUTOTUNE");
}

TEST_F(AutotuneCache, CalibrationCachedByFingerprint) {
  const auto n0 = lc::autotune::measurement_count();
  const lc::CostModel m = lc::calibrate(true);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 1);
  for (double g : m.cpu_gflops) EXPECT_GT(g, 0);
  const lc::CostModel m2 = lc::calibrate(false);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 1);
  EXPECT_NEAR(m2.cpu_gflops[0], m.cpu_gflops[0], 1e-6 * m.cpu_gflops[0]);
  EXPECT_TRUE(lc::cost_model().calibrated);
  EXPECT_EQ(m.gpu_calibrated, lc::cuda_available());
  for (int i = 0; i < lc::CostModel::kFamilies; ++i) {
    EXPECT_GE(m.cpu_family_overhead_us[i], 0);
    EXPECT_NEAR(m2.cpu_family_overhead_us[i], m.cpu_family_overhead_us[i],
                1e-6 * (1 + m.cpu_family_overhead_us[i]));
  }
  EXPECT_GT(m.cpu_overhead_us, 0);
  lc::reset_cost_model();
}

TEST_F(AutotuneCache, CalibrationEntryIsVersionedAndKeepsItsPoints) {
  lc::calibrate(true);
  bool found = false;
  for (const auto& e : lc::autotune::entries()) {
    if (e.fields.at("op") != "calibration") continue;
    found = true;
    EXPECT_EQ(e.fields.at("shapes"), "cost-model-v3");
    EXPECT_TRUE(e.fields.count("cpu_points_matmul"));
    EXPECT_TRUE(e.fields.count("cpu_overhead_us_attention"));
  }
  EXPECT_TRUE(found);
  lc::reset_cost_model();
}

TEST_F(AutotuneCache, OldCalibrationEntriesAreNotReused) {
  // A v1 entry (single-size rates) for this very machine must not satisfy a v2 lookup.
  const std::string fp = lc::cpu_fingerprint() + " / " +
                         (lc::cuda_available() ? lc::cuda_fingerprint() : "no-gpu");
  lc::autotune::store(lc::autotune::make_key("calibration", "cost-model-v1", "float32", fp),
                      "calibration", "cost-model-v1", "float32", fp,
                      {{"choice", "cpu"}, {"cpu_gflops_matmul", "0.001"}});
  const auto n0 = lc::autotune::measurement_count();
  const lc::CostModel m = lc::calibrate(false);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 1);  // measured, not loaded
  EXPECT_GT(m.cpu_gflops[0], 0.001);
  lc::reset_cost_model();
}

// The CPU GEMM choice (op "cpu_gemm": blas vs pooled) of matmul2d / linear: measured on the
// first call of a shape inside the window, stored, served from the in-process memo and after a
// reload from the file, re-measured when the entry is invalid, of another library version or
// cleared; never measured for tiny shapes, with policy autotune=false or LC_AUTOTUNE=0.
TEST_F(AutotuneCache, CpuGemmChoiceStoredReloadedInvalidated) {
  const std::int64_t m = 160, k = 150, n = 140;  // 3.4M multiply-adds: inside 2^19..2^31
  if (!lc::autotune::cpu_gemm_tunable(m, k, n))
    GTEST_SKIP() << "CPU GEMM is not tuned here (no BLAS, a single thread, or >= 4 threads: pooled)";
  auto av = randv(m * k, 11), bv = randv(k * n, 12);
  std::vector<float> ov(m * n);
  lc::Tensor a = host(av, {m, k}), b = host(bv, {k, n}), out = host(ov, {m, n});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  auto check = [&] {
    double worst = 0;
    for (std::int64_t i = 0; i < m; i += 7)
      for (std::int64_t j = 0; j < n; ++j) {
        double ref = 0;
        for (std::int64_t t = 0; t < k; ++t) ref += double(av[i * k + t]) * bv[t * n + j];
        worst = std::max(worst, std::fabs(ov[i * n + j] - ref));
      }
    EXPECT_LT(worst, 1e-3);
  };
  auto gemm_entries = [] {
    std::vector<lc::autotune::Entry> r;
    for (auto& e : lc::autotune::entries())
      if (e.fields.at("op") == "cpu_gemm") r.push_back(e);
    return r;
  };
  const std::string shapes =
      "160x150x140 trans_b=0 threads=" + std::to_string(lc::cpu::num_threads());
  const auto n0 = lc::autotune::measurement_count();
  lc::matmul2d_into(a, b, out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 1);
  check();
  auto es = gemm_entries();
  ASSERT_EQ(es.size(), 1u);
  EXPECT_EQ(es[0].fields.at("shapes"), shapes);
  const std::string choice = es[0].fields.at("choice");
  EXPECT_TRUE(choice == "blas" || choice == "pooled") << choice;
  EXPECT_GT(std::stod(es[0].fields.at("blas_us")), 0);
  EXPECT_GT(std::stod(es[0].fields.at("pooled_us")), 0);
  EXPECT_FALSE(es[0].fields.at("pooled_grid").empty());
  // Memo hit, then (after reload) file hit: no new measurement.
  lc::matmul2d_into(a, b, out, p);
  lc::autotune::reload();
  lc::matmul2d_into(a, b, out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 1);
  check();
  // A stored choice is what runs (the memo follows the store): the other path, no measurement.
  const std::string other = choice == "blas" ? "pooled" : "blas";
  lc::autotune::store("cpu_gemm", shapes, "float32", lc::DeviceKind::cpu, {{"choice", other}});
  std::fill(ov.begin(), ov.end(), std::nanf(""));
  lc::matmul2d_into(a, b, out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 1);
  check();
  // An unknown choice is measured again and replaced.
  lc::autotune::store("cpu_gemm", shapes, "float32", lc::DeviceKind::cpu, {{"choice", "bogus"}});
  lc::matmul2d_into(a, b, out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 2);
  es = gemm_entries();
  ASSERT_EQ(es.size(), 1u);
  EXPECT_NE(es[0].fields.at("choice"), "bogus");
  // Entries of another library version are dropped on reload: measured again.
  {
    std::string text = slurp();
    const std::string ver = std::string("\"") + LC_VERSION + "\"";
    for (std::size_t at; (at = text.find(ver)) != std::string::npos;)
      text.replace(at, ver.size(), "\"0.0.1\"");
    std::ofstream(lc::autotune::cache_path(), std::ios::trunc) << text;
  }
  lc::autotune::reload();
  lc::matmul2d_into(a, b, out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 3);
  check();
  // linear ([n, k] weight: trans_b) is its own entry.
  std::vector<float> wv = randv(n * k, 13), lo(m * n);
  lc::Tensor w = host(wv, {n, k}), lout = host(lo, {m, n});
  lc::linear_into(a, w, nullptr, lc::Activation::none, lout, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 4);
  EXPECT_EQ(gemm_entries().size(), 2u);
  // clear() drops the memo too.
  lc::autotune::clear();
  lc::matmul2d_into(a, b, out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 5);
  // Never measured: policy autotune=false, LC_AUTOTUNE=0, tiny shapes.
  std::vector<float> av2 = randv(150 * k, 14), ov2(150 * n);
  lc::Tensor a2 = host(av2, {150, k}), out2 = host(ov2, {150, n});
  lc::ExecutionPolicy off = p;
  off.autotune = false;
  lc::matmul2d_into(a2, b, out2, off);
  ::setenv("LC_AUTOTUNE", "0", 1);
  lc::matmul2d_into(a2, b, out2, p);
  ::unsetenv("LC_AUTOTUNE");
  std::vector<float> t1 = randv(8 * 8, 15), t2(8 * 8);
  lc::Tensor tiny = host(t1, {8, 8}), tiny_out = host(t2, {8, 8});
  lc::matmul2d_into(tiny, tiny, tiny_out, p);
  EXPECT_EQ(lc::autotune::measurement_count(), n0 + 5);
  EXPECT_EQ(gemm_entries().size(), 1u);
}

// ---- sessions (CPU) ------------------------------------------------------------------------

TEST(Session, MatmulCpuLifecycleAndShapeChecks) {
  auto av = randv(6 * 5, 1), bv = randv(5 * 4, 2);
  std::vector<float> ov(24, 0.0f), bad(30, 0.0f);
  lc::Tensor a = host(av, {6, 5}), b = host(bv, {5, 4}), out = host(ov, {6, 4});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  p.upload = lc::UploadMode::once;
  const std::size_t base = lc::session_live_bytes();
  {
    lc::Matmul2dSession s(a, b, p);
    EXPECT_EQ(s.device(), lc::DeviceKind::cpu);
    EXPECT_EQ(s.resident_bytes(), (30u + 20u + 24u) * 4u);
    EXPECT_EQ(lc::session_live_bytes(), base + s.resident_bytes());
    s.start_into({&a, &b}, out);
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 4; ++j) {
        double ref = 0;
        for (int k = 0; k < 5; ++k) ref += double(av[i * 5 + k]) * bv[k * 4 + j];
        EXPECT_NEAR(ov[i * 4 + j], ref, 1e-4);
      }
    s.run_batch_sync_no_download_into({&a, &b}, out, 7);
    EXPECT_EQ(s.stats().launches, 8u);
    EXPECT_EQ(s.stats().downloads, 1u);
    lc::Tensor wrong = host(bad, {5, 6});
    EXPECT_THROW(s.run_into({&wrong, &b}, out), lc::ValueError);
    EXPECT_THROW(s.run_into({&a}, out), lc::ValueError);
    lc::Tensor bad_out = host(bad, {5, 6});
    EXPECT_THROW(s.download_into(bad_out), lc::ValueError);
    s.close();
    EXPECT_TRUE(s.closed());
    EXPECT_EQ(lc::session_live_bytes(), base);
    EXPECT_THROW(s.sync(), lc::ValueError);
  }
  EXPECT_EQ(lc::session_live_bytes(), base);
}

TEST(Session, DestructionFreesMemory) {
  auto av = randv(16, 3);
  lc::Tensor a = host(av, {4, 4});
  const std::size_t base = lc::session_live_bytes();
  {
    lc::Attention2dSession s(a, a, a, true, 0.0f);
    EXPECT_GT(lc::session_live_bytes(), base);
  }
  EXPECT_EQ(lc::session_live_bytes(), base);
}

TEST(Session, ConvAttentionMatchesUnfusedOps) {
  auto xv = randv(1 * 3 * 6 * 6, 4), wv = randv(4 * 3 * 3 * 3, 5);
  lc::Tensor x = host(xv, {1, 3, 6, 6}), w = host(wv, {4, 3, 3, 3});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  lc::ConvAttentionParams prm;
  prm.seq_len = 12;
  prm.head_dim = 12;  // 4*6*6 = 144: an exact view
  prm.pad_h = prm.pad_w = 1;
  lc::Tensor fused = lc::conv_attention_nchw(x, w, nullptr, prm, p);
  lc::Tensor conv = lc::conv2d_nchw(x, w, nullptr, 1, 1, 1, 1, lc::Activation::relu, p);
  lc::Tensor s = conv.view({12, 12}, {12, 1}, 0);
  lc::Tensor ref = lc::attention2d(s, s, s, false, p);
  for (int i = 0; i < 144; ++i)
    EXPECT_NEAR(fused.data_as<float>()[i], ref.data_as<float>()[i], 1e-5);
  std::vector<float> ov(144);
  lc::Tensor out = host(ov, {12, 12});
  lc::ConvAttentionSession sess(x, w, nullptr, prm, p);
  sess.start_into({&x}, out);
  for (int i = 0; i < 144; ++i) EXPECT_NEAR(ov[i], ref.data_as<float>()[i], 1e-5);
}

TEST(Session, GpuMatmulGraphReplay) {
  if (!lc::cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  auto av = randv(256 * 128, 6), bv = randv(128 * 64, 7);
  std::vector<float> ov(256 * 64);
  lc::Tensor a = host(av, {256, 128}), b = host(bv, {128, 64}), out = host(ov, {256, 64});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  p.upload = lc::UploadMode::once;
  lc::Matmul2dSession s(a, b, p, /*use_graph=*/true);
  s.start_into({&a, &b}, out);
  std::fill(ov.begin(), ov.end(), 0.0f);
  s.run_batch_sync_no_download_into({&a, &b}, out, 5);
  s.download_into(out);
  EXPECT_EQ(s.stats().graph_replays, 5u);
  double ref = 0;
  for (int k = 0; k < 128; ++k) ref += double(av[k]) * bv[k * 64];
  EXPECT_NEAR(ov[0], ref, 1e-3);
}

}  // namespace

// The CUDA convolution paths index with 32-bit ints (cuDNN descriptors): sizes that do not fit
// run on the CPU instead of failing inside cuDNN (device fuzz, 2026-12-01: pad_h = 2^30).
TEST(Placement, CudaConvSupportCoversThirtyTwoBitSizes) {
  using lc::cuda_supports_conv;
  EXPECT_TRUE(cuda_supports_conv(8, 64, 56, 56, 64, 3, 3, 56, 56, 1, 1));
  // pad_h = 2^30 on a 1x1 input: padded height and output height 2^31 + 1.
  const std::int64_t p = std::int64_t{1} << 30;
  EXPECT_FALSE(cuda_supports_conv(1, 1, 1, 1, 1, 1, 1, lc::conv_out_size(1, 1, 1, p), 1, p, 0));
  EXPECT_FALSE(cuda_supports_conv(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, p));
  // An output of 2^31 elements (each dimension small enough) does not fit either.
  EXPECT_FALSE(cuda_supports_conv(2048, 1024, 1, 1, 1024, 1, 1, 1024, 1, 0, 0));
  EXPECT_TRUE(cuda_supports_conv(2047, 1024, 1, 1, 1, 1, 1, 1, 1, 0, 0));
}
