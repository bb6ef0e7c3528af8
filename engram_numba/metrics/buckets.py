"""Histogram bucket schemes: base-2 exponential (from the float's bits) and explicit.

Exponential buckets
-------------------
This is the scheme of OpenTelemetry's exponential histogram and of Prometheus
native histograms: at *scale* ``s`` the base is ``2 ** (2 ** -s)`` and bucket
``i`` holds the values in ``(base**i, base**(i+1)]`` (upper bound inclusive).
Each power-of-two octave is cut into ``2**s`` geometric buckets, so a bucket is
at most ``base - 1`` wide relative to its lower bound (9.05 % at scale 3,
4.43 % at scale 4).

The index comes from the IEEE-754 bits, with no logarithm and no search.  A
positive normal double is ``2**e * (1 + m / 2**52)``; its index is
``e * 2**s + j`` where ``j`` counts the in-octave boundaries
``B_k = bits of 2**(k / 2**s)`` (``k = 0 .. 2**s - 1``) that lie strictly below
the mantissa ``m``, minus one.  (An exact power of two, ``m == 0``, gives
``j = -1``: it is the *upper* bound of the previous octave's last bucket.)
Counting those boundaries in O(1): the top ``s + 1`` mantissa bits select one
of ``2**(s+1)`` table cells.  A cell is ``2**52 / 2**(s+1)`` wide, narrower
than the narrowest bucket (``(2**(2**-s) - 1) * 2**52 > 0.69 * 2**52 / 2**s``),
so at most one boundary falls inside a cell: the table gives the count below
the cell's start and one comparison with that boundary finishes the job.

Two details keep that fast inside a recording loop (both measured there):

* The comparison's result is added to the count, not branched on: written as
  ``if ...: j += 1``, LLVM compiles it to a jump on the loaded boundary, which a
  stream of spread values mispredicts (3.3 ns a record against 1.9 ns, 4,096
  lognormal values at scale 3).
* The mantissa is taken by a shift (``bits << 12``: the mantissa in the top 52
  bits; the table holds the boundaries shifted the same way), not by a mask:
  on x86-64 with BMI2, LLVM masks with ``bzhi`` and loads its bit count with a
  byte move into a register that may still hold the previous record's bucket;
  Intel cores merge a byte write into the whole register, which chains each
  record to the previous record's table loads.

The boundaries are the doubles nearest ``2**(k/2**s)``, the same numbers
:func:`exponential_lower_boundary` returns, so the index and the reported
boundaries always agree (the invariant tests check every bucket of every
scale).

A histogram covers ``(2**min_exponent, 2**max_exponent]`` (``m``, ``M``).
Smaller magnitudes (and zero) go to the *zero bucket* (OpenTelemetry's
``zero_count`` with ``zero_threshold = 2**min_exponent``), an exact bucket in
every format.

Above the range: overflow buckets
---------------------------------
Every export must be exact at the resolution it states: no bucket may count a
value outside its bounds.  A finite magnitude above ``2**M`` is therefore kept
at a coarser resolution that is still exact, and the native and OTLP exports
drop to that resolution only when such values exist:

* *near* overflow: one bucket per octave (scale 0), ``(2**o, 2**(o+1)]`` for
  ``o`` from ``M`` up to ``near_top``, the first multiple of 16 at least
  :data:`NEAR_OCTAVES` (16) octaves above ``M``: values up to at least 65,536
  times the top of the range;
* *far* overflow: 16 octaves a bucket (scale -4, Prometheus' coarsest schema),
  ``(2**(16i), 2**(16i+16)]``, up to ``2**1024``, above every finite double.

Each is one word per bucket in the histogram's slot, found from the exponent
bits on the branch that only out-of-range values take.  The alternative, the
OpenTelemetry SDKs' way of rescaling a histogram until its values fit, would
put the scale in the recording path (a per-copy scale read and a rescale
while other threads' copies stay finer) and still needs the values' positions;
one word per bucket keeps the in-range path as it was.  The cost is memory:
``near_top - M`` + ``64 - near_top / 16`` words per sign (89 for the default
range ``(2**-20, 2**20]``, 712 bytes, against 320 words of buckets), in every
thread's copy, and as much more to read per snapshot.  Pages of a copy nobody
wrote stay untouched.

Exports (:meth:`ExponentialBuckets.sparse`): at the histogram's scale while no
value lies above the range, at scale 0 while they all lie below
``2**near_top``, at scale -4 beyond.  Classic ``le`` buckets and snapshots keep
their resolution: the ``+Inf`` line counts the overflow exactly, and
:meth:`~.snapshot.HistogramData.buckets` lists the overflow buckets themselves.

Classic ``le`` buckets
----------------------
An exponential histogram exports its classic buckets at ``classic_scale``
(``2**classic_scale`` per octave, at most its scale): by default the finest
scale that keeps at most :data:`CLASSIC_BUCKETS` (40) buckets per sign across
the range, at least one per octave.  Every ``le`` of a coarser scale is a
boundary of the finer one, so the counts stay exact.  A negative bucket holds
``[-upper, -lower)``: its ``le`` is the double just below ``-lower``, so that
each line is the exact count of the values ``<= le``.

Explicit buckets
----------------
Prometheus classic buckets: strictly increasing finite upper bounds ``b``;
bucket ``k`` holds ``(b[k-1], b[k]]`` and a last bucket holds ``(b[-1], inf)``.

The index is the number of bounds below the value, found the way the
exponential index is: from the value's bits, with a table and no search.  A
double's bits, with the sign folded (``key``: ``~bits`` for negatives, ``bits |
2**63`` otherwise), are an unsigned integer in the order of the values.  The
key range of the bounds is cut into at most ``MAX_CELLS`` cells of ``2**shift``
keys; a table gives, for each cell, the number of bounds below its start, and
``m`` comparisons with the next bounds (``m``, the most bounds any cell holds,
is 1 for any reasonably spread list) finish the job.  A binary search over 64
bounds is seven dependent loads; this is two, which matters because recording
loops are limited by how long each record's chain of dependent loads is.

Quantiles
---------
:func:`estimate_quantile` finds the bucket holding the value of rank
``ceil(q * count)`` (numpy's ``inverted_cdf`` definition) and returns the
bucket's midpoint (geometric for exponential buckets, arithmetic for explicit
ones) clamped to the observed ``[min, max]``; ``q = 0`` and ``q = 1`` return
min and max exactly.  The estimate is monotonic in ``q``.  Error bounds:

* exponential bucket in the range: relative error <= ``sqrt(base) - 1``
  (:func:`relative_error_bound`: 4.43 % at scale 3, 2.19 % at scale 4);
* zero bucket: absolute error <= ``2**min_exponent`` (the estimate is 0);
* above the range, up to ``2**near_top`` (an octave a bucket): relative error
  <= ``sqrt(2) - 1`` (41.4 %); beyond (16 octaves a bucket): relative error
  <= ``2**8 - 1`` (the estimate is within a factor 256);
* explicit bucket: absolute error <= half the bucket's width, the outer
  buckets being closed by the observed min and max.

Any value inside the right bucket (Prometheus' ``histogram_quantile``
interpolates inside it) is within a factor ``base`` of the truth: from classic
buckets at ``classic_scale`` ``c``, ``2**(2**-c)`` for values in the range
(:attr:`ExponentialBuckets.classic_relative_error` is that factor minus one).
"""

