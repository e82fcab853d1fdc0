"""Task-batched exact inner solver: (proximal) Newton on every task at once.

Each task ``t`` solves

    min_theta  c_t * sum_i w_i loss(y_i, x_i theta) + lambda R(theta)
               + 1/2 (theta - theta0)^T Pi (theta - theta0)

where ``c_t`` is 1 (sum-scaled estimators) or ``1 / sum_i w_i`` (mean-scaled
ones), ``lambda R`` is the base estimator's own penalty and ``Pi = gamma *
Lambda`` the transfer term's precision (see ``_penalties``). An iteration
reads as scikit-learn's ``NewtonSolver``: the gradient and (when due) the
Hessian, a direction, a backtracking line search on the true objective, a
convergence check. Without an l1 part the direction is a Newton step
(Cholesky of the explicit Hessian); with one it is a proximal Newton step
whose quadratic model is minimized by coordinate descent. Close to the
solution the Hessian is kept for a few steps (chord steps).

The kernel ``solve_tasks`` walks fixed-size blocks of tasks; a block's tasks
run in order and sum their contributions into the block's slot, so every
result is the same however the blocks are spread over threads or processes.
"""

from collections import namedtuple

import numpy as np

from ._codes import MULTINOMIAL, SQUARED
from ._datafits import datafit_derivatives, hessian_weights, loss_scale
from ._jit import borrowing_kernel, helper
from ._layout import PriorArrays
from ._linalg import (
    cholesky_inverse,
    cholesky_logdet,
    cholesky_solve,
    cholesky_with_jitter,
    log_sum,
    symmetric_matvec,
    symmetrize_lower,
)
from ._penalties import (
    add_smooth_curvature,
    class_shift_curvature,
    has_l1,
    held_at_zero,
    l1_threshold,
    penalty_values,
    precision_times,
    smooth_curvature_diagonal,
    smooth_curvature_trace,
    smooth_gradient,
    soft_threshold,
)
from ._rows import batch_task, gradient, gram, predictor
from ._rowspace import (
    capacitance_logdet,
    factor_capacitance,
    row_space_direction,
    row_space_grams,
    row_space_inverse,
    task_curvature_product,
)

NewtonWork = namedtuple(
    "NewtonWork",
    "XT Z Zt G Gt D Dt U a w A L W Ainv grad delta q qt trial diff r shift")
NewtonWork.__doc__ = """Buffers of ``solve_task`` (``_workspaces.newton_workspace``)."""

SolveSettings = namedtuple(
    "SolveSettings",
    "max_iter tol want_inverse want_posterior exact_inverse diagonal block_size")
SolveSettings.__doc__ = """What ``solve_tasks`` computes besides the solutions.

``want_inverse``: per-block sums of the active-set inverse Hessians;
``want_posterior`` also their weighted sums and traces (empirical Bayes);
``exact_inverse``: those inverses at the solutions rather than at the last
Hessian computed; ``diagonal``: only their diagonals (in slot ``[b, 0]``).
"""

KeptInverses = namedtuple("KeptInverses", "inverses ok moved")
KeptInverses.__doc__ = """Inverse Hessians kept between calls of ``solve_tasks``.

``inverses`` (empty, or one ``(d, d)`` slot per task), ``ok[t]`` telling
whether slot ``t`` holds one for the current objective, and ``moved`` the
change of the prior centre since those solves: ``(0, d)`` (unknown), one row
(every task's centre moved alike) or one row per task.
"""

SolveOutputs = namedtuple(
    "SolveOutputs",
    "objective loss n_iter trace logdet inv_sum inv_wsum covariances")
SolveOutputs.__doc__ = """What ``solve_tasks`` writes, besides the solutions.

``logdet[t]``: log-determinant of task ``t``'s Hessian at its solution
(with ``exact_inverse``, NaN otherwise); ``covariances``: empty, or one slot
per task for the inverse Hessian that enters ``inv_wsum`` (the Laplace
posterior covariance, up to the task's scale).
"""

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


