"""Traces across processes: a rings file per process, merged in time order."""

import json
import os
import subprocess
import sys

from .processes import LineWorker
from .receivers import HttpReceiver


class TraceWorker(LineWorker):
    def __init__(self, directory):
        super().__init__("trace_dir_worker.py", directory)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "engram_numba", *args], capture_output=True,
                          timeout=300)


def test_events_of_every_process_merge_in_time_order(tmp_path):
    a, b = TraceWorker(tmp_path), TraceWorker(tmp_path)
    try:
        # alternate between the processes: the merged order is known
        for x in range(1, 9):
            assert (a if x % 2 else b).send(f"emit {x}") == "ok"
        child = int(a.send("fork 100"))               # a forked child: a file of its own
        assert a.send("emit 101") == "ok"
        files = sorted(n for n in os.listdir(tmp_path) if n.endswith(".rings"))
        assert len(files) == 3 and any(f.startswith(f"steps.{child}.") for f in files)

        r = cli("trace", "export", "--dir", str(tmp_path))
        assert r.returncode == 0, r.stderr
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        lines = [e for e in lines if e["x"] >= 0]     # the warm-up events (x = -1) aside
        assert [e["x"] for e in lines] == [1, 2, 3, 4, 5, 6, 7, 8, 100, 101]
        pids = [e["pid"] for e in lines]
        assert pids == [a.proc.pid, b.proc.pid] * 4 + [child, a.proc.pid]
        stamps = [e["timestamp"] for e in lines]
        assert stamps == sorted(stamps)
        assert all(e["event_type"] == "step" and "thread" in e and e["process_start"] > 0
                   for e in lines)

        r = cli("trace", "export", "--dir", str(tmp_path), "--format", "chrome")
        assert r.returncode == 0, r.stderr
        trace = json.loads(r.stdout)["traceEvents"]
        steps = [e for e in trace if e.get("ph") == "i" and e["args"]["x"] >= 0]
        by_x = {e["args"]["x"]: e["pid"] for e in steps}
        assert by_x[1] == a.proc.pid and by_x[2] == b.proc.pid and by_x[100] == child
        names = {e["pid"]: e["args"]["name"] for e in trace if e.get("name") == "process_name"}
        assert names[child] == f"steps pid {child}" and len(names) == 3
        ts = [e["ts"] for e in sorted(steps, key=lambda e: e["args"]["x"])]
        assert ts == sorted(ts) and min(ts) >= 0

        with HttpReceiver() as rx:
            r = cli("trace", "export", "--dir", str(tmp_path), "--format", "otlp",
                    "--endpoint", rx.url, "--protocol", "http")
            assert r.returncode == 0, r.stderr
        resources = {}
        for request in rx.logs():
            for rl in request.resource_logs:
                attrs = {kv.key: kv.value for kv in rl.resource.attributes}
                n = sum(len(sl.log_records) for sl in rl.scope_logs)
                key = (attrs["service.instance.id"].string_value, attrs["process.pid"].int_value)
                resources[key] = resources.get(key, 0) + n
        assert {pid for _, pid in resources} == {a.proc.pid, b.proc.pid, child}
        assert len({inst for inst, _ in resources}) == 3
        assert sum(resources.values()) == 10 + 2        # + the warm-ups of a and b

        r = cli("trace", "export", "--dir", str(tmp_path), "--format", "loki",
                "--endpoint", "http://127.0.0.1:9")
        assert r.returncode == 2 and b"jsonl, chrome or otlp" in r.stderr
        r = cli("trace", "export", "--dir", str(tmp_path / "missing"))
        assert r.returncode == 1 and b"no directory" in r.stderr
    finally:
        a.kill()
        b.kill()


def test_create_in_refuses_bad_input_before_making_any_file(tmp_path):
    import pytest

    from engram_numba import Tracer, TracingConfig

    from .trace_dir_worker import Steps
    target = tmp_path / "traces"
    with pytest.raises(TypeError, match="EventSet"):
        Tracer.create_in(dict, target)
    with pytest.raises(TypeError, match="TracingConfig"):
        Tracer.create_in(Steps, target, config={"max_threads": 2})
    with pytest.raises(ValueError):
        Tracer.create_in(Steps, target, TracingConfig(enabled_events={"no_such_type"}))
    assert not target.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        Tracer.create_in(Steps, tmp_path / "file")
