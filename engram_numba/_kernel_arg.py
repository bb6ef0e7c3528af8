"""Python objects as kernel arguments: the one place that speaks numba's extension API.

Metric sets (:mod:`.metrics._njit`) and tracers (:mod:`.tracing._njit`) reach
kernels the same way, through this module; each contributes only its types
and its recording code.

How an object reaches a kernel (numba's extension API, in call order)::

    typeof hook       ``obj._numba_type_`` (an :class:`OwnerType` that carries the
                      layout, so code compiled for one layout never runs on another)
    data model        :class:`OwnedAddressModel`: ``{base: uintp, pid: u64, entry: i64}``
                      enabled, ``{}`` disabled (an empty struct: no register, no code);
                      ``entry`` is the thread's copy or ring, looked up where a thread
                      receives the object
    entry             how the value enters compiled code; on the CPU target the unbox
                      function :func:`unbox_address` reads ``obj._kernel_address``
                      (raises for a closed object) and ``obj._kernel_pid`` (this
                      process's id), and looks the entry up
    attribute typing  ``obj.<name>`` is ``owner_type.handle_type(name)`` (a
                      :class:`HandleType`, or a TypingError the owner type raises)
    lowering          the handle is the owner's base, pid and entry followed by
                      ``owner_type.handle_constants(name)`` (its place: constants LLVM
                      folds into the inlined recording code); :class:`HandleModel`
    methods           :func:`register_method` puts the recording code on a handle
                      type (``overload_method``); a disabled handle's method is
                      inlined by numba itself and returns a constant (:func:`returning`),
                      so it vanishes before LLVM sees a call: the disabled twin

:func:`register_owner` does all of it for an owner type and its handle types.
The rest of the module is what both sides share around it: :func:`star` and
:func:`given` (how numba hands over optional and ``*args`` parameters),
:func:`check_enum_argument`, the arity limit :data:`MAX_ARGS` and the generated
functions with explicit parameters (:func:`variadic`, :func:`generate`), and
the Python-to-compiled callers (:func:`object_from_address`,
:func:`python_caller`).

Targets (extension points)
--------------------------
Registration goes through a :class:`Target`, named by the ``target=``
parameter of :func:`register_owner` and :func:`register_method` (default
``"cpu"``).  A second numba target registers a subclass with
:func:`register_target` and overrides what differs:

``register_model(typ, model)``
    the data model of a type (CPU: numba's default data-model manager).
``enter(owner_type)``
    how a value of ``owner_type`` enters compiled code from the host (CPU: the
    unbox function above; a device target passes ``base, pid`` and looks the
    entry up on the device).
``attribute_wrapper(typ, member)``, ``infer_getattr(template)``,
``lower_getattr_generic(typ, impl)``
    attribute typing and lowering (CPU: numba's builtin registries).
``overload_method(typ, name, typer, **options)``
    a method's typer (CPU: ``numba.extending.overload_method``; another target
    passes ``target=<its name>``).
``owner_model``, ``handle_model``, ``owner_members``, ``handle_members(h)``,
``attribute_template``, ``lower_handle(context, builder, typ, value, attr)``
    the data models of owners and handles, the members readable on both and on
    handles, the typing template's base class, and what ``obj.<attr>`` lowers
    to (CPU: :class:`OwnedAddressModel`, :class:`HandleModel`, base/pid/entry,
    the handle's constants, numba's AttributeTemplate, :func:`_lower_handle`;
    the CUDA target, :mod:`engram_numba.gpu._target`, passes a device set as
    the array of its words and a handle as ``{words}``).

What every target shares is the protocol of the types (an owner's
``handle_type(attr)``, a handle's label metadata) and the typing around it; a
target says how values are represented (models, lowering), where the
registrations go, and, where its memory differs, its own record bodies (the CPU
records at addresses of the thread's owned copy, the CUDA target into word
indices of a device array).

Both kinds of owner own a :class:`~engram_numba._region.Region`.  The pid
travels with the address because a forked child keeps its parent's thread ids:
the claim tables (:mod:`._claim`) key ownership by (thread, process).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import weakref

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.typing.templates import AttributeTemplate
from numba.extending import NativeValue, intrinsic, models

from ._cache import generated_file, mark_uncached
from ._compat import overload_method_by_state
from ._inline import always_inline

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

#: the native value of an enabled owner, and the first members of its handles
OWNER_MEMBERS = (("base", types.uintp), ("pid", types.uint64), ("entry", types.int64))


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
        # disabled: nothing at all (no register, no code)
        super().__init__(dmm, fe_type, list(OWNER_MEMBERS) if fe_type.enabled else [])

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


class OwnerType(types.Type):
    """Base of the numba types of objects passed to kernels (a metric set, a tracer).

    Subclasses set ``enabled`` and ``handle_types`` (attribute -> :class:`HandleType`)
    and may set ``claim_table`` (see :class:`OwnedAddressModel`) and
    ``claim_thread_words``.
    """

    enabled = True
    handle_types: dict = {}
    claim_table = None
    claim_thread_words = None

    def handle_type(self, attr):
        """The type of ``obj.<attr>`` in a kernel, or None (no such attribute)."""
        return self.handle_types.get(attr)

    def handle_constants(self, attr) -> tuple:
        """The values of the handle's ``constant_members``, compile-time constants."""
        return ()


