// Collectives across devices and processes (lc.distributed): the backend-neutral interface.
//
// A Communicator is one member (rank) of a group of `size()` ranks, each driving one device of
// one backend; the CUDA backend implements it with NCCL (src/backends/cuda/nccl.h), loaded at
// run time. Every collective is *enqueued* on the calling thread's current stream of the
// communicator's device (the caller makes that device current: DeviceScope) and returns at once;
// completion is observed through an event recorded after it (src/runtime/distributed.h waits for
// it with a timeout, polling async_error()). Buffers are contiguous, in the backend's memory,
// `count` elements of `dtype`; no NCCL type leaks into this header.
#pragma once

#include <cstdint>
#include <string>

#include "lightning_core/dtype.h"

namespace lc {

enum class ReduceOp : std::uint8_t { sum, avg, max, min };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // The device (of the backend that made it) this rank drives.
  virtual int device() const = 0;

  // recv[i] = op over ranks of send[i]; send == recv is in place.
  virtual void all_reduce(const void* send, void* recv, std::int64_t count, DType dtype,
                          ReduceOp op) = 0;
  // recv = concatenation over ranks (rank order) of each rank's `count` elements.
  virtual void all_gather(const void* send, void* recv, std::int64_t count, DType dtype) = 0;
  // send holds size() blocks of `count` elements; recv = op over ranks of block rank().
  virtual void reduce_scatter(const void* send, void* recv, std::int64_t count, DType dtype,
                              ReduceOp op) = 0;
  // recv = root's send on every rank (send is read on the root only).
  virtual void broadcast(const void* send, void* recv, std::int64_t count, DType dtype,
                         int root) = 0;
  // Point to point: a send on rank a to peer b pairs with a recv on b from peer a.
  virtual void send(const void* buf, std::int64_t count, DType dtype, int peer) = 0;
  virtual void recv(void* buf, std::int64_t count, DType dtype, int peer) = 0;

  // The communicator's asynchronous error (a failed peer, a network error), or "" while healthy.
  // Cheap; the wait loop polls it.
  virtual std::string async_error() = 0;
  // Stops every operation in flight and frees the communicator's resources: the way out of a
  // hang. Every later call throws lc::BackendError. Idempotent, never throws.
  virtual void abort() noexcept = 0;
  virtual bool aborted() const = 0;
};

// The collective library of a backend (NCCL for CUDA): whether it is loaded, from where, its
// version (NCCL: major * 10000 + minor * 100 + patch), or why it could not be loaded.
struct CollectiveLibraryInfo {
  std::string name;   // "nccl"; "" when the backend has none
  bool loaded = false;
  std::string path;
  std::string error;
  int version = 0;
};

}  // namespace lc
