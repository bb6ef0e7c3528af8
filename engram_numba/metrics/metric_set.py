"""User-declared metric sets: one object, passed into kernels, read from Python.

::

    class ServerMetrics(MetricSet):
        requests = Counter("requests_total", "Requests served", labels={"method": Method})
        latency = Histogram("latency_seconds", "Time per request", range=(1e-6, 10))

        @kernel_method
        def record_request(self, method: Method, seconds):
            self.requests.inc(method)
            self.latency.observe(seconds)

    m = ServerMetrics()                 # or .create(path) / .attach(path) / .disabled()
    kernel(m, ...)                      # inside: m.requests.inc(Method.GET) or m.record_request(...)
    m.snapshot()                        # plain dict

Every call works the same in a kernel and in Python.  In Python, labels and
values are validated (``ValueError``); in a kernel an out-of-range label is
counted in ``invalid_records`` and nothing else is written.
"""

from __future__ import annotations

import functools
import json
import re
import typing

import numpy as np

from .._kernel_arg import KernelArgument
from .._methods import kernel_method, register_kernel_method
from .._region import CACHE_LINE, KIND_METRICS, Region, RegionError, round_up
from .._values import as_integer, as_number
from . import _njit
from . import _record as R
from .buckets import exponential_tables
from .layout import INVALID_OFFSET, SetLayout, check_shards
from .snapshot import HistogramData, MetricSetSnapshot
from .spec import MetricSpec, snake_case, spec_from_description

__all__ = ["MetricSet", "kernel_method", "attach_metrics"]

