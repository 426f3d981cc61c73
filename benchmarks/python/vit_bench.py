"""The vision encoder end to end (issue #15): lc.models.VisionEncoder against HF ViTModel in torch.

Times one forward from images already on the device to (tokens, pooled) (ms per call,
synchronised, median), ViT-B/16 at 224 x 224 (hidden 768, 12 heads, MLP 3072, 12 layers, 197
tokens) with random weights (speed does not depend on the values; both sides get the same
weights), batch 1 / 8 / 64 (--quick: 1 / 8), float32 and bfloat16 on "cuda"; on the CPU batch 1
float32 (LC's CPU bfloat16 GEMMs are not competitive yet; --cpu-bf16 adds them).

    PYTHONPATH=build/python python3 benchmarks/python/vit_bench.py [--quick] [--filter "b=8"]
        [--vit-batches 1,8,64] [--vit-dtypes float32,bfloat16] [--vit-devices cpu,cuda]
        [--no-compile] [--out-dir DIR]
    python3 benchmarks/python/run_all.py --suites vit

Systems (columns; each only where it can run, otherwise the cell says why):
  lc_eager          VisionEncoder.forward(execution_mode="eager"): LC ops one by one
  lc_graph          execution_mode="graph": one LC graph per batch size (a captured CUDA graph)
  torch_eager       transformers' ViTModel (sdpa attention, add_pooling_layer=False)
  torch_cuda_graph  that forward captured once in a torch.cuda.CUDAGraph and replayed (GPU)
  torch_compile     torch.compile(mode="reduce-overhead") on the GPU (not run on the CPU)
The row's notes give LC's min cosine against torch eager's tokens (the same weights).
TF32 stays off on both sides (float32 rows are float32 GEMMs).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (TimingConfig, restore_torch_tf32, set_torch_tf32, summarize_row,  # noqa: E402
                    torch_tf32_state)
from suite_main import matches_filter, suite_main  # noqa: E402

VIT_B16 = dict(image_size=224, patch_size=16, num_channels=3, hidden_size=768, num_hidden_layers=12,
               num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
               layer_norm_eps=1e-12, qkv_bias=True)
SYSTEMS = ("lc_eager", "lc_graph", "torch_eager", "torch_cuda_graph", "torch_compile")


def add_args(p) -> None:
    p.add_argument("--vit-batches", default=None, help="comma list (default 1,8,64; --quick 1,8)")
    p.add_argument("--vit-dtypes", default="float32,bfloat16")
    p.add_argument("--vit-devices", default="cpu,cuda")
    p.add_argument("--cpu-bf16", action="store_true", help="also time bfloat16 on the CPU")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")


def _time(fn: Callable[[], Any], sync: Callable[[], None], cfg: TimingConfig) -> Dict[str, Any]:
    """Median ms of fn() + sync() after warm-up calls, within the time budget."""
    for _ in range(max(2, min(cfg.warmup, 5))):
        fn()
    sync()
    times: List[float] = []
    t_end = time.perf_counter() + cfg.budget_s
    while len(times) < cfg.iters and (len(times) < cfg.min_iters or time.perf_counter() < t_end):
        t0 = time.perf_counter_ns()
        fn()
        sync()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return {"status": "ok", "ms": statistics.median(times), "n": len(times), "min_ms": min(times)}


def _min_cos(a: np.ndarray, r: np.ndarray) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    r = r.reshape(len(r), -1).astype(np.float64)
    return float(((a * r).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1))).min())


def _torch_model(torch, W: Dict[str, np.ndarray], device: str, dtype: str):
    import transformers

    conf = transformers.ViTConfig(**VIT_B16)
    try:
        m = transformers.ViTModel(conf, add_pooling_layer=False, attn_implementation="sdpa")
    except TypeError:
        m = transformers.ViTModel(conf, add_pooling_layer=False)
    # The installed ViTModel's own parameter names: transformers 5 renamed them
    # (layers.N.attention.q_proj...; seen with 5.17 on the H200), published checkpoints and 4.x
    # use encoder.layer.N.attention.attention.query...; convert ours to whichever it expects.
    from lightning_core.models import convert_vit_state_dict, vit_key_scheme

    scheme = vit_key_scheme(m.state_dict().keys()) or "classic"
    W = convert_vit_state_dict(W, scheme)
    missing, unexpected = m.load_state_dict({k: torch.from_numpy(v) for k, v in W.items()},
                                            strict=False)
    if missing or unexpected:
        raise RuntimeError(f"ViTModel weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    return m.to(device=device, dtype=tdt).eval(), tdt


def run_vit(args, env, cfg: TimingConfig, modes: List[str]) -> List[Dict[str, Any]]:
    import lightning_core as lc
    from lightning_core.models import VisionEncoder, random_vit_state_dict

    try:
        import torch
    except ImportError:
        torch = None
    try:
        import transformers  # noqa: F401
        have_hf = torch is not None
    except ImportError:
        have_hf = False
    # run_all.py parses only the common arguments: the vit ones fall back to their defaults
    opt = {"vit_batches": None, "vit_dtypes": "float32,bfloat16", "vit_devices": "cpu,cuda",
           "cpu_bf16": False, "no_compile": False}
    opt = {k: getattr(args, k, v) for k, v in opt.items()}
    batches = [int(b) for b in (opt["vit_batches"] or ("1,8" if args.quick else "1,8,64")).split(",")]
    dtypes = [d.strip() for d in opt["vit_dtypes"].split(",") if d.strip()]
    devices = [d.strip() for d in opt["vit_devices"].split(",") if d.strip()]
    W = random_vit_state_dict(VIT_B16, seed=0)
    # torch >= 2.9 refuses to read the legacy allow_tf32 once the new fp32_precision flags are
    # set (seen on the H200): common.py's helpers use whichever API this torch has.
    tf32 = None if torch is None else torch_tf32_state(torch)   # restored at the end
    rows: List[Dict[str, Any]] = []
    for device in devices:
        if device == "cuda" and not lc.cuda_available():
            print("vit: cuda skipped (no usable GPU for LC)", file=sys.stderr)
            continue
        for dtype in dtypes:
            if device == "cpu" and dtype != "float32" and not opt["cpu_bf16"]:
                continue
            dev_batches = batches if device == "cuda" else [1]
            enc = VisionEncoder(VIT_B16, W, device=device, dtype=dtype)
            tmod = None
            why_torch = ("torch not installed" if torch is None else
                         "transformers not installed" if not have_hf else
                         "torch has no CUDA" if device == "cuda" and not torch.cuda.is_available()
                         else None)
            if why_torch is None:
                tmod, tdt = _torch_model(torch, W, device, dtype)
                if device == "cuda":
                    set_torch_tf32(torch, False)
            for B in dev_batches:
                case = f"ViT-B/16 224 b={B} {dtype} {device}"
                if not matches_filter(args.filter, f"vit {case}"):
                    continue
                rng = np.random.default_rng(B)
                imgs = rng.standard_normal((B, 3, 224, 224)).astype(np.float32)
                x = lc.Tensor(imgs, device, dtype)
                cells: Dict[str, Dict[str, Any]] = {}
                notes: List[str] = [f"{enc.config.seq_len} tokens, random weights (seed 0)"]
                outs: Dict[str, np.ndarray] = {}
                for mode in ("eager", "graph"):
                    name = f"lc_{mode}"
                    try:
                        res = enc.forward(x, execution_mode=mode)
                        outs[name] = np.asarray(res[0].numpy(), np.float32)
                        cells[name] = _time(lambda: enc.forward(x, execution_mode=mode),
                                            lc.synchronize, cfg)
                    except Exception as e:  # noqa: BLE001 - a failed cell is a reported cell
                        cells[name] = {"status": f"error: {type(e).__name__}: {str(e)[:160]}"}
                if tmod is None:
                    for s in SYSTEMS[2:]:
                        cells[s] = {"status": f"n/a ({why_torch})"}
                else:
                    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                    ti = torch.from_numpy(imgs).to(device=device, dtype=tdt)
                    with torch.inference_mode():
                        ref = tmod(pixel_values=ti).last_hidden_state.float().cpu().numpy()
                    for s, o in outs.items():
                        notes.append(f"{s} min cosine vs torch eager {_min_cos(o, ref):.6f}")

                    def eager():
                        with torch.inference_mode():
                            return tmod(pixel_values=ti).last_hidden_state
                    cells["torch_eager"] = _time(eager, sync, cfg)
                    if device == "cuda":
                        try:
                            static_in = ti.clone()
                            s_ = torch.cuda.Stream()
                            s_.wait_stream(torch.cuda.current_stream())
                            with torch.cuda.stream(s_), torch.inference_mode():
                                for _ in range(3):
                                    tmod(pixel_values=static_in)
                            torch.cuda.current_stream().wait_stream(s_)
                            g = torch.cuda.CUDAGraph()
                            with torch.cuda.graph(g), torch.inference_mode():
                                static_out = tmod(pixel_values=static_in).last_hidden_state  # noqa: F841
                            cells["torch_cuda_graph"] = _time(g.replay, sync, cfg)
                            del g, static_out
                        except Exception as e:  # noqa: BLE001
                            cells["torch_cuda_graph"] = {"status": f"error: {type(e).__name__}: "
                                                                   f"{str(e)[:160]}"}
                    else:
                        cells["torch_cuda_graph"] = {"status": "n/a (GPU only)"}
                    if opt["no_compile"]:
                        cells["torch_compile"] = {"status": "n/a (--no-compile)"}
                    elif device != "cuda":
                        cells["torch_compile"] = {"status": "n/a (GPU only here: inductor's CPU "
                                                            "build of ViT-B takes minutes)"}
                    else:
                        try:
                            cm = torch.compile(tmod, mode="reduce-overhead", dynamic=False)

                            def compiled():
                                with torch.inference_mode():
                                    return cm(pixel_values=ti).last_hidden_state
                            t0 = time.perf_counter()
                            compiled()
                            notes.append(f"torch.compile first call {time.perf_counter() - t0:.1f}s")
                            cells["torch_compile"] = _time(compiled, sync, cfg)
                        except Exception as e:  # noqa: BLE001
                            cells["torch_compile"] = {"status": f"error: {type(e).__name__}: "
                                                                f"{str(e)[:160]}"}
                    del ti
                row = {"suite": "vit", "mode": "resident", "family": "vit", "case": case,
                       "impl": "model", "precision": "bf16" if dtype == "bfloat16" else
                       ("fp16" if dtype == "float16" else "fp32"), "device": device,
                       "systems": cells, "notes": notes,
                       "params": {"batch": B, "dtype": dtype, "device": device}}
                summarize_row(row, SYSTEMS)
                rows.append(row)
                line = "  ".join(f"{s}={c['ms']:.3f}ms" if c.get("status") == "ok"
                                 else f"{s}={c['status'][:40]}" for s, c in cells.items())
                print(f"vit {case}: {line}", file=sys.stderr)
            enc = tmod = None  # free the weights before the next dtype
            if torch is not None and device == "cuda" and torch.cuda.is_available():
                torch.cuda.empty_cache()
    if tf32 is not None:
        restore_torch_tf32(torch, tf32)
    return rows


def build_cases(quick: bool = False) -> list:  # run_vit drives the suite
    return []


if __name__ == "__main__":
    suite_main("vit", build_cases, runner=run_vit, extra_args=add_args)
