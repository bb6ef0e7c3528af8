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

import json
import logging
import math
import os
import re
import threading
import time
import typing

import numpy as np

from .._kernel_arg import KernelArgument
from .._methods import kernel_method, register_kernel_method
from .._region import CACHE_LINE, KIND_METRICS, Region, RegionError, round_up
from . import _njit
from .kinds import COUNTER
from . import _record as R
from .. import _kernel_arg
from .layout import (DEFAULT_SHARDS, INVALID_BASELINE_OFFSET, INVALID_OFFSET, SetLayout,
                     check_shards)
from .snapshot import MetricSetSnapshot
from .spec import MetricSpec, check_text, snake_case, spec_from_description

__all__ = ["MetricSet", "kernel_method", "attach_metrics"]

_log = logging.getLogger("engram_numba.metrics")


def describe_invalid(layout, words) -> str:
    """The last invalid record of a set (its description words, see .layout), in words."""
    from .layout import LAST_INVALID_OFFSET
    first = LAST_INVALID_OFFSET // 8
    for _ in range(100):
        v1, what, value, v2 = (int(words[first]), int(words[first + 1]),
                               int(words[first + 2]), int(words[first]))
        if v1 == v2 and not v1 & 1:
            break
    reason, position, method = what & 0xFF, (what >> 8) & 0xFF, (what >> 16) & 0xFF
    if not what or reason == R.INVALID_ARGUMENT:
        return ("The last: a kernel method refused an argument (count_invalid), e.g. an "
                "integer that is no member of its IntEnum.")
    index = (what >> 24) - 1
    value = value - (1 << 64) if value >= 1 << 63 else value
    attrs = list(layout.metrics)
    if not 0 <= index < len(attrs):
        return "The last one is not described."
    m = layout.metrics[attrs[index]]
    name = f"{m.attr} ({m.spec.name})"
    call = R.METHODS[method] if method < len(R.METHODS) else "?"
    if reason == R.INVALID_NEGATIVE:
        return (f"The last: {name}.{call}({value}, ...): a counter only goes up; use a Gauge "
                f"for values that go down.")
    if reason == R.INVALID_LABEL and position < len(m.spec.labels):
        dim = m.spec.labels[position]
        hint = ""
        if m.spec.kind is COUNTER and call == "inc":
            hint = (f" inc() takes labels, not an amount: to count by n, write "
                    f"{m.attr}.labels(...).inc(n) or {m.attr}.add(n, ...).")
        return (f"The last: {name}.{call}: label {position} ({dim.name!r}) was {value}, "
                f"outside 0..{len(dim.values) - 1} ({', '.join(dim.values)}).{hint}")
    return f"The last: {name}.{call} (reason {reason})."

