"""Tensor64 and TensorView: thin Python subclasses of the native lc.Tensor.

lc.Tensor holds float32 unless its data is float16 / bfloat16 / int32 / int64 (kept) or a dtype is
given; Tensor64 is the float64 flavour (for references and
accumulation on the host); TensorView is a strided view of a tensor (or of a numpy array) that
shares its memory, so slicing costs no copy. Ops accept views directly: a non-contiguous view is
copied once when an op stages it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._lightning_core import Tensor

__all__ = ["Tensor64", "TensorView"]


class Tensor64(Tensor):
    """A float64 lc.Tensor: ``lc.Tensor64(data, device="cpu")``.

    Parameters
    ----------
    data : array_like or Tensor
        Data to copy (converted to float64).
    device : str, optional
        "cpu" or "cuda".
    """

    def __init__(self, data, device: str = "cpu"):
        super().__init__(data, device, "float64")


class TensorView(Tensor):
    """A strided view without a copy.

    ``TensorView(base, shape, strides, offset=0)``: ``base`` is an lc.Tensor (or a numpy array,
    wrapped without a copy); ``strides`` and ``offset`` are in elements. The view keeps its base
    alive and is bounds-checked against the base's memory.

    Parameters
    ----------
    base : Tensor or ndarray
        The memory to view (a numpy array is wrapped without a copy).
    shape : sequence of int
        The view's shape.
    strides : sequence of int or None, optional
        Strides in elements (None: C-contiguous for ``shape``).
    offset : int, optional
        First element's offset in elements.

    Raises
    ------
    TypeError
        A base dtype lc does not hold.
    ValueError
        The view reaches outside the base's memory.
    """

    def __init__(self, base, shape: Sequence[int], strides: Sequence[int] | None = None, offset: int = 0):
        if not isinstance(base, Tensor):
            arr = np.asarray(base)
            try:
                base = Tensor.from_numpy(arr)  # shares the array's memory
            except TypeError:
                raise TypeError(f"[TensorView] base must be float32, float64, float16, bfloat16, int32 "
                                f"or int64, got {arr.dtype}") from None
        shape = [int(s) for s in shape]
        if strides is None:
            strides = [0] * len(shape)
            step = 1
            for i in range(len(shape) - 1, -1, -1):
                strides[i] = step
                step *= shape[i]
        v = base._view(shape, [int(s) for s in strides], int(offset))
        Tensor.__init__(self, v, share=True)  # alias the native view: same memory, no copy
