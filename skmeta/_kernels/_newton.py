"""Task-batched exact inner solver: (proximal) Newton on every task at once.

Each task ``t`` solves

    min_theta  c_t * sum_i w_i loss(y_i, x_i theta)
               + lam2/2 * sum_j l2w_j theta_j**2 + lam1 * sum_j l1w_j |theta_j|
               + 1/2 (theta - theta0)^T Pi (theta - theta0)

where ``c_t`` is 1 (sum-scaled estimators) or ``1 / sum_i w_i`` (mean-scaled
ones), ``lam2 = lambda (1 - rho)`` and ``lam1 = lambda rho`` come from the base
estimator's own penalty and ``Pi = gamma * Lambda`` is the transfer term's
precision, diagonal or full. Without an l1 part the step is a Newton step
(Cholesky of the explicit Hessian); with one it is a proximal Newton step
whose quadratic model is minimized by coordinate descent. Both use a
backtracking line search on the true objective.

The public kernel walks fixed-size blocks of tasks; a block's tasks run in
order and sum their contributions into the block's slot, so every result is
the same however the blocks are spread over threads or processes.
"""

import numpy as np
from ._codes import MULTINOMIAL, SQUARED
from ._datafits import datafit_derivatives
from ._jit import allocating_helper, helper, kernel
from ._linalg import (
    cholesky_inverse,
    cholesky_solve,
    cholesky_with_jitter,
    symmetric_matvec,
    symmetrize_lower,
)
from ._rows import (
    dense_gradient,
    dense_gram,
    dense_predictor,
    load_dense_block,
    sparse_gradient,
    sparse_gram,
    sparse_predictor,
)

_ARMIJO = 1e-4
_MAX_HALVINGS = 40
_MAX_CD_SWEEPS = 2000
# a chord step slower than this factor triggers a fresh Hessian
_CHORD_MAX_RATE = 0.1
# a Newton step shorter than this (relative) lets the next steps be chord steps
_CHORD_START = 1e-3
# a first step with a kept inverse longer than this (relative) calls for a new
# Hessian
_CHORD_FAR = 0.05
# a predicted move of a solution longer than this (relative) is not trusted
_PREDICT_MAX = 0.5


@helper
def transfer_gradient(theta, theta0, prec_diag, prec_mat, prec_full, d, q):
    """``q = Pi (theta - theta0)``, the transfer term's gradient."""
    if prec_full:
        for i in range(d):
            s = 0.0
            for j in range(d):
                s += prec_mat[i, j] * (theta[j] - theta0[j])
            q[i] = s
    else:
        for i in range(d):
            q[i] = prec_diag[i] * (theta[i] - theta0[i])


@helper
def penalty_parts(theta, theta0, prec_diag, prec_mat, prec_full, lam2, lam1, l2w,
                  l1w, d, q):
    """Smooth penalty (l2 part plus transfer term) and l1 part at ``theta``.

    Also leaves ``q = Pi (theta - theta0)`` for the gradient.
    """
    smooth = 0.0
    l1 = 0.0
    for j in range(d):
        tj = theta[j]
        smooth += 0.5 * lam2 * l2w[j] * tj * tj
        l1 += lam1 * l1w[j] * abs(tj)
    transfer_gradient(theta, theta0, prec_diag, prec_mat, prec_full, d, q)
    for i in range(d):
        smooth += 0.5 * (theta[i] - theta0[i]) * q[i]
    return smooth, l1


@helper
def build_hessian(is_sparse, XT, data, indices, indptr, sw, start, stop, code,
                  n_outputs, n_features, fit_intercept, scale, D, a, w, lam2, l2w,
                  prec_diag, prec_mat, prec_full, A, d):
    """Lower triangle of the objective's Hessian (l1 part excluded) into ``A``."""
    p1 = n_features + fit_intercept
    n = stop - start
    for i in range(d):
        for j in range(i + 1):
            A[i, j] = 0.0
    n_blocks = n_outputs if code == MULTINOMIAL else 1
    for k in range(n_blocks):
        for m in range(k + 1):
            for r in range(n):
                if code == MULTINOMIAL:
                    weight = scale * sw[start + r]
                    if k == m:
                        a[r] = weight * D[k, r] * (1.0 - D[k, r])
                    else:
                        a[r] = -weight * D[k, r] * D[m, r]
                else:
                    a[r] = scale * D[0, r]
            if is_sparse:
                sparse_gram(data, indices, indptr, start, stop, a, n_features,
                            fit_intercept, A, k * p1, m * p1, k == m)
            else:
                dense_gram(XT, n, p1, a, w, A, k * p1, m * p1, k == m)
    for j in range(d):
        A[j, j] += lam2 * l2w[j]
    if prec_full:
        for i in range(d):
            for j in range(i + 1):
                A[i, j] += prec_mat[i, j]
    else:
        for j in range(d):
            A[j, j] += prec_diag[j]


