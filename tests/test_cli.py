"""The command line: demo output and reading file-backed sets."""

import json
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from .test_metric_set import Shop, _data, record_everything


def run_cli(*args, env=None):
    import os
    env = {k: v for k, v in (env or os.environ).items() if not k.startswith("OTEL_")} \
        if env is None else env
    return subprocess.run([sys.executable, "-m", "engram_numba", *args],
                          capture_output=True, text=True, timeout=300, env=env)


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
    assert r.returncode == 1
    assert "not an engram-numba region" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("metrics", "show", "--attach", str(tmp_path / "missing"))
    assert r.returncode == 1 and "no region file" in r.stderr


import pytest  # noqa: E402


@pytest.mark.parametrize("args, message", [
    (["metrics", "serve", "--attach", "x", "--port", "70000"], "port number"),
    (["metrics", "serve", "--attach", "x", "--port", "-1"], "port number"),
    (["trace", "export", "--attach", "x", "--batch-size", "-1"], "positive integer"),
    (["trace", "export", "--attach", "x", "--batch-size", "0"], "positive integer"),
    (["trace", "export", "--attach", "x", "--timeout", "-1"], "positive, finite number of seconds"),
    (["trace", "export", "--attach", "x", "--timeout", "nan"], "finite number of seconds"),
    (["trace", "stream", "--attach", "x", "--interval", "0"], "positive, finite number of seconds"),
    (["trace", "stream", "--attach", "x", "--interval", "-1"], "positive, finite number of seconds"),
    (["trace", "config", "--attach", "x", "--sample-rate", "1.5"], "rate in [0, 1]"),
    (["trace", "export", "--attach", "x", "--since=-5m"], "positive"),
    (["trace", "export", "--attach", "x", "--since", "2026-01-01T00:00:00"], "time zone"),
    (["metrics", "push", "--attach", "x", "--otlp", "h:1", "--interval", "0"], "positive"),
    (["metrics", "push", "--attach", "x", "--otlp", "h:1", "--count", "0"], "positive integer"),
    (["demo", "--trials", "-1"], "positive integer"),
    (["demo", "--trials", "0"], "positive integer"),
    (["demo", "--trials", "5", "--rounds", "10"], "at least --rounds (10)"),
        (["demo", "--trials", "1"], "at least 2"),
        (["demo", "--trials", "50", "--rounds", "1"], ">= 2"),
    (["demo", "--duration", "-1"], "positive, finite number of seconds"),
    (["demo", "--threads", "0"], "positive integer"),
    (["demo", "--nodes", "1"], ">= 2"),
    (["trace", "export", "--attach", "x", "--format", "otlp"], "--endpoint URL is needed"),
    (["trace", "export", "--attach", "x", "--format", "loki"], "needs --endpoint"),
])
def test_bad_arguments_are_usage_errors_without_a_traceback(args, message):
    r = run_cli(*args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_usage_errors_name_the_option_and_show_the_command_s_own_usage(tmp_path):
    from engram_numba import CognitiveTracer, TracingConfig
    path = tmp_path / "t.rings"
    CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=2, path=str(path)))
    for option in ("--enable", "--disable"):
        r = run_cli("trace", "config", "--attach", str(path), option, "nosuch")
        assert r.returncode == 2 and f"error: {option}: unknown event type 'nosuch'" in r.stderr
        assert "--types" not in r.stderr
        assert r.stderr.startswith("usage: engram-numba trace config")
    r = run_cli("metrics", "serve")
    assert r.returncode == 2 and r.stderr.startswith("usage: engram-numba metrics serve")
    assert "give --attach PATH or --dir DIR" in r.stderr


