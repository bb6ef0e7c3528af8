"""/metrics over HTTP: in-process server, CLI server on another process's file, SIGKILL."""

import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from engram_numba.export import MetricsServer
from engram_numba.metrics import attach_metrics
from engram_numba.engram.metrics import CognitivePatternMetrics

from .processes import Server, Worker, wait_for


def _values(text, parse=text_string_to_metric_families):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in parse(text) for s in f.samples}


def test_in_process_server_reads_fresh_values_each_scrape():
    m = CognitivePatternMetrics()
    with MetricsServer(m) as server:
        assert server.address[0] == "127.0.0.1"
        m.record_priming(0, 0.5)
        first = urllib.request.urlopen(server.url).read().decode()
        m.record_priming(0, 0.5)
        r = urllib.request.urlopen(server.url)
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        second = r.read().decode()
        key = ("engram_priming_events_total", (("priming_type", "semantic"),))
        assert _values(first)[key] == 1 and _values(second)[key] == 2
        req = urllib.request.Request(server.url, headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})
        om = urllib.request.urlopen(req)
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert _values(om.read().decode(), openmetrics_families)[key] == 2
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url.replace("/metrics", "/other"))
        assert err.value.code == 404


def test_cli_serves_a_file_written_by_another_process_and_sigkill_loses_nothing(tmp_path):
    path = tmp_path / "engram.metrics"
    with Worker(path, "step", 5000) as worker, Server(path) as server:
        recorded = worker.step()
        served = _values(server.get())
        assert sum(v for (n, _), v in served.items() if n == "engram_priming_events_total") == recorded
        assert served[("engram_priming_strength_count", ())] == recorded
        assert served[("engram_reconsolidation_window_hits_total", ())] == 3 * recorded // 4
        recorded = worker.step()
        recorded = worker.step()
        worker.kill()                      # SIGKILL while it waits for the next step
        after = _values(server.get())
        assert sum(v for (n, _), v in after.items()
                   if n == "engram_priming_events_total") == recorded == 15000
    direct = attach_metrics(path)
    assert direct.snapshot()["metrics"]["engram_priming_strength"]["samples"][0]["value"]["count"] == 15000


def test_cli_serve_refuses_bad_files(tmp_path):
    import subprocess
    import sys
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a region" * 100)
    r = subprocess.run([sys.executable, "-m", "engram_numba", "metrics", "serve", "--attach",
                        str(junk), "--port", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "not an engram-numba region" in r.stderr


def _scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status


def test_half_open_connections_are_bounded_and_time_out():
    """150 clients that connect and send nothing: never more than 8 handler threads,
    each stalled one is dropped after its timeout, and the server keeps serving."""
    import socket
    import threading
    import time
    m = CognitivePatternMetrics()
    with MetricsServer(m, timeout=0.5, max_connections=8) as server:
        base = threading.active_count()
        idle = [socket.create_connection(server.address) for _ in range(150)]
        most = 0
        deadline = time.monotonic() + 120                      # a guard only
        while server.refused_connections + server.served_connections < 150:
            assert time.monotonic() < deadline, "the server stopped handling connections"
            most = max(most, threading.active_count() - base)
            time.sleep(0.005)
        assert most <= 8, f"{most} handler threads for idle clients"
        for s in idle:
            s.close()
        assert _scrape(server.url) == 200
        while threading.active_count() > base and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= base


def test_early_disconnects_are_quiet(tmp_path):
    """A client that hangs up before reading its answer: no traceback on stderr."""
    import socket
    import subprocess
    import sys
    import time
    path = tmp_path / "c.metrics"
    CognitivePatternMetrics.create(path).close()
    with Server(path) as server:
        host, port = server.url.split("//")[1].split("/")[0].split(":")
        for _ in range(100):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()                                          # RST: the write fails
        def scraped():
            try:
                return _values(server.get())
            except urllib.error.HTTPError as exc:              # busy with the flood: 503
                assert exc.code == 503
                return None
        assert wait_for(scraped, timeout=120, interval=0.05)   # still serving
        server.stop()
        err = server.proc.stderr.read()
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err


def test_gzip_when_asked_and_keep_alive_over_http_1_1():
    import gzip
    import http.client
    m = CognitivePatternMetrics()
    m.record_priming(0, 0.5)
    with MetricsServer(m) as server:
        host, port = server.address
        conn = http.client.HTTPConnection(host, port, timeout=30)
        sizes = {}
        for encoding in ("gzip", "", "gzip;q=0", "br, gzip;q=0.5"):
            conn.request("GET", "/metrics", headers={"Accept-Encoding": encoding} if encoding
                         else {})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200 and r.version == 11          # one connection, HTTP/1.1
            assert r.getheader("Vary") == "Accept, Accept-Encoding"
            zipped = r.getheader("Content-Encoding") == "gzip"
            assert zipped == (encoding in ("gzip", "br, gzip;q=0.5")), encoding
            text = (gzip.decompress(body) if zipped else body).decode()
            samples = {s.name: s.value for f in text_string_to_metric_families(text)
                       for s in f.samples if not s.labels}
            assert samples["engram_priming_strength_count"] == 1
            sizes[encoding] = len(body)
        conn.close()
        assert wait_for(lambda: server.served_connections == 1, timeout=30)
    assert sizes["gzip"] * 5 < sizes[""]                 # the cognitive set compresses well
