"""Run by test_prange_context in a fresh interpreter (its threading layer comes from the
environment): spans begun in prange bodies on every worker, under a span of the
launching thread; a span begun by a thread outside a running region (no parent); two
regions running at the same time (each passes its own span).  Prints one JSON line of
what it found."""

import json
import os
import sys
import threading

import numpy as np
from numba import njit, prange

from engram_numba import Event, EventSet, Span, Tracer, TracingConfig, atomic_load, atomic_store
from engram_numba.clock import monotonic_ns
from engram_numba.export._tables import trace_ids
from engram_numba.tracing.spans import SpanAssembler


class Sweep(EventSet, name="sweep"):
    sweep = Span("A sweep over rows", n=np.uint32)
    step = Span("A step of the sweep", n=np.uint32)
    row = Span("One row", r=np.uint32)
    note = Event("A note inside a row", r=np.uint32)
    lone = Span("A span of a thread outside the parallel region", n=np.uint32)


class SpansOnly(EventSet, name="spans_only"):
    sweep = Span("A sweep over rows", n=np.uint32)
    row = Span("One row", r=np.uint32)


@njit(parallel=True)
def span_only_sweep(tr, rows):
    tr.sweep.begin(rows)
    total = 0
    for r in prange(rows):
        tr.row.begin(r)
        total += busy(r)
        tr.row.end()
    tr.sweep.end()
    return total


GUARD_NS = 300_000_000_000            # a guard only: the waits end when the other side acts


@njit(nogil=True)
def wait_for(flags, index):
    """Wait until flags[index] is set; False if the guard ran out first."""
    deadline = monotonic_ns() + GUARD_NS
    while atomic_load(flags, index) == 0:
        if monotonic_ns() > deadline:
            return False
    return True


@njit(parallel=True, nogil=True)
def waiting_sweep(tr, rows, flags, me, others):
    """A sweep whose rows, once begun, wait until ``flags[others]`` are set (having set
    ``flags[me]``); flags[3] counts the waits that ran out."""
    tr.sweep.begin(rows)
    for r in prange(rows):
        tr.row.begin(r)
        atomic_store(flags, me, np.uint64(1))
        for k in range(others.size):
            if not wait_for(flags, others[k]):
                atomic_store(flags, 3, np.uint64(1))
        tr.row.end()
    tr.sweep.end()


@njit(nogil=True)
def lone_span(tr, flags):
    """Begin and end a span while a waiting sweep runs, then let the sweep go on."""
    if not wait_for(flags, 0):
        atomic_store(flags, 3, np.uint64(1))
    tr.lone.begin(0)
    tr.lone.end()
    atomic_store(flags, 1, np.uint64(1))


@njit
def busy(r):
    """Some work for row ``r`` (so that the rows spread over the workers)."""
    x = 0
    for k in range(2000):
        x += k ^ r
    return x


@njit(parallel=True)
def sweep(tr, rows, nested, row_spans=True):
    """A sweep (and a nested step) around rows that note, each in a row span, or with
    no span open on the row's thread (``row_spans=False``, then a note after the sweep)."""
    tr.sweep.begin(rows)
    if nested:
        tr.step.begin(rows)
    total = 0
    for r in prange(rows):
        if row_spans:
            tr.row.begin(r)
        tr.note.emit(r)
        total += busy(r)
        if row_spans:
            tr.row.end()
    if nested:
        tr.step.end()
    tr.sweep.end()
    if not row_spans:
        tr.note.emit(rows)                    # after the sweep: in no span
    return total


@njit(parallel=True)
def quiet_sweep(tr, rows):
    """A sweep whose rows record nothing."""
    tr.sweep.begin(rows)
    total = 0
    for r in prange(rows):
        total += busy(r)
    tr.sweep.end()
    return total


@njit(parallel=True)
def spanless(tr, rows):
    """Notes in a prange body of a region launched with no span open."""
    total = 0
    for r in prange(rows):
        tr.note.emit(1000 + r)
        total += busy(r)
    return total


