"""Recording code that LLVM always inlines into the kernel that calls it.

A record (``m.requests.inc()``, ``m.latency.observe(v)``, ``tr.step.emit(...)``,
a ``@kernel_method``) is a few numba functions deep.  numba compiles each
function on its own and links them into the kernel, where LLVM inlines a
callee only while it looks small; a histogram's recording code does not, and
a call that is not inlined costs more than the record itself: its arguments
are spilled, its constants are not folded, and the copy lookup cannot be
hoisted out of the kernel's loop.

numba's own ``inline="always"`` inlines at the level of numba's IR instead; on
the nested recording code it multiplied compile times by ten (36 s for one
``record_priming`` call site), so it is not used.  Instead, functions marked
with :func:`always_inline` get LLVM's ``alwaysinline`` attribute as soon as
numba has compiled them, before any caller links them in: LLVM then inlines
them at every call site, at no cost to numba's compile pipeline.  Methods of a
disabled set or tracer are left alone: they return a constant, LLVM inlines
them anyway, and leaving the pass order untouched keeps the kernel's machine
code identical to the kernel written without the calls.

:func:`never_inline` does the opposite for cold paths (a thread without a copy
of its own recording with atomic instructions): kept out of line, they leave
no locked instruction and little code in the recording loop.  It wraps the
compiled function in an intrinsic that calls it through a ``noinline``
trampoline (see :func:`never_inline`).

The attribute goes on the function in the compiled library's LLVM module
(numba's ``CodeLibrary.get_function``), from a listener on numba's
``numba:compile`` event; on the llvmlite releases that cannot set it there,
numba's own ``forceinline`` option does it (see :mod:`._compat`).  If numba stops firing that event the code still
runs correctly, only slower; ``tests/test_owned_copies.py`` reads the machine code of
recording loops (no call, no locked instruction, no copy lookup in the loop), so such a
change fails the tests.
"""

from __future__ import annotations

import inspect

from llvmlite import ir
from numba import types
from numba.core import event
from numba.core.dispatcher import Dispatcher
from numba.core.typing import signature
from numba.extending import intrinsic

from ._compat import finish_always_inline, linked_only_pipeline, prepare_always_inline

_MARK = "_engram_numba_inline"


def always_inline(fn=None, *, helper: bool = True, linked_only: bool = True):
    """Mark a Python function (before ``njit``) or an njit dispatcher: always inlined by LLVM.

    A dispatcher also becomes a recording helper (:func:`recording_helper`, with
    ``linked_only``) unless ``helper`` is False (a kernel method's body: a user's code,
    typed as numba types it).  Without ``fn``: a decorator with these options.
    """
    if fn is None:
        return lambda f: always_inline(f, helper=helper, linked_only=linked_only)
    setattr(getattr(fn, "py_func", fn), _MARK, True)
    if helper and isinstance(fn, Dispatcher):
        recording_helper(fn, linked_only=linked_only)
    return fn


# -- recording helpers: compiled once per process, for every shape ---------------------------
# Where the time of a first compile goes (``benchmarks/compile_time.py``, numba's
# ``numba:compile`` events and a profile of a cold compile): every helper is a
# numba function of its own, and each compile of one runs numba's whole pipeline
# (typing, lowering, a module optimisation, machine code, a cache entry) plus
# two entry points for Python (a CPython wrapper and a C callback) that no caller
# uses.  numba also compiles a callee once per *literal* value of its arguments:
# a constant such as an event type's index or a ring geometry, passed down from
# the generated recording code, made every helper below it compile again for
# every event type and tracer (``threshold(uint64, Literal[int](0))`` and
# ``(uint64, Literal[int](1))``).  A recording helper therefore
#
# * is typed with its arguments' plain types: one compile per process for every
#   metric, event type and tracer (the constants still reach LLVM, which inlines
#   the helper and folds them, so the machine code of a record is the same);
# * has no entry point for Python: a call from Python runs a twin compiled for
#   Python on its first call (without disk cache, so the two never share an entry);
# * is compiled to LLVM only, without machine code or a module optimisation of its
#   own: its callers link it in and optimise it with themselves
#   (:func:`._compat.linked_only_pipeline`; a helper marked ``linked_only=False``
#   keeps numba's whole pipeline, where that gave kernels better machine code).

_helper_classes: dict = {}


def _python_twin(dispatcher):
    twin = dispatcher.__dict__.get("_engram_numba_python_twin")
    if twin is None:
        from numba import njit
        options = {k: v for k, v in dispatcher.targetoptions.items()
                   if k not in ("no_cpython_wrapper", "no_cfunc_wrapper", "nopython")}
        twin = njit(**options)(dispatcher.py_func)
        dispatcher.__dict__["_engram_numba_python_twin"] = twin
    return twin


