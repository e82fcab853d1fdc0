"""Python entry points of the kernels: argument bundles in, result objects out.

Everything here converts what the methods hold (a :class:`~._layout.TaskBatch`,
a :class:`~._layout.Problem`, a prior mean and precision) into the kernels'
named tuples, calls one kernel, and wraps what it wrote.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import numba
import numpy as np

from ._codes import SQUARED
from ._implicit import ImplicitOutputs, implicit_tasks
from ._launch import _PARALLEL_LAUNCH as _PARALLEL_LAUNCH  # tests hold it
from ._launch import UnrollResult, meta_batch_of, run_chunked
from ._layout import (
    BatchArrays,
    as_float_array,
    as_index_array,
    block_size_for,
    design_arrays,
    prior_arrays,
    transposed_batch,
)
from ._least_squares import ordinary_least_squares
from ._newton import (
    KeptInverses,
    SolveOutputs,
    SolveSettings,
    curvature_products,
    solve_tasks,
    solve_tasks_rowspace,
)
from ._penalties import smooth_curvature_bound
from ._predict import decision_rows, task_losses
from ._unroll import (
    UnrollConfig,
    UnrollOutputs,
    unroll_tasks,
    unroll_tasks_parallel,
)
from ._workspaces import (
    _PAD,
    CURVATURE_MAX_BYTES,
    FULL_INVERSE_MAX_PARAMS,
    INVERSE_SUM_BLOCKS,
    INVERSE_SUMS_MAX_BYTES,
    TRANSPOSED_MAX_BYTES,
    curvature_bytes,
    curvature_shape,
    implicit_workspace,
    largest_task,
    multinomial_by_blocks,
    newton_workspace,
    rowspace_workspace,
    unroll_chunks,
    unroll_workspace,
)

# below this many parameters the dense Newton solver is used whatever the
# tasks' sizes: a dense step is then a few hundred flops, and keeping each
# task's inverse Hessian between solves saves more than the row space would.
# Above it the flop counts decide (``row_space_pays``): measured on 200 binary
# tasks of 5 rows with an isotropic learned prior, the row space fits in
# 0.18 s against 0.30 s at 21 parameters, 2.4 s against 18.6 s at 101.
ROWSPACE_MIN_PARAMS = 16
# How many times fewer flops than a dense step a row-space step must take.
# The dense count (``row_space_pays``) is that of a step with a new
# factorization; where the dense solver keeps each task's inverse Hessian
# between the solves of a fit (``kept``), it mostly takes chord steps with
# it instead. Measured with kept inverses, on 200 binary tasks at the
# default prior (the held-out selection's fits and the final fit), the
# dense solver is faster from a predicted saving of about 9 on: at 101
# parameters, 5.8 s (row space) against 8.1 s (dense) for 40 rows per task
# (saving 14), 11.9 s against 7.1 s for 50 rows (8.6), 16.6 s against 5.0 s
# for 80; at 21 parameters and 20 rows per task, 0.70 s against 0.66 s, and
# the row-space kernel is not compiled: a first fit of 19 CPU s, 12 s
# without it. Without kept inverses, every dense step factors. An empirical
# calibration, on binary logistic tasks of 21 and 101 parameters; the kept
# inverses are also refactored whenever the prior's precision changes.
ROWSPACE_MIN_SAVING = 12.0
ROWSPACE_MIN_SAVING_UNKEPT = 2.0

# --------------------------------------------------------------------------
# exact solves
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class InverseRequest:
    """Which sums of inverse Hessians an exact solve of all tasks returns.

    Always the sums of the active-set inverse Hessians; with ``posterior``
    also their sums weighted by ``inv_weight`` and the traces empirical
    Bayes needs; with ``exact``, taken at the solutions rather than at the
    last Hessian computed; with ``diagonal``, only their diagonals; with
    ``products``, also (where the row-space solver is used, within
    ``CURVATURE_MAX_BYTES``) the means to multiply vectors by their sum
    (``TaskSolutions.inverse_sum_times``); with ``covariances``, each
    task's posterior inverse Hessian too (``TaskSolutions.covariances``).
    """

    posterior: bool = False
    exact: bool = False
    diagonal: bool = False
    products: bool = False
    covariances: bool = False


def diagonal_inverses(n_params):
    """Whether inverse Hessians are only summed on their diagonal, for this size."""
    return n_params > FULL_INVERSE_MAX_PARAMS


def summation_block(n_tasks, n_params, diagonal=False):
    """Tasks summed together per block: :func:`block_size_for`, or more.

    A block holds ``d x d`` sums of inverse Hessians (``d`` of their
    diagonals): blocks are made larger rather than having their sums take
    more than ``INVERSE_SUMS_MAX_BYTES``, or there being more than
    ``INVERSE_SUM_BLOCKS`` of them. Depends on the shapes only, so that
    sums do not depend on how tasks are spread over threads.
    """
    per_block = 16 * n_params * (1 if diagonal else n_params)
    max_blocks = max(1, min(INVERSE_SUM_BLOCKS,
                            INVERSE_SUMS_MAX_BYTES // max(per_block, 1)))
    return max(block_size_for(n_tasks), -(-n_tasks // max_blocks))


def row_space_pays(batch, problem, precision, *, kept_inverses=False):
    """Whether Newton steps in the row space cost enough less than dense ones.

    Only for objectives without l1 part whose smooth penalties have a
    positive diagonal curvature (see ``_rowspace``). Compares the flop
    counts of a step for the batch's tasks: the row space must save
    ``ROWSPACE_MIN_SAVING`` times the flops where the dense solver keeps the
    tasks' inverse Hessians between calls (``kept_inverses``),
    ``ROWSPACE_MIN_SAVING_UNKEPT`` times where it does not.
    """
    precision = np.asarray(precision, dtype=np.float64)
    d = problem.n_params
    if d <= ROWSPACE_MIN_PARAMS or problem.has_l1 or precision.ndim == 2:
        return False
    if not np.all(problem.lam2 * problem.l2w + precision > 0):
        return False
    K = problem.n_outputs
    p1 = problem.n_features + problem.fit_intercept
    n = np.diff(batch.offsets).astype(np.float64)
    hessian_blocks = K * (K + 1) // 2
    dense = np.sum(hessian_blocks * n * p1**2 / 2 + d**3 / 3)
    # multiply-adds of a factorization and a solve; by the multinomial's
    # blocks: K LU factorizations of n x n, the n columns of each Y_k and the
    # products G_k Y_k, then a solve through them (see _rowspace)
    if multinomial_by_blocks(problem):
        factor, solve = K * 7 / 3 * n**3 + n**3 / 3, 3 * K * n**2 + n**2
    else:
        factor, solve = (K * n) ** 3 / 3, (K * n) ** 2
    # the row-space Gram matrices are made once per solve (about 5 steps)
    rows = np.sum(factor + solve + K * n**2 * p1 / 10)
    saving = (ROWSPACE_MIN_SAVING if kept_inverses
              else ROWSPACE_MIN_SAVING_UNKEPT)
    return bool(rows * saving < dense)


class InverseSumProducts:
    """Products of vectors with ``sum_t A_t^{-1}``, from the row-space factors.

    ``A_t^{-1} = M^{-1} - M^{-1} B_t^T N_t B_t M^{-1}`` (see ``_rowspace``);
    ``parts`` are ``(batch, problem, N, n_max)`` of consecutive shards of
    tasks (``n_max`` the rows of the largest task, which ``N`` is sized for),
    ``minv`` the inverse of ``M``'s diagonal. ``run``, where set, runs the
    parts' products as ``_methods._inner.Workers.run`` runs calls (on
    threads); they are summed in the parts' order either way.
    """

    def __init__(self, parts, minv, n_tasks):
        self.parts = parts
        self.minv = minv
        self.n_tasks = n_tasks
        self.run = None

    def __call__(self, x):
        """``sum_t A_t^{-1} x``."""
        v = (self.minv * x)[np.newaxis]
        calls = [(_part_products, (part, v), {}) for part in self.parts]
        if self.run is not None and len(calls) > 1:
            outs = self.run(calls)
        else:
            outs = [func(*args) for func, args, _ in calls]
        products = np.zeros_like(v)
        for out in outs:
            products += out
        return self.n_tasks * v[0] - self.minv * products[0]

    @classmethod
    def concatenate(cls, parts):
        if any(part is None for part in parts):
            return None
        return cls([p for part in parts for p in part.parts], parts[0].minv,
                   sum(part.n_tasks for part in parts))


def _part_products(part, v):
    """``sum_t B_t^T N_t B_t v`` over the tasks of one part."""
    batch, problem, N, n_max = part
    # the kernel reads N by the layout curvature_shape gives (unchecked)
    if N.shape[1:] != curvature_shape(problem, n_max):
        raise RuntimeError(
            f"kept curvatures of shape {N.shape[1:]}, not "
            f"{curvature_shape(problem, n_max)}: a layout changed on one side")
    K = problem.n_outputs
    p1 = problem.n_features + problem.fit_intercept
    work = (np.empty((0 if batch.is_sparse else p1, n_max)),
            np.empty((K, n_max)), np.empty((K, n_max)), np.empty(n_max))
    out = np.empty_like(v)
    curvature_products(batch.arrays, problem.arrays, N, v, work, out)
    return out


@dataclass
class TaskSolutions:
    """Exact solutions of the tasks of a batch, and what the outer loops need.

    ``inv_blocks`` holds, per block of tasks, the sum of the active-set
    inverse Hessians ``A_t^{-1}`` (or of their diagonals), and
    ``inv_wblocks`` the same sums weighted by the caller's ``inv_weight``
    (both ``None`` unless asked for); ``trace[t]`` is
    ``tr(H_data A_t^{-1})``.
    """

    theta: np.ndarray
    objective: np.ndarray
    loss: np.ndarray
    n_iter: np.ndarray
    trace: np.ndarray
    inv_blocks: np.ndarray = None
    inv_wblocks: np.ndarray = None
    #: an InverseSumProducts, where asked for and available
    inverse_sum_times: object = None
    #: log-determinants of the Hessians at the solutions (exact solves only)
    logdet: np.ndarray = None
    #: each task's posterior inverse Hessian (or its diagonal), if asked for
    covariances: np.ndarray = None

    @cached_property
    def inv_sum(self):
        """Sum over all tasks of the inverse Hessians (block sums in order).

        A ``(d, d)`` matrix, or a ``(d,)`` vector of diagonals.
        """
        return _total(self.inv_blocks)

    @cached_property
    def inv_wsum(self):
        """Weighted sum over all tasks of the inverse Hessians (as ``inv_sum``)."""
        return _total(self.inv_wblocks)

    @classmethod
    def concatenate(cls, parts):
        """The solutions of consecutive shards of tasks, as one."""
        blocks = parts[0].inv_blocks is not None
        return cls(
            *(np.concatenate([getattr(p, name) for p in parts])
              for name in ("theta", "objective", "loss", "n_iter", "trace")),
            inv_blocks=np.concatenate([p.inv_blocks for p in parts])
            if blocks else None,
            inv_wblocks=np.concatenate([p.inv_wblocks for p in parts])
            if blocks else None,
            inverse_sum_times=InverseSumProducts.concatenate(
                [p.inverse_sum_times for p in parts]),
            logdet=np.concatenate([p.logdet for p in parts]),
            covariances=np.concatenate([p.covariances for p in parts])
            if parts[0].covariances is not None else None)


def _total(blocks):
    if blocks is None:
        return None
    total = blocks.sum(axis=0)
    return total[0] if total.shape[0] == 1 and total.shape[1] > 1 else total


def solve_inner(batch, problem, theta0, precision, theta, *, max_iter=100,
                tol=1e-8, inverse=None, inv_weight=None, block=None, kept=None,
                rowspace=None):
    """Solve every task of ``batch`` from the warm start ``theta`` (not modified).

    ``theta0`` is the transfer term's centre: a vector shared by every
    task, or one row per task (each task pulled toward its own centre, in
    the same kernel call). ``precision`` is the transfer term's ``gamma *
    Lambda``: a vector (its diagonal) or a full matrix. ``inverse`` (an
    :class:`InverseRequest`) asks for sums of inverse Hessians, with weights
    ``inv_weight``.
    ``block`` is the summation block size (default :func:`summation_block`);
    shards of one larger batch pass the parent's so that sums come out
    bit-identical. ``kept`` (a ``_newton.KeptInverses``, updated in place)
    keeps the inverse of each task's Hessian between calls (dense solver
    only); see ``_newton.solve_tasks``. ``rowspace`` chooses the row-space
    solver (default: :func:`row_space_pays`). Returns a
    :class:`TaskSolutions`.
    """
    want_inverse = inverse is not None
    diagonal = want_inverse and inverse.diagonal
    if max_iter < 1:
        # the kernels compute each task's Hessian in their first iteration
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    n_tasks = batch.n_tasks
    d = problem.n_params
    theta = np.array(theta, dtype=np.float64, order="C", copy=True)
    if block is None:
        block = summation_block(n_tasks, d, diagonal)
    n_blocks = -(-n_tasks // block)
    n_inv = n_blocks if want_inverse else 0
    shape = (n_inv, 1, d) if diagonal else (n_inv, d, d)
    keep_covariances = want_inverse and inverse.posterior and inverse.covariances
    covariances = np.zeros(((n_tasks, 1, d) if diagonal else (n_tasks, d, d))
                           if keep_covariances else (0, 0, 0))
    out = SolveOutputs(np.empty(n_tasks), np.empty(n_tasks),
                       np.empty(n_tasks, dtype=np.intp), np.zeros(n_tasks),
                       np.full(n_tasks, np.nan), np.zeros(shape), np.zeros(shape),
                       covariances)
    settings = SolveSettings(int(max_iter), float(tol), want_inverse,
                             want_inverse and inverse.posterior,
                             want_inverse and inverse.exact, diagonal, int(block))
    inv_weight = np.ones(n_tasks) if inv_weight is None else as_float_array(
        inv_weight)
    theta0 = np.asarray(theta0, dtype=np.float64)
    if theta0.ndim == 2:
        if theta0.shape != (n_tasks, d):
            raise ValueError(
                f"per-task centres must have shape ({n_tasks}, {d}), got "
                f"{theta0.shape}.")
        # the shared centre the kernels also take is unused: any row will do
        centres = as_float_array(theta0)
        prior = prior_arrays(centres[0] if n_tasks else np.zeros(d), precision)
    else:
        centres = np.empty((0, d))
        prior = prior_arrays(theta0, precision)
    n_max = largest_task(batch)[0]
    if rowspace is None:
        rowspace = row_space_pays(
            batch, problem, precision,
            kept_inverses=kept is not None and kept.inverses.shape[0] > 0)
    products = None
    if rowspace:
        keep = (want_inverse and inverse.products
                and curvature_bytes(problem, n_tasks, n_max)
                <= CURVATURE_MAX_BYTES)
        curvatures = np.empty((n_tasks, *curvature_shape(problem, n_max))
                              if keep else (0, 0, 0))
        work = rowspace_workspace(batch, problem, n_max, diagonal)
        solve_tasks_rowspace(batch.arrays, problem.arrays, prior, centres, theta,
                             inv_weight, settings, (*work, curvatures), out)
        if keep:
            minv = 1.0 / (problem.lam2 * problem.l2w + prior.diag)
            products = InverseSumProducts(
                [(batch, problem, curvatures, n_max)], minv, n_tasks)
    else:
        if kept is None:
            kept = KeptInverses(np.empty((0, d, d)), np.empty(0, dtype=np.uint8),
                                np.empty((0, d)))
        work = newton_workspace(problem, n_max, dense=not batch.is_sparse)
        solve_tasks(batch.arrays, problem.arrays, prior, centres, theta,
                    inv_weight, settings, kept, work, out)
    if _ordinary_least_squares(problem, precision):
        work = None  # (the kernels' buffers go before the rows are copied)
        _solve_by_orthogonal_factors(batch, problem, theta, out)
    return TaskSolutions(theta, out.objective, out.loss, out.n_iter, out.trace,
                         out.inv_sum if want_inverse else None,
                         out.inv_wsum if want_inverse else None, products,
                         out.logdet,
                         covariances[:, 0] if keep_covariances and diagonal
                         else covariances if keep_covariances else None)


def _ordinary_least_squares(problem, precision):
    """Whether every task is unpenalized least squares: squared errors, no
    penalty and no transfer term."""
    return (problem.code == SQUARED and not problem.has_l1
            and not np.any(problem.lam2 * problem.l2w)
            and not np.any(precision))


def _solve_by_orthogonal_factors(batch, problem, theta, out):
    """Replace the Newton kernels' solutions of ordinary least squares by
    ``LinearRegression``'s (see ``_least_squares``), and their losses.

    The Hessian, and so everything else the kernels returned (sums of its
    inverse, traces, log-determinants), does not depend on the solution.
    """
    solution, solved = ordinary_least_squares(
        batch, problem.n_features, problem.fit_intercept,
        float(problem.singular_cutoff))
    if not solved.any():
        return
    theta[solved] = solution[solved]
    loss = datafit_losses(batch, problem, theta)
    if problem.mean_loss:
        weight = batch.task_weights()
        loss = np.divide(loss, weight, out=np.zeros_like(loss), where=weight > 0)
    out.loss[:] = np.where(solved, loss, out.loss)
    out.objective[:] = np.where(solved, loss, out.objective)


def decision_values(X, row_model, params, problem):
    """Linear predictor of each row under model ``row_model[i]`` of ``params``.

    For a network, the output layer's pre-activations.
    """
    if problem.is_network:
        from ._network_calls import network_decision_values

        return network_decision_values(X, row_model, params, problem)
    Xd, data, indices, indptr, is_sparse = design_arrays(X)
    empty = np.empty(0)
    design = BatchArrays(Xd, data, indices, indptr, is_sparse, empty, empty,
                         np.empty(0, dtype=np.intp))
    return decision_rows(design, as_index_array(row_model),
                         as_float_array(params), problem.arrays)


def losses_at_zero(batch, problem):
    """The tasks' datafit losses at all-zero parameters, summed."""
    return float(datafit_losses(
        batch, problem, np.zeros((batch.n_tasks, problem.n_params))).sum())


