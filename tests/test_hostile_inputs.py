"""Declarations and environments that used to fail late: an IntEnum member too large to
enumerate, text that no exposition can carry, no writable cache location."""

import enum
import os
import shutil
import subprocess
import sys

import pytest
from numba import njit

from engram_numba import Counter, Event, EventSet, MetricSet, Tracer, TracingConfig

from .processes import HERE


# -- 10. an IntEnum field with a member far from the others ----------------------------------

class Far(enum.IntEnum):
    NEAR = 0
    FAR = 2 ** 40


class Wide(EventSet, name="wide"):
    hop = Event("A hop", kind=Far)


@njit
def _emit(tr, k):
    tr.hop.emit(k)


def test_an_enum_member_far_from_the_others_is_encoded():
    tr = Tracer(Wide, TracingConfig(ring_buffer_size=64, max_threads=1))
    _emit(tr, Far.FAR)                  # a member
    _emit(tr, 2 ** 40)                  # its value as a plain integer
    _emit(tr, 7)                        # not a member: counted invalid, not written
    tr.hop.emit(Far.NEAR)
    assert sorted(tr.read()["kind"].tolist()) == [0, 2 ** 40, 2 ** 40]
    assert tr.stats()["invalid"] == 1


def test_an_enum_that_cannot_be_stored_is_refused_at_declaration():
    class Huge(enum.IntEnum):
        A = 0
        B = 2 ** 64

    with pytest.raises(ValueError, match="Huge.*64-bit"):
        class Bad(EventSet, name="bad"):
            e = Event("e", kind=Huge)


# -- 13. text no exposition can carry ---------------------------------------------------------

class Plain(MetricSet, name="plain"):
    n = Counter("plain_n", "n")


@pytest.mark.parametrize("value", ["\ud800", "ok\udfff"])
def test_a_lone_surrogate_is_refused_at_construction(tmp_path, value):
    for make in (lambda: Plain(const_labels={"k": value}),
                 lambda: Plain.create_in(tmp_path, const_labels={"k": value}),
                 lambda: Counter("c", "c", labels=[("k", ["a", value])]),
                 lambda: Counter("c", value)):
        with pytest.raises(ValueError, match="not valid text"):
            make()
    from engram_numba.metrics.directory import MetricsDirectory
    with pytest.raises(ValueError, match="not valid text"):
        MetricsDirectory(tmp_path, const_labels={"k": value})
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".metrics")]
    from engram_numba.export import exposition
    assert "plain_n_total" in exposition(Plain(const_labels={"k": "caf\u00e9 \U0001f600"}))


# -- 15. no writable cache location -----------------------------------------------------------

def test_without_a_writable_cache_location_commands_run_uncached_with_one_warning(tmp_path):
    """Even as root, where permission bits stop nothing: every cache location is a path
    that cannot be made (under a regular file), and the package's __pycache__ directories
    are regular files."""
    pkg = tmp_path / "site"
    shutil.copytree(HERE.parent / "engram_numba", pkg / "engram_numba",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d in [pkg / "engram_numba", *[p for p in (pkg / "engram_numba").rglob("*")
                                       if p.is_dir()]]:
        (d / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file")
    m = Plain.create(tmp_path / "p.metrics")
    m.n.add(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    env.update(HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "cache"),
               NUMBA_CACHE_DIR=str(blocker / "numba"), PYTHONPATH=str(pkg),
               PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-m", "engram_numba", "metrics", "show", "--attach",
                        str(tmp_path / "p.metrics")], capture_output=True, text=True,
                       timeout=900, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "plain_n_total 3" in r.stdout
    assert r.stderr.count("no writable cache location") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not list((tmp_path / "site").rglob("*.nbi"))        # nothing cached anywhere
    m.close()
