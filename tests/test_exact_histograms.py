"""Every export of a histogram is exact at the resolution it states.

A property test draws sets of values (powers of two, exact bucket boundaries and
their neighbours, zeros, negatives, NaN and infinities, values far outside the
declared range), records them, decodes every format (text ``le`` lines,
OpenMetrics through prometheus_client's strict parser, protobuf native
histograms, OTLP exponential and explicit histograms through the official
``opentelemetry-proto`` messages, ``to_dict()``/JSON, DataFrames) and compares
each bucket with a count made from the values themselves.  The reference bucket
index comes from ``math.frexp`` and ``2.0 ** (k / 2**scale)``, never from
:mod:`engram_numba.metrics.buckets`.
"""

from __future__ import annotations

import bisect
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engram_numba import Histogram, MetricSet
from engram_numba.export.prometheus import exposition, openmetrics_exposition
from engram_numba.export.prometheus_proto import parse_protobuf, protobuf_exposition
from engram_numba.metrics.buckets import ExplicitBuckets, ExponentialBuckets

# -- the reference: bucket indexes from math.frexp ---------------------------------------


def octave_boundaries(scale: int) -> list:
    """The doubles nearest 2**(k / 2**scale), k = 0 .. 2**scale - 1, and 2."""
    return [2.0 ** (k / 2 ** scale) for k in range(2 ** scale)] + [2.0]


_BOUNDARIES = {s: octave_boundaries(s) for s in range(0, 9)}


def ref_index(magnitude: float, scale: int) -> int:
    """OpenTelemetry's index of a positive finite magnitude: bucket i holds
    (base**i, base**(i+1)], base = 2**(2**-scale); scale may be negative."""
    m, e = math.frexp(magnitude)          # magnitude = m * 2**e, 0.5 <= m < 1
    octave, f = e - 1, 2.0 * m            # magnitude = f * 2**octave, 1 <= f < 2
    if scale <= 0:
        index0 = octave if f > 1.0 else octave - 1     # an exact power of two closes a bucket
        return index0 >> -scale
    b = _BOUNDARIES[scale]
    if f == 1.0:
        return (octave << scale) - 1
    j = max(k for k in range(2 ** scale) if b[k] < f)
    return (octave << scale) + j


def ref_boundary(index: int, scale: int) -> float:
    """The lower boundary base**index as the reference sees it (scale >= 0)."""
    octave, k = divmod(index, 2 ** scale)
    return math.ldexp(_BOUNDARIES[scale][k], octave)


def in_domain(scheme, values) -> list:
    """The values a histogram counts: finite, and not negative without negative buckets."""
    return [v for v in values if math.isfinite(v) and (scheme.negative or not v < 0.0)]


def expected_native(values, scale, threshold, sign, offset=0) -> dict:
    """{index + offset: count} of the values of one sign above the zero threshold."""
    out = {}
    for v in values:
        if abs(v) <= threshold or (v > 0) != (sign > 0):
            continue
        i = ref_index(abs(v), scale) + offset
        out[i] = out.get(i, 0) + 1
    return out


def ref_sum(values):
    """(exact sum of the values, tolerance for a sum added in another order), or None when
    the magnitudes overflow."""
    try:
        scale = math.fsum(abs(v) for v in values)
        total = math.fsum(values)
    except OverflowError:
        return None
    if not math.isfinite(scale):
        return None
    return total, 1e-12 * scale * (len(values) + 1)


def check_sum(got, values, where):
    ref = ref_sum(values)
    if ref is not None:
        assert abs(got - ref[0]) <= ref[1], (where, got, ref)


def count_at_most(values, le) -> int:
    return sum(1 for v in values if v <= le)


def in_bucket(scheme, lo, hi, v) -> bool:
    """Whether ``v`` lies in the bucket ``(lo, hi)`` as HistogramData.buckets() documents
    it (None: an open end)."""
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    if isinstance(scheme, ExplicitBuckets):
        return lo < v <= hi
    if lo <= 0.0 <= hi:                                  # the zero bucket
        return lo <= v <= hi
    if hi <= 0.0:                                        # negative: [-upper, -lower)
        return lo <= v < hi
    return lo < v <= hi


