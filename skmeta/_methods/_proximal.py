"""``method="proximal"``: regularized multi-task learning, empirical-Bayes prior.

The joint objective over the prior mean ``theta0`` and the task parameters,

    J = sum_t [L_t(theta_t) + lambda R(theta_t)
               + gamma/2 ||theta_t - theta0||_Lambda^2],

is convex. Each iteration solves every task exactly (one kernel call), then
takes a Newton step on the reduced objective ``F(theta0) = min_theta J``,
whose gradient and Hessian follow from the implicit function theorem:

    grad F = T Pi (theta0 - mean_t theta_t),
    hess F = T Pi - Pi (sum_t A_t^{-1}) Pi,       Pi = gamma Lambda,

with ``A_t`` the Hessian of task t's objective at its solution. This
converges quadratically where alternating updates (``theta0 <- mean``) crawl
when the prior is strong. A backtracking halving keeps ``F`` decreasing.

When ``prior`` is ``"diagonal"``/``"full"`` or ``gamma="auto"``, the prior is
re-estimated after each solve by one EM step of the Gaussian hierarchical
model ``theta_t ~ N(theta0, Sigma)``, with the Laplace approximation of each
task's posterior (mean ``theta_t``, covariance ``(phi / s_t) A_t^{-1}``): see
:func:`empirical_bayes_update`.
"""

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg, sparse
from scipy.sparse import linalg as sparse_linalg
from sklearn.exceptions import ConvergenceWarning

from .._kernels._calls import datafit_losses, losses_at_zero
from .._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from .._kernels._workspaces import FULL_INVERSE_MAX_PARAMS
from ._base import MetaFit, MetaMethod
from ._blas import one_blas_thread
from ._inner import INNER_TOL, InnerSolver, solve_exactly
from ._mixture import MixtureSpec, adapt_mixture, learn_mixture
from ._nested import COVARIANCE_MEMORY, NestedSpec, fit_nested
from ._prior import (
    Prior,
    changed,
    mean_penalty,
    models_floor,
    noise_variance_floor,
    precision_inverse,
    psd_solve,
    residual_squares,
    scaled_spread,
    split_strength,
    task_scales,
    transfer_beyond_ridge,
)
from ._squarem import squarem
from ._statistics import OnlinePrior, TaskStatistics
from ._structures import SHARED_PRECISION_RATIO, Structure

# what a prior whose precision runs away raises (see _degeneracy_raises)
_DEGENERATE = (FloatingPointError, linalg.LinAlgError, linalg.LinAlgWarning)

_MAX_HALVINGS = 30
# Problems with at least _WARM_UP_FACTOR * _WARM_UP_TASKS tasks first learn
# the prior on _WARM_UP_TASKS of them.
_WARM_UP_TASKS = 256
_WARM_UP_FACTOR = 8
# the transfer term's precision is kept above this fraction of the prior's
# (see empirical_bayes_update)
# prior structures are compared on at most this many tasks, on every
# HELD_OUT_EVERY-th row of each
SELECTION_TASKS = 1000
HELD_OUT_EVERY = 4
SELECTION_TOL = 1e-3
# held-out scores within this fraction of the best are a tie, which the
# structure of fewer free parameters wins (see _simplest_of_the_best)
SELECTION_TIE = 1e-4
# the pooled candidate's fit, at most (see pooled_fit_affordable)
POOLED_FIT_MAX_WORK = 1e10
POOLED_FIT_MAX_BYTES = 256 * 2**20
# A prior with a vector precision needs only the diagonals of the tasks'
# inverse Hessians (and products with their sum, for the prior mean's Newton
# step): above this many parameters they are all it gets. Full d x d inverses
# cost O(n d^2) per task and solve, and an O(d^3) eigendecomposition per
# iteration; measured on 200 binary tasks of 5 rows and 500 features, a
# default fit took over 240 s with them, 26 s without.
VECTOR_PRIOR_MAX_FULL_PARAMS = 256
# The prior mean's Newton step on wide tasks is solved by conjugate
# gradients only this far: it is one step of an outer iteration that repeats
# it, and its system is nearly singular (directions few tasks' rows reach),
# where pressing on mostly amplifies round-off. Measured on 200 tasks of 5
# rows (benchmarks/README.md section 8): at 1e-10 a 10-class fit (1,010
# parameters) took 17.7 s, 80% of it in these solves, and one candidate
# prior's fit ran off (held-out log-loss 18.4); at 1e-4, 3.5 s, that
# candidate 1.54 and chosen; binary tasks of 500 features end at the same
# parameters (to 1e-7) in half the time.
MEAN_STEP_RTOL = 1e-4
# prior="auto" compares full and low-rank priors only with at least this many
# tasks per varying coefficient (see matrix_priors_estimable)
MATRIX_PRIOR_TASKS_PER_EFFECT = 2
# inner tolerance of the first solve after a warm-up prior (see _fixed_prior)
_FIRST_SOLVE_TOL = 1e-4
# a classifier's log-loss vanishes only as its margins grow without bound:
# tasks whose rows cost less than this per unit of weight under a learned
# prior are separated by coefficients that no prior holds any longer
_VANISHING_LOSS = 1e-8
# the prior mean's Newton system, in the precision's units, keeps the
# directions whose curvature is above this fraction of the largest: pinned
# coefficients' is about (data curvature) / (their precision), 1e-8 and
# more; rounding's, about machine epsilon times the system's condition
_CURVATURE_RCOND = 1e-10
# models that fit their rows by more than this fraction worse than all-zero
# parameters have lost their prior (rounding of averaged losses puts a
# fit whose optimum is zero a few ulps above; run-aways are off by factors)
_ZERO_LOSS_MARGIN = 1e-6


@contextmanager
def _degeneracy_raises(ill_conditioned=False):
    """Turn the signs of a runaway prior into exceptions.

    Where empirical Bayes degenerates (a task direction that no row pins
    down, e.g. separable classes), the prior's moments overflow and its
    precision turns singular long before anything fails; numpy and scipy
    only warn. Raised instead, they reach the caller's fallback and the user
    sees one ConvergenceWarning that says what happened, not dozens of
    overflow warnings from private modules. ``ill_conditioned`` also raises
    scipy's LinAlgWarning, for throw-away fits whose result is only scored.
    """
    with np.errstate(over="raise", divide="raise", invalid="raise"), \
            warnings.catch_warnings():
        if ill_conditioned:
            warnings.simplefilter("error", linalg.LinAlgWarning)
        yield


@dataclass
class ProximalFit:
    prior: Prior
    theta: np.ndarray
    n_iter: int
    converged: bool
    objective: float
    #: the tasks' solutions at ``prior`` (from the last evaluation)
    solutions: object = None
    #: their sufficient statistics (see ``_online.TaskStatistics``)
    statistics: object = None
    #: the period with which the iterations were found to cycle, or 0
    cycle: int = 0


def newton_theta0_step(theta, theta0, precision, inv_sum, inverse_sum_times=None,
                       mean_penalty=None):
    """Newton step on ``F(theta0)`` for a fixed prior precision.

    ``inv_sum`` is the sum of the tasks' inverse Hessians, or of their
    diagonals only (wide tasks, diagonal precision). In the latter case the
    Newton system is solved by conjugate gradients with products by the sum
    (``inverse_sum_times``), preconditioned by its diagonal; without them
    the step is taken with the Hessian's diagonal, and the callers'
    backtracking or EM iterations make up for the approximation.
    """
    return newton_mean_step(theta.mean(axis=0) - theta0, theta.shape[0],
                            precision, inv_sum, inverse_sum_times,
                            theta0=theta0, mean_penalty=mean_penalty)


def newton_step_from_mean(theta_mean, T, theta0, precision, inv_sum,
                          inverse_sum_times=None, mean_penalty=None):
    """:func:`newton_theta0_step` given the mean of the ``T`` tasks'
    parameters (all it needs of them)."""
    return newton_mean_step(theta_mean - theta0, T, precision, inv_sum,
                            inverse_sum_times, theta0=theta0,
                            mean_penalty=mean_penalty)


