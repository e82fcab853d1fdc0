"""Fitting on Dask collections, with the data kept on the workers.

Each partition of the collection holds whole tasks. A partition's rows are
validated, sorted by task and kept on the worker that holds it, beside an
:class:`~skmeta._methods._inner.InnerSolver` of its own (with the inverse
Hessians it keeps between iterations). Each outer iteration of
``method="proximal"`` sends the prior to every partition, solves the
partition's tasks there and adds up, on the workers, the sums of fixed size
that the prior's update needs (:class:`_PartSums`); only the prior and those
sums cross the network. The task parameters stay where their tasks are and
become the fitted ``task_params_``, a Dask array with one chunk per
non-empty partition.

The bilevel methods (``"imaml"``, ``"maml"``, ``"metasgd"``,
``"reptile"``) sample each meta-batch on the client, from all tasks and with
the random stream of the in-memory fit. Each partition holding some of its
tasks receives their indices and seeds and the meta-parameters, runs the
method's meta-batch kernel on them there and sends back a
:class:`~skmeta._methods._bilevel.MetaContribution` (sums of the size of the
meta-parameters); the client adds these up and takes the meta-optimizer's
step. A meta-iteration thus moves ``O(k d)`` numbers for ``k`` partitions
touched, in one round trip, whatever the tasks' numbers of rows (fetching
the meta-batch's rows instead would move all of them at every iteration).
Each partition keeps what the method keeps per task between iterations
(iMAML's warm starts). The final adaptation of every task runs on the
partitions.

The prior structure selection of ``prior="auto"`` and the warm-up prior of a
large fit run exactly as in memory, on the client, on the spread-out subsets
of tasks they use (at most ``SELECTION_TASKS`` and ``_WARM_UP_TASKS`` of
them), whose rows are fetched from the workers once. The whole fit then
equals the in-memory fit on the same rows, to round-off in the order of the
sums.

Dask is imported only here, and only when a Dask collection is passed.
"""

import copy
import functools
import operator
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._kernels._calls import losses_at_zero
from ._kernels._layout import TaskBatch, make_batch
from ._methods._inner import INNER_TOL, InnerSolver
from ._methods._prior import (
    noise_variance_floor_of,
    residual_squares,
    scaled_spread,
)
from ._methods._proximal import (
    TaskSums,
    _Iteration,
    eb_update_from_sums,
    newton_step_from_mean,
)
from ._validation import (
    encode_tasks,
    rows_of_weighed_tasks,
    split_task_column,
)


def is_dask_collection(obj):
    """Whether ``obj`` is a Dask collection (without importing Dask)."""
    module = type(obj).__module__.partition(".")[0]
    return module in ("dask", "dask_expr") and hasattr(obj, "__dask_graph__")


def computed(*values):
    """``values``, with any Dask collection among them computed (together).

    For scores: a Dask Series' length is unknown until computed, which
    scikit-learn's metrics ask for first.
    """
    if not any(is_dask_collection(value) for value in values):
        return values
    import dask

    return dask.compute(*values)


def _import_dask():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:  # pragma: no cover - dask is a declared extra
        raise ImportError(
            "Fitting on Dask collections needs dask[distributed]: "
            "pip install 'skmeta[dask]'.") from exc
    _register_sizes()


@functools.cache
def _register_sizes():
    """Tell Dask the real size of the objects kept on the workers: the
    scheduler weighs moving a partition's state against running where it
    is, and counts the bytes it moves, by these sizes."""
    from dask.sizeof import sizeof

    @sizeof.register(_Part)
    def _part_size(part):
        b = part.batch
        arrays = [b.Xd, b.data, b.indices, b.indptr, b.y, b.sw, b.offsets,
                  part.theta, part.scale, part.solver.inverses]
        return sum(a.nbytes for a in arrays if a is not None)

    @sizeof.register(_Rows)
    def _rows_size(rows):
        return sum(np.asarray(a).nbytes for a in (
            rows.X, rows.y, rows.sample_weight, rows.labels, rows.codes,
            rows.dropped_y) if a is not None)

    @sizeof.register(_PartSums)
    def _sums_size(sums):
        arrays = [sums.theta_sum, sums.scaled_theta_sum, sums.spread,
                  sums.inv_sum, sums.inv_wsum]
        return 64 + sum(np.asarray(a).nbytes for a in arrays if a is not None)


def _client():
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "Fitting on Dask collections needs a dask.distributed Client: "
            "start one (e.g. Client(LocalCluster())) before calling fit."
        ) from None


