"""OpenTelemetry (OTLP) export: events as logs, spans as traces, metric sets as metrics.

Needs ``pip install 'engram-numba[otlp]'`` (``opentelemetry-proto`` and
``grpcio``).

* Events -> ``LogRecord``s (see :mod:`._otlp_logs` for every field).
* Spans -> ``Span``s (:class:`OtlpSpanExporter`): the begin and end events of
  each span, paired across batches (:mod:`engram_numba.tracing.spans`), with
  trace id (the tracer's id and the root span's id), span id, parent span id,
  start and end times, the span's fields as attributes ``<set>.<field>``, and
  optionally the events emitted inside it as span events.
* Metric sets -> OTLP metrics: counters as monotonic cumulative ``Sum``
  (start time: the set's creation), gauges as ``Gauge``, exponential histograms
  as ``ExponentialHistogram`` with the same scale and bucket indexes (the
  schemes are identical: bucket i holds (base**i, base**(i+1)]), zero bucket,
  negative buckets, and ``zero_threshold = 2**min_exponent``; explicit ones as
  ``Histogram``.  Once values above the histogram's range were recorded, the
  point goes out at a coarser scale that holds them exactly (0, or -4 for
  values more than 2**16 times the range's top; see
  :meth:`~..metrics.buckets.ExponentialBuckets.sparse`).  ``sum`` is left out
  of a point that recorded a negative value, as the OTLP data model requires
  (``min`` and ``max`` are always sent).  Observations kept out of a
  histogram (NaN, infinities, out-of-domain negatives) go to a
  ``<name>_excluded`` Sum with a ``reason`` attribute; top-k tables to a Sum
  per key.
* Transports: ``protocol="grpc"`` (``host:port``; TLS unless ``insecure``) or
  ``"http"`` (``http(s)://host:port``; posts to ``/v1/logs`` and
  ``/v1/metrics``), optional gzip, extra headers (e.g. auth tokens), timeouts.
  gRPC UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED, CANCELLED,
  OUT_OF_RANGE and DATA_LOSS, and HTTP 408/429/5xx are retried by the
  collector (honouring Retry-After / RetryInfo, capped); anything else is
  permanent.  A push succeeds only when the whole answer says so: a response
  that cannot be read is retried, one whose ``partial_success`` rejects records
  is a :class:`PermanentExportError` (see :mod:`.._delivery`, the policy the
  collector, the command line and :meth:`OtlpMetricExporter.start` share).
"""

from __future__ import annotations

import logging
import math
import os
import time
from urllib.parse import urlparse

import numpy as np

from .. import __version__
from ..metrics.buckets import ExponentialBuckets
from ..metrics.families import COUNTER, GAUGE, families_of
from .._delivery import (RETRYABLE_GRPC, Backoff, ExportError, PermanentExportError, escape,
                         plan_retry)
from ..tracing.schema import as_events
from . import _http
from ._otlp_logs import field_bytes, log_records

__all__ = ["OtlpLogExporter", "OtlpMetricExporter", "OtlpSpanExporter", "logs_request",
           "metrics_request", "spans_request"]

log = logging.getLogger(__name__)

LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_METHODS = {"logs": LOGS_METHOD, "metrics": METRICS_METHOD, "traces": TRACES_METHOD}
_GRPC_RETRYABLE = RETRYABLE_GRPC


def _proto():
    try:
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.metrics.v1 import metrics_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("OTLP export needs: pip install 'engram-numba[otlp]'") from exc
    return common_pb2, metrics_pb2, resource_pb2


def _attributes(common_pb2, items):
    out = []
    for key, value in items.items():
        if isinstance(value, bool):
            v = common_pb2.AnyValue(bool_value=value)
        elif isinstance(value, int):
            v = common_pb2.AnyValue(int_value=value)
        elif isinstance(value, float):
            v = common_pb2.AnyValue(double_value=value)
        else:
            v = common_pb2.AnyValue(string_value=str(value))
        out.append(common_pb2.KeyValue(key=key, value=v))
    return out


