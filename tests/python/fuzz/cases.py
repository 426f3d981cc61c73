"""Hypothesis strategies of fuzz cases, and the code that runs one case and judges it.

A case is a JSON-able dict (so a crash can be reported with its reproducing call and replayed):
  family "op"      one public op / pipeline (rules.OPS), returning or `_into` form, with at most
                   one fault (a wrong dtype, shape, `out`, device, param, alias, ...)
  family "session" a resident session, then a sequence of method calls
  family "tensor"  lc.Tensor / lc.TensorView construction, views, copy_
and carries "expect": the outcomes the contract allows ("ok", "TypeError", "ValueError",
"MemoryError", "BackendError"). `run_case(case)` returns None when the runtime kept the
contract, else a finding dict {"sig", "problem", "detail"}; `render(case)` gives the Python
source of the call (arrays.arr builds the inputs).
"""

from __future__ import annotations

import math
import traceback

import numpy as np
from hypothesis import strategies as st

import lightning_core as lc
from arrays import LAYOUTS, arr, logical, render as render_arr
from rules import BAD_DTYPES, BAD_OUTS, BAD_PARAMS, DEVICES, DEV, OPS, OUT, RTOL

POISON_BITS = np.uint32(0x7FC0DEAD)  # a NaN no op computes: an element still holding it was never written
SENTINEL = 7.25
HUGE = 2**40

# ---- strategies ------------------------------------------------------------------------------

SIZES = [1, 1, 2, 3, 3, 5, 7, 2, 13, 5, 31, 97]
LETTER_SIZES = {"n": [1, 1, 2], "c": [1, 2, 3, 4, 1, 2, 3, 64], "H": [1, 2, 3, 4, 5, 7, 9, 16, 1, 64],
                "W": [1, 2, 3, 4, 5, 7, 9, 16, 1, 64], "k": [1, 2, 3, 5], "l": [1, 2, 3, 5], "o": [1, 2, 3, 5, 13, 1, 2, 64]}
STAR_SIZES = [1, 2, 3, 5, 7, 1, 13, 31]


def _sizes(letter):
    return st.sampled_from(LETTER_SIZES.get(letter, SIZES))


@st.composite
def star_shape(draw, min_ndim=0):
    if draw(st.integers(0, 19)) == 0:  # now and then a big 1-D array: the threaded CPU paths
        return [draw(st.sampled_from([40009, 300007]))]
    nd = draw(st.integers(min_ndim, 4))
    return [draw(st.sampled_from(STAR_SIZES)) for _ in range(nd)]


def resolve(pattern, dims, star):
    if pattern == "*":
        return list(star)
    return [star[-1] if c == "$" else dims[c] for c in pattern]


def shape_error(op, shapes, P):
    """None when the shapes fit the op's patterns (and its check), else why not."""
    dims, star = {}, None
    for name, pat in op.inputs.items():
        nm = name.rstrip("?")
        s = shapes.get(nm)
        if s is None:
            continue
        if pat == "*":
            if star is None:
                star = list(s)
            elif list(s) != star:
                return f"'{nm}' shape {s} != {star}"
            if len(s) < op.star_min_ndim:
                return f"'{nm}' needs >= {op.star_min_ndim} dims"
            continue
        if pat == "$":
            continue
        if len(s) != len(pat):
            return f"'{nm}' must be {len(pat)}-D"
        for c, v in zip(pat, s):
            if dims.setdefault(c, v) != v:
                return f"'{nm}' size {c}={v} != {dims[c]}"
    for name, pat in op.inputs.items():
        s = shapes.get(name.rstrip("?"))
        if pat == "$" and s is not None and (star is None or len(star) == 0 or list(s) != [star[-1]]):
            return f"'{name}' must be [{star[-1] if star else '?'}]"
    if any(v == 0 for s in shapes.values() if s is not None for v in s):
        return "empty"
    if op.check:
        return op.check(dims, star, P)
    return None


def out_shape(op, shapes, P):
    dims, star = {}, None
    for name, pat in op.inputs.items():
        s = shapes.get(name.rstrip("?"))
        if s is None:
            continue
        if pat == "*":
            star = list(s)
        elif pat != "$":
            dims.update(zip(pat, s))
    if callable(op.out):
        return list(op.out(dims, star, P))
    return resolve(op.out, dims, star)