def datafit_losses(batch, problem, theta):
    """Each task's weighted sum of datafit losses at ``theta[t]``.

    Where the Newton kernel is compiled for these arguments (after the
    fits that solved tasks of this kind), by it, stopped before its first
    iteration: its first step computes the same sum, with the same helpers
    in the same order (bit for bit the same, ``mean_loss`` off so that it
    is not scaled). Otherwise by ``task_losses``, a kernel a first fit
    would compile for these sums alone (half a second of the default
    ``MetaClassifier``'s first fit, which scores held-out rows).
    """
    theta = as_float_array(theta)
    n_tasks, d = batch.n_tasks, problem.n_params
    unscaled = replace(problem, mean_loss=False)
    out = SolveOutputs(np.empty(n_tasks), np.empty(n_tasks),
                       np.empty(n_tasks, dtype=np.intp), np.zeros(n_tasks),
                       np.empty(n_tasks), np.empty((0, d, d)),
                       np.empty((0, d, d)), np.empty((0, 0, 0)))
    args = (batch.arrays, unscaled.arrays, prior_arrays(np.zeros(d), np.zeros(d)),
            np.empty((0, d)), theta.copy(), np.ones(n_tasks),
            SolveSettings(0, 0.0, False, False, False, False, 1),
            KeptInverses(np.empty((0, d, d)), np.empty(0, dtype=np.uint8),
                         np.empty((0, d))),
            # (without its d x d matrices, which a solve stopped before its
            # first iteration never touches: the same types, no d^2 memory)
            newton_workspace(unscaled, largest_task(batch)[0],
                             dense=not batch.is_sparse, matrices=False),
            out)
    # (a plain function, without signatures, with NUMBA_DISABLE_JIT)
    compiled = getattr(solve_tasks, "signatures", ())
    if compiled and tuple(numba.typeof(a) for a in args) in compiled:
        solve_tasks(*args)
        return out.loss
    return _task_losses(batch, problem, theta)


