"""Scores computed task by task."""

from numbers import Integral

import numpy as np
from sklearn import metrics
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._validation import check_task_labels, encode_tasks

# metrics of the form metric(y_true, y_pred) -> float, higher is better
_METRICS = {
    "accuracy": metrics.accuracy_score,
    "balanced_accuracy": metrics.balanced_accuracy_score,
    "r2": metrics.r2_score,
    "explained_variance": metrics.explained_variance_score,
    "neg_mean_squared_error": lambda y, p, **kw: -metrics.mean_squared_error(
        y, p, **kw),
    "neg_mean_absolute_error": lambda y, p, **kw: -metrics.mean_absolute_error(
        y, p, **kw),
    "roc_auc": metrics.roc_auc_score,
    "neg_log_loss": lambda y, p, **kw: -metrics.log_loss(y, p, **kw),
}


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "tasks": ["array-like"],
        "scoring": [StrOptions(set(_METRICS)), callable],
        "min_samples": [Interval(Integral, 0, None, closed="left")],
        "labels": ["array-like", None],
        "sample_weight": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def per_task_score(y_true, y_pred, tasks, scoring="accuracy", *, min_samples=1,
                   labels=None, sample_weight=None):
    """Score predictions separately on each task.

    Meta-learning is judged on how well each task is learned, so a task with
    few samples counts as much as a large one; averaging this table's scores
    gives that view, unlike one score over all samples pooled.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True targets.
    y_pred : array-like of shape (n_samples,) or (n_samples, n_classes)
        Predictions; class probabilities or decision values for ``"roc_auc"``
        and ``"neg_log_loss"``.
    tasks : array-like of shape (n_samples,)
        Task label of each sample.
    scoring : str or callable, default="accuracy"
        A metric ``metric(y_true, y_pred) -> float`` (greater is better), or
        one of ``"accuracy"``, ``"balanced_accuracy"``, ``"r2"``,
        ``"explained_variance"``, ``"neg_mean_squared_error"``,
        ``"neg_mean_absolute_error"``, ``"roc_auc"``, ``"neg_log_loss"``.
    min_samples : int, default=1
        Tasks with fewer samples get a NaN score instead of a call to the
        metric (``r2`` needs two samples, for instance).
    labels : array-like of shape (n_classes,), default=None
        The classes of the columns of ``y_pred`` when it holds class
        probabilities (an estimator's ``classes_``), for ``"neg_log_loss"``
        and ``"roc_auc"``: a task need not have rows of every class (with
        more than two, ``"roc_auc"`` is each class's AUC against the rest,
        averaged over the classes the task has; NaN for a task of one
        class). None:
        the sorted labels of ``y_true`` over all tasks. A 1-D ``y_pred`` is
        the probability (or score) of the second of two labels, as
        scikit-learn's metrics take it.
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights, passed to the metric with each task's rows (a
        callable ``scoring`` then receives them as ``sample_weight=``).
        ``min_samples`` still counts rows.

    Returns
    -------
    table : dict of ndarray
        ``"task"`` (sorted task labels), ``"score"`` and ``"n_samples"``,
        one entry per task: ``pandas.DataFrame(table)`` makes it a data frame.

    See Also
    --------
    skmeta.inspection.AdaptationCurveDisplay : Scores against shots per task.

    Examples
    --------
    >>> from skmeta.metrics import per_task_score
    >>> table = per_task_score([0, 1, 1, 1], [0, 1, 0, 1], tasks=["a", "a", "b", "b"])
    >>> table["task"].tolist(), table["score"].tolist()
    (['a', 'b'], [1.0, 0.5])
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} samples but y_pred has "
            f"{y_pred.shape[0]}."
        )
    task_labels = check_task_labels(tasks, y_true.shape[0], rows_of="y_true")
    weights = _weights(sample_weight, y_true.shape[0])
    if labels is not None and scoring not in ("neg_log_loss", "roc_auc"):
        raise ValueError(
            "labels names the columns of class probabilities, for "
            f"scoring='neg_log_loss' or 'roc_auc'; not for scoring={scoring!r}.")
    metric = _METRICS[scoring] if isinstance(scoring, str) else scoring
    if scoring in ("neg_log_loss", "roc_auc") and y_pred.ndim in (1, 2):
        metric = _probability_metric(scoring, y_true, y_pred, labels)
    uniques, codes = encode_tasks(task_labels)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    counts = np.diff(bounds)
    scores = np.full(len(uniques), np.nan)
    for k in np.flatnonzero(counts >= max(min_samples, 1)):
        rows = order[bounds[k]:bounds[k + 1]]
        if weights is None:
            scores[k] = metric(y_true[rows], y_pred[rows])
        else:
            scores[k] = metric(y_true[rows], y_pred[rows],
                               sample_weight=weights[rows])
    return {"task": uniques, "score": scores, "n_samples": counts}


def _probability_metric(scoring, y_true, proba, labels):
    """The metric of one task's rows whose ``proba`` columns are ``labels``
    (those of every task): a task may lack some classes. A 1-D ``proba`` is
    the second of two labels' probability (or score), as scikit-learn's
    metrics take it."""
    labels = np.unique(y_true) if labels is None else np.asarray(labels)
    if proba.ndim == 1 and (labels.ndim != 1 or labels.shape[0] != 2):
        raise ValueError(
            "A 1-D y_pred holds the probability (or score) of the second "
            f"of two classes, but there are {labels.shape[0]} labels; "
            "pass the class probabilities as columns, with labels= (the "
            "estimator's classes_).")
    if proba.ndim == 2 and (labels.ndim != 1
                            or labels.shape[0] != proba.shape[1]):
        raise ValueError(
            f"y_pred has {proba.shape[1]} columns of class probabilities but "
            f"there are {labels.shape[0]} labels; pass labels= (the "
            "estimator's classes_).")
    # rows of other classes would count as negatives, or make every task's
    # score undefined, silently
    unknown = np.setdiff1d(y_true, labels)
    if unknown.size:
        raise ValueError(
            f"y_true contains values {unknown.tolist()} not belonging to the "
            f"passed labels {labels.tolist()}.")
    if scoring == "neg_log_loss":
        # log_loss reads the columns (and a 1-D y_pred's positive class) in
        # the sorted order of labels, not in the order given
        order = np.argsort(labels, kind="stable")
        ordered = labels[order]
        if proba.ndim == 1:
            if order[0] == 1:  # y_pred is the smaller label's probability
                return lambda y, p, **kw: -metrics.log_loss(
                    y, 1.0 - p, labels=ordered, **kw)
            return lambda y, p, **kw: -metrics.log_loss(y, p, labels=ordered,
                                                        **kw)
        return lambda y, p, **kw: -metrics.log_loss(y, p[:, order],
                                                    labels=ordered, **kw)
    if proba.ndim == 1:
        return lambda y, p, **kw: metrics.roc_auc_score(y == labels[1], p, **kw)
    if labels.shape[0] == 2:
        return lambda y, p, **kw: metrics.roc_auc_score(y == labels[1], p[:, 1],
                                                        **kw)
    return lambda y, p, **kw: _one_vs_rest_auc(y, p, labels, **kw)


def _one_vs_rest_auc(y, proba, labels, sample_weight=None):
    """The mean over the classes in ``y`` of each one's AUC against the rest.

    scikit-learn's ``multi_class="ovr"`` averages over every label, and a
    label with no row in the task makes the mean NaN; over the labels the
    task has, it is the same mean where the task has them all.
    """
    present = np.isin(labels, y)
    if present.sum() < 2:
        return np.nan  # one class: no AUC
    return float(np.mean([metrics.roc_auc_score(y == label, proba[:, j],
                                                sample_weight=sample_weight)
                          for j, label in enumerate(labels) if present[j]]))


@validate_params(
    {"y_true": ["array-like"], "y_pred": ["array-like"], "tasks": ["array-like"],
     "sample_weight": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
def within_task_explained_variance(y_true, y_pred, tasks, *, sample_weight=None):
    """Explained variance against each task's own mean, over all samples.

    ``1 - MSE / V`` where ``V`` is the mean squared deviation of ``y_true``
    from the mean of its task (where ``V`` is 0, 1 for perfect predictions
    and 0 otherwise, as ``r2_score``): the share of the *within-task* variance that
    the predictions explain. This is the score of the standard multi-task
    benchmarks (e.g. the School data of Bakker & Heskes, 2003, and Argyriou,
    Evgeniou & Pontil, 2008); it credits nothing for knowing task means.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True targets.
    y_pred : array-like of shape (n_samples,)
        Predictions.
    tasks : array-like of shape (n_samples,)
        Task label of each sample.
    sample_weight : array-like of shape (n_samples,), default=None
        Sample weights: the means (each task's, and the squared errors'
        and deviations') are weighted.

    Returns
    -------
    score : float
        Explained variance; 1 is perfect, 0 is as good as each task's mean.

    Examples
    --------
    >>> from skmeta.metrics import within_task_explained_variance
    >>> within_task_explained_variance([1.0, 3.0, 10.0, 12.0], [1.5, 2.5, 10.0, 12.0],
    ...                                tasks=[0, 0, 1, 1])
    0.875
    """
    y_true = _targets(y_true, "y_true")
    y_pred = _targets(y_pred, "y_pred")
    check_consistent_length(y_true, y_pred, tasks)
    labels = check_task_labels(tasks, y_true.shape[0])
    uniques, codes = encode_tasks(labels)
    weights = _weights(sample_weight, y_true.shape[0])
    if weights is None:
        weights = np.ones(y_true.shape[0])
    task_weight = np.bincount(codes, weights=weights, minlength=len(uniques))
    # (a task of zero weight counts for nothing, whatever its mean)
    means = np.divide(np.bincount(codes, weights=weights * y_true,
                                  minlength=len(uniques)), task_weight,
                      out=np.zeros(len(uniques)), where=task_weight > 0)
    # a task whose targets are all equal deviates by exactly 0, whatever the
    # rounding of its mean (0.1 three times averages to 0.1 + 1e-17)
    lowest = np.full(len(uniques), np.inf)
    highest = np.full(len(uniques), -np.inf)
    np.minimum.at(lowest, codes, y_true)
    np.maximum.at(highest, codes, y_true)
    constant = (lowest == highest)[codes]
    within = np.average(np.where(constant, 0.0, y_true - means[codes]) ** 2,
                        weights=weights)
    error = np.average((y_true - y_pred) ** 2, weights=weights)
    if within == 0.0:
        # every task's target is constant: as r2_score's force_finite, 1 for
        # perfect predictions and 0 otherwise, rather than NaN or -inf
        return 1.0 if error == 0.0 else 0.0
    return float(1.0 - error / within)


def _weights(sample_weight, n_samples):
    """Finite, non-negative weights of shape (n_samples,) with a positive
    sum, or None."""
    if sample_weight is None:
        return None
    weights = check_array(sample_weight, ensure_2d=False, dtype=np.float64,
                          input_name="sample_weight")
    if weights.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must be of shape ({n_samples},); got "
            f"{weights.shape}.")
    if np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(
            "sample_weight must be non-negative with a positive sum.")
    return weights


def _targets(values, name):
    """Finite floats of shape (n_samples,); a single column is accepted, as
    scikit-learn's regression metrics accept one output."""
    values = check_array(values, ensure_2d=False, dtype=np.float64,
                         input_name=name)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(
            f"{name} must be of shape (n_samples,) or (n_samples, 1); got "
            f"{values.shape}.")
    return values
