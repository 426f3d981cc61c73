"""The arithmetic operators of ``lc.Tensor``: ``t + o``, ``t - o``, ``t * o``, ``t / o`` (and
the reflected forms), ``-t`` and ``t @ o``.

They are the op functions, on the tensor's device: ``lc.add`` / ``sub`` / ``mul`` / ``div``
(numpy broadcasting) and ``lc.matmul``. The other operand is an ``lc.Tensor`` or a numpy array of
the same storage dtype (ops do not mix dtypes), or a Python / numpy number, taken as a scalar of
the tensor's dtype: ``t * c`` is ``lc.vector_scale(t, c)`` (as the tracer records it), the
others one ``lc.elementwise_program`` with c as its constant (``"sub 3 x0"`` for ``3 - t``): one
kernel on the tensor's device, nothing uploaded per call. A numpy array of the tensor's dtype
beside a GPU tensor is uploaded to its GPU first, so the result lives where the tensor does.
Anything else returns ``NotImplemented`` (so Python
asks the other operand: a ``TracedTensor`` while tracing). A numpy array on the left keeps
numpy's meaning: numpy converts the tensor (``np.asarray``) and computes an array, as it does
for ``==`` and ``<`` (lc.Tensor sets no ``__array_priority__``, which would turn those into
identity tests). The tracer's ``TracedTensor`` has the
same operators, so a function written with them runs eagerly on tensors and compiles to the
same nodes (``lc.compile(fn, execution_mode="eager")`` is an A/B of the graph).

The bindings (python/src/bind_tensor.cpp) call these functions; they live here, in Python,
beside the tracer's versions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _lightning_core as _C

_FUNCS = {"add": _C.add, "sub": _C.sub, "mul": _C.mul, "div": _C.div}


def _is_number(o: Any) -> bool:
    return isinstance(o, (int, float, np.integer, np.floating)) and not isinstance(o, (bool, np.bool_))


def binary(op: str, t: Any, other: Any, reverse: bool) -> Any:
    """t <op> other (reverse: other <op> t) for lc.Tensor t."""
    if _is_number(other):
        c = float(other)
        if op == "mul":
            return _C.vector_scale(t, c)
        return _C.elementwise_program(f"{op} {c!r} x0" if reverse else f"{op} x0 {c!r}", t)
    if not isinstance(other, (_C.Tensor, np.ndarray)):
        return NotImplemented
    other = _on_device_of(t, other)
    a, b = (other, t) if reverse else (t, other)
    return _FUNCS[op](a, b)


def _on_device_of(t: Any, other: Any) -> Any:
    """A numpy operand of a GPU tensor's operator, uploaded to the tensor's GPU: the result of
    an operator lives where its tensor does (the op alone, given a host array, would return host
    memory: its results stay on a device only when every input lives there). Only an array of
    the tensor's own dtype; any other goes to the op as it is (whose error names the mix)."""
    if not isinstance(other, np.ndarray) or t.get_device() < 0:
        return other
    name = "bfloat16" if other.dtype.name == "bfloat16" else other.dtype.name
    if name != t.dtype:
        return other
    return _C.Tensor(other, f"{t.device}:{t.get_device()}", name)


def neg(t: Any) -> Any:
    """-t."""
    return _C.vector_scale(t, -1.0)


def matmul(t: Any, other: Any, reverse: bool) -> Any:
    """t @ other (reverse: other @ t), torch.matmul's rules (lc.matmul)."""
    if not isinstance(other, (_C.Tensor, np.ndarray)):
        return NotImplemented
    other = _on_device_of(t, other)
    return _C.matmul(other, t) if reverse else _C.matmul(t, other)
