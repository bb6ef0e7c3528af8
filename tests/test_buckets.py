"""Bucket math: index/boundary invariants at every scale, explicit buckets, quantiles."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engram_numba.metrics.buckets import (MAX_SCALE, MIN_SCALE, ExplicitBuckets,
                                          estimate_quantile, exponential_index,
                                          exponential_lower_boundary, exponential_tables,
                                          relative_error_bound)

SCALES = list(range(MIN_SCALE, MAX_SCALE + 1))


def index(value, scale):
    lut, bounds = exponential_tables(scale)
    return exponential_index(value, scale, lut, bounds)


@pytest.mark.parametrize("scale", SCALES)
def test_every_bucket_boundary_lands_on_the_right_side(scale):
    """base**i belongs to bucket i-1 (upper bound inclusive); the next double to bucket i."""
    n = 1 << scale
    for i in range(-3 * n, 3 * n + 1):
        lower = exponential_lower_boundary(i, scale)
        assert index(lower, scale) == i - 1, (scale, i, lower)
        assert index(np.nextafter(lower, math.inf), scale) == i, (scale, i)


@pytest.mark.parametrize("scale", SCALES)
def test_index_agrees_with_logarithm_on_random_values(scale):
    rng = np.random.default_rng(scale)
    values = np.exp(rng.uniform(-50, 50, 20000))
    for v in values:
        i = index(v, scale)
        assert exponential_lower_boundary(i, scale) < v <= exponential_lower_boundary(i + 1, scale)
        # reference: OpenTelemetry's logarithm mapping (can be off by one at exact boundaries)
        assert abs(i - (math.ceil(math.log2(v) * (1 << scale)) - 1)) <= 1


def test_powers_of_two_and_extreme_normals():
    for scale in SCALES:
        n = 1 << scale
        for e in (-1022, -10, 0, 1, 1023):
            assert index(math.ldexp(1.0, e), scale) == e * n - 1
        assert index(np.finfo(np.float64).max, scale) == 1024 * n - 1


@pytest.mark.parametrize("scale", [0, 3, 8])
def test_index_in_a_loop_has_no_branch_on_the_value(scale):
    """The in-octave step (is the mantissa above the next boundary?) is an add: inside a
    recording loop, LLVM made the conditional ``j += 1`` a jump on the loaded boundary,
    which a spread stream of values mispredicts.  The loop's only conditional jump is its
    back edge."""
    from numba import njit

    from engram_numba._asm import loops, native_lines

    lut, bounds = exponential_tables(scale)

    @njit
    def bucket_counts(values, counts):
        for i in range(values.size):
            counts[exponential_index(values[i], scale, lut, bounds) & 1023] += 1

    values = np.exp(np.random.default_rng(scale).uniform(-5, 5, 1000))
    counts = np.zeros(1024, dtype=np.int64)
    bucket_counts(values, counts)
    assert counts.sum() == values.size
    lines = native_lines(bucket_counts)
    found = loops(lines)
    assert found
    for first, last in found:
        jumps = [line.strip() for line in lines[first:last + 1]
                 if line.strip().startswith("j") and not line.strip().startswith("jmp")]
        assert len(jumps) == 1, jumps             # the back edge


def test_observe_loop_loads_no_byte_constant():
    """The mantissa comes from a shift, not a mask: with BMI2, LLVM masked with ``bzhi``
    and loaded its bit count with a byte move (``movb $52, %r9b``) in the recording loop;
    Intel cores merge a byte write into the register's old value, which can chain a
    record to the previous record's table loads."""
    from numba import njit

    from engram_numba import Histogram, MetricSet
    from engram_numba._asm import loops, native_lines

    class Sizes(MetricSet, name="bucket_loop"):
        h = Histogram("bucket_loop_sizes", "sizes", scale=3, range=(1e-3, 1e3))

    @njit
    def record(m, values, n):
        for i in range(n):
            m.h.observe(values[i & 4095])

    m = Sizes()
    values = np.random.default_rng(1).lognormal(0.0, 1.5, 4096)
    record(m, values, 10_000)
    assert m.h.read().count == 10_000
    lines = native_lines(record)
    found = loops(lines)
    assert found
    byte_moves = [line.strip() for first, last in found for line in lines[first:last + 1]
                  if line.strip().startswith("movb") and "$" in line]
    assert not byte_moves, byte_moves


