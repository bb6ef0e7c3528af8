"""Counters, gauges and histograms recorded lock-free from numba kernels."""

from .buckets import ExplicitBuckets, ExponentialBuckets, relative_error_bound
from .kinds import COUNTER, GAUGE, HISTOGRAM, TOPK, Kind
from .metric_set import MetricSet, attach_metrics, kernel_method
from .snapshot import (CounterSnapshot, GaugeSnapshot, HistogramData, HistogramSnapshot,
                       MetricSetSnapshot)
from .spec import Counter, Gauge, Histogram

__all__ = [
    "Counter", "Gauge", "Histogram", "MetricSet", "kernel_method", "attach_metrics",
    "MetricSetSnapshot", "CounterSnapshot", "GaugeSnapshot", "HistogramSnapshot",
    "HistogramData", "relative_error_bound", "ExponentialBuckets", "ExplicitBuckets",
    "Kind", "COUNTER", "GAUGE", "HISTOGRAM", "TOPK",
]