# -- the OpenTelemetry environment --------------------------------------------------------
# The variables of the OTLP exporter specification; an explicit argument wins.

_instance = {"id": None, "pid": None}


def instance_id() -> str:
    """``service.instance.id`` of this process: a random UUID, new in a forked child."""
    if _instance["pid"] != os.getpid():
        import uuid
        _instance["id"], _instance["pid"] = str(uuid.uuid4()), os.getpid()
    return _instance["id"]


def _env(name: str, kind: str):
    """``OTEL_EXPORTER_OTLP_<KIND>_<NAME>``, else ``OTEL_EXPORTER_OTLP_<NAME>`` (None if unset)."""
    for var in (f"OTEL_EXPORTER_OTLP_{kind.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = os.environ.get(var, "").strip()
        if value:
            return var, value
    return None, None


def _key_values(text: str, var: str) -> dict:
    """``k=v,k2=v2`` with percent-encoded values (the W3C baggage form the spec uses)."""
    from urllib.parse import unquote
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{var}: expected key=value pairs, got {item!r}")
        out[unquote(key.strip())] = unquote(value.strip())
    return out


def resource_from_environment() -> dict:
    """``OTEL_RESOURCE_ATTRIBUTES`` with ``OTEL_SERVICE_NAME`` as ``service.name``."""
    attrs = _key_values(os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""), "OTEL_RESOURCE_ATTRIBUTES")
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        attrs["service.name"] = name
    return attrs


def _envelope(service_name, resource_attributes):
    common_pb2, _, resource_pb2 = _proto()
    attrs = {"service.name": service_name, "service.instance.id": instance_id(),
             "telemetry.sdk.name": "engram-numba",
             "telemetry.sdk.language": "python", "telemetry.sdk.version": __version__,
             **(resource_attributes or {})}
    resource = resource_pb2.Resource(attributes=_attributes(common_pb2, attrs))
    scope = common_pb2.InstrumentationScope(name="engram_numba", version=__version__)
    return resource, scope


def logs_request(events: np.ndarray, *, service_name: str | None = None,
                 resource_attributes: dict | None = None, observed_ns: int | None = None) -> bytes:
    """A serialized ``ExportLogsServiceRequest`` carrying ``events``
    (``service_name`` defaults to the event set's name)."""
    events, layout = as_events(events)
    resource, scope = _envelope(layout.name if service_name is None else service_name,
                                resource_attributes)
    records = log_records(events, time.time_ns() if observed_ns is None else observed_ns)
    scope_logs = field_bytes(1, scope.SerializeToString()) + records
    resource_logs = field_bytes(1, resource.SerializeToString()) + field_bytes(2, scope_logs)
    return field_bytes(1, resource_logs)


# -- metrics ------------------------------------------------------------------------------

# Prometheus names a unit in words, OTLP in UCUM (the OpenTelemetry <-> Prometheus
# compatibility table); other units are sent as they are declared
_UCUM = {"seconds": "s", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns",
         "bytes": "By", "kilobytes": "kBy", "megabytes": "MBy", "ratio": "1", "percent": "%",
         "hertz": "Hz", "meters": "m", "volts": "V", "amperes": "A", "joules": "J",
         "watts": "W", "grams": "g", "celsius": "Cel"}


def otlp_unit(unit: str) -> str:
    return _UCUM.get(unit, unit)


def otlp_name(fam) -> str:
    """A family's OTLP name, without the suffixes Prometheus adds (the OpenTelemetry
    <-> Prometheus compatibility rules): a counter's ``_total`` and, when the unit is
    declared, the ``_<unit>`` it carries as metadata.  A Prometheus exporter of the
    OTLP data adds both back, giving our Prometheus name."""
    name = fam.base_name
    if fam.unit and name.endswith("_" + fam.unit) and len(name) > len(fam.unit) + 1:
        name = name[:-len(fam.unit) - 1]
    return name


def _labels(names, values):
    return dict(zip(names, values))


