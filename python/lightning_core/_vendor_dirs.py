"""Where NVIDIA's pip wheels keep their shared libraries, for the native loader.

torch, JAX and CuPy users usually have cuBLAS, cuDNN, NCCL and the CUDA runtime as pip wheels
(``nvidia-cublas``, ``nvidia-cudnn-cu13``, ...), which install them under
``site-packages/nvidia/<name>/lib``, a folder the dynamic loader does not search. At import this
module lists those folders (a directory listing per ``sys.path`` entry: nothing is loaded) and
hands them to the CUDA backend, which tries them right after the loader's own search when an op
first needs a library (src/backends/cuda/vendor_libs.h). ``LC_VENDOR_LIB_DIRS`` (colon-
separated) adds folders of one's own.
"""

from __future__ import annotations

import os
import sys


def find(paths: list[str] | None = None) -> list[str]:
    """The ``nvidia/*/lib`` folders under the entries of ``paths`` (default ``sys.path``), in order.

    Parameters
    ----------
    paths : list of str, optional
        Folders to look in (``site-packages`` style); default ``sys.path``.

    Returns
    -------
    list of str
        Existing library folders, each once.
    """
    out: list[str] = []
    seen: set[str] = set()
    for base in sys.path if paths is None else paths:
        nv = os.path.join(base or os.curdir, "nvidia")
        try:
            names = sorted(os.listdir(nv))
        except OSError:
            continue
        for name in names:
            lib = os.path.join(nv, name, "lib")
            if lib not in seen and os.path.isdir(lib):
                seen.add(lib)
                out.append(lib)
    return out


def install() -> None:
    """Hands :func:`find`'s folders to the native loader (import time; loads nothing)."""
    from . import _lightning_core as _C

    _C._set_vendor_lib_dirs(find())
