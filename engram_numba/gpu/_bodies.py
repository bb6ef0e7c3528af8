"""Recording bodies of device metric sets: one Python source for the GPU and the simulator.

Each body records into a set's words (see :mod:`..metrics.layout`; offsets here
are word indices, the byte offsets of :mod:`..metrics._record` divided by 8)
with the primitives of :mod:`._ops`, which are GPU intrinsics or simulator
Python.  The bucket index, the order-preserving key of the extremes and the
overflow word come from the CPU code itself (:func:`..metrics.buckets.exponential_index`,
:func:`~..metrics.buckets.explicit_index`, :func:`~..metrics.buckets.key_of`,
:func:`..metrics._record.overflow_word`): numba compiles the same njit source for
the device, and the simulator runs the CPU build.

A device records as the CPU's threads without a copy of their own do: atomic
read-modify-writes into a copy that many threads share.  Which copy: the
multiprocessor's (``%smid``), modulo the set's copies (the shared one and the
owned ones, all but the baseline), so that thousands of warps do not meet on
one word; readers add the copies up, as on the CPU.
"""

from __future__ import annotations

import numpy as np

from ..metrics import _record as R
from ..metrics.buckets import explicit_index, exponential_index, key_of
from ..metrics.layout import INVALID_OFFSET, LAST_INVALID_OFFSET
from ._ops import (atomic_add_f64, atomic_add_u64, atomic_cas_u64, device, load_u64,
                   store_f64, store_u64, warp_add, warp_inc, warp_observe)

H_SUM = R.H_SUM // 8
H_MIN = R.H_MIN // 8
H_MAX = R.H_MAX // 8
H_ZERO = R.H_ZERO // 8
H_NAN = R.H_NAN // 8
H_POS_INF = R.H_POS_INF // 8
H_NEG_INF = R.H_NEG_INF // 8
H_NEGATIVE = R.H_NEGATIVE // 8
H_BUCKETS = R.H_BUCKETS // 8
G_VALUES = R.G_VALUES // 8
INVALID = INVALID_OFFSET // 8
LAST_INVALID = LAST_INVALID_OFFSET // 8


@device
def note_invalid(words, metric, method, reason, position, value):
    """Count a refused record and keep its description (as :func:`..metrics._record.note_invalid`:
    one atomic add, then a try-lock seqlock that a writer finding it busy leaves alone)."""
    atomic_add_u64(words, INVALID, 1)
    version = load_u64(words, LAST_INVALID)
    if version & np.uint64(1):
        return
    if atomic_cas_u64(words, LAST_INVALID, version, version + np.uint64(1)) != version:
        return
    what = (np.uint64(reason) | (np.uint64(position & 0xFF) << np.uint64(8))
            | (np.uint64(method) << np.uint64(16)) | (np.uint64(metric + 1) << np.uint64(24)))
    store_u64(words, LAST_INVALID + 1, what)
    store_u64(words, LAST_INVALID + 2, np.uint64(np.int64(value)))
    atomic_cas_u64(words, LAST_INVALID, version + np.uint64(1), version + np.uint64(2))


@device
def counter_inc(words, word):
    warp_inc(words, word)


@device
def counter_add(words, word, n):
    warp_add(words, word, n)


@device
def gauge_set(words, shared, value):
    """``set`` (as :func:`..metrics._record.gauge_set`): the other value word, then the
    next epoch with a compare-and-swap; retried if another ``set`` moved the epoch.

    No time stamp (the CPU's ``gauge_stamp`` for ``multiprocess_mode="latest"``): stamps
    order the writes of processes sharing a metrics directory, and a device set is never
    in one (its reading is its own words), so the stamp word stays 0."""
    while True:
        epoch = load_u64(words, shared)
        store_f64(words, shared + G_VALUES + np.int64((epoch + np.uint64(1)) & np.uint64(1)),
                  np.float64(value))
        if atomic_cas_u64(words, shared, epoch, epoch + np.uint64(1)) == epoch:
            return


@device
def gauge_add(words, shared, value):
    """``add`` into the current value word (the CPU's shared path)."""
    epoch = load_u64(words, shared)
    atomic_add_f64(words, shared + G_VALUES + np.int64(epoch & np.uint64(1)), np.float64(value))


@device
def _observed(words, slot, v, bucket):
    """A finite value in the histogram's domain: sum and extremes (aggregated per warp by
    slot: one f64 atomic add and two atomic maxes from the leader of the lanes recording
    into this slot), its bucket word (aggregated per warp by word: lanes whose values share
    a bucket add once)."""
    warp_observe(words, slot + H_SUM, slot + H_MAX, slot + H_MIN, v, np.uint64(key_of(v)))
    warp_inc(words, slot + bucket)


@device
def observe_exponential(words, slot, value, scale, lut, bounds, lo_index, n_buckets, negative,
                        low, high, max_exponent, near_top, over_words):
    """:func:`..metrics._record.observe_exponential` on a shared copy, in word indices."""
    v = np.float64(value)
    magnitude = abs(v) if negative else v
    if low < magnitude <= high:
        index = exponential_index(magnitude, scale, lut, bounds) - lo_index
        if negative:
            index += n_buckets * np.int64(v > 0.0)
        _observed(words, slot, v, H_BUCKETS + index)
        return
    if v != v:
        warp_inc(words, slot + H_NAN)
    elif v == np.inf:
        warp_inc(words, slot + H_POS_INF)
    elif v == -np.inf:
        warp_inc(words, slot + H_NEG_INF)
    elif v < 0.0 and not negative:
        warp_inc(words, slot + H_NEGATIVE)
    elif abs(v) <= low:
        _observed(words, slot, v, H_ZERO)
    else:
        word = (n_buckets * (2 if negative else 1) + (over_words if v < 0.0 else 0)
                + R.overflow_word(abs(v), max_exponent, near_top))
        _observed(words, slot, v, H_BUCKETS + word)


@device
def observe_explicit(words, slot, value, k0, shift, last, m, lut, bounds):
    """:func:`..metrics._record.observe_explicit` on a shared copy, in word indices."""
    v = np.float64(value)
    if -np.inf < v < np.inf:
        index = explicit_index(v, k0, shift, last, m, lut, bounds)
        _observed(words, slot, v, H_BUCKETS + index)
    elif v == np.inf:
        warp_inc(words, slot + H_POS_INF)
    elif v == -np.inf:
        warp_inc(words, slot + H_NEG_INF)
    else:
        warp_inc(words, slot + H_NAN)
