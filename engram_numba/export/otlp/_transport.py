"""OTLP transports: gRPC and HTTP/protobuf, and how an answer is judged.

Every failure is an :class:`~...errors.ExportError` (retried) or a
:class:`~...errors.PermanentExportError` by the rules of :mod:`..._delivery`;
HTTP goes through :mod:`.._http`, the POST every HTTP exporter shares.
"""

from __future__ import annotations

import logging
import math
import time
from urllib.parse import urlparse

from ..._delivery import RETRYABLE_GRPC, escape
from ...errors import ExportError, PermanentExportError
from .. import _http

log = logging.getLogger(__name__)

LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_METHODS = {"logs": LOGS_METHOD, "metrics": METRICS_METHOD, "traces": TRACES_METHOD}


class Transport:
    """Sends serialized requests over gRPC or HTTP/protobuf."""

    def __init__(self, endpoint: str, protocol: str, headers, compression, timeout,
                 insecure, ca_file, full_url: bool = False):
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        if compression not in (None, "gzip"):
            raise ValueError(f"compression must be None or 'gzip', got {compression!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        headers = dict(headers or {})
        for k, v in headers.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k.strip() \
                    or any(c in k + v for c in "\r\n"):
                raise ValueError(f"headers must map names to single-line strings, got "
                                 f"{k!r}: {v!r}")
        self.protocol = protocol
        self.headers = headers
        self.compression = compression
        self.timeout = float(timeout)
        if protocol == "http":
            parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
            _http.check_url(parsed.geturl())
            self.base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
            self.full_url = full_url        # a per-signal endpoint is the whole URL
            self.context = _http.ssl_context(ca_file, insecure) if parsed.scheme == "https" else None
            self.channel = None
        else:
            import grpc
            target = _grpc_target(endpoint)
            if insecure or endpoint.startswith("http://"):
                self.channel = grpc.insecure_channel(target)
            else:
                roots = open(ca_file, "rb").read() if ca_file else None
                self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots))
            self._calls = {}

    def send(self, kind: str, body: bytes, deadline: float | None = None) -> bytes:
        if self.protocol == "http":
            url = self.base if self.full_url else f"{self.base}/v1/{kind}"
            return _http.post(url, body, "application/x-protobuf",
                              headers=self.headers, compress=self.compression == "gzip",
                              timeout=self.timeout, context=self.context, deadline=deadline,
                              describe=_describe_status)
        return self._grpc(kind, body, deadline)

    def _grpc(self, kind, body, deadline=None):
        import grpc
        method = _METHODS[kind]
        call = self._calls.get(method)
        if call is None:
            call = self._calls[method] = self.channel.unary_unary(
                method, request_serializer=None, response_deserializer=None)
        metadata = [(k.lower(), v) for k, v in self.headers.items()]
        compression = grpc.Compression.Gzip if self.compression == "gzip" else None
        fixed, moving = _http.deadline_parts(deadline)

        def end():
            return min(fixed, moving()) if moving is not None else fixed

        timeout = min(self.timeout, end() - time.monotonic())
        if timeout <= 0:
            raise ExportError("no time left before the deadline")
        try:
            future = call.future(body, timeout=timeout, metadata=metadata, compression=compression)
            while True:
                try:
                    return future.result(timeout=0.05)
                except grpc.FutureTimeoutError:
                    if time.monotonic() >= end():
                        future.cancel()
                        raise ExportError("gRPC call cancelled at the deadline") from None
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() else "UNKNOWN"
            message = f"gRPC {code}: '{escape(exc.details() or '')}'"
            if code in RETRYABLE_GRPC:
                delay = _grpc_retry_delay(exc)
                raise ExportError(message, delay,
                                  None if delay is None else f"RetryInfo {delay:g} s") from None
            raise PermanentExportError(message) from None

    def close(self):
        if self.channel is not None:
            self.channel.close()


def _grpc_target(endpoint: str) -> str:
    """The gRPC target of an endpoint (``host:port``, ``[v6]:port``, ``http(s)://host:port``,
    ``unix:path``); ValueError for a port that is not a number in 1-65535 (grpc would
    take 99999 as 34463)."""
    target = endpoint.split("://", 1)[-1].rstrip("/")
    if target.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return target
    host, sep, port = target.rpartition(":")
    if sep and not host.endswith("]") and ":" in host:       # a bare IPv6 address
        return target
    if sep:
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"gRPC endpoint {endpoint!r}: expected host:port with a port "
                             f"in 1-65535")
    elif not target:
        raise ValueError(f"gRPC endpoint {endpoint!r}: expected host:port")
    return target


def _describe_status(status, payload: bytes) -> str:
    """The message of a google.rpc.Status body (OTLP/HTTP errors), else the raw text."""
    try:
        from google.rpc import status_pb2
        return status_pb2.Status.FromString(payload).message or payload[:500].decode(errors="replace")
    except Exception:
        return payload[:500].decode(errors="replace")


def _grpc_retry_delay(exc) -> float | None:
    """RetryInfo from the error's trailing metadata, if the server sent one."""
    try:
        from google.rpc import error_details_pb2, status_pb2
        for key, value in exc.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                for detail in status_pb2.Status.FromString(value).details:
                    info = error_details_pb2.RetryInfo()
                    if detail.Unpack(info):
                        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    except Exception:
        return None
    return None


def partial_success(kind: str, response: bytes) -> None:
    """Check a successful answer's body: one that is not an Export*ServiceResponse is an
    :class:`ExportError` (retried: the answer does not say the data arrived); a
    'partial success' rejecting records is permanent (not retried)."""
    if not response:
        return
    try:
        if kind == "logs":
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import \
                ExportLogsServiceResponse as Response
            rejected_field = "rejected_log_records"
        elif kind == "traces":
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import \
                ExportTraceServiceResponse as Response
            rejected_field = "rejected_spans"
        else:
            from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import \
                ExportMetricsServiceResponse as Response
            rejected_field = "rejected_data_points"
    except ImportError:  # pragma: no cover - the extra is installed with the exporters
        return
    try:
        partial = Response.FromString(response).partial_success
    except Exception:
        raise ExportError(f"the receiver's answer is not an OTLP {kind} response "
                          f"({len(response)} bytes: '{escape(response[:80])}'): the data may "
                          f"not have arrived") from None
    rejected = getattr(partial, rejected_field, 0)
    if rejected:
        raise PermanentExportError(f"receiver rejected {rejected} {kind} records: "
                                   f"'{escape(partial.error_message)}'")
    if partial.error_message:
        log.warning("OTLP receiver: %s", escape(partial.error_message))
