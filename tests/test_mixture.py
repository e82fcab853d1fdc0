"""Mixture priors (task clustering) and Student-t priors (task selection)."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import optimize
from scipy.special import expit, log_expit, logsumexp
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import Lasso, LogisticRegression, PoissonRegressor, Ridge
from sklearn.model_selection import GridSearchCV

from skmeta import MetaClassifier, MetaRegressor
from skmeta.datasets import make_meta_classification
from skmeta.model_selection import FewShotSplit


def family_tasks(n_tasks, n_rows, *, n_families=2, n_features=4, separation=3.0,
                 spread=0.3, seed=0):
    """Logistic tasks whose coefficients come in ``n_families`` families.

    Family centres are ``separation`` times standard normal vectors (fixed by
    the family count), each task's coefficients its family's centre plus
    ``spread`` times standard normal noise; task ``t`` is of family ``t %
    n_families``. Returns ``X, y, tasks, family, coefficients``.
    """
    centres = separation * np.random.default_rng(123).standard_normal(
        (n_families, n_features))
    rng = np.random.default_rng(seed)
    family = np.arange(n_tasks) % n_families
    coef = centres[family] + spread * rng.standard_normal((n_tasks, n_features))
    X = rng.standard_normal((n_tasks, n_rows, n_features))
    p = expit(np.einsum("trj,tj->tr", X, coef))
    y = (rng.random(p.shape) < p).astype(int)
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    return (X.reshape(-1, n_features), y.ravel(), tasks, family, coef,
            centres)


def few_shot_accuracy(meta, X, y, tasks, n_shots):
    """Mean accuracy on each new task's rows after its first ``n_shots``."""
    first = np.r_[True, tasks[1:] != tasks[:-1]]
    position = np.arange(len(tasks)) - np.maximum.accumulate(
        np.where(first, np.arange(len(tasks)), 0))
    support = position < n_shots
    models = meta.adapt_tasks(X[support], y[support], tasks=tasks[support])
    query = ~support
    return np.mean([models[t].score(X[query & (tasks == t)],
                                    y[query & (tasks == t)])
                    for t in np.unique(tasks)])


def test_families_are_separated():
    """The generator's families: centres far apart against the spread."""
    *_, family, coef, centres = family_tasks(80, 20, n_families=4, n_features=8)
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    assert gaps[np.triu_indices(4, 1)].min() > 8 * 0.3 * np.sqrt(8)
    # every task is nearest its own family's centre
    nearest = np.argmin(np.linalg.norm(coef[:, None] - centres[None], axis=-1),
                        axis=1)
    assert np.array_equal(nearest, family)


def test_mixture_beats_the_single_gaussian_default_on_new_tasks():
    """Six rows per new task: the mixture picks the family, and adapts.

    Measured here (100 new tasks, 4 families, 8 features): the default
    MetaClassifier() 0.803 (it selects a full Gaussian prior), the mixture of 4
    0.897.
    """
    X, y, tasks, *_ = family_tasks(120, 20, n_families=4, n_features=8)
    Xn, yn, tn, *_ = family_tasks(100, 106, n_families=4, n_features=8, seed=1)
    default = MetaClassifier().fit(X, y, tasks=tasks)
    mixture = MetaClassifier(prior="mixture", n_prior_components=4,
                             random_state=0).fit(X, y, tasks=tasks)
    acc_default = few_shot_accuracy(default, Xn, yn, tn, 6)
    acc_mixture = few_shot_accuracy(mixture, Xn, yn, tn, 6)
    assert acc_mixture >= acc_default + 0.05, (acc_default, acc_mixture)
    # the training tasks' clusters are the families (up to relabeling)
    family = np.arange(120) % 4
    clusters = mixture.task_clusters_.argmax(axis=1)
    assert len(set(zip(family, clusters))) == 4
    assert_allclose(mixture.cluster_weights_, 0.25, atol=1e-3)


