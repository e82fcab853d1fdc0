"""Online empirical Bayes: the proximal prior learned from a stream of tasks.

``partial_fit`` receives the tasks in chunks. Each chunk moves the prior
``(theta0, Lambda, gamma, phi)`` toward where a batch fit on all the tasks
seen so far would put it, without their data: by *incremental EM* in the
sense of Neal & Hinton (1998, "A view of the EM algorithm that justifies
incremental, sparse, and other variants").

The M-step of empirical Bayes reads the tasks only through sums (see
:class:`._statistics.TaskStatistics`): their posterior modes' count, mean
and scatter, their Laplace posterior covariances and inverse Hessians, their
scales and expected residuals. Neal & Hinton's free energy ``F(q_1..q_T,
Phi)`` does not decrease under any step that re-estimates some tasks'
posteriors ``q_t`` (a partial E-step) followed by the M-step on sums in
which the other tasks enter with the statistics of their last E-step. Here
each task's exact E-step is made while its chunk is at hand:

1. the chunk's tasks are solved under the current prior (their E-step);
2. the earlier tasks' statistics are carried to the current prior by the
   Gaussian prior-swap identity (:meth:`TaskStatistics.swapped`: each
   task's Laplace posterior re-centred and re-scaled for the new prior,
   with the tasks' Hessians replaced by their harmonic mean, so that the
   sums suffice), an approximate E-step for them that costs ``O(d^3)``
   whatever their number;
3. the M-step reads the sums of both;
4. 1 to 3 alternate (accelerated by SQUAREM, as in the batch fit) until the
   prior and the chunk's tasks stop moving: the chunk's tasks are then the
   exact posterior modes under the updated prior;
5. the chunk's statistics join the running sums, and its data are dropped.

Without step 2 (the earlier tasks frozen at the E-steps of their time: plain
single-pass incremental EM), the prior lags where each task says little
about it: a chunk of ``n`` tasks after ``N`` moves the estimate by only a
fraction of ``n / N`` of the way to the fixed point, so the first chunks'
priors, learned from few tasks, persist (7% off the batch fit's precision
for twenty chunks of 200 logistic tasks of 50 rows, against 1% with the
swap; see ``benchmarks/bench_streaming.py``). The swap is the identity when
the prior has not changed, and exact for tasks of equal Hessians (squared
errors on a common design); the earlier tasks' expected residuals of squared
errors (the noise variance's statistics) stay as computed. The statistics
take ``O(d^2)`` memory (``O(d)`` for wide tasks) whatever the number of
tasks.

The prior mean moves by Newton steps on the reduced objective, as in the
batch fit (see :func:`._proximal.newton_mean_step`), the curvature summing
every task's inverse Hessian. With a fixed isotropic prior (a number
``gamma``) only the mean is learned, and the step is halved where the
chunk's objective plus the earlier tasks' (quadratic, under the swap)
increased.
"""

import warnings
from dataclasses import replace

import numpy as np
from scipy import linalg
from sklearn.exceptions import ConvergenceWarning

from ._inner import InnerSolver
from ._prior import changed, models_floor
from ._proximal import (
    _empirical_bayes,
    _Iteration,
    backtracked,
    newton_mean_step,
    prior_from_moments,
    prior_noise_terms,
    raise_if_degenerate,
)
from ._statistics import TaskStatistics


class _OnlineIteration(_Iteration):
    """An outer iteration over one chunk whose E-step also carries ``past``,
    the statistics of the tasks of earlier chunks, to the current prior."""

    def __init__(self, solver, online):
        super().__init__(solver, learn_theta0=online.learn_theta0,
                         structure=online.structure,
                         learn_gamma=online.learn_gamma,
                         count_penalty=online.count_penalty)
        self.past = online.statistics
        # the M-step's mean scale is that of every task seen; the EM
        # acceleration's coordinates decode with the same
        past = self.past
        self.mean_scale = ((past.sum_scale + float(self.task_scale.sum()))
                           / (past.n_tasks + self.n_tasks))

    def propose(self, prior, solutions):
        past = self.past.swapped(prior)
        total = past.merge(TaskStatistics.of(solutions, prior, self))
        theta0 = prior.theta0
        if self.learn_theta0:
            # every task's mode responds to theta0, the earlier ones through
            # the prior swap: the curvature sums all inverse Hessians
            inv_sum = solutions.inv_sum if total.inverse_sum is None \
                else total.inverse_sum
            times = solutions.inverse_sum_times
            if times is not None and past.inverse_sum is not None:
                def times(v, chunk=times, earlier=past.inverse_sum):
                    return chunk(v) + earlier * v
            theta0 = theta0 + newton_mean_step(
                total.mean - theta0, total.n_tasks, prior.combined_precision,
                inv_sum, times, theta0=theta0,
                mean_penalty=self.mean_prior(prior))
        if not self.learn_prior:
            return prior.with_theta0(theta0)
        moments, diag = total.moments(theta0)
        dispersion = prior.dispersion
        if self.squared:
            dispersion = total.noise_variance(*prior_noise_terms(
                prior.with_theta0(theta0), moments, diag, total.n_tasks,
                structure=self.structure, ridge=self.ridge,
                mean_scale=self.mean_scale, mean_held=self.learn_theta0))
        return prior_from_moments(
            prior.with_theta0(theta0), moments, diag, total.n_tasks, dispersion,
            self.mean_scale, structure=self.structure,
            learn_gamma=self.learn_gamma, ridge=self.ridge)

    def past_objective(self, theta0):
        """The earlier tasks' part of the reduced objective ``F(theta0)``
        under a fixed precision ``M``, up to a constant: the integral of its
        gradient ``n M (theta0 - mean(theta0))``, their modes' mean moving
        with ``theta0`` as :meth:`TaskStatistics.swapped` carries it."""
        past = self.past
        M = past.precision
        M = M if M.ndim == 2 else np.diag(M)
        curvature = M
        if past.inverse_sum is not None:
            inverse = past.inverse_sum if past.inverse_sum.ndim == 2 \
                else np.diag(past.inverse_sum)
            curvature = M - M @ (inverse / past.n_tasks) @ M
        x = theta0 - past.theta0
        pull = M @ (past.mean - past.theta0)
        return past.n_tasks * float(0.5 * x @ curvature @ x - pull @ x)


