"""Running the exact inner solver over task shards, on threads or joblib.

The kernels release the GIL, so shards of tasks run in parallel on threads.
Under joblib's default (threading) backend they go to a plain thread pool:
``joblib.Parallel`` polls for results every 10 ms, a delay as long as a
whole solve of thousands of tasks. Under any other active joblib backend,
e.g. ``joblib.parallel_backend("dask")``, the same shards go through
``joblib.Parallel`` (to a Dask cluster). Shards start at block boundaries
and partial sums are added in block order, so results do not depend on
``n_jobs``.
"""

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import ThreadingBackend, get_active_backend
from sklearn.exceptions import ConvergenceWarning

from .._kernels._calls import (
    InverseRequest,
    TaskSolutions,
    diagonal_inverses,
    solve_inner,
    summation_block,
)
from .._kernels._codes import SQUARED
from .._kernels._newton import KeptInverses
from .._kernels._workspaces import (
    CURVATURE_MAX_BYTES,
    FULL_INVERSE_MAX_PARAMS,
    curvature_bytes,
    largest_task,
)
from ._prior import residual_squares, task_scales

# Newton converges quadratically: a tight tolerance costs one more step at
# most, and the outer loops (implicit gradients, empirical Bayes) need
# accurate task solutions.
INNER_TOL = 1e-9
INNER_MAX_ITER = 200
# Keeping the inverse of each task's Hessian between outer iterations saves
# most Hessian evaluations; above this many bytes the inverses are not kept.
INVERSE_MEMORY = 256 * 2**20
# Below this many entries of X (and of the tasks' inverse Hessians) per
# shard, a thread costs more than it saves.
MIN_SHARD_ENTRIES = 100_000
SHARDS_PER_WORKER = 4


# the joblib.Parallel a thread has open (see Workers.__enter__)
_open = threading.local()


class Workers:
    """Runs lists of calls concurrently, in the order given; a context manager.

    A thread pool when joblib's active backend is its threading backend (the
    default), else ``joblib.Parallel`` on the active backend. Workers opened
    while others are open in the same thread (the candidate priors' solver
    inside the fit's) share the outer ones' ``Parallel``: two of them would
    configure the same backend object, and the inner one's exit terminated
    the pool the outer one still used (loky, multiprocessing).
    """

    def __init__(self, n_workers):
        self.n_workers = n_workers
        self._pool = None
        self._parallel = None
        self._owns_parallel = False

    def __enter__(self):
        if self.n_workers > 1:
            backend, _ = get_active_backend(prefer="threads")
            if isinstance(backend, ThreadingBackend):
                self._pool = ThreadPoolExecutor(self.n_workers)
            elif getattr(_open, "parallel", None) is not None:
                self._parallel = _open.parallel
            else:
                self._parallel = Parallel(n_jobs=self.n_workers, prefer="threads")
                self._parallel.__enter__()
                self._owns_parallel = True
                _open.parallel = self._parallel
        return self

    def __exit__(self, *exc_info):
        if self._pool is not None:
            # on an error (or an interrupt), shards not yet started are dropped
            self._pool.shutdown(cancel_futures=exc_info[0] is not None)
            self._pool = None
        if self._parallel is not None:
            if self._owns_parallel:
                _open.parallel = None
                self._owns_parallel = False
                self._parallel.__exit__(*exc_info)
            self._parallel = None

    @property
    def may_copy(self):
        """Whether calls may run on copies of their arguments (joblib
        backends other than threads: processes, a Dask cluster)."""
        return self._parallel is not None

    def run_on_threads(self, calls):
        """:meth:`run` where the calls share memory (this thread pool, while
        open), else one after the other: for calls whose arguments are too
        large to copy."""
        if self._pool is None:
            return [func(*args, **kwargs) for func, args, kwargs in calls]
        return self.run(calls)

    def run(self, calls):
        """Results of ``func(*args, **kwargs)`` for each ``(func, args, kwargs)``."""
        if len(calls) == 1 or self.n_workers == 1:
            return [func(*args, **kwargs) for func, args, kwargs in calls]
        if self._pool is None and self._parallel is None:
            with Workers(self.n_workers) as workers:  # used outside a with block
                return workers.run(calls)
        if self._pool is not None:
            futures = [self._pool.submit(func, *args, **kwargs)
                       for func, args, kwargs in calls]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return self._parallel(delayed(func)(*args, **kwargs)
                              for func, args, kwargs in calls)


