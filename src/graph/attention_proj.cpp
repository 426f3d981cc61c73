// The fusion rule attention_out_proj (docs/graph.md, "Fusion"): in a transformer block the
// attention's result [B, H, S, Dv] is permuted to [B, S, H, Dv] and flattened to [B, S, H*Dv]
// for the output projection; the flattening of a permuted tensor is a copy (views.cpp). Where
// the attention can write a strided `out`, this rule lets it write the merged-heads layout
// directly:
//
//   attention(q, k, v) -> permute(0, 2, 1, 3) -> reshape / contiguous (-> reshape ...) ->
//   linear / matmul
//   becomes
//   attention(q, k, v) writing a contiguous [B, S, H, Dv] buffer through a [B, H, S, Dv] view
//   with the head and row strides swapped -> reshape / contiguous (now an alias) -> linear
//
// The 3-D form ([H, S, Dv], permute(1, 0, 2)) and transpose(-3, -2) match too. The copy saved is
// B*S*H*Dv elements. It pays only when the attention writes the strided view in place
// (MhaArgs::out_strides, the kernels' strided out); otherwise the view would have to be staged
// (written contiguous, then copied), which costs the very copy the rule removes, and the rule
// is not applied (the report says why). attention_strided_out() is that feature check.
//
// Runs at the end of fuse() on the compacted steps (view nodes are still steps: lower_views
// then turns the reshape into an alias of the new buffer).
#include <algorithm>
#include <cstdlib>

#include "backends/backend.h"
#include "graph/graph_internal.h"
#include "ops/checks.h"

namespace lc::graph {

namespace {

template <class T>
constexpr bool kHasOutStrides = requires(T a) { a.out_strides; };

bool is_head_row_swap(const Step& s, std::size_t ndim) {
  const auto n = static_cast<std::int64_t>(ndim);
  auto wrap = [&](std::int64_t d) { return d < 0 ? d + n : d; };
  if (s.def == &viewdefs::transpose) {
    const std::int64_t a = wrap(s.attrs.dim0), b = wrap(s.attrs.dim1);
    return std::min(a, b) == n - 3 && std::max(a, b) == n - 2;
  }
  if (s.def != &viewdefs::permute || s.attrs.ints.size() != ndim) return false;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t want = i == n - 3 ? n - 2 : i == n - 2 ? n - 3 : i;
    if (wrap(s.attrs.ints[static_cast<std::size_t>(i)]) != want) return false;
  }
  return true;
}

}  // namespace

bool attention_strided_out_native() { return kHasOutStrides<MhaArgs>; }

