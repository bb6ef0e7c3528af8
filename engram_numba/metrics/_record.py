"""Recording primitives on raw addresses inside a metric region: owned and shared.

Every recording thread owns a copy of the set's hot values (see :mod:`.layout`)
and is its only writer, so it updates them with a relaxed load and a relaxed
store: plain ``mov`` instructions, no ``lock`` prefix, no compare-and-swap
loop, for float sums and extremes too.  A thread that found no free copy
records into the shared copy with atomic read-modify-writes instead.  Both
variants of each primitive are here; kernels pick one per record on a
register that the claim (hoisted out of recording loops) produced.

Histogram slot layout (byte offsets from the slot start)::

    0    sum        f64[4] finite observations only, in four lanes (see below)
    32   lane       u64   the owner's lane counter
    40   min        u64   largest ~key of the values (see below); 0 = none yet
    48   max        u64   largest key of the values; 0 = none yet
    56   zero       u64   |v| <= zero threshold (exponential) - includes 0.0
    64   nan        u64   NaN: not in count, sum, min or max
    72   pos_inf    u64   +inf: not in count or sum
    80   neg_inf    u64   -inf: not in count or sum
    88   negative   u64   v < 0 when the histogram has no negative buckets:
                          out of its domain, not in count or sum
    96   buckets    u64[] negative buckets (if any) then positive/explicit ones
         overflow   u64[] exponential: positive overflow buckets, then (negative=True)
                          the negative ones, ``overflow_words`` each (see below)

Overflow buckets (exponential): a finite magnitude above ``2**max_exponent``
(``M``) is counted at a coarser resolution that is still exact: one bucket per
octave, ``(2**o, 2**(o+1)]`` for ``o`` from ``M`` up to ``near_top`` (the first
multiple of 16 at least 16 octaves above ``M``), then one bucket per 16 octaves,
``(2**(16i), 2**(16i+16)]``, up to ``2**1024``: ``overflow_words`` per sign,
89 for the default range (:mod:`.buckets` says why and what it costs).  The
word comes from the magnitude's exponent bits, on the branch that only values
outside the range take: the in-range path is unchanged.

Sum lanes: adding to one float in memory, record after record, waits each
time for the previous add (a float add and a store-to-load round trip: 3.3 ns
here), where an integer increment does not (0.34 ns: the CPU renames it).  The
owner therefore spreads float sums over four lanes picked by an integer lane
counter, which breaks the chain; readers add the lanes.  Gauge deltas do the
same.

Extremes are kept as order-preserving integers (:func:`.buckets.key_of`: the
double's bits with the sign folded, so that unsigned comparison is the order
of the values): the max word holds the largest key, the min word the largest
``~key``.  Zero, the value of untouched memory, is below every key a finite
value has, so it means "none yet", copies nobody used are never written
(their pages are never touched), and the owner's update is a load, a compare
and a rarely taken store; the shared copy uses an atomic unsigned max.  The count is not stored:
it is the sum of the bucket, zero and overflow words, so a reader's ``+Inf``
bucket always equals its count, even mid-update.

Gauge copy slot: ``epoch u64, lane u64, delta f64[4]``; the gauge's shared
slot (one line): ``epoch u64, value[2] f64, stamp u64``; ``stamp`` (the
time-stamp counter at the last ``set``/``add``) is written only for gauges
declared with ``multiprocess_mode="latest"``, so that a directory of
processes can tell whose write was the last.  ``set(v)`` writes ``value[(e + 1) & 1]`` and
moves the epoch to ``e + 1``; ``add(d)`` by a copy's owner first drops a
delta of an older epoch, then adds.  A reader takes ``value[e & 1]`` plus the
deltas of epoch ``e``: an add racing a set lands before it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._addr import (add_f64, add_u64, cas_u64, f64_bits, fence_release, load_f64, load_u64,
                     load_u64_acquire, max_u64, store_f64, store_u64, store_u64_release)
from .._inline import always_inline, never_inline
from ..clock import read_cycles
from .buckets import explicit_index, exponential_index, key_of
from .layout import INVALID_OFFSET, LAST_INVALID_OFFSET

LANES = 4
H_SUM = 0
H_LANE = 32
H_MIN = 40
H_MAX = 48
H_ZERO = 56
H_NAN = 64
H_POS_INF = 72
H_NEG_INF = 80
H_NEGATIVE = 88
H_BUCKETS = 96

G_EPOCH = 0
G_LANE = 8
G_DELTA = 16
G_SLOT = G_DELTA + 8 * LANES
G_VALUES = 8
G_STAMP = 24        # shared gauge slot: time-stamp counter of the last write ("latest" mode)

_ONE = np.uint64(1)
_TWO = np.uint64(2)


def decode_extremes(lo_word: np.ndarray, hi_word: np.ndarray):
    """(min, max) over copies' extreme words (0 = none); nan when none."""
    lo = lo_word[lo_word != 0]
    hi = hi_word[hi_word != 0]
    if not lo.size or not hi.size:
        return math.nan, math.nan
    return key_to_float(~lo.max()), key_to_float(hi.max())


