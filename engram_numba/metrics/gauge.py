"""Gauges: a float64 value per label combination that goes up and down.

Everything a gauge is, in one place: its declaration (:class:`Gauge`: bytes
per slot, its directory mode, reading its words, reset), its snapshot
(:class:`GaugeSnapshot`) and its Python handle (:class:`_BoundGauge`).  Its
kernel handle (:class:`GaugeHandleType`: the recording bodies of ``set``,
``add`` and ``sub`` around :func:`._record.gauge_set` / :func:`._record.gauge_add`)
is generated into kernels by :mod:`._njit`; :meth:`Gauge.combine` and
:meth:`Gauge.fold` say how a directory of files combines it (its
``multiprocess_mode``).
"""

from __future__ import annotations

import math

import numpy as np

from .._values import as_number
from . import _njit
from . import _record as R
from ._njit import COPY, INVALID, HandleType, Record, kernel_kind
from .handle import _BoundMetric, keyed
from .kinds import GAUGE
from .snapshot import LabelledSnapshot, labelled_dict
from .spec import MetricSpec, block_words

__all__ = ["Gauge", "GaugeSnapshot", "GAUGE_MODES"]


_SET = INVALID + """    R.gauge_set(h.base + h.shared + h.sstride * slot, value)
    if STAMP:
        R.gauge_stamp(h.base + h.shared + h.sstride * slot)
    return True
"""
_ADD = INVALID + f"""    {COPY}
    R.gauge_add(h.base + h.shared + h.sstride * slot,
                h.base + h.hot + copy * h.copy + h.block + G_SLOT * slot, SIGN * value,
                copy > 0)
    if STAMP:
        R.gauge_stamp(h.base + h.shared + h.sstride * slot)
    return True
"""


def _constants(sign=None):
    def constants(h, t) -> dict:
        stamp = {"STAMP": h.extra == ("latest",)}           # records time-stamp the slot
        return stamp if sign is None else dict(stamp, SIGN=sign, G_SLOT=R.G_SLOT)
    return constants


@kernel_kind
class GaugeHandleType(HandleType):
    """A gauge in a kernel: ``set``, ``add``, ``sub`` (value first, then labels)."""

    kind = GAUGE
    methods = {"set": Record(_SET, "value", constants=_constants()),
               "add": Record(_ADD, "value", constants=_constants(1.0)),
               "sub": Record(_ADD, "value", constants=_constants(-1.0))}
    amount_hint = "the value comes first: {m}.{method}(value, ...), or " \
                  "{m}.labels(...).{method}(value)"

    @classmethod
    def extra_of(cls, spec) -> tuple:
        return ("latest",) if spec.multiprocess_mode == "latest" else ()


class GaugeSnapshot(LabelledSnapshot):
    """Values per label combination (floats)."""

    kind = GAUGE

    def to_dict(self) -> dict:
        return labelled_dict(self, lambda v: None if math.isnan(v) else v)


class _BoundGauge(_BoundMetric):
    def _value(self, value) -> float:
        return value if type(value) is float else as_number(value, f"{self.spec.name}: value")

    def set(self, value, *labels) -> bool:
        v = self._value(value)
        slot = self._slot(labels)
        base = self._owner._address()
        if base is None:
            return False
        shared = base + self._m.shared_offset + slot * self._m.shared_stride
        _njit.py_gauge_set(shared, v)
        if self.spec.multiprocess_mode == "latest":
            _njit.py_gauge_stamp(shared)
        return True

    def add(self, value, *labels) -> bool:
        v = self._value(value)
        addr, owned = self._copy_address(labels)
        if addr is None:
            return False
        slot = self._slot(labels)
        shared = self._owner._base + self._m.shared_offset + slot * self._m.shared_stride
        _njit.py_gauge_add(shared, addr, v, owned)
        if self.spec.multiprocess_mode == "latest":
            _njit.py_gauge_stamp(shared)
        return True

    def sub(self, value, *labels) -> bool:
        return self.add(-self._value(value), *labels)

    def value(self, *labels) -> float:
        return self._read().get(*labels)

    def values(self) -> dict:
        return keyed(self.spec, self._read().items())


GAUGE_MODES = ("pid", "sum", "min", "max", "latest")
_ACROSS = {"sum": np.sum, "min": np.min, "max": np.max}                    # over processes
_PAIRWISE = {"sum": np.add, "min": np.minimum, "max": np.maximum}          # two readings
# prometheus_client's multiprocess_mode names; gauges of exited processes are always
# dropped here (their files are compacted), so "all" and "live..." mean the same
_GAUGE_MODE_ALIASES = {"all": "pid", "liveall": "pid", "livesum": "sum", "livemin": "min",
                       "livemax": "max", "mostrecent": "latest", "livemostrecent": "latest"}


