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
  collective_failed(*comm_, op_, where(), why);
}

std::string CollectiveWork::where() const {
  return std::string(to_string(kind_)) + ":" + std::to_string(comm_->device());
}

bool CollectiveWork::query() {
  if (!done_) {
    DeviceScope scope(kind_, comm_->device());
    done_ = be_.event_query(event_);
  }
  return done_;
}

bool CollectiveWork::is_completed() {
  if (query()) return true;
  if (comm_->aborted()) fail("the communicator was aborted (an earlier collective failed)");
  const std::string err = comm_->async_error();
  if (!err.empty()) fail("the collective library reported an error: " + err);
  return false;
}

void CollectiveWork::wait(double timeout_s) {
  wait_collective([this] { return query(); }, *comm_, op_, where(), timeout_s);
}

void collective_failed(Communicator& comm, const char* op, const std::string& where,
                       const std::string& why) {
  comm.abort();
  throw_backend(op, "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) +
                        " (" + where + "): " + why +
                        ". The communicator was aborted; call lc.distributed.destroy() and "
                        "init() again (usually: end the job)");
}

void wait_collective(const std::function<bool()>& done, Communicator& comm, const char* op,
                     const std::string& where, double timeout_s) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto nap = std::chrono::microseconds(50);
  for (;;) {
    if (done()) return;
    if (comm.aborted())
      collective_failed(comm, op, where, "the communicator was aborted (an earlier collective failed)");
    const std::string err = comm.async_error();
    if (!err.empty())
      collective_failed(comm, op, where, "the collective library reported an error: " + err);
    const double waited = std::chrono::duration<double>(clock::now() - start).count();
    if (timeout_s > 0 && waited > timeout_s)
      collective_failed(comm, op, where,
                        "timed out after " + seconds(timeout_s) +
                            " s waiting for the collective (a peer rank died, hangs, or called a "
                            "different collective; the timeout is init(timeout=...))");
    if (waited < 5e-3) {  // spin (yielding) like cudaStreamSynchronize: no added latency
      std::this_thread::yield();
      continue;
    }
    std::this_thread::sleep_for(nap);  // long waits: poll at most every millisecond
    if (nap < std::chrono::microseconds(1000)) nap *= 2;
  }
}

}  // namespace lc
