"""Mixture and Student-t priors over the task parameters, by empirical Bayes.

``prior="mixture"`` models the task parameters as drawn from one of ``K``
Gaussian families (task clustering),

    theta_t ~ sum_k pi_k N(mu_k, V_k),       V_k diagonal (or isotropic),

and ``prior_df=nu`` makes each family a Student-t of ``nu`` degrees of
freedom, a scale mixture ``theta_t | u_t ~ N(mu_k, V_k / u_t)``, ``u_t ~
Gamma(nu/2, nu/2)``, whose EM weights ``u_t`` down-weight the tasks that do
not fit the prior (task selection). Both are fitted by EM, alternating with
exact task solves:

* every task is solved under every component (one batched kernel call per
  component: the kernels take one prior per call), giving its posterior
  mode ``theta_tk`` and the Laplace approximation of its marginal
  likelihood under the component,

      log p(D_t | k) ~ -(s_t / phi) E_tk + 1/2 log det M_k - 1/2 log det A_tk,

  with ``E_tk`` the task's inner objective less its constant (datafit plus
  ``1/2 ||theta_tk - mu_k||^2_{M_k}``), ``M_k`` the component's precision
  in the estimator's units (transfer term plus, when part of the learned
  prior, the base l2 penalty), ``A_tk`` the objective's Hessian at the mode,
  ``s_t`` the task's weight for averaged losses (else 1) and ``phi`` the
  noise variance of squared losses (else 1);
* E-step: responsibilities ``r_tk ~ pi_k p(D_t | k)``, and with ``nu`` the
  weights ``u_tk = (nu + d) / (nu + delta_tk)``, ``delta_tk`` the expected
  Mahalanobis distance of the task from the component's mean;
* M-step: ``pi_k = mean_t r_tk``, ``mu_k`` the ``r u``-weighted mean of the
  ``theta_tk``, ``V_k`` the weighted expected second moments about it (mode
  spread plus posterior covariances ``(phi / s_t) A_tk^{-1}``) over
  ``sum_t r_tk u_tk`` (the parameter-expanded EM of the Student-t), shrunk
  as :mod:`._structures` does, and ``phi`` the expected residual variance
  (rows counted with their task's ``u``). A Student-t fit starts from the
  Gaussian one.

Tasks are solved under the Gaussian components (``u = 1``): the Student-t
weights act in the M-step only, so an outlying task keeps its own fit
under the fitted prior while it no longer moves the prior.

With one component and no ``nu`` the fixed point is that of ``prior=
"diagonal"`` (or ``"isotropic"``) in :mod:`._proximal`, whose Newton step on
the mean converges to the same mean (the tasks' average).
"""

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning

from .._kernels._calls import diagonal_inverses
from .._kernels._codes import SQUARED
from ._inner import InnerSolver
from ._prior import (
    Prior,
    changed,
    mean_penalty,
    models_floor,
    noise_variance_floor,
    residual_squares,
    split_strength,
    task_scales,
    transfer_beyond_ridge,
)
from ._squarem import squarem

# a component whose expected number of tasks falls below this keeps its
# previous parameters (an empty component has none to estimate)
_EMPTY_COMPONENT = 1e-8
# n_prior_components="auto" compares K = 1 .. this many components ...
AUTO_MAX_COMPONENTS = 4
# ... with at least this many tasks per component
AUTO_TASKS_PER_COMPONENT = 5


