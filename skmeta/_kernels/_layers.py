"""Dense layers and their activations: the blocks of a network's passes.

A network's parameters are flat, layer after layer: layer ``l`` maps
``fan_in`` units to ``fan_out`` and owns ``params[w0:w0 + fan_in * fan_out]``
(its weights ``W[i, j]`` at ``w0 + i * fan_out + j``, as scikit-learn's
``coefs_[l]`` row-major) followed by its ``fan_out`` biases. Per-row arrays
(activations, back-propagated signals) are ``(n_max, width)`` with row
``r`` first: every inner loop runs over the units of one row, contiguous,
and vectorizes without reordering any sum but the dot products of the
backward pass (``summing_helper``).

An activation's derivatives are written in terms of its output ``a``, so
that only the outputs of each layer need keeping: ``slope`` is
``sigma'(z)`` and ``bend`` ``sigma''(z)``.
"""

import math

import numpy as np

from ._elementary import exp
from ._jit import helper, summing_helper

IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3


@helper
def activate(code, H, n, m):
    """``H[:n, :m] <- sigma(H)``, in place."""
    zero = H.dtype.type(0)
    if code == RELU:
        for r in range(n):
            for j in range(m):
                z = H[r, j]
                # NaN stays NaN, as numpy.maximum
                H[r, j] = zero if z < zero else z
    elif code == TANH:
        for r in range(n):
            for j in range(m):
                H[r, j] = math.tanh(H[r, j])
    elif code == SIGMOID:
        for r in range(n):
            for j in range(m):
                z = H[r, j]
                # one form per sign: exp never overflows to a NaN
                if z >= 0.0:
                    H[r, j] = 1.0 / (1.0 + exp(-z))
                else:
                    e = exp(z)
                    H[r, j] = e / (1.0 + e)


@helper
def slope(code, a):
    """``sigma'(z)`` from ``a = sigma(z)`` (ReLU: 0 at 0, as scikit-learn)."""
    if code == RELU:
        return 1.0 if a > 0.0 else 0.0
    if code == TANH:
        return 1.0 - a * a
    if code == SIGMOID:
        return a * (1.0 - a)
    return 1.0


@helper
def bend(code, a):
    """``sigma''(z)`` from ``a = sigma(z)`` (0 for ReLU and the identity)."""
    if code == TANH:
        return -2.0 * a * (1.0 - a * a)
    if code == SIGMOID:
        return a * (1.0 - a) * (1.0 - 2.0 * a)
    return 0.0


@helper
def scale_by_slope(code, A, D, n, m):
    """``D[:n, :m] *= sigma'(z)``, with ``A`` the layer's outputs."""
    if code == IDENTITY:
        return
    for r in range(n):
        for j in range(m):
            D[r, j] *= slope(code, A[r, j])


# --------------------------------------------------------------------------
# a layer fed by another layer's outputs
# --------------------------------------------------------------------------
# Indices are unsigned: numba then need not check them for negative values
# (wraparound), which would keep LLVM from vectorizing the loops over units.
# The loops write without summing (but dense_backward's), so "contract"
# (fused multiply-adds) only changes their round-off, in a fixed way.
@summing_helper
def dense_forward(A, n, fan_in, params, w0, fan_out, out, accumulate):
    """``out[r] = A[r] @ W + b``, or ``out[r] += A[r] @ W`` with ``accumulate``.

    Rows ``0:n``; ``W`` and ``b`` are the layer of ``params`` at ``w0``.
    Two rows and four inputs per pass over the outputs: each load and store
    of ``out`` then feeds four multiply-adds, and each weight loaded two.
    """
    n = np.uintp(n)
    fan_in = np.uintp(fan_in)
    fan_out = np.uintp(fan_out)
    w0 = np.uintp(w0)
    b0 = w0 + fan_in * fan_out
    zero = out.dtype.type(0)
    if not accumulate:
        for r in range(n):
            for j in range(fan_out):
                out[r, j] = params[b0 + j]
    if fan_out == 1:
        # one output (a regression's, a binary classifier's): a dot product
        for r in range(n):
            s = zero
            for i in range(fan_in):
                s += A[r, i] * params[w0 + i]
            out[r, 0] += s
        return
    four = np.uintp(4)
    two = np.uintp(2)
    r = np.uintp(0)
    while r + two <= n:
        r1 = r + np.uintp(1)
        i = np.uintp(0)
        while i + four <= fan_in:
            i1 = i + np.uintp(1)
            i2 = i + np.uintp(2)
            i3 = i + np.uintp(3)
            a0 = A[r, i]
            a1 = A[r, i1]
            a2 = A[r, i2]
            a3 = A[r, i3]
            c0 = A[r1, i]
            c1 = A[r1, i1]
            c2 = A[r1, i2]
            c3 = A[r1, i3]
            k0 = w0 + i * fan_out
            k1 = k0 + fan_out
            k2 = k1 + fan_out
            k3 = k2 + fan_out
            for j in range(fan_out):
                p0 = params[k0 + j]
                p1 = params[k1 + j]
                p2 = params[k2 + j]
                p3 = params[k3 + j]
                out[r, j] += (a0 * p0 + a1 * p1) + (a2 * p2 + a3 * p3)
                out[r1, j] += (c0 * p0 + c1 * p1) + (c2 * p2 + c3 * p3)
            i += four
        while i < fan_in:
            a = A[r, i]
            c = A[r1, i]
            base = w0 + i * fan_out
            for j in range(fan_out):
                p = params[base + j]
                out[r, j] += a * p
                out[r1, j] += c * p
            i += np.uintp(1)
        r += two
    if r < n:
        i = np.uintp(0)
        while i + four <= fan_in:
            a0 = A[r, i]
            a1 = A[r, i + np.uintp(1)]
            a2 = A[r, i + np.uintp(2)]
            a3 = A[r, i + np.uintp(3)]
            k0 = w0 + i * fan_out
            k1 = k0 + fan_out
            k2 = k1 + fan_out
            k3 = k2 + fan_out
            for j in range(fan_out):
                out[r, j] += ((a0 * params[k0 + j] + a1 * params[k1 + j])
                              + (a2 * params[k2 + j] + a3 * params[k3 + j]))
            i += four
        while i < fan_in:
            a = A[r, i]
            base = w0 + i * fan_out
            for j in range(fan_out):
                out[r, j] += a * params[base + j]
            i += np.uintp(1)


