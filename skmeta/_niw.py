"""Normal-inverse-Wishart models of many tasks, and their empirical Bayes fit.

Task ``t`` has rows ``x ~ N(m_t, Sigma_t)`` in dimension ``d``, with

    Sigma_t ~ IW(Psi0, nu0),    m_t | Sigma_t ~ N(mu0, Sigma_t / kappa0),

the conjugate Normal-inverse-Wishart prior ``NIW(mu0, kappa0, nu0, Psi0)``
(Murphy, 2007, "Conjugate Bayesian analysis of the Gaussian distribution",
section 9). Given a task's ``n`` rows, mean ``xbar`` and scatter
``S = sum (x - xbar)(x - xbar)^T``, the posterior is NIW with

    kappa_n = kappa0 + n,   nu_n = nu0 + n,
    mu_n = (kappa0 mu0 + n xbar) / kappa_n,
    Psi_n = Psi0 + S + kappa0 n / kappa_n (xbar - mu0)(xbar - mu0)^T,

the evidence (marginal likelihood of the rows) is

    p(D) = pi^(-n d / 2) Gamma_d(nu_n / 2) / Gamma_d(nu0 / 2)
           |Psi0|^(nu0 / 2) / |Psi_n|^(nu_n / 2) (kappa0 / kappa_n)^(d / 2),

and a new row follows the multivariate Student t with ``nu_n - d + 1``
degrees of freedom, location ``mu_n`` and shape
``Psi_n (kappa_n + 1) / (kappa_n (nu_n - d + 1))``.

Empirical Bayes chooses ``(mu0, kappa0, nu0, Psi0)`` to maximise the sum
over tasks of the log evidence plus the log density of a weak hyperprior
``Psi0 ~ W(Sigma_star, nu0 + d + 1)``, ``Sigma_star`` the diagonal matrix
of the feature variances. Its mode ``nu0 Sigma_star`` is where a pseudo-task
of covariance ``Sigma_star`` would put ``Psi0``, and it weighs as one task
among ``T``: it keeps ``Psi0`` positive definite when the tasks alone do not
(one task, or every task's rows in a subspace). The maximisation is a block
coordinate ascent in which every step can only increase the objective:

* ``mu0``: one minorise-maximise step. As a function of ``mu0`` the
  objective is ``-sum_t nu_n / 2 log(1 + c_t (xbar_t - mu0)^T A_t^{-1}
  (xbar_t - mu0))`` with ``A_t = Psi0 + S_t`` and ``c_t = kappa0 n_t /
  kappa_n``; ``log(1 + u)`` lies below its tangent, so the weighted least
  squares ``mu0 = (sum a_t A_t^{-1})^{-1} sum a_t A_t^{-1} xbar_t`` with
  ``a_t = nu_n c_t / (1 + u_t)`` increases it (the iteration of a
  multivariate t location).
* ``Psi0``: one EM step, the task means and covariances being the missing
  data: ``E[Sigma_t^{-1} | D_t] = nu_n Psi_n^{-1}``, so the expected
  complete log likelihood is maximised by ``Psi0 = (T + 1) nu0 (sum_t nu_n
  Psi_n^{-1} + Sigma_star^{-1})^{-1}``.
* ``kappa0``: exact maximisation of the evidence over ``log kappa0``. With
  ``q_t = (xbar_t - mu0)^T A_t^{-1} (xbar_t - mu0)`` from one solve per
  task, ``log |Psi_n| = log |A_t| + log(1 + c_t q_t)`` and the objective is
  a sum of scalar functions of ``kappa0``.
* ``nu0``: exact maximisation over ``log(nu0 - d + 1)`` with ``Psi0 = nu0
  exp(u) B``, ``B`` the current ``Psi0 / nu0`` and the overall scale ``u``
  maximised for each ``nu0`` (the objective is concave in ``u``: Newton's
  method). Profiling the scale follows the ridge along which ``nu0`` and
  ``Psi0`` trade off, where separate steps would zig-zag. With the
  generalised eigenvalues ``lambda_ti`` of ``(S_t + c_t r_t r_t^T, B)``,
  ``log |Psi_n| = log |B| + sum_i log(nu0 exp(u) + lambda_ti)``.

The two scalar maximisations run Newton's method on the derivative (first
and second derivatives in closed form, digamma and trigamma functions for
``nu0``; the envelope theorem for the profiled scale), safeguarded by
bisection on bounded intervals, for all problems at once; each keeps the
current value when it does not improve on it. The cycles are accelerated by
SQUAREM (see :func:`fit_empirical_bayes`). Arrays carry a leading axis of
independent problems: the density model solves one problem in dimension
``d``, the task scaler one problem in dimension 1 per feature.
"""

import warnings
from collections import namedtuple

import numpy as np
import scipy.sparse as sp
from scipy import stats
from scipy.special import betaln, digamma, gammaln, polygamma
from sklearn.exceptions import ConvergenceWarning