def newton_mean_step(diff, T, precision, inv_sum, inverse_sum_times=None, *,
                     theta0=None, mean_penalty=None):
    """The Newton step of :func:`newton_theta0_step` from ``diff``, the mean
    of the ``T`` tasks' parameters less ``theta0``.

    ``inv_sum`` sums the inverse Hessians of the tasks whose solutions move
    with ``theta0``: all ``T`` of them in a batch fit; only those of the
    current chunk when the others' statistics are frozen (online, see
    :mod:`._online`), whose stationarity condition ``T theta0 = sum_t
    theta_t(theta0)`` linearizes to the same system.

    ``mean_penalty`` (a vector ``D0``, see :func:`._prior.mean_penalty`)
    adds the prior mean's own prior ``theta0' D0 theta0 / 2`` to the
    objective, at ``theta0``: the stationarity condition becomes ``T M
    (mean - theta0) = D0 theta0``. It is zero where the inverses' diagonals
    alone are summed (wide tasks: their base penalty is not part of the
    prior), and ignored there.
    """
    if not np.any(precision):
        # no coupling: F is flat and the prior mean is the tasks' mean
        return diff
    if inv_sum.ndim == 1:
        P_inv = 1.0 / precision
        curvature = P_inv - inv_sum / T
        keep = curvature > 1e-12 * max(curvature.max(initial=0.0),
                                        np.finfo(float).tiny)
        step = np.divide(diff, curvature, out=np.zeros_like(diff), where=keep)
        if inverse_sum_times is not None:
            step = _newton_by_conjugate_gradients(
                lambda v: P_inv * v - inverse_sum_times(v) / T, diff,
                np.where(keep, curvature, 1.0), step)
        return P_inv * step
    P_inv = precision_inverse(precision)
    system = P_inv - inv_sum / T
    if mean_penalty is not None and np.any(mean_penalty):
        system = system + (P_inv * mean_penalty) @ P_inv / T
        diff = diff - P_inv @ (mean_penalty * theta0) / T
    # in the precision's units: the difference's rounding is relative to
    # P^{-1}, so every direction's curvature is then judged on one scale
    root = np.sqrt(np.diag(precision) if precision.ndim == 2 else precision)
    step = root * psd_solve(system * np.outer(root, root), root * diff,
                            rcond=_CURVATURE_RCOND)
    return P_inv @ step


def _newton_by_conjugate_gradients(matvec, rhs, diagonal, start):
    """Solve ``H x = rhs`` for PSD ``H`` given by products, from ``start``.

    Preconditioned by ``H``'s diagonal; to a relative residual of
    ``MEAN_STEP_RTOL``, at most ``4 d`` iterations (the caller's line search
    or EM iterations absorb a rare unfinished solve).
    """
    d = rhs.shape[0]
    operator = sparse_linalg.LinearOperator((d, d), matvec=matvec,
                                            dtype=np.float64)
    preconditioner = sparse_linalg.LinearOperator(
        (d, d), matvec=lambda v: v / diagonal, dtype=np.float64)
    x, _ = sparse_linalg.cg(operator, rhs, x0=start, rtol=MEAN_STEP_RTOL, atol=0.0,
                            maxiter=4 * d, M=preconditioner)
    return x


def empirical_bayes_update(prior, theta, solutions, *, structure, learn_gamma,
                           ridge, task_scale, total_weight, squared,
                           min_dispersion=0.0, mean_held=False):
    """One EM step for the prior (mean, covariance) and the noise variance.

    In the model's natural units, task t's negative log-likelihood is
    ``s_t L_t / phi`` (``s_t`` = 1 for summed losses, the task's total weight
    for averaged ones; ``phi`` the noise variance of squared losses, 1
    otherwise), and the prior of its parameters is what the inner problem's
    smooth penalties say: the base estimator's l2 part ``D = lam2
    diag(l2w)`` and the transfer term together, of precision ``M = Pi + D``
    (estimator units), so ``N(theta0, (phi / s_t) M^{-1})`` in natural
    units: with averaged losses a task's prior is as much tighter as its
    rows weigh more, as the base estimator's own penalty is. The E-step
    gives the tasks' posterior means ``theta_t`` and covariances ``(phi /
    s_t) A_t^{-1}``; given ``theta0`` (the caller's Newton step: the joint
    objective's minimizer, the means' mean at convergence), the M-step sets
    ``V = (phi / s) M^{-1}``, ``s = mean_t s_t``, to the ``structure`` (see
    :mod:`._structures`) that fits

        S = sum_t [s_t (theta_t - theta0)(...)^T + phi A_t^{-1}] / sum_t s_t,

    each task's expected second moment in the units of its own prior (``s_t
    / s`` times its natural-unit moment), and ``phi`` to the expected
    residual variance. Moments taken in one unit for all tasks instead gave
    a task of one row a posterior covariance ``s / s_t`` times the others':
    one such task among fifteen of twenty rows doubled ``S`` at every step,
    and the learned strength fell to a hundredth. The transfer term is what
    ``M`` needs beyond the base penalty, ``Pi = M - D`` (negative where
    the tasks spread wider than the penalty alone lets them; see
    :func:`._prior.transfer_beyond_ridge`). Counting the
    base penalty in the prior keeps it from being counted twice: without it,
    a penalized base estimator's pull toward zero shrinks the tasks' spread,
    which a prior fitted to that spread then shrinks again.
    """
    T, d = theta.shape
    # wide tasks: the posterior covariances' diagonals only
    wide = solutions.inv_wsum.ndim == 1
    rss = (residual_squares(task_scale, solutions.loss) if squared
           else np.zeros(1))
    mean_scale = float(task_scale.mean())
    return eb_update_from_sums(
        prior, TaskSums(T, scaled_spread(theta - prior.theta0,
                                         task_scale / mean_scale, wide),
                        solutions.inv_wsum, rss.sum(), solutions.trace.sum(),
                        mean_scale),
        structure=structure, learn_gamma=learn_gamma, ridge=ridge,
        total_weight=total_weight, squared=squared,
        min_dispersion=min_dispersion, mean_held=mean_held)


@dataclass
class TaskSums:
    """What one EM step of the prior needs of the tasks: sums of fixed size.

    ``spread`` is ``sum_t (s_t / s) (theta_t - theta0)(theta_t - theta0)^T``
    about the prior mean being updated (its diagonal for wide tasks; ``s``
    the ``mean_scale`` of the ``s_t``), ``inv_wsum`` the sum of the inverse
    Hessians over ``s`` (each task solved with ``inv_weight = 1 / s``),
    ``rss`` the sum of ``2 s_t L_t`` and ``trace`` that of ``tr(H_data,t
    A_t^{-1})`` (see :func:`empirical_bayes_update`). Written relative to
    ``s``, they are for tasks of equal scales what they were before each
    task was taken in its own units, to the last bit. Tasks held on several
    machines send these, not their parameters (see :mod:`skmeta._dask`).
    """

    n_tasks: int
    spread: np.ndarray
    inv_wsum: np.ndarray
    rss: float
    trace: float
    mean_scale: float


def eb_update_from_sums(prior, sums, *, structure, learn_gamma, ridge,
                        total_weight, squared, min_dispersion=0.0,
                        mean_held=False):
    """:func:`empirical_bayes_update` from the tasks' :class:`TaskSums`;
    ``mean_held`` says that the prior mean has its own prior (it is learned,
    :func:`._prior.mean_penalty`)."""
    T = sums.n_tasks
    posterior = prior.dispersion * sums.inv_wsum / T
    if posterior.ndim == 2:
        moments = sums.spread / T + posterior
        diag = np.diag(moments).copy()
    else:
        moments = None
        diag = sums.spread / T + posterior
    dispersion = prior.dispersion
    if squared:
        extra, extra_weight = prior_noise_terms(
            prior, moments, diag, T, structure=structure, ridge=ridge,
            mean_scale=sums.mean_scale, mean_held=mean_held)
        expected = sums.rss + prior.dispersion * sums.trace + extra
        dispersion = max(expected / (total_weight + extra_weight),
                         min_dispersion, np.finfo(float).tiny)
        # With the tasks' fits held, these steps shrink the noise variance
        # geometrically toward rss / (weight - trace); where that is below
        # the floor (tasks fitted exactly: a constant target) they would
        # take a thousand iterations to reach it, so go there at once.
        room = total_weight - sums.trace
        if room > 0 and sums.rss <= min_dispersion * room:
            dispersion = max(min_dispersion, np.finfo(float).tiny)
    return prior_from_moments(prior, moments, diag, T, dispersion,
                              sums.mean_scale, structure=structure,
                              learn_gamma=learn_gamma, ridge=ridge)


