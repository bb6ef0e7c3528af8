"""numba support for metric sets: pass the set object into a kernel, call its methods.

Record methods (``inc``, ``add``, ``set``, ``sub``, ``observe``) return True when
they recorded and False when they dropped the record (bad label; always False
on a disabled set, where the branch then folds away).

* A set's numba type carries its class and layout hash.  Its native value is
  the region's base address, the caller's pid and the calling thread's entry
  in the table of copies (see ``OwnedAddressModel``); every metric attribute
  (``m.requests``) becomes a *handle* type whose offsets, label sizes and
  bucket parameters are compile-time constants.
* Each recording thread owns a copy of the set's hot values (see
  :mod:`.layout`).  Which one is looked up once, where the thread receives the
  set (unboxing from Python, a ``prange`` worker's loop body); each record then
  updates the copy with plain loads and stores: ``m.requests.inc(k)`` is a bounds
  check, a load, an add and a store.  A thread that found no free copy records
  into the shared copy with atomic instructions (exact, slower).
* A disabled set has its own type with an empty native value: it occupies no
  argument register, and every method on it compiles to nothing, so the kernel's
  machine code is the same as if the calls were not written.
* Labels are checked at compile time (count, enum class) and at run time (range).
  An out-of-range label never touches memory outside the region: the record is
  counted in the set's ``invalid_records`` slot instead.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, errors
from numba.core.typing.templates import AttributeTemplate
from numba.extending import (infer_getattr, intrinsic, lower_getattr_generic,
                             make_attribute_wrapper, models, overload_method, register_model,
                             unbox)

from .._addr import add_u64, thread_id
from .._cache import FINGERPRINT, class_ref, rebuild_type, resolve_class
from .._claim import ENTRY_BYTES, claim, release
from .._inline import always_inline
from .._kernel_arg import OwnedAddressModel, unbox_address
from .kinds import COUNTER, GAUGE, HISTOGRAM, TOPK
from . import _record as R
from .buckets import ExplicitBuckets, ExponentialBuckets, exponential_tables, scheme_from_key
from .layout import INVALID_OFFSET
from .spec import MAX_LABEL_DIMS

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
                             for attr, m in layout.metrics.items() if m.spec.kind is not TOPK}
        self.python_only = {attr for attr, m in layout.metrics.items() if m.spec.kind is TOPK}

    @property
    def claim_table(self):
        """(offset, bytes per entry, entries) of the table of owned copies (see OwnedAddressModel)."""
        return (self.layout.claim_offset, ENTRY_BYTES, self.layout.shards)

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

    The type holds what shapes the code (kind, label sizes and enums, bucket
    parameters), so metrics of the same shape share one compiled method.  The
    native value holds the set's base address, the caller's pid and where the
    metric sits (see :data:`PLACE`): constants that the attribute access puts
    there and LLVM folds into the inlined recording code.
    """

    kind = ""

    def __init__(self, enabled, labels, enums, extra=()):
        self.enabled = enabled
        self.labels = labels            # ((name, size), ...)
        self.dims = tuple(n for _, n in labels)
        self.enums = enums
        self.extra = extra
        state = "" if enabled else "Disabled"
        lab = ",".join(f"{k}:{n}" for k, n in labels)
        super().__init__(name=f"{state}{type(self).__name__[:-4]}[{lab}]{extra or ''}")

    @property
    def key(self):
        # getattr: an instance unpickled from an older version's cache lacks fields
        return tuple(getattr(self, f, None) for f in ("enabled", "labels", "enums", "extra"))

    def __reduce__(self):
        enums = tuple(class_ref(e) for e in self.enums)
        return rebuild_type, (_handle_type_from, (type(self).kind, self.enabled, self.labels,
                                                  enums, self.extra, FINGERPRINT))

    @property
    def metric_name(self) -> str:
        """How messages name the metric (its labels, since the type is shared)."""
        labs = ", ".join(k for k, _ in self.labels)
        return f"{self.kind.name}[{labs}]" if labs else self.kind.name


class CounterHandleType(HandleType):
    kind = COUNTER


class GaugeHandleType(HandleType):
    kind = GAUGE


class HistogramHandleType(HandleType):
    kind = HISTOGRAM


_HANDLE_TYPES = {t.kind: t for t in (CounterHandleType, GaugeHandleType, HistogramHandleType)}

