"""Drained events can be kept: saved with np.save and loaded without pickle, read by every
exporter and by to_dataframe (importable from the package), joined to their spans by
span_id, with the OS thread id; a Chrome trace file is valid after every export."""

import io
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from numba import njit

from engram_numba import Event, EventSet, Span, Tracer, TracingConfig
from engram_numba.export.chrome import ChromeTraceExporter, chrome_trace
from engram_numba.export.json import events_to_jsonl
from engram_numba.export.loki import push_body
from engram_numba.export.otlp import logs_request


class Kept(EventSet, name="kept"):
    tick = Event("A tick", k=np.uint32, weight=np.float32)
    job = Span("A job", n=np.uint16)
    part = Span("Part of a job", i=np.uint8)


@njit(nogil=True)
def work(tr, jobs):
    for j in range(jobs):
        tr.job.begin(j)
        tr.tick.emit(100 * j, 0.5)
        for i in range(2):
            tr.part.begin(i)
            tr.tick.emit(100 * j + i + 1, 0.25)
            tr.part.end()
        tr.job.end()
    tr.tick.emit(999, 1.0)                   # outside every span


def _drained():
    tr = Tracer(Kept, TracingConfig(ring_buffer_size=1024, max_threads=4))
    work(tr, 3)
    other = []
    t = threading.Thread(target=lambda: (work(tr, 1), other.append(threading.get_native_id())))
    t.start()
    t.join()
    return tr, tr.drain(), other[0]


def _roundtrip(events):
    buf = io.BytesIO()
    np.save(buf, events)
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


def test_np_save_and_load_keep_the_events_and_every_reader_takes_them():
    _, ev, _ = _drained()
    back = _roundtrip(ev)
    assert back.dtype == ev.dtype and np.array_equal(back, ev)
    assert events_to_jsonl(back) == events_to_jsonl(ev)
    assert push_body(back) == push_body(ev)
    assert logs_request(back) == logs_request(ev) or len(logs_request(back)) == len(
        logs_request(ev))                     # the request carries its own export time
    doc, again = chrome_trace(back), chrome_trace(ev)
    assert doc["traceEvents"] == again["traceEvents"]
    import pandas.testing as pdt
    from engram_numba import to_dataframe
    for name, frame in to_dataframe(ev).items():
        pdt.assert_frame_equal(to_dataframe(back)[name], frame)
    assert np.concatenate([back, ev]).dtype == ev.dtype   # numpy keeps the set's dtype


def test_another_process_reads_a_saved_file_if_it_declares_the_set(tmp_path):
    _, ev, _ = _drained()
    path = tmp_path / "events.npy"
    np.save(path, ev)
    declare = (f"import numpy as np\nfrom engram_numba import Event, EventSet, Span\n"
               f"class Kept(EventSet, name='kept'):\n"
               f"    tick = Event('A tick', k=np.uint32, weight=np.float32)\n"
               f"    job = Span('A job', n=np.uint16)\n"
               f"    part = Span('Part of a job', i=np.uint8)\n")
    read = (f"from engram_numba import to_dataframe\n"
            f"ev = np.load({str(path)!r}, allow_pickle=False)\n"
            f"print(len(to_dataframe(ev)['tick']))\n")
    ok = subprocess.run([sys.executable, "-c", declare + read], capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert int(ok.stdout) == int((ev["event_type"] == 0).sum())
    bare = subprocess.run([sys.executable, "-c", "import numpy as np\n" + read],
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0
    assert "event set 'kept'" in bare.stderr and "import the module that declares" in bare.stderr


def test_event_frames_join_their_spans_and_name_the_os_thread():
    from engram_numba import to_dataframe
    _, ev, other = _drained()
    frames = to_dataframe(ev)
    ticks, jobs, parts = frames["tick"], frames["job"], frames["part"]
    assert {"span_id", "trace_id", "thread", "ring"} <= set(ticks.columns)
    for col in ("thread", "ring", "span_id", "trace_id"):
        assert ticks[col].dtype == jobs[col].dtype == parts[col].dtype, col
    mine = threading.get_native_id()
    assert set(ticks["thread"]) == {mine, other} and set(jobs["thread"]) == {mine, other}
    # every tick of a job is in the job itself (k = 100 j) or in one of its parts
    spans = np.concatenate([jobs["span_id"], parts["span_id"]])
    inside = ticks[ticks["span_id"] != 0]
    assert set(inside["span_id"]) <= set(spans) and len(inside) == 4 * 3     # 4 jobs
    assert (ticks[ticks["k"] == 999]["span_id"] == 0).all()
    assert ticks[ticks["k"] == 999]["trace_id"].isna().all()
    joined = inside.merge(parts, on="span_id", suffixes=("", "_part"))
    assert ((joined["k"] % 100) == joined["i"] + 1).all() and len(joined) == 4 * 2
    assert (joined["thread"] == joined["thread_part"]).all()
    # the trace of every event is its job's: a part's trace id is the (zero, without the
    # tracer) tracer id followed by its parent job's span_id
    def root(trace):
        assert len(trace) == 32 and trace[:16] == "0" * 16
        return int(trace[16:], 16)
    assert set(parts["trace_id"].map(root)) == set(jobs["span_id"])
    assert (parts["trace_id"].map(root) == parts["parent_span_id"]).all()
    by_job = dict(zip(jobs["span_id"], jobs["n"]))
    assert [by_job[root(t)] for t in inside["trace_id"]] == [k // 100 for k in inside["k"]]


def test_the_chrome_file_is_a_valid_trace_after_every_export(tmp_path):
    tr, _, _ = _drained()
    path = tmp_path / "trace.json"
    exporter = ChromeTraceExporter(str(path))
    assert json.loads(path.read_text())["traceEvents"] == []
    seen = 0
    for batch in range(3):
        work(tr, 2)
        ev = tr.drain()
        exporter.export(ev)
        seen += ev.size
        doc = json.loads(path.read_text())               # valid JSON, before any shutdown
        instants = [e for e in doc["traceEvents"] if e["ph"] == "i"]
        spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
        assert doc["otherData"]["events"] == seen
        assert len(instants) == 7 * (batch + 1) and len(spans) == 6 * (batch + 1)
        assert {e["tid"] for e in instants} == {threading.get_native_id()}
    exporter.shutdown()
    final = json.loads(path.read_text())
    assert any(e["ph"] == "C" for e in final["traceEvents"])


def test_a_field_cannot_take_a_name_the_records_use():
    for name in ("ring", "trace_id", "thread"):
        with pytest.raises(ValueError, match="reserved"):
            Event("x", **{name: np.uint8})