def prior_noise_terms(prior, moments, diag, n_tasks, *, structure, ridge,
                      mean_scale, mean_held):
    """What the prior adds to the noise variance's M-step: ``(expected,
    weight)``, beside the expected residual sum of squares and the rows'
    weight.

    Nothing, unless the structure is isotropic beside the base penalty
    ``D`` (``ridge``): the other structures' covariance ``V`` is free, and
    given it the prior does not depend on the noise variance ``phi``. The
    isotropic transfer term is ``pi I`` beside ``D``, both in the
    estimator's units, so the tasks' prior ``N(theta0, (phi / s) (pi I +
    D)^-1)`` scales with ``phi`` as the noise does: with ``pi`` held at its
    M-step value, the expected complete log-likelihood is maximal at ``phi
    = (E[rss] + phi T tr(N S)) / (weight + T d)``, ``N`` the prior's
    precision in natural units and ``S`` the tasks' expected second moments
    (an ECM step; its fixed point is the evidence's stationary point), over
    the coefficients that vary: shared ones are a mixed model's fixed
    effects, held by a precision tied to the others' (counted, they
    inflated ``phi`` by the factor the strength grew by in each step, and
    a random-intercept fit of tasks that do not differ overflowed). With
    ``mean_held``, the prior mean's own prior ``N(0, (phi / s) D^-1)`` on
    the penalized coefficients adds ``s theta0' D theta0`` and their number.
    Counting the residuals alone left the noise variance where the evidence
    still rose with it (by 167 nats per unit of ``log phi`` on 50 tasks of
    ``Ridge(alpha=1)``), and the prior's spread, proportional to it, too
    narrow: 90 % intervals of new three-row tasks covered 85 %.
    """
    if not (structure.kind == "isotropic" and np.any(ridge > 0)):
        return 0.0, 0.0
    natural = structure.natural_precision_beside(
        moments, diag, n_tasks, ridge * mean_scale / prior.dispersion)
    varying = structure.varying(diag.shape[0])
    expected = prior.dispersion * n_tasks * float(
        np.dot(natural[varying], diag[varying]))
    weight = float(n_tasks * np.count_nonzero(varying))
    if mean_held:
        expected += mean_scale * float(prior.theta0 @ (ridge * prior.theta0))
        weight += float(np.count_nonzero(ridge > 0))
    return expected, weight


def prior_from_moments(prior, moments, diag, n_tasks, dispersion, mean_scale, *,
                       structure, learn_gamma, ridge):
    """The M-step of :func:`empirical_bayes_update` from the tasks' expected
    second moments about ``prior.theta0`` (``moments``, or its diagonal
    ``diag`` alone), the noise variance and the tasks' mean scale."""
    # (the base penalty in the moments' natural units)
    natural = structure.natural_precision_beside(
        moments, diag, n_tasks, ridge * mean_scale / dispersion)
    return prior_from_natural(
        prior, natural, dispersion, mean_scale, structure=structure,
        learn_gamma=learn_gamma, ridge=ridge,
        factors=structure.warm.get("factors")
        if structure.kind == "lowrank" else None)


def prior_from_natural(prior, natural, dispersion, mean_scale, *, structure,
                       learn_gamma, ridge, factors=None):
    """The prior whose tasks' covariance has the precision ``natural`` (in
    the model's natural units; see :func:`empirical_bayes_update`), with
    the noise variance ``dispersion``; ``factors`` the factor model of a
    low-rank one."""
    M = dispersion / mean_scale * natural
    precision = transfer_beyond_ridge(M, ridge,
                                      signed=structure.signed_transfer)
    strength, shape = split_strength(precision)
    gamma = strength if learn_gamma else prior.gamma
    if (structure.kind == "isotropic" and structure.shared is None
            and not np.any(ridge > 0)):
        shape = prior.shape
    return Prior(theta0=prior.theta0, shape=shape, gamma=gamma,
                 dispersion=dispersion, ridge=prior.ridge, factors=factors)


class _PriorCoordinates:
    """Unconstrained coordinates of a learned prior, for EM acceleration.

    The vector holds ``theta0`` (when learned), the log of the noise variance
    (squared losses) and the precision ``gamma * Lambda`` as log-diagonal,
    log-strength, or log-diagonal plus off-diagonal of its Cholesky factor, so
    that any extrapolated vector decodes to a positive definite precision.
    A low-rank prior is held as its factor model instead, ``log psi`` and
    ``F``: extrapolated along its own coordinates it stays a low-rank prior
    (extrapolated as a matrix it would not, and the next M-step's
    projection back would read as a residual that rejects the step).
    """

    def __init__(self, prior, *, structure, learn_theta0, learn_gamma, squared,
                 ridge, mean_scale=1.0):
        self.structure = structure
        # the diagonal precision's shape is learned (else only its strength)
        self.shape_learned = (structure.kind != "isotropic"
                              or structure.shared is not None
                              or bool(np.any(ridge > 0)))
        self.learn_theta0 = learn_theta0
        self.learn_gamma = learn_gamma
        self.squared = squared
        self.ridge = ridge
        # beside the base penalty, a diagonal or full transfer term may be
        # negative (see _prior.transfer_beyond_ridge): the tasks' precision, the
        # penalty's and the transfer term's together, is held instead
        self.combined = (structure.kind in ("diagonal", "full")
                         and bool(np.any(ridge > 0)))
        self.mean_scale = mean_scale
        self.d = prior.theta0.shape[0]
        # the EM map sets the prior mean anew (a Newton step to its optimum
        # for the precision): see _squarem. Not for a low-rank prior, whose
        # M-step starts from the factor model of the evaluation before it,
        # kept or not: a retried extrapolation would move that start once
        # more, on paths that already depend on it (Heywood cases). With a
        # fixed gamma the strength never grows, and no retry is made
        self.profiled = (self.d if learn_theta0 and structure.kind != "lowrank"
                         else 0)
        self.template = prior

    @property
    def factored(self):
        return self.structure.kind == "lowrank"

    @staticmethod
    def strength(prior):
        return prior.gamma

    def encode(self, prior):
        parts = [prior.theta0] if self.learn_theta0 else []
        if self.squared:
            parts.append([np.log(max(prior.dispersion, np.finfo(float).tiny))])
        precision = (prior.combined_precision if self.combined
                     else prior.precision)
        if self.factored:
            F, psi = prior.factors
            parts += [np.log(psi), F]
        elif self.structure.full_precision:
            L = linalg.cholesky(precision, lower=True, check_finite=False)
            parts += [np.log(np.diag(L)), L[np.tril_indices(self.d, -1)]]
        elif self.shape_learned:
            parts.append(np.log(precision))
        else:
            parts.append([np.log(prior.gamma)])
        return np.concatenate([np.asarray(part, dtype=float).ravel()
                               for part in parts])

    def decode(self, x):
        d = self.d
        at = 0
        theta0 = self.template.theta0
        if self.learn_theta0:
            theta0, at = x[:d], d
        dispersion = self.template.dispersion
        if self.squared:
            dispersion, at = float(np.exp(x[at])), at + 1
        if self.factored:
            r, q = self.template.factors[0].shape
            factors = (x[at + r:].reshape(r, q), np.exp(x[at:at + r]))
            return prior_from_natural(
                replace(self.template, theta0=np.array(theta0)),
                self.structure.natural_from_factors(factors, d), dispersion,
                self.mean_scale, structure=self.structure,
                learn_gamma=self.learn_gamma, ridge=self.ridge,
                factors=factors)
        if self.structure.full_precision:
            L = np.zeros((d, d))
            L[np.diag_indices(d)] = np.exp(x[at:at + d])
            L[np.tril_indices(d, -1)] = x[at + d:]
            precision = L @ L.T
        elif self.shape_learned:
            precision = np.exp(x[at:])
        else:
            precision = float(np.exp(x[at])) * self.template.shape
        if self.combined:
            precision = transfer_beyond_ridge(precision, self.ridge)
        strength, shape = split_strength(precision)
        gamma = strength if self.learn_gamma else self.template.gamma
        return Prior(theta0=np.array(theta0), shape=shape, gamma=gamma,
                     dispersion=dispersion, ridge=self.template.ridge)


