"""The delivery policy every exporter follows (engram_numba._delivery), and what it fixes:
Retry-After capped by the deadline and a maximum, a peer's text escaped everywhere,
success only for a whole answer, endpoints checked."""

import gzip
import logging
import math
import subprocess
import sys
import time

import pytest

from engram_numba import CognitivePatternMetrics, ExportError, PermanentExportError
from engram_numba.export.loki import LokiExporter
from engram_numba.export.otlp import OtlpLogExporter, OtlpMetricExporter

from .receivers import HttpReceiver, RawPeer

CONTROL = [chr(c) for c in range(32) if c not in (9,)] + ["\x7f", "\x9b"]


def raw_free(text: str) -> bool:
    """No control character a terminal would act on (tab aside)."""
    return not any(c in text for c in CONTROL)


# -- the policy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, seconds", [
    ("120", 120.0), (" 7 ", 7.0), ("2.5", 2.5), ("0", 0.0),
    ("inf", None), ("Infinity", None), ("nan", None), ("-5", None), ("1e9", None),
    ("", None), (None, None), ("soon", None), ("9" * 400, None),
    ("Wed, 21 Oct 2099 07:28:00 GMT", "future"), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("Mon, 99 Foo 2099 99:99:99 GMT", None),
])
def test_retry_after_values_are_parsed_without_raising(value, seconds):
    from engram_numba._delivery import parse_retry_after
    got = parse_retry_after(value)
    if seconds == "future":
        assert got > 365 * 86400 * 50
    else:
        assert got == seconds


def test_a_wait_is_capped_by_the_maximum_and_never_passes_the_deadline():
    from engram_numba._delivery import MAX_RETRY_AFTER, Backoff, plan_retry
    b = Backoff(0.1, 1.0)
    plan = plan_retry(ExportError("x", 100000.0, "100000"), b, now=0.0)
    assert plan.delay == MAX_RETRY_AFTER and "'100000'" in plan.note and "capped" in plan.note
    plan = plan_retry(ExportError("x", 100000.0, "100000"), b, deadline=5.0, now=0.0)
    assert plan.delay is None and "deadline" in plan.note and "100000" in plan.note
    plan = plan_retry(ExportError("x", 2.0, "2"), b, deadline=5.0, now=0.0)
    assert plan.delay == 2.0
    waits = [Backoff(0.1, 1.0, rng=__import__("random").Random(1)) for _ in range(1)][0]
    seq = [waits.next() for _ in range(8)]
    assert all(0.05 <= w <= 1.0 for w in seq) and seq[-1] >= 0.5      # doubles up to 1 s
    with pytest.raises(ValueError, match="backoff"):
        Backoff(1.0, math.inf)


def test_deliver_gives_up_at_the_deadline_and_says_why():
    from engram_numba._delivery import deliver
    calls, slept = [], []

    def send(deadline):
        calls.append(deadline)
        raise ExportError("HTTP 503", 3600.0, "3600")
    t = time.monotonic()
    with pytest.raises(ExportError, match="Retry-After '3600'.*deadline"):
        deliver(send, what="push", deadline=t + 5, sleep=slept.append)
    assert len(calls) == 1 and slept == []
    with pytest.raises(PermanentExportError):
        deliver(lambda d: (_ for _ in ()).throw(PermanentExportError("400")), what="push",
                deadline=t + 5, sleep=slept.append)
    n = []
    with pytest.raises(ExportError, match="after 3 attempts"):
        deliver(lambda d: n.append(1) or (_ for _ in ()).throw(OSError("refused")), what="push",
                deadline=time.monotonic() + 3600, attempts=3, sleep=slept.append)
    assert len(n) == 3 and len(slept) == 2


def test_escape_and_printable():
    from engram_numba._delivery import escape, printable
    hostile = "\x1b]0;pwned\x07\x1b[2J\rline\nnext\\"
    assert raw_free(escape(hostile)) and escape(hostile).startswith("\\x1b]0;pwned\\x07")
    assert raw_free(escape(hostile.encode() + b"\xff"))
    assert printable(escape(hostile)) == escape(hostile)     # a second pass changes nothing
    assert raw_free(printable(hostile)) and printable("caf\u00e9 ok") == "caf\u00e9 ok"
    assert escape("x" * 1000, 10) == "x" * 10 + "..."


# -- 7. Retry-After obeyed blindly --------------------------------------------------------------

