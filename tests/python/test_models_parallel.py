"""Several devices for one model (issue #17): data-parallel encode (devices=[...], one thread
per device; distributed=True across ranks) and the Megatron-style TensorParallelEncoder.

CPU (CI): devices=["cpu", "cpu"] gives devices=None's embeddings; the world-size-1
distributed path; the sharding arithmetic of larger worlds with the gather faked; tensor
parallel with 2 and 3 "cpu" shards against the unsplit model and the float64 reference, and
all-MiniLM-L6-v2 against sentence-transformers' fixture (cosine >= 0.99999). GPU tests (gpu
marker) skip without a GPU; the two-GPU ones below two GPUs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lightning_core as lc
from lightning_core import distributed as dist

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")

from lightning_core.models import SentenceEncoder, TensorParallelEncoder, TransformerEncoder  # noqa: E402
from lightning_core.models import _sentence  # noqa: E402
from test_models import (  # noqa: E402
    FIXTURE, MINILM, cosines, needs_minilm, ragged_batch, random_sentences, random_weights,
    ref_embed, ref_hidden, rel_err, small_config, write_model_dir)

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def n_gpus() -> int:
    return lc.device_count("cuda") if lc.cuda_available() else 0


@pytest.fixture
def small(rng, tmp_path):
    cfg = small_config()
    W = random_weights(cfg, rng)
    return cfg, W, SentenceEncoder.from_pretrained(write_model_dir(tmp_path / "m", cfg, W))


@pytest.fixture(scope="module")
def minilm():
    return SentenceEncoder.from_pretrained(MINILM)


@pytest.fixture
def clean_env(monkeypatch):
    for v in TORCHRUN_VARS:
        monkeypatch.delenv(v, raising=False)
    dist.destroy()
    yield monkeypatch
    dist.destroy()


# ---- data parallel, one process ------------------------------------------------------------

@pytest.mark.parametrize("devices", [["cpu", "cpu"], ["cpu", "cpu", "cpu"], ["cpu"]])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_data_parallel_cpu_gives_the_single_device_embeddings(small, rng, devices, batch_size):
    cfg, W, model = small
    sents = random_sentences(rng, 13) + ["", "cat"]
    want = model.encode(sents, batch_size=batch_size, device="cpu")
    got = model.encode(sents, batch_size=batch_size, devices=devices)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    ids, mask, types = model.tokenize(sents)
    assert rel_err(got, ref_embed(cfg, W, ids, mask, types)) <= 2e-5
    n_batches = -(-len(sents) // batch_size)
    assert sum(model.last_device_batches.values()) == n_batches
    assert set(model.last_device_batches) <= {"cpu"}
    assert model.last_placement.source == "data-parallel"
    # one replica per distinct device, shared by the repeated entries
    assert [k for k in model._encoders if k[0] == "cpu"] == [("cpu", "float32")]


def test_data_parallel_other_dtypes_single_str_empty_and_modes(small, rng):
    cfg, W, model = small
    sents = random_sentences(rng, 9)
    for dt in ("bfloat16", "float16"):
        want = model.encode(sents, batch_size=2, device="cpu", dtype=dt)
        got = model.encode(sents, batch_size=2, devices=["cpu", "cpu"], dtype=dt)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # graph mode on the CPU: the shared replica's calls are serialised (one output buffer)
    want = model.encode(sents, batch_size=2, device="cpu", execution_mode="graph")
    got = model.encode(sents, batch_size=2, devices=["cpu", "cpu"], execution_mode="graph")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    one = model.encode("the cat sat", devices=["cpu", "cpu"])
    assert one.shape == (32,)
    np.testing.assert_allclose(one, model.encode("the cat sat", device="cpu"), rtol=1e-6)
    assert model.encode([], devices=["cpu", "cpu"]).shape == (0, 32)
    raw = model.encode(sents, devices=["cpu", "cpu"], normalize=False)
    ids, mask, types = model.tokenize(sents)
    assert rel_err(raw, ref_embed(cfg, W, ids, mask, types, normalize=False)) <= 2e-5


def test_data_parallel_bad_devices(small):
    _, _, model = small
    with pytest.raises(TypeError, match="devices must be a list"):
        model.encode(["a"], devices="cpu")
    with pytest.raises(ValueError, match="devices is empty"):
        model.encode(["a"], devices=[])
    with pytest.raises(ValueError, match="\"auto\" cannot be one of several devices"):
        model.encode(["a"], devices=["auto", "cpu"])
    with pytest.raises(ValueError, match="'tpu'"):
        model.encode(["a"], devices=["tpu"])
    with pytest.raises(TypeError, match="got int"):
        model.encode(["a"], devices=[0])
    with pytest.raises(ValueError, match="not both"):
        model.encode(["a"], device="cpu", devices=["cpu"])
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        model.encode(["a", 3], devices=["cpu", "cpu"])
    if n_gpus() == 0:
        with pytest.raises(ValueError, match="needs a GPU"):
            model.encode(["a"], devices=["cpu", "cuda:0"])
    else:
        with pytest.raises(ValueError, match=f"cuda:{n_gpus()} does not exist"):
            model.encode(["a"], devices=[f"cuda:{n_gpus()}"])


def test_data_parallel_worker_error_reaches_the_caller(small, rng, monkeypatch):
    _, _, model = small
    enc = model.encoder("cpu", "float32")
    calls = []
    real = enc.forward

    def forward(ids, *a, **k):
        calls.append(ids.shape)
        if len(calls) == 3:
            raise RuntimeError("boom in a worker")
        return real(ids, *a, **k)

    monkeypatch.setattr(enc, "forward", forward)
    with pytest.raises(RuntimeError, match="boom in a worker"):
        model.encode(random_sentences(rng, 20), batch_size=2, devices=["cpu", "cpu"])
    assert len(calls) < 10 + 2     # the others stopped taking batches


# ---- data parallel, several processes ------------------------------------------------------

def test_distributed_needs_an_initialised_group(small, clean_env):
    _, _, model = small
    with pytest.raises(ValueError, match="lc.distributed.init"):
        model.encode(["a"], distributed=True)


def test_distributed_world_size_1(small, rng, clean_env):
    _, _, model = small
    dist.init(rank=0, world_size=1, timeout=5)
    sents = random_sentences(rng, 11)
    want = model.encode(sents, batch_size=4, device="cpu")
    got = model.encode(sents, batch_size=4, device="cpu", distributed=True)
    np.testing.assert_array_equal(got, want)
    got2 = model.encode(sents, batch_size=4, devices=["cpu", "cpu"], distributed=True)
    np.testing.assert_allclose(got2, want, rtol=1e-6, atol=1e-7)
    assert model.encode([], distributed=True).shape == (0, 32)
    one = model.encode("the cat", device="cpu", distributed=True)
    np.testing.assert_array_equal(one, model.encode("the cat", device="cpu"))


@pytest.mark.parametrize("world, n", [(3, 11), (4, 2), (2, 8)])
def test_distributed_shards_by_rank_and_gathers_in_order(small, rng, clean_env, world, n):
    """Each rank encodes rows [r*ceil(n/w), (r+1)*ceil(n/w)); the gather stacks the padded
    shards in rank order and keeps the first n rows. The collective is faked (CPU tensors need
    world size 1); every rank's shard is computed for real."""
    _, _, model = small
    sents = random_sentences(rng, n)
    want = model.encode(sents, batch_size=3, device="cpu")
    per = -(-n // world)
    shards = {}

    def fake_gather(buf, st):
        shards[st.cfg.rank] = buf.copy()
        assert buf.shape == (per, 32)
        return np.concatenate([shards.get(r, np.zeros_like(buf)) for r in range(world)])

    clean_env.setattr(_sentence, "_all_gather_rows", fake_gather)
    for rank in range(world):
        st = dist._State("process", dist.Config(rank, world, rank, None, None), None, 5.0, False)
        clean_env.setattr(dist, "_state", st)
        got = model.encode(sents, batch_size=3, device="cpu", distributed=True)
        assert got.shape == (n, 32)
        lo, hi = rank * per, min((rank + 1) * per, n)
        # float32 tolerance: a shard's batches pad to other lengths than the whole run's, and
        # the CPU encoder attention's vector tails follow the padded length (~5e-6 seen)
        np.testing.assert_allclose(got[lo:hi], want[lo:hi], rtol=1e-5, atol=1e-6)
        assert not shards[rank][max(hi - lo, 0):].any()       # the padding rows are zero
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # the last rank saw every shard


def test_distributed_refuses_single_process_mode(small, clean_env):
    _, _, model = small
    clean_env.setattr(dist, "_state", dist._State("single", dist.Config(0, 2, 0, None, None),
                                                  None, 5.0, False))
    with pytest.raises(ValueError, match="devices="):
        model.encode(["a"], distributed=True)


# ---- tensor parallel -----------------------------------------------------------------------

@pytest.mark.parametrize("heads, shards", [(4, 2), (6, 3), (6, 2), (4, 3), (4, 4), (4, 1)])
@pytest.mark.parametrize("act", ["gelu", "relu", "gelu_new"])
def test_tensor_parallel_cpu_shards_match_the_unsplit_model(rng, heads, shards, act):
    cfg = small_config(hidden_size=heads * 6, num_attention_heads=heads, intermediate_size=37,
                       hidden_act=act)
    W = random_weights(cfg, rng)
    full = TransformerEncoder(cfg, W, device="cpu")
    tp = TensorParallelEncoder(full, ["cpu"] * shards)
    assert [b - a for a, b in tp.head_split] == [len(x) for x in np.array_split(range(heads), shards)]
    ids, mask = ragged_batch(rng, cfg, [7, 1, 5])
    types = rng.integers(0, 2, size=ids.shape)
    for m, t in ((mask, None), (None, None), (mask, types)):
        want = full.forward(ids, m, t, execution_mode="eager").numpy()
        got = tp.forward(ids, m, t).numpy()
        assert got.shape == want.shape
        keep = np.ones(ids.shape, bool) if m is None else m != 0
        if act == "gelu":   # the float64 reference knows the exact GELU only
            ref = ref_hidden(cfg, W, ids, m, t)
            assert rel_err(got[keep], ref[keep]) <= 2e-5
        assert rel_err(got[keep], want[keep].astype(np.float64)) <= 2e-5
    pooled = tp.mean_pool(tp.forward(ids, mask), mask)
    np.testing.assert_allclose(pooled, full.mean_pool(full.forward(ids, mask), mask),
                               rtol=2e-5, atol=2e-6)
    assert tp.forward(ids[:0], mask[:0]).shape == (0, ids.shape[1], cfg["hidden_size"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_tensor_parallel_half_dtypes(rng, dtype):
    cfg = small_config()
    W = random_weights(cfg, rng)
    tp = TensorParallelEncoder(TransformerEncoder(cfg, W, device="cpu", dtype=dtype), ["cpu"] * 2)
    assert tp.dtype == dtype
    ids, mask = ragged_batch(rng, cfg, [6, 3])
    got = np.asarray(tp.forward(ids, mask).numpy(), np.float64)
    ref = ref_hidden(cfg, W, ids, mask)
    assert rel_err(got[mask != 0], ref[mask != 0]) <= {"bfloat16": 3e-2, "float16": 5e-3}[dtype]


def test_tensor_parallel_sentence_encoder(small, rng):
    cfg, W, model = small
    sents = random_sentences(rng, 10) + [""]
    tp = TensorParallelEncoder(model, ["cpu", "cpu", "cpu"])
    got = tp.encode(sents, batch_size=4)
    ids, mask, types = model.tokenize(sents)
    assert rel_err(got, ref_embed(cfg, W, ids, mask, types)) <= 2e-5
    np.testing.assert_allclose(got, model.encode(sents, device="cpu"), rtol=2e-5, atol=2e-6)
    assert tp.encode("cat").shape == (32,)
    assert "3 shards" in repr(tp)


def test_tensor_parallel_bad_arguments(small, rng):
    cfg, W, model = small
    full = model.encoder("cpu")
    with pytest.raises(TypeError, match="SentenceEncoder or a TransformerEncoder"):
        TensorParallelEncoder(W, ["cpu"])
    with pytest.raises(TypeError, match="list of devices"):
        TensorParallelEncoder(full, "cpu")
    with pytest.raises(ValueError, match="empty"):
        TensorParallelEncoder(full, [])
    with pytest.raises(ValueError, match="5 shards but the model has 4 heads"):
        TensorParallelEncoder(full, ["cpu"] * 5)
    with pytest.raises(ValueError, match="dtype"):
        TensorParallelEncoder(full, ["cpu"], dtype="int32")
    tp = TensorParallelEncoder(full, ["cpu", "cpu"])
    with pytest.raises(ValueError, match="no tokenizer"):
        tp.encode(["a"])
    with pytest.raises(ValueError, match=r"\[batch, seq\]"):
        tp.forward(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="integer"):
        tp.forward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="outside"):
        tp.forward(np.full((1, 3), 10**6))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        tp.forward(np.ones((1, 3), np.int64), np.ones((1, 4), np.int64))
    with pytest.raises(ValueError, match="exceeds"):
        tp.forward(np.ones((1, cfg["max_position_embeddings"] + 1), np.int64))
    if n_gpus():
        with pytest.raises(ValueError, match="mix the CPU and GPUs"):
            TensorParallelEncoder(full, ["cpu", "cuda:0"])
    else:
        with pytest.raises(ValueError, match="needs a GPU"):
            TensorParallelEncoder(full, ["cpu", "cuda:0"])


@needs_minilm
@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"no fixture {FIXTURE}")
@pytest.mark.parametrize("shards", [2, 3])
def test_tensor_parallel_minilm_matches_the_fixture(minilm, shards):
    fx = np.load(FIXTURE)
    sents = [str(s) for s in fx["sentences"]]
    tp = TensorParallelEncoder(minilm, ["cpu"] * shards)
    assert [b - a for a, b in tp.head_split] == [12 // shards] * shards
    got = tp.encode(sents, batch_size=8)
    assert cosines(got, fx["embeddings"]).min() >= 0.99999


@needs_minilm
@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"no fixture {FIXTURE}")
def test_data_parallel_minilm_matches_the_fixture(minilm):
    fx = np.load(FIXTURE)
    sents = [str(s) for s in fx["sentences"]]
    got = minilm.encode(sents, batch_size=4, devices=["cpu", "cpu"])
    assert cosines(got, fx["embeddings"]).min() >= 0.99999


# ---- on GPUs -------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("devices", [["cuda", "cuda"], ["cpu", "cuda"], ["cuda:0", "cpu", "cuda:0"]])
@pytest.mark.parametrize("mode", [None, "eager"])
def test_data_parallel_on_one_gpu(small, rng, devices, mode):
    cfg, W, model = small
    sents = random_sentences(rng, 23)
    want = model.encode(sents, batch_size=3, device="cuda", execution_mode=mode)
    got = model.encode(sents, batch_size=3, devices=devices, execution_mode=mode)
    assert rel_err(got, want) <= 4e-5          # CPU and GPU rows side by side
    assert cosines(got, want).min() >= 0.99999
    ids, mask, types = model.tokenize(sents)
    assert rel_err(got, ref_embed(cfg, W, ids, mask, types)) <= 2e-5


two_gpus = pytest.mark.skipif(n_gpus() < 2, reason="needs 2 GPUs")


@pytest.mark.gpu
@two_gpus
@needs_minilm
@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"no fixture {FIXTURE}")
@pytest.mark.parametrize("mode", [None, "eager"])   # None: graph mode, a graph per GPU
def test_data_parallel_two_gpus_minilm(minilm, mode):
    fx = np.load(FIXTURE)
    sents = [str(s) for s in fx["sentences"]]
    one = minilm.encode(sents, batch_size=4, device="cuda:0", execution_mode=mode)
    got = minilm.encode(sents, batch_size=4, devices=["cuda:0", "cuda:1"], execution_mode=mode)
    assert cosines(got, one).min() >= 0.99999
    assert cosines(got, fx["embeddings"]).min() >= 0.99999
    assert set(minilm.last_device_batches) == {"cuda:0", "cuda:1"}
    assert ("cuda:1", "float32") in minilm._encoders
    got16 = minilm.encode(sents, batch_size=4, devices=["cuda:0", "cuda:1"], dtype="bfloat16",
                          execution_mode=mode)
    assert cosines(got16, fx["embeddings"]).min() >= 0.999


