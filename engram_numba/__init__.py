"""engram-numba: lock-free metrics and bounded event tracing inside numba kernels.

Declare a :class:`MetricSet`, pass the object into any ``@njit`` kernel and
record with ``inc`` / ``add`` / ``set`` / ``observe`` at a few nanoseconds per
call, exactly, from any number of threads.  A ``.disabled()`` set compiles to no
code at all.  Read the values from Python as snapshots and export them
(Prometheus text format included).

An :class:`EventSet` declares traced events and spans once; a :class:`Tracer`
records them as 64-byte events into per-thread overwrite rings from the same
kernels, and a :class:`TraceCollector` drains them in the background and hands
batches to exporters.  engram's cognitive schema (:class:`CognitivePatternMetrics`,
:class:`CognitiveTracer`) is built on these, in :mod:`engram_numba.engram`.

The atomic primitives the library is built on are public too:
``atomic_add``, ``atomic_cas``, ``atomic_load``, ... usable on numpy arrays and
structured-array records inside kernels.
"""

from . import _cache  # noqa: F401  (installs the cache guard before anything compiles)
from ._atomics import (atomic_add, atomic_cas, atomic_exchange, atomic_fence, atomic_load,
                       atomic_max, atomic_min, atomic_store, atomic_sub)
from ._kernel_arg import register_device_module
from ._progress import progress
from .errors import ExportError, KernelTypingError, PermanentExportError, RegionError
from .metrics import (Counter, CounterSnapshot, ExplicitBuckets, ExponentialBuckets, Gauge,
                      GaugeSnapshot, Histogram, HistogramData, HistogramSnapshot, MetricSet,
                      MetricSetSnapshot, attach_metrics, kernel_method, relative_error_bound)
from .metrics.topk import TopK
from .tracing import Event, EventSet, Span, TraceCollector, Tracer, TracingConfig
from .export.frames import to_dataframe
from .engram import (EVENT_DTYPE, CognitiveEvents, CognitivePatternMetrics, CognitiveTracer,
                     EventType, InterferenceType, PrimingType, RejectionReason)

from ._version import __version__

# MySet.cuda(): the gpu package registers it when imported (extra [cuda]); imported on first use
register_device_module("cuda", __name__ + ".gpu")
register_device_module("cuda-tracer", __name__ + ".gpu")

__all__ = [
    "atomic_add", "atomic_sub", "atomic_max", "atomic_min", "atomic_exchange", "atomic_cas",
    "atomic_load", "atomic_store", "atomic_fence",
    "MetricSet", "Counter", "Gauge", "Histogram", "kernel_method", "attach_metrics",
    "MetricSetSnapshot", "CounterSnapshot", "GaugeSnapshot", "HistogramSnapshot", "HistogramData",
    "relative_error_bound", "ExponentialBuckets", "ExplicitBuckets", "RegionError",
    "KernelTypingError",
    "TopK", "EventSet", "Event", "Span", "Tracer", "TracingConfig", "TraceCollector",
    "ExportError", "PermanentExportError", "to_dataframe", "progress",
    "CognitivePatternMetrics", "PrimingType", "InterferenceType", "RejectionReason",
    "CognitiveEvents", "CognitiveTracer", "EventType", "EVENT_DTYPE",
]
