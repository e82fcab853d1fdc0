"""``exp`` and ``log1p`` written in arithmetic, so that loops over rows vectorize.

numba lowers ``math.exp`` and ``math.log1p`` to calls into the C library,
one element at a time, and a call inside a loop stops LLVM from vectorizing
it: the logistic loss, evaluated on every row at every Newton step, spent
most of its time there. These versions are straight-line arithmetic (range
reduction, a polynomial, an exponent built from integer bits), which LLVM
turns into SIMD code. ``exp`` is within 2 units in the last place,
``log1p_unit`` within 3 (checked against the C library in
``tests/test_kernels.py``).
"""

import math

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.extending import intrinsic

from ._jit import helper

_LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_INV_LN2 = 1.44269504088896338700e00
# exp(x) is a normal double for _EXP_MIN <= x <= _EXP_MAX (log of the
# largest double)
_EXP_MIN = -708.0
_EXP_MAX = 709.782712893384


if config.DISABLE_JIT:
    # numba's debug mode (NUMBA_DISABLE_JIT=1) runs the helpers as Python,
    # where an intrinsic, which only exists as generated code, cannot run
    def _double_from_bits(bits):
        """Reinterpret the 64 bits of an int64 as a double."""
        return np.int64(bits).view(np.float64)

else:
    @intrinsic
    def _double_from_bits(typingctx, bits):
        """Reinterpret the 64 bits of an int64 as a double."""
        signature = types.float64(types.int64)

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], ir.DoubleType())

        return signature, codegen


@helper
def exp(x):
    """``e ** x``; 0 below -708 (where the true value is below 3.3e-308),
    inf where it overflows, NaN for NaN."""
    # clipped so that k below stays in range (NaN, which no comparison
    # holds for, is replaced too, and restored at the end)
    xc = x if x > _EXP_MIN else _EXP_MIN
    xc = xc if xc < _EXP_MAX else _EXP_MAX
    # x = k ln2 + r with |r| <= ln2 / 2, ln2 split so that k * _LN2_HI is exact
    k = math.floor(xc * _INV_LN2 + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    # Taylor series of e^r to degree 13: truncation below 2e-17 for |r| <= ln2/2
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2**k as 2 * 2**(k - 1), from the exponent bits of 2**(k - 1): k runs
    # from -1021 to 1024 after clipping, and 2**1024 is not a double
    value = p * _double_from_bits((np.int64(k) + 1022) << 52) * 2.0
    if x < _EXP_MIN:
        value = 0.0
    if x > _EXP_MAX:
        value = math.inf
    if x != x:
        value = x
    return value


@helper
def log1p_unit(e):
    """``log(1 + e)`` for ``0 <= e <= 1``, accurate also for tiny ``e``."""
    # log1p(e) = 2 atanh(s), s = e / (2 + e) <= 1/3; the odd series in s
    # converges as 9**-n: 18 terms reach round-off
    s = e / (2.0 + e)
    s2 = s * s
    p = 1.0 / 35.0
    p = p * s2 + 1.0 / 33.0
    p = p * s2 + 1.0 / 31.0
    p = p * s2 + 1.0 / 29.0
    p = p * s2 + 1.0 / 27.0
    p = p * s2 + 1.0 / 25.0
    p = p * s2 + 1.0 / 23.0
    p = p * s2 + 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return 2.0 * s * p
