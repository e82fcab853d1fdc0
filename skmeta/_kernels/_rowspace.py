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

For the multinomial, ``W`` has structure: per row ``r``, ``w_r (diag(p_r) -
p_r p_r^T)``, a diagonal minus a rank-one term. So ``W = D_p - U U^T`` with
``D_p`` diagonal and ``U`` (``K n x n``) holding ``sqrt(w_r) p_r`` in column
``r``, and

    C = A0 - U V^T,   A0 = blockdiag_k(I + diag(a_k) G_k),   V = G U,

``a_k = (w_r p_rk)_r``: ``K`` independent ``n x n`` blocks and a correction
of rank ``n``. By the Woodbury identity again, with ``Y = A0^{-1} U`` and
the ``n x n`` capacitance ``S = I - V^T Y``,

    C^{-1} = A0^{-1} + Y S^{-1} V^T A0^{-1},

which costs ``O(K n^3)`` to factor and ``O(K n^2)`` per solve instead of
``O(K^3 n^3)`` and ``O(K^2 n^2)`` (``multinomial_factors``). The diagonal
blocks of ``N`` that the diagonals of ``A^{-1}`` need follow without the
rest of it (``multinomial_curvature``), and ``det C = det S prod_k
det A0_k``.
"""

import math
from collections import namedtuple

from ._datafits import curvature_times, hessian_weights
from ._jit import helper
from ._linalg import lu_factor, lu_logdet, lu_solve, set_identity
from ._rows import gradient, predictor, row_gram, rows_combination, rows_inner

RowspaceWork = namedtuple("RowspaceWork", "minv G C piv z w N T P a")
RowspaceWork.__doc__ = """Buffers of the row-space steps (``_workspaces``).

``minv`` the inverse of ``M``'s diagonal; ``G[k]`` the ``n x n`` row-space
Gram matrix of output ``k``; ``C``, ``piv`` the factored capacitance; ``z`` and
``w`` vectors of ``K n``; ``N`` the ``K n x K n`` matrix ``C^{-1} W``; ``T``
(``n x p1``) and ``P`` (``p1 x p1``) products with ``X~``; ``a`` row weights.
Where the multinomial is factored by blocks, ``C`` and ``piv`` are empty,
``N`` may hold only its diagonal blocks, and ``a`` and ``w`` are the block
solve's vectors.
"""

BlockWork = namedtuple("BlockWork", "A0 apiv Y S spiv H u root")
BlockWork.__doc__ = """Buffers of the multinomial's capacitance by blocks.

