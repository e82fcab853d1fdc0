"""Sufficient statistics of fitted tasks for the prior, and their sums.

Empirical Bayes re-estimates the prior from sums over tasks (see
:func:`._proximal.empirical_bayes_update`): the tasks' posterior means, their
spread and their posterior covariances, their scales, and, for squared
errors, their expected residual sums of squares. :class:`TaskStatistics`
holds those sums in a size independent of the number of tasks, so that
tasks seen in earlier chunks of a stream count in later M-steps (see
:mod:`._online`) without their data or their parameters.

The spread is kept as a count, a mean and a scatter about that mean, merged
by the pairwise update of Chan, Golub & LeVeque (1979): the second moments
about the prior mean follow from them without the cancellation that raw sums
of squares would suffer where the tasks sit far from the origin.
"""

from dataclasses import dataclass, replace

import numpy as np

from ._prior import residual_squares, scaled_spread


def _merge_moments(n_a, mean_a, scatter_a, n_b, mean_b, scatter_b):
    """Count, mean and scatter of two groups together (Chan et al.)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    if np.ndim(scatter_a) == 2:
        cross = np.outer(delta, delta)
    else:
        cross = delta * delta
    return n, mean, scatter_a + scatter_b + cross * (n_a * n_b / n)


@dataclass(frozen=True)
class TaskStatistics:
    """Sums over tasks of what the empirical-Bayes M-step reads.

    Attributes
    ----------
    n_tasks : int
    mean : ndarray of shape (n_params,)
        Mean of the tasks' posterior modes ``theta_t`` (the prior mean's
        Newton step).
    scaled_mean : ndarray of shape (n_params,)
        Their mean weighted by the tasks' scales ``s_t``.
    scatter : ndarray of shape (n_params, n_params) or (n_params,)
        ``sum_t s_t (theta_t - scaled_mean)(...)^T``, or its diagonal for
        wide tasks: the spread, each task in the units of its own prior
        (see ``_proximal.empirical_bayes_update``).
    posterior : ndarray of the shape of ``scatter``, or None
        ``sum_t phi A_t^{-1}``: the tasks' Laplace posterior covariances
        (``s_t`` times each, in those units), each under the prior (and
        noise variance ``phi``) of the E-step that solved it; None when the
        prior's precision is not learned (a fixed isotropic prior needs only
        the mean).
    sum_scale : float
        ``sum_t s_t``, the tasks' scales (1, or their total weight for
        averaged losses).
    expected_rss : float
        ``sum_t (RSS_t + phi tr(H_data,t A_t^{-1}))``: the expected residual
        sum of squares (squared errors; 0 otherwise).
    total_weight : float
        Total sample weight of the tasks' rows.
    n_rows, y_mean, y_scatter
        Count, mean and scatter of the targets of those rows (the floor of
        the noise variance).
    inverse_sum : ndarray of the shape of ``scatter``, or None
        ``sum_t A_t^{-1}``, the tasks' inverse Hessians (estimator units);
        None where the prior cannot move (nothing of it is learned).
    theta0, precision, dispersion
        The prior the statistics are under: its mean, its precision ``M``
        (estimator units, the base penalty included when it counts as part
        of the prior) and the noise variance.
    """

    n_tasks: int
    mean: np.ndarray
    scaled_mean: np.ndarray
    scatter: np.ndarray
    posterior: np.ndarray
    sum_scale: float
    expected_rss: float
    total_weight: float
    n_rows: int
    y_mean: float
    y_scatter: float
    inverse_sum: np.ndarray
    theta0: np.ndarray
    precision: np.ndarray
    dispersion: float

    @classmethod
    def of(cls, solutions, prior, step):
        """The statistics of the tasks of ``solutions``, solved under
        ``prior`` by ``step`` (a ``_proximal._Iteration``)."""
        theta = solutions.theta
        T = theta.shape[0]
        scale = step.task_scale
        scaled_mean = scale @ theta / scale.sum()
        scatter = scaled_spread(theta - scaled_mean, scale,
                                step.solver.diagonal)
        posterior = None
        if step.learn_prior:
            # the step solves with inv_weight = 1 / its mean scale
            posterior = prior.dispersion * step.mean_scale * solutions.inv_wsum
        expected_rss = 0.0
        if step.squared and step.learn_prior:
            rss = float(np.sum(residual_squares(step.task_scale, solutions.loss)))
            expected_rss = rss + prior.dispersion * float(solutions.trace.sum())
        y = step.solver.batch.y
        y_mean = float(y.mean()) if y.size else 0.0
        inverse_sum = None
        if solutions.inv_blocks is not None:
            inverse_sum = solutions.inv_sum
        return cls(n_tasks=T, mean=theta.mean(axis=0), scaled_mean=scaled_mean,
                   scatter=scatter, posterior=posterior,
                   sum_scale=float(step.task_scale.sum()),
                   expected_rss=expected_rss,
                   total_weight=float(step.solver.batch.sw.sum()),
                   n_rows=int(y.size), y_mean=y_mean,
                   y_scatter=float(np.sum((y - y_mean) ** 2)),
                   inverse_sum=inverse_sum,
                   theta0=np.array(prior.theta0, dtype=float),
                   precision=np.array(prior.combined_precision, dtype=float),
                   dispersion=float(prior.dispersion))

    def swapped(self, prior):
        """These statistics carried to another prior: the tasks' Laplace
        posteriors under ``prior`` instead of the one they were computed
        under, by the Gaussian prior-swap identity.

        A task whose objective is ``L_t(theta) + 1/2 (theta - theta0)' M
        (theta - theta0)`` has its mode ``m`` where ``grad L_t(m) = -M (m -
        theta0)``; with ``L_t`` quadratic about ``m`` (Hessian ``A - M``), the
        mode under ``(theta0', M')`` is ``(A + M' - M)^{-1} (A m - M theta0 +
        M' theta0')`` and the inverse Hessian ``(A + M' - M)^{-1}``. The sums
        over tasks follow with every task's ``A_t`` replaced by their
        harmonic mean ``n (sum_t A_t^{-1})^{-1}``: exact for tasks of equal
        Hessians (squared errors on the same design), and the identity when
        the prior has not changed. The expected residuals of squared errors
        are not carried (they move with the square of the change).
        """
        if self.inverse_sum is None:
            return self
        target = np.asarray(prior.combined_precision, dtype=float)
        theta0 = np.asarray(prior.theta0, dtype=float)
        dispersion = float(prior.dispersion)
        if (np.array_equal(target, self.precision)
                and np.array_equal(theta0, self.theta0)
                and dispersion == self.dispersion):
            return self
        n = self.n_tasks
        # written with the mean inverse Hessian C (not its inverse, the mean
        # Hessian: with an l1 penalty C is singular on the coefficients no
        # task uses): (A + D)^{-1} A = (I + C D)^{-1}, (A + D)^{-1} = (I +
        # C D)^{-1} C
        C = self.inverse_sum / n
        old, new = self.precision, target
        if C.ndim == 2:
            old = old if old.ndim == 2 else np.diag(old)
            new = new if new.ndim == 2 else np.diag(new)
            shrink = np.linalg.inv(np.eye(C.shape[0]) + C @ (new - old))
            moved_inverse = shrink @ C
            pull = moved_inverse @ (new @ theta0 - old @ self.theta0)
            mean = shrink @ self.mean + pull
            scaled_mean = shrink @ self.scaled_mean + pull
            scatter = shrink @ self.scatter @ shrink.T
            inverse_sum = n * (moved_inverse + moved_inverse.T) / 2.0
            posterior = None
            if self.posterior is not None:
                carried = shrink @ self.posterior
                posterior = (dispersion / self.dispersion) * (
                    carried + carried.T) / 2.0
        else:
            shrink = 1.0 / (1.0 + C * (new - old))
            pull = C * (new * theta0 - old * self.theta0)
            mean = shrink * (self.mean + pull)
            scaled_mean = shrink * (self.scaled_mean + pull)
            scatter = shrink * shrink * self.scatter
            inverse_sum = n * shrink * C
            posterior = None
            if self.posterior is not None:
                posterior = (dispersion / self.dispersion) * shrink * \
                    self.posterior
        return replace(self, mean=mean, scaled_mean=scaled_mean,
                       scatter=scatter, posterior=posterior,
                       inverse_sum=inverse_sum, theta0=theta0.copy(),
                       precision=target.copy(), dispersion=dispersion)

    def merge(self, other):
        """The statistics of both groups of tasks together, under the prior
        of ``other`` (that of both: see :meth:`swapped`)."""
        n = self.n_tasks + other.n_tasks
        mean = self.mean + (other.mean - self.mean) * (other.n_tasks / n)
        _, scaled_mean, scatter = _merge_moments(
            self.sum_scale, self.scaled_mean, self.scatter, other.sum_scale,
            other.scaled_mean, other.scatter)
        posterior = None
        if self.posterior is not None and other.posterior is not None:
            posterior = self.posterior + other.posterior
        n_rows, y_mean, y_scatter = self.n_rows, self.y_mean, self.y_scatter
        if other.n_rows:
            n_rows, y_mean, y_scatter = _merge_moments(
                self.n_rows, self.y_mean, self.y_scatter, other.n_rows,
                other.y_mean, other.y_scatter)
        inverse_sum = None
        if self.inverse_sum is not None and other.inverse_sum is not None:
            inverse_sum = self.inverse_sum + other.inverse_sum
        return TaskStatistics(
            n_tasks=n, mean=mean, scaled_mean=scaled_mean, scatter=scatter,
            posterior=posterior,
            sum_scale=self.sum_scale + other.sum_scale,
            expected_rss=self.expected_rss + other.expected_rss,
            total_weight=self.total_weight + other.total_weight,
            n_rows=int(n_rows), y_mean=float(y_mean), y_scatter=float(y_scatter),
            inverse_sum=inverse_sum, theta0=other.theta0,
            precision=other.precision, dispersion=other.dispersion)

    def moments(self, theta0):
        """The expected second moments about ``theta0``, ``(S, diag S)``.

        ``S`` is ``sum_t s_t E[(theta_t - theta0)(theta_t - theta0)^T] /
        sum_t s_t``, each task's in the units of its own prior (see
        ``_proximal.empirical_bayes_update``); None for wide tasks (only its
        diagonal is kept).
        """
        total_scale = max(self.sum_scale, np.finfo(float).tiny)
        shift = self.scaled_mean - theta0
        posterior = 0.0 if self.posterior is None else self.posterior
        if self.scatter.ndim == 2:
            S = (self.scatter + posterior) / total_scale + np.outer(shift, shift)
            return S, np.diag(S).copy()
        return None, (self.scatter + posterior) / total_scale + shift * shift

    def noise_variance(self, prior_expected=0.0, prior_weight=0.0):
        """The M-step's noise variance of squared errors: the expected
        residual variance, above round-off of the targets; with what the
        prior adds to it (``_proximal.prior_noise_terms``)."""
        spread = self.y_scatter / self.n_rows if self.n_rows else 1.0
        floor = 1e-10 * spread if spread > 0 else 1e-300
        weight = max(self.total_weight + prior_weight, np.finfo(float).tiny)
        return max((self.expected_rss + prior_expected) / weight, floor,
                   np.finfo(float).tiny)

    @property
    def mean_scale(self):
        return self.sum_scale / self.n_tasks


_STATISTICS_FLOATS = ("sum_scale", "expected_rss", "total_weight", "y_mean",
                     "y_scatter", "dispersion")


@dataclass(frozen=True)
class OnlinePrior:
    """What ``partial_fit`` needs to move a proximal prior online.

    The current prior (with the base penalty it counts and the noise
    variance), the structure of its covariance and what is learned of it,
    and the statistics of every task that has entered it.
    """

    prior: object
    structure: object
    learn_theta0: bool
    learn_gamma: bool
    count_penalty: bool
    statistics: TaskStatistics

    def to_state(self):
        """The state as plain values (arrays, numbers, strings, None), what a
        fitted estimator stores: it persists with pickle or skops without
        types of skmeta's own."""
        prior, structure = self.prior, self.structure
        stats = {name: getattr(self.statistics, name)
                 for name in TaskStatistics.__dataclass_fields__}
        for name in _STATISTICS_FLOATS:
            stats[name] = float(stats[name])
        for name in ("n_tasks", "n_rows"):
            stats[name] = int(stats[name])
        return {
            "theta0": prior.theta0, "shape": prior.shape,
            "gamma": float(prior.gamma), "dispersion": float(prior.dispersion),
            "ridge": prior.ridge, "kind": structure.kind,
            "rank": int(structure.rank), "shared": structure.shared,
            "learn_theta0": bool(self.learn_theta0),
            "learn_gamma": bool(self.learn_gamma),
            "count_penalty": bool(self.count_penalty), "statistics": stats,
        }

    @classmethod
    def from_state(cls, state):
        """The inverse of :meth:`to_state`."""
        from ._prior import Prior
        from ._structures import Structure

        prior = Prior(theta0=state["theta0"], shape=state["shape"],
                      gamma=state["gamma"], dispersion=state["dispersion"],
                      ridge=state["ridge"])
        structure = Structure(state["kind"], rank=state["rank"],
                              shared=state["shared"])
        stats = state["statistics"]
        if "scaled_mean" not in stats:
            # saved by an earlier skmeta, before the moments were taken in each
            # task's units: its scatter and posterior sum were in those of
            # a task of the mean scale (exact for tasks of equal scales)
            scale = stats["sum_scale"] / max(stats["n_tasks"], 1)
            stats = dict(stats, scaled_mean=stats["mean"],
                         scatter=scale * stats["scatter"],
                         posterior=None if stats["posterior"] is None
                         else scale * stats["posterior"])
        return cls(prior=prior, structure=structure,
                   learn_theta0=state["learn_theta0"],
                   learn_gamma=state["learn_gamma"],
                   count_penalty=state["count_penalty"],
                   statistics=TaskStatistics(**stats))
