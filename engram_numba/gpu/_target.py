"""The numba-cuda target of device metric sets, registered through :mod:`.._kernel_arg`.

:class:`CudaTarget` is a :class:`.._kernel_arg.Target` on numba-cuda's registries
(``numba.cuda.extending``); :func:`.._kernel_arg.register_owner` registers the
device set's type and its handle types with it, and every method goes through
:func:`.._kernel_arg.register_method` with ``target="cuda"``, as the CPU's do
with ``"cpu"``.  What differs from the CPU target is what the target says::

    CudaMetricSetType(types.Array)   a device set: the uint64 array of its words
                                     (numba's ArrayModel), with its class and layout;
                                     the launch passes it as that array (the Python
                                     object is a numba-cuda ``ArgHint`` whose
                                     ``to_device`` gives the device array), so the
                                     target's ``enter`` registers nothing
    Cuda{Counter,Gauge,Histogram}HandleType
                                     ``m.<metric>``: the CPU handle types (labels,
                                     messages), native value {words}, the metric's
                                     place in the type (compile-time constants)
    CudaChildType                    ``m.<metric>.labels(...)``: the CPU child's model
                                     and intrinsics (``_make_child``, ``_child_parts``)
    methods                          inc, add (counter); set, add, sub (gauge);
                                     observe (histogram); labels; the same on the
                                     child; count_invalid; the class's @kernel_methods
    launch hook                      numba-cuda's ``_Kernel._prepare_args`` is wrapped
                                     once so that a *disabled* CPU set (an empty struct)
                                     is passed as no kernel argument at all

Shared with the CPU target, by import: label checks and messages
(``metrics._njit._checked``, ``_label_slot``, ``_bad_label``, ``_METHOD_CODE``),
the handle types' base, the child's model and intrinsics, layouts, slot offsets
(``metrics._record``), bucket indices (``metrics.buckets``), kernel methods
(``_methods.register_kernel_method``).

Still this target's own, because the device records into word indices of an
array with warp-aggregated atomics where the CPU records at addresses of the
thread's owned copy: the record-method texts (``_BODIES``: word indices, the
copy chosen by ``%smid``) and the per-scheme ``observer`` (a device function
over the words, :mod:`._bodies`).  Under the simulator the types exist (the
simulated handles read their places from them) and :class:`SimulatedTarget`
registers nothing.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, errors
from numba.extending import models

from .._kernel_arg import (Target, given, register_method, register_model, register_owner,
                           register_target)
from .._methods import register_kernel_method
from .._values import KernelTypingError
from ..metrics import _njit as N
from ..metrics.counter import CounterHandleType
from ..metrics.gauge import GaugeHandleType
from ..metrics.histogram import HistogramHandleType
from ..metrics import _record as R
from ..metrics.buckets import ExplicitBuckets, ExponentialBuckets, scheme_from_key
from ..metrics.kinds import COUNTER, GAUGE, HISTOGRAM, TOPK
from ..metrics.spec import MAX_LABEL_DIMS
from . import _bodies as B
from . import _ops
from ._ops import SIMULATOR, device, sm_id

WORDS = types.Array(types.uint64, 1, "C")


class CudaMetricSetType(types.Array):
    """numba type of a device metric set: its words, typed with its class and layout."""

    def __init__(self, set_class, layout):
        self.set_class = set_class
        self.set_layout = layout            # (``layout`` is the array's: "C")
        self.enabled = True
        super().__init__(types.uint64, 1, "C",
                         name=f"CudaMetricSet[{set_class.__qualname__}@{layout.type_key}]")
        self.handle_types = {attr: _handle_type(m, layout)
                             for attr, m in layout.metrics.items() if m.spec.kind is not TOPK}
        self.python_only = {attr for attr, m in layout.metrics.items() if m.spec.kind is TOPK}

    def handle_type(self, attr):
        """The type of ``m.<attr>`` in a kernel (the typing template of
        :func:`_kernel_arg.register_owner` asks)."""
        if attr in self.python_only:
            raise errors.TypingError(f"{attr}: a top-k table is maintained from Python, not in "
                                     f"kernels")
        return self.handle_types.get(attr)

    @property
    def key(self):
        return ("cuda", self.set_class, self.set_layout.type_key)

    def copy(self, *args, **kwargs):        # array operations on it see plain words
        return WORDS.copy(*args, **kwargs)


class _CudaHandle:
    """Mixin: the metric's place in the words, in the type (constants in the code)."""

    def _init(self, place, *args):
        self.place = place
        N.HandleType.__init__(self, True, *args)
        self.name = "Cuda" + self.name

    @property
    def key(self):
        return ("cuda", getattr(self, "place", None)) + N.HandleType.key.fget(self)


