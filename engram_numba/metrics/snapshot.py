"""Immutable readings of a metric set.

A snapshot is taken with relaxed atomic loads of the whole region (no torn
word) and then interpreted here; exporters, queries and plots only ever see
snapshots, never the live memory kernels write.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np

from . import _record as R
from .buckets import estimate_quantile
from .kinds import COUNTER, GAUGE, HISTOGRAM, TOPK
from .spec import Histogram, MetricSpec

__all__ = ["MetricSetSnapshot", "CounterSnapshot", "GaugeSnapshot", "HistogramSnapshot",
           "HistogramData", "TopKSnapshot"]


def _f64(word) -> float:
    return float(np.uint64(word).view(np.float64))


def label_values(spec: MetricSpec) -> list:
    """Label value tuples of every slot, in slot order."""
    if spec.kind is TOPK:
        return [()]
    return list(itertools.product(*[d.values for d in spec.labels]))


class HistogramData:
    """One histogram (one label combination) at a point in time.

    ``count`` and ``sum`` cover the finite observations in the histogram's
    domain; NaN, +-inf and (without negative buckets) negative values are
    counted apart in ``nan``, ``pos_inf``, ``neg_inf`` and ``negative``.  The
    bucket layout is the spec's scheme's business (``spec.scheme``).
    """

    def __init__(self, spec: Histogram, words: np.ndarray):
        self.spec = spec
        scheme = spec.scheme
        self.sum = _f64(words[R.H_SUM // 8])
        lo, hi = _f64(words[R.H_MIN // 8]), _f64(words[R.H_MAX // 8])
        self.zero_count = int(words[R.H_ZERO // 8])
        self.nan = int(words[R.H_NAN // 8])
        self.pos_inf = int(words[R.H_POS_INF // 8])
        self.neg_inf = int(words[R.H_NEG_INF // 8])
        self.negative = int(words[R.H_NEGATIVE // 8])
        counts = words[R.H_BUCKETS // 8:R.H_BUCKETS // 8 + scheme.count_words].astype(np.int64)
        self.negative_counts, self.counts, self.overflow_counts, self.neg_overflow_counts = \
            scheme.split(counts)
        self.overflow = int(self.overflow_counts.sum())
        self.neg_overflow = int(self.neg_overflow_counts.sum())
        self.count = int(self.counts.sum() + self.negative_counts.sum()) + self.zero_count \
            + self.overflow + self.neg_overflow
        # a writer updates min/max just before its bucket: a reader may catch one
        # without the other, so extremes are reported only for a non-empty histogram
        self.min = lo if self.count else math.nan
        self.max = hi if self.count else math.nan

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def excluded(self) -> dict:
        """Observations outside ``count``: ``{"nan": n, "+inf": n, "-inf": n, "negative": n}``."""
        return {"nan": self.nan, "+inf": self.pos_inf, "-inf": self.neg_inf, "negative": self.negative}

    @property
    def relative_error_bound(self) -> float:
        """Bound on the relative error of a quantile that falls in the range of an
        exponential histogram (nan if explicit).  Above the range the bound is 41 %,
        and a factor 256 beyond ``2**near_top`` (at least 2**16 times its top); in
        the zero bucket it is ``2**min_exponent``, absolute (:mod:`.buckets` has the
        whole list)."""
        return self.spec.scheme.relative_error

    def buckets(self):
        """Every bucket in value order: ``(lower, upper, count)`` tuples.

        Exponential: negative buckets hold ``[-upper, -lower)`` mirrored, the zero
        bucket ``[-t, t]`` (``[0, t]`` without negative buckets), positive buckets
        ``(lower, upper]``; above ``2**max_exponent`` the overflow buckets, an octave
        each and then 16 octaves each, the last one ending at ``inf`` (mirrored below
        ``-2**max_exponent``).  Explicit: ``(b[k-1], b[k]]`` with ``-inf`` and ``inf``
        closing the ends.
        """
        return self.spec.scheme.buckets(self)

    def quantile(self, q: float) -> float:
        """Estimate of quantile ``q`` in [0, 1] (error bounds: :mod:`.buckets`); nan when empty."""
        return estimate_quantile(q, self.spec.scheme.bins(self), self.count, self.min, self.max)

    def cumulative(self, scale: int | None = None):
        """Prometheus classic buckets: ``[(le, count of values <= le), ...]`` ending with
        ``(inf, count)``, at the declared classic resolution of an exponential histogram
        (``scale``: another one, capped at the histogram's scale).

        The boundary list depends only on the declaration, never on the data,
        and the ``+Inf`` bucket equals ``count`` by construction.  With negative
        buckets, a negative boundary ``-b`` is exported as the double just below it
        (a negative bucket holds ``[-upper, -lower)``), so every line counts exactly
        the values ``<= le``.
        """
        return self.spec.scheme.cumulative(self, scale)

    def to_dict(self, quantiles=(0.5, 0.9, 0.95, 0.99)) -> dict:
        """Plain JSON values: NaN and the open ends of outer buckets become ``None``."""
        def num(x):
            return x if math.isfinite(x) else None
        return {
            "count": self.count, "sum": num(self.sum), "mean": num(self.mean),
            "min": num(self.min), "max": num(self.max),
            "quantiles": {str(q): num(self.quantile(q)) for q in quantiles},
            "buckets": [[num(lo), num(hi), n] for lo, hi, n in self.buckets() if n],
            "zero_count": self.zero_count, "overflow": self.overflow + self.neg_overflow,
            "excluded": self.excluded,
        }

    def __repr__(self) -> str:
        return (f"<HistogramData {self.spec.name} count={self.count} sum={self.sum:g} "
                f"p50={self.quantile(0.5):.4g} p99={self.quantile(0.99):.4g}>")


class _LabelledSnapshot:
    def __init__(self, spec: MetricSpec, values: list):
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


class CounterSnapshot(_LabelledSnapshot):
    """Counts per label combination (python ints)."""

    kind = COUNTER

    @property
    def total(self) -> int:
        return int(sum(self._values))

    def to_dict(self) -> dict:
        return _labelled_dict(self, lambda v: v)


class GaugeSnapshot(_LabelledSnapshot):
    """Values per label combination (floats)."""

    kind = GAUGE

    def to_dict(self) -> dict:
        return _labelled_dict(self, lambda v: None if math.isnan(v) else v)


class HistogramSnapshot(_LabelledSnapshot):
    """A :class:`HistogramData` per label combination."""

    kind = HISTOGRAM

    def to_dict(self) -> dict:
        return _labelled_dict(self, lambda v: v.to_dict())


class TopKSnapshot:
    """The occupied entries of a top-k table: ``[(key tuple, count)]``, largest first."""

    kind = TOPK

    def __init__(self, spec, words: np.ndarray):
        self.spec = spec
        entries = []
        for i in range(spec.k):
            e = words[1 + i * spec.entry_words:1 + (i + 1) * spec.entry_words]
            if e[-1]:
                entries.append((tuple(int(x) for x in e[:-1]), int(e[-1])))
        entries.sort(key=lambda kv: -kv[1])
        self._entries = entries

    @property
    def name(self) -> str:
        return self.spec.name

    def items(self) -> list:
        return list(self._entries)

    def to_dict(self) -> dict:
        names = self.spec.key_labels
        return {"type": "topk", "help": self.spec.help, "labels": list(names),
                "samples": [{"labels": {n: str(v) for n, v in zip(names, key)}, "value": count}
                            for key, count in self._entries]}


def _labelled_dict(snap, convert) -> dict:
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
