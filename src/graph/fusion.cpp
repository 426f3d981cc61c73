// The fusion rules: each folds the nodes that follow an anchor op into the anchor's fused
// epilogue (or, for residual_layernorm and softmax_scale, the producers before a layernorm /
// softmax into its row pass), a form the public op API has, and reports every candidate it saw,
// applied or not, with the reason (fusion_report()).
//
//   linear_epilogue    linear (or matmul / matmul2d whose b is a 2-D constant, transposed once
//                      into linear's [n, k] weight) + add of a 1-D [n] bias + relu / gelu
//                      -> linear(x, w, bias, activation)           (cuBLASLt's fused epilogue;
//                      gelu's exact erf form is linear's "gelu_erf": fused into the CPU GEMM's
//                      tiles, a second in-place kernel inside the op on a GPU)
//   residual_epilogue  + add of a tensor of the result's shape -> linear(..., residual=r); the
//                      residual is added before the activation, so only an add that comes
//                      before the activation folds
//   conv_activation    conv2d_nchw + relu / gelu(tanh) -> conv2d_nchw(activation)
//   layernorm_affine   layernorm without gamma/beta + mul by 1-D [c] + add of 1-D [c]
//                      -> layernorm(x, gamma, beta)
//   residual_layernorm add(a, b) of two tensors of one shape whose only reader is a layernorm
//                      (reading it as x) -> layernorm(a, ..., residual=b): the sum is formed in
//                      the layernorm kernel's row pass. The anchor here is the add, folded
//                      forwards into its reader (the rules above fold readers into producers);
//                      an add that residual_epilogue already took into a linear is gone by then
//   softmax_scale      vector_scale(x, a) or mul(x, one-element constant a) and / or
//                      add(s, mask) read only by a softmax
//                      -> softmax(x, scale=a, mask=mask) (the attention-score prologue; a
//                      mask softmax reads in place: the scores' trailing dimensions or a
//                      broadcast such as [B, 1, 1, S]). Anchored at the
//                      softmax, walking back through its x's producers: scales fold always
//                      (softmax(a * (b x) + m) = softmax(ab x + m)), an add only while the
//                      softmax has neither scale nor mask (a scale after the add would scale
//                      the mask too)
//   scale_chain        vector_scale(vector_scale(x, a), b) -> vector_scale(x, a * b)
//   elementwise_chain  (ew_chain.cpp, after every other rule, qkv_projection too) the trees of elementwise
//                      nodes whose intermediates nobody else reads -> one elementwise_program
//   qkv_projection     two or more linears of the same x with constant weights (and constant or
//                      no biases, one activation, no residual) -> one linear with the weights
//                      (and biases) concatenated once at plan time; each result becomes a column
//                      view of the wide result (strided: [..., n_i] with the wide row stride),
//                      which the consumers read in place (attention does) or stage
//
// A node folds only when the anchor's result has that node as its only reader and is not a
// graph output (nothing else may see the unfused intermediate), the dtypes agree, and every
// extra operand is computed before the anchor runs.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <unordered_map>

#include "graph/graph_internal.h"
#include "ops/checks.h"

namespace lc::graph {

namespace {

struct Fuser {
  Resolved& g;
  const GraphFusionOptions& o;
  std::vector<GraphFusion> report;
  std::vector<bool> dead;  // per step: folded into another
  std::unordered_map<int, int> transposed;  // constant b -> its [n, k] copy

