"""Python-side entry points of the kernels: task batches and kernel calls.

A :class:`TaskBatch` holds the rows of many tasks sorted by task once, so
that task ``t`` is the contiguous block ``offsets[t]:offsets[t + 1]``. Every
kernel call takes a batch plus a :class:`Problem` (what the family adapter
read off the base estimator) and never sees a scikit-learn object.
"""

import threading
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from ._implicit import implicit_tasks
from ._newton import solve_tasks
from ._predict import decision_rows
from ._unroll import unroll_tasks, unroll_tasks_parallel

# Blocks of tasks are the unit of parallel work and of summation; their size
# depends only on the number of tasks so that sums are thread-count invariant.
_MAX_BLOCK = 32
_MIN_BLOCKS = 64


# numba's "workqueue" threading layer (its fallback where OpenMP and TBB are
# missing) aborts the process when two threads launch parallel kernels at
# once; skmeta's own worker threads therefore take turns.
_PARALLEL_LAUNCH = threading.Lock()
_TRANSPOSED_MAX_BYTES = 1 << 28
_WORKSPACE_MAX_BYTES = 1 << 28  # all chunks together
_PAD = 8  # float64 entries: one cache line


def run_chunked(serial, parallel, n_chunks, *args):
    """``parallel(n_chunks, *args)`` on ``n_chunks`` of numba's threads.

    ``serial(0, 1, *args)``, all in one chunk (same results), for a single
    chunk or while another thread holds numba's thread pool.
    """
    if n_chunks < 2 or not _PARALLEL_LAUNCH.acquire(blocking=False):
        return serial(0, 1, *args)
    try:
        previous = numba.get_num_threads()
        if previous == n_chunks:
            return parallel(n_chunks, *args)
        numba.set_num_threads(n_chunks)
        try:
            return parallel(n_chunks, *args)
        finally:
            numba.set_num_threads(previous)
    finally:
        _PARALLEL_LAUNCH.release()


