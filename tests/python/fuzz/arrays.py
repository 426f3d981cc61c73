"""Array descriptors -> the objects a fuzz case passes to lightning_core.

A descriptor is a plain dict (JSON-able, so a crashing case can be printed and replayed):

    {"shape": [3, 4], "dtype": "float32", "layout": "C", "fill": "normal", "scale": 1.0,
     "special": None, "seed": 0, "wrap": "numpy", "device": "cpu"}

Every key but "shape" is optional. ``arr(**desc)`` builds the object; ``logical(desc)`` gives
the values it holds as float64 (after rounding to its dtype), which is what the references see.

layout (numpy objects): C, F (Fortran), T (axes reversed over a C buffer), step (every other
  element of a NaN-filled buffer), neg (negative strides on every axis), bcast (np.broadcast_to
  of a smaller array: zero strides), ro (read-only), misaligned (a view at byte offset 1 of a
  uint8 buffer), swapped (non-native byte order, e.g. '>f4').
wrap: numpy (the array itself), tensor (lc.Tensor copy on `device`), view (lc.TensorView with
  stride 2 over a NaN-filled lc.Tensor on `device`), from_numpy (lc.Tensor.from_numpy, no copy).
fill: normal (N(0,1) * scale), ints (-3..3), ones, zeros, nan (every element NaN).
special: None, "nan", "inf", "-inf", "mix": 1-3 elements set to that value.
"""

from __future__ import annotations

import math

import numpy as np

LAYOUTS = ("C", "F", "T", "step", "neg", "bcast", "ro", "misaligned", "swapped")
DEFAULTS = {"dtype": "float32", "layout": "C", "fill": "normal", "scale": 1.0, "special": None,
            "seed": 0, "wrap": "numpy", "device": "cpu"}


def _full(desc: dict) -> dict:
    d = dict(DEFAULTS)
    d.update(desc)
    d["shape"] = tuple(int(s) for s in d["shape"])
    return d


def _base_shape(d: dict) -> tuple:
    """The shape the values are generated at (smaller than `shape` for bcast)."""
    shape = d["shape"]
    if d["layout"] != "bcast":
        return shape
    if math.prod(shape) > 2**24:  # huge zero-stride arrays: one value broadcast everywhere
        return (1,) * len(shape)
    # Dims whose bit in the seed is set are broadcast from size 1 (at least the first one).
    return tuple(1 if (i == 0 or (d["seed"] >> i) & 1) else s for i, s in enumerate(shape))


def _values(d: dict) -> np.ndarray:
    """The logical values in the descriptor's dtype (C order, full shape)."""
    shape = d["shape"]
    base = _base_shape(d)
    rng = np.random.default_rng(d["seed"])
    fill = d["fill"]
    if fill == "normal":
        v = rng.standard_normal(base) * d["scale"]
    elif fill == "ints":
        v = rng.integers(-3, 4, base).astype(np.float64)
    elif fill == "ones":
        v = np.ones(base)
    elif fill == "zeros":
        v = np.zeros(base)
    elif fill == "nan":
        v = np.full(base, np.nan)
    else:
        raise ValueError(f"fill {fill!r}")
    sp = d["special"]
    if sp and v.size:
        flat = v.reshape(-1)
        k = 1 + int(rng.integers(0, 3))
        vals = {"nan": [np.nan], "inf": [np.inf], "-inf": [-np.inf], "mix": [np.nan, np.inf, -np.inf]}[sp]
        for j in range(k):
            flat[int(rng.integers(0, flat.size))] = vals[j % len(vals)]
    dt = np.dtype(d["dtype"])
    with np.errstate(invalid="ignore", over="ignore"):
        if dt.kind == "b":
            v = np.nan_to_num(v) > 0
        elif dt.kind in "iu":
            v = np.nan_to_num(v, posinf=1, neginf=-1).astype(dt)
        else:
            v = v.astype(dt)
    return np.broadcast_to(v, shape) if base != shape else v


