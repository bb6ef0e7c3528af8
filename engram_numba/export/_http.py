"""One HTTP POST with the delivery rules every exporter shares.

* success: 2xx;
* retried (:class:`ExportError`, honouring ``Retry-After``): connection errors,
  timeouts, 408, 429 and 5xx;
* not retried (:class:`PermanentExportError`, with the server's message): any
  other status (400 malformed, 401/403 auth, 404 wrong URL, 413 too large), and
  a server certificate that does not verify.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import socket
import ssl
import time
import urllib.error
import urllib.request

from ..tracing.collector import ExportError, PermanentExportError

RETRYABLE = {408, 429} | set(range(500, 600))


def retry_after(value) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ssl_context(ca_file: str | None, insecure: bool):
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file)


def post(url: str, body: bytes, content_type: str, *, headers=None, compress: bool = False,
         timeout: float = 10.0, context=None, describe=lambda status, body: body[:500]):
    """POST ``body``; return the response body, or raise per the module rules."""
    head = {"Content-Type": content_type, **(headers or {})}
    if compress:
        body = gzip.compress(body, compresslevel=5)
        head["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, headers=head, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        payload = exc.read() or b""
        if exc.headers.get("Content-Encoding") == "gzip":
            try:
                payload = gzip.decompress(payload)
            except OSError:
                pass
        message = f"HTTP {exc.code} from {url}: {describe(exc.code, payload)!r}"
        if exc.code in RETRYABLE:
            raise ExportError(message, retry_after(exc.headers.get("Retry-After"))) from None
        raise PermanentExportError(message) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise PermanentExportError(f"TLS certificate of {url} refused: {reason}") from None
        raise ExportError(f"cannot reach {url}: {reason}") from None