@njit(parallel=True, nogil=True)
def paused_sweep(tr, rows, flags):
    """Each row notes, waits until flags[0] is set (the reader drained), notes again."""
    tr.sweep.begin(rows)
    for r in prange(rows):
        tr.note.emit(r)
        if not wait_for(flags, 0):
            atomic_store(flags, 3, np.uint64(1))
        tr.note.emit(100 + r)
    tr.sweep.end()


def bare(tr, launcher):
    """Instant events emitted in prange bodies on workers with no span open belong to the
    launcher's span; after the region, and in a region launched with no span, to none."""
    import numba
    note = [t.name for t in Sweep.layout.types].index("note")
    out = []
    for nested in (False, True):
        for attempt in range(5000):           # until a worker other than the launcher noted
            tr.drain()
            sweep(tr, 96, nested, False)
            spanless(tr, 96)
            events = tr.drain()
            notes = events[events["event_type"] == note]
            if any(int(t) != launcher for t in notes["thread"][notes["r"] < 96]):
                break
        ids = trace_ids(tr)
        spans = SpanAssembler(attach_events=True).feed(events)
        outer = [s for s in spans if s.name == "sweep"][-1]
        parent = [s for s in spans if s.name == ("step" if nested else "sweep")][-1]
        rows = notes[notes["r"] < 96]
        after = notes[notes["r"] == 96]
        plain = notes[notes["r"] >= 1000]
        stats = tr.stats()
        endpoint = os.environ.get("PRANGE_OTLP_ENDPOINT")
        if endpoint and nested:               # the nested sweep's notes, as OTLP log records
            from engram_numba.export.otlp import OtlpLogExporter
            exporter = OtlpLogExporter(endpoint, insecure=True)
            exporter.bind(tr)
            exporter.export(notes)
            exporter.shutdown()
        out.append({
            "nested": nested, "rows": int(rows.size),
            "on_workers": int(sum(int(t) != launcher for t in rows["thread"])),
            "in_parent": int((rows["span_id"] == parent.span_id).sum()),
            "attached": sorted(f["r"] for name, _, f in parent.events if name == "note"),
            "same_trace": sum(ids.of(int(t)) == ids.of(outer.root_id) for t in rows["trace_id"]),
            "after": int(after.size), "after_in_a_span": int((after["span_id"] != 0).sum()),
            "plain": int(plain.size), "plain_in_a_span": int((plain["span_id"] != 0).sum()),
            "contexts": stats["total"]["contexts"],
            "parent_id": parent.span_id, "trace_hex": ids.hex(outer.root_id),
            "written": stats["total"]["written"],
        })
    # sweeps whose rows record nothing: no context record at all
    before = tr.stats()["total"]["contexts"]
    for _ in range(20):
        quiet_sweep(tr, 96)
    out.append({"quiet": True, "contexts": tr.stats()["total"]["contexts"] - before,
                "sweeps": int((tr.drain()["event_type"] == 0).sum())})
    # drained in the middle of a chunk: a worker's later notes still belong to the sweep
    sweep_type = [t.name for t in Sweep.layout.types].index("sweep")
    for attempt in range(200):            # until a worker other than the launcher noted
        tr.drain()
        flags = np.zeros(4, dtype=np.uint64)
        runner = threading.Thread(target=paused_sweep, args=(tr, 2, flags))
        runner.start()
        first = []
        deadline = monotonic_ns() + GUARD_NS
        while monotonic_ns() < deadline:
            batch = tr.drain()
            first.append(batch)
            if (batch["event_type"] == note).any():    # a row noted, and waits
                break
        atomic_store(flags, 0, np.uint64(1))
        runner.join()
        first = np.concatenate(first)
        later = tr.drain()
        first_notes = first[first["event_type"] == note]
        if any(int(t) != runner.native_id for t in first_notes["thread"]):
            break
    (begin,) = first[(first["event_type"] == sweep_type) & (first["flags"] & 3 == 1)]
    sweep_id = int(begin["span_id"])
    on_worker = first_notes[first_notes["thread"] != runner.native_id]
    later_notes = later[later["event_type"] == note]
    later_on_worker = later_notes[np.isin(later_notes["thread"], on_worker["thread"])]
    out.append({"paused": True, "attempts": attempt + 1, "guard_ran_out": int(flags[3]),
                "first_on_worker": int(on_worker.size),
                "first_in_sweep": int((first_notes["span_id"] == sweep_id).sum()),
                "first": int(first_notes.size),
                "later_on_worker": int(later_on_worker.size),
                "later_in_sweep": int((later_notes["span_id"] == sweep_id).sum()),
                "later": int(later_notes.size)})
    return out


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
    # a set of spans only has no instant events: its workers write no context records
    only = Tracer(SpansOnly, TracingConfig(ring_buffer_size=1 << 12, max_threads=8))
    for _ in range(5000):
        span_only_sweep(only, 96)
        spans = SpanAssembler().feed(only.drain())
        rows = [s for s in spans if s.name == "row"]
        if any(s.thread != launcher for s in rows):
            break
    (outer,) = [s for s in spans if s.name == "sweep"]
    span_only = {"rows": len(rows), "on_workers": sum(s.thread != launcher for s in rows),
                 "children": sum(s.parent_id == outer.span_id for s in rows),
                 "contexts": only.stats()["total"]["contexts"]}
    print(json.dumps({"layer": numba.threading_layer(), "found": found, "span_only": span_only,
                      "outside": outside(tr, launcher), "concurrent": concurrent(tr),
                      "bare": bare(tr, launcher)}))


