#!/usr/bin/env python3
"""Typed stub of the native module: nanobind's stubgen, then real types where it wrote `object`.

    python python/gen_stubs.py -i build/python -o build/python/lightning_core/_lightning_core.pyi

python/CMakeLists.txt runs this at build time (so every build, wheel and install carries a stub
matching its module). Step 1 is `python -m nanobind.stubgen`. Its output types every argument
the bindings take as a plain Python object (nb::handle: the ops accept numpy arrays, lc.Tensor,
lists and scalars and convert them themselves) as `object | None`, and every such return as
`object`. Step 2, the overlay below, rewrites those signatures from the parameter NAMES the
bindings use (one table, so ops added later get types without edits here when they reuse the
names) and a few per-function entries:

  * array inputs (a, b, x, q, k, v, weight, bias, ids, ...)  -> `Tensor | ArrayLike`
  * `out` of the `_into` forms                               -> a TypeVar returned as is
  * ops returning a result                                   -> overloads: any lc.Tensor input
    gives `Tensor`; numpy arrays give `NDArray` of the first array's dtype (the rule the bindings
    follow: numpy in, numpy out with the first input's dtype, unless the policy has
    download=False, which returns an lc.Tensor)
  * device / policy / scalar knobs                           -> str | None, ExecutionPolicy, ...

Nothing here edits a binding source. Parameter names not in the table stay `object` and are
listed on stderr (tests/python/test_typing.py fails on them, naming the function to add).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import tempfile

MODULE = "lightning_core._lightning_core"
ARRAY = "_ArrayOrTensor"

# Array-valued parameters of ops and sessions (inputs).
ARRAY_PARAMS = {"a", "b", "x", "q", "k", "v", "w", "weight", "bias", "gamma", "beta", "ids",
                "residual", "w1", "b1", "w2", "b2", "x0", "x1", "x2", "x3", "x4", "x5"}
# Other parameters by name.
SCALAR_PARAMS = {
    "device": "str | None",
    "policy": "ExecutionPolicy | None",
    "upload": "str | None",
    "causal": "bool",
    "graph": "bool",
    "use_graph": "bool",
    "eps": "float",
    "alpha": "float",
    "scale": "float | None",
    "stride_h": "int",
    "stride_w": "int",
    "pad_h": "int",
    "pad_w": "int",
    "seq_len": "int",
    "head_dim": "int",
    "n": "int",
    "activation": "str",
    "program": "str",
    "mask": "_ArrayOrTensor | None",
    "return_lse": "bool",
    "approximate": "str",
    "exc_type": "type[BaseException] | None",
    "exc": "BaseException | None",
    "tb": "TracebackType | None",
}
# Per-function entries: qualified name -> {parameter or "return": type}.
SPECIFIC = {
    "Tensor.__init__": {"data": "ArrayLike | Tensor", "dtype": "DTypeLike | None"},
    "Tensor.from_dlpack": {"obj": "Any"},
    "Tensor.from_numpy": {"array": "NDArray[Any]"},
    "Tensor.empty": {"dtype": "DTypeLike | None"},
    "Tensor.numpy": {"return": "NDArray[Any]"},
    "Tensor.__array__": {"dtype": "DTypeLike | None", "copy": "bool | None",
                         "return": "NDArray[Any]"},
    "Tensor.__dlpack__": {"return": "Any"},
    "Tensor.__dlpack_device__": {"return": "tuple[int, int]"},
    "Tensor.astype": {"dtype": "DTypeLike"},
    "Tensor.__getitem__": {"key": "Any", "return": "Tensor"},
    # arithmetic operators (lightning_core/_tensor_ops.py): a tensor, an array or a number
    **{f"Tensor.__{op}__": {"other": "Tensor | NDArray[Any] | float", "return": "Tensor"}
       for op in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "matmul",
                  "rmatmul")},
    "Tensor.__neg__": {"return": "Tensor"},
    "Tensor.shape": {"return": "tuple[int, ...]"},
    "Tensor.strides": {"return": "tuple[int, ...]"},
    "ExecutionPolicy.__init__": {"device": "str", "upload": "str", "download": "bool",
                                 "sync": "str", "precision": "str", "fusion": "bool",
                                 "autotune": "bool"},
    "ExecutionPolicy.__eq__": {"other": "object", "return": "bool"},
    "ResidentSession.__enter__": {"return": "Self"},
    "Stream.__enter__": {"return": "Self"},
    "Stream.__eq__": {"other": "object", "return": "bool"},
    "ResidentSession.out_shape": {"return": "tuple[int, ...]"},
    "autotune_lookup": {"return": "dict[str, str] | None"},
    "gemm_recorded_mode": {"return": "str | None"},
    # return_lse=True returns (out, lse)
    "attention_into": {"return": "_Out | tuple[_Out, NDArray[Any] | Tensor]"},
    "attention_backward": {"dout": ARRAY, "out": ARRAY, "lse": ARRAY,
                           "return": "tuple[NDArray[Any] | Tensor, NDArray[Any] | Tensor, "
                                     "NDArray[Any] | Tensor]"},
    "_attention_train_step": {"target": ARRAY, "lr": "float",
                              "return": "tuple[NDArray[Any] | Tensor, float]"},
    "AttentionTrainableSession.forward": {"return": "NDArray[Any]"},
    "AttentionTrainableSession.train_step": {"target": ARRAY, "lr": "float",
                                             "return": "tuple[NDArray[Any], float]"},
    "AttentionTrainableSession.parameters": {
        "return": "tuple[NDArray[Any], NDArray[Any], NDArray[Any]]"},
    # lc.GraphIR (bind_graph.cpp)
    "GraphIR.add_tensor": {"shape": "Sequence[int]", "dtype": "DTypeLike",
                           "value": "_ArrayOrTensor | None"},
    "GraphIR.set_constant": {"value": ARRAY},
    "GraphIR.add_node": {"inputs": "Sequence[str | None]", "outputs": "Sequence[str]",
                         "attributes": "dict[str, bool | int | float | str | None] | None",
                         "name": "str | None"},
    "GraphIR.set_outputs": {"names": "Sequence[str]"},
    "GraphIR.plan": {"fusion": "bool | dict[str, bool]", "precision": "str | None",
                     "resident": "dict[str, str | int] | None"},
    "GraphIR.execute": {"inputs": "dict[str, _ArrayOrTensor]", "scalars": "dict[str, float] | None",
                        "return": "dict[str, NDArray[Any] | Tensor]"},
    "lstm": {"x": ARRAY, "h0": ARRAY, "c0": ARRAY, "w_ih": ARRAY, "w_hh": ARRAY,
             "b_ih": ARRAY + " | None", "b_hh": ARRAY + " | None", "batch_first": "bool",
             "return": "tuple[NDArray[Any] | Tensor, NDArray[Any] | Tensor, "
                       "NDArray[Any] | Tensor]"},
    "lstm_into": {"x": ARRAY, "h0": ARRAY, "c0": ARRAY, "w_ih": ARRAY, "w_hh": ARRAY,
                  "b_ih": ARRAY + " | None", "b_hh": ARRAY + " | None",
                  "y": "NDArray[Any] | Tensor", "h_n": "NDArray[Any] | Tensor",
                  "c_n": "NDArray[Any] | Tensor", "batch_first": "bool",
                  "return": "tuple[NDArray[Any] | Tensor, NDArray[Any] | Tensor, "
                            "NDArray[Any] | Tensor]"},
    "attention_backward_into": {"dout": ARRAY, "out": ARRAY, "lse": ARRAY,
                                "dq": "NDArray[Any] | Tensor", "dk": "NDArray[Any] | Tensor",
                                "dv": "NDArray[Any] | Tensor",
                                "return": "tuple[NDArray[Any] | Tensor, NDArray[Any] | Tensor, "
                                          "NDArray[Any] | Tensor]"},
}
HEADER = '''
# Typed by python/gen_stubs.py (nanobind stubgen + the overlay of parameter types).
from types import TracebackType
from typing import Any, Literal, Sequence, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from typing_extensions import Self, TypeAlias

_ArrayOrTensor: TypeAlias = "Tensor | ArrayLike"
_S = TypeVar("_S", bound=np.generic)
_Out = TypeVar("_Out", bound="NDArray[Any] | Tensor")
'''


def run_stubgen(python_path: str, module: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "stub.pyi")
        # -P: the underscore helpers too (the package's own modules call them).
        cmd = [sys.executable, "-m", "nanobind.stubgen", "-q", "-P", "-m", module, "-o", out]
        if python_path:
            cmd[3:3] = ["-i", python_path]
        subprocess.run(cmd, check=True)
        with open(out, encoding="utf-8") as f:
            return f.read()


def _ann(node: ast.AST | None) -> str | None:
    return None if node is None else ast.unparse(node)


def _is_object(ann: str | None) -> bool:
    return ann in ("object", "object | None")


def _is_catch_all(fn: ast.FunctionDef) -> bool:
    a = fn.args
    return (a.vararg is not None and a.kwarg is not None and not a.args and not a.kwonlyargs)


def _public(qual: str) -> bool:
    name = qual.rsplit(".", 1)[-1]
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


class Param:
    def __init__(self, name, ann, default, kind):
        self.name, self.ann, self.default, self.kind = name, ann, default, kind  # kind: pos|kw|var|varkw


def _params(fn: ast.FunctionDef) -> list[Param]:
    a = fn.args
    out: list[Param] = []
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    for arg, d in zip(pos, defaults):
        out.append(Param(arg.arg, _ann(arg.annotation), _ann(d), "pos"))
    if a.vararg:
        out.append(Param(a.vararg.arg, _ann(a.vararg.annotation), None, "var"))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append(Param(arg.arg, _ann(arg.annotation), _ann(d), "kw"))
    if a.kwarg:
        out.append(Param(a.kwarg.arg, _ann(a.kwarg.annotation), None, "varkw"))
    return out


def _sig(name: str, params: list[Param], ret: str) -> str:
    parts: list[str] = []
    star = False
    for p in params:
        if p.kind == "var":
            star = True
            parts.append(f"*{p.name}" + (f": {p.ann}" if p.ann else ""))
            continue
        if p.kind == "varkw":
            parts.append(f"**{p.name}" + (f": {p.ann}" if p.ann else ""))
            continue
        if p.kind == "kw" and not star:
            parts.append("*")
            star = True
        s = p.name + (f": {p.ann}" if p.ann else "")
        if p.default is not None:
            s += f" = {p.default}"
        parts.append(s)
    return f"def {name}({', '.join(parts)}) -> {ret}:"


class Rewriter:
    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines()
        self.tree = ast.parse(text)
        self.classes = {n.name for n in self.tree.body if isinstance(n, ast.ClassDef)}
        self.untyped: list[str] = []

    def _body(self, fn: ast.FunctionDef, indent: str) -> list[str]:
        b = fn.body[0]
        if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
            return self.lines[b.lineno - 1:b.end_lineno]
        return [indent + "    ..."]

    def _type_params(self, qual: str, params: list[Param], fn: ast.FunctionDef | None = None) -> None:
        spec = SPECIFIC.get(qual, {})
        for p in params:
            if p.name in spec:
                p.ann = spec[p.name]
            elif not _is_object(p.ann) or p.name == "self":
                continue
            elif p.name in ARRAY_PARAMS:
                p.ann = ARRAY + (" | None" if p.default == "None" else "")
            elif p.name == "out":
                # the `_into` forms return `out` itself (typed then by the TypeVar)
                ret = _ann(fn.returns) if fn is not None else None
                p.ann = "_Out" if _is_object(ret) else "NDArray[Any] | Tensor" + (
                    " | None" if p.default == "None" else "")
            elif p.name in SCALAR_PARAMS:
                p.ann = SCALAR_PARAMS[p.name]
            elif _public(qual):
                self.untyped.append(f"{qual}({p.name})")

    def _op_overloads(self, name: str, params: list[Param], doc: list[str], indent: str) -> list[str]:
        """Overloads of an op returning a result: lc.Tensor in -> Tensor; numpy -> NDArray."""
        arrays = [p for p in params if p.name in ARRAY_PARAMS]
        sigs: list[tuple[list[Param], str, bool]] = []
        for i, t in enumerate(arrays):
            # One overload per array parameter given as an lc.Tensor. An optional positional one
            # after another defaulted positional one cannot be made required: skipped.
            ps = [Param(p.name, p.ann, p.default, p.kind) for p in params]
            q = next(p for p in ps if p.name == t.name)
            if q.default is not None and q.kind == "pos":
                idx = ps.index(q)
                if any(p.default is not None for p in ps[:idx] if p.kind == "pos"):
                    continue
            q.ann, q.default = "Tensor", None
            sigs.append((ps, "Tensor", True))
        # numpy: the result takes the dtype of the first array (embedding: of the weight).
        dtype_src = "weight" if arrays and arrays[0].name == "ids" else (arrays[0].name if arrays else None)
        ps = [Param(p.name, p.ann, p.default, p.kind) for p in params]
        for p in ps:
            if p.name == dtype_src:
                p.ann = "NDArray[_S]"
            elif p.name in ARRAY_PARAMS:
                p.ann = "ArrayLike" + (" | None" if p.default == "None" else "")
        sigs.append((ps, "NDArray[_S]", False))
        ps = [Param(p.name, p.ann, p.default, p.kind) for p in params]
        for p in ps:
            if p.name in ARRAY_PARAMS:
                p.ann = "ArrayLike" + (" | None" if p.default == "None" else "")
        sigs.append((ps, "NDArray[Any]", False))
        if any(p.name == "return_lse" for p in params):
            # return_lse=True returns (out, lse): the overloads above are for False, one more
            # (keyword-only, so it can be required) for True.
            for ps, _ret, _t in sigs:
                for p in ps:
                    if p.name == "return_lse":
                        p.ann = "Literal[False]"
            ps = [Param(p.name, p.ann, p.default, p.kind) for p in params]
            for p in ps:
                if p.name == "return_lse":
                    p.ann, p.default = "Literal[True]", None
            sigs.append((ps, "tuple[NDArray[Any] | Tensor, NDArray[Any] | Tensor]", False))
        out: list[str] = []
        for j, (ps, ret, tensor) in enumerate(sigs):
            line = indent + _sig(name, ps, ret) + ("" if j == 0 else " ...")
            if tensor:
                # Tensor also has __array__ (so it is ArrayLike too): these overloads come first
                # and overlap the numpy ones by design.
                line += "  # type: ignore[overload-overlap]"
            out.append(indent + "@overload")
            out.append(line)
            if j == 0:
                out.extend(doc)
            out.append("")
        return out

    def _rewrite_group(self, qual: str, fns: list[ast.FunctionDef], indent: str) -> list[str] | None:
        keep = [f for f in fns if not _is_catch_all(f)] if len(fns) > 1 else fns
        if len(keep) != 1:
            return None  # real overloads: leave nanobind's text
        fn = keep[0]
        params = _params(fn)
        ret = _ann(fn.returns)
        spec = SPECIFIC.get(qual, {})
        before = [(p.name, p.ann) for p in params]
        self._type_params(qual, params, fn)
        name = fn.name
        has_array = any(p.name in ARRAY_PARAMS for p in params)
        has_out = any(p.name == "out" for p in params)
        if "return" in spec:
            ret = spec["return"]
        elif _is_object(ret) and has_out:
            ret = "_Out"
        elif _is_object(ret) and name.endswith("_resident_session"):
            cls = "".join(w.capitalize() for w in name[: -len("_resident_session")].split("_"))
            cls = cls.replace("2D", "2d") + "ResidentSession"
            ret = cls if cls in self.classes else "ResidentSession"
        elif _is_object(ret) and has_array and indent == "":
            return self._op_overloads(name, params, self._body(fn, indent), indent)
        elif _is_object(ret) and _public(qual):
            self.untyped.append(f"{qual} -> object")
        if len(fns) == 1 and before == [(p.name, p.ann) for p in params] and ret == _ann(fn.returns):
            return None  # nothing changed
        out = [indent + "@" + ast.unparse(d) for d in fn.decorator_list if ast.unparse(d) != "overload"]
        body = self._body(fn, indent)
        sig = indent + _sig(name, params, ret)
        if body == [indent + "    ..."]:
            out.append(sig + " ...")
        else:
            out.append(sig)
            out.extend(body)
        out.append("")
        return out

    def _groups(self, body: list[ast.stmt], prefix: str):
        groups: dict[str, list[ast.FunctionDef]] = {}
        for n in body:
            if isinstance(n, ast.FunctionDef):
                groups.setdefault(n.name, []).append(n)
        for name, fns in groups.items():
            yield prefix + name, fns

    def rewrite(self, module=None) -> str:
        edits: list[tuple[int, int, list[str]]] = []  # (first line, last line) 1-based, new text

        # The module's exception types carry __module__ "lightning_core", so stubgen writes
        # `from lightning_core import BackendError`, a cycle a type checker cannot resolve (the
        # package imports them from here): declare them instead.
        for n in self.tree.body:
            if isinstance(n, ast.ImportFrom) and n.module == "lightning_core" and module is not None:
                decl = []
                for a in n.names:
                    t = getattr(module, a.name)
                    bases = ", ".join(b.__name__ for b in t.__bases__)
                    decl += [f"class {a.name}({bases}):", f'    """{(t.__doc__ or a.name).strip()}"""', ""]
                edits.append((n.lineno, n.end_lineno, decl))

        def span(fns):
            first = min((f.decorator_list[0].lineno if f.decorator_list else f.lineno) for f in fns)
            last = max(f.end_lineno for f in fns)
            # swallow the blank line after each overload so the replacement spacing is ours
            while last < len(self.lines) and not self.lines[last].strip():
                last += 1
            return first, last

        for qual, fns in self._groups(self.tree.body, ""):
            new = self._rewrite_group(qual, fns, "")
            if new is not None:
                edits.append((*span(fns), new))
        for cls in (n for n in self.tree.body if isinstance(n, ast.ClassDef)):
            for qual, fns in self._groups(cls.body, cls.name + "."):
                new = self._rewrite_group(qual, fns, "    ")
                if new is not None:
                    first, last = span(fns)
                    edits.append((first, last, new))
        lines = list(self.lines)
        for first, last, new in sorted(edits, key=lambda e: -e[0]):
            lines[first - 1:last] = new
        text = "\n".join(lines) + "\n"
        # Header after the module docstring and the imports nanobind wrote.
        doc_end = self.tree.body[0].end_lineno if isinstance(self.tree.body[0], ast.Expr) else 0
        head = text.splitlines()
        head[doc_end:doc_end] = HEADER.splitlines()
        text = "\n".join(head) + "\n"
        text = re.sub(r"\n{3,}", "\n\n\n", text)
        return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-i", "--python-path", default="", help="directory holding lightning_core/")
    ap.add_argument("-o", "--output", required=True, help="the .pyi to write")
    ap.add_argument("-m", "--module", default=MODULE)
    ap.add_argument("--marker", help="also write this (empty) marker file, e.g. py.typed")
    args = ap.parse_args(argv)
    rw = Rewriter(run_stubgen(args.python_path, args.module))
    if args.python_path:
        sys.path.insert(0, args.python_path)
    import importlib

    text = rw.rewrite(importlib.import_module(args.module))
    ast.parse(text)  # the result must stay valid Python
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    if args.marker:
        open(args.marker, "w").close()
    for u in rw.untyped:
        print(f"gen_stubs: still untyped: {u} (add the name to python/gen_stubs.py)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
