"""One scenario of the directory fuzzer (tests/test_directory_fuzz.py), in a process of its own.

    python directory_fuzz_worker.py DIR SCENARIO_JSON RESULT_JSON

Writers, readers and compactors are forked children (the compiled code is loaded
once, here): writers record known counts and then live on, exit or are killed;
hostile entries are laid beside them; readers and compactors run at the same
time, some killed mid-way; then a fresh reader reads the directory.  Everything
seen is written to RESULT_JSON for the test to judge; a child that dies of a
signal it was not sent, or that does not finish, is reported.
"""

import json
import os
import signal
import socket
import sys
import time

from engram_numba import Counter, Gauge, MetricSet
from engram_numba._region import KIND_METRICS, Region
from engram_numba.metrics import directory as D
from engram_numba.metrics.directory import LIVE, MetricsDirectory

DEAD = 4_194_305                     # above Linux's largest pid: never a running process


class V1(MetricSet, name="fz"):
    hits = Counter("fz_hits", "Hits")
    level = Gauge("fz_level", "Level", multiprocess_mode="livesum")


class V2(MetricSet, name="fz"):      # a later version of the same set: one metric more
    hits = Counter("fz_hits", "Hits")
    extra = Counter("fz_extra", "Only in version 2")
    level = Gauge("fz_level", "Level", multiprocess_mode="livesum")


class Other(MetricSet, name="other"):
    hits = Counter("other_hits", "Another set's hits")


LONG = type("Long", (MetricSet,), {"hits": Counter("long_hits", "Hits")}, name="l" * 200)


def value(snap, name):
    for f in snap.families():
        if f.name == name:
            return sum(v for _, v in f.points)
    return 0


def reading(d):
    snap = d.collect()
    return {"fz": value(snap, "fz_hits_total"), "other": value(snap, "other_hits_total"),
            "long": value(snap, "long_hits_total"), "skipped": snap.skipped,
            "gauge": value(snap, "engram_directory_skipped_files")}


