"""The library's messages through Python's ``logging`` and ``warnings``.

* Warnings (a cost-model calibration that failed, an auto-tune cache that cannot be read or
  written, a GEMM tuning failure, a session that could not synchronise on close) are
  ``RuntimeWarning`` raised with ``warnings.warn``: filters apply, and ``python -W error`` (or
  ``warnings.simplefilter("error")``) makes the call that caused one raise it.
* Notes below warnings (an op that fell back to the CPU, ...) are records of the
  ``"lightning_core"`` logger. ``LC_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR or a number) sets
  its level at import and, when no handler is configured, adds one printing to stderr;
  ``lc.set_log_level(level)`` changes it later (the library then builds only the messages
  at or above the level).
"""

from __future__ import annotations

import logging
import os
import warnings

from . import _lightning_core as _C

__all__ = ["set_log_level", "logger"]

logger = logging.getLogger("lightning_core")


def _parse(level: int | str) -> int:
    if isinstance(level, int):
        return level
    s = str(level).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    v = logging.getLevelName(s.upper())
    if not isinstance(v, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or a number")
    return v


def set_log_level(level: int | str) -> None:
    """Sets the level of the ``"lightning_core"`` logger and of the library's messages.

    Parameters
    ----------
    level : int or str
        A ``logging`` level: ``"DEBUG"``, ``"INFO"``, ``"WARNING"``, ``"ERROR"`` or a number.

    Raises
    ------
    ValueError
        An unknown level name.
    """
    lv = _parse(level)
    logger.setLevel(lv)
    _C._set_log_threshold(lv)


def _configure() -> None:
    _C._set_logger(logger)
    env = os.environ.get("LC_LOG_LEVEL", "").strip()
    if not env:
        _C._set_log_threshold(logger.getEffectiveLevel())
        return
    try:
        set_log_level(env)
    except ValueError as e:
        warnings.warn(f"lightning_core: LC_LOG_LEVEL: {e}; using WARNING", RuntimeWarning,
                      stacklevel=3)
        set_log_level(logging.WARNING)
        return
    if not logger.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("lightning_core: %(levelname)s: %(message)s"))
        logger.addHandler(h)


_configure()