bool attention_strided_out(std::string* why) {
  if (attention_strided_out_native()) return true;
  // A what-if for tests and A/B runs: apply the rule anyway (the executor then stages the
  // attention's result and copies it into the view: the same results, no saving).
  if (const char* e = std::getenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ"); e && e[0] == '1')
    return true;
  if (why)
    *why = "attention cannot write a strided out in place yet (MhaArgs has no out_strides): "
           "staging the [B, S, H, D] view would cost the copy the rule removes";
  return false;
}

Tensor heads_out_view(const Tensor& merged) {
  // merged: a contiguous [..., S, H, Dv] buffer; the attention's [..., H, S, Dv] view of it.
  std::vector<std::int64_t> shape = merged.shape();
  std::vector<std::int64_t> strides = contiguous_strides(shape);
  const std::size_t n = shape.size();
  std::swap(shape[n - 3], shape[n - 2]);
  std::swap(strides[n - 3], strides[n - 2]);
  return merged.view(shape, strides, 0);
}

void attention_out_proj(Resolved& g, const GraphFusionOptions& o, std::vector<GraphFusion>& report) {
  if (!o.attention_out_proj) return;
  std::vector<bool> dead(g.steps.size(), false);
  auto readers = [&](int id) {
    std::vector<int> r;
    for (std::size_t i = 0; i < g.steps.size(); ++i)
      if (!dead[i] && std::find(g.steps[i].in.begin(), g.steps[i].in.end(), id) != g.steps[i].in.end())
        r.push_back(static_cast<int>(i));
    return r;
  };
  auto is_output = [&](int id) {
    return std::find(g.outputs.begin(), g.outputs.end(), id) != g.outputs.end();
  };
  bool changed = false;
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    if (dead[i] || g.steps[i].def != &opdefs::attention || g.steps[i].out.size() != 1) continue;
    const int A = g.steps[i].out[0];
    const std::vector<std::int64_t> ash = g.tensors[static_cast<std::size_t>(A)].shape;
    const std::size_t n = ash.size();
    if (n < 3 || g.view_base[static_cast<std::size_t>(A)] >= 0) continue;
    const std::vector<int> ra = readers(A);
    if (ra.size() != 1 || !is_head_row_swap(g.steps[static_cast<std::size_t>(ra[0])], n)) continue;
    // The pattern's head is here: every candidate from now on gets a report entry.
    const std::size_t pi = static_cast<std::size_t>(ra[0]);
    GraphFusion f{"attention_out_proj", {g.steps[i].name, g.steps[pi].name}, false, ""};
    auto refuse = [&](std::string why) {
      f.reason = std::move(why);
      report.push_back(f);
    };
    const int P = g.steps[pi].out[0];
    if (is_output(A)) { refuse("the attention's result is a graph output"); continue; }
    const std::vector<int> rp = readers(P);
    if (is_output(P) || rp.size() != 1) {
      refuse(is_output(P) ? "the permuted heads are a graph output"
                          : "the permuted heads are read " + std::to_string(rp.size()) + " times");
      continue;
    }
    Step& rs = g.steps[static_cast<std::size_t>(rp[0])];
    f.nodes.push_back(rs.name);
    if (rs.def != &viewdefs::reshape && rs.def != &viewdefs::contiguous) {
      refuse(std::string("the permuted heads feed ") + rs.def->name + ", not a reshape / contiguous");
      continue;
    }
    // The projection reads the merged heads, possibly through more reshapes / contiguous()
    // (aliases once the first is: contiguous() then view(B, S, H*D)).
    int cur = rs.out[0], proj = -1;
    for (int hops = 0; proj < 0 && hops < 4; ++hops) {
      const std::vector<int> rr = readers(cur);
      for (int r : rr) {
        const Step& c = g.steps[static_cast<std::size_t>(r)];
        if ((c.def == &opdefs::linear || c.def == &opdefs::matmul || c.def == &opdefs::matmul2d) &&
            c.in[0] == cur) {
          proj = r;
          break;
        }
      }
      if (proj >= 0 || rr.size() != 1) break;
      const Step& c = g.steps[static_cast<std::size_t>(rr[0])];
      if (c.def != &viewdefs::reshape && c.def != &viewdefs::contiguous) break;
      f.nodes.push_back(c.name);
      cur = c.out[0];
    }
    if (proj < 0) {
      refuse("the merged heads feed no linear / matmul (no output projection)");
      continue;
    }
    f.nodes.push_back(g.steps[static_cast<std::size_t>(proj)].name);
    if (ash[n - 3] == 1 || ash[n - 2] == 1) {
      refuse("one head or one row: the permuted heads are contiguous already (no copy to save)");
      continue;
    }
    std::string why;
    if (!attention_strided_out(&why)) {
      refuse(why);
      continue;
    }
    // The rewrite: a new contiguous [..., S, H, Dv] tensor the attention writes (the executor
    // passes its [..., H, S, Dv] view), read by the reshape / contiguous in place of the
    // permuted heads; the permute goes, the attention's old result is unused.
    TensorEntry m;
    m.name = g.tensors[static_cast<std::size_t>(A)].name + "@bshd";
    m.shape = ash;
    std::swap(m.shape[n - 3], m.shape[n - 2]);
    m.dtype = g.tensors[static_cast<std::size_t>(A)].dtype;
    const int M = static_cast<int>(g.tensors.size());
    g.ids[m.name] = M;
    g.tensors.push_back(std::move(m));
    Step& at = g.steps[i];
    at.out[0] = M;
    at.attrs.out_heads_merged = true;
    at.fused.push_back(g.steps[pi].name);
    rs.in[0] = M;
    dead[pi] = true;
    changed = true;
    std::int64_t elems = 1;
    for (std::int64_t d : ash) elems *= d;
    f.applied = true;
    f.reason = "attention writes " + shape_str(g.tensors[static_cast<std::size_t>(M)].shape) +
               " through a permuted out view; '" + rs.name + "' is an alias (a copy of " +
               std::to_string(elems) + " elements saved)";
    report.push_back(f);
  }
  if (!changed) return;
  std::vector<Step> kept;
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    if (!dead[i]) kept.push_back(std::move(g.steps[i]));
  g.steps = std::move(kept);
  const std::size_t nt = g.tensors.size();
  g.view_base.resize(nt, -1);
  g.view_offset.resize(nt, 0);
  g.producer.assign(nt, -1);
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    for (int id : g.steps[i].out) g.producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
  for (std::size_t id = 0; id < nt; ++id)
    if (g.view_base[id] >= 0) g.producer[id] = g.producer[static_cast<std::size_t>(g.view_base[id])];
}

}  // namespace lc::graph
