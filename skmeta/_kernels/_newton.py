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
    cholesky_lower,
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
    "XT Z Zt G Gt D Dt U a w A L W Ainv grad delta q qt trial diff r shift "
    "l1")
NewtonWork.__doc__ = """Buffers of ``solve_task`` (``_workspaces.newton_workspace``).

``l1`` is None for problems without an l1 part: the proximal Newton
direction is then not even compiled (numba drops a branch on an argument
that is None before typing), which keeps it out of the first fit of an
l2-penalized estimator (a second of compilation); an empty array otherwise.
"""

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
# coordinate descent on the l1 subproblem is finished by exact steps on its
# active set whenever it settles, and at least this often
_CD_SWEEPS_PER_CHECK = 100
# the optimality conditions coordinate descent must meet to be taken as it
# settled, and what an active set's solve that gains nothing more must meet
# (relative to the reduced gradient's scale)
_SETTLED_RTOL = 1e-10
_ACTIVE_SET_RTOL = 1e-6
# outcomes of active_set_step
_NO_STEP = 0
_PARTIAL = 1
_FULL = 2
_OPTIMAL = 3
# prox_newton_direction eliminates a coordinate whose pivot is at least this
# fraction of its own diagonal entry, and above the smallest normal double
_ELIMINATION_FLOOR = 1e-10
_ELIMINATION_TINY = 2.2250738585072014e-308
# prox_newton_direction's marks: a coordinate eliminated, or joining the
# active set with the sign given
_ELIMINATED = 1.0
_JOINING_UP = 2.0
_JOINING_DOWN = -2.0
# a pivot of the active set's matrix that cancels below this fraction of its
# diagonal entry: not positive definite there (an active set larger than the
# rows and penalties determine)
_ACTIVE_PIVOT_FLOOR = 1e-12
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
def prox_newton_direction(A, grad, theta, problem, d, tol, work):
    """Minimize ``g.delta + delta.A.delta/2 + lam1 sum l1w |theta + delta|``.

    The coordinates without an l1 part (the intercepts, mostly) are
    minimized out first: Gaussian elimination on them turns ``S`` (a copy
    of ``A``, which must be full: symmetrized) into the Schur complement of
    their block; the others are solved on it, and the eliminated ones follow
    by back-substitution. Without it, a column with a large mean (a year, a
    price level) moves with the intercept, and coordinate descent crawled
    and stopped far from the minimizer (``Lasso`` on a column offset by
    1,000: an objective of 1.55 where the minimum is 0.29): what centring
    the features does for scikit-learn's own coordinate descent.

    The l1 coordinates are then solved by cyclic coordinate descent, which
    finds most of the coordinates away from zero cheaply, finished by
    exact steps on the active set (:func:`active_set_step`, a feature-sign
    search) until the optimality conditions hold: where the quadratic is
    ill-conditioned in the l1 coordinates themselves (a prior on the
    intercept beside columns of a large mean), coordinate descent alone
    takes steps too small to measure long before it gets there.

    The direction goes to ``work.delta``. Of ``work``'s other buffers, free
    while a direction is computed: ``r`` keeps ``S @ delta`` on the
    coordinates not eliminated, ``trial`` the reduced gradient ``g``,
    ``diff`` the marks (``_ELIMINATED`` where a coordinate was eliminated),
    ``W`` the matrix ``S``; ``L``, ``shift`` and a row of ``Ainv`` are the
    active set's workspaces.
    """
    delta, r, S, g, mark = work.delta, work.r, work.W, work.trial, work.diff
    M, x, u = work.L, work.shift, work.Ainv[0]
    for i in range(d):
        delta[i] = 0.0
        r[i] = 0.0
        mark[i] = 0.0
        g[i] = grad[i]
        for j in range(d):
            S[i, j] = A[i, j]
    for f in range(d):
        pivot = S[f, f]
        # (a pivot that the earlier eliminations cancelled, or that
        # underflows, stays with coordinate descent: eliminating it would
        # amplify round-off)
        if l1_threshold(problem, f, 1.0) > 0.0 or not (
                pivot > _ELIMINATION_FLOOR * A[f, f]
                and pivot > _ELIMINATION_TINY):
            continue
        for i in range(d):
            if mark[i] != 0.0 or i == f or S[i, f] == 0.0:
                continue
            factor = S[i, f] / pivot
            for j in range(d):
                if mark[j] == 0.0 and j != f:
                    S[i, j] -= factor * S[f, j]
            g[i] -= factor * g[f]
        mark[f] = _ELIMINATED
    sweeps = 0
    while True:
        settled = False
        for _ in range(_CD_SWEEPS_PER_CHECK):
            sweeps += 1
            max_change = 0.0
            max_value = 1.0
            for j in range(d):
                ajj = S[j, j]
                if mark[j] != 0.0 or ajj <= 0.0:
                    continue
                old = theta[j] + delta[j]
                z = old - (g[j] + r[j]) / ajj
                new = soft_threshold(z, l1_threshold(problem, j, 1.0 / ajj))
                change = new - old
                if change != 0.0:
                    delta[j] += change
                    for i in range(d):
                        if mark[i] == 0.0:
                            r[i] += change * S[i, j]
                    if abs(change) > max_change:
                        max_change = abs(change)
                if abs(new) > max_value:
                    max_value = abs(new)
            if max_change <= tol * max_value:
                settled = True
                break
        if settled and l1_conditions_hold(S, g, theta, problem, delta, r, mark,
                                          d, _SETTLED_RTOL):
            break
        # from coordinate descent's point: its active set's minimizer first
        outcome = _PARTIAL
        for _ in range(4 * d + 10):
            outcome = active_set_step(S, g, theta, problem, delta, r, mark, d,
                                      M, x, u, outcome == _FULL)
            if outcome == _OPTIMAL or outcome == _NO_STEP:
                break
        if outcome == _OPTIMAL or sweeps >= _MAX_CD_SWEEPS or (
                settled and outcome == _NO_STEP):
            break
    # back-substitution, last eliminated first: row f of S is as it was
    # when f was eliminated, over the coordinates not yet eliminated then
    for f in range(d - 1, -1, -1):
        if mark[f] == 0.0:
            continue
        acc = g[f]
        for j in range(d):
            if j != f and (mark[j] == 0.0 or j > f):
                acc += S[f, j] * delta[j]
        delta[f] = -acc / S[f, f]


