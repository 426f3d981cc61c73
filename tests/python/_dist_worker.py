"""One rank of the multi-process lc.distributed tests (tests/python/test_distributed*.py).

Run as ``python _dist_worker.py MODE JSON_ARGS``; prints one JSON line: {"ok": ...} or
{"error": exception type name, "msg": message, "seconds": time to the error}.

Modes
-----
rdv        the TCP rendezvous alone with a fake 128-byte id (no GPU): args rank, world, port,
           timeout, seed (rank 0's fake id is bytes(range(seed, seed + 128)) mod 256).
gpu-ops    init() from the environment (RANK, WORLD_SIZE, ...), then every collective x dtype x
           size against numpy; args seed.
gpu-kill   init(timeout=args.timeout); rank 1 exits right after init, rank 0 runs all_reduce
           and reports how long until the error.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _fake_id(seed: int) -> bytes:
    return bytes((seed + i) % 256 for i in range(128))


def rdv(a: dict) -> object:
    from lightning_core._rendezvous import rendezvous

    payload = _fake_id(a["seed"]) if a["rank"] == 0 else None
    got = rendezvous(a["rank"], a["world"], "127.0.0.1", a["port"], a["timeout"], payload)
    return got.hex()


def _to_np(t):
    return t.numpy()


def gpu_ops(a: dict) -> object:
    import ml_dtypes
    import numpy as np

    import lightning_core as lc

    dist = lc.distributed
    dist.init()
    r, w = dist.get_rank(), dist.get_world_size()
    dev = f"cuda:{dist.get_local_rank()}"
    dtypes = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
              "bfloat16": ml_dtypes.bfloat16, "int32": np.int32, "int64": np.int64}
    checked = 0

    def data(rank: int, n: int, dt, salt: int) -> np.ndarray:
        g = np.random.default_rng(a["seed"] * 1000 + rank * 10 + salt)
        if np.issubdtype(np.dtype(dt), np.integer):
            return g.integers(-50, 50, size=n).astype(dt)
        return g.standard_normal(n).astype(np.float32).astype(dt)

    def close(got, want, dt):
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        tol = {"float16": 1e-2, "bfloat16": 3e-2, "float32": 1e-5, "float64": 1e-12}.get(dt, 0)
        if not np.allclose(got, want, rtol=tol, atol=tol * w):
            raise AssertionError(f"rank {r} {dt}: max error {np.max(np.abs(got - want))}")

    for name, dt in dtypes.items():
        for n in (1, 7919, (1 << 20) + 3):
            ins = [data(k, n, dt, 0) for k in range(w)]
            ref = np.stack([x.astype(np.float64) for x in ins])
            ops = ["sum", "max", "min"] + ([] if name.startswith("int") else ["avg"])
            for op in ops:
                t = lc.Tensor(ins[r], device=dev, dtype=name)
                dist.all_reduce(t, op=op)
                want = {"sum": ref.sum(0), "max": ref.max(0), "min": ref.min(0),
                        "avg": ref.mean(0)}[op]
                close(_to_np(t), want, name)
                checked += 1
            t = lc.Tensor(ins[r], device=dev, dtype=name)
            out = dist.all_gather(t)
            close(_to_np(out), np.concatenate(ins), name)
            big = [data(k, n * w, dt, 1) for k in range(w)]
            rs = dist.reduce_scatter(lc.Tensor(big[r], device=dev, dtype=name), op="sum")
            full = np.stack([x.astype(np.float64) for x in big]).sum(0)
            close(_to_np(rs), full[r * n:(r + 1) * n], name)
            b = lc.Tensor(ins[r], device=dev, dtype=name)
            dist.broadcast(b, src=w - 1)
            close(_to_np(b), ins[w - 1], name)
            if w >= 2:
                if r == 0:
                    dist.send(lc.Tensor(ins[0], device=dev, dtype=name), dst=1)
                elif r == 1:
                    got = lc.Tensor(np.zeros(n, dtype=dt), device=dev, dtype=name)
                    dist.recv(got, src=0)
                    close(_to_np(got), ins[0], name)
            checked += 4
    dist.barrier()
    # a shape mismatch across ranks is reported in debug mode
    mismatch = None
    if w >= 2:
        dist.destroy()
        dist.init(debug=True)
        t = lc.Tensor(np.zeros(3 + r, dtype=np.float32), device=dev, dtype="float32")
        try:
            dist.all_reduce(t)
        except ValueError as e:
            mismatch = str(e)
    dist.destroy()
    return {"checked": checked, "mismatch": mismatch}


def gpu_kill(a: dict) -> object:
    import numpy as np

    import lightning_core as lc

    dist = lc.distributed
    dist.init(timeout=a["timeout"])
    t = lc.Tensor(np.ones(1024, dtype=np.float32), device=f"cuda:{dist.get_local_rank()}")
    dist.all_reduce(t)  # both alive: works
    if dist.get_rank() == 1:
        os._exit(0)  # dies without a word
    time.sleep(0.5)
    start = time.monotonic()
    try:
        dist.all_reduce(t)
        dist.all_reduce(t)
    except lc.BackendError as e:
        return {"error_after": time.monotonic() - start, "msg": str(e)}
    return {"error_after": None}


def main() -> None:
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    start = time.monotonic()
    try:
        result = {"rdv": rdv, "gpu-ops": gpu_ops, "gpu-kill": gpu_kill}[mode](args)
        print(json.dumps({"ok": result}), flush=True)
    except Exception as e:  # reported to the test, which asserts on it
        print(json.dumps({"error": type(e).__name__, "msg": str(e),
                          "seconds": time.monotonic() - start}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # no atexit (NCCL teardown of a half-dead group could block)


if __name__ == "__main__":
    main()
