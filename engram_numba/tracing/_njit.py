"""numba support for tracers: pass the tracer into a kernel, call its event handles.

``tr.<event>.emit(*fields)``, ``tr.<span>.begin(*fields)`` and ``tr.<span>.end()``
compile to a threshold load, the packing of the fields into the slot's words
(generated from the set's table by :func:`_pack`, with range checks where an
argument type can exceed its field), and the ring write of :mod:`._ring`.  The
tracer's geometry and the set's layout are part of the numba types, so all of
it is specialised with constants; the native value is the region's base
address and the caller's pid.  A disabled tracer has its own types, with an
empty value and methods that compile to nothing.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._cache import FINGERPRINT, class_ref, rebuild_type, resolve_class
from .._inline import always_inline
from .._kernel_arg import (MAX_ARGS, HandleType, OwnerType, arguments, check_enum_argument,
                           generate, register_method, register_owner, returning, star,
                           variadic)
from .._methods import register_kernel_method
from .._values import KernelTypingError
from . import _ring as ringbuf
from .kinds import SPAN
from .schema import FLAG_EVENT


class _RingOwners:
    """A tracer's, or one of its types', table of ring owners (from ``geometry``)."""

    @property
    def claim_table(self):
        """(offset, bytes per entry, entries) of the ring owners (see OwnedAddressModel)."""
        return (self.geometry[3] + ringbuf.R_OWNER, ringbuf.RING_HEADER_SIZE, self.geometry[0])

    claim_thread_words = ringbuf.CLAIM_THREAD_WORDS


class TracerType(_RingOwners, OwnerType):
    """numba type of a tracer of one event set (enabled or disabled).

    Making one registers the set's kernel methods on the type (the event set's
    module, below this one, does not know it)."""

    def __init__(self, set_class, layout, enabled: bool, n_rings: int, capacity: int,
                 clock: int):
        self.set_class = set_class
        self.layout = layout
        self.enabled = enabled
        self.n_rings, self.capacity, self.clock = n_rings, capacity, clock
        n_types = len(layout.types)
        self.geometry = (n_rings, capacity, clock, ringbuf.ring_headers_offset(n_types),
                         ringbuf.slots_offset(n_types, n_rings))
        self.handle_types = {t.name: _handle_type(t, layout, enabled, self.geometry)
                             for t in layout.types}
        state = "" if enabled else "Disabled"
        geometry = f"{n_rings}x{capacity},clock={clock}" if enabled else ""
        super().__init__(name=f"{state}Tracer[{set_class.__qualname__}@{layout.hash[:16]}"
                              f"{',' if geometry else ''}{geometry}]")
        for km in set_class._kernel_methods.values():
            register_kernel_method(km, TracerType)

    @property
    def key(self):
        layout = getattr(self, "layout", None)
        return (getattr(self, "set_class", None), getattr(layout, "hash", None),
                getattr(self, "enabled", None), getattr(self, "geometry", None), FINGERPRINT)

    def __reduce__(self):
        return rebuild_type, (_tracer_type, (class_ref(self.set_class), self.layout.hash,
                                             self.enabled, self.n_rings, self.capacity,
                                             self.clock, FINGERPRINT))


def _tracer_type(ref, layout_hash, enabled, n_rings, capacity, clock, fingerprint):
    if fingerprint != FINGERPRINT:
        raise ValueError("written by another version")
    set_class = resolve_class(ref)
    if set_class.layout.hash != layout_hash:
        raise ValueError("layout changed")
    return TracerType(set_class, set_class.layout, enabled, n_rings, capacity, clock)


class TypeHandleType(_RingOwners, HandleType):
    """One declared type of a tracer inside a kernel: its layout and the tracer's geometry."""

    def __init__(self, enabled, geometry, index, type_name, fields):
        self.enabled = enabled
        self.geometry = geometry
        self.index = index
        self.type_name = type_name
        self.fields = fields          # ((name, code, offset, size, lo, hi, enum class), ...)
        state = "" if enabled else "Disabled"
        super().__init__(name=f"{state}{type(self).__name__[:-4]}[{type_name}#{index}"
                              f"{[f[0] for f in fields]}]")

    @property
    def key(self):
        return tuple(getattr(self, f, None) for f in ("enabled", "geometry", "index",
                                                       "type_name", "fields"))

    def __reduce__(self):
        fields = tuple(f[:6] + (class_ref(f[6]),) for f in self.fields)
        return rebuild_type, (_handle_from, (type(self).__name__, self.enabled, self.geometry,
                                             self.index, self.type_name, fields, FINGERPRINT))


class EventHandleType(TypeHandleType):
    pass


class SpanHandleType(TypeHandleType):
    pass