def logical(desc: dict) -> np.ndarray:
    """float64 copy of the values the built object holds (the reference's input)."""
    d = _full(desc)
    v = _values(d)
    with np.errstate(invalid="ignore"):
        return np.array(v, dtype=np.float64) if v.dtype.kind != "c" else np.array(v)


def _layout(v: np.ndarray, layout: str) -> np.ndarray:
    if layout == "bcast":
        return v  # already a zero-stride view of the base (see _values)
    x = np.array(v, order="C")
    if layout == "C":
        return x
    if layout == "F":
        return np.array(x, order="F")
    if layout == "T":
        rev = tuple(range(x.ndim))[::-1]
        return x.transpose(rev).copy().transpose(rev)
    if layout == "step":
        if x.ndim == 0:
            return x
        buf = np.full(x.shape[:-1] + (2 * x.shape[-1] + 1,), np.nan if x.dtype.kind in "fc" else 7,
                      dtype=x.dtype)
        view = buf[..., 1::2]
        view[...] = x
        return view
    if layout == "neg":
        if x.ndim == 0:
            return x
        sl = (slice(None, None, -1),) * x.ndim
        return x[sl].copy()[sl]
    if layout == "ro":
        x = x.copy()
        x.flags.writeable = False
        return x
    if layout == "misaligned":
        buf = np.zeros(x.nbytes + 1, dtype=np.uint8)
        view = buf[1:].view(x.dtype).reshape(x.shape)
        view[...] = x
        return view
    if layout == "swapped":
        return x.astype(x.dtype.newbyteorder("S"))
    raise ValueError(f"layout {layout!r}")


def arr(shape, dtype="float32", layout="C", fill="normal", scale=1.0, special=None, seed=0,
        wrap="numpy", device="cpu"):
    """Builds the described object (see the module docstring)."""
    d = _full(dict(shape=shape, dtype=dtype, layout=layout, fill=fill, scale=scale,
                   special=special, seed=seed, wrap=wrap, device=device))
    v = _values(d)
    if wrap == "numpy":
        return _layout(v, layout)
    import lightning_core as lc

    lcd = "float64" if d["dtype"] == "float64" else "float32"
    if wrap == "tensor":
        return lc.Tensor(np.array(v, order="C"), device=device, dtype=lcd)
    if wrap == "from_numpy":
        return lc.Tensor.from_numpy(np.asarray(_layout(v, layout)))  # (a 0-d bcast can be a scalar)
    if wrap == "view":
        shape = d["shape"]
        if len(shape) == 0:
            return lc.Tensor(np.array(v, order="C"), device=device, dtype=lcd)
        n = math.prod(shape)
        buf = np.full(2 * n + 1, np.nan)
        buf[1::2] = np.array(v, dtype=np.float64, order="C").reshape(-1)
        base = lc.Tensor(buf, device=device, dtype=lcd)
        strides, step = [], 2
        for s in reversed(shape):
            strides.append(step)
            step *= s
        return lc.TensorView(base, list(shape), strides[::-1], 1)
    raise ValueError(f"wrap {wrap!r}")


def render(desc) -> str:
    """Python source that rebuilds the described object (for repro snippets)."""
    if desc is None:
        return "None"
    if not isinstance(desc, dict) or "shape" not in desc:
        return repr(desc)
    d = _full(desc)
    if d["wrap"] == "numpy" and d["layout"] == "C" and d["fill"] in ("ones", "zeros") and \
            not d["special"] and d["dtype"] == "float32":
        return f"np.{d['fill']}({d['shape']!r}, np.float32)"
    parts = [repr(d["shape"])]
    for k in ("dtype", "layout", "fill", "scale", "special", "seed", "wrap", "device"):
        if d[k] != DEFAULTS[k]:
            parts.append(f"{k}={d[k]!r}")
    return f"arr({', '.join(parts)})"
