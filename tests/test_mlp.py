"""Networks as base estimators: kernels, meta-gradients, estimators, bad input.

References: scikit-learn's own forward pass, back-propagation
(``MLPRegressor._backprop``) and initialization (``_initialize``), and
central finite differences of the meta-objective the kernels report.
"""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.estimator_checks import parametrize_with_checks

import skmeta._kernels._workspaces as workspaces_module
from skmeta import MetaClassifier, MetaRegressor
from skmeta._families import family_for
from skmeta._kernels._calls import Unroller
from skmeta._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from skmeta._kernels._layers import IDENTITY, RELU, SIGMOID, TANH
from skmeta._kernels._layout import make_batch
from skmeta._kernels._network import NetworkProblem
from skmeta._kernels._network_calls import NetworkImplicit
from skmeta._kernels._unroll import FIRST_ORDER, FORWARD, SECOND_ORDER
from skmeta.datasets import make_meta_classification, make_sine_tasks

CODES = [SQUARED, LOGISTIC, MULTINOMIAL, POISSON]
ACTIVATIONS = [IDENTITY, SIGMOID, TANH, RELU]
T, N, P = 4, 12, 3
N_QUERY = np.array([4, 5, 6, 3])


def make_tasks(code, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T * N, P))
    if code == SQUARED:
        y = rng.normal(size=T * N)
    elif code == LOGISTIC:
        y = rng.integers(0, 2, T * N).astype(float)
    elif code == MULTINOMIAL:
        y = rng.integers(0, 3, T * N).astype(float)
    else:
        y = rng.poisson(1.0, T * N).astype(float)
    sw = rng.uniform(0.5, 1.5, T * N)
    batch, _ = make_batch(X, y, sw, np.repeat(np.arange(T), N), T)
    return batch, rng


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def central_difference(f, x, h=1e-6):
    out = np.zeros_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        out[j] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def network_start(code, activation, anil, rng):
    """A small network problem, a random prior mean and step sizes (none
    for the hidden layers with ``anil``)."""
    problem = NetworkProblem(code, activation, 3 if code == MULTINOMIAL else 1, P,
                             (5, 4), False, 0.3)
    theta0 = rng.normal(scale=0.5, size=problem.n_params)
    alpha = rng.uniform(0.01, 0.05, problem.n_params)
    if anil:
        alpha[:problem.head] = 0.0
    return problem, theta0, alpha