@helper
def active_set_step(S, g, theta, problem, delta, r, mark, d, M, x, u, add):
    """One step of a feature-sign search on the l1 subproblem of
    :func:`prox_newton_direction` (Lee, Battle, Raina & Ng, 2007).

    The active set: the coordinates away from zero (``theta + delta``
    nonzero) and, with ``add`` (the last step left the active coordinates
    at their minimizer), the zero one whose optimality condition ``|g_j +
    (S delta)_j| <= lam_j`` is most violated, with the sign that decreases
    the objective. With the signs held the model is smooth, its minimizer
    on the active set solves ``S_aa y = -(g_a + lam_a s_a + S_az
    delta_z)``; the step goes to the best point of the segment towards it
    (the model is piecewise quadratic along it, with a kink where a
    coordinate crosses zero; one that reaches zero there is set to exactly
    zero). Returns ``_OPTIMAL`` where every optimality condition holds at
    the end; ``_FULL`` where the step reached the active set's minimizer but
    a condition at zero does not hold (the next step adds that coordinate);
    ``_PARTIAL`` where it stopped at a coordinate reaching zero;
    ``_NO_STEP`` where ``S_aa`` is not positive definite or nothing is
    left to gain. ``r`` is kept equal to ``S @ delta``; ``mark`` is left as
    found.
    """
    # a coordinate left at rounding's distance from zero (a step's end,
    # computed) is at zero: held active, its sign would be noise
    size = 0.0
    for j in range(d):
        if mark[j] == 0.0:
            size = max(size, abs(theta[j] + delta[j]))
    for j in range(d):
        value = theta[j] + delta[j]
        if mark[j] == 0.0 and value != 0.0 and abs(value) <= 1e-13 * size:
            # (-theta exactly: delta - value may miss it by a rounding)
            change = -theta[j] - delta[j]
            delta[j] = -theta[j]
            for i in range(d):
                if mark[i] == 0.0:
                    r[i] += change * S[i, j]
    worst = -1
    if add:
        worst = most_violated_at_zero(S, g, theta, problem, delta, r, mark, d)
        if worst < 0:
            return _OPTIMAL
        mark[worst] = _JOINING_UP if g[worst] + r[worst] < 0.0 \
            else _JOINING_DOWN
    # u[j]: the sign held on an active coordinate, 0 elsewhere
    for j in range(d):
        u[j] = 0.0
        if mark[j] == _JOINING_UP:
            u[j] = 1.0
        elif mark[j] == _JOINING_DOWN:
            u[j] = -1.0
        elif mark[j] == 0.0 and S[j, j] > 0.0 and theta[j] + delta[j] != 0.0:
            u[j] = 1.0 if theta[j] + delta[j] > 0.0 else -1.0
    joined_sign = 0.0
    if worst >= 0:
        mark[worst] = 0.0
        joined_sign = u[worst]
    m = 0
    for i in range(d):
        if u[i] == 0.0:
            continue
        col = 0
        for j in range(i + 1):
            if u[j] != 0.0:
                M[m, col] = S[i, j]
                col += 1
        # (S delta)_i without the active coordinates' part
        acc = r[i]
        for j in range(d):
            if u[j] != 0.0:
                acc -= S[i, j] * delta[j]
        x[m] = -(g[i] + l1_threshold(problem, i, 1.0) * u[i] + acc)
        m += 1
    if m > 0 and not cholesky_lower(M, M, m, _ACTIVE_PIVOT_FLOOR):
        return _NO_STEP
    cholesky_solve(M, x, x, m)
    # along u = y - delta_a: the model is c1 a + c2 a^2 / 2 + the l1 terms
    row = 0
    for j in range(d):
        if u[j] != 0.0:
            u[j] = x[row] - delta[j]
            row += 1
    c1 = 0.0
    c2 = 0.0
    for i in range(d):
        if u[i] == 0.0:
            continue
        c1 += (g[i] + r[i]) * u[i]
        su = 0.0
        for j in range(d):
            if u[j] != 0.0:
                su += S[i, j] * u[j]
        c2 += u[i] * su
    best = 1.0
    best_value = segment_value(problem, theta, delta, u, d, c1, c2, 1.0)
    # whether a sign changes on the way (the coordinate added included, if
    # it ends opposite to the sign it was added with): the end is then not
    # the minimizer of the signs it has
    crossed = worst >= 0 and u[worst] * joined_sign < 0.0
    for j in range(d):
        now = theta[j] + delta[j]
        if u[j] == 0.0 or now == 0.0:
            continue
        crossing = -now / u[j]
        if 0.0 < crossing < 1.0:
            crossed = True
            value = segment_value(problem, theta, delta, u, d, c1, c2,
                                  crossing)
            if value < best_value:
                best, best_value = crossing, value
    if best_value < -1e-12 * (abs(c1) + abs(c2)):
        for j in range(d):
            if u[j] == 0.0:
                continue
            now = theta[j] + delta[j]
            step = best * u[j]
            if best < 1.0 and abs(now + step) <= 1e-12 * abs(now):
                # the coordinate that reaches zero: exactly
                step = -theta[j] - delta[j]
                delta[j] = -theta[j]
            else:
                delta[j] += step
            if step != 0.0:
                for i in range(d):
                    if mark[i] == 0.0:
                        r[i] += step * S[i, j]
        if best < 1.0 or crossed:
            return _PARTIAL
    elif add or not l1_conditions_hold(S, g, theta, problem, delta, r, mark,
                                       d, _ACTIVE_SET_RTOL):
        # nothing to gain but rounding, short of the optimality conditions
        return _NO_STEP
    # at the active set's minimizer (or as close as rounding allows)
    if most_violated_at_zero(S, g, theta, problem, delta, r, mark, d) >= 0:
        return _FULL
    return _OPTIMAL


