"""Exporters against real protocol peers: OTLP (gRPC, HTTP), Loki, Chrome trace, faults."""

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from numba import njit

from engram_numba import (CognitivePatternMetrics, CognitiveTracer, Counter, Histogram, MetricSet,
                          TraceCollector, TracingConfig)
from engram_numba.export.chrome import chrome_trace
from engram_numba.tracing.collector import DROP_REASONS
from engram_numba.export.loki import LokiExporter, push_body
from engram_numba.export.otlp import OtlpLogExporter, OtlpMetricExporter

from .processes import free_port, wait_for
from .receivers import HttpReceiver, OtlpGrpcReceiver, loki_problem

U64 = (1 << 64) - 1


@njit
def record(tr, start, n):
    for i in range(start, start + n):
        tr.trace_priming(i % 3, 0.1 * (i % 10), i, np.uint64(U64) - np.uint64(i))
        tr.trace_interference(i % 3, 1.5, np.uint64(2 ** 63) + np.uint64(i), i % 50)
        tr.trace_reconsolidation(i, 0.25 * (i % 6), np.inf if i == 2 else 0.5, i % 4)
        tr.trace_false_memory(i * 2654435761, 15, 0.875)


def traced_events(n=25):
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=4096, max_threads=2))
    record(tr, 0, n)
    return tr.drain()


def _attrs(kvs):
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


def check_log_records(requests, events, service="engram", time_tolerance_ns=0):
    records = []
    for req in requests:
        for rl in req.resource_logs:
            assert _attrs(rl.resource.attributes)["service.name"] == service
            for sl in rl.scope_logs:
                assert sl.scope.name == "engram_numba"
                records.extend(sl.log_records)
    assert len(records) == events.size
    names = {0: "priming", 1: "interference", 2: "reconsolidation", 3: "false_memory"}
    for rec, ev in zip(records, events):
        a = _attrs(rec.attributes)
        t = names[int(ev["event_type"])]
        assert abs(rec.time_unix_nano - int(ev["timestamp"])) <= time_tolerance_ns
        assert rec.severity_text == "INFO" and rec.severity_number == 9
        assert rec.body.string_value == t and rec.event_name == f"engram.{t}"
        assert a["engram.event_type"] == t
        assert a["engram.thread"] == int(ev["thread"]) and a["engram.sequence"] == int(ev["sequence"])
        if t == "priming":
            assert a["engram.priming_type"] == ["semantic", "associative", "repetition"][ev["priming_type"]]
            assert np.float32(a["engram.strength"]) == ev["strength"]
            assert a["engram.source_node"] & U64 == int(ev["source_node"])
            assert a["engram.target_node"] & U64 == int(ev["target_node"])
        elif t == "interference":
            assert a["engram.interference_type"] == ["proactive", "retroactive", "fan"][ev["interference_type"]]
            assert np.float32(a["engram.magnitude"]) == ev["magnitude"]
            assert a["engram.target_episode_id"] & U64 == int(ev["target_episode_id"])
            assert a["engram.competing_episode_count"] == int(ev["competing_episode_count"])
        elif t == "reconsolidation":
            assert a["engram.episode_id"] == int(ev["episode_id"])
            assert np.float32(a["engram.window_position"]) == ev["window_position"]
            assert (np.float32(a["engram.plasticity_factor"]) == ev["plasticity_factor"])
            assert a["engram.modification_count"] == int(ev["modification_count"])
        else:
            assert a["engram.critical_lure_hash"] & U64 == int(ev["critical_lure_hash"])
            assert a["engram.source_list_size"] == 15
            assert np.float32(a["engram.reconstruction_confidence"]) == ev["reconstruction_confidence"]
    return records