def key_to_float(key) -> float:
    key = int(key)
    bits = key & ((1 << 63) - 1) if key >> 63 else ~key & ((1 << 64) - 1)
    return float(np.uint64(bits).view(np.float64))


# -- counters ------------------------------------------------------------------------------

@never_inline
@njit(cache=True)
def shared_add(addr, n):
    """The shared copy's increment: one locked add (kept out of line: a cold path)."""
    add_u64(addr, np.uint64(n))


# -- invalid records -------------------------------------------------------------------------

INVALID_LABEL, INVALID_NEGATIVE, INVALID_ARGUMENT = 1, 2, 3
VALUE_POSITION = 255                   # the position of "the value", not a label
METHODS = ("", "inc", "add", "set", "sub", "observe", "kernel method")


@never_inline
@njit(cache=True)
def note_invalid(base, metric, method, reason, position, value):
    """Count an invalid record of the set at ``base`` and keep what it was (cold path).

    The count is exact (one atomic add).  The last record's description is kept
    under a try-lock seqlock (see .layout): a writer that finds it being written
    by another thread leaves it, so no writer ever waits.
    """
    add_u64(base + INVALID_OFFSET, _ONE)
    ver_addr = base + LAST_INVALID_OFFSET
    version = load_u64(ver_addr)
    if version & _ONE:
        return
    if cas_u64(ver_addr, version, version + _ONE) != version:
        return
    # packed as integers (small and not negative), then one conversion: every numpy
    # conversion and operator is typed on its own when the function compiles
    what = reason | ((position & 0xFF) << 8) | (method << 16) | ((metric + 1) << 24)
    store_u64(ver_addr + 8, np.uint64(what))
    store_u64(ver_addr + 16, np.uint64(value))
    store_u64_release(ver_addr, version + _TWO)


@always_inline
@njit(cache=True)
def counter_add(addr, n, owned):
    """Add ``n`` to the counter word at ``addr``: the owner (its single writer) with a relaxed
    load, add and relaxed store (no lock prefix), the shared copy with one locked add."""
    if owned:
        store_u64(addr, load_u64(addr) + np.uint64(n))
    else:
        shared_add(addr, n)


# -- gauges ---------------------------------------------------------------------------------

@always_inline
@njit(cache=True)
def gauge_set(shared, value):
    """``set`` from any thread: the other value word, then the next epoch."""
    while True:
        epoch = load_u64_acquire(shared + G_EPOCH)
        store_f64(shared + G_VALUES + 8 * ((epoch + _ONE) & _ONE), np.float64(value))
        if cas_u64(shared + G_EPOCH, epoch, epoch + _ONE) == epoch:
            return


@always_inline
@njit(cache=True)
def gauge_add(shared, copy_slot, value, owned):
    """``add`` by a copy's owner (relaxed), or into the shared value (atomic)."""
    epoch = load_u64_acquire(shared + G_EPOCH)
    if owned:
        if load_u64(copy_slot + G_EPOCH) != epoch:
            for k in range(LANES):
                store_f64(copy_slot + G_DELTA + 8 * k, 0.0)
            store_u64_release(copy_slot + G_EPOCH, epoch)
        # the next of the four lanes (an integer counter: no float chain through memory)
        n = load_u64(copy_slot + G_LANE)
        store_u64(copy_slot + G_LANE, n + _ONE)
        lane = copy_slot + G_DELTA + (n & np.uint64(LANES - 1)) * np.uint64(8)
        store_f64(lane, load_f64(lane) + np.float64(value))
    else:
        _shared_gauge_add(shared, np.float64(value))


@always_inline
@njit(cache=True)
def gauge_stamp(shared):
    """Time-stamp a gauge's shared slot (``multiprocess_mode="latest"``)."""
    store_u64(shared + G_STAMP, read_cycles())


@never_inline
@njit(cache=True)
def _shared_gauge_add(shared, value):
    epoch = load_u64_acquire(shared + G_EPOCH)
    add_f64(shared + G_VALUES + 8 * (epoch & _ONE), value)


# -- histograms -----------------------------------------------------------------------------

@always_inline
@njit(cache=True)
def _observed(slot, v, key, bucket, owned):
    """A finite value in the histogram's domain: sum, extremes and its bucket word.

    Extremes: the largest ``key`` goes to the max word, the largest ``~key`` to the min
    word.  One function rather than three small ones: numba compiles each function on
    its own, so every helper adds to a kernel's first compile (the machine code, all of
    it inlined into the caller, is the same).
    """
    if owned:
        # sum: the next of the four lanes (an integer counter: no float chain through memory)
        n = load_u64(slot + H_LANE)
        store_u64(slot + H_LANE, n + _ONE)
        lane = slot + H_SUM + (n & np.uint64(LANES - 1)) * np.uint64(8)
        store_f64(lane, load_f64(lane) + v)
        if key > load_u64(slot + H_MAX):
            store_u64(slot + H_MAX, key)
        if ~key > load_u64(slot + H_MIN):
            store_u64(slot + H_MIN, ~key)
        store_u64(slot + bucket, load_u64(slot + bucket) + _ONE)
    else:
        add_f64(slot + H_SUM, v)
        max_u64(slot + H_MAX, key)
        max_u64(slot + H_MIN, ~key)
        shared_add(slot + bucket, 1)


