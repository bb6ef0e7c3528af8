"""Exporters: turn metric-set snapshots into the formats other tools read."""

from .prometheus import MetricSetCollector, exposition, openmetrics_exposition
from .prometheus_proto import protobuf_exposition
from .server import MetricsServer

__all__ = ["exposition", "openmetrics_exposition", "protobuf_exposition", "MetricSetCollector",
           "MetricsServer"]
