"""Per-set tables that drive the compiled encoders (JSON, OTLP logs).

An event set's layout becomes flat arrays the compiled loops index by event
type: for every type, the range of its field rows; for every field row, where
its bits are in a drained record (word, shift, width), how to render it
(kind), and the constant pieces (keys, enum member names) the encoders copy.
The loops read the records as 64-bit words, ``stride`` words per event; the
columns every event has are at the words and shifts of :attr:`FieldRows.common`.
Built once per layout and cached; nothing here is written per event type.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np

from numba import njit

from ..tracing.schema import Layout
from ._jsontext import Pieces

KIND = {"u": 0, "i": 1, "f": 2, "d": 3, "b": 4, "e": 5}
U, I, F32, F64, B, E = range(6)
#: the columns of every drained event, as the encoders index FieldRows.common
COMMON = ("timestamp", "sequence", "thread", "span_id", "parent_span_id", "trace_id", "ring",
          "event_type", "flags")
C_TS, C_SEQ, C_THREAD, C_SPAN, C_PARENT, C_TRACE, C_RING, C_TYPE, C_FLAGS = range(9)


@njit(cache=True)
def column(words, b, common, c, bits):
    """Column ``c`` (see COMMON) of the event whose first word is ``b``: ``bits`` wide."""
    return field_bits(words[b + common[c, 0]], np.uint64(common[c, 1]), bits)


@njit(cache=True)
def field_bits(word, shift, width):
    """The ``width`` bits of a field at ``shift`` in a 64-bit word."""
    raw = word >> shift
    if width < 64:
        return raw & ((np.uint64(1) << np.uint64(width)) - np.uint64(1))
    return raw


@njit(cache=True)
def sign_extend(raw, width):
    """The ``width``-bit two's complement value in the low bits of ``raw``, as an int64."""
    if width >= 64:
        return np.int64(raw)
    top = np.uint64(1) << np.uint64(width - 1)
    if raw & top:
        return np.int64(raw | ~((top << np.uint64(1)) - np.uint64(1)))
    return np.int64(raw)


@njit(cache=True)
def bits_f64(bits):
    return np.uint64(bits).view(np.float64)


class FieldRows:
    """Field rows of every type, in declaration order: per row, where its bits are in a
    record (word, shift, width) and how to render it; per type, the range of its rows."""

    def __init__(self, layout: Layout):
        self.layout = layout
        starts, names, words, shifts, widths, kinds, enum_lo, enum_n, enum_first = \
            [0], [], [], [], [], [], [], [], []
        self.enum_names = []            # flat list of member names (plus "unknown" per field)
        self.enum_fields = []           # the field of each of them
        self.f64_names = []             # distinct names of float64 fields (text made in Python)
        f64_col = []
        for t in layout.types:
            for name, ft in t.fields.items():
                offset = layout.record_offset(name)
                names.append(name)
                words.append(offset // 8)
                shifts.append((offset % 8) * 8)
                widths.append(ft.size * 8)
                kinds.append(KIND[ft.code])
                if ft.code == "e":
                    lo, hi = min(ft.values), max(ft.values)
                    enum_lo.append(lo)
                    enum_n.append(hi - lo + 1)
                    enum_first.append(len(self.enum_names))
                    for v in range(lo, hi + 1):
                        self.enum_names.append(ft.names.get(v, "unknown"))
                    self.enum_names.append("unknown")
                    self.enum_fields += [name] * (hi - lo + 2)
                else:
                    enum_lo.append(0), enum_n.append(0), enum_first.append(0)
                if ft.code == "d":
                    if name not in self.f64_names:
                        self.f64_names.append(name)
                    f64_col.append(self.f64_names.index(name))
                else:
                    f64_col.append(-1)
            starts.append(len(names))
        self.names = names
        self.type_names = [t.name for t in layout.types]
        self.is_span = layout.is_span
        self.starts = np.array(starts, dtype=np.int64)
        self.words = np.array(words, dtype=np.int64)
        self.shifts = np.array(shifts, dtype=np.uint64)
        self.widths = np.array(widths, dtype=np.int64)
        self.kinds = np.array(kinds, dtype=np.int64)
        self.enum_lo = np.array(enum_lo, dtype=np.int64)
        self.enum_n = np.array(enum_n, dtype=np.int64)
        self.enum_first = np.array(enum_first, dtype=np.int64)
        self.f64_col = np.array(f64_col, dtype=np.int64)
        self.stride = layout.dtype.itemsize // 8

        def at(name):
            offset = layout.record_offset(name)
            return offset // 8, (offset % 8) * 8
        #: (word, shift) of the columns every event has, in this order
        self.common = np.array([at(n) for n in COMMON], dtype=np.int64)

    def f64_text(self, events: np.ndarray):
        """(flat bytes, starts, lengths) of every float64 field value, as Python's repr.

        Shape (events, float64 columns); NaN and infinities are ``null``.  Python
        formats them because a shortest round-trip float64 needs exact
        arithmetic a compiled loop here does not have; float32 values are
        formatted in the compiled loop (see ._jsontext).
        """
        n, cols = events.size, len(self.f64_names)
        starts = np.zeros((n, max(cols, 1)), dtype=np.int64)
        lengths = np.zeros((n, max(cols, 1)), dtype=np.int64)
        if not cols or not n:
            return np.zeros(1, dtype=np.uint8), starts, lengths
        parts, pos = [], 0
        for c, name in enumerate(self.f64_names):
            values = events[name].tolist()
            for i, v in enumerate(values):
                text = repr(v).encode() if v == v and v not in (float("inf"), float("-inf")) \
                    else b"null"
                starts[i, c], lengths[i, c] = pos, len(text)
                parts.append(text)
                pos += len(text)
        return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), starts, lengths