def push(tmp_path, url, *extra):
    m = CognitivePatternMetrics.create(tmp_path / "m.metrics")
    m.record_priming(0, 0.5)
    m.close()
    return subprocess.run([sys.executable, "-m", "engram_numba", "metrics", "push", "--attach",
                           str(tmp_path / "m.metrics"), "--endpoint", url, "--protocol", "http",
                           *extra], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("header", ["100000", "Fri, 01 Jan 2099 00:00:00 GMT", "inf"])
def test_metrics_push_caps_retry_after_by_its_deadline(tmp_path, header):
    with HttpReceiver(script=[(503, {"Retry-After": header})] * 50) as rx:
        r = push(tmp_path, rx.url, "--timeout", "30")     # the bug waited 100000 s
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "time_t" not in r.stderr
    assert "HTTP 503" in r.stderr
    if header != "inf":                                    # unreadable: backoff alone
        assert f"Retry-After {header!r}" in r.stderr and "deadline" in r.stderr
    assert "pushed" not in r.stderr


# -- 11. a peer's text printed raw ---------------------------------------------------------------

HOSTILE_STATUS = b"\x1b]0;owned\x07\x1b[2J\rHTTP/1.1 200 OK\r\n\r\n"


def test_a_hostile_status_line_reaches_no_terminal_raw(tmp_path):
    with RawPeer([[("send", HOSTILE_STATUS)]]) as peer:
        r = push(tmp_path, peer.url, "--timeout", "30")
    assert r.returncode == 1
    assert raw_free(r.stderr.replace("\n", "")), repr(r.stderr)
    assert "\\x1b]0;owned\\x07" in r.stderr


def test_peer_text_in_log_lines_is_escaped(caplog):
    from engram_numba import CognitiveTracer, TraceCollector, TracingConfig
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1024, max_threads=2))
    tr.trace_priming(0, 0.5, 1, 2)
    with RawPeer([[("send", HOSTILE_STATUS)]]) as peer, \
            caplog.at_level(logging.DEBUG, logger="engram_numba"):
        c = TraceCollector(tr, [LokiExporter(peer.url, timeout=30)])
        c.flush()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("engram_numba")]
    assert any("owned" in m for m in messages)
    assert all(raw_free(m) for m in messages), messages
    assert raw_free(c.stats()["exporters"]["loki"]["last_error"])


# -- 12. success only for the whole answer ------------------------------------------------------

def _otlp_response(rejected=0, message=""):
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
    r = pb.ExportMetricsServiceResponse()
    if rejected or message:
        r.partial_success.rejected_data_points = rejected
        r.partial_success.error_message = message
    return r.SerializeToString()


def _http(status_line, headers, body=b""):
    head = status_line + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"\r\n" + body


@pytest.mark.parametrize("answer", [
    [("send", b"HTTP/1.1 200 OK\r\nContent-Type: appl")],                     # cut in headers
    [("send", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")],        # cut in the body
    [("send", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")],
    [("send", _http(b"HTTP/1.1 200 OK\r\n", [(b"Content-Length", b"11")], b"not a proto"))],
], ids=["headers", "body", "chunked", "garbage-body"])
def test_a_cut_or_unreadable_answer_is_no_success(tmp_path, answer):
    with RawPeer([answer]) as peer:
        with pytest.raises(ExportError) as info:
            OtlpMetricExporter(peer.url, protocol="http", timeout=60).export(
                CognitivePatternMetrics())
        assert type(info.value) is ExportError               # retried, not dropped
        r = push(tmp_path, peer.url, "--timeout", "2")
    assert r.returncode == 1 and "pushed" not in r.stderr, r.stderr


@pytest.mark.parametrize("encoding", [None, b"gzip"])
def test_a_partial_success_rejection_is_reported_not_lost(tmp_path, encoding):
    body = _otlp_response(3, "bad \x1b[2J points")
    headers = [(b"Content-Type", b"application/x-protobuf")]
    if encoding:
        body = gzip.compress(body)
        headers.append((b"Content-Encoding", encoding))
    headers.append((b"Content-Length", str(len(body)).encode()))
    with RawPeer([[("send", _http(b"HTTP/1.1 200 OK\r\n", headers, body))]]) as peer:
        with pytest.raises(PermanentExportError, match="rejected 3 metrics"):
            OtlpMetricExporter(peer.url, protocol="http", timeout=60).export(
                CognitivePatternMetrics())
        r = push(tmp_path, peer.url, "--timeout", "30")
    assert r.returncode == 1 and "rejected 3" in r.stderr and "pushed" not in r.stderr
    assert raw_free(r.stderr.replace("\n", ""))


def test_a_whole_answer_is_a_success(tmp_path):
    body = _otlp_response()
    answer = _http(b"HTTP/1.1 200 OK\r\n", [(b"Content-Length", str(len(body)).encode())], body)
    chunked = _http(b"HTTP/1.1 200 OK\r\n", [(b"Transfer-Encoding", b"chunked")],
                    b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    with RawPeer([[("send", answer)], [("send", chunked)], [("send", answer)]]) as peer:
        OtlpMetricExporter(peer.url, protocol="http", timeout=60).export(CognitivePatternMetrics())
        OtlpMetricExporter(peer.url, protocol="http", timeout=60).export(CognitivePatternMetrics())
        r = push(tmp_path, peer.url, "--timeout", "60")
    assert r.returncode == 0 and "pushed 1 metric set(s) 1 time(s)" in r.stderr, r.stderr


# -- 14. endpoints are checked -----------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:port",
                                      "http://127.0.0.1:70000"])
def test_a_grpc_endpoint_with_an_impossible_port_is_refused(endpoint):
    with pytest.raises(ValueError, match="1-65535"):
        OtlpLogExporter(endpoint, insecure=True)


def test_endpoints_that_are_fine_are_taken():
    for endpoint in ("127.0.0.1:4317", "[::1]:4317", "localhost:4317", "http://h:4317/",
                     "unix:/tmp/otlp.sock"):
        OtlpLogExporter(endpoint, insecure=True).shutdown()
    with pytest.raises(ValueError, match="1-65535"):
        OtlpLogExporter("http://127.0.0.1:99999", protocol="http")
    with pytest.raises(ValueError, match="1-65535"):
        LokiExporter("http://127.0.0.1:99999")
