"""Library messages through Python: warnings as RuntimeWarning (filters and -W error apply),
notes through the "lightning_core" logger (LC_LOG_LEVEL, lc.set_log_level), and the
ExecutionPolicy repr / no-GPU reasons users read."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import lightning_core as lc

_C = lc._lightning_core
WARNING, INFO = logging.WARNING, logging.INFO


@pytest.fixture
def log_level():
    before = logging.getLogger("lightning_core").level
    yield lc.set_log_level
    lc.set_log_level(before or WARNING)


def test_library_warning_is_a_runtime_warning():
    with pytest.warns(RuntimeWarning, match="lightning_core: cache went away"):
        _C._log(WARNING, "cache went away")


def test_warning_filter_error_makes_the_call_raise():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="calibration failed"):
            _C._log(WARNING, "calibration failed")
    # the runtime keeps working afterwards
    a = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(lc.add(a, a), a + a)


def test_ignored_warning_is_silent(recwarn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _C._log(WARNING, "ignored")
    assert not [w for w in recwarn if "ignored" in str(w.message)]


def _run(code: str, env_extra: dict, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_dash_w_error_turns_a_cache_fault_into_an_exception(tmp_path):
    # A corrupt auto-tune cache is a warning from the C++ core; under -W error it is the
    # exception of the call that read the cache.
    (tmp_path / "autotune.json").write_text("{not json")
    code = ("import lightning_core as lc\n"
            "try:\n"
            "    lc.autotune_lookup('op', 's')\n"
            "except RuntimeWarning as e:\n"
            "    print('raised:', e)\n")
    r = _run(code, {"LIGHTNING_CORE_CACHE_DIR": str(tmp_path)}, "-W", "error::RuntimeWarning")
    assert r.returncode == 0, r.stderr
    assert "raised: lightning_core:" in r.stdout and "auto-tune cache" in r.stdout, r.stdout
    r = _run(code.replace("print('raised:', e)", "raise"), {"LIGHTNING_CORE_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0 and "raised" not in r.stdout  # a plain warning without -W error
    assert "RuntimeWarning" in r.stderr and "auto-tune cache" in r.stderr


def test_notes_go_to_the_lightning_core_logger(caplog, log_level):
    log_level("INFO")
    with caplog.at_level(INFO, logger="lightning_core"):
        _C._log(INFO, "matmul2d ran on the CPU")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("lightning_core", INFO, "matmul2d ran on the CPU")]


def test_notes_below_the_level_are_not_built(caplog, log_level):
    log_level(WARNING)
    with caplog.at_level(logging.DEBUG, logger="lightning_core"):
        _C._log(INFO, "dropped in C++")
    assert not caplog.records


def test_set_log_level_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown log level"):
        lc.set_log_level("LOUD")


def test_lc_log_level_from_the_environment():
    code = "import lightning_core as lc; lc._lightning_core._log(20, 'hello from C++')"
    r = _run(code, {"LC_LOG_LEVEL": "INFO"})
    assert r.returncode == 0, r.stderr
    assert "lightning_core: INFO: hello from C++" in r.stderr
    r = _run(code, {"LC_LOG_LEVEL": "WARNING"})
    assert "hello" not in r.stderr
    r = _run(code, {"LC_LOG_LEVEL": "chatty"})
    assert r.returncode == 0 and "LC_LOG_LEVEL" in r.stderr and "RuntimeWarning" in r.stderr


def test_execution_policy_repr_round_trips_with_lc_in_scope():
    for p in [lc.ExecutionPolicy(), lc.ExecutionPolicy(device="cpu", precision="tf32", fusion=False),
              lc.ExecutionPolicy(upload="never", download=False, sync="none", autotune=False)]:
        r = repr(p)
        assert r.startswith("lc.ExecutionPolicy(device=")
        assert eval(r, {"lc": lc}) == p
    assert repr(lc.policy(device="cpu")).startswith("lc.policy(lc.ExecutionPolicy(device='cpu'")


def test_no_gpu_reasons_are_a_few_words():
    r = lc.placement("matmul2d", (512, 512), (512, 512), gpu_available=False)
    assert r["reason"] == "auto: no CUDA device, so the CPU"
    if lc.cuda_available():
        pytest.skip("this machine has a GPU")
    a = np.ones((4, 4), np.float32)
    reason = lc.explain(lc.matmul2d, a, a)
    assert reason.startswith("auto: no CUDA device") and len(reason) < 80, reason