@pytest.mark.parametrize("kind", ["diagonal", "isotropic"])
def test_one_component_is_the_gaussian_prior(kind):
    """K = 1: the fixed point of prior='diagonal' (components are diagonal),
    and with prior_df unset nothing else; with prior='isotropic' and no
    mixture, compared through the robust prior's limit df -> infinity."""
    X, y, tasks, *_ = family_tasks(30, 15, n_families=1, spread=1.0)
    if kind == "diagonal":
        ref = MetaClassifier(prior="diagonal", tol=1e-9).fit(X, y, tasks=tasks)
        mix = MetaClassifier(prior="mixture", n_prior_components=1,
                             tol=1e-9).fit(X, y, tasks=tasks)
        assert mix.prior_kind_ == "mixture of 1 diagonal"
        assert_allclose(mix.task_clusters_, 1.0)
    else:
        ref = MetaClassifier(prior="isotropic", tol=1e-9).fit(X, y, tasks=tasks)
        mix = MetaClassifier(prior="isotropic", prior_df=1e12,
                             tol=1e-9).fit(X, y, tasks=tasks)
        assert_allclose(mix.task_weights_, 1.0, rtol=1e-9)
    assert_allclose(mix.meta_params_, ref.meta_params_, rtol=1e-5, atol=1e-6)
    assert_allclose(mix.prior_precision_, ref.prior_precision_, rtol=1e-4)
    # (the same fixed point; the mixture's mean moves by EM steps, which the
    # base penalty on it slows, the Gaussian prior's by Newton steps: they
    # stop at tol=1e-9 a few 1e-6 apart)
    assert_allclose(mix.task_params_, ref.task_params_, rtol=1e-5, atol=5e-6)


def test_one_component_regression_learns_the_noise_as_the_diagonal_prior():
    rng = np.random.default_rng(0)
    coef = 1.0 + 0.5 * rng.standard_normal((25, 3))
    X = rng.standard_normal((25 * 12, 3))
    tasks = np.repeat(np.arange(25), 12)
    y = np.einsum("ij,ij->i", X, coef[tasks]) + 0.3 * rng.standard_normal(len(X))
    ref = MetaRegressor(Ridge(alpha=0.1), prior="diagonal", tol=1e-9).fit(
        X, y, tasks=tasks)
    mix = MetaRegressor(Ridge(alpha=0.1), prior="mixture", n_prior_components=1,
                        tol=1e-9).fit(X, y, tasks=tasks)
    assert_allclose(mix.meta_params_, ref.meta_params_, rtol=1e-5, atol=1e-6)
    assert_allclose(mix.task_params_, ref.task_params_, rtol=1e-5, atol=1e-6)
    assert_allclose(mix.noise_variance_, ref.noise_variance_, rtol=1e-4)


def test_the_mixture_fit_does_not_depend_on_the_targets_units():
    # two families of slopes +-2 (the predict_task_cluster example): with y
    # in units 1,000 times larger, parameters of size 1e-3 moved by less than
    # the absolute tol after 4 iterations, and the fit stopped with both
    # cluster slopes near 0 (R^2 0.963 against 0.998), silently; one
    # component strayed from the diagonal prior by 0.32 per unit of y
    rng = np.random.default_rng(0)
    slope = np.repeat([-2.0, 2.0], 10)
    X = rng.standard_normal((200, 2))
    tasks = np.repeat(np.arange(20), 10)
    y = slope[tasks] * X[:, 0] + 0.1 * rng.standard_normal(200)
    fits = {c: MetaRegressor(prior="mixture", n_prior_components=2,
                             random_state=0).fit(X, c * y, tasks=tasks)
            for c in (1.0, 1e-3)}
    assert_allclose(np.sort(fits[1e-3].cluster_means_[:, 0]) / 1e-3,
                    np.sort(fits[1.0].cluster_means_[:, 0]), rtol=1e-2)
    assert_allclose(fits[1e-3].predict(X, tasks=tasks) / 1e-3,
                    fits[1.0].predict(X, tasks=tasks), atol=0.02)
    one = MetaRegressor(prior="mixture", n_prior_components=1).fit(
        X, 1e-3 * y, tasks=tasks)
    diagonal = MetaRegressor(prior="diagonal").fit(X, 1e-3 * y, tasks=tasks)
    assert_allclose(one.task_params_ / 1e-3, diagonal.task_params_ / 1e-3,
                    atol=1e-4)


