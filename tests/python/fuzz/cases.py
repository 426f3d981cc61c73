"""The code that runs one fuzz case and judges it (the strategies that draw cases: strategies.py).

A case is a JSON-able dict (so a crash can be reported with its reproducing call and replayed):
  family "op"      one public op / pipeline (rules.OPS), returning or `_into` form, with at most
                   one fault (a wrong dtype, shape, `out`, device, param, alias, ...)
  family "session" a resident session, then a sequence of method calls
  family "tensor"  lc.Tensor / lc.TensorView construction, views, copy_, t[key] with index arrays
                   (numpy's advanced indexing is the oracle)
  family "graph"   an lc.GraphIR chain built, planned and executed, with at most one fault
                   (graphs.py: the strategy and the runner)
and carries "expect": the outcomes the contract allows ("ok", "TypeError", "ValueError",
"MemoryError", "BackendError"). `run_case(case)` returns None when the runtime kept the
contract, else a finding dict {"sig", "problem", "detail"}; `render(case)` gives the Python
source of the call (arrays.arr builds the inputs).
"""

from __future__ import annotations

import math
import traceback

import numpy as np

import lightning_core as lc
from arrays import arr, logical, render as render_arr
from graphs import run_graph
from rules import BAD_OUTS, DEV, DEV_KW, EPS, OPS, OUT, RTOL

from strategies import (  # noqa: F401  (any_case: the workers draw cases from here)
    any_case,
    POISON_BITS,
    SENTINEL,
    out_shape,
    SESSION_KINDS,
    shape_error,
)

# ---- running a case --------------------------------------------------------------------------


class Finding(Exception):
    def __init__(self, problem, detail, ctx=""):
        super().__init__(f"{problem}: {detail}")
        self.problem, self.detail, self.ctx = problem, detail, ctx


def _fn(path):
    obj = lc
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _junk(j):
    return {"abc": "abc", "list": [1.0, 2.0], "object": object(), 1.5: 1.5}[j["junk"]]


def build_input(d):
    if d is None:
        return None
    if "junk" in d:
        return _junk(d)
    return arr(**d)


def snapshot(x):
    """Bytes + values of an argument, to prove a call left it alone."""
    if x is None or not hasattr(x, "shape") or math.prod(x.shape) > 2**24:
        return None  # (huge zero-stride inputs are read-only views of one value)
    if isinstance(x, lc.Tensor):
        lc.synchronize()
        return np.array(x.numpy(), copy=True).tobytes()
    return np.array(x, copy=True).tobytes()


def host(r):
    if isinstance(r, lc.Tensor):
        lc.synchronize()
        return np.array(r.numpy(), dtype=np.float64, copy=True)
    return np.array(r, dtype=np.float64, copy=True)


def classify(e):
    if isinstance(e, MemoryError):
        return "MemoryError"
    if isinstance(e, lc.BackendError):
        return "BackendError"
    if isinstance(e, TypeError):
        return "TypeError"
    if isinstance(e, ValueError):
        return "ValueError"
    return type(e).__name__


def _result_bytes(op, case, P) -> int:
    """float32 bytes of the op's result for this case (0 when the shape cannot be worked out)."""
    try:
        shape = out_shape(op, {k: (v["shape"] if v else None) for k, v in case["inputs"].items()}, P)
        return 4 * math.prod(int(d) for d in shape)
    except Exception:  # noqa: BLE001 -- a case whose shape rule does not apply: no allowance
        return 0


def check_error(e, expect):
    kind = classify(e)
    msg = str(e)
    if kind not in expect:
        raise Finding("wrong-exception" if "ok" not in expect or len(expect) > 1 else "unexpected-error",
                      f"{type(e).__name__}: {msg[:300]!r}; expected {' or '.join(expect)}")
    if isinstance(e, lc.OutDTypeError) and "TypeError" not in expect:
        raise Finding("wrong-exception", f"OutDTypeError for a non-dtype error: {msg[:200]!r}")
    if not msg.startswith("["):
        raise Finding("no-prefix", f"{type(e).__name__} message does not start with '[op]': {msg[:200]!r}")


# The error floors in rules.py are for float32 arithmetic (EPS per term). A policy that allows
# reduced-precision matrix math multiplies in TF32 (10-bit mantissa: ~2^-11 per rounded input,
# ~2^-10 per product) or bf16 (~2^-8 per input): the floors grow by that ratio.
_PRECISION_EPS = {"fp32": None, "tf32": 2.0 ** -10, "bf16": 2.0 ** -7}


def precision_factor(case):
    eps = _PRECISION_EPS.get((case.get("policy") or {}).get("precision", "fp32"))
    return 1.0 if eps is None else eps / EPS


