"""How the kernels see a problem: task batches, the objective, the prior.

A :class:`TaskBatch` holds the rows of many tasks sorted by task once, so
that task ``t`` is the contiguous block ``offsets[t]:offsets[t + 1]``. A
:class:`Problem` is what a family adapter read off the base estimator. Both
hand the kernels a named tuple of plain arrays and scalars (``arrays``):
numba compiles named tuples into plain structures, caches kernels that take
them, and lets the kernels read ``problem.lam2`` instead of the 20th of 50
positional arguments.

Every array a kernel reads is float64 (or ``intp`` for indices), C-ordered
and writable, whatever the caller passed: each distinct array type (float32,
read-only, non-contiguous) would compile every kernel once more, seconds of
user time for a conversion that costs milliseconds. The one exception is the
network kernels of the unrolled methods: a batch remembers the float type
of the rows it was made from (``TaskBatch.float_type``), and rows given in
float32 are trained in float32 arithmetic, as PyTorch does by default (see
``_network_calls``).
"""

from collections import namedtuple
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

BatchArrays = namedtuple(
    "BatchArrays", "Xd data indices indptr is_sparse y sw offsets")
BatchArrays.__doc__ = """Rows of many tasks, sorted by task.

Dense rows are ``Xd`` (C-ordered); sparse rows are the CSR arrays ``data``,
``indices``, ``indptr`` (the unused representation is empty). ``y`` and
``sw`` are targets and sample weights; task ``t`` owns rows
``offsets[t]:offsets[t + 1]``.
"""

ProblemArrays = namedtuple(
    "ProblemArrays",
    "code n_outputs n_features fit_intercept mean_loss lam2 lam1 l2w l1w")
ProblemArrays.__doc__ = """One task's inner objective without its prior.

``code`` selects the datafit (:mod:`._codes`); parameters are flat, output
``k`` owning ``theta[k * p1:(k + 1) * p1]`` (coefficients, then the
intercept; ``p1 = n_features + fit_intercept``). The penalty is
``lam2 / 2 sum l2w theta**2 + lam1 sum l1w |theta|``.
"""

PriorArrays = namedtuple("PriorArrays", "theta0 diag mat full")
PriorArrays.__doc__ = """The transfer term ``(theta - theta0)^T Pi (theta - theta0)/2``.

``Pi`` is ``diag`` (a vector) or, when ``full``, the matrix ``mat``; the
unused one is empty.
"""

# Blocks of tasks are the unit of parallel work and of summation; their size
# depends only on the number of tasks so that sums are thread-count invariant.
_MAX_BLOCK = 32
_MIN_BLOCKS = 64