# --------------------------------------------------------------------------
# 1. exact meta-gradients against finite differences
# --------------------------------------------------------------------------
@pytest.mark.parametrize("anil", [False, True], ids=["all", "anil"])
@pytest.mark.parametrize("activation", ACTIVATIONS,
                         ids=["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("code", CODES,
                         ids=["squared", "logistic", "multinomial", "poisson"])
def test_second_order_meta_gradient_matches_finite_differences(code, activation,
                                                               anil):
    batch, rng = make_tasks(code, seed=10 * code + activation)
    problem, theta0, alpha = network_start(code, activation, anil, rng)
    d = problem.n_params
    run = Unroller(batch, problem, np.full(d, 0.7), auto_step=False, n_steps=3,
                   mode=SECOND_ORDER, n_sel=T)
    sel, seeds = np.arange(T), np.arange(T) + 3
    res = run(sel, seeds, N_QUERY, theta0, alpha)
    g_theta0, g_alpha = res.grad_theta0.copy(), res.grad_alpha.copy()
    fd = central_difference(
        lambda t: run(sel, seeds, N_QUERY, t, alpha).loss_sum, theta0)
    assert relative_error(g_theta0, fd) < 1e-6
    moved = alpha > 0
    fd_alpha = central_difference(
        lambda a: run(sel, seeds, N_QUERY, theta0,
                      np.where(moved, a, 0.0)).loss_sum, alpha)
    assert relative_error(g_alpha, np.where(moved, fd_alpha, 0.0)) < 1e-6


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("activation", [TANH, RELU], ids=["tanh", "relu"])
@pytest.mark.parametrize("code", CODES,
                         ids=["squared", "logistic", "multinomial", "poisson"])
def test_float32_rows_run_the_unrolled_kernels_in_float32(code, activation,
                                                          sparse):
    # the same numbers given in float32 and in float64: the two runs differ
    # by float32 round-off only, and the results are float64 in both
    batch64, rng = make_tasks(code, seed=7 * code + activation)
    X = batch64.Xd.astype(np.float32)
    tasks = np.repeat(np.arange(T), N)
    X = sp.csr_matrix(X) if sparse else X
    batch32, _ = make_batch(X, batch64.y, batch64.sw, tasks, T)
    assert batch32.float_type == np.float32
    problem = NetworkProblem(code, activation, 3 if code == MULTINOMIAL else 1, P,
                             (5, 4), False, 0.3)
    d = problem.n_params
    theta0 = rng.normal(scale=0.5, size=d)
    alpha = rng.uniform(0.01, 0.05, d)
    sel, seeds = np.arange(T), np.arange(T) + 3
    results = []
    for batch in (batch32, make_batch(X.astype(np.float64), batch64.y,
                                      batch64.sw, tasks, T)[0]):
        run = Unroller(batch, problem, np.full(d, 0.7), auto_step=False,
                       n_steps=3, mode=SECOND_ORDER, n_sel=T)
        res = run(sel, seeds, N_QUERY, theta0, alpha)
        results.append((run.dtype, res.loss_sum, res.grad_theta0.copy(),
                        res.grad_alpha.copy(), res.theta.copy()))
    (dtype32, *single), (dtype64, *double) = results
    assert (dtype32, dtype64) == (np.float32, np.float64)
    for a, b in zip(single, double):
        assert np.asarray(a).dtype == np.float64
        assert relative_error(np.atleast_1d(a), np.atleast_1d(b)) < 1e-5
    assert not np.array_equal(single[1], double[1])


@pytest.mark.parametrize("penalty", ["none", "l2", "transfer"])
@pytest.mark.parametrize("mode", [FIRST_ORDER, SECOND_ORDER],
                         ids=["first-order", "second-order"])
def test_skipped_passes_change_no_number(mode, penalty):
    # what the kernels skip -- the step sizes' meta-gradient when it is not
    # wanted (every method but Meta-SGD), the penalties' passes when both
    # are zero -- leaves every other number they return as it was
    batch, rng = make_tasks(SQUARED, seed=5)
    problem = NetworkProblem(SQUARED, TANH, 1, P, (5, 4), False,
                             0.3 if penalty == "l2" else 0.0)
    d = problem.n_params
    precision = np.full(d, 0.7 if penalty == "transfer" else 0.0)
    theta0 = rng.normal(scale=0.5, size=d)
    alpha = rng.uniform(0.01, 0.05, d)
    args = (np.arange(T), np.arange(T) + 3, N_QUERY, theta0, alpha)
    kw = dict(auto_step=False, n_steps=2, mode=mode, n_sel=T)
    reference = Unroller(batch, problem, precision, **kw)(*args)
    fields = ("theta", "query_loss", "grad_theta0_blocks", "loss_sum",
              "grad_theta0")
    expected = {f: np.copy(getattr(reference, f)) for f in fields}
    assert reference.grad_alpha.shape == (d,)
    lean = Unroller(batch, problem, precision, step_gradient=False, **kw)
    assert lean._penalized == (penalty != "none")
    # the same call with the penalties' passes taken whatever their values
    forced = Unroller(batch, problem, precision, step_gradient=False, **kw)
    forced._penalized = True
    for run in (lean, forced):
        res = run(*args)
        assert res.grad_alpha is None and res.grad_alpha_blocks is None
        for f in fields:
            assert_array_equal(getattr(res, f), expected[f])


@pytest.mark.parametrize("rows", ["dense", "csr", "float32"])
@pytest.mark.parametrize("anil", [False, True], ids=["all", "anil"])
@pytest.mark.parametrize("code", CODES,
                         ids=["squared", "logistic", "multinomial", "poisson"])
def test_forward_steps_by_blocks_of_rows_are_the_kept_steps(code, anil, rows,
                                                            monkeypatch):
    # adaptation (FORWARD) keeps one step's passes, over blocks of rows; the
    # second order keeps every step's passes over all the rows at once, as
    # every mode did before: the same steps, bit for bit
    rng = np.random.default_rng(3 + code)
    sizes = np.array([37, 50, 23])
    n = sizes.sum()
    X = rng.normal(size=(n, P))
    y = {SQUARED: rng.normal(size=n),
         LOGISTIC: rng.integers(0, 2, n).astype(float),
         MULTINOMIAL: rng.integers(0, 3, n).astype(float),
         POISSON: rng.poisson(1.0, n).astype(float)}[code]
    sw = rng.uniform(0.5, 1.5, n)
    if rows == "csr":
        X[rng.uniform(size=X.shape) < 0.3] = 0.0
        X = sp.csr_matrix(X)
    elif rows == "float32":
        X = X.astype(np.float32)
    batch, _ = make_batch(X, y, sw, np.repeat(np.arange(3), sizes), 3)
    problem, theta0, alpha = network_start(code, TANH, anil, rng)
    d = problem.n_params
    # passes of 12 rows (tasks of 23 to 50): blocks of 12, and a remainder
    # of each size modulo four
    dtype = np.float32 if rows == "float32" else np.float64
    per_row = (3 * problem.n_layers * (problem.width + 8)
               + 4 * problem.n_outputs) * np.dtype(dtype).itemsize
    monkeypatch.setattr(workspaces_module, "FORWARD_PASSES_MAX_BYTES",
                        12 * per_row + 3)
    kw = dict(auto_step=False, n_steps=3, n_sel=3)
    forward = Unroller(batch, problem, np.full(d, 0.7), mode=FORWARD, **kw)
    kept = Unroller(batch, problem, np.full(d, 0.7), mode=SECOND_ORDER, **kw)
    assert forward._layout.block_rows == 12
    assert forward._work.acts.shape[:2] == (1, 1)  # one chunk, one step
    assert kept._work.acts.shape[:2] == (1, 4)
    for n_query in (np.zeros(3, dtype=int), np.array([0, 30, 7])):
        args = (np.arange(3), np.array([5, -1, 8]), n_query, theta0, alpha)
        got = forward(*args)
        expected = kept(*args)
        assert_array_equal(got.theta, expected.theta)
        # the query loss is summed block by block
        assert_allclose(got.query_loss, expected.query_loss, rtol=1e-12)


@pytest.mark.parametrize("anil", [False, True], ids=["all", "anil"])
@pytest.mark.parametrize("code", [SQUARED, MULTINOMIAL],
                         ids=["squared", "multinomial"])
def test_implicit_meta_gradient_matches_finite_differences(code, anil):
    # iMAML's gradient is exact at the inner solution: steps that converge
    # (a strong transfer term) and a conjugate gradient run to the end
    batch, rng = make_tasks(code, seed=4 + code)
    problem = NetworkProblem(code, TANH, 3 if code == MULTINOMIAL else 1, P,
                             (4,), False, 0.1)
    d = problem.n_params
    theta0 = rng.normal(scale=0.3, size=d)
    alpha = np.full(d, 0.02)
    if anil:
        alpha[:problem.head] = 0.0
    run = NetworkImplicit(batch, problem, np.full(d, 5.0), n_steps=1000, n_sel=T,
                          cg_tol=1e-14, cg_max=200)
    sel, seeds = np.arange(T), np.arange(T) + 1
    g = run(sel, seeds, N_QUERY, theta0, alpha).grad_theta0.copy()
    fd = central_difference(
        lambda t: run(sel, seeds, N_QUERY, t, alpha).loss_sum, theta0, h=1e-5)
    assert relative_error(g, fd) < 1e-6


# --------------------------------------------------------------------------
# 2. the passes against scikit-learn's own code
# --------------------------------------------------------------------------
def sklearn_objective(est, X, y, sw):
    """Loss and gradient of scikit-learn's MLP objective, times sum(sw)."""
    coefs, intercepts = est.coefs_, est.intercepts_
    layers = [X] + [None] * len(coefs)
    deltas = [None] * len(coefs)
    coef_grads = [np.empty_like(c) for c in coefs]
    intercept_grads = [np.empty_like(b) for b in intercepts]
    Y = (est._label_binarizer.transform(y) if hasattr(est, "_label_binarizer")
         else y.reshape(-1, 1)).astype(np.float64)
    loss, cg, ig = est._backprop(X, Y, sw, layers, deltas, coef_grads,
                                 intercept_grads)
    grad = np.concatenate([np.r_[c.ravel(), b] for c, b in zip(cg, ig)])
    return loss * sw.sum(), grad * sw.sum()


@pytest.mark.parametrize("estimator,n_classes", [
    (MLPRegressor(hidden_layer_sizes=(6, 5), activation="tanh", alpha=0.0), None),
    (MLPRegressor(hidden_layer_sizes=(6,), loss="poisson", alpha=0.0), None),
    (MLPClassifier(hidden_layer_sizes=(6,), activation="logistic", alpha=0.0), 2),
    (MLPClassifier(hidden_layer_sizes=(5, 4), activation="identity",
                   alpha=0.0), 3),
], ids=["regressor", "poisson", "binary", "multiclass"])
def test_step_query_loss_and_first_order_gradient_are_scikit_learns(estimator,
                                                                     n_classes):
    rng = np.random.default_rng(0)
    n, ns = 14, 8
    X = rng.normal(size=(n, P))
    if n_classes is None:
        y = rng.poisson(1.0, n).astype(float) if estimator.loss == "poisson" \
            else rng.normal(size=n)
    else:
        y = rng.integers(0, n_classes, n).astype(float)
    sw = rng.uniform(0.5, 2.0, n)
    family = family_for(estimator, classifier=n_classes is not None,
                        owner="test")
    problem = family.problem(P, n_classes)
    classes = None if n_classes is None else np.arange(n_classes)
    theta0 = family.initial_params(P, n_classes, 0)
    batch, _ = make_batch(X, y, sw, np.zeros(n, dtype=int), 1)
    lr = 0.05
    alpha = np.full(problem.n_params, lr)
    args = (np.array([0]), np.array([-1]), np.array([n - ns]), theta0, alpha)
    res = Unroller(batch, problem, np.zeros(problem.n_params), auto_step=False,
                   n_steps=1, mode=FIRST_ORDER, n_sel=1)(*args)
    # one step on the support of scikit-learn's objective (penalty alpha=0)
    before = family.build(theta0, n_features=P, classes=classes)
    _, grad = sklearn_objective(before, X[:ns], y[:ns], sw[:ns])
    assert_allclose(res.theta[0], theta0 - lr * grad, rtol=1e-12, atol=1e-14)
    after = family.build(res.theta[0], n_features=P, classes=classes)
    loss_q, grad_q = sklearn_objective(after, X[ns:], y[ns:], sw[ns:])
    assert res.loss_sum == pytest.approx(loss_q, rel=1e-10)
    assert_allclose(res.grad_theta0, grad_q, rtol=1e-10, atol=1e-13)


def test_initialization_is_scikit_learns_glorot():
    for est, n_classes in [
            (MLPRegressor(hidden_layer_sizes=(7, 3), activation="logistic",
                          random_state=5), None),
            (MLPClassifier(hidden_layer_sizes=(4,), random_state=5), 3)]:
        family = family_for(est, classifier=n_classes is not None, owner="test")
        theta = family.initial_params(6, n_classes, None)
        # scikit-learn's fit starts from these
        ref = clone(est)
        ref._random_state = check_random_state(5)
        if n_classes is None:
            y = np.zeros((1, 1))
        else:
            ref._label_binarizer = LabelBinarizer().fit(np.arange(n_classes))
            y = np.eye(n_classes)[:1]
        ref._initialize(y, [6, *est.hidden_layer_sizes, y.shape[1]], np.float64)
        expected = np.concatenate([np.r_[c.ravel(), b] for c, b in
                                   zip(ref.coefs_, ref.intercepts_)])
        assert_array_equal(theta, expected)
    # without a random_state of its own, the meta-estimator's seeds it
    family = family_for(MLPRegressor(hidden_layer_sizes=(3,)), classifier=False,
                        owner="test")
    assert_array_equal(family.initial_params(2, None, 1),
                       family.initial_params(2, None, 1))


# --------------------------------------------------------------------------
# 3. the estimators
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sine():
    return make_sine_tasks(n_tasks=40, n_samples_per_task=20, random_state=0)


def fit_sine(sine, **params):
    X, y, tasks = sine
    kw = dict(estimator=MLPRegressor(hidden_layer_sizes=(8, 8), alpha=1e-3),
              method="maml", inner_lr=0.005, inner_steps=1, max_iter=30,
              meta_batch_size=8, random_state=0)
    kw.update(params)
    return MetaRegressor(**kw).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("params", [
    dict(), dict(first_order=True), dict(method="metasgd"),
    dict(method="reptile"), dict(method="imaml", gamma=2.0, inner_steps=5),
    dict(adapt_layers="output"), dict(method="imaml", adapt_layers="output",
                                      gamma=2.0, inner_steps=5),
], ids=["maml", "fomaml", "metasgd", "reptile", "imaml", "anil", "anil-imaml"])
def test_adapt_returns_a_plain_fitted_network(sine, params):
    X, y, tasks = sine
    meta = fit_sine(sine, **params)
    net = meta.adapt(X[:10], y[:10])
    assert type(net) is MLPRegressor
    assert [c.shape for c in net.coefs_] == [(1, 8), (8, 8), (8, 1)]
    blob = pickle.dumps(net)
    assert b"skmeta" not in blob  # it unpickles without skmeta
    assert_allclose(pickle.loads(blob).predict(X[:5]), net.predict(X[:5]))
    # the kernels' forward pass is scikit-learn's
    assert_allclose(meta.predict(X, tasks=tasks),
                    np.concatenate([meta.task_estimator(t).predict(X[tasks == t])
                                    for t in range(40)]), rtol=1e-12, atol=1e-12)
    assert_allclose(meta.meta_estimator_.predict(X[:5]),
                    meta.predict(X[:5], tasks=np.full(5, -1)), rtol=1e-12)
    if params.get("adapt_layers") == "output":
        # ANIL: the hidden layers are the prior's
        prior = meta.meta_estimator_
        for a, b in zip(net.coefs_[:-1], prior.coefs_[:-1]):
            assert_array_equal(a, b)


def test_metasgd_learns_positive_steps_of_the_output_layer_only_with_anil(sine):
    # Adam moves log(alpha): the learned steps stay positive, and ANIL's
    # zero steps of the hidden layers stay zero (no log of zero either)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        meta = fit_sine(sine, method="metasgd", adapt_layers="output")
    head = meta._problem().head
    assert_array_equal(meta.inner_lr_[:head], 0.0)
    assert np.all(meta.inner_lr_[head:] > 0)
    assert not np.allclose(meta.inner_lr_[head:], 0.005)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_built_networks_go_on_with_their_own_warm_started_fit(sine,
                                                             early_stopping):
    # the early-stopping state as scikit-learn's _initialize leaves it: with
    # early_stopping=True its fit appends to validation_scores_ (None before:
    # AttributeError)
    X, y, _ = sine
    base = MLPRegressor(hidden_layer_sizes=(8, 8), alpha=1e-3, warm_start=True,
                        early_stopping=early_stopping, max_iter=3)
    meta = fit_sine(sine, estimator=base, max_iter=3)
    for net in (meta.adapt(X[:20], y[:20]), meta.task_estimator(0),
                meta.meta_estimator_):
        start = [c.copy() for c in net.coefs_]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(X[:20], y[:20])
        assert net.n_iter_ >= 1
        assert not np.array_equal(net.coefs_[0], start[0])
        if early_stopping:
            assert len(net.validation_scores_) >= 1


def test_adapted_network_goes_on_with_scikit_learns_own_steps(sine):
    # full-batch SGD on scikit-learn's objective (a mean over the n rows)
    # with step n * lr is skmeta's inner step lr on the summed one
    X, y, _ = sine
    meta = fit_sine(sine, gamma=0.0)
    net = meta.adapt(X[:10], y[:10])
    net.set_params(solver="sgd", learning_rate_init=0.005 * 10, momentum=0.0,
                   batch_size=10, shuffle=False)
    for _ in range(4):
        net.partial_fit(X[:10], y[:10])
    problem = meta._problem()
    batch, _ = make_batch(X[:10], y[:10], np.ones(10), np.zeros(10, dtype=int), 1)
    d = problem.n_params
    five = Unroller(batch, problem, np.zeros(d), auto_step=False, n_steps=5,
                    mode=FORWARD, n_sel=1)(np.array([0]), np.array([-1]),
                                           np.array([0]), meta.meta_params_,
                                           meta.inner_lr_)
    assert_allclose(problem.join(net.coefs_, net.intercepts_), five.theta[0],
                    rtol=1e-12, atol=1e-14)


def test_fits_are_deterministic_whatever_the_threads(sine):
    one = fit_sine(sine, n_jobs=1)
    two = fit_sine(sine, n_jobs=2)
    assert_array_equal(one.meta_params_, two.meta_params_)
    assert_array_equal(one.task_params_, two.task_params_)


def test_meta_training_improves_few_shot_error(sine):
    X, y, tasks = sine
    X_new, y_new, t_new = make_sine_tasks(n_tasks=20, n_samples_per_task=20,
                                          random_state=1)
    support = np.tile(np.arange(20) < 10, 20)

    def few_shot_mse(meta):
        nets = meta.adapt_tasks(X_new[support], y_new[support], tasks=t_new[support])
        return np.mean([np.mean((nets[t].predict(X_new[~support & (t_new == t)])
                                 - y_new[~support & (t_new == t)]) ** 2)
                        for t in range(20)])

    kw = dict(estimator=MLPRegressor(hidden_layer_sizes=(16, 16), alpha=1e-3),
              inner_lr=0.01, inner_steps=2)
    untrained = few_shot_mse(fit_sine(sine, max_iter=1, meta_lr=1e-12, **kw))
    trained = few_shot_mse(fit_sine(sine, max_iter=1000, meta_lr=0.01, **kw))
    # measured: 2.57 from the random initialization, 0.43 meta-trained
    assert trained < 0.3 * untrained


def test_classifier_binary_and_multiclass():
    for n_classes in (2, 3):
        X, y, tasks = make_meta_classification(
            n_tasks=12, n_samples_per_task=30, n_features=4, n_informative=3,
            n_redundant=0, n_classes=n_classes, random_state=0)
        meta = MetaClassifier(MLPClassifier(hidden_layer_sizes=(6,)),
                              method="maml", inner_lr=0.01, max_iter=20,
                              random_state=0).fit(X, y, tasks=tasks)
        clf = meta.adapt(X[:30], y[:30])
        assert type(clf) is MLPClassifier
        assert_array_equal(clf.classes_, np.arange(n_classes))
        assert_allclose(meta.meta_estimator_.predict_proba(X[:5]),
                        meta.predict_proba(X[:5], tasks=np.full(5, 99)),
                        rtol=1e-10, atol=1e-12)
        proba = meta.task_estimator(0).predict_proba(X[tasks == 0])
        assert_allclose(proba, meta.predict_proba(X[tasks == 0],
                                                  tasks=tasks[tasks == 0]),
                        rtol=1e-10, atol=1e-12)


def test_sparse_inputs_give_the_dense_results(sine):
    X, y, tasks = sine
    X2 = np.hstack([X, np.zeros_like(X)])
    sparse = fit_sine((sp.csr_matrix(X2), y, tasks))
    wide = fit_sine((X2, y, tasks))
    # the same sums in another order (zeros skipped), through 30 Adam steps
    assert_allclose(sparse.meta_params_, wide.meta_params_, rtol=1e-6)
    assert sparse.meta_params_.dtype == np.float64


@pytest.mark.parametrize("method", ["maml", "imaml"])
def test_float32_inputs_train_in_float32_with_float64_meta_parameters(sine,
                                                                      method):
    X, y, tasks = sine
    X32 = X.astype(np.float32)
    params = dict(method=method)
    if method == "imaml":
        params.update(gamma=2.0, inner_steps=5)
    single = fit_sine((X32, y, tasks), **params)
    double = fit_sine((X32.astype(np.float64), y, tasks), **params)
    assert single.meta_params_.dtype == np.float64
    assert single.task_params_.dtype == np.float64
    if method == "imaml":
        # the implicit meta-gradient is computed in float64 whatever the rows
        assert_array_equal(single.meta_params_, double.meta_params_)
    else:
        # float32 arithmetic: round-off of float32, not a conversion
        assert not np.array_equal(single.meta_params_, double.meta_params_)
        assert_allclose(single.meta_params_, double.meta_params_, rtol=1e-4,
                        atol=1e-6)
        # on numba's threads too, with the same results
        threaded = fit_sine((X32, y, tasks), n_jobs=2, **params)
        assert_array_equal(threaded.meta_params_, single.meta_params_)
    # the adapted networks too (unrolled steps, in float32 for float32 rows)
    assert_allclose(single.task_params_, double.task_params_, rtol=1e-4,
                    atol=1e-6)


# --------------------------------------------------------------------------
# 4. bad input
# --------------------------------------------------------------------------
def test_training_settings_of_the_network_warn(sine):
    X, y, tasks = sine
    est = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", learning_rate="adaptive")
    with pytest.warns(UserWarning, match=r"solver='sgd', learning_rate='adaptive'"):
        MetaRegressor(est, method="maml", inner_lr=0.01, max_iter=2).fit(
            X, y, tasks=tasks)
    with warnings.catch_warnings():
        # (the fit's convergence is not the point: from some random starts
        # inner_lr=0.01 diverges on a few of the sine tasks, and says so)
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        MetaRegressor(MLPRegressor(hidden_layer_sizes=(4,)), method="maml",
                      inner_lr=0.01, max_iter=2).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("params,match", [
    (dict(method="proximal"), "not convex"),
    (dict(method="maml"), "needs a number for inner_lr"),
    (dict(method="reptile", inner_lr=0.01, adapt_layers="output"),
     "hidden layers never move"),
    # gamma="auto" (the default) has no empirical-Bayes estimate for a
    # network, and iMAML needs a transfer term
    (dict(method="imaml", inner_lr=0.01), "needs a number gamma > 0"),
    (dict(method="imaml", inner_lr=0.01, gamma=0.0), "needs a number gamma > 0"),
    (dict(method="maml", inner_lr=0.01, random_effects=[0]),
     "random_effects names coefficients of a linear"),
    (dict(method="maml", inner_lr=0.01, prior="diagonal"), "structured prior"),
    (dict(method="maml", inner_lr=0.01, prior="mixture"), "structured prior"),
    (dict(method="maml", inner_lr=0.01, prior_df=3.0), "structured prior"),
])
# (a random_effects that the method cannot honour is first reported unused)
@pytest.mark.filterwarnings("ignore:random_effects=:UserWarning")
def test_refused_settings(sine, params, match):
    X, y, tasks = sine
    with pytest.raises(ValueError, match=match):
        MetaRegressor(MLPRegressor(hidden_layer_sizes=(4,)), **params).fit(
            X, y, tasks=tasks)


def test_default_prior_of_a_network_is_maml_without_transfer_term(sine):
    # gamma="auto" is 0 and prior="auto" isotropic for a network: the same
    # fit as MAML's own formulation, set explicitly
    default = fit_sine(sine)
    assert default.get_params()["gamma"] == "auto"
    assert default.get_params()["prior"] == "auto"
    explicit = fit_sine(sine, gamma=0.0, prior="isotropic")
    assert default.gamma_ == 0.0
    assert default.prior_kind_ == "isotropic"
    assert_array_equal(default.prior_precision_, np.zeros(default.meta_params_.size))
    assert_array_equal(default.meta_params_, explicit.meta_params_)
    assert_array_equal(default.task_params_, explicit.task_params_)


def test_posterior_spread_is_refused_for_a_network(sine):
    # a network's tasks are a fixed number of steps from the prior, not
    # posterior modes: there is no Laplace posterior to report
    X, y, tasks = sine
    meta = fit_sine(sine, method="imaml", gamma=1.0, inner_steps=3, max_iter=3)
    with pytest.raises(ValueError, match="network's tasks are adapted"):
        meta.predict(X[:5], tasks=tasks[:5], return_std=True)
    with pytest.raises(ValueError, match="network's tasks are adapted"):
        meta.task_posterior_cov(0)


def test_unlabeled_rows_with_a_network():
    X, y, tasks = make_meta_classification(
        n_tasks=12, n_samples_per_task=30, n_features=4, n_informative=3,
        n_redundant=0, random_state=0)
    y_semi = y.copy()
    y_semi[np.random.default_rng(0).random(y.size) < 0.5] = -1
    labeled = y_semi >= 0
    kw = dict(estimator=MLPClassifier(hidden_layer_sizes=(6,)), method="maml",
              inner_lr=0.01, max_iter=20, random_state=0)
    supervised = MetaClassifier(**kw).fit(X[labeled], y[labeled],
                                          tasks=tasks[labeled])
    # weight 0: the fit on the labeled rows alone
    ignored = MetaClassifier(unlabeled_weight=0.0, **kw).fit(X, y_semi, tasks=tasks)
    assert_array_equal(ignored.meta_params_, supervised.meta_params_)
    assert_array_equal(ignored.task_params_, supervised.task_params_)
    # weight 1: the prior is still the labeled rows', the tasks move (EM
    # through the steps of the network's adaptation)
    used = MetaClassifier(unlabeled_weight=1.0, **kw).fit(X, y_semi, tasks=tasks)
    assert_array_equal(used.meta_params_, supervised.meta_params_)
    assert np.all(np.isfinite(used.task_params_))
    assert not np.allclose(used.task_params_, supervised.task_params_)
    y_new = y[:30].copy()
    y_new[4:] = -1
    clf = used.adapt(X[:30], y_new)
    assert type(clf) is MLPClassifier
    assert_array_equal(clf.classes_, [0, 1])


def test_network_too_big_for_the_workspace_budget(sine, monkeypatch):
    X, y, tasks = sine
    monkeypatch.setattr(workspaces_module, "WORKSPACE_MAX_BYTES", 1 << 20)
    with pytest.raises(ValueError, match="workspace budget of 1 MiB"):
        MetaRegressor(MLPRegressor(hidden_layer_sizes=(200, 200)), method="maml",
                      inner_lr=0.01, max_iter=1).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("anil", [False, True], ids=["all", "anil"])
def test_adapt_a_task_over_the_meta_training_budget(sine, anil, monkeypatch):
    # adaptation needs neither every step's passes nor all the task's rows
    # at once: a task that meta-training in second order could not take
    # adapts, and its steps are full-batch gradient steps on scikit-learn's
    # objective with the transfer term
    X, y, tasks = sine
    meta = fit_sine(sine, estimator=MLPRegressor(hidden_layer_sizes=(6,),
                                                 activation="tanh", alpha=1e-3),
                    gamma=0.3, inner_steps=4, max_iter=3,
                    adapt_layers="output" if anil else "all")
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-5, 5, (600, 1))
    yn = np.sin(Xn[:, 0]) + 0.1 * rng.normal(size=600)
    sw = rng.uniform(0.5, 1.5, 600)
    expected = meta.adapt(Xn, yn, sample_weight=sw)  # in one pass
    # a budget for one step's passes over tasks of 300 rows, not for every
    # step's (the second order's, as every use of the steps had before);
    # adaptation's passes by blocks of 44 rows
    monkeypatch.setattr(workspaces_module, "WORKSPACE_MAX_BYTES", 1 << 20)
    monkeypatch.setattr(workspaces_module, "FORWARD_PASSES_MAX_BYTES", 1 << 15)
    halves = (Xn, yn, np.repeat([0, 1], 300))
    kw = dict(estimator=meta.estimator, inner_steps=4, max_iter=1)
    with pytest.raises(ValueError, match="over skmeta's workspace budget of 1 MiB"
                       r".*Use fewer inner_steps, first_order=True"):
        fit_sine(halves, **kw)
    fit_sine(halves, first_order=True, **kw)
    net = meta.adapt(Xn, yn, sample_weight=sw)
    family = family_for(meta.estimator, classifier=False, owner="test")
    theta0 = theta = meta.meta_params_
    for _ in range(4):
        model = family.build(theta, n_features=1, classes=None)
        _, grad = sklearn_objective(model, Xn, yn, sw)
        theta = theta - meta.inner_lr_ * (grad + meta.gamma_ * (theta - theta0))
    problem = meta._problem()
    got = problem.join(net.coefs_, net.intercepts_)
    assert_allclose(got, theta, rtol=1e-12, atol=1e-14)
    assert_array_equal(got, problem.join(expected.coefs_, expected.intercepts_))
    if anil:
        assert_array_equal(got[:problem.head], meta.meta_params_[:problem.head])


