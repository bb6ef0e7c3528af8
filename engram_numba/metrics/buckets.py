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
The index is a binary search.

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

import math
from functools import lru_cache

import numpy as np
from numba import njit

from .._addr import f64_bits

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


def relative_error_bound(scale: int) -> float:
    """Largest relative error of a quantile estimate inside an exponential bucket."""
    return 2.0 ** (2.0 ** -(check_scale(scale) + 1)) - 1.0


@njit
def explicit_index(value, bounds):
    """Index of the bucket ``(b[k-1], b[k]]`` holding ``value``; ``len(bounds)`` is overflow."""
    return np.searchsorted(bounds, value, side="left")


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
    return values


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