def compare(y, ref, atol, allow=None, where="result"):
    """float32 result y vs float64 reference: NaN where the reference is NaN, the same infinity,
    finite values within RTOL * |ref| + atol."""
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if y.shape != ref.shape:
        raise Finding("wrong-shape", f"{where} shape {y.shape}, expected {ref.shape}")
    # allow: where 0 is accepted besides the reference (gelu(-inf): torch gives NaN, the limit is 0)
    ok = np.zeros(y.shape, bool) if allow is None else np.broadcast_to(allow, y.shape) & (y == 0)
    with np.errstate(invalid="ignore", over="ignore"):
        rn, yn = np.isnan(ref), np.isnan(y)
        ri, yi = np.isinf(ref), np.isinf(y)
        finite_ref = np.isfinite(ref)
        bad_nan = ~ok & rn & ~yn
        bad_inf = ~ok & ri & ~(y == ref)
        tol = RTOL * np.abs(np.where(finite_ref, ref, 0)) + np.broadcast_to(atol, y.shape)
        bad_fin = ~ok & finite_ref & ~(np.abs(y - ref) <= tol)
    for mask, prob in ((bad_nan, "nan-not-propagated"), (bad_inf, "wrong-inf"), (bad_fin, "wrong-values")):
        if mask.any():
            i = tuple(int(v) for v in np.argwhere(mask)[0])
            raise Finding(prob, f"{where}{list(i)} = {y[i]!r}, expected {ref[i]!r} "
                                f"({int(mask.sum())} of {y.size} elements off; tol {float(np.broadcast_to(tol, y.shape)[i]):.3g})")


def _make_out(spec, shape, like_lc, device):
    """A poisoned `out` (good) or a bad one: the object, and its source text."""
    shape = tuple(shape)
    if spec.get("good"):
        if like_lc:
            t = lc.Tensor(np.full(shape, POISON_BITS, np.uint32).view(np.float32), device=device)
            return t, f"lc.Tensor(poisoned({shape}), device={device!r})"
        return np.full(shape, POISON_BITS, np.uint32).view(np.float32), f"poisoned({shape})"
    kind = spec["bad"]
    s = np.full(shape, SENTINEL, np.float32)
    if kind == "shape":
        s2 = shape[:-1] + (shape[-1] + 1,) if shape else (2,)
        if like_lc:
            return lc.Tensor(np.full(s2, SENTINEL, np.float32), device=device), f"lc.Tensor(np.full({s2}, 7.25, np.float32))"
        return np.full(s2, SENTINEL, np.float32), f"np.full({s2}, 7.25, np.float32)"
    if kind in ("float64", "float16", "int32"):
        if like_lc and kind == "float64":
            return lc.Tensor(s, device=device, dtype="float64"), f"lc.Tensor(np.full({shape}, 7.25), dtype='float64')"
        return s.astype(kind), f"np.full({shape}, 7.25, np.{kind})"
    if kind == "noncontig":
        if like_lc and len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
            return lc.Tensor(np.full(shape[::-1], SENTINEL, np.float32), device=device).t(), \
                f"lc.Tensor(np.full({shape[::-1]}, 7.25, np.float32)).t()"
        big = np.full(shape[:-1] + (2 * shape[-1],) if shape else (2,), SENTINEL, np.float32)
        o = big[..., ::2] if shape else big[:1][0:1].reshape(())
        return o, f"np.full({big.shape}, 7.25, np.float32)[..., ::2]"
    if kind == "readonly":
        s.flags.writeable = False
        return s, f"readonly(np.full({shape}, 7.25, np.float32))"
    if kind == "misaligned":
        return arr(list(shape), layout="misaligned", fill="ones"), f"arr({list(shape)}, layout='misaligned', fill='ones')"
    if kind == "swapped":
        return s.astype(">f4"), f"np.full({shape}, 7.25, '>f4')"
    if kind == "none":
        return None, "None"
    if kind == "list":
        return s.tolist(), f"np.full({shape}, 7.25).tolist()"
    raise AssertionError(kind)


def _noncontig_really(o):
    return isinstance(o, np.ndarray) and o.flags.c_contiguous


class Call:
    """Arguments and their source text, built side by side."""

    def __init__(self):
        self.lines, self.args, self.srcs, self.kw, self.kwsrc = [], [], [], {}, []

    def var(self, name, obj, src):
        self.lines.append(f"{name} = {src}")
        return obj

    def pos(self, obj, src):
        self.args.append(obj)
        self.srcs.append(src)

    def kwarg(self, k, obj, src):
        self.kw[k] = obj
        self.kwsrc.append(f"{k}={src}")

    def text(self, fn):
        return f"{fn}({', '.join(self.srcs + self.kwsrc)})"


def _policy(case, c: Call):
    pol = case.get("policy")
    if pol is None:
        return
    src = "lc.ExecutionPolicy(" + ", ".join(f"{k}={v!r}" for k, v in pol.items()) + ")"
    c.lines.append(f"policy = {src}")
    if case.get("policy_invalid"):
        return
    c.kwarg("policy", lc.ExecutionPolicy(**pol), "policy")


