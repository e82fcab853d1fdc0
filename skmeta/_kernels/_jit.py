"""The ways kernels are compiled.

``kernel`` is for entry points called from Python; the helpers are only
called from other jitted code and need no Python or C wrapper (that saves
compile time). They are not optimized or emitted as machine code on their
own either, only inside the kernels that link them (``_linked``), so they
are not cached to disk: their kernels are. All release the GIL. ``error_model
="numpy"`` drops division-by-zero checks: the kernels guard their divisions
themselves, and the checks cost code size and compile time.

The solvers' kernels and all helpers are compiled without numba's reference
counting (``_nrt=False``): they only read and write arrays their caller owns
and keeps alive, and with it every array argument of a call, and every view,
cost an atomic increment and decrement -- measured at over half the time of
the unrolled inner loops, where the helpers are called per task and step.
So they allocate nothing (``_workspaces`` makes their buffers), and a helper
may return views of its arguments only to callers compiled the same way: a
caller with reference counting would release references it never took.

A jitted function called from another with a constant argument (``lo=0``,
``with_value=True``) would be compiled once more for that constant's value:
numba types a constant as a literal, and each literal signature is a
specialization of its own. Every function compiled here is typed on its
arguments' types only (``_typed_by_kind``): one specialization per kind of
argument, as when called from Python: a quarter fewer functions to compile
for the whole package (164 -> 123, ``benchmarks/bench_compile.py``). The
row products keep one constant argument (``specializing_helper``, below).

While numba compiles a kernel of this package, the objects that existed
before are kept out of Python's garbage collections (``gc.freeze``,
``_CollectionsSpared``): compiling creates hundreds of thousands of
objects, which trigger about five full collections, and each of those
scanned again every object of the process (numpy, scikit-learn, numba's
registries) -- half a second of a first fit's seven.
"""

import gc
import inspect

from numba import config, njit, types
from numba.core import event

from . import _linked


class _CollectionsSpared(event.Listener):
    """Keeps a process's existing objects out of the garbage collections
    that run while numba compiles one of this package's functions.

    On numba's ``numba:compile`` events (numba's event API): the outermost
    compilation of a function of ``skmeta`` freezes the objects (moves them
    to the permanent generation, which collections skip) and unfreezes
    them when it ends, failed or not. Nested compilations (its helpers) and
    compilations of other packages' functions do nothing. Nor does anything
    happen if something else of the process has frozen objects: unfreezing
    would release them as well. Compilations hold numba's compiler lock,
    so events arrive from one thread at a time.
    """

    def __init__(self):
        self._depth = 0
        self._frozen = False

    def on_start(self, ev):
        self._depth += 1
        if self._depth > 1:
            return
        dispatcher = ev.data.get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "")
        if module.startswith("skmeta.") and gc.get_freeze_count() == 0:
            gc.freeze()
            self._frozen = True

    def on_end(self, ev):
        self._depth -= 1
        if self._depth == 0 and self._frozen:
            self._frozen = False
            gc.unfreeze()


event.register("numba:compile", _CollectionsSpared())

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
_INNER = dict(_OPTIONS, no_cpython_wrapper=True, no_cfunc_wrapper=True)
if _linked.AVAILABLE:
    # compiled only into their kernels, which are what is cached
    _INNER.update(cache=False, pipeline_class=_linked.HelperCompiler)
_SUMMING = {"reassoc", "contract"}


def _typed_by_kind(dispatcher, literal=()):
    """``dispatcher``, typed at calls from jitted code on non-literal types.

    Except the arguments named in ``literal``, which keep a constant's value.
    """
    if config.DISABLE_JIT:
        return dispatcher  # the Python function itself
    resolve = dispatcher.get_call_template
    names = list(inspect.signature(dispatcher.py_func).parameters)
    kept = {names.index(name) for name in literal}

    def get_call_template(args, kws):
        return resolve(
            tuple(a if i in kept else types.unliteral(a)
                  for i, a in enumerate(args)),
            {k: v if k in literal else types.unliteral(v)
             for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


def always_inlined(func):
    """Mark a helper to be inlined at every call (apply under its decorator).

    For helpers that inner loops call from several places, which LLVM would
    otherwise leave as calls (see ``_linked.InlinedHelperCompiler``). Every
    call site then carries its own copy: keep it to the few that are hot.
    """
    if not inspect.isfunction(func):
        raise TypeError(
            f"always_inlined marks a Python function, under its jit decorator; "
            f"got {func!r}")
    func._always_inlined = True
    return func


def _jit(literal=(), **options):
    def compile_(func):
        opts = options
        if getattr(func, "_always_inlined", False):
            if opts.get("pipeline_class") is _linked.HelperCompiler:
                opts = dict(opts, pipeline_class=_linked.InlinedHelperCompiler)
            elif "no_cpython_wrapper" not in opts:
                raise TypeError(
                    f"{func.__qualname__}: only helpers can be always inlined")
        return _typed_by_kind(njit(**opts)(func), literal)
    return compile_


kernel = _jit(**_OPTIONS)
# An entry point that allocates nothing, so needs no reference counting
borrowing_kernel = _jit(**_OPTIONS, _nrt=False)
parallel_kernel = _jit(**_OPTIONS, parallel=True)
helper = _jit(**_INNER, _nrt=False)
# For dot products and matrix-vector loops: letting LLVM reorder the sums
# ("reassoc", and fuse multiply-adds, "contract") is what allows it to
# vectorize them. It changes round-off, never NaN/inf semantics, and the
# summation order stays fixed for a given input, so results remain
# reproducible -- provided no loop both sums and writes to an array: LLVM
# runs such a loop in a vectorized or a plain version chosen by comparing
# the arrays' addresses at run time, and the two sum in different orders
# (see datafit_derivatives).
summing_helper = _jit(**_INNER, _nrt=False, fastmath=_SUMMING)
# The row products of ``_rows`` are the exception to typing by kind, in one
# argument: with a single output (``n_outputs=1``, the power iteration that
# sets the unrolled kernels' step sizes) LLVM simplifies their loops -- 5-8%
# of the linear MAML kernel's time, for a second specialization of each.
# (Keeping ``lo=0`` as well cost another second of compilation for nothing.)
specializing_helper = _jit(literal=("n_outputs",), **_INNER, _nrt=False)
specializing_summing_helper = _jit(literal=("n_outputs",), **_INNER,
                                   _nrt=False, fastmath=_SUMMING)