# ------------------------------------------------------------- repartition
def repartition_by_task(frame, task_column, *, npartitions=None):
    """Repartition a Dask DataFrame so that each task lies whole in one partition.

    The rows are sorted by task (a shuffle on the cluster): each partition
    then holds whole tasks, in increasing order of task label from one
    partition to the next, which is the layout that
    :meth:`MetaClassifier.fit` and :meth:`MetaRegressor.fit` need to fit on
    a Dask DataFrame with the data staying on the workers. Take ``X`` and
    ``y`` from the result (``frame.drop(columns=target)`` and
    ``frame[target]``), so that their partitions match. A shuffle does not
    keep the order of a task's rows: where a fit depends on it (the held-out
    rows of ``prior="auto"``, the support/query splits of the gradient-based
    methods), it is the in-memory fit of the rows in their new order, not
    of the original frame's (task parameters 0.003 to 0.03 apart on a
    small generated example, 1.6 under Meta-SGD).

    Read more in the :ref:`User Guide <scaling-out>`.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
        Rows of all tasks, with the task column (and, usually, the target).
    task_column : str
        Name of the column holding each row's task label.
    npartitions : int, default=None
        Number of partitions of the result; by default, that of ``frame``.
        Fewer partitions than workers leave workers idle; a task is never
        split, so there may be fewer (non-empty) partitions than asked for.

    Returns
    -------
    frame : dask.dataframe.DataFrame
        The same rows, sorted by task and partitioned by task.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from skmeta import repartition_by_task
    >>> df = pd.DataFrame({"store": [3, 1, 2, 1, 3, 2], "x": [0., 1, 2, 3, 4, 5],
    ...                    "sales": [1., 2, 3, 4, 5, 6]})
    >>> ddf = repartition_by_task(dd.from_pandas(df, npartitions=2), "store")
    >>> ddf["store"].compute().tolist()
    [1, 1, 2, 2, 3, 3]
    >>> parts = [set(ddf.get_partition(i)["store"].compute())
    ...          for i in range(ddf.npartitions)]
    >>> all(not a & b for i, a in enumerate(parts) for b in parts[i + 1:])
    True
    """
    _import_dask()
    if not (is_dask_collection(frame) and hasattr(frame, "columns")):
        raise TypeError(
            "repartition_by_task takes a Dask DataFrame; got "
            f"{type(frame).__name__}. Build one from Dask arrays with "
            "dask.dataframe.from_dask_array.")
    if task_column not in frame.columns:
        raise ValueError(
            f"task_column={task_column!r} is not a column of the DataFrame "
            f"(columns: {list(frame.columns)}).")
    npartitions = frame.npartitions if npartitions is None else npartitions
    if not isinstance(npartitions, (int, np.integer)) or npartitions < 1:
        raise ValueError(f"npartitions must be a positive integer, got "
                         f"{npartitions!r}.")
    # a sort by value splits between distinct values only: a task stays
    # whole. With fewer distinct tasks than partitions asked for, the sort
    # makes fewer partitions than the unoptimized frame reports; optimizing
    # makes the frame's partition count the real one.
    return frame.sort_values(task_column, npartitions=int(npartitions)).optimize()


# ---------------------------------------------------------- partition input
_SPARSE_CHUNKS = (
    "Fitting on Dask collections takes dense chunks; X holds sparse "
    "matrices. Compute the collections to fit sparse data in memory.")


def _row_partitions(collection):
    """The delayed row partitions of a Dask collection: a 2-D array's blocks
    (X's columns, nested tasks' levels) joined along its columns."""
    import dask.array as da

    if isinstance(collection, da.Array) and collection.ndim == 2:
        return list(collection.rechunk({1: -1}).to_delayed()[:, 0])
    return list(np.ravel(collection.to_delayed()))


def _partitions(estimator, X, y, tasks, sample_weight):
    """The collections as lists of per-partition Dask objects (delayed)."""
    if not is_dask_collection(X):
        raise TypeError(
            "With Dask collections, X must be one (a Dask DataFrame or a 2-D "
            f"Dask array), partitioned by task; got {type(X).__name__}.")
    if hasattr(X, "columns"):
        X_parts = list(X.to_delayed())
    else:
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D Dask array, got {X.ndim} "
                             "dimension(s).")
        if sp.issparse(getattr(X, "_meta", None)):
            # refused here, before any partition is read on a worker
            raise TypeError(_SPARSE_CHUNKS)
        X_parts = _row_partitions(X)
    n = len(X_parts)

    def parts_of(name, value, required):
        if value is None:
            if required:
                raise ValueError(f"{name} is required.")
            return [None] * n
        if not is_dask_collection(value):
            raise TypeError(
                f"X is a Dask collection, so {name} must be one too, with the "
                f"same partitions (got {type(value).__name__}).")
        parts = _row_partitions(value)
        if len(parts) != n:
            raise ValueError(
                f"{name} has {len(parts)} partitions but X has {n}: take X "
                f"and {name} from one collection partitioned by task (see "
                "skmeta.repartition_by_task).")
        _check_same_chunks(name, value, X)
        return parts

    if estimator.task_column is None and tasks is None:
        raise ValueError(
            "Fitting on Dask collections needs task identities: set "
            "task_column or pass tasks= (a Dask collection).")
    return (X, X_parts, parts_of("y", y, True), parts_of("tasks", tasks, False),
            parts_of("sample_weight", sample_weight, False))


@dataclass
class _Rows:
    """One partition's validated rows, on its worker."""

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    labels: np.ndarray
    codes: np.ndarray
    # the targets of the rows of tasks without weight, left out: classes_
    # counts them, as in memory
    dropped_y: np.ndarray = None