class CudaCounterHandleType(_CudaHandle, CounterHandleType):
    def __init__(self, place, *args):
        self._init(place, *args)


class CudaGaugeHandleType(_CudaHandle, GaugeHandleType):
    def __init__(self, place, *args):
        self._init(place, *args)


class CudaHistogramHandleType(_CudaHandle, HistogramHandleType):
    def __init__(self, place, *args):
        self._init(place, *args)


_HANDLE_TYPES = {COUNTER: CudaCounterHandleType, GAUGE: CudaGaugeHandleType,
                 HISTOGRAM: CudaHistogramHandleType}


def place_of(m, layout) -> tuple:
    """(shared word, words between shared slots, block word, hot word, words per copy,
    copies recorded into, metric index, words per slot)."""
    return (m.shared_offset // 8, m.shared_stride // 8, m.block_offset // 8,
            layout.hot_offset // 8, layout.copy_size // 8, layout.shards + 1,
            layout.metric_index[m.attr], m.slot_bytes // 8)


def _handle_type(m, layout):
    spec = m.spec
    labels = tuple((d.name, len(d.values)) for d in spec.labels)
    enums = tuple(d.enum for d in spec.labels)
    values = tuple(tuple(d.values) for d in spec.labels)
    extra = spec.scheme.key() if spec.kind is HISTOGRAM else ()
    return _HANDLE_TYPES[spec.kind](place_of(m, layout), labels, enums, extra, m.attr,
                                    spec.name, values)


class _HandleModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("words", WORDS)])


class CudaTarget(Target):
    """numba-cuda's registries (``numba.cuda.extending``) and a device set's shape: the set
    is the array of its words (numba's ArrayModel; the launch passes the device array
    that the set's ``to_device`` gives), a handle is ``{words}``, its place in the words
    a compile-time constant of its type."""

    name = "cuda"
    extending = "numba.cuda.extending"
    owner_model = models.ArrayModel
    handle_model = _HandleModel
    owner_members = ()

    @property
    def attribute_template(self):
        from numba.cuda.typing.templates import AttributeTemplate
        return AttributeTemplate

    def handle_members(self, handle_type) -> tuple:
        return ("words",)

    def lower_handle(self, context, builder, typ, value, attr):
        handle = cgutils.create_struct_proxy(typ.handle_types[attr])(context, builder)
        handle.words = value
        return handle._getvalue()

    def register_model(self, typ, model) -> None:
        from numba.cuda.extending import register_model
        register_model(typ)(model)

    def enter(self, owner_type) -> None:
        """Nothing to register: the set is an ``ArgHint`` whose ``to_device`` gives its words."""

    def overload_method(self, typ, name: str, typer, **options) -> None:
        from numba.cuda.extending import overload_method
        # the CPU target caches its method bodies on disk; the device bodies here are
        # generated from strings (no source file numba-cuda's cache could locate), and
        # they compile into the kernel that calls them, which a user may cache itself
        jit_options = {k: v for k, v in options.pop("jit_options", {}).items() if k != "cache"}
        if jit_options:
            options["jit_options"] = jit_options
        overload_method(typ, name, **options)(typer)


class SimulatedTarget(CudaTarget):
    """The simulator (``NUMBA_ENABLE_CUDASIM=1``) runs kernels as Python: the types exist
    (their places and observers are the simulated handles'), nothing is registered."""

    def register_model(self, typ, model) -> None:
        pass

    def attribute_wrapper(self, typ, member: str) -> None:
        pass

    def infer_getattr(self, template) -> None:
        pass

    def lower_getattr_generic(self, typ, impl) -> None:
        pass

    def overload_method(self, typ, name: str, typer, **options) -> None:
        pass


register_target(SimulatedTarget() if SIMULATOR else CudaTarget())
register_owner(CudaMetricSetType, tuple(_HANDLE_TYPES.values()), target="cuda")


