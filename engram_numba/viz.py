"""Figures of metrics and events (matplotlib), and readable tables for Jupyter.

Every function returns a :class:`NotebookFigure`, a matplotlib ``Figure`` built
without pyplot's global state: it works headless, in scripts
(``fig.savefig(path)``) and in notebooks, where it renders as the cell's result
in a fresh kernel (it has a ``_repr_png_``; no ``%matplotlib inline`` needed).
"""

from __future__ import annotations

import math

import typing

import numpy as np

from .metrics._html import metric_set_html
from .metrics.kinds import HISTOGRAM
from .tracing._html import tracer_html
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
    the HTML tables (:mod:`.metrics._html`, :mod:`.tracing._html`, re-exported here) work
    without it."""
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
        unit = f" ({spec.unit})" if getattr(spec, "unit", None) else ""
        ax.set_xlabel(f"observed value{unit}", fontsize=8)
        ax.set_ylabel("observations per bucket", fontsize=8)
        _enough_ticks(ax)
        ax.tick_params(labelsize=7)
    return fig


def _enough_ticks(ax) -> None:
    """At least a few labelled ticks on each axis, a narrow log axis included."""
    from matplotlib.ticker import (LogFormatterSciNotation, LogLocator, MaxNLocator,
                                   ScalarFormatter)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    if ax.get_xscale() == "log":
        lo, hi = ax.get_xlim()
        if hi / max(lo, 1e-300) < 100:              # under two decades: label 1, 2, 5 too
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            fmt = ScalarFormatter()
            fmt.set_scientific(False)
            ax.xaxis.set_major_formatter(fmt)
        else:
            ax.xaxis.set_major_formatter(LogFormatterSciNotation())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))


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


def timeline_figure(events: np.ndarray, max_points: int = 4_000) -> NotebookFigure:
    """Traced events on a track per recording thread (named by its OS thread id), spans
    as bars; at most ``max_points`` events are drawn, picked evenly, as the title says."""
    events, layout = as_events(events)
    fig = _new_figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    title = "Traced events per recording thread"
    if events.size:
        start = int(events["timestamp"].min())
        keys = np.where(events["thread"] != 0, events["thread"], events["ring"]).astype(np.int64)
        threads = np.unique(keys)
        row = {int(th): i for i, th in enumerate(threads)}
        ring_of = {int(k): int(r) for k, r in zip(keys, events["ring"])}
        if layout.has_spans:
            from .tracing.spans import SpanAssembler
            for s in SpanAssembler().feed(events):
                key = s.thread or s.ring
                ax.barh(row[key] - 0.3 + 0.08 * s.depth, s.duration_ns / 1e9,
                        left=(s.start_ns - start) / 1e9, height=0.12,
                        color=_color(layout.by_name[s.name].index), alpha=0.5)
        instants = np.flatnonzero((events["flags"] & 3) == 0)
        shown = instants
        if instants.size > max_points:
            shown = instants[np.linspace(0, instants.size - 1, max_points).astype(np.int64)]
            title += f" ({shown.size:,} of {instants.size:,} events drawn)"
        ev = events[shown]
        t = (ev["timestamp"].astype(np.int64) - start) / 1e9
        y = np.array([row[int(k)] for k in keys[shown]])
        n = len(layout.types)
        for et in layout.types:
            sel = ev["event_type"] == et.index
            if sel.any():
                ax.scatter(t[sel], y[sel] + 0.3 * (et.index - (n - 1) / 2) / max(n, 1),
                           s=6, color=_color(et.index), label=_label(et.name), alpha=0.6,
                           linewidths=0)
        ax.set_yticks(range(len(threads)),
                      [f"thread {int(th)} (ring {ring_of[int(th)]})" for th in threads],
                      fontsize=7)
        ax.set_ylim(-0.6, len(threads) - 0.4)
        ax.legend(fontsize=8, markerscale=2, loc="upper right")
    ax.set_xlabel("seconds since the first event")
    ax.set_title(title)
    return fig


def rings_figure(stats: dict, since: dict | None = None) -> NotebookFigure:
    """Per ring: events written (delivered and dropped), and how full it got.

    ``since``: the tracer's stats at an earlier moment, subtracted (a run after a warm-up),
    so that the counts are those of the run, as its summary gives them."""
    fig = _new_figure(figsize=(8, 4.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    before = {r["ring"]: r for r in (since or {}).get("rings", [])}

    def delta(r, key):
        return r[key] - before.get(r["ring"], {}).get(key, 0)

    rings = [r for r in stats["rings"] if delta(r, "written") > 0 or r["pending"]]
    written = sum(delta(r, "written") for r in rings)
    dropped = sum(delta(r, "dropped") for r in rings)
    no_ring = stats["no_ring"] - (since or {}).get("no_ring", 0)
    if rings:
        x = np.arange(len(rings))
        delivered = [delta(r, "delivered") for r in rings]
        lost = [delta(r, "dropped") for r in rings]
        top.bar(x, delivered, color="#2ca02c", label="delivered")
        top.bar(x, lost, bottom=delivered, color="#d62728", label="dropped (overwritten)")
        top.set_ylabel("events written")
        top.legend(fontsize=8, loc="upper right")
        peak = [r.get("peak_utilization", r["utilization"]) for r in rings]
        bottom.bar(x, peak, color=["#d62728" if p >= 100 else "#1f77b4" for p in peak])
        bottom.axhline(100, color="k", lw=1, ls="--")
        bottom.set_ylim(0, 110)
        bottom.set_yticks([0, 50, 100])
        bottom.set_ylabel("peak fill %\n(of capacity)", fontsize=8)
        bottom.set_xticks(x, [f"ring {r['ring']}\nthread {r.get('thread', '?')}" for r in rings],
                          fontsize=7)
    else:
        top.text(0.5, 0.5, "no events written", ha="center", va="center",
                 transform=top.transAxes)
    top.set_title(f"Rings: {written:,} events written, {dropped:,} dropped, "
                  f"{no_ring:,} without a free ring")
    return fig


def overhead_figure(instrumented_s, disabled_s, *, confidence: float = 0.95) -> NotebookFigure:
    """The overhead of interleaved A/B rounds: how the rounds' ratios spread (left), and
    the estimate, their median with its bootstrap confidence interval (right)."""
    from ._stats import overhead_estimate
    a, b = np.asarray(instrumented_s, dtype=float), np.asarray(disabled_s, dtype=float)
    ratio = (a / b - 1) * 100
    fig = _new_figure(figsize=(8, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    if ratio.size >= 2:
        est = overhead_estimate(a, b, confidence=confidence)
        med, (lo, hi) = est["median_percent"], est["ci_percent"]
        q1, q99 = np.percentile(ratio, [1, 99])
        inside = ratio[(ratio >= q1) & (ratio <= q99)]
        left.hist(inside, bins=min(40, max(5, inside.size // 5)), color="#7f9fbf")
        left.axvline(med, color="k", lw=1.5, label=f"median {med:+.2f}%")
        left.axvline(0, color="#2ca02c", lw=1, ls=":", label="no overhead")
        left.set_xlabel("one round's overhead % (instrumented / disabled - 1)")
        left.set_ylabel("rounds")
        cut = ratio.size - inside.size
        left.set_title(f"{ratio.size} rounds" + (f" ({cut} beyond the 1st/99th percentile "
                                                 f"not drawn)" if cut else ""), fontsize=9)
        left.legend(fontsize=8)
        right.errorbar([0], [med], yerr=[[med - lo], [hi - med]], fmt="o", color="k",
                       capsize=8, label=f"median {med:+.2f}%")
        right.axhline(0, color="#2ca02c", lw=1, ls=":")
        right.fill_between([-0.5, 0.5], lo, hi, color="#bbbbbb", alpha=0.4,
                           label=f"{confidence:.0%} CI {lo:+.2f} to {hi:+.2f}%")
        pad = max(hi - lo, 0.2)
        right.set_ylim(min(lo, 0) - pad, max(hi, 0) + pad)
        right.set_xlim(-1, 1)
        right.set_xticks([])
        right.set_ylabel("overhead %")
        right.set_title("estimate (bootstrap over rounds)", fontsize=9)
        right.legend(fontsize=8, loc="upper right")
    fig.suptitle("Instrumentation overhead: instrumented vs disabled twin, interleaved rounds")
    return fig
