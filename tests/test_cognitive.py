"""CognitivePatternMetrics: every record method, queries, invalid values, export names."""

import json
import math
import time

import numpy as np
import pytest
from numba import njit
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from engram_numba import atomic_load, atomic_store
from engram_numba._asm import native_asm
from engram_numba.export import MetricSetCollector, exposition, openmetrics_exposition
from engram_numba.engram.metrics import (CognitivePatternMetrics, InterferenceType,
                                            PrimingType, RejectionReason)

DASHBOARD_NAMES = """engram_priming_events_total engram_priming_strength
engram_interference_detections_total engram_proactive_interference_total
engram_retroactive_interference_total engram_fan_effect_interference_total
engram_proactive_interference_magnitude engram_retroactive_interference_magnitude
engram_fan_effect_magnitude engram_reconsolidation_events_total
engram_reconsolidation_modifications_total engram_reconsolidation_window_hits_total
engram_reconsolidation_window_misses_total engram_reconsolidation_rejections_total
engram_reconsolidation_plasticity_factor engram_drm_critical_lure_generations_total
engram_drm_critical_lure_recalls_total engram_drm_list_item_recalls_total
engram_reconstruction_confidence engram_massed_practice_events_total
engram_distributed_practice_events_total engram_retention_improvement""".split()


def python_workload(m, n):
    for i in range(n):
        m.record_priming(i % 3, 0.01 + (i % 100) / 100.0)
        m.record_interference(i % 3, 0.25 * (1 + i % 3))
        m.record_reconsolidation((i % 5) / 3.0 - 0.2)
        m.record_reconsolidation_rejection(i % 4)
        m.record_reconsolidation_modification()
        m.record_reconsolidation_plasticity(0.5)
        m.record_false_memory()
        m.record_drm_critical_lure()
        m.record_drm_list_item()
        m.record_drm_list_item()
        m.record_drm_list_item()
        m.record_reconstruction_confidence(0.75)
        m.record_massed_practice()
        m.record_distributed_practice()
        m.record_distributed_practice()
        m.record_retention_improvement(0.25 if i % 2 else -0.125)


workload = njit(python_workload)        # the same body, compiled
N = 600


@pytest.fixture(scope="module")
def recorded():
    m = CognitivePatternMetrics()
    workload(m, N)
    return m