def _helper_class(cls):
    """``cls`` (a numba dispatcher class) typed with plain argument types, called from Python
    through a twin."""
    sub = _helper_classes.get(cls)
    if sub is None:
        class RecordingHelper(cls):
            def get_call_template(self, args, kws):
                return super().get_call_template(
                    tuple(types.unliteral(a) for a in args),
                    {k: types.unliteral(v) for k, v in kws.items()})

            def __call__(self, *args, **kwargs):
                return _python_twin(self)(*args, **kwargs)

        RecordingHelper.__qualname__ = RecordingHelper.__name__ = f"RecordingHelper{cls.__name__}"
        sub = _helper_classes[cls] = RecordingHelper
    return sub


def recording_helper(dispatcher, linked_only: bool = True):
    """Make an njit dispatcher of the package a recording helper (see above); returns it.

    ``linked_only`` False keeps numba's whole pipeline for it (its module optimised and
    made machine code on its own), where that gave kernels better machine code."""
    if not isinstance(dispatcher, Dispatcher) or dispatcher.targetoptions.get("no_cpython_wrapper"):
        return dispatcher
    dispatcher.targetoptions["no_cpython_wrapper"] = True
    dispatcher.targetoptions["no_cfunc_wrapper"] = True
    if linked_only:
        dispatcher._compiler.pipeline_class = linked_only_pipeline()
    dispatcher.__class__ = _helper_class(type(dispatcher))
    return dispatcher


def never_inline(dispatcher):
    """An njit function whose every call from compiled code stays a call (a cold path).

    Returns a callable for compiled code only.  A call site becomes a plain call
    to a small trampoline, a function of the caller's module carrying LLVM's
    ``noinline`` attribute (set on llvmlite's IR, which every supported llvmlite
    can do), which calls the compiled function the way numba calls one (return
    slot, exception pointer).  Keeping that convention inside the trampoline
    keeps its stack stores out of the caller's loop: LLVM 14 speculated them
    into the hot path when the call sat there directly.  The function must not
    raise (an atomic update does not): the trampoline drops the status.  It is
    compiled with ``forceinline=False`` so that it never takes a caller's (see
    :mod:`._compat`).
    """
    dispatcher.targetoptions["forceinline"] = False
    recording_helper(dispatcher)
    target = types.Dispatcher(dispatcher)

    def typer(typingctx, args):
        resolved = typingctx.resolve_function_type(target, args, {})
        if resolved is None:
            return None

        def codegen(context, builder, sig, values):
            cres = dispatcher.get_compile_result(resolved)
            context.add_linking_libs([cres.library])
            void = resolved.return_type in (types.none, types.void)
            ret = ir.VoidType() if void else context.get_value_type(resolved.return_type)
            fnty = ir.FunctionType(ret, [context.get_value_type(t) for t in resolved.args])
            module = builder.module
            name = f"engram_numba.out_of_line.{cres.fndesc.mangled_name}"
            trampoline = module.globals.get(name)
            if trampoline is None:
                trampoline = ir.Function(module, fnty, name)
                trampoline.linkage = "internal"
                trampoline.attributes.add("noinline")
                inner = ir.IRBuilder(trampoline.append_basic_block("entry"))
                callee = context.declare_function(module, cres.fndesc)
                _, result = context.call_conv.call_function(
                    inner, callee, resolved.return_type, resolved.args, list(trampoline.args))
                if void:
                    inner.ret_void()
                else:
                    inner.ret(result)
            cast = [context.cast(builder, v, have, want)
                    for v, have, want in zip(values, sig.args, resolved.args)]
            result = builder.call(trampoline, cast)
            return context.get_dummy_value() if void else result

        return signature(resolved.return_type, *args), codegen

    # numba types an intrinsic's parameters one by one: give it the function's own
    params = ", ".join(inspect.signature(dispatcher.py_func).parameters)
    namespace = {"typer": typer}
    exec(f"def out_of_line(typingctx, {params}):\n    return typer(typingctx, ({params},))\n",
         namespace)
    wrapper = namespace["out_of_line"]
    wrapper.__name__ = wrapper.__qualname__ = f"out_of_line_{dispatcher.py_func.__name__}"
    return intrinsic(wrapper)


def marked(py_func) -> bool:
    return getattr(py_func, _MARK, False) is True


class _Listener(event.Listener):
    def on_start(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        if marked(getattr(dispatcher, "py_func", None)):
            prepare_always_inline(dispatcher)

    def on_end(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        if not marked(getattr(dispatcher, "py_func", None)):
            return
        for cres in list(dispatcher.overloads.values()):
            library = getattr(cres, "library", None)
            name = getattr(getattr(cres, "fndesc", None), "llvm_func_name", None)
            if library is None or name is None:
                continue
            try:
                fn = library.get_function(name)
            except NameError:
                # loaded from numba's on-disk cache as machine code: the attribute is
                # already in the bitcode kept for inlining (saved after this listener ran)
                continue
            finish_always_inline(fn)


_listener = _Listener()
event.register("numba:compile", _listener)