# where a metric sits, in its handle's native value (after base and pid):
#   shared   its first slot in the shared block     sstride  bytes between shared slots
#   block    its offset in a copy of the hot block  claim    the set's claim table
#   shards   the set's owned copies                 hot      the first copy
#   copy     bytes per copy
PLACE = ("shared", "sstride", "block", "claim", "shards", "hot", "copy")


def _place(m, layout) -> tuple:
    return (m.shared_offset, m.shared_stride, m.block_offset, layout.claim_offset,
            layout.shards, layout.hot_offset, layout.copy_size)


def _handle_type_from(kind, enabled, labels, enums, extra, fingerprint):
    if fingerprint != FINGERPRINT:
        raise ValueError("written by another version")
    return _HANDLE_TYPES[kind](enabled, labels, tuple(resolve_class(e) for e in enums), extra)


def _handle_type(m, layout, enabled):
    spec = m.spec
    labels = tuple((d.name, len(d.values)) for d in spec.labels)
    enums = tuple(d.enum for d in spec.labels)
    if spec.kind is HISTOGRAM:
        extra = spec.scheme.key()
    elif spec.kind is GAUGE and spec.multiprocess_mode == "latest":
        extra = ("latest",)                 # its records time-stamp the shared slot
    else:
        extra = ()
    return _HANDLE_TYPES[spec.kind](enabled, labels, enums, extra)


class HandleModel(models.StructModel):
    """Enabled: base, pid, the thread's entry and the metric's place; disabled: nothing at all."""

    def __init__(self, dmm, fe_type):
        members = [("base", types.uintp), ("pid", types.uint64), ("entry", types.int64)] + \
            [(f, types.int64) for f in PLACE] if fe_type.enabled else []
        super().__init__(dmm, fe_type, members)


register_model(MetricSetType)(OwnedAddressModel)
for _t in (MetricSetType, CounterHandleType, GaugeHandleType, HistogramHandleType):
    if _t is not MetricSetType:
        register_model(_t)(HandleModel)
        for _f in PLACE:
            make_attribute_wrapper(_t, _f, _f)
    make_attribute_wrapper(_t, "base", "base")
    make_attribute_wrapper(_t, "pid", "pid")
    make_attribute_wrapper(_t, "entry", "entry")
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
        handle.base = owner.base
        handle.pid = owner.pid
        handle.entry = owner.entry
        i64 = context.get_value_type(types.int64)
        for field, v in zip(PLACE, _place(typ.layout.metrics[attr], typ.layout)):
            setattr(handle, field, ir.Constant(i64, v))
    return handle._getvalue()


# --------------------------------------------------------------------------
# labels and copies
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


def _check_number(h, method, what, t, integer=False):
    if integer:
        if isinstance(t, types.Boolean) or not isinstance(t, (types.Integer, types.IntEnumMember)):
            raise errors.TypingError(
                f"{h.metric_name}.{method}: {what} must be an integer (counters count whole "
                f"events; use a Gauge or Histogram for floats), got {t}")
    elif not isinstance(t, (types.Integer, types.Float, types.IntEnumMember, types.Boolean)):
        raise errors.TypingError(f"{h.metric_name}.{method}: {what} must be a number, got {t}")


# --------------------------------------------------------------------------
# Record methods.  Each is generated once per (handle shape, label count) as
# one flat function whose labels are explicit parameters (up to
# MAX_LABEL_DIMS, the rest defaulting to None) and whose offsets are
# constants: numba compiles it once per call signature, and LLVM inlines it
# into the kernel, sees the recording loop whole and keeps each record to its
# few loads and stores (the copy comes with the set: ``h.entry``).
# --------------------------------------------------------------------------

_LABELS = ", ".join(f"l{i}=None" for i in range(MAX_LABEL_DIMS))
_generated: dict = {}

# the copy that records: the caller's own (1..N), or 0, the shared one
_COPY = "copy = h.entry + 1"      # the entry found where the set entered the function
_INVALID = """    if slot < 0{extra}:
        R.shared_add(h.base + INVALID_OFFSET, 1)
        return False
"""

