"""The directory fuzzer: random mixes of good files and hostile entries, writers that live,
exit or are killed, files truncated under readers, files still growing, other sets and
other versions of the set, readers and compactors at the same time (some killed).

Each scenario runs in a process of its own (tests/directory_fuzz_worker.py) with a
timeout, so that a signal or a hang is seen, not suffered.  Invariants: no child dies of
a signal it was not sent, none hangs, no reading raises; every good file is counted
exactly once at the end (a live writer's counts included), no reading ever counts more
than was written; every bad entry is reported, and nothing else is."""

import json
import os
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .processes import HERE

WORKER = HERE / "directory_fuzz_worker.py"

HOSTILE = ["symlink_in", "symlink_out", "dangling", "dir", "fifo", "socket", "archive_fifo",
           "crafted_json", "crafted_inf", "crafted_name", "lockdir"]

scenarios = st.fixed_dictionaries({
    "writers": st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(1, 1000),
                                  st.sampled_from(["live", "exit", "kill"])), max_size=4),
    "dead_copies": st.integers(0, 12),
    "truncated_copies": st.integers(0, 2),
    "growing": st.booleans(),
    "victim": st.booleans(),
    "others": st.integers(0, 2),
    "long_name": st.booleans(),
    "hostile": st.lists(st.sampled_from(HOSTILE), max_size=6),
    "readers": st.integers(1, 3),
    "compactors": st.integers(0, 2),
    "kill_readers": st.integers(0, 1),
    "kill_compactors": st.integers(0, 2),
    "rounds": st.integers(1, 6),
    "batch": st.sampled_from([1, 3, 256]),
    "pause": st.sampled_from([0.0, 0.01, 0.05]),
})


def run(scenario, tmp):
    directory = tmp / "dir"
    directory.mkdir(parents=True)
    result = tmp / "result.json"
    r = subprocess.run([sys.executable, str(WORKER), str(directory), json.dumps(scenario),
                        str(result)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the scenario died ({r.returncode}): {r.stderr[-3000:]}"
    return json.loads(result.read_text())


# ENGRAM_FUZZ_EXAMPLES=500 explores further (random seeds); the suite runs a fixed 14
EXAMPLES = int(os.environ.get("ENGRAM_FUZZ_EXAMPLES", "14"))


@settings(max_examples=EXAMPLES, deadline=None,
          derandomize="ENGRAM_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios)
def test_directory_fuzz(tmp_path_factory, scenario):
    out = run(scenario, tmp_path_factory.mktemp("fz"))
    assert out["problems"] == [], out["problems"]
    expected = out["expected"]
    for final in out["final"]:
        for key in ("fz", "other", "long"):
            assert final[key] == expected[key], (key, final, expected, out["entries"])
        assert set(final["skipped"]) == set(out["must_skip"]), (final["skipped"],
                                                                 out["must_skip"])
        assert final["gauge"] == len(final["skipped"])
    for reading in out["readings"]:
        assert reading["fz"] <= out["upper"]["fz"], reading        # nothing counted twice
        assert reading["other"] <= expected["other"] and reading["long"] <= expected["long"]


def test_the_fuzzer_sees_a_reader_killed_by_a_truncated_file(tmp_path):
    """The control: a reader that reads the files through their mappings (as before) is
    killed with SIGBUS by a file truncated under it, and the fuzzer says so."""
    import os
    import signal
    scenario = {"writers": [[1, 10, "live"], [2, 5, "exit"]], "dead_copies": 1,
                "truncated_copies": 0, "growing": False, "victim": True, "others": 0,
                "long_name": False, "hostile": [], "readers": 1, "compactors": 0,
                "kill_readers": 0, "kill_compactors": 0, "rounds": 1, "batch": 256,
                "pause": 0.0}
    out = run(scenario, tmp_path / "fixed")                     # as the fuzzer runs it
    assert out["problems"] == [] and out["final"][3]["fz"] == 15
    (tmp_path / "broken").mkdir()
    directory = tmp_path / "broken" / "dir"
    directory.mkdir()
    r = subprocess.run([sys.executable, str(WORKER), str(directory), json.dumps(scenario),
                        str(tmp_path / "broken" / "result.json")], capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, FZ_BREAK="mapping"))
    assert r.returncode == -signal.SIGBUS, (r.returncode, r.stderr[-2000:])