@pytest.mark.parametrize("params", [
    dict(prior="mixture", n_prior_components=2, random_state=0),
    dict(prior="diagonal", prior_df=4.0),
])
def test_a_feature_in_small_units_is_not_lost(params):
    # the EM started from a fixed isotropic prior, which pins a coefficient
    # 100 times larger than the others; its mean steps crawled out of it and
    # stopped with the feature's coefficient near 0 (training accuracy 0.61
    # where the same tasks in one unit give 0.95-0.97), silently
    X, y, tasks = make_meta_classification(
        n_tasks=40, n_samples_per_task=30, n_features=4, n_informative=2,
        n_redundant=0, random_state=1)
    small = X.copy()
    small[:, 0] *= 1e-2
    base = LogisticRegression(C=np.inf)
    ref = MetaClassifier(base, **params).fit(X, y, tasks=tasks)
    meta = MetaClassifier(base, **params).fit(small, y, tasks=tasks)
    assert abs(ref.meta_params_[0]) > 1.0
    assert abs(meta.meta_params_[0] * 1e-2) > 0.5 * abs(ref.meta_params_[0])
    assert (np.mean(meta.predict(small, tasks=tasks) == y)
            > np.mean(ref.predict(X, tasks=tasks) == y) - 0.02)


def test_one_component_of_an_averaged_loss_is_the_diagonal_prior():
    # PoissonRegressor on tasks of 4 to 30 rows: the mixture's M-step takes
    # each task's moments in the units of its own prior, as the Gaussian
    # prior's does (checked against its closed form in test_priors), and
    # one component lands on the same fixed point
    rng = np.random.default_rng(1)
    sizes = rng.integers(4, 31, 25)
    tasks = np.repeat(np.arange(25), sizes)
    coef = 0.5 + 0.3 * rng.standard_normal((25, 3))
    X = rng.standard_normal((sizes.sum(), 3))
    y = rng.poisson(np.exp(np.einsum("ij,ij->i", X, coef[tasks]) * 0.5)
                    ).astype(float)
    ref = MetaRegressor(PoissonRegressor(alpha=0.1), prior="diagonal",
                        tol=1e-10, max_iter=3000).fit(X, y, tasks=tasks)
    mix = MetaRegressor(PoissonRegressor(alpha=0.1), prior="mixture",
                        n_prior_components=1, tol=1e-10, max_iter=3000).fit(
        X, y, tasks=tasks)
    assert_allclose(mix.prior_precision_, ref.prior_precision_, rtol=1e-3)
    assert_allclose(mix.meta_params_, ref.meta_params_, rtol=1e-4, atol=1e-6)
    assert_allclose(mix.task_params_, ref.task_params_, rtol=1e-4, atol=1e-6)


def _laplace_reference(X, y, means, precisions, weights):
    """Posterior over components of one logistic task (no penalty), in numpy:
    each component's mode by BFGS, its Laplace log evidence, Bayes' rule."""
    Z = np.c_[X, np.ones(len(X))]
    log_post, modes = [], []
    for mean, prec in zip(means, precisions):
        def objective(theta, mean=mean, prec=prec):
            z = Z @ theta
            loss = -np.sum(y * log_expit(z) + (1 - y) * log_expit(-z))
            dev = theta - mean
            return loss + 0.5 * dev @ (prec * dev), (
                Z.T @ (expit(z) - y) + prec * dev)
        theta = optimize.minimize(objective, mean, jac=True, method="BFGS",
                                  options={"gtol": 1e-12}).x
        p = expit(Z @ theta)
        hessian = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(prec)
        log_post.append(-objective(theta)[0] + 0.5 * np.sum(np.log(prec))
                        - 0.5 * np.linalg.slogdet(hessian)[1])
        modes.append(theta)
    log_joint = np.log(weights) + np.array(log_post)
    resp = np.exp(log_joint - logsumexp(log_joint))
    return resp, resp @ np.array(modes)


def _two_families(rng, n_tasks, n_rows, noise):
    centres = np.array([[2.0, 2.0, 0.0], [-2.0, -2.0, 1.0]])
    theta = (centres[rng.integers(0, 2, n_tasks)]
             + 0.3 * rng.standard_normal((n_tasks, 3)))
    X = rng.standard_normal((n_tasks * n_rows, 2))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = (np.einsum("ij,ij->i", X, theta[tasks, :2]) + theta[tasks, 2]
         + noise * rng.standard_normal(n_tasks * n_rows))
    return X, y, tasks