@pytest.mark.gpu
def test_tensor_parallel_refuses_a_gpu_twice(small):
    _, _, model = small
    with pytest.raises(ValueError, match="cuda:0 is named twice"):
        TensorParallelEncoder(model, ["cuda:0", "cuda:0"])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [("float32", 2e-5), ("bfloat16", 3e-2)])
def test_tensor_parallel_one_gpu_shard_runs_the_nccl_path(rng, dtype, tol):
    """One shard on cuda:0: the split code and a one-rank ncclCommInitAll all-reduce per block
    (runs on a one-GPU machine)."""
    cfg = small_config(hidden_size=48, num_attention_heads=4, intermediate_size=64)
    W = random_weights(cfg, rng)
    full = TransformerEncoder(cfg, W, device="cuda", dtype=dtype, execution_mode="eager")
    tp = TensorParallelEncoder(full, ["cuda:0"])
    ids, mask = ragged_batch(rng, cfg, [9, 2, 5])
    for _ in range(2):                      # the communicator is made once, then reused
        got = np.asarray(tp.forward(ids, mask).numpy(), np.float64)
        ref = ref_hidden(cfg, W, ids, mask)
        assert rel_err(got[mask != 0], ref[mask != 0]) <= tol
    pooled = tp.mean_pool(tp.forward(ids, mask), mask)
    want = full.mean_pool(full.forward(ids, mask), mask)
    assert rel_err(pooled, want) <= tol