def test_otlp_logs_over_grpc_carry_every_field_and_headers():
    events = traced_events()
    with OtlpGrpcReceiver() as rx:
        exporter = OtlpLogExporter(rx.endpoint, insecure=True, service_name="memory-lab",
                                   headers={"Authorization": "Bearer s3cret"})
        exporter.export(events)
        exporter.shutdown()
    check_log_records(rx.logs, events, service="memory-lab")
    assert rx.metadata[0]["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize("compression", ["gzip", None])
def test_otlp_logs_over_http(compression):
    events = traced_events()
    with HttpReceiver() as rx:
        OtlpLogExporter(rx.url, protocol="http", compression=compression,
                        headers={"X-Token": "t"}).export(events)
    assert not rx.problems
    path, headers, _ = rx.requests[0]
    assert path == "/v1/logs" and headers["X-Token"] == "t"
    assert headers.get("Content-Encoding") == compression
    check_log_records(rx.logs(), events)


class Lab(MetricSet, name="lab"):
    trials = Counter("lab_trials_total", "Trials", labels={"arm": ["a", "b"]})
    wait = Histogram("lab_wait_seconds", "Wait", bounds=[0.1, 0.5, 1.0])
    delta = Histogram("lab_delta", "Change", scale=2, range=(0.25, 4), negative=True)


def _metrics_by_name(requests):
    out = {}
    for req in requests:
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = m
    return out


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_otlp_metrics_are_exact(protocol):
    cog = CognitivePatternMetrics()
    for i in range(200):
        cog.record_priming(i % 3, 0.01 + (i % 50) / 50)
    cog.record_interference(2, 0.5)
    cog.event_buffer_utilization.set(42.5)
    cog.priming_node_pairs.set([((1, 2), 7)])
    lab = Lab()
    lab.trials.add(3, "b")
    for v in (0.05, 0.3, 0.7, 2.0, float("nan")):
        lab.wait.observe(v)
    for v in (-3.0, -0.5, 0.0, 0.1, 1.0, 1.0, 100.0):   # zero bucket, in range, overflow
        lab.delta.observe(v)
    rx_cls = OtlpGrpcReceiver if protocol == "grpc" else HttpReceiver
    with rx_cls() as rx:
        endpoint = rx.endpoint if protocol == "grpc" else rx.url
        OtlpMetricExporter(endpoint, protocol=protocol, insecure=True).export(cog, lab)
    metrics = _metrics_by_name(rx.metrics if protocol == "grpc" else rx.metrics())
    pe = metrics["engram_priming_events"]
    assert pe.sum.is_monotonic and pe.sum.aggregation_temporality == 2
    got = {_attrs(p.attributes)["priming_type"]: p.as_int for p in pe.sum.data_points}
    assert got == {"semantic": 67, "associative": 67, "repetition": 66}
    assert metrics["engram_cognitive_event_buffer_utilization"].gauge.data_points[0].as_double \
        == 42.5
    pairs = metrics["engram_priming_node_pairs"].sum.data_points[0]
    assert _attrs(pairs.attributes) == {"source_node": "1", "target_node": "2"} and pairs.as_int == 7
    # exponential histogram: same scale and bucket indexes as ours
    strength = metrics["engram_priming_strength"].exponential_histogram.data_points[0]
    ours = cog.priming_strength.read()
    assert strength.scale == 4 and strength.count == 200 and strength.sum == pytest.approx(ours.sum)
    assert (strength.min, strength.max) == (ours.min, ours.max)
    assert strength.zero_threshold == 2.0 ** -7
    buckets = {strength.positive.offset + k: n for k, n in enumerate(strength.positive.bucket_counts) if n}
    spec = cog.priming_strength.spec
    expected = {spec.lo_index + k: int(n) for k, n in enumerate(ours.counts) if n}
    assert buckets == expected
    # signed, with zero and overflow: counts stay consistent
    d = metrics["lab_delta"].exponential_histogram.data_points[0]
    assert d.count == 7 and d.zero_count == 2          # 0.0 and 0.1 are <= 2**-2
    assert d.zero_count + sum(d.positive.bucket_counts) + sum(d.negative.bucket_counts) == d.count
    assert sum(d.negative.bucket_counts) == 2
    # explicit histogram and its excluded observations
    w = metrics["lab_wait_seconds"].histogram.data_points[0]
    assert list(w.explicit_bounds) == [0.1, 0.5, 1.0] and list(w.bucket_counts) == [1, 1, 1, 1]
    excluded = {_attrs(p.attributes)["reason"]: p.as_int
                for p in metrics["lab_wait_seconds_excluded"].sum.data_points}
    assert excluded["nan"] == 1
    trials = {_attrs(p.attributes)["arm"]: p.as_int for p in metrics["lab_trials"].sum.data_points}
    assert trials == {"a": 0, "b": 3}


def test_loki_push_format_labels_and_auth():
    events = traced_events()
    with HttpReceiver() as rx:
        LokiExporter(rx.url, tenant="team-a", basic_auth=("user", "pw"),
                     labels={"env": "test"}).export(events)
    assert not rx.problems
    path, headers, _ = rx.requests[0]
    assert headers["X-Scope-OrgID"] == "team-a" and headers["Authorization"].startswith("Basic ")
    assert headers["Content-Encoding"] == "gzip"
    doc = rx.loki()[0]
    streams = doc["streams"]
    label_sets = [s["stream"] for s in streams]
    assert len(label_sets) <= 8
    assert all(set(l) <= {"env", "service", "event_set", "event_type", "priming_type",
                          "interference_type"}
               for l in label_sets)
    lines = [json.loads(v[1]) for s in streams for v in s["values"]]
    assert len(lines) == events.size
    for s in streams:
        for ns, line in s["values"]:
            e = json.loads(line)
            assert int(ns) == e["timestamp"] and e["event_type"] == s["stream"]["event_type"]
            if "priming_type" in s["stream"]:
                assert e["priming_type"] == s["stream"]["priming_type"]


def test_loki_checker_can_fail():
    body = json.loads(push_body(traced_events(3)))
    longest = max(body["streams"], key=lambda s: len(s["values"]))
    assert len(longest["values"]) > 1
    first, second = longest["values"][:2]
    first[0] = str(int(second[0]) + 1)             # now later than the value after it
    assert loki_problem({"Content-Type": "application/json"}, json.dumps(body).encode()) \
        == "values not sorted by time within a stream"
    assert loki_problem({"Content-Type": "text/plain"}, b"{}") is not None


def test_chrome_trace_document():
    events = traced_events(40)
    doc = json.loads(json.dumps(chrome_trace(events)))
    te = doc["traceEvents"]
    instants = [e for e in te if e["ph"] == "i"]
    assert len(instants) == events.size
    assert {e["tid"] for e in instants} == set(events["thread"].tolist())
    assert all(e["s"] == "t" and "args" in e and e["ts"] >= 0 for e in instants)
    assert {e["name"] for e in instants} >= {"priming/semantic", "interference/fan", "false_memory"}
    threads = [e for e in te if e["ph"] == "M" and e["name"] == "thread_name"]
    assert len(threads) == len({e["tid"] for e in instants})
    counters = [e for e in te if e["ph"] == "C"]
    assert {e["name"] for e in counters} == {"priming rate", "interference rate",
                                             "reconsolidation rate", "false_memory rate"}
    window_s = 0.1
    assert sum(e["args"]["events_per_s"] for e in counters if e["name"] == "priming rate") \
        * window_s == pytest.approx(40)


# -- delivery semantics ----------------------------------------------------------------

def collector_for(exporter, **kw):
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 14, max_threads=2))
    kw.setdefault("backoff", (0.05, 0.2))
    return tr, TraceCollector(tr, [exporter], batch_size=kw.pop("batch_size", 100), **kw)


