"""Design-matrix primitives for one task: linear predictor, X^T G, X^T D X.

A batch stores its rows sorted by task, either as a dense C-contiguous array
``Xd`` or as CSR arrays ``(data, indices, indptr)``; the unused one is an
empty array. Passing both through one signature halves the number of
compiled specializations.

Dense tasks are first copied, transposed, into a float64 buffer ``XT`` of
shape ``(p1, n_max)`` whose last row is ones when there is an intercept, so
every inner loop runs over contiguous rows (and vectorizes). Sparse tasks are
read row by row.

Parameters are flat: output ``k`` owns ``theta[k * p1:(k + 1) * p1]``, the
``p`` coefficients then, with ``fit_intercept``, the intercept
(``p1 = p + fit_intercept``). Per-row arrays (``Z``, ``G``...) have shape
``(n_outputs, n_max)``.
"""

import numpy as np

from ._jit import helper, summing_helper


@helper
def load_dense_block(Xd, start, stop, n_features, fit_intercept, XT):
    """Copy rows ``start:stop`` of ``Xd`` into ``XT`` transposed."""
    n = stop - start
    for r in range(n):
        for j in range(n_features):
            XT[j, r] = Xd[start + r, j]
    if fit_intercept:
        for r in range(n):
            XT[n_features, r] = 1.0


@summing_helper
def dense_predictor(XT, lo, hi, p1, theta, n_outputs, Z):
    """``Z[k, r - lo] = XT[:, r] . theta_k`` for loaded rows ``lo:hi``.

    Four coefficients per pass over the rows: with tasks of a few dozen rows
    the cost is in the passes (each reads and writes ``Z``), not in the
    multiply-adds. Indices are unsigned: numba then need not check them for
    negative values (wraparound), which would keep LLVM from vectorizing.
    """
    n = np.uintp(hi - lo)
    lo = np.uintp(lo)
    for k in range(n_outputs):
        base = k * p1
        j = 0
        if p1 < 4:
            for r in range(n):
                Z[k, r] = 0.0
        while j + 4 <= p1:
            t0 = theta[base + j]
            t1 = theta[base + j + 1]
            t2 = theta[base + j + 2]
            t3 = theta[base + j + 3]
            if j == 0:  # the first pass writes Z: no separate zeroing pass
                for r in range(n):
                    Z[k, r] = ((t0 * XT[0, lo + r] + t1 * XT[1, lo + r])
                               + (t2 * XT[2, lo + r] + t3 * XT[3, lo + r]))
            else:
                for r in range(n):
                    Z[k, r] += ((t0 * XT[j, lo + r] + t1 * XT[j + 1, lo + r])
                                + (t2 * XT[j + 2, lo + r]
                                   + t3 * XT[j + 3, lo + r]))
            j += 4
        while j < p1:
            t = theta[base + j]
            for r in range(n):
                Z[k, r] += t * XT[j, lo + r]
            j += 1


@summing_helper
def dense_gradient(XT, lo, hi, p1, G, scale, n_outputs, out):
    """Add ``scale * X_tilde^T G_k`` (loaded rows ``lo:hi``) to ``out``.

    ``G[k, r - lo]`` belongs to row ``r``. Four coefficients per pass over
    the rows, as in ``dense_predictor``.
    """
    n = np.uintp(hi - lo)
    lo = np.uintp(lo)
    for k in range(n_outputs):
        base = k * p1
        j = 0
        while j + 4 <= p1:
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for r in range(n):
                g = G[k, r]
                s0 += XT[j, lo + r] * g
                s1 += XT[j + 1, lo + r] * g
                s2 += XT[j + 2, lo + r] * g
                s3 += XT[j + 3, lo + r] * g
            out[base + j] += scale * s0
            out[base + j + 1] += scale * s1
            out[base + j + 2] += scale * s2
            out[base + j + 3] += scale * s3
            j += 4
        while j < p1:
            s = 0.0
            for r in range(n):
                s += XT[j, lo + r] * G[k, r]
            out[base + j] += scale * s
            j += 1