class _Iteration:
    """One outer iteration: solve all tasks under a prior, propose the next."""

    def __init__(self, solver, *, learn_theta0, structure, learn_gamma,
                 count_penalty=True):
        batch, problem = solver.batch, solver.problem
        self._set_prior_settings(solver, learn_theta0=learn_theta0,
                                 structure=structure, learn_gamma=learn_gamma,
                                 count_penalty=count_penalty)
        self.task_scale = task_scales(batch, problem)
        self.mean_scale = float(self.task_scale.mean())
        self.total_weight = max(float(batch.sw.sum()), np.finfo(float).tiny)
        self.min_dispersion = noise_variance_floor(batch.y)

    def _set_prior_settings(self, solver, *, learn_theta0, structure,
                            learn_gamma, count_penalty):
        """What of the prior is learned, and the base penalty's share in it."""
        problem = solver.problem
        self.n_tasks = solver.batch.n_tasks
        self.solver = solver
        self.learn_theta0 = learn_theta0
        self.structure = structure
        self.learn_gamma = learn_gamma
        self.learn_prior = (structure.kind != "isotropic" or learn_gamma
                            or structure.shared is not None)
        self.squared = problem.code == SQUARED
        self.classifies = problem.code in (LOGISTIC, MULTINOMIAL)
        self._zero_loss = None
        # The base penalty counts as part of a prior whose strength is
        # learned. Not with a fixed gamma: that is the user's transfer term,
        # centred on theta0 as written. Nor with a given prior mean
        # (prior_estimator): the penalty pulls toward zero, the transfer term
        # toward the given model, and empirical Bayes learns how far to trust
        # that model (counted in the prior, the penalty's pull was taken
        # about the given mean, and a poor one could not be discounted: a
        # red-team review). Nor for wide tasks: there, in the
        # directions no task's data reach, the prior mean's Newton step with
        # the penalty included is a difference of nearly equal inverses
        # (M^{-1} - A_t^{-1}), and only diagonals of the A_t^{-1} are at hand
        # to guard it.
        self.ridge = (np.zeros(problem.n_params)
                      if solver.diagonal or not (
                          count_penalty and learn_gamma and learn_theta0)
                      else problem.lam2 * problem.l2w)

    def task_statistics(self, solutions, prior):
        """What a later ``partial_fit`` needs of these tasks (see _online)."""
        return TaskStatistics.of(solutions, prior, self)

    def initial_theta(self, prior):
        """Every task's parameters at the prior mean (a warm start)."""
        return np.tile(prior.theta0, (self.n_tasks, 1))

    def subset(self, task_index):
        """The tasks ``task_index`` as a :class:`TaskBatch` in memory."""
        return self.solver.batch.subset(task_index)

    @staticmethod
    def objective(solutions):
        return float(solutions.objective.sum())

    def scaled_loss(self, solutions):
        """The tasks' datafit losses, summed over their rows (``s_t L_t``)."""
        return float(np.dot(self.task_scale, solutions.loss))

    def zero_loss(self):
        """``scaled_loss`` of all-zero parameters (computed once, if asked):
        for classifiers, equal class probabilities."""
        if self._zero_loss is None:
            self._zero_loss = self._losses_at_zero()
        return self._zero_loss

    def _losses_at_zero(self):
        return losses_at_zero(self.solver.batch, self.solver.problem)

    def mean_prior(self, prior):
        """The prior mean's own precision under ``prior`` (see
        :func:`._prior.mean_penalty`)."""
        return mean_penalty(
            self.ridge, precision=prior.combined_precision,
            varying=self.structure.varying(self.ridge.shape[0]))

    @staticmethod
    def theta_mean(solutions):
        return solutions.theta.mean(axis=0)

    @staticmethod
    def theta_changed(solutions, previous, tol):
        """Whether the solve moved any task's parameters from ``previous``."""
        return changed(solutions.theta, previous, tol)

    def solve(self, prior, theta, tol=INNER_TOL, solved_at=None):
        return self.solver.solve(
            prior.center, prior.precision, theta,
            inverse=("posterior" if self.learn_prior
                     else "sum" if self.learn_theta0 else None),
            inv_weight=np.full(self.n_tasks, 1.0 / self.mean_scale), tol=tol,
            solved_at=solved_at)

    def propose(self, prior, solutions):
        """The next prior: a Newton step on theta0 (the exact minimizer of the
        joint objective for the current precision: shared coefficients move
        there at once, where EM's average of pinned tasks would crawl), then
        an EM step on the rest (empirical Bayes)."""
        theta = solutions.theta
        theta0 = prior.theta0
        if self.learn_theta0:
            # the mean of the tasks' prior moves with the transfer term and,
            # when it is part of the prior, the base penalty together
            theta0 = theta0 + newton_theta0_step(
                theta, theta0, prior.combined_precision, solutions.inv_sum,
                solutions.inverse_sum_times,
                mean_penalty=self.mean_prior(prior))
        if not self.learn_prior:
            return prior.with_theta0(theta0)
        return empirical_bayes_update(
            prior.with_theta0(theta0), theta, solutions,
            structure=self.structure, learn_gamma=self.learn_gamma,
            ridge=self.ridge, task_scale=self.task_scale,
            total_weight=self.total_weight, squared=self.squared,
            min_dispersion=self.min_dispersion, mean_held=self.learn_theta0)


