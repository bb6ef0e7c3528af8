"""Metric sets: declaration, recording from kernels and Python, reading, files."""

import enum
import json
import logging
import math

import numpy as np
import pytest
from numba import njit

from engram_numba.metrics.kinds import GAUGE
from engram_numba import (Counter, Gauge, Histogram, KernelTypingError, MetricSet, RegionError,
                          attach_metrics, kernel_method)


class Color(enum.IntEnum):
    RED = 0
    GREEN = 1
    BLUE = 2


class Shape(enum.IntEnum):
    ROUND = 0
    SQUARE = 1


class Shop(MetricSet):
    sold = Counter("items_sold_total", "Items sold", labels={"color": Color})
    by_shape = Counter("shapes", "By color and shape", labels={"color": Color, "shape": Shape})
    visits = Counter("visits", "Visits")
    stock = Gauge("stock_level", "Items on the shelf", labels={"aisle": ["a", "b"]})
    price = Histogram("price_euros", "Prices", scale=3, range=(0.01, 1000))
    delta = Histogram("price_delta", "Price changes", scale=2, range=(0.01, 100), negative=True)
    wait = Histogram("wait_seconds", "Queue time", bounds=[0.5, 1, 2, 5])

    @kernel_method
    def sale(self, color: Color, price):
        self.sold.inc(color)
        self.price.observe(price)


@njit
def record_everything(m, colors, prices):
    for i in range(colors.size):
        m.sale(colors[i], prices[i])
        m.by_shape.inc(colors[i], i % 2)
        m.visits.add(2)
        m.stock.add(1.0, i % 2)
        m.wait.observe(prices[i] / 10)
        m.delta.observe(prices[i] - 5.0)
    m.stock.set(42.5, 0)


def _data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, n), rng.uniform(0.05, 20, n).round(2)


