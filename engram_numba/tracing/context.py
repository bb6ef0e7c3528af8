"""Trace contexts: the parent that ``with tracer.parent(ctx):`` gives root spans.

A :class:`TraceContext` is a W3C / OpenTelemetry span context: a 128-bit trace
id, a 64-bit span id (both non-zero) and the trace flags.  :func:`resolve`
makes one from what a caller has at hand:

- nothing: the current OpenTelemetry span (``opentelemetry-api``; without it
  installed, a clear error says that this form needs it);
- an ``opentelemetry.trace.SpanContext`` (or anything with integer ``trace_id``
  and ``span_id`` attributes);
- a W3C ``traceparent`` header string, ``"00-<32 hex>-<16 hex>-<2 hex>"``;
- a :class:`TraceContext` (what ``tracer.context()`` returns).

Malformed headers and zero ids raise ``ValueError`` before anything is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TraceContext", "resolve", "CURRENT"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"
                          r"(-.*)?$")
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class TraceContext:
    """A span context: ``trace_id`` (128-bit int), ``span_id`` (64-bit int), ``flags``."""

    trace_id: int
    span_id: int
    flags: int = 1

    def __post_init__(self):
        for name, bits in (("trace_id", 128), ("span_id", 64), ("flags", 8)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << bits:
                raise ValueError(f"{name}: must be an integer of {bits} bits, got {v!r}")
        if self.trace_id == 0 or self.span_id == 0:
            raise ValueError(f"a trace context needs non-zero ids, got trace_id="
                             f"{self.trace_id:032x} span_id={self.span_id:016x}")

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header of this context."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"

    @classmethod
    def from_traceparent(cls, header: str) -> "TraceContext":
        m = _TRACEPARENT.match(header.strip()) if isinstance(header, str) else None
        if m is None or m.group(1) == "ff" or (m.group(1) == "00" and m.group(5)):
            raise ValueError(f"not a W3C traceparent header (\"00-<32 hex>-<16 hex>-<2 hex>\", "
                             f"lower case): {header!r}"[:200])
        return cls(int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16))


class _Current:
    def __repr__(self):
        return "CURRENT"


#: ``tracer.parent()``'s default: the current OpenTelemetry span
CURRENT = _Current()


def _current_otel():
    try:
        from opentelemetry import trace
    except ImportError:
        raise RuntimeError("tracer.parent() without a context takes the current OpenTelemetry "
                           "span, which needs opentelemetry-api (pip install opentelemetry-api); "
                           "or pass a traceparent string or tracer.context()") from None
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        raise ValueError("tracer.parent(): no OpenTelemetry span is current (its context is "
                         "invalid); call it inside start_as_current_span(...) or pass a context")
    return TraceContext(sc.trace_id, sc.span_id, int(sc.trace_flags))


def resolve(ctx) -> TraceContext:
    """A :class:`TraceContext` from any accepted form (see the module docstring)."""
    if ctx is CURRENT:
        return _current_otel()
    if isinstance(ctx, TraceContext):
        return ctx
    if isinstance(ctx, str):
        return TraceContext.from_traceparent(ctx)
    trace_id, span_id = getattr(ctx, "trace_id", None), getattr(ctx, "span_id", None)
    if isinstance(trace_id, int) and isinstance(span_id, int):
        flags = int(getattr(ctx, "trace_flags", 1) or 0) & 0xFF
        return TraceContext(trace_id, span_id, flags)
    raise TypeError(f"a parent context is an opentelemetry SpanContext, a traceparent string "
                    f"or tracer.context(), got {type(ctx).__name__}")
