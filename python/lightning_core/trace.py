"""Runtime trace helpers on top of the native runtime_trace_* functions.

The recording, the ring buffer, the timeline and the Chrome export are native (C++); this
module adds a scoped way to trace a block and a plain-text report of a timeline:

    with lc.runtime_trace() as tr:          # clears, enables, restores the previous state
        for _ in range(40):
            lc.matmul2d(a, b)
    print(lc.format_timeline(tr.timeline(group_by="op_path")))
    tr.export_chrome("trace.json")          # open in ui.perfetto.dev
"""

from ._lightning_core import (
    runtime_trace_capacity,
    runtime_trace_clear,
    runtime_trace_enable,
    runtime_trace_enabled,
    runtime_trace_events,
    runtime_trace_export_chrome,
    runtime_trace_set_capacity,
    runtime_trace_timeline,
)

__all__ = ["runtime_trace", "format_timeline"]


class runtime_trace:  # noqa: N801 (used like a function: `with lc.runtime_trace():`)
    """Traces the ops of a `with` block.

    On exit tracing returns to its previous on/off state; the events stay in the buffer for
    timeline()/events()/export_chrome().

    Parameters
    ----------
    clear : bool, optional
        Drop earlier events first (default True).
    capacity : int or None, optional
        Ring-buffer size for the block (``restore_capacity()`` puts the old one back).

    Raises
    ------
    ValueError
        ``capacity`` is not positive.
    """

    def __init__(self, clear=True, capacity=None):
        if capacity is not None and int(capacity) <= 0:
            raise ValueError(f"runtime_trace: capacity must be > 0 (got {capacity})")
        self._clear = clear
        self._capacity = capacity
        self._was_enabled = False
        self._old_capacity = None

    def __enter__(self):
        self._was_enabled = runtime_trace_enabled()
        if self._capacity is not None:
            self._old_capacity = runtime_trace_capacity()
            runtime_trace_set_capacity(int(self._capacity))
        if self._clear:
            runtime_trace_clear()
        runtime_trace_enable(True)
        return self

    def __exit__(self, *exc):
        runtime_trace_enable(self._was_enabled)
        return False

    def restore_capacity(self):
        """Puts back the capacity that was set before the block (drops events past it)."""
        if self._old_capacity is not None:
            runtime_trace_set_capacity(self._old_capacity)
            self._old_capacity = None

    @staticmethod
    def events():
        return runtime_trace_events()

    @staticmethod
    def timeline(group_by="op", group_sort_by="total_ns", group_descending=True, hotspot_top_k=8):
        return runtime_trace_timeline(group_by, group_sort_by, group_descending, hotspot_top_k)

    @staticmethod
    def export_chrome(path):
        return runtime_trace_export_chrome(str(path))


def _ns(v):
    if v is None or v < 0:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.1f} us"
    return f"{v:.0f} ns"


def format_timeline(report, max_groups=20):
    """A plain-text table of a timeline: its groups, then its hotspots.

    Parameters
    ----------
    report : dict
        A ``runtime_trace_timeline()`` (or ``runtime_trace.timeline()``) result.
    max_groups : int, optional
        Rows of groups to show (default 20).

    Returns
    -------
    str
        The table.
    """
    lines = [
        f"{report['event_count']} events ({report['dropped']} dropped), span {_ns(report['span_ns'])}, "
        f"grouped by {report['group_by']}, sorted by {report['group_sort_by']}"
        f"{' desc' if report['group_descending'] else ' asc'}",
    ]
    groups = report["groups"][:max_groups]
    width = max([len("group")] + [len(g["key"]) for g in groups])
    lines.append(f"{'group':<{width}}  {'count':>7}  {'total':>10}  {'mean':>10}  {'gap->next':>10}  "
                 f"{'device':>10}  {'share':>6}")
    for g in groups:
        lines.append(f"{g['key']:<{width}}  {g['count']:>7}  {_ns(g['total_ns']):>10}  "
                     f"{_ns(g['mean_ns']):>10}  {_ns(g['total_delta_next_ns']):>10}  "
                     f"{_ns(g['device_total_ns']):>10}  {100 * g['share']:>5.1f}%")
    if report["hotspots"]:
        lines.append("hotspots:")
        for h in report["hotspots"]:
            lines.append(f"  #{h['seq']:<6} {h['op_path']:<32} {_ns(h['ns']):>10} ({h['timing']})  "
                         f"{h['shapes']}")
    return "\n".join(lines)