def run_op(case, trace):
    op = OPS[case["op"]]
    P = case["params"]
    expect = case["expect"]
    c = Call()
    if case.get("policy_invalid"):
        pol = case["policy"]
        trace.append("lc.ExecutionPolicy(" + ", ".join(f"{k}={v!r}" for k, v in pol.items()) + ")")
        try:
            lc.ExecutionPolicy(**pol)
        except Exception as e:  # noqa: BLE001
            check_error(e, ["ValueError"])
            return
        raise Finding("unexpected-success", "an invalid ExecutionPolicy combination was accepted")
    objs = {}
    for nm, d in case["inputs"].items():
        if d is None:
            objs[nm] = None
            continue
        objs[nm] = c.var(nm, build_input(d), render_arr(d) if "junk" not in d else repr(_junk(d)))
    alias = case.get("alias")
    shapes = {k: (v["shape"] if v and "shape" in v else None) for k, v in case["inputs"].items()}
    out = None
    if alias:
        src = objs[alias["input"]]
        shape = src.shape
        size = int(np.prod(shape))
        sh = alias["shift"]
        buf = np.empty(size + abs(sh), np.float32)
        a0, o0 = (0, sh) if sh >= 0 else (-sh, 0)
        ain = buf[a0:a0 + size].reshape(shape)
        ain[...] = src
        objs[alias["input"]] = ain
        out = buf[o0:o0 + size].reshape(shape)
        c.lines.append(f"buf = np.empty({size + abs(sh)}, np.float32); {alias['input']} = buf[{a0}:{a0 + size}]"
                       f".reshape({tuple(shape)}); {alias['input']}[...] = {render_arr(case['inputs'][alias['input']])}; "
                       f"out = buf[{o0}:{o0 + size}].reshape({tuple(shape)})")
    elif case["form"] == "into":
        like_lc = any(isinstance(o, lc.Tensor) for o in objs.values())
        dev = next((o.device for o in objs.values() if isinstance(o, lc.Tensor)), "cpu")
        try:
            oshape = out_shape(op, shapes, P)
        except Exception:  # noqa: BLE001  invalid geometry: any out will do, the call must fail
            oshape = [1]
        if any(d < 0 for d in oshape) or float(np.prod([float(d) for d in oshape])) > 2.0 ** 28:
            # No such array (negative or too large to make here): any out will do, and with it
            # the call must fail, even where the geometry itself is valid (a (40009, 1) + (40009,)
            # broadcast into a [1] out: ValueError for the out's shape, or MemoryError first).
            oshape = [1]
            expect = [e for e in expect if e != "ok"] or ["ValueError", "MemoryError"]
        out, osrc = _make_out(case["out"], oshape, like_lc, dev)
        c.var("out", out, osrc)
        if case["out"].get("bad") == "noncontig" and _noncontig_really(out):
            expect = ["ok", "ValueError"]  # numpy calls it contiguous (size-1 dims): either is fine
        elif (case["out"].get("bad") == "noncontig" and op.strided_out and
              shape_error(op, shapes, P) is None):
            expect = ["ok"]  # a strided view without overlap is a valid out for this op
    name = op.name if case["form"] == "return" else op.name + "_into"
    for tok in op.call:
        if tok == OUT:
            if case["form"] == "into":
                c.pos(out, "out")
        elif tok == DEV:
            dev = case.get("device")
            c.pos(dev, repr(dev))
        elif tok == DEV_KW:
            dev = case.get("device")
            c.kwarg("device", dev, repr(dev))
        elif tok in objs:
            c.pos(objs[tok], tok if objs[tok] is not None else "None")
        else:
            c.pos(P[tok], repr(P[tok]))
    for k in op.kw:
        if k in P:
            c.kwarg(k, P[k], repr(P[k]))
    _policy(case, c)
    for k, v in case.get("extra_kw", {}).items():
        c.kwarg(k, v, repr(v))
    fn = _fn(name)
    trace.extend(c.lines)
    trace.append(c.text(f"lc.{name}"))
    before_in = {k: snapshot(v) for k, v in objs.items() if k != (alias or {}).get("input")}
    before_out = snapshot(out) if out is not None and hasattr(out, "shape") else None
    try:
        res = fn(*c.args, **c.kw)
    except Finding:
        raise
    except Exception as e:  # noqa: BLE001
        if isinstance(e, MemoryError) and "ok" in expect and _result_bytes(op, case, P) >= 1 << 30:
            # A valid call whose result needs gigabytes (a (40009, 1) + (40009,) broadcast: 6.4
            # GB) may meet a host without that much free (8 test processes on the GPU host):
            # MemoryError is then the contract's answer, as long as it is clean (checked below).
            expect = list(expect) + ["MemoryError"]
        check_error(e, expect)
        if before_out is not None and snapshot(out) != before_out:
            raise Finding("out-modified-on-error", f"a failing call ({type(e).__name__}) wrote into `out`")
        _inputs_unchanged(objs, before_in)
        _alive()
        return
    if "ok" not in expect:
        raise Finding("unexpected-success", f"returned {type(res).__name__}; expected {' or '.join(expect)}")
    X = {k: (logical(v) if v and "shape" in v and v.get("dtype", "float32") == "float32" else None)
         for k, v in case["inputs"].items()}
    if case.get("novalues") or any(v is None and case["inputs"].get(k) is not None for k, v in X.items()):
        return
    try:
        ref = op.ref({k: v for k, v in X.items()}, P)
    except MemoryError:
        # A valid call whose float32 result LC could make, but whose float64 reference does not
        # fit in this machine's memory (a (40009, 1) + (40009,) broadcast: 6.4 GB from LC, 12.8 GB
        # for numpy's float64). Only the result's shape can be checked here.
        got = tuple(out.shape if case["form"] == "into" else res.shape)
        want = tuple(out_shape(op, {k: (v["shape"] if v else None) for k, v in case["inputs"].items()}, P))
        if got != want:
            raise Finding("wrong-result", f"result shape {got}, expected {want}") from None
        _inputs_unchanged(objs, before_in)
        return
    if case["form"] == "into":
        if res is not out:
            raise Finding("wrong-result", "`_into` did not return the `out` it was given")
        y = host(out)
        if not alias:
            raw = (np.array(out.numpy() if isinstance(out, lc.Tensor) else out, copy=True)
                   .astype(np.float32).view(np.uint32))
            if (raw == POISON_BITS).any():
                raise Finding("out-not-written", f"{int((raw == POISON_BITS).sum())} of {raw.size} elements of "
                                                 "the NaN-poisoned `out` were never written")
    else:
        any_lc = any(isinstance(o, lc.Tensor) for o in objs.values())
        pol = case.get("policy") or {}
        if not any_lc and pol.get("download", True) and not isinstance(res, np.ndarray):
            raise Finding("wrong-result-type", f"numpy inputs gave {type(res).__name__}, expected numpy.ndarray")
        if isinstance(res, np.ndarray) and res.dtype != np.float32:
            raise Finding("wrong-result-type", f"result dtype {res.dtype}")
        y = host(res)
    allow = op.allow(X, {**P, "_device": case.get("device")}) if op.allow else None
    compare(y, ref, op.atol(X, P) * precision_factor(case), allow)
    _inputs_unchanged(objs, before_in)


