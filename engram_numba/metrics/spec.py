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
from . import _record as R
from .families import Family
from .kinds import kind_named

__all__ = ["MetricSpec", "LabelDim", "spec_from_description"]

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
    handle = None               # the Python handle class (``m.<metric>`` on an instance)
    kernel_refusal = ""         # a kind without a kernel handle: why, for messages
    per_file = ""               # read from each file apart when files combine: "gauge"
                                # (values, by mode) or "table" (top-k entries) (see .merge)
    _by_kind: dict = {}         # Kind -> declaration class (spec_from_description)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind is not None and cls.kind not in MetricSpec._by_kind:
            MetricSpec._by_kind[cls.kind] = cls

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

    def reset(self, owner, m, words) -> None:
        """Empty the metric of a set (``owner``, writable) whose words are ``words``: the
        baseline takes the copies' sums (:meth:`baseline`)."""
        lay = owner._layout_
        copies = lay.copies(words)
        first, n = m.block_offset // 8, m.block_bytes // 8
        baseline = self.baseline(owner, m, copies[:-1, first:first + n])
        R.write_words(owner._base + lay.copy_offset(lay.baseline) + m.block_offset, baseline)

    def baseline(self, owner, m, live: np.ndarray) -> np.ndarray:
        """The baseline words a reset writes, from the live copies' words of the metric."""
        return live.sum(axis=0, dtype=np.uint64)

    def families(self, snap, c_names: tuple, c_values: tuple, times: dict) -> list:
        """The families of this metric's snapshot ``snap`` (see :mod:`.families`), after
        the set's constant labels (``c_names``, ``c_values``): one, a point per label
        combination."""
        points = tuple((c_values + tuple(labels), value) for labels, value in snap.items())
        return [Family(self.name, self.kind.exported_as, self.help,
                       c_names + tuple(self.label_names), points, self.unit or "", self,
                       **times)]

    def net_words(self, m) -> dict:
        """How a copy's words of this metric add up across copies and files (the merge
        plan, :class:`~.merge.WordPlan`): word indices (in a copy) under ``"lane0"`` (a
        float sum's lane 0), ``"lanes"`` (its lanes), ``"extremes"`` (combined by max),
        ``"gauge"`` (not a count: cleared); every other word adds as an integer."""
        return {}

    @staticmethod
    def described_labels(d: dict) -> list:
        return [(x["name"], x["values"]) for x in d["labels"]]

    @classmethod
    def from_description(cls, d: dict) -> "MetricSpec":
        """The declaration a layout description (:meth:`describe`) was made from."""
        return cls(d["name"], d["help"], cls.described_labels(d), unit=d.get("unit", ""))

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


def block_words(m, copies, words_per_slot):
    """The metric's words in every copy: shape (copies, slots, words per slot)."""
    first = m.block_offset // 8
    part = copies[:, first:first + m.spec.slots * words_per_slot]
    return part.reshape(copies.shape[0], m.spec.slots, words_per_slot)


def spec_from_description(d: dict) -> MetricSpec:
    """Rebuild a declaration from a region's layout description (labels become strings)."""
    return MetricSpec._by_kind[kind_named(d.get("kind"))].from_description(d)
