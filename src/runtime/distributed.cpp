// CollectiveWork (distributed.h).
#include "runtime/distributed.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "lightning_core/errors.h"

namespace lc {

namespace {
std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}
}  // namespace

CollectiveWork::CollectiveWork(DeviceKind kind, std::shared_ptr<Communicator> comm, const char* op)
    : be_(get_backend(kind)), kind_(kind), comm_(std::move(comm)), op_(op) {
  DeviceScope scope(kind_, comm_->device());
  event_ = be_.event_create(false);
  try {
    be_.event_record(event_, nullptr);
  } catch (...) {
    be_.event_destroy(event_);
    throw;
  }
}

CollectiveWork::~CollectiveWork() {
  if (!event_) return;
  try {
    DeviceScope scope(kind_, comm_->device());
    be_.event_destroy(event_);
  } catch (...) {
  }
}

void CollectiveWork::fail(const std::string& why) {
  comm_->abort();
  throw_backend(op_, "rank " + std::to_string(comm_->rank()) + " of " +
                         std::to_string(comm_->size()) + " (" + to_string(kind_) + ":" +
                         std::to_string(comm_->device()) + "): " + why +
                         ". The communicator was aborted; call lc.distributed.destroy() and "
                         "init() again (usually: end the job)");
}

void CollectiveWork::check_error() {
  if (comm_->aborted()) fail("the communicator was aborted (an earlier collective failed)");
  const std::string err = comm_->async_error();
  if (!err.empty()) fail("the collective library reported an error: " + err);
}

bool CollectiveWork::is_completed() {
  if (done_) return true;
  {
    DeviceScope scope(kind_, comm_->device());
    done_ = be_.event_query(event_);
  }
  if (!done_) check_error();
  return done_;
}

void CollectiveWork::wait(double timeout_s) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto nap = std::chrono::microseconds(50);
  for (;;) {
    if (is_completed()) return;
    const double waited = std::chrono::duration<double>(clock::now() - start).count();
    if (timeout_s > 0 && waited > timeout_s)
      fail(std::string("timed out after ") + seconds(timeout_s) +
           " s waiting for the collective (a peer rank died, hangs, or called a different "
           "collective; the timeout is init(timeout=...))");
    if (waited < 5e-3) {  // spin (yielding) like cudaStreamSynchronize: no added latency
      std::this_thread::yield();
      continue;
    }
    std::this_thread::sleep_for(nap);  // long waits: poll at most every millisecond
    if (nap < std::chrono::microseconds(1000)) nap *= 2;
  }
}

}  // namespace lc