@dataclass(frozen=True)
class PriorMixture:
    """The fitted mixture: component priors, weights, and the tasks' EM state.

    ``components`` are :class:`~._prior.Prior` (mean ``theta0``, diagonal
    transfer precision ``gamma * shape``, shared ``dispersion`` and
    ``ridge``); ``df`` the Student-t degrees of freedom, or None.
    """

    weights: np.ndarray
    components: tuple
    df: float = None

    @classmethod
    def from_arrays(cls, weights, means, precisions, state):
        """The mixture from fitted arrays; ``state`` is ``(dispersion, ridge,
        df)`` (see :meth:`state`)."""
        dispersion, ridge, df = state
        return cls(np.asarray(weights, dtype=float), tuple(
            Prior(theta0=np.asarray(m, dtype=float), shape=np.asarray(p, float),
                  gamma=1.0, dispersion=float(dispersion), ridge=ridge)
            for m, p in zip(means, precisions)), df)

    @property
    def state(self):
        """``(dispersion, ridge, df)``: plain values, for pickling."""
        first = self.components[0]
        return (float(first.dispersion), first.ridge, self.df)

    @property
    def n_components(self):
        return len(self.components)

    @property
    def means(self):
        return np.stack([c.theta0 for c in self.components])

    @property
    def precisions(self):
        return np.stack([c.precision for c in self.components])

    def spreads(self):
        """The two parts of the mixture's covariance, per component: the
        diagonal of its covariance in the loss's natural units (``phi / s``
        of the parameters'; a Student-t of ``df > 2`` degrees of freedom has
        ``df / (df - 2)`` times its scale, at ``df <= 2`` the scale stands
        for it), and its mean's deviation from the mixture's mean."""
        combined = np.stack([np.asarray(c.combined_precision)
                             for c in self.components])
        df = self.df
        tails = 1.0 if df is None or df <= 2.0 else df / (df - 2.0)
        return tails / combined, self.means - self.weights @ self.means


@dataclass
class MixtureFit:
    """What the EM loop returns."""

    mixture: PriorMixture
    theta: np.ndarray  # (T, d) the tasks' posterior means under the mixture
    responsibilities: np.ndarray  # (T, K)
    robust_weights: np.ndarray  # (T,) sum_k r_tk u_tk (ones without df)
    log_evidence: float
    n_iter: int
    converged: bool
    mean_scale: float  # the tasks' mean scale s (1 for summed losses)
    signed_transfer: bool = True  # the structure's (see _structures)

    def summary(self):
        """The single Gaussian with the mixture's mean and covariance.

        Moment matching in the model's natural units (diagonal covariances
        ``V_k = (phi / s) M_k^{-1}`` add up with the spread of the means);
        the transfer term beyond the ridge as in the components. A
        Student-t component of ``df > 2`` degrees of freedom has the
        covariance ``df / (df - 2)`` times its scale; at ``df <= 2``, where
        it has none, the scale stands for it. Its strength is its own, also
        under a fixed ``gamma`` (the components' strength): kept at
        ``gamma``, it narrowed the covariance to the components' (by the
        means' spread, and by ``df / (df - 2)``), and new tasks' predictive
        intervals with it.
        """
        mix = self.mixture
        first = mix.components[0]
        w = mix.weights
        mean = w @ mix.means
        within, deviations = mix.spreads()
        # the spread of the means is in the parameters' units; the
        # components' covariances in the estimator's (phi / s of them)
        variance = w @ (within + deviations ** 2
                        * self.mean_scale / float(first.dispersion))
        M = 1.0 / variance
        ridge = first.ridge
        # (an isotropic prior's single Gaussian keeps a positive transfer
        # term, as its components do)
        precision = transfer_beyond_ridge(M, ridge, signed=self.signed_transfer)
        strength, shape = split_strength(precision)
        return Prior(theta0=mean, shape=shape, gamma=strength,
                     dispersion=first.dispersion, ridge=ridge)


class _Setup:
    """What stays fixed over the EM iterations of one batch and problem."""

    def __init__(self, batch, problem, *, structure, learn_gamma, gamma, ridge,
                 df):
        self.structure = structure
        self.learn_gamma = learn_gamma
        self.gamma = gamma
        self.ridge = ridge
        self.df = df
        self.squared = problem.code == SQUARED
        self.d = problem.n_params
        self.task_scale = task_scales(batch, problem)
        self.mean_scale = float(self.task_scale.mean())
        self.relative_scale = self.task_scale / self.mean_scale
        self.total_weight = max(float(batch.sw.sum()), np.finfo(float).tiny)
        self.task_rows = batch.task_weights()
        self.min_dispersion = noise_variance_floor(batch.y)

    def component(self, mean, natural, dispersion):
        """The component prior with natural precision ``V^{-1}``."""
        M = dispersion / self.mean_scale * natural
        precision = transfer_beyond_ridge(
            M, self.ridge, signed=self.structure.signed_transfer)
        strength, shape = split_strength(precision)
        return Prior(theta0=np.array(mean, dtype=float), shape=shape,
                     gamma=strength if self.learn_gamma else self.gamma,
                     dispersion=dispersion, ridge=self.ridge)