# --------------------------------------------------------------------------
# the steps of one Newton iteration
# --------------------------------------------------------------------------
@helper
def objective_gradient(rows, problem, theta, scale, G, q, grad):
    """The objective's gradient (l1 part excluded) from the datafit's ``G``."""
    d = theta.shape[0]
    smooth_gradient(theta, problem, q, d, grad)
    gradient(rows, 0, rows.n, G, scale, problem.n_outputs, problem.n_features,
             problem.fit_intercept, grad)


@helper
def objective_hessian(rows, problem, prior, D, scale, work):
    """Lower triangle of the objective's Hessian (l1 part excluded) into ``A``.

    For the multinomial, made definite along the class-shift directions
    that nothing else curves (see ``pin_class_shift``).
    """
    A = work.A
    d = A.shape[0]
    n = rows.n
    p1 = problem.n_features + problem.fit_intercept
    for i in range(d):
        for j in range(i + 1):
            A[i, j] = 0.0
    code = problem.code
    n_blocks = problem.n_outputs if code == MULTINOMIAL else 1
    for k in range(n_blocks):
        for m in range(k + 1):
            hessian_weights(code, rows.sw, 0, n, D, k, m, scale, work.a)
            gram(rows, 0, n, work.a, work.w, problem.n_features,
                 problem.fit_intercept, A, k * p1, m * p1, k == m)
    add_smooth_curvature(A, problem, prior, d)
    if code == MULTINOMIAL:
        pin_class_shift(A, problem, prior, d)


@helper
def pin_class_shift(A, problem, prior, d):
    """Make the multinomial Hessian definite along class-shift directions.

    Adding the same value to one coefficient (or the intercept) of every
    class leaves the multinomial loss unchanged. Where nothing else curves
    along that direction (no penalty and no prior on that column), the
    Hessian is singular; adding ``mu v v^T`` along it selects, among equal
    solutions, the one whose class shift does not move, as scikit-learn's
    solvers do when started from zero.
    """
    n_outputs = problem.n_outputs
    p1 = problem.n_features + problem.fit_intercept
    mean_diag = 0.0
    for i in range(d):
        mean_diag += A[i, i]
    mu = mean_diag / d if mean_diag > 0.0 else 1.0
    for j in range(p1):
        if class_shift_curvature(problem, prior, j) != 0.0:
            continue
        for k in range(n_outputs):
            for m in range(k + 1):
                A[k * p1 + j, m * p1 + j] += mu / n_outputs


@helper
def prox_newton_direction(A, grad, theta, problem, delta, r, d, tol):
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
            new = soft_threshold(z, l1_threshold(problem, j, 1.0 / ajj))
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
def newton_direction(problem, theta, fresh, factored, l1, tol, work, Ainv):
    """The step ``work.delta`` from the gradient ``work.grad``; returns the jitter.

    With an l1 part, a proximal Newton step. Otherwise a Newton step with a
    fresh Hessian's Cholesky factor (``fresh``; a jitter, returned, makes a
    singular one definite), with the factor kept from an earlier iteration
    (``factored``), or a chord step with the kept inverse ``Ainv``.
    """
    d = theta.shape[0]
    A = work.A
    L = work.L
    grad = work.grad
    delta = work.delta
    jitter = 0.0
    if l1:
        symmetrize_lower(A, d)
        prox_newton_direction(A, grad, theta, problem, delta, work.r, d,
                              tol * 1e-2)
    elif factored:
        if fresh:
            jitter = cholesky_with_jitter(A, L, d, problem.l2w, problem.lam2)
        for j in range(d):
            delta[j] = -grad[j]
        cholesky_solve(L, delta, delta, d)
    else:
        symmetric_matvec(Ainv, grad, -1.0, delta, d)
    return jitter


@helper
def evaluate(rows, problem, prior, theta, scale, fit, with_value, diff):
    """Loss, smooth and l1 penalty values at ``theta``; fills ``fit``.

    ``fit = (Z, G, D, q)``: ``Z`` must already hold the predictor at
    ``theta``; the datafit's derivatives go to ``G`` and ``D``, ``Pi (theta -
    theta0)`` to ``q``.
    """
    Z, G, D, q = fit
    d = theta.shape[0]
    loss = scale * datafit_derivatives(problem.code, rows.y, rows.sw, 0, rows.n,
                                       Z, problem.n_outputs, G, D, with_value)
    smooth, l1 = penalty_values(theta, problem, prior, d, diff, q)
    return loss, smooth, l1


