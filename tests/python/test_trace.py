"""Runtime trace from Python: events of a known op sequence, the timeline (groups, sorting,
hotspots), the Chrome/Perfetto export's schema, the ring buffer's bound, threads, and (on a GPU)
uploads/downloads/syncs with device times on the CUDA stream track."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import lightning_core as lc

GROUP_FIELDS = [
    "count", "total_ns", "mean_ns", "min_ns", "max_ns", "total_delta_next_ns",
    "mean_delta_next_ns", "device_count", "device_total_ns", "device_mean_ns", "bytes", "share",
]
HOTSPOT_KEYS = {
    "seq", "kind", "op", "op_path", "device", "path", "shapes", "policy", "ns", "timing",
    "host_ns", "device_ns", "delta_next_ns", "thread", "stream", "bytes",
}
EVENT_KEYS = {
    "seq", "kind", "op", "for_op", "device", "path", "impl", "op_path", "shapes", "policy",
    "host_begin_ns", "host_end_ns", "host_ns", "device_ns", "device_begin_ns", "thread", "stream",
    "bytes",
}


@pytest.fixture(autouse=True)
def clean_trace():
    cap = lc.runtime_trace_capacity()
    lc.runtime_trace_enable(False)
    lc.runtime_trace_clear()
    yield
    lc.runtime_trace_enable(False)
    lc.runtime_trace_set_capacity(cap)
    lc.runtime_trace_clear()


def f32(*shape):
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) / 7.0


def test_disabled_records_nothing():
    assert not lc.runtime_trace_enabled()
    lc.vector_add(f32(8), f32(8), "cpu")
    assert lc.runtime_trace_events() == []


def test_known_sequence_on_cpu():
    a, b, v, s = f32(4, 3), f32(3, 5), f32(16), f32(2, 6)
    lc.runtime_trace_enable(True)
    assert lc.runtime_trace_enabled()
    lc.matmul2d(a, b, "cpu")
    lc.vector_add(v, v, "cpu")
    lc.softmax(s, "cpu", policy=lc.ExecutionPolicy(device="cpu", sync="batch"))
    lc.runtime_trace_enable(False)
    lc.relu(v, "cpu")  # after disabling: not recorded

    ev = lc.runtime_trace_events()
    assert [e["op"] for e in ev] == ["matmul2d", "vector_add", "softmax"]
    assert [e["shapes"] for e in ev] == ["[4, 3] [3, 5]", "[16] [16]", "[2, 6]"]
    assert [e["policy"] for e in ev] == [
        "upload=always download=yes sync=per_call",
        "upload=always download=yes sync=per_call",
        "upload=always download=yes sync=batch",
    ]
    for i, e in enumerate(ev):
        assert set(e) == EVENT_KEYS
        assert e["kind"] == "op"
        assert e["device"] == "cpu" and e["path"] == "direct"
        assert e["op_path"] == f"{e['op']}|cpu|direct"
        assert e["stream"] == -1 and e["device_ns"] == -1.0 and e["bytes"] == 0
        assert e["host_ns"] == e["host_end_ns"] - e["host_begin_ns"] >= 0
        if i:
            assert e["seq"] == ev[i - 1]["seq"] + 1
            assert e["host_begin_ns"] >= ev[i - 1]["host_end_ns"]
    assert len({e["thread"] for e in ev}) == 1


def test_timeline_groups_and_sorting():
    a, v = f32(48, 48), f32(32)
    with lc.runtime_trace():
        for _ in range(6):
            lc.matmul2d(a, a, "cpu")
        for _ in range(3):
            lc.relu(v, "cpu")
        lc.gelu(v, "cpu")

    rep = lc.runtime_trace_timeline(group_by="op_path", group_sort_by="count",
                                    group_descending=True, hotspot_top_k=8)
    assert rep["event_count"] == 10 and rep["dropped"] == 0
    assert rep["group_by"] == "op_path" and rep["group_sort_by"] == "count"
    keys = [g["key"] for g in rep["groups"]]
    assert keys == ["matmul2d|cpu|direct", "relu|cpu|direct", "gelu|cpu|direct"]
    assert [g["count"] for g in rep["groups"]] == [6, 3, 1]
    for g in rep["groups"]:
        assert set(GROUP_FIELDS) | {"key"} == set(g)
        assert g["min_ns"] <= g["mean_ns"] <= g["max_ns"]
        assert g["mean_ns"] == pytest.approx(g["total_ns"] / g["count"])
        assert g["mean_delta_next_ns"] == pytest.approx(g["total_delta_next_ns"] / g["count"])
        assert g["total_delta_next_ns"] >= 0
        assert g["device_total_ns"] == -1.0  # CPU: no device clock
    assert sum(g["share"] for g in rep["groups"]) == pytest.approx(1.0)
    assert sum(g["total_ns"] for g in rep["groups"]) == rep["total_host_ns"]
    # The gap to the next event: the thread's last event (gelu) has none.
    assert rep["groups"][2]["total_delta_next_ns"] == 0

    # Ascending by count reverses it; every numeric field sorts consistently.
    asc = lc.runtime_trace_timeline(group_by="op", group_sort_by="count", group_descending=False)
    assert [g["key"] for g in asc["groups"]] == ["gelu", "relu", "matmul2d"]
    for field in GROUP_FIELDS:
        for desc in (True, False):
            vals = [g[field] for g in lc.runtime_trace_timeline("op", field, desc, 0)["groups"]]
            assert vals == sorted(vals, reverse=desc), (field, desc)

    by_dev = lc.runtime_trace_timeline(group_by="device")
    assert [(g["key"], g["count"]) for g in by_dev["groups"]] == [("cpu", 10)]


def test_timeline_validates_arguments():
    with pytest.raises(ValueError, match='"op_path"') as e:
        lc.runtime_trace_timeline(group_by="kernel")
    assert '"device"' in str(e.value) and '"op"' in str(e.value)
    with pytest.raises(ValueError) as e:
        lc.runtime_trace_timeline(group_sort_by="speed")
    for field in GROUP_FIELDS:
        assert f'"{field}"' in str(e.value)
    assert sorted(lc.runtime_trace_group_fields()) == sorted(GROUP_FIELDS)
    with pytest.raises(ValueError, match="hotspot_top_k"):
        lc.runtime_trace_timeline(hotspot_top_k=-1)
    empty = lc.runtime_trace_timeline()
    assert empty["groups"] == [] and empty["hotspots"] == [] and empty["event_count"] == 0


def test_hotspots_are_the_slowest_events():
    small, big = f32(8, 8), f32(160, 160)
    with lc.runtime_trace():
        for _ in range(4):
            lc.matmul2d(small, small, "cpu")
        lc.matmul2d(big, big, "cpu")
        for _ in range(4):
            lc.relu(small, "cpu")
    rep = lc.runtime_trace_timeline(group_by="op", hotspot_top_k=3)
    hs = rep["hotspots"]
    assert len(hs) == 3
    for h in hs:
        assert set(h) == HOTSPOT_KEYS
        assert h["timing"] == "host" and h["ns"] == h["host_ns"]
    assert [h["ns"] for h in hs] == sorted((h["ns"] for h in hs), reverse=True)
    events = lc.runtime_trace_events()
    assert hs[0]["ns"] == max(e["host_ns"] for e in events)
    by_seq = {e["seq"]: e for e in events}
    for h in hs:
        e = by_seq[h["seq"]]
        assert (h["op"], h["op_path"], h["shapes"]) == (e["op"], e["op_path"], e["shapes"])
    assert len(lc.runtime_trace_timeline(hotspot_top_k=100)["hotspots"]) == 9
    assert lc.runtime_trace_timeline(hotspot_top_k=0)["hotspots"] == []


def test_chrome_export_schema(tmp_path):
    a = f32(16, 16)
    with lc.runtime_trace():
        lc.matmul2d(a, a, "cpu")
        lc.softmax(a, "cpu")
        t = threading.Thread(target=lambda: lc.relu(a, "cpu"))
        t.start()
        t.join()
    path = tmp_path / "trace.json"
    n = lc.runtime_trace_export_chrome(str(path))
    assert n == 3
    doc = json.loads(path.read_text())
    assert doc == json.loads(lc.runtime_trace_chrome_json())
    assert doc["displayTimeUnit"] == "ns"
    assert isinstance(doc["otherData"], dict)
    evs = doc["traceEvents"]
    spans = [e for e in evs if e["ph"] == "X"]
    meta = [e for e in evs if e["ph"] == "M"]
    assert [e["name"] for e in spans] == ["matmul2d", "softmax", "relu"]
    for e in spans:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(e)
        assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float))
        assert e["ts"] >= 0 and e["dur"] >= 0
        assert e["cat"] == "op" and e["pid"] == 1
        assert e["args"]["op_path"] == f"{e['name']}|cpu|direct"
    assert spans[0]["ts"] == 0  # microseconds from the first event
    # ts/dur are microseconds: they match the events' nanoseconds.
    raw = lc.runtime_trace_events()
    assert spans[1]["dur"] == pytest.approx(raw[1]["host_ns"] / 1000, abs=1e-3)
    assert spans[1]["ts"] == pytest.approx((raw[1]["host_begin_ns"] - raw[0]["host_begin_ns"]) / 1000,
                                           abs=1e-3)
    # One track per host thread, each named.
    assert spans[0]["tid"] == spans[1]["tid"] != spans[2]["tid"]
    named = {(m["pid"], m["tid"]) for m in meta if m["name"] == "thread_name"}
    assert {(1, s["tid"]) for s in spans} == named
    assert any(m["name"] == "process_name" and m["pid"] == 1 for m in meta)
    with pytest.raises(ValueError):
        lc.runtime_trace_export_chrome(str(tmp_path / "missing-dir" / "trace.json"))


def test_ring_buffer_is_bounded():
    v = f32(4)
    lc.runtime_trace_set_capacity(5)
    assert lc.runtime_trace_capacity() == 5
    with lc.runtime_trace():
        for i in range(12):
            (lc.relu if i % 2 else lc.gelu)(v, "cpu")
    ev = lc.runtime_trace_events()
    assert len(ev) == lc.runtime_trace_size() == 5
    assert lc.runtime_trace_dropped() == 7
    assert [e["op"] for e in ev] == ["relu", "gelu", "relu", "gelu", "relu"]  # the newest 5
    assert [e["seq"] for e in ev] == list(range(ev[0]["seq"], ev[0]["seq"] + 5))
    assert lc.runtime_trace_timeline()["dropped"] == 7
    lc.runtime_trace_set_capacity(2)
    assert [e["seq"] for e in lc.runtime_trace_events()] == [ev[3]["seq"], ev[4]["seq"]]
    lc.runtime_trace_clear()
    assert lc.runtime_trace_size() == 0 and lc.runtime_trace_dropped() == 0


def test_concurrent_recording_from_threads():
    n_threads, n_ops = 6, 150
    barrier = threading.Barrier(n_threads)

    def work(i):
        x = f32(i + 1)
        barrier.wait()
        for _ in range(n_ops):
            lc.relu(x, "cpu")

    with lc.runtime_trace():
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ev = lc.runtime_trace_events()
    assert len(ev) == n_threads * n_ops and lc.runtime_trace_dropped() == 0
    assert [e["seq"] for e in ev] == list(range(ev[0]["seq"], ev[0]["seq"] + len(ev)))
    per_thread = {}
    for e in ev:
        per_thread.setdefault(e["thread"], []).append(e)
    assert len(per_thread) == n_threads
    assert sorted({es[0]["shapes"] for es in per_thread.values()}) == sorted(
        f"[{i + 1}]" for i in range(n_threads))
    for es in per_thread.values():
        assert len(es) == n_ops and len({e["shapes"] for e in es}) == 1
        assert all(b["host_begin_ns"] >= a["host_end_ns"] for a, b in zip(es, es[1:]))


def test_runtime_trace_context_and_report():
    lc.runtime_trace_enable(False)
    v = f32(8)
    with lc.runtime_trace(capacity=3) as tr:
        assert lc.runtime_trace_enabled() and lc.runtime_trace_capacity() == 3
        for _ in range(4):
            lc.relu(v, "cpu")
    assert not lc.runtime_trace_enabled()  # previous state restored
    assert len(tr.events()) == 3
    text = lc.format_timeline(tr.timeline(group_by="op_path"))
    assert "relu|cpu|direct" in text and "hotspots:" in text and "1 dropped" in text
    tr.restore_capacity()
    assert lc.runtime_trace_capacity() != 3
    with pytest.raises(ValueError):
        lc.runtime_trace(capacity=0)


@pytest.mark.gpu
def test_cuda_transfers_syncs_and_device_times(tmp_path):
    a, b = f32(256, 128), f32(128, 64)
    with lc.runtime_trace():
        lc.matmul2d(a, b, "cuda")  # upload a, upload b, op, download
        da, db = lc.Tensor(a, device="cuda"), lc.Tensor(b, device="cuda")
        lc.matmul2d(da, db, "cuda", policy=lc.ExecutionPolicy(device="cuda", download=False))
    ev = lc.runtime_trace_events()
    assert [e["kind"] for e in ev] == ["upload", "upload", "op", "download", "op", "sync"]
    assert [e["bytes"] for e in ev[:2]] == [a.nbytes, b.nbytes]
    assert ev[3]["bytes"] == 256 * 64 * 4
    assert all(e["for_op"] == "matmul2d" and e["device"] == "cuda" for e in ev)
    for op in (ev[2], ev[4]):
        assert op["op_path"] == "matmul2d|cuda|direct" and op["stream"] == 0
        assert op["device_ns"] > 0 and op["device_begin_ns"] > 0
        assert op["shapes"] == "[256, 128] [128, 64]"
    assert ev[4]["policy"] == "upload=always download=no sync=per_call"
    rep = lc.runtime_trace_timeline(group_by="op_path")
    mm = next(g for g in rep["groups"] if g["key"] == "matmul2d|cuda|direct")
    assert mm["device_count"] == 2 and mm["device_total_ns"] > 0
    doc = json.loads(lc.runtime_trace_chrome_json())
    dev = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == 2]
    assert [e["name"] for e in dev] == ["matmul2d", "matmul2d"]
    assert all(e["tid"] == 0 and e["cat"] == "device" for e in dev)
    assert any(m["ph"] == "M" and m["args"]["name"] == "cuda stream 0" for m in doc["traceEvents"])
