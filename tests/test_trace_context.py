"""Spans that join a trace begun elsewhere: ``with tracer.parent(ctx):`` (an OpenTelemetry
span, a traceparent header, another thread's ``tracer.context()``)."""

import sys
import threading

import numpy as np
import pytest
from numba import njit
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from engram_numba import Event, EventSet, Span, Tracer, TracingConfig
from engram_numba.export.otlp import OtlpSpanExporter, spans_request
from engram_numba.tracing.context import TraceContext
from engram_numba.tracing.spans import SpanAssembler

from .conftest import run_threads
from .receivers import OtlpGrpcReceiver

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7
HEADER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Work(EventSet, name="work"):
    request = Span("One request's work", n=np.uint32)
    step = Span("A step", k=np.uint32)
    note = Event("A note", k=np.uint32)


@njit(nogil=True)
def handle(tr, n):
    tr.request.begin(n)
    for k in range(n):
        tr.step.begin(k)
        tr.note.emit(k)
        tr.step.end()
    tr.request.end()


def tracer():
    return Tracer(Work, TracingConfig(ring_buffer_size=1 << 10, max_threads=4))


def otlp_spans(tr, events):
    spans = SpanAssembler().feed(events)
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(
        spans_request(spans, Work.layout, tracer_id=tr.tracer_id,
                      traces=tr.external_traces()))
    return list(req.resource_spans[0].scope_spans[0].spans)


def test_a_traceparent_round_trips():
    ctx = TraceContext.from_traceparent(HEADER)
    assert (ctx.trace_id, ctx.span_id, ctx.flags) == (TRACE, SPAN, 1)
    assert ctx.traceparent == HEADER
    tr = tracer()
    tr.request.begin(1)
    mine = tr.context()
    assert TraceContext.from_traceparent(mine.traceparent) == mine
    assert mine.trace_id >> 64 == tr.tracer_id and mine.span_id != 0
    tr.request.end()
    assert tr.context() is None
    # a context handed over by header: the spans join its trace under its span
    with tr.parent(mine.traceparent):
        handle(tr, 1)
    spans = otlp_spans(tr, tr.drain())
    (outer,) = [s for s in spans if s.span_id == mine.span_id.to_bytes(8, "big")]
    (joined,) = [s for s in spans if s.parent_span_id == outer.span_id]
    assert joined.name == "request" and joined.span_id != outer.span_id
    assert joined.trace_id == outer.trace_id == mine.trace_id.to_bytes(16, "big")


@pytest.mark.parametrize("bad", [
    "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01"])
def test_bad_contexts_are_refused_before_anything_is_recorded(bad):
    tr = tracer()
    with pytest.raises(ValueError):
        with tr.parent(bad):
            tr.request.begin(1)
    tr.request.begin(1)
    tr.request.end()
    (begin, _) = tr.drain()
    assert begin["parent_span_id"] == 0 and tr.external_traces() == {}


def test_zero_ids_of_a_span_context_are_refused():
    for trace_id, span_id in ((0, SPAN), (TRACE, 0), (1 << 128, SPAN)):
        with pytest.raises(ValueError):
            TraceContext(trace_id, span_id)


def test_two_nogil_threads_under_a_parent_give_children_of_it():
    tr = tracer()
    both = threading.Barrier(2)

    def work():
        handle(tr, 3)
        both.wait()          # both alive at once: two threads, two rings

    with tr.parent(HEADER):
        run_threads(work, [(), ()])
    handle(tr, 1)                          # outside the block: a trace of its own
    spans = otlp_spans(tr, tr.drain())
    requests = [s for s in spans if s.name == "request"]
    assert len(requests) == 3
    inside = [s for s in requests if s.parent_span_id]
    rings = {kv.value.int_value for s in inside for kv in s.attributes if kv.key == "work.ring"}
    assert len(inside) == 2 and len(rings) == 2          # recorded by two threads
    assert {(s.trace_id, s.parent_span_id) for s in inside} == \
        {(TRACE.to_bytes(16, "big"), SPAN.to_bytes(8, "big"))}
    (outside,) = [s for s in requests if not s.parent_span_id]
    assert outside.trace_id[:8] == tr.tracer_id.to_bytes(8, "big")
    # the steps stay children of their request, in the request's trace
    ids = {s.span_id: s for s in requests}
    steps = [s for s in spans if s.name == "step"]
    assert len(steps) == 7 and all(ids[s.parent_span_id].trace_id == s.trace_id for s in steps)


