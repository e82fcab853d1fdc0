"""MetaClassifier(posterior_proba=True): probabilities under the posterior."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy.integrate import quad
from scipy.special import expit, softmax
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

from skmeta import MetaClassifier, MetaRegressor
from skmeta._methods import _inner
from skmeta._predictive import (
    logit_covariances,
    posterior_decision,
    posterior_log_proba,
    posterior_proba,
)
from skmeta.datasets import make_meta_classification


def logistic_tasks(n_tasks, n_rows, n_outputs, seed, spread=1.0):
    """Tasks drawn from the model: theta_t ~ N(theta0, spread^2 I)."""
    rng = np.random.default_rng(seed)
    p = 3
    theta0 = rng.normal(size=(n_outputs, p + 1))
    X = rng.normal(size=(n_tasks * n_rows, p))
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    theta = theta0 + spread * rng.normal(size=(n_tasks, n_outputs, p + 1))
    Z = np.einsum("ij,ikj->ik", np.c_[X, np.ones(len(X))], theta[tasks])
    if n_outputs == 1:
        y = (rng.random(len(X)) < expit(Z[:, 0])).astype(int)
    else:
        P = softmax(Z, axis=1)
        y = (rng.random(len(X))[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    return X, y, tasks


def test_binary_covariance_and_probabilities_are_the_closed_form():
    X, y, tasks = logistic_tasks(8, 15, 1, seed=0)
    C, gamma = 0.5, 2.0
    meta = MetaClassifier(LogisticRegression(C=C), gamma=gamma,
                          prior="isotropic", posterior_proba=True)
    meta.fit(X, y, tasks=tasks)
    Z = np.c_[X, np.ones(len(y))]
    Xq = np.random.default_rng(1).normal(size=(6, 3))
    Zq = np.c_[Xq, np.ones(6)]
    for t in (0, 5):
        theta = meta.task_params_[t]
        p = expit(Z[tasks == t] @ theta)
        # the Hessian of log-loss + 1/(2C) |w|^2 + gamma/2 |theta - theta0|^2
        A = (Z[tasks == t].T * (p * (1 - p))) @ Z[tasks == t] + np.diag(
            [1 / C] * 3 + [0.0]) + gamma * np.eye(4)
        cov = np.linalg.inv(A)
        assert_allclose(meta.task_posterior_cov(t), cov, rtol=1e-8, atol=1e-12)
        v = np.einsum("ij,jk,ik->i", Zq, cov, Zq)
        expected = expit(Zq @ theta / np.sqrt(1 + np.pi * v / 8))
        proba = meta.predict_proba(Xq, tasks=np.full(6, t))
        assert_allclose(proba[:, 1], expected, rtol=1e-10)
        assert_allclose(proba.sum(axis=1), 1.0)
        assert_allclose(meta.predict_log_proba(Xq, tasks=np.full(6, t)),
                        np.log(proba), rtol=1e-10)
    # an unseen task: the prior mean under the transfer term's covariance
    assert_allclose(meta.prior_covariance_, np.eye(4) / gamma)
    v = np.einsum("ij,ij->i", Zq, Zq) / gamma
    expected = expit(Zq @ meta.meta_params_ / np.sqrt(1 + np.pi * v / 8))
    assert_allclose(meta.predict_proba(Xq, tasks=np.full(6, 99))[:, 1],
                    expected, rtol=1e-10)


def test_the_probit_approximation_is_within_its_bound_of_the_integral():
    # E[sigmoid(z)], z ~ N(mu, v), by adaptive quadrature
    mu, v = np.meshgrid(np.linspace(-30, 30, 31), [0.01, 0.3, 1, 3, 10, 100, 316])
    mu, v = mu.ravel(), v.ravel()
    def integral(m, w):
        return quad(lambda u: expit(m + np.sqrt(w) * u) * np.exp(-u * u / 2),
                    -40, 40, limit=400, points=[-m / np.sqrt(w)]
                    if abs(m) < 40 * np.sqrt(w) else None)[0] / np.sqrt(2 * np.pi)

    exact = np.array([integral(m, w) for m, w in zip(mu, v)])
    approx = posterior_proba(mu[:, None], v[:, None, None])[:, 1]
    assert np.max(np.abs(approx - exact)) < 0.018
    # no spread: the plug-in probabilities
    assert_allclose(posterior_proba(mu[:, None], np.zeros((len(mu), 1, 1)))[:, 1],
                    expit(mu))


def test_multiclass_logit_covariances_and_two_classes_reduce_to_probit():
    rng = np.random.default_rng(2)
    K, p = 4, 2
    A = rng.normal(size=(K * (p + 1),) * 2)
    cov = A @ A.T
    X = rng.normal(size=(5, p))
    S = logit_covariances(X, np.zeros(5, dtype=int), cov[None], True, K)
    for i in range(5):
        B = np.kron(np.eye(K), np.r_[X[i], 1.0])  # logits = B theta
        assert_allclose(S[i], B @ cov @ B.T, rtol=1e-10)
    # two outputs: the probit approximation on the difference of logits
    Z = rng.normal(size=(5, 2))
    S2 = S[:, :2, :2]
    diff_var = S2[:, 0, 0] + S2[:, 1, 1] - 2 * S2[:, 0, 1]
    assert_allclose(posterior_proba(Z, S2)[:, 0],
                    expit((Z[:, 0] - Z[:, 1]) / np.sqrt(1 + np.pi * diff_var / 8)),
                    rtol=1e-12)
    # a spread shared by all logits (adding the same to each) changes nothing
    Zk = rng.normal(size=(5, K))
    assert_allclose(posterior_proba(Zk, S + 7.0), posterior_proba(Zk, S),
                    rtol=1e-12)
    # infinite spread: uniform
    assert_allclose(posterior_proba(Zk, np.full((5, K, K), np.inf)), 1 / K)


def test_multiclass_probabilities_track_the_laplace_integral():
    X, y, tasks = logistic_tasks(60, 12, 3, seed=3)
    meta = MetaClassifier(posterior_proba=True).fit(X, y, tasks=tasks)
    rng = np.random.default_rng(4)
    Xq = rng.normal(size=(40, 3))
    Zq = np.c_[Xq, np.ones(40)]
    plug_in_error, error = [], []
    for t in (0, 7, 31):
        theta = meta.task_params_[t]
        draws = rng.multivariate_normal(theta, meta.task_posterior_cov(t),
                                        size=20000).reshape(-1, 3, 4)
        monte_carlo = softmax(np.einsum("ij,skj->sik", Zq, draws), axis=2).mean(0)
        proba = meta.predict_proba(Xq, tasks=np.full(40, t))
        assert_allclose(proba.sum(axis=1), 1.0)
        error.append(np.abs(proba - monte_carlo).max())
        plug_in = softmax(Zq @ theta.reshape(3, 4).T, axis=1)
        plug_in_error.append(np.abs(plug_in - monte_carlo).max())
    assert max(error) < 0.05
    assert max(error) < 0.5 * max(plug_in_error)


def test_unseen_tasks_are_predicted_better_under_the_prior_spread():
    for n_outputs in (1, 3):
        X, y, tasks = logistic_tasks(300, 30, n_outputs, seed=5)
        train = tasks < 150
        meta = MetaClassifier(posterior_proba=True).fit(X[train], y[train],
                                                        tasks=tasks[train])
        unseen = tasks[~train] + 1000
        averaged = meta.predict_proba(X[~train], tasks=unseen)
        meta.set_params(posterior_proba=False)
        plug_in = meta.predict_proba(X[~train], tasks=unseen)
        assert log_loss(y[~train], averaged) < log_loss(y[~train], plug_in)


def test_predict_and_default_probabilities_are_unchanged():
    X, y, tasks = make_meta_classification(n_tasks=20, n_samples_per_task=15,
                                           n_features=4, random_state=0)
    plain = MetaClassifier().fit(X, y, tasks=tasks)
    averaged = MetaClassifier(posterior_proba=True).fit(X, y, tasks=tasks)
    assert_allclose(averaged.task_params_, plain.task_params_)
    # two classes: the scaling keeps the sign of the logit; the decision
    # values are the averaged probabilities' log-odds
    decision = averaged.decision_function(X, tasks=tasks)
    assert np.array_equal(np.sign(decision),
                          np.sign(plain.decision_function(X, tasks=tasks)))
    assert_allclose(expit(decision), averaged.predict_proba(X, tasks=tasks)[:, 1])
    assert np.array_equal(averaged.predict(X, tasks=tasks),
                          plain.predict(X, tasks=tasks))
    assert_allclose(plain.predict_proba(X, tasks=tasks)[:, 1],
                    expit(plain.decision_function(X, tasks=tasks)))
    assert not hasattr(plain, "prior_covariance_")
    # averaged probabilities are less confident
    confident = np.abs(plain.predict_proba(X, tasks=tasks) - 0.5)
    assert np.all(np.abs(averaged.predict_proba(X, tasks=tasks) - 0.5)
                  <= confident + 1e-12)
    # and pickled models keep them
    copy = pickle.loads(pickle.dumps(averaged))
    assert_allclose(copy.predict_proba(X, tasks=tasks),
                    averaged.predict_proba(X, tasks=tasks))


def test_tasks_added_later_get_their_posteriors():
    X, y, tasks = logistic_tasks(40, 20, 1, seed=6)
    meta = MetaClassifier(gamma=1.0, prior="isotropic", posterior_proba=True)
    meta.fit(X[tasks < 30], y[tasks < 30], tasks=tasks[tasks < 30])
    new = tasks >= 30
    meta.partial_fit(X[new], y[new], tasks=tasks[new])
    Z = np.c_[X, np.ones(len(y))]
    rows = tasks == 35
    theta = meta.task_params_[list(meta.tasks_).index(35)]
    p = expit(Z[rows] @ theta)
    A = (Z[rows].T * (p * (1 - p))) @ Z[rows] + np.diag([1.0] * 3 + [0.0]) \
        + np.eye(4)
    assert_allclose(meta.task_posterior_cov(35), np.linalg.inv(A), rtol=1e-8)


@pytest.mark.parametrize("settings, message", [
    (dict(method="maml", max_iter=3), "method='maml' adapts a task"),
    (dict(unlabeled_weight=1.0), "unlabeled rows"),
    (dict(estimator=MLPClassifier(hidden_layer_sizes=(3,)), method="imaml",
          gamma=1.0, inner_lr=0.01, max_iter=3), "network"),
])
def test_fits_that_cannot_keep_posteriors_are_refused_before_fitting(
        settings, message):
    X, y, tasks = logistic_tasks(10, 10, 1, seed=7)
    meta = MetaClassifier(posterior_proba=True, **settings)
    with pytest.raises(ValueError, match=f"posterior_proba=True.*{message}"):
        meta.fit(X, y, tasks=tasks)
    assert not hasattr(meta, "task_params_")


def test_wide_tasks_are_refused_and_a_model_fitted_without_is_told_to_refit():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 600))
    y = np.tile([0, 1], 20)
    tasks = np.repeat(np.arange(4), 10)
    with pytest.raises(ValueError, match="601 parameters, over "
                       "FULL_INVERSE_MAX_PARAMS"):
        MetaClassifier(posterior_proba=True, gamma=1.0).fit(X, y, tasks=tasks)
    meta = MetaClassifier(gamma=1.0).fit(X[:, :3], y, tasks=tasks)
    meta.set_params(posterior_proba=True)
    with pytest.raises(ValueError, match="fit it with posterior_proba=True"):
        meta.predict_proba(X[:, :3], tasks=tasks)
    with pytest.raises(ValueError, match="fit it with posterior_proba=True"):
        meta.task_posterior_cov(0)


def test_predict_and_decision_function_follow_the_averaged_probabilities():
    X, y, tasks = logistic_tasks(40, 8, 3, seed=9)
    meta = MetaClassifier(posterior_proba=True).fit(X, y, tasks=tasks)
    rng = np.random.default_rng(10)
    Xq = 3 * rng.normal(size=(3000, 3))
    tq = rng.integers(0, 60, size=3000)  # seen tasks and unseen ones
    proba = meta.predict_proba(Xq, tasks=tq)
    predicted = meta.predict(Xq, tasks=tq)
    assert np.array_equal(predicted, meta.classes_[proba.argmax(axis=1)])
    decision = meta.decision_function(Xq, tasks=tq)
    assert_allclose(decision, np.log(proba), rtol=1e-10)
    # the mode's classes differ only where averaging reorders them
    meta.set_params(posterior_proba=False)
    at_mode = meta.predict(Xq, tasks=tq)
    assert np.mean(at_mode != predicted) < 0.05


def test_no_transfer_makes_an_unseen_task_uniform_and_sparse_rows_agree():
    X, y, tasks = logistic_tasks(10, 20, 3, seed=11)
    meta = MetaClassifier(gamma=0.0, posterior_proba=True).fit(X, y, tasks=tasks)
    assert_allclose(meta.predict_proba(X[:5], tasks=np.full(5, 99)), 1 / 3)
    assert_allclose(meta.predict_log_proba(X[:5], tasks=np.full(5, 99)),
                    np.log(1 / 3))
    settings = dict(gamma=1.0, prior="isotropic", posterior_proba=True)
    dense = MetaClassifier(**settings).fit(X, y, tasks=tasks)
    sparse = MetaClassifier(**settings).fit(sp.csr_matrix(X), y, tasks=tasks)
    assert_allclose(sparse.predict_proba(sp.csr_matrix(X), tasks=tasks),
                    dense.predict_proba(X, tasks=tasks), rtol=1e-7)


def test_a_refused_refit_leaves_the_estimator_unfitted():
    X, y, tasks = logistic_tasks(6, 10, 1, seed=12)
    meta = MetaClassifier(gamma=1.0).fit(X, y, tasks=tasks)
    wide = np.random.default_rng(13).normal(size=(60, 600))
    meta.set_params(posterior_proba=True)
    with pytest.raises(ValueError, match="FULL_INVERSE_MAX_PARAMS"):
        meta.fit(wide, y, tasks=tasks)
    with pytest.raises(NotFittedError):
        meta.predict(X, tasks=tasks)
    assert meta.get_params()["posterior_proba"] is True


def test_a_partial_fit_over_the_covariance_memory(monkeypatch):
    X, y, tasks = logistic_tasks(10, 10, 1, seed=14)
    first = tasks < 4
    meta = MetaClassifier(gamma=1.0, prior="isotropic", posterior_proba=True)
    meta.fit(X[first], y[first], tasks=tasks[first])
    # room for the covariances of 6 tasks of 4 parameters
    monkeypatch.setattr(_inner, "COVARIANCE_MEMORY", 8 * 6 * 16)
    with pytest.raises(ValueError, match="10 tasks of 4 parameters"):
        meta.partial_fit(X[~first], y[~first], tasks=tasks[~first])
    assert len(meta.tasks_) == 4 and len(meta._task_covariances) == 4
    # only the last call's tasks kept: they fit
    meta.set_params(keep_task_params=False)
    meta.partial_fit(X[tasks >= 5], y[tasks >= 5], tasks=tasks[tasks >= 5])
    assert meta.task_posterior_cov(7).shape == (4, 4)
    # a regressor stops keeping them, and says so
    regressor = MetaRegressor(gamma=1.0, prior="isotropic").fit(
        X[first], X[first, 0] + y[first], tasks=tasks[first])
    with pytest.warns(UserWarning, match="no longer kept"):
        regressor.partial_fit(X[~first], X[~first, 0] + y[~first],
                              tasks=tasks[~first])
    assert len(regressor.tasks_) == 10
    with pytest.raises(ValueError, match="keeps no posterior covariances"):
        regressor.task_posterior_cov(0)


@settings(max_examples=60, deadline=None)
@given(n_outputs=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       logit_scale=st.floats(0.0, 50.0), spread_scale=st.floats(0.0, 1e4))
def test_averaged_probabilities_are_probabilities_and_less_confident(
        n_outputs, seed, logit_scale, spread_scale):
    rng = np.random.default_rng(seed)
    n = 7
    Z = logit_scale * rng.normal(size=(n, n_outputs))
    A = rng.normal(size=(n, n_outputs, n_outputs))
    S = spread_scale * A @ np.swapaxes(A, 1, 2) / n_outputs
    proba = posterior_proba(Z, S)
    log_proba = posterior_log_proba(Z, S)
    assert np.all(np.isfinite(log_proba)) and np.all(log_proba <= 1e-12)
    assert np.all((proba >= 0) & (proba <= 1))
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_allclose(np.exp(log_proba), proba, atol=1e-12)
    plug_in = posterior_proba(Z, np.zeros_like(S))
    if n_outputs == 1:
        assert_allclose(plug_in[:, 1], expit(Z[:, 0]))
        # the averaged probability lies between 1/2 and the plug-in one
        assert np.all(np.abs(proba[:, 1] - 0.5)
                      <= np.abs(plug_in[:, 1] - 0.5) + 1e-12)
    else:
        assert_allclose(plug_in, softmax(Z, axis=1), atol=1e-12)
        # the decision values are the log-probabilities, argmax included
        assert_allclose(posterior_decision(Z, S), log_proba)
        # adding the same to every logit, or a spread shared by all,
        # changes nothing
        shift = rng.normal(size=(n, 1))
        assert_allclose(posterior_proba(Z + shift, S + 3.0), proba, atol=1e-9)
