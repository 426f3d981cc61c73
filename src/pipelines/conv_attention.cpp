// conv_attention_nchw: conv2d_nchw (+act) -> reshape to [seq_len, head_dim] -> self-attention,
// on one device with the intermediate kept there (fused.h). A composition above the ops
// (src/pipelines/).
#include "lightning_core/fused.h"
#include "lightning_core/graph.h"

#include <cstring>
#include <deque>
#include <memory>

#include "backends/backend.h"
#include "runtime/op_runner.h"
#include "lightning_core/ops.h"
#include "lightning_core/sizes.h"
#include "ops/registry.h"
#include "ops/checks.h"
#include "ops/conv2d.h"

namespace lc {

namespace {

constexpr const char* kOp = "conv_attention_nchw";

std::vector<std::int64_t> check_all(const Tensor& x, const Tensor& w, const Tensor* bias,
                                    const ConvAttentionParams& prm) {
  const auto cs = conv2d_nchw_out_shape(x, w, bias, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w);
  if (cs[0] != 1)
    throw_value(kOp, "x must hold one image (N=1), got shape " + x.shape_str() +
                         "; run one call per image");
  if (prm.seq_len <= 0 || prm.head_dim <= 0)
    throw_value(kOp, "seq_len and head_dim must be >= 1, got seq_len=" +
                         std::to_string(prm.seq_len) + " head_dim=" + std::to_string(prm.head_dim));
  const std::int64_t qkv_dims[2] = {prm.seq_len, prm.head_dim};
  checked_numel(kOp, qkv_dims, 2, sizeof(float));  // [seq_len, head_dim] must be representable
  return cs;
}

// The chain's device (choose_chain_device: the chain rule of runtime/placement.h). The chain is
// one block here: the op's OpDef estimates the conv and the attention stage at its real size
// ([seq_len, head_dim] self-attention) together, with the transfers of the whole pipeline, and
// says what CUDA supports (the attention head-dimension limit).
DeviceKind place_all(const Tensor& x, const Tensor& w, const Tensor* bias,
                     const ConvAttentionParams& prm, const ExecutionPolicy& p) {
  const OpDef& def = opdefs::conv_attention_nchw;
  OpArgs args = conv_args(x, w, bias, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w);
  args.seq_len = prm.seq_len;
  args.head_dim = prm.head_dim;
  ChainBlock block{kOp, def.work(args), def.supports(DeviceKind::cuda, args)};
  bool on_gpu = false, on_host = false;
  for (const Tensor* t : {&x, &w, bias}) {
    if (!t) continue;
    if (t->device() == DeviceKind::cpu) {
      block.work.host_bytes_in += static_cast<double>(t->nbytes());
      on_host = true;
    } else {
      on_gpu = true;
    }
  }
  block.work.inputs_on_gpu = on_gpu;
  return choose_chain_device({&block, 1}, p, on_gpu, on_host, nullptr, explain_enabled()).device;
}

// The policies of the intermediate steps and of the last one (chain_policies: the chain rule).
ChainPolicies step_policies(const ExecutionPolicy& p, DeviceKind dev) {
  return chain_policies(p, request_for(dev));
}

void run_conv_step(const Tensor& x, const Tensor& w, const Tensor* bias,
                   const ConvAttentionParams& prm, const std::vector<std::int64_t>& cs,
                   const ExecutionPolicy& pc, Tensor& conv) {
  OpRunner r("conv_attention_nchw.conv", pc);
  // The conv step is conv2d_nchw: its OpDef's estimate and CUDA limits.
  const OpArgs args = conv_args(x, w, bias, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w);
  r.place(opdefs::conv2d_nchw.work(args), {&x, &w, bias},
          opdefs::conv2d_nchw.supports(DeviceKind::cuda, args));
  Conv2dArgs a = conv2d_geometry(x, w, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w, cs[2],
                                 cs[3], prm.act);
  a.x = r.in(x);
  a.w = r.in(w);
  a.bias = r.in_opt(bias);
  a.out = r.out(conv);
  launch_conv2d(r, a);  // the one conv dispatch, as conv2d_nchw (ops/conv2d.h)
  r.finish();
}

// The [seq_len, head_dim] attention input: a view of the conv output when the sizes agree, else
// the flattened output read cyclically (Backend::tile_cyclic: one kernel on the GPU).
Tensor arrange_qkv(const Tensor& conv, const ConvAttentionParams& prm, Tensor* scratch) {
  const std::int64_t have = conv.numel(), need = prm.seq_len * prm.head_dim;
  if (have == need) return conv.view({prm.seq_len, prm.head_dim}, {prm.head_dim, 1}, 0);
  Tensor q;
  if (scratch && scratch->defined() && scratch->device() == conv.device() &&
      scratch->shape() == std::vector<std::int64_t>{prm.seq_len, prm.head_dim} &&
      scratch->is_contiguous()) {
    q = *scratch;
  } else {
    q = Tensor::empty({prm.seq_len, prm.head_dim}, DType::f32, conv.device());
  }
  // conv is the step's own contiguous output, q a contiguous buffer on the same device.
  get_backend(conv.device())
      .tile_cyclic(q.data_as<float>(), conv.data_as<const float>(), have, need);
  return q;
}

// Graph mode: the chain as a GraphIR (src/graph/, docs/graph.md), the one graph mechanism:
//   conv2d_nchw(activation) -> the cyclic arrangement as view nodes -> attention2d(s, s, s)
// The arrangement is a plain reshape when the sizes agree; a truncation is reshape -> slice ->
// reshape (aliases); a repetition reshape -> expand (stride 0) -> reshape (the one copy) ->
// slice -> reshape. Per (shapes, params, device, precision) one planned graph, replayed by the
// executor through the backend's capture seam (a CUDA graph on a GPU, DirectGraph on the CPU):
// host inputs are staged into the graph's arena, device inputs bound in place. Per thread, at
// most kMaxGraphs graphs (least recently used dropped).
struct GraphEntry {
  CaptureKey key;
  GraphIR g;
};
constexpr std::size_t kMaxGraphs = 8;

CaptureKey graph_key(const Tensor& x, const Tensor& w, const Tensor* bias,
                     const ConvAttentionParams& prm, const ExecutionPolicy& p, DeviceKind dev) {
  CaptureKey k;
  k.topology = kOp;
  std::vector<std::int64_t>& d = k.dims;
  d.reserve(32);
  d.push_back(static_cast<std::int64_t>(DType::f32));
  for (const Tensor* t : {&x, &w, bias}) {
    if (!t) {
      d.push_back(-1);
      continue;
    }
    d.push_back(t->ndim());
    for (int i = 0; i < t->ndim(); ++i) d.push_back(t->size(i));
  }
  std::uint32_t scale_bits = 0;
  static_assert(sizeof scale_bits == sizeof prm.scale, "scale is a 32-bit float");
  std::memcpy(&scale_bits, &prm.scale, sizeof scale_bits);
  d.insert(d.end(), {prm.seq_len, prm.head_dim, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w,
                     static_cast<std::int64_t>(prm.act), prm.causal ? 1 : 0,
                     static_cast<std::int64_t>(scale_bits),
                     static_cast<std::int64_t>(p.precision), static_cast<std::int64_t>(dev),
                     dev == DeviceKind::cpu         ? 0
                     : p.device_index >= 0 ? p.device_index  // the policy's cuda:N
                                           : get_backend(dev).current_device()});
  return k;
}

void build_graph(GraphIR& g, const Tensor& x, const Tensor& w, const Tensor* bias,
                 const ConvAttentionParams& prm, const std::vector<std::int64_t>& cs,
                 const ExecutionPolicy& p, DeviceKind dev) {
  using V = std::vector<std::int64_t>;
  g.add_tensor("x", x.shape(), DType::f32);
  g.add_tensor("w", w.shape(), DType::f32);
  if (bias) g.add_tensor("b", bias->shape(), DType::f32);
  g.add_node("conv2d_nchw", {"x", "w", bias ? "b" : ""}, {"conv"},
             {{"stride_h", GraphAttr::of(prm.stride_h)},
              {"stride_w", GraphAttr::of(prm.stride_w)},
              {"pad_h", GraphAttr::of(prm.pad_h)},
              {"pad_w", GraphAttr::of(prm.pad_w)},
              {"activation", GraphAttr::of(to_string(prm.act))}},
             "conv");
  const std::int64_t have = cs[0] * cs[1] * cs[2] * cs[3], need = prm.seq_len * prm.head_dim;
  std::string s = "conv";
  if (have != need) {  // the flattened features read cyclically (api.qkv_arrange)
    g.add_node("reshape", {"conv"}, {"flat"}, {{"shape", GraphAttr::of(V{have})}}, "flatten");
    s = "flat";
    if (need > have) {
      const std::int64_t reps = (need + have - 1) / have;
      g.add_node("expand", {"flat"}, {"rep"}, {{"shape", GraphAttr::of(V{reps, have})}}, "repeat");
      g.add_node("reshape", {"rep"}, {"tiled"}, {{"shape", GraphAttr::of(V{reps * have})}}, "tile");
      s = "tiled";
    }
    g.add_node("slice", {s}, {"cut"},
               {{"dim", GraphAttr::of(0)}, {"stop", GraphAttr::of(need)}}, "cut");
    s = "cut";
  }
  g.add_node("reshape", {s}, {"qkv"}, {{"shape", GraphAttr::of(V{prm.seq_len, prm.head_dim})}},
             "arrange");
  GraphAttrs aa{{"causal", GraphAttr::of(prm.causal)}};
  if (prm.scale > 0) aa.emplace_back("scale", GraphAttr::of(static_cast<double>(prm.scale)));
  g.add_node("attention2d", {"qkv", "qkv", "qkv"}, {"out"}, aa, "attention");
  g.set_outputs({"out"});
  GraphPlanOptions o;
  o.device = dev == DeviceKind::cpu ? DeviceRequest::cpu : DeviceRequest::cuda;
  // The policy's cuda:N; none: the GPU of the resident inputs, else the current one (as eager).
  o.device_index = dev == DeviceKind::cpu ? -1 : p.device_index;
  o.precision = p.precision;
  g.plan(o);
}

void run_graph(const Tensor& x, const Tensor& w, const Tensor* bias,
               const ConvAttentionParams& prm, const std::vector<std::int64_t>& cs, Tensor& out,
               const ExecutionPolicy& p, DeviceKind dev) {
  thread_local std::deque<std::unique_ptr<GraphEntry>> cache;
  CaptureKey key = graph_key(x, w, bias, prm, p, dev);
  GraphEntry* e = nullptr;
  for (auto it = cache.begin(); it != cache.end(); ++it)
    if ((*it)->key == key) {
      if (it + 1 != cache.end()) {  // most recently used last
        auto hit = std::move(*it);
        cache.erase(it);
        cache.push_back(std::move(hit));
      }
      e = cache.back().get();
      break;
    }
  if (!e) {
    auto ne = std::make_unique<GraphEntry>();
    ne->key = std::move(key);
    build_graph(ne->g, x, w, bias, prm, cs, p, dev);
    if (cache.size() >= kMaxGraphs) cache.pop_front();
    cache.push_back(std::move(ne));
    e = cache.back().get();
  }
  // The caller's policy for what the graph's steps do not fix (autotune, ...).
  PolicyScope scope(p);
  std::vector<std::pair<std::string, Tensor>> in;
  in.reserve(3);
  in.emplace_back("x", x);
  in.emplace_back("w", w);
  if (bias) in.emplace_back("b", *bias);
  std::vector<Tensor> outs{out};  // a handle on the caller's buffer: written in place
  e->g.execute_into(in, outs, /*graph_mode=*/true);
}

}  // namespace

std::vector<std::int64_t> conv_attention_nchw_out_shape(const Tensor& x, const Tensor& w,
                                                        const Tensor* bias,
                                                        const ConvAttentionParams& prm) {
  check_all(x, w, bias, prm);
  return {prm.seq_len, prm.head_dim};
}

void conv_attention_nchw_into(const Tensor& x, const Tensor& w, const Tensor* bias,
                              const ConvAttentionParams& prm, Tensor& out,
                              const ExecutionPolicy& p, Tensor* conv_scratch,
                              Tensor* qkv_scratch) {
  p.validate(kOp);
  const auto cs = check_all(x, w, bias, prm);
  check_out(kOp, out, {prm.seq_len, prm.head_dim});
  const DeviceKind dev = place_all(x, w, bias, prm, p);
  if (prm.graph && cs[0] * cs[1] * cs[2] * cs[3] > 0) {
    run_graph(x, w, bias, prm, cs, out, p, dev);
    return;
  }
  const ChainPolicies steps = step_policies(p, dev);
  const ExecutionPolicy& pc = steps.inner;
  Tensor conv;
  if (conv_scratch && conv_scratch->defined() && conv_scratch->device() == dev &&
      conv_scratch->shape() == cs && conv_scratch->is_contiguous()) {
    conv = *conv_scratch;
  } else {
    conv = Tensor::empty(cs, DType::f32, dev);
  }
  run_conv_step(x, w, bias, prm, cs, pc, conv);
  const Tensor s = arrange_qkv(conv, prm, qkv_scratch);
  attention2d_into(s, s, s, out, prm.causal, steps.last, prm.scale);
}

Tensor conv_attention_nchw(const Tensor& x, const Tensor& w, const Tensor* bias,
                           const ConvAttentionParams& prm, const ExecutionPolicy& p) {
  p.validate(kOp);
  check_all(x, w, bias, prm);
  const DeviceKind dev = place_all(x, w, bias, prm, p);
  // Result placement as for the single ops: stays on the device when download is off or every
  // input already lives there.
  bool stay = dev != DeviceKind::cpu && !p.download;
  if (dev != DeviceKind::cpu && p.download)
    stay = x.device() != DeviceKind::cpu && w.device() != DeviceKind::cpu &&
           (!bias || bias->device() != DeviceKind::cpu);
  Tensor out = Tensor::empty({prm.seq_len, prm.head_dim}, DType::f32, stay ? dev : DeviceKind::cpu);
  conv_attention_nchw_into(x, w, bias, prm, out, step_policies(p, dev).last);
  return out;
}

}  // namespace lc
