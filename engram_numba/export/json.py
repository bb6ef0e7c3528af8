"""Events as JSON: JSON Lines and a batch document, with a JSON Schema per event set.

One event per line::

    {"timestamp":1795731552667751424,"event_type":"priming","thread":20397,"ring":1,
     "sequence":5,"priming_type":"semantic","strength":0.7,"source_node":3,"target_node":9}

``timestamp`` is unix nanoseconds, ``event_type`` the declared type's name,
``thread`` the OS id of the recording thread, ``ring`` its ring, ``sequence``
the event's position in that ring, then ``trace_id`` for an event inside a
trace and ``span_id`` for an instant event inside a span,
and the type's fields follow by name in declaration order (enum fields as
lowercase member names, ``unknown`` for a value that is not a member; bools as
``true``/``false``; NaN and infinities as ``null``).  A span's events add
``"span":"begin"`` (with ``span_id``, ``parent_span_id``, ``depth`` and the
span's fields) or ``"span":"end"`` (with ``span_id`` and ``depth``).
``trace_id`` is the trace's 128-bit OpenTelemetry id as 32 hex digits, the one
the OTLP span exporter sends: for a trace joined with ``tracer.parent(ctx)``,
``ctx``'s trace id (and the root span's ``parent_span_id`` is ``ctx``'s span id),
else the tracer's id followed by the root span's id.  Pass ``tracer=`` (the
collector's exporter gets it from ``bind``); without it the tracer's id reads
as zeros and explicit parents are not resolved.
The batch document is ``{"events": [...], "exported_at": <unix s>, "count": n}``.
:func:`schema` gives the JSON Schema of a set's lines or documents.

Encoding is a compiled loop over the raw 64-byte events driven by the set's
field tables (see :mod:`._tables` and, for the number formatting,
:mod:`._jsontext`).
"""

from __future__ import annotations

import heapq
import json
import time

import numpy as np
from numba import njit

from ..tracing.kinds import SPAN as SPAN_KIND
from ..tracing.schema import EventSet, Layout, as_events
from ._jsontext import put_piece, write_f32, write_hex64, write_i64, write_u64
from ._tables import (B, C_FLAGS, C_PARENT, C_RING, C_SEQ, C_SPAN, C_THREAD, C_TRACE, C_TS,
                      C_TYPE, F32, F64, I, U, PieceSpec, column, field_bits, pieces_for,
                      sign_extend, trace_ids)

__all__ = ["events_to_jsonl", "events_to_document", "event_records", "schema",
           "JsonLinesExporter", "merged_jsonl"]

_MAX_FIXED = 160                   # bytes of one line besides its fields
_MAX_FIELD = 48                    # bytes of one field besides its key (and float64 text)

TS, SEQ, BEGIN, END, PARENT, DEPTH, UNKNOWN, TRUE, FALSE, RING, TRACE, SPAN = range(12)
TYPE0 = 12


_PIECES = PieceSpec(
    fixed=lambda prefix: [b'{"timestamp":', b',"sequence":', b',"span":"begin","span_id":',
                          b',"span":"end","span_id":', b',"parent_span_id":', b',"depth":',
                          b',"event_type":"unknown","thread":', b"true", b"false", b',"ring":',
                          b',"trace_id":"', b',"span_id":'],
    type_piece=lambda prefix, name: f',"event_type":"{name}","thread":'.encode(),
    key_piece=lambda prefix, name: f',"{name}":'.encode(),
    enum_piece=lambda prefix, field, member: f'"{member}"'.encode())
assert len(_PIECES.fixed("")) == TYPE0