def check_listed_buckets(scheme, rows, domain, where):
    """Rows (lower, upper, count) of every non-empty bucket: each count is the number of
    values inside, and together they hold every value exactly once."""
    total = 0
    for lo, hi, n in rows:
        inside = sum(1 for v in domain if in_bucket(scheme, lo, hi, v))
        assert n == inside, (where, lo, hi, n, inside)
        total += n
    assert total == len(domain), (where, total, len(domain))


# -- the declarations under test ----------------------------------------------------------

SCHEMES = [
    ExponentialBuckets(1, (0.01, 100)),
    ExponentialBuckets(2, (2.0 ** -20, 2.0 ** 20), negative=True),
    ExponentialBuckets(0, (0.125, 8.0), negative=True),
    ExponentialBuckets(3, (1e-6, 10)),
    ExponentialBuckets(4, (2.0 ** -7, 2.0)),
    ExponentialBuckets(8, (1.0, 4.0), negative=True),
    ExponentialBuckets(3, (2.0 ** -1000, 2.0 ** -990)),
    ExponentialBuckets(2, (2.0 ** 990, 2.0 ** 1000), negative=True),
    ExplicitBuckets([-10.0, -1.0, 0.0, 0.5, 1.0, 2.5, 100.0]),
    ExplicitBuckets([0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                     7.5, 10.0]),
    ExplicitBuckets([0.0]),
]
_sets: dict = {}


def metric_set(k: int):
    """A metric set class holding SCHEMES[k] as ``h`` (one class per scheme, made once)."""
    cls = _sets.get(k)
    if cls is None:
        cls = type(f"Exact{k}", (MetricSet,), {
            "h": Histogram(f"exact{k}_values", "values", scheme=SCHEMES[k])},
            name=f"exact{k}")
        _sets[k] = cls
    return cls


@st.composite
def values_for(draw, k):
    scheme = SCHEMES[k]
    if isinstance(scheme, ExponentialBuckets):
        s, lo, hi = scheme.scale, scheme.min_exponent, scheme.max_exponent
        octave = st.integers(max(lo - 4, -1022), min(hi + 40, 1023))
        boundary = st.builds(lambda o, j: math.ldexp(_BOUNDARIES[s][j], o), octave,
                             st.integers(0, 2 ** s - 1))
        special = st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324,
                                   1.7976931348623157e308, 1e300, 2.0 ** 1023,
                                   math.ldexp(1.0, lo), math.ldexp(1.0, hi),
                                   math.ldexp(1.0, hi + 16), math.ldexp(1.0, hi + 17)])
    else:
        bounds = scheme.bounds
        boundary = st.sampled_from(bounds)
        octave = st.integers(-30, 30)
        special = st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324,
                                   1.7976931348623157e308, -1e300])
    power = st.builds(lambda o: math.ldexp(1.0, o), octave)
    near = st.builds(lambda b, up: math.nextafter(b, math.inf if up else -math.inf),
                     boundary, st.booleans())
    anything = st.floats(allow_nan=True, allow_infinity=True, width=64)
    moderate = st.floats(min_value=-1e6, max_value=1e6)
    one = st.one_of(power, boundary, near, special, anything, moderate)
    signed = st.builds(lambda v, neg: -v if neg else v, one, st.booleans())
    return draw(st.lists(signed, min_size=0, max_size=40))


# -- decoding each format -----------------------------------------------------------------

