"""Device metric sets in CUDA kernels, run by numba-cuda's simulator (no GPU needed).

The simulator is chosen when numba.cuda is first imported, so the kernels run in a
subprocess with NUMBA_ENABLE_CUDASIM=1 (tests/cuda_sim_worker.py); the references here
are computed with numpy from the same inputs, and the outputs are read with
prometheus_client's parser and the official OTLP messages.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba.cuda", reason="the CUDA tests need the [cuda] extra (numba-cuda)")
try:
    import numba_cuda  # noqa: F401
except ImportError:
    pytest.skip("the CUDA tests need the [cuda] extra (numba-cuda)", allow_module_level=True)

HERE = os.path.dirname(__file__)
SIZE = 150          # threads that record (3 blocks of 64 launched: some idle)


@pytest.fixture(scope="module")
def run():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    root = os.path.dirname(HERE)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, os.path.join(HERE, "cuda_sim_worker.py"), str(SIZE), "7"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout)


def test_device_set_is_an_instance_of_the_users_class(run):
    assert run["isinstance"] and run["type"] == "CudaShopKernelMetrics"


def test_counters_read_back_exactly(run):
    kinds, n = np.array(run["kinds"]), np.array(run["n"])
    expected = np.bincount(kinds[kinds < 3], minlength=3)
    counts = run["device"]["metrics"]["orders_total"]["samples"]
    got = [s["value"] for s in counts]
    assert got == expected.tolist()
    assert run["orders_new"] == expected[0]
    assert run["invalid"] == int((kinds >= 3).sum()) > 0
    items = {tuple(s["labels"].values()): s["value"]
             for s in run["device"]["metrics"]["items_total"]["samples"]}
    assert items[("new",)] == int(n.sum()) and items[("repeat",)] == 0


def test_histograms_read_back_exactly(run):
    ys = np.array([float(y) for y in run["ys"]])
    finite = ys[np.isfinite(ys)]
    s = run["spread"]
    assert s["nan"] == int(np.isnan(ys).sum()) == 1
    assert s["pos_inf"] == 1 and s["neg_inf"] == 1
    assert s["count"] == finite.size
    assert s["zero_count"] == int((np.abs(finite) <= run["zero_threshold"]).sum()) == 2
    assert math.isclose(run["spread_sum"], math.fsum(finite), rel_tol=1e-12)


def test_gauges(run):
    assert run["level"] == SIZE * 1.0 - (SIZE + 1) // 2 * 0.5
    assert run["last"] == 42.5


def _same(a, b) -> bool:
    """Equal, floats to 12 digits (a sum, and what derives from it such as the mean, may
    differ in the last bits: the threads add in another order)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b and type(a) is type(b)


def test_device_words_match_the_cpu_sets(run):
    """The same records into a CPU set give the same reading: the device words have the
    CPU layout."""
    dev, cpu = run["device"]["metrics"], run["cpu"]["metrics"]
    assert dev.keys() == cpu.keys()
    for name in dev:
        assert _same(dev[name], cpu[name]), name
    assert not _same({"x": [1.0, 2]}, {"x": [1.0, 3]})      # the comparison can fail


def test_prometheus_text(run):
    from prometheus_client.parser import text_string_to_metric_families
    fams = {f.name: f for f in text_string_to_metric_families(run["prometheus"])}
    xs = np.array(run["xs"])
    buckets = {s.labels["le"]: s.value for s in fams["latency_seconds"].samples
               if s.name == "latency_seconds_bucket"}
    for le in ("0.1", "0.5", "1.0", "5.0"):
        assert buckets[le] == int((xs <= float(le)).sum()), le
    assert buckets["+Inf"] == xs.size
    kinds = np.array(run["kinds"])
    orders = {s.labels["kind"]: s.value for s in fams["orders"].samples if s.name == "orders_total"}
    assert orders == {"new": (kinds == 0).sum(), "repeat": (kinds == 1).sum(),
                      "refund": (kinds == 2).sum()}


