"""One HTTP POST with the delivery rules every exporter shares (see .._delivery).

* success: a complete response (its headers ended by a blank line, its body as
  long as it says) with a 2xx status;
* retried (:class:`ExportError`, with the ``Retry-After`` the server sent):
  connection errors, timeouts, 408, 429 and 5xx, and a response that is not HTTP
  at all (a garbage status line, a connection closed mid-response, headers or a
  body cut off);
* not retried (:class:`PermanentExportError`, with the server's message): any
  other status (400 malformed, 401/403 auth, 404 wrong URL, 413 too large), and
  a server certificate that does not verify.

Whatever the server sends (its status line, reason, message, headers) appears
in messages only escaped (:func:`.._delivery.escape`).  A response with more than
100 headers or a line longer than 64 KiB is refused as not HTTP (http.client's
limits against hostile peers), and at most 1 MiB of a body is kept.

``timeout`` is a deadline for the whole request (connect, send, the response
and its body), not for each socket operation: a server that trickles one byte
at a time cannot hold an exporter past it.  A watchdog shuts the socket down
when the deadline passes, which interrupts whatever the request is blocked in.
Written on ``http.client`` rather than ``urllib`` because urllib only offers a
per-operation timeout.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import itertools
import math
import re
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from .._delivery import RETRYABLE_HTTP as RETRYABLE, escape, parse_retry_after as retry_after
from ..errors import ExportError, PermanentExportError

MAX_RESPONSE = 1 << 20          # bytes of a response body kept (error messages, partial success)
_CHUNK = 1 << 16


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host and a valid port, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{url!r}: the port must be a number in 1-65535")
    return url


_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] [0-9]{3}(?: [\t\x20-\x7e\x80-\xff]*)?\r?\n\Z")
_HEADER_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r?\n\Z")


class _Tracked:
    """A response's file that keeps the lines of the status and headers, so that they can
    be checked against HTTP/1.1's grammar: http.client takes the end of the connection
    for the blank line that ends the headers, and lets control characters through."""

    def __init__(self, fp):
        self._fp = fp
        self.lines = []
        self.body_lines = []              # chunk sizes and trailers, read after the headers

    def readline(self, *args):
        line = self._fp.readline(*args)
        (self.lines if self.lines is not None else self.body_lines).append(line)
        return line

    def chunks_problem(self) -> str | None:
        """A chunked body whose size lines or final blank line were cut off."""
        lines = self.body_lines
        if not lines or lines[-1] not in (b"\r\n", b"\n") or \
                not all(line.endswith(b"\n") for line in lines):
            return "the chunked body was cut off"
        return None

    def head_problem(self) -> str | None:
        """What is wrong with the status line and headers read so far, or None."""
        lines, self.lines = self.lines, None
        if not lines or lines[-1] not in (b"\r\n", b"\n"):
            return "the headers were cut off"
        expect_status = True
        for line in lines:
            if expect_status:
                if not _STATUS_LINE.match(line):
                    return "a malformed status line"
                expect_status = False
            elif line in (b"\r\n", b"\n"):
                expect_status = True              # after an interim (1xx) response
            elif not _HEADER_LINE.match(line):
                return "a malformed header line"
        return None

    def __getattr__(self, name):
        return getattr(self._fp, name)


class _Response(http.client.HTTPResponse):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fp = _Tracked(self.fp)


class _Connection(http.client.HTTPConnection):
    response_class = _Response


class _TlsConnection(http.client.HTTPSConnection):
    response_class = _Response


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ssl_context(ca_file: str | None, insecure: bool):
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file)


class _Watchdog:
    """One thread that shuts sockets down when their deadlines pass.

    A deadline is a fixed time plus, optionally, a callable whose value can
    move earlier while the request runs (a collector being stopped); it is
    checked every 50 ms.
    """

    POLL = 0.05

    def __init__(self):
        self._entries = {}
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread = None

    def arm(self, end: float, sock, moving=None) -> int:
        with self._cond:
            key = next(self._ids)
            self._entries[key] = (end, moving, sock)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="engram-http-deadline",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
            return key

    def disarm(self, key: int) -> None:
        with self._cond:
            self._entries.pop(key, None)

    def _run(self):
        with self._cond:
            while True:
                if not self._entries:
                    if not self._cond.wait(timeout=30.0) and not self._entries:
                        self._thread = None
                        return
                    continue
                now = time.monotonic()
                for key, (end, moving, sock) in list(self._entries.items()):
                    if moving is not None:
                        end = min(end, moving())
                    if now >= end:
                        del self._entries[key]
                        try:
                            socket.socket.shutdown(sock, socket.SHUT_RDWR)
                        except OSError:
                            pass
                self._cond.wait(timeout=self.POLL)


_watchdog = _Watchdog()


def deadline_parts(deadline) -> tuple:
    """(fixed monotonic time or inf, callable or None) from a deadline argument.

    A deadline is None, a ``time.monotonic()`` value, or a callable returning
    one (which may move earlier while a request runs).
    """
    if deadline is None:
        return math.inf, None
    if callable(deadline):
        return math.inf, deadline
    return float(deadline), None


def post(url: str, body: bytes, content_type: str, *, headers=None, compress: bool = False,
         timeout: float = 10.0, context=None, deadline: float | None = None,
         describe=lambda status, body: body[:500]):
    """POST ``body``; return the response body, or raise per the module rules.

    The request ends by ``timeout`` seconds from now, or by ``deadline`` (see
    :func:`deadline_parts`) if that comes first.
    """
    fixed, moving = deadline_parts(deadline)
    end = min(time.monotonic() + timeout, fixed)
    if moving is not None:
        end = min(end, moving())
    try:
        check_url(url)
    except ValueError as exc:
        raise PermanentExportError(str(exc)) from None
    parts = urlsplit(url)
    head = {"Content-Type": content_type, **(headers or {})}
    if compress:
        body = gzip.compress(body, compresslevel=5)
        head["Content-Encoding"] = "gzip"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise ExportError(f"no time left to send to {url}")
    if parts.scheme == "https":
        conn = _TlsConnection(parts.hostname, parts.port, timeout=remaining,
                              context=context or ssl.create_default_context())
    else:
        conn = _Connection(parts.hostname, parts.port, timeout=remaining)
    key = None
    try:
        conn.connect()
        key = _watchdog.arm(end, conn.sock, moving)
        conn.request("POST", path, body=body, headers=head)
        response = conn.getresponse()
        tracked = response.fp if isinstance(response.fp, _Tracked) else None
        problem = tracked.head_problem() if tracked is not None else None
        problem = problem or _framing_problem(response)
        if problem:
            raise _Malformed(problem)
        payload = _read_all(response)
        if response.chunked and tracked is not None:
            problem = tracked.chunks_problem()
            if problem:
                raise _Malformed(problem)
        status = response.status
        encoding = response.getheader("Content-Encoding")
        retry = response.getheader("Retry-After")
    except ssl.SSLCertVerificationError as exc:
        raise PermanentExportError(f"TLS certificate of {url} refused: "
                                   f"{escape(str(exc))}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        now = time.monotonic()
        if now >= end or (moving is not None and now >= moving()):
            raise ExportError(f"{url}: no complete response within the deadline "
                              f"({timeout:g} s)") from None
        what = "response cut off" if isinstance(exc, http.client.IncompleteRead) else \
            f"not an HTTP response: {exc}" if isinstance(exc, _Malformed) else \
            f"{type(exc).__name__}: {escape(str(exc))}"
        raise ExportError(f"cannot deliver to {url}: {what}") from None
    finally:
        if key is not None:
            _watchdog.disarm(key)
        conn.close()
    if encoding == "gzip":
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError):
            if 200 <= status < 300:
                raise ExportError(f"cannot deliver to {url}: HTTP {status} with a body that "
                                  f"is not the gzip it says it is") from None
    if 200 <= status < 300:
        return payload
    message = f"HTTP {status} from {url}: '{escape(describe(status, payload))}'"
    if status in RETRYABLE:
        raise ExportError(message, retry_after(retry), retry)
    raise PermanentExportError(message)


class _Malformed(http.client.HTTPException):
    """A response that does not follow HTTP/1.1's grammar."""


def _framing_problem(response) -> str | None:
    """Content-Length and Transfer-Encoding headers that do not say where the body ends."""
    lengths = response.msg.get_all("Content-Length") or []
    values = {v.strip() for item in lengths for v in item.split(",")}
    if values and (len(values) > 1 or not all(v.isdigit() for v in values)):
        return "an unusable Content-Length"
    codings = response.msg.get_all("Transfer-Encoding") or []
    if codings and [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
        return "a Transfer-Encoding other than chunked"
    return None


def _read_all(response) -> bytes:
    """The whole body (the first MAX_RESPONSE bytes kept, the rest read and dropped);
    IncompleteRead if the connection ends before the body does."""
    kept, size = [], 0
    while True:
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        if size < MAX_RESPONSE:
            kept.append(chunk[:MAX_RESPONSE - size])
        size += len(chunk)
    if response.length:                          # Content-Length promised more
        raise http.client.IncompleteRead(b"", response.length)
    return b"".join(kept)
