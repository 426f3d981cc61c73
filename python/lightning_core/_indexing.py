"""Advanced indexing (one index array) for lc.Tensor and the tracer's TracedTensor.

``t[key]`` where ``key`` holds exactly one index array, numpy's rules for that case:

- the index array is a list / numpy array of ints (negative ones count from the end), a 1-D
  boolean mask over its axis (its True positions), or an ``lc.Tensor`` of int32 / int64 (its
  values must lie in ``[0, n)``: they are read by the op, not here);
- the other items are basic ones (ints, slices, ``...``, ``None``) and apply as views first;
- the index's dimensions replace the indexed axis, or lead the result when ints and the array are
  separated by a slice, ``...`` or ``None`` (numpy's rule for non-adjacent advanced indices).

The gather itself is the ``embedding`` op on the tensor viewed as ``[n, rest]`` (indexed axis
first): one kernel on the tensor's device, float32 / float16 / bfloat16. The result is a new
tensor (a permuted view of it when the index dimensions land inside); the tracer records the
same steps as graph nodes (views + ``embedding``), with a numpy index as an int64 constant.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

_OP = "[Tensor.__getitem__]"  # the messages' prefix (the tracer passes its own)


def _is_index_array(k) -> bool:
    from . import _lightning_core as _C

    if isinstance(k, (list, np.ndarray, _C.Tensor)):
        return not (isinstance(k, np.ndarray) and k.ndim == 0)
    return type(k).__name__ == "TracedTensor"


def _scalar_int(k):
    """An int item (Python int, numpy integer, 0-d integer array) as int, else None."""
    if isinstance(k, bool) or isinstance(k, np.bool_):
        return None
    if isinstance(k, (int, np.integer)):
        return int(k)
    if isinstance(k, np.ndarray) and k.ndim == 0 and np.issubdtype(k.dtype, np.integer):
        return int(k)
    return None


def split_key(key, ndim: int, op: str = _OP):
    """(basic key with the array replaced by a full slice, the array, the indexed axis in the
    basic result, whether the index dims lead the result). Raises for keys outside the rules."""
    items = list(key) if isinstance(key, tuple) else [key]
    arrays = [i for i, k in enumerate(items) if _is_index_array(k)]
    for k in items:
        if k is Ellipsis or k is None or isinstance(k, slice) or _scalar_int(k) is not None or _is_index_array(k):
            continue
        raise TypeError(f"{op} index items must be ints, slices, None, ... or one index array "
                        f"(ints or a 1-D boolean mask), got {type(k).__name__}")
    if len(arrays) != 1:
        raise TypeError(f"{op} at most one index array per index is supported, got {len(arrays)}; "
                        "index one axis at a time")
    a = arrays[0]
    consumed = sum(1 for k in items if k is not Ellipsis and k is not None)
    if consumed > ndim:
        raise ValueError(f"{op} too many indices ({consumed}) for a {ndim}-D tensor")
    axis = 0  # the array's axis in the basic-indexed result
    for k in items[:a]:
        if k is Ellipsis:
            axis += ndim - consumed
        elif k is None or isinstance(k, slice):
            axis += 1
    # numpy: ints are advanced indices too; when they and the array are not adjacent in the key,
    # the index dimensions go first.
    adv = [i for i, k in enumerate(items) if i == a or _scalar_int(k) is not None]
    leading = adv[-1] - adv[0] + 1 != len(adv)
    basic = items[:a] + [slice(None)] + items[a + 1:]
    return tuple(basic), items[a], axis, leading


def host_index(idx, n: int, op: str = _OP) -> np.ndarray:
    """A list / numpy index as int64 in [0, n): booleans to positions, negatives wrapped, range
    checked (ValueError naming the first bad value)."""
    arr = np.asarray(idx)
    if arr.dtype == np.bool_:
        if arr.ndim != 1:
            raise ValueError(f"{op} a boolean mask must be 1-D (over one axis), got shape {arr.shape}")
        if arr.shape[0] != n:
            raise ValueError(f"{op} a boolean mask of {arr.shape[0]} values for an axis of size {n}")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.size == 0 and arr.dtype.kind == "f":  # [] is float64 to numpy; an empty index
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{op} an index array must hold ints or booleans, got {arr.dtype}")
    out = arr.astype(np.int64)
    bad = (out < -n) | (out >= n)
    if bad.any():
        raise ValueError(f"{op} index {int(out[bad].flat[0])} is out of range for an axis of size {n}")
    return np.where(out < 0, out + n, out)


def gather(t, idx, axis: int, leading: bool, *, permute: Callable, reshape: Callable,
           embedding: Callable, op: str = _OP):
    """t's axis `axis` indexed by idx (an int index of any shape) through embedding on the
    [n, rest] view: the steps both lc.Tensor and the tracer take."""
    shape = tuple(t.shape)
    n = shape[axis]
    others = shape[:axis] + shape[axis + 1:]
    if axis:
        t = permute(t, (axis,) + tuple(d for d in range(len(shape)) if d != axis))
    table = reshape(t, (n, math.prod(others)))
    g = embedding(idx, table)                                   # idx.shape + (rest,)
    k = len(tuple(idx.shape))
    g = reshape(g, tuple(idx.shape) + others)
    if axis and not leading:  # the index dims back in the indexed axis's place
        perm = tuple(range(k, k + axis)) + tuple(range(k)) + tuple(range(k + axis, k + len(others)))
        g = permute(g, perm)
    return g


def advanced_getitem(t, key) -> Any:
    """lc.Tensor.__getitem__ for keys with an index array (called by the binding)."""
    from . import _lightning_core as _C

    basic, idx, axis, leading = split_key(key, t.ndim)
    if t.dtype not in ("float32", "float16", "bfloat16"):
        raise TypeError(f"{_OP} indexing with an index array gathers float32, float16 or bfloat16 "
                        f"tensors, got {t.dtype}; basic indexing (ints, slices) works for every dtype")
    base = t[basic] if any(not (isinstance(k, slice) and k == slice(None)) for k in basic) else t
    n = base.shape[axis]
    if isinstance(idx, _C.Tensor):
        if idx.dtype not in ("int32", "int64"):
            raise TypeError(f"{_OP} an lc.Tensor index must be int32 or int64, got {idx.dtype}")
        if idx.device != base.device:
            raise ValueError(f"{_OP} the index is on {idx.device}, the tensor on {base.device}; "
                             "move one with .to()")
    else:  # on the tensor's device, so that the result stays there (the ops' residency rule)
        idx = _C.Tensor(host_index(idx, n), device=base.device)
    dev = base.device
    return gather(base, idx, axis, leading,
                  permute=lambda x, d: x.permute(d),
                  reshape=lambda x, s: x.reshape(s),
                  embedding=lambda i, w: _C.embedding(i, w, dev))
