// The view nodes of a graph: reshape, permute, transpose, slice, select and contiguous (the
// shape methods of lc.Tensor, which the tracer records), and expand (size-1 dimensions
// broadcast with stride 0, torch's Tensor.expand; the conv -> attention pipeline's cyclic
// arrangement uses it). A view is metadata: its result aliases its producer's memory with
// other shape, strides and offset, on both backends. lower_views (after fusion, before
// placement) composes every chain of views onto its root tensor (an
// intermediate, a graph input or a constant) and removes the view steps; a step stays only where
// the layout needs a copy: a reshape that no strides can express over the root's layout (a
// permuted tensor flattened, torch's "view is not possible" case), or contiguous() of a strided
// view. The planner keeps a root alive while any view of it is read (planner.cpp), and the
// executor builds each view from its root per plan, or per call for graph inputs
// (executor.cpp).
#include <algorithm>

#include "graph/graph_internal.h"
#include "lightning_core/errors.h"
#include "ops/checks.h"

namespace lc::graph {

namespace {

OpResult infer_none(const OpDef& d, const OpArgs&) {
  // resolve() infers view shapes with infer_view (the attributes decide); never called.
  throw_value(d.name, "internal: view shapes come from infer_view");
}
// Only the copies (a reshape or contiguous() that cannot alias) remain steps: one read and one
// write per element.
WorkEstimate work_view(const OpArgs& a) {
  WorkEstimate w;
  w.family = OpFamily::elementwise;
  w.flops = a.has(0) ? a[0].numel() : 0;
  return w;
}

// Every storage dtype: a view moves no values (masks and ids are sliced too).
constexpr DTypeSet kAnyDType = kFloatAll | kIndexDTypes;

std::string dims_str(const std::vector<std::int64_t>& d) {
  std::string r = "(";
  for (std::size_t i = 0; i < d.size(); ++i) r += (i ? ", " : "") + std::to_string(d[i]);
  return r + (d.size() == 1 ? ",)" : ")");
}

std::int64_t wrap_dim(std::int64_t d, std::size_t ndim, const char* what) {
  const auto n = static_cast<std::int64_t>(ndim);
  if (d < -n || d >= n)
    throw_value("graph", std::string(what) + " " + std::to_string(d) + " is out of range for a " +
                             std::to_string(n) + "-D tensor (valid: " + std::to_string(-n) +
                             " .. " + std::to_string(n - 1) + ")");
  return d < 0 ? d + n : d;
}

// Python's slice.indices(n) for a nonzero step (start / stop StepAttrs::kNone: None): the first
// index and the length. A negative step walks backwards from start (None: n - 1) down to just
// after stop (None: past index 0).
std::pair<std::int64_t, std::int64_t> slice_range(std::int64_t start, std::int64_t stop,
                                                  std::int64_t step, std::int64_t n) {
  constexpr std::int64_t none = StepAttrs::kNone;
  if (step > 0) {
    auto clamp = [&](std::int64_t v) {
      if (v < 0) v += n;
      return std::clamp<std::int64_t>(v, 0, n);
    };
    const std::int64_t b = start == none ? 0 : clamp(start);
    const std::int64_t e = stop == none ? n : clamp(stop);
    return {b, e > b ? (e - b + step - 1) / step : 0};
  }
  auto clamp = [&](std::int64_t v) {  // into [-1, n - 1], as Python for a negative step
    if (v < 0) v += n;
    return std::clamp<std::int64_t>(v, -1, n - 1);
  };
  const std::int64_t b = start == none ? n - 1 : clamp(start);
  const std::int64_t e = stop == none ? -1 : clamp(stop);
  return {b, b > e ? (b - e - 1) / (-step) + 1 : 0};
}

// The strides of `shape_new` over memory laid out as (shape_old, strides_old), when one set of
// strides expresses the reshape (groups of old dimensions that are contiguous among themselves
// split or merge); false when only a copy can (torch's view rule).
bool reshape_strides(const std::vector<std::int64_t>& shape_old,
                     const std::vector<std::int64_t>& strides_old,
                     const std::vector<std::int64_t>& shape_new, std::vector<std::int64_t>& out) {
  out.assign(shape_new.size(), 0);
  std::int64_t numel = 1;
  for (std::int64_t d : shape_old) numel *= d;
  if (numel == 0 || shape_old.empty()) {  // nothing to address, or one element: any strides do
    out = contiguous_strides(shape_new);
    return true;
  }
  // Walk the old dimensions from the last, in chunks whose elements are evenly spaced; the new
  // dimensions must tile each chunk exactly.
  int nd = static_cast<int>(shape_new.size()) - 1;
  std::int64_t chunk_stride = strides_old.back();
  std::int64_t chunk_numel = 1, new_numel = 1;
  for (int od = static_cast<int>(shape_old.size()) - 1; od >= 0; --od) {
    chunk_numel *= shape_old[static_cast<std::size_t>(od)];
    const bool chunk_ends =
        od == 0 || (shape_old[static_cast<std::size_t>(od) - 1] != 1 &&
                    strides_old[static_cast<std::size_t>(od) - 1] != chunk_numel * chunk_stride);
    if (!chunk_ends) continue;
    while (nd >= 0 && (new_numel < chunk_numel || shape_new[static_cast<std::size_t>(nd)] == 1)) {
      out[static_cast<std::size_t>(nd)] = new_numel * chunk_stride;
      new_numel *= shape_new[static_cast<std::size_t>(nd)];
      --nd;
    }
    if (new_numel != chunk_numel) return false;
    if (od > 0) {
      chunk_stride = strides_old[static_cast<std::size_t>(od) - 1];
      chunk_numel = new_numel = 1;
    }
  }
  return nd == -1;
}

bool is_contiguous_layout(const std::vector<std::int64_t>& shape,
                          const std::vector<std::int64_t>& strides) {
  std::int64_t want = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    const std::int64_t n = shape[static_cast<std::size_t>(i)];
    if (n == 0) return true;
    if (n != 1 && strides[static_cast<std::size_t>(i)] != want) return false;
    want *= n;
  }
  return true;
}

}  // namespace

