"""Unpenalized least squares of every task, from the singular values of its rows.

Without a penalty or a prior, a squared-error task is ordinary least
squares, and the normal equations the Newton kernels solve square its
condition number: a column within 1e-8 of the others' span has a curvature
at rounding level there, and the fit either loses that direction or a
jitter the size of the large columns' curvature swamps the small ones'
(squared errors up to 67 times the least-squares minimum).
``LinearRegression`` solves the weighted, centred rows by their singular
value decomposition (LAPACK's ``gelsd``), counting singular values below
``tol`` times the largest as zero (scikit-learn 1.9 on; before, at
rounding level), which also gives the minimum-norm solution where columns
are collinear. So does :func:`ordinary_least_squares`, for all tasks at
once: tasks of similar row counts are stacked, padded with rows of zero
weight (which change no singular value or solution), and decomposed by
numpy's stacked SVD, in chunks of bounded memory. A task too large for a
chunk is solved alone, as ``LinearRegression`` solves it: by ``lstsq`` on
dense rows, by ``lsqr`` on sparse ones (which it never makes dense).
"""

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, lsqr

# the rows of one chunk of stacked tasks stay within this many bytes (their
# decomposition takes a few times more)
CHUNK_MAX_BYTES = 32 * 2**20
_EPS = float(np.finfo(np.float64).eps)


def effective_cutoff(cutoff):
    """The cut-off ``gelsd`` applies: rounding level unless in (0, 1)."""
    return cutoff if 0.0 < cutoff < 1.0 else _EPS


def ordinary_least_squares(batch, n_features, fit_intercept, cutoff):
    """Each task's weighted least-squares parameters, and which were solved.

    Returns ``(theta, solved)``: ``theta[t]`` holds the coefficients and,
    with ``fit_intercept``, the intercept last, for the tasks ``solved``
    (those with rows of positive weight; the others' parameters are zero).
    The rows are centred on their weighted means first, so the intercept is
    not part of the minimum-norm choice (as in ``LinearRegression``).
    Computed once per batch and settings (``batch.memo``): the solves of one
    fit ask for it again and again.
    """
    key = ("ordinary_least_squares", n_features, bool(fit_intercept),
           float(cutoff))
    if key not in batch.memo:
        batch.memo[key] = _solve_all(batch, n_features, fit_intercept,
                                     effective_cutoff(cutoff))
    theta, solved = batch.memo[key]
    return theta.copy(), solved


def _solve_all(batch, n_features, fit_intercept, cutoff):
    offsets = batch.offsets
    sizes = np.diff(offsets)
    n_tasks = len(sizes)
    theta = np.zeros((n_tasks, n_features + int(fit_intercept)))
    solved = batch.task_weights() > 0
    width = 8 * (n_features + 2)
    alone = solved & (sizes * width > CHUNK_MAX_BYTES)
    for t in np.flatnonzero(alone):
        theta[t] = _solve_alone(batch, t, n_features, fit_intercept, cutoff)
    # buckets of tasks whose row counts are within a factor of two, so that
    # padding at most doubles a bucket's rows
    stacked = solved & ~alone
    bucket = np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.intp)
    for b in np.unique(bucket[stacked]):
        members = np.flatnonzero(stacked & (bucket == b))
        n_rows = int(sizes[members].max())
        step = max(1, CHUNK_MAX_BYTES // (n_rows * width))
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            theta[chunk] = _solve_stacked(batch, chunk, n_rows, n_features,
                                          fit_intercept, cutoff)
    return theta, solved


def _csr(batch, n_features):
    return sp.csr_matrix((batch.data, batch.indices, batch.indptr),
                         shape=(len(batch.sw), n_features))


def _solve_stacked(batch, tasks, n_rows, n_features, fit_intercept, cutoff):
    """The parameters of ``tasks``, their rows padded to ``n_rows``."""
    sizes = batch.offsets[tasks + 1] - batch.offsets[tasks]
    position = np.arange(n_rows)
    present = position < sizes[:, None]
    # padding reads each task's first row, at weight zero
    rows = batch.offsets[tasks][:, None] + np.where(present, position, 0)
    root = np.sqrt(np.where(present, batch.sw[rows], 0.0))
    if batch.is_sparse:
        A = _csr(batch, n_features)[rows.ravel()].toarray().reshape(
            len(tasks), n_rows, n_features)
    else:
        A = batch.Xd[rows]
    b = batch.y[rows]
    if fit_intercept:
        w = root * root
        total = w.sum(axis=1)
        x_mean = np.einsum("tr,trj->tj", w, A) / total[:, None]
        y_mean = np.einsum("tr,tr->t", w, b) / total
        A -= x_mean[:, None, :]
        b = b - y_mean[:, None]
    A *= root[:, :, None]
    b = b * root
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    kept = s > cutoff * s[:, :1]
    inverse = np.divide(1.0, s, out=np.zeros_like(s), where=kept)
    coef = np.einsum("tkj,tk->tj", Vt, inverse * np.einsum("trk,tr->tk", U, b))
    if not fit_intercept:
        return coef
    return np.concatenate(
        [coef, (y_mean - np.einsum("tj,tj->t", x_mean, coef))[:, None]], axis=1)


def _solve_alone(batch, t, n_features, fit_intercept, cutoff):
    """The parameters of one large task, as ``LinearRegression`` fits it."""
    a, b = batch.offsets[t], batch.offsets[t + 1]
    sw, y = batch.sw[a:b], batch.y[a:b]
    root = np.sqrt(sw)
    if batch.is_sparse:
        X = _csr(batch, n_features)[a:b]
    else:
        X = batch.Xd[a:b]
    if fit_intercept:
        x_mean = np.asarray(X.T @ sw).ravel() / sw.sum()
        y_mean = float(sw @ y) / sw.sum()
    else:
        x_mean, y_mean = np.zeros(n_features), 0.0
    target = root * (y - y_mean)
    if batch.is_sparse:
        # LinearRegression's own way with sparse rows: lsqr on the weighted,
        # centred rows as an operator, its tolerances at the cut-off
        Xw = sp.diags(root) @ X
        operator = LinearOperator(
            X.shape, matvec=lambda v: Xw @ v - root * (x_mean @ v),
            rmatvec=lambda r: Xw.T @ r - x_mean * (root @ r))
        coef = lsqr(operator, target, atol=cutoff, btol=cutoff)[0]
    else:
        # one copy of the rows, in the order LAPACK takes them
        A = np.empty(X.shape, order="F")
        np.subtract(X, x_mean, out=A)
        A *= root[:, None]
        coef = scipy.linalg.lstsq(A, target, cond=cutoff, overwrite_a=True,
                                  check_finite=False)[0]
    if not fit_intercept:
        return coef
    return np.append(coef, y_mean - x_mean @ coef)
