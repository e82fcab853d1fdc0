"""Visual checks of how well new tasks are learned from a few samples."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from .metrics import _METRICS, per_task_score
from .model_selection import FewShotSplit

_BASELINES = ("per_task", "pooled")


def _score_rows(estimator, X, y, tasks, scoring, predict_kwargs):
    """Mean over tasks of the per-task score of ``estimator`` on rows X."""
    if scoring in ("roc_auc", "neg_log_loss"):
        proba = estimator.predict_proba(X, **predict_kwargs)
        pred = proba[:, 1] if scoring == "roc_auc" and proba.shape[1] == 2 else proba
    else:
        pred = estimator.predict(X, **predict_kwargs)
    table = per_task_score(y, pred, tasks, scoring, min_samples=2)
    return float(np.nanmean(table["score"]))


def _per_task_fits(base, X, y, tasks, train, test, scoring):
    """Fit a clone of ``base`` on each held-out task's shots; mean test score."""
    scores = []
    for t in np.unique(tasks[test]):
        fit_rows = train & (tasks == t)
        test_rows = test & (tasks == t)
        if not fit_rows.any():
            continue
        model = clone(base)
        if hasattr(model, "n_neighbors"):
            # k-NN cannot look at more neighbours than there are shots
            model.set_params(n_neighbors=min(model.n_neighbors,
                                             max(1, int(fit_rows.sum()) - 1 | 1)))
        try:
            model.fit(_rows(X, fit_rows), y[fit_rows])
        except ValueError:
            continue  # e.g. one class among the shots: no model to score
        scores.append(_score_rows(model, _rows(X, test_rows), y[test_rows],
                                  tasks[test_rows], scoring, {}))
    return float(np.mean(scores)) if scores else np.nan