from __future__ import annotations

import bisect
import math
from functools import lru_cache

import numpy as np
from numba import njit

from .._addr import f64_bits
from .._inline import always_inline

__all__ = [
    "MIN_SCALE",
    "MAX_SCALE",
    "exponential_tables",
    "exponential_index",
    "exponential_lower_boundary",
    "relative_error_bound",
    "explicit_index",
    "CLASSIC_BUCKETS",
    "estimate_quantile",
]

MIN_SCALE = 0
MAX_SCALE = 8
NEAR_OCTAVES = 16       # above the range: a bucket per octave for at least this many octaves,
FAR_OCTAVES = 16        # then this many octaves a bucket,
FAR_SCALE = -4          # which is scale -4 (Prometheus' coarsest schema)
TOP_EXPONENT = 1024     # 2**1024: above every finite double
CLASSIC_BUCKETS = 40    # default classic resolution: at most this many le buckets per sign
MANTISSA_BITS = 52
MANTISSA_MASK = (1 << MANTISSA_BITS) - 1


def check_scale(scale) -> int:
    if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) \
            or not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be an integer in [{MIN_SCALE}, {MAX_SCALE}], got {scale!r}")
    return int(scale)


@lru_cache(maxsize=None)
def _octave_boundaries(scale: int) -> tuple:
    """The doubles nearest 2**(k / 2**scale) for k = 0 .. 2**scale - 1."""
    n = 1 << scale
    return tuple(2.0 ** (k / n) for k in range(n))


