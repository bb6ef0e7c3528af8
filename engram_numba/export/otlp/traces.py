"""Closed spans as OTLP traces (``ExportTraceServiceRequest``), and the spans exporter."""

from __future__ import annotations

import os

import numpy as np

from ...tracing.schema import as_events
from ...tracing.spans import SpanAssembler
from ._common import OtlpExporter, envelope, proto


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
    common_pb2, _, _ = proto()
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2
    resource, scope = envelope(layout.name if service_name is None else service_name,
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


class OtlpSpanExporter(OtlpExporter):
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