@helper
def line_search(rows, problem, prior, theta, scale, objective, l1, fit, trial_fit,
                work):
    """Backtracking from the full step ``work.delta`` (Armijo's condition).

    ``fit`` describes ``theta`` (see ``evaluate``); the accepted point goes
    to ``work.trial`` and ``trial_fit``. Returns the step length and the
    loss, smooth and l1 penalty values there.
    """
    d = theta.shape[0]
    n = rows.n
    delta = work.delta
    trial = work.trial
    U = work.U
    Z = fit[0]
    Zt = trial_fit[0]
    slope = 0.0
    for j in range(d):
        slope += work.grad[j] * delta[j]
    predictor(rows, 0, n, delta, problem.n_outputs, problem.n_features,
              problem.fit_intercept, U)
    step = 1.0
    t_loss = 0.0
    t_smooth = 0.0
    t_l1 = l1
    slack = 1e-13 * (abs(objective) + 1.0)
    for _ in range(_MAX_HALVINGS):
        for j in range(d):
            trial[j] = theta[j] + step * delta[j]
        for k in range(problem.n_outputs):
            for r in range(n):
                Zt[k, r] = Z[k, r] + step * U[k, r]
        t_loss, t_smooth, t_l1 = evaluate(rows, problem, prior, trial, scale,
                                          trial_fit, True, work.diff)
        decrease = step * slope + (t_l1 - l1)
        if t_loss + t_smooth + t_l1 <= objective + _ARMIJO * decrease + slack:
            break
        step *= 0.5
    return step, t_loss, t_smooth, t_l1


@helper
def take_step(theta, trial, d):
    """``theta <- trial``; returns the largest change and the scale of theta."""
    max_step = 0.0
    max_value = 1.0
    for j in range(d):
        change = abs(trial[j] - theta[j])
        theta[j] = trial[j]
        max_step = max(max_step, change)
        max_value = max(max_value, abs(theta[j]))
    return max_step, max_value


@helper
def convergence(fresh, full, quadratic, max_step, max_value, last_step, tol):
    """After a step: ``(converged, refresh)``, ``refresh`` asking for a new Hessian.

    ``full``: the whole step was taken without jitter; ``last_step`` is the
    previous step's length (0 for the first).
    """
    if max_step <= tol * max_value:
        return True, False
    if fresh:
        # Newton converges quadratically: once a full step is below
        # sqrt(tol), the next one would be below tol
        if full and (quadratic or max_step <= tol ** 0.5 * max_value):
            return True, False
        # keep this Hessian only close to the solution, where chord steps
        # gain as much as its distance to the solution
        return False, not (full and max_step <= _CHORD_START * max_value)
    # a chord step (Hessian kept from an earlier iterate) converges linearly;
    # estimate the rate to bound the remaining error
    if last_step > 0.0:
        rate = max_step / last_step
        # the rate is estimated from two steps: a 10x margin on the remaining
        # error it predicts
        if rate < 1.0 and max_step * rate / (1.0 - rate) <= 0.1 * tol * max_value:
            return True, False
        return False, not full or rate > _CHORD_MAX_RATE
    # the first step with a kept factor: no rate to judge yet; a long step
    # means the solution moved far from where the factor was computed, so it
    # and its inverse are stale
    return False, not full or max_step > _CHORD_FAR * max_value


