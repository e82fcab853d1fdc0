"""Tests for skmeta.model_selection.FewShotSplit."""

import itertools
import math
import re
import warnings

import numpy as np
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    cross_val_score,
    cross_validate,
    learning_curve,
)

from skmeta.model_selection import FewShotSplit


def make_tasks(class_counts, *, shuffle_seed=None, labels=None):
    """Build a grouped classification data set.

    ``class_counts[t]`` maps each class present in task ``t`` to its number of
    samples. Rows are laid out task by task unless ``shuffle_seed`` is given.
    """
    groups, y = [], []
    for t, counts in enumerate(class_counts):
        label = t if labels is None else labels[t]
        for cls, n in counts.items():
            groups += [label] * n
            y += [cls] * n
    groups, y = np.asarray(groups), np.asarray(y)
    if shuffle_seed is not None:
        perm = np.random.RandomState(shuffle_seed).permutation(len(y))
        groups, y = groups[perm], y[perm]
    rng = np.random.RandomState(0)
    # Features that depend on the class so that classifiers have something to
    # learn in the integration tests.
    y_codes = np.unique(y, return_inverse=True)[1]
    X = rng.normal(size=(len(y), 3)) + y_codes[:, None]
    return X, y, groups


def assert_few_shot_split(train, test, y, groups, *, n_shots, stratified, n_test):
    """Check every invariant a FewShotSplit split must satisfy."""
    n_samples = len(groups)
    for idx in (train, test):
        assert idx.dtype == np.intp
        assert np.all(np.diff(idx) > 0), "indices must be sorted and unique"
    assert np.intersect1d(train, test).size == 0
    # train and test together cover every row exactly once
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(n_samples))

    held_out = np.unique(groups[test])
    assert len(held_out) == n_test

    in_train = np.zeros(n_samples, dtype=bool)
    in_train[train] = True
    for task in np.unique(groups):
        rows = groups == task
        if task not in held_out:
            assert in_train[rows].all(), f"task {task!r} is not fully in train"
            continue
        if stratified:
            # n_shots of every class, or all of a class that has fewer
            for cls in np.unique(y[rows]):
                n_support = np.sum(in_train & rows & (y == cls))
                expected = min(n_shots, np.sum(rows & (y == cls)))
                assert n_support == expected, (task, cls, n_support)
        else:
            assert np.sum(in_train & rows) == n_shots, task


BALANCED = [{0: 4, 1: 4}] * 6


# --- Core behaviour ---------------------------------------------------------


@pytest.mark.parametrize("stratify", [True, False])
@pytest.mark.parametrize("n_shots", [0, 1, 3])
def test_split_invariants(stratify, n_shots):
    X, y, groups = make_tasks([{0: 4, 1: 5}, {0: 6}, {1: 4, 2: 3}, {0: 5, 1: 4}] * 2)
    cv = FewShotSplit(
        n_splits=4, n_shots=n_shots, test_size=0.25, stratify=stratify, random_state=0
    )
    splits = list(cv.split(X, y, groups))
    assert len(splits) == 4
    for train, test in splits:
        assert_few_shot_split(
            train, test, y, groups, n_shots=n_shots, stratified=stratify, n_test=2
        )


def test_unstratified_ignores_class_balance():
    # With stratify=False a task may have a class with fewer than n_shots
    # samples: shots are drawn from the task as a whole.
    X, y, groups = make_tasks([{0: 1, 1: 5}] * 4)
    cv = FewShotSplit(
        n_splits=3, n_shots=3, test_size=2, stratify=False, random_state=0
    )
    for train, test in cv.split(X, y, groups):
        assert_few_shot_split(
            train, test, y, groups, n_shots=3, stratified=False, n_test=2
        )


