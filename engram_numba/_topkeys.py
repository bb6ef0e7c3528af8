"""Heavy hitters of a stream of event keys, in bounded memory.

:class:`TopKeys` - the most frequent keys of a stream (node pairs, episodes)
with the Space-Saving algorithm: ``capacity`` counters, every key whose true
count exceeds ``total / capacity`` is kept, and a reported count overestimates
the true one by at most that much.  Memory stays bounded however many distinct
keys the workload produces.  Collector hooks use it to keep top-k tables
(:class:`~engram_numba.metrics.topk.TopK`).  A data structure of its own: nothing
here knows of tracing or metrics (``engram_numba.tracing.health`` re-exports it).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TopKeys"]


class TopKeys:
    """Space-Saving heavy hitters over u64 key tuples."""

    def __init__(self, capacity: int = 1024):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.counts: dict = {}
        self.total = 0

    def update(self, keys: np.ndarray) -> None:
        """Add one occurrence per row of ``keys`` (shape (n,) or (n, parts), u64)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return
        if keys.ndim == 1:
            keys = keys[:, None]
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        self.total += int(counts.sum())
        table = self.counts
        for row, n in zip(map(tuple, uniq.tolist()), counts.tolist()):
            if row in table:
                table[row] += n
            elif len(table) < self.capacity:
                table[row] = n
            else:
                victim = min(table, key=table.__getitem__)
                table[row] = table.pop(victim) + n

    def top(self, k: int) -> list:
        """``[(key tuple, count)]`` of the ``k`` largest counts, largest first."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    @property
    def error_bound(self) -> float:
        return self.total / self.capacity
