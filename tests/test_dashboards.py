"""The shipped Grafana dashboard and alert rules: promtool checks and unit-tests the
rules, and every dashboard query is answered by a real Prometheus that scrapes a
running workload.

Needs `promtool` and `prometheus` (Debian package `prometheus`; .ci/run installs it).
"""

import json
import math
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from engram_numba import CognitivePatternMetrics, InterferenceType, PrimingType
from engram_numba.export import MetricsServer

from .processes import wait_for

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerts" / "engram.rules.yml"
RULE_TESTS = ROOT / "alerts" / "engram.rules.test.yml"
DASHBOARD = ROOT / "dashboards" / "engram-cognitive.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                    "(Debian: apt-get install prometheus)")


def queries():
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p["targets"]]


def test_every_dashboard_query_names_exported_metrics():
    exported = set()
    for fam in CognitivePatternMetrics().collect().families():
        exported.add(fam.name)
        if fam.kind.name == "histogram":
            exported.add(fam.name + "_bucket")
    used = {name for _, expr in queries() for name in re.findall(r"\b(engram_[a-z_]+)", expr)}
    assert used and used <= exported, used - exported
    assert len(queries()) >= 12


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests(tmp_path):
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                           cwd=RULES.parent)
        assert r.returncode == 0, r.stdout + r.stderr
    # the unit tests can fail: a rule with another threshold does not pass them
    (tmp_path / "engram.rules.yml").write_text(RULES.read_text().replace("> 90", "> 99"))
    (tmp_path / "engram.rules.test.yml").write_text(RULE_TESTS.read_text())
    r = subprocess.run([PROMTOOL, "test", "rules", "engram.rules.test.yml"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode != 0 and "EngramEventBufferNearlyFull" in r.stdout + r.stderr


def alert_queries():
    import yaml
    doc = yaml.safe_load(RULES.read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_every_dashboard_query_answers_against_a_real_prometheus(tmp_path):
    """Two Prometheus servers scrape one running workload: one stores classic histograms
    (text format, ``_bucket`` series), the other native histograms (protobuf, no
    ``_bucket`` series).  Every dashboard query answers on both, and every metric the
    alert rules use is there, with each rule's expression accepted."""
    from .test_prometheus_server import Prometheus
    m = CognitivePatternMetrics()
    m.event_buffer_utilization.set(12.0)
    m.overhead_percent.set(0.4)
    stop = threading.Event()

    def workload():                      # every kind of cognitive record, continuously
        i = 0
        while not stop.is_set():
            i += 1
            m.record_priming(PrimingType(i % 3), 0.1 + (i % 9) / 10)
            m.record_interference(InterferenceType(i % 3), 0.05 * (1 + i % 5))
            m.record_reconsolidation((i % 15) / 10)
            m.record_reconsolidation_plasticity(0.2 + (i % 7) / 10)
            m.record_drm_critical_lure() if i % 10 == 0 else m.record_drm_list_item()
            m.record_reconstruction_confidence(0.3 + (i % 6) / 10)
            m.record_massed_practice() if i % 3 == 0 else m.record_distributed_practice()
            stop.wait(0.002)

    with MetricsServer(m) as server:
        thread = threading.Thread(target=workload)
        thread.start()
        target = server.url.split("/")[2]
        servers = {}
        try:
            for kind, features in (("classic", ()), ("native", ("native-histograms",))):
                (tmp_path / kind).mkdir()
                servers[kind] = Prometheus(tmp_path / kind, target, features=features)
            for kind, prom in servers.items():
                wait_for(lambda: any(t["health"] == "up"
                                     for t in prom.api("targets")["activeTargets"]), timeout=120)
            for kind, prom in servers.items():
                for title, expr in queries():
                    promql = expr.replace("$__rate_interval", "1m")

                    def answered():
                        result = prom.api("query", query=promql)["result"]
                        values = [float(r["value"][1]) for r in result]
                        return values and all(math.isfinite(v) for v in values) and values
                    values = wait_for(answered, timeout=120)
                    assert values, (kind, title, promql)
                for alert, expr in alert_queries():
                    prom.api("query", query=expr)            # a valid expression here
                    for name in set(re.findall(r"\b(engram_[a-z_]+)", expr)):
                        assert wait_for(lambda: prom.api("query", query=f"count({name})")[
                            "result"], timeout=120), (kind, alert, name)
            # each server stored the histograms its own way
            classic, native = servers["classic"], servers["native"]
            assert classic.api("query", query="engram_priming_strength_bucket")["result"]
            assert native.api("query", query="engram_priming_strength_bucket")["result"] == []
            raw = native.api("query", query="engram_priming_strength")["result"]
            assert raw and "histogram" in raw[0]
        finally:
            stop.set()
            thread.join()
            for prom in servers.values():
                prom.stop()
