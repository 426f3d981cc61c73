"""Hypothesis strategies of fuzz cases (see cases.py for what a case is and how it is judged):
op cases (rules.OPS with at most one fault), session call sequences, tensor/view cases, and the
shape rules both halves use (resolve, shape_error, out_shape).
"""

from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import strategies as st

from arrays import LAYOUTS
from graphs import graph_case
from rules import BAD_DTYPES, BAD_OUTS, BAD_PARAMS, DEVICES, OPS


def _op_names():
    """The ops the op cases draw from: all of rules.OPS, or LC_FUZZ_OPS (comma-separated names)
    to focus a run on a few."""
    only = [n.strip() for n in os.environ.get("LC_FUZZ_OPS", "").split(",") if n.strip()]
    unknown = [n for n in only if n not in OPS]
    if unknown:
        raise ValueError(f"LC_FUZZ_OPS names unknown ops {unknown}; known: {sorted(OPS)}")
    return sorted(only) if only else sorted(OPS)

POISON_BITS = np.uint32(0x7FC0DEAD)  # a NaN no op computes: an element still holding it was never written
SENTINEL = 7.25
HUGE = 2**40

# ---- strategies ------------------------------------------------------------------------------

SIZES = [1, 1, 2, 3, 3, 5, 7, 2, 13, 5, 31, 97]
LETTER_SIZES = {"n": [1, 1, 2], "c": [1, 2, 3, 4, 1, 2, 3, 64],
                # attention's key count: now and then past 256 (the CPU decode and tiled paths)
                "s": SIZES + [257, 300, 513], "H": [1, 2, 3, 4, 5, 7, 9, 16, 1, 64],
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
                if not op.broadcast:
                    return f"'{nm}' shape {s} != {star}"
                try:
                    star = list(np.broadcast_shapes(tuple(star), tuple(s)))
                except ValueError:
                    return f"'{nm}' shape {s} does not broadcast with {star}"
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
            star = list(np.broadcast_shapes(tuple(star), tuple(s))) if op.broadcast and star is not None \
                else list(s)
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
    name = draw(st.sampled_from(_op_names()))
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
        if dims.get("s", 0) > 97:  # a long key axis: the other sizes small (the arrays stay ~1M)
            cap = {"b": 2, "h": 8, "g": 8, "q": 13}
            dims = {c: min(v, cap.get(c, 64)) if c != "s" else v for c, v in dims.items()}
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
    if fault == "special" and not [n for n in names if n not in op.finite]:
        fault = "none"  # every input must be finite (lc.attention): no special values to draw
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
        dd = {c: min(v, 97) for c, v in dims.items()}  # numpy's byte count must fit an int64
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
        if d.get("wrap", "numpy") in ("tensor", "view") and "float64" not in op.dtypes:
            d["dtype"] = "float64"
        else:
            d.pop("wrap", None)
            d.pop("device", None)
            d["dtype"] = draw(st.sampled_from([t for t in BAD_DTYPES if t not in op.dtypes]))
            if d.get("layout") in ("misaligned", "swapped") and d["dtype"] in ("bool",):
                d.pop("layout")
        expect = both(expect, ["TypeError"])
    elif fault == "none_input":
        tgt = draw(st.sampled_from(req))
        inputs[tgt] = None
        expect = both(expect, ["TypeError"])
    elif fault == "junk_input":
        tgt = draw(st.sampled_from(req))
        # a list of floats or a Python float converts to a float64 array (numpy's rule): a valid
        # input of the ops that compute in float64
        junk = ["abc", "object"] + ([] if "float64" in op.dtypes else ["list", 1.5])
        inputs[tgt] = {"junk": draw(st.sampled_from(junk))}
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
            if err and err != "empty" and shape_error(op, present, P) is None:
                expect = ["ok"]  # the new value made the sizes valid (a padding near 2^30)
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


TENSOR_ACTIONS = ["roundtrip", "roundtrip", "empty", "view", "view", "copy", "index", "index", "arith",
                  "arith"]


def _index_item(draw, n):
    """One basic index item for an axis of size n (an int, maybe out of range, or a slice)."""
    if draw(st.booleans()):
        return ("int", draw(st.integers(-n - 1, n)))
    step = draw(st.sampled_from([None, 1, 2, -1, -2]))
    return ("slice", draw(st.sampled_from([None, 0, 1, -1])), draw(st.sampled_from([None, 2, -1, n])), step)


def _index_array(draw, n, shape):
    """An index array over an axis of size n: ints (negatives, repeats, sometimes one out of
    range), a 1-D boolean mask (sometimes of the wrong length), in `shape`."""
    if draw(st.integers(0, 4)) == 0 and len(shape) == 1:
        m = n if draw(st.integers(0, 5)) else n + 1
        return ("mask", [draw(st.booleans()) for _ in range(m)])
    lo, hi = (-n, n - 1) if n else (0, 0)
    vals = [draw(st.integers(lo, hi)) if n else 0 for _ in range(math.prod(shape))]
    if vals and draw(st.integers(0, 9)) == 0:  # out of range: a ValueError, as numpy's IndexError
        vals[0] = draw(st.sampled_from([n, -n - 1, n + 7]))
    return ("ints", vals, list(shape))


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
    elif action == "index":  # t[key] with index arrays, against numpy's advanced indexing
        nd = draw(st.integers(1, 3))
        shape = [draw(st.sampled_from([0, 1, 2, 3, 5])) for _ in range(nd)]
        k = draw(st.sampled_from([1, 1, 2])) if nd >= 2 else 1
        axes = sorted(draw(st.permutations(range(nd)))[:k])
        ishape = draw(st.sampled_from([[2], [3], [1], [0], [2, 2]]))
        items = []
        for ax in range(nd):
            if ax in axes:
                # two arrays: the second one's shape broadcastable or not (a ValueError)
                sh = ishape if ax == axes[0] else draw(st.sampled_from([ishape, [1], ishape[-1:], [4]]))
                items.append(("array",) + _index_array(draw, shape[ax], sh))
            elif draw(st.integers(0, 2)):
                items.append(_index_item(draw, shape[ax]))
            else:
                items.append(("slice", None, None, None))
        mask2 = nd >= 2 and k == 1 and draw(st.integers(0, 4)) == 0
        if mask2:
            # a boolean mask over two adjacent axes (sometimes of the wrong shape: ValueError)
            ax = draw(st.integers(0, nd - 2))
            ms = [shape[ax], shape[ax + 1]] if draw(st.integers(0, 4)) else [shape[ax], shape[ax + 1] + 1]
            items[ax:ax + 2] = [("array", "mask2", [draw(st.booleans()) for _ in range(math.prod(ms))], ms)]
        if draw(st.integers(0, 5)) == 0:
            items.insert(draw(st.integers(0, len(items))), ("none",))
        if draw(st.integers(0, 5)) == 0 and items[0][0] == "slice" and items[0][1:] == (None, None, None):
            items[0] = ("ellipsis",)
        case.update(shape=shape, items=items,
                    dtype=draw(st.sampled_from(["float32", "float32", "float16", "bfloat16", "int32"])),
                    lc_index=not mask2 and draw(st.integers(0, 3)) == 0)  # the first int array
        case["expect"] = ["numpy"]  # decided at run time: numpy's own indexing is the oracle
    elif action == "arith":  # lc.Tensor's operators against numpy (lightning_core/_tensor_ops.py)
        op = draw(st.sampled_from(["+", "-", "*", "/", "/", "@", "neg"]))
        shape = [draw(st.sampled_from([0, 1, 2, 3, 5])) for _ in range(draw(st.integers(1, 3)))]
        if op == "@":
            shape = shape[-2:] if len(shape) >= 2 else [2] + shape
            k = shape[-1] if draw(st.integers(0, 5)) else shape[-1] + 1  # sometimes mismatched
            oshape = [k, draw(st.sampled_from([1, 2, 4]))]
        else:  # broadcastable (a suffix, with 1s) or sometimes not
            oshape = [d if draw(st.integers(0, 2)) else 1 for d in shape[draw(st.integers(0, len(shape))):]]
            if oshape and draw(st.integers(0, 6)) == 0:
                oshape[-1] += 2
        dtype = draw(st.sampled_from(["float32", "float32", "float16", "bfloat16"]))
        kinds = ["tensor", "array", "number", "number", "bad"] if op != "@" else ["tensor", "array", "bad"]
        case.update(op=op, shape=shape, oshape=oshape, dtype=dtype, reflected=draw(st.booleans()),
                    other=draw(st.sampled_from(kinds)),
                    odtype=dtype if draw(st.integers(0, 5)) else draw(st.sampled_from(["float32", "float64", "float16"])),
                    number=draw(st.sampled_from([0.0, 1.5, -2, 3, 0.25, -0.0, 1e30])),
                    bad=draw(st.sampled_from(["'x'", "None", "[1.0, 2.0]", "True"])))
        case["expect"] = ["numpy"]  # decided at run time from numpy's own result
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
    # graphs.py's cases build and run on the CPU only: the GPU run draws the other families
    fam = draw(st.sampled_from(["op"] * 7 + ["session"] * 2 + ["tensor"] + ([] if gpu else ["graph"] * 2)))
    return draw({"op": op_case, "session": session_case, "tensor": tensor_case,
                 "graph": graph_case}[fam](gpu=gpu))
