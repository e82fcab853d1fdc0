"""Task identities: reading them from a column or an array, and encoding them."""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array


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


def check_table(X):
    """Raise scikit-learn's error for an ``X`` that is not a table of rows.

    For inputs with a task column, which are validated only after it is
    taken out: counting the columns of a 1-D array first gave "X does not
    contain any features" instead of the advice to reshape it.
    """
    if is_dataframe(X) or sp.issparse(X) or np.ndim(X) == 2:
        return
    check_array(X, dtype=None, ensure_all_finite=False)


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
        _check_features_left(features, task_column)
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


def _check_features_left(features, task_column):
    # a DataFrame of no column fails deep in numpy ("at least one array or
    # dtype is required") where an array gets scikit-learn's own message
    if features.shape[1] == 0:
        raise ValueError(
            f"X holds no feature besides its task column(s) "
            f"task_column={task_column!r}: found 0 feature(s) (shape="
            f"{tuple(features.shape)}) while a minimum of 1 is required.")


def _is_text(value):
    return isinstance(value, (str, bytes, np.str_, np.bytes_))


def _is_missing(value):
    """None, a float NaN, or pandas' missing-value scalars (``pd.NA`` in a
    ``"string"`` column, ``pd.NaT``), told apart without importing pandas."""
    return (value is None or (isinstance(value, float) and np.isnan(value))
            or type(value).__name__ in ("NAType", "NaTType"))


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


def check_task_labels(labels, n_samples, *, name="tasks", rows_of="X"):
    """Validate task labels: 1-D, one per sample, integers or strings.

    Integral floats (as read from a numeric column) become int64; other
    floats, floats beyond the int64 range, missing values and mixtures of
    numbers and strings are refused. Bytes are decoded as UTF-8 (see
    :func:`_as_str`), so text labels are always str. ``name`` and
    ``rows_of`` name the labels and what they must be as many as in errors.
    """
    if not hasattr(labels, "dtype"):
        # np.asarray would quietly turn [1, "a"] into the strings "1", "a"
        labels = np.asarray(labels, dtype=object)
        if labels.ndim == 1 and labels.size and all(_is_text(v) for v in labels):
            labels = _as_str(labels, name)
        elif labels.ndim == 1 and labels.size and not any(
                _is_text(v) or _is_missing(v) for v in labels):
            labels = np.asarray(labels.tolist())
    else:
        labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {labels.shape}.")
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {labels.shape[0]} labels but {rows_of} has "
            f"{n_samples} samples."
        )
    if labels.dtype.kind == "O":
        if any(_is_missing(v) for v in labels):
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
    table = np.empty((len(merged),) + params.shape[1:])
    table[inverse[:len(known)]] = params
    table[inverse[len(known):]] = new_params
    return merged, table


class NestedLabels:
    """Task labels of nested tasks: one validated 1-D column per level,
    outermost first (see :func:`check_nested_labels`)."""

    def __init__(self, columns):
        self.columns = tuple(columns)

    @property
    def n_levels(self):
        return len(self.columns)

    def __len__(self):
        return len(self.columns[0])


def _columns_of(labels):
    """The columns of a 2-D array-like of labels (a DataFrame's kept apart,
    so that each keeps its own type)."""
    if is_dataframe(labels):
        if _module_of(labels) == "pandas":
            return [labels.iloc[:, i].to_numpy() for i in range(labels.shape[1])]
        return [labels.get_column(name).to_numpy() for name in labels.columns]
    if isinstance(labels, (list, tuple)) and not hasattr(labels, "dtype"):
        rows = np.asarray(labels, dtype=object)
    else:
        rows = np.asarray(labels)
    return [rows[:, i] for i in range(rows.shape[1])]


def check_any_task_labels(labels, n_samples, *, name="tasks"):
    """Validate 1-D task labels, or 2-D nested ones (one column per level).

    A 2-D array of several columns is a :class:`NestedLabels` whose columns
    pass :func:`check_task_labels` each; of one column, an error.
    """
    if not is_dataframe(labels) and np.ndim(labels) != 2:
        return check_task_labels(labels, n_samples, name=name)
    shape = np.shape(labels)
    if shape[0] != n_samples:
        raise ValueError(
            f"{name} has {shape[0]} rows of labels but X has {n_samples} "
            "samples.")
    if shape[1] < 2:
        raise ValueError(
            f"{name} must be 1-dimensional, or 2-dimensional with one column "
            f"per level of nested tasks (at least 2), got shape {shape}.")
    columns = [check_task_labels(column, n_samples,
                                 name=f"{name} (level {level})")
               for level, column in enumerate(_columns_of(labels))]
    return NestedLabels(columns)