def _array_desc(draw, shape, *, layouts=True, special=None, gpu=False, lc_ok=True):
    d = {"shape": list(shape), "seed": draw(st.integers(0, 2**16))}
    fill = draw(st.sampled_from(["normal", "normal", "normal", "ints", "ones", "normal"]))
    if fill != "normal" or special:
        d["fill"] = "normal" if special else fill
    if not special and fill == "normal" and draw(st.integers(0, 5)) == 0:
        d["scale"] = draw(st.sampled_from([4.0, 30.0, 1e-3]))
    if special:
        d["special"] = special
    if layouts and draw(st.booleans()):
        d["layout"] = draw(st.sampled_from(LAYOUTS))
    if lc_ok:
        wraps = ["numpy", "numpy", "tensor", "view", "from_numpy"] if not gpu else ["numpy", "tensor", "tensor", "view"]
        w = draw(st.sampled_from(wraps))
        if w != "numpy":
            d["wrap"] = w
            if w in ("tensor", "view"):
                d["device"] = "cuda" if gpu else "cpu"
            if w != "from_numpy":
                d.pop("layout", None)
            elif d.get("layout") in ("misaligned", "swapped"):
                d.pop("layout")
    return d


OP_FAULTS = ["none"] * 8 + ["special", "special", "special", "dtype", "shape", "ndim", "empty", "bad_out", "bad_out",
                            "alias", "device", "policy", "param", "none_input", "junk_input", "huge",
                            "kwarg_typo"]


def both(expect, new):
    """The outcomes allowed when a second fault joins: either fault's error is a right answer
    (the runtime may check them in any order); success only if both allow it."""
    if expect == ["ok"]:
        return list(new)
    ok = ["ok"] if "ok" in expect and "ok" in new else []
    return ok + sorted({e for e in expect + list(new) if e != "ok"})