def _task_losses(batch, problem, theta):
    n_max = largest_task(batch)[0]
    K = problem.n_outputs
    p1 = problem.n_features + problem.fit_intercept
    work = (np.empty((0 if batch.is_sparse else p1, n_max)),
            *(np.empty((K, n_max)) for _ in range(3)))
    out = np.zeros(batch.n_tasks)
    task_losses(batch.arrays, problem.arrays, theta, work, out)
    return out


# --------------------------------------------------------------------------
# unrolled inner loops
# --------------------------------------------------------------------------
class Unroller:
    """``unroll`` of one batch and problem, called again and again.

    Everything that does not change between the meta-iterations of a fit is
    converted once, and the outputs are written into buffers allocated once:
    the arrays of a returned result are only valid until the next call.
    ``n_sel`` is the number of tasks per call; with ``n_threads > 1`` their
    blocks are shared among that many of numba's threads (one meta-batch is
    a few dozen microseconds of work: only numba's own thread pool starts
    fast enough). The results do not depend on it. With ``transposed``, a
    dense batch is also kept transposed (see ``_layout.transposed_batch``).
    Without ``step_gradient``, ``grad_alpha`` is None: the step sizes'
    meta-gradient is not wanted (a network's kernels then skip it).
    """

    def __new__(cls, batch, problem, *args, **kwargs):
        # a network gets the network kernels' unroller (same calls, results)
        if problem.is_network:
            from ._network_calls import NetworkUnroller

            return NetworkUnroller(batch, problem, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, batch, problem, precision, *, auto_step, n_steps, mode,
                 n_sel, block=None, n_threads=1, transposed=True,
                 step_gradient=True):
        block = block_size_for(n_sel) if block is None else int(block)
        self._step_gradient = bool(step_gradient)
        d = problem.n_params
        n_blocks = max(1, -(-n_sel // block))
        self.n_sel = n_sel
        self.n_chunks = unroll_chunks(batch, problem, n_steps, n_threads,
                                      n_blocks, numba.config.NUMBA_NUM_THREADS)
        # rows padded: per-block sums are updated at every step (see
        # _workspaces.unroll_workspace)
        blocks = np.zeros((2, n_blocks, d + _PAD))
        self._out = UnrollOutputs(np.zeros((2, d)), np.empty((n_sel, d)),
                                  np.empty(n_sel), blocks[0], blocks[1])
        self._batch = batch.arrays
        self._problem = problem.arrays
        self._precision = np.asarray(precision, dtype=np.float64)
        self._config = (
            bool(auto_step), smooth_curvature_bound(problem, precision),
            int(n_steps), int(mode), block,
            transposed_batch(batch, problem, TRANSPOSED_MAX_BYTES)
            if transposed else np.empty(0))
        self._work = unroll_workspace(batch, problem, n_steps, self.n_chunks)

    def __call__(self, task_sel, seeds, n_query, theta0, alpha):
        if len(task_sel) != self.n_sel:
            raise ValueError(f"expected {self.n_sel} tasks, got {len(task_sel)}")
        meta_batch = meta_batch_of(task_sel, seeds, n_query)
        config = UnrollConfig(as_float_array(alpha), *self._config)
        loss_sum = run_chunked(
            unroll_tasks, unroll_tasks_parallel, self.n_chunks, self._batch,
            self._problem, prior_arrays(theta0, self._precision), meta_batch,
            config, self._work, self._out)
        return UnrollResult.from_outputs(self._out, loss_sum,
                                         self._step_gradient)


def unroll(batch, problem, task_sel, seeds, n_query, theta0, precision, alpha,
           auto_step, n_steps, mode, block):
    """Unrolled inner loops of tasks ``task_sel``; see ``_unroll.unroll_tasks``."""
    run = Unroller(batch, problem, precision, auto_step=auto_step,
                   n_steps=n_steps, mode=mode, n_sel=len(task_sel), block=block,
                   transposed=False)
    return run(task_sel, seeds, n_query, theta0, alpha)


# --------------------------------------------------------------------------
# implicit meta-gradients
# --------------------------------------------------------------------------
@dataclass
class ImplicitResult:
    """Support solutions, query losses and per-block implicit meta-gradients."""

    theta: np.ndarray
    query_loss: np.ndarray
    grad_theta0_blocks: np.ndarray
    n_iter: np.ndarray


class ImplicitSolver:
    """Exact support solves and implicit meta-gradients, called again and again.

    For ``_implicit.implicit_tasks``: the workspace is allocated once, for
    the batch's largest task, and what does not change between
    meta-iterations is converted once. One caller at a time: calls share the
    workspace (unlike :class:`Unroller`'s, each call's results are arrays of
    their own).
    """

    def __init__(self, batch, problem, precision, *, max_iter=200, tol=1e-10):
        self._batch = batch.arrays
        self._problem = problem.arrays
        self._precision = np.asarray(precision, dtype=np.float64)
        self._d = problem.n_params
        self._work = implicit_workspace(batch, problem, None)
        self._max_iter = int(max_iter)
        self._tol = float(tol)

    def __call__(self, task_sel, seeds, n_query, theta0, theta, block):
        """The results of tasks ``task_sel``, their solves started at ``theta``.

        ``theta`` (one row per selected task) is not modified.
        """
        n_sel = len(task_sel)
        n_blocks = max(1, -(-n_sel // block))
        theta = np.array(theta, dtype=np.float64, order="C", copy=True)
        out = ImplicitOutputs(np.empty(n_sel), np.zeros((n_blocks, self._d)),
                              np.empty(n_sel, dtype=np.intp))
        meta_batch = meta_batch_of(task_sel, seeds, n_query)
        implicit_tasks(self._batch, self._problem,
                       prior_arrays(theta0, self._precision), meta_batch, theta,
                       self._max_iter, self._tol, int(block), self._work, out)
        return ImplicitResult(theta, out.query_loss, out.grad_theta0,
                              out.n_iter)
