"""Tests for the task-family generators of skmeta.datasets."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from sklearn.linear_model import LinearRegression, LogisticRegression

from skmeta.datasets import (
    make_meta_anomalies,
    make_meta_classification,
    make_meta_regression,
    make_sine_tasks,
)

GENERATORS = [make_meta_classification, make_meta_regression, make_sine_tasks]


def _check_grouping(tasks, sizes):
    """Check that ``tasks`` is sorted and has the expected count per task."""
    assert tasks.dtype == np.int64
    assert np.all(np.diff(tasks) >= 0)
    assert_array_equal(np.bincount(tasks, minlength=len(sizes)), sizes)


# Common behaviour of the three generators


@pytest.mark.parametrize("make", GENERATORS)
def test_shapes_dtypes_and_grouping(make):
    X, y, tasks = make(n_tasks=7, n_samples_per_task=6, random_state=0)
    n_features = 1 if make is make_sine_tasks else 20
    assert X.shape == (42, n_features)
    assert X.dtype == np.float64
    assert y.shape == (42,)
    expected_y_dtype = np.int64 if make is make_meta_classification else np.float64
    assert y.dtype == expected_y_dtype
    _check_grouping(tasks, [6] * 7)
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(y))


@pytest.mark.parametrize("make", GENERATORS)
def test_per_task_sizes(make):
    sizes = [3, 1, 8, 5]
    X, y, tasks = make(n_tasks=4, n_samples_per_task=sizes, random_state=0)
    assert X.shape[0] == y.shape[0] == sum(sizes)
    _check_grouping(tasks, sizes)
    # An ndarray of sizes is accepted as well as a list.
    _, _, tasks = make(n_tasks=4, n_samples_per_task=np.array(sizes), random_state=0)
    _check_grouping(tasks, sizes)


@pytest.mark.parametrize("make", GENERATORS)
def test_reproducible_with_random_state(make):
    first = make(n_tasks=5, n_samples_per_task=8, random_state=42)
    again = make(n_tasks=5, n_samples_per_task=8, random_state=42)
    from_instance = make(
        n_tasks=5, n_samples_per_task=8, random_state=np.random.RandomState(42)
    )
    other = make(n_tasks=5, n_samples_per_task=8, random_state=43)
    for a, b, c in zip(first, again, from_instance):
        assert_array_equal(a, b)
        assert_array_equal(a, c)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("make", GENERATORS)
@pytest.mark.parametrize(
    "n_samples_per_task, match",
    [
        ([5, 5], "one entry per task"),
        ([[5, 5, 5]], "one entry per task"),
        ([5, 0, 5], "at least one sample"),
        ([5.0, 2.5, 5.0], "integers"),
    ],
)
def test_invalid_n_samples_per_task(make, n_samples_per_task, match):
    with pytest.raises(ValueError, match=match):
        make(n_tasks=3, n_samples_per_task=n_samples_per_task)


@pytest.mark.parametrize("make", GENERATORS)
@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_tasks": 0}, "'n_tasks' parameter"),
        ({"n_samples_per_task": 0}, "'n_samples_per_task' parameter"),
        ({"noise": -1.0}, "'noise' parameter"),
        ({"as_frame": "yes"}, "'as_frame' parameter"),
    ],
)
def test_parameter_validation(make, params, match):
    if "noise" in params and make is make_meta_classification:
        params = {"flip_y": 1.5}
        match = "'flip_y' parameter"
    with pytest.raises(ValueError, match=match):
        make(**params)


@pytest.mark.parametrize("make", [make_meta_classification, make_meta_regression])
def test_negative_task_spread_rejected(make):
    with pytest.raises(ValueError, match="'task_spread' parameter"):
        make(task_spread=-0.1)


# make_meta_classification


@pytest.mark.parametrize(
    "params",
    [
        {"n_classes": 2},
        {"n_classes": 4, "n_informative": 3},
        {"n_classes": 3, "n_informative": 3, "n_clusters_per_class": 2},
        {"n_classes": 2, "weights": [0.97, 0.03]},
        {"n_classes": 3, "n_informative": 2, "weights": [0.0, 0.5, 0.5]},
    ],
)
@pytest.mark.parametrize("n_samples_per_task", ["n_classes", 7])
def test_classification_every_task_has_every_class(params, n_samples_per_task):
    n_classes = params["n_classes"]
    if n_samples_per_task == "n_classes":
        n_samples_per_task = n_classes
    # A large flip_y must still not take any class away from a task.
    _, y, tasks = make_meta_classification(
        n_tasks=30,
        n_samples_per_task=n_samples_per_task,
        flip_y=0.9,
        random_state=0,
        **params,
    )
    for t in range(30):
        assert_array_equal(np.unique(y[tasks == t]), np.arange(n_classes))


def test_classification_small_tasks_have_no_systematically_missing_class():
    # With fewer samples than classes some class must be missing; which one
    # should vary from task to task rather than always being the last.
    _, y, tasks = make_meta_classification(
        n_tasks=60,
        n_samples_per_task=2,
        n_classes=4,
        n_informative=2,
        flip_y=0.0,
        random_state=0,
    )
    assert_array_equal(np.unique(y), np.arange(4))
    for t in range(60):
        assert np.unique(y[tasks == t]).size == 2


def test_classification_class_proportions_follow_weights():
    _, y, tasks = make_meta_classification(
        n_tasks=10,
        n_samples_per_task=[100] * 5 + [20] * 5,
        n_classes=3,
        n_informative=2,
        weights=[0.5, 0.3],
        flip_y=0.0,
        random_state=0,
    )
    for t in range(10):
        n = 100 if t < 5 else 20
        assert_array_equal(np.bincount(y[tasks == t]), [n // 2, 3 * n // 10, n // 5])


def test_classification_flip_y_zero_keeps_balanced_classes():
    _, y, tasks = make_meta_classification(
        n_tasks=8, n_samples_per_task=11, flip_y=0.0, random_state=0
    )
    for t in range(8):
        counts = np.bincount(y[tasks == t], minlength=2)
        assert sorted(counts) == [5, 6]


def test_classification_rows_are_shuffled_within_tasks():
    _, y, tasks = make_meta_classification(
        n_tasks=20, n_samples_per_task=20, flip_y=0.0, random_state=0
    )
    # Sorted labels in every task would betray rows grouped by class.
    sorted_tasks = sum(np.all(np.diff(y[tasks == t]) >= 0) for t in range(20))
    assert sorted_tasks < 3


def _class_mean_z_scores(X, y, tasks, n_tasks, n_classes):
    """z-scores of each task's class-conditional mean against the pooled one."""
    z = []
    for c in range(n_classes):
        pooled = X[y == c]
        for t in range(n_tasks):
            within = X[(y == c) & (tasks == t)]
            se = pooled.std(axis=0) / np.sqrt(len(within))
            z.append((within.mean(axis=0) - pooled.mean(axis=0)) / se)
    return np.abs(np.concatenate(z))


