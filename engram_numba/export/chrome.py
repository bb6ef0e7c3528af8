"""Chrome Trace Event Format: a ``trace.json`` for Perfetto UI and chrome://tracing.

* one track per recording thread (``tid`` = the OS thread id, or the ring when
  it is unknown), named ``thread <id> (ring <r>)`` by metadata events;
* spans as duration events (``"ph": "X"``, nested per thread by their times;
  a span still open at the end is a ``"B"`` event without its end), with their
  fields and ids as ``args``: ``span_id``, ``parent_span_id`` (for a root span
  under ``tracer.parent(ctx)``, ``ctx``'s span id) and ``trace_id``, the trace's
  128-bit OpenTelemetry id as 32 hex digits, as the OTLP span exporter sends it
  (pass ``tracer=``; without it the tracer's id reads as zeros and explicit
  parents are not resolved);
* an instant event (``"ph": "i"``, thread scope) per event, named by its type
  and its first enum field (``priming/semantic``), with every field in ``args``;
* counter tracks (``"ph": "C"``) with the rate of each event type, events per
  second over ``rate_window_ms`` windows.

Timestamps are microseconds (floats, sub-microsecond precision kept) since the
first event, with the absolute start in ``otherData.start_unix_ns``.

:class:`ChromeTraceExporter` writes the file as the events arrive: after every
``export()`` it is a complete, valid document (the events so far, then the
closing ``]`` and ``otherData``, which the next export overwrites), so a run
that is killed still leaves a trace that opens.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np

from ..tracing.schema import as_events
from ..tracing.spans import SpanAssembler
from ._tables import trace_ids
from .json import _encode_events

__all__ = ["chrome_trace", "ChromeTraceExporter", "merged_chrome"]


def _tid(thread: int, ring: int) -> int:
    return int(thread) if thread else int(ring)


def _thread_name(thread: int, ring: int) -> str:
    return f"thread {thread} (ring {ring})" if thread else f"ring {ring}"


def _json(entry) -> str:
    return json.dumps(entry, separators=(",", ":"))


class _Writer:
    """Trace entries (JSON text) of a stream of event batches (spans paired across batches).

    Instant events are written from the events' JSON lines (the compiled encoder of
    :mod:`.json`), each line becoming the ``args`` of its entry, so that a batch costs
    one string format per event."""

    def __init__(self, layout, pid: int, start: int, tracer=None):
        self.layout = layout
        self.tracer = tracer
        self.pid = pid
        self.start = start
        self.assembler = SpanAssembler()
        self.threads = {}
        self.first_enum = {}           # type index -> (field, {value: member name})
        for t in layout.types:
            for n, ft in t.fields.items():
                if ft.code == "e":
                    self.first_enum[t.index] = (n, ft.names)
                    break

    def us(self, ns) -> float:
        return (int(ns) - self.start) / 1000.0

    def _names(self, events) -> list:
        """Each event's entry name: its type, and its first enum field's member."""
        layout = self.layout
        types = events["event_type"]
        out = np.empty(events.size, dtype=object)
        for t in layout.types:
            rows = types == t.index
            if not rows.any():
                continue
            enum = self.first_enum.get(t.index)
            if enum is None:
                out[rows] = t.name
                continue
            field, members = enum
            values = events[field][rows].tolist()
            out[rows] = [f"{t.name}/{members.get(v, 'unknown')}" for v in values]
        out[types >= len(layout.types)] = "unknown"
        return out.tolist()

    def entries(self, events) -> list:
        pid = self.pid
        out = []
        threads = events["thread"]
        tids = np.where(threads != 0, threads, events["ring"]).tolist()
        for tid, th, ring in zip(tids, threads.tolist(), events["ring"].tolist()):
            if tid not in self.threads:
                self.threads[tid] = ring
                out.append(_json({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                                  "args": {"name": _thread_name(th, ring)}}))
        lines = _encode_events(events, b"\n", self.tracer).decode().split("\n") \
            if events.size else []
        ids = trace_ids(self.tracer)
        instant = ~self.layout.is_span[events["event_type"]]
        names = self._names(events)
        cats = [self.layout.types[t].name if t < len(self.layout.types) else "unknown"
                for t in events["event_type"].tolist()]
        ts = ((events["timestamp"].astype(np.int64) - self.start) / 1000.0).tolist()
        for i in np.flatnonzero(instant).tolist():
            out.append(f'{{"ph":"i","s":"t","pid":{pid},"tid":{tids[i]},"ts":{ts[i]!r},'
                       f'"cat":"{cats[i]}","name":"{names[i]}","args":{lines[i]}}}')
        if self.layout.has_spans:
            for s in self.assembler.feed(events):
                out.append(_json({"ph": "X", "pid": pid, "tid": _tid(s.thread, s.ring),
                                  "ts": self.us(s.start_ns), "dur": s.duration_ns / 1000.0,
                                  "cat": "span", "name": s.name,
                                  "args": {**s.fields, "span_id": s.span_id,
                                           "parent_span_id": s.parent_id,
                                           "trace_id": ids.hex(s.root_id),
                                           "depth": s.depth}}))
        return out

    def open_spans(self) -> list:
        ids = trace_ids(self.tracer)
        return [_json({"ph": "B", "pid": self.pid, "tid": _tid(s.thread, s.ring),
                       "ts": self.us(s.start_ns), "cat": "span", "name": s.name,
                       "args": {**s.fields, "span_id": s.span_id,
                                "parent_span_id": s.parent_id,
                                "trace_id": ids.hex(s.root_id), "open": True}})
                for s in self.assembler.open_spans()]


class _Rates:
    """Counter samples (events per second per type, one per window) of a stream of batches.

    Windows are written up to a point; a type seen once gets a sample (0 when empty)
    for every window after it.  An event older than the windows already written counts
    in the oldest open one."""

    def __init__(self, layout, pid, start, window_ns):
        self.layout, self.pid, self.start, self.window = layout, pid, start, window_ns
        self.counts = {}
        self.seen = set()
        self.next = 0                   # the first window not written yet
        self.last = -1                  # the newest window with an event

    def add(self, events) -> None:
        if not events.size:
            return
        slots = np.maximum((events["timestamp"].astype(np.int64) - self.start) // self.window,
                           self.next)
        self.last = max(self.last, int(slots.max()))
        for t in self.layout.types:
            mine = slots[events["event_type"] == t.index]
            if mine.size:
                self.seen.add(t.index)
                ks, ns = np.unique(mine, return_counts=True)
                for k, n in zip(ks.tolist(), ns.tolist()):
                    self.counts[(t.index, k)] = self.counts.get((t.index, k), 0) + n

    def flush(self, upto=None) -> list:
        """The samples of the windows before ``upto`` (every window with events: None)."""
        upto = self.last + 1 if upto is None else min(upto, self.last + 1)
        out = []
        for t in sorted(self.seen):
            name = f"{self.layout.types[t].name} rate"
            for k in range(self.next, upto):
                out.append(_json({"ph": "C", "pid": self.pid, "tid": 0, "name": name,
                                  "ts": k * self.window / 1000.0,
                                  "args": {"events_per_s": self.counts.pop((t, k), 0)
                                           / (self.window / 1e9)}}))
        self.next = max(self.next, upto)
        return out


def chrome_trace(events: np.ndarray, *, process_name: str | None = None,
                 rate_window_ms: float = 100.0, pid: int = 1,
                 start_ns: int | None = None, tracer=None) -> dict:
    """The Trace Event Format document (a dict; ``json.dump`` it) for ``events``.

    ``pid`` names the process the events belong to; ``start_ns`` (default: the first
    event) is time zero, so that documents of several processes can be merged;
    ``tracer``: the tracer that recorded the events, for their trace ids."""
    events, layout = as_events(events)
    if start_ns is None:
        start = int(events["timestamp"].min()) if events.size else 0
    else:
        start = int(start_ns)
    process_name = layout.name if process_name is None else process_name
    writer = _Writer(layout, pid, start, tracer)
    trace = [_json({"ph": "M", "pid": pid, "tid": 0, "name": "process_name",
                    "args": {"name": process_name}})]
    trace += writer.entries(events)
    trace += writer.open_spans()
    rates = _Rates(layout, pid, start, int(rate_window_ms * 1e6))
    rates.add(events)
    trace += rates.flush()
    return {"traceEvents": json.loads("[" + ",".join(trace) + "]"), "displayTimeUnit": "ms",
            "otherData": {"start_unix_ns": start, "events": int(events.size),
                          "event_set": layout.name, "producer": "engram-numba"}}


class ChromeTraceExporter:
    """Collector exporter writing ``path`` as batches arrive (at most ``max_events``).

    After each :meth:`export` returns, ``path`` holds a complete trace of the events so
    far; :meth:`shutdown` adds the spans still open (as ``"B"`` events) and the last
    rate windows.  Events past ``max_events`` are counted in ``dropped``.
    """

    name = "chrome"

    def __init__(self, path, *, max_events: int = 1_000_000, rate_window_ms: float = 100.0,
                 tracer=None):
        self.path = path
        self.tracer = tracer
        self.max_events = max_events
        self.rate_window_ms = rate_window_ms
        self.kept = 0
        self.dropped = 0
        self._writer = None
        self._rates = None
        self._layout = None
        self._file = open(path, "w+", encoding="utf-8")
        self._regular = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        self._body_end = 0              # where the closing part starts
        self._entries = 0
        self._write([], final=False)

    def bind(self, tracer) -> None:
        """Compile the encoder now (a TraceCollector calls this before it starts), so that
        the first export does not hold up the collector; the tracer's id and explicit
        parents give the trace ids."""
        if self.tracer is None:
            self.tracer = tracer
        layout = getattr(tracer, "layout", None)
        if layout is not None:
            _encode_events(np.zeros(1, dtype=layout.dtype), b"\n")

    def _tail(self) -> str:
        other = {"events": self.kept, "dropped": self.dropped, "producer": "engram-numba"}
        if self._writer is not None:
            other.update(start_unix_ns=self._writer.start, event_set=self._layout.name)
        return "],\"displayTimeUnit\":\"ms\",\"otherData\":" + json.dumps(other) + "}"

    def _write(self, entries, final: bool) -> None:
        f = self._file
        if self._body_end == 0:
            f.seek(0)
            f.write('{"traceEvents":[')
            self._body_end = f.tell()
        f.seek(self._body_end)
        if entries:
            text = ",".join(entries)
            f.write(("," if self._entries else "") + text)
            self._entries += len(entries)
            self._body_end = f.tell()
        f.write(self._tail())
        if self._regular:
            f.truncate()
        f.flush()
        if final and self._regular:
            os.fsync(f.fileno())

    def export(self, events: np.ndarray) -> None:
        events, layout = as_events(events)
        room = self.max_events - self.kept
        if room <= 0:
            self.dropped += events.size
            self._write([], final=False)
            return
        if events.size > room:
            self.dropped += events.size - room
            events = events[:room]
        if not events.size:
            return
        entries = []
        if self._writer is None:
            self._layout = layout
            start = int(events["timestamp"].min())
            self._writer = _Writer(layout, 1, start, self.tracer)
            self._rates = _Rates(layout, 1, start, int(self.rate_window_ms * 1e6))
            entries.append(_json({"ph": "M", "pid": 1, "tid": 0, "name": "process_name",
                                  "args": {"name": layout.name}}))
        self.kept += events.size
        entries += self._writer.entries(events)
        self._rates.add(events)
        # the newest two windows stay open: the next batch may still add to them
        entries += self._rates.flush(upto=self._rates.last - 1)
        self._write(entries, final=False)

    def shutdown(self) -> None:
        if self._file.closed:
            return
        entries = []
        if self._writer is not None:
            entries += self._writer.open_spans()
            entries += self._rates.flush()
        self._write(entries, final=True)
        self._file.close()


def merged_chrome(parts) -> dict:
    """One Chrome/Perfetto trace of a trace directory's ``[(process, events)]`` (as
    :meth:`~..tracing.directory.TraceDirectory.read` gives them): a process per file
    (named ``<set> pid <pid>``)."""
    stamps = [int(e["timestamp"].min()) for _, e in parts if e.size]
    start = min(stamps) if stamps else 0
    trace = []
    for p, events in parts:
        doc = chrome_trace(events, process_name=f"{p.tracer.layout.name} pid {p.pid}",
                           pid=p.pid, start_ns=start, tracer=p.tracer)
        trace.extend(doc["traceEvents"])
    return {"traceEvents": trace, "displayTimeUnit": "ns"}