@helper
def pin_multinomial_shift(A, n_outputs, p1, lam2, l2w, lam1, l1w, prec_diag,
                          prec_mat, prec_full, d):
    """Make the multinomial Hessian definite along class-shift directions.

    Adding the same value to one coefficient (or the intercept) of every
    class leaves the multinomial loss unchanged. Where nothing else curves
    along that direction (no penalty and no prior on that column), the
    Hessian is singular; adding ``mu v v^T`` along it selects, among equal
    solutions, the one whose class shift does not move, as scikit-learn's
    solvers do when started from zero.
    """
    mean_diag = 0.0
    for i in range(d):
        mean_diag += A[i, i]
    mu = mean_diag / d if mean_diag > 0.0 else 1.0
    for j in range(p1):
        curvature = 0.0
        for k in range(n_outputs):
            kj = k * p1 + j
            curvature += lam2 * l2w[kj] + lam1 * l1w[kj]
            if prec_full:
                for m in range(n_outputs):
                    curvature += prec_mat[kj, m * p1 + j]
            else:
                curvature += prec_diag[kj]
        if curvature != 0.0:
            continue
        for k in range(n_outputs):
            for m in range(k + 1):
                A[k * p1 + j, m * p1 + j] += mu / n_outputs


@helper
def _prox_newton_direction(A, grad, theta, lam1, l1w, delta, r, d, tol):
    """Minimize ``g.delta + delta.A.delta/2 + lam1 sum l1w |theta + delta|``.

    Cyclic coordinate descent on the quadratic model; ``A`` must be full
    (symmetrized). ``r`` keeps ``A @ delta``.
    """
    for j in range(d):
        delta[j] = 0.0
        r[j] = 0.0
    for _ in range(_MAX_CD_SWEEPS):
        max_change = 0.0
        max_value = 1.0
        for j in range(d):
            ajj = A[j, j]
            if ajj <= 0.0:
                continue
            old = theta[j] + delta[j]
            z = old - (grad[j] + r[j]) / ajj
            thr = lam1 * l1w[j] / ajj
            if thr > 0.0:
                if z > thr:
                    new = z - thr
                elif z < -thr:
                    new = z + thr
                else:
                    new = 0.0
            else:
                new = z
            change = new - old
            if change != 0.0:
                delta[j] += change
                for i in range(d):
                    r[i] += change * A[i, j]
                if abs(change) > max_change:
                    max_change = abs(change)
            if abs(new) > max_value:
                max_value = abs(new)
        if max_change <= tol * max_value:
            break


