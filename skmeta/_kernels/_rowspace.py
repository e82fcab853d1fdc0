"""Newton steps in the row space, for tasks with fewer rows than parameters.

A task's objective has the Hessian ``A = M + B^T W B``: ``M`` the smooth
penalties' curvature (the base estimator's l2 part plus a diagonal transfer
precision, positive on every parameter), ``B = I_K (x) X~`` the task's
design for each of its ``K`` outputs, and ``W`` the datafit's curvature
per row (for the multinomial a ``K x K`` block per row). With ``n_t`` rows
and ``d`` parameters, the Woodbury identity

    A^{-1} = M^{-1} - M^{-1} B^T C^{-1} W B M^{-1},   C = I + W G,
    G = B M^{-1} B^T = blockdiag_k(X~ M_k^{-1} X~^T),

solves Newton's system with one ``K n_t x K n_t`` factorization instead of a
``d x d`` one: ``O(K^2 n_t^2 p + (K n_t)^3)`` per step instead of
``O(n_t d^2 + d^3)``, and nothing of size ``d x d`` per task. The posterior
quantities of empirical Bayes follow from the same factors:
``diag(A^{-1})`` (and ``A^{-1}`` itself for moderate ``d``) from
``N = C^{-1} W`` and ``tr(H_data A^{-1}) = d - tr(M A^{-1})``.
"""

from collections import namedtuple

from ._datafits import curvature_times, hessian_weights
from ._jit import helper
from ._linalg import lu_factor, lu_solve
from ._rows import gradient, predictor, row_gram, rows_combination, rows_inner

RowspaceWork = namedtuple("RowspaceWork", "minv G C piv z w N T P a")
RowspaceWork.__doc__ = """Buffers of the row-space steps (``_workspaces``).

``minv`` the inverse of ``M``'s diagonal; ``G[k]`` the ``n x n`` row-space
Gram matrix of output ``k``; ``C``, ``piv`` the factored capacitance; ``z`` and
``w`` vectors of ``K n``; ``N`` the ``K n x K n`` matrix ``C^{-1} W``; ``T``
(``n x p1``) and ``P`` (``p1 x p1``) products with ``X~``; ``a`` row weights.
"""


@helper
def row_space_grams(rows, problem, work):
    """``work.G[k] = X~ M_k^{-1} X~^T`` for every output ``k`` (once per task)."""
    p1 = problem.n_features + problem.fit_intercept
    for k in range(problem.n_outputs):
        row_gram(rows, rows.n, work.minv[k * p1:(k + 1) * p1], problem.n_features,
                 problem.fit_intercept, work.G[k])


@helper
def factor_capacitance(rows, problem, D, scale, work):
    """Factor ``C = I + W G`` at the curvature ``D`` (see ``datafit_derivatives``).

    Entry ``(k n + r, l n + s)`` of ``C`` is ``delta + W_r[k, l] G_l[r, s]``.
    """
    n = rows.n
    K = problem.n_outputs
    nK = K * n
    C = work.C
    for i in range(nK):
        for j in range(nK):
            C[i, j] = 0.0
        C[i, i] = 1.0
    for k in range(K):
        for m in range(K):
            hessian_weights(problem.code, rows.sw, 0, n, D, k, m, scale, work.a)
            G = work.G[m]
            for r in range(n):
                w = work.a[r]
                if w != 0.0:
                    for s in range(n):
                        C[k * n + r, m * n + s] += w * G[r, s]
    lu_factor(C, work.piv, nK)


