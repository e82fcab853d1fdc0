"""The ways kernels are compiled.

``kernel`` is for entry points called from Python; the helpers are only
called from other jitted code and need no Python or C wrapper (that saves
compile time). All cache to disk and release the GIL. ``error_model
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
"""

from numba import njit

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
_INNER = dict(_OPTIONS, no_cpython_wrapper=True, no_cfunc_wrapper=True)

kernel = njit(**_OPTIONS)
# An entry point that allocates nothing, so needs no reference counting
borrowing_kernel = njit(**_OPTIONS, _nrt=False)
parallel_kernel = njit(**_OPTIONS, parallel=True)
helper = njit(**_INNER, _nrt=False)
# For dot products and matrix-vector loops: letting LLVM reorder the sums
# ("reassoc", and fuse multiply-adds, "contract") is what allows it to
# vectorize them. It changes round-off, never NaN/inf semantics, and the
# summation order stays fixed for a given input, so results remain
# reproducible -- provided no loop both sums and writes to an array: LLVM
# runs such a loop in a vectorized or a plain version chosen by comparing
# the arrays' addresses at run time, and the two sum in different orders
# (see datafit_derivatives).
summing_helper = njit(**_INNER, _nrt=False, fastmath={"reassoc", "contract"})
