"""pytest entry of the fuzz suite: runs runner.run() (worker subprocesses) and fails on any crash
or finding, printing the summary line and every finding with its reproducing call.

    PYTHONPATH=<built package> python3 -m pytest tests/python/fuzz -q            # CI budget
    LC_FUZZ_EXAMPLES=20000 python3 -m pytest tests/python/fuzz -q                # the big run
    LC_FUZZ_REPORT=fuzz.json ...                                                 # + JSON summary
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import runner  # noqa: E402

import lightning_core as lc  # noqa: E402


def _check(summary, capsys):
    with capsys.disabled():
        print("\n" + runner.format_summary(summary, details=False))
    assert summary["tried"] > 0
    if summary["crashes"] or summary["findings"]:
        pytest.fail(runner.format_summary(summary), pytrace=False)


def test_fuzz_cpu(capsys):
    _check(runner.run(gpu=False, verbose=False), capsys)


@pytest.mark.gpu
@pytest.mark.skipif(not lc.cuda_available(), reason="no usable CUDA device")
def test_fuzz_gpu(capsys):
    _check(runner.run(gpu=True, verbose=False), capsys)
