"""Immutable readings of a metric set.

A snapshot is taken with relaxed atomic loads of the whole region (no torn
word) and then interpreted here; exporters, queries and plots only ever see
snapshots, never the live memory kernels write.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from .kinds import TOPK

__all__ = ["MetricSetSnapshot", "LabelledSnapshot", "label_values"]


def label_values(spec) -> list:
    """Label value tuples of every slot, in slot order."""
    if spec.kind is TOPK:
        return [()]
    return list(itertools.product(*[d.values for d in spec.labels]))


class LabelledSnapshot:
    """Base of the snapshots of metrics with fixed labels: a value per label combination."""

    def __init__(self, spec, values: list):
        self.spec = spec
        self._values = values
        self._labels = label_values(spec)

    @property
    def name(self) -> str:
        return self.spec.name

    def _slot(self, labels) -> int:
        if len(labels) != len(self.spec.labels):
            raise ValueError(f"{self.spec.name} has labels {list(self.spec.label_names)}; "
                             f"got {len(labels)} label(s)")
        slot = 0
        for dim, label in zip(self.spec.labels, labels):
            slot = slot * len(dim.values) + dim.index(label)
        return slot

    def get(self, *labels):
        return self._values[self._slot(labels)]

    def items(self):
        """``(label value tuple, value)`` for every label combination."""
        return list(zip(self._labels, self._values))


def labelled_dict(snap, convert) -> dict:
    names = snap.spec.label_names
    samples = [{"labels": dict(zip(names, labels)), "value": convert(v)}
               for labels, v in snap.items()]
    return {"type": snap.kind.name, "help": snap.spec.help, "labels": list(names), "samples": samples}


class MetricSetSnapshot:
    """Every metric of a set at one moment (``timestamp_ns``: unix time of the reading;
    ``start_ns``: when the set started counting, its creation)."""

    def __init__(self, name: str, layout, words: np.ndarray, timestamp_ns: int | None = None,
                 start_ns: int | None = None, const_labels: tuple = ()):
        from .layout import INVALID_BASELINE_OFFSET, INVALID_OFFSET
        self.name = name
        self.const_labels = tuple(const_labels)
        self.timestamp_ns = time.time_ns() if timestamp_ns is None else timestamp_ns
        self.start_ns = self.timestamp_ns if start_ns is None else start_ns
        invalid, base = int(words[INVALID_OFFSET // 8]), int(words[INVALID_BASELINE_OFFSET // 8])
        self.invalid_records = invalid - base if invalid >= base else 0
        copies = layout.copies(words)
        self.metrics = {attr: m.spec.read(m, words, copies) for attr, m in layout.metrics.items()}

    def to_dataframe(self, histograms: str = "quantiles", quantiles=(0.5, 0.9, 0.99)):
        """A tidy pandas DataFrame: a row per series (``histograms="buckets"``: a row per
        non-empty bucket); see :mod:`engram_numba.metrics.frames`."""
        from .frames import metrics_dataframe
        return metrics_dataframe(self, histograms, quantiles)

    def _repr_html_(self) -> str:
        from ._html import metric_set_html
        return metric_set_html(self)

    def families(self) -> list:
        """The snapshot as families, derived series included (what exporters consume)."""
        from .families import families
        return families(self)

    def __getitem__(self, attr):
        return self.metrics[attr]

    def __iter__(self):
        return iter(self.metrics.values())

    def to_dict(self) -> dict:
        """A plain, JSON-serialisable dict (no NaN or infinities: ``None``), rendered from
        the families like every exporter: ``metrics`` maps each family's exposition
        name (derived series included) to its type, help, unit, label names and samples;
        a histogram sample's value is :meth:`HistogramData.to_dict`."""
        from .families import families_dict
        return {
            "name": self.name,
            "const_labels": dict(self.const_labels),
            "timestamp_ns": self.timestamp_ns,
            "start_ns": self.start_ns,
            "invalid_records": self.invalid_records,
            "metrics": families_dict(self.families()),
        }