class HandleType(types.Type):
    """Base of the numba types of an owner's parts in a kernel (a metric, an event type).

    Its native value (:class:`HandleModel`) is the owner's, followed by one int64 per
    name in ``constant_members`` (set from :meth:`OwnerType.handle_constants`).
    """

    enabled = True
    constant_members: tuple = ()


class HandleModel(models.StructModel):
    """Enabled: base, pid, the thread's entry and the handle's constants; disabled: nothing."""

    def __init__(self, dmm, fe_type):
        members = list(OWNER_MEMBERS) + [(f, types.int64) for f in fe_type.constant_members] \
            if fe_type.enabled else []
        super().__init__(dmm, fe_type, members)


def _lower_handle(context, builder, typ, value, attr):
    """``obj.<attr>``: the owner's base, pid and entry, then the handle's constants."""
    htype = typ.handle_types[attr]
    handle = cgutils.create_struct_proxy(htype)(context, builder)
    if typ.enabled:
        owner = cgutils.create_struct_proxy(typ)(context, builder, value=value)
        for member, _ in OWNER_MEMBERS:
            setattr(handle, member, getattr(owner, member))
        i64 = context.get_value_type(types.int64)
        for member, v in zip(htype.constant_members, typ.handle_constants(attr)):
            setattr(handle, member, ir.Constant(i64, v))
    return handle._getvalue()


# -- targets ----------------------------------------------------------------------------------

class Target:
    """How types and methods are registered with one numba target (the CPU's here).

    A second target subclasses this, overrides what differs and calls
    :func:`register_target` (see the module docstring).
    """

    name = "cpu"
    #: the data models of owners and handles (see :class:`OwnedAddressModel`)
    owner_model = OwnedAddressModel
    handle_model = HandleModel
    #: the members ``register_owner`` makes readable on owners and handles
    owner_members = tuple(m for m, _ in OWNER_MEMBERS)
    #: the base class of the ``obj.<attr>`` typing template
    attribute_template = AttributeTemplate

    def handle_members(self, handle_type) -> tuple:
        """The members made readable on a handle besides ``owner_members`` (CPU: its
        ``constant_members``)."""
        return handle_type.constant_members

    def lower_handle(self, context, builder, typ, value, attr):
        """``obj.<attr>``: the handle's native value (CPU: :func:`_lower_handle`)."""
        return _lower_handle(context, builder, typ, value, attr)

    def register_model(self, typ, model) -> None:
        from numba.extending import register_model
        register_model(typ)(model)

    def enter(self, owner_type) -> None:
        from numba.extending import unbox
        unbox(owner_type)(unbox_address)

    #: the module whose registration decorators this target's registries take
    extending = "numba.extending"

    def _extending(self):
        import importlib
        return importlib.import_module(self.extending)

    def attribute_wrapper(self, typ, member: str) -> None:
        self._extending().make_attribute_wrapper(typ, member, member)

    def infer_getattr(self, template) -> None:
        self._extending().infer_getattr(template)

    def lower_getattr_generic(self, typ, impl) -> None:
        self._extending().lower_getattr_generic(typ)(impl)

    def overload_method(self, typ, name: str, typer, **options) -> None:
        from numba.extending import overload_method
        if self.name != "cpu":
            options["target"] = self.name
        elif callable(options.get("inline")):
            # numba inlines only a disabled receiver's methods: an enabled one's are
            # typed once, without numba's preparation for inlining (see _compat)
            overload_method_by_state(typ, name, typer, **options)
            return
        overload_method(typ, name, **options)(typer)