@dataclass
class _Solved:
    """Every task solved under every component: stacked over components."""

    theta: np.ndarray  # (K, T, d)
    loss: np.ndarray  # (K, T)
    trace: np.ndarray  # (K, T)
    log_lik: np.ndarray  # (K, T) Laplace log marginal likelihoods
    inv_wsum: list  # per component: weighted sums of the inverse Hessians


def solve_components(solvers, mixture, theta, setup):
    """Solve every task under every component (one kernel call each).

    A first call per component finds the modes and the Hessians'
    log-determinants; once the responsibilities (and Student-t weights)
    are known, a second call from the modes (one Newton check each) sums
    the inverse Hessians with those weights. Returns the solutions and the
    E-step's ``(resp, u, log_evidence)``.
    """
    K = mixture.n_components
    T = theta.shape[1]
    out = _Solved(np.empty_like(theta), np.empty((K, T)), np.empty((K, T)),
                  np.empty((K, T)), [])
    for k, (solver, prior) in enumerate(zip(solvers, mixture.components)):
        solution = solver.solve(prior.center, prior.precision, theta[k],
                                inverse="sum", exact_inverse=True)
        out.theta[k] = solution.theta
        out.loss[k] = solution.loss
        out.log_lik[k] = laplace_log_evidence(prior, solution, setup.task_scale)
    resp, log_evidence = _responsibilities(mixture, out)
    for k, (solver, prior) in enumerate(zip(solvers, mixture.components)):
        solution = solver.solve(prior.center, prior.precision, out.theta[k],
                                inverse="posterior", exact_inverse=True,
                                inv_weight=resp[:, k] / setup.mean_scale)
        out.theta[k] = solution.theta
        out.trace[k] = solution.trace
        inv = solution.inv_wsum
        out.inv_wsum.append(np.diag(inv).copy() if inv.ndim == 2 else inv)
    u = _robust_weights(mixture, out, setup)
    if mixture.df is not None:
        # the posterior covariances enter the moments with weights r u
        for k, (solver, prior) in enumerate(zip(solvers, mixture.components)):
            inv = solver.solve(prior.center, prior.precision, out.theta[k],
                               inverse="posterior", exact_inverse=True,
                               inv_weight=resp[:, k] * u[k] / setup.mean_scale
                               ).inv_wsum
            out.inv_wsum[k] = np.diag(inv).copy() if inv.ndim == 2 else inv
    return out, resp, u, log_evidence


def laplace_log_evidence(prior, solution, task_scale):
    """Each task's Laplace log marginal likelihood under ``prior`` (up to
    terms that are the same under every prior: see the module docstring)."""
    M = np.asarray(prior.combined_precision, dtype=float)
    precision = prior.precision
    center = prior.center
    # the objective less its constant: the quadratic centred on theta0
    constant = 0.5 * center @ (precision * center) - 0.5 * prior.theta0 @ (
        M * prior.theta0)
    energy = solution.objective - constant
    return (-task_scale / prior.dispersion * energy
            + 0.5 * np.sum(np.log(M)) - 0.5 * solution.logdet)


def _responsibilities(mixture, solved):
    log_joint = np.log(mixture.weights)[:, None] + solved.log_lik
    total = logsumexp(log_joint, axis=0)
    return np.exp(log_joint - total).T, float(total.sum())