@helper
def solve_task(rows, problem, prior, theta, max_iter, tol, have_inverse,
               final_hessian, work, Ainv):
    """Solve one task's inner problem in place, from the warm start ``theta``.

    Returns ``(objective, loss, n_iter, refreshed)``; ``refreshed`` tells
    whether a Hessian was computed (``work.L`` then holds a new factor).
    ``n_iter`` is negative when ``max_iter`` was reached before convergence.

    With ``have_inverse``, ``Ainv`` already holds the inverse of a Hessian
    of this objective (from an earlier solve) and the first steps are chord
    steps with it. With ``final_hessian``, ``work.A`` and ``work.L`` are
    recomputed at the solution before returning; otherwise ``work.A`` holds
    the Hessian at the last iterate where it was computed.
    """
    d = theta.shape[0]
    scale = loss_scale(problem.mean_loss, rows.sw, 0, rows.n)
    l1 = has_l1(problem, d)
    quadratic = problem.code == SQUARED and not l1
    # the current iterate's predictor and derivatives, and the trial point's;
    # the line search fills the trial ones, and the accepted point is swapped in
    fit = (work.Z, work.G, work.D, work.q)
    trial_fit = (work.Zt, work.Gt, work.Dt, work.qt)
    predictor(rows, 0, rows.n, theta, problem.n_outputs, problem.n_features,
              problem.fit_intercept, work.Z)
    loss, smooth, l1_value = evaluate(rows, problem, prior, theta, scale, fit,
                                      True, work.diff)
    objective = loss + smooth + l1_value

    n_iter = -max_iter
    refresh = not (have_inverse and not l1)  # compute the Hessian now
    refreshed = False
    last_step = 0.0
    for it in range(max_iter):
        objective_gradient(rows, problem, theta, scale, fit[1], fit[3], work.grad)
        fresh = refresh or l1
        refreshed = refreshed or fresh
        if fresh:
            objective_hessian(rows, problem, prior, fit[2], scale, work)
        jitter = newton_direction(problem, theta, fresh, refreshed, l1, tol, work,
                                  Ainv)
        step, loss, smooth, l1_value = line_search(
            rows, problem, prior, theta, scale, objective, l1_value, fit,
            trial_fit, work)
        max_step, max_value = take_step(theta, work.trial, d)
        fit, trial_fit = trial_fit, fit
        objective = loss + smooth + l1_value
        done, refresh = convergence(fresh, step == 1.0 and jitter == 0.0,
                                    quadratic, max_step, max_value, last_step,
                                    tol)
        if done:
            n_iter = it + 1
            break
        last_step = max_step
    if final_hessian:
        objective_hessian(rows, problem, prior, fit[2], scale, work)
        cholesky_with_jitter(work.A, work.L, d, problem.l2w,
                             problem.lam2)
        refreshed = True
    return objective, loss, n_iter, refreshed


@helper
def hessian_inverse(A, L, W, Ainv, theta, problem, d, active_only):
    """Inverse of the Hessian ``A`` (lower triangle), optionally on the active set.

    With ``active_only``, coordinates held at zero by the l1 penalty get zero
    rows and columns: they do not move when the prior moves, so this is the
    exact derivative of the solution with respect to the prior mean.
    """
    for i in range(d):
        inactive_i = active_only and held_at_zero(
            theta[i], l1_threshold(problem, i, 1.0))
        for j in range(i + 1):
            inactive_j = active_only and held_at_zero(
                theta[j], l1_threshold(problem, j, 1.0))
            if inactive_i or inactive_j:
                W[i, j] = 1.0 if i == j else 0.0
            else:
                W[i, j] = A[i, j]
    cholesky_with_jitter(W, L, d, problem.l2w, problem.lam2)
    cholesky_inverse(L, W, Ainv, d)
    if active_only:
        for i in range(d):
            if held_at_zero(theta[i], l1_threshold(problem, i, 1.0)):
                Ainv[i, i] = 0.0


# --------------------------------------------------------------------------
# every task of a batch
# --------------------------------------------------------------------------
@helper
def predicted_start(theta, Ainv, shift, delta, d):
    """Move ``theta`` by its first-order change ``Ainv shift``, if trustworthy.

    Returns whether the kept inverse ``Ainv`` is still good for chord steps:
    a long predicted move means the solution moved far from where it was
    computed.
    """
    symmetric_matvec(Ainv, shift, 1.0, delta, d)
    moved = 0.0
    size = 1.0
    for j in range(d):
        moved = max(moved, abs(delta[j]))
        size = max(size, abs(theta[j] + delta[j]))
    if not moved <= _PREDICT_MAX * size:
        # a wild (or non-finite) prediction from an ill-conditioned kept
        # inverse: start from the last solution instead
        return False
    for j in range(d):
        theta[j] += delta[j]
    return moved <= _CHORD_FAR * size


