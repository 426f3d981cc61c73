"""The typed API: py.typed, the generated stub of the native module (python/gen_stubs.py) and a
type checker (mypy) on a small typed user script."""

from __future__ import annotations

import ast
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lightning_core as lc

PKG = Path(lc.__file__).resolve().parent
STUB = PKG / "_lightning_core.pyi"
ROOT = Path(__file__).resolve().parents[2]
SANITIZED = os.environ.get("LC_SANITIZED") == "1"


def _stub_tree() -> ast.Module:
    if not STUB.exists():
        if SANITIZED:
            pytest.skip("the sanitized build ships no stub (generating it imports the module)")
        pytest.fail(f"no {STUB}: the build did not generate the stub")
    return ast.parse(STUB.read_text())


def _public_native_names() -> set[str]:
    return {n for n in dir(lc._lightning_core) if not n.startswith("_")}


def test_py_typed_marker_is_installed():
    assert (PKG / "py.typed").exists()


def test_stub_names_every_public_native_name():
    tree = _stub_tree()
    declared = set()
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            declared.add(n.name)
        elif isinstance(n, ast.Assign):
            declared.update(t.id for t in n.targets if isinstance(t, ast.Name))
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            declared.add(n.target.id)
    missing = _public_native_names() - declared
    assert not missing, f"names of lightning_core._lightning_core missing from the stub: {sorted(missing)}"


def test_stub_has_no_object_typed_public_parameters():
    """Every public function's parameters and result have real types (gen_stubs.py's overlay)."""
    tree = _stub_tree()
    bad = []

    def visit(fns, prefix):
        for fn in fns:
            if not isinstance(fn, ast.FunctionDef):
                continue
            name = fn.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                continue
            for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs:
                ann = ast.unparse(a.annotation) if a.annotation else None
                if ann in ("object", "object | None") and not (name == "__eq__" and a.arg == "other"):
                    bad.append(f"{prefix}{name}({a.arg}: {ann})")
            if fn.returns is not None and ast.unparse(fn.returns) == "object":
                bad.append(f"{prefix}{name} -> object")

    visit(tree.body, "")
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        visit(cls.body, cls.name + ".")
    assert not bad, ("untyped in the stub (add the parameter name to ARRAY_PARAMS / "
                     f"SCALAR_PARAMS / SPECIFIC in python/gen_stubs.py): {bad}")


def test_stub_is_current(tmp_path):
    """Regenerating the stub from the imported module gives the installed file."""
    gen = ROOT / "python" / "gen_stubs.py"
    if not gen.exists():
        pytest.skip("not run from a source checkout")
    pytest.importorskip("nanobind")
    _stub_tree()
    out = tmp_path / "_lightning_core.pyi"
    subprocess.run([sys.executable, str(gen), "-i", str(PKG.parent), "-o", str(out)], check=True)
    assert out.read_text() == STUB.read_text()


TYPED_EXAMPLE = '''
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

import lightning_core as lc

a: npt.NDArray[np.float32] = np.ones((3, 4), np.float32)
b: npt.NDArray[np.float32] = np.ones((4, 5), np.float32)
h: npt.NDArray[np.float16] = np.ones((3, 4), np.float16)
assert_type(lc.matmul2d(a, b), npt.NDArray[np.float32])
assert_type(lc.add(h, h), npt.NDArray[np.float16])
assert_type(lc.add([1.0, 2.0], 3.0), npt.NDArray[Any])
t = lc.Tensor(a, device="cpu")
assert_type(lc.matmul2d(t, b), lc.Tensor)
assert_type(lc.matmul2d(a, t), lc.Tensor)
assert_type(lc.linear(a, b.T, None, "relu", device="cpu"), npt.NDArray[np.float32])
assert_type(lc.embedding(np.array([0, 1]), b), npt.NDArray[np.float32])
out: npt.NDArray[np.float32] = np.empty((3, 5), np.float32)
assert_type(lc.matmul2d_into(a, b, out), npt.NDArray[np.float32])
p = lc.ExecutionPolicy(device="cpu", sync="per_call")
assert_type(lc.softmax(a, policy=p), npt.NDArray[np.float32])
with lc.policy(device="cpu"):
    pass
with lc.matmul2d_resident_session(a, b, device="cpu") as s:
    assert_type(s, lc.Matmul2dResidentSession)
    assert_type(s.run_into(a, b, out), npt.NDArray[np.float32])
assert_type(lc.__version__, str)
assert_type(lc.explain(lc.matmul2d, a, b), str)
assert_type(t.numpy(), npt.NDArray[Any])
assert_type(t.shape, tuple[int, ...])
assert_type(lc.from_dlpack(a), lc.Tensor)
q4: npt.NDArray[np.float32] = np.ones((1, 2, 3, 4), np.float32)
assert_type(lc.attention(q4, q4, q4, causal=True), npt.NDArray[np.float32])
o, lse = lc.attention(q4, q4, q4, return_lse=True)
'''

TYPED_MISTAKES = '''
import numpy as np
import lightning_core as lc

a = np.ones((3, 4), np.float32)
lc.matmul2d(a, a, device=0)
lc.layernorm(a, eps="small")
lc.ExecutionPolicy(download="yes")
lc.matmul2d(a)
'''


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy")
    _stub_tree()
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    # mypy reads installed packages itself; a build tree on PYTHONPATH goes to MYPYPATH.
    sites = {str(Path(p).resolve()) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if str(PKG.parent) not in sites:
        env["MYPYPATH"] = str(PKG.parent)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
         "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", str(script)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_mypy_accepts_a_typed_user_script(tmp_path):
    r = _mypy(tmp_path, TYPED_EXAMPLE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_rejects_wrong_argument_types(tmp_path):
    r = _mypy(tmp_path, TYPED_MISTAKES)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "error:" in ln]
    # one error per bad line (lines 6-9 of the script), none elsewhere
    assert sorted({int(ln.split(":")[1]) for ln in lines}) == [6, 7, 8, 9], r.stdout