def test_counts_and_queries(recorded):
    m = recorded
    assert m.priming_events_total() == N
    assert [m.priming_type_count(t) for t in PrimingType] == [N // 3] * 3
    assert m.priming_mean_strength() == pytest.approx(np.mean(0.01 + (np.arange(N) % 100) / 100))
    assert m.interference_detections_total() == N
    assert [m.interference_count(t) for t in InterferenceType] == [N // 3] * 3
    assert m.histogram("fan_effect_magnitude").count == N // 3
    assert m.histogram("engram_proactive_interference_magnitude").mean == 0.25
    assert m.reconsolidation_events_total() == N
    hits, misses = 3 * N // 5, 2 * N // 5 + N  # out-of-window + every rejection
    assert m.reconsolidation_window_hit_rate() == pytest.approx(hits / (hits + misses))
    assert [m.reconsolidation_rejection_count(r) for r in RejectionReason] == [N // 4] * 4
    assert m.false_memory_generations_total() == N
    assert m.drm_false_alarm_rate() == pytest.approx(0.25)
    assert m.spacing_ratio() == 2.0
    r = m.histogram("retention_improvement")
    assert r.count == N and r.min == -0.125 and r.max == 0.25 and r.negative == 0
    assert m.histogram("reconsolidation_plasticity").quantile(0.5) == 0.5
    assert m.invalid_records == 0
    with pytest.raises(ValueError, match="no histogram"):
        m.histogram("priming_events")


def test_python_calls_record_the_same(recorded):
    m = CognitivePatternMetrics()
    python_workload(m, N)
    a, b = m.snapshot(), recorded.snapshot()
    for s in (a, b):
        s.pop("timestamp_ns"), s.pop("start_ns")
    assert a == b
    json.dumps(a, allow_nan=False)


def test_empty_set_ratios_are_zero():
    m = CognitivePatternMetrics()
    assert m.reconsolidation_window_hit_rate() == 0.0
    assert m.drm_false_alarm_rate() == 0.0
    assert m.spacing_ratio() == 0.0
    assert m.priming_mean_strength() == 0.0
    m.record_distributed_practice()
    assert m.spacing_ratio() == 0.0  # no massed practice yet


@njit
def invalid_values(m, bad):
    m.record_priming(bad, 0.5)
    m.record_interference(bad, 0.5)
    m.record_reconsolidation_rejection(bad)


@pytest.mark.parametrize("bad", [-1, 3, 4, 1 << 40])
def test_invalid_enum_values_drop_the_whole_record_in_kernels(bad):
    m = CognitivePatternMetrics()
    invalid_values(m, bad)
    assert m.invalid_records == 3 - (bad == 3)   # 3 is a valid RejectionReason
    assert m.priming_events_total() == 0 and m.histogram("priming_strength").count == 0
    assert m.interference_detections_total() == 0
    assert m.reconsolidation_rejection_count(RejectionReason.OTHER) == (1 if bad == 3 else 0)


def test_invalid_enum_values_raise_from_python():
    m = CognitivePatternMetrics()
    with pytest.raises(ValueError, match="PrimingType"):
        m.record_priming(7, 0.5)
    with pytest.raises(ValueError, match="InterferenceType"):
        m.record_interference(-1, 0.5)
    with pytest.raises(ValueError, match="RejectionReason"):
        m.record_reconsolidation_rejection(9)
    assert m.invalid_records == 0 and m.priming_events_total() == 0


def test_counts_are_64_bit():
    m = CognitivePatternMetrics()
    m.priming_events.add(3 << 32, PrimingType.SEMANTIC)
    m.drm_critical_lure_recalls.add(5 << 32)
    m.drm_list_item_recalls.add(15 << 32)
    assert m.priming_events_total() == 3 << 32
    assert m.drm_false_alarm_rate() == 0.25


@njit
def bare(n):
    acc = 0.0
    for i in range(n):
        acc += math.sqrt(i)
    return acc


@njit
def instrumented(m, n):
    acc = 0.0
    for i in range(n):
        acc += math.sqrt(i)
        m.record_priming(i % 3, acc)
        m.record_interference(i % 4, acc)
        m.record_reconsolidation(acc)
        m.record_reconsolidation_rejection(i % 5)
        m.record_false_memory()
        m.record_retention_improvement(-acc)
    return acc


def test_disabled_cognitive_set_compiles_to_nothing():
    assert instrumented(CognitivePatternMetrics.disabled(), 50) == bare(50)
    disabled = instrumented.signatures[-1]
    instrumented(CognitivePatternMetrics(), 50)
    assert native_asm(instrumented, disabled) == native_asm(bare)
    assert native_asm(instrumented, instrumented.signatures[-1]) != native_asm(bare)


def _samples(families):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_dashboard_names_are_exported_with_recorded_values(recorded):
    text = exposition(recorded)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    exported = set()
    for f in families.values():
        exported |= {s.name for s in f.samples}
    for name in DASHBOARD_NAMES:
        if name.endswith("_total"):
            assert name in exported, name
        else:
            assert {f"{name}_bucket", f"{name}_sum", f"{name}_count"} <= exported, name
    s = _samples(families.values())
    for t in ("semantic", "associative", "repetition"):
        assert s[("engram_priming_events_total", (("priming_type", t),))] == N // 3
    for r in ("outside_window", "too_soon", "conflicting", "other"):
        assert s[("engram_reconsolidation_rejections_total", (("reason", r),))] == N // 4
    assert s[("engram_priming_strength_count", ())] == N
    assert s[("engram_priming_strength_bucket", (("le", "+Inf"),))] == N
    assert s[("engram_reconsolidation_window_hits_total", ())] == 3 * N // 5


def test_collector_and_text_exposition_agree(recorded):
    registry = CollectorRegistry()
    registry.register(MetricSetCollector(recorded))
    theirs = _samples(text_string_to_metric_families(generate_latest(registry).decode()))
    ours = _samples(text_string_to_metric_families(exposition(recorded)))
    # the one documented difference: prometheus_client (following OpenMetrics) omits
    # _sum and _count of histograms that have negative buckets
    signed = {"engram_retention_improvement_sum", "engram_retention_improvement_count"}
    assert {k: v for k, v in ours.items() if k[0] not in signed} == theirs


def test_openmetrics_output_parses(recorded):
    text = openmetrics_exposition(recorded)
    assert text.endswith("# EOF\n")
    s = _samples(openmetrics_families(text))
    assert s[("engram_priming_events_total", (("priming_type", "semantic"),))] == N // 3


def prometheus_histogram_quantile(q, buckets):
    """Prometheus' bucketQuantile (promql/quantile.go) on [(le, cumulative count)]."""
    total = buckets[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return start + (end - start) * (rank / count)


@pytest.mark.parametrize("distribution", ["uniform", "log-uniform", "beta", "bimodal", "point"])
def test_classic_buckets_keep_histogram_quantile_within_5_percent(distribution):
    rng = np.random.default_rng(11)
    n = 50_000
    values = {
        "uniform": lambda: rng.uniform(0.01, 1.0, n),
        "log-uniform": lambda: np.exp(rng.uniform(np.log(0.01), 0.0, n)),
        "beta": lambda: np.clip(rng.beta(2, 5, n), 0.01, 1.0),
        "bimodal": lambda: np.concatenate([rng.normal(0.05, 0.01, n // 2).clip(0.01, 1),
                                           rng.normal(0.8, 0.05, n // 2).clip(0.01, 1)]),
        "point": lambda: np.full(n, 0.3),
    }[distribution]()
    m = CognitivePatternMetrics()

    @njit
    def prime(m, v):
        for x in v:
            m.record_priming(0, x)
    prime(m, values)
    text = exposition(m)
    buckets = [(float(s.labels["le"]), s.value) for f in text_string_to_metric_families(text)
               for s in f.samples if s.name == "engram_priming_strength_bucket"]
    for q in (0.5, 0.95, 0.99):
        exact = np.quantile(values, q, method="inverted_cdf")
        estimate = prometheus_histogram_quantile(q, buckets)
        assert abs(estimate - exact) <= 0.05 * exact, (q, estimate, exact)


@njit(nogil=True)
def _hammer_priming(m, flag):
    """Record until flag[1] is set; flag[0] counts the records made so far."""
    i = 0
    while atomic_load(flag, 1) == 0:
        m.record_priming(i % 3, 0.01 + (i % 97) / 97.0)
        i += 1
        atomic_store(flag, 0, i)
    return i


def test_classic_buckets_stay_consistent_while_a_kernel_writes():
    """Scrapes taken while a kernel records: each one is self-consistent.

    The writer runs until the reader has taken its scrapes (no dependence on
    how many scrapes fit in some time); each scrape must land while the count
    is still moving, so the scrapes really overlap the writes.
    """
    import threading
    m = CognitivePatternMetrics()
    flag = np.zeros(2, np.int64)
    flag[1] = 1
    _hammer_priming(m, flag)
    flag[:] = 0
    writer = threading.Thread(target=_hammer_priming, args=(m, flag))
    writer.start()
    overlapped = 0
    deadline = time.monotonic() + 300          # a guard only
    try:
        while overlapped < 25 and time.monotonic() < deadline:
            before = atomic_load(flag, 0)
            fam = {f.name: f for f in text_string_to_metric_families(exposition(m))}
            samples = fam["engram_priming_strength"].samples
            buckets = [s.value for s in samples if s.name.endswith("_bucket")]
            count = next(s.value for s in samples if s.name.endswith("_count"))
            assert buckets == sorted(buckets), "cumulative buckets decreased"
            assert buckets[-1] == count, "+Inf bucket differs from _count"
            if atomic_load(flag, 0) > before > 0:
                overlapped += 1
    finally:
        atomic_store(flag, 1, 1)
        writer.join()
    assert overlapped == 25
