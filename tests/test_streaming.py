"""Streaming tasks: ``partial_fit`` moves the prior online (incremental EM).

References: one batch fit on all the tasks (the issue's target: twenty
chunks of 200 tasks within 5% of one fit on 4,000), the statistics of the
fitted tasks computed directly from their parameters, and the EM fixed point
of the batch fit.
"""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import Ridge
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MetaClassifier, MetaRegressor
from skmeta._methods._proximal import prior_from_moments
from skmeta._methods._statistics import TaskStatistics
from skmeta.datasets import make_meta_regression

N_TASKS, CHUNK = 4000, 200


def relative(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


def logistic_tasks(n_tasks, n_per_task, seed=0):
    """Tasks of a hierarchical logistic model, ``theta_t ~ N(theta0, D)``."""
    rng = np.random.default_rng(seed)
    coef = np.array([1.0, -0.5, 0.5, 0.0]) + rng.standard_normal(
        (n_tasks, 4)) * np.array([0.8, 0.6, 0.5, 0.6])
    intercept = 0.3 + 0.5 * rng.standard_normal(n_tasks)
    tasks = np.repeat(np.arange(n_tasks), n_per_task)
    X = rng.standard_normal((tasks.size, 4))
    z = np.einsum("ij,ij->i", X, coef[tasks]) + intercept[tasks]
    y = (rng.random(tasks.size) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return X, y, tasks


def regression_tasks(n_tasks, seed=0):
    return make_meta_regression(n_tasks=n_tasks, n_samples_per_task=20,
                                n_features=5, n_informative=5, noise=0.5,
                                random_state=seed)


def stream(meta, X, y, tasks, chunk, **kwargs):
    for start in range(0, int(tasks.max()) + 1, chunk):
        rows = (tasks >= start) & (tasks < start + chunk)
        meta.partial_fit(X[rows], y[rows], tasks=tasks[rows], **kwargs)
    return meta


# --------------------------------------------------------------------------
# the target: twenty chunks of 200 tasks against one fit on 4,000
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind, prior", [("regressor", "diagonal"),
                                         ("regressor", "full"),
                                         ("classifier", "diagonal")])
def test_twenty_chunks_match_one_fit_on_all_tasks(kind, prior):
    if kind == "regressor":
        X, y, tasks = regression_tasks(N_TASKS + 50)
        Meta, rows_per_task = MetaRegressor, 20
    else:
        X, y, tasks = logistic_tasks(N_TASKS + 50, 50)
        Meta, rows_per_task = MetaClassifier, 50
    train = tasks < N_TASKS
    batch = Meta(prior=prior).fit(X[train], y[train], tasks=tasks[train])
    online = stream(Meta(prior=prior), X[train], y[train], tasks[train], CHUNK)
    assert online.n_tasks_seen_ == N_TASKS
    assert_array_equal(online.tasks_, batch.tasks_)
    assert relative(online.meta_params_, batch.meta_params_) < 0.05
    assert relative(online.prior_precision_, batch.prior_precision_) < 0.05
    assert relative(online.gamma_, batch.gamma_) < 0.05

    new = ~train
    if kind == "regressor":
        def predict(model, Z, **kwargs):
            return model.predict(Z, **kwargs)
    else:
        def predict(model, Z, **kwargs):
            return model.predict_proba(Z, **kwargs)
    # zero-shot: an unseen task gets the prior model
    assert relative(predict(online, X[new], tasks=tasks[new]),
                    predict(batch, X[new], tasks=tasks[new])) < 0.05
    # few-shot: unseen tasks adapted from 5 rows each
    support = new & (np.arange(tasks.size) % rows_per_task < 5)
    query = new & ~support
    from_online = online.adapt_tasks(X[support], y[support],
                                     tasks=tasks[support])
    from_batch = batch.adapt_tasks(X[support], y[support], tasks=tasks[support])
    got = np.concatenate([predict(from_online[t], X[query & (tasks == t)])
                          for t in from_online])
    expected = np.concatenate([predict(from_batch[t], X[query & (tasks == t)])
                               for t in from_online])
    assert relative(got, expected) < 0.05
