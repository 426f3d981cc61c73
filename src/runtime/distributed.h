// Waiting for collectives with a timeout (lc.distributed's work handles).
//
// A collective (collective.h) is enqueued on a stream and returns; CollectiveWork records an
// event right after it and waits for that event on the host, polling the communicator's
// asynchronous error in between. A peer that died or raised therefore ends the wait with
// lc::BackendError within `timeout_s` instead of a hang: on an error or at the timeout the
// communicator is aborted (ncclCommAbort), which also stops the kernels still waiting for the
// peer. The wait spins (yielding) for the first 5 ms, as cudaStreamSynchronize would, and then
// sleeps in growing steps up to 1 ms between polls.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backends/backend.h"

namespace lc {

class CollectiveWork {
 public:
  // Records the event on the current stream of comm's device (kind's backend). `op` names the
  // collective in messages.
  CollectiveWork(DeviceKind kind, std::shared_ptr<Communicator> comm, const char* op);
  ~CollectiveWork();
  CollectiveWork(const CollectiveWork&) = delete;
  CollectiveWork& operator=(const CollectiveWork&) = delete;

  // True once the work finished. Throws lc::BackendError (and aborts the communicator) when
  // the communicator reports an asynchronous error.
  bool is_completed();
  // Blocks until the work finished; timeout_s <= 0 waits without a limit (still polling
  // errors). lc::BackendError naming the rank, device, op and timeout on error or timeout.
  void wait(double timeout_s);

 private:
  [[noreturn]] void fail(const std::string& why);
  bool query();  // the event alone (no error check)
  std::string where() const;  // "cuda:0"

  Backend& be_;
  DeviceKind kind_;
  std::shared_ptr<Communicator> comm_;
  const char* op_;
  void* event_ = nullptr;
  bool done_ = false;
};

// The wait loop of CollectiveWork::wait, on its own so tests can drive it with a fake
// communicator: polls done() until it returns true; between polls checks comm's aborted() and
// async_error(), and the timeout (timeout_s <= 0: none). On an error or at the timeout it
// aborts comm and throws lc::BackendError "[op] rank R of N (where): why. ...".
void wait_collective(const std::function<bool()>& done, Communicator& comm, const char* op,
                     const std::string& where, double timeout_s);
// Aborts comm and throws that lc::BackendError.
[[noreturn]] void collective_failed(Communicator& comm, const char* op, const std::string& where,
                                    const std::string& why);

}  // namespace lc
