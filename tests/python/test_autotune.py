"""The auto-tune cache: location, round trip, corruption, invalidation by key, LC_AUTOTUNE=0, and
the users of it (calibration, the CPU conv tuner, the CPU GEMM tuner, GEMM modes, the large-GEMM
sweep script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lightning_core as lc

_C = lc._lightning_core
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "lc-cache"
    monkeypatch.setenv("LIGHTNING_CORE_CACHE_DIR", str(d))
    monkeypatch.delenv("LC_AUTOTUNE", raising=False)
    _C._autotune_reload()
    yield d
    _C._autotune_reload()


def _read(path) -> dict:
    with open(path) as f:
        return json.load(f)


# ---- location ----------------------------------------------------------------------------------

def test_cache_location_env_order(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_CORE_CACHE_DIR", str(tmp_path / "a"))
    assert lc.autotune_cache_path() == str(tmp_path / "a" / "autotune.json")
    monkeypatch.delenv("LIGHTNING_CORE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lc.autotune_cache_path() == str(tmp_path / "xdg" / "lightning-core" / "autotune.json")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lc.autotune_cache_path() == str(tmp_path / "home" / ".cache" / "lightning-core" / "autotune.json")


# ---- round trip ----------------------------------------------------------------------------------

def test_round_trip_and_schema(cache_dir):
    assert lc.autotune_lookup("myop", "[4,4]") is None
    lc.autotune_record("myop", "[4,4]", "fast_path", us=12.5)
    path = Path(lc.autotune_cache_path())
    doc = _read(path)
    assert doc["format"] == "lightning-core-autotune" and doc["schema_version"] == 1
    assert doc["library_version"] == lc.__version__
    (key, entry), = doc["entries"].items()
    assert entry["choice"] == "fast_path" and entry["us"] == "12.5"
    for field in ("op", "shapes", "dtype", "device", "library_version"):
        assert field in entry
    assert entry["device"] == lc.device_fingerprint("cpu") and key.startswith("myop|[4,4]|float32|")
    # A fresh process view (reload) reads it back from the file.
    _C._autotune_reload()
    got = lc.autotune_lookup("myop", "[4,4]")
    assert got["choice"] == "fast_path"
    assert [e["key"] for e in lc.autotune_cache_entries()] == [key]
    # Atomic write: no temp files are left behind (the lock file stays; it is never removed).
    assert sorted(p.name for p in cache_dir.iterdir()) == ["autotune.json", "autotune.json.lock"]


def test_clear(cache_dir):
    lc.autotune_record("a", "s", "x")
    lc.autotune_record("b", "s", "y")
    assert len(lc.autotune_cache_entries()) == 2
    lc.autotune_cache_clear()
    assert lc.autotune_cache_entries() == []
    assert not Path(lc.autotune_cache_path()).exists()
    lc.autotune_cache_clear()  # clearing an absent cache is fine


def test_special_characters_survive(cache_dir):
    shapes = 'x="[1, 2]"\\t\n\u00e9'
    lc.autotune_record("op", shapes, "c\"hoice")
    _C._autotune_reload()
    assert lc.autotune_lookup("op", shapes)["choice"] == "c\"hoice"


# ---- several processes sharing one cache ----------------------------------------------------------

# Each writer process waits for the go file (so all six write at once), then records its entries
# one store at a time, each a read-merge-write of the whole file under the lock.
_WRITER = r"""
import os, sys, time
import lightning_core as lc
worker, n, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 60
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.001)
for i in range(n):
    lc.autotune_record(f"proc{worker}", f"[{i}]", f"c{worker}.{i}", iteration=i)
