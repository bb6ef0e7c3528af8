"""Lock-free recording primitives on raw addresses inside a metric region.

Kernels call these inlined with compile-time offsets; Python handles call the
same compiled functions with runtime arguments, so both paths share one
implementation and Python updates stay atomic with respect to running kernels.

Histogram slot layout (byte offsets from the slot start; see :mod:`.layout`)::

    0    sum        f64   finite observations only (atomic float add)
    8    min        f64   +inf when empty
    16   max        f64   -inf when empty
    64   zero       u64   |v| <= zero threshold (exponential) - includes 0.0
    72   overflow   u64   v > 2**max_exponent (exponential)
    80   neg_overflow u64 v < -2**max_exponent (exponential, negative=True)
    88   nan        u64   NaN: not in count, sum, min or max
    96   pos_inf    u64   +inf: not in count or sum
    104  neg_inf    u64   -inf: not in count or sum
    112  negative   u64   v < 0 when the histogram has no negative buckets:
                          out of its domain, not in count or sum
    128  buckets    u64[] negative buckets (if any) then positive/explicit ones

The count is not stored: it is the sum of the bucket, zero and overflow slots,
so a reader's ``+Inf`` bucket always equals its count, even mid-update.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._addr import (add_f64, add_u64, fence_release, load_u64_acquire, load_f64, load_u64,
                        max_f64, min_f64, store_f64, store_u64, store_u64_release)
from .buckets import explicit_index, exponential_index

H_SUM = 0
H_MIN = 8
H_MAX = 16
H_ZERO = 64
H_OVERFLOW = 72
H_NEG_OVERFLOW = 80
H_NAN = 88
H_POS_INF = 96
H_NEG_INF = 104
H_NEGATIVE = 112
H_BUCKETS = 128

_ONE = np.uint64(1)


@njit
def counter_add(addr, n):
    add_u64(addr, np.uint64(n))


@njit
def gauge_set(addr, value):
    store_f64(addr, np.float64(value))


@njit
def gauge_add(addr, value):
    add_f64(addr, np.float64(value))


@njit
def _track_extremes(slot, value):
    # the loads are cheap; the atomic write happens only when a new extreme is seen
    if value < load_f64(slot + H_MIN):
        min_f64(slot + H_MIN, value)
    if value > load_f64(slot + H_MAX):
        max_f64(slot + H_MAX, value)


@njit
def observe_exponential(slot, value, scale, lut, bounds, lo_index, n_buckets, negative):
    """Record ``value`` into an exponential histogram slot starting at address ``slot``."""
    v = np.float64(value)
    if v != v:
        add_u64(slot + H_NAN, _ONE)
        return
    magnitude = abs(v)
    if magnitude == np.inf:
        add_u64(slot + (H_POS_INF if v > 0 else H_NEG_INF), _ONE)
        return
    if v < 0.0 and not negative:
        add_u64(slot + H_NEGATIVE, _ONE)
        return
    add_f64(slot + H_SUM, v)
    _track_extremes(slot, v)
    if magnitude == 0.0:
        add_u64(slot + H_ZERO, _ONE)
        return
    index = exponential_index(magnitude, scale, lut, bounds) - lo_index
    if index < 0:
        add_u64(slot + H_ZERO, _ONE)
    elif index >= n_buckets:
        add_u64(slot + (H_NEG_OVERFLOW if v < 0.0 else H_OVERFLOW), _ONE)
    elif v > 0.0:
        add_u64(slot + H_BUCKETS + 8 * (n_buckets * negative + index), _ONE)
    else:
        add_u64(slot + H_BUCKETS + 8 * index, _ONE)


@njit
def observe_explicit(slot, value, bounds):
    """Record ``value`` into an explicit-boundary histogram slot at address ``slot``."""
    v = np.float64(value)
    if v != v:
        add_u64(slot + H_NAN, _ONE)
        return
    if v == np.inf:
        add_u64(slot + H_POS_INF, _ONE)
        return
    if v == -np.inf:
        add_u64(slot + H_NEG_INF, _ONE)
        return
    add_f64(slot + H_SUM, v)
    _track_extremes(slot, v)
    add_u64(slot + H_BUCKETS + 8 * explicit_index(v, bounds), _ONE)


# -- whole-region access (readers and reset) -----------------------------------

@njit(nogil=True, cache=True)
def read_words(addr, n_words):
    """Copy ``n_words`` u64 words with relaxed atomic loads (never a torn word)."""
    out = np.empty(n_words, dtype=np.uint64)
    for i in range(n_words):
        out[i] = load_u64(addr + 8 * i)
    return out


@njit(nogil=True, cache=True)
def write_words(addr, words):
    """Store ``words`` with relaxed atomic stores (reset: racy with concurrent writers)."""
    for i in range(words.size):
        store_u64(addr + 8 * i, words[i])


@njit(nogil=True, cache=True)
def write_table(addr, words):
    """Rewrite a top-k table (one writer): version odd, entries, version even."""
    version = load_u64(addr)
    store_u64(addr, version + np.uint64(1))
    fence_release()
    for i in range(words.size):
        store_u64(addr + 8 + 8 * i, words[i])
    store_u64_release(addr, version + np.uint64(2))


@njit(nogil=True, cache=True)
def read_table(addr, n_words, attempts):
    """A consistent copy of a top-k table (version word first), or an empty one if it kept moving."""
    out = np.zeros(n_words, dtype=np.uint64)
    for _ in range(attempts):
        before = load_u64_acquire(addr)
        if before & np.uint64(1):
            continue
        for i in range(n_words):
            out[i] = load_u64(addr + 8 + 8 * i)
        if load_u64_acquire(addr) == before:
            return out
    return np.zeros(n_words, dtype=np.uint64)


@njit(nogil=True, cache=True)
def py_counter_add(addr, n):
    counter_add(addr, n)


@njit(nogil=True, cache=True)
def py_gauge_set(addr, value):
    gauge_set(addr, value)


@njit(nogil=True, cache=True)
def py_gauge_add(addr, value):
    gauge_add(addr, value)


@njit(nogil=True, cache=True)
def py_observe_exponential(slot, value, scale, lut, bounds, lo_index, n_buckets, negative):
    observe_exponential(slot, value, scale, lut, bounds, lo_index, n_buckets, negative)


@njit(nogil=True, cache=True)
def py_observe_explicit(slot, value, bounds):
    observe_explicit(slot, value, bounds)
