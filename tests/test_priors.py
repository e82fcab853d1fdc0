"""The learned prior: its structure chosen from the data, predictive uncertainty.

Generated tasks whose truth is known: the structure ``prior="auto"``
selects must be the one the tasks were drawn from, the posterior predictive
spread must equal its closed form for ridge regression, and 90% intervals
on new few-shot tasks must cover 86-94% of their targets.
"""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.decomposition import FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.metrics import log_loss
from threadpoolctl import threadpool_info

from skmeta import MetaClassifier, MetaRegressor
from skmeta._kernels._codes import LOGISTIC
from skmeta._kernels._layout import Problem
from skmeta._methods._prior import Prior
from skmeta._methods._proximal import (
    _PriorCoordinates,
    candidate_structures,
    matrix_priors_estimable,
    newton_mean_step,
    pooled_fit_affordable,
    prior_from_moments,
    raise_if_degenerate,
)
from skmeta._methods._structures import (
    _HYPERPRIOR_TASKS,
    Structure,
    _profile,
    _profile_and_eigenvectors,
    _scoring_polish,
    factor_precision,
)
from skmeta.datasets import make_meta_classification, make_meta_regression


def linear_tasks(n_tasks, n_rows, covariance, *, noise=0.5, seed=0,
                 mean=None):
    """Tasks ``y = X theta_t + N(0, noise^2)``, ``theta_t ~ N(mean, covariance)``.

    The last parameter is the intercept.
    """
    rng = np.random.default_rng(seed)
    d = covariance.shape[0]
    mean = np.linspace(-1.0, 1.0, d) if mean is None else mean
    theta = rng.multivariate_normal(mean, covariance, size=n_tasks)
    X = rng.normal(size=(n_tasks * n_rows, d - 1))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = np.einsum("ij,ij->i", X, theta[tasks, :-1]) + theta[tasks, -1]
    return X, y + noise * rng.normal(size=y.shape), tasks, theta


# --------------------------------------------------------------------------
# the structure of the prior, chosen by held-out rows
# --------------------------------------------------------------------------
def test_random_intercept_truth_selects_random_intercepts():
    covariance = np.diag([1e-8, 1e-8, 1e-8, 1.0])  # only intercepts vary
    X, y, tasks, _ = linear_tasks(150, 12, covariance, seed=1)
    meta = MetaRegressor(LinearRegression()).fit(X, y, tasks=tasks)
    assert meta.prior_kind_ == "isotropic on 1 random effects"
    assert meta.prior_scores_[meta.prior_kind_] == min(meta.prior_scores_.values())
    # the slopes are shared: every task has the same, the prior mean's
    slopes = meta.task_params_[:, :-1]
    assert np.ptp(slopes, axis=0).max() < 1e-3 * np.abs(slopes).max()


def test_low_rank_truth_selects_a_factor_prior():
    rng = np.random.default_rng(2)
    d = 13
    direction = rng.normal(size=d)
    covariance = 2.0 * np.outer(direction, direction) / (direction @ direction)
    covariance += 1e-4 * np.eye(d)
    X, y, tasks, _ = linear_tasks(120, 16, covariance, seed=3)
    meta = MetaRegressor(LinearRegression()).fit(X, y, tasks=tasks)
    assert meta.prior_kind_.startswith("lowrank")
    # the learned covariance has one dominant direction, the true one
    w, V = np.linalg.eigh(np.linalg.inv(meta.prior_precision_))
    assert w[-1] > 10 * w[-2]
    assert abs(V[:, -1] @ direction) / np.linalg.norm(direction) > 0.99


def _factor_log_likelihood(covariance, S):
    """Gaussian log-likelihood per sample of covariance ``covariance`` for
    the sample covariance ``S`` (up to a constant)."""
    return -0.5 * (np.linalg.slogdet(covariance)[1]
                   + np.trace(np.linalg.solve(covariance, S)))


@pytest.mark.parametrize("d, q, n_rows", [(8, 2, 400), (21, 2, 60), (21, 1, 30)])
def test_the_factor_m_step_is_the_maximum_likelihood_factor_model(d, q, n_rows):
    # reference: scikit-learn's FactorAnalysis run to a tight tolerance on
    # the rows whose (biased) sample covariance is S
    rng = np.random.default_rng(d + q)
    loadings = rng.normal(size=(d, q))
    uniquenesses = rng.uniform(0.01, 0.5, size=d)
    X = rng.multivariate_normal(np.zeros(d), loadings @ loadings.T
                                + np.diag(uniquenesses), size=n_rows)
    S = np.cov(X.T, bias=True)
    precision, (F, psi) = factor_precision(S, q)
    covariance = F @ F.T + np.diag(psi)
    assert_allclose(precision @ covariance, np.eye(d), atol=1e-8)
    reference = FactorAnalysis(q, tol=1e-12, max_iter=100_000,
                               svd_method="lapack").fit(X).get_covariance()
    assert _factor_log_likelihood(covariance, S) >= (
        _factor_log_likelihood(reference, S) - 1e-9)
    assert_allclose(covariance, reference, atol=1e-5)
    # from the factors of a nearby S (as the next M-step starts), the same
    # optimum as from the cold start
    S_next = S + 1e-3 * np.diag(np.diag(S))
    warm = factor_precision(S_next, q, start=(F, psi))[0]
    assert_allclose(warm, factor_precision(S_next, q)[0], rtol=1e-4, atol=1e-6)
    # from there a few scoring steps suffice, to the optimum L-BFGS-B finds
    bounds = np.log(np.c_[1e-8 * np.diag(S_next), np.diag(S_next)])
    polished = _scoring_polish(S_next, q, np.log(psi), *bounds.T)
    assert polished is not None
    tight = minimize(_profile, np.log(psi), args=(S_next, q), jac=True,
                     method="L-BFGS-B", bounds=bounds,
                     options=dict(ftol=1e-15, gtol=1e-10, maxiter=5000))
    assert _profile(polished, S_next, q)[0] <= tight.fun + 1e-10


def test_the_factor_m_step_reaches_a_near_heywood_optimum():
    # the first variable is nearly the factor itself: its uniqueness is
    # close to zero at the maximum, where EM for the factor model crawls
    # (scikit-learn's takes about 12,000 iterations to reach it)
    rng = np.random.default_rng(5)
    factor = rng.normal(size=500)
    X = np.c_[factor, factor[:, None] * [0.8, 0.6, 0.4]
              + 0.5 * rng.normal(size=(500, 3))]
    S = np.cov(X.T, bias=True)
    precision, (F, psi) = factor_precision(S, 1)
    reference = FactorAnalysis(1, tol=1e-12, max_iter=100_000,
                               svd_method="lapack").fit(X)
    assert psi[0] < 0.01 * S[0, 0]
    assert_allclose(psi, reference.noise_variance_, rtol=1e-3)
    assert _factor_log_likelihood(F @ F.T + np.diag(psi), S) >= (
        _factor_log_likelihood(reference.get_covariance(), S) - 1e-9)


def test_the_factor_m_step_is_scale_equivariant_and_its_profile_exact():
    # coefficients of very different magnitudes: the uniquenesses scale with
    # them (from both starts), and the profile is the negative
    # log-likelihood, also where a leading eigenvalue is below 1 (no factor)
    rng = np.random.default_rng(8)
    d = 12
    A = rng.normal(size=(d, 2))
    S = A @ A.T + np.diag(rng.uniform(0.05, 0.3, size=d))
    D = 10.0 ** rng.uniform(-3, 3, size=d)
    psi = factor_precision(S, 2)[1][1]
    scaled = factor_precision(S * np.outer(D, D), 2)[1][1]
    assert_allclose(scaled, psi * D**2, rtol=1e-4)
    S = np.diag([3.0] + [1.0] * 5) + 0.01 * np.ones((6, 6))
    log_psi = np.log(np.full(6, 1.05))
    value, gradient = _profile(log_psi, S, 3)

    def negative_log_likelihood(log_psi):
        F = _profile_and_eigenvectors(log_psi, S, 3)[3]
        covariance = F @ F.T + np.diag(np.exp(log_psi))
        return -2.0 * _factor_log_likelihood(covariance, S)

    step = 1e-6
    numeric = [(negative_log_likelihood(log_psi + step * e)
                - negative_log_likelihood(log_psi - step * e)) / (2 * step)
               for e in np.eye(6)]
    assert_allclose(gradient, numeric, atol=1e-6)
    shift = 0.1 * rng.normal(size=6)
    assert_allclose(_profile(log_psi + shift, S, 3)[0] - value,
                    negative_log_likelihood(log_psi + shift)
                    - negative_log_likelihood(log_psi), atol=1e-10)


def test_partial_fit_extrapolates_low_rank_priors_in_the_m_steps_units(
        monkeypatch):
    # averaged losses and new tasks smaller than the earlier ones: the
    # online M-step scales by the mean over every task seen, and the
    # coordinates must decode with the same scale
    checked = []
    encode = _PriorCoordinates.encode

    def encode_and_check(self, prior):
        z = encode(self, prior)
        assert_allclose(self.decode(z).precision, prior.precision, rtol=1e-8)
        checked.append(True)
        return z

    monkeypatch.setattr(_PriorCoordinates, "encode", encode_and_check)
    X, y, tasks, _ = linear_tasks(30, 40, 0.3 * np.eye(4), seed=9)
    meta = MetaRegressor(ElasticNet(alpha=0.01), prior="lowrank").fit(
        X, y, tasks=tasks)
    X_new, y_new, tasks_new, _ = linear_tasks(10, 8, 0.3 * np.eye(4), seed=10)
    checked.clear()
    meta.partial_fit(X_new, y_new, tasks=tasks_new + 100)
    assert checked


@settings(max_examples=60, deadline=None)
@given(d=st.integers(2, 12), rank=st.integers(1, 3),
       log_scale_span=st.floats(0.0, 4.0), seed=st.integers(0, 2**31 - 1))
