"""Adding up readings of metric sets, word by word: what a directory of files shows.

A region's words hold each metric in several copies plus a baseline (see
:mod:`.layout`).  Its *net* is one copy that holds what a reader would report:

* counter slots and histogram count words (buckets, zero, overflow, excluded
  values): the copies added up, minus the baseline;
* histogram sums: the four float lanes added up, minus the baseline's, in lane 0;
* histogram extremes: the largest key of the copies (both extremes are kept as
  "largest key" words, see :mod:`._record`), so they combine by ``max``;
* gauge slots: zero (a gauge is not a count; :mod:`.directory` combines gauges
  by their declared mode, see :meth:`.gauge.Gauge.combine`).

Each kind says which of its words combine how (:meth:`.spec.MetricSpec.net_words`)
and whether files are read per metric (``per_file``: a gauge's values, a top-k
table).

Nets of regions of one layout add up the same way (integer words add, lane 0
adds as floats, extremes take the max), in one numpy pass over all of them: a
directory of N files costs N net readings and one reduction.  :func:`words_of`
turns a net back into a whole region's words, which
:class:`~.snapshot.MetricSetSnapshot` reads like any other.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._addr import f64_bits, load_f64, load_u64
from . import _record as R
from .layout import INVALID_BASELINE_OFFSET, INVALID_OFFSET

__all__ = ["WordPlan", "plan_of"]


class WordPlan:
    """Which words of a copy add as integers, as floats, or by max, for one layout."""

    def __init__(self, layout):
        self.layout = layout
        n = layout.copy_size // 8
        words = {"lane0": [], "lanes": [], "extremes": [], "gauge": []}
        for m in layout.metrics.values():
            for what, idx in m.spec.net_words(m).items():      # each kind says (see there)
                words[what].extend(idx)
        lane0, lanes, extremes, gauge = (words[k] for k in ("lane0", "lanes", "extremes",
                                                             "gauge"))
        self.words = n
        self.lane0 = np.array(lane0, dtype=np.intp)
        self.lanes = np.array(lanes, dtype=np.intp)
        self.lanes_by_slot = self.lanes.reshape(-1, R.LANES + 1)[:, :R.LANES] if lanes else \
            np.empty((0, R.LANES), dtype=np.intp)
        self.extremes = np.array(extremes, dtype=np.intp)
        self.gauge = np.array(gauge, dtype=np.intp)
        self.gauges = [m for m in layout.metrics.values() if m.spec.per_file == "gauge"]
        self.topk = [m for m in layout.metrics.values() if m.spec.per_file == "table"]
        # every gauge slot: its shared line's first word, its copy slot's first word
        shared, block = [], []
        for m in self.gauges:
            for k in range(m.spec.slots):
                shared.append((m.shared_offset + k * m.shared_stride) // 8)
                block.append(m.block_offset // 8 + k * (R.G_SLOT // 8))
        self.g_shared = np.array(shared, dtype=np.intp)
        self.g_block = np.array(block, dtype=np.intp)
        self.g_split = np.cumsum([m.spec.slots for m in self.gauges])[:-1]

    def nets(self, addresses) -> np.ndarray:
        """:meth:`net` of many regions of this layout at once (their data addresses):
        rows of an array.  One compiled pass over each region's copies (see
        :func:`_nets`): the numpy version cost 5 to 10 times more per file."""
        lay = self.layout
        addrs = np.asarray(addresses, dtype=np.uint64)
        out = np.empty((addrs.size, self.words), dtype=np.uint64)
        _nets(addrs, np.uint64(lay.hot_offset), lay.n_copies, self.words, self.lanes_by_slot,
              self.lanes, self.lane0, self.extremes, self.gauge, out)
        return out

    def invalid_records(self, addresses) -> int:
        """Invalid records of many regions (data addresses), added up."""
        return int(_invalid(np.asarray(addresses, dtype=np.uint64)))

    def tables(self, addresses) -> dict:
        """Top-k tables of many regions merged: ``{attr: [(key, count), ...]}``, counts
        added per key, largest first (each table read consistently, see
        :func:`._record.read_table`)."""
        out = {}
        addrs = np.asarray(addresses, dtype=np.uint64)
        for m in self.topk:
            ew, k = m.spec.entry_words, m.spec.k
            rows = _read_tables(addrs, np.uint64(m.shared_offset), k * ew).reshape(-1, ew)
            counts: dict = {}
            for row in rows[rows[:, -1] != 0].tolist():
                key = tuple(row[:-1])
                counts[key] = counts.get(key, 0) + row[-1]
            out[m.attr] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return out

    def gauge_values(self, addresses) -> dict:
        """Each gauge's values per region (data addresses): ``{attr: array (regions,
        slots)}``, as :meth:`.spec.Gauge.read` reads them: the shared value of the
        current epoch plus the owned copies' deltas of that epoch."""
        if not self.gauges:
            return {}
        lay = self.layout
        addrs = np.asarray(addresses, dtype=np.uint64)
        out = np.empty((addrs.size, self.g_shared.size), dtype=np.float64)
        _gauges(addrs, np.uint64(lay.hot_offset), lay.n_copies, self.words, self.g_shared,
                self.g_block, out)
        return {m.attr: part for m, part in zip(self.gauges, np.split(out, self.g_split, axis=1))}

    def combine(self, nets: np.ndarray) -> np.ndarray:
        """Nets (rows) added up: one net."""
        if nets.shape[0] == 1:
            return nets[0].copy()
        out = nets.sum(axis=0, dtype=np.uint64)
        if self.lane0.size:
            out[self.lane0] = nets[:, self.lane0].view(np.float64).sum(axis=0).view(np.uint64)
            out[self.extremes] = nets[:, self.extremes].max(axis=0)
        return out

    def words_of(self, net: np.ndarray, invalid: int, gauges: dict | None = None,
                 tables: dict | None = None) -> np.ndarray:
        """A region's words whose reading is ``net``: the net in the shared copy, a zero
        baseline; ``gauges`` maps a gauge's attribute to its value per slot, ``tables``
        a top-k table's attribute to its ``[(key, count)]`` entries."""
        lay = self.layout
        words = np.zeros(lay.n_words, dtype=np.uint64)
        first = lay.hot_offset // 8
        words[first:first + self.words] = net
        words[INVALID_OFFSET // 8] = np.uint64(invalid)
        words[INVALID_BASELINE_OFFSET // 8] = 0
        for attr, values in (gauges or {}).items():
            m = lay.metrics[attr]
            for k, v in enumerate(values):
                base = (m.shared_offset + k * m.shared_stride) // 8
                words[base] = 0                                  # epoch 0: value[0]
                words[base + 1] = np.float64(v).view(np.uint64)
        for attr, entries in (tables or {}).items():
            m = lay.metrics[attr]
            ew = m.spec.entry_words
            base = m.shared_offset // 8
            for i, (key, count) in enumerate(entries[:m.spec.k]):
                e = base + 1 + i * ew
                words[e:e + ew - 1] = np.array(key, dtype=np.uint64)
                words[e + ew - 1] = np.uint64(count)
        return words



@njit(nogil=True, cache=True)
def _nets(addrs, hot, n_copies, n, lanes_by_slot, lanes, lane0, extremes, gauge, out):
    """Net copies of regions at ``addrs``: the live copies summed in copy order (each
    copy read front to back), the baseline subtracted with a floor of zero, the float
    lanes summed as floats into lane 0, extremes by max, gauge words cleared."""
    live = n_copies - 1
    for f in range(addrs.size):
        first = addrs[f] + hot
        row = out[f]
        for w in range(n):
            row[w] = load_u64(first + np.uint64(8 * w))
        for c in range(1, live):
            copy = first + np.uint64(8 * c * n)
            for w in range(n):
                row[w] += load_u64(copy + np.uint64(8 * w))
        base = first + np.uint64(8 * live * n)
        for w in range(n):
            b = load_u64(base + np.uint64(8 * w))
            row[w] = row[w] - b if row[w] >= b else np.uint64(0)
        for i in range(lanes.size):
            row[lanes[i]] = 0
        for s in range(lanes_by_slot.shape[0]):
            total = 0.0
            for c in range(live):
                copy = first + np.uint64(8 * c * n)
                for j in range(lanes_by_slot.shape[1]):
                    total += load_f64(copy + np.uint64(8 * lanes_by_slot[s, j]))
            for j in range(lanes_by_slot.shape[1]):
                total -= load_f64(base + np.uint64(8 * lanes_by_slot[s, j]))
            row[lane0[s]] = f64_bits(total)
        for e in range(extremes.size):
            top = np.uint64(0)
            for c in range(live):
                v = load_u64(first + np.uint64(8 * (c * n + extremes[e])))
                if v > top:
                    top = v
            row[extremes[e]] = top
        for g in range(gauge.size):
            row[gauge[g]] = 0


@njit(nogil=True, cache=True)
def _invalid(addrs):
    total = 0
    for f in range(addrs.size):
        n = load_u64(addrs[f] + np.uint64(INVALID_OFFSET))
        b = load_u64(addrs[f] + np.uint64(INVALID_BASELINE_OFFSET))
        if n >= b:
            total += n - b
    return total


@njit(nogil=True, cache=True)
def _read_tables(addrs, offset, n_words):
    out = np.empty((addrs.size, n_words), dtype=np.uint64)
    for f in range(addrs.size):
        out[f] = R.read_table(addrs[f] + offset, n_words, 1000)
    return out


@njit(nogil=True, cache=True)
def _gauges(addrs, hot, n_copies, n, g_shared, g_block, out):
    """Gauge values of regions at ``addrs`` (see :meth:`WordPlan.gauge_values`)."""
    for f in range(addrs.size):
        data = addrs[f]
        first = data + hot
        for k in range(g_shared.size):
            shared = data + np.uint64(8 * g_shared[k])
            epoch = load_u64(shared)
            value = load_f64(shared + np.uint64(8 + 8 * (epoch & np.uint64(1))))
            for c in range(1, n_copies - 1):
                slot = first + np.uint64(8 * (c * n + g_block[k]))
                if load_u64(slot) == epoch:
                    for j in range(R.LANES):
                        value += load_f64(slot + np.uint64(R.G_DELTA + 8 * j))
            out[f, k] = value


_plans: dict = {}


def plan_of(layout) -> WordPlan:
    """The (cached) plan of a layout."""
    plan = _plans.get(layout.hash)           # the hash is the description's
    if plan is None:
        plan = _plans[layout.hash] = WordPlan(layout)
    return plan
