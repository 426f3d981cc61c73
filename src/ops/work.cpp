// Work formulas (work.h): one per op family; estimate_work finds the op in the registry.
#include "ops/work.h"

#include <algorithm>
#include <cmath>

#include "lightning_core/errors.h"

namespace lc {

WorkEstimate estimate_work(const std::string& op, const std::vector<std::vector<std::int64_t>>& s,
                           int sh, int sw, int ph, int pw) {
  const OpDef& d = get_op(op, "explain_placement");
  OpArgs a = OpArgs::of_shapes(s);
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_h = ph;
  a.pad_w = pw;
  return d.estimate(a);
}

}  // namespace lc
