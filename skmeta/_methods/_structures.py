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

Given the expected second moments ``S = mean_t E[(theta_t - theta0)(...)^T]``
(the E-step), ``natural_precision`` is the M-step: the ``Sigma^{-1}`` of the
structure that maximizes the expected complete log-likelihood, under a weak
conjugate hyperprior worth one task that shrinks toward the isotropic
covariance (without it, directions in which the tasks do not vary collapse
to zero variance: the maximum of the evidence is on the boundary).
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

SHARED_PRECISION_RATIO = 1e6
_HYPERPRIOR_TASKS = 1.0
_FACTOR_ITERATIONS = 200
# from the factors of the previous M-step, a few EM iterations per M-step: the
# outer iterations carry the factor model along (a generalized EM step, which
# still increases the evidence) instead of refitting it to 1e-10 every time
_FACTOR_WARM_ITERATIONS = 10
_FACTOR_TOL = 1e-10

KINDS = ("isotropic", "diagonal", "full", "lowrank")


@dataclass(frozen=True)
class Structure:
    """A shape of the prior covariance: ``kind``, ``rank`` (lowrank), ``shared``.

    ``shared`` is None (every coefficient varies across tasks) or a boolean
    mask over the parameters, True for the shared ones.
    """

    kind: str
    rank: int = 0
    shared: np.ndarray = None
    #: the last factor model fitted (lowrank): the next M-step starts there,
    #: a few EM iterations from its optimum instead of a few hundred
    warm: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self):
        """How the structure is reported (``prior_kind_``)."""
        name = f"lowrank-{self.rank}" if self.kind == "lowrank" else self.kind
        if self.shared is not None:
            name += f" on {int(np.sum(~self.shared))} random effects"
        return name

    @property
    def full_precision(self):
        """Whether the precision is a matrix (else a vector: its diagonal)."""
        return self.kind in ("full", "lowrank")

    def n_hyperparameters(self, d):
        """Free parameters of ``Sigma`` (the prior mean's excluded)."""
        r = d if self.shared is None else int(np.sum(~self.shared))
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
        random = (np.ones(d, dtype=bool) if self.shared is None
                  else ~np.asarray(self.shared))
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
            natural = np.zeros((d, d))
            natural[np.ix_(random, random)] = (inverse + inverse.T) / 2.0
            if self.shared is not None:
                top = float(np.max(np.diag(inverse)))
                natural[self.shared, self.shared] = SHARED_PRECISION_RATIO * top
            return natural
        if self.shared is not None:
            top = float(natural[random].max())
            natural = np.where(self.shared, SHARED_PRECISION_RATIO * top, natural)
        return natural


def factor_precision(S, rank, start=None):
    """``(F F^T + Psi)^{-1}`` for the factor model of rank ``rank`` fitted to
    ``S``, and the factors ``(F, psi)``.

    Maximum likelihood of the factor model for a sample covariance ``S``
    (Rubin & Thayer's EM on the covariance, started from ``start`` -- the
    factors of a nearby ``S`` -- or from the probabilistic PCA solution of
    Tipping & Bishop), ``Psi`` kept above ``1e-8`` of the mean variance. The
    inverse by the Woodbury identity.
    """
    d = S.shape[0]
    q = min(rank, d - 1)
    floor = 1e-8 * float(np.mean(np.diag(S)))
    n_iter = _FACTOR_ITERATIONS
    if start is not None and start[0].shape == (d, q):
        F, psi = start[0], np.maximum(start[1], floor)
        n_iter = _FACTOR_WARM_ITERATIONS
    else:
        w, V = linalg.eigh(S, check_finite=False)
        w, V = w[::-1], V[:, ::-1]
        noise = max(float(w[q:].mean()), 1e-8 * float(w.mean()),
                    np.finfo(float).tiny)
        F = V[:, :q] * np.sqrt(np.maximum(w[:q] - noise, 0.0))
        psi = np.full(d, noise)
    for _ in range(n_iter):
        # E-step: beta = F^T (F F^T + Psi)^{-1}, by the q x q Woodbury form
        scaled = F / psi[:, None]
        inner = np.eye(q) + F.T @ scaled
        # (q x q systems: numpy's solve, without scipy's checks, which cost
        # more than the solve itself at this size)
        beta = np.linalg.solve(inner, scaled.T)
        SB = S @ beta.T
        second = np.eye(q) - beta @ F + beta @ SB
        F_new = np.linalg.solve(second, SB.T).T
        psi_new = np.maximum(np.diag(S) - np.sum(F_new * SB, axis=1), floor)
        change = max(np.abs(F_new - F).max(), np.abs(psi_new - psi).max())
        F, psi = F_new, psi_new
        if change <= _FACTOR_TOL * max(1.0, float(np.max(np.diag(S)))):
            break
    scaled = F / psi[:, None]
    inner = np.eye(q) + F.T @ scaled
    correction = scaled @ linalg.solve(inner, scaled.T, assume_a="pos",
                                       check_finite=False)
    return np.diag(1.0 / psi) - correction, (F, psi)
