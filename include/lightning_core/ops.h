// The op API. Every op has a returning form and an `_into` form that writes a caller's buffer.
// Inputs may live on any device and have any strides (non-contiguous inputs are copied once);
// placement follows the policy (see placement.h). On any error nothing is written to `out`.
//
// Where results land (returning forms): on the device the op ran on when policy.download is
// false or every input already lives there; in host memory otherwise.
#pragma once

#include <array>
#include <span>

#include "lightning_core/ew_program.h"
#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"

namespace lc {

// Placement of the last op this thread ran (for explain/trace and tests).
struct OpReport {
  const char* op = "";
  DeviceKind device = DeviceKind::cpu;
  const char* path = "direct";  // "direct" | "fallback" (a requested device could not run it)
  std::string reason;
  // The implementation the backend chose where it has several (CUDA attention in float16 /
  // bfloat16: "cudnn" or "own"; docs/attention.md); "" when it did not say.
  const char* impl = "";
};
const OpReport& last_op_report();

// Shape inference: runs the op's argument checks (same exceptions as the op) and returns the
// result's shape, so a caller (the Python bindings) can allocate `out` before calling `_into`.
std::vector<std::int64_t> matmul2d_out_shape(const Tensor& a, const Tensor& b);
std::vector<std::int64_t> linear_out_shape(const Tensor& x, const Tensor& w, const Tensor* bias,
                                           const Tensor* residual = nullptr);
std::vector<std::int64_t> matmul_out_shape(const Tensor& a, const Tensor& b);
std::vector<std::int64_t> attention2d_out_shape(const Tensor& q, const Tensor& k, const Tensor& v);
std::vector<std::int64_t> conv2d_nchw_out_shape(const Tensor& x, const Tensor& w, const Tensor* bias,
                                                int stride_h, int stride_w, int pad_h, int pad_w);
std::vector<std::int64_t> layernorm_out_shape(const Tensor& x, const Tensor* gamma,
                                              const Tensor* beta, float eps,
                                              const Tensor* residual = nullptr);
std::vector<std::int64_t> softmax_out_shape(const Tensor& x, float scale = 1.0f,
                                            const Tensor* mask = nullptr);
std::vector<std::int64_t> elementwise_out_shape(const char* op_name, const Tensor& a, const Tensor* b);
// numpy's broadcast of a's and b's shapes (ValueError naming `op` and both shapes if they do not
// broadcast).
std::vector<std::int64_t> broadcast_shapes(const char* op, const Tensor& a, const Tensor& b);
std::vector<std::int64_t> embedding_out_shape(const Tensor& ids, const Tensor& weight);

// ---- matrix products ------------------------------------------------------------------------
// Storage dtypes: float32, float16, bfloat16 (any device), float64 (computed on the CPU
// whatever the policy asks); every tensor argument has the same dtype, and so does the result.
// Products accumulate in float32 (float64 for float64). policy.precision (fp32 / tf32 / bf16)
// is the compute mode of float32 storage only: 16-bit storage always multiplies in its own type
// with float32 accumulation, float64 is always exact. Empty sizes are legal: k == 0 gives
// act(bias + residual) (zeros without them), as numpy's empty sum.
//
// a[m,k] @ b[k,n], both 2-D.
Tensor matmul2d(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy());
void matmul2d_into(const Tensor& a, const Tensor& b, Tensor& out,
                   const ExecutionPolicy& p = current_policy());
// y = act(x[..., in] @ w[out,in]^T + bias[out] + residual[..., out]) (torch nn.Linear layout).
// The residual (optional, exactly the result's shape) is added before the activation, as
// cuBLASLt's C operand (beta = 1) is; with act = none (the transformer's x + proj(h)) the order
// does not matter.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias, Activation act,
              const ExecutionPolicy& p = current_policy(), const Tensor* residual = nullptr);
void linear_into(const Tensor& x, const Tensor& w, const Tensor* bias, Activation act, Tensor& out,
                 const ExecutionPolicy& p = current_policy(), const Tensor* residual = nullptr);
