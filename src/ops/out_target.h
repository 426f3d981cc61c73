// OutTarget: where an op's kernel writes one of several outputs that the op handles itself
// (lstm's y / h_n / c_n, attention_backward's dq / dk / dv), beside OpRunner's single result.
// The caller's tensor when the kernel can write it directly (on the runner's device and GPU,
// contiguous, sharing no memory with an input); else device scratch, copied into the caller's
// tensor by finish() once the kernel has run (so an output aliasing an input still comes out
// right, and a refused call never half-writes it). Empty outputs get no pointer.
#pragma once

#include <initializer_list>

#include "lightning_core/tensor.h"
#include "runtime/op_runner.h"

namespace lc {

struct OutTarget {
  Tensor* t;
  Tensor scratch;
  void* ptr = nullptr;

  OutTarget(OpRunner& r, Tensor& out, std::initializer_list<const Tensor*> inputs) : t(&out) {
    if (out.numel() == 0) return;
    bool direct = out.device() == r.device() &&
                  (r.device() == DeviceKind::cpu || out.device_index() == r.device_index()) &&
                  out.is_contiguous();
    for (const Tensor* in : inputs)
      if (in && in->may_overlap(out)) direct = false;
    if (direct) {
      ptr = out.data();
    } else {
      scratch = Tensor::empty(out.shape(), out.dtype(), r.device());
      ptr = scratch.data();
    }
  }
  void finish() {
    if (scratch.defined() && scratch.numel() > 0) scratch.copy_to(*t);
  }
};

}  // namespace lc
