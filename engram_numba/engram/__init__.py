"""engram's observability schema, built on the generic library.

* :mod:`.metrics` - :class:`CognitivePatternMetrics`, engram's cognitive-pattern
  metric set (milestone 13, task 001), and its enums;
* :mod:`.events` - :class:`CognitiveEvents` and :class:`CognitiveTracer`, its
  traced cognitive events (task 011);
* :mod:`.health` - the collector hook keeping the tracing-health metrics;
* :mod:`.workload` and :mod:`.demo` - the reference numba workload and
  ``engram-numba demo``.

The generic layers (``metrics``, ``tracing``, ``export``) import nothing from
here.
"""

from .events import EVENT_DTYPE, EVENT_FIELDS, CognitiveEvents, CognitiveTracer, EventType
from .health import CognitiveHealth
from .metrics import CognitivePatternMetrics, InterferenceType, PrimingType, RejectionReason

__all__ = ["CognitivePatternMetrics", "PrimingType", "InterferenceType", "RejectionReason",
           "CognitiveEvents", "CognitiveTracer", "EventType", "EVENT_DTYPE", "EVENT_FIELDS",
           "CognitiveHealth"]
