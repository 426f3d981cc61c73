"""Which system sequence makes the graph suite's resident MiniLM case end the process with a
torch device-side assert (session 15: "vectorized gather index out of bounds")?

Each experiment runs the case (graph: 1x128, resident mode) with a subset of the harness's
systems in a fresh process, so one that asserts does not stop the rest. Run from the repository
root with the built package on PYTHONPATH:  python3 benchmark_results/h200/session16/minilm_resident_bisect.py
Optional: LC_BISECT_SANITIZE=1 also runs the LC-only experiment under compute-sanitizer memcheck.
"""
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BENCH = os.path.join(ROOT, "benchmarks", "python")

CHILD = r"""
import sys
sys.path.insert(0, {bench!r})
from common import detect_env, TimingConfig
from harness import run_case
import graph_bench as gb
env = detect_env()
cfg = TimingConfig(warmup=3, iters=10, budget_s=1.0, min_iters=3, check=True)
cases = {cases}
for name, mode, systems in cases:
    case = {{"runner": lambda: gb.runner_case(mode), "minilm": lambda: gb.minilm_case(1, 128, mode),
            "minilm-bf16": lambda: gb.minilm_case(1, 128, mode, "bfloat16")}}[name]()
    row = run_case(case, "resident" if name != "minilm-oneshot" else "oneshot", env, cfg, systems=systems)
    print(name, mode, {{k: v for k, v in row.items() if k.endswith("_status") and v}}, flush=True)
print("DONE", flush=True)
"""

EXPERIMENTS = {
    "torch_cuda alone": [("minilm", "graph", ["torch_cuda"])],
    "torch_cuda_graph alone": [("minilm", "graph", ["torch_cuda_graph"])],
    "torch only": [("minilm", "graph", ["torch_cuda", "torch_cuda_graph"])],
    "lc_cuda then torch": [("minilm", "graph", ["lc_cuda", "torch_cuda", "torch_cuda_graph"])],
    "lc_cpu then torch": [("minilm", "graph", ["lc_cpu", "torch_cuda", "torch_cuda_graph"])],
    "all systems": [("minilm", "graph", None)],
    "runner then all": [("runner", "graph", None), ("minilm", "graph", None)],
    # session 16, after the torch peers became plain torch ops: fp32 passes, bf16 still asserts
    "bf16 torch only": [("minilm-bf16", "graph", ["torch_cuda", "torch_cuda_graph"])],
    "bf16 lc_cuda then torch_cuda": [("minilm-bf16", "graph", ["lc_cuda", "torch_cuda"])],
    "bf16 lc_cuda then torch graph": [("minilm-bf16", "graph", ["lc_cuda", "torch_cuda_graph"])],
}


def run(label, cases, prefix=()):
    code = CHILD.format(bench=BENCH, cases=repr(cases))
    t0 = time.time()
    try:
        env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1")
        p = subprocess.run(list(prefix) + [sys.executable, "-X", "faulthandler", "-c", code],
                           capture_output=True, text=True, env=env,
                           timeout=float(os.environ.get("LC_BISECT_TIMEOUT", "150")))
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else str(e.stdout)
    ok = rc == 0 and "DONE" in out
    print(f"== {label}: {'ok' if ok else 'FAILED rc=' + str(rc)} ({time.time() - t0:.0f} s)", flush=True)
    keep = [ln for ln in out.splitlines() if "IndexKernelUtils" not in ln]
    print("\n".join(keep[-int(os.environ.get("LC_BISECT_TAIL", "60")):]), flush=True)
    return ok


if __name__ == "__main__":
    only = os.environ.get("LC_BISECT_ONLY", "")
    for label, cases in EXPERIMENTS.items():
        if only and not any(o and o in label for o in only.split("|")):
            continue
        run(label, cases)
    if os.environ.get("LC_BISECT_SANITIZE"):
        run("memcheck lc_cuda", [(os.environ.get("LC_BISECT_SANITIZE_CASE", "minilm"), "graph", ["lc_cuda"])],
            prefix=("compute-sanitizer", "--tool", "memcheck", "--padding", "64",
                    "--report-api-errors", "no", "--print-limit", "20"))
