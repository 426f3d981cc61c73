"""Devices: ``lc.Device``, ``lc.set_device``, ``lc.current_device``, ``lc.device_count``.

A device is a type ("cpu", "cuda") plus an index ("cuda:1" is the second GPU). Every host
thread has a current GPU, 0 until changed, which "cuda" without an index means: for new tensors
(``lc.Tensor(x, device="cuda")``), for ops whose inputs are all in host memory and for streams.
An op whose inputs already live on a GPU runs on that GPU, whatever is current; inputs on two
different GPUs, or a policy naming another GPU than the inputs', raise ValueError.

The streams of a device (``lc.Stream``, ``lc.Event``) are native classes; see their docstrings.
"""

from __future__ import annotations

from typing import Any, Union

from . import _lightning_core as _C

__all__ = ["Device", "set_device", "current_device", "device_count"]


class Device:
    """A device: ``Device("cuda:1")``, ``Device("cuda", 1)``, ``Device("cpu")``.

    ``type`` is "cpu" / "cuda" / "metal"; ``index`` is the device number, or None for "the
    current one" (``Device("cuda")``). ``str(d)`` is what the ops' ``device=`` accepts. A device
    is also a context manager that makes it the thread's current device::

        with lc.Device("cuda:1"):
            t = lc.Tensor(x, device="cuda")   # on cuda:1

    Parameters
    ----------
    device : str or Device
        "cpu", "cuda", "cuda:N" ("gpu" is an alias of "cuda"), or a Device to copy.
    index : int, optional
        The device number, when ``device`` names only the type.

    Raises
    ------
    TypeError
        ``device`` is not a string or Device, or ``index`` not an int.
    ValueError
        An unknown type, a malformed or negative index, or an index given twice.
    """

    __slots__ = ("type", "index", "_prev")

    def __init__(self, device: Union[str, "Device"], index: int | None = None) -> None:
        if isinstance(device, Device):
            typ, idx = device.type, device.index
        elif isinstance(device, str):
            typ, _, rest = device.partition(":")
            idx = None
            if rest:
                if not rest.isdigit():
                    raise ValueError(f"[Device] device '{device}': the index must be a number, as in \"cuda:1\"")
                idx = int(rest)
        else:
            raise TypeError(f"[Device] expects a string such as \"cuda:0\" (or a Device), got {type(device).__name__}")
        if index is not None:
            if idx is not None:
                raise ValueError(f"[Device] '{device}' already names an index; pass the index once")
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"[Device] index must be an int, got {type(index).__name__}")
            idx = index
        if typ == "gpu":
            typ = "cuda"
        if typ not in ("cpu", "cuda", "metal"):
            raise ValueError(f"[Device] unknown device type '{typ}'; use \"cpu\", \"cuda\" or \"metal\"")
        if idx is not None and idx < 0:
            raise ValueError(f"[Device] the index must be >= 0, got {idx}")
        if typ == "cpu" and idx not in (None, 0):
            raise ValueError("[Device] the CPU is device 0 (\"cpu\")")
        self.type: str = typ
        self.index: int | None = idx
        self._prev: list[int] = []

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"lc.Device('{self}')"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (TypeError, ValueError):
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __enter__(self) -> "Device":
        if self.type != "cpu":
            self._prev.append(_C._current_device(self.type))
            _C._set_device(str(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.type != "cpu" and self._prev:
            _C._set_device(f"{self.type}:{self._prev.pop()}")


def set_device(device: Union[str, Device, int]) -> None:
    """Makes ``device`` the calling thread's current GPU (what "cuda" means from now on).

    Parameters
    ----------
    device : str, Device or int
        "cuda:1", a Device, or a bare GPU number.

    Raises
    ------
    ValueError
        That GPU does not exist (the message names the ones there are), or no GPU is usable.
    """
    if isinstance(device, int) and not isinstance(device, bool):
        device = f"cuda:{device}"
    _C._set_device(str(Device(device)))


def current_device(kind: str = "cuda") -> Device:
    """The calling thread's current device of type ``kind``.

    Parameters
    ----------
    kind : str, optional
        The device type, "cuda" (default) or "cpu".

    Returns
    -------
    Device
        ``Device("cuda:0")`` unless ``set_device`` changed it (no GPU call is made).
    """
    return Device(kind, _C._current_device(kind))


def device_count(kind: str = "cuda") -> int:
    """How many devices of type ``kind`` this process can use.

    Parameters
    ----------
    kind : str, optional
        The device type, "cuda" (default) or "cpu" (always 1).

    Returns
    -------
    int
        0 without a usable GPU.
    """
    return int(_C._device_count(kind))
