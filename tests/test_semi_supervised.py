"""Unlabeled rows (``y == -1``) in MetaClassifier.

References: the EM objective written again here from its definition (numpy,
with the inner objective of ``conftest.InnerObjective``), its finite
differences, the supervised fit on the labeled rows alone, the pooled
within-class covariance computed cell by cell, and scikit-learn's
``SelfTrainingClassifier`` for the handling of labels.
"""

import inspect
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import InnerObjective, design
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import SelfTrainingClassifier

from skmeta import MetaClassifier
from skmeta import _semi_supervised as semi
from skmeta._estimators import _BaseMetaEstimator
from skmeta.datasets import make_meta_classification, make_meta_regression

pytestmark = pytest.mark.filterwarnings(
    "error::sklearn.exceptions.ConvergenceWarning")

METHODS = ["proximal", "imaml", "maml", "metasgd", "reptile"]
# few meta-iterations: no test here depends on how far the prior moved
FAST = {"proximal": {}, "imaml": {"max_iter": 30}, "maml": {"max_iter": 30},
        "metasgd": {"max_iter": 30}, "reptile": {"max_iter": 30}}


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def clusters(sizes, seed, n_classes=2, n_features=3):
    """Tasks whose classes are Gaussian clusters that move from task to task."""
    return make_meta_classification(
        n_tasks=len(sizes), n_samples_per_task=sizes, n_features=n_features,
        n_informative=2, n_redundant=1, n_classes=n_classes, class_sep=1.5,
        task_spread=1.0, random_state=seed)


def no_clusters(sizes, seed, n_features=3):
    """Tasks whose features are N(0, I) whatever the labels."""
    X, target, tasks = make_meta_regression(
        n_tasks=len(sizes), n_samples_per_task=sizes, n_features=n_features,
        n_informative=2, noise=1.0, random_state=seed)
    return X, (target > 0).astype(int), tasks


def hide_labels(y, tasks, n_shots, seed):
    """``y`` with -1 on all but ``n_shots`` rows per class of every task."""
    rng = np.random.RandomState(seed)
    hidden = np.array(y, dtype=np.int64)
    key = rng.random_sample(y.shape[0])
    order = np.lexsort((key, y, tasks))
    cell = tasks[order] * (y.max() + 1) + y[order]
    first = np.r_[True, cell[1:] != cell[:-1]]
    starts = np.flatnonzero(first)
    rank = np.arange(order.shape[0]) - np.repeat(starts, np.diff(np.r_[starts,
                                                                      order.shape[0]]))
    hidden[order[rank >= n_shots]] = -1
    return hidden


def learner_of(meta):
    """The EM's view of a fitted estimator: its learner and feature model."""
    learner = semi.Learner(meta._meta_method(), meta._fitted_family(),
                           meta._problem(), meta._meta_fit(), meta.classes_)
    model = semi.FeatureModel(meta.class_means_, meta.within_class_covariance_)
    return learner, model


def one_task(X, y, sample_weight=None):
    n = X.shape[0]
    return semi.TaskRows(X, np.asarray(y, dtype=np.float64),
                         np.ones(n) if sample_weight is None else sample_weight,
                         np.zeros(n, dtype=np.intp), 1)


@pytest.fixture(scope="module")
def binary():
    X, y, tasks = clusters([30] * 40 + [60] * 6, seed=0)
    train = tasks < 40
    return X, y, tasks, train


@pytest.fixture(scope="module")
def fitted(binary):
    X, y, tasks, train = binary
    meta = MetaClassifier(LogisticRegression(C=1.0), unlabeled_weight=1.0)
    return meta.fit(X[train], y[train], tasks=tasks[train])


@pytest.fixture(scope="module")
def fitted_methods(binary):
    X, y, tasks, train = binary
    return {method: MetaClassifier(method=method, unlabeled_weight=1.0,
                                   random_state=0, **FAST[method]).fit(
        X[train], y[train], tasks=tasks[train]) for method in METHODS}