@njit(cache=True)
def _encode(words, n, stride, common, buf, sep, flat, starts, lengths, n_types, is_span, fstart,
            fword, fshift, fwidth, fkind, enum_lo, enum_n, enum_first, f64_col, f64_flat,
            f64_start, f64_len, key0, enum0, tracer_id, ext_keys, ext_high, ext_low):
    pos = 0
    for e in range(n):
        if e:
            buf[pos] = sep
            pos += 1
        b = e * stride
        t = np.int64(column(words, b, common, C_TYPE, 8))
        flags = np.int64(column(words, b, common, C_FLAGS, 8))
        pos = put_piece(buf, pos, flat, starts, lengths, TS)
        pos = write_u64(buf, pos, column(words, b, common, C_TS, 64))
        pos = put_piece(buf, pos, flat, starts, lengths, TYPE0 + t if t < n_types else UNKNOWN)
        pos = write_u64(buf, pos, column(words, b, common, C_THREAD, 64))
        pos = put_piece(buf, pos, flat, starts, lengths, RING)
        pos = write_u64(buf, pos, column(words, b, common, C_RING, 16))
        pos = put_piece(buf, pos, flat, starts, lengths, SEQ)
        pos = write_u64(buf, pos, column(words, b, common, C_SEQ, 64))
        if t >= n_types:
            buf[pos] = 125
            pos += 1
            continue
        trace = column(words, b, common, C_TRACE, 64)
        if trace:
            high, low = np.uint64(tracer_id), trace
            k = np.searchsorted(ext_keys, trace)
            if k < ext_keys.size and ext_keys[k] == trace:
                high, low = ext_high[k], ext_low[k]
            pos = put_piece(buf, pos, flat, starts, lengths, TRACE)
            pos = write_hex64(buf, pos, high)
            pos = write_hex64(buf, pos, low)
            buf[pos] = 34  # '"'
            pos += 1
        if is_span[t]:
            phase = flags & 3
            pos = put_piece(buf, pos, flat, starts, lengths, BEGIN if phase == 1 else END)
            pos = write_u64(buf, pos, column(words, b, common, C_SPAN, 64))
            if phase == 1:
                pos = put_piece(buf, pos, flat, starts, lengths, PARENT)
                pos = write_u64(buf, pos, column(words, b, common, C_PARENT, 64))
            pos = put_piece(buf, pos, flat, starts, lengths, DEPTH)
            pos = write_u64(buf, pos, flags >> 2)
            if phase != 1:
                buf[pos] = 125
                pos += 1
                continue
        else:
            span = column(words, b, common, C_SPAN, 64)
            if span:
                pos = put_piece(buf, pos, flat, starts, lengths, SPAN)
                pos = write_u64(buf, pos, span)
        for f in range(fstart[t], fstart[t + 1]):
            pos = put_piece(buf, pos, flat, starts, lengths, key0 + f)
            width = fwidth[f]
            raw = field_bits(words[b + fword[f]], fshift[f], width)
            kind = fkind[f]
            if kind == U:
                pos = write_u64(buf, pos, raw)
            elif kind == I:
                pos = write_i64(buf, pos, sign_extend(raw, width))
            elif kind == F32:
                pos = write_f32(buf, pos, raw)
            elif kind == F64:
                c = f64_col[f]
                m = f64_len[e, c]
                buf[pos:pos + m] = f64_flat[f64_start[e, c]:f64_start[e, c] + m]
                pos += m
            elif kind == B:
                pos = put_piece(buf, pos, flat, starts, lengths, TRUE if raw else FALSE)
            else:
                v = sign_extend(raw, width) - enum_lo[f]
                k = enum_first[f] + (v if 0 <= v < enum_n[f] else enum_n[f])
                pos = put_piece(buf, pos, flat, starts, lengths, enum0 + k)
        buf[pos] = 125  # '}'
        pos += 1
    return pos


def _encode_events(events: np.ndarray, sep: bytes, tracer=None) -> bytes:
    events, layout = as_events(events)
    n = events.size
    if n == 0:
        return b""
    rows, pieces, key0, enum0 = pieces_for(layout, _PIECES)
    f64_flat, f64_start, f64_len = rows.f64_text(events)
    longest = int(f64_len.max()) if f64_len.size else 0
    per_event = _MAX_FIXED + int(np.diff(rows.starts).max(initial=0)) * (_MAX_FIELD + longest) \
        + int(pieces.lengths.max())
    buf = np.empty(n * per_event, dtype=np.uint8)
    ids = trace_ids(tracer)
    end = _encode(events.view(np.uint64), n, rows.stride, rows.common, buf, sep[0],
                  pieces.flat, pieces.starts, pieces.lengths, len(rows.type_names),
                  rows.is_span, rows.starts, rows.words, rows.shifts, rows.widths, rows.kinds,
                  rows.enum_lo, rows.enum_n, rows.enum_first, rows.f64_col, f64_flat,
                  f64_start, f64_len, key0, enum0, np.uint64(ids.tracer_id), ids.keys, ids.high,
                  ids.low)
    return buf[:end].tobytes()


def events_to_jsonl(events: np.ndarray, *, tracer=None) -> bytes:
    """One JSON object per line (a trailing newline after the last).  ``tracer``: the
    tracer that recorded the events, for their 128-bit trace ids (see the module)."""
    body = _encode_events(events, b"\n", tracer)
    return body + b"\n" if body else b""


def events_to_document(events: np.ndarray, exported_at: float | None = None, *,
                       tracer=None) -> bytes:
    """``{"events": [...], "exported_at": <unix s>, "count": n}``."""
    exported_at = time.time() if exported_at is None else exported_at
    body = _encode_events(events, b",", tracer)
    return (b'{"events":[' + body + b'],"exported_at":' + repr(float(exported_at)).encode()
            + b',"count":' + str(len(events)).encode() + b"}")