  const TensorEntry& t(int id) const { return g.tensors[static_cast<std::size_t>(id)]; }
  bool is_output(int id) const {
    return std::find(g.outputs.begin(), g.outputs.end(), id) != g.outputs.end();
  }
  std::vector<int> readers(int id) const {
    std::vector<int> r;
    for (std::size_t i = 0; i < g.steps.size(); ++i) {
      if (dead[i]) continue;
      for (int x : g.steps[i].in)
        if (x == id) {
          r.push_back(static_cast<int>(i));
          break;
        }
    }
    return r;
  }
  // The step that produces `id` (or -1: a graph input or constant).
  int producer(int id) const {
    for (std::size_t i = 0; i < g.steps.size(); ++i)
      if (!dead[i] && std::find(g.steps[i].out.begin(), g.steps[i].out.end(), id) != g.steps[i].out.end())
        return static_cast<int>(i);
    return -1;
  }
  // The only reader of anchor step `a`'s result, or -1 (with `why` set when it is worth saying).
  int sole_reader(int a, std::string& why) const {
    const int out = g.steps[static_cast<std::size_t>(a)].out[0];
    if (is_output(out)) {
      why = "its result '" + t(out).name + "' is a graph output";
      return -1;
    }
    const std::vector<int> r = readers(out);
    if (r.size() != 1) {
      why = "its result '" + t(out).name + "' is read by " + std::to_string(r.size()) + " nodes";
      return -1;
    }
    return r[0];
  }
  void note(const char* rule, int a, int c, bool applied, const std::string& reason) {
    GraphFusion f;
    f.rule = rule;
    f.nodes.push_back(g.steps[static_cast<std::size_t>(a)].name);
    if (c >= 0) f.nodes.push_back(g.steps[static_cast<std::size_t>(c)].name);
    f.applied = applied;
    f.reason = reason;
    report.push_back(std::move(f));
  }
  // Folds step c into anchor a: a now writes c's result.
  void fold(int a, int c) {
    Step& s = g.steps[static_cast<std::size_t>(a)];
    Step& n = g.steps[static_cast<std::size_t>(c)];
    s.out[0] = n.out[0];
    s.fused.push_back(n.name);
    for (const std::string& f : n.fused) s.fused.push_back(f);
    dead[static_cast<std::size_t>(c)] = true;
  }
  // Whether tensor `id` is ready when step a runs (an input, a constant, or produced earlier).
  bool ready_before(int id, int a) const {
    const int p = producer(id);
    return p < 0 || p < a;
  }
  bool is(const Step& s, const OpDef& d) const { return s.def == &d; }
  bool is_add(const Step& s) const { return is(s, opdefs::add) || is(s, opdefs::vector_add); }
  // The operand of binary step c that is not `id` (-1 when both are `id`).
  int other(const Step& c, int id) const {
    if (c.in[0] == id && c.in[1] != id) return c.in[1];
    if (c.in[1] == id && c.in[0] != id) return c.in[0];
    return -1;
  }
  bool activation_of(const Step& c, Activation& act, std::string& why) const {
    if (is(c, opdefs::relu)) {
      act = Activation::relu;
      return true;
    }
    if (is(c, opdefs::gelu)) {
      // tanh form: linear's "gelu"; exact erf form: linear's "gelu_erf" (fused into the GEMM
      // tiles on the CPU, an in-place second kernel inside the op on a GPU).
      if (c.attrs.approximate == "tanh") {
        act = Activation::gelu;
        return true;
      }
      if (c.attrs.approximate == "none") {
        act = Activation::gelu_erf;
        return true;
      }
      why = "gelu with approximate='" + c.attrs.approximate + "'";
      return false;
    }
    return false;
  }

  // ---- linear / matmul + bias + activation (+ residual) -------------------------------------
  // matmul(x, W) with a constant 2-D W: linear with W^T as the weight, transposed once here.
  bool matmul_to_linear(int a, std::string& why) {
    Step& s = g.steps[static_cast<std::size_t>(a)];
    const int b = s.in[1];
    const TensorEntry& w = t(b);
    if (!w.constant || w.shape.size() != 2) {
      why = "b ('" + w.name + "') is not a 2-D constant; the epilogue needs linear's [n, k] weight";
      return false;
    }
    if (s.def == &opdefs::matmul && t(s.in[0]).shape.empty()) return false;
    s.def = &opdefs::linear;
    s.attrs = StepAttrs{};
    auto done = transposed.find(b);  // one transposed copy per constant, however many readers
    if (done != transposed.end()) {
      s.in = {s.in[0], done->second, -1, -1};
      return true;
    }
    TensorEntry wt;
    wt.name = w.name + ".T";
    while (g.ids.count(wt.name)) wt.name += "'";
    wt.shape = {w.shape[1], w.shape[0]};
    wt.dtype = w.dtype;
    wt.constant = true;
    Tensor v = Tensor::empty(wt.shape, wt.dtype, w.value.device());
    w.value.t().copy_to(v);
    wt.value = std::move(v);
    g.tensors.push_back(std::move(wt));
    g.view_base.push_back(-1);
    g.view_offset.push_back(0);
    const int id = static_cast<int>(g.tensors.size()) - 1;
    g.ids[g.tensors.back().name] = id;
    transposed[b] = id;
    g.steps[static_cast<std::size_t>(a)].in = {g.steps[static_cast<std::size_t>(a)].in[0], id, -1, -1};
    return true;
  }