@summing_helper
def dense_gram(XT, n, p1, a, w, out, row0, col0, diagonal_block):
    """Add ``X_tilde^T diag(a) X_tilde`` to the block at ``out[row0, col0]``.

    Uses loaded rows ``0:n``. Only the lower triangle is written for a
    diagonal block. ``w`` is a workspace of shape ``(2, n)``. This is the hot
    loop of the whole package: output rows go in pairs and columns in fours,
    so that each pass over the rows feeds eight sums from six loads.
    """
    for j1 in range(0, p1, 2):
        pair = j1 + 1 < p1
        for r in range(n):
            w[0, r] = a[r] * XT[j1, r]
        if pair:
            for r in range(n):
                w[1, r] = a[r] * XT[j1 + 1, r]
        # columns both rows need: up to j1 on a diagonal block
        last = j1 + 1 if diagonal_block else p1
        j2 = 0
        while j2 + 4 <= last:
            s00 = 0.0
            s01 = 0.0
            s02 = 0.0
            s03 = 0.0
            s10 = 0.0
            s11 = 0.0
            s12 = 0.0
            s13 = 0.0
            for r in range(n):
                x0 = XT[j2, r]
                x1 = XT[j2 + 1, r]
                x2 = XT[j2 + 2, r]
                x3 = XT[j2 + 3, r]
                u = w[0, r]
                v = w[1, r]
                s00 += u * x0
                s01 += u * x1
                s02 += u * x2
                s03 += u * x3
                s10 += v * x0
                s11 += v * x1
                s12 += v * x2
                s13 += v * x3
            out[row0 + j1, col0 + j2] += s00
            out[row0 + j1, col0 + j2 + 1] += s01
            out[row0 + j1, col0 + j2 + 2] += s02
            out[row0 + j1, col0 + j2 + 3] += s03
            if pair:
                out[row0 + j1 + 1, col0 + j2] += s10
                out[row0 + j1 + 1, col0 + j2 + 1] += s11
                out[row0 + j1 + 1, col0 + j2 + 2] += s12
                out[row0 + j1 + 1, col0 + j2 + 3] += s13
            j2 += 4
        while j2 < last:
            s0 = 0.0
            s1 = 0.0
            for r in range(n):
                x = XT[j2, r]
                s0 += w[0, r] * x
                s1 += w[1, r] * x
            out[row0 + j1, col0 + j2] += s0
            if pair:
                out[row0 + j1 + 1, col0 + j2] += s1
            j2 += 1
        if diagonal_block and pair:
            s = 0.0
            for r in range(n):
                s += w[1, r] * XT[j1 + 1, r]
            out[row0 + j1 + 1, col0 + j1 + 1] += s


@helper
def sparse_predictor(data, indices, indptr, start, stop, theta, n_outputs,
                     n_features, fit_intercept, Z):
    """``Z[k, r] = x_i . coef_k + intercept_k`` for CSR rows ``start:stop``."""
    p1 = n_features + fit_intercept
    for i in range(start, stop):
        r = i - start
        for k in range(n_outputs):
            base = k * p1
            acc = theta[base + n_features] if fit_intercept else 0.0
            for e in range(indptr[i], indptr[i + 1]):
                acc += data[e] * theta[base + indices[e]]
            Z[k, r] = acc


@helper
def sparse_gradient(data, indices, indptr, start, stop, G, scale, n_outputs,
                    n_features, fit_intercept, out):
    """Add ``scale * X_tilde^T G_k`` for CSR rows ``start:stop``."""
    p1 = n_features + fit_intercept
    for i in range(start, stop):
        r = i - start
        for k in range(n_outputs):
            g = scale * G[k, r]
            if g == 0.0:
                continue
            base = k * p1
            if fit_intercept:
                out[base + n_features] += g
            for e in range(indptr[i], indptr[i + 1]):
                out[base + indices[e]] += g * data[e]


@helper
def sparse_gram(data, indices, indptr, start, stop, a, n_features, fit_intercept,
                out, row0, col0, diagonal_block):
    """Add ``X_tilde^T diag(a) X_tilde`` (CSR rows) to a block of ``out``.

    Column indices must be sorted within rows, so that pairs ``e2 <= e1`` are
    the lower triangle of a diagonal block.
    """
    p = n_features
    for i in range(start, stop):
        ai = a[i - start]
        if ai == 0.0:
            continue
        lo = indptr[i]
        hi = indptr[i + 1]
        for e1 in range(lo, hi):
            j1 = indices[e1]
            v1 = ai * data[e1]
            last = e1 + 1 if diagonal_block else hi
            for e2 in range(lo, last):
                out[row0 + j1, col0 + indices[e2]] += v1 * data[e2]
            if fit_intercept:
                out[row0 + p, col0 + j1] += v1
                if not diagonal_block:
                    out[row0 + j1, col0 + p] += v1
        if fit_intercept:
            out[row0 + p, col0 + p] += ai
