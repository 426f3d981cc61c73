"""Shared fixtures for the Python test suite.

* ``backends``: every device the op tests run on -- ``["cpu"]`` plus ``"cuda"`` when a usable
  GPU is present -- so the CUDA backend plugs into the same tests (see parity.py).
* ``gpu`` marker: ``@pytest.mark.gpu`` tests are skipped automatically when no GPU is usable.
* ``rng`` fixture: a numpy Generator with a *fresh* random seed per test (new inputs every run).
  The seed is printed (it shows up under "Captured stdout setup" and in a "random seed" report
  section when the test fails); ``LC_TEST_SEED=<n>`` replays a failing run.

Run with the fresh build on the path:
    PYTHONPATH=build-tests/python python3 -m pytest tests/python -q
"""

from __future__ import annotations

import os
import secrets

import numpy as np
import pytest

import lightning_core as lc

CUDA = bool(lc.cuda_available())
# Set by scripts/sanitize.sh: this run uses the ASan+UBSan build of the module.
SANITIZED = os.environ.get("LC_SANITIZED") == "1"

# Every backend the op tests run on. Order matters only for test ids.
backends = ["cpu"] + (["cuda"] if CUDA else [])


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a usable CUDA device (skipped automatically when there is none)"
    )
    config.addinivalue_line(
        "markers",
        "not_sanitized(reason): skipped in the ASan+UBSan run (scripts/sanitize.sh); the reason "
        "must say why the sanitizer distorts the test (keep this list short)",
    )


def pytest_collection_modifyitems(config, items):
    if SANITIZED:
        for item in items:
            mark = item.get_closest_marker("not_sanitized")
            if mark is not None:
                why = mark.args[0] if mark.args else mark.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"not run under ASan+UBSan: {why}"))
    if CUDA:
        return
    skip = pytest.mark.skip(reason="no usable CUDA device (lc.cuda_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _new_seed() -> int:
    env = os.environ.get("LC_TEST_SEED")
    if env:
        return int(env)
    return secrets.randbits(32)


@pytest.fixture(autouse=True, scope="session")
def _suite_autotune_cache(tmp_path_factory):
    """Ops tune themselves on first use (the CPU GEMM choice of mid-size matmuls, the CPU conv
    path): keep the suite's choices out of the user's cache unless LIGHTNING_CORE_CACHE_DIR is
    set explicitly. Tests that need their own cache (test_autotune.py) override it per test."""
    if os.environ.get("LIGHTNING_CORE_CACHE_DIR"):
        yield
        return
    os.environ["LIGHTNING_CORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("lc-autotune"))
    lc._lightning_core._autotune_reload()
    yield
    os.environ.pop("LIGHTNING_CORE_CACHE_DIR", None)
    lc._lightning_core._autotune_reload()


@pytest.fixture
def rng(request):
    seed = _new_seed()
    request.node._lc_seed = seed
    print(f"random seed {seed} (replay with LC_TEST_SEED={seed})")
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    seed = getattr(item, "_lc_seed", None)
    if seed is not None and report.failed:
        report.sections.append(
            ("random seed", f"seed {seed}: replay with LC_TEST_SEED={seed} pytest {item.nodeid}")
        )


@pytest.fixture(params=backends)
def backend(request):
    """Each available backend in turn ("cpu", and "cuda" when present)."""
    return request.param


@pytest.fixture
def lc_mod():
    return lc