@helper
def solve_task(is_sparse, Xd, data, indices, indptr, y, sw, start, stop, code,
               n_outputs, n_features, fit_intercept, mean_loss, lam2, lam1, l2w,
               l1w, theta0, prec_diag, prec_mat, prec_full, theta, max_iter, tol,
               have_inverse, final_hessian, XT, Z, Zt, G, Gt, D, Dt, U, a, w, A, L,
               Ainv, grad, delta, q, r, trial):
    """Solve one task's inner problem in place.

    Returns ``(objective, loss, n_iter, refreshed)``; ``refreshed`` tells
    whether a Hessian was computed (``L`` then holds a new factor).

    With ``have_inverse``, ``Ainv`` already holds the inverse of a Hessian
    of this objective (from an earlier solve) and the first steps are chord
    steps with it (a matrix-vector product). With ``final_hessian``, ``A``
    and ``L`` are recomputed at the solution before returning.

    ``n_iter`` is negative when ``max_iter`` was reached before convergence.
    Once Newton steps are short and accepted whole, the Hessian is kept for
    the next steps (chord steps) until their convergence slows down. On
    return ``A`` holds the Hessian at the last iterate where it was computed.
    """
    d = theta.shape[0]
    n = stop - start
    p1 = n_features + fit_intercept
    scale = 1.0
    if mean_loss:
        total_w = 0.0
        for i in range(start, stop):
            total_w += sw[i]
        scale = 1.0 / total_w if total_w > 0.0 else 0.0
    has_l1 = False
    if lam1 > 0.0:
        for j in range(d):
            if l1w[j] > 0.0:
                has_l1 = True
    quadratic = code == SQUARED and not has_l1
    # Newton converges quadratically: once a full step is below sqrt(tol),
    # the next one would be below tol, so there is no need to compute it
    sqrt_tol = tol ** 0.5
    if not is_sparse:
        load_dense_block(Xd, start, stop, n_features, fit_intercept, XT)

    n_iter = -max_iter
    refresh = not (have_inverse and not has_l1)  # compute the Hessian now
    refreshed = False
    last_step = 0.0
    # Z, G, D and q describe the current iterate; the line search computes
    # them at each trial point, and the accepted one is swapped in
    if is_sparse:
        sparse_predictor(data, indices, indptr, start, stop, theta, n_outputs,
                         n_features, fit_intercept, Z)
    else:
        dense_predictor(XT, 0, n, p1, theta, n_outputs, Z)
    loss = scale * datafit_derivatives(code, y, sw, start, stop, Z, n_outputs, G,
                                       D)
    smooth, l1 = penalty_parts(theta, theta0, prec_diag, prec_mat, prec_full,
                               lam2, lam1, l2w, l1w, d, q)
    objective = loss + smooth + l1
    for it in range(max_iter):
        for j in range(d):
            grad[j] = lam2 * l2w[j] * theta[j] + q[j]
        if is_sparse:
            sparse_gradient(data, indices, indptr, start, stop, G, scale,
                            n_outputs, n_features, fit_intercept, grad)
        else:
            dense_gradient(XT, 0, n, p1, G, scale, n_outputs, grad)
        fresh = refresh or has_l1
        refreshed = refreshed or fresh
        if fresh:
            build_hessian(is_sparse, XT, data, indices, indptr, sw, start, stop,
                          code, n_outputs, n_features, fit_intercept, scale, D, a,
                          w, lam2, l2w, prec_diag, prec_mat, prec_full, A, d)
            if code == MULTINOMIAL:
                pin_multinomial_shift(A, n_outputs, p1, lam2, l2w, lam1, l1w,
                                      prec_diag, prec_mat, prec_full, d)
        jitter = 0.0
        if has_l1:
            symmetrize_lower(A, d)
            _prox_newton_direction(A, grad, theta, lam1, l1w, delta, r, d,
                                   tol * 1e-2)
        elif refreshed:
            if fresh:
                jitter = cholesky_with_jitter(A, L, d, l2w)
            for j in range(d):
                delta[j] = -grad[j]
            cholesky_solve(L, delta, delta, d)
        else:
            # chord step with the kept inverse
            symmetric_matvec(Ainv, grad, -1.0, delta, d)

        slope = 0.0
        for j in range(d):
            slope += grad[j] * delta[j]
        if is_sparse:
            sparse_predictor(data, indices, indptr, start, stop, delta, n_outputs,
                             n_features, fit_intercept, U)
        else:
            dense_predictor(XT, 0, n, p1, delta, n_outputs, U)
        step = 1.0
        t_loss = loss
        t_smooth = smooth
        t_l1 = l1
        slack = 1e-13 * (abs(objective) + 1.0)
        for _ in range(_MAX_HALVINGS):
            for j in range(d):
                trial[j] = theta[j] + step * delta[j]
            for k in range(n_outputs):
                for rr in range(n):
                    Zt[k, rr] = Z[k, rr] + step * U[k, rr]
            t_loss = scale * datafit_derivatives(code, y, sw, start, stop, Zt,
                                                 n_outputs, Gt, Dt)
            t_smooth, t_l1 = penalty_parts(trial, theta0, prec_diag, prec_mat,
                                           prec_full, lam2, lam1, l2w, l1w, d, r)
            decrease = step * slope + (t_l1 - l1)
            if t_loss + t_smooth + t_l1 <= objective + _ARMIJO * decrease + slack:
                break
            step *= 0.5
        max_step = 0.0
        max_value = 1.0
        for j in range(d):
            change = abs(trial[j] - theta[j])
            theta[j] = trial[j]
            max_step = max(max_step, change)
            max_value = max(max_value, abs(theta[j]))
        Z, Zt = Zt, Z
        G, Gt = Gt, G
        D, Dt = Dt, D
        q, r = r, q
        loss = t_loss
        smooth = t_smooth
        l1 = t_l1
        objective = loss + smooth + l1
        full = step == 1.0 and jitter == 0.0
        if max_step <= tol * max_value:
            n_iter = it + 1
            break
        if fresh:
            # Newton converges quadratically: once a full step is below
            # sqrt(tol), the next one would be below tol
            if full and (quadratic or max_step <= sqrt_tol * max_value):
                n_iter = it + 1
                break
            # keep this Hessian only close to the solution, where chord
            # steps gain as much as its distance to the solution
            refresh = not (full and max_step <= _CHORD_START * max_value)
        else:
            # a chord step (Hessian kept from an earlier iterate) converges
            # linearly; estimate the rate to bound the remaining error
            if last_step > 0.0:
                rate = max_step / last_step
                # the rate is estimated from two steps: a 10x margin on the
                # remaining error it predicts
                if rate < 1.0 and max_step * rate / (1.0 - rate) <= 0.1 * tol * max_value:
                    n_iter = it + 1
                    break
                refresh = not full or rate > _CHORD_MAX_RATE
            else:
                # the first step with a kept factor: no rate to judge yet;
                # a long step means the solution moved far from where the
                # factor was computed, so it and its inverse are stale
                refresh = not full or max_step > _CHORD_FAR * max_value
        last_step = max_step
    if final_hessian:
        build_hessian(is_sparse, XT, data, indices, indptr, sw, start, stop, code,
                      n_outputs, n_features, fit_intercept, scale, D, a, w, lam2,
                      l2w, prec_diag, prec_mat, prec_full, A, d)
        if code == MULTINOMIAL:
            pin_multinomial_shift(A, n_outputs, p1, lam2, l2w, lam1, l1w,
                                  prec_diag, prec_mat, prec_full, d)
        cholesky_with_jitter(A, L, d, l2w)
        refreshed = True
    return objective, loss, n_iter, refreshed


