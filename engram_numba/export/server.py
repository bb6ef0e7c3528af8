"""A small HTTP server for ``/metrics`` (loopback by default).

Every request reads fresh snapshots of the metric sets it serves; nothing is
cached between scrapes.  The format follows the scraper's ``Accept`` header
(:func:`negotiate`): Prometheus text format 0.0.4 by default, OpenMetrics when
asked for and ``prometheus_client`` is installed, and the protobuf format with
native histograms (:mod:`.prometheus_proto`) when asked for and ``protobuf``
is installed; gzip when the scraper accepts it.

It is built to stay up on a shared machine: each connection has a read/write
timeout (a half-open or stalled client is dropped), a request must be complete
(its line and headers) within ``timeout`` seconds of the moment the server
starts waiting for it, however slowly it trickles in, and at most
``max_connections`` are served at once.  When all of them are taken and another
client connects, the connection waiting for a request that has sent the least
(over all its requests) is dropped to make room (a scraper being answered
never is); only when every connection is being answered does a new
client get ``503``.  A client that disconnects early is logged at DEBUG, not
printed as a traceback.
"""

from __future__ import annotations

import functools
import gzip
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..metrics.families import families_of
from .prometheus import CONTENT_TYPE, openmetrics_exposition, render_families
from .prometheus_proto import CONTENT_TYPE as PROTOBUF_TYPE, PROTO_NAME, render_protobuf
from ._http import _watchdog

log = logging.getLogger(__name__)

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError,
                socket.timeout)
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Retry-After: 1\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
         b"too many connections")


@functools.lru_cache(maxsize=None)
def _importable(module: str) -> bool:
    """Whether ``module`` can be imported (asked once per process, not per scrape)."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def negotiate(accept: str) -> str:
    """The format to answer an ``Accept`` header with: ``"protobuf"``,
    ``"openmetrics"`` or ``"text"``.  The offered type with the highest ``q`` wins
    (the first listed among equals); protobuf needs ``protobuf`` and OpenMetrics
    ``prometheus_client`` installed, and text is the answer to anything else."""
    best, best_q = "text", -1.0
    for item in accept.split(","):
        media, *params = [p.strip() for p in item.split(";")]
        opts = {}
        for p in params:
            k, _, v = p.partition("=")
            opts[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(opts.get("q", "1"))
        except ValueError:
            q = 0.0
        media = media.lower()
        if media == "application/vnd.google.protobuf" \
                and opts.get("proto") == PROTO_NAME and opts.get("encoding") == "delimited" \
                and _importable("google.protobuf"):
            fmt = "protobuf"
        elif media == "application/openmetrics-text" and _importable("prometheus_client"):
            fmt = "openmetrics"
        elif media in ("text/plain", "text/*", "*/*"):
            fmt = "text"
        else:
            continue
        if q > best_q and q > 0:
            best, best_q = fmt, q
    return best


class _Waiting:
    """A connection: bytes it sent (all its requests), whether the server waits for a
    request from it, since when."""

    __slots__ = ("sock", "received", "since", "waiting")

    def __init__(self, sock):
        self.sock, self.received, self.since, self.waiting = sock, 0, time.monotonic(), True


class _Counting:
    """A handler's ``rfile`` that counts what the client sent."""

    def __init__(self, raw, state):
        self._raw, self._state = raw, state

    def readline(self, *args):
        line = self._raw.readline(*args)
        self._state.received += len(line)
        return line

    def read(self, *args):
        data = self._raw.read(*args)
        self._state.received += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._raw, name)


class _Server(ThreadingHTTPServer):
    """Threads bounded by a semaphore; early disconnects are not errors; when every slot
    is taken, the connection waiting for a request that sent the least makes room."""

    daemon_threads = True
    request_queue_size = 128          # listen backlog: a burst of scrapers is queued, not dropped
    SHED_WAIT = 2.0                   # seconds a new client waits for the slot it freed

    def __init__(self, address, handler, max_connections):
        self.slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        self.finished = 0
        self.shed = 0
        self.connections = {}         # socket -> _Waiting
        self.lock = threading.Lock()
        super().__init__(address, handler)

    def _shed_one(self) -> bool:
        """Drop the waiting connection that has sent the least bytes (over all its requests;
        the longest waiting among equals)."""
        with self.lock:
            waiting = [c for c in self.connections.values() if c.waiting]
            if not waiting:
                return False
            victim = min(waiting, key=lambda c: (c.received, c.since))
            victim.waiting = False
        try:
            victim.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.shed += 1
        log.debug("dropped a connection that sent %d bytes of its request to make room",
                  victim.received)
        return True

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False) and not (
                self._shed_one() and self.slots.acquire(timeout=self.SHED_WAIT)):
            self.refused += 1
            try:
                request.settimeout(0.5)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.finished += 1
            self.slots.release()

    def handle_error(self, request, client_address):
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECTS):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.exception("error serving %s", client_address)