@lru_cache(maxsize=None)
def exponential_tables(scale: int):
    """(cell table int64[2**(s+1)], boundary mantissas uint64[2**s + 1]) for a scale.

    The boundary mantissas are shifted into the top 52 bits (``m << 12``), as
    :func:`exponential_index` compares them; the last entry is a sentinel that no
    mantissa exceeds."""
    scale = check_scale(scale)
    n = 1 << scale
    mantissas = [int(np.float64(b).view(np.uint64)) & MANTISSA_MASK for b in _octave_boundaries(scale)]
    bounds = np.array([m << (64 - MANTISSA_BITS) for m in mantissas] + [(1 << 64) - 1],
                      dtype=np.uint64)
    cells = 1 << (scale + 1)
    width = 1 << (MANTISSA_BITS - scale - 1)
    lut = np.empty(cells, dtype=np.int64)
    for t in range(cells):
        start = t * width
        lut[t] = sum(1 for m in mantissas if m < start) - 1
    lut.setflags(write=False)
    bounds.setflags(write=False)
    assert n == len(mantissas)
    return lut, bounds


@always_inline
@njit(cache=True)
def exponential_index(value, scale, lut, bounds):
    """Bucket index of a positive, finite, normal ``value`` at ``scale`` (see module doc)."""
    bits = f64_bits(value)
    exponent = np.int64((bits >> np.uint64(52)) & np.uint64(0x7FF)) - 1023
    mantissa = bits << np.uint64(12)                 # top 52 bits: a shift, no mask (module doc)
    j = lut[np.int64(mantissa >> np.uint64(63 - scale))]
    # an add, not a branch (module doc); an unsigned index: j >= -1, no wraparound needed
    j += np.int64(mantissa > bounds[np.uint64(j + 1)])
    return (exponent << scale) + j


def exponential_lower_boundary(index: int, scale: int) -> float:
    """Lower (exclusive) boundary ``base**index`` of bucket ``index``, as the index sees it."""
    scale = check_scale(scale)
    octave, k = divmod(int(index), 1 << scale)
    return math.ldexp(_octave_boundaries(scale)[k], octave)


@lru_cache(maxsize=256)
def _exponential_edges(scale: int, lo_index: int, n_buckets: int) -> np.ndarray:
    """Lower boundaries of buckets lo..lo+n-1 plus the upper boundary of the last."""
    octave = np.array(_octave_boundaries(scale))
    idx = np.arange(lo_index, lo_index + n_buckets + 1)
    edges = np.ldexp(octave[idx % (1 << scale)], idx >> scale)
    edges.setflags(write=False)
    return edges


def relative_error_bound(scale: int) -> float:
    """Largest relative error of a quantile estimate inside an exponential bucket."""
    return 2.0 ** (2.0 ** -(check_scale(scale) + 1)) - 1.0


_SIGN = np.uint64(1 << 63)
MAX_CELLS = 1024


def ordered_key(value: float) -> int:
    """The unsigned integer whose order is the order of the doubles (NaN aside)."""
    bits = int(np.float64(value).view(np.uint64))
    return (~bits & ((1 << 64) - 1)) if bits >> 63 else bits | (1 << 63)


@always_inline
@njit(cache=True)
def key_of(value):
    bits = f64_bits(value)
    return bits ^ (np.uint64(np.int64(bits) >> 63) | _SIGN)


@lru_cache(maxsize=256)
def explicit_tables(bounds: tuple) -> tuple:
    """``(k0, shift, last, m, lut, padded)`` for :func:`explicit_index` (see the module doc)."""
    keys = [ordered_key(b) for b in bounds]
    k0, k1 = keys[0], keys[-1]
    shift = 0
    while ((k1 - k0) >> shift) + 1 > MAX_CELLS:
        shift += 1
    cells = ((k1 - k0) >> shift) + 1
    lut = np.zeros(cells, dtype=np.int32)
    m = 1
    for c in range(cells):
        start = k0 + (c << shift)
        below = bisect.bisect_left(keys, start)
        lut[c] = below
        m = max(m, bisect.bisect_left(keys, start + (1 << shift)) - below)
    padded = np.full(len(bounds) + m, np.inf)
    padded[:len(bounds)] = bounds
    lut.setflags(write=False)
    padded.setflags(write=False)
    return np.uint64(k0), np.uint64(shift), np.int64(cells - 1), m, lut, padded


