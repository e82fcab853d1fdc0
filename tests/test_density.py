"""MetaGaussianDensity and TaskGaussianDensity against closed forms.

References: the Normal-inverse-Wishart posterior and evidence as written in
Murphy (2007), "Conjugate Bayesian analysis of the Gaussian distribution",
section 9, coded here again task by task; scipy's multivariate Student t;
the chain rule of the evidence and a numerical integral; data drawn from the
model with known hyper-parameters; scikit-learn's Ledoit-Wolf and pooled
covariance as anomaly detectors.
"""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate, stats
from scipy.special import multigammaln
from sklearn.covariance import EmpiricalCovariance, LedoitWolf
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from skmeta import MetaGaussianDensity, TaskGaussianDensity, _niw
from skmeta.datasets import make_meta_anomalies

pytestmark = pytest.mark.filterwarnings(
    "error::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------------
# references, written from the textbook formulas one task at a time
# --------------------------------------------------------------------------
def murphy_posterior(X, mu0, kappa0, nu0, psi0):
    """Murphy (2007) eqs. 251-254 for the rows ``X`` of one task."""
    n = X.shape[0]
    xbar = X.mean(axis=0) if n else np.zeros_like(mu0)
    S = (X - xbar).T @ (X - xbar)
    kappa_n = kappa0 + n
    nu_n = nu0 + n
    mu_n = (kappa0 * mu0 + n * xbar) / kappa_n
    psi_n = psi0 + S + kappa0 * n / kappa_n * np.outer(xbar - mu0, xbar - mu0)
    return mu_n, kappa_n, nu_n, psi_n


def murphy_log_evidence(X, mu0, kappa0, nu0, psi0):
    """Murphy (2007) eq. 266."""
    n, d = X.shape
    _, kappa_n, nu_n, psi_n = murphy_posterior(X, mu0, kappa0, nu0, psi0)
    return (-n * d / 2 * np.log(np.pi)
            + multigammaln(nu_n / 2, d) - multigammaln(nu0 / 2, d)
            + nu0 / 2 * np.linalg.slogdet(psi0)[1]
            - nu_n / 2 * np.linalg.slogdet(psi_n)[1]
            + d / 2 * np.log(kappa0 / kappa_n))


def predictive_t(mu_n, kappa_n, nu_n, psi_n):
    """Murphy (2007) eq. 258 as a scipy distribution."""
    d = mu_n.shape[0]
    df = nu_n - d + 1
    return stats.multivariate_t(loc=mu_n, shape=psi_n * (kappa_n + 1)
                                / (kappa_n * df), df=df)


def random_spd(rng, d, scale=1.0):
    A = rng.normal(size=(d, d))
    return scale * (A @ A.T / d + np.eye(d))


def niw_tasks(rng, n_tasks, sizes, mu0, kappa0, nu0, psi0):
    """Rows of tasks drawn from NIW(mu0, kappa0, nu0, psi0)."""
    d = mu0.shape[0]
    sizes = np.broadcast_to(sizes, (n_tasks,))
    sigma = stats.invwishart(df=nu0, scale=psi0).rvs(size=n_tasks,
                                                     random_state=rng)
    sigma = sigma.reshape(n_tasks, d, d)
    roots = np.linalg.cholesky(sigma)
    means = mu0 + np.einsum("tij,tj->ti", roots,
                            rng.normal(size=(n_tasks, d))) / np.sqrt(kappa0)
    tasks = np.repeat(np.arange(n_tasks), sizes)
    X = means[tasks] + np.einsum("nij,nj->ni", roots[tasks],
                                 rng.normal(size=(tasks.size, d)))
    return X, tasks


@pytest.fixture(scope="module")
def fleet():
    """A fitted MetaGaussianDensity on 40 tasks of 3 features."""
    rng = np.random.default_rng(0)
    mu0 = np.array([1.0, -2.0, 0.5])
    psi0 = random_spd(rng, 3) * 4.0
    sizes = rng.integers(2, 25, size=40)
    X, tasks = niw_tasks(rng, 40, sizes, mu0, 0.7, 9.0, psi0)
    perm = rng.permutation(X.shape[0])
    X, tasks = X[perm], tasks[perm]
    det = MetaGaussianDensity().fit(X, tasks=tasks)
    return X, tasks, det


def learned_prior(det):
    return (det.mean_prior_, det.mean_precision_prior_,
            det.degrees_of_freedom_prior_, det.covariance_prior_)


# --------------------------------------------------------------------------
# conjugate algebra
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_posterior_matches_textbook_and_sequential_updates(n):
    rng = np.random.default_rng(n)
    d = 3
    mu0, kappa0, nu0 = rng.normal(size=d), 0.8, d + 1.5
    psi0 = random_spd(rng, d)
    X = rng.normal(size=(n, d)) * 2 + 1
    prior = _niw.NIWPrior(mu0[None], np.array([kappa0]), np.array([nu0]),
                          psi0[None])
    codes = np.zeros(n, dtype=np.intp)
    stats_ = _niw.full_stats(*_niw.task_statistics(X, codes, 1))
    post = _niw.posterior(prior, stats_)
    mu_n, kappa_n, nu_n, psi_n = murphy_posterior(X, mu0, kappa0, nu0, psi0)
    assert_allclose(post.mean[0, 0], mu_n, rtol=1e-12, atol=1e-12)
    assert_allclose(post.kappa[0, 0], kappa_n)
    assert_allclose(post.dof[0, 0], nu_n)
    assert_allclose(post.scale[0, 0], psi_n, rtol=1e-12, atol=1e-12)
    # conjugacy: updating row by row ends where the batch update does
    seq = (mu0, kappa0, nu0, psi0)
    for row in X:
        seq = murphy_posterior(row[None], *seq)
    for a, b in zip(seq, (mu_n, kappa_n, nu_n, psi_n)):
        assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_task_statistics_of_shuffled_rows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 4)) * [1, 10, 100, 0.1] + 1e3
    codes = rng.integers(0, 6, size=50)
    counts, means, scatters = _niw.task_statistics(X, codes, 7)
    _, _, squares = _niw.task_statistics(X, codes, 7, diagonal=True)
    for t in range(7):
        rows = X[codes == t]
        assert counts[t] == rows.shape[0]
        if rows.shape[0]:
            assert_allclose(means[t], rows.mean(0), rtol=1e-13)
            centred = rows - rows.mean(0)
            assert_allclose(scatters[t], centred.T @ centred, rtol=1e-10,
                            atol=1e-9)
            assert_allclose(squares[t], (centred**2).sum(0), rtol=1e-10,
                            atol=1e-9)
        else:  # a task without rows
            assert_array_equal(means[t], 0)
            assert_array_equal(scatters[t], 0)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_evidence_is_the_product_of_sequential_predictives(n):
    """p(x_1..x_n) = prod_i p(x_i | x_<i), each a multivariate t."""
    rng = np.random.default_rng(10 + n)
    d = 2
    mu0, kappa0, nu0, psi0 = rng.normal(size=d), 1.3, 2.5, random_spd(rng, d)
    X = rng.normal(size=(n, d))
    chain = 0.0
    params = (mu0, kappa0, nu0, psi0)
    for row in X:
        chain += predictive_t(*params).logpdf(row)
        params = murphy_posterior(row[None], *params)
    prior = _niw.NIWPrior(mu0[None], np.array([kappa0]), np.array([nu0]),
                          psi0[None])
    stats_ = _niw.full_stats(*_niw.task_statistics(
        X, np.zeros(n, dtype=np.intp), 1))
    assert_allclose(_niw.log_evidence(prior, stats_)[0, 0], chain, rtol=1e-10)
    assert_allclose(murphy_log_evidence(X, mu0, kappa0, nu0, psi0), chain,
                    rtol=1e-10)