def _method(typ, name, typer, **options):
    register_method(typ, name, typer, target="cuda", **options)


# --------------------------------------------------------------------------
# record methods: generated per (metric, label count), offsets as constants
# --------------------------------------------------------------------------

_LABELS = ", ".join(f"l{i}=None" for i in range(MAX_LABEL_DIMS))
_generated: dict = {}

_INVALID = """    if slot < 0:
        bad = BAD
        B.note_invalid(h.words, METRIC, METHOD, R.INVALID_LABEL, bad[0], bad[1])
        return False
"""
_NEGATIVE = """    if SIGNED and __AMOUNT__ < 0:
        B.note_invalid(h.words, METRIC, METHOD, R.INVALID_NEGATIVE, R.VALUE_POSITION,
                       __AMOUNT__)
        return False
"""
_COPY = "copy = np.int64(sm_id()) % COPIES"
_BODIES = {
    "counter.inc": _INVALID + f"""    {_COPY}
    B.counter_inc(h.words, HOT + copy * COPY_WORDS + BLOCK + slot)
    return True
""",
    "counter.add": _INVALID + _NEGATIVE + f"""    {_COPY}
    B.counter_add(h.words, HOT + copy * COPY_WORDS + BLOCK + slot, __AMOUNT__)
    return True
""",
    "gauge.set": _INVALID + """    B.gauge_set(h.words, SHARED + SSTRIDE * slot, value)
    return True
""",
    "gauge.add": _INVALID + """    B.gauge_add(h.words, SHARED + SSTRIDE * slot, SIGN * value)
    return True
""",
    "histogram": _INVALID + f"""    {_COPY}
    OBSERVE(h.words, HOT + copy * COPY_WORDS + BLOCK + SLOT_WORDS * slot, value)
    return True
""",
}


def _constants(h) -> dict:
    shared, sstride, block, hot, copy_words, copies, metric, slot_words = h.place
    return dict(SHARED=shared, SSTRIDE=sstride, BLOCK=block, HOT=hot, COPY_WORDS=copy_words,
                COPIES=copies, METRIC=metric, SLOT_WORDS=slot_words)


def _generate(body, h, n_labels, value_param, method, resolved=(), child=False, amount="1",
              **constants):
    key = (body, h, n_labels, value_param, method, resolved, child, amount,
           tuple(sorted(constants.items(), key=lambda kv: kv[0])))
    fn = _generated.get(key)
    if fn is not None:
        return fn
    ns = dict(np=np, B=B, R=R, sm_id=sm_id, _label_slot=N._label_slot,
              _bad_label=N._bad_label, _child_parts=N._child_parts,
              METHOD=N._METHOD_CODE[method], SIGNED=False, SIGN=1.0)
    ns.update(_constants(h))
    ns.update(constants)
    text = _BODIES[body].replace("__AMOUNT__", amount)
    if child:
        src = (f"def f(c, {value_param}=None):\n    h, slot, bad0, bad1 = _child_parts(c)\n"
               + text.replace("BAD", "(bad0, bad1)"))
    else:
        exprs = [str(r) if r is not None else f"l{i}"
                 for i, r in enumerate(tuple(resolved) or (None,) * n_labels)]
        labels = "(" + "".join(f"{e}, " for e in exprs) + ")"
        head = f"h, {value_param}, " if value_param else "h, "
        src = (f"def f({head}{_LABELS}):\n    slot = _label_slot(h, {labels})\n"
               + text.replace("BAD", f"_bad_label(h, {labels})"))
    exec(src, ns)
    fn = _generated[key] = ns["f"]
    return fn


def _counter_inc(h, l0=None, l1=None, l2=None, l3=None):
    labels = given((l0, l1, l2, l3))
    resolved = N._checked(h, "inc", labels)
    return _generate("counter.inc", h, len(labels), "", "inc", resolved)


def _counter_add(h, n, l0=None, l1=None, l2=None, l3=None):
    labels = given((l0, l1, l2, l3))
    resolved = N._checked(h, "add", labels, [("n", n, True)])
    signed = isinstance(n, types.IntEnumMember) or n.signed
    return _generate("counter.add", h, len(labels), "n", "add", resolved, amount="n",
                     SIGNED=signed)