// torch.matmul / numpy.matmul semantics: a 1-D a is [1, k] and a 1-D b is [k, 1] (that
// dimension is removed from the result); leading batch dimensions of >= 3-D operands broadcast
// numpy-style ([2, 1, m, k] @ [3, k, n] -> [2, 3, m, n]). One strided-batched GEMM where the
// batch layout allows (a broadcast operand repeats with stride 0), a few otherwise.
Tensor matmul(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy());
void matmul_into(const Tensor& a, const Tensor& b, Tensor& out,
                 const ExecutionPolicy& p = current_policy());

// ---- attention (single head) --------------------------------------------------------------
// scale <= 0 means 1/sqrt(d).
Tensor attention2d(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                   const ExecutionPolicy& p = current_policy(), float scale = 0.0f);
void attention2d_into(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, bool causal,
                      const ExecutionPolicy& p = current_policy(), float scale = 0.0f);

// ---- attention (batched multi-head / grouped-query) ----------------------------------------
// out = softmax(q k^T * scale + mask) v per (batch, head), src/ops/attention_mha.cpp.
//   q [B, H, Sq, D], k [B, Hk, Sk, D], v [B, Hk, Sk, Dv] with Hk dividing H (head h reads
//   key/value head h / (H / Hk): grouped-query and multi-query attention without copying K/V);
//   [H, Sq, D] / [Hk, Sk, D] and [Sq, D] / [Sk, D] are accepted too (B = 1, and H = Hk = 1).
//   out: q's shape with Dv last, q's dtype. Inputs may be strided views (any strides; a
//   non-unit last stride is staged contiguous).
// dtypes: float32, float16, bfloat16 (q, k, v the same; float32 accumulation and softmax) and
//   float64 on the CPU only (computed in float64).
// causal: query i sees keys j <= i + Sk - Sq (bottom-right aligned, as torch's and
//   FlashAttention's causal masks with Sq != Sk; Sq == Sk is the usual lower triangle).
// mask (optional): an integer (int32 / int64) keep mask, nonzero = attend: 2-D [B, Sk] is a
//   key-padding mask, other ranks broadcast right-aligned to [B, H, Sq, Sk]; or an additive
//   float mask of q's dtype broadcast right-aligned to [B, H, Sq, Sk] (-inf hides a key).
//   Broadcasting uses strides: the mask is never expanded in memory.
// A row that sees no key (all masked; causal rows i < Sq - Sk) is all zeros, never NaN, and its
//   lse is -inf.
// lse (optional): [B, H, Sq] (q's leading dims) float32, the natural log-sum-exp of the row's
//   scaled, masked scores (the backward needs it). attention() assigns a new tensor to *lse
//   (where the result lives); attention_into() writes into the caller's *lse. scale <= 0 means
//   1/sqrt(D). docs/attention.md has the whole contract.
std::vector<std::int64_t> attention_out_shape(const Tensor& q, const Tensor& k, const Tensor& v);
// The same, also validating a mask (nullptr: none) against q / k (shape and dtype).
std::vector<std::int64_t> attention_out_shape(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const Tensor* mask);
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                 const Tensor* mask = nullptr, float scale = 0.0f,
                 const ExecutionPolicy& p = current_policy(), Tensor* lse = nullptr);
// `lse`, when given, is a contiguous float32 tensor of q's leading shape (any device), written too.
// `out` may be a strided view whose elements do not share memory, e.g. the merged-heads buffer
// [B, Sq, H, Dv] permuted to [B, H, Sq, Dv]: on the op's device with a unit-stride last dimension
// and no memory shared with an input it is written in place through its strides (no copy),
// else through scratch and one strided copy. Nothing is written when the call is refused.
void attention_into(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
                    bool causal = false, const Tensor* mask = nullptr, float scale = 0.0f,
                    const ExecutionPolicy& p = current_policy(), Tensor* lse = nullptr);