@pytest.mark.parametrize("noise, gamma", [(0.5, "auto"), (2.0, "auto"),
                                          (0.5, 2.0)])
def test_the_mixtures_single_gaussian_moment_matches_its_clusters(noise, gamma):
    # what return_std and task_posterior_cov use: the mixture's mean and
    # covariance, each cluster's covariance phi / P_k in the parameters'
    # units plus the spread of the cluster means (in those units too: it was
    # taken in the loss's, phi times too wide or narrow). A fixed gamma is
    # the clusters' strength: the single Gaussian kept it too, and was 12
    # times too narrow here (unseen tasks' 90% intervals covered 29%)
    from sklearn.linear_model import LinearRegression

    X, y, tasks = _two_families(np.random.default_rng(0), 40, 10, noise)
    meta = MetaRegressor(LinearRegression(), prior="mixture", gamma=gamma,
                         n_prior_components=2).fit(X, y, tasks=tasks)
    w, means = meta.cluster_weights_, meta.cluster_means_
    centre = w @ means
    expected = w @ (meta.noise_variance_ / meta.cluster_precisions_
                    + (means - centre) ** 2)
    assert_allclose(np.diag(meta.prior_covariance_), expected, rtol=1e-8)
    assert_allclose(meta.meta_params_, centre, rtol=1e-10)
    # across coefficients, the spread of the cluster means (the families'
    # opposite slopes correlate them; the covariance was diagonal)
    between = ((means - centre).T * w) @ (means - centre)
    off = ~np.eye(3, dtype=bool)
    assert_allclose(meta.prior_covariance_[off], between[off], rtol=1e-10)
    # and an unseen task's predictive spread is that covariance's
    x = np.array([1.0, 1.0, 1.0])
    _, std = meta.predict(x[None, :2], tasks=[999], return_std=True)
    assert_allclose(std, np.sqrt(x @ meta.prior_covariance_ @ x
                                 + meta.noise_variance_), rtol=1e-10)


def test_the_mixtures_covariance_beside_a_base_penalty_is_a_covariance():
    # Ridge(alpha=30), two families of opposite slopes: the components'
    # variances (not the single Gaussian's diagonal, which the penalty
    # floors) with the spread of the means; adding that spread's
    # off-diagonal to the single Gaussian's diagonal gave eigenvalues of
    # -3.8 and NaN standard deviations
    rng = np.random.default_rng(1)
    signs = np.where(np.arange(40) % 2, 1.0, -1.0)
    W = np.c_[2.0 * signs, -2.0 * signs] + 0.1 * rng.standard_normal((40, 2))
    X = rng.standard_normal((600, 2))
    tasks = np.repeat(np.arange(40), 15)
    y = np.einsum("ij,ij->i", X, W[tasks]) + 0.3 * rng.standard_normal(600)
    meta = MetaRegressor(Ridge(alpha=30.0), prior="mixture",
                         n_prior_components=2).fit(X, y, tasks=tasks)
    C = meta.prior_covariance_
    w, means = meta.cluster_weights_, meta.cluster_means_
    spread = means - w @ means
    assert_allclose(C - np.diag(np.diag(C)),
                    ((spread.T * w) @ spread) * ~np.eye(3, dtype=bool),
                    atol=1e-12)
    assert np.linalg.eigvalsh(C).min() > 0
    _, std = meta.predict(np.array([[1.0, 1.0], [1.0, -1.0]]),
                          tasks=[999, 999], return_std=True)
    # across the families' slopes (1, -1) the spread is the tasks' (about
    # 4); along (1, 1) they agree
    assert np.all(np.isfinite(std)) and std[1] > 5 * std[0]


@pytest.mark.parametrize("df, gamma", [(3.0, "auto"), (8.0, "auto"),
                                       (1.5, "auto"), (4.0, 2.0)])
