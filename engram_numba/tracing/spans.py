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
from numba import njit

from ._ring import MAX_DEPTH
from .schema import FLAG_BEGIN, FLAG_END, as_events

__all__ = ["SpanAssembler", "ClosedSpan", "OpenSpan", "SpanContext"]


@njit(cache=True)
def _annotate(rings, sequences, flags, types, span_ids, parents, is_span, stack_ids, stack_roots,
              depths, inherited, last, ctx_rings, ctx_sequences, ctx_spans, out_span, out_trace):
    """Each event's span context, from the begins, ends and context records before it on
    its ring.

    Events come ring by ring in the order they were written, and so do the context
    records (``ctx_*``).  A begin pushes (id, root) at its depth; an end pops back to
    its depth; an instant event gets the innermost open span's id and its root (the
    trace), or with no span open, the span of the ring's last context record (a
    parallel region's launcher span, whose trace key is that span).  ``last`` is each
    ring's last position seen (-1: none).  After a gap (records lost: overwritten or
    torn), what the lost records did is unknown (a lost end leaves its span looking
    open), so the ring's stack and context span are forgotten: until the ring's next
    begin (which brings its parent) or context record, its instant events are in no
    span, rather than in a wrong one.
    """
    m = 0
    n_ctx = ctx_rings.size
    for i in range(rings.size):
        r = rings[i]
        while m < n_ctx and (ctx_rings[m] < r or ctx_rings[m] == r
                             and ctx_sequences[m] < sequences[i]):
            c = ctx_rings[m]
            if last[c] >= 0 and np.int64(ctx_sequences[m]) != last[c] + 1:
                _forget(c, stack_ids, stack_roots, depths, inherited)
            inherited[c] = ctx_spans[m]
            last[c] = np.int64(ctx_sequences[m])
            m += 1
        if last[r] >= 0 and np.int64(sequences[i]) != last[r] + 1:
            _forget(r, stack_ids, stack_roots, depths, inherited)   # records were lost
        last[r] = np.int64(sequences[i])
        t = types[i]
        depth = np.int64(flags[i] >> 2)
        if is_span[t]:
            phase = flags[i] & 3
            if phase == 1:
                parent = parents[i]
                root = span_ids[i]
                if parent != 0:
                    root = parent             # its begin was not seen: the parent stands in
                    if 0 < depth <= depths[r] and depth - 1 < stack_ids.shape[1] \
                            and stack_ids[r, depth - 1] == parent:
                        root = stack_roots[r, depth - 1]
                if 0 < depth <= stack_ids.shape[1] and stack_ids[r, depth - 1] == 0:
                    stack_ids[r, depth - 1] = parent      # (forgotten: known again)
                    stack_roots[r, depth - 1] = root
                if depth < stack_ids.shape[1]:
                    stack_ids[r, depth] = span_ids[i]
                    stack_roots[r, depth] = root
                depths[r] = depth + 1
                out_trace[i] = root
            elif phase == 2:
                if depth < depths[r] and depth < stack_ids.shape[1] \
                        and stack_ids[r, depth] == span_ids[i]:
                    out_trace[i] = stack_roots[r, depth]
                depths[r] = min(depths[r], depth)
        else:
            d = min(depths[r], stack_ids.shape[1])
            if d > 0:
                out_span[i] = stack_ids[r, d - 1]        # (0: forgotten, in no span)
                out_trace[i] = stack_roots[r, d - 1]
            elif inherited[r] != 0:
                out_span[i] = inherited[r]
                out_trace[i] = inherited[r]
    while m < n_ctx:
        c = ctx_rings[m]
        inherited[c] = ctx_spans[m]
        last[c] = np.int64(ctx_sequences[m])
        m += 1


@njit(cache=True)
def _forget(r, stack_ids, stack_roots, depths, inherited):
    """Ring ``r``'s open spans and context span are no longer known."""
    stack_ids[r, :] = 0
    stack_roots[r, :] = 0
    depths[r] = 0
    inherited[r] = 0


_NO_CONTEXTS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64),
                np.zeros(0, dtype=np.uint64))