def _inputs_unchanged(objs, before):
    for k, b in before.items():
        if b is not None and snapshot(objs[k]) != b:
            raise Finding("input-modified", f"input '{k}' was modified by the call")


_A = np.arange(6, dtype=np.float32).reshape(2, 3)


def _alive():
    o = np.full((2, 3), np.nan, np.float32)
    lc.vector_add_into(_A, _A, o, "cpu")
    if not np.array_equal(o, _A + _A):
        raise Finding("runtime-broken", "after the error a plain vector_add_into gave wrong values")


def run_session(case, trace):
    factory, opname, per_call = SESSION_KINDS[case["kind"]]
    op = OPS[opname]
    P = case["params"]
    c = Call()
    objs = {nm: (c.var(nm, arr(**d), render_arr(d)) if d else None) for nm, d in case["inputs"].items()}
    X = {nm: (logical(d) if d else None) for nm, d in case["inputs"].items()}
    if case["kind"] == "matmul":
        c.pos(objs["a"], "a"), c.pos(objs["b"], "b"), c.pos(case["device"], repr(case["device"]))
    elif case["kind"] == "attention":
        for nm in ("q", "k", "v"):
            c.pos(objs[nm], nm)
        c.pos(P["causal"], repr(P["causal"])), c.pos(case["device"], repr(case["device"]))
        c.kwarg("scale", P.get("scale"), repr(P.get("scale")))
    else:
        for nm in ("x", "weight", "bias"):
            c.pos(objs[nm], nm if objs[nm] is not None else "None")
        for k in ("seq_len", "head_dim", "stride_h", "stride_w", "pad_h", "pad_w"):
            c.pos(P[k], repr(P[k]))
        c.pos(case["device"], repr(case["device"]))
        for k in ("activation", "causal", "scale"):
            c.kwarg(k, P.get(k), repr(P.get(k)))
    if case["upload"] is not None:
        c.kwarg("upload", case["upload"], repr(case["upload"]))
    trace.extend(c.lines)
    trace.append("s = " + c.text(f"lc.{factory}"))
    try:
        s = _fn(factory)(*c.args, **c.kw)
    except Finding:
        raise
    except Exception as e:  # noqa: BLE001
        try:
            check_error(e, case["expect"])
        except Finding as f:
            f.ctx = "create"
            raise
        _alive()
        return
    if "ok" not in case["expect"]:
        raise Finding("unexpected-success", f"{factory} accepted it; expected {' or '.join(case['expect'])}", "create")
    if case["upload"] == "never":  # binds lc.Tensors without copying: creation is all we check
        s.close()
        return
    oshape = out_shape(op, {k: (v["shape"] if v else None) for k, v in case["inputs"].items()}, P)
    resident = dict(X)  # the values the session holds
    last = None  # the values the last run computed with
    closed = False
    upload = case["upload"] or "once"
    for i, call in enumerate(case["calls"]):
        try:
            m = call["m"]
            if m == "close":
                trace.append("s.close()")
                s.close()
                closed = True
                continue
            cc = Call()
            given = {}
            if m != "download_into":
                for nm in per_call:
                    d = dict(case["inputs"][nm])
                    if call["fresh"] == "shape":
                        d["shape"] = d["shape"][:-1] + [d["shape"][-1] + 1]
                    elif call["fresh"]:
                        d["seed"] = d["seed"] + 1000 + i
                    given[nm] = logical(d)
                    obj = objs[nm] if not call["fresh"] else cc.var(f"{nm}{i}", arr(**d), render_arr(d))
                    cc.pos(obj, f"{nm}{i}" if call["fresh"] else nm)
            out, osrc = _make_out(call["out"], oshape, False, "cpu")
            cc.var(f"out{i}", out, osrc)
            cc.pos(out, f"out{i}")
            if m == "batch":
                cc.pos(call["n"], repr(call["n"]))
            meth = {"batch": "run_batch_sync_no_download_into"}.get(m, m)
            trace.extend(cc.lines)
            trace.append(cc.text(f"s.{meth}"))
            errs = []  # every fault in this call: any of their errors is a right answer
            if closed or call.get("fresh") == "shape":
                errs.append("ValueError")
            if "bad" in call["out"] and not (call["out"]["bad"] == "noncontig" and _noncontig_really(out)):
                errs += [t.__name__ for t in BAD_OUTS[call["out"]["bad"]]]
            if m == "download_into" and last is None:
                errs.append("ValueError")  # nothing has run yet (the earlier calls failed)
            if m == "batch" and call["n"] < 0:
                errs.append("ValueError")
            expect = sorted(set(errs)) or ["ok"]
            if expect == ["ok"] and (m == "batch" and call["n"] == 0 or
                                     "bad" in call["out"]):  # n=0 / size-1-dims "noncontig" out
                expect = ["ok", "ValueError"]
            stale = m in ("run_into", "batch") and upload == "once" and \
                any(not np.array_equal(given[k], resident[k], equal_nan=True) for k in given)
            if stale and expect == ["ok"]:
                expect = ["ok", "ValueError"]  # re-upload or refuse; never compute with old data
            before_out = snapshot(out) if hasattr(out, "shape") else None
            try:
                getattr(s, meth)(*cc.args)
            except Finding:
                raise
            except Exception as e:  # noqa: BLE001
                check_error(e, expect)
                if before_out is not None and snapshot(out) != before_out:
                    raise Finding("out-modified-on-error", f"a failing s.{meth} wrote into `out`")
                continue
            if "ok" not in expect:
                raise Finding("unexpected-success", f"s.{meth} returned; expected {' or '.join(expect)}")
            if m != "download_into":
                if m == "start_into" or upload == "always" or stale:
                    resident.update(given)
                last = {k: (resident[k] if k in per_call else X[k]) for k in X}
            if m == "batch" or last is None:
                continue
            y = host(out)
            raw = np.array(out, copy=True).view(np.uint32)
            if (raw == POISON_BITS).any():
                raise Finding("out-not-written", f"s.{meth}: {int((raw == POISON_BITS).sum())} of {raw.size} elements "
                                                 "of the poisoned `out` never written (and no error)")
            Pq = dict(P)
            if case["kind"] == "conv_attention":
                Pq.setdefault("activation", "relu")
            compare(y, op.ref(last, Pq), op.atol(last, Pq) * precision_factor(case), where=f"s.{meth} out")
        except Finding as f:
            f.ctx = call['m'] + ":" + str(call.get('out', {}).get('bad') or ("fresh" if call.get('fresh') else ""))
            raise