def _read_partition(estimator, X, y, tasks, sample_weight):
    """Validate one partition's rows as ``fit`` validates in-memory input."""
    _register_sizes()  # in this worker's process
    if X.shape[0] == 0:
        return None
    features, y, labels = estimator._check_input(X, y, tasks, reset=False)
    if sp.issparse(features):
        # chunks whose type Dask's metadata did not tell the client
        raise TypeError(_SPARSE_CHUNKS)
    weights = None if sample_weight is None else np.asarray(sample_weight)
    if (weights is not None and weights.shape == (features.shape[0],)
            and not np.any(weights)):
        # one partition's weights may all be 0 (its tasks are then left
        # out, below); that every partition's are, the client tells
        sample_weight = np.zeros(features.shape[0])
    else:
        sample_weight = _check_sample_weight(
            weights, features, dtype=np.float64, ensure_non_negative=True)
    y = np.asarray(y)
    uniques, codes = encode_tasks(labels)
    # a task whose rows all have weight 0 is absent, as in memory (a task
    # lies in one partition: see _check_partitioned)
    keep = rows_of_weighed_tasks(codes, sample_weight)
    if keep.all():
        return _Rows(features, y, sample_weight, uniques, codes)
    # (a partition left without tasks still tells its rows' classes)
    uniques, codes = encode_tasks(labels[keep])
    return _Rows(features[keep], y[keep], sample_weight[keep], uniques, codes,
                 dropped_y=y[~keep])


def _describe(rows, classifier):
    """What the client needs to know of a partition: its tasks (and classes)."""
    if rows is None:
        return None
    classes = None
    if classifier:
        classes = np.unique(rows.y if rows.dropped_y is None
                            else np.concatenate([rows.y, rows.dropped_y]))
    return rows.labels, classes, rows.X.shape[1]


class _Part:
    """One partition's tasks on its worker: the batch, its solver and the
    current task parameters (updated by each solve)."""

    def __init__(self, batch, problem):
        self.batch = batch
        self.solver = InnerSolver(batch, problem, n_jobs=1)
        self.theta = None
        self.generation = -1
        self.scale = None
        self.products = None
        self.sums = None
        # a bilevel method's sums over the partition's tasks of a meta-batch
        self.contribute = None

    @property
    def n_tasks(self):
        return self.batch.n_tasks


def _make_part(rows, estimator, family, problem):
    _register_sizes()  # in this worker's process
    y_encoded = estimator._encode_y(rows.y)
    family.check_targets(y_encoded)
    n_tasks = len(rows.labels)
    weights = family.row_weights(y_encoded, rows.sample_weight, rows.codes,
                                 n_tasks, getattr(estimator, "classes_", None))
    batch, _ = make_batch(rows.X, y_encoded, weights, rows.codes, n_tasks)
    return _Part(batch, problem)


def _row_sums(part):
    """Sums over a partition's rows (weights, targets), and the targets'
    smallest and largest values."""
    b = part.batch
    if not b.n_rows:
        return np.array([0.0, 0.0, 0.0, 0, np.inf, -np.inf])
    return np.array([b.sw.sum(), b.y.sum(), np.square(b.y).sum(), b.n_rows,
                     b.y.min(), b.y.max()])


def _zero_loss(part, problem):
    """The partition's datafit losses at all-zero parameters, summed."""
    return losses_at_zero(part.batch, problem)


def _set_scale(part, mean_loss):
    """Each task's scale ``s_t`` (see ``_Iteration``); returns their sum.
    (A partition holds no task without weight: ``_read_partition``.)"""
    b = part.batch
    scale = b.task_weights() if mean_loss else np.ones(b.n_tasks)
    part.scale = np.maximum(scale, np.finfo(float).tiny)
    return part.scale.sum()


def _limit_full_params(part, problem, max_full_params):
    part.solver = InnerSolver(part.batch, problem, n_jobs=1,
                              max_full_params=max_full_params)
    return part


def _set_theta(part, theta0, generation):
    part.theta = np.tile(theta0, (part.n_tasks, 1))
    part.generation = generation
    return part


@dataclass
class _PartSums:
    """The sums of fixed size one solve of some tasks gives the prior update.

    ``spread`` is ``sum_t w_t dev_t dev_t^T`` about ``reference``, the
    prior mean the tasks were solved under, and ``scaled_theta_sum`` ``sum_t
    w_t theta_t``, ``w_t`` the task's scale over the mean one (see
    ``_proximal.TaskSums``); ``change`` and
    ``size`` are the largest move of a parameter and the largest previous
    parameter (the convergence test), maxima not sums.
    """

    n_tasks: int
    theta_sum: np.ndarray
    scaled_theta_sum: np.ndarray
    spread: np.ndarray
    objective: float
    rss: float
    trace: float
    inv_sum: object
    inv_wsum: object
    change: float
    size: float

    def __add__(self, other):
        def add(a, b):
            return None if a is None else a + b
        return _PartSums(
            self.n_tasks + other.n_tasks, self.theta_sum + other.theta_sum,
            self.scaled_theta_sum + other.scaled_theta_sum,
            self.spread + other.spread, self.objective + other.objective,
            self.rss + other.rss, self.trace + other.trace,
            add(self.inv_sum, other.inv_sum), add(self.inv_wsum, other.inv_wsum),
            max(self.change, other.change), max(self.size, other.size))


