"""MetaEmbedding: gradients, the few-shot k-NN margin, scikit-learn compatibility."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
)

from skmeta import MetaEmbedding
from skmeta._embedding import _rows_by_task_and_class
from skmeta.datasets import make_subspace_tasks


@pytest.fixture(scope="module")
def subspace_tasks():
    # one call: the tasks share their subspace; tasks 150+ are the new ones
    X, y, tasks = make_subspace_tasks(n_tasks=150, n_samples_per_task=40,
                                      random_state=0)
    return X, y, tasks, tasks >= 100


@pytest.mark.parametrize("hidden", [(), (5,)], ids=["linear", "mlp"])
@pytest.mark.parametrize("loss", ["prototypical", "neighbourhood"])
def test_episode_gradient_matches_finite_differences(subspace_tasks, loss,
                                                     hidden):
    X, y, tasks, _ = subspace_tasks
    est = MetaEmbedding(n_components=3, hidden_layer_sizes=hidden,
                        activation="tanh", loss=loss, n_shots=3, alpha=0.1)
    _, rows = _rows_by_task_and_class(tasks, y)
    rng = np.random.RandomState(0)
    episodes = [est._draw_episode(rows[t], rng) for t in range(4)]
    sizes = est._sizes(X.shape[1])
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    params = rng.normal(scale=0.3, size=n_params)
    _, grad = est._loss_and_gradient(params, sizes, X, y, episodes)
    h = 1e-6
    fd = np.array([
        (est._loss_and_gradient(params + e, sizes, X, y, episodes)[0]
         - est._loss_and_gradient(params - e, sizes, X, y, episodes)[0]) / (2 * h)
        for e in np.eye(n_params) * h])
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) < 1e-6


def test_neighbourhood_loss_where_a_class_probability_underflows(
        subspace_tasks):
    # features ten times larger: a query row's own class gets probability
    # exp(-12,000) on average, below the smallest float. The loss, in logs,
    # stays finite and its gradient matches finite differences (it was the
    # loss clipped at -log(tiny) and a gradient of 0 / 0: NaN weights after
    # a fit on such features)
    X, y, tasks, _ = subspace_tasks
    X = 10.0 * X
    est = MetaEmbedding(n_components=3, loss="neighbourhood", n_shots=3,
                        alpha=0.1)
    _, rows = _rows_by_task_and_class(tasks, y)
    rng = np.random.RandomState(0)
    episodes = [est._draw_episode(rows[t], rng) for t in range(4)]
    sizes = est._sizes(X.shape[1])
    params = rng.normal(size=sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:])))
    loss, grad = est._loss_and_gradient(params, sizes, X, y, episodes)
    assert loss > -np.log(np.finfo(float).tiny)
    h = 1e-6
    fd = np.array([
        (est._loss_and_gradient(params + e, sizes, X, y, episodes)[0]
         - est._loss_and_gradient(params - e, sizes, X, y, episodes)[0]) / (2 * h)
        for e in np.eye(len(params)) * h])
    assert np.linalg.norm(grad - fd) / np.linalg.norm(fd) < 1e-6
    fitted = MetaEmbedding(loss="neighbourhood", max_iter=30,
                           random_state=0).fit(X, y, tasks=tasks)
    assert all(np.isfinite(W).all() for W in fitted.coefs_)
    assert np.all(np.isfinite(fitted.loss_curve_))


def few_shot_knn_accuracy(X, y, tasks, make_estimator, n_shots=5, seed=0):
    """Mean accuracy over tasks of k-NN fitted on ``n_shots`` per class."""
    rng = np.random.default_rng(seed)
    scores = []
    for t in np.unique(tasks):
        Xt, yt = X[tasks == t], y[tasks == t]
        support = np.concatenate([rng.permutation(np.flatnonzero(yt == k))[:n_shots]
                                  for k in np.unique(yt)])
        query = np.setdiff1d(np.arange(len(yt)), support)
        scores.append(make_estimator().fit(Xt[support], yt[support])
                      .score(Xt[query], yt[query]))
    return float(np.mean(scores))


@pytest.mark.parametrize("params", [
    dict(), dict(loss="neighbourhood"),
    dict(hidden_layer_sizes=(16,), n_components=4),
], ids=["linear-prototypical", "linear-neighbourhood", "mlp"])
def test_embedding_lifts_five_shot_knn_on_new_tasks(subspace_tasks, params):
    X, y, tasks, new = subspace_tasks
    embedding = MetaEmbedding(max_iter=100, random_state=0, **params).fit(
        X[~new], y[~new], tasks=tasks[~new])
    raw = few_shot_knn_accuracy(X[new], y[new], tasks[new],
                                lambda: KNeighborsClassifier(n_neighbors=3))
    embedded = few_shot_knn_accuracy(
        X[new], y[new], tasks[new],
        lambda: make_pipeline(FrozenEstimator(embedding),
                              KNeighborsClassifier(n_neighbors=3)))
    # measured on this seed: raw 0.641; embedded 0.880, 0.892, 0.859
    assert raw < 0.7
    assert embedded >= 0.85


def test_transform_is_the_learned_map(subspace_tasks):
    X, y, tasks, _ = subspace_tasks
    est = MetaEmbedding(n_components=2, hidden_layer_sizes=(4,), max_iter=5,
                        random_state=0).fit(X, y, tasks=tasks)
    hidden = np.maximum(X @ est.coefs_[0] + est.intercepts_[0], 0.0)
    assert_allclose(est.transform(X), hidden @ est.coefs_[1] + est.intercepts_[1])
    assert est.get_feature_names_out().tolist() == ["metaembedding0",
                                                    "metaembedding1"]
    assert est.loss_curve_.shape == (5,) and est.n_iter_ == 5


def test_tasks_without_two_classes_of_two_rows_are_refused():
    X = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match="at least 2 classes of at least 2"):
        MetaEmbedding().fit(X, [0, 1, 2, 0, 1, 2], tasks=[0, 0, 0, 1, 1, 1])


def test_tasks_that_give_no_episode_are_named(subspace_tasks):
    # nothing silently dropped: tasks of one class (or of classes of one
    # row) give no episode, and the fit says which it learned without
    X, y, tasks, _ = subspace_tasks
    keep = tasks < 6
    X, y, tasks = X[keep], y[keep].copy(), np.array(["t%d" % t for t in
                                                      tasks[keep]])
    y[tasks == "t2"] = y[tasks == "t2"][0]
    y[tasks == "t4"] = y[tasks == "t4"][0]
    with pytest.warns(UserWarning, match=r"2 of the 6 tasks .* \['t2', 't4'\]"):
        warned = MetaEmbedding(max_iter=5, random_state=0).fit(X, y, tasks=tasks)
    # the same episodes as a fit on the usable tasks alone
    usable = ~np.isin(tasks, ["t2", "t4"])
    alone = MetaEmbedding(max_iter=5, random_state=0).fit(
        X[usable], y[usable], tasks=tasks[usable])
    assert_allclose(warned.transform(X), alone.transform(X))


def test_an_int_hidden_layer_size_is_one_layer(subspace_tasks):
    # as scikit-learn's MLPs take hidden_layer_sizes=4
    X, y, tasks, _ = subspace_tasks
    one = MetaEmbedding(hidden_layer_sizes=4, max_iter=3, random_state=0).fit(
        X, y, tasks=tasks)
    same = MetaEmbedding(hidden_layer_sizes=(4,), max_iter=3,
                         random_state=0).fit(X, y, tasks=tasks)
    assert [W.shape for W in one.coefs_] == [(X.shape[1], 4), (4, 2)]
    assert_allclose(one.transform(X), same.transform(X))


@parametrize_with_checks([MetaEmbedding(max_iter=20, random_state=0),
                          MetaEmbedding(hidden_layer_sizes=(3,), max_iter=5,
                                        loss="neighbourhood", random_state=0)])
def test_sklearn_compatible_transformer(estimator, check):
    check(estimator)


def test_param_validation():
    check_param_validation("MetaEmbedding", MetaEmbedding())


def test_feature_names_out_need_a_fit():
    # as PCA: the names of the components exist once fitted
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MetaEmbedding(n_components=3).get_feature_names_out()
    X, y, tasks = make_subspace_tasks(n_tasks=6, n_samples_per_task=10,
                                      random_state=0)
    model = MetaEmbedding(n_components=3, max_iter=2, random_state=0).fit(
        X, y, tasks=tasks)
    assert model.get_feature_names_out().tolist() == [
        "metaembedding0", "metaembedding1", "metaembedding2"]


def test_fractional_layer_sizes_are_refused():
    # int() truncated (2.5,) to 2 units, where scikit-learn's MLPs refuse
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 3), rng.randint(0, 2, 60)
    with pytest.raises(TypeError, match="whole numbers of units"):
        MetaEmbedding(hidden_layer_sizes=(2.5,), max_iter=2).fit(
            X, y, tasks=np.repeat(np.arange(6), 10))