// The backward of attention(): {dq, dk, dv} (q's, k's and v's shapes, q's dtype) from dout
//   (out's shape), the forward's q, k, v, its out and its float32 lse (return_lse / *lse), with
//   the forward's causal, mask and scale. P is recomputed tile by tile from q, k and lse: no
//   Sq x Sk matrix is stored. Grouped-query: dk / dv of a key/value head sum over its query
//   heads. Rows with lse = -inf (no visible key) contribute zero. The CPU runs it (float32,
//   float16, bfloat16 with float32 accumulation; float64 in float64, its lse recomputed in
//   float64); device="cuda" throws Unavailable (not implemented yet), "auto" runs on the CPU.
//   attention_backward_into writes contiguous dq / dk / dv of exactly those shapes and dtype
//   (nothing is written when a check fails). src/ops/attention_mha.cpp.
std::array<Tensor, 3> attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const Tensor& out, const Tensor& lse,
                                         bool causal = false, const Tensor* mask = nullptr,
                                         float scale = 0.0f,
                                         const ExecutionPolicy& p = current_policy());
void attention_backward_into(const Tensor& dout, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out, const Tensor& lse, Tensor& dq,
                             Tensor& dk, Tensor& dv, bool causal = false,
                             const Tensor* mask = nullptr, float scale = 0.0f,
                             const ExecutionPolicy& p = current_policy());

// ---- convolution --------------------------------------------------------------------------
Tensor conv2d_nchw(const Tensor& x, const Tensor& w, const Tensor* bias, int stride_h,
                   int stride_w, int pad_h, int pad_w, Activation act = Activation::none,
                   const ExecutionPolicy& p = current_policy());
void conv2d_nchw_into(const Tensor& x, const Tensor& w, const Tensor* bias, int stride_h,
                      int stride_w, int pad_h, int pad_w, Activation act, Tensor& out,
                      const ExecutionPolicy& p = current_policy());

// ---- normalisation ------------------------------------------------------------------------
// y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta over the last dimension, where
// s = x + residual (the fused residual add + layernorm; residual optional, exactly x's shape
// and dtype, summed in float32 as the row is read) or s = x.
Tensor layernorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps = 1e-5f,
                 const ExecutionPolicy& p = current_policy(), const Tensor* residual = nullptr);
void layernorm_into(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                    Tensor& out, const ExecutionPolicy& p = current_policy(),
                    const Tensor* residual = nullptr);
// softmax(x * scale + mask) over the last dimension: scale finite > 0 (1: none); mask optional,
// additive, x's dtype, broadcasting against x with x's last dimension and the others x's sizes
// or 1 in at most two runs of x's sizes (src/ops/registry.h softmax_mask_layout), e.g. [S, S],
// [B, 1, 1, S] or [B, 1, S, S] for attention scores [B, H, S, S], read in place; -inf entries
// weigh 0 (a row of only -inf is NaN).
Tensor softmax(const Tensor& x, const ExecutionPolicy& p = current_policy(), float scale = 1.0f,
               const Tensor* mask = nullptr);
void softmax_into(const Tensor& x, Tensor& out, const ExecutionPolicy& p = current_policy(),
                  float scale = 1.0f, const Tensor* mask = nullptr);

// ---- elementwise --------------------------------------------------------------------------
// Storage dtypes: float32, float16, bfloat16 (computed in float32), and float64 on the CPU only
// (float64 ops are placed on the CPU; device="cuda" runs them there as a fallback). The result
// has the inputs' dtype; a and b of different dtypes are a TypeError. Zero-size inputs give
// empty results.
// op_name: "vector_add" | "vector_sub" | "vector_mul" | "matrix_sub" (binary, same shapes),
// "vector_scale" (alpha), "relu" | "gelu" (unary; gelu is the tanh approximation),
// "add" | "sub" | "mul" | "div" (binary with numpy broadcasting).
Tensor elementwise(const char* op_name, const Tensor& a, const Tensor* b, float alpha = 1.0f,
                   const ExecutionPolicy& p = current_policy());
void elementwise_into(const char* op_name, const Tensor& a, const Tensor* b, float alpha,
                      Tensor& out, const ExecutionPolicy& p = current_policy());

