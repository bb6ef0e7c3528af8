"""Where every value of a metric set lives in its region.

Data area of a metric set (offsets in bytes, ``L`` = alignment, 64 or 128)::

    0        invalid_records  u64  records dropped for an out-of-range label
                                   (or a negative counter increment) in a kernel
    L        shard owners     (u64 thread, u64 pid)[shards], only when the set has
                                   shards > 1: who claimed each shard (see .._claim)
    ...      first metric ...
             counter slot     u64  one per label combination, each on its own line
             gauge slot       f64  one per label combination, each on its own line
             histogram slot   128 B header + u64 buckets, padded to a line
                              (header layout in :mod:`._record`)
             top-k table      u64 version (odd while being rewritten), then k
                              entries of (one u64 per key label, u64 count)

Slots of a labelled metric follow each other in row-major order of the label
indices.  A set declared with ``shards=N`` keeps N copies of every counter and
histogram (shard-major: shard s, slot k at ``offset + (s * slots + k) * stride``)
so that threads recording at once write different cache lines; readers add the
shards up.  The layout is described in JSON (stored in file-backed regions) and
hashed; a kernel's numba type carries the hash, so code compiled for one layout
is never run on another.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from .._cache import FINGERPRINT
from .._claim import ENTRY_BYTES
from .._region import check_alignment, description_hash, round_up
from . import _record as R
from .spec import Histogram, TopK

LAYOUT_VERSION = 2
INVALID_OFFSET = 0
_POS_INF_BITS = struct.unpack("<Q", struct.pack("<d", float("inf")))[0]
_NEG_INF_BITS = struct.unpack("<Q", struct.pack("<d", float("-inf")))[0]


MAX_SHARDS = 64
SHARDED_KINDS = ("counter", "histogram")


def check_shards(shards) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be an integer in [1, {MAX_SHARDS}], got {shards!r}")
    return shards


class MetricLayout:
    """Placement of one declared metric."""

    __slots__ = ("attr", "spec", "offset", "stride", "shards")

    def __init__(self, attr, spec, offset, stride, shards=1):
        self.attr, self.spec, self.offset, self.stride, self.shards = attr, spec, offset, stride, shards

    @property
    def size(self) -> int:
        return self.stride * self.spec.slots * self.shards

    def slot_offset(self, shard: int, slot: int) -> int:
        return self.offset + (shard * self.spec.slots + slot) * self.stride


class SetLayout:
    """Placement of every metric of a set, its JSON description and its hash."""

    def __init__(self, set_name: str, specs: dict, alignment: int, shards: int = 1):
        check_alignment(alignment)
        self.name = set_name
        self.alignment = alignment
        self.shards = check_shards(shards)
        offset = alignment  # line 0: invalid_records
        self.claim_offset = offset
        if shards > 1:
            offset += round_up(ENTRY_BYTES * shards, alignment)
        metrics = []
        for attr, spec in specs.items():
            if isinstance(spec, Histogram):
                stride = round_up(R.H_BUCKETS + 8 * spec.total_buckets, alignment)
            elif isinstance(spec, TopK):
                stride = round_up(8 + 8 * spec.k * spec.entry_words, alignment)
            else:
                stride = alignment
            n = shards if spec.kind in SHARDED_KINDS else 1
            metrics.append(MetricLayout(attr, spec, offset, stride, n))
            offset += stride * spec.slots * n
        self.metrics = {m.attr: m for m in metrics}
        self.tables = [m for m in metrics if isinstance(m.spec, TopK)]
        self.size = offset
        self.description = json.dumps({
            "format": "engram-numba.metric-set",
            "layout_version": LAYOUT_VERSION,
            "name": set_name,
            "alignment": alignment,
            "shards": shards,
            "size": self.size,
            "metrics": [dict(m.spec.describe(), attr=m.attr, offset=m.offset, stride=m.stride,
                             shards=m.shards) for m in metrics],
        }, sort_keys=True, separators=(",", ":"))
        self.hash = description_hash(self.description).hex()
        self.type_key = f"{self.hash[:16]}.{FINGERPRINT}"

    @property
    def n_words(self) -> int:
        return self.size // 8

    def initial_words(self) -> np.ndarray:
        """The region's contents when empty: zeros, histogram min=+inf and max=-inf."""
        words = np.zeros(self.n_words, dtype=np.uint64)
        for m in self.metrics.values():
            if isinstance(m.spec, Histogram):
                for slot in range(m.spec.slots * m.shards):
                    base = (m.offset + slot * m.stride) // 8
                    words[base + R.H_MIN // 8] = _POS_INF_BITS
                    words[base + R.H_MAX // 8] = _NEG_INF_BITS
        return words
