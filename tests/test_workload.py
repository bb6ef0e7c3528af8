"""The reference workload: deterministic, and every recall is counted consistently."""

import numba
import numpy as np
import pytest

from engram_numba import (CognitivePatternMetrics, CognitiveTracer, EventType, InterferenceType,
                          PrimingType, RejectionReason, TracingConfig)
from engram_numba.engram.workload import _GOLDEN, _mix, _next, build_graph, run_trials

TRIALS = 20_000


@pytest.fixture(scope="module")
def graph():
    return build_graph(3000, seed=5)


def run(graph, metrics, tracer, first=0, count=TRIALS, seed=11):
    progress = np.zeros(1, np.int64)
    checksum = run_trials(metrics, tracer, graph.indptr, graph.indices, graph.weights, first,
                          count, seed, progress)
    assert progress[0] == count
    return checksum


def _snapshot(m):
    s = m.snapshot()
    s.pop("timestamp_ns"), s.pop("start_ns")
    return s


def _same(a, b, path="") -> bool:
    """Equal, except floats (sums, means: addition order follows thread timing) to rounding."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        return all(_same(a[k], b[k], f"{path}/{k}") for k in a)
    if isinstance(a, list):
        assert len(a) == len(b), path
        return all(_same(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9), path
        return True
    assert a == b, path
    return True


def test_graph_shape(graph):
    deg = np.diff(graph.indptr)
    assert deg.min() >= 2 and deg.max() <= 96 and graph.edges == deg.sum()
    assert not np.any(graph.indices == np.repeat(np.arange(graph.nodes), deg))   # no self-loops
    assert np.all((graph.weights > 0) & (graph.weights <= 1))


def test_deterministic_for_a_seed_whatever_the_thread_count(graph):
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        m = CognitivePatternMetrics()
        checksum = run(graph, m, CognitiveTracer.disabled())
        results.append((checksum, _snapshot(m)))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    assert _same(results[0][1], results[1][1])       # every count and bucket identical
    other = CognitivePatternMetrics()
    run(graph, other, CognitiveTracer.disabled(), seed=12)
    assert _snapshot(other) != results[0][1]


def test_every_trial_is_counted_consistently(graph):
    m = CognitivePatternMetrics()
    run(graph, m, CognitiveTracer.disabled())
    rejections = sum(m.reconsolidation_rejection_count(r) for r in RejectionReason)
    assert m.reconsolidation_events_total() + rejections == TRIALS     # one attempt per recall
    snap = m.collect()
    hits = snap["reconsolidation_window_hits"].get()
    misses = snap["reconsolidation_window_misses"].get()
    assert hits + misses == TRIALS
    assert m.priming_type_count(PrimingType.SEMANTIC) == m.priming_type_count(PrimingType.ASSOCIATIVE)
    assert m.interference_detections_total() == sum(m.interference_count(t) for t in InterferenceType)
    assert m.drm_critical_lure_recalls.value() <= m.false_memory_generations_total()
    assert m.drm_list_item_recalls.value() <= 12 * m.false_memory_generations_total()
    spaced = m.massed_practice.value() + m.distributed_practice.value()
    assert abs(spaced - 0.2 * TRIALS) < 5 * np.sqrt(TRIALS * 0.2 * 0.8)
    assert m.histogram("retention_improvement").count == spaced
    assert m.invalid_records == 0
    # the cognitive patterns point the right way
    assert m.spacing_ratio() > 1.0
    assert m.histogram("retention_improvement").quantile(0.9) > 0
    assert 0.0 < m.drm_false_alarm_rate() < 0.5


def test_semantic_priming_matches_the_graph(graph):
    """Each recall primes min(3, degree) neighbours: recompute the cues in numpy."""
    m = CognitivePatternMetrics()
    run(graph, m, CognitiveTracer.disabled(), count=2000)
    cues = _cues(2000, 11, graph.nodes)
    expected = int(np.minimum(3, graph.indptr[cues + 1] - graph.indptr[cues]).sum())
    assert m.priming_type_count(PrimingType.SEMANTIC) == expected


@numba.njit
def _cues(count, seed, n):
    """The cue of each trial, drawn exactly as the workload draws it."""
    out = np.empty(count, np.int64)
    for t in range(count):
        state = _mix(np.uint64(seed) * _GOLDEN ^ np.uint64(t))
        state, u = _next(state)
        out[t] = min(np.int64(u * n), n - 1)
    return out


def test_traced_events_equal_metric_totals_at_full_sampling(graph):
    m = CognitivePatternMetrics()
    tr = CognitiveTracer(TracingConfig(ring_buffer_size=1 << 18, max_threads=8))
    run(graph, m, tr, count=5000)
    ev = tr.drain()
    st = tr.stats()
    assert st["total"]["dropped"] == 0 and st["no_ring"] == 0
    by_type = np.bincount(ev["event_type"], minlength=4)
    assert by_type[EventType.PRIMING] == m.priming_events_total()
    assert by_type[EventType.INTERFERENCE] == m.interference_detections_total()
    assert by_type[EventType.RECONSOLIDATION] == m.reconsolidation_events_total()
    assert by_type[EventType.FALSE_MEMORY] == m.drm_critical_lure_recalls.value()
    priming = ev[ev["event_type"] == EventType.PRIMING]
    for t in PrimingType:
        assert (priming["priming_type"] == t).sum() == m.priming_type_count(t)
    assert np.float32(priming["strength"]).sum() == pytest.approx(
        m.histogram("priming_strength").sum, rel=1e-5)