def test_the_factor_m_step_never_loses_likelihood(d, rank, log_scale_span,
                                                  seed):
    # any positive definite S, of any scales: a finite, positive definite
    # precision within the bounds, at least as likely as the factor model
    # at either start (its uniquenesses with their best factors)
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, rng.integers(1, 2 * d + 1)))
    scales = 10.0 ** rng.uniform(-log_scale_span, log_scale_span, size=d)
    S = (A @ A.T / A.shape[1] + 0.05 * np.eye(d)) * np.outer(scales, scales)
    precision, (F, psi) = factor_precision(S, rank)
    q = min(rank, d - 1)
    assert F.shape == (d, q) and np.all(np.isfinite(precision))
    # (on the coefficients' own scales: their variances span up to 16 decades)
    root = np.sqrt(np.diag(S))
    scaled = precision * np.outer(root, root)
    assert np.all(np.linalg.eigvalsh((scaled + scaled.T) / 2) > 0)
    assert np.all(psi >= 1e-8 * np.diag(S) * (1 - 1e-12))
    assert np.all(psi <= np.diag(S) * (1 + 1e-12))
    fitted = _factor_log_likelihood(F @ F.T + np.diag(psi), S)
    starts = [(1 - 0.5 * q / d) / np.diag(np.linalg.inv(S)),
              np.full(d, np.linalg.eigvalsh(S)[:d - q].mean())]
    for start in starts:
        start = np.clip(start, 1e-8 * np.diag(S), np.diag(S))
        F0 = _profile_and_eigenvectors(np.log(start), S, q)[3]
        assert fitted >= _factor_log_likelihood(F0 @ F0.T + np.diag(start),
                                                S) - 1e-9 * abs(fitted)


def test_a_low_rank_prior_is_extrapolated_as_a_factor_model():
    # the EM acceleration's coordinates of a low-rank prior are its factors:
    # they round-trip, and any point along them decodes to a prior whose
    # covariance is again F F^T + Psi
    rng = np.random.default_rng(7)
    d, q = 6, 2
    loadings = rng.normal(size=(d, q))
    moments = loadings @ loadings.T + np.diag(rng.uniform(0.1, 0.3, size=d))
    structure = Structure("lowrank", rank=q)
    start = Prior(theta0=rng.normal(size=d), shape=np.eye(d), gamma=1.0)
    no_ridge = np.zeros(d)
    prior = prior_from_moments(start, moments, np.diag(moments), 50, 1.0, 1.0,
                               structure=structure, learn_gamma=True,
                               ridge=no_ridge)
    coords = _PriorCoordinates(prior, structure=structure, learn_theta0=True,
                               learn_gamma=True, squared=False, ridge=no_ridge)
    z = coords.encode(prior)
    assert z.shape == (d + d + d * q,)
    assert_allclose(coords.decode(z).precision, prior.precision, rtol=1e-10)
    moved = coords.decode(z + 0.1 * rng.normal(size=z.shape))
    F, psi = moved.factors
    assert_allclose(np.linalg.inv(moved.precision), F @ F.T + np.diag(psi),
                    rtol=1e-8, atol=1e-10)


def test_low_rank_priors_converge_on_the_classic_tasks():
    # the classic example's tasks: the low-rank priors' empirical Bayes crept
    # to max_iter while each M-step made a few EM iterations of the factor
    # model instead of maximizing it (and SQUAREM extrapolated them as
    # matrices, off the low-rank priors)
    X, y, tasks = make_meta_classification(
        n_tasks=200, n_samples_per_task=20, n_features=20, n_informative=2,
        n_redundant=10, random_state=42)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        meta = MetaClassifier(prior="lowrank").fit(X, y, tasks=tasks)
        MetaClassifier().fit(X, y, tasks=tasks)
    assert meta.prior_kind_.startswith("lowrank")
    assert meta.n_iter_ < 200


def test_explicit_structures_and_random_effects():
    X, y, tasks, _ = linear_tasks(40, 10, 0.3 * np.eye(3), seed=4)
    for prior in ("isotropic", "diagonal", "full"):
        meta = MetaRegressor(LinearRegression(), prior=prior).fit(
            X, y, tasks=tasks)
        assert meta.prior_kind_ == prior
        assert meta.prior_scores_ == {}
    meta = MetaRegressor(LinearRegression(), prior="lowrank").fit(
        X, y, tasks=tasks)
    assert meta.prior_kind_ == "lowrank-1"  # the only rank below d - 1 = 2
    # random effects by position and by name; the others are shared
    import pandas as pd

    frame = pd.DataFrame(X, columns=["a", "b"])
    by_name = MetaRegressor(LinearRegression(), prior="diagonal",
                            random_effects=["b", "intercept"]).fit(
        frame, y, tasks=tasks)
    by_position = MetaRegressor(LinearRegression(), prior="diagonal",
                                random_effects=[1, "intercept"]).fit(
        X, y, tasks=tasks)
    assert by_name.prior_kind_ == "diagonal on 2 random effects"
    assert_allclose(by_name.task_params_, by_position.task_params_)
    spread = np.ptp(by_name.task_params_, axis=0)
    assert spread[0] < 1e-3 * spread[1:].min()
    with pytest.raises(ValueError, match="not a feature"):
        MetaRegressor(random_effects=["c"]).fit(frame, y, tasks=tasks)
    with pytest.raises(ValueError, match="out of range"):
        MetaRegressor(random_effects=[5]).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="empty"):
        MetaRegressor(random_effects=[]).fit(X, y, tasks=tasks)


def test_wide_tasks_leave_out_matrix_priors():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20 * 4, 600))
    tasks = np.repeat(np.arange(20), 4)
    y = X[:, 0] + rng.normal(size=80)
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    assert set(meta.prior_scores_) == {"isotropic", "diagonal",
                                       "isotropic on 1 random effects",
                                       "pooled"}


def structure_names(n_features, n_tasks, *, prior="auto", random_effects="auto"):
    """The candidates ``prior`` compares for a logistic model on ``n_tasks``."""
    d = n_features + 1
    l2w = np.r_[np.ones(n_features), 0.0]
    problem = Problem(LOGISTIC, 1, n_features, True, False, 1.0, 0.0, l2w,
                      np.zeros(d))
    return [s.name for s in candidate_structures(
        prior, random_effects, problem, False, False, "auto", n_tasks=n_tasks)]


def test_auto_compares_matrix_priors_only_with_two_tasks_per_coefficient():
    vector = ["isotropic", "diagonal", "isotropic on 1 random effects"]
    matrix = ["full", "lowrank-1", "lowrank-2"]
    # 11 coefficients: a full covariance has 66 free values, its sample
    # version from 21 tasks a rank of at most 20
    assert structure_names(10, 21) == vector
    assert sorted(structure_names(10, 22)) == sorted(vector + matrix)
    # 3 random effects out of 11 need 6 tasks only
    varying = np.zeros(11, dtype=bool)
    varying[[0, 1, 10]] = True
    assert structure_names(10, 5, random_effects=varying) == [
        "isotropic on 3 random effects", "diagonal on 3 random effects"]
    assert "full on 3 random effects" in structure_names(
        10, 6, random_effects=varying)
    # an explicit structure is the user's choice, whatever the tasks
    assert structure_names(10, 3, prior="full") == ["full"]
    assert structure_names(10, 3, prior="lowrank") == [
        "lowrank-1", "lowrank-2", "lowrank-3"]
    assert matrix_priors_estimable(50, 100)
    assert not matrix_priors_estimable(51, 100)


def test_the_fitted_candidates_follow_the_number_of_tasks():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(24 * 8, 5))  # 6 coefficients
    tasks = np.repeat(np.arange(24), 8)
    y = X @ rng.normal(size=5) + rng.normal(size=len(X))
    few = MetaRegressor(Ridge()).fit(X[tasks < 11], y[tasks < 11],
                                     tasks=tasks[tasks < 11])
    assert set(few.prior_scores_) == {"isotropic", "diagonal",
                                      "isotropic on 1 random effects", "pooled"}
    many = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    assert {"full", "lowrank-1", "lowrank-2"} <= set(many.prior_scores_)


def explicit_prior(kind):
    """``prior``, ``random_effects`` of an explicit fit of ``prior_kind_``."""
    if kind.endswith(" on 1 random effects"):
        return dict(prior=kind.split()[0], random_effects=["intercept"])
    return dict(prior=kind, random_effects=None)


def test_the_prior_chosen_on_wide_tasks_is_the_explicit_fit():
    # 40 features, 20 rows per task (fewer than the 41 parameters), 40 tasks:
    # the row-space solver, and no matrix prior to compare (41 > 40 / 2)
    rng = np.random.default_rng(9)
    T, n, p = 40, 20, 40
    X = rng.normal(size=(T * n, p))
    tasks = np.repeat(np.arange(T), n)
    coef = rng.normal(size=p) * (np.arange(p) < 5) + 0.5 * rng.normal(
        size=(T, p))
    y = np.einsum("ij,ij->i", X, coef[tasks]) + rng.normal(size=T * n)
    # (a tight tol: EM converges linearly, and at 1e-6 a fit from the
    # initial prior may stop a percent short of the fixed point)
    auto = MetaRegressor(Ridge(), tol=1e-9).fit(X, y, tasks=tasks)
    assert set(auto.prior_scores_) == {"isotropic", "diagonal",
                                       "isotropic on 1 random effects",
                                       "pooled"}
    explicit = MetaRegressor(Ridge(), tol=1e-9,
                             **explicit_prior(auto.prior_kind_)).fit(
        X, y, tasks=tasks)
    assert explicit.prior_kind_ == auto.prior_kind_
    # the same fixed point of empirical Bayes, reached from another start
    # (the selection's prior, learned on three rows in four)
    scale = np.abs(auto.task_params_).max()
    assert_allclose(explicit.meta_params_, auto.meta_params_, rtol=0,
                    atol=1e-5 * scale)
    assert_allclose(explicit.task_params_, auto.task_params_, rtol=0,
                    atol=1e-5 * scale)
    assert explicit.gamma_ == pytest.approx(auto.gamma_, rel=1e-4)


def test_a_fit_leaves_the_blas_thread_limits_as_it_found_them():
    X, y, tasks, _ = linear_tasks(10, 6, 0.3 * np.eye(3), seed=8)
    before = [info["num_threads"] for info in threadpool_info()]
    MetaRegressor(LinearRegression()).fit(X, y, tasks=tasks)
    assert [info["num_threads"] for info in threadpool_info()] == before