def test_classification_zero_task_spread_gives_identical_tasks():
    params = dict(
        n_tasks=5,
        n_samples_per_task=2000,
        n_features=3,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        flip_y=0.0,
        random_state=0,
    )
    X, y, tasks = make_meta_classification(task_spread=0.0, **params)
    # 45 z-scores under the null hypothesis of equal means: all should be
    # well below 4.5 (probability of one exceeding it is about 3e-4).
    assert _class_mean_z_scores(X, y, tasks, 5, 3).max() < 4.5

    # A pooled classifier does as well on unseen tasks as on the tasks it was
    # trained on.
    train, test = tasks < 3, tasks >= 3
    clf = LogisticRegression().fit(X[train], y[train])
    assert abs(clf.score(X[train], y[train]) - clf.score(X[test], y[test])) < 0.03

    # The same seed with a non-zero spread moves the class means far apart.
    X, y, tasks = make_meta_classification(task_spread=1.0, **params)
    assert _class_mean_z_scores(X, y, tasks, 5, 3).max() > 10


def test_classification_task_spread_spreads_decision_boundaries():
    def boundary_spread(task_spread):
        X, y, tasks = make_meta_classification(
            n_tasks=12,
            n_samples_per_task=1000,
            n_features=2,
            n_informative=2,
            n_redundant=0,
            flip_y=0.0,
            task_spread=task_spread,
            random_state=0,
        )
        directions = []
        for t in range(12):
            in_t = tasks == t
            w = LogisticRegression().fit(X[in_t], y[in_t]).coef_.ravel()
            directions.append(w / np.linalg.norm(w))
        # Mean distance of the boundary normals to their average direction.
        directions = np.array(directions)
        return np.linalg.norm(directions - directions.mean(axis=0), axis=1).mean()

    spreads = [boundary_spread(s) for s in (0.0, 0.3, 1.0)]
    assert spreads[0] < spreads[1] < spreads[2]
    assert spreads[0] < 0.1
    assert spreads[2] > 3 * spreads[0]


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (None, None), (3.0, 2.0)])
def test_classification_redundant_features_are_linear_combinations(shift, scale):
    X, _, _ = make_meta_classification(
        n_tasks=6,
        n_samples_per_task=30,
        n_features=12,
        n_informative=4,
        n_redundant=3,
        n_repeated=2,
        shift=shift,
        scale=scale,
        random_state=0,
    )
    ones = np.ones((X.shape[0], 1))
    # Shift and scale make redundant features affine (not linear) in the
    # informative ones; an intercept column absorbs that.
    informative = np.hstack([ones, X[:, :4]])
    assert np.linalg.matrix_rank(informative) == 5
    assert np.linalg.matrix_rank(np.hstack([informative, X[:, 4:9]])) == 5
    # The noise columns are not in that span.
    assert np.linalg.matrix_rank(np.hstack([informative, X[:, 9:]])) == 8
    if shift == 0.0 and scale == 1.0:
        # Without shift and scale the combination is exactly linear, with the
        # same coefficients for all tasks.
        B, *_ = np.linalg.lstsq(X[:, :4], X[:, 4:7], rcond=None)
        assert_allclose(X[:, :4] @ B, X[:, 4:7], atol=1e-10)