@pytest.mark.gpu
@two_gpus
@pytest.mark.parametrize("dtype, tol", [("float32", 2e-5), ("bfloat16", 3e-2)])
def test_tensor_parallel_two_gpus_small(rng, dtype, tol):
    cfg = small_config(hidden_size=48, num_attention_heads=4, intermediate_size=64)
    W = random_weights(cfg, rng)
    tp = TensorParallelEncoder(TransformerEncoder(cfg, W, device="cuda", dtype=dtype),
                               ["cuda:0", "cuda:1"])
    ids, mask = ragged_batch(rng, cfg, [9, 2, 5])
    got = np.asarray(tp.forward(ids, mask).numpy(), np.float64)
    ref = ref_hidden(cfg, W, ids, mask)
    assert rel_err(got[mask != 0], ref[mask != 0]) <= tol


@pytest.mark.gpu
@two_gpus
@needs_minilm
@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"no fixture {FIXTURE}")
def test_tensor_parallel_two_gpus_minilm(minilm):
    fx = np.load(FIXTURE)
    sents = [str(s) for s in fx["sentences"]]
    one = minilm.encode(sents, batch_size=8, device="cuda:0")
    got = TensorParallelEncoder(minilm, ["cuda:0", "cuda:1"]).encode(sents, batch_size=8)
    assert cosines(got, one).min() >= 0.99999
    assert cosines(got, fx["embeddings"]).min() >= 0.99999