_method(CudaCounterHandleType, "inc", _counter_inc, prefer_literal=True)
_method(CudaCounterHandleType, "add", _counter_add, prefer_literal=True)


def _gauge_method(name, sign):
    def typer(h, value, l0=None, l1=None, l2=None, l3=None):
        labels = given((l0, l1, l2, l3))
        resolved = N._checked(h, name, labels, [("value", value, False)])
        if name == "set":
            return _generate("gauge.set", h, len(labels), "value", "set", resolved)
        return _generate("gauge.add", h, len(labels), "value", name, resolved, SIGN=sign)
    _method(CudaGaugeHandleType, name, typer, prefer_literal=True)


_gauge_method("set", 1.0)
_gauge_method("add", 1.0)
_gauge_method("sub", -1.0)

_observers: dict = {}


def observer(scheme):
    """``observe(words, slot word, value)`` for a bucket scheme: a device function (GPU)
    or plain Python (simulator), the scheme's parameters as constants."""
    fn = _observers.get(scheme.key())
    if fn is not None:
        return fn
    if isinstance(scheme, ExplicitBuckets):
        K0, SHIFT, LAST, M, LUT, BOUNDS = scheme.tables

        def fn(words, slot, value):
            B.observe_explicit(words, slot, value, K0, SHIFT, LAST, M, LUT, BOUNDS)
    elif isinstance(scheme, ExponentialBuckets):
        SCALE, LO, NB, NEG, LOW, HIGH, LUT, BND, (MAXE, TOP, OVER) = scheme.recording_constants

        def fn(words, slot, value):
            B.observe_exponential(words, slot, value, SCALE, LUT, BND, LO, NB, NEG, LOW, HIGH,
                                  MAXE, TOP, OVER)
    else:
        raise TypeError(f"no recording function for bucket scheme {scheme!r}")
    fn = _observers[scheme.key()] = device(fn)
    return fn


def _histogram_observe(h, value, l0=None, l1=None, l2=None, l3=None):
    labels = given((l0, l1, l2, l3))
    resolved = N._checked(h, "observe", labels, [("value", value, False)])
    return _generate("histogram", h, len(labels), "value", "observe", resolved,
                     OBSERVE=observer(scheme_from_key(h.extra)))


_method(CudaHistogramHandleType, "observe", _histogram_observe, prefer_literal=True)


# --------------------------------------------------------------------------
# m.x.labels(...) in a kernel
# --------------------------------------------------------------------------

class CudaChildType(types.Type):
    """``m.<metric>.labels(...)`` in a CUDA kernel: the handle and the labels' slot."""

    def __init__(self, parent):
        self.parent = parent
        self.enabled = True
        super().__init__(name=f"CudaChild[{parent.name}]")

    @property
    def key(self):
        return ("cuda-child", self.parent)


register_model(CudaChildType, N._ChildModel, target="cuda")   # {h, slot, bad0, bad1}
_CudaHandle.child_class = CudaChildType


def _labels_method(h, l0=None, l1=None, l2=None, l3=None):
    labels = given((l0, l1, l2, l3))
    resolved = N._checked(h, "labels", labels)
    key = ("labels", h, len(labels), resolved)
    fn = _generated.get(key)
    if fn is None:
        exprs = [str(r) if r is not None else f"l{i}" for i, r in enumerate(resolved)]
        tup = "(" + "".join(f"{e}, " for e in exprs) + ")"
        ns = {"_make_child": N._make_child}
        exec(f"def f(h, {_LABELS}):\n    return _make_child(h, {tup})\n", ns)
        fn = _generated[key] = ns["f"]
    return fn


for _t in _HANDLE_TYPES.values():
    _method(_t, "labels", _labels_method, prefer_literal=True)

_CHILD = {          # (kind, method): (body, integer amount, constants)
    ("counter", "inc"): ("counter.add", True, {}),
    ("counter", "add"): ("counter.add", True, {}),
    ("gauge", "set"): ("gauge.set", False, {}),
    ("gauge", "add"): ("gauge.add", False, {"SIGN": 1.0}),
    ("gauge", "sub"): ("gauge.add", False, {"SIGN": -1.0}),
    ("histogram", "observe"): ("histogram", False, {}),
}


