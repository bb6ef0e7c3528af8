"""The README's examples run, each on its own, and its two commands are the ones CI runs."""

import ast
import builtins
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def py_blocks():
    """Blocks that need something the tests cannot start here (a Dask cluster, backends)."""
    return re.findall(r"```py\n(.*?)```", README, flags=re.S)


def test_readme_has_examples():
    assert len(python_blocks()) >= 9 and len(py_blocks()) >= 2


def _block(snippet):
    (block,) = [b for b in python_blocks() if snippet in b]
    return block


def _run_alone(block, tmp_path, monkeypatch):
    """A block in a namespace of its own, as a reader who copies only it would run it."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), namespace)
    return namespace, out.getvalue()


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_python_block_runs_on_its_own_and_prints(index, tmp_path, monkeypatch):
    block = python_blocks()[index]
    _, printed = _run_alone(block, tmp_path, monkeypatch)
    assert printed.strip() or "assert " in block, "the example shows nothing"


def test_the_examples_compute_what_they_say(tmp_path, monkeypatch):
    ns, _ = _run_alone(_block("class Solver(MetricSet)"), tmp_path, monkeypatch)
    assert ns["metrics"].steps.value() == 6
    ns, out = _run_alone(_block("class ServerMetrics"), tmp_path, monkeypatch)
    assert ns["m"].requests.total == 0                  # after reset()
    assert "{'home': 33334, 'search': 33333, 'checkout': 33333}" in out and "\n1982\n" in out
    ns, _ = _run_alone(_block("Jobs.create(path)"), tmp_path, monkeypatch)
    assert ns["reader"].done.total == 1000
    ns, out = _run_alone(_block("Jobs.create_in(pool_dir)"), tmp_path, monkeypatch)
    assert "jobs_done_total 10" in out
    ns, _ = _run_alone(_block("def recall(metrics, n)"), tmp_path, monkeypatch)
    assert ns["cognitive"].priming_events_total() == 1000
    ns, _ = _run_alone(_block("MetricsServer(cognitive, port=0)"), tmp_path, monkeypatch)
    assert "engram_priming_strength_bucket" in ns["text"]
    ns, out = _run_alone(_block("class Batch(MetricSet"), tmp_path, monkeypatch)
    assert "2000000 2000000" in out
    ns, _ = _run_alone(_block("def spread(tracer, n)"), tmp_path, monkeypatch)
    assert ns["events"].size == 10_000 + 100
    ns, _ = _run_alone(_block("class SolverEvents"), tmp_path, monkeypatch)
    solver = ns["solver_events"]
    names = [ns["SolverEvents"].layout.types[t].name for t in solver["event_type"]]
    assert names[0] == names[-1] == "solve" and set(names[1:-1]) == {"iteration"}
    assert solver["step"][1:-1].tolist() == list(range(len(names) - 2))
    assert ns["solver_tracer"].sample_rates()["iteration"] == 0.1


def _undefined_names(block) -> set:
    """Names a block reads that it neither defines nor imports (nor Python provides)."""
    tree = ast.parse(block)
    defined, used = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
            defined |= {a.arg for a in node.args.args} if isinstance(node, ast.FunctionDef) \
                else set()
        elif isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return used - defined


def test_blocks_that_need_backends_define_every_name_they_use():
    for block in py_blocks():
        compile(block, "README.md", "exec")
        assert not _undefined_names(block), (_undefined_names(block), block[:200])


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert len(commands) == 2, "the README gives exactly two commands: demo and tests"
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = commands[1].strip()
    assert test_command in ci, f"CI does not run the README's test command: {test_command}"


def test_the_kernel_joins_the_requests_trace(tmp_path, monkeypatch):
    ns, _ = _run_alone(_block("class ServiceEvents"), tmp_path, monkeypatch)
    request, span, tracer = ns["request"], ns["kernel_span"], ns["service_tracer"]
    assert span.parent_id == request.span_id != 0
    assert tracer.trace_id_of(span.root_id) == request.trace_id != 0