@borrowing_kernel
def solve_tasks(batch, problem, prior, centres, theta, inv_weight, settings,
                kept, work, out):
    """Solve the inner problem of every task of ``batch`` (see module docstring).

    ``theta[t]`` is the warm start and the solution of task ``t``. Task
    ``t``'s prior is centred on ``centres[t]``, or on ``prior.theta0`` for
    every task when ``centres`` is empty ``(0, d)``. With
    ``settings.want_inverse``, block ``b`` of ``out.inv_sum`` receives the
    sum over its tasks of the active-set inverse Hessian (the Jacobian of the
    solution with respect to the prior mean, times the precision's
    inverse); with ``want_posterior`` also, ``out.inv_wsum`` the sum of the
    full inverse Hessians weighted by ``inv_weight[t]`` (the Laplace
    posterior covariances) and ``out.trace[t]`` gets ``tr(H_data A^{-1})``.

    ``kept`` (see ``KeptInverses``) keeps the inverse of each task's last
    Hessian between calls: the next solve then starts with chord steps
    (products with it) instead of a new Hessian, and, when ``kept.moved`` is
    not empty, from the first-order prediction ``theta[t] + inverse Pi
    moved`` of the new solution (the implicit function theorem), ``moved``
    being its one row or task ``t``'s row. The
    inverses are those of the last Hessian computed, unless
    ``settings.exact_inverse`` asks for the Hessian at the solution.

    ``work`` is sized for the batch's largest task (see
    ``_workspaces.newton_workspace``). The kernel is serial, allocates
    nothing and releases the GIL: callers run shards of tasks on a thread
    pool (see ``skmeta._methods._inner``).
    """
    n_tasks = batch.offsets.shape[0] - 1
    d = theta.shape[1]
    want_inverse = settings.want_inverse
    if want_inverse:
        out.inv_sum[:] = 0.0
        out.inv_wsum[:] = 0.0
    store = kept.inverses.shape[0] > 0 and problem.lam1 == 0.0
    n_moved = kept.moved.shape[0]
    predict = store and (n_moved == 1 or (n_moved == n_tasks and n_moved > 0))
    shift = work.shift
    if predict and n_moved == 1:
        precision_times(prior, kept.moved[0], shift, d)
    for t in range(n_tasks):
        b = t // settings.block_size
        th = theta[t]
        # the task's own centre, if any: both branches have the same type,
        # so no second specialization (written out here rather than in a
        # helper: one compiled function fewer)
        prior_t = prior if centres.shape[0] == 0 else PriorArrays(
            centres[t], prior.diag, prior.mat, prior.full)
        Ainv = kept.inverses[t] if store else work.Ainv
        have_inverse = store and kept.ok[t] == 1
        if have_inverse and predict:
            if n_moved > 1:
                precision_times(prior, kept.moved[t], shift, d)
            have_inverse = predicted_start(th, Ainv, shift, work.delta, d)
        rows = batch_task(batch, t, problem.n_features, problem.fit_intercept,
                          work.XT)
        exact = want_inverse and settings.exact_inverse
        obj, loss, it, refreshed = solve_task(
            rows, problem, prior_t, th, settings.max_iter, settings.tol,
            have_inverse, exact, work, Ainv)
        out.objective[t] = obj
        out.loss[t] = loss
        out.n_iter[t] = it
        # the factor is of the Hessian at the solution only after a final one
        out.logdet[t] = cholesky_logdet(work.L, d) if exact else np.nan
        if store and refreshed:
            kept.ok[t] = 0
        if not want_inverse:
            continue
        # a runtime flag rather than literal True/False: one compiled
        # specialization of hessian_inverse instead of two
        on_active_set = want_inverse
        if problem.lam1 > 0.0:
            hessian_inverse(work.A, work.L, work.W, Ainv, th, problem, d,
                            on_active_set)
        elif not (store and kept.ok[t] == 1):
            cholesky_inverse(work.L, work.W, Ainv, d)
            if store:
                kept.ok[t] = 1
        add_inverse(Ainv, 1.0, settings.diagonal, out.inv_sum[b])
        if not settings.want_posterior:
            continue
        if problem.lam1 > 0.0:
            # the Laplace covariance used by empirical Bayes ignores the active
            # set: it must vary continuously with the prior, or EM can cycle
            # between active sets
            hessian_inverse(work.A, work.L, work.W, Ainv, th, problem, d,
                            not on_active_set)
        add_inverse(Ainv, inv_weight[t], settings.diagonal, out.inv_wsum[b])
        out.trace[t] = d - smooth_curvature_trace(problem, prior_t, Ainv, d)
        if out.covariances.shape[0] > 0:
            copy_inverse(Ainv, settings.diagonal, out.covariances[t])


