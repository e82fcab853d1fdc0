"""Row primitives shared by every kernel: the design matrix of one task.

A batch of tasks is stored once, rows sorted by task, either as a dense
C-contiguous array ``Xd`` or as CSR arrays ``(data, indices, indptr)``; the
unused representation is passed as an empty array. Passing both through one
signature halves the number of compiled specializations (dense and sparse
share the same machine code, a branch picks the row access).

Parameters are stored flat: output ``k`` occupies ``theta[k * p1:(k + 1) * p1]``
with the ``p`` coefficients first and, when ``fit_intercept``, the intercept
last (``p1 = p + fit_intercept``). Every accumulation is done in float64
whatever the dtype of ``X``.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def linear_predictor(Xd, data, indices, indptr, is_sparse, start, stop, theta,
                     n_outputs, n_features, fit_intercept, Z):
    """Fill ``Z[r, k] = x_i . coef_k + intercept_k`` for rows ``start:stop``."""
    p1 = n_features + fit_intercept
    for i in range(start, stop):
        r = i - start
        for k in range(n_outputs):
            base = k * p1
            acc = 0.0
            if fit_intercept:
                acc = theta[base + n_features]
            if is_sparse:
                for e in range(indptr[i], indptr[i + 1]):
                    acc += data[e] * theta[base + indices[e]]
            else:
                for j in range(n_features):
                    acc += Xd[i, j] * theta[base + j]
            Z[r, k] = acc


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def add_transposed_product(Xd, data, indices, indptr, is_sparse, start, stop, G,
                           scale, n_outputs, n_features, fit_intercept, out):
    """Add ``scale * X_tilde.T @ G`` to the flat vector ``out``.

    ``X_tilde`` is the task block with a column of ones appended when
    ``fit_intercept``; ``G`` has one row per task row and one column per output.
    """
    p1 = n_features + fit_intercept
    for i in range(start, stop):
        r = i - start
        for k in range(n_outputs):
            g = scale * G[r, k]
            if g == 0.0:
                continue
            base = k * p1
            if fit_intercept:
                out[base + n_features] += g
            if is_sparse:
                for e in range(indptr[i], indptr[i + 1]):
                    out[base + indices[e]] += g * data[e]
            else:
                for j in range(n_features):
                    out[base + j] += g * Xd[i, j]


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def add_weighted_gram(Xd, data, indices, indptr, is_sparse, start, stop, a,
                      n_features, fit_intercept, out, row0, col0):
    """Add the lower triangle of ``X_tilde.T @ diag(a) @ X_tilde`` to a block.

    The block starts at ``out[row0, col0]``; when ``row0 == col0`` only its
    lower triangle is written, otherwise (an off-diagonal block of a
    multi-output Hessian) the full block is written.
    """
    diagonal_block = row0 == col0
    p = n_features
    for i in range(start, stop):
        ai = a[i - start]
        if ai == 0.0:
            continue
        if is_sparse:
            lo = indptr[i]
            hi = indptr[i + 1]
            for e1 in range(lo, hi):
                j1 = indices[e1]
                v1 = ai * data[e1]
                last = e1 + 1 if diagonal_block else hi
                for e2 in range(lo, last):
                    out[row0 + j1, col0 + indices[e2]] += v1 * data[e2]
                if fit_intercept:
                    # intercept row (below) and column (right of) coefficients
                    out[row0 + p, col0 + j1] += v1
                    if not diagonal_block:
                        out[row0 + j1, col0 + p] += v1
        else:
            for j1 in range(p):
                v1 = ai * Xd[i, j1]
                if v1 == 0.0:
                    continue
                last = j1 + 1 if diagonal_block else p
                for j2 in range(last):
                    out[row0 + j1, col0 + j2] += v1 * Xd[i, j2]
                if fit_intercept:
                    out[row0 + p, col0 + j1] += v1
                    if not diagonal_block:
                        out[row0 + j1, col0 + p] += v1
        if fit_intercept:
            out[row0 + p, col0 + p] += ai


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def max_task_rows(offsets, task_sel, lo, hi):
    """Largest number of rows among the selected tasks ``task_sel[lo:hi]``."""
    m = 0
    for s in range(lo, hi):
        t = task_sel[s]
        n = offsets[t + 1] - offsets[t]
        if n > m:
            m = n
    return m


def empty_like_dense(dtype):
    """The placeholder passed as ``Xd`` when the batch is sparse."""
    return np.empty((0, 0), dtype=dtype)