# Search intervals of the scalar hyper-parameters. kappa0 is a ratio of
# within-task to between-task (co)variances and nu0 - d + 1 the degrees of
# freedom of the prior predictive: their ends stand for "every task has the
# same mean / covariance" (large) and "task means / covariances are
# unconstrained" (small).
KAPPA_BOUNDS = (1e-8, 1e8)
DOF_EXCESS_BOUNDS = (1e-3, 1e8)
_NEWTON_STEPS = 60
# Scalar searches stop at steps below this, in log-parameter units.
_STEP_TOL = 1e-8
# Added to the covariance of a task whose rows have no spread along some
# direction while the hyper-parameters are learned, in units of the feature
# variances (GaussianMixture's ``reg_covar``, made scale-free): see
# _with_covariance_floor.
COVARIANCE_FLOOR = 1e-6
# A task's scatter has no spread along a direction whose eigenvalue (per row,
# in units of the features' variances) is below this, or below the rounding
# of its rows' centring (``_CENTRING_ROUNDING`` machine epsilons of its mean,
# along that direction).
_SPREAD_RTOL = 1e-12
_CENTRING_ROUNDING = 64.0
# Rows per block when task scatters are accumulated, bounding the
# temporary outer products to about 2**22 numbers.
_OUTER_BUDGET = 2**22

NIWPrior = namedtuple("NIWPrior", "mean kappa dof scale")
NIWPrior.__doc__ = """Hyper-parameters of independent NIW problems.

mean (P, d), kappa (P,), dof (P,), scale (P, d, d).
"""

TaskStats = namedtuple("TaskStats", "counts means scatters")
TaskStats.__doc__ = """Sufficient statistics of the tasks.

counts (T,) shared by the problems, means (P, T, d), scatters (P, T, d, d).
"""

NIWPosterior = namedtuple("NIWPosterior", "mean kappa dof scale")
NIWPosterior.__doc__ = """Posterior of every task: mean (P, T, d), kappa (P, T),
dof (P, T), scale (P, T, d, d)."""

EBResult = namedtuple("EBResult", "prior objective n_iter converged collapsed")
EBResult.__doc__ = """The fitted prior of each problem, its objective, the
iterations run, and whether they converged; ``collapsed`` (P,) flags the
problems whose typical task covariance ``Psi0 / nu0`` ended at the floor
along some direction (see :func:`_with_covariance_floor`)."""


# --------------------------------------------------------------- statistics
def _group_matrix(codes, n_tasks):
    n = codes.shape[0]
    return sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_tasks, n))


