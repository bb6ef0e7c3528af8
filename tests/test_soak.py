"""A one-minute soak: the workload exported to a flaky backend and scraped, with exact
accounting at the end and no growth of threads or open files (benchmarks/soak.py)."""

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def test_one_minute_soak_accounts_for_every_event(tmp_path):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(SOAK), "--minutes", "1", "--sample", "5",
                        "--until-scrapes", "10", "--until-outages", "2", "--guard-minutes", "12",
                        "--output", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["problems"] == []
    t, d = s["tracing"], s["delivery"]
    assert t["written"] == t["delivered"] + t["dropped"] and t["pending"] == 0
    assert d["drained_events"] == t["delivered"] > 0
    for name, p in d["exporters"].items():
        assert p["exported"] + sum(p["dropped"].values()) == d["drained_events"], name
    assert s["receiver"]["outages"] >= 2                 # the backend really went away
    assert d["exporters"]["otlp"]["exported"] > 0        # and came back
    assert s["scrapes"]["ok"] >= 10
    assert s["threads"]["end"] <= s["threads"]["start"] + 2
    assert s["open_files"]["end"] <= s["open_files"]["start"] + 2
