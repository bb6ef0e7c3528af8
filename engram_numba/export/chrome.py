"""Chrome Trace Event Format: a ``trace.json`` for Perfetto UI and chrome://tracing.

* one track per recording thread (``tid`` = ring id), named by metadata events;
* an instant event (``"ph": "i"``, thread scope) per cognitive event, named by
  its type (``priming/semantic``, ...), with every field in ``args``;
* counter tracks (``"ph": "C"``) with the rate of each event type, events per
  second over ``rate_window_ms`` windows.

Timestamps are microseconds (floats, sub-microsecond precision kept) since the
first event, with the absolute start in ``otherData.start_unix_ns``.
"""

from __future__ import annotations

import json

import numpy as np

from ..tracing.events import as_events
from .json import event_records

__all__ = ["chrome_trace", "ChromeTraceExporter"]

_TYPES = ("priming", "interference", "reconsolidation", "false_memory")


def chrome_trace(events: np.ndarray, *, process_name: str = "engram",
                 rate_window_ms: float = 100.0) -> dict:
    """The Trace Event Format document (a dict; ``json.dump`` it) for ``events``."""
    events = as_events(events)
    records = event_records(events)
    start = int(events["timestamp"].min()) if events.size else 0
    trace = [{"ph": "M", "pid": 1, "tid": 0, "name": "process_name",
              "args": {"name": process_name}}]
    for tid in sorted({r["thread"] for r in records}):
        trace.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name",
                      "args": {"name": f"ring {tid}"}})
    for r in records:
        sub = r.get("priming_type") or r.get("interference_type")
        args = {k: v for k, v in r.items() if k not in ("timestamp", "thread")}
        trace.append({"ph": "i", "s": "t", "pid": 1, "tid": r["thread"],
                      "ts": (r["timestamp"] - start) / 1000.0, "cat": r["event_type"],
                      "name": f"{r['event_type']}/{sub}" if sub else r["event_type"],
                      "args": args})
    if events.size:
        window = int(rate_window_ms * 1e6)
        slots = (events["timestamp"].astype(np.int64) - start) // window
        for t, name in enumerate(_TYPES):
            counts = np.bincount(slots[events["event_type"] == t], minlength=int(slots.max()) + 1)
            for k, c in enumerate(counts.tolist()):
                trace.append({"ph": "C", "pid": 1, "tid": 0, "name": f"{name} rate",
                              "ts": k * window / 1000.0,
                              "args": {"events_per_s": c / (rate_window_ms / 1000.0)}})
    return {"traceEvents": trace, "displayTimeUnit": "ms",
            "otherData": {"start_unix_ns": start, "events": int(events.size),
                          "producer": "engram-numba"}}


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
        events = as_events(events)
        room = self.max_events - self.kept
        if room <= 0:
            self.dropped += events.size
            return
        self.batches.append(events[:room].copy())
        self.kept += min(room, events.size)
        self.dropped += max(0, events.size - room)

    def shutdown(self) -> None:
        from ..tracing.events import concat
        events = concat(self.batches)
        with open(self.path, "w") as f:
            json.dump(chrome_trace(events, rate_window_ms=self.rate_window_ms), f)