def test_a_student_t_priors_single_gaussian_has_its_covariance(df, gamma):
    # a t's covariance is df / (df - 2) times its scale (none at df <= 2,
    # where the scale stands for it), under a fixed gamma too
    from sklearn.linear_model import LinearRegression

    X, y, tasks = _two_families(np.random.default_rng(1), 40, 10, 0.5)
    meta = MetaRegressor(LinearRegression(), prior="diagonal", gamma=gamma,
                         prior_df=df).fit(X, y, tasks=tasks)
    scale = meta.noise_variance_ / meta.cluster_precisions_[0]
    factor = df / (df - 2.0) if df > 2.0 else 1.0
    assert_allclose(np.diag(meta.prior_covariance_), factor * scale, rtol=1e-8)


def test_the_mixtures_single_gaussian_of_an_averaged_loss_moment_matches():
    # averaged loss: a cluster's covariance is 1 / (s P_k), s the tasks'
    # (equal) weight
    rng = np.random.default_rng(0)
    n_tasks, n_rows = 40, 20
    centres = np.array([[1.0, 0.0], [-1.0, 1.5]])
    theta = (centres[rng.integers(0, 2, n_tasks)]
             + 0.1 * rng.standard_normal((n_tasks, 2)))
    X = rng.standard_normal((n_tasks * n_rows, 1))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = rng.poisson(np.exp(X[:, 0] * theta[tasks, 0] + theta[tasks, 1]))
    meta = MetaRegressor(PoissonRegressor(alpha=0.0), prior="mixture",
                         n_prior_components=2).fit(X, y, tasks=tasks)
    w, means = meta.cluster_weights_, meta.cluster_means_
    expected = w @ (1.0 / (n_rows * meta.cluster_precisions_)
                    + (means - w @ means) ** 2)
    assert_allclose(np.diag(meta.prior_covariance_), expected, rtol=1e-8)


def test_new_task_posterior_is_the_laplace_computation():
    X, y, tasks, *_ = family_tasks(40, 20, n_features=3, seed=2)
    meta = MetaClassifier(LogisticRegression(C=np.inf), prior="mixture",
                          n_prior_components=2, random_state=0).fit(
        X, y, tasks=tasks)
    Xn, yn, *_ = family_tasks(1, 5, n_features=3, seed=7)
    resp, theta = _laplace_reference(Xn, yn, meta.cluster_means_,
                                     meta.cluster_precisions_,
                                     meta.cluster_weights_)
    assert_allclose(meta.predict_task_cluster(Xn, yn)[0], resp, rtol=1e-6,
                    atol=1e-9)
    model = meta.adapt(Xn, yn)
    assert_allclose(np.r_[model.coef_.ravel(), model.intercept_], theta,
                    rtol=1e-5, atol=1e-7)
    # two tasks at once, rows in the order of the sorted labels
    both = meta.predict_task_cluster(np.r_[Xn, Xn], np.r_[yn, yn],
                                     tasks=np.repeat(["b", "a"], 5))
    assert_allclose(both, np.tile(resp, (2, 1)), rtol=1e-6, atol=1e-9)


def test_auto_chooses_the_number_of_families_by_bic():
    X, y, tasks, *_ = family_tasks(60, 20, n_families=2, seed=3)
    meta = MetaClassifier(prior="mixture", random_state=0).fit(X, y, tasks=tasks)
    assert meta.n_prior_components_ == 2
    scores = meta.prior_scores_
    assert set(scores) == {f"mixture-{k}" for k in range(1, 5)}
    assert min(scores, key=scores.get) == "mixture-2"


def broken_store_tasks(n_tasks=30, n_rows=15, seed=0):
    rng = np.random.default_rng(seed)
    coef = np.array([1.0, -1.0, 0.5]) + 0.3 * rng.standard_normal((n_tasks, 3))
    coef[0] = [40.0, 40.0, -40.0]  # the broken store
    X = rng.standard_normal((n_tasks * n_rows, 3))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = np.einsum("ij,ij->i", X, coef[tasks]) + 0.3 * rng.standard_normal(len(X))
    return X, y, tasks


