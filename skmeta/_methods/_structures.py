"""Shapes of the prior covariance of the task parameters, and their M-steps.

Empirical Bayes models the task parameters as ``theta_t ~ N(theta0, Sigma)``.
A structure says what ``Sigma`` may be:

* ``"isotropic"``: ``s^2 I``;
* ``"diagonal"``: ``diag(s_j^2)``;
* ``"full"``: any covariance;
* ``"lowrank"``: ``F F^T + Psi``, ``F`` of rank ``q``, ``Psi`` diagonal (a
  factor model of the tasks' differences: they vary along a few
  directions, plus independent noise);

each optionally with *shared* coefficients, which do not vary across tasks
(a mixed model's fixed effects; the others are its random effects): their
precision is held at ``SHARED_PRECISION_RATIO`` times the largest of the
random ones, which pins them to ``theta0`` in every task.

``"pooled"`` is the structure without random effects: every task is the
base estimator fitted to all tasks' rows at once (``_proximal.pooled_model``),
pinned there by a fixed precision (``_proximal.pinning_strength``). It has
no M-step: nothing about it is learned but its mean.

Given the expected second moments ``S = mean_t E[(theta_t - theta0)(...)^T]``
(the E-step), ``natural_precision`` is the M-step: the ``Sigma^{-1}`` of the
structure that maximizes the expected complete log-likelihood, under a weak
conjugate hyperprior worth one task that shrinks toward the isotropic
covariance (without it, directions in which the tasks do not vary collapse
to zero variance: the maximum of the evidence is on the boundary).
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize

SHARED_PRECISION_RATIO = 1e6
_HYPERPRIOR_TASKS = 1.0
# the factor model's M-step is solved to its optimum (see factor_precision);
# from the previous M-step's uniquenesses it takes a few iterations
_FACTOR_MAX_ITER = 500
_FACTOR_FTOL = 1e-12
_FACTOR_GTOL = 1e-6
# scoring steps tried from the last M-step's optimum before L-BFGS-B
_FACTOR_SCORING_STEPS = 10
# the smallest uniqueness, relative to its coefficient's variance
_FACTOR_FLOOR = 1e-8

KINDS = ("isotropic", "diagonal", "full", "lowrank", "pooled")


@dataclass(frozen=True)
class Structure:
    """A shape of the prior covariance: ``kind``, ``rank`` (lowrank), ``shared``.

    ``shared`` is None (every coefficient varies across tasks) or a boolean
    mask over the parameters, True for the shared ones.
    """

    kind: str
    rank: int = 0
    shared: np.ndarray = None
    #: the last factor model fitted (lowrank): the next M-step starts from
    #: its uniquenesses, a few iterations from its optimum
    warm: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self):
        """How the structure is reported (``prior_kind_``)."""
        name = f"lowrank-{self.rank}" if self.kind == "lowrank" else self.kind
        if self.shared is not None and self.kind != "pooled":
            name += f" on {int(np.sum(~self.shared))} random effects"
        return name

    @property
    def full_precision(self):
        """Whether the precision is a matrix (else a vector: its diagonal)."""
        return self.kind in ("full", "lowrank")

    @property
    def signed_transfer(self):
        """Whether the transfer term beside a base penalty may be negative
        (see ``_prior.transfer_beyond_ridge``): not an isotropic one, which
        also covers the coefficients the penalty leaves free."""
        return self.kind != "isotropic"

    def n_varying(self, d):
        """How many of the ``d`` parameters vary across tasks."""
        return int(np.sum(self.varying(d)))

    def n_hyperparameters(self, d):
        """Free parameters of ``Sigma`` (the prior mean's excluded)."""
        r = self.n_varying(d)
        if self.kind == "pooled":
            return 0
        if self.kind == "isotropic":
            return 1
        if self.kind == "diagonal":
            return r
        if self.kind == "full":
            return r * (r + 1) // 2
        q = self.rank
        return r * q + r - q * (q - 1) // 2

    def initial_shape(self, d):
        """The prior's shape before anything is learned: identity on the
        random effects, shared ones held."""
        shape = np.ones(d)
        if self.shared is not None:
            shape = np.where(self.shared, SHARED_PRECISION_RATIO, 1.0)
        return np.diag(shape) if self.full_precision else shape

    def natural_precision(self, moments, diag, n_tasks):
        """The M-step's ``Sigma^{-1}``: a ``(d,)`` diagonal or ``(d, d)`` matrix.

        ``moments`` is ``S`` (``d x d``), or None when only its diagonal
        ``diag`` is known (wide tasks; then the structure may not be full).
        """
        d = diag.shape[0]
        random = self.varying(d)
        floor = 1e-12 * max(float(diag[random].mean()), np.finfo(float).tiny)
        level = max(float(diag[random].mean()), floor)
        shrink = _HYPERPRIOR_TASKS / (n_tasks + _HYPERPRIOR_TASKS)
        if self.kind == "isotropic":
            natural = np.full(d, 1.0 / level)
        elif self.kind == "diagonal":
            natural = 1.0 / np.maximum((1.0 - shrink) * diag + shrink * level,
                                       floor)
        else:
            if moments is None:
                raise ValueError(f"a {self.kind} prior needs full second moments")
            sub = moments[np.ix_(random, random)]
            sub = (1.0 - shrink) * sub + shrink * level * np.eye(sub.shape[0])
            if self.kind == "full":
                inverse = linalg.inv(sub, check_finite=False)
            else:
                inverse, self.warm["factors"] = factor_precision(
                    sub, self.rank, self.warm.get("factors"))
            return self._embedded(inverse, random)
        return self._shared_held(natural, random)

    def _shared_held(self, natural, random):
        """The diagonal ``natural`` with the shared coefficients' entries at
        ``SHARED_PRECISION_RATIO`` times the random effects' largest."""
        if self.shared is None:
            return natural
        top = float(natural[random].max())
        return np.where(self.shared, SHARED_PRECISION_RATIO * top, natural)

    def natural_precision_beside(self, moments, diag, n_tasks, penalty):
        """:meth:`natural_precision` of a prior whose tasks' precision also
        holds the base estimator's penalty ``penalty`` (a diagonal precision
        in the units of ``diag``, or None): where the structure is isotropic,
        that of the transfer term beside it (:meth:`isotropic_beside`)."""
        if (self.kind == "isotropic" and penalty is not None
                and np.any(penalty > 0)):
            return self.isotropic_beside(diag, penalty)
        return self.natural_precision(moments, diag, n_tasks)

    def isotropic_beside(self, diag, penalty):
        """The M-step's ``Sigma^{-1}`` of an isotropic transfer term beside the
        base estimator's penalty ``penalty`` (a diagonal precision, in the
        same natural units as ``diag``).

        The tasks' precision is ``pi I + P`` on the coefficients that vary:
        EM's ``pi`` maximizes ``-tr((pi I + P) S) / 2 + log det(pi I + P) / 2``,
        the root of ``sum_j 1 / (pi + P_j) = sum_j S_jj``. (Fitting ``pi I``
        to the moments and taking the penalty off afterwards, as for the
        other structures, averaged the small spread of the coefficients the
        penalty holds into the level of those it does not: with
        ``Ridge(alpha=20)`` the unpenalized intercept's variance came out at
        0.12-0.14 where the tasks' was 0.6-1.0, 45 nats of evidence below
        the family's maximum, and the transfer term was not isotropic.)
        """
        d = diag.shape[0]
        random = self.varying(d)
        P = penalty[random]
        target = float(diag[random].sum())
        if not (np.isfinite(target) and target > 0):
            return self.natural_precision(None, diag, 1)

        def excess(pi):
            return float(np.sum(1.0 / (pi + P))) - target

        # sum_j 1 / (pi + P_j) <= n / pi: the root lies below n / target
        high = 2.0 * len(P) / target
        if np.all(P > 0) and excess(0.0) <= 0:
            pi = 0.0  # the penalty alone is tighter than the spread
        else:
            low = high
            while excess(low) <= 0:
                low *= 1e-3
            pi = optimize.brentq(excess, low, high, xtol=1e-300, rtol=1e-14)
        return self._shared_held(pi + penalty, random)

    def natural_from_factors(self, factors, d):
        """The ``(d, d)`` natural precision of a low-rank prior whose random
        effects' covariance is the factor model ``factors = (F, psi)``."""
        return self._embedded(_woodbury_inverse(*factors),
                              self.varying(d))

    def varying(self, d):
        """The mask of the ``d`` parameters that vary across tasks."""
        if self.kind == "pooled":
            return np.zeros(d, dtype=bool)
        return (np.ones(d, dtype=bool) if self.shared is None
                else ~np.asarray(self.shared))

    def _embedded(self, inverse, random):
        """The random effects' precision ``inverse`` within ``d x d``, the
        shared coefficients' held at ``SHARED_PRECISION_RATIO`` times its
        largest diagonal."""
        d = random.shape[0]
        natural = np.zeros((d, d))
        natural[np.ix_(random, random)] = (inverse + inverse.T) / 2.0
        if self.shared is not None:
            top = float(np.max(np.diag(inverse)))
            natural[self.shared, self.shared] = SHARED_PRECISION_RATIO * top
        return natural


def factor_precision(S, rank, start=None):
    """``(F F^T + Psi)^{-1}`` for the factor model of rank ``rank`` fitted to
    ``S``, and the factors ``(F, psi)``.

    Maximum likelihood of the factor model for a positive definite
    covariance ``S`` (the hyperprior's shrinkage makes the M-step's so). For
    given uniquenesses the best ``F`` is in closed form (Joreskog, 1967):
    with ``e_i, w_i`` the eigenpairs of ``Psi^{-1/2} S Psi^{-1/2}``, ``F =
    Psi^{1/2} [w_i sqrt(max(e_i - 1, 0))]`` over the ``rank`` largest, and
    what is left of the negative log-likelihood is a function of the
    ``e_i`` (:func:`_profile`). That profile is minimized over ``log psi``
    by L-BFGS-B (as R's ``factanal`` does), each ``psi_j`` between ``1e-8
    S_jj`` and ``S_jj``: from ``start``, the factors of a nearby ``S`` (the
    last M-step's, which the EM iterations follow), or else from Joreskog's
    ``psi_j = (1 - q / 2d) / (S^{-1})_jj`` and from the probabilistic PCA
    noise level (Tipping & Bishop), keeping the better, as the likelihood
    has local optima. The inverse by the Woodbury identity.

    Maximized, rather than improved by a few of Rubin & Thayer's EM
    iterations: that EM converges slowly wherever a uniqueness is small,
    and the outer empirical Bayes then crept to ``max_iter``, or stopped
    where its steps had become small rather than at its fixed point.
    """
    d = S.shape[0]
    q = min(rank, d - 1)
    variances = np.diag(S)
    warm = start is not None and start[0].shape == (d, q)
    if warm:
        starts = [start[1]]
    else:
        # Joreskog's start is scale-equivariant: coefficients of different
        # magnitudes start alike
        inverse_diagonal = np.diag(linalg.inv(S, check_finite=False))
        tail = np.linalg.eigvalsh(S)[:d - q]
        starts = [(1.0 - 0.5 * q / d) / inverse_diagonal,
                  np.full(d, float(tail.mean()))]
    lower = np.log(_FACTOR_FLOOR * variances)
    upper = np.log(variances)
    x = None
    if warm:
        x = _scoring_polish(S, q, np.clip(np.log(starts[0]), lower, upper),
                            lower, upper)
    if x is None:
        x = min(
            (optimize.minimize(
                _profile, np.clip(np.log(psi), lower, upper), args=(S, q),
                jac=True, method="L-BFGS-B", bounds=np.c_[lower, upper],
                options=dict(maxiter=_FACTOR_MAX_ITER, ftol=_FACTOR_FTOL,
                             gtol=_FACTOR_GTOL))
             for psi in starts), key=lambda result: result.fun).x
    psi = np.exp(x)
    F = _profile_and_eigenvectors(x, S, q)[3]
    # an eigenvector's sign is arbitrary: keep each factor's of the last
    # M-step (the EM acceleration extrapolates F), else the largest entry
    # positive
    signs = (np.sum(start[0] * F, axis=0) if warm
             else F[np.argmax(np.abs(F), axis=0), np.arange(q)])
    F = F * np.where(signs < 0, -1.0, 1.0)
    return _woodbury_inverse(F, psi), (F, psi)


def _scoring_polish(S, q, x, lower, upper):
    """A few Fisher-scoring steps on :func:`_profile` from ``x``, the last
    M-step's optimum, or None if they do not converge.

    The expected Hessian in ``log psi`` is ``(W W^T)^2`` elementwise, ``W``
    the eigenvectors of the ``d - q`` smallest eigenvalues of ``Psi^{-1/2}
    S Psi^{-1/2}`` (Joreskog, 1967); at the optimum it differs from the
    Hessian only by the model's misfit of ``S``, so from a nearby start each
    step divides the gradient by about five (measured) at a tenth of the
    cost of L-BFGS-B's iterations. Coordinates held at a bound by their
    gradient stay there; a step that increases the profile gives up (the
    caller then runs L-BFGS-B).
    """
    value = None
    k = S.shape[0] - q
    for _ in range(_FACTOR_SCORING_STEPS + 1):
        trial_value, gradient, V, _ = _profile_and_eigenvectors(x, S, q)
        if value is not None and trial_value > value:
            return None
        value = trial_value
        free = ~(((x <= lower) & (gradient > 0))
                 | ((x >= upper) & (gradient < 0)))
        if not np.any(free) or np.max(np.abs(gradient[free])) <= _FACTOR_GTOL:
            return x
        W = V[free, :k]
        hessian = (W @ W.T) ** 2
        hessian[np.diag_indices_from(hessian)] += 1e-10
        step = np.zeros_like(x)
        step[free] = -linalg.solve(hessian, gradient[free], assume_a="pos",
                                   check_finite=False)
        x = np.clip(x + step, lower, upper)
    return None


def _woodbury_inverse(F, psi):
    """``(F F^T + diag(psi))^{-1}`` by the Woodbury identity."""
    scaled = F / psi[:, None]
    inner = np.eye(F.shape[1]) + F.T @ scaled
    correction = scaled @ linalg.solve(inner, scaled.T, assume_a="pos",
                                       check_finite=False)
    return np.diag(1.0 / psi) - correction


def _profile(log_psi, S, q):
    """The factor model's negative log-likelihood (up to a constant) at its
    best factors for ``Psi = exp(log_psi)``, and its gradient in ``log_psi``
    (see :func:`_profile_and_eigenvectors`)."""
    return _profile_and_eigenvectors(log_psi, S, q)[:2]


def _profile_and_eigenvectors(log_psi, S, q):
    """:func:`_profile`, the eigenvectors of ``Psi^{-1/2} S Psi^{-1/2}``
    (columns in ascending order of their eigenvalues) and the best factors
    ``F`` (largest first).

    With ``e_i`` the eigenvalues, the profile is ``sum_i (e_i - log e_i)``
    over the eigenvalues the factors leave (all but the ``q`` largest, and
    those of them below 1, which get no factor) plus 1 for each one they
    take. (Summed from all eigenvalues less the leading ones, it would
    cancel where a uniqueness is near zero and its eigenvalue huge.) The
    gradient is ``(Sigma - S)_jj / psi_j``, ``Sigma = F F^T + Psi``: the
    terms in ``F`` vanish, ``F`` being optimal.
    """
    psi = np.exp(log_psi)
    root = np.sqrt(psi)
    e, V = np.linalg.eigh(S / root[:, None] / root[None, :])
    k = e.shape[0] - q
    left = np.r_[e[:k], np.minimum(e[k:], 1.0)]
    value = float(np.sum(left - np.log(left)))
    top = V[:, k:] * np.sqrt(np.maximum(e[k:] - 1.0, 0.0))
    gradient = np.einsum("ij,ij->i", top, top) + 1.0 - np.diag(S) / psi
    F = (root[:, None] * V[:, k:][:, ::-1]
         * np.sqrt(np.maximum(e[k:][::-1] - 1.0, 0.0)))
    return value, gradient, V, F