def test_y_none_falls_back_to_unstratified():
    X, y, groups = make_tasks([{0: 1, 1: 5}] * 4)
    cv = FewShotSplit(n_splits=3, n_shots=3, test_size=1, random_state=0)
    for train, test in cv.split(X, groups=groups):
        assert_few_shot_split(
            train, test, y, groups, n_shots=3, stratified=False, n_test=1
        )


@pytest.mark.parametrize(
    "test_size, n_tasks, expected",
    [
        (0.2, 6, 2),  # 1.2 tasks, rounded up
        (0.5, 6, 3),
        (0.01, 6, 1),
        (0.8, 6, 5),
        (0.5, 2, 1),
        (1, 6, 1),
        (4, 6, 4),
        (5, 6, 5),
        (np.int64(2), 6, 2),
        (np.float32(0.5), 6, 3),
    ],
)
def test_number_of_held_out_tasks(test_size, n_tasks, expected):
    X, y, groups = make_tasks(BALANCED[:n_tasks])
    cv = FewShotSplit(n_splits=3, n_shots=1, test_size=test_size, random_state=0)
    for train, test in cv.split(X, y, groups):
        assert len(np.unique(groups[test])) == expected
        assert_few_shot_split(
            train, test, y, groups, n_shots=1, stratified=True, n_test=expected
        )


def test_float_test_size_rounds_like_group_shuffle_split():
    from sklearn.model_selection import GroupShuffleSplit

    X, y, groups = make_tasks([{0: 3, 1: 3}] * 10)
    for test_size in (0.1, 0.25, 0.3, 0.55, 0.7):
        ours = next(FewShotSplit(n_shots=0, test_size=test_size).split(X, y, groups))
        theirs = next(GroupShuffleSplit(test_size=test_size).split(X, y, groups))
        n_ours = len(np.unique(groups[ours[1]]))
        assert n_ours == len(np.unique(groups[theirs[1]]))
        assert n_ours == math.ceil(test_size * 10)


def test_reproducible_and_varies_across_splits():
    X, y, groups = make_tasks(BALANCED, shuffle_seed=1)

    def run(random_state):
        cv = FewShotSplit(n_splits=5, n_shots=2, random_state=random_state)
        return [(tr.tolist(), te.tolist()) for tr, te in cv.split(X, y, groups)]

    assert run(42) == run(42)
    assert run(np.random.RandomState(42)) == run(np.random.RandomState(42))
    assert run(42) != run(43)
    splits = run(42)
    assert len({str(s) for s in splits}) > 1, "all splits are identical"

    # Calling split twice on the same object gives the same splits for an int
    # seed, and fresh draws for a RandomState instance (as in scikit-learn).
    cv = FewShotSplit(n_splits=5, n_shots=2, random_state=0)
    first = [te.tolist() for _, te in cv.split(X, y, groups)]
    assert first == [te.tolist() for _, te in cv.split(X, y, groups)]
    cv = FewShotSplit(n_splits=5, n_shots=2, random_state=np.random.RandomState(0))
    first = [te.tolist() for _, te in cv.split(X, y, groups)]
    assert first != [te.tolist() for _, te in cv.split(X, y, groups)]


def test_shot_draws_vary_within_a_task():
    # One held-out task out of two, drawn many times: the support set of a
    # given task must not always be the same rows.
    X, y, groups = make_tasks([{0: 6, 1: 6}] * 2)
    cv = FewShotSplit(n_splits=30, n_shots=2, test_size=1, random_state=0)
    supports = {
        tuple(np.intersect1d(train, np.flatnonzero(groups == groups[test[0]])))
        for train, test in cv.split(X, y, groups)
    }
    assert len(supports) > 2


def test_held_out_tasks_do_not_depend_on_shots():
    X, y, groups = make_tasks(BALANCED)

    def held_out(**params):
        cv = FewShotSplit(n_splits=6, test_size=2, random_state=3, **params)
        return [np.unique(groups[te]).tolist() for _, te in cv.split(X, y, groups)]

    reference = held_out(n_shots=0)
    assert held_out(n_shots=1) == reference
    assert held_out(n_shots=3, stratify=False) == reference


