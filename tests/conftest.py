"""Shared test helpers: the numpy reference of the inner objective, one task
generator, and meta-gradients through the methods' own classes.

:class:`InnerObjective` is written from the definitions of the datafits and
penalties (see ``skmeta/_kernels/_codes.py`` and ``_penalties.py``), with
numpy and scipy only, so that a mistake in a kernel cannot be repeated in
the reference it is checked against; ``tests/test_datafits.py`` checks the
reference itself against finite differences.
"""

import os

import numpy as np
import scipy.sparse as sp
from hypothesis import settings
from scipy.special import expit, logsumexp, softmax, xlogy

from skmeta._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from skmeta._kernels._layout import Problem
from skmeta._kernels._unroll import FIRST_ORDER, SECOND_ORDER
from skmeta._methods._bilevel import ImplicitMetaGradient, UnrolledMetaGradient

# The fuzz tests draw the same examples on every run (a red run must be
# reproducible, and nothing may fail by chance on one run and pass on the
# next); HYPOTHESIS_PROFILE=explore draws new ones, to look for more.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CODES = [SQUARED, LOGISTIC, MULTINOMIAL, POISSON]
CODE_IDS = ["squared", "logistic", "multinomial", "poisson"]
N_CLASSES = 3


# --------------------------------------------------------------------------
# the inner objective, from its definition
# --------------------------------------------------------------------------
def design(X, fit_intercept=True):
    """``X~ = [X, 1]`` (or ``X`` alone), dense float64."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))]) if fit_intercept else X


def precision_matrix(precision):
    """``Pi`` as a matrix, from its diagonal or itself."""
    precision = np.asarray(precision, dtype=np.float64)
    return np.diag(precision) if precision.ndim == 1 else precision


def datafit_rows(code, Z, y):
    """Per-row loss and its first two derivatives in the linear predictor.

    ``Z`` has shape ``(n, K)``. Returns the losses ``(n,)``, their gradients
    ``(n, K)`` and Hessians ``(n, K, K)``, unweighted:

    * squared: ``(z - y)**2 / 2``;
    * logistic (``y`` in {0, 1}): ``log(1 + e**z) - y z``;
    * multinomial (``y`` the class index): ``logsumexp(z) - z_y``;
    * Poisson (log link): ``e**z - y z + y log y - y``, half the deviance,
      zero where ``e**z = y``.
    """
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, K = Z.shape
    if code == MULTINOMIAL:
        onehot = np.eye(K)[y.astype(int)]
        P = softmax(Z, axis=1)
        loss = logsumexp(Z, axis=1) - np.sum(Z * onehot, axis=1)
        hess = P[:, :, None] * np.eye(K)[None] - P[:, :, None] * P[:, None, :]
        return loss, P - onehot, hess
    z = Z[:, 0]
    if code == SQUARED:
        loss, grad, curv = 0.5 * (z - y) ** 2, z - y, np.ones(n)
    elif code == LOGISTIC:
        p = expit(z)
        loss, grad, curv = np.logaddexp(0.0, z) - y * z, p - y, p * (1.0 - p)
    elif code == POISSON:
        mu = np.exp(z)
        loss, grad, curv = mu - y * z + xlogy(y, y) - y, mu - y, mu
    else:
        raise ValueError(f"unknown datafit code {code}")
    return loss, grad[:, None], curv[:, None, None]


def soft_threshold(u, threshold):
    """``sign(u) max(|u| - threshold, 0)``, elementwise."""
    return np.sign(u) * np.maximum(np.abs(u) - threshold, 0.0)


class InnerObjective:
    """One task's inner objective ``c L + lambda R + P``, in plain numpy.

    ``L = sum_i sw_i loss(x~_i theta)`` with ``c = 1`` (sum-scaled) or ``c =
    1 / sum_i sw_i`` (mean-scaled; 0 without weight), ``lambda R = lam2/2 sum
    l2w theta**2 + lam1 sum l1w |theta|`` and ``P = (theta - theta0)^T Pi
    (theta - theta0) / 2`` (``precision``: ``Pi`` or its diagonal). Output
    ``k`` owns ``theta[k * p1:(k + 1) * p1]``, coefficients then intercept.
    Penalty weights default to ones; ``theta0`` and ``precision`` to zeros.
    """

    def __init__(self, X, y, sw, code, *, n_classes=N_CLASSES,
                 fit_intercept=True, mean_loss=False, lam2=0.0, l2w=None,
                 lam1=0.0, l1w=None, theta0=None, precision=None):
        self.Xt = design(X, fit_intercept)
        self.y = np.asarray(y, dtype=np.float64)
        n = self.Xt.shape[0]
        self.sw = np.ones(n) if sw is None else np.asarray(sw, dtype=np.float64)
        self.code = code
        self.K = n_classes if code == MULTINOMIAL else 1
        self.p1 = self.Xt.shape[1]
        self.d = self.K * self.p1
        total = self.sw.sum()
        self.c = (1.0 / total if total > 0 else 0.0) if mean_loss else 1.0
        self.lam2, self.lam1 = float(lam2), float(lam1)
        self.l2w = np.ones(self.d) if l2w is None else np.asarray(l2w, float)
        self.l1w = np.ones(self.d) if l1w is None else np.asarray(l1w, float)
        self.theta0 = (np.zeros(self.d) if theta0 is None
                       else np.asarray(theta0, dtype=np.float64))
        self.P = (np.zeros((self.d, self.d)) if precision is None
                  else precision_matrix(precision))

    @classmethod
    def from_problem(cls, problem, X, y, sw, *, theta0=None, precision=None):
        """The objective of a kernel :class:`~skmeta._kernels._layout.Problem`."""
        return cls(X, y, sw, problem.code, n_classes=problem.n_outputs,
                   fit_intercept=problem.fit_intercept,
                   mean_loss=problem.mean_loss, lam2=problem.lam2,
                   l2w=problem.l2w, lam1=problem.lam1, l1w=problem.l1w,
                   theta0=theta0, precision=precision)

    # the datafit
    def predictor(self, theta):
        """``Z[i, k] = x~_i . theta_k``."""
        return self.Xt @ np.asarray(theta).reshape(self.K, self.p1).T

    def rows(self, theta):
        """Per-row loss, gradient and Hessian in ``z`` (see :func:`datafit_rows`)."""
        return datafit_rows(self.code, self.predictor(theta), self.y)

    def loss(self, theta):
        return self.c * np.sum(self.sw * self.rows(theta)[0])

    def data_grad(self, theta):
        G = self.rows(theta)[1] * (self.c * self.sw)[:, None]
        return (G.T @ self.Xt).ravel()

    def data_hess(self, theta):
        H = self.rows(theta)[2] * (self.c * self.sw)[:, None, None]
        out = np.einsum("nkm,ni,nj->kimj", H, self.Xt, self.Xt)
        return out.reshape(self.d, self.d)

    # the penalties
    def l2(self, theta):
        return 0.5 * self.lam2 * np.sum(self.l2w * theta**2)

    def l1(self, theta):
        return self.lam1 * np.sum(self.l1w * np.abs(theta))

    def transfer(self, theta):
        dev = theta - self.theta0
        return 0.5 * dev @ self.P @ dev

    def smooth_penalty(self, theta):
        return self.l2(theta) + self.transfer(theta)

    def smooth_penalty_grad(self, theta):
        return self.lam2 * self.l2w * theta + self.P @ (theta - self.theta0)

    def smooth_penalty_hess(self):
        return np.diag(self.lam2 * self.l2w) + self.P

    def prox_l1(self, u, step):
        """The proximal operator of ``step * lam1 sum l1w |.|`` at ``u``."""
        return soft_threshold(u, step * self.lam1 * self.l1w)

    # the objective
    def smooth(self, theta):
        """Everything but the l1 part."""
        return self.loss(theta) + self.smooth_penalty(theta)

    def objective(self, theta):
        return self.smooth(theta) + self.l1(theta)

    def grad(self, theta):
        """Gradient of :meth:`smooth`."""
        return self.data_grad(theta) + self.smooth_penalty_grad(theta)

    def hess(self, theta):
        """Hessian of :meth:`smooth`."""
        return self.data_hess(theta) + self.smooth_penalty_hess()


# --------------------------------------------------------------------------
# problems and data
# --------------------------------------------------------------------------
def make_problem(code, n_features, *, fit_intercept=True, mean_loss=False,
                 lam2=0.0, lam1=0.0, l2w=None, l1w=None, n_classes=N_CLASSES):
    """A kernel :class:`Problem`; penalty weights default to the families'
    (ones on the coefficients, zero on an intercept)."""
    K = n_classes if code == MULTINOMIAL else 1
    p1 = n_features + int(fit_intercept)
    penalized = np.tile(np.r_[np.ones(n_features), np.zeros(p1 - n_features)],
                        K)
    return Problem(code, K, n_features, fit_intercept, mean_loss, float(lam2),
                   float(lam1), penalized if l2w is None else np.asarray(l2w),
                   penalized.copy() if l1w is None else np.asarray(l1w))


def intercept_mask(problem):
    """Which entries of ``theta`` are intercepts."""
    p1 = problem.n_features + int(problem.fit_intercept)
    mask = np.zeros((problem.n_outputs, p1), dtype=bool)
    if problem.fit_intercept:
        mask[:, -1] = True
    return mask.ravel()


def random_spd(d, rng, scale=1.0):
    """A well-conditioned random symmetric positive definite matrix."""
    A = rng.normal(size=(d, d))
    return scale * (A @ A.T / d + 0.3 * np.eye(d))


def draw_targets(code, Z, rng):
    """Targets drawn from the datafit's own model at the predictors ``Z``.

    Gaussian (sd 0.5) around ``z``, Bernoulli(sigmoid(z)), categorical
    (softmax(z)) and Poisson(exp(z)).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if code == SQUARED:
        return Z[:, 0] + rng.normal(scale=0.5, size=Z.shape[0])
    if code == LOGISTIC:
        return (rng.random(Z.shape[0]) < expit(Z[:, 0])).astype(float)
    if code == POISSON:
        return rng.poisson(np.exp(Z[:, 0])).astype(float)
    # the largest of the logits plus Gumbel noise is a draw from the softmax
    return np.argmax(Z + rng.gumbel(size=Z.shape), axis=1).astype(float)


