"""Event sets declared in this file, without touching the library: layout, recording from
kernels and Python, spans, live control by name, and every exporter compared field by
field with what the kernel recorded."""

import enum
import json
import threading

import numpy as np
import pytest
from numba import njit, prange
from numba.core.errors import TypingError

from engram_numba import KernelTypingError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from engram_numba import Event, EventSet, Span, Tracer, TracingConfig
from engram_numba._asm import native_asm
from engram_numba.export.chrome import chrome_trace
from engram_numba.export.frames import to_dataframe
from engram_numba.export.json import event_records, events_to_jsonl, schema
from engram_numba.export.loki import push_body
from engram_numba.export.otlp import OtlpLogExporter, OtlpSpanExporter, logs_request
from engram_numba.tracing.schema import concat

from .conftest import needs_two_cpus, run_threads, spin_barrier
from .receivers import HttpReceiver, OtlpGrpcReceiver


class Reason(enum.IntEnum):
    DIVERGED = 0
    STALLED = 1
    LIMIT = 7


class Solver(EventSet, name="solver"):
    iteration = Event("One Newton step", residual=np.float64, step=np.uint32)
    restart = Event("Solver restarted", reason=Reason, at_step=np.uint32, forced=np.bool_)
    sample = Event("Every width", a=np.int8, b=np.int16, c=np.int32, d=np.int64, e=np.uint8,
                   f=np.uint16, g=np.float32)
    solve = Span("One call of solve()", size=np.uint32, tol=np.float32)
    phase = Span("A phase of a solve", phase_no=np.int16)


def tracer(**kw):
    kw.setdefault("ring_buffer_size", 1 << 12)
    kw.setdefault("max_threads", 8)
    return Tracer(Solver, TracingConfig(**kw))


@njit(nogil=True)
def solve(tr, n, restart_at):
    tr.solve.begin(n, 1e-6)
    r = 1.0
    for k in range(n):
        tr.phase.begin(k % 3)
        r = r * 0.5 - 1e-300
        tr.iteration.emit(r, k)
        if k == restart_at:
            tr.restart.emit(Reason.LIMIT, k, k % 2 == 1)
        tr.sample.emit(-(k % 100), -(k % 30000), -100000 * (k % 1000), -(2 ** 40) * k, k % 256,
                       60000 + k % 5000, np.float32(k) / 3)
        tr.phase.end()
    tr.solve.end()
    return r


def test_layout_is_derived_from_the_table():
    layout = Solver.layout
    slot = layout.slot_dtype
    assert slot.itemsize == 64
    for name in slot.names:
        dt, offset = slot.fields[name][:2]
        assert offset % dt.alignment == 0 and offset + dt.itemsize <= 64, name
    # drained records: a column per name, packed without gaps, each naturally aligned
    rec = layout.dtype
    end = 0
    for name in rec.names:
        dt, offset = rec.fields[name][:2]
        assert offset == end and offset % dt.alignment == 0, name
        end += dt.itemsize
    assert end == rec.itemsize and rec.itemsize % 8 == 0
    assert set(slot.names) - {"ring"} < set(rec.names)
    assert {"thread", "ring", "span_id", "parent_span_id", "trace_id"} <= set(rec.names)
    assert rec["reason"] == np.uint8 and rec["residual"] == np.float64
    assert [t.name for t in layout.types] == ["iteration", "restart", "sample", "solve", "phase"]
    assert Solver.type_enum().SOLVE == 3
    assert layout.offsets[(3, "size")] not in range(24, 40)      # span ids own bytes 24..39


def test_declarations_that_cannot_work_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"big\.big.*'f' \(8 bytes\) is over the limit"):
        class Big(EventSet):
            big = Event(a=np.uint64, b=np.uint64, c=np.uint64, d=np.uint64, e=np.uint64,
                        f=np.uint64)
    with pytest.raises(ValueError, match="over the limit"):
        class BigSpan(EventSet):
            big = Span(a=np.uint64, b=np.uint64, c=np.uint64, d=np.uint64)
    with pytest.raises(TypeError, match="field 'x'"):
        class Strings(EventSet):
            e = Event(x=str)
    with pytest.raises(TypeError, match="one type within a set"):
        class Clash(EventSet):
            a = Event(x=np.uint32)
            b = Event(x=np.float32)
    with pytest.raises(ValueError, match="invalid field name"):
        class Reserved(EventSet):
            a = Event(timestamp=np.uint64)
    with pytest.raises(TypeError, match="taken by Tracer"):
        class Taken(EventSet):
            drain = Event(x=np.uint8)


