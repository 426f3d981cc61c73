"""Tracing plain Python functions of LC ops into a :class:`lightning_core.GraphIR`.

``lc.compile(fn)`` returns a callable that, per input signature (shapes and dtypes of the array
arguments, values of the others), traces ``fn`` once into a GraphIR, plans it (fusion, whole-graph
placement, buffer reuse) and from then on executes the plan: on a GPU as one captured CUDA graph.

How tracing works: ``fn`` is called once with :class:`TracedTensor` proxies in place of its array
arguments. While it runs, the op functions of the ``lightning_core`` module (``lc.linear``,
``lc.add``, ...; every op of ``lc.ops()``) are recording wrappers: a call with a proxy among its
arguments adds a node to the graph (shape and dtype checked by the op registry at that line)
and returns a proxy; a call without proxies runs the op as usual. Arrays the function closes
over (weights) become graph constants, copied at trace time. The normal op path is untouched:
the wrappers exist only during a trace (a lock serialises traces).

Views (``.reshape`` / ``.view``, ``.permute``, ``.transpose``, ``.T``, ``.contiguous()``, basic
indexing ``x[i, a:b]``) are graph nodes too: they alias their producer's memory where the strides
allow and copy only where they must (a reshape no strides can express).

Limits: only ``lc.<op>`` calls through the module attribute are seen (``from lightning_core
import linear`` binds the untraced function); Python control flow on values is not recorded
(shapes are fixed per signature, which re-traces); advanced (array) indexing is not recorded.
docs/graph.md.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable

import numpy as np

from . import _indexing
from . import _lightning_core as _C
from ._docs import _signature
from .policy import policy as _policy

__all__ = ["TracedTensor", "Compiled", "trace", "compile"]

_TRACE_LOCK = threading.RLock()
_ARRAY_TYPES = (np.ndarray, _C.Tensor)
_LIFTED = object()  # a cache key's mark for a float argument fed to the graph as an input


def _dtype_name(x) -> str:
    if isinstance(x, _C.Tensor):
        return x.dtype
    return np.dtype(x.dtype).name


def _arith(op: str, reverse: bool) -> Callable:
    """The operator method for ``self <op> other`` (reverse: ``other <op> self``) of the traced
    proxies: their ``_binary(op, other, reverse)``."""
    def method(self, other):
        return self._binary(op, other, reverse)
    name = {"add": "add", "sub": "sub", "mul": "mul", "div": "truediv"}[op]
    method.__name__ = f"__{'r' if reverse else ''}{name}__"
    return method


class TracedTensor:
    """A stand-in for an array while a function is traced: a name, a shape and a dtype.

    Arithmetic records graph nodes: ``+ - * /`` with another tensor are ``add`` / ``sub`` /
    ``mul`` / ``div`` (numpy broadcasting), ``* s`` and ``/ s`` with a Python number are
    ``vector_scale``, ``+ s`` / ``- s`` add a one-element constant, ``@`` is ``matmul``. The
    view methods of ``lc.Tensor`` (``reshape`` / ``view``, ``permute``, ``transpose``, ``T``,
    ``contiguous``, basic indexing) record view nodes: aliases of the producer's memory where
    the strides allow, a copy where not (docs/graph.md, "Views").

    Parameters
    ----------
    tracer : _Tracer
        The trace this tensor belongs to.
    name : str
        The graph tensor's name.
    shape : tuple of int
        Its shape.
    dtype : str
        Its dtype name.
    """

    __slots__ = ("_tracer", "name", "shape", "dtype")
    __array_priority__ = 1000  # numpy defers its operators to ours

    def __init__(self, tracer, name: str, shape, dtype: str):
        self._tracer = tracer
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"TracedTensor({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def _binary(self, op, other, reverse=False):
        if isinstance(other, TracedScalar):  # a lifted float argument: a one-element graph input
            other = other._input_for(self.dtype)
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            if op in ("mul", "div") and not reverse:
                alpha = float(other) if op == "mul" else 1.0 / float(other)
                return self._tracer.record("vector_scale", (self,), {"alpha": alpha})
            if op == "mul":
                return self._tracer.record("vector_scale", (self,), {"alpha": float(other)})
            other = np.full((1,), other, dtype=self.dtype)
        a, b = (other, self) if reverse else (self, other)
        return self._tracer.record(op, (a, b), {})

    __add__, __radd__ = _arith("add", False), _arith("add", True)
    __sub__, __rsub__ = _arith("sub", False), _arith("sub", True)
    __mul__, __rmul__ = _arith("mul", False), _arith("mul", True)
    __truediv__, __rtruediv__ = _arith("div", False), _arith("div", True)

    def __matmul__(self, o):
        return self._tracer.record("matmul", (self, o), {})

    def __rmatmul__(self, o):
        return self._tracer.record("matmul", (o, self), {})

    def __neg__(self):
        return self._tracer.record("vector_scale", (self,), {"alpha": -1.0})

    def __bool__(self):
        raise TypeError(f"[graph] the truth value of traced tensor '{self.name}' is not known while "
                        "tracing; control flow on values cannot be recorded")

    # ---- views: graph nodes that alias the producer's memory (docs/graph.md, "Views") ------
    def reshape(self, *shape):
        """The same elements in another shape (one -1 is inferred), as ``lc.Tensor.reshape``.

        A ``reshape`` node: an alias where the strides allow, else a contiguous copy.

        Parameters
        ----------
        *shape : int or tuple of int
            The new shape, as separate ints or one tuple/list.
        """
        return self._tracer.record_view("reshape", self, {"shape": _shape_arg(shape, "reshape")})

    def view(self, *shape):
        """A view in another shape, as ``lc.Tensor.view`` (recorded as a ``reshape`` node).

        Parameters
        ----------
        *shape : int or tuple of int
            The new shape, as separate ints or one tuple/list.
        """
        return self._tracer.record_view("reshape", self, {"shape": _shape_arg(shape, "view")})

    def permute(self, *dims):
        """The dimensions reordered (result dimension i is dimension ``dims[i]``): an alias.

        Parameters
        ----------
        *dims : int or tuple of int
            A permutation of the dimensions, as separate ints or one tuple/list.
        """
        return self._tracer.record_view("permute", self, {"dims": _shape_arg(dims, "permute")})

    def transpose(self, dim0: int, dim1: int):
        """Two dimensions swapped: an alias.

        Parameters
        ----------
        dim0, dim1 : int
            The dimensions to swap (negative counts from the end).
        """
        return self._tracer.record_view("transpose", self, {"dim0": _int_arg(dim0, "transpose"),
                                                            "dim1": _int_arg(dim1, "transpose")})

    @property
    def T(self):
        """The transpose of a 2-D tensor (as ``lc.Tensor.T``)."""
        if self.ndim != 2:
            raise ValueError(f"[graph] T: traced tensor '{self.name}' is {self.ndim}-D {self.shape}; "
                             "T transposes 2-D tensors (use transpose(d0, d1) or permute)")
        return self.transpose(0, 1)

    def contiguous(self):
        """The same values in a contiguous layout: an alias when already contiguous, else a copy.

        Parameters
        ----------
        None
        """
        return self._tracer.record_view("contiguous", self, {})

    def __getitem__(self, key):
        """Basic indexing: ints, ``start:stop:step`` slices (any nonzero step; a negative one
        walks backwards, as numpy's), ``...`` and ``None``.

        Each int becomes a ``select`` node, each slice that is not the whole axis a ``slice``
        node, each ``None`` a ``reshape`` that inserts a size-1 axis: all aliases.

        Parameters
        ----------
        key : int, slice, Ellipsis, None or tuple of them
            The index.
        """
        items = key if isinstance(key, tuple) else (key,)
        if any(_indexing._is_index_array(k) for k in items):
            return _indexing.traced_getitem(self, key)
        n_ell = sum(1 for k in items if k is Ellipsis)
        if n_ell > 1:
            raise ValueError(f"[graph] __getitem__: an index can only have a single ellipsis ('...'), "
                             f"got {key!r}")
        consumed = sum(1 for k in items if k is not Ellipsis and k is not None)
        if consumed > self.ndim:
            raise ValueError(f"[graph] __getitem__: too many indices ({consumed}) for traced tensor "
                             f"'{self.name}' of shape {self.shape}")
        t, d = self, 0
        for k in items:
            if k is Ellipsis:
                d += self.ndim - consumed
            elif k is None:
                shape = list(t.shape)
                shape.insert(d, 1)
                t = t._tracer.record_view("reshape", t, {"shape": tuple(shape)})
                d += 1
            elif isinstance(k, slice):
                start, stop, step = k.start, k.stop, k.step
                step = 1 if step is None else _int_arg(step, "__getitem__")
                if step == 0:
                    raise ValueError("[graph] __getitem__: slice step cannot be zero")
                if not (start in (None, 0) and stop is None and step == 1):
                    attrs = {"dim": d, "step": step}  # a negative step walks backwards (a view)
                    if start is not None:
                        attrs["start"] = _int_arg(start, "__getitem__")
                    if stop is not None:
                        attrs["stop"] = _int_arg(stop, "__getitem__")
                    t = t._tracer.record_view("slice", t, attrs)
                d += 1
            elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
                t = t._tracer.record_view("select", t, {"dim": d, "index": int(k)})
            else:
                raise TypeError(f"[graph] __getitem__: only basic indexing (ints, slices, None, ...) "
                                f"is recorded, got {type(k).__name__}")
        if t is self:  # x[:] or x[...]: an alias all the same (a graph output must be a node)
            t = t._tracer.record_view("reshape", t, {"shape": self.shape})
        return t


def _int_arg(v, op: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"[graph] {op}: expected an int, got {type(v).__name__}")
    return int(v)


def _shape_arg(args: tuple, op: str) -> tuple:
    """reshape(2, 3), reshape((2, 3)) and reshape([2, 3]) alike."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(_int_arg(a, op) for a in args)


def _view_shape(op: str, shape: tuple, attrs: dict) -> tuple:
    """The result shape of view node ``op`` (src/graph/views.cpp's infer_view, for the proxy)."""
    nd = len(shape)

    def wrap(d, what):
        if d < -nd or d >= nd:
            raise ValueError(f"{what} {d} is out of range for a {nd}-D tensor (valid: {-nd} .. {nd - 1})")
        return d + nd if d < 0 else d

    if op == "reshape":
        new = list(attrs["shape"])
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if new.count(-1) > 1:
            raise ValueError(f"only one dimension of {tuple(new)} can be -1")
        if any(v < -1 for v in new):
            raise ValueError(f"negative dimension in {tuple(new)}")
        known = int(np.prod([v for v in new if v != -1], dtype=np.int64)) if new else 1
        if -1 in new:
            if known == 0 or n % known:
                raise ValueError(f"cannot reshape {shape} ({n} elements) to {tuple(new)}: the -1 "
                                 "cannot be inferred")
            new[new.index(-1)] = n // known
            known = n
        if known != n:
            raise ValueError(f"cannot reshape {shape} ({n} elements) to {tuple(new)}; the element "
                             "counts must match")
        return tuple(new)
    if op in ("permute", "transpose"):
        if op == "transpose":
            dims = list(range(nd))
            a, b = wrap(attrs["dim0"], "dim0"), wrap(attrs["dim1"], "dim1")
            dims[a], dims[b] = dims[b], dims[a]
        else:
            dims = list(attrs["dims"])
        if len(dims) != nd:
            raise ValueError(f"dims {tuple(dims)} must name each of the {nd} dimensions of {shape} once")
        ks = [wrap(k, "dimension") for k in dims]
        if len(set(ks)) != nd:
            raise ValueError(f"dims {tuple(dims)} repeat a dimension; give a permutation of 0..{nd - 1}")
        return tuple(shape[k] for k in ks)
    if op == "slice":
        k = wrap(attrs["dim"], "dim")
        n = shape[k]
        start, stop, step = slice(attrs.get("start"), attrs.get("stop"), attrs.get("step", 1)).indices(n)
        out = list(shape)
        out[k] = len(range(start, stop, step))
        return tuple(out)
    if op == "select":
        k = wrap(attrs["dim"], "dim")
        i = attrs["index"]
        if i < -shape[k] or i >= shape[k]:
            raise ValueError(f"index {i} is out of range for dimension {k} of size {shape[k]} in "
                             f"{shape}")
        return shape[:k] + shape[k + 1:]
    return shape  # contiguous


class _NeedsValue(TypeError):
    """A lifted float argument was used where its value is needed while tracing (an attribute,
    Python arithmetic, control flow): lc.compile keys the cache by that argument's value instead."""


class TracedScalar:
    """A float argument of a compiled function lifted into the graph (lc.compile, "Scalars").

    When a call differs from a traced signature only in the value of a float argument,
    ``lc.compile`` traces once more with that argument as a ``TracedScalar``: combined with a
    traced tensor by ``+ - * /`` (or passed as an op's tensor argument) it becomes a one-element
    graph input in that tensor's dtype, fed with the value on each call, so one graph serves every
    value. Any use that needs the value itself while tracing (an op attribute such as ``eps`` or
    ``alpha``, ``float(s)``, ``s * 2``, ``if s > 0``) raises, and the argument keys the cache by
    value as before.
    """

    __slots__ = ("_tracer", "position", "inputs")
    __array_priority__ = 1001

    def __init__(self, tracer, position: int):
        self._tracer = tracer
        self.position = position
        self.inputs: dict[str, str] = {}  # dtype -> graph input name

    def _input_for(self, dtype: str) -> "TracedTensor":
        name = self.inputs.get(dtype)
        if name is None:
            name = self.inputs[dtype] = f"arg{self.position}" + ("" if not self.inputs else f"_{dtype}")
            self._tracer.g.add_tensor((1,), dtype, name)
        return TracedTensor(self._tracer, name, (1,), dtype)

    def _value_needed(self, *_args, **_kw):
        raise _NeedsValue(f"[graph] argument {self.position} (a float) is used where its value is "
                          "needed while tracing")

    def _binary(self, op, other, reverse):
        if isinstance(other, TracedTensor):
            return other._binary(op, self, not reverse)
        self._value_needed()

    __add__, __radd__ = _arith("add", False), _arith("add", True)
    __sub__, __rsub__ = _arith("sub", False), _arith("sub", True)
    __mul__, __rmul__ = _arith("mul", False), _arith("mul", True)
    __truediv__, __rtruediv__ = _arith("div", False), _arith("div", True)

    __float__ = __int__ = __index__ = __bool__ = __neg__ = __pos__ = __abs__ = _value_needed
    __lt__ = __le__ = __gt__ = __ge__ = __pow__ = __rpow__ = __floordiv__ = __mod__ = _value_needed
    __round__ = __trunc__ = __floor__ = __ceil__ = __array__ = __eq__ = __ne__ = _value_needed
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TracedScalar(argument {self.position})"


class _Tracer:
    """Records the op calls of one trace into a GraphIR."""

    def __init__(self, copy_constants: bool = True):
        self.g = _C.GraphIR()
        self.copy_constants = copy_constants
        self.n_tensors = 0
        self.constants: dict[int, tuple] = {}  # id(array) -> (name, array kept alive, shape, dtype)

    def new_name(self, prefix: str) -> str:
        self.n_tensors += 1
        return f"{prefix}{self.n_tensors}"

    def input(self, name: str, x) -> TracedTensor:
        shape, dtype = tuple(x.shape), _dtype_name(x)
        self.g.add_tensor(shape, dtype, name)
        return TracedTensor(self, name, shape, dtype)

    def operand(self, x, op: str, arg: str, dtype: str | None = None) -> tuple[str, tuple, str]:
        """The graph tensor (name, shape, dtype) of an op argument; arrays become constants, a
        lifted scalar its one-element input in ``dtype`` (the op's compute dtype)."""
        if isinstance(x, TracedScalar):
            x = x._input_for(dtype or "float32")
        if isinstance(x, TracedTensor):
            if x._tracer is not self:
                raise ValueError(f"[graph] {op}: argument '{arg}' is a tensor of another trace")
            return x.name, x.shape, x.dtype
        if isinstance(x, (np.ndarray, _C.Tensor)) or np.isscalar(x):
            key = id(x)
            if key not in self.constants:
                value = x if isinstance(x, _C.Tensor) else np.asarray(x)
                name = self.new_name("const")
                self.g.add_tensor(tuple(value.shape), _dtype_name(value), name, True, value=value,
                                  copy=self.copy_constants)
                self.constants[key] = (name, x, tuple(value.shape), _dtype_name(value))
            name, _, shape, dt = self.constants[key]
            return name, shape, dt
        raise TypeError(f"[graph] {op}: argument '{arg}' must be an array, an lc.Tensor or a traced "
                        f"tensor, got {type(x).__name__}")

    def record_view(self, op: str, x: TracedTensor, attrs: dict) -> TracedTensor:
        """Adds view node ``op`` (reshape, permute, transpose, slice, select, contiguous) on ``x``."""
        node = f"{op}_{len(self.g)}"
        try:
            shape = _view_shape(op, x.shape, attrs)
        except ValueError as e:
            raise ValueError(f"[graph] node '{node}' ({op}): {e}") from None
        out = self.new_name("t")
        self.g.add_node(op, [x.name], [out], attrs, node)
        return TracedTensor(self, out, shape, x.dtype)

    def record(self, op: str, args: tuple, kwargs: dict):
        info = _op_info(op)
        params = _params(op)
        bound: dict[str, Any] = {}
        for name, value in zip(params, args):
            bound[name] = value
        if len(args) > len(params):
            raise TypeError(f"[{op}] takes at most {len(params)} arguments ({len(args)} given)")
        for k, v in kwargs.items():
            if k not in params:
                raise TypeError(f"[{op}] got an unexpected keyword argument '{k}'")
            if k in bound:
                raise TypeError(f"[{op}] got multiple values for argument '{k}'")
            bound[k] = v
        inputs: list[str | None] = []
        shapes: list[tuple] = []
        dtype = None
        scalar_dtype = next((v.dtype for spec in info["inputs"] if spec["kind"] == "float"
                             and spec["name"] != "mask" and isinstance(v := bound.get(spec["name"]), TracedTensor)),
                            None)
        for spec in info["inputs"]:
            v = bound.get(spec["name"])
            if v is None:
                inputs.append(None)
                shapes.append(())
                continue
            tname, shape, dt = self.operand(v, op, spec["name"], scalar_dtype)
            inputs.append(tname)
            shapes.append(shape)
            if dtype is None and spec["kind"] == "float" and spec["name"] != "mask":
                dtype = dt
        while inputs and inputs[-1] is None:
            inputs.pop()
            shapes.pop()
        attrs = {k: bound[k] for k in info["attributes"] if k in bound}
        for k, v in attrs.items():
            if isinstance(v, TracedScalar):
                raise _NeedsValue(f"[{op}] attribute '{k}' is a lifted float argument; it needs its value")
        n_out = len(info["outputs"])
        if op == "attention" and attrs.get("return_lse"):
            n_out = 2
        node = f"{op}_{len(self.g)}"
        outs = [self.new_name("t") for _ in range(n_out)]
        if None in inputs:  # an optional input left out before a given one: the graph infers
            self.g.add_node(op, inputs, outs, attrs, node)
            self.g.validate()
            specs = [(self.g.tensor_shape(o), self.g.tensor_dtype(o)) for o in outs]
        else:
            # The registry checks the shapes here, at the line that made the call.
            size_attrs = {k: attrs[k] for k in ("stride_h", "stride_w", "pad_h", "pad_w", "batch_first")
                          if k in attrs}
            try:
                shape, dt = _C.op_infer(op, shapes, dtype or "float32", **size_attrs)
            except ValueError as e:
                raise ValueError(f"[graph] node '{node}' ({op}): {e}") from None
            self.g.add_node(op, inputs, outs, attrs, node)
            specs = [(shape, dt)]
            if n_out == 2:  # attention's lse: q's leading dims, float32
                specs.append((shapes[0][:-1], "float32"))
            elif op == "lstm":  # h_n, c_n: h0's shape
                specs += [(shapes[1], dt), (shapes[1], dt)]
            elif n_out == 3:  # attention_backward: dk, dv of k's and v's shapes
                specs += [(shapes[2], dt), (shapes[3], dt)]
        proxies = [TracedTensor(self, o, sh, dt) for o, (sh, dt) in zip(outs, specs)]
        return proxies[0] if n_out == 1 else tuple(proxies)


_INFO_CACHE: dict[str, dict] = {}
_PARAM_CACHE: dict[str, list[str]] = {}


def _op_info(op: str) -> dict:
    info = _INFO_CACHE.get(op)
    if info is None:
        info = _INFO_CACHE[op] = _C.op_info(op)
    return info


def _params(op: str) -> list[str]:
    p = _PARAM_CACHE.get(op)
    if p is None:
        p = _PARAM_CACHE[op] = [n for n, _ in _signature(getattr(_C, op))[0]]
    return p


def _has_proxy(args, kwargs) -> _Tracer | None:
    for a in args:
        if isinstance(a, (TracedTensor, TracedScalar)):
            return a._tracer
    for a in kwargs.values():
        if isinstance(a, (TracedTensor, TracedScalar)):
            return a._tracer
    return None


def _recording(op: str, original: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        tracer = _has_proxy(args, kwargs)
        if tracer is None:
            return original(*args, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("device", "policy")}
        params = _params(op)
        args = tuple(a for i, a in enumerate(args) if i >= len(params) or params[i] not in ("device", "policy"))
        return tracer.record(op, args, kwargs)

    wrapper.__name__ = op
    wrapper.__doc__ = original.__doc__
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _traceable_ops() -> list[str]:
    return [n for n in _C.ops() if n != "conv_attention_nchw" and hasattr(_C, n)]


def _flatten(out, what: str) -> tuple[list[TracedTensor], Any]:
    """The traced tensors of fn's result and a template to rebuild it."""
    if isinstance(out, TracedTensor):
        return [out], None
    if isinstance(out, (tuple, list)):
        leaves = []
        for o in out:
            if not isinstance(o, TracedTensor):
                raise TypeError(f"[graph] {what} must return traced tensors (results of lc ops on its "
                                f"inputs), got {type(o).__name__} in its {type(out).__name__}")
            leaves.append(o)
        return leaves, type(out)
    if isinstance(out, dict):
        leaves = []
        for k, o in out.items():
            if not isinstance(o, TracedTensor):
                raise TypeError(f"[graph] {what} must return traced tensors, got {type(o).__name__} for "
                                f"key {k!r}")
            leaves.append(o)
        return leaves, list(out.keys())
    raise TypeError(f"[graph] {what} must return a traced tensor (the result of lc ops on its inputs), "
                    f"a tuple/list or a dict of them, got {type(out).__name__}")


def _unflatten(values: list, template):
    if template is None:
        return values[0]
    if isinstance(template, list):
        return dict(zip(template, values))
    return template(values)


class _Traced:
    """One traced signature: the GraphIR and how to map arguments and results."""

    def __init__(self, g, input_names: list[str | None], output_names: list[str], template,
                 scalar_inputs: dict[int, list[str]] | None = None):
        self.g = g
        self.input_names = input_names  # per fn argument: the graph input, or None
        self.output_names = output_names
        self.template = template
        # lifted float arguments: position -> the graph inputs fed with its value (one per dtype)
        self.scalar_inputs = scalar_inputs or {}


def _trace(fn: Callable, args: tuple, what: str, copy_constants: bool = True,
           lift: frozenset = frozenset()) -> _Traced:
    """Records fn on args. Array arguments become inputs arg0, arg1, ...; the float arguments at
    the positions in ``lift`` become TracedScalar (raises _NeedsValue if fn needs their value)."""
    import lightning_core as lc

    tracer = _Tracer(copy_constants)
    call_args: list[Any] = []
    names: list[str | None] = []
    scalars: dict[int, TracedScalar] = {}
    for i, a in enumerate(args):
        if i in lift:
            scalars[i] = TracedScalar(tracer, i)
            call_args.append(scalars[i])
            names.append(None)
        elif isinstance(a, _ARRAY_TYPES):
            name = f"arg{i}"
            call_args.append(tracer.input(name, a))
            names.append(name)
        else:
            call_args.append(a)
            names.append(None)
    with _TRACE_LOCK:
        saved = {}
        try:
            for op in _traceable_ops():
                current = getattr(lc, op, None)
                if current is None:
                    continue
                saved[op] = current
                setattr(lc, op, _recording(op, getattr(_C, op)))
            out = fn(*call_args)
        finally:
            for op, f in saved.items():
                setattr(lc, op, f)
    leaves, template = _flatten(out, what)
    outputs = []
    for leaf in leaves:
        if leaf._tracer is not tracer:
            raise ValueError(f"[graph] {what} returned a tensor of another trace")
        outputs.append(leaf.name)
    for i, (a, n) in enumerate(zip(call_args, names)):
        if n is not None and a.name in outputs:
            raise ValueError(f"[graph] {what} returns its argument {i} unchanged; a graph output must be "
                             "computed by an op")
    tracer.g.set_outputs(list(dict.fromkeys(outputs)))  # a result returned twice is one output
    tracer.g.validate()
    return _Traced(tracer.g, names, outputs, template,
                   {i: list(sc.inputs.values()) for i, sc in scalars.items() if sc.inputs})


def _residency(t: _Traced, args: tuple) -> dict:
    """plan()'s residency arguments for the first call's arguments (docs/graph.md, "Residency
    and cuda:N"): the GPU each resident lc.Tensor input lives on; results stay on the device
    when every array argument is resident (execute()'s rule; it plans again, cached, for any
    other residency, e.g. a policy with download=False)."""
    resident = {}
    arrays = 0
    for n, a in zip(t.input_names, args):
        if n is None:
            continue
        arrays += 1
        if isinstance(a, _C.Tensor) and a.device != "cpu":
            resident[n] = a.device_index
    return {"resident": resident or None, "results_on_device": arrays > 0 and len(resident) == arrays}


class Compiled:
    """A function of LC ops compiled into graphs, one per input signature (lc.compile).

    Calling it traces ``fn`` on the first call of each signature (the shapes and dtypes of the
    array arguments and the values of the others), plans the graph and executes the plan;
    later calls of the same signature only execute. At most ``cache_size`` signatures are kept
    (least recently used dropped).

    Parameters
    ----------
    fn : callable
        The function: its array arguments become graph inputs; it returns the result of LC ops,
        or a tuple, list or dict of them.
    device : str, optional
        "auto" (default: the cost model places the whole graph, for where the inputs of each
        call live), "cpu", "cuda" or "cuda:N" (that GPU).
    fusion : bool or dict, optional
        True (every rule), False, or {rule: bool} (docs/graph.md, "Fusion").
    strict : bool, optional
        Raise instead of falling back (a step its device cannot run, a plan that cannot be
        captured).
    execution_mode : {"graph", "eager"}, optional
        "graph" runs the planned graph; "eager" calls ``fn`` with the arguments (A/B checks),
        under ``lc.policy(device=device)`` when ``device`` names one ("cpu", "cuda", "cuda:N").
    cache_size : int, optional
        The number of traced signatures kept (default 8).
    copy_constants : bool, optional
        True (default): the arrays ``fn`` closes over are copied at trace time. False: an
        ``lc.Tensor`` constant is shared with the graph (no copy; it must not change while the
        compiled function lives): model weights used by several traced signatures.
    """

    def __init__(self, fn: Callable, *, device: str | None = None, fusion: Any = True,
                 strict: bool = False, execution_mode: str = "graph", cache_size: int = 8,
                 copy_constants: bool = True):
        if not callable(fn):
            raise TypeError(f"[compile] fn must be callable, got {type(fn).__name__}")
        if execution_mode not in ("graph", "eager"):
            raise ValueError(f"[compile] execution_mode must be 'graph' or 'eager', got {execution_mode!r}")
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"[compile] cache_size must be an int >= 1, got {cache_size!r}")
        self.fn = fn
        self.device = device
        self.fusion = fusion
        self.strict = strict
        self.execution_mode = execution_mode
        self.cache_size = cache_size
        self.copy_constants = bool(copy_constants)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._last: _Traced | None = None
        self.traces = 0  # how many times fn was traced
        # Float arguments (docs/graph.md, "Scalars"): positions lifted into graph inputs after
        # a call changed only their value, and positions whose value fn needs while tracing.
        self._lifted: frozenset = frozenset()
        self._pinned: set = set()
        self.__name__ = getattr(fn, "__name__", "compiled")
        self.__doc__ = getattr(fn, "__doc__", None)

    def _key(self, args: tuple) -> tuple:
        # Per call: keep it cheap (numpy's shape tuple and dtype object are hashable as they are).
        key: list = []
        lifted = self._lifted
        for i, a in enumerate(args):
            if isinstance(a, _ARRAY_TYPES):
                key.append((type(a), a.shape, a.dtype))
            elif lifted and i in lifted and type(a) is float:
                key.append((float, _LIFTED))
            else:
                try:
                    hash(a)
                except TypeError:
                    raise TypeError(f"[compile] argument of type {type(a).__name__} is neither an array "
                                    "nor hashable; it cannot key the trace cache") from None
                key.append((type(a), a))
        return tuple(key)

    def _changed_floats(self, key: tuple) -> set:
        """Float positions to lift: those in which ``key`` differs from a traced signature that
        matches it everywhere else (the second value seen for a float argument)."""
        for k in self._cache:
            if len(k) != len(key):
                continue
            diff = {i for i, (a, b) in enumerate(zip(k, key)) if a != b}
            if diff and all(key[i][0] is float and k[i][0] is float and key[i][1] is not _LIFTED
                            and k[i][1] is not _LIFTED and i not in self._pinned for i in diff):
                return diff
        return set()

    def _trace_lifting(self, args: tuple, key: tuple) -> tuple[_Traced, tuple]:
        what = f"compiled function {self.__name__!r}"
        lift = frozenset(i for i in self._lifted | self._changed_floats(key) if type(args[i]) is float)
        if lift:
            try:
                t = _trace(self.fn, args, what, self.copy_constants, lift)
                self._lifted = self._lifted | lift
                return t, self._key(args)
            except Exception:  # noqa: BLE001 -- any failure: trace with the values, as before
                self._pinned |= lift
                self._lifted = self._lifted - lift
                key = self._key(args)
        return _trace(self.fn, args, what, self.copy_constants), key

    def _get(self, args: tuple) -> _Traced:
        key = self._key(args)
        t = self._cache.get(key)
        if t is None:
            t, key = self._trace_lifting(args, key)
            t.g.plan(self.device, fusion=self.fusion, strict=self.strict, **_residency(t, args))
            self.traces += 1
            self._cache[key] = t
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        elif t is not self._last:
            self._cache.move_to_end(key)
        self._last = t
        return t

    def __call__(self, *args):
        if self.execution_mode == "eager":  # the A/B: the same computation on the same device
            if self.device in (None, "auto"):
                return self.fn(*args)
            with _policy(device=self.device):  # else fn's ops would place themselves
                return self.fn(*args)
        t = self._get(args)
        inputs = {n: a for n, a in zip(t.input_names, args) if n is not None}
        if t.scalar_inputs:
            res = t.g.execute(inputs, scalars={n: args[i] for i, ns in t.scalar_inputs.items() for n in ns})
        else:
            res = t.g.execute(inputs)
        if t.template is None:
            return res[t.output_names[0]]
        return _unflatten([res[n] for n in t.output_names], t.template)

    def graph(self, *args):
        """The traced GraphIR for these arguments (traced and planned if new).

        Parameters
        ----------
        *args
            Arguments as for a call.
        """
        return self._get(args).g

    def explain(self, *args) -> str:
        """What the plan does: steps, devices, fusions applied or not and why, memory.

        Parameters
        ----------
        *args
            Arguments as for a call (traced if new); none: the most recently used signature.
        """
        t = self._get(args) if args else self._last
        if t is None:
            return f"{self.__name__}: not traced yet (call it, or pass example arguments to explain())"
        lifted = "".join(f"\nargument {i} (float) is a graph input: {', '.join(ns)}"
                         for i, ns in sorted(t.scalar_inputs.items()))
        pinned = "".join(f"\nargument {i} (float) keys the cache by value (fn needs it while tracing)"
                         for i in sorted(self._pinned))
        return f"{self.__name__} (execution_mode={self.execution_mode!r}, {len(self._cache)} traced " \
               f"signature(s)){lifted}{pinned}\n" + t.g.explain()


def trace(fn: Callable, *examples, device: str | None = None, fusion: Any = True,
          strict: bool = False):
    """Trace ``fn`` on example arguments into a planned :class:`lightning_core.GraphIR`.

    The array arguments become graph inputs named ``arg0``, ``arg1``, ... (by position); the
    graph's outputs are what ``fn`` returns, in order.

    Parameters
    ----------
    fn : callable
        A function of LC ops (``lc.linear``, ``lc.add``, ...).
    *examples
        Example arguments: arrays or lc.Tensor objects (their shapes and dtypes are recorded),
        other values passed through to ``fn`` unchanged.
    device : str, optional
        The plan's device: "auto" (default), "cpu", "cuda" or "cuda:N".
    fusion : bool or dict, optional
        True (every rule), False, or {rule: bool}.
    strict : bool, optional
        Raise instead of falling back.

    Returns
    -------
    GraphIR
        The validated, planned graph; ``execute({"arg0": x, ...})`` runs it.
    """
    t = _trace(fn, examples, f"traced function {getattr(fn, '__name__', 'fn')!r}")
    t.g.plan(device, fusion=fusion, strict=strict, **_residency(t, examples))
    return t.g


def compile(fn: Callable | None = None, *, device: str | None = None, fusion: Any = True,  # noqa: A001
            strict: bool = False, execution_mode: str = "graph", cache_size: int = 8,
            copy_constants: bool = True):
    """Compile a function of LC ops into graphs (traced per input signature, bounded cache).

    Usable as ``lc.compile(fn, ...)`` or as a decorator ``@lc.compile`` / ``@lc.compile(...)``.

    Parameters
    ----------
    fn : callable, optional
        The function (omitted: returns a decorator).
    device : str, optional
        "auto" (default), "cpu", "cuda" or "cuda:N".
    fusion : bool or dict, optional
        True (every rule), False, or {rule: bool} (docs/graph.md).
    strict : bool, optional
        Raise instead of falling back.
    execution_mode : {"graph", "eager"}, optional
        "graph" (default) runs the planned graph, "eager" calls ``fn`` itself (A/B; under
        ``lc.policy(device=device)`` when ``device`` names one).
    cache_size : int, optional
        Traced signatures kept (least recently used dropped; default 8).
    copy_constants : bool, optional
        False: ``lc.Tensor`` constants are shared with the graphs, not copied (they must not
        change while the compiled function lives).

    Returns
    -------
    Compiled
        The callable, with ``explain()``, ``graph(*args)`` and ``execution_mode``.
    """
    def wrap(f):
        return Compiled(f, device=device, fusion=fusion, strict=strict,
                        execution_mode=execution_mode, cache_size=cache_size,
                        copy_constants=copy_constants)

    return wrap if fn is None else wrap(fn)
