"""The fuzz family "graph": random `lc.GraphIR` chains, built, planned and executed on the CPU.

A case is a chain of 1-6 nodes over one input `x` (elementwise ops with constant or input
operands, vector_scale, relu, gelu, softmax with an optional broadcast mask, layernorm, linear,
matmul, reshape / permute / slice views, negative steps included) in one storage dtype, built by hand (`api` "graph") or traced
from a plain function by `lc.compile` (`api` "compile": no fault; the chain may also gather
rows or columns with an index list and multiply by the function's float argument `s`, which
takes a new value on each call and must become a graph input; the compiled function is
called twice, then with one more row where the chain has no reshape, which re-traces, and must
agree with the function called eagerly), with at most one fault:

  unknown_op     a node names an op the registry does not have
  arity          a node gets one input too few or too many
  dangling       a node reads a tensor nobody declared or produced
  shape          a constant operand declared with a size that does not fit the node
  dtype          a constant operand declared in another float dtype
  cycle          a node reads a tensor that it or a later node produces
  two_producers  two nodes write one tensor
  bad_attr       an unknown attribute, a wrong attribute type or an out-of-range value
  missing_const  a constant declared without a value
  exec_shape / exec_dtype / exec_missing   execute() given x of the wrong shape / dtype, or no x

Contract: a fault raises ValueError or TypeError (message starting with "[", naming the node
for node-level faults) at add_node, validate, plan or execute, never a crash; afterwards a plain
op works and, for the execute faults, the same graph runs with a good input. A graph without a
fault gives the result of the same ops called eagerly one by one (graph mode twice, with
different inputs, and execution_mode="eager"), within the dtype's rounding: fusion changes
where results round, not what is computed.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

GRAPH_FAULTS = ["none"] * 8 + ["unknown_op", "arity", "dangling", "shape", "dtype", "cycle",
                               "two_producers", "bad_attr", "missing_const", "exec_shape",
                               "exec_dtype", "exec_missing"]
GRAPH_DTYPES = ["float32", "float32", "float32", "float64", "float16", "bfloat16"]
UNARY = ["relu", "gelu", "vector_scale", "softmax", "layernorm"]
BINARY = ["add", "sub", "mul", "div"]
# relative error of the graph against the eager calls, by dtype, on values scaled to the result's
# magnitude (16-bit chains round every intermediate, fused or not, in different places)
GRAPH_TOL = {"float32": 2e-5, "float64": 1e-11, "float16": 3e-2, "bfloat16": 6e-2}


@st.composite
def graph_case(draw, gpu=False):  # noqa: ARG001  (CPU only: the GPU run covers graphs in its own tests)
    dtype = draw(st.sampled_from(GRAPH_DTYPES))
    rows = draw(st.sampled_from([1, 2, 3, 5, 8, 17]))
    cols = draw(st.sampled_from([1, 3, 4, 7, 16, 33]))
    shape = [rows, cols]
    consts = {}   # name -> {"shape", "seed", "nonzero"}
    nodes = []
    cur = "x"
    api = draw(st.sampled_from(["graph", "graph", "graph", "compile"]))
    # traced chains only: a gather (x[idx], one index array) and a mul by the function's float
    # argument (lifted into a graph input after its second value; docs/graph.md, "Scalars")
    traced_only = ["gather", "scalar"] if api == "compile" else []
    if dtype == "float64":  # gathers run on float32 / float16 / bfloat16 tensors
        traced_only = traced_only[1:]
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(UNARY + BINARY + ["linear", "linear", "matmul", "reshape", "permute",
                                                      "slice"] + traced_only))
        out = f"t{i}"
        node = {"op": kind, "inputs": [cur], "outputs": [out], "attrs": {}, "name": f"n{i}_{kind}"}
        if kind in BINARY:
            # the other operand: a constant of the full shape, of the last dimension or [1, cols]
            # (broadcast), or x itself when the shapes allow
            form = draw(st.sampled_from(["full", "row", "col1", "x"]))
            if form == "x" and shape == [rows, cols] and cur != "x":
                node["inputs"].append("x")
            else:
                c = f"c{i}"
                cshape = {"full": list(shape), "row": [shape[-1]], "col1": [1, shape[-1]],
                          "x": list(shape)}[form]
                consts[c] = {"shape": cshape, "seed": i, "nonzero": kind == "div"}
                node["inputs"].append(c)
        elif kind == "vector_scale":
            node["attrs"]["alpha"] = draw(st.sampled_from([0.5, -1.25, 2.0, 1.0]))
        elif kind == "gelu":
            node["attrs"]["approximate"] = draw(st.sampled_from(["tanh", "none"]))
        elif kind == "softmax":
            if draw(st.booleans()):
                node["attrs"]["scale"] = draw(st.sampled_from([0.125, 1.0, 3.0]))
            mform = draw(st.sampled_from(["none", "row", "full", "col1"]))
            if mform != "none":
                c = f"m{i}"
                consts[c] = {"shape": {"row": [shape[-1]], "full": list(shape),
                                       "col1": [1, shape[-1]]}[mform], "seed": 100 + i, "nonzero": False}
                node["inputs"].append(c)
        elif kind == "layernorm":
            g, b = f"g{i}", f"b{i}"
            consts[g] = {"shape": [shape[-1]], "seed": 200 + i, "nonzero": False}
            consts[b] = {"shape": [shape[-1]], "seed": 300 + i, "nonzero": False}
            node["inputs"] += [g, b]
            node["attrs"]["eps"] = draw(st.sampled_from([1e-5, 1e-3]))
        elif kind == "linear":
            n_out = draw(st.sampled_from([1, 4, 9, 16]))
            w = f"w{i}"
            consts[w] = {"shape": [n_out, shape[-1]], "seed": 400 + i, "nonzero": False}
            node["inputs"].append(w)
            if draw(st.booleans()):
                consts[f"bias{i}"] = {"shape": [n_out], "seed": 500 + i, "nonzero": False}
                node["inputs"].append(f"bias{i}")
            node["attrs"]["activation"] = draw(st.sampled_from(["none", "relu", "gelu"]))
            shape = [shape[0], n_out]
        elif kind == "matmul":
            n_out = draw(st.sampled_from([1, 5, 8]))
            consts[f"k{i}"] = {"shape": [shape[-1], n_out], "seed": 600 + i, "nonzero": False}
            node["inputs"].append(f"k{i}")
            shape = [shape[0], n_out]
        elif kind == "reshape":
            total = shape[0] * shape[1]
            new = draw(st.sampled_from([[1, total], [total, 1], list(reversed(shape))]))
            node["attrs"]["shape"] = new
            shape = new
        elif kind == "permute":
            node["attrs"]["dims"] = [1, 0]
            shape = [shape[1], shape[0]]
        elif kind == "slice":  # a strided / reversed view of one axis
            dim = draw(st.integers(0, 1))
            step = draw(st.sampled_from([-1, -2, 2, 3]))
            start = draw(st.sampled_from([None, 0, 1, -1]))
            n = shape[dim]
            length = len(range(*slice(start, None, step).indices(n)))
            if length == 0:  # keep the chain non-empty: the whole axis reversed instead
                start, step, length = None, -1, n
            node["attrs"] = {"dim": dim, "step": step, **({} if start is None else {"start": start})}
            shape = list(shape)
            shape[dim] = length
        elif kind == "gather":  # rows or columns picked, repeated, reversed, negative
            dim = draw(st.sampled_from([0, 1, 0, 1, "both"]))
            if dim == "both":  # x[rows, cols]: single elements, as a [k, 1] column (stays 2-D)
                k = draw(st.integers(0, 6)) if shape[0] and shape[1] else 0
                ri = draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=k, max_size=k)) if k else []
                ci = draw(st.lists(st.integers(-shape[1], shape[1] - 1), min_size=k, max_size=k)) if k else []
                node["attrs"] = {"dim": dim, "index": [ri, ci]}
                shape = [k, 1]
            else:
                n = shape[dim]
                idx = draw(st.lists(st.integers(-n, n - 1), min_size=0, max_size=7)) if n else []
                node["attrs"] = {"dim": dim, "index": idx}
                shape = list(shape)
                shape[dim] = len(idx)
        nodes.append(node)
        cur = out
    case = {"family": "graph", "api": api, "dtype": dtype, "x_shape": [rows, cols],
            "consts": consts, "nodes": nodes, "out": cur,
            "fault": draw(st.sampled_from(GRAPH_FAULTS)) if api == "graph" else "none",
            "seed": draw(st.integers(0, 2**31 - 1))}
    _apply_fault(draw, case)
    return case


def _apply_fault(draw, case):
    """Rewrites the case for its fault and sets case["expect"] / case["node"] (the node the
    error must name, if any)."""
    f, nodes, consts = case["fault"], case["nodes"], case["consts"]
    case["expect"], case["node"] = ["ValueError", "TypeError"], None
    if f == "none":
        case["expect"] = ["ok"]
        return
    k = draw(st.integers(0, len(nodes) - 1))
    n = nodes[k]
    if f == "unknown_op":
        n["op"] = n["op"] + "_x"
        case["node"] = n["name"]
    elif f == "arity":
        if len(n["inputs"]) >= 2 and n["op"] not in ("softmax", "layernorm", "linear"):
            n["inputs"] = n["inputs"][:1]        # a binary op with one input
        else:
            n["inputs"] = n["inputs"] + ["x"] * (6 - len(n["inputs"]))  # far too many
        case["node"] = n["name"]
    elif f == "dangling":
        n["inputs"][0] = "nobody_made_this"
        case["node"] = n["name"]
    elif f == "shape":
        # a constant whose sizes no longer fit this node (not one that changes a size a later
        # node reads): the last size of a weight / bias / gamma / beta / mask / binary operand,
        # the first (the reduction) of a matmul operand; a binary operand's last size must not
        # become a broadcast of 1
        cs = [c for c in n["inputs"] if c in consts]
        c = consts[draw(st.sampled_from(cs))] if cs else None
        if c is not None and n["op"] == "matmul":
            c["shape"] = [c["shape"][0] + 2] + c["shape"][1:]
        elif c is not None and (n["op"] not in BINARY or c["shape"][-1] > 1):
            c["shape"] = c["shape"][:-1] + [c["shape"][-1] + 2]
        else:
            case["fault"] = "dangling"
            n["inputs"][0] = "nobody_made_this"
        case["node"] = n["name"]
    elif f == "dtype":
        cs = [c for c in n["inputs"] if c in consts]
        if not cs:
            case["fault"] = "exec_dtype"
        else:
            consts[draw(st.sampled_from(cs))]["dtype"] = \
                "float16" if case["dtype"] != "float16" else "float32"
            case["node"] = n["name"]
    elif f == "cycle":
        n["inputs"][0] = n["outputs"][0] if draw(st.booleans()) else nodes[-1]["outputs"][0]
    elif f == "two_producers":
        if len(nodes) < 2:
            case["fault"] = "missing_const" if consts else "exec_missing"
        else:
            j = draw(st.integers(1, len(nodes) - 1))
            nodes[j]["outputs"] = list(nodes[j - 1]["outputs"])
    elif f == "bad_attr":
        n["attrs"] = dict(n["attrs"])
        choice = draw(st.sampled_from(["unknown", "type", "value"]))
        if choice == "unknown" or n["op"] not in ("vector_scale", "softmax", "layernorm", "gelu", "linear"):
            n["attrs"]["not_an_attribute"] = 1.0
        elif n["op"] == "vector_scale":
            n["attrs"]["alpha"] = "big" if choice == "type" else float("nan")
        elif n["op"] == "softmax":
            n["attrs"]["scale"] = "big" if choice == "type" else -1.0
        elif n["op"] == "layernorm":
            n["attrs"]["eps"] = [1.0] if choice == "type" else -1e-5
        else:  # gelu / linear
            key = "approximate" if n["op"] == "gelu" else "activation"
            n["attrs"][key] = 3.5 if choice == "type" else "sigmoid"
        if n["op"] == "vector_scale" and choice == "value":
            case["expect"] = ["ok", "ValueError"]  # a NaN scale may be computed (NaN out) or refused
        case["node"] = n["name"]
    if case["fault"] == "missing_const":
        if not consts:
            case["fault"] = "exec_missing"
        else:
            consts[draw(st.sampled_from(sorted(consts)))]["no_value"] = True


# ---- running a case ---------------------------------------------------------------------------

def _np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    return np.dtype(name)


def _const_value(name, c, dtype):
    rng = np.random.default_rng(c["seed"] + 7919 * len(name))
    v = rng.standard_normal(c["shape"])
    if c.get("nonzero"):
        v = np.sign(v + 1e-9) * (0.5 + np.abs(v))
    return v.astype(_np_dtype(c.get("dtype", dtype)))


def _eager(lc, node, ins):
    op, a = node["op"], node["attrs"]
    if op in ("add", "sub", "mul", "div"):
        return getattr(lc, op)(ins[0], ins[1])
    if op == "vector_scale":
        return lc.vector_scale(ins[0], a["alpha"])
    if op == "relu":
        return lc.relu(ins[0])
    if op == "gelu":
        return lc.gelu(ins[0], approximate=a.get("approximate", "tanh"))
    if op == "softmax":
        return lc.softmax(ins[0], scale=a.get("scale"), mask=ins[1] if len(ins) > 1 else None)
    if op == "layernorm":
        return lc.layernorm(ins[0], ins[1], ins[2], a["eps"])
    if op == "linear":
        act = a.get("activation", "none")
        return lc.linear(ins[0], ins[1], ins[2] if len(ins) > 2 else None, activation=act)
    if op == "matmul":
        return lc.matmul(ins[0], ins[1])
    if op == "reshape":
        return np.ascontiguousarray(np.asarray(ins[0]).reshape(a["shape"]))
    if op == "permute":
        return np.ascontiguousarray(np.asarray(ins[0]).transpose(a["dims"]))
    if op == "slice":
        key = [slice(None)] * np.asarray(ins[0]).ndim
        key[a["dim"]] = slice(a.get("start"), None, a["step"])
        return np.ascontiguousarray(np.asarray(ins[0])[tuple(key)])
    if op == "gather":
        return np.asarray(ins[0])[_gather_key(a)]
    raise AssertionError(op)


def _gather_key(a):
    if a["dim"] == "both":  # [k, 1]: rows as a column, broadcast against the columns' column
        rows, cols = (np.array(i, np.int64).reshape(-1, 1) for i in a["index"])
        return rows, cols
    return (np.array(a["index"], np.int64),) if a["dim"] == 0 else (slice(None), np.array(a["index"], np.int64))


def render(case):
    """The Python source that builds and runs the case's graph (a finding's repro)."""
    lines = ["g = lc.GraphIR()", f"g.add_tensor({case['x_shape']}, {case['dtype']!r}, 'x')"]
    for name, c in case["consts"].items():
        dt = c.get("dtype", case["dtype"])
        val = "" if c.get("no_value") else f", value=const({name!r})"
        lines.append(f"g.add_tensor({c['shape']}, {dt!r}, {name!r}, True{val})")
    for n in case["nodes"]:
        lines.append(f"g.add_node({n['op']!r}, {n['inputs']}, {n['outputs']}, {n['attrs']}, "
                     f"name={n['name']!r})")
    lines.append(f"g.set_outputs([{case['out']!r}]); g.plan('cpu'); g.execute({{'x': x}})")
    return "\n".join(lines)


def _x(case, shift, dtype=None, shape=None):
    rng = np.random.default_rng(case["seed"] + shift)
    return (rng.standard_normal(shape or case["x_shape"]) * 1.5).astype(_np_dtype(dtype or case["dtype"]))


def _chain_fn(lc, case, consts):
    """The case's chain as a plain function of x and a float s (lc ops; views and gathers as
    indexing, so a traced tensor records nodes and a numpy array is indexed eagerly)."""
    def fn(x, s=1.0):
        env = {"x": x, **consts}
        for n in case["nodes"]:
            ins = [env[i] for i in n["inputs"]]
            if n["op"] == "scalar":
                out = ins[0] * s
                if isinstance(ins[0], np.ndarray):
                    # The array's dtype, as the traced graph keeps it (and numpy's weak
                    # Python scalars, NEP 50): on the device (numpy 2.5.2 and its ml_dtypes) a
                    # bfloat16 array times a float came out wider, which the op then refused.
                    out = out.astype(ins[0].dtype)
            elif n["op"] == "gather":
                out = ins[0][_gather_key(n["attrs"])]
            elif n["op"] == "reshape":
                out = ins[0].reshape(*n["attrs"]["shape"])
            elif n["op"] == "permute":
                t = ins[0]
                out = t.permute(1, 0) if hasattr(t, "permute") else np.ascontiguousarray(t.transpose(1, 0))
            elif n["op"] == "slice":  # basic slicing, on a traced tensor or a numpy array alike
                key = [slice(None), slice(None)]
                key[n["attrs"]["dim"]] = slice(n["attrs"].get("start"), None, n["attrs"]["step"])
                out = ins[0][tuple(key)]
            else:
                out = _eager(lc, n, ins)
            env[n["outputs"][0]] = out
        return env[case["out"]]
    return fn


def run_compiled(case, trace):
    import lightning_core as lc
    from cases import Finding

    consts = {n: _const_value(n, c, case["dtype"]) for n, c in case["consts"].items()}
    fn = _chain_fn(lc, case, consts)
    f = lc.compile(fn)
    scalar = any(n["op"] == "scalar" for n in case["nodes"])
    trace.append("# the chain above as fn(x, s), then f = lc.compile(fn); f(x, s)")
    # twice the traced shape (the second call replays, or with a scale node traces once more with
    # s lifted), then one more row: a new trace, or, where the function itself refuses that shape
    # (constants of the old size), the same refusal
    shapes = [case["x_shape"], case["x_shape"], [case["x_shape"][0] + 1, case["x_shape"][1]]]
    for k, shape in enumerate(shapes):
        x = _x(case, 10 + k, shape=shape)
        s = [0.75, -1.5, 2.25][k] if scalar else 1.0
        trace.append(f"f(x, {s})  # x {shape}")
        try:
            ref = fn(x, s)
        except (ValueError, TypeError) as e:
            try:
                f(x, s)
            except (ValueError, TypeError):
                continue
            raise Finding("unexpected-success", f"lc.compile ran a call the function refuses "
                                                f"eagerly ({type(e).__name__}: {str(e)[:200]})")
        y = f(x, s)
        _close(Finding, case["dtype"], y, ref, f"lc.compile call {k} (x {shape}, s {s})")
    if f.traces > 2 + scalar:
        raise Finding("wrong-trace-count", f"{f.traces} traces for two shapes" + (" and 3 values of s" if scalar else ""))
    if scalar and f.traces > 1 and "argument 1 (float) is a graph input" not in f.explain():
        raise Finding("scalar-not-lifted", "s reaches a mul, yet it keys the cache by value:\n" + f.explain()[:400])


def _close(Finding, dtype, y, ref, where):
    y = np.asarray(y).astype(np.float64)
    ref = np.asarray(ref).astype(np.float64)
    if y.shape != ref.shape:
        raise Finding("wrong-shape", f"{where}: shape {y.shape}, expected {ref.shape}")
    with np.errstate(invalid="ignore"):
        fin = np.where(np.isfinite(ref), ref, 0)
        scale = max(1.0, float(np.max(np.abs(fin)))) if ref.size else 1.0
        bad = ~(np.abs(y - ref) <= GRAPH_TOL[dtype] * scale) & ~(np.isnan(y) & np.isnan(ref)) & ~(y == ref)
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise Finding("wrong-values", f"{where}{list(i)} = {y[i]!r}, eager {ref[i]!r} "
                                      f"({int(bad.sum())} of {y.size} off; scale {scale:.3g})")


def run_graph(case, trace):
    import lightning_core as lc
    from cases import Finding, check_error, classify

    trace.append(render(case))
    if case.get("api") == "compile":
        return run_compiled(case, trace)
    dtype, expect, fault = case["dtype"], case["expect"], case["fault"]
    consts = {n: _const_value(n, c, dtype) for n, c in case["consts"].items()}

    def build():
        g = lc.GraphIR()
        g.add_tensor(case["x_shape"], dtype, "x")
        for name, c in case["consts"].items():
            kw = {} if c.get("no_value") else {"value": consts[name]}
            g.add_tensor(c["shape"], c.get("dtype", dtype), name, True, **kw)
        for n in case["nodes"]:
            g.add_node(n["op"], n["inputs"], n["outputs"], n["attrs"], name=n["name"])
        g.set_outputs([case["out"]])
        g.plan("cpu")
        return g

    def reference(x):
        env = {"x": x, **consts}
        for n in case["nodes"]:
            env[n["outputs"][0]] = _eager(lc, n, [env[i] for i in n["inputs"]])
        return np.asarray(env[case["out"]])

    def check_close(y, ref, where):
        _close(Finding, dtype, y, ref, where)

    def still_usable():
        try:
            r = lc.relu(np.array([-1.0, 2.0], np.float32))
        except Exception as e:  # noqa: BLE001
            raise Finding("unusable-after-error", f"relu after the error raised {type(e).__name__}: {e}")
        if list(np.asarray(r)) != [0.0, 2.0]:
            raise Finding("unusable-after-error", f"relu after the error gave {r!r}")

    exec_fault = fault.startswith("exec_")
    try:
        g = build()
        if exec_fault:
            bad = {"exec_shape": {"x": _x(case, 1, shape=[case["x_shape"][0] + 1, case["x_shape"][1]])},
                   "exec_dtype": {"x": _x(case, 1, dtype="float64" if dtype != "float64" else "float32")},
                   "exec_missing": {}}[fault]
            trace.append(f"g.execute({ {k: (v.shape, v.dtype.name) for k, v in bad.items()} })")
            try:
                g.execute(bad)
            except Exception as e:  # noqa: BLE001
                check_error(e, expect)
                still_usable()
                x = _x(case, 2)
                trace.append("g.execute({'x': x})  # a good input after the failed call")
                check_close(g.execute({"x": x})[case["out"]], reference(x), "after a failed execute")
                return
            raise Finding("unexpected-success", f"execute({fault}) returned; expected {' or '.join(expect)}")
        for shift, mode in ((3, "graph"), (4, "graph"), (5, "eager")):
            x = _x(case, shift)
            trace.append(f"g.execute({{'x': x}}, execution_mode={mode!r})")
            y = g.execute({"x": x}, execution_mode=mode)[case["out"]]
            if "ok" not in expect:
                raise Finding("unexpected-success", f"the graph ran; expected {' or '.join(expect)} "
                                                    f"({fault})")
            check_close(y, reference(x), f"{mode} result")
    except Finding:
        raise
    except Exception as e:  # noqa: BLE001
        check_error(e, expect)
        if case["node"] and classify(e) in ("ValueError", "TypeError") and case["node"] not in str(e):
            raise Finding("error-without-node", f"{type(e).__name__} does not name node "
                                                f"{case['node']!r}: {str(e)[:300]!r}")
        still_usable()