@pytest.mark.parametrize("shift, scale", [(0.5, 2.0), (None, None)])
def test_classification_repeated_features_copy_earlier_columns(shift, scale):
    X, _, _ = make_meta_classification(
        n_tasks=4,
        n_samples_per_task=10,
        n_features=10,
        n_informative=3,
        n_redundant=2,
        n_repeated=4,
        shift=shift,
        scale=scale,
        random_state=0,
    )
    if shift is None:
        # Per-feature shift and scale are applied after copying, so copies
        # are exact only once every column is standardized.
        X = (X - X.mean(axis=0)) / X.std(axis=0)

    def copies(j, candidates):
        return [i for i in candidates if np.allclose(X[:, j], X[:, i], atol=1e-12)]

    for j in range(5, 9):
        assert copies(j, range(5))
    # The last column is noise, not a copy.
    assert not copies(9, range(9))


def test_classification_array_shift_and_scale():
    params = dict(n_tasks=3, n_samples_per_task=5, n_features=4, random_state=0)
    X, _, _ = make_meta_classification(**params)
    shift, scale = np.arange(4.0), np.arange(1.0, 5.0)
    X_moved, _, _ = make_meta_classification(shift=shift, scale=scale, **params)
    assert_allclose(X_moved, (X + shift) * scale)


def test_classification_hypercube_false():
    X, y, tasks = make_meta_classification(
        n_tasks=3, n_samples_per_task=10, hypercube=False, random_state=0
    )
    assert X.shape == (30, 20)
    _check_grouping(tasks, [10, 10, 10])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_features": 3}, r"n_informative \+ n_redundant \+ n_repeated"),
        ({"n_classes": 3, "n_informative": 1}, r"2\*\*n_informative"),
        (
            {"n_classes": 3, "n_clusters_per_class": 2, "n_informative": 2},
            r"n_classes \* n_clusters_per_class",
        ),
        ({"weights": [0.2, 0.3, 0.5]}, "weights must have n_classes"),
        ({"weights": [1.5]}, r"sum\(weights\) must be <= 1"),
        ({"weights": [-0.5, 1.5]}, "non-negative"),
        ({"weights": [0.0, 0.0]}, "not all be zero"),
        ({"shift": np.zeros(3)}, "shift must be a float or an array"),
        ({"scale": np.ones(21)}, "scale must be a float or an array"),
        ({"class_sep": 0.0}, "'class_sep' parameter"),
        ({"n_informative": 0}, "'n_informative' parameter"),
    ],
)
def test_classification_invalid_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        make_meta_classification(**params)