def run_tensor(case, trace):
    a = case["action"]
    dev = case["device"]
    expect = case["expect"]
    try:
        if a == "roundtrip":
            d = case["src"]
            trace.append(f"t = lc.Tensor({render_arr(d)}, device={dev!r}); t.numpy()")
            t = lc.Tensor(arr(**d), device=dev)
            y = host(t)
            # dtype=None keeps float16 / bfloat16 / int32 / int64 data, makes float32 of the rest
            src = arr(**d).dtype.name
            want = src if src in ("float16", "bfloat16", "int32", "int64") else "float32"
            ref = logical(d).astype(np.float32).astype(np.float64)
            if t.dtype != want or list(t.shape) != list(d["shape"]):
                raise Finding("wrong-result", f"Tensor has dtype {t.dtype} shape {t.shape}")
            compare(y, ref, 0.0)
        elif a == "empty":
            trace.append(f"t = lc.Tensor.empty({case['shape']}, device={dev!r})")
            t = lc.Tensor.empty(case["shape"], device=dev)
            if "ok" not in expect:
                want = math.prod(case["shape"]) * 4
                if t.nbytes != want:
                    trace.append("lc.relu(t)")
                    try:
                        lc.relu(t)
                    except (ValueError, MemoryError):
                        pass
                    raise Finding("unexpected-success", f"Tensor.empty({case['shape']}) succeeded with nbytes="
                                                        f"{t.nbytes} (should be {want} or an error)")
                raise Finding("unexpected-success", f"Tensor.empty({case['shape']}) allocated {t.nbytes} bytes")
            if t.nbytes != math.prod(case["shape"]) * 4:
                raise Finding("wrong-result", f"nbytes {t.nbytes}")
        elif a == "view":
            n = case["n"]
            trace.append(f"base = lc.Tensor(np.arange({n}, dtype=np.float32), device={dev!r})")
            trace.append(f"v = lc.TensorView(base, {case['shape']}, {case['strides']}, {case['offset']})")
            base = lc.Tensor(np.arange(n, dtype=np.float32), device=dev)
            v = lc.TensorView(base, case["shape"], case["strides"], case["offset"])
            if case.get("huge"):
                trace.append("lc.relu(v)")
                try:
                    lc.relu(v)
                except Exception as e:  # noqa: BLE001
                    check_error(e, ["ValueError", "MemoryError"])
                    return
                raise Finding("unexpected-success", "an op on a huge stride-0 view returned")
            if "ok" not in expect:
                raise Finding("unexpected-success", f"TensorView out of bounds accepted; expected {expect}")
            if math.prod(case["shape"]) == 0:
                return
            idx = np.full(case["shape"], case["offset"], dtype=np.int64)
            for ax, (s, t) in enumerate(zip(case["shape"], case["strides"])):
                sh = [1] * len(case["shape"])
                sh[ax] = s
                idx = idx + (np.arange(s) * t).reshape(sh)
            compare(host(v), idx.astype(np.float64), 0.0, where="view")
            trace.append("lc.relu(v)")
            compare(host(lc.relu(v)), idx.astype(np.float64), 0.0, where="relu(view)")
        elif a == "index":
            return _run_index(case, trace)
        elif a == "arith":
            return _run_arith(case, trace)
        else:
            n, m = case["n"], case["m"]
            trace.append(f"buf = lc.Tensor(np.arange({n}, dtype=np.float32), device={dev!r})")
            buf = lc.Tensor(np.arange(n, dtype=np.float32), device=dev)
            if case["dst_ro"]:
                ro = np.arange(n, dtype=np.float32)
                ro.flags.writeable = False
                trace.append(f"ro = np.arange({n}, dtype=np.float32); ro.flags.writeable = False; "
                             "buf = lc.Tensor.from_numpy(ro)")
                buf = lc.Tensor.from_numpy(ro)
            if case["same_buffer"]:
                sbuf, sname = buf, "buf"
            else:
                trace.append(f"sbuf = lc.Tensor(np.arange(100, 100 + {n}, dtype=np.float32), device={dev!r})")
                sbuf, sname = lc.Tensor(np.arange(100, 100 + n, dtype=np.float32), device=dev), "sbuf"
            do, ds = case["dst"]
            so, ss = case["src"]
            dst = lc.TensorView(buf, [m], [ds], do)
            trace.append(f"dst = lc.TensorView(buf, [{m}], [{ds}], {do})")
            if case["src_kind"] == "f64":
                src = lc.Tensor64(np.arange(m, dtype=np.float64), device=dev)
                trace.append(f"src = lc.Tensor64(np.arange({m}.0), device={dev!r})")
            elif case["src_kind"] == "short":
                src = lc.Tensor(np.arange(m + 1, dtype=np.float32), device=dev)
                trace.append(f"src = lc.Tensor(np.arange({m + 1}, dtype=np.float32), device={dev!r})")
            else:
                src = lc.TensorView(sbuf, [m], [ss], so)
                trace.append(f"src = lc.TensorView({sname}, [{m}], [{ss}], {so})")
            before = host(buf)
            want_src = host(src)
            trace.append("dst.copy_(src)")
            try:
                dst.copy_(src)
            except Finding:
                raise
            except Exception as e:  # noqa: BLE001
                check_error(e, expect)
                if not np.array_equal(host(buf), before, equal_nan=True):
                    raise Finding("out-modified-on-error", "a failing copy_ wrote into the destination")
                return
            if "ok" not in expect:
                raise Finding("unexpected-success", f"copy_ returned; expected {' or '.join(expect)}")
            want = before.copy()
            want[do + ds * np.arange(m)] = want_src
            compare(host(buf), want, 0.0, where="buffer after copy_")
    except Finding:
        raise
    except Exception as e:  # noqa: BLE001
        check_error(e, expect)