def flush_until(collector, done, timeout=20):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        collector.flush()
        time.sleep(0.05)
    return done()


def test_receiver_down_at_start_then_up_loses_nothing():
    port = free_port()
    tr, c = collector_for(OtlpLogExporter(f"127.0.0.1:{port}", insecure=True, timeout=1.0))
    record(tr, 0, 100)                      # 400 events, 4 batches
    c.flush()
    st = c.stats()["exporters"]["otlp"]
    assert st["failures"] >= 1 and st["queued_events"] == 400
    with OtlpGrpcReceiver(port=port) as rx:
        assert flush_until(c, lambda: c.stats()["exporters"]["otlp"]["queued_events"] == 0)
    delivered = [(_attrs(r.attributes)["engram.thread"], _attrs(r.attributes)["engram.sequence"])
                 for q in rx.logs for rl in q.resource_logs for sl in rl.scope_logs
                 for r in sl.log_records]
    assert len(delivered) == 400 and len(set(delivered)) == 400     # all, exactly once
    assert sum(c.export_metrics.dropped.value("otlp", r) for r in DROP_REASONS) == 0
    failures = c.stats()["exporters"]["otlp"]["failures"]
    assert c.export_metrics.failures.value("otlp") == failures >= 1


def test_503_with_retry_after_then_success():
    with HttpReceiver(script=[(503, {"Retry-After": "1"})]) as rx:
        tr, c = collector_for(LokiExporter(rx.url))
        record(tr, 0, 25)
        t0 = time.monotonic()
        c.flush()
        assert len(rx.requests) == 1
        c.flush()
        assert len(rx.requests) == 1          # Retry-After: not before a second
        assert flush_until(c, lambda: len(rx.loki()) == 2)
        assert time.monotonic() - t0 >= 1.0
    assert not rx.problems
    assert sum(len(s["values"]) for s in rx.loki()[1]["streams"]) == 100
    assert c.export_metrics.failures.value("loki") == 1
    assert c.export_metrics.exported.value("loki") == 100