_targets: dict = {"cpu": Target()}


def register_target(target: Target) -> None:
    """Make ``target=target.name`` available to :func:`register_owner` and
    :func:`register_method`."""
    _targets[target.name] = target


# -- devices: ``MySet.cuda()`` ------------------------------------------------------------------
# Core modules cannot import the device packages (they sit above them); a device package
# registers its factories when imported, and the package facade says which module that is.

_devices: dict = {}
_device_modules: dict = {}


def register_device(kind: str, factory) -> None:
    """``factory(owner_class, **options)`` makes a device object (``kind``: "cuda")."""
    _devices[kind] = factory


def register_device_module(kind: str, module: str) -> None:
    """The module whose import registers ``kind``'s factories (the package facade's say)."""
    _device_modules[kind] = module


def device(kind: str):
    """The factory of ``kind``'s device objects, importing the module that registers it."""
    factory = _devices.get(kind)
    if factory is None and kind in _device_modules:
        import importlib
        importlib.import_module(_device_modules[kind])
        factory = _devices.get(kind)
    if factory is None:
        raise RuntimeError(f"no {kind} device support registered; import "
                           f"{_device_modules.get(kind, 'its package')}")
    return factory


def _target(name: str) -> Target:
    try:
        return _targets[name]
    except KeyError:
        raise ValueError(f"no numba target {name!r} registered; known: "
                         f"{sorted(_targets)}") from None


def register_model(typ, model, target: str = "cpu") -> None:
    """The data model of a type that is neither an owner nor a handle (e.g. a metric's
    child handle, ``m.x.labels(...)``)."""
    _target(target).register_model(typ, model)


def register_owner(owner_type, handle_types, target: str = "cpu") -> None:
    """Register an :class:`OwnerType` subclass and its :class:`HandleType` subclasses
    with a numba target: models, member access, entry, ``obj.<attr>`` typing and lowering."""
    t = _target(target)
    t.register_model(owner_type, t.owner_model)
    for h in handle_types:
        register_handle(h, target)
    for member in t.owner_members:
        t.attribute_wrapper(owner_type, member)
    t.enter(owner_type)

    class _Attributes(t.attribute_template):
        key = owner_type

        def generic_resolve(self, typ, attr):
            return typ.handle_type(attr)

    _Attributes.__name__ = f"_{owner_type.__name__}Attributes"
    t.infer_getattr(_Attributes)
    t.lower_getattr_generic(owner_type, t.lower_handle)


def register_handle(handle_type, target: str = "cpu") -> None:
    """Register a :class:`HandleType` subclass (one registered later than its owner type, as
    a metric kind's): its model and member access."""
    t = _target(target)
    t.register_model(handle_type, t.handle_model)
    for member in t.handle_members(handle_type):
        t.attribute_wrapper(handle_type, member)
    for member in t.owner_members:
        t.attribute_wrapper(handle_type, member)


def inline_disabled(expr, caller, callee):
    """numba inlines a disabled handle's methods itself: they vanish before LLVM sees a call."""
    return not callee.signature.args[0].enabled


def register_method(typ, name: str, typer, *, target: str = "cpu", inline=inline_disabled,
                    prefer_literal: bool = False) -> None:
    """``obj.<name>(...)`` on values of ``typ`` in kernels: ``typer`` returns the body.

    By default a disabled value's method is inlined by numba (:func:`inline_disabled`):
    give it a body that returns a constant (:func:`returning`).

    The bodies are cached on disk (``cache=True``, keyed on the package's fingerprint):
    ``typer`` returns functions of the package or of :func:`generate`."""
    options = {"inline": inline, "jit_options": {"cache": True}}
    if prefer_literal:
        options["prefer_literal"] = True
    _target(target).overload_method(typ, name, typer, **options)


