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

The boundaries are the doubles nearest ``2**(k/2**s)``, the same numbers
:func:`exponential_lower_boundary` returns, so the index and the reported
boundaries always agree (the invariant tests check every bucket of every
scale).

A histogram covers ``(2**min_exponent, 2**max_exponent]``.  Smaller magnitudes
(and zero) go to the *zero bucket* (OpenTelemetry's ``zero_count`` with
``zero_threshold = 2**min_exponent``), larger finite ones to an *overflow*
slot.

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

* exponential bucket: relative error <= ``sqrt(base) - 1``
  (:func:`relative_error_bound`: 4.43 % at scale 3, 2.19 % at scale 4);
* zero bucket: absolute error <= ``2**min_exponent`` (the estimate is 0);
* explicit bucket: absolute error <= half the bucket's width, the outer
  buckets being closed by the observed min and max;
* overflow: the estimate is the observed max (no bound beyond it).
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
    "estimate_quantile",
]

MIN_SCALE = 0
MAX_SCALE = 8
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
    """(cell table int64[2**(s+1)], boundary mantissas uint64[2**s + 1]) for a scale."""
    scale = check_scale(scale)
    n = 1 << scale
    mantissas = [int(np.float64(b).view(np.uint64)) & MANTISSA_MASK for b in _octave_boundaries(scale)]
    bounds = np.array(mantissas + [1 << MANTISSA_BITS], dtype=np.uint64)  # sentinel: never exceeded
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
@njit
def exponential_index(value, scale, lut, bounds):
    """Bucket index of a positive, finite, normal ``value`` at ``scale`` (see module doc)."""
    bits = f64_bits(value)
    exponent = np.int64((bits >> np.uint64(52)) & np.uint64(0x7FF)) - 1023
    mantissa = bits & np.uint64(0xFFFFFFFFFFFFF)
    j = lut[np.int64(mantissa >> np.uint64(51 - scale))]
    if mantissa > bounds[j + 1]:
        j += 1
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
@njit
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
@njit
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
        """(negative bucket counts, other bucket counts) of a slot's bucket words."""
        return counts[:0], counts

    def buckets(self, h) -> list:
        raise NotImplementedError

    def bins(self, h):
        raise NotImplementedError

    def cumulative(self, h) -> list:
        raise NotImplementedError

    def le_bounds(self) -> list:
        """The ``le`` boundaries of :meth:`cumulative`, in order (``inf`` last): they depend
        only on the declaration."""
        raise NotImplementedError

    @property
    def total_buckets(self) -> int:
        raise NotImplementedError

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
    (OpenTelemetry's exponential histogram, Prometheus native histograms)."""

    kind = "exponential"

    def __init__(self, scale: int = 3, range=(2.0 ** -20, 2.0 ** 20), negative: bool = False):
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

    @property
    def total_buckets(self) -> int:
        return self.n_buckets * (2 if self.negative else 1)

    @property
    def zero_threshold(self) -> float:
        return math.ldexp(1.0, self.min_exponent)

    @property
    def relative_error(self) -> float:
        return relative_error_bound(self.scale)

    def describe(self) -> dict:
        return {"mode": "exponential", "scale": self.scale, "min_exponent": self.min_exponent,
                "max_exponent": self.max_exponent, "negative": self.negative}

    def key(self) -> tuple:
        return ("exponential", self.scale, self.lo_index, self.n_buckets, self.negative)

    def edges(self) -> np.ndarray:
        """Lower boundaries of the positive buckets plus the upper boundary of the last."""
        return _exponential_edges(self.scale, self.lo_index, self.n_buckets)

    def split(self, counts):
        if self.negative:
            return counts[:self.n_buckets], counts[self.n_buckets:]
        return counts[:0], counts

    def buckets(self, h) -> list:
        edges = self.edges().tolist()
        top = edges[-1]
        out = []
        if self.negative:
            out.append((-math.inf, -top, h.neg_overflow))
            for k in range(self.n_buckets - 1, -1, -1):
                out.append((-edges[k + 1], -edges[k], int(h.negative_counts[k])))
        t = self.zero_threshold
        out.append((-t if self.negative else 0.0, t, h.zero_count))
        for k, n in enumerate(h.counts.tolist()):
            out.append((edges[k], edges[k + 1], n))
        out.append((top, math.inf, h.overflow))
        return out

    def bins(self, h):
        """(count, estimate) in value order: the geometric midpoint of each bucket."""
        edges = self.edges()
        mids = np.sqrt(edges[:-1] * edges[1:])
        if self.negative:
            yield h.neg_overflow, h.min
            for k in np.flatnonzero(h.negative_counts)[::-1]:
                yield int(h.negative_counts[k]), -float(mids[k])
        yield h.zero_count, 0.0
        for k in np.flatnonzero(h.counts):
            yield int(h.counts[k]), float(mids[k])
        yield h.overflow, h.max

    def le_bounds(self) -> list:
        edges = self.edges().tolist()
        out = []
        if self.negative:
            out.append(-edges[-1])
            out.extend(-edges[k] for k in range(self.n_buckets - 1, -1, -1))
        out.extend(edges[:self.n_buckets + 1])
        out.append(math.inf)
        return out

    def cumulative(self, h) -> list:
        edges = self.edges().tolist()
        out, seen = [], 0
        if self.negative:
            seen = h.neg_overflow
            out.append((-edges[-1], seen))
            for k in range(self.n_buckets - 1, -1, -1):
                seen += int(h.negative_counts[k])
                out.append((-edges[k], seen))
        seen += h.zero_count
        out.append((edges[0], seen))
        for k, n in enumerate(h.counts.tolist()):
            seen += n
            out.append((edges[k + 1], seen))
        out.append((math.inf, h.count))
        return out

    def sparse(self, h) -> tuple:
        """``((offset, counts), (offset, counts))``: the positive and negative buckets
        from the first to the last non-empty one, ``offset`` being the absolute index
        (OpenTelemetry's: bucket i holds ``(base**i, base**(i+1)]``; Prometheus native
        histograms number the same bucket ``i + 1``).  Finite values above the range
        have no bucket of their own: they are counted in the bucket of the observed
        maximum (minimum for negatives), so the buckets still add up to the count."""
        out = []
        for counts, extra, magnitude in ((h.counts, h.overflow, h.max),
                                         (h.negative_counts, h.neg_overflow, -h.min)):
            counts = np.asarray(counts, dtype=np.int64)
            if extra:
                index = self.index(magnitude) - self.lo_index
                grown = np.zeros(max(index + 1, counts.size), dtype=np.int64)
                grown[:counts.size] = counts
                grown[index] += extra
                counts = grown
            nonzero = np.flatnonzero(counts)
            if nonzero.size:
                lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
                out.append((self.lo_index + lo, counts[lo:hi].tolist()))
            else:
                out.append((0, []))
        return tuple(out)

    def coarse_positions(self, scale: int) -> list:
        """Positions in :meth:`le_bounds` of the boundaries that scale ``scale`` (at most
        this scheme's) also has: cumulative counts there are exact at the coarser scale."""
        scale = check_scale(scale)
        if scale > self.scale:
            raise ValueError(f"a coarser scale must be at most the histogram's scale "
                             f"{self.scale}, got {scale}")
        step = 1 << (self.scale - scale)
        n = self.n_buckets
        edge_of = []                       # the edge index behind each le bound (None: +-inf)
        if self.negative:
            edge_of.append(n)
            edge_of.extend(range(n - 1, -1, -1))
        edge_of.extend(range(n + 1))
        edge_of.append(None)
        return [i for i, k in enumerate(edge_of) if k is None or k % step == 0]

    def index(self, value: float) -> int:
        """The bucket index (absolute, OpenTelemetry's) of a positive finite value."""
        lut, bounds = exponential_tables(self.scale)
        return int(exponential_index(float(value), self.scale, lut, bounds))


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
                yield n, 0.5 * (lo + hi)

    def le_bounds(self) -> list:
        return list(self.bounds) + [math.inf]

    def cumulative(self, h) -> list:
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
    return ExponentialBuckets(scale, (low, math.ldexp(low, n_buckets >> scale)), negative)


def scheme_from_description(d: dict) -> BucketScheme:
    if d.get("mode") == "explicit":
        return ExplicitBuckets(d["bounds"])
    if d.get("mode") == "exponential":
        return ExponentialBuckets(d["scale"], (2.0 ** d["min_exponent"], 2.0 ** d["max_exponent"]),
                                  d["negative"])
    raise ValueError(f"unknown histogram mode {d.get('mode')!r}")
