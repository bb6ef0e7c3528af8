"""``@kernel_method``: methods of metric sets and event sets that kernels and Python call.

A kernel method's body may only use its object's declared parts (metrics,
event types) and other kernel methods.  It is compiled into each kernel that
calls it, and compiled once more for calls from Python, which enter it with
plain scalars (numba's dispatcher types those in C: a fraction of a
microsecond per call).

Annotations validate the Python path before anything is recorded: an
``IntEnum`` class takes its members or values (a member of another IntEnum is
refused), a numpy scalar type (``np.uint32``, ``np.float32``, ...) takes numbers
in its range; other parameters take numbers.  In kernels, a member of another
IntEnum is a ``TypingError``.  Arguments are positional in kernels.

numba resolves a method attribute with the first template registered for its
name, so there is one overload per (kind of object, method name), whose typer
looks the method up on the class being compiled: two classes may each define
a ``record`` with different parameters.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing

import numpy as np
from numba import njit, types

from . import _kernel_arg
from ._fields import BoolField, EnumField, FloatField, IntField, field_type
from ._inline import always_inline
from ._kernel_arg import (MAX_ARGS, check_enum_argument, generate, python_caller,
                          register_method, returning, variadic)
from ._values import KernelTypingError, as_enum, as_number

__all__ = ["kernel_method", "register_kernel_method"]


class kernel_method:
    """Declare a method of a :class:`MetricSet` or :class:`EventSet` that kernels can call."""

    def __init__(self, func):
        self.func = func
        self.name = func.__name__
        functools.update_wrapper(self, func)
        self._signature = inspect.signature(func)
        self._params = list(self._signature.parameters)[1:]
        self._checks = None
        self._convs = None
        self._jitted = None
        self._jitted_disabled = None

    def __set_name__(self, owner, name):
        self.name = name

    def _annotations(self) -> dict:
        """{param: ("enum", cls) | ("field", FieldType)} from the annotations."""
        if self._checks is None:
            try:
                hints = typing.get_type_hints(self.func)
            except Exception:  # unresolvable annotations: nothing to validate
                hints = {}
            checks = {}
            for p, t in hints.items():
                if p == "return" or p not in self._params:
                    continue
                if isinstance(t, type) and issubclass(t, enum.IntEnum):
                    checks[p] = ("enum", t)
                else:
                    try:
                        checks[p] = ("field", field_type(t))
                    except TypeError:
                        pass
            self._checks = checks
        return self._checks

    def _enums(self) -> dict:
        return {p: c for p, (k, c) in self._annotations().items() if k == "enum"}

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        bound = _Bound(self, obj)
        try:
            obj.__dict__[self.name] = bound      # later lookups skip the descriptor
        except (AttributeError, TypeError):
            pass
        return bound

    def jitted(self):
        """The body compiled by numba (one dispatcher, shared by every class using it)."""
        if self._jitted is None:
            self._jitted = always_inline(njit(self.func), helper=False)
        return self._jitted

    def jitted_disabled(self):
        """The body for disabled objects, inlined by numba into its caller's IR.

        There every recording call returns a constant and vanishes, so the kernel's
        machine code is that of the kernel without the call.  (Enabled bodies are
        inlined by LLVM instead: see .._inline.)
        """
        if self._jitted_disabled is None:
            self._jitted_disabled = njit(inline="always")(self.func)
        return self._jitted_disabled

    def _converters(self) -> list:
        """One ``convert(value)`` per parameter (:func:`_convert`: validates, raises)."""
        if self._convs is None:
            checks = self._annotations()
            self._convs = [_converter(checks.get(p), f"{self.name}: {p}") for p in self._params]
        return self._convs

    def _fast_specs(self) -> list:
        """Per parameter, the inline test of :func:`_fast`: ("enum", cls, values),
        ("int", lo, hi), ("float",), ("bool",), ("number",) or ("none",)."""
        checks = self._annotations()
        out = []
        for p in self._params:
            check = checks.get(p)
            kind = check[1] if check is not None and check[0] == "field" else None
            enum_cls = check[1] if check is not None and check[0] == "enum" else \
                kind.enum if isinstance(kind, EnumField) else None
            if enum_cls is not None:
                out.append(("enum", enum_cls, frozenset(int(m) for m in enum_cls)))
            elif isinstance(kind, IntField):
                out.append(("int", kind.lo, min(kind.hi, _I64_MAX)))
            elif isinstance(kind, FloatField):
                out.append(("float",))
            elif isinstance(kind, BoolField):
                out.append(("bool",))
            elif check is None:
                out.append(("number",))
            else:
                out.append(("none",))
        return out

    def _arguments(self, obj, args, kwargs) -> list:
        """Positional arguments for the compiled body, each validated (ValueError)."""
        if kwargs or len(args) != len(self._params):
            try:
                bound = self._signature.bind(obj, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.name}: {exc}") from None
            bound.apply_defaults()
            args = tuple(bound.arguments[p] for p in self._params)
        return [convert(value) for convert, value in zip(self._converters(), args)]

    def _call(self, obj, *args, **kwargs):
        return _Bound(self, obj)(*args, **kwargs)


class _Bound:
    """A kernel method bound to an object, called from Python.

    Arguments are validated first (nothing is recorded if one is bad), then the
    compiled body runs on the object's memory through a caller compiled for
    plain scalar arguments (see :func:`python_caller`).  The call with exactly
    the declared positional arguments is generated per method (:func:`_fast`):
    one inline type test per argument, then the compiled call.
    """

    __slots__ = ("_km", "_obj", "_n", "_caller", "_fast", "__wrapped__")

    def __init__(self, km, obj):
        self._km, self._obj = km, obj
        self._n = len(km._params)
        self._caller = None
        self._fast = None
        self.__wrapped__ = km.func

    def __call__(self, *args, **kwargs):
        if not kwargs and len(args) == self._n:
            fast = self._fast
            if fast is not None:
                return fast(*args)
        return self._call(self._km._arguments(self._obj, args, kwargs))

    def _call(self, values):
        km, obj = self._km, self._obj
        if obj._region is None:
            return _disabled_result(km)
        base = obj._address()          # raises when closed or read-only
        caller = self._caller
        if caller is None:
            key = (km.name, len(values))
            caller = obj._callers.get(key)
            if caller is None:
                caller = obj._callers[key] = python_caller(km.jitted(), obj._nbtype,
                                                           len(values))
            self._caller = caller
            if obj._region is not None and len(values) == self._n:
                self._fast = _fast(km, obj, caller, self._call)
        pid = obj._kernel_pid if obj._notes_threads else _kernel_arg._pid
        return caller(base, pid, *values)

    def __repr__(self) -> str:
        return f"<kernel method {self._km.name} of {self._obj!r}>"


def _fast(km, obj, caller, call):
    """``f(a0, a1, ...)``: each argument's common case tested inline, else the full path.

    Only while the object stays open and writable (``obj._wbase``); anything
    unusual (a closed object, a value needing conversion or refusal) goes to
    ``call`` with every argument converted by the full checks.
    """
    names = {"caller": caller, "call": call, "obj": obj, "ka": _kernel_arg,
             "convs": km._converters()}
    params = [f"a{i}" for i in range(len(km._params))]
    tests, values = [], []
    for i, spec in enumerate(km._fast_specs()):
        a = params[i]
        if spec[0] == "enum":
            names[f"E{i}"], names[f"S{i}"] = spec[1], spec[2]
            tests.append(f"(type({a}) is E{i} or (type({a}) is int and {a} in S{i}))")
            values.append(f"int({a})")
        elif spec[0] == "int":
            tests.append(f"(type({a}) is int and {spec[1]} <= {a} <= {spec[2]})")
            values.append(a)
        elif spec[0] == "float":
            tests.append(f"type({a}) is float")
            values.append(a)
        elif spec[0] == "bool":
            tests.append(f"type({a}) is bool")
            values.append(a)
        elif spec[0] == "number":
            tests.append(f"(type({a}) is float or (type({a}) is int and "
                         f"{_I64_MIN} <= {a} <= {_I64_MAX}))")
            values.append(a)
        else:
            tests.append("False")
    joined = ", ".join(params)
    # (an object that notes its threads, see KernelArgument, notes the calling one)
    note = ("        if not hasattr(obj._noted, 'it'):\n            obj._kernel_pid\n"
            if obj._notes_threads else "")
    src = (f"def fast({joined}):\n"
           f"    base = obj._wbase\n"
           f"    if base is not None and {' and '.join(tests) or 'True'}:\n{note}"
           f"        return caller(base, ka._pid{''.join(', ' + v for v in values)})\n"
           f"    return call([c(a) for c, a in zip(convs, ({joined}{',' if params else ''}))])\n")
    exec(src, names)
    return names["fast"]


_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _convert(check, value, where):
    """One argument, validated, as the scalar the compiled body takes."""
    if check is not None and check[0] == "enum":
        return int(as_enum(check[1], value, where))
    if check is not None:
        value = check[1].python(value, where)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = int(value)
        if _I64_MIN <= v <= _I64_MAX:
            return v
        if 0 <= v < (1 << 64):
            return np.uint64(v)
        return float(v)                    # beyond 64 bits: a number all the same
    if isinstance(value, float) or (check is not None and isinstance(value, bool)):
        return value
    return as_number(value, where)


def _converter(check, where):
    """``convert(value)``: the full validation of one argument (ValueError)."""
    def convert(value):
        return _convert(check, value, where)
    return convert


def _disabled_result(km):
    hints = getattr(km.func, "__annotations__", {})
    return False if hints.get("return") in (bool, "bool") else None


_registered: set = set()
_HEAD = "self, " + ", ".join(f"a{i}=None" for i in range(MAX_ARGS))


def _wrapper(body, n):
    """``def f(self, a0=None, ...): return body(self, a0, ..., a{n-1})`` (explicit arity:
    numba inlines only calls with explicit arguments)."""
    call = ", ".join(["self"] + [f"a{i}" for i in range(n)])
    return generate(("kernel method", body, n), _HEAD, f"    return body({call})\n",
                    {"body": body})


def register_kernel_method(km, owner_type, target: str = "cpu") -> None:
    """Make ``obj.<name>(...)`` resolve, in kernels on ``owner_type`` (of numba target
    ``target``), to the class's method."""
    name = km.name
    if (owner_type, name) in _registered:
        return
    _registered.add((owner_type, name))

    def _method(self, given):
        method = self.set_class._kernel_methods.get(name)
        if method is None:
            return None
        try:
            bound = method._signature.bind(self, *given)
        except TypeError as exc:
            raise KernelTypingError(f"{name}: {exc} (kernel methods take positional "
                                     f"arguments in kernels)") from None
        for param, enum_cls in method._enums().items():
            t = bound.arguments.get(param)
            if t is not None:
                check_enum_argument(f"{name}: {param}", t, enum_cls)
        if self.enabled:
            return _wrapper(method.jitted(), len(given))
        body = method.jitted_disabled()
        if _returns_none(body, (self, *given)):
            return _nothing         # numba inlines it: the call leaves no trace at all
        return _wrapper(body, len(given))

    _method.__name__ = name
    register_method(owner_type, name, variadic(_method, "self"), target=target,
                    inline=_inline_nothing)


def _returns_none(body, arg_types) -> bool:
    """Whether ``body`` (a disabled object's method) returns nothing for these arguments."""
    from numba.core.registry import cpu_target
    context = cpu_target.typing_context
    try:
        sig = context.resolve_value_type(body).get_call_type(context, tuple(arg_types), {})
    except Exception:           # a typing error surfaces when the wrapper is compiled
        return False
    return sig is not None and sig.return_type == types.none


_nothing = returning(_HEAD, "None")


def _inline_nothing(expr, caller, callee):
    """numba inlines only the empty implementation (a disabled object's method that
    returns nothing): the call leaves no trace in the kernel's IR.  Inlining the
    method's own body as well made numba's parfor pass warn about its variables."""
    func_id = getattr(getattr(callee, "func_ir", None), "func_id", None)
    return getattr(func_id, "func", None) is _nothing