@helper
def copy_inverse(Ainv, diagonal, slot):
    """``slot = Ainv`` (``slot[0]`` its diagonal in diagonal mode)."""
    d = Ainv.shape[1]
    if diagonal:
        one_row = Ainv.shape[0] == 1
        for i in range(d):
            slot[0, i] = Ainv[0, i] if one_row else Ainv[i, i]
        return
    for i in range(d):
        for j in range(d):
            slot[i, j] = Ainv[i, j]


@helper
def add_inverse(Ainv, weight, diagonal, total):
    """``total += weight * Ainv``, or only its diagonal into ``total[0]``.

    In diagonal mode ``Ainv`` may also be a single row holding the diagonal.
    """
    d = Ainv.shape[1]
    if diagonal:
        one_row = Ainv.shape[0] == 1
        for i in range(d):
            total[0, i] += weight * (Ainv[0, i] if one_row else Ainv[i, i])
        return
    for i in range(d):
        for j in range(d):
            total[i, j] += weight * Ainv[i, j]


# --------------------------------------------------------------------------
# tasks with fewer rows than parameters: Newton steps in the row space
# --------------------------------------------------------------------------
@helper
def solve_task_rowspace(rows, problem, prior, theta, max_iter, tol, work,
                        row_work, blocks):
    """``solve_task`` with Newton directions computed in the row space.

    For objectives without l1 part whose smooth penalties' curvature ``M``
    is diagonal and positive (``row_work.minv`` holds its inverse); see
    ``_rowspace``; ``blocks`` the multinomial's block buffers, or None.
    Returns ``(objective, loss, n_iter, scale, D)``, ``D`` the datafit's
    curvature at the solution, where the capacitance (``row_work.C``, or
    its ``blocks``) is then factored.
    """
    d = theta.shape[0]
    scale = loss_scale(problem.mean_loss, rows.sw, 0, rows.n)
    quadratic = problem.code == SQUARED
    fit = (work.Z, work.G, work.D, work.q)
    trial_fit = (work.Zt, work.Gt, work.Dt, work.qt)
    predictor(rows, 0, rows.n, theta, problem.n_outputs, problem.n_features,
              problem.fit_intercept, work.Z)
    loss, smooth, l1_value = evaluate(rows, problem, prior, theta, scale, fit,
                                      True, work.diff)
    objective = loss + smooth + l1_value
    row_space_grams(rows, problem, row_work)
    n_iter = -max_iter
    for it in range(max_iter):
        objective_gradient(rows, problem, theta, scale, fit[1], fit[3], work.grad)
        factor_capacitance(rows, problem, fit[2], scale, row_work, blocks)
        row_space_direction(rows, problem, work.grad, fit[2], scale, row_work,
                            blocks, work.U, work.trial, work.delta)
        step, loss, smooth, l1_value = line_search(
            rows, problem, prior, theta, scale, objective, l1_value, fit,
            trial_fit, work)
        max_step, max_value = take_step(theta, work.trial, d)
        fit, trial_fit = trial_fit, fit
        objective = loss + smooth + l1_value
        done, _ = convergence(True, step == 1.0, quadratic, max_step, max_value,
                              0.0, tol)
        if done:
            n_iter = it + 1
            break
    factor_capacitance(rows, problem, fit[2], scale, row_work, blocks)
    return objective, loss, n_iter, scale, fit[2]


