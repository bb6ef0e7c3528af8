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
* Labels are checked at compile time (count, enum class) and at run time (range of an
  integer label; an enum member of the declared enum and a string literal are in
  range by construction, and their records compile without the refusal).
  An out-of-range label never touches memory outside the region: the record is
  counted in the set's ``invalid_records`` slot instead.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, errors
from numba.extending import intrinsic, models

from .._addr import thread_id
from .._cache import FINGERPRINT, class_ref, rebuild_type, resolve_class
from .._claim import ENTRY_BYTES, claim, release
from .._kernel_arg import (HandleType as KernelHandleType, OwnerType, generate, given,
                           register_handle, register_method, register_model, register_owner,
                           returning, star, variadic)
from .._values import KernelTypingError
from . import _record as R
from .spec import MAX_LABEL_DIMS



class MetricSetType(OwnerType):
    """numba type of a metric set instance (enabled or disabled)."""

    def __init__(self, set_class, layout, enabled: bool):
        self.set_class = set_class
        self.layout = layout
        self.enabled = enabled
        prefix = "" if enabled else "Disabled"
        super().__init__(name=f"{prefix}MetricSet[{set_class.__qualname__}@{layout.type_key}]")
        self.handle_types = {attr: _handle_type(m, enabled)
                             for attr, m in layout.metrics.items()
                             if m.spec.kind in _HANDLE_TYPES}
        self.python_only = {attr: m.spec for attr, m in layout.metrics.items()
                            if m.spec.kind not in _HANDLE_TYPES}

    @property
    def claim_table(self):
        """(offset, bytes per entry, entries) of the table of owned copies (see OwnedAddressModel)."""
        return (self.layout.claim_offset, ENTRY_BYTES, self.layout.shards)

    def handle_type(self, attr):
        if attr in self.python_only:
            raise errors.TypingError(f"{attr}: {self.python_only[attr].kernel_refusal}")
        return self.handle_types.get(attr)

    def handle_constants(self, attr) -> tuple:
        """Where the metric sits (see PLACE)."""
        return _place(self.layout.metrics[attr], self.layout)

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


class HandleType(KernelHandleType):
    """A metric of a set inside a kernel.

    The type holds what shapes the code (kind, label sizes and enums, bucket
    parameters) and the metric's identity (attribute, exported name and label
    values), so that errors name the metric and string labels resolve at compile
    time.  The native value holds the set's base address, the caller's pid and
    where the metric sits (see :data:`PLACE`): constants that the attribute access
    puts there and LLVM folds into the inlined recording code.
    """

    kind = None                     # the kind's Kind (a subclass per kind, see kernel_kind)
    constant_members = ()           # PLACE, set below
    methods: dict = {}              # record method name -> Record
    amount_hint = ""                # how a record passes its amount, for messages ({m}, {method})

    @classmethod
    def extra_of(cls, spec) -> tuple:
        """What besides labels shapes the kind's recording code (part of the type)."""
        return ()

    def label_count_fix(self, method) -> str:
        """The fix a message suggests for a record given more labels than declared."""
        return f"; {_fix(self, method)}"

    def __init__(self, enabled, labels, enums, extra=(), attr="", metric="", values=()):
        self.enabled = enabled
        self.labels = labels            # ((name, size), ...)
        self.dims = tuple(n for _, n in labels)
        self.enums = enums
        self.extra = extra
        self.attr = attr                # the set's attribute: m.<attr>
        self.metric = metric            # the exported name
        self.values = values            # per label, its value strings
        state = "" if enabled else "Disabled"
        lab = ",".join(f"{k}:{n}" for k, n in labels)
        super().__init__(name=f"{state}{type(self).__name__[:-4]}[{attr}:{metric}|{lab}]"
                              f"{extra or ''}")

    @property
    def key(self):
        # getattr: an instance unpickled from an older version's cache lacks fields
        return tuple(getattr(self, f, None) for f in ("enabled", "labels", "enums", "extra",
                                                       "attr", "metric", "values"))

    def __reduce__(self):
        enums = tuple(class_ref(e) for e in self.enums)
        return rebuild_type, (_handle_type_from, (type(self).kind, self.enabled, self.labels,
                                                  enums, self.extra, self.attr, self.metric,
                                                  self.values, FINGERPRINT))

    @property
    def metric_name(self) -> str:
        """How messages name the metric: ``orders (shop_orders_total)``."""
        return f"{self.attr} ({self.metric})" if self.attr else self.kind.name

    def label_help(self, k: int) -> str:
        """What label ``k`` takes, for messages."""
        name, size = self.labels[k]
        enum_cls = self.enums[k]
        names = ", ".join(repr(v) for v in self.values[k]) if self.values else ""
        took = f"{enum_cls.__name__} members, " if enum_cls is not None else ""
        return f"label {k} ({name!r}) takes {took}an index 0..{size - 1}" + \
            (f" or one of {names}" if names else "")


