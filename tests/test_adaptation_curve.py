"""adaptation_curve against hand-written loops over FewShotSplit."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.exceptions import FitFailedWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MetaClassifier, MetaRegressor
from skmeta.datasets import make_meta_classification, make_meta_regression
from skmeta.model_selection import (
    FewShotSplit,
    _draw_support,
    _task_and_shot_streams,
    adaptation_curve,
)


@pytest.fixture(scope="module")
def classification():
    X, y, tasks = make_meta_classification(
        n_tasks=12, n_samples_per_task=24, n_features=4, n_informative=2,
        n_redundant=0, task_spread=1.0, random_state=0)
    return X, y, tasks


def _seeds(random_state, n_repeats):
    # the documented protocol: one FewShotSplit seed per repeat
    return np.random.RandomState(random_state).randint(
        np.iinfo(np.int32).max, size=n_repeats)


def _hand_curve(fit_task, X, y, groups, shots, n_repeats, random_state,
                test_size=0.25, stratify=True, score=accuracy_score):
    """The loop adaptation_curve replaces: (scores, held-out tasks)."""
    seeds = _seeds(random_state, n_repeats)
    scores, held = [], []
    for j, k in enumerate(shots):
        per_repeat = []
        for seed in seeds:
            cv = FewShotSplit(n_splits=1, n_shots=k, test_size=test_size,
                              stratify=stratify, random_state=seed)
            train, test = next(cv.split(X, y, groups))
            tasks = np.unique(groups[test])
            if j == 0:
                held.append(tasks)
            row = []
            for t in tasks:
                shots_t = train[groups[train] == t]
                query_t = test[groups[test] == t]
                model = fit_task(train, shots_t, t)
                row.append(score(y[query_t], model.predict(X[query_t])))
            per_repeat.append(row)
        scores.append(per_repeat)
    return np.array(scores), np.array(held)


def test_per_task_matches_a_hand_written_loop(classification):
    X, y, groups = classification
    shots, scores, test_tasks = adaptation_curve(
        LogisticRegression(), X, y, groups=groups, shots=[3, 1], test_size=0.25,
        n_repeats=3, random_state=7)
    np.testing.assert_array_equal(shots, [1, 3])

    def fit_task(train, shots_t, t):
        return LogisticRegression().fit(X[shots_t], y[shots_t])

    expected, held = _hand_curve(fit_task, X, y, groups, [1, 3], 3, 7)
    assert scores.shape == (2, 3, 3)
    np.testing.assert_array_equal(test_tasks, held)
    np.testing.assert_array_equal(scores, expected)


def test_pooled_matches_a_hand_written_loop(classification):
    X, y, groups = classification
    _, scores, _ = adaptation_curve(
        LogisticRegression(), X, y, groups=groups, shots=[2], strategy="pooled",
        test_size=0.25, n_repeats=2, random_state=1)

    def fit_task(train, shots_t, t):
        return LogisticRegression().fit(X[train], y[train])

    expected, _ = _hand_curve(fit_task, X, y, groups, [2], 2, 1)
    np.testing.assert_array_equal(scores, expected)


def test_adapt_matches_a_hand_written_loop_and_partial_fit(classification):
    X, y, groups = classification
    meta = MetaClassifier(LogisticRegression(), gamma=1.0)
    shots, scores, test_tasks = adaptation_curve(
        meta, X, y, groups=groups, shots=[1, 4], test_size=0.25, n_repeats=2,
        random_state=3)
    seeds = _seeds(3, 2)
    for r, seed in enumerate(seeds):
        for j, k in enumerate(shots):
            cv = FewShotSplit(n_splits=1, n_shots=int(k), test_size=0.25,
                              random_state=seed)
            train, test = next(cv.split(X, y, groups))
            held = np.isin(groups, groups[test])
            fitted = MetaClassifier(LogisticRegression(), gamma=1.0).fit(
                X[~held], y[~held], tasks=groups[~held])
            support = train[held[train]]
            models = fitted.adapt_tasks(X[support], y[support],
                                        tasks=groups[support])
            # the same predictions as partial_fit, then predict with tasks
            fitted.partial_fit(X[support], y[support], tasks=groups[support])
            for i, t in enumerate(test_tasks[r]):
                query = test[groups[test] == t]
                pred = models[t].predict(X[query])
                np.testing.assert_array_equal(
                    pred, fitted.predict(X[query], tasks=groups[query]))
                assert scores[j, r, i] == accuracy_score(y[query], pred)


def test_frozen_meta_learner_is_not_refitted(classification):
    X, y, groups = classification
    new = np.unique(groups)[-3:]
    train = ~np.isin(groups, new)
    meta = MetaClassifier(LogisticRegression(), gamma=1.0).fit(
        X[train], y[train], tasks=groups[train])
    prior = meta.meta_params_.copy()
    frozen = adaptation_curve(
        FrozenEstimator(meta), X, y, groups=groups, shots=[1, 2],
        held_out_tasks=new, n_repeats=2, random_state=0)
    np.testing.assert_array_equal(meta.meta_params_, prior)
    refitted = adaptation_curve(
        MetaClassifier(LogisticRegression(), gamma=1.0), X, y, groups=groups,
        shots=[1, 2], held_out_tasks=new, n_repeats=2, random_state=0)
    np.testing.assert_array_equal(frozen[1], refitted[1])
    np.testing.assert_array_equal(frozen[2], [new, new])


def test_held_out_tasks_and_knn_neighbours(classification):
    X, y, groups = classification
    new = np.unique(groups)[[2, 5, 7]]
    shots, scores, test_tasks = adaptation_curve(
        KNeighborsClassifier(), X, y, groups=groups, shots=[1, 2, 5],
        held_out_tasks=new[::-1].tolist(), n_repeats=2, random_state=4)
    np.testing.assert_array_equal(test_tasks, [new, new])
    # held-out tasks fixed, shots drawn as FewShotSplit draws them
    seeds = _seeds(4, 2)
    for r, seed in enumerate(seeds):
        for j, k in enumerate(shots):
            cv = FewShotSplit(n_splits=1, n_shots=int(k), test_size=1,
                              random_state=seed)
            # rebuild the support of the fixed tasks from the shot stream
            pools = cv._support_pools(y, *np.unique(groups, return_inverse=True))
            _, shot_rng = _task_and_shot_streams(seed)
            support = _draw_support(pools, np.searchsorted(np.unique(groups), new),
                                    int(k), shot_rng)
            for i, t in enumerate(new):
                rows = np.flatnonzero(groups == t)
                fit = np.intersect1d(rows, support)
                query = np.setdiff1d(rows, support)
                n_neighbors = min(5, (len(fit) - 1) | 1)
                model = KNeighborsClassifier(n_neighbors=n_neighbors).fit(
                    X[fit], y[fit])
                assert scores[j, r, i] == accuracy_score(y[query],
                                                         model.predict(X[query]))


def test_regression_defaults_to_unstratified_r2():
    X, y, groups = make_meta_regression(n_tasks=10, n_samples_per_task=15,
                                        n_features=3, noise=1.0, random_state=0)
    _, scores, _ = adaptation_curve(Ridge(alpha=1e-3), X, y, groups=groups,
                                    shots=[4], n_repeats=2, random_state=0)

    def fit_task(train, shots_t, t):
        return Ridge(alpha=1e-3).fit(X[shots_t], y[shots_t])

    expected, _ = _hand_curve(fit_task, X, y, groups, [4], 2, 0, test_size=0.2,
                              stratify=False, score=r2_score)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=0)
    # and a meta-regressor beats the per-task fits with 4 samples
    _, meta, _ = adaptation_curve(MetaRegressor(Ridge(alpha=1e-3), gamma="auto"),
                                  X, y, groups=groups, shots=[4], n_repeats=2,
                                  random_state=0)
    assert np.mean(meta) > np.mean(scores)


def test_string_labels_pandas_and_sparse_inputs(classification):
    pd = pytest.importorskip("pandas")
    X, y, groups = classification
    names = np.array([f"store-{t:02d}" for t in groups])
    reference = adaptation_curve(
        LogisticRegression(), X, y, groups=groups, shots=[2], n_repeats=2,
        random_state=0)
    for X_in, groups_in in [(pd.DataFrame(X), pd.Series(names)),
                            (sparse.csr_matrix(X), names.tolist())]:
        _, scores, test_tasks = adaptation_curve(
            LogisticRegression(), X_in, pd.Series(y), groups=groups_in,
            shots=[2], n_repeats=2, random_state=0)
        np.testing.assert_allclose(scores, reference[1], atol=1e-12)
        np.testing.assert_array_equal(
            test_tasks, [[f"store-{t:02d}" for t in row] for row in reference[2]])


def test_n_jobs_does_not_change_the_results(classification):
    X, y, groups = classification
    args = (LogisticRegression(), X, y)
    kwargs = {"groups": groups, "shots": [1, 3], "n_repeats": 3,
              "random_state": 0}
    serial = adaptation_curve(*args, **kwargs)
    parallel = adaptation_curve(*args, n_jobs=2, **kwargs)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)


def test_random_state_instance_and_times(classification):
    X, y, groups = classification
    a = adaptation_curve(LogisticRegression(), X, y, groups=groups, shots=[1],
                         n_repeats=2, random_state=np.random.RandomState(0))
    b = adaptation_curve(LogisticRegression(), X, y, groups=groups, shots=[1],
                         n_repeats=2, random_state=0)
    np.testing.assert_array_equal(a[1], b[1])
    *_, fit_times, score_times = adaptation_curve(
        LogisticRegression(), X, y, groups=groups, shots=[1, 2], n_repeats=3,
        return_times=True, random_state=0)
    assert fit_times.shape == score_times.shape == (2, 3)
    assert np.all(fit_times > 0) and np.all(score_times > 0)


def test_short_class_warns_and_gives_all_its_samples(classification):
    X, y, groups = classification
    # a task with a single sample of class 1
    keep = ~((groups == 0) & (y == 1))
    keep[np.flatnonzero((groups == 0) & (y == 1))[0]] = True
    with pytest.warns(UserWarning, match=re.escape("task 0, class 1: 1 sample")):
        _, scores, _ = adaptation_curve(
            LogisticRegression(), X[keep], y[keep], groups=groups[keep],
            shots=[2], held_out_tasks=[0, 1], n_repeats=1, random_state=0)
    assert np.all(np.isfinite(scores))


def test_failed_fits_get_error_score_and_a_warning(classification):
    X, y, groups = classification
    y = y.copy()
    y[groups == 3] = 0  # one class only: per-task logistic fits fail
    with pytest.warns(FitFailedWarning, match=r"of 8 fits failed.*\[3\] with 1"):
        _, scores, _ = adaptation_curve(
            LogisticRegression(), X, y, groups=groups, shots=[1, 2],
            held_out_tasks=[1, 2, 3, 4], n_repeats=1, random_state=0)
    assert np.isnan(scores[:, 0, 2]).all()
    assert np.isfinite(np.delete(scores, 2, axis=2)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        _, scores, _ = adaptation_curve(
            LogisticRegression(), X, y, groups=groups, shots=[1],
            held_out_tasks=[3], n_repeats=1, error_score=-1.0, random_state=0)
    np.testing.assert_array_equal(scores, [[[-1.0]]])
    with pytest.raises(ValueError, match="class"):
        adaptation_curve(LogisticRegression(), X, y, groups=groups, shots=[1],
                         held_out_tasks=[3], error_score="raise")


def test_one_new_task_that_fails_to_adapt_costs_only_its_own_scores(
        classification, monkeypatch):
    # adapt_tasks raises where any task's adapted parameters are not finite;
    # the curve then adapts the held-out tasks one by one, and only the
    # failing one gets error_score (before: every held-out task did)
    X, y, groups = classification
    X = X.copy()
    X[groups == 3, 0] = 1e3  # marks task 3's rows
    solve = MetaClassifier._adapt_method

    def fails_on_task_3(self, family, rows, labels=None):
        theta = solve(self, family, rows, labels)
        for code in range(rows.n_tasks):
            if np.any(rows.X[rows.codes == code, 0] > 500):
                theta[code] = np.nan
        return theta

    meta = MetaClassifier(LogisticRegression(), gamma=1.0)
    kwargs = dict(groups=groups, shots=[1, 2], held_out_tasks=[1, 2, 3, 4],
                  n_repeats=1, random_state=0)
    _, expected, _ = adaptation_curve(meta, X, y, **kwargs)
    monkeypatch.setattr(MetaClassifier, "_adapt_method", fails_on_task_3)
    with pytest.warns(FitFailedWarning, match=r"\[3\] with 1"):
        _, scores, _ = adaptation_curve(meta, X, y, **kwargs)
    assert np.isnan(scores[:, 0, 2]).all()
    np.testing.assert_array_equal(np.delete(scores, 2, axis=2),
                                  np.delete(expected, 2, axis=2))
    with pytest.raises(FloatingPointError, match=r"new tasks \[3\]"):
        adaptation_curve(meta, X, y, error_score="raise", **kwargs)


def test_failed_scoring_warns(classification):
    X, y, groups = classification
    keep = ~((groups == 0) & (y == 1))
    keep[np.flatnonzero((groups == 0) & (y == 1))[:2]] = True

    def needs_two_classes(estimator, X, y):
        if len(np.unique(y)) < 2:
            raise ValueError("a single class in y")
        return accuracy_score(y, estimator.predict(X))

    # task 0 keeps 2 samples of class 1, both shots: its query has one class
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some tasks have fewer")
        with pytest.warns(UserWarning, match=r"1 of 2 task scores failed.*"
                          r"\[0\] with 2 shot\(s\): ValueError: a single class"):
            _, scores, _ = adaptation_curve(
                LogisticRegression(), X[keep], y[keep], groups=groups[keep],
                shots=[2], held_out_tasks=[0, 1], n_repeats=1,
                scoring=needs_two_classes, random_state=0)
    assert np.isnan(scores[0, 0, 0]) and np.isfinite(scores[0, 0, 1])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"strategy": "adapt"}, ValueError, "needs a meta-learner with an adapt"),
        ({"shots": [0, 1]}, ValueError, "at least 1"),
        ({"shots": [2, 2]}, ValueError, "duplicates"),
        ({"shots": [1.5]}, ValueError, "1-D array-like of ints"),
        ({"shots": []}, ValueError, "non-empty"),
        ({"test_size": 12}, ValueError, "leaves none for training"),
        # a bool passed the constraints and was read as the fraction 1.0
        ({"test_size": True}, TypeError, "got True of type bool"),
        ({"held_out_tasks": [1], "test_size": 0.5}, ValueError, "not both"),
        ({"held_out_tasks": [1, 99, "x"]}, ValueError, "not in groups: [99, 'x']"),
        ({"held_out_tasks": list(range(12))}, ValueError, "leaves none"),
        ({"strategy": "nope"}, InvalidParameterError, "strategy"),
        ({"n_repeats": 0}, InvalidParameterError, "n_repeats"),
        ({"scoring": "not-a-scorer"}, InvalidParameterError, "scoring"),
    ],
)
def test_errors(classification, kwargs, error, message):
    X, y, groups = classification
    with pytest.raises(error, match=re.escape(message)):
        adaptation_curve(LogisticRegression(), X, y, groups=groups, **kwargs)


def test_estimator_errors(classification):
    X, y, groups = classification
    with pytest.raises(ValueError, match="task_column=None"):
        adaptation_curve(MetaClassifier(task_column=0), X, y, groups=groups)
    with pytest.raises(ValueError, match="neither a classifier nor a regressor"):
        adaptation_curve(KMeans(), X, y, groups=groups)
    with pytest.raises(ValueError, match="groups must be 1-dimensional"):
        adaptation_curve(LogisticRegression(), X, y,
                         groups=np.c_[groups, groups])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        adaptation_curve(LogisticRegression(), X, y, groups=groups[:-1])


@settings(max_examples=15, deadline=None)
@given(n_tasks=st.integers(3, 6), k=st.integers(1, 3), seed=st.integers(0, 1000),
       n_repeats=st.integers(1, 3))
def test_property_per_task_equals_hand_loop(n_tasks, k, seed, n_repeats):
    rng = np.random.RandomState(seed)
    groups = np.repeat(np.arange(n_tasks), 2 * k + 3)
    y = np.tile(np.r_[np.zeros(k + 1), np.ones(k + 2)], n_tasks).astype(int)
    X = rng.normal(size=(len(y), 2)) + y[:, None]
    perm = rng.permutation(len(y))
    X, y, groups = X[perm], y[perm], groups[perm]
    _, scores, test_tasks = adaptation_curve(
        KNeighborsClassifier(n_neighbors=3), X, y, groups=groups, shots=[k],
        test_size=1, n_repeats=n_repeats, random_state=seed)

    def fit_task(train, shots_t, t):
        return KNeighborsClassifier(n_neighbors=min(3, (len(shots_t) - 1) | 1)).fit(
            X[shots_t], y[shots_t])

    expected, held = _hand_curve(fit_task, X, y, groups, [k], n_repeats, seed,
                                 test_size=1)
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_array_equal(test_tasks, held)