def _extremes_and_sum(point, h):
    """min and max of a non-empty point; the sum only when no negative value was
    recorded (the OTLP data model: a sum with negative events must be left out)."""
    if h.count:
        point.min, point.max = h.min, h.max
        if not h.min < 0:
            point.sum = h.sum
    else:
        point.sum = 0.0


def _exponential_point(pb, h, attrs, start, now):
    s = h.spec.scheme
    scale, (pos_offset, pos), (neg_offset, neg) = s.sparse(h)
    point = pb.ExponentialHistogramDataPoint(
        attributes=attrs, start_time_unix_nano=start, time_unix_nano=now, count=h.count,
        scale=scale, zero_count=h.zero_count, zero_threshold=s.zero_threshold)
    _extremes_and_sum(point, h)
    if pos:
        point.positive.offset = pos_offset
        point.positive.bucket_counts.extend(pos)
    if neg:
        point.negative.offset = neg_offset
        point.negative.bucket_counts.extend(neg)
    return point


def metrics_request(*metric_sets, service_name: str | None = None,
                    resource_attributes: dict | None = None) -> bytes:
    """A serialized ``ExportMetricsServiceRequest`` of one or more metric sets
    (``service_name`` defaults to the first set's name)."""
    common_pb2, pb, _ = _proto()
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    if not metric_sets:
        raise ValueError("metrics_request needs at least one metric set")
    if service_name is None:
        first = metric_sets[0]
        service_name = getattr(first, "set_name", None) or getattr(first, "name", "metrics")
    resource, scope = _envelope(service_name, resource_attributes)
    now = time.time_ns()
    metrics = []
    cumulative = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    fams, _ = families_of(metric_sets)
    for fam in fams:
        start = fam.start_ns

        def attrs(labels):
            return _attributes(common_pb2, _labels(fam.label_names, labels))
        if fam.kind is COUNTER:
            points = [pb.NumberDataPoint(attributes=attrs(lv), start_time_unix_nano=start,
                                         time_unix_nano=now, as_int=int(v))
                      for lv, v in fam.points]
            metrics.append(pb.Metric(name=otlp_name(fam), description=fam.help, unit=otlp_unit(fam.unit),
                                     sum=pb.Sum(data_points=points, is_monotonic=True,
                                                aggregation_temporality=cumulative)))
        elif fam.kind is GAUGE:
            points = [pb.NumberDataPoint(attributes=attrs(lv), time_unix_nano=now,
                                         as_double=float(v)) for lv, v in fam.points]
            metrics.append(pb.Metric(name=otlp_name(fam), description=fam.help, unit=otlp_unit(fam.unit),
                                     gauge=pb.Gauge(data_points=points)))
        elif isinstance(fam.spec.scheme, ExponentialBuckets):
            points = [_exponential_point(pb, h, attrs(lv), start, now) for lv, h in fam.points]
            metrics.append(pb.Metric(
                name=otlp_name(fam), description=fam.help, unit=otlp_unit(fam.unit),
                exponential_histogram=pb.ExponentialHistogram(
                    data_points=points, aggregation_temporality=cumulative)))
        else:
            points = []
            for lv, h in fam.points:
                p = pb.HistogramDataPoint(
                    attributes=attrs(lv), start_time_unix_nano=start, time_unix_nano=now,
                    count=h.count, explicit_bounds=list(fam.spec.bounds),
                    bucket_counts=h.counts.tolist())
                _extremes_and_sum(p, h)
                points.append(p)
            metrics.append(pb.Metric(name=otlp_name(fam), description=fam.help, unit=otlp_unit(fam.unit),
                                     histogram=pb.Histogram(
                                         data_points=points,
                                         aggregation_temporality=cumulative)))
    request = metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
        pb.ResourceMetrics(resource=resource, scope_metrics=[
            pb.ScopeMetrics(scope=scope, metrics=metrics)])])
    return request.SerializeToString()


# -- transport ----------------------------------------------------------------------------

class _Transport:
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
            if code in _GRPC_RETRYABLE:
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


def _partial_success(kind: str, response: bytes) -> None:
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