def test_kernel_and_python_record_the_same_fields():
    tr = tracer()
    solve(tr, 5, 2)
    from_kernel = tr.drain()
    tr.solve.begin(5, 1e-6)
    r = 1.0
    for k in range(5):
        tr.phase.begin(k % 3)
        r = r * 0.5 - 1e-300
        tr.iteration.emit(r, k)
        if k == 2:
            tr.restart.emit(Reason.LIMIT, k, k % 2 == 1)
        tr.sample.emit(-(k % 100), -(k % 30000), -100000 * (k % 1000), -(2 ** 40) * k,
                       k % 256, 60000 + k % 5000, np.float32(k) / 3)
        tr.phase.end()
    tr.solve.end()
    from_python = tr.drain()
    assert from_kernel.size == from_python.size == 2 + 5 * 4 + 1
    for a, b in zip(from_kernel, from_python):
        t = Solver.layout.types[int(a["event_type"])]
        assert (a["event_type"], a["flags"], a["thread"]) == (b["event_type"], b["flags"],
                                                              b["thread"])
        if (a["flags"] & 3) == 2:
            continue                                    # a span's end has no fields
        for name in t.fields:
            assert a[name] == b[name], (t.name, name)


@pytest.mark.parametrize("call, message", [
    ("tr.iteration.emit(0.5)", "takes 2 field"),
    ("tr.iteration.emit(0.5, 1.5)", "step must be an integer"),
    ("tr.restart.emit(Other.X, 1, True)", "takes Reason members"),
    ("tr.solve.begin(1)", "takes 2 field"),
    ("tr.nothing.emit(1)", "nothing"),
])
def test_kernel_misuse_is_a_typing_error(call, message):
    ns = {"njit": njit, "Reason": Reason, "Other": enum.IntEnum("Other", {"X": 0})}
    exec(f"@njit\ndef f(tr):\n    {call}\n", ns)
    with pytest.raises((KernelTypingError, TypingError), match=message):
        ns["f"](tracer())


def test_python_calls_are_validated_first():
    tr = tracer()
    for call, message in [(lambda: tr.iteration.emit("x", 1), "residual must be a number"),
                          (lambda: tr.iteration.emit(0.5, -1), r"step must be in \[0"),
                          (lambda: tr.restart.emit(3, 1, True), "not a Reason"),
                          (lambda: tr.restart.emit(Reason.LIMIT, 1, "yes"), "must be a bool"),
                          (lambda: tr.sample.emit(200, 0, 0, 0, 0, 0, 0.0), r"a must be in"),
                          (lambda: tr.solve.emit(1, 0.1), "is a span"),
                          (lambda: tr.iteration.begin(1.0, 1), "is an event")]:
        with pytest.raises((ValueError, TypeError), match=message):
            call()
    with pytest.raises(AttributeError, match="event types"):
        tr.nothing
    assert tr.drain().size == 0 and tr.stats()["invalid"] == 0


@njit
def bad_in_kernel(tr, v):
    tr.iteration.emit(0.5, v)              # a negative step: out of the field's range
    tr.restart.emit(v + 10, 1, True)       # not a Reason value
    tr.phase.end()                         # an end without a begin
    for d in range(20):                    # beyond the stack depth (16)
        tr.phase.begin(d)
    for d in range(20):
        tr.phase.end()


def test_invalid_records_in_kernels_are_counted_never_written():
    tr = tracer()
    bad_in_kernel(tr, -1)
    ev = tr.drain()
    st = tr.stats()
    assert st["invalid"] == 1 + 1 + 1 + 4
    begins = ev[(ev["flags"] & 3) == 1]
    ends = ev[(ev["flags"] & 3) == 2]
    assert begins.size == ends.size == 16 and tr.open_spans() == []
    assert ev.size == 32
    assert sorted((begins["flags"] >> 2).tolist()) == list(range(16))