_HANDLE_TYPES: dict = {}        # Kind -> its HandleType subclass (see kernel_kind)


def kernel_kind(cls):
    """Register a kind's :class:`HandleType` subclass (a class decorator, in the kind's
    module): its model and members, ``labels(...)``, its record methods (``cls.methods``:
    name -> :class:`Record`) on the handle and on its ``labels(...)`` child."""
    _HANDLE_TYPES[cls.kind] = cls
    register_handle(cls)
    _record_method(cls, "labels", _labels_method)
    for name, rec in cls.methods.items():
        _record_method(cls, name, _record_typer(name, rec), rec.param if rec.param else "")
        if name not in _child_names:
            _child_names.add(name)
            register_method(ChildType, name, _child_typer(name, rec.child_param),
                            prefer_literal=True)
    return cls


# where a metric sits, in its handle's native value (after base and pid):
#   shared   its first slot in the shared block     sstride  bytes between shared slots
#   block    its offset in a copy of the hot block  claim    the set's claim table
#   shards   the set's owned copies                 hot      the first copy
#   copy     bytes per copy
#   metric   its index in the set (for the description of an invalid record)
PLACE = ("shared", "sstride", "block", "claim", "shards", "hot", "copy", "metric")
HandleType.constant_members = PLACE


def _place(m, layout) -> tuple:
    return (m.shared_offset, m.shared_stride, m.block_offset, layout.claim_offset,
            layout.shards, layout.hot_offset, layout.copy_size, layout.metric_index[m.attr])


def _handle_type_from(kind, enabled, labels, enums, extra, attr, metric, values, fingerprint):
    if fingerprint != FINGERPRINT:
        raise ValueError("written by another version")
    return _HANDLE_TYPES[kind](enabled, labels, tuple(resolve_class(e) for e in enums), extra,
                               attr, metric, values)


def _handle_type(m, enabled):
    spec = m.spec
    labels = tuple((d.name, len(d.values)) for d in spec.labels)
    enums = tuple(d.enum for d in spec.labels)
    values = tuple(tuple(d.values) for d in spec.labels)
    cls = _HANDLE_TYPES[spec.kind]
    return cls(enabled, labels, enums, cls.extra_of(spec), m.attr, spec.name, values)


register_owner(MetricSetType, ())


# --------------------------------------------------------------------------
# labels: checked when the kernel compiles, resolved to a slot when it runs
# --------------------------------------------------------------------------

class _Retry(errors.TypingError):
    """Raised while numba tries literal argument types, to have it try the plain ones: a
    literal integer label compiles once for every value, the plain type once for all."""


def _fix(h, method) -> str:
    return h.amount_hint.format(m=h.attr or "metric", method=method)