def _handle_from(kind, enabled, geometry, index, type_name, fields, fingerprint):
    if fingerprint != FINGERPRINT:
        raise ValueError("written by another version")
    fields = tuple(f[:6] + (resolve_class(f[6]),) for f in fields)
    cls = {"EventHandleType": EventHandleType, "SpanHandleType": SpanHandleType}[kind]
    return cls(enabled, geometry, index, type_name, fields)


def _handle_type(t, layout, enabled, geometry):
    fields = []
    for name, ft in t.fields.items():
        lo = getattr(ft, "lo", None)
        hi = getattr(ft, "hi", None)
        enum_cls = getattr(ft, "enum", None)
        if enum_cls is not None:
            lo, hi = min(ft.values), max(ft.values)
        fields.append((name, ft.code, layout.offsets[(t.index, name)], ft.size, lo, hi, enum_cls))
    cls = SpanHandleType if t.kind is SPAN else EventHandleType
    return cls(enabled, geometry, t.index, t.name, tuple(fields))


register_owner(TracerType, (EventHandleType, SpanHandleType))


# -- argument typing -----------------------------------------------------------------------

def _check_args(h, method, args):
    args = star(args)
    if len(args) != len(h.fields):
        names = [f[0] for f in h.fields]
        raise KernelTypingError(f"{h.type_name}.{method}: takes {len(names)} field(s) {names}, "
                                 f"got {len(args)}")
    for (name, code, _, _, _, _, enum_cls), t in zip(h.fields, args):
        where = f"{h.type_name}.{method}: {name}"
        if code == "e":
            check_enum_argument(where, t, enum_cls)
        elif code in "iu":
            if isinstance(t, types.IntEnumMember):
                continue
            if isinstance(t, types.Boolean) or not isinstance(t, types.Integer):
                raise KernelTypingError(f"{where} must be an integer, got {t}")
        elif code in "fd":
            if not isinstance(t, (types.Integer, types.Float, types.IntEnumMember)) or \
                    isinstance(t, types.Boolean):
                raise KernelTypingError(f"{where} must be a number, got {t}")
        elif code == "b":
            if not isinstance(t, (types.Boolean, types.Integer)):
                raise KernelTypingError(f"{where} must be a bool, got {t}")


def _int_type(t):
    """(bitwidth, signed) of an integer-like numba type."""
    if isinstance(t, types.IntEnumMember):
        t = t.dtype
    if isinstance(t, types.Boolean):
        return 1, False
    return t.bitwidth, t.signed


@intrinsic
def _pack(typingctx, handle, args):
    """(ok, w2..w7): the fields packed into bytes 16..63 of a slot, type byte set.

    ``ok`` is False when an integer or enum argument is out of its field's
    range (checks are generated only where the argument type can exceed it).
    """
    fields = handle.fields
    arg_types = list(args) if isinstance(args, types.BaseTuple) else []
    sig = types.Tuple((types.boolean,) + (types.uint64,) * 6)(handle, args)

    def codegen(context, builder, sig, llargs):
        i64 = ir.IntType(64)
        words = [ir.Constant(i64, 0)] * 6
        words[0] = ir.Constant(i64, handle.index | (FLAG_EVENT << 8))
        ok = cgutils.true_bit
        values = cgutils.unpack_tuple(builder, llargs[1], len(arg_types))
        for (name, code, offset, size, lo, hi, enum_cls), t, v in zip(fields, arg_types, values):
            if code in "fd":
                target = types.float32 if code == "f" else types.float64
                fv = context.cast(builder, v, t, target)
                bits = builder.bitcast(fv, ir.IntType(32 if code == "f" else 64))
            elif code == "b":
                bv = context.cast(builder, v, t, types.boolean)
                bits = builder.zext(bv, ir.IntType(8))
            else:
                width, signed = _int_type(t)
                iv = context.cast(builder, v, t.dtype if isinstance(t, types.IntEnumMember) else t,
                                  types.int64 if signed else types.uint64)
                amin = -(1 << (width - 1)) if signed else 0
                amax = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
                member_ok = code == "e" and isinstance(t, types.IntEnumMember)
                if code == "e" and not member_ok:
                    allowed = sorted({int(m) for m in enum_cls})
                    if allowed[-1] - allowed[0] + 1 == len(allowed):     # a contiguous range
                        lo, hi = allowed[0], allowed[-1]
                    else:
                        hit = cgutils.false_bit
                        for a in allowed:
                            if amin <= a <= amax:
                                hit = builder.or_(hit, builder.icmp_signed(
                                    "==", iv, ir.Constant(i64, a)) if signed else
                                    builder.icmp_unsigned("==", iv, ir.Constant(i64, a)))
                        ok = builder.and_(ok, hit)
                        lo, hi = amin, amax
                if not member_ok:
                    cmp = builder.icmp_signed if signed else builder.icmp_unsigned
                    if lo > amin:
                        ok = builder.and_(ok, cmp(">=", iv, ir.Constant(i64, lo)))
                    if hi < amax:
                        ok = builder.and_(ok, cmp("<=", iv, ir.Constant(i64, hi)))
                bits = builder.trunc(iv, ir.IntType(8 * size)) if size < 8 else iv
            wide = builder.zext(bits, i64) if bits.type.width < 64 else bits
            word = (offset - 16) // 8
            shift = (offset % 8) * 8
            if shift:
                wide = builder.shl(wide, ir.Constant(i64, shift))
            words[word] = builder.or_(words[word], wide)
        return context.make_tuple(builder, sig.return_type, [ok] + words)

    return sig, codegen