# make_meta_regression


@pytest.mark.parametrize("bias", [0.0, -7.5])
def test_regression_targets_follow_the_task_models(bias):
    X, y, tasks, coef, intercept = make_meta_regression(
        n_tasks=6,
        n_samples_per_task=[4, 9, 1, 12, 7, 3],
        n_features=8,
        n_informative=5,
        bias=bias,
        coef=True,
        random_state=0,
    )
    assert coef.shape == (6, 8) and intercept.shape == (6,)
    for t in range(6):
        in_t = tasks == t
        assert_allclose(y[in_t], X[in_t] @ coef[t] + intercept[t], rtol=1e-12)
    assert np.all(coef[:, 5:] == 0)
    assert np.all(coef[:, :5] != 0)


def test_regression_noise_level():
    params = dict(n_tasks=4, n_samples_per_task=2000, coef=True, random_state=0)
    X, y, tasks, coef, intercept = make_meta_regression(noise=3.0, **params)
    residuals = y - np.einsum("ij,ij->i", X, coef[tasks]) - intercept[tasks]
    assert residuals.std() == pytest.approx(3.0, rel=0.05)


def test_regression_task_spread_scales_coefficients_exactly():
    # With a fixed seed the shared coefficients and the standard normal draws
    # do not depend on task_spread, so the deviations of the tasks from the
    # shared model are proportional to it.
    params = dict(
        n_tasks=5, n_features=6, n_informative=4, bias=2.0, coef=True, random_state=0
    )
    _, _, _, coef0, intercept0 = make_meta_regression(task_spread=0.0, **params)
    _, _, _, coef1, intercept1 = make_meta_regression(task_spread=1.0, **params)
    _, _, _, coef3, intercept3 = make_meta_regression(task_spread=3.0, **params)
    assert np.all(coef0 == coef0[0])
    assert np.all(intercept0 == 2.0)
    assert_allclose(coef3 - coef0, 3 * (coef1 - coef0), atol=1e-10)
    assert_allclose(intercept3 - intercept0, 3 * (intercept1 - intercept0))


@pytest.mark.parametrize("task_spread", [0.2, 1.0])
def test_regression_task_spread_relative_to_coefficient_size(task_spread):
    _, _, _, coef, intercept = make_meta_regression(
        n_tasks=2000,
        n_samples_per_task=1,
        n_features=5,
        n_informative=3,
        task_spread=task_spread,
        coef=True,
        random_state=0,
    )
    informative = coef[:, :3]
    shared = informative.mean(axis=0)
    rms = np.linalg.norm(shared) / np.sqrt(3)
    assert informative.std(axis=0) / rms == pytest.approx(
        [task_spread] * 3, rel=0.08
    )
    assert intercept.std() / rms == pytest.approx(task_spread, rel=0.08)
    # Shared coefficients are drawn in [0, 100], as in make_regression.
    assert np.all((shared > 0) & (shared < 100))


def test_regression_inputs_are_standard_normal():
    X, _, tasks = make_meta_regression(
        n_tasks=4, n_samples_per_task=3000, n_features=3, random_state=0
    )
    for t in range(4):
        assert_allclose(X[tasks == t].mean(axis=0), 0, atol=0.1)
        assert_allclose(X[tasks == t].std(axis=0), 1, atol=0.1)


def test_regression_n_informative_clipped_to_n_features():
    _, _, _, coef, _ = make_meta_regression(
        n_tasks=3, n_features=4, n_informative=10, coef=True, random_state=0
    )
    assert coef.shape == (3, 4)
    assert np.all(coef != 0)


# make_sine_tasks


def test_sine_parameters_within_ranges_and_targets_follow_formula():
    X, y, tasks, amplitude, phase = make_sine_tasks(
        n_tasks=50,
        n_samples_per_task=10,
        amplitude_range=(1.0, 2.0),
        phase_range=(0.5, 1.5),
        x_range=(-1.0, 3.0),
        return_params=True,
        random_state=0,
    )
    assert X.shape == (500, 1)
    assert amplitude.shape == phase.shape == (50,)
    assert np.all((amplitude >= 1.0) & (amplitude <= 2.0))
    assert np.all((phase >= 0.5) & (phase <= 1.5))
    assert np.all((X >= -1.0) & (X <= 3.0))
    assert_allclose(y, amplitude[tasks] * np.sin(X[:, 0] - phase[tasks]))