def task_statistics(X, codes, n_tasks, *, diagonal=False):
    """Counts, means and scatter matrices of the rows of every task.

    Tasks without rows get a zero mean and scatter. ``diagonal=True`` gives
    the per-feature sums of squares, shape ``(n_tasks, d)``, instead of the
    scatter matrices, shape ``(n_tasks, d, d)``. Rows are centred on their
    task's mean before squaring, which keeps the sums accurate; the mean is
    corrected once by the centred rows' own mean, since a sum of ``n`` rows
    far from zero is off by about ``n`` ulps of them (identical rows then
    centre to within an ulp, whatever their number).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    counts = np.bincount(codes, minlength=n_tasks).astype(np.float64)
    groups = _group_matrix(codes, n_tasks)
    rows = np.maximum(counts, 1.0)[:, None]
    means = np.asarray(groups @ X) / rows
    means += np.asarray(groups @ (X - means[codes])) / rows
    centred = X - means[codes]
    if diagonal:
        return counts, means, np.asarray(groups @ centred**2)
    scatters = np.zeros((n_tasks, d * d))
    block = max(1, _OUTER_BUDGET // max(d * d, 1))
    for start in range(0, n, block):
        part = centred[start:start + block]
        outer = (part[:, :, None] * part[:, None, :]).reshape(len(part), d * d)
        scatters += np.asarray(groups[:, start:start + block] @ outer)
    scatters = scatters.reshape(n_tasks, d, d)
    return counts, means, 0.5 * (scatters + scatters.transpose(0, 2, 1))


def full_stats(counts, means, scatters):
    """One problem of dimension d: add the leading problem axis."""
    return TaskStats(counts, means[np.newaxis], scatters[np.newaxis])


def diagonal_stats(counts, means, sums_of_squares):
    """One problem of dimension 1 per feature, from per-feature statistics."""
    return TaskStats(counts, means.T[:, :, np.newaxis],
                     sums_of_squares.T[:, :, np.newaxis, np.newaxis])


# ------------------------------------------------------------ linear algebra
# The scaler solves thousands of one-dimensional problems at once, where
# LAPACK's per-matrix overhead dominates: dimension 1 takes element-wise paths.
def _cholesky(A):
    if A.shape[-1] == 1:
        if np.any(~(A > 0)):
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        return np.sqrt(A)
    return np.linalg.cholesky(A)


def _solve(A, B):
    """``A^{-1} B`` for stacks of square ``A`` (triangular or not)."""
    if A.shape[-1] == 1:
        return B / A
    return np.linalg.solve(A, B)


def _logdet_chol(L):
    return 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)


def _spd_inverse(A):
    """Inverse of a stack of symmetric positive definite matrices."""
    if A.shape[-1] == 1:
        return 1.0 / _cholesky(A) ** 2
    return _symmetric(np.linalg.inv(A))


def _symmetric(A):
    return 0.5 * (A + np.swapaxes(A, -1, -2))


def _multidigamma(a, d):
    """Derivative of ``multigammaln`` in ``a``."""
    return digamma(np.asarray(a)[..., np.newaxis] - np.arange(d) / 2.0).sum(-1)


def _multitrigamma(a, d):
    """Second derivative of ``multigammaln`` in ``a``."""
    return polygamma(1, np.asarray(a)[..., np.newaxis]
                     - np.arange(d) / 2.0).sum(-1)


def multigammaln(a, d):
    """Log of the multivariate gamma function, element-wise in ``a``."""
    a = np.asarray(a, dtype=np.float64)
    j = np.arange(d)
    return (d * (d - 1) / 4.0 * np.log(np.pi)
            + gammaln(a[..., np.newaxis] - j / 2.0).sum(axis=-1))


# ----------------------------------------------------------- conjugate model
def posterior(prior, stats):
    """The NIW posterior of every task (Murphy 2007, eqs. 251-254)."""
    n = stats.counts
    kappa = prior.kappa[:, None] + n
    dof = prior.dof[:, None] + n
    mean = ((prior.kappa[:, None, None] * prior.mean[:, None, :]
             + n[None, :, None] * stats.means) / kappa[..., None])
    r = stats.means - prior.mean[:, None, :]
    c = prior.kappa[:, None] * n / kappa
    scale = (prior.scale[:, None] + stats.scatters
             + c[..., None, None] * r[..., :, None] * r[..., None, :])
    return NIWPosterior(mean, kappa, dof, _symmetric(scale))


def log_evidence(prior, stats):
    """Log marginal likelihood of each task's rows, shape (P, T)."""
    d = prior.mean.shape[-1]
    n = stats.counts
    post = posterior(prior, stats)
    logdet0 = _logdet_chol(_cholesky(prior.scale))[:, None]
    logdetn = _logdet_chol(_cholesky(post.scale))
    return (-0.5 * n * d * np.log(np.pi)
            + multigammaln(post.dof / 2.0, d)
            - multigammaln(prior.dof / 2.0, d)[:, None]
            + 0.5 * prior.dof[:, None] * logdet0 - 0.5 * post.dof * logdetn
            + 0.5 * d * (np.log(prior.kappa)[:, None] - np.log(post.kappa)))


def log_hyperprior(scale, dof, hyper_cov):
    """Log density of the hyperprior ``Psi0 ~ W(Sigma_star, nu0 + d + 1)``.

    Its mode ``nu0 Sigma_star`` is where a pseudo-task of covariance
    ``Sigma_star`` would put ``Psi0``, and in the EM step for ``Psi0`` it
    weighs as one task. Stacks of shape (P, d, d); ``dof`` of shape (P,).
    """
    d = scale.shape[-1]
    m = dof + d + 1
    trace = np.einsum("pij,pji->p", scale, _spd_inverse(hyper_cov))
    return (0.5 * dof * _logdet_chol(_cholesky(scale)) - 0.5 * trace
            - 0.5 * m * d * np.log(2.0)
            - 0.5 * m * _logdet_chol(_cholesky(hyper_cov))
            - multigammaln(m / 2.0, d))


def objective(prior, stats, hyper_cov):
    """Empirical Bayes objective of every problem, shape (P,)."""
    return (log_evidence(prior, stats).sum(axis=1)
            + log_hyperprior(prior.scale, prior.dof, hyper_cov))


# -------------------------------------------------------- predictive density
def predictive(post):
    """Student-t parameters of a new row: ``(df, loc, shape)``."""
    d = post.mean.shape[-1]
    df = post.dof - d + 1
    factor = (post.kappa + 1) / (post.kappa * df)
    return df, post.mean, post.scale * factor[..., None, None]


def prior_as_posterior(prior):
    """The prior, as the posterior of a task with no rows (T = 1)."""
    return NIWPosterior(prior.mean[:, None], prior.kappa[:, None],
                        prior.dof[:, None], prior.scale[:, None])