def test_get_n_splits():
    X, y, groups = make_tasks(BALANCED)
    for n_splits in (1, 3, 7):
        cv = FewShotSplit(n_splits=n_splits, n_shots=1)
        assert cv.get_n_splits() == n_splits
        assert cv.get_n_splits(X, y, groups) == n_splits
        assert len(list(cv.split(X, y, groups))) == n_splits
    assert FewShotSplit().get_n_splits() == 5


def test_repr():
    assert repr(FewShotSplit(n_splits=3, n_shots=2, random_state=0)) == (
        "FewShotSplit(n_shots=2, n_splits=3, random_state=0, stratify=True,\n"
        "       test_size=0.2)"
    )


def test_shuffled_rows_and_string_labels():
    counts = [{"x": 3, "y": 4}, {"x": 5, "y": 3}, {"y": 6}, {"x": 4, "y": 4}] * 2
    labels = [f"task-{c}" for c in "abcdefgh"]
    _, y_sorted, groups_sorted = make_tasks(counts, labels=labels)
    X, y, groups = make_tasks(counts, labels=labels, shuffle_seed=7)
    assert groups.dtype.kind == "U"
    assert not np.all(groups[:-1] <= groups[1:]), "rows should be unsorted"

    cv = FewShotSplit(n_splits=5, n_shots=2, test_size=3, random_state=0)
    shuffled = list(cv.split(X, y, groups))
    for train, test in shuffled:
        assert_few_shot_split(
            train, test, y, groups, n_shots=2, stratified=True, n_test=3
        )

    # Which tasks are held out depends on the task labels only, not on where
    # their rows are.
    in_order = list(cv.split(X, y_sorted, groups_sorted))
    for (_, test_a), (_, test_b) in zip(shuffled, in_order):
        np.testing.assert_array_equal(
            np.unique(groups[test_a]), np.unique(groups_sorted[test_b])
        )


def test_pandas_and_list_inputs():
    pd = pytest.importorskip("pandas")
    X, y, groups = make_tasks(BALANCED, labels=list("pqrstu"), shuffle_seed=2)
    cv = FewShotSplit(n_splits=3, n_shots=1, random_state=0)
    expected = [(tr.tolist(), te.tolist()) for tr, te in cv.split(X, y, groups)]
    as_pandas = cv.split(pd.DataFrame(X), pd.Series(y), pd.Series(groups, dtype=object))
    assert [(tr.tolist(), te.tolist()) for tr, te in as_pandas] == expected
    as_lists = cv.split(X.tolist(), y.tolist(), groups.tolist())
    assert [(tr.tolist(), te.tolist()) for tr, te in as_lists] == expected


def test_zero_shot():
    X, y, groups = make_tasks([{0: 1}, {1: 2}, {0: 1, 1: 1}, {0: 3}])
    cv = FewShotSplit(n_splits=5, n_shots=0, test_size=0.5, random_state=0)
    for train, test in cv.split(X, y, groups):
        held_out = np.unique(groups[test])
        assert len(held_out) == 2
        # whole tasks are held out: no held-out row is used for training
        np.testing.assert_array_equal(test, np.flatnonzero(np.isin(groups, held_out)))
        np.testing.assert_array_equal(train, np.flatnonzero(~np.isin(groups, held_out)))


# --- Errors -----------------------------------------------------------------


def test_groups_none_raises_at_call():
    X, y, _ = make_tasks(BALANCED)
    # Raised by split itself, before any iteration.
    with pytest.raises(ValueError, match="'groups' parameter should not be None"):
        FewShotSplit().split(X, y)


