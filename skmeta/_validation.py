"""Task identities: reading them from a column or an array, and encoding them."""

import numbers

import numpy as np
import scipy.sparse as sp


def _module_of(X):
    return type(X).__module__.split(".")[0]


def is_dataframe(X):
    """Whether ``X`` is a pandas or polars DataFrame (checked without imports)."""
    return _module_of(X) in ("pandas", "polars") and hasattr(X, "columns")


def _column_position(columns, task_column):
    columns = list(columns)
    if task_column in columns:
        return columns.index(task_column)
    if isinstance(task_column, numbers.Integral) and not isinstance(task_column, bool):
        if -len(columns) <= task_column < len(columns):
            return int(task_column) % len(columns)
        raise ValueError(
            f"task_column={task_column} is out of range for X with "
            f"{len(columns)} columns."
        )
    raise ValueError(
        f"task_column={task_column!r} is not a column of X; its columns are "
        f"{columns[:20]}{' ...' if len(columns) > 20 else ''}."
    )


def split_task_column(X, task_column):
    """Return ``(features, task_labels)``: ``X`` without its task column.

    For DataFrames ``task_column`` is a column name (or, if it names no column,
    an integer position); for arrays and sparse matrices an integer position.
    ``X`` itself is never modified.
    """
    if is_dataframe(X):
        position = _column_position(X.columns, task_column)
        name = list(X.columns)[position]
        if _module_of(X) == "pandas":
            labels = X.iloc[:, position].to_numpy()
            features = X.drop(columns=[name])
        else:  # polars
            labels = X.get_column(name).to_numpy()
            features = X.drop(name)
        return features, labels
    if not isinstance(task_column, numbers.Integral) or isinstance(task_column, bool):
        raise ValueError(
            f"task_column={task_column!r} is a name, but X is not a DataFrame; "
            "use an integer column position for arrays."
        )
    if sp.issparse(X):
        n_columns = X.shape[1]
        position = _column_position(range(n_columns), task_column)
        X = X.tocsc()
        labels = X[:, position].toarray().ravel()
        keep = np.arange(n_columns) != position
        return X[:, keep].tocsr(), labels
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2D array with a task column, got an array of shape "
            f"{X.shape}."
        )
    position = _column_position(range(X.shape[1]), task_column)
    labels = X[:, position]
    return np.delete(X, position, axis=1), labels


def _is_text(value):
    return isinstance(value, (str, bytes, np.str_, np.bytes_))


def check_task_labels(labels, n_samples, *, name="tasks"):
    """Validate task labels: 1-D, one per sample, integers or strings.

    Integral floats (as read from a numeric column) become integers; other
    floats, missing values and mixtures of numbers and strings are refused.
    """
    if not hasattr(labels, "dtype"):
        # np.asarray would quietly turn [1, "a"] into the strings "1", "a"
        labels = np.asarray(labels, dtype=object)
        if labels.ndim == 1 and labels.size and all(_is_text(v) for v in labels):
            labels = labels.astype(str)
        elif labels.ndim == 1 and labels.size and not any(
                _is_text(v) or v is None for v in labels):
            labels = np.asarray(labels.tolist())
    else:
        labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {labels.shape}.")
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {labels.shape[0]} labels but X has {n_samples} samples."
        )
    if labels.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in labels):
            raise ValueError(f"{name} contains missing labels.")
        kinds = {_is_text(v) for v in labels}
        if len(kinds) > 1:
            raise ValueError(
                f"{name} mixes strings and numbers; use one type of label."
            )
        if kinds == {True}:
            return labels.astype(str)
        labels = np.asarray(labels.tolist())
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ValueError(f"{name} contains NaN or infinite labels.")
        if not np.all(labels == np.round(labels)):
            raise ValueError(
                f"{name} labels must be integers or strings; got non-integral "
                f"numbers such as {labels[labels != np.round(labels)][0]!r}."
            )
        return labels.astype(np.int64)
    if labels.dtype.kind not in "iubUS":
        raise ValueError(
            f"{name} labels must be integers or strings, got dtype {labels.dtype}."
        )
    return labels


def encode_tasks(labels):
    """Sorted unique task labels and each sample's index into them."""
    if labels.dtype.kind in "iu" and labels.size and np.all(labels[1:] >= labels[:-1]):
        # rows already grouped by sorted task: no sort needed
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        codes = np.zeros(labels.size, dtype=np.intp)
        codes[starts[1:]] = 1
        return labels[starts], np.cumsum(codes, out=codes)
    try:
        uniques, codes = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"task labels cannot be sorted: {exc}") from None
    return uniques, codes.astype(np.intp).ravel()


def _text_like(array):
    if array.dtype.kind in "US":
        return True
    return array.dtype.kind == "O" and len(array) > 0 and _is_text(array[0])


def lookup_tasks(known, labels):
    """Index of each label in the sorted ``known`` labels, -1 when unseen."""
    if len(known) and len(labels) and _text_like(known) != _text_like(labels):
        raise ValueError(
            "task labels are of a different type than those seen in fit "
            f"(e.g. {labels[0]!r} vs {known[0]!r})."
        )
    if len(known) == 0:
        return np.full(len(labels), -1, dtype=np.intp)
    pos = np.searchsorted(known, labels)
    pos = np.clip(pos, 0, len(known) - 1)
    found = known[pos] == labels
    return np.where(found, pos, -1).astype(np.intp)
