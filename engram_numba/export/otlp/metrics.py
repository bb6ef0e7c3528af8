"""Metric sets as OTLP metrics (``ExportMetricsServiceRequest``), and the metrics exporter
that pushes them once or periodically (see the package docstring for the mapping)."""

from __future__ import annotations

import logging
import threading
import time

from ..._delivery import Backoff, escape, plan_retry
from ...errors import PermanentExportError
from ...metrics.buckets import ExponentialBuckets
from ...metrics.families import COUNTER, GAUGE, families_of
from ._common import OtlpExporter, attributes, envelope, proto

log = logging.getLogger(__name__)

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
    common_pb2, pb, _ = proto()
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    if not metric_sets:
        raise ValueError("metrics_request needs at least one metric set")
    if service_name is None:
        first = metric_sets[0]
        service_name = getattr(first, "set_name", None) or getattr(first, "name", "metrics")
    resource, scope = envelope(service_name, resource_attributes)
    now = time.time_ns()
    metrics = []
    cumulative = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    fams, _ = families_of(metric_sets)
    for fam in fams:
        start = fam.start_ns

        def attrs(labels):
            return attributes(common_pb2, _labels(fam.label_names, labels))
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


class OtlpMetricExporter(OtlpExporter):
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
        thread = self._thread
        if thread is None:
            return self.stats()
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        self._thread = None
        self._push_once(time.monotonic() + timeout)
        return self.stats()
