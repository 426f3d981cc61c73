// The CUDA backend's devices and streams (context.h) and the stream-aware caching allocator
// (allocator.h), through the backend seam. Skipped without a GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/context.h"
#include "cuda_test.h"
#include "lightning_core/errors.h"

namespace {

using lc::test::gpu;

TEST(CudaStreams, CurrentDeviceAndStreamDefaults) {
  LC_REQUIRE_CUDA();
  lc::Backend& be = gpu();
  EXPECT_GE(be.device_count(), 1);
  EXPECT_EQ(be.current_device(), 0);
  void* def = be.current_stream();
  ASSERT_NE(def, nullptr);
  EXPECT_NE(be.native_stream(def), 0u);
  EXPECT_THROW(be.set_current_device(be.device_count()), lc::ValueError);
  EXPECT_EQ(be.current_device(), 0);  // unchanged by the refused switch

  void* s = be.stream_create(0);
  ASSERT_NE(s, nullptr);
  be.set_current_stream(s);
  EXPECT_EQ(be.current_stream(), s);
  be.set_current_stream(nullptr);  // back to the default stream
  EXPECT_EQ(be.current_stream(), def);
  be.stream_destroy(s);
}

TEST(CudaStreams, AllocatorReusesBlocksOnlyOnTheirStream) {
  LC_REQUIRE_CUDA();
  lc::Backend& be = gpu();
  const std::size_t bytes = (std::size_t{5} << 20) + 123;  // a size class of its own
  void* s1 = be.stream_create(0);
  void* s2 = be.stream_create(0);
  be.set_current_stream(s1);
  void* p = be.alloc(bytes);
  be.free(p);
  be.set_current_stream(s2);
  void* q = be.alloc(bytes);
  EXPECT_NE(q, p) << "a block freed on s1 was handed to s2 without synchronisation";
  be.set_current_stream(s1);
  void* r = be.alloc(bytes);
  EXPECT_EQ(r, p) << "s1 should get its own block back from the cache";
  // record_stream: a block of s1 also used on s2 is reused only after s2's work so far.
  be.record_stream(r, s2);
  be.free(r);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the event on s2 has completed
  void* again = be.alloc(bytes);  // the pending block is free now (its event completed)
  EXPECT_EQ(again, r);
  be.free(again);
  be.set_current_stream(s2);
  be.free(q);
  be.set_current_stream(nullptr);
  be.stream_destroy(s1);
  be.stream_destroy(s2);
}

TEST(CudaStreams, EventsOrderAndTime) {
  LC_REQUIRE_CUDA();
  lc::Backend& be = gpu();
  void* a = be.event_create(true);
  void* b = be.event_create(true);
  EXPECT_TRUE(be.event_query(a));  // never recorded
  EXPECT_THROW(be.event_elapsed_ms(a, b), lc::ValueError);
  be.event_record(a, nullptr);
  std::vector<float> host(1 << 20, 1.0f);
  void* d = be.alloc(host.size() * sizeof(float));
  be.copy_from_host(d, host.data(), host.size() * sizeof(float));
  be.event_record(b, nullptr);
  be.event_synchronize(b);
  EXPECT_TRUE(be.event_query(b));
  EXPECT_GE(be.event_elapsed_ms(a, b), 0.0);
  void* s = be.stream_create(0);
  be.stream_wait_event(s, b);
  be.stream_synchronize(s);
  EXPECT_TRUE(be.stream_query(s));
  be.synchronize();
  be.free(d);
  be.stream_destroy(s);
  be.event_destroy(a);
  be.event_destroy(b);
}

}  // namespace