def _index_key(items, dev, lc_index):
    """(the key for lc, the same key for numpy, its source) from the strategy's items."""
    key, key_np, src = [], [], []
    runtime_done = False  # one runtime (lc.Tensor) index at most: the first int array
    for it in items:
        if it[0] == "int":
            key.append(it[1]); key_np.append(it[1]); src.append(str(it[1]))  # noqa: E702
        elif it[0] == "slice":
            sl = slice(*it[1:])
            key.append(sl); key_np.append(sl); src.append(f"slice{it[1:]}")  # noqa: E702
        elif it[0] == "none":
            key.append(None); key_np.append(None); src.append("None")  # noqa: E702
        elif it[0] == "ellipsis":
            key.append(Ellipsis); key_np.append(Ellipsis); src.append("...")  # noqa: E702
        elif it[1] == "mask":
            m = np.array(it[2], dtype=bool)
            key.append(m); key_np.append(m); src.append(f"np.array({it[2]})")  # noqa: E702
        elif it[1] == "mask2":  # a mask over two axes
            m = np.array(it[2], dtype=bool).reshape(it[3])
            key.append(m); key_np.append(m); src.append(f"np.array({it[2]}).reshape({it[3]})")  # noqa: E702
        else:
            v = np.array(it[2], dtype=np.int64).reshape(it[3])
            key_np.append(v)
            if lc_index and not runtime_done:
                runtime_done = True
                key.append(lc.Tensor(v, device=dev))
                src.append(f"lc.Tensor(np.array({it[2]}, np.int64).reshape({it[3]}), device={dev!r})")
            else:
                key.append(v)
                src.append(f"np.array({it[2]}, np.int64).reshape({it[3]})")
    return tuple(key), tuple(key_np), ", ".join(src)