def test_evidence_against_numerical_integration():
    """d = 1: integrate N(x | m, s2) NIG(m, s2) over the mean and the log
    variance on a fine grid (trapezoids converge fast on this smooth,
    quickly decaying integrand)."""
    x = np.array([0.3, 1.1, -0.4])
    mu0, kappa0, nu0, psi0 = 0.2, 0.7, 3.0, 2.0
    m = np.linspace(-15.0, 15.0, 1501)[:, None]
    u = np.linspace(-12.0, 12.0, 1501)[None, :]
    s2 = np.exp(u)

    def log_normal(z, mean, var):
        return -0.5 * (np.log(2 * np.pi * var) + (z - mean) ** 2 / var)

    # IW(psi0, nu0) in one dimension is InvGamma(nu0 / 2, psi0 / 2); the
    # log-variance change of variables contributes ds2 = s2 du
    log_f = (sum(log_normal(xi, m, s2) for xi in x)
             + log_normal(m, mu0, s2 / kappa0)
             + stats.invgamma.logpdf(s2, a=nu0 / 2, scale=psi0 / 2) + u)
    peak = log_f.max()
    inner = integrate.trapezoid(np.exp(log_f - peak), u[0], axis=1)
    value = np.log(integrate.trapezoid(inner, m[:, 0])) + peak
    prior = _niw.NIWPrior(np.array([[mu0]]), np.array([kappa0]),
                          np.array([nu0]), np.array([[[psi0]]]))
    stats_ = _niw.full_stats(*_niw.task_statistics(
        x[:, None], np.zeros(3, dtype=np.intp), 1))
    assert_allclose(_niw.log_evidence(prior, stats_)[0, 0], value, rtol=1e-7)


def test_student_t_tail_is_the_f_distribution():
    """Under the predictive, m / d ~ F(d, df): check by simulation."""
    rng = np.random.default_rng(3)
    d, df = 3, 4.5
    shape = random_spd(rng, d)
    dist = stats.multivariate_t(loc=np.zeros(d), shape=shape, df=df, seed=4)
    draws = dist.rvs(size=20000)
    m = np.einsum("ni,ij,nj->n", draws, np.linalg.inv(shape), draws)
    for level in [0.01, 0.1, 0.5]:
        threshold = _niw.student_t_tail_quantile(level, np.array([df]), d)[0]
        frequency = np.mean(m >= threshold)
        assert abs(frequency - level) < 4 * np.sqrt(level * (1 - level) / 20000)


# --------------------------------------------------------------------------
# the estimators' scores against scipy
# --------------------------------------------------------------------------
def test_task_scores_are_the_posterior_predictive(fleet):
    X, tasks, det = fleet
    prior = learned_prior(det)
    rng = np.random.default_rng(5)
    X_new = rng.normal(size=(12, 3)) * 3
    for t in [0, 7, 39]:
        mu_n, kappa_n, nu_n, psi_n = murphy_posterior(X[tasks == t], *prior)
        assert_allclose(det.means_[t], mu_n, rtol=1e-10)
        assert_allclose(det.covariances_[t], psi_n / nu_n, rtol=1e-10)
        assert_allclose(det.mean_precision_[t], kappa_n)
        assert_allclose(det.degrees_of_freedom_[t], nu_n)
        expected = predictive_t(mu_n, kappa_n, nu_n, psi_n).logpdf(X_new)
        got = det.score_samples(X_new, tasks=np.full(12, t))
        assert_allclose(got, expected, rtol=1e-10)