# -- arguments ----------------------------------------------------------------------------------

#: the most positional arguments a kernel-side method takes: an event's fields (44
#: one-byte fields fill the slot's payload) and a kernel method's arguments
MAX_ARGS = 44


def star(args) -> tuple:
    """numba hands ``*args`` to overloads either flat or as one StarArgTuple."""
    if len(args) == 1 and isinstance(args[0], (types.StarArgTuple, types.StarArgUniTuple)):
        return tuple(args[0].types)
    return tuple(args)


def given(args) -> tuple:
    """The argument types of the optional parameters a call gave (numba types the ones
    it left out as None, Omitted or NoneType)."""
    return tuple(t for t in args
                 if t is not None and not isinstance(t, (types.Omitted, types.NoneType)))


def check_enum_argument(where: str, t, enum_cls) -> None:
    """A kernel argument for an ``IntEnum`` parameter: its members or a plain integer.

    Raises KernelTypingError (``where`` names the parameter) for a member of another
    enum or anything that is no integer."""
    from ._values import KernelTypingError
    if isinstance(t, types.IntEnumMember):
        if t.instance_class is not enum_cls:
            raise KernelTypingError(f"{where} takes {enum_cls.__name__} members, "
                                    f"got a {t.instance_class.__name__}")
    elif isinstance(t, types.Boolean) or not isinstance(t, (types.Integer, types.Omitted)):
        raise KernelTypingError(f"{where} takes {enum_cls.__name__} members or integers, "
                                f"got {t}")


def parameters(prefix: str, n: int = MAX_ARGS) -> str:
    """``"a0=None, a1=None, ..."``: ``n`` optional parameters named ``prefix<i>``."""
    return ", ".join(f"{prefix}{i}=None" for i in range(n))


def arguments(prefix: str, n: int) -> str:
    """``"(a0, a1, )"``: a tuple of the first ``n`` of them."""
    return "(" + "".join(f"{prefix}{i}, " for i in range(n)) + ")"


# -- generated functions ----------------------------------------------------------------------
# numba types an overload's parameters one by one and inlines only calls with explicit
# arguments, so methods taking a variable number of arguments are generated with explicit
# optional parameters, once per shape.

_generated: dict = {}


def generate(key, head: str, body: str, names: dict | None = None, *, inline: bool = True):
    """``def f(<head>):\n<body>`` compiled once per ``key`` in a namespace of ``names``;
    ``inline``: marked for LLVM to inline (:func:`._inline.always_inline`), as recording
    code of an enabled object is (a disabled object's is inlined by numba instead).

    The text is written to a file of the package's generated directory (see
    :mod:`._cache`), named by a hash of the text and of a description of every name
    in ``names``, so that numba's on-disk cache keeps its compiled code across
    processes; when a name cannot be described (see :func:`_describe`) or no
    directory is writable, it compiles in every process instead."""
    fn = _generated.get(key)
    if fn is None:
        ns = dict(names or {})
        text = f"def f({head}):\n{body}"
        described = _describe_names(ns)
        path = None
        if described is not None:
            path = generated_file(f"# engram_numba generated code; names: {described}\n"
                                  + text, f"{inline}\n{described}\n{text}")
        # numba rebuilds a cached function's environment from its module's name
        ns.setdefault("__name__", __name__)
        if path is None:
            exec(compile(text, "<engram_numba generated>", "exec"), ns)
            fn = mark_uncached(ns["f"])
        else:
            exec(compile("\n" + text, str(path), "exec"), ns)   # line 2 of the file
            fn = ns["f"]
            fn._engram_numba_source = path.name
        if inline:
            fn = always_inline(fn)
        _generated[key] = fn
    return fn


def _describe_names(ns: dict):
    """A text naming every value of ``ns`` well enough that equal texts mean equal
    compiled code (this package's fingerprint keys the package's own code), or None."""
    parts = []
    for name in sorted(ns):
        d = _describe(ns[name])
        if d is None:
            return None
        parts.append(f"{name}={d}")
    return "; ".join(parts)


