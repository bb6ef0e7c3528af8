"""Events as pandas DataFrames: one tidy frame per event type, and one for spans.

``to_dataframe(events)`` returns ``{type name: DataFrame}`` for every declared
type present, each with only that type's columns: ``timestamp``
(``datetime64[ns, UTC]``), ``thread`` (the OS thread id, uint64), ``ring``,
``sequence``, ``span_id`` of the span the event happened in (0: none),
``trace_id`` of its trace (None: none) and the type's fields (IntEnums as
categoricals of their member names, bools as bool).  Spans come as one frame per span type with ``span_id``,
``parent_span_id``, ``trace_id``, ``start``, ``end``, ``duration``
(``timedelta64[ns]``), ``depth``, ``thread``, ``ring`` and the span's fields;
spans still open at the end of the events have ``end`` and ``duration``
missing.  ``thread``, ``ring`` and the ids have one dtype in every frame, so
``events.merge(spans, on="span_id")`` joins events to their spans.
``trace_id`` is the trace's 128-bit OpenTelemetry id as 32 hex digits (strings),
the one the OTLP span exporter sends: for a trace joined with
``tracer.parent(ctx)``, ``ctx``'s trace id, with ``ctx``'s span id as the root
span's ``parent_span_id``; else the tracer's id followed by the root span's id.
Pass ``tracer=`` for them; without it the tracer's id reads as zeros and explicit
parents are not resolved.
``to_dataframe(events, "iteration")`` returns one frame.  The events can be
drained, or loaded with ``np.load``.

Needs ``pip install 'engram-numba[pandas]'``.
"""

from __future__ import annotations

import numpy as np

from ..tracing.kinds import SPAN
from ..tracing.schema import as_events
from ..tracing.spans import SpanAssembler
from ._tables import trace_ids

__all__ = ["to_dataframe"]


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_dataframe needs pandas: pip install 'engram-numba[pandas]'") \
            from exc
    return pd


def _column(pd, ft, values):
    if ft.code == "e":
        names = [ft.names[v] for v in ft.values]
        codes = np.searchsorted(ft.values, values.astype(np.int64))
        codes = np.where((codes < len(ft.values)) &
                         (np.asarray(ft.values)[np.minimum(codes, len(ft.values) - 1)]
                          == values.astype(np.int64)), codes, -1)
        return pd.Categorical.from_codes(codes, categories=names)
    if ft.code == "b":
        return values.astype(bool)
    return values


def _times(pd, ns):
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)


def _hex_ids(ids, keys) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint64)
    unique, back = np.unique(keys, return_inverse=True)
    return np.array([ids.hex(k) for k in unique.tolist()], dtype=object)[back.reshape(-1)] \
        if keys.size else np.array([], dtype=object)


def to_dataframe(events, type: str | None = None, *, tracer=None):
    """``{type name: DataFrame}`` of drained (or ``np.load``-ed) events, or the one frame of
    ``type``: a frame per event type with its own columns, a frame per span type (the
    columns are listed in this module's docstring).  A metric set or snapshot gives its
    tidy frame instead (``MetricSet.to_dataframe()``)."""
    if not isinstance(events, np.ndarray) and callable(getattr(events, "to_dataframe", None)):
        if type is not None:
            raise TypeError("to_dataframe(metric_set) takes no event type")
        return events.to_dataframe()
    pd = _pandas()
    events, layout = as_events(events)
    frames = {}
    wanted = layout.types if type is None else [layout.type_of(type)]
    spans = SpanAssembler()
    ids = trace_ids(tracer)
    closed = spans.feed(events) if layout.has_spans else []
    for t in wanted:
        rows = events[events["event_type"] == t.index]
        if t.kind is SPAN:
            mine = [s for s in closed if s.name == t.name]
            still = [s for s in spans.open_spans() if s.name == t.name]
            every = mine + still
            data = {"span_id": np.array([s.span_id for s in every], dtype=np.uint64),
                    "parent_span_id": np.array([s.parent_id for s in every], dtype=np.uint64),
                    "trace_id": _hex_ids(ids, [s.root_id for s in every]),
                    "start": _times(pd, [s.start_ns for s in every]),
                    "end": _times(pd, [s.end_ns for s in mine] + [np.iinfo(np.int64).min] * len(
                        still)),
                    "depth": np.array([s.depth for s in every], dtype=np.int64),
                    "thread": np.array([s.thread for s in every], dtype=np.uint64),
                    "ring": np.array([s.ring for s in every], dtype=np.uint16)}
            frame = pd.DataFrame(data)
            frame["duration"] = frame["end"] - frame["start"]
            for name, ft in t.fields.items():
                values = np.array([s.fields[name] for s in mine + still], dtype=ft.dtype)
                frame[name] = _column(pd, ft, values)
            frame = frame.sort_values("start", kind="stable").reset_index(drop=True)
        else:
            frame = pd.DataFrame({"timestamp": _times(pd, rows["timestamp"]),
                                  "thread": rows["thread"], "ring": rows["ring"],
                                  "sequence": rows["sequence"], "span_id": rows["span_id"],
                                  "trace_id": _hex_ids(ids, rows["trace_id"])})
            for name, ft in t.fields.items():
                frame[name] = _column(pd, ft, rows[name])
        if type is not None:
            return frame
        if len(frame):
            frames[t.name] = frame
    return frames
