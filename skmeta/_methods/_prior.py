"""The meta-knowledge of the linear methods: prior mean, shape and strength.

The transfer term is ``gamma/2 (theta - theta0)^T Lambda (theta - theta0)``.
``Lambda`` is the *shape* of the prior precision, normalized to unit
geometric mean of its eigenvalues' magnitudes (``|det(Lambda)| = 1``: beside
the base penalty, a learned transfer term may be negative along some
directions), and ``gamma`` its overall *strength*, so that a fixed ``gamma``
keeps its meaning whatever shape is learned.
"""

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import linalg


@dataclass(frozen=True)
class Prior:
    """``theta0`` (d,), ``shape`` (d,) diagonal or (d, d) full, ``gamma``.

    ``dispersion`` is the noise variance of squared-error datafits, in the
    loss's own units (1 for the other datafits), used by empirical Bayes.
    """

    theta0: np.ndarray
    shape: np.ndarray
    gamma: float
    dispersion: float = 1.0
    #: the base estimator's l2 penalty per parameter, when it counts as part
    #: of the prior (empirical Bayes): ``theta0`` is then the mean of the
    #: tasks' parameters under penalty and transfer term together, and the
    #: transfer term pulls toward ``center``
    ridge: np.ndarray = None
    #: the factor model ``(F, psi)`` of a low-rank prior's covariance, in
    #: the M-step's units (see ``_structures.factor_precision``): what the
    #: EM acceleration extrapolates for such a prior
    factors: tuple = field(default=None, compare=False, repr=False)

    @classmethod
    def initial(cls, theta0, structure, gamma):
        """The prior that empirical Bayes starts from (see ``_structures``)."""
        d = theta0.shape[0]
        shape = structure.initial_shape(d)
        if structure.shared is not None:
            shape = split_strength(shape)[1]
        return cls(theta0=np.array(theta0, dtype=np.float64), shape=shape,
                   gamma=float(gamma))

    @property
    def precision(self):
        """``gamma * Lambda``, as the kernels take it."""
        return self.gamma * self.shape

    @property
    def combined_precision(self):
        """``Pi + diag(ridge)``: the precision of the prior of the tasks'
        parameters (``Pi`` alone when the ridge is not part of it)."""
        precision = self.precision
        if self.ridge is None:
            return precision
        if precision.ndim == 2:
            return precision + np.diag(self.ridge)
        return precision + self.ridge

    @property
    def center(self):
        """Where the transfer term pulls: the point ``c`` whose pull, with the
        base penalty's toward zero, leaves a task without data at ``theta0``
        (``(Pi + D)^{-1} Pi c = theta0``); ``theta0`` itself without ridge."""
        if self.ridge is None or not np.any(self.ridge):
            return self.theta0
        precision = self.precision
        pulled = self.combined_precision @ self.theta0 if precision.ndim == 2 \
            else self.combined_precision * self.theta0
        if precision.ndim == 2:
            try:
                return linalg.solve(precision, pulled, assume_a="pos",
                                    check_finite=False)
            except linalg.LinAlgError:
                # a transfer term negative along some directions
                return linalg.solve(precision, pulled, assume_a="sym",
                                    check_finite=False)
        return pulled / precision

    def with_theta0(self, theta0):
        return replace(self, theta0=theta0)


#: how close to zero an eigenvalue of a transfer term beside the base
#: penalty may come, relative to the tasks' precision (see
#: :func:`transfer_beyond_ridge`)
TRANSFER_FLOOR = 1e-3


def transfer_beyond_ridge(M, ridge, signed=True):
    """``Pi = M - diag(ridge)``: the transfer term that, beside the base
    penalty ``ridge`` (None, or per parameter), makes the tasks' precision
    ``M`` (its diagonal, or the matrix).

    Negative along directions in which the tasks spread wider than the
    penalty alone lets them (``M`` below ``D``): the penalty's pull toward
    zero and the transfer term's push from its centre then add up to the
    pull toward the prior mean that ``M`` says. (Kept positive, the prior
    was capped at the penalty's spread, ``noise / alpha`` for ``Ridge``,
    and the 90 % intervals of new tasks spreading four times wider covered
    a third of their targets.) An eigenvalue closer to zero than
    ``TRANSFER_FLOOR`` of ``M`` is raised to that floor, where the centre
    ``Pi^{-1} M theta0`` would run off; that only tightens the tasks'
    prior, ``Pi + D`` staying positive definite.

    Not ``signed``: every eigenvalue is kept at least that floor, as an
    isotropic transfer term ``pi I`` needs (it also covers coefficients the
    penalty leaves free, the intercept, where it must stay positive, and it
    is extrapolated in its own logarithm).
    """
    if ridge is None or not np.any(ridge > 0):
        return M
    if M.ndim == 1:
        precision = M - ridge
        floor = TRANSFER_FLOOR * M
        low = np.abs(precision) < floor if signed else precision < floor
        return np.where(low, floor, precision)
    w, V = linalg.eigh(M - np.diag(ridge), check_finite=False)
    floor = TRANSFER_FLOOR * float(linalg.eigvalsh(M, check_finite=False)[0])
    low = np.abs(w) < floor if signed else w < floor
    precision = (V * np.where(low, floor, w)) @ V.T
    return (precision + precision.T) / 2.0