std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> st(shape.size(), 1);
  std::int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = s;
    s *= std::max<std::int64_t>(shape[static_cast<std::size_t>(i)], 1);
  }
  return st;
}

namespace viewdefs {
// inputs: one tensor of any rank; attributes as lc.Tensor's methods take them.
const OpDef reshape{
    "reshape", OpFamily::elementwise,
    "The same elements in another shape (one -1 is inferred): an alias where strides allow, "
    "else a contiguous copy (Tensor.reshape / Tensor.view).",
    {{in("x")}}, {"out"},
    {{{"shape", AttrType::ints, nullptr, "the new shape; one entry may be -1"}}},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
const OpDef permute{
    "permute", OpFamily::elementwise, "The dimensions reordered (an alias; Tensor.permute).",
    {{in("x")}}, {"out"},
    {{{"dims", AttrType::ints, nullptr, "result dimension i is input dimension dims[i]"}}},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
const OpDef transpose{
    "transpose", OpFamily::elementwise, "Two dimensions swapped (an alias; Tensor.transpose).",
    {{in("x")}}, {"out"},
    {{{"dim0", AttrType::integer, nullptr, nullptr}, {"dim1", AttrType::integer, nullptr, nullptr}}},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
const OpDef slice{
    "slice", OpFamily::elementwise,
    "x[..., start:stop:step, ...] along one dimension (an alias; Python's clamping and None; a "
    "negative step walks backwards).",
    {{in("x")}}, {"out"},
    {{{"dim", AttrType::integer, nullptr, nullptr},
      {"start", AttrType::integer, "None", "None: the first index the step walks from"},
      {"stop", AttrType::integer, "None", "None: the end the step walks to"},
      {"step", AttrType::integer, "1", "nonzero; negative: backwards"}}},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
const OpDef select{
    "select", OpFamily::elementwise,
    "x[..., index, ...]: one index along one dimension, which is removed (an alias).",
    {{in("x")}}, {"out"},
    {{{"dim", AttrType::integer, nullptr, nullptr}, {"index", AttrType::integer, nullptr, nullptr}}},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
const OpDef contiguous{
    "contiguous", OpFamily::elementwise,
    "A contiguous tensor of the same values: an alias when the layout is contiguous already, "
    "else a copy (Tensor.contiguous).",
    {{in("x")}}, {"out"}, {},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
const OpDef expand{
    "expand", OpFamily::elementwise,
    "Size-1 dimensions repeated to the given sizes, new leading dimensions allowed (an alias "
    "with stride 0; Tensor.expand). -1 keeps a dimension's size.",
    {{in("x")}}, {"out"},
    {{{"shape", AttrType::ints, nullptr, "the new sizes; -1 keeps the input's"}}},
    kAnyDType, kAnyDType, &infer_none, &work_view, nullptr};
}  // namespace viewdefs

namespace {
constexpr const OpDef* kViewOps[] = {&viewdefs::reshape, &viewdefs::permute, &viewdefs::transpose,
                                     &viewdefs::slice,   &viewdefs::select,  &viewdefs::contiguous,
                                     &viewdefs::expand};
}

const OpDef* find_view_op(std::string_view name) {
  if (name == "view") return &viewdefs::reshape;  // the tracer records Tensor.view as reshape
  for (const OpDef* d : kViewOps)
    if (name == d->name) return d;
  return nullptr;
}

bool is_view_op(const OpDef* d) {
  return std::find(std::begin(kViewOps), std::end(kViewOps), d) != std::end(kViewOps);
}

std::vector<std::int64_t> infer_view(const Step& s, const std::vector<std::int64_t>& in) {
  const StepAttrs& a = s.attrs;
  const OpDef* d = s.def;
  if (d == &viewdefs::reshape) {
    std::vector<std::int64_t> shape = a.ints;
    if (shape.size() > static_cast<std::size_t>(kMaxDims))
      throw_value("graph", "at most " + std::to_string(kMaxDims) + " dimensions are supported, got " +
                               dims_str(shape));
    int infer = -1;
    std::int64_t known = 1, n = 1;
    for (std::int64_t v : in) n *= v;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) {
        if (infer >= 0) throw_value("graph", "only one dimension of " + dims_str(shape) + " can be -1");
        infer = static_cast<int>(i);
      } else if (shape[i] < 0) {
        throw_value("graph", "negative dimension in " + dims_str(shape));
      } else {
        known *= shape[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || n % known != 0)
        throw_value("graph", "cannot reshape " + shape_str(in) + " (" + std::to_string(n) +
                                 " elements) to " + dims_str(shape) + ": the -1 cannot be inferred");
      shape[static_cast<std::size_t>(infer)] = n / known;
      known = n;
    }
    if (known != n)
      throw_value("graph", "cannot reshape " + shape_str(in) + " (" + std::to_string(n) +
                               " elements) to " + dims_str(shape) + "; the element counts must match");
    return shape;
  }
  if (d == &viewdefs::permute || d == &viewdefs::transpose) {
    std::vector<std::int64_t> dims = a.ints;
    if (d == &viewdefs::transpose) {
      dims.resize(in.size());
      for (std::size_t i = 0; i < in.size(); ++i) dims[i] = static_cast<std::int64_t>(i);
      std::swap(dims[static_cast<std::size_t>(wrap_dim(a.dim0, in.size(), "dim0"))],
                dims[static_cast<std::size_t>(wrap_dim(a.dim1, in.size(), "dim1"))]);
    }
    if (dims.size() != in.size())
      throw_value("graph", "dims " + dims_str(dims) + " must name each of the " +
                               std::to_string(in.size()) + " dimensions of " + shape_str(in) + " once");
    std::vector<bool> seen(in.size(), false);
    std::vector<std::int64_t> out(in.size());
    for (std::size_t i = 0; i < dims.size(); ++i) {
      const std::int64_t k = wrap_dim(dims[i], in.size(), "dimension");
      if (seen[static_cast<std::size_t>(k)])
        throw_value("graph", "dims " + dims_str(dims) + " repeat dimension " + std::to_string(k) +
                                 "; give a permutation of 0.." + std::to_string(in.size() - 1));
      seen[static_cast<std::size_t>(k)] = true;
      out[i] = in[static_cast<std::size_t>(k)];
    }
    return out;
  }
  if (d == &viewdefs::slice) {
    const std::size_t k = static_cast<std::size_t>(wrap_dim(a.dim, in.size(), "dim"));
    if (a.step == 0) throw_value("graph", "slice step cannot be zero");
    std::vector<std::int64_t> out = in;
    out[k] = slice_range(a.start, a.stop, a.step, in[k]).second;
    return out;
  }
  if (d == &viewdefs::select) {
    const std::size_t k = static_cast<std::size_t>(wrap_dim(a.dim, in.size(), "dim"));
    if (a.index < -in[k] || a.index >= in[k])
      throw_value("graph", "index " + std::to_string(a.index) + " is out of range for dimension " +
                               std::to_string(k) + " of size " + std::to_string(in[k]) + " in " +
                               shape_str(in));
    std::vector<std::int64_t> out = in;
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(k));
    return out;
  }
  if (d == &viewdefs::expand) {
    const std::vector<std::int64_t>& shape = a.ints;
    if (shape.size() < in.size() || shape.size() > static_cast<std::size_t>(kMaxDims))
      throw_value("graph", "cannot expand " + shape_str(in) + " to " + dims_str(shape) +
                               ": give at least the input's " + std::to_string(in.size()) +
                               " and at most " + std::to_string(kMaxDims) + " dimensions");
    const std::size_t lead = shape.size() - in.size();
    std::vector<std::int64_t> out(shape.size());
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const std::int64_t want = shape[i];
      const std::int64_t have = i < lead ? -2 : in[i - lead];
      if (want == -1 && have != -2) out[i] = have;
      else if (want >= 0 && (have == -2 || have == want || have == 1)) out[i] = want;
      else
        throw_value("graph", "cannot expand " + shape_str(in) + " to " + dims_str(shape) +
                                 ": dimension " + std::to_string(i) + " (" +
                                 (have == -2 ? std::string("new") : std::to_string(have)) +
                                 ") can only become " +
                                 (have == -2 ? std::string("a size >= 0") : "itself, or any size when it is 1"));
    }
    return out;
  }
  return in;  // contiguous
}

void lower_views(Resolved& g, int* aliases, int* copies) {
  const std::size_t nt = g.tensors.size();
  g.view_base.resize(nt, -1);
  g.view_offset.resize(nt, 0);
  g.view_strides.assign(nt, {});
  // Column views (qkv_projection) of a contiguous wide result.
  for (std::size_t id = 0; id < nt; ++id) {
    const int b = g.view_base[id];
    if (b < 0) continue;
    std::vector<std::int64_t> st = contiguous_strides(g.tensors[static_cast<std::size_t>(b)].shape);
    st.resize(g.tensors[id].shape.size());
    g.view_strides[id] = std::move(st);
  }
  // The layout of tensor `id` over its root: (root, strides, offset).
  auto layout = [&](int id, int& root, std::vector<std::int64_t>& strides, std::int64_t& offset) {
    const std::size_t u = static_cast<std::size_t>(id);
    if (g.view_base[u] >= 0) {
      root = g.view_base[u];
      strides = g.view_strides[u];
      offset = g.view_offset[u];
    } else {
      root = id;
      strides = contiguous_strides(g.tensors[u].shape);
      offset = 0;
    }
  };
  std::vector<Step> kept;
  for (Step& s : g.steps) {
    if (!is_view_op(s.def)) {
      kept.push_back(std::move(s));
      continue;
    }
    const int src = s.in[0], dst = s.out[0];
    const std::vector<std::int64_t>& ishape = g.tensors[static_cast<std::size_t>(src)].shape;
    const std::vector<std::int64_t>& oshape = g.tensors[static_cast<std::size_t>(dst)].shape;
    int root;
    std::vector<std::int64_t> st, ost;
    std::int64_t off;
    layout(src, root, st, off);
    bool alias = true;
    const StepAttrs& a = s.attrs;
    if (s.def == &viewdefs::reshape) {
      alias = reshape_strides(ishape, st, oshape, ost);
    } else if (s.def == &viewdefs::contiguous) {
      alias = is_contiguous_layout(ishape, st);
      ost = contiguous_strides(oshape);
    } else if (s.def == &viewdefs::permute || s.def == &viewdefs::transpose) {
      std::vector<std::int64_t> dims = a.ints;
      if (s.def == &viewdefs::transpose) {
        dims.resize(ishape.size());
        for (std::size_t i = 0; i < dims.size(); ++i) dims[i] = static_cast<std::int64_t>(i);
        std::swap(dims[static_cast<std::size_t>(wrap_dim(a.dim0, ishape.size(), "dim0"))],
                  dims[static_cast<std::size_t>(wrap_dim(a.dim1, ishape.size(), "dim1"))]);
      }
      for (std::int64_t k : dims)
        ost.push_back(st[static_cast<std::size_t>(wrap_dim(k, ishape.size(), "dimension"))]);
    } else if (s.def == &viewdefs::slice) {
      const std::size_t k = static_cast<std::size_t>(wrap_dim(a.dim, ishape.size(), "dim"));
      const auto [first, len] = slice_range(a.start, a.stop, a.step, ishape[k]);
      ost = st;
      ost[k] = st[k] * a.step;
      if (len > 0) off += first * st[k];
    } else if (s.def == &viewdefs::select) {
      const std::size_t k = static_cast<std::size_t>(wrap_dim(a.dim, ishape.size(), "dim"));
      const std::int64_t i = a.index < 0 ? a.index + ishape[k] : a.index;
      ost = st;
      ost.erase(ost.begin() + static_cast<std::ptrdiff_t>(k));
      off += i * st[k];
    } else if (s.def == &viewdefs::expand) {
      // New leading dimensions and broadcast size-1 dimensions read one element: stride 0.
      const std::size_t lead = oshape.size() - ishape.size();
      ost.assign(oshape.size(), 0);
      for (std::size_t i = lead; i < oshape.size(); ++i)
        ost[i] = ishape[i - lead] == oshape[i] ? st[i - lead] : 0;
    }
    if (!alias) {  // a copy step: its result is a new contiguous tensor
      kept.push_back(std::move(s));
      if (copies) ++*copies;
      continue;
    }
    if (aliases) ++*aliases;
    const std::size_t u = static_cast<std::size_t>(dst);
    g.view_base[u] = root;
    g.view_strides[u] = std::move(ost);
    g.view_offset[u] = off;
  }
  g.steps = std::move(kept);
  g.producer.assign(nt, -1);
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    for (int id : g.steps[i].out) g.producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
  for (std::size_t id = 0; id < nt; ++id)
    if (g.view_base[id] >= 0) g.producer[id] = g.producer[static_cast<std::size_t>(g.view_base[id])];
}

}  // namespace lc::graph