_SET_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricSet(KernelArgument):
    """Base class of metric sets; declare metrics as class attributes.

    Subclass keywords: ``name`` sets the set's name (default: the class name in
    snake case), used for ``<name>_invalid_records_total`` in exports;
    ``shards=N`` (default 16) is the number of recording threads that get a copy
    of the set's hot values of their own, updated without locked instructions
    (see :mod:`.layout`; readers add the copies up); more threads record into a
    shared copy with atomic instructions.  Both are inherited.
    """

    _mv = None                      # a writable view of the words (None: disabled/closed)
    set_name: typing.ClassVar[str] = "metric_set"
    shards: typing.ClassVar[int] = DEFAULT_SHARDS
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

    const_labels: tuple = ()        # ((name, value), ...) on every exported series

    _directory = None               # directory mode: the shared directory of this set's file

    def __init__(self, *, alignment: int = CACHE_LINE, const_labels=None):
        """A set in anonymous memory.  ``const_labels={"worker": "3"}`` are added to every
        series it exports, so that instances of one class can be told apart.

        With ``ENGRAM_NUMBA_METRICS_DIR`` set, the set is this process's file in that
        directory instead (see :meth:`create_in`), so pool workers need no code change."""
        from ._files import create_file, directory_from_env
        labels = self._check_const_labels(const_labels)
        layout = type(self)._layout(alignment)
        directory = directory_from_env()
        if directory is not None:
            region = create_file(directory, self.set_name, layout)
        else:
            region = Region.anonymous(KIND_METRICS, layout.size, layout.description, alignment)
        self._bind(region, layout)
        self._directory = directory
        self.const_labels = labels

    @classmethod
    def create_in(cls, directory=None, *, alignment: int = CACHE_LINE, const_labels=None):
        """This process's set in a directory shared by many processes (default:
        ``$ENGRAM_NUMBA_METRICS_DIR``): a file named by the set, pid and process start
        time, which :class:`~.directory.MetricsDirectory` and ``engram-numba metrics
        serve --dir`` add up with the other processes' files.  A forked child gets a
        file of its own.  See :mod:`.directory`."""
        from ._files import create_file
        labels = cls._check_const_labels(const_labels)
        layout = cls._layout(alignment)
        region = create_file(directory, cls.set_name, layout)
        obj = cls._new(region, layout)
        obj._directory = os.path.dirname(region.path)
        obj.const_labels = labels
        return obj

    @classmethod
    def create(cls, path, *, alignment: int = CACHE_LINE, const_labels=None):
        """A new set backed by the file ``path`` (mode 0600), which other processes can attach."""
        labels = cls._check_const_labels(const_labels)
        layout = cls._layout(alignment)
        region = Region.create(path, KIND_METRICS, layout.size, layout.description, alignment)
        region.publish()
        obj = cls._new(region, layout)
        obj.const_labels = labels
        return obj

    @classmethod
    def attach(cls, path, *, writable: bool = True, const_labels=None):
        """Attach to a set file created by :meth:`create`, in this or another process.

        Raises :class:`RegionError` if the file does not hold exactly this set's layout.
        """
        labels = cls._check_const_labels(const_labels)
        region = Region.attach(path, KIND_METRICS, writable=writable)
        layout = cls._layout(region.alignment)
        if region.description != layout.description:
            region.close()
            raise RegionError(f"{path}: {_describe_mismatch(region.description, layout)}")
        _check_size(region, layout, path)
        obj = cls._new(region, layout)
        obj.const_labels = labels
        return obj

    @classmethod
    def _check_const_labels(cls, const_labels) -> tuple:
        """``{name: value}`` or pairs -> sorted ((name, str value), ...); names must be
        label names that no metric of the set declares."""
        if const_labels is None:
            return ()
        items = const_labels.items() if isinstance(const_labels, dict) else const_labels
        try:
            pairs = [(k, v) for k, v in items]
        except (TypeError, ValueError):
            raise ValueError(f"const_labels must be a dict {{name: value}}, got "
                             f"{const_labels!r}") from None
        declared = {n for spec in cls._specs.values() for n in spec.label_names}
        declared |= {n for spec in cls._specs.values() for n in getattr(spec, "key_labels", ())}
        out = {}
        for k, v in pairs:
            if not isinstance(k, str) or not _LABEL_NAME.match(k) or k.startswith("__") \
                    or k in ("le", "quantile", "reason"):
                raise ValueError(f"const_labels: invalid label name {k!r}")
            if not isinstance(v, (str, int)) or isinstance(v, bool):
                raise ValueError(f"const_labels: {k}: the value must be a string or an "
                                 f"integer, got {v!r}")
            if k in declared:
                raise ValueError(f"const_labels: {k!r} is already a label of a metric of "
                                 f"{cls.__name__}")
            if k in out:
                raise ValueError(f"const_labels: {k!r} given twice")
            out[k] = check_text(str(v), f"const_labels: {k}")
        return tuple(sorted(out.items()))

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
    def cuda(cls, *, const_labels=None):
        """A set whose values live in device memory, for numba CUDA kernels (extra
        ``[cuda]``); read and exported as this set is.  See :mod:`engram_numba.gpu`."""
        return _kernel_arg.device("cuda")(cls, const_labels=const_labels)

    @classmethod
    def _new(cls, region, layout):
        obj = cls.__new__(cls)
        obj._bind(region, layout)
        return obj

    def _bind(self, region, layout):
        self._region = region
        self._base = region.address
        self._wbase = self._base if region.writable else None
        self._layout_ = layout
        self._nbtype = _njit.MetricSetType(type(self), layout, enabled=True)
        self._callers = {}
        self._threads = threading.local()
        # Python records into the calling thread's own copy go through this view
        # (aligned 8-byte loads and stores, as a kernel's relaxed atomics compile to)
        self._mv = memoryview(region.data).cast("Q") if region.writable else None
        self._track()

    def _after_fork_in_child(self):
        # a forked child's threads are new owners (the pid is part of the key), so
        # what this thread claimed in the parent is forgotten; anonymous memory is
        # moreover the child's private copy, where the parent's threads own
        # nothing, so its claims are freed (the values stay, like any state)
        if self._base is not None and self._directory is not None:
            # directory mode: the child records into a file of its own (the parent's
            # counts stay in the parent's file, to be compacted when it exits)
            from ._files import create_file
            old = self._region
            self._bind(create_file(self._directory, self.set_name, self._layout_),
                       self._layout_)
            old.close()
            return
        if self._base is not None:
            self._threads = threading.local()
            if self._region.path is None:
                from .._claim import ENTRY_BYTES, clear
                clear(self._base + self._layout_.claim_offset, ENTRY_BYTES, self._layout_.shards)

    def close(self) -> None:
        """Release the memory (kernels must not be running on it)."""
        self._mv = None
        super().close()

    @classmethod
    def _layout(cls, alignment: int) -> SetLayout:
        layout = cls._layouts.get(alignment)
        if layout is None:
            layout = cls._layouts[alignment] = SetLayout(cls.set_name, cls._specs, alignment,
                                                         cls.shards)
        return layout

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
        handle = m.spec.handle(self, m)
        self.__dict__[attr] = handle  # later lookups skip the descriptor
        return handle

    # -- reading ----------------------------------------------------------------

    def _words(self) -> np.ndarray:
        if self._region is None:
            return np.zeros(self._layout_.n_words, dtype=np.uint64)
        region = self._region
        copy = None
        if region.path is not None and not region.writable and region.data_offset is not None:
            # another process's file: read a copy (a truncated file is an error, not SIGBUS)
            copy = region.read_copy()
        base = self._kernel_address if copy is None else copy.ctypes.data
        words = R.read_words(base, self._layout_.n_words)
        for m in self._layout_.tables:
            first = m.shared_offset // 8
            n = m.spec.k * m.spec.entry_words
            words[first + 1:first + 1 + n] = R.read_table(base + m.shared_offset, n, 1000)
        return words

    def _thread(self) -> list:
        """The calling Python thread's ``[copy, first word of the copy, its address, ready]``.

        ``copy`` is 1..N for a copy of its own, 0 for the shared copy when all are
        taken.  ``ready``: the thread owns its copy and is not in the middle of a
        record into it (see ``_BoundCounter.inc``).  Claimed once per thread (and
        again in a forked child).
        """
        try:
            return self._threads.state
        except AttributeError:
            pass
        lay = self._layout_
        copy = int(_njit.py_claim_copy(self._base + lay.claim_offset, lay.shards,
                                       _kernel_arg.current_pid()))
        offset = lay.copy_offset(copy)
        state = self._threads.state = [copy, offset // 8, self._base + offset, copy > 0]
        return state

    def _copy(self) -> int:
        return self._thread()[0]

    def release_thread(self) -> int:
        """Hand the calling thread's copy back, for a thread that is about to finish.

        Its counts stay in the copy (readers keep adding them), and the next
        thread that claims the copy goes on from there.  It must be the thread's
        last call on the set (kernels: ``m.release_thread()`` at the end).
        Returns the copy released (0-based), or -1.
        """
        if self._region is None:
            return -1
        base = self._address()
        lay = self._layout_
        self._threads.__dict__.pop("state", None)
        return int(_njit.py_release_copy(base + lay.claim_offset, lay.shards,
                                         _kernel_arg.current_pid()))

    def memory(self) -> dict:
        """What the set's memory holds: a copy of the hot values per owning thread.

        ``bytes_per_copy``: one copy; ``owned_copies``: the bound (the class's
        ``shards``); ``claimed``: copies owned now; ``region_bytes``: the whole
        region (allocated up front); ``bytes_in_use``: what has been touched,
        the shared block and the shared and baseline copies included (pages of
        copies nobody claimed are never written).
        """
        lay = self._layout_
        claimed = 0
        if self._region is not None:
            first = lay.claim_offset // 8
            table = self._words()[first:first + 2 * lay.shards:2]
            claimed = int(np.count_nonzero(table))
        return {"bytes_per_copy": lay.copy_size, "owned_copies": lay.shards, "claimed": claimed,
                "region_bytes": lay.size,
                "bytes_in_use": lay.hot_offset + lay.copy_size * (claimed + 2)}

    def collect(self) -> MetricSetSnapshot:
        """An immutable reading of every metric (what exporters consume).  A file attached
        read-only is read from a copy (:meth:`~.._region.Region.read_copy`): one truncated
        by someone raises :class:`RegionError` instead of killing the process with SIGBUS.

        Invalid records made in kernels since the last reading (a label out of range,
        a negative counter increment: nothing was recorded for them) are logged as a
        warning naming the metric, the label and the value, at most once every
        ``invalid_warning_interval`` seconds (logger ``engram_numba.metrics``)."""
        region = self._region
        words = self._words()
        if region is not None:
            self._warn_invalid(words)
        return MetricSetSnapshot(self.set_name, self._layout_, words,
                                 start_ns=getattr(region, "created_ns", None),
                                 const_labels=self.const_labels)

    #: seconds between two warnings of invalid records (the first is logged at once)
    invalid_warning_interval: typing.ClassVar[float] = 10.0

    def _warn_invalid(self, words) -> None:
        count = int(words[INVALID_OFFSET // 8])
        seen = self.__dict__.get("_invalid_seen")
        if seen is None or count < seen:
            seen = 0 if self._region.path is None else count   # a file's past is not news
        if count == seen:
            self._invalid_seen = count
            return
        now = time.monotonic()
        last = self.__dict__.get("_invalid_warned", -math.inf)
        if now - last < self.invalid_warning_interval:
            return                         # said already; counted in the next warning
        self._invalid_seen, self._invalid_warned = count, now
        what = describe_invalid(self._layout_, words)
        _log.warning("metric set %r: %d record(s) refused in kernels since the last reading "
                     "(nothing was recorded for them; counted in %s_invalid_records_total). "
                     "%s", self.set_name, count - seen, self.set_name, what)

    def to_dataframe(self, histograms: str = "quantiles", quantiles=(0.5, 0.9, 0.99)):
        """A tidy pandas DataFrame of a fresh snapshot (see ``MetricSetSnapshot.to_dataframe``)."""
        return self.collect().to_dataframe(histograms, quantiles)

    def snapshot(self) -> dict:
        """Every metric as a plain, JSON-serialisable dict."""
        return self.collect().to_dict()

    def count_invalid(self) -> None:
        """Count a record dropped as invalid (kernel methods call this for a bad argument)."""
        base = self._address()
        if base is not None:
            _njit.py_note_invalid(base)

    @property
    def invalid_records(self) -> int:
        """Kernel records dropped for an out-of-range label or a negative counter increment."""
        return self.collect().invalid_records

    def reset(self) -> None:
        """Set every value back to empty.

        Counts and sums are not cleared in the copies (their owners may be
        writing them): the reading at the moment of the reset becomes the
        baseline that readers subtract, so a record landing at the same time is
        counted before or after the reset, never lost or counted twice.  Gauges
        are set to 0, top-k tables emptied, and min/max start afresh (a record
        racing the reset may leave an extreme from before it).
        """
        base = self._address()
        if base is None:
            return
        words = self._words()
        for m in self._layout_.metrics.values():
            m.spec.reset(self, m, words)
        _njit.py_counter_add(base + INVALID_BASELINE_OFFSET, 0, False)
        R.write_words(base + INVALID_BASELINE_OFFSET,
                      np.array([words[INVALID_OFFSET // 8]], dtype=np.uint64))

    def __repr__(self) -> str:
        state = "disabled" if self._region is None else (self._region.path or "anonymous")
        return f"<{type(self).__name__} {len(self._specs)} metrics, {state}>"

    def _repr_html_(self) -> str:
        from ._html import metric_set_html
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


def attach_metrics(path, *, writable: bool = False, const_labels=None,
                   follow_symlinks: bool = True) -> MetricSet:
    """Attach to any metric-set file, rebuilding its declarations from the file.

    Labels come back as strings and kernel methods are not available; the
    result can be read, exported (with ``const_labels`` on every series), and
    (with ``writable=True``) passed to kernels.  ``follow_symlinks=False``
    refuses a symbolic link.
    """
    region = Region.attach(path, KIND_METRICS, writable=writable,
                           follow_symlinks=follow_symlinks)
    try:
        cls = _attached_class(region.description)
        layout = cls._layout(region.alignment)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError,
            RecursionError) as exc:
        region.close()
        if isinstance(exc, RegionError):
            raise RegionError(f"{path}: {exc}") from None
        raise RegionError(f"{path}: unreadable metric-set layout ({type(exc).__name__}: "
                          f"{str(exc)[:200]})") from None
    if layout.description != region.description:
        region.close()
        raise RegionError(f"{path}: layout written by an incompatible version")
    _check_size(region, layout, path)
    try:
        labels = cls._check_const_labels(const_labels)
    except ValueError:
        region.close()
        raise
    obj = cls._new(region, layout)
    obj.const_labels = labels
    return obj


_ATTACHED: dict = {}


def _attached_class(description: str):
    """The set class rebuilt from a file's layout description, made once per description
    (a directory of many files of one set rebuilds it once)."""
    cls = _ATTACHED.get(description)
    if cls is None:
        d = json.loads(description)
        if not isinstance(d, dict) or d.get("format") != "engram-numba.metric-set":
            raise RegionError("not a metric-set layout")
        shards = d.get("shards", 1)
        if isinstance(shards, bool) or not isinstance(shards, int):
            raise ValueError(f"shards must be an integer, got {str(shards)[:40]}")
        specs = {m["attr"]: spec_from_description(m) for m in d["metrics"]}
        cls = type(f"Attached_{d['name']}", (MetricSet,), dict(specs), name=d["name"],
                   shards=shards)
        if len(_ATTACHED) >= 256:
            _ATTACHED.clear()
        _ATTACHED[description] = cls
    return cls
