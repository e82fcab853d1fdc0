"""With gamma = 0 and one task, skmeta fits what the base estimator fits.

This is the property that makes the transfer term an addition to the base
estimator's own objective rather than a different model: every supported
family and penalty, with and without intercept and sample weights, must land
on scikit-learn's own solution (fitted here with tight tolerances).
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MetaClassifier, MetaRegressor

RTOL = 1e-4
N_SAMPLES, N_FEATURES = 80, 4


def classification_data(n_classes, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    X[:, 1] += 0.5  # off-centre, so the intercept interacts with coefficients
    if n_classes == 2:
        z = X @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.3
        y = (z + rng.logistic(size=N_SAMPLES) > 0).astype(int)
    else:
        W = np.array([[1.0, 0.0, -0.5, 0.0], [0.0, 1.0, 0.5, 0.0],
                      [-0.5, 0.0, 0.0, 0.0]])
        y = np.argmax(X @ W.T + rng.gumbel(size=(N_SAMPLES, 3)), axis=1)
    # string labels: skmeta must map them to classes_ as scikit-learn does
    labels = np.array(["ant", "bee", "cat"])[:n_classes]
    return X, labels[y], rng.uniform(0.2, 2.0, N_SAMPLES)


def regression_data(poisson, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    X[:, 0] += 1.0
    beta = np.array([0.8, 0.0, -0.5, 0.05])
    if poisson:
        y = rng.poisson(np.exp(0.5 * X @ beta + 0.2)).astype(float)
    else:
        y = X @ beta + 1.5 + rng.normal(scale=0.5, size=N_SAMPLES)
    return X, y, rng.uniform(0.2, 2.0, N_SAMPLES)


def reference_fit(estimator, X, y, sample_weight):
    with warnings.catch_warnings():
        # a reference that did not converge would make the comparison moot
        warnings.simplefilter("error", ConvergenceWarning)
        return clone(estimator).fit(X, y, sample_weight=sample_weight)


def centred(coef):
    """Coefficients up to the multinomial's class-shift invariance."""
    coef = np.asarray(coef)
    return coef - coef.mean(axis=0, keepdims=True)


