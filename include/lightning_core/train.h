// Training compositions built from the op API (src/pipelines/attention_train.cpp).
#pragma once

#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"

namespace lc {

// One SGD step of attention on an MSE loss, the original's attention training surface:
//   out  = attention(q, k, v, causal, mask, scale)              (with its float32 lse)
//   loss = mean((out - target)^2)                                (summed in float64 on the host)
//   dout = 2 (out - target) / out.numel()
//   dq, dk, dv = attention_backward(dout, q, k, v, out, lse, causal, mask, scale)
//   q -= lr dq,  k -= lr dk,  v -= lr dv                         (in place)
// q, k, v, mask, causal and scale as attention() (ops.h: [B, H, Sq, D] / [B, Hk, Sk, D] /
// [B, Hk, Sk, Dv] or the 2-D / 3-D forms, grouped-query heads); q, k and v must be contiguous,
// writable and must not share memory (each is updated in place). target: out's shape and q's
// dtype (any strides, any device). lr: finite. Everything is checked before anything is written
// (ValueError / TypeError naming attention_train_step). The ops run where `p` places them (the
// backward on CUDA or the CPU, both implement it).
struct AttentionTrainResult {
  Tensor out;         // the forward's output before the update (where `out` of bufs lives)
  double loss = 0.0;  // 0 for an empty out
};

// Work tensors of one step: contiguous, on one device, of q's dtype except lse (float32).
// Empty ones are allocated by the step on q's device; sessions pass their resident buffers so
// repeated steps allocate nothing. out [.., Sq, Dv], lse [.., Sq], diff out's shape,
// dq / dk / dv q's / k's / v's shapes.
struct AttentionTrainBuffers {
  Tensor out, lse, diff, dq, dk, dv;
};

AttentionTrainResult attention_train_step(Tensor& q, Tensor& k, Tensor& v, const Tensor& target,
                                          double lr, bool causal = false,
                                          const Tensor* mask = nullptr, float scale = 0.0f,
                                          const ExecutionPolicy& p = current_policy());
// The same with the caller's work tensors (missing ones allocated into `bufs`); `op` names the
// caller in error messages (a session's method).
AttentionTrainResult attention_train_step_with(Tensor& q, Tensor& k, Tensor& v,
                                               const Tensor& target, double lr, bool causal,
                                               const Tensor* mask, float scale,
                                               const ExecutionPolicy& p,
                                               AttentionTrainBuffers& bufs,
                                               const char* op = "attention_train_step");

}  // namespace lc