def test_unseen_task_gets_the_prior_predictive(fleet):
    """Zero rows: the limit of the shrinkage is the prior."""
    _, _, det = fleet
    mu0, kappa0, nu0, psi0 = learned_prior(det)
    X_new = np.random.default_rng(6).normal(size=(9, 3))
    expected = predictive_t(mu0, kappa0, nu0, psi0).logpdf(X_new)
    got = det.score_samples(X_new, tasks=np.full(9, 1000))
    assert_allclose(got, expected, rtol=1e-10)
    # mixing seen and unseen tasks in one call changes nothing
    labels = np.array([1000, 3] * 4 + [1000])
    mixed = det.score_samples(X_new, tasks=labels)
    assert_allclose(mixed[labels == 1000], expected[labels == 1000])
    assert_allclose(mixed[labels == 3],
                    det.score_samples(X_new[labels == 3], tasks=np.full(4, 3)))


def test_many_rows_give_the_task_sample_mean_and_covariance():
    rng = np.random.default_rng(7)
    mu0, psi0 = np.zeros(2), random_spd(rng, 2) * 3.0
    X, tasks = niw_tasks(rng, 30, 8, mu0, 1.0, 6.0, psi0)
    big = rng.multivariate_normal([5.0, -3.0], [[2.0, 0.9], [0.9, 1.0]],
                                  size=200000)
    X = np.vstack([X, big])
    tasks = np.r_[tasks, np.full(big.shape[0], 99)]
    det = MetaGaussianDensity().fit(X, tasks=tasks)
    assert_allclose(det.means_[-1], big.mean(0), rtol=1e-4, atol=1e-4)
    assert_allclose(det.covariances_[-1], np.cov(big.T, bias=True), rtol=1e-3,
                    atol=1e-3)
    # and then its predictive is the plug-in Gaussian
    X_new = rng.normal(size=(5, 2)) + [5.0, -3.0]
    gaussian = stats.multivariate_normal(big.mean(0), np.cov(big.T, bias=True))
    assert_allclose(det.score_samples(X_new, tasks=np.full(5, 99)),
                    gaussian.logpdf(X_new), rtol=1e-3)


def test_adapt_is_the_posterior_under_the_learned_prior(fleet):
    X, tasks, det = fleet
    rng = np.random.default_rng(8)
    X_task = rng.normal(size=(6, 3)) + [1.0, -2.0, 0.5]
    model = det.adapt(X_task)
    assert isinstance(model, TaskGaussianDensity)
    mu_n, kappa_n, nu_n, psi_n = murphy_posterior(X_task, *learned_prior(det))
    assert_allclose(model.mean_, mu_n, rtol=1e-12)
    assert_allclose(model.covariance_, psi_n / nu_n, rtol=1e-12)
    X_new = rng.normal(size=(10, 3))
    assert_allclose(model.score_samples(X_new),
                    predictive_t(mu_n, kappa_n, nu_n, psi_n).logpdf(X_new),
                    rtol=1e-10)
    # the same as fitting the public class with the learned prior
    refit = TaskGaussianDensity(
        mean_prior=det.mean_prior_,
        mean_precision_prior=det.mean_precision_prior_,
        covariance_prior=det.covariance_prior_,
        degrees_of_freedom_prior=det.degrees_of_freedom_prior_,
        tail_probability=det.tail_probability_).fit(X_task)
    for method in ["score_samples", "decision_function", "predict"]:
        assert_allclose(getattr(model, method)(X_new),
                        getattr(refit, method)(X_new))
    for name, value in refit.get_params().items():
        assert_allclose(model.get_params()[name], value)
    assert_allclose(model.offset_, refit.offset_)
    # a training task's rows give back that task's model
    seen = det.adapt(X[tasks == 5])
    assert_allclose(seen.score_samples(X_new),
                    det.score_samples(X_new, tasks=np.full(10, 5)), rtol=1e-10)


def test_adapt_several_tasks_and_pickling(fleet):
    X, tasks, det = fleet
    models = det.adapt_tasks(X[tasks < 3], tasks=np.array(["a", "b", "c"])[
        tasks[tasks < 3]])
    assert sorted(models) == ["a", "b", "c"]
    X_new = np.random.default_rng(9).normal(size=(4, 3))
    for label, t in zip("abc", range(3)):
        single = det.adapt(X[tasks == t])
        assert_allclose(models[label].score_samples(X_new),
                        single.score_samples(X_new))
    restored = pickle.loads(pickle.dumps(models["b"]))
    assert_allclose(restored.decision_function(X_new),
                    models["b"].decision_function(X_new))
    restored_meta = pickle.loads(pickle.dumps(det))
    assert_allclose(restored_meta.score_samples(X_new, tasks=np.full(4, 2)),
                    det.score_samples(X_new, tasks=np.full(4, 2)))


# --------------------------------------------------------------------------
# empirical Bayes
# --------------------------------------------------------------------------
def _fitted_stats(X, tasks):
    codes = np.unique(tasks, return_inverse=True)[1]
    stats_ = _niw.full_stats(*_niw.task_statistics(X, codes, codes.max() + 1))
    hyper = np.diag(X.var(axis=0))[None]
    return stats_, hyper