class Gauge(MetricSpec):
    """A float64 value that goes up and down; ``set``, ``add``, ``sub``.

    ``multiprocess_mode`` says how a directory of per-process files
    (:mod:`.directory`) shows it: ``"pid"`` (default) one series per running
    process with a ``pid`` label; ``"sum"``, ``"min"``, ``"max"`` over the
    running processes; ``"latest"`` the value most recently set by any running
    process.  prometheus_client's names are accepted too (``"all"``,
    ``"liveall"`` -> ``"pid"``, ``"livesum"`` -> ``"sum"``, ``"mostrecent"`` ->
    ``"latest"``, ...); gauges of processes that exited are always dropped.
    """

    kind = GAUGE

    def __init__(self, name: str, help: str = "", labels=None, *, unit: str = "",
                 multiprocess_mode: str = "pid"):
        super().__init__(name, help, labels, unit)
        mode = _GAUGE_MODE_ALIASES.get(multiprocess_mode, multiprocess_mode)
        if mode not in GAUGE_MODES:
            raise ValueError(f"{name}: multiprocess_mode must be one of {list(GAUGE_MODES)} "
                             f"(or prometheus_client's {sorted(_GAUGE_MODE_ALIASES)}), got "
                             f"{multiprocess_mode!r}")
        if mode == "pid" and "pid" in self.label_names:
            raise ValueError(f"{name}: a label named 'pid' clashes with multiprocess_mode "
                             f"'pid'; rename the label or pick another mode")
        self.multiprocess_mode = mode

    def describe(self) -> dict:
        d = super().describe()
        if self.multiprocess_mode != "pid":
            d["multiprocess_mode"] = self.multiprocess_mode   # only when given: hashes stay
        return d

    handle = _BoundGauge
    per_file = "gauge"

    def net_words(self, m) -> dict:
        """A gauge is not a count: its copy words are cleared in a net (see :meth:`combine`)."""
        first = m.block_offset // 8
        return {"gauge": range(first, first + m.slot_bytes // 8 * self.slots)}

    def combine(self, m, rows, files):
        """A directory's value per slot from the running processes' ``rows`` (one per
        file of ``files``, the alive ones), by ``multiprocess_mode``: ``(values, stamps)``
        (stamps of the latest writes, ``"latest"`` only), or ``None`` for ``"pid"`` (one
        series per process)."""
        mode = self.multiprocess_mode
        if mode == "pid":
            return None
        if mode != "latest":
            return _ACROSS[mode](rows, axis=0), None
        stamps = np.array([[int(f.words[(m.shared_offset + k * m.shared_stride
                                         + R.G_STAMP) // 8]) for k in range(self.slots)]
                           for f in files], dtype=np.uint64)
        best = stamps.argmax(axis=0)
        slots = np.arange(self.slots)
        return rows[best, slots], stamps[best, slots]

    def fold(self, mine, theirs):
        """Two :meth:`combine` results ``(values, stamps)`` of one gauge as one."""
        if self.multiprocess_mode != "latest":
            return _PAIRWISE[self.multiprocess_mode](mine[0], theirs[0]), None
        newer = theirs[1] > mine[1]
        return np.where(newer, theirs[0], mine[0]), np.maximum(theirs[1], mine[1])

    @classmethod
    def from_description(cls, d: dict) -> "Gauge":
        return cls(d["name"], d["help"], cls.described_labels(d), unit=d.get("unit", ""),
                   multiprocess_mode=d.get("multiprocess_mode", "pid"))

    def copy_bytes(self) -> int:
        return R.G_SLOT                             # epoch, lane, delta[4]

    def shared_bytes(self, alignment: int) -> int:
        return alignment                            # epoch, value[2]: a line each

    def reset(self, owner, m, words) -> None:
        """A gauge resets to 0."""
        for k in range(self.slots):
            _njit.py_gauge_set(owner._base + m.shared_offset + k * m.shared_stride, 0.0)

    def read(self, m, words, copies):
        block = block_words(m, copies, R.G_SLOT // 8)[1:-1]     # the owned copies
        values = []
        for k in range(self.slots):
            base = (m.shared_offset + k * m.shared_stride) // 8
            epoch = words[base]
            value = words[base + 1 + int(epoch & np.uint64(1))].view(np.float64)
            mine = block[:, k, R.G_EPOCH // 8] == epoch
            lanes = block[:, k, R.G_DELTA // 8:R.G_SLOT // 8][mine]
            values.append(float(value + lanes.view(np.float64).sum()))
        return GaugeSnapshot(self, values)
