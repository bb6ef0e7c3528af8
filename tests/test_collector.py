"""TraceCollector: delivery, retries, bounded queues, permanent errors, shutdown, health."""

import time

import numpy as np
import pytest
from numba import njit

from engram_numba import (CognitivePatternMetrics, CognitiveTracer, PermanentExportError,
                          TraceCollector, TracingConfig)
from engram_numba.tracing.health import TopKeys


def tracer(**kw):
    kw.setdefault("ring_buffer_size", 1 << 14)
    kw.setdefault("max_threads", 4)
    return CognitiveTracer(TracingConfig(**kw))


@njit(nogil=True)
def record(m, tr, start, n):
    for i in range(start, start + n):
        m.record_priming(i % 3, 0.5)
        tr.trace_priming(i % 3, 0.5, i % 4, i % 4 + 100)
        tr.trace_interference(0, 0.5, i % 2, 1)


class Sink:
    def __init__(self, failures=0, exc=ConnectionError("backend down")):
        self.failures, self.exc = failures, exc
        self.batches = []
        self.calls = 0

    def __call__(self, events):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        self.batches.append(events.copy())

    @property
    def events(self):
        return np.concatenate(self.batches) if self.batches else np.empty(0)


def test_batches_reach_every_exporter_in_order():
    tr, m = tracer(), CognitivePatternMetrics()
    a, b = Sink(), Sink()
    c = TraceCollector(tr, [a, b], batch_size=300)
    record(m, tr, 0, 1000)
    c.flush()
    assert [x.size for x in a.batches] == [300] * 6 + [200]
    assert np.array_equal(a.events, b.events)
    assert np.all(np.diff(a.events["timestamp"].astype(np.int64)) >= 0)
    assert c.stats()["exporters"]["Sink"]["exported_events"] == 2000


def test_a_failing_exporter_is_retried_without_loss_and_others_carry_on():
    tr, m = tracer(), CognitivePatternMetrics()
    flaky, healthy = Sink(failures=3), Sink()
    healthy.name = "healthy"
    c = TraceCollector(tr, [flaky, healthy], batch_size=500, backoff=(0.01, 0.05))
    record(m, tr, 0, 1000)
    c.flush()
    assert healthy.events.size == 2000 and flaky.events.size == 0
    deadline = time.monotonic() + 60          # a guard only
    while flaky.events.size < 2000 and time.monotonic() < deadline:
        time.sleep(0.02)
        c.flush()
    st = c.stats()["exporters"]["Sink"]
    assert flaky.events.size == 2000 and st["failures"] == 3 and st["dropped_events"] == 0
    assert np.array_equal(flaky.events, healthy.events)


def test_a_full_queue_drops_the_oldest_batch_and_counts_exactly():
    tr, m = tracer(), CognitivePatternMetrics()
    down = Sink(failures=10 ** 9)
    c = TraceCollector(tr, [down], batch_size=100, max_queued_batches=3, backoff=(60, 60))
    record(m, tr, 0, 250)          # 500 events -> 5 batches, queue keeps 3
    c.flush()
    st = c.stats()["exporters"]["Sink"]
    assert st["dropped_events"] == 200 and st["queued_events"] == 300
    kept = np.concatenate(list(c.exporters[0].queue))
    assert kept["sequence"].min() >= 200           # the oldest went first


def test_permanent_errors_are_not_retried():
    tr, m = tracer(), CognitivePatternMetrics()
    rejecting = Sink(failures=10 ** 9, exc=PermanentExportError("400: malformed"))
    c = TraceCollector(tr, [rejecting], batch_size=100)
    record(m, tr, 0, 100)
    c.flush()
    c.flush()
    st = c.stats()["exporters"]["Sink"]
    assert rejecting.calls == 2 and st["dropped_events"] == 200 and st["queued_events"] == 0
    assert st["last_error"] == "400: malformed"


