"""Task-batched implicit meta-gradients (iMAML) of networks.

Each selected task's rows are shuffled and split into support and query
(as in :mod:`._mlp_unroll`, whose per-task steps this module reuses). The
inner problem -- the support objective plus the transfer term -- is solved
approximately by ``n_steps`` gradient steps from ``theta0``; at its
solution ``theta_t`` the implicit function theorem gives the meta-gradient
of the query loss ``Q_t`` as

    Pi A_t^{-1} grad Q_t(theta_t),      A_t = H_t + lam2 diag(l2w) + Pi,

``H_t`` the support datafit's Hessian. ``A_t^{-1} grad Q_t`` is found by
conjugate gradient on Hessian-vector products (``_mlp.network_hvp``), as
Rajeswaran et al. (2019) do, stopped at a relative residual ``cg_tol`` or
after ``cg_max`` iterations. A network's ``A_t`` may have directions of
negative curvature: the conjugate gradient stops at the first one, and a
task whose first direction is one gets the first-order gradient
(``A_t`` taken as ``Pi``). With ``head_only`` (ANIL) the inner problem is
over the output layer only; the hidden layers' meta-gradient is then
``dQ/dbody - H_bh A_hh^{-1} grad_h Q``.
"""

import math
from collections import namedtuple

import numpy as np
from numba import prange

from ._datafits import datafit_derivatives, loss_scale
from ._jit import borrowing_kernel, helper, parallel_kernel
from ._mlp import network_backward, network_forward, network_hvp
from ._mlp_unroll import chunk_work, first_moved, forward_steps, query, sum_blocks
from ._penalties import precision_times
from ._rows import shuffled_task

NetworkImplicitConfig = namedtuple(
    "NetworkImplicitConfig",
    "alpha n_steps block_size head_only XTb penalized cg_tol cg_max block_rows")
NetworkImplicitConfig.__doc__ = """The inner steps (``alpha``, ``n_steps``),
sums by blocks of ``block_size``, ANIL (``head_only``), the batch
transposed or empty (``XTb``), ``penalized`` as in
``_mlp_unroll.NetworkUnrollConfig``, the conjugate gradient's stopping
rule, and ``block_rows`` as there (every row of a task: the Hessian-vector
products take the passes of all the support rows at once)."""


@helper
def system_times(rows, ns, net, prior, theta, scale, head_only, w, slot, p, out):
    """``out = A p`` at ``theta`` (its passes in the rings' slot ``slot``),
    ``p`` zero outside the parameters the inner problem moves."""
    d = prior.theta0.shape[0]
    for j in range(d):
        out[j] = net.lam2 * net.l2w[j] * p[j]
    network_hvp(rows, ns, theta, p, net,
                (w.acts[slot], w.dAs[slot], w.deltas[slot]), w.Ds[slot], rows.sw,
                scale, not head_only, w.hvp, out)
    precision_times(prior, p, w.tmp, d)
    for j in range(d):
        out[j] += w.tmp[j]