// a (op) b with numpy broadcasting (the result has the broadcast shape; operands may be views
// with any strides, read in place on their device).
Tensor add(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy());
Tensor sub(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy());
Tensor mul(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy());
Tensor div(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy());
void add_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p = current_policy());
void sub_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p = current_policy());
void mul_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p = current_policy());
void div_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p = current_policy());
// GELU. approximate = "tanh" (the default, what gelu has always computed:
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))) or "none" (exact: 0.5 x (1 + erf(x/sqrt 2)),
// torch's default). Anything else is a ValueError.
Tensor gelu(const Tensor& x, const char* approximate = "tanh",
            const ExecutionPolicy& p = current_policy());
void gelu_into(const Tensor& x, Tensor& out, const char* approximate = "tanh",
               const ExecutionPolicy& p = current_policy());

// ---- elementwise programs ------------------------------------------------------------------
// One kernel evaluates `prog` (ew_program.h) per element of the numpy broadcast of the inputs'
// shapes: inputs[k] is the program's x<k> (1 to 6 inputs; each may be a lower-rank or size-1
// broadcast operand, any strides, any of float32 / float16 / bfloat16 / float64 storage). The
// result has inputs[0]'s dtype; computed in float32 (float64 when the result is float64, on the
// CPU only). A program that reads x<k> with k >= inputs.size() is a ValueError. src/ops/ew_program.cpp.
std::vector<std::int64_t> elementwise_program_out_shape(std::span<const Tensor* const> inputs);
Tensor elementwise_program(const EwProgram& prog, std::span<const Tensor* const> inputs,
                           const ExecutionPolicy& p = current_policy());
void elementwise_program_into(const EwProgram& prog, std::span<const Tensor* const> inputs,
                              Tensor& out, const ExecutionPolicy& p = current_policy());

// ---- recurrent ----------------------------------------------------------------------------
// One LSTM layer over a sequence, torch.nn.LSTM's layout and gate order (i, f, g, o): returns
// {y, h_n, c_n}. x is [T, B, I] ([B, T, I] when batch_first), h0 / c0 [B, H] or [1, B, H],
// w_ih [4H, I], w_hh [4H, H], b_ih / b_hh [4H] (nullptr: no bias); y is [T, B, H] ([B, T, H]
// when batch_first), h_n / c_n have h0's shape (T == 0: copies of h0 / c0). float32, float16,
// bfloat16 (all inputs one dtype), float32 accumulation and cell state. One GEMM x w_ih^T for
// every step, then per step one GEMM and one fused pointwise pass; on CUDA the step loop replays
// as one captured CUDA graph. lstm_into writes contiguous y / h_n / c_n of exactly those shapes
// (nothing is written when a check fails). src/ops/lstm.cpp, docs/lstm.md.
std::vector<std::int64_t> lstm_out_shape(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                         const Tensor& w_ih, const Tensor& w_hh,
                                         const Tensor* b_ih = nullptr,
                                         const Tensor* b_hh = nullptr, bool batch_first = false);
std::array<Tensor, 3> lstm(const Tensor& x, const Tensor& h0, const Tensor& c0,
                           const Tensor& w_ih, const Tensor& w_hh, const Tensor* b_ih = nullptr,
                           const Tensor* b_hh = nullptr, bool batch_first = false,
                           const ExecutionPolicy& p = current_policy());
void lstm_into(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
               const Tensor& w_hh, const Tensor* b_ih, const Tensor* b_hh, Tensor& y,
               Tensor& h_n, Tensor& c_n, bool batch_first = false,
               const ExecutionPolicy& p = current_policy());

// ---- embedding ----------------------------------------------------------------------------
// out[..., :] = weight[ids[...], :]: ids int32/int64 of any shape, weight [V, D] float32 /
// float16 / bfloat16; the result is ids.shape + [D] in weight's dtype. An id outside [0, V) is
// a ValueError (naming the id and V) raised before anything is written; for ids on the GPU the
// check costs one small kernel and a synchronisation per call.
Tensor embedding(const Tensor& ids, const Tensor& weight, const ExecutionPolicy& p = current_policy());
void embedding_into(const Tensor& ids, const Tensor& weight, Tensor& out,
                    const ExecutionPolicy& p = current_policy());

}  // namespace lc