def test_every_ascent_step_increases_the_objective():
    rng = np.random.default_rng(11)
    X, tasks = niw_tasks(rng, 60, rng.integers(1, 12, size=60), np.ones(3),
                         0.5, 7.0, random_spd(rng, 3))
    stats_, hyper = _fitted_stats(X, tasks)
    prior = _niw.initial_prior(stats_, hyper)
    hyper_precision = np.linalg.inv(hyper)
    value = _niw.objective(prior, stats_, hyper)[0]
    for _ in range(5):
        for step in [
            lambda p: _niw._mean_step(p, stats_),
            lambda p: _niw._scale_step(p, stats_, hyper_precision),
            lambda p: _niw._kappa_step(p, stats_),
            lambda p: _niw._dof_step(p, stats_, hyper),
        ]:
            prior = step(prior)
            new = _niw.objective(prior, stats_, hyper)[0]
            assert new >= value - 1e-9 * abs(value)
            value = new


@pytest.mark.parametrize("d", [1, 3])
def test_scalar_steps_derivatives_against_finite_differences(d):
    """The closed-form derivatives driving the kappa0 and nu0 searches."""
    rng = np.random.default_rng(21)
    sizes = rng.integers(0, 10, size=30)
    X = rng.normal(size=(sizes.sum(), d)) * 2
    codes = np.repeat(np.arange(30), sizes)
    stats_ = _niw.full_stats(*_niw.task_statistics(X, codes, 30))
    hyper = np.diag(X.var(axis=0))[None]
    prior = _niw.initial_prior(stats_, hyper)._replace(
        kappa=np.array([0.7]), dof=np.array([d + 1.3]))
    kappa_f, kappa_d = _niw._kappa_objective(prior, stats_)
    dof_f, dof_d, best_log_scale, B = _niw._dof_objective(prior, stats_, hyper)
    h = 1e-4
    for f, derivatives in [(kappa_f, kappa_d), (dof_f, dof_d)]:
        for x in [-3.0, 0.0, 0.5, 2.0, 6.0]:
            x = np.array([x])
            first, second = derivatives(x)
            assert_allclose(first, (f(x + h) - f(x - h)) / (2 * h), rtol=1e-6,
                            atol=1e-6)
            assert_allclose(second, (derivatives(x + h)[0]
                                     - derivatives(x - h)[0]) / (2 * h),
                            rtol=1e-5, atol=1e-6)
    # the dof objective is the exact objective at the profiled scale
    nu = np.array([d + 2.5])
    u = best_log_scale(nu)
    profiled = prior._replace(dof=nu, scale=(nu * np.exp(u))[:, None, None] * B)
    shift = (_niw.objective(profiled, stats_, hyper)
             - dof_f(np.log(nu - d + 1)))
    nu2 = np.array([d + 7.0])
    u2 = best_log_scale(nu2)
    profiled2 = prior._replace(dof=nu2,
                               scale=(nu2 * np.exp(u2))[:, None, None] * B)
    assert_allclose(_niw.objective(profiled2, stats_, hyper)
                    - dof_f(np.log(nu2 - d + 1)), shift, rtol=1e-9)


def test_empirical_bayes_is_a_maximum_of_the_exact_objective(fleet):
    """No perturbation of any hyper-parameter increases the objective,
    computed from the textbook evidence task by task and scipy's Wishart
    density for the hyperprior ``Psi0 ~ W(diag(var(X)), nu0 + d + 1)``."""
    X, tasks, det = fleet
    v = np.diag(X.var(axis=0))
    labels = np.unique(tasks)

    def total(mu0, kappa0, nu0, psi0):
        evidence = sum(murphy_log_evidence(X[tasks == t], mu0, kappa0, nu0,
                                           psi0) for t in labels)
        hyper = stats.wishart(df=nu0 + 4, scale=v).logpdf(psi0)
        return evidence + hyper

    mu0, kappa0, nu0, psi0 = learned_prior(det)
    best = total(mu0, kappa0, nu0, psi0)
    L = np.linalg.cholesky(psi0)
    eps = 1e-3
    for sign in [-1, 1]:
        for j in range(3):
            e = np.zeros(3)
            e[j] = eps * sign * np.sqrt(psi0[j, j] / nu0)
            assert total(mu0 + e, kappa0, nu0, psi0) <= best + 1e-7
        assert total(mu0, kappa0 * np.exp(sign * eps), nu0, psi0) <= best + 1e-7
        nu = 2 + (nu0 - 2) * np.exp(sign * eps)
        assert total(mu0, kappa0, nu, psi0) <= best + 1e-7
        for i, j in zip(*np.tril_indices(3)):
            Lp = L.copy()
            Lp[i, j] += sign * eps * L[i, i]
            assert total(mu0, kappa0, nu0, Lp @ Lp.T) <= best + 1e-7


def test_empirical_bayes_recovers_known_hyper_parameters():
    rng = np.random.default_rng(12)
    d = 2
    mu0 = np.array([3.0, -1.0])
    kappa0, nu0 = 0.5, 8.0
    psi0 = np.array([[2.0, 0.6], [0.6, 1.0]]) * (nu0 - d - 1)
    errors = {}
    for n_tasks in [50, 3000]:
        X, tasks = niw_tasks(rng, n_tasks, rng.integers(3, 15, size=n_tasks),
                             mu0, kappa0, nu0, psi0)
        det = MetaGaussianDensity().fit(X, tasks=tasks)
        errors[n_tasks] = np.array([
            np.abs(det.mean_prior_ - mu0).max(),
            abs(np.log(det.mean_precision_prior_ / kappa0)),
            abs(np.log(det.degrees_of_freedom_prior_ / nu0)),
            np.abs(det.covariance_prior_ / det.degrees_of_freedom_prior_
                   - psi0 / nu0).max(),
        ])
    assert np.all(errors[3000] < [0.15, 0.1, 0.1, 0.03])
    assert np.all(errors[3000] < errors[50])