class _OtlpExporter:
    kind = ""

    def __init__(self, endpoint: str | None = None, *, protocol: str | None = None,
                 headers: dict | None = None, compression: str | None = "default",
                 timeout: float | None = None, insecure: bool | None = None,
                 ca_file: str | None = None, service_name: str | None = None,
                 resource_attributes: dict | None = None):
        """Every option left out is taken from the OpenTelemetry environment, as the OTLP
        exporter specification names it (per signal first, e.g.
        ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, then ``OTEL_EXPORTER_OTLP_ENDPOINT``):
        ``_ENDPOINT``, ``_PROTOCOL`` (``grpc`` or ``http/protobuf``), ``_HEADERS``
        (``k=v,k=v``; explicit headers win per key), ``_TIMEOUT`` (ms), ``_COMPRESSION``
        (``gzip``/``none``), ``_INSECURE`` and ``_CERTIFICATE``; ``OTEL_SERVICE_NAME`` and
        ``OTEL_RESOURCE_ATTRIBUTES`` fill the resource under ``resource_attributes``.
        Defaults otherwise: grpc, gzip, 10 s."""
        _proto()
        kind = self.kind
        full_url = False
        if endpoint is None:
            var, endpoint = _env("ENDPOINT", kind)
            if endpoint is None:
                raise ValueError(f"{type(self).__name__}: no endpoint: pass one, or set "
                                 f"OTEL_EXPORTER_OTLP_ENDPOINT")
            full_url = var == f"OTEL_EXPORTER_OTLP_{kind.upper()}_ENDPOINT"
        if protocol is None:
            var, value = _env("PROTOCOL", kind)
            protocol = {"grpc": "grpc", "http/protobuf": "http", None: "grpc"}.get(value)
            if protocol is None:
                raise ValueError(f"{var}={value!r}: supported are grpc and http/protobuf")
        var, value = _env("HEADERS", kind)
        headers = {**(_key_values(value, var) if value else {}), **(headers or {})}
        if timeout is None:
            var, value = _env("TIMEOUT", kind)
            try:
                timeout = float(value) / 1000.0 if value else 10.0
            except ValueError:
                timeout = None
            if timeout is None or not math.isfinite(timeout) or timeout <= 0:
                raise ValueError(f"{var}={value!r}: expected a positive number of "
                                 f"milliseconds") from None
        if compression == "default":
            var, value = _env("COMPRESSION", kind)
            if value not in (None, "gzip", "none"):
                raise ValueError(f"{var}={value!r}: supported are gzip and none")
            compression = None if value == "none" else "gzip"
        if insecure is None:
            insecure = (_env("INSECURE", kind)[1] or "").lower() == "true"
        if ca_file is None:
            ca_file = _env("CERTIFICATE", kind)[1]
        env = resource_from_environment()
        self.endpoint = endpoint
        self.service_name = service_name or env.pop("service.name", None)
        env.pop("service.name", None)
        self.resource_attributes = {**env, **(resource_attributes or {})} or None
        self.transport = _Transport(endpoint, protocol, headers, compression, timeout, insecure,
                                    ca_file, full_url=full_url)

    def _send(self, body: bytes, deadline: float | None = None) -> None:
        _partial_success(self.kind, self.transport.send(self.kind, body, deadline))

    def shutdown(self) -> None:
        self.transport.close()


class OtlpLogExporter(_OtlpExporter):
    """Collector exporter: each batch of events becomes one OTLP logs request."""

    name = "otlp"
    kind = "logs"

    def bind(self, tracer) -> None:
        """Compile the encoder now (a TraceCollector calls this before it starts), so that
        the first export does not hold up the collector's draining."""
        from ._otlp_logs import log_records
        layout = getattr(tracer, "layout", None)
        if layout is not None:
            log_records(np.zeros(1, dtype=layout.dtype), 0)

    def export(self, events: np.ndarray, deadline: float | None = None) -> None:
        """Send one batch; ``deadline`` (``time.monotonic()``) bounds the whole request."""
        events, _ = as_events(events)
        if events.size:
            self._send(logs_request(events, service_name=self.service_name,
                                    resource_attributes=self.resource_attributes), deadline)