@njit(nogil=True)
def nest(tr, outer, inner, flag, parties):
    spin_barrier(flag, parties)
    for i in range(outer):
        tr.solve.begin(i, 0.0)
        for j in range(inner):
            tr.phase.begin(j)
            tr.iteration.emit(0.0, j)
            tr.phase.end()
        tr.solve.end()


def _check_nesting(ev):
    spans = {}
    for e in ev[(ev["flags"] & 3) == 1]:
        spans[int(e["span_id"])] = e
    assert len(spans) == int(((ev["flags"] & 3) == 1).sum()), "span ids repeat"
    for e in spans.values():
        if e["event_type"] == Solver.type_enum().PHASE:
            parent = spans[int(e["parent_span_id"])]
            assert parent["event_type"] == Solver.type_enum().SOLVE
            assert parent["thread"] == e["thread"] and parent["timestamp"] <= e["timestamp"]
            assert e["flags"] >> 2 == 1
        else:
            assert e["parent_span_id"] == 0 and e["flags"] >> 2 == 0


@needs_two_cpus
def test_spans_nest_per_thread_across_nogil_threads(barrier):
    tr = tracer(ring_buffer_size=1 << 15)
    barrier[:] = 1
    nest(tr, 1, 1, barrier, 1)
    barrier[:] = 0
    run_threads(nest, [(tr, 200, 5, barrier, 3)] * 3)
    ev = tr.drain()
    assert np.unique(ev["thread"]).size >= 3
    _check_nesting(ev)
    assert tr.stats()["invalid"] == 0 and tr.open_spans() == []


@njit(parallel=True)
def nest_prange(tr, n):
    for i in prange(n):
        tr.solve.begin(i, 0.0)
        tr.phase.begin(i % 5)
        tr.iteration.emit(0.0, i)
        tr.phase.end()
        tr.solve.end()


def test_spans_nest_per_thread_across_prange_workers():
    tr = tracer(ring_buffer_size=1 << 15)
    nest_prange(tr, 5000)
    ev = tr.drain()
    assert (ev["event_type"] == Solver.type_enum().SOLVE).sum() == 2 * 5000
    _check_nesting(ev)


def test_open_spans_are_reported():
    tr = tracer()
    outer = tr.solve.begin(3, 0.5)
    inner = tr.phase.begin(1)
    spans = tr.open_spans()
    assert [(s["type"], s["span_id"], s["depth"]) for s in spans] == \
        [("solve", outer, 0), ("phase", inner, 1)]
    frames = to_dataframe(tr.read())
    assert frames["solve"]["end"].isna().all() and frames["phase"]["parent_span_id"][0] == outer
    tr.phase.end()
    tr.solve.end()
    assert tr.open_spans() == []


@njit
def spans_only(tr, n):
    for i in range(n):
        tr.solve.begin(i, 0.0)
        tr.solve.end()


def test_live_control_by_name_without_recompiling():
    tr = tracer(ring_buffer_size=1 << 16)
    solve(tr, 3, 1)
    tr.drain()
    compiled = len(solve.signatures)
    tr.disable("iteration")
    tr.set_sample_rate("sample", 0.25)
    solve(tr, 4000, 1)
    ev = tr.drain()
    counts = np.bincount(ev["event_type"], minlength=5)
    assert counts[0] == 0 and counts[1] == 1
    assert abs(counts[2] - 1000) < 5 * np.sqrt(4000 * 0.25 * 0.75)
    assert counts[4] == 2 * 4000                        # phases: every begin and end
    tr.disable("solve")                                 # spans off: pushed, not written
    spans_only(tr, 10)
    assert tr.drain().size == 0 and tr.open_spans() == [] and tr.stats()["invalid"] == 0
    tr.enable("iteration")
    assert tr.sample_rates()["iteration"] == 1.0 and len(solve.signatures) == compiled
    with pytest.raises(ValueError, match="unknown event type"):
        tr.disable("bogus")