  void linear_chain(int a) {
    Step* s = &g.steps[static_cast<std::size_t>(a)];
    const bool is_matmul = is(*s, opdefs::matmul) || is(*s, opdefs::matmul2d);
    if (!is_matmul && !is(*s, opdefs::linear)) return;
    bool converted = !is_matmul;
    for (;;) {
      s = &g.steps[static_cast<std::size_t>(a)];
      std::string why;
      const int c = sole_reader(a, why);
      const int out = s->out[0];
      if (c < 0) {
        // Say why only when an epilogue op reads the result.
        for (int r : readers(out)) {
          const Step& n = g.steps[static_cast<std::size_t>(r)];
          if (is_add(n) || is(n, opdefs::relu) || is(n, opdefs::gelu)) {
            note(is_add(n) ? "residual_epilogue" : "linear_epilogue", a, r, false, why);
            break;
          }
        }
        return;
      }
      Step& n = g.steps[static_cast<std::size_t>(c)];
      if (t(n.out[0]).dtype != t(out).dtype) return;
      Activation act;
      if (activation_of(n, act, why)) {
        if (!o.linear_epilogue) return note("linear_epilogue", a, c, false, "switched off");
        if (s->attrs.act != Activation::none && converted)
          return note("linear_epilogue", a, c, false, "the linear has an activation already");
        if (!converted && !matmul_to_linear(a, why)) return note("linear_epilogue", a, c, false, why);
        converted = true;
        s = &g.steps[static_cast<std::size_t>(a)];
        s->attrs.act = act;
        fold(a, c);
        note("linear_epilogue", a, c, true,
             std::string("the ") + to_string(act) + " runs in the GEMM epilogue");
        continue;
      }
      if (!why.empty()) return note("linear_epilogue", a, c, false, why);
      if (!is_add(n)) return;
      const int r = other(n, out);
      if (r < 0) return note("linear_epilogue", a, c, false, "adds the result to itself");
      const TensorEntry& rt = t(r);
      const std::vector<std::int64_t>& oshape = t(out).shape;
      const bool is_bias = rt.shape.size() == 1 && !oshape.empty() && rt.shape[0] == oshape.back() &&
                           t(n.out[0]).shape == oshape && !is(n, opdefs::vector_add);
      const bool is_res = rt.shape == oshape;
      const char* rule = is_bias && !is_res ? "linear_epilogue" : "residual_epilogue";
      if (!is_bias && !is_res)
        return note(rule, a, c, false, "the other operand " + shape_str(rt.shape) +
                                           " is neither a [n] bias nor a residual of the result's shape " +
                                           shape_str(oshape));
      if (rt.dtype != t(out).dtype)
        return note(rule, a, c, false, "the operand '" + rt.name + "' has another dtype");
      if (converted && s->attrs.act != Activation::none)
        return note(rule, a, c, false, "the add follows the activation; the epilogue adds before it");
      if (!ready_before(r, a))
        return note(rule, a, c, false, "'" + rt.name + "' is computed after the product");
      const bool bias_free = !converted || s->in[2] < 0;
      const bool res_free = !converted || s->in[3] < 0;
      bool as_bias = is_bias && bias_free && o.linear_epilogue;
      bool as_res = !as_bias && is_res && res_free && o.residual_epilogue;
      if (!as_bias && !as_res) {
        std::string reason = "switched off";
        if (is_bias && !bias_free && (!is_res || !res_free)) reason = "the linear has a bias already";
        else if (is_res && !res_free) reason = "the linear has a residual already";
        return note(rule, a, c, false, reason);
      }
      if (!converted && !matmul_to_linear(a, why)) return note(rule, a, c, false, why);
      converted = true;
      s = &g.steps[static_cast<std::size_t>(a)];
      s->in[as_bias ? 2 : 3] = r;
      fold(a, c);
      note(as_bias ? "linear_epilogue" : "residual_epilogue", a, c, true,
           as_bias ? "the bias add runs in the GEMM epilogue"
                   : "the residual add runs in the GEMM epilogue (C operand, beta = 1)");
    }
  }