def test_a_student_t_prior_keeps_a_broken_task_from_dragging_theta0():
    """Measured: the Gaussian prior's mean moves 2.26 from the reference (the
    same fit without the broken task), the Student-t's (3 df) 0.0017; the
    broken task's weight 1.1e-4, the others' at least 0.46."""
    X, y, tasks = broken_store_tasks()
    clean = tasks != 0
    gaussian = MetaRegressor(Ridge(alpha=0.1), prior="diagonal")
    robust = MetaRegressor(Ridge(alpha=0.1), prior="diagonal", prior_df=3.0)
    drag_gaussian = np.linalg.norm(
        gaussian.fit(X, y, tasks=tasks).meta_params_
        - gaussian.fit(X[clean], y[clean], tasks=tasks[clean]).meta_params_)
    reference = robust.fit(X[clean], y[clean], tasks=tasks[clean]).meta_params_
    robust.fit(X, y, tasks=tasks)
    drag_robust = np.linalg.norm(robust.meta_params_ - reference)
    assert drag_gaussian > 1.0
    assert drag_robust < 0.01 * drag_gaussian
    assert robust.task_weights_.shape == (30,)
    assert robust.task_weights_[0] < 1e-3
    assert robust.task_weights_[1:].min() > 0.3
    assert robust.prior_kind_.startswith("student-t (3 df)")
    # the broken task keeps its own fit
    assert robust.task_params_[0, 0] > 20


def test_student_t_weights_of_an_averaged_loss_are_the_em_fixed_point():
    # prior_df on tasks of 1 to 60 rows under an averaged squared loss
    # (Lasso, alpha ~ 0): task t's prior is N(mu, (phi / s_t) M^-1) scaled
    # by a Gamma weight, whose E-step u_t = (nu + d) / (nu + delta_t) reads
    # delta_t = (s_t / phi) dev' M dev + tr(M A_t^-1), and the PX-EM M-step
    # fits (phi / s) M^-1 to sum_t u_t [(s_t / s) dev dev' + (phi / s)
    # A_t^-1] / sum_t u_t (shrunk as the diagonal structure shrinks).
    # delta_t in the mean task's units (s for s_t) was 9 % off.
    rng = np.random.default_rng(3)
    sizes = np.array([1, 2, 4, 8, 15, 30, 40, 60, 3, 25, 12, 50])
    T, p, nu = len(sizes), 2, 4.0
    tasks = np.repeat(np.arange(T), sizes)
    X = rng.normal(size=(sizes.sum(), p))
    w = np.array([1.0, -0.5]) + 0.3 * rng.standard_t(3, size=(T, p))
    y = (np.einsum("ij,ij->i", X, w[tasks]) + 0.5
         + 0.2 * rng.normal(size=sizes.sum()))
    meta = MetaRegressor(Lasso(alpha=1e-12, max_iter=10000), prior="diagonal",
                         prior_df=nu, tol=1e-12, max_iter=20000).fit(
        X, y, tasks=tasks)
    # the t's scale (prior_precision_ is its covariance's: nu / (nu - 2) off)
    M = np.diag(meta.cluster_precisions_[0])
    phi, s_bar = meta.noise_variance_, sizes.mean()
    u, moments = np.empty(T), np.empty((T, p + 1))
    for t in range(T):
        Xt = np.c_[X[tasks == t], np.ones(sizes[t])]
        A_inv = np.linalg.inv(Xt.T @ Xt / sizes[t] + M)
        dev = meta.task_params_[t] - meta.meta_params_
        delta = sizes[t] / phi * dev @ M @ dev + np.trace(M @ A_inv)
        u[t] = (nu + p + 1) / (nu + delta)
        moments[t] = (sizes[t] * dev**2 + phi * np.diag(A_inv)) / s_bar
    diag = u @ moments / u.sum()
    shrink = 1.0 / (T + 1.0)
    expected = (1 - shrink) * diag + shrink * diag.mean()
    assert_allclose(phi / s_bar / np.diag(M), expected, rtol=1e-8)


def test_pickle_and_partial_fit_keep_the_clusters():
    X, y, tasks, *_ = family_tasks(30, 15, seed=4)
    meta = MetaClassifier(prior="mixture", n_prior_components=2, prior_df=5.0,
                          random_state=0).fit(X[tasks < 28], y[tasks < 28],
                                              tasks=tasks[tasks < 28])
    clone_ = pickle.loads(pickle.dumps(meta))
    for name in ("task_clusters_", "cluster_means_", "cluster_precisions_",
                 "cluster_weights_", "task_weights_"):
        assert_allclose(getattr(clone_, name), getattr(meta, name))
    new = tasks >= 28
    assert_allclose(clone_.predict_task_cluster(X[new], y[new], tasks=tasks[new]),
                    meta.predict_task_cluster(X[new], y[new], tasks=tasks[new]))
    assert_allclose(clone_.predict_proba(X, tasks=tasks),
                    meta.predict_proba(X, tasks=tasks))
    expected = meta.predict_task_cluster(X[new], y[new], tasks=tasks[new])
    meta.partial_fit(X[new], y[new], tasks=tasks[new])
    assert meta.task_clusters_.shape == (30, 2)
    assert_allclose(meta.task_clusters_[28:], expected)