@helper
def hessian_inverse(A, L, W, Ainv, theta, lam1, l1w, l2w, d, active_only):
    """Inverse of the Hessian ``A`` (lower triangle), optionally on the active set.

    With ``active_only``, coordinates held at zero by the l1 penalty get zero
    rows and columns: they do not move when the prior moves, so this is the
    exact derivative of the solution with respect to the prior mean.
    """
    for i in range(d):
        inactive_i = active_only and lam1 > 0.0 and l1w[i] > 0.0 and theta[i] == 0.0
        for j in range(i + 1):
            inactive_j = (active_only and lam1 > 0.0 and l1w[j] > 0.0
                          and theta[j] == 0.0)
            if inactive_i or inactive_j:
                W[i, j] = 1.0 if i == j else 0.0
            else:
                W[i, j] = A[i, j]
    cholesky_with_jitter(W, L, d, l2w)
    cholesky_inverse(L, W, Ainv, d)
    if active_only and lam1 > 0.0:
        for i in range(d):
            if l1w[i] > 0.0 and theta[i] == 0.0:
                Ainv[i, i] = 0.0


@allocating_helper
def newton_workspace(is_sparse, n_outputs, n_max, d, p1):
    """Buffers of ``solve_task`` for tasks of up to ``n_max`` rows."""
    XT = np.empty((0 if is_sparse else p1, n_max))
    Z = np.empty((n_outputs, n_max))
    Zt = np.empty((n_outputs, n_max))
    G = np.empty((n_outputs, n_max))
    Gt = np.empty((n_outputs, n_max))
    D = np.empty((n_outputs, n_max))
    Dt = np.empty((n_outputs, n_max))
    U = np.empty((n_outputs, n_max))
    a = np.empty(n_max)
    w = np.empty((2, n_max))
    A = np.empty((d, d))
    L = np.empty((d, d))
    W = np.empty((d, d))
    Ainv = np.empty((d, d))
    return (XT, Z, Zt, G, Gt, D, Dt, U, a, w, A, L, W, Ainv, np.empty(d),
            np.empty(d), np.empty(d), np.empty(d), np.empty(d))