def _solve_part(part, generation, reference, center, precision, kwargs,
                wide, mean_scale):
    """Solve a partition's tasks from their current parameters (on its
    worker); ``mean_scale`` is that of all the fit's tasks."""
    _register_sizes()
    if part.generation != generation - 1:
        raise RuntimeError("a partition's task parameters are out of step with "
                           "the fit (a worker lost its state)")
    previous = part.theta
    solutions = part.solver.solve(
        center, precision, previous,
        inv_weight=np.full(part.n_tasks, 1.0 / mean_scale), **kwargs)
    theta = solutions.theta
    weight = part.scale / mean_scale
    spread = scaled_spread(theta - reference, weight, wide)
    # twice the tasks' losses summed over their rows: the residuals of
    # squared losses, and (halved) the loss that tells whether a learned
    # prior ran away (raise_if_degenerate)
    rss = float(residual_squares(part.scale, solutions.loss).sum())
    part.sums = _PartSums(
        part.n_tasks, theta.sum(axis=0), (weight[:, None] * theta).sum(axis=0),
        spread,
        float(solutions.objective.sum()), rss, float(solutions.trace.sum()),
        solutions.inv_sum, solutions.inv_wsum,
        float(np.max(np.abs(theta - previous), initial=0.0)),
        float(np.max(np.abs(previous), initial=0.0)))
    part.products = solutions.inverse_sum_times
    part.theta = theta
    part.generation = generation
    return part


def _task_sizes(part):
    return np.diff(part.batch.offsets)


def _attach_meta_gradient(part, method, problem, precision, auto, start, n_sel):
    # no transposed copy of the partition's rows: a partition sees meta-batch
    # pieces of several sizes, and each size gets its own kernel
    part.contribute = method.meta_gradient(
        part.batch, problem, precision, auto, start, n_sel, n_threads=1,
        transposed=False)
    return part


def _meta_batch_part(part, task_sel, seeds, n_query, theta0, alpha):
    # what the method keeps per task (iMAML's warm starts) is updated in
    # place, on the worker the partition's meta-batch pieces are sent to
    return part.contribute(task_sel, seeds, n_query, theta0, alpha)


def _adapt_part(part, method, problem, fitted):
    part.theta = method.adapt(part.batch, problem, fitted)
    part.contribute = None
    return part


def _theta_finite(part):
    return bool(np.all(np.isfinite(part.theta)))


def _sums_of(part):
    _register_sizes()
    return part.sums


def _add_all(*sums):
    return functools.reduce(lambda a, b: a + b, sums)


def _lacks_products(part):
    return int(part.products is None)


def _products_of(part, x):
    # sum_t A_t^{-1} x over the partition's tasks (summed over partitions)
    return part.products(x)


def _theta_of(part):
    return part.theta


def _subset_of(part, index):
    return part.batch.subset(index)


def _concatenate(batches):
    """Batches of consecutive tasks as one (dense rows)."""
    sizes = np.concatenate([np.diff(b.offsets) for b in batches])
    offsets = np.zeros(sizes.shape[0] + 1, dtype=np.intp)
    np.cumsum(sizes, out=offsets[1:])
    first = batches[0]
    return TaskBatch(np.concatenate([b.Xd for b in batches]), first.data,
                     first.indices, first.indptr, False,
                     np.concatenate([b.y for b in batches]),
                     np.concatenate([b.sw for b in batches]), offsets,
                     first.float_type)


@dataclass
class _Solutions:
    """The result of one distributed solve, as the outer loops read it."""

    theta: int  # the generation of the task parameters held on the workers
    sums: _PartSums
    inverse_sum_times: object = None


