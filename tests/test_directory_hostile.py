"""Directory mode under hostile conditions: truncated files, writers in other PID
namespaces, versions of a set side by side, odd entries, read-only mounts, FIFOs,
thousands of exited writers.  Nothing may crash, hang or lose a live writer's counts."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from engram_numba import Counter, Gauge, Histogram, MetricSet
from engram_numba._region import KIND_METRICS, Region
from engram_numba.metrics import directory as D
from engram_numba.metrics.directory import LIVE, MetricsDirectory

from .conftest import run_isolated
from .processes import HERE, LineWorker
from .test_directory import DEAD_PID, DirWorker, hits, live_files

ROOT = str(HERE.parent)
SKIPPED_FAMILY = "engram_directory_skipped_files"


def skipped_gauge(snap):
    (fam,) = [f for f in snap.families() if f.name == SKIPPED_FAMILY]
    return fam.points[0][1]


def by_name(snap):
    return {f.name: f for f in snap.families()}


# -- 1. a file truncated while a reader has it mapped ---------------------------------------

def test_a_file_truncated_under_a_reader_is_skipped_not_a_sigbus(tmp_path):
    r = run_isolated(f"""
        import os, sys
        sys.path.insert(0, {str(HERE)!r})
        from directory_worker import Pool, record
        from engram_numba.metrics import attach_metrics
        from engram_numba.metrics.directory import MetricsDirectory
        keep = Pool.create_in({str(tmp_path)!r})          # a live writer, intact
        other = Pool.create_in({str(tmp_path)!r})         # a live writer, truncated below
        record(keep, 5)
        record(other, 7)
        d = MetricsDirectory({str(tmp_path)!r}, compact=False)
        single = attach_metrics(other.path)               # metrics serve --attach
        hits = lambda s: dict(next(f for f in s.families()
                                   if f.name == "pool_hits_total").points)[("a",)]
        print("before", hits(d.collect()), hits(single.collect()), flush=True)
        os.truncate(other.path, 4096)                     # a full disk, a careless ': >'
        snap = d.collect()
        print("after", hits(snap), snap.skipped, snap.problems, flush=True)
        try:
            single.collect()
        except Exception as exc:
            print("single", type(exc).__name__, exc, flush=True)
    """)
    assert r.returncode == 0, f"reader died (signal {-r.returncode}): {r.stdout}{r.stderr}"
    lines = r.stdout.splitlines()
    assert lines[0] == "before 12 7"
    assert lines[1].startswith("after 5 ['pool.") and "shrank" in lines[1]
    assert lines[2].startswith("single RegionError") and "shrank" in lines[2]


# -- 2. liveness: the writer's lock, not its pid --------------------------------------------

def test_a_live_writer_under_a_pid_this_namespace_does_not_know_is_never_compacted(tmp_path):
    """What a writer in another PID namespace looks like from here: a file named by a pid
    that is not running (or is someone else).  Its writer's lock says it is alive."""
    w = DirWorker(tmp_path)
    try:
        assert int(w.send("rec 600")) == 600
        stranger = tmp_path / f"pool.{DEAD_PID}.12345.0.metrics"
        os.rename(w.path, stranger)                    # the writer keeps writing its file
        d = MetricsDirectory(tmp_path)                 # compacts what it judges exited
        assert hits(d) == 600
        assert live_files(tmp_path) == [stranger.name]
        assert int(w.send("rec 500")) == 1100
        assert hits(d) == 1100                         # nothing the writer adds is lost
        snap = d.collect()
        assert snap.running == 1
        w.kill()                                       # the kernel releases its lock
        assert hits(d) == 1100
        assert live_files(tmp_path) == []              # and only now it is compacted
    finally:
        if w.proc.poll() is None:
            w.kill()


def _unshare_works():
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       capture_output=True, timeout=60)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="unshare --pid not permitted here")
def test_a_writer_in_another_pid_namespace_loses_nothing(tmp_path):
    worker = HERE / "directory_worker.py"
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                             str(worker), str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline().split()
        assert ready and ready[0] == "ready", ready
        name = os.path.basename(ready[1])
        assert LIVE.match(name)["pid"] == "1"          # pid 1 of its own namespace

        def send(line):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            return proc.stdout.readline().strip()
        assert int(send("rec 100")) == 100
        d = MetricsDirectory(tmp_path)
        assert hits(d) == 100
        assert int(send("rec 500")) == 600
        assert hits(d) == 600                          # the case: 500 were lost
        assert live_files(tmp_path) == [name]
    finally:
        proc.kill()
        proc.wait(timeout=60)