def test_disabled_tracer_compiles_to_the_bare_kernel():
    @njit
    def bare(n, restart_at):
        r = 1.0
        for k in range(n):
            r = r * 0.5 - 1e-300
        return r

    off, on = Tracer.disabled(Solver), tracer()
    assert solve(off, 10, 3) == bare(10, 3)
    solve(on, 10, 3)
    sig = {s[0].enabled: s for s in solve.signatures}
    assert native_asm(solve, sig[False]) == native_asm(bare)
    assert native_asm(solve, sig[True]) != native_asm(bare)
    assert off.iteration.emit(0.5, 1) is False and off.solve.begin(1, 0.1) == 0
    assert off.drain().size == 0 and off._region is None


def _recorded(n=6):
    tr = tracer()
    solve(tr, n, 2)
    return tr, tr.drain()


def test_json_lines_and_schema():
    import jsonschema
    _, ev = _recorded()
    lines = [json.loads(x) for x in events_to_jsonl(ev).decode().splitlines()]
    validator = jsonschema.Draft202012Validator(schema(Solver))
    for line, e in zip(lines, ev):
        validator.validate(line)
        assert line["timestamp"] == int(e["timestamp"]) and line["thread"] == int(e["thread"])
        name = Solver.layout.types[int(e["event_type"])].name
        assert line["event_type"] == name
        if name == "iteration":
            assert line["residual"] == float(e["residual"]) and line["step"] == int(e["step"])
        elif name == "restart":
            assert line["reason"] == "limit" and line["forced"] is (int(e["at_step"]) % 2 == 1)
        elif name == "sample":
            for f in "abcdef":
                assert line[f] == int(e[f])
            assert np.float32(line["g"]) == e["g"]
        elif line["span"] == "begin":
            assert line["span_id"] == int(e["span_id"])
            assert line["parent_span_id"] == int(e["parent_span_id"])
        else:
            assert set(line) == {"timestamp", "event_type", "thread", "ring", "sequence",
                                 "trace_id", "span", "span_id", "depth"}
        assert line["ring"] == int(e["ring"])
        trace = int(e["trace_id"])        # without the tracer: a zero tracer id, then the key
        assert line.get("trace_id") == (f"{0:016x}{trace:016x}" if trace else None)


def _attrs(kvs):
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def test_otlp_logs_carry_every_field():
    _, ev = _recorded()
    req = logs_service_pb2.ExportLogsServiceRequest.FromString(logs_request(ev))
    records = req.resource_logs[0].scope_logs[0].log_records
    assert _attrs(req.resource_logs[0].resource.attributes)["service.name"] == "solver"
    assert len(records) == ev.size
    for rec, line in zip(records, event_records(ev)):
        a = _attrs(rec.attributes)
        assert rec.event_name == f"solver.{line['event_type']}"
        assert rec.time_unix_nano == line["timestamp"]
        for k, v in line.items():
            if k in ("timestamp",):
                continue
            got = a[f"solver.{k}"]
            if k == "trace_id":                  # the logs carry the trace's 64-bit key
                got = f"{0:016x}{got:016x}"
            assert got == v, (k, got, v)


