"""Histograms: a distribution per label combination, in buckets of a scheme.

Everything a histogram is, in one place: its declaration (:class:`Histogram`:
its bucket scheme (:mod:`.buckets`), bytes per slot, reading its words,
reset), its readings (:class:`HistogramData` per label combination,
:class:`HistogramSnapshot`) and its Python handle (:class:`_BoundHistogram`).
Its kernel handle (:class:`HistogramHandleType`: the recording body of
``observe``) calls :func:`._record.observe_exponential` /
:func:`._record.observe_explicit`, picked by :func:`observer` from the scheme.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._inline import always_inline
from .._values import as_number
from . import _record as R
from ._njit import COPY, INVALID, HandleType, Record, kernel_kind
from .buckets import (BucketScheme, ExplicitBuckets, ExponentialBuckets, estimate_quantile,
                      scheme_from_description, scheme_from_key)
from .handle import _BoundMetric, keyed
from .families import EXCLUDED_REASONS, Family, excluded_help
from .kinds import COUNTER, HISTOGRAM
from .snapshot import LabelledSnapshot, labelled_dict
from .spec import MetricSpec, block_words, since_reset

__all__ = ["Histogram", "HistogramData", "HistogramSnapshot"]


_observers: dict = {}


def observer(scheme):
    """An njit ``observe(slot address, value, owned)`` for a bucket scheme."""
    fn = _observers.get(scheme.key())
    if fn is not None:
        return fn
    if isinstance(scheme, ExplicitBuckets):
        K0, SHIFT, LAST, M, LUT, BOUNDS = scheme.tables

        @always_inline
        @njit(cache=True)
        def fn(slot, value, owned):
            # the owner's code inlined, the shared copy's called out of line
            if owned:
                R.observe_explicit(slot, value, K0, SHIFT, LAST, M, LUT, BOUNDS, True)
            else:
                R.observe_explicit_shared(slot, value, K0, SHIFT, LAST, M, LUT, BOUNDS)
    elif isinstance(scheme, ExponentialBuckets):
        SCALE, LO, NB, NEG, LOW, HIGH, LUT, BND, OVER = scheme.recording_constants

        @always_inline
        @njit(cache=True)
        def fn(slot, value, owned):
            if owned:
                R.observe_exponential(slot, value, SCALE, LUT, BND, LO, NB, NEG, LOW, HIGH,
                                      OVER, True)
            else:
                R.observe_exponential_shared(slot, value, SCALE, LUT, BND, LO, NB, NEG, LOW,
                                             HIGH, OVER)
    else:
        raise TypeError(f"no recording function for bucket scheme {scheme!r}")
    _observers[scheme.key()] = fn
    return fn


def _observe_constants(h):
    scheme = scheme_from_key(h.extra)
    return dict(OBSERVE=observer(scheme), SLOT=R.H_BUCKETS + 8 * scheme.count_words)


_python_observers: dict = {}


def python_observers(scheme):
    """``(owned, shared)``: compiled ``observe(slot address, value)`` for Python callers.

    Two arguments, because numba's dispatcher spends most of a call from
    Python on typing its arguments; the scheme's parameters are constants.
    Compiled once per scheme and process, on first use (closures are not
    kept in numba's on-disk cache).
    """
    pair = _python_observers.get(scheme.key())
    if pair is None:
        OBSERVE = observer(scheme)

        @njit(nogil=True)
        def owned(slot, value):
            OBSERVE(slot, value, True)

        @njit(nogil=True)
        def shared(slot, value):
            OBSERVE(slot, value, False)
        pair = _python_observers[scheme.key()] = (owned, shared)
    return pair


_OBSERVE = INVALID + f"""    {COPY}
    OBSERVE(h.base + h.hot + copy * h.copy + h.block + SLOT * slot, value, copy > 0)
    return True
"""


@kernel_kind
class HistogramHandleType(HandleType):
    """A histogram in a kernel: ``observe(value, *labels)``; its type holds the scheme."""

    kind = HISTOGRAM
    methods = {"observe": Record(_OBSERVE, "value",
                                 constants=lambda h, t: _observe_constants(h))}
    amount_hint = "the value comes first: {m}.observe(value, ...), or " \
                  "{m}.labels(...).observe(value)"

    @classmethod
    def extra_of(cls, spec) -> tuple:
        return spec.scheme.key()


def _f64(word) -> float:
    return float(np.uint64(word).view(np.float64))


class HistogramData:
    """One histogram (one label combination) at a point in time.

    ``count`` and ``sum`` cover the finite observations in the histogram's
    domain; NaN, +-inf and (without negative buckets) negative values are
    counted apart in ``nan``, ``pos_inf``, ``neg_inf`` and ``negative``.  The
    bucket layout is the spec's scheme's business (``spec.scheme``).
    """

    def __init__(self, spec: "Histogram", words: np.ndarray):
        self.spec = spec
        scheme = spec.scheme
        self.sum = _f64(words[R.H_SUM // 8])
        lo, hi = _f64(words[R.H_MIN // 8]), _f64(words[R.H_MAX // 8])
        self.zero_count = int(words[R.H_ZERO // 8])
        self.nan = int(words[R.H_NAN // 8])
        self.pos_inf = int(words[R.H_POS_INF // 8])
        self.neg_inf = int(words[R.H_NEG_INF // 8])
        self.negative = int(words[R.H_NEGATIVE // 8])
        counts = words[R.H_BUCKETS // 8:R.H_BUCKETS // 8 + scheme.count_words].astype(np.int64)
        self.negative_counts, self.counts, self.overflow_counts, self.neg_overflow_counts = \
            scheme.split(counts)
        self.overflow = int(self.overflow_counts.sum())
        self.neg_overflow = int(self.neg_overflow_counts.sum())
        self.count = int(self.counts.sum() + self.negative_counts.sum()) + self.zero_count \
            + self.overflow + self.neg_overflow
        # a writer updates min/max just before its bucket: a reader may catch one
        # without the other, so extremes are reported only for a non-empty histogram
        self.min = lo if self.count else math.nan
        self.max = hi if self.count else math.nan

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def excluded(self) -> dict:
        """Observations outside ``count``: ``{"nan": n, "+inf": n, "-inf": n, "negative": n}``."""
        return {"nan": self.nan, "+inf": self.pos_inf, "-inf": self.neg_inf, "negative": self.negative}

    @property
    def relative_error_bound(self) -> float:
        """Bound on the relative error of a quantile that falls in the range of an
        exponential histogram (nan if explicit).  Above the range the bound is 41 %,
        and a factor 256 beyond ``2**near_top`` (at least 2**16 times its top); in
        the zero bucket it is ``2**min_exponent``, absolute (:mod:`.buckets` has the
        whole list)."""
        return self.spec.scheme.relative_error

    def buckets(self):
        """Every bucket in value order: ``(lower, upper, count)`` tuples.

        Exponential: negative buckets hold ``[-upper, -lower)`` mirrored, the zero
        bucket ``[-t, t]`` (``[0, t]`` without negative buckets), positive buckets
        ``(lower, upper]``; above ``2**max_exponent`` the overflow buckets, an octave
        each and then 16 octaves each, the last one ending at ``inf`` (mirrored below
        ``-2**max_exponent``).  Explicit: ``(b[k-1], b[k]]`` with ``-inf`` and ``inf``
        closing the ends.
        """
        return self.spec.scheme.buckets(self)

    def quantile(self, q: float) -> float:
        """Estimate of quantile ``q`` in [0, 1] (error bounds: :mod:`.buckets`); nan when empty."""
        return estimate_quantile(q, self.spec.scheme.bins(self), self.count, self.min, self.max)

    def cumulative(self, scale: int | None = None):
        """Prometheus classic buckets: ``[(le, count of values <= le), ...]`` ending with
        ``(inf, count)``, at the declared classic resolution of an exponential histogram
        (``scale``: another one, capped at the histogram's scale).

        The boundary list depends only on the declaration, never on the data,
        and the ``+Inf`` bucket equals ``count`` by construction.  With negative
        buckets, a negative boundary ``-b`` is exported as the double just below it
        (a negative bucket holds ``[-upper, -lower)``), so every line counts exactly
        the values ``<= le``.
        """
        return self.spec.scheme.cumulative(self, scale)

    def to_dict(self, quantiles=(0.5, 0.9, 0.95, 0.99)) -> dict:
        """Plain JSON values: NaN and the open ends of outer buckets become ``None``."""
        def num(x):
            return x if math.isfinite(x) else None
        return {
            "count": self.count, "sum": num(self.sum), "mean": num(self.mean),
            "min": num(self.min), "max": num(self.max),
            "quantiles": {str(q): num(self.quantile(q)) for q in quantiles},
            "buckets": [[num(lo), num(hi), n] for lo, hi, n in self.buckets() if n],
            "zero_count": self.zero_count, "overflow": self.overflow + self.neg_overflow,
            "excluded": self.excluded,
        }

    def __repr__(self) -> str:
        return (f"<HistogramData {self.spec.name} count={self.count} sum={self.sum:g} "
                f"p50={self.quantile(0.5):.4g} p99={self.quantile(0.99):.4g}>")


class HistogramSnapshot(LabelledSnapshot):
    """A :class:`HistogramData` per label combination."""

    kind = HISTOGRAM

    def to_dict(self) -> dict:
        return labelled_dict(self, lambda v: v.to_dict())


class _BoundHistogram(_BoundMetric):
    def __init__(self, owner, m):
        super().__init__(owner, m)
        self._owned, self._shared = python_observers(m.spec.scheme)

    def observe(self, value, *labels) -> bool:
        v = value if type(value) is float else as_number(value, f"{self.spec.name}: value")
        owner = self._owner
        offset = self._remembered(self._offsets, labels) if owner._mv is not None else None
        if offset is not None:
            try:
                state = owner._threads.state
            except AttributeError:
                state = owner._thread()
            if state[3]:
                self._owned(state[2] + offset, v)
                return True
        addr, owned = self._copy_address(labels)
        if addr is None:
            return False
        (self._owned if owned else self._shared)(addr, v)
        return True

    def read(self, *labels) -> HistogramData:
        """The histogram's contents now (count, sum, quantile(q), buckets(), ...)."""
        return self._read().get(*labels)

    def values(self) -> dict:
        return keyed(self.spec, self._read().items())


class Histogram(MetricSpec):
    """A distribution; recorded with ``observe(value, *labels)``.

    Exponential scheme (default): ``scale`` in [0, 8] (``2**scale`` buckets per
    power of two) over ``range=(lowest, highest)``, widened outward to powers
    of two.  Magnitudes at or below the lowest power go to the zero bucket,
    finite values above the highest to overflow buckets (an octave each, then
    16 octaves each: exact, coarser).  Negative values get mirrored buckets
    only with ``negative=True``; otherwise they are out of the histogram's
    domain and counted apart, like NaN and +-inf.  ``classic_scale`` (0 ..
    ``scale``) is the resolution of the classic ``le`` buckets of the text
    formats; by default the finest that keeps at most 40 of them across the
    range (:data:`~.buckets.CLASSIC_BUCKETS`).  Native histograms and OTLP
    keep ``scale``.

    Explicit scheme: ``bounds=[b0, b1, ...]`` (Prometheus ``le`` upper bounds).
    The scheme is an object (:class:`ExponentialBuckets`,
    :class:`ExplicitBuckets`) in ``histogram.scheme``.
    """

    kind = HISTOGRAM
    _RESERVED_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")

    def __init__(self, name: str, help: str = "", labels=None, *, scale: int = 3,
                 range=(2.0 ** -20, 2.0 ** 20), negative: bool = False, bounds=None,
                 scheme=None, unit: str = "", classic_scale: int | None = None):
        super().__init__(name, help, labels, unit)
        if name.endswith(self._RESERVED_SUFFIXES):
            raise ValueError(f"histogram name {name!r} must not end with one of {self._RESERVED_SUFFIXES}")
        if classic_scale is not None and (scheme is not None or bounds is not None):
            raise ValueError(f"{name}: classic_scale is for exponential histograms declared "
                             f"with scale and range (with scheme=, give it to "
                             f"ExponentialBuckets(..., classic_scale=...))")
        if scheme is not None:
            if not isinstance(scheme, BucketScheme):
                raise ValueError(f"scheme must be ExponentialBuckets or ExplicitBuckets, "
                                 f"got {scheme!r}")
            self.scheme = scheme
        elif bounds is not None:
            self.scheme = ExplicitBuckets(bounds)
        else:
            try:
                self.scheme = ExponentialBuckets(scale, range, negative, classic_scale)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if self.scheme.total_buckets > 1 << 16:
                raise ValueError(f"{name}: {self.scheme.total_buckets} buckets; narrow the range "
                                 f"or lower the scale")

    # the scheme's figures, for readers that predate the scheme objects
    mode = property(lambda self: self.scheme.kind)
    scale = property(lambda self: self.scheme.scale)
    negative = property(lambda self: self.scheme.negative)
    n_buckets = property(lambda self: self.scheme.n_buckets)
    total_buckets = property(lambda self: self.scheme.total_buckets)
    zero_threshold = property(lambda self: self.scheme.zero_threshold)
    bounds = property(lambda self: getattr(self.scheme, "bounds", None))
    lo_index = property(lambda self: getattr(self.scheme, "lo_index", 0))
    min_exponent = property(lambda self: getattr(self.scheme, "min_exponent", None))
    max_exponent = property(lambda self: getattr(self.scheme, "max_exponent", None))
    classic_scale = property(lambda self: getattr(self.scheme, "classic_scale", None))

    handle = _BoundHistogram

    def families(self, snap, c_names, c_values, times) -> list:
        """Its family, and ``<name>_excluded_total{reason}``: the observations kept out."""
        fams = super().families(snap, c_names, c_values, times)
        excluded = tuple((labels + (reason,), h.excluded[reason])
                         for labels, h in fams[0].points for reason in EXCLUDED_REASONS)
        fams.append(Family(f"{self.name}_excluded_total", COUNTER, excluded_help(self.name),
                           c_names + tuple(self.label_names) + ("reason",), excluded, **times))
        return fams

    def net_words(self, m) -> dict:
        """Sums add as floats (the lanes into lane 0), extremes by max, counts as integers."""
        lane0, lanes, extremes = [], [], []
        first, per = m.block_offset // 8, m.slot_bytes // 8
        for k in range(self.slots):
            s = first + k * per
            lane0.append(s + R.H_SUM // 8)
            lanes.extend(s + R.H_SUM // 8 + j for j in range(R.LANES))
            lanes.append(s + R.H_LANE // 8)
            extremes.extend((s + R.H_MIN // 8, s + R.H_MAX // 8))
        return {"lane0": lane0, "lanes": lanes, "extremes": extremes}

    def copy_bytes(self) -> int:
        return R.H_BUCKETS + 8 * self.scheme.count_words

    def baseline(self, owner, m, live):
        """The sums' lanes add up into lane 0; extremes start afresh in every copy."""
        lay = owner._layout_
        baseline = live.sum(axis=0, dtype=np.uint64)
        per = m.slot_bytes // 8
        lanes = slice(R.H_SUM // 8, R.H_SUM // 8 + R.LANES)
        sums = live.reshape(live.shape[0], self.slots, per)[:, :, lanes]
        baseline = baseline.reshape(self.slots, per)
        baseline[:, lanes] = 0
        baseline[:, R.H_SUM // 8] = sums.view(np.float64).sum(axis=(0, 2)).view(np.uint64)
        baseline[:, R.H_LANE // 8] = baseline[:, R.H_MIN // 8] = baseline[:, R.H_MAX // 8] = 0
        baseline = baseline.reshape(-1)
        empty = np.zeros(2, dtype=np.uint64)           # min, max of every copy: none yet
        for c in range(lay.n_copies - 1):
            for k in range(self.slots):
                slot = owner._base + lay.copy_offset(c) + m.block_offset + k * m.slot_bytes
                R.write_words(slot + R.H_MIN, empty)
        return baseline

    def read(self, m, words, copies):
        per = self.copy_bytes() // 8
        block = block_words(m, copies, per)
        live, base = block[:-1], block[-1]
        counts = since_reset(live.sum(axis=0, dtype=np.uint64), base)     # (slots, words)
        lanes = slice(R.H_SUM // 8, R.H_SUM // 8 + R.LANES)
        with np.errstate(over="ignore", invalid="ignore"):   # a sum may overflow to inf
            sums = live[:, :, lanes].view(np.float64).sum(axis=(0, 2)) \
                - base[:, lanes].view(np.float64).sum(axis=1)
        data = []
        for k in range(self.slots):
            slot = counts[k].copy()
            slot[R.H_SUM // 8] = np.float64(sums[k]).view(np.uint64)
            lo, hi = R.decode_extremes(live[:, k, R.H_MIN // 8], live[:, k, R.H_MAX // 8])
            slot[R.H_MIN // 8] = np.float64(lo).view(np.uint64)
            slot[R.H_MAX // 8] = np.float64(hi).view(np.uint64)
            data.append(HistogramData(self, slot))
        return HistogramSnapshot(self, data)

    def describe(self) -> dict:
        d = super().describe()
        d["histogram"] = self.scheme.describe()
        return d

    @classmethod
    def from_description(cls, d: dict) -> "Histogram":
        labels = [(x["name"], x["values"]) for x in d["labels"]]
        return cls(d["name"], d["help"], labels, scheme=scheme_from_description(d["histogram"]),
                   unit=d.get("unit", ""))
