"""Metric-set snapshots as tidy pandas DataFrames: see :mod:`engram_numba.metrics.frames`
(``snapshot.to_dataframe()``), which this name keeps importable."""

from ..metrics.frames import metrics_dataframe

__all__ = ["metrics_dataframe"]
