"""Where the numba and llvmlite releases this package supports differ (internal).

Supported: numba 0.60 (June 2024, the first release for numpy 2) to the newest,
with the llvmlite and numpy each of them allows.  Every difference between
those releases that this package meets is handled here, and nowhere else, so
that the rest of the code is written against one numba.

* **Function attributes** (llvmlite 0.43-0.47, numba 0.60-0.65): llvmlite's
  ``ValueRef.add_function_attribute`` puts the attribute on the function's
  *return value*, and LLVM's verifier then rejects the module ("Attribute
  'alwaysinline' does not apply to function return values").  Fixed in
  llvmlite 0.48 (numba 0.66).  Where it is broken, ``alwaysinline`` is set
  through numba's own ``forceinline`` compile option instead, before the
  function is compiled (numba then passes it on to the functions it compiles
  for that one, which is harmless for these small bodies; a cold path opts out,
  see :func:`._inline.never_inline`).  The release is detected by probing
  llvmlite, not by its version number.
* **Cache implementation class** (numba 0.61 renamed ``caching._CacheImpl`` to
  ``caching.CacheImpl``).
* **Methods typed per state** (:func:`overload_method_by_state`): numba's
  ``overload_method`` builds its templates from ``templates._OverloadMethodTemplate``
  (``_resolve``, ``_init_once``, ``_get_target_registry``, ``_get_function_type``,
  ``_get_signature``), the same from 0.60 to the newest.
* **Parallel-region entry**: ``numba_parallel_for`` and its eight arguments are
  the same from 0.60 to the newest, and so is the private ``_launch_threads``
  (with ``_is_initialized``) that registers it; only the functions at the end
  of this module touch them.
"""

from __future__ import annotations

import functools

__all__ = ["function_attributes_work", "cache_impl_class", "overload_method_by_state",
           "prepare_always_inline", "finish_always_inline", "atomic_rmw",
           "parallel_for_signature", "parallel_for_address", "parallel_for_caller",
           "when_threading_layer_launched", "replace_parallel_for"]


@functools.lru_cache(maxsize=None)
def function_attributes_work() -> bool:
    """Whether llvmlite's ``add_function_attribute`` sets a *function* attribute.

    Probed on a one-line module: the broken releases put ``noinline`` on the
    return value of a ``void`` function, which LLVM's verifier rejects.
    """
    from llvmlite import binding as llvm
    module = llvm.parse_assembly("define void @probe() {\n  ret void\n}\n")
    module.get_function("probe").add_function_attribute("noinline")
    try:
        module.verify()
    except RuntimeError:
        return False
    return True


def cache_impl_class(caching):
    """numba's cache implementation class (``CacheImpl`` from 0.61, ``_CacheImpl`` before)."""
    return getattr(caching, "CacheImpl", None) or caching._CacheImpl


def prepare_always_inline(dispatcher) -> None:
    """Before ``dispatcher`` compiles: on llvmlite releases that cannot set function
    attributes afterwards, ask numba itself for ``alwaysinline`` (``forceinline``)."""
    if function_attributes_work():
        return
    options = getattr(dispatcher, "targetoptions", None)
    if isinstance(options, dict):
        options["forceinline"] = True


def finish_always_inline(fn) -> None:
    """After compiling: put ``alwaysinline`` on the compiled LLVM function ``fn`` where
    llvmlite can (:func:`prepare_always_inline` did it for the others)."""
    if not function_attributes_work():
        return
    present = {a.decode() if isinstance(a, bytes) else str(a) for a in fn.attributes}
    if "alwaysinline" not in present:
        fn.add_function_attribute("alwaysinline")


# -- methods of enabled and disabled objects ----------------------------------------------

