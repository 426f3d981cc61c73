// bench_vlm: the vision encoder of lc.models.VisionEncoder (python/lightning_core/models/_vit.py)
// driven through the C++ ops on resident tensors with preallocated intermediates: patchify
// (unfold into token order behind a zero CLS row + one GEMM), the additive CLS / position table,
// pre-LN encoder layers (LN -> fused Q/K/V GEMM -> multi-head attention on strided head views ->
// head merge -> output GEMM with the residual -> LN -> GEMM -> exact GELU -> GEMM with the
// residual), the final LN and the CLS token copied out as the pooled vector.
//
// Rows (flops: 2 * B * S * (4 h^2 + 2 h mlp) per layer + 4 * B * H * S^2 * D for attention + the
// patch GEMM):
//   vit/<dev>/...   ViT-B/16 at 224 x 224 (hidden 768, 12 heads, MLP 3072, 12 layers, 197
//                   tokens) and ViT-Ti/16 (hidden 192, 3 heads, MLP 768), float32 and bfloat16;
//                   batch 1 / 8 / 64 on CUDA, 1 / 8 on the CPU.
//   patchify/<dev>/method:0|1/...  the patch embedding alone, float32: 0 = unfold + GEMM (what the
//                   model runs), 1 = conv2d_nchw (kernel = stride = patch) + the transpose copy
//                   into token order that a convolution needs (conv2d_nchw is float32-only).
// The Python side by side with torch (HF ViTModel eager / CUDA graph / torch.compile) is
// benchmarks/python/vit_bench.py; the model's graph mode (one captured CUDA graph per batch size)
// is timed there. Here every op is launched from C++ (the CUDA rows' device time excludes the
// launch gaps; wall_us includes them).
#include <cmath>
#include <utility>

#include "bench_common.h"

namespace {

using lcbench::randn;

struct Layer {
  lc::Tensor ln1_g, ln1_b, qkv_w, qkv_b, o_w, o_b, ln2_g, ln2_b, i_w, i_b, f_w, f_b;
};

lc::Tensor make(const std::vector<std::int64_t>& shape, lc::DeviceKind dev, lc::DType dt,
                unsigned seed, float scale, float shift = 0.0f) {
  lc::Tensor t = randn(shape, lc::DeviceKind::cpu, seed, scale);
  if (shift != 0.0f) {
    float* p = t.data_as<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] += shift;
  }
  t = t.astype(dt);
  return dev == lc::DeviceKind::cpu ? t : t.to(dev);
}

// P[:, 1:] = the patches of img [B, C, I, I] in raster order, each (c, i, j): one strided copy
// into P [B, 1 + N, C*p*p] (row 0 stays zero).
void unfold_into(const lc::Tensor& img, lc::Tensor& P, std::int64_t p) {
  const std::int64_t B = img.size(0), C = img.size(1), g = img.size(2) / p;
  const std::int64_t K = C * p * p, S = g * g + 1;
  lc::Tensor src = img.reshape({B, C, g, p, g, p}).permute({0, 2, 4, 1, 3, 5});
  lc::Tensor dst = P.view({B, g, g, C, p, p}, {S * K, g * K, K, p * p, p, 1}, K);
  src.copy_to(dst);
}

lc::Tensor zero_cls_rows(lc::Tensor P) {
  const std::int64_t B = P.size(0), K = P.size(2);
  lc::Tensor z = lc::Tensor::empty({B, K}, lc::DType::f32, lc::DeviceKind::cpu);
  for (std::int64_t i = 0; i < z.numel(); ++i) z.data_as<float>()[i] = 0.0f;
  lc::Tensor zd = z.astype(P.dtype());
  if (P.device() != lc::DeviceKind::cpu) zd = zd.to(P.device());
  lc::Tensor row0 = P.select(1, 0);
  zd.copy_to(row0);
  return P;
}

