"""The two ways kernels are compiled.

``kernel`` is for entry points called from Python; ``helper`` for functions
only called from other jitted code, which need no Python or C wrapper (that
saves compile time). Both cache to disk and release the GIL. ``error_model
="numpy"`` drops division-by-zero checks: the kernels guard their divisions
themselves, and the checks cost code size and compile time.
"""

from numba import njit

kernel = njit(cache=True, nogil=True, error_model="numpy")
helper = njit(cache=True, nogil=True, error_model="numpy",
              no_cpython_wrapper=True, no_cfunc_wrapper=True)
# For dot products and matrix-vector loops: letting LLVM reorder the sums
# ("reassoc", and fuse multiply-adds, "contract") is what allows it to
# vectorize them. It changes round-off, never NaN/inf semantics, and the
# summation order stays fixed for a given input, so results remain
# reproducible.
summing_helper = njit(cache=True, nogil=True, error_model="numpy",
                      no_cpython_wrapper=True, no_cfunc_wrapper=True,
                      fastmath={"reassoc", "contract"})