def overload_method_by_state(typ, name, typer, inline, **options) -> None:
    """``numba.extending.overload_method(typ, name, inline=inline, **options)(typer)`` for a
    type whose instances are enabled or disabled (``typ.enabled``), where the cost model
    ``inline`` inlines only disabled receivers' methods.

    numba prepares the inlining of an overload with a cost model on every call it types:
    it runs the implementation's front end and type inference a second time, for
    the cost model's use, besides compiling it; for an enabled receiver, whose
    methods are never inlined by numba, that was all wasted (a tenth of a first
    compile).  Here the two states get a template each: enabled receivers one with
    ``inline="never"`` (compiled only), disabled ones one with the cost model.  A
    template resolves the method only on receivers of its state, and both lower a
    call through the template of the receiver's state.
    """
    from numba.core import types
    from numba.core.typing.templates import (_OverloadMethodTemplate,
                                             make_overload_attribute_template)
    from numba.extending import infer_getattr, overload

    prefer_literal = options.pop("prefer_literal", False)
    by_state = {}

    class _ByState(_OverloadMethodTemplate):
        enabled_state = True

        def _resolve(self, typ, attr):
            if bool(getattr(typ, "enabled", True)) is not self.enabled_state:
                return None
            return super()._resolve(typ, attr)

        def _init_once(self):
            registry = self._get_target_registry("method")

            @registry.lower((self.key, self._attr), self.key, types.VarArg(types.Any))
            def method_impl(context, builder, sig, args):
                cls = by_state[bool(getattr(sig.args[0], "enabled", True))]
                typing_context = context.typing_context
                fnty = cls._get_function_type(typing_context, sig.args[0])
                sig = cls._get_signature(typing_context, fnty, _as_typed(sig.args), {})
                call = context.get_function(fnty, sig)
                context.add_linking_libs(getattr(call, "libs", ()))
                return call(builder, args)

    for enabled, how in ((True, "never"), (False, inline)):
        base = type(f"_{'Enabled' if enabled else 'Disabled'}Methods", (_ByState,),
                    {"enabled_state": enabled})
        func = _copy_function(typer)        # numba registers an overload per function
        template = make_overload_attribute_template(typ, name, func, inline=how, base=base,
                                                    prefer_literal=prefer_literal, **options)
        by_state[enabled] = template
        infer_getattr(template)
        overload(func, inline=how, prefer_literal=prefer_literal, **options)(func)


def _as_typed(args) -> tuple:
    """A lowered call's argument types as its call site gave them when it was typed.

    numba's template keeps the implementation it compiled for a call under the
    call's own argument types; the signature that reaches lowering has the
    defaults of the parameters the call left out appended (``Omitted``), and
    looked up with those, the template compiled the same implementation a
    second time, as a new function (or loaded it back from the disk cache).
    A call site never passes an ``Omitted`` itself, so dropping the trailing
    ones gives the typed key back.
    """
    from numba.core import types
    args = tuple(args)
    while args and isinstance(args[-1], types.Omitted):
        args = args[:-1]
    return args


def _copy_function(f):
    import types as pytypes
    g = pytypes.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__,
                             f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__qualname__ = f.__qualname__
    g.__module__ = f.__module__
    g.__dict__.update(f.__dict__)
    return g


# -- atomic read-modify-write ---------------------------------------------------------------

def _llvm_major() -> int:
    from llvmlite import binding as llvm
    return llvm.llvm_version_info[0]


def atomic_rmw(builder, opcode: str, ptr, value, ordering: str):
    """``atomicrmw opcode ptr, value`` (returns the previous value).

    ``fmax`` and ``fmin`` exist in LLVM 15 and later (llvmlite 0.44, numba 0.61);
    on LLVM 14 (llvmlite 0.43, numba 0.60) they become a compare-and-swap loop on
    the value's bits around ``llvm.maxnum`` / ``llvm.minnum``, which is what LLVM
    itself emits for them on x86-64.
    """
    if opcode not in ("fmax", "fmin") or _llvm_major() >= 15:
        return builder.atomic_rmw(opcode, ptr, value, ordering)
    from llvmlite import ir
    fty = value.type
    ity = ir.IntType(64 if isinstance(fty, ir.DoubleType) else 32)
    name = "llvm.maxnum" if opcode == "fmax" else "llvm.minnum"
    name += ".f64" if isinstance(fty, ir.DoubleType) else ".f32"
    module = builder.module
    fn = module.globals.get(name) or ir.Function(module, ir.FunctionType(fty, [fty, fty]), name)
    iptr = builder.bitcast(ptr, ity.as_pointer())
    first = builder.load_atomic(iptr, "monotonic", ity.width // 8)
    entry = builder.block
    loop = builder.append_basic_block("rmw.loop")
    done = builder.append_basic_block("rmw.done")
    builder.branch(loop)
    builder.position_at_end(loop)
    old_bits = builder.phi(ity)
    old_bits.add_incoming(first, entry)
    new = builder.call(fn, [builder.bitcast(old_bits, fty), value])
    pair = builder.cmpxchg(iptr, old_bits, builder.bitcast(new, ity), ordering, "monotonic")
    seen = builder.extract_value(pair, 0)
    old_bits.add_incoming(seen, loop)
    builder.cbranch(builder.extract_value(pair, 1), done, loop)
    builder.position_at_end(done)
    return builder.bitcast(old_bits, fty)


# -- numba's parallel-region entry ----------------------------------------------------------
# Every parallel region (prange, parallel ufuncs) calls the native
# ``numba_parallel_for(fn, args, dims, steps, data, inner_ndim, array_count, num_threads)``,
# with these arguments on numba 0.60 to the newest; the threading layer registers it in
# llvmlite's symbol table when it is launched, and a kernel resolves it when it is linked.

def parallel_for_signature():
    from numba import types
    vp = types.voidptr
    return types.void(vp, vp, vp, vp, vp, types.intp, types.intp, types.intp)


def parallel_for_address() -> int:
    """numba's ``numba_parallel_for`` (its threading layer must be launched)."""
    import llvmlite.binding as ll
    return ll.address_of_symbol("numba_parallel_for")


def when_threading_layer_launched(callback) -> None:
    """Call ``callback()`` now if numba's threading layer is launched, else right after
    numba launches it (which it does before it compiles a parallel kernel), so that
    nothing here starts threads."""
    from numba.np.ufunc import parallel
    if parallel._is_initialized:
        callback()
        return
    launch = parallel._launch_threads
    if getattr(launch, "_engram_callbacks", None) is not None:
        launch._engram_callbacks.append(callback)
        return

    def _launch_threads():
        launch()
        while wrapped._engram_callbacks:
            wrapped._engram_callbacks.pop(0)()
    wrapped = _launch_threads
    wrapped._engram_callbacks = [callback]
    parallel._launch_threads = wrapped


def parallel_for_caller(address: int):
    """A ctypes function for ``address``, callable from a compiled function."""
    import ctypes
    proto = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 5, ctypes.c_ssize_t,
                             ctypes.c_ssize_t, ctypes.c_ssize_t)
    return proto(address)


