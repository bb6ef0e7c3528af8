"""engram's observability schema, built on the generic library.

* :mod:`.enums` - the enums its metrics and events share;
* :mod:`.events` - :class:`CognitiveEvents` and :class:`CognitiveTracer`, its
  traced cognitive events (task 011);
* :mod:`.health` - the collector hook keeping the tracing-health metrics;
* :mod:`.metrics` - :class:`CognitivePatternMetrics`, engram's cognitive-pattern
  metric set (milestone 13, task 001), and its enums; its ``collector_hook()``
  is :class:`CognitiveHealth`;
* :mod:`.workload` and :mod:`.demo` - the reference numba workload and
  ``engram-numba demo``.

The generic layers (``metrics``, ``tracing``, ``export``) import nothing from
here, and inside it imports point one way: enums <- events <- health <- metrics.
"""

from .events import EVENT_DTYPE, EVENT_FIELDS, CognitiveEvents, CognitiveTracer, EventType
from .health import CognitiveHealth
from .metrics import CognitivePatternMetrics, InterferenceType, PrimingType, RejectionReason

__all__ = ["CognitivePatternMetrics", "PrimingType", "InterferenceType", "RejectionReason",
           "CognitiveEvents", "CognitiveTracer", "EventType", "EVENT_DTYPE", "EVENT_FIELDS",
           "CognitiveHealth"]