# --------------------------------------------------------------------------
# the objective, from its definition
# --------------------------------------------------------------------------
def em_objective(meta, X, y, sample_weight, theta, means, weight,
                 class_weight=None):
    """``J(theta, mu)`` of one task (see ``skmeta/_semi_supervised.py``)."""
    y = np.asarray(y)
    labeled = y >= 0
    yl = y[labeled].astype(int)
    factor = np.ones(len(meta.classes_)) if class_weight is None else np.array(
        [class_weight[c] for c in meta.classes_])
    supervised = InnerObjective.from_problem(
        meta._problem(), X[labeled], yl, sample_weight[labeled] * factor[yl],
        theta0=meta.transfer_center_, precision=meta.prior_precision_)
    n_outputs = meta._problem().n_outputs
    Z = design(X[~labeled]) @ theta.reshape(n_outputs, -1).T
    if n_outputs == 1:
        log_p = np.column_stack([-np.logaddexp(0, Z[:, 0]),
                                 -np.logaddexp(0, -Z[:, 0])])
    else:
        log_p = Z - logsumexp(Z, axis=1, keepdims=True)
    P = np.linalg.inv(meta.within_class_covariance_)

    def log_g(rows):
        diff = rows[:, None, :] - means[None]
        return -0.5 * np.einsum("nkd,de,nke->nk", diff, P, diff)

    dev = means - meta.class_means_
    gaussians = (-np.sum(sample_weight[labeled]
                         * log_g(X[labeled])[np.arange(yl.shape[0]), yl])
                 - np.sum(sample_weight[~labeled]
                          * logsumexp(log_p + log_g(X[~labeled]), axis=1))
                 + 0.5 * semi.MEAN_PRIOR_ROWS * np.einsum("kd,de,ke->", dev, P, dev))
    return supervised.objective(theta) + weight * gaussians


def numerical_gradient(f, x, step=1e-5):
    grad = np.empty_like(x)
    for i in range(x.shape[0]):
        e = np.zeros_like(x)
        e[i] = step
        grad[i] = (f(x + e) - f(x - e)) / (2 * step)
    return grad


def new_task(binary, task, n_shots=1, seed=0):
    X, y, tasks, _ = binary
    rows = tasks == task
    return X[rows], hide_labels(y[rows], tasks[rows], n_shots, seed), y[rows]


# --------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [
    np.array([0, 1, -1, 1, 0, -1, 0, 1]),
    np.array([0.0, 1.0, -1.0, 1.0, 0.0, -1.0, 0.0, 1.0]),
    np.array(["a", "b", -1, "b", "a", -1, "a", "b"], dtype=object),
], ids=["int", "float", "object"])
def test_classes_exclude_the_unlabeled_marker(labels):
    X = np.random.RandomState(0).normal(size=(8, 2))
    meta = MetaClassifier(unlabeled_weight=0.5).fit(X, labels)
    # as SelfTrainingClassifier: the classes are those of the labeled rows
    reference = SelfTrainingClassifier(LogisticRegression()).fit(X, labels)
    assert_array_equal(meta.classes_, reference.classes_)
    assert set(meta.predict(X)) <= set(reference.classes_)


def test_minus_one_is_a_class_without_unlabeled_weight():
    X = np.random.RandomState(0).normal(size=(8, 2))
    y = np.array([-1, 1, -1, 1, -1, 1, -1, 1])
    meta = MetaClassifier().fit(X, y)
    assert_array_equal(meta.classes_, LogisticRegression().fit(X, y).classes_)
    assert not hasattr(meta, "unlabeled_weight_")
    # and so it stays in adapt, whatever the parameter says now
    meta.set_params(unlabeled_weight=1.0)
    assert_array_equal(meta.adapt(X[:4], y[:4]).classes_, [-1, 1])


def test_string_targets_are_refused_as_scikit_learn_does():
    X = np.random.RandomState(0).normal(size=(6, 2))
    y = np.array(["a", "b", "a", "b", "a", "b"])
    with pytest.raises(ValueError, match="dtype string"):
        SelfTrainingClassifier(LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="dtype string.*dtype object"):
        MetaClassifier(unlabeled_weight=1.0).fit(X, y)


def test_errors_name_the_problem(fitted, binary):
    X, y, tasks, train = binary
    with pytest.raises(ValueError, match="no labeled row: all 6 rows"):
        MetaClassifier(unlabeled_weight="auto").fit(X[:6], -np.ones(6, int))
    with pytest.raises(ValueError, match="at least 2 classes"):
        MetaClassifier(unlabeled_weight=1.0).fit(X[:6], [0, -1, 0, -1, 0, -1])
    with pytest.raises(ValueError, match="classes contains -1"):
        MetaClassifier(unlabeled_weight=1.0).partial_fit(
            X[:6], [0, 1, -1, 1, 0, -1], classes=[-1, 0, 1])
    supervised = MetaClassifier().fit(X[train], y[train], tasks=tasks[train])
    with pytest.raises(ValueError, match="unlabeled_weight set"):
        supervised.adapt(X[:4], [0, 1, -1, -1])
    with pytest.raises(ValueError, match="partial_fit"):
        fitted.partial_fit(X[:4], [0, 1, -1, 0], tasks=np.zeros(4),
                           classes=[0, 1, 2])