def test_400_is_not_retried_and_logged_once(caplog):
    with HttpReceiver(script=[(400, {})] * 100) as rx:
        tr, c = collector_for(LokiExporter(rx.url), batch_size=50)
        record(tr, 0, 50)                     # 200 events -> 4 batches
        with caplog.at_level(logging.ERROR, logger="engram_numba.tracing.collector"):
            c.flush()
            c.flush()
    assert len(rx.requests) == 4              # one attempt per batch, no retries
    assert c.export_metrics.dropped.value("loki", "rejected") == 200
    errors = [r for r in caplog.records if "rejected a batch" in r.getMessage()]
    assert len(errors) == 1 and "HTTP 400" in errors[0].getMessage()
    assert "scripted failure" in errors[0].getMessage()      # the server's message


def test_queue_overflow_is_counted_exactly():
    port = free_port()
    tr, c = collector_for(LokiExporter(f"http://127.0.0.1:{port}", timeout=0.5),
                          max_queued_batches=2, backoff=(60, 60))
    record(tr, 0, 125)                        # 500 events -> 5 batches of 100
    c.flush()
    assert c.export_metrics.dropped.value("loki", "queue_full") == 300
    assert c.stats()["exporters"]["loki"]["queued_events"] == 200


@pytest.mark.parametrize("code, retried", [(grpc.StatusCode.UNAVAILABLE, True),
                                           (grpc.StatusCode.INVALID_ARGUMENT, False)])
def test_grpc_status_codes(code, retried):
    with OtlpGrpcReceiver(script=[code]) as rx:
        tr, c = collector_for(OtlpLogExporter(rx.endpoint, insecure=True))
        record(tr, 0, 25)
        c.flush()
        flush_until(c, lambda: len(rx.logs) == 1, timeout=60 if retried else 0.5)
    assert len(rx.logs) == (1 if retried else 0)
    assert c.export_metrics.dropped.value("otlp", "rejected") == (0 if retried else 100)