@borrowing_kernel
def solve_tasks_rowspace(batch, problem, prior, centres, theta, inv_weight,
                         settings, work, out):
    """``solve_tasks`` with Newton steps in the row space (see ``_rowspace``).

    ``work`` is ``(newton_work, row_work, blocks, curvatures)`` (``blocks``
    None, or the multinomial's ``BlockWork``); ``centres`` as for
    ``solve_tasks`` (the curvature does not depend on them). For a diagonal
    transfer precision and no l1 penalty; no inverse Hessians are kept
    between calls (their size is what this solver avoids), and
    ``settings.exact_inverse`` is implied. With inverses asked for and
    ``curvatures`` not empty, ``curvatures[t]`` receives task ``t``'s
    ``C^{-1} W``, whole or as the multinomial's factors
    (``_workspaces.curvature_shape``), from which ``curvature_products``
    applies the sum of the inverse Hessians to vectors.
    """
    work, row_work, blocks, curvatures = work
    n_tasks = batch.offsets.shape[0] - 1
    d = theta.shape[1]
    smooth_curvature_diagonal(problem, prior, d, row_work.minv)
    for j in range(d):
        row_work.minv[j] = 1.0 / row_work.minv[j]
    if settings.want_inverse:
        out.inv_sum[:] = 0.0
        out.inv_wsum[:] = 0.0
    for t in range(n_tasks):
        b = t // settings.block_size
        th = theta[t]
        rows = batch_task(batch, t, problem.n_features, problem.fit_intercept,
                          work.XT)
        prior_t = prior if centres.shape[0] == 0 else PriorArrays(
            centres[t], prior.diag, prior.mat, prior.full)
        obj, loss, it, scale, D = solve_task_rowspace(
            rows, problem, prior_t, th, settings.max_iter, settings.tol, work,
            row_work, blocks)
        out.objective[t] = obj
        out.loss[t] = loss
        out.n_iter[t] = it
        # det(A) = det(M) det(C), C factored at the solution (positive)
        out.logdet[t] = (capacitance_logdet(row_work, blocks, rows.n,
                                            problem.n_outputs)
                         - log_sum(row_work.minv, d))
        if not settings.want_inverse:
            continue
        # in diagonal mode, work.Ainv is one row: the diagonal
        diagonal = settings.diagonal
        row_space_inverse(rows, problem, D, scale, diagonal, row_work, blocks,
                          work.Ainv, curvatures, t)
        add_inverse(work.Ainv, 1.0, diagonal, out.inv_sum[b])
        if not settings.want_posterior:
            continue
        add_inverse(work.Ainv, inv_weight[t], diagonal, out.inv_wsum[b])
        trace = 0.0
        for i in range(d):
            posterior_variance = work.Ainv[0, i] if diagonal else work.Ainv[i, i]
            trace += posterior_variance / row_work.minv[i]
        out.trace[t] = d - trace
        if out.covariances.shape[0] > 0:
            copy_inverse(work.Ainv, diagonal, out.covariances[t])


@borrowing_kernel
def curvature_products(batch, problem, curvatures, V, work, out):
    """``out[i] = sum_t B_t^T N_t B_t V[i]`` over the tasks of ``batch``.

    ``N_t = curvatures[t]`` as ``solve_tasks_rowspace`` kept it. ``work`` is
    ``(XT, Z, NZ, h)``, sized for the largest task. Tasks are summed in order.
    """
    XT, Z, NZ, h = work
    out[:] = 0.0
    n_tasks = batch.offsets.shape[0] - 1
    for t in range(n_tasks):
        rows = batch_task(batch, t, problem.n_features, problem.fit_intercept, XT)
        for i in range(V.shape[0]):
            task_curvature_product(rows, problem, curvatures[t], V[i], Z, NZ, h,
                                   out[i])