  // ---- conv2d + activation ---------------------------------------------------------------
  void conv_chain(int a) {
    Step& s = g.steps[static_cast<std::size_t>(a)];
    if (!is(s, opdefs::conv2d_nchw) || s.attrs.act != Activation::none) return;
    std::string why;
    const int c = sole_reader(a, why);
    Activation act;
    if (c < 0) return;
    if (!activation_of(g.steps[static_cast<std::size_t>(c)], act, why)) {
      if (!why.empty()) note("conv_activation", a, c, false, why);
      return;
    }
    if (act == Activation::gelu_erf)
      return note("conv_activation", a, c, false,
                  "gelu with approximate='none' (exact erf); the conv epilogue computes the tanh form");
    if (!o.conv_activation) return note("conv_activation", a, c, false, "switched off");
    s.attrs.act = act;
    fold(a, c);
    note("conv_activation", a, c, true, std::string("the ") + to_string(act) + " runs in the conv's epilogue");
  }

  // ---- layernorm + gamma / beta ---------------------------------------------------------
  void layernorm_chain(int a) {
    if (!is(g.steps[static_cast<std::size_t>(a)], opdefs::layernorm)) return;
    for (int k = 0; k < 2; ++k) {
      Step& s = g.steps[static_cast<std::size_t>(a)];
      if (s.in[2] >= 0) return;  // has beta: nothing can follow into it
      std::string why;
      const int c = sole_reader(a, why);
      if (c < 0) return;
      const Step& n = g.steps[static_cast<std::size_t>(c)];
      const bool mul = is(n, opdefs::mul), add = is(n, opdefs::add);
      if (!mul && !add) return;
      if (mul && s.in[1] >= 0) return;
      const int out = s.out[0];
      const int r = other(n, out);
      if (r < 0) return;
      const TensorEntry& rt = t(r);
      const auto& shp = t(out).shape;
      if (rt.shape.size() != 1 || rt.shape[0] != shp.back() || rt.dtype != t(out).dtype ||
          t(n.out[0]).shape != shp)
        return note("layernorm_affine", a, c, false,
                    "the operand " + shape_str(rt.shape) + " is not a 1-D [" +
                        std::to_string(shp.back()) + "] vector of the result's dtype");
      if (!o.layernorm_affine) return note("layernorm_affine", a, c, false, "switched off");
      if (!ready_before(r, a))
        return note("layernorm_affine", a, c, false, "'" + rt.name + "' is computed after the layernorm");
      s.in[mul ? 1 : 2] = r;
      fold(a, c);
      note("layernorm_affine", a, c, true, mul ? "the scale becomes layernorm's gamma"
                                               : "the shift becomes layernorm's beta");
    }
  }

  // ---- residual add -> layernorm(residual=) ---------------------------------------------
  void residual_layernorm(int a) {
    const Step& s = g.steps[static_cast<std::size_t>(a)];
    if (!is_add(s)) return;
    const int out = s.out[0];
    std::string why;
    const int c = sole_reader(a, why);
    if (c < 0) {
      // Say why only when a layernorm reads the sum.
      for (int r : readers(out))
        if (is(g.steps[static_cast<std::size_t>(r)], opdefs::layernorm))
          return note("residual_layernorm", a, r, false, why);
      return;
    }
    Step& n = g.steps[static_cast<std::size_t>(c)];
    if (!is(n, opdefs::layernorm)) return;
    const auto& shp = t(out).shape;
    if (n.in[0] != out)
      return note("residual_layernorm", a, c, false, "the layernorm reads the sum as gamma or beta, not as x");
    if (n.in.size() > 3 && n.in[3] >= 0)
      return note("residual_layernorm", a, c, false, "the layernorm has a residual already");
    const int x = s.in[0], r = s.in[1];
    if (t(x).shape != shp || t(r).shape != shp)
      return note("residual_layernorm", a, c, false,
                  "the add broadcasts (" + shape_str(t(x).shape) + " + " + shape_str(t(r).shape) +
                      "); the residual must have x's shape");
    if (t(x).dtype != t(out).dtype || t(r).dtype != t(out).dtype)
      return note("residual_layernorm", a, c, false, "the operands' dtypes differ from the sum's");
    if (!o.residual_layernorm) return note("residual_layernorm", a, c, false, "switched off");
    // The add's operands exist before the add runs, so before the layernorm too.
    n.in.resize(std::max<std::size_t>(n.in.size(), 4), -1);
    n.in[0] = x;
    n.in[3] = r;
    n.fused.insert(n.fused.begin(), s.name);
    for (const std::string& f : s.fused) n.fused.push_back(f);
    dead[static_cast<std::size_t>(a)] = true;
    note("residual_layernorm", a, c, true, "the residual add runs in the layernorm's row pass");
  }

