"""Directory mode: per-process files in one directory, summed; exited processes compacted."""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engram_numba import Counter, Gauge, MetricSet
from engram_numba.export import exposition
from engram_numba.metrics.directory import DIRECTORY_ENV, LIVE, MetricsDirectory

from .processes import HERE, LineWorker
DEAD_PID = 4_194_305            # above Linux's largest pid: never a running process


class DirWorker(LineWorker):
    def __init__(self, directory, env=None):
        super().__init__("directory_worker.py", directory, env=env)
        self.path = self.ready[1]

    def exit(self):
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0


def samples(source):
    out = {}
    for fam in text_string_to_metric_families(exposition(source)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def hits(source):
    """Hits counted under k="a" (0 while no file holds the set yet)."""
    return samples(source).get(("pool_hits_total", (("k", "a"),)), 0)


def live_files(directory):
    return sorted(n for n in os.listdir(directory) if LIVE.match(n))


def test_sums_processes_and_drops_the_gauges_of_exited_ones(tmp_path):
    workers = [DirWorker(tmp_path) for _ in range(3)]
    try:
        for w, n, v in zip(workers, (100, 200, 300), (5.0, 2.0, 7.0)):
            assert int(w.send(f"rec {n}")) == n
            assert w.send(f"gauge {v}") == "ok"
        workers[1].send("gauge 2.5")                       # the most recent write anywhere
        d = MetricsDirectory(tmp_path, compact=False)
        s = samples(d)
        assert s[("pool_hits_total", (("k", "a"),))] == 600
        assert s[("pool_hits_total", (("k", "b"),))] == 0
        assert s[("pool_latency_seconds_count", ())] == 600
        assert s[("pool_latency_seconds_sum", ())] == 300.0
        pids = [str(w.proc.pid) for w in workers]
        assert {k[1][0][1]: v for k, v in s.items() if k[0] == "pool_level"} == \
            dict(zip(pids, (5.0, 2.5, 7.0)))
        assert s[("pool_total", ())] == 14.5
        assert s[("pool_low", ())] == 2.5 and s[("pool_high", ())] == 7.0
        assert s[("pool_last", ())] == 2.5
        assert len(live_files(tmp_path)) == 3

        workers[0].exit()                                  # exits normally
        workers[1].kill()                                  # SIGKILL
        s = samples(d)
        assert s[("pool_hits_total", (("k", "a"),))] == 600    # counts never go backwards
        assert [k for k in s if k[0] == "pool_level"] == [("pool_level", (("pid", pids[2]),))]
        assert s[("pool_total", ())] == 7.0 and s[("pool_last", ())] == 7.0
        assert d.compact() == {"compacted": 2, "removed": 0, "left": 0, "files": 2}
        assert live_files(tmp_path) == [os.path.basename(workers[2].path)]
        assert hits(d) == 600
        assert int(workers[2].send("rec 50")) == 350
        assert hits(d) == 650
        workers[2].kill()
        reading = MetricsDirectory(tmp_path)               # compacts before reading
        s = samples(reading)
        assert s[("pool_hits_total", (("k", "a"),))] == 650
        assert s[("pool_latency_seconds_count", ())] == 650
        assert not [k for k in s if k[0].startswith(("pool_level", "pool_total", "pool_last"))]
        assert sorted(os.listdir(tmp_path)) == [".engram-numba.lock",
                                                f"pool.archive.{_layout_hash(tmp_path)}.metrics"]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.kill()


def _layout_hash(directory):
    name = next(n for n in os.listdir(directory) if ".archive." in n)
    return name.split(".")[2]


def test_pool_workers_need_no_code_change(tmp_path):
    """ENGRAM_NUMBA_METRICS_DIR alone: the parent's set is a file in the directory, and
    every forked pool worker gets a file of its own."""
    script = textwrap.dedent(f"""
        import multiprocessing, os, sys
        sys.path.insert(0, {str(HERE)!r})
        import directory_worker as w
        w.SHARED = w.Pool()                       # the plain constructor
        assert os.path.dirname(w.SHARED.path) == {str(tmp_path)!r}, w.SHARED.path
        w.record(w.SHARED, 7)
        with multiprocessing.get_context("fork").Pool(3) as pool:
            pids = set(pool.map(w.pool_task, [10] * 30, chunksize=1))
        print(os.getpid(), *sorted(pids))
    """)
    env = dict(os.environ, **{DIRECTORY_ENV: str(tmp_path)})
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    parent, *workers = map(int, r.stdout.split())
    files = live_files(tmp_path)
    # the parent's, and one per worker: each worker that ran a task has its own; one that
    # the pool terminated before it was ready (a loaded machine) may have none
    owners = [int(f.split(".")[1]) for f in files]
    assert workers and parent not in workers and len(set(owners)) == len(owners) <= 4, files
    assert {parent, *workers} <= set(owners), files
    d = MetricsDirectory(tmp_path)
    assert hits(d) == 307                      # 7 by the parent, 300 by the workers
    assert live_files(tmp_path) == [] and len(os.listdir(tmp_path)) == 2   # all exited

    # a worker started with the variable set, no directory given
    w = DirWorker("-", env=env)
    try:
        assert os.path.dirname(w.path) == str(tmp_path)
        w.send("rec 3")
        assert hits(d) == 310
    finally:
        w.kill()


def _dead_copies(directory, template, pid_base, copies):
    """Copies of an exited process's file under the names of processes that never ran."""
    m = LIVE.match(os.path.basename(template))
    for i in range(copies):
        name = f"{m['set']}.{pid_base + i}.{m['start']}.0.metrics"
        shutil.copyfile(template, os.path.join(directory, name))


COMPACTOR = textwrap.dedent("""
    import sys
    from engram_numba.metrics import directory
    from engram_numba.metrics.directory import MetricsDirectory
    directory.COMPACT_BATCH = 4     # many steps per compaction: many moments to be killed at
    d = MetricsDirectory(sys.argv[1], compact=False)
    d.collect()                     # loads the compiled readers before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    d.compact()
    print("done", flush=True)
""")


def test_compactors_killed_at_random_points_lose_nothing_and_count_nothing_twice(tmp_path):
    template_dir = tmp_path / "template"
    template_dir.mkdir()
    w = DirWorker(template_dir)
    w.send("rec 10")
    w.exit()
    (template,) = [template_dir / n for n in live_files(template_dir)]
    directory = tmp_path / "pool"
    directory.mkdir()
    rng = random.Random(11)
    state = {"expected": 0}
    pid, kills, readings = DEAD_PID, 0, []
    stop = threading.Event()
    problems = []
    lock = MetricsDirectory(directory, compact=False)._lock

    def scrape():
        d = MetricsDirectory(directory, compact=False)
        while not stop.is_set():
            with lock(exclusive=False):
                expected = state["expected"]
            total = hits(d)
            readings.append(total)
            if total != expected:
                # a refill (made under the lock) between the two readings is not a problem
                with lock(exclusive=False):
                    if state["expected"] == expected:
                        problems.append((total, expected))

    # a round: 25 more exited processes' files, compacted by compactors killed at random
    # moments (sometimes two at once) until none is left; a scraper reads all along
    reader = None
    deadline = time.monotonic() + 300
    while (kills < 8 or len(readings) < 10) and time.monotonic() < deadline:
        with lock(exclusive=True):
            _dead_copies(directory, template, pid, 25)
            pid += 25
            state["expected"] += 250
        if reader is None:
            reader = threading.Thread(target=scrape)
            reader.start()
        while live_files(directory):
            procs = [subprocess.Popen([sys.executable, "-c", COMPACTOR, str(directory)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for _ in range(rng.choice((1, 1, 2)))]
            for p in procs:
                assert p.stdout.readline().strip() == "ready"
            before = len(live_files(directory))
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            time.sleep(rng.uniform(0.0, 0.03))
            for p in procs:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=60)
            left = len(live_files(directory))
            if 0 < left < before:
                kills += 1                     # killed while it was compacting
    stop.set()
    reader.join(timeout=120)
    assert kills >= 8, "compactors never killed mid-way before the deadline"
    assert len(readings) >= 10, "the reader did not read 10 times before the deadline"
    assert not problems, problems[:5]
    d = MetricsDirectory(directory)
    assert hits(d) == state["expected"]
    assert live_files(directory) == []
    assert not [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_a_compactor_that_died_before_removing_a_file_leaves_it_counted_once(tmp_path):
    w = DirWorker(tmp_path)
    w.send("rec 40")
    w.exit()
    (name,) = live_files(tmp_path)
    path = tmp_path / name
    shutil.copyfile(path, tmp_path / "saved")
    d = MetricsDirectory(tmp_path, compact=False)
    assert d.compact()["compacted"] == 1
    # the state a compactor killed between replacing the archive and removing the file
    # leaves behind: the archive holds the file's counts and the file is still there
    shutil.copyfile(tmp_path / "saved", path)
    os.unlink(tmp_path / "saved")
    assert hits(d) == 40                       # readers skip the file the archive took
    assert d.compact() == {"compacted": 0, "removed": 1, "left": 0, "files": 1}
    assert hits(d) == 40
    # leftovers of a compactor that died writing, and of a process that died creating
    archive = next(n for n in os.listdir(tmp_path) if ".archive." in n)
    (tmp_path / f"{archive}.999.tmp").write_bytes(b"partial")
    (tmp_path / f"pool.{DEAD_PID}.5.0.metrics.creating").write_bytes(b"partial")
    me = LIVE.match(name)
    mine = tmp_path / f"pool.{os.getpid()}.{_own_start()}.0.metrics.creating"
    mine.write_bytes(b"being created")         # a running process's: left alone
    assert d.compact()["removed"] == 2
    assert mine.exists() and me is not None


def _own_start():
    from engram_numba import _process
    return _process.identity()[1]


def test_readers_without_the_lock_miscount_while_compaction_runs(tmp_path):
    """The control: a reader that does not take the lock miscounts when a compactor
    moves the files in the middle of its reading; the same reader with the lock never
    miscounts while a compactor runs beside it."""
    w = DirWorker(tmp_path / "t")
    w.send("rec 10")
    w.exit()
    (template,) = [tmp_path / "t" / n for n in live_files(tmp_path / "t")]

    class Unlocked(MetricsDirectory):
        compactor = None

        def _lock(self, exclusive):
            import contextlib
            return contextlib.nullcontext()

        def _attached(self, name, match, archive, problems):
            # the compactor runs right after the reader attached its first exited file
            # (live files sort before the archive): the moment the lock exists to exclude
            f = super()._attached(name, match, archive, problems)
            if self.compactor is not None and not archive and f is not None:
                compactor, self.compactor = self.compactor, None
                while live_files(self.directory):
                    compactor.compact()
            return f

    control = tmp_path / "control"
    control.mkdir()
    _dead_copies(control, template, DEAD_PID, 10)
    reader = Unlocked(control, compact=False)
    reader.compactor = MetricsDirectory(control, compact=False)
    got = hits(reader)
    assert reader.compactor is None and not live_files(control), "the compactor did not run"
    assert got != 100, "the unlocked reader counted right although the files moved under it"
    assert hits(reader) == 100                    # the next reading, with nothing moving

    def run(reader_class, name, rounds=None, deadline=300.0):
        directory = tmp_path / name
        directory.mkdir()
        reader = reader_class(directory, compact=False)
        compactor = MetricsDirectory(directory, compact=False)
        state = {"expected": 0, "wrong": 0, "readings": 0, "pid": DEAD_PID}
        stop = threading.Event()

        def read():
            while not stop.is_set():
                with compactor._lock(exclusive=False):
                    expected = state["expected"]
                total = hits(reader)
                state["readings"] += 1
                if total != expected:
                    # only a reading that overlapped no refill counts (refills hold the lock)
                    with compactor._lock(exclusive=False):
                        if state["expected"] == expected:
                            state["wrong"] += 1

        t = threading.Thread(target=read)
        t.start()
        end = time.monotonic() + deadline
        done = 0
        try:
            while time.monotonic() < end:
                with compactor._lock(exclusive=True):
                    _dead_copies(directory, template, state["pid"], 10)
                    state["pid"] += 10
                    state["expected"] += 100
                while live_files(directory):
                    compactor.compact()
                done += 1
                if rounds is None and state["wrong"]:
                    break
                if rounds is not None and done >= rounds and state["readings"] >= rounds:
                    break                    # enough rounds, and readings during them
        finally:
            stop.set()
            t.join(timeout=120)
        return state["wrong"], done, state["readings"]

    wrong, done, readings = run(MetricsDirectory, "locked", rounds=20)
    print(f"locked: {done} rounds, {readings} readings, {wrong} wrong")
    assert readings >= 20, "the locked reader did not read 20 times before the deadline"
    assert wrong == 0


def test_gauge_modes_are_declared_and_checked():
    assert Gauge("g", multiprocess_mode="liveall").multiprocess_mode == "pid"
    assert Gauge("g", multiprocess_mode="livesum").multiprocess_mode == "sum"
    assert Gauge("g", multiprocess_mode="mostrecent").multiprocess_mode == "latest"
    with pytest.raises(ValueError, match="multiprocess_mode"):
        Gauge("g", multiprocess_mode="average")
    with pytest.raises(ValueError, match="pid"):
        Gauge("g", labels=[("pid", ["1"])])
    assert Gauge("g", labels=[("pid", ["1"])], multiprocess_mode="sum")


def test_unreadable_files_are_skipped_and_reported(tmp_path, caplog, monkeypatch):
    class Small(MetricSet, name="small"):
        n = Counter("small_n", "n")

    m = Small.create_in(tmp_path)
    m.n.add(4)
    (tmp_path / f"small.{DEAD_PID}.1.0.metrics").write_bytes(b"not a region at all")
    snap = MetricsDirectory(tmp_path, compact=False).collect()
    assert snap.skipped == [f"small.{DEAD_PID}.1.0.metrics"]
    assert "skipped" in caplog.text
    fams = {f.name: f for f in snap.families()}
    assert fams["small_n_total"].points == (((), 4),)
    monkeypatch.delenv(DIRECTORY_ENV, raising=False)
    with pytest.raises(ValueError, match="no directory"):
        MetricsDirectory()
    with pytest.raises(FileNotFoundError):
        MetricsDirectory(tmp_path / "missing")
    m.close()


def test_a_damaged_archive_stops_compaction_but_loses_no_count(tmp_path, caplog):
    workers = [DirWorker(tmp_path) for _ in range(2)]
    workers[0].send("rec 5")
    workers[0].exit()
    d = MetricsDirectory(tmp_path, compact=False)
    assert d.compact()["compacted"] == 1
    archive = next(p for p in tmp_path.iterdir() if ".archive." in p.name)
    data = bytearray(archive.read_bytes())
    data[200:260] = b"\xff" * 60                      # the layout description: checksum fails
    archive.write_bytes(bytes(data))
    workers[1].send("rec 7")
    workers[1].exit()
    done = d.compact()
    assert done["left"] == 1 and done["compacted"] == 0
    assert "unreadable archive" in caplog.text
    snap = d.collect()
    assert snap.skipped == [archive.name]             # reported, and the exited file still read
    fams = {f.name: f for f in snap.families()}
    assert dict(fams["pool_hits_total"].points)[("a",)] == 7
    archive.unlink()                                   # an operator removes it: compaction resumes
    assert d.compact()["compacted"] == 1 and hits(d) == 7


def test_create_in_refuses_bad_input_before_making_any_file(tmp_path, monkeypatch):
    from .directory_worker import Pool
    target = tmp_path / "sets"
    with pytest.raises(ValueError, match="const_labels"):
        Pool.create_in(target, const_labels={"bad-name": "1"})
    with pytest.raises(ValueError, match="const_labels"):
        Pool.create_in(target, const_labels={"k": "a"})       # a label of a metric already
    assert not target.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        Pool.create_in(tmp_path / "file")
    monkeypatch.delenv(DIRECTORY_ENV, raising=False)
    with pytest.raises(ValueError, match=DIRECTORY_ENV):
        Pool.create_in()
