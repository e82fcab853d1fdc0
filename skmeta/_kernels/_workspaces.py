"""Buffers of the kernels, and how large they may grow.

The kernels allocate nothing (they are compiled without numba's reference
counting: see ``_jit``): their buffers are made here, in Python, sized for
the largest task they will see. The unrolled kernel runs once per
meta-iteration, thousands of times per fit, on a few dozen microseconds of
work: its buffers are made once per fit, one slice per chunk of tasks
(chunks run on different threads).
"""

from collections import namedtuple

import numpy as np

from ._codes import MULTINOMIAL
from ._implicit import ImplicitWork
from ._mlp_unroll import NetworkWork
from ._newton import NewtonWork
from ._rows import TaskBuffers
from ._rowspace import BlockWork, RowspaceWork
from ._unroll import UnrollWork

# the transposed copy of a batch (see _layout.transposed_batch)
TRANSPOSED_MAX_BYTES = 1 << 28
# the unrolled kernel's workspace, all chunks together
WORKSPACE_MAX_BYTES = 1 << 28
# the passes of one block of rows of a network's forward-only inner steps
# (adaptation, Reptile), per chunk: 16 MiB are 3,216 rows of a default
# MLPRegressor (100 hidden units), and every task of up to that many rows
# still goes in one pass (ANIL then reuses the hidden layers' outputs)
FORWARD_PASSES_MAX_BYTES = 1 << 24
# float64 entries: one cache line
_PAD = 8
# the per-block sums of inverse Hessians of one exact solve of all tasks
INVERSE_SUMS_MAX_BYTES = 1 << 27
# ... and at most this many blocks of them: they are allocated and added up
# at every solve, and 200 tasks of 101 parameters in blocks of 3
# (``block_size_for``) made that 12% of an empirical-Bayes fit (profiled).
# Sixteen still give each of four workers its four shards
# (``_methods._inner.SHARDS_PER_WORKER``).
INVERSE_SUM_BLOCKS = 16
# the row-space factors kept per task for products with the inverse sums,
# all tasks of a fit together (every shard's). Without them the prior
# mean's Newton step on wide tasks takes the diagonal of its system alone:
# a Jacobi step, which on strongly pinned (shared) coefficients with
# correlated features overshoots. Measured on 200 ten-class tasks of 50
# rows and 100 features (400 MB of factors then, 80 MB since they are kept
# as the softmax's, see ``curvature_shape``), the final fit from the
# selection's prior then alternated between two priors, unconverged after
# 238 iterations; with the factors it converged in 14 (benchmarks/README.md
# section 8).
CURVATURE_MAX_BYTES = 1 << 29
# above this many parameters per task, only the diagonals of the inverse
# Hessians are summed (a d x d matrix per block, and its eigendecomposition in
# the prior's Newton step, would cost more than the task solves)
FULL_INVERSE_MAX_PARAMS = 512


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
    k, d = problem.n_outputs, problem.n_params
    p1 = problem.n_features + problem.fit_intercept
    steps = max(int(n_steps), 1)
    sparse = 1 if batch.is_sparse else 0
    c = n_chunks
    return UnrollWork(
        order=np.empty((c, n), dtype=np.intp),
        XT=np.empty((c, (1 - sparse) * p1, n)),
        data=np.empty((c, sparse * nnz)),
        indices=np.empty((c, sparse * nnz), dtype=np.intp),
        indptr=np.empty((c, sparse * (n + 1)), dtype=np.intp),
        y=np.empty((c, n)), sw=np.empty((c, n)),
        Z=np.empty((c, k, n)), G=np.empty((c, k, n)), U=np.empty((c, k, n)),
        Ds=np.empty((c, steps, k, n)),
        thetas=np.empty((c, steps + 1, d + _PAD)),
        grads=np.empty((c, steps, d + _PAD)),
        pre=np.empty((c, steps, d + _PAD)),
        vectors=np.empty((c, 6, d + _PAD)),
        power=np.empty((c, 2, p1 + _PAD)))


def workspace_bytes(work):
    return sum(a.nbytes for a in work)