def _robust_weights(mixture, solved, setup):
    """``u_tk = (nu + d) / (nu + delta_tk)`` (ones without ``nu``)."""
    K, T, d = solved.theta.shape
    if mixture.df is None:
        return np.ones((K, T))
    u = np.empty((K, T))
    for k, prior in enumerate(mixture.components):
        # task t's natural precision P_t = (s_t / phi) M (see
        # _proximal.empirical_bayes_update); the posterior covariance's part
        # tr(P_t (phi / s_t) A_t^{-1}) = tr(M A_t^{-1}) = d - tr(H A_t^{-1})
        M = np.asarray(prior.combined_precision, dtype=float)
        dev = solved.theta[k] - prior.theta0
        mode = (setup.task_scale / prior.dispersion
                * np.einsum("tj,j,tj->t", dev, M, dev))
        spread = np.maximum(d - solved.trace[k], 0.0)
        u[k] = (mixture.df + d) / (mixture.df + mode + spread)
    return u


def _m_step(mixture, solved, resp, u, setup):
    """New weights, means, covariances and noise variance."""
    K, T, d = solved.theta.shape
    dispersion = mixture.components[0].dispersion
    if setup.squared:
        # a task the Student-t weights set aside does not set the noise
        # either: its rows count with its weight (all 1 for Gaussians)
        w = resp.T * u
        rss = np.sum(w * residual_squares(setup.task_scale, solved.loss))
        expected = rss + dispersion * np.sum(w * solved.trace)
        total = np.sum(w.sum(axis=0) * setup.task_rows)
        dispersion = max(expected / max(total, np.finfo(float).tiny),
                         setup.min_dispersion, np.finfo(float).tiny)
    counts = resp.sum(axis=0)
    weights = np.maximum(counts / T, np.finfo(float).tiny)
    weights /= weights.sum()
    components = []
    for k, old in enumerate(mixture.components):
        ru = resp[:, k] * u[k]
        if counts[k] < _EMPTY_COMPONENT or ru.sum() <= 0:
            components.append(old)
            continue
        mean = ru @ solved.theta[k]
        M = old.combined_precision
        penalty = mean_penalty(setup.ridge, counts[k] / T, M)
        if penalty is None:
            mean = mean / ru.sum()
        else:
            # the component mean under its own prior (its share of one
            # task's penalty)
            mean = M * mean / (M * ru.sum() + penalty)
        dev = solved.theta[k] - mean
        # over sum r u rather than sum r: the parameter-expanded EM of the
        # Student-t (Liu, Rubin & Wu, 1998), same fixed point, and a scale
        # that does not shrink while every weight is small
        # each task's expected second moment in the units of its own prior
        # (see _proximal.empirical_bayes_update), relative to the mean scale
        diag = (ru @ (setup.relative_scale[:, None] * dev * dev)
                + old.dispersion * solved.inv_wsum[k]) / ru.sum()
        natural = setup.structure.natural_precision_beside(
            None, diag, counts[k],
            None if setup.ridge is None
            else setup.ridge * setup.mean_scale / dispersion)
        prior = setup.component(mean, natural, dispersion)
        components.append(prior)
    return PriorMixture(weights, tuple(components), mixture.df)