class DaskTasks:
    """Tasks held in partitions on a Dask cluster, as ``Proximal.fit`` takes
    a batch: it brings its own solver and hands out subsets in memory."""

    def __init__(self, client, parts, task_counts, problem, n_jobs):
        self.client = client
        self.parts = parts  # futures of _Part, one per non-empty partition
        self.task_counts = np.asarray(task_counts, dtype=np.intp)
        self.starts = np.concatenate([[0], np.cumsum(self.task_counts)])
        self.n_tasks = int(self.starts[-1])
        self.problem = problem
        self.n_jobs = n_jobs
        self.max_full_params = None  # that of the partitions' solvers
        self.generation = -1
        self.adapted = False
        self._offsets = None
        mean_loss = bool(problem.mean_loss)
        sums = np.array(self.client.gather(self.client.map(
            _row_sums, self.parts, pure=False)))
        sw, ysum, ysq, n_rows = np.sum(sums[:, :4], axis=0)
        constant = sums[:, 4].min() == sums[:, 5].max()
        self.mean_scale = float(np.sum(self.client.gather(self.client.map(
            _set_scale, self.parts, mean_loss=mean_loss,
            pure=False)))) / self.n_tasks
        self.total_weight = max(float(sw), np.finfo(float).tiny)
        self.min_dispersion = noise_variance_floor_of(
            max(ysq / n_rows - (ysum / n_rows) ** 2, 0.0), ysq / n_rows,
            constant) if n_rows else 1e-10

    def _map(self, func, **kwargs):
        self.parts = self.client.map(func, self.parts, pure=False, **kwargs)

    def zero_loss(self, problem):
        """The tasks' datafit losses at all-zero parameters, summed."""
        return self.reduce(functools.partial(_zero_loss, problem=problem))

    def reduce(self, func):
        """``func`` of each partition, added up on the workers."""
        pieces = self.client.map(func, self.parts, pure=False)
        return self.client.submit(_add_all, *pieces, pure=False).result()

    def subset(self, task_index):
        """The tasks ``task_index`` (sorted), fetched into memory."""
        task_index = np.asarray(task_index, dtype=np.intp)
        which = np.searchsorted(self.starts, task_index, side="right") - 1
        futures = []
        for p in np.unique(which):
            local = task_index[which == p] - self.starts[p]
            futures.append(self.client.submit(_subset_of, self.parts[p], local,
                                              pure=False))
        return _concatenate(self.client.gather(futures))

    @property
    def offsets(self):
        """Where each task's rows start, the partitions' tasks one after the
        other (their numbers of rows, fetched once)."""
        if self._offsets is None:
            sizes = np.concatenate(self.client.gather(self.client.map(
                _task_sizes, self.parts, pure=False)))
            self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        return self._offsets

    def meta_gradient(self, method, problem, precision, auto, start, n_sel):
        """As ``method.meta_gradient`` on all the tasks, each partition
        summing over its own tasks of a meta-batch on its worker."""
        from distributed import wait

        self._map(_attach_meta_gradient, method=_one_thread(method),
                  problem=problem, precision=precision, auto=auto,
                  start=np.asarray(start, dtype=np.float64), n_sel=n_sel)
        wait(self.parts)
        # one task per partition and meta-iteration (a second, to pass the
        # partition on, would double the latency of the round trip), sent to
        # the worker holding it, where its per-task state is updated. Only
        # if that worker is gone does a piece run elsewhere, on a copy:
        # iMAML's warm starts there may then be older, which changes where
        # its solves start, not where they converge
        holders = self.client.who_has(self.parts)
        workers = [sorted(holders[part.key])[:1] for part in self.parts]

        def contribute(task_sel, seeds, n_query, theta0, alpha):
            which = np.searchsorted(self.starts, task_sel, side="right") - 1
            pieces = []
            for p in np.unique(which):
                mine = which == p
                pieces.append(self.client.submit(
                    _meta_batch_part, self.parts[p],
                    task_sel[mine] - self.starts[p], seeds[mine], n_query[mine],
                    theta0, alpha, workers=workers[p],
                    allow_other_workers=True, pure=False))
            # added in partition order: the sum is the same from run to run
            return functools.reduce(operator.add, self.client.gather(pieces))

        return contribute

    def adapt_all(self, method, problem, fitted):
        """``method.adapt`` of every task, on the partitions: a Dask array."""
        self._map(_adapt_part, method=_one_thread(method), problem=problem,
                  fitted=fitted)
        self.adapted = True
        return self.theta_array()

    def theta_finite(self):
        """Whether every task parameter held on the partitions is finite."""
        return all(self.client.gather(self.client.map(
            _theta_finite, self.parts, pure=False)))

    def split_rows(self, every):
        return self.subset(np.arange(self.n_tasks)).split_rows(every)

    def inner_solver(self, problem, max_full_params=None):
        """The solver of ``Proximal.fit``; ``max_full_params`` as in
        ``InnerSolver``, applied to the partitions' own solvers."""
        if max_full_params != self.max_full_params:
            self._map(_limit_full_params, problem=problem,
                      max_full_params=max_full_params)
            self.max_full_params = max_full_params
        return _DaskSolver(self, problem, max_full_params)

    def set_theta(self, theta0):
        self.generation += 1
        self._map(_set_theta, theta0=np.asarray(theta0, dtype=np.float64),
                  generation=self.generation)
        return self.generation

    def solve(self, theta, reference, center, precision, kwargs, wide):
        if theta != self.generation:
            raise RuntimeError("the outer loop asked for a solve from task "
                               "parameters the workers no longer hold")
        self.generation += 1
        self._map(_solve_part, generation=self.generation, reference=reference,
                  center=center, precision=precision, kwargs=kwargs,
                  wide=wide, mean_scale=self.mean_scale)
        sums = self.reduce(_sums_of)
        products = None
        # products with the inverse sums where every partition kept its
        # tasks' row-space factors (each decides alone: the row space may
        # not pay for its tasks, or their factors pass the budget); else
        # the prior mean's Newton step takes its system's diagonal
        if (wide and kwargs.get("inverse") is not None
                and self.reduce(_lacks_products) == 0):
            products = self._inverse_sum_times
        return _Solutions(self.generation, sums, products)

    def _inverse_sum_times(self, x):
        pieces = self.client.map(_products_of, self.parts, x=x, pure=False)
        return self.client.submit(_add_all, *pieces, pure=False).result()

    def theta_array(self):
        """The task parameters, a Dask array with one chunk per partition."""
        import dask
        import dask.array as da

        d = self.problem.n_params
        blocks = [da.from_delayed(dask.delayed(self.client.submit(
            _theta_of, part, pure=False)), shape=(int(n), d), dtype=np.float64)
            for part, n in zip(self.parts, self.task_counts)]
        return da.concatenate(blocks)

    def release(self):
        self.parts = []


