"""Chrome Trace Event Format: a ``trace.json`` for Perfetto UI and chrome://tracing.

* one track per recording thread (``tid`` = ring id), named by metadata events;
* spans as duration events (``"ph": "X"``, nested per thread by their times;
  a span still open at the end is a ``"B"`` event without its end), with their
  fields and ids as ``args``;
* an instant event (``"ph": "i"``, thread scope) per event, named by its type
  and its first enum field (``priming/semantic``), with every field in ``args``;
* counter tracks (``"ph": "C"``) with the rate of each event type, events per
  second over ``rate_window_ms`` windows.

Timestamps are microseconds (floats, sub-microsecond precision kept) since the
first event, with the absolute start in ``otherData.start_unix_ns``.
"""

from __future__ import annotations

import json

import numpy as np

from ..tracing.schema import as_events, concat
from ..tracing.spans import SpanAssembler
from .json import event_records

__all__ = ["chrome_trace", "ChromeTraceExporter"]


def chrome_trace(events: np.ndarray, *, process_name: str | None = None,
                 rate_window_ms: float = 100.0, pid: int = 1,
                 start_ns: int | None = None) -> dict:
    """The Trace Event Format document (a dict; ``json.dump`` it) for ``events``.

    ``pid`` names the process the events belong to; ``start_ns`` (default: the first
    event) is time zero, so that documents of several processes can be merged."""
    events, layout = as_events(events)
    records = event_records(events)
    if start_ns is None:
        start = int(events["timestamp"].min()) if events.size else 0
    else:
        start = int(start_ns)
    process_name = layout.name if process_name is None else process_name
    trace = [{"ph": "M", "pid": pid, "tid": 0, "name": "process_name",
              "args": {"name": process_name}}]
    for tid in sorted({r["thread"] for r in records}):
        trace.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                      "args": {"name": f"ring {tid}"}})
    first_enum = {t.name: next((n for n, ft in t.fields.items() if ft.code == "e"), None)
                  for t in layout.types}

    def us(ns):
        return (ns - start) / 1000.0

    for r in records:
        if "span" in r:
            continue
        sub = first_enum.get(r["event_type"])
        name = f"{r['event_type']}/{r[sub]}" if sub else r["event_type"]
        args = {k: v for k, v in r.items() if k not in ("timestamp", "thread")}
        trace.append({"ph": "i", "s": "t", "pid": pid, "tid": r["thread"], "ts": us(r["timestamp"]),
                      "cat": r["event_type"], "name": name, "args": args})
    if layout.has_spans:
        assembler = SpanAssembler()
        for s in assembler.feed(events):
            trace.append({"ph": "X", "pid": pid, "tid": s.ring, "ts": us(s.start_ns),
                          "dur": s.duration_ns / 1000.0, "cat": "span", "name": s.name,
                          "args": {**s.fields, "span_id": s.span_id,
                                   "parent_span_id": s.parent_id, "depth": s.depth}})
        for s in assembler.open_spans():
            trace.append({"ph": "B", "pid": pid, "tid": s.ring, "ts": us(s.start_ns),
                          "cat": "span", "name": s.name,
                          "args": {**s.fields, "span_id": s.span_id, "open": True}})
    if events.size:
        window = int(rate_window_ms * 1e6)
        slots = (events["timestamp"].astype(np.int64) - start) // window
        for t in layout.types:
            counts = np.bincount(slots[events["event_type"] == t.index],
                                 minlength=int(slots.max()) + 1)
            if not counts.any():
                continue
            for k, c in enumerate(counts.tolist()):
                trace.append({"ph": "C", "pid": pid, "tid": 0, "name": f"{t.name} rate",
                              "ts": k * window / 1000.0,
                              "args": {"events_per_s": c / (rate_window_ms / 1000.0)}})
    return {"traceEvents": trace, "displayTimeUnit": "ms",
            "otherData": {"start_unix_ns": start, "events": int(events.size),
                          "event_set": layout.name, "producer": "engram-numba"}}


class ChromeTraceExporter:
    """Collector exporter keeping events and writing ``path`` at shutdown (bounded)."""

    name = "chrome"

    def __init__(self, path, *, max_events: int = 1_000_000, rate_window_ms: float = 100.0):
        self.path = path
        self.max_events = max_events
        self.rate_window_ms = rate_window_ms
        self.batches = []
        self.kept = 0
        self.dropped = 0

    def export(self, events: np.ndarray) -> None:
        events, _ = as_events(events)
        room = self.max_events - self.kept
        if room <= 0:
            self.dropped += events.size
            return
        self.batches.append(events[:room].copy())
        self.kept += min(room, events.size)
        self.dropped += max(0, events.size - room)

    def shutdown(self) -> None:
        if not self.batches:
            with open(self.path, "w") as f:
                json.dump({"traceEvents": [], "displayTimeUnit": "ms",
                           "otherData": {"events": 0, "producer": "engram-numba"}}, f)
            return
        with open(self.path, "w") as f:
            json.dump(chrome_trace(concat(self.batches), rate_window_ms=self.rate_window_ms), f)
