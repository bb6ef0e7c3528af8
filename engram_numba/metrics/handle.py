"""The Python side of a metric: ``m.<metric>`` on a set instance, and its ``labels(...)``.

Each kind's module (:mod:`.counter`, :mod:`.gauge`, :mod:`.histogram`,
:mod:`.topk`) subclasses :class:`_BoundMetric` with its recording and reading
methods; a declaration's ``handle`` names the class.
"""

from __future__ import annotations

import enum

from .kinds import COUNTER, GAUGE, HISTOGRAM

U64_MAX = (1 << 64) - 1


class _BoundMetric:
    """A declared metric bound to one set instance (what ``m.<metric>`` returns in Python).

    Recording from Python takes the same paths as a kernel: the calling
    thread's own copy (claimed once per thread), or the shared copy with
    atomic instructions when every copy is taken.  The common case is kept
    short: labels seen before map to their slot through a dict, the thread's
    copy is a ``threading.local`` attribute, and a counter's word is updated
    through a memoryview without leaving Python (a thread is its copy's only
    writer).  Anything else (new labels, a disabled, closed or read-only set,
    bad values) takes the slow path, which validates and raises.
    """

    def __init__(self, owner, m):
        self._owner = owner
        self._m = m
        self.spec = m.spec
        self._slots = {}                  # label tuple -> slot, for labels seen before
        self._offsets = {}                # label tuple -> byte offset of the slot in a copy
        self._words = {}                  # label tuple -> its first word in a copy
        # 0 == 0.0 == False and they hash alike: a remembered tuple is only taken for label
        # values of these types (a dimension's enum members only when no two dimensions
        # have different enums, which could be given in each other's places)
        enums = {d.enum for d in self.spec.labels if d.enum is not None}
        self._exact = frozenset({int, str} | (enums if len(enums) == 1 else set()))

    def _remembered(self, table, labels):
        """``table[labels]`` for a tuple remembered by :meth:`_slot`, given with label
        values of exact types (else None: the caller takes the validating path)."""
        hit = table.get(labels)
        if hit is not None:
            for x in labels:
                if type(x) not in self._exact:
                    return None
        return hit

    def _slot(self, labels) -> int:
        try:
            slot = self._remembered(self._slots, labels)
        except TypeError:                 # an unhashable label: validated below
            slot = None
        if slot is not None:
            return slot
        dims = self.spec.labels
        if len(labels) != len(dims):
            raise ValueError(f"{self._m.attr} ({self.spec.name}) takes {len(dims)} label(s) "
                             f"{list(self.spec.label_names)}, got {len(labels)}{self._hint()}")
        slot = 0
        try:
            for dim, label in zip(dims, labels):
                slot = slot * len(dim.values) + dim.index(label)
        except ValueError as exc:
            raise ValueError(f"{self._m.attr} ({self.spec.name}): {exc}{self._hint()}") from None
        if all(type(x) in self._exact for x in labels) \
                and len(self._slots) < 4096:
            self._slots[labels] = slot    # only values that index the same way every time
            self._offsets[labels] = self._m.block_offset + slot * self._m.slot_bytes
            self._words[labels] = self._offsets[labels] // 8
        return slot

    def _hint(self) -> str:
        a = self._m.attr
        if self.spec.kind is COUNTER:
            return (f"; labels come first in inc() - to count by n, write {a}.labels(...)"
                    f".inc(n) or {a}.add(n, ...)")
        return f"; the value comes first, or write {a}.labels(...).<method>(value)"

    def labels(self, *values, **named) -> "_Child":
        """This metric for one combination of label values (prometheus_client's way):
        ``m.orders.labels("new").inc(5)``, ``m.latency.labels(route="home").observe(0.2)``.
        The values are checked now; the child records without them (``inc(n=1)``,
        ``add(n)``, ``set(v)``, ``sub(v)``, ``observe(v)``, as the kind has) and reads
        (``value()``, ``read()``).  The same call works in kernels (positional labels;
        string literals are resolved when the kernel compiles)."""
        names = list(self.spec.label_names)
        if named:
            if values:
                raise TypeError(f"{self._m.attr}.labels: give the values by position or by "
                                f"name, not both")
            unknown = sorted(set(named) - set(names))
            missing = [n for n in names if n not in named]
            if unknown or missing:
                raise ValueError(f"{self._m.attr} ({self.spec.name}).labels: labels are "
                                 f"{names}; unknown {unknown}, missing {missing}")
            values = tuple(named[n] for n in names)
        self._slot(tuple(values))
        return _Child(self, tuple(values))

    def _copy_address(self, labels):
        """(address of the slot in the caller's copy, owned?), or (None, False) when disabled.

        A thread in the middle of a record into its own copy (a signal handler or
        a finalizer recording meanwhile) uses the shared copy.
        """
        slot = self._slot(labels)
        owner = self._owner
        if owner._address() is None:
            return None, False
        state = owner._thread()
        copy = state[0] if state[3] else 0
        return owner._base + owner._layout_.copy_offset(copy) + self._m.block_offset \
            + slot * self._m.slot_bytes, copy > 0

    def _read(self):
        return self._owner.collect()[self._m.attr]

    def reset(self) -> None:
        """Empty this metric (every label combination), as the set's reset() does."""
        owner = self._owner
        if owner._address() is not None:
            self.spec.reset(owner, self._m, owner._words())

    def __repr__(self) -> str:
        return f"<{type(self).__name__[1:]} {self.spec.name}>"


def keyed(spec, items) -> dict:
    """Label-keyed dict: no labels -> {(): v}; one label -> {value: v}; more -> {tuple: v}."""
    if len(spec.labels) == 1:
        return {labels[0]: v for labels, v in items}
    return dict(items)


class _Child:
    """A metric with its labels given (``m.orders.labels("new")``): see
    :meth:`_BoundMetric.labels`."""

    __slots__ = ("_metric", "_labels")

    def __init__(self, metric, labels):
        self._metric, self._labels = metric, labels

    def _kind(self, *kinds, method):
        if self._metric.spec.kind not in kinds:
            m = self._metric
            raise AttributeError(f"{m._m.attr} ({m.spec.name}) is a {m.spec.kind.name}: its "
                                 f"labels(...) has no {method}()")

    def inc(self, n=1) -> bool:
        self._kind(COUNTER, method="inc")
        if type(n) is int and n == 1:
            return self._metric.inc(*self._labels)
        return self._metric.add(n, *self._labels)

    def add(self, n) -> bool:
        self._kind(COUNTER, GAUGE, method="add")
        return self._metric.add(n, *self._labels)

    def set(self, value) -> bool:
        self._kind(GAUGE, method="set")
        return self._metric.set(value, *self._labels)

    def sub(self, value) -> bool:
        self._kind(GAUGE, method="sub")
        return self._metric.sub(value, *self._labels)

    def observe(self, value) -> bool:
        self._kind(HISTOGRAM, method="observe")
        return self._metric.observe(value, *self._labels)

    def value(self):
        self._kind(COUNTER, GAUGE, method="value")
        return self._metric.value(*self._labels)

    def read(self):
        self._kind(HISTOGRAM, method="read")
        return self._metric.read(*self._labels)

    def __repr__(self) -> str:
        return f"<{self._metric!r} labels={self._labels!r}>"
