"""The HTML table a metric set or a snapshot shows in Jupyter (its ``_repr_html_``)."""

from __future__ import annotations

import html

from .._html import number, table
from .kinds import HISTOGRAM

__all__ = ["metric_set_html"]


def metric_set_html(metrics) -> str:
    """An HTML table of a metric set (or a snapshot): a row per series of its families,
    derived series included, histograms summarised."""
    snap = metrics.collect() if hasattr(metrics, "collect") else metrics
    rows = []
    for fam in snap.families():
        unit = f" ({fam.unit})" if fam.unit else ""
        for labels, v in fam.points:
            lab = ", ".join(f"{n}={x}" for n, x in zip(fam.label_names, labels))
            if fam.kind is HISTOGRAM:
                value = (f"n={v.count:,} mean={number(v.mean)} p50={number(v.quantile(0.5))} "
                         f"p95={number(v.quantile(0.95))} p99={number(v.quantile(0.99))}")
            else:
                value = number(v)
            rows.append((fam.name + unit, lab, fam.kind.name, value))
    if hasattr(metrics, "enabled"):
        state = "enabled" if metrics.enabled else "disabled"
        title = f"<b>{html.escape(type(metrics).__name__)}</b> ({state})"
    else:
        title = f"<b>{html.escape(snap.name)}</b> (snapshot)"
    return title + table(["metric", "labels", "kind", "value"], rows)