class _DaskSolver:
    """What ``fit_proximal`` takes as its solver, for tasks on the cluster."""

    def __init__(self, tasks, problem, max_full_params=None):
        from ._kernels._calls import diagonal_inverses

        self.batch = tasks
        self.problem = problem
        self.n_jobs = tasks.n_jobs
        self.max_full_params = max_full_params
        d = problem.n_params
        self.diagonal = (diagonal_inverses(d) if max_full_params is None
                         else d > max_full_params)
        self.iteration_class = _DaskIteration

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


class _DaskIteration(_Iteration):
    """``_Iteration`` over tasks on the cluster: the solve runs on the
    workers, and the prior's update reads only the sums they send."""

    def __init__(self, solver, *, learn_theta0, structure, learn_gamma,
                 count_penalty=True):
        self._set_prior_settings(solver, learn_theta0=learn_theta0,
                                 structure=structure, learn_gamma=learn_gamma,
                                 count_penalty=count_penalty)
        self.tasks = solver.batch
        self.total_weight = self.tasks.total_weight
        self.min_dispersion = self.tasks.min_dispersion

    def _losses_at_zero(self):
        return self.tasks.zero_loss(self.solver.problem)

    @staticmethod
    def task_statistics(solutions, prior):
        # the tasks stay on the workers: partial_fit on a Dask-fitted model
        # does not move the prior (see MetaFit.online)
        return None

    def initial_theta(self, prior):
        return self.tasks.set_theta(prior.theta0)

    def subset(self, task_index):
        return self.tasks.subset(task_index)

    @staticmethod
    def objective(solutions):
        return solutions.sums.objective

    @staticmethod
    def scaled_loss(solutions):
        return solutions.sums.rss / 2.0

    def theta_mean(self, solutions):
        return solutions.sums.theta_sum / self.n_tasks

    @staticmethod
    def theta_changed(solutions, previous, tol):
        if previous != solutions.theta - 1:
            raise RuntimeError("convergence tested against parameters other "
                               "than the solve's warm start")
        s = solutions.sums
        return s.change > tol * max(1.0, s.size)

    def solve(self, prior, theta, tol=INNER_TOL, solved_at=None):
        kwargs = dict(inverse=("posterior" if self.learn_prior
                               else "sum" if self.learn_theta0 else None),
                      tol=tol, solved_at=solved_at)
        return self.tasks.solve(
            theta, np.asarray(prior.theta0, dtype=np.float64), prior.center,
            np.asarray(prior.precision, dtype=np.float64), kwargs,
            self.solver.diagonal)

    @property
    def mean_scale(self):
        return self.tasks.mean_scale

    def propose(self, prior, solutions):
        """As ``_Iteration.propose``, from the sums: the spread about the
        new prior mean is the spread about the old one, shifted."""
        s = solutions.sums
        T = self.n_tasks
        theta0 = prior.theta0
        if self.learn_theta0:
            theta0 = theta0 + newton_step_from_mean(
                s.theta_sum / T, T, theta0, prior.combined_precision, s.inv_sum,
                solutions.inverse_sum_times, self.mean_prior(prior))
        if not self.learn_prior:
            return prior.with_theta0(theta0)
        shift = theta0 - prior.theta0
        # sum_t w_t (theta_t - old mean), the w_t summing to T
        offset = s.scaled_theta_sum - T * prior.theta0
        if s.spread.ndim == 2:
            cross = np.outer(offset, shift)
            spread = s.spread - cross - cross.T + T * np.outer(shift, shift)
        else:
            spread = s.spread - 2.0 * offset * shift + T * shift * shift
        return eb_update_from_sums(
            prior.with_theta0(theta0),
            TaskSums(T, spread, s.inv_wsum, s.rss, s.trace,
                     self.tasks.mean_scale),
            structure=self.structure, learn_gamma=self.learn_gamma,
            ridge=self.ridge, total_weight=self.total_weight,
            squared=self.squared, min_dispersion=self.min_dispersion,
            mean_held=self.learn_theta0)


# ------------------------------------------------------------------- fit
def _one_thread(method):
    """A copy of ``method`` for a worker: one thread per task there (the
    workers' own threads run the partitions side by side)."""
    return type(method)(replace(method.settings, n_jobs=1))