def test_otlp(run):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import \
        ExportMetricsServiceRequest
    req = ExportMetricsServiceRequest.FromString(bytes.fromhex(run["otlp"]))
    metrics = {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    kinds = np.array(run["kinds"])
    points = {p.attributes[0].value.string_value: p.as_int for p in metrics["orders"].sum.data_points}
    assert points == {"new": (kinds == 0).sum(), "repeat": (kinds == 1).sum(),
                      "refund": (kinds == 2).sum()}
    assert metrics["orders"].sum.is_monotonic
    hist = metrics["latency_seconds"].histogram.data_points[0]
    assert hist.count == len(run["xs"])
    assert list(hist.bucket_counts) == np.bincount(
        np.searchsorted([0.1, 0.5, 1.0, 5.0], run["xs"], side="left"), minlength=5).tolist()


def _readme_block(snippet):
    import re
    readme = open(os.path.join(os.path.dirname(HERE), "README.md")).read()
    (block,) = [b for b in re.findall(r"```py\n(.*?)```", readme, flags=re.S) if snippet in b]
    return block


def test_readme_gpu_tracing_example_runs_under_the_simulator(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_readme_block("Tracer.cuda("))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["54 ['block 0 warp 0', 'block 1 warp 0']",
                                       "[(0, 32), (1, 18)]"]


def test_readme_gpu_example_runs_under_the_simulator(tmp_path):
    block = _readme_block("Shop.cuda()")
    script = tmp_path / "example.py"
    script.write_text(block)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    first = out.stdout.splitlines()[0]
    assert first.split() == ["25", "25", "50"]
    assert 'orders_total{kind="new"} 25' in out.stdout


def test_device_timestamps_calibrate_to_host_unix_time(run):
    c = run["clock"]
    # the simulator's %globaltimer is CLOCK_MONOTONIC: raw readings are no Unix time
    assert not c["before"] - 10**9 <= c["ticks"] <= c["after"] + 10**9
    # converted, the reading falls between the host readings around its kernel
    # (give or take the calibration's own bracket)
    assert c["before"] - c["error"] <= c["unix"] <= c["after"] + c["error"]
    assert c["unix_array"] == c["unix"]
    assert 0 <= c["error"] < 10**9


def test_device_events_read_back_exactly(run):
    t = run["trace"]
    c = t["columns"]
    i = np.array(c["i"])
    expected = np.array([k for k in range(SIZE) if k != 7])     # 7's field was out of range
    order = np.argsort(i)
    assert i[order].tolist() == expected.tolist()
    assert np.array(c["x"])[order].tolist() == (expected * 0.5).tolist()
    assert np.array(c["k"])[order].tolist() == (expected % 200).tolist()
    block, warp = expected // 64, (expected % 64) // 32
    assert np.array(c["thread"])[order].tolist() == ((block << 16) | warp).tolist()
    assert np.array(c["ring"])[order].tolist() == ((block * 2 + warp) % 4).tolist()
    assert t["names"] == sorted(f"block {b} warp {w}" for b in range(3) for w in range(2)
                                if b * 64 + w * 32 < SIZE)
    ring, seq = np.array(c["ring"]), np.array(c["sequence"])
    for r in range(4):          # each ring's positions, every one delivered once
        assert sorted(seq[ring == r].tolist()) == list(range(int((ring == r).sum())))
    ts = np.array(c["timestamp"], dtype=np.int64)
    assert (ts >= t["before"] - t["error"]).all() and (ts <= t["after"] + t["error"]).all()
    assert (np.diff(ts) >= 0).all()                               # oldest first
    s = t["stats"]
    assert (s["written"], s["delivered"], s["dropped"], s["invalid"], s["pending"]) == \
        (SIZE - 1, SIZE - 1, 0, 1, 0)
    assert t["again"] == 0
    assert t["dtype"] == t["cpu_dtype"]          # the CPU tracer's array: exporters unchanged
    assert t["frame_rows"] == SIZE - 1
    chrome = json.loads(t["chrome"])
    assert sum(e.get("name") == "step" for e in chrome["traceEvents"]) == SIZE - 1


def test_device_ring_overflow_is_counted_exactly(run):
    t = run["trace_lapped"]
    ring, seq = np.array(t["columns"]["ring"]), np.array(t["columns"]["sequence"])
    s = t["stats"]
    assert s["written"] == SIZE - 1 and s["invalid"] == 1
    assert s["written"] == s["delivered"] + s["dropped"]
    for r, per in enumerate(s["rings"]):
        assert per["written"] == per["delivered"] + per["dropped"]
        assert per["delivered"] == min(per["written"], 8)
        # what survives is each ring's newest 8 positions
        assert sorted(seq[ring == r].tolist()) == list(range(per["written"] - per["delivered"],
                                                          per["written"]))
    i = np.array(t["columns"]["i"])
    assert np.array(t["columns"]["x"]).tolist() == (i * 0.5).tolist()


def test_device_spans_nest_and_export_through_otlp_traces(run):
    """A kernel of 4 warps (a ring each) opens a span per warp and two nested ones in it;
    the drained events pair into spans and the OTLP request (the official messages)
    has each warp's steps as children of its launch, in its trace."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import \
        ExportTraceServiceRequest
    t = run["spans"]
    req = ExportTraceServiceRequest.FromString(bytes.fromhex(t["otlp"]))
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    attrs = [{a.key: a.value.int_value for a in s.attributes} for s in spans]
    launches = {s.span_id: (s, a) for s, a in zip(spans, attrs) if s.name == "launch"}
    steps = [(s, a) for s, a in zip(spans, attrs) if s.name == "step"]
    assert len(launches) == 4 and len(steps) == 8
    assert sorted(a["warp_work.thread"] for _, a in launches.values()) == \
        [0, 1, 1 << 16, 1 << 16 | 1]                      # (block, warp) pairs
    assert len({s.span_id for s in spans}) == 12 and len({s.trace_id for s in spans}) == 4
    for s, a in launches.values():
        assert s.parent_span_id == b"" and a["warp_work.depth"] == 0
        assert a["warp_work.block"] == a["warp_work.thread"] >> 16
        assert s.trace_id == t["tracer_id"].to_bytes(8, "big") + s.span_id
    for s, a in steps:
        parent, pa = launches[s.parent_span_id]
        assert s.trace_id == parent.trace_id and a["warp_work.depth"] == 1
        assert a["warp_work.thread"] == pa["warp_work.thread"]
        assert parent.start_time_unix_nano <= s.start_time_unix_nano <= \
            s.end_time_unix_nano <= parent.end_time_unix_nano
    assert sorted(a["warp_work.k"] for _, a in steps) == [0, 0, 0, 0, 1, 1, 1, 1]
    # each lane's points are events of its warp's step spans: lanes 0..99 of blocks 0, 1
    points = sorted(e.attributes[0].value.int_value for s, _ in steps for e in s.events)
    assert points == sorted(list(range(100)) * 2)
    st = t["stats"]
    assert t["events"] == 4 * 6 + 200 == st["delivered"] == st["written"]
    assert st["invalid"] == st["span_refused"] == 0


def test_device_spans_of_warps_sharing_a_ring_are_refused_and_counted(run):
    """Two warps on one ring both begin a span before either ends it (a syncthreads in
    between): the ring's stack is the first's, the second's span is refused and counted,
    and its end changes nothing."""
    s = run["spans"]["shared"]
    assert s["closed"] == 1
    assert s["stats"]["span_refused"] == 1 and s["stats"]["invalid"] == 0
    assert s["stats"]["written"] == 2                    # the one span's begin and end


def test_device_span_ends_without_a_begin_are_counted_as_invalid(run):
    """A warp that ends a span it never began is counted as invalid, as on the CPU; the
    end of a span refused on a shared ring is not."""
    s = run["spans"]["unmatched"]
    assert s["alone"] == 2                      # two warps, one end each
    assert s["refused"] == 2 and s["after_refused"] == 2, s


def test_device_types_switch_on_and_off(run):
    """enabled_events and enable()/disable() between launches: a type that is off writes
    nothing; a span of it is still pushed, so the events inside go to the span around it."""
    s = run["spans"]["switched"]
    assert s["first"] == ["launch"] * 2 + ["step"] * 4          # one warp, no points
    assert s["second"] == ["launch"] * 2 + ["point"] * 64       # lanes 0..31, twice
    assert s["rates"] == {"launch": 1.0, "step": 0.0, "point": 1.0}
    assert s["second_spans"] == [["launch", 64]] and s["invalid"] == 0
