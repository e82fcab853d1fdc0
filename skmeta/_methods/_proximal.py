"""``method="proximal"``: regularized multi-task learning, empirical-Bayes prior.

The joint objective over the prior mean ``theta0`` and the task parameters,

    J = sum_t [ L_t(theta_t) + lambda R(theta_t) + gamma/2 ||theta_t - theta0||_Lambda^2 ],

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
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from sklearn.exceptions import ConvergenceWarning

from .._kernels._codes import SQUARED
from ._prior import Prior, precision_inverse, psd_solve, split_strength

_MAX_HALVINGS = 30


@dataclass
class ProximalFit:
    prior: Prior
    theta: np.ndarray
    n_iter: int
    converged: bool
    objective: float


def newton_theta0_step(theta, theta0, precision, inv_sum):
    """Newton step on ``F(theta0)`` for a fixed prior precision."""
    T = theta.shape[0]
    diff = theta.mean(axis=0) - theta0
    if not np.any(precision):
        # no coupling: F is flat and the prior mean is the tasks' mean
        return diff
    P_inv = precision_inverse(precision)
    step = psd_solve(P_inv - inv_sum / T, diff)
    return P_inv @ step


def empirical_bayes_update(prior, theta, theta0, solutions, *, kind, learn_gamma,
                           task_scale, total_weight, squared):
    """One EM step for the prior covariance (and noise variance).

    In the model's natural units, task t's negative log-likelihood is
    ``s_t L_t / phi`` (``s_t`` = 1 for summed losses, the task's total weight
    for averaged ones; ``phi`` the noise variance of squared losses, 1
    otherwise). The M-step sets ``Sigma = mean_t[(theta_t - theta0)(...)^T +
    (phi / s_t) A_t^{-1}]`` (restricted to its diagonal, or to its trace, for
    the diagonal and isotropic priors) and ``phi`` to the expected residual
    variance. The precision in the estimator's units is then
    ``(phi / mean_t s_t) Sigma^{-1}``; with averaged losses a single ``gamma``
    for tasks of different sizes makes this an approximation.
    """
    T, d = theta.shape
    dev = theta - theta0
    posterior = prior.dispersion * solutions.inv_wsum / T
    moments = dev.T @ dev / T + posterior
    diag = np.diag(moments).copy()
    floor = 1e-12 * max(float(diag.mean()), np.finfo(float).tiny)
    dispersion = prior.dispersion
    if squared:
        rss = 2.0 * task_scale * solutions.loss
        expected = rss.sum() + prior.dispersion * solutions.trace.sum()
        dispersion = max(expected / total_weight, floor)
    if kind == "full":
        moments = moments + floor * np.eye(d)
        natural = linalg.inv(moments, check_finite=False)
        natural = (natural + natural.T) / 2.0
    elif kind == "diagonal":
        natural = 1.0 / np.maximum(diag, floor)
    else:
        natural = np.full(d, d / max(diag.sum(), d * floor))
    precision = dispersion / task_scale.mean() * natural
    strength, shape = split_strength(precision)
    gamma = strength if learn_gamma else prior.gamma
    if kind == "isotropic":
        shape = prior.shape
    return Prior(theta0=prior.theta0, shape=shape, gamma=gamma,
                 dispersion=dispersion)


def _changed(new, old, tol):
    scale = max(1.0, float(np.max(np.abs(old), initial=0.0)))
    return float(np.max(np.abs(new - old), initial=0.0)) > tol * scale


def fit_proximal(solver, prior, *, learn_theta0, kind, learn_gamma, max_iter, tol,
                 verbose=0, theta=None, name="proximal"):
    """Alternate exact task solves with prior updates until converged.

    Parameters
    ----------
    solver : InnerSolver
    prior : Prior
        Starting prior; its ``theta0`` is kept when ``learn_theta0`` is False.
    kind : {"isotropic", "diagonal", "full"}
    learn_gamma : bool
    theta : ndarray of shape (n_tasks, n_params), default=None
        Warm start of the task parameters (default: ``theta0`` for all).
    """
    batch, problem = solver.batch, solver.problem
    T = batch.n_tasks
    learn_shape = kind != "isotropic"
    learn_prior = learn_shape or learn_gamma
    backtrack = learn_theta0 and not learn_prior
    squared = problem.code == SQUARED
    task_scale = batch.task_weights() if problem.mean_loss else np.ones(T)
    # a task without weight carries no information; give it a neutral scale
    positive = task_scale > 0
    if problem.mean_loss and positive.any():
        task_scale = np.where(positive, task_scale, task_scale[positive].mean())
    task_scale = np.maximum(task_scale, np.finfo(float).tiny)
    total_weight = max(float(batch.sw.sum()), np.finfo(float).tiny)
    if theta is None:
        theta = np.tile(prior.theta0, (T, 1))
    need_inverse = learn_theta0 or learn_prior

    previous = None  # (theta0, objective) of the last accepted iterate
    halvings = 0
    converged = False
    objective = np.nan
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        solutions = solver.solve(prior.theta0, prior.precision, theta,
                                 want_inverse=need_inverse,
                                 inv_weight=1.0 / task_scale)
        theta = solutions.theta
        objective = float(solutions.objective.sum())
        if (backtrack and previous is not None and halvings < _MAX_HALVINGS
                and objective > previous[1] + 1e-12 * abs(previous[1])):
            halvings += 1
            theta0 = previous[0] + 0.5 * (prior.theta0 - previous[0])
            prior = prior.with_theta0(theta0)
            continue
        halvings = 0
        if verbose:
            print(f"[{name}] iteration {n_iter}: objective {objective:.8g}, "
                  f"gamma {prior.gamma:.4g}")
        if not (learn_theta0 or learn_prior):
            converged = True
            break
        new_theta0 = prior.theta0
        if learn_theta0:
            new_theta0 = prior.theta0 + newton_theta0_step(
                theta, prior.theta0, prior.precision, solutions.inv_sum)
        new_prior = prior.with_theta0(new_theta0)
        if learn_prior:
            new_prior = empirical_bayes_update(
                prior, theta, new_theta0, solutions, kind=kind,
                learn_gamma=learn_gamma, task_scale=task_scale,
                total_weight=total_weight, squared=squared,
            ).with_theta0(new_theta0)
        if not (_changed(new_prior.theta0, prior.theta0, tol)
                or _changed(new_prior.precision, prior.precision, tol)):
            converged = True
            break
        previous = (prior.theta0, objective)
        prior = new_prior
    if not converged:
        warnings.warn(
            f"method={name!r} did not converge in max_iter={max_iter} "
            "iterations; increase max_iter or tol.",
            ConvergenceWarning,
        )
    return ProximalFit(prior=prior, theta=theta, n_iter=n_iter,
                       converged=converged, objective=objective)
