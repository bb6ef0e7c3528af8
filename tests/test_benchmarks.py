"""Benchmarks keep running: a quick smoke run of each prints its table and saves JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["metrics_overhead.py", "tracing_overhead.py",
                                    "directory_scrape.py", "pool_scaling.py", "compile_time.py"])
def test_benchmark_quick_run(script, tmp_path):
    out = tmp_path / "result.json"
    r = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--output", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["machine"]["numba"]
    assert any(w in r.stdout for w in ("median_ns", "median", "per file", "records_per_s"))