class SpanContext:
    """The spans open on every ring, and the span each ring's instant events with no span
    open belong to (context records, see ._prange), carried from one batch of a stream to
    the next, to give each event the ``span_id`` of the span it happened in and its
    ``trace_id``."""

    def __init__(self, n_rings: int):
        self.ids = np.zeros((max(n_rings, 1), MAX_DEPTH), dtype=np.uint64)
        self.roots = np.zeros((max(n_rings, 1), MAX_DEPTH), dtype=np.uint64)
        self.depths = np.zeros(max(n_rings, 1), dtype=np.int64)
        self.inherited = np.zeros(max(n_rings, 1), dtype=np.uint64)
        self.last = np.full(max(n_rings, 1), -1, dtype=np.int64)   # last position seen

    def annotate(self, records: np.ndarray, layout, contexts: np.ndarray | None = None) -> None:
        """Fill ``span_id`` (instant events) and ``trace_id`` (all) of ``records``, whose
        rows must be in the order they were written on each ring; ``contexts``: the
        batch's context records (raw slots, in the same order), applied in between."""
        ctx = _NO_CONTEXTS
        if contexts is not None and contexts.size:
            ctx = (contexts["ring"].astype(np.int64), contexts["sequence"].astype(np.uint64),
                   contexts["span_id"].astype(np.uint64))
            if int(ctx[0].max()) >= self.depths.size:
                ctx = _NO_CONTEXTS                # not this context's rings
        if not layout.has_spans or not (records.size or ctx[0].size):
            return
        rings = records["ring"].astype(np.int64)
        if rings.size and int(rings.max()) >= self.depths.size:
            return                            # not this context's rings
        span = records["span_id"].copy()
        trace = records["trace_id"].copy()
        _annotate(rings, records["sequence"].astype(np.uint64), records["flags"],
                  records["event_type"], records["span_id"], records["parent_span_id"],
                  layout.is_span, self.ids, self.roots, self.depths, self.inherited, self.last,
                  *ctx,
                  span, trace)
        records["span_id"] = span
        records["trace_id"] = trace


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
    thread: int = 0


@dataclass
class ClosedSpan:
    """A closed span: ids, name, ring, depth, start/end (unix ns), fields, events, and the OS
    thread id of the thread that recorded it."""

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
    thread: int = 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


class SpanAssembler:
    """Pairs span begins and ends across batches: spans from a stream of drained events.

    A span is a begin and an end on one ring; the assembler keeps, per ring, the
    stack of spans still open, so a begin drained in one batch meets its end in a
    later one, in memory bounded by rings times stack depth.

    ``feed(events)`` returns the spans closed by these events.  With
    ``attach_events=True`` every instant event is attached (as ``(name,
    unix ns, fields)``) to the span it happened in: the open span of its
    ``span_id`` (on a parallel region's worker, the launcher's span), else the
    innermost span open on its ring, at most
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
        self.by_id = {}              # span id -> OpenSpan, for open spans
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
        span_rows = layout.is_span[types]
        has_ids = "span_id" in events.dtype.names
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
            ring = int(ev["ring"])
            phase = int(flags[i]) & 3
            stack = self.stacks.setdefault(ring, [])
            if not span_rows[i]:
                sid = int(ev["span_id"]) if has_ids else 0
                target = self.by_id.get(sid) if sid else None
                if target is None and stack:
                    target = stack[-1]
                if target is not None:
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
                    self.by_id.pop(lost.span_id, None)
                    self.unclosed += 1
                span_id, parent = int(ev["span_id"]), int(ev["parent_span_id"])
                root = self.roots.get(parent, parent) if parent else span_id
                self.roots[span_id] = root
                stack.append(OpenSpan(span_id, parent, root, names[t], ring, depth,
                                      int(ev["timestamp"]), values(ev, t),
                                      thread=int(ev["thread"])))
                self.by_id[span_id] = stack[-1]
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
                    self.by_id.pop(lost.span_id, None)
                    self.unclosed += 1
                s = stack.pop()
                self.roots.pop(span_id, None)
                self.by_id.pop(span_id, None)
                closed.append(ClosedSpan(s.span_id, s.parent_id, s.root_id, s.name, s.ring, s.depth,
                                   s.start_ns, int(ev["timestamp"]), s.fields, s.events,
                                   s.thread))
        return closed
