"""Transformer building blocks shared by the LC models, written once for both execution modes.

Each helper takes ``ops``: the native module (``lightning_core._lightning_core``, eager calls
without the tracer's wrapper) or the ``lightning_core`` package itself, whose op functions the
graph tracer replaces while ``lc.compile`` traces (docs/graph.md), so one body serves eager and
graph mode. The views (``view`` / ``permute`` / ``reshape``) are methods of both ``lc.Tensor``
and the tracer's proxies.

Used by `VisionEncoder` (_vit.py); `TransformerEncoder` (_bert.py) runs the same steps.
"""
from __future__ import annotations

__all__ = ["self_attention", "mlp_up", "MLP_ACTIVATIONS"]

# hidden_act values of Hugging Face configs that the MLP supports.
MLP_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


def self_attention(ops, x, qkv_w, qkv_b, heads: int, scale: float, mask=None):
    """Multi-head self-attention up to (not including) the output projection: ``[B, S, h]``.

    Q, K and V are one GEMM with the three weights concatenated (``qkv_w [3h, h]``); the heads
    are strided ``[B, H, S, D]`` views of its result that ``attention`` reads in place, and the
    head merge ``[B, H, S, D] -> [B, S, h]`` is the one copy.

    Parameters
    ----------
    ops : module
        ``_lightning_core`` (eager) or ``lightning_core`` (traced).
    x : lc.Tensor or traced tensor
        ``[B, S, h]``.
    qkv_w, qkv_b : lc.Tensor
        ``[3h, h]`` and ``[3h]`` (bias may be None).
    heads : int
        The number of heads H (h % H == 0).
    scale : float
        The score scale (``1/sqrt(D)``).
    mask : lc.Tensor, optional
        ``attention``'s mask (e.g. an int32 ``[B, S]`` key-padding mask); None: every key.
    """
    B, S, h = x.shape
    D = h // heads
    qkv = ops.linear(x, qkv_w, qkv_b)                                  # [B, S, 3h]
    qkv5 = qkv.view(B, S, 3, heads, D).permute(2, 0, 3, 1, 4)          # [3, B, H, S, D] views
    a = ops.attention(qkv5[0], qkv5[1], qkv5[2], mask=mask, scale=scale)
    return a.permute(0, 2, 1, 3).reshape(B, S, h)                      # the one copy


def mlp_up(ops, x, w, b, act: str):
    """The MLP's first GEMM and its activation, ``act(x w^T + b)``.

    ``"gelu"`` is the exact erf form (a separate ``gelu(approximate="none")``: ``linear``'s fused
    ``"gelu"`` epilogue is the tanh form), ``"gelu_new"`` / ``"gelu_pytorch_tanh"`` the tanh form
    and ``"relu"`` fused into the GEMM.
    """
    if act == "gelu":
        return ops.gelu(ops.linear(x, w, b), approximate="none")
    if act == "relu":
        return ops.linear(x, w, b, activation="relu")
    if act in ("gelu_new", "gelu_pytorch_tanh"):
        return ops.linear(x, w, b, activation="gelu")
    raise ValueError(f"mlp: hidden_act {act!r} is not one of {MLP_ACTIVATIONS}")
