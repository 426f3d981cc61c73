"""Lightning Core: a low-latency tensor runtime with CUDA fast paths and CPU crossover.

Ops take numpy arrays or lc.Tensor objects (float32; the elementwise ops and embedding also
float16 / bfloat16, the elementwise ops float64 on the CPU); `device` is "auto" (the runtime decides),
"cpu", "cuda" or "metal" (macOS only; raises ValueError here). See README.md.
"""

from ._lightning_core import *  # noqa: F401,F403
from ._lightning_core import (  # noqa: F401
    BackendError,
    ExecutionPolicy,
    OutDTypeError,
    Tensor,
    __doc__ as _native_doc,
)

__version__ = build_info()["version"]  # noqa: F405

from ._tensor import Tensor64, TensorView  # noqa: E402,F401

from_dlpack = Tensor.from_dlpack  # lc.from_dlpack(obj): zero-copy from any DLPack producer
from . import api  # noqa: E402,F401
from .api import conv_relu_nchw, conv_attention_torchstrong_nchw  # noqa: E402,F401
from .trace import *  # noqa: F401,F403,E402
from .policy import *  # noqa: F401,F403,E402