class OtlpMetricExporter(_OtlpExporter):
    """Push metric sets as one OTLP metrics request (``export(*sets)``), once or
    periodically from a thread of its own (``start(*sets, interval=10)``)."""

    name = "otlp-metrics"
    kind = "metrics"
    _thread = None

    def export(self, *metric_sets, deadline: float | None = None) -> None:
        """Push once; ``deadline`` (``time.monotonic()``) bounds the whole request."""
        self._send(metrics_request(*metric_sets, service_name=self.service_name,
                                   resource_attributes=self.resource_attributes), deadline)

    def start(self, *metric_sets, interval: float = 10.0) -> "OtlpMetricExporter":
        """Push ``metric_sets`` every ``interval`` seconds until :meth:`stop`.

        A failed push is counted (``stats()``) and logged; a retryable failure is
        tried again after a backoff with jitter (or the receiver's ``Retry-After``,
        capped), never later than the next interval; a permanent one waits for the
        next interval.  Cumulative values lose nothing in between.
        """
        import threading
        if not metric_sets:
            raise ValueError("start() needs at least one metric set")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or \
                not 0 < interval < float("inf"):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if self._thread is not None:
            raise RuntimeError("this exporter is already pushing; stop() it first")
        metrics_request(*metric_sets)           # refuses duplicate series now, not later
        self._sets, self._interval = metric_sets, float(interval)
        self._stats = {"pushes": 0, "failures": 0, "last_error": None}
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="engram-numba-otlp-push",
                                        daemon=True)
        self._thread.start()
        return self

    def _push_once(self, deadline=None):
        """Push now; returns None on success, else the exception (counted and logged)."""
        try:
            self._send(metrics_request(*self._sets, service_name=self.service_name,
                                       resource_attributes=self.resource_attributes), deadline)
        except Exception as exc:  # counted; retried by _run
            self._stats["failures"] += 1
            self._stats["last_error"] = f"{type(exc).__name__}: {escape(str(exc), 2000)}"
            log.warning("OTLP metrics push failed: %s", self._stats["last_error"])
            return exc
        self._stats["pushes"] += 1
        return None

    def _run(self):
        backoff = Backoff(min(0.1, self._interval), max(min(0.1, self._interval),
                                                        min(30.0, self._interval)))
        while not self._stopping:
            started = time.monotonic()
            failed = self._push_once(started + self.transport.timeout)
            wait = self._interval
            if failed is None:
                backoff.reset()
            elif not isinstance(failed, PermanentExportError):
                plan = plan_retry(failed, backoff, deadline=started + self._interval)
                if plan.delay is not None:
                    wait = plan.delay
                if plan.note:
                    log.info("OTLP metrics push: %s", plan.note)
            self._wake.wait(wait)

    def stats(self) -> dict:
        """``pushes`` (succeeded), ``failures`` and ``last_error`` of :meth:`start`'s thread."""
        return dict(getattr(self, "_stats", {"pushes": 0, "failures": 0, "last_error": None}))

    def stop(self, timeout: float = 10.0) -> dict:
        """Stop pushing after one last push of the current values (the flush), within
        ``timeout`` seconds; returns :meth:`stats`."""
        import time as _time
        thread = self._thread
        if thread is None:
            return self.stats()
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None
        self._push_once(_time.monotonic() + timeout)
        return self.stats()




# -- spans ------------------------------------------------------------------------------------

def _value(common_pb2, v):
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v if v < 1 << 63 else v - (1 << 64))
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    return common_pb2.AnyValue(string_value=str(v))


def _field_attributes(common_pb2, prefix, fields, enums):
    out = []
    for k, v in fields.items():
        names = enums.get(k)
        if names is not None:
            v = names.get(int(v), "unknown")
        out.append(common_pb2.KeyValue(key=f"{prefix}.{k}", value=_value(common_pb2, v)))
    return out


