"""No silent loss: events overwritten in a ring, recorded without a ring or refused are
counted the moment it happens, reported by the collector with their reasons, exported
as a metric and logged; and the collector drains a filling ring before it wraps."""

import json
import logging
import subprocess
import sys
import time

import numpy as np
from numba import njit
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from engram_numba import Event, EventSet, TraceCollector, Tracer, TracingConfig
from engram_numba.export import openmetrics_exposition


class Work(EventSet, name="work"):
    step = Event("One step", k=np.uint32)


@njit(nogil=True)
def emit(tr, n, first):
    for k in range(n):
        tr.step.emit(first + k)


@njit
def emit_whole(tr, n, first):
    """As emit, holding the GIL: the collector (a Python thread) never sees half a burst."""
    for k in range(n):
        tr.step.emit(first + k)


class Sink:
    def __init__(self):
        self.events = []

    def export(self, events):
        self.events.append(events.copy())

    @property
    def count(self):
        return sum(e.size for e in self.events)


def first_cycle_done(collector):
    """Wait until the collector's first cycle (a drain at start) is over, so that what is
    recorded next is drained by the fill checks, not by that cycle."""
    deadline = time.monotonic() + 60                  # a guard only
    while collector.stats()["cycles"] < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert collector.stats()["cycles"] >= 1


def _dropped_sample(metric_set, reason):
    for fam in text_string_to_metric_families(openmetrics_exposition(metric_set)):
        for s in fam.samples:
            if s.name == "work_events_dropped_total" and s.labels["reason"] == reason:
                return s.value
    raise AssertionError("no work_events_dropped_total sample")


def test_overwritten_events_are_counted_at_once_not_at_the_next_drain():
    tr = Tracer(Work, TracingConfig(ring_buffer_size=64, max_threads=2))
    emit(tr, 1000, 0)
    t = tr.stats()["total"]
    assert t["written"] == 1000 and t["pending"] == 64 and t["dropped"] == 936
    assert t["overwritten_unread"] == 936 and tr.stats()["lost"] == 936
    assert t["written"] == t["delivered"] + t["dropped"] + t["pending"]
    assert t["utilization"] == 100.0 and t["peak_utilization"] == 100.0
    ev = tr.drain()
    assert ev.size == 64 and ev["k"].tolist() == list(range(936, 1000))
    t = tr.stats()["total"]
    assert (t["delivered"], t["dropped"], t["pending"]) == (64, 936, 0)
    assert t["utilization"] == 0.0 and t["peak_utilization"] == 100.0   # it did overflow


def test_the_collector_reports_warns_and_counts_losses_by_reason(caplog):
    tr = Tracer(Work, TracingConfig(ring_buffer_size=64, max_threads=2))
    sink = Sink()
    c = TraceCollector(tr, [sink], interval_ms=600_000)       # no second warning meanwhile
    emit(tr, 1000, 0)
    with caplog.at_level(logging.WARNING, logger="engram_numba"):
        c.flush()
        emit(tr, 500, 1000)
        c.flush()
    report = c.report()
    assert report["dropped"]["overwritten"] == 936 + 436
    assert report["dropped_events"] == 936 + 436 and sink.count == 128
    assert c.stats()["dropped"] == report["dropped"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert "936 events of set 'work' lost" in text and "overwritten" in text
    assert "ring_buffer_size" in text and "recording step" in text
    assert _dropped_sample(c.export_metrics, "overwritten") == 936 + 436
    assert _dropped_sample(c.export_metrics, "no_ring") == 0


def test_threads_without_a_ring_and_invalid_records_are_losses_too(caplog):
    tr = Tracer(Work, TracingConfig(ring_buffer_size=64, max_threads=1))
    c = TraceCollector(tr, [Sink()], interval_ms=600_000)
    emit(tr, 1, 0)                                   # this thread takes the only ring
    import threading
    t = threading.Thread(target=emit, args=(tr, 10, 0))
    t.start()
    t.join()
    with caplog.at_level(logging.WARNING, logger="engram_numba"):
        c.flush()
    assert c.report()["dropped"]["no_ring"] == 10
    assert "no free ring" in caplog.text and "max_threads" in caplog.text


def test_the_collector_drains_a_filling_ring_before_its_interval():
    """Bursts of three quarters of a ring, each one only after the last was delivered:
    with a ten-minute interval only an early drain (the ring past half full) delivers
    them.  Nothing is lost, and no burst waits for the interval.  Each burst is written
    holding the GIL, so an early drain takes a burst whole: a drain in the middle of one
    would leave a tail below the fill mark, which waits for the interval by design."""
    tr = Tracer(Work, TracingConfig(ring_buffer_size=1024, max_threads=2))
    sink = Sink()
    emit(tr, 1, 0)
    tr.drain()
    c = TraceCollector(tr, [sink], interval_ms=600_000).start()
    try:
        first_cycle_done(c)
        for burst in range(20):
            emit_whole(tr, 768, 768 * burst)
            deadline = time.monotonic() + 60            # a guard only
            while sink.count < 768 * (burst + 1) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert sink.count == 768 * (burst + 1), f"burst {burst} was not drained early"
    finally:
        report = c.stop(5)
    assert report["dropped_events"] == 0 and c.stats()["early_drains"] >= 20
    got = np.concatenate(sink.events)["k"]
    assert np.array_equal(np.sort(got), np.arange(768 * 20))


def test_trace_stats_shows_the_loss_of_a_file_another_process_writes(tmp_path):
    path = str(tmp_path / "work.rings")
    tr = Tracer(Work, TracingConfig(ring_buffer_size=64, max_threads=2, path=path))
    emit(tr, 1000, 0)
    out = subprocess.run([sys.executable, "-m", "engram_numba", "trace", "stats", "--attach",
                          path, "--json"], capture_output=True, text=True, timeout=300)
    stats = json.loads(out.stdout)
    assert stats["total"]["dropped"] == 936 and stats["total"]["pending"] == 64
    assert stats["total"]["peak_utilization"] == 100.0 and stats["lost"] == 936
    text = subprocess.run([sys.executable, "-m", "engram_numba", "trace", "stats", "--attach",
                           path], capture_output=True, text=True, timeout=300).stdout
    assert "LOST 936 events" in text and "peak 100.0%" in text
