"""What metric sets and tracers share as kernel arguments.

How an object reaches a kernel (numba's extension API, in call order)::

    typeof hook       ``obj._numba_type_`` (a :class:`numba.types.Type` that carries the
                      layout, so code compiled for one layout never runs on another)
    data model        :class:`OwnedAddressModel`: ``{base: uintp, pid: u64, entry: i64}``
                      enabled, ``{}`` disabled (an empty struct: no register, no code);
                      ``entry`` is the thread's copy or ring, looked up where a thread
                      receives the object
    unbox             :func:`unbox_address` reads ``obj._kernel_address`` (raises for a
                      closed object) and ``obj._kernel_pid`` (this process's id), and
                      looks the entry up
    attribute typing  ``@infer_getattr`` templates map ``obj.<name>`` to handle types
    lowering          ``@lower_getattr_generic`` builds the handle (base + constant offset)
    methods           ``@overload_method`` on the handle types: the recording code

Both own a :class:`~engram_numba._region.Region`.  The pid travels with the
address because a forked child keeps its parent's thread ids: the claim tables
(:mod:`._claim`) key ownership by (thread, process).
"""

from __future__ import annotations

import os
import weakref

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import NativeValue, models

_pid = os.getpid()
_live = weakref.WeakSet()


def current_pid() -> int:
    """This process's id (cached; refreshed in a forked child)."""
    return _pid


def _after_fork_in_child():
    global _pid
    _pid = os.getpid()
    for obj in list(_live):
        try:
            obj._after_fork_in_child()
        except Exception:  # a child must start even if one object cannot be reset
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def with_entry(builder, fe_type, value):
    """``value`` (a struct whose members start with base, pid, entry) with ``entry`` set
    to the calling thread's entry of ``fe_type.claim_table``."""
    if not fe_type.enabled:
        return value
    from ._claim import call_claim
    offset, stride, n = fe_type.claim_table
    base = builder.extract_value(value, 0)
    table = builder.add(base, ir.Constant(base.type, offset))
    entry = call_claim(builder, table, stride, n, builder.extract_value(value, 1),
                       getattr(fe_type, "claim_thread_words", None))
    return builder.insert_value(value, entry, 2)


_PARFOR_BODY = "__numba_parfor_gufunc"


class OwnedAddressModel(models.StructModel):
    """Enabled: the region's base address, the caller's pid and ``entry``: the calling
    thread's entry of the object's
    claim table (its copy of a metric set's hot values, its trace ring), or -1.

    The entry is looked up where a thread receives the value: when a kernel
    unboxes it from Python, when a ``prange`` worker enters the loop body numba
    outlined for it (a function numba names ``__numba_parfor_gufunc_*``; the
    tests check every threading layer), and when it is loaded from memory
    (generators, containers).  A call from one compiled function to another
    stays on its thread, so the entry travels with the value as an argument, and
    a kernel's records use it without any lookup.  The type's ``claim_table``
    gives ``(offset of the table from base, bytes per entry, entries)``.
    """

    def __init__(self, dmm, fe_type):
        members = [("base", types.uintp), ("pid", types.uint64), ("entry", types.int64)] \
            if fe_type.enabled else []          # disabled: nothing at all (no register, no code)
        super().__init__(dmm, fe_type, members)

    def from_argument(self, builder, value):
        value = super().from_argument(builder, value)
        if _PARFOR_BODY in builder.function.name:
            return with_entry(builder, self.fe_type, value)     # a worker thread's own
        return value

    def from_data(self, builder, value):
        return with_entry(builder, self.fe_type, super().from_data(builder, value))

    def load_from_data_pointer(self, builder, ptr, align=None):
        return with_entry(builder, self.fe_type,
                          super().load_from_data_pointer(builder, ptr, align))


def unbox_address(typ, obj, c):
    """Unbox ``_kernel_address`` (which raises for a closed or unusable object) and the pid."""
    value = cgutils.create_struct_proxy(typ)(c.context, c.builder)
    if not typ.enabled:
        return NativeValue(value._getvalue())
    failed = cgutils.alloca_once_value(c.builder, cgutils.true_bit)
    addr = c.pyapi.object_getattr_string(obj, "_kernel_address")
    with c.builder.if_then(cgutils.is_not_null(c.builder, addr), likely=True):
        ptr = c.pyapi.long_as_voidptr(addr)
        value.base = c.builder.ptrtoint(ptr, c.context.get_value_type(types.uintp))
        c.pyapi.decref(addr)
        pid = c.pyapi.object_getattr_string(obj, "_kernel_pid")
        with c.builder.if_then(cgutils.is_not_null(c.builder, pid), likely=True):
            value.pid = c.pyapi.long_as_ulonglong(pid)
            c.pyapi.decref(pid)
            if getattr(typ, "claim_table", None) is not None:
                value._setvalue(with_entry(c.builder, typ, value._getvalue()))
            c.builder.store(cgutils.false_bit, failed)
    return NativeValue(value._getvalue(), is_error=c.builder.load(failed))


class KernelArgument:
    """Mixin: an object with a region (None when disabled) passed to kernels by address.

    Subclasses set ``_region``, ``_base`` (the region's address, cached) and
    ``_nbtype`` (their numba type), and call :meth:`_track` once bound.
    """

    _region = None
    _base = None
    _wbase = None       # _base while open and writable (Python's fast paths test it)
    _nbtype = None
    _kind = "object"

    @property
    def _numba_type_(self):
        # a closed object types normally; unboxing it raises ValueError("... is closed")
        if self._region is not None and not self._region.writable:
            raise TypeError(f"{type(self).__name__} attached read-only cannot be passed to a "
                            f"kernel; attach with writable=True to record")
        return self._nbtype

    @property
    def _kernel_address(self) -> int:
        if self._base is None:
            state = "closed" if self._region is not None else "disabled"
            raise ValueError(f"{type(self).__name__} is {state}")
        return self._base

    @property
    def _kernel_pid(self) -> int:
        return _pid

    @property
    def enabled(self) -> bool:
        return self._region is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (a disabled object is never closed)."""
        return self._region is not None and self._base is None

    @property
    def path(self):
        """The backing file, or None for anonymous and disabled objects."""
        return None if self._region is None else self._region.path

    def _require_open(self) -> None:
        if self._region is not None and self._base is None:
            raise ValueError(f"{type(self).__name__} is closed")

    def _require_writable(self) -> None:
        """Raise unless this object may be written (recorded into, reset, configured)."""
        self._require_open()
        if self._region is not None and not self._region.writable:
            raise TypeError(f"{type(self).__name__} is attached read-only: it cannot be "
                            f"written; attach with writable=True")

    def _address(self) -> int | None:
        """Base address for Python-side writes; None when disabled (writes are no-ops).

        Raises ValueError when closed and TypeError when attached read-only.
        """
        self._require_writable()
        return self._base

    def _track(self) -> None:
        """Register for the fork hook (anonymous memory is private to a forked child)."""
        _live.add(self)

    def _after_fork_in_child(self) -> None:
        """Called in a forked child; subclasses reset what the child's copy must not keep."""

    def close(self) -> None:
        """Release the memory (kernels must not be running on it)."""
        if self._region is not None:
            self._base = self._wbase = None
            self._region.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