class AdaptationCurveDisplay:
    """Score on new tasks against the number of samples they come with.

    The curve that matters for meta-learning: how well a task never seen in
    training is learned from 1, 2, 5... samples (per class for classifiers),
    compared with fitting the base estimator on those samples alone and with
    one model pooled over all data. Use :meth:`from_estimator` to compute it.

    Parameters
    ----------
    shots : ndarray of shape (n_shots,)
        Numbers of samples (per class for classifiers) of each new task.
    scores : dict of str to ndarray of shape (n_repeats, n_shots)
        Mean per-task score of each approach, one row per repeat.
    scoring : str
        Name of the score, used as the y label.
    estimator_name : str, default="skmeta"
        Name of the meta-learner's curve.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the curves.
    figure_ : matplotlib Figure
        Figure containing the curves.
    lines_ : dict of str to matplotlib Line2D
        The mean curve of each approach.

    See Also
    --------
    skmeta.model_selection.FewShotSplit : The splits behind the curve.
    skmeta.metrics.per_task_score : Scores task by task.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skmeta import MetaClassifier
    >>> from skmeta.datasets import make_meta_classification
    >>> from skmeta.inspection import AdaptationCurveDisplay
    >>> X, y, tasks = make_meta_classification(n_tasks=40, n_samples_per_task=30,
    ...                                        random_state=0)
    >>> display = AdaptationCurveDisplay.from_estimator(
    ...     MetaClassifier(), X, y, groups=tasks, shots=(1, 5), n_repeats=2,
    ...     random_state=0)
    >>> sorted(display.scores)
    ['per_task', 'pooled', 'skmeta']
    """

    def __init__(self, *, shots, scores, scoring, estimator_name="skmeta"):
        self.shots = shots
        self.scores = scores
        self.scoring = scoring
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, show_spread=True):
        """Draw the mean curve of each approach, with ±1 std over repeats.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure is made when None.
        show_spread : bool, default=True
            Shade one standard deviation over repeats around each curve.

        Returns
        -------
        display : AdaptationCurveDisplay
            The display, with ``ax_``, ``figure_`` and ``lines_`` set.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        self.lines_ = {}
        for name, values in self.scores.items():
            values = np.asarray(values, dtype=float)
            mean = np.nanmean(values, axis=0)
            (line,) = ax.plot(self.shots, mean, marker="o", label=name)
            self.lines_[name] = line
            if show_spread and values.shape[0] > 1:
                spread = np.nanstd(values, axis=0)
                ax.fill_between(self.shots, mean - spread, mean + spread,
                                alpha=0.2, color=line.get_color())
        ax.set_xscale("log")
        ax.set_xticks(self.shots, labels=[str(k) for k in self.shots])
        ax.minorticks_off()
        ax.set_xlabel("samples of each new task" + (
            " (per class)" if self.scoring in ("accuracy", "balanced_accuracy",
                                               "roc_auc", "neg_log_loss")
            else ""))
        ax.set_ylabel(f"{self.scoring} on the new tasks")
        ax.legend()
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    @validate_params(
        {
            "X": ["array-like", "sparse matrix"],
            "y": ["array-like"],
            "groups": ["array-like"],
            "shots": ["array-like"],
            "baselines": [tuple, list, dict],
            "scoring": [str, callable, None],
            "test_size": [Interval(Real, 0, 1, closed="neither"),
                          Interval(Integral, 1, None, closed="left")],
            "n_repeats": [Interval(Integral, 1, None, closed="left")],
            "random_state": ["random_state"],
        },
        prefer_skip_nested_validation=False,
    )
    def from_estimator(cls, estimator, X, y, *, groups, shots=(1, 2, 5, 10, 20),
                       baselines=_BASELINES, scoring=None, test_size=0.2,
                       n_repeats=5, random_state=None, ax=None):
        """Compute the adaptation curve of a meta-learner and plot it.

        For each repeat, a fraction of the tasks is held out (the same tasks
        for every number of shots); the meta-learner is fitted on the other
        tasks, then adapts each held-out task from ``k`` of its samples
        (:meth:`~skmeta.MetaClassifier.partial_fit`) and is scored on the
        task's remaining samples, task by task.

        Parameters
        ----------
        estimator : MetaClassifier or MetaRegressor
            The (unfitted) meta-learner; it is cloned.
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Samples of all tasks (without a task column).
        y : array-like of shape (n_samples,)
            Targets.
        groups : array-like of shape (n_samples,)
            Task label of each sample.
        shots : array-like of int, default=(1, 2, 5, 10, 20)
            Samples (per class for classifiers) given for each held-out task.
        baselines : tuple of str or dict, default=("per_task", "pooled")
            ``"per_task"``: the base estimator fitted on each held-out task's
            samples alone; ``"pooled"``: the base estimator fitted on all
            training rows (other tasks and the held-out tasks' samples)
            ignoring tasks. A dict names its curves; its values are those two
            strings or estimators fitted per task (e.g. ``{"k-NN":
            KNeighborsClassifier(), "pooled": "pooled"}``); an estimator with
            ``n_neighbors`` gets at most the (odd) number of samples below the
            task's sample count.
        scoring : str or callable, default=None
            Per-task metric, see :func:`skmeta.metrics.per_task_score`;
            ``None`` means accuracy for classifiers and R^2 for regressors.
        test_size : float or int, default=0.2
            Fraction (or number) of tasks held out in each repeat.
        n_repeats : int, default=5
            Number of random sets of held-out tasks.
        random_state : int, RandomState instance or None, default=None
            Controls the held-out tasks and the samples drawn as shots.
        ax : matplotlib Axes, default=None
            Axes to plot on.

        Returns
        -------
        display : AdaptationCurveDisplay
            The computed and plotted display.
        """
        X_arr = X
        y = np.asarray(y)
        groups = np.asarray(groups)
        shots = np.sort(np.unique(np.asarray(shots, dtype=int)))
        if scoring is None:
            scoring = "accuracy" if is_classifier(estimator) else "r2"
        if isinstance(scoring, str) and scoring not in _METRICS:
            raise ValueError(f"scoring={scoring!r} is not one of {sorted(_METRICS)}.")
        if not isinstance(baselines, dict):
            baselines = {name: name for name in baselines}
        unknown = sorted(str(v) for v in baselines.values()
                         if isinstance(v, str) and v not in _BASELINES)
        if unknown:
            raise ValueError(
                f"Unknown baselines {unknown}; use {_BASELINES} or estimators."
            )
        base = estimator._base_estimator()
        rng = check_random_state(random_state)
        seeds = rng.randint(np.iinfo(np.int32).max, size=n_repeats)
        names = ["skmeta", *baselines]
        scores = {name: np.full((n_repeats, len(shots)), np.nan) for name in names}
        stratify = is_classifier(estimator)
        for r, seed in enumerate(seeds):
            meta = None
            for j, k in enumerate(shots):
                split = FewShotSplit(n_splits=1, n_shots=int(k), test_size=test_size,
                                     stratify=stratify, random_state=seed)
                train_idx, test_idx = next(split.split(X_arr, y, groups))
                train = np.zeros(len(y), dtype=bool)
                train[train_idx] = True
                test = np.zeros(len(y), dtype=bool)
                test[test_idx] = True
                held_out = np.isin(groups, np.unique(groups[test]))
                if meta is None:
                    # meta-train once per repeat, on the tasks not held out
                    meta = clone(estimator).fit(
                        _rows(X_arr, ~held_out), y[~held_out],
                        tasks=groups[~held_out])
                shots_rows = train & held_out
                meta.partial_fit(_rows(X_arr, shots_rows), y[shots_rows],
                                 tasks=groups[shots_rows])
                scores["skmeta"][r, j] = _score_rows(
                    meta, _rows(X_arr, test), y[test], groups[test], scoring,
                    {"tasks": groups[test]})
                for name, how in baselines.items():
                    if isinstance(how, str) and how == "pooled":
                        pooled = clone(base).fit(_rows(X_arr, train), y[train])
                        scores[name][r, j] = _score_rows(
                            pooled, _rows(X_arr, test), y[test], groups[test],
                            scoring, {})
                    else:
                        per_task = base if isinstance(how, str) else how
                        scores[name][r, j] = _per_task_fits(
                            per_task, X_arr, y, groups, train, test, scoring)
        display = cls(shots=shots, scores=scores,
                      scoring=scoring if isinstance(scoring, str)
                      else getattr(scoring, "__name__", "score"),
                      estimator_name=type(estimator).__name__)
        return display.plot(ax=ax)


def _rows(X, mask):
    """Rows of an array, sparse matrix or DataFrame selected by a mask."""
    if hasattr(X, "iloc"):
        return X.iloc[np.flatnonzero(mask)]
    return X[mask]