def test_overlapping_fits_hold_one_blas_thread_until_the_last_ends():
    # threadpool_limits restores what it found on entry: the fit ending first
    # lifted the limit under the other, which then left the process on one
    # BLAS thread (fits on a pool's threads: GridSearchCV under joblib's
    # threading backend); and threadpoolctl lets one thread at a time set
    # OpenBLAS's count, ignoring the others while that thread lives
    import threading

    from skmeta._methods._blas import one_blas_thread

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info()
                if info["user_api"] == "blas"]

    before = blas_threads()
    first_in, second_in, first_out, done = (threading.Event() for _ in range(4))
    seen = {}

    def first():
        with one_blas_thread():
            first_in.set()
            second_in.wait()
        first_out.set()
        done.wait()  # alive, as a pool's thread stays

    def second():
        first_in.wait()
        with one_blas_thread():
            second_in.set()
            first_out.wait()
            seen["after the first ended"] = blas_threads()
        seen["after both"] = blas_threads()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    threads[1].join(60)
    done.set()
    threads[0].join(60)
    assert seen["after the first ended"] == [1] * len(before)
    assert seen["after both"] == before == blas_threads()
    # and a limit set afterwards in this thread takes effect
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        assert blas_threads() == [1] * len(before)


# --------------------------------------------------------------------------
# predictive uncertainty
# --------------------------------------------------------------------------
def test_predictive_std_is_the_closed_form_of_ridge_under_a_fixed_prior():
    X, y, tasks, _ = linear_tasks(8, 15, 0.2 * np.eye(4), seed=6)
    alpha, gamma = 0.7, 2.0
    meta = MetaRegressor(Ridge(alpha=alpha), gamma=gamma,
                         prior="isotropic").fit(X, y, tasks=tasks)
    Z = np.column_stack([X, np.ones(len(y))])
    D = np.diag([alpha] * 3 + [0.0]) + gamma * np.eye(4)
    # the noise variance: residuals over the rows less the fitted dof
    rss, dof = 0.0, 0.0
    covs = []
    for t in range(8):
        Zt = Z[tasks == t]
        A_inv = np.linalg.inv(Zt.T @ Zt + D)
        rss += np.sum((y[tasks == t] - Zt @ meta.task_params_[t]) ** 2)
        dof += np.trace(Zt.T @ Zt @ A_inv)
        covs.append(A_inv)
    phi = rss / (len(y) - dof)
    assert meta.noise_variance_ == pytest.approx(phi, rel=1e-8)
    Xq = np.random.default_rng(7).normal(size=(5, 3))
    Zq = np.column_stack([Xq, np.ones(5)])
    for t in (0, 5):
        mean, std = meta.predict(Xq, tasks=np.full(5, t), return_std=True)
        expected = np.sqrt(np.einsum("ij,jk,ik->i", Zq, phi * covs[t], Zq)
                           + phi)
        assert_allclose(std, expected, rtol=1e-7)
        assert_allclose(mean, Zq @ meta.task_params_[t], rtol=1e-10)
        assert_allclose(meta.task_posterior_cov(t), phi * covs[t], rtol=1e-7)
    # an unseen task: the prior's spread, wider than a seen task's
    _, unseen = meta.predict(Xq, tasks=np.full(5, 99), return_std=True)
    expected = np.sqrt(np.einsum("ij,ij->i", Zq, Zq) * phi / gamma + phi)
    assert_allclose(unseen, expected, rtol=1e-7)
    assert np.all(unseen > std)


def test_a_task_without_weight_has_the_prior_as_its_posterior():
    # averaged losses (Poisson): a task whose rows all weigh zero carries no
    # information -- it is absent, as its rows are, and its rows get the
    # prior's predictive spread (an overflow, covariances of 1e300, when its
    # scale, the weight, was zero and it was kept)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    tasks = np.repeat(np.arange(6), 20)
    y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.2 * (tasks % 3)))
    weight = np.where(tasks == 2, 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        meta = MetaRegressor(PoissonRegressor()).fit(X, y, tasks=tasks,
                                                     sample_weight=weight)
    assert 2 not in meta.tasks_
    rows = tasks == 2
    mean, std = meta.predict(X[rows], tasks=tasks[rows], return_std=True)
    unseen = meta.predict(X[rows], tasks=np.full(rows.sum(), 99),
                          return_std=True)
    assert_allclose(mean, unseen[0], rtol=1e-12)
    assert_allclose(std, unseen[1], rtol=1e-12)
    assert np.all(np.diag(meta.task_posterior_cov(0))
                  < np.diag(meta.prior_covariance_))


@pytest.mark.parametrize("base", [LinearRegression(), Ridge(alpha=1.0)],
                         ids=["unpenalized", "ridge"])
def test_intervals_on_new_few_shot_tasks_are_calibrated(base):
    covariance = np.diag([0.4, 0.3, 0.2, 1.0])
    X, y, tasks, _ = linear_tasks(300, 20, covariance, seed=8)
    meta = MetaRegressor(base).fit(X, y, tasks=tasks)
    # new tasks from the same population: 5 rows to adapt, 20 to score
    Xn, yn, tn, _ = linear_tasks(300, 25, covariance, seed=9)
    tn = tn + 1000
    position = np.arange(len(yn)) % 25
    support, query = position < 5, position >= 5
    meta.partial_fit(Xn[support], yn[support], tasks=tn[support])
    mean, std = meta.predict(Xn[query], tasks=tn[query], return_std=True)
    coverage = np.mean(np.abs(yn[query] - mean) <= 1.6449 * std)
    assert 0.86 <= coverage <= 0.94, coverage


def test_intervals_of_tasks_spreading_wider_than_the_penalty_are_calibrated():
    # make_meta_regression's tasks spread four times wider (coefficient sd
    # about 24) than Ridge()'s alpha=1 lets a prior be (noise / alpha: sd
    # 5); with the transfer term kept positive, the defaults' 90 % intervals
    # of new tasks covered 0.31, 0.36, 0.46 of their targets from 1, 3, 5
    # rows (benchmarks/bench_intervals.py)
    X, y, tasks = make_meta_regression(
        n_tasks=300, n_samples_per_task=45, n_features=5, n_informative=5,
        noise=5.0, task_spread=0.5, random_state=0)
    position = np.arange(len(y)) % 45
    train = (tasks < 200) & (position < 25)
    query = (tasks >= 200) & (position >= 25)
    for k in (1, 3, 5):
        meta = MetaRegressor(Ridge()).fit(X[train], y[train],
                                          tasks=tasks[train])
        support = (tasks >= 200) & (position < k)
        meta.partial_fit(X[support], y[support], tasks=tasks[support])
        mean, std = meta.predict(X[query], tasks=tasks[query],
                                 return_std=True)
        coverage = np.mean(np.abs(y[query] - mean) <= 1.6449 * std)
        assert 0.86 <= coverage <= 0.94, (k, coverage)


def test_poisson_predictive_std_adds_the_parameters_spread():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(300, 2))
    tasks = np.repeat(np.arange(30), 10)
    y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.5))
    meta = MetaRegressor(PoissonRegressor(alpha=0.1)).fit(X, y, tasks=tasks)
    mean, std = meta.predict(X[:20], tasks=tasks[:20], return_std=True)
    # at least the Poisson noise of the plug-in mean, a little more
    assert np.all(std > np.sqrt(mean))
    assert np.all(std < 1.5 * np.sqrt(mean) + 1.0)


def test_no_posterior_for_the_unrolled_methods():
    X, y, tasks, _ = linear_tasks(10, 8, 0.2 * np.eye(3), seed=11)
    meta = MetaRegressor(method="maml", max_iter=5).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="posterior covariances"):
        meta.predict(X, tasks=tasks, return_std=True)


# --------------------------------------------------------------------------
# one task is the base estimator; no silent nonsense
# --------------------------------------------------------------------------
@pytest.mark.parametrize("base", [Ridge(), LinearRegression(), Lasso(alpha=0.1),
                                  ElasticNet(alpha=0.1), PoissonRegressor()],
                         ids=lambda est: type(est).__name__)
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_a_fit_without_tasks_is_the_base_estimators_own(base, offset):
    # (features of a large mean, a year or a price level: Lasso's and
    # ElasticNet's coordinate descent stopped far from the minimizer, at
    # coefficients of 0.34 and 0.21 where Lasso's own are 0.90 and 1.87)
    rng = np.random.default_rng(12)
    X = rng.normal(size=(60, 3))
    y = rng.poisson(np.exp(0.2 * X[:, 0] + 1.0)).astype(float)
    X = X + offset
    meta = MetaRegressor(base).fit(X, y)
    exact = {"tol": 1e-12, "max_iter": 10000} if "max_iter" in base.get_params() \
        else {}
    if "solver" in base.get_params() and isinstance(base, PoissonRegressor):
        # (lbfgs stops at coefficients of 0 on the offset columns)
        exact["solver"] = "newton-cholesky"
    own = clone(base).set_params(**exact).fit(X, y)
    assert_allclose(meta.task_params_[0],
                    np.r_[own.coef_, own.intercept_], rtol=1e-5, atol=1e-7)
    assert meta.gamma_ == 0.0
    # one task is its own population model (meta_estimator_ held zeros),
    # after a partial_fit too
    assert_allclose(meta.meta_estimator_.coef_, meta.task_estimator().coef_)
    with pytest.warns(UserWarning, match="fitted without task identities"):
        meta.partial_fit(X[:30], y[:30])
    assert_allclose(meta.meta_estimator_.coef_, meta.task_estimator().coef_)


@pytest.mark.parametrize("base", [Lasso(alpha=0.1), ElasticNet(alpha=0.1)],
                         ids=lambda est: type(est).__name__)
def test_an_l1_fit_on_columns_offset_by_a_million_is_the_base_estimators(base):
    # the intercept's pivot is 1e-12 of the offset columns' curvature: it
    # is still minimized out (a floor relative to the largest diagonal
    # entry left it to coordinate descent, and the coefficients at 0)
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(30, 2))
    y = Z @ [1.0, 2.0] + 3.0 + 0.1 * rng.normal(size=30)
    X = Z + 1e6
    meta = MetaRegressor(base).fit(X, y)
    own = clone(base).set_params(tol=1e-12, max_iter=100000).fit(X, y)
    assert_allclose(meta.task_estimator().coef_, own.coef_, rtol=1e-6)


def test_a_classifier_without_tasks_is_the_base_estimators_own():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] + rng.logistic(size=80) > 0).astype(int)
    meta = MetaClassifier().fit(X, y)
    own = LogisticRegression(tol=1e-12, max_iter=10000).fit(X, y)
    assert_allclose(meta.task_params_[0], np.r_[own.coef_[0], own.intercept_],
                    rtol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_an_l1_classifier_without_tasks_is_liblinears_own(offset):
    # liblinear penalizes the intercept too: with features of a large mean,
    # nothing could be minimized out, and coordinate descent stopped with
    # probabilities 0.165 from liblinear's (0 coefficients at offset 1e4)
    rng = np.random.default_rng(15)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] - X[:, 1] + rng.logistic(size=80) > 0).astype(int)
    X = X + offset
    base = LogisticRegression(penalty="l1", solver="liblinear", C=0.5)
    meta = MetaClassifier(base).fit(X, y)
    own = clone(base).set_params(tol=1e-12, max_iter=100000).fit(X, y)
    assert_allclose(meta.predict_proba(X), own.predict_proba(X), atol=1e-5)


