"""Session 15 diagnosis (not committed): the graph suite's resident MiniLM case ends in a torch
device-side assert (vectorized gather index out of bounds). Which system, and is torch's memory
changed by LC's calls?"""
import sys
import numpy as np
import torch
sys.path.insert(0, "benchmarks/python")
import lightning_core as lc
import graph_bench as gb

case = gb.minilm_case(1, 128, "graph")
ins = case.make_inputs(np.random.default_rng(0))
print("ids", ins["ids"].dtype, ins["ids"].min(), ins["ids"].max(), flush=True)
tin = {k: torch.from_numpy(v).cuda() for k, v in ins.items()}
y = case.torch_fn(torch, tin); torch.cuda.synchronize(); print("torch eager ok", flush=True)
key = [k for k in gb._MINILM if k[0] == "torch"][0]
mod = gb._MINILM[key]
bufs = {n: b.clone() for n, b in mod.named_buffers()}
for n, b in mod.named_buffers():
    print("buffer", n, b.dtype, tuple(b.shape), b.min().item(), b.max().item(), flush=True)
ids0 = tin["ids"].clone()
dev = {k: lc.Tensor(v, device="cuda", dtype=v.dtype.name) for k, v in ins.items()}
print("lc resident ids", dev["ids"].dtype, dev["ids"].device, dev["ids"].numpy()[0, :4], flush=True)

def check(tag):
    lc.synchronize(); torch.cuda.synchronize()
    ok = torch.equal(ids0, tin["ids"])
    bad = [n for n, b in mod.named_buffers() if not torch.equal(bufs[n], b)]
    print(tag, "ids intact", ok, "buffers changed", bad, flush=True)
    return ok and not bad

for name, fn in [("lc graph resident", lambda: case.lc_fn(lc, dev, "cuda")),
                 ("lc graph auto numpy", lambda: case.lc_fn(lc, ins, "auto")),
                 ("lc eager resident", lambda: gb.minilm_case(1, 128, "eager").lc_fn(lc, dev, "cuda"))]:
    try:
        for _ in range(10):
            fn()
        if not check(name):
            break
        y = case.torch_fn(torch, tin); torch.cuda.synchronize(); print(name, "then torch ok", flush=True)
    except Exception as e:
        print(name, "raised", type(e).__name__, str(e)[:300], flush=True)
        break
# the harness's torch CUDA graph, interleaved with LC
static = {k: torch.from_numpy(v).cuda() for k, v in ins.items()}
s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _ in range(3):
        case.torch_fn(torch, static)
torch.cuda.current_stream().wait_stream(s); torch.cuda.synchronize()
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    out = case.torch_fn(torch, static)
print("captured", flush=True)
for i in range(30):
    g.replay(); torch.cuda.synchronize()
    case.lc_fn(lc, dev, "cuda"); lc.synchronize()
print("static ids intact", torch.equal(static["ids"], ids0), flush=True)
torch.cuda.synchronize(); print("graph replays ok", flush=True)