def block_size_for(n_tasks):
    """Number of consecutive tasks summed together by one kernel block."""
    return int(min(_MAX_BLOCK, max(1, n_tasks // _MIN_BLOCKS)))


def as_float_array_of(a, dtype):
    """``a`` as a C-ordered, writable array of float type ``dtype`` (copied
    only if needed)."""
    a = np.asarray(a)
    if a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=dtype, order="C")


def as_float_array(a):
    """``a`` as a C-ordered, writable float64 array (copied only if needed)."""
    return as_float_array_of(a, np.float64)


def as_index_array(a):
    """``a`` as a C-ordered, writable ``intp`` array (copied only if needed)."""
    a = np.asarray(a)
    if a.dtype == np.intp and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=np.intp, order="C")


@dataclass(frozen=True)
class Problem:
    """The inner objective, as the kernels see it (no scikit-learn objects).

    Attributes
    ----------
    code : int
        Datafit code from :mod:`skmeta._kernels._codes`.
    n_outputs : int
        Number of linear outputs (1, or the number of classes).
    n_features : int
    fit_intercept : bool
    mean_loss : bool
        Whether the loss is divided by the task's total sample weight.
    lam2, lam1 : float
        Strengths of the base estimator's l2 and l1 penalties.
    l2w, l1w : ndarray of shape (n_params,)
        Per-parameter weights of those penalties (0 for the intercept, unless
        the estimator penalizes it).
    singular_cutoff : float
        Where tasks are ordinary least squares (see ``_least_squares``):
        singular values below this fraction of the largest count as zero.
        ``LinearRegression``'s ``tol`` (scikit-learn 1.9 and later, as its own
        fit on dense rows); the rounding level otherwise.
    """

    code: int
    n_outputs: int
    n_features: int
    fit_intercept: bool
    mean_loss: bool
    lam2: float
    lam1: float
    l2w: np.ndarray
    l1w: np.ndarray
    singular_cutoff: float = float(np.finfo(np.float64).eps)

    # the kinds of problem the call layer dispatches on (see _network)
    is_network = False

    @property
    def n_params(self):
        return self.n_outputs * (self.n_features + int(self.fit_intercept))

    @property
    def has_l1(self):
        return self.lam1 > 0 and bool(np.any(self.l1w > 0))

    @property
    def arrays(self):
        """The problem as the kernels take it."""
        return ProblemArrays(
            int(self.code), int(self.n_outputs), int(self.n_features),
            bool(self.fit_intercept), bool(self.mean_loss), float(self.lam2),
            float(self.lam1), as_float_array(self.l2w), as_float_array(self.l1w))


def prior_arrays(theta0, precision, dtype=np.float64):
    """The transfer term toward ``theta0`` with precision ``precision``.

    ``precision`` is ``gamma * Lambda``: a vector (its diagonal) or a full
    matrix; the arrays are of float type ``dtype``.
    """
    precision = np.asarray(precision)
    theta0 = as_float_array_of(theta0, dtype)
    empty = np.empty(0, dtype=dtype)
    if precision.ndim == 2:
        return PriorArrays(theta0, empty, as_float_array_of(precision, dtype),
                           True)
    return PriorArrays(theta0, as_float_array_of(precision, dtype),
                       empty.reshape(0, 0), False)


@dataclass(frozen=True)
class TaskBatch:
    """Rows of several tasks, sorted by task, in the kernels' layout."""

    Xd: np.ndarray
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    is_sparse: bool
    y: np.ndarray
    sw: np.ndarray
    offsets: np.ndarray
    # the float type of the rows as they were given (``float32`` or
    # ``float64``); the arrays above are float64 whatever it is
    float_type: type = np.float64
    # what is computed once from these rows alone, by name (a batch made
    # from this one, even by ``dataclasses.replace``, starts empty)
    memo: dict = field(default_factory=dict, init=False, repr=False,
                       compare=False)

    @property
    def n_tasks(self):
        return self.offsets.shape[0] - 1

    @property
    def n_rows(self):
        return self.y.shape[0]

    @property
    def arrays(self):
        """The batch as the kernels take it."""
        return BatchArrays(self.Xd, self.data, self.indices, self.indptr,
                           bool(self.is_sparse), self.y, self.sw, self.offsets)

    def arrays_as(self, dtype):
        """``arrays`` with their float arrays in type ``dtype`` (converted
        copies where the type differs)."""
        arrays = self.arrays
        return arrays._replace(
            Xd=as_float_array_of(arrays.Xd, dtype),
            data=as_float_array_of(arrays.data, dtype),
            y=as_float_array_of(arrays.y, dtype),
            sw=as_float_array_of(arrays.sw, dtype))

    def task_weights(self):
        """Total sample weight of each task."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.sw)])
        return cumulative[self.offsets[1:]] - cumulative[self.offsets[:-1]]

    def subset(self, task_index):
        """A new batch holding only the tasks ``task_index`` (rows copied)."""
        task_index = np.asarray(task_index, dtype=np.intp)
        starts = self.offsets[task_index]
        counts = self.offsets[task_index + 1] - starts
        offsets = np.zeros(len(task_index) + 1, dtype=np.intp)
        np.cumsum(counts, out=offsets[1:])
        rows = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        return self._with_rows(rows, offsets)

    def split_rows(self, every):
        """``(kept, held_out)``: each task's weighted rows number ``every - 1,
        2 every - 1, ...`` held out, the others kept (rows copied). Rows of
        zero weight are not counted: they change nothing, here neither."""
        sizes = np.diff(self.offsets)
        weighted = self.sw > 0
        counted = np.cumsum(weighted) - weighted
        before = np.repeat(counted[self.offsets[:-1].clip(max=self.n_rows - 1)]
                           if self.n_rows else np.zeros(len(sizes), int), sizes)
        position = counted - before
        held = weighted & (position % every == every - 1)
        return self._rows_where(~held), self._rows_where(held)

    def _rows_where(self, mask):
        """A new batch of the rows where ``mask`` holds, tasks kept in order."""
        rows = np.flatnonzero(mask)
        task_of_row = np.repeat(np.arange(self.n_tasks), np.diff(self.offsets))
        counts = np.bincount(task_of_row[rows], minlength=self.n_tasks)
        offsets = np.zeros(self.n_tasks + 1, dtype=np.intp)
        np.cumsum(counts, out=offsets[1:])
        return self._with_rows(rows, offsets)

    def _with_rows(self, rows, offsets):
        """A new batch of the rows ``rows`` (copied), its tasks at
        ``offsets``."""
        if self.is_sparse:
            lengths = self.indptr[rows + 1] - self.indptr[rows]
            indptr = np.zeros(len(rows) + 1, dtype=np.intp)
            np.cumsum(lengths, out=indptr[1:])
            entries = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + \
                np.arange(indptr[-1])
            return replace(self, data=self.data[entries],
                           indices=self.indices[entries], indptr=indptr,
                           y=self.y[rows], sw=self.sw[rows], offsets=offsets)
        return replace(self, Xd=np.ascontiguousarray(self.Xd[rows]),
                       y=self.y[rows], sw=self.sw[rows], offsets=offsets)

    def pooled(self):
        """The same rows as a single task."""
        return replace(self, offsets=np.array([0, self.n_rows], dtype=np.intp))

    def __getstate__(self):
        # what the memo holds is recomputed where the batch is sent, rather
        # than sent with it (shards would copy the rows they view)
        return dict(self.__dict__, memo={})

    def shard(self, first, last):
        """The batch restricted to tasks ``first:last`` (views where possible).

        The same object each time for the same tasks: what is computed from
        its rows alone (``memo``) serves every solver of this batch.
        """
        key = ("shard", int(first), int(last))
        if key not in self.memo:
            self.memo[key] = self._restricted(first, last)
        return self.memo[key]

    def _restricted(self, first, last):
        lo, hi = int(self.offsets[first]), int(self.offsets[last])
        offsets = self.offsets[first:last + 1] - lo
        if self.is_sparse:
            a, b = int(self.indptr[lo]), int(self.indptr[hi])
            return replace(self, data=self.data[a:b], indices=self.indices[a:b],
                           indptr=self.indptr[lo:hi + 1] - a, y=self.y[lo:hi],
                           sw=self.sw[lo:hi], offsets=offsets)
        return replace(self, Xd=self.Xd[lo:hi], y=self.y[lo:hi],
                       sw=self.sw[lo:hi], offsets=offsets)


def design_arrays(X):
    """``(Xd, data, indices, indptr, is_sparse)`` for a dense array or CSR."""
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_canonical_format:
            # the Hessian kernel walks pairs of sorted, unique column indices
            X = X.copy()
            X.sum_duplicates()
        return (np.empty((0, 0)), as_float_array(X.data),
                as_index_array(X.indices), as_index_array(X.indptr), True)
    empty_i = np.empty(0, dtype=np.intp)
    return as_float_array(X), np.empty(0), empty_i, empty_i, False


def make_batch(X, y, sample_weight, task_codes, n_tasks):
    """Sort rows by task code and return ``(batch, order)``.

    ``order`` maps batch rows to input rows. Rows already grouped by task are
    not copied (unless they need converting to float64).
    """
    task_codes = np.asarray(task_codes, dtype=np.intp)
    if task_codes.size and np.all(task_codes[1:] >= task_codes[:-1]):
        order = None
    else:
        order = np.argsort(task_codes, kind="stable")
        X = X[order]
        y = y[order]
        sample_weight = sample_weight[order]
        task_codes = task_codes[order]
    counts = np.bincount(task_codes, minlength=n_tasks)
    offsets = np.zeros(n_tasks + 1, dtype=np.intp)
    np.cumsum(counts, out=offsets[1:])
    float_type = np.float32 if X.dtype == np.float32 else np.float64
    Xd, data, indices, indptr, is_sparse = design_arrays(X)
    batch = TaskBatch(Xd, data, indices, indptr, is_sparse, as_float_array(y),
                      as_float_array(sample_weight), offsets, float_type)
    return batch, order


def transposed_batch(batch, problem, max_bytes, dtype=np.float64):
    """Every dense task transposed, one after the other in a flat array.

    Task ``t``'s ``(p + fit_intercept, n_t)`` block, ones as its last row,
    starts at ``(p + fit_intercept) * offsets[t]``. For the meta-iterations
    of a fit: a task's design is then one contiguous run of memory, read in
    place or gathered, instead of being transposed at every visit. A copy
    of the data (of float type ``dtype``), so not made for sparse batches nor
    beyond ``max_bytes`` (an empty array then: tasks are transposed at every
    visit).
    """
    p, p1 = problem.n_features, problem.n_features + problem.fit_intercept
    itemsize = np.dtype(dtype).itemsize
    if batch.is_sparse or itemsize * p1 * batch.n_rows > max_bytes:
        return np.empty(0, dtype=dtype)
    # entry (j, r) of the block of row i's task goes to
    # p1 * start + j * n_t + r = i + (p1 - 1) * start + j * n_t
    sizes = np.diff(batch.offsets)
    task_of_row = np.repeat(np.arange(batch.n_tasks), sizes)
    first = np.arange(batch.n_rows) + (p1 - 1) * batch.offsets[task_of_row]
    step = sizes[task_of_row]
    XTb = np.empty(p1 * batch.n_rows, dtype=dtype)
    for j in range(p):
        XTb[first + j * step] = batch.Xd[:, j]
    if problem.fit_intercept:
        XTb[first + p * step] = 1.0
    return XTb
