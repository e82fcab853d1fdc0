"""Small dense linear algebra for per-task systems inside ``prange`` bodies.

numba's ``np.linalg`` allocates and raises on a non positive definite matrix;
inside a parallel loop over thousands of tasks we need factorizations that
work in caller-owned buffers and report failure instead, so that a singular
system (no penalty, collinear features) can be retried with a small jitter.
"""

import math

from ._jit import helper, summing_helper

_PIVOT_FLOOR = 1e-11
# for a Hessian the l2 penalty makes definite: a pivot is zero only below the
# rounding that d terms of elimination accumulate (ten units of 2**-52 each)
_PIVOT_ROUNDING = 10.0 * 2.0**-52


@summing_helper
def cholesky_lower(A, L, d, floor):
    """Factor the lower triangle of ``A[:d, :d]`` into ``L`` (``A = L L^T``).

    Returns False when the matrix is not numerically positive definite: a
    pivot that cancels below ``floor`` times its diagonal entry counts as
    zero, as it would only amplify round-off along a null space. ``L`` may
    be ``A`` itself (each entry is read before it is written).
    """
    for j in range(d):
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > floor * A[j, j] or not s > 0.0:
            return False
        ljj = math.sqrt(s)
        L[j, j] = ljj
        inv = 1.0 / ljj
        for i in range(j + 1, d):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s * inv
    return True


@helper
def cholesky_with_jitter(A, L, d, weights, lam2):
    """Cholesky of ``A`` plus a diagonal jitter, zero unless ``A`` is singular.

    Without an l2 penalty (``lam2 == 0``) ``A`` may be singular (collinear
    features, fewer rows than features): a pivot below ``_PIVOT_FLOOR`` of
    its diagonal entry counts as zero, and the jitter is ``eps m
    diag(weights)``, ``m`` the mean diagonal entry, ``eps`` growing from
    1e-12 until the factorization succeeds. Jitter only resolves ties: it
    picks the solution of minimum weighted norm. The caller weights the
    coefficients and not the intercept, which gives the solution
    scikit-learn's least-squares solvers return (intercept free, smallest
    coefficients). If that is not enough, every diagonal entry is jittered.

    With an l2 penalty ``A`` is definite, however ill-conditioned: a pivot
    counts as zero only at rounding level, and the jitter, if any, is in
    proportion to each diagonal entry, ``eps diag(weights * diag(A))``.
    (With the singular case's rules, features 1e8 apart in scale, one of
    them nearly collinear, made the pivot test fail on a definite Hessian,
    and a jitter the size of the mean diagonal swamped the small features'
    curvature: their coefficients crawled, and multinomial fits stopped
    3e-4 and 30% above their optimum.) ``A`` is left as it was.
    """
    definite = lam2 > 0.0
    floor = _PIVOT_ROUNDING * d if definite else _PIVOT_FLOOR
    if cholesky_lower(A, L, d, floor):
        return 0.0
    mean_diag = 0.0
    for j in range(d):
        mean_diag += abs(A[j, j])
    mean_diag = mean_diag / d if mean_diag > 0.0 else 1.0
    tiny = 1e-12 * mean_diag  # an entry of zero curvature still gets some
    for uniform in (False, True):
        eps = 1e-12
        for _ in range(20):
            for j in range(d):
                for i in range(j, d):
                    L[i, j] = A[i, j]
                size = max(abs(A[j, j]), tiny) if definite else mean_diag
                L[j, j] += eps * size * (1.0 if uniform else weights[j])
            if cholesky_lower(L, L, d, floor):  # in place
                return eps
            eps *= 10.0
    return -1.0


@summing_helper
def cholesky_solve(L, b, x, d):
    """Solve ``L L^T x = b`` (``x`` may alias ``b``)."""
    for i in range(d):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * x[k]
        x[i] = s / L[i, i]
    # L^T x = y by columns of L^T, i.e. rows of L: contiguous updates
    for i in range(d - 1, -1, -1):
        xi = x[i] / L[i, i]
        x[i] = xi
        for k in range(i):
            x[k] -= L[i, k] * xi


@summing_helper
def cholesky_inverse(L, V, out, d):
    """Write ``(L L^T)^{-1}`` to ``out``, using ``V`` as workspace.

    ``V`` receives ``L^{-1}`` row by row (each row a combination of the rows
    above it), then ``out = V^T V`` is summed as rank-one updates by the rows
    of ``V``: every inner loop runs over contiguous entries.
    """
    for i in range(d):
        for m in range(d):
            V[i, m] = 0.0
        for k in range(i):
            c = L[i, k]
            for m in range(k + 1):
                V[i, m] -= c * V[k, m]
        inv = 1.0 / L[i, i]
        for m in range(i):
            V[i, m] *= inv
        V[i, i] = inv
    for i in range(d):
        for m in range(i + 1):
            out[i, m] = 0.0
    for k in range(d):
        for i in range(k + 1):
            c = V[k, i]
            for m in range(i + 1):
                out[i, m] += c * V[k, m]
    for i in range(d):
        for m in range(i):
            out[m, i] = out[i, m]


@summing_helper
def symmetric_matvec(M, v, scale, out, d):
    """``out = scale * M v`` for a full ``(d, d)`` matrix, by rows."""
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += M[i, j] * v[j]
        out[i] = scale * s


@helper
def symmetrize_lower(A, d):
    """Copy the lower triangle of ``A[:d, :d]`` onto its upper triangle."""
    for i in range(d):
        for j in range(i):
            A[j, i] = A[i, j]


@helper
def set_identity(A, n):
    """``A[:n, :n] = I``."""
    for i in range(n):
        for j in range(n):
            A[i, j] = 0.0
        A[i, i] = 1.0


@helper
def lu_factor(A, piv, n):
    """LU factorization with partial pivoting of ``A[:n, :n]``, in place.

    ``piv[i]`` receives the row swapped with row ``i``. Returns False for an
    exactly singular matrix; ``piv`` is then still a valid permutation (the
    rows not reached stay in place), so that ``lu_solve`` reads no index
    out of bounds and the solution's infinities or NaNs tell the caller.
    """
    for k in range(n):
        best = k
        size = abs(A[k, k])
        for i in range(k + 1, n):
            if abs(A[i, k]) > size:
                size = abs(A[i, k])
                best = i
        piv[k] = best
        if size == 0.0:
            for i in range(k + 1, n):
                piv[i] = i
            return False
        if best != k:
            for j in range(n):
                A[k, j], A[best, j] = A[best, j], A[k, j]
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            factor = A[i, k] * inv
            A[i, k] = factor
            if factor != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= factor * A[k, j]
    return True


@summing_helper
def lu_solve(LU, piv, b, n):
    """Solve ``A x = b`` in place, ``LU, piv`` from ``lu_factor``."""
    for k in range(n):
        p = piv[k]
        if p != k:
            b[k], b[p] = b[p], b[k]
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= LU[i, k] * b[k]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, n):
            s -= LU[i, k] * b[k]
        b[i] = s / LU[i, i]


@helper
def cholesky_logdet(L, d):
    """``log det(L L^T)`` from the Cholesky factor ``L``."""
    total = 0.0
    for i in range(d):
        total += math.log(L[i, i])
    return 2.0 * total


@helper
def lu_logdet(LU, n):
    """``log |det A|`` from ``lu_factor``'s factors of ``A``."""
    total = 0.0
    for i in range(n):
        total += math.log(abs(LU[i, i]))
    return total


@helper
def log_sum(values, n):
    """``sum(log(values[:n]))``."""
    total = 0.0
    for i in range(n):
        total += math.log(values[i])
    return total