def make_tasks(code, sizes, n_features, *, seed=0, n_classes=N_CLASSES,
               weights=(0.2, 2.0), weightless=0, density=None, sparse=False):
    """Rows of ``len(sizes)`` tasks, stacked task after task.

    Targets follow one linear model, ``z = X B + 0.2`` with ``B ~ N(0,
    0.5**2)``, through :func:`draw_targets`.

    Parameters
    ----------
    code : int
        The datafit whose model draws the targets.
    sizes : sequence of int
        Rows of each task (0 for a task without rows).
    n_features : int
    seed : int, sequence of int or numpy Generator
        A Generator is drawn from (and advanced), so a test can keep using it.
    n_classes : int
        Classes of the multinomial.
    weights : (low, high) or None
        Sample weights uniform on ``[low, high)``, or ones.
    weightless : int
        That many rows of the last task get weight zero (the task must keep
        a row with weight).
    density : float, optional
        Fraction of the entries of ``X`` kept; the others are zeros.
    sparse : bool
        Return ``X`` as a CSR matrix.

    Returns
    -------
    X, y, sw, tasks
    """
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes, dtype=int)
    n = int(sizes.sum())
    X = rng.normal(size=(n, n_features))
    if density is not None:
        X[rng.random(X.shape) > density] = 0.0
    K = n_classes if code == MULTINOMIAL else 1
    B = rng.normal(scale=0.5, size=(n_features, K))
    y = draw_targets(code, X @ B + 0.2, rng)
    sw = np.ones(n) if weights is None else rng.uniform(*weights, size=n)
    if weightless:
        if weightless >= sizes[-1]:
            raise ValueError("the last task must keep a row with weight")
        sw[n - 1 - rng.choice(sizes[-1], size=weightless, replace=False)] = 0.0
    tasks = np.repeat(np.arange(len(sizes)), sizes)
    return (sp.csr_matrix(X) if sparse else X), y, sw, tasks