@summing_helper
def dense_gradient(A, n, fan_in, delta, fan_out, out, w0, with_bias):
    """Add ``A^T delta`` to the weights at ``out[w0:]`` (and ``sum_r delta`` to
    the biases, ``with_bias``), rows ``0:n``.

    Four rows per pass over the weights, then two, then one: each load and
    store of a weight then feeds up to four multiply-adds (a remainder taken
    one row at a time cost as much as the rest on ten rows).
    """
    n = np.uintp(n)
    fan_in = np.uintp(fan_in)
    fan_out = np.uintp(fan_out)
    w0 = np.uintp(w0)
    four = np.uintp(4)
    two = np.uintp(2)
    r = np.uintp(0)
    if fan_out == 1:
        for r in range(n):
            dr = delta[r, 0]
            for i in range(fan_in):
                out[w0 + i] += A[r, i] * dr
        r = n
    while r + four <= n:
        r1 = r + np.uintp(1)
        r2 = r + np.uintp(2)
        r3 = r + np.uintp(3)
        for i in range(fan_in):
            a0 = A[r, i]
            a1 = A[r1, i]
            a2 = A[r2, i]
            a3 = A[r3, i]
            base = w0 + i * fan_out
            for j in range(fan_out):
                out[base + j] += ((a0 * delta[r, j] + a1 * delta[r1, j])
                                  + (a2 * delta[r2, j] + a3 * delta[r3, j]))
        r += four
    if r + two <= n:
        r1 = r + np.uintp(1)
        for i in range(fan_in):
            a0 = A[r, i]
            a1 = A[r1, i]
            base = w0 + i * fan_out
            for j in range(fan_out):
                out[base + j] += a0 * delta[r, j] + a1 * delta[r1, j]
        r += two
    if r < n:
        for i in range(fan_in):
            a = A[r, i]
            base = w0 + i * fan_out
            for j in range(fan_out):
                out[base + j] += a * delta[r, j]
    if with_bias:
        b0 = w0 + fan_in * fan_out
        for r in range(n):
            for j in range(fan_out):
                out[b0 + j] += delta[r, j]