def test_shared_parameters_keep_the_base_defaults():
    # MetaClassifier repeats the shared signature to add its own parameter
    base = inspect.signature(_BaseMetaEstimator.__init__).parameters
    own = inspect.signature(MetaClassifier.__init__).parameters
    assert list(own)[:len(base)] == list(base)
    for name, parameter in base.items():
        assert own[name].default == parameter.default, name
        assert own[name].kind == parameter.kind, name
    assert own["unlabeled_weight"].default is None


# --------------------------------------------------------------------------
# reductions to the supervised fit
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("weight", [0.5, "auto"])
def test_every_row_labeled_is_the_supervised_fit(method, weight, binary):
    X, y, tasks, train = binary
    kwargs = dict(method=method, random_state=0, **FAST[method])
    semi_fit = MetaClassifier(unlabeled_weight=weight, **kwargs).fit(
        X[train], y[train], tasks=tasks[train])
    supervised = MetaClassifier(**kwargs).fit(X[train], y[train],
                                              tasks=tasks[train])
    assert_array_equal(semi_fit.task_params_, supervised.task_params_)
    assert_array_equal(semi_fit.meta_params_, supervised.meta_params_)
    new = ~train
    assert_array_equal(semi_fit.adapt(X[new][:7], y[new][:7]).coef_,
                       supervised.adapt(X[new][:7], y[new][:7]).coef_)


@pytest.mark.parametrize("method", METHODS)
def test_weight_zero_is_the_supervised_fit_on_the_labeled_rows(method, binary):
    X, y, tasks, train = binary
    y_semi = hide_labels(y, tasks, 3, seed=1)
    y_semi[tasks == 7] = -1  # a task without any labeled row
    kwargs = dict(method=method, random_state=0, **FAST[method])
    semi_fit = MetaClassifier(unlabeled_weight=0.0, **kwargs).fit(
        X[train], y_semi[train], tasks=tasks[train])
    kept = train & (y_semi >= 0)
    supervised = MetaClassifier(**kwargs).fit(X[kept], y[kept], tasks=tasks[kept])
    assert_array_equal(semi_fit.tasks_, np.arange(40))
    assert_array_equal(supervised.tasks_, np.delete(np.arange(40), 7))
    assert_array_equal(np.delete(semi_fit.task_params_, 7, axis=0),
                       supervised.task_params_)
    # the task without labels is the prior model, as an unseen task is
    assert_array_equal(semi_fit.task_params_[7], supervised.meta_params_)
    assert_array_equal(semi_fit.predict(X, tasks=tasks),
                       supervised.predict(X, tasks=tasks))
    new = ~train
    semi_models = semi_fit.adapt_tasks(X[new], y_semi[new], tasks=tasks[new])
    labeled = new & (y_semi >= 0)
    models = supervised.adapt_tasks(X[labeled], y[labeled], tasks=tasks[labeled])
    for task, model in models.items():
        assert_array_equal(semi_models[task].coef_, model.coef_)
    only_unlabeled = semi_fit.adapt(X[new][:5], -np.ones(5, int))
    assert_array_equal(only_unlabeled.coef_, supervised.meta_estimator_.coef_)
    assert_array_equal(only_unlabeled.intercept_,
                       supervised.meta_estimator_.intercept_)


def test_single_task_fit_with_unlabeled_rows(binary):
    X, y, tasks, _ = binary
    rows = tasks == 41
    y_semi = hide_labels(y[rows], tasks[rows], 2, seed=0)
    labeled = y_semi >= 0
    ignored = MetaClassifier(unlabeled_weight=0.0).fit(X[rows], y_semi)
    supervised = MetaClassifier().fit(X[rows][labeled], y[rows][labeled])
    assert ignored.tasks_ is None
    assert_array_equal(ignored.task_params_, supervised.task_params_)
    used = MetaClassifier(unlabeled_weight=1.0).fit(X[rows], y_semi)
    # (the base estimator alone, as a fit without tasks is, already
    # classifies these rows well: the unlabeled ones must not hurt)
    assert used.score(X[rows], y[rows]) >= supervised.score(X[rows], y[rows])
    assert not np.allclose(used.task_params_, supervised.task_params_)


