"""Top-k tables: the ``k`` most frequent keys of a stream and their counts.

Everything a top-k table is, in one place: its declaration (:class:`TopK`:
bytes, reading its words, reset), its snapshot (:class:`TopKSnapshot`) and its
Python handle (:class:`_BoundTopK`).  Kernels cannot write it; it is set from
Python (:func:`._record.write_table`), e.g. from a
Space-Saving summary (:class:`~engram_numba._topkeys.TopKeys`).
"""

from __future__ import annotations

import numpy as np

from .._region import round_up
from .._values import as_integer
from . import _record as R
from .handle import U64_MAX, _BoundMetric
from .families import Family
from .kinds import TOPK
from .spec import LabelDim, MetricSpec

__all__ = ["TopK", "TopKSnapshot"]


class TopKSnapshot:
    """The occupied entries of a top-k table: ``[(key tuple, count)]``, largest first."""

    kind = TOPK

    def __init__(self, spec, words: np.ndarray):
        self.spec = spec
        entries = []
        for i in range(spec.k):
            e = words[1 + i * spec.entry_words:1 + (i + 1) * spec.entry_words]
            if e[-1]:
                entries.append((tuple(int(x) for x in e[:-1]), int(e[-1])))
        entries.sort(key=lambda kv: -kv[1])
        self._entries = entries

    @property
    def name(self) -> str:
        return self.spec.name

    def items(self) -> list:
        return list(self._entries)

    def to_dict(self) -> dict:
        names = self.spec.key_labels
        return {"type": "topk", "help": self.spec.help, "labels": list(names),
                "samples": [{"labels": {n: str(v) for n, v in zip(names, key)}, "value": count}
                            for key, count in self._entries]}


class _BoundTopK(_BoundMetric):
    def set(self, entries) -> None:
        """Replace the table with ``[(key tuple, count), ...]`` (largest first, at most k).

        Keys are tuples of non-negative integers, one per key label.  One writer
        at a time (readers always see a whole table).
        """
        s = self.spec
        try:
            entries = list(entries)
        except TypeError:
            raise ValueError(f"{s.name}: entries must be a list of (key, count), "
                             f"got {entries!r}") from None
        if len(entries) > s.k:
            raise ValueError(f"{s.name}: at most {s.k} entries, got {len(entries)}")
        words = np.zeros(s.k * s.entry_words, dtype=np.uint64)
        for i, entry in enumerate(entries):
            try:
                key, count = entry
            except (TypeError, ValueError):
                raise ValueError(f"{s.name}: entries are (key, count) pairs, got {entry!r}") from None
            key = tuple(key) if isinstance(key, (tuple, list)) else (key,)
            if len(key) != len(s.key_labels):
                raise ValueError(f"{s.name}: keys have {len(s.key_labels)} part(s) "
                                 f"{list(s.key_labels)}, got {key!r}")
            for j, part in enumerate(key):
                words[i * s.entry_words + j] = as_integer(part, f"{s.name}: key part", 0, U64_MAX)
            words[i * s.entry_words + len(key)] = as_integer(count, f"{s.name}: count", 1, U64_MAX)
        base = self._owner._address()
        if base is not None:
            R.write_table(base + self._m.shared_offset, words)

    def items(self) -> list:
        """``[(key tuple, count), ...]`` as last set."""
        return self._read().items()


class TopK(MetricSpec):
    """The ``k`` most frequent keys of a stream and their counts (bounded cardinality).

    Its label values are not fixed: each of the ``k`` slots holds one key (one
    u64 per label, exported as decimal strings) and its count.  Maintained from
    Python (e.g. by a trace collector hook) with :meth:`set`; kernels cannot
    write it.  Exported as a counter family with one sample per occupied slot.
    """

    kind = TOPK
    shared_per_slot = False
    kernel_refusal = "a top-k table is maintained from Python, not in kernels"
    per_file = "table"

    def __init__(self, name: str, help: str = "", key_labels=("key",), k: int = 10):
        super().__init__(name, help, None)
        self.family = name[:-len("_total")] if name.endswith("_total") else name
        self.name = self.family + "_total"
        names = tuple(key_labels)
        for label in names:
            LabelDim(label, ["x"])  # validates the label name
        if not names or len(set(names)) != len(names):
            raise ValueError(f"{name}: key_labels must be distinct names, got {key_labels!r}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1024:
            raise ValueError(f"{name}: k must be an integer in [1, 1024], got {k!r}")
        self.key_labels = names
        self.k = k

    @property
    def label_names(self) -> tuple:
        return self.key_labels

    @property
    def entry_words(self) -> int:
        return len(self.key_labels) + 1

    handle = _BoundTopK

    @classmethod
    def from_description(cls, d: dict) -> "TopK":
        return cls(d["name"], d["help"], d["topk"]["key_labels"], d["topk"]["k"])

    def reset(self, owner, m, words) -> None:
        """An empty table."""
        R.write_table(owner._base + m.shared_offset,
                      np.zeros(self.k * self.entry_words, np.uint64))

    def shared_bytes(self, alignment: int) -> int:
        return round_up(8 + 8 * self.k * self.entry_words, alignment)

    def read(self, m, words, copies):
        base = m.shared_offset // 8
        return TopKSnapshot(self, words[base:base + 1 + self.k * self.entry_words])

    def families(self, snap, c_names, c_values, times) -> list:
        """A counter family whose label values are the keys (they change with the data)."""
        points = tuple((c_values + tuple(str(k) for k in key), count)
                       for key, count in snap.items())
        return [Family(self.name, self.kind.exported_as, self.help, c_names + self.key_labels,
                       points, "", self, fixed_labels=False, **times)]

    def describe(self) -> dict:
        d = super().describe()
        d["topk"] = {"key_labels": list(self.key_labels), "k": self.k}
        return d