@helper
def most_violated_at_zero(S, g, theta, problem, delta, r, mark, d):
    """The coordinate at zero whose optimality condition ``|g_j + (S
    delta)_j| <= lam_j`` is most violated beyond rounding, or -1 where
    every one holds (``r`` is ``S @ delta``)."""
    worst = -1
    excess = 0.0
    for j in range(d):
        if mark[j] != 0.0 or not S[j, j] > 0.0 or theta[j] + delta[j] != 0.0:
            continue
        lam = l1_threshold(problem, j, 1.0)
        over = abs(g[j] + r[j]) - lam * (1.0 + 1e-9) - 1e-14 * abs(g[j])
        if over > excess:
            worst, excess = j, over
    return worst


@helper
def l1_conditions_hold(S, g, theta, problem, delta, r, mark, d, rtol):
    """Whether ``delta`` satisfies the optimality conditions of
    :func:`prox_newton_direction`'s l1 subproblem, to ``rtol`` of the
    reduced gradient's scale (``r`` is ``S @ delta``)."""
    worst = 0.0
    scale = 0.0
    for j in range(d):
        if mark[j] != 0.0 or not S[j, j] > 0.0:
            continue
        lam = l1_threshold(problem, j, 1.0)
        slope = g[j] + r[j]
        value = theta[j] + delta[j]
        if value == 0.0:
            violation = abs(slope) - lam
        else:
            violation = abs(slope + (lam if value > 0.0 else -lam))
        worst = max(worst, violation)
        scale = max(scale, abs(g[j]), lam)
    return worst <= rtol * scale