def split_strength(precision):
    """Split a precision into (strength, shape) with ``|det(shape)| = 1``.

    The strength is the geometric mean of the precision's eigenvalues'
    magnitudes: beside a base penalty, a transfer term may be negative
    along some directions (see :func:`transfer_beyond_ridge`).
    """
    if precision.ndim == 2:
        sign, logdet = np.linalg.slogdet(precision)
        strength = float(np.exp(logdet / precision.shape[0])) if sign != 0 else 0.0
    else:
        strength = float(np.exp(np.mean(np.log(np.abs(precision)))))
    if not np.isfinite(strength) or strength <= 0:
        raise FloatingPointError("the learned prior precision is degenerate")
    return strength, precision / strength


def precision_inverse(precision):
    """Inverse of a diagonal (vector) or full precision, as a full matrix."""
    if precision.ndim == 1:
        return np.diag(1.0 / precision)
    return linalg.inv(precision, check_finite=False)


def psd_solve(M, b, rcond=1e-12):
    """Solve ``M x = b`` for symmetric PSD ``M``, minimum norm if singular."""
    w, V = linalg.eigh((M + M.T) / 2.0, check_finite=False)
    keep = w > rcond * max(w.max(initial=0.0), np.finfo(float).tiny)
    coords = V[:, keep].T @ b
    return V[:, keep] @ (coords / w[keep])


def task_scales(batch, problem):
    """Each task's scale ``s_t`` in the prior's units: its total weight for
    averaged losses, else 1. A fit leaves tasks without weight out; a new
    task without weight (``adapt``) carries no information and gets the
    mean of the others, a neutral value."""
    if not problem.mean_loss:
        return np.ones(batch.n_tasks)
    scale = batch.task_weights()
    positive = scale > 0
    if positive.any():
        scale = np.where(positive, scale, scale[positive].mean())
    return np.maximum(scale, np.finfo(float).tiny)


def scaled_spread(dev, weight, wide):
    """``sum_t w_t dev_t dev_t^T`` (its diagonal for ``wide`` tasks), ``w_t``
    the task's scale (relative to the mean one): the tasks' deviations, each
    in the units of its own prior (see ``_proximal.empirical_bayes_update``)."""
    # as R^T R, R the deviations times sqrt(w_t): numpy computes that
    # product symmetric, and for weights of 1 exactly as it did unweighted
    scaled = dev * np.sqrt(weight)[:, None]
    if wide:
        return np.einsum("ij,ij->j", scaled, scaled)
    return scaled.T @ scaled


def residual_squares(task_scale, loss):
    """Each task's weighted residual sum of squares ``2 s_t L_t``.

    The squared-error datafit ``L_t`` is half of it (averaged over the
    task's weight where the base estimator averages: ``s_t`` undoes that,
    see ``task_scales``). For other datafits, twice the summed loss.
    """
    return 2.0 * task_scale * loss


def mean_penalty(ridge, share=1.0, precision=None, varying=None):
    """The precision of the prior mean's own prior: one task's base penalty,
    no tighter than one task's prior precision ``precision`` (a diagonal,
    or a matrix: see :func:`_penalty_within`, ``varying`` the coefficients
    that vary) in any direction.

    Where the base estimator's l2 penalty counts as part of the tasks'
    prior (empirical Bayes), the tasks' parameters are drawn about the prior
    mean with that penalty's pull included, and the mean itself would be
    held by nothing: tasks pinned to it (shared coefficients, or a strength
    grown without bound) made an unpenalized pooled fit, which runs away
    where the tasks' rows together separate. The mean gets the penalty of
    one task (in the units of the tasks' objectives, whatever the loss):
    a task's parameters are the mean plus the task's own deviation, so the
    mean can be no more certain a priori than one task is. A stronger hold
    -- the pooled fit's, ``T`` times one task's for averaged losses --
    outweighs what ``T`` varied tasks say of their mean: it shrank the mean,
    which widened the tasks' spread about it, which weakened the learned
    prior, which shrank the mean further, until the mean sat at half the
    tasks' (``ElasticNet``, ``PoissonRegressor`` with their default
    penalties, 20 tasks of 15 rows).

    Where the tasks spread wider than the penalty alone lets them (a
    transfer term negative along some directions, see
    :func:`transfer_beyond_ridge`), one task's prior precision there is
    below the penalty, and so is the mean's: held by the penalty instead,
    a mixture of two families of tasks with slopes of 2 and -2 beside
    ``Ridge(alpha=30)`` (whose own prior has a standard deviation of 0.06)
    put both its means at zero.

    Where the tasks are drawn about several means (a mixture's components,
    nested tasks' groups), that one penalty is shared among them, each
    mean's ``share`` the fraction of the tasks it holds: means pinned
    together are then held as the single one, and a penalty for each would
    shrink them toward zero by the number of means (groups of two tasks:
    to two thirds of the tasks' mean).
    """
    if ridge is None:
        return None
    ridge = np.asarray(ridge, dtype=float)
    if precision is None:
        return ridge * share
    precision = np.asarray(precision, dtype=float)
    if precision.ndim == 1:
        return np.minimum(ridge, np.maximum(precision, 0.0)) * share
    return _penalty_within(ridge, precision, varying) * share