def _child_typer(name):
    param = "n" if name == "inc" else "value"

    def typer(c, arg):
        h = c.parent
        entry = _CHILD.get((h.kind.name, name))
        if entry is None:
            has = ", ".join(f"{n}()" for (k, n) in _CHILD if k == h.kind.name)
            raise KernelTypingError(f"{h.metric_name}.labels(...) has no {name}(); a "
                                    f"{h.kind.name} has {has}")
        body, integer, consts = entry
        given = arg is not None and not isinstance(arg, (types.Omitted, types.NoneType))
        if not given and name != "inc":
            raise KernelTypingError(f"{h.metric_name}.labels(...).{name}: takes the value, "
                                    f"{name}(value)")
        if given and N._check_number(h, name, "n" if h.kind is COUNTER else "value", arg,
                                     integer):
            raise N._Retry("retry with plain types")
        consts = dict(consts)
        if h.kind is COUNTER:
            if not given:
                body = "counter.inc"
            consts["SIGNED"] = given and (isinstance(arg, types.IntEnumMember)
                                          or bool(getattr(arg, "signed", False)))
        elif h.kind is HISTOGRAM:
            consts["OBSERVE"] = observer(scheme_from_key(h.extra))
        amount = param if given else "1"
        return _generate(body, h, 0, param, name, child=True, amount=amount, **consts)

    if name == "inc":
        def inc(c, n=None):
            return typer(c, n)
        return inc

    def method(c, value=None):
        return typer(c, value)
    return method


for _name in ("inc", "add", "set", "sub", "observe"):
    _method(CudaChildType, _name, _child_typer(_name), prefer_literal=True)

_KERNEL_METHOD = R.METHODS.index("kernel method")


def _count_invalid(m):
    def impl(m):
        B.note_invalid(m, -1, _KERNEL_METHOD, R.INVALID_ARGUMENT, R.VALUE_POSITION, 0)
    return impl


_method(CudaMetricSetType, "count_invalid", _count_invalid)


_types: dict = {}


def set_type(set_class, layout) -> CudaMetricSetType:
    """The numba type of a device set of ``set_class`` (its kernel methods registered)."""
    key = (set_class, layout.type_key)
    typ = _types.get(key)
    if typ is None:
        typ = _types[key] = CudaMetricSetType(set_class, layout)
        for km in set_class._kernel_methods.values():
            register_kernel_method(km, CudaMetricSetType, target="cuda")
    return typ


# --------------------------------------------------------------------------
# launching: a disabled CPU set is no kernel argument
# --------------------------------------------------------------------------

def _install_launch_hook() -> None:
    from numba.cuda import dispatcher
    kernel = getattr(dispatcher, "_Kernel", None)
    original = getattr(kernel, "_prepare_args", None)
    if original is None or getattr(original, "_engram_numba", False):
        return

    def _prepare_args(self, ty, val, stream, retr, kernelargs):
        if isinstance(ty, N.MetricSetType) and not ty.enabled:
            return          # an empty struct: nothing to pass
        return original(self, ty, val, stream, retr, kernelargs)

    _prepare_args._engram_numba = True
    kernel._prepare_args = _prepare_args


_install_launch_hook()


# --------------------------------------------------------------------------
# device tracers (:mod:`._device_tracer`): events and spans
# --------------------------------------------------------------------------

from ..tracing import _njit as TN  # noqa: E402
from .._kernel_arg import arguments, generate, variadic  # noqa: E402


class CudaTracerType(types.Array):
    """numba type of a device tracer: its words, typed with its event set and geometry."""

    def __init__(self, set_class, geometry):
        self.set_class = set_class
        self.geometry = geometry
        self.enabled = True
        layout = set_class.layout
        super().__init__(types.uint64, 1, "C",
                         name=f"CudaTracer[{set_class.__qualname__}@{layout.hash[:16]},"
                              f"{geometry[0]}x{geometry[1]}]")
        self.handle_types = {}
        for t in layout.types:
            cpu = TN._handle_type(t, layout, True, geometry)
            cls = CudaSpanHandleType if isinstance(cpu, TN.SpanHandleType) else \
                CudaEventHandleType
            self.handle_types[t.name] = cls(cpu)

    def handle_type(self, attr):
        return self.handle_types.get(attr)

    @property
    def key(self):
        return ("cuda-tracer", self.set_class, self.set_class.layout.hash, self.geometry)

    def copy(self, *args, **kwargs):
        return WORDS.copy(*args, **kwargs)


