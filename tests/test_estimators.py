"""Behaviour of MetaClassifier and MetaRegressor, checked against references.

The references are the base scikit-learn estimators fitted on the same
objective, closed forms of the quadratic (squared-error) cases, and direct
Newton minimization of the stated objective ``L_t + lambda R + gamma/2
(theta - theta0)^T Lambda (theta - theta0)``. Data sets are tiny on purpose:
what is tested is the mathematics and the API, not speed.
"""

import copy
import pickle
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import InnerObjective
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import optimize
from sklearn import clone, config_context
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning, NotFittedError
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    SGDClassifier,
)
from sklearn.metrics import mean_poisson_deviance, r2_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MetaClassifier, MetaRegressor
from skmeta._kernels._codes import LOGISTIC
from skmeta.datasets import make_meta_classification, make_nested_tasks

# Every fit here is small and well posed: not converging is a failure, unless
# a test caps max_iter on purpose and says so.
pytestmark = pytest.mark.filterwarnings(
    "error::sklearn.exceptions.ConvergenceWarning")

# Tolerances at which skmeta's Newton solver must agree with scikit-learn's
# solvers run to tol=1e-10: both are converged far below these.
RTOL = 1e-4
ATOL = 1e-6


# --------------------------------------------------------------------------
# data: related tasks (a shared direction plus a per-task deviation), rows
# shuffled so that no code path can rely on rows being grouped by task
# --------------------------------------------------------------------------
def make_tasks(kind="binary", n_tasks=4, n_per_task=30, n_features=3, seed=0,
               spread=0.7):
    rng = np.random.default_rng(seed)
    sizes = np.broadcast_to(n_per_task, (n_tasks,))
    tasks = np.repeat(np.arange(n_tasks), sizes)
    n = tasks.size
    X = rng.normal(size=(n, n_features))
    n_out = 3 if kind == "multiclass" else 1
    shared = rng.normal(size=(n_out, n_features + 1))
    W = shared + spread * rng.normal(size=(n_tasks, n_out, n_features + 1))
    Z = np.einsum("nf,nof->no", X, W[tasks, :, :-1]) + W[tasks, :, -1]
    if kind == "binary":
        y = (Z[:, 0] + rng.logistic(size=n) > 0).astype(np.int64)
    elif kind == "multiclass":
        y = np.argmax(Z + rng.gumbel(size=Z.shape), axis=1).astype(np.int64)
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.3 * Z[:, 0])).astype(np.float64)
    else:
        y = Z[:, 0] + 0.3 * rng.normal(size=n)
    perm = rng.permutation(n)
    return X[perm], y[perm], tasks[perm]


def task_rows(tasks, label):
    return np.flatnonzero(tasks == label)


def flat_params(est):
    """An estimator's parameters in skmeta's layout: per output coef, intercept."""
    coef = np.atleast_2d(est.coef_)
    intercept = np.broadcast_to(np.asarray(est.intercept_, dtype=float),
                                (coef.shape[0],))
    return np.column_stack([coef, intercept]).ravel()


def design(X):
    return np.column_stack([X, np.ones(X.shape[0])])


def ridge_reference(X, y, alpha, gamma, theta0, shape, sample_weight=None):
    """Exact minimizer of 1/2 sum w (y - Xw - b)^2 + alpha/2 |w|^2 + transfer."""
    Z = design(X)
    sw = np.ones(len(y)) if sample_weight is None else sample_weight
    P = gamma * (np.diag(shape) if np.ndim(shape) == 1 else shape)
    D = np.diag(np.r_[np.full(X.shape[1], alpha), 0.0])
    A = Z.T @ (sw[:, None] * Z) + D + P
    return np.linalg.solve(A, Z.T @ (sw * y) + P @ theta0)


def ridge_joint_reference(X, y, tasks, alpha, gamma):
    """Exact joint minimizer over (theta_1..theta_T, theta0), isotropic prior.

    The objective is quadratic, so its stationarity conditions form one
    linear system; theta0's row says gamma * sum_t (theta0 - theta_t) = 0.
    """
    labels = np.unique(tasks)
    T, d = len(labels), X.shape[1] + 1
    M = np.zeros(((T + 1) * d, (T + 1) * d))
    rhs = np.zeros((T + 1) * d)
    D = np.diag(np.r_[np.full(d - 1, alpha), 0.0])
    eye = np.eye(d)
    for t, label in enumerate(labels):
        Z = design(X[tasks == label])
        block = slice(t * d, (t + 1) * d)
        M[block, block] = Z.T @ Z + D + gamma * eye
        M[block, T * d:] = -gamma * eye
        M[T * d:, block] = -gamma * eye
        rhs[block] = Z.T @ y[tasks == label]
    M[T * d:, T * d:] = T * gamma * eye
    solution = np.linalg.solve(M, rhs)
    return solution[:T * d].reshape(T, d), solution[T * d:]


def logistic_reference(X, y01, C, gamma, theta0, shape, sample_weight=None):
    """Newton minimizer of the binary logistic objective plus transfer term.

    sum w logloss + 1/(2C) |w|^2 + gamma/2 (theta - theta0)^T Lambda (...),
    i.e. LogisticRegression's objective divided by C (intercept unpenalized
    by C); ``shape`` is Lambda's diagonal or the full matrix.
    """
    ref = InnerObjective(X, y01, sample_weight, LOGISTIC,
                         lam2=0.0 if np.isinf(C) else 1.0 / C,
                         l2w=np.r_[np.ones(X.shape[1]), 0.0], theta0=theta0,
                         precision=gamma * np.asarray(shape))
    theta = np.array(theta0, dtype=float)
    for _ in range(100):
        step = np.linalg.solve(ref.hess(theta), ref.grad(theta))
        theta -= step
        if np.max(np.abs(step)) < 1e-13:
            break
    return theta