# --------------------------------------------------------------------------
# meta-gradients
# --------------------------------------------------------------------------
def poisson_tasks_of_unequal_sizes(seed, n_tasks, low, high, n_features):
    """Poisson counts of ``n_tasks`` tasks of ``low`` to ``high - 1`` rows,
    log rates ``x' theta_t``, ``theta_t`` 0.4 + 0.3 N(0, 1) per coefficient:
    ``(X, y, tasks)``."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(low, high, n_tasks)
    tasks = np.repeat(np.arange(n_tasks), sizes)
    X = rng.standard_normal((sizes.sum(), n_features))
    coef = 0.4 + 0.3 * rng.standard_normal((n_tasks, n_features))
    y = rng.poisson(np.exp(np.einsum("ij,ij->i", X, coef[tasks]))).astype(float)
    return X, y, tasks


def meta_gradient(batch, problem, method, task_sel, seeds, n_query, theta0,
                  precision, alpha, auto_step, n_steps, first_order, warm=None):
    """One meta-gradient of ``method`` ("imaml", "maml" or "metasgd").

    Returns ``(loss, grad_theta0, grad_alpha, adapted)``.
    """
    n_sel = len(task_sel)
    if method == "imaml":
        run = ImplicitMetaGradient(batch, problem, precision, n_sel=n_sel)
    else:
        run = UnrolledMetaGradient(
            batch, problem, precision, n_sel=n_sel, n_steps=n_steps,
            auto_step=auto_step, mode=FIRST_ORDER if first_order else SECOND_ORDER)
    return run(task_sel, seeds, n_query, theta0, alpha, warm)
