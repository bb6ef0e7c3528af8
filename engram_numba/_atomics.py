"""CPU atomic operations usable inside ``@njit`` code.

numba has atomics for CUDA only; on the CPU every ``a[i] += 1`` is a plain
load-add-store that loses updates when two threads race.  These functions emit
LLVM ``atomicrmw`` / ``cmpxchg`` / atomic ``load``/``store`` / ``fence``
instructions, so a kernel running in several ``nogil`` threads or in a
``prange`` loop can share counters exactly.

The argument order follows ``numba.cuda.atomic``: ``atomic_add(ary, idx, val)``.
A *target* is either

* an element of a numpy array: ``idx`` is an integer (negative wraps around,
  bounds are checked when numba's ``boundscheck`` is on) or a tuple with one
  integer per dimension, or
* a field of a structured-array record: ``ary`` is a record (``arr[i]`` inside
  a kernel refers to the array's memory, not a copy) and ``idx`` is the field
  name as a string literal.

Element types: signed and unsigned integers of 8-64 bits, float32, float64.
The data must be naturally aligned (numba types arrays of unaligned structured
dtypes as unaligned: build such dtypes with ``align=True``) and writable.

Memory ordering (C++11 names):

* ``atomic_add``, ``atomic_sub``, ``atomic_max``, ``atomic_min``,
  ``atomic_exchange``: relaxed.  They are exact (no update is lost) but do not
  order other memory accesses.  That is what counting needs, and it is the
  ordering of ``numba.cuda.atomic``.
* ``atomic_cas``: sequentially consistent on success, acquire on failure.
* ``atomic_load``: ``"acquire"`` (default) or ``"relaxed"``.
* ``atomic_store``: ``"release"`` (default) or ``"relaxed"``.
* ``atomic_fence``: ``"seq_cst"`` (default), ``"acquire"``, ``"release"``,
  ``"acq_rel"``.

Float ``atomic_max``/``atomic_min`` follow IEEE-754 maxNum/minNum: a NaN
operand is ignored.  Every read-modify-write returns the value seen before.

Called from plain Python the same functions run through a small compiled
wrapper, so they stay atomic with respect to kernels running concurrently.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload

from ._compat import atomic_rmw

__all__ = [
    "atomic_add",
    "atomic_sub",
    "atomic_max",
    "atomic_min",
    "atomic_exchange",
    "atomic_cas",
    "atomic_load",
    "atomic_store",
    "atomic_fence",
]

_LLVM_ORDER = {
    "relaxed": "monotonic",
    "acquire": "acquire",
    "release": "release",
    "acq_rel": "acq_rel",
    "seq_cst": "seq_cst",
}
_LOAD_ORDERS = ("relaxed", "acquire")
_STORE_ORDERS = ("relaxed", "release")
_FENCE_ORDERS = ("acquire", "release", "acq_rel", "seq_cst")

_ACCEPTED = (
    "ary must be a writable, aligned numpy array of integers or floats (idx: an "
    "integer, or a tuple of one integer per dimension), or a structured-array "
    "record (idx: a field name given as a string literal)"
)


# --------------------------------------------------------------------------
# Target resolution: (ary, idx) -> element type + pointer codegen
# --------------------------------------------------------------------------

def _is_index_int(t) -> bool:
    return isinstance(t, (types.Integer, types.IntEnumMember))


def _element_type(op: str, ary, idx):
    """Type-check a target and return the element's numba type."""
    if isinstance(ary, types.Record):
        if not isinstance(idx, types.StringLiteral):
            raise errors.TypingError(
                f"{op}: a record target needs the field name as a string literal, got {idx}; {_ACCEPTED}")
        name = idx.literal_value
        if name not in ary.fields:
            raise errors.TypingError(
                f"{op}: record has no field {name!r}; fields: {sorted(ary.fields)}")
        ety = ary.typeof(name)
        offset = ary.offset(name)
        size = np.dtype(str(ety)).itemsize if isinstance(ety, (types.Integer, types.Float)) else 0
        if size and offset % size:
            raise errors.TypingError(
                f"{op}: field {name!r} sits at offset {offset}, not a multiple of its size {size}; "
                "build the dtype with align=True")
    elif isinstance(ary, types.Array):
        if not ary.mutable:
            raise errors.TypingError(f"{op}: the array is read-only")
        if not ary.aligned:
            raise errors.TypingError(
                f"{op}: the array is not aligned; build structured dtypes with align=True")
        ety = ary.dtype
        if ary.ndim == 1 and _is_index_int(idx):
            pass
        elif (isinstance(idx, types.BaseTuple) and len(idx) == ary.ndim
              and all(_is_index_int(t) for t in idx)):
            pass
        else:
            raise errors.TypingError(
                f"{op}: a {ary.ndim}-d array needs {'an integer' if ary.ndim == 1 else f'a tuple of {ary.ndim} integers'}"
                f" as index, got {idx}")
    else:
        raise errors.TypingError(f"{op}: unsupported target {ary}; {_ACCEPTED}")
    if isinstance(ety, types.Boolean) or not isinstance(ety, (types.Integer, types.Float)):
        raise errors.TypingError(f"{op}: element type {ety} is not an integer or float; {_ACCEPTED}")
    return ety


