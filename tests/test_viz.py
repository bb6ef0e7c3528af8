"""Figures render (also from empty inputs) and notebook tables show the values."""

import io

import numpy as np
from numba import njit

from engram_numba import CognitivePatternMetrics, CognitiveTracer, TracingConfig, viz
from engram_numba.engram.events import EVENT_DTYPE


@njit
def fill(m, tr, n):
    for i in range(n):
        m.record_priming(i % 3, 0.01 + (i % 90) / 100)
        m.record_retention_improvement(0.1 - (i % 7) / 30)
        tr.trace_priming(i % 3, 0.5, i, i)
        tr.trace_interference(i % 3, 0.3, i, 2)


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_every_figure_renders_with_data_and_without():
    m, tr = CognitivePatternMetrics(), CognitiveTracer(TracingConfig(ring_buffer_size=4096,
                                                                     max_threads=2))
    empty = np.empty(0, EVENT_DTYPE)
    blank = [_png(f) for f in (viz.histograms_figure(m), viz.event_rates_figure(empty),
                               viz.timeline_figure(empty), viz.rings_figure(tr.stats()))]
    fill(m, tr, 3000)
    events = tr.drain()
    figures = [viz.histograms_figure(m), viz.event_rates_figure(events),
               viz.timeline_figure(events), viz.rings_figure(tr.stats()),
               viz.overhead_figure([1.1, 1.2, 1.05], [1.0, 1.1, 1.0])]
    assert len(figures[0].axes) == 7
    for fig in figures:
        data = _png(fig)
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert all(len(b) > 5_000 for b in blank)
    assert "median +9.09%" in [t.get_text() for t in figures[4].axes[1].get_legend().get_texts()]


def test_figures_are_honest_and_labelled():
    """The overhead figure shows the estimate with its interval (not per-round bars on a
    scale a hundred times the median); the rings figure counts what a run's summary
    counts and tells fill from volume; the timeline names threads and says how many
    points it drew; every histogram panel has axis labels and several ticks."""
    from engram_numba._stats import overhead_estimate
    rng = np.random.default_rng(1)
    off = rng.uniform(1.0, 1.2, 400)
    on = off * (1.002 + rng.normal(0, 0.3, 400).clip(-0.6, 1.6))
    fig = viz.overhead_figure(on, off)
    est = overhead_estimate(on, off)
    spread, estimate = fig.axes
    lo, hi = est["ci_percent"]
    labels = [t.get_text() for t in estimate.get_legend().get_texts()]
    assert f"95% CI {lo:+.2f} to {hi:+.2f}%" in labels
    assert f"median {est['median_percent']:+.2f}%" in labels
    y0, y1 = estimate.get_ylim()
    assert y0 <= lo and hi <= y1 and y1 - y0 < 5 * max(hi - lo, 0.2) + abs(hi) + abs(lo)
    assert spread.get_xlabel() and spread.get_ylabel() == "rounds"

    m = CognitivePatternMetrics()
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1024, max_threads=2))
    fill(m, tr, 100)                        # a warm-up, drained
    tr.drain()
    start = tr.stats()
    fill(m, tr, 1000)                       # 2,000 events into a 1,024-event ring
    stats = tr.stats()
    rings = viz.rings_figure(stats, since=start)
    top, bottom = rings.axes
    assert top.get_title() == "Rings: 2,000 events written, 976 dropped, 0 without a free ring"
    assert "peak fill" in bottom.get_ylabel() and bottom.get_ylim()[1] >= 100
    assert [p.get_height() for p in bottom.patches] == [100.0]
    assert "thread" in bottom.get_xticklabels()[0].get_text()

    events = tr.drain()
    line = viz.timeline_figure(events, max_points=300).axes[0]
    ticks = [t.get_text() for t in line.get_yticklabels()]
    assert ticks == [f"thread {int(events['thread'][0])} (ring {int(events['ring'][0])})"]
    drawn = sum(c.get_offsets().shape[0] for c in line.collections)
    assert drawn <= 300 and f"(300 of {events.size:,} events drawn)" in line.get_title()

    for ax in viz.histograms_figure(m).axes:
        if not ax.has_data():
            continue
        assert ax.get_xlabel() and ax.get_ylabel()
        ax.figure.canvas.draw()
        labelled = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(labelled) >= 2, (ax.get_title(), [t.get_text() for t in labelled])


def test_notebook_tables():
    m, tr = CognitivePatternMetrics(), CognitiveTracer(TracingConfig(ring_buffer_size=4096,
                                                                     max_threads=2))
    fill(m, tr, 100)
    table = m._repr_html_()
    assert "engram_priming_events_total" in table and "priming_type=semantic" in table
    assert "p95=" in table and "<table>" in table
    # rendered from the families: derived series and constant labels are rows too
    assert "engram_priming_strength_excluded_total" in table and "reason=nan" in table
    assert "engram_invalid_records_total" in table
    labelled = CognitivePatternMetrics(const_labels={"worker": "<3>"})
    snap_table = labelled.collect()._repr_html_()
    assert "worker=&lt;3&gt;" in snap_table and "(snapshot)" in snap_table
    assert "written 200" in tr._repr_html_()
    assert "disabled" in CognitiveTracer.disabled()._repr_html_()
    assert "disabled" in CognitivePatternMetrics.disabled()._repr_html_()


def test_labelled_histograms_are_titled_by_label_and_fitted_to_the_data():
    from engram_numba import Histogram, MetricSet

    class Routes(MetricSet, name="routes"):
        latency = Histogram("route_latency", "Latency", unit="seconds",
                            labels={"route": ["home", "search"]}, range=(1e-6, 1e3))

    m = Routes()
    for v in (0.1, 0.2, 0.5):
        m.latency.observe(v, "home")
    m.latency.observe(3.0, "search")
    fig = viz.histograms_figure(m)
    axes = fig.get_axes()
    titles = [ax.get_title() for ax in axes[:2]]
    assert "route=home" in titles[0] and "route=search" in titles[1]
    lo, hi = axes[0].get_xlim()
    assert 0.05 < lo < 0.1 and 0.5 < hi < 1.0, (lo, hi)       # not 1e-6 .. 1e3
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_figures_render_as_cell_results_in_a_fresh_kernel(tmp_path):
    """No %matplotlib magic: the returned figure itself becomes an image/png output."""
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from engram_numba import CognitivePatternMetrics, viz\n"
        "m = CognitivePatternMetrics()\n"
        "m.record_priming(0, 0.4)\n"
        "viz.histograms_figure(m)")]
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs


def test_without_matplotlib_the_tables_work_and_figures_say_what_to_install(tmp_path):
    """matplotlib is the [viz] extra: checked in a process where it cannot be imported."""
    import subprocess
    import sys
    code = """
import sys
sys.modules["matplotlib"] = None            # as if it were not installed
from engram_numba import CognitivePatternMetrics, viz
m = CognitivePatternMetrics()
m.record_priming(0, 0.5)
assert "priming" in m._repr_html_()
try:
    viz.histograms_figure(m)
except ImportError as exc:
    print("refused:", exc)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "refused: engram_numba.viz figures need matplotlib: pip install " \
           "'engram-numba[viz]'" in r.stdout