``A0[k]``, ``apiv[k]`` the factored blocks of ``A0``; ``Y[k]`` the blocks
of ``Y``; ``S``, ``spiv`` the factored capacitance of rank ``n``; ``H`` an
``n x n`` workspace (``multinomial_curvature``); ``u[k, r] = sqrt(w_r)
p_rk`` and ``root[r] = sqrt(w_r)``. The helpers take it as ``blocks``:
None where ``C`` is factored whole, and then the block code is not even
compiled (numba drops a branch on ``blocks is None`` before typing).
"""


@helper
def row_space_grams(rows, problem, work):
    """``work.G[k] = X~ M_k^{-1} X~^T`` for every output ``k`` (once per task).

    An output whose ``M_k`` is the last one's (every class, under a prior
    that treats classes alike) gets a copy of its matrix: the same numbers
    for ``n^2`` copies instead of ``n^2 p`` multiply-adds.
    """
    p1 = problem.n_features + problem.fit_intercept
    n = rows.n
    for k in range(problem.n_outputs):
        same = k > 0
        if same:
            for j in range(k * p1, (k + 1) * p1):
                if work.minv[j] != work.minv[j - p1]:
                    same = False
                    break
        if same:
            for r in range(n):
                for s in range(n):
                    work.G[k, r, s] = work.G[k - 1, r, s]
        else:
            row_gram(rows, n, work.minv[k * p1:(k + 1) * p1],
                     problem.n_features, problem.fit_intercept, work.G[k])


@helper
def factor_capacitance(rows, problem, D, scale, work, blocks):
    """Factor ``C = I + W G`` at the curvature ``D`` (see ``datafit_derivatives``),
    whole or (``blocks`` given) by the multinomial's blocks.

    Entry ``(k n + r, l n + s)`` of ``C`` is ``delta + W_r[k, l] G_l[r, s]``.
    """
    if blocks is not None:
        multinomial_factors(rows, problem, D, scale, work, blocks)
        return
    n = rows.n
    K = problem.n_outputs
    nK = K * n
    C = work.C
    set_identity(C, nK)
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
def multinomial_factors(rows, problem, D, scale, work, blocks):
    """The multinomial's ``A0``, ``Y`` and ``S``, factored (module docstring)."""
    n = rows.n
    K = problem.n_outputs
    u, root, z = blocks.u, blocks.root, work.z
    for r in range(n):
        root[r] = math.sqrt(scale * rows.sw[r])
        for k in range(K):
            u[k, r] = root[r] * D[k, r]
    S = blocks.S
    set_identity(S, n)
    for k in range(K):
        A, G, Y = blocks.A0[k], work.G[k], blocks.Y[k]
        for r in range(n):
            a = root[r] * u[k, r]
            for s in range(n):
                A[r, s] = a * G[r, s]
            A[r, r] += 1.0
        lu_factor(A, blocks.apiv[k], n)
        # Y_k = A0_k^{-1} diag(u_k), a column at a time (none to solve for
        # a row without weight or probability)
        for s in range(n):
            for r in range(n):
                z[r] = 0.0
            if u[k, s] != 0.0:
                z[s] = u[k, s]
                lu_solve(A, blocks.apiv[k], z, n)
            for r in range(n):
                Y[r, s] = z[r]
        # S -= diag(u_k) G_k Y_k
        for r in range(n):
            if u[k, r] == 0.0:
                continue
            for q in range(n):
                g = u[k, r] * G[r, q]
                if g != 0.0:
                    for s in range(n):
                        S[r, s] -= g * Y[q, s]
    lu_factor(S, blocks.spiv, n)


@helper
def multinomial_solve(work, blocks, z, n, K):
    """Solve ``C x = z`` in place from ``multinomial_factors``' factors.

    ``work.a`` and ``work.w`` are overwritten.
    """
    t, c = work.a, work.w
    for r in range(n):
        t[r] = 0.0
    for k in range(K):
        A, G = blocks.A0[k], work.G[k]
        # c_k = A0_k^{-1} z_k (in a whole buffer, not a slice of z: one
        # specialization of lu_solve fewer to compile)
        for r in range(n):
            c[r] = z[k * n + r]
        lu_solve(A, blocks.apiv[k], c, n)
        for r in range(n):
            z[k * n + r] = c[r]
        # t += V_k^T c_k = diag(u_k) G_k c_k
        for r in range(n):
            if blocks.u[k, r] != 0.0:
                acc = 0.0
                for q in range(n):
                    acc += G[r, q] * c[q]
                t[r] += blocks.u[k, r] * acc
    lu_solve(blocks.S, blocks.spiv, t, n)
    for k in range(K):
        Y = blocks.Y[k]
        for r in range(n):
            acc = 0.0
            for s in range(n):
                acc += Y[r, s] * t[s]
            z[k * n + r] += acc