_WORKER = textwrap.dedent("""
    import sys, numpy as np, lightning_core as lc
    from lightning_core.models import SentenceEncoder
    lc.distributed.init(timeout=120)
    m = SentenceEncoder.from_pretrained(sys.argv[1])
    sents = [f"sentence number {i} " + "word " * (i % 17) for i in range(101)]
    emb = m.encode(sents, batch_size=8, device="cuda", distributed=True)
    np.save(sys.argv[2] + f"/rank{lc.distributed.get_rank()}.npy", emb)
    lc.distributed.destroy()
""")


@pytest.mark.gpu
@two_gpus
def test_distributed_two_processes(small, tmp_path):
    from test_distributed import free_port
    model_dir = tmp_path / "m"                      # the small fixture's model directory
    write = write_model_dir(model_dir, *small[:2])
    port = free_port()
    procs = []
    for r in range(2):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER, str(write), str(tmp_path)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    e0, e1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    np.testing.assert_array_equal(e0, e1)
    sents = [f"sentence number {i} " + "word " * (i % 17) for i in range(101)]
    want = small[2].encode(sents, batch_size=8, device="cuda")
    assert e0.shape == want.shape
    assert cosines(e0, want).min() >= 0.99999


def test_parallel_bench_smoke(tmp_path):
    """benchmarks/python/parallel_bench.py runs end to end (tiny model; CPU columns here)."""
    import json
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "python" / "parallel_bench.py"
    if not script.is_file():
        pytest.skip("benchmarks not next to the tests")
    env = dict(os.environ)
    if env.get("LC_SANITIZED") == "1":
        # Under ASan (scripts/sanitize.sh) the child imports torch / sentence-transformers /
        # scipy when installed, and LeakSanitizer reports their import-time objects at exit
        # (numpy ufuncs, dicts, identity hashes: ~300 KB, none of ours). Memory errors are still
        # checked in the child; leaks of our own code are checked in the suite's process.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    r = subprocess.run([sys.executable, str(script), "--tiny", "--n", "24", "--shapes", "1x16,2x24",
                        "--repeats", "1", "--passes", "1", "--batch-size", "8",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads((tmp_path / "parallel_bench.json").read_text())
    cases = {(row["case"], row.get("shape") or row.get("peer")) for row in out["rows"]}
    assert ("placement", "1x16") in cases and ("placement", "2x24") in cases
    assert ("throughput", "sentence-transformers") in cases
    assert ("tensor_parallel", "16x512") in cases
    assert all(row["auto_over_best"] > 0 for row in out["rows"] if row["case"] == "placement")
    # the per-call breakdown: no re-measuring once decided, the lookup timed
    assert all(row["remeasured"] == 0 and row["decide_us"] > 0
               for row in out["rows"] if row["case"] == "placement")
    if not out["gpu"]:
        assert all(row["auto_choice"] == "cpu" for row in out["rows"] if row["case"] == "placement")
        assert [row["sentences_per_s"] > 0 for row in out["rows"] if row.get("peer") == "lc cpu"] == [True]
