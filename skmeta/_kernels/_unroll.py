"""Task-batched unrolled inner loops and their exact meta-gradients.

For the gradient-based meta-learners (MAML, first-order MAML, Meta-SGD,
Reptile). Each selected task's rows are shuffled (a per-task seed) and split
into a support part, on which ``n_steps`` (proximal) gradient steps are taken
from the prior mean,

    u_k       = theta_k - s_t alpha * grad J_t(theta_k)
    theta_k+1 = soft_threshold(u_k, s_t alpha lam1 l1w),

with ``J_t`` the task's smooth objective on the support (datafit, l2 penalty,
transfer term toward ``theta0``), and a query part, on which the adapted
parameters are scored. ``alpha`` holds per-parameter step sizes and ``s_t``
a per-task scale: 1, or ``1 / L_t`` for ``inner_lr="auto"``, computed on the
rows the task adapts on (so the same in meta-training and in adaptation).

A task is three steps: ``forward`` (the inner steps, keeping what the
backward pass needs), ``query`` (the query loss and its gradient at the
adapted parameters) and ``backward`` (back-propagation through the steps,
with exact Hessian-vector products ``X^T D X v`` in second order, or with
the Hessian terms dropped in first order), which gives the meta-gradient of
the query loss with respect to ``theta0`` and ``alpha``. Sums over tasks are
made per block of tasks, in task order, so that they do not depend on how
tasks are spread over threads: ``unroll_tasks`` does one run of whole blocks
(a chunk) or all of them, ``unroll_tasks_parallel`` the chunks on numba's
threads. The kernels allocate nothing: ``_workspaces.unroll_workspace``
makes their buffers once per fit.
"""

import math
from collections import namedtuple

import numpy as np
from numba import prange

from ._datafits import (
    curvature_bound,
    curvature_times,
    datafit_derivatives,
    loss_scale,
)
from ._jit import always_inlined, borrowing_kernel, helper, parallel_kernel
from ._penalties import (
    held_at_zero,
    l1_threshold,
    precision_times,
    smooth_penalty_gradient,
    soft_threshold,
)
from ._rows import TaskBuffers, gradient, predictor, shuffled_task

FORWARD = 0
FIRST_ORDER = 1
SECOND_ORDER = 2
_POWER_ITERATIONS = 10
# the power iteration's start: entries 0.5 + frac(j phi), phi the golden ratio
_GOLDEN_FRACTION = 0.6180339887498949

UnrollConfig = namedtuple(
    "UnrollConfig", "alpha auto_step step_offset n_steps mode block_size XTb")
UnrollConfig.__doc__ = """How tasks are adapted, and what is computed.

The inner step on parameter ``j`` is ``alpha[j]``, times ``1 / L_t`` with
``auto_step`` (``L_t`` bounds the smoothness of the task's support
objective; ``step_offset`` is the penalties' part of it). ``mode`` is
FORWARD (adapted parameters and query losses only), FIRST_ORDER or
SECOND_ORDER (meta-gradients). Sums over tasks go by blocks of
``block_size``. ``XTb`` is the batch transposed (see
``_layout.transposed_batch``), or empty.
"""

UnrollWork = namedtuple(
    "UnrollWork",
    "order XT data indices indptr y sw Z G U Ds thetas grads pre vectors power")
UnrollWork.__doc__ = """Buffers of ``unroll_tasks``: each has a leading axis of
one slice per chunk of tasks (see ``_workspaces.unroll_workspace``)."""

UnrollOutputs = namedtuple(
    "UnrollOutputs", "sums theta query_loss grad_theta0 grad_alpha")
UnrollOutputs.__doc__ = """What ``unroll_tasks`` writes.

``theta[s]``: the adapted parameters of the ``s``-th selected task;
``query_loss[s]``: its query loss (in the estimator's scaling); block ``b``
of ``grad_theta0`` and ``grad_alpha``: the sums over its tasks of the query
loss's gradients; ``sums``: the sums over blocks, in order, of those two.
"""