def test_no_hidden_layer_is_refused(sine):
    X, y, tasks = sine
    with pytest.raises(ValueError, match="at least one hidden layer"):
        MetaRegressor(MLPRegressor(hidden_layer_sizes=()), method="maml",
                      inner_lr=0.01).fit(X, y, tasks=tasks)


def test_fractional_layer_sizes_are_refused(sine):
    # int() truncated (2.5,) to 2 units, where scikit-learn's fit refuses
    X, y, tasks = sine
    with pytest.raises(TypeError, match="whole numbers of units"):
        MetaRegressor(MLPRegressor(hidden_layer_sizes=(2.5,)), method="maml",
                      inner_lr=0.01).fit(X, y, tasks=tasks)


def test_a_prior_network_must_compute_as_the_base_network(sine):
    # only the layers' shapes were checked: a tanh network served as the
    # prior mean of a relu one, a classifier of a regressor, a Poisson
    # network of a squared-error one, silently
    X, y, tasks = sine
    X, y, tasks = X[:200], y[:200], tasks[:200]
    counts = np.round(np.abs(y))
    settings = dict(method="maml", inner_lr=0.01, max_iter=1, random_state=0)
    base = MLPRegressor(hidden_layer_sizes=(4,), activation="relu")
    fitted = dict(max_iter=20, random_state=0)
    others = [
        MLPRegressor(hidden_layer_sizes=(4,), activation="tanh", **fitted).fit(X, y),
        MLPClassifier(hidden_layer_sizes=(4,), **fitted).fit(X, y > 0),
        MLPRegressor(hidden_layer_sizes=(4,), loss="poisson", **fitted).fit(
            X, counts),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for other in others:
            with pytest.raises(TypeError, match="activation='relu', loss="):
                MetaRegressor(base, prior_estimator=other, **settings).fit(
                    X, y, tasks=tasks)
        same = MLPRegressor(hidden_layer_sizes=(4,), **fitted).fit(X, y)
        meta = MetaRegressor(base, prior_estimator=same, **settings)
        meta.fit(X, y, tasks=tasks)
        same.coefs_[0][0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN or infinite weights"):
            MetaRegressor(base, prior_estimator=same, **settings).fit(
                X, y, tasks=tasks)


def _stochastic_splits(estimator):
    # the gradient-based methods draw support/query splits row by row: a
    # row of weight 2 is one row of the split, its duplicate may be two
    reason = "support/query splits are drawn per row"
    return {"check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason}


@parametrize_with_checks([
    # the default gamma="auto" (0 for a network); steps small enough for the
    # checks' unscaled targets (200 rows, y of spread ~50: 5e-4 diverges)
    MetaRegressor(MLPRegressor(hidden_layer_sizes=(5,)), method="maml",
                  inner_lr=2e-4, inner_steps=20, max_iter=50, meta_lr=0.05,
                  random_state=0),
    MetaClassifier(MLPClassifier(hidden_layer_sizes=(5,), activation="tanh"),
                   method="imaml", gamma=1.0, inner_lr=0.01, max_iter=5,
                   random_state=0),
], expected_failed_checks=_stochastic_splits)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_a_prior_network_of_other_layers_is_refused_naming_both_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=60)
    tasks = np.repeat(np.arange(6), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        prior = MLPRegressor(hidden_layer_sizes=(5,), max_iter=5,
                             random_state=0).fit(X, y)
    meta = MetaRegressor(MLPRegressor(hidden_layer_sizes=(4,)), method="maml",
                         inner_lr=0.01, prior_estimator=prior, max_iter=2)
    with pytest.raises(ValueError, match=re.escape(
            "prior_estimator has layers of shapes [(3, 5), (5, 1)], but the "
            "base estimator on these data has [(3, 4), (4, 1)].")):
        meta.fit(X, y, tasks=tasks)


def test_network_steps_that_grow_are_warned_of(sine):
    # one inner_lr for the summed loss: fine on tasks of 20 rows, thirty
    # times too long on 600 (the mean squared error went from 1.2 to
    # 46,000 after four steps, without a word)
    X, y, _ = sine
    meta = fit_sine(sine, estimator=MLPRegressor(hidden_layer_sizes=(6,),
                                                 activation="tanh", alpha=1e-3),
                    gamma=0.3, inner_steps=4, max_iter=3)
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-5, 5, (600, 1))
    yn = np.sin(Xn[:, 0]) + 0.1 * rng.normal(size=600)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        small = meta.adapt(Xn[:20], yn[:20])
    before = np.mean((meta.meta_estimator_.predict(Xn) - yn) ** 2)
    assert np.mean((small.predict(Xn[:20]) - yn[:20]) ** 2) < before
    with pytest.warns(ConvergenceWarning, match=r"inner gradient steps diverge "
                      r"on 1 of 1 task\(s\): their 4 steps moved"):
        large = meta.adapt(Xn, yn)
    assert np.mean((large.predict(Xn) - yn) ** 2) > 1000 * before
    with pytest.warns(ConvergenceWarning, match="diverge on 1 of 2 task"):
        meta.adapt_tasks(np.r_[Xn[:20], Xn], np.r_[yn[:20], yn],
                         tasks=np.repeat([0, 1], [20, 600]))
