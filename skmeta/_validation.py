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


def _decode(value, name):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{name} contains bytes that are not valid UTF-8, such as "
            f"{bytes(value)!r}; task labels given as bytes are decoded as UTF-8 "
            "(decode them to str yourself if they use another encoding)."
        ) from None


def _as_str(labels, name):
    """Text labels as a str array, bytes decoded as UTF-8.

    Labels read from HDF5 or Parquet often arrive as bytes: decoding them
    makes ``b"north"`` and ``"north"`` the same task, whichever of the two
    fit and predict receive.
    """
    if labels.dtype.kind == "S":
        try:
            return np.char.decode(labels, "utf-8")
        except UnicodeDecodeError:
            for value in labels:
                _decode(value, name)
    if labels.dtype.kind == "U":
        return labels
    return np.asarray([_decode(v, name) if isinstance(v, bytes) else v
                       for v in labels], dtype=str)


# integral float labels convert exactly to int64 within [-2**63, 2**63)
_INT64_FLOAT_BOUND = 2.0**63


def check_task_labels(labels, n_samples, *, name="tasks"):
    """Validate task labels: 1-D, one per sample, integers or strings.

    Integral floats (as read from a numeric column) become int64; other
    floats, floats beyond the int64 range, missing values and mixtures of
    numbers and strings are refused. Bytes are decoded as UTF-8 (see
    :func:`_as_str`), so text labels are always str.
    """
    if not hasattr(labels, "dtype"):
        # np.asarray would quietly turn [1, "a"] into the strings "1", "a"
        labels = np.asarray(labels, dtype=object)
        if labels.ndim == 1 and labels.size and all(_is_text(v) for v in labels):
            labels = _as_str(labels, name)
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
            return _as_str(labels, name)
        labels = np.asarray(labels.tolist())
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ValueError(f"{name} contains NaN or infinite labels.")
        if not np.all(labels == np.round(labels)):
            raise ValueError(
                f"{name} labels must be integers or strings; got non-integral "
                f"numbers such as {labels[labels != np.round(labels)][0]!r}."
            )
        outside = (labels < -_INT64_FLOAT_BOUND) | (labels >= _INT64_FLOAT_BOUND)
        if np.any(outside):
            # converting would overflow, and distinct labels would merge
            raise ValueError(
                f"{name} has float labels beyond the int64 range, such as "
                f"{labels[outside][0].item()!r}, which cannot be converted to "
                "integers exactly; pass such labels as integers (e.g. uint64) "
                "or as strings."
            )
        return labels.astype(np.int64)
    if labels.dtype.kind == "S":
        return _as_str(labels, name)
    if labels.dtype.kind not in "iubU":
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


def _bounds(dtype):
    if dtype.kind == "b":
        return 0, 1
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _representable(labels, dtype):
    """Which integer (or bool) ``labels`` the integer ``dtype`` holds exactly.

    Compared in uint64 or int64, never through float64, which would merge
    labels that differ beyond 2**53.
    """
    low, high = _bounds(dtype)
    if labels.dtype.kind == "b":
        return np.ones(labels.shape, dtype=bool)
    if labels.dtype.kind == "u":
        return labels.astype(np.uint64) <= np.uint64(high)
    values = labels.astype(np.int64)
    fits = values >= np.int64(low)
    if high < 2**63:
        fits &= values <= np.int64(high)
    return fits


def _align(known, labels):
    """``labels`` in the dtype of the fitted ``known`` labels.

    Returns ``(aligned, fits)``: ``fits`` marks the labels the dtype holds
    exactly (``None`` when all do); the others cannot be known tasks. Labels
    of another kind (numbers against strings) are refused.
    """
    known_text = known.dtype.kind in "US"
    if known_text != (labels.dtype.kind == "U"):
        raise ValueError(
            "task labels are of a different type than those seen in fit "
            f"(e.g. {labels[0].item()!r} vs {known[0].item()!r}): the "
            f"model's tasks_ are {'strings' if known_text else 'integers'}."
        )
    if known.dtype.kind == "S":
        # a model fitted by an earlier skmeta, which kept bytes labels as
        # bytes: compare in its terms
        return np.char.encode(labels, "utf-8"), None
    if known_text or labels.dtype == known.dtype:
        return labels, None
    fits = _representable(labels, known.dtype)
    aligned = np.zeros(labels.shape, dtype=known.dtype)
    aligned[fits] = labels[fits].astype(known.dtype)
    return aligned, (None if fits.all() else fits)


def lookup_tasks(known, labels):
    """Index of each label in the sorted ``known`` labels, -1 when unseen."""
    labels = check_task_labels(labels, len(labels))
    if len(known) == 0 or len(labels) == 0:
        return np.full(len(labels), -1, dtype=np.intp)
    labels, fits = _align(known, labels)
    pos = np.searchsorted(known, labels)
    pos = np.clip(pos, 0, len(known) - 1)
    found = known[pos] == labels
    if fits is not None:
        found &= fits
    return np.where(found, pos, -1).astype(np.intp)


def add_tasks(known, params, labels, new_params):
    """Merge newly fitted tasks into ``(tasks_, task_params_)``.

    ``tasks_`` keeps its dtype: labels of another kind, or integers it cannot
    hold exactly, are refused rather than converted (``np.concatenate`` would
    turn integers and strings into strings, or int64 and uint64 into float64,
    merging tasks). A known label's parameters are replaced.
    """
    aligned, fits = _align(known, labels)
    if fits is not None:
        raise ValueError(
            f"task label {labels[~fits][0].item()!r} cannot be stored with the tasks "
            f"seen so far, whose dtype is {known.dtype} (range "
            f"{_bounds(known.dtype)}); use labels of one integer type in fit "
            "and partial_fit."
        )
    merged, inverse = np.unique(np.concatenate([known, aligned]),
                                return_inverse=True)
    table = np.empty((len(merged), params.shape[1]))
    table[inverse[:len(known)]] = params
    table[inverse[len(known):]] = new_params
    return merged, table