@st.composite
def op_case(draw, gpu=False):
    name = draw(st.sampled_from(sorted(OPS)))
    op = OPS[name]
    form = "into" if op.has_into and draw(st.booleans()) else "return"
    fault = draw(st.sampled_from(OP_FAULTS))
    if fault in ("bad_out", "alias") and form != "into":
        fault = "none"
    if fault == "huge":
        form = "return"  # no `out` of that size can exist
    P = dict(draw(op.params))
    letters = sorted({c for p in op.inputs.values() if p not in ("*", "$") for c in p})
    if fault == "alias":
        v = draw(st.sampled_from([1, 2, 3, 5, 7]))
        dims = {c: v for c in letters}
        if "n" in dims:
            dims["n"] = 1
    else:
        dims = {c: draw(_sizes(c)) for c in letters}
    star = draw(star_shape(op.star_min_ndim))
    present = {}
    for name_, pat in op.inputs.items():
        nm = name_.rstrip("?")
        if name_.endswith("?") and draw(st.booleans()):
            present[nm] = None
            continue
        present[nm] = resolve(pat, dims, star) if pat != "$" else ([star[-1]] if star else [1])
    case = {"family": "op", "op": name, "form": form, "fault": fault, "params": P, "device": "cpu"}
    if gpu:
        case["device"] = draw(st.sampled_from(["cuda", "cuda", "auto"]))
    names = [n for n, s in present.items() if s is not None]
    req = [n.rstrip("?") for n in op.inputs if not n.endswith("?")]
    expect = ["ok"]
    special = None
    if fault == "special":
        cands = [n for n in names if n not in op.finite]
        tgt = draw(st.sampled_from(cands))
        special = (tgt, draw(st.sampled_from(["nan", "inf", "-inf", "mix"])))
    elif fault in ("shape", "ndim", "empty"):
        cands = [n for n in names if not (fault == "ndim" and n in op.leading_free)]
        if not cands:
            cands, fault = names, "shape"
        tgt = draw(st.sampled_from(cands))
        s = list(present[tgt])
        if fault == "shape" and s:
            i = draw(st.integers(0, len(s) - 1))
            s[i] = s[i] + draw(st.sampled_from([1, 2, -1])) if s[i] > 1 else s[i] + 1
        elif fault == "ndim" or not s:
            if s and draw(st.booleans()):
                s.pop(draw(st.integers(0, len(s) - 1)))
            else:
                s.insert(draw(st.integers(0, len(s))), draw(st.sampled_from([1, 2])))
        else:
            s[draw(st.integers(0, len(s) - 1))] = 0
        present[tgt] = s
    elif fault == "huge":  # zero-stride inputs whose result would need >= 4 TiB
        ostar = [HUGE] if len(star) <= 1 else [2**20, 2**20] + star[2:]
        dd = dict(dims)
        dd[op.out[0] if isinstance(op.out, str) and op.out != "*" else "n"] = HUGE
        for nm in names:
            pat = op.inputs.get(nm, op.inputs.get(nm + "?"))
            present[nm] = resolve(pat, dd, ostar) if pat != "$" else [ostar[-1]]
    # shapes decided: is the call valid?
    err = shape_error(op, present, P)
    if fault == "huge":
        expect = ["ValueError", "MemoryError"] if err is None or err == "empty" else ["ValueError"]
    elif err == "empty":
        expect = ["ok", "ValueError"] if op.empty_ok else ["ValueError"]
    elif err:
        expect = ["ValueError"]
    inputs = {}
    for nm, s in present.items():
        if s is None:
            inputs[nm] = None
            continue
        sp = special[1] if special and special[0] == nm else None
        d = _array_desc(draw, s, special=sp, gpu=gpu, lc_ok=fault not in ("huge", "alias"))
        if fault == "huge":
            d = {"shape": s, "layout": "bcast", "fill": "ones"}
        inputs[nm] = d
    case["inputs"] = inputs
    if fault == "dtype":
        tgt = draw(st.sampled_from(names))
        d = inputs[tgt]
        if d.get("wrap", "numpy") in ("tensor", "view"):
            d["dtype"] = "float64"
        else:
            d.pop("wrap", None)
            d["dtype"] = draw(st.sampled_from(BAD_DTYPES))
            if d.get("layout") in ("misaligned", "swapped") and d["dtype"] in ("bool",):
                d.pop("layout")
        expect = both(expect, ["TypeError"])
    elif fault == "none_input":
        tgt = draw(st.sampled_from(req))
        inputs[tgt] = None
        expect = both(expect, ["TypeError"])
    elif fault == "junk_input":
        tgt = draw(st.sampled_from(req))
        inputs[tgt] = draw(st.sampled_from([{"junk": "abc"}, {"junk": "list"}, {"junk": "object"}, {"junk": 1.5}]))
        expect = both(expect, ["TypeError"])
    elif fault == "device":
        dev = draw(st.sampled_from(list(DEVICES)))
        case["device"] = dev
        want = DEVICES[dev][1 if gpu else 0]
        expect = both(expect, [want if isinstance(want, str) else want.__name__])
    elif fault == "policy":
        pol = {"device": draw(st.sampled_from(["auto", "cpu", "cuda", "gpu"])),
               "upload": draw(st.sampled_from(["always", "once", "never"])),
               "download": draw(st.booleans()), "sync": draw(st.sampled_from(["per_call", "batch", "none"])),
               "precision": draw(st.sampled_from(["fp32", "tf32"])),
               "fusion": draw(st.booleans()), "autotune": draw(st.booleans())}
        case["policy"] = pol
        case["device"] = None
        if pol["device"] == "cpu" and (pol["upload"] == "never" or not pol["download"]) or \
                pol["download"] and pol["sync"] == "none":
            case["policy_invalid"] = True
            expect = ["ValueError"]  # raised when the policy is built, before any call
        else:
            on_gpu_dev = pol["device"] in ("cuda", "gpu")
            host_inputs = any(d and d.get("wrap", "numpy") in ("numpy", "from_numpy") for d in inputs.values())
            if on_gpu_dev and (not gpu or (pol["upload"] == "never" and host_inputs)):
                expect = both(expect, ["ValueError"])
    elif fault == "param":
        cands = [k for k in P if k in BAD_PARAMS]
        if cands:
            k = draw(st.sampled_from(cands))
            v, types = draw(st.sampled_from(BAD_PARAMS[k]))
            P[k] = v
            expect = both(expect, [t if isinstance(t, str) else t.__name__ for t in types])
            case["novalues"] = True
        else:
            case["fault"] = "none"
    elif fault == "kwarg_typo":
        case["extra_kw"] = {draw(st.sampled_from(["devcie", "polcy", "Device", "out"])): "cpu"}
        expect = both(expect, ["TypeError"])
    if form == "into":
        if fault == "bad_out":
            kind = draw(st.sampled_from(sorted(BAD_OUTS)))
            case["out"] = {"bad": kind}
            expect = both(expect, [t.__name__ for t in BAD_OUTS[kind]])
        elif fault == "alias" and expect == ["ok"]:
            oshape = out_shape(op, present, P)
            same = [n for n in names if present[n] == oshape]
            if same:
                tgt = draw(st.sampled_from(same))
                for nm in names:
                    inputs[nm].pop("layout", None)
                    inputs[nm].pop("wrap", None)
                    inputs[nm].pop("device", None)
                case["alias"] = {"input": tgt, "shift": draw(st.sampled_from([0, 0, 1, 2, -1]))}
                expect = ["ok", "ValueError"]
            else:
                case["fault"] = "none"
        if "out" not in case and "alias" not in case:
            case["out"] = {"good": True}
    case["params"] = P
    case["expect"] = expect
    return case


