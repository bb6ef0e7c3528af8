"""Device metric sets: ``MySet.cuda()``, values in device memory, read as a CPU set is.

A device set is an instance of a subclass of the user's set class, so
``isinstance``, the metric attributes and every reader work as on the CPU:
its words (the same layout as the CPU set's region, :mod:`..metrics.layout`)
live in a device array; :meth:`_words` copies them back, and from there
``collect()``, ``snapshot()``, ``value()``, ``read()`` and every exporter
(Prometheus text, OTLP, ...) are the CPU set's own code.

Recording happens in kernels.  In the simulator (``NUMBA_ENABLE_CUDASIM=1``) a
kernel is plain Python calling the set's Python handles; there those handles
record into the simulated device words with the very bodies the GPU compiles
(:mod:`._bodies`).  Outside a kernel, a record from Python raises (the values
are in device memory; record them with a CPU set), as does ``reset()``
(``reset_device()`` zeroes the words between kernels).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from numba import cuda

from .._values import as_integer, as_number
from ..metrics.kinds import COUNTER, GAUGE, HISTOGRAM, TOPK
from ..metrics import metric_set as _ms
from ..metrics.counter import _BoundCounter
from ..metrics.gauge import _BoundGauge
from ..metrics.handle import _BoundMetric
from ..metrics.histogram import _BoundHistogram
from ..metrics.topk import _BoundTopK
from ._ops import SIMULATOR, sm_id

_classes: dict = {}


def _in_simulated_kernel() -> bool:
    if not SIMULATOR:
        return False
    from numba.cuda.simulator.kernel import BlockThread
    return isinstance(threading.current_thread(), BlockThread)


def _refuse(what: str):
    raise TypeError(f"{what}: a device set records in CUDA kernels (its values are in device "
                    f"memory); from Python, record into a CPU set (MySet())")


class _DeviceRecord:
    """Python handle of a device set's metric: records only inside (simulated) kernels."""

    def _words_for_record(self, method):
        if not _in_simulated_kernel():
            _refuse(f"{self._m.attr}.{method}")
        return self._owner._dwords

    def _kernel_slot(self, words, labels, method):
        """The labels' slot, or None after counting the record as invalid (in a kernel a bad
        label is refused and counted, as the compiled code does, not raised)."""
        try:
            return self._slot(labels)
        except ValueError:
            if len(labels) != len(self.spec.labels):
                raise                       # the compiled code refuses this when it compiles
        from ..metrics import _record as R
        from ._bodies import note_invalid
        for k, (dim, label) in enumerate(zip(self.spec.labels, labels)):
            try:
                dim.index(label)
            except ValueError:
                value = int(label) if isinstance(label, (int, np.integer)) else 0
                note_invalid(words, self._place[6], R.METHODS.index(method), R.INVALID_LABEL,
                             k, value)
                return None
        return None

    def _copy_word(self, slot):
        """The slot's first word in the copy this thread's multiprocessor records into."""
        shared, sstride, block, hot, copy_words, copies, metric, slot_words = self._place
        return hot + (sm_id() % copies) * copy_words + block + slot_words * slot

    @property
    def _place(self):
        from ._target import place_of
        return place_of(self._m, self._owner._layout_)

    def reset(self):
        _refuse(f"{self._m.attr}.reset")


class _DeviceCounter(_DeviceRecord, _BoundCounter):
    def inc(self, *labels) -> bool:
        words = self._words_for_record("inc")
        slot = self._kernel_slot(words, labels, "inc")
        if slot is None:
            return False
        from ._bodies import counter_inc
        counter_inc(words, self._copy_word(slot))
        return True

    def add(self, n, *labels) -> bool:
        words = self._words_for_record("add")
        n = as_integer(n, f"{self.spec.name}: n (counters add whole numbers)")
        slot = self._kernel_slot(words, labels, "add")
        if slot is None:
            return False
        from ..metrics import _record as R
        from ._bodies import counter_add, note_invalid
        if n < 0:
            note_invalid(words, self._place[6], R.METHODS.index("add"), R.INVALID_NEGATIVE,
                         R.VALUE_POSITION, n)
            return False
        counter_add(words, self._copy_word(slot), n)
        return True


class _DeviceGauge(_DeviceRecord, _BoundGauge):
    def _gauge_record(self, method: str, value, labels) -> bool:
        from . import _bodies
        words = self._words_for_record(method)
        slot = self._kernel_slot(words, labels, method)
        if slot is None:
            return False
        shared, sstride = self._place[:2]
        getattr(_bodies, f"gauge_{method}")(words, shared + sstride * slot,
                                            as_number(value, self.spec.name))
        return True

    def set(self, value, *labels) -> bool:
        return self._gauge_record("set", value, labels)

    def add(self, value, *labels) -> bool:
        return self._gauge_record("add", value, labels)

    def sub(self, value, *labels) -> bool:
        return self.add(-as_number(value, self.spec.name), *labels)