def test_sine_default_ranges_are_those_of_maml():
    X, _, _, amplitude, phase = make_sine_tasks(
        n_tasks=500, return_params=True, random_state=0
    )
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= np.pi
    assert -5.0 <= X.min() and X.max() <= 5.0
    # The ranges are covered, not just respected.
    assert amplitude.max() - amplitude.min() > 4.5
    assert X.max() - X.min() > 9.5


def test_sine_tasks_are_linear_in_sin_and_cos_features():
    X, y, tasks, amplitude, phase = make_sine_tasks(
        n_tasks=10, n_samples_per_task=6, return_params=True, random_state=0
    )
    features = np.hstack([np.sin(X), np.cos(X)])
    for t in range(10):
        in_t = tasks == t
        model = LinearRegression(fit_intercept=False).fit(features[in_t], y[in_t])
        assert_allclose(model.predict(features[in_t]), y[in_t], atol=1e-10)
        expected = [amplitude[t] * np.cos(phase[t]), -amplitude[t] * np.sin(phase[t])]
        assert_allclose(model.coef_, expected, atol=1e-10)


def test_sine_noise_level():
    X, y, tasks, amplitude, phase = make_sine_tasks(
        n_tasks=5,
        n_samples_per_task=2000,
        noise=0.5,
        return_params=True,
        random_state=0,
    )
    residuals = y - amplitude[tasks] * np.sin(X[:, 0] - phase[tasks])
    assert residuals.std() == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"amplitude_range": (5.0, 1.0)}, "amplitude_range must satisfy low <= high"),
        ({"phase_range": (0.0, 1.0, 2.0)}, "phase_range must be a pair"),
        ({"x_range": (0.0, np.inf)}, "x_range must be a pair"),
        ({"x_range": 3.0}, "'x_range' parameter"),
    ],
)
def test_sine_invalid_ranges(params, match):
    with pytest.raises(ValueError, match=match):
        make_sine_tasks(**params)


# as_frame


@pytest.mark.parametrize(
    "make, extra",
    [
        (make_meta_classification, {"n_features": 5}),
        (make_meta_regression, {"n_features": 5, "coef": True}),
        (make_sine_tasks, {"return_params": True}),
    ],
)
def test_as_frame_matches_array_output(make, extra):
    pd = pytest.importorskip("pandas")
    params = dict(n_tasks=4, n_samples_per_task=[3, 5, 2, 4], random_state=0, **extra)
    arrays = make(**params)
    frames = make(as_frame=True, **params)
    X, y, tasks = arrays[:3]
    X_df, y_s, tasks_s = frames[:3]

    n_features = X.shape[1]
    assert isinstance(X_df, pd.DataFrame)
    assert list(X_df.columns) == [f"x{j}" for j in range(n_features)] + ["task"]
    assert X_df.shape == (14, n_features + 1)
    assert all(X_df[f"x{j}"].dtype == np.float64 for j in range(n_features))
    assert X_df["task"].dtype == np.int64
    assert_array_equal(X_df.drop(columns="task").to_numpy(), X)
    assert_array_equal(X_df["task"].to_numpy(), tasks)

    assert isinstance(y_s, pd.Series) and y_s.name == "y"
    assert y_s.dtype == y.dtype
    assert_array_equal(y_s.to_numpy(), y)
    assert isinstance(tasks_s, pd.Series) and tasks_s.name == "task"
    assert tasks_s.dtype == np.int64
    assert_array_equal(tasks_s.to_numpy(), tasks)

    # Ground-truth parameters stay arrays.
    for a, b in zip(arrays[3:], frames[3:]):
        assert isinstance(b, np.ndarray)
        assert_array_equal(a, b)


@pytest.mark.parametrize("make", GENERATORS)
def test_as_frame_without_pandas(make, monkeypatch):
    # A None entry in sys.modules makes `import pandas` raise ImportError.
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        make(n_tasks=2, n_samples_per_task=3, as_frame=True, random_state=0)
    # Array output does not need pandas.
    make(n_tasks=2, n_samples_per_task=3, random_state=0)


# Property-based tests


