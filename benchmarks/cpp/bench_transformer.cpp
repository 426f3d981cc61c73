// bench_transformer: transformer blocks composed from C++ API ops on resident tensors, with
// preallocated intermediates: FFN (linear+GELU -> linear), LayerNorm -> projection, and a
// single-head self-attention block (LN -> q/k/v projections -> attention -> output projection).
#include "bench_common.h"

namespace {

using lcbench::empty;
using lcbench::randn;

void ffn(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t m = a[0], d = a[1], f = a[2];
  lc::Tensor x = randn({m, d}, dev, 1), w1 = randn({f, d}, dev, 2, 0.036f), b1 = randn({f}, dev, 3, 0.1f),
             w2 = randn({d, f}, dev, 4, 0.018f), b2 = randn({d}, dev, 5, 0.1f), h = empty({m, f}, dev),
             out = empty({m, d}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] {
    lc::linear_into(x, w1, &b1, lc::Activation::gelu, h, p);
    lc::linear_into(h, w2, &b2, lc::Activation::none, out, p);
  }, 4.0 * m * d * f);
}

void ln_proj(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t m = a[0], d = a[1], o = a[2];
  lc::Tensor x = randn({m, d}, dev, 1), g = randn({d}, dev, 2), be = randn({d}, dev, 3),
             w = randn({o, d}, dev, 4, 0.03f), b = randn({o}, dev, 5), h = empty({m, d}, dev),
             out = empty({m, o}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] {
    lc::layernorm_into(x, &g, &be, 1e-5f, h, p);
    lc::linear_into(h, w, &b, lc::Activation::none, out, p);
  }, 2.0 * m * d * o);
}

void attention_block(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t seq = a[0], d = a[1];
  const float ws = 1.0f / static_cast<float>(d) * 8.0f;
  lc::Tensor x = randn({seq, d}, dev, 1), g = randn({d}, dev, 2), be = randn({d}, dev, 3),
             wq = randn({d, d}, dev, 4, ws), wk = randn({d, d}, dev, 5, ws), wv = randn({d, d}, dev, 6, ws),
             wo = randn({d, d}, dev, 7, ws), h = empty({seq, d}, dev), q = empty({seq, d}, dev),
             k = empty({seq, d}, dev), v = empty({seq, d}, dev), att = empty({seq, d}, dev),
             out = empty({seq, d}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] {
    lc::layernorm_into(x, &g, &be, 1e-5f, h, p);
    lc::linear_into(h, wq, nullptr, lc::Activation::none, q, p);
    lc::linear_into(h, wk, nullptr, lc::Activation::none, k, p);
    lc::linear_into(h, wv, nullptr, lc::Activation::none, v, p);
    lc::attention2d_into(q, k, v, att, /*causal=*/true, p);
    lc::linear_into(att, wo, nullptr, lc::Activation::none, out, p);
  }, 8.0 * seq * d * d + 4.0 * seq * seq * d);
}

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("ffn", {"batch", "d_model", "d_ff"}, {{512, 768, 3072}, {1024, 768, 3072}}, ffn);
  lcbench::register_both("ln_proj", {"batch", "d_model", "out"}, {{1024, 1024, 1024}, {2048, 1024, 1024}},
                         ln_proj);
  lcbench::register_both("attention_block", {"seq", "d_model"}, {{256, 64}, {512, 64}, {2048, 128}},
                         attention_block);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
