"""Event tracing for any numba workload: declared event sets, per-thread rings, spans."""

from ..errors import ExportError, PermanentExportError
from .collector import DROP_REASONS, TraceCollector
from .config import TracingConfig
from .context import TraceContext
from .schema import Event, EventSet, Span, as_events, concat, schema_of
from .tracer import Tracer

__all__ = ["EventSet", "Event", "Span", "Tracer", "TracingConfig", "TraceContext",
           "TraceCollector", "ExportError", "PermanentExportError", "DROP_REASONS", "as_events",
           "concat", "schema_of"]
