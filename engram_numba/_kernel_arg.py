"""What metric sets and tracers share as kernel arguments.

Both own a :class:`~engram_numba._layout.Region` and reach kernels as its base
address: enabled, the native value is ``{base: uintp}``; disabled, it is an
empty struct that takes no register, so a kernel compiled with it has the
machine code of a kernel without the calls.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import NativeValue, models


class AddressModel(models.StructModel):
    """Enabled: the region's base address.  Disabled: nothing at all."""

    def __init__(self, dmm, fe_type):
        members = [("base", types.uintp)] if fe_type.enabled else []
        super().__init__(dmm, fe_type, members)


def unbox_address(typ, obj, c):
    """Unbox an object's ``_kernel_address`` (which raises for a closed or unusable object)."""
    value = cgutils.create_struct_proxy(typ)(c.context, c.builder)
    if not typ.enabled:
        return NativeValue(value._getvalue())
    addr = c.pyapi.object_getattr_string(obj, "_kernel_address")
    failed = cgutils.is_null(c.builder, addr)
    with c.builder.if_then(c.builder.not_(failed), likely=True):
        ptr = c.pyapi.long_as_voidptr(addr)
        value.base = c.builder.ptrtoint(ptr, c.context.get_value_type(types.uintp))
        c.pyapi.decref(addr)
    return NativeValue(value._getvalue(), is_error=failed)


class KernelArgument:
    """Mixin: an object with a region (None when disabled) passed to kernels by address.

    Subclasses set ``_region``, ``_base`` (the region's address, cached) and
    ``_nbtype`` (their numba type).
    """

    _region = None
    _base = None
    _nbtype = None

    @property
    def _numba_type_(self):
        if self._region is not None and not self._region.writable:
            raise TypeError(f"{type(self).__name__} attached read-only cannot be passed to a kernel")
        return self._nbtype

    @property
    def _kernel_address(self) -> int:
        if self._base is None:
            state = "closed" if self._region is not None else "disabled"
            raise ValueError(f"{type(self).__name__} is {state}")
        return self._base

    @property
    def enabled(self) -> bool:
        return self._region is not None

    @property
    def path(self):
        """The backing file, or None for anonymous and disabled objects."""
        return None if self._region is None else self._region.path

    def close(self) -> None:
        """Release the memory (kernels must not be running on it)."""
        if self._region is not None:
            self._base = None
            self._region.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