def test_one_task_is_fitted_and_scores_like_a_shrunk_gaussian():
    """Without task identities: one task, a finite prior from the hyperprior,
    the task's sample mean, a covariance between the sample covariance and
    its diagonal."""
    rng = np.random.default_rng(13)
    X = rng.multivariate_normal([1.0, 2.0], [[1.0, 0.8], [0.8, 1.0]], size=300)
    det = MetaGaussianDensity().fit(X)
    assert det.tasks_ is None and det.means_.shape == (1, 2)
    assert_allclose(det.means_[0], X.mean(0), atol=1e-6)
    sample = np.cov(X.T, bias=True)
    cov = det.covariances_[0]
    assert_allclose(np.diag(cov), np.diag(sample), rtol=0.05)
    assert 0 < cov[0, 1] < sample[0, 1]
    assert isinstance(det.offset_, float)


def test_convergence_warning_when_max_iter_is_too_small(fleet):
    X, tasks, _ = fleet
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        det = MetaGaussianDensity(max_iter=1, tol=0.0).fit(X, tasks=tasks)
    assert det.n_iter_ == 1


# --------------------------------------------------------------------------
# outliers
# --------------------------------------------------------------------------
def test_thresholds_follow_the_tail_probability(fleet):
    X, tasks, det = fleet
    d = 3
    # training rows: the contamination fraction is predicted as outliers
    assert np.mean(det.predict(X, tasks=tasks) == -1) == pytest.approx(
        det.contamination, abs=1.0 / X.shape[0])
    # decision = log density - the threshold of the row's task
    assert_allclose(det.decision_function(X, tasks=tasks),
                    det.score_samples(X, tasks=tasks) - det.offset_[tasks])
    # the threshold is where the predictive tail probability is the level
    rng = np.random.default_rng(14)
    X_new = rng.normal(size=(200, 3)) * 3 + det.mean_prior_
    for t in [2, 1000]:
        if t == 1000:
            params = learned_prior(det)
        else:
            params = murphy_posterior(X[tasks == t], *learned_prior(det))
        dist = predictive_t(*params)
        diff = X_new - dist.loc
        m = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(dist.shape), diff)
        tail = stats.f.sf(m / d, d, dist.df)
        pred = det.predict(X_new, tasks=np.full(200, t))
        assert_array_equal(pred == 1, tail >= det.tail_probability_)


def test_task_model_flags_its_level_of_new_normal_rows():
    rng = np.random.default_rng(15)
    X = rng.normal(size=(8, 2))
    model = TaskGaussianDensity(mean_prior=[0.0, 0.0], covariance_prior=np.eye(2),
                                degrees_of_freedom_prior=4.0,
                                tail_probability=0.2).fit(X)
    params = murphy_posterior(X, np.zeros(2), 1.0, 4.0, np.eye(2))
    draws = predictive_t(*params).rvs(size=20000, random_state=16)
    rate = np.mean(model.predict(draws) == -1)
    assert abs(rate - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20000)


def test_scores_are_equivariant_to_feature_units(fleet):
    X, tasks, det = fleet
    a, b = np.array([10.0, 0.01, 3.0]), np.array([-5.0, 2.0, 1e3])
    scaled = MetaGaussianDensity().fit(X * a + b, tasks=tasks)
    X_new = np.random.default_rng(17).normal(size=(6, 3))
    labels = np.array([0, 1, 2, 1000, 5, 1000])
    assert_allclose(scaled.score_samples(X_new * a + b, tasks=labels),
                    det.score_samples(X_new, tasks=labels) - np.log(a).sum(),
                    rtol=1e-6)
    assert_array_equal(scaled.predict(X_new * a + b, tasks=labels),
                       det.predict(X_new, tasks=labels))
    assert_allclose(scaled.mean_precision_prior_, det.mean_precision_prior_,
                    rtol=1e-5)


# --------------------------------------------------------------------------
# task identities, inputs
# --------------------------------------------------------------------------
def test_task_column_string_labels_and_row_order(fleet):
    pd = pytest.importorskip("pandas")
    X, tasks, det = fleet
    frame = pd.DataFrame(X, columns=["temp", "vib", "load"])
    frame.insert(1, "machine", [f"m{t:02d}" for t in tasks])
    by_column = MetaGaussianDensity(task_column="machine").fit(frame)
    assert by_column.n_features_in_ == 4
    assert list(by_column.feature_names_in_) == ["temp", "machine", "vib", "load"]
    # the same fit, up to the tolerance of the empirical Bayes ascent (the
    # features come out of the frame in another memory layout)
    assert_allclose(by_column.means_, det.means_, rtol=1e-6)
    assert_allclose(by_column.log_evidence_, det.log_evidence_, rtol=1e-9)
    assert_allclose(by_column.score_samples(frame),
                    det.score_samples(X, tasks=tasks), rtol=1e-6)
    # row order does not matter
    perm = np.random.default_rng(18).permutation(X.shape[0])
    shuffled = MetaGaussianDensity().fit(X[perm], tasks=tasks[perm])
    assert_allclose(shuffled.covariance_prior_, det.covariance_prior_, rtol=1e-6)
    # adapt reads the task column too, and names the features
    models = by_column.adapt_tasks(frame.iloc[:30])
    first = models[frame["machine"].iloc[0]]
    assert list(first.feature_names_in_) == ["temp", "vib", "load"]
    # one machine's rows, task column included, give back its model alone
    head = frame.iloc[:30]
    one = head[head["machine"] == head["machine"].iloc[0]]
    single = by_column.adapt(one)
    assert isinstance(single, TaskGaussianDensity)
    assert_allclose(single.score_samples(one.drop(columns="machine")),
                    first.score_samples(one.drop(columns="machine")))