def fit_proximal(solver, prior, *, learn_theta0, structure, learn_gamma, max_iter,
                 tol, verbose=0, theta=None, name="proximal", count_penalty=True):
    """Alternate exact task solves with prior updates until converged.

    Parameters
    ----------
    solver : InnerSolver
    prior : Prior
        Starting prior; its ``theta0`` is kept when ``learn_theta0`` is False.
    structure : Structure
        The shape the prior covariance may take (see :mod:`._structures`).
    learn_gamma : bool
    theta : ndarray of shape (n_tasks, n_params), default=None
        Warm start of the task parameters (default: ``theta0`` for all).
    count_penalty : bool
        Whether a learned prior includes the base estimator's l2 penalty (the
        transfer term then pulls toward a center other than ``theta0``), or
        is the transfer term alone, centred on ``theta0``.
    """
    # a solver whose tasks live elsewhere (a Dask cluster) brings its own
    make_step = getattr(solver, "iteration_class", _Iteration)
    step = make_step(solver, learn_theta0=learn_theta0, structure=structure,
                     learn_gamma=learn_gamma, count_penalty=count_penalty)
    if step.learn_prior and learn_theta0 and np.any(step.ridge > 0):
        # empirical Bayes: the base penalty is part of the tasks' prior
        prior = replace(prior, ridge=step.ridge)
    T = step.n_tasks
    warm_prior = theta is None and (learn_theta0 or step.learn_prior) and (
        T >= _WARM_UP_FACTOR * _WARM_UP_TASKS)
    if warm_prior:
        # Learn a first prior on a spread-out subset of the tasks: the full
        # problem then starts near its solution and needs fewer (expensive)
        # iterations over all tasks. A prior that degenerates on the subset
        # raises here, as it would on all the tasks.
        subset = np.linspace(0, T - 1, _WARM_UP_TASKS).round().astype(np.intp)
        with InnerSolver(step.subset(subset), solver.problem,
                         n_jobs=solver.n_jobs,
                         max_full_params=solver.max_full_params) as sub_solver, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            prior = fit_proximal(sub_solver, prior, learn_theta0=learn_theta0,
                                 structure=structure, learn_gamma=learn_gamma,
                                 max_iter=max_iter, tol=tol, name=name,
                                 count_penalty=count_penalty).prior
    if theta is None:
        theta = step.initial_theta(prior)
    if step.learn_prior:
        fit = _empirical_bayes(step, prior, theta, max_iter=max_iter, tol=tol,
                               verbose=verbose, name=name)
        if step.learn_gamma:
            # (a fixed strength cannot run away: the user's gamma holds)
            raise_if_degenerate(step, fit)
    else:
        fit = _fixed_prior(step, prior, theta, max_iter=max_iter, tol=tol,
                           verbose=verbose, name=name, warm_prior=warm_prior)
    if fit.solutions is not None:
        # what a later partial_fit needs of these tasks (see _online)
        fit.statistics = step.task_statistics(fit.solutions, fit.prior)
    if fit.cycle:
        warnings.warn(
            f"method={name!r} did not converge: after {fit.n_iter} "
            f"iterations the prior's updates repeat with a period of "
            f"{fit.cycle}, which more iterations do not leave. Directions "
            "the rows do not determine cause this (e.g. a feature constant "
            "across all rows beside the intercept): drop such features, or "
            "set gamma and prior.", ConvergenceWarning, stacklevel=2)
    elif not fit.converged:
        warnings.warn(
            f"method={name!r} did not converge in max_iter={max_iter} "
            "iterations; increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return fit


def raise_if_degenerate(step, fit, against_zero=True):
    """Raise FloatingPointError where a learned prior left classifiers that
    separate their training rows with vanishing loss, or (with
    ``against_zero``) models that fit them worse than all-zero parameters.

    Separable tasks make empirical Bayes run away: the tasks' spread grows
    with their coefficients, the learned precision falls with it, and the
    prior holds them less at every step. Where that ends in an overflow,
    the fit's numerical checks see it (``_degeneracy_raises``); where EM
    slows down first, its models stop moving relative to their (huge) size
    and it reads as converged: the classifiers' log-loss has all but
    vanished. Coefficients shared by all tasks (``random_effects``) are the
    prior mean, which no penalty holds; where the tasks' rows together pin
    them down badly (all but separable classes, a few Poisson counts), the
    mean's Newton steps diverge, and the tasks end far off their own rows'
    optimum. The models and the prior mean minimize, for the prior's
    precision, the tasks' losses plus the quadratic penalties, which all
    vanish at all-zero parameters: the losses of a sound fit sum to at most
    those of all-zero parameters (for classifiers: equal class
    probabilities), with equality where zero is the optimum (a penalty
    that zeroes everything; hence a margin for rounding). Not so where the
    mean is given (``prior_estimator``) or set by other tasks (earlier
    chunks of ``partial_fit``): under a strong prior, tasks that disagree
    with it may fit their rows badly. Both checks read the losses summed
    over all tasks: one run-away task among many sound ones goes unseen.
    Both are raised for the caller's fallback.
    """
    if fit.solutions is None:
        return
    loss = step.scaled_loss(fit.solutions)
    if step.classifies and loss <= _VANISHING_LOSS * step.total_weight:
        raise FloatingPointError(
            "the learned prior no longer holds the tasks' coefficients: their "
            "training rows are separated with vanishing loss")
    if (against_zero and step.learn_theta0
            and loss > (1.0 + _ZERO_LOSS_MARGIN) * step.zero_loss()):
        raise FloatingPointError(
            "the learned prior's models fit their own training rows worse "
            "than all-zero parameters do: the prior mean ran away")


def _report(verbose, name, n_iter, objective, prior):
    if verbose:
        print(f"[{name}] iteration {n_iter}: objective "
              f"{objective:.8g}, gamma {prior.gamma:.4g}")


def _fixed_prior(step, prior, theta, *, max_iter, tol, verbose, name,
                 warm_prior=False):
    """Newton on ``theta0`` for a fixed precision, with backtracking on F.

    With ``warm_prior`` (a prior learned on a subset of the tasks), the first
    solve is only asked for the first Newton step of the prior mean, which a
    looser inner tolerance gives as well; every later solve is exact.
    """
    previous = None  # (theta0, F) of the last accepted iterate
    halvings = 0
    n_iter = 0
    loose = warm_prior and step.learn_theta0 and bool(np.any(prior.precision))
    solved_at = None  # the prior mean theta was solved at
    for n_iter in range(1, max_iter + 1):
        # the last solutions go before the next are made (see _empirical_bayes)
        solutions = None
        solutions = step.solve(prior, theta, _FIRST_SOLVE_TOL if loose else INNER_TOL,
                               solved_at=solved_at)
        solved_at = prior.theta0
        was_loose, loose = loose, False
        theta = solutions.theta
        objective = step.objective(solutions)
        halved = backtracked(prior, objective, previous, halvings)
        if halved is not None:
            halvings += 1
            prior = halved
            continue
        halvings = 0
        _report(verbose, name, n_iter, objective, prior)
        if not step.learn_theta0:
            return ProximalFit(prior, theta, n_iter, True, objective,
                                  solutions=solutions)
        if not np.any(prior.precision):
            # no transfer: tasks do not depend on theta0, which is their mean
            return ProximalFit(prior.with_theta0(step.theta_mean(solutions)),
                               theta, n_iter, True, objective,
                               solutions=solutions)
        proposal = step.propose(prior, solutions)
        # converged when the next step is small, or when theta0 already is the
        # tasks' mean to far below tol (the stationarity condition): along a
        # direction where F flattens out toward infinity, Newton's steps stay
        # long while the gradient vanishes
        floor = models_floor(theta)
        stationary = not changed(step.theta_mean(solutions), prior.theta0,
                                  tol**2, floor)
        if stationary or not changed(proposal.theta0, prior.theta0, tol,
                                      floor):
            if was_loose:
                continue  # solve exactly at this prior mean before returning
            return ProximalFit(prior, theta, n_iter, True, objective,
                                  solutions=solutions)
        # a loose solve's objective is not compared with an exact one's
        previous = None if was_loose else (prior.theta0, objective)
        prior = proposal
    return ProximalFit(prior, theta, n_iter, False, objective,
                       solutions=solutions)


def backtracked(prior, objective, previous, halvings):
    """The prior mean halfway back to the last accepted one, ``previous``
    ``(theta0, objective)``, where this Newton step increased the objective
    (it is convex in ``theta0``); None to accept the step."""
    if (previous is None or halvings >= _MAX_HALVINGS
            or objective <= previous[1] + 1e-12 * abs(previous[1])):
        return None
    return prior.with_theta0(previous[0] + 0.5 * (prior.theta0 - previous[0]))


def _empirical_bayes(step, prior, theta, *, max_iter, tol, verbose, name):
    """EM on the prior, accelerated by SQUAREM (see ``_squarem``).

    Each evaluation of the EM map solves all tasks once. Convergence is
    judged on the models (the task parameters and the prior mean), which stop
    moving even where the evidence keeps pushing a precision toward infinity
    along directions in which the tasks do not vary, and on the noise
    variance of squared errors: the models depend on the precision in the
    loss's units alone, which can settle while the noise variance and the
    natural precision still move together (by 80 % an iteration, on 120
    tasks of 30 rows), and the predictive spreads scale with them.
    """
    state = {"n_iter": 0, "theta": theta, "prior": prior, "done": False,
             "history": [], "cycle": 0}

    def em_map(current):
        """One EM evaluation; ``state["done"]`` when converged."""
        # the last solutions go before the next are made: wide tasks' hold
        # their row-space factors, up to CURVATURE_MAX_BYTES
        state.pop("solutions", None)
        solutions = step.solve(current, state["theta"])
        state["n_iter"] += 1
        objective = step.objective(solutions)
        _report(verbose, name, state["n_iter"], objective, current)
        moved = step.theta_changed(solutions, state["theta"], tol)
        # recorded before the next prior is proposed, which may raise (a
        # degenerate precision): the state then still describes this solve,
        # and tasks on a Dask cluster, which moved on to its parameters, are
        # asked next for a solve from them
        state["theta"] = solutions.theta
        state["prior"] = current
        state["solutions"] = solutions
        state["objective"] = objective
        state["history"].append(objective)
        state["cycle"] = _cycle_period(state["history"])
        proposal = step.propose(current, solutions)
        state["done"] = (state["n_iter"] > 1 and not moved
                         and not changed(proposal.theta0, current.theta0, tol)
                         and abs(proposal.dispersion - current.dispersion)
                         <= tol * current.dispersion)
        return proposal

    def finished():
        return (state["done"] or state["cycle"] > 0
                or state["n_iter"] >= max_iter)

    if step.structure.kind == "lowrank":
        # a low-rank prior is extrapolated as its factor model, in the units
        # of this fit's M-step: the starting prior has none, or those of
        # another fit (a subset of the tasks or of their rows, whose mean
        # scale differs with averaged losses); one EM step makes them
        prior = em_map(prior)
    coords = _PriorCoordinates(prior, structure=step.structure,
                               learn_theta0=step.learn_theta0,
                               learn_gamma=step.learn_gamma, squared=step.squared,
                               ridge=step.ridge,
                               mean_scale=step.mean_scale)
    squarem(em_map, prior, coords, finished)
    return ProximalFit(state["prior"], state["theta"], state["n_iter"],
                       state["done"], state.get("objective", np.nan),
                       solutions=state.get("solutions"),
                       cycle=0 if state["done"] else state["cycle"])


def _cycle_period(objectives):
    """The period (2 or 3 evaluations) with which the last objectives repeat,
    or 0.

    EM accelerated by SQUAREM evaluates its map three times a cycle; where
    the prior mean's Newton step overshoots along directions the rows do
    not determine (a column constant across all rows beside the intercept,
    under an l1 penalty that makes the objective there piecewise linear)
    the iterations can settle into a cycle that more of them do not leave.
    A cycle: the objectives repeat, over two periods, to a thousandth of
    their swing, which is itself above rounding.
    """
    for period in (2, 3):
        window = objectives[-3 * period:]
        if len(window) < 3 * period:
            continue
        swing = max(window) - min(window)
        if swing <= 1e-9 * max(abs(v) for v in window):
            continue
        if all(abs(window[i] - window[i + period]) <= 1e-3 * swing
               for i in range(2 * period)):
            return period
    return 0


def shared_coefficients(random_effects):
    """The coefficients shared by all tasks (True) under ``random_effects``
    (a mask of the varying ones), or None where every coefficient may vary
    (None, or "auto" before it is decided)."""
    if random_effects is None or isinstance(random_effects, str):
        return None
    return ~np.asarray(random_effects, dtype=bool)


def candidate_structures(prior, random_effects, problem, diagonal, single_task,
                         gamma="auto", n_tasks=None):
    """The structures ``prior="auto"`` (or ``"lowrank"``) chooses among.

    ``random_effects`` is None (every coefficient varies), ``"auto"`` (also
    consider random intercepts only, the others shared) or a boolean mask of
    the parameters that vary. Wide tasks (``diagonal``) allow neither full
    nor low-rank priors; a single task allows nothing but the isotropic one.

    ``prior="auto"`` compares the matrix structures (full and low-rank) only
    where ``n_tasks`` (the tasks the comparison is made on) are at least
    ``MATRIX_PRIOR_TASKS_PER_EFFECT`` times the ``r`` coefficients that
    vary (see :func:`matrix_priors_estimable`).
    """
    d = problem.n_params
    shared = shared_coefficients(random_effects)
    n_random = d if shared is None else int(np.sum(~shared))
    full_ok = (not diagonal and d >= 3 and (
        prior != "auto" or n_tasks is None
        or matrix_priors_estimable(n_random, n_tasks)))
    ranks = [q for q in (1, 2) if q < d - 1] if prior == "auto" else [
        q for q in (1, 2, 3) if q < d - 1] or [1]
    if single_task or (not isinstance(gamma, str) and gamma == 0):
        # nothing to compare: one task, or no transfer at all
        return [Structure("isotropic", shared=None if gamma == 0 else shared)]
    if prior == "lowrank":
        if diagonal:
            raise ValueError(
                f"prior='lowrank' needs n_params x n_params matrices, and these "
                f"tasks have n_params={d} (more than "
                f"{FULL_INVERSE_MAX_PARAMS}): use prior='diagonal' or "
                "'isotropic'.")
        return [Structure("lowrank", rank=q, shared=shared) for q in ranks]
    if prior == "pooled":
        return [Structure("pooled")]
    if prior != "auto":
        if diagonal and prior == "full":
            raise ValueError(
                f"prior='full' needs n_params x n_params matrices, and these "
                f"tasks have n_params={d} (more than "
                f"{FULL_INVERSE_MAX_PARAMS}): use prior='diagonal' or "
                "'isotropic'.")
        return [Structure(prior, shared=shared)]
    structures = [Structure("isotropic", shared=shared),
                  Structure("diagonal", shared=shared)]
    if full_ok:
        structures.append(Structure("full", shared=shared))
        structures += [Structure("lowrank", rank=q, shared=shared) for q in ranks]
    p1 = problem.n_features + problem.fit_intercept
    # (random intercepts hold the others shared through a learned strength:
    # with a fixed gamma, see Proximal.check)
    if (isinstance(random_effects, str) and isinstance(gamma, str)
            and problem.fit_intercept and problem.n_features > 0):
        intercepts = np.zeros(d, dtype=bool)
        intercepts[p1 - 1::p1] = True
        structures.append(Structure("isotropic", shared=~intercepts))
    return structures


def _simplest_of_the_best(scores, structures, d):
    """The name of the structure the held-out selection chooses.

    The smallest score wins, but scores within ``SELECTION_TIE`` (relative)
    of it are a tie, far below what the held-out rows can tell apart, and a
    tie goes to the structure of fewer free parameters (then fewer
    coefficients that vary; then the order compared in): a full covariance
    of 231 values that scored 2e-5 better than random intercepts on the
    held-out rows of 200 tasks of 10 rows lost to them by 0.007 on 500 more
    rows per task, and to the pooled model.
    """
    best = min(structures, key=lambda name: scores[name])
    margin = SELECTION_TIE * abs(scores[best])
    tied = [name for name in structures if scores[name] <= scores[best] + margin]

    def size(name):
        structure = structures[name]
        return structure.n_hyperparameters(d), structure.n_varying(d)

    return min(tied, key=size)


def pooled_fit_affordable(batch, problem):
    """Whether the ``"pooled"`` candidate competes in ``prior="auto"``.

    Its exact fit is a Newton solve of every row as one task, of about
    ``n d min(n, d)`` multiply-adds a step (``n`` rows, ``d`` parameters):
    at most ``POOLED_FIT_MAX_WORK`` (10,000 rows of 1,000 parameters, about
    a second here, beside the tens of solves of all tasks that empirical
    Bayes makes for each other candidate). Tasks held on a Dask cluster are
    gathered for it: at most ``POOLED_FIT_MAX_BYTES`` of rows (counted
    dense), a bound applied in memory too, so that a fit chooses the same
    on a cluster as in memory.
    """
    n = int(batch.offsets[-1])
    d = problem.n_params
    return (n * d * min(n, d) <= POOLED_FIT_MAX_WORK
            and 8 * n * (problem.n_features + 2) <= POOLED_FIT_MAX_BYTES)


def pooled_model(batch, problem, n_jobs=None, max_full_params=None):
    """The base estimator fitted to every row of ``batch`` as one task.

    The ``"pooled"`` candidate of ``prior="auto"``: one model for all tasks,
    the base estimator's own fit on their rows (its penalty counted once,
    each row with the weight the task gives it). ``batch`` is in memory
    (see :meth:`Proximal._fit_pooled`).
    """
    zeros = np.zeros(problem.n_params)
    with InnerSolver(batch.pooled(), problem, n_jobs=n_jobs,
                     max_full_params=max_full_params) as solver:
        solution = solver.solve(zeros, zeros, zeros[None, :])
    if solution.n_iter[0] < 0 or not np.all(np.isfinite(solution.theta)):
        # e.g. classes that the pooled rows separate, without a penalty
        raise FloatingPointError("the pooled model has no finite minimizer")
    return solution.theta[0]


def pinning_strength(batch, problem, theta0):
    """A transfer strength that holds every task of ``batch`` at ``theta0``.

    ``SHARED_PRECISION_RATIO`` times a bound on the largest curvature of any
    task's objective: each row's curvature bound (``1`` for squared errors,
    ``1/4`` logistic, ``1/2`` multinomial, the Poisson mean at ``theta0``),
    times its weight and squared norm (intercept included), summed over the
    task (averaged, for base estimators that average their loss), and the
    base penalty's l2 curvature. A task's solution then lies within about
    ``1 / SHARED_PRECISION_RATIO`` of its loss gradient's scale from
    ``theta0``: the ``"pooled"`` structure, as shared coefficients are held
    (see :mod:`._structures`). ``batch`` is in memory.
    """
    if batch.is_sparse:
        rows = sparse.csr_matrix((batch.data, batch.indices, batch.indptr),
                                 shape=(batch.n_rows, problem.n_features))
        norms = np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
    else:
        rows = batch.Xd
        norms = np.einsum("ij,ij->i", rows, rows)
    norms = norms + float(problem.fit_intercept)
    if problem.code == POISSON:
        eta = rows @ theta0[:problem.n_features]
        if problem.fit_intercept:
            eta = eta + theta0[problem.n_features]
        curvature = np.maximum(np.exp(np.minimum(np.ravel(eta), 700.0)),
                               np.maximum(batch.y, 1e-3))
    else:
        curvature = {LOGISTIC: 0.25, MULTINOMIAL: 0.5}.get(problem.code, 1.0)
    task_of_row = np.repeat(np.arange(batch.n_tasks), np.diff(batch.offsets))
    bound = np.bincount(task_of_row, weights=batch.sw * curvature * norms,
                        minlength=batch.n_tasks)
    if problem.mean_loss:
        weights = batch.task_weights()
        bound = np.where(weights > 0, bound / np.maximum(weights, np.finfo(
            float).tiny), 0.0)
    penalty = problem.lam2 * float(np.max(problem.l2w, initial=0.0))
    top = max(float(np.max(bound, initial=0.0)), penalty, np.finfo(float).tiny)
    return SHARED_PRECISION_RATIO * top


def matrix_priors_estimable(n_random, n_tasks):
    """Whether ``prior="auto"`` compares full and low-rank covariances.

    Only with at least ``MATRIX_PRIOR_TASKS_PER_EFFECT`` tasks per varying
    coefficient. A full covariance of ``r`` coefficients has ``r (r + 1) /
    2`` free values, learned from ``T`` tasks' deviations whose sample
    covariance has rank below ``T``: with fewer than two tasks per
    coefficient, most of its eigen-directions are the weak hyperprior's
    (see :mod:`._structures`), not the tasks'. The factor model's directions
    are the leading sample eigenvectors, which only point along the true
    ones when ``r / T`` is small (a spiked covariance). Both also need each
    task's ``d x d`` Hessian at every iteration instead of its row-space or
    diagonal steps: ``O(d^3)`` per task and step.
    """
    return n_tasks >= MATRIX_PRIOR_TASKS_PER_EFFECT * n_random


class Proximal(MetaMethod):
    """``method="proximal"``: every task solved exactly, the prior re-estimated.

    The prior mean by Newton steps on the reduced objective, and with
    ``gamma="auto"`` or a diagonal or full ``prior`` the precision by
    empirical Bayes (see :func:`fit_proximal`).
    """

    name = "proximal"
    parameters = frozenset({"tol", "random_effects"})
    #: the priors a Student-t ``prior_df`` applies to
    robust_priors = ("isotropic", "diagonal", "mixture")
    exact = True
    # empirical Bayes crawls (linearly, with a small rate) where the tasks
    # barely differ and the learned strength grows without bound
    default_max_iter = 300
    #: whether a learned prior includes the base estimator's l2 penalty
    count_penalty = True

    def check(self, settings):
        if settings.prior_df is not None and settings.prior not in \
                self.robust_priors:
            raise ValueError(
                f"prior_df={settings.prior_df!r} makes the prior a Student-t "
                "(or a mixture of them), whose scale is diagonal: use it with "
                f"prior in {self.robust_priors}, not prior={settings.prior!r}, "
                "and with tasks of one level (it is not supported with "
                "nested tasks).")
        if (settings.prior == "mixture" or settings.prior_df is not None) and (
                not isinstance(settings.gamma, str) and settings.gamma == 0):
            raise ValueError(
                "gamma=0 leaves no transfer term, so no prior to make a "
                "mixture or a Student-t of: use gamma > 0 or 'auto' with "
                "prior='mixture' or prior_df.")
        if settings.prior != "mixture" and not (
                isinstance(settings.n_prior_components, str)
                and settings.n_prior_components == "auto"):
            raise ValueError(
                f"n_prior_components={settings.n_prior_components!r} is the "
                "number of components of prior='mixture'; with "
                f"prior={settings.prior!r} leave it at 'auto'.")
        fixed_gamma = not isinstance(settings.gamma, str)
        chosen_effects = shared_coefficients(settings.random_effects) is not None
        if settings.prior == "pooled" and (
                chosen_effects or (fixed_gamma and settings.gamma != 0)):
            raise ValueError(
                "prior='pooled' holds every coefficient of every task at the "
                "pooled model, with a strength it sets itself: leave "
                "gamma='auto' and random_effects='auto' (or None), or choose "
                "another prior.")
        if fixed_gamma and settings.gamma == 0:
            ignored = [f"prior={settings.prior!r}"] if settings.prior not in (
                "auto", "isotropic", "mixture") else []
            ignored += ["random_effects"] if chosen_effects else []
            if ignored:
                one = len(ignored) == 1
                warnings.warn(
                    f"{' and '.join(ignored)} {'shapes' if one else 'shape'} "
                    "the transfer term, which gamma=0 leaves out (every task "
                    f"is fitted on its own), and {'is' if one else 'are'} "
                    "ignored.", UserWarning, stacklevel=5)
        elif fixed_gamma and chosen_effects:
            # the shape is normalized to unit determinant so that gamma keeps
            # its meaning: pinning the shared coefficients there took the
            # transfer of the varying ones down to about gamma * 1e-6
            raise ValueError(
                "random_effects shares the coefficients it does not name "
                "through a learned prior strength; with a fixed gamma every "
                "coefficient is pulled toward the prior mean with the same "
                f"strength gamma={settings.gamma!r}. Use gamma='auto' with "
                "random_effects, or leave random_effects='auto'.")

    def fit(self, batch, problem, prior_mean=None, *, single_task=False):
        # The outer loop's dense algebra is on matrices of at most
        # FULL_INVERSE_MAX_PARAMS rows, between task solves that already run
        # on n_jobs threads: BLAS threads of their own only oversubscribe the
        # cores. Measured on a shared 2-core machine under load, an
        # eigendecomposition of 101 x 101 took 50 ms on two OpenBLAS threads
        # and 4 ms on one.
        with one_blas_thread():
            return self._fit(batch, problem, prior_mean, single_task=single_task)

    def _fit(self, batch, problem, prior_mean, *, single_task):
        s = self.settings
        if s.prior == "mixture" or s.prior_df is not None:
            return self._fit_mixture(batch, problem, prior_mean)
        if s.prior == "pooled" and prior_mean is not None:
            raise ValueError(
                "prior='pooled' is centred on the pooled model, which it fits "
                "itself: leave prior_estimator=None, or choose another prior.")
        # a single task, or a given prior mean, keeps theta0 where it is
        learn_theta0 = prior_mean is None and not single_task
        theta0 = np.zeros(problem.n_params) if prior_mean is None else prior_mean
        s = self.settings
        learn_gamma = s.gamma == "auto"
        gamma = 1.0 if learn_gamma else s.gamma
        max_full_params = self._max_full_params(batch, problem)
        # tasks held elsewhere (a Dask cluster) come with their own solver
        make_solver = getattr(batch, "inner_solver", None)
        solver = (InnerSolver(batch, problem, n_jobs=s.n_jobs,
                              max_full_params=max_full_params)
                  if make_solver is None
                  else make_solver(problem, max_full_params))
        with solver:
            # one task, labelled or not, tells nothing of how tasks differ
            structures = candidate_structures(
                s.prior, s.random_effects, problem, solver.diagonal,
                single_task or batch.n_tasks == 1, s.gamma,
                n_tasks=min(batch.n_tasks, SELECTION_TASKS))
            # the model without random effects competes where nothing says
            # which coefficients vary: tasks may not differ at all, or by less
            # than their rows can tell (many classes, few rows)
            pooled_competes = (
                len(structures) > 1 and s.prior == "auto" and learn_gamma
                and learn_theta0 and shared_coefficients(s.random_effects) is None
                and pooled_fit_affordable(batch, problem))
            scores = {}
            start = None
            try:
                if len(structures) > 1:
                    structure, scores, start = self._select(
                        batch, problem, structures, theta0, learn_theta0, gamma,
                        pooled=pooled_competes)
                else:
                    structure = structures[0]
                if structure.kind == "pooled":
                    result = self._fit_pooled(solver, batch, problem)
                else:
                    # from the prior the selection learned on part of the
                    # rows: the fit on all of them starts close to its end
                    with _degeneracy_raises():
                        result = fit_proximal(
                            solver,
                            start or Prior.initial(theta0, structure, gamma),
                            learn_theta0=learn_theta0, structure=structure,
                            learn_gamma=learn_gamma, max_iter=self.max_iter,
                            tol=s.tol, verbose=s.verbose, name=self.name,
                            count_penalty=self.count_penalty)
            except _DEGENERATE as error:
                if not (learn_gamma or len(structures) > 1
                        or structures[0].kind != "isotropic"):
                    raise
                if structures[0].kind == "pooled":
                    # asked for: nothing else stands in for it
                    raise ValueError(
                        "prior='pooled': the base estimator fitted to all "
                        "tasks' rows at once has no finite minimizer (e.g. "
                        "classes that the rows separate, without a penalty); "
                        "give the base estimator a penalty, or choose another "
                        "prior.") from error
                # Tasks that a few rows cannot pin down (e.g. separable
                # classes in fewer rows than parameters) make empirical
                # Bayes run away; say so, and fall back to the fixed prior.
                warnings.warn(
                    "the prior could not be learned from these tasks (its "
                    "precision degenerates: too few rows per task to tell "
                    "how the tasks differ, or classes that the tasks' "
                    "coefficients separate); fitted with gamma=1.0, "
                    "prior='isotropic' instead. Set gamma and prior "
                    "explicitly to choose the transfer.",
                    ConvergenceWarning, stacklevel=4)
                learn_gamma, gamma, scores = False, 1.0, {}
                structure = Structure("isotropic")
                result = fit_proximal(
                    solver, Prior.initial(theta0, structure, gamma),
                    learn_theta0=learn_theta0, structure=structure,
                    learn_gamma=False, max_iter=self.max_iter, tol=s.tol,
                    verbose=s.verbose, name=self.name,
                    count_penalty=self.count_penalty)
        # the pooled model's noise variance is its residuals' (as for a fixed
        # prior), and it is not moved online: nothing of it is learned from
        # sums over tasks
        pooled = structure.kind == "pooled"
        learned = not pooled and (learn_gamma or structure.kind != "isotropic"
                                  or structure.shared is not None)
        online = None
        if not (single_task or pooled) and result.statistics is not None:
            online = OnlinePrior(prior=result.prior, structure=structure,
                                 learn_theta0=learn_theta0,
                                 learn_gamma=learn_gamma,
                                 count_penalty=self.count_penalty,
                                 statistics=result.statistics)
        return MetaFit(result.prior.theta0, result.prior.shape,
                       result.prior.gamma, result.theta, result.n_iter,
                       center=result.prior.center,
                       combined_precision=result.prior.combined_precision,
                       prior_kind=structure.name, prior_scores=scores,
                       dispersion=result.prior.dispersion
                       if learned and problem.code == SQUARED else None,
                       online=online)

    def check_nested(self, settings):
        """Raise a ValueError naming settings nested tasks cannot honour."""
        if settings.prior not in ("auto", "isotropic", "diagonal"):
            raise ValueError(
                f"prior={settings.prior!r} is not supported with nested tasks "
                "(a 2-D tasks or a list task_column): every level's spread is "
                "diagonal (prior='auto' or 'diagonal') or isotropic "
                "(prior='isotropic').")
        if settings.prior_df is not None:
            raise ValueError(
                "prior_df (a Student-t prior) is not supported with nested "
                "tasks; leave prior_df=None.")
        if not isinstance(settings.gamma, str) and settings.gamma == 0:
            raise ValueError(
                "gamma=0 leaves no transfer term, so no prior to nest: use "
                "gamma > 0 or 'auto' with nested tasks.")

    def fit_nested(self, batch, problem, tree, prior_mean=None):
        """The hierarchical prior of nested tasks (see :mod:`._nested`)."""
        s = self.settings
        self.check_nested(s)
        if problem.n_params > FULL_INVERSE_MAX_PARAMS:
            # the group means' posterior needs each task's d x d curvature:
            # its diagonal alone makes their updates overshoot
            raise ValueError(
                f"nested tasks need n_params <= {FULL_INVERSE_MAX_PARAMS} "
                f"(coefficients and intercepts of a task); these tasks have "
                f"n_params={problem.n_params}. Reduce the features, or fit "
                "the tasks with one level of labels.")
        size = 8 * batch.n_tasks * problem.n_params**2
        if size > COVARIANCE_MEMORY:
            raise ValueError(
                f"nested tasks hold each task's n_params x n_params inverse "
                f"Hessian: {batch.n_tasks} tasks of n_params="
                f"{problem.n_params} need {size / 2**30:.1f} GiB, more than "
                f"{COVARIANCE_MEMORY / 2**30:.0f} GiB.")
        kind = "isotropic" if s.prior == "isotropic" else "diagonal"
        shared = shared_coefficients(s.random_effects)
        learn_gamma = s.gamma == "auto"
        d = problem.n_params
        spec = NestedSpec(
            Structure(kind, shared=shared), learn_gamma,
            1.0 if learn_gamma else float(s.gamma),
            np.zeros(d) if prior_mean is None else np.asarray(prior_mean, float),
            prior_mean is None)
        fit = fit_nested(batch, problem, tree, spec, max_iter=self.max_iter,
                         tol=s.tol, n_jobs=s.n_jobs, verbose=s.verbose)
        prior = fit.task_prior
        name = Structure(kind, shared=shared).name
        return MetaFit(prior.theta0, prior.shape, prior.gamma, fit.theta,
                       fit.n_iter, center=prior.center,
                       combined_precision=prior.combined_precision,
                       prior_kind=f"nested {name}", prior_scores={},
                       dispersion=prior.dispersion
                       if problem.code == SQUARED else None, nested=fit)

    def _max_full_params(self, batch, problem):
        """Above how many parameters only diagonals of inverses are summed.

        ``VECTOR_PRIOR_MAX_FULL_PARAMS`` where the prior's precision is a
        vector (isotropic, diagonal, and ``"auto"`` where it compares no
        matrix prior); else the solver's default.
        """
        s = self.settings
        if s.prior in ("full", "lowrank"):
            return None
        shared = shared_coefficients(s.random_effects)
        n_random = problem.n_params if shared is None else int(np.sum(~shared))
        if s.prior == "auto" and matrix_priors_estimable(
                n_random, min(batch.n_tasks, SELECTION_TASKS)):
            return None
        return VECTOR_PRIOR_MAX_FULL_PARAMS

    def _select(self, batch, problem, structures, theta0, learn_theta0, gamma,
                *, pooled=False):
        """The structure that best predicts held-out rows of the training tasks.

        Every ``HELD_OUT_EVERY``-th row of each task is held out; each
        candidate prior is learned from the other rows, its tasks' models
        predict the held-out ones, and the smallest total datafit loss on
        them (log-loss, squared error, Poisson deviance: the base
        estimator's own loss) wins; scores within ``SELECTION_TIE`` of it
        tie, and the simplest of those wins (:func:`_simplest_of_the_best`).
        With ``pooled``, the model without random effects competes too: the
        base estimator fitted to the kept rows of all tasks at once
        (:func:`pooled_model`), the simplest of all.
        The score is what the models are for --
        predictions within the tasks -- whatever the base estimator's
        penalty, the noise or a misspecified likelihood, which an evidence
        (marginal likelihood) would have to get right. On many tasks, the
        comparison runs on a spread-out subset of ``SELECTION_TASKS``.
        Returns the structure, every candidate's score (the mean held-out
        loss per unit of weight; smaller is better), and the chosen
        candidate's prior. The selection is made to a tolerance of at least
        ``SELECTION_TOL``: it only has to tell the structures apart.
        """
        s = self.settings
        T = batch.n_tasks
        if T > SELECTION_TASKS:
            batch = batch.subset(
                np.linspace(0, T - 1, SELECTION_TASKS).round().astype(np.intp))
        kept, held_out = batch.split_rows(HELD_OUT_EVERY)
        total_weight = max(float(held_out.sw.sum()), np.finfo(float).tiny)
        scores = {}
        priors = {}
        with InnerSolver(kept, problem, n_jobs=s.n_jobs,
                         max_full_params=self._max_full_params(
                             batch, problem)) as solver, \
                warnings.catch_warnings():
            # a candidate that did not converge is still scored as it is
            warnings.simplefilter("ignore", ConvergenceWarning)
            for structure in structures:
                try:
                    with _degeneracy_raises(ill_conditioned=True):
                        result = fit_proximal(
                            solver, Prior.initial(theta0, structure, gamma),
                            learn_theta0=learn_theta0, structure=structure,
                            learn_gamma=s.gamma == "auto",
                            max_iter=self.max_iter,
                            tol=max(s.tol, SELECTION_TOL), name=self.name,
                            count_penalty=self.count_penalty)
                except _DEGENERATE:
                    # this structure's precision degenerates on these rows
                    # (a direction no kept row reaches): it cannot be chosen
                    scores[structure.name] = np.inf
                    continue
                loss = datafit_losses(held_out, problem, result.theta).sum()
                score = float(loss) / total_weight
                if not np.isfinite(score):
                    scores[structure.name] = np.inf
                    continue
                scores[structure.name] = score
                priors[structure.name] = structure, result.prior
            if pooled:
                structure = Structure("pooled")
                try:
                    shared = pooled_model(
                        kept, problem, n_jobs=s.n_jobs,
                        max_full_params=self._max_full_params(batch, problem))
                except FloatingPointError:
                    score = np.inf
                else:
                    loss = datafit_losses(
                        held_out, problem,
                        np.tile(shared, (held_out.n_tasks, 1))).sum()
                    score = float(loss) / total_weight
                if np.isfinite(score):
                    priors[structure.name] = structure, None
                scores[structure.name] = score if np.isfinite(score) else np.inf
        if not priors:
            raise FloatingPointError(
                "the learned prior precision is degenerate for every "
                f"structure compared ({', '.join(scores)}); use a fixed "
                "gamma and prior='isotropic'.")
        best, best_prior = priors[_simplest_of_the_best(
            scores, {name: s for name, (s, _) in priors.items()},
            problem.n_params)]
        return best, scores, best_prior

    def _fit_pooled(self, solver, batch, problem):
        """The ``"pooled"`` structure's fit: every task held at the base
        estimator's fit on all rows (:func:`pooled_model`,
        :func:`pinning_strength`), under a fixed isotropic prior."""
        s = self.settings
        # tasks held on a Dask cluster are gathered once, as the selection
        # gathers them (within pooled_fit_affordable's bound)
        rows = (batch if getattr(batch, "inner_solver", None) is None
                else batch.subset(np.arange(batch.n_tasks)))
        theta0 = pooled_model(rows, problem, n_jobs=s.n_jobs,
                              max_full_params=solver.max_full_params)
        structure = Structure("isotropic")
        prior = Prior.initial(theta0, structure,
                              pinning_strength(rows, problem, theta0))
        return fit_proximal(solver, prior, learn_theta0=False,
                            structure=structure, learn_gamma=False,
                            max_iter=self.max_iter, tol=s.tol,
                            verbose=s.verbose, name=self.name,
                            count_penalty=self.count_penalty)

    def _fit_mixture(self, batch, problem, prior_mean):
        """A mixture or Student-t prior by EM (see :mod:`._mixture`)."""
        s = self.settings
        if prior_mean is not None:
            raise ValueError(
                "prior='mixture' and prior_df learn the prior's mean(s) from "
                "the tasks; they cannot start from a prior_estimator.")
        if s.prior == "mixture" and not isinstance(s.n_prior_components, str) \
                and s.n_prior_components > batch.n_tasks:
            raise ValueError(
                f"n_prior_components={s.n_prior_components} exceeds the "
                f"number of tasks, {batch.n_tasks}.")
        kind = "isotropic" if s.prior == "isotropic" else "diagonal"
        shared = shared_coefficients(s.random_effects)
        learn_gamma = s.gamma == "auto"
        spec = MixtureSpec(
            n_components=s.n_prior_components if s.prior == "mixture" else 1,
            df=None if s.prior_df is None else float(s.prior_df),
            structure=Structure(kind, shared=shared), learn_gamma=learn_gamma,
            gamma=1.0 if learn_gamma else float(s.gamma))
        fit, scores = learn_mixture(batch, problem, spec, s, self.max_iter)
        prior = fit.summary()
        K = fit.mixture.n_components
        name = spec.structure.name
        if s.prior == "mixture":
            name = f"mixture of {K} {name}"
        if spec.df is not None:
            name = f"student-t ({spec.df:g} df) {name}"
        return MetaFit(prior.theta0, prior.shape, prior.gamma, fit.theta,
                       fit.n_iter, center=prior.center,
                       combined_precision=prior.combined_precision,
                       prior_kind=name, prior_scores=scores,
                       dispersion=prior.dispersion
                       if problem.code == SQUARED else None,
                       mixture=fit.mixture, task_clusters=fit.responsibilities,
                       task_weights=fit.robust_weights
                       if spec.df is not None else None)

    def adapt(self, batch, problem, fitted, labels=None):
        if fitted.mixture is not None:
            return adapt_mixture(batch, problem, fitted.mixture,
                                 n_jobs=self.settings.n_jobs)[0]
        return solve_exactly(batch, problem, fitted.center, fitted.precision,
                             fitted.theta0, n_jobs=self.settings.n_jobs,
                             labels=labels)