class _CudaTypeHandle:
    """``tr.<type>`` in a kernel: {words}; the type's fields and the rings' geometry in the
    type (what ``tracing._njit._pack`` packs by)."""

    def __init__(self, cpu):
        super().__init__(True, cpu.geometry, cpu.index, cpu.type_name, cpu.fields)
        self.name = "Cuda" + self.name

    @property
    def key(self):
        return ("cuda", type(self).__name__) + TN.TypeHandleType.key.fget(self)


class CudaEventHandleType(_CudaTypeHandle, TN.EventHandleType):
    """``tr.<event>``: ``emit(*fields)``."""


class CudaSpanHandleType(_CudaTypeHandle, TN.SpanHandleType):
    """``tr.<span>``: ``begin(*fields)`` and ``end()``, per warp."""


register_owner(CudaTracerType, (CudaEventHandleType, CudaSpanHandleType), target="cuda")

_TRACE_HEAD = "h, " + ", ".join(f"a{i}=None" for i in range(TN.MAX_ARGS))


def _trace_names(h) -> dict:
    NR, CAP, SLOTS, STACKS, _ = h.geometry
    return {"np": np, "_pack": TN._pack, "NR": NR, "CAP": CAP, "SLOTS": SLOTS,
            "STACKS": STACKS, "INDEX": h.index, "SWITCH": switch_word(h.geometry, h.index),
            "atomic_add_u64": _ops.atomic_add_u64,
            "warp_emit": getattr(_ops, "warp_emit", None),
            "warp_span_begin": getattr(_ops, "warp_span_begin", None),
            "warp_span_end": getattr(_ops, "warp_span_end", None)}


def _device_emit(h, args):
    kind = "emit" if isinstance(h, CudaEventHandleType) else "begin"
    TN._check_args(h, kind, args)
    n = len(args)
    NR, CAP, SLOTS, STACKS, _ = h.geometry
    if kind == "emit":
        body = (f"    if h.words[SWITCH] == 0:\n"
                f"        return False\n"
                f"    ok, w2, w3, w4, w5, w6, w7 = _pack(h, {arguments('a', n)})\n"
                f"    if not ok:\n"
                f"        atomic_add_u64(h.words, NR, 1)\n"
                f"        return False\n"
                f"    warp_emit(h.words, NR, CAP, SLOTS, w2, w3, w4, w5, w6, w7)\n"
                f"    return True\n")
    else:
        body = (f"    on = h.words[SWITCH] != 0\n"
                f"    ok, w2, w3, w4, w5, w6, w7 = _pack(h, {arguments('a', n)})\n"
                f"    return warp_span_begin(h.words, NR, STACKS, CAP, SLOTS, INDEX, ok, on, w2,"
                f" w5, w6, w7)\n")
    return generate(("cuda-tracing", kind, n, NR, CAP, SLOTS, STACKS, h.index), _TRACE_HEAD,
                    body, _trace_names(h), inline=False)


_method(CudaEventHandleType, "emit", variadic(_device_emit, "h"))
_method(CudaSpanHandleType, "begin", variadic(_device_emit, "h"))


def _device_end(h):
    NR, CAP, SLOTS, STACKS, _ = h.geometry
    return generate(("cuda-tracing", "end", NR, CAP, SLOTS, STACKS, h.index), "h",
                    "    return warp_span_end(h.words, NR, STACKS, CAP, SLOTS, INDEX)\n",
                    _trace_names(h), inline=False)


_method(CudaSpanHandleType, "end", _device_end)

_tracer_types: dict = {}


def switch_word(geometry, index: int) -> int:
    """The word of type ``index``'s switch (after the rings' span stacks)."""
    NR, _, _, STACKS, _ = geometry
    return STACKS + NR * _ops.STACK_WORDS + index


def tracer_type(set_class, geometry) -> CudaTracerType:
    key = (set_class, set_class.layout.hash, geometry)
    typ = _tracer_types.get(key)
    if typ is None:
        typ = _tracer_types[key] = CudaTracerType(set_class, geometry)
    return typ