def test_loki_chrome_and_frames():
    _, ev = _recorded()
    body = json.loads(push_body(ev))
    labels = [s["stream"] for s in body["streams"]]
    assert {"service": "solver", "event_set": "solver", "event_type": "restart",
            "reason": "limit"} in labels
    assert sum(len(s["values"]) for s in body["streams"]) == ev.size
    trace = chrome_trace(ev)["traceEvents"]
    xs = [e for e in trace if e["ph"] == "X"]
    assert sorted(e["name"] for e in xs) == ["phase"] * 6 + ["solve"]
    solve_x = next(e for e in xs if e["name"] == "solve")
    for p in (e for e in xs if e["name"] == "phase"):
        assert solve_x["ts"] <= p["ts"] and p["ts"] + p["dur"] <= solve_x["ts"] + solve_x["dur"]
        assert p["args"]["parent_span_id"] == solve_x["args"]["span_id"]
    frames = to_dataframe(ev)
    it = frames["iteration"]
    assert list(it.columns) == ["timestamp", "thread", "ring", "sequence", "span_id", "trace_id",
                                "residual", "step"]
    assert str(it["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert it["step"].tolist() == list(range(6))
    assert frames["restart"]["reason"].dtype == "category"
    assert list(frames["restart"]["reason"].cat.categories) == ["diverged", "stalled", "limit"]
    phases = frames["phase"]
    assert (phases["duration"] > np.timedelta64(0, "ns")).all() and (phases["depth"] == 1).all()
    assert (phases["parent_span_id"] == frames["solve"]["span_id"][0]).all()
    assert to_dataframe(ev, "solve")["size"].tolist() == [6]


def test_otlp_spans_over_grpc_and_http_with_parents_and_events():
    tr, _ = _recorded()
    solve(tr, 4, 1)
    ev = tr.drain()
    first, second = ev[:7], ev[7:]                          # a span's ends in the next batch
    with OtlpGrpcReceiver() as grpc_rx, HttpReceiver() as http_rx:
        for exporter in (OtlpSpanExporter(grpc_rx.endpoint, insecure=True, attach_events=True),
                         OtlpSpanExporter(http_rx.url, protocol="http", attach_events=True)):
            exporter.bind(tr)
            exporter.export(first)
            exporter.export(second)
        requests = {"grpc": grpc_rx.traces, "http": http_rx.traces()}
    for name, reqs in requests.items():
        spans = [s for r in reqs for rs in r.resource_spans for ss in rs.scope_spans
                 for s in ss.spans]
        assert len(spans) == 5, name                        # 1 solve + 4 phases
        root = next(s for s in spans if s.name == "solve")
        assert root.parent_span_id == b""
        assert root.trace_id[:8] == tr.tracer_id.to_bytes(8, "big")
        assert root.trace_id[8:] == root.span_id
        assert _attrs(root.attributes)["solver.size"] == 4
        for s in spans:
            assert s.trace_id == root.trace_id
            assert s.end_time_unix_nano >= s.start_time_unix_nano > 0
            if s.name == "phase":
                assert s.parent_span_id == root.span_id
                names = [e.name for e in s.events]
                assert names in (["iteration", "sample"], ["iteration", "restart", "sample"])
                assert root.start_time_unix_nano <= s.start_time_unix_nano
                assert s.end_time_unix_nano <= root.end_time_unix_nano


def test_a_collector_delivers_spans_and_logs_to_a_receiver():
    from engram_numba import TraceCollector
    tr = tracer(export_interval_ms=50)
    with OtlpGrpcReceiver() as rx:
        c = TraceCollector(tr, [OtlpLogExporter(rx.endpoint, insecure=True),
                                OtlpSpanExporter(rx.endpoint, insecure=True)],
                           batch_size=10).start()
        solve(tr, 20, 3)
        report = c.stop(timeout=30)
        logs = sum(len(sl.log_records) for r in rx.logs for rl in r.resource_logs
                   for sl in rl.scope_logs)
        spans = [s for r in rx.traces for rs in r.resource_spans for ss in rs.scope_spans
                 for s in ss.spans]
    assert report["pending_events"] == 0 and logs == report["drained_events"] == 2 + 20 * 4 + 1
    assert len(spans) == 21 and {s.trace_id for s in spans} == {spans[0].trace_id}


def test_attached_tracer_rebuilds_the_set_from_the_file(tmp_path):
    path = tmp_path / "solver.rings"
    tr = tracer(path=str(path))
    solve(tr, 3, 1)
    view = Tracer.attach(path)
    ev = view.read()
    assert view.event_set is not Solver and view.layout == Solver.layout
    assert ev.size == 2 + 3 * 4 + 1
    lines = [json.loads(x) for x in events_to_jsonl(ev).decode().splitlines()]
    assert [x["reason"] for x in lines if x["event_type"] == "restart"] == ["limit"]
    writer = Tracer.attach(path, writable=True)
    writer.disable("sample")
    assert tr.sample_rates()["sample"] == 0.0
    writer.iteration.emit(0.25, 9)                     # records from this process too
    assert tr.drain()["step"][-1] == 9
    with pytest.raises(Exception, match="declared differently"):
        Tracer.attach(path, event_set=type("Other", (EventSet,), {"x": Event(a=np.uint8)}))


def test_concat_keeps_the_set_and_refuses_mixing():
    _, a = _recorded(2)
    _, b = _recorded(3)
    both = concat([a, b])
    assert both.dtype == a.dtype and both.size == a.size + b.size
    assert np.concatenate([a, b]).dtype == a.dtype      # numpy keeps the set's dtype too
    from engram_numba import CognitiveTracer
    ct = CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=1))
    ct.trace_priming(0, 0.5, 1, 2)
    with pytest.raises(ValueError, match="different event sets"):
        concat([a, ct.drain()])