@st.composite
def _classification_params(draw):
    n_classes = draw(st.integers(1, 4))
    n_clusters_per_class = draw(st.integers(1, 2))
    min_informative = int(np.ceil(np.log2(n_classes * n_clusters_per_class)))
    n_informative = draw(st.integers(max(1, min_informative), 4))
    n_redundant = draw(st.integers(0, 2))
    n_repeated = draw(st.integers(0, 2))
    n_features = n_informative + n_redundant + n_repeated + draw(st.integers(0, 2))
    n_tasks = draw(st.integers(1, 5))
    sizes = draw(
        st.one_of(
            st.integers(1, 8),
            st.lists(st.integers(1, 8), min_size=n_tasks, max_size=n_tasks),
        )
    )
    weights = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.floats(0.05, 1.0), min_size=n_classes, max_size=n_classes
            ),
        )
    )
    return dict(
        n_tasks=n_tasks,
        n_samples_per_task=sizes,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=n_redundant,
        n_repeated=n_repeated,
        n_classes=n_classes,
        n_clusters_per_class=n_clusters_per_class,
        weights=weights,
        flip_y=draw(st.floats(0.0, 1.0)),
        class_sep=draw(st.floats(0.1, 3.0)),
        hypercube=draw(st.booleans()),
        task_spread=draw(st.floats(0.0, 2.0)),
        random_state=draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=60, deadline=None)
@given(params=_classification_params())
def test_classification_invariants(params):
    X, y, tasks = make_meta_classification(**params)
    n_tasks = params["n_tasks"]
    sizes = np.broadcast_to(params["n_samples_per_task"], (n_tasks,))
    n_classes = params["n_classes"]
    n_informative = params["n_informative"]
    n_useful = n_informative + params["n_redundant"]

    assert X.shape == (sizes.sum(), params["n_features"])
    assert np.all(np.isfinite(X))
    _check_grouping(tasks, sizes)
    assert y.dtype == np.int64
    assert np.all((y >= 0) & (y < n_classes))
    for t in range(n_tasks):
        present = np.unique(y[tasks == t])
        if sizes[t] >= n_classes:
            assert_array_equal(present, np.arange(n_classes))
    for j in range(n_useful, n_useful + params["n_repeated"]):
        assert any(np.array_equal(X[:, j], X[:, i]) for i in range(n_useful))
    if params["n_redundant"] and X.shape[0] > n_useful:
        B, *_ = np.linalg.lstsq(X[:, :n_informative], X[:, n_informative:n_useful])
        assert_allclose(
            X[:, :n_informative] @ B, X[:, n_informative:n_useful], atol=1e-8
        )


@settings(max_examples=40, deadline=None)
@given(
    n_tasks=st.integers(1, 5),
    data=st.data(),
    n_features=st.integers(1, 6),
    n_informative=st.integers(1, 8),
    bias=st.floats(-10, 10),
    task_spread=st.floats(0.0, 2.0),
    random_state=st.integers(0, 2**31 - 1),
)
def test_regression_invariants(
    n_tasks, data, n_features, n_informative, bias, task_spread, random_state
):
    sizes = data.draw(st.lists(st.integers(1, 8), min_size=n_tasks, max_size=n_tasks))
    X, y, tasks, coef, intercept = make_meta_regression(
        n_tasks=n_tasks,
        n_samples_per_task=sizes,
        n_features=n_features,
        n_informative=n_informative,
        bias=bias,
        task_spread=task_spread,
        coef=True,
        random_state=random_state,
    )
    assert X.shape == (sum(sizes), n_features)
    _check_grouping(tasks, sizes)
    assert coef.shape == (n_tasks, n_features) and intercept.shape == (n_tasks,)
    assert np.all(coef[:, min(n_informative, n_features) :] == 0)
    assert_allclose(y, np.einsum("ij,ij->i", X, coef[tasks]) + intercept[tasks])
    if task_spread == 0:
        assert np.all(coef == coef[0]) and np.all(intercept == bias)