def test_adapt_fits_one_task_and_adapt_tasks_several(fleet):
    # as MetaClassifier's: adapt returns one model, adapt_tasks a dict
    X, tasks, det = fleet
    with pytest.raises(ValueError, match="adapt fits one task.*adapt_tasks"):
        det.adapt(X[tasks < 2], tasks=tasks[tasks < 2])
    with pytest.raises(ValueError, match="adapt_tasks needs task identities"):
        det.adapt_tasks(X[:10])
    labelled = det.adapt(X[tasks == 1], tasks=np.full((tasks == 1).sum(), "new"))
    assert isinstance(labelled, TaskGaussianDensity)
    models = det.adapt_tasks(X[tasks < 2], tasks=tasks[tasks < 2])
    X_new = np.random.default_rng(3).normal(size=(5, 3))
    assert_allclose(labelled.score_samples(X_new), models[1].score_samples(X_new))


def test_inputs_are_not_modified(fleet):
    X, tasks, _ = fleet
    X_copy, tasks_copy = X.copy(), tasks.copy()
    det = MetaGaussianDensity().fit(X, tasks=tasks)
    det.predict(X, tasks=tasks)
    det.adapt(X[:5])
    assert_array_equal(X, X_copy)
    assert_array_equal(tasks, tasks_copy)


def test_float32_input(fleet):
    X, tasks, det = fleet
    det32 = MetaGaussianDensity().fit(X.astype(np.float32), tasks=tasks)
    assert_allclose(det32.means_, det.means_, rtol=1e-5, atol=1e-5)
    scores = det32.score_samples(X[:5].astype(np.float32), tasks=tasks[:5])
    assert scores.dtype == np.float64


@pytest.mark.parametrize("make_error, match", [
    (lambda X, t: MetaGaussianDensity().fit(X[:1]), "1 sample"),
    (lambda X, t: MetaGaussianDensity().fit(np.c_[X, np.ones(len(X))], tasks=t),
     r"feature\(s\) \[3\] take one value"),
    (lambda X, t: MetaGaussianDensity(task_column=0).fit(X, tasks=t),
     "either through task_column or through tasks="),
    (lambda X, t: MetaGaussianDensity().fit(X, tasks=t[:-1]),
     "tasks has 199 labels but X has 200"),
    (lambda X, t: MetaGaussianDensity().fit(X, tasks=t).predict(X),
     "pass tasks= or set task_column"),
    (lambda X, t: MetaGaussianDensity().fit(X).predict(X, tasks=t),
     "fitted without task identities"),
    (lambda X, t: MetaGaussianDensity().fit(X, tasks=t).score_samples(
        X[:, :2], tasks=t), "X has 2 features"),
    (lambda X, t: TaskGaussianDensity(degrees_of_freedom_prior=2.0).fit(X),
     "must be > n_features - 1 = 2"),
    (lambda X, t: TaskGaussianDensity(covariance_prior=-np.eye(3)).fit(X),
     "symmetric positive definite"),
    (lambda X, t: TaskGaussianDensity(covariance_prior=np.eye(2)).fit(X),
     r"shape \(n_features, n_features\) = \(3, 3\)"),
    (lambda X, t: TaskGaussianDensity(mean_prior=[0, 0]).fit(X),
     r"shape \(n_features,\) = \(3,\)"),
    # a value of the right shape that is not finite: said so, not the shape
    (lambda X, t: TaskGaussianDensity(mean_prior=[np.nan, 0, 0]).fit(X),
     r"^mean_prior must be finite; got NaN"),
    (lambda X, t: TaskGaussianDensity(
        covariance_prior=np.diag([1.0, np.inf, 1.0])).fit(X),
     r"^covariance_prior must be finite; got NaN or infinite"),
    (lambda X, t: MetaGaussianDensity().fit(np.where(X > 2, np.nan, X)),
     "NaN"),
])
def test_errors(make_error, match):
    rng = np.random.default_rng(19)
    X = rng.normal(size=(200, 3))
    tasks = np.repeat(np.arange(10), 20)
    with pytest.raises(ValueError, match=match):
        make_error(X, tasks)


def test_default_task_model_prior_is_data_driven():
    """Standalone defaults: prior mean and diagonal variances of X."""
    rng = np.random.default_rng(20)
    X = rng.normal(size=(30, 2)) * [1.0, 5.0] + [2.0, -1.0]
    X[:, 1] = 3.0  # a constant column gets the mean of the other variances
    model = TaskGaussianDensity().fit(X)
    assert_allclose(model.mean_prior_, X.mean(0))
    assert model.degrees_of_freedom_prior_ == 4.0
    assert_allclose(model.covariance_prior_, np.diag([X[:, 0].var()] * 2))
    assert np.mean(model.predict(X) == -1) == pytest.approx(0.1, abs=1 / 30)