mine = [e for e in lc.autotune_cache_entries() if e["op"] == f"proc{worker}"]
print(len(mine))
"""


def test_concurrent_processes_keep_every_entry(cache_dir, tmp_path):
    """Six processes write 40 entries each into one LIGHTNING_CORE_CACHE_DIR at the same time:
    all 240 survive (before the file lock, each writer replaced the file with its own stale copy
    and 46-76 were left)."""
    procs, each = 6, 40
    # A prior entry (this process) must survive the others' writes, too.
    lc.autotune_record("parent", "s", "kept")
    go = tmp_path / "go"
    env = dict(os.environ, LIGHTNING_CORE_CACHE_DIR=str(cache_dir))
    env.pop("LC_AUTOTUNE", None)
    ps = [subprocess.Popen([sys.executable, "-c", _WRITER, str(w), str(each), str(go)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for w in range(procs)]
    go.touch()
    for p in ps:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "warning" not in err.lower(), err
        assert int(out.split()[-1]) == each  # a writer sees all of its own entries
    doc = _read(lc.autotune_cache_path())
    ops = [e["op"] for e in doc["entries"].values()]
    for w in range(procs):
        assert ops.count(f"proc{w}") == each, f"process {w}: {ops.count(f'proc{w}')} of {each}"
    assert ops.count("parent") == 1 and len(ops) == procs * each + 1
    _C._autotune_reload()
    assert lc.autotune_lookup("proc5", "[39]")["choice"] == "c5.39"
    assert lc.autotune_lookup("parent", "s")["choice"] == "kept"
    # No temp file is left behind; the lock file stays.
    assert sorted(p.name for p in cache_dir.iterdir()) == ["autotune.json", "autotune.json.lock"]


def test_store_merges_and_own_key_wins(cache_dir):
    """A store re-reads the file under the lock: entries another process wrote after this one
    loaded the file survive, its updates of other keys are kept, and this process's own key
    wins."""
    lc.autotune_record("mine", "s", "v1")
    lc.autotune_record("other", "s", "old")
    path = Path(lc.autotune_cache_path())
    doc = _read(path)
    # What another process would have done meanwhile: a new entry and an update.
    (k_other,) = [k for k, e in doc["entries"].items() if e["op"] == "other"]
    doc["entries"][k_other]["choice"] = "new"
    extra = dict(doc["entries"][k_other], op="theirs", choice="t")
    doc["entries"][k_other.replace("other|", "theirs|", 1)] = extra
    path.write_text(json.dumps(doc))
    lc.autotune_record("mine", "s", "v2")  # this process's in-memory copy still says "old"
    assert lc.autotune_lookup("mine", "s")["choice"] == "v2"
    assert lc.autotune_lookup("other", "s")["choice"] == "new"
    assert lc.autotune_lookup("theirs", "s")["choice"] == "t"
    _C._autotune_reload()
    assert {e["op"]: e["choice"] for e in lc.autotune_cache_entries()} == {
        "mine": "v2", "other": "new", "theirs": "t"}


def test_threads_storing_at_once_keep_every_entry(cache_dir):
    import threading

    def work(t):
        for i in range(25):
            lc.autotune_record(f"thread{t}", f"[{i}]", str(i))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    _C._autotune_reload()
    assert len(lc.autotune_cache_entries()) == 100


# ---- corruption and unwritable files ------------------------------------------------------------

@pytest.mark.parametrize("content", [
    "{not json", "", "[1, 2, 3]",
    json.dumps({"format": "lightning-core-autotune", "schema_version": 999, "entries": {}}),
    json.dumps({"format": "something-else", "schema_version": 1, "entries": {}}),
    json.dumps({"format": "lightning-core-autotune", "schema_version": 1, "entries": []}),
])
def test_corrupt_file_warns_and_is_rebuilt(cache_dir, content):
    cache_dir.mkdir(parents=True)
    Path(lc.autotune_cache_path()).write_text(content)
    with pytest.warns(RuntimeWarning, match="auto-tune cache"):
        assert lc.autotune_lookup("op", "s") is None
    lc.autotune_record("op", "s", "rebuilt")
    doc = _read(lc.autotune_cache_path())
    assert doc["schema_version"] == 1
    assert [e["choice"] for e in doc["entries"].values()] == ["rebuilt"]


def test_unwritable_location_warns_and_keeps_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LIGHTNING_CORE_CACHE_DIR", str(blocker / "sub"))
    _C._autotune_reload()
    with pytest.warns(RuntimeWarning, match="cannot"):
        lc.autotune_record("op", "s", "kept")
    assert lc.autotune_lookup("op", "s")["choice"] == "kept"  # in memory for this process
    _C._autotune_reload()


# ---- invalidation by key -----------------------------------------------------------------------

def test_other_library_version_is_dropped(cache_dir):
    lc.autotune_record("op", "s", "old")
    path = lc.autotune_cache_path()
    doc = _read(path)
    for e in doc["entries"].values():
        e["library_version"] = "0.0.1"
    Path(path).write_text(json.dumps(doc))
    _C._autotune_reload()
    assert lc.autotune_lookup("op", "s") is None
    assert lc.autotune_cache_entries() == []


def test_other_device_fingerprint_misses(cache_dir):
    lc.autotune_record("op", "s", "mine")
    path = lc.autotune_cache_path()
    doc = _read(path)
    # The same entry measured on another machine: its key names another fingerprint.
    key, entry = next(iter(doc["entries"].items()))
    fp = lc.device_fingerprint("cpu")
    other = key.replace(fp, "cpu:Some Other CPU;threads=3;gemm=x;isa=0")
    doc["entries"] = {other: dict(entry, device="cpu:Some Other CPU;threads=3;gemm=x;isa=0")}
    Path(path).write_text(json.dumps(doc))
    _C._autotune_reload()
    assert lc.autotune_lookup("op", "s") is None
    assert len(lc.autotune_cache_entries()) == 1  # kept in the file, just not ours
    # Other keys: dtype, shapes and the device kind are part of the key too.
    lc.autotune_record("op", "s", "mine")
    assert lc.autotune_lookup("op", "s", dtype="float64") is None
    assert lc.autotune_lookup("op", "t") is None
    assert lc.autotune_lookup("op", "s", device="cuda") is None


def test_fingerprints_describe_the_device():
    cpu = lc.device_fingerprint("cpu")
    assert cpu.startswith("cpu:") and "threads=" in cpu and "gemm=" in cpu
    cuda = lc.device_fingerprint("cuda")
    if lc.cuda_available():
        for part in ("cc=", "sms=", "driver=", "runtime=", "cublasLt="):
            assert part in cuda
    else:
        assert cuda.startswith("cuda:unavailable")
    with pytest.raises(ValueError):
        lc.device_fingerprint("tpu")


# ---- LC_AUTOTUNE=0 -----------------------------------------------------------------------------

def test_disabled_by_env(cache_dir, monkeypatch):
    monkeypatch.setenv("LC_AUTOTUNE", "0")
    assert not lc.autotune_enabled()
    lc.autotune_record("op", "s", "x")
    assert lc.autotune_lookup("op", "s") is None
    assert not Path(lc.autotune_cache_path()).exists()
    # The CPU conv tuner does not measure either.
    before = lc.autotune_measurement_count()
    x = np.ones((1, 2, 8, 8), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    lc.conv_attention_nchw(x, w, None, 8, 16, 1, 1, 1, 1, "cpu")
    assert lc.autotune_measurement_count() == before


# ---- users: CPU conv tuner, calibration, GEMM modes ---------------------------------------------

def _conv_entries():
    return [e for e in lc.autotune_cache_entries() if e["op"] == "conv2d_nchw.cpu_path"]


def test_cpu_conv_path_is_tuned_once_and_persisted(cache_dir):
    x = np.random.default_rng(0).standard_normal((1, 4, 12, 12)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((6, 4, 3, 3)).astype(np.float32)
    before = lc.autotune_measurement_count()
    r1 = lc.conv_attention_nchw(x, w, None, 36, 24, 1, 1, 1, 1, "cpu")
    assert lc.autotune_measurement_count() == before + 1
    (entry,) = _conv_entries()
    assert entry["choice"] in ("direct", "im2col")
    assert float(entry["direct_us"]) > 0 and float(entry["im2col_us"]) > 0
    r2 = lc.conv_attention_nchw(x, w, None, 36, 24, 1, 1, 1, 1, "cpu")
    assert lc.autotune_measurement_count() == before + 1  # cache hit
    np.testing.assert_allclose(r1, r2, rtol=1e-5, atol=1e-5)
    # Policy autotune=False: no tuning for a new shape.
    x2 = np.ones((1, 4, 10, 10), np.float32)
    lc.conv_attention_nchw(x2, w, None, 25, 24, 1, 1, 1, 1, policy=lc.ExecutionPolicy(device="cpu", autotune=False))
    assert len(_conv_entries()) == 1


def _gemm_entries():
    return [e for e in lc.autotune_cache_entries() if e["op"] == "cpu_gemm"]


def _threads():
    fp = lc.device_fingerprint("cpu")
    return int(fp.split("threads=")[1].split(";")[0])


needs_gemm_tuning = pytest.mark.skipif(
    not (_C._cpu_gemm_tunable(1100, 1024, 1024) and _C._cpu_gemm_tunable(768, 1100, 1536)),
    reason="CPU GEMM is not tuned in this build / machine (no BLAS, a single thread, or >= 4 threads: pooled)")


@needs_gemm_tuning
def test_cpu_gemm_choice_is_tuned_once_and_persisted(cache_dir, rng):
    # [768, 1100] x [1100, 1536]: wider than tall; 1.3G multiply-adds (2^30.3), inside the
    # tuner's window (2^29, 2^31] on 2-3 threads (below it pooled is the rule there).
    a = rng.standard_normal((768, 1100)).astype(np.float32)
    b = rng.standard_normal((1100, 1536)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    before = lc.autotune_measurement_count()
    r1 = lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 1
    (entry,) = _gemm_entries()
    assert entry["shapes"] == f"768x1100x1536 trans_b=0 threads={_threads()}"
    assert entry["choice"] in ("blas", "pooled")
    assert float(entry["blas_us"]) > 0 and float(entry["pooled_us"]) > 0
    assert entry["device"] == lc.device_fingerprint("cpu")
    # In-process memo, then the file after a reload: no new measurement.
    r2 = lc.matmul2d(a, b, "cpu")
    _C._autotune_reload()
    r3 = lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 1
    for r in (r1, r2, r3):
        assert np.linalg.norm(r - ref) / np.linalg.norm(ref) <= 1e-5
    # A recorded choice is what runs (both paths give the reference result), no measurement.
    for choice in ("pooled", "blas"):
        lc.autotune_record("cpu_gemm", entry["shapes"], choice)
        out = np.full((768, 1536), np.nan, np.float32)
        lc.matmul2d_into(a, b, out, "cpu")
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-5
    assert lc.autotune_measurement_count() == before + 1
    # linear (trans_b) has its own entry; a new shape with policy autotune=False has none.
    w = rng.standard_normal((1536, 1100)).astype(np.float32)
    bias = rng.standard_normal(1536).astype(np.float32)
    lc.linear(a, w, bias, "relu", "cpu")
    assert lc.autotune_measurement_count() == before + 2
    assert sorted(e["shapes"].split()[1] for e in _gemm_entries()) == ["trans_b=0", "trans_b=1"]
    lref = np.maximum(a.astype(np.float64) @ w.T.astype(np.float64) + bias, 0)
    for choice in ("pooled", "blas"):
        lc.autotune_record("cpu_gemm", f"768x1100x1536 trans_b=1 threads={_threads()}", choice)
        y = lc.linear(a, w, bias, "relu", "cpu")
        assert np.linalg.norm(y - lref) / np.linalg.norm(lref) <= 1e-5
    assert lc.autotune_measurement_count() == before + 2
    a2 = rng.standard_normal((770, 1100)).astype(np.float32)
    lc.matmul2d(a2, b, policy=lc.ExecutionPolicy(device="cpu", autotune=False))
    assert len(_gemm_entries()) == 2
    # Tiny shapes are never tuned (nor looked up).
    lc.matmul2d(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32), "cpu")
    assert lc.autotune_measurement_count() == before + 2 and len(_gemm_entries()) == 2


@needs_gemm_tuning
def test_cpu_gemm_choice_invalidated(cache_dir, rng):
    a = rng.standard_normal((1100, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    before = lc.autotune_measurement_count()
    lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 1
    path = lc.autotune_cache_path()
    # Another library version: dropped on reload, measured again.
    doc = _read(path)
    for e in doc["entries"].values():
        e["library_version"] = "0.0.1"
    Path(path).write_text(json.dumps(doc))
    _C._autotune_reload()
    lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 2
    # Another machine (fingerprint, which includes the thread count): not ours, measured again.
    doc = _read(path)
    fp = lc.device_fingerprint("cpu")
    other = "cpu:Some Other CPU;threads=3;gemm=OpenBLAS;isa=3"
    doc["entries"] = {k.replace(fp, other): dict(e, device=other) for k, e in doc["entries"].items()}
    Path(path).write_text(json.dumps(doc))
    _C._autotune_reload()
    lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 3
    assert len(_gemm_entries()) == 2  # the other machine's entry stays in the file
    # An unknown choice: measured again and replaced. clear(): measured again.
    lc.autotune_record("cpu_gemm", f"1100x1024x1024 trans_b=0 threads={_threads()}", "bogus")
    lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 4
    assert {e["choice"] for e in _gemm_entries() if e["device"] == fp} <= {"blas", "pooled"}
    lc.autotune_cache_clear()
    lc.matmul2d(a, b, "cpu")
    assert lc.autotune_measurement_count() == before + 5


def test_cpu_gemm_not_tuned_when_disabled(cache_dir, monkeypatch):
    monkeypatch.setenv("LC_AUTOTUNE", "0")
    before = lc.autotune_measurement_count()
    a = np.ones((160, 150), np.float32)
    b = np.ones((150, 140), np.float32)
    np.testing.assert_allclose(lc.matmul2d(a, b, "cpu"), np.full((160, 140), 150.0), rtol=1e-6)
    assert lc.autotune_measurement_count() == before
    assert not Path(lc.autotune_cache_path()).exists()
    assert not _C._cpu_gemm_tunable(8, 8, 8)


def test_calibration_is_measured_then_cached(cache_dir):
    before = lc.autotune_measurement_count()
    m = lc.calibrate(force=True)
    assert lc.autotune_measurement_count() == before + 1
    assert m["calibrated"] and all(v > 0 for v in m["cpu_gflops"].values())
    assert m["cpu_overhead_us"] > 0
    (entry,) = [e for e in lc.autotune_cache_entries() if e["op"] == "calibration"]
    assert float(entry["cpu_gflops_matmul"]) == pytest.approx(m["cpu_gflops"]["matmul"], rel=1e-6)
    m2 = lc.calibrate()
    assert lc.autotune_measurement_count() == before + 1  # served from the cache
    assert m2["cpu_gflops"] == pytest.approx(m["cpu_gflops"], rel=1e-6)
    lc.reset_cost_model()


def test_env_knobs_override_calibration(cache_dir, monkeypatch):
    monkeypatch.setenv("LC_CPU_GFLOPS_MATMUL", "4321")
    monkeypatch.setenv("CJ_CONV2D_CPU_CROSSOVER_MACS", "12345")
    lc.calibrate(force=True)
    m = lc.cost_model()
    assert m["cpu_gflops"]["matmul"] == 4321 and m["conv_cpu_crossover_macs"] == 12345
    assert m["calibrated"]
    monkeypatch.delenv("LC_CPU_GFLOPS_MATMUL")
    monkeypatch.delenv("CJ_CONV2D_CPU_CROSSOVER_MACS")
    lc.reset_cost_model()


def test_fixed_model_is_not_replaced_by_calibration(cache_dir):
    lc.set_cost_model(dict(gpu_launch_us=99.0))
    lc.calibrate(force=True)
    assert lc.cost_model()["gpu_launch_us"] == 99.0
    lc.reset_cost_model()


def test_gemm_modes_listed_and_validated():
    assert lc.gemm_modes() == ["heuristic", "autotuned", "tf32_fast"]
    assert lc.gemm_mode_precision("tf32_fast") == "tf32"
    assert lc.gemm_mode_precision("autotuned") == "fp32"
    with pytest.raises(ValueError):
        lc.gemm_mode_precision("aggressive_mps_no_bucket")


@pytest.mark.skipif(lc.cuda_available(), reason="checks the no-GPU error")
def test_gemm_prepare_without_gpu_raises():
    with pytest.raises(ValueError, match="CUDA"):
        lc.gemm_prepare(256, 256, 256, "autotuned")


def test_recorded_gemm_mode_round_trip(cache_dir):
    assert lc.gemm_recorded_mode(1024, 1024, 1024) is None
    lc.autotune_record("large_gemm_mode.fp32", "1024x1024x1024", "autotuned", device="cuda")
    assert lc.gemm_recorded_mode(1024, 1024, 1024, "fp32") == "autotuned"
    assert lc.gemm_recorded_mode(1024, 1024, 1024, "tf32") is None


def test_sweep_script_without_gpu_exits_zero(tmp_path):
    if lc.cuda_available():
        pytest.skip("runs the real sweep on a GPU machine (see test below)")
    env = dict(os.environ, LIGHTNING_CORE_CACHE_DIR=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/python/large_gemm_auto_sweep.py"),
                        "--out-dir", str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "CUDA" in r.stdout and "skipped" in r.stdout


@pytest.mark.gpu
def test_gpu_gemm_autotuned_is_cached(cache_dir):
    first = lc.gemm_prepare(1024, 512, 768, "autotuned")
    assert first["candidates"] >= 1 and not first["from_cache"] and first["best_us"] > 0
    second = lc.gemm_prepare(1024, 512, 768, "autotuned")
    assert second["from_cache"] and second["algo_index"] == first["algo_index"]
    h = lc.gemm_prepare(1024, 512, 768, "heuristic")
    assert h["algo_index"] == 0
    a = np.ones((1024, 512), np.float32)
    b = np.ones((512, 768), np.float32)
    np.testing.assert_allclose(lc.matmul2d(a, b, "cuda"), a @ b, rtol=1e-4)


@pytest.mark.gpu
def test_gpu_calibration_measures_gpu(cache_dir):
    m = lc.calibrate(force=True)
    assert m["gpu_launch_us"] > 0 and m["h2d_gbps"] > 0 and m["d2h_gbps"] > 0
    lc.reset_cost_model()


@pytest.mark.gpu
def test_gpu_sweep_script_small(tmp_path):
    env = dict(os.environ, LIGHTNING_CORE_CACHE_DIR=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/python/large_gemm_auto_sweep.py"),
                        "--shapes", "512x512x512", "--iters", "3", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "large_gemm_auto_sweep.json").read_text())
    assert doc["results"] and doc["winners"]
