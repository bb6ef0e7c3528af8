"""The README's examples run, and its two commands are the ones CI runs."""

import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_examples():
    assert len(python_blocks()) >= 4


def test_readme_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for block in python_blocks():
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["metrics"].steps.value() == 6
    assert namespace["m"].requests.total == 0          # after reset()
    assert namespace["reader"].requests.total == 1000
    assert namespace["cognitive"].priming_events_total() == 1000
    assert "engram_priming_strength_bucket" in namespace["text"]
    assert namespace["events"].size == 10_000 + 100
    solver = namespace["solver_events"]
    names = [namespace["SolverEvents"].layout.types[t].name for t in solver["event_type"]]
    assert names[0] == names[-1] == "solve" and set(names[1:-1]) == {"iteration"}
    assert solver["step"][1:-1].tolist() == list(range(len(names) - 2))
    assert namespace["solver_tracer"].sample_rates()["iteration"] == 0.1


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert len(commands) == 2, "the README gives exactly two commands: demo and tests"
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = commands[1].strip()
    assert test_command in ci, f"CI does not run the README's test command: {test_command}"