def spans_request(spans, layout, *, tracer_id: int, service_name: str | None = None,
                  resource_attributes: dict | None = None, traces: dict | None = None) -> bytes:
    """A serialized ``ExportTraceServiceRequest`` of closed spans (see :mod:`..tracing.spans`).

    A span's trace id is ``tracer_id`` followed by its root's id, or, when its root
    has an explicit parent (``tracer.parent(ctx)``), that parent's 128-bit trace id
    from ``traces`` (``tracer.external_traces()``)."""
    traces = traces or {}
    common_pb2, _, _ = _proto()
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2
    resource, scope = _envelope(layout.name if service_name is None else service_name,
                                resource_attributes)
    enums = {t.name: {n: ft.names for n, ft in t.fields.items() if ft.code == "e"}
             for t in layout.types}
    prefix = layout.name
    tid = int(tracer_id).to_bytes(8, "big")
    out = []
    for s in spans:
        span = trace_pb2.Span(
            trace_id=(traces[s.root_id].to_bytes(16, "big") if s.root_id in traces
                      else tid + int(s.root_id).to_bytes(8, "big")),
            span_id=int(s.span_id).to_bytes(8, "big"),
            parent_span_id=int(s.parent_id).to_bytes(8, "big") if s.parent_id else b"",
            name=s.name, kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=s.start_ns, end_time_unix_nano=s.end_ns,
            attributes=_field_attributes(common_pb2, prefix, s.fields, enums.get(s.name, {}))
            + [common_pb2.KeyValue(key=f"{prefix}.thread", value=common_pb2.AnyValue(
                int_value=s.thread)),
               common_pb2.KeyValue(key=f"{prefix}.ring", value=common_pb2.AnyValue(
                   int_value=s.ring)),
               common_pb2.KeyValue(key=f"{prefix}.depth", value=common_pb2.AnyValue(
                   int_value=s.depth))])
        for name, ts, fields in s.events:
            span.events.append(trace_pb2.Span.Event(
                time_unix_nano=ts, name=name,
                attributes=_field_attributes(common_pb2, prefix, fields, enums.get(name, {}))))
        out.append(span)
    request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
        trace_pb2.ResourceSpans(resource=resource, scope_spans=[
            trace_pb2.ScopeSpans(scope=scope, spans=out)])])
    return request.SerializeToString()


class OtlpSpanExporter(_OtlpExporter):
    """Collector exporter: the spans closed in each batch become one OTLP traces request.

    Begins and ends are paired across batches (a span's begin and end may be
    drained apart).  ``attach_events=True`` adds the instant events emitted
    inside a span, on its thread, as its span events.  The trace ids use the
    tracer's id (``bind(tracer)``, which a TraceCollector calls, or
    ``tracer_id=``); without either, a random id of this exporter.
    """

    name = "otlp-spans"
    kind = "traces"

    def __init__(self, endpoint: str | None = None, *, attach_events: bool = False,
                 tracer_id: int | None = None, **options):
        super().__init__(endpoint, **options)
        from ..tracing.spans import SpanAssembler
        self.assembler = SpanAssembler(attach_events=attach_events)
        self.tracer_id = tracer_id
        self._pending = []
        self._last = None

    _tracer = None

    def bind(self, tracer) -> None:
        if self.tracer_id is None:
            self.tracer_id = tracer.tracer_id
        self._tracer = tracer            # its explicit parents' trace ids

    def export(self, events: np.ndarray, deadline=None) -> None:
        given = events
        events, layout = as_events(events)
        if self.tracer_id is None:
            self.tracer_id = int.from_bytes(os.urandom(8), "big") | 1
        if given is not self._last:            # a retried batch is paired only once
            self._pending.extend(self.assembler.feed(events))
            self._last = given
        if self._pending:
            traces = self._tracer.external_traces() if self._tracer is not None else None
            self._send(spans_request(self._pending, layout, tracer_id=self.tracer_id,
                                     service_name=self.service_name, traces=traces,
                                     resource_attributes=self.resource_attributes), deadline)
            self._pending = []