def _check_labels(h, method, labels) -> tuple:
    """Type-check the labels of a record; returns, per label, the slot index of a string
    literal (resolved now) or None.  Raises KernelTypingError, naming the metric and the
    fix, or _Retry (see there)."""
    labels = star(labels)
    where = f"{h.metric_name}.{method}"
    if len(labels) != len(h.dims):
        given = len(labels)
        fix = h.label_count_fix(method) if given > len(h.dims) else ""
        names = [k for k, _ in h.labels]
        raise KernelTypingError(f"{where}: takes {len(h.dims)} label(s) {names}, got {given}"
                                f"{fix}")
    resolved = []
    literal = False
    for k, (lt, enum_cls) in enumerate(zip(labels, h.enums)):
        if isinstance(lt, types.StringLiteral):
            values = h.values[k] if h.values else ()
            if lt.literal_value not in values:
                raise KernelTypingError(f"{where}: {h.label_help(k)}; it has no value "
                                        f"{lt.literal_value!r}")
            resolved.append(values.index(lt.literal_value))
            continue
        resolved.append(None)
        if isinstance(lt, types.UnicodeType):
            raise KernelTypingError(f"{where}: label {k} is a string variable; in a kernel a "
                                    f"string label must be a literal (resolved when the kernel "
                                    f"compiles): {h.label_help(k)}")
        if isinstance(lt, types.IntEnumMember):
            if enum_cls is None:
                raise KernelTypingError(
                    f"{where}: {h.label_help(k)}, not a {lt.instance_class.__name__} member "
                    f"(the label was not declared with that enum)")
            if lt.instance_class is not enum_cls:
                raise KernelTypingError(
                    f"{where}: label {k} takes {enum_cls.__name__} members, got a "
                    f"{lt.instance_class.__name__}; {h.label_help(k)}")
        elif isinstance(lt, types.Boolean) or not isinstance(lt, types.Integer):
            raise KernelTypingError(f"{where}: {h.label_help(k)}, got {lt}")
        elif isinstance(lt, types.IntegerLiteral):
            literal = True
            if not 0 <= lt.literal_value < h.dims[k]:
                raise KernelTypingError(
                    f"{where}: {h.label_help(k)}, got {lt.literal_value}; {_fix(h, method)}")
    return tuple(resolved), literal


def _check_number(h, method, what, t, integer=False):
    where = f"{h.metric_name}.{method}"
    if integer:
        if isinstance(t, types.Boolean) or not isinstance(t, (types.Integer, types.IntEnumMember)):
            raise KernelTypingError(
                f"{where}: {what} must be an integer (counters count whole events; use a "
                f"Gauge or Histogram for floats), got {t}")
        if isinstance(t, types.IntegerLiteral) and t.literal_value < 0:
            raise KernelTypingError(f"{where}: a counter only goes up; got {what} = "
                                    f"{t.literal_value} (use a Gauge to go down)")
    elif isinstance(t, types.UnicodeType) or not isinstance(
            t, (types.Integer, types.Float, types.IntEnumMember, types.Boolean)):
        raise KernelTypingError(f"{where}: {what} must be a number, got {t}; "
                                f"{_fix(h, method)}")
    return isinstance(t, (types.IntegerLiteral, types.BooleanLiteral))


def _checked(h, method, labels, values=()):
    """Check a record's arguments; returns (string literal slots, any literal argument)."""
    literal = False
    for what, t, integer in values:
        literal |= _check_number(h, method, what, t, integer)
    resolved, lit_labels = _check_labels(h, method, labels)
    literal |= lit_labels
    if literal and not any(r is not None for r in resolved):
        raise _Retry("retry with plain types")
    return resolved


def _in_range(t) -> bool:
    """Whether a label of type ``t`` (checked by :func:`_check_labels`) is in range whatever
    its value: a string literal is resolved when the kernel compiles, and a member of the
    label's declared enum is one of its slots (label enums have the values 0..n-1, see
    ``LabelDim.from_enum``); an integer is checked when the record runs."""
    return isinstance(t, (types.StringLiteral, types.IntEnumMember))


def _refusable(labels) -> bool:
    """Whether a record with these label types can meet a label out of range."""
    return not all(_in_range(t) for t in star(labels))