class _DeviceHistogram(_DeviceRecord, _BoundHistogram):
    def __init__(self, owner, m):
        _BoundMetric.__init__(self, owner, m)

    def observe(self, value, *labels) -> bool:
        words = self._words_for_record("observe")
        slot = self._kernel_slot(words, labels, "observe")
        if slot is None:
            return False
        from ._target import observer
        observer(self.spec.scheme)(words, self._copy_word(slot),
                                   as_number(value, self.spec.name))
        return True


class _DeviceTopK(_DeviceRecord, _BoundTopK):
    def set(self, entries) -> None:
        _refuse(f"{self._m.attr}.set")


_DEVICE_HANDLES = {COUNTER: _DeviceCounter, GAUGE: _DeviceGauge, HISTOGRAM: _DeviceHistogram,
                   TOPK: _DeviceTopK}


class DeviceMetricSet:
    """Mixin of device sets (see the module doc); the class is made per set class."""

    _dwords = None

    @property
    def _numba_type_(self):
        if self._dwords is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._nbtype

    def to_device(self, retr, stream=0):
        """numba-cuda's argument protocol (``ArgHint``): the kernel gets the device words."""
        if self._dwords is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._dwords

    @property
    def enabled(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._dwords is None

    @property
    def device_words(self):
        """The device array of the set's words (what kernels record into)."""
        return self._dwords

    def _words(self) -> np.ndarray:
        if self._dwords is None:
            raise ValueError(f"{type(self).__name__} is closed")
        if SIMULATOR:
            return np.array(self._dwords._ary, copy=True) if hasattr(self._dwords, "_ary") \
                else self._dwords.copy_to_host()
        return self._dwords.copy_to_host()

    def _handle(self, attr):
        m = self._layout_.metrics[attr]
        handle = _DEVICE_HANDLES[m.spec.kind](self, m)
        self.__dict__[attr] = handle
        return handle

    def reset(self) -> None:
        _refuse("reset")

    def reset_device(self) -> None:
        """Zero every word (no kernel may be running on the set)."""
        if self._dwords is None:
            raise ValueError(f"{type(self).__name__} is closed")
        zeros = np.zeros(self._layout_.n_words, dtype=np.uint64)
        self._dwords.copy_to_device(zeros)

    def count_invalid(self) -> None:
        _refuse("count_invalid")

    def release_thread(self) -> int:
        return -1

    def memory(self) -> dict:
        lay = self._layout_
        return {"bytes_per_copy": lay.copy_size, "owned_copies": lay.shards, "claimed": 0,
                "region_bytes": lay.size, "bytes_in_use": lay.size, "device": True}

    def close(self) -> None:
        self._dwords = None

    def __repr__(self) -> str:
        state = "closed" if self._dwords is None else ("simulated device" if SIMULATOR
                                                         else "device")
        return f"<{type(self).__name__} {len(self._specs)} metrics, {state}>"


class _DeviceKernelMethod:
    """A ``@kernel_method`` of a device set, called from Python: its body runs with the device
    set inside a (simulated) kernel; outside one, it raises as any record does."""

    def __init__(self, km):
        self.km = km

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.km
        km = self.km

        def call(*args, **kwargs):
            values = km._arguments(obj, args, kwargs)
            if not _in_simulated_kernel():
                _refuse(km.name)
            return km.func(obj, *values)
        call.__name__ = call.__qualname__ = km.name
        call.__wrapped__ = km.func
        return call


class _Region:
    """What readers ask of a set's region, for a device set (no file, no mapping)."""

    path = None
    writable = True
    data_offset = None

    def __init__(self):
        self.created_ns = time.time_ns()


def device_type(set_class):
    """The numba type of ``set_class``'s device sets (for signatures: ``compile_ptx``)."""
    from ._target import set_type
    return set_type(set_class, set_class._layout(_ms.CACHE_LINE))


def device_metric_set(set_class, *, const_labels=None):
    """A device set of ``set_class`` (what ``set_class.cuda()`` returns)."""
    from ._target import set_type
    cls = _classes.get(set_class)
    if cls is None:
        bases = (DeviceMetricSet, set_class)
        if not SIMULATOR:
            from numba.cuda.args import ArgHint
            bases += (ArgHint,)
        namespace = {"__module__": set_class.__module__,
                     "__qualname__": f"Cuda{set_class.__qualname__}"}
        namespace.update({name: _DeviceKernelMethod(km)
                          for name, km in set_class._kernel_methods.items()})
        cls = _classes[set_class] = type(f"Cuda{set_class.__name__}", bases, namespace)
    labels = set_class._check_const_labels(const_labels)
    layout = set_class._layout(_ms.CACHE_LINE)
    obj = cls.__new__(cls)
    obj._layout_ = layout
    obj._region = _Region()
    obj._base = obj._wbase = None
    obj._mv = None
    obj.const_labels = labels
    obj._nbtype = set_type(set_class, layout)
    obj._dwords = cuda.to_device(np.zeros(layout.n_words, dtype=np.uint64))
    return obj
