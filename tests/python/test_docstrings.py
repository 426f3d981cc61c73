"""Every public callable of the package has a numpydoc docstring: a summary, and a Parameters
section naming each of its parameters when it takes any (python/lightning_core/_docs.py for
the native ones, the Python layer's own docstrings for the rest)."""

from __future__ import annotations

import inspect
import re

import pytest

import lightning_core as lc
from lightning_core import _docs

PUBLIC = sorted(n for n in dir(lc) if not n.startswith("_") and callable(getattr(lc, n)))


def _parameters(obj) -> list[str]:
    """The parameter names of a function, or of a class's constructor."""
    target = obj
    if isinstance(obj, type):
        init = obj.__dict__.get("__init__") or getattr(obj, "__init__")
        if (init is object.__init__ or issubclass(obj, BaseException)
                or type(init).__name__ == "wrapper_descriptor"):  # no constructor of its own
            return []
        target = init
    if type(target).__name__ in ("nb_func", "nb_method"):
        return [p for p, _ in _docs._signature(target)[0]]
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values() if p.name != "self"]


def _section_names(doc: str) -> set[str]:
    m = re.search(r"^Parameters\n-{10}\n(.*?)(\n\n[A-Z]\w+\n-+\n|\Z)", doc, re.S | re.M)
    if not m:
        return set()
    names = set()
    for line in m.group(1).splitlines():
        if line and not line.startswith(" "):
            for part in line.split(" : ")[0].split(","):
                names.add(part.strip().lstrip("*"))
    return names


def test_public_api_is_large_enough_to_matter():
    assert len(PUBLIC) >= 100


@pytest.mark.parametrize("name", PUBLIC)
def test_public_callable_has_numpydoc(name):
    obj = getattr(lc, name)
    doc = inspect.cleandoc(obj.__doc__ or "")
    assert doc.strip(), f"lc.{name} has no docstring"
    params = _parameters(obj)
    if not params:
        return
    documented = _section_names(doc)
    assert documented, f"lc.{name} takes {params} but its docstring has no Parameters section"
    missing = [p for p in params if p.lstrip("*") not in documented]
    assert not missing, f"lc.{name}: parameters {missing} are not in its Parameters section"
    assert "See the summary." not in doc, (
        f"lc.{name}: a parameter has no description (add it to PARAMS / DOCS in "
        "python/lightning_core/_docs.py)")


def test_ops_document_returns_and_raises():
    for name in ("matmul2d", "linear", "add", "layernorm", "embedding", "attention2d"):
        doc = getattr(lc, name).__doc__
        assert "\nReturns\n-------\n" in doc and "\nRaises\n------\n" in doc, name
        assert "ValueError" in doc and "TypeError" in doc, name
    assert "OutDTypeError" in lc.matmul2d_into.__doc__


def test_docstrings_do_not_change_the_call_path():
    # _set_doc rewrites the docstring only: the op still runs and still refuses bad input.
    import numpy as np

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(lc.add(a, a), a + a)
    with pytest.raises(TypeError):
        lc._lightning_core._set_doc(len, "x")