@intrinsic
def _label_slot(typingctx, handle, labels):
    """Row-major slot of the label indices, or -1 if any is out of range.  String
    literals are resolved from the handle's label values."""
    dims = handle.dims
    values = handle.values
    sig = types.intp(handle, labels)

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        ltypes = list(sig.args[1])
        slot = ir.Constant(intp, 0)
        ok = cgutils.true_bit
        for k, (lt, dim) in enumerate(zip(ltypes, dims)):
            if isinstance(lt, types.StringLiteral):
                v = ir.Constant(intp, values[k].index(lt.literal_value))
            else:
                v = context.cast(builder, builder.extract_value(args[1], k), lt, types.intp)
                if not _in_range(lt):
                    ok = builder.and_(ok, builder.icmp_unsigned("<", v, ir.Constant(intp, dim)))
            slot = builder.add(builder.mul(slot, ir.Constant(intp, dim)), v)
        return builder.select(ok, slot, ir.Constant(intp, -1))

    return sig, codegen


@intrinsic
def _bad_label(typingctx, handle, labels):
    """(position, value) of the first label out of range (a cold path: after a -1 slot)."""
    dims = handle.dims
    sig = types.UniTuple(types.int64, 2)(handle, labels)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        pos = ir.Constant(i64, 255)
        val = ir.Constant(i64, 0)
        found = cgutils.false_bit
        for k, (lt, dim) in enumerate(zip(list(sig.args[1]), dims)):
            if _in_range(lt):
                continue
            v = context.cast(builder, builder.extract_value(args[1], k), lt, types.int64)
            bad = builder.and_(builder.not_(found),
                               builder.icmp_unsigned(">=", v, ir.Constant(i64, dim)))
            pos = builder.select(bad, ir.Constant(i64, k), pos)
            val = builder.select(bad, v, val)
            found = builder.or_(found, bad)
        return context.make_tuple(builder, sig.return_type, [pos, val])

    return sig, codegen


# --------------------------------------------------------------------------
# Record methods.  Each is generated once per (metric, label count) as one
# flat function whose labels are explicit parameters (up to MAX_LABEL_DIMS,
# the rest defaulting to None) and whose offsets are constants: numba
# compiles it once per call signature, and LLVM inlines it into the kernel,
# sees the recording loop whole and keeps each record to its few loads and
# stores (the copy comes with the set: ``h.entry``).  ``m.x.labels(...)``
# gives a child handle with the slot resolved, whose methods run the same
# bodies.
# --------------------------------------------------------------------------

_LABELS = ", ".join(f"l{i}=None" for i in range(MAX_LABEL_DIMS))

# fragments of the kinds' bodies (see Record)
COPY = "copy = h.entry + 1"       # the copy that records: the caller's own (1..N), or 0, the
                                  # shared one (the entry found where the set entered the function)
INVALID = """    if slot < 0:
        bad = BAD
        R.note_invalid(h.base, h.metric, METHOD, R.INVALID_LABEL, bad[0], bad[1])
        return False
"""
_METHOD_CODE = {name: i for i, name in enumerate(R.METHODS) if name}


class Record:
    """A record method of a kind, declared in the kind's module (``HandleType.methods``).

    ``body``: the code after the label slot (``slot``; ``h`` the handle, ``BAD`` the
    out-of-range label, ``__AMOUNT__`` the amount: the value parameter, or 1 without
    one); ``param``: the value parameter (``""``: none, as ``inc()``); ``integer``: the
    value is a whole number; ``constants(h, value type or None)``: further names the body
    uses.  The same body serves ``m.x.labels(...).<name>(...)``, whose value parameter is
    ``value`` (``n``, optional, when the record takes none).
    """

    def __init__(self, body: str, param: str = "", *, integer: bool = False,
                 constants=lambda h, t: {}):
        self.body = body
        self.param = param
        self.integer = integer
        self.what = "n" if integer else "value"       # how messages name the value
        self.child_param = "value" if param else "n"
        self.constants = constants