def test_grid_search_over_the_number_of_components_with_few_shot_splits():
    X, y, tasks, *_ = family_tasks(24, 16, seed=5)
    Xc = np.c_[tasks, X]
    search = GridSearchCV(
        MetaClassifier(prior="mixture", task_column=0, random_state=0),
        {"n_prior_components": [1, 2]},
        cv=FewShotSplit(n_splits=2, n_shots=3, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(Xc, y, groups=tasks)
    assert search.best_params_ == {"n_prior_components": 2}
    assert search.best_estimator_.task_clusters_.shape == (24, 2)


@pytest.mark.parametrize("params, match", [
    (dict(prior="full", prior_df=3.0), "prior_df=3.0 makes the prior"),
    (dict(prior="diagonal", n_prior_components=2), "n_prior_components=2 is"),
    (dict(prior="mixture", method="maml"), "method='maml' meta-learns"),
    (dict(prior_df=2.0, method="reptile"), "method='reptile' meta-learns"),
    (dict(prior="mixture", n_prior_components=50), "exceeds the number of"),
    (dict(prior="mixture", unlabeled_weight=0.5), "unlabeled_weight is not"),
    (dict(prior="mixture", gamma=0.0), "gamma=0 leaves no transfer term"),
])
def test_settings_that_cannot_be_honoured_are_refused(params, match):
    X, y, tasks, *_ = family_tasks(10, 8)
    with pytest.raises(ValueError, match=match):
        MetaClassifier(**params).fit(X, y, tasks=tasks)


def test_mixture_with_a_prior_estimator_is_refused_and_clusters_need_one():
    X, y, tasks, *_ = family_tasks(10, 8)
    source = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="cannot start from a prior_estimator"):
        MetaClassifier(prior="mixture", prior_estimator=source).fit(
            X, y, tasks=tasks)
    # a fitted model without a mixture: the error names what is missing
    # (it said "not fitted yet")
    with pytest.raises(ValueError, match="needs a model fitted with a "
                                         "mixture prior.*'diagonal'"):
        MetaClassifier(prior="diagonal").fit(X, y, tasks=tasks) \
            .predict_task_cluster(X, y)
    with pytest.raises(NotFittedError):
        MetaClassifier(prior="mixture").predict_task_cluster(X, y)
    # without a mixture, no mixture attributes (nor left from an earlier fit)
    meta = MetaClassifier(prior="mixture", n_prior_components=2,
                          random_state=0).fit(X, y, tasks=tasks)
    meta.set_params(prior="diagonal", n_prior_components="auto").fit(
        X, y, tasks=tasks)
    assert not hasattr(meta, "task_clusters_")


def test_a_fixed_gamma_is_the_strength_of_every_component():
    X, y, tasks, *_ = family_tasks(20, 15, seed=6)
    meta = MetaClassifier(prior="mixture", n_prior_components=2, gamma=2.0,
                          random_state=0).fit(X, y, tasks=tasks)
    # the shapes are learned at unit geometric mean, the strength is gamma
    assert_allclose(np.exp(np.log(meta.cluster_precisions_).mean(axis=1)), 2.0)
    assert np.ptp(meta.cluster_precisions_[0]) > 0
    # gamma_ (with meta_params_, prior_precision_, prior_covariance_) is the
    # single Gaussian's, as with a learned gamma: wider than each cluster
    assert meta.gamma_ < 2.0
    assert_allclose(meta.prior_precision_, meta.gamma_ * meta.prior_shape_)


def test_an_unfinished_em_warns():
    X, y, tasks, *_ = family_tasks(20, 15, seed=6)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        MetaClassifier(prior="mixture", n_prior_components=2, max_iter=2,
                       random_state=0).fit(X, y, tasks=tasks)
