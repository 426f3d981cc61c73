"""Advanced indexing (lightning_core/_indexing.py): ``t[idx]`` on lc.Tensor and on traced
tensors (lc.compile), against numpy's own advanced indexing on the same values: int lists /
arrays of any shape (negative, repeated, empty), boolean masks over one or several axes, lc.Tensor int32 / int64
indices, the index on every axis, mixed with ints, slices (negative steps), ``...`` and ``None``
(numpy's rule for non-adjacent advanced indices included), several index arrays broadcast
together, non-contiguous tensors, each float dtype, each device; bad indices raise ValueError / TypeError naming the problem and leave
the runtime usable."""

from __future__ import annotations

import numpy as np
import pytest
from dtype_util import np_dtype

import lightning_core as lc

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]

_M2 = np.random.default_rng(5).random((5, 4)) < 0.5
_M3 = np.random.default_rng(6).random((5, 4, 3)) < 0.4
KEYS = [
    [2, 0, 2],                                   # a list, repeated rows
    np.array([-1, 0, -3]),                       # negatives count from the end
    np.array([[1, 0], [2, 2]]),                  # a 2-D index: its dims replace the axis
    np.array([], dtype=np.int64),                # empty
    np.array([True, False, True, True, False]),  # a boolean mask over axis 0 (size 5)
    (slice(None), [1, 3]),                       # axis 1
    (Ellipsis, np.array([0, 2, 2, 1])),          # the last axis
    (1, [0, 2]),                                 # int then array: adjacent, dims in place
    ([0, 4], slice(None), 2),                    # array, slice, int: non-adjacent, dims first
    (slice(None), 1, np.array([[2], [0]])),      # slice, int, array: adjacent
    (2, slice(None, None, -1), [1, 0]),          # int, slice, array: non-adjacent, dims first
    (None, [4, 1]),                              # None before the array
    (slice(3, 0, -1), None, np.array([2, 0])),   # a negative-step slice and None first
    (np.int64(1), Ellipsis, [0]),                # numpy int, ellipsis
    # several index arrays: broadcast together, one element per position (numpy's x[rows, cols])
    ([0, 4, 2], [1, 3, 3]),                      # two lists: 3 elements' rows
    (np.array([[0], [4]]), slice(None), np.array([2, 0, 1])),  # broadcast [2, 1] x [3], not adjacent
    (slice(1, None), [3, 0], [2, -1]),           # after a slice: adjacent, dims in place
    ([1, 2], 0, [2, 1]),                         # an int between two arrays: advanced too
    ([True, False, True, False, True], [0, 1, 3]),  # a boolean mask and a list
    (Ellipsis, [0, 3], [2, 2]),                  # the last two axes
    ([2], [1], [0]),                             # every axis: single elements
    # boolean masks over several axes: the index arrays of their True positions (m.nonzero())
    _M2[:5, :4],                                 # axes 0-1: [nnz, 3]
    (slice(None), _M2[:4, :3]),                  # axes 1-2 after a slice: [5, nnz]
    _M3,                                         # every axis: [nnz]
    (_M2[:5, :4], 1),                            # a mask and an int: advanced together
    (Ellipsis, _M2[:4, :3]),                     # the last two axes
    np.zeros((5, 4), bool),                      # no True: [0, 3]
    [[True, False, True, False]] * 5,            # a nested list of bools
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_eager_matches_numpy_every_key(rng, device, dtype):
    a = rng.standard_normal((5, 4, 3)).astype(np_dtype(dtype))
    t = lc.Tensor(a, device=device)
    for key in KEYS:
        ref = a[key]
        got = t[key]
        assert isinstance(got, lc.Tensor) and got.device == device and got.dtype == dtype, key
        assert got.shape == ref.shape, (key, got.shape, ref.shape)
        np.testing.assert_array_equal(got.numpy(), ref)  # a gather: bit for bit


@pytest.mark.parametrize("device", DEVICES)
def test_eager_non_contiguous_and_tensor_indices(rng, device):
    a = rng.standard_normal((7, 6, 5)).astype(np.float32)
    t = lc.Tensor(a, device=device)
    view = t.permute(2, 0, 1)[:, ::-2]            # strided, negative step
    av = a.transpose(2, 0, 1)[:, ::-2]
    for key in ([4, 0], (slice(None), np.array([[2], [0]])), (Ellipsis, [5, 0, 1])):
        np.testing.assert_array_equal(view[key].numpy(), av[key])
    for idt in (np.int32, np.int64):
        idx = rng.integers(0, 7, (3, 2)).astype(idt)
        it = lc.Tensor(idx, device=device)
        np.testing.assert_array_equal(t[it].numpy(), a[idx])
        idx2 = rng.integers(0, 5, (4,)).astype(idt)
        np.testing.assert_array_equal(t[:, :, lc.Tensor(idx2, device=device)].numpy(), a[:, :, idx2])
    sizes = lc.Tensor(np.zeros((0, 3), np.float32), device=device)
    assert sizes[[]].shape == (0, 3)
    assert lc.Tensor(np.zeros((4, 0), np.float32), device=device)[[1, 3]].shape == (2, 0)


# (key with "R" where the runtime index goes, the index's values): one lc.Tensor / traced index
# among host ones, every position and numpy's placement of the result's dims
RUNTIME_KEYS = [
    (("R", [1, 3]), np.array([[0, 4], [2, 1]])),                  # R then a list: [2, 2, 3]
    (("R", slice(None), [0, 2, 1]), np.array([[1], [3]])),        # not adjacent: dims first
    ((slice(None), "R", [2, 0, 1]), np.array([[3], [0]])),        # after a slice, broadcast
    (([0, 4], "R"), np.array([1, 2])),                            # a list then R
    (("R", 2), np.array([4, 0, 0])),                              # R and an int
    (("R", [0, 1]), np.array(3)),                                 # a 0-d R
    (("R", _M2[:4, :3]), np.array([2])),                          # R and a mask over two axes
]


@pytest.mark.parametrize("device", DEVICES)
def test_runtime_index_with_host_indices(rng, device):
    """An lc.Tensor index together with lists / numpy arrays / ints / masks: numpy's result (two
    gathers: the runtime index alone, then the host ones with the runtime index's positions),
    eager and traced (the index an input of the compiled function), int32 and int64."""
    a = rng.standard_normal((5, 4, 3)).astype(np.float32)
    t = lc.Tensor(a, device=device)
    for key, vals in RUNTIME_KEYS:
        for idt in (np.int64, np.int32):
            r = lc.Tensor(vals.astype(idt), device=device)
            ref = a[tuple(vals if isinstance(k, str) else k for k in key)]
            got = t[tuple(r if isinstance(k, str) else k for k in key)]
            assert got.shape == ref.shape and got.device == device, (key, got.shape, ref.shape)
            np.testing.assert_array_equal(got.numpy(), ref)
            c = lc.compile(lambda x, i, key=key: lc.relu(x[tuple(i if isinstance(k, str) else k for k in key)]),
                           device=device)
            np.testing.assert_array_equal(c(t, r).numpy(), np.maximum(ref, 0))


@pytest.mark.parametrize("device", DEVICES)
def test_bad_indices_raise_and_the_runtime_stays_usable(rng, device):
    a = rng.standard_normal((4, 3)).astype(np.float32)
    t = lc.Tensor(a, device=device)
    with pytest.raises(ValueError, match="index 4 is out of range for an axis of size 4"):
        t[[0, 4]]
    with pytest.raises(ValueError, match="index -5 is out of range"):
        t[np.array([-5])]
    with pytest.raises(ValueError, match="boolean mask of 3 values for an axis of size 4"):
        t[np.array([True, False, True])]
    with pytest.raises(ValueError, match="mask of 4 values along an axis of size 3"):
        t[np.ones((4, 4), bool)]  # a mask over two axes must match both
    with pytest.raises(TypeError, match="ints or booleans"):
        t[np.array([0.5, 1.0])]
    with pytest.raises(ValueError, match="cannot be broadcast together"):
        t[[0, 1], [1, 2, 0]]
    with pytest.raises(TypeError, match="at most one index array may be an lc.Tensor"):
        i = lc.Tensor(np.array([0, 1], np.int64), device=device)
        t[i, i]
    with pytest.raises(ValueError, match="index 3 is out of range for an axis of size 3"):
        t[[0, 1], [1, 3]]
    with pytest.raises(TypeError, match="got bool"):  # numpy's x[True] adds an axis: use None
        t[True, [0]]
    with pytest.raises(TypeError, match="int32 or int64"):
        t[lc.Tensor(np.array([0.0, 1.0], np.float32), device=device)]
    with pytest.raises(ValueError, match="out of range"):  # an lc.Tensor index is checked by the op
        t[lc.Tensor(np.array([0, 9], np.int64), device=device)]
    with pytest.raises(ValueError, match="too many indices"):
        t[0, 1, [0]]
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        lc.Tensor(np.arange(4, dtype=np.int32))[[1, 2]]
    with pytest.raises(TypeError, match="index items must be"):
        t["a", [0]]
    np.testing.assert_array_equal(t[[3, 1]].numpy(), a[[3, 1]])  # still usable


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fusion", [True, False])
def test_traced_matches_numpy_and_eager(rng, device, fusion):
    a = rng.standard_normal((5, 4, 3)).astype(np.float32)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    for key in KEYS:
        fn = lambda x, key=key: lc.relu(x[key]) * 2.0  # noqa: E731 -- an op after the gather
        c = lc.compile(fn, device=device, fusion=fusion)
        got = c(lc.Tensor(a, device=device))
        ref = np.maximum(a[key], 0) * 2
        assert got.shape == ref.shape, key
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)
    # a gather feeding linear, the index a runtime input of the graph
    c = lc.compile(lambda x, ids: lc.linear(x[ids][:, 0], w), device=device, fusion=fusion)
    ids = rng.integers(0, 5, (6,)).astype(np.int64)
    got = c(lc.Tensor(a, device=device), lc.Tensor(ids, device=device))
    np.testing.assert_allclose(got.numpy(), a[ids][:, 0] @ w.T, rtol=1e-5, atol=1e-6)
    assert "embedding" in c.explain()


def test_traced_bad_indices_name_the_problem(rng):
    a = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[graph\] __getitem__: index 7 is out of range"):
        lc.compile(lambda x: x[[0, 7]])(a)
    with pytest.raises(TypeError, match="traced index must be int32 or int64"):
        lc.compile(lambda x, i: x[i])(a, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"\[graph\] __getitem__: index arrays of shapes"):
        lc.compile(lambda x: x[[0, 1], [1, 2, 0]])(a)
    with pytest.raises(TypeError, match="at most one index array may be an lc.Tensor or traced"):
        lc.compile(lambda x, i: x[i, i])(a, np.array([0, 1], np.int64))
