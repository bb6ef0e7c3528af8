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
    a scrape then only formats numbers.  ``classic_scale``: the classic resolution of
    exponential histograms (``None``: each one's declared ``classic_scale``)."""

    def __init__(self, classic_scale=None):
        self.heads = {}
        self.points = {}
        self.classic_scale = classic_scale

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
                bounds = fam.spec.scheme.le_bounds(self.classic_scale)
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

    Exponential histograms export their classic buckets at their declared
    ``classic_scale`` (at most 40 ``le`` buckets across the range by default);
    ``classic_scale`` (0 .. 8) here overrides it for every histogram:
    ``2**classic_scale`` ``le`` bounds per power of two, capped at the histogram's
    own scale.  Counts are exact at any of them (each bound of a coarser scale is
    a bound of the finer one); a quantile read anywhere inside a classic bucket
    (as ``histogram_quantile`` does) is within a factor ``2**(2**-classic_scale)``
    of the truth for values in the range."""
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
                cumulative = h.cumulative(classic_scale)
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
    :func:`exposition` (``classic_scale`` likewise).  A histogram's ``_sum`` (and
    with it ``_count``, which prometheus_client drops together) is left out when it
    is not a counter, as OpenMetrics requires: when the histogram has negative
    ``le`` bounds or has recorded a negative value; the ``+Inf`` bucket still gives
    the count.
    """

    def __init__(self, *metric_sets, classic_scale: int | None = None):
        if not metric_sets:
            raise ValueError("MetricSetCollector needs at least one metric set")
        if classic_scale is not None:
            from ..metrics.buckets import check_scale
            check_scale(classic_scale)
        self.metric_sets = metric_sets
        self.classic_scale = classic_scale

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
                    buckets = h.cumulative(self.classic_scale)
                    counter_sum = buckets[0][0] >= 0 and not h.min < 0
                    out.add_metric(list(labels), [(format_float(le), n) for le, n in buckets],
                                   h.sum if counter_sum else None)
            yield out


def openmetrics_exposition(*metric_sets, classic_scale: int | None = None) -> str:
    """The OpenMetrics text of one or more metric sets (rendered by prometheus_client);
    see :class:`MetricSetCollector`."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricSetCollector(*metric_sets, classic_scale=classic_scale))
    return generate_latest(registry).decode("utf-8")