def test_relative_error_bound_values():
    assert relative_error_bound(3) == pytest.approx(0.0443, abs=1e-4)
    assert relative_error_bound(4) == pytest.approx(0.0219, abs=1e-4)
    with pytest.raises(ValueError):
        relative_error_bound(9)


def test_explicit_index_upper_bound_inclusive():
    scheme = ExplicitBuckets([0.1, 0.5, 1.0])
    assert [scheme.index(v) for v in (-5.0, 0.1, 0.10001, 0.5, 1.0, 1.5)] == [0, 0, 1, 1, 2, 3]


def _bound_lists():
    finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
    spread = st.lists(finite, min_size=1, max_size=80, unique=True).map(sorted)
    # clusters: many bounds within a few ulps of each other next to far ones, so
    # that one table cell holds several bounds (m > 1)
    clustered = st.tuples(finite, st.integers(1, 40), finite).map(
        lambda t: sorted({*_ulps(t[0], t[1]).tolist(), t[2]} - {math.inf}))
    return st.one_of(spread, clustered)


def _ulps(x, n):
    out, v = [], float(x)
    with np.errstate(over="ignore"):
        for _ in range(n):
            out.append(v)
            v = float(np.nextafter(v, np.inf))
    return np.array(out)


@settings(max_examples=300, deadline=None)
@given(_bound_lists(), st.lists(st.floats(allow_nan=False, width=64), max_size=40))
def test_explicit_index_counts_the_bounds_below_the_value(bounds, values):
    scheme = ExplicitBuckets(bounds)
    b = np.array(scheme.bounds)
    with np.errstate(over="ignore"):        # the neighbours of +-max are +-inf: probes too
        probes = list(values) + list(b) + [float(np.nextafter(x, -np.inf)) for x in b] + \
            [float(np.nextafter(x, np.inf)) for x in b] + [-0.0, 0.0, -np.inf, np.inf]
    for v in probes:
        assert scheme.index(v) == int(np.searchsorted(b, v, side="left")), (v, scheme.tables[:4])


def test_clustered_bounds_need_several_comparisons_per_cell():
    bounds = [1.0 + k * 2.0 ** -52 for k in range(20)] + [1e300]
    scheme = ExplicitBuckets(bounds)
    assert scheme.tables[3] > 1          # m: the cell holding the cluster has several bounds
    for v in bounds + [0.5, 1.5, 2e300]:
        assert scheme.index(v) == int(np.searchsorted(bounds, v, side="left"))


def test_quantile_is_monotonic_and_hits_the_extremes():
    bins = [(3, 1.0), (0, 2.0), (5, 4.0), (2, 8.0)]
    qs = np.linspace(0, 1, 101)
    est = [estimate_quantile(q, bins, 10, 0.9, 9.0) for q in qs]
    assert all(a <= b for a, b in zip(est, est[1:]))
    assert est[0] == 0.9 and est[-1] == 9.0
    assert math.isnan(estimate_quantile(0.5, [], 0, math.nan, math.nan))
    with pytest.raises(ValueError):
        estimate_quantile(1.5, bins, 10, 0.9, 9.0)


def test_le_bounds_are_the_boundaries_of_cumulative():
    """Exporters build the ``le`` label strings once from le_bounds(): they must be the
    boundaries cumulative() gives for any data."""
    from engram_numba import Histogram, MetricSet

    class Shapes(MetricSet):
        pos = Histogram("t_pos", "p", scale=2, range=(1e-3, 1e3))
        both = Histogram("t_both", "b", scale=1, range=(1e-2, 1e2), negative=True)
        explicit = Histogram("t_explicit", "e", bounds=[-1.0, 0.0, 2.5, 10.0])

    m = Shapes()
    for v in (-50.0, -0.5, 0.0, 0.3, 7.0, 1e4):
        m.pos.observe(v)
        m.both.observe(v)
        m.explicit.observe(v)
    for attr in ("pos", "both", "explicit"):
        h = getattr(m, attr).read()
        assert [le for le, _ in h.cumulative()] == h.spec.scheme.le_bounds(), attr
