"""Run by test_prange_context in a fresh interpreter (its threading layer comes from the
environment): spans begun in prange bodies on every worker, under a span of the
launching thread.  Prints one JSON line of what it found."""

import json
import os
import sys
import threading

import numpy as np
from numba import njit, prange

from engram_numba import Event, EventSet, Span, Tracer, TracingConfig
from engram_numba.export._tables import trace_ids
from engram_numba.tracing.spans import SpanAssembler


class Sweep(EventSet, name="sweep"):
    sweep = Span("A sweep over rows", n=np.uint32)
    step = Span("A step of the sweep", n=np.uint32)
    row = Span("One row", r=np.uint32)
    note = Event("A note inside a row", r=np.uint32)


@njit(parallel=True)
def sweep(tr, rows, nested):
    tr.sweep.begin(rows)
    if nested:
        tr.step.begin(rows)
    total = 0
    for r in prange(rows):
        tr.row.begin(r)
        tr.note.emit(r)
        x = 0
        for k in range(2000):
            x += k ^ r
        total += x
        tr.row.end()
    if nested:
        tr.step.end()
    tr.sweep.end()
    return total


def main():
    import numba
    tr = Tracer(Sweep, TracingConfig(ring_buffer_size=1 << 12, max_threads=8))
    launcher = threading.get_native_id()
    found = []
    for nested in (False, True):
        asm = SpanAssembler()
        for _ in range(5000):                 # until two threads, one of them a worker
            sweep(tr, 96, nested)             # other than the launcher, ran rows of a sweep
            events = tr.drain()
            spans = asm.feed(events)
            rows = [s for s in spans if s.name == "row"]
            if len({s.thread for s in rows}) == 2 and any(s.thread != launcher for s in rows):
                break
        endpoint = os.environ.get("PRANGE_OTLP_ENDPOINT")
        if endpoint and not nested:           # the last sweep, to a real OTLP receiver
            from engram_numba.export.otlp import OtlpSpanExporter
            exporter = OtlpSpanExporter(endpoint, insecure=True)
            exporter.bind(tr)
            exporter.export(events)
            exporter.shutdown()
        ids = trace_ids(tr)
        note = [t.name for t in Sweep.layout.types].index("note")
        notes = events[events["event_type"] == note]
        row_of = {s.span_id: s for s in rows}
        outer = [s for s in spans if s.name == "sweep"][-1]
        parent = [s for s in spans if s.name == ("step" if nested else "sweep")][-1]
        found.append({
            "nested": nested,
            "rows": len(rows),
            "threads": len({s.thread for s in rows}),
            "on_workers": sum(s.thread != launcher for s in rows),
            "children": sum(s.parent_id == parent.span_id for s in rows),
            "roots": sum(s.parent_id == 0 for s in rows),
            "same_trace": sum(ids.of(s.root_id) == ids.of(outer.root_id) for s in rows),
            "notes": len(notes),
            "notes_in_rows": sum(int(e["span_id"]) in row_of for e in notes),
            "notes_same_trace": sum(ids.of(int(e["trace_id"])) == ids.of(outer.root_id)
                                    for e in notes),
        })
    print(json.dumps({"layer": numba.threading_layer(), "found": found}))


if __name__ == "__main__":
    sys.exit(main())
