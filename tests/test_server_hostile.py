"""/metrics against slow clients: a request must be complete within the timeout however
it trickles in, and clients that hold every slot without sending a request make room
for a real scrape."""

import socket
import time
import urllib.request

from engram_numba.engram.metrics import CognitivePatternMetrics
from engram_numba.export import MetricsServer


def _scrape(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status


def test_slow_clients_holding_every_slot_do_not_lock_scrapers_out():
    m = CognitivePatternMetrics()
    with MetricsServer(m, timeout=600, max_connections=4) as server:
        slow = []
        for _ in range(20):                            # the twenty slow clients
            s = socket.create_connection(server.address)
            s.sendall(b"GET /metr")                    # a few header bytes, then nothing
            slow.append(s)
        for _ in range(5):
            assert _scrape(server.url) == 200          # before the fix: 503, for as long
        assert server.shed_connections >= 5           # as the slow clients trickled
        for s in slow:
            s.close()


def test_a_trickled_request_is_cut_at_the_timeout_however_slow_each_byte():
    m = CognitivePatternMetrics()
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"y" * 60 + b"\r\n\r\n"
    with MetricsServer(m, timeout=2.0) as server:
        s = socket.create_connection(server.address)
        s.settimeout(0.0)
        sent, closed = 0, False
        for byte in request:                           # one byte every 0.2 s: each well
            try:                                       # within the per-read timeout
                s.send(bytes([byte]))
                sent += 1
                if s.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            time.sleep(0.2)
        s.close()
    assert closed and sent < len(request), f"the server waited for all {sent} bytes"


def test_the_connection_that_sent_the_least_makes_room():
    m = CognitivePatternMetrics()
    with MetricsServer(m, timeout=600, max_connections=2) as server:
        waiting = socket.create_connection(server.address)
        waiting.sendall(b"GET /met")                                   # part of a request
        keep = socket.create_connection(server.address)                # keep-alive scraper
        keep.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += keep.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        assert _scrape(server.url) == 200                # sheds one: the least sent
        waiting.settimeout(60)
        assert waiting.recv(1) == b""                    # the partial request was dropped
        keep.close()
        waiting.close()