@helper
def multinomial_curvature(rows, problem, work, blocks, whole, kept, t):
    """``N = C^{-1} W`` into ``work.N`` from ``multinomial_factors``' factors:
    whole, or (not ``whole``) its diagonal blocks only. Where ``kept`` is not
    empty, ``kept[t]`` receives the factors all of ``N`` follows from (rows
    ``k n + r`` ``Y_k``, rows ``K n + m n + q`` ``H_m``, row ``2 K n``
    ``root``; see ``task_curvature_product``).

    Block ``(k, m)`` of ``A0^{-1} W`` is ``Y_k (delta_km diag(root) -
    diag(u_m))``, and with ``Q_m = diag(u_m) G_m Y_m`` (whose sum is ``I -
    S``) the correction's is ``Y_k S^{-1} (Q_m diag(root) - (I - S)
    diag(u_m))``. Together, ``N_km = Y_k (H_m + delta_km diag(root))`` with
    ``H_m = S^{-1} (Q_m diag(root) - diag(u_m))``: ``O(K^2 n^3)`` for all of
    ``N`` and ``O(K n^3)`` for its diagonal blocks, where solving for its
    columns with these factors would cost ``O(K^2 n^3)`` either way.
    """
    n = rows.n
    K = problem.n_outputs
    H, z, root, N = blocks.H, work.z, blocks.root, work.N
    if kept.shape[0] > 0:
        for s in range(n):
            kept[t, 2 * K * n, s] = root[s]
    for m in range(K):
        G, u = work.G[m], blocks.u[m]
        Y = blocks.Y[m]
        for q in range(n):
            for s in range(n):
                H[q, s] = 0.0
            H[q, q] = -u[q]
            if u[q] == 0.0:
                continue
            for p in range(n):
                g = u[q] * G[q, p]
                if g != 0.0:
                    for s in range(n):
                        H[q, s] += g * Y[p, s] * root[s]
        for s in range(n):
            for q in range(n):
                z[q] = H[q, s]
            lu_solve(blocks.S, blocks.spiv, z, n)
            for q in range(n):
                H[q, s] = z[q]
        if kept.shape[0] > 0:
            for q in range(n):
                for s in range(n):
                    kept[t, K * n + m * n + q, s] = H[q, s]
                    kept[t, m * n + q, s] = Y[q, s]
        for k in range(K):
            if k != m and not whole:
                continue
            Yk = blocks.Y[k]
            for r in range(n):
                row = k * n + r
                for s in range(n):
                    N[row, m * n + s] = Yk[r, s] * root[s] if k == m else 0.0
                for q in range(n):
                    y = Yk[r, q]
                    if y != 0.0:
                        for s in range(n):
                            N[row, m * n + s] += y * H[q, s]


@helper
def capacitance_solve(work, blocks, z, n, K):
    """Solve ``C x = z`` in place, ``C`` factored whole or by ``blocks``."""
    if blocks is None:
        lu_solve(work.C, work.piv, z, K * n)
    else:
        multinomial_solve(work, blocks, z, n, K)


@helper
def capacitance_logdet(work, blocks, n, K):
    """``log det C`` (positive), ``C`` factored whole or by ``blocks``."""
    if blocks is None:
        return lu_logdet(work.C, K * n)
    total = lu_logdet(blocks.S, n)
    for k in range(K):
        total += lu_logdet(blocks.A0[k], n)
    return total


@helper
def row_space_direction(rows, problem, grad, D, scale, work, blocks, U, v,
                        delta):
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
    capacitance_solve(work, blocks, z, n, K)
    for k in range(K):
        for r in range(n):
            U[k, r] = z[k * n + r]
    for j in range(d):
        v[j] = 0.0
    gradient(rows, 0, n, U, 1.0, K, problem.n_features, problem.fit_intercept, v)
    for j in range(d):
        delta[j] = minv[j] * v[j] - delta[j]


@helper
def row_space_inverse(rows, problem, D, scale, diagonal, work, blocks, Ainv,
                      kept, t):
    """``A^{-1}`` at the curvature ``D`` (``C`` factored there), or its diagonal.

    With ``diagonal``, ``Ainv[0, :]`` receives the diagonal; otherwise
    ``Ainv`` the whole inverse. ``work.N`` then holds ``C^{-1} W``: whole
    with ``diagonal`` false or ``C`` factored whole, else (where the
    multinomial is factored by ``blocks``) its diagonal blocks. Where
    ``kept`` is not empty, ``kept[t]`` receives the task's curvature in the
    shape of ``_workspaces.curvature_shape``.
    """
    if blocks is None:
        whole_curvature(rows, problem, D, scale, work)
        if kept.shape[0] > 0:
            nK = problem.n_outputs * rows.n
            for i in range(nK):
                for j in range(nK):
                    kept[t, i, j] = work.N[i, j]
    else:
        multinomial_curvature(rows, problem, work, blocks, not diagonal, kept,
                              t)
    if diagonal:
        diagonal_of_inverse(rows, problem, work, Ainv)
    else:
        inverse_from_curvature(rows, problem, work, Ainv)