def _rotel_binary():
    try:
        import rotel
    except ImportError:
        return None
    from pathlib import Path
    path = Path(rotel.__file__).parent / "rotel-agent"
    return path if path.exists() else None


@pytest.mark.skipif(_rotel_binary() is None,
                    reason="rotel (a real OTLP receiver, pip install rotel) is not installed")
def test_rotel_receives_spans(tmp_path):
    import subprocess
    from .processes import free_port, wait_for
    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "rotel.out"
    out = open(log, "w")
    proc = subprocess.Popen([str(_rotel_binary()), "start", "--otlp-grpc-endpoint",
                             f"127.0.0.1:{grpc_port}", "--otlp-http-endpoint",
                             f"127.0.0.1:{http_port}", "--exporter", "blackhole",
                             "--debug-log", "traces", "--debug-log-verbosity", "detailed",
                             "--pid-file", str(tmp_path / "rotel.pid")],
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Starting Rotel" in log.read_text(), timeout=30)
        tr, ev = _recorded(2)
        for exporter in (OtlpSpanExporter(f"127.0.0.1:{grpc_port}", insecure=True),
                         OtlpSpanExporter(f"http://127.0.0.1:{http_port}", protocol="http")):
            exporter.bind(tr)
            exporter.export(ev)
        text = wait_for(lambda: (lambda t: t if t.count("Name           : solve") >= 2 else None)(
            log.read_text()), timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()
    root = next(e for e in ev if e["event_type"] == Solver.type_enum().SOLVE)
    trace_id = f"{tr.tracer_id:016x}{int(root['span_id']):016x}"
    assert text.count(f"Trace ID       : {trace_id}") == 2 * 3       # solve and two phases, twice
    assert f"Parent ID      : {int(root['span_id']):016x}" in text
    assert "-> solver.size: Int(2)" in text and "-> solver.tol: Double(0.000001)" in text
    assert "-> service.name: Str(solver)" in text


@pytest.mark.parametrize("name", ["capacity", "clock", "closed", "n_rings", "event_set",
                                  "tracer_id", "create_in", "drain", "parent", "context"])
def test_names_the_tracer_uses_are_refused_at_declaration(name):
    # the reserved names come from Tracer and a constructed tracer, so none can be
    # accepted and then shadowed in Python while a kernel sees the event
    for kind in (Event(x=np.uint8), Span()):
        with pytest.raises(TypeError, match=f"'{name}'.*taken by Tracer"):
            type("Taken", (EventSet,), {name: kind})


def test_every_public_name_of_a_constructed_tracer_is_reserved():
    from engram_numba.tracing.schema import reserved_names
    tr = Tracer(Solver, TracingConfig(ring_buffer_size=64, max_threads=1))
    names = set(dir(Tracer)) | set(vars(tr))
    assert names <= reserved_names()


def test_event_kinds_are_objects_from_declaration_to_description():
    import pickle

    from engram_numba.tracing.kinds import EVENT, SPAN, trace_kind_named

    class Kinds(EventSet):
        hit = Event("a hit", n=np.int64)
        step = Span("a step")

    assert Kinds.hit.kind is EVENT and Kinds.step.kind is SPAN
    assert [t.kind for t in Kinds.layout.types] == [EVENT, SPAN]
    assert [t["kind"] for t in json.loads(Kinds.layout.description)["types"]] == ["event", "span"]
    assert f"{SPAN:5}|" == "span |" and str(EVENT) == "event"      # listings show the word
    assert pickle.loads(pickle.dumps(SPAN)) is SPAN and trace_kind_named("event") is EVENT
    with pytest.raises(ValueError, match="unknown event kind"):
        trace_kind_named("instant")
    with pytest.raises(TypeError, match="kind is SPAN"):
        Kinds.step.kind == "span"
    with pytest.raises(TypeError, match="kind is EVENT"):
        Kinds.hit.kind != "event"
