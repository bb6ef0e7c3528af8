"""HTTP delivery: the timeout is a deadline for the whole request, and every failure is
an ExportError (retried) or a PermanentExportError, never another exception."""

import time

import numpy as np
import pytest
from numba import njit

from engram_numba import (CognitivePatternMetrics, CognitiveTracer, ExportError, TraceCollector,
                          TracingConfig)
from engram_numba.export.loki import LokiExporter
from engram_numba.export.otlp import OtlpLogExporter, OtlpMetricExporter

from .receivers import MisbehavingServer


@njit
def _record(tr, n):
    for i in range(n):
        tr.trace_priming(i % 3, 0.5, i, i)


def _events(n=50):
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 13, max_threads=2))
    _record(tr, n)
    return tr.drain()


def _exporters(url, timeout):
    return {"otlp-http logs": OtlpLogExporter(url, protocol="http", timeout=timeout).export,
            "otlp-http metrics": lambda ev: OtlpMetricExporter(
                url, protocol="http", timeout=timeout).export(CognitivePatternMetrics()),
            "loki": LokiExporter(url, timeout=timeout).export}


@pytest.mark.parametrize("name", ["otlp-http logs", "otlp-http metrics", "loki"])
def test_a_trickling_server_cannot_hold_a_request_past_its_timeout(name):
    events = _events()
    with MisbehavingServer("trickle", interval=0.5) as server:
        export = _exporters(server.url, timeout=1.0)[name]
        t = time.monotonic()
        with pytest.raises(ExportError, match="deadline"):
            export(events)
        took = time.monotonic() - t
    # a trickled answer takes 500 s; the margin only absorbs a loaded machine
    assert took < 15.0, f"{name}: timeout=1 took {took:.1f} s"


@pytest.mark.parametrize("mode", ["garbage", "close"])
@pytest.mark.parametrize("name", ["otlp-http logs", "otlp-http metrics", "loki"])
def test_a_response_that_is_not_http_is_an_export_error(name, mode):
    events = _events()
    with MisbehavingServer(mode) as server:
        export = _exporters(server.url, timeout=5.0)[name]
        with pytest.raises(ExportError) as info:
            export(events)
    assert type(info.value) is ExportError        # retryable, not permanent
    assert "cannot deliver" in str(info.value)


def test_stop_interrupts_an_export_in_flight_and_counts_what_it_lost():
    """The issue's case: OTLP/HTTP with timeout=30 to a backend that never answers."""
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 13, max_threads=2,
                                       export_interval_ms=50))
    with MisbehavingServer("silent") as server:
        c = TraceCollector(tr, [OtlpLogExporter(server.url, protocol="http", timeout=30)],
                           batch_size=1000).start()
        _record(tr, 5000)
        deadline = time.monotonic() + 60
        while server.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)                     # an export is in flight now
        t = time.monotonic()
        report = c.stop(timeout=2)
        took = time.monotonic() - t
    assert took < 15.0, f"stop(timeout=2) took {took:.1f} s"   # not the 30 s request timeout
    assert not report["alive"] and report["drained_events"] == 5000
    per = report["exporters"]["otlp"]
    assert per["exported"] == 0 and per["pending"] == 0
    assert per["dropped"]["deadline"] == 5000


def test_stop_cancels_a_grpc_call_in_flight_at_its_deadline():
    from .receivers import OtlpGrpcReceiver
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 13, max_threads=2,
                                       export_interval_ms=50))
    with OtlpGrpcReceiver(script=["hang"] * 100) as receiver:
        c = TraceCollector(tr, [OtlpLogExporter(receiver.endpoint, insecure=True, timeout=30)],
                           batch_size=1000).start()
        _record(tr, 3000)
        deadline = time.monotonic() + 60
        while not receiver.metadata and time.monotonic() < deadline:
            time.sleep(0.01)
        t = time.monotonic()
        report = c.stop(timeout=1)
        took = time.monotonic() - t
    assert took < 15.0, f"stop(timeout=1) took {took:.1f} s"   # not the 30 s call timeout
    per = report["exporters"]["otlp"]
    assert not report["alive"] and per["dropped"]["deadline"] == 3000 and per["pending"] == 0