@summing_helper
def dense_backward(delta, n, fan_out, params, w0, fan_in, out, accumulate):
    """``out[r, i] (+)= sum_j delta[r, j] W[i, j]``: the signal reaching the
    inputs.

    Two rows and four inputs per pass over the signal: each weight loaded
    feeds two multiply-adds, and each of the eight sums is one dot product.
    """
    n = np.uintp(n)
    fan_in = np.uintp(fan_in)
    fan_out = np.uintp(fan_out)
    w0 = np.uintp(w0)
    four = np.uintp(4)
    two = np.uintp(2)
    zero = out.dtype.type(0)
    if fan_out == 1:
        for r in range(n):
            dr = delta[r, 0]
            if accumulate:
                for i in range(fan_in):
                    out[r, i] += dr * params[w0 + i]
            else:
                for i in range(fan_in):
                    out[r, i] = dr * params[w0 + i]
        return
    r = np.uintp(0)
    while r + two <= n:
        r1 = r + np.uintp(1)
        i = np.uintp(0)
        while i + four <= fan_in:
            i1 = i + np.uintp(1)
            i2 = i + np.uintp(2)
            i3 = i + np.uintp(3)
            k0 = w0 + i * fan_out
            k1 = k0 + fan_out
            k2 = k1 + fan_out
            k3 = k2 + fan_out
            s0 = zero
            s1 = zero
            s2 = zero
            s3 = zero
            t0 = zero
            t1 = zero
            t2 = zero
            t3 = zero
            for j in range(fan_out):
                d = delta[r, j]
                e = delta[r1, j]
                p0 = params[k0 + j]
                p1 = params[k1 + j]
                p2 = params[k2 + j]
                p3 = params[k3 + j]
                s0 += d * p0
                s1 += d * p1
                s2 += d * p2
                s3 += d * p3
                t0 += e * p0
                t1 += e * p1
                t2 += e * p2
                t3 += e * p3
            if accumulate:
                out[r, i] += s0
                out[r, i1] += s1
                out[r, i2] += s2
                out[r, i3] += s3
                out[r1, i] += t0
                out[r1, i1] += t1
                out[r1, i2] += t2
                out[r1, i3] += t3
            else:
                out[r, i] = s0
                out[r, i1] = s1
                out[r, i2] = s2
                out[r, i3] = s3
                out[r1, i] = t0
                out[r1, i1] = t1
                out[r1, i2] = t2
                out[r1, i3] = t3
            i += four
        while i < fan_in:
            base = w0 + i * fan_out
            s = zero
            t = zero
            for j in range(fan_out):
                p = params[base + j]
                s += delta[r, j] * p
                t += delta[r1, j] * p
            if accumulate:
                out[r, i] += s
                out[r1, i] += t
            else:
                out[r, i] = s
                out[r1, i] = t
            i += np.uintp(1)
        r += two
    if r < n:
        for i in range(fan_in):
            base = w0 + i * fan_out
            s = zero
            for j in range(fan_out):
                s += delta[r, j] * params[base + j]
            if accumulate:
                out[r, i] += s
            else:
                out[r, i] = s


# --------------------------------------------------------------------------
# the first layer, fed by a task's rows (see _rows.TaskRows; no ones row)
# --------------------------------------------------------------------------
@summing_helper
def input_forward(rows, lo, n, fan_in, params, w0, fan_out, out, accumulate):
    """As ``dense_forward``, the inputs being rows ``lo:lo + n`` of the task."""
    lo = np.uintp(lo)
    n = np.uintp(n)
    fan_in = np.uintp(fan_in)
    fan_out = np.uintp(fan_out)
    w0 = np.uintp(w0)
    b0 = w0 + fan_in * fan_out
    if not accumulate:
        for r in range(n):
            for j in range(fan_out):
                out[r, j] = params[b0 + j]
    if rows.is_sparse:
        for r in range(n):
            first = np.uintp(rows.indptr[lo + r])
            last = np.uintp(rows.indptr[lo + r + np.uintp(1)])
            for e in range(first, last):
                x = rows.data[e]
                base = w0 + np.uintp(rows.indices[e]) * fan_out
                for j in range(fan_out):
                    out[r, j] += x * params[base + j]
        return
    XT = rows.XT
    for r in range(n):
        for i in range(fan_in):
            x = XT[i, lo + r]
            if x == 0.0:
                continue
            base = w0 + i * fan_out
            for j in range(fan_out):
                out[r, j] += x * params[base + j]


@summing_helper
def input_gradient(rows, lo, n, fan_in, delta, fan_out, out, w0, with_bias):
    """As ``dense_gradient``, the inputs being rows ``lo:lo + n`` of the task."""
    lo = np.uintp(lo)
    n = np.uintp(n)
    fan_in = np.uintp(fan_in)
    fan_out = np.uintp(fan_out)
    w0 = np.uintp(w0)
    if rows.is_sparse:
        for r in range(n):
            first = np.uintp(rows.indptr[lo + r])
            last = np.uintp(rows.indptr[lo + r + np.uintp(1)])
            for e in range(first, last):
                x = rows.data[e]
                base = w0 + np.uintp(rows.indices[e]) * fan_out
                for j in range(fan_out):
                    out[base + j] += x * delta[r, j]
    else:
        XT = rows.XT
        for r in range(n):
            for i in range(fan_in):
                x = XT[i, lo + r]
                if x == 0.0:
                    continue
                base = w0 + i * fan_out
                for j in range(fan_out):
                    out[base + j] += x * delta[r, j]
    if with_bias:
        b0 = w0 + fan_in * fan_out
        for r in range(n):
            for j in range(fan_out):
                out[b0 + j] += delta[r, j]