# without a penalty, or with one that leaves the intercept free (as
# scikit-learn's solvers do), a task of one class or of zero counts runs off
# along the intercept (C=1: to 37)
@pytest.mark.parametrize("C, alpha", [(np.inf, 0.0), (1.0, 1.0)])
def test_tasks_with_nothing_to_bound_them_warn(C, alpha):
    rng = np.random.default_rng(14)
    X = rng.normal(size=(60, 2))
    tasks = np.repeat(np.arange(4), 15)
    y = (X[:, 0] > 0).astype(int)
    y[tasks == 2] = 1
    with pytest.warns(UserWarning, match=r"tasks \[2\] hold a single class"):
        MetaClassifier(LogisticRegression(C=C), gamma=0.0).fit(
            X, y, tasks=tasks)
    counts = rng.poisson(2.0, size=60).astype(float)
    counts[tasks == 1] = 0.0
    with pytest.warns(UserWarning, match=r"tasks \[1\] hold all-zero counts"):
        MetaRegressor(PoissonRegressor(alpha=alpha), gamma=0.0).fit(
            X, counts, tasks=tasks)
    # rows of weight 0 count for nothing: task 0's class-0 rows weigh 0
    weight = np.where((tasks == 0) & (y == 0), 0.0, 1.0)
    with pytest.warns(UserWarning, match=r"tasks \[0, 2\] hold a single class"):
        MetaClassifier(LogisticRegression(C=C), gamma=0.0).fit(
            X, y, tasks=tasks, sample_weight=weight)
    # a new task adapted with nothing transferred
    meta = MetaClassifier(LogisticRegression(C=C), gamma=0.0).fit(
        X[tasks != 2], y[tasks != 2], tasks=tasks[tasks != 2])
    with pytest.warns(UserWarning, match="hold a single class"):
        meta.adapt(X[tasks == 2], y[tasks == 2])
    # a prior bounds them, and so does a penalty without an intercept
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MetaClassifier(LogisticRegression(C=C), gamma=1.0).fit(
            X, y, tasks=tasks)
        if np.isfinite(C):
            MetaClassifier(LogisticRegression(C=C, fit_intercept=False),
                           gamma=0.0).fit(X, y, tasks=tasks)


def test_a_diverging_meta_training_stops_with_the_last_finite_prior():
    X, y, tasks, _ = linear_tasks(10, 12, 0.2 * np.eye(3), seed=15)
    y = 1e6 * y
    with pytest.warns(ConvergenceWarning, match="diverged at meta-iteration"):
        meta = MetaRegressor(LinearRegression(), method="maml", gamma=1.0,
                             inner_lr=5.0, inner_steps=300,
                             max_iter=200).fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(meta.meta_params_))
    assert np.all(np.isfinite(meta.task_params_))
    assert meta.n_iter_ < 200


def test_a_prior_that_cannot_be_learned_falls_back_to_the_fixed_one():
    # four tasks of five rows and 21 parameters, separable, and a base
    # estimator without penalty (nothing holds the prior mean either):
    # empirical Bayes runs away (the precision degenerates); the fit says so
    # and is the one with the former fixed prior, gamma=1 and isotropic
    X, y, tasks = make_meta_classification(
        n_tasks=200, n_samples_per_task=5, n_features=20, n_informative=10,
        n_redundant=0, random_state=0)
    X, y, tasks = X[tasks < 4], y[tasks < 4], tasks[tasks < 4]
    base = LogisticRegression(penalty=None)
    with pytest.warns(ConvergenceWarning, match="could not be learned"):
        meta = MetaClassifier(base).fit(X, y, tasks=tasks)
    fixed = MetaClassifier(base, gamma=1.0, prior="isotropic").fit(
        X, y, tasks=tasks)
    assert meta.gamma_ == 1.0 and meta.prior_kind_ == "isotropic"
    assert_allclose(meta.task_params_, fixed.task_params_, rtol=1e-12)
    assert_allclose(meta.meta_params_, fixed.meta_params_, rtol=1e-12)


def test_learned_priors_that_lose_their_models_are_degenerate():
    # a classifier's log-loss vanishes only as its margins grow without
    # bound: under a learned prior, tasks whose rows cost (all but) nothing
    # are held by no prior any longer, whether or not EM overflowed first;
    # nor are models that fit their own rows worse than all-zero parameters
    chance = np.log(2) * 40.0  # 40 rows' log-loss at equal probabilities

    def step(classifies, loss, zero=chance, learn_theta0=True):
        return SimpleNamespace(classifies=classifies, total_weight=40.0,
                               zero_loss=lambda: zero,
                               learn_theta0=learn_theta0,
                               scaled_loss=lambda solutions: loss)

    fit = SimpleNamespace(solutions=object())
    with pytest.raises(FloatingPointError, match="separated"):
        raise_if_degenerate(step(True, 0.5 * 1e-8 * 40.0), fit)
    with pytest.raises(FloatingPointError, match="worse than all-zero"):
        raise_if_degenerate(step(True, 1.01 * chance), fit)
    with pytest.raises(FloatingPointError, match="worse than all-zero"):
        raise_if_degenerate(step(False, 101.0, zero=100.0), fit)
    # a fit whose optimum is zero, within the rounding of averaged losses
    raise_if_degenerate(step(False, 100.0 * (1 + 1e-12), zero=100.0), fit)
    # log-loss that a prior still holds, up to equal class probabilities'; an
    # exact least-squares fit
    raise_if_degenerate(step(True, 1e-6 * 40.0), fit)
    raise_if_degenerate(step(True, chance), fit)
    raise_if_degenerate(step(False, 0.0), fit)
    # worse than all-zero parameters under a prior mean set elsewhere (a
    # prior_estimator, earlier chunks of partial_fit): not degenerate
    raise_if_degenerate(step(True, 1e6), fit, against_zero=False)
    raise_if_degenerate(step(True, 1e6, learn_theta0=False), fit)


def test_a_prior_mean_that_runs_away_falls_back_to_the_fixed_prior():
    # four tasks of ten rows and 21 parameters, whose rows together are all
    # but separable: the random-intercept candidate wins the selection (the
    # others degenerate), and the fit on all rows, from its prior, sends the
    # shared coefficients -- the prior mean, which no penalty holds -- to
    # |theta0| ~ 3e4 in one EM step, then stops, "converged", with models
    # whose training log-loss is 8e3 per row. Before, silently. (With the
    # random effects left to the selection, the pooled model now wins it:
    # see test_the_pooled_model_competes_where_tasks_do_not_differ.)
    X, y, tasks = few_separable_tasks()
    with pytest.warns(ConvergenceWarning, match="could not be learned"):
        meta = MetaClassifier(random_effects=["intercept"]).fit(
            X, y, tasks=tasks)
    fixed = MetaClassifier(gamma=1.0, prior="isotropic").fit(X, y, tasks=tasks)
    assert meta.gamma_ == 1.0 and meta.prior_kind_ == "isotropic"
    assert_allclose(meta.task_params_, fixed.task_params_, rtol=1e-12)
    proba = meta.predict_proba(X, tasks=tasks)
    assert log_loss(y, proba) < 0.2 < np.log(2)


def test_a_given_prior_mean_is_trusted_as_far_as_the_tasks_say():
    # with prior_estimator and gamma="auto", the transfer term pulls toward
    # the given model and the base penalty D toward zero, as written:
    # empirical Bayes learns the transfer term alone, its strength pi the
    # stationary point of the exact evidence of that model (the penalty a
    # fixed factor of each task's likelihood), so that a given model the
    # tasks do not follow is discounted (pi -> 0: each task its own fit).
    # Counting D in a prior centred on the given model held every task to
    # it with at least D's strength: held-out MSE 35.8 where the tasks' own
    # fits score 0.44 (a red-team review)
    rng = np.random.default_rng(1)
    T, n = 40, 8
    coef = np.array([1.0, -1.0, 0.5]) + 0.7 * rng.normal(size=(T, 3))
    X = rng.normal(size=(T * n, 2))
    tasks = np.repeat(np.arange(T), n)
    y = (np.einsum("ij,ij->i", X, coef[tasks, :2]) + coef[tasks, 2]
         + 0.5 * rng.normal(size=T * n))
    source = Ridge().fit(1.3 * X[:50], y[:50])
    mean = np.r_[source.coef_, source.intercept_]
    penalty = np.array([1.0, 1.0, 0.0])
    Z = np.c_[X, np.ones(T * n)]

    def log_evidence(log_pi, phi):
        # exp(-theta' D theta / 2 phi) N(theta; mean, phi / pi) is
        # c N(theta; M^-1 pi mean, phi M^-1), M = D + pi I
        pi = np.exp(log_pi)
        M = penalty + pi
        centre = pi * mean / M
        log_c = 0.5 * np.sum(np.log(pi / M)) - (
            pi * mean @ mean - pi**2 * np.sum(mean**2 / M)) / (2 * phi)
        total = 0.0
        for t in range(T):
            Zt = Z[tasks == t]
            residual = y[tasks == t] - Zt @ centre
            C = phi * (np.eye(n) + Zt @ np.diag(1.0 / M) @ Zt.T)
            total += log_c - 0.5 * (np.linalg.slogdet(2 * np.pi * C)[1]
                                    + residual @ np.linalg.solve(C, residual))
        return total

    meta = MetaRegressor(Ridge(), prior="isotropic", prior_estimator=source,
                         tol=1e-12, max_iter=5000).fit(X, y, tasks=tasks)
    assert_allclose(meta.meta_params_, mean, rtol=1e-12)
    assert_allclose(meta.transfer_center_, mean, rtol=1e-12)
    at, step = np.log(meta.gamma_), 1e-5
    slope = (log_evidence(at + step, meta.noise_variance_)
             - log_evidence(at - step, meta.noise_variance_)) / (2 * step)
    assert abs(slope) < 1e-4
    # a given model far from the tasks (coefficients -8, 6, 5 where theirs
    # are about 1, -1): discounted, the tasks about their own fits
    far = Ridge().fit(1.3 * X[:50], X[:50] @ [-8.0, 6.0] + 5.0)
    train = np.arange(T * n) % n < 6
    meta = MetaRegressor(Ridge(alpha=5.0), prior="isotropic",
                         prior_estimator=far).fit(X[train], y[train],
                                                  tasks=tasks[train])
    own = np.concatenate([
        Ridge(alpha=5.0).fit(X[train & (tasks == t)], y[train & (tasks == t)])
        .predict(X[~train & (tasks == t)]) for t in range(T)])
    error = np.mean((meta.predict(X[~train], tasks=tasks[~train])
                     - y[~train]) ** 2)
    assert error < 1.05 * np.mean((own - y[~train]) ** 2)