def test_the_lock_alone_tells_liveness_whatever_pid_and_start_say(tmp_path):
    from engram_numba import _process
    w = DirWorker(tmp_path)
    try:
        assert _process.held(w.path) is True
        assert _process.held(tmp_path / "missing") is None
        w.kill()
        assert _process.held(w.path) is False
    finally:
        if w.proc.poll() is None:
            w.kill()


# -- 3. two versions of one set --------------------------------------------------------------

class ReqV1(MetricSet, name="req"):
    req = Counter("req", "Requests")
    size = Histogram("req_size_bytes", "Sizes", range=(1.0, 1e6))
    level = Gauge("req_level", "Level", multiprocess_mode="livesum")
    last = Gauge("req_last", "Last write", multiprocess_mode="mostrecent")
    old = Counter("req_old", "Only in version 1")
    shape = Counter("req_shape", "Declared differently", labels=[("k", ["a"])])


class ReqV2(MetricSet, name="req"):
    req = Counter("req", "Requests, served")            # help text changed: still one metric
    errors = Counter("req_errors", "Only in version 2")
    size = Histogram("req_size_bytes", "Sizes", range=(1.0, 1e6))
    level = Gauge("req_level", "Level", multiprocess_mode="livesum")
    last = Gauge("req_last", "Last write", multiprocess_mode="mostrecent")
    shape = Counter("req_shape", "Declared differently", labels=[("k", ["a", "b"])])


def test_two_versions_of_a_set_are_read_together(tmp_path):
    v1, v1b, v2 = ReqV1.create_in(tmp_path), ReqV1.create_in(tmp_path), ReqV2.create_in(tmp_path)
    assert v1.layout.hash != v2.layout.hash
    v1.req.add(3)
    v1b.req.add(4)
    v2.req.add(5)
    v1.old.add(2)
    v2.errors.add(1)
    for m, x in ((v1, 10.0), (v2, 1000.0)):
        m.size.observe(x)
        m.level.set(x)
    v2.last.set(7.0)
    v1.last.set(8.0)                                     # the last write anywhere
    v1.shape.add(1, "a")
    v2.shape.add(2, "b")
    d = MetricsDirectory(tmp_path, compact=False)
    snap = d.collect()
    f = by_name(snap)
    assert f["req_total"].points == (((), 12),)
    assert f["req_total"].help == "Requests, served"     # the newest version's words
    assert f["req_old_total"].points == (((), 2),)
    assert f["req_errors_total"].points == (((), 1),)
    ((_, h),) = f["req_size_bytes"].points
    assert h.count == 2 and h.sum == 1010.0 and h.min == 10.0 and h.max == 1000.0
    assert f["req_level"].points == (((), 1010.0),)
    assert f["req_last"].points == (((), 8.0),)
    # declared differently: the newest declaration, the older version's files reported
    assert f["req_shape_total"].label_names == ("k",)
    assert dict(f["req_shape_total"].points) == {("a",): 0, ("b",): 2}
    assert {os.path.basename(v1.path), os.path.basename(v1b.path)} <= set(snap.skipped)
    from engram_numba.export import exposition
    from prometheus_client.parser import text_string_to_metric_families
    text = exposition(d)                                  # one valid exposition
    assert {m.name for m in text_string_to_metric_families(text)} >= {"req", "req_old",
                                                                       "req_errors"}
    # exited: each version goes to its own archive, and they still add up
    for m in (v1, v1b, v2):
        m.close()
    assert d.compact()["compacted"] == 3
    assert len([n for n in os.listdir(tmp_path) if D.ARCHIVE.match(n)]) == 2
    f = by_name(d.collect())
    assert f["req_total"].points == (((), 12),) and f["req_level"].points == ()


# -- 4. odd entries ---------------------------------------------------------------------------

class Small(MetricSet, name="small"):
    n = Counter("small_n", "n")


def _crafted(path, description, size):
    """A valid region file (checksummed) holding any description."""
    r = Region.create(path, KIND_METRICS, size, description)
    r.publish()
    r.close()