def test_too_few_rows_unstratified():
    X, y, groups = make_tasks([{0: 5}, {0: 5}, {0: 3}, {0: 5}], labels=list("abcd"))
    cv = FewShotSplit(n_shots=3, stratify=False)
    msg = (
        "Task 'c' has only 3 sample(s), but holding it out needs at least "
        "n_shots + 1 = 4"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        cv.split(X, y, groups)
    # n_shots one lower is fine.
    list(FewShotSplit(n_shots=2, stratify=False).split(X, y, groups))


def test_class_smaller_than_n_shots_warns_and_proceeds():
    # Task 1 has a single sample of class 1: a store with fewer positives than
    # n_shots. The split warns, naming the task and the class, and proceeds.
    X, y, groups = make_tasks([{0: 3, 1: 3}, {0: 3, 1: 1}, {0: 3, 1: 3}])
    cv = FewShotSplit(n_splits=20, n_shots=2, test_size=1, random_state=0)
    msg = "task 1, class 1: 1 sample(s)"
    with pytest.warns(UserWarning, match=re.escape(msg)) as record:
        splits = list(cv.split(X, y, groups))
    assert len(record) == 1, "one warning per call to split, not per split"
    assert "fewer than n_shots=2" in str(record[0].message)
    held_out_1 = 0
    for train, test in splits:
        assert_few_shot_split(
            train, test, y, groups, n_shots=2, stratified=True, n_test=1
        )
        if groups[test[0]] == 1:
            held_out_1 += 1
            # its only sample of class 1 is a shot, the query has none of it
            only = np.flatnonzero((groups == 1) & (y == 1))
            assert np.isin(only, train).all()
            np.testing.assert_array_equal(np.unique(y[test]), [0])
    assert held_out_1 > 0
    # reproducible, warning included
    with pytest.warns(UserWarning, match=re.escape(msg)):
        again = list(cv.split(X, y, groups))
    for (tr_a, te_a), (tr_b, te_b) in zip(splits, again):
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(te_a, te_b)


def test_shots_are_nested_across_n_shots():
    # With the same random_state, the support set of n_shots=k is contained
    # in that of n_shots=k + j (adaptation_curve relies on it), also when a
    # class runs short.
    X, y, groups = make_tasks([{0: 6, 1: 6}, {0: 6, 1: 2}, {0: 5, 1: 7}] * 3,
                              shuffle_seed=4)
    supports = []
    for n_shots in (1, 2, 4):
        cv = FewShotSplit(n_splits=4, n_shots=n_shots, test_size=3, random_state=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            splits = list(cv.split(X, y, groups))
        supports.append([np.intersect1d(train, np.flatnonzero(
            np.isin(groups, np.unique(groups[test])))) for train, test in splits])
    for small, large in itertools.pairwise(supports):
        for a, b in zip(small, large):
            assert len(a) < len(b) and np.isin(a, b).all()


def test_warning_lists_several_short_classes():
    X, y, groups = make_tasks(
        [{"neg": 9, "pos": 1}] * 7 + [{"neg": 9, "pos": 5}], labels=list("abcdefgh"))
    with pytest.warns(UserWarning) as record:
        FewShotSplit(n_shots=3).split(X, y, groups)
    message = str(record[0].message)
    assert "task 'a', class 'pos': 1 sample(s)" in message
    assert "task 'e', class 'pos': 1 sample(s)" in message
    assert "(and 2 more)" in message
    assert "'h'" not in message


def test_grid_search_with_a_store_of_four_positives():
    # The situation of the issue: GridSearchCV used to die on it.
    X, y, groups = make_tasks([{0: 20, 1: 10}] * 9 + [{0: 26, 1: 4}], shuffle_seed=0)
    cv = FewShotSplit(n_splits=3, n_shots=5, random_state=0)
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv)
    with pytest.warns(UserWarning, match="task 9, class 1: 4 sample"):
        search.fit(X, y, groups=groups)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_string_class_named_in_warning():
    X, y, groups = make_tasks([{"cat": 3, "dog": 3}, {"cat": 3, "dog": 1}] * 2)
    with pytest.warns(UserWarning, match=re.escape("class 'dog': 1 sample(s)")):
        FewShotSplit(n_shots=2).split(X, y, groups)


def test_no_row_left_for_test_stratified():
    X, y, groups = make_tasks([{0: 3, 1: 3}, {0: 2, 1: 1}, {0: 3, 1: 3}])
    msg = (
        "Task 1 has 3 sample(s) in 2 class(es), none of which has more than "
        "n_shots=2: its support set would take every sample and leave none "
        "for testing"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        FewShotSplit(n_shots=2).split(X, y, groups)


def test_size_check_does_not_depend_on_the_draw():
    # The small task would rarely be held out; the error must not depend on
    # the random draw.
    X, y, groups = make_tasks([{0: 10}] * 19 + [{0: 2}])
    for seed in range(5):
        with pytest.raises(ValueError, match="Task 19 has 2 sample"):
            FewShotSplit(n_shots=2, test_size=1, random_state=seed).split(X, y, groups)


@pytest.mark.parametrize(
    "test_size, n_tasks, n_test",
    [(0.9, 3, 3), (3, 3, 3), (7, 3, 7), (0.5, 1, 1), (1, 1, 1)],
)
def test_test_size_leaving_no_training_task(test_size, n_tasks, n_test):
    X, y, groups = make_tasks(BALANCED[:n_tasks])
    msg = (
        f"test_size={test_size} holds out {n_test} of the {n_tasks} distinct tasks "
        "in groups, leaving none for training"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        FewShotSplit(n_shots=1, test_size=test_size).split(X, y, groups)


def test_regression_target_with_stratify():
    X, _, groups = make_tasks(BALANCED)
    y = np.linspace(0, 1, len(groups))
    msg = "got a 'continuous' target. Pass stratify=False"
    with pytest.raises(ValueError, match=re.escape(msg)):
        FewShotSplit(n_shots=1).split(X, y, groups)
    cv = FewShotSplit(n_shots=1, stratify=False, random_state=0)
    for train, test in cv.split(X, y, groups):
        assert_few_shot_split(
            train, test, y, groups, n_shots=1, stratified=False, n_test=2
        )


def test_groups_must_be_1d():
    X, y, groups = make_tasks(BALANCED)
    with pytest.raises(ValueError, match=r"groups must be 1-dimensional .*"
                       r"nested tasks, at least 2\), got an array of shape"):
        FewShotSplit().split(X, y, groups[:, None])
    # (two columns or more are nested tasks: see test_nested.py)
    with pytest.raises(ValueError, match="groups must be 1-dimensional"):
        FewShotSplit().split(X, y, groups[:, None, None])


def test_inconsistent_lengths():
    X, y, groups = make_tasks(BALANCED)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FewShotSplit().split(X, y, groups[:-1])


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"n_splits": 0}, ValueError, "n_splits must be at least 1, got n_splits=0."),
        ({"n_splits": 2.0}, TypeError, "n_splits must be an int, got 2.0 of type"),
        ({"n_splits": True}, TypeError, "n_splits must be an int, got True"),
        ({"n_shots": -1}, ValueError, "n_shots must be non-negative"),
        ({"n_shots": 1.5}, TypeError, "n_shots must be an int, got 1.5"),
        ({"n_shots": None}, TypeError, "n_shots must be an int, got None"),
        ({"test_size": 0.0}, ValueError, "test_size must be a float in (0, 1) or an"),
        ({"test_size": 1.0}, ValueError, "got test_size=1.0."),
        ({"test_size": -0.5}, ValueError, "got test_size=-0.5."),
        ({"test_size": 0}, ValueError, "got test_size=0."),
        ({"test_size": None}, TypeError, "got None of type NoneType."),
        ({"test_size": "0.2"}, TypeError, "got '0.2' of type str."),
        ({"test_size": True}, TypeError, "got True of type bool."),
        ({"stratify": "yes"}, TypeError, "stratify must be True or False, got 'yes'"),
        ({"stratify": 1}, TypeError, "stratify must be True or False, got 1"),
        ({"random_state": "0"}, TypeError, "random_state must be None, an int or a"),
        (
            {"random_state": np.random.default_rng(0)},
            TypeError,
            "random_state must be None, an int or a numpy RandomState instance",
        ),
    ],
)
def test_invalid_parameters(params, error, message):
    # Parameters are checked at construction, as in scikit-learn's KFold.
    with pytest.raises(error, match=re.escape(message)):
        FewShotSplit(**params)