// args: batch, image, patch, hidden, heads, mlp, layers, bf16
void vit(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t B = a[0], I = a[1], p = a[2], h = a[3], H = a[4], M = a[5], nl = a[6];
  const lc::DType dt = a[7] ? lc::DType::bf16 : lc::DType::f32;
  const std::int64_t C = 3, g = I / p, N = g * g, S = N + 1, K = C * p * p, D = h / H;
  const float eps = 1e-12f, scale = 1.0f / std::sqrt(static_cast<float>(D));
  const float wh = 1.0f / std::sqrt(static_cast<float>(h)), wm = 1.0f / std::sqrt(static_cast<float>(M));
  unsigned seed = 10;
  lc::Tensor img = make({B, C, I, I}, dev, dt, 1, 1.0f);
  lc::Tensor patch_w = make({h, K}, dev, dt, 2, 1.0f / std::sqrt(static_cast<float>(K)));
  lc::Tensor table = make({S, h}, dev, dt, 3, 0.02f);  // cls + pos[0]; pos[i] + patch bias
  std::vector<Layer> layers;
  for (std::int64_t l = 0; l < nl; ++l) {
    Layer L;
    L.ln1_g = make({h}, dev, dt, seed++, 0.02f, 1.0f);
    L.ln1_b = make({h}, dev, dt, seed++, 0.02f);
    L.qkv_w = make({3 * h, h}, dev, dt, seed++, wh);
    L.qkv_b = make({3 * h}, dev, dt, seed++, 0.02f);
    L.o_w = make({h, h}, dev, dt, seed++, wh);
    L.o_b = make({h}, dev, dt, seed++, 0.02f);
    L.ln2_g = make({h}, dev, dt, seed++, 0.02f, 1.0f);
    L.ln2_b = make({h}, dev, dt, seed++, 0.02f);
    L.i_w = make({M, h}, dev, dt, seed++, wh);
    L.i_b = make({M}, dev, dt, seed++, 0.02f);
    L.f_w = make({h, M}, dev, dt, seed++, wm);
    L.f_b = make({h}, dev, dt, seed++, 0.02f);
    layers.push_back(std::move(L));
  }
  lc::Tensor ln_g = make({h}, dev, dt, seed++, 0.02f, 1.0f), ln_b = make({h}, dev, dt, seed++, 0.02f);
  auto buf = [&](const std::vector<std::int64_t>& s) { return lc::Tensor::empty(s, dt, dev); };
  lc::Tensor P = zero_cls_rows(buf({B, S, K}));
  lc::Tensor x0 = buf({B, S, h}), x1 = buf({B, S, h}), hn = buf({B, S, h}), qkv = buf({B, S, 3 * h}),
             att = buf({B, H, S, D}), merged = buf({B, S, h}), up = buf({B, S, M}),
             act = buf({B, S, M}), tokens = buf({B, S, h}), pooled = buf({B, h});
  lc::Tensor merged_heads = merged.reshape({B, S, H, D});
  const lc::ExecutionPolicy pol = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] {
    unfold_into(img, P, p);
    lc::linear_into(P, patch_w, nullptr, lc::Activation::none, x0, pol);
    lc::add_into(x0, table, x1, pol);
    lc::Tensor* x = &x1;
    lc::Tensor* y = &x0;
    for (const Layer& L : layers) {
      lc::layernorm_into(*x, &L.ln1_g, &L.ln1_b, eps, hn, pol);
      lc::linear_into(hn, L.qkv_w, &L.qkv_b, lc::Activation::none, qkv, pol);
      lc::Tensor q5 = qkv.reshape({B, S, 3, H, D}).permute({2, 0, 3, 1, 4});
      lc::attention_into(q5.select(0, 0), q5.select(0, 1), q5.select(0, 2), att, false, nullptr,
                         scale, pol);
      att.permute({0, 2, 1, 3}).copy_to(merged_heads);
      lc::linear_into(merged, L.o_w, &L.o_b, lc::Activation::none, *y, pol, x);
      std::swap(x, y);
      lc::layernorm_into(*x, &L.ln2_g, &L.ln2_b, eps, hn, pol);
      lc::linear_into(hn, L.i_w, &L.i_b, lc::Activation::none, up, pol);
      lc::gelu_into(up, act, "none", pol);
      lc::linear_into(act, L.f_w, &L.f_b, lc::Activation::none, *y, pol, x);
      std::swap(x, y);
    }
    lc::layernorm_into(*x, &ln_g, &ln_b, eps, tokens, pol);
    tokens.select(1, 0).copy_to(pooled);
  }, 2.0 * B * S * K * h +
         nl * (2.0 * B * S * (4.0 * h * h + 2.0 * h * M) + 4.0 * B * H * S * S * D));
  st.counters["tokens"] = static_cast<double>(S);
}

