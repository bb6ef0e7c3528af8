"""Figures of metrics and events (matplotlib), and readable tables for Jupyter.

Every function returns a :class:`NotebookFigure`, a matplotlib ``Figure`` built
without pyplot's global state: it works headless, in scripts
(``fig.savefig(path)``) and in notebooks, where it renders as the cell's result
in a fresh kernel (it has a ``_repr_png_``; no ``%matplotlib inline`` needed).
"""

from __future__ import annotations

import html
import math

import typing

import numpy as np

from .metrics.kinds import HISTOGRAM
from .tracing.schema import as_events

if typing.TYPE_CHECKING:      # the class is built on first use (see _notebook_figure_class)
    from matplotlib.figure import Figure as NotebookFigure

__all__ = ["NotebookFigure", "histograms_figure", "event_rates_figure", "timeline_figure",
           "rings_figure", "overhead_figure", "metric_set_html", "tracer_html"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
QUANTILES = ((0.5, "P50", "#444444"), (0.95, "P95", "#ff7f0e"), (0.99, "P99", "#d62728"))


_figure_class = None


def _notebook_figure_class():
    """``NotebookFigure``, built on first use: matplotlib is an extra (``[viz]``), and
    the HTML tables below work without it."""
    global _figure_class
    if _figure_class is None:
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("engram_numba.viz figures need matplotlib: "
                              "pip install 'engram-numba[viz]'") from None

        class NotebookFigure(Figure):
            """A ``Figure`` that Jupyter displays as a PNG without any matplotlib magic."""

            def _repr_png_(self) -> bytes:
                import io
                buf = io.BytesIO()
                self.savefig(buf, format="png", dpi=100)
                return buf.getvalue()

        NotebookFigure.__module__ = __name__
        _figure_class = NotebookFigure
    return _figure_class


def __getattr__(name):
    if name == "NotebookFigure":
        return _notebook_figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _new_figure(**options):
    return _notebook_figure_class()(**options)


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _label(name: str) -> str:
    return name.replace("_", " ")


def histograms_figure(metrics, columns: int = 3) -> NotebookFigure:
    """Every histogram of a metric set: bucket counts on a log axis, P50/P95/P99 marked."""
    snap = metrics.collect()
    hists = [(s.spec, labels, data) for s in snap if s.kind is HISTOGRAM
             for labels, data in s.items()]
    rows = max(1, math.ceil(len(hists) / columns))
    fig = _new_figure(figsize=(4.2 * columns, 2.8 * rows), layout="constrained")
    for i, (spec, labels, h) in enumerate(hists):
        ax = fig.add_subplot(rows, columns, i + 1)
        title = spec.name.replace("engram_", "")
        if labels:                      # one panel per label combination: say which
            title += "{" + ",".join(f"{k}={v}" for k, v in zip(spec.label_names, labels)) + "}"
        buckets = [(lo, hi, n) for lo, hi, n in h.buckets() if n and math.isfinite(lo)
                   and math.isfinite(hi) and lo != hi]
        positive = [(lo, hi, n) for lo, hi, n in buckets if lo > 0]
        if not h.count:
            ax.text(0.5, 0.5, "no observations", ha="center", va="center", transform=ax.transAxes)
        elif positive and len(positive) == len(buckets):
            ax.bar([lo for lo, _, _ in positive], [n for *_, n in positive],
                   width=[hi - lo for lo, hi, _ in positive], align="edge", color="#5b8db8")
            ax.set_xscale("log")
            from matplotlib.ticker import NullFormatter
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            mids = [(lo + hi) / 2 for lo, hi, _ in buckets]
            ax.bar(mids, [n for *_, n in buckets], width=[hi - lo for lo, hi, _ in buckets],
                   color="#5b8db8")
        if buckets:                     # the axis spans the data, not the declared range
            lo = min(b[0] for b in buckets)
            hi = max(b[1] for b in buckets)
            if ax.get_xscale() == "log":
                ax.set_xlim(lo / 1.15, hi * 1.15)
            else:
                pad = 0.05 * (hi - lo)
                ax.set_xlim(lo - pad, hi + pad)
        if h.count:
            for q, name, color in QUANTILES:
                v = h.quantile(q)
                ax.axvline(v, color=color, lw=1.2, ls="--", label=f"{name} {v:.3g}")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{title}  (n={h.count:,})", fontsize=9)
        ax.tick_params(labelsize=7)
    return fig


def event_rates_figure(events: np.ndarray, bin_ms: float = 200.0) -> NotebookFigure:
    """Events per second over time, one line per event type."""
    events, layout = as_events(events)
    fig = _new_figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    if events.size:
        t = (events["timestamp"].astype(np.int64) - int(events["timestamp"].min())) / 1e9
        edges = np.arange(0, t.max() + bin_ms / 1000, bin_ms / 1000)
        if edges.size < 2:
            edges = np.array([0.0, bin_ms / 1000])
        for et in layout.types:
            sel = t[events["event_type"] == et.index]
            if sel.size:
                counts, _ = np.histogram(sel, edges)
                ax.plot(edges[:-1], counts / (bin_ms / 1000), label=_label(et.name),
                        color=_color(et.index))
        ax.legend(fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("traced events / s")
    ax.set_title("Traced event rate by type")
    return fig


def timeline_figure(events: np.ndarray, max_points: int = 50_000) -> NotebookFigure:
    """Each traced event as a tick on its thread's track."""
    events, layout = as_events(events)
    fig = _new_figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    if events.size:
        start = int(events["timestamp"].min())
        threads = np.unique(events["thread"])
        row = {int(th): i for i, th in enumerate(threads)}
        if layout.has_spans:
            from .tracing.spans import SpanAssembler
            for s in SpanAssembler().feed(events):
                ax.barh(row[s.thread] - 0.3 + 0.08 * s.depth, s.duration_ns / 1e9,
                        left=(s.start_ns - start) / 1e9, height=0.12,
                        color=_color(layout.by_name[s.name].index), alpha=0.5)
        step = max(1, events.size // max_points)
        ev = events[::step]
        ev = ev[(ev["flags"] & 3) == 0]
        t = (ev["timestamp"].astype(np.int64) - start) / 1e9
        y = np.array([row[int(th)] for th in ev["thread"]])
        n = len(layout.types)
        for et in layout.types:
            sel = ev["event_type"] == et.index
            if sel.any():
                ax.scatter(t[sel], y[sel] + 0.15 * (et.index - (n - 1) / 2) / max(n / 4, 1),
                           s=2, color=_color(et.index), label=_label(et.name), linewidths=0)
        ax.set_yticks(range(len(threads)), [f"thread {int(th)}" for th in threads])
        ax.legend(fontsize=8, markerscale=4, loc="upper right")
    ax.set_xlabel("seconds")
    ax.set_title("Event timeline per recording thread")
    return fig


def rings_figure(stats: dict) -> NotebookFigure:
    """Per ring: events delivered and dropped, and the fill level at the end."""
    fig = _new_figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    rings = stats["rings"]
    if rings:
        x = np.arange(len(rings))
        delivered = [r["delivered"] for r in rings]
        dropped = [r["dropped"] for r in rings]
        ax.bar(x, delivered, color="#2ca02c", label="delivered")
        ax.bar(x, dropped, bottom=delivered, color="#d62728", label="dropped")
        ax.set_xticks(x, [f"ring {r['ring']}" for r in rings])
        ax2 = ax.twinx()
        ax2.plot(x, [r["utilization"] for r in rings], "ko-", label="utilization %")
        ax2.set_ylim(0, 100)
        ax2.set_ylabel("utilization %")
        ax.legend(fontsize=8, loc="upper left")
    t = stats["total"]
    ax.set_title(f"Rings: {t['written']:,} written, {t['dropped']:,} dropped, "
                 f"{stats['no_ring']:,} without a free ring")
    ax.set_ylabel("events")
    return fig


def overhead_figure(instrumented_s, disabled_s) -> NotebookFigure:
    """Interleaved round times with and without instrumentation, and the overhead."""
    a, b = np.asarray(instrumented_s), np.asarray(disabled_s)
    ratio = (a / b - 1) * 100
    fig = _new_figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    x = np.arange(a.size)
    ax.plot(x, a * 1e3, "o-", color="#1f77b4", label="instrumented")
    ax.plot(x, b * 1e3, "s-", color="#7f7f7f", label="disabled (same code as none)")
    ax.set_xlabel("round (interleaved)")
    ax.set_ylabel("ms per round")
    ax.legend(fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.bar(x, ratio, color=np.where(ratio >= 0, "#d62728", "#2ca02c"))
    med = float(np.median(ratio)) if ratio.size else float("nan")
    ax2.axhline(med, color="k", ls="--", lw=1, label=f"median {med:+.1f}%")
    ax2.set_xlabel("round")
    ax2.set_ylabel("overhead %")
    ax2.legend(fontsize=8)
    fig.suptitle("Instrumentation overhead (interleaved A/B)")
    return fig


# -- Jupyter tables -----------------------------------------------------------------

def _table(head, rows) -> str:
    th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


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
                value = (f"n={v.count:,} mean={_fmt(v.mean)} p50={_fmt(v.quantile(0.5))} "
                         f"p95={_fmt(v.quantile(0.95))} p99={_fmt(v.quantile(0.99))}")
            else:
                value = _fmt(v)
            rows.append((fam.name + unit, lab, fam.kind.name, value))
    if hasattr(metrics, "enabled"):
        state = "enabled" if metrics.enabled else "disabled"
        title = f"<b>{html.escape(type(metrics).__name__)}</b> ({state})"
    else:
        title = f"<b>{html.escape(snap.name)}</b> (snapshot)"
    return title + _table(["metric", "labels", "kind", "value"], rows)


def tracer_html(tracer) -> str:
    """An HTML summary of a tracer: configuration and ring counts."""
    title = html.escape(f"{type(tracer).__name__} of {tracer.event_set.set_name}")
    if not tracer.enabled:
        return f"<b>{title}</b> (disabled: records nothing, owns no memory)"
    st = tracer.stats()
    rates = tracer.sample_rates()
    rows = [(t.name, t.kind, "on" if rates[t.name] > 0 else "off", _fmt(rates[t.name]))
            for t in tracer.layout.types]
    t = st["total"]
    summary = (f"<b>{title}</b> {tracer.n_rings} rings x {tracer.capacity:,} events "
               f"({st['memory_bytes']:,} bytes); written {t['written']:,}, delivered "
               f"{t['delivered']:,}, dropped {t['dropped']:,}, pending {t['pending']:,}, "
               f"no free ring {st['no_ring']:,}")
    return summary + _table(["event type", "kind", "state", "sample rate"], rows)