def _target_pointer(context, builder, aryty, ary, idxty, idx):
    """LLVM pointer to the target element (see :func:`_element_type`)."""
    if isinstance(aryty, types.Record):
        ety = aryty.typeof(idxty.literal_value)
        base = builder.bitcast(ary, ir.IntType(8).as_pointer())
        ptr = builder.gep(base, [ir.Constant(ir.IntType(64), aryty.offset(idxty.literal_value))])
        return builder.bitcast(ptr, context.get_data_type(ety).as_pointer())
    arr = context.make_array(aryty)(context, builder, ary)
    if isinstance(idxty, types.BaseTuple):
        items = cgutils.unpack_tuple(builder, idx, len(idxty))
        itypes = list(idxty)
    else:
        items, itypes = [idx], [idxty]
    inds = [context.cast(builder, v, t, types.intp) for v, t in zip(items, itypes)]
    return cgutils.get_item_pointer(context, builder, aryty, arr, inds,
                                    wraparound=True, boundscheck=True)


def _is_float(t) -> bool:
    return isinstance(t, types.Float)


def _is_signed(t) -> bool:
    return isinstance(t, types.Integer) and t.signed


def _check_value(op, name, ety, val):
    if not isinstance(val, (types.Integer, types.Float, types.IntEnumMember, types.Boolean)):
        raise errors.TypingError(f"{op}: {name} must be a number, got {val}")
    if isinstance(ety, types.Integer) and isinstance(val, types.Float):
        raise errors.TypingError(
            f"{op}: cannot store a float {name} into an integer element ({ety}) without losing it")


def _literal_order(op, order, allowed, default):
    if order is None or isinstance(order, (types.Omitted, types.NoneType)):
        return default
    if isinstance(order, str):
        value = order
    elif isinstance(order, types.StringLiteral):
        value = order.literal_value
    else:
        raise errors.TypingError(
            f"{op}: order must be a string literal, one of {allowed}; got {order}")
    if value not in allowed:
        raise errors.TypingError(f"{op}: order must be one of {allowed}; got {value!r}")
    return value


# --------------------------------------------------------------------------
# Read-modify-write
# --------------------------------------------------------------------------

def _rmw_opcode(op: str, ety) -> str:
    if op == "add":
        return "fadd" if _is_float(ety) else "add"
    if op == "sub":
        return "fsub" if _is_float(ety) else "sub"
    if op == "max":
        return "fmax" if _is_float(ety) else ("max" if _is_signed(ety) else "umax")
    if op == "min":
        return "fmin" if _is_float(ety) else ("min" if _is_signed(ety) else "umin")
    if op == "exchange":
        return "xchg"
    raise AssertionError(op)


def _make_rmw_intrinsic(op: str):
    public = f"atomic_{op}"

    @intrinsic
    def _rmw(typingctx, ary, idx, val):
        ety = _element_type(public, ary, idx)
        _check_value(public, "val", ety, val)
        sig = ety(ary, idx, val)

        def codegen(context, builder, sig, args):
            aryty, idxty, valty = sig.args
            ptr = _target_pointer(context, builder, aryty, args[0], idxty, args[1])
            v = context.cast(builder, args[2], valty, ety)
            return atomic_rmw(builder, _rmw_opcode(op, ety), ptr, v, "monotonic")

        return sig, codegen

    return _rmw