def check_supported(estimator, family, settings):
    """Refuse, naming what is supported, what the Dask fit does not do."""
    if settings.prior == "mixture" or settings.prior_df is not None:
        raise ValueError(
            "Fitting on Dask collections supports the Gaussian priors "
            "('auto', 'isotropic', 'diagonal', 'full', 'lowrank'), not "
            "prior='mixture' nor prior_df: compute the collections.")
    if family.is_network:
        raise ValueError(
            "Fitting on Dask collections supports linear base estimators; a "
            "network is fitted in memory: compute the collections.")
    if getattr(estimator, "unlabeled_weight", None) is not None:
        raise ValueError(
            "Fitting on Dask collections does not take unlabeled rows "
            "(unlabeled_weight): compute the collections.")


def fit_dask(estimator, X, y, tasks, sample_weight):
    """``estimator.fit`` on Dask collections; see the module docstring."""
    _import_dask()
    from ._families import family_for
    from ._methods import METHODS

    client = _client()
    base = estimator._base_estimator()
    family = family_for(base, classifier=estimator._is_classifier,
                        owner=type(estimator).__name__, check=True)
    settings = estimator._settings()
    check_supported(estimator, family, settings)
    if isinstance(estimator.task_column, (list, tuple)) or (
            tasks is not None and getattr(tasks, "ndim", 1) == 2):
        raise ValueError(
            "Fitting on Dask collections supports one level of tasks; nested "
            "tasks (a list task_column or 2-D tasks) are fitted in memory: "
            "compute the collections.")
    method = estimator._meta_method(warn=True, network=False)
    family.warn_ignored_settings()
    X, X_parts, y_parts, t_parts, w_parts = _partitions(
        estimator, X, y, tasks, sample_weight)
    if estimator.task_column is not None and tasks is not None:
        raise ValueError("Pass task identities either through task_column or "
                         "through tasks=, not both.")
    # the column names and count, from the collection's metadata
    meta = X._meta if hasattr(X, "columns") else np.empty((0, X.shape[1]))
    validate_data(estimator, meta, reset=True, skip_check_array=True)
    if estimator.task_column is not None:
        split_task_column(meta, estimator.task_column)  # names a bad column
    for name in ("classes_", "tasks_"):
        estimator.__dict__.pop(name, None)
    reader = _shipped(estimator)
    delayed_rows = [
        _delayed(_read_partition)(reader, xp, yp, tp, wp)
        for xp, yp, tp, wp in zip(X_parts, y_parts, t_parts, w_parts)]
    rows = client.compute(delayed_rows)
    described = client.gather(client.map(
        _describe, rows, classifier=estimator._is_classifier, pure=False))
    read = [d for d in described if d is not None]
    # the partitions with tasks: a partition whose tasks all have no weight
    # has none left, but its rows' classes count
    keep = [i for i, d in enumerate(described) if d is not None and len(d[0])]
    if not keep:
        raise ValueError("X has no rows: every partition is empty, or its "
                         "tasks' rows all have weight 0.")
    rows = [rows[i] for i in keep]
    described = [described[i] for i in keep]
    labels = [d[0] for d in described]
    _check_partitioned(labels)
    estimator.tasks_ = np.concatenate(labels)
    if estimator._is_classifier:
        estimator._set_targets(np.concatenate([d[1] for d in read]), None)
    n_features = described[0][2]
    problem = family.problem(n_features, estimator._n_classes())
    method.check_problem(problem)
    settings = estimator._settings(estimator._random_effects_mask(problem))
    method = METHODS[estimator.method](settings)
    method.check(settings)
    encoder = _shipped(estimator)
    parts = client.map(_make_part, rows, estimator=encoder, family=family,
                       problem=problem, pure=False)
    del rows
    prior_mean = estimator._given_prior_mean(family, n_features)
    batch = DaskTasks(client, parts, [len(lab) for lab in labels], problem,
                      estimator.n_jobs)
    fitted = method.fit(batch, problem, prior_mean, single_task=False)
    if batch.adapted:  # a bilevel method's adaptation
        tasks_finite = batch.theta_finite()
    else:
        sums = batch.reduce(_sums_of) if batch.generation >= 0 else None
        tasks_finite = sums is None or np.all(np.isfinite(sums.theta_sum))
    for name, finite in (("prior mean", np.all(np.isfinite(fitted.theta0))),
                         ("prior precision", fitted.precision is None
                          or np.all(np.isfinite(fitted.precision))),
                         ("task parameters", tasks_finite)):
        if not finite:
            raise FloatingPointError(
                f"{type(estimator).__name__} (method={estimator.method!r}) "
                f"gave non-finite {name}: the problem is ill-posed as set.")
    theta = batch.theta_array().persist()
    batch.release()
    fitted.theta = theta
    estimator._store_fit(base, fitted, family, problem, None, method)
    return estimator


def _shipped(estimator):
    """A copy of ``estimator`` to send to the workers: its parameters and
    what reading rows needs, none of a previous fit's (possibly large)
    attributes."""
    from sklearn.base import clone

    shipped = clone(estimator)
    for name in ("n_features_in_", "feature_names_in_", "classes_"):
        if hasattr(estimator, name):
            setattr(shipped, name, getattr(estimator, name))
    return shipped


