"""Online empirical Bayes: the proximal prior learned from a stream of tasks.

``partial_fit`` receives the tasks in chunks. Each chunk moves the prior
``(theta0, Lambda, gamma, phi)`` as a batch fit on all tasks seen so far
would, without their data: by *incremental EM* in the sense of Neal & Hinton
(1998, "A view of the EM algorithm that justifies incremental, sparse, and
other variants").

The M-step of empirical Bayes reads the tasks only through sums (see
:class:`._statistics.TaskStatistics`): their posterior modes' count, mean
and scatter, their Laplace posterior covariances, their scales and expected
residuals. Neal & Hinton's free energy ``F(q_1..q_T, Phi)`` is increased by
any step that re-estimates some tasks' posteriors ``q_t`` (a partial E-step)
followed by the M-step on the sums in which the other tasks enter with the
statistics of their last E-step. Here each task is visited once, while its
chunk is at hand:

1. the chunk's tasks are solved under the current prior (their E-step);
2. the M-step reads the running sums of all earlier tasks -- frozen at the
   values their own E-steps gave -- plus the chunk's;
3. 1 and 2 alternate (accelerated by SQUAREM, as in the batch fit) until the
   prior and the chunk's tasks stop moving: the chunk's tasks are then the
   exact posterior modes under the updated prior, and the prior the M-step
   of all the statistics;
4. the chunk's statistics are added to the running sums, and its data
   dropped.

Each such step increases ``F``, so the stream converges as incremental EM
does; the prior after the last chunk differs from the batch fit on the same
tasks only by the earlier tasks' posteriors having been computed under the
priors of their time, a difference that shrinks as the prior settles (each
chunk of ``n`` tasks after ``N`` moves it by ``O(n / N)``). Re-solving the
earlier tasks would remove it, at the price of keeping their data, which is
what streaming avoids. The statistics take ``O(d^2)`` memory (``O(d)`` for
wide tasks) whatever the number of tasks.

The prior mean moves by Newton steps on the reduced objective, as in the
batch fit (see :func:`._proximal.newton_mean_step`): the earlier tasks are
frozen and only the chunk's respond to ``theta0``, so the curvature sums the
chunk's inverse Hessians. With a fixed isotropic prior (a number ``gamma``)
only the mean is learned, and the step is guarded by halving on the
chunk's objective plus the earlier tasks' (quadratic) transfer terms.
"""

import warnings
from dataclasses import replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._inner import InnerSolver
from ._proximal import (
    _MAX_HALVINGS,
    _changed,
    _empirical_bayes,
    _Iteration,
    newton_mean_step,
    prior_from_moments,
)
from ._statistics import TaskStatistics


class _OnlineIteration(_Iteration):
    """An outer iteration over one chunk whose M-step also reads ``past``,
    the statistics of the tasks of earlier chunks."""

    def __init__(self, solver, online):
        super().__init__(solver, learn_theta0=online.learn_theta0,
                         structure=online.structure,
                         learn_gamma=online.learn_gamma,
                         count_penalty=online.count_penalty)
        self.past = online.statistics

    def propose(self, prior, solutions):
        total = self.past.merge(TaskStatistics.of(solutions, prior, self))
        theta0 = prior.theta0
        if self.learn_theta0:
            theta0 = theta0 + newton_mean_step(
                total.mean - theta0, total.n_tasks, prior.combined_precision,
                solutions.inv_sum, solutions.inverse_sum_times)
        if not self.learn_prior:
            return prior.with_theta0(theta0)
        moments, diag = total.moments(theta0)
        dispersion = total.dispersion() if self.squared else prior.dispersion
        return prior_from_moments(
            prior.with_theta0(theta0), moments, diag, total.n_tasks, dispersion,
            total.mean_scale, structure=self.structure,
            learn_gamma=self.learn_gamma, ridge=self.ridge)

    def past_transfer(self, prior):
        """The earlier tasks' transfer terms as functions of ``theta0`` (up
        to a constant): ``n/2 (mean - theta0)' Pi (mean - theta0)``."""
        shift = self.past.mean - prior.theta0
        precision = prior.precision
        quadratic = shift @ (precision @ shift if precision.ndim == 2
                             else precision * shift)
        return 0.5 * self.past.n_tasks * float(quadratic)


def _fixed_prior_online(step, prior, theta, *, max_iter, tol):
    """Newton on ``theta0`` for a fixed precision, halved where the chunk's
    objective plus the earlier tasks' transfer terms increased."""
    previous = None  # (theta0, objective) of the last accepted iterate
    halvings = 0
    for n_iter in range(1, max_iter + 1):
        solutions = step.solve(prior, theta)
        theta = solutions.theta
        objective = float(solutions.objective.sum()) + step.past_transfer(prior)
        if (previous is not None and halvings < _MAX_HALVINGS
                and objective > previous[1] + 1e-12 * abs(previous[1])):
            halvings += 1
            prior = prior.with_theta0(previous[0]
                                      + 0.5 * (prior.theta0 - previous[0]))
            continue
        halvings = 0
        if not step.learn_theta0:
            return prior, solutions, n_iter, True
        proposal = step.propose(prior, solutions)
        if not _changed(proposal.theta0, prior.theta0, tol):
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
        theta = np.tile(prior.center, (batch.n_tasks, 1))
        if step.learn_prior:
            fit = _empirical_bayes(step, prior, theta, max_iter=max_iter,
                                   tol=tol, verbose=verbose, name=name)
            prior, solutions = fit.prior, fit.solutions
            n_iter, converged = fit.n_iter, fit.converged
        else:
            prior, solutions, n_iter, converged = _fixed_prior_online(
                step, prior, theta, max_iter=max_iter, tol=tol)
        if not converged:
            warnings.warn(
                f"partial_fit (method={name!r}) did not converge in "
                f"max_iter={max_iter} iterations on this chunk; increase "
                "max_iter or tol.", ConvergenceWarning, stacklevel=3)
        statistics = online.statistics.merge(
            TaskStatistics.of(solutions, prior, step))
    return replace(online, prior=prior, statistics=statistics), \
        solutions.theta, n_iter