_ARITH_TOL = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1.6e-2}


def _run_arith(case, trace):
    """t <op> o, o <op> t, -t against numpy in float64 on the same (rounded) values: o a tensor or
    an array of t's dtype, a number, or a bad type; another dtype is a TypeError, shapes that do
    not broadcast (or a matmul's inner sizes that differ) a ValueError; the result an lc.Tensor
    on t's device in t's dtype, within the dtype's rounding, NaN / inf as numpy's."""
    from graphs import _np_dtype
    dev, dtype, op, other = case["device"], case["dtype"], case["op"], case["other"]
    # a numpy array on the left is numpy's own operation (it converts the tensor): not ours
    rev = case["reflected"] and op != "neg" and other != "array"
    n = math.prod(case["shape"])
    a = (((np.arange(n) * 5) % 11 - 5) * 0.5).reshape(case["shape"])  # exact in every dtype
    a = a.astype(_np_dtype(dtype)).astype(np.float64)
    t = lc.Tensor(a.astype(np.float32), device=dev, dtype=dtype)
    src_t = f"lc.Tensor(((np.arange({n}) * 5) % 11 - 5).reshape({case['shape']}) * 0.5, device={dev!r}, dtype={dtype!r})"
    trace.append(f"t = {src_t}")
    odt = case["odtype"]
    if other == "number":
        o, o64, osrc = case["number"], np.float64(case["number"]), repr(case["number"])
    elif other == "bad":
        o, o64, osrc = eval(case["bad"]), None, case["bad"]  # noqa: S307 -- one of four literals
    else:
        m = math.prod(case["oshape"])
        o64 = (((np.arange(m) * 3) % 7 - 3) * 0.25 + 0.125).reshape(case["oshape"])  # no zeros
        o64 = o64.astype(_np_dtype(odt)).astype(np.float64)
        o = o64.astype(_np_dtype(odt))
        osrc = f"(((np.arange({m}) * 3) % 7 - 3) * 0.25 + 0.125).reshape({case['oshape']}).astype({odt!r})"
        if other == "tensor":
            o = lc.Tensor(o, device=dev, dtype=odt)
            osrc = f"lc.Tensor({osrc}, device={dev!r})"
    py = {"+": "__add__", "-": "__sub__", "*": "__mul__", "/": "__truediv__", "@": "__matmul__"}
    if op == "neg":
        src, call = "-t", (lambda: -t)
    elif rev:
        src, call = f"o {op} t", (lambda: _binop(o, op, t))
    else:
        src, call = f"t {op} o", (lambda: _binop(t, op, o))
    trace.append(f"o = {osrc}; {src}")
    ref = -a if op == "neg" else None
    if op != "neg" and other != "bad" and (other == "number" or odt == dtype):
        with np.errstate(all="ignore"):
            try:
                ref = _binop(o64, op, a) if rev else _binop(a, op, o64)
            except ValueError:
                ref = None
    try:
        y = call()
    except Finding:
        raise
    except Exception as e:  # noqa: BLE001
        if op == "neg":
            raise Finding("unexpected-error", f"-t raised {type(e).__name__}: {str(e)[:200]}")
        if other == "bad" or (other != "number" and odt != dtype):
            if not isinstance(e, TypeError):
                raise Finding("wrong-exception", f"{src} with {osrc}: {type(e).__name__} (expected TypeError): "
                                                 f"{str(e)[:200]}")
        elif ref is None:
            check_error(e, ["ValueError"])
        else:
            raise Finding("unexpected-error", f"numpy computes {src}, lc raised {type(e).__name__}: {str(e)[:300]}")
        _alive()
        return
    if op != "neg" and (other == "bad" or (other != "number" and odt != dtype)):
        raise Finding("unexpected-success", f"{src} with {osrc} returned; expected a TypeError")
    if ref is None:
        raise Finding("unexpected-success", f"{src} returned; numpy raises for these shapes")
    if not isinstance(y, lc.Tensor) or y.device != dev or y.dtype != dtype:
        raise Finding("wrong-result", f"{src}: {type(y).__name__} on {getattr(y, 'device', '?')} "
                                      f"dtype {getattr(y, 'dtype', '?')}; expected an lc.Tensor on {dev}, {dtype}")
    got = host(y)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise Finding("wrong-shape", f"{src}: shape {got.shape}, numpy {ref.shape}")
    want = ref.astype(_np_dtype(dtype)).astype(np.float64)  # numpy's result rounded to the dtype
    tol = _ARITH_TOL[dtype] * (4 if op == "@" else 1)
    with np.errstate(invalid="ignore"):
        bad = ~((np.isnan(got) & np.isnan(want)) | (got == want) |
                (np.abs(got - want) <= tol * np.abs(want) + (tol if op == "@" else 0.0)))
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise Finding("wrong-values", f"{src}: at {i} lc {got[i]!r}, numpy {want[i]!r} ({int(bad.sum())} of {got.size})")