def student_t_tables(df, shape):
    """Per-model constants of the Student t: ``(log normaliser, L^{-1})``.

    ``df`` of shape (K,), ``shape`` of shape (K, d, d).
    """
    d = shape.shape[-1]
    L = _cholesky(shape)
    eye = np.broadcast_to(np.eye(d), shape.shape)
    L_inv = _solve(L, eye)
    # log Gamma((df + d) / 2) - log Gamma(df / 2) through the beta function:
    # the difference of the two cancels to nothing from df ~ 1e12 on
    lognorm = (gammaln(d / 2.0) - betaln(df / 2.0, d / 2.0)
               - 0.5 * d * np.log(df * np.pi) - 0.5 * _logdet_chol(L))
    return lognorm, L_inv


def squared_mahalanobis(X, rows, loc, L_inv):
    """``(x - loc_k)^T shape_k^{-1} (x - loc_k)`` of each row, model ``rows``."""
    n, d = X.shape
    out = np.empty(n)
    block = max(1, _OUTER_BUDGET // max(d * d, 1))
    for start in range(0, n, block):
        stop = start + block
        k = rows[start:stop]
        z = np.einsum("nij,nj->ni", L_inv[k], X[start:stop] - loc[k])
        out[start:stop] = np.einsum("ni,ni->n", z, z)
    return out


def student_t_logpdf(mahalanobis, df, lognorm, d):
    """Log density of the Student t from the squared Mahalanobis distance."""
    return lognorm - 0.5 * (df + d) * np.log1p(mahalanobis / df)


# past this many degrees of freedom the F distribution of the squared
# distance over d is its chi-squared limit to within 1e-7 relative in far
# tails, far closer in the body (scipy's F returns NaN for degrees of
# freedom near 1e300)
_CHI2_LIMIT_DF = 1e12


def student_t_tail(mahalanobis, df, d):
    """``P(M >= m)``: the squared distance over ``d`` is F(d, df)."""
    df = np.asarray(df, dtype=np.float64)
    return np.where(df > _CHI2_LIMIT_DF, stats.chi2.sf(mahalanobis, d),
                    stats.f.sf(mahalanobis / d, d,
                               np.minimum(df, _CHI2_LIMIT_DF)))


def student_t_tail_quantile(level, df, d):
    """The squared distance ``m`` with ``P(M >= m) = level``."""
    df = np.asarray(df, dtype=np.float64)
    return np.where(df > _CHI2_LIMIT_DF, stats.chi2.isf(level, d),
                    d * stats.f.isf(level, d, np.minimum(df, _CHI2_LIMIT_DF)))


# ---------------------------------------------------------- empirical Bayes
def _maximise_1d(f, derivatives, lo, hi, start):
    """Maximise ``f`` on ``[lo, hi]`` for every problem at once.

    Newton's method on the derivative, safeguarded by bisection of a bracket
    of its sign change (``rtsafe``); ``derivatives(x)`` gives the first and
    second derivatives. A maximum at an end of the interval is returned as
    such. The current value ``start`` is kept where the result is no better.
    """
    g_lo, _ = derivatives(lo)
    g_hi, _ = derivatives(hi)
    up, down = g_lo > 0, g_hi < 0
    a, b = lo.copy(), hi.copy()
    x = np.clip(start, lo, hi)
    # problems stop moving once a step is below the tolerance: near the
    # maximum, rounding can flip the sign of the derivative and set the
    # bisection off again
    active = up & down
    for _ in range(_NEWTON_STEPS):
        if not active.any():
            break
        g, h = derivatives(x)
        a = np.where(g > 0, x, a)
        b = np.where(g > 0, b, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = x - g / h
        safe = (h < 0) & (newton > a) & (newton < b)
        new = np.where(safe, newton, 0.5 * (a + b))
        new = np.where(active & (g != 0), new, x)
        active &= np.abs(new - x) > _STEP_TOL
        x = new
    inside = up & down
    # no sign change: the maximum is at an end (or, with a minimum inside,
    # at the better end)
    ends = np.where(f(lo) >= f(hi), lo, hi)
    x = np.where(inside, x, np.where(up, hi, np.where(down, lo, ends)))
    return np.where(f(x) >= f(start), x, start)


def _mean_step(prior, stats):
    n = stats.counts
    A = prior.scale[:, None] + stats.scatters
    M = _spd_inverse(A)
    r = stats.means - prior.mean[:, None, :]
    q = np.einsum("pti,ptij,ptj->pt", r, M, r)
    c = prior.kappa[:, None] * n / (prior.kappa[:, None] + n)
    a = (prior.dof[:, None] + n) * c / (1.0 + c * q)
    H = np.einsum("pt,ptij->pij", a, M)
    g = np.einsum("pt,ptij,ptj->pi", a, M, stats.means)
    mean = _solve(H, g[..., None])[..., 0]
    return prior._replace(mean=mean)


def _scale_step(prior, stats, hyper_precision):
    post = posterior(prior, stats)
    W = post.dof[..., None, None] * _spd_inverse(post.scale)
    n_tasks = stats.counts.shape[0]
    total = W.sum(axis=1) + hyper_precision
    scale = (n_tasks + 1) * prior.dof[:, None, None] * _spd_inverse(total)
    return prior._replace(scale=_symmetric(scale))


def _kappa_objective(prior, stats):
    """The objective as a function of ``log kappa0`` (all else fixed), and
    its first and second derivatives."""
    d = prior.mean.shape[-1]
    n = stats.counts
    A = prior.scale[:, None] + stats.scatters
    r = stats.means - prior.mean[:, None, :]
    q = np.einsum("pti,pti->pt", r, _solve(A, r[..., None])[..., 0])
    dof_n = prior.dof[:, None] + n

    def f(log_kappa):
        kappa = np.exp(log_kappa)[:, None]
        kappa_n = kappa + n
        c = kappa * n / kappa_n
        return (0.5 * d * (np.log(kappa) - np.log(kappa_n))
                - 0.5 * dof_n * np.log1p(c * q)).sum(axis=1)

    def derivatives(log_kappa):
        # with h = n / (kappa + n), c = kappa h and g = c q / (1 + c q):
        # dc/dl = c h, dh/dl = -h (1 - h), dg/dl = g h / (1 + c q)
        kappa = np.exp(log_kappa)[:, None]
        h = n / (kappa + n)
        cq = kappa * h * q
        g = cq / (1.0 + cq)
        first = (0.5 * d * h - 0.5 * dof_n * g * h).sum(axis=1)
        second = (-0.5 * d * h * (1.0 - h)
                  - 0.5 * dof_n * g * h * (h / (1.0 + cq) - (1.0 - h))).sum(axis=1)
        return first, second

    return f, derivatives


def _kappa_step(prior, stats):
    f, derivatives = _kappa_objective(prior, stats)
    lo = np.full_like(prior.kappa, np.log(KAPPA_BOUNDS[0]))
    hi = np.full_like(prior.kappa, np.log(KAPPA_BOUNDS[1]))
    found = _maximise_1d(f, derivatives, lo, hi, np.log(prior.kappa))
    return prior._replace(kappa=np.exp(found))


def _dof_objective(prior, stats, hyper_cov):
    """The objective as a function of ``log(nu0 - d + 1)``, with ``Psi0 =
    nu0 exp(u) B`` and ``u`` maximised; its first and second derivatives;
    the maximising ``u``; and ``B``."""
    d = prior.mean.shape[-1]
    n = stats.counts
    B = prior.scale / prior.dof[:, None, None]
    L_B = _cholesky(B)
    logdet_B = _logdet_chol(L_B)
    r = stats.means - prior.mean[:, None, :]
    c = prior.kappa[:, None] * n / (prior.kappa[:, None] + n)
    S = stats.scatters + c[..., None, None] * r[..., :, None] * r[..., None, :]
    # B is shared by the tasks: whiten with its inverse factor, by products
    L_B_inv = _solve(L_B, np.broadcast_to(np.eye(d), L_B.shape))[:, None]
    whitened = L_B_inv @ S @ np.swapaxes(L_B_inv, -1, -2)
    if d == 1:
        lam = np.clip(whitened[..., 0], 0.0, None)
    else:
        lam = np.clip(np.linalg.eigvalsh(_symmetric(whitened)), 0.0, None)
    logdet_star = _logdet_chol(_cholesky(hyper_cov))
    trace_star = np.einsum("pij,pji->p", B, _spd_inverse(hyper_cov))
    # the gamma functions depend on a task through its size only
    sizes, multiplicity = np.unique(n, return_counts=True)
    n_tasks = n.shape[0]
    n_t = n[None, :, None]

    def value(nu, u):
        """Objective at ``nu0 = nu`` and ``Psi0 = nu exp(u) B``."""
        nu_t = nu[:, None, None]
        w = nu_t * np.exp(u)[:, None, None]
        gammas = (multiplicity * multigammaln((nu[:, None] + sizes) / 2.0,
                                              d)).sum(1)
        # nu/2 log|w B| - nu_n/2 log|w B + S| with log|w B + S| = log|B|
        # + sum log(w + lam), arranged so that the large terms cancel
        evidence = (-0.5 * nu_t * np.log1p(lam / w)
                    - 0.5 * n_t * np.log(w + lam)).sum(axis=(1, 2))
        evidence -= 0.5 * n.sum() * logdet_B
        evidence += gammas - n_tasks * multigammaln(nu / 2.0, d)
        m = nu + d + 1
        hyper = (0.5 * nu * (d * (np.log(nu) + u) + logdet_B)
                 - 0.5 * nu * np.exp(u) * trace_star
                 - 0.5 * m * d * np.log(2.0) - 0.5 * m * logdet_star
                 - multigammaln(m / 2.0, d))
        return evidence + hyper

    start = {"u": np.zeros_like(prior.dof)}

    def best_log_scale(nu):
        """Maximise over ``u`` (concave) by Newton's method, started from
        the previous solution (the searched ``nu`` move little)."""
        u = start["u"]
        nu_t = nu[:, None, None]
        for _ in range(_NEWTON_STEPS):
            w = nu_t * np.exp(u)[:, None, None]
            share = w / (w + lam)
            grad = (0.5 * (nu_t * (1.0 - share) - n_t * share)).sum(axis=(1, 2))
            curv = -(0.5 * (nu_t + n_t) * share * (1.0 - share)).sum(axis=(1, 2))
            grad += 0.5 * nu * (d - np.exp(u) * trace_star)
            curv -= 0.5 * nu * np.exp(u) * trace_star
            step = np.clip(-grad / curv, -2.0, 2.0)
            u = u + step
            if np.max(np.abs(step)) < 1e-10:
                break
        start["u"] = u
        return u

    def f(log_excess):
        nu = d - 1 + np.exp(log_excess)
        return value(nu, best_log_scale(nu))

    def derivatives(log_excess):
        """First and second derivatives of ``f``: with ``u`` maximised,
        ``f' = V_nu`` and ``f'' = V_nu,nu - V_nu,u**2 / V_u,u``."""
        excess = np.exp(log_excess)
        nu = d - 1 + excess
        u = best_log_scale(nu)
        nu_t = nu[:, None, None]
        w = nu_t * np.exp(u)[:, None, None]
        share = w / (w + lam)
        rest = lam / (w + lam)
        v_nu = (-0.5 * np.log1p(lam / w) + 0.5 * rest
                - 0.5 * n_t / nu_t * share).sum(axis=(1, 2))
        v_nunu = (0.5 * rest**2 / nu_t
                  + 0.5 * n_t * share**2 / nu_t**2).sum(axis=(1, 2))
        v_uu = -(0.5 * (nu_t + n_t) * share * rest).sum(axis=(1, 2))
        v_nuu = (0.5 * rest**2 - 0.5 * n_t / nu_t * share * rest).sum(axis=(1, 2))
        half_nu = nu[:, None] / 2.0
        v_nu += 0.5 * (multiplicity * (_multidigamma(half_nu + sizes / 2.0, d)
                                       - _multidigamma(half_nu, d))).sum(1)
        v_nunu += 0.25 * (multiplicity * (
            _multitrigamma(half_nu + sizes / 2.0, d)
            - _multitrigamma(half_nu, d))).sum(1)
        scale_u = np.exp(u) * trace_star
        half_m = (nu + d + 1) / 2.0
        v_nu += (0.5 * (d * (np.log(nu) + u) + logdet_B) + 0.5 * d
                 - 0.5 * scale_u - 0.5 * d * np.log(2.0) - 0.5 * logdet_star
                 - 0.5 * _multidigamma(half_m, d))
        v_nunu += 0.5 * d / nu - 0.25 * _multitrigamma(half_m, d)
        v_uu -= 0.5 * nu * scale_u
        v_nuu += 0.5 * d - 0.5 * scale_u
        f_nunu = v_nunu - v_nuu**2 / v_uu
        return excess * v_nu, excess * v_nu + excess**2 * f_nunu

    return f, derivatives, best_log_scale, B


def _dof_step(prior, stats, hyper_cov):
    d = prior.mean.shape[-1]
    f, derivatives, best_log_scale, B = _dof_objective(prior, stats, hyper_cov)
    lo = np.full_like(prior.dof, np.log(DOF_EXCESS_BOUNDS[0]))
    hi = np.full_like(prior.dof, np.log(DOF_EXCESS_BOUNDS[1]))
    current = np.log(prior.dof - d + 1)
    found = _maximise_1d(f, derivatives, lo, hi, current)
    dof = d - 1 + np.exp(found)
    # at the current dof, the scale is re-optimised too (never worse)
    u = best_log_scale(dof)
    scale = (dof * np.exp(u))[:, None, None] * B
    return prior._replace(dof=dof, scale=scale)


def initial_prior(stats, hyper_cov):
    """Start: the pooled mean, ``kappa0 = 1``, ``nu0 = d + 2``, ``E[Sigma] =
    Sigma_star``."""
    P, _, d = stats.means.shape
    weights = stats.counts / stats.counts.sum()
    mean = np.einsum("t,pti->pi", weights, stats.means)
    dof = np.full(P, d + 2.0)
    return NIWPrior(mean, np.ones(P), dof, dof[:, None, None] * hyper_cov)


def _cycle(prior, stats, hyper_cov, hyper_precision):
    """One pass of the four ascent steps."""
    prior = _mean_step(prior, stats)
    prior = _scale_step(prior, stats, hyper_precision)
    prior = _kappa_step(prior, stats)
    return _dof_step(prior, stats, hyper_cov)


def _pack(prior, root):
    """Unconstrained coordinates of the hyper-parameters, in units of the
    data (``root`` is the square root of the hyperprior's diagonal)."""
    d = prior.mean.shape[-1]
    rows, cols = np.tril_indices(d)
    L = _cholesky(prior.scale / (root[:, :, None] * root[:, None, :]))
    L[:, np.arange(d), np.arange(d)] = np.log(np.diagonal(L, axis1=1, axis2=2))
    return np.concatenate([
        prior.mean / root, np.log(prior.kappa)[:, None],
        np.log(prior.dof - d + 1)[:, None], L[:, rows, cols]], axis=1)


def _unpack(theta, root):
    d = root.shape[1]
    rows, cols = np.tril_indices(d)
    P = theta.shape[0]
    L = np.zeros((P, d, d))
    L[:, rows, cols] = theta[:, d + 2:]
    diagonal = np.clip(np.diagonal(L, axis1=1, axis2=2), -300.0, 300.0)
    L[:, np.arange(d), np.arange(d)] = np.exp(diagonal)
    scale = (L @ np.swapaxes(L, 1, 2)) * (root[:, :, None] * root[:, None, :])
    kappa = np.exp(np.clip(theta[:, d], *np.log(KAPPA_BOUNDS)))
    dof = d - 1 + np.exp(np.clip(theta[:, d + 1], *np.log(DOF_EXCESS_BOUNDS)))
    return NIWPrior(theta[:, :d] * root, kappa, dof, _symmetric(scale))


def _select(take, new, old):
    """Per problem, ``new`` where ``take`` else ``old``."""
    return NIWPrior(*(np.where(take.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
                      for a, b in zip(new, old)))


def _with_covariance_floor(stats, hyper_cov):
    """``stats`` with ``COVARIANCE_FLOOR`` times a reference variance of
    each feature added to the covariance of every task whose rows have no
    spread along some direction (its scatter grows by ``n_t`` times that);
    also the features' pooled within-task and overall variances, and per
    problem whether some task was floored.

    Such rows -- identical rows, a feature constant within the task, every
    task's rows in one subspace (one-hot columns), a task of one row -- leave
    the empirical Bayes objective without a maximum: ``Psi0`` shrinking to
    zero along that direction makes the task's evidence grow without bound,
    faster than the other tasks' and the hyperprior's fall, and the ascent
    ends in a singular ``Psi0``. The floor bounds it there (as
    ``GaussianMixture``'s ``reg_covar``, scale-free), and leaves the tasks
    whose scatter is of full rank exactly as they are. The reference is the
    feature's pooled within-task variance, so that tasks far apart relative
    to their own spread are fitted as they are; where that is below
    ``COVARIANCE_FLOOR`` times the feature's variance over all rows
    (``Sigma_star``; a feature constant within every task), that floor.
    """
    flat, within, total, reference = _without_spread(stats, hyper_cov)
    floored = flat.any(axis=1)
    if not floored.any():
        return stats, within, total, floored
    diagonal = np.arange(stats.scatters.shape[-1])
    floor = (COVARIANCE_FLOOR * reference[:, None, :]
             * (flat * stats.counts[None, :])[..., None])
    scatters = stats.scatters.copy()
    scatters[..., diagonal, diagonal] += floor
    return stats._replace(scatters=scatters), within, total, floored


def tasks_without_spread(stats, hyper_cov):
    """``(P, T)``: whether task ``t``'s rows have no spread along some
    direction of problem ``p`` (see :func:`_with_covariance_floor`)."""
    return _without_spread(stats, hyper_cov)[0]


def _without_spread(stats, hyper_cov):
    """The floor's rule: ``(flat, within, total, reference)``, ``flat``
    ``(P, T)`` as :func:`tasks_without_spread`; the features' pooled
    within-task and overall variances, and the reference variance between
    them (see :func:`_with_covariance_floor`)."""
    rows = max(float(stats.counts.sum()), 1.0)
    d = stats.scatters.shape[-1]
    diagonal = np.arange(d)
    within = stats.scatters[..., diagonal, diagonal].sum(axis=1) / rows
    total = np.diagonal(hyper_cov, axis1=1, axis2=2)
    reference = np.maximum(within, COVARIANCE_FLOOR * total)
    # the scatters in units of the reference, per row of their task: a
    # direction without spread shows as an eigenvalue at rounding level
    root = 1.0 / np.sqrt(reference)
    scaled = (stats.scatters * root[:, None, :, None] * root[:, None, None, :]
              / np.maximum(stats.counts, 1.0)[None, :, None, None])
    if d == 1:
        eigenvalues, smallest = scaled[..., 0], np.ones(scaled.shape[:-1])
    else:
        eigenvalues, vectors = np.linalg.eigh(scaled)
        smallest = vectors[..., 0]
    # rows far from zero centre with rounding errors (rows equal to 1e10 are
    # off their mean by about 1e-6), which read as spread along the
    # smallest eigenvector as far as it points at such features
    rounding = (_CENTRING_ROUNDING * np.finfo(float).eps) ** 2 * np.sum(
        smallest**2 * stats.means**2 / reference[:, None, :], axis=-1)
    flat = eigenvalues[..., 0] <= np.maximum(
        _SPREAD_RTOL * np.maximum(eigenvalues[..., -1], 1.0), rounding)
    return flat, within, total, reference


def _collapsed(prior, within, total):
    """Per problem, whether ``Psi0 / nu0`` has an eigenvalue within a
    hundred times ``COVARIANCE_FLOOR`` in units of the features' pooled
    within-task variances (of their variances over all rows where the former
    are within the floor of them, as features constant within every task:
    the same switch as the floor's reference)."""
    reference = np.where(within > COVARIANCE_FLOOR * total, within, total)
    root = 1.0 / np.sqrt(reference)
    typical = (prior.scale / prior.dof[:, None, None]
               * root[:, :, None] * root[:, None, :])
    smallest = (typical[:, 0, 0] if typical.shape[-1] == 1
                else np.linalg.eigvalsh(typical)[:, 0])
    return smallest <= 100.0 * COVARIANCE_FLOOR


def fit_empirical_bayes(stats, hyper_cov, *, max_iter, tol, verbose=0,
                        owner="MetaGaussianDensity"):
    """Maximise the empirical Bayes objective.

    The ascent cycles (mean, scale, kappa, dof steps) are accelerated by
    SQUAREM (Varadhan & Roland, 2008, scheme S3) in unconstrained
    coordinates: from two cycles ``theta1 = F(theta0)``, ``theta2 =
    F(theta1)`` it extrapolates along ``r = theta1 - theta0`` and ``v =
    theta2 - 2 theta1 + theta0`` and applies one more cycle there; the
    result is kept, problem by problem, only where it beats ``theta2``,
    so the objective never decreases. This matters when the tasks are
    nearly identical: the cycles then move ``kappa0`` and ``nu0`` toward
    their large limit by small steps. Stops when no problem's objective,
    divided by the number of rows, increased by more than ``tol`` in an
    iteration.

    The objective maximised is that of the tasks' rows with a floor added to
    the covariance of tasks whose rows have no spread along some direction
    (see :func:`_with_covariance_floor`); the task
    posteriors the callers compute from the rows' own statistics are left
    exact.
    """
    stats, within, total, floored = _with_covariance_floor(stats, hyper_cov)
    prior = initial_prior(stats, hyper_cov)
    hyper_precision = _spd_inverse(hyper_cov)
    root = np.sqrt(np.diagonal(hyper_cov, axis1=1, axis2=2))
    current = objective(prior, stats, hyper_cov)
    n_rows = max(stats.counts.sum(), 1.0)
    converged = False
    n_iter = 0
    gain = np.inf
    for n_iter in range(1, max_iter + 1):
        first = _cycle(prior, stats, hyper_cov, hyper_precision)
        second = _cycle(first, stats, hyper_cov, hyper_precision)
        theta0 = _pack(prior, root)
        r = _pack(first, root) - theta0
        v = _pack(second, root) - theta0 - 2 * r
        norm_r = np.linalg.norm(r, axis=1)
        norm_v = np.linalg.norm(v, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(norm_v > 0, -norm_r / norm_v, -1.0)
        alpha = np.minimum(alpha, -1.0)[:, None]
        jump = _unpack(theta0 - 2 * alpha * r + alpha**2 * v, root)
        with np.errstate(all="ignore"):
            try:
                jumped = _cycle(jump, stats, hyper_cov, hyper_precision)
                value = objective(jumped, stats, hyper_cov)
            except np.linalg.LinAlgError:
                jumped, value = second, np.full(len(alpha), -np.inf)
        value_second = objective(second, stats, hyper_cov)
        take = np.isfinite(value) & (value >= value_second)
        prior = _select(take, jumped, second)
        new = np.where(take, value, value_second)
        gain = np.max((new - current) / n_rows)
        current = new
        if verbose:
            print(f"[{owner}] iteration {n_iter}: objective per row "
                  f"{current.sum() / n_rows:.8f} (gain {gain:.3e})")
        if gain <= tol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"{owner}: empirical Bayes did not converge in max_iter="
            f"{max_iter} iterations (last gain per row {gain:.3e} > tol="
            f"{tol}); increase max_iter.", ConvergenceWarning, stacklevel=2)
    # only where some task was floored: tasks far apart relative to their
    # own spread have a small typical covariance, and it is theirs
    return EBResult(prior, current, n_iter, converged,
                    floored & _collapsed(prior, within, total))
