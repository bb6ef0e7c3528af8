"""Property tests of the Python record calls against a reference model.

Every call with arbitrary arguments either raises ValueError/TypeError and
records nothing, or records exactly what a plain-Python reference model says:
for a generic metric set (labelled counters, gauges, exponential and explicit
histograms), for the cognitive set's record methods, and for TracingConfig.
"""

import enum
import math
import numbers

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram_numba import (CognitivePatternMetrics, Counter, Gauge, Histogram, InterferenceType,
                          MetricSet, PrimingType, RejectionReason, TracingConfig)
from engram_numba import EventType

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


class Color(enum.IntEnum):
    RED = 0
    GREEN = 1
    BLUE = 2


class Other(enum.IntEnum):
    A = 0
    B = 1


class Shop(MetricSet):
    sold = Counter("sold", labels={"color": Color, "size": ["s", "m"]})
    level = Gauge("level", labels={"color": Color})
    price = Histogram("price", scale=2, range=(0.01, 100), negative=True)
    wait = Histogram("wait", bounds=[0.5, 1, 2, 5])


ANY = st.one_of(
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, -1, 2 ** 64 - 1, 2 ** 64, 0.5, -0.0, True, False, None, "s",
                     "m", "red", "x", "3.5", b"1", [1], (), {}, 1j, np.float32(0.25),
                     np.int64(2), np.uint64(1), np.bool_(True), np.float64("nan"),
                     Color.RED, Color.BLUE, Other.B, PrimingType.REPETITION,
                     InterferenceType.FAN, RejectionReason.OTHER]),
    st.text(max_size=3), st.binary(max_size=3))


# -- the reference model ---------------------------------------------------------------

class Invalid(Exception):
    pass


def number(v) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating,
                                                             np.integer)):
        raise Invalid
    return float(v)


def integer(v, lo, hi) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        raise Invalid
    if not lo <= int(v) <= hi:
        raise Invalid
    return int(v)


def label(v, values, enum_cls=None) -> int:
    if isinstance(v, enum.Enum):
        if enum_cls is None or not isinstance(v, enum_cls):
            raise Invalid
        return int(v)
    if isinstance(v, str):
        if v not in values:
            raise Invalid
        return values.index(v)
    return integer(v, 0, len(values) - 1)


def enum_arg(v, enum_cls):
    if isinstance(v, enum.Enum):
        if not isinstance(v, enum_cls):
            raise Invalid
        return int(v)
    return integer(v, min(enum_cls), max(enum_cls)) if int_like(v) and int(v) in set(
        int(m) for m in enum_cls) else _raise()


def int_like(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _raise():
    raise Invalid


COLORS = ["red", "green", "blue"]
SIZES = ["s", "m"]


class Model:
    def __init__(self):
        self.sold = {}
        self.level = {}
        self.price, self.wait = [], []

    def apply(self, op, args):
        if op == "inc":
            if len(args) != 2:
                raise Invalid
            key = (label(args[0], COLORS, Color), label(args[1], SIZES))
            self.sold[key] = self.sold.get(key, 0) + 1
        elif op == "add":
            if len(args) != 3:
                raise Invalid
            n = integer(args[0], 0, 2 ** 64 - 1)
            key = (label(args[1], COLORS, Color), label(args[2], SIZES))
            self.sold[key] = (self.sold.get(key, 0) + n) % 2 ** 64
        elif op in ("set", "gadd", "sub"):
            if len(args) != 2:
                raise Invalid
            v = number(args[0])
            key = label(args[1], COLORS, Color)
            if op == "set":
                self.level[key] = v
            else:
                self.level[key] = self.level.get(key, 0.0) + (v if op == "gadd" else -v)
        elif op in ("price", "wait"):
            if len(args) != 1:
                raise Invalid
            getattr(self, op).append(number(args[0]))


def call(m, op, args):
    if op == "inc":
        return m.sold.inc(*args)
    if op == "add":
        return m.sold.add(*args)
    if op == "set":
        return m.level.set(*args)
    if op == "gadd":
        return m.level.add(*args)
    if op == "sub":
        return m.level.sub(*args)
    return getattr(m, op).observe(*args)


def check_histogram(data, observed, domain_negative):
    finite = [v for v in observed if math.isfinite(v) and (domain_negative or v >= 0)]
    assert data.count == len(finite)
    assert data.nan == sum(1 for v in observed if v != v)
    assert data.pos_inf == observed.count(math.inf) and data.neg_inf == observed.count(-math.inf)
    if finite:
        total = 0.0
        for v in finite:
            total += v
        assert data.sum == total
        assert data.min == min(finite) and data.max == max(finite)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["inc", "add", "set", "gadd", "sub", "price", "wait"]),
                          st.lists(ANY, max_size=4)), max_size=25))
def test_generic_set_calls_match_the_model(ops):
    m, model = Shop(), Model()
    for op, args in ops:
        before = m.snapshot()["metrics"]
        try:
            model.apply(op, args)
            expect_ok = True
        except Invalid:
            expect_ok = False
        if expect_ok:
            assert call(m, op, args) is True
        else:
            with pytest.raises((ValueError, TypeError)):
                call(m, op, args)
            assert m.snapshot()["metrics"] == before, (op, args)
    snap = m.collect()
    for (c, s), n in model.sold.items():
        assert snap["sold"].get(c, s) == n
    assert snap["sold"].total == sum(model.sold.values()) % 2 ** 64 or \
        snap["sold"].total == sum(model.sold.values())
    for c, v in model.level.items():
        got = snap["level"].get(c)
        assert got == v or (math.isnan(got) and math.isnan(v))
    check_histogram(snap["price"].get(), model.price, domain_negative=True)
    check_histogram(snap["wait"].get(), model.wait, domain_negative=True)
    assert m.invalid_records == 0