def _describe(value, depth: int = 0):
    """``value`` as stable text: numbers, strings, tuples of them, and functions,
    intrinsics, njit functions and modules of this package or numpy (closures with
    their cells); None for anything else (a user's function: its code is not keyed)."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return repr(value)
    if isinstance(value, tuple) and depth < 4:
        items = [_describe(v, depth + 1) for v in value]
        return None if None in items else "(" + ", ".join(items) + ",)"
    if isinstance(value, type(np)):
        name = value.__name__
        return f"module {name}" if name.split(".")[0] in (_PACKAGE, "numpy") else None
    func = getattr(value, "py_func", None) or getattr(value, "_defn", None) or value
    if hasattr(func, "_engram_numba_source"):
        return f"generated {func._engram_numba_source}"
    if getattr(func, "_engram_numba_uncached", False):
        return None
    module = getattr(func, "__module__", None) or ""
    qualname = getattr(func, "__qualname__", None)
    if module.split(".")[0] != _PACKAGE or not qualname or not callable(func):
        return None
    text = f"{type(value).__name__} {module}.{qualname}"
    cells = getattr(func, "__closure__", None)
    if cells:
        try:
            data = pickle.dumps(tuple(c.cell_contents for c in cells), protocol=4)
        except Exception:  # a cell we cannot key on
            return None
        text += f" cells {hashlib.sha256(data).hexdigest()[:24]}"
    return text


_PACKAGE = __name__.split(".")[0]


def returning(head: str, value: str = "False"):
    """``def f(<head>): return <value>``: the method of a disabled object (numba inlines
    it, and the constant folds away with every branch on it)."""
    return generate(("returning", head, value), head, f"    return {value}\n",
                    {"np": np}, inline=False)


def variadic(impl, first: str, fixed: tuple = (), prefix: str = "a", n: int = MAX_ARGS):
    """A typer ``(first, *fixed, <prefix>0=None, ..., <prefix>{n-1}=None)`` calling
    ``impl(first, *fixed, given)``, ``given`` the types of the optional arguments the
    call gave (numba matches a typer's parameters to the call one by one)."""
    head = ", ".join([first, *fixed, parameters(prefix, n)])
    call = ", ".join([first, *fixed])
    body = f"    return impl({call}, given({arguments(prefix, n)}))\n"
    ns = {"impl": impl, "given": given}
    exec(f"def typer({head}):\n{body}", ns)
    typer = ns["typer"]
    typer.__name__ = typer.__qualname__ = getattr(impl, "__name__", "typer")
    return typer


# -- Python calls: compiled code entered with plain scalars -------------------------------------

def object_from_address(nbtype):
    """An intrinsic building a value of ``nbtype`` (an OwnedAddressModel type) from (base, pid)
    (and the calling thread's entry, for a type with a ``claim_table``)."""
    @intrinsic
    def make(typingctx, base, pid):
        sig = nbtype(base, pid)

        def codegen(context, builder, sig, args):
            value = cgutils.create_struct_proxy(nbtype)(context, builder)
            value.base = context.cast(builder, args[0], sig.args[0], types.uintp)
            value.pid = context.cast(builder, args[1], sig.args[1], types.uint64)
            if getattr(nbtype, "claim_table", None) is not None:
                return with_entry(builder, nbtype, value._getvalue())
            return value._getvalue()

        return sig, codegen

    return make


_callers: dict = {}


def python_caller(body, nbtype, n_args: int):
    """A compiled ``call(base, pid, a0, ...)`` running the njit function ``body`` on an
    object of ``nbtype``: ``body(obj, a0, ...)``.

    Its arguments are plain integers and floats, which numba's dispatcher types
    in C, so a call from Python costs a fraction of a microsecond.
    """
    key = (body, nbtype, n_args)
    caller = _callers.get(key)
    if caller is None:
        params = "".join(f", a{i}" for i in range(n_args))
        ns = {"body": body, "make": object_from_address(nbtype), "njit": njit}
        exec(f"@njit(nogil=True)\ndef caller(base, pid{params}):\n"
             f"    return body(make(base, pid){params})\n", ns)
        caller = _callers[key] = ns["caller"]
    return caller


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
    #: True when ``_kernel_pid`` also notes the calling thread (a tracer gives a finished
    #: thread's ring back); Python-side calls then read it instead of the cached pid
    _notes_threads = False

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
