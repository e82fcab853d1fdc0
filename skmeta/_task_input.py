"""Input validation of the estimators that need no target (density, scaler).

Task identities come from ``task_column`` or ``tasks=`` exactly as for the
meta-estimators; this module only arranges the calls to the helpers of
:mod:`skmeta._validation` around ``validate_data`` for ``X`` alone.
"""

import numpy as np
from sklearn.utils.validation import check_array, validate_data

from ._validation import (
    _column_position,
    check_table,
    check_task_labels,
    is_dataframe,
    split_task_column,
)

FLOAT_DTYPES = (np.float64, np.float32)


def check_unsupervised_input(estimator, X, tasks, *, reset):
    """Validate ``X``; return ``(features, task_labels)``.

    Features are made C-contiguous, so that a DataFrame and the array of its
    values give the same fit to the last bit (sums depend on memory layout).

    ``n_features_in_`` and ``feature_names_in_`` describe ``X`` as passed, task
    column included. ``task_labels`` is None without task identities.
    """
    if estimator.task_column is None:
        X = validate_data(estimator, X, dtype=FLOAT_DTYPES, order="C",
                          reset=reset)
        labels = None
        if tasks is not None:
            labels = check_task_labels(tasks, X.shape[0])
        return X, labels
    if tasks is not None:
        raise ValueError(
            "Pass task identities either through task_column or through "
            "tasks=, not both."
        )
    check_table(X)
    validate_data(estimator, X, reset=reset, skip_check_array=True)
    features, labels = split_task_column(X, estimator.task_column)
    features = check_array(features, dtype=FLOAT_DTYPES, order="C",
                           input_name="X")
    labels = check_task_labels(labels, features.shape[0], name="task column")
    return features, labels


def task_column_position(X, task_column):
    """Position of ``task_column`` among the columns of ``X``."""
    if is_dataframe(X):
        return _column_position(X.columns, task_column)
    return _column_position(range(np.shape(X)[1]), task_column)


def model_feature_names(estimator):
    """Feature names without the task column (None when X had no names)."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or estimator.task_column is None:
        return names
    names = list(names)
    del names[_column_position(names, estimator.task_column)]
    return np.asarray(names, dtype=object)