def block_size_for(n_tasks):
    """Number of consecutive tasks summed together by one kernel block."""
    return int(min(_MAX_BLOCK, max(1, n_tasks // _MIN_BLOCKS)))


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

    @property
    def n_params(self):
        return self.n_outputs * (self.n_features + int(self.fit_intercept))

    @property
    def has_l1(self):
        return self.lam1 > 0 and bool(np.any(self.l1w > 0))


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

    @property
    def n_tasks(self):
        return self.offsets.shape[0] - 1

    @property
    def arrays(self):
        """The batch as the kernels' leading arguments."""
        return (self.Xd, self.data, self.indices, self.indptr, self.is_sparse,
                self.y, self.sw, self.offsets)

    @property
    def n_rows(self):
        return self.y.shape[0]

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
        if self.is_sparse:
            lengths = self.indptr[rows + 1] - self.indptr[rows]
            indptr = np.zeros(len(rows) + 1, dtype=np.intp)
            np.cumsum(lengths, out=indptr[1:])
            entries = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + \
                np.arange(indptr[-1])
            return TaskBatch(self.Xd, self.data[entries], self.indices[entries],
                             indptr, True, self.y[rows], self.sw[rows], offsets)
        return TaskBatch(np.ascontiguousarray(self.Xd[rows]), self.data,
                         self.indices, self.indptr, False, self.y[rows],
                         self.sw[rows], offsets)

    def shard(self, first, last):
        """The batch restricted to tasks ``first:last`` (views where possible)."""
        lo, hi = int(self.offsets[first]), int(self.offsets[last])
        offsets = self.offsets[first:last + 1] - lo
        if self.is_sparse:
            a, b = int(self.indptr[lo]), int(self.indptr[hi])
            return TaskBatch(self.Xd, self.data[a:b], self.indices[a:b],
                             self.indptr[lo:hi + 1] - a, True, self.y[lo:hi],
                             self.sw[lo:hi], offsets)
        return TaskBatch(self.Xd[lo:hi], self.data, self.indices, self.indptr,
                         False, self.y[lo:hi], self.sw[lo:hi], offsets)


def design_arrays(X):
    """``(Xd, data, indices, indptr, is_sparse)`` for a dense array or CSR."""
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_canonical_format:
            # the Hessian kernel walks pairs of sorted, unique column indices
            X = X.copy()
            X.sum_duplicates()
        dtype = X.dtype
        return (np.empty((0, 0), dtype=dtype), X.data,
                X.indices.astype(np.intp, copy=False),
                X.indptr.astype(np.intp, copy=False), True)
    X = np.ascontiguousarray(X)
    empty_i = np.empty(0, dtype=np.intp)
    return X, np.empty(0, dtype=X.dtype), empty_i, empty_i, False


def make_batch(X, y, sample_weight, task_codes, n_tasks):
    """Sort rows by task code and return ``(batch, order)``.

    ``order`` maps batch rows to input rows. Rows already grouped by task are
    not copied.
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
    Xd, data, indices, indptr, is_sparse = design_arrays(X)
    batch = TaskBatch(Xd, data, indices, indptr, is_sparse,
                      np.ascontiguousarray(y, dtype=np.float64),
                      np.ascontiguousarray(sample_weight, dtype=np.float64),
                      offsets)
    return batch, order


@dataclass
class InnerResult:
    """What one call of the exact inner solver returns.

    ``inv_blocks`` and ``inv_wblocks`` hold one partial sum of (weighted)
    inverse Hessians per block of tasks, to be summed by the caller in block
    order (``None`` when no inverse was asked for).
    """

    theta: np.ndarray
    objective: np.ndarray
    loss: np.ndarray
    n_iter: np.ndarray
    trace: np.ndarray
    inv_blocks: np.ndarray
    inv_wblocks: np.ndarray


def solve_inner(batch, problem, theta0, precision, theta, *, max_iter=100,
                tol=1e-8, want_inverse=False, want_posterior=True,
                exact_inverse=False, inv_weight=None,
                block=None, inverses=None, inverse_ok=None, shift=None):
    """Solve every task of ``batch`` from the warm start ``theta`` (not modified).

    ``precision`` is the transfer term's ``gamma * Lambda``: a vector (its
    diagonal) or a full matrix. With ``want_inverse``, the per-block sums of
    inverse Hessians are returned, and with ``want_posterior`` too the
    weighted sums and traces empirical Bayes needs. ``block`` is the
    summation block size (default :func:`block_size_for` of the batch's task
    count); shards of one larger batch pass the parent's so that sums come
    out bit-identical.
    ``inverses`` / ``inverse_ok`` optionally keep the inverse of each task's
    Hessian between calls (updated in place), and ``shift`` is the change of
    ``precision @ theta0`` since the solve that produced ``theta``; see
    ``solve_tasks``.
    """
    if max_iter < 1:
        # the kernels compute each task's Hessian in their first iteration
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    n_tasks = batch.n_tasks
    d = problem.n_params
    theta = np.array(theta, dtype=np.float64, order="C", copy=True)
    prec_diag, prec_mat, prec_full = _precision_arrays(precision)
    if block is None:
        block = block_size_for(n_tasks)
    n_blocks = (n_tasks + block - 1) // block
    n_inv = n_blocks if want_inverse else 0
    inv_sum = np.zeros((n_inv, d, d))
    inv_wsum = np.zeros((n_inv, d, d))
    if inv_weight is None:
        inv_weight = np.ones(n_tasks)
    out_objective = np.empty(n_tasks)
    out_loss = np.empty(n_tasks)
    out_iter = np.empty(n_tasks, dtype=np.intp)
    out_trace = np.zeros(n_tasks)
    if inverses is None:
        inverses = np.empty((0, d, d))
        inverse_ok = np.empty(0, dtype=np.uint8)
    shift = (np.empty(0) if shift is None
             else np.ascontiguousarray(shift, dtype=np.float64))
    solve_tasks(
        *batch.arrays, np.arange(n_tasks, dtype=np.intp),
        *_problem_arrays(problem),
        np.ascontiguousarray(theta0, dtype=np.float64), prec_diag, prec_mat,
        prec_full, theta, int(max_iter), float(tol), bool(want_inverse),
        bool(want_inverse and want_posterior),
        bool(exact_inverse), np.ascontiguousarray(inv_weight, dtype=np.float64),
        block, inverses, inverse_ok, shift, out_objective, out_loss, out_iter,
        out_trace, inv_sum, inv_wsum)
    return InnerResult(theta, out_objective, out_loss, out_iter, out_trace,
                       inv_sum if want_inverse else None,
                       inv_wsum if want_inverse else None)


def decision_values(X, row_model, params, problem):
    """Linear predictor of each row under model ``row_model[i]`` of ``params``."""
    Xd, data, indices, indptr, is_sparse = design_arrays(X)
    return decision_rows(Xd, data, indices, indptr, is_sparse,
                         np.ascontiguousarray(row_model, dtype=np.intp),
                         np.ascontiguousarray(params, dtype=np.float64),
                         problem.n_outputs, problem.n_features,
                         problem.fit_intercept)


def _precision_arrays(precision):
    precision = np.asarray(precision, dtype=np.float64)
    if precision.ndim == 2:
        return np.empty(0), np.ascontiguousarray(precision), True
    return np.ascontiguousarray(precision), np.empty((0, 0)), False


def _problem_arrays(problem):
    return (problem.code, problem.n_outputs, problem.n_features,
            problem.fit_intercept, problem.mean_loss, problem.lam2, problem.lam1,
            np.ascontiguousarray(problem.l2w, dtype=np.float64),
            np.ascontiguousarray(problem.l1w, dtype=np.float64))


@dataclass
class UnrollResult:
    """Adapted parameters and query losses; meta-gradients, per block and summed.

    ``loss_sum`` is the sum of ``query_loss``, ``grad_theta0`` and
    ``grad_alpha`` the sums over blocks (block order) of the ``*_blocks``.
    """

    theta: np.ndarray
    query_loss: np.ndarray
    grad_theta0_blocks: np.ndarray
    grad_alpha_blocks: np.ndarray
    loss_sum: float
    grad_theta0: np.ndarray
    grad_alpha: np.ndarray


def step_offset(problem, precision):
    """Largest curvature of the penalty plus transfer term (for auto steps)."""
    precision = np.asarray(precision, dtype=np.float64)
    if precision.ndim == 2:
        top = float(np.linalg.eigvalsh(precision)[-1]) if precision.size else 0.0
    else:
        top = float(precision.max(initial=0.0))
    return problem.lam2 * float(problem.l2w.max(initial=0.0)) + top


def transposed_batch(batch, problem):
    """Every dense task transposed, one after the other in a flat array.

    Task ``t``'s ``(p + fit_intercept, n_t)`` block, ones as its last row,
    starts at ``(p + fit_intercept) * offsets[t]``. For the meta-iterations
    of a fit: a task's design is then one contiguous run of memory, read in
    place or gathered, instead of being transposed at every visit. A copy
    of the data, so not made for sparse batches nor beyond
    ``_TRANSPOSED_MAX_BYTES`` (an empty array then: tasks are transposed at
    every visit).
    """
    p, p1 = problem.n_features, problem.n_features + problem.fit_intercept
    if batch.is_sparse or 8 * p1 * batch.n_rows > _TRANSPOSED_MAX_BYTES:
        return np.empty(0)
    # entry (j, r) of the block of row i's task goes to
    # p1 * start + j * n_t + r = i + (p1 - 1) * start + j * n_t
    sizes = np.diff(batch.offsets)
    task_of_row = np.repeat(np.arange(batch.n_tasks), sizes)
    first = np.arange(batch.n_rows) + (p1 - 1) * batch.offsets[task_of_row]
    step = sizes[task_of_row]
    XTb = np.empty(p1 * batch.n_rows)
    for j in range(p):
        XTb[first + j * step] = batch.Xd[:, j]
    if problem.fit_intercept:
        XTb[first + p * step] = 1.0
    return XTb


def unroll_workspace(batch, problem, n_steps, n_chunks):
    """Buffers of ``_unroll.unroll_tasks``, one slice per chunk of tasks.

    Every row is padded by ``_PAD`` unused entries: chunks run on different
    cores, and two chunks' buffers sharing a cache line (the end of one
    slice, the start of the next) would make the cores fight over it at
    every step.
    """
    sizes = np.diff(batch.offsets)
    n = max(1, int(sizes.max(initial=0))) + _PAD
    nnz = _PAD
    if batch.is_sparse and batch.n_tasks:
        nnz += max(1, int(np.diff(batch.indptr[batch.offsets]).max()))
    p, k, d = problem.n_features, problem.n_outputs, problem.n_params
    p1 = p + problem.fit_intercept
    steps = max(int(n_steps), 1)
    dense = 0 if batch.is_sparse else 1
    sparse = 1 - dense
    c = n_chunks
    return (np.empty((c, n), dtype=np.intp),
            np.empty((c, 0, p), dtype=batch.Xd.dtype),  # unused: dense rows go to XT
            np.empty((c, sparse * nnz), dtype=batch.data.dtype),
            np.empty((c, sparse * nnz), dtype=batch.indices.dtype),
            np.empty((c, sparse * (n + 1)), dtype=batch.indptr.dtype),
            np.empty((c, n)), np.empty((c, n)),
            np.empty((c, dense * p1, n)),
            np.empty((c, k, n)), np.empty((c, k, n)),
            np.empty((c, k, n)), np.empty((c, steps, k, n)),
            np.empty((c, steps + 1, d + _PAD)), np.empty((c, steps, d + _PAD)),
            np.empty((c, steps, d + _PAD)), np.empty((c, 7, d + _PAD)),
            np.empty((c, 2, p1 + _PAD)))


class Unroller:
    """``unroll`` of one batch and problem, called again and again.

    Everything that does not change between the meta-iterations of a fit is
    converted once, and the outputs are written into buffers allocated once:
    the arrays of a returned result are only valid until the next call.
    ``n_sel`` is the number of tasks per call; with ``n_threads > 1`` their
    blocks are shared among that many of numba's threads (one meta-batch is
    a few dozen microseconds of work: only numba's own thread pool starts
    fast enough). The results do not depend on it. With ``transposed``, a
    dense batch is also kept transposed (see ``transposed_batch``).
    """

    def __init__(self, batch, problem, precision, *, auto_step, n_steps, mode,
                 n_sel, block=None, n_threads=1, transposed=True):
        block = block_size_for(n_sel) if block is None else int(block)
        d = problem.n_params
        n_blocks = max(1, -(-n_sel // block))
        self.n_sel = n_sel
        self.n_chunks = min(int(n_threads), n_blocks, numba.config.NUMBA_NUM_THREADS)
        # each chunk's workspace is sized for the batch's largest task: fewer
        # chunks rather than gigabytes of buffers (np.empty only reserves)
        per_chunk = sum(a.nbytes for a in
                        unroll_workspace(batch, problem, n_steps, 1))
        self.n_chunks = max(1, min(self.n_chunks,
                                   _WORKSPACE_MAX_BYTES // max(per_chunk, 1)))
        self._theta = np.empty((n_sel, d))
        self._query_loss = np.empty(n_sel)
        # rows padded: per-block sums are updated at every step (see
        # unroll_workspace)
        self._blocks = np.zeros((2, n_blocks, d + _PAD))
        self._sums = np.zeros((2, d))
        prec_diag, prec_mat, prec_full = _precision_arrays(precision)
        self._data = tuple(batch.arrays)
        self._problem = _problem_arrays(problem)
        self._precision = (prec_diag, prec_mat, prec_full)
        self._tail = (bool(auto_step), step_offset(problem, precision),
                      int(n_steps), int(mode), block,
                      transposed_batch(batch, problem) if transposed
                      else np.empty(0),
                      *unroll_workspace(batch, problem, n_steps, self.n_chunks),
                      self._theta, self._query_loss, self._blocks[0],
                      self._blocks[1])

    def __call__(self, task_sel, seeds, n_query, theta0, alpha):
        if len(task_sel) != self.n_sel:
            raise ValueError(f"expected {self.n_sel} tasks, got {len(task_sel)}")
        args = (self._data
                + (np.ascontiguousarray(task_sel, dtype=np.intp),
                   np.ascontiguousarray(seeds, dtype=np.int64),
                   np.ascontiguousarray(n_query, dtype=np.intp))
                + self._problem
                + (np.ascontiguousarray(theta0, dtype=np.float64),)
                + self._precision
                + (np.ascontiguousarray(alpha, dtype=np.float64),)
                + self._tail)
        loss_sum = run_chunked(unroll_tasks, unroll_tasks_parallel,
                               self.n_chunks, self._sums, *args)
        d = self._sums.shape[1]
        return UnrollResult(self._theta, self._query_loss, self._blocks[0, :, :d],
                            self._blocks[1, :, :d], loss_sum, self._sums[0],
                            self._sums[1])


def unroll(batch, problem, task_sel, seeds, n_query, theta0, precision, alpha,
           auto_step, n_steps, mode, block, n_threads=1):
    """Unrolled inner loops of tasks ``task_sel``; see ``_unroll.unroll_tasks``."""
    run = Unroller(batch, problem, precision, auto_step=auto_step,
                   n_steps=n_steps, mode=mode, n_sel=len(task_sel), block=block,
                   n_threads=n_threads, transposed=False)
    return run(task_sel, seeds, n_query, theta0, alpha)


@dataclass
class ImplicitResult:
    """Support solutions, query losses and per-block implicit meta-gradients."""

    theta: np.ndarray
    query_loss: np.ndarray
    grad_theta0_blocks: np.ndarray
    n_iter: np.ndarray


def implicit(batch, problem, task_sel, seeds, n_query, theta0, precision, theta,
             block, *, max_iter=200, tol=1e-10):
    """Exact support solves and implicit meta-gradients of tasks ``task_sel``."""
    n_sel = len(task_sel)
    d = problem.n_params
    n_blocks = max(1, -(-n_sel // block))
    theta = np.array(theta, dtype=np.float64, order="C", copy=True)
    query_loss = np.empty(n_sel)
    grad_theta0 = np.zeros((n_blocks, d))
    n_iter = np.empty(n_sel, dtype=np.intp)
    prec_diag, prec_mat, prec_full = _precision_arrays(precision)
    implicit_tasks(
        *batch.arrays,
        np.ascontiguousarray(task_sel, dtype=np.intp),
        np.ascontiguousarray(seeds, dtype=np.int64),
        np.ascontiguousarray(n_query, dtype=np.intp), *_problem_arrays(problem),
        np.ascontiguousarray(theta0, dtype=np.float64), prec_diag, prec_mat,
        prec_full, theta, int(max_iter), float(tol), int(block), query_loss,
        grad_theta0, n_iter)
    return ImplicitResult(theta, query_loss, grad_theta0, n_iter)