def test_a_kernel_inside_an_sdk_span_joins_its_trace_at_one_receiver():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    provider = TracerProvider()
    with OtlpGrpcReceiver() as rx:
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=rx.endpoint, insecure=True)))
        otel = provider.get_tracer("service")
        tr = tracer()
        with otel.start_as_current_span("GET /solve") as request_span:
            with tr.parent():
                handle(tr, 2)
        provider.shutdown()
        exporter = OtlpSpanExporter(rx.endpoint, insecure=True)
        exporter.bind(tr)
        exporter.export(tr.drain())
        spans = [s for req in rx.traces for rs in req.resource_spans
                 for ss in rs.scope_spans for s in ss.spans]
    sc = request_span.get_span_context()
    (sdk,) = [s for s in spans if s.name == "GET /solve"]
    (kernel,) = [s for s in spans if s.name == "request"]
    assert sdk.trace_id == sc.trace_id.to_bytes(16, "big") == kernel.trace_id
    assert kernel.parent_span_id == sdk.span_id == sc.span_id.to_bytes(8, "big")
    assert len({s.trace_id for s in spans}) == 1 and len(spans) == 4


def test_the_current_span_form_needs_opentelemetry_and_says_so(monkeypatch):
    tr = tracer()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(RuntimeError, match="opentelemetry-api"):
        tr.parent()
    handle(tr, 1)                          # recording does not need it
    assert len(tr.drain()) == 5


def test_no_current_opentelemetry_span_is_a_clear_error():
    with pytest.raises(ValueError, match="no OpenTelemetry span is current"):
        tracer().parent()


def test_another_threads_context_makes_children_of_its_span():
    tr = tracer()
    tr.request.begin(5)
    ctx = tr.context()
    done = []

    def worker():
        with tr.parent(ctx):
            tr.step.begin(0)
            tr.step.end()
        tr.release_thread()
        done.append(True)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    tr.request.end()
    spans = SpanAssembler().feed(tr.drain())
    (request,) = [s for s in spans if s.name == "request"]
    (step,) = [s for s in spans if s.name == "step"]
    assert done and step.parent_id == request.span_id
    assert tr.trace_id_of(step.root_id) == tr.trace_id_of(request.root_id) == ctx.trace_id


def test_a_disabled_tracer_checks_the_context_and_records_nothing():
    off = Tracer.disabled(Work)
    with pytest.raises(ValueError):
        off.parent("00-bad")
    with off.parent(HEADER):
        handle(off, 2)
    assert off.context() is None and off.external_traces() == {} and off.drain().size == 0
    tr = tracer()
    with tr.parent(None):            # what context() gives with no span open: no parent
        handle(tr, 1)
    assert tr.drain()["parent_span_id"][0] == 0