# --------------------------------------------------------------------------
# EM: the objective decreases, and the result is its stationary point
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["proximal", "imaml"])
@pytest.mark.parametrize("labels", ["one per class", "none"])
def test_em_objective_decreases_to_a_stationary_point(method, labels,
                                                      fitted_methods, binary):
    meta = fitted_methods[method]
    X, y_semi, _ = new_task(binary, 42)
    if labels == "none":
        y_semi = -np.ones_like(y_semi)
    sample_weight = np.random.RandomState(0).uniform(0.5, 2.0, X.shape[0])
    learner, model = learner_of(meta)
    rows = one_task(X, y_semi, sample_weight)
    values = []
    for n_iter in range(8):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = semi.run_em(learner, rows, model, 0.7, max_iter=n_iter, tol=0)
        values.append(em_objective(meta, X, y_semi, sample_weight,
                                   result.theta[0], result.means[0], 0.7))
    assert np.all(np.diff(values) <= 1e-9 * abs(values[0]))
    assert values[-1] < values[0]

    result = semi.run_em(learner, rows, model, 0.7, tol=1e-12, max_iter=2000)
    assert result.converged
    theta, means = result.theta[0], result.means[0]
    grad_theta = numerical_gradient(
        lambda t: em_objective(meta, X, y_semi, sample_weight, t, means, 0.7),
        theta)
    grad_means = numerical_gradient(
        lambda m: em_objective(meta, X, y_semi, sample_weight, theta,
                               m.reshape(means.shape), 0.7), means.ravel())
    # central differences of an objective of order 10-100, step 1e-6
    assert_allclose(grad_theta, 0.0, atol=5e-5)
    assert_allclose(grad_means, 0.0, atol=5e-5)


def test_class_weights_apply_to_labeled_rows_only(binary):
    X, y, tasks, train = binary
    class_weight = {0: 3.0, 1: 0.5}
    meta = MetaClassifier(LogisticRegression(class_weight=class_weight),
                          unlabeled_weight=1.0).fit(X[train], y[train],
                                                    tasks=tasks[train])
    X_new, y_semi, _ = new_task(binary, 43, n_shots=3)
    sample_weight = np.ones(X_new.shape[0])
    learner, model = learner_of(meta)
    result = semi.run_em(learner, one_task(X_new, y_semi), model, 1.0,
                         tol=1e-12, max_iter=2000)
    grad = numerical_gradient(
        lambda t: em_objective(meta, X_new, y_semi, sample_weight, t,
                               result.means[0], 1.0, class_weight),
        result.theta[0])
    assert_allclose(grad, 0.0, atol=1e-5)


