"""skmeta inside scikit-learn's pipelines, searches and cross-validation."""

import numpy as np
import pytest
from sklearn import config_context
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    cross_val_score,
    cross_validate,
    learning_curve,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skmeta import MetaClassifier, MetaRegressor
from skmeta.datasets import make_meta_classification, make_meta_regression
from skmeta.model_selection import FewShotSplit

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def stores():
    """Classification tasks in a DataFrame with a string ``store`` column."""
    X, y, tasks = make_meta_classification(
        n_tasks=24, n_samples_per_task=30, n_features=5, n_informative=3,
        n_redundant=1, task_spread=1.0, as_frame=True, random_state=0)
    X = X.rename(columns={"task": "store"})
    X["store"] = "store-" + X["store"].astype(str)
    # scaled columns make the ColumnTransformer's scaling matter
    X[["x0", "x1"]] *= [100.0, 0.01]
    return X, pd.Series(y, name="y"), X["store"].to_numpy()


def _task_pipeline(**meta_params):
    numeric = ["x0", "x1", "x2", "x3", "x4"]
    preprocess = ColumnTransformer(
        [("scale", StandardScaler(), numeric),
         ("store", "passthrough", ["store"])],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    meta = MetaClassifier(LogisticRegression(), task_column="store", **meta_params)
    return Pipeline([("preprocess", preprocess), ("meta", meta)])


def test_grid_search_with_task_column_and_few_shot_splits(stores):
    X, y, groups = stores
    grid = {"meta__gamma": [0.1, 1.0, 10.0], "meta__estimator__C": [0.1, 1.0]}
    search = GridSearchCV(_task_pipeline(), grid,
                          cv=FewShotSplit(n_splits=3, n_shots=3, random_state=0),
                          scoring="roc_auc", n_jobs=2)
    search.fit(X, y, groups=groups)
    scores = search.cv_results_["mean_test_score"]
    best = int(np.argmax(scores))
    # the reported optimum is the best of the table
    assert search.best_score_ == scores[best]
    assert search.best_params_ == search.cv_results_["params"][best]
    assert np.ptp(scores) > 0  # the grid is not flat: it does select
    # the refitted pipeline scores new data of seen stores by their models
    proba = search.predict_proba(X)[:, 1]
    assert roc_auc_score(y, proba) > 0.8


def test_grid_search_scores_are_what_the_splits_give(stores):
    X, y, groups = stores
    cv = FewShotSplit(n_splits=2, n_shots=3, random_state=1)
    search = GridSearchCV(_task_pipeline(), {"meta__gamma": [1.0]}, cv=cv,
                          scoring="roc_auc").fit(X, y, groups=groups)
    expected = []
    for train, test in cv.split(X, y, groups):
        model = _task_pipeline(gamma=1.0).fit(X.iloc[train], y.iloc[train])
        expected.append(roc_auc_score(y.iloc[test],
                                      model.predict_proba(X.iloc[test])[:, 1]))
    np.testing.assert_allclose(search.cv_results_["mean_test_score"][0],
                               np.mean(expected))


def test_tasks_routed_as_metadata_with_default_scoring(stores):
    X, y, groups = stores
    X_num = X.drop(columns="store")
    grid = {"metaclassifier__gamma": [0.1, 10.0]}
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), MetaClassifier())
        search = GridSearchCV(pipe, grid,
                              cv=FewShotSplit(n_splits=3, n_shots=3,
                                              random_state=0))
        # tasks go to fit and to the default score (requested by default)
        search.fit(X_num, y, groups=groups, tasks=groups)
        scores = search.cv_results_["mean_test_score"]
        assert search.best_score_ == scores.max()
        # the same numbers as the task-column pipeline with accuracy scoring
        column = GridSearchCV(_task_pipeline(), {"meta__gamma": [0.1, 10.0]},
                              cv=FewShotSplit(n_splits=3, n_shots=3,
                                              random_state=0),
                              scoring="accuracy").fit(X, y, groups=groups)
    np.testing.assert_allclose(scores, column.cv_results_["mean_test_score"])


def test_cross_validation_helpers_with_task_column(stores):
    X, y, groups = stores
    model = _task_pipeline()
    cv = FewShotSplit(n_splits=3, n_shots=5, random_state=0)
    scores = cross_val_score(model, X, y, groups=groups, cv=cv)
    assert scores.shape == (3,) and np.all(scores > 0.6)
    results = cross_validate(model, X, y, groups=groups, cv=cv,
                             scoring=["accuracy", "roc_auc"])
    np.testing.assert_allclose(results["test_accuracy"], scores)
    sizes, train_scores, test_scores = learning_curve(
        model, X, y, groups=groups, cv=cv, train_sizes=[0.5, 1.0])
    assert test_scores.shape == (2, 3)


def test_zero_shot_group_kfold_uses_the_prior(stores):
    X, y, groups = stores
    model = _task_pipeline(gamma=1.0)
    zero = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(3))
    few = cross_val_score(model, X, y, groups=groups,
                          cv=FewShotSplit(n_splits=3, n_shots=5, random_state=0))
    # unseen stores are predicted by the prior model: better than chance,
    # and a few shots of each store help
    assert zero.mean() > 0.6
    assert few.mean() > zero.mean()


def test_regression_pipeline_with_routing():
    X, y, tasks = make_meta_regression(n_tasks=20, n_samples_per_task=15,
                                       n_features=4, noise=1.0, random_state=0)
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), MetaRegressor(Ridge()))
        scores = cross_val_score(pipe, X, y,
                                 params={"tasks": tasks, "groups": tasks},
                                 cv=FewShotSplit(n_splits=2, n_shots=5,
                                                 stratify=False, random_state=0))
    assert np.all(scores > 0.5)


def test_polars_input():
    pl = pytest.importorskip("polars")
    X, y, tasks = make_meta_classification(n_tasks=10, n_samples_per_task=20,
                                           n_features=4, n_informative=2,
                                           n_redundant=0, random_state=0)
    frame = pl.DataFrame({f"x{j}": X[:, j] for j in range(4)}).with_columns(
        pl.Series("store", [f"s{t}" for t in tasks]))
    meta = MetaClassifier(task_column="store").fit(frame, y)
    reference = MetaClassifier().fit(X, y, tasks=np.array([f"s{t}" for t in tasks]))
    np.testing.assert_allclose(meta.task_params_, reference.task_params_)
    np.testing.assert_array_equal(meta.feature_names_in_,
                                  ["x0", "x1", "x2", "x3", "store"])
    np.testing.assert_array_equal(meta.predict(frame), reference.predict(
        X, tasks=np.array([f"s{t}" for t in tasks])))
    # a ColumnTransformer that outputs polars keeps the task column usable
    preprocess = ColumnTransformer(
        [("scale", StandardScaler(), ["x0", "x1", "x2", "x3"]),
         ("store", "passthrough", ["store"])],
        verbose_feature_names_out=False,
    ).set_output(transform="polars")
    pipe = Pipeline([("pre", preprocess),
                     ("meta", MetaClassifier(task_column="store"))]).fit(frame, y)
    assert pipe.score(frame, y) > 0.8
