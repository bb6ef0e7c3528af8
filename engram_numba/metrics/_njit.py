"""numba support for metric sets: pass the set object into a kernel, call its methods.

Record methods (``inc``, ``add``, ``set``, ``sub``, ``observe``) return True when
they recorded and False when they dropped the record (bad label; always False
on a disabled set, where the branch then folds away).

* A set's numba type carries its class and layout hash.  Its native value is a
  single base address; every metric attribute (``m.requests``) becomes a
  *handle* type whose offsets, label sizes and bucket parameters are
  compile-time constants, so ``m.requests.inc(k)`` compiles to a bounds check
  and one ``lock add`` at ``base + constant + k * stride``.
* A disabled set has its own type with an empty native value: it occupies no
  argument register, and every method on it compiles to nothing, so the kernel's
  machine code is the same as if the calls were not written.
* Labels are checked at compile time (count, enum class) and at run time (range).
  An out-of-range label never touches memory outside the region: the record is
  counted in the set's ``invalid_records`` slot instead.
* ``@kernel_method`` functions are compiled for both types as ordinary overloads.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, errors
from numba.core.typing.templates import AttributeTemplate
from numba.extending import (infer_getattr, intrinsic, lower_getattr_generic,
                             make_attribute_wrapper, models, overload_method, register_model,
                             unbox)

from .._addr import add_u64, thread_id
from .._claim import ENTRY_BYTES, claim, home
from .._cache import FINGERPRINT, class_ref, rebuild_type, resolve_class
from .._kernel_arg import AddressModel, unbox_address
from . import _record as R
from .buckets import exponential_tables
from .layout import INVALID_OFFSET

_ONE = 1


class MetricSetType(types.Type):
    """numba type of a metric set instance (enabled or disabled)."""

    def __init__(self, set_class, layout, enabled: bool):
        self.set_class = set_class
        self.layout = layout
        self.enabled = enabled
        prefix = "" if enabled else "Disabled"
        super().__init__(name=f"{prefix}MetricSet[{set_class.__qualname__}@{layout.type_key}]")
        self.handle_types = {attr: _handle_type(m, layout, enabled)
                             for attr, m in layout.metrics.items() if m.spec.kind != "topk"}
        self.python_only = {attr for attr, m in layout.metrics.items() if m.spec.kind == "topk"}
        self.offsets = {attr: m.offset for attr, m in layout.metrics.items()}

    @property
    def key(self):
        # getattr: an instance unpickled from an older version's cache lacks fields
        layout = getattr(self, "layout", None)
        return (getattr(self, "set_class", None), getattr(layout, "type_key", None),
                getattr(self, "enabled", None))

    def __reduce__(self):
        return rebuild_type, (_set_type, (class_ref(self.set_class), self.layout.alignment,
                                          self.layout.type_key, self.enabled))


def _set_type(ref, alignment, type_key, enabled):
    set_class = resolve_class(ref)
    layout = set_class._layout(alignment)
    if layout.type_key != type_key:
        raise ValueError("layout changed")
    return MetricSetType(set_class, layout, enabled)


class HandleType(types.Type):
    """A metric of a set inside a kernel.

    The type holds what shapes the code (kind, label sizes and enums, slot
    stride, bucket parameters), so metrics of the same shape share compiled
    methods; the native value holds the set's base and the metric's start
    address, which LLVM folds to base + constant.
    """

    kind = ""

    def __init__(self, enabled, stride, labels, enums, extra=(), shards=(1, 0)):
        self.enabled = enabled
        self.stride = stride
        self.shards, self.claim_offset = shards    # (number of shards, shard table offset)
        self.labels = labels            # ((name, size), ...)
        self.dims = tuple(n for _, n in labels)
        self.enums = enums
        self.extra = extra
        state = "" if enabled else "Disabled"
        lab = ",".join(f"{k}:{n}" for k, n in labels)
        sharded = f"x{self.shards}" if self.shards > 1 else ""
        super().__init__(name=f"{state}{type(self).__name__[:-4]}{sharded}[{lab}]{extra or ''}")

    @property
    def key(self):
        # getattr: an instance unpickled from an older version's cache lacks fields
        return tuple(getattr(self, f, None) for f in ("enabled", "stride", "labels", "enums",
                                                       "extra", "shards", "claim_offset"))

    def __reduce__(self):
        enums = tuple(class_ref(e) for e in self.enums)
        return rebuild_type, (_handle_type_from, (type(self).kind, self.enabled, self.stride,
                                                  self.labels, enums, self.extra,
                                                  (self.shards, self.claim_offset), FINGERPRINT))

    @property
    def metric_name(self) -> str:
        """How messages name the metric (its labels, since the type is shared)."""
        labs = ", ".join(k for k, _ in self.labels)
        return f"{self.kind}[{labs}]" if labs else self.kind


class CounterHandleType(HandleType):
    kind = "counter"


class GaugeHandleType(HandleType):
    kind = "gauge"


class HistogramHandleType(HandleType):
    kind = "histogram"


_HANDLE_TYPES = {t.kind: t for t in (CounterHandleType, GaugeHandleType, HistogramHandleType)}


def _handle_type_from(kind, enabled, stride, labels, enums, extra, shards, fingerprint):
    if fingerprint != FINGERPRINT:
        raise ValueError("written by another version")
    return _HANDLE_TYPES[kind](enabled, stride, labels, tuple(resolve_class(e) for e in enums),
                               extra, shards)


def _handle_type(m, layout, enabled):
    spec = m.spec
    labels = tuple((d.name, len(d.values)) for d in spec.labels)
    enums = tuple(d.enum for d in spec.labels)
    args = (enabled, m.stride, labels, enums)
    shards = (m.shards, layout.claim_offset)
    if spec.kind == "counter":
        return CounterHandleType(*args, shards=shards)
    if spec.kind == "gauge":
        return GaugeHandleType(*args)
    if spec.mode == "explicit":
        extra = ("explicit", spec.bounds)
    else:
        extra = ("exponential", spec.scale, spec.lo_index, spec.n_buckets, spec.negative)
    return HistogramHandleType(*args, extra=extra, shards=shards)


class _HandleModel(models.StructModel):
    """Enabled: set base (for invalid_records) and the metric's first slot.  Disabled: nothing."""

    def __init__(self, dmm, fe_type):
        members = ([("base", types.uintp), ("addr", types.uintp), ("pid", types.uint64)]
                   if fe_type.enabled else [])
        super().__init__(dmm, fe_type, members)