def few_separable_tasks():
    """Four binary tasks of ten rows and 21 parameters, their rows together
    all but separable."""
    X, y, tasks = make_meta_classification(
        n_tasks=200, n_samples_per_task=10, n_features=20, n_informative=10,
        n_redundant=0, random_state=0)
    return X[tasks < 4], y[tasks < 4], tasks[tasks < 4]


def test_the_pooled_model_competes_where_tasks_do_not_differ():
    # ten rows cannot tell four tasks of 21 parameters apart: held out rows
    # of the training tasks are best predicted by one model for all
    X, y, tasks = few_separable_tasks()
    meta = MetaClassifier().fit(X, y, tasks=tasks)
    assert meta.prior_kind_ == "pooled"
    assert min(meta.prior_scores_, key=meta.prior_scores_.get) == "pooled"
    # its score: LogisticRegression fitted to the kept rows (each task's
    # every fourth row held out) and scored on the held-out ones
    held = np.zeros(len(y), dtype=bool)
    for task in range(4):
        held[np.flatnonzero(tasks == task)[3::4]] = True
    kept = LogisticRegression(tol=1e-10, max_iter=10_000).fit(X[~held], y[~held])
    assert_allclose(meta.prior_scores_["pooled"],
                    log_loss(y[held], kept.predict_proba(X[held])), rtol=1e-6)
    # the model: LogisticRegression on all rows, every task and a new one
    # held at it
    pooled = LogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y)
    theta = np.r_[pooled.coef_.ravel(), pooled.intercept_]
    assert_allclose(meta.meta_params_, theta, atol=1e-5)
    assert_allclose(meta.task_params_, np.tile(theta, (4, 1)), atol=1e-5)
    assert_allclose(meta.predict_proba(X, tasks=tasks), pooled.predict_proba(X),
                    atol=1e-6)
    flipped = meta.adapt(X[:10], 1 - y[:10])
    assert_allclose(np.r_[flipped.coef_.ravel(), flipped.intercept_], theta,
                    atol=1e-5)
    # asked for explicitly, the same fit
    explicit = MetaClassifier(prior="pooled").fit(X, y, tasks=tasks)
    assert explicit.prior_kind_ == "pooled" and explicit.prior_scores_ == {}
    assert_allclose(explicit.task_params_, meta.task_params_, rtol=1e-12)


