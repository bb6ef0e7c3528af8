"""Metric-set snapshots as tidy pandas DataFrames (``snapshot.to_dataframe()``).

One row per series, from the snapshot's families (derived series included):
``metric``, ``kind``, a column per label name (constant labels first; empty
where a metric lacks the label), and ``value``.  Histograms come in one of two
shapes:

* ``histograms="quantiles"`` (default): one row per label combination, with
  ``value`` = the count, and ``sum``, ``min``, ``max`` and a column per quantile
  (``p50``, ``p90``, ``p99`` by default);
* ``histograms="buckets"``: one row per non-empty bucket, with ``lower``,
  ``upper`` and ``value`` = the bucket's count (not cumulative).

Needs ``pip install 'engram-numba[pandas]'``.
"""

from __future__ import annotations

from .families import HISTOGRAM

__all__ = ["metrics_dataframe"]


def _quantile_column(q: float) -> str:
    text = f"{100 * q:.10g}".replace(".", "_")
    return f"p{text}"


def metrics_dataframe(snapshot, histograms: str = "quantiles",
                      quantiles=(0.5, 0.9, 0.99)):
    """A tidy DataFrame of a :class:`~.snapshot.MetricSetSnapshot` (see module doc)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_dataframe needs pandas: pip install 'engram-numba[pandas]'") \
            from None
    if histograms not in ("quantiles", "buckets"):
        raise ValueError(f"histograms must be 'quantiles' or 'buckets', got {histograms!r}")
    quantiles = tuple(quantiles)
    for q in quantiles:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
            raise ValueError(f"quantiles must be numbers in [0, 1], got {q!r}")
    fams = snapshot.families()
    label_columns = []
    for fam in fams:
        for name in fam.label_names:
            if name not in label_columns:
                label_columns.append(name)
    rows = []
    for fam in fams:
        for labels, value in fam.points:
            row = {"metric": fam.name, "kind": fam.kind.name,
                   **dict(zip(fam.label_names, labels))}
            if fam.kind is not HISTOGRAM:
                rows.append({**row, "value": value})
            elif histograms == "quantiles":
                rows.append({**row, "value": value.count, "sum": value.sum, "min": value.min,
                             "max": value.max,
                             **{_quantile_column(q): value.quantile(q) for q in quantiles}})
            else:
                for lower, upper, n in value.buckets():
                    if n:
                        rows.append({**row, "lower": lower, "upper": upper, "value": n})
    extra = (["sum", "min", "max"] + [_quantile_column(q) for q in quantiles]
             if histograms == "quantiles" else ["lower", "upper"])
    columns = ["metric", "kind"] + label_columns + ["value"] + extra
    frame = pd.DataFrame(rows, columns=columns)
    for name in label_columns:
        frame[name] = frame[name].astype("string")
    return frame