def test_json_frames_and_chrome_show_the_contexts_trace_id_and_parent(tmp_path):
    import json

    import jsonschema

    from engram_numba.export.chrome import chrome_trace
    from engram_numba.export.frames import to_dataframe
    from engram_numba.export.json import JsonLinesExporter, events_to_jsonl, schema
    tr = tracer()
    with tr.parent(HEADER):
        handle(tr, 2)
    handle(tr, 1)                                  # outside the block: a trace of its own
    events = tr.drain()
    begins = events[(events["flags"] & 3) == 1]
    roots = begins[begins["event_type"] == Work.layout.type_of("request").index]
    (joined_root,) = roots[roots["parent_span_id"] == SPAN]["span_id"].tolist()
    (own_root,) = roots[roots["parent_span_id"] == 0]["span_id"].tolist()
    # the expected trace and parent of every span, from the OTLP request (official protos)
    ref = {int.from_bytes(s.span_id, "big"): (s.trace_id.hex(),
                                              int.from_bytes(s.parent_span_id or bytes(8), "big"))
           for s in otlp_spans(tr, events)}
    assert ref[joined_root] == (f"{TRACE:032x}", SPAN)
    assert ref[own_root] == (f"{tr.tracer_id:016x}{own_root:016x}", 0)
    assert len(ref) == 5 and {t for t, _ in ref.values()} == {
        f"{TRACE:032x}", f"{tr.tracer_id:016x}{own_root:016x}"}

    lines = [json.loads(line) for line in events_to_jsonl(events, tracer=tr).splitlines()]
    validator = jsonschema.Draft202012Validator(schema(tr))
    for line in lines:
        validator.validate(line)
    for line in lines:
        if line.get("span") == "begin":
            assert (line["trace_id"], line["parent_span_id"]) == ref[line["span_id"]]
        elif line.get("span") == "end" or line["event_type"] == "note":
            assert line["trace_id"] == ref[line["span_id"]][0]
    assert sum(line["event_type"] == "note" for line in lines) == 3
    # a collector's exporter gets the tracer from bind()
    path = tmp_path / "events.jsonl"
    exporter = JsonLinesExporter(path)
    exporter.bind(tr)
    exporter.export(events)
    exporter.shutdown()
    with open(path, "rb") as f:
        assert [json.loads(line) for line in f.read().splitlines()] == lines

    frames = to_dataframe(events, tracer=tr)
    for name in ("request", "step"):
        for row in frames[name].itertuples():
            assert (row.trace_id, row.parent_span_id) == ref[row.span_id]
    for row in frames["note"].itertuples():
        assert row.trace_id == ref[row.span_id][0]

    doc = chrome_trace(events, tracer=tr)
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    notes = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert len(spans) == 5 and len(notes) == 3
    for e in spans:
        assert (e["args"]["trace_id"], e["args"]["parent_span_id"]) == ref[e["args"]["span_id"]]
    for e in notes:
        assert e["args"]["trace_id"] == ref[e["args"]["span_id"]][0]


def test_without_the_tracer_trace_ids_keep_the_format_with_a_zero_tracer_id():
    import json

    from engram_numba.export.frames import to_dataframe
    from engram_numba.export.json import events_to_jsonl
    tr = tracer()
    handle(tr, 1)
    events = tr.drain()
    root = int(events["span_id"][0])
    lines = [json.loads(line) for line in events_to_jsonl(events).splitlines()]
    assert {line["trace_id"] for line in lines} == {f"{0:016x}{root:016x}"}
    assert set(to_dataframe(events, "step")["trace_id"]) == {f"{0:016x}{root:016x}"}


def test_otlp_log_records_carry_the_trace_and_span_of_their_span():
    # the logs exporter bound to the tracer, through a receiver built from the official
    # stubs; each record's trace_id and span_id must be those of its span in the span
    # export (official protos on both sides)
    from engram_numba.export.otlp import OtlpLogExporter
    tr = tracer()
    with tr.parent(HEADER):
        handle(tr, 2)
    handle(tr, 1)                                  # a trace of its own
    tr.note.emit(9)                                # in no span: no link
    events = tr.drain()
    ref = {s.span_id: s.trace_id for s in otlp_spans(tr, events)}
    with OtlpGrpcReceiver() as rx:
        exporter = OtlpLogExporter(rx.endpoint, insecure=True)
        exporter.bind(tr)
        exporter.export(events)
        exporter.shutdown()
        records = [r for req in rx.logs for rl in req.resource_logs for sl in rl.scope_logs
                   for r in sl.log_records]
    assert len(records) == events.size == 14
    linked = 0
    for r in records:
        attrs = {kv.key: kv.value for kv in r.attributes}
        if r.body.string_value == "note" and attrs["work.k"].int_value == 9:
            assert r.trace_id == b"" and r.span_id == b""
            continue
        span = attrs["work.span_id"].int_value.to_bytes(8, "big", signed=True)
        assert r.span_id == span and len(r.trace_id) == 16
        assert r.trace_id == ref[span], (r.body.string_value, attrs)
        linked += 1
    assert linked == 13
    assert {r.trace_id for r in records if r.trace_id} == set(ref.values())
    assert TRACE.to_bytes(16, "big") in set(ref.values())