@pytest.mark.parametrize("constant", [3.0, 0.1, 0.3, 1 / 3])
def test_a_constant_column_is_told_by_its_values(constant):
    # np.var of a column of 0.3 is a rounding residue (3e-33), not 0: it
    # was kept as the prior variance, and a new row 1e-6 off scored as an
    # outlier (decision -392) where a column of 3.0 gets the others' mean
    rng = np.random.default_rng(21)
    X = np.c_[rng.normal(size=(10, 2)), np.full(10, constant)]
    model = TaskGaussianDensity().fit(X)
    others = X[:, :2].var(axis=0).mean()
    assert model.covariance_prior_[2, 2] == pytest.approx(others, rel=1e-12)
    reference = TaskGaussianDensity().fit(np.c_[X[:, :2], np.full(10, 3.0)])
    new = np.c_[X[:3, :2], np.full(3, constant + 1e-6)]
    moved = np.c_[X[:3, :2], np.full(3, 3.0 + 1e-6)]
    assert_allclose(model.decision_function(new),
                    reference.decision_function(moved), rtol=1e-6)


@pytest.mark.parametrize("dof", [1e10, 1e14, 1e18, 1e300])
def test_a_known_covariance_scores_as_the_gaussian_limit(dof):
    # degrees of freedom without bound: the covariance is known and the
    # predictive is a Gaussian. Its normaliser was a difference of two
    # log-gammas that cancels (off by 0.065 at 1e14, 61 at 1e18) and the F
    # tail NaN at 1e300 (every row an outlier)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 3))
    model = TaskGaussianDensity(
        mean_prior=np.zeros(3), covariance_prior=dof * np.eye(3),
        degrees_of_freedom_prior=dof, tail_probability=0.05).fit(X)
    kappa = model.mean_precision_
    limit = stats.multivariate_normal(
        model.mean_, model.covariance_ * (kappa + 1) / kappa)
    assert_allclose(model.score_samples(X), limit.logpdf(X), rtol=1e-8)
    # the threshold: the chi-squared limit's 95 % quantile
    m = stats.chi2.isf(0.05, 3)
    assert model.offset_ == pytest.approx(
        limit.logpdf(model.mean_) - m / 2, rel=1e-8)
    assert np.mean(model.predict(X) == -1) < 0.2


def test_a_covariance_prior_symmetric_up_to_rounding_is_accepted():
    # rebuilt from its eigendecomposition, as the covariance estimators'
    # matrices are: asymmetric by a few units of rounding
    # (entries zero in exact arithmetic come out as rounding of either sign:
    # the old relative test refused them)
    rng = np.random.default_rng(0)
    B = np.array([[2.0, 0.0, 1.0, 0.0], [0.0, 3.0, 0.0, 0.5],
                  [1.0, 0.0, 4.0, 0.0], [0.0, 0.5, 0.0, 5.0]])
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    w, U = np.linalg.eigh(Q @ B @ Q.T)
    C = Q.T @ (U @ np.diag(w) @ U.T) @ Q
    assert not np.allclose(C, C.T, rtol=1e-10, atol=0)
    X = rng.normal(size=(20, 4))
    fitted = TaskGaussianDensity(covariance_prior=C).fit(X)
    exact = TaskGaussianDensity(covariance_prior=0.5 * (C + C.T)).fit(X)
    assert_allclose(fitted.score_samples(X), exact.score_samples(X))
    with pytest.raises(ValueError, match="symmetric positive definite"):
        TaskGaussianDensity(covariance_prior=C + 1e-6 * np.triu(C, 1)).fit(X)


# --------------------------------------------------------------------------
# the target: new machines with 10 normal readings
# --------------------------------------------------------------------------
def machine_benchmark(random_state=0, n_train=200, n_new=100, n_support=10,
                      n_query=100):
    """Mean per-machine ROC AUC on new machines, for the three detectors."""
    sizes = np.r_[np.full(n_train, 40), np.full(n_new, n_support + n_query)]
    X, y, tasks = make_meta_anomalies(
        n_tasks=n_train + n_new, n_samples_per_task=sizes, n_features=5,
        contamination=0.1, random_state=random_state)
    train = tasks < n_train
    meta = MetaGaussianDensity().fit(X[train], tasks=tasks[train])
    pooled = EmpiricalCovariance().fit(X[train])
    aucs = {"meta": [], "ledoit_wolf": [], "pooled": []}
    for t in range(n_train, n_train + n_new):
        rows = np.flatnonzero(tasks == t)
        support = rows[y[rows] == 1][:n_support]
        query = np.setdiff1d(rows, support)
        aucs["meta"].append(roc_auc_score(
            y[query], meta.adapt(X[support]).score_samples(X[query])))
        aucs["ledoit_wolf"].append(roc_auc_score(
            y[query], -LedoitWolf().fit(X[support]).mahalanobis(X[query])))
        aucs["pooled"].append(roc_auc_score(y[query],
                                            -pooled.mahalanobis(X[query])))
    return {name: float(np.mean(values)) for name, values in aucs.items()}


def test_new_machines_beat_per_task_ledoit_wolf_and_pooled_covariance():
    """Training machines come unlabelled (10% anomalies among their rows);
    each new machine brings 10 normal readings."""
    auc = machine_benchmark(random_state=0)
    assert auc["meta"] >= auc["ledoit_wolf"] + 0.02
    assert auc["meta"] >= auc["pooled"] + 0.02


