"""Advanced indexing (one index array) for lc.Tensor and the tracer's TracedTensor.

``t[key]`` where ``key`` holds index arrays, numpy's advanced-indexing rules:

- the index array is a list / numpy array of ints (negative ones count from the end), a
  boolean mask over its axis (its True positions) or over several axes (the index arrays of
  its True positions, ``m.nonzero()``; its shape must match those axes), or an ``lc.Tensor`` of
  int32 / int64 (its
  values must lie in ``[0, n)``: they are read by the op, not here); every index value is range
  checked, also where a broadcast leaves none of them used (numpy accepts those);
- the other items are basic ones (ints, slices, ``...``, ``None``) and apply as views first;
- the index's dimensions replace the indexed axis, or lead the result when ints and the array are
  separated by a slice, ``...`` or ``None`` (numpy's rule for non-adjacent advanced indices);
- several index arrays (lists / numpy arrays; ints join them) broadcast together and pick one
  element per position across their axes, as numpy's ``x[rows, cols]``: their values are known
  here, so they become one index into those axes flattened; one of them may be an ``lc.Tensor``
  / traced index (at most one): it gathers first on its own axis, then the others together with
  its positions (two gathers, numpy's result).

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


class _MaskAxis(np.ndarray):
    """One axis's positions of a boolean mask over several axes (a row of ``np.nonzero``), with
    the mask's length on that axis (``mask_len``): host_index checks it against the axis."""

    mask_len: int


def _expand_masks(items: list) -> list:
    """numpy's rule for a boolean mask over k >= 2 axes: it is the k index arrays of its True
    positions (``x[m] == x[m.nonzero()]``), each knowing the length it must match."""
    from . import _lightning_core as _C

    out = []
    for k in items:
        if isinstance(k, (list, np.ndarray)) and not isinstance(k, _C.Tensor):
            arr = np.asarray(k) if isinstance(k, np.ndarray) or _looks_bool(k) else None
            if arr is not None and arr.dtype == np.bool_ and arr.ndim >= 2:
                for j, pos in enumerate(np.nonzero(arr)):
                    part = pos.astype(np.int64).view(_MaskAxis)
                    part.mask_len = int(arr.shape[j])
                    out.append(part)
                continue
        out.append(k)
    return out


def _looks_bool(k: list) -> bool:
    """A nested list whose first leaf is a bool (converted only then: other lists stay lists)."""
    while isinstance(k, list) and k:
        k = k[0]
    return isinstance(k, (bool, np.bool_))


def split_key(key, ndim: int, op: str = _OP):
    """(basic key with the advanced items replaced by full slices, the index arrays in key
    order, their axes in the basic result, whether the index dims lead the result). With one
    index array the ints stay basic (they drop their axes first); with several, ints are index
    arrays of shape () as numpy treats them. Raises for keys outside the rules."""
    items = _expand_masks(list(key) if isinstance(key, tuple) else [key])
    for k in items:
        if k is Ellipsis or k is None or isinstance(k, slice) or _scalar_int(k) is not None or _is_index_array(k):
            continue
        raise TypeError(f"{op} index items must be ints, slices, None, ... or index arrays "
                        f"(ints or boolean masks), got {type(k).__name__}")
    arrays = [i for i, k in enumerate(items) if _is_index_array(k)]
    ints = [i for i, k in enumerate(items) if _scalar_int(k) is not None]
    consumed = sum(1 for k in items if k is not Ellipsis and k is not None)
    if consumed > ndim:
        raise ValueError(f"{op} too many indices ({consumed}) for a {ndim}-D tensor")
    # numpy: ints are advanced indices too; when they and the arrays are not adjacent in the key,
    # the index dimensions go first.
    adv = sorted(arrays + ints)
    leading = adv[-1] - adv[0] + 1 != len(adv)
    taken = arrays if len(arrays) == 1 else adv  # one array: the ints select first (basic)
    basic, axes, axis = [], [], 0
    for i, k in enumerate(items):
        if i in taken:
            basic.append(slice(None))
            axes.append(axis)
            axis += 1
            continue
        basic.append(k)
        if k is Ellipsis:
            axis += ndim - consumed
        elif k is None or isinstance(k, slice):
            axis += 1
    idxs = [np.asarray(items[i]) if i in ints else items[i] for i in taken]
    return tuple(basic), idxs, axes, leading


