"""The backend seam holds (issue #12, item 5): what is backend-specific (graph capture, tuning,
fingerprints, whether CUDA was compiled) lives in src/backends/<name>/ behind lc::Backend, so the
core, the ops, the pipelines, the public headers and the bindings neither include a backend's own
headers nor test LC_HAVE_CUDA. (src/backends/backend.h, the seam itself, may be included.)"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ABOVE_THE_SEAM = ["src/core", "src/runtime", "src/ops", "src/graph", "src/pipelines", "python/src", "include/lightning_core"]
BACKEND_INCLUDE = re.compile(r'#\s*include\s+"backends/(?!backend\.h")[^"]+"')
BUILD_FLAG = re.compile(r"\bLC_HAVE_(CUDA|CUDNN)\b")


def sources():
    for d in ABOVE_THE_SEAM:
        base = ROOT / d
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.suffix in {".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh", ".inc"}:
                yield p


def test_the_tree_is_there():
    files = list(sources())
    if not files:
        pytest.skip("sources not found next to the tests (an installed test copy)")
    assert any(p.name == "session.cpp" for p in files)


@pytest.mark.parametrize("pattern, what", [(BACKEND_INCLUDE, "includes a backend's own header"),
                                           (BUILD_FLAG, "tests a backend build flag")])
def test_nothing_above_the_seam_reaches_into_a_backend(pattern, what):
    bad = []
    for p in sources():
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, (f"{len(bad)} line(s) above the backend seam {what}; go through lc::Backend "
                     "(src/backends/backend.h) instead:\n" + "\n".join(bad))