@helper
def segment_value(problem, theta, delta, u, d, c1, c2, a):
    """The l1 model at ``delta + a u``, less its value at ``delta``."""
    value = a * c1 + 0.5 * a * a * c2
    for j in range(d):
        if u[j] == 0.0:
            continue
        lam = l1_threshold(problem, j, 1.0)
        value += lam * (abs(theta[j] + delta[j] + a * u[j])
                        - abs(theta[j] + delta[j]))
    return value


@helper
def newton_direction(problem, theta, fresh, factored, l1, tol, work, Ainv,
                     l1_work):
    """The step ``work.delta`` from the gradient ``work.grad``; returns the jitter.

    With an l1 part (``l1``, where ``l1_work`` is not None: see
    ``NewtonWork``), a proximal Newton step. Otherwise a Newton step with a
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
    if l1_work is not None:
        if l1:
            symmetrize_lower(A, d)
            prox_newton_direction(A, grad, theta, problem, d, tol * 1e-2, work)
            return jitter
    if factored:
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
                                  Ainv, work.l1)
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


@helper
def l1_inverse(A, L, W, Ainv, theta, problem, d, active_only, l1):
    """``hessian_inverse`` for a problem with an l1 part (returns True).

    ``l1`` is the workspace's (``NewtonWork``): without an l1 part it is
    None, numba drops the branch before typing, and the function returns
    False; an l2-penalized fit then does not compile ``hessian_inverse``
    (a quarter of a second of its first fit). The caller inverts the
    Hessian's factor itself.
    """
    if l1 is None:
        return False
    hessian_inverse(A, L, W, Ainv, theta, problem, d, active_only)
    return True


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
        inverted = l1_inverse(work.A, work.L, work.W, Ainv, th, problem, d,
                              on_active_set, work.l1)
        if not inverted and not (store and kept.ok[t] == 1):
            cholesky_inverse(work.L, work.W, Ainv, d)
            if store:
                kept.ok[t] = 1
        add_inverse(Ainv, 1.0, settings.diagonal, out.inv_sum[b])
        if not settings.want_posterior:
            continue
        # with an l1 part, the Laplace covariance used by empirical Bayes
        # ignores the active set: it must vary continuously with the prior,
        # or EM can cycle between active sets
        l1_inverse(work.A, work.L, work.W, Ainv, th, problem, d,
                   not on_active_set, work.l1)
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
