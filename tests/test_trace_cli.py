"""`engram-numba trace ...` against a tracer file written by another process."""

import json
import subprocess
import sys
import threading
import time

import pytest

from .processes import HERE


class TraceWorker:
    def __init__(self, path, n):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "trace_worker.py"), str(path),
                                      str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def step(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "engram_numba", "trace", *args],
                          capture_output=True, timeout=300, **kw)


def test_export_stats_config_and_stream(tmp_path):
    path = tmp_path / "trace.rings"
    with TraceWorker(path, 100) as w:
        assert w.step() == 400
        r = cli("export", "--attach", str(path))
        assert r.returncode == 0, r.stderr
        lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
        assert len(lines) == 400
        priming = [e for e in lines if e["event_type"] == "priming"]
        assert [e["target_node"] for e in priming] == [2 * e["source_node"] + 1 for e in priming]
        r = cli("export", "--attach", str(path), "--types", "priming,false_memory",
                "--format", "json", "--output", str(tmp_path / "out.json"))
        doc = json.loads((tmp_path / "out.json").read_text())
        assert doc["count"] == 200
        assert {e["event_type"] for e in doc["events"]} == {"priming", "false_memory"}
        between = time.time_ns()
        while time.time_ns() == between:
            pass
        assert w.step() == 400
        r = cli("export", "--attach", str(path), "--since", f"@{between / 1e9:.9f}")
        assert r.returncode == 0, r.stderr
        newer = [json.loads(x) for x in r.stdout.decode().splitlines()]
        assert len(newer) == 400 and min(e["timestamp"] for e in newer) >= between
        r = cli("export", "--attach", str(path), "--since", "1h")
        assert len(r.stdout.decode().splitlines()) == 800
        r = cli("stats", "--attach", str(path), "--json")
        stats = json.loads(r.stdout)
        assert stats["total"]["written"] == 800 and stats["total"]["pending"] == 800
        # steer the running program
        r = cli("config", "--attach", str(path), "--disable", "interference",
                "--enable", "priming", "--sample-rate", "0.5")
        assert r.returncode == 0 and b"interference     event off" in r.stdout
        kept = w.step()
        assert 200 + 25 < kept < 200 + 75       # priming at 0.5, two other types at 1
        # stream follows new events until interrupted: step the worker until the stream
        # has shown 200 of them (however long it takes to start), then stop it
        stream = subprocess.Popen([sys.executable, "-m", "engram_numba", "trace", "stream",
                                   "--attach", str(path), "--types", "false_memory",
                                   "--interval", "0.05"], stdout=subprocess.PIPE)
        streamed = []
        reader = threading.Thread(target=lambda: streamed.extend(
            json.loads(x) for x in stream.stdout), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300                  # a guard only
        while len(streamed) < 200 and time.monotonic() < deadline:
            w.step()
            time.sleep(0.05)
        stream.terminate()
        stream.wait(timeout=30)
        reader.join(timeout=30)
        assert len(streamed) >= 200 and {e["event_type"] for e in streamed} == {"false_memory"}
        hashes = [e["critical_lure_hash"] // 7919 for e in streamed]
        assert hashes == list(range(hashes[0], hashes[0] + len(hashes)))   # in order, no gap


@pytest.mark.parametrize("content, message", [
    (b"", "too short"), (b"\x00" * 4096, "bad magic"), (b"ENGRAMNB" + b"\xff" * 200, "version")])
def test_damaged_files_give_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    for sub in ("export", "stats", "stream", "config"):
        r = cli(sub, "--attach", str(bad))
        assert r.returncode == 1, (sub, r.stderr)
        assert message in r.stderr.decode() and b"Traceback" not in r.stderr


def test_a_metrics_file_is_not_a_trace_file(tmp_path):
    from engram_numba import CognitivePatternMetrics
    path = tmp_path / "m"
    CognitivePatternMetrics.create(path)
    r = cli("stats", "--attach", str(path))
    assert r.returncode == 1 and b"holds metric set, expected trace rings" in r.stderr