StepWork = namedtuple(
    "StepWork", "Z G U Ds thetas grads pre adj adj_u v hv direct tmp vec nxt")


@helper
@always_inlined
def support_curvature(rows, ns, problem, vec, nxt, Z, C):
    """Largest eigenvalue of ``X~^T diag(c) X~`` over the support rows ``0:ns``.

    ``c_i`` is the sample weight times a bound on the datafit's curvature
    (see ``_datafits.curvature_bound``), kept in ``C[0, :ns]``. It does
    not depend on the start of the steps (so neither does the step size,
    and the meta-gradient through the steps is the whole of it). Power
    iteration from a fixed start vector whose entries stand in no simple
    ratio to each other: rows of structured
    features (of +-1, or centred) cannot make it orthogonal to the top
    eigenvector, as they did the constant vector (every row with
    ``x~ . 1 = 0``, e.g. ``x = -1`` beside an intercept, gave an estimate of
    0 and steps that diverged). The estimate is also never below the
    heaviest row's own curvature ``c_i |x~_i|^2``, a lower bound of the
    eigenvalue exact for one row.
    """
    p = problem.n_features
    p1 = p + problem.fit_intercept
    if ns == 0:
        return 0.0
    # the rows' weighted mean: a row of weight 0 is a row absent
    mean_y = 0.0
    total = 0.0
    for i in range(ns):
        mean_y += rows.sw[i] * rows.y[i]
        total += rows.sw[i]
    mean_y = mean_y / total if total > 0.0 else 0.0
    heaviest = 0.0
    for r in range(ns):
        C[0, r] = curvature_bound(problem.code, rows.y[r], mean_y) * rows.sw[r]
        squared = 1.0 if problem.fit_intercept else 0.0
        if rows.is_sparse:
            for e in range(rows.indptr[r], rows.indptr[r + 1]):
                squared += rows.data[e] * rows.data[e]
        else:
            for j in range(p):
                squared += rows.XT[j, r] * rows.XT[j, r]
        heaviest = max(heaviest, C[0, r] * squared)
    norm = 0.0
    for j in range(p1):
        vec[j] = 0.5 + ((j + 1) * _GOLDEN_FRACTION) % 1.0
        norm += vec[j] * vec[j]
    norm = math.sqrt(norm)
    for j in range(p1):
        vec[j] /= norm
    value = 0.0
    for _ in range(_POWER_ITERATIONS):
        predictor(rows, 0, ns, vec, 1, p, problem.fit_intercept, Z)
        for r in range(ns):
            Z[0, r] *= C[0, r]
        for j in range(p1):
            nxt[j] = 0.0
        gradient(rows, 0, ns, Z, 1.0, 1, p, problem.fit_intercept, nxt)
        norm = 0.0
        for j in range(p1):
            norm += nxt[j] * nxt[j]
        norm = math.sqrt(norm)
        if norm == 0.0:
            break
        value = norm
        for j in range(p1):
            vec[j] = nxt[j] / norm
    return max(value, heaviest)


@helper
@always_inlined
def forward(rows, ns, problem, prior, alpha, step, scale, n_steps, work):
    """``n_steps`` (proximal) gradient steps from ``theta0`` on the support.

    Keeps in ``work`` every iterate (``thetas``), gradient (``grads``),
    point before the threshold (``pre``) and datafit curvature (``Ds``).
    """
    d = prior.theta0.shape[0]
    thetas = work.thetas
    grads = work.grads
    for j in range(d):
        thetas[0, j] = prior.theta0[j]
    for k in range(n_steps):
        th = thetas[k]
        predictor(rows, 0, ns, th, problem.n_outputs, problem.n_features,
                  problem.fit_intercept, work.Z)
        datafit_derivatives(problem.code, rows.y, rows.sw, 0, ns, work.Z,
                            problem.n_outputs, work.G, work.Ds[k], False)
        smooth_penalty_gradient(th, problem, prior, d, work.tmp, grads[k])
        gradient(rows, 0, ns, work.G, scale, problem.n_outputs,
                 problem.n_features, problem.fit_intercept, grads[k])
        for j in range(d):
            u = th[j] - step * alpha[j] * grads[k, j]
            work.pre[k, j] = u
            thetas[k + 1, j] = soft_threshold(
                u, l1_threshold(problem, j, step * alpha[j]))