def test_shutdown_flushes_within_its_deadline():
    with HttpReceiver() as rx:
        tr = CognitiveTracer(TracingConfig(ring_buffer_size=4096, max_threads=2,
                                           export_interval_ms=60_000))
        c = TraceCollector(tr, [LokiExporter(rx.url)]).start()
        record(tr, 0, 100)
        t = time.monotonic()
        c.stop(timeout=5)
        assert time.monotonic() - t < 15                # bounded by the deadline
    assert sum(len(s["values"]) for d in rx.loki() for s in d["streams"]) == 400
    dead = CognitiveTracer(TracingConfig(ring_buffer_size=4096, max_threads=2,
                                         export_interval_ms=60_000))
    c = TraceCollector(dead, [LokiExporter(f"http://127.0.0.1:{free_port()}", timeout=0.2)],
                       backoff=(0.1, 0.2)).start()
    record(dead, 0, 10)
    t = time.monotonic()
    c.stop(timeout=1.0)
    assert time.monotonic() - t < 15                   # gives up at the deadline, not later
    assert c.export_metrics.dropped.value("loki", "deadline") == 40


# -- a real OTLP receiver ---------------------------------------------------------------

def _rotel_binary():
    try:
        import rotel
    except ImportError:
        return None
    path = Path(rotel.__file__).parent / "rotel-agent"
    return path if path.exists() else None


@pytest.mark.skipif(_rotel_binary() is None,
                    reason="rotel (a real OTLP receiver, pip install rotel) is not installed")
def test_rotel_receives_logs_and_metrics(tmp_path):
    grpc_port, http_port = free_port(), free_port()
    out = open(tmp_path / "rotel.out", "w")
    proc = subprocess.Popen([str(_rotel_binary()), "start", "--otlp-grpc-endpoint",
                             f"127.0.0.1:{grpc_port}", "--otlp-http-endpoint",
                             f"127.0.0.1:{http_port}", "--exporter", "blackhole",
                             "--debug-log", "logs", "--debug-log", "metrics",
                             "--debug-log-verbosity", "detailed",
                             "--pid-file", str(tmp_path / "rotel.pid")],
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Starting Rotel" in (tmp_path / "rotel.out").read_text(), timeout=30)
        events = traced_events(2)
        OtlpLogExporter(f"127.0.0.1:{grpc_port}", insecure=True).export(events)
        OtlpLogExporter(f"http://127.0.0.1:{http_port}", protocol="http").export(events)
        cog = CognitivePatternMetrics()
        cog.record_priming(1, 0.4)
        OtlpMetricExporter(f"127.0.0.1:{grpc_port}", insecure=True).export(cog)
        text = wait_for(lambda: (lambda t: t if t.count("EventName: engram.priming") >= 2
                                 and "engram_priming_strength" in t else None)(
            (tmp_path / "rotel.out").read_text()), timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()
    assert "-> engram.priming_type: Str(semantic)" in text
    assert "-> engram.source_node: Int(0)" in text
    assert "-> service.name: Str(engram)" in text
    assert f"Timestamp: {int(events['timestamp'][0])}" in text
    assert "Name: engram_priming_strength" in text and "DataType: ExponentialHistogram" in text


# -- command line ------------------------------------------------------------------------

def test_cli_sends_events_and_metrics(tmp_path):
    rings = tmp_path / "t.rings"
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=4096, max_threads=2, path=str(rings)))
    record(tr, 0, 10)
    metrics_path = tmp_path / "m.metrics"
    m = CognitivePatternMetrics.create(metrics_path)
    m.record_priming(0, 0.5)

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "engram_numba", *args], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r

    with OtlpGrpcReceiver() as grx, HttpReceiver() as hrx:
        cli("trace", "export", "--attach", str(rings), "--format", "otlp", "--endpoint",
            grx.endpoint, "--insecure", "--header", "authorization=Bearer x")
        cli("trace", "export", "--attach", str(rings), "--format", "loki", "--endpoint",
            hrx.url, "--tenant", "t1")
        cli("metrics", "push", "--attach", str(metrics_path), "--endpoint", hrx.url,
            "--protocol", "http", "--interval", "0.2", "--count", "2")
    # another process converted the same ticks: the shared anchor keeps it within a microsecond
    check_log_records(grx.logs, tr.read(), time_tolerance_ns=1000)
    assert grx.metadata[0]["authorization"] == "Bearer x"
    assert not hrx.problems and sum(len(s["values"]) for s in hrx.loki()[0]["streams"]) == 40
    pushed = hrx.metrics()
    assert len(pushed) == 2
    assert _metrics_by_name(pushed)["engram_priming_strength"].exponential_histogram \
        .data_points[0].count == 1
    cli("trace", "export", "--attach", str(rings), "--format", "chrome", "--output",
        str(tmp_path / "trace.json"))
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "i") == 40




