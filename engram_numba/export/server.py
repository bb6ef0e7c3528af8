"""A small HTTP server for ``/metrics`` (loopback by default).

Every request reads fresh snapshots of the metric sets it serves; nothing is
cached between scrapes.  Prometheus text format 0.0.4 by default, OpenMetrics
when the scraper asks for it and ``prometheus_client`` is installed.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .prometheus import CONTENT_TYPE, exposition, openmetrics_exposition

log = logging.getLogger(__name__)

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _wants_openmetrics(accept: str) -> bool:
    if "application/openmetrics-text" not in accept:
        return False
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class MetricsServer:
    """Serve ``/metrics`` for metric sets (or zero-argument callables returning them).

    ``port=0`` picks a free port; see :attr:`url`.  Use as a context manager or
    call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, *sources, host: str = "127.0.0.1", port: int = 0):
        if not sources:
            raise ValueError("MetricsServer needs at least one metric set")
        self.sources = sources
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                try:
                    sets = server._sets()
                    if _wants_openmetrics(self.headers.get("Accept", "")):
                        body, ctype = openmetrics_exposition(*sets).encode(), OPENMETRICS_TYPE
                    else:
                        body, ctype = exposition(*sets).encode(), CONTENT_TYPE
                except Exception as exc:  # a broken source must not kill the server
                    log.exception("scrape failed")
                    self.send_error(500, f"scrape failed: {exc}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("%s " + fmt, self.address_string(), *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
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