def _penalty_within(ridge, M, varying=None):
    """``ridge``, scaled down where needed to be no tighter than the
    precision ``M`` of one task's prior in any direction.

    The coefficients that vary (``varying``, all by default) are scaled
    together, by the smallest eigenvalue of ``D^-1/2 S D^-1/2`` where it is
    below 1, ``S`` the precision of those penalized coefficients given the
    others (``M``'s Schur complement, the shared coefficients' block less
    their penalty, which they keep: a loose random slope must not loosen the
    hold on coefficients pinned to the mean, which is what that hold is
    for). Elementwise, the diagonal of a full ``M`` is the precision of each
    coefficient with the others held, far tighter than the task's prior
    along a direction the coefficients share: the mean of tasks whose two
    slopes move together (about 20, spread 10) came out at 8.4 under a full
    prior. (Scaled as a whole rather than taking the penalty's part below
    ``M`` direction by direction, it keeps the penalty's shape: that matrix,
    moving with ``M``, made two of 36 low-rank fits of
    ``bench_default_prior.py`` stop at ``max_iter``.)
    """
    penalized = ridge > 0
    scaled = penalized if varying is None else penalized & np.asarray(varying)
    kept = penalized & ~scaled
    rest = ~scaled
    if not np.any(scaled):
        return ridge
    reduced = M - np.diag(np.where(kept, ridge, 0.0))
    S = reduced[np.ix_(scaled, scaled)]
    if np.any(rest):
        try:
            S = S - reduced[np.ix_(scaled, rest)] @ linalg.solve(
                reduced[np.ix_(rest, rest)], reduced[np.ix_(rest, scaled)],
                assume_a="pos", check_finite=False)
        except linalg.LinAlgError:
            if varying is None:
                raise
            # shared coefficients held less than their penalty: scale them too
            return _penalty_within(ridge, M)
    root = np.sqrt(ridge[scaled])
    lowest = float(linalg.eigvalsh(S / np.outer(root, root),
                                   check_finite=False)[0])
    return np.where(scaled, ridge * min(1.0, max(lowest, 0.0)), ridge)


def changed(new, old, tol, floor=1.0):
    """Whether ``new`` differs from ``old`` by more than ``tol`` relative to
    the largest of ``old``, or absolute below ``floor`` (see
    :func:`models_floor`)."""
    scale = max(floor, float(np.max(np.abs(old), initial=0.0)))
    return float(np.max(np.abs(new - old), initial=0.0)) > tol * scale


def models_floor(theta):
    """The floor of a convergence test's scale for models ``theta`` (see
    :func:`changed`): 1, or their size where smaller, so that models
    in small units (targets of size 1e-4) are not all judged converged at
    once, from the first step."""
    size = float(np.max(np.abs(theta), initial=0.0))
    return max(min(1.0, size), np.finfo(float).tiny)


def noise_variance_floor(y):
    """The smallest noise variance empirical Bayes learns from targets ``y``.

    Tasks with fewer samples than parameters fit exactly, and the noise
    variance estimate would go to zero: it is kept above round-off of y (see
    :func:`noise_variance_floor_of`).
    """
    if not len(y):
        return 1e-10
    return noise_variance_floor_of(float(np.var(y)), float(np.mean(np.square(y))),
                                   constant=bool(np.ptp(y) == 0))


def noise_variance_floor_of(variance, mean_square, constant):
    """The noise variance's floor from the targets' variance, mean square and
    whether they are all equal (what a fit on Dask collections gathers).

    1e-10 of y's spread; of y itself where y does not vary (a floor of
    1e-300 there made a mixture's evidence overflow), told by its values:
    the variance of a constant 0.3 is a rounding residue (3e-33), not 0.
    1e-300 only where y is all zeros, whose fits are zero whatever the noise.
    """
    spread = mean_square if constant else variance
    return 1e-10 * spread if spread > 0 else 1e-300