register_model(MetricSetType)(AddressModel)
make_attribute_wrapper(MetricSetType, "base", "base")
make_attribute_wrapper(MetricSetType, "pid", "pid")
for _t in (CounterHandleType, GaugeHandleType, HistogramHandleType):
    register_model(_t)(_HandleModel)
    make_attribute_wrapper(_t, "base", "base")
    make_attribute_wrapper(_t, "addr", "addr")
    make_attribute_wrapper(_t, "pid", "pid")


unbox(MetricSetType)(unbox_address)


@infer_getattr
class _SetAttributes(AttributeTemplate):
    key = MetricSetType

    def generic_resolve(self, typ, attr):
        if attr in typ.python_only:
            raise errors.TypingError(f"{attr}: a top-k table is maintained from Python, not in kernels")
        return typ.handle_types.get(attr)


@lower_getattr_generic(MetricSetType)
def _lower_handle(context, builder, typ, value, attr):
    htype = typ.handle_types[attr]
    handle = cgutils.create_struct_proxy(htype)(context, builder)
    if typ.enabled:
        owner = cgutils.create_struct_proxy(typ)(context, builder, value=value)
        base = owner.base
        handle.base = base
        handle.pid = owner.pid
        handle.addr = builder.add(base, context.get_constant(types.uintp, typ.offsets[attr]))
    return handle._getvalue()


# --------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------

def _star(labels):
    """numba hands ``*labels`` to overloads either flat or as one StarArgTuple."""
    if len(labels) == 1 and isinstance(labels[0], (types.StarArgTuple, types.StarArgUniTuple)):
        return tuple(labels[0].types)
    return tuple(labels)


def _check_labels(h, method, labels):
    labels = _star(labels)
    if len(labels) != len(h.dims):
        raise errors.TypingError(
            f"{h.metric_name}.{method}: this metric takes {len(h.dims)} label index(es), "
            f"got {len(labels)}")
    for k, (lt, enum_cls) in enumerate(zip(labels, h.enums)):
        if isinstance(lt, types.IntEnumMember):
            if enum_cls is None:
                raise errors.TypingError(
                    f"{h.metric_name}.{method}: label {k} takes an integer index, not a "
                    f"{lt.instance_class.__name__} member (the label was not declared with it)")
            if lt.instance_class is not enum_cls:
                raise errors.TypingError(
                    f"{h.metric_name}.{method}: label {k} takes {enum_cls.__name__} members, "
                    f"got a {lt.instance_class.__name__}")
        elif isinstance(lt, types.Boolean) or not isinstance(lt, types.Integer):
            raise errors.TypingError(
                f"{h.metric_name}.{method}: label {k} must be an integer or an IntEnum member, got {lt}")


@intrinsic
def _label_slot(typingctx, handle, labels):
    """Row-major slot of the label indices, or -1 if any is out of range."""
    dims = handle.dims
    sig = types.intp(handle, labels)

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        ltypes = list(sig.args[1])
        slot = ir.Constant(intp, 0)
        ok = cgutils.true_bit
        for k, (lt, dim) in enumerate(zip(ltypes, dims)):
            v = context.cast(builder, builder.extract_value(args[1], k), lt, types.intp)
            ok = builder.and_(ok, builder.icmp_unsigned("<", v, ir.Constant(intp, dim)))
            slot = builder.add(builder.mul(slot, ir.Constant(intp, dim)), v)
        return builder.select(ok, slot, ir.Constant(intp, -1))

    return sig, codegen


@njit
def claim_shard(table, pid, shards):
    """The calling thread's shard: its entry in the owner table, or its hash when all are taken.

    Unlike trace rings, a shard may be shared (its updates are atomic): a full
    table only brings contention back, never a wrong count.
    """
    tid = thread_id()
    i = claim(table, ENTRY_BYTES, shards, tid, pid)
    return i if i >= 0 else home(tid, pid, shards)