def test_runtime_failures_exit_1(tmp_path):
    from engram_numba import CognitiveTracer, TracingConfig
    from .processes import free_port
    path = tmp_path / "t.rings"
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=64, max_threads=2, path=str(path)))
    tr.trace_priming(0, 0.5, 1, 2)
    r = run_cli("trace", "export", "--attach", str(path), "--format", "otlp", "--protocol", "http",
                "--endpoint", f"http://127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert r.returncode == 1 and "failed after" in r.stderr and "Traceback" not in r.stderr
    assert "sent" not in r.stderr                       # no false success
    r = run_cli("metrics", "show", "--attach", str(tmp_path / "missing"))
    assert r.returncode == 1 and "no region file" in r.stderr


def test_demo_says_when_it_reduces_the_threads(tmp_path):
    r = run_cli("demo", "--out", str(tmp_path / "r"), "--nodes", "500", "--trials", "64",
                "--rounds", "4", "--threads", "64", "--no-figures")
    assert r.returncode == 0, r.stderr
    assert "--threads 64 reduced to" in r.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["workload"]["trials"] == 64
    assert "64 recall trials" in r.stdout and "128 trial runs" in r.stdout
    assert "128/128" in r.stderr                         # the progress bar counts the same runs


def test_version_is_the_package_version():
    import engram_numba
    from importlib.metadata import version
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"engram-numba {engram_numba.__version__}"
    assert version("engram-numba") == engram_numba.__version__      # one source


def _subparsers(parser, path=("engram-numba",)):
    import argparse
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, path + (name,))


def test_every_help_screen_has_examples_and_every_option_has_help():
    from engram_numba.cli import build_parser
    screens = list(_subparsers(build_parser()))
    assert len(screens) == 12
    for path, parser in screens:
        text = parser.format_help()
        assert "examples:\n  engram-numba" in text, path
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (path, action.option_strings)


def _rings_with_events(tmp_path, n=5):
    from engram_numba.engram import CognitiveTracer
    from engram_numba.tracing import TracingConfig
    path = tmp_path / "t.rings"
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1024, max_threads=2, path=str(path)))
    for i in range(n):
        tr.trace_priming(0, 0.5, i, i + 1)
    return tr, path


def test_secrets_come_from_a_file_or_the_environment(tmp_path):
    """Passwords and tokens need not be arguments (which every user sees in ps)."""
    import base64
    import os

    from .receivers import HttpReceiver
    tr, rings = _rings_with_events(tmp_path)
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "headers").write_text("# tokens\nx-token=from-file\nx-b=2\n")
    env = dict(os.environ, ENGRAM_NUMBA_PASSWORD="from-env", ENGRAM_NUMBA_HEADERS="x-a=1,x-b=env")

    def export(*extra, env=None):
        return subprocess.run([sys.executable, "-m", "engram_numba", "trace", "export",
                               "--attach", str(rings), "--format", "loki", "--endpoint", rx.url,
                               "--no-gzip", *extra], capture_output=True, text=True,
                              timeout=300, env=env)

    def auth(request):
        return base64.b64decode(request[1]["Authorization"].split()[1]).decode()

    with HttpReceiver() as rx:
        r = export("--user", "me", "--password-file", str(tmp_path / "pw"),
                   "--header-file", str(tmp_path / "headers"))
        assert r.returncode == 0, r.stderr
        r = export("--user", "me", env=env)
        assert r.returncode == 0, r.stderr
        r = export("--user", "me", "--password", "arg", "--header", "x-b=arg",
                   "--header-file", str(tmp_path / "headers"), env=env)
        assert r.returncode == 0, r.stderr
    first, second, third = rx.requests
    assert auth(first) == "me:s3cret"
    assert first[1]["x-token"] == "from-file" and first[1]["x-b"] == "2"
    assert auth(second) == "me:from-env"
    assert second[1]["x-a"] == "1" and second[1]["x-b"] == "env"
    assert auth(third) == "me:arg"                          # an argument wins
    assert third[1]["x-a"] == "1" and third[1]["x-b"] == "arg"
    assert third[1]["x-token"] == "from-file"
    assert not rx.problems


def test_an_unreadable_secret_file_is_a_usage_error(tmp_path):
    tr, rings = _rings_with_events(tmp_path)
    for option in ("--password-file", "--header-file"):
        r = run_cli("trace", "export", "--attach", str(rings), "--format", "loki",
                    "--endpoint", "http://127.0.0.1:9", "--user", "me", option,
                    str(tmp_path / "missing"))
        assert r.returncode == 2, (option, r.returncode, r.stderr)
        assert f"{option}: cannot read" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad").write_text("no equals sign\n")
    r = run_cli("trace", "export", "--attach", str(rings), "--format", "loki",
                "--endpoint", "http://127.0.0.1:9", "--header-file", str(tmp_path / "bad"))
    assert r.returncode == 2 and "--header-file takes KEY=VALUE" in r.stderr