def _fixed_prior_online(step, prior, theta, *, max_iter, tol):
    """Newton on ``theta0`` for a fixed precision, halved where the chunk's
    objective plus the earlier tasks' transfer terms increased."""
    previous = None  # (theta0, objective) of the last accepted iterate
    halvings = 0
    for n_iter in range(1, max_iter + 1):
        solutions = step.solve(prior, theta)
        theta = solutions.theta
        objective = float(solutions.objective.sum()) + step.past_objective(
            prior.theta0)
        halved = backtracked(prior, objective, previous, halvings)
        if halved is not None:
            halvings += 1
            prior = halved
            continue
        halvings = 0
        if not step.learn_theta0:
            return prior, solutions, n_iter, True
        proposal = step.propose(prior, solutions)
        if not changed(proposal.theta0, prior.theta0, tol,
                        models_floor(theta)):
            return prior, solutions, n_iter, True
        previous = (prior.theta0, objective)
        prior = proposal
    return prior, solutions, max_iter, False


def update_online(batch, problem, online, *, max_iter, tol, n_jobs=None,
                  verbose=0, name="proximal"):
    """Move the prior of ``online`` (an :class:`OnlinePrior`) by the tasks
    of ``batch``, a chunk of tasks it has not seen.

    Returns ``(online, theta, n_iter)``: the updated state (prior and
    statistics, the chunk's included), the chunk's task parameters under the
    updated prior, and the evaluations made.
    """
    with InnerSolver(batch, problem, n_jobs=n_jobs) as solver:
        step = _OnlineIteration(solver, online)
        prior = online.prior
        theta = np.tile(prior.theta0, (batch.n_tasks, 1))
        try:
            with warnings.catch_warnings():
                # a run-away may show as overflow first; it is handled below
                warnings.simplefilter("ignore", RuntimeWarning)
                if step.learn_prior:
                    fit = _empirical_bayes(step, prior, theta,
                                           max_iter=max_iter, tol=tol,
                                           verbose=verbose, name=name)
                    if step.learn_gamma:
                        # as in a batch fit, a run-away need not overflow on
                        # the way; but the prior mean is mostly the earlier
                        # chunks', which the chunk's tasks may fit worse than
                        # all-zero parameters under a strong prior
                        raise_if_degenerate(step, fit, against_zero=False)
                    prior, solutions = fit.prior, fit.solutions
                    n_iter, converged = fit.n_iter, fit.converged
                else:
                    prior, solutions, n_iter, converged = _fixed_prior_online(
                        step, prior, theta, max_iter=max_iter, tol=tol)
            if not (np.all(np.isfinite(solutions.theta))
                    and np.all(np.isfinite(prior.precision))
                    and np.all(np.isfinite(prior.theta0))):
                raise FloatingPointError("the prior ran away")
        except (FloatingPointError, linalg.LinAlgError):
            # Empirical Bayes ran away on this chunk (as a batch fit can, on
            # tasks a few rows cannot pin down): its tasks still enter, by an
            # E-step under the current prior without the M-step -- a partial
            # step of incremental EM -- and the prior stays where it was.
            warnings.warn(
                f"partial_fit (method={name!r}): the prior could not be moved "
                "by this chunk (empirical Bayes degenerates on its tasks); it "
                "is kept as it was, and the chunk's tasks are fitted under it "
                "and counted in its statistics.", ConvergenceWarning,
                stacklevel=3)
            prior = online.prior
            solutions = step.solve(prior, theta)
            n_iter, converged = 1, True
        if not converged:
            warnings.warn(
                f"partial_fit (method={name!r}) did not converge in "
                f"max_iter={max_iter} iterations on this chunk; increase "
                "max_iter or tol.", ConvergenceWarning, stacklevel=3)
        statistics = online.statistics.swapped(prior).merge(
            TaskStatistics.of(solutions, prior, step))
    return replace(online, prior=prior, statistics=statistics), \
        solutions.theta, n_iter