# -- methods ----------------------------------------------------------------------------------
# ``emit`` and ``begin`` take the fields as positional arguments; their functions are
# generated with explicit parameters (up to MAX_ARGS, the rest defaulting to None),
# once per event shape.  LLVM always inlines them (see .._inline): the recording
# code is part of the loop it is in (so LLVM can hoist the ring lookup out of it).
# A disabled handle's methods are inlined by numba itself and return a constant,
# so they vanish before LLVM ever sees a call: the kernel's machine code is that
# of the same kernel without the calls.

_HEAD = "h, " + ", ".join(f"a{i}=None" for i in range(MAX_ARGS))
_NAMES = {"np": np, "ringbuf": ringbuf, "_pack": _pack}


def _emit_typer(h, args):
    kind = "emit" if isinstance(h, EventHandleType) else "begin"
    _check_args(h, kind, args)
    n = len(args)
    if not h.enabled:
        return returning(_HEAD, "np.uint64(0)" if kind == "begin" else "False")
    _, CAP, CLK, TH_END, SLOTS = h.geometry
    # THRESHOLD: the offset of the type's threshold word (0 = off, see .config)
    consts = dict(CAP=CAP, CLK=CLK, TH_END=TH_END, SLOTS=SLOTS, INDEX=h.index,
                  THRESHOLD=ringbuf.TH_OFF + 8 * h.index)
    if kind == "emit":
        body = (f"    thresh = ringbuf.load_u64(h.base + THRESHOLD)\n"
                f"    if thresh == 0:\n"
                f"        return False\n"
                f"    ok, w2, w3, w4, w5, w6, w7 = _pack(h, {arguments('a', n)})\n"
                f"    if not ok:\n"
                f"        ringbuf.add_u64(h.base + ringbuf.INVALID_OFF, np.uint64(1))\n"
                f"        return False\n"
                f"    return ringbuf.emit(h.base, h.entry, TH_END, SLOTS, CAP, CLK, thresh,"
                f" w2, w3, w4, w5, w6, w7)\n")
    else:
        # a span of a type that is off is still pushed (unrecorded), so that its end
        # always closes it, whatever the switches do in between
        body = (f"    thresh = ringbuf.load_u64(h.base + THRESHOLD)\n"
                f"    ok, w2, w3, w4, w5, w6, w7 = _pack(h, {arguments('a', n)})\n"
                f"    if not ok:\n"
                f"        ringbuf.add_u64(h.base + ringbuf.INVALID_OFF, np.uint64(1))\n"
                f"        thresh = np.uint64(0)\n"
                f"    return ringbuf.span_begin(h.base, h.entry, TH_END, SLOTS, CAP, CLK,"
                f" INDEX, thresh, w2, w5, w6, w7)\n")
    return generate(("tracing", kind, n) + tuple(sorted(consts.items())), _HEAD, body,
                    dict(_NAMES, **consts))


register_method(EventHandleType, "emit", variadic(_emit_typer, "h"))
register_method(SpanHandleType, "begin", variadic(_emit_typer, "h"))


def _end(h):
    if not h.enabled:
        return returning("h")
    _, CAP, CLK, TH_END, SLOTS = h.geometry
    INDEX = h.index
    W2 = np.uint64(INDEX)

    def impl(h):
        return ringbuf.span_end(h.base, h.entry, TH_END, SLOTS, CAP, CLK, INDEX, W2)
    return always_inline(impl)


register_method(SpanHandleType, "end", _end)


def _release_thread(tr):
    if not tr.enabled:
        return lambda tr: -1
    NR, _, _, TH_END, _ = tr.geometry

    def impl(tr):
        return ringbuf.release_ring(tr.base, tr.pid, TH_END, NR)
    return impl


register_method(TracerType, "release_thread", _release_thread, inline="never")