def _delayed(func):
    import dask

    return dask.delayed(func, pure=False)


def _check_partitioned(labels):
    """Each task in one partition, tasks in increasing order across them."""
    kinds = {lab.dtype.kind in "US" for lab in labels}
    if len(kinds) > 1:
        raise ValueError("task labels mix strings and integers across "
                         "partitions; use labels of one kind.")
    for i in range(1, len(labels)):
        last, first = labels[i - 1][-1], labels[i][0]
        if not last < first:
            where = [j for j in range(len(labels))
                     if np.isin(first, labels[j]) and j != i]
            problem = (f"task {first.item()!r} lies in partitions {where[0]} "
                       f"and {i}" if where else
                       f"partition {i} starts with task {first.item()!r}, "
                       f"before the last task of the previous partition, "
                       f"{last.item()!r}")
            raise ValueError(
                f"The Dask collection is not partitioned by task: {problem}. "
                "Each task must lie whole in one partition, in increasing "
                "order of task label; repartition with "
                "skmeta.repartition_by_task.")


# ----------------------------------------------------------------- predict
def _check_same_chunks(name, value, X):
    """Raise where ``value`` and ``X`` are chunked differently along the
    samples (where both chunkings are known)."""
    chunks = getattr(X, "chunks", None)
    if chunks is not None and getattr(value, "chunks", None) is not None \
            and not np.any(np.isnan(chunks[0])) \
            and tuple(value.chunks[0]) != tuple(chunks[0]):
        raise ValueError(
            f"{name} is chunked {value.chunks[0]} along the samples but X "
            f"{chunks[0]}: the chunks must match.")


def predict_dask(estimator, name, X, tasks, kwargs):
    """``estimator.<name>(X, tasks=tasks)`` partition by partition: a Dask array.

    Each partition's worker receives the task parameters (the fitted
    ``task_params_``, computed once there when it is a Dask array) and the
    rest of the fitted model; the predictions stay on the workers.
    """
    _import_dask()
    import dask
    import dask.array as da

    check_is_fitted(estimator)
    if kwargs.get("return_std"):
        raise ValueError(
            "return_std=True is not available for Dask collections: compute "
            "the collection, or predict without return_std.")
    if not is_dask_collection(X):
        raise TypeError(
            f"tasks is a Dask collection, so X must be one too, with the same "
            f"partitions (got {type(X).__name__}).")
    if hasattr(X, "columns"):
        X_parts, lengths = list(X.to_delayed()), None
    else:
        X_parts, lengths = _row_partitions(X), X.chunks[0]
    if tasks is None:
        t_parts = [None] * len(X_parts)
    else:
        if not is_dask_collection(tasks):
            raise TypeError(
                "X is a Dask collection, so tasks must be one too, with the "
                f"same partitions (got {type(tasks).__name__}).")
        t_parts = _row_partitions(tasks)
        if len(t_parts) != len(X_parts):
            raise ValueError(f"tasks has {len(t_parts)} partitions but X has "
                             f"{len(X_parts)}.")
        # (known only for arrays; a worker would find the mismatch later)
        _check_same_chunks("tasks", tasks, X)
    params = estimator.task_params_
    local = copy.copy(estimator)
    local.task_params_ = None  # sent once, as its own graph node
    local = dask.delayed(local, pure=True)
    params = dask.delayed(params) if is_dask_collection(params) else \
        dask.delayed(np.asarray(params), pure=True)
    shape, dtype = _output_spec(estimator, name)
    blocks = []
    for i, (xp, tp) in enumerate(zip(X_parts, t_parts)):
        n = np.nan if lengths is None else lengths[i]
        out = dask.delayed(_predict_partition, pure=True)(
            local, params, name, xp, tp, shape)
        blocks.append(da.from_delayed(out, shape=(n, *shape), dtype=dtype))
    return da.concatenate(blocks)


def _predict_partition(estimator, params, name, X, tasks, shape):
    if X.shape[0] == 0:
        return np.empty((0, *shape))
    estimator = copy.copy(estimator)
    estimator.task_params_ = params
    return getattr(estimator, name)(X, tasks=tasks)


def _output_spec(estimator, name):
    """Shape past the samples axis and dtype of ``estimator.<name>``."""
    classes = getattr(estimator, "classes_", None)
    if name == "predict":
        return (), (classes.dtype if classes is not None else np.float64)
    if name == "decision_function" and len(classes) == 2:
        return (), np.float64
    return (len(classes),), np.float64


def dask_aware(method):
    """Send a prediction method's Dask collections to :func:`predict_dask`."""
    @functools.wraps(method)
    def wrapper(self, X, *args, tasks=None, **kwargs):
        if is_dask_collection(X) or is_dask_collection(tasks):
            return predict_dask(self, method.__name__, X, tasks, kwargs)
        return method(self, X, *args, tasks=tasks, **kwargs)
    return wrapper


__all__ = ["repartition_by_task"]
