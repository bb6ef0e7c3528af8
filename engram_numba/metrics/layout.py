"""Where every value of a metric set lives in its region.

Data area of a metric set (offsets in bytes, ``L`` = alignment, 64 or 128)::

    0        invalid_records   u64  records dropped in a kernel (out-of-range label,
                                    negative counter increment), shared, atomic
    8        invalid_baseline  u64  its value at the last reset()
    16, 24   unused by sets; a directory's archive file keeps its bookkeeping there
             (see .directory)
    32       last_invalid_ver  u64  seqlock of the two words below (odd while written;
                                    a writer that finds it odd leaves them alone)
    40       last_invalid      u64  the last invalid record: reason (bits 0-7), label
                                    position (8-15, 255: the value), method (16-23),
                                    metric index + 1 (24-47); see .._record.note_invalid
    48       last_invalid_value u64 the bad label or value (int64 bits)
    L        claim table       (u64 thread, u64 pid)[copies]: who owns each owned copy
                                    (see .._claim), padded to L
    ...      shared block      each gauge slot on a line of its own (epoch, value[2]),
                                    top-k tables (u64 version, then k entries)
    HOT      copies of the hot block, C bytes apart:
               copy 0              the shared copy: threads without a copy of their own
                                   record here with atomic read-modify-writes
               copies 1 .. N       owned copies: one recording thread each, plain stores
               copy N + 1          the baseline: what the copies held at the last reset()

A hot block holds, metric after metric, every counter slot (u64), gauge slot
(epoch u64, delta f64) and histogram slot (see :mod:`._record`), packed: a copy
has one writer, so nothing in it is shared with another writer.  Blocks are
cache-line aligned.  Slots of a labelled metric follow each other in row-major
order of the label indices.  A reader adds the copies up and subtracts the
baseline; nothing needs to be flushed.  Copies that no thread claimed are never
written, so their pages are never touched.

The layout is described in JSON (stored in file-backed regions) and hashed; a
kernel's numba type carries the hash, so code compiled for one layout is never
run on another.
"""

from __future__ import annotations

import json

import numpy as np

from .._cache import FINGERPRINT
from .._claim import ENTRY_BYTES
from .._region import check_alignment, description_hash, round_up
from .kinds import TOPK

LAYOUT_VERSION = 4
INVALID_OFFSET = 0
INVALID_BASELINE_OFFSET = 8
LAST_INVALID_OFFSET = 32            # version, what, value (see the module docstring)
MAX_SHARDS = 256
DEFAULT_SHARDS = 16


def check_shards(shards) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be an integer in [1, {MAX_SHARDS}], got {shards!r}")
    return shards


class MetricLayout:
    """Placement of one declared metric: its shared slots and its part of a hot block."""

    __slots__ = ("attr", "spec", "shared_offset", "shared_stride", "block_offset", "slot_bytes")

    def __init__(self, attr, spec, shared_offset, shared_stride, block_offset, slot_bytes):
        self.attr, self.spec = attr, spec
        self.shared_offset, self.shared_stride = shared_offset, shared_stride
        self.block_offset, self.slot_bytes = block_offset, slot_bytes

    @property
    def block_bytes(self) -> int:
        return self.slot_bytes * self.spec.slots


class SetLayout:
    """Placement of every metric of a set, its JSON description and its hash."""

    def __init__(self, set_name: str, specs: dict, alignment: int, shards: int):
        check_alignment(alignment)
        self.name = set_name
        self.alignment = alignment
        self.shards = check_shards(shards)
        self.claim_offset = alignment
        offset = alignment + round_up(ENTRY_BYTES * shards, alignment)
        block = 0
        metrics = []
        for attr, spec in specs.items():
            shared_stride = spec.shared_bytes(alignment)
            shared_offset = offset
            offset += shared_stride * (spec.slots if spec.shared_per_slot else 1)
            slot_bytes = spec.copy_bytes()
            metrics.append(MetricLayout(attr, spec, shared_offset, shared_stride, block,
                                        slot_bytes))
            block += slot_bytes * spec.slots
        self.hot_offset = round_up(offset, alignment)
        self.copy_size = round_up(max(block, 8), alignment)
        self.n_copies = shards + 2                       # shared, owned..., baseline
        self.baseline = shards + 1
        self.size = self.hot_offset + self.copy_size * self.n_copies
        self.metrics = {m.attr: m for m in metrics}
        self.metric_index = {m.attr: i for i, m in enumerate(metrics)}
        self.tables = [m for m in metrics if m.spec.kind is TOPK]
        self.description = json.dumps({
            "format": "engram-numba.metric-set",
            "layout_version": LAYOUT_VERSION,
            "name": set_name,
            "alignment": alignment,
            "shards": shards,
            "size": self.size,
            "hot_offset": self.hot_offset,
            "copy_size": self.copy_size,
            "metrics": [dict(m.spec.describe(), attr=m.attr, shared_offset=m.shared_offset,
                             block_offset=m.block_offset, slot_bytes=m.slot_bytes)
                        for m in metrics],
        }, sort_keys=True, separators=(",", ":"))
        self.hash = description_hash(self.description).hex()
        self.type_key = f"{self.hash[:16]}.{FINGERPRINT}"

    @property
    def n_words(self) -> int:
        return self.size // 8

    @property
    def bytes_per_copy(self) -> int:
        return self.copy_size

    def copy_offset(self, copy: int) -> int:
        return self.hot_offset + copy * self.copy_size

    def copies(self, words: np.ndarray) -> np.ndarray:
        """The hot-block words of every copy: shape (copies + 2, copy words)."""
        first = self.hot_offset // 8
        return words[first:first + self.n_copies * self.copy_size // 8].reshape(
            self.n_copies, self.copy_size // 8)