_rmw_add = _make_rmw_intrinsic("add")
_rmw_sub = _make_rmw_intrinsic("sub")
_rmw_max = _make_rmw_intrinsic("max")
_rmw_min = _make_rmw_intrinsic("min")
_rmw_xchg = _make_rmw_intrinsic("exchange")


@intrinsic
def _cas(typingctx, ary, idx, expected, desired):
    ety = _element_type("atomic_cas", ary, idx)
    _check_value("atomic_cas", "expected", ety, expected)
    _check_value("atomic_cas", "desired", ety, desired)
    sig = ety(ary, idx, expected, desired)

    def codegen(context, builder, sig, args):
        aryty, idxty, ety_, dty = sig.args
        ptr = _target_pointer(context, builder, aryty, args[0], idxty, args[1])
        exp = context.cast(builder, args[2], ety_, ety)
        des = context.cast(builder, args[3], dty, ety)
        if _is_float(ety):
            # cmpxchg works on integers: compare the bit patterns
            ity = ir.IntType(ety.bitwidth)
            ptr = builder.bitcast(ptr, ity.as_pointer())
            res = builder.cmpxchg(ptr, builder.bitcast(exp, ity), builder.bitcast(des, ity),
                                  "seq_cst", "acquire")
            return builder.bitcast(builder.extract_value(res, 0), context.get_value_type(ety))
        res = builder.cmpxchg(ptr, exp, des, "seq_cst", "acquire")
        return builder.extract_value(res, 0)

    return sig, codegen