@kernel
def solve_tasks(Xd, data, indices, indptr, is_sparse, y, sw, offsets, task_sel,
                code, n_outputs, n_features, fit_intercept, mean_loss, lam2, lam1,
                l2w, l1w, theta0, prec_diag, prec_mat, prec_full, theta, max_iter,
                tol, want_inverse, want_posterior, exact_inverse, inv_weight,
                block_size, inverses, inverse_ok, shift, out_objective,
                out_loss, out_iter, out_trace, inv_sum, inv_wsum):
    """Solve the inner problem of every selected task (see module docstring).

    ``theta[s]`` is the warm start and the solution of task ``task_sel[s]``.
    With ``want_inverse``, block ``b`` of ``inv_sum`` receives the sum over its
    tasks of the active-set inverse Hessian (the Jacobian of the solution with
    respect to the prior mean, times the precision's inverse); with
    ``want_posterior`` also, ``inv_wsum`` the sum of the full inverse
    Hessians weighted by ``inv_weight[s]`` (the Laplace posterior
    covariances) and ``out_trace[s]`` gets ``tr(H_data A^{-1})``.

    ``inverses`` (empty, or one ``(d, d)`` slot per selected task) keeps the
    inverse of each task's last Hessian between calls, ``inverse_ok[s]``
    telling whether the slot holds one for the current objective: the next
    solve then starts with chord steps (products with it) instead of a new
    Hessian, and, when ``shift`` (the change of ``Pi theta0`` since that
    solve) is not empty, from the first-order prediction ``theta[s] +
    inverse shift`` of the new solution. The inverses are those of the last
    Hessian computed, unless ``exact_inverse`` asks for the Hessian at the
    solution.

    The kernel is serial and releases the GIL: callers run shards of tasks on
    a thread pool (see ``skmeta._methods._inner``).
    """
    n_sel = task_sel.shape[0]
    d = theta.shape[1]
    # not the literal 1: numba would also compile newton_workspace for it
    n_max = offsets[0] - offsets[0] + 1
    for s in range(n_sel):
        t = task_sel[s]
        n_max = max(n_max, offsets[t + 1] - offsets[t])
    (XT, Z, Zt, G, Gt, D, Dt, U, a, w, A, L, W, Ainv, grad, delta, q, r,
     trial) = newton_workspace(is_sparse, n_outputs, n_max, d,
                               n_features + fit_intercept)
    if want_inverse:
        inv_sum[:] = 0.0
        inv_wsum[:] = 0.0
    store = inverses.shape[0] > 0 and lam1 == 0.0
    predict = store and shift.shape[0] == d
    for s in range(n_sel):
        b = s // block_size
        t = task_sel[s]
        th = theta[s]
        Ai = inverses[s] if store else Ainv
        have_inverse = store and inverse_ok[s] == 1
        if have_inverse and predict:
            symmetric_matvec(Ai, shift, 1.0, delta, d)
            moved = 0.0
            size = 1.0
            for j in range(d):
                moved = max(moved, abs(delta[j]))
                size = max(size, abs(th[j] + delta[j]))
            if moved <= _PREDICT_MAX * size:
                for j in range(d):
                    th[j] += delta[j]
            else:
                # a wild (or non-finite) prediction from an ill-conditioned
                # kept inverse: start from the last solution instead
                have_inverse = False
            if not moved <= _CHORD_FAR * size:
                # as for a long first chord step: the kept inverse is stale
                have_inverse = False
        final_hessian = want_inverse and exact_inverse
        obj, loss, it, refreshed = solve_task(
            is_sparse, Xd, data, indices, indptr, y, sw, offsets[t],
            offsets[t + 1], code, n_outputs, n_features, fit_intercept,
            mean_loss, lam2, lam1, l2w, l1w, theta0, prec_diag, prec_mat,
            prec_full, th, max_iter, tol, have_inverse, final_hessian, XT, Z, Zt,
            G, Gt, D, Dt, U, a, w, A, L, Ai, grad, delta, q, r, trial)
        out_objective[s] = obj
        out_loss[s] = loss
        out_iter[s] = it
        if store and refreshed:
            inverse_ok[s] = 0
        if want_inverse:
            # a runtime flag rather than literal True/False: one compiled
            # specialization of hessian_inverse instead of two
            on_active_set = want_inverse
            if lam1 > 0.0:
                hessian_inverse(A, L, W, Ai, th, lam1, l1w, l2w, d,
                                on_active_set)
            elif not (store and inverse_ok[s] == 1):
                cholesky_inverse(L, W, Ai, d)
                if store:
                    inverse_ok[s] = 1
            for i in range(d):
                for j in range(d):
                    inv_sum[b, i, j] += Ai[i, j]
            if not want_posterior:
                continue
            if lam1 > 0.0:
                # the Laplace covariance used by empirical Bayes ignores the
                # active set: it must vary continuously with the prior, or EM
                # can cycle between active sets
                hessian_inverse(A, L, W, Ai, th, lam1, l1w, l2w, d,
                                not on_active_set)
            weight = inv_weight[s]
            penalty_trace = 0.0
            for i in range(d):
                penalty_trace += lam2 * l2w[i] * Ai[i, i]
                if not prec_full:
                    penalty_trace += prec_diag[i] * Ai[i, i]
                for j in range(d):
                    inv_wsum[b, i, j] += weight * Ai[i, j]
                    if prec_full:
                        penalty_trace += prec_mat[i, j] * Ai[j, i]
            out_trace[s] = d - penalty_trace