@settings(max_examples=40, deadline=None)
@given(
    n_tasks=st.integers(1, 5),
    n_samples_per_task=st.integers(1, 8),
    amplitude_range=st.tuples(st.floats(0, 5), st.floats(0, 5)).map(sorted),
    phase_range=st.tuples(st.floats(-4, 4), st.floats(-4, 4)).map(sorted),
    x_range=st.tuples(st.floats(-10, 10), st.floats(-10, 10)).map(sorted),
    random_state=st.integers(0, 2**31 - 1),
)
def test_sine_invariants(
    n_tasks, n_samples_per_task, amplitude_range, phase_range, x_range, random_state
):
    X, y, tasks, amplitude, phase = make_sine_tasks(
        n_tasks=n_tasks,
        n_samples_per_task=n_samples_per_task,
        amplitude_range=amplitude_range,
        phase_range=phase_range,
        x_range=x_range,
        return_params=True,
        random_state=random_state,
    )
    _check_grouping(tasks, [n_samples_per_task] * n_tasks)
    assert X.shape == (n_tasks * n_samples_per_task, 1)
    assert np.all((amplitude >= amplitude_range[0]) & (amplitude <= amplitude_range[1]))
    assert np.all((phase >= phase_range[0]) & (phase <= phase_range[1]))
    assert np.all((X >= x_range[0]) & (X <= x_range[1]))
    assert_allclose(y, amplitude[tasks] * np.sin(X[:, 0] - phase[tasks]), atol=1e-12)


# make_meta_anomalies


def _mahalanobis(X, means, covariances, tasks):
    diff = X - means[tasks]
    return np.einsum("ni,nij,nj->n", diff, np.linalg.inv(covariances)[tasks], diff)


def test_anomalies_shapes_counts_and_reproducibility():
    sizes = [10, 15, 1, 30]
    X, y, tasks = make_meta_anomalies(n_tasks=4, n_samples_per_task=sizes,
                                      n_features=3, contamination=0.1,
                                      random_state=0)
    assert X.shape == (56, 3) and X.dtype == np.float64
    _check_grouping(tasks, sizes)
    assert set(np.unique(y)) <= {-1, 1}
    # round(0.1 * n) anomalies per machine: 1, 2 (1.5 rounds up), 0, 3
    assert_array_equal(np.bincount(tasks[y == -1], minlength=4), [1, 2, 0, 3])
    again = make_meta_anomalies(n_tasks=4, n_samples_per_task=sizes,
                                n_features=3, random_state=0)
    for a, b in zip((X, y, tasks), again):
        assert_array_equal(a, b)
    # rows are shuffled within machines: anomalies are not always first
    _, y_many, _ = make_meta_anomalies(n_tasks=200, n_samples_per_task=10,
                                       random_state=1)
    first_is_anomaly = y_many[np.arange(0, 2000, 10)] == -1
    assert 0 < first_is_anomaly.mean() < 0.5


def test_anomalies_follow_the_stated_model():
    d, spread, strength = 4, 0.4, 3.0
    X, y, tasks, means, covariances = make_meta_anomalies(
        n_tasks=4000, n_samples_per_task=20, n_features=d, contamination=0.25,
        covariance_spread=spread, mean_spread=0.7, anomaly_strength=strength,
        return_params=True, random_state=2)
    m = _mahalanobis(X, means, covariances, tasks)
    # normal readings: chi2 with d degrees of freedom; anomalies: shifted by
    # `strength` in the whitened space, so E|z + strength u|^2 = d + strength^2
    assert abs(m[y == 1].mean() - d) < 0.05
    assert abs(np.mean(stats.chi2.cdf(m[y == 1], d) < 0.5) - 0.5) < 0.01
    assert abs(m[y == -1].mean() - (d + strength**2)) < 0.15
    # the coefficient of variation of a sensor's variance across machines
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    cv = variances.std(axis=0) / variances.mean(axis=0)
    assert_allclose(cv, spread, rtol=0.15)
    # machine means scatter by mean_spread in each machine's own metric
    centre = means.mean(axis=0)
    spread_m = _mahalanobis(means, np.broadcast_to(centre, means.shape),
                            covariances, np.arange(4000))
    assert abs(spread_m.mean() / 0.7**2 - d) < 0.15