SESSION_KINDS = {
    "matmul": ("matmul2d_resident_session", "matmul2d", ("a", "b")),
    "attention": ("attention2d_resident_session", "attention2d", ("q", "k", "v")),
    "conv_attention": ("conv_attention_resident_session", "conv_attention_nchw", ("x",)),
}


@st.composite
def session_case(draw, gpu=False):
    kind = draw(st.sampled_from(sorted(SESSION_KINDS)))
    factory, opname, per_call = SESSION_KINDS[kind]
    op = OPS[opname]
    P = dict(draw(op.params))
    if kind == "conv_attention":
        P.setdefault("activation", "relu")
    letters = sorted({c for p in op.inputs.values() for c in p})
    dims = {c: draw(_sizes(c)) for c in letters}
    dims["n"] = 1
    inputs = {}
    for name_, pat in op.inputs.items():
        nm = name_.rstrip("?")
        if name_.endswith("?") and draw(st.booleans()):
            inputs[nm] = None
            continue
        inputs[nm] = _array_desc(draw, resolve(pat, dims, None), gpu=gpu, lc_ok=False)
    case = {"family": "session", "kind": kind, "params": P, "inputs": inputs,
            "device": draw(st.sampled_from(["cuda", "auto"] if gpu else ["cpu", "cpu", "auto", None])),
            "upload": draw(st.sampled_from([None, None, "once", "always"])), "calls": []}
    expect = ["ok"]
    if shape_error(op, {k: (v["shape"] if v else None) for k, v in inputs.items()}, P):
        expect = ["ValueError"]
    r = draw(st.integers(0, 9))
    if r == 0:
        case["upload"] = draw(st.sampled_from([3, "sometimes", "never"]))
        expect = both(expect, {3: ["TypeError"], "sometimes": ["ValueError"], "never": ["ok", "ValueError"]}[case["upload"]])
    elif r == 1 and kind != "matmul":
        v, types = draw(st.sampled_from(BAD_PARAMS["scale"]))
        P["scale"] = v
        expect = both(expect, [t if isinstance(t, str) else t.__name__ for t in types])
    case["expect"] = expect
    n_calls = draw(st.integers(1, 5))
    ran = False
    for i in range(n_calls):
        m = draw(st.sampled_from(["start_into", "run_into", "batch", "download_into", "close"] if i else
                                 ["start_into", "run_into", "batch"]))
        if m == "download_into" and not ran:
            m = "run_into"
        c = {"m": m}
        if m != "close":
            c["out"] = draw(st.sampled_from([{"good": True}] * 5 + [{"bad": k} for k in sorted(BAD_OUTS)]))
        if m != "download_into" and m != "close":
            c["fresh"] = draw(st.sampled_from([False, False, True, "shape"]))
            ran = True
        if m == "batch":
            c["n"] = draw(st.sampled_from([1, 2, 3, 0, -1]))
        case["calls"].append(c)
    return case


TENSOR_ACTIONS = ["roundtrip", "roundtrip", "empty", "view", "view", "copy"]