class _Coordinates:
    """Unconstrained coordinates of a mixture, for SQUAREM: log weights,
    means, log precisions and (squared losses) the log noise variance."""

    def __init__(self, mixture, setup):
        self.K = mixture.n_components
        self.d = mixture.components[0].theta0.shape[0]
        self.setup = setup
        self.df = mixture.df
        self.signed = setup.structure.signed_transfer

    def encode(self, mixture):
        # the components' precisions with the base penalty: a transfer term
        # alone may be negative (see _prior.transfer_beyond_ridge); an
        # isotropic one stays positive and is extrapolated itself
        combined = np.stack([
            np.asarray(c.combined_precision if self.signed else c.precision)
            for c in mixture.components])
        parts = [np.log(mixture.weights), mixture.means.ravel(),
                 np.log(combined).ravel()]
        if self.setup.squared:
            parts.append([np.log(mixture.components[0].dispersion)])
        return np.concatenate(parts)

    def decode(self, z):
        K, d, setup = self.K, self.d, self.setup
        # an extrapolated log weight far below the others underflows: kept
        # at the M-step's floor, as its weights are
        weights = np.maximum(np.exp(z[:K] - logsumexp(z[:K])),
                             np.finfo(float).tiny)
        weights /= weights.sum()
        means = z[K:K + K * d].reshape(K, d)
        precisions = np.exp(z[K + K * d:K + 2 * K * d]).reshape(K, d)
        dispersion = (float(np.exp(z[-1])) if setup.squared
                      else 1.0)
        components = []
        for mean, combined in zip(means, precisions):
            strength, shape = split_strength(
                transfer_beyond_ridge(combined, setup.ridge) if self.signed
                else combined)
            components.append(Prior(
                theta0=mean.copy(), shape=shape,
                gamma=strength if setup.learn_gamma else setup.gamma,
                dispersion=dispersion, ridge=setup.ridge))
        return PriorMixture(weights, tuple(components), self.df)


def fit_mixture(batch, problem, mixture, setup, *, max_iter, tol, n_jobs=None,
                verbose=0):
    """EM for the mixture prior from ``mixture``, accelerated by SQUAREM.

    Each evaluation of the EM map solves every task under every component.
    A SQUAREM cycle (Varadhan & Roland, 2008) makes two EM steps,
    extrapolates along them and stabilizes with a third, falling back to
    the plain EM iterate when the extrapolation leaves a larger fixed-point
    residual. Converged when the component means and the responsibilities
    change by less than ``tol`` (relative), the tasks' modes too or the
    log evidence by less than ``tol`` per task, and the noise variance of
    squared losses by less than ``tol`` relative (``converged`` of the
    result; the caller warns). Returns a
    :class:`MixtureFit`.
    """
    K, T = mixture.n_components, batch.n_tasks
    coords = _Coordinates(mixture, setup)
    state = {"n_iter": 0, "done": False, "resp": None, "theta": np.stack(
        [np.tile(c.theta0, (T, 1)) for c in mixture.components])}
    # the components' means are weighted averages of the tasks' modes: no
    # Newton step multiplies by the sums of inverse Hessians
    solvers = [InnerSolver(batch, problem, n_jobs=n_jobs, keep_products=False)
               for _ in range(K)]

    def em_map(current):
        solved, resp, u, log_evidence = solve_components(
            solvers, current, state["theta"], setup)
        state["n_iter"] += 1
        if verbose:
            print(f"[mixture] iteration {state['n_iter']}: log evidence "
                  f"{log_evidence:.8g}, weights {np.round(current.weights, 4)}")
        proposal = _m_step(current, solved, resp, u, setup)
        # where the evidence pushes a component's precision toward infinity
        # (a family whose tasks barely differ), the modes keep creeping while
        # the evidence has stopped gaining: either ends the iterations
        # (relative to the models' size where it is below 1: the targets'
        # units are not the parameters' tolerance)
        floor = models_floor(solved.theta)
        settled = not changed(solved.theta, state["theta"], tol, floor) or (
            abs(log_evidence - state.get("log_evidence", np.inf)) < tol * T)
        # the noise variance's relative change is the one test free of the
        # targets' units: parameters of size 1e-3 move by less than an
        # absolute tol long before the fixed point
        dispersion = current.components[0].dispersion
        done = (state["resp"] is not None and settled
                and not changed(resp, state["resp"], tol)
                and not changed(proposal.means, current.means, tol, floor)
                and abs(proposal.components[0].dispersion - dispersion)
                <= tol * dispersion)
        state.update(theta=solved.theta, resp=resp, u=u, mixture=current,
                     log_evidence=log_evidence, done=done)
        return proposal

    def finished():
        return state["done"] or state["n_iter"] >= max_iter

    try:
        for solver in solvers:
            solver.__enter__()
        squarem(em_map, mixture, coords, finished)
    finally:
        for solver in solvers:
            solver.__exit__(None, None, None)
    mixture, resp, u = state["mixture"], state["resp"], state["u"]
    log_evidence = state["log_evidence"] - (
        0.5 * setup.total_weight * np.log(2 * np.pi * mixture.components[0].dispersion)
        if setup.squared else 0.0)
    return MixtureFit(mixture, np.einsum("tk,ktj->tj", resp, state["theta"]),
                      resp, np.sum(resp * u.T, axis=1), float(log_evidence),
                      state["n_iter"], bool(state["done"]), setup.mean_scale,
                      setup.structure.signed_transfer)