def _self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True)
    if r.returncode:
        pytest.skip(f"openssl could not make a certificate: {r.stderr[-200:]!r}")
    return str(cert), str(key)


@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="needs the openssl CLI")
def test_tls_with_a_ca_file_and_refused_without(tmp_path):
    from engram_numba import PermanentExportError
    cert, key = _self_signed(tmp_path)
    events = traced_events(5)
    with HttpReceiver(tls=(cert, key)) as rx:
        assert rx.url.startswith("https://")
        OtlpLogExporter(rx.url, protocol="http", ca_file=cert).export(events)
        LokiExporter(rx.url, ca_file=cert).export(events)
        with pytest.raises(PermanentExportError, match="certificate"):
            LokiExporter(rx.url).export(events)       # unknown CA: refused, not retried
        LokiExporter(rx.url, insecure=True).export(events)
    check_log_records(rx.logs(), events)
    assert len(rx.loki()) == 2 and not rx.problems


def _resource(request) -> dict:
    return {kv.key: kv.value.string_value for kv in request.resource_metrics[0].resource.attributes}


def test_otlp_exporters_follow_the_opentelemetry_environment(monkeypatch, tmp_path):
    """OTEL_* variables fill what is not given; explicit arguments win."""
    import os

    from engram_numba.export.otlp import OtlpMetricExporter, instance_id
    for var in [v for v in os.environ if v.startswith("OTEL_")]:
        monkeypatch.delenv(var)
    m = Lab()
    m.trials.add(3, "b")
    with HttpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-key=a%20b,x-other=1")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES",
                           "deployment.environment=test,service.name=overridden")
        OtlpMetricExporter().export(m)
        OtlpMetricExporter(rx.url, protocol="http", headers={"x-key": "mine"},
                           service_name="explicit",
                           resource_attributes={"deployment.environment": "prod"}).export(m)
        # a per-signal endpoint is the whole URL
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", rx.url + "/v1/metrics")
        OtlpMetricExporter().export(m)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        with pytest.raises(ValueError, match="http/protobuf"):
            OtlpMetricExporter()
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
            OtlpMetricExporter()
    assert not rx.problems
    (p1, h1, _), (p2, h2, _), (p3, _, _) = rx.requests
    assert p1 == p2 == p3 == "/v1/metrics"
    assert h1["x-key"] == "a b" and h1["x-other"] == "1" and h1.get("Content-Encoding") is None
    assert h2["x-key"] == "mine" and h2["x-other"] == "1"
    first, second, _ = rx.metrics()
    assert _resource(first)["service.name"] == "checkout"
    assert _resource(first)["deployment.environment"] == "test"
    assert _resource(second)["service.name"] == "explicit"
    assert _resource(second)["deployment.environment"] == "prod"
    assert _resource(first)["service.instance.id"] == instance_id() == \
        _resource(second)["service.instance.id"]
    # another process is another instance
    other = subprocess.run([sys.executable, "-c", "from engram_numba.export.otlp import "
                            "instance_id; print(instance_id())"], capture_output=True,
                           text=True, timeout=120)
    assert other.returncode == 0 and len(other.stdout.strip()) == 36
    assert other.stdout.strip() != instance_id()