@lru_cache(maxsize=64)
def rows_for(layout: Layout) -> FieldRows:
    return FieldRows(layout)


class PieceSpec(NamedTuple):
    """The constant pieces an encoder copies, as functions of the set's name (``prefix``):
    ``fixed(prefix)`` the pieces its loop numbers itself, then one ``type_piece`` per
    event type, one ``key_piece`` per field row and one ``enum_piece`` per enum member
    name of :class:`FieldRows` (``"unknown"`` included)."""

    fixed: Callable
    type_piece: Callable
    key_piece: Callable
    enum_piece: Callable


@lru_cache(maxsize=128)
def pieces_for(layout: Layout, spec: PieceSpec) -> tuple:
    """``(rows, pieces, key0, enum0)`` of a layout for an encoder: its field rows, its
    constant pieces in one table (fixed ones first, then types, keys, enum members), and
    the numbers of the first key and the first enum piece."""
    rows = rows_for(layout)
    prefix = layout.name
    fixed = list(spec.fixed(prefix))
    types = [spec.type_piece(prefix, n) for n in rows.type_names]
    keys = [spec.key_piece(prefix, n) for n in rows.names]
    enums = [spec.enum_piece(prefix, f, n) for f, n in zip(rows.enum_fields, rows.enum_names)]
    pieces = Pieces(fixed + types + keys + (enums or [b""]))
    type0 = len(fixed)
    return rows, pieces, type0 + len(types), type0 + len(types) + len(keys)


class TraceIds(NamedTuple):
    """How an event's trace key (its ``trace_id`` column: the root span's id, or the
    explicit parent's span id for a trace joined with ``tracer.parent(ctx)``) becomes
    the 128-bit trace id: the explicit parents' trace ids (``keys`` sorted, with the
    ids' high and low words), else ``tracer_id`` followed by the key, as the OTLP span
    exporter sends them."""

    tracer_id: int
    keys: np.ndarray
    high: np.ndarray
    low: np.ndarray

    def of(self, key: int) -> int:
        """The 128-bit trace id of ``key`` (0 for key 0: no trace)."""
        key = int(key)
        if key == 0:
            return 0
        k = int(np.searchsorted(self.keys, np.uint64(key)))
        if k < self.keys.size and int(self.keys[k]) == key:
            return int(self.high[k]) << 64 | int(self.low[k])
        return self.tracer_id << 64 | key

    def hex(self, key: int) -> str | None:
        """The trace id of ``key`` as 32 lowercase hex digits (None for key 0)."""
        return f"{self.of(key):032x}" if int(key) else None


def trace_ids(tracer=None) -> TraceIds:
    """The :class:`TraceIds` of ``tracer`` (its id and its explicit parents' traces, read
    now); without a tracer, a tracer id of 0 and no explicit parents."""
    traces = tracer.external_traces() if tracer is not None else {}
    keys = np.array(sorted(traces), dtype=np.uint64)
    return TraceIds(int(tracer.tracer_id) if tracer is not None else 0, keys,
                    np.array([traces[int(k)] >> 64 for k in keys.tolist()], dtype=np.uint64),
                    np.array([traces[int(k)] & (1 << 64) - 1 for k in keys.tolist()],
                             dtype=np.uint64))
