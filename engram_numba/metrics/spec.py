"""Metric declarations: what a metric is called, what it means, how it is labelled.

A declaration is a class attribute of a :class:`~engram_numba.MetricSet`;
nothing is allocated until the set is instantiated.  Labels have a fixed set of
values known at declaration time (an ``IntEnum`` or a list of strings), so every
labelled value gets its own preallocated slot and recording never looks up a
name or allocates.
"""

from __future__ import annotations

import enum
import math
import re

import numpy as np

from .._values import snake_case
from .kinds import COUNTER, GAUGE, HISTOGRAM, TOPK, kind_named

from .buckets import (BucketScheme, ExplicitBuckets, ExponentialBuckets,
                      scheme_from_description)

__all__ = ["Counter", "Gauge", "Histogram", "TopK", "LabelDim"]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {"le", "quantile"}
MAX_SLOTS = 1 << 16
MAX_LABEL_DIMS = 4


def check_text(value: str, where: str) -> str:
    """``value`` if it is valid Unicode text (encodable as UTF-8: no lone surrogate such as
    ``"\\ud800"``, which no exposition format can carry), else ValueError."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where}: {value!r} is not valid text ({exc.reason} at position "
                         f"{exc.start}); give text that encodes as UTF-8") from None
    return value


class LabelDim:
    """One label: its name, its values, and the IntEnum they come from (if any)."""

    __slots__ = ("name", "values", "enum")

    def __init__(self, name: str, values, enum_cls=None):
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError(f"invalid label name {name!r}")
        if name in _RESERVED_LABELS:
            raise ValueError(f"label name {name!r} is reserved by the Prometheus format")
        values = tuple(values)
        if not values:
            raise ValueError(f"label {name!r} needs at least one value")
        if not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"label {name!r}: values must be non-empty strings, got {values!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"label {name!r}: duplicate values in {values!r}")
        for v in values:
            check_text(v, f"label {name!r}")
        self.name, self.values, self.enum = name, values, enum_cls

    @classmethod
    def from_enum(cls, name: str, enum_cls) -> "LabelDim":
        members = list(enum_cls)
        if sorted(int(m) for m in members) != list(range(len(members))):
            raise ValueError(f"{enum_cls.__name__}: label enums need the values 0..n-1, "
                             f"got {[int(m) for m in members]}")
        members.sort(key=int)
        return cls(name, [m.name.lower() for m in members], enum_cls)

    def index(self, label) -> int:
        """Slot index of a label given as enum member, integer index or value string."""
        if isinstance(label, enum.Enum):
            if self.enum is None:
                raise ValueError(f"label {self.name!r} takes an index or one of "
                                 f"{list(self.values)}, not an enum member ({label!r}); declare "
                                 f"the label with the IntEnum to record with its members")
            if not isinstance(label, self.enum):
                raise ValueError(f"label {self.name!r} takes {self.enum.__name__} members, "
                                 f"got {label!r}")
            return int(label)
        if isinstance(label, str):
            try:
                return self.values.index(label)
            except ValueError:
                raise ValueError(f"label {self.name!r} has no value {label!r}; "
                                 f"values: {list(self.values)}") from None
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
            raise ValueError(f"label {self.name!r} takes an index, an enum member or a value string, "
                             f"got {label!r}")
        i = int(label.__index__())
        if not 0 <= i < len(self.values):
            raise ValueError(f"label {self.name!r} index {i} is out of range [0, {len(self.values)})")
        return i

    def describe(self) -> dict:
        return {"name": self.name, "values": list(self.values)}

    def __repr__(self) -> str:
        src = f" from {self.enum.__name__}" if self.enum is not None else ""
        return f"LabelDim({self.name!r}, {list(self.values)}{src})"


def _label_dims(labels) -> tuple:
    if labels is None:
        return ()
    if isinstance(labels, type) and issubclass(labels, enum.IntEnum):
        return (LabelDim.from_enum(snake_case(labels.__name__), labels),)
    items = labels.items() if isinstance(labels, dict) else labels
    dims = []
    try:
        for name, values in items:
            if isinstance(values, type) and issubclass(values, enum.IntEnum):
                dims.append(LabelDim.from_enum(name, values))
            elif isinstance(values, str):
                raise ValueError(f"label {name!r}: give a list of values, not the string {values!r}")
            else:
                dims.append(LabelDim(name, values))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and "label" in str(exc):
            raise
        raise ValueError("labels must be an IntEnum class, a dict {name: IntEnum or list of "
                         f"strings}}, or (name, values) pairs; got {labels!r}") from None
    if len({d.name for d in dims}) != len(dims):
        raise ValueError(f"duplicate label names in {labels!r}")
    if len(dims) > MAX_LABEL_DIMS:
        raise ValueError(f"at most {MAX_LABEL_DIMS} labels per metric, got {len(dims)}")
    return tuple(dims)


_UNIT = re.compile(r"^[a-z][a-z0-9_]*[a-z0-9]$|^[a-z]$")


def with_unit(name: str, unit: str) -> str:
    """``name`` with the unit as its last word (before a counter's ``_total``), as the
    Prometheus naming rule asks: ``request_latency`` + seconds -> ``request_latency_seconds``."""
    if not unit:
        return name
    total = name.endswith("_total")
    base = name[:-len("_total")] if total else name
    if not base.endswith("_" + unit) and base != unit:
        base = f"{base}_{unit}"
    return base + ("_total" if total else "")


class MetricSpec:
    """Base of the declarations; a descriptor returning the bound handle on instances.

    A kind is an object: each subclass says how many bytes a slot takes in a
    copy of the hot block and in the shared block, and how to read its values
    back from a region's words (the copies added up, the baseline subtracted).
    """

    kind = None                 # a Kind (see .kinds)
    shared_per_slot = True      # shared_bytes() is per label combination (else per metric)

    def __init__(self, name: str, help: str = "", labels=None, unit: str = ""):
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if not isinstance(help, str):
            raise ValueError(f"help must be a string, got {help!r}")
        check_text(help, f"{name}: help")
        if not isinstance(unit, str) or (unit and not _UNIT.match(unit)):
            raise ValueError(f"{name}: unit must be a word such as 'seconds' or 'bytes' "
                             f"([a-z][a-z0-9_]*, base units as Prometheus names them), "
                             f"got {unit!r}")
        self.unit = unit
        self.name = with_unit(name, unit)
        self.help = help
        self.labels = _label_dims(labels)
        slots = math.prod(len(d.values) for d in self.labels)
        if slots > MAX_SLOTS:
            raise ValueError(f"{name}: {slots} label combinations; at most {MAX_SLOTS}")
        self.slots = slots
        self.attr = None

    @property
    def label_names(self) -> tuple:
        return tuple(d.name for d in self.labels)

    def __set_name__(self, owner, attr):
        self.attr = attr

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj._handle(self.attr)

    def copy_bytes(self) -> int:
        """Bytes of one slot in a copy of the hot block (0: not in the hot block)."""
        return 0

    def shared_bytes(self, alignment: int) -> int:
        """Bytes of one slot (or of the metric) in the shared block."""
        return 0

    def read(self, m, words: np.ndarray, copies: np.ndarray):
        """This metric's snapshot from a region's words and its copies (see .layout)."""
        raise NotImplementedError

    def describe(self) -> dict:
        d = {"kind": self.kind.name, "name": self.name, "help": self.help,
             "labels": [d.describe() for d in self.labels]}
        if self.unit:
            d["unit"] = self.unit           # only when given: older layouts keep their hash
        return d

    def __repr__(self) -> str:
        labels = f", labels={list(self.label_names)}" if self.labels else ""
        return f"{type(self).__name__}({self.name!r}{labels})"


def since_reset(total: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Counts since the last reset; 0 where a reset raced the read (never a wrap)."""
    return np.where(total >= baseline, total - baseline, np.uint64(0))


def _block(m, copies, words_per_slot):
    """The metric's words in every copy: shape (copies, slots, words per slot)."""
    first = m.block_offset // 8
    part = copies[:, first:first + m.spec.slots * words_per_slot]
    return part.reshape(copies.shape[0], m.spec.slots, words_per_slot)


class Counter(MetricSpec):
    """A monotonic u64 count; recorded with ``inc(*labels)`` / ``add(n, *labels)``.

    Exported as ``<name>_total`` (a trailing ``_total`` in ``name`` is not doubled).
    """

    kind = COUNTER

    def __init__(self, name: str, help: str = "", labels=None, *, unit: str = ""):
        super().__init__(name, help, labels, unit)
        name = self.name
        self.family = name[:-len("_total")] if name.endswith("_total") else name
        if not self.family:
            raise ValueError(f"invalid counter name {name!r}")
        self.name = self.family + "_total"

    def copy_bytes(self) -> int:
        return 8

    def read(self, m, words, copies):
        from .snapshot import CounterSnapshot
        block = _block(m, copies, 1)[:, :, 0]
        values = since_reset(block[:-1].sum(axis=0, dtype=np.uint64), block[-1])
        return CounterSnapshot(self, [int(v) for v in values.tolist()])


GAUGE_MODES = ("pid", "sum", "min", "max", "latest")
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

    def copy_bytes(self) -> int:
        from ._record import G_SLOT
        return G_SLOT                               # epoch, lane, delta[4]

    def shared_bytes(self, alignment: int) -> int:
        return alignment                            # epoch, value[2]: a line each

    def read(self, m, words, copies):
        from . import _record as R
        from .snapshot import GaugeSnapshot
        block = _block(m, copies, R.G_SLOT // 8)[1:-1]     # the owned copies
        values = []
        for k in range(self.slots):
            base = (m.shared_offset + k * m.shared_stride) // 8
            epoch = words[base]
            value = words[base + 1 + int(epoch & np.uint64(1))].view(np.float64)
            mine = block[:, k, R.G_EPOCH // 8] == epoch
            lanes = block[:, k, R.G_DELTA // 8:R.G_SLOT // 8][mine]
            values.append(float(value + lanes.view(np.float64).sum()))
        return GaugeSnapshot(self, values)


class Histogram(MetricSpec):
    """A distribution; recorded with ``observe(value, *labels)``.

    Exponential scheme (default): ``scale`` in [0, 8] (``2**scale`` buckets per
    power of two) over ``range=(lowest, highest)``, widened outward to powers
    of two.  Magnitudes at or below the lowest power go to the zero bucket,
    finite values above the highest to overflow buckets (an octave each, then
    16 octaves each: exact, coarser).  Negative values get mirrored buckets
    only with ``negative=True``; otherwise they are out of the histogram's
    domain and counted apart, like NaN and +-inf.  ``classic_scale`` (0 ..
    ``scale``) is the resolution of the classic ``le`` buckets of the text
    formats; by default the finest that keeps at most 40 of them across the
    range (:data:`~.buckets.CLASSIC_BUCKETS`).  Native histograms and OTLP
    keep ``scale``.

    Explicit scheme: ``bounds=[b0, b1, ...]`` (Prometheus ``le`` upper bounds).
    The scheme is an object (:class:`ExponentialBuckets`,
    :class:`ExplicitBuckets`) in ``histogram.scheme``.
    """

    kind = HISTOGRAM
    _RESERVED_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")

    def __init__(self, name: str, help: str = "", labels=None, *, scale: int = 3,
                 range=(2.0 ** -20, 2.0 ** 20), negative: bool = False, bounds=None,
                 scheme=None, unit: str = "", classic_scale: int | None = None):
        super().__init__(name, help, labels, unit)
        if name.endswith(self._RESERVED_SUFFIXES):
            raise ValueError(f"histogram name {name!r} must not end with one of {self._RESERVED_SUFFIXES}")
        if classic_scale is not None and (scheme is not None or bounds is not None):
            raise ValueError(f"{name}: classic_scale is for exponential histograms declared "
                             f"with scale and range (with scheme=, give it to "
                             f"ExponentialBuckets(..., classic_scale=...))")
        if scheme is not None:
            if not isinstance(scheme, BucketScheme):
                raise ValueError(f"scheme must be ExponentialBuckets or ExplicitBuckets, "
                                 f"got {scheme!r}")
            self.scheme = scheme
        elif bounds is not None:
            self.scheme = ExplicitBuckets(bounds)
        else:
            try:
                self.scheme = ExponentialBuckets(scale, range, negative, classic_scale)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if self.scheme.total_buckets > 1 << 16:
                raise ValueError(f"{name}: {self.scheme.total_buckets} buckets; narrow the range "
                                 f"or lower the scale")

    # the scheme's figures, for readers that predate the scheme objects
    mode = property(lambda self: self.scheme.kind)
    scale = property(lambda self: self.scheme.scale)
    negative = property(lambda self: self.scheme.negative)
    n_buckets = property(lambda self: self.scheme.n_buckets)
    total_buckets = property(lambda self: self.scheme.total_buckets)
    zero_threshold = property(lambda self: self.scheme.zero_threshold)
    bounds = property(lambda self: getattr(self.scheme, "bounds", None))
    lo_index = property(lambda self: getattr(self.scheme, "lo_index", 0))
    min_exponent = property(lambda self: getattr(self.scheme, "min_exponent", None))
    max_exponent = property(lambda self: getattr(self.scheme, "max_exponent", None))
    classic_scale = property(lambda self: getattr(self.scheme, "classic_scale", None))

    def copy_bytes(self) -> int:
        from ._record import H_BUCKETS
        return H_BUCKETS + 8 * self.scheme.count_words

    def read(self, m, words, copies):
        from . import _record as R
        from .snapshot import HistogramData, HistogramSnapshot
        per = self.copy_bytes() // 8
        block = _block(m, copies, per)
        live, base = block[:-1], block[-1]
        counts = since_reset(live.sum(axis=0, dtype=np.uint64), base)     # (slots, words)
        lanes = slice(R.H_SUM // 8, R.H_SUM // 8 + R.LANES)
        with np.errstate(over="ignore", invalid="ignore"):   # a sum may overflow to inf
            sums = live[:, :, lanes].view(np.float64).sum(axis=(0, 2)) \
                - base[:, lanes].view(np.float64).sum(axis=1)
        data = []
        for k in range(self.slots):
            slot = counts[k].copy()
            slot[R.H_SUM // 8] = np.float64(sums[k]).view(np.uint64)
            lo, hi = R.decode_extremes(live[:, k, R.H_MIN // 8], live[:, k, R.H_MAX // 8])
            slot[R.H_MIN // 8] = np.float64(lo).view(np.uint64)
            slot[R.H_MAX // 8] = np.float64(hi).view(np.uint64)
            data.append(HistogramData(self, slot))
        return HistogramSnapshot(self, data)

    def describe(self) -> dict:
        d = super().describe()
        d["histogram"] = self.scheme.describe()
        return d

    @classmethod
    def from_description(cls, d: dict) -> "Histogram":
        labels = [(x["name"], x["values"]) for x in d["labels"]]
        return cls(d["name"], d["help"], labels, scheme=scheme_from_description(d["histogram"]),
                   unit=d.get("unit", ""))


class TopK(MetricSpec):
    """The ``k`` most frequent keys of a stream and their counts (bounded cardinality).

    Its label values are not fixed: each of the ``k`` slots holds one key (one
    u64 per label, exported as decimal strings) and its count.  Maintained from
    Python (e.g. by a trace collector hook) with :meth:`set`; kernels cannot
    write it.  Exported as a counter family with one sample per occupied slot.
    """

    kind = TOPK
    shared_per_slot = False

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

    def shared_bytes(self, alignment: int) -> int:
        from .._region import round_up
        return round_up(8 + 8 * self.k * self.entry_words, alignment)

    def read(self, m, words, copies):
        from .snapshot import TopKSnapshot
        base = m.shared_offset // 8
        return TopKSnapshot(self, words[base:base + 1 + self.k * self.entry_words])

    def describe(self) -> dict:
        d = super().describe()
        d["topk"] = {"key_labels": list(self.key_labels), "k": self.k}
        return d


_CLASSES = {COUNTER: Counter, GAUGE: Gauge, HISTOGRAM: Histogram, TOPK: TopK}


def spec_from_description(d: dict) -> MetricSpec:
    """Rebuild a declaration from a region's layout description (labels become strings)."""
    cls = _CLASSES[kind_named(d.get("kind"))]
    if cls is Histogram:
        return Histogram.from_description(d)
    if cls is TopK:
        return TopK(d["name"], d["help"], d["topk"]["key_labels"], d["topk"]["k"])
    labels = [(x["name"], x["values"]) for x in d["labels"]]
    if cls is Gauge:
        return Gauge(d["name"], d["help"], labels, unit=d.get("unit", ""),
                     multiprocess_mode=d.get("multiprocess_mode", "pid"))
    return cls(d["name"], d["help"], labels, unit=d.get("unit", ""))
