"""Execution policy helpers: scoped policies, the process default and placement explanations.

    with lc.policy(device="cuda", sync="batch"):      # scoped (nests; per thread / asyncio task)
        y = lc.matmul2d(a, b)

    @lc.policy(device="cpu")                           # also a decorator (async functions too)
    def f(...): ...

    lc.set_default_policy(device="auto", precision="tf32")   # process default
    lc.explain(lc.matmul2d, a, b)                      # -> why the op ran where it ran
    lc.explain_placement("matmul2d", (m, k), (k, n))   # -> why it would run where, no run

Fields: device ("auto" | "cpu" | "cuda"), upload ("always" | "once" | "never"), download
(True/False), sync ("per_call" | "batch" | "none"), precision ("fp32" | "tf32" | "bf16"),
fusion (bool), autotune (bool). Invalid values and combinations raise ValueError. See
docs/policy.md.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any, Callable, Optional

from . import _lightning_core as _C
from ._lightning_core import ExecutionPolicy

__all__ = [
    "policy",
    "set_default_policy",
    "get_default_policy",
    "current_policy",
    "policy_fields",
    "explain",
    "explain_placement",
    "placement",
]

_FIELDS = ("device", "upload", "download", "sync", "precision", "fusion", "autotune")

# The `with lc.policy` scope of the running context: None (no scope) or (policy, parent), the
# innermost ExecutionPolicy and the enclosing scope's tuple. A ContextVar, so each asyncio task
# (which runs in a copy of its creator's context) and each thread (which starts with an empty
# context) sees only its own scopes. The op bindings read it natively (PyContextVar_Get) when a
# call passes no policy; without a scope they use the process default.
_scope: contextvars.ContextVar = contextvars.ContextVar("lightning_core.policy_scope", default=None)
_C._set_policy_context_var(_scope)
_scopes_used = False  # the ops skip reading _scope until the first scope is entered


def policy_fields(p: ExecutionPolicy) -> dict[str, Any]:
    """The policy as a plain dict of its seven fields.

    Parameters
    ----------
    p : ExecutionPolicy
        The policy to read.

    Returns
    -------
    dict
        device, upload, download, sync, precision, fusion and autotune.
    """
    return {f: getattr(p, f) for f in _FIELDS}


def _make(base: Optional[ExecutionPolicy], kw: dict[str, Any]) -> ExecutionPolicy:
    unknown = set(kw) - set(_FIELDS)
    if unknown:
        raise TypeError(
            f"unknown policy field(s) {sorted(unknown)}; valid fields: {', '.join(_FIELDS)}"
        )
    fields = policy_fields(base) if base is not None else {}
    fields.update(kw)
    return ExecutionPolicy(**fields)


class policy:
    """Context manager (and decorator) making a policy current in this context: this thread, or
    this asyncio task (tasks started inside the block inherit it; other tasks never see it).

    ``lc.policy(device="cuda", sync="batch")`` starts from the enclosing policy (the innermost
    ``with lc.policy`` or the process default) and overrides the given fields;
    ``lc.policy(an_execution_policy)`` uses that policy as is. The combination is validated when
    the object is created, so an invalid one raises ValueError before the block runs.

    Parameters
    ----------
    base : ExecutionPolicy or None, optional
        A complete policy to use (None: start from the enclosing policy).
    **fields
        Fields to override: device, upload, download, sync, precision, fusion, autotune.

    Raises
    ------
    TypeError
        ``base`` is not an ExecutionPolicy, or a field name is unknown.
    ValueError
        An invalid value or combination of values.
    """

    def __init__(self, base: Optional[ExecutionPolicy] = None, **fields: Any):
        if base is not None and not isinstance(base, ExecutionPolicy):
            raise TypeError("lc.policy() takes an lc.ExecutionPolicy or keyword fields")
        self._base = base
        self._fields = fields
        # Validate now (against the current policy) so mistakes surface at the `with` line.
        self.policy = _make(base if base is not None else _C.current_policy(), fields)
        self._depth = 0

    def __enter__(self) -> ExecutionPolicy:
        # Re-derive from the policy current at entry, so a reused object nests correctly.
        global _scopes_used
        p = _make(self._base if self._base is not None else _C.current_policy(), self._fields)
        if not _scopes_used:
            _C._policy_scopes_used()
            _scopes_used = True
        _scope.set((p, _scope.get()))
        self._depth += 1
        return p

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        node = _scope.get()
        _scope.set(node[1] if node is not None else None)

    def __call__(self, fn: Callable) -> Callable:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                with policy(self._base, **self._fields):
                    return await fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with policy(self._base, **self._fields):
                return fn(*args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"lc.policy({self.policy!r})"


def set_default_policy(p: Optional[ExecutionPolicy] = None, **fields: Any) -> ExecutionPolicy:
    """Sets the process default policy (used outside any ``with lc.policy``).

    ``set_default_policy(lc.ExecutionPolicy(...))`` replaces it; keyword fields override the
    current default's fields (``set_default_policy(device="cpu")``).

    Parameters
    ----------
    p : ExecutionPolicy or None, optional
        The new default (None: the current default with ``fields`` applied).
    **fields
        Fields to override (not together with ``p``).

    Returns
    -------
    ExecutionPolicy
        The new default.

    Raises
    ------
    TypeError
        Both ``p`` and fields given, ``p`` not an ExecutionPolicy, or an unknown field.
    ValueError
        An invalid value or combination of values.
    """
    if p is not None and fields:
        raise TypeError("pass either an ExecutionPolicy or keyword fields, not both")
    if p is None:
        p = _make(_C.get_default_policy(), fields)
    elif not isinstance(p, ExecutionPolicy):
        raise TypeError("set_default_policy() takes an lc.ExecutionPolicy or keyword fields")
    _C.set_default_policy(p)
    return p


def get_default_policy() -> ExecutionPolicy:
    """The process default policy.

    Returns
    -------
    ExecutionPolicy
        The policy ops use outside any ``with lc.policy(...)``.
    """
    return _C.get_default_policy()


def current_policy() -> ExecutionPolicy:
    """The policy ops use when given none.

    Returns
    -------
    ExecutionPolicy
        The innermost ``with lc.policy`` of this thread or asyncio task, else the default.
    """
    return _C.current_policy()


def explain(fn: Callable, *args: Any, **kwargs: Any) -> str:
    """Runs an op with placement explanations on and says why it ran where it did.

    Parameters
    ----------
    fn : callable
        An lc op (or a function calling lc ops: the last one is explained).
    *args, **kwargs
        Its arguments.

    Returns
    -------
    str
        The reason, e.g. "auto: estimated CPU 0.4 us vs GPU 9 us ... -> cpu".

    Raises
    ------
    Exception
        Whatever ``fn`` raises.
    """
    prev = _C._explain_enabled()
    _C._set_explain(True)
    try:
        fn(*args, **kwargs)
    finally:
        _C._set_explain(prev)
    return _C.last_op_report()["reason"]


def _shapes(shapes) -> list:
    out = []
    for s in shapes:
        if hasattr(s, "shape"):
            s = s.shape
        out.append([int(d) for d in s])
    return out


def placement(
    op: str,
    *shapes,
    policy: Optional[ExecutionPolicy] = None,
    device: Optional[str] = None,
    inputs_on_gpu: bool = False,
    gpu_available: Optional[bool] = None,
    stride: Any = 1,
    padding: Any = 0,
) -> dict:
    """Where ``op`` with these argument shapes (or arrays) would run, without running it.

    Returns a dict: device, reason, cpu_us / gpu_us (the cost model's estimates; gpu_us
    includes transfer_us, the upload + download part), flops, family, fallback.

    Parameters
    ----------
    op : str
        Op name, e.g. "matmul2d".
    *shapes : sequence of int or array
        The shape (or an array of that shape) of each argument.
    policy : ExecutionPolicy or None, optional
        The policy to decide under (None: the current policy).
    device : str or None, optional
        Override of the policy's device.
    inputs_on_gpu : bool, optional
        Whether the inputs are already resident on the GPU.
    gpu_available : bool or None, optional
        Replaces the real device query (so decisions can be explored and tested on any
        machine); None asks the runtime.
    stride, padding : int or (int, int), optional
        Conv ops' stride and padding.

    Returns
    -------
    dict
        device, reason, cpu_us, gpu_us, transfer_us, flops, family, fallback.

    Raises
    ------
    ValueError
        An unknown op, wrong shapes or an invalid policy.
    """
    p = _make(policy if policy is not None else _C.current_policy(), {} if device is None else {"device": device})
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return _C._placement(
        op, _shapes(shapes), p, inputs_on_gpu, gpu_available, sh, sw, ph, pw
    )


def explain_placement(op: str, *shapes, **kw: Any) -> str:
    """The reason string of :func:`placement`.

    Parameters
    ----------
    op : str
        Op name, e.g. "matmul2d".
    *shapes : sequence of int or array
        The shape (or an array of that shape) of each argument.
    **kw
        policy, device, inputs_on_gpu, gpu_available, stride, padding as in :func:`placement`.

    Returns
    -------
    str
        Why the op would run where it would.
    """
    return placement(op, *shapes, **kw)["reason"]