def test_numpy_scalar_parameters_accepted():
    X, y, groups = make_tasks(BALANCED)
    cv = FewShotSplit(
        n_splits=np.int32(2),
        n_shots=np.int64(1),
        stratify=np.bool_(True),
        random_state=np.int64(0),
    )
    assert len(list(cv.split(X, y, groups))) == 2


# --- scikit-learn integration -----------------------------------------------


@pytest.fixture
def grouped_data():
    X, y, groups = make_tasks([{0: 6, 1: 6}] * 8, shuffle_seed=0)
    return X, y, groups


def test_metadata_request():
    # Like GroupKFold, groups is requested for split by default.
    requests = FewShotSplit().get_metadata_routing().split.requests
    assert requests == {"groups": True}


def test_cross_validate_uses_the_splits(grouped_data):
    X, y, groups = grouped_data
    cv = FewShotSplit(n_splits=3, n_shots=2, random_state=0)
    result = cross_validate(
        LogisticRegression(), X, y, groups=groups, cv=cv, return_indices=True
    )
    assert result["test_score"].shape == (3,)
    for (train, test), got_train, got_test in zip(
        cv.split(X, y, groups), result["indices"]["train"], result["indices"]["test"]
    ):
        np.testing.assert_array_equal(train, got_train)
        np.testing.assert_array_equal(test, got_test)