def initial_components(fit1, n_components, setup, random_state):
    """``K`` components from a one-component fit: k-means on its task modes.

    The modes are whitened by the fitted precision so that every parameter
    counts in units of the tasks' spread; the components start at the
    clusters' means, with the fitted covariance and the clusters' shares.
    """
    # imported here: sklearn.cluster takes a quarter of skmeta's import time
    from sklearn.cluster import KMeans

    prior = fit1.mixture.components[0]
    theta = fit1.theta
    scale = np.sqrt(np.asarray(prior.combined_precision, dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate points
        km = KMeans(n_clusters=n_components, n_init=10,
                    random_state=random_state).fit(theta * scale)
    labels = km.labels_
    counts = np.bincount(labels, minlength=n_components).astype(float)
    components = []
    for k in range(n_components):
        mean = theta[labels == k].mean(axis=0) if counts[k] else prior.theta0
        components.append(Prior(theta0=mean, shape=prior.shape, gamma=prior.gamma,
                                dispersion=prior.dispersion, ridge=prior.ridge))
    weights = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
    return PriorMixture(weights, tuple(components), fit1.mixture.df)


def n_free_parameters(n_components, structure, d):
    """Parameters of a mixture: weights, means, covariances (for BIC)."""
    return (n_components - 1) + n_components * (
        d + structure.n_hyperparameters(d))


def adapt_mixture(batch, problem, mixture, *, n_jobs=None):
    """New tasks under a fitted mixture: ``(theta, responsibilities)``.

    Each task is solved under every component; its posterior over the
    components follows from the Laplace marginal likelihoods, and its
    parameters are its posterior mean under the mixture of the Laplace
    posteriors, ``sum_k r_tk theta_tk``.
    """
    K, T = mixture.n_components, batch.n_tasks
    scale = batch.task_weights() if problem.mean_loss else np.ones(T)
    scale = np.maximum(scale, np.finfo(float).tiny)
    log_lik = np.empty((K, T))
    thetas = np.empty((K, T, problem.n_params))
    with InnerSolver(batch, problem, n_jobs=n_jobs,
                     keep_products=False) as solver:
        for k, prior in enumerate(mixture.components):
            solution = solver.solve(prior.center, prior.precision,
                                    np.tile(prior.theta0, (T, 1)),
                                    inverse="sum", exact_inverse=True)
            thetas[k] = solution.theta
            log_lik[k] = laplace_log_evidence(prior, solution, scale)
    log_joint = np.log(mixture.weights)[:, None] + log_lik
    resp = np.exp(log_joint - logsumexp(log_joint, axis=0)).T
    return np.einsum("tk,ktj->tj", resp, thetas), resp


@dataclass(frozen=True)
class MixtureSpec:
    """What the estimator asks of the prior: ``n_components`` (int or
    ``"auto"``), the Student-t ``df`` (or None), the components' ``structure``
    and whether the strength is learned (else ``gamma``)."""

    n_components: object
    df: object
    structure: object
    learn_gamma: bool
    gamma: float


def _gaussian_start(batch, problem, spec, ridge, options):
    """The Gaussian prior of ``spec.structure`` learned by the proximal
    method, where the mixture's EM starts.

    From the fixed starting prior instead, the EM's mean steps (weighted
    averages of the tasks' modes) crawl out of directions the start pins:
    a feature in units 1e-2 to 1e-5 of the others, whose coefficient is as
    many times larger, stayed near 0 for hundreds of iterations. The
    proximal method's Newton steps on the prior mean reach it; a one
    component mixture has the same fixed point, and more components start
    from its tasks' modes. A Student-t prior starts there too: far from
    the Gaussian's fit, every task looks outlying, and a prior pinning them
    all is a fixed point of the weights as well.
    """
    # imported here: the proximal method imports this module
    from ._proximal import _DEGENERATE, _degeneracy_raises, fit_proximal

    d = problem.n_params
    fixed = Prior.initial(np.zeros(d), spec.structure, spec.gamma)
    fixed = Prior(theta0=fixed.theta0, shape=fixed.shape, gamma=fixed.gamma,
                  ridge=ridge)
    try:
        # (without row-space factors: the prior mean's Newton steps then
        # take their systems' diagonals on wide tasks, which the mixture's
        # own iterations make up for)
        with InnerSolver(batch, problem, n_jobs=options["n_jobs"],
                         keep_products=False) as solver, \
                warnings.catch_warnings(), _degeneracy_raises():
            warnings.simplefilter("ignore", ConvergenceWarning)
            prior = fit_proximal(
                solver, fixed, learn_theta0=True, structure=spec.structure,
                learn_gamma=spec.learn_gamma, max_iter=options["max_iter"],
                tol=options["tol"]).prior
    except _DEGENERATE:
        # a Gaussian prior that runs away on these tasks: the mixture's own
        # EM from the fixed start
        return fixed
    return Prior(theta0=prior.theta0, shape=prior.shape, gamma=prior.gamma,
                 dispersion=prior.dispersion, ridge=ridge)


def learn_mixture(batch, problem, spec, settings, max_iter):
    """Fit the mixture prior (choosing ``K`` by BIC for ``"auto"``).

    Returns ``(fit, scores)``: the :class:`MixtureFit` and, for ``"auto"``,
    the BIC of each ``K`` compared (keys ``"mixture-K"``; smaller is better).
    """
    T, d = batch.n_tasks, problem.n_params
    # as for the Gaussian prior: the base penalty is part of a prior whose
    # strength is learned, except for wide tasks (see _proximal._Iteration)
    ridge = (problem.lam2 * problem.l2w
             if spec.learn_gamma and not diagonal_inverses(d) and problem.lam2 > 0
             else None)
    setup = _Setup(batch, problem, structure=spec.structure,
                   learn_gamma=spec.learn_gamma, gamma=spec.gamma, ridge=ridge,
                   df=spec.df)
    options = dict(max_iter=max_iter, tol=settings.tol, n_jobs=settings.n_jobs,
                   verbose=settings.verbose)
    start = _gaussian_start(batch, problem, spec, ridge, options)
    fit1 = fit_mixture(batch, problem,
                       PriorMixture(np.ones(1), (start,), spec.df), setup,
                       **options)
    if spec.n_components == "auto":
        candidates = range(1, max(1, min(AUTO_MAX_COMPONENTS,
                                         T // AUTO_TASKS_PER_COMPONENT)) + 1)
    else:
        candidates = [int(spec.n_components)]
    fits, scores = {}, {}
    for K in candidates:
        if K == 1:
            fit = fit1
        else:
            fit = fit_mixture(
                batch, problem,
                initial_components(fit1, K, setup, settings.random_state),
                setup, **options)
        fits[K] = fit
        scores[f"mixture-{K}"] = (-2.0 * fit.log_evidence + n_free_parameters(
            K, spec.structure, d) * np.log(T))
    best = min(fits, key=lambda K: scores[f"mixture-{K}"])
    if not fits[best].converged:
        # (candidates not chosen may stop unconverged: they are only compared)
        warnings.warn(
            f"the prior's EM did not converge in max_iter={max_iter} "
            "iterations; increase max_iter or tol.", ConvergenceWarning,
            stacklevel=3)
    return fits[best], scores if spec.n_components == "auto" else {}
