// conv_attention_nchw: conv2d_nchw (+act) -> reshape to [seq_len, head_dim] -> self-attention,
// on one device with the intermediate kept there (fused.h). A composition above the ops
// (src/pipelines/).
#include "lightning_core/fused.h"

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

// Graph mode: per (shapes, params) a set of fixed device buffers and one recording of the whole
// chain (conv, arrangement copies, attention) through the backend's capture seam
// (Backend::capture_graph: a CUDA graph on CUDA). Each call copies the inputs into the buffers
// (queued on the stream), replays the recording and copies the result out. Per thread, at most
// kMaxGraphs shapes (the oldest goes back to the backend's graph cache).
struct GraphEntry {
  CaptureKey key;
  Tensor x, w, b, conv, qkv, out;
  bool has_b = false;
  std::unique_ptr<CapturedGraph> graph;
};
constexpr std::size_t kMaxGraphs = 8;

CaptureKey graph_key(const Tensor& x, const Tensor& w, const Tensor* bias,
                     const ConvAttentionParams& prm, const ExecutionPolicy& p) {
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
                     static_cast<std::int64_t>(p.precision), p.autotune ? 1 : 0});
  return k;
}

void run_graph(const Tensor& x, const Tensor& w, const Tensor* bias,
               const ConvAttentionParams& prm, const std::vector<std::int64_t>& cs, Tensor& out,
               const ExecutionPolicy& p, DeviceKind dev) {
  thread_local std::deque<std::unique_ptr<GraphEntry>> cache;
  CaptureKey key = graph_key(x, w, bias, prm, p);
  GraphEntry* e = nullptr;
  for (auto& c : cache)
    if (c->key == key) e = c.get();
  if (!e) {
    if (cache.size() >= kMaxGraphs) cache.pop_front();
    auto ne = std::make_unique<GraphEntry>();
    ne->key = std::move(key);
    ne->x = Tensor::empty(x.shape(), DType::f32, dev);
    ne->w = Tensor::empty(w.shape(), DType::f32, dev);
    ne->has_b = bias != nullptr;
    if (bias) ne->b = Tensor::empty(bias->shape(), DType::f32, dev);
    ne->conv = Tensor::empty(cs, DType::f32, dev);
    ne->qkv = Tensor::empty({prm.seq_len, prm.head_dim}, DType::f32, dev);
    ne->out = Tensor::empty({prm.seq_len, prm.head_dim}, DType::f32, dev);
    cache.push_back(std::move(ne));
    e = cache.back().get();
  }
  x.copy_to(e->x);
  w.copy_to(e->w);
  if (bias) bias->copy_to(e->b);
  ConvAttentionParams eager = prm;
  eager.graph = false;
  // The whole chain replays as inner steps (its result lands in the graph's buffer): inputs are
  // in the graph's device buffers already.
  ExecutionPolicy pd = step_policies(p, dev).inner;
  pd.upload = UploadMode::never;
  auto chain = [&] {
    conv_attention_nchw_into(e->x, e->w, e->has_b ? &e->b : nullptr, eager, e->out, pd, &e->conv,
                             &e->qkv);
  };
  Backend& be = get_backend(dev);
  if (!e->graph) {
    chain();  // first use outside the capture: one-time set-up may synchronise
    be.synchronize();
    e->graph = be.capture_graph(e->key);
  }
  GraphBinding binding;  // the entry's own buffers: fixed, so the recording is made once
  for (const Tensor* t : {&e->x, &e->w, &e->b, &e->conv, &e->qkv, &e->out}) binding.add(t->data());
  e->graph->replay(chain, binding);
  e->out.copy_to(out);
  if (out.device() != DeviceKind::cpu && p.sync == SyncMode::per_call) be.synchronize();
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
  if (prm.graph && dev != DeviceKind::cpu && get_backend(dev).graphs_supported()) {
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