def test_background_thread_and_graceful_stop_deliver_everything():
    tr, m = tracer(export_interval_ms=50), CognitivePatternMetrics()
    sink = Sink()
    with TraceCollector(tr, [sink], metrics=m):
        record(m, tr, 0, 500)
        time.sleep(0.2)
        record(m, tr, 500, 500)       # drained by the final drain at stop
    assert sink.events.size == 2000
    assert tr.stats()["total"]["pending"] == 0


def test_health_metrics():
    tr = tracer(ring_buffer_size=256, export_interval_ms=10_000)
    m = CognitivePatternMetrics()
    c = TraceCollector(tr, [], metrics=m)
    c.hooks[0].on_start(c)            # what start() does: calibrate the overhead estimate
    record(m, tr, 0, 1000)          # 2000 events into a 256-slot ring: 1744 overwritten
    c.flush()
    assert m.events_dropped.value() == 2000 - 256
    assert m.event_buffer_utilization.value() == 100.0
    pairs = dict(m.priming_node_pairs.items())
    assert len(pairs) <= 10 and all(b == a + 100 for a, b in pairs)
    assert set(dict(m.interference_episode_pairs.items())) <= {(0,), (1,)}
    record(m, tr, 0, 10)
    c.flush()
    assert 0.0 <= m.overhead_percent.value() <= 100.0


def test_top_keys_keeps_heavy_hitters_in_bounded_memory():
    rng = np.random.default_rng(0)
    heavy = np.repeat(np.arange(5, dtype=np.uint64), 2000)
    noise = rng.integers(1000, 10 ** 9, 50_000, dtype=np.uint64)
    stream = np.concatenate([heavy, noise])
    rng.shuffle(stream)
    top = TopKeys(capacity=256)
    for chunk in np.array_split(stream, 20):
        top.update(chunk)
    assert len(top.counts) <= 256
    best = top.top(5)
    assert sorted(k[0] for k, _ in best) == [0, 1, 2, 3, 4]
    for _, count in best:
        assert 2000 <= count <= 2000 + top.error_bound