# --------------------------------------------------------------------------
# rows without spread along some direction
# --------------------------------------------------------------------------
def _tasks_and_one_stuck_task(n_tasks, n_stuck, seed=0):
    rng = np.random.default_rng(seed)
    tasks = np.repeat(np.arange(n_tasks), 15)
    X = (rng.normal(size=(tasks.size, 2)) @ [[1.0, 0.3], [0.0, 1.0]]
         + rng.normal(size=(n_tasks, 2))[tasks])
    # a stuck sensor: every row of the last task the same
    X = np.r_[X, np.tile([0.3, -0.2], (n_stuck, 1))]
    return X, np.r_[tasks, np.full(n_stuck, n_tasks)]


@pytest.mark.parametrize("n_tasks, n_stuck", [(2, 5), (2, 20), (5, 20)])
def test_a_task_of_identical_rows_leaves_a_finite_prior_and_a_warning(
        n_tasks, n_stuck):
    # without the covariance floor these fits raised LinAlgError or ended
    # with a NaN prior (the evidence grows without bound as Psi0 -> 0)
    X, tasks = _tasks_and_one_stuck_task(n_tasks, n_stuck)
    with pytest.warns(UserWarning, match="typical task covariance has "
                                         "collapsed"):
        model = MetaGaussianDensity().fit(X, tasks=tasks)
    # at the floor, not at rounding level (1e-33 before, or NaN)
    assert np.all(np.linalg.eigvalsh(model.covariance_prior_) > 1e-9)
    assert np.all(np.isfinite(model.score_samples(X, tasks=tasks)))
    assert np.all(np.isfinite(model.score_samples(X[:3], tasks=[99] * 3)))


def test_rows_in_a_subspace_are_fitted_and_warned_of():
    # one-hot columns sum to one: every task's rows lie in a hyperplane
    rng = np.random.default_rng(3)
    tasks = np.repeat(np.arange(50), 20)
    X = np.c_[rng.normal(size=tasks.size), np.eye(3)[rng.integers(0, 3, tasks.size)]]
    with pytest.warns(UserWarning, match="columns that sum to a constant"):
        model = MetaGaussianDensity().fit(X, tasks=tasks)
    assert np.all(np.linalg.eigvalsh(model.covariance_prior_) > 0)
    assert np.all(np.isfinite(model.score_samples(X, tasks=tasks)))


def test_the_floor_leaves_tasks_with_spread_as_they_are():
    # tasks of more rows than features: scatters of full rank
    rng = np.random.default_rng(5)
    codes = np.repeat(np.arange(12), 6)
    X = rng.normal(size=(codes.size, 3)) + rng.normal(size=(12, 3))[codes]
    stats_ = _niw.full_stats(*_niw.task_statistics(X, codes, 12))
    hyper = np.diag(X.var(axis=0))[None]
    assert _niw._with_covariance_floor(stats_, hyper)[0] is stats_
    # a task of identical rows among them is floored, and only it, by
    # COVARIANCE_FLOOR times the pooled within-task variances
    X2 = np.r_[X, np.tile(X[0], (4, 1))]
    codes2 = np.r_[codes, np.full(4, codes.max() + 1)]
    stats2 = _niw.full_stats(*_niw.task_statistics(X2, codes2, codes2.max() + 1))
    floored = _niw._with_covariance_floor(stats2, hyper)[0]
    assert_array_equal(floored.scatters[0, :-1], stats2.scatters[0, :-1])
    within = np.einsum("tii->i", stats2.scatters[0]) / X2.shape[0]
    assert_allclose(floored.scatters[0, -1] - stats2.scatters[0, -1],
                    np.diag(4 * _niw.COVARIANCE_FLOOR * within), rtol=1e-12,
                    atol=0)


@pytest.mark.parametrize("within", [0.1, 0.01, 1e-3])
def test_tasks_far_apart_relative_to_their_spread_are_not_warned_of(within):
    # within-task variance 1e-4 to 1e-8 of the variance between tasks:
    # legitimate, no task is floored, and the prior's small typical
    # covariance is the tasks' own
    rng = np.random.default_rng(4)
    tasks = np.repeat(np.arange(30), 10)
    X = (rng.normal(size=(300, 2)) * within
         + rng.normal(size=(30, 2))[tasks] * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = MetaGaussianDensity().fit(X, tasks=tasks)
    typical = model.covariance_prior_ / model.degrees_of_freedom_prior_
    within = np.mean([np.var(X[tasks == t], axis=0) for t in range(30)], axis=0)
    assert_allclose(np.diag(typical), within, rtol=0.5)


def test_identical_rows_far_from_zero_centre_to_no_spread_in_large_tasks():
    # a sum of n rows of 1e10 is off by about n ulps: the mean is corrected
    # once, and the rows then centre to within an ulp whatever n
    for n in (20, 3000):
        X = np.full((n, 1), 1e10 + 0.37)
        counts, means, squares = _niw.task_statistics(
            X, np.zeros(n, dtype=np.intp), 1, diagonal=True)
        assert squares[0, 0] <= n * (4 * np.spacing(1e10)) ** 2
    rng = np.random.default_rng(6)
    tasks = np.r_[np.zeros(3000, dtype=np.intp), np.repeat(np.arange(1, 9), 20)]
    X = np.r_[np.full((3000, 2), [0.37, -1.2]),
              rng.normal(size=(160, 2))]
    with pytest.warns(UserWarning, match="collapsed"):
        near = MetaGaussianDensity().fit(X, tasks=tasks)
    with pytest.warns(UserWarning, match="collapsed"):
        far = MetaGaussianDensity().fit(X + 1e10, tasks=tasks)
    assert_allclose(far.covariance_prior_, near.covariance_prior_, rtol=1e-3,
                    atol=1e-3 * np.abs(near.covariance_prior_).max())

