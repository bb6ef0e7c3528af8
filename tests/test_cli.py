"""The command line: demo output and reading file-backed sets."""

import json
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from .test_metric_set import Shop, _data, record_everything


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "engram_numba", *args],
                          capture_output=True, text=True, timeout=300)


def test_demo_command_writes_a_report(tmp_path):
    r = run_cli("demo", "--out", str(tmp_path / "r"), "--nodes", "2000", "--trials", "20000",
                "--no-figures")
    assert r.returncode == 0, r.stderr
    assert "recall trials over 2,000 memories" in r.stdout
    assert "overhead" in r.stdout and "report:" in r.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["workload"]["trials"] == 20000
    families = {f.name for f in text_string_to_metric_families((tmp_path / "r" / "metrics.prom").read_text())}
    assert "engram_priming_events" in families


def test_metrics_show_reads_a_file_written_by_another_process(tmp_path):
    path = tmp_path / "shop.metrics"
    m = Shop.create(path)
    record_everything(m, *_data(40))
    r = run_cli("metrics", "show", "--attach", str(path))
    assert r.returncode == 0, r.stderr
    samples = {s.name: s.value for f in text_string_to_metric_families(r.stdout)
               for s in f.samples if not s.labels}
    assert samples["visits_total"] == 80
    r = run_cli("metrics", "show", "--attach", str(path), "--format", "json")
    assert json.loads(r.stdout)["metrics"]["visits_total"]["samples"][0]["value"] == 80


def test_bad_files_give_a_clear_error_not_a_traceback(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 4096)
    r = run_cli("metrics", "show", "--attach", str(junk))
    assert r.returncode == 2
    assert "not an engram-numba region" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("metrics", "show", "--attach", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no region file" in r.stderr