@always_inline
@njit(cache=True)
def explicit_index(value, k0, shift, last, m, lut, bounds):
    """Index of the bucket ``(b[k-1], b[k]]`` holding ``value`` (``len(b)``: above them all).

    The arguments are :func:`explicit_tables` of the bounds; ``value`` is not NaN.
    """
    key = key_of(value)
    cell = (key - k0) >> shift if key >= k0 else np.uint64(0)
    j = lut[np.int64(cell) if cell < np.uint64(last) else last]
    n = j
    for t in range(m):
        n += bounds[j + t] < value
    return n


def check_bounds(bounds) -> tuple:
    try:
        values = tuple(float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a sequence of numbers, got {bounds!r}") from None
    if not values:
        raise ValueError("bounds must not be empty")
    if not all(math.isfinite(b) for b in values):
        raise ValueError("bounds must be finite (the +Inf bucket is implicit)")
    if any(b >= c for b, c in zip(values, values[1:])):
        raise ValueError("bounds must be strictly increasing")
    return tuple(b + 0.0 for b in values)      # -0.0 is the bound 0.0


def estimate_quantile(q: float, bins, count: int, lo: float, hi: float) -> float:
    """Quantile ``q`` from ordered bins ``(count, estimate)``; see the module doc.

    ``bins`` yields ``(n, estimate)`` in increasing value order; ``lo``/``hi``
    are the observed min and max.
    """
    q = float(q)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q!r}")
    if count <= 0:
        return math.nan
    if q == 0.0:
        return lo
    if q == 1.0:
        return hi
    rank = max(1, math.ceil(q * count))
    seen = 0
    for n, estimate in bins:
        seen += n
        if seen >= rank:
            return min(max(estimate, lo), hi)
    return hi


# -- bucket schemes: a kind is an object -----------------------------------------------------