_U64_MAX = (1 << 64) - 1
_SET_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class MetricSet(KernelArgument):
    """Base class of metric sets; declare metrics as class attributes.

    Subclass keywords: ``name`` sets the set's name (default: the class name in
    snake case), used for ``<name>_invalid_records_total`` in exports;
    ``shards=N`` keeps N copies of every counter and histogram so that up to N
    threads recording at the same time never write the same cache line (see
    :mod:`.layout`; reading adds the copies up).  Both are inherited.
    """

    set_name: typing.ClassVar[str] = "metric_set"
    shards: typing.ClassVar[int] = 1
    _specs: typing.ClassVar[dict] = {}
    _kernel_methods: typing.ClassVar[dict] = {}
    _layouts: typing.ClassVar[dict] = {}

    def __init_subclass__(cls, name: str | None = None, shards: int | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if shards is not None:
            cls.shards = check_shards(shards)
        specs, methods = {}, {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, MetricSpec):
                    specs[attr] = value
                elif isinstance(value, kernel_method):
                    methods[attr] = value
        reserved = set(dir(MetricSet))
        for attr in list(specs) + list(methods):
            if attr in reserved:
                raise TypeError(f"{cls.__name__}.{attr}: the name is taken by MetricSet itself")
        if name is not None:
            if not isinstance(name, str) or not _SET_NAME.match(name):
                raise TypeError(f"{cls.__name__}: set name must be a metric-name prefix "
                                f"([a-zA-Z_:][a-zA-Z0-9_:]*), got {name!r}")
            cls.set_name = name
        elif MetricSet in cls.__bases__ and "set_name" not in vars(cls):
            cls.set_name = snake_case(cls.__name__)   # else inherited from the parent set
        exported = [s.name for s in specs.values()] + [f"{cls.set_name}_invalid_records_total"]
        dupes = {n for n in exported if exported.count(n) > 1}
        if dupes:
            raise TypeError(f"{cls.__name__}: duplicate metric names {sorted(dupes)}")
        cls._specs = specs
        cls._kernel_methods = methods
        cls._layouts = {}
        for km in methods.values():
            register_kernel_method(km, _njit.MetricSetType)

    # -- construction -----------------------------------------------------------

    def __init__(self, *, alignment: int = CACHE_LINE):
        layout = type(self)._layout(alignment)
        region = Region.anonymous(KIND_METRICS, layout.size, layout.description, alignment)
        self._bind(region, layout)
        R.write_words(region.address, layout.initial_words())

    @classmethod
    def create(cls, path, *, alignment: int = CACHE_LINE):
        """A new set backed by the file ``path`` (mode 0600), which other processes can attach."""
        layout = cls._layout(alignment)
        region = Region.create(path, KIND_METRICS, layout.size, layout.description, alignment)
        R.write_words(region.address, layout.initial_words())
        region.publish()
        return cls._new(region, layout)

    @classmethod
    def attach(cls, path, *, writable: bool = True):
        """Attach to a set file created by :meth:`create`, in this or another process.

        Raises :class:`RegionError` if the file does not hold exactly this set's layout.
        """
        region = Region.attach(path, KIND_METRICS, writable=writable)
        layout = cls._layout(region.alignment)
        if region.description != layout.description:
            region.close()
            raise RegionError(f"{path}: {_describe_mismatch(region.description, layout)}")
        _check_size(region, layout, path)
        return cls._new(region, layout)

    @classmethod
    def disabled(cls):
        """A set that records nothing, owns no memory and compiles to no code in kernels."""
        obj = cls.__new__(cls)
        obj._region = None
        obj._base = None
        obj._layout_ = cls._layout(CACHE_LINE)
        obj._nbtype = _njit.MetricSetType(cls, obj._layout_, enabled=False)
        return obj

    @classmethod
    def _new(cls, region, layout):
        obj = cls.__new__(cls)
        obj._bind(region, layout)
        return obj

    def _bind(self, region, layout):
        self._region = region
        self._base = region.address
        self._layout_ = layout
        self._nbtype = _njit.MetricSetType(type(self), layout, enabled=True)
        self._callers = {}
        if region.path is None:
            self._track()

    def _after_fork_in_child(self):
        # anonymous memory is the child's private copy: the parent's threads own
        # nothing in it, so its shard claims are freed (the values stay, like any state)
        if self._base is not None and self._layout_.shards > 1:
            from .._claim import ENTRY_BYTES, clear
            clear(self._base + self._layout_.claim_offset, ENTRY_BYTES, self._layout_.shards)

    @classmethod
    def _layout(cls, alignment: int) -> SetLayout:
        layout = cls._layouts.get(alignment)
        if layout is None:
            layout = cls._layouts[alignment] = SetLayout(cls.set_name, cls._specs, alignment,
                                                         cls.shards)
        return layout

    # -- kernels --------------------------------------------------------------

    # -- state ----------------------------------------------------------------

    @property
    def layout(self) -> SetLayout:
        return self._layout_

    @classmethod
    def metrics(cls) -> dict:
        """Declared metrics by attribute name."""
        return dict(cls._specs)

    def _handle(self, attr):
        m = self._layout_.metrics[attr]
        handle = _HANDLES[m.spec.kind](self, m)
        self.__dict__[attr] = handle  # later lookups skip the descriptor
        return handle

    # -- reading ----------------------------------------------------------------

    def _words(self) -> np.ndarray:
        if self._region is None:
            return self._layout_.initial_words()
        words = R.read_words(self._kernel_address, self._layout_.n_words)
        for m in self._layout_.tables:
            first = m.offset // 8
            n = m.spec.k * m.spec.entry_words
            words[first + 1:first + 1 + n] = R.read_table(self._kernel_address + m.offset, n, 1000)
        return words

    def collect(self) -> MetricSetSnapshot:
        """An immutable reading of every metric (what exporters consume)."""
        return MetricSetSnapshot(self.set_name, self._layout_, self._words())

    def snapshot(self) -> dict:
        """Every metric as a plain, JSON-serialisable dict."""
        return self.collect().to_dict()

    def count_invalid(self) -> None:
        """Count a record dropped as invalid (kernel methods call this for a bad argument)."""
        base = self._address()
        if base is not None:
            R.py_counter_add(base + INVALID_OFFSET, 1)

    @property
    def invalid_records(self) -> int:
        """Kernel records dropped for an out-of-range label or a negative counter increment."""
        return int(self._words()[INVALID_OFFSET // 8])

    def reset(self) -> None:
        """Set every value back to empty.

        Each word is reset atomically, but a kernel recording at the same time
        may see a histogram half-reset (its record then lands before or after).
        """
        base = self._address()
        if base is not None:
            R.write_words(base, self._layout_.initial_words())

    def __repr__(self) -> str:
        state = "disabled" if self._region is None else (self._region.path or "anonymous")
        return f"<{type(self).__name__} {len(self._specs)} metrics, {state}>"

    def _repr_html_(self) -> str:
        from ..viz import metric_set_html
        return metric_set_html(self)


def _check_size(region, layout, path) -> None:
    """The region's data area must be exactly what the layout needs (no read beyond it)."""
    need = round_up(layout.size, region.alignment)
    if region.size != need:
        size = region.size
        region.close()
        raise RegionError(f"{path}: data area is {size} bytes, the layout needs {need}; "
                          f"the file is damaged or was not written by this layout")


def _describe_mismatch(found: str, expected: SetLayout) -> str:
    try:
        d = json.loads(found)
        if d.get("format") != "engram-numba.metric-set":
            return "not a metric-set layout"
        theirs = {m["name"]: m for m in d["metrics"]}
        ours = json.loads(expected.description)
        mine = {m["name"]: m for m in ours["metrics"]}
        missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        changed = sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])
        parts = [f"file holds set {d.get('name')!r}, expected {expected.name!r}"]
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        if changed:
            parts.append(f"declared differently: {changed}")
        if d.get("alignment") != ours.get("alignment"):
            parts.append(f"alignment {d.get('alignment')}")
        return "layout mismatch: " + "; ".join(parts)
    except (ValueError, KeyError, TypeError):
        return "layout mismatch"


def attach_metrics(path, *, writable: bool = False) -> MetricSet:
    """Attach to any metric-set file, rebuilding its declarations from the file.

    Labels come back as strings and kernel methods are not available; the
    result can be read, exported, and (with ``writable=True``) passed to kernels.
    """
    region = Region.attach(path, KIND_METRICS, writable=writable)
    try:
        d = json.loads(region.description)
        if not isinstance(d, dict) or d.get("format") != "engram-numba.metric-set":
            raise RegionError(f"{path}: not a metric-set layout")
        specs = {m["attr"]: spec_from_description(m) for m in d["metrics"]}
        cls = type(f"Attached_{d['name']}", (MetricSet,), dict(specs), name=d["name"],
                   shards=int(d.get("shards", 1)))
        layout = cls._layout(region.alignment)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        region.close()
        if isinstance(exc, RegionError):
            raise
        raise RegionError(f"{path}: unreadable metric-set layout ({type(exc).__name__}: "
                          f"{str(exc)[:200]})") from None
    if layout.description != region.description:
        region.close()
        raise RegionError(f"{path}: layout written by an incompatible version")
    _check_size(region, layout, path)
    return cls._new(region, layout)


# --------------------------------------------------------------------------
# Python-side handles
# --------------------------------------------------------------------------

class _BoundMetric:
    """A declared metric bound to one set instance (what ``m.<metric>`` returns in Python)."""

    def __init__(self, owner: MetricSet, m):
        self._owner = owner
        self._m = m
        self.spec = m.spec

    def _slot(self, labels) -> int:
        dims = self.spec.labels
        if not labels and not dims:
            return 0
        if len(labels) != len(dims):
            raise ValueError(f"{self.spec.name} takes {len(dims)} label(s) "
                             f"{list(self.spec.label_names)}, got {len(labels)}")
        slot = 0
        for dim, label in zip(dims, labels):
            slot = slot * len(dim.values) + dim.index(label)
        return slot

    def _slot_address(self, labels) -> int | None:
        slot = self._slot(labels)
        base = self._owner._address()
        return None if base is None else base + self._m.offset + slot * self._m.stride

    def _read(self):
        return self._owner.collect()[self._m.attr]

    def reset(self) -> None:
        """Empty this metric (every label combination); atomic per value, like the set's reset."""
        base = self._owner._address()
        if base is not None:
            m = self._m   # every shard
            first = m.offset // 8
            words = self._owner.layout.initial_words()[first:first + m.size // 8]
            R.write_words(base + m.offset, words)

    def __repr__(self) -> str:
        return f"<{type(self).__name__[1:]} {self.spec.name}>"


class _BoundCounter(_BoundMetric):
    def inc(self, *labels) -> bool:
        addr = self._slot_address(labels)
        if addr is None:
            return False
        R.py_counter_add(addr, 1)
        return True

    def add(self, n, *labels) -> bool:
        n = as_integer(n, f"{self.spec.name}: n (counters add whole numbers)")
        if not 0 <= n <= _U64_MAX:
            raise ValueError(f"{self.spec.name}: a counter only goes up; got {n!r}")
        addr = self._slot_address(labels)
        if addr is None:
            return False
        R.py_counter_add(addr, n if n < 1 << 63 else np.uint64(n))
        return True

    def value(self, *labels) -> int:
        return self._read().get(*labels)

    def values(self) -> dict:
        return _keyed(self.spec, self._read().items())

    @property
    def total(self) -> int:
        return self._read().total


class _BoundGauge(_BoundMetric):
    def _value(self, value) -> float:
        return as_number(value, f"{self.spec.name}: value")

    def set(self, value, *labels) -> bool:
        v = self._value(value)
        addr = self._slot_address(labels)
        if addr is None:
            return False
        R.py_gauge_set(addr, v)
        return True

    def add(self, value, *labels) -> bool:
        v = self._value(value)
        addr = self._slot_address(labels)
        if addr is None:
            return False
        R.py_gauge_add(addr, v)
        return True

    def sub(self, value, *labels) -> bool:
        return self.add(-self._value(value), *labels)

    def value(self, *labels) -> float:
        return self._read().get(*labels)

    def values(self) -> dict:
        return _keyed(self.spec, self._read().items())


class _BoundHistogram(_BoundMetric):
    def observe(self, value, *labels) -> bool:
        v = as_number(value, f"{self.spec.name}: value")
        addr = self._slot_address(labels)
        if addr is None:
            return False
        s = self.spec
        if s.mode == "explicit":
            R.py_observe_explicit(addr, v, _explicit_bounds(s.bounds))
        else:
            lut, bnd = exponential_tables(s.scale)
            R.py_observe_exponential(addr, v, s.scale, lut, bnd, s.lo_index, s.n_buckets, s.negative)
        return True

    def read(self, *labels) -> HistogramData:
        """The histogram's contents now (count, sum, quantile(q), buckets(), ...)."""
        return self._read().get(*labels)

    def values(self) -> dict:
        return _keyed(self.spec, self._read().items())


@functools.lru_cache(maxsize=None)
def _explicit_bounds(bounds: tuple) -> np.ndarray:
    arr = np.array(bounds, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _keyed(spec, items) -> dict:
    """Label-keyed dict: no labels -> {(): v}; one label -> {value: v}; more -> {tuple: v}."""
    if len(spec.labels) == 1:
        return {labels[0]: v for labels, v in items}
    return dict(items)


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
                words[i * s.entry_words + j] = as_integer(part, f"{s.name}: key part", 0, _U64_MAX)
            words[i * s.entry_words + len(key)] = as_integer(count, f"{s.name}: count", 1, _U64_MAX)
        base = self._owner._address()
        if base is not None:
            R.write_table(base + self._m.offset, words)

    def items(self) -> list:
        """``[(key tuple, count), ...]`` as last set."""
        return self._read().items()


_HANDLES = {"counter": _BoundCounter, "gauge": _BoundGauge, "histogram": _BoundHistogram,
            "topk": _BoundTopK}