def unroll_chunks(batch, problem, n_steps, n_threads, n_blocks, max_threads):
    """How many chunks (threads) a meta-batch of ``n_blocks`` blocks runs in.

    Each chunk's workspace is sized for the batch's largest task: fewer
    chunks rather than more than ``WORKSPACE_MAX_BYTES`` of buffers.
    """
    n_chunks = min(int(n_threads), n_blocks, int(max_threads))
    per_chunk = workspace_bytes(unroll_workspace(batch, problem, n_steps, 1))
    return max(1, min(n_chunks, WORKSPACE_MAX_BYTES // max(per_chunk, 1)))


def newton_workspace(problem, n_max, dense, matrices=True):
    """Buffers of ``_newton.solve_tasks`` for tasks of up to ``n_max`` rows.

    Without ``matrices``, the ``d x d`` ones are left out (empty), but for
    ``Ainv``, one row (for the row-space solver's diagonals).
    """
    k, d = problem.n_outputs, problem.n_params
    p1 = problem.n_features + problem.fit_intercept
    n_max = max(1, int(n_max))
    rows = [np.empty((k, n_max)) for _ in range(7)]
    square = (d, d) if matrices else (0, 0)
    return NewtonWork(np.empty((p1 if dense else 0, n_max)), *rows,
                      np.empty(n_max), np.empty((2, n_max)),
                      *(np.empty(square) for _ in range(3)),
                      np.empty((d, d) if matrices else (1, d)),
                      *(np.empty(d) for _ in range(8)),
                      np.empty(0) if problem.has_l1 else None)


def rowspace_workspace(batch, problem, n_max, diagonal):
    """Buffers of ``_newton.solve_tasks_rowspace`` for tasks of ``n_max`` rows:
    ``(newton_work, row_work, blocks)``, ``blocks`` None unless the
    multinomial's capacitance is factored by blocks."""
    k, d = problem.n_outputs, problem.n_params
    p1 = problem.n_features + problem.fit_intercept
    n_max = max(1, int(n_max))
    nk = k * n_max
    newton = newton_workspace(problem, n_max, not batch.is_sparse,
                              matrices=not diagonal)
    # the multinomial's capacitance is factored by blocks (see _rowspace)
    by_blocks = multinomial_by_blocks(problem)
    blocks = None
    if by_blocks:
        square = (n_max, n_max)
        blocks = BlockWork(
            A0=np.empty((k, *square)), apiv=np.empty((k, n_max), dtype=np.intp),
            Y=np.empty((k, *square)), S=np.empty(square),
            spiv=np.empty(n_max, dtype=np.intp), H=np.empty(square),
            u=np.empty((k, n_max)), root=np.empty(n_max))
    return newton, RowspaceWork(
        minv=np.empty(d), G=np.empty((k, n_max, n_max)),
        C=np.empty((0, 0) if by_blocks else (nk, nk)),
        piv=np.empty(0 if by_blocks else nk, dtype=np.intp), z=np.empty(nk),
        w=np.empty(nk),
        N=np.empty((nk, nk)), T=np.empty((n_max, p1)),
        P=np.empty((1, p1) if diagonal else (p1, p1)),
        a=np.empty(n_max)), blocks


def curvature_shape(problem, n_max):
    """The shape of one task's row-space curvature kept for products with
    the inverse sums (``_newton.solve_tasks_rowspace``, tasks of up to
    ``n_max`` rows).

    ``C^{-1} W`` whole, ``K n x K n``; or, where the multinomial is factored
    by blocks, the ``2 K n + 1`` rows of ``n`` from which its blocks follow
    (``_rowspace.multinomial_curvature``): about ``K / 2`` times fewer
    entries, and as many fewer multiply-adds per product.
    """
    k = problem.n_outputs
    if multinomial_by_blocks(problem):
        return (2 * k * n_max + 1, n_max)
    return (k * n_max, k * n_max)


def curvature_bytes(problem, n_tasks, n_max):
    """The bytes of ``n_tasks`` tasks' kept curvatures (``curvature_shape``)."""
    rows, columns = curvature_shape(problem, n_max)
    return 8 * n_tasks * rows * columns


def multinomial_by_blocks(problem):
    """Whether the row-space capacitance is factored by the multinomial's
    blocks: about ``7/3 K n^3`` multiply-adds against ``(K n)^3 / 3`` whole,
    fewer from ``K = 3`` on, and no more memory there (a binary task has a
    single output)."""
    return problem.code == MULTINOMIAL and problem.n_outputs >= 3


def task_buffers(batch, n_max, nnz_max, p1):
    """``_rows.TaskBuffers`` for tasks of up to ``n_max`` rows, ``nnz_max`` entries."""
    sparse = 1 if batch.is_sparse else 0
    return TaskBuffers(
        np.empty(n_max, dtype=np.intp), np.empty(((1 - sparse) * p1, n_max)),
        np.empty(sparse * nnz_max), np.empty(sparse * nnz_max, dtype=np.intp),
        np.empty(sparse * (n_max + 1), dtype=np.intp), np.empty(n_max),
        np.empty(n_max))


def largest_task(batch, task_sel=None):
    """Most rows, and most stored entries, among the (selected) tasks (at least 1)."""
    starts = batch.offsets[:-1]
    stops = batch.offsets[1:]
    if task_sel is not None:
        starts, stops = starts[task_sel], stops[task_sel]
    n_max = max(1, int(np.max(stops - starts, initial=0)))
    nnz_max = 1
    if batch.is_sparse:
        nnz_max = max(1, int(np.max(batch.indptr[stops] - batch.indptr[starts],
                                    initial=0)))
    return n_max, nnz_max


def implicit_workspace(batch, problem, task_sel):
    """Buffers of ``_implicit.implicit_tasks`` for the tasks ``task_sel``.

    For every task of the batch when ``task_sel`` is None.
    """
    n_max, nnz_max = largest_task(batch, task_sel)
    p1 = problem.n_features + problem.fit_intercept
    return ImplicitWork(task_buffers(batch, n_max, nnz_max, p1),
                        newton_workspace(problem, n_max, dense=False),
                        np.empty(0))


# --------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------
NetworkLayout = namedtuple("NetworkLayout",
                           "passes thetas grads hvp block_rows n_max")
NetworkLayout.__doc__ = """What a network kernel keeps of a task's inner steps.

Slots of the rings (see ``_mlp_unroll``) of the passes (``acts``, ``dAs``,
``deltas``, ``Ds``), of the iterates and of the gradients; whether the
Hessian-vector products' buffers have rows (``hvp``); the rows one pass
takes (``block_rows``, ``n_max`` where a task's rows all go in one pass),
and ``n_max`` the rows of the largest task.
"""


def network_layout(batch, problem, n_steps, *, every_step, step_gradient=False,
                   hvp=False, by_blocks=False, dtype=np.float64):
    """The :class:`NetworkLayout` of a use of ``n_steps`` inner steps.

    ``every_step``: a backward pass through the steps (second order) reads
    every step's passes and iterates, else one step's are kept (and two
    iterates: the step's and the next). ``step_gradient``: every step's
    gradient is kept (Meta-SGD's step sizes). ``hvp``: Hessian-vector
    products are taken. ``by_blocks``: nothing is back-propagated from the
    rows once passed over (forward only), so the passes go by blocks of
    rows whose buffers take at most ``FORWARD_PASSES_MAX_BYTES``.
    """
    steps = max(int(n_steps), 0)
    n_max = max(1, int(np.diff(batch.offsets).max(initial=0)))
    block_rows = n_max
    if by_blocks:
        block_rows = min(n_max, _forward_block_rows(problem, dtype))
    return NetworkLayout(
        passes=steps + 1 if every_step else 1,
        thetas=steps + 1 if every_step else 2,
        grads=max(steps, 1) if every_step or step_gradient else 1,
        hvp=bool(hvp), block_rows=block_rows, n_max=n_max)


def _forward_block_rows(problem, dtype):
    """Rows of a forward-only pass: its buffers within
    ``FORWARD_PASSES_MAX_BYTES``, a multiple of four (the row products' groups
    of rows, see ``_mlp_unroll``), at least four."""
    per_row = (3 * problem.n_layers * (problem.width + _PAD)
               + 4 * problem.n_outputs) * np.dtype(dtype).itemsize
    return max(4, FORWARD_PASSES_MAX_BYTES // per_row // 4 * 4)


def _network_shapes(batch, problem, layout, dtype):
    """``NetworkWork`` of ``(shape, type)`` of one chunk's buffers."""
    n = layout.n_max + _PAD
    nnz = _PAD
    if batch.is_sparse and batch.n_tasks:
        nnz += max(1, int(np.diff(batch.indptr[batch.offsets]).max()))
    k, d, L = problem.n_outputs, problem.n_params, problem.n_layers
    width = problem.width + _PAD
    rows = layout.block_rows + _PAD
    hvp_rows = rows if layout.hvp else 0
    sparse = 1 if batch.is_sparse else 0
    slots = layout.passes
    index, real = np.intp, dtype
    return NetworkWork(
        order=((n,), index),
        XT=(((1 - sparse) * problem.n_features, n), real),
        data=((sparse * nnz,), real),
        indices=((sparse * nnz,), index),
        indptr=((sparse * (n + 1),), index),
        y=((n,), real), sw=((n,), real),
        acts=((slots, L, rows, width), real),
        dAs=((slots, L, rows, width), real),
        deltas=((slots, L, rows, width), real),
        Ds=((slots, k, rows), real),
        Z=((k, rows), real), G=((k, rows), real), U=((k, rows), real),
        rz=((L, hvp_rows, width), real), ra=((L, hvp_rows, width), real),
        rd=((L, hvp_rows, width), real),
        thetas=((layout.thetas, d + _PAD), real),
        grads=((layout.grads, d + _PAD), real),
        vectors=((7, d + _PAD), real))


def network_workspace(batch, problem, layout, n_chunks, dtype=np.float64):
    """Buffers of ``_mlp_unroll.network_unroll_tasks``, one slice per chunk,
    as ``layout`` (a :class:`NetworkLayout`) says.

    Rows padded by ``_PAD`` entries, as in ``unroll_workspace``; the float
    buffers are of type ``dtype``, the arithmetic's.
    """
    return NetworkWork(*(np.empty((n_chunks, *shape), dtype=kind)
                         for shape, kind in _network_shapes(batch, problem,
                                                            layout, dtype)))


def network_chunks(batch, problem, layout, n_steps, n_threads, n_blocks,
                   max_threads, n_grad_blocks, dtype=np.float64):
    """How many chunks (threads) a network's meta-batch runs in.

    As ``unroll_chunks``. A network whose buffers for one chunk, with the
    per-block sums of the meta-gradients (``n_grad_blocks`` blocks), exceed
    ``WORKSPACE_MAX_BYTES`` cannot be run: a ValueError says so, naming the
    budget and what would bring the buffers within it. (The adapted
    parameters are results, not buffers.)
    """
    per_chunk = _network_bytes(batch, problem, layout, dtype)
    sums = 8 * (2 * n_grad_blocks + 2) * (problem.n_params + _PAD)
    if per_chunk + sums > WORKSPACE_MAX_BYTES:
        if layout.passes > 1:
            # second order: every step's passes over every row, for the
            # backward pass through the steps
            remedy = ("Use fewer inner_steps, first_order=True (one "
                      "step's buffers are kept), smaller hidden layers or "
                      "smaller tasks.")
        else:
            remedy = "Use smaller hidden layers or smaller tasks."
        raise ValueError(
            f"The network has {problem.n_params} parameters: with "
            f"{int(n_steps)} inner steps on tasks of up to {layout.n_max} "
            f"rows, its inner loops need {(per_chunk + sums) / 2**20:.0f} MiB "
            f"of buffers, over skmeta's workspace budget of "
            f"{WORKSPACE_MAX_BYTES / 2**20:.0f} MiB "
            f"(skmeta._kernels._workspaces.WORKSPACE_MAX_BYTES). {remedy}"
        )
    n_chunks = min(int(n_threads), n_blocks, int(max_threads))
    room = (WORKSPACE_MAX_BYTES - sums) // max(per_chunk, 1)
    return max(1, min(n_chunks, room))


def _network_bytes(batch, problem, layout, dtype):
    """Bytes of one chunk of ``network_workspace``, without allocating it."""
    return sum(int(np.prod(shape)) * np.dtype(kind).itemsize
               for shape, kind in _network_shapes(batch, problem, layout, dtype))
