"""Thread-owned copies: every recording thread updates a copy of its own with plain
loads and stores; readers add the copies up.  Ownership is checked for nogil threads,
prange workers under each threading layer, finished threads, forked children and
several processes on one file, with a control that loses updates without it."""

import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from numba import njit, prange

from engram_numba import CognitivePatternMetrics, Counter, Gauge, Histogram, MetricSet
from engram_numba._asm import loops, native_lines
from engram_numba._kernel_arg import current_pid
from engram_numba.metrics import _record as R

from .conftest import needs_two_cpus, run_isolated, run_threads, spin_barrier


class Hot(MetricSet, name="hot"):
    hits = Counter("hits", labels={"kind": ["a", "b"]})
    level = Gauge("level")
    sizes = Histogram("sizes", scale=2, range=(0.1, 10))
    wait = Histogram("wait", bounds=[1, 2, 3])


class One(Hot, shards=1):
    """One owned copy: a second thread records into the shared copy."""


# exactly representable values: every partial sum is exact in float64
VALUES = np.array([0.5, 0.25, 1.0, 2.0, 0.125, 4.0, 0.75, 1.5])


@njit(nogil=True)
def hammer(m, n, flag, parties):
    spin_barrier(flag, parties)
    for i in range(n):
        m.hits.inc(i % 2)
        m.level.add(1.0)
        m.sizes.observe(VALUES[i % VALUES.size])
        m.wait.observe(VALUES[i % VALUES.size])