def split_task_columns(X, task_columns):
    """``(features, NestedLabels)``: ``X`` without the task columns listed
    (outermost level first); ``X`` itself is never modified."""
    task_columns = list(task_columns)
    if len(task_columns) == 0:
        raise ValueError("task_column is an empty list; give at least one column.")
    if is_dataframe(X):
        columns = X.columns
    else:
        if sp.issparse(X):
            n_columns = X.shape[1]
        else:
            X = np.asarray(X)
            if X.ndim != 2:
                raise ValueError(
                    f"Expected a 2D array with task columns, got an array of "
                    f"shape {X.shape}.")
            n_columns = X.shape[1]
        columns = range(n_columns)
        for column in task_columns:
            if not isinstance(column, numbers.Integral) or isinstance(column,
                                                                       bool):
                raise ValueError(
                    f"task_column entry {column!r} is a name, but X is not a "
                    "DataFrame; use integer column positions for arrays.")
    positions = [_column_position(columns, column) for column in task_columns]
    if len(set(positions)) != len(positions):
        raise ValueError(
            f"task_column={task_columns!r} names the same column twice.")
    if is_dataframe(X):
        names = [list(X.columns)[p] for p in positions]
        if _module_of(X) == "pandas":
            labels = [X.iloc[:, p].to_numpy() for p in positions]
            features = X.drop(columns=names)
        else:
            labels = [X.get_column(name).to_numpy() for name in names]
            features = X.drop(names)
    elif sp.issparse(X):
        Xc = X.tocsc()
        labels = [Xc[:, p].toarray().ravel() for p in positions]
        keep = ~np.isin(np.arange(X.shape[1]), positions)
        features = Xc[:, keep].tocsr()
    else:
        labels = [X[:, p] for p in positions]
        features = np.delete(X, positions, axis=1)
    _check_features_left(features, task_columns)
    n = features.shape[0]
    checked = [check_task_labels(column, n, name=f"task column {column_name!r}")
               for column_name, column in zip(task_columns, labels)]
    return features, checked[0] if len(checked) == 1 else NestedLabels(checked)


def without_weightless_tasks(labels, sample_weight):
    """Which rows to keep: all but those of tasks whose rows all have weight 0.

    Returns a boolean mask, or None where every row is kept. A task without
    weight is absent, as a row of weight 0 is (scikit-learn's convention);
    kept, it entered the prior's estimate with a model no row of it set.
    Where no task has weight, none is dropped (the fit then says so).
    """
    if labels is None or np.all(sample_weight > 0):
        return None
    if isinstance(labels, NestedLabels):
        codes = encode_nested(labels)[2]
    else:
        codes = encode_tasks(labels)[1]
    keep = rows_of_weighed_tasks(codes, sample_weight)
    if keep.all() or not keep.any():
        return None
    return keep


def rows_of_weighed_tasks(codes, sample_weight):
    """The rows whose task (``codes``) has some weight."""
    return np.bincount(codes, weights=sample_weight)[codes] > 0


def encode_nested(labels):
    """Encode nested labels: the task of a sample is its whole path of labels.

    Returns ``(levels, paths, codes, parents)``: the sorted unique labels of
    each level, the tasks' paths as codes into them (``(n_tasks,
    n_levels)``, sorted lexicographically, so that the tasks of a group are
    consecutive), each sample's task, and for each level ``l = 1 ..
    n_levels`` the index of each node's parent among the nodes of level
    ``l - 1`` (level 0: the population).
    """
    levels, level_codes = zip(*(encode_tasks(column) for column in labels.columns))
    dims = [len(level) for level in levels]
    if np.prod(np.asarray(dims, dtype=float)) < 2.0**62:
        # one integer per path, in the paths' lexicographic order (and
        # already sorted when the rows are grouped by task): cheaper than
        # np.unique over rows
        keys, codes = encode_tasks(np.ravel_multi_index(level_codes, dims))
        paths = np.column_stack(np.unravel_index(keys, dims)).astype(np.intp)
    else:
        paths, codes = np.unique(np.column_stack(level_codes), axis=0,
                                 return_inverse=True)
    parents = []
    above = np.zeros(len(paths), dtype=np.intp)
    for depth in range(1, paths.shape[1] + 1):
        _, node = np.unique(paths[:, :depth], axis=0, return_inverse=True)
        node = node.astype(np.intp).ravel()
        parent = np.empty(node.max() + 1, dtype=np.intp)
        parent[node] = above
        parents.append(parent)
        above = node
    return list(levels), paths, codes.astype(np.intp).ravel(), parents


def nested_label_array(levels, paths):
    """The labels of ``paths`` (codes into ``levels``) as an object array."""
    out = np.empty(paths.shape, dtype=object)
    for depth in range(paths.shape[1]):
        out[:, depth] = levels[depth][paths[:, depth]]
    return out


def lookup_nested(levels, known_paths, labels):
    """Where each sample's path is known, level by level.

    ``known_paths[l]`` are the sorted code paths of the nodes of depth
    ``l + 1`` (groups, then tasks). Returns ``(n_samples, n_levels)``
    indices into them, -1 where that prefix of the path is unseen.
    """
    codes = np.column_stack([lookup_tasks(level, column)
                             for level, column in zip(levels, labels.columns)])
    # a node is keyed by its parent's index among the known nodes above it
    # and its own label's code: keys below (known nodes) x (labels of a
    # level), where one integer per whole path overflows int64 once the
    # levels' label counts multiply past 2**63 (which encode_nested allows)
    widths = [len(level) for level in levels]
    keys = []

    def walk(paths, n_depths):
        found = np.full((len(paths), n_depths), -1, dtype=np.intp)
        parents = np.zeros(len(paths), dtype=np.intp)
        for depth in range(n_depths):
            rows = np.flatnonzero((parents >= 0) & (paths[:, depth] >= 0))
            if rows.size == 0:
                break
            query = parents[rows] * widths[depth] + paths[rows, depth]
            pos = np.clip(np.searchsorted(keys[depth], query), 0,
                          len(keys[depth]) - 1)
            hit = keys[depth][pos] == query
            found[rows[hit], depth] = pos[hit]
            parents = found[:, depth]
        return found

    for depth, table in enumerate(known_paths):
        # (sorted paths: their parents' indices, and so their keys, ascend)
        above = (np.zeros(len(table), dtype=np.intp) if depth == 0
                 else walk(table, depth)[:, depth - 1])
        keys.append(above * widths[depth] + table[:, depth])
    return walk(codes, len(levels))