def test_the_pooled_model_of_squared_errors_keeps_its_residual_noise():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(180, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3 * rng.normal(size=180)
    tasks = np.repeat(np.arange(30), 6)
    meta = MetaRegressor(Ridge(), prior="pooled").fit(X, y, tasks=tasks)
    pooled = Ridge().fit(X, y)
    residuals = y - pooled.predict(X)
    assert_allclose(meta.noise_variance_, residuals @ residuals / len(y),
                    rtol=1e-6)
    # an unseen task: the pooled prediction, within the noise alone
    mean, std = meta.predict(X[:3], tasks=[30] * 3, return_std=True)
    assert_allclose(mean, pooled.predict(X[:3]), atol=1e-6)
    assert_allclose(std, np.sqrt(meta.noise_variance_), rtol=1e-5)


def test_the_pooled_candidate_competes_where_its_fit_is_cheap():
    def affordable(n_rows, n_features):
        problem = Problem(LOGISTIC, 1, n_features, True, False, 1.0, 0.0,
                          np.ones(n_features + 1), np.zeros(n_features + 1))
        batch = SimpleNamespace(offsets=np.array([0, n_rows // 2, n_rows]))
        return pooled_fit_affordable(batch, problem)

    # rows x parameters x the smaller of the two, at most 1e10
    assert affordable(10_000, 999) and not affordable(10_000, 1_000)
    assert affordable(1_000, 9_999) and not affordable(1_001, 9_999)
    # rows of at most 256 MiB (8 bytes, features and two more)
    assert affordable(1_000_000, 31) and not affordable(1_100_000, 31)


@pytest.mark.parametrize("params, match", [
    (dict(gamma=1.0), "prior='pooled' holds every coefficient"),
    (dict(random_effects=["intercept"]), "prior='pooled' holds every"),
])
def test_the_pooled_prior_sets_its_own_strength(params, match):
    X, y, tasks = few_separable_tasks()
    with pytest.raises(ValueError, match=match):
        MetaClassifier(prior="pooled", **params).fit(X, y, tasks=tasks)
    prior = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="leave prior_estimator=None"):
        MetaClassifier(prior="pooled", prior_estimator=prior).fit(
            X, y, tasks=tasks)


def test_a_pooled_prior_without_a_finite_pooled_fit_raises():
    # 40 rows of 21 parameters, separable, without a penalty: the pooled
    # model does not exist, and nothing stands in for it (it fell back to
    # gamma=1, warning of a degenerate precision it never learned)
    X, y, tasks = few_separable_tasks()
    with pytest.raises(ValueError, match="no finite minimizer"):
        MetaClassifier(LogisticRegression(penalty=None), prior="pooled").fit(
            X, y, tasks=tasks)


def test_a_penalty_that_zeroes_every_parameter_is_not_a_run_away():
    # Lasso(alpha=10) zeroes every coefficient of these tasks: the fit IS
    # all-zero parameters, and its averaged losses, rescaled, land a few
    # ulps above theirs; a learned prior stays learned, without a warning
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(5), 20)
    X = rng.normal(size=(100, 3))
    y = 1e-3 * rng.normal(size=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaRegressor(Lasso(alpha=10.0, fit_intercept=False)).fit(
            X, y, tasks=tasks)
    assert np.all(meta.task_params_ == 0.0)
    assert meta.gamma_ != 1.0


@pytest.mark.parametrize("base", [LogisticRegression(),
                                  PoissonRegressor(alpha=0.1)],
                         ids=["logistic", "poisson"])
def test_identical_tasks_learn_the_pooled_base_estimator(base):
    # copies of one task: the learned prior pins them together, and the
    # prior mean, held by one task's base penalty, is the base estimator's
    # fit on all rows with that penalty once: LogisticRegression(C=1)'s own
    # (a pooled fit penalizes its coefficients once, not once per task);
    # PoissonRegressor's with alpha / T (it averages its loss over all
    # rows, and so weighs its penalty T times one task's). Before, nothing
    # held the mean: the logistic fit ran away (and fell back to gamma=1,
    # whose mean is 40 % off), the Poisson one ended up to 160 % off.
    rng = np.random.default_rng(0)
    X1 = rng.normal(size=(12, 3))
    if isinstance(base, LogisticRegression):
        y1 = (X1[:, 0] + rng.logistic(size=12) > 0).astype(int)
        meta_class = MetaClassifier
    else:
        y1 = rng.poisson(np.exp(0.3 * X1[:, 0])).astype(float)
        meta_class = MetaRegressor
    X, y = np.tile(X1, (5, 1)), np.tile(y1, 5)
    tasks = np.repeat(np.arange(5), 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = meta_class(base, prior="isotropic").fit(X, y, tasks=tasks)
    pooled = clone(base)
    if isinstance(base, PoissonRegressor):
        pooled.set_params(alpha=base.alpha / 5)
    pooled.fit(X, y)
    # (the learned strength is large, not infinite: 1 % of the way left)
    assert_allclose(meta.meta_params_,
                    np.r_[pooled.coef_.ravel(), pooled.intercept_], rtol=1e-2)


@pytest.mark.parametrize("base", [ElasticNet(alpha=0.1, l1_ratio=0.0),
                                  PoissonRegressor()],
                         ids=["elasticnet", "poisson"])
@pytest.mark.parametrize("prior", ["isotropic", "diagonal", "full"])
def test_the_prior_mean_of_averaged_losses_stays_with_the_tasks(base, prior):
    # 20 similar tasks, a base estimator that averages its loss. The prior
    # mean theta0 balances the tasks' pull, T M (mean - theta0) with M = Pi
    # + D >= D, against its own prior, one task's penalty D theta0: mean -
    # theta0 = (T M + D)^-1 D mean, and T M + D >= (T + 1) D bounds it in
    # D's norm by |mean|_D / (T + 1); for a diagonal M, coefficient by
    # coefficient, theta0 lies between T / (T + 1) of the mean and the mean
    # (a full M mixes the coefficients). Held by the
    # pooled fit's penalty (T D) it sat at half of the tasks' mean (0.47
    # against 0.95 for ElasticNet; 0.18 for Poisson's diagonal prior, where
    # the true coefficients average 0.5): each shrinkage widened the tasks'
    # spread about the mean, which weakened the learned prior, which let
    # the penalty shrink the mean further.
    rng = np.random.default_rng(0)
    T, n = 20, 15
    X = rng.normal(size=(T * n, 5))
    tasks = np.repeat(np.arange(T), n)
    w = np.array([1.0, 0.5, 0, 0, 0]) + 0.1 * rng.normal(size=(T, 5)) * [
        1, 1, 0, 0, 0]
    if isinstance(base, PoissonRegressor):
        w *= 0.5
        y = rng.poisson(np.exp(np.einsum("ij,ij->i", X, w[tasks]) + 0.5))
        y = y.astype(float)
    else:
        y = np.einsum("ij,ij->i", X, w[tasks]) + 0.3 * rng.normal(size=T * n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaRegressor(base, prior=prior, tol=1e-8, max_iter=1000).fit(
            X, y, tasks=tasks)
    problem = meta._problem()
    ridge = problem.lam2 * problem.l2w
    tasks_mean = meta.task_params_.mean(axis=0)
    shrunk = tasks_mean - meta.meta_params_
    assert (np.sqrt(ridge @ shrunk**2)
            <= np.sqrt(ridge @ tasks_mean**2) / (T + 1) + 1e-6)
    if prior != "full":
        # the two informative coefficients, positive
        assert np.all(meta.meta_params_[:2] >= T / (T + 1) * tasks_mean[:2]
                      - 1e-6)
        assert np.all(meta.meta_params_[:2] <= tasks_mean[:2] + 1e-6)


@pytest.mark.parametrize("prior", ["isotropic", "diagonal", "full"])
def test_averaged_losses_take_each_tasks_moments_in_its_own_units(prior):
    # tasks of 1 to 60 rows, a base estimator that averages its loss (Lasso
    # with a negligible alpha: squared errors, no base penalty). Task t's
    # objective L_t + (theta - mu)' M (theta - mu) / 2 is, in natural
    # units (times s_t / phi, s_t its rows), a prior N(mu, (phi / s_t)
    # M^-1): EM's fixed point is V = (phi / s) M^-1 (s the mean s_t) =
    # sum_t [s_t dev_t dev_t' + phi A_t^-1] / sum_t s_t, A_t = X_t' X_t /
    # s_t + M, shrunk as the structure's hyperprior does. Moments taken in
    # one unit for all tasks (dev dev' + (phi / s_t) A_t^-1) gave the task
    # of one row a posterior covariance sixty times the largest task's.
    rng = np.random.default_rng(3)
    sizes = np.array([1, 2, 4, 8, 15, 30, 40, 60])
    T, p = len(sizes), 2
    tasks = np.repeat(np.arange(T), sizes)
    X = rng.normal(size=(sizes.sum(), p))
    w = np.array([1.0, -0.5]) + 0.3 * rng.normal(size=(T, p))
    y = (np.einsum("ij,ij->i", X, w[tasks]) + 0.5
         + 0.2 * rng.normal(size=sizes.sum()))
    meta = MetaRegressor(Lasso(alpha=1e-12, max_iter=10000), prior=prior,
                         tol=1e-12, max_iter=5000).fit(X, y, tasks=tasks)
    M = meta.prior_precision_
    M = np.diag(M) if M.ndim == 1 else M
    phi = meta.noise_variance_
    S = np.zeros((p + 1, p + 1))
    for t in range(T):
        Xt = np.c_[X[tasks == t], np.ones(sizes[t])]
        dev = meta.task_params_[t] - meta.meta_params_
        S += (sizes[t] * np.outer(dev, dev)
              + phi * np.linalg.inv(Xt.T @ Xt / sizes[t] + M))
    S /= sizes.sum()
    level = np.trace(S) / (p + 1)
    shrink = _HYPERPRIOR_TASKS / (T + _HYPERPRIOR_TASKS)
    expected = {"isotropic": level * np.eye(p + 1),
                "diagonal": np.diag((1 - shrink) * np.diag(S) + shrink * level),
                "full": (1 - shrink) * S + shrink * level * np.eye(p + 1)}[prior]
    assert_allclose(phi / sizes.mean() * np.linalg.inv(M), expected,
                    rtol=1e-9, atol=1e-12 * level)


@pytest.mark.parametrize("prior", ["isotropic", "diagonal"])
@pytest.mark.parametrize("base", [Lasso(alpha=0.01), PoissonRegressor(alpha=0.01)],
                         ids=["lasso", "poisson"])
def test_a_task_of_one_row_leaves_an_averaged_losss_prior_in_place(base, prior):
    # fifteen tasks of twenty rows that barely differ, and one more task of
    # a single row drawn alike: the learned strength moves as one more task
    # may move it, for averaged losses as for Ridge (0.98-1.01 of it here),
    # where with moments in one unit for all tasks it fell to a hundredth
    # (the one-row task's posterior covariance counted twenty times) and the
    # fifteen tasks fell back toward their separate fits
    rng = np.random.default_rng(0)
    T, n, p = 15, 20, 3
    beta = np.array([1.0, -0.5, 0.3])
    tasks = np.repeat(np.arange(T), n)
    X = rng.standard_normal((T * n, p))
    w = beta + 0.05 * rng.standard_normal((T, p))
    z = np.einsum("ij,ij->i", X, w[tasks])
    poisson = isinstance(base, PoissonRegressor)
    y = (rng.poisson(np.exp(0.5 * z)).astype(float) if poisson
         else z + 0.5 * rng.standard_normal(T * n))
    alone = MetaRegressor(base, prior=prior).fit(X, y, tasks=tasks)
    for seed in range(3):
        draw = np.random.default_rng(100 + seed)
        x1 = draw.standard_normal((1, p))
        z1 = x1 @ (beta + 0.05 * draw.standard_normal(p))
        y1 = (draw.poisson(np.exp(0.5 * z1)).astype(float) if poisson
              else z1 + 0.5 * draw.standard_normal(1))
        more = MetaRegressor(base, prior=prior).fit(
            np.r_[X, x1], np.r_[y, y1], tasks=np.r_[tasks, T])
        assert 0.5 < more.gamma_ / alone.gamma_ < 2.0


def test_the_prior_means_newton_step_moves_pinned_coefficients():
    # T tasks of one Hessian A = M + K: the prior mean's reduced objective
    # has the curvature C = M^-1 - A^-1 = M^-1 K A^-1, and its Newton step
    # M^-1 C^-1 diff = M^-1 (M + K) K^-1 M diff, written here without the
    # difference of nearly equal terms. Coefficients pinned by a precision
    # 1e7 times the free one's (shared ones) have a curvature ~1e-14 of
    # its: a cut-off at 1e-12 of the largest left them out of the step (0
    # instead of O(1)), and the prior mean stalled, its fit declared
    # converged (two identical tasks of 20 rows: training log-loss 0.33
    # against 0.18 from another start). In the precision's units, each
    # direction's curvature is judged on one scale.
    rng = np.random.RandomState(0)
    d, T = 4, 5
    precision = np.array([1e8, 1e8, 1e8, 10.0])
    B = rng.randn(d, d)
    K = B @ B.T + np.eye(d)
    A = np.diag(precision) + K
    inv_sum = T * np.linalg.inv(A)
    diff = rng.randn(d) / precision  # a mean pulled by gradients of O(1)
    expected = (A @ np.linalg.solve(K, precision * diff)) / precision
    assert_allclose(newton_mean_step(diff, T, precision, inv_sum), expected,
                    rtol=1e-6)
    # with the base penalty D0 on the mean: (T M C M + D0) step = T M diff
    # - D0 theta0, the Newton step of F(theta0) + theta0' D0 theta0 / 2
    theta0 = rng.randn(d)
    penalty = np.array([1.0, 1.0, 1.0, 0.0])
    hessian = T * K @ np.linalg.solve(A, np.diag(precision))  # T M C M
    expected = np.linalg.solve(hessian + np.diag(penalty),
                               T * precision * diff - penalty * theta0)
    assert_allclose(newton_mean_step(diff, T, precision, inv_sum,
                                     theta0=theta0, mean_penalty=penalty),
                    expected, rtol=1e-6)


def test_separable_tasks_learn_a_prior_without_numerical_warnings():
    # identical, separable tasks: the candidate structures whose precision
    # runs away are scored out, not reported as overflows of private code
    rng = np.random.RandomState(0)
    X = rng.randn(120, 4)
    y = (X[:, 0] > 0).astype(int)
    tasks = np.repeat(np.arange(6), 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaClassifier().fit(X, y, tasks=tasks)
    scores = meta.prior_scores_
    assert np.isfinite(scores[meta.prior_kind_])
    assert scores[meta.prior_kind_] == min(scores.values())
    # the learned model separates the classes as the pooled one does
    pooled = LogisticRegression().fit(X, y)
    assert meta.score(X, y, tasks=tasks) >= pooled.score(X, y) - 0.01


def test_a_fixed_strength_on_separable_tasks_is_kept():
    # the user's gamma cannot run away: classifiers that separate their
    # rows under it are what was asked for, not a degenerate learned prior
    rng = np.random.RandomState(0)
    y = rng.randint(2, size=20 * 30)
    X = rng.randn(20 * 30, 4)
    X[:, 0] += 10.0 * (y - 0.5)
    tasks = np.repeat(np.arange(20), 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        meta = MetaClassifier(LogisticRegression(penalty=None), gamma=1e-3,
                              prior="diagonal").fit(X, y, tasks=tasks)
    assert meta.gamma_ == 1e-3 and meta.prior_kind_ == "diagonal"


def test_the_selection_holds_out_rows_whatever_their_weights():
    # every fourth row of positive weight of each task, at any scale of the
    # weights (read as units of weight, weights of 0.1 held out nothing)
    from skmeta._kernels._layout import make_batch

    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(3), [7, 1, 9])
    X = np.arange(17, dtype=float)[:, None]
    weights = rng.choice([0.0, 0.1, 0.3, 2.0], size=17)
    held_rows = []
    for scale in (1.0, 0.1, 1e3):
        held = make_batch(X, np.zeros(17), scale * weights, tasks, 3)[0] \
            .split_rows(4)[1]
        held_rows.append(held.Xd[:, 0].tolist())
    positive = weights > 0
    position = np.r_[[np.sum(positive[:i] & (tasks[:i] == tasks[i]))
                      for i in range(17)]]
    expected = np.flatnonzero(positive & (position % 4 == 3)).tolist()
    assert held_rows == [expected] * 3


def test_a_fit_stops_only_once_the_noise_variance_has_settled():
    # the models settle on the precision in the loss's units, while the
    # noise variance and the natural precision still move together: judged
    # on the models alone, the fit stopped at 4 iterations with a noise
    # variance of 0.578 against 0.243 at its fixed point (return_std 54 %
    # too wide)
    from sklearn.linear_model import LinearRegression

    from skmeta.datasets import make_meta_regression

    X, y, tasks = make_meta_regression(n_tasks=120, n_samples_per_task=30,
                                       n_features=3, noise=0.5, random_state=0)
    default = MetaRegressor(LinearRegression(), prior="diagonal").fit(
        X, y, tasks=tasks)
    tight = MetaRegressor(LinearRegression(), prior="diagonal", tol=1e-10,
                          max_iter=1000).fit(X, y, tasks=tasks)
    assert_allclose(default.noise_variance_, tight.noise_variance_, rtol=1e-3)
    assert_allclose(default.prior_precision_, tight.prior_precision_, rtol=1e-2)


def test_a_fixed_prior_does_not_depend_on_the_targets_units():
    # the prior mean's stopping test was absolute below 1: with targets of
    # size 1e-4 and less the first Newton step looked converged from
    # theta0 = 0, and the fit kept theta0 = 0 (predictions 5.5% off, noise
    # variance 2.3 times too large), silently; partial_fit's online step too
    X, y, tasks = make_meta_regression(n_tasks=30, n_samples_per_task=12,
                                       n_features=4, random_state=3)
    y = y / y.std()
    first = tasks < 20
    for base in (LinearRegression(), Ridge(alpha=1.0)):
        fits = {}
        for c in (1.0, 1e-6):
            meta = MetaRegressor(base, gamma=1.0, prior="isotropic")
            meta.fit(X[first], c * y[first], tasks=tasks[first])
            batch = (meta.meta_params_.copy(), meta.noise_variance_)
            meta.partial_fit(X[~first], c * y[~first], tasks=tasks[~first])
            fits[c] = (batch, meta)
        (theta0, noise), meta = fits[1.0]
        (theta0_c, noise_c), meta_c = fits[1e-6]
        assert np.max(np.abs(theta0)) > 0.1
        assert_allclose(theta0_c / 1e-6, theta0, rtol=1e-8)
        assert_allclose(noise_c / 1e-12, noise, rtol=1e-8)
        assert_allclose(meta_c.meta_params_ / 1e-6, meta.meta_params_,
                        rtol=1e-8)
        assert_allclose(meta_c.predict(X, tasks=tasks) / 1e-6,
                        meta.predict(X, tasks=tasks), rtol=1e-8, atol=1e-10)


def test_a_noise_variance_the_rows_cannot_tell_is_warned_of():
    # rows the models fit exactly leave no residual: the noise variance sat
    # at its floor (2e-308, or 1e-10 of y's variance under empirical Bayes)
    # and return_std gave spreads of 1e-149 to 5e-5 (90% intervals covering
    # none of the new targets), silently
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 5))
    y = X @ np.ones(5) + 0.5 * rng.standard_normal(5)
    one_row_tasks = np.arange(5)
    X_new = rng.standard_normal((3, 5))
    for meta in (MetaRegressor(Ridge(), gamma=0.0),
                 MetaRegressor(LinearRegression())):
        meta.fit(X, y, tasks=one_row_tasks)
        with pytest.warns(UserWarning, match="noise_variance_ could not be "
                          "estimated: the models fit every training row"):
            meta.predict(X_new, tasks=np.zeros(3, int), return_std=True)
        with pytest.warns(UserWarning, match="noise_variance_ could not be"):
            meta.task_posterior_cov(0)
    # a residual to tell the noise by: no warning
    X, y, tasks = make_meta_regression(n_tasks=10, n_samples_per_task=12,
                                       n_features=3, noise=1.0, random_state=0)
    meta = MetaRegressor(LinearRegression()).fit(X, y, tasks=tasks)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        meta.predict(X, tasks=tasks, return_std=True)


def test_iterations_that_cycle_stop_and_say_so():
    # ElasticNet with a column constant across all rows beside the
    # intercept: the prior mean's Newton step overshoots along the direction
    # the rows cannot see (the l1 part makes the objective piecewise linear
    # there), and the iterations settled into a period-3 cycle that ran to
    # max_iter (4 s) under a warning to increase max_iter, which did not help
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(8), 12)
    X = rng.normal(size=(96, 4))
    coef = rng.normal(size=(8, 4))
    y = np.einsum("ij,ij->i", X, coef[tasks]) + 1 + 0.3 * rng.normal(size=96)
    X = np.c_[X, np.full(96, 3.0)]
    meta = MetaRegressor(ElasticNet(alpha=0.05), prior="isotropic")
    with pytest.warns(ConvergenceWarning, match="repeat with a period of [23], "
                      "which more iterations do not leave"):
        meta.fit(X, y, tasks=tasks)
    assert meta.n_iter_ < 60
    # the cycle runs along what the rows do not see: the fit's predictions
    # are those of the base estimators fitted without a prior, nearly
    alone = MetaRegressor(ElasticNet(alpha=0.05), gamma=0.0).fit(X, y,
                                                                 tasks=tasks)
    assert np.mean((meta.predict(X, tasks=tasks) - y) ** 2) <= np.mean(
        (alone.predict(X, tasks=tasks) - y) ** 2)


@pytest.mark.parametrize("value", [1.5, 0.3])
@pytest.mark.parametrize("kwargs", [{}, {"prior": "mixture",
                                         "n_prior_components": 2},
                                    {"prior": "diagonal", "prior_df": 4.0}])
def test_a_constant_target_is_fitted_at_once(kwargs, value):
    # every task fitted exactly: EM's noise variance shrank by the tasks'
    # share of parameters per iteration toward a floor of 1e-300 (a thousand
    # iterations; max_iter=300 and a ConvergenceWarning), and a mixture's
    # evidence divided by it overflowed
    rng = np.random.RandomState(0)
    X = rng.normal(size=(120, 3))
    tasks = np.repeat(np.arange(6), 20)
    # (the variance of a constant 0.3 is a rounding residue, 3e-33: the
    # constant is told by its values)
    y = np.full(120, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaRegressor(Ridge(), **kwargs).fit(X, y, tasks=tasks)
    assert meta.n_iter_ <= 5
    assert_allclose(meta.predict(X, tasks=tasks), y, rtol=1e-12)
    # the floor follows the target's units
    assert 1e-10 * value**2 * (1 - 1e-6) <= meta.noise_variance_ \
        <= 1e-10 * value**2 * (1 + 1e-6)


def test_prior_settings_that_cannot_apply_are_refused_or_warned():
    X, y, tasks, _ = linear_tasks(12, 15, 0.3 * np.eye(3), seed=9)
    # random effects share the other coefficients through a learned strength;
    # under a fixed gamma the shape's unit determinant left the varying one
    # a transfer of about gamma * 1e-6 and the "shared" ones spread freely
    with pytest.raises(ValueError, match="random_effects shares .* gamma='auto'"):
        MetaRegressor(Ridge(), gamma=1.0, random_effects=[0]).fit(
            X, y, tasks=tasks)
    shared = MetaRegressor(Ridge(), random_effects=[0]).fit(X, y, tasks=tasks)
    assert np.ptp(shared.task_params_[:, 1:], axis=0).max() < 1e-3
    # ... and prior="auto" compares no random-intercepts prior then
    fixed = MetaRegressor(Ridge(), gamma=1.0).fit(X, y, tasks=tasks)
    assert not any("random effects" in name for name in fixed.prior_scores_)
    # no transfer term (gamma=0), or no tasks: nothing for a prior's shape
    independent = MetaRegressor(Ridge(), gamma=0.0).fit(X, y, tasks=tasks)
    for kwargs, what in [({"prior": "full"}, "prior='full' shapes"),
                         ({"random_effects": [0]}, "random_effects shapes")]:
        with pytest.warns(UserWarning, match=what + " the transfer term, "
                          "which gamma=0 leaves out") as record:
            meta = MetaRegressor(Ridge(), gamma=0.0, **kwargs).fit(
                X, y, tasks=tasks)
        assert record[0].filename == __file__
        assert_allclose(meta.task_params_, independent.task_params_)
    with pytest.warns(UserWarning, match="gamma=50.0, prior='full': a fit "
                      "without task identities .* ignores them") as record:
        alone = MetaRegressor(Ridge(), gamma=50.0, prior="full").fit(X, y)
    assert record[0].filename == __file__
    assert_allclose(alone.task_params_[0, :-1], Ridge().fit(X, y).coef_)


def test_one_labelled_task_compares_no_prior_structures():
    # one task tells nothing of how tasks differ: as without task labels,
    # the isotropic prior only (it compared three and chose a diagonal one)
    X, y, _, _ = linear_tasks(1, 60, 0.3 * np.eye(3), seed=10)
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=np.zeros(60, int))
    assert meta.prior_kind_ == "isotropic" and meta.prior_scores_ == {}
    # whose learned mean is the task's own model: the base estimator's fit
    own = Ridge().fit(X, y)
    assert_allclose(meta.task_params_[0], np.r_[own.coef_, own.intercept_],
                    atol=1e-4)


def test_an_isotropic_transfer_beside_a_ridge_penalty_maximizes_the_evidence():
    # the isotropic M-step fitted pi I to all second moments and took the
    # base penalty off afterwards: the coefficients the penalty holds (alpha
    # 20) pulled the level down, the unpenalized intercept's prior variance
    # came out at 0.14 where the tasks' is 1.0, the transfer term was not
    # isotropic, and the evidence was 45 nats below its family's maximum.
    # Now pi solves sum_j 1 / (pi + alpha_j) = tr S: squared errors make the
    # Laplace evidence exact, so its maximum along pi is checked directly
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    n_tasks, n_rows = 60, 8
    spread = np.sqrt([0.2, 0.1, 0.05, 1.0])
    theta = np.array([1.0, -0.5, 0.3, 2.0]) + spread * rng.standard_normal(
        (n_tasks, 4))
    X = rng.standard_normal((n_tasks * n_rows, 3))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    y = (np.einsum("ij,ij->i", X, theta[tasks, :3]) + theta[tasks, 3]
         + np.sqrt(0.5) * rng.standard_normal(len(X)))
    meta = MetaRegressor(Ridge(alpha=20.0), prior="isotropic", tol=1e-10,
                         max_iter=5000).fit(X, y, tasks=tasks)
    transfer = np.diag(np.atleast_2d(meta.prior_precision_)) if np.ndim(
        meta.prior_precision_) == 2 else meta.prior_precision_
    assert_allclose(transfer, transfer[0], rtol=1e-12)  # isotropic
    penalty = np.r_[20.0, 20.0, 20.0, 0.0]
    theta0, noise = np.ravel(meta.meta_params_), meta.noise_variance_

    def log_evidence(pi):
        prior = noise * np.diag(1.0 / (pi + penalty))
        total = 0.0
        for t in range(n_tasks):
            Xt = np.c_[X[tasks == t], np.ones(n_rows)]
            total += multivariate_normal(
                Xt @ theta0, Xt @ prior @ Xt.T + noise * np.eye(n_rows)).logpdf(
                y[tasks == t])
        return total

    best = log_evidence(transfer[0])
    for factor in (0.98, 1.02):
        assert log_evidence(factor * transfer[0]) < best
    intercept_variance = noise / transfer[0]
    assert 0.5 < intercept_variance < 2.0


def _tasks_with_intercepts(seed, T, n, mean, spread):
    """``T`` tasks of ``n`` rows of ``len(mean) - 1`` standard normal
    features: coefficients and intercept ``mean + spread * N(0, 1)``, noise
    of standard deviation 0.5. Returns ``X, y, tasks`` and the design with
    its column of ones."""
    rng = np.random.default_rng(seed)
    p = len(mean) - 1
    coef = np.asarray(mean) + np.asarray(spread) * rng.normal(size=(T, p + 1))
    X = rng.normal(size=(T * n, p))
    tasks = np.repeat(np.arange(T), n)
    y = (np.einsum("ij,ij->i", X, coef[tasks, :p]) + coef[tasks, p]
         + 0.5 * rng.normal(size=T * n))
    return X, y, tasks, np.c_[X, np.ones(T * n)]


def test_tasks_spreading_wider_than_the_penalty_allows_get_their_spread():
    # Ridge(alpha=1) alone is a prior of variance noise / alpha (about 0.3
    # here) per coefficient; these tasks' coefficients spread with variance
    # 9. A transfer term kept positive capped the learned prior at the
    # penalty's spread. Negative along the coefficients, it makes with the
    # penalty the tasks' precision M, whose variances noise / M are EM's
    # fixed point: the tasks' exact posterior second moments about the mean,
    # shrunk toward their level by one pseudo-task (the diagonal prior's
    # hyperprior); the mean and the noise variance are the exact evidence's
    # stationary point, the mean under its own prior N(0, noise / min(alpha,
    # M)): one task's penalty, at most one task's prior precision
    T, n, p, alpha = 60, 8, 2, 1.0
    X, y, tasks, Z = _tasks_with_intercepts(1, T, n, [2.0, -1.0, 0.5],
                                            [3.0, 3.0, 1.0])
    penalty = np.r_[np.full(p, alpha), 0.0]
    meta = MetaRegressor(Ridge(alpha=alpha), prior="diagonal", tol=1e-12,
                         max_iter=5000).fit(X, y, tasks=tasks)
    transfer = meta.prior_precision_
    assert np.all(transfer[:p] < 0)
    M = transfer + penalty
    phi, mean = meta.noise_variance_, np.ravel(meta.meta_params_)
    moments = np.zeros(p + 1)
    for t in range(T):
        Zt = Z[tasks == t]
        A = Zt.T @ Zt + np.diag(M)
        mode = np.linalg.solve(A, Zt.T @ y[tasks == t] + M * mean)
        assert_allclose(meta.task_params_[t], mode, rtol=1e-8)
        moments += (mode - mean) ** 2 + phi * np.diag(np.linalg.inv(A))
    moments /= T
    shrink = 1.0 / (T + 1.0)
    assert_allclose(phi / M, (1 - shrink) * moments + shrink * moments.mean(),
                    rtol=1e-6)
    # the learned variances are the tasks' spread, not the penalty's
    assert np.all(phi / M[:p] > 4.0) and phi / alpha < 0.5
    held = np.minimum(penalty, M)

    def objective(v):
        mu, noise = v[:p + 1], np.exp(v[-1])
        total = 0.0
        for t in range(T):
            Zt = Z[tasks == t]
            residual = y[tasks == t] - Zt @ mu
            C = noise * np.eye(n) + (Zt * (phi / M)) @ Zt.T
            total -= 0.5 * (np.linalg.slogdet(2 * np.pi * C)[1]
                            + residual @ np.linalg.solve(C, residual))
        return total - 0.5 * np.sum(held * mu ** 2) / phi

    at = np.r_[mean, np.log(phi)]
    step = 1e-5
    gradient = [(objective(at + step * e) - objective(at - step * e)) / (2 * step)
                for e in np.eye(len(at))]
    assert_allclose(gradient, 0.0, atol=1e-4)


@pytest.mark.parametrize("prior", ["full", "lowrank", "auto"])
def test_the_mean_of_tasks_whose_coefficients_move_together_is_held_once(prior):
    # the prior mean's own prior is one task's penalty, no tighter than one
    # task's prior in any direction. Capped coefficient by coefficient (by
    # the diagonal of a full M: each coefficient's precision with the
    # others held), it was 87 times one task's along the two slopes, which
    # move together, and the mean came out at 8.4 where the tasks' is 20.8
    # (a review); the mean now sits between T / (T + 1) of the tasks' and
    # theirs, as under a diagonal prior
    rng = np.random.default_rng(0)
    T, n = 60, 10
    a = 20 + 10 * rng.normal(size=T)
    coef = np.c_[a, a] + 0.1 * rng.normal(size=(T, 2))
    intercept = 1.0 + 0.5 * rng.normal(size=T)
    X = rng.normal(size=(T * n, 2))
    tasks = np.repeat(np.arange(T), n)
    y = (np.einsum("ij,ij->i", X, coef[tasks]) + intercept[tasks]
         + 0.5 * rng.normal(size=T * n))
    meta = MetaRegressor(prior=prior).fit(X, y, tasks=tasks)
    assert prior != "auto" or meta.prior_kind_ in ("full", "lowrank-1",
                                                   "lowrank-2")
    tasks_mean = meta.task_params_.mean(axis=0)[:2]
    ratio = meta.meta_params_[:2] / tasks_mean
    assert np.all(ratio >= T / (T + 1) - 1e-3) and np.all(ratio <= 1 + 1e-3)


def test_random_intercepts_beside_a_penalty_the_tasks_outgrow():
    # stores' levels differ by about 1000, far beyond Ridge()'s prior, and
    # the slopes are shared: the isotropic transfer term (which must stay
    # positive, and is extrapolated in its logarithm) went negative on the
    # shared slopes, whose held precision fell below the penalty, and the
    # fit fell back to gamma=1 with a warning (a review)
    rng = np.random.default_rng(0)
    T, n = 40, 20
    levels = 1000 * rng.normal(size=T)
    X = rng.normal(size=(T * n, 2))
    tasks = np.repeat(np.arange(T), n)
    y = X @ np.array([3.0, -2.0]) + levels[tasks] + 0.05 * rng.normal(size=T * n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaRegressor(prior="isotropic", random_effects=["intercept"]).fit(
            X, y, tasks=tasks)
    assert meta.prior_kind_ == "isotropic on 1 random effects"
    assert np.all(meta.prior_precision_ > 0)
    assert 300 < np.sqrt(meta.prior_covariance_[2, 2]) < 3000
    assert_allclose(meta.task_params_[:, :2], [[3.0, -2.0]] * T, atol=0.05)


def test_the_mean_keeps_its_hold_on_shared_coefficients():
    # under a full prior with random effects, the prior mean's own prior is
    # the penalty scaled below one task's prior: the coefficients that vary
    # together, by the smallest eigenvalue of their precision given the
    # others; the shared ones, held a million times tighter, keep the whole
    # penalty (scaled with a loose random slope, their hold fell to 1 %)
    from skmeta._methods._prior import mean_penalty

    ridge = np.array([1.0, 1.0, 1.0, 0.0])
    varying = np.array([True, False, False, True])
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    M = 0.01 * (A @ A.T + np.eye(4))
    M[1:3, 1:3] += 1e6 * np.eye(2)
    D0 = mean_penalty(ridge, precision=M, varying=varying)
    assert_allclose(D0[1:3], 1.0)
    assert 0.0 < D0[0] < 0.1 and D0[3] == 0.0
    # no tighter than one task's prior in any direction, and as tight as
    # that allows along the random slope
    assert np.linalg.eigvalsh(M - np.diag(D0)).min() >= -1e-12
    worse = D0.copy()
    worse[0] *= 1.01
    assert np.linalg.eigvalsh(M - np.diag(worse)).min() < 0
    # a prior at least as tight as the penalty everywhere keeps it all
    assert_array_equal(mean_penalty(ridge, precision=M + np.eye(4) * 2,
                                    varying=varying), ridge)


def test_an_isotropic_student_t_priors_gaussian_keeps_a_positive_transfer():
    # its single Gaussian (prior_precision_) widens the components by
    # df / (df - 2): taken beyond the penalty as a signed term, its transfer
    # came out at -0.5 on the slopes where every component's is 0.0016
    rng = np.random.default_rng(0)
    T, n, p = 20, 15, 2
    X = rng.normal(size=(T * n, p))
    tasks = np.repeat(np.arange(T), n)
    W = rng.normal(scale=100, size=(T, p))
    b = rng.normal(scale=100, size=T)
    y = np.einsum("ij,ij->i", X, W[tasks]) + b[tasks] + rng.normal(size=T * n)
    meta = MetaRegressor(Ridge(), prior="isotropic", prior_df=4,
                         random_state=0).fit(X, y, tasks=tasks)
    assert np.all(meta.prior_precision_ > 0)


def test_the_noise_variance_beside_a_ridge_penalty_maximizes_the_evidence():
    # the tasks' prior beside Ridge's penalty D is N(theta0, phi (pi I +
    # D)^-1): it scales with the noise variance phi, whose M-step counted
    # the residuals alone (the evidence still rose by 167 nats per unit of
    # log phi where it stopped). The fixed point is now the stationary point
    # of the exact objective in every direction: the evidence, with the
    # prior mean's own prior N(0, phi / alpha) on the coefficients
    T, n, p, alpha = 40, 8, 2, 1.0
    X, y, tasks, Z = _tasks_with_intercepts(0, T, n, [1.0, -1.0, 0.5], 0.7)
    penalty = np.r_[np.full(p, alpha), 0.0]

    def objective(v):
        mean, pi, phi = v[:p + 1], np.exp(v[p + 1]), np.exp(v[p + 2])
        prior = np.diag(1.0 / (pi + penalty))
        total = 0.0
        for t in range(T):
            Zt = Z[tasks == t]
            residual = y[tasks == t] - Zt @ mean
            C = phi * (np.eye(n) + Zt @ prior @ Zt.T)
            total -= 0.5 * (np.linalg.slogdet(2 * np.pi * C)[1]
                            + residual @ np.linalg.solve(C, residual))
        return total - 0.5 * np.sum(np.log(2 * np.pi * phi / penalty[:p])
                                    + penalty[:p] * mean[:p] ** 2 / phi)

    meta = MetaRegressor(Ridge(alpha=alpha), prior="isotropic", tol=1e-12,
                         max_iter=5000).fit(X, y, tasks=tasks)
    at = np.r_[meta.meta_params_, np.log(meta.gamma_),
               np.log(meta.noise_variance_)]
    step = 1e-5
    gradient = [(objective(at + step * e) - objective(at - step * e)) / (2 * step)
                for e in np.eye(len(at))]
    assert_allclose(gradient, 0.0, atol=1e-4)