def flat_host_index(idxs, sizes, op: str = _OP) -> np.ndarray:
    """Several host index arrays (lists, numpy arrays, 0-d ints, 1-D boolean masks) over axes of
    these sizes: broadcast together, each wrapped and range checked, as one int64 index into the
    axes flattened in order (numpy's advanced indexing with several arrays)."""
    from . import _lightning_core as _C

    if any(isinstance(i, _C.Tensor) or type(i).__name__ == "TracedTensor" for i in idxs):
        raise TypeError(f"{op} internal: a runtime index reached the host flattening")
    norm = [host_index(i, n, op) for i, n in zip(idxs, sizes)]
    try:
        b = np.broadcast_arrays(*norm)
    except ValueError:
        raise ValueError(f"{op} index arrays of shapes {[tuple(x.shape) for x in norm]} cannot be "
                         "broadcast together") from None
    if any(n == 0 for n in sizes):  # nothing to index: only an empty broadcast is valid (checked above)
        return np.zeros(b[0].shape, np.int64)
    return np.ravel_multi_index(tuple(b), tuple(sizes)).astype(np.int64)


def host_index(idx, n: int, op: str = _OP) -> np.ndarray:
    """A list / numpy index as int64 in [0, n): booleans to positions, negatives wrapped, range
    checked (ValueError naming the first bad value)."""
    mask_len = getattr(idx, "mask_len", None)
    if mask_len is not None and mask_len != n:  # one axis of a mask over several (_expand_masks)
        raise ValueError(f"{op} a boolean mask of {mask_len} values along an axis of size {n} (a "
                         "mask's shape must match the axes it covers)")
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


def gather(t, idx, axes, leading: bool, *, permute: Callable, reshape: Callable,
           embedding: Callable):
    """t indexed on `axes` (adjacent, in order; one axis for a runtime index) by idx, an int
    index into those axes flattened, of any shape, through embedding on the [n, rest] view: the
    steps both lc.Tensor and the tracer take."""
    shape = tuple(t.shape)
    axes = list(axes)
    others = tuple(d for d in range(len(shape)) if d not in axes)
    rest = tuple(shape[d] for d in others)
    if list(axes) != list(range(len(axes))):
        t = permute(t, tuple(axes) + others)
    table = reshape(t, (math.prod(shape[a] for a in axes), math.prod(rest)))
    g = embedding(idx, table)                                   # idx.shape + (rest,)
    k = len(tuple(idx.shape))
    g = reshape(g, tuple(idx.shape) + rest)
    p = axes[0]  # the index dims go where the indexed axes were (unless they lead)
    if p and not leading:
        perm = tuple(range(k, k + p)) + tuple(range(k)) + tuple(range(k + p, k + len(rest)))
        g = permute(g, perm)
    return g


def _resolve(x, key, op: str):
    """(x with the key's basic items applied, the index, the indexed axes, whether the index dims
    lead): host indices become one int64 numpy index (wrapped, range checked, several arrays
    broadcast and flattened); an lc.Tensor or traced int index is kept as it is (the op reads
    its values: they must lie in [0, n)); one among host indices: the list of them all (_apply
    gathers twice)."""
    from . import _lightning_core as _C

    basic, idxs, axes, leading = split_key(key, x.ndim, op)
    full = all(isinstance(k, slice) and k == slice(None) for k in basic)
    base = x if full else x[basic]
    runtime = [i for i, ix in enumerate(idxs) if _is_runtime(ix)]
    for i in runtime:
        if idxs[i].dtype not in ("int32", "int64"):
            what = "an lc.Tensor" if isinstance(idxs[i], _C.Tensor) else "a traced"
            raise TypeError(f"{op} {what} index must be int32 or int64, got {idxs[i].dtype}")
    if len(idxs) > 1:
        if len(runtime) > 1:
            raise TypeError(f"{op} at most one index array may be an lc.Tensor or traced (its values "
                            "are read on the device); pass the others as lists or numpy arrays")
        if runtime:  # two gathers (_apply): the runtime index alone, then the host ones
            return base, list(idxs), axes, leading
        return base, flat_host_index(idxs, [base.shape[a] for a in axes], op), axes, leading
    idx = idxs[0]
    if runtime:
        return base, idx, axes, leading
    return base, host_index(idx, base.shape[axes[0]], op), axes, leading


