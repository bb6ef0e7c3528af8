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

from .buckets import check_bounds, check_scale

__all__ = ["Counter", "Gauge", "Histogram", "TopK", "LabelDim"]

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = {"le", "quantile"}
MAX_SLOTS = 1 << 16
MAX_LABEL_DIMS = 4


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


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


class MetricSpec:
    """Base of the declarations; a descriptor returning the bound handle on instances."""

    kind = ""

    def __init__(self, name: str, help: str = "", labels=None):
        if not isinstance(name, str) or not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if not isinstance(help, str):
            raise ValueError(f"help must be a string, got {help!r}")
        self.name = name
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

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "help": self.help,
                "labels": [d.describe() for d in self.labels]}

    def __repr__(self) -> str:
        labels = f", labels={list(self.label_names)}" if self.labels else ""
        return f"{type(self).__name__}({self.name!r}{labels})"


class Counter(MetricSpec):
    """A monotonic u64 count; recorded with ``inc(*labels)`` / ``add(n, *labels)``.

    Exported as ``<name>_total`` (a trailing ``_total`` in ``name`` is not doubled).
    """

    kind = "counter"

    def __init__(self, name: str, help: str = "", labels=None):
        super().__init__(name, help, labels)
        self.family = name[:-len("_total")] if name.endswith("_total") else name
        if not self.family:
            raise ValueError(f"invalid counter name {name!r}")
        self.name = self.family + "_total"


class Gauge(MetricSpec):
    """A float64 value that goes up and down; ``set``, ``add``, ``sub``."""

    kind = "gauge"


class Histogram(MetricSpec):
    """A distribution; recorded with ``observe(value, *labels)``.

    Exponential mode (default): ``scale`` in [0, 8] (``2**scale`` buckets per
    power of two) over ``range=(lowest, highest)``, widened outward to powers
    of two.  Magnitudes at or below the lowest power go to the zero bucket,
    finite values above the highest to the overflow slot.  Negative values get
    mirrored buckets only with ``negative=True``; otherwise they are out of
    the histogram's domain and counted apart, like NaN and +-inf.

    Explicit mode: ``bounds=[b0, b1, ...]`` (Prometheus ``le`` upper bounds).
    """

    kind = "histogram"
    _RESERVED_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")

    def __init__(self, name: str, help: str = "", labels=None, *, scale: int = 3,
                 range=(2.0 ** -20, 2.0 ** 20), negative: bool = False, bounds=None):
        super().__init__(name, help, labels)
        if name.endswith(self._RESERVED_SUFFIXES):
            raise ValueError(f"histogram name {name!r} must not end with one of {self._RESERVED_SUFFIXES}")
        if bounds is not None:
            self.mode = "explicit"
            self.bounds = check_bounds(bounds)
            self.n_buckets = len(self.bounds) + 1
            self.scale = self.min_exponent = self.max_exponent = None
            self.negative = True
            self.lo_index = 0
        else:
            self.mode = "exponential"
            self.scale = check_scale(scale)
            try:
                lowest, highest = (float(x) for x in range)
            except (TypeError, ValueError):
                raise ValueError(f"range must be (lowest, highest), got {range!r}") from None
            if not (0.0 < lowest < highest < math.inf):
                raise ValueError(f"range must satisfy 0 < lowest < highest < inf, got {range!r}")
            if lowest < 2.0 ** -1000 or highest > 2.0 ** 1000:
                raise ValueError("range must lie within [2**-1000, 2**1000]")
            self.min_exponent = math.frexp(lowest)[1] - 1          # 2**min <= lowest
            self.max_exponent = math.frexp(highest)[1] - (1 if math.frexp(highest)[0] == 0.5 else 0)
            self.negative = bool(negative)
            self.bounds = None
            self.lo_index = self.min_exponent << self.scale
            self.n_buckets = (self.max_exponent - self.min_exponent) << self.scale
            if self.n_buckets * (2 if self.negative else 1) > 1 << 16:
                raise ValueError(f"{name}: {self.n_buckets} buckets; narrow the range or lower the scale")

    @property
    def total_buckets(self) -> int:
        return self.n_buckets * (2 if self.mode == "exponential" and self.negative else 1)

    @property
    def zero_threshold(self) -> float:
        return math.ldexp(1.0, self.min_exponent) if self.mode == "exponential" else 0.0

    def describe(self) -> dict:
        d = super().describe()
        if self.mode == "explicit":
            d["histogram"] = {"mode": "explicit", "bounds": list(self.bounds)}
        else:
            d["histogram"] = {"mode": "exponential", "scale": self.scale,
                              "min_exponent": self.min_exponent,
                              "max_exponent": self.max_exponent, "negative": self.negative}
        return d

    @classmethod
    def from_description(cls, d: dict) -> "Histogram":
        h = d["histogram"]
        labels = [(x["name"], x["values"]) for x in d["labels"]]
        if h["mode"] == "explicit":
            return cls(d["name"], d["help"], labels, bounds=h["bounds"])
        return cls(d["name"], d["help"], labels, scale=h["scale"],
                   range=(2.0 ** h["min_exponent"], 2.0 ** h["max_exponent"]),
                   negative=h["negative"])


class TopK(MetricSpec):
    """The ``k`` most frequent keys of a stream and their counts (bounded cardinality).

    Its label values are not fixed: each of the ``k`` slots holds one key (one
    u64 per label, exported as decimal strings) and its count.  Maintained from
    Python (e.g. by the trace collector) with :meth:`set`; kernels cannot write
    it.  Exported as a counter family with one sample per occupied slot.
    """

    kind = "topk"

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

    def describe(self) -> dict:
        d = super().describe()
        d["topk"] = {"key_labels": list(self.key_labels), "k": self.k}
        return d


def spec_from_description(d: dict) -> MetricSpec:
    """Rebuild a declaration from a region's layout description (labels become strings)."""
    kind = d.get("kind")
    labels = [(x["name"], x["values"]) for x in d["labels"]]
    if kind == "counter":
        return Counter(d["name"], d["help"], labels)
    if kind == "gauge":
        return Gauge(d["name"], d["help"], labels)
    if kind == "histogram":
        return Histogram.from_description(d)
    if kind == "topk":
        return TopK(d["name"], d["help"], d["topk"]["key_labels"], d["topk"]["k"])
    raise ValueError(f"unknown metric kind {kind!r}")