_BODIES = {
    "counter": _INVALID.format(extra=" or (SIGNED and n < 0)") + f"""    {_COPY}
    R.counter_add(h.base + h.hot + copy * h.copy + h.block + 8 * slot, n, copy > 0)
    return True
""",
    "gauge.set": _INVALID.format(extra="") + """    R.gauge_set(h.base + h.shared + h.sstride * slot, value)
    if STAMP:
        R.gauge_stamp(h.base + h.shared + h.sstride * slot)
    return True
""",
    "gauge.add": _INVALID.format(extra="") + f"""    {_COPY}
    R.gauge_add(h.base + h.shared + h.sstride * slot,
                h.base + h.hot + copy * h.copy + h.block + G_SLOT * slot, SIGN * value,
                copy > 0)
    if STAMP:
        R.gauge_stamp(h.base + h.shared + h.sstride * slot)
    return True
""",
    "histogram": _INVALID.format(extra="") + f"""    {_COPY}
    OBSERVE(h.base + h.hot + copy * h.copy + h.block + SLOT * slot, value, copy > 0)
    return True
""",
}


def _generate(body, h, n_labels, value_param, **constants):
    """``def f(h, [value,] l0=None, ...)``: ``body`` after the label slot, for this handle.

    Built once per (body, handle shape, label count, constants).
    """
    key = (body, h, n_labels, value_param, tuple(sorted(constants.items())))
    fn = _generated.get(key)
    if fn is not None:
        return fn
    ns = dict(G_SLOT=R.G_SLOT, ENTRY_BYTES=ENTRY_BYTES,
              INVALID_OFFSET=INVALID_OFFSET, R=R, add_u64=add_u64,
              _label_slot=_label_slot, **constants)
    labels = "(" + "".join(f"l{i}, " for i in range(n_labels)) + ")"
    head = f"h, {value_param}, " if value_param else "h, "
    exec(f"def f({head}{_LABELS}):\n    slot = _label_slot(h, {labels})\n{_BODIES[body]}", ns)
    fn = _generated[key] = always_inline(ns["f"])
    return fn


def _inline_disabled(expr, caller, callee):
    """numba inlines a disabled handle's methods itself: they vanish before LLVM sees a call."""
    return not callee.signature.args[0].enabled


def _disabled(value_param):
    """``def f(h, [value,] l0=None, ...): return False``."""
    key = ("disabled", value_param)
    fn = _generated.get(key)
    if fn is None:
        head = f"h, {value_param}, " if value_param else "h, "
        ns = {}
        exec(f"def f({head}{_LABELS}):\n    return False\n", ns)
        fn = _generated[key] = ns["f"]
    return fn


def _given(labels):
    return tuple(t for t in labels
                 if t is not None and not isinstance(t, (types.Omitted, types.NoneType)))


def _counter_inc(h, l0=None, l1=None, l2=None, l3=None):
    labels = _given((l0, l1, l2, l3))
    _check_labels(h, "inc", labels)
    if not h.enabled:
        return _disabled("")
    return _generate("counter", h, len(labels), "", SIGNED=False, n=1)    # n: a constant


def _counter_add(h, n, l0=None, l1=None, l2=None, l3=None):
    labels = _given((l0, l1, l2, l3))
    _check_number(h, "add", "n", n, integer=True)
    _check_labels(h, "add", labels)
    if not h.enabled:
        return _disabled("n")
    signed = isinstance(n, types.IntEnumMember) or n.signed
    return _generate("counter", h, len(labels), "n", SIGNED=signed)


overload_method(CounterHandleType, "inc", inline=_inline_disabled)(_counter_inc)
overload_method(CounterHandleType, "add", inline=_inline_disabled)(_counter_add)


def _gauge_method(name, sign):
    def typer(h, value, l0=None, l1=None, l2=None, l3=None):
        labels = _given((l0, l1, l2, l3))
        _check_number(h, name, "value", value)
        _check_labels(h, name, labels)
        if not h.enabled:
            return _disabled("value")
        stamp = h.extra == ("latest",)
        if name == "set":
            return _generate("gauge.set", h, len(labels), "value", STAMP=stamp)
        return _generate("gauge.add", h, len(labels), "value", SIGN=sign, STAMP=stamp)
    overload_method(GaugeHandleType, name, inline=_inline_disabled)(typer)


_gauge_method("set", 1.0)
_gauge_method("add", 1.0)
_gauge_method("sub", -1.0)


