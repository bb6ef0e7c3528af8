"""Sharded metric sets: per-thread copies, exact totals, the same readings as unsharded."""

import numpy as np
from numba import njit, prange

from engram_numba import Counter, Gauge, Histogram, MetricSet, attach_metrics
from engram_numba._asm import native_asm
from engram_numba.export import exposition

from .conftest import needs_two_cpus, run_threads, spin_barrier


class Plain(MetricSet, name="hot"):
    hits = Counter("hits", labels={"kind": ["a", "b"]})
    level = Gauge("level")
    sizes = Histogram("sizes", scale=2, range=(0.1, 10))
    wait = Histogram("wait", bounds=[1, 2, 3])


class Sharded(Plain, shards=4):
    pass


VALUES = np.array([0.5, 0.25, 1.0, 2.0, 0.125, 4.0, 0.75, 1.5, -1.0, np.nan])


@njit(nogil=True)
def record(m, n, flag, parties):
    spin_barrier(flag, parties)
    for i in range(n):
        m.hits.inc(i % 2)
        m.level.add(1.0)
        m.sizes.observe(VALUES[i % VALUES.size])
        m.wait.observe(VALUES[i % VALUES.size] * 2)


def _readings(m):
    s = m.snapshot()
    s.pop("timestamp_ns")
    return s


def test_layout_has_a_copy_per_shard():
    assert Sharded.shards == 4 and Plain.shards == 1
    lay = Sharded()._layout_
    assert lay.metrics["hits"].shards == 4 and lay.metrics["level"].shards == 1
    assert lay.size > Plain()._layout_.size
    assert lay.metrics["hits"].offset % 64 == 0


def test_sharded_and_plain_sets_read_the_same():
    flag = np.ones(1, np.int64)
    a, b = Plain(), Sharded()
    record(a, 5000, flag, 1)
    record(b, 5000, flag, 1)
    for m in (a, b):
        m.hits.add(7, "b")           # Python writes go to shard 0
        m.sizes.observe(3.0)
    plain, sharded = _readings(a), _readings(b)
    assert plain["metrics"] == sharded["metrics"]
    assert exposition(a).replace("hot_", "") == exposition(b).replace("hot_", "")


@needs_two_cpus
def test_threads_write_different_shards_and_totals_stay_exact(barrier):
    m = Sharded()
    n = 200_000
    run_threads(record, [(m, n, barrier, 2)] * 2)
    assert m.hits.values() == {"a": n, "b": n}
    assert m.level.value() == 2 * n
    h = m.sizes.read()
    assert h.count == 2 * n * 8 // 10 and h.nan == 2 * n // 10 and h.negative == 2 * n // 10
    assert h.min == 0.125 and h.max == 4.0
    words = m._words()
    lay = m._layout_.metrics["hits"]
    per_shard = [int(words[lay.slot_offset(s, 0) // 8]) for s in range(4)]
    assert sum(per_shard) == n and sorted(per_shard)[-2:] == [n // 2, n // 2], per_shard


@njit(parallel=True)
def record_prange(m, n):
    for i in prange(n):
        m.hits.inc(i % 2)
        m.sizes.observe(1.0)


def test_prange_totals_are_exact():
    m = Sharded()
    record_prange(m, 100_000)
    assert m.hits.total == 100_000 and m.sizes.read().count == 100_000


def test_reset_clears_every_shard_and_files_keep_the_shards(tmp_path):
    flag = np.ones(1, np.int64)
    path = tmp_path / "s.metrics"
    m = Sharded.create(path)
    record(m, 1000, flag, 1)
    view = attach_metrics(path)
    assert type(view).shards == 4 and _readings(view)["metrics"] == _readings(m)["metrics"]
    m.sizes.reset()
    assert m.sizes.read().count == 0 and m.hits.total == 1000
    m.reset()
    assert m.hits.total == 0 and m.level.value() == 0.0


@njit
def bare(n):
    acc = 0.0
    for i in range(n):
        acc += np.sqrt(i)
    return acc


@njit
def instrumented(m, n):
    acc = 0.0
    for i in range(n):
        acc += np.sqrt(i)
        m.hits.inc(i % 2)
        m.sizes.observe(acc)
    return acc


def test_disabled_sharded_set_compiles_to_nothing():
    assert instrumented(Sharded.disabled(), 10) == bare(10)
    assert native_asm(instrumented, instrumented.signatures[-1]) == native_asm(bare)
