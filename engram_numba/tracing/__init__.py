"""Cognitive event tracing: 64-byte events in per-thread overwrite rings."""

from .collector import ExportError, PermanentExportError, TraceCollector
from .config import TracingConfig
from .events import EVENT_DTYPE, EVENT_FIELDS, EventType
from .tracer import CognitiveTracer

__all__ = ["CognitiveTracer", "TracingConfig", "EventType", "EVENT_DTYPE", "EVENT_FIELDS",
           "TraceCollector", "ExportError", "PermanentExportError"]