class InnerSolver:
    """Exact inner solves of all tasks of one batch, sharded over ``n_jobs``.

    Use it as a context manager: the joblib workers are started once and
    reused by every :meth:`solve` inside the ``with`` block.
    ``max_full_params`` lowers the number of parameters above which only
    the diagonals of the inverse Hessians are summed (default:
    ``FULL_INVERSE_MAX_PARAMS``). ``keep_products=False``: wide tasks keep
    no row-space factors, so that nothing can multiply by the sum of their
    inverse Hessians (only the prior mean's Newton step does; without them
    it takes its system's diagonal).
    """

    def __init__(self, batch, problem, *, n_jobs=None, max_full_params=None,
                 keep_products=True):
        self.batch = batch
        self.problem = problem
        self.n_jobs = n_jobs
        d = problem.n_params
        # wide tasks: only the diagonals of the inverse Hessians are summed
        # (above FULL_INVERSE_MAX_PARAMS, or the caller's max_full_params)
        self.max_full_params = max_full_params
        self.diagonal = (diagonal_inverses(d) if max_full_params is None
                         else d > max_full_params)
        self.block = summation_block(batch.n_tasks, d, self.diagonal)
        # wide tasks: the prior mean's Newton step multiplies by the sum of
        # the inverse Hessians, through the tasks' row-space factors, kept
        # only where all shards' together fit CURVATURE_MAX_BYTES
        self.products = (keep_products and self.diagonal
                         and curvature_bytes(problem, batch.n_tasks,
                                             largest_task(batch)[0])
                         <= CURVATURE_MAX_BYTES)
        n_blocks = -(-batch.n_tasks // self.block)
        # the work of each task: its entries of X, and its d x d inverse
        # Hessian where one is formed (summed, or kept)
        width = max(problem.n_features, 1) * problem.n_outputs
        work = np.concatenate([[0], np.cumsum(
            np.diff(batch.offsets) * width
            + (0 if self.diagonal else d * d))])
        entries = int(work[-1])
        n_workers = effective_n_jobs(n_jobs)
        # several shards per worker: a worker slowed down (a busy core)
        # then takes fewer of them instead of holding up the whole solve
        n_shards = min(n_workers * SHARDS_PER_WORKER if n_workers > 1 else 1,
                       n_blocks)
        if MIN_SHARD_ENTRIES > 0:
            n_shards = min(n_shards, entries // MIN_SHARD_ENTRIES)
        n_shards = max(1, n_shards)
        # cut between blocks so that shards hold similar work
        block_starts = np.arange(n_blocks) * self.block
        work_before = work[block_starts]
        targets = np.linspace(0, entries, n_shards + 1)[1:-1]
        cuts = np.unique(np.searchsorted(work_before, targets))
        # (a target past the last block's start cuts nowhere)
        cuts = cuts[(cuts > 0) & (cuts < n_blocks)]
        edges = np.concatenate([[0], block_starts[cuts],
                                [batch.n_tasks]]).astype(np.intp)
        edges = np.unique(edges)
        self.ranges = list(zip(edges[:-1], edges[1:]))
        self.shards = [batch.shard(a, b) for a, b in self.ranges]
        if not self.diagonal and batch.n_tasks * d * d * 8 <= INVERSE_MEMORY:
            self.inverses = np.empty((batch.n_tasks, d, d))
            self.inverse_ok = np.zeros(batch.n_tasks, dtype=np.uint8)
        else:
            self.inverses = self.inverse_ok = None
        self._kept_precision = None
        self._workers = Workers(min(n_workers, len(self.shards)))

    def __enter__(self):
        self._workers.__enter__()
        return self

    def __exit__(self, *exc_info):
        self._workers.__exit__(*exc_info)

    def solve(self, theta0, precision, theta, *, inverse=None,
              exact_inverse=False, inv_weight=None, tol=INNER_TOL,
              solved_at=None, covariances=False, rowspace=None):
        """Solve every task from the warm start ``theta``; see ``solve_inner``.

        ``inverse`` is None, ``"sum"`` (the sums of inverse Hessians the
        prior's Newton step needs) or ``"posterior"`` (also what empirical
        Bayes needs); they are ``d x d``, or their diagonals for wide tasks
        (``self.diagonal``). With ``covariances`` (and ``"posterior"``), each
        task's posterior inverse Hessian is returned too.

        ``theta0`` is the prior mean of every task, or one row per task
        (each task's own centre; still one kernel call per shard).
        ``solved_at`` is the prior mean (of the same shape) of the solve that
        returned ``theta``, under the same precision: the kept inverse
        Hessians then first move each solution by the first-order change
        its own centre's move makes (the implicit function theorem), which
        saves steps. ``rowspace`` chooses the solver as in ``solve_inner``.
        Returns a :class:`TaskSolutions`.
        """
        T = self.batch.n_tasks
        if inv_weight is None:
            inv_weight = np.ones(T)
        precision = np.asarray(precision, dtype=np.float64)
        same_precision = (
            self._kept_precision is not None
            and self._kept_precision.shape == precision.shape
            and np.array_equal(self._kept_precision, precision))
        if self.inverses is not None and not same_precision:
            # the kept inverses are of Hessians under another prior
            self.inverse_ok[:] = 0
            self._kept_precision = precision.copy()
        theta0 = np.asarray(theta0, dtype=np.float64)
        per_task = theta0.ndim == 2
        moved = None
        if solved_at is not None and same_precision:
            solved_at = np.asarray(solved_at, dtype=np.float64)
            if solved_at.shape != theta0.shape:
                raise ValueError(
                    f"solved_at has shape {solved_at.shape}, the prior mean "
                    f"{theta0.shape}.")
            moved = theta0 - solved_at
        request = None if inverse is None else InverseRequest(
            posterior=inverse == "posterior", exact=exact_inverse,
            diagonal=self.diagonal, products=self.products,
            covariances=covariances)
        kwargs = dict(max_iter=INNER_MAX_ITER, tol=tol, inverse=request,
                      block=self.block, rowspace=rowspace)
        d = self.problem.n_params
        if moved is None:
            moved = np.empty((0, d))
        elif not per_task:
            moved = moved[np.newaxis]
        # a worker that holds copies (a process, a Dask worker) updates the
        # kept inverses on its copy: it sends them back with its solutions
        send_back = self.inverses is not None and self._workers.may_copy
        solve = _solve_returning_kept if send_back else solve_inner
        calls = []
        for (a, b), shard in zip(self.ranges, self.shards):
            kept = None if self.inverses is None else KeptInverses(
                self.inverses[a:b], self.inverse_ok[a:b],
                moved[a:b] if per_task and len(moved) else moved)
            calls.append((solve, (shard, self.problem,
                                  theta0[a:b] if per_task else theta0,
                                  precision, theta[a:b]),
                          dict(inv_weight=inv_weight[a:b], kept=kept, **kwargs)))
        results = self._workers.run(calls)
        if send_back:
            for (a, b), (_, inverses, ok) in zip(self.ranges, results):
                self.inverses[a:b] = inverses
                self.inverse_ok[a:b] = ok
            results = [solutions for solutions, _, _ in results]
        if len(results) == 1:
            # one shard: its (n_blocks, d, d) sums are not copied again
            return results[0]
        solutions = TaskSolutions.concatenate(results)
        if solutions.inverse_sum_times is not None:
            # a shard's products per thread, as its solve (never on copies: a
            # process would be sent every shard's factors at each product)
            solutions.inverse_sum_times.run = self._workers.run_on_threads
        return solutions


def _solve_returning_kept(shard, problem, theta0, precision, theta, *, kept,
                          **kwargs):
    """``solve_inner``, and the kept inverses it updated (in place, on this
    worker's copy)."""
    solutions = solve_inner(shard, problem, theta0, precision, theta, kept=kept,
                            **kwargs)
    return solutions, kept.inverses, kept.ok


def solve_exactly(batch, problem, center, precision, start, *, n_jobs=None,
                  labels=None):
    """Every task of ``batch`` solved exactly under the transfer term
    ``(center, precision)``, from ``start`` (the prior mean: the solution
    of a task without rows). The center itself is no start: where the base
    penalty is part of the prior it lies beyond the mean, far beyond along
    directions of weak transfer (a PoissonRegressor prior put it at 228
    where the mean is 0.2, and exp overflowed into NaN coefficients).
    ``labels``, the tasks' labels in the batch's order, name the tasks
    whose solve did not converge in the warning."""
    with InnerSolver(batch, problem, n_jobs=n_jobs) as solver:
        solutions = solver.solve(center, precision,
                                 np.tile(start, (batch.n_tasks, 1)))
    stopped = solutions.n_iter < 0
    unconverged = int(np.sum(stopped))
    if unconverged:
        which = "" if labels is None else (
            f" ({'tasks' if unconverged > 1 else 'task'} "
            f"{np.asarray(labels)[stopped][:5].tolist()}"
            f"{', ...' if unconverged > 5 else ''})")
        warnings.warn(
            f"the exact solve of {unconverged} of {batch.n_tasks} task(s)"
            f"{which} did not converge in {INNER_MAX_ITER} Newton iterations; "
            "their parameters are where it stopped.", ConvergenceWarning,
            stacklevel=3)
    return solutions.theta


# per-task posterior covariances are kept up to this many bytes
COVARIANCE_MEMORY = 256 * 2**20
# residual degrees of freedom below this share of the rows' weight are
# rounding: the models fit the rows exactly
_RESIDUAL_DOF_FLOOR = 1e-8


def covariances_refused(n_tasks, n_params):
    """Why :func:`posterior_covariances` keeps no covariances of ``n_tasks``
    tasks of ``n_params`` parameters, or None where it does: full inverse
    Hessians (tasks of at most ``FULL_INVERSE_MAX_PARAMS`` parameters),
    within ``COVARIANCE_MEMORY`` bytes."""
    if diagonal_inverses(n_params):
        return (f"tasks of {n_params} parameters, over "
                f"FULL_INVERSE_MAX_PARAMS = {FULL_INVERSE_MAX_PARAMS}, are "
                "fitted without their full inverse Hessians")
    size = 8 * n_tasks * n_params * n_params
    if size > COVARIANCE_MEMORY:
        return (f"the posterior covariances of {n_tasks} tasks of {n_params} "
                f"parameters would take {size / 2**20:.0f} MiB, over "
                f"COVARIANCE_MEMORY = {COVARIANCE_MEMORY / 2**20:.0f} MiB")
    return None


def posterior_covariances(batch, problem, theta0, precision, theta, *,
                          dispersion=None, n_jobs=None):
    """Laplace posteriors of every task under the prior ``(theta0, precision)``.

    Returns ``(covariances, dispersion, resolved)``: each task's posterior covariance
    ``(phi / s_t) A_t^{-1}`` in the model's natural units (``s_t`` 1 for
    summed losses, the task's total weight for averaged ones; ``A_t`` the
    Hessian at the task's solution ``theta[t]``), and ``phi``, the noise
    variance of squared errors -- ``dispersion`` if given, else its
    estimate ``RSS / (W - sum_t tr(H_data,t A_t^{-1}))`` (residuals over the
    rows' total weight less the parameters the data fitted: the fixed point
    of empirical Bayes' update) -- or 1 for the other datafits; and whether
    the rows leave a residual to estimate ``phi`` by (False where the
    models fit every row exactly). Covariances None when they would take
    more than ``COVARIANCE_MEMORY`` bytes or the tasks are too wide for full
    inverses.
    """
    T, d = theta.shape
    if covariances_refused(T, d) is not None:
        return None, dispersion, True
    # as empirical Bayes weighs them: a task without weight gets the mean
    # scale, so that its posterior is the prior (not an overflow)
    scale = task_scales(batch, problem)
    with InnerSolver(batch, problem, n_jobs=n_jobs) as solver:
        solutions = solver.solve(theta0, precision, theta, inverse="posterior",
                                 exact_inverse=True, inv_weight=1.0 / scale,
                                 covariances=True)
    resolved = True
    if problem.code == SQUARED:
        rss = float(np.sum(residual_squares(scale, solutions.loss)))
        weight = float(batch.sw.sum())
        dof = weight - float(solutions.trace.sum())
        # rows that the models fit exactly leave no residual to tell the
        # noise by: the estimate (or a learned one) then sits at its floor
        resolved = rss > 0 and dof > _RESIDUAL_DOF_FLOOR * weight
        if dispersion is None:
            dispersion = rss / dof if dof > 0 and rss > 0 else max(
                rss / max(weight, 1.0), np.finfo(float).tiny)
    if dispersion is None:
        dispersion = 1.0
    return (solutions.covariances * (dispersion / scale)[:, None, None],
            dispersion, resolved)


def map_task_chunks(func, n_tasks, block, n_jobs, batch):
    """``[func(lo, hi), ...]`` over consecutive chunks of tasks, on threads.

    Chunks start at multiples of ``block`` (so that per-block sums do not
    depend on the chunking) and are only made when each would hold enough
    data to be worth a thread.
    """
    n_blocks = -(-n_tasks // block)
    entries = batch.n_rows * max(batch.Xd.shape[1] if not batch.is_sparse else 1, 1)
    n_chunks = min(effective_n_jobs(n_jobs), n_blocks)
    if MIN_SHARD_ENTRIES > 0:
        n_chunks = min(n_chunks, entries // MIN_SHARD_ENTRIES)
    n_chunks = max(1, n_chunks)
    edges = np.unique(np.linspace(0, n_blocks, n_chunks + 1).round().astype(int))
    bounds = [(int(a) * block, min(int(b) * block, n_tasks))
              for a, b in zip(edges[:-1], edges[1:])]
    with Workers(len(bounds)) as workers:
        return workers.run([(func, bound, {}) for bound in bounds])