def test_cross_val_score(grouped_data):
    X, y, groups = grouped_data
    cv = FewShotSplit(n_splits=3, n_shots=2, random_state=0)
    scores = cross_val_score(LogisticRegression(), X, y, groups=groups, cv=cv)
    assert scores.shape == (3,)
    assert np.all(scores > 0.5)
    with pytest.raises(ValueError, match="'groups' parameter should not be None"):
        cross_val_score(LogisticRegression(), X, y, cv=cv)


def test_grid_search(grouped_data):
    X, y, groups = grouped_data
    cv = FewShotSplit(n_splits=2, n_shots=1, random_state=0)
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv)
    search.fit(X, y, groups=groups)
    assert search.n_splits_ == 2
    assert set(search.best_params_) == {"C"}


def test_learning_curve(grouped_data):
    X, y, groups = grouped_data
    cv = FewShotSplit(n_splits=2, n_shots=2, random_state=0)
    sizes, train_scores, test_scores = learning_curve(
        LogisticRegression(), X, y, groups=groups, cv=cv, train_sizes=[0.5, 1.0]
    )
    n_train = len(next(cv.split(X, y, groups))[0])
    np.testing.assert_array_equal(sizes, [n_train // 2, n_train])
    assert test_scores.shape == (2, 2)


def test_with_metadata_routing(grouped_data):
    X, y, groups = grouped_data
    cv = FewShotSplit(n_splits=2, n_shots=2, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        result = cross_validate(
            LogisticRegression(), X, y, cv=cv, params={"groups": groups},
            return_indices=True,
        )
        expected_test = [test for _, test in cv.split(X, y, groups)]
        for got, expected in zip(result["indices"]["test"], expected_test):
            np.testing.assert_array_equal(got, expected)

        scores = cross_val_score(
            LogisticRegression(), X, y, cv=cv, params={"groups": groups}
        )
        assert scores.shape == (2,)

        search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv)
        search.fit(X, y, groups=groups)
        assert search.n_splits_ == 2

        _, _, test_scores = learning_curve(
            LogisticRegression(), X, y, cv=cv, params={"groups": groups},
            train_sizes=[0.5, 1.0],
        )
        assert test_scores.shape == (2, 2)

        # groups is requested, so leaving it out reaches the splitter as None.
        with pytest.raises(ValueError, match="'groups' parameter should not be None"):
            cross_validate(LogisticRegression(), X, y, cv=cv)


# --- Property-based test ----------------------------------------------------


@st.composite
def few_shot_problems(draw):
    n_tasks = draw(st.integers(1, 5))
    n_classes = draw(st.integers(1, 3))
    class_counts = []
    for _ in range(n_tasks):
        counts = draw(
            st.lists(st.integers(0, 5), min_size=n_classes, max_size=n_classes)
        )
        if sum(counts) == 0:
            counts[0] = 1
        class_counts.append({c: n for c, n in enumerate(counts) if n > 0})
    n_shots = draw(st.integers(0, 3))
    test_size = draw(
        st.one_of(
            st.integers(1, 5),
            st.floats(0.01, 0.99, allow_nan=False, allow_infinity=False),
        )
    )
    stratify = draw(st.booleans())
    shuffle_seed = draw(st.integers(0, 2**16))
    random_state = draw(st.integers(0, 2**16))
    use_strings = draw(st.booleans())
    return (
        class_counts,
        n_shots,
        test_size,
        stratify,
        shuffle_seed,
        random_state,
        use_strings,
    )


@settings(max_examples=80, deadline=None)
@given(few_shot_problems())
def test_property_invariants(problem):
    class_counts, n_shots, test_size, stratify, seed, random_state, strings = problem
    labels = [f"t{t}" for t in range(len(class_counts))] if strings else None
    X, y, groups = make_tasks(class_counts, shuffle_seed=seed, labels=labels)
    cv = FewShotSplit(
        n_splits=3,
        n_shots=n_shots,
        test_size=test_size,
        stratify=stratify,
        random_state=random_state,
    )

    n_tasks = len(class_counts)
    if isinstance(test_size, int):
        n_test = test_size
    else:
        n_test = math.ceil(test_size * n_tasks)
    if stratify:
        too_small = any(
            max(counts.values()) <= n_shots for counts in class_counts
        )
        short = any(min(counts.values()) < n_shots for counts in class_counts)
    else:
        too_small = any(sum(counts.values()) < n_shots + 1 for counts in class_counts)
        short = False

    if n_test >= n_tasks or too_small:
        with pytest.raises(ValueError, match=r"^(Task |test_size=)"):
            cv.split(X, y, groups)
        return

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        splits = list(cv.split(X, y, groups))
    assert len(record) == int(short)
    assert len(splits) == 3
    for train, test in splits:
        assert_few_shot_split(
            train, test, y, groups, n_shots=n_shots, stratified=stratify, n_test=n_test
        )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = list(cv.split(X, y, groups))
    assert len(record) == int(short)
    for (tr_a, te_a), (tr_b, te_b) in zip(splits, again):
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(te_a, te_b)


@pytest.mark.parametrize("groups, match", [
    ([0, 0, None, 1, 1, 2, 2, 3], "groups contains missing labels"),
    ([0, 0, "a", 1, 1, 2, 2, 3], "groups mixes strings and numbers"),
])
def test_bad_group_labels_are_named_as_task_labels(groups, match):
    # they raised numpy's "'<' not supported between instances" TypeError
    X = np.zeros((8, 2))
    with pytest.raises(ValueError, match=match):
        next(FewShotSplit(n_splits=1, test_size=1, n_shots=1).split(
            X, groups=groups))
    from skmeta import MetaClassifier
    from skmeta.model_selection import adaptation_curve

    with pytest.raises(ValueError, match=match):
        adaptation_curve(MetaClassifier(), X, np.r_[0, 1, 0, 1, 0, 1, 0, 1],
                         groups=groups, shots=[1])