def _accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (``q=0`` refuses it)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


class MetricsServer:
    """Serve ``/metrics`` for metric sets (or zero-argument callables returning them).

    ``port=0`` picks a free port; see :attr:`url`.  ``timeout`` is the per-
    connection read/write timeout in seconds, ``max_connections`` the number
    served at once.  ``classic_scale`` exports the classic ``le`` buckets of
    exponential histograms at that scale in the text formats instead of each
    one's declared ``classic_scale`` (see :func:`~.prometheus.render_families`);
    the protobuf format carries every bucket as a native histogram.  Use as a
    context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, *sources, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0,
                 max_connections: int = 16, classic_scale: int | None = None):
        if not sources:
            raise ValueError("MetricsServer needs at least one metric set")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) \
                or max_connections < 1:
            raise ValueError(f"max_connections must be a positive integer, got {max_connections!r}")
        if classic_scale is not None:
            from ..metrics.buckets import check_scale
            check_scale(classic_scale)
        self.classic_scale = classic_scale
        self.sources = sources
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"    # keep-alive between scrapes, up to ``timeout`` idle

            def setup(self):
                self.timeout = timeout       # StreamRequestHandler applies it to the socket
                super().setup()
                self._waiting = _Waiting(self.connection)
                self.rfile = _Counting(self.rfile, self._waiting)
                with server._httpd.lock:
                    server._httpd.connections[self.connection] = self._waiting

            def finish(self):
                with server._httpd.lock:
                    server._httpd.connections.pop(self.connection, None)
                super().finish()

            def handle_one_request(self):
                # the whole request (line and headers) within `timeout`, however it trickles
                state = self._waiting
                state.since, state.waiting = time.monotonic(), True
                key = _watchdog.arm(state.since + timeout, self.connection)
                self._deadline = key
                try:
                    super().handle_one_request()
                finally:
                    if self._deadline is not None:
                        _watchdog.disarm(self._deadline)

            def parse_request(self):
                ok = super().parse_request()
                _watchdog.disarm(self._deadline)    # complete: now it is answered
                self._deadline = None
                self._waiting.waiting = False
                return ok

            def do_GET(self):
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                try:
                    sets = server._sets()
                    fmt = negotiate(self.headers.get("Accept", ""))
                    if fmt == "openmetrics":
                        body = openmetrics_exposition(
                            *sets, classic_scale=server.classic_scale).encode()
                        ctype = OPENMETRICS_TYPE
                    else:
                        fams, key = families_of(sets)
                        if fmt == "protobuf":
                            body, ctype = render_protobuf(fams), PROTOBUF_TYPE
                        else:
                            body = render_families(fams, key, server.classic_scale).encode()
                            ctype = CONTENT_TYPE
                except Exception as exc:  # a broken source must not kill the server
                    log.exception("scrape failed")
                    self.send_error(500, f"scrape failed: {exc}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                if _accepts_gzip(self.headers.get("Accept-Encoding", "")):
                    body = gzip.compress(body, compresslevel=6)
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Vary", "Accept, Accept-Encoding")   # both pick the body
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("%s " + fmt, self.address_string(), *args)

        try:
            self._httpd = _Server((host, port), Handler, max_connections)
        except OverflowError as exc:
            raise ValueError(f"cannot listen on {host}:{port}: {exc}") from None
        self._thread = None

    def _sets(self):
        return [s() if callable(s) and not hasattr(s, "collect") else s for s in self.sources]

    @property
    def address(self):
        return self._httpd.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/metrics"

    @property
    def refused_connections(self) -> int:
        """Connections answered 503 because ``max_connections`` were being served."""
        return self._httpd.refused

    @property
    def shed_connections(self) -> int:
        """Connections still waiting for their request that were dropped to make room."""
        return self._httpd.shed

    @property
    def served_connections(self) -> int:
        """Connections served to the end (answered, timed out or closed by the client)."""
        return self._httpd.finished

    def start(self) -> "MetricsServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="engram-metrics",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
