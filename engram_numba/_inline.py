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
no locked instruction and little code in the recording loop.

The attribute goes on the function in the compiled library's LLVM module
(numba's ``CodeLibrary.get_function``), from a listener on numba's
``numba:compile`` event.  If numba stops firing that event the code still
runs correctly, only slower; ``tests/test_zero_cost.py`` shows the inlined
machine code of recording loops, so such a change fails the tests.
"""

from __future__ import annotations

from numba.core import event

_MARK = "_engram_numba_inline"


def always_inline(fn):
    """Mark a Python function (before ``njit``) or an njit dispatcher: always inlined by LLVM."""
    setattr(getattr(fn, "py_func", fn), _MARK, "alwaysinline")
    return fn


def never_inline(fn):
    """Mark a function that LLVM must keep out of line (a cold path out of a hot loop)."""
    setattr(getattr(fn, "py_func", fn), _MARK, "noinline")
    return fn


def marked(py_func):
    return getattr(py_func, _MARK, None)


class _Listener(event.Listener):
    def on_start(self, ev):
        pass

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
            fn = library.get_function(name)
            if attribute not in {a.decode() if isinstance(a, bytes) else str(a)
                                 for a in fn.attributes}:
                fn.add_function_attribute(attribute)


_listener = _Listener()
event.register("numba:compile", _listener)