def _binop(x, op, y):
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "/":
        return x / y
    return x @ y


def _run_index(case, trace):
    """t[key] with index arrays against numpy's advanced indexing on the same values: where numpy
    raises, a ValueError or TypeError; an int32 tensor, a TypeError (gathers are float); else the
    same shape and values, bit for bit."""
    dev, shape, dtype = case["device"], case["shape"], case["dtype"]
    from graphs import _np_dtype
    a = (np.arange(math.prod(shape), dtype=np.float64) - 3).reshape(shape).astype(_np_dtype(dtype))
    key, key_np, src = _index_key(case["items"], dev, case["lc_index"])
    trace.append(f"t = lc.Tensor(np.arange({math.prod(shape)}).reshape({shape}) - 3, dtype={dtype!r}, "
                 f"device={dev!r}); t[{src}]")
    t = lc.Tensor(a, device=dev)
    try:
        ref = a[key_np]
    except (IndexError, ValueError, TypeError):
        ref = None
    try:
        y = t[key]
    except Finding:
        raise
    except Exception as e:  # noqa: BLE001
        # Documented differences: an lc.Tensor index reads its values on the device, in [0, n)
        # (no negative wrap); every index value is range checked, also where numpy's broadcast
        # leaves none of them used (an empty result).
        first = next((it for it in case["items"] if it[0] == "array" and it[1] == "ints"), None)
        negative_runtime = case["lc_index"] and first is not None and min(first[2], default=0) < 0
        empty_strict = ref is not None and ref.size == 0 and "out of range" in str(e)
        if ref is not None and dtype != "int32" and not negative_runtime and not empty_strict:
            raise Finding("unexpected-error", f"numpy indexes this, lc raised {type(e).__name__}: "
                                              f"{str(e)[:300]}")
        check_error(e, ["ValueError", "TypeError"])
        trace.append(f"t[{src}]  # again: the runtime still works")
        if not np.array_equal(host(t), a.astype(np.float64)):
            raise Finding("input-modified", "a failed index changed the tensor")
        return
    if ref is None or dtype == "int32":
        raise Finding("unexpected-success", f"t[{src}] returned; numpy {'raises' if ref is None else 'gives int32'}")
    if not isinstance(y, lc.Tensor) or y.device != dev or y.dtype != dtype:
        raise Finding("wrong-result", f"result {type(y).__name__} on {getattr(y, 'device', '?')}, "
                                      f"dtype {getattr(y, 'dtype', '?')}")
    compare(host(y), ref.astype(np.float64), 0.0, where="t[key]")


RUNNERS = {"op": run_op, "session": run_session, "tensor": run_tensor, "graph": run_graph}


def signature(case, problem, ctx=""):
    fam = case["family"]
    if fam == "op":
        return f"op:{case['op']}:{case['form']}:{case['fault']}:{problem}"
    if fam == "session":
        return f"session:{case['kind']}:{ctx}:{problem}"
    if fam == "graph":
        return f"graph:{case['fault']}:{problem}"
    return f"tensor:{case['action']}:{problem}"


def run_case(case, trace=None):
    """None if the runtime kept the contract; else {"sig", "problem", "detail", "repro"}.
    `trace` collects the source lines of the calls as they are made (the worker streams them to
    its status file, so a crash is reported with the call that crashed)."""
    trace = [] if trace is None else trace
    try:
        RUNNERS[case["family"]](case, trace)
        return None
    except Finding as f:
        return {"sig": signature(case, f.problem, f.ctx), "problem": f.problem, "detail": f.detail,
                "repro": "\n".join(trace)}
    except Exception:  # noqa: BLE001  a bug of the harness itself, reported as such
        return {"sig": signature(case, "harness-error"), "problem": "harness-error",
                "detail": traceback.format_exc()[-1500:], "repro": "\n".join(trace)}