def _generate(body, h, n_labels, value_param, method, resolved=(), child=False, amount="1",
              refusable=True, **constants):
    """``def f(h, [value,] l0=None, ...)``: ``body`` after the label slot, for this handle;
    string literal labels (``resolved``) are constants.  ``child``: ``def f(c, <param>=None)``
    on a child handle, whose slot is resolved.  ``amount``: what ``__AMOUNT__`` stands for.
    ``refusable`` False: no label can be out of range (:func:`_refusable`), and a body
    opening with :data:`INVALID` goes without it, so that the refusal (and the function
    that notes it) is not compiled for a record that can never take it.

    Built once per (body, handle, label count, string literals, constants).
    """
    if not refusable and body.startswith(INVALID):
        body = body[len(INVALID):]
    key = ("metrics", body, h, n_labels, value_param, method, resolved, child, amount,
           tuple(sorted(constants.items())))
    ns = dict(R=R, _label_slot=_label_slot, _bad_label=_bad_label, _child_parts=_child_parts,
              METHOD=_METHOD_CODE[method])
    ns.update(constants)
    text = body.replace("__AMOUNT__", amount)
    if child:
        return generate(key, _head(value_param, child=True),
                        "    h, slot, bad0, bad1 = _child_parts(c)\n"
                        + text.replace("BAD", "(bad0, bad1)"), ns)
    exprs = [str(r) if r is not None else f"l{i}"
             for i, r in enumerate(tuple(resolved) or (None,) * n_labels)]
    labels = "(" + "".join(f"{e}, " for e in exprs) + ")"
    return generate(key, _head(value_param), f"    slot = _label_slot(h, {labels})\n"
                    + text.replace("BAD", f"_bad_label(h, {labels})"), ns)


def _head(value_param, child=False) -> str:
    """The parameters of a record method: ``h, [value,] l0=None, ...`` (``child``:
    ``c, <param>=None``)."""
    if child:
        return f"c, {value_param}=None"
    return (f"h, {value_param}, " if value_param else "h, ") + _LABELS


def _record_typer(name, rec):
    """The typer of ``m.x.<name>([value,] *labels)`` (see :func:`_record_method`)."""
    def record(h, value, labels):
        checks = [(rec.what, value, rec.integer)] if rec.param else []
        resolved = _checked(h, name, labels, checks)
        if not h.enabled:
            return returning(_head(rec.param))
        return _generate(rec.body, h, len(labels), rec.param, name, resolved,
                         amount=rec.param or "1", refusable=_refusable(labels),
                         **rec.constants(h, value))

    if rec.param:
        def typer(h, value, labels):
            return record(h, value, labels)
    else:
        def typer(h, labels):
            return record(h, None, labels)
    typer.__name__ = typer.__qualname__ = f"_{name}"
    return typer


def _record_method(typ, name, impl, value_param=""):
    """``m.x.<name>([value,] *labels)``: ``impl(h, [value,] given labels)``."""
    fixed = (value_param,) if value_param else ()
    register_method(typ, name, variadic(impl, "h", fixed, "l", MAX_LABEL_DIMS),
                    prefer_literal=True)


# --------------------------------------------------------------------------
# m.x.labels(...): a child handle with the slot resolved (prometheus_client's way)
# --------------------------------------------------------------------------

class ChildType(types.Type):
    """``m.<metric>.labels(...)`` in a kernel: the metric's handle and the labels' slot."""

    def __init__(self, parent):
        self.parent = parent
        self.enabled = parent.enabled
        super().__init__(name=f"Child[{parent.name}]")

    @property
    def key(self):
        return getattr(self, "parent", None)

    def __reduce__(self):
        return rebuild_type, (ChildType, (self.parent,))


class _ChildModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        members = [("h", fe_type.parent), ("slot", types.intp), ("bad0", types.int64),
                   ("bad1", types.int64)] if fe_type.enabled else []
        super().__init__(dmm, fe_type, members)


register_model(ChildType, _ChildModel)
HandleType.child_class = ChildType      # the type of labels(...) (another target's handles
                                        # give their own)


@intrinsic
def _make_child(typingctx, handle, labels):
    sig = handle.child_class(handle)(handle, labels)
    slot_sig = types.intp(handle, labels)
    bad_sig = types.UniTuple(types.int64, 2)(handle, labels)

    def codegen(context, builder, sig, args):
        child = cgutils.create_struct_proxy(sig.return_type)(context, builder)
        if handle.enabled:
            child.h = args[0]
            child.slot = _label_slot._defn(context.typing_context, handle, labels)[1](
                context, builder, slot_sig, args)
            bad = _bad_label._defn(context.typing_context, handle, labels)[1](
                context, builder, bad_sig, args)
            child.bad0 = builder.extract_value(bad, 0)
            child.bad1 = builder.extract_value(bad, 1)
        return child._getvalue()

    return sig, codegen