def _die_with_parent():
    """A forked child is killed when this process dies (of a signal, say), so that it
    never outlives the scenario holding its pipes open."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)           # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(4)


def fork(fn):
    pid = os.fork()
    if pid == 0:
        _die_with_parent()
        code = 0
        try:
            fn()
        except BaseException as exc:  # reported through the exit code and stderr
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            code = 3
        os._exit(code)
    return pid


def writer(directory, cls, n, pipe_w, pipe_r):
    def run():
        m = cls.create_in(directory)
        m.hits.add(n)
        m.level.set(1.0)
        os.write(pipe_w, (m.path + "\n").encode())
        os.read(pipe_r, 1)           # b"x": exit normally
    return run


def main():
    directory, scenario, result_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    D.COMPACT_BATCH = scenario["batch"]
    if os.environ.get("FZ_BREAK") == "mapping":      # the control: read through a mapping
        maps = {}                                    # kept from the first reading on

        def load(self):
            if self.name not in maps:
                maps[self.name] = Region.attach(self.path, KIND_METRICS, writable=False)
            self.copy = maps[self.name].data
        D._File.load = load
        D._File.shrunk = lambda self, size: False    # and no size check before reading
    warm = os.path.join(os.path.dirname(result_path), "warm")
    for cls in (V1, V2, Other, LONG):                 # compile everything before forking
        m = cls.create_in(warm)
        m.hits.add(1)
        if hasattr(m, "level"):
            m.level.set(1.0)
        m.close()
    MetricsDirectory(warm).collect()

    expected = {"fz": 0, "other": 0, "long": 0}
    upper = {"fz": 0}
    must_skip = set()
    writers = []
    for version, n, fate in scenario["writers"]:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = fork(writer(directory, V2 if version == 2 else V1, n, w1, r2))
        path = b""
        while not path.endswith(b"\n"):
            path += os.read(r1, 4096)
        writers.append({"pid": pid, "path": path.decode().strip(), "fate": fate, "go": w2})
        expected["fz"] += n
    upper["fz"] = expected["fz"]

    # an exited process's file to copy: dead copies, truncated copies, a growing file
    template_dir = os.path.join(os.path.dirname(result_path), "template")
    t = V1.create_in(template_dir)
    t.hits.add(10)
    t.close()
    (template_name,) = [n for n in os.listdir(template_dir) if LIVE.match(n)]
    template = open(os.path.join(template_dir, template_name), "rb").read()
    start = LIVE.match(template_name)["start"]
    serial = [0]

    def dead_name(set_name="fz"):
        serial[0] += 1
        return os.path.join(directory, f"{set_name}.{DEAD + serial[0]}.{start}.0.metrics")

    for _ in range(scenario["dead_copies"]):
        open(dead_name(), "wb").write(template)
        expected["fz"] += 10
    for _ in range(scenario["truncated_copies"]):
        path = dead_name()
        open(path, "wb").write(template[:len(template) // 3])
        must_skip.add(os.path.basename(path))
    growing = None
    if scenario["growing"]:
        growing = dead_name()
        open(growing, "wb").write(template[:200])
        expected["fz"] += 10                              # completed before the last reading
    for _ in range(scenario["others"]):
        o = Other.create_in(directory)
        o.hits.add(5)
        o.close()
        expected["other"] += 5
    if scenario["long_name"]:
        lm = LONG.create_in(directory)
        lm.hits.add(7)
        lm.close()
        expected["long"] += 7
    upper["fz"] = expected["fz"]
    for kind in scenario["hostile"]:
        path = dead_name()
        name = os.path.basename(path)
        if kind == "symlink_in" and writers:
            os.symlink(writers[0]["path"], path)
        elif kind == "symlink_out":
            os.symlink(os.path.join(template_dir, template_name), path)
        elif kind == "dangling":
            os.symlink(os.path.join(directory, "nowhere"), path)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            s = socket.socket(socket.AF_UNIX)
            s.bind(path)
            s.close()
        elif kind == "archive_fifo":
            name = "fz.archive.0123456789abcdef.metrics"
            path = os.path.join(directory, name)
            if os.path.exists(path):
                continue
            os.mkfifo(path)
        elif kind.startswith("crafted"):
            desc = json.loads(V1._layout(64).description)
            if kind == "crafted_inf":
                desc["shards"] = float("inf")
            elif kind == "crafted_name":
                desc["name"] = "x" * 2000
            else:
                desc = {"format": "engram-numba.metric-set", "metrics": "not a list"}
            r = Region.create(path, KIND_METRICS, V1._layout(64).size, json.dumps(desc))
            r.publish()
            r.close()
        elif kind == "lockdir":
            lock = os.path.join(directory, D.LOCK_NAME)
            if os.path.isdir(lock):
                continue
            if os.path.exists(lock):
                os.unlink(lock)
            os.mkdir(lock)
            name = D.LOCK_NAME
        else:
            continue
        must_skip.add(name)
    victim = None
    if scenario["victim"] and any(w["fate"] == "live" for w in writers):
        victim = next(w for w in writers if w["fate"] == "live")

    # readers and compactors, at the same time as the changes below
    out_dir = os.path.join(os.path.dirname(result_path), "readings")
    os.makedirs(out_dir, exist_ok=True)

    def reader(k):
        def run():
            d = MetricsDirectory(directory)
            with open(os.path.join(out_dir, f"r{k}"), "w") as f:
                for _ in range(scenario["rounds"]):
                    f.write(json.dumps(reading(d)) + "\n")
                    f.flush()
        return run

    def compactor():
        d = MetricsDirectory(directory, compact=False)
        for _ in range(scenario["rounds"]):
            try:
                d.compact()
            except D.LockUnavailable:       # the lock is a directory: compact() says so
                if "lockdir" not in scenario["hostile"]:
                    raise

    early = MetricsDirectory(directory, compact=False)   # maps every file before the changes
    reading(early)
    children = {fork(reader(k)): "reader" for k in range(scenario["readers"])}
    children.update({fork(compactor): "compactor" for _ in range(scenario["compactors"])})
    killed = set()
    to_kill = ([p for p, k in children.items() if k == "reader"][:scenario["kill_readers"]]
               + [p for p, k in children.items() if k == "compactor"][
                   :scenario["kill_compactors"]])
    time.sleep(scenario["pause"])
    for w in writers:
        if w["fate"] == "kill":
            os.kill(w["pid"], signal.SIGKILL)
        elif w["fate"] == "exit":
            os.write(w["go"], b"x")
    if victim is not None:                          # truncated while readers have it mapped
        os.truncate(victim["path"], 4096)
        expected["fz"] -= next(n for (v, n, f), w in zip(scenario["writers"], writers)
                               if w is victim)
        must_skip.add(os.path.basename(victim["path"]))
    if growing is not None:
        with open(growing, "ab") as f:
            f.write(template[200:])
    for pid in to_kill:
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    problems = []
    deadline = time.monotonic() + 240
    pending = dict(children)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                kind = pending.pop(pid)
                if os.WIFSIGNALED(status) and pid not in killed:
                    problems.append(f"{kind} died of signal {os.WTERMSIG(status)}")
                elif os.WIFEXITED(status) and os.WEXITSTATUS(status):
                    problems.append(f"{kind} failed (exit {os.WEXITSTATUS(status)})")
        time.sleep(0.01)
    for pid, kind in pending.items():
        problems.append(f"{kind} did not finish (hung)")
        os.kill(pid, signal.SIGKILL)
    for w in writers:
        if w["fate"] != "live":
            os.waitpid(w["pid"], 0)

    final = MetricsDirectory(directory)
    first = reading(final)
    again = reading(final)                         # after a second compaction: the same
    fresh = reading(MetricsDirectory(directory, compact=False))
    later = reading(early)                         # its mappings may have been truncated
    readings = []
    for name in os.listdir(out_dir):
        with open(os.path.join(out_dir, name)) as f:
            readings += [json.loads(line) for line in f if line.endswith("\n")]
    for w in writers:
        if w["fate"] == "live":
            os.kill(w["pid"], signal.SIGKILL)
            os.waitpid(w["pid"], 0)
    json.dump({"expected": expected, "upper": upper, "must_skip": sorted(must_skip),
               "final": [first, again, fresh, later], "readings": readings,
               "problems": problems,
               "entries": sorted(os.listdir(directory))}, open(result_path, "w"))


if __name__ == "__main__":
    main()
