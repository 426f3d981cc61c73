"""The op parity harness: every op x every available backend against a float64 numpy reference.

Each op is described ONCE as a list of small `OpCase`s (name, input builder, the lc call in its
returning and `_into` forms, a float64 reference and a float32 tolerance). test_ops_parity.py
runs every case on every backend in `conftest.backends` (today "cpu"; "cuda" joins
automatically when a GPU is usable) with every input kind in `INPUT_KINDS`:

  numpy      contiguous float32 numpy arrays
  strided    non-contiguous numpy views (transposed layout / reversed stride-2, with NaN in the
             gaps, so a kernel that reads the padding produces NaN)
  tensor     lc.Tensor inputs resident on the backend (the result is an lc.Tensor there too)
  view       lc.Tensor strided views (Tensor._view) resident on the backend

and both call forms: the returning form, and the `_into` form writing an `out` poisoned with
NaN first (numpy `out` for numpy inputs, an lc.Tensor on the backend for lc inputs), which must
come back fully written (no NaN left) and be the very object passed in.

Tolerance: relative Frobenius error ||y - ref|| / ||ref|| against float64 numpy, computed from
the same float32 inputs. fp32 default 1e-5 (about 100 ulp); exceptions are commented.

Sizes: 1, primes, non-multiples of 4/8/16, and at least one case per op above the CPU backend's
threading threshold (src/backends/cpu: matmul m*n*k >= 96^3, and 2^19..2^31 for the auto-tuned
blas / pooled GEMM choice; attention work >= 2^20 on the blocked path, conv >= 2^20 MACs im2col
path, elementwise >= 2^18 (gelu 2^15), norm >= 2^18).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import lightning_core as lc

F32 = np.float32

# Default fp32 tolerance (relative Frobenius error), used by every op: measured on the CPU
# backend over 400 fresh seeds per case, the worst errors are ~6e-7 (attention through fast_exp
# and the online softmax, matmul/linear with k ~ 100, layernorm over 1000 columns), so 1e-5
# keeps a >10x margin while a wrong mask, scale, padding or a skipped element gives >= 1e-3.
# Attention / conv / long reductions therefore need no looser tolerance on the CPU; should the
# CUDA backend need one (different summation order), set it per device in DEVICE_TOL below and
# say why.
TOL_FP32 = 1e-5
TOL_ATTENTION = TOL_FP32
TOL_CONV = TOL_FP32
TOL_NORM = TOL_FP32
# gelu: in the far negative tail (x ~ -9, gelu ~ 1e-28) e^(-2u) has |2u| ~ 140, so the float32
# rounding of u alone moves the result by 2|u|*eps ~ 1e-5 relative; one-element cases can land
# there. Everywhere else the measured error is < 1e-6.
TOL_GELU = 2e-5


# Per-(device, op) tolerance overrides, e.g. {("cuda", "attention2d"): 2e-5}. Empty: every
# backend meets the case's own tolerance.
DEVICE_TOL: dict = {}


@dataclass(frozen=True)
class OpCase:
    id: str
    op: str  # the op's Python name (messages, grouping)
    inputs: Callable[[np.random.Generator], dict]  # name -> float32 array
    run: Callable[[dict, str], object]  # (inputs, device) -> result
    run_into: Callable[[dict, object, str], object]  # (inputs, out, device) -> out
    ref: Callable[[dict], np.ndarray]  # float64 inputs -> float64 result
    tol: float = TOL_FP32
    big: bool = False  # takes the multi-threaded path on the CPU
    tags: tuple = field(default=())


# ---- float64 references -------------------------------------------------------------------


def gelu64(x):
    """GELU, tanh approximation (types.h: both backends compute this one):
    0.5*x*(1 + tanh(u)), u = sqrt(2/pi)*(x + 0.044715 x^3), evaluated as x / (1 + e^(-2u)),
    the same function without the cancellation of 1 + tanh(u) for very negative x (where the
    plain float64 formula returns 0 while the true value is ~1e-20)."""
    x = np.asarray(x, dtype=np.float64)
    u = np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN inputs (the fuzz suite's)
        return x / (1.0 + np.exp(-2.0 * u))


def act64(y, act):
    if act == "relu":
        return np.maximum(y, 0.0)
    if act == "gelu":
        return gelu64(y)
    assert act == "none"
    return y


def ref_linear(x, w, b, act):
    y = x @ w.T
    if b is not None:
        y = y + b
    return act64(y, act)


def ref_attention(q, k, v, causal, scale=None):
    sq, d = q.shape
    sk = k.shape[0]
    s = (q @ k.T) * (1.0 / np.sqrt(d) if scale is None else scale)
    if causal:
        # top-left aligned: key j is masked for query i when j > i
        mask = np.arange(sk)[None, :] > np.arange(sq)[:, None]
        s = np.where(mask, -np.inf, s)
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return p @ v


def ref_conv2d(x, w, b, sh, sw, ph, pw, act):
    kh, kw = w.shape[2], w.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    y = np.einsum("nchwij,ocij->nohw", win, w)
    if b is not None:
        y = y + b[None, :, None, None]
    return act64(y, act)


def ref_layernorm(x, g, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if g is not None:
        y = y * g
    if b is not None:
        y = y + b
    return y


def ref_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- input kinds --------------------------------------------------------------------------


def strided_copy_of(x: np.ndarray):
    """(buffer, view): a non-contiguous view with x's values over a NaN-filled buffer.

    1-D: every other element, walking backwards (negative stride). N-D: the last two axes are
    stored transposed with 3 padding rows, at an offset of one element.
    """
    if x.ndim == 0:
        buf = np.array(x, dtype=F32, copy=True)
        return buf, buf
    if x.ndim == 1:
        n = x.shape[0]
        buf = np.full(2 * n + 1, np.nan, dtype=F32)
        view = buf[2 * n - 1 :: -2] if n > 0 else buf[0:0]
        view[...] = x
        return buf, view
    shp = x.shape[:-2] + (x.shape[-1], x.shape[-2] + 3)
    buf = np.full(shp, np.nan, dtype=F32)
    view = buf[..., 1 : x.shape[-2] + 1].swapaxes(-1, -2)
    view[...] = x
    return buf, view


def make_input(kind: str, x: np.ndarray, device: str):
    if kind == "numpy":
        return x
    if kind == "strided":
        return strided_copy_of(x)[1]
    if kind == "tensor":
        return lc.Tensor(x, device=device)
    if kind == "view":
        buf, view = strided_copy_of(x)
        t = lc.Tensor(buf, device=device)
        strides = tuple(s // 4 for s in view.strides)
        offset = (view.__array_interface__["data"][0] - buf.__array_interface__["data"][0]) // 4
        return t._view(list(view.shape), list(strides), offset)
    raise AssertionError(kind)


INPUT_KINDS = ("numpy", "strided", "tensor", "view")
LC_KINDS = ("tensor", "view")


def to_host(r) -> np.ndarray:
    if isinstance(r, lc.Tensor):
        return np.array(r.numpy(), copy=True)
    return np.asarray(r)


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    """||y - ref||_F / ||ref||_F; inf if y has NaN/Inf."""
    y = np.asarray(y, dtype=np.float64)
    if y.shape != ref.shape:
        return float("inf")
    if not np.all(np.isfinite(y)):
        return float("inf")
    num = np.linalg.norm((y - ref).ravel())
    # Floor of 1e-30 per element: values that small are below float32's meaningful range for
    # these ops (the backends' exp clamps at e^-88, so gelu(-12) is ~-7e-38 rather than
    # ~-1e-60); without the floor a one-element case with such a value fails on noise.
    den = max(float(np.linalg.norm(ref.ravel())), 1e-30 * np.sqrt(ref.size))
    return float(num / den)


# ---- the cases ----------------------------------------------------------------------------


def _normal(rng, shape, scale=1.0, offset=0.0):
    return (rng.standard_normal(shape) * scale + offset).astype(F32)


def _pos(rng, shape, scale=1.0, offset=0.0):
    del scale, offset
    return rng.uniform(0.5, 1.5, shape).astype(F32)


# Reductions whose result has only a few elements: with signed inputs one output element can
# cancel to ~0 (e.g. x*w + b), and then the relative error of that element -- which *is* the
# relative Frobenius error when there are few elements -- is unbounded although the kernel is
# exact to ~1 ulp of the terms. Such cases draw positive inputs (no cancellation); the sign
# handling is covered by the larger cases, whose norms average over many elements.
def _gen_for(out_numel):
    return _pos if out_numel <= 64 else _normal


def _matmul_cases():
    out = []
    for m, k, n, big in [
        (1, 1, 1, False),
        (1, 7, 1, False),
        (3, 1, 5, False),
        (7, 13, 5, False),
        (17, 33, 65, False),  # non-multiples of 4/8/16 around the vector widths
        (31, 67, 29, False),
        (131, 97, 103, True),  # 1.31M MACs >= 96^3: threaded / blocked or BLAS (or pooled)
        # 3.56M MACs, inside the CPU GEMM tuning window (2^19..2^31): blas or pooled sgemm tiles,
        # chosen by the auto-tuner (tiles that do not divide 173 / 157 evenly)
        (173, 131, 157, True),
    ]:
        out.append(
            OpCase(
                id=f"matmul2d-{m}x{k}x{n}",
                op="matmul2d",
                inputs=lambda r, m=m, k=k, n=n, g=_gen_for(m * n): {"a": g(r, (m, k)), "b": g(r, (k, n))},
                run=lambda A, dev: lc.matmul2d(A["a"], A["b"], dev),
                run_into=lambda A, o, dev: lc.matmul2d_into(A["a"], A["b"], o, dev),
                ref=lambda A: A["a"] @ A["b"],
                big=big,
            )
        )
    return out


def _linear_cases():
    out = []
    for m, i, o, bias, act, big in [
        (1, 1, 1, False, "none", False),
        (1, 1, 1, True, "relu", False),
        (5, 31, 7, True, "none", False),
        (13, 17, 11, False, "relu", False),
        (9, 33, 19, True, "gelu", False),
        (2, 5, 3, False, "gelu", False),
        (129, 97, 101, True, "gelu", True),  # 1.26M MACs: threaded + fused epilogue
        (113, 101, 89, False, "relu", True),
        (150, 129, 139, True, "gelu", True),  # 2.7M MACs: CPU GEMM window, trans_b tiles
    ]:

        def inputs(r, m=m, i=i, o=o, bias=bias, g=_gen_for(m * o)):
            A = {"x": g(r, (m, i)), "w": g(r, (o, i), scale=0.5)}
            if bias:
                A["bias"] = g(r, (o,))
            return A

        out.append(
            OpCase(
                id=f"linear-{m}x{i}->{o}-{'bias' if bias else 'nobias'}-{act}",
                op="linear",
                inputs=inputs,
                run=lambda A, dev, act=act: lc.linear(A["x"], A["w"], A.get("bias"), act, dev),
                run_into=lambda A, out_, dev, act=act: lc.linear_into(
                    A["x"], A["w"], A.get("bias"), out_, act, dev
                ),
                ref=lambda A, act=act: ref_linear(A["x"], A["w"], A.get("bias"), act),
                big=big,
            )
        )
    return out


def _attention_cases():
    out = []
    for sq, sk, d, dv, scale, big in [
        (1, 1, 1, 1, None, False),
        (1, 5, 3, 2, None, False),
        (5, 1, 3, 2, None, False),  # causal: query 0 sees key 0, later queries see it too
        (7, 13, 5, 3, None, False),  # sq < sk
        (13, 7, 9, 11, None, False),  # sq > sk
        (33, 17, 31, 9, 0.37, False),  # explicit scale
        (37, 300, 17, 23, None, False),  # sk > 256: blocked (online softmax) path, one thread
        (150, 300, 67, 45, None, True),  # 5M MACs: blocked path, one task per 32 queries
    ]:
        for causal in (False, True):

            def inputs(r, sq=sq, sk=sk, d=d, dv=dv, g=_gen_for(sq * dv)):
                return {"q": _normal(r, (sq, d)), "k": _normal(r, (sk, d)), "v": g(r, (sk, dv))}

            if scale is None:
                run = lambda A, dev, c=causal: lc.attention2d(A["q"], A["k"], A["v"], c, dev)
                run_into = lambda A, o, dev, c=causal: lc.attention2d_into(
                    A["q"], A["k"], A["v"], o, c, dev
                )
            else:
                run = lambda A, dev, c=causal, s=scale: lc.attention2d(
                    A["q"], A["k"], A["v"], c, dev, scale=s
                )
                run_into = lambda A, o, dev, c=causal, s=scale: lc.attention2d_into(
                    A["q"], A["k"], A["v"], o, c, dev, scale=s
                )
            out.append(
                OpCase(
                    id=f"attention2d-q{sq}-k{sk}-d{d}-dv{dv}-{'causal' if causal else 'full'}"
                    + (f"-scale{scale}" if scale else ""),
                    op="attention2d",
                    inputs=inputs,
                    run=run,
                    run_into=run_into,
                    ref=lambda A, c=causal, s=scale: ref_attention(A["q"], A["k"], A["v"], c, s),
                    tol=TOL_ATTENTION,
                    big=big,
                )
            )
    return out


def _conv_cases():
    out = []
    for xs, ws, bias, (sh, sw, ph, pw), act, big in [
        ((1, 1, 1, 1), (1, 1, 1, 1), False, (1, 1, 0, 0), "none", False),
        ((1, 1, 1, 1), (1, 1, 1, 1), True, (1, 1, 0, 0), "relu", False),
        ((2, 3, 7, 11), (5, 3, 3, 3), True, (1, 1, 1, 1), "relu", False),
        ((1, 2, 13, 17), (3, 2, 5, 2), False, (2, 3, 2, 0), "gelu", False),
        ((3, 5, 9, 6), (7, 5, 1, 1), True, (1, 1, 0, 0), "none", False),  # 1x1
        ((1, 1, 3, 3), (2, 1, 3, 3), True, (1, 1, 2, 2), "none", False),  # pad > kernel/2
        ((2, 7, 31, 29), (13, 7, 3, 3), True, (1, 1, 1, 1), "gelu", True),  # 1.47M MACs: im2col
        ((1, 4, 37, 41), (6, 4, 5, 5), False, (2, 2, 2, 1), "none", True),
    ]:

        def inputs(r, xs=xs, ws=ws, bias=bias):
            n_out = xs[0] * ws[0] * xs[2] * xs[3]  # roughly (before stride / padding)
            g = _gen_for(n_out)
            A = {"x": g(r, xs), "w": g(r, ws, scale=0.5)}
            if bias:
                A["bias"] = g(r, (ws[0],))
            return A

        out.append(
            OpCase(
                id=f"conv2d_nchw-x{'x'.join(map(str, xs))}-w{'x'.join(map(str, ws))}"
                f"-s{sh}{sw}p{ph}{pw}-{'bias' if bias else 'nobias'}-{act}",
                op="conv2d_nchw",
                inputs=inputs,
                run=lambda A, dev, g=(sh, sw, ph, pw), act=act: lc.conv2d_nchw(
                    A["x"], A["w"], A.get("bias"), *g, dev, activation=act
                ),
                run_into=lambda A, o, dev, g=(sh, sw, ph, pw), act=act: lc.conv2d_nchw_into(
                    A["x"], A["w"], A.get("bias"), o, *g, dev, activation=act
                ),
                ref=lambda A, g=(sh, sw, ph, pw), act=act: ref_conv2d(
                    A["x"], A["w"], A.get("bias"), *g, act
                ),
                tol=TOL_CONV,
                big=big,
            )
        )
    return out


def _layernorm_cases():
    out = []
    for shape, gamma, beta, eps, big in [
        ((1,), False, False, 1e-5, False),  # a single column: (x - mean) == 0 -> beta
        ((1, 1), True, True, 1e-5, False),
        ((31,), True, False, 1e-5, False),
        ((7, 13), True, True, 1e-5, False),
        ((3, 5, 17), False, True, 1e-3, False),
        ((9, 1000), True, True, 1e-5, False),
        ((517, 523), True, True, 1e-5, True),  # 270k elements: threaded
    ]:
        cols = shape[-1]

        def inputs(r, shape=shape, gamma=gamma, beta=beta, cols=cols):
            A = {"x": _normal(r, shape, scale=2.0, offset=3.0)}
            if gamma:
                A["gamma"] = _normal(r, (cols,), offset=1.0)
            if beta:
                A["beta"] = _normal(r, (cols,))
            return A

        out.append(
            OpCase(
                id=f"layernorm-{'x'.join(map(str, shape))}-g{int(gamma)}b{int(beta)}-eps{eps:g}",
                op="layernorm",
                inputs=inputs,
                run=lambda A, dev, eps=eps: lc.layernorm(A["x"], A.get("gamma"), A.get("beta"), eps, dev),
                run_into=lambda A, o, dev, eps=eps: lc.layernorm_into(
                    A["x"], A.get("gamma"), A.get("beta"), o, eps, dev
                ),
                ref=lambda A, eps=eps: ref_layernorm(A["x"], A.get("gamma"), A.get("beta"), eps),
                tol=TOL_NORM,
                big=big,
            )
        )
    return out


def _softmax_cases():
    out = []
    for shape, scale, big in [
        ((1,), 1.0, False),
        ((1, 1), 1.0, False),
        ((13,), 1.0, False),
        ((7, 13), 1.0, False),
        ((3, 5, 17), 1.0, False),
        ((5, 33), 30.0, False),  # wide range: needs the max subtraction
        ((600, 450), 3.0, True),  # 270k elements: threaded
    ]:
        out.append(
            OpCase(
                id=f"softmax-{'x'.join(map(str, shape))}-scale{scale:g}",
                op="softmax",
                inputs=lambda r, shape=shape, scale=scale: {"x": _normal(r, shape, scale=scale)},
                run=lambda A, dev: lc.softmax(A["x"], dev),
                run_into=lambda A, o, dev: lc.softmax_into(A["x"], o, dev),
                ref=lambda A: ref_softmax(A["x"]),
                big=big,
            )
        )
    return out


def _elementwise_cases():
    out = []
    binary = {
        "vector_add": np.add,
        "vector_sub": np.subtract,
        "vector_mul": np.multiply,
        "matrix_sub": np.subtract,
    }
    shapes_any = [(1,), (13,), (7, 13), (3, 5, 17), (300007,)]  # 300007 (prime) >= 2^18: threaded
    shapes_2d = [(1, 1), (13, 31), (547, 557)]  # 547*557 = 304679 >= 2^18
    for name, fn in binary.items():
        for shape in shapes_2d if name == "matrix_sub" else shapes_any:
            out.append(
                OpCase(
                    id=f"{name}-{'x'.join(map(str, shape))}",
                    op=name,
                    inputs=lambda r, shape=shape: {"a": _normal(r, shape), "b": _normal(r, shape)},
                    run=lambda A, dev, name=name: getattr(lc, name)(A["a"], A["b"], dev),
                    run_into=lambda A, o, dev, name=name: getattr(lc, name + "_into")(
                        A["a"], A["b"], o, dev
                    ),
                    ref=lambda A, fn=fn: fn(A["a"], A["b"]),
                    big=int(np.prod(shape)) >= 1 << 15,
                )
            )
    for shape, alpha in [((1,), -2.5), ((17,), 0.0), ((5, 7, 11), 3.25), ((300007,), -0.75)]:
        out.append(
            OpCase(
                id=f"vector_scale-{'x'.join(map(str, shape))}-alpha{alpha:g}",
                op="vector_scale",
                inputs=lambda r, shape=shape: {"a": _normal(r, shape)},
                run=lambda A, dev, al=alpha: lc.vector_scale(A["a"], al, dev),
                run_into=lambda A, o, dev, al=alpha: lc.vector_scale_into(A["a"], al, o, dev),
                ref=lambda A, al=alpha: A["a"] * np.float64(np.float32(al)),
                big=int(np.prod(shape)) >= 1 << 15,
            )
        )
    for name, fn in (("relu", lambda x: np.maximum(x, 0.0)), ("gelu", gelu64)):
        big_n = 300007 if name == "relu" else 40009  # gelu threads from 2^15
        for shape in [(1,), (37,), (5, 7, 11), (big_n,)]:
            out.append(
                OpCase(
                    id=f"{name}-{'x'.join(map(str, shape))}",
                    op=name,
                    inputs=lambda r, shape=shape: {"a": _normal(r, shape, scale=3.0)},
                    run=lambda A, dev, name=name: getattr(lc, name)(A["a"], dev),
                    run_into=lambda A, o, dev, name=name: getattr(lc, name + "_into")(A["a"], o, dev),
                    ref=lambda A, fn=fn: fn(A["a"]),
                    tol=TOL_GELU if name == "gelu" else TOL_FP32,
                    big=int(np.prod(shape)) >= 1 << 15,
                )
            )
    return out


CASES: list[OpCase] = (
    _matmul_cases()
    + _linear_cases()
    + _attention_cases()
    + _conv_cases()
    + _layernorm_cases()
    + _softmax_cases()
    + _elementwise_cases()
)

OPS = sorted({c.op for c in CASES})


# ---- the check ----------------------------------------------------------------------------


def check_case(case: OpCase, device: str, kind: str, form: str, rng: np.random.Generator):
    """Runs one case on `device` with `kind` inputs in `form` ("return" | "into") and checks it
    against the float64 reference. Raises AssertionError with the details on a mismatch."""
    host = case.inputs(rng)
    originals = {k: v.copy() for k, v in host.items()}
    ref = case.ref({k: v.astype(np.float64) for k, v in host.items()})
    args = {k: make_input(kind, v, device) for k, v in host.items()}
    lc_inputs = kind in LC_KINDS
    where = f"{case.id} on {device} with {kind} inputs ({form})"

    if form == "return":
        res = case.run(args, device)
        if lc_inputs:
            assert isinstance(res, lc.Tensor), f"{where}: lc.Tensor inputs must give an lc.Tensor"
            assert res.device == device, f"{where}: result on {res.device}, expected {device}"
            assert res.dtype == "float32"
        else:
            assert isinstance(res, np.ndarray), f"{where}: numpy inputs must give numpy, got {type(res)}"
            assert res.dtype == np.float32
            assert res.flags.c_contiguous
        y = to_host(res)
    else:
        if lc_inputs:
            out = lc.Tensor(np.full(ref.shape, np.nan, dtype=F32), device=device)
        else:
            out = np.full(ref.shape, np.nan, dtype=F32)
        res = case.run_into(args, out, device)
        assert res is out, f"{where}: _into must return the `out` it was given"
        y = to_host(out)
        nan = int(np.isnan(y).sum())
        assert nan == 0, f"{where}: {nan} of {y.size} elements of the NaN-poisoned out not written"

    assert y.shape == ref.shape, f"{where}: shape {y.shape}, expected {ref.shape}"
    assert y.dtype == np.float32
    assert not np.isnan(y).any(), f"{where}: NaN in the result"
    err = rel_error(y, ref)
    tol = DEVICE_TOL.get((device, case.op), case.tol)
    assert err <= tol, f"{where}: relative error {err:.3e} > tolerance {tol:.1e}"
    # Inputs are read-only for every op.
    for k, v in originals.items():
        a = args[k]
        now = to_host(a) if isinstance(a, lc.Tensor) else np.asarray(a)
        assert np.array_equal(now, v, equal_nan=True), f"{where}: input '{k}' was modified"
    return err