def _make_load_intrinsic(order: str):
    @intrinsic
    def _load(typingctx, ary, idx):
        ety = _element_type("atomic_load", ary, idx)
        sig = ety(ary, idx)

        def codegen(context, builder, sig, args):
            aryty, idxty = sig.args
            ptr = _target_pointer(context, builder, aryty, args[0], idxty, args[1])
            return builder.load_atomic(ptr, _LLVM_ORDER[order], ety.bitwidth // 8)

        return sig, codegen

    return _load


def _make_store_intrinsic(order: str):
    @intrinsic
    def _store(typingctx, ary, idx, val):
        ety = _element_type("atomic_store", ary, idx)
        _check_value("atomic_store", "val", ety, val)
        sig = types.void(ary, idx, val)

        def codegen(context, builder, sig, args):
            aryty, idxty, valty = sig.args
            ptr = _target_pointer(context, builder, aryty, args[0], idxty, args[1])
            v = context.cast(builder, args[2], valty, ety)
            builder.store_atomic(v, ptr, _LLVM_ORDER[order], ety.bitwidth // 8)
            return context.get_dummy_value()

        return sig, codegen

    return _store


def _make_fence_intrinsic(order: str):
    @intrinsic
    def _fence(typingctx):
        sig = types.void()

        def codegen(context, builder, sig, args):
            builder.fence(_LLVM_ORDER[order])
            return context.get_dummy_value()

        return sig, codegen

    return _fence


_LOADS = {o: _make_load_intrinsic(o) for o in _LOAD_ORDERS}
_STORES = {o: _make_store_intrinsic(o) for o in _STORE_ORDERS}
_FENCES = {o: _make_fence_intrinsic(o) for o in _FENCE_ORDERS}


# --------------------------------------------------------------------------
# Public functions: njit overloads + a compiled fallback for plain Python
# --------------------------------------------------------------------------

_python_wrappers: dict = {}


def _from_python(key, make):
    fn = _python_wrappers.get(key)
    if fn is None:
        fn = _python_wrappers[key] = njit(make())
    return fn


def atomic_add(ary, idx, val):
    """Atomically ``ary[idx] += val``; return the previous value (relaxed)."""
    return _from_python("add", lambda: lambda a, i, v: atomic_add(a, i, v))(ary, idx, val)


def atomic_sub(ary, idx, val):
    """Atomically ``ary[idx] -= val``; return the previous value (relaxed)."""
    return _from_python("sub", lambda: lambda a, i, v: atomic_sub(a, i, v))(ary, idx, val)


def atomic_max(ary, idx, val):
    """Atomically ``ary[idx] = max(ary[idx], val)``; return the previous value (relaxed)."""
    return _from_python("max", lambda: lambda a, i, v: atomic_max(a, i, v))(ary, idx, val)


def atomic_min(ary, idx, val):
    """Atomically ``ary[idx] = min(ary[idx], val)``; return the previous value (relaxed)."""
    return _from_python("min", lambda: lambda a, i, v: atomic_min(a, i, v))(ary, idx, val)


def atomic_exchange(ary, idx, val):
    """Atomically store ``val`` into ``ary[idx]``; return the previous value (relaxed)."""
    return _from_python("xchg", lambda: lambda a, i, v: atomic_exchange(a, i, v))(ary, idx, val)


def atomic_cas(ary, idx, expected, desired):
    """Compare-and-swap: if ``ary[idx] == expected`` store ``desired``.

    Returns the value seen; the swap happened iff it equals ``expected``
    (floats compare by bit pattern).  Sequentially consistent on success,
    acquire on failure.
    """
    return _from_python("cas", lambda: lambda a, i, e, d: atomic_cas(a, i, e, d))(
        ary, idx, expected, desired)


def atomic_load(ary, idx, order="acquire"):
    """Read ``ary[idx]`` atomically with ``order`` ``"acquire"`` or ``"relaxed"``."""
    if order not in _LOAD_ORDERS:
        raise ValueError(f"order must be one of {_LOAD_ORDERS}, got {order!r}")
    return _from_python(("load", order), lambda: (lambda a, i: atomic_load(a, i, order)))(ary, idx)


def atomic_store(ary, idx, val, order="release"):
    """Write ``ary[idx] = val`` atomically with ``order`` ``"release"`` or ``"relaxed"``."""
    if order not in _STORE_ORDERS:
        raise ValueError(f"order must be one of {_STORE_ORDERS}, got {order!r}")
    _from_python(("store", order), lambda: (lambda a, i, v: atomic_store(a, i, v, order)))(ary, idx, val)


def atomic_fence(order="seq_cst"):
    """A memory fence: ``"seq_cst"`` (default), ``"acquire"``, ``"release"`` or ``"acq_rel"``."""
    if order not in _FENCE_ORDERS:
        raise ValueError(f"order must be one of {_FENCE_ORDERS}, got {order!r}")
    _from_python(("fence", order), lambda: (lambda: atomic_fence(order)))()


def _register_rmw(pyfunc, intrinsic_fn):
    @overload(pyfunc, prefer_literal=True)
    def _ol(ary, idx, val):
        _check_value(pyfunc.__name__, "val", _element_type(pyfunc.__name__, ary, idx), val)
        return lambda ary, idx, val: intrinsic_fn(ary, idx, val)


for _f, _i in ((atomic_add, _rmw_add), (atomic_sub, _rmw_sub), (atomic_max, _rmw_max),
               (atomic_min, _rmw_min), (atomic_exchange, _rmw_xchg)):
    _register_rmw(_f, _i)


@overload(atomic_cas, prefer_literal=True)
def _ol_cas(ary, idx, expected, desired):
    ety = _element_type("atomic_cas", ary, idx)
    _check_value("atomic_cas", "expected", ety, expected)
    _check_value("atomic_cas", "desired", ety, desired)
    return lambda ary, idx, expected, desired: _cas(ary, idx, expected, desired)


@overload(atomic_load, prefer_literal=True)
def _ol_load(ary, idx, order="acquire"):
    _element_type("atomic_load", ary, idx)
    fn = _LOADS[_literal_order("atomic_load", order, _LOAD_ORDERS, "acquire")]
    return lambda ary, idx, order="acquire": fn(ary, idx)


@overload(atomic_store, prefer_literal=True)
def _ol_store(ary, idx, val, order="release"):
    _check_value("atomic_store", "val", _element_type("atomic_store", ary, idx), val)
    fn = _STORES[_literal_order("atomic_store", order, _STORE_ORDERS, "release")]
    return lambda ary, idx, val, order="release": fn(ary, idx, val)


@overload(atomic_fence, prefer_literal=True)
def _ol_fence(order="seq_cst"):
    fn = _FENCES[_literal_order("atomic_fence", order, _FENCE_ORDERS, "seq_cst")]
    return lambda order="seq_cst": fn()
