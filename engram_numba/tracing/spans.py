"""Spans from the begin and end events of a stream of drained events.

A tracer writes a span as two events of one thread (one ring): a begin with
``span_id``, ``parent_span_id``, its depth and fields, and an end with the
``span_id``.  :class:`SpanAssembler` pairs them as batches arrive (a begin in
one drain, its end in a later one), keeping per ring the stack of spans still
open, so its memory is bounded by rings times stack depth.  Instant events can
be attached to the innermost span open on their thread.

Trace ids: a span with no parent starts a trace; every span under it belongs to
that trace.  The 16-byte OTLP trace id is the tracer's id (8 bytes, random per
tracer) followed by the root span's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .schema import FLAG_BEGIN, FLAG_END, as_events

__all__ = ["SpanAssembler", "Span", "OpenSpan"]


@dataclass
class OpenSpan:
    span_id: int
    parent_id: int
    root_id: int
    name: str
    ring: int
    depth: int
    start_ns: int
    fields: dict
    events: list = field(default_factory=list)


@dataclass
class Span:
    """A closed span: ids, name, thread (ring), depth, start/end (unix ns), fields, events."""

    span_id: int
    parent_id: int
    root_id: int
    name: str
    ring: int
    depth: int
    start_ns: int
    end_ns: int
    fields: dict
    events: list = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


class SpanAssembler:
    """Pairs span begins and ends across batches; see the module docstring.

    ``feed(events)`` returns the spans closed by these events.  With
    ``attach_events=True`` every instant event is attached (as ``(name,
    unix ns, fields)``) to the innermost span open on its ring, at most
    ``max_events`` per span (the rest are counted in ``events_dropped``).
    ``orphan_ends`` counts ends whose begin was never seen (dropped or drained
    before this assembler started); ``unclosed`` counts begins whose end was
    lost (a newer begin took their place on the ring's stack).
    """

    def __init__(self, attach_events: bool = False, max_events: int = 128):
        self.attach_events = attach_events
        self.max_events = max_events
        self.stacks = {}             # ring -> [OpenSpan] by depth
        self.roots = {}              # span id -> root id, for open spans
        self.orphan_ends = 0
        self.unclosed = 0
        self.events_dropped = 0

    def open_spans(self) -> list:
        """Spans begun and not ended yet, outermost first per ring."""
        return [s for stack in self.stacks.values() for s in stack]

    def feed(self, events) -> list:
        events, layout = as_events(events)
        if not events.size or not layout.has_spans and not self.attach_events:
            return []
        closed = []
        types = events["event_type"]
        flags = events["flags"]
        is_span = np.array([t.kind == "span" for t in layout.types] + [False] * (256 - len(
            layout.types)))
        span_rows = is_span[types]
        wanted = np.flatnonzero(span_rows) if not self.attach_events else np.arange(events.size)
        names = [t.name for t in layout.types]
        fields_of = [[(name, ft.code) for name, ft in t.fields.items()] for t in layout.types]

        def value(x, code):
            if code == "f":        # a float32 as its shortest decimal (0.7, not 0.699999988)
                return float(str(x))
            if code == "b":        # a bool as a bool, as in the JSON and OTLP log exports
                return bool(x)
            return x.item()

        def values(ev, t):
            return {f: value(ev[f], code) for f, code in fields_of[t]}

        for i in wanted.tolist():
            ev = events[i]
            t = int(types[i])
            if t >= len(names):
                continue
            ring = int(ev["thread"])
            phase = int(flags[i]) & 3
            stack = self.stacks.setdefault(ring, [])
            if not span_rows[i]:
                if stack:
                    target = stack[-1]
                    if len(target.events) < self.max_events:
                        target.events.append((names[t], int(ev["timestamp"]), values(ev, t)))
                    else:
                        self.events_dropped += 1
                continue
            depth = int(flags[i]) >> 2
            if phase == FLAG_BEGIN:
                while len(stack) > depth:            # their ends were lost
                    lost = stack.pop()
                    self.roots.pop(lost.span_id, None)
                    self.unclosed += 1
                span_id, parent = int(ev["span_id"]), int(ev["parent_span_id"])
                root = self.roots.get(parent, parent) if parent else span_id
                self.roots[span_id] = root
                stack.append(OpenSpan(span_id, parent, root, names[t], ring, depth,
                                      int(ev["timestamp"]), values(ev, t)))
            elif phase == FLAG_END:
                span_id = int(ev["span_id"])
                at = next((k for k in range(len(stack) - 1, -1, -1)
                           if stack[k].span_id == span_id), None)
                if at is None:
                    self.orphan_ends += 1
                    continue
                while len(stack) > at + 1:
                    lost = stack.pop()
                    self.roots.pop(lost.span_id, None)
                    self.unclosed += 1
                s = stack.pop()
                self.roots.pop(span_id, None)
                closed.append(Span(s.span_id, s.parent_id, s.root_id, s.name, s.ring, s.depth,
                                   s.start_ns, int(ev["timestamp"]), s.fields, s.events))
        return closed
