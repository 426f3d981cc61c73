// NCCL through the collective seam (src/backends/collective.h, src/backends/cuda/nccl.h).
//
// Loading NCCL and making a unique id touch no GPU, so the first tests run on the driverless
// build machine too (skipped where NCCL is not installed); the communicator tests need a device
// (LC_REQUIRE_CUDA) and run at world size 1, which one GPU can do.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/nccl.h"
#include "cuda_test.h"
#include "lightning_core/errors.h"
#include "runtime/distributed.h"

namespace {

namespace nccl = lc::cuda::nccl;

bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}

TEST(CudaNccl, LoadedOnlyOnFirstUseAndMakesIds) {
  const lc::CollectiveLibraryInfo before = nccl::library_info(/*load=*/false);
  EXPECT_EQ(before.name, "nccl");
  if (!before.loaded) EXPECT_FALSE(mapped("libnccl")) << "mapped before its first use";
  const lc::CollectiveLibraryInfo after = nccl::library_info(/*load=*/true);
  if (!after.loaded) {
    EXPECT_NE(after.error.find("libnccl.so.2"), std::string::npos) << after.error;
    GTEST_SKIP() << "NCCL is not installed here: " << after.error;
  }
  EXPECT_TRUE(mapped("libnccl"));
  EXPECT_NE(after.path.find("libnccl"), std::string::npos) << after.path;
  EXPECT_GE(after.version, 21000);
  // The backend seam answers the same.
  const lc::CollectiveLibraryInfo seam =
      lc::get_backend(lc::DeviceKind::cuda).collective_library_info(false);
  EXPECT_TRUE(seam.loaded);
  EXPECT_EQ(seam.path, after.path);

  const std::string a = nccl::unique_id(), b = nccl::unique_id();
  EXPECT_EQ(a.size(), nccl::kUniqueIdBytes);
  EXPECT_EQ(b.size(), nccl::kUniqueIdBytes);
  EXPECT_NE(a, b);
}

TEST(CudaNccl, CpuBackendHasNoCollectives) {
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  EXPECT_THROW((void)cpu.collective_unique_id(), lc::BackendError);
  EXPECT_THROW((void)cpu.collective_init(std::string(128, '\0'), 1, 0, 0), lc::BackendError);
  EXPECT_EQ(cpu.collective_library_info(true).name, "");
}

TEST(CudaNccl, BadIdIsAValueError) {
  if (!nccl::library_info(true).loaded) GTEST_SKIP() << "no NCCL";
  EXPECT_THROW((void)nccl::init_rank("short", 1, 0, 0), lc::ValueError);
}

// World size 1 on cuda:0: every collective is the identity, each dtype size class.
TEST(CudaNccl, WorldSize1CollectivesOnDevice) {
  LC_REQUIRE_CUDA();
  if (!nccl::library_info(true).loaded) GTEST_FAIL() << nccl::library_info(false).error;
  lc::Backend& be = lc::test::gpu();
  lc::DeviceScope scope(lc::DeviceKind::cuda, 0);
  std::shared_ptr<lc::Communicator> comm = be.collective_init(be.collective_unique_id(), 1, 0, 0);
  ASSERT_EQ(comm->size(), 1);
  ASSERT_EQ(comm->rank(), 0);
  ASSERT_EQ(comm->device(), 0);
  EXPECT_EQ(comm->async_error(), "");

  for (std::int64_t n : {std::int64_t{1}, std::int64_t{7919}, std::int64_t{(1 << 22) + 3}}) {
    std::vector<float> host(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) host[static_cast<std::size_t>(i)] = std::sin(0.1f * i);
    const std::size_t bytes = host.size() * sizeof(float);
    void* in = be.alloc(bytes);
    void* out = be.alloc(bytes);
    std::vector<float> nan(host.size(), std::nanf(""));
    be.copy_from_host(in, host.data(), bytes);
    for (auto op : {lc::ReduceOp::sum, lc::ReduceOp::avg, lc::ReduceOp::max, lc::ReduceOp::min}) {
      be.copy_from_host(out, nan.data(), bytes);
      comm->all_reduce(in, out, n, lc::DType::f32, op);
      lc::CollectiveWork w(lc::DeviceKind::cuda, comm, "all_reduce");
      w.wait(60);
      EXPECT_TRUE(w.is_completed());
      std::vector<float> got(host.size());
      be.copy_to_host(got.data(), out, bytes);
      be.synchronize();
      ASSERT_EQ(got, host) << "n=" << n;
    }
    be.copy_from_host(out, nan.data(), bytes);
    comm->all_gather(in, out, n, lc::DType::f32);
    comm->broadcast(out, out, n, lc::DType::f32, 0);
    lc::CollectiveWork(lc::DeviceKind::cuda, comm, "all_gather").wait(60);
    std::vector<float> got(host.size());
    be.copy_to_host(got.data(), out, bytes);
    be.synchronize();
    EXPECT_EQ(got, host);
    be.free(in);
    be.free(out);
  }
}

TEST(CudaNccl, AbortedCommunicatorRefusesWork) {
  LC_REQUIRE_CUDA();
  if (!nccl::library_info(true).loaded) GTEST_FAIL() << nccl::library_info(false).error;
  lc::Backend& be = lc::test::gpu();
  lc::DeviceScope scope(lc::DeviceKind::cuda, 0);
  std::shared_ptr<lc::Communicator> comm = be.collective_init(be.collective_unique_id(), 1, 0, 0);
  void* buf = be.alloc(64);
  comm->abort();
  comm->abort();  // idempotent
  EXPECT_TRUE(comm->aborted());
  EXPECT_NE(comm->async_error(), "");
  try {
    comm->all_reduce(buf, buf, 16, lc::DType::f32, lc::ReduceOp::sum);
    FAIL() << "an aborted communicator ran a collective";
  } catch (const lc::BackendError& e) {
    EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos) << e.what();
  }
  be.free(buf);
}

}  // namespace
