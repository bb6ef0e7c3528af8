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
from numba.core import cgutils, errors
from numba.extending import intrinsic, overload_method

from . import _kernel_arg
from ._values import as_enum, as_number

__all__ = ["kernel_method", "register_kernel_method", "python_caller"]


class kernel_method:
    """Declare a method of a :class:`MetricSet` or :class:`EventSet` that kernels can call."""

    def __init__(self, func):
        self.func = func
        self.name = func.__name__
        functools.update_wrapper(self, func)
        self._signature = inspect.signature(func)
        self._params = list(self._signature.parameters)[1:]
        self._checks = None
        self._jitted = None

    def __set_name__(self, owner, name):
        self.name = name

    def _annotations(self) -> dict:
        """{param: ("enum", cls) | ("field", FieldType)} from the annotations."""
        if self._checks is None:
            from .tracing.schema import field_type
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
        return functools.partial(self._call, obj)

    def jitted(self):
        """The body compiled by numba (one dispatcher, shared by every class using it).

        ``inline="always"``: numba inlines it into the kernel's own IR, so a
        kernel method costs what its body costs, with no call in between.
        """
        if self._jitted is None:
            self._jitted = njit(inline="always")(self.func)
        return self._jitted

    def _arguments(self, obj, args, kwargs) -> list:
        """Positional arguments for the compiled body, each validated (ValueError)."""
        if kwargs or len(args) != len(self._params):
            try:
                bound = self._signature.bind(obj, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self.name}: {exc}") from None
            bound.apply_defaults()
            args = tuple(bound.arguments[p] for p in self._params)
        checks = self._annotations()
        out = []
        for param, value in zip(self._params, args):
            where = f"{self.name}: {param}"
            check = checks.get(param)
            if check is not None and check[0] == "enum":
                out.append(int(as_enum(check[1], value, where)))
                continue
            if check is not None:
                value = check[1].python(value, where)
            if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
                v = int(value)
                if -(1 << 63) <= v < (1 << 63):
                    out.append(v)
                elif 0 <= v < (1 << 64):
                    out.append(np.uint64(v))
                else:
                    out.append(float(v))           # beyond 64 bits: a number all the same
            elif isinstance(value, float) or (check is not None and isinstance(value, bool)):
                out.append(value)
            else:
                out.append(as_number(value, where))
        return out

    def _call(self, obj, *args, **kwargs):
        values = self._arguments(obj, args, kwargs)
        if obj._region is None:
            return _disabled_result(self)
        base = obj._address()          # raises when closed or read-only
        key = (self.name, len(values))
        caller = obj._callers.get(key)
        if caller is None:
            caller = obj._callers[key] = python_caller(self, obj._nbtype, len(values))
        return caller(base, _kernel_arg.current_pid(), *values)


def _disabled_result(km):
    hints = getattr(km.func, "__annotations__", {})
    return False if hints.get("return") in (bool, "bool") else None


_registered: set = set()
MAX_ARGS = 44
_PARAMS = ", ".join(["self"] + [f"a{i}=None" for i in range(MAX_ARGS)])
_wrappers: dict = {}


def _given(args):
    return tuple(t for t in args
                 if t is not None and not isinstance(t, (types.Omitted, types.NoneType)))


def _wrapper(body, n):
    """``def f(self, a0=None, ...): return body(self, a0, ..., a{n-1})`` (explicit arity:
    numba inlines only calls with explicit arguments)."""
    key = (body, n)
    fn = _wrappers.get(key)
    if fn is None:
        ns = {"body": body}
        call = ", ".join(["self"] + [f"a{i}" for i in range(n)])
        exec(f"def f({_PARAMS}):\n    return body({call})\n", ns)
        fn = _wrappers[key] = ns["f"]
    return fn


def register_kernel_method(km, owner_type) -> None:
    """Make ``obj.<name>(...)`` resolve, in kernels on ``owner_type``, to the class's method."""
    name = km.name
    if (owner_type, name) in _registered:
        return
    _registered.add((owner_type, name))

    def _method(self, *args):
        method = self.set_class._kernel_methods.get(name)
        if method is None:
            return None
        given = _given(args)
        if len(given) > MAX_ARGS:
            raise errors.TypingError(f"{name}: at most {MAX_ARGS} arguments in kernels")
        try:
            bound = method._signature.bind(self, *given)
        except TypeError as exc:
            raise errors.TypingError(f"{name}: {exc} (kernel methods take positional "
                                     f"arguments in kernels)") from None
        for param, enum_cls in method._enums().items():
            t = bound.arguments.get(param)
            if isinstance(t, types.IntEnumMember) and t.instance_class is not enum_cls:
                raise errors.TypingError(
                    f"{name}: {param} takes {enum_cls.__name__} members, "
                    f"got a {t.instance_class.__name__}")
            if t is not None and not isinstance(t, (types.IntEnumMember, types.Integer,
                                                    types.Omitted)):
                raise errors.TypingError(
                    f"{name}: {param} takes {enum_cls.__name__} members or integers, got {t}")
        return _wrapper(method.jitted(), len(given))

    ns = {"_method": _method}
    exec(f"def typer({_PARAMS}):\n    return _method(self, {', '.join(f'a{i}' for i in range(MAX_ARGS))})\n", ns)
    overload_method(owner_type, name)(ns["typer"])


def _star(args):
    """numba hands ``*args`` to overloads either flat or as one StarArgTuple."""
    if len(args) == 1 and isinstance(args[0], (types.StarArgTuple, types.StarArgUniTuple)):
        return tuple(args[0].types)
    return tuple(args)


# -- Python calls: the compiled body, entered with plain scalars ---------------------------

_callers: dict = {}


def object_from_address(nbtype):
    """An intrinsic building a value of ``nbtype`` (an AddressModel type) from (base, pid)."""
    @intrinsic
    def make(typingctx, base, pid):
        sig = nbtype(base, pid)

        def codegen(context, builder, sig, args):
            value = cgutils.create_struct_proxy(nbtype)(context, builder)
            value.base = context.cast(builder, args[0], sig.args[0], types.uintp)
            value.pid = context.cast(builder, args[1], sig.args[1], types.uint64)
            return value._getvalue()

        return sig, codegen

    return make


def python_caller(km, nbtype, n_args: int):
    """A compiled ``call(base, pid, a0, ...)`` running ``km`` on an object of ``nbtype``.

    Its arguments are plain integers and floats, which numba's dispatcher types
    in C, so a call from Python costs a fraction of a microsecond.
    """
    key = (km, nbtype, n_args)
    caller = _callers.get(key)
    if caller is None:
        params = ", ".join(f"a{i}" for i in range(n_args))
        ns = {"body": km.jitted(), "make": object_from_address(nbtype), "njit": njit}
        exec(f"@njit(nogil=True)\ndef caller(base, pid{', ' if params else ''}{params}):\n"
             f"    return body(make(base, pid){', ' if params else ''}{params})\n", ns)
        caller = _callers[key] = ns["caller"]
    return caller
