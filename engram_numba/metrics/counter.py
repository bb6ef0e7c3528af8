"""Counters: a monotonic u64 count per label combination.

Everything a counter is, in one place: its declaration (:class:`Counter`:
bytes per slot, reading its words, reset), its snapshot
(:class:`CounterSnapshot`) and its Python handle (:class:`_BoundCounter`).
Its kernel handle (:class:`CounterHandleType`: the recording bodies of ``inc``
and ``add`` around :func:`._record.counter_add`) is generated into kernels by
:mod:`._njit`.
"""

from __future__ import annotations

import numpy as np
from numba import types

from .._values import as_integer
from . import _njit
from ._njit import COPY, INVALID, HandleType, Record, kernel_kind
from .handle import U64_MAX, _BoundMetric, keyed
from .kinds import COUNTER
from .snapshot import LabelledSnapshot, labelled_dict
from .spec import MetricSpec, block_words, since_reset

__all__ = ["Counter", "CounterSnapshot"]


# a negative amount of a signed type is refused at run time (SIGNED: the type is signed)
_NEGATIVE = """    if SIGNED and __AMOUNT__ < 0:
        R.note_invalid(h.base, h.metric, METHOD, R.INVALID_NEGATIVE, R.VALUE_POSITION,
                       __AMOUNT__)
        return False
"""
_BODY = INVALID + _NEGATIVE + f"""    {COPY}
    R.counter_add(h.base + h.hot + copy * h.copy + h.block + 8 * slot, __AMOUNT__, copy > 0)
    return True
"""


def _signed(h, t) -> dict:
    return {"SIGNED": t is not None and (isinstance(t, types.IntEnumMember)
                                         or bool(getattr(t, "signed", False)))}


@kernel_kind
class CounterHandleType(HandleType):
    """A counter in a kernel: ``inc(*labels)``, ``add(n, *labels)``."""

    kind = COUNTER
    methods = {"inc": Record(_BODY, integer=True, constants=_signed),
               "add": Record(_BODY, "n", integer=True, constants=_signed)}
    amount_hint = "to count by n, write {m}.labels(...).inc(n) or {m}.add(n, ...)"

    def label_count_fix(self, method) -> str:
        if method == "inc" and not self.dims:
            return f"; to count by n, write {self.attr}.add(n)"
        return super().label_count_fix(method)


class CounterSnapshot(LabelledSnapshot):
    """Counts per label combination (python ints)."""

    kind = COUNTER

    @property
    def total(self) -> int:
        return int(sum(self._values))

    def to_dict(self) -> dict:
        return labelled_dict(self, lambda v: v)


class _BoundCounter(_BoundMetric):
    def inc(self, *labels) -> bool:
        word = self._remembered(self._words, labels)
        mv = self._owner._mv
        if word is not None and mv is not None:
            try:
                state = self._owner._threads.state
            except AttributeError:
                state = self._owner._thread()
            if state[3]:
                # the thread's own copy: a plain read-modify-write of one word (it is the
                # only writer); marked busy meanwhile, so that Python code running in
                # between on this thread (a signal handler) records elsewhere
                state[3] = False
                i = state[1] + word
                try:
                    mv[i] += 1
                except ValueError:            # past 2**64 - 1: wraps, as u64 words do
                    mv[i] = 0
                finally:
                    state[3] = True
                return True
        return self._add(1, labels)

    def add(self, n, *labels) -> bool:
        if type(n) is not int:
            n = as_integer(n, f"{self.spec.name}: n (counters add whole numbers)")
        if not 0 <= n <= U64_MAX:
            raise ValueError(f"{self.spec.name}: a counter only goes up; got {n!r}")
        return self._add(n, labels)

    def _add(self, n, labels) -> bool:
        addr, owned = self._copy_address(labels)
        if addr is None:
            return False
        n = n if n < 1 << 63 else np.uint64(n)
        if owned:
            state = self._owner._thread()
            state[3] = False
            try:
                _njit.py_counter_add(addr, n, True)
            finally:
                state[3] = True
        else:
            _njit.py_counter_add(addr, n, False)
        return True

    def value(self, *labels) -> int:
        return self._read().get(*labels)

    def values(self) -> dict:
        return keyed(self.spec, self._read().items())

    @property
    def total(self) -> int:
        return self._read().total


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

    handle = _BoundCounter

    def read(self, m, words, copies):
        block = block_words(m, copies, 1)[:, :, 0]
        values = since_reset(block[:-1].sum(axis=0, dtype=np.uint64), block[-1])
        return CounterSnapshot(self, [int(v) for v in values.tolist()])