@helper
def whole_curvature(rows, problem, D, scale, work):
    """``work.N = C^{-1} W`` with ``C`` factored whole, a column at a time:
    ``W``'s column ``(m, s)`` holds ``W_s[k, m]`` at rows ``(k, s)``."""
    n = rows.n
    K = problem.n_outputs
    nK = K * n
    N, z, w = work.N, work.z, work.w
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


@helper
def inverse_from_curvature(rows, problem, work, Ainv):
    """``Ainv = A^{-1}`` from ``work.N`` (see ``diagonal_of_inverse``)."""
    n = rows.n
    K = problem.n_outputs
    p1 = problem.n_features + problem.fit_intercept
    d = K * p1
    minv, N = work.minv, work.N
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
def diagonal_of_inverse(rows, problem, work, Ainv):
    """``Ainv[0] = diag(A^{-1})`` from the diagonal blocks of ``work.N``.

    ``A^{-1} = diag(minv) - V N V^T`` with ``V = M^{-1} B^T``: block
    ``(k, m)`` of ``V N V^T`` is ``minv_k minv_m (X~^T N_km X~)``.
    """
    n = rows.n
    p1 = problem.n_features + problem.fit_intercept
    minv, N = work.minv, work.N
    for k in range(problem.n_outputs):
        rows_combination(rows, n, N[k * n:(k + 1) * n, k * n:(k + 1) * n],
                         problem.n_features, problem.fit_intercept, work.T)
        rows_inner(rows, n, work.T, problem.n_features, problem.fit_intercept,
                   work.P, True)
        for j in range(p1):
            i = k * p1 + j
            Ainv[0, i] = minv[i] - minv[i] * minv[i] * work.P[0, j]


@helper
def task_curvature_product(rows, problem, N, v, Z, NZ, h, out):
    """``out += B^T N B v`` for one task, ``N`` its ``C^{-1} W``.

    ``N`` as ``row_space_inverse`` kept it: whole (``K n x K n``), or the
    multinomial's factors (``2 K n + 1`` rows of ``n``), from which, with
    ``N_km = Y_k (H_m + delta_km diag(root))`` (``multinomial_curvature``),
    block ``k`` of ``N z`` is ``Y_k (sum_m H_m z_m + root * z_k)``.
    ``Z`` and ``NZ`` are ``K x n_max`` workspaces, ``h`` one of ``n_max``.
    """
    n = rows.n
    K = problem.n_outputs
    predictor(rows, 0, n, v, K, problem.n_features, problem.fit_intercept, Z)
    if N.shape[0] == N.shape[1]:
        for k in range(K):
            for r in range(n):
                acc = 0.0
                for m in range(K):
                    for s in range(n):
                        acc += N[k * n + r, m * n + s] * Z[m, s]
                NZ[k, r] = acc
    else:
        for q in range(n):
            h[q] = 0.0
        for m in range(K):
            for q in range(n):
                acc = 0.0
                for s in range(n):
                    acc += N[K * n + m * n + q, s] * Z[m, s]
                h[q] += acc
        root = 2 * K * n
        for k in range(K):
            # Z[k] is not read again: it takes the vector Y_k multiplies
            for q in range(n):
                Z[k, q] = h[q] + N[root, q] * Z[k, q]
            for r in range(n):
                acc = 0.0
                for q in range(n):
                    acc += N[k * n + r, q] * Z[k, q]
                NZ[k, r] = acc
    gradient(rows, 0, n, NZ, 1.0, K, problem.n_features, problem.fit_intercept,
             out)
