"""``engram-numba demo``: the reference workload, instrumented, measured and reported.

It runs :mod:`engram_numba.workload` in parallel with the cognitive metrics and
tracer, in many short rounds that each run a slice of the trials instrumented
and on a disabled twin (the same kernel, which then compiles to the same code
as no instrumentation), in alternating order, to measure the overhead: the
median of the rounds' ratios with a bootstrap 95 % confidence interval.  A
background collector streams events to files meanwhile.  The report folder gets
``metrics.prom``, ``events.jsonl``, ``trace.json`` (Perfetto / chrome://tracing),
``summary.json`` and PNG figures.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..export.chrome import ChromeTraceExporter
from ..export.json import JsonLinesExporter, events_to_jsonl
from ..export.prometheus import exposition
from ..metrics.kinds import HISTOGRAM
from .._progress import progress
from .._stats import overhead_estimate
from ..tracing import TraceCollector, TracingConfig
from ..tracing.schema import concat
from .events import CognitiveEvents, CognitiveTracer
from .metrics import CognitivePatternMetrics, InterferenceType, PrimingType
from .workload import build_graph, run_trials

__all__ = ["run_demo", "DEMO_SAMPLE_RATES"]

# sampled like engram's production preset, scaled to keep the report files small
DEMO_SAMPLE_RATES = {"priming": 0.002, "interference": 0.005, "reconsolidation": 0.02,
                     "false_memory": 0.2}


class _Sample:
    """Collector exporter keeping the first ``limit`` events in memory (for figures)."""

    name = "figures"

    def __init__(self, limit: int):
        self.limit, self.batches, self.kept = limit, [], 0

    def export(self, events):
        room = self.limit - self.kept
        if room > 0:
            self.batches.append(events[:room].copy())
            self.kept += min(room, events.size)

    def events(self):
        return concat(self.batches, CognitiveEvents.layout)


# One long-lived thread runs every round: a recording thread keeps its ring for the
# tracer's lifetime, so starting a new thread per round would use up the rings.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engram-workload")


def _timed(args):
    t = time.perf_counter()
    checksum = run_trials(*args)
    return checksum, time.perf_counter() - t


def _run_chunk(args):
    """Run one slice on the worker thread (the caller waits, without the GIL)."""
    return _worker.submit(_timed, args).result()


def run_demo(out_dir="report", *, nodes: int = 20_000, trials: int | None = None,
             duration: float = 20.0, threads: int | None = None, seed: int = 7,
             rounds: int = 400, serve: bool = False, port: int = 9464,
             metrics_path: str | None = None, trace_path: str | None = None,
             figures: bool = True, stream=None, serve_after: bool = False) -> dict:
    """Run the demo; returns the summary (also written to ``out_dir/summary.json``).

    ``trials`` fixes the work (deterministic for a seed); otherwise the run is
    sized from a short calibration to take about ``duration`` seconds in total
    (instrumented and disabled halves).  ``serve=True`` serves ``/metrics`` on
    ``port`` while the workload runs; with ``serve_after=True`` (``engram-numba demo
    --serve``) it goes on serving the final values after the report, until Ctrl-C.
    """
    import numba
    stream = stream or sys.stderr
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=stream, flush=True))
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise ValueError(f"rounds must be an integer of at least 2, got {rounds!r}")
    if trials is not None and (isinstance(trials, bool) or int(trials) < rounds):
        raise ValueError(f"trials must be at least {rounds} (one per interleaved round), "
                         f"got {trials!r}")
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration!r}")
    if threads:
        available = numba.config.NUMBA_NUM_THREADS
        if threads > available:
            say(f"note: --threads {threads} reduced to {available}, the threads numba has here "
                f"(NUMBA_NUM_THREADS)")
        numba.set_num_threads(min(threads, available))
    n_threads = numba.get_num_threads()

    graph = build_graph(nodes, seed)
    say(f"memory graph: {graph.nodes:,} memories, {graph.edges:,} associations; "
        f"{n_threads} threads")
    metrics = (CognitivePatternMetrics.create(metrics_path) if metrics_path
               else CognitivePatternMetrics())
    config = TracingConfig(sample_rates=DEMO_SAMPLE_RATES, ring_buffer_size=1 << 14,
                           max_threads=n_threads + 4, export_batch_size=5_000,
                           export_interval_ms=1000, path=trace_path)
    tracer = CognitiveTracer(config)
    disabled_m, disabled_t = CognitivePatternMetrics.disabled(), CognitiveTracer.disabled()
    sample = _Sample(200_000)
    for name in ("events.jsonl", "trace.json"):
        (out / name).unlink(missing_ok=True)
    collector = TraceCollector(tracer, [JsonLinesExporter(out / "events.jsonl"),
                                        ChromeTraceExporter(out / "trace.json", max_events=60_000),
                                        sample], metrics=metrics)
    server = None
    if serve:
        from ..export.server import MetricsServer
        server = MetricsServer(metrics, collector.export_metrics, port=port).start()
        say(f"serving {server.url} while the workload runs")

    g = (graph.indptr, graph.indices, graph.weights)
    progress_arr = np.zeros(1, dtype=np.int64)
    t0, cpu0 = time.perf_counter(), time.process_time()
    _worker.submit(run_trials, metrics, tracer, *g, 0, 64, seed, progress_arr).result()
    _worker.submit(run_trials, disabled_m, disabled_t, *g, 0, 64, seed, progress_arr).result()
    warm = tracer.drain()            # the encoder compiles now, not in the collector's CPU time
    events_to_jsonl(warm[:64] if warm.size else np.zeros(1, dtype=warm.dtype))
    compile_s = time.perf_counter() - t0
    compile_cpu_s = time.process_time() - cpu0
    say(f"compiled the instrumented and disabled kernels in {compile_s:.1f} s "
        f"({compile_cpu_s:.1f} s of CPU time; cached for the next run)")
    metrics.reset()
    tracer_start = tracer.stats()          # the run's counts are those after this

    if trials is None:
        probe = 20_000
        _, sec = _run_chunk((metrics, tracer, *g, 0, probe, seed, progress_arr))
        trials = max(rounds * 64, int(probe / sec * duration / 2))
        metrics.reset()
        tracer.drain()
        tracer_start = tracer.stats()
    trials = int(trials)
    collector.start()
    say(f"running {trials:,} trials twice, in {rounds} interleaved rounds: instrumented, and on "
        f"the disabled twin (the same kernel compiled without the calls)")
    bounds = np.linspace(0, trials, rounds + 1).astype(np.int64)
    on_times, off_times, checksums = [], [], []
    run_start = time.perf_counter()
    # the kernels' own trial counter drives the bar (engram_numba.progress)
    with progress(progress_arr, total=2 * trials, unit="trial runs", file=stream,
                  postfix=lambda: f"primed {metrics.priming_events_total():,}"):
        for i in range(rounds):
            first, count = int(bounds[i]), int(bounds[i + 1] - bounds[i])
            order = ("on", "off") if i % 2 == 0 else ("off", "on")   # ABBA: no order bias
            for which in order:
                objs = (metrics, tracer) if which == "on" else (disabled_m, disabled_t)
                checksum, sec = _run_chunk((*objs, *g, first, count, seed, progress_arr))
                (on_times if which == "on" else off_times).append(sec)
                if which == "on":
                    checksums.append(checksum)
    wall = time.perf_counter() - run_start
    collector.stop()
    if server is not None and not serve_after:
        server.stop()

    # -- report -------------------------------------------------------------------
    (out / "metrics.prom").write_text(exposition(metrics))
    stats = tracer.stats()
    overhead = overhead_estimate(on_times, off_times)
    summary = _summary(metrics, stats, collector, trials, n_threads, seed, nodes, graph,
                       on_times, off_times, overhead, compile_s, wall, float(np.sum(checksums)),
                       tracer_start)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if figures:
        try:
            _figures(out, metrics, sample.events(), stats, tracer_start, on_times, off_times)
        except ImportError as exc:          # matplotlib is the [viz] extra
            say(f"note: no figures: {exc}")
        summary["files"] = sorted(p.name for p in out.iterdir())
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary, out, stream)
    if server is not None and serve_after:
        say(f"the workload is done; still serving {server.url} (the final values): "
            f"Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return summary


def _summary(m, stats, collector, trials, threads, seed, nodes, graph, on, off, overhead,
             compile_s, wall, checksum, start):
    hists = {}
    for attr, spec in m.metrics().items():
        if spec.kind is HISTOGRAM:
            h = getattr(m, attr).read()
            hists[spec.name] = {"count": h.count, "mean": None if not h.count else h.mean,
                                **{f"p{int(q * 100)}": (h.quantile(q) if h.count else None)
                                   for q in (0.5, 0.95, 0.99)}}
    instrumented_s = float(np.sum(on))
    counts = {
        "priming": {t.name.lower(): m.priming_type_count(t) for t in PrimingType},
        "interference": {t.name.lower(): m.interference_count(t) for t in InterferenceType},
        "reconsolidation_events": m.reconsolidation_events_total(),
        "reconsolidation_modifications": m.reconsolidation_modifications.value(),
        "false_memory_generations": m.false_memory_generations_total(),
        "drm_critical_lure_recalls": m.drm_critical_lure_recalls.value(),
        "drm_list_item_recalls": m.drm_list_item_recalls.value(),
        "massed_practice": m.massed_practice.value(),
        "distributed_practice": m.distributed_practice.value(),
    }
    exporters = collector.stats()["exporters"]
    return {
        "workload": {"trials": trials, "memories": nodes, "associations": graph.edges,
                     "threads": threads, "seed": seed, "checksum": checksum},
        "seconds": {"compile": compile_s, "instrumented": instrumented_s,
                    "disabled": float(np.sum(off)), "wall": wall},
        "counts": counts,
        "rates_per_second": {"priming": m.priming_events_total() / instrumented_s,
                             "interference": m.interference_detections_total() / instrumented_s,
                             "reconsolidation": m.reconsolidation_events_total() / instrumented_s,
                             "trials": trials / instrumented_s},
        "reconsolidation_window_hit_rate": m.reconsolidation_window_hit_rate(),
        "drm_false_alarm_rate": m.drm_false_alarm_rate(),
        "spacing_ratio": m.spacing_ratio(),
        "priming_mean_strength": m.priming_mean_strength(),
        "histograms": hists,
        "tracing": {"written": stats["total"]["written"] - start["total"]["written"],
                    "delivered": stats["total"]["delivered"] - start["total"]["delivered"],
                    "dropped": stats["total"]["dropped"] - start["total"]["dropped"],
                    "no_free_ring": stats["no_ring"] - start["no_ring"],
                    "exported": {k: v["exported_events"] for k, v in exporters.items()},
                    "export_dropped": {k: v["dropped_events"] for k, v in exporters.items()},
                    "sample_rates": dict(DEMO_SAMPLE_RATES)},
        "overhead": {**overhead,
                     "round_percent": [float(x) for x in (np.array(on) / np.array(off) - 1) * 100],
                     "method": "interleaved rounds in alternating order: instrumented vs disabled "
                               "objects (identical machine code to an uninstrumented kernel); "
                               "median of the rounds' ratios, percentile bootstrap interval"},
        "collector": {"cpu_seconds": collector.stats()["cpu_seconds"],
                      "percent_of_one_core": 100 * collector.stats()["cpu_seconds"] / wall},
        "invalid_records": m.invalid_records,
    }


def _figures(out, metrics, events, stats, start, on, off):
    from .. import viz
    for name, fig in (("histograms.png", viz.histograms_figure(metrics)),
                      ("event_rates.png", viz.event_rates_figure(events)),
                      ("timeline.png", viz.timeline_figure(events)),
                      ("rings.png", viz.rings_figure(stats, since=start)),
                      ("overhead.png", viz.overhead_figure(on, off))):
        fig.savefig(out / name, dpi=110)


def _print_summary(s, out, stream=None):
    w = s["workload"]
    p = print
    p(f"\nengram-numba demo: {w['trials']:,} recall trials over {w['memories']:,} memories "
      f"on {w['threads']} threads, run twice ({2 * w['trials']:,} trial runs: instrumented and "
      f"disabled twin)")
    p(f"  instrumented {s['seconds']['instrumented']:.2f} s, disabled twin "
      f"{s['seconds']['disabled']:.2f} s -> overhead {s['overhead']['median_percent']:+.2f}% "
      f"(median of {s['overhead']['rounds']} interleaved rounds, 95% CI "
      f"{s['overhead']['ci_percent'][0]:+.2f} to {s['overhead']['ci_percent'][1]:+.2f}%; "
      f"the collector, "
      f"draining and writing files meanwhile, used {s['collector']['percent_of_one_core']:.1f}% "
      f"of a core)")
    c = s["counts"]
    p(f"  priming      {sum(c['priming'].values()):>12,}  "
      + "  ".join(f"{k} {v:,}" for k, v in c["priming"].items()))
    p(f"  interference {sum(c['interference'].values()):>12,}  "
      + "  ".join(f"{k} {v:,}" for k, v in c["interference"].items()))
    p(f"  reconsolidation {c['reconsolidation_events']:>9,}  window hit rate "
      f"{s['reconsolidation_window_hit_rate']:.3f}, modifications {c['reconsolidation_modifications']:,}")
    p(f"  DRM lists    {c['false_memory_generations']:>12,}  false-alarm rate "
      f"{s['drm_false_alarm_rate']:.3f}")
    p(f"  spacing      {c['massed_practice'] + c['distributed_practice']:>12,}  "
      f"distributed/massed {s['spacing_ratio']:.2f}")
    p("  histogram                              count      P50      P95      P99")
    for name, h in s["histograms"].items():
        f = (lambda v: "       -" if v is None else f"{v:8.4f}")
        p(f"    {name[7:]:34} {h['count']:>9,} {f(h['p50'])} {f(h['p95'])} {f(h['p99'])}")
    t = s["tracing"]
    p(f"  traced events {t['written']:,} written, {t['dropped']:,} dropped in rings, "
      f"{t['no_free_ring']:,} without a ring; exported {t['exported']}")
    p(f"  report: {out}/ ({', '.join(s.get('files', []))})")