  // ---- scale / mask -> softmax(scale=, mask=) -------------------------------------------
  // Whether `m` can be a mask of a softmax over `shp` (softmax_mask_layout: x's trailing
  // dimensions, or a broadcast such as [B, 1, 1, S] for [B, H, S, S]).
  static bool mask_of(const std::vector<std::int64_t>& m, const std::vector<std::int64_t>& shp) {
    return softmax_mask_layout({shp.data(), static_cast<int>(shp.size())},
                               {m.data(), static_cast<int>(m.size())}).ok;
  }
  void softmax_prologue(int c) {
    if (!is(g.steps[static_cast<std::size_t>(c)], opdefs::softmax)) return;
    for (;;) {
      Step& sm = g.steps[static_cast<std::size_t>(c)];
      const int x = sm.in[0];
      const int a = producer(x);
      if (a < 0) return;
      const Step& p = g.steps[static_cast<std::size_t>(a)];
      // mul(s, c) by a one-element constant c (in host memory) is a scale too
      double cval = 0.0;
      const int cside = is(p, opdefs::mul) ? scalar_constant_operand(p, cval) : -1;
      const bool scale = is(p, opdefs::vector_scale) || cside >= 0, add = is_add(p);
      if (!scale && !add) return;
      std::string why;
      if (sole_reader(a, why) != c) return note("softmax_scale", a, c, false, why);
      if (t(p.in[0]).dtype != t(x).dtype || (p.in.size() > 1 && t(p.in[1]).dtype != t(x).dtype))
        return note("softmax_scale", a, c, false, "the operands' dtypes differ from the scores'");
      if (scale) {
        const double alpha = cside >= 0 ? cval : static_cast<double>(p.attrs.alpha);
        if (!(alpha > 0.0) || !std::isfinite(alpha))
          return note("softmax_scale", a, c, false, "the scale is not a finite number > 0");
        if (!o.softmax_scale) return note("softmax_scale", a, c, false, "switched off");
        sm.attrs.scale = static_cast<float>((sm.attrs.scale > 0 ? sm.attrs.scale : 1.0f) * alpha);
        sm.in[0] = cside >= 0 ? p.in[static_cast<std::size_t>(1 - cside)] : p.in[0];
        absorb(a, c);
        note("softmax_scale", a, c, true,
             cside >= 0 ? "the constant factor is applied as the softmax reads its row"
                        : "the scale is applied as the softmax reads its row");
        continue;
      }
      if (sm.in[1] >= 0 || sm.attrs.scale > 0)
        return note("softmax_scale", a, c, false,
                    sm.in[1] >= 0 ? "the softmax has a mask already"
                                  : "the add comes before a scale, which would scale the mask too");
      const auto& shp = t(x).shape;
      // The scores are the operand of the sum's full shape (a scale's result first); the mask
      // the other one, of x's trailing dimensions.
      int s0 = p.in[0], m0 = p.in[1];
      const int pr1 = producer(p.in[1]);
      if (t(s0).shape != shp || (t(m0).shape == shp && pr1 >= 0 &&
                                  is(g.steps[static_cast<std::size_t>(pr1)], opdefs::vector_scale)))
        std::swap(s0, m0);
      if (t(s0).shape != shp || !mask_of(t(m0).shape, shp))
        return note("softmax_scale", a, c, false,
                    "the add " + shape_str(t(p.in[0]).shape) + " + " + shape_str(t(p.in[1]).shape) +
                        " is not scores + a mask softmax reads in place (x's trailing dimensions, "
                        "or a broadcast such as [B, 1, 1, S] for [B, H, S, S])");
      if (!o.softmax_scale) return note("softmax_scale", a, c, false, "switched off");
      sm.in.resize(std::max<std::size_t>(sm.in.size(), 2), -1);
      sm.in[0] = s0;
      sm.in[1] = m0;
      absorb(a, c);
      note("softmax_scale", a, c, true, "the mask is added as the softmax reads its row");
    }
  }
  // Which operand of mul step p is a one-element constant in host memory whose shape does not
  // widen the other's (0 or 1; its value in v), or -1.
  int scalar_constant_operand(const Step& p, double& v) const {
    for (int side : {1, 0}) {
      const TensorEntry& e = t(p.in[static_cast<std::size_t>(side)]);
      const TensorEntry& other = t(p.in[static_cast<std::size_t>(1 - side)]);
      if (!e.constant || !e.value.defined() || e.value.numel() != 1 ||
          e.value.device() != DeviceKind::cpu || e.shape.size() > other.shape.size())
        continue;
      v = dispatch_dtype(e.dtype, [&](auto tag) -> double {
        using T = decltype(tag);
        const T x = *static_cast<const T*>(e.value.data());
        if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>) return to_float(x);
        else return static_cast<double>(x);
      });
      return side;
    }
    return -1;
  }
  // Folds producer step a into its only reader c (c keeps its place and its result).
  void absorb(int a, int c) {
    Step& s = g.steps[static_cast<std::size_t>(a)];
    Step& n = g.steps[static_cast<std::size_t>(c)];
    n.fused.insert(n.fused.begin(), s.name);
    for (const std::string& f : s.fused) n.fused.push_back(f);
    dead[static_cast<std::size_t>(a)] = true;
  }

