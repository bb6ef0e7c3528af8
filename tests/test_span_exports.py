"""Spans in OTLP and Loki: a span's events keep their field types, a span's end keeps
its begin's labels."""

import enum
import json

import numpy as np

from engram_numba import Event, EventSet, Span, Tracer, TracingConfig
from engram_numba.export.loki import LokiExporter, push_body
from engram_numba.export.otlp import logs_request, spans_request
from engram_numba.tracing.spans import SpanAssembler

from .receivers import HttpReceiver


class Mode(enum.IntEnum):
    FAST = 0
    SLOW = 1


class Jobs(EventSet, name="jobs"):
    job = Span("One job", mode=Mode, size=np.uint32, urgent=np.bool_)
    checked = Event("A check inside a job", passed=np.bool_, score=np.float32)


def recorded():
    tr = Tracer(Jobs, TracingConfig(ring_buffer_size=1 << 10, max_threads=2))
    tr.job.begin(Mode.SLOW, 7, True)
    tr.checked.emit(True, 0.5)
    tr.checked.emit(False, 0.25)
    tr.job.end()
    return tr, tr.drain()


def attributes(kvs) -> dict:
    return {kv.key: kv.value for kv in kvs}


def test_bool_fields_of_a_span_and_its_events_are_bools_as_in_the_log_record():
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    tr, events = recorded()
    spans = SpanAssembler(attach_events=True).feed(events)
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(
        spans_request(spans, Jobs.layout, tracer_id=tr.tracer_id))
    (span,) = req.resource_spans[0].scope_spans[0].spans
    urgent = attributes(span.attributes)["jobs.urgent"]
    assert (urgent.WhichOneof("value"), urgent.bool_value) == ("bool_value", True)
    assert [e.name for e in span.events] == ["checked", "checked"]
    passed = [attributes(e.attributes)["jobs.passed"] for e in span.events]
    assert [v.WhichOneof("value") for v in passed] == ["bool_value", "bool_value"]
    assert [v.bool_value for v in passed] == [True, False]
    assert attributes(span.events[0].attributes)["jobs.score"].double_value == 0.5
    logs = logs_service_pb2.ExportLogsServiceRequest.FromString(logs_request(events))
    records = [r for r in logs.resource_logs[0].scope_logs[0].log_records
               if r.body.string_value == "checked"]
    assert [attributes(r.attributes)["jobs.passed"].WhichOneof("value") for r in records] \
        == ["bool_value", "bool_value"]


def streams_of(body: dict) -> dict:
    """{span phase: labels of the stream holding it} for the job span's lines."""
    out = {}
    for stream in body["streams"]:
        for _, line in stream["values"]:
            record = json.loads(line)
            if record["event_type"] == "job":
                out[record["span"]] = stream["stream"]
    return out


def test_a_span_end_goes_to_the_stream_of_its_begin():
    _, events = recorded()
    got = streams_of(json.loads(push_body(events)))
    assert got["begin"]["mode"] == got["end"]["mode"] == "slow"
    assert got["begin"] == got["end"]


def test_a_span_end_drained_after_its_begin_keeps_its_labels():
    """The begin in one push, the end in the next: the exporter remembers the begin; an
    end whose begin it never saw is filed as unknown, not as the enum's zero member."""
    _, events = recorded()
    begin, end = events[:3], events[3:]
    with HttpReceiver() as rx:
        exporter = LokiExporter(rx.url, compression=None)
        exporter.export(begin)
        exporter.export(end)
        LokiExporter(rx.url, compression=None).export(end)        # never saw the begin
        pushes = rx.loki()
    assert streams_of(pushes[0])["begin"]["mode"] == "slow"
    assert streams_of(pushes[1])["end"]["mode"] == "slow"
    assert streams_of(pushes[2])["end"]["mode"] == "unknown"