// args: method (0 unfold + GEMM, 1 conv2d + transpose copy), batch, image, patch, hidden
void patchify(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t method = a[0], B = a[1], I = a[2], p = a[3], h = a[4];
  const std::int64_t C = 3, g = I / p, N = g * g, S = N + 1, K = C * p * p;
  const lc::DType dt = lc::DType::f32;
  lc::Tensor img = make({B, C, I, I}, dev, dt, 1, 1.0f);
  lc::Tensor w = make({h, K}, dev, dt, 2, 1.0f / std::sqrt(static_cast<float>(K)));
  lc::Tensor w4 = w.reshape({h, C, p, p}), bias = make({h}, dev, dt, 3, 0.02f);
  lc::Tensor tokens = lc::Tensor::empty({B, S, h}, dt, dev);
  lc::Tensor P = zero_cls_rows(lc::Tensor::empty({B, S, K}, dt, dev));
  lc::Tensor conv_out = lc::Tensor::empty({B, h, g, g}, dt, dev);
  // conv's [B, h, N] transposed into tokens[:, 1:]
  lc::Tensor conv_src = conv_out.reshape({B, h, N}).permute({0, 2, 1});
  lc::Tensor tok_rows = tokens.slice(1, 1, S, 1);
  const lc::ExecutionPolicy pol = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] {
    if (method == 0) {
      unfold_into(img, P, p);
      lc::linear_into(P, w, nullptr, lc::Activation::none, tokens, pol);
    } else {
      lc::conv2d_nchw_into(img, w4, &bias, static_cast<int>(p), static_cast<int>(p), 0, 0,
                           lc::Activation::none, conv_out, pol);
      conv_src.copy_to(tok_rows);
    }
  }, 2.0 * B * N * K * h);
}

void add_rows(const char* name, lc::DeviceKind dev, const std::vector<std::string>& arg_names,
              const std::vector<std::vector<std::int64_t>>& sets, lcbench::BenchFn fn) {
  for (const auto& args : sets) {
    std::string full = std::string(name) + "/" + lcbench::dev_name(dev);
    for (std::size_t i = 0; i < args.size(); ++i)
      full += "/" + arg_names[i] + ":" + std::to_string(args[i]);
    benchmark::RegisterBenchmark(full.c_str(), [fn, dev, args](benchmark::State& st) {
      if (!lcbench::device_ready(st, dev)) return;
      fn(st, dev, args);
    })->UseManualTime()->Unit(benchmark::kMillisecond);
  }
}

[[maybe_unused]] const bool registered = [] {
  const std::vector<std::string> names = {"batch", "image", "patch", "hidden", "heads", "mlp",
                                          "layers", "bf16"};
  for (lc::DeviceKind dev : {lc::DeviceKind::cpu, lc::DeviceKind::cuda}) {
    std::vector<std::vector<std::int64_t>> sets;
    const std::vector<std::int64_t> batches =
        dev == lc::DeviceKind::cuda ? std::vector<std::int64_t>{1, 8, 64} : std::vector<std::int64_t>{1, 8};
    for (std::int64_t bf16 : {0, 1}) {
      for (std::int64_t b : batches) sets.push_back({b, 224, 16, 768, 12, 3072, 12, bf16});  // ViT-B/16
      for (std::int64_t b : batches) sets.push_back({b, 224, 16, 192, 3, 768, 12, bf16});   // ViT-Ti/16
    }
    add_rows("vit", dev, names, sets, vit);
    std::vector<std::vector<std::int64_t>> psets;
    for (std::int64_t m : {0, 1})
      for (std::int64_t b : {1, 8}) psets.push_back({m, b, 224, 16, 768});
    add_rows("patchify", dev, {"method", "batch", "image", "patch", "hidden"}, psets, patchify);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