def replace_parallel_for(compiled) -> None:
    """Make kernels linked from now on enter parallel regions through ``compiled`` (a
    ``cfunc``; kept alive by the caller)."""
    import llvmlite.binding as ll
    ll.add_symbol("numba_parallel_for", compiled.address)


# -- functions compiled only to be linked into others ----------------------------------------

@functools.lru_cache(maxsize=None)
def linked_only_pipeline():
    """numba's compiler pipeline (``pipeline_class``) for a function that is only ever
    linked into the functions that call it, never called through a pointer.

    numba readies every function it compiles to be called: it optimises the
    function's module with everything it calls linked in, and the JIT engine
    turns all of it into machine code.  A recording helper's machine code is
    never run (its callers get its LLVM module and inline it), so that work was
    repeated, unused, at every level of the recording code.  Here the library
    of such a function skips both: the engine only gets a stub module holding
    the function's environment pointers (numba writes them when the function is
    compiled or loaded from the cache), whose few bytes of object code are what
    numba's cache keeps as the library's machine code, next to the LLVM module
    that callers link in.  Its callers optimise it with their own module.

    The record methods that kernels call (the bodies generated per metric and
    event shape) keep numba's pipeline: the LLVM module a kernel links in is
    then the one it was before, which matters because making machine code
    rewrites a module's IR in place (LLVM's code generation preparation), and
    kernels that linked the unprepared IR of the whole recording code came out
    with other code: a histogram's special-value counters merged with its bucket
    increment, 4% slower per ``observe``.  For the same reason a histogram's
    ``observe`` below them keeps it too (see ``metrics._record``).

    numba 0.60 to the newest: ``codegen.JITCodeLibrary`` with
    ``_optimize_final_module``, ``_finalize_final_module`` (whose work up to the
    engine is ``_finalize_dynamic_globals`` and ``_verify_declare_only_symbols``),
    the object-cache hooks finding the library under ``_CPUCodeLibrary__library``
    of the module, and ``compiler.Compiler`` with ``state.library``.
    """
    import weakref

    from llvmlite import binding as ll
    from llvmlite import ir
    from numba.core import cgutils, codegen, compiler

    class LinkedOnlyLibrary(codegen.JITCodeLibrary):
        def _optimize_final_module(self):
            pass            # the caller optimises it, linked into its own module

        def _finalize_final_module(self):
            self._finalize_dynamic_globals()
            self._verify_declare_only_symbols()
            stub = self._codegen._create_empty_module(f"{self.name}.env")
            for gv in self._final_module.global_variables:
                if gv.name.startswith("_ZN08NumbaEnv") and not gv.is_declaration:
                    env = ir.GlobalVariable(stub, cgutils.voidptr_t, name=gv.name)
                    env.linkage = "common"
                    env.initializer = cgutils.get_null_value(env.type.pointee)
            stub = ll.parse_assembly(str(stub))
            stub.triple = self._final_module.triple
            stub.data_layout = self._final_module.data_layout
            setattr(stub, "_CPUCodeLibrary__library", weakref.proxy(self))
            self._codegen._add_module(stub)
            self._codegen._engine.finalize_object()
            self._finalized = True

    class LinkedOnlyCompiler(compiler.Compiler):
        def compile_extra(self, func):
            if self.state.library is None:
                library = LinkedOnlyLibrary(self.state.targetctx.codegen(),
                                            getattr(func, "__qualname__", "linked"))
                library.enable_object_caching()
                self.state.library = library
            return super().compile_extra(func)

    return LinkedOnlyCompiler