def _is_runtime(ix) -> bool:
    """An index whose values are read on the device: an lc.Tensor or a traced tensor."""
    from . import _lightning_core as _C

    return isinstance(ix, _C.Tensor) or type(ix).__name__ == "TracedTensor"


def _apply(base, idx, axes, leading, op: str, take: Callable):
    """The gather(s) for _resolve's answer. ``take(x, index, axes, leading)`` gathers once. With
    one runtime index among host ones (idx a list): first the runtime index alone on its axis
    (its dims in the axis's place), then every other index together with the positions of the
    runtime index's dims (``np.indices`` of its shape, broadcast against the others as numpy
    broadcasts the index arrays) as one host index: numpy's result in two gathers."""
    if not isinstance(idx, list):
        return take(base, idx, axes, leading)
    j = next(i for i, ix in enumerate(idx) if _is_runtime(ix))
    r = idx[j]
    rshape = tuple(int(d) for d in r.shape)
    k = len(rshape)
    y = take(base, r, [axes[j]], False)
    pos = list(np.indices(rshape)) if k else []
    new_idx, new_axes = [], []
    for i, (ix, a) in enumerate(zip(idx, axes)):
        if i == j:
            new_idx += pos
            new_axes += [a + d for d in range(k)]
        else:
            new_idx.append(ix)
            new_axes.append(a + (k - 1 if a > axes[j] else 0))
    flat = flat_host_index(new_idx, [int(y.shape[a]) for a in new_axes], op)
    return take(y, flat, new_axes, leading)


def advanced_getitem(t, key) -> Any:
    """lc.Tensor.__getitem__ for keys with index arrays (called by the binding)."""
    from . import _lightning_core as _C

    if t.dtype not in ("float32", "float16", "bfloat16"):
        raise TypeError(f"{_OP} indexing with an index array gathers float32, float16 or bfloat16 "
                        f"tensors, got {t.dtype}; basic indexing (ints, slices) works for every dtype")
    base, idx, axes, leading = _resolve(t, key, _OP)
    dev = base.device

    def take(x, ix, ax, lead):
        if isinstance(ix, np.ndarray):  # on the tensor's device: the result stays there (the ops' rule)
            ix = _C.Tensor(ix, device=dev)
        elif ix.device != dev:
            raise ValueError(f"{_OP} the index is on {ix.device}, the tensor on {dev}; move one with .to()")
        return gather(x, ix, ax, lead,
                      permute=lambda v, d: v.permute(d),
                      reshape=lambda v, s: v.reshape(s),
                      embedding=lambda i, w: _C.embedding(i, w, dev))
    return _apply(base, idx, axes, leading, _OP, take)


def traced_getitem(x, key):
    """TracedTensor.__getitem__ for keys with index arrays: the basic items as view nodes, then
    ``permute`` / ``reshape`` views around one ``embedding`` node; a host index becomes an int64
    constant, a traced int tensor is read at run time."""
    op = "[graph] __getitem__:"
    base, idx, axes, leading = _resolve(x, key, op)
    tracer = x._tracer

    def take(t, ix, ax, lead):
        return gather(t, ix, ax, lead,
                      permute=lambda v, d: tracer.record_view("permute", v, {"dims": tuple(d)}),
                      reshape=lambda v, s: tracer.record_view("reshape", v, {"shape": tuple(s)}),
                      embedding=lambda i, w: tracer.record("embedding", (i, w), {}))
    return _apply(base, idx, axes, leading, op, take)
