"""per_task_score, within_task_explained_variance and AdaptationCurveDisplay."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, log_loss, r2_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MetaClassifier, MetaRegressor
from skmeta.datasets import make_meta_classification, make_meta_regression
from skmeta.metrics import per_task_score, within_task_explained_variance


def test_per_task_score_matches_scores_computed_task_by_task():
    rng = np.random.default_rng(0)
    tasks = rng.choice(["b", "a", "c"], size=60)
    y = rng.integers(0, 2, 60)
    pred = np.where(rng.random(60) < 0.7, y, 1 - y)
    table = per_task_score(y, pred, tasks)
    assert table["task"].tolist() == ["a", "b", "c"]
    for label, score, n in zip(table["task"], table["score"], table["n_samples"]):
        rows = tasks == label
        assert n == rows.sum()
        assert score == accuracy_score(y[rows], pred[rows])
    regression = per_task_score(y + 0.5, pred + 0.1, tasks, scoring=r2_score)
    rows = tasks == "a"
    assert regression["score"][0] == r2_score(y[rows] + 0.5, pred[rows] + 0.1)


def test_per_task_score_min_samples_and_errors():
    table = per_task_score([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], [0, 0, 1],
                           scoring="r2", min_samples=2)
    assert np.isnan(table["score"][1]) and np.isfinite(table["score"][0])
    with pytest.raises(ValueError, match="samples"):
        per_task_score([0, 1], [0, 1, 1], [0, 0, 1])
    with pytest.raises(InvalidParameterError, match="min_samples"):
        per_task_score([0, 1], [0, 1], [0, 0], min_samples=-3)
    # the message names what per_task_score was given: y_true, not an X
    with pytest.raises(ValueError, match="tasks has 2 labels but y_true has 3"):
        per_task_score([0, 1, 1], [0, 1, 1], [0, 0])


@pytest.mark.parametrize("scoring", ["roc_auc", "neg_log_loss"])
def test_per_task_score_refuses_classes_outside_labels(scoring):
    # roc_auc counted a third class's rows as negatives (0.667 on task 0),
    # or made every task NaN where labels did not match y_true at all
    y = np.array([0, 1, 2, 0, 0, 1, 1, 0])
    p = np.array([0.2, 0.8, 0.6, 0.3, 0.4, 0.7, 0.6, 0.1])
    tasks = np.repeat([0, 1], 4)
    for proba in (p, np.c_[1 - p, p]):
        with pytest.raises(ValueError, match=r"y_true contains values \[2\] "
                           r"not belonging to the passed labels \[0, 1\]"):
            per_task_score(y, proba, tasks, scoring=scoring, labels=[0, 1])
    with pytest.raises(ValueError, match=r"values \[0\] not belonging"):
        per_task_score(y[y < 2], p[y < 2], tasks[y < 2], scoring=scoring,
                       labels=[1, 2])


# task 1's roc_auc, of one class, is undefined (NaN)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_per_task_score_of_the_positive_class_probability_alone():
    # a 1-D y_pred is the second class's probability, as log_loss takes it;
    # task 1 has rows of class 1 only, which labels= (or all tasks' labels)
    # covers (labels= was ignored, and log_loss asked for it)
    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.array([0.2, 0.8, 0.3, 0.6, 0.7, 0.9])
    tasks = np.array([0, 0, 0, 1, 1, 1])
    expected = [-log_loss(y[:3], p[:3]), -log_loss(y[3:], p[3:], labels=[0, 1])]
    for labels in ([0, 1], None):
        table = per_task_score(y, p, tasks, scoring="neg_log_loss",
                               labels=labels)
        assert_allclose(table["score"], expected)
    assert_allclose(per_task_score(y, np.c_[1 - p, p], tasks,
                                   scoring="neg_log_loss")["score"], expected)
    assert np.isclose(per_task_score(y, p, tasks, scoring="roc_auc")["score"][0],
                      roc_auc_score(y[:3], p[:3]))
    with pytest.raises(ValueError, match="second of two classes"):
        per_task_score([0, 1, 2], [0.1, 0.5, 0.9], [0, 0, 0],
                       scoring="neg_log_loss")


def test_within_task_explained_variance_definition():
    rng = np.random.default_rng(1)
    tasks = np.repeat([0, 1, 2], 10)
    y = rng.normal(size=30) + 5.0 * tasks
    pred = y + rng.normal(scale=0.5, size=30)
    means = np.array([y[tasks == t].mean() for t in range(3)])[tasks]
    expected = 1 - np.mean((y - pred) ** 2) / np.mean((y - means) ** 2)
    assert np.isclose(within_task_explained_variance(y, pred, tasks), expected)
    # predicting each task's mean scores exactly zero
    assert np.isclose(within_task_explained_variance(y, means, tasks), 0.0)


def test_within_task_explained_variance_checks_its_input():
    y, pred, tasks = [1.0, 3.0, 10.0, 12.0], [1.5, 2.5, 10.0, 12.0], [0, 0, 1, 1]
    # one column is one output, as r2_score takes it (it was broadcast to
    # a 4 x 4 matrix: -5.5)
    assert within_task_explained_variance(y, np.c_[pred], tasks) == 0.875
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        within_task_explained_variance(y, pred[:1], tasks)
    with pytest.raises(ValueError, match="y_pred contains NaN"):
        within_task_explained_variance(y, [1.5, np.nan, 10.0, 12.0], tasks)
    with pytest.raises(ValueError, match=r"y_pred must be of shape"):
        within_task_explained_variance(y, np.c_[pred, pred], tasks)
    # constant targets in every task: r2_score's finite convention
    assert within_task_explained_variance([1, 1, 2], [1, 1, 2], [0, 0, 1]) == 1.0
    assert within_task_explained_variance([1, 1, 2], [1, 0, 2], [0, 0, 1]) == 0.0
    # ... also where a task's mean rounds off its value (0.1 + 0.1 + 0.1 is
    # not 0.3: the deviations were 1e-17, and the score -1.6e26)
    y = [0.1] * 3 + [0.7] * 3
    assert within_task_explained_variance(
        y, np.add(y, 1e-3), [0, 0, 0, 1, 1, 1]) == 0.0


@pytest.mark.parametrize("scoring, metric", [
    ("accuracy", accuracy_score), ("r2", r2_score),
    ("neg_log_loss", lambda y, p, **kw: -log_loss(y, p, labels=[0, 1], **kw)),
    ("roc_auc", lambda y, p, **kw: roc_auc_score(y, p[:, 1], **kw))])
def test_per_task_score_with_sample_weight(scoring, metric):
    # each task's metric gets its rows' weights, as scikit-learn's metrics
    rng = np.random.default_rng(4)
    tasks = np.repeat(["a", "b", "c"], 12)
    y = np.tile([0, 1], 18)
    w = rng.uniform(0.1, 3.0, 36)
    if scoring in ("neg_log_loss", "roc_auc"):
        pred = rng.dirichlet([1, 1], 36)
    else:
        pred = np.where(rng.random(36) < 0.7, y, 1 - y)
    table = per_task_score(y, pred, tasks, scoring, sample_weight=w)
    expected = [metric(y[tasks == t], pred[tasks == t],
                       sample_weight=w[tasks == t]) for t in "abc"]
    assert_allclose(table["score"], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        per_task_score(y, pred, tasks, scoring, sample_weight=-w)


def test_within_task_explained_variance_weights_are_repetitions():
    rng = np.random.default_rng(5)
    tasks = np.repeat([0, 1, 2], 8)
    y = rng.normal(size=24) + 3.0 * tasks
    pred = y + rng.normal(scale=0.5, size=24)
    counts = rng.integers(0, 4, 24)
    counts[tasks == 1] = 0  # a task of zero weight counts for nothing
    repeated = np.repeat(np.arange(24), counts)
    assert_allclose(
        within_task_explained_variance(y, pred, tasks, sample_weight=counts),
        within_task_explained_variance(y[repeated], pred[repeated],
                                       tasks[repeated]), rtol=1e-12)
    assert_allclose(
        within_task_explained_variance(y, pred, tasks,
                                       sample_weight=np.full(24, 2.5)),
        within_task_explained_variance(y, pred, tasks), rtol=1e-12)


@pytest.mark.parametrize("labels, proba", [
    (["yes", "no"], [[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]]),
    ([2, 0, 1], [[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]),
])
def test_per_task_log_loss_reads_the_columns_in_the_order_of_labels(labels,
                                                                      proba):
    # the columns of y_pred are the classes of labels, in that order, as the
    # docstring says; scikit-learn's log_loss reads them sorted
    proba = np.array(proba)
    y = np.array(labels)[[1, 0, 2 % len(labels)]] if len(labels) == 3 \
        else np.array(["no", "yes", "no"])
    column = [list(labels).index(v) for v in y]
    expected = np.mean(np.log(proba[np.arange(3), column]))
    table = per_task_score(y, proba, np.zeros(3), "neg_log_loss", labels=labels)
    assert_allclose(table["score"], [expected], rtol=1e-12)
    if len(labels) == 2:
        # a 1-D y_pred is the second label's probability
        table = per_task_score(y, proba[:, 1], np.zeros(3), "neg_log_loss",
                               labels=labels)
        assert_allclose(table["score"], [expected], rtol=1e-12)


def test_per_task_score_of_class_probabilities_with_classes_missing_in_a_task():
    X, y, tasks = make_meta_classification(
        n_tasks=6, n_samples_per_task=30, n_features=4, n_classes=3,
        n_informative=3, n_redundant=0, random_state=0)
    y = y.copy()
    y[(tasks == 0) & (y == 2)] = 1  # task 0 has no row of class 2
    model = MetaClassifier(gamma=1.0, prior="isotropic").fit(X, y, tasks=tasks)
    proba = model.predict_proba(X, tasks=tasks)
    table = per_task_score(y, proba, tasks, scoring="neg_log_loss")
    for k, task in enumerate(table["task"]):
        rows = tasks == task
        assert np.isclose(table["score"][k], -log_loss(
            y[rows], proba[rows], labels=model.classes_))
    auc = per_task_score(y, proba, tasks, scoring="roc_auc",
                         labels=model.classes_)
    rows = tasks == 1
    assert np.isclose(auc["score"][1], roc_auc_score(
        y[rows], proba[rows], multi_class="ovr", labels=model.classes_))
    # task 0 lacks class 2: scikit-learn's one-vs-rest mean over every label
    # is NaN there; the mean over the classes it has is defined
    rows = tasks == 0
    assert np.isclose(auc["score"][0], np.mean(
        [roc_auc_score(y[rows] == c, proba[rows, c]) for c in (0, 1)]))
    one_class = per_task_score(np.zeros(4, int), proba[:4], np.zeros(4),
                               scoring="roc_auc", labels=model.classes_)
    assert np.isnan(one_class["score"][0])
    # binary probabilities: the positive class's column
    yb = (y > 0).astype(int)
    pb = MetaClassifier(gamma=1.0, prior="isotropic").fit(
        X, yb, tasks=tasks).predict_proba(X, tasks=tasks)
    table = per_task_score(yb, pb, tasks, scoring="roc_auc")
    assert np.isclose(table["score"][2], roc_auc_score(yb[tasks == 2],
                                                       pb[tasks == 2, 1]))
    with pytest.raises(ValueError, match="pass labels="):
        per_task_score(y, proba, tasks, scoring="neg_log_loss", labels=[0, 1])
    with pytest.raises(ValueError, match="not for scoring='accuracy'"):
        per_task_score(y, y, tasks, labels=model.classes_)


@pytest.fixture(scope="module")
def curve():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from skmeta.inspection import AdaptationCurveDisplay

    X, y, tasks = make_meta_classification(
        n_tasks=60, n_samples_per_task=40, n_features=10, n_informative=2,
        n_redundant=4, task_spread=1.0, random_state=0)
    return AdaptationCurveDisplay.from_estimator(
        MetaClassifier(LogisticRegression(), gamma="auto", prior="full"), X, y,
        groups=tasks,
        shots=(1, 5), baselines={"logistic per task": LogisticRegression(),
                                 "k-NN per task": KNeighborsClassifier()},
        n_repeats=2, random_state=0)


def test_adaptation_curve_display_attributes(curve):
    import matplotlib.pyplot as plt

    assert set(curve.scores) == {"MetaClassifier", "logistic per task",
                                 "k-NN per task"}
    assert all(v.shape == (2, 2) for v in curve.scores.values())
    assert curve.ax_.get_xlabel().startswith("samples of each new task")
    assert set(curve.lines_) == set(curve.scores)
    np.testing.assert_allclose(curve.lines_["MetaClassifier"].get_ydata(),
                               curve.scores["MetaClassifier"].mean(axis=0))
    # the meta-learner's name is in the legend and the title, its line on top
    legend = [text.get_text() for text in curve.ax_.get_legend().get_texts()]
    assert legend == ["MetaClassifier", "logistic per task", "k-NN per task"]
    assert curve.ax_.get_title() == "Adaptation curve of MetaClassifier"
    assert curve.lines_["MetaClassifier"].get_linewidth() > max(
        curve.lines_[name].get_linewidth() for name in legend[1:])
    # drawing again on given axes reuses them
    _, ax = plt.subplots()
    assert curve.plot(ax=ax).ax_ is ax
    plt.close("all")


def test_adaptation_curve_meta_learning_helps_at_one_shot(curve):
    scores = {name: values.mean(axis=0) for name, values in curve.scores.items()}
    assert scores["MetaClassifier"][0] > scores["logistic per task"][0]
    assert scores["MetaClassifier"][0] > scores["k-NN per task"][0]
    # more shots help every approach
    assert all(v[1] > v[0] for v in scores.values())


def test_adaptation_curve_regression_and_pooled():
    pytest.importorskip("matplotlib")
    from skmeta.inspection import AdaptationCurveDisplay

    X, y, tasks = make_meta_regression(n_tasks=40, n_samples_per_task=30,
                                       n_features=5, n_informative=5, noise=5.0,
                                       random_state=0)
    display = AdaptationCurveDisplay.from_estimator(
        # a small base penalty: with 3 samples, Ridge's own alpha=1 would pull
        # each task toward zero harder than the learned prior pulls it to theta0
        MetaRegressor(Ridge(alpha=1e-3), gamma="auto"), X, y, groups=tasks,
        shots=(3, 10),
        n_repeats=1, random_state=0)
    assert set(display.scores) == {"MetaRegressor", "per_task", "pooled"}
    assert display.scoring == "r2"
    assert display.scores["MetaRegressor"][0, 0] > display.scores["pooled"][0, 0]
    assert display.scores["MetaRegressor"][0, 0] > display.scores["per_task"][0, 0]
    with pytest.raises(ValueError, match="Unknown baselines"):
        AdaptationCurveDisplay.from_estimator(
            MetaRegressor(), X, y, groups=tasks, baselines=("nope",))


def test_adaptation_curve_display_uses_adaptation_curve():
    pytest.importorskip("matplotlib")
    from skmeta.inspection import AdaptationCurveDisplay
    from skmeta.model_selection import adaptation_curve

    X, y, tasks = make_meta_classification(
        n_tasks=20, n_samples_per_task=20, n_features=4, n_informative=2,
        n_redundant=0, task_spread=1.0, random_state=1)
    meta = MetaClassifier(LogisticRegression(), gamma=1.0)
    knn = KNeighborsClassifier(n_neighbors=3)
    display = AdaptationCurveDisplay.from_estimator(
        meta, X, y, groups=tasks, shots=(1, 3),
        baselines={"k-NN": knn, "pooled": "pooled"}, n_repeats=2,
        random_state=5, estimator_name="my prior")
    expected = {
        "my prior": (meta, "adapt"),
        "k-NN": (knn, "per_task"),
        "pooled": (LogisticRegression(), "pooled"),
    }
    for name, (estimator, strategy) in expected.items():
        shots, scores, _ = adaptation_curve(
            estimator, X, y, groups=tasks, shots=(1, 3), strategy=strategy,
            n_repeats=2, random_state=5)
        np.testing.assert_array_equal(display.shots, shots)
        np.testing.assert_array_equal(display.scores[name],
                                      np.nanmean(scores, axis=2).T)
    legend = [text.get_text() for text in display.ax_.get_legend().get_texts()]
    assert legend == ["my prior", "k-NN", "pooled"]
    assert display.ax_.get_title() == "Adaptation curve of my prior"


def test_adaptation_curve_display_estimator_name_errors():
    pytest.importorskip("matplotlib")
    from skmeta.inspection import AdaptationCurveDisplay

    display = AdaptationCurveDisplay(shots=np.array([1, 2]),
                                     scores={"a": np.ones((1, 2))},
                                     scoring="accuracy", estimator_name="b")
    with pytest.raises(ValueError, match="estimator_name='b' is not a key"):
        display.plot()
    # no name singles out no curve
    display.estimator_name = None
    assert display.plot().ax_.get_title() == ""
    X, y, tasks = make_meta_classification(n_tasks=10, n_samples_per_task=10,
                                           random_state=0)
    with pytest.raises(ValueError, match="also the name of a baseline"):
        AdaptationCurveDisplay.from_estimator(
            MetaClassifier(), X, y, groups=tasks, estimator_name="pooled")


def test_adaptation_curve_display_needs_a_meta_learner():
    pytest.importorskip("matplotlib")
    from sklearn.utils._param_validation import InvalidParameterError

    from skmeta.inspection import AdaptationCurveDisplay

    X, y, tasks = make_meta_classification(n_tasks=6, n_samples_per_task=10,
                                           n_features=4, n_informative=2,
                                           n_redundant=0, random_state=0)
    with pytest.raises(InvalidParameterError, match="adapt_tasks"):
        AdaptationCurveDisplay.from_estimator(LogisticRegression(), X, y,
                                              groups=tasks, shots=[1])


def test_adaptation_curve_display_says_shots_are_per_class_when_stratified():
    # from_estimator draws shots per class for every classifier: the label
    # followed the scoring's name (f1 lost "(per class)")
    pytest.importorskip("matplotlib")
    from skmeta.inspection import AdaptationCurveDisplay

    X, y, tasks = make_meta_classification(
        n_tasks=12, n_samples_per_task=12, n_features=3, n_informative=2,
        n_redundant=0, random_state=2)
    display = AdaptationCurveDisplay.from_estimator(
        MetaClassifier(gamma=1.0, prior="isotropic"), X, y, groups=tasks,
        shots=(1,), scoring="f1", n_repeats=1, random_state=0)
    assert display.ax_.get_xlabel() == "samples of each new task (per class)"
    scores = {"a": np.ones((1, 1))}
    # None: any classification scorer's name (the four named before only)
    for per_class, scoring, label in [(None, "accuracy", " (per class)"),
                                      (None, "r2", ""), (True, "f1", " (per class)"),
                                      (False, "accuracy", ""),
                                      (None, "f1_macro", " (per class)"),
                                      (None, "roc_auc_ovr", " (per class)"),
                                      (None, "neg_brier_score", " (per class)"),
                                      (None, "matthews_corrcoef", " (per class)"),
                                      (None, "neg_mean_squared_error", ""),
                                      (None, "d2_absolute_error_score", "")]:
        shown = AdaptationCurveDisplay(shots=[1], scores=scores, scoring=scoring,
                                       per_class=per_class).plot()
        assert shown.ax_.get_xlabel() == "samples of each new task" + label