@always_inline
@njit(cache=True)
def overflow_word(magnitude, max_exponent, near_top):
    """The overflow bucket (0-based) of a finite ``magnitude > 2**max_exponent``: its
    octave ``o`` (``2**o < magnitude <= 2**(o+1)``) below ``near_top``, else its group of
    16 octaves (see the module doc).  Branch-free: ``bits - 1`` borrows from the
    exponent exactly when the mantissa is zero (a power of two closes the octave
    below it)."""
    octave = np.int64((f64_bits(magnitude) - np.uint64(1)) >> np.uint64(52)) - 1023
    # conditional expressions rather than min() and max(): the same selects, without
    # compiling numba's overloads of the two builtins
    group = octave >> 4
    top_group = near_top >> 4
    return (((octave if octave < near_top else near_top) - max_exponent)
            + ((group if group > top_group else top_group) - top_group))


@never_inline
@njit(cache=True)
def observe_exponential_shared(slot, value, scale, lut, bounds, lo_index, n_buckets, negative,
                               low, high, over):
    observe_exponential(slot, value, scale, lut, bounds, lo_index, n_buckets, negative, low,
                        high, over, False)


# The owner's observe keeps numba's whole pipeline (``linked_only=False``, see
# .._compat.linked_only_pipeline): compiled as LLVM only, with its callees linked in
# unprepared, the kernels' machine code for an observe came out scheduled otherwise and
# measured 2% slower in benchmarks/metrics_overhead.py; so does the explicit one's.
@always_inline(linked_only=False)
@njit(cache=True)
def observe_exponential(slot, value, scale, lut, bounds, lo_index, n_buckets, negative, low,
                        high, over, owned):
    """Record ``value`` into an exponential histogram slot starting at address ``slot``.

    A recording loop calls it with ``owned=True`` (inlined) and calls
    :func:`observe_exponential_shared` for the shared copy (out of line).
    ``low`` and ``high`` are the scheme's range: ``2**min_exponent`` (the zero
    threshold) and ``2**max_exponent``.  The common case, a magnitude in
    ``(low, high]``, is tested first with two comparisons (NaN fails both);
    every other value takes the slow path below.  ``over`` is ``(max_exponent,
    near_top, overflow_words)`` of the scheme (see the module doc).
    """
    v = np.float64(value)
    magnitude = abs(v) if negative else v
    if low < magnitude <= high:
        index = exponential_index(magnitude, scale, lut, bounds) - lo_index
        if negative:
            index += n_buckets * np.int64(v > 0.0)
        _observed(slot, v, key_of(v), H_BUCKETS + 8 * index, owned)
        return
    if v != v:
        counter_add(slot + H_NAN, 1, owned)
    elif v == np.inf:
        counter_add(slot + H_POS_INF, 1, owned)
    elif v == -np.inf:
        counter_add(slot + H_NEG_INF, 1, owned)
    elif v < 0.0 and not negative:
        counter_add(slot + H_NEGATIVE, 1, owned)
    elif abs(v) <= low:
        _observed(slot, v, key_of(v), H_ZERO, owned)
    else:
        max_exponent, near_top, words = over
        word = (n_buckets * (2 if negative else 1) + (words if v < 0.0 else 0)
                + overflow_word(abs(v), max_exponent, near_top))
        _observed(slot, v, key_of(v), H_BUCKETS + 8 * word, owned)


@never_inline
@njit(cache=True)
def observe_explicit_shared(slot, value, k0, shift, last, m, lut, bounds):
    observe_explicit(slot, value, k0, shift, last, m, lut, bounds, False)


@always_inline(linked_only=False)
@njit(cache=True)
def observe_explicit(slot, value, k0, shift, last, m, lut, bounds, owned):
    """Record ``value`` into an explicit-boundary histogram slot at address ``slot``: the
    owner's code (``owned=True``, inlined); :func:`observe_explicit_shared` is the shared
    copy's (out of line)."""
    v = np.float64(value)
    if -np.inf < v < np.inf:
        index = explicit_index(v, k0, shift, last, m, lut, bounds)
        _observed(slot, v, key_of(v), H_BUCKETS + 8 * index, owned)
    elif v == np.inf:
        counter_add(slot + H_POS_INF, 1, owned)
    elif v == -np.inf:
        counter_add(slot + H_NEG_INF, 1, owned)
    else:
        counter_add(slot + H_NAN, 1, owned)


# -- whole-region access (readers and reset) ------------------------------------------------

@njit(nogil=True, cache=True)
def read_words(addr, n_words):
    """Copy ``n_words`` u64 words with relaxed atomic loads (never a torn word)."""
    out = np.empty(n_words, dtype=np.uint64)
    for i in range(n_words):
        out[i] = load_u64(addr + 8 * i)
    return out


@njit(nogil=True, cache=True)
def write_words(addr, words):
    """Store ``words`` with relaxed atomic stores."""
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