# --------------------------------------------------------------------------
# Histogram: the scheme object picks the recording function
# --------------------------------------------------------------------------

_observers: dict = {}


def observer(scheme):
    """An njit ``observe(slot address, value, owned)`` for a bucket scheme."""
    fn = _observers.get(scheme.key())
    if fn is not None:
        return fn
    if isinstance(scheme, ExplicitBuckets):
        K0, SHIFT, LAST, M, LUT, BOUNDS = scheme.tables

        @always_inline
        @njit
        def fn(slot, value, owned):
            R.observe_explicit(slot, value, K0, SHIFT, LAST, M, LUT, BOUNDS, owned)
    elif isinstance(scheme, ExponentialBuckets):
        SCALE, LO, NB, NEG = scheme.scale, scheme.lo_index, scheme.n_buckets, scheme.negative
        LOW, HIGH = scheme.zero_threshold, 2.0 ** scheme.max_exponent
        LUT, BND = exponential_tables(SCALE)
        OVER = (scheme.max_exponent, scheme.near_top, scheme.overflow_words)

        @always_inline
        @njit
        def fn(slot, value, owned):
            R.observe_exponential(slot, value, SCALE, LUT, BND, LO, NB, NEG, LOW, HIGH, OVER,
                                  owned)
    else:
        raise TypeError(f"no recording function for bucket scheme {scheme!r}")
    _observers[scheme.key()] = fn
    return fn


def _histogram_observe(h, value, l0=None, l1=None, l2=None, l3=None):
    labels = _given((l0, l1, l2, l3))
    _check_number(h, "observe", "value", value)
    _check_labels(h, "observe", labels)
    if not h.enabled:
        return _disabled("value")
    scheme = scheme_from_key(h.extra)
    return _generate("histogram", h, len(labels), "value", OBSERVE=observer(scheme),
                     SLOT=R.H_BUCKETS + 8 * scheme.count_words)


overload_method(HistogramHandleType, "observe", inline=_inline_disabled)(_histogram_observe)


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


@overload_method(MetricSetType, "release_thread")
def _release_thread(m):
    """Hand the calling thread's copy back (its counts stay); its last call on the set."""
    if not m.enabled:
        return lambda m: -1
    CLAIM, SHARDS = m.layout.claim_offset, m.layout.shards

    def impl(m):
        return release(m.base + CLAIM, ENTRY_BYTES, SHARDS, thread_id(), m.pid)
    return impl


# --------------------------------------------------------------------------
# Python calls: the same primitives, on an address the caller computed
# --------------------------------------------------------------------------

@njit(nogil=True, cache=True)
def py_counter_add(addr, n, owned):
    R.counter_add(addr, n, owned)


@njit(nogil=True, cache=True)
def py_gauge_set(shared, value):
    R.gauge_set(shared, value)


@njit(nogil=True, cache=True)
def py_gauge_add(shared, copy_slot, value, owned):
    R.gauge_add(shared, copy_slot, value, owned)


@njit(nogil=True, cache=True)
def py_gauge_stamp(shared):
    R.gauge_stamp(shared)


_python_observers: dict = {}


def python_observers(scheme):
    """``(owned, shared)``: compiled ``observe(slot address, value)`` for Python callers.

    Two arguments, because numba's dispatcher spends most of a call from
    Python on typing its arguments; the scheme's parameters are constants.
    Compiled once per scheme and process, on first use (closures are not
    kept in numba's on-disk cache).
    """
    pair = _python_observers.get(scheme.key())
    if pair is None:
        OBSERVE = observer(scheme)

        @njit(nogil=True)
        def owned(slot, value):
            OBSERVE(slot, value, True)

        @njit(nogil=True)
        def shared(slot, value):
            OBSERVE(slot, value, False)
        pair = _python_observers[scheme.key()] = (owned, shared)
    return pair


@njit(nogil=True, cache=True)
def py_claim_copy(table, shards, pid):
    """The calling thread's copy index (1..N), or 0 when every copy is taken."""
    return claim(table, ENTRY_BYTES, shards, thread_id(), pid) + 1


@njit(nogil=True, cache=True)
def py_release_copy(table, shards, pid):
    return release(table, ENTRY_BYTES, shards, thread_id(), pid)
