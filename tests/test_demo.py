"""The demo: its report files parse, its figures render, --serve serves while it runs."""

import io
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
from numba import njit

import jsonschema
import pytest
from matplotlib.image import imread
from prometheus_client.parser import text_string_to_metric_families

from engram_numba import CognitiveEvents, Counter, MetricSet, atomic_load
from engram_numba.engram.demo import run_demo
from engram_numba.export.json import schema

from .processes import free_port


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = run_demo(out, nodes=3000, trials=40_000, rounds=8, seed=3, stream=io.StringIO())
    return out, summary


def test_report_files(report):
    out, summary = report
    assert {"metrics.prom", "events.jsonl", "trace.json", "summary.json", "histograms.png",
            "event_rates.png", "timeline.png", "rings.png", "overhead.png"} <= \
        {p.name for p in out.iterdir()}
    assert json.loads((out / "summary.json").read_text()) == summary


def test_metrics_prom_matches_the_summary(report):
    out, summary = report
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families((out / "metrics.prom").read_text())
               for s in f.samples}
    for t, n in summary["counts"]["priming"].items():
        assert samples[("engram_priming_events_total", (("priming_type", t),))] == n
    assert samples[("engram_reconsolidation_events_total", ())] == \
        summary["counts"]["reconsolidation_events"]
    assert samples[("engram_priming_strength_count", ())] == summary["histograms"][
        "engram_priming_strength"]["count"]


def test_events_jsonl_is_schema_valid_and_complete(report):
    out, summary = report
    lines = (out / "events.jsonl").read_text().splitlines()
    assert len(lines) == summary["tracing"]["written"] > 0
    validator = jsonschema.Draft202012Validator(schema(CognitiveEvents))
    for line in lines[:2000]:
        validator.validate(json.loads(line))


def test_chrome_trace(report):
    out, _ = report
    doc = json.loads((out / "trace.json").read_text())
    assert set(doc) >= {"traceEvents", "displayTimeUnit", "otherData"}
    phases = {e["ph"] for e in doc["traceEvents"]}
    assert phases == {"M", "i", "C"}
    assert all({"ph", "pid", "tid", "name"} <= set(e) for e in doc["traceEvents"])


def test_figures_are_real_images(report):
    out, _ = report
    for name in ("histograms.png", "event_rates.png", "timeline.png", "rings.png", "overhead.png"):
        image = imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 400
        assert image.std() > 0.01, f"{name} is blank"


def test_summary_figures(report):
    _, s = report
    assert s["workload"]["trials"] == 40_000
    assert 0 < s["reconsolidation_window_hit_rate"] < 1 and s["spacing_ratio"] > 1
    o = s["overhead"]
    assert o["rounds"] == len(o["round_percent"]) == 8 and o["confidence"] == 0.95
    assert o["ci_percent"][0] <= o["median_percent"] <= o["ci_percent"][1]
    assert s["tracing"]["dropped"] == 0 and s["tracing"]["no_free_ring"] == 0


def test_serve_while_running(tmp_path):
    port = free_port()
    seen = []
    done = threading.Event()

    def scrape():
        url = f"http://127.0.0.1:{port}/metrics"
        while not done.is_set():
            try:
                text = urllib.request.urlopen(url, timeout=2).read().decode()
            except OSError:
                continue
            total = sum(s.value for f in text_string_to_metric_families(text)
                        for s in f.samples if s.name == "engram_priming_events_total")
            seen.append(total)

    t = threading.Thread(target=scrape)
    t.start()
    try:
        run_demo(tmp_path, nodes=3000, trials=200_000, rounds=8, serve=True, port=port,
                 figures=False, stream=io.StringIO())
    finally:
        done.set()
        t.join()
    assert any(v > 0 for v in seen), "never scraped a running workload"


def test_demo_serve_goes_on_serving_after_the_workload_until_ctrl_c(tmp_path):
    """The command line's --serve: the final values stay on /metrics after the report,
    the demo says so, and Ctrl-C ends it cleanly."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram_numba", "demo", "--nodes", "3000", "--trials", "2000",
         "--rounds", "4", "--serve", "--port", str(port), "--no-figures", "--out",
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 600                 # a guard only (compiles if uncached)
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "still serving" in line:
                break
        assert any("still serving" in x and "Ctrl-C" in x for x in lines), lines[-5:]
        summary = json.loads((tmp_path / "summary.json").read_text())
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
        total = sum(s.value for f in text_string_to_metric_families(text.decode())
                    for s in f.samples if s.name == "engram_priming_events_total")
        assert total == sum(summary["counts"]["priming"].values()) > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_progress_bar_follows_a_counter_a_nogil_kernel_increments():
    from engram_numba import progress
    m = Steps()
    flag = np.zeros(1, np.int64)
    out = io.StringIO()
    with progress(m.done, total=10_000, desc="work", unit="steps", bar="plain", file=out,
                  interval=0.001) as bar:
        worker = threading.Thread(target=count_until, args=(m, flag, 10_000))
        worker.start()
        deadline = time.monotonic() + 120                 # a guard only
        while bar.done < 5_000 and time.monotonic() < deadline:
            time.sleep(0.001)
        seen_mid = bar.done                               # read while the kernel runs
        flag[0] = 1
        worker.join()
    assert 5_000 <= seen_mid < 10_000 and bar.done == 10_000
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("work: [") and "100.0%  10,000/10,000 steps" in last


class Steps(MetricSet, name="steps"):
    done = Counter("steps_done_total", "Steps done")


@njit(nogil=True)
def count_until(m, flag, n):
    """Half the steps, then wait for the test to have seen them, then the rest."""
    for _ in range(n // 2):
        m.done.inc()
    while atomic_load(flag, 0, "relaxed") == 0:
        pass
    for _ in range(n - n // 2):
        m.done.inc()


def test_overhead_estimate_covers_the_true_median_and_refuses_bad_input():
    import numpy as np
    import pytest

    from engram_numba._stats import overhead_estimate
    rng = np.random.default_rng(5)
    base = rng.uniform(0.9, 1.1, 400)
    est = overhead_estimate(base * 1.02 * rng.normal(1, 0.01, 400), base)
    assert est["ci_percent"][0] < 2.0 < est["ci_percent"][1]
    assert est["ci_percent"][1] - est["ci_percent"][0] < 1.0 and est["rounds"] == 400
    # noisier rounds, wider interval
    noisy = overhead_estimate(base * 1.02 * rng.normal(1, 0.05, 400), base)
    assert noisy["ci_percent"][1] - noisy["ci_percent"][0] > \
        est["ci_percent"][1] - est["ci_percent"][0]
    for a, b in (([1.0], [1.0]), ([1.0, 2.0], [1.0]), ([1.0, 2.0], [0.0, 1.0]),
                 ([np.nan, 1.0], [1.0, 1.0])):
        with pytest.raises(ValueError):
            overhead_estimate(a, b)