@helper
@always_inlined
def query(rows, ns, problem, theta, work):
    """Query loss at ``theta`` over rows ``ns:``; its gradient goes to ``work.adj``."""
    d = theta.shape[0]
    n = rows.n
    for j in range(d):
        work.adj[j] = 0.0
    if ns == n:
        return 0.0
    scale = loss_scale(problem.mean_loss, rows.sw, ns, n)
    predictor(rows, ns, n, theta, problem.n_outputs, problem.n_features,
              problem.fit_intercept, work.Z)
    loss = scale * datafit_derivatives(problem.code, rows.y, rows.sw, ns, n,
                                       work.Z, problem.n_outputs, work.G, work.U,
                                       True)
    gradient(rows, ns, n, work.G, scale, problem.n_outputs, problem.n_features,
             problem.fit_intercept, work.adj)
    return loss


@helper
@always_inlined
def backward(rows, ns, problem, prior, alpha, step, scale, n_steps, second_order,
             work, grad_theta0, grad_alpha):
    """Back-propagate ``work.adj`` (the query gradient) through the steps.

    Adds the gradients with respect to ``theta0`` and ``alpha`` to
    ``grad_theta0`` and ``grad_alpha``.
    """
    d = prior.theta0.shape[0]
    adj = work.adj
    adj_u = work.adj_u
    v = work.v
    hv = work.hv
    direct = work.direct
    for j in range(d):
        direct[j] = 0.0
    # adj is d(query loss)/d(theta_{k+1})
    for k in range(n_steps - 1, -1, -1):
        for j in range(d):
            threshold = l1_threshold(problem, j, step * alpha[j])
            held = held_at_zero(work.thetas[k + 1, j], threshold)
            adj_u[j] = 0.0 if held else adj[j]
            grad_alpha[j] -= step * adj_u[j] * work.grads[k, j]
            if threshold > 0.0 and not held:
                sign = 1.0 if work.pre[k, j] > 0.0 else -1.0
                grad_alpha[j] -= adj[j] * sign * step * problem.lam1 * problem.l1w[j]
        if not second_order:
            for j in range(d):
                adj[j] = adj_u[j]
            continue
        # exact second order: adj <- adj_u - H_k (step alpha adj_u), and the
        # transfer term's direct dependence on theta0
        for j in range(d):
            v[j] = step * alpha[j] * adj_u[j]
            hv[j] = problem.lam2 * problem.l2w[j] * v[j]
        predictor(rows, 0, ns, v, problem.n_outputs, problem.n_features,
                  problem.fit_intercept, work.U)
        curvature_times(problem.code, rows.sw, 0, ns, work.Ds[k], work.U,
                        problem.n_outputs, 1.0)
        gradient(rows, 0, ns, work.U, scale, problem.n_outputs,
                 problem.n_features, problem.fit_intercept, hv)
        precision_times(prior, v, work.tmp, d)
        for j in range(d):
            t = work.tmp[j]
            direct[j] += t
            adj[j] = adj_u[j] - (hv[j] + t)
    for j in range(d):
        grad_theta0[j] += adj[j] + direct[j]


@helper
def chunk_work(work, c):
    """Chunk ``c``'s slices of the workspace."""
    vectors = work.vectors[c]
    power = work.power[c]
    buffers = TaskBuffers(work.order[c], work.XT[c], work.data[c],
                          work.indices[c], work.indptr[c], work.y[c], work.sw[c])
    step_work = StepWork(work.Z[c], work.G[c], work.U[c], work.Ds[c],
                         work.thetas[c], work.grads[c], work.pre[c], vectors[0],
                         vectors[1], vectors[2], vectors[3], vectors[4],
                         vectors[5], power[0], power[1])
    return buffers, step_work


