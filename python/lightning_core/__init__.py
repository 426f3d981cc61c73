"""Lightning Core: a low-latency tensor runtime with CUDA fast paths and CPU crossover.

Ops take numpy arrays or lc.Tensor objects (float32; the elementwise ops and embedding also
float16 / bfloat16, the elementwise ops float64 on the CPU); `device` is "auto" (the runtime decides),
"cpu", "cuda", "cuda:N" (the N-th GPU) or "metal" (macOS only; raises ValueError here). See README.md.
"""

def _preload_blas():
    # A build against scipy-openblas32 (CMake LC_BLAS=auto|scipy) links libscipy_openblas.so;
    # the module's RPATH points at it, and loading it here as well makes `import lightning_core`
    # work wherever pip put that package (another site-packages, a venv layered on the system).
    try:
        import scipy_openblas32  # type: ignore[import-untyped]  # (its import does not load the library)
    except ImportError:
        return
    import ctypes
    import os

    lib = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))
    try:
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass  # the extension then reports the missing library itself


# OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when the library is loaded: its worker threads
# busy-wait 2^N cycles after each threaded call (default N = 28, ~0.1 s), sharing the cores
# with our thread pool's next ops. 4 makes them sleep at once (a big GEMM pays one wake-up, a
# few us). Set only while our OpenBLAS loads, unless the user set it: numpy's own OpenBLAS (a
# separate library, already loaded) and later processes keep their defaults; an OpenBLAS that
# another package loaded first keeps its setting. docs/cpu_backend.md, "Two-core defaults".
import os as _os  # noqa: E402

_blas_timeout_set = "OPENBLAS_THREAD_TIMEOUT" not in _os.environ
if _blas_timeout_set:
    _os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
try:
    _preload_blas()
    from ._lightning_core import *  # noqa: F401,F403,E402
finally:
    if _blas_timeout_set:
        _os.environ.pop("OPENBLAS_THREAD_TIMEOUT", None)
del _blas_timeout_set, _os
from ._lightning_core import (  # noqa: F401,E402
    BackendError,
    ExecutionPolicy,
    OutDTypeError,
    Tensor,
    __doc__ as _native_doc,
)
# Private tuning / testing hooks (not in `import *`): which compiled variant of the CUDA attention
# kernels runs (docs/attention.md, "Kernel variants"; benchmarks/python/attention_sweep.py).
from ._lightning_core import (  # noqa: F401,E402
    _attention_kernel_variant,
    _attention_kernel_variant_names,
    _set_attention_kernel_variant,
)

# cuBLASLt / cuDNN / the CUDA runtime may live in NVIDIA's pip wheels (torch's): tell the loader
# where (it loads them only when an op first needs one).
from ._vendor_dirs import install as _install_vendor_dirs  # noqa: E402

_install_vendor_dirs()
del _install_vendor_dirs

# The version has one source, pyproject.toml (CMake compiles it in as LC_VERSION).
__version__: str = build_info()["version"]  # noqa: F405

from ._tensor import Tensor64, TensorView  # noqa: E402,F401

from_dlpack = Tensor.from_dlpack  # lc.from_dlpack(obj): zero-copy from any DLPack producer
from .devices import Device, set_device, current_device, device_count  # noqa: E402,F401
from . import api  # noqa: E402,F401
from .api import conv_relu_nchw, conv_attention_torchstrong_nchw, attention_train_step  # noqa: E402,F401
from .trace import *  # noqa: F401,F403,E402
# lc.GraphIR (native) and the tracer: lc.compile(fn) / lc.graph.trace(fn, *examples) (docs/graph.md).
from . import graph  # noqa: E402,F401
from .graph import compile  # noqa: E402,F401,A001
# policy's set_default_policy / get_default_policy / current_policy replace the native ones.
from .policy import *  # type: ignore[assignment]  # noqa: F401,F403,E402
from ._logging import set_log_level  # noqa: E402,F401  (LC_LOG_LEVEL, the "lightning_core" logger)
# lc.models: BERT-family encoders and sentence embeddings on LC ops (safetensors / tokenizers
# are imported only when a model is loaded).
from . import models  # noqa: E402,F401
# lc.distributed: collectives across GPUs and processes through NCCL (loaded on first use).
from . import distributed  # noqa: E402,F401

# numpydoc docstrings for the native functions and classes (python/lightning_core/_docs.py).
from ._docs import apply as _apply_docs  # noqa: E402

_apply_docs(globals())
del _apply_docs