@helper
def row_space_direction(rows, problem, grad, D, scale, work, U, v, delta):
    """``delta = -A^{-1} grad`` by the Woodbury identity (``C`` factored).

    ``U`` (``K x n_max``) and ``v`` (``d``) are workspaces.
    """
    d = grad.shape[0]
    n = rows.n
    K = problem.n_outputs
    minv = work.minv
    z = work.z
    for j in range(d):
        delta[j] = minv[j] * grad[j]
    predictor(rows, 0, n, delta, K, problem.n_features, problem.fit_intercept, U)
    curvature_times(problem.code, rows.sw, 0, n, D, U, K, scale)
    for k in range(K):
        for r in range(n):
            z[k * n + r] = U[k, r]
    lu_solve(work.C, work.piv, z, K * n)
    for k in range(K):
        for r in range(n):
            U[k, r] = z[k * n + r]
    for j in range(d):
        v[j] = 0.0
    gradient(rows, 0, n, U, 1.0, K, problem.n_features, problem.fit_intercept, v)
    for j in range(d):
        delta[j] = minv[j] * v[j] - delta[j]


@helper
def row_space_inverse(rows, problem, D, scale, diagonal, work, Ainv):
    """``A^{-1}`` at the curvature ``D`` (``C`` factored there), or its diagonal.

    With ``diagonal``, ``Ainv[0, :]`` receives the diagonal; otherwise
    ``Ainv`` the whole inverse.
    """
    n = rows.n
    K = problem.n_outputs
    nK = K * n
    p1 = problem.n_features + problem.fit_intercept
    d = K * p1
    minv = work.minv
    N = work.N
    z = work.z
    # N = C^{-1} W, a column at a time: W's column (m, s) holds W_s[k, m] at
    # rows (k, s)
    w = work.w
    for m in range(K):
        for k in range(K):
            hessian_weights(problem.code, rows.sw, 0, n, D, k, m, scale, work.a)
            for s in range(n):
                w[k * n + s] = work.a[s]
        for s in range(n):
            for i in range(nK):
                z[i] = 0.0
            for k in range(K):
                z[k * n + s] = w[k * n + s]
            lu_solve(work.C, work.piv, z, nK)
            for i in range(nK):
                N[i, m * n + s] = z[i]
    # A^{-1} = diag(minv) - V N V^T with V = M^{-1} B^T: block (k, m) of
    # V N V^T is minv_k minv_m (X~^T N_km X~)
    if diagonal:
        for k in range(K):
            rows_combination(rows, n, N[k * n:(k + 1) * n, k * n:(k + 1) * n],
                             problem.n_features, problem.fit_intercept, work.T)
            rows_inner(rows, n, work.T, problem.n_features, problem.fit_intercept,
                       work.P, True)
            for j in range(p1):
                i = k * p1 + j
                Ainv[0, i] = minv[i] - minv[i] * minv[i] * work.P[0, j]
        return
    for i in range(d):
        for j in range(d):
            Ainv[i, j] = 0.0
        Ainv[i, i] = minv[i]
    for k in range(K):
        for m in range(K):
            rows_combination(rows, n, N[k * n:(k + 1) * n, m * n:(m + 1) * n],
                             problem.n_features, problem.fit_intercept, work.T)
            rows_inner(rows, n, work.T, problem.n_features, problem.fit_intercept,
                       work.P, False)
            for j in range(p1):
                for jj in range(p1):
                    a = k * p1 + j
                    b = m * p1 + jj
                    Ainv[a, b] -= minv[a] * minv[b] * work.P[j, jj]


@helper
def task_curvature_product(rows, problem, N, v, Z, NZ, out):
    """``out += B^T N B v`` for one task (``N`` its ``C^{-1} W``, ``K n x K n``).

    ``Z`` and ``NZ`` are ``K x n_max`` workspaces.
    """
    n = rows.n
    K = problem.n_outputs
    predictor(rows, 0, n, v, K, problem.n_features, problem.fit_intercept, Z)
    for k in range(K):
        for r in range(n):
            acc = 0.0
            for m in range(K):
                for s in range(n):
                    acc += N[k * n + r, m * n + s] * Z[m, s]
            NZ[k, r] = acc
    gradient(rows, 0, n, NZ, 1.0, K, problem.n_features, problem.fit_intercept,
             out)
