"""Raw-address operations for the library's own regions (internal).

Metric sets and trace rings reach kernels as base addresses; their values sit
at compile-time offsets from there.  These intrinsics read and write such
addresses (``uintp``) with LLVM atomics of a stated ordering:

* ``add_u64`` / ``add_f64`` / ``min_f64`` / ``max_f64``: relaxed read-modify-write
  (a ``lock``-prefixed instruction, or a cmpxchg loop for floats);
* ``load_*`` / ``store_*``: relaxed, or acquire/release where named;
* ``cas_u64``: sequentially consistent compare-and-swap;
* ``fence_acquire`` / ``fence_release``;
* ``f64_bits`` / ``f32_bits``: IEEE-754 bit patterns, no conversion;
* ``thread_id``: ``pthread_self()``, declared ``readnone`` so LLVM hoists it out
  of recording loops.

The public atomics on numpy arrays and records are in :mod:`._atomics`.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._compat import atomic_rmw

_LLVM_ORDER = {"relaxed": "monotonic", "acquire": "acquire", "release": "release"}


# Metric sets and trace rings are passed to kernels as base addresses with
# compile-time offsets; these operate on such addresses (uintp).

def _address_pointer(builder, addr, llty):
    return builder.inttoptr(addr, llty.as_pointer())


def _make_address_rmw(opcode: str, nbty):
    @intrinsic
    def _addr_rmw(typingctx, addr, val):
        sig = nbty(types.uintp, nbty)

        def codegen(context, builder, sig, args):
            ptr = _address_pointer(builder, args[0], context.get_value_type(nbty))
            return atomic_rmw(builder, opcode, ptr, args[1], "monotonic")

        return sig, codegen

    return _addr_rmw


def _make_address_load(nbty, order):
    @intrinsic
    def _addr_load(typingctx, addr):
        sig = nbty(types.uintp)

        def codegen(context, builder, sig, args):
            ptr = _address_pointer(builder, args[0], context.get_value_type(nbty))
            return builder.load_atomic(ptr, _LLVM_ORDER[order], nbty.bitwidth // 8)

        return sig, codegen

    return _addr_load


def _make_address_store(nbty, order):
    @intrinsic
    def _addr_store(typingctx, addr, val):
        sig = types.void(types.uintp, nbty)

        def codegen(context, builder, sig, args):
            ptr = _address_pointer(builder, args[0], context.get_value_type(nbty))
            builder.store_atomic(args[1], ptr, _LLVM_ORDER[order], nbty.bitwidth // 8)
            return context.get_dummy_value()

        return sig, codegen

    return _addr_store


add_u64 = _make_address_rmw("add", types.uint64)
add_f64 = _make_address_rmw("fadd", types.float64)
max_u64 = _make_address_rmw("umax", types.uint64)
min_f64 = _make_address_rmw("fmin", types.float64)
max_f64 = _make_address_rmw("fmax", types.float64)
load_u64 = _make_address_load(types.uint64, "relaxed")
load_f64 = _make_address_load(types.float64, "relaxed")
load_u64_acquire = _make_address_load(types.uint64, "acquire")
store_u64 = _make_address_store(types.uint64, "relaxed")
store_f64 = _make_address_store(types.float64, "relaxed")
store_u64_release = _make_address_store(types.uint64, "release")


@intrinsic
def cas_u64(typingctx, addr, expected, desired):
    """Compare-and-swap a u64 at ``addr``; returns the value seen."""
    sig = types.uint64(types.uintp, types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        ptr = _address_pointer(builder, args[0], ir.IntType(64))
        res = builder.cmpxchg(ptr, args[1], args[2], "seq_cst", "acquire")
        return builder.extract_value(res, 0)

    return sig, codegen


@intrinsic
def fence_acquire(typingctx):
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("acquire")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fence_release(typingctx):
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("release")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def f64_bits(typingctx, value):
    """The IEEE-754 bit pattern of a float64 as uint64 (no conversion)."""
    sig = types.uint64(types.float64)

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[0], sig.args[0], types.float64)
        return builder.bitcast(v, ir.IntType(64))

    return sig, codegen


@intrinsic
def f32_bits(typingctx, value):
    """The IEEE-754 bit pattern of ``value`` rounded to float32, as uint32."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def thread_id(typingctx):
    """``pthread_self()``: unique among live threads (a new thread may reuse a dead one's)."""
    sig = types.uint64()

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "pthread_self")
        fn.attributes.add("nounwind")
        fn.attributes.add("readnone")      # a thread's id never changes: calls can be hoisted
        return builder.call(fn, [])

    return sig, codegen


@intrinsic
def unlikely(typingctx, cond):
    """``cond``, which LLVM is told is almost always False (``llvm.expect``): the code
    it guards is laid out away from the hot path."""
    if not isinstance(cond, types.Boolean):
        return None

    def codegen(context, builder, sig, args):
        i1 = ir.IntType(1)
        fn = builder.module.declare_intrinsic("llvm.expect", [i1], ir.FunctionType(i1, [i1, i1]))
        return builder.call(fn, [args[0], ir.Constant(i1, 0)])

    return types.boolean(cond), codegen