@pytest.mark.parametrize("var, value, message", [
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "milliseconds"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "-5", "milliseconds"),
    ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "nan", "milliseconds"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "gzip and none"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "x-key", "key=value"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "=v", "key=value"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team", "key=value"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "http/protobuf"),
])
def test_bad_opentelemetry_environment_is_refused_by_name(monkeypatch, var, value, message):
    import os

    from engram_numba.export.otlp import OtlpMetricExporter
    for v in [v for v in os.environ if v.startswith("OTEL_")]:
        monkeypatch.delenv(v)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(var, value)
    explicit = {} if "PROTOCOL" in var else {"protocol": "http"}
    with pytest.raises(ValueError, match=message) as info:
        OtlpMetricExporter(**explicit)
    assert var in str(info.value)


def test_opentelemetry_timeout_and_explicit_options(monkeypatch):
    import os

    from engram_numba.export.otlp import OtlpLogExporter, OtlpMetricExporter
    for v in [v for v in os.environ if v.startswith("OTEL_")]:
        monkeypatch.delenv(v)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    assert OtlpMetricExporter(protocol="http").transport.timeout == 1.5     # per signal first
    assert OtlpLogExporter(protocol="http").transport.timeout == 2.5
    assert OtlpLogExporter(protocol="http").transport.compression is None
    assert OtlpLogExporter(protocol="http", timeout=4).transport.timeout == 4.0   # explicit wins
    assert OtlpLogExporter(protocol="http", compression="gzip").transport.compression == "gzip"
    for bad in (0, -1.0, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="timeout"):
            OtlpLogExporter(protocol="http", timeout=bad)
    for bad in ({"x-a": 1}, {"x-a": "b\r\nInjected: 1"}, {"": "v"}):
        with pytest.raises(ValueError, match="headers"):
            OtlpLogExporter(protocol="http", headers=bad)


def test_metrics_push_takes_its_endpoint_from_the_environment(tmp_path):
    import os

    from engram_numba.engram.metrics import CognitivePatternMetrics
    m = CognitivePatternMetrics.create(tmp_path / "m.metrics")
    m.record_priming(0, 0.5)
    with HttpReceiver() as rx:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=rx.url, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                   OTEL_SERVICE_NAME="memory")
        r = subprocess.run([sys.executable, "-m", "engram_numba", "metrics", "push", "--attach",
                            str(tmp_path / "m.metrics")], capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr
    (request,) = rx.metrics()
    assert _resource(request)["service.name"] == "memory"


def test_periodic_metric_push_counts_deliveries_and_flushes_on_stop():
    from .receivers import Script
    m = Lab()
    m.trials.add(1, "a")
    with HttpReceiver() as rx:
        rx.script = Script((None, {}), [(503, {})])      # the first push fails
        exporter = OtlpMetricExporter(rx.url, protocol="http", compression=None)
        with pytest.raises(ValueError, match="interval"):
            exporter.start(m, interval=0)
        exporter.start(m, interval=0.02)
        with pytest.raises(RuntimeError, match="already pushing"):
            exporter.start(m)
        assert wait_for(lambda: exporter.stats()["pushes"] >= 2, timeout=60)
        m.trials.add(5, "b")                  # after the last periodic push, before stop()
        stats = exporter.stop()
    assert stats["failures"] == 1 and "503" in stats["last_error"]
    assert stats["pushes"] >= 3
    last = _metrics_by_name(rx.metrics()[-1:])["lab_trials"]
    assert {_attrs(p.attributes)["arm"]: p.as_int for p in last.sum.data_points} == \
        {"a": 1, "b": 5}                      # the flush carries the newest values
    assert exporter.stop() == stats           # a second stop does nothing