def _check_exact(m, total):
    assert m.hits.values() == {"a": total // 2, "b": total // 2}
    assert m.level.value() == float(total)
    per_value = total // VALUES.size
    for h in (m.sizes.read(), m.wait.read()):
        assert h.count == total
        assert h.sum == per_value * VALUES.sum()
        assert h.min == VALUES.min() and h.max == VALUES.max()
    assert m.invalid_records == 0


def owners(m) -> list:
    """(thread, pid) of every claimed owned copy, by copy index (1-based)."""
    lay = m.layout
    words = m._words()[lay.claim_offset // 8:lay.claim_offset // 8 + 2 * lay.shards]
    return {k + 1: (int(words[2 * k]), int(words[2 * k + 1]))
            for k in range(lay.shards) if words[2 * k]}


def copy_counts(m, attr="hits") -> np.ndarray:
    """The metric's first-slot word in every copy (shared, owned..., baseline)."""
    lay = m.layout
    return lay.copies(m._words())[:, lay.metrics[attr].block_offset // 8]


# -- layout and memory -------------------------------------------------------------------

def test_memory_is_one_copy_per_owning_thread():
    m = CognitivePatternMetrics()
    mem = m.memory()
    lay = m.layout
    assert mem["owned_copies"] == lay.shards == 16
    assert mem["bytes_per_copy"] == lay.copy_size and lay.copy_size % 64 == 0
    assert mem["region_bytes"] == lay.size == lay.hot_offset + lay.copy_size * (lay.shards + 2)
    assert mem["claimed"] == 0
    m.record_priming(0, 0.5)
    assert m.memory()["claimed"] == 1
    assert m.memory()["bytes_in_use"] == lay.hot_offset + lay.copy_size * 3


# -- ownership ----------------------------------------------------------------------------

@needs_two_cpus
def test_two_nogil_threads_own_two_copies_and_totals_are_exact(barrier):
    m = Hot()
    n = 400_000
    run_threads(hammer, [(m, n, barrier, 2)] * 2)
    _check_exact(m, 2 * n)
    claimed = owners(m)
    assert len(claimed) == 2 and {pid for _, pid in claimed.values()} == {current_pid()}
    counts = copy_counts(m)
    assert counts[0] == 0                               # nobody used the shared copy
    assert sorted(counts[list(claimed)]) == [n // 2, n // 2]


@njit(nogil=True)
def hammer_one_copy_without_ownership(addr, n, flag, parties):
    """The control: every thread takes one copy as its own, as if the claim were skipped."""
    spin_barrier(flag, parties)
    for i in range(n):
        R.counter_add(addr, 1, True)


@needs_two_cpus
def test_control_without_the_ownership_check_loses_updates():
    """Two writers on one copy with the owner's plain updates lose increments; the
    claim is what keeps the real path exact."""
    m = Hot()
    lay = m.layout
    addr = m._kernel_address + lay.copy_offset(1) + lay.metrics["hits"].block_offset
    n = 200_000
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:                  # until the race shows (a guard only)
        before = int(copy_counts(m)[1])
        flag = np.zeros(1, np.int64)
        run_threads(hammer_one_copy_without_ownership, [(addr, n, flag, 2)] * 2)
        if int(copy_counts(m)[1]) - before < 2 * n:
            break
    else:
        pytest.fail("two unowned writers never lost an update")


def test_threads_beyond_the_owned_copies_record_into_the_shared_copy(barrier):
    m = One()
    n = 100_000
    run_threads(hammer, [(m, n, barrier, 3)] * 3)
    _check_exact(m, 3 * n)
    assert len(owners(m)) == 1
    counts = copy_counts(m)
    assert counts[1] == n // 2 and counts[0] == n       # one owner, two threads shared


@njit(nogil=True)
def record_then_release(m, n):
    for i in range(n):
        m.hits.inc(i % 2)
        m.sizes.observe(1.0)
    return m.release_thread()


@njit(nogil=True)
def record_and_keep(m, n):
    for i in range(n):
        m.hits.inc(i % 2)
        m.sizes.observe(1.0)


def test_a_finished_thread_hands_its_copy_back_and_its_counts_stay():
    m = One()
    released = []
    t = threading.Thread(target=lambda: released.append(record_then_release(m, 1000)))
    t.start()
    t.join()
    assert released == [0] and owners(m) == {}          # copy 1 (index 0) is free again
    t = threading.Thread(target=record_and_keep, args=(m, 1000))
    t.start()
    t.join()
    assert copy_counts(m)[1] == 1000 and copy_counts(m)[0] == 0   # the next thread took it
    assert m.hits.total == 2000 and m.sizes.read().count == 2000


def test_finished_threads_that_keep_their_copy_lose_nothing():
    m = One()
    for _ in range(20):                                  # more threads than copies
        t = threading.Thread(target=record_and_keep, args=(m, 100))
        t.start()
        t.join()
    assert m.hits.total == 2000 and m.sizes.read().count == 2000
    assert copy_counts(m)[:2].sum() == 1000              # labels alternate: 'a' is half


def test_python_threads_release_too():
    m = One()

    def work():
        m.hits.inc("a")
        m.sizes.observe(2.0)
        assert m.release_thread() == 0

    for _ in range(3):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert copy_counts(m)[1] == 3 and copy_counts(m)[0] == 0 and owners(m) == {}
    assert m.sizes.read().count == 3


@njit(parallel=True)
def hammer_prange(m, n):
    for i in prange(n):
        m.hits.inc(i % 2)
        m.level.add(1.0)
        m.sizes.observe(VALUES[i % VALUES.size])
        m.wait.observe(VALUES[i % VALUES.size])


PRANGE = '''
import json, sys
import numpy as np
from numba import threading_layer
from tests.test_owned_copies import Hot, hammer_prange, owners, copy_counts, _check_exact
import time
deadline = time.monotonic() + 300        # on loaded cores one worker may take all the work:
while True:                              # run again until two took part (a guard only)
    m = Hot()
    hammer_prange(m, 800_000)
    _check_exact(m, 800_000)
    if len(owners(m)) >= 2 or time.monotonic() > deadline:
        break
print(json.dumps({"layer": threading_layer(), "owners": len(owners(m)),
                  "shared": int(copy_counts(m)[0])}))
'''


def _layer_env(layer):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2")
    if layer == "tbb":
        # the tbb wheel puts libtbb.so.12 in <prefix>/lib, which the loader does not search
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (os.path.join(sys.prefix, "lib"), env.get("LD_LIBRARY_PATH")) if p)
    return env


def _layer_available(layer) -> bool:
    probe = ("from numba import njit, prange, threading_layer\n"
             "@njit(parallel=True)\ndef f(n):\n    s = 0\n    for i in prange(n): s += i\n"
             "    return s\nf(10); print(threading_layer())")
    r = subprocess.run([sys.executable, "-c", probe], env=_layer_env(layer), capture_output=True,
                       text=True, timeout=300)
    return r.returncode == 0 and r.stdout.strip() == layer


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_prange_workers_own_copies_under_each_threading_layer(layer):
    if not _layer_available(layer):
        pytest.skip(f"numba's {layer} threading layer is not installed here")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", PRANGE], env=_layer_env(layer), cwd=root,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import json
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["layer"] == layer
    assert out["owners"] >= 2 and out["shared"] == 0, out    # every worker had a copy


FORK = '''
import os, sys
import numpy as np
from tests.test_owned_copies import Hot, record_and_keep, owners
path = sys.argv[1]
m = Hot.create(path)
record_and_keep(m, 1000)                    # the parent's main thread claims a copy
anon = Hot()
record_and_keep(anon, 10)
pid = os.fork()
if pid == 0:
    record_and_keep(m, 3000)                # same thread id, another process: another copy
    record_and_keep(anon, 5)                # a private copy of the parent's memory
    ok = anon.hits.total == 15 and len(owners(anon)) == 1
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, status
assert m.hits.total == 4000 and m.sizes.read().count == 4000, m.hits.total
pids = {p for _, p in owners(m).values()}
assert pids == {os.getpid(), pid}, (pids, os.getpid(), pid)
assert anon.hits.total == 10
print("ok")
'''


def test_a_forked_child_records_into_a_copy_of_its_own(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "f.metrics")], cwd=root,
                       env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


WRITER = '''
import sys
import numpy as np
from tests.test_owned_copies import Hot, hammer
m = Hot.attach(sys.argv[1])
flag = np.ones(1, np.int64)
hammer(m, int(sys.argv[2]), flag, 1)
print("done")
'''


def test_processes_attached_to_one_file_own_separate_copies(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "shared.metrics"
    m = Hot.create(path)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n = 200_000
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(n)], cwd=root,
                              env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and out.strip() == "done", err[-3000:]
    _check_exact(m, 2 * n)
    claimed = owners(m)
    assert len({pid for _, pid in claimed.values()}) == 2 and copy_counts(m)[0] == 0


# -- readers --------------------------------------------------------------------------------

@njit(nogil=True)
def write_until(m, stop, written):
    i = 0
    while stop[0] == 0:
        m.sizes.observe(VALUES[i % VALUES.size] * (1 + (i & 7)))
        m.hits.inc(i % 2)
        i += 1
        written[0] = i
    return i


def test_readers_see_consistent_histograms_and_live_counts_while_a_kernel_writes():
    """No flush step: a reader sees the counts grow while the writer's loop runs, and
    every reading's +Inf bucket equals its count."""
    m = Hot()
    stop = np.zeros(1, np.int64)
    written = np.zeros(1, np.int64)
    t = threading.Thread(target=write_until, args=(m, stop, written))
    t.start()
    seen, last, deadline = [], 0, time.monotonic() + 300
    try:
        while len(seen) < 50 and time.monotonic() < deadline:
            h = m.sizes.read()
            cumulative = h.cumulative()
            assert cumulative[-1] == (float("inf"), h.count)
            assert sum(n for _, _, n in h.buckets()) == h.count
            assert h.count >= last
            if h.count > last:
                seen.append(h.count)
            last = h.count
    finally:
        stop[0] = 1
        t.join()
    assert len(seen) == 50, "the reader never saw the writer's progress"
    assert m.sizes.read().count == written[0] and m.hits.total == written[0]


# -- generated code -------------------------------------------------------------------------

@njit(nogil=True)
def recording_loop(m, values, n):
    for i in range(n):
        m.hits.inc(i % 2)
        m.level.add(1.0)
        m.sizes.observe(values[i & 7])
        m.wait.observe(values[i & 7])


def test_the_recording_loop_has_no_locked_instruction_and_no_copy_lookup():
    """The copy is found once, where the kernel receives the set (its entry from
    Python; see OwnedAddressModel), and travels with it: the kernel itself holds
    no lookup, and inside the loop every record is plain loads and stores (the
    shared copy's atomic path is called out of line)."""
    m = Hot()
    recording_loop(m, VALUES, 10)
    lines = native_lines(recording_loop)
    found = loops(lines)
    assert found, "no loop in the kernel"
    assert not [line for line in lines if "engram_numba_claim_entry" in line]
    for first, last in found:
        assert not [line for line in lines[first:last + 1] if "lock" in line]
    assert not [line for line in lines if "lock" in line]
    # the lookup is in the code that receives the set from Python
    whole = recording_loop.inspect_asm(recording_loop.signatures[0])
    assert "engram_numba_claim_entry" in whole


@njit(nogil=True)
def _record_a(m, v):
    m.hits.inc(0)


@njit(nogil=True)
def _record_b(m, v):
    m.level.add(v)


@njit(nogil=True)
def records_from_two_functions(m, values, n):
    for i in range(n):
        _record_a(m, values[i & 7])
        _record_b(m, values[i & 7])


def test_records_compiled_in_several_functions_share_one_copy_lookup():
    """Each njit function is compiled in a module of its own.  The copy found where
    the kernel received the set travels into the functions it calls: none of them
    looks it up again (with a lookup per function, records in branches of a
    kernel's helpers each made one, as the engram workload's did)."""
    m = Hot()
    records_from_two_functions(m, VALUES, 10)
    lines = native_lines(records_from_two_functions)
    assert not [line for line in lines if "engram_numba_claim_entry" in line]
    whole = records_from_two_functions.inspect_asm(records_from_two_functions.signatures[0])
    names = set(re.findall(r"engram_numba_claim_entry[\w.]*", whole))   # one, not one per module
    assert names == {"engram_numba_claim_entry_v1"}, names
    assert m.hits.value(0) == 10 and m.level.value() == float(np.sum(VALUES[np.arange(10) & 7]))


# -- gauges across copies ---------------------------------------------------------------------

@njit(nogil=True)
def gauge_ops(m, a, b, c):
    m.level.add(a)
    m.level.set(b)
    m.level.add(c)


def test_a_set_drops_the_adds_before_it_in_every_copy():
    m = Hot()
    m.level.add(3.0)                                    # this thread's copy
    t = threading.Thread(target=gauge_ops, args=(m, 10.0, 5.0, 2.0))
    t.start()
    t.join()
    assert m.level.value() == 7.0                       # the set at 5, then +2
    m.level.sub(1.5)
    assert m.level.value() == 5.5