  // ---- vector_scale chains --------------------------------------------------------------
  void scale_chain(int a) {
    for (;;) {
      Step& s = g.steps[static_cast<std::size_t>(a)];
      if (!is(s, opdefs::vector_scale)) return;
      std::string why;
      const int c = sole_reader(a, why);
      if (c < 0 || !is(g.steps[static_cast<std::size_t>(c)], opdefs::vector_scale)) return;
      if (!o.scale_chain) return note("scale_chain", a, c, false, "switched off");
      s.attrs.alpha *= g.steps[static_cast<std::size_t>(c)].attrs.alpha;
      fold(a, c);
      note("scale_chain", a, c, true, "two scalings become one");
    }
  }

  // ---- sibling projections of one input -> one GEMM ----------------------------------------
  bool qkv_member(const Step& s, int x) const {
    if (!is(s, opdefs::linear) || s.in[0] != x || s.in[3] >= 0) return false;
    const TensorEntry& w = t(s.in[1]);
    if (!w.constant || w.shape.size() != 2 || !w.value.defined()) return false;
    if (s.in[2] >= 0 && !t(s.in[2]).constant) return false;
    return !is_output(s.out[0]);
  }
  void qkv(int a) {
    const Step& s0 = g.steps[static_cast<std::size_t>(a)];
    if (!qkv_member(s0, s0.in[0])) return;
    const int x = s0.in[0];
    const TensorEntry& w0 = t(s0.in[1]);
    std::vector<int> group{a};
    for (std::size_t j = static_cast<std::size_t>(a) + 1; j < g.steps.size(); ++j) {
      if (dead[j]) continue;
      const Step& s = g.steps[j];
      if (!qkv_member(s, x)) continue;
      const TensorEntry& w = t(s.in[1]);
      if (w.dtype != w0.dtype || w.shape[1] != w0.shape[1] || s.attrs.act != s0.attrs.act ||
          (s.in[2] >= 0) != (s0.in[2] >= 0))
        continue;
      group.push_back(static_cast<int>(j));
    }
    if (group.size() < 2) return;
    GraphFusion f;
    f.rule = "qkv_projection";
    for (int m : group) f.nodes.push_back(g.steps[static_cast<std::size_t>(m)].name);
    if (!o.qkv_projection) {
      f.reason = "switched off";
      report.push_back(std::move(f));
      return;
    }
    // The concatenated weight [sum n, k] (and bias [sum n]), made once.
    std::int64_t n_total = 0;
    for (int m : group) n_total += t(g.steps[static_cast<std::size_t>(m)].in[1]).shape[0];
    // (add_tensor below grows g.tensors: no references into it past this point)
    const std::int64_t k = w0.shape[1];
    const DType dt = w0.dtype;
    const bool has_bias = s0.in[2] >= 0;
    const DeviceKind dev = w0.value.device();
    std::vector<std::int64_t> wide = t(x).shape;
    wide.back() = n_total;
    Tensor wcat = Tensor::empty({n_total, k}, dt, dev);
    Tensor bcat = has_bias ? Tensor::empty({n_total}, dt, dev) : Tensor();
    std::int64_t off = 0;
    std::vector<std::int64_t> offsets;
    for (int m : group) {
      const Step& s = g.steps[static_cast<std::size_t>(m)];
      const std::int64_t n = t(s.in[1]).shape[0];
      Tensor rows = wcat.view({n, k}, {k, 1}, off * k);
      t(s.in[1]).value.copy_to(rows);
      if (has_bias) {
        Tensor part = bcat.view({n}, {1}, off);
        t(s.in[2]).value.copy_to(part);
      }
      offsets.push_back(off);
      off += n;
    }
    auto add_tensor = [&](std::string name, std::vector<std::int64_t> shape, bool constant, Tensor v) {
      while (g.ids.count(name)) name += "'";
      TensorEntry e;
      e.name = name;
      e.shape = std::move(shape);
      e.dtype = dt;
      e.constant = constant;
      e.value = std::move(v);
      g.tensors.push_back(std::move(e));
      const int id = static_cast<int>(g.tensors.size()) - 1;
      g.ids[g.tensors.back().name] = id;
      g.view_base.push_back(-1);
      g.view_offset.push_back(0);
      return id;
    };
    const std::string base = s0.name + ".fused";
    const int wid = add_tensor(base + ".weight", {n_total, k}, true, std::move(wcat));
    const int bid = has_bias ? add_tensor(base + ".bias", {n_total}, true, std::move(bcat)) : -1;
    const int out = add_tensor(base + ".out", wide, false, Tensor());
    for (std::size_t i = 0; i < group.size(); ++i) {
      const int vid = g.steps[static_cast<std::size_t>(group[i])].out[0];
      g.view_base[static_cast<std::size_t>(vid)] = out;
      g.view_offset[static_cast<std::size_t>(vid)] = offsets[i];
    }
    Step& s = g.steps[static_cast<std::size_t>(a)];
    const std::string first = s.name;
    s.in = {x, wid, bid, -1};
    s.out = {out};
    for (std::size_t i = 1; i < group.size(); ++i) {
      Step& m = g.steps[static_cast<std::size_t>(group[i])];
      s.fused.push_back(m.name);
      for (const std::string& name : m.fused) s.fused.push_back(name);
      dead[static_cast<std::size_t>(group[i])] = true;
    }
    f.applied = true;
    f.reason = std::to_string(group.size()) + " projections of '" + t(x).name +
               "' become one GEMM of width " + std::to_string(n_total) +
               "; their results are column views of it";
    report.push_back(std::move(f));
  }
};

}  // namespace

