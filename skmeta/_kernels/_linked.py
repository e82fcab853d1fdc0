"""Helpers compiled only to be linked into the kernels that call them.

numba compiles every jitted function into a code library of its own, which
it then optimizes with its callees linked in, and emits as machine code.
For a helper that only ever runs inside a kernel, both are wasted: the
kernel links the helper's code, optimizes the whole again, and emits its
own machine code. With helpers nested a few levels deep, each level
optimized and emitted everything below it once more -- over half of the
LLVM time of a first fit, and half of its CPU time once numba's own typing
and lowering are counted (``benchmarks/bench_compile.py``).

:class:`HelperCompiler`, numba's compiler with one change: a helper's
library is *linked only*. Finalizing it links its callees' code into its
module and stops; the kernel's library, a standard one, optimizes and emits
everything once. Such a helper has no machine code of its own, so

* it cannot be called from Python (helpers are compiled without a Python
  wrapper in any case), nor cached on disk (its kernels are);
* it has no numba environment: a helper whose code needs one (``print`` of
  a run-time value, an object-mode block) is refused when it is compiled;
* two helpers cannot call each other (a function calling itself can).

:class:`InlinedHelperCompiler` also marks the helper's code to be inlined
wherever it is called (LLVM's ``alwaysinline``), for the few helpers that
inner loops call (see ``_jit.always_inlined``).

This reaches into numba's codegen classes, which are not public API, so it
is used only with the numba versions it was checked against
(:data:`AVAILABLE`); with others the helpers compile as numba compiles any
function.
"""

import numba
from numba.core import codegen, compiler
from numba.core.compiler_lock import require_global_compiler_lock

# the members relied on, and the versions where they behave as relied on:
# numba's lowering keeps a library the pipeline set, and sets a function's
# environment through its library's codegen
_NEEDED = ("_get_module_for_linking", "_raise_if_finalized", "finalize",
           "codegen", "add_linking_library", "add_ir_module")
_CHECKED_VERSIONS = ((0, 68),)
AVAILABLE = (numba.version_info.short in _CHECKED_VERSIONS
             and all(hasattr(codegen.JITCodeLibrary, m) for m in _NEEDED))


def _uses_environment(module_text):
    """Whether the functions of an LLVM module read a numba environment.

    numba names a function's environment global ``_ZN08NumbaEnv...``; its
    definition is a line of its own, every other mention is a use.
    """
    return any("NumbaEnv" in line and not line.startswith("@")
               for line in module_text.splitlines())


class _LinkedOnlyLibrary(codegen.JITCodeLibrary):
    """A code library that is linked into others, never run itself."""

    # whether its functions are inlined wherever they are called
    always_inline = False

    def add_ir_module(self, ir_module):
        if self.always_inline:
            for function in ir_module.functions:
                # numba marks some functions noinline (all of them with
                # NUMBA_DEBUGINFO=1), which LLVM refuses to combine
                if not (function.is_declaration
                        or "noinline" in function.attributes
                        or "optnone" in function.attributes):
                    function.attributes.add("alwaysinline")
        super().add_ir_module(ir_module)

    def finalize(self):
        require_global_compiler_lock()
        self._raise_if_finalized()
        if _uses_environment(str(self._final_module)):  # before linking: its own
            raise RuntimeError(
                f"skmeta helper {self.name!r} needs a numba environment (a "
                "print of a run-time value, or an object-mode block), which "
                "helpers compiled only into their kernels do not have")
        for library in dict.fromkeys(self._linking_libraries):
            self._reload_init.update(library._reload_init)
            self._final_module.link_in(library._get_module_for_linking(),
                                       preserve=True)
        self._final_module.verify()
        self._finalized = True

    @property
    def codegen(self):
        return _NoEnvironment(self._codegen)


class _NoEnvironment:
    """The codegen, minus setting a function's environment pointer.

    numba points a compiled function's environment global at its
    environment in the machine code; a linked-only library has no machine
    code, and its code reads no environment (``_uses_environment``).
    """

    def __init__(self, wrapped):
        self._wrapped = wrapped

    def __getattr__(self, name):
        return getattr(self._wrapped, name)

    def set_env(self, env_name, env):
        return None


class _InlinedLibrary(_LinkedOnlyLibrary):
    always_inline = True


class HelperCompiler(compiler.Compiler):
    """numba's compiler, with a linked-only library for the function."""

    library_class = _LinkedOnlyLibrary

    def compile_extra(self, func):
        if self.state.library is None:
            self.state.library = self.library_class(
                self.state.targetctx.codegen(), func.__qualname__)
        return super().compile_extra(func)


class InlinedHelperCompiler(HelperCompiler):
    """:class:`HelperCompiler`, for a helper inlined at every call.

    LLVM inlines a function called from several places only when it is
    small; the row products and the unrolled steps are not, and left as
    calls they take their arguments' arrays apart at every call and hide
    their loops from the caller's optimizations (measured: a quarter of the
    linear MAML kernel's time).
    """

    library_class = _InlinedLibrary
