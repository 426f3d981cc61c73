// The wait loop of lc.distributed's collectives (src/runtime/distributed.h) with a fake
// communicator: completion, the timeout and an asynchronous error each end it, and the last two
// abort the communicator and name the rank, the device, the op and the cause. No GPU needed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>

#include "backends/collective.h"
#include "lightning_core/errors.h"
#include "runtime/distributed.h"

namespace {

class FakeComm final : public lc::Communicator {
 public:
  int rank() const override { return 1; }
  int size() const override { return 4; }
  int device() const override { return 2; }
  void all_reduce(const void*, void*, std::int64_t, lc::DType, lc::ReduceOp) override {}
  void all_gather(const void*, void*, std::int64_t, lc::DType) override {}
  void reduce_scatter(const void*, void*, std::int64_t, lc::DType, lc::ReduceOp) override {}
  void broadcast(const void*, void*, std::int64_t, lc::DType, int) override {}
  void send(const void*, std::int64_t, lc::DType, int) override {}
  void recv(void*, std::int64_t, lc::DType, int) override {}
  std::string async_error() override {
    ++error_polls;
    return error_after >= 0 && error_polls > error_after ? "remote process exited" : "";
  }
  void abort() noexcept override { ++aborts; }
  bool aborted() const override { return aborts > 0; }

  int error_after = -1;  // async_error() reports an error from this poll on (-1: never)
  int error_polls = 0;
  int aborts = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

TEST(DistributedWait, ReturnsWhenDoneWithoutAborting) {
  FakeComm comm;
  int polls = 0;
  lc::wait_collective([&] { return ++polls >= 50; }, comm, "all_reduce", "cuda:2", 10.0);
  EXPECT_EQ(polls, 50);
  EXPECT_EQ(comm.aborts, 0);
  EXPECT_GE(comm.error_polls, 49);  // the error is polled between the completion checks
}

TEST(DistributedWait, TimeoutAbortsAndNamesRankDeviceOpAndTimeout) {
  FakeComm comm;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    lc::wait_collective([] { return false; }, comm, "all_gather", "cuda:2", 0.25);
    FAIL() << "a wait that never completes returned";
  } catch (const lc::BackendError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("[all_gather]"), std::string::npos) << m;
    EXPECT_NE(m.find("rank 1 of 4 (cuda:2)"), std::string::npos) << m;
    EXPECT_NE(m.find("timed out after 0.25 s"), std::string::npos) << m;
    EXPECT_NE(m.find("aborted"), std::string::npos) << m;
  }
  const double took = seconds_since(t0);
  EXPECT_GE(took, 0.25);
  EXPECT_LT(took, 3.0);  // polls at least every millisecond: no long overshoot
  EXPECT_EQ(comm.aborts, 1);
}

TEST(DistributedWait, AsyncErrorEndsTheWaitAtOnce) {
  FakeComm comm;
  comm.error_after = 3;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    lc::wait_collective([] { return false; }, comm, "broadcast", "cuda:2", 60.0);
    FAIL() << "an asynchronous error was ignored";
  } catch (const lc::BackendError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("[broadcast] rank 1 of 4 (cuda:2)"), std::string::npos) << m;
    EXPECT_NE(m.find("remote process exited"), std::string::npos) << m;
  }
  EXPECT_LT(seconds_since(t0), 5.0);
  EXPECT_EQ(comm.aborts, 1);
}

TEST(DistributedWait, AbortedCommunicatorFailsAndNoTimeoutMeansNone) {
  FakeComm comm;
  comm.abort();
  EXPECT_THROW(lc::wait_collective([] { return false; }, comm, "recv", "cuda:2", 0.0),
               lc::BackendError);
  // timeout_s <= 0 waits without a limit: here until done() says so.
  FakeComm ok;
  int polls = 0;
  lc::wait_collective([&] { return ++polls > 300; }, ok, "send", "cuda:2", 0.0);
  EXPECT_EQ(ok.aborts, 0);
}

}  // namespace