def assert_matches(meta, ref, X, *, shift_invariant=False):
    coef, intercept = meta.coef_[0], meta.intercept_[0]
    ref_coef = np.asarray(ref.coef_)
    ref_intercept = np.broadcast_to(ref.intercept_, np.shape(intercept))
    if shift_invariant:
        coef, ref_coef = centred(coef), centred(ref_coef)
        intercept, ref_intercept = centred(intercept), centred(ref_intercept)
    scale = max(1.0, np.abs(ref_coef).max())
    np.testing.assert_allclose(coef, ref_coef, rtol=RTOL, atol=RTOL * 1e-2 * scale)
    np.testing.assert_allclose(intercept, ref_intercept, rtol=RTOL,
                               atol=RTOL * 1e-2 * scale)
    # the plain estimator handed back behaves as scikit-learn's own fit
    task_model = meta.task_estimator()
    assert type(task_model) is type(ref)
    if hasattr(ref, "predict_proba"):
        np.testing.assert_array_equal(meta.predict(X), ref.predict(X))
        np.testing.assert_array_equal(task_model.predict(X), ref.predict(X))
        np.testing.assert_allclose(meta.predict_proba(X), ref.predict_proba(X),
                                   rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(task_model.predict_proba(X),
                                   ref.predict_proba(X), rtol=RTOL, atol=1e-7)
    else:
        for model in (meta, task_model):
            np.testing.assert_allclose(model.predict(X), ref.predict(X),
                                       rtol=RTOL, atol=1e-8)


# --------------------------------------------------------------------------
# LogisticRegression
# --------------------------------------------------------------------------
TIGHT = dict(tol=1e-12, max_iter=100_000)

LOGISTIC_CASES = {
    "l2": dict(C=0.5),
    "l1-saga": dict(C=2.0, l1_ratio=1.0, solver="saga"),
    "enet-saga": dict(C=2.0, l1_ratio=0.5, solver="saga"),
    "unpenalized": dict(C=np.inf),
    "balanced": dict(C=0.5, class_weight="balanced"),
    "dict-weights": dict(C=0.5, class_weight={"ant": 3.0, "bee": 0.5}),
    "l1-balanced": dict(C=2.0, l1_ratio=1.0, solver="saga",
                        class_weight="balanced"),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
@pytest.mark.parametrize("case", list(LOGISTIC_CASES))
@pytest.mark.parametrize("n_classes", [2, 3], ids=["binary", "multinomial"])
def test_logistic_regression(n_classes, case, fit_intercept, weighted):
    X, y, sw = classification_data(n_classes, seed=n_classes)
    sw = sw if weighted else None
    base = LogisticRegression(**LOGISTIC_CASES[case],
                              fit_intercept=fit_intercept, **TIGHT)
    ref = reference_fit(base, X, y, sw)
    meta = MetaClassifier(base, gamma=0.0).fit(X, y, sample_weight=sw)
    np.testing.assert_array_equal(meta.classes_, ref.classes_)
    assert meta.coef_[0].shape == ref.coef_.shape
    # without a penalty the multinomial parameters are only defined up to a
    # common shift across classes
    shift_invariant = n_classes > 2 and np.isinf(base.C)
    assert_matches(meta, ref, X, shift_invariant=shift_invariant)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("l1_ratio", [0.0, 1.0], ids=["l2", "l1"])
@pytest.mark.parametrize("intercept_scaling, fit_intercept",
                         [(1.0, True), (3.0, True), (1.0, False)],
                         ids=["scaling1", "scaling3", "noicpt"])
def test_logistic_regression_liblinear(intercept_scaling, fit_intercept,
                                       l1_ratio, weighted):
    # liblinear penalizes the intercept, through a constant feature equal to
    # intercept_scaling: a different objective that skmeta must reproduce
    X, y, sw = classification_data(2, seed=5)
    sw = sw if weighted else None
    # liblinear's coordinate order is random: a seed keeps its reference
    # from missing convergence on an unlucky draw of the global generator
    base = LogisticRegression(C=0.1, l1_ratio=l1_ratio, solver="liblinear",
                              intercept_scaling=intercept_scaling,
                              fit_intercept=fit_intercept, random_state=0,
                              **TIGHT)
    ref = reference_fit(base, X, y, sw)
    meta = MetaClassifier(base, gamma=0.0).fit(X, y, sample_weight=sw)
    assert_matches(meta, ref, X)
    if fit_intercept:
        # the penalty on the intercept is what tells liblinear apart
        free = reference_fit(LogisticRegression(C=0.1, l1_ratio=l1_ratio,
                                                solver="saga", **TIGHT),
                             X, y, sw)
        assert abs(free.intercept_[0] - ref.intercept_[0]) > 1e-3


def test_liblinear_with_three_classes_is_refused_as_by_the_base_estimator():
    # liblinear fits one-vs-rest models; a multinomial in their place would
    # not be the base estimator's fit (scikit-learn refuses it as well)
    X, y, _ = classification_data(3, seed=5)
    base = LogisticRegression(solver="liblinear")
    with pytest.raises(ValueError, match="liblinear"):
        base.fit(X, y)
    tasks = np.arange(len(y)) % 3
    for fit_tasks in (None, tasks):
        with pytest.raises(ValueError, match="'liblinear' solver .* does not "
                                             "support multiclass classification "
                                             "\\(3 classes\\)"):
            MetaClassifier(base).fit(X, y, tasks=fit_tasks)


@pytest.mark.parametrize("params, match", [
    (dict(l1_ratio=0.5), "must be 'saga' with an elastic-net penalty"),
    (dict(l1_ratio=0.5, solver="liblinear"), "must be 'saga'"),
    (dict(l1_ratio=1.0, solver="newton-cholesky"),
     "must be 'liblinear' or 'saga' with an l1 penalty"),
    (dict(C=np.inf, solver="liblinear"), "must not be 'liblinear' without"),
    # the older spelling: an explicit penalty holds even at C=inf
    (dict(C=np.inf, penalty="l1"), "must be 'liblinear' or 'saga'"),
])
def test_solver_and_penalty_pairs_the_base_estimator_refuses(params, match):
    # they were fitted with skmeta's own solvers, and the models handed out
    # (adapt, task_estimator) could not be refitted by scikit-learn
    X, y, _ = classification_data(2, seed=5)
    base = LogisticRegression(**params)
    with pytest.raises(ValueError):
        clone(base).fit(X, y)
    with pytest.raises(InvalidParameterError, match=match):
        MetaClassifier(base).fit(X, y, tasks=np.arange(len(y)) % 3)


def test_balanced_class_weights_leave_rows_of_weight_zero_absent():
    # a class whose rows in a task all weigh 0 counted as present in it, and
    # scaled the task's other rows by 2/3 (0.04-0.09 in probabilities)
    X, y, _ = classification_data(3, seed=5)
    tasks = np.arange(len(y)) % 3
    sw = np.where((tasks == 0) & (y == np.unique(y)[2]), 0.0, 1.0)
    keep = sw > 0
    assert not keep.all()
    base = LogisticRegression(class_weight="balanced")
    for params in (dict(gamma=0.0), dict(gamma=1.0, prior="isotropic")):
        weighted = MetaClassifier(base, **params).fit(X, y, tasks=tasks,
                                                      sample_weight=sw)
        dropped = MetaClassifier(base, **params).fit(X[keep], y[keep],
                                                     tasks=tasks[keep])
        np.testing.assert_allclose(weighted.predict_proba(X, tasks=tasks),
                                   dropped.predict_proba(X, tasks=tasks),
                                   atol=1e-8)


def test_multinomial_unpenalized_predictions_match():
    X, y, sw = classification_data(3, seed=8)
    base = LogisticRegression(C=np.inf, **TIGHT)
    ref = reference_fit(base, X, y, sw)
    meta = MetaClassifier(base, gamma=0.0).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(meta.predict_proba(X), ref.predict_proba(X),
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(meta.predict_log_proba(X),
                               ref.predict_log_proba(X), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(centred(meta.coef_[0]), centred(ref.coef_),
                               rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(centred(meta.intercept_[0]),
                               centred(ref.intercept_), rtol=RTOL, atol=1e-7)


# --------------------------------------------------------------------------
# regressors
# --------------------------------------------------------------------------
REGRESSORS = {
    "ridge-0.1": Ridge(alpha=0.1, tol=1e-12),
    "ridge-10": Ridge(alpha=10.0, tol=1e-12),
    "linear": LinearRegression(),
    "lasso": Lasso(alpha=0.05, **TIGHT),
    "enet-0.2": ElasticNet(alpha=0.1, l1_ratio=0.2, **TIGHT),
    "enet-0.8": ElasticNet(alpha=0.1, l1_ratio=0.8, **TIGHT),
    "poisson-0": PoissonRegressor(alpha=0.0, solver="newton-cholesky", **TIGHT),
    "poisson-1": PoissonRegressor(alpha=1.0, solver="newton-cholesky", **TIGHT),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
@pytest.mark.parametrize("name", list(REGRESSORS))
def test_regressor(name, fit_intercept, weighted):
    base = clone(REGRESSORS[name]).set_params(fit_intercept=fit_intercept)
    X, y, sw = regression_data(name.startswith("poisson"), seed=len(name))
    sw = sw if weighted else None
    ref = reference_fit(base, X, y, sw)
    meta = MetaRegressor(base, gamma=0.0).fit(X, y, sample_weight=sw)
    assert meta.coef_[0].shape == ref.coef_.shape
    assert_matches(meta, ref, X.copy())
    if name.startswith(("lasso", "enet")):
        # the l1 part must zero out exactly the coordinates scikit-learn does
        np.testing.assert_array_equal(meta.coef_[0] == 0, ref.coef_ == 0)


def assert_predictions_close(meta, ref, X):
    # float round-off can flip a predicted class exactly on the boundary only,
    # so regressors compare values and classifiers probabilities
    if hasattr(ref, "predict_proba"):
        np.testing.assert_allclose(meta.predict_proba(X), ref.predict_proba(X),
                                   rtol=RTOL, atol=1e-8)
    else:
        np.testing.assert_allclose(meta.predict(X), ref.predict(X), rtol=RTOL,
                                   atol=1e-8)


# --------------------------------------------------------------------------
# adapt and prior_estimator
# --------------------------------------------------------------------------
@pytest.mark.parametrize("base, classifier", [
    (LogisticRegression(C=2.0, l1_ratio=1.0, solver="saga", **TIGHT), True),
    (LogisticRegression(C=1.0, **TIGHT), True),
    (Lasso(alpha=0.05, **TIGHT), False),
    (PoissonRegressor(alpha=0.5, solver="newton-cholesky", **TIGHT), False),
], ids=["logistic-l1", "logistic-multinomial", "lasso", "poisson"])
def test_adapt_without_transfer_is_the_base_estimator(base, classifier):
    if classifier:
        n_classes = 2 if base.l1_ratio else 3
        X, y, sw = classification_data(n_classes, seed=20)
        X_new, y_new, sw_new = classification_data(n_classes, seed=21)
    else:
        poisson = isinstance(base, PoissonRegressor)
        X, y, sw = regression_data(poisson, seed=20)
        X_new, y_new, sw_new = regression_data(poisson, seed=21)
        # a task unlike the training one: adapt must not lean on it
        y_new = y_new * 2.0
    Meta = MetaClassifier if classifier else MetaRegressor
    # tasks fitted, and a prior mean learned, but gamma = 0 ignores it
    tasks = np.arange(len(y)) % 3
    meta = Meta(base, gamma=0.0).fit(X, y, tasks=tasks, sample_weight=sw)
    for model in (meta, Meta(base, gamma=0.0).fit(X, y, sample_weight=sw)):
        adapted = model.adapt(X_new, y_new, sample_weight=sw_new)
        ref = reference_fit(base, X_new, y_new, sw_new)
        assert type(adapted) is type(ref)
        scale = max(1.0, np.abs(ref.coef_).max())
        np.testing.assert_allclose(adapted.coef_, ref.coef_, rtol=RTOL,
                                   atol=RTOL * 1e-2 * scale)
        np.testing.assert_allclose(adapted.intercept_, ref.intercept_,
                                   rtol=RTOL, atol=RTOL * 1e-2 * scale)
        assert_predictions_close(adapted, ref, X_new)


@pytest.mark.parametrize("base", [
    Ridge(alpha=1.0),
    LogisticRegression(C=1.0, **TIGHT),
    ElasticNet(alpha=0.1, l1_ratio=0.5, **TIGHT),
], ids=["ridge", "logistic", "enet"])
def test_prior_estimator_pins_or_is_ignored(base):
    classifier = isinstance(base, LogisticRegression)
    if classifier:
        X_src, y_src, _ = classification_data(3, seed=30)
        X, y, sw = classification_data(3, seed=31)
        # a source model with different coefficients from the target data's
        y_src = y_src[::-1]
    else:
        X_src, y_src, _ = regression_data(False, seed=30)
        X, y, sw = regression_data(False, seed=31)
        y_src = -y_src
    Meta = MetaClassifier if classifier else MetaRegressor
    source = reference_fit(base, X_src, y_src, None)
    own = reference_fit(base, X, y, sw)
    assert np.abs(source.coef_ - own.coef_).max() > 0.1

    pinned = Meta(base, gamma=1e9, prior_estimator=source).fit(
        X, y, sample_weight=sw)
    np.testing.assert_allclose(pinned.coef_[0], source.coef_, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(pinned.intercept_[0],
                               np.broadcast_to(source.intercept_,
                                               np.shape(pinned.intercept_[0])),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pinned.meta_params_[:N_FEATURES],
                               np.ravel(source.coef_)[:N_FEATURES])

    ignored = Meta(base, gamma=0.0, prior_estimator=source).fit(
        X, y, sample_weight=sw)
    scale = max(1.0, np.abs(own.coef_).max())
    np.testing.assert_allclose(ignored.coef_[0], own.coef_, rtol=RTOL,
                               atol=RTOL * 1e-2 * scale)
    np.testing.assert_allclose(ignored.intercept_[0],
                               np.broadcast_to(own.intercept_,
                                               np.shape(ignored.intercept_[0])),
                               rtol=RTOL, atol=RTOL * 1e-2 * scale)


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
def test_prior_estimator_ridge_closed_form(fit_intercept):
    # in between, Ridge plus the transfer term is still least squares:
    # (Xt' W Xt + alpha D + gamma I) theta = Xt' W y + gamma theta_src, with
    # the intercept pulled toward the source's but not penalized by alpha
    X_src, y_src, _ = regression_data(False, seed=40)
    X, y, sw = regression_data(False, seed=41)
    alpha, gamma = 2.0, 7.0
    base = Ridge(alpha=alpha, fit_intercept=fit_intercept)
    source = reference_fit(base, X_src, 3.0 - y_src, None)
    meta = MetaRegressor(base, gamma=gamma, prior_estimator=source).fit(
        X, y, sample_weight=sw)
    Xt, theta_src, D = X, source.coef_, np.ones(N_FEATURES)
    if fit_intercept:
        Xt = np.hstack([X, np.ones((N_SAMPLES, 1))])
        theta_src = np.append(source.coef_, source.intercept_)
        D = np.append(D, 0.0)
    A = Xt.T @ (sw[:, None] * Xt) + alpha * np.diag(D) + gamma * np.eye(len(D))
    theta = np.linalg.solve(A, Xt.T @ (sw * y) + gamma * theta_src)
    np.testing.assert_allclose(meta.coef_[0], theta[:N_FEATURES], rtol=1e-9)
    np.testing.assert_allclose(meta.intercept_[0],
                               theta[-1] if fit_intercept else 0.0, rtol=1e-9,
                               atol=1e-12)


# --------------------------------------------------------------------------
# rank-deficient least squares: the minimizer is not unique, and
# LinearRegression's own choice (minimum-norm coefficients of the centred
# problem) is what gamma = 0 must reproduce
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
def test_linear_regression_collinear_features(fit_intercept, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 3))
    X = np.hstack([X, X[:, :1]])
    y = 2 * X[:, 0] + X[:, 1] + 1 + rng.normal(scale=0.1, size=30)
    base = LinearRegression(fit_intercept=fit_intercept)
    ref = reference_fit(base, X, y, None)
    meta = MetaRegressor(base, gamma=0.0).fit(X, y)
    np.testing.assert_allclose(meta.coef_[0], ref.coef_, rtol=RTOL)
    np.testing.assert_allclose(meta.intercept_[0], ref.intercept_, rtol=RTOL)


@pytest.mark.parametrize("n_samples", [1, 5])
def test_linear_regression_fewer_samples_than_features(n_samples):
    rng = np.random.default_rng(n_samples)
    X = rng.normal(size=(n_samples, 8))
    y = rng.normal(size=n_samples) + 3.0
    ref = reference_fit(LinearRegression(), X, y, None)
    meta = MetaRegressor(LinearRegression(), gamma=0.0).fit(X, y)
    X_new = rng.normal(size=(10, 8))
    np.testing.assert_allclose(meta.predict(X_new), ref.predict(X_new),
                               rtol=RTOL, atol=1e-5)
    # the minimum-norm tie-break holds to round-off over the jitter
    np.testing.assert_allclose(meta.coef_[0], ref.coef_, rtol=RTOL, atol=1e-5)


def test_ridge_with_an_array_of_one_alpha_is_ridge():
    # Ridge fits a 1-D target with alpha=[a] as with alpha=a; it was refused
    # as "one alpha per target"
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_normal(40)
    ref = Ridge(alpha=np.array([2.0])).fit(X, y)
    for alpha in (np.array([2.0]), [2.0]):
        meta = MetaRegressor(Ridge(alpha=alpha), gamma=0.0).fit(X, y)
        np.testing.assert_allclose(meta.predict(X), ref.predict(X), rtol=1e-10)
    with pytest.raises(ValueError, match="one alpha per target"):
        MetaRegressor(Ridge(alpha=[1.0, 2.0])).fit(X, y)


@pytest.mark.parametrize("base", [LinearRegression(), Lasso(alpha=0.1)])
def test_targets_whose_squares_leave_float64_are_refused(base):
    # a bare FloatingPointError (overflow in square) beyond 1e154, and
    # standard deviations 1e46 times too large below 1e-154
    rng = np.random.default_rng(18)
    X = rng.standard_normal((30, 3))
    y = X @ [1.0, 2.0, 3.0] + 0.5 * rng.standard_normal(30) + 2.0
    with pytest.raises(ValueError, match="squared errors summed over its "
                       "rows.*overflow float64. Rescale y"):
        MetaRegressor(base).fit(X, y * 1e160)
    with pytest.raises(ValueError, match="underflow float64. Rescale y"):
        MetaRegressor(base).fit(X, y * 1e-200)
    # within range, an unpenalized fit follows the units (Lasso's alpha is
    # in y's units)
    small, large = (MetaRegressor(LinearRegression()).fit(X, y * c)
                    for c in (1e-140, 1e140))
    np.testing.assert_allclose(small.predict(X) / 1e-140, large.predict(X) / 1e140,
                               rtol=1e-8)


def _scaled_near_collinear_task(rng, n_rows, n_classes=3):
    """Features 1e-4 to 1e4 in scale, one of them 1e-8 from collinear, and
    a class of two rows."""
    X = rng.standard_normal((n_rows, 8))
    X[:, 2] = X[:, 0] - 0.5 * X[:, 1] + 1e-8 * rng.standard_normal(n_rows)
    scales = np.logspace(-4, 4, 8)
    rng.shuffle(scales)
    X *= scales
    y = rng.integers(0, n_classes - 1, n_rows)
    y[:n_classes - 1] = np.arange(n_classes - 1)
    y[-2:] = n_classes - 1
    X[y == n_classes - 1] += X.std(axis=0)
    return X, y


@pytest.mark.parametrize("base", [LogisticRegression(),
                                  LogisticRegression(C=1e6, fit_intercept=False)])
def test_penalized_fits_of_features_of_very_different_scales_reach_the_optimum(
        base):
    # a definite (penalized) Hessian of such features failed the singular
    # case's pivot test, and jitter the size of its mean diagonal swamped the
    # small features' curvature: the fits stopped 3.4e-4 (C=1) and 32%
    # (C=1e6) above the optimum scikit-learn's Newton solver reaches
    rng = np.random.default_rng(5)
    for _ in range(3):  # the third of such tasks drawn
        X, y = _scaled_near_collinear_task(rng, 36)

    def objective(model):
        proba = model.predict_proba(X)[np.arange(len(y)), y]
        return -np.log(proba).sum() + (model.coef_ ** 2).sum() / (2 * base.C)

    reference = clone(base).set_params(solver="newton-cholesky", tol=1e-12,
                                       max_iter=1000).fit(X, y)
    meta = MetaClassifier(base).fit(X, y)
    assert objective(meta.task_estimator()) <= objective(reference) * (1 + 1e-9)


def _near_collinear_regression_tasks(rng, sizes, scaled):
    """Tasks of 6 features, the third 1e-8 from the span of the first two,
    optionally 1e-4 to 1e4 in scale."""
    X = rng.standard_normal((sum(sizes), 6))
    X[:, 2] = X[:, 0] - 0.5 * X[:, 1] + 1e-8 * rng.standard_normal(len(X))
    if scaled:
        X *= np.logspace(-4, 4, 6)[rng.permutation(6)]
    y = (X / X.std(axis=0)) @ rng.standard_normal(6) + 3.0 + rng.standard_normal(
        len(X))
    tasks = np.repeat(np.arange(len(sizes)), sizes)
    return X, y, tasks


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("base, scaled", [
    (LinearRegression(), False), (LinearRegression(), True),
    (LinearRegression(fit_intercept=False), False),
    (LinearRegression(fit_intercept=False), True),
    # (a cut-off at rounding level on scaled columns: which directions are
    # kept is rounding's choice)
    (LinearRegression(tol=1e-15), False)],
    ids=["default-unit", "default-scaled", "noicpt-unit", "noicpt-scaled",
         "tight-unit"])
def test_ordinary_least_squares_is_linear_regressions_own_fit(base, scaled,
                                                              layout):
    # the normal equations square the condition number: a column 1e-8 from
    # collinear lost its direction in the Newton solve, or jitter the size of
    # the large columns' curvature swamped the small ones', and the models had
    # up to 67 times LinearRegression's squared error, silently. Each task,
    # and a fit without tasks, is now LinearRegression's own lstsq (its tol
    # the cut-off of singular values) on the weighted, centred rows
    rng = np.random.default_rng(3)
    sizes = [30, 15, 8, 60]
    X, y, tasks = _near_collinear_regression_tasks(rng, sizes, scaled)
    sw = rng.uniform(0.5, 2.0, len(y))
    X_in = sp.csr_matrix(X) if layout == "csr" else X
    meta = MetaRegressor(base, gamma=0.0).fit(X_in, y, tasks=tasks,
                                              sample_weight=sw)
    # with tol=1e-15 the direction 1e-8 from collinear is kept, and the
    # models along it are determined only to the rounding of the centred rows
    # (two lstsq's differ there): the squared error is what is compared
    resolved = base.tol < 1e-8

    def squared_error(model, rows):
        return np.sum(sw[rows] * (model.predict(X[rows]) - y[rows]) ** 2)

    for t in range(len(sizes)):
        rows = tasks == t
        ref = reference_fit(base, X[rows], y[rows], sw[rows])
        model = meta.task_estimator(t)
        assert squared_error(model, rows) <= squared_error(ref, rows) * (1 + 1e-6)
        if not resolved:
            np.testing.assert_allclose(model.predict(X[rows]),
                                       ref.predict(X[rows]), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-6,
                                       atol=1e-9 * np.abs(ref.coef_).max())
    # without tasks: the base estimator's own fit
    rows = tasks == 2
    single = MetaRegressor(base).fit(X_in[np.flatnonzero(rows)], y[rows],
                                     sample_weight=sw[rows])
    ref = reference_fit(base, X[rows], y[rows], sw[rows])
    assert squared_error(single.task_estimator(), rows) <= squared_error(
        ref, rows) * (1 + 1e-6)
    if not resolved:
        np.testing.assert_allclose(single.predict(X[rows]), ref.predict(X[rows]),
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("tol", [0.0, 1.0, 5.0])
def test_ordinary_least_squares_cut_off_is_lapacks(tol):
    # LAPACK's gelsd, under LinearRegression's lstsq, takes a cut-off of 0 or
    # of at least 1 as the rounding level; taken as given, tol >= 1 zeroed
    # every coefficient and tol=0 gave coefficients of 2e15 on a duplicated
    # column where LinearRegression gives the minimum-norm ones
    rng = np.random.default_rng(8)
    X = rng.standard_normal((40, 3))
    X = np.c_[X, X[:, 0]]
    y = X[:, :3] @ [1.0, 2.0, -1.0] + 0.5 + 0.3 * rng.standard_normal(40)
    base = LinearRegression(tol=tol)
    meta = MetaRegressor(base).fit(X, y)
    ref = reference_fit(base, X, y, None)
    np.testing.assert_allclose(meta.coef_[0], ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(meta.predict(X), ref.predict(X), rtol=1e-10)


def test_new_tasks_without_transfer_are_fitted_as_linear_regression():
    # a task's solve started from the prior mean (adapt, partial_fit) kept
    # that start where the Newton kernels barely moved it relative to its
    # size: with targets around 1e9 a new task's own slope, 0.5 from the
    # prior's, was ignored (squared error 1,300 times LinearRegression's)
    rng = np.random.default_rng(9)
    X = rng.standard_normal((120, 3))
    tasks = np.repeat(np.arange(6), 20)
    y = 1e9 + X @ [1.0, 2.0, 3.0] + 0.1 * rng.standard_normal(120)
    meta = MetaRegressor(LinearRegression(), gamma=0.0).fit(X, y, tasks=tasks)
    Xn = rng.standard_normal((15, 3))
    yn = 1e9 + Xn @ [1.5, 2.0, 3.0] + 0.1 * rng.standard_normal(15)
    ref = LinearRegression().fit(Xn, yn)
    adapted = meta.adapt(Xn, yn)
    np.testing.assert_allclose(adapted.coef_, ref.coef_, rtol=1e-6)
    meta.partial_fit(Xn, yn, tasks=np.full(15, 99))
    np.testing.assert_allclose(meta.task_estimator(99).coef_, ref.coef_, rtol=1e-6)