@st.composite
def tensor_case(draw, gpu=False):
    action = draw(st.sampled_from(TENSOR_ACTIONS))
    dev = "cuda" if gpu and draw(st.booleans()) else "cpu"
    case = {"family": "tensor", "action": action, "device": dev}
    if action == "roundtrip":
        d = _array_desc(draw, draw(star_shape()), lc_ok=False)
        d["dtype"] = draw(st.sampled_from(["float32"] * 4 + ["float64", "float16", "int32", "bool"]))
        if d["dtype"] == "bool" and d.get("layout") in ("swapped", "misaligned"):
            d.pop("layout")
        case["src"] = d
        case["expect"] = ["ok"]
    elif action == "empty":
        shape = draw(st.sampled_from([[0], [3, 0], [5], [2, 3], [2**31, 2**31], [2**62, 4], [2**40, 2**40],
                                      [-1], [3, -2], [2**63 - 1], [2**33, 2**33, 2], [2**20, 2**20], [2**61]]))
        case["shape"] = shape
        n = math.prod(shape)
        case["expect"] = ["ok"] if 0 <= n < 2**20 and min(shape) >= 0 else \
            (["ValueError"] if min(shape) < 0 else ["ValueError", "MemoryError"])
    elif action == "view":
        n = draw(st.sampled_from([1, 2, 5, 12, 30]))
        nd = draw(st.integers(0, 3))
        shape = [draw(st.sampled_from([0, 1, 2, 3, 4])) for _ in range(nd)]
        strides = [draw(st.sampled_from([0, 1, 2, 3, -1, -2, 5])) for _ in range(nd)]
        offset = draw(st.sampled_from([0, 1, 2, 4, n - 1, n, -1]))
        if draw(st.integers(0, 7)) == 0:  # a huge stride-0 view: fine to make, not to compute on
            shape, strides = draw(st.sampled_from([([2**40], [0]), ([2**31, 2**31], [0, 0]), ([2**62, 4], [0, 1])]))
            offset = 0
            case["huge"] = True
        case.update(n=n, shape=shape, strides=strides, offset=offset)
        lo = offset + sum(min(0, (s - 1) * t) for s, t in zip(shape, strides))
        hi = offset + sum(max(0, (s - 1) * t) for s, t in zip(shape, strides))
        if case.get("huge"):
            case["expect"] = ["ok", "ValueError", "MemoryError"]
        elif math.prod(shape) == 0:
            case["expect"] = ["ok", "ValueError"]
        else:
            case["expect"] = ["ok"] if 0 <= lo and hi < n else ["ValueError"]
    else:  # copy: dst.copy_(src) between views, maybe of one buffer
        n = draw(st.sampled_from([4, 7, 12]))
        m = draw(st.integers(1, n // 2))
        case.update(n=n, m=m, dst=draw(st.sampled_from([(0, 1), (1, 1), (0, 2), (m, 1), (n - 1, -1)])),
                    src=draw(st.sampled_from([(0, 1), (1, 1), (n - 1, -1), (0, 2), (2, 1)])),
                    same_buffer=draw(st.booleans()), src_kind=draw(st.sampled_from(["f32", "f32", "f64", "short"])),
                    dst_ro=draw(st.integers(0, 7)) == 0)
        ok_lo = lambda o, s: o >= 0 and 0 <= o + (m - 1) * s < n  # noqa: E731
        if not (ok_lo(*case["dst"]) and ok_lo(*case["src"])):
            case["dst"], case["src"] = (0, 1), (1, 1)
        case["expect"] = {"f64": ["TypeError"], "short": ["ValueError"]}.get(case["src_kind"], ["ok"])
        if case["dst_ro"]:  # a read-only destination: ValueError (or the other fault's error)
            case["expect"] = both(case["expect"], ["ValueError"])
        if case["same_buffer"] and case["expect"] == ["ok"]:
            case["expect"] = ["ok", "ValueError"]
    return case


@st.composite
def any_case(draw, gpu=False):
    fam = draw(st.sampled_from(["op"] * 7 + ["session"] * 2 + ["tensor"]))
    return draw({"op": op_case, "session": session_case, "tensor": tensor_case}[fam](gpu=gpu))


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
            oshape = [1]  # no such array (negative or too large): the call must fail anyway
        out, osrc = _make_out(case["out"], oshape, like_lc, dev)
        c.var("out", out, osrc)
        if case["out"].get("bad") == "noncontig" and _noncontig_really(out):
            expect = ["ok", "ValueError"]  # numpy calls it contiguous (size-1 dims): either is fine
    name = op.name if case["form"] == "return" else op.name + "_into"
    for tok in op.call:
        if tok == OUT:
            if case["form"] == "into":
                c.pos(out, "out")
        elif tok == DEV:
            dev = case.get("device")
            c.pos(dev, repr(dev))
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
    ref = op.ref({k: v for k, v in X.items()}, P)
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
    compare(y, ref, op.atol(X, P), allow)
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
            compare(y, op.ref(last, Pq), op.atol(last, Pq), where=f"s.{meth} out")
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
            ref = logical(d).astype(np.float32).astype(np.float64)
            if t.dtype != "float32" or list(t.shape) != list(d["shape"]):
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


RUNNERS = {"op": run_op, "session": run_session, "tensor": run_tensor}


def signature(case, problem, ctx=""):
    fam = case["family"]
    if fam == "op":
        return f"op:{case['op']}:{case['form']}:{case['fault']}:{problem}"
    if fam == "session":
        return f"session:{case['kind']}:{ctx}:{problem}"
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
