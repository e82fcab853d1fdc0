"""skmeta inside scikit-learn's pipelines, searches and cross-validation."""

import numpy as np
import pytest
from sklearn import clone, config_context
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


def test_grid_search_scores_are_skmeta_few_shot_scores(stores):
    # What the search reports for a candidate is skmeta's own few-shot score
    # (the pipeline fitted on the training stores and the shots of the
    # held-out ones, scored on their other rows), from worker processes
    X, y, groups = stores
    cv = FewShotSplit(n_splits=3, n_shots=3, random_state=0)
    grid = {"meta__gamma": [0.1, 10.0], "meta__estimator__C": [0.1, 1.0]}
    pipeline = _task_pipeline(prior="isotropic")
    search = GridSearchCV(pipeline, grid, cv=cv, scoring="roc_auc", n_jobs=2)
    search.fit(X, y, groups=groups)
    results = search.cv_results_
    candidate = {"meta__gamma": 10.0, "meta__estimator__C": 0.1}
    i = results["params"].index(candidate)
    for k, (train, test) in enumerate(cv.split(X, y, groups)):
        model = clone(pipeline).set_params(**candidate).fit(X.iloc[train],
                                                            y.iloc[train])
        expected = roc_auc_score(y.iloc[test],
                                 model.predict_proba(X.iloc[test])[:, 1])
        np.testing.assert_allclose(results[f"split{k}_test_score"][i], expected)
    # the base estimator's own C reaches skmeta's inner problem
    def mean_score(params):
        return results["mean_test_score"][results["params"].index(params)]

    for gamma in grid["meta__gamma"]:
        assert (mean_score({"meta__gamma": gamma, "meta__estimator__C": 0.1})
                != mean_score({"meta__gamma": gamma, "meta__estimator__C": 1.0}))
    # the refitted pipeline is skmeta fitted on every store with the chosen
    # parameters, and scores new rows of seen stores by their own models
    by_hand = clone(pipeline).set_params(**search.best_params_).fit(X, y)
    proba = search.predict_proba(X)[:, 1]
    np.testing.assert_allclose(proba, by_hand.predict_proba(X)[:, 1],
                               rtol=1e-12)
    assert roc_auc_score(y, proba) > 0.8


def test_tasks_routed_as_metadata_with_default_scoring(stores):
    X, y, groups = stores
    X_num = X.drop(columns="store")
    grid = {"metaclassifier__gamma": [0.1, 10.0]}
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), MetaClassifier(prior="isotropic"))
        search = GridSearchCV(pipe, grid,
                              cv=FewShotSplit(n_splits=3, n_shots=3,
                                              random_state=0))
        # tasks go to fit and to the default score (requested by default)
        search.fit(X_num, y, groups=groups, tasks=groups)
        scores = search.cv_results_["mean_test_score"]
        # the same numbers as the task-column pipeline with accuracy scoring
        column = GridSearchCV(_task_pipeline(prior="isotropic"),
                              {"meta__gamma": [0.1, 10.0]},
                              cv=FewShotSplit(n_splits=3, n_shots=3,
                                              random_state=0),
                              scoring="accuracy").fit(X, y, groups=groups)
    np.testing.assert_allclose(scores, column.cv_results_["mean_test_score"])


def test_cross_validation_helpers_with_task_column(stores):
    X, y, groups = stores
    model = _task_pipeline(gamma=1.0, prior="isotropic")
    cv = FewShotSplit(n_splits=3, n_shots=5, random_state=0)
    scores = cross_val_score(model, X, y, groups=groups, cv=cv)
    assert scores.shape == (3,) and scores.mean() > 0.75
    results = cross_validate(model, X, y, groups=groups, cv=cv,
                             scoring=["accuracy", "roc_auc"])
    np.testing.assert_allclose(results["test_accuracy"], scores)
    # on whole training splits, the same fits and scores
    _, _, test_scores = learning_curve(model, X, y, groups=groups, cv=cv,
                                       train_sizes=[1.0])
    np.testing.assert_allclose(test_scores[0], scores)


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