@intrinsic
def _child_parts(typingctx, child):
    sig = types.Tuple((child.parent, types.intp, types.int64, types.int64))(child)

    def codegen(context, builder, sig, args):
        c = cgutils.create_struct_proxy(child)(context, builder, value=args[0])
        return context.make_tuple(builder, sig.return_type, [c.h, c.slot, c.bad0, c.bad1])

    return sig, codegen


def _labels_method(h, labels):
    resolved = _checked(h, "labels", labels)
    exprs = [str(r) if r is not None else f"l{i}" for i, r in enumerate(resolved)]
    tup = "(" + "".join(f"{e}, " for e in exprs) + ")"
    return generate(("metrics", "labels", h, len(labels), resolved), _head(""),
                    f"    return _make_child(h, {tup})\n", {"_make_child": _make_child},
                    inline=h.enabled)


_child_names: set = set()       # record method names registered on ChildType


def _child_typer(name, param):
    """``m.x.labels(...).<name>(...)``: one overload per method name on ChildType, for the
    parent metric's kind (its ``methods``)."""

    def typer(c, arg):
        h = c.parent
        rec = h.methods.get(name)
        if rec is None:
            has = ", ".join(f"{n}()" for n in h.methods)
            raise KernelTypingError(f"{h.metric_name}.labels(...) has no {name}(); a "
                                    f"{h.kind.name} has {has}")
        given_arg = bool(given((arg,)))
        if not given_arg and rec.param:
            raise KernelTypingError(f"{h.metric_name}.labels(...).{name}: takes the value, "
                                    f"{name}(value)")
        if given_arg and _check_number(h, name, rec.what, arg, rec.integer):
            raise _Retry("retry with plain types")
        if not h.enabled:
            return returning(_head(param, child=True))
        amount = param if given_arg else "1"
        return _generate(rec.body, h, 0, param, name, child=True, amount=amount,
                         **rec.constants(h, arg if given_arg else None))

    if param == "n":
        def method(c, n=None):
            return typer(c, n)
    else:
        def method(c, value=None):
            return typer(c, value)
    method.__name__ = method.__qualname__ = name
    return method


# --------------------------------------------------------------------------
# built-in set methods
# --------------------------------------------------------------------------

_KERNEL_METHOD = R.METHODS.index("kernel method")


def _count_invalid(m):
    if not m.enabled:
        return lambda m: None

    def impl(m):
        R.note_invalid(m.base, -1, _KERNEL_METHOD, R.INVALID_ARGUMENT, R.VALUE_POSITION, 0)
    return impl


def _release_thread(m):
    """Hand the calling thread's copy back (its counts stay); its last call on the set."""
    if not m.enabled:
        return lambda m: -1
    CLAIM, SHARDS = m.layout.claim_offset, m.layout.shards

    def impl(m):
        return release(m.base + CLAIM, ENTRY_BYTES, SHARDS, thread_id(), m.pid)
    return impl


register_method(MetricSetType, "count_invalid", _count_invalid, inline="never")
register_method(MetricSetType, "release_thread", _release_thread, inline="never")


# --------------------------------------------------------------------------
# Python calls: the same primitives, on an address the caller computed
# --------------------------------------------------------------------------

@njit(nogil=True, cache=True)
def py_note_invalid(base):
    R.note_invalid(base, -1, _KERNEL_METHOD, R.INVALID_ARGUMENT, R.VALUE_POSITION, 0)


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


@njit(nogil=True, cache=True)
def py_claim_copy(table, shards, pid):
    """The calling thread's copy index (1..N), or 0 when every copy is taken."""
    return claim(table, ENTRY_BYTES, shards, thread_id(), pid) + 1


@njit(nogil=True, cache=True)
def py_release_copy(table, shards, pid):
    return release(table, ENTRY_BYTES, shards, thread_id(), pid)
