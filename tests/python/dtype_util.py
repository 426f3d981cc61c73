"""Storage dtypes in the tests: the numpy dtype of an lc dtype name (bfloat16 through
ml_dtypes.bfloat16; a test that needs it skips when ml_dtypes is missing) and the default
relative tolerance per dtype (float32 1e-5, float16 / bfloat16 1e-2, float64 1e-12). Tests with
a reason to differ keep their own table next to the reason."""

from __future__ import annotations

import numpy as np
import pytest

try:
    import ml_dtypes
except ImportError:  # bfloat16 cases skip without it
    ml_dtypes = None

TOL = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2, "float64": 1e-12}


def np_dtype(name: str):
    """numpy's dtype for an lc dtype name; skips the calling test for bfloat16 without ml_dtypes."""
    if name == "bfloat16":
        if ml_dtypes is None:
            pytest.skip("ml_dtypes not installed")
        return ml_dtypes.bfloat16
    return np.dtype(name)
