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
label).  Text format version 0.0.4; the sample prefixes are built once per
layout, so a scrape only formats numbers.
"""

from __future__ import annotations

import math

from ..metrics.snapshot import MetricSetSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_EXCLUDED_REASONS = ("nan", "+inf", "-inf", "negative")


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


def _histogram_prefixes(spec, combo_pairs, cumulative):
    """Per label combination: the ``x_bucket{...,le="b"} `` prefixes of every boundary."""
    out = []
    for pairs in combo_pairs:
        out.append([f"{spec.name}_bucket{_labels(pairs + [('le', format_float(le))])} "
                    for le, _ in cumulative])
    return out


class _Plan:
    """Precomputed sample prefixes for one layout."""

    def __init__(self, snapshot: MetricSetSnapshot):
        self.parts = []
        for snap in snapshot.metrics.values():
            spec = snap.spec
            head = ""
            if spec.help:
                head += f"# HELP {spec.name} {escape_help(spec.help)}\n"
            if spec.kind == "topk":
                head += f"# TYPE {spec.name} counter\n"
                self.parts.append(("topk", head, spec.key_labels))
                continue
            head += f"# TYPE {spec.name} {spec.kind}\n"
            combos = [list(zip(spec.label_names, labels)) for labels, _ in snap.items()]
            if spec.kind == "histogram":
                first = snap.items()[0][1] if combos else None
                buckets = _histogram_prefixes(spec, combos, first.cumulative()) if first else []
                sums = [f"{spec.name}_sum{_labels(p)} " for p in combos]
                counts = [f"{spec.name}_count{_labels(p)} " for p in combos]
                excl_name = f"{spec.name}_excluded_total"
                excl_head = (f"# HELP {excl_name} Observations of {spec.name} kept out of its "
                             f"count and sum (NaN, infinities, out-of-domain negatives).\n"
                             f"# TYPE {excl_name} counter\n")
                excl = [[f"{excl_name}{_labels(p + [('reason', r)])} " for r in _EXCLUDED_REASONS]
                        for p in combos]
                self.parts.append(("histogram", head, (buckets, sums, counts, excl_head, excl)))
            else:
                prefixes = [f"{spec.name}{_labels(p)} " for p in combos]
                self.parts.append((spec.kind, head, prefixes))
        inv = f"{snapshot.name}_invalid_records_total"
        self.invalid = (f"# HELP {inv} Kernel records dropped for an out-of-range label or a "
                        f"negative counter increment.\n# TYPE {inv} counter\n{inv} ")


_plans: dict = {}


def _plan_for(snapshot: MetricSetSnapshot, layout_key) -> _Plan:
    plan = _plans.get(layout_key)
    if plan is None:
        plan = _plans[layout_key] = _Plan(snapshot)
    return plan


def render(snapshot: MetricSetSnapshot, layout_key=None) -> str:
    """One snapshot in the Prometheus text format."""
    plan = _plan_for(snapshot, layout_key) if layout_key is not None else _Plan(snapshot)
    out = []
    for (kind, head, data), snap in zip(plan.parts, snapshot.metrics.values()):
        out.append(head)
        if kind == "topk":
            out.extend(f"{snap.spec.name}{_labels(list(zip(data, map(str, key))))} {count}\n"
                       for key, count in snap.items())
            continue
        values = [v for _, v in snap.items()]
        if kind == "counter":
            out.extend(f"{p}{v}\n" for p, v in zip(data, values))
        elif kind == "gauge":
            out.extend(f"{p}{format_float(v)}\n" for p, v in zip(data, values))
        else:
            buckets, sums, counts, excl_head, excl = data
            for k, h in enumerate(values):
                cum = h.cumulative()
                out.extend(f"{p}{n}\n" for p, (_, n) in zip(buckets[k], cum))
                out.append(f"{sums[k]}{format_float(h.sum)}\n{counts[k]}{h.count}\n")
            out.append(excl_head)
            for k, h in enumerate(values):
                e = h.excluded
                out.extend(f"{p}{e[r]}\n" for p, r in zip(excl[k], _EXCLUDED_REASONS))
    out.append(f"{plan.invalid}{snapshot.invalid_records}\n")
    return "".join(out)


def exposition(*metric_sets) -> str:
    """The Prometheus text of one or more metric sets (or their snapshots)."""
    parts = []
    for m in metric_sets:
        if isinstance(m, MetricSetSnapshot):
            parts.append(render(m))
        else:
            parts.append(render(m.collect(), (type(m), m.layout.hash)))
    return "".join(parts)


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
        for m in self.metric_sets:
            snap = m if isinstance(m, MetricSetSnapshot) else m.collect()
            for s in snap.metrics.values():
                spec = s.spec
                names = list(spec.label_names)
                if spec.kind == "topk":
                    fam = CounterMetricFamily(spec.family, spec.help, labels=names)
                    for key, count in s.items():
                        fam.add_metric([str(k) for k in key], count)
                    yield fam
                elif spec.kind == "counter":
                    fam = CounterMetricFamily(spec.family, spec.help, labels=names)
                    for labels, v in s.items():
                        fam.add_metric(list(labels), v)
                    yield fam
                elif spec.kind == "gauge":
                    fam = GaugeMetricFamily(spec.name, spec.help, labels=names)
                    for labels, v in s.items():
                        fam.add_metric(list(labels), v)
                    yield fam
                else:
                    fam = HistogramMetricFamily(spec.name, spec.help, labels=names)
                    excl = CounterMetricFamily(
                        f"{spec.name}_excluded",
                        f"Observations of {spec.name} kept out of its count and sum (NaN, "
                        f"infinities, out-of-domain negatives).", labels=names + ["reason"])
                    for labels, h in s.items():
                        fam.add_metric(list(labels), [(format_float(le), n) for le, n in h.cumulative()],
                                       h.sum)
                        for r in _EXCLUDED_REASONS:
                            excl.add_metric(list(labels) + [r], h.excluded[r])
                    yield fam
                    yield excl
            inv = CounterMetricFamily(
                f"{snap.name}_invalid_records",
                "Kernel records dropped for an out-of-range label or a negative counter increment.")
            inv.add_metric([], snap.invalid_records)
            yield inv


def openmetrics_exposition(*metric_sets) -> str:
    """The OpenMetrics text of one or more metric sets (rendered by prometheus_client)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricSetCollector(*metric_sets))
    return generate_latest(registry).decode("utf-8")