@helper
def implicit_gradient(rows, ns, net, prior, config, w, grad_theta0):
    """Add the task's implicit meta-gradient to ``grad_theta0``.

    ``w.adj`` holds the query gradient at the adapted parameters, the last
    iterate of ``forward_steps``.
    """
    d = prior.theta0.shape[0]
    first = first_moved(net, config.head_only)
    start = np.uintp(first)
    # the rings' slots of the last step (see _mlp_unroll)
    slot = config.n_steps % w.acts.shape[0]
    theta = w.thetas[config.n_steps % w.thetas.shape[0]]
    g = w.adj
    x = w.x
    r = w.r
    p = w.v
    Ap = w.hv
    scale = loss_scale(net.mean_loss, rows.sw, 0, ns)
    # the support's passes at the solution (the query's are done with)
    network_forward(rows, 0, ns, theta, net, w.acts[slot], w.Z, True)
    datafit_derivatives(net.code, rows.y, rows.sw, 0, ns, w.Z, net.n_outputs,
                        w.G, w.Ds[slot], False)
    for j in range(d):
        x[j] = 0.0
    network_backward(rows, 0, ns, theta, net, w.acts[slot], w.G, scale,
                     w.dAs[slot], w.deltas[slot], x, not config.head_only)
    rr = 0.0
    for j in range(d):
        x[j] = 0.0
        r[j] = 0.0
        p[j] = 0.0
    for j in range(start, np.uintp(d)):
        r[j] = g[j]
        p[j] = g[j]
        rr += g[j] * g[j]
    target = config.cg_tol * math.sqrt(rr)
    solved = rr == 0.0
    for _ in range(config.cg_max):
        if rr == 0.0 or math.sqrt(rr) <= target:
            break
        system_times(rows, ns, net, prior, theta, scale, config.head_only, w,
                     slot, p, Ap)
        pAp = 0.0
        for j in range(start, np.uintp(d)):
            pAp += p[j] * Ap[j]
        if not pAp > 0.0:
            break
        step = rr / pAp
        rr_next = 0.0
        for j in range(start, np.uintp(d)):
            x[j] += step * p[j]
            r[j] -= step * Ap[j]
            rr_next += r[j] * r[j]
        for j in range(start, np.uintp(d)):
            p[j] = r[j] + (rr_next / rr) * p[j]
        rr = rr_next
        solved = True
    if not solved:
        # negative curvature along the gradient: A taken as Pi
        for j in range(start, np.uintp(d)):
            x[j] = g[j] / prior.diag[j] if prior.diag[j] > 0.0 else 0.0
    precision_times(prior, x, w.tmp, d)
    for j in range(start, np.uintp(d)):
        grad_theta0[j] += w.tmp[j]
    if first > 0:
        # the hidden layers: directly, and through the output layer's solution
        # (first > 0: ANIL's output layer alone, as a run-time flag)
        system_times(rows, ns, net, prior, theta, scale, first > 0, w, slot, x,
                     Ap)
        for j in range(first):
            grad_theta0[j] += g[j] - Ap[j]


@borrowing_kernel
def network_implicit_tasks(c, n_chunks, batch, net, prior, meta_batch, config,
                           work, out):
    """Inner solves, query losses and implicit meta-gradients of a meta-batch.

    As ``_mlp_unroll.network_unroll_tasks`` (chunks, blocks, outputs; the
    passes of one step are all it keeps); ``out.grad_alpha`` is not written.
    """
    task_sel = meta_batch.task_sel
    n_sel = task_sel.shape[0]
    block_size = config.block_size
    n_blocks = (n_sel + block_size - 1) // block_size
    s_lo = min(n_sel, (c * n_blocks // n_chunks) * block_size)
    s_hi = min(n_sel, ((c + 1) * n_blocks // n_chunks) * block_size)
    buffers, w = chunk_work(work, c)
    d = prior.theta0.shape[0]
    n_steps = config.n_steps
    for s in range(s_lo, s_hi):
        b = s // block_size
        if s == b * block_size:
            out.grad_theta0[b, :d] = 0.0
        rows = shuffled_task(batch, task_sel[s], meta_batch.seeds[s],
                             net.n_features, False, config.XTb, buffers)
        ns = rows.n - min(meta_batch.n_query[s], rows.n)
        forward_steps(rows, ns, net, prior, config.alpha, n_steps,
                      config.head_only, config.penalized, config.block_rows, w)
        adapted = w.thetas[n_steps % w.thetas.shape[0]]
        for j in range(d):
            out.theta[s, j] = adapted[j]
        out.query_loss[s] = query(rows, ns, net, adapted,
                                  n_steps % w.acts.shape[0], config.block_rows, w)
        implicit_gradient(rows, ns, net, prior, config, w, out.grad_theta0[b])
    if n_chunks == 1:
        return sum_blocks(out, False)
    return 0.0


@parallel_kernel
def network_implicit_parallel(n_chunks, batch, net, prior, meta_batch, config,
                              work, out):
    """``network_implicit_tasks`` with its chunks on numba's threads."""
    for c in prange(n_chunks):
        network_implicit_tasks(np.intp(c), n_chunks, batch, net, prior,
                               meta_batch, config, work, out)
    return sum_blocks(out, False)