def test_interpreter_exit_drains_and_delivers(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "events.jsonl"
    script = f'''
from numba import njit
from engram_numba import CognitiveTracer, TracingConfig, TraceCollector
from engram_numba.export.json import JsonLinesExporter

@njit
def record(tr, n):
    for i in range(n):
        tr.trace_priming(i % 3, 0.5, i, i)

tr = CognitiveTracer(TracingConfig(ring_buffer_size=4096, max_threads=2, export_interval_ms=60000))
TraceCollector(tr, [JsonLinesExporter({str(out)!r})]).start()
record(tr, 1234)
# no stop(): the interval is a minute away, so only the exit hook can deliver
'''
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 1234


class Hanging:
    """An exporter whose backend never answers; it honours the deadline when given one."""

    name = "hanging"

    def __init__(self, honour_deadline):
        self.honour = honour_deadline
        self.release = __import__("threading").Event()
        self.entered = __import__("threading").Event()

    def export(self, events, deadline=None):
        self.entered.set()
        if self.honour:                 # its own 30 s timeout, cut short by the deadline
            end = time.monotonic() + 30
            while time.monotonic() < min(end, deadline()):
                if self.release.wait(0.01):
                    return
            raise TimeoutError("no answer before the deadline")
        self.release.wait(600)


def _accounted(report, drained):
    for name, p in report["exporters"].items():
        assert p["exported"] + sum(p["dropped"].values()) + p["pending"] == drained, (name, p)


def test_stop_accounts_for_every_event_when_a_backend_hangs():
    tr, m = tracer(export_interval_ms=10_000), CognitivePatternMetrics()
    polite, stubborn = Hanging(True), Hanging(False)
    stubborn.name = "stubborn"
    c = TraceCollector(tr, [polite, stubborn, Sink()], batch_size=1000).start()
    record(m, tr, 0, 2500)
    t = time.monotonic()
    report = c.stop(timeout=1.0)
    took = time.monotonic() - t
    try:
        # without the deadline this waits for the 600 s hang; the margin absorbs a loaded machine
        assert took < 60.0, f"stop(timeout=1) took {took:.1f} s"
        assert report["drained_events"] == 5000
        _accounted(report, 5000)
        assert report["exporters"]["hanging"]["dropped"]["deadline"] == 5000
        assert report["exporters"]["Sink"]["exported"] == 5000
        assert report["exporters"]["stubborn"]["pending"] == 5000 and report["alive"]
        assert report == c.stop()                    # a second stop (as at exit) reports again
    finally:
        stubborn.release.set()
    deadline = time.monotonic() + 60
    while c.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    late = c.stop()               # the stubborn call returned after all; the rest was too late
    assert not late["alive"]
    assert late["exporters"]["stubborn"]["exported"] == 1000
    assert late["exporters"]["stubborn"]["dropped"]["deadline"] == 4000
    _accounted(late, 5000)


def test_a_call_begun_before_stop_that_returns_after_its_deadline_gets_no_more_batches():
    # the stubborn exporter is inside its first export when stop() is called (the collector
    # had delivered on its own interval); once it returns, past the deadline, the other
    # batches are dropped as "deadline", not handed to it one after another
    tr, m = tracer(export_interval_ms=20), CognitivePatternMetrics()
    stubborn = Hanging(False)
    stubborn.name = "stubborn"
    record(m, tr, 0, 2500)        # before start(): the first drain takes all 5000 at once
    c = TraceCollector(tr, [stubborn, Sink()], batch_size=1000).start()
    assert stubborn.entered.wait(120), "the collector never called the exporter"
    deadline = time.monotonic() + 120
    while c.report()["drained_events"] < 5000 and time.monotonic() < deadline:
        time.sleep(0.01)
    report = c.stop(timeout=0.2)
    assert report["alive"] and report["exporters"]["stubborn"]["pending"] == 5000
    stubborn.release.set()
    deadline = time.monotonic() + 120
    while c.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    late = c.stop()
    assert not late["alive"]
    assert late["exporters"]["stubborn"]["exported"] == 1000, late["exporters"]["stubborn"]
    assert late["exporters"]["stubborn"]["dropped"]["deadline"] == 4000
    assert late["exporters"]["Sink"]["exported"] == 5000
    _accounted(late, 5000)


def test_a_set_without_tracing_health_is_refused_at_construction():
    from engram_numba import Counter, MetricSet

    class Plain(MetricSet):
        hits = Counter("hits")

    with pytest.raises(TypeError, match="no collector_hook"):
        TraceCollector(tracer(), [Sink()], metrics=Plain())
    with pytest.raises(TypeError, match="exporter"):
        TraceCollector(tracer(), [object()])
    with pytest.raises(ValueError, match="batch_size"):
        TraceCollector(tracer(), [Sink()], batch_size=0)


class Exiting:
    name = "exiting"

    def __init__(self):
        self.calls = 0

    def export(self, events):
        self.calls += 1
        if self.calls == 1:
            raise SystemExit("an exporter calling sys.exit")


def test_an_exporter_raising_system_exit_does_not_kill_the_thread():
    tr, m = tracer(export_interval_ms=20), CognitivePatternMetrics()
    ex = Exiting()
    c = TraceCollector(tr, [ex], backoff=(0.01, 0.02)).start()
    record(m, tr, 0, 100)
    deadline = time.monotonic() + 60
    while c.stats()["exporters"]["exiting"]["exported_events"] < 200:
        assert time.monotonic() < deadline and c.alive, c.stats()
        time.sleep(0.01)
    report = c.stop()
    assert report["error"] is None and report["exporters"]["exiting"]["exported"] == 200
    assert c.stats()["exporters"]["exiting"]["failures"] == 1


def test_a_dead_collector_thread_is_reported():
    class Broken:
        config = None

        def stats(self):
            return {}

        def drain(self):
            raise MemoryError("the tracer cannot be read")

    c = TraceCollector(Broken(), [Sink()], interval_ms=10).start()
    deadline = time.monotonic() + 60
    while c.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not c.alive and "MemoryError" in c.stats()["error"]
    assert "MemoryError" in c.stop()["error"]