def test_anomalies_zero_spreads_give_identical_machines():
    _, _, _, means, covariances = make_meta_anomalies(
        n_tasks=5, n_features=3, mean_spread=0.0, covariance_spread=0.0,
        return_params=True, random_state=3)
    assert_allclose(covariances, np.broadcast_to(covariances[0], (5, 3, 3)))
    assert_allclose(means, np.broadcast_to(means[0], (5, 3)))
    # the fleet does not depend on the spreads
    _, _, _, means_2, _ = make_meta_anomalies(
        n_tasks=5, n_features=3, mean_spread=0.0, covariance_spread=0.9,
        return_params=True, random_state=3)
    assert_allclose(means_2, means)


@pytest.mark.parametrize("contamination, n, expected", [
    (0.29, 50, 15), (0.35, 90, 32), (0.57, 50, 29), (0.5, 49, 25), (0.1, 15, 2),
    (0.28, 50, 14), (0.0, 30, 0), (np.float32(0.29), 50, 15)])
def test_anomalies_count_rounds_the_written_decimal_half_up(contamination, n,
                                                             expected):
    # 0.29 * 50 is 14.4999... in binary: the written 14.5 rounds to 15
    _, y, _ = make_meta_anomalies(n_tasks=2, n_samples_per_task=n,
                                  contamination=contamination, random_state=0)
    assert_array_equal((y == -1).reshape(2, n).sum(axis=1), [expected] * 2)


@pytest.mark.parametrize("spread", [1e-5, 1e-8, 1e-12])
def test_anomalies_tiny_covariance_spreads_keep_their_coefficient_of_variation(
        spread):
    *_, covariances = make_meta_anomalies(
        n_tasks=3000, n_samples_per_task=1, n_features=3,
        covariance_spread=spread, return_params=True, random_state=4)
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    cv = variances.std(axis=0) / variances.mean(axis=0)
    assert_allclose(cv, spread, rtol=0.1)


@pytest.mark.parametrize("spread", [1e-151, 1e-200, 1e-320])
def test_anomalies_vanishing_covariance_spread_is_zero(spread):
    # the Wishart's dof overflow (or the spread squares to 0): such a spread
    # is 0, not infinities or a ZeroDivisionError
    drawn = make_meta_anomalies(n_tasks=4, n_features=3,
                                covariance_spread=spread, return_params=True,
                                random_state=3)
    zero = make_meta_anomalies(n_tasks=4, n_features=3, covariance_spread=0.0,
                               return_params=True, random_state=3)
    for a, b in zip(drawn, zero):
        assert_array_equal(a, b)


@pytest.mark.parametrize("spread", [1e160, np.float64(1e160), 1e300])
def test_anomalies_huge_covariance_spread_is_the_heaviest_tail(spread):
    # past 1e154 the spread's square overflowed (an OverflowError for a
    # Python float); any spread past 1e9 leaves d + 3 degrees of freedom
    drawn = make_meta_anomalies(n_tasks=4, n_features=3,
                                covariance_spread=spread, return_params=True,
                                random_state=3)
    heaviest = make_meta_anomalies(n_tasks=4, n_features=3,
                                   covariance_spread=1e20, return_params=True,
                                   random_state=3)
    for a, b in zip(drawn, heaviest):
        assert_array_equal(a, b)
    assert np.all(np.isfinite(drawn[0]))


def test_anomalies_as_frame():
    pd = pytest.importorskip("pandas")
    X, y, tasks = make_meta_anomalies(n_tasks=3, n_samples_per_task=4,
                                      n_features=2, random_state=0)
    X_df, y_s, tasks_s = make_meta_anomalies(n_tasks=3, n_samples_per_task=4,
                                             n_features=2, as_frame=True,
                                             random_state=0)
    assert list(X_df.columns) == ["x0", "x1", "task"]
    assert_array_equal(X_df[["x0", "x1"]].to_numpy(), X)
    assert isinstance(y_s, pd.Series) and y_s.name == "y"
    assert_array_equal(y_s, y)
    assert_array_equal(tasks_s, tasks)


@pytest.mark.parametrize("params, match", [
    ({"contamination": 1.0}, "contamination"),
    ({"covariance_spread": -0.1}, "covariance_spread"),
    ({"n_features": 0}, "n_features"),
    ({"n_samples_per_task": [3, 0]}, "at least one sample"),
])
def test_anomalies_invalid_parameters(params, match):
    params = {"n_tasks": 2, **params}
    with pytest.raises(ValueError, match=match):
        make_meta_anomalies(**params)
