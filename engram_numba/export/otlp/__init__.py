"""OpenTelemetry (OTLP) export: events as logs, spans as traces, metric sets as metrics.

Needs ``pip install 'engram-numba[otlp]'`` (``opentelemetry-proto`` and
``grpcio``).

* Events -> ``LogRecord``s (see :mod:`.logs` for every field).
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
  is a :class:`PermanentExportError` (see :mod:`..._delivery`, the policy the
  collector, the command line and :meth:`OtlpMetricExporter.start` share).

The package holds one module per signal (:mod:`.logs`, :mod:`.metrics`,
:mod:`.traces`), the transports (:mod:`._transport`) and what the signals share
(:mod:`._common`: resource, environment, the exporter base); the bytes of the
wire format that are written by hand come from :mod:`.._protowire`.
"""

from ._common import instance_id, resource_from_environment  # noqa: F401 (public before)
from ._transport import LOGS_METHOD, METRICS_METHOD, TRACES_METHOD  # noqa: F401
from .logs import OtlpLogExporter, logs_request
from .metrics import OtlpMetricExporter, metrics_request, otlp_name, otlp_unit  # noqa: F401
from .traces import OtlpSpanExporter, spans_request

__all__ = ["OtlpLogExporter", "OtlpMetricExporter", "OtlpSpanExporter", "logs_request",
           "metrics_request", "spans_request"]