def test_odd_entries_are_skipped_and_reported_one_by_one(tmp_path, caplog):
    good = Small.create_in(tmp_path)
    good.n.add(4)
    (tmp_path / f"small.{DEAD_PID}.1.0.metrics").mkdir()                 # a directory
    desc = json.loads(good.layout.description)
    desc["shards"] = float("inf")
    _crafted(tmp_path / f"small.{DEAD_PID}.2.0.metrics", json.dumps(desc),  # Infinity
             good.layout.size)
    long = type("Long", (MetricSet,), {"n": Counter("long_n", "n")}, name="l" * 2000)
    lay = long._layout(64)
    _crafted(tmp_path / f"l.{DEAD_PID}.3.0.metrics", lay.description,    # name too long
             lay.size)
    (tmp_path / "small.archive.0123456789abcdef.metrics").symlink_to(good.path)
    (tmp_path / ".engram-numba.lock").unlink(missing_ok=True)
    (tmp_path / ".engram-numba.lock").mkdir()                            # the lock
    d = MetricsDirectory(tmp_path)
    for _ in range(2):
        snap = d.collect()
        assert by_name(snap)["small_n_total"].points == (((), 4),)
        assert set(snap.skipped) == {f"small.{DEAD_PID}.1.0.metrics",
                                     f"small.{DEAD_PID}.2.0.metrics",
                                     f"l.{DEAD_PID}.3.0.metrics",
                                     "small.archive.0123456789abcdef.metrics",
                                     ".engram-numba.lock"}, snap.problems
        assert skipped_gauge(snap) == 5
    assert "a directory" in snap.problems[f"small.{DEAD_PID}.1.0.metrics"]
    assert "symbolic link" in snap.problems["small.archive.0123456789abcdef.metrics"]
    assert caplog.text.count(f"small.{DEAD_PID}.2.0.metrics: skipped") == 1   # logged once
    from engram_numba.export import exposition
    assert "engram_directory_skipped_files" in exposition(d)
    r = subprocess.run([sys.executable, "-m", "engram_numba", "metrics", "show", "--dir",
                        str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "small_n_total 4" in r.stdout
    good.close()


def test_a_set_name_too_long_for_an_archive_is_read_but_left_in_place(tmp_path, caplog):
    name = "s" * 230            # its file's name fits in NAME_MAX (255 bytes), its archive's not
    cls = type("Long", (MetricSet,), {"n": Counter("long_n", "n")}, name=name)
    m = cls.create(tmp_path / "short")
    m.n.add(9)
    m.close()
    exited = f"{name}.{DEAD_PID}.1.0.metrics"
    os.rename(tmp_path / "short", tmp_path / exited)
    d = MetricsDirectory(tmp_path)
    for _ in range(2):
        assert by_name(d.collect())["long_n_total"].points == (((), 9),)
    assert live_files(tmp_path) == [exited] and "cannot write the archive" in caplog.text
    assert d.compact()["left"] == 1


# -- 5. read-only mounts ----------------------------------------------------------------------

def _mount_works():
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    r = subprocess.run(["unshare", "--mount", "sh", "-c",
                        "mount -t tmpfs none /mnt && umount /mnt"], capture_output=True,
                       timeout=60)
    return r.returncode == 0


@pytest.mark.skipif(not _mount_works(), reason="cannot make a read-only mount here")
@pytest.mark.parametrize("lock", ["present", "absent"])
def test_a_read_only_mount_is_read_without_compacting(tmp_path, lock):
    w = DirWorker(tmp_path)
    w.send("rec 3")
    w.exit()
    live = DirWorker(tmp_path)
    live.send("rec 4")
    try:
        if lock == "absent":
            os.unlink(tmp_path / ".engram-numba.lock")
        reader = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {ROOT!r})
            from tests.test_directory import hits
            from engram_numba.metrics.directory import MetricsDirectory
            print(hits(MetricsDirectory({str(tmp_path)!r})))
        """)
        script = (f"mount --bind {tmp_path} {tmp_path} && "
                  f"mount -o remount,bind,ro {tmp_path} && "
                  f"{sys.executable} -c \"$READER\"")
        r = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, READER=reader))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["7"]
        assert len(live_files(tmp_path)) == 2              # nothing compacted
    finally:
        live.kill()


# -- 6. FIFOs named like set files ------------------------------------------------------------

def test_fifos_named_like_set_or_rings_files_are_refused_without_blocking(tmp_path):
    mdir, tdir = tmp_path / "m", tmp_path / "t"
    mdir.mkdir()
    tdir.mkdir()
    m = Small.create_in(mdir)
    m.n.add(2)
    os.mkfifo(mdir / f"small.{DEAD_PID}.1.0.metrics")
    os.mkfifo(mdir / "small.archive.0123456789abcdef.metrics")
    os.mkfifo(mdir / f"small.{DEAD_PID}.1.0.metrics.creating")
    os.mkfifo(tdir / f"steps.{DEAD_PID}.1.0.rings")
    fifo = mdir / f"small.{DEAD_PID}.1.0.metrics"
    r = run_isolated(f"""
        from engram_numba.metrics import attach_metrics
        from engram_numba.metrics.directory import MetricsDirectory
        from engram_numba.tracing import Tracer
        from engram_numba.tracing.directory import TraceDirectory
        snap = MetricsDirectory({str(mdir)!r}).collect()        # compaction first
        print(sorted(snap.skipped))
        for attach in (attach_metrics, Tracer.attach):
            try:
                attach({str(fifo)!r})
            except Exception as exc:
                print(type(exc).__name__, "FIFO" in str(exc))
        t = TraceDirectory({str(tdir)!r})
        print(t.read(), t.skipped)
    """, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(sorted([f"small.{DEAD_PID}.1.0.metrics",
                                   "small.archive.0123456789abcdef.metrics"]))
    assert lines[1:3] == ["RegionError True", "RegionError True"]
    assert lines[3] == f"[] ['steps.{DEAD_PID}.1.0.rings']"
    for args in (["metrics", "show", "--attach", str(fifo)],
                 ["trace", "export", "--attach", str(tdir / f"steps.{DEAD_PID}.1.0.rings")],
                 ["trace", "export", "--dir", str(tdir)]):
        c = subprocess.run([sys.executable, "-m", "engram_numba", *args], capture_output=True,
                           text=True, timeout=300)
        assert c.returncode == (0 if "--dir" in args else 1), (args, c.stderr)
        assert "Traceback" not in c.stderr
    m.close()


# -- 9. thousands of exited writers -----------------------------------------------------------

def _exited_copies(directory, count):
    """``count`` files of exited processes (copies of one), each counting 1 hit."""
    m = Small.create_in(directory)
    m.n.add(1)
    m.close()
    (name,) = live_files(directory)
    src = directory / name
    start = LIVE.match(name)["start"]
    for i in range(count):
        shutil.copyfile(src, directory / f"small.{DEAD_PID + i}.{start}.0.metrics")
    os.unlink(src)


def test_many_exited_files_are_compacted_in_bulk(tmp_path, monkeypatch):
    _exited_copies(tmp_path, 600)
    rewrites = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (rewrites.append(b), real(a, b)))
    d = MetricsDirectory(tmp_path, compact_budget=3600)
    assert by_name(d.collect())["small_n_total"].points == (((), 600),)
    archives = [p for p in rewrites if D.ARCHIVE.match(os.path.basename(p))]
    assert len(archives) == 3, len(archives)          # 600 files in steps of 256, not 600
    assert live_files(tmp_path) == []
    words = Region.attach(archives[0], KIND_METRICS, writable=False).data.view(np.uint64)
    assert int(words[D.ARCHIVE_FILES_OFFSET // 8]) == 600


def test_a_reading_compacts_within_its_budget_and_still_answers_exactly(tmp_path, monkeypatch):
    _exited_copies(tmp_path, 40)
    monkeypatch.setattr(D, "COMPACT_BATCH", 8)
    d = MetricsDirectory(tmp_path, compact_budget=1e-9)     # one step per reading
    left = [40]
    while left[-1]:
        assert by_name(d.collect())["small_n_total"].points == (((), 40),)
        left.append(len(live_files(tmp_path)))
    assert left == [40, 32, 24, 16, 8, 0]


def test_a_compactor_killed_between_archive_and_removals_counts_nothing_twice(tmp_path,
                                                                               monkeypatch):
    _exited_copies(tmp_path, 10)
    d = MetricsDirectory(tmp_path, compact=False)
    real_unlink = os.unlink

    def dies(path, *a, **k):                       # the compactor dies at its first removal
        if LIVE.match(os.path.basename(path)):
            raise KeyboardInterrupt
        return real_unlink(path, *a, **k)
    monkeypatch.setattr(os, "unlink", dies)
    with pytest.raises(KeyboardInterrupt):
        d.compact()
    monkeypatch.setattr(os, "unlink", real_unlink)
    journal = [n for n in os.listdir(tmp_path) if n.endswith(".taken")]
    assert len(journal) == 1 and len(live_files(tmp_path)) == 10
    reader = MetricsDirectory(tmp_path, compact=False)
    assert by_name(reader.collect())["small_n_total"].points == (((), 10),)
    assert d.compact()["removed"] == 10
    assert live_files(tmp_path) == [] and not [n for n in os.listdir(tmp_path)
                                               if n.endswith(".taken")]
    assert by_name(reader.collect())["small_n_total"].points == (((), 10),)