@helper
def sum_blocks(out):
    """Sums over tasks and blocks, in order: the result of ``unroll_tasks``."""
    sums = out.sums
    for j in range(sums.shape[1]):
        sums[0, j] = 0.0
        sums[1, j] = 0.0
    for b in range(out.grad_theta0.shape[0]):
        for j in range(sums.shape[1]):
            sums[0, j] += out.grad_theta0[b, j]
            sums[1, j] += out.grad_alpha[b, j]
    total = 0.0
    for s in range(out.query_loss.shape[0]):
        total += out.query_loss[s]
    return total


@borrowing_kernel
def unroll_tasks(c, n_chunks, batch, problem, prior, meta_batch, config, work,
                 out):
    """Unrolled inner loops of the meta-batch's tasks, with meta-gradients.

    See ``MetaBatch`` (in ``_rows``), ``UnrollConfig`` and ``UnrollOutputs``.
    The tasks are cut into ``n_chunks`` runs of whole blocks; this call does
    run ``c``. With a single chunk (all tasks), it returns the sum of the
    query losses and fills ``out.sums``; otherwise it returns 0 and
    ``unroll_tasks_parallel`` sums once all chunks are done. Compiled
    without reference counting (see ``_jit``): it allocates nothing.
    """
    task_sel = meta_batch.task_sel
    n_sel = task_sel.shape[0]
    block_size = config.block_size
    n_blocks = (n_sel + block_size - 1) // block_size
    s_lo = min(n_sel, (c * n_blocks // n_chunks) * block_size)
    s_hi = min(n_sel, ((c + 1) * n_blocks // n_chunks) * block_size)
    buffers, step_work = chunk_work(work, c)
    d = prior.theta0.shape[0]
    alpha = config.alpha
    for s in range(s_lo, s_hi):
        b = s // block_size
        if s == b * block_size:
            for j in range(d):
                out.grad_theta0[b, j] = 0.0
                out.grad_alpha[b, j] = 0.0
        rows = shuffled_task(batch, task_sel[s], meta_batch.seeds[s],
                             problem.n_features, problem.fit_intercept,
                             config.XTb, buffers)
        n = rows.n
        ns = n - min(meta_batch.n_query[s], n)
        scale = loss_scale(problem.mean_loss, rows.sw, 0, ns)
        step = 1.0
        if config.auto_step:
            smoothness = config.step_offset + scale * support_curvature(
                rows, ns, problem, step_work.vec, step_work.nxt, step_work.Z,
                step_work.G)
            step = 1.0 / smoothness if smoothness > 0.0 else 1.0
        forward(rows, ns, problem, prior, alpha, step, scale, config.n_steps,
                step_work)
        adapted = step_work.thetas[config.n_steps]
        for j in range(d):
            out.theta[s, j] = adapted[j]
        out.query_loss[s] = query(rows, ns, problem, adapted, step_work)
        if config.mode == FORWARD:
            continue
        backward(rows, ns, problem, prior, alpha, step, scale, config.n_steps,
                 config.mode == SECOND_ORDER, step_work, out.grad_theta0[b],
                 out.grad_alpha[b])
    if n_chunks == 1:
        return sum_blocks(out)
    return 0.0


@parallel_kernel
def unroll_tasks_parallel(n_chunks, batch, problem, prior, meta_batch, config,
                          work, out):
    """``unroll_tasks`` with its chunks on numba's threads (same results)."""
    for c in prange(n_chunks):
        # prange's index is unsigned: as it is, it would compile unroll_tasks
        # a second time
        unroll_tasks(np.intp(c), n_chunks, batch, problem, prior, meta_batch,
                     config, work, out)
    return sum_blocks(out)
