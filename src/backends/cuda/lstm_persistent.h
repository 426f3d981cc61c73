// The persistent LSTM kernel's host interface (lstm_persistent.cu; lstm.cpp calls it). Kept out
// of kernels.h so that the many kernels including that header do not depend on it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "lightning_core/dtype.h"

namespace lc::cuda {

// lstm_persistent.cu: all T steps of the recurrence in one cooperative launch (each block keeps
// its units' w_hh slice and cell state in shared memory; a grid-wide counter orders the steps).
// xg is the input projection x w_ih^T [T, B, 4H] in the storage dtype; counter one zeroed u64.
struct LstmPersistentArgs {
  const void* xg = nullptr;
  const void* w_hh = nullptr;
  const void* b_ih = nullptr;
  const void* b_hh = nullptr;
  const void* h0 = nullptr;
  const void* c0 = nullptr;
  void* y = nullptr;
  void* h_n = nullptr;
  void* c_n = nullptr;
  unsigned long long* counter = nullptr;
  std::int64_t steps = 0, rows = 0, hidden = 0;
  DType dtype = DType::f32;
};
struct LstmPersistentPlan {
  int units = 0, blocks = 0, row_tiles = 0, items = 0, ksplit = 0, kchunk = 0, kpitch = 0;
  int rows_padded = 0;
  std::size_t smem_bytes = 0;
};
// False when the shape or the device does not fit (the caller runs the per-step path); sets the
// kernel's shared-memory opt-in on success. Enqueues nothing.
bool plan_lstm_persistent(std::int64_t rows, std::int64_t hidden, DType dtype, int device,
                          int sm_count, std::size_t smem_optin, LstmPersistentPlan& plan);
// False (nothing enqueued) when the cooperative launch is refused as too large right now;
// other launch errors throw.
bool launch_lstm_persistent(const LstmPersistentArgs& a, const LstmPersistentPlan& plan,
                            cudaStream_t s);

}  // namespace lc::cuda
