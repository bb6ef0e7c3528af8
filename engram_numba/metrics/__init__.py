"""Counters, gauges and histograms recorded lock-free from numba kernels."""

from .buckets import ExplicitBuckets, ExponentialBuckets, relative_error_bound
from .kinds import COUNTER, GAUGE, HISTOGRAM, TOPK, Kind
from .counter import Counter, CounterSnapshot
from .gauge import Gauge, GaugeSnapshot
from .histogram import Histogram, HistogramData, HistogramSnapshot
from .metric_set import MetricSet, attach_metrics, kernel_method
from .snapshot import MetricSetSnapshot
from .topk import TopK, TopKSnapshot  # noqa: F401  (a kind: registered for descriptions)

__all__ = [
    "Counter", "Gauge", "Histogram", "MetricSet", "kernel_method", "attach_metrics",
    "MetricSetSnapshot", "CounterSnapshot", "GaugeSnapshot", "HistogramSnapshot",
    "HistogramData", "relative_error_bound", "ExponentialBuckets", "ExplicitBuckets",
    "Kind", "COUNTER", "GAUGE", "HISTOGRAM", "TOPK",
]