class BucketScheme:
    """How a histogram maps values to buckets; one subclass per scheme.

    A scheme owns its bucket count, its description, its boundaries, the index
    function kernels call, and how a reading is split into buckets, quantile
    bins and cumulative ``le`` buckets; snapshots, exporters and plots ask it,
    never branch on a name.
    """

    negative = False

    def split(self, counts: np.ndarray) -> tuple:
        """(negative bucket counts, other bucket counts, overflow counts, negative
        overflow counts) of a slot's count words (:attr:`count_words` of them)."""
        return counts[:0], counts, counts[:0], counts[:0]

    def buckets(self, h) -> list:
        raise NotImplementedError

    def bins(self, h):
        raise NotImplementedError

    def cumulative(self, h, scale: int | None = None) -> list:
        """Prometheus classic buckets ``[(le, count of values <= le)]``, ``+Inf`` last;
        ``scale``: the classic resolution of an exponential scheme (see
        :meth:`le_bounds`)."""
        raise NotImplementedError

    def le_bounds(self, scale: int | None = None) -> list:
        """The ``le`` boundaries of :meth:`cumulative`, in order (``inf`` last): they depend
        only on the declaration (and ``scale``)."""
        raise NotImplementedError

    @property
    def total_buckets(self) -> int:
        raise NotImplementedError

    @property
    def count_words(self) -> int:
        """Words of a slot after its header: buckets (and overflow buckets)."""
        return self.total_buckets

    def describe(self) -> dict:
        raise NotImplementedError

    def key(self) -> tuple:
        """What shapes the recording code (part of the numba handle type)."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())


class ExponentialBuckets(BucketScheme):
    """Base-2 exponential buckets at ``scale`` over ``(2**min_exponent, 2**max_exponent]``
    (OpenTelemetry's exponential histogram, Prometheus native histograms), with the
    overflow buckets above the range (see the module doc) and ``classic_scale``, the
    resolution of the classic ``le`` buckets (default: at most :data:`CLASSIC_BUCKETS`
    across the range)."""

    kind = "exponential"

    def __init__(self, scale: int = 3, range=(2.0 ** -20, 2.0 ** 20), negative: bool = False,
                 classic_scale: int | None = None):
        self.scale = check_scale(scale)
        try:
            lowest, highest = (float(x) for x in range)
        except (TypeError, ValueError):
            raise ValueError(f"range must be (lowest, highest), got {range!r}") from None
        if not (0.0 < lowest < highest < math.inf):
            raise ValueError(f"range must satisfy 0 < lowest < highest < inf, got {range!r}")
        if lowest < 2.0 ** -1000 or highest > 2.0 ** 1000:
            raise ValueError("range must lie within [2**-1000, 2**1000]")
        self.min_exponent = math.frexp(lowest)[1] - 1          # 2**min <= lowest
        self.max_exponent = math.frexp(highest)[1] - (1 if math.frexp(highest)[0] == 0.5 else 0)
        self.negative = bool(negative)
        self.lo_index = self.min_exponent << self.scale
        self.n_buckets = (self.max_exponent - self.min_exponent) << self.scale
        # overflow: an octave a bucket up to near_top, then FAR_OCTAVES a bucket up to 2**1024
        self.near_top = -(-(self.max_exponent + NEAR_OCTAVES) // FAR_OCTAVES) * FAR_OCTAVES
        self.near_words = self.near_top - self.max_exponent
        self.far_words = TOP_EXPONENT // FAR_OCTAVES - self.near_top // FAR_OCTAVES
        self.overflow_words = self.near_words + self.far_words
        octaves = self.max_exponent - self.min_exponent
        if classic_scale is None:
            classic_scale = self.scale
            while classic_scale > 0 and octaves << classic_scale > CLASSIC_BUCKETS:
                classic_scale -= 1
        self.classic_scale = self.check_classic(classic_scale)

    def check_classic(self, classic_scale) -> int:
        """``classic_scale`` if it is an integer in ``[0, scale]``, else a ``ValueError``."""
        if not isinstance(classic_scale, (int, np.integer)) or isinstance(classic_scale, bool) \
                or not 0 <= classic_scale <= self.scale:
            raise ValueError(f"classic_scale must be an integer in [0, {self.scale}] (at most "
                             f"the histogram's scale), got {classic_scale!r}")
        return int(classic_scale)

    def _classic(self, scale) -> int:
        """The classic resolution to export: the declared one, or ``scale`` capped at the
        histogram's scale."""
        if scale is None:
            return self.classic_scale
        return min(check_scale(scale), self.scale)

    @property
    def total_buckets(self) -> int:
        return self.n_buckets * (2 if self.negative else 1)

    @property
    def count_words(self) -> int:
        return (self.n_buckets + self.overflow_words) * (2 if self.negative else 1)

    @property
    def zero_threshold(self) -> float:
        return math.ldexp(1.0, self.min_exponent)

    @property
    def relative_error(self) -> float:
        return relative_error_bound(self.scale)

    @property
    def classic_relative_error(self) -> float:
        """Largest relative error of a quantile taken anywhere inside a classic bucket (as
        Prometheus' ``histogram_quantile`` does) in the range: ``2**(2**-classic_scale) - 1``."""
        return 2.0 ** (2.0 ** -self.classic_scale) - 1.0

    def describe(self) -> dict:
        return {"mode": "exponential", "scale": self.scale, "min_exponent": self.min_exponent,
                "max_exponent": self.max_exponent, "negative": self.negative,
                "classic_scale": self.classic_scale}

    def key(self) -> tuple:
        return ("exponential", self.scale, self.lo_index, self.n_buckets, self.negative)

    def edges(self) -> np.ndarray:
        """Lower boundaries of the positive buckets plus the upper boundary of the last."""
        return _exponential_edges(self.scale, self.lo_index, self.n_buckets)

    def overflow_edges(self) -> list:
        """Boundaries of the overflow buckets, from ``2**max_exponent`` to ``inf`` (the
        ``2**1024`` that no double reaches): ``overflow_words + 1`` values."""
        exps = list(range(self.max_exponent, self.near_top + 1)) + \
            [self.near_top + FAR_OCTAVES * (i + 1) for i in range(self.far_words)]
        return [math.ldexp(1.0, e) if e < TOP_EXPONENT else math.inf for e in exps]

    def overflow_mids(self) -> list:
        """Geometric midpoints of the overflow buckets (quantile estimates)."""
        near = [math.ldexp(math.sqrt(2.0), self.max_exponent + j)
                for j in range(self.near_words)]
        far = [math.ldexp(1.0, self.near_top + FAR_OCTAVES * i + FAR_OCTAVES // 2)
               for i in range(self.far_words)]
        return near + far

    def split(self, counts):
        n, w = self.n_buckets, self.overflow_words
        if self.negative:
            return (counts[:n], counts[n:2 * n], counts[2 * n:2 * n + w], counts[2 * n + w:])
        return counts[:0], counts[:n], counts[n:n + w], counts[:0]

    def buckets(self, h) -> list:
        edges = self.edges().tolist()
        over = self.overflow_edges()
        out = []
        if self.negative:
            for j in range(self.overflow_words - 1, -1, -1):
                out.append((-over[j + 1], -over[j], int(h.neg_overflow_counts[j])))
            for k in range(self.n_buckets - 1, -1, -1):
                out.append((-edges[k + 1], -edges[k], int(h.negative_counts[k])))
        t = self.zero_threshold
        out.append((-t if self.negative else 0.0, t, h.zero_count))
        for k, n in enumerate(h.counts.tolist()):
            out.append((edges[k], edges[k + 1], n))
        for j, n in enumerate(h.overflow_counts.tolist()):
            out.append((over[j], over[j + 1], n))
        return out

    def bins(self, h):
        """(count, estimate) in value order: the geometric midpoint of each bucket."""
        edges = self.edges()
        mids = np.sqrt(edges[:-1]) * np.sqrt(edges[1:])      # no overflow near 2**1000
        over = self.overflow_mids()
        if self.negative:
            for j in np.flatnonzero(h.neg_overflow_counts)[::-1]:
                yield int(h.neg_overflow_counts[j]), -over[j]
            for k in np.flatnonzero(h.negative_counts)[::-1]:
                yield int(h.negative_counts[k]), -float(mids[k])
        yield h.zero_count, 0.0
        for k in np.flatnonzero(h.counts):
            yield int(h.counts[k]), float(mids[k])
        for j in np.flatnonzero(h.overflow_counts):
            yield int(h.overflow_counts[j]), over[j]

    def le_bounds(self, scale: int | None = None) -> list:
        """The ``le`` boundaries at classic resolution ``scale`` (default: the declared
        ``classic_scale``).  A negative bucket holds ``[-upper, -lower)``, so the count
        up to it is that of the values *below* ``-lower``: its ``le`` is the double just
        below ``-lower``, which makes every line the exact count of values ``<= le``."""
        step = 1 << (self.scale - self._classic(scale))
        edges = self.edges()[::step].tolist()
        out = []
        if self.negative:
            out.extend(math.nextafter(-e, -math.inf) for e in reversed(edges))
        out.extend(edges)
        out.append(math.inf)
        return out

    def cumulative(self, h, scale: int | None = None) -> list:
        step = 1 << (self.scale - self._classic(scale))
        bounds = self.le_bounds(scale)
        counts = []
        seen = 0
        if self.negative:
            seen = h.neg_overflow
            counts.append(seen)
            for n in h.negative_counts.reshape(-1, step).sum(axis=1)[::-1].tolist():
                seen += n
                counts.append(seen)
        seen += h.zero_count
        counts.append(seen)
        for n in h.counts.reshape(-1, step).sum(axis=1).tolist():
            seen += n
            counts.append(seen)
        counts.append(h.count)
        return list(zip(bounds, counts))

    def sparse(self, h) -> tuple:
        """``(scale, (offset, counts), (offset, counts))``: the scale of the export and
        the positive and negative buckets from the first to the last non-empty one,
        ``offset`` being the absolute index (OpenTelemetry's: bucket i holds
        ``(base**i, base**(i+1)]``; Prometheus native histograms number the same bucket
        ``i + 1``).  The scale is the histogram's while no value lies above the range;
        then 0 (a bucket per octave) while they all lie below ``2**near_top``, and
        ``FAR_SCALE`` beyond: every bucket still counts exactly the values inside it."""
        near = self.near_words
        tiers = (h.overflow_counts, h.neg_overflow_counts)
        overflowed = any(t.any() for t in tiers)
        if any(t[near:].any() for t in tiers):
            scale = FAR_SCALE
        elif overflowed:
            scale = 0
        else:
            scale = self.scale
        out = []
        for counts, tier in ((h.counts, h.overflow_counts),
                             (h.negative_counts, h.neg_overflow_counts)):
            counts = np.asarray(counts, dtype=np.int64)
            if not overflowed:
                nonzero = np.flatnonzero(counts)
                if nonzero.size:
                    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
                    out.append((self.lo_index + lo, counts[lo:hi].tolist()))
                else:
                    out.append((0, []))
                continue
            if not counts.size:                      # no negative buckets
                out.append((0, []))
                continue
            index = np.concatenate([                 # each word's index at the export scale
                (self.lo_index + np.arange(counts.size)) >> (self.scale - scale),
                (self.max_exponent + np.arange(near)) >> -scale,
                self.near_top // FAR_OCTAVES + np.arange(self.far_words)])
            values = np.concatenate([counts, np.asarray(tier, dtype=np.int64)])
            keep = values > 0
            index, values = index[keep], values[keep]
            if not index.size:
                out.append((0, []))
                continue
            lo = int(index[0])
            dense = np.zeros(int(index[-1]) - lo + 1, dtype=np.int64)
            np.add.at(dense, index - lo, values)
            out.append((lo, dense.tolist()))
        return (scale,) + tuple(out)

    def index(self, value: float) -> int:
        """The bucket index (absolute, OpenTelemetry's) of a positive finite value."""
        lut, bounds = exponential_tables(self.scale)
        return int(exponential_index(float(value), self.scale, lut, bounds))

    @property
    def recording_constants(self) -> tuple:
        """What the compiled observe functions (CPU and device) take as constants:
        ``(scale, lo_index, n_buckets, negative, low, high, lut, bounds, over)`` with
        ``low``/``high`` the range ``(2**min_exponent, 2**max_exponent]`` and ``over`` =
        ``(max_exponent, near_top, overflow_words)``."""
        lut, bounds = exponential_tables(self.scale)
        return (self.scale, self.lo_index, self.n_buckets, self.negative, self.zero_threshold,
                2.0 ** self.max_exponent, lut, bounds,
                (self.max_exponent, self.near_top, self.overflow_words))


class ExplicitBuckets(BucketScheme):
    """Prometheus classic buckets: explicit upper bounds ``b``, then ``(b[-1], inf)``."""

    kind = "explicit"
    negative = True
    zero_threshold = 0.0
    scale = None
    relative_error = math.nan

    def __init__(self, bounds):
        self.bounds = check_bounds(bounds)
        self.n_buckets = len(self.bounds) + 1

    @property
    def tables(self) -> tuple:
        """The arguments of :func:`explicit_index` after the value."""
        return explicit_tables(self.bounds)

    def index(self, value: float) -> int:
        """The bucket index of a value that is not NaN."""
        return int(explicit_index(float(value), *self.tables))

    @property
    def total_buckets(self) -> int:
        return self.n_buckets

    def describe(self) -> dict:
        return {"mode": "explicit", "bounds": list(self.bounds)}

    def key(self) -> tuple:
        return ("explicit", self.bounds)

    def buckets(self, h) -> list:
        edges = (-math.inf,) + self.bounds + (math.inf,)
        return [(edges[k], edges[k + 1], n) for k, n in enumerate(h.counts.tolist())]

    def bins(self, h):
        """(count, estimate) in value order: the middle of each bucket, closed by min and max."""
        edges = (h.min,) + self.bounds + (h.max,)
        for k, n in enumerate(h.counts.tolist()):
            if n:
                lo, hi = max(edges[k], h.min), min(edges[k + 1], h.max)
                yield n, 0.5 * lo + 0.5 * hi          # no overflow near the largest doubles

    def le_bounds(self, scale: int | None = None) -> list:
        return list(self.bounds) + [math.inf]

    def cumulative(self, h, scale: int | None = None) -> list:
        out, seen = [], 0
        for b, n in zip(self.bounds, h.counts.tolist()):
            seen += n
            out.append((b, seen))
        out.append((math.inf, h.count))
        return out


def scheme_from_key(key: tuple) -> BucketScheme:
    """The scheme whose :meth:`BucketScheme.key` is ``key``."""
    if key[0] == "explicit":
        return ExplicitBuckets(key[1])
    _, scale, lo_index, n_buckets, negative = key
    low = math.ldexp(1.0, lo_index >> scale)
    return ExponentialBuckets(scale, (low, math.ldexp(low, n_buckets >> scale)), negative,
                              classic_scale=scale)


def scheme_from_description(d: dict) -> BucketScheme:
    if d.get("mode") == "explicit":
        return ExplicitBuckets(d["bounds"])
    if d.get("mode") == "exponential":
        return ExponentialBuckets(d["scale"], (2.0 ** d["min_exponent"], 2.0 ** d["max_exponent"]),
                                  d["negative"], d.get("classic_scale"))
    raise ValueError(f"unknown histogram mode {d.get('mode')!r}")
