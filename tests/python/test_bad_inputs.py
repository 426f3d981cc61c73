"""Bad inputs: the right exception type, a message that starts with "[op]", names the shapes and
says how to fix the call, an `out` left exactly as it was, and a runtime that keeps working.

Contract (issue): wrong dtype -> TypeError; wrong ndim / shape / mismatched inner dims / bad
stride or padding / `out` of the wrong shape, dtype, non-contiguous or read-only -> ValueError;
the wrong `out` dtype raises lightning_core.OutDTypeError, a subclass of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import lightning_core as lc
from conftest import CUDA

F32 = np.float32
SENTINEL = 7.25  # a value no op below would produce by accident


def z(*shape, dtype=F32):
    return np.ones(shape, dtype=dtype)


def sentinel(*shape, dtype=F32):
    return np.full(shape, SENTINEL, dtype=dtype)


def poisoned(*shape):
    return np.full(shape, np.nan, dtype=F32)


def readonly(*shape):
    a = sentinel(*shape)
    a.flags.writeable = False
    return a


def noncontig(*shape):
    # right shape, transposed (Fortran) layout
    return np.asfortranarray(sentinel(*shape))


@dataclass
class Bad:
    id: str
    op: str
    exc: type
    call: Callable  # call(out) -> raises
    out: Callable  # () -> out (numpy or lc.Tensor)
    must_contain: tuple = ()
    returning: Callable | None = None  # the same error through the returning form


# Shorthands for valid arguments.
A34, B45, OUT35 = z(3, 4), z(4, 5), (3, 5)
Q, K, V = z(5, 8), z(7, 8), z(7, 3)
X4, W4 = z(2, 3, 8, 8), z(4, 3, 3, 3)

TE, VE, ODE = TypeError, ValueError, lc.OutDTypeError

CASES = [
    # ---- matmul2d -----------------------------------------------------------------------------
    Bad("mm-a-float64", "matmul2d", TE, lambda o: lc.matmul2d_into(z(3, 4, dtype=np.float64), B45, o, "cpu"),
        lambda: poisoned(3, 5), ("float64", "float32", "[3, 4]", "[4, 5]", "astype"),
        lambda: lc.matmul2d(z(3, 4, dtype=np.float64), B45, "cpu")),
    Bad("mm-b-int32", "matmul2d", TE, lambda o: lc.matmul2d_into(A34, z(4, 5, dtype=np.int32), o, "cpu"),
        lambda: sentinel(3, 5), ("int32",), lambda: lc.matmul2d(A34, z(4, 5, dtype=np.int32))),
    Bad("mm-a-1d", "matmul2d", VE, lambda o: lc.matmul2d_into(z(4), B45, o, "cpu"),
        lambda: sentinel(3, 5), ("2-D", "1-D", "[4]"), lambda: lc.matmul2d(z(4), B45)),
    Bad("mm-b-3d", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, z(1, 4, 5), o, "cpu"),
        lambda: sentinel(3, 5), ("3-D", "[1, 4, 5]")),
    Bad("mm-inner-mismatch", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, z(5, 5), o, "cpu"),
        lambda: poisoned(3, 5), ("[3, 4]", "[5, 5]", "a[m,k] @ b[k,n]"),
        lambda: lc.matmul2d(A34, z(5, 5), "cpu")),
    Bad("mm-out-shape", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, B45, o, "cpu"),
        lambda: sentinel(5, 3), ("[5, 3]", "[3, 5]", "allocate")),
    Bad("mm-out-float64", "matmul2d", ODE, lambda o: lc.matmul2d_into(A34, B45, o, "cpu"),
        lambda: sentinel(3, 5, dtype=np.float64), ("float64", "np.empty([3, 5], dtype=np.float32)")),
    Bad("mm-out-noncontig", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, B45, o, "cpu"),
        lambda: noncontig(3, 5), ("contiguous", "[3, 5]")),
    Bad("mm-out-readonly", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, B45, o, "cpu"),
        lambda: readonly(3, 5), ("read-only",)),
    # (empty sizes are computed, not refused: tests/python/test_matmul_family.py)
    Bad("mm-a-none", "matmul2d", TE, lambda o: lc.matmul2d_into(None, B45, o, "cpu"),
        lambda: sentinel(3, 5), ("None",), lambda: lc.matmul2d(None, B45)),
    Bad("mm-a-string", "matmul2d", TE, lambda o: lc.matmul2d_into("abc", B45, o, "cpu"),
        lambda: sentinel(3, 5), ("float32",)),
    Bad("mm-device-foo", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, B45, o, "foo"),
        lambda: sentinel(3, 5), ("foo", "cpu"), lambda: lc.matmul2d(A34, B45, "foo")),
    Bad("mm-device-metal", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, B45, o, "metal"),
        lambda: poisoned(3, 5), ("metal", "cpu"), lambda: lc.matmul2d(A34, B45, "metal")),
    Bad("mm-device-not-a-string", "matmul2d", TE, lambda o: lc.matmul2d_into(A34, B45, o, 3),
        lambda: sentinel(3, 5), ("device",)),
    Bad("mm-tensor-out-shape", "matmul2d", VE,
        lambda o: lc.matmul2d_into(lc.Tensor(A34), lc.Tensor(B45), o, "cpu"),
        lambda: lc.Tensor(sentinel(3, 4)), ("[3, 4]", "[3, 5]")),
    Bad("mm-tensor-a-float64", "matmul2d", TE,
        lambda o: lc.matmul2d_into(lc.Tensor(A34, dtype="float64"), lc.Tensor(B45), o, "cpu"),
        lambda: lc.Tensor(sentinel(3, 5)), ("float64",)),
    # ---- linear -------------------------------------------------------------------------------
    Bad("linear-weight-not-torch-layout", "linear", VE, lambda o: lc.linear_into(z(3, 4), z(4, 6), None, o),
        lambda: sentinel(3, 6), ("[3, 4]", "[4, 6]", "out_features, in_features"),
        lambda: lc.linear(z(3, 4), z(4, 6))),
    Bad("linear-bias-length", "linear", VE, lambda o: lc.linear_into(z(3, 4), z(6, 4), z(4), o),
        lambda: sentinel(3, 6), ("bias", "6", "[4]"), lambda: lc.linear(z(3, 4), z(6, 4), z(4))),
    Bad("linear-bias-2d", "linear", VE, lambda o: lc.linear_into(z(3, 4), z(6, 4), z(1, 6), o),
        lambda: sentinel(3, 6), ("bias", "[1, 6]")),
    Bad("linear-bias-float64", "linear", TE,
        lambda o: lc.linear_into(z(3, 4), z(6, 4), z(6, dtype=np.float64), o),
        lambda: sentinel(3, 6), ("bias", "float64")),
    Bad("linear-x-float16", "linear", TE, lambda o: lc.linear_into(z(3, 4, dtype=np.float16), z(6, 4), None, o),
        lambda: sentinel(3, 6), ("float16",), lambda: lc.linear(z(3, 4, dtype=np.float16), z(6, 4))),
    Bad("linear-activation-unknown", "linear", VE,
        lambda o: lc.linear_into(z(3, 4), z(6, 4), None, o, "tanh"),
        lambda: sentinel(3, 6), ("tanh", "relu", "gelu"), lambda: lc.linear(z(3, 4), z(6, 4), None, "tanh")),
    Bad("linear-out-transposed-shape", "linear", VE, lambda o: lc.linear_into(z(3, 4), z(6, 4), None, o),
        lambda: sentinel(6, 3), ("[6, 3]", "[3, 6]")),
    Bad("linear-x-3d-out-shape", "linear", VE, lambda o: lc.linear_into(z(2, 3, 4), z(6, 4), None, o),
        lambda: sentinel(3, 6), ("[2, 3, 6]",)),
    # ---- attention2d --------------------------------------------------------------------------
    Bad("attn-head-dim-mismatch", "attention2d", VE, lambda o: lc.attention2d_into(Q, z(7, 6), V, o),
        lambda: poisoned(5, 3), ("[5, 8]", "[7, 6]", "head dimension"),
        lambda: lc.attention2d(Q, z(7, 6), V)),
    Bad("attn-kv-seq-mismatch", "attention2d", VE, lambda o: lc.attention2d_into(Q, K, z(6, 3), o, True),
        lambda: sentinel(5, 3), ("[7, 8]", "[6, 3]", "sequence length"),
        lambda: lc.attention2d(Q, K, z(6, 3), True)),
    Bad("attn-q-3d", "attention2d", VE, lambda o: lc.attention2d_into(z(1, 5, 8), K, V, o),
        lambda: sentinel(5, 3), ("[1, 5, 8]", "2-D")),
    Bad("attn-v-float64", "attention2d", TE, lambda o: lc.attention2d_into(Q, K, z(7, 3, dtype=np.float64), o),
        lambda: sentinel(5, 3), ("'v'", "float64")),
    Bad("attn-k-float16", "attention2d", TE, lambda o: lc.attention2d_into(Q, z(7, 8, dtype=np.float16), V, o),
        lambda: sentinel(5, 3), ("'k'", "float16", "float32"),
        lambda: lc.attention2d(Q, z(7, 8, dtype=np.float16), V)),
    Bad("attn-out-float32-for-float16", "attention2d", ODE,
        lambda o: lc.attention2d_into(z(5, 8, dtype=np.float16), z(7, 8, dtype=np.float16),
                                      z(7, 3, dtype=np.float16), o),
        lambda: sentinel(5, 3), ("float16",)),
    Bad("attn-scale-zero", "attention2d", VE, lambda o: lc.attention2d_into(Q, K, V, o, scale=0.0),
        lambda: sentinel(5, 3), ("scale",), lambda: lc.attention2d(Q, K, V, scale=0.0)),
    Bad("attn-scale-negative", "attention2d", VE, lambda o: lc.attention2d_into(Q, K, V, o, scale=-1.0),
        lambda: sentinel(5, 3), ("scale",)),
    Bad("attn-scale-nan", "attention2d", VE, lambda o: lc.attention2d_into(Q, K, V, o, scale=float("nan")),
        lambda: sentinel(5, 3), ("scale",)),
    Bad("attn-scale-not-a-number", "attention2d", TE, lambda o: lc.attention2d_into(Q, K, V, o, scale="x"),
        lambda: sentinel(5, 3), ("scale", "number"), lambda: lc.attention2d(Q, K, V, scale="x")),
    Bad("attn-out-shape-d-not-dv", "attention2d", VE, lambda o: lc.attention2d_into(Q, K, V, o),
        lambda: sentinel(5, 8), ("[5, 8]", "[5, 3]")),
    Bad("attn-k-empty", "attention2d", VE, lambda o: lc.attention2d_into(Q, z(0, 8), z(0, 3), o),
        lambda: sentinel(5, 3), ("empty",)),
    Bad("attn-out-float64-tensor", "attention2d", ODE,
        lambda o: lc.attention2d_into(lc.Tensor(Q), lc.Tensor(K), lc.Tensor(V), o),
        lambda: lc.Tensor(sentinel(5, 3), dtype="float64"), ("float64",)),
    # ---- conv2d_nchw --------------------------------------------------------------------------
    Bad("conv-x-3d", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(z(3, 8, 8), W4, None, o),
        lambda: sentinel(2, 4, 6, 6), ("4-D", "[3, 8, 8]"), lambda: lc.conv2d_nchw(z(3, 8, 8), W4)),
    Bad("conv-channel-mismatch", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(X4, z(4, 2, 3, 3), None, o),
        lambda: poisoned(2, 4, 6, 6), ("[2, 3, 8, 8]", "[4, 2, 3, 3]", "channel")),
    Bad("conv-stride-zero", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(X4, W4, None, o, 0, 1),
        lambda: sentinel(2, 4, 6, 6), ("stride", "stride_h=0"), lambda: lc.conv2d_nchw(X4, W4, None, 0, 1)),
    Bad("conv-stride-negative", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(X4, W4, None, o, 1, -2),
        lambda: sentinel(2, 4, 6, 6), ("stride_w=-2",)),
    Bad("conv-padding-negative", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(X4, W4, None, o, 1, 1, -1, 0),
        lambda: sentinel(2, 4, 6, 6), ("pad_h must be >= 0", "pad_h=-1"), lambda: lc.conv2d_nchw(X4, W4, None, 1, 1, -1, 0)),
    Bad("conv-kernel-too-large", "conv2d_nchw", VE,
        lambda o: lc.conv2d_nchw_into(z(1, 3, 2, 2), W4, None, o),
        lambda: sentinel(1, 4, 1, 1), ("kernel 3x3", "2x2", "padding")),
    Bad("conv-bias-length", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(X4, W4, z(3), o),
        lambda: sentinel(2, 4, 6, 6), ("bias", "4", "[3]")),
    Bad("conv-weight-float64", "conv2d_nchw", TE,
        lambda o: lc.conv2d_nchw_into(X4, z(4, 3, 3, 3, dtype=np.float64), None, o),
        lambda: sentinel(2, 4, 6, 6), ("weight", "float64")),
    Bad("conv-out-shape", "conv2d_nchw", VE, lambda o: lc.conv2d_nchw_into(X4, W4, None, o, 1, 1, 1, 1),
        lambda: sentinel(2, 4, 6, 6), ("[2, 4, 6, 6]", "[2, 4, 8, 8]")),
    Bad("conv-activation-unknown", "conv2d_nchw", VE,
        lambda o: lc.conv2d_nchw_into(X4, W4, None, o, activation="swish"),
        lambda: sentinel(2, 4, 6, 6), ("swish",), lambda: lc.conv2d_nchw(X4, W4, activation="swish")),
    # ---- layernorm ----------------------------------------------------------------------------
    Bad("ln-gamma-length", "layernorm", VE, lambda o: lc.layernorm_into(z(4, 6), z(5), None, o),
        lambda: poisoned(4, 6), ("gamma", "6", "[5]"), lambda: lc.layernorm(z(4, 6), z(5))),
    Bad("ln-beta-2d", "layernorm", VE, lambda o: lc.layernorm_into(z(4, 6), None, z(1, 6), o),
        lambda: sentinel(4, 6), ("beta", "[1, 6]")),
    Bad("ln-eps-zero", "layernorm", VE, lambda o: lc.layernorm_into(z(4, 6), None, None, o, 0.0),
        lambda: sentinel(4, 6), ("eps",), lambda: lc.layernorm(z(4, 6), eps=0.0)),
    Bad("ln-eps-negative", "layernorm", VE, lambda o: lc.layernorm_into(z(4, 6), None, None, o, -1e-5),
        lambda: sentinel(4, 6), ("eps",)),
    Bad("ln-x-0d", "layernorm", VE, lambda o: lc.layernorm_into(np.array(1.0, F32), None, None, o),
        lambda: np.array(SENTINEL, F32), ("dimension",)),
    Bad("ln-x-int64", "layernorm", TE, lambda o: lc.layernorm_into(z(4, 6, dtype=np.int64), None, None, o),
        lambda: sentinel(4, 6), ("int64",)),
    Bad("ln-gamma-float64", "layernorm", TE, lambda o: lc.layernorm_into(z(4, 6), z(6, dtype=np.float64), None, o),
        lambda: sentinel(4, 6), ("gamma", "float64")),
    Bad("ln-gamma-float32-x-float16", "layernorm", TE,
        lambda o: lc.layernorm_into(z(4, 6, dtype=np.float16), z(6), None, o),
        lambda: sentinel(4, 6, dtype=np.float16), ("gamma", "float32", "float16"),
        lambda: lc.layernorm(z(4, 6, dtype=np.float16), z(6))),
    Bad("ln-gamma-length-3d", "layernorm", VE, lambda o: lc.layernorm_into(z(2, 3, 6), z(7), None, o),
        lambda: sentinel(2, 3, 6), ("gamma", "[7]", "[2, 3, 6]")),
    # ---- softmax ------------------------------------------------------------------------------
    Bad("softmax-int32", "softmax", TE, lambda o: lc.softmax_into(z(4, 6, dtype=np.int32), o),
        lambda: sentinel(4, 6), ("int32",), lambda: lc.softmax(z(4, 6, dtype=np.int32))),
    Bad("softmax-out-float32-for-float16", "softmax", ODE,
        lambda o: lc.softmax_into(z(4, 6, dtype=np.float16), o), lambda: sentinel(4, 6), ("float16",)),
    Bad("softmax-out-shape", "softmax", VE, lambda o: lc.softmax_into(z(4, 6), o),
        lambda: sentinel(24), ("[24]", "[4, 6]")),
    Bad("softmax-out-readonly", "softmax", VE, lambda o: lc.softmax_into(z(4, 6), o),
        lambda: readonly(4, 6), ("read-only",)),
    Bad("softmax-empty-out-shape", "softmax", VE, lambda o: lc.softmax_into(z(4, 0), o),
        lambda: sentinel(4, 1), ("[4, 1]", "[4, 0]")),
    # ---- elementwise --------------------------------------------------------------------------
    Bad("add-shape-mismatch", "vector_add", VE, lambda o: lc.vector_add_into(z(5), z(6), o),
        lambda: poisoned(5), ("[5]", "[6]", "same shape"), lambda: lc.vector_add(z(5), z(6))),
    Bad("add-no-broadcasting", "vector_add", VE, lambda o: lc.vector_add_into(z(3, 4), z(4), o),
        lambda: sentinel(3, 4), ("[3, 4]", "[4]")),
    Bad("sub-b-float64", "vector_sub", TE, lambda o: lc.vector_sub_into(z(5), z(5, dtype=np.float64), o),
        lambda: sentinel(5), ("'b'", "float64"), lambda: lc.vector_sub(z(5), z(5, dtype=np.float64))),
    Bad("mul-out-shape", "vector_mul", VE, lambda o: lc.vector_mul_into(z(5), z(5), o),
        lambda: sentinel(6), ("[6]", "[5]")),
    Bad("mul-out-noncontig", "vector_mul", VE, lambda o: lc.vector_mul_into(z(5), z(5), o),
        lambda: sentinel(10)[::2], ("contiguous",)),
    Bad("matrix_sub-1d", "matrix_sub", VE, lambda o: lc.matrix_sub_into(z(5), z(5), o),
        lambda: sentinel(5), ("2-D", "1-D"), lambda: lc.matrix_sub(z(5), z(5))),
    Bad("matrix_sub-3d", "matrix_sub", VE, lambda o: lc.matrix_sub_into(z(2, 2, 2), z(2, 2, 2), o),
        lambda: sentinel(2, 2, 2), ("3-D",)),
    Bad("scale-out-float64", "vector_scale", ODE, lambda o: lc.vector_scale_into(z(5), 2.0, o),
        lambda: sentinel(5, dtype=np.float64), ("float64",)),
    Bad("scale-a-int", "vector_scale", TE, lambda o: lc.vector_scale_into(z(5, dtype=np.int32), 2.0, o),
        lambda: sentinel(5), ("int32",), lambda: lc.vector_scale(z(5, dtype=np.int32), 2.0)),
    Bad("relu-out-readonly", "relu", VE, lambda o: lc.relu_into(z(5), o),
        lambda: readonly(5), ("read-only",)),
    Bad("relu-out-float16", "relu", ODE, lambda o: lc.relu_into(z(5), o),
        lambda: sentinel(5, dtype=np.float16), ("float16", "float32")),
    Bad("gelu-int-input", "gelu", TE, lambda o: lc.gelu_into(z(5, dtype=np.int64), o),
        lambda: sentinel(5), ("int64",), lambda: lc.gelu(z(5, dtype=np.int64))),
    Bad("gelu-tensor-out-shape", "gelu", VE, lambda o: lc.gelu_into(lc.Tensor(z(5)), o),
        lambda: lc.Tensor(sentinel(4)), ("[4]", "[5]")),
    Bad("gelu-tensor-out-noncontig", "gelu", VE, lambda o: lc.gelu_into(lc.Tensor(z(2, 3)), o),
        lambda: lc.Tensor(sentinel(3, 2)).t(), ("contiguous",)),
    Bad("add-byteswapped-out", "vector_add", VE, lambda o: lc.vector_add_into(z(5), z(5), o),
        lambda: sentinel(5).astype(">f4"), ("out",)),
]

if not CUDA:
    CASES.append(
        Bad("mm-device-cuda-unavailable", "matmul2d", VE, lambda o: lc.matmul2d_into(A34, B45, o, "cuda"),
            lambda: sentinel(3, 5), ("cuda", "not available", '"cpu"'), lambda: lc.matmul2d(A34, B45, "cuda"))
    )


def snapshot(out):
    if isinstance(out, lc.Tensor):
        return np.array(out.numpy(), copy=True)
    return np.array(out, copy=True)


def assert_runtime_alive():
    a = np.arange(6, dtype=F32).reshape(2, 3)
    b = np.arange(12, dtype=F32).reshape(3, 4)
    np.testing.assert_array_equal(lc.matmul2d(a, b, "cpu"), a @ b)
    out = np.full((2, 3), np.nan, F32)
    lc.vector_add_into(a, a, out)
    np.testing.assert_array_equal(out, a + a)


def check_error(case: Bad, excinfo):
    err = excinfo.value
    msg = str(err)
    # The exact class: TypeError cases must not be ValueErrors and vice versa, except the
    # out-dtype error which is deliberately both.
    if case.exc is ODE:
        assert type(err) is lc.OutDTypeError
        assert isinstance(err, TypeError) and isinstance(err, ValueError)
    elif case.exc is TE:
        assert not isinstance(err, ValueError), f"{type(err).__name__}: {msg}"
    elif case.exc is VE:
        assert not isinstance(err, TypeError), f"{type(err).__name__}: {msg}"
    assert msg.startswith(f"[{case.op}]"), msg
    for s in case.must_contain:
        assert s in msg, f"{s!r} not in message: {msg}"


def test_enough_cases():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    ops = {c.op for c in CASES}
    assert {"matmul2d", "linear", "attention2d", "conv2d_nchw", "layernorm", "softmax"} <= ops


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_into(case):
    out = case.out()
    before = snapshot(out)
    with pytest.raises(case.exc) as ei:
        case.call(out)
    check_error(case, ei)
    after = snapshot(out)
    assert after.dtype == before.dtype and after.shape == before.shape
    assert np.array_equal(after, before, equal_nan=True), "`out` was modified by a failing call"
    assert_runtime_alive()


RETURNING = [c for c in CASES if c.returning is not None]


@pytest.mark.parametrize("case", RETURNING, ids=lambda c: c.id)
def test_bad_input_returning(case):
    with pytest.raises(case.exc) as ei:
        case.returning()
    check_error(case, ei)
    assert_runtime_alive()


def test_out_dtype_error_is_both():
    assert issubclass(lc.OutDTypeError, TypeError)
    assert issubclass(lc.OutDTypeError, ValueError)
    assert issubclass(lc.BackendError, RuntimeError)


def test_invalid_policy_combinations():
    with pytest.raises(ValueError, match=r"^\[ExecutionPolicy\].*download"):
        lc.ExecutionPolicy(device="cpu", download=False)
    with pytest.raises(ValueError, match=r"^\[ExecutionPolicy\].*bf16"):
        lc.ExecutionPolicy(device="cpu", precision="bf16")
    with pytest.raises(ValueError, match=r"^\[ExecutionPolicy\].*upload"):
        lc.ExecutionPolicy(device="cpu", upload="never")
    with pytest.raises(ValueError, match=r"^\[ExecutionPolicy\]"):
        lc.ExecutionPolicy(sync="sometimes")
    assert_runtime_alive()


def test_bad_policy_argument_type():
    out = sentinel(3, 5)
    with pytest.raises(TypeError, match=r"^\[matmul2d\] policy"):
        lc.matmul2d_into(A34, B45, out, policy="fast")
    assert np.all(out == SENTINEL)


def test_many_errors_in_a_row_leave_the_runtime_usable():
    for _ in range(200):
        with pytest.raises(ValueError):
            lc.matmul2d(A34, z(5, 5))
        with pytest.raises(TypeError):
            lc.relu(z(3, dtype=np.int32))
    assert_runtime_alive()
