"""Prometheus text exposition of metric-set snapshots.

Families, per declared metric:

* counter ``x_total`` -> ``# TYPE x_total counter`` and one sample per label combination;
* gauge ``x`` -> ``# TYPE x gauge``;
* histogram ``x`` -> ``x_bucket{le=...}`` (cumulative, ending with ``+Inf`` equal to
  ``x_count``), ``x_sum``, ``x_count`` per label combination.  Exponential
  histograms expose their bucket boundaries as classic ``le`` buckets (the zero
  bucket's threshold first); the boundary list depends only on the declaration.
  Observations kept out of the histogram (NaN, +-inf, negative without negative
  buckets) are counted in ``x_excluded_total{reason=...}``;

plus ``<set>_invalid_records_total`` (kernel records dropped for an out-of-range
label).  Both this text and :class:`MetricSetCollector` render a snapshot's
families (:mod:`..metrics.families`), where those derived series are defined.
Text format version 0.0.4; the sample prefixes are built once per layout and
label set, so a scrape only formats numbers.
"""

from __future__ import annotations

import math

from ..metrics.buckets import ExponentialBuckets
from ..metrics.families import COUNTER, GAUGE, HISTOGRAM, families_of

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def format_float(x: float) -> str:
    """Go-compatible float text (``+Inf``, ``-Inf``, ``NaN``, shortest round-trip repr)."""
    if x == math.inf:
        return "+Inf"
    if x == -math.inf:
        return "-Inf"
    if x != x:
        return "NaN"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x)}.0"
    return repr(float(x))


def _labels(pairs) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}"


class _Prefixes:
    """Sample-line prefixes (``name{labels} ``) of one layout, built once per label set:
    a scrape then only formats numbers.  With ``classic_scale``, exponential
    histograms keep only the ``le`` bounds of that coarser scale."""

    def __init__(self, classic_scale=None):
        self.heads = {}
        self.points = {}
        self.classic_scale = classic_scale
        self.keep = {}

    def positions(self, fam):
        """Positions of the kept ``le`` bounds (``None``: all of them)."""
        scheme = fam.spec.scheme
        if self.classic_scale is None or not isinstance(scheme, ExponentialBuckets) \
                or self.classic_scale >= scheme.scale:
            return None
        key = scheme.key()
        got = self.keep.get(key)
        if got is None:
            got = self.keep[key] = scheme.coarse_positions(self.classic_scale)
        return got

    def head(self, fam) -> str:
        text = self.heads.get(fam.name)
        if text is None:
            text = f"# HELP {fam.name} {escape_help(fam.help)}\n" if fam.help else ""
            text += f"# TYPE {fam.name} {fam.kind.name}\n"
            self.heads[fam.name] = text
        return text

    def point(self, fam, labels):
        key = (fam.name, labels)
        got = self.points.get(key)
        if got is None:
            pairs = list(zip(fam.label_names, labels))
            if fam.kind is HISTOGRAM:
                bounds = fam.spec.scheme.le_bounds()
                keep = self.positions(fam)
                if keep is not None:
                    bounds = [bounds[i] for i in keep]
                buckets = [f"{fam.name}_bucket{_labels(pairs + [('le', format_float(le))])} "
                           for le in bounds]
                got = (buckets, f"{fam.name}_sum{_labels(pairs)} ",
                       f"{fam.name}_count{_labels(pairs)} ")
            else:
                got = f"{fam.name}{_labels(pairs)} "
            if fam.fixed_labels or len(self.points) < _MAX_KEPT:
                self.points[key] = got   # label values that change with the data: a bound
        return got


_plans: dict = {}
_MAX_KEPT = 100_000     # sample prefixes kept per layout, beyond the fixed label sets


def render_families(fams, layout_key=None, classic_scale=None) -> str:
    """Families (see :mod:`..metrics.families`) in the Prometheus text format.

    ``classic_scale`` (0 .. 8) exports the classic buckets of exponential histograms
    declared at a finer scale at that scale only: ``2**classic_scale`` ``le`` bounds
    per power of two instead of ``2**scale``.  Their counts stay exact (each bound
    of the coarser scale is a bound of the finer one); quantiles computed from
    them have the coarser scale's error bound."""
    if classic_scale is not None:
        from ..metrics.buckets import check_scale
        check_scale(classic_scale)
    if layout_key is not None:
        plan = _plans.setdefault((layout_key, classic_scale), _Prefixes(classic_scale))
    else:
        plan = _Prefixes(classic_scale)
    out = []
    for fam in fams:
        out.append(plan.head(fam))
        if fam.kind is HISTOGRAM:
            for labels, h in fam.points:
                buckets, sum_prefix, count_prefix = plan.point(fam, labels)
                cumulative = h.cumulative()
                keep = plan.positions(fam)
                if keep is not None:
                    cumulative = [cumulative[i] for i in keep]
                out.extend(f"{p}{n}\n" for p, (_, n) in zip(buckets, cumulative))
                out.append(f"{sum_prefix}{format_float(h.sum)}\n{count_prefix}{h.count}\n")
        elif fam.kind is GAUGE:
            out.extend(f"{plan.point(fam, labels)}{format_float(v)}\n" for labels, v in fam.points)
        else:
            out.extend(f"{plan.point(fam, labels)}{v}\n" for labels, v in fam.points)
    return "".join(out)


def exposition(*metric_sets, classic_scale: int | None = None) -> str:
    """The Prometheus text of one or more metric sets (or their snapshots).  Instances
    of one class are told apart by their ``const_labels``; the same series exported
    twice is a ``ValueError``.  ``classic_scale``: see :func:`render_families`."""
    if not metric_sets:
        return ""
    fams, key = families_of(metric_sets)
    return render_families(fams, key, classic_scale)


# -- prometheus_client integration (extra: engram-numba[prometheus]) -------------------

class MetricSetCollector:
    """A ``prometheus_client`` collector for metric sets.

    Register it in the registry you already serve::

        from prometheus_client import REGISTRY
        REGISTRY.register(MetricSetCollector(metrics))

    Each scrape takes a fresh snapshot; the families and names are those of
    :func:`exposition`.
    """

    def __init__(self, *metric_sets):
        if not metric_sets:
            raise ValueError("MetricSetCollector needs at least one metric set")
        self.metric_sets = metric_sets

    def describe(self):
        return list(self.collect())

    def collect(self):
        try:
            from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                                HistogramMetricFamily)
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("MetricSetCollector needs prometheus_client: "
                              "pip install 'engram-numba[prometheus]'") from exc
        fams, _ = families_of(self.metric_sets)
        for fam in fams:
            names = list(fam.label_names)
            if fam.kind is COUNTER:
                out = CounterMetricFamily(fam.base_name, fam.help, labels=names,
                                          unit=fam.unit)
                for labels, v in fam.points:
                    out.add_metric(list(labels), v)
            elif fam.kind is GAUGE:
                out = GaugeMetricFamily(fam.name, fam.help, labels=names, unit=fam.unit)
                for labels, v in fam.points:
                    out.add_metric(list(labels), v)
            else:
                out = HistogramMetricFamily(fam.name, fam.help, labels=names, unit=fam.unit)
                for labels, h in fam.points:
                    out.add_metric(list(labels),
                                   [(format_float(le), n) for le, n in h.cumulative()], h.sum)
            yield out


def openmetrics_exposition(*metric_sets) -> str:
    """The OpenMetrics text of one or more metric sets (rendered by prometheus_client)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricSetCollector(*metric_sets))
    return generate_latest(registry).decode("utf-8")