def text_le(text: str, name: str) -> tuple:
    """(le lines, sum or None, count or None) of ``name`` in a text exposition, read
    line by line."""
    buckets, total, count = [], None, None
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), int(float(line.rsplit(" ", 1)[1]))))
        elif line.startswith(name + "_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(name + "_count"):
            count = int(float(line.rsplit(" ", 1)[1]))
    return buckets, total, count


def check_le_lines(buckets, domain, where):
    assert buckets and buckets[-1][0] == math.inf, where
    les = [le for le, _ in buckets]
    assert les == sorted(les) and len(set(les)) == len(les), where
    for le, n in buckets:
        assert n == count_at_most(domain, le), (where, le, n, count_at_most(domain, le))


def native_buckets(spans, deltas) -> dict:
    out, index, count, k = {}, 0, 0, 0
    for i, span in enumerate(spans):
        index = span.offset if i == 0 else index + span.offset
        for _ in range(span.length):
            count += deltas[k]
            k += 1
            assert count >= 0
            if count:
                out[index] = count
            index += 1
    assert k == len(deltas)
    return out


def check_quantiles(scheme, h, domain):
    """The library's quantile estimates keep the error bound it states (module doc of
    engram_numba.metrics.buckets), for quantiles in range, in the zero bucket and above
    the range alike."""
    if not domain:
        assert math.isnan(h.quantile(0.5))
        return
    ordered = sorted(domain)
    n = len(ordered)
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        true = ordered[max(1, math.ceil(q * n)) - 1] if q > 0 else ordered[0]
        est = h.quantile(q)
        if q in (0.0, 1.0):
            assert est == true, (q, est, true)
            continue
        if isinstance(scheme, ExplicitBuckets):
            b = scheme.bounds
            k = bisect.bisect_left(b, true)
            lo = max(b[k - 1] if k else -math.inf, ordered[0])
            hi = min(b[k] if k < len(b) else math.inf, ordered[-1])
            # half the width, give or take the rounding of the midpoint
            assert abs(est - true) <= (hi - lo) / 2 + math.ulp(est), (q, est, true, lo, hi)
            continue
        mag = abs(true)
        if mag <= 2.0 ** scheme.min_exponent:
            bound = 2.0 ** scheme.min_exponent                    # absolute, zero bucket
        elif mag <= 2.0 ** scheme.max_exponent:
            bound = (2.0 ** (2.0 ** -(scheme.scale + 1)) - 1) * mag
        elif mag <= math.ldexp(1.0, min(-(-(scheme.max_exponent + 16) // 16) * 16, 1023)) \
                or -(-(scheme.max_exponent + 16) // 16) * 16 >= 1024:
            bound = (math.sqrt(2.0) - 1) * mag                     # one bucket per octave
        else:
            bound = 255.0 * mag                                    # 16 octaves a bucket
        assert abs(est - true) <= bound * (1 + 1e-9), (q, est, true, bound)


def check_every_format(k, values):
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from engram_numba.export.otlp import metrics_request

    scheme = SCHEMES[k]
    m = metric_set(k)()
    try:
        for v in values:
            m.h.observe(v)
        domain = in_domain(scheme, values)
        name = f"exact{k}_values"
        snap = m.collect()
        h = snap["h"].get()
        assert h.count == len(domain)
        negative_seen = any(v < 0 for v in domain)
        exponential = isinstance(scheme, ExponentialBuckets)
        overflow = exponential and any(abs(v) > 2.0 ** scheme.max_exponent for v in domain)

        # text 0.0.4: every le line is the plain count of the values <= le
        buckets, total, count = text_le(exposition(snap), name)
        check_le_lines(buckets, domain, "text")
        assert count == len(domain)
        check_sum(total, domain, "text sum")
        # ... at every classic resolution
        if exponential:
            for c in range(0, scheme.scale + 1):
                check_le_lines(text_le(exposition(snap, classic_scale=c), name)[0], domain,
                               f"text classic_scale={c}")

        # OpenMetrics through prometheus_client's strict parser
        om = openmetrics_exposition(snap)
        fams = {f.name: f for f in text_string_to_metric_families(om)}
        fam = fams[name]
        om_buckets = [(float(s.labels["le"]), int(s.value)) for s in fam.samples
                      if s.name == name + "_bucket"]
        check_le_lines(om_buckets, domain, "openmetrics")
        sums = [s.value for s in fam.samples if s.name == name + "_sum"]
        assert not sums or (sums[0] >= 0 and not negative_seen), ("openmetrics sum", sums)
        if not negative_seen and om_buckets[0][0] >= 0:
            assert len(sums) == 1, "openmetrics sum left out"
            check_sum(sums[0], domain, "openmetrics sum")

        # protobuf: native histograms (exponential), classic buckets (explicit)
        (mf,) = [f for f in parse_protobuf(protobuf_exposition(snap)) if f.name == name]
        ph = mf.metric[0].histogram
        assert ph.sample_count == len(domain)
        if exponential:
            schema = ph.schema
            assert -4 <= schema <= scheme.scale
            if not overflow:
                assert schema == scheme.scale          # downscaled only when values overflow
            t = ph.zero_threshold
            assert t == 2.0 ** scheme.min_exponent
            assert ph.zero_count == sum(1 for v in domain if abs(v) <= t)
            for sign, field in ((1, "positive"), (-1, "negative")):
                got = native_buckets(getattr(ph, f"{field}_span"), getattr(ph, f"{field}_delta"))
                assert got == expected_native(domain, schema, t, sign, 1), (field, schema)
        else:
            assert [b.upper_bound for b in ph.bucket] == list(scheme.bounds) + [math.inf]
            for b in ph.bucket:
                assert b.cumulative_count == count_at_most(domain, b.upper_bound)

        # OTLP through the official messages
        req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(metrics_request(snap))
        (metric,) = [x for x in req.resource_metrics[0].scope_metrics[0].metrics
                     if x.name == name]
        if exponential:
            (p,) = metric.exponential_histogram.data_points
            assert -10 <= p.scale <= scheme.scale
            if not overflow:
                assert p.scale == scheme.scale
            assert p.zero_threshold == 2.0 ** scheme.min_exponent
            assert p.zero_count == sum(1 for v in domain if abs(v) <= p.zero_threshold)
            for sign, part in ((1, p.positive), (-1, p.negative)):
                got = {part.offset + i: c for i, c in enumerate(part.bucket_counts) if c}
                assert got == expected_native(domain, p.scale, p.zero_threshold, sign), sign
        else:
            (p,) = metric.histogram.data_points
            assert list(p.explicit_bounds) == list(scheme.bounds)
            edges = [-math.inf] + list(scheme.bounds) + [math.inf]
            assert list(p.bucket_counts) == [sum(1 for v in domain if a < v <= b)
                                             for a, b in zip(edges, edges[1:])]
        assert p.count == len(domain)
        assert p.HasField("sum") == (not negative_seen), "OTLP sum with negative values"
        if p.HasField("sum"):
            check_sum(p.sum, domain, "OTLP sum")
        if domain:
            assert (p.min, p.max) == (min(domain), max(domain))

        # to_dict() and its JSON, DataFrames: buckets with their bounds
        d = json.loads(json.dumps(snap.to_dict(), allow_nan=False))
        value = d["metrics"][name]["samples"][0]["value"]
        assert value["count"] == len(domain)
        check_listed_buckets(scheme, value["buckets"], domain, "dict")
        frame = snap.to_dataframe(histograms="buckets")
        rows = frame[frame["metric"] == name]
        check_listed_buckets(scheme, [(lo, hi, n) for lo, hi, n in
                                      zip(rows["lower"], rows["upper"], rows["value"])],
                             domain, "dataframe")
        check_listed_buckets(scheme, h.buckets(), domain, "buckets()")

        check_quantiles(scheme, h, domain)
    finally:
        m.close()


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, len(SCHEMES) - 1).flatmap(lambda k: st.tuples(st.just(k), values_for(k))))
def test_every_format_is_exact_bucket_by_bucket(case):
    k, values = case
    check_every_format(k, values)


@pytest.mark.parametrize("k", range(len(SCHEMES)))
def test_every_format_is_exact_on_the_hard_cases(k):
    """Each declaration with the values most likely to land on the wrong side: every
    power of two and boundary around and far outside the range, both signs."""
    scheme = SCHEMES[k]
    if isinstance(scheme, ExponentialBuckets):
        lo, hi = scheme.min_exponent, scheme.max_exponent
        octaves = sorted({*range(max(lo - 2, -1022), min(hi + 3, 1024)),
                          min(hi + 16, 1023), min(hi + 17, 1023), 1023})
        base = [math.ldexp(b, o) for o in octaves for b in _BOUNDARIES[scheme.scale][:-1]]
        base = base[::max(1, len(base) // 300)]
    else:
        base = list(scheme.bounds)
    values = [x for b in base for x in (b, math.nextafter(b, math.inf))]
    values += [-v for v in values] + [0.0, -0.0, math.nan, math.inf, -math.inf]
    check_every_format(k, values)


# -- the cases the property is made of, one by one ----------------------------------------

class Declared(MetricSet, name="declared", shards=1):
    narrow = Histogram("declared_narrow", "a narrow range", scale=1, range=(0.01, 100))
    signed = Histogram("declared_signed", "both signs", scale=2, negative=True)
    plain = Histogram("declared_plain", "every default")
    sizes = Histogram("declared_sizes", "explicit", bounds=[1.0, 10.0])


def otlp_points(m) -> dict:
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    from engram_numba.export.otlp import metrics_request
    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(metrics_request(m))
    out = {}
    for x in req.resource_metrics[0].scope_metrics[0].metrics:
        kind = x.WhichOneof("data")
        if kind in ("histogram", "exponential_histogram"):
            out[x.name] = getattr(x, kind).data_points[0]
    return out


def test_values_above_the_range_land_in_their_own_buckets():
    """130 and 200 above a range ending at 100 (2**7): OTLP and the native histogram go out
    at scale 0, where both lie in (128, 256]; not in the bucket of the largest one."""
    m = Declared()
    for v in (0.7, 130.0, 200.0):
        m.narrow.observe(v)
    p = otlp_points(m)["declared_narrow"]             # (0.5, 1] is -1, (128, 256] is 7
    assert (p.scale, p.positive.offset, list(p.positive.bucket_counts)) == \
        (0, -1, [1] + [0] * 7 + [2])
    (mf,) = [f for f in parse_protobuf(protobuf_exposition(m)) if f.name == "declared_narrow"]
    h = mf.metric[0].histogram
    assert h.schema == 0
    buckets = m.narrow.read().buckets()
    assert [(lo, hi, n) for lo, hi, n in buckets if lo >= 100 and n] == [(128.0, 256.0, 2)]
    # up to 2**32 (16 octaves and more above 2**7): an octave a bucket
    m.narrow.observe(2.0 ** 27 * 1.5)
    assert otlp_points(m)["declared_narrow"].scale == 0
    # one value beyond: 16 octaves a bucket (scale -4), still exact
    m.narrow.observe(2.0 ** 40 * 1.5)
    p = otlp_points(m)["declared_narrow"]
    assert p.scale == -4
    assert {p.positive.offset + i: c for i, c in enumerate(p.positive.bucket_counts) if c} \
        == {-1: 1, 0: 2, 1: 1, 2: 1}    # (2**-16, 1], (1, 2**16], (2**16, 2**32], (2**32, 2**48]
    assert m.narrow.read().quantile(0.99) == 2.0 ** 40      # the middle of its bucket
    m.close()


def test_overflow_recorded_in_a_kernel_and_in_the_shared_copy():
    """Kernels and threads without a copy of their own (shards=1) file out-of-range
    values the same way."""
    import threading

    from numba import njit

    @njit
    def observe(m, values):
        for v in values:
            m.narrow.observe(v)
            m.signed.observe(v)

    values = np.array([3.0, 300.0, -300.0, 2.0 ** 40, -(2.0 ** 40), 1e300, 0.0])
    m = Declared()
    observe(m, values)                       # the calling thread takes the only copy
    worker = threading.Thread(target=lambda: [(m.narrow.observe(v), m.signed.observe(v))
                                              for v in values])
    worker.start()
    worker.join()
    for attr in ("narrow", "signed"):
        scheme = getattr(Declared, attr).scheme
        h = getattr(m, attr).read()
        domain = in_domain(scheme, list(values) * 2)
        check_listed_buckets(scheme, h.buckets(), domain, attr)
    m.close()


def test_negative_le_lines_count_the_values_on_the_boundary():
    """Only -4.0 observed with negative buckets: every le line >= -4.0 counts it."""
    m = Declared()
    m.signed.observe(-4.0)
    buckets, _, count = text_le(exposition(m), "declared_signed")
    assert count == 1
    for le, n in buckets:
        assert n == (1 if le >= -4.0 else 0), (le, n)
    m.close()


def test_openmetrics_keeps_sum_only_while_it_is_a_counter():
    """An explicit histogram that observed -3.0: its _sum would be negative, which the
    strict parser rejects; it is left out (the +Inf bucket gives the count)."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    m = Declared()
    m.sizes.observe(5.0)
    fams = {f.name: f for f in text_string_to_metric_families(openmetrics_exposition(m))}
    assert [s.value for s in fams["declared_sizes"].samples if s.name.endswith("_sum")] == [5.0]
    m.sizes.observe(-3.0)
    fams = {f.name: f for f in text_string_to_metric_families(openmetrics_exposition(m))}
    samples = {s.name: s.value for s in fams["declared_sizes"].samples
               if not s.name.endswith("_bucket")}
    assert "declared_sizes_sum" not in samples
    assert [s.value for s in fams["declared_sizes"].samples
            if s.labels.get("le") == "+Inf"] == [2]
    m.close()


def test_otlp_leaves_the_sum_out_once_a_negative_value_was_recorded():
    m = Declared()
    m.signed.observe(2.0)
    m.sizes.observe(2.0)
    points = otlp_points(m)
    assert points["declared_signed"].sum == 2.0 and points["declared_sizes"].sum == 2.0
    m.signed.observe(-3.0)
    m.sizes.observe(-3.0)
    points = otlp_points(m)
    for name in ("declared_signed", "declared_sizes"):
        p = points[name]
        assert not p.HasField("sum"), name
        assert (p.count, p.min, p.max) == (2, -3.0, 2.0)
    m.close()


def test_a_default_histogram_exports_about_40_classic_buckets():
    """One observation of a default Histogram: 42 le lines (40 octaves, the zero
    threshold and +Inf), not 322; the native form keeps its scale; classic_scale raises
    it, per declaration or per export."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    m = Declared()
    m.plain.observe(0.3)
    lines = [le for le, _ in text_le(exposition(m), "declared_plain")[0]]
    assert len(lines) == 42 and Declared.plain.classic_scale == 0
    om = {f.name: f for f in text_string_to_metric_families(openmetrics_exposition(m))}
    assert sum(s.name.endswith("_bucket") for s in om["declared_plain"].samples) == 42
    (mf,) = [f for f in parse_protobuf(protobuf_exposition(m)) if f.name == "declared_plain"]
    assert mf.metric[0].histogram.schema == 3
    assert otlp_points(m)["declared_plain"].scale == 3
    assert len(text_le(exposition(m, classic_scale=3), "declared_plain")[0]) == 322

    class Fine(MetricSet, name="fine"):
        plain = Histogram("fine_plain", "every le", classic_scale=3)

    fine = Fine()
    fine.plain.observe(0.3)
    assert len(text_le(exposition(fine), "fine_plain")[0]) == 322
    with pytest.raises(ValueError, match="classic_scale must be an integer in \\[0, 3\\]"):
        Histogram("x", "x", classic_scale=4)
    with pytest.raises(ValueError, match="classic_scale is for exponential"):
        Histogram("x", "x", bounds=[1.0], classic_scale=0)
    m.close()
    fine.close()
