"""Trace event kinds: objects, not strings.

A declaration (:class:`~.schema.Event`, :class:`~.schema.Span`) carries one of
:data:`EVENT` or :data:`SPAN` as ``kind``, and code branches with
``t.kind is SPAN`` (as metric kinds, :mod:`engram_numba.metrics.kinds`).
``name`` is the word stored in a set's layout description and shown to people
(``str(kind)`` and ``format(kind)`` give it); comparing a kind with a string raises
``TypeError`` rather than quietly answering ``False``.
"""

from __future__ import annotations

from .._values import NamedKind

__all__ = ["TraceKind", "EVENT", "SPAN", "trace_kind_named"]


class TraceKind(NamedKind):
    """The kind of an event type of a trace set."""

    what = "trace event kind"
    home = "engram_numba.tracing.kinds"
    _by_name: dict = {}

    def __init__(self, name: str):
        super().__init__(name)
        TraceKind._by_name[name] = self

    def __format__(self, spec: str) -> str:   # messages and listings show the word
        return format(self.name, spec)

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):                     # pickles (numba's cache) keep the identity
        return trace_kind_named, (self.name,)


EVENT = TraceKind("event")
SPAN = TraceKind("span")


def trace_kind_named(name: str) -> TraceKind:
    """The kind called ``name`` (as stored in layout descriptions)."""
    try:
        return TraceKind._by_name[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown event kind {name!r}") from None