std::vector<GraphFusion> fuse(Resolved& g, const GraphFusionOptions& o) {
  Fuser f{g, o, {}, std::vector<bool>(g.steps.size(), false), {}};
  g.view_base.assign(g.tensors.size(), -1);
  g.view_offset.assign(g.tensors.size(), 0);
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    if (f.dead[i]) continue;
    const int a = static_cast<int>(i);
    f.linear_chain(a);
    f.conv_chain(a);
    f.layernorm_chain(a);
    f.residual_layernorm(a);
    f.scale_chain(a);
    f.softmax_prologue(a);
  }
  // After the epilogues (biases and activations are folded first), siblings of one input.
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    if (!f.dead[i]) f.qkv(static_cast<int>(i));
  // Last: chains of the elementwise nodes the rules above left (ew_chain.cpp).
  fuse_elementwise_chains(g, o, f.dead, f.report);
  std::vector<Step> kept;
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    if (!f.dead[i]) kept.push_back(std::move(g.steps[i]));
  g.steps = std::move(kept);
  g.producer.assign(g.tensors.size(), -1);
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    for (int id : g.steps[i].out) g.producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
  // matmul_to_linear's transposed weights were added without view entries.
  g.view_base.resize(g.tensors.size(), -1);
  g.view_offset.resize(g.tensors.size(), 0);
  for (std::size_t id = 0; id < g.tensors.size(); ++id)
    if (g.view_base[id] >= 0) g.producer[id] = g.producer[static_cast<std::size_t>(g.view_base[id])];
  attention_out_proj(g, o, f.report);  // attention_proj.cpp
  return std::move(f.report);
}

}  // namespace lc::graph