@contextmanager
def quiet_convergence():
    """For a test that caps max_iter, or checks something else, on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def snapshot(obj):
    return copy.deepcopy(obj)


def assert_unchanged(before, after):
    if sp.issparse(before):
        assert type(before) is type(after)
        assert_array_equal(before.data, after.data)
        assert_array_equal(before.indices, after.indices)
        assert_array_equal(before.indptr, after.indptr)
    elif isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(before, after)
    else:
        assert_array_equal(np.asarray(before), np.asarray(after))
        assert np.asarray(before).dtype == np.asarray(after).dtype


@pytest.fixture(scope="module")
def binary_data():
    return make_tasks("binary", n_tasks=4, n_per_task=30)


@pytest.fixture(scope="module")
def regression_data():
    return make_tasks("regression", n_tasks=4, n_per_task=12)


@pytest.fixture(scope="module")
def fitted_classifier(binary_data):
    X, y, tasks = binary_data
    return MetaClassifier(LogisticRegression(C=1.0), gamma=1.0,
                          prior="isotropic", tol=1e-8).fit(X, y, tasks=tasks)


@pytest.fixture(scope="module")
def fitted_regressor(regression_data):
    X, y, tasks = regression_data
    return MetaRegressor(Ridge(alpha=1.0), gamma=2.0, prior="isotropic",
                         tol=1e-8).fit(X, y, tasks=tasks)


# ==========================================================================
# 1. reductions and consistency
# ==========================================================================
@pytest.mark.parametrize("params", [
    {"C": 0.5},
    # "balanced" weights are computed within each task, from weighted counts,
    # as the base estimator fitted on that task alone computes them
    {"C": 0.5, "class_weight": "balanced"},
    {"C": 0.5, "l1_ratio": 1.0, "solver": "saga"},
], ids=["l2", "balanced", "l1"])
def test_gamma_zero_binary_equals_per_task_logistic_regression(params,
                                                               binary_data):
    X, y, tasks = binary_data
    sw = np.random.default_rng(1).uniform(0.5, 2.0, size=y.size)
    meta = MetaClassifier(LogisticRegression(**params), gamma=0.0).fit(
        X, y, tasks=tasks, sample_weight=sw)
    assert meta.coef_.shape == (4, 1, 3)
    assert meta.intercept_.shape == (4, 1)
    for t, label in enumerate(meta.tasks_):
        rows = task_rows(tasks, label)
        ref = LogisticRegression(**params, tol=1e-12, max_iter=100000).fit(
            X[rows], y[rows], sample_weight=sw[rows])
        assert_allclose(meta.coef_[t], ref.coef_, rtol=RTOL, atol=ATOL)
        assert_allclose(meta.intercept_[t], ref.intercept_, rtol=RTOL, atol=ATOL)


def test_gamma_zero_multiclass_with_a_task_missing_a_class():
    X, y, tasks = make_tasks("multiclass", n_tasks=3, n_per_task=40, seed=1)
    # the last task never sees class 2
    last = tasks == 2
    y = y.copy()
    y[last & (y == 2)] = 0
    # convergence of this case is tested on its own, below
    with quiet_convergence():
        meta = MetaClassifier(LogisticRegression(C=2.0), gamma=0.0).fit(
            X, y, tasks=tasks)
    assert_array_equal(meta.classes_, [0, 1, 2])
    assert meta.coef_.shape == (3, 3, 3)
    for t in range(3):
        rows = task_rows(tasks, t)
        Xt, yt, wt = X[rows], y[rows], np.ones(rows.size)
        if t == 2:
            # The base estimator fitted on this task alone would be binary.
            # The objective skmeta solves is the 3-class multinomial one on
            # these rows; scikit-learn reaches it when a row of the missing
            # class is present with zero weight (it sets classes_, adds no loss).
            Xt = np.vstack([Xt, np.zeros((1, 3))])
            yt = np.r_[yt, 2]
            wt = np.r_[wt, 0.0]
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10000).fit(
            Xt, yt, sample_weight=wt)
        assert_array_equal(ref.classes_, [0, 1, 2])
        assert_allclose(meta.coef_[t], ref.coef_, rtol=RTOL, atol=ATOL)
        b, b_ref = meta.intercept_[t], ref.intercept_
        if t == 2:
            # Unpenalized intercepts let the missing class's logit go to -inf:
            # the infimum is not attained and each solver stops somewhere
            # along that direction. The identifiable part must agree.
            b, b_ref = b[0] - b[1], b_ref[0] - b_ref[1]
        assert_allclose(b, b_ref, rtol=RTOL, atol=ATOL)
        assert_allclose(meta.predict_proba(X[rows], tasks=tasks[rows]),
                        ref.predict_proba(X[rows]), atol=1e-6)


def test_gamma_zero_with_a_task_missing_a_class_converges():
    # With gamma=0 the tasks do not depend on theta0, so the outer loop has
    # nothing to iterate on; the missing class's unpenalized intercept has no
    # finite optimum, which scikit-learn's own solver handles without warning
    X, y, tasks = make_tasks("multiclass", n_tasks=3, n_per_task=40, seed=1)
    y = y.copy()
    y[(tasks == 2) & (y == 2)] = 0
    # scikit-learn converges on that task alone (a warning would fail here)
    LogisticRegression(C=2.0).fit(X[tasks == 2], y[tasks == 2])
    meta = MetaClassifier(LogisticRegression(C=2.0), gamma=0.0).fit(
        X, y, tasks=tasks)
    assert meta.n_iter_ < 100  # the default outer iteration budget


def test_gamma_zero_ridge_equals_per_task_ridge(regression_data):
    X, y, tasks = regression_data
    meta = MetaRegressor(Ridge(alpha=0.3), gamma=0.0).fit(X, y, tasks=tasks)
    assert meta.coef_.shape == (4, 3)
    assert meta.intercept_.shape == (4,)
    for t, label in enumerate(meta.tasks_):
        rows = task_rows(tasks, label)
        ref = Ridge(alpha=0.3).fit(X[rows], y[rows])
        assert_allclose(meta.coef_[t], ref.coef_, rtol=RTOL, atol=ATOL)
        assert_allclose(meta.intercept_[t], ref.intercept_, rtol=RTOL, atol=ATOL)


REDUCTION_CASES = [
    ("binary", LogisticRegression(C=0.5),
     LogisticRegression(C=0.5, tol=1e-10, max_iter=10000)),
    ("binary", LogisticRegression(C=np.inf),
     LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000)),
    ("binary", LogisticRegression(C=0.5, l1_ratio=1.0, solver="saga"),
     LogisticRegression(C=0.5, l1_ratio=1.0, solver="saga", tol=1e-12,
                        max_iter=100000)),
    ("binary", LogisticRegression(C=0.5, solver="liblinear"),
     LogisticRegression(C=0.5, solver="liblinear", tol=1e-12, max_iter=100000,
                        random_state=0)),
    ("binary", LogisticRegression(C=0.5, l1_ratio=0.5, solver="saga"),
     LogisticRegression(C=0.5, l1_ratio=0.5, solver="saga", tol=1e-12,
                        max_iter=100000)),
    ("binary", LogisticRegression(C=0.5, solver="liblinear",
                                  intercept_scaling=3.0),
     LogisticRegression(C=0.5, solver="liblinear", intercept_scaling=3.0,
                        tol=1e-12, max_iter=100000, random_state=0)),
    ("binary", LogisticRegression(fit_intercept=False),
     LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=10000)),
    ("binary", LogisticRegression(class_weight={0: 2.0, 1: 0.5}),
     LogisticRegression(class_weight={0: 2.0, 1: 0.5}, tol=1e-10,
                        max_iter=10000)),
    ("binary", LogisticRegression(C=0.5, class_weight="balanced"),
     LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10,
                        max_iter=10000)),
    ("multiclass", LogisticRegression(C=0.5),
     LogisticRegression(C=0.5, tol=1e-10, max_iter=10000)),
    ("regression", LinearRegression(), LinearRegression()),
    ("regression", Ridge(alpha=2.0, fit_intercept=False),
     Ridge(alpha=2.0, fit_intercept=False)),
    ("regression", Lasso(alpha=0.05, fit_intercept=False),
     Lasso(alpha=0.05, fit_intercept=False, tol=1e-14, max_iter=100000)),
    ("regression", Lasso(alpha=0.05), Lasso(alpha=0.05, tol=1e-14,
                                            max_iter=100000)),
    ("regression", ElasticNet(alpha=0.05, l1_ratio=0.3),
     ElasticNet(alpha=0.05, l1_ratio=0.3, tol=1e-14, max_iter=100000)),
    ("poisson", PoissonRegressor(alpha=0.1),
     PoissonRegressor(alpha=0.1, tol=1e-12, max_iter=10000)),
    ("poisson", PoissonRegressor(alpha=0.1, fit_intercept=False),
     PoissonRegressor(alpha=0.1, fit_intercept=False, tol=1e-12,
                      max_iter=10000)),
]


@pytest.mark.parametrize(
    "kind, base, reference", REDUCTION_CASES,
    ids=[f"{k}-{type(b).__name__}-{i}" for i, (k, b, _) in
         enumerate(REDUCTION_CASES)])
def test_gamma_zero_single_task_equals_base_estimator(kind, base, reference):
    # every supported base, every penalty spelling: with gamma=0 and no task
    # identity the fit must be the base estimator's own
    X, y, _ = make_tasks(kind, n_tasks=1, n_per_task=50, seed=3)
    Meta = MetaRegressor if kind in ("regression", "poisson") else MetaClassifier
    meta = Meta(base, gamma=0.0).fit(X, y)
    assert meta.tasks_ is None
    ref = reference.fit(X, y)
    assert_allclose(meta.coef_[0], ref.coef_, rtol=RTOL, atol=1e-5)
    assert_allclose(meta.intercept_[0], ref.intercept_, rtol=RTOL, atol=1e-5)
    assert_allclose(meta.predict(X), ref.predict(X), rtol=1e-5, atol=1e-6)
    # the exported single-task model is the base estimator's equal
    est = meta.task_estimator()
    assert type(est) is type(reference)
    assert_allclose(est.predict(X), ref.predict(X), rtol=1e-5, atol=1e-6)


def test_gamma_in_units_of_the_base_l2_strength():
    # single task pulled toward a source model theta_s: the transfer term
    # adds gamma/2 |theta - theta_s|^2 to the objective divided by its own
    # scaling (1/C for LogisticRegression, 1/2 for Ridge), so gamma adds to
    # 1/C or alpha and also pulls the intercept
    X, y, _ = make_tasks("binary", n_tasks=1, n_per_task=40, seed=4)
    Xs, ys, _ = make_tasks("binary", n_tasks=1, n_per_task=40, seed=14)
    source = LogisticRegression().fit(Xs, ys)
    meta = MetaClassifier(LogisticRegression(C=2.0), gamma=0.7,
                          prior="isotropic", prior_estimator=source).fit(X, y)
    expected = logistic_reference(X, y, 2.0, 0.7, flat_params(source),
                                  np.ones(4))
    assert_allclose(meta.task_params_[0], expected, rtol=1e-6, atol=1e-8)
    assert_allclose(meta.meta_params_, flat_params(source))

    X, y, _ = make_tasks("regression", n_tasks=1, n_per_task=15, seed=4)
    Xs, ys, _ = make_tasks("regression", n_tasks=1, n_per_task=15, seed=14)
    source = Ridge().fit(Xs, ys)
    meta = MetaRegressor(Ridge(alpha=2.0), gamma=0.7, prior="isotropic",
                         prior_estimator=source).fit(X, y)
    expected = ridge_reference(X, y, 2.0, 0.7, flat_params(source), np.ones(4))
    assert_allclose(meta.task_params_[0], expected, rtol=1e-8, atol=1e-10)


def test_prior_estimator_sets_a_fixed_theta0():
    # parameter transfer: theta0 comes from a fitted source model and stays
    X_src, y_src, _ = make_tasks("regression", n_tasks=1, n_per_task=40, seed=5)
    source = Ridge(alpha=1.0).fit(X_src, y_src)
    X, y, tasks = make_tasks("regression", n_tasks=3, n_per_task=6, seed=6)
    meta = MetaRegressor(Ridge(alpha=1.0), gamma=3.0, prior="isotropic",
                         prior_estimator=source)
    meta.fit(X, y, tasks=tasks)
    theta0 = flat_params(source)
    assert_allclose(meta.meta_params_, theta0)
    for t in range(3):
        rows = task_rows(tasks, t)
        expected = ridge_reference(X[rows], y[rows], 1.0, 3.0, theta0,
                                   np.ones(4))
        assert_allclose(meta.task_params_[t], expected, rtol=1e-7, atol=1e-9)


def test_a_frozen_prior_estimator_survives_clone():
    # clone() -- GridSearchCV's and cross_val_score's -- copies an estimator
    # parameter unfitted; FrozenEstimator's clone is itself, and the model
    # it wraps is the prior mean as if given plainly
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import cross_val_score

    X_src, y_src, _ = make_tasks("regression", n_tasks=1, n_per_task=40, seed=5)
    source = Ridge(alpha=1.0).fit(X_src, y_src)
    X, y, tasks = make_tasks("regression", n_tasks=6, n_per_task=8, seed=6)
    plain = MetaRegressor(prior_estimator=source).fit(X, y, tasks=tasks)
    frozen = clone(MetaRegressor(prior_estimator=FrozenEstimator(source))).fit(
        X, y, tasks=tasks)
    assert_array_equal(frozen.task_params_, plain.task_params_)
    assert_array_equal(frozen.meta_params_, flat_params(source))
    with pytest.raises(NotFittedError, match="prior_estimator \\(Ridge\\) is not "
                       "fitted.*FrozenEstimator"):
        clone(MetaRegressor(prior_estimator=source)).fit(X, y, tasks=tasks)
    with pytest.raises(NotFittedError, match="a FrozenEstimator of an unfitted "
                       "Ridge: fit the model before freezing it"):
        MetaRegressor(prior_estimator=FrozenEstimator(Ridge())).fit(
            X, y, tasks=tasks)
    # in cross-validation: each fold is the fit on its training rows
    meta = MetaRegressor(prior_estimator=FrozenEstimator(source), task_column=0)
    Xt = np.c_[tasks, X]
    folds = list(GroupKFold(3).split(Xt, y, groups=tasks))
    scores = cross_val_score(meta, Xt, y, cv=folds, error_score="raise")
    for score, (train, test) in zip(scores, folds):
        alone = MetaRegressor(prior_estimator=source, task_column=0).fit(
            Xt[train], y[train])
        assert score == alone.score(Xt[test], y[test])


def test_a_prior_estimators_feature_names_must_be_the_datas():
    # its coefficients are read by position: a model fitted on the same
    # columns in another order was silently applied to the wrong ones
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(120, 2), columns=["a", "b"])
    tasks = np.repeat(np.arange(6), 20)
    y = 3 * X["a"].to_numpy() - X["b"].to_numpy()
    swapped = Ridge().fit(X[["b", "a"]], y)
    with pytest.raises(ValueError, match=re.escape(
            "prior_estimator was fitted on features ['b', 'a'], the data has "
            "['a', 'b']")):
        MetaRegressor(prior_estimator=swapped).fit(X, y, tasks=tasks)
    same = Ridge().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaRegressor(prior_estimator=same).fit(X, y, tasks=tasks)
    assert_allclose(meta.meta_params_, np.r_[same.coef_, same.intercept_])
    # names on one side only: the order cannot be checked, as scikit-learn
    # warns when a model fitted with names predicts without them
    with pytest.warns(UserWarning, match="X does not have valid feature "
                      "names, but prior_estimator was fitted with") as record:
        MetaRegressor(prior_estimator=same).fit(X.to_numpy(), y, tasks=tasks)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="X has feature names, but "
                      "prior_estimator was fitted without them"):
        MetaRegressor(prior_estimator=Ridge().fit(X.to_numpy(), y)).fit(
            X, y, tasks=tasks)


def test_task_estimators_predict_like_the_meta_estimator(fitted_classifier,
                                                         binary_data):
    X, y, tasks = binary_data
    meta = fitted_classifier
    for label in meta.tasks_:
        rows = task_rows(tasks, label)
        est = meta.task_estimator(label)
        assert type(est) is LogisticRegression
        # scikit-learn's own predict path on the exported parameters
        assert_array_equal(est.predict(X[rows]),
                           meta.predict(X[rows], tasks=tasks[rows]))
        assert_allclose(est.predict_proba(X[rows]),
                        meta.predict_proba(X[rows], tasks=tasks[rows]),
                        rtol=1e-12, atol=1e-14)
        assert_allclose(est.decision_function(X[rows]),
                        meta.decision_function(X[rows], tasks=tasks[rows]),
                        rtol=1e-12, atol=1e-14)


def test_multiclass_outputs_match_the_task_estimator():
    X, y, tasks = make_tasks("multiclass", n_tasks=3, n_per_task=25, seed=7)
    meta = MetaClassifier(gamma=0.5).fit(X, y, tasks=tasks)
    D = meta.decision_function(X, tasks=tasks)
    P = meta.predict_proba(X, tasks=tasks)
    assert D.shape == P.shape == (75, 3)
    assert_allclose(meta.predict_log_proba(X, tasks=tasks), np.log(P),
                    rtol=1e-10, atol=1e-12)
    for label in meta.tasks_:
        rows = task_rows(tasks, label)
        est = meta.task_estimator(label)
        assert_allclose(est.decision_function(X[rows]), D[rows], rtol=1e-12)
        assert_allclose(est.predict_proba(X[rows]), P[rows], rtol=1e-10)
        assert_array_equal(est.predict(X[rows]),
                           meta.predict(X[rows], tasks=tasks[rows]))
    # score is accuracy under each row's own task model
    expected = np.mean(meta.predict(X, tasks=tasks) == y)
    assert meta.score(X, y, tasks=tasks) == pytest.approx(expected)


def test_binary_log_proba_and_score(fitted_classifier, binary_data):
    X, y, tasks = binary_data
    meta = fitted_classifier
    P = meta.predict_proba(X, tasks=tasks)
    assert meta.decision_function(X, tasks=tasks).shape == (X.shape[0],)
    assert_allclose(meta.predict_log_proba(X, tasks=tasks), np.log(P),
                    rtol=1e-10, atol=1e-12)
    w = np.linspace(0.5, 2.0, X.shape[0])
    correct = meta.predict(X, tasks=tasks) == y
    assert meta.score(X, y, tasks=tasks, sample_weight=w) == pytest.approx(
        np.sum(w * correct) / np.sum(w))


def test_extreme_decision_values_give_probabilities_without_warnings(
        fitted_classifier, binary_data):
    # rows far out on either side: probabilities 0 and 1, as the task's own
    # fitted LogisticRegression gives them, and no overflow warning from
    # exp(-z) on the way (1 / (1 + exp(-z)) warned for z < -710)
    X, _, tasks = binary_data
    meta = fitted_classifier
    far = np.vstack([X[:1] * 1e6, -X[:1] * 1e6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = meta.predict_proba(far, tasks=tasks[:2] * 0 + tasks[0])
    assert_allclose(P, meta.task_estimator(tasks[0]).predict_proba(far),
                    rtol=1e-12)
    assert_allclose(np.sort(P[:, 1]), [0.0, 1.0])


def test_unseen_task_is_predicted_by_the_prior_model(fitted_classifier,
                                                     binary_data):
    X, y, tasks = binary_data
    meta = fitted_classifier
    est = meta.meta_estimator_
    assert type(est) is LogisticRegression
    assert_allclose(flat_params(est), meta.meta_params_)
    unseen = np.full(X.shape[0], 99)
    assert_array_equal(meta.predict(X, tasks=unseen), est.predict(X))
    assert_allclose(meta.predict_proba(X, tasks=unseen), est.predict_proba(X),
                    rtol=1e-12)
    # seen and unseen rows mixed in one call: each gets its own model
    mixed = np.where(np.arange(X.shape[0]) % 2 == 0, tasks, 99)
    P = meta.predict_proba(X, tasks=mixed)
    odd = np.arange(X.shape[0]) % 2 == 1
    assert_allclose(P[odd], est.predict_proba(X[odd]), rtol=1e-12)
    assert_allclose(P[~odd], meta.predict_proba(X[~odd], tasks=tasks[~odd]))


def test_unseen_task_regressor(fitted_regressor, regression_data):
    X, _, _ = regression_data
    meta = fitted_regressor
    assert type(meta.meta_estimator_) is Ridge
    assert_allclose(meta.predict(X, tasks=np.full(X.shape[0], -5)),
                    meta.meta_estimator_.predict(X), rtol=1e-12)


@pytest.mark.parametrize("Meta, kind, base, pooled", [
    (MetaRegressor, "regression", Ridge(alpha=0.5),
     lambda T: Ridge(alpha=0.5 * T)),
    (MetaClassifier, "binary", LogisticRegression(C=2.0),
     lambda T: LogisticRegression(C=2.0 / T, tol=1e-10, max_iter=10000)),
])
def test_huge_gamma_ties_every_task_to_the_pooled_model(Meta, kind, base,
                                                        pooled):
    # gamma -> inf forces theta_t = theta0 for all t; the joint objective then
    # is sum_t L_t(theta) + T lambda R(theta): the base estimator on the pooled
    # data with T times its penalty
    X, y, tasks = make_tasks(kind, n_tasks=4, n_per_task=15, seed=8)
    meta = Meta(base, gamma=1e7, prior="isotropic", tol=1e-10).fit(
        X, y, tasks=tasks)
    scale = np.max(np.abs(meta.meta_params_))
    assert np.max(np.abs(meta.task_params_ - meta.meta_params_)) < 1e-4 * scale
    ref = pooled(4).fit(X, y)
    assert_allclose(meta.meta_params_, flat_params(ref), rtol=1e-3, atol=1e-5)


# ==========================================================================
# 2. the learned prior mean
# ==========================================================================
def test_ridge_multitask_fit_is_the_joint_minimizer(regression_data):
    X, y, tasks = regression_data
    meta = MetaRegressor(Ridge(alpha=0.5), gamma=1.5, prior="isotropic",
                         tol=1e-10).fit(X, y, tasks=tasks)
    thetas, theta0 = ridge_joint_reference(X, y, tasks, 0.5, 1.5)
    assert_allclose(meta.task_params_, thetas, rtol=1e-6, atol=1e-8)
    assert_allclose(meta.meta_params_, theta0, rtol=1e-6, atol=1e-8)
    assert_array_equal(meta.prior_shape_, np.ones(4))
    assert_array_equal(meta.prior_precision_, np.full(4, 1.5))
    assert meta.gamma_ == 1.5


@pytest.mark.parametrize("gamma", [0.1, 1.0, 10.0])
def test_theta0_is_the_mean_of_the_task_parameters(gamma):
    # stationarity of the joint objective in theta0 for a fixed isotropic
    # prior: gamma * sum_t (theta0 - theta_t) = 0
    X, y, tasks = make_tasks("multiclass", n_tasks=5, n_per_task=20, seed=9)
    meta = MetaClassifier(gamma=gamma).fit(X, y, tasks=tasks)
    scale = max(1.0, np.max(np.abs(meta.meta_params_)))
    assert_allclose(meta.meta_params_, meta.task_params_.mean(axis=0),
                    atol=1e-3 * scale)
    # and every task is the exact inner solution under that prior
    for t in range(5):
        rows = task_rows(tasks, t)
        adapted = meta.adapt(X[rows], y[rows])
        assert_allclose(flat_params(adapted), meta.task_params_[t],
                        rtol=1e-6, atol=1e-8)


# ==========================================================================
# 3. task identities
# ==========================================================================
def test_task_column_int_on_ndarray_and_csr(fitted_classifier, binary_data):
    X, y, tasks = binary_data
    reference = fitted_classifier.predict_proba(X, tasks=tasks)
    Xt = np.column_stack([X[:, :1], tasks, X[:, 1:]])
    params = fitted_classifier.get_params(deep=False)
    for data, column in [(Xt, 1), (Xt, -3), (sp.csr_matrix(Xt), 1)]:
        meta = MetaClassifier(**{**params, "task_column": column}).fit(data, y)
        assert meta.n_features_in_ == 4
        assert_array_equal(meta.tasks_, [0, 1, 2, 3])
        assert meta.tasks_.dtype.kind == "i"
        assert meta.coef_.shape == (4, 1, 3)
        assert_allclose(meta.predict_proba(data), reference, rtol=1e-10)
        assert_array_equal(meta.predict(data),
                           fitted_classifier.predict(X, tasks=tasks))
        assert meta.score(data, y) == fitted_classifier.score(X, y, tasks=tasks)
        # predicting a single row works (the task column of 1 row)
        assert_allclose(meta.predict_proba(data[:1]), reference[:1], rtol=1e-10)


def _store_frame(X, tasks):
    stores = np.array(["north", "south", "east", "west"])[tasks]
    frame = pd.DataFrame({"a": X[:, 0], "store": stores, "b": X[:, 1],
                          "c": X[:, 2]})
    return frame, stores


def test_task_column_name_on_pandas_with_string_labels(binary_data):
    X, y, tasks = binary_data
    frame, stores = _store_frame(X, tasks)
    meta = MetaClassifier(task_column="store").fit(frame, y)
    direct = MetaClassifier().fit(X, y, tasks=stores)
    assert_array_equal(meta.tasks_, ["east", "north", "south", "west"])
    assert meta.n_features_in_ == 4
    assert_array_equal(meta.feature_names_in_, ["a", "store", "b", "c"])
    assert_allclose(meta.predict_proba(frame),
                    direct.predict_proba(X, tasks=stores), rtol=1e-10)
    # the exported models see the features without the task column
    est = meta.task_estimator("north")
    assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    assert_array_equal(meta.meta_estimator_.feature_names_in_, ["a", "b", "c"])
    features = frame.drop(columns="store")
    rows = stores == "north"
    assert_array_equal(est.predict(features[rows]), meta.predict(frame[rows]))
    # an unseen store: the prior model
    new = frame.assign(store="nowhere")
    assert_allclose(meta.predict_proba(new),
                    meta.meta_estimator_.predict_proba(features), rtol=1e-12)
    # by position on a DataFrame
    by_position = MetaClassifier(task_column=1).fit(frame, y)
    assert_array_equal(by_position.feature_names_in_, ["a", "store", "b", "c"])
    assert_allclose(by_position.predict_proba(frame),
                    meta.predict_proba(frame), rtol=1e-12)


def test_task_column_name_on_polars(binary_data):
    pl = pytest.importorskip("polars")
    X, y, tasks = binary_data
    frame, stores = _store_frame(X, tasks)
    pframe = pl.DataFrame({name: frame[name].to_numpy() for name in frame})
    meta = MetaClassifier(task_column="store").fit(pframe, y)
    direct = MetaClassifier().fit(X, y, tasks=stores)
    assert_array_equal(meta.tasks_, direct.tasks_)
    assert meta.n_features_in_ == 4
    assert_array_equal(meta.feature_names_in_, ["a", "store", "b", "c"])
    assert_allclose(meta.predict_proba(pframe),
                    direct.predict_proba(X, tasks=stores), rtol=1e-10)


def test_pandas_tasks_series_and_regressor_task_column(regression_data):
    X, y, tasks = regression_data
    direct = MetaRegressor().fit(X, y, tasks=tasks)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"]).assign(task=tasks)
    meta = MetaRegressor(task_column="task").fit(frame, pd.Series(y))
    assert_allclose(meta.predict(frame), direct.predict(X, tasks=tasks),
                    rtol=1e-10)
    series = MetaRegressor().fit(X, y, tasks=pd.Series(tasks)).predict(
        X, tasks=pd.Series(tasks))
    assert_allclose(series, direct.predict(X, tasks=tasks), rtol=1e-12)


def test_task_identity_errors(fitted_classifier, binary_data):
    X, y, tasks = binary_data
    n = X.shape[0]
    Xt = np.column_stack([tasks, X])
    with pytest.raises(ValueError, match="either through task_column or"):
        MetaClassifier(task_column=0).fit(Xt, y, tasks=tasks)
    with pytest.raises(ValueError, match="mixes strings and numbers"):
        MetaClassifier().fit(
            X, y, tasks=np.array([1] * (n // 2) + ["a"] * (n - n // 2),
                                 dtype=object))
    with pytest.raises(ValueError, match="NaN"):
        MetaClassifier().fit(X, y, tasks=np.r_[np.nan, tasks[1:]])
    with pytest.raises(ValueError, match="missing"):
        MetaClassifier().fit(X, y, tasks=pd.Series(
            [None] + ["s"] * (n - 1), dtype=object))
    # pandas' own missing value in a "string" column, where it read as a
    # number mixed with the strings
    with pytest.raises(ValueError, match="missing"):
        MetaClassifier().fit(X, y, tasks=pd.Series(
            [pd.NA] + ["s"] * (n - 1), dtype="string"))
    with pytest.raises(ValueError, match=f"{n - 1} labels but X has {n}"):
        MetaClassifier().fit(X, y, tasks=tasks[:-1])
    with pytest.raises(ValueError, match=f"{n + 1} labels but X has {n}"):
        fitted_classifier.predict(X, tasks=np.r_[tasks, 0])
    with pytest.raises(ValueError, match="pass tasks="):
        fitted_classifier.predict(X)
    with pytest.raises(ValueError, match="pass tasks="):
        fitted_classifier.predict_proba(X)
    with pytest.raises(ValueError, match="different type"):
        fitted_classifier.predict(X, tasks=np.full(n, "a"))
    with pytest.raises(ValueError, match="different type"):
        fitted_classifier.task_estimator("a")
    with pytest.raises(ValueError, match="not seen in fit"):
        fitted_classifier.task_estimator(99)
    with pytest.raises(ValueError, match="label of a task"):
        fitted_classifier.task_estimator()
    single = MetaClassifier().fit(X, y)
    with pytest.raises(ValueError, match="without task identities"):
        single.predict(X, tasks=tasks)
    with pytest.raises(ValueError, match="without task identities"):
        single.task_estimator(0)
    with pytest.raises(ValueError, match="is a name, but X is not a DataFrame"):
        MetaClassifier(task_column="store").fit(X, y)
    with pytest.raises(ValueError, match="out of range"):
        MetaClassifier(task_column=7).fit(X, y)
    frame, _ = _store_frame(X, tasks)
    with pytest.raises(ValueError, match="'shop' is not a column"):
        MetaClassifier(task_column="shop").fit(frame, y)


def test_mixed_label_list_is_rejected(binary_data):
    # a plain list mixing ints and strings must not be silently coerced to
    # strings by numpy (1 -> "1")
    X, y, _ = binary_data
    n = X.shape[0]
    mixed = [1] * (n // 2) + ["a"] * (n - n // 2)
    with pytest.raises(ValueError, match="mixes strings and numbers"):
        MetaClassifier().fit(X, y, tasks=mixed)


def test_bytes_task_labels_round_trip(binary_data):
    # numpy bytes labels are accepted by fit; the same labels must then be
    # accepted by predict
    X, y, tasks = binary_data
    labels = np.array([b"t0", b"t1", b"t2", b"t3"])[tasks]
    meta = MetaClassifier().fit(X, y, tasks=labels)
    direct = MetaClassifier().fit(X, y, tasks=tasks)
    assert_allclose(meta.predict_proba(X, tasks=labels),
                    direct.predict_proba(X, tasks=tasks), rtol=1e-12)


def test_string_task_labels_fitted_then_int_labels_rejected(binary_data):
    X, y, tasks = binary_data
    labels = np.array(["t0", "t1", "t2", "t3"])[tasks]
    meta = MetaClassifier().fit(X, y, tasks=labels)
    with pytest.raises(ValueError, match="different type"):
        meta.predict(X, tasks=tasks)


@pytest.mark.parametrize("fit_kind", ["str", "bytes"])
def test_bytes_and_str_task_labels_are_the_same_tasks(fit_kind, binary_data):
    # labels read from HDF5 or Parquet arrive as bytes: they are decoded as
    # UTF-8, so either spelling finds the task whichever one fit received
    X, y, tasks = binary_data
    names = np.array(["zürich", "north", "south", "east"])
    text, raw = names[tasks], np.char.encode(names, "utf-8")[tasks]
    # (a fixed prior: the iterates of a learned one depend on the task order)
    kw = dict(gamma=1.0, prior="isotropic")
    reference = MetaClassifier(**kw).fit(X, y, tasks=tasks)
    meta = MetaClassifier(**kw).fit(X, y, tasks=text if fit_kind == "str" else raw)
    assert meta.tasks_.dtype.kind == "U"
    assert_array_equal(meta.tasks_, np.sort(names))
    # each spelling predicts with the task's own model, not the prior's
    order = np.argsort(np.argsort(names))  # label position -> sorted position
    for labels in (text, raw, raw.astype(object), list(raw)):
        assert_allclose(meta.predict_proba(X, tasks=labels),
                        reference.predict_proba(X, tasks=tasks), rtol=1e-12)
    assert_allclose(meta.task_params_[order], reference.task_params_,
                    rtol=1e-12)
    assert_allclose(meta.task_estimator(b"north").coef_,
                    meta.task_estimator("north").coef_, rtol=0)
    # a task added through the other spelling joins the same tasks_
    Xn, yn, _ = make_tasks("binary", n_tasks=1, n_per_task=8, seed=40)
    other = np.full(8, b"west") if fit_kind == "str" else np.full(8, "west")
    meta.partial_fit(Xn, yn, tasks=other)
    assert meta.tasks_.dtype.kind == "U"
    assert_array_equal(meta.tasks_, np.sort(np.append(names, "west")))
    assert_allclose(meta.predict_proba(Xn, tasks=np.full(8, "west")),
                    meta.predict_proba(Xn, tasks=np.full(8, b"west")), rtol=0)


@pytest.mark.parametrize("fit_kind", ["str", "bytes"])
def test_bytes_and_str_task_columns_are_the_same_tasks(fit_kind, binary_data):
    X, y, tasks = binary_data
    frame, stores = _store_frame(X, tasks)
    stores = np.where(stores == "north", "zürich", stores)
    frame = frame.assign(store=stores)
    raw = frame.assign(store=[s.encode("utf-8") for s in stores])
    meta = MetaClassifier(task_column="store").fit(
        frame if fit_kind == "str" else raw, y)
    direct = MetaClassifier().fit(X, y, tasks=stores)
    assert_array_equal(meta.tasks_, direct.tasks_)
    for data in (frame, raw):
        assert_allclose(meta.predict_proba(data),
                        direct.predict_proba(X, tasks=stores), rtol=1e-12)


def test_adapt_starts_from_the_prior_mean_not_the_transfer_center():
    # where the base penalty is part of the learned prior, the transfer
    # term pulls toward c = Pi^{-1} (Pi + D) mu, beyond the prior mean mu,
    # and far beyond it along a direction of weak transfer. adapt solved new
    # tasks from c: under a PoissonRegressor prior learned on 20 tasks, c
    # was 228 where mu was 0.2, exp overflowed, and a new task of five rows
    # came back with NaN coefficients, silently. Solved from mu (the
    # solution of a task without rows), it is the exact minimizer.
    X, y, tasks = make_tasks("poisson", n_tasks=6, n_per_task=15,
                             n_features=3, seed=0)
    meta = MetaRegressor(PoissonRegressor(), prior="full", gamma=1.0).fit(
        X, y, tasks=tasks)
    mu = np.array([0.2, 0.1, 0.0, 0.5])
    ridge = np.array([1.0, 1.0, 1.0, 0.0])  # alpha=1; no intercept penalty
    # weak transfer along the base penalty's pull on mu
    start = np.column_stack([ridge * mu, np.random.default_rng(0).normal(
        size=(4, 3))])
    V = np.linalg.qr(start)[0]
    precision = V @ np.diag([8e-4, 3.0, 4.0, 5.0]) @ V.T
    center = np.linalg.solve(precision, precision @ mu + ridge * mu)
    assert np.abs(center).max() > 100
    meta.meta_params_, meta.transfer_center_ = mu, center
    meta.gamma_, meta.prior_shape_ = 1.0, precision
    X_new = np.array([[3.17, 1.57, -0.34], [0.59, 0.09, -0.18],
                      [1.11, 2.23, -0.54], [1.26, -0.09, -0.64],
                      [0.16, 1.13, -0.55]])
    y_new = np.array([8.0, 0.0, 1.0, 4.0, 1.0])
    adapted = meta.adapt(X_new, y_new)
    objective = InnerObjective.from_problem(
        meta._problem(), X_new, y_new, None, theta0=center,
        precision=precision)
    reference = optimize.minimize(objective.objective, mu, jac=objective.grad,
                                  method="BFGS", options={"gtol": 1e-10})
    assert_allclose(np.r_[adapted.coef_, adapted.intercept_], reference.x,
                    rtol=1e-6, atol=1e-8)


def test_adapted_parameters_that_are_not_finite_raise_naming_the_tasks(
        monkeypatch):
    X, y, tasks = make_tasks("poisson", n_tasks=4, n_per_task=10,
                             n_features=3, seed=0)
    meta = MetaRegressor(PoissonRegressor(), gamma=1.0).fit(X, y, tasks=tasks)
    solve = meta._adapt_method

    def diverged(family, rows, labels=None):
        theta = solve(family, rows)
        theta[1] = np.nan
        return theta

    monkeypatch.setattr(meta, "_adapt_method", diverged)
    new_tasks = np.repeat(["a", "b", "c"], 10)
    with pytest.raises(FloatingPointError, match=r"new tasks \['b'\]"):
        meta.adapt_tasks(X[:30], y[:30], tasks=new_tasks)


def test_new_tasks_whose_exact_solve_stops_early_are_named(monkeypatch):
    # adapt_tasks and partial_fit warn naming the tasks whose exact solve
    # stopped at its iteration limit (here cut to one Newton step)
    from skmeta._methods import _inner

    X, y, tasks = make_tasks("poisson", n_tasks=4, n_per_task=10,
                             n_features=3, seed=0)
    meta = MetaRegressor(PoissonRegressor(), gamma=1.0).fit(X, y, tasks=tasks)
    monkeypatch.setattr(_inner, "INNER_MAX_ITER", 1)
    new_tasks = np.repeat(["a", "b", "c"], 10)
    with pytest.warns(ConvergenceWarning, match=r"tasks \['a', 'b', 'c'\]"):
        meta.adapt_tasks(X[:30], y[:30], tasks=new_tasks)


def test_a_poisson_prior_mean_is_held_by_the_base_penalty():
    # two Poisson tasks of 12 rows and 12 features, far apart. With the
    # prior mean held by nothing, the random-intercept prior won the
    # selection, and its fit left |theta| ~ 5e4 and a training deviance of
    # 2,184 per row (the pooled model's: 5.6), silently; then (with the check
    # for models worse than all-zero parameters) it fell back to the fixed
    # prior, deviance 1.74. Held by the base penalty, the learned prior is
    # sound: no warning, and a better fit than the fallback's.
    X, y, tasks = make_tasks("poisson", n_tasks=2, n_per_task=12,
                             n_features=12, seed=0, spread=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = MetaRegressor(PoissonRegressor()).fit(X, y, tasks=tasks)
    assert np.abs(meta.task_params_).max() < 10.0
    fixed = MetaRegressor(PoissonRegressor(), gamma=1.0,
                          prior="isotropic").fit(X, y, tasks=tasks)
    pooled = PoissonRegressor().fit(X, y)
    deviance = mean_poisson_deviance(y, meta.predict(X, tasks=tasks))
    assert deviance < mean_poisson_deviance(y, fixed.predict(X, tasks=tasks))
    assert deviance < mean_poisson_deviance(y, pooled.predict(X))


def test_bytes_tasks_of_an_earlier_version_still_match(binary_data):
    # skmeta used to keep bytes labels as bytes in tasks_: such a fitted
    # model still finds its tasks under either spelling, and stays bytes
    X, y, tasks = binary_data
    names = np.array(["zürich", "north", "south", "east"])
    meta = MetaClassifier().fit(X, y, tasks=names[tasks])
    expected = meta.predict_proba(X, tasks=names[tasks])
    meta.tasks_ = np.char.encode(meta.tasks_, "utf-8")
    for labels in (names[tasks], np.char.encode(names, "utf-8")[tasks]):
        assert_array_equal(meta.predict_proba(X, tasks=labels), expected)
    Xn, yn, _ = make_tasks("binary", n_tasks=1, n_per_task=8, seed=42)
    meta.partial_fit(Xn, yn, tasks=np.full(8, "west"))
    assert meta.tasks_.dtype.kind == "S"
    assert_array_equal(meta.tasks_, np.char.encode(
        np.sort(np.append(names, "west")), "utf-8"))


def test_task_labels_that_are_not_utf8_are_refused(binary_data):
    X, y, tasks = binary_data
    latin1 = np.array([s.encode("latin-1") for s in ["zürich", "b", "c", "d"]])
    with pytest.raises(ValueError, match="not valid UTF-8"):
        MetaClassifier().fit(X, y, tasks=latin1[tasks])
    with pytest.raises(ValueError, match="not valid UTF-8"):
        MetaClassifier().fit(X, y, tasks=latin1[tasks].astype(object))
    meta = MetaClassifier().fit(X, y, tasks=np.array(["a", "b", "c", "d"])[tasks])
    with pytest.raises(ValueError, match="not valid UTF-8"):
        meta.predict(X, tasks=latin1[tasks])


def test_float_task_labels_beyond_int64_are_refused(binary_data):
    # 1e19 and 2e19 do not fit in int64: converting them would give one
    # task (the overflow value) for both
    X, y, tasks = binary_data
    huge = np.array([1e19, 2e19, 3.0, 4.0])[tasks]
    with pytest.raises(ValueError, match="beyond the int64 range, such as [12]e\\+19"):
        MetaClassifier().fit(X, y, tasks=huge)
    with pytest.raises(ValueError, match="beyond the int64 range"):
        MetaClassifier(task_column=0).fit(np.column_stack([huge, X]), y)
    with pytest.raises(ValueError, match="beyond the int64 range"):
        MetaClassifier().fit(X, y, tasks=-huge)
    # the extremes of the int64 range are exact, and stay distinct tasks
    edge = np.array([-(2.0**63), 2.0**62, 2.0**62 + 1024, np.nextafter(2.0**63, 0)])
    meta = MetaClassifier().fit(X, y, tasks=edge[tasks])
    assert meta.tasks_.dtype == np.int64
    assert_array_equal(meta.tasks_, [-(2**63), 2**62, 2**62 + 1024,
                                     2**63 - 1024])
    # as integers, labels past int64 are kept exactly
    big = np.array([10**19, 10**19 + 1, 3, 4], dtype=np.uint64)[tasks]
    kw = dict(gamma=1.0, prior="isotropic")  # iterates independent of order
    reference = MetaClassifier(**kw).fit(X, y, tasks=tasks)
    meta = MetaClassifier(**kw).fit(X, y, tasks=big)
    assert meta.tasks_.dtype == np.uint64
    assert_array_equal(meta.tasks_, [3, 4, 10**19, 10**19 + 1])
    assert_allclose(meta.predict_proba(X, tasks=big),
                    reference.predict_proba(X, tasks=tasks), rtol=1e-12)


def test_unsupported_base_estimator_lists_the_supported_ones(binary_data):
    X, y, tasks = binary_data
    with pytest.raises(TypeError, match="Supported: LogisticRegression"):
        MetaClassifier(SVC()).fit(X, y, tasks=tasks)
    with pytest.raises(TypeError, match="Supported: Ridge, LinearRegression, "
                                        "Lasso, ElasticNet, PoissonRegressor"):
        MetaRegressor(SVR()).fit(X, y.astype(float), tasks=tasks)
    # a classifier is not a regressor's base and vice versa
    with pytest.raises(TypeError, match="does not support Ridge"):
        MetaClassifier(Ridge()).fit(X, y, tasks=tasks)


def test_classes_are_the_union_over_tasks():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(30, 2))
    tasks = np.repeat([0, 1, 2], 10)
    # each task sees two of the three classes
    y = np.array(["cat", "dog"] * 5 + ["dog", "emu"] * 5 + ["cat", "emu"] * 5)
    meta = MetaClassifier(gamma=1.0).fit(X, y, tasks=tasks)
    assert_array_equal(meta.classes_, ["cat", "dog", "emu"])
    assert meta.coef_.shape == (3, 3, 2)
    pred = meta.predict(X, tasks=tasks)
    assert pred.dtype.kind == "U"
    assert set(pred) <= {"cat", "dog", "emu"}
    P = meta.predict_proba(X, tasks=tasks)
    assert_allclose(P.sum(axis=1), 1.0)
    # a task's missing class gets lower probability in that task than in the
    # tasks that saw it
    assert P[:10, 2].mean() < P[10:, 2].mean()
    assert_array_equal(meta.task_estimator(1).classes_, meta.classes_)


def test_string_binary_class_labels(binary_data):
    X, y, tasks = binary_data
    names = np.array(["no", "yes"])[y]
    meta = MetaClassifier().fit(X, names, tasks=tasks)
    numeric = MetaClassifier().fit(X, y, tasks=tasks)
    assert_array_equal(meta.classes_, ["no", "yes"])
    assert_array_equal(meta.predict(X, tasks=tasks),
                       np.array(["no", "yes"])[numeric.predict(X, tasks=tasks)])
    assert_allclose(meta.task_params_, numeric.task_params_)


def test_input_validation_errors(binary_data, regression_data):
    X, y, tasks = binary_data
    Xr, yr, tr = regression_data
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MetaClassifier().fit(bad, y, tasks=tasks)
    with pytest.raises(ValueError, match="NaN"):
        MetaClassifier(task_column=0).fit(np.column_stack([tasks, bad]), y)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        MetaRegressor().fit(bad, y.astype(float), tasks=tasks)
    with pytest.raises(ValueError, match="NaN"):
        MetaRegressor().fit(Xr, np.r_[np.nan, yr[1:]], tasks=tr)
    with pytest.raises(ValueError, match="Negative values"):
        MetaRegressor().fit(Xr, yr, tasks=tr, sample_weight=-np.ones(yr.size))
    with pytest.raises(ValueError, match="non-negative targets"):
        MetaRegressor(PoissonRegressor()).fit(Xr, yr - 100.0, tasks=tr)
    with pytest.raises(ValueError, match="1 class|one class"):
        MetaClassifier().fit(X, np.zeros_like(y), tasks=tasks)
    with pytest.raises(ValueError, match="1-dimensional"):
        MetaClassifier().fit(X, y, tasks=tasks[:, None])
    meta = MetaClassifier().fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="X has 2 features"):
        meta.predict(X[:, :2], tasks=tasks)
    with pytest.raises(ValueError, match="X has 2 features"):
        meta.adapt(X[:, :2], y)
    with pytest.raises(ValueError, match="positive=True"):
        MetaRegressor(Lasso(positive=True)).fit(Xr, yr, tasks=tr)


def test_a_single_row_with_a_task_column_gets_scikit_learns_reshape_advice(
        binary_data):
    # counted before the task column was taken out, a 1-D X had "no features"
    from skmeta.preprocessing import TaskScaler

    X, y, tasks = binary_data
    Xt = np.column_stack([X, tasks])
    column = X.shape[1]
    meta = MetaClassifier(task_column=column).fit(Xt, y)
    scaler = TaskScaler(task_column=column).fit(Xt)
    for call in (lambda: meta.predict(Xt[0]), lambda: scaler.transform(Xt[0]),
                 lambda: MetaClassifier(task_column=0).fit(tasks, y),
                 lambda: MetaClassifier(task_column=[0]).fit(tasks, y)):
        with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
            call()


def test_a_classifiers_nan_target_is_refused_alone_with_a_task_column(
        binary_data):
    # the task column's path read the classes of y before checking it: numpy
    # warned of casting NaN to an integer before the error
    X, y, tasks = binary_data
    y = y.astype(float)
    y[0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for meta, Xs, kwargs in [
                (MetaClassifier(), X, {"tasks": tasks}),
                (MetaClassifier(task_column=0), np.column_stack([tasks, X]),
                 {})]:
            with pytest.raises(ValueError, match="Input y contains NaN"):
                meta.fit(Xs, y, **kwargs)


@pytest.mark.parametrize("prior", ["diagonal", "full"])
def test_learned_prior_shape_is_normalized(prior, binary_data):
    # Lambda is the shape only (det = 1) so that gamma keeps its meaning
    X, y, tasks = binary_data
    meta = MetaClassifier(gamma=1.0, prior=prior).fit(X, y, tasks=tasks)
    L = meta.prior_shape_
    assert meta.gamma_ == 1.0
    assert_array_equal(meta.prior_precision_, meta.gamma_ * L)
    if prior == "full":
        assert L.shape == (4, 4)
        assert_allclose(L, L.T, rtol=1e-12, atol=1e-14)
        assert np.all(np.linalg.eigvalsh(L) > 0)
        assert np.linalg.det(L) == pytest.approx(1.0)
    else:
        assert L.shape == (4,)
        assert np.all(L > 0)
        assert np.prod(L) == pytest.approx(1.0)
    # each task is the exact inner solution under the learned prior
    for t in range(4):
        rows = task_rows(tasks, t)
        expected = logistic_reference(X[rows], y[rows], 1.0, meta.gamma_,
                                      meta.transfer_center_, L)
        assert_allclose(meta.task_params_[t], expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("Meta, kind, base", [
    (MetaClassifier, "binary", LogisticRegression(C=1.0, l1_ratio=0.7,
                                                  solver="saga")),
    (MetaClassifier, "multiclass", LogisticRegression()),
    (MetaRegressor, "regression", ElasticNet(alpha=0.05, l1_ratio=0.5)),
    (MetaRegressor, "poisson", PoissonRegressor(alpha=0.1)),
])
def test_sparse_input_gives_the_dense_result(Meta, kind, base):
    X, y, tasks = make_tasks(kind, n_tasks=4, n_per_task=12, seed=40)
    X[np.abs(X) < 0.6] = 0.0
    dense = Meta(base, gamma=0.7, tol=1e-10).fit(X, y, tasks=tasks)
    sparse = Meta(base, gamma=0.7, tol=1e-10).fit(sp.csr_matrix(X), y,
                                                   tasks=tasks)
    assert_allclose(sparse.task_params_, dense.task_params_, rtol=1e-7,
                    atol=1e-9)
    assert_allclose(sparse.meta_params_, dense.meta_params_, rtol=1e-7,
                    atol=1e-9)
    assert_allclose(sparse.predict(sp.csr_matrix(X), tasks=tasks),
                    dense.predict(X, tasks=tasks), rtol=1e-7, atol=1e-9)


def test_task_column_makes_plain_cross_validation_task_aware(binary_data):
    # scorers pass no metadata to predict: the task column is what keeps
    # each test row on its own task's model
    from sklearn.model_selection import KFold, cross_val_score
    X, y, tasks = binary_data
    Xt = np.column_stack([tasks, X])
    cv = KFold(3, shuffle=True, random_state=0)
    fixed = dict(gamma=1.0, prior="isotropic")  # routing, not the defaults
    scores = cross_val_score(MetaClassifier(task_column=0, **fixed), Xt, y,
                             cv=cv)
    for score, (train, test) in zip(scores, cv.split(Xt)):
        fitted = MetaClassifier(**fixed).fit(X[train], y[train],
                                             tasks=tasks[train])
        assert score == pytest.approx(
            fitted.score(X[test], y[test], tasks=tasks[test]))


# ==========================================================================
# 4. adapt
# ==========================================================================
def test_adapt_returns_a_plain_logistic_regression(fitted_classifier):
    meta = fitted_classifier
    X, y, _ = make_tasks("binary", n_tasks=1, n_per_task=8, seed=11)
    before = (meta.meta_params_.copy(), meta.task_params_.copy(),
              meta.tasks_.copy(), meta.prior_precision_.copy())
    clf = meta.adapt(X, y)
    assert type(clf) is LogisticRegression
    assert_array_equal(clf.classes_, meta.classes_)
    # the inner problem solved directly, under the fitted prior
    expected = logistic_reference(X, y, 1.0, meta.gamma_, meta.transfer_center_,
                                  meta.prior_shape_)
    assert_allclose(flat_params(clf), expected, rtol=1e-6, atol=1e-8)
    restored = pickle.loads(pickle.dumps(clf))
    assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert_array_equal(restored.predict(X), clf.predict(X))
    # the meta-knowledge did not move
    for old, new in zip(before, (meta.meta_params_, meta.task_params_,
                                 meta.tasks_, meta.prior_precision_)):
        assert_array_equal(old, new)


def test_adapt_regressor_matches_the_closed_form():
    X, y, tasks = make_tasks("regression", n_tasks=5, n_per_task=10, seed=12)
    meta = MetaRegressor(Ridge(alpha=0.5), prior="diagonal").fit(
        X, y, tasks=tasks)
    Xn, yn, _ = make_tasks("regression", n_tasks=1, n_per_task=4, seed=13)
    w = np.array([1.0, 2.0, 0.5, 1.0])
    reg = meta.adapt(Xn, yn, sample_weight=w)
    assert type(reg) is Ridge
    expected = ridge_reference(Xn, yn, 0.5, meta.gamma_, meta.transfer_center_,
                               meta.prior_shape_, sample_weight=w)
    assert_allclose(flat_params(reg), expected, rtol=1e-7, atol=1e-9)
    restored = pickle.loads(pickle.dumps(reg))
    assert_array_equal(restored.predict(Xn), reg.predict(Xn))
    assert_allclose(reg.predict(Xn), design(Xn) @ expected, rtol=1e-7)


def test_adapt_under_a_full_prior_matches_direct_solve():
    X, y, tasks = make_tasks("binary", n_tasks=6, n_per_task=12, seed=41)
    meta = MetaClassifier(LogisticRegression(C=3.0), gamma=2.0,
                          prior="full").fit(X, y, tasks=tasks)
    Xn, yn, _ = make_tasks("binary", n_tasks=1, n_per_task=5, seed=42)
    w = np.array([1.0, 0.5, 2.0, 1.0, 3.0])
    clf = meta.adapt(Xn, yn, sample_weight=w)
    expected = logistic_reference(Xn, yn, 3.0, 2.0, meta.transfer_center_,
                                  meta.prior_shape_, sample_weight=w)
    assert_allclose(flat_params(clf), expected, rtol=1e-6, atol=1e-8)


def test_adapt_several_tasks_gives_a_dict(fitted_classifier):
    meta = fitted_classifier
    X, y, tasks = make_tasks("binary", n_tasks=3, n_per_task=6, seed=14)
    labels = np.array(["a", "b", "c"])[tasks]
    models = meta.adapt_tasks(X, y, tasks=labels)
    assert sorted(models) == ["a", "b", "c"]
    for label, clf in models.items():
        rows = labels == label
        assert type(clf) is LogisticRegression
        alone = meta.adapt(X[rows], y[rows])
        assert_allclose(flat_params(clf), flat_params(alone), rtol=1e-8,
                        atol=1e-10)


def test_adapt_with_a_class_never_seen_raises(fitted_classifier):
    X, _, _ = make_tasks("binary", n_tasks=1, n_per_task=4, seed=15)
    with pytest.raises(ValueError, match=r"not seen during meta-training"):
        fitted_classifier.adapt(X, np.array([0, 1, 2, 1]))


# ==========================================================================
# 5. partial_fit
# ==========================================================================
def test_partial_fit_first_call_is_fit(binary_data):
    X, y, tasks = binary_data
    fitted = MetaClassifier(gamma=0.5).fit(X, y, tasks=tasks)
    partial = MetaClassifier(gamma=0.5).partial_fit(X, y, tasks=tasks)
    assert_array_equal(partial.task_params_, fitted.task_params_)
    assert_array_equal(partial.meta_params_, fitted.meta_params_)
    assert_array_equal(partial.tasks_, fitted.tasks_)


def test_partial_fit_adds_tasks_and_moves_the_prior_by_the_new_ones(
        binary_data):
    X, y, tasks = binary_data
    meta = MetaClassifier(gamma=0.5, prior="isotropic", tol=1e-10).fit(
        X, y, tasks=tasks)
    old = meta.task_params_.copy()
    theta0 = meta.meta_params_.copy()
    Xn, yn, tn = make_tasks("binary", n_tasks=2, n_per_task=7, seed=16)
    # task 10 is new; task 1 is known and refitted on these rows only
    tn = np.where(tn == 0, 10, 1)
    meta.partial_fit(Xn, yn, tasks=tn)
    assert_array_equal(meta.tasks_, [0, 1, 2, 3, 10])
    assert meta.n_tasks_seen_ == 5
    assert_array_equal(meta.task_params_[[0, 2, 3]], old[[0, 2, 3]])
    assert meta.gamma_ == 0.5
    # A fixed isotropic prior's mean is the mean of the modes of the tasks
    # that entered it -- the four of fit and the new one; the known task's
    # refit does not enter twice. The four earlier modes are carried to the
    # new prior mean by the prior swap, with their mean inverse Hessian:
    # mean + mean_t(A_t^{-1}) Pi (theta0' - theta0).
    hessians = [
        InnerObjective(X[tasks == t], y[tasks == t], None, LOGISTIC, lam2=1.0,
                       l2w=np.r_[np.ones(3), 0.0], theta0=theta0,
                       precision=0.5 * np.ones(4)).hess(old[t])
        for t in range(4)]
    inverse = np.mean([np.linalg.inv(A) for A in hessians], axis=0)
    moved = meta.meta_params_
    earlier = old.mean(axis=0) + inverse @ (0.5 * (moved - theta0))
    # (the solver's inverse Hessians are those of its last Newton step, a
    # step before the mode: agreement to 1e-4, not to round-off)
    assert_allclose(moved, (4 * earlier + meta.task_params_[4]) / 5,
                    rtol=1e-4, atol=1e-6)
    # every task of the chunk is the exact solution under the moved prior
    rows = tn == 10
    new_task = logistic_reference(Xn[rows], yn[rows], 1.0, 0.5,
                                  meta.meta_params_, meta.prior_shape_)
    assert_allclose(meta.task_params_[4], new_task, rtol=1e-6, atol=1e-8)
    known = logistic_reference(Xn[~rows], yn[~rows], 1.0, 0.5,
                               meta.meta_params_, meta.prior_shape_)
    assert_allclose(meta.task_params_[1], known, rtol=1e-6, atol=1e-8)
    # the new task is now predicted by its own model, not the prior
    assert_allclose(meta.predict_proba(Xn[rows], tasks=tn[rows]),
                    meta.task_estimator(10).predict_proba(Xn[rows]), rtol=1e-12)
    assert meta.coef_.shape == (5, 1, 3)


def test_partial_fit_classes_argument():
    X, y, tasks = make_tasks("multiclass", n_tasks=3, n_per_task=20, seed=17)
    first = y != 2
    # (a fixed prior: empirical Bayes on three tasks and one of a single
    # class has no sensible answer, online or not)
    with pytest.warns(UserWarning, match=r"classes \[2\] have no rows") as record:
        meta = MetaClassifier(gamma=1.0, prior="isotropic").partial_fit(
            X[first], y[first], tasks=tasks[first], classes=[0, 1, 2])
    # pointed at the caller's line
    assert record[0].filename == __file__
    assert_array_equal(meta.classes_, [0, 1, 2])
    assert meta.coef_.shape == (3, 3, 3)
    # class 2 arrives later, in a new task
    meta.partial_fit(X[~first], y[~first], tasks=np.full((~first).sum(), 7))
    assert_array_equal(meta.tasks_, [0, 1, 2, 7])
    # its rows, all of class 2, pull its model toward class 2
    P = meta.predict_proba(X[~first], tasks=np.full((~first).sum(), 7))
    prior = meta.meta_estimator_.predict_proba(X[~first])
    assert np.all(P[:, 2] > prior[:, 2])
    with pytest.raises(ValueError, match="differs from the classes"):
        meta.partial_fit(X, y, tasks=tasks, classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes"):
        MetaClassifier().partial_fit(X, y, tasks=tasks, classes=[0, 1])


def test_partial_fit_regressor_adds_a_task(regression_data):
    X, y, tasks = regression_data
    meta = MetaRegressor(gamma=2.0, prior="isotropic").fit(X, y, tasks=tasks)
    Xn, yn, _ = make_tasks("regression", n_tasks=1, n_per_task=3, seed=18)
    meta.partial_fit(Xn, yn, tasks=np.full(3, 50))
    expected = ridge_reference(Xn, yn, 1.0, 2.0, meta.transfer_center_,
                               meta.prior_shape_)
    assert_allclose(meta.task_params_[-1], expected, rtol=1e-7, atol=1e-9)
    assert_allclose(meta.predict(Xn, tasks=np.full(3, 50)),
                    design(Xn) @ expected, rtol=1e-7)


def test_partial_fit_without_task_identity_on_a_multitask_model(binary_data):
    X, y, tasks = binary_data
    meta = MetaClassifier().fit(X, y, tasks=tasks)
    # the same guidance predict gives
    with pytest.raises(ValueError, match="tasks=|task_column"):
        meta.partial_fit(X, y)


def test_partial_fit_of_a_single_task_model_says_it_refits_the_task(
        binary_data):
    # one task carries no prior: each call refits it on its own rows, which
    # scikit-learn's partial_fit would learn incrementally; it said nothing
    X, y, _ = binary_data
    half = len(y) // 2
    meta = MetaClassifier().partial_fit(X[:half], y[:half], classes=[0, 1])
    with pytest.warns(UserWarning, match="refits its one task on the rows "
                      "passed now, and rows of earlier calls leave no trace"):
        meta.partial_fit(X[half:], y[half:])
    alone = LogisticRegression(tol=1e-10).fit(X[half:], y[half:])
    assert_allclose(meta.predict_proba(X), alone.predict_proba(X), atol=1e-6)


def test_partial_fit_with_tasks_on_a_single_task_model(binary_data):
    # consistent with predict: a model fitted without task identities refuses
    # tasks, rather than storing several parameter rows under tasks_=None
    X, y, tasks = binary_data
    meta = MetaClassifier().fit(X, y)
    with pytest.raises(ValueError, match="without task identities"):
        meta.partial_fit(X, y, tasks=tasks)


def test_partial_fit_refuses_another_kind_of_task_label():
    X, y, tasks = _redteam_data(MetaClassifier)
    meta = MetaClassifier().fit(X, y, tasks=tasks)
    before = meta.task_params_.copy()
    reference = meta.predict_proba(X, tasks=tasks)
    with pytest.raises(ValueError, match="different type.*tasks_ are integers"):
        meta.partial_fit(X[:20], y[:20], tasks=["new"] * 20)
    # the model is untouched and still takes its own labels
    assert meta.tasks_.dtype == tasks.dtype
    assert_array_equal(meta.tasks_, np.arange(6))
    assert_array_equal(meta.task_params_, before)
    assert_array_equal(meta.predict_proba(X, tasks=tasks), reference)
    strings = MetaClassifier().fit(X, y, tasks=np.array(list("abcdef"))[tasks])
    with pytest.raises(ValueError, match="different type.*tasks_ are strings"):
        strings.partial_fit(X[:20], y[:20], tasks=np.full(20, 7))
    # a longer string is a new task, not truncated to tasks_'s width
    strings.partial_fit(X[:20], y[:20], tasks=np.full(20, "a much longer name"))
    assert "a much longer name" in strings.tasks_
    assert strings.tasks_.dtype.kind == "U"


def test_partial_fit_keeps_the_integer_dtype_of_tasks_():
    # int64 labels near 2**62 and a uint64 label >= 2**63 have no common
    # integer dtype: numpy would merge them as float64, 7 tasks into 2
    X, y, tasks = _redteam_data(MetaClassifier)
    near = np.int64(2**62) + tasks
    meta = MetaClassifier().fit(X, y, tasks=near)
    before = meta.task_params_.copy()
    beyond = np.full(20, 2**63 + 5, dtype=np.uint64)
    with pytest.raises(ValueError, match="9223372036854775813 cannot be stored"
                                         ".*dtype is int64"):
        meta.partial_fit(X[:20], y[:20], tasks=beyond)
    assert_array_equal(meta.tasks_, np.int64(2**62) + np.arange(6))
    assert_array_equal(meta.task_params_, before)
    # predicting with it: an unseen task, so the prior model, not a merged task
    assert_allclose(meta.predict_proba(X[:20], tasks=beyond),
                    meta.meta_estimator_.predict_proba(X[:20]), rtol=1e-12)
    # uint64 labels int64 holds are converted exactly, and stay distinct
    Xn, yn, _ = make_tasks("binary", n_tasks=1, n_per_task=8, seed=41,
                           n_features=4)
    new = np.full(8, 2**62 + 6, dtype=np.uint64)
    meta.partial_fit(Xn, yn, tasks=new)
    assert meta.tasks_.dtype == np.int64
    assert_array_equal(meta.tasks_, np.int64(2**62) + np.arange(7))
    assert_array_equal(meta.task_params_[:6], before)
    # the new task's model is its fit under the prior it moved
    expected = meta.adapt(Xn, yn)
    assert_allclose(meta.task_params_[6], flat_params(expected), rtol=1e-6,
                    atol=1e-8)
    # and a known task is found whatever the integer dtype of the labels
    assert_allclose(meta.predict_proba(X, tasks=near.astype(np.uint64)),
                    meta.predict_proba(X, tasks=near), rtol=0)


# ==========================================================================
# 6. persistence
# ==========================================================================
def _persistence_cases():
    Xc, yc, tc = make_tasks("multiclass", n_tasks=3, n_per_task=15, seed=19)
    Xr, yr, tr = make_tasks("regression", n_tasks=3, n_per_task=8, seed=19)
    return [
        (MetaClassifier(gamma="auto", prior="full").fit(Xc, yc, tasks=tc),
         Xc, tc),
        (MetaRegressor(Lasso(alpha=0.05), prior="full").fit(Xr, yr, tasks=tr),
         Xr, tr),
        (MetaClassifier().fit(Xc, yc), Xc, None),
    ]


def _outputs(meta, X, tasks):
    out = [meta.predict(X, tasks=tasks)]
    if hasattr(meta, "predict_proba"):
        out.append(meta.predict_proba(X, tasks=tasks))
    label = None if tasks is None else tasks[0]
    out.append(meta.task_estimator(label).predict(X))
    out.append(meta.meta_estimator_.predict(X))
    return out


def test_pickle_round_trip():
    for meta, X, tasks in _persistence_cases():
        restored = pickle.loads(pickle.dumps(meta))
        for a, b in zip(_outputs(meta, X, tasks), _outputs(restored, X, tasks)):
            assert_array_equal(a, b)


# The skmeta types a user must trust to load a fitted model with skops, as
# doc/user_guide.rst lists them (section "Saving a fitted model"): the
# meta-estimator's class alone, whatever its base estimator
SKOPS_TRUSTED = {
    "MetaClassifier": ["skmeta._estimators.MetaClassifier"],
    "MetaRegressor": ["skmeta._estimators.MetaRegressor"],
    "MetaEmbedding": ["skmeta._embedding.MetaEmbedding"],
    "TaskScaler": ["skmeta._scaler.TaskScaler"],
    "MetaGaussianDensity": ["skmeta._density.MetaGaussianDensity"],
    "TaskGaussianDensity": ["skmeta._density.TaskGaussianDensity"],
}


def _skops_trusted(meta):
    return SKOPS_TRUSTED[type(meta).__name__]


def _skops_round_trip(meta):
    """Load with exactly the documented types; they must also be all it needs."""
    sio = pytest.importorskip("skops.io", reason="skops is not installed")
    data = sio.dumps(meta)
    trusted = _skops_trusted(meta)
    assert sorted(sio.get_untrusted_types(data=data)) == sorted(trusted)
    return sio.loads(data, trusted=trusted)


def test_skops_round_trip():
    for meta, X, tasks in _persistence_cases():
        restored = _skops_round_trip(meta)
        for a, b in zip(_outputs(meta, X, tasks), _outputs(restored, X, tasks)):
            assert_array_equal(a, b)


@pytest.mark.parametrize("Meta, base, kwargs", [
    (MetaClassifier, LogisticRegression(C=0.5, class_weight="balanced"), {}),
    (MetaClassifier, None, {"method": "metasgd", "max_iter": 20}),
    (MetaRegressor, Ridge(alpha=0.5), {"prior": "full"}),
    (MetaRegressor, LinearRegression(), {"method": "maml", "max_iter": 20}),
    (MetaRegressor, Lasso(alpha=0.01), {"gamma": "auto"}),
    (MetaRegressor, ElasticNet(alpha=0.01, l1_ratio=0.5), {"method": "imaml",
                                                          "max_iter": 20}),
    (MetaRegressor, PoissonRegressor(alpha=0.1), {"method": "reptile",
                                                  "max_iter": 20}),
], ids=["logistic", "logistic-metasgd", "ridge", "linear-maml", "lasso",
        "enet-imaml", "poisson-reptile"])
@pytest.mark.parametrize("labels", ["int", "str"])
def test_skops_loads_with_exactly_the_documented_types(Meta, base, kwargs,
                                                       labels):
    kind = ("multiclass" if Meta is MetaClassifier else
            "poisson" if isinstance(base, PoissonRegressor) else "regression")
    X, y, tasks = make_tasks(kind, n_tasks=3, n_per_task=12, seed=23)
    if labels == "str":
        tasks = np.array(["north", "south", "east"])[tasks]
    meta = Meta(base, random_state=0, **kwargs).fit(X, y, tasks=tasks)
    restored = _skops_round_trip(meta)
    for a, b in zip(_outputs(meta, X, tasks), _outputs(restored, X, tasks)):
        assert_array_equal(a, b)
    assert_array_equal(restored.tasks_, meta.tasks_)
    assert_array_equal(restored.adapt(X[:6], y[:6]).coef_,
                       meta.adapt(X[:6], y[:6]).coef_)


def test_the_user_guide_lists_the_skops_types():
    guide = Path(__file__).resolve().parents[1] / "doc" / "user_guide.rst"
    if not guide.exists():
        pytest.skip(f"{guide} is not there (not a source checkout)")
    section = guide.read_text(encoding="utf-8").split("Saving a fitted model")[1]
    table = section.split("For example::")[0]
    # the rows of its table: "* - ``Model`` (base estimators)\n  - types"
    rows = table.split("   * - ``")[1:]
    assert len(rows) == len(SKOPS_TRUSTED)
    for model, trusted in SKOPS_TRUSTED.items():
        [row] = [row for row in rows if row.startswith(model + "``")]
        assert re.findall(r"``(skmeta\.[\w.]+)``", row) == trusted


def test_the_other_skmeta_models_load_with_their_own_class_alone():
    from skmeta import MetaEmbedding, MetaGaussianDensity
    from skmeta.preprocessing import TaskScaler

    X, y, tasks = make_tasks("binary", n_tasks=4, n_per_task=20, seed=3)
    density = MetaGaussianDensity().fit(X, tasks=tasks)
    for model in (MetaEmbedding(max_iter=5, random_state=0).fit(X, y, tasks=tasks),
                  TaskScaler().fit(X, tasks=tasks), density,
                  density.adapt(X[:10])):
        restored = _skops_round_trip(model)
        assert type(restored) is type(model)


# ==========================================================================
# 7. inputs are never modified
# ==========================================================================
def _non_canonical_csr(X):
    """A CSR matrix with unsorted indices and a duplicate entry."""
    A = sp.csr_matrix(X)
    rows, cols, vals = [], [], []
    for i in range(A.shape[0]):
        start, stop = A.indptr[i], A.indptr[i + 1]
        idx, v = A.indices[start:stop][::-1], A.data[start:stop][::-1]
        rows += [i] * len(idx)
        cols += list(idx)
        vals += list(v)
    # split the first stored value of row 0 into two duplicates
    cols.insert(0, cols[0])
    vals[0] /= 2
    vals.insert(0, vals[0])
    rows.insert(0, 0)
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=A.shape[0]))]
    M = sp.csr_matrix((np.array(vals), np.array(cols), indptr), shape=A.shape)
    assert not M.has_canonical_format
    assert_allclose(M.toarray(), X)
    return M


@pytest.mark.parametrize("container", ["dense", "csr", "frame"])
def test_inputs_are_not_modified(container, binary_data):
    X, y, tasks = binary_data
    X = X.copy()
    X[:, 2] = np.where(np.abs(X[:, 2]) < 0.5, 0.0, X[:, 2])  # some zeros
    if container == "csr":
        X = _non_canonical_csr(X)
    elif container == "frame":
        X = pd.DataFrame(X, columns=["a", "b", "c"])
    y = y.copy()
    tasks = tasks.copy()
    sw = np.linspace(0.5, 1.5, y.size)
    saved = snapshot((X, y, tasks, sw))
    meta = MetaClassifier(gamma=0.5).fit(X, y, tasks=tasks, sample_weight=sw)
    meta.predict_proba(X, tasks=tasks)
    meta.decision_function(X, tasks=tasks)
    meta.score(X, y, tasks=tasks, sample_weight=sw)
    meta.adapt_tasks(X, y, tasks=tasks, sample_weight=sw)
    meta.partial_fit(X, y, tasks=tasks, sample_weight=sw)
    for before, after in zip(saved, (X, y, tasks, sw)):
        assert_unchanged(before, after)


def test_task_column_inputs_are_not_modified(binary_data):
    X, y, tasks = binary_data
    frame, _ = _store_frame(X, tasks)
    arr = np.column_stack([tasks, X])
    csr = sp.csr_matrix(arr)
    for data, column in [(frame, "store"), (arr, 0), (csr, 0)]:
        saved = snapshot(data)
        meta = MetaClassifier(task_column=column).fit(data, y)
        meta.predict(data)
        meta.adapt_tasks(data, y)
        meta.partial_fit(data, y)
        assert_unchanged(saved, data)


def test_read_only_inputs(binary_data, regression_data):
    for Meta, (X, y, tasks) in [(MetaClassifier, binary_data),
                                (MetaRegressor, regression_data)]:
        X, y, tasks = X.copy(), y.copy(), tasks.copy()
        sw = np.ones(y.size)
        for a in (X, y, tasks, sw):
            a.setflags(write=False)
        meta = Meta().fit(X, y, tasks=tasks, sample_weight=sw)
        meta.predict(X, tasks=tasks)
        meta.adapt_tasks(X, y, tasks=tasks, sample_weight=sw)
        meta.partial_fit(X, y, tasks=tasks, sample_weight=sw)
        Xt = np.column_stack([tasks, X])
        Xt.setflags(write=False)
        Meta(task_column=0).fit(Xt, y).predict(Xt)


# ==========================================================================
# 8. sample weights
# ==========================================================================
@pytest.mark.parametrize("Meta, kind, base, prior", [
    (MetaClassifier, "binary", LogisticRegression(C=1.0), "isotropic"),
    (MetaClassifier, "binary", LogisticRegression(C=1.0), "diagonal"),
    (MetaRegressor, "regression", Ridge(alpha=1.0), "isotropic"),
    (MetaRegressor, "regression", Lasso(alpha=0.02), "isotropic"),
    (MetaRegressor, "poisson", PoissonRegressor(alpha=0.1), "isotropic"),
])
def test_integer_weights_equal_repeated_rows(Meta, kind, base, prior):
    X, y, tasks = make_tasks(kind, n_tasks=3, n_per_task=10, seed=20)
    rng = np.random.default_rng(21)
    w = rng.integers(1, 4, size=y.size)
    weighted = Meta(base, gamma=0.8, prior=prior, tol=1e-10).fit(
        X, y, tasks=tasks, sample_weight=w)
    rep = np.repeat(np.arange(y.size), w)
    repeated = Meta(base, gamma=0.8, prior=prior, tol=1e-10).fit(
        X[rep], y[rep], tasks=tasks[rep])
    assert_allclose(weighted.task_params_, repeated.task_params_, rtol=1e-5,
                    atol=1e-7)
    assert_allclose(weighted.meta_params_, repeated.meta_params_, rtol=1e-5,
                    atol=1e-7)


@pytest.mark.parametrize("Meta, kind", [(MetaClassifier, "binary"),
                                        (MetaRegressor, "regression")])
def test_zero_weight_equals_dropping_the_rows(Meta, kind):
    X, y, tasks = make_tasks(kind, n_tasks=3, n_per_task=10, seed=22)
    w = np.ones(y.size)
    w[[0, 5, 11]] = 0.0
    weighted = Meta(gamma=0.8, prior="isotropic", tol=1e-10).fit(
        X, y, tasks=tasks, sample_weight=w)
    keep = w > 0
    dropped = Meta(gamma=0.8, prior="isotropic", tol=1e-10).fit(
        X[keep], y[keep], tasks=tasks[keep])
    assert_array_equal(weighted.tasks_, dropped.tasks_)
    assert_allclose(weighted.task_params_, dropped.task_params_, rtol=1e-6,
                    atol=1e-8)
    # the structure of the prior is chosen on held-out weighted rows alike
    # (the candidates are fitted to the selection's tolerance, 1e-3)
    weighted = Meta().fit(X, y, tasks=tasks, sample_weight=w)
    dropped = Meta().fit(X[keep], y[keep], tasks=tasks[keep])
    assert weighted.prior_kind_ == dropped.prior_kind_
    assert weighted.prior_scores_ == pytest.approx(dropped.prior_scores_,
                                                   rel=1e-2)
    assert_array_equal(weighted.tasks_, dropped.tasks_)
    # to what the default tol leaves of a slowly converging empirical-Bayes
    # iteration, started from two selections' priors
    assert_allclose(weighted.task_params_, dropped.task_params_, rtol=1e-2,
                    atol=1e-3)
    assert_allclose(weighted.meta_params_, dropped.meta_params_, rtol=1e-2,
                    atol=1e-3)


@pytest.mark.parametrize("params", [dict(gamma=1.0, prior="isotropic"),
                                    dict(prior="isotropic"), {}])
def test_a_task_without_weight_is_absent(params):
    # every row of task 1 has weight 0: the fit is the one without it. Kept,
    # it entered the prior with a model none of its rows set: with a fixed
    # gamma it pulled the prior mean toward zero by 0.25; with a learned one
    # its stale first solution took the strength from 156 to 0.005, where
    # the fit stopped as converged
    rng = np.random.default_rng(1)
    tasks = np.repeat(np.arange(4), 10)
    X = rng.standard_normal((40, 3))
    y = X @ [1.0, -1.0, 2.0] + 0.3 * rng.standard_normal(40)
    w = (tasks != 1).astype(float)
    keep = w > 0
    weighted = MetaRegressor(Ridge(), **params).fit(X, y, tasks=tasks,
                                                    sample_weight=w)
    dropped = MetaRegressor(Ridge(), **params).fit(X[keep], y[keep],
                                                   tasks=tasks[keep])
    assert_array_equal(weighted.tasks_, [0, 2, 3])
    assert_allclose(weighted.meta_params_, dropped.meta_params_, rtol=1e-12)
    assert_allclose(weighted.task_params_, dropped.task_params_, rtol=1e-12)
    # its rows get the prior model, as any unseen task's
    assert_allclose(weighted.predict(X[tasks == 1], tasks=tasks[tasks == 1]),
                    dropped.meta_estimator_.predict(X[tasks == 1]))
    # and in a later chunk of partial_fit as well
    new = np.repeat([7, 8], 10)
    Xn = rng.standard_normal((20, 3))
    yn = Xn @ [1.0, -1.0, 2.0]
    wn = (new == 7).astype(float)
    weighted.partial_fit(Xn, yn, tasks=new, sample_weight=wn)
    dropped.partial_fit(Xn[:10], yn[:10], tasks=new[:10])
    assert_array_equal(weighted.tasks_, [0, 2, 3, 7])
    assert_allclose(weighted.meta_params_, dropped.meta_params_, rtol=1e-12)


def test_partial_fit_leaves_tasks_without_weight_out_whatever_the_method():
    # a chunk's task whose rows all have weight 0 neither enters tasks_ nor
    # refits a known task, also where the prior does not move online
    # (reptile: the chunk's tasks are fitted from the prior)
    rng = np.random.default_rng(1)
    tasks = np.repeat(np.arange(6), 10)
    X = rng.standard_normal((60, 3))
    y = X @ [1.0, -1.0, 2.0] + 0.3 * rng.standard_normal(60)
    meta = MetaRegressor(Ridge(), method="reptile", random_state=0).fit(
        X, y, tasks=tasks)
    before = meta.task_params_.copy()
    chunk = np.repeat([0, 7, 8], 10)
    Xn = rng.standard_normal((30, 3))
    yn = Xn @ [1.0, -1.0, 2.0]
    wn = (chunk == 7).astype(float)
    meta.partial_fit(Xn, yn, tasks=chunk, sample_weight=wn)
    assert_array_equal(meta.tasks_, [0, 1, 2, 3, 4, 5, 7])
    assert_array_equal(meta.task_params_[:6], before)


def test_classes_of_tasks_without_weight_are_still_classes():
    # as scikit-learn's classifiers count every row's class whatever its
    # weight: a class whose only rows are in a task without weight stays in
    # classes_ (the task itself is absent)
    X, y, tasks = make_tasks("binary", n_tasks=4, n_per_task=12, seed=30)
    y = np.where(tasks == 3, 2, y)
    w = (tasks != 3).astype(float)
    meta = MetaClassifier(gamma=1.0, prior="isotropic").fit(
        X, y, tasks=tasks, sample_weight=w)
    assert_array_equal(meta.classes_, [0, 1, 2])
    assert_array_equal(meta.tasks_, [0, 1, 2])
    assert meta.predict_proba(X[:3], tasks=tasks[:3]).shape == (3, 3)


def test_nested_tasks_without_weight_are_absent():
    X, y, tasks = make_nested_tasks(n_groups=3, n_tasks_per_group=3,
                                    n_samples_per_task=8, n_features=2,
                                    random_state=0)
    leaf = tasks[:, 1]
    w = (leaf != leaf[0]).astype(float)
    keep = w > 0
    weighted = MetaRegressor(Ridge(), prior="isotropic").fit(
        X, y, tasks=tasks, sample_weight=w)
    dropped = MetaRegressor(Ridge(), prior="isotropic").fit(
        X[keep], y[keep], tasks=tasks[keep])
    assert_array_equal(weighted.tasks_, dropped.tasks_)
    assert_allclose(weighted.task_params_, dropped.task_params_, rtol=1e-12)


def test_reptile_with_automatic_steps_ignores_rows_of_weight_zero():
    # the automatic inner step bounds a Poisson task's curvature by its
    # counts' mean: the weighted one, or rows of weight 0 (here with counts
    # of 50) changed the steps and the fit by up to 0.3
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(4), 12)
    X = rng.standard_normal((48, 3))
    y = rng.poisson(np.exp(0.3 * X @ np.array([1.0, -1.0, 0.5]))).astype(float)
    w = np.ones(48)
    w[::5] = 0.0
    keep = w > 0
    y_absent = np.where(keep, y, 50.0)
    params = dict(method="reptile", prior="isotropic", gamma=1.0,
                  inner_steps=5, random_state=0)
    dropped = MetaRegressor(PoissonRegressor(), **params).fit(
        X[keep], y[keep], tasks=tasks[keep])
    weighted = MetaRegressor(PoissonRegressor(), **params).fit(
        X, y_absent, tasks=tasks, sample_weight=w)
    assert_allclose(weighted.meta_params_, dropped.meta_params_, rtol=1e-10,
                    atol=1e-12)
    assert_allclose(weighted.task_params_, dropped.task_params_, rtol=1e-10,
                    atol=1e-12)


# ==========================================================================
# 9. parallelism is deterministic
# ==========================================================================
@pytest.fixture(scope="module")
def many_small_tasks():
    rng = np.random.default_rng(23)
    sizes = rng.integers(2, 7, size=300)
    X, y, tasks = make_tasks("binary", n_tasks=300, n_per_task=sizes,
                             n_features=3, seed=23)
    return X, y, tasks


@pytest.mark.parametrize("prior, gamma", [("isotropic", 1.0), ("full", "auto")])
def test_n_jobs_gives_bit_identical_results(prior, gamma, many_small_tasks):
    X, y, tasks = many_small_tasks
    # max_iter is capped: what is compared is the arithmetic of each
    # iteration, which must not depend on how tasks are spread over threads
    fits = []
    for n_jobs in (1, 2):
        meta = MetaClassifier(gamma=gamma, prior=prior, n_jobs=n_jobs,
                              max_iter=15)
        with quiet_convergence():
            fits.append(meta.fit(X, y, tasks=tasks))
    with joblib.parallel_backend("threading", n_jobs=2):
        meta = MetaClassifier(gamma=gamma, prior=prior, max_iter=15)
        with quiet_convergence():
            fits.append(meta.fit(X, y, tasks=tasks))
    first = fits[0]
    for other in fits[1:]:
        assert_array_equal(other.task_params_, first.task_params_)
        assert_array_equal(other.meta_params_, first.meta_params_)
        assert_array_equal(other.prior_precision_, first.prior_precision_)
        assert other.gamma_ == first.gamma_
        assert other.n_iter_ == first.n_iter_


# ==========================================================================
# 10. degenerate tasks
# ==========================================================================
def test_one_sample_task_and_single_class_task():
    X, y, tasks = make_tasks("binary", n_tasks=3, n_per_task=20, seed=24)
    rng = np.random.default_rng(24)
    # task 7: one sample; task 8: five samples, all of class 1
    X = np.vstack([X, rng.normal(size=(6, 3))])
    y = np.r_[y, 0, 1, 1, 1, 1, 1]
    tasks = np.r_[tasks, 7, 8, 8, 8, 8, 8]
    meta = MetaClassifier(gamma=1.0).fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(meta.task_params_))
    P = meta.predict_proba(X, tasks=tasks)
    prior = meta.meta_estimator_.predict_proba(X)
    # each degenerate task moved from the prior toward its own labels
    one, single = tasks == 7, tasks == 8
    assert P[one, 0] > prior[one, 0]
    assert np.all(P[single, 1] > prior[single, 1])
    # ... and is still the exact inner solution under the learned prior
    for rows in (one, single):
        expected = logistic_reference(X[rows], y[rows], 1.0, meta.gamma_,
                                      meta.transfer_center_, meta.prior_shape_)
        t = np.searchsorted(meta.tasks_, tasks[rows][0])
        assert_allclose(meta.task_params_[t], expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("Meta, kind, base, reference", [
    (MetaClassifier, "binary", LogisticRegression(C=1.0),
     lambda: LogisticRegression(C=1.0, tol=1e-10, max_iter=10000)),
    (MetaRegressor, "regression", Ridge(alpha=1.0), lambda: Ridge(alpha=1.0)),
])
def test_constant_features(Meta, kind, base, reference):
    # a constant column is collinear with the (unpenalized) intercept: its
    # weight is 0 at gamma=0, exactly as in the base estimator
    X, y, tasks = make_tasks(kind, n_tasks=3, n_per_task=15, seed=25)
    X = np.column_stack([X, np.full(X.shape[0], 3.0), np.zeros(X.shape[0])])
    meta = Meta(base, gamma=0.0).fit(X, y, tasks=tasks)
    for t in range(3):
        rows = task_rows(tasks, t)
        ref = reference().fit(X[rows], y[rows])
        assert_allclose(meta.task_params_[t], flat_params(ref), rtol=1e-4,
                        atol=1e-6)
    meta = Meta(base, gamma=1.0).fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(meta.task_params_))
    assert np.all(np.isfinite(meta.predict(X, tasks=tasks).astype(float)))


def test_separable_tasks_without_penalty_stay_finite():
    rng = np.random.default_rng(26)
    X = rng.normal(size=(40, 2))
    # single task, separable: the transfer term toward a source model is
    # the only penalty
    y = (X[:, 0] > 0).astype(int)
    source = LogisticRegression().fit(X[:20], y[:20])
    meta = MetaClassifier(LogisticRegression(C=np.inf), gamma=0.5,
                          prior="isotropic", prior_estimator=source).fit(X, y)
    expected = logistic_reference(X, y, np.inf, 0.5, flat_params(source),
                                  np.ones(3))
    assert_allclose(meta.task_params_[0], expected, rtol=1e-6, atol=1e-8)
    assert_array_equal(meta.predict(X), y)
    # several separable tasks that disagree (no common separator), so the
    # joint objective has a finite minimizer
    tasks = np.repeat([0, 1, 2, 3], 10)
    y = np.where(tasks % 2 == 0, X[:, 0] > 0, X[:, 0] < 0).astype(int)
    meta = MetaClassifier(LogisticRegression(C=np.inf), gamma=0.5,
                          prior="isotropic").fit(X, y, tasks=tasks)
    assert np.all(np.isfinite(meta.task_params_))
    assert np.all(np.abs(meta.task_params_) < 1e3)
    assert_array_equal(meta.predict(X, tasks=tasks), y)


def test_many_tiny_tasks():
    rng = np.random.default_rng(27)
    sizes = rng.integers(1, 6, size=5000)
    for kind, Meta in [("binary", MetaClassifier),
                       ("regression", MetaRegressor)]:
        X, y, tasks = make_tasks(kind, n_tasks=5000, n_per_task=sizes,
                                 n_features=2, seed=27)
        meta = Meta(gamma=1.0).fit(X, y, tasks=tasks)
        assert meta.task_params_.shape == (5000, 3)
        assert np.all(np.isfinite(meta.task_params_))
        pred = meta.predict(X, tasks=tasks)
        assert pred.shape == y.shape
        if kind == "binary":
            assert meta.score(X, y, tasks=tasks) > 0.6
            assert set(np.unique(pred)) <= {0, 1}
        else:
            # fitting each tiny task with the prior must beat the prior alone
            assert meta.score(X, y, tasks=tasks) > meta.meta_estimator_.score(
                X, y)
        unseen = meta.predict(X[:5], tasks=np.full(5, -1))
        assert_allclose(unseen.astype(float),
                        meta.meta_estimator_.predict(X[:5]).astype(float))
        # this many tasks takes the solver's large-problem path: it too must
        # not depend on the number of threads
        parallel = Meta(gamma=1.0, n_jobs=2).fit(X, y, tasks=tasks)
        assert_array_equal(parallel.task_params_, meta.task_params_)
        assert_array_equal(parallel.meta_params_, meta.meta_params_)


@pytest.mark.parametrize("Meta, kind", [(MetaClassifier, "multiclass"),
                                        (MetaRegressor, "regression")])
def test_float32_input_is_close_to_float64(Meta, kind):
    X, y, tasks = make_tasks(kind, n_tasks=4, n_per_task=12, seed=28)
    m64 = Meta(gamma=1.0).fit(X, y, tasks=tasks)
    X32 = X.astype(np.float32)
    m32 = Meta(gamma=1.0).fit(X32, y, tasks=tasks)
    assert_allclose(m32.task_params_, m64.task_params_, rtol=1e-3, atol=1e-4)
    assert_allclose(m32.meta_params_, m64.meta_params_, rtol=1e-3, atol=1e-4)
    if kind == "regression":
        assert_allclose(m32.predict(X32, tasks=tasks),
                        m64.predict(X, tasks=tasks), rtol=1e-3, atol=1e-3)
    else:
        assert_allclose(m32.predict_proba(X32, tasks=tasks),
                        m64.predict_proba(X, tasks=tasks), atol=1e-4)
    csr = sp.csr_matrix(X32)
    assert_allclose(Meta(gamma=1.0).fit(csr, y, tasks=tasks).task_params_,
                    m32.task_params_, rtol=1e-5, atol=1e-6)


def test_empirical_bayes_with_unscaled_features_does_not_crash():
    # 14 samples, 4 tasks, features in the thousands (unscaled data, as users
    # have it): gamma="auto" must give some finite fit, not a numerical error
    X, y, tasks = make_tasks("regression", n_tasks=4, n_per_task=[2, 3, 4, 5],
                             seed=1)
    with quiet_convergence():
        meta = MetaRegressor(Ridge(), gamma="auto").fit(1000.0 * X, y,
                                                        tasks=tasks)
    assert np.isfinite(meta.gamma_) and meta.gamma_ > 0
    assert np.all(np.isfinite(meta.task_params_))


def test_empirical_bayes_converges_on_a_small_problem():
    # three well-posed tasks: the learned diagonal prior must converge within
    # the default max_iter (ConvergenceWarning is an error in this module)
    X, y, tasks = make_tasks("multiclass", n_tasks=3, n_per_task=15, seed=19)
    meta = MetaClassifier(gamma="auto", prior="diagonal").fit(X, y, tasks=tasks)
    assert meta.n_iter_ < 300


# ==========================================================================
# 11. metadata routing
# ==========================================================================
FIXED_PRIOR = dict(gamma=1.0, prior="isotropic")  # routing, not the defaults


def test_cross_validate_routes_tasks():
    X, y, tasks = make_tasks("binary", n_tasks=6, n_per_task=15, seed=29)
    cv = GroupKFold(n_splits=3)
    with config_context(enable_metadata_routing=True):
        result = cross_validate(MetaClassifier(**FIXED_PRIOR), X, y, cv=cv,
                                params={"tasks": tasks, "groups": tasks},
                                return_estimator=True)
    # the same by hand: fit on the training tasks, score the held-out tasks
    # (unseen, hence the prior model)
    for k, (train, test) in enumerate(cv.split(X, y, groups=tasks)):
        fitted = MetaClassifier(**FIXED_PRIOR).fit(X[train], y[train],
                                                   tasks=tasks[train])
        assert_array_equal(result["estimator"][k].tasks_, fitted.tasks_)
        assert_allclose(result["estimator"][k].task_params_,
                        fitted.task_params_)
        assert result["test_score"][k] == pytest.approx(
            fitted.score(X[test], y[test], tasks=tasks[test]))


def test_pipeline_routes_tasks_to_fit_and_predict():
    X, y, tasks = make_tasks("binary", n_tasks=4, n_per_task=15, seed=30)
    X = 10.0 * X + 3.0
    scaler = StandardScaler().fit(X)
    direct = MetaClassifier().fit(scaler.transform(X), y, tasks=tasks)
    with config_context(enable_metadata_routing=True):
        pipe = Pipeline([("scale", StandardScaler()),
                         ("meta", MetaClassifier())])
        pipe.fit(X, y, tasks=tasks)
        assert_allclose(pipe[-1].task_params_, direct.task_params_)
        assert_array_equal(pipe.predict(X, tasks=tasks),
                           direct.predict(scaler.transform(X), tasks=tasks))
        assert_allclose(pipe.predict_proba(X, tasks=tasks),
                        direct.predict_proba(scaler.transform(X), tasks=tasks))
        assert_allclose(pipe.predict_log_proba(X, tasks=tasks),
                        direct.predict_log_proba(scaler.transform(X),
                                                 tasks=tasks))
        assert_allclose(pipe.decision_function(X, tasks=tasks),
                        direct.decision_function(scaler.transform(X),
                                                 tasks=tasks))
        assert pipe.score(X, y, tasks=tasks) == pytest.approx(
            direct.score(scaler.transform(X), y, tasks=tasks))


def test_tasks_is_requested_by_default():
    for meta, methods in [
        (MetaClassifier(), ["fit", "partial_fit", "predict", "predict_proba",
                            "predict_log_proba", "decision_function", "score"]),
        (MetaRegressor(), ["fit", "partial_fit", "predict", "score"]),
    ]:
        request = meta.get_metadata_routing()
        for method in methods:
            assert getattr(request, method).requests.get("tasks") is True, method


# ==========================================================================
# 12. verbosity
# ==========================================================================
@pytest.mark.parametrize("Meta, kind, kwargs", [
    (MetaClassifier, "binary", {"gamma": 1.0}),
    (MetaRegressor, "regression", {"gamma": "auto", "prior": "diagonal"}),
])
def test_verbose_prints_one_line_per_outer_iteration(Meta, kind, kwargs,
                                                     capsys):
    X, y, tasks = make_tasks(kind, n_tasks=5, n_per_task=10, seed=31)
    Meta(verbose=0, **kwargs).fit(X, y, tasks=tasks)
    assert capsys.readouterr().out == ""
    meta = Meta(verbose=1, **kwargs).fit(X, y, tasks=tasks)
    lines = capsys.readouterr().out.strip().splitlines()
    assert meta.n_iter_ >= 2
    assert len(lines) == meta.n_iter_
    assert all("iteration" in line for line in lines)


# ==========================================================================
# 13. fuzzing
# ==========================================================================
@st.composite
def small_multitask_problems(draw):
    n_tasks = draw(st.integers(1, 6))
    n_features = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_tasks,
                          max_size=n_tasks))
    n = sum(sizes)
    values = st.floats(-3, 3, allow_nan=False, width=64)
    X = np.array(draw(st.lists(values, min_size=n * n_features,
                               max_size=n * n_features))).reshape(n, n_features)
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    tasks = np.repeat(np.arange(n_tasks), sizes)
    order = draw(st.permutations(range(n)))
    gamma = draw(st.sampled_from([0.1, 1.0, 10.0]))
    return X[list(order)], y[list(order)], tasks[list(order)], gamma


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_multitask_problems())
def test_fuzz_small_multitask_inputs(problem):
    X, y, tasks, gamma = problem
    assume(len(np.unique(y)) == 2)
    saved = snapshot((X, y, tasks))
    with quiet_convergence():
        meta = MetaClassifier(gamma=gamma, max_iter=30).fit(X, y, tasks=tasks)
    for attr in ("task_params_", "meta_params_", "prior_precision_"):
        assert np.all(np.isfinite(getattr(meta, attr)))
    P = meta.predict_proba(X, tasks=tasks)
    assert_allclose(P.sum(axis=1), 1.0)
    assert np.all((P >= 0) & (P <= 1))
    assert set(meta.predict(X, tasks=tasks)) <= set(meta.classes_)
    assert_array_equal(meta.tasks_, np.unique(tasks))
    for before, after in zip(saved, (X, y, tasks)):
        assert_unchanged(before, after)


@st.composite
def small_regression_problems(draw):
    n_tasks = draw(st.integers(1, 6))
    n_features = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 8), min_size=n_tasks,
                          max_size=n_tasks))
    n = sum(sizes)
    values = st.floats(-3, 3, allow_nan=False, width=64)
    X = np.array(draw(st.lists(values, min_size=n * n_features,
                               max_size=n * n_features))).reshape(n, n_features)
    y = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    tasks = np.repeat(np.arange(n_tasks), sizes)
    alpha = draw(st.sampled_from([0.1, 1.0]))
    gamma = draw(st.sampled_from([0.1, 1.0, 10.0]))
    return X, y, tasks, alpha, gamma


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_regression_problems())
@example((np.eye(3), np.array([1.17e-160, 0.0, -1e-170]), np.array([0, 0, 1]),
          1.0, 1.0))
def test_fuzz_ridge_multitask_is_the_joint_minimizer(problem):
    X, y, tasks, alpha, gamma = problem
    meta = MetaRegressor(Ridge(alpha=alpha), gamma=gamma, prior="isotropic",
                         tol=1e-10)
    top = np.max(np.abs(y))
    if 0 < top < 1e-150:
        # targets whose squares underflow float64 (hypothesis draws values
        # such as 1e-160) are refused, saying to rescale them
        with pytest.raises(ValueError, match="underflow float64. Rescale y"):
            meta.fit(X, y, tasks=tasks)
        return
    meta.fit(X, y, tasks=tasks)
    thetas, theta0 = ridge_joint_reference(X, y, tasks, alpha, gamma)
    scale = 1.0 + np.max(np.abs(thetas))
    assert_allclose(meta.task_params_, thetas, atol=1e-6 * scale)
    assert_allclose(meta.meta_params_, theta0, atol=1e-6 * scale)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["int8", "int32", "int64", "uint8", "uint64"]).flatmap(
    lambda dtype: st.lists(
        st.integers(np.iinfo(dtype).min, np.iinfo(dtype).max), min_size=1,
        max_size=40).map(lambda values: np.array(values, dtype=dtype))))
def test_unique_labels_counting_path_matches_numpy(y):
    # integer labels in a small range are found by counting, others sorted
    from skmeta._estimators import _unique_labels

    labels = _unique_labels(y)
    expected = np.unique(y)
    assert labels.dtype == expected.dtype
    assert_array_equal(labels, expected)
    narrow = (y % 7).astype(y.dtype)
    assert_array_equal(_unique_labels(narrow), np.unique(narrow))


_INT_DTYPES = ["bool", "int8", "int16", "int64", "uint8", "uint32", "uint64"]


def _int_labels(dtype, max_size):
    info = (0, 1) if dtype == "bool" else (int(np.iinfo(dtype).min),
                                           int(np.iinfo(dtype).max))
    # values near the ends of the range are where dtypes disagree
    values = st.one_of(st.integers(*info),
                       st.sampled_from(sorted({info[0], info[1], 0, 1,
                                               max(info[0], -1)})))
    return st.lists(values, min_size=1, max_size=max_size).map(
        lambda v: np.array(v, dtype=dtype))


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.sampled_from(_INT_DTYPES),
                 st.sampled_from(_INT_DTYPES)).flatmap(
    lambda dtypes: st.tuples(_int_labels(dtypes[0], 8),
                             _int_labels(dtypes[1], 8))))
def test_fuzz_integer_task_labels_of_mixed_dtypes(labels):
    # tasks_ keeps its integer dtype; labels of another integer dtype are
    # compared by value, exactly, never through float64
    from skmeta._validation import add_tasks, encode_tasks, lookup_tasks

    fitted, new = labels
    known, _ = encode_tasks(fitted)
    known_values = {int(v) for v in known}
    params = np.arange(len(known), dtype=float)[:, None]
    codes = lookup_tasks(known, new)
    for value, code in zip(new.tolist(), codes):
        if int(value) in known_values:
            assert int(known[code]) == int(value)
        else:
            assert code == -1
    uniques, _ = encode_tasks(new)
    low, high = (0, 1) if known.dtype == bool else (
        int(np.iinfo(known.dtype).min), int(np.iinfo(known.dtype).max))
    storable = all(low <= int(v) <= high for v in uniques.tolist())
    if not storable:
        with pytest.raises(ValueError, match="cannot be stored"):
            add_tasks(known, params, uniques, -np.ones((len(uniques), 1)))
        return
    merged, table = add_tasks(known, params, uniques,
                              -np.ones((len(uniques), 1)))
    assert merged.dtype == known.dtype
    assert [int(v) for v in merged] == sorted(
        known_values | {int(v) for v in uniques})
    # new rows replace known ones; the others keep theirs
    added = {int(v) for v in uniques}
    fitted_order = [int(v) for v in known]
    for value, row in zip(merged.tolist(), table[:, 0]):
        expected = -1 if int(value) in added else fitted_order.index(int(value))
        assert row == expected


# ==========================================================================
# 14. settings of the base estimator and of prior_estimator
# ==========================================================================
def _redteam_data(Meta, base=None):
    """The red-team reproducer: 6 tasks of 20 rows, 4 features."""
    rng = np.random.RandomState(0)
    X = rng.randn(120, 4)
    tasks = np.repeat(np.arange(6), 20)
    z = X @ np.array([1.0, -0.5, 0.0, 0.3]) + 0.5 * rng.randn(120)
    if Meta is MetaClassifier:
        y = (z > 0).astype(np.int64)
    elif isinstance(base, PoissonRegressor):
        y = rng.poisson(np.exp(0.3 * z)).astype(np.float64)
    else:
        y = z
    return X, y, tasks


# settings every supported family's own fit refuses; the last item is the
# parameter the message must name
INVALID_BASE_SETTINGS = [
    (MetaClassifier, LogisticRegression(C=0), "C"),
    (MetaClassifier, LogisticRegression(C=-1.0), "C"),
    (MetaClassifier, LogisticRegression(C=np.nan), "C"),
    (MetaClassifier, LogisticRegression(l1_ratio=np.nan, solver="saga"),
     "l1_ratio"),
    (MetaClassifier, LogisticRegression(l1_ratio=2.0, solver="saga"),
     "l1_ratio"),
    (MetaClassifier, LogisticRegression(solver="liblinear", intercept_scaling=0),
     "intercept_scaling"),
    (MetaClassifier, LogisticRegression(class_weight="even"), "class_weight"),
    (MetaRegressor, Ridge(alpha=-3.0), "alpha"),
    (MetaRegressor, Ridge(alpha=np.nan), "alpha"),
    (MetaRegressor, LinearRegression(fit_intercept="yes"), "fit_intercept"),
    (MetaRegressor, Lasso(alpha=-1.0), "alpha"),
    (MetaRegressor, ElasticNet(alpha=0.1, l1_ratio=2.0), "l1_ratio"),
    (MetaRegressor, ElasticNet(alpha=np.inf), "alpha"),
    (MetaRegressor, PoissonRegressor(alpha=-1.0), "alpha"),
    (MetaRegressor, PoissonRegressor(alpha=np.nan), "alpha"),
]


@pytest.mark.parametrize("Meta, default", [(MetaClassifier, "LogisticRegression"),
                                            (MetaRegressor, "Ridge")])
def test_nested_parameters_of_the_default_estimator_say_what_to_do(Meta,
                                                                   default):
    # estimator=None has no parameters to set (as BaggingClassifier's
    # default): the AttributeError of a NoneType did not say why
    with pytest.raises(ValueError, match=rf"estimator={default}\(\) explicitly"):
        Meta().set_params(estimator__alpha=2.0)
    base = LogisticRegression() if Meta is MetaClassifier else Ridge()
    meta = Meta().set_params(estimator=base, estimator__tol=1e-3)
    assert meta.estimator is base and base.tol == 1e-3


def _setting_id(case):
    _, base, param = case
    return f"{type(base).__name__}-{param}={base.get_params()[param]}"


@pytest.mark.parametrize("Meta, base, param", INVALID_BASE_SETTINGS,
                         ids=[_setting_id(c) for c in INVALID_BASE_SETTINGS])
def test_invalid_base_estimator_settings_are_refused(Meta, base, param):
    X, y, tasks = _redteam_data(Meta, base)
    name = type(base).__name__
    # the reference: scikit-learn's own fit refuses the setting
    with pytest.raises(InvalidParameterError, match=f"'{param}' parameter of {name}"):
        clone(base).fit(X, y)
    message = f"The '{param}' parameter of {name} passed as estimator"
    with pytest.raises(InvalidParameterError, match=message):
        Meta(base).fit(X, y, tasks=tasks)
    with pytest.raises(InvalidParameterError, match=message):
        Meta(base).partial_fit(X, y, tasks=tasks)
    with pytest.raises(InvalidParameterError, match=message):
        Meta(base).fit(X, y)  # single task
    # a setting changed after fit reaches the next fit, which refuses it; the
    # fitted model keeps the base estimator it was fitted with (validated)
    bad = base.get_params()[param]
    good = clone(base).set_params(**{param: type(base)().get_params()[param]})
    meta = Meta(good).fit(X, y, tasks=tasks)
    expected = meta.adapt(X[:20], y[:20])
    meta.set_params(**{f"estimator__{param}": bad})
    assert_array_equal(flat_params(meta.adapt(X[:20], y[:20])),
                       flat_params(expected))
    meta.partial_fit(X[:20], y[:20], tasks=np.full(20, 99))
    assert_array_equal(meta.tasks_, [0, 1, 2, 3, 4, 5, 99])
    with pytest.raises(InvalidParameterError, match=message):
        meta.fit(X, y, tasks=tasks)


@pytest.mark.parametrize("Meta, base, param, requirement", [
    # scikit-learn accepts these, but 1/C, 1/intercept_scaling**2 overflow
    (MetaClassifier, LogisticRegression(C=1e-320), "C", "1/C is finite"),
    (MetaClassifier,
     LogisticRegression(solver="liblinear", intercept_scaling=1e-200),
     "intercept_scaling", "finite"),
    # a 0-d array passes the "array-like" constraint of Ridge's alpha
    (MetaRegressor, Ridge(alpha=np.array(-3.0)), "alpha", ">= 0"),
], ids=["tiny-C", "tiny-intercept_scaling", "0d-alpha"])
def test_settings_skmeta_cannot_solve_are_refused(Meta, base, param, requirement):
    X, y, tasks = _redteam_data(Meta, base)
    with pytest.raises(InvalidParameterError,
                       match=f"'{param}' parameter of .* passed as estimator "
                             f".*{requirement}"):
        Meta(base).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("Meta, base, param", [
    (MetaClassifier, LogisticRegression(C=0), "C"),
    (MetaClassifier, LogisticRegression(solver="liblinear", intercept_scaling=0),
     "intercept_scaling"),
    (MetaRegressor, Ridge(alpha=-3.0), "alpha"),
    (MetaRegressor, Lasso(alpha=np.nan), "alpha"),
    (MetaRegressor, ElasticNet(l1_ratio=-0.5), "l1_ratio"),
], ids=["C", "intercept_scaling", "ridge-alpha", "lasso-alpha", "l1_ratio"])
def test_skipped_validation_still_refuses_unsolvable_settings(Meta, base, param):
    # skip_parameter_validation switches off scikit-learn's constraints (for
    # the meta-estimator too) but never lets a NaN or a division by zero
    # reach the solvers
    X, y, tasks = _redteam_data(Meta, base)
    with (config_context(skip_parameter_validation=True),
          pytest.raises(InvalidParameterError, match=f"'{param}' parameter")):
        Meta(base).fit(X, y, tasks=tasks)


@pytest.mark.filterwarnings("ignore:One or more of the test scores:UserWarning")
def test_grid_search_reports_an_invalid_candidate_instead_of_scoring_it():
    X, y, tasks = _redteam_data(MetaRegressor)
    Xt = np.column_stack([tasks, X])
    search = GridSearchCV(MetaRegressor(task_column=0),
                          {"estimator": [Ridge(alpha=-3.0), Ridge(alpha=1.0)]},
                          cv=GroupKFold(n_splits=3), error_score="raise")
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of Ridge"):
        search.fit(Xt, y, groups=tasks)
    search.set_params(error_score=np.nan)
    with pytest.warns(FitFailedWarning):
        search.fit(Xt, y, groups=tasks)
    scores = search.cv_results_["mean_test_score"]
    assert np.isnan(scores[0]) and np.isfinite(scores[1])
    assert search.best_params_["estimator"].alpha == 1.0


PRIOR_FAMILIES = [
    (MetaClassifier, LogisticRegression(C=1.0), LogisticRegression(C=0.5)),
    (MetaRegressor, Ridge(alpha=1.0), Ridge(alpha=2.0)),
    (MetaRegressor, LinearRegression(), Ridge(alpha=2.0)),
    (MetaRegressor, Lasso(alpha=0.01), Ridge(alpha=2.0)),
    (MetaRegressor, ElasticNet(alpha=0.01), LinearRegression()),
    (MetaRegressor, PoissonRegressor(alpha=0.1), PoissonRegressor(alpha=0.5)),
]


@pytest.mark.parametrize("Meta, base, source", PRIOR_FAMILIES,
                         ids=[f"{type(b).__name__}-from-{type(s).__name__}"
                              for _, b, s in PRIOR_FAMILIES])
def test_prior_estimator_settings_and_family_are_checked(Meta, base, source):
    X, y, tasks = _redteam_data(Meta, base)
    source = clone(source).fit(X, y)
    # the reference: a valid source of the family gives theta0 exactly
    meta = Meta(base, prior_estimator=source).fit(X, y, tasks=tasks)
    assert_allclose(meta.meta_params_, flat_params(source))
    name = type(source).__name__
    bad = {"C": -1.0} if name == "LogisticRegression" else {"fit_intercept": 2}
    broken = copy.deepcopy(source).set_params(**bad)
    with pytest.raises(InvalidParameterError,
                       match=f"parameter of {name} passed as prior_estimator"):
        Meta(base, prior_estimator=broken).fit(X, y, tasks=tasks)
    nan_source = copy.deepcopy(source)
    nan_source.coef_ = np.full_like(nan_source.coef_, np.nan)
    with pytest.raises(ValueError, match="prior_estimator has NaN"):
        Meta(base, prior_estimator=nan_source).fit(X, y, tasks=tasks)
    # a model of another loss or link: its coefficients mean something else
    if Meta is MetaClassifier:
        other = SGDClassifier(loss="hinge", random_state=0).fit(X, y)
    elif isinstance(base, PoissonRegressor):
        other = Ridge().fit(X, y)
    else:
        other = PoissonRegressor().fit(X, np.abs(y))
    with pytest.raises(TypeError, match="prior_estimator must be a fitted"):
        Meta(base, prior_estimator=other).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("tol", [1e200, 1.0, -1e-3, np.nan])
def test_tol_outside_zero_one_is_refused(tol):
    # 1e200 used to overflow in tol**2; from 1 on, the starting prior mean
    # (zero) passed for converged after one iteration
    X, y, tasks = _redteam_data(MetaRegressor)
    with pytest.raises(InvalidParameterError,
                       match=r"'tol' parameter of MetaRegressor must be a float "
                             r"in the range \[0.0, 1.0\)"):
        MetaRegressor(tol=tol).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("tol", [0.1, 0.99])
def test_loose_tol_meets_its_documented_meaning(tol):
    # the ridge objective is quadratic in theta0: the first Newton step on it
    # is exact, and a loose tol stops after it, or before it when the
    # starting prior mean (zero) is within tol of the solution already
    X, y, tasks = _redteam_data(MetaRegressor)
    meta = MetaRegressor(Ridge(alpha=1.0), gamma=2.0, prior="isotropic",
                         tol=tol).fit(X, y, tasks=tasks)
    theta, theta0 = ridge_joint_reference(X, y, tasks, 1.0, 2.0)
    error = np.max(np.abs(meta.meta_params_ - theta0))
    assert error <= tol * max(1.0, np.max(np.abs(theta0)))
    if tol == 0.1:
        assert_allclose(meta.meta_params_, theta0, rtol=1e-8, atol=1e-10)
        assert_allclose(meta.task_params_, theta, rtol=1e-8, atol=1e-10)


# ==========================================================================
# API contract: keyword-only metadata, fitted state independent of later
# parameter changes, warnings for ignored parameters
# ==========================================================================
def test_tasks_and_sample_weight_are_keyword_only(binary_data):
    # meta.fit(X, y, w) used to take integer weights for task labels
    X, y, tasks = binary_data
    w = np.ones(len(y))
    meta = MetaClassifier()
    with pytest.raises(TypeError):
        meta.fit(X, y, tasks)
    meta.fit(X, y, tasks=tasks, sample_weight=w)
    for call in (lambda: meta.score(X, y, tasks),
                 lambda: meta.adapt(X[:8], y[:8], tasks[:8]),
                 lambda: meta.adapt_tasks(X, y, tasks),
                 lambda: meta.partial_fit(X, y, tasks),
                 lambda: meta.predict(X, tasks),
                 lambda: meta.predict_proba(X, tasks),
                 lambda: meta.decision_function(X, tasks)):
        with pytest.raises(TypeError):
            call()


@pytest.mark.parametrize("prior", ["isotropic", "diagonal", "full"])
def test_prior_precision_is_gamma_times_the_shape(prior, regression_data):
    X, y, tasks = regression_data
    meta = MetaRegressor(gamma="auto", prior=prior).fit(X, y, tasks=tasks)
    assert_allclose(meta.prior_precision_, meta.gamma_ * meta.prior_shape_,
                    rtol=1e-15)
    shape = meta.prior_shape_
    det = np.prod(shape) if shape.ndim == 1 else np.linalg.det(shape)
    # (beside Ridge's penalty a transfer term may be negative along some
    # directions: the shape's determinant is then -1)
    assert abs(det) == pytest.approx(1.0)
    # the transfer term of adapt() is that precision: the closed form
    Xn, yn, _ = make_tasks("regression", n_tasks=1, n_per_task=5, seed=3)
    expected = ridge_reference(Xn, yn, 1.0, 1.0, meta.transfer_center_,
                               meta.prior_precision_)
    assert_allclose(flat_params(meta.adapt(Xn, yn)), expected, rtol=1e-8)


def test_fitted_models_do_not_follow_later_parameter_changes(regression_data):
    X, y, tasks = regression_data
    meta = MetaRegressor(Ridge(alpha=2.0), gamma=1.0).fit(X, y, tasks=tasks)
    before = (meta.task_estimator(0).get_params(), flat_params(meta.adapt(X[:6],
                                                                           y[:6])))
    meta.set_params(estimator=Lasso(alpha=5.0), gamma=100.0)
    assert type(meta.estimator_) is Ridge and meta.estimator_.alpha == 2.0
    assert type(meta.task_estimator(0)) is Ridge
    assert meta.task_estimator(0).get_params() == before[0]
    assert type(meta.meta_estimator_) is Ridge
    assert_array_equal(flat_params(meta.adapt(X[:6], y[:6])), before[1])


@pytest.mark.parametrize("method, params, ignored", [
    ("proximal", dict(inner_steps=3), "inner_steps"),
    ("proximal", dict(meta_lr=0.1), "meta_lr"),
    ("imaml", dict(first_order=True), "first_order"),
    ("maml", dict(tol=1e-2), "tol"),
    ("reptile", dict(query_fraction=0.2), "query_fraction"),
    ("metasgd", dict(first_order=True), "first_order"),
])
def test_parameters_the_method_ignores_warn(method, params, ignored, binary_data):
    X, y, tasks = binary_data
    meta = MetaClassifier(method=method, max_iter=3, gamma=1.0,
                          prior="isotropic", **params)
    with pytest.warns(UserWarning, match=f"{ignored}=.*method='{method}'"):
        meta.fit(X, y, tasks=tasks)


@pytest.mark.parametrize("method", ["proximal", "imaml", "maml", "metasgd",
                                    "reptile"])
def test_parameters_the_method_reads_do_not_warn(method, binary_data):
    X, y, tasks = binary_data
    used = {"proximal": dict(tol=1e-3), "imaml": dict(meta_lr=0.02),
            "maml": dict(inner_steps=2, first_order=True),
            "metasgd": dict(inner_lr=0.1, query_fraction=0.3),
            "reptile": dict(inner_steps=2, meta_batch_size=2)}[method]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MetaClassifier(method=method, max_iter=3, random_state=0, gamma=1.0,
                       prior="isotropic", **used).fit(X, y, tasks=tasks)


def test_adapt_returns_one_estimator_and_adapt_tasks_a_dict(fitted_classifier):
    meta = fitted_classifier
    X, y, tasks = make_tasks("binary", n_tasks=2, n_per_task=6, seed=15)
    with pytest.raises(ValueError, match="adapt_tasks"):
        meta.adapt(X, y, tasks=tasks)
    one = meta.adapt(X[tasks == 0], y[tasks == 0], tasks=tasks[tasks == 0])
    assert type(one) is LogisticRegression
    models = meta.adapt_tasks(X, y, tasks=tasks)
    assert set(models) == {0, 1}
    assert_allclose(flat_params(models[0]), flat_params(one), rtol=1e-10)
    with pytest.raises(ValueError, match="task identities"):
        meta.adapt_tasks(X, y)


def test_refit_with_another_method_drops_stale_attributes(binary_data):
    X, y, tasks = binary_data
    meta = MetaClassifier(method="metasgd", max_iter=3, random_state=0,
                          gamma=1.0, prior="isotropic")
    assert hasattr(meta.fit(X, y, tasks=tasks), "inner_lr_")
    meta.set_params(method="proximal")
    assert not hasattr(meta.fit(X, y, tasks=tasks), "inner_lr_")


def test_a_refit_keeps_no_attribute_of_an_earlier_fit(binary_data):
    # attributes only some fits set (nested groups, unlabeled rows' class
    # means) survived a refit that did not set them: with unlabeled_weight
    # dropped, -1 still marked unlabeled rows in adapt
    X, y, tasks = binary_data
    nested = np.c_[tasks % 2, tasks]
    earlier = MetaClassifier(unlabeled_weight=1.0).fit(
        X, np.where(np.arange(len(y)) % 7 == 0, -1, y), tasks=tasks)
    assert hasattr(earlier, "class_means_")
    refitted = earlier.set_params(unlabeled_weight=None).fit(X, y, tasks=nested)
    fresh = MetaClassifier().fit(X, y, tasks=nested)
    assert set(vars(refitted)) == set(vars(fresh))
    with pytest.raises(ValueError, match=r"labels \[-1\] not seen"):
        refitted.adapt(X[:10], np.r_[-1, y[1:10]])
    flat = refitted.fit(X, y, tasks=tasks)
    assert set(vars(flat)) == set(vars(MetaClassifier().fit(X, y, tasks=tasks)))


@pytest.mark.parametrize("base", [Ridge(), PoissonRegressor()])
def test_score_is_the_base_estimators_own(base):
    # PoissonRegressor scores by D^2 (Poisson deviance explained), not R^2:
    # a search with the default scoring ranks as the base estimator would
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = rng.poisson(np.exp(X @ [0.3, -0.2, 0.1] + 1.0)).astype(float)
    weight = rng.uniform(0.5, 2.0, size=200)
    meta = MetaRegressor(base).fit(X, y)
    single = clone(base).fit(X, y)  # one task: the base estimator's own fit
    for sw in (None, weight):
        assert_allclose(meta.score(X, y, sample_weight=sw),
                        single.score(X, y, sample_weight=sw), rtol=1e-5)
    if isinstance(base, PoissonRegressor):
        # D^2 and R^2 differ here: the test tells them apart
        assert abs(single.score(X, y) - r2_score(y, single.predict(X))) > 1e-3


def test_feature_selectors_read_the_prior_means_coefficients():
    from sklearn.feature_selection import RFE, SelectFromModel

    X, y, tasks = make_meta_classification(
        n_tasks=10, n_samples_per_task=30, n_features=8, n_informative=2,
        n_redundant=0, random_state=0)
    selector = SelectFromModel(MetaClassifier(),
                               importance_getter="meta_estimator_.coef_")
    selector.fit(X, y, tasks=tasks)
    importance = np.abs(selector.estimator_.meta_estimator_.coef_).ravel()
    assert_array_equal(selector.get_support(), importance >= importance.mean())
    assert selector.transform(X).shape == (300, selector.get_support().sum())
    rfe = RFE(MetaClassifier(), n_features_to_select=2,
              importance_getter="meta_estimator_.coef_").fit(X, y, tasks=tasks)
    assert rfe.support_.sum() == 2
    assert rfe.estimator_.meta_estimator_.coef_.shape == (1, 2)
    assert rfe.transform(X).shape == (300, 2)


def test_poisson_score_of_constant_targets_follows_r2_scores_convention():
    # no deviance to explain: 1 for exact predictions, 0 otherwise (D^2 by
    # d2_tweedie_score divides by zero there)
    X = np.random.default_rng(0).normal(size=(30, 2))
    meta = MetaRegressor(PoissonRegressor()).fit(X, np.full(30, 3.0))
    family = meta._fitted_family()
    assert family.score(np.full(30, 3.0), np.full(30, 3.0)) == 1.0
    assert family.score(np.full(30, 3.0), np.full(30, 2.0)) == 0.0
    assert meta.score(X, np.zeros(30)) == 0.0
    with pytest.raises(ValueError, match="non-negative targets"):
        meta.score(X, np.full(30, -1.0))


def test_random_effects_with_a_gradient_method_is_refused_not_called_ignored(
        regression_data):
    # a warning said random_effects "is not used ... and is ignored", then
    # the fit refused it
    X, y, tasks = regression_data
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(ValueError, match="structured prior"):
            MetaRegressor(Ridge(), method="maml", random_effects=[0]).fit(
                X, y, tasks=tasks)


def test_a_refit_that_fails_leaves_no_model(binary_data):
    # it overwrote classes_ with the new data's, beside the old parameters:
    # predict raised IndexError, predict_proba gave columns for classes gone
    from sklearn.exceptions import NotFittedError

    X, y, tasks = binary_data
    meta = MetaClassifier().fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="1 class|one class"):
        meta.fit(X, np.zeros_like(y), tasks=tasks + 100)
    assert not hasattr(meta, "classes_") and not hasattr(meta, "tasks_")
    with pytest.raises(NotFittedError):
        meta.predict(X, tasks=tasks)
    # a set_fit_request survives (it is a setting, not a fitted attribute)
    assert meta.fit(X, y, tasks=tasks).classes_.tolist() == [0, 1]


@pytest.mark.parametrize("scale", [1e5, 1e-5])
def test_features_far_from_unit_scale_are_warned_of(scale):
    # the default classifier on features of spread 1e6 scored 7 times the
    # pooled model's held-out log-loss without a word; a fit without task
    # identities is the base estimator's own and learns no prior
    X, y, tasks = make_meta_classification(n_tasks=10, n_samples_per_task=20,
                                           n_features=4, random_state=0)
    X = X.copy()
    X[:, 2] *= scale
    with pytest.warns(UserWarning, match=r"features 2 \(.*\) have standard "
                      "deviations beyond 1000 times or below 1/1000"):
        MetaClassifier(gamma=1.0, prior="isotropic").fit(X, y, tasks=tasks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MetaClassifier().fit(X, y)
        MetaClassifier(gamma=1.0, prior="isotropic").fit(
            StandardScaler().fit_transform(X), y, tasks=tasks)
