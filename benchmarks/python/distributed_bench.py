"""all_reduce across the local GPUs: lc.distributed against torch.distributed (both NCCL), one run.

    python3 benchmarks/python/distributed_bench.py --out benchmark_results/dist [--world N]
        [--min-bytes 4096] [--max-bytes 268435456] [--dtype float32] [--iters 50]

Starts one worker process per GPU (--world, default every GPU this process sees) through
lc.distributed's rendezvous (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set here, as torchrun
would); each worker also joins torch.distributed's NCCL group on another port. For every message
size (powers of 4 from --min-bytes to --max-bytes, float32 by default) the workers time, in
alternating rounds so drift hits both alike, one all_reduce(sum) with a wait for completion per
call, from Python:
  lc     lc.distributed.all_reduce(t)             (enqueue + host wait, what the call does)
  torch  dist.all_reduce(t); torch.cuda.synchronize()
Reported per size (rank 0, median over the calls): time in us, algorithm bandwidth
algbw = bytes / time and bus bandwidth busbw = algbw * 2 (n - 1) / n, as nccl-tests defines them
(busbw is 0 on one GPU: nothing crosses a link), and lc / torch ratios. Results go to
<out>/distributed_bench.json. Without a GPU the script writes {"skipped": why} and exits 0;
without torch (or torch without CUDA) the torch columns are null.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int32": 4, "int64": 8}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _sizes(lo: int, hi: int) -> List[int]:
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= 4
    if out[-1] != hi:
        out.append(hi)
    return out


def _iters_for(nbytes: int, base: int) -> int:
    """`base` calls up to 4 MB, fewer above (at least 10): ~the same time per size."""
    if nbytes <= (4 << 20):
        return base
    return max(10, base * (4 << 20) // nbytes)


def worker(args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np

    import lightning_core as lc

    dist = lc.distributed
    dist.init(timeout=120)
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = f"cuda:{dist.get_local_rank()}"
    torch = tdist = None
    torch_note = None
    try:
        import torch as _torch
        import torch.distributed as _tdist

        if _torch.cuda.is_available():
            _torch.cuda.set_device(dist.get_local_rank())
            _tdist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{args.torch_port}",
                                      rank=rank, world_size=world)
            torch, tdist = _torch, _tdist
        else:
            torch_note = "torch has no CUDA"
    except ImportError:
        torch_note = "torch is not installed"
    esize = DTYPE_BYTES[args.dtype]
    rows = []
    for nbytes in _sizes(args.min_bytes, args.max_bytes):
        n = max(1, nbytes // esize)
        t = lc.Tensor.empty([n], device=dev, dtype=args.dtype)
        dist.all_reduce(t)  # touch it (and warm NCCL's channels for this size)
        if torch is not None:
            tt = torch.zeros(n, device=dev, dtype=getattr(torch, args.dtype))
            tdist.all_reduce(tt)
            torch.cuda.synchronize()
        iters = _iters_for(nbytes, args.iters)
        lc_s: List[float] = []
        th_s: List[float] = []
        for _ in range(3):  # warm-up
            dist.all_reduce(t)
            if torch is not None:
                tdist.all_reduce(tt)
                torch.cuda.synchronize()
        rounds = 5
        for _ in range(rounds):
            dist.barrier()
            for _ in range(max(1, iters // rounds)):
                s = time.perf_counter()
                dist.all_reduce(t)
                lc_s.append(time.perf_counter() - s)
            if torch is not None:
                tdist.barrier()
                torch.cuda.synchronize()
                for _ in range(max(1, iters // rounds)):
                    s = time.perf_counter()
                    tdist.all_reduce(tt)
                    torch.cuda.synchronize()
                    th_s.append(time.perf_counter() - s)
        real = n * esize
        bus = 2.0 * (world - 1) / world

        def stats(samples: List[float]) -> Dict[str, Any]:
            if not samples:
                return {"us": None, "algbw_gbs": None, "busbw_gbs": None}
            med = statistics.median(samples)
            alg = real / med / 1e9
            return {"us": med * 1e6, "algbw_gbs": alg, "busbw_gbs": alg * bus}

        row = {"bytes": real, "elements": n, "iters": len(lc_s), "lc": stats(lc_s),
               "torch": stats(th_s)}
        if row["torch"]["us"]:
            row["lc_over_torch_time"] = row["lc"]["us"] / row["torch"]["us"]
        rows.append(row)
        if rank == 0:
            tus = row["torch"]["us"]
            print(f"{real:>11d} B  lc {row['lc']['us']:9.1f} us  busbw {row['lc']['busbw_gbs']:7.2f} GB/s"
                  + (f"   torch {tus:9.1f} us  busbw {row['torch']['busbw_gbs']:7.2f} GB/s"
                     if tus else "   torch n/a"), flush=True)
    dist.destroy()
    if tdist is not None:
        tdist.destroy_process_group()
    return {"rank": rank, "world_size": world, "dtype": args.dtype, "rows": rows,
            "torch_note": torch_note, "nccl": lc.distributed.nccl_info(),
            "device": lc.device_description() if hasattr(lc, "device_description") else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmark_results/distributed", help="output directory")
    ap.add_argument("--world", type=int, default=0, help="GPUs (processes); 0 = all")
    ap.add_argument("--min-bytes", type=int, default=4096)
    ap.add_argument("--max-bytes", type=int, default=256 << 20)
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPE_BYTES))
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        res = worker(args)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "distributed_bench.json")
    import lightning_core as lc

    ngpu = lc.device_count("cuda")
    if ngpu == 0:
        why = "no usable CUDA device"
        print(f"distributed_bench: skipped ({why})")
        with open(path, "w") as f:
            json.dump({"skipped": why}, f, indent=1)
        return 0
    world = ngpu if args.world <= 0 else min(args.world, ngpu)
    port, tport = _free_port(), _free_port()
    procs = []
    for r in range(world):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--torch-port", str(tport),
               "--min-bytes", str(args.min_bytes), "--max-bytes", str(args.max_bytes),
               "--dtype", args.dtype, "--iters", str(args.iters)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    results, failed = [], []
    for r, p in enumerate(procs):
        out, _ = p.communicate()
        lines = [ln[7:] for ln in out.splitlines() if ln.startswith("RESULT ")]
        if r == 0:
            sys.stdout.write("".join(ln + "\n" for ln in out.splitlines()
                                     if not ln.startswith("RESULT ")))
        if p.returncode != 0 or not lines:
            failed.append(r)
        else:
            results.append(json.loads(lines[-1]))
    doc = {"suite": "distributed", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "world_size": world, "failed_ranks": failed,
           "rank0": next((x for x in results if x["rank"] == 0), None)}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"distributed_bench: wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
