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
compiled function in an intrinsic whose call instruction carries LLVM's
``noinline`` call-site attribute, which every supported llvmlite can set.

The attribute goes on the function in the compiled library's LLVM module
(numba's ``CodeLibrary.get_function``), from a listener on numba's
``numba:compile`` event; on the llvmlite releases that cannot set it there,
numba's own ``forceinline`` option does it (see :mod:`._compat`).  If numba stops firing that event the code still
runs correctly, only slower; ``tests/test_zero_cost.py`` shows the inlined
machine code of recording loops, so such a change fails the tests.
"""

from __future__ import annotations

import inspect

from numba import types
from numba.core import cgutils, event
from numba.core.typing import signature
from numba.extending import intrinsic

from ._compat import finish_compile, prepare_compile

_MARK = "_engram_numba_inline"


def always_inline(fn):
    """Mark a Python function (before ``njit``) or an njit dispatcher: always inlined by LLVM."""
    setattr(getattr(fn, "py_func", fn), _MARK, "alwaysinline")
    return fn


def never_inline(dispatcher):
    """An njit function whose every call from compiled code stays a call (a cold path).

    Returns a callable for compiled code only: each call site is an LLVM call
    with the ``noinline`` attribute.  The function is compiled with
    ``forceinline=False`` so that it never takes a caller's (see :mod:`._compat`).
    """
    dispatcher.targetoptions["forceinline"] = False
    target = types.Dispatcher(dispatcher)

    def typer(typingctx, args):
        resolved = typingctx.resolve_function_type(target, args, {})
        if resolved is None:
            return None

        def codegen(context, builder, sig, values):
            cres = dispatcher.get_compile_result(resolved)
            context.add_linking_libs([cres.library])
            fn = context.declare_function(builder.module, cres.fndesc)
            cast = [context.cast(builder, v, have, want)
                    for v, have, want in zip(values, sig.args, resolved.args)]
            status, result = context.call_conv.call_function(
                builder, fn, resolved.return_type, resolved.args, cast, attrs=("noinline",))
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return result

        return signature(resolved.return_type, *args), codegen

    # numba types an intrinsic's parameters one by one: give it the function's own
    params = ", ".join(inspect.signature(dispatcher.py_func).parameters)
    namespace = {"typer": typer}
    exec(f"def out_of_line(typingctx, {params}):\n    return typer(typingctx, ({params},))\n",
         namespace)
    wrapper = namespace["out_of_line"]
    wrapper.__name__ = wrapper.__qualname__ = f"out_of_line_{dispatcher.py_func.__name__}"
    return intrinsic(wrapper)


def marked(py_func):
    return getattr(py_func, _MARK, None)


class _Listener(event.Listener):
    def on_start(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        attribute = marked(getattr(dispatcher, "py_func", None))
        if attribute is not None:
            prepare_compile(dispatcher, attribute)

    def on_end(self, ev):
        data = ev.data or {}
        dispatcher = data.get("dispatcher")
        attribute = marked(getattr(dispatcher, "py_func", None))
        if attribute is None:
            return
        for cres in list(dispatcher.overloads.values()):
            library = getattr(cres, "library", None)
            name = getattr(getattr(cres, "fndesc", None), "llvm_func_name", None)
            if library is None or name is None:
                continue
            finish_compile(library.get_function(name), attribute)


_listener = _Listener()
event.register("numba:compile", _listener)