def test_kernel_and_python_recording_agree():
    colors, prices = _data()
    in_kernel = Shop()
    record_everything(in_kernel, colors, prices)
    in_python = Shop()
    for i, (c, p) in enumerate(zip(colors.tolist(), prices.tolist())):
        in_python.sale(c, p)
        in_python.by_shape.inc(c, i % 2)
        in_python.visits.add(2)
        in_python.stock.add(1.0, i % 2)
        in_python.wait.observe(p / 10)
        in_python.delta.observe(p - 5.0)
    in_python.stock.set(42.5, "a")
    a, b = in_kernel.snapshot(), in_python.snapshot()
    for snap in (a, b):
        snap.pop("timestamp_ns"), snap.pop("start_ns")
    assert a == b
    assert in_kernel.sold.values() == {c.name.lower(): int((colors == c).sum()) for c in Color}
    assert in_kernel.visits.value() == 2 * len(colors)
    assert in_kernel.stock.values() == {"a": 42.5, "b": float(len(colors) // 2)}
    assert in_kernel.by_shape.value(Color.BLUE, Shape.SQUARE) == \
        int(((colors == 2) & (np.arange(len(colors)) % 2 == 1)).sum())
    assert in_kernel.invalid_records == 0


def test_histogram_matches_numpy():
    rng = np.random.default_rng(7)
    # log-uniform inside the declared range, plus known zero-bucket and overflow values
    values = np.concatenate([np.exp(rng.uniform(math.log(0.008), math.log(1024), 20000)),
                             [1e-5] * 7, [5000.0] * 3, [0.0]])
    rng.shuffle(values)
    m = Shop()

    @njit
    def observe(m, v):
        for x in v:
            m.price.observe(x)
    observe(m, values)
    h = m.price.read()
    s = m.price.spec
    in_range = values[(values > s.zero_threshold) & (values <= 2.0 ** s.max_exponent)]
    assert h.count == values.size
    assert h.zero_count == int((values <= s.zero_threshold).sum())
    assert h.overflow == int((values > 2.0 ** s.max_exponent).sum())
    assert h.sum == pytest.approx(values.sum(), rel=1e-12)
    assert h.min == values.min() and h.max == values.max()
    assert h.mean == pytest.approx(values.mean(), rel=1e-12)
    # every bucket against numpy with the same (lower, upper] edges
    top = 2.0 ** s.max_exponent
    buckets = [(lo, hi, n) for lo, hi, n in h.buckets() if 0 < lo and hi <= top]
    edges = np.array([lo for lo, _, _ in buckets] + [buckets[-1][1]])
    expected = np.bincount(np.searchsorted(edges, in_range, side="left") - 1,
                           minlength=len(buckets))
    assert [n for _, _, n in buckets] == expected.tolist()
    assert (h.zero_count, h.overflow) == (8, 3)
    # above the range: a bucket per octave, (4096, 8192] holds the three 5000s
    assert [(lo, hi, n) for lo, hi, n in h.buckets() if lo >= top and n] == [(4096.0, 8192.0, 3)]
    # quantiles within the documented relative bound of numpy's inverted-CDF quantile
    # (q in [0.001, 0.999] stays clear of the 8 zero-bucket and 3 overflow values)
    bound = h.relative_error_bound
    qs = np.linspace(0.001, 0.999, 200)
    exact = np.quantile(values, qs, method="inverted_cdf")
    est = np.array([h.quantile(q) for q in qs])
    assert np.all(np.abs(est - exact) <= bound * exact * (1 + 1e-12))
    assert np.all(np.diff(est) >= 0)


def test_explicit_histogram_matches_numpy_and_bounds_error():
    rng = np.random.default_rng(3)
    values = rng.exponential(1.5, 5000)
    m = Shop()
    for v in values[:50]:
        m.wait.observe(v)

    @njit
    def observe(m, v):
        for x in v:
            m.wait.observe(x)
    observe(m, values[50:])
    h = m.wait.read()
    edges = np.array([-np.inf, 0.5, 1, 2, 5, np.inf])
    expected = np.histogram(values, edges)[0]
    # np.histogram bins are [a, b); ours are (a, b]: equal for continuous data
    assert [n for _, _, n in h.buckets()] == expected.tolist()
    cum = h.cumulative()
    assert cum[-1] == (math.inf, h.count) and [le for le, _ in cum[:-1]] == [0.5, 1, 2, 5]
    for q in (0.1, 0.5, 0.9, 0.99):
        exact = np.quantile(values, q, method="inverted_cdf")
        k = int(np.searchsorted(edges, exact, side="left")) - 1
        lo, hi = max(edges[k], values.min()), min(edges[k + 1], values.max())
        assert abs(h.quantile(q) - exact) <= (hi - lo) / 2 + 1e-12


SPECIALS = [0.0, -0.0, 1e-300, 5e-324, math.nan, math.inf, -math.inf, -3.0, 1e300, 2.5]


@njit
def observe_all(m, values):
    for v in values:
        m.price.observe(v)
        m.delta.observe(v)
        m.wait.observe(v)


@pytest.mark.parametrize("where", ["kernel", "python"])
def test_special_values_have_their_own_homes(where):
    m = Shop()
    if where == "kernel":
        observe_all(m, np.array(SPECIALS))
    else:
        for v in SPECIALS:
            m.price.observe(v)
            m.delta.observe(v)
            m.wait.observe(v)
    p = m.price.read()   # unsigned exponential
    assert (p.nan, p.pos_inf, p.neg_inf, p.negative) == (1, 1, 1, 1)
    assert p.zero_count == 4 and p.overflow == 1 and p.count == 6
    assert p.sum == 1e300 + 2.5 + 1e-300 + 5e-324
    assert p.min == -0.0 and p.max == 1e300
    d = m.delta.read()   # signed exponential
    assert (d.nan, d.pos_inf, d.neg_inf, d.negative) == (1, 1, 1, 0)
    assert d.count == 7 and d.zero_count == 4 and d.overflow == 1
    assert sum(n for lo, hi, n in d.buckets() if hi <= -0.01) == 1   # -3.0
    assert d.min == -3.0 and d.sum == pytest.approx(1e300)
    w = m.wait.read()    # explicit
    assert (w.nan, w.pos_inf, w.neg_inf) == (1, 1, 1) and w.count == 7
    assert [n for _, _, n in w.buckets()] == [5, 0, 0, 1, 1]
    for h in (p, d, w):
        assert math.isfinite(h.sum) and math.isfinite(h.mean)
        assert h.cumulative()[-1][1] == h.count
    json.dumps(m.snapshot(), allow_nan=False)


@njit
def bad_labels(m, k):
    m.sold.inc(k)
    m.stock.set(1.0, k)
    m.by_shape.inc(0, k)
    m.visits.add(-k)
    m.price.observe(0.5)


def test_out_of_range_labels_in_kernels_are_counted_not_written():
    m = Shop()
    before = m._words()
    bad_labels(m, 7)
    bad_labels(m, -1)
    assert m.invalid_records == 2 * 3 + 1   # 3 bad labels each; -(-1) = +1 is a valid add
    snap = m.snapshot()
    assert snap["metrics"]["items_sold_total"]["samples"][0]["value"] == 0
    assert m.visits.value() == 1
    assert m.price.read().count == 2
    words = m._words()
    changed = np.flatnonzero(words != before) * 8
    lay = m.layout
    visits, price = lay.metrics["visits"], lay.metrics["price"]
    claims = range(lay.claim_offset, lay.claim_offset + 16 * lay.shards, 8)
    allowed = {0, 32, 40, 48, *claims}         # the count and the last record's description
    for copy in range(lay.n_copies):
        allowed.add(lay.copy_offset(copy) + visits.block_offset)
        allowed.update(lay.copy_offset(copy) + price.block_offset + off
                       for off in range(0, price.slot_bytes, 8))
    assert set(changed.tolist()) <= allowed


@njit
def enum_and_literal_labels(m):
    m.sold.inc(Color.RED)
    m.by_shape.inc(Color.BLUE, Shape.SQUARE)
    m.stock.set(2.0, "b")
    m.price.observe(0.5)


@njit
def integer_labels(m, k):
    m.sold.inc(k)


def test_a_record_whose_labels_cannot_be_out_of_range_compiles_no_refusal():
    """Enum members of the declared enum, string literals and no labels at all are in range
    whatever runs: their records compile without the refusal path (no call to note the
    invalid record in the kernel); an integer label keeps it (the control)."""
    m = Shop()
    enum_and_literal_labels(m)
    integer_labels(m, 1)
    assert m.sold.value(Color.RED) == 1 and m.sold.value(Color(1)) == 1
    assert m.by_shape.value(Color.BLUE, Shape.SQUARE) == 1
    assert m.stock.value("b") == 2.0 and m.price.read().count == 1
    assert m.invalid_records == 0

    def llvm(kernel):
        return kernel.inspect_llvm(kernel.signatures[0])

    assert "note_invalid" not in llvm(enum_and_literal_labels)
    assert "note_invalid" in llvm(integer_labels)


def test_invalid_kernel_records_are_logged_at_the_next_reading(caplog):
    """The first reading after invalid records logs a warning naming the set, the metric,
    the label position and the bad value; more within the interval wait for the next."""
    m = Shop()
    with caplog.at_level(logging.WARNING, logger="engram_numba"):
        m.snapshot()
        assert not caplog.records                        # nothing refused yet
        bad_labels(m, 7)
        assert m.sold.value(0) == 0                      # a reading: logs
        bad_labels(m, 9)
        m.snapshot()                                     # within the interval: not again
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = record.getMessage()
    assert "metric set 'shop': 4 record(s) refused" in text
    # the last of the first call: visits.add(-7)
    assert "visits (visits_total).add(-7, ...): a counter only goes up" in text
    caplog.clear()
    m.invalid_warning_interval = 0.0
    with caplog.at_level(logging.WARNING, logger="engram_numba"):
        k = np.int64(5)
        label_then_amount(m, k)
        m.snapshot()
    text = caplog.records[-1].getMessage()
    assert "5 record(s) refused" in text          # bad_labels(m, 9) and this one
    assert "sold (items_sold_total).inc: label 0 ('color') was 5, outside 0..2" in text
    assert "to count by n, write sold.labels(...).inc(n)" in text


@njit
def label_then_amount(m, n):
    m.sold.inc(n)                  # prometheus_client's inc(5): here 5 is a label index


def test_the_prometheus_client_way_works_in_kernels_and_python():
    m = Shop()
    habits(m, 1)
    m.sold.labels(Color.RED).inc(4)
    m.sold.labels(color="blue").inc()
    m.stock.labels("a").set(7.0)
    m.price.labels().observe(2.0)
    assert m.sold.values() == {"red": 1 + 5 + 1 + 4, "green": 3, "blue": 1}
    assert m.sold.labels("red").value() == 11
    assert m.stock.values()["a"] == 7.0 and m.stock.labels("b").value() == 1.5 - 0.25
    assert m.price.read().count == 2 and m.invalid_records == 0
    with pytest.raises(ValueError, match=r"sold \(items_sold_total\): .* to count by n"):
        m.sold.inc(5)
    with pytest.raises(AttributeError, match="has no observe"):
        m.sold.labels("red").observe(1.0)
    with pytest.raises(ValueError, match="unknown \\['colour'\\]"):
        m.sold.labels(colour="red")


@njit
def habits(m, i):
    m.sold.labels("red").inc()                     # a string literal: resolved at compile time
    m.sold.labels(Color.RED).inc(5)
    m.sold.labels(i).add(3)                        # 1: green
    m.sold.inc("red")
    m.stock.labels("b").set(1.5)
    m.stock.labels("b").sub(0.25)
    m.price.labels().observe(1.0)


@pytest.mark.parametrize("body, message", [
    ("m.sold.inc(5)", r"^sold \(items_sold_total\)\.inc: label 0 .* got 5; to count by n, "
                      r"write sold\.labels\(\.\.\.\)\.inc\(n\)"),
    ("m.sold.inc('purple')", r"^sold \(items_sold_total\)\.inc: label 0 \('color'\) takes .*"
                             r"'red', 'green', 'blue'; it has no value 'purple'"),
    ("m.sold.labels('red').observe(1.0)", r"^sold \(items_sold_total\)\.labels\(\.\.\.\) has no "
                                          r"observe\(\); a counter has inc\(\), add\(\)"),
    ("m.visits.add(-2)", r"^visits \(visits_total\)\.add: a counter only goes up"),
    ("m.visits.inc(2)", r"^visits \(visits_total\)\.inc: takes 0 label.*visits\.add\(n\)"),
])
def test_kernel_habits_that_cannot_work_fail_to_compile_with_the_fix(body, message):
    ns = {"njit": njit}
    exec(f"@njit\ndef f(m):\n    {body}\n", ns)
    with pytest.raises(KernelTypingError, match=message):
        ns["f"](Shop())


def test_python_calls_validate():
    m = Shop()
    with pytest.raises(ValueError, match="out of range"):
        m.sold.inc(3)
    with pytest.raises(ValueError, match="takes Color"):
        m.sold.inc(Shape.ROUND)
    with pytest.raises(ValueError, match="no value 'c'"):
        m.stock.set(1, "c")
    with pytest.raises(ValueError, match="takes 1 label"):
        m.sold.inc()
    with pytest.raises(ValueError, match="only goes up"):
        m.visits.add(-1)
    with pytest.raises(ValueError, match="whole numbers"):
        m.visits.add(1.5)
    with pytest.raises(ValueError, match="must be a number"):
        m.price.observe("x")
    with pytest.raises(ValueError, match="is not a Color"):
        m.sale(5, 1.0)
    assert m.snapshot()["metrics"]["items_sold_total"]["samples"][0]["value"] == 0
    assert m.invalid_records == 0


@pytest.mark.parametrize("body, message", [
    ("m.sold.inc(Shape.ROUND)", r"^sold \(items_sold_total\)\.inc: label 0 takes Color members"),
    ("m.sold.inc()", r"^sold \(items_sold_total\)\.inc: takes 1 label"),
    ("m.visits.add(1.5)", r"^visits \(.*\)\.add: n must be an integer"),
    ("m.sold.inc(1.0)", r"^sold \(items_sold_total\)\.inc: label 0 .* takes Color members, an "
                        r"index 0\.\.2"),
    ("m.price.observe('x')", r"^price \(.*\)\.observe: value must be a number"),
])
def test_kernel_misuse_is_a_typing_error(body, message):
    """The message comes first (not under numba's account of every overload it tried) and
    names the metric."""
    ns = {"njit": njit, "Shape": Shape}
    exec(f"@njit\ndef f(m):\n    {body}\n", ns)
    with pytest.raises(KernelTypingError, match=message):
        ns["f"](Shop())


def test_reset_and_snapshot_are_plain():
    m = Shop()
    record_everything(m, *_data(50))
    assert m.visits.value() == 100
    m.reset()
    snap = m.snapshot()
    json.dumps(snap, allow_nan=False)
    assert all(s["value"] == 0 for s in snap["metrics"]["items_sold_total"]["samples"])
    assert snap["metrics"]["price_euros"]["samples"][0]["value"]["count"] == 0
    assert math.isnan(m.price.read().min)


def test_one_metric_can_be_reset_alone():
    m = Shop()
    record_everything(m, *_data(50))
    m.price.reset()
    m.visits.reset()
    assert m.price.read().count == 0 and math.isnan(m.price.read().max)
    assert m.visits.value() == 0
    assert m.wait.read().count == 50 and m.sold.total == 50
    m.price.observe(2.0)
    assert m.price.read().min == 2.0


def test_disabled_set_owns_no_memory_and_records_nothing():
    d = Shop.disabled()
    assert not d.enabled and d._region is None
    record_everything(d, *_data(20))
    d.sale(Color.RED, 1.0)
    d.visits.inc()
    assert d.visits.value() == 0 and d.invalid_records == 0
    assert d.snapshot()["metrics"]["visits_total"]["samples"][0]["value"] == 0


@pytest.mark.parametrize("alignment", [64, 128])
def test_no_two_writers_share_a_cache_line(alignment):
    """Each copy of the hot values has one writer and starts on a line of its own; the
    values every thread writes (gauge slots) have a line each."""
    m = Shop(alignment=alignment)
    lay = m.layout
    assert m._kernel_address % alignment == 0
    assert lay.claim_offset % alignment == 0
    assert lay.hot_offset % alignment == 0 and lay.copy_size % alignment == 0
    for ml in lay.metrics.values():
        if ml.spec.kind is GAUGE:
            assert ml.shared_offset % alignment == 0 and ml.shared_stride % alignment == 0
        assert ml.block_offset + ml.block_bytes <= lay.copy_size


def test_declaration_errors():
    with pytest.raises(ValueError, match="invalid metric name"):
        Counter("bad name")
    with pytest.raises(ValueError, match="0..n-1"):
        class Gap(enum.IntEnum):
            A = 0
            B = 2
        Counter("x", labels={"g": Gap})
    with pytest.raises(ValueError, match="reserved"):
        Histogram("h", labels={"le": ["a"]})
    with pytest.raises(ValueError, match="must not end"):
        Histogram("h_count")
    with pytest.raises(ValueError, match="range"):
        Histogram("h", range=(0, 1))
    with pytest.raises(ValueError, match="scale"):
        Histogram("h", scale=12)
    with pytest.raises(ValueError, match="increasing"):
        Histogram("h", bounds=[1, 1])
    with pytest.raises(TypeError, match="duplicate metric names"):
        class Dup(MetricSet):
            a = Counter("x_total")
            b = Counter("x")
    with pytest.raises(TypeError, match="taken by MetricSet"):
        class Clash(MetricSet):
            reset = Counter("x")


def test_file_backed_sets_share_values_and_refuse_other_layouts(tmp_path):
    path = tmp_path / "shop.metrics"
    writer = Shop.create(path)
    record_everything(writer, *_data(30))
    again = Shop.attach(path)
    record_everything(again, *_data(30))
    assert writer.visits.value() == 120 and writer.path == str(path)

    class Other(MetricSet):
        visits = Counter("visits", "Visits")
    with pytest.raises(RegionError, match="layout mismatch.*unexpected"):
        Other.attach(path)

    generic = attach_metrics(path)
    assert generic.snapshot()["metrics"] == writer.snapshot()["metrics"]
    with pytest.raises(TypeError, match="read-only"):
        record_everything(generic, *_data(1))
    writable = attach_metrics(path, writable=True)

    @njit
    def bump(m):
        m.visits.inc()
        m.sold.inc(2)
    bump(writable)
    assert writer.visits.value() == 121
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        record_everything(writer, *_data(1))


class First(MetricSet):
    a = Counter("first_a")

    @kernel_method
    def record(self, n):
        self.a.add(n)


class Second(MetricSet):
    b = Histogram("second_b", range=(0.1, 10))
    c = Counter("second_c", labels={"color": Color})

    @kernel_method
    def record(self, color: Color, value, times):
        for _ in range(times):
            self.c.inc(color)
            self.b.observe(value)


@njit
def _both(f, s):
    f.record(5)
    s.record(Color.BLUE, 2.5, 3)


def test_two_sets_may_have_kernel_methods_of_the_same_name():
    f, s = First(), Second()
    _both(f, s)
    f.record(2)
    s.record(color=Color.RED, value=1.0, times=1)
    assert f.a.value() == 7
    assert s.c.values() == {"red": 1, "green": 0, "blue": 3}
    assert s.b.read().count == 4


def test_kinds_are_objects_from_declaration_to_family():
    from engram_numba.metrics.kinds import COUNTER as C, HISTOGRAM, TOPK, kind_named
    from engram_numba.metrics.spec import spec_from_description
    from engram_numba.metrics.topk import TopK

    class Kinds(MetricSet):
        hits = Counter("kinds_hits", "h")
        level = Gauge("kinds_level", "l")
        sizes = Histogram("kinds_sizes", "s")
        top = TopK("kinds_top", "t")

    m = Kinds()
    specs = Kinds.metrics()
    assert [specs[a].kind for a in ("hits", "level", "sizes", "top")] == [C, GAUGE, HISTOGRAM, TOPK]
    snap = m.collect()
    assert snap["sizes"].kind is HISTOGRAM and snap["top"].kind is TOPK
    fams = {f.name: f.kind for f in snap.families()}
    assert fams["kinds_top_total"] is C and fams["kinds_sizes"] is HISTOGRAM
    for spec in specs.values():                   # stored by name, read back as the object
        assert spec_from_description(json.loads(json.dumps(spec.describe()))).kind is spec.kind
    assert kind_named("gauge") is GAUGE
    with pytest.raises(ValueError, match="unknown metric kind"):
        kind_named("summary")
    with pytest.raises(TypeError, match="kind is HISTOGRAM"):
        specs["sizes"].kind == "histogram"