# -- the cognitive set ---------------------------------------------------------------------

COGNITIVE = {
    "record_priming": (PrimingType, "number"),
    "record_interference": (InterferenceType, "number"),
    "record_reconsolidation": ("number",),
    "record_reconsolidation_rejection": (RejectionReason,),
    "record_reconsolidation_plasticity": ("number",),
    "record_false_memory": (),
    "record_drm_list_item": (),
    "record_massed_practice": (),
    "record_retention_improvement": ("number",),
}


def cognitive_model(name, args, counts):
    kinds = COGNITIVE[name]
    if len(args) != len(kinds):
        raise TypeError
    vals = []
    for kind, v in zip(kinds, args):
        vals.append(number(v) if kind == "number" else enum_arg(v, kind))
    if name == "record_priming":
        counts["priming"] += 1
    elif name == "record_interference":
        counts["interference"] += 1
    elif name == "record_reconsolidation":
        counts["reconsolidation"] += 1
        counts["hits" if 0.0 <= vals[0] <= 1.0 else "misses"] += 1
    elif name == "record_reconsolidation_rejection":
        counts["misses"] += 1
        counts["rejections"] += 1
    elif name == "record_false_memory":
        counts["false"] += 1
    elif name == "record_drm_list_item":
        counts["items"] += 1
    elif name == "record_massed_practice":
        counts["massed"] += 1


def cognitive_counts(m):
    return {"priming": m.priming_events_total(), "interference": m.interference_detections_total(),
            "reconsolidation": m.reconsolidation_events_total(),
            "hits": m.reconsolidation_window_hits.value(),
            "misses": m.reconsolidation_window_misses.value(),
            "rejections": m.reconsolidation_rejections.total,
            "false": m.false_memory_generations_total(), "items": m.drm_list_item_recalls.value(),
            "massed": m.massed_practice.value()}


@pytest.fixture(scope="module")
def cognitive():
    return CognitivePatternMetrics()


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(sorted(COGNITIVE)), st.lists(ANY, max_size=3)),
                max_size=20))
def test_cognitive_record_calls_match_the_model(cognitive, calls):
    m = cognitive
    m.reset()
    expected = cognitive_counts(m)
    for name, args in calls:
        before = m.snapshot()["metrics"]
        try:
            cognitive_model(name, args, expected)
            ok = True
        except (Invalid, TypeError):
            ok = False
        if ok:
            getattr(m, name)(*args)
        else:
            with pytest.raises((ValueError, TypeError)):
                getattr(m, name)(*args)
            assert m.snapshot()["metrics"] == before, (name, args)
        assert cognitive_counts(m) == expected, (name, args)
    assert m.invalid_records == 0


# -- TracingConfig ------------------------------------------------------------------------

TYPES = [t.name.lower() for t in EventType]


def config_model(kw):
    """(config valid?, rates by type name or None when a tracer must refuse the names)."""
    def name(key):
        if isinstance(key, enum.Enum):
            return key.name.lower()
        if isinstance(key, str) and key:
            return key.lower()
        if int_like(key) and int(key) >= 0:
            return TYPES[int(key)] if int(key) < len(TYPES) else None
        raise Invalid
    rates = {t: 1.0 for t in TYPES}
    known = True
    for key, value in (kw.get("sample_rates") or {}).items():
        n = name(key)
        r = number(value)
        if not 0.0 <= r <= 1.0:
            raise Invalid
        if n not in rates:
            known = False
        else:
            rates[n] = r
    for name_ in ("ring_buffer_size", "export_batch_size", "export_interval_ms", "max_threads"):
        if name_ in kw:
            v = kw[name_]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise Invalid
    if kw.get("ring_buffer_size", 1) > 1 << 24 or kw.get("max_threads", 1) > 4096:
        raise Invalid
    return rates if known else None


@SETTINGS
@given(st.fixed_dictionaries({}, optional={
    "sample_rates": st.dictionaries(st.one_of(st.sampled_from(TYPES + ["bogus", "PRIMING", ""]),
                                              st.sampled_from(list(EventType) + [7, -1, 2, True,
                                                                                 Color.RED])),
                                    ANY, max_size=3),
    "ring_buffer_size": ANY, "export_batch_size": ANY, "export_interval_ms": ANY,
    "max_threads": ANY}))
def test_tracing_config_matches_the_model(kw):
    from engram_numba import CognitiveTracer
    try:
        rates = config_model(kw)
        ok = True
    except Invalid:
        ok = False
    if not ok:
        with pytest.raises((ValueError, TypeError)):
            TracingConfig(**kw)
        return
    cfg = TracingConfig(**kw)
    assert cfg.ring_capacity >= cfg.ring_buffer_size
    assert cfg.ring_capacity & (cfg.ring_capacity - 1) == 0
    small = cfg.with_(ring_buffer_size=8, max_threads=1)
    if rates is None:
        with pytest.raises(ValueError, match="unknown event type"):
            CognitiveTracer(small)
        return
    assert CognitiveTracer(small).sample_rates() == rates