def event_records(events: np.ndarray, *, tracer=None) -> list:
    """The events as Python dicts, exactly as exported (for other exporters and tests)."""
    text = _encode_events(events, b",", tracer)
    return json.loads(b"[" + text + b"]") if text else []


def _layout_of(source) -> Layout:
    if isinstance(source, Layout):
        return source
    if isinstance(source, type) and issubclass(source, EventSet) and source.layout is not None:
        return source.layout
    layout = getattr(source, "layout", None)
    if isinstance(layout, Layout):
        return layout
    raise TypeError(f"schema() takes an EventSet class, a tracer or a layout, got {source!r}")


def schema(source, kind: str = "event") -> dict:
    """The JSON Schema of one event line (``"event"``) or of a batch document
    (``"document"``) of an event set (its class, a tracer of it, or its layout)."""
    if kind not in ("event", "document"):
        raise ValueError(f"kind must be 'event' or 'document', got {kind!r}")
    layout = _layout_of(source)
    u64 = {"type": "integer", "minimum": 0, "maximum": 2 ** 64 - 1}
    variants = []
    for t in layout.types:
        props = {"event_type": {"const": t.name}}
        required = ["event_type"]
        for name, ft in t.fields.items():
            props[name] = ft.json_schema()
        if t.kind is SPAN_KIND:
            props.update({"span": {"enum": ["begin", "end"]}, "span_id": u64,
                          "parent_span_id": u64, "depth": {"type": "integer", "minimum": 0}})
            variants.append({"properties": props, "required": required + ["span", "span_id"],
                             "if": {"properties": {"span": {"const": "begin"}}},
                             "then": {"required": list(t.fields) + ["parent_span_id", "depth"]},
                             "else": {"maxProperties": 9}})
        else:
            variants.append({"properties": props, "required": required + list(t.fields),
                             "additionalProperties": True})
    event = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"engram-numba event of set {layout.name}",
        "type": "object",
        "required": ["timestamp", "event_type", "thread", "ring", "sequence"],
        "properties": {
            "timestamp": {"type": "integer", "minimum": 0, "description": "unix time in ns"},
            "event_type": {"enum": [t.name for t in layout.types]},
            "thread": {"type": "integer", "minimum": 0, "maximum": 2 ** 64 - 1,
                       "description": "OS id of the recording thread (0: unknown)"},
            "ring": {"type": "integer", "minimum": 0, "maximum": 65535,
                     "description": "ring of the recording thread"},
            "sequence": {"type": "integer", "minimum": 0,
                         "description": "position of the event in its ring"},
            "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$",
                         "description": "the 128-bit id of the event's trace, as in OTLP"},
            "span_id": {**u64, "description": "a span's id, or for an instant event the "
                                              "innermost span it happened in"},
        },
        "oneOf": variants,
    }
    if kind == "event":
        return event
    return {"$schema": event["$schema"], "title": f"engram-numba event batch of set {layout.name}",
            "type": "object", "required": ["events", "exported_at", "count"],
            "properties": {"events": {"type": "array", "items": event},
                           "exported_at": {"type": "number"},
                           "count": {"type": "integer", "minimum": 0}},
            "additionalProperties": False}


class JsonLinesExporter:
    """A collector exporter appending each batch to a JSON Lines file."""

    name = "jsonl"

    def __init__(self, path, *, tracer=None):
        self.path = path
        self.tracer = tracer
        self._file = open(path, "ab")

    def bind(self, tracer) -> None:
        """Compile the encoder now (a TraceCollector calls this before it starts), so that
        the first export does not hold up the collector's draining; the tracer's id and
        explicit parents give the trace ids."""
        if self.tracer is None:
            self.tracer = tracer
        layout = getattr(tracer, "layout", None)
        if layout is not None:
            events_to_jsonl(np.zeros(1, dtype=layout.dtype))

    def export(self, events: np.ndarray) -> None:
        self._file.write(events_to_jsonl(events, tracer=self.tracer))
        self._file.flush()

    def shutdown(self) -> None:
        self._file.close()


def merged_jsonl(parts) -> bytes:
    """JSON Lines of a trace directory's events, merged in time order (``parts``:
    ``[(process, events)]``, as :meth:`~..tracing.directory.TraceDirectory.read` gives
    them); each line starts with the process: ``{"pid":..,"process_start":..,"timestamp":..``."""
    def stream(p, events):
        prefix = f'{{"pid":{p.pid},"process_start":{p.start},'.encode()
        lines = events_to_jsonl(events, tracer=p.tracer).splitlines()
        for i, (t, line) in enumerate(zip(events["timestamp"].tolist(), lines)):
            yield t, p.pid, p.n, i, prefix + line[1:]

    streams = [stream(p, events) for p, events in parts if events.size]
    return b"".join(item[-1] + b"\n" for item in heapq.merge(*streams))
