"""Adding up readings of metric sets, word by word: what a directory of files shows.

A region's words hold each metric in several copies plus a baseline (see
:mod:`.layout`).  Its *net* is one copy that holds what a reader would report:

* counter slots and histogram count words (buckets, zero, overflow, excluded
  values): the copies added up, minus the baseline;
* histogram sums: the four float lanes added up, minus the baseline's, in lane 0;
* histogram extremes: the largest key of the copies (both extremes are kept as
  "largest key" words, see :mod:`._record`), so they combine by ``max``;
* gauge slots: zero (a gauge is not a count; :mod:`.directory` combines gauges
  by their declared mode).

Nets of regions of one layout add up the same way (integer words add, lane 0
adds as floats, extremes take the max), in one numpy pass over all of them: a
directory of N files costs N net readings and one reduction.  :func:`words_of`
turns a net back into a whole region's words, which
:class:`~.snapshot.MetricSetSnapshot` reads like any other.
"""

from __future__ import annotations

import numpy as np

from . import _record as R
from .kinds import GAUGE, HISTOGRAM, TOPK
from .layout import INVALID_BASELINE_OFFSET, INVALID_OFFSET

__all__ = ["WordPlan", "plan_of"]

ARCHIVE_MARK_OFFSET = 16       # archives (see .directory): hash of the last file absorbed
ARCHIVE_FILES_OFFSET = 24      # archives: number of files absorbed


class WordPlan:
    """Which words of a copy add as integers, as floats, or by max, for one layout."""

    def __init__(self, layout):
        self.layout = layout
        n = layout.copy_size // 8
        lane0, lanes, extremes, gauge = [], [], [], []
        for m in layout.metrics.values():
            spec = m.spec
            first = m.block_offset // 8
            per = m.slot_bytes // 8
            if spec.kind is HISTOGRAM:
                for k in range(spec.slots):
                    s = first + k * per
                    lane0.append(s + R.H_SUM // 8)
                    lanes.extend(s + R.H_SUM // 8 + j for j in range(R.LANES))
                    lanes.append(s + R.H_LANE // 8)
                    extremes.extend((s + R.H_MIN // 8, s + R.H_MAX // 8))
            elif spec.kind is GAUGE:
                gauge.extend(range(first, first + per * spec.slots))
        self.words = n
        self.lane0 = np.array(lane0, dtype=np.intp)
        self.lanes = np.array(lanes, dtype=np.intp)
        self.lanes_by_slot = self.lanes.reshape(-1, R.LANES + 1)[:, :R.LANES] if lanes else \
            np.empty((0, R.LANES), dtype=np.intp)
        self.extremes = np.array(extremes, dtype=np.intp)
        self.gauge = np.array(gauge, dtype=np.intp)
        self.gauges = [m for m in layout.metrics.values() if m.spec.kind is GAUGE]
        self.tables = [m for m in layout.metrics.values() if m.spec.kind is TOPK]

    def net(self, words: np.ndarray) -> np.ndarray:
        """The net copy of a region's words (see the module docstring)."""
        copies = self.layout.copies(words)
        live, base = copies[:-1], copies[-1]
        total = live.sum(axis=0, dtype=np.uint64)
        out = np.where(total >= base, total - base, np.uint64(0))
        if self.lane0.size:
            by_slot = self.lanes_by_slot
            sums = live[:, by_slot].view(np.float64).sum(axis=(0, 2)) \
                - base[by_slot].view(np.float64).sum(axis=1)
            out[self.lanes] = 0
            out[self.lane0] = sums.view(np.uint64)
            out[self.extremes] = live[:, self.extremes].max(axis=0)
        out[self.gauge] = 0
        return out

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

    def invalid(self, words: np.ndarray) -> int:
        invalid = int(words[INVALID_OFFSET // 8])
        base = int(words[INVALID_BASELINE_OFFSET // 8])
        return invalid - base if invalid >= base else 0


_plans: dict = {}


def plan_of(layout) -> WordPlan:
    """The (cached) plan of a layout."""
    plan = _plans.get(layout.hash)
    if plan is None or plan.layout is not layout and plan.layout.description != layout.description:
        plan = _plans[layout.hash] = WordPlan(layout)
    return plan