def outside(tr, launcher):
    """A plain Python thread begins a root span while a sweep's rows wait for it."""
    tr.drain()
    flags = np.zeros(4, dtype=np.uint64)
    other = threading.Thread(target=lone_span, args=(tr, flags))
    other.start()
    waiting_sweep(tr, 16, flags, 0, np.array([1], dtype=np.int64))
    other.join()
    spans = SpanAssembler().feed(tr.drain())
    (lone,) = [s for s in spans if s.name == "lone"]
    (outer,) = [s for s in spans if s.name == "sweep"]
    rows = [s for s in spans if s.name == "row"]
    return {"guard_ran_out": int(flags[3]), "lone_parent": lone.parent_id,
            "lone_is_its_root": lone.root_id == lone.span_id, "rows": len(rows),
            "rows_on_workers": sum(s.thread != launcher for s in rows),
            "children": sum(s.parent_id == outer.span_id for s in rows)}


def concurrent(tr):
    """Two threads run sweeps at the same time (sweep 1 starts once a row of sweep 0 has
    begun; each row waits until both sweeps have begun a row), until the first sweep had
    rows on a thread other than its launcher: its rows after the wait begin while the
    later sweep runs (a row's thread is the OS thread that recorded it; its ring's, for a
    sweep)."""
    import numba
    if numba.threading_layer() == "workqueue":
        return None                   # (workqueue runs one region at a time)
    both = np.array([0, 1], dtype=np.int64)
    for attempt in range(200):
        tr.drain()
        flags = np.zeros(4, dtype=np.uint64)

        def run(me):
            if me == 1 and not wait_for(flags, 0):         # sweep 1 starts after sweep 0
                atomic_store(flags, 3, np.uint64(1))
            waiting_sweep(tr, 32 + me, flags, me, both)     # sweep me has 32 + me rows
        threads = [threading.Thread(target=run, args=(me,)) for me in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spans = SpanAssembler().feed(tr.drain())
        outers = {s.fields["n"] - 32: s for s in spans if s.name == "sweep"}
        rows = [s for s in spans if s.name == "row"]
        launchers = {outer.thread for outer in outers.values()}
        per_parent = [sum(s.parent_id == outers[me].span_id for s in rows) for me in (0, 1)]
        worker_rows = [sum(s.thread not in launchers and s.parent_id == outers[me].span_id
                           for s in rows) for me in (0, 1)]
        if worker_rows[0] or per_parent != [32, 33]:
            break
    return {"attempts": attempt + 1, "guard_ran_out": int(flags[3]),
            "per_parent": per_parent, "rows": len(rows), "worker_rows": worker_rows}


if __name__ == "__main__":
    sys.exit(main())