def _slot_index(h):
    """An njit function (slot, handle) -> index of the slot's copy for this thread."""
    SHARDS, SLOTS, CLAIM = h.shards, int(np.prod(h.dims)) if h.dims else 1, h.claim_offset
    if SHARDS == 1:
        return _unsharded
    @njit
    def sharded(h, slot):
        return claim_shard(h.base + CLAIM, h.pid, SHARDS) * SLOTS + slot
    return sharded


@njit
def _unsharded(h, slot):
    return slot


def _check_number(h, method, what, t, integer=False):
    if integer:
        if isinstance(t, types.Boolean) or not isinstance(t, (types.Integer, types.IntEnumMember)):
            raise errors.TypingError(
                f"{h.metric_name}.{method}: {what} must be an integer (counters count whole "
                f"events; use a Gauge or Histogram for floats), got {t}")
    elif not isinstance(t, (types.Integer, types.Float, types.IntEnumMember, types.Boolean)):
        raise errors.TypingError(f"{h.metric_name}.{method}: {what} must be a number, got {t}")


# --------------------------------------------------------------------------
# Counter
# --------------------------------------------------------------------------

def _counter_add_impl(h, signed_amount):
    STRIDE = h.stride
    INDEX = _slot_index(h)
    SIGNED = signed_amount          # a compile-time constant: the check folds away if unsigned

    def impl(h, n, *labels):
        slot = _label_slot(h, labels)
        if slot < 0 or (SIGNED and n < 0):
            add_u64(h.base + INVALID_OFFSET, _ONE)
            return False
        R.counter_add(h.addr + INDEX(h, slot) * STRIDE, n)
        return True
    return impl


@overload_method(CounterHandleType, "inc")
def _counter_inc(h, *labels):
    _check_labels(h, "inc", labels)
    if not h.enabled:
        return lambda h, *labels: False
    STRIDE = h.stride
    INDEX = _slot_index(h)

    def impl(h, *labels):
        slot = _label_slot(h, labels)
        if slot < 0:
            add_u64(h.base + INVALID_OFFSET, _ONE)
            return False
        R.counter_add(h.addr + INDEX(h, slot) * STRIDE, _ONE)
        return True
    return impl


@overload_method(CounterHandleType, "add")
def _counter_add(h, n, *labels):
    _check_number(h, "add", "n", n, integer=True)
    _check_labels(h, "add", labels)
    if not h.enabled:
        return lambda h, n, *labels: False
    signed = isinstance(n, types.IntEnumMember) or n.signed
    return _counter_add_impl(h, signed)


# --------------------------------------------------------------------------
# Gauge
# --------------------------------------------------------------------------

def _gauge_method(name, record, sign):
    @overload_method(GaugeHandleType, name)
    def _gauge(h, value, *labels):
        _check_number(h, name, "value", value)
        _check_labels(h, name, labels)
        if not h.enabled:
            return lambda h, value, *labels: False
        STRIDE = h.stride

        def impl(h, value, *labels):
            slot = _label_slot(h, labels)
            if slot < 0:
                add_u64(h.base + INVALID_OFFSET, _ONE)
                return False
            record(h.addr + slot * STRIDE, sign * value)
            return True
        return impl


_gauge_method("set", R.gauge_set, 1.0)
_gauge_method("add", R.gauge_add, 1.0)
_gauge_method("sub", R.gauge_add, -1.0)


# --------------------------------------------------------------------------
# Histogram
# --------------------------------------------------------------------------

@overload_method(HistogramHandleType, "observe")
def _histogram_observe(h, value, *labels):
    _check_number(h, "observe", "value", value)
    _check_labels(h, "observe", labels)
    if not h.enabled:
        return lambda h, value, *labels: False
    STRIDE = h.stride
    INDEX = _slot_index(h)
    if h.extra[0] == "explicit":
        BOUNDS = np.array(h.extra[1], dtype=np.float64)

        def impl(h, value, *labels):
            slot = _label_slot(h, labels)
            if slot < 0:
                add_u64(h.base + INVALID_OFFSET, _ONE)
                return False
            R.observe_explicit(h.addr + INDEX(h, slot) * STRIDE, value, BOUNDS)
            return True
        return impl

    _, SCALE, LO, NB, NEG = h.extra
    LUT, BND = exponential_tables(SCALE)

    def impl(h, value, *labels):
        slot = _label_slot(h, labels)
        if slot < 0:
            add_u64(h.base + INVALID_OFFSET, _ONE)
            return False
        R.observe_exponential(h.addr + INDEX(h, slot) * STRIDE, value, SCALE, LUT, BND, LO, NB, NEG)
        return True
    return impl


# --------------------------------------------------------------------------
# built-in set methods
# --------------------------------------------------------------------------

@overload_method(MetricSetType, "count_invalid")
def _count_invalid(m):
    if not m.enabled:
        return lambda m: None

    def impl(m):
        add_u64(m.base + INVALID_OFFSET, _ONE)
    return impl