def test_multiclass_em_is_stationary():
    X, y, tasks = clusters([40] * 30 + [60], seed=3, n_classes=3)
    train = tasks < 30
    meta = MetaClassifier(unlabeled_weight=0.5).fit(X[train], y[train],
                                                    tasks=tasks[train])
    new = tasks == 30
    y_semi = hide_labels(y[new], tasks[new], 1, seed=0)
    sample_weight = np.ones(new.sum())
    learner, model = learner_of(meta)
    result = semi.run_em(learner, one_task(X[new], y_semi), model, 0.5,
                         tol=1e-12, max_iter=2000)
    grad = numerical_gradient(
        lambda t: em_objective(meta, X[new], y_semi, sample_weight, t,
                               result.means[0], 0.5), result.theta[0])
    # central differences of an objective whose transfer term is far from
    # zero (its center lies beyond the prior mean: see Prior.center)
    assert_allclose(grad, 0.0, atol=1e-4)
    assert_allclose(meta.adapt(X[new], y_semi).coef_.ravel(),
                    result.theta[0].reshape(3, -1)[:, :-1].ravel(), atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_em_result_is_a_fixed_point_of_its_steps(method, fitted_methods, binary):
    """For every method, one more E-step and M-step leave the result in place."""
    meta = fitted_methods[method]
    X, y_semi, _ = new_task(binary, 44)
    learner, model = learner_of(meta)
    rows = one_task(X, y_semi)
    result = semi.run_em(learner, rows, model, 1.0, tol=1e-12, max_iter=2000)
    assert result.converged
    em_tasks = semi._EMTasks(learner, rows, np.array([0]))
    q = np.exp(learner.log_proba(em_tasks.XU, em_tasks.cU, result.theta)
               + model.log_evidence(em_tasks.XU, em_tasks.cU, result.means,
                                    model.precision()))
    q /= q.sum(axis=1, keepdims=True)
    assert_allclose(q, result.responsibilities, atol=1e-10)
    assert_allclose(em_tasks.theta_step(learner, 1.0, q), result.theta,
                    atol=1e-8)
    assert_allclose(em_tasks.means_step(model, q), result.means, atol=1e-10)


def test_clusters_that_tell_nothing_leave_the_supervised_model(fitted, binary):
    """Equal Gaussians for every class make q the classifier's own
    probabilities: the unlabeled term's gradient vanishes there."""
    X, y_semi, _ = new_task(binary, 45)
    learner, _ = learner_of(fitted)
    flat = semi.FeatureModel(fitted.class_means_,
                             1e12 * fitted.within_class_covariance_)
    rows = one_task(X, y_semi)
    result = semi.run_em(learner, rows, flat, 1.0, tol=1e-12, max_iter=2000)
    assert_allclose(result.theta, learner.supervised(rows), atol=1e-6)


def test_task_without_labels_moves_from_the_prior_toward_its_clusters(fitted,
                                                                     binary):
    X, y, tasks, train = binary
    new = ~train
    unlabeled = -np.ones(new.sum(), dtype=int)
    models = fitted.adapt_tasks(X[new], unlabeled, tasks=tasks[new])
    prior_model = fitted.meta_estimator_
    gains = [models[t].score(X[tasks == t], y[tasks == t])
             - prior_model.score(X[tasks == t], y[tasks == t]) for t in models]
    assert np.mean(gains) > 0.02
    assert not np.allclose(models[40].coef_, prior_model.coef_)


# --------------------------------------------------------------------------
# every method, partial_fit and adapt
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_partial_fit_adapt_and_adapt_tasks_agree(method, fitted_methods, binary):
    meta = pickle.loads(pickle.dumps(fitted_methods[method]))
    X, y, tasks, train = binary
    new = ~train
    y_semi = hide_labels(y[new], tasks[new], 1, seed=2)
    models = meta.adapt_tasks(X[new], y_semi, tasks=tasks[new])
    learner, model = learner_of(meta)
    codes = tasks[new] - 40
    reference = semi.run_em(learner, semi.TaskRows(X[new], y_semi.astype(float),
                                                   np.ones(new.sum()), codes, 6),
                            model, 1.0)
    for task, est in models.items():
        assert_allclose(est.coef_.ravel(), reference.theta[task - 40][:-1])
    # alone, the task stops iterating at its own convergence (EM_TOL)
    one = new & (tasks == 41)
    assert_allclose(meta.adapt(X[one], y_semi[tasks[new] == 41]).coef_,
                    models[41].coef_, atol=1e-6)
    meta.partial_fit(X[new], y_semi, tasks=tasks[new])
    assert_array_equal(meta.tasks_, np.arange(46))
    for task, est in models.items():
        assert_array_equal(meta.task_estimator(task).coef_, est.coef_)
    supervised = meta.adapt_tasks(X[new][y_semi >= 0], y_semi[y_semi >= 0],
                                  tasks=tasks[new][y_semi >= 0])
    assert any(not np.allclose(models[t].coef_, supervised[t].coef_)
               for t in models)


# --------------------------------------------------------------------------
# the measured targets (benchmarks/bench_unlabeled.py, seed 0)
# --------------------------------------------------------------------------
N_TRAIN, N_NEW = 100, 50


def few_shot_accuracies(generator, seed=0):
    """Accuracy of new tasks from 1 labeled row per class, without and with
    40 unlabeled rows (as ``benchmarks/bench_unlabeled.py``)."""
    X, y, tasks = generator([60] * N_TRAIN + [164] * N_NEW, seed)
    train = tasks < N_TRAIN
    meta = MetaClassifier(LogisticRegression(C=1.0), unlabeled_weight="auto",
                          random_state=seed).fit(X[train], y[train],
                                                 tasks=tasks[train])
    rng = np.random.RandomState(seed)
    labeled, unlabeled, test = [], [], []
    for task in range(N_TRAIN, N_TRAIN + N_NEW):
        rows = rng.permutation(np.flatnonzero(tasks == task))
        shots = [rows[y[rows] == k][0] for k in (0, 1)]
        rest = rows[~np.isin(rows, shots)]
        labeled += shots
        unlabeled += list(rest[:40])
        test += list(rest[40:80])
    labeled, unlabeled, test = map(np.array, (labeled, unlabeled, test))
    support = np.r_[labeled, unlabeled]
    y_support = np.r_[y[labeled], -np.ones(unlabeled.shape[0], dtype=int)]
    alone = meta.adapt_tasks(X[labeled], y[labeled], tasks=tasks[labeled])
    both = meta.adapt_tasks(X[support], y_support, tasks=tasks[support])

    def accuracy(models):
        return np.mean([models[t].score(X[test][tasks[test] == t],
                                        y[test][tasks[test] == t])
                        for t in models])

    return meta.unlabeled_weight_, accuracy(alone), accuracy(both)


def test_unlabeled_rows_help_when_classes_form_clusters():
    weight, alone, both = few_shot_accuracies(
        lambda sizes, seed: clusters(sizes, seed, n_features=5))
    assert weight > 0
    assert both - alone >= 0.02


def test_unlabeled_rows_cost_nothing_without_clusters():
    weight, alone, both = few_shot_accuracies(
        lambda sizes, seed: no_clusters(sizes, seed, n_features=5))
    assert both - alone >= -0.01
    assert weight == 0


# --------------------------------------------------------------------------
# the validation of the weight
# --------------------------------------------------------------------------
def test_auto_weight_follows_its_rule(binary):
    X, y, tasks, train = binary
    meta = MetaClassifier(unlabeled_weight="auto", random_state=0).fit(
        X[train], hide_labels(y[train], tasks[train], 5, seed=0),
        tasks=tasks[train])
    v = meta.unlabeled_validation_
    assert_array_equal(v["weight"], semi.WEIGHT_CANDIDATES)
    assert v["n_tasks"] == 40
    assert v["n_episodes"] == 40 * 8  # 40 tasks, split 8 times each
    gain = v["accuracy"][1:] - v["accuracy"][0]
    accepted = ((gain > semi.GAIN_Z * v["accuracy_gain_se"][1:])
                & (v["log_loss"][1:] <= v["log_loss"][0] + 1e-12))
    expected = (v["weight"][1:][accepted][np.argmax(gain[accepted])]
                if accepted.any() else 0.0)
    assert meta.unlabeled_weight_ == expected


def test_auto_weight_without_validation_data_ignores_unlabeled_rows(binary):
    X, y, tasks, train = binary
    y_semi = hide_labels(y[train], tasks[train], 1, seed=0)
    with pytest.warns(UserWarning, match="cannot be validated"):
        meta = MetaClassifier(unlabeled_weight="auto").fit(
            X[train], y_semi, tasks=tasks[train])
    assert meta.unlabeled_weight_ == 0
    assert meta.unlabeled_validation_["n_episodes"] == 0


def test_episodes_keep_one_labeled_row_per_class_and_split_the_others(binary):
    X, y, tasks, train = binary
    y_semi = hide_labels(y[train], tasks[train], 6, seed=3).astype(float)
    rows = semi.TaskRows(X[train], y_semi, np.ones(train.sum()), tasks[train], 40)
    episodes = semi.draw_episodes(rows, 2, random_state=0)
    episode_rows = episodes.rows
    assert episode_rows.n_tasks == 40 * 8
    support = episode_rows.y >= 0
    # one labeled row of each class in every episode
    counts = np.bincount(episode_rows.codes[support] * 2
                         + episode_rows.y[support].astype(int),
                         minlength=2 * episode_rows.n_tasks)
    assert_array_equal(counts, 1)
    # the other 10 labeled rows: 5 hidden among the 18 unlabeled, 5 queried
    assert_array_equal(np.bincount(episode_rows.codes[~support]), 18 + 5)
    assert_array_equal(np.bincount(episodes.query_codes), 5)
    assert_array_equal(np.unique(episodes.units), np.arange(40))
    # the rows of an episode are rows of its task, each used once
    n_rows = X[train].shape[0]
    for e in (0, 17, 319):
        task = episodes.units[e]
        mine = np.r_[episode_rows.X[episode_rows.codes == e],
                     episodes.query_X[episodes.query_codes == e]]
        assert_array_equal(np.sort(mine, axis=0),
                           np.sort(X[train][tasks[train] == task], axis=0))
    assert n_rows == 1200


# --------------------------------------------------------------------------
# the Gaussian model of the features
# --------------------------------------------------------------------------
def test_feature_model_is_the_shrunk_pooled_within_class_covariance(binary):
    X, y, tasks, train = binary
    y_semi = hide_labels(y[train], tasks[train], 4, seed=0)
    w = np.random.RandomState(1).uniform(0.5, 2.0, train.sum())
    meta = MetaClassifier(unlabeled_weight=0.0).fit(
        X[train], y_semi, tasks=tasks[train], sample_weight=w)
    Xt, tt = X[train], tasks[train]
    d = X.shape[1]
    scatter, normalizer, dof = np.zeros((d, d)), 0.0, 0
    for task in range(40):
        for k in (0, 1):
            cell = (tt == task) & (y_semi == k)
            if cell.sum() < 2:
                continue
            mean = np.average(Xt[cell], axis=0, weights=w[cell])
            scatter += (w[cell, None] * (Xt[cell] - mean)).T @ (Xt[cell] - mean)
            normalizer += w[cell].sum() * (cell.sum() - 1) / cell.sum()
            dof += cell.sum() - 1
    pooled = scatter / normalizer
    level = np.trace(pooled) / d
    expected = (dof * pooled + d * level * np.eye(d)) / (dof + d)
    assert_allclose(meta.within_class_covariance_, expected, rtol=1e-10)
    for k in (0, 1):
        labeled = y_semi == k
        assert_allclose(meta.class_means_[k],
                        np.average(Xt[labeled], axis=0, weights=w[labeled]))


def test_sparse_input_uses_the_diagonal_of_the_same_covariance(binary):
    X, y, tasks, train = binary
    y_semi = hide_labels(y[train], tasks[train], 4, seed=0)
    dense = MetaClassifier(unlabeled_weight=1.0).fit(X[train], y_semi,
                                                     tasks=tasks[train])
    sparse = MetaClassifier(unlabeled_weight=1.0).fit(
        sp.csr_matrix(X[train]), y_semi, tasks=tasks[train])
    assert_allclose(sparse.within_class_covariance_,
                    np.diag(dense.within_class_covariance_), rtol=1e-10)
    # the same diagonal model gives the same EM on dense and sparse rows
    learner, model = learner_of(sparse)
    X_new, y_new, _ = new_task(binary, 40)
    # run to far below EM_TOL: EM converges linearly, and stopped at its
    # default tolerance along paths that differ by round-off, the two ended
    # up to 6.5e-7 apart (relative) in a CI run
    from_dense = semi.run_em(learner, one_task(X_new, y_new), model, 1.0,
                             tol=1e-12, max_iter=100_000)
    from_sparse = semi.run_em(learner, one_task(sp.csr_matrix(X_new), y_new),
                              model, 1.0, tol=1e-12, max_iter=100_000)
    assert from_dense.converged and from_sparse.converged
    assert_allclose(from_sparse.theta, from_dense.theta, rtol=1e-7, atol=1e-10)
    assert_allclose(sparse.predict_proba(X[~train][:20], tasks=tasks[~train][:20]),
                    sparse.predict_proba(sp.csr_matrix(X[~train][:20]),
                                         tasks=tasks[~train][:20]))


# --------------------------------------------------------------------------
# weights, inputs, persistence, refits
# --------------------------------------------------------------------------
def test_weight_two_is_a_repeated_row(fitted, binary):
    X, y_semi, _ = new_task(binary, 43)
    unlabeled = np.flatnonzero(y_semi < 0)
    labeled = np.flatnonzero(y_semi >= 0)
    repeated = np.r_[np.arange(X.shape[0]), unlabeled[:7], labeled[:1]]
    sample_weight = np.ones(X.shape[0])
    sample_weight[unlabeled[:7]] = 2.0
    sample_weight[labeled[:1]] = 2.0
    weighted = fitted.adapt(X, y_semi, sample_weight=sample_weight)
    copies = fitted.adapt(X[repeated], y_semi[repeated])
    assert_allclose(weighted.coef_, copies.coef_, rtol=1e-7)
    assert_allclose(weighted.intercept_, copies.intercept_, rtol=1e-7)


def test_inputs_are_not_modified(binary):
    X, y, tasks, train = binary
    X_in = X[train].copy()
    y_in = hide_labels(y[train], tasks[train], 3, seed=0)
    w_in = np.ones(X_in.shape[0])
    tasks_in = tasks[train].copy()
    copies = [a.copy() for a in (X_in, y_in, w_in, tasks_in)]
    for a in (X_in, y_in, w_in, tasks_in):
        a.setflags(write=False)
    meta = MetaClassifier(unlabeled_weight="auto", random_state=0)
    meta.fit(X_in, y_in, tasks=tasks_in, sample_weight=w_in)
    meta.adapt_tasks(X_in, y_in, tasks=tasks_in, sample_weight=w_in)
    meta.partial_fit(X_in, y_in, tasks=tasks_in, sample_weight=w_in)
    for a, b in zip((X_in, y_in, w_in, tasks_in), copies):
        assert_array_equal(a, b)


def test_pickle_and_skops_round_trips(binary):
    X, y, tasks, train = binary
    meta = MetaClassifier(unlabeled_weight="auto", random_state=0).fit(
        X[train], hide_labels(y[train], tasks[train], 5, seed=0),
        tasks=tasks[train])
    X_new, y_semi, _ = new_task(binary, 40)
    restored = [pickle.loads(pickle.dumps(meta))]
    try:
        import skops.io as sio
    except ImportError:
        pass
    else:
        restored.append(sio.loads(sio.dumps(meta),
                                  trusted=["skmeta._estimators.MetaClassifier"]))
    for other in restored:
        assert other.unlabeled_weight_ == meta.unlabeled_weight_
        assert_array_equal(other.predict_proba(X, tasks=tasks),
                           meta.predict_proba(X, tasks=tasks))
        assert_array_equal(other.adapt(X_new, y_semi).coef_,
                           meta.adapt(X_new, y_semi).coef_)


def test_refit_without_unlabeled_weight_forgets_the_unlabeled_rows(binary):
    X, y, tasks, train = binary
    meta = MetaClassifier(unlabeled_weight="auto", random_state=0)
    meta.fit(X[train], y[train], tasks=tasks[train])
    meta.set_params(unlabeled_weight=None).fit(X[train], y[train],
                                               tasks=tasks[train])
    for name in ("unlabeled_weight_", "class_means_", "within_class_covariance_",
                 "unlabeled_validation_"):
        assert not hasattr(meta, name)
    # adapt reads how the model was fitted, not the current parameter
    meta.set_params(unlabeled_weight=1.0)
    with pytest.raises(ValueError, match="not seen during meta-training"):
        meta.adapt(X[:4], [0, 1, -1, 1])


def test_pipeline_with_task_scaler_and_a_task_column(binary):
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline

    from skmeta.preprocessing import TaskScaler

    X, y, tasks, train = binary
    y_semi = hide_labels(y, tasks, 2, seed=4)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(
        store=[f"s{t}" for t in tasks])
    model = make_pipeline(
        TaskScaler(task_column="store"),
        MetaClassifier(task_column="store", unlabeled_weight=1.0),
    ).set_output(transform="pandas")
    model.fit(frame[train], pd.Series(y_semi[train]))
    meta = model[-1]
    assert_array_equal(meta.classes_, [0, 1])
    assert meta.tasks_.shape == (40,)
    # the same as the classifier on the scaled rows, with tasks= given
    scaled = model[0].transform(frame[train]).drop(columns="store")
    direct = MetaClassifier(unlabeled_weight=1.0).fit(
        scaled.to_numpy(), y_semi[train],
        tasks=frame["store"][train].to_numpy())
    assert_allclose(meta.task_params_, direct.task_params_)
    assert model.score(frame[~train], y[~train]) > 0.5


# --------------------------------------------------------------------------
# fuzzing
# --------------------------------------------------------------------------
@st.composite
def small_semi_supervised_problems(draw):
    n_tasks = draw(st.integers(1, 5))
    n_features = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 9), min_size=n_tasks,
                          max_size=n_tasks))
    n = sum(sizes)
    values = st.floats(-3, 3, allow_nan=False, width=64)
    X = np.array(draw(st.lists(values, min_size=n * n_features,
                               max_size=n * n_features))).reshape(n, n_features)
    y = np.array(draw(st.lists(st.integers(-1, 2), min_size=n, max_size=n)))
    tasks = np.repeat(np.arange(n_tasks), sizes)
    weight = draw(st.sampled_from([0.0, 0.5, "auto"]))
    if draw(st.booleans()):
        # string labels and the integer -1, in an object array
        y = np.array([-1 if v < 0 else "abc"[v] for v in y], dtype=object)
    return X, y, tasks, weight


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_semi_supervised_problems())
def test_fuzz_unlabeled_rows(problem):
    X, y, tasks, weight = problem
    saved = [a.copy() for a in (X, y, tasks)]
    labels = np.unique(y[y != -1].astype(str))
    # (a fixed prior: the learned one is fuzzed in test_estimators)
    meta = MetaClassifier(unlabeled_weight=weight, gamma=1.0, prior="isotropic",
                          random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # nothing to validate on
        if labels.shape[0] < 2:
            with pytest.raises(ValueError, match="labeled row|2 classes"):
                meta.fit(X, y, tasks=tasks)
            return
        meta.fit(X, y, tasks=tasks)
        models = meta.adapt_tasks(X, y, tasks=tasks)
    assert_array_equal(meta.classes_.astype(str), labels)
    assert_array_equal(meta.tasks_, np.unique(tasks))
    for name in ("task_params_", "meta_params_", "class_means_",
                 "within_class_covariance_"):
        assert np.all(np.isfinite(getattr(meta, name)))
    P = meta.predict_proba(X, tasks=tasks)
    assert_allclose(P.sum(axis=1), 1.0)
    assert set(meta.predict(X, tasks=tasks)) <= set(meta.classes_)
    for model in models.values():
        assert np.all(np.isfinite(model.coef_))
    for before, after in zip(saved, (X, y, tasks)):
        assert_array_equal(before, after)


def test_features_whose_variance_float64_cannot_invert():
    # a column of zeros and one value of 1.4e-154 (found by the fuzz test):
    # its variance, 3e-309, is below float64's normal numbers, and the
    # clusters' precision overflowed into NaN parameters. Such rows now have
    # no spread the clusters can use, as rows with none
    X = np.array([[0.0]] * 6 + [[1.41187837e-154]])
    y = np.array([0, 0, 0, 0, 1, -1, 0])
    tasks = np.array([0, 1, 1, 1, 1, 1, 1])
    meta = MetaClassifier(unlabeled_weight=0.5, gamma=1.0, prior="isotropic",
                          random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nothing to validate on
        meta.fit(X, y, tasks=tasks)
    for name in ("task_params_", "meta_params_", "class_means_",
                 "within_class_covariance_"):
        assert np.all(np.isfinite(getattr(meta, name)))
