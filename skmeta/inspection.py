"""Visual checks of how well new tasks are learned from a few samples."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import get_scorer_names
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_params,
)

from .model_selection import adaptation_curve

_BASELINES = ("per_task", "pooled")


def _mean_over_tasks(scores):
    """``(n_repeats, n_shots)`` mean over held-out tasks, NaN-aware."""
    with warnings.catch_warnings():
        # a repeat where every task failed is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(scores, axis=2).T


# scikit-learn's scorers of classifiers (get_scorer_names), by the names
# their families start with: an adaptation curve of these counts shots per
# class
_CLASSIFICATION_SCORING = (
    "accuracy", "balanced_accuracy", "top_k_accuracy", "average_precision",
    "roc_auc", "f1", "precision", "recall", "jaccard", "matthews_corrcoef",
    "neg_log_loss", "neg_brier_score", "d2_log_loss_score", "d2_brier_score",
    "positive_likelihood_ratio", "neg_negative_likelihood_ratio",
)


class AdaptationCurveDisplay:
    """Score on new tasks against the number of samples they come with.

    The curve that matters for meta-learning: how well a task never seen in
    training is learned from 1, 2, 5... samples (per class for classifiers),
    compared with fitting the base estimator on those samples alone and with
    one model pooled over all data. Use :meth:`from_estimator` to compute it;
    the numbers come from :func:`~skmeta.model_selection.adaptation_curve`.

    Parameters
    ----------
    shots : ndarray of shape (n_shots,)
        Numbers of samples (per class for classifiers) of each new task.
    scores : dict of str to ndarray of shape (n_repeats, n_shots)
        Mean per-task score of each approach, one row per repeat; the keys
        name the curves in the legend.
    scoring : str
        Name of the score, used in the y label.
    estimator_name : str, default=None
        Key of ``scores`` holding the meta-learner's curve, which is drawn
        above the others with a thicker line and named in the title. None
        singles out no curve.
    per_class : bool or None, default=None
        Whether ``shots`` count samples of each class (stratified shots, as
        :meth:`from_estimator` draws for classifiers), said in the x label.
        None infers it from ``scoring``: a classification metric's name.

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
    skmeta.model_selection.adaptation_curve : The scores behind the curves.
    skmeta.model_selection.FewShotSplit : The splits behind each point.
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
    ['MetaClassifier', 'per_task', 'pooled']
    >>> display.scores["MetaClassifier"].shape
    (2, 2)
    >>> [text.get_text() for text in display.ax_.get_legend().get_texts()]
    ['MetaClassifier', 'per_task', 'pooled']
    """

    def __init__(self, *, shots, scores, scoring, estimator_name=None,
                 per_class=None):
        self.shots = shots
        self.scores = scores
        self.scoring = scoring
        self.estimator_name = estimator_name
        self.per_class = per_class

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

        if self.estimator_name is not None and self.estimator_name not in self.scores:
            raise ValueError(
                f"estimator_name={self.estimator_name!r} is not a key of scores "
                f"({sorted(self.scores)})."
            )
        if ax is None:
            _, ax = plt.subplots()
        self.lines_ = {}
        for name, values in self.scores.items():
            values = np.asarray(values, dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(values, axis=0)
                spread = np.nanstd(values, axis=0)
            main = name == self.estimator_name
            (line,) = ax.plot(self.shots, mean, marker="o", label=name,
                              linewidth=2.5 if main else 1.5,
                              zorder=3 if main else 2)
            self.lines_[name] = line
            if show_spread and values.shape[0] > 1:
                ax.fill_between(self.shots, mean - spread, mean + spread,
                                alpha=0.2, color=line.get_color())
        ax.set_xscale("log")
        ax.set_xticks(self.shots, labels=[str(k) for k in self.shots])
        ax.minorticks_off()
        per_class = self.per_class
        if per_class is None:
            per_class = (isinstance(self.scoring, str)
                         and self.scoring.startswith(_CLASSIFICATION_SCORING))
        ax.set_xlabel("samples of each new task"
                      + (" (per class)" if per_class else ""))
        ax.set_ylabel(f"{self.scoring} on the new tasks")
        if self.estimator_name is not None:
            ax.set_title(f"Adaptation curve of {self.estimator_name}")
        ax.legend()
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    @validate_params(
        {
            "estimator": [HasMethods(["fit", "adapt_tasks"])],
            "X": ["array-like", "sparse matrix"],
            "y": ["array-like"],
            "groups": ["array-like"],
            "shots": ["array-like"],
            "baselines": [tuple, list, dict],
            "scoring": [StrOptions(set(get_scorer_names())), callable, None],
            "test_size": [Interval(Real, 0, 1, closed="neither"),
                          Interval(Integral, 1, None, closed="left")],
            "n_repeats": [Interval(Integral, 1, None, closed="left")],
            "random_state": ["random_state"],
            "estimator_name": [str, None],
            "n_jobs": [Integral, None],
        },
        prefer_skip_nested_validation=False,
    )
    def from_estimator(  # noqa: PLR0913
        cls, estimator, X, y, *, groups, shots=(1, 2, 5, 10, 20),
        baselines=_BASELINES, scoring=None, test_size=0.2, n_repeats=5,
        random_state=None, estimator_name=None, n_jobs=None, ax=None,
    ):
        """Compute the adaptation curve of a meta-learner and plot it.

        For each repeat, a fraction of the tasks is held out (the same tasks
        for every number of shots); the meta-learner is fitted on the other
        tasks, then adapts each held-out task from ``k`` of its samples
        (:meth:`~skmeta.MetaClassifier.adapt_tasks`) and is scored on the
        task's remaining samples, task by task. Every curve comes from
        :func:`~skmeta.model_selection.adaptation_curve` with the same
        held-out tasks and shots.

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
            ``n_neighbors`` gets at most the largest odd number not above its
            number of samples (see ``strategy`` in
            :func:`~skmeta.model_selection.adaptation_curve`).
        scoring : str or callable, default=None
            Scorer applied to each held-out task: a scorer name or a callable
            ``scorer(estimator, X, y)``; ``None`` means accuracy for
            classifiers and R^2 for regressors (also for a
            ``PoissonRegressor`` base, whose own ``score`` is D^2: pass
            e.g. ``"neg_mean_poisson_deviance"`` to compare by deviance).
        test_size : float or int, default=0.2
            Fraction (or number) of tasks held out in each repeat.
        n_repeats : int, default=5
            Number of random sets of held-out tasks.
        random_state : int, RandomState instance or None, default=None
            Controls the held-out tasks and the samples drawn as shots.
        estimator_name : str, default=None
            Name of the meta-learner's curve in the legend and the title;
            None means the class name of ``estimator``.
        n_jobs : int, default=None
            Number of jobs running the repeats of each curve in parallel.
        ax : matplotlib Axes, default=None
            Axes to plot on.

        Returns
        -------
        display : AdaptationCurveDisplay
            The computed and plotted display.
        """
        if estimator_name is None:
            estimator_name = type(estimator).__name__
        if not isinstance(baselines, dict):
            baselines = {name: name for name in baselines}
        unknown = sorted(str(v) for v in baselines.values()
                         if isinstance(v, str) and v not in _BASELINES)
        if unknown:
            raise ValueError(
                f"Unknown baselines {unknown}; use {_BASELINES} or estimators."
            )
        if estimator_name in baselines:
            raise ValueError(
                f"estimator_name={estimator_name!r} is also the name of a "
                "baseline; pass another estimator_name."
            )
        if scoring is None:
            scoring = "accuracy" if is_classifier(estimator) else "r2"
        # One seed for every curve, so that they share held-out tasks and shots
        # even when random_state is a RandomState instance or None.
        if not isinstance(random_state, Integral):
            random_state = check_random_state(random_state).randint(
                np.iinfo(np.int32).max)
        curves = {estimator_name: (estimator, "adapt")}
        for name, how in baselines.items():
            if isinstance(how, str):
                curves[name] = (estimator._base_estimator(), how)
            else:
                curves[name] = (how, "per_task")
        scores = {}
        for name, (model, strategy) in curves.items():
            shots_, task_scores, _ = adaptation_curve(
                model, X, y, groups=groups, shots=shots, strategy=strategy,
                test_size=test_size, n_repeats=n_repeats,
                stratify=is_classifier(estimator), scoring=scoring,
                n_jobs=n_jobs, random_state=random_state)
            scores[name] = _mean_over_tasks(task_scores)
        display = cls(shots=shots_, scores=scores,
                      scoring=scoring if isinstance(scoring, str)
                      else getattr(scoring, "__name__", "score"),
                      estimator_name=estimator_name,
                      per_class=is_classifier(estimator))
        return display.plot(ax=ax)
