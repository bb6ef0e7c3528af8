"""A real Prometheus server scrapes `engram-numba metrics serve` and answers PromQL.

Needs the `prometheus` binary (Debian package `prometheus`; .ci/run installs it).
"""

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from .processes import Server, Worker, free_port, wait_for

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus server not installed (Debian: apt-get install prometheus)")

STEP = 100          # events per step: one full cycle of the worker's 100 strengths
STEPS_PER_S = 10    # -> 1000 priming events per second


class Prometheus:
    def __init__(self, tmp_path, target, features=(), extra_targets=()):
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        targets = ", ".join(f"'{t}'" for t in (target, *extra_targets))
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: engram\n    static_configs:\n"
            f"      - targets: [{targets}]\n")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"]
            + [f"--enable-feature={f}" for f in features],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def value(self, query):
        result = self.api("query", query=query)["result"]
        assert len(result) == 1, (query, result)
        return float(result[0]["value"][1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_prometheus_scrapes_and_answers_promql(tmp_path):
    path = tmp_path / "engram.metrics"
    with Worker(path, "step", STEP) as worker, Server(path) as server:
        prom = Prometheus(tmp_path, server.url.split("/")[2])
        try:
            wait_for(lambda: any(t["health"] == "up"
                                 for t in prom.api("targets")["activeTargets"]), timeout=60)
            # drive the worker at about 1000 events/s until Prometheus holds 8 s of scrapes;
            # the rate is checked against what was actually recorded, not the intended pace
            stop = threading.Event()
            log = [(time.time(), 0)]

            def drive():
                next_t = time.monotonic()
                while not stop.is_set():
                    total = worker.step()
                    log.append((time.time(), total))
                    next_t += 1 / STEPS_PER_S
                    time.sleep(max(0.0, next_t - time.monotonic()))

            driver = threading.Thread(target=drive)
            driver.start()
            try:
                wait_for(lambda: prom.value('count_over_time(engram_priming_events_total'
                                            '{priming_type="semantic"}[8s])') >= 7, timeout=300)
                result = prom.api("query", query="sum(rate(engram_priming_events_total[8s]))")
                at, rate = result["result"][0]["value"]
                at, rate = float(at), float(rate)
            finally:
                stop.set()
                driver.join()
            times = np.array([t for t, _ in log])
            counts = np.array([c for _, c in log])
            actual = (np.interp(at, times, counts) - np.interp(at - 8, times, counts)) / 8
            recorded = log[-1][1]
            # every event so far, once a scrape after the last step has landed
            total = wait_for(lambda: prom.value("sum(engram_priming_events_total)") == recorded
                             and recorded, timeout=120)
            assert total == recorded
            semantic = prom.value('engram_priming_events_total{priming_type="semantic"}')
            assert semantic == len(range(0, recorded, 3))
            assert rate == pytest.approx(actual, rel=0.25)
            p95 = prom.value("histogram_quantile(0.95, engram_priming_strength_bucket)")
            strengths = np.linspace(0.01, 1.0, 100)   # recorded in whole cycles
            exact = np.quantile(np.tile(strengths, recorded // 100), 0.95, method="inverted_cdf")
            assert p95 == pytest.approx(exact, rel=0.05)
            print(f"prometheus: total {total:.0f} (recorded {recorded}), rate {rate:.1f}/s "
                  f"(recorded {actual:.1f}/s), p95 {p95:.4f} (exact {exact:.4f})")
        finally:
            prom.stop()


def test_native_histograms_reach_a_real_prometheus(tmp_path):
    """With native histograms on, Prometheus scrapes the protobuf format, stores the
    exponential histograms as native histograms and answers histogram_quantile within
    the bucket holding the exact quantile."""
    from engram_numba.engram.metrics import CognitivePatternMetrics
    path = tmp_path / "engram.metrics"
    with Worker(path, "step", STEP) as worker, Server(path) as server:
        prom = Prometheus(tmp_path, server.url.split("/")[2], features=["native-histograms"])
        try:
            wait_for(lambda: any(t["health"] == "up"
                                 for t in prom.api("targets")["activeTargets"]), timeout=60)
            query = "histogram_quantile(0.95, rate(engram_priming_strength[1m]))"

            recorded = [0]

            def answered():
                recorded[0] = worker.step()    # whole cycles of the 100 strengths
                result = prom.api("query", query=query)["result"]
                return result and np.isfinite(float(result[0]["value"][1])) and result

            result = wait_for(answered, timeout=300, interval=0.3)
            p95 = float(result[0]["value"][1])
            raw = prom.api("query", query="engram_priming_strength")["result"]
            assert len(raw) == 1 and "histogram" in raw[0], raw      # stored as native
            assert prom.api("query", query="engram_priming_strength_bucket")["result"] == []
            count = prom.value("histogram_count(engram_priming_strength)")
            assert 0 < count <= recorded[0]
            scheme = CognitivePatternMetrics.priming_strength.scheme
            index = scheme.index(0.95)                # the bucket of the exact p95, 0.95
            lo = 2.0 ** (index / 2 ** scheme.scale)
            hi = 2.0 ** ((index + 1) / 2 ** scheme.scale)
            assert lo < p95 <= hi * (1 + 1e-12), (p95, lo, hi)
            print(f"prometheus native histogram: p95 {p95:.4f} (exact 0.95, bucket "
                  f"({lo:.4f}, {hi:.4f}], error bound {scheme.relative_error:.2%})")
        finally:
            prom.stop()
